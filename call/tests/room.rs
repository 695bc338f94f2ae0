//! A room's forwarder with three participants, all in one process over real UDP
//! sockets on 127.0.0.1: each hears the other two and not itself, and one who leaves
//! is heard no more.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::Capture;
use kith_call::sfu::Room;
use kith_call::wav::WavSource;
use kith_call::{MediaConfig, Session, SessionEvent, tone};

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    tokio::time::timeout(Duration::from_secs(20), async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out: {what}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_participant_hears_the_others_and_not_itself() {
    let config = MediaConfig::default();
    let room = Room::new(config.clone());
    let tones = [440.0, 660.0, 990.0];
    let mut sessions = Vec::new();
    let mut heard = Vec::new();
    for (id, hz) in tones.iter().enumerate() {
        let capture = Capture::default();
        let source = Box::new(WavSource::from_samples(tone::sine(*hz, 30.0, 6000)));
        let (mut session, offer) = Session::offer_to_room(&config, source, Box::new(capture.clone()), 2).await.unwrap();
        let (answer, _events) = room.join(id as u64, &offer).await.unwrap();
        session.accept_answer(&answer).await.unwrap();
        let mut events = session.take_events().unwrap();
        let up = tokio::time::timeout(Duration::from_secs(10), events.recv()).await.unwrap();
        assert_eq!(up, Some(SessionEvent::Connected));
        sessions.push(session);
        heard.push(capture);
    }
    assert_eq!(room.participants(), vec![0, 1, 2]);

    // Two seconds of everyone, from when the last one joined.
    let from: Vec<usize> = heard.iter().map(Capture::len).collect();
    until("two seconds heard by everyone", || heard.iter().zip(&from).all(|(h, f)| h.len() >= f + 96_000)).await;
    for (i, capture) in heard.iter().enumerate() {
        let samples = capture.since(from[i]);
        for (j, hz) in tones.iter().enumerate() {
            let seconds = tone::tone_seconds(&samples, *hz);
            if i == j {
                assert!(seconds < 0.2, "participant {i} hears itself ({seconds:.2} s of {hz} Hz)");
            } else {
                assert!(seconds >= 1.5, "participant {i} hears {seconds:.2} s of participant {j}'s {hz} Hz");
            }
        }
    }
    let stats = room.stats();
    assert!(stats.forwarded >= 2 * stats.received / 2, "{stats:?}");

    // The third leaves: the other two hear only each other from then on.
    room.leave(2).await;
    assert_eq!(room.participants(), vec![0, 1]);
    let from: Vec<usize> = heard.iter().map(Capture::len).collect();
    until("a second after the leave", || heard[..2].iter().zip(&from).all(|(h, f)| h.len() >= f + 72_000)).await;
    for i in 0..2 {
        // The first 0.5 s may still hold what was in flight.
        let samples = heard[i].since(from[i] + 24_000);
        assert!(tone::tone_seconds(&samples, 990.0) < 0.2, "participant {i} still hears the one who left");
        assert!(tone::tone_seconds(&samples, tones[1 - i]) >= 0.8, "participant {i} still hears the other");
    }
    for session in sessions {
        session.close().await.unwrap();
    }
}
