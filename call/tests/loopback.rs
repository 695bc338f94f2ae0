//! Two media sessions in one process over real UDP sockets on 127.0.0.1: the offer and
//! answer are handed over directly, as kith's signalling would carry them.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::Capture;
use kith_call::audio::Source;
use kith_call::wav::WavSource;
use kith_call::{MediaConfig, Session, SessionEvent, tone};

fn tone_source(hz: f64) -> Box<dyn Source> {
    Box::new(WavSource::from_samples(tone::sine(hz, 10.0, 8000)))
}

async fn connected(session: &mut Session) -> tokio::sync::mpsc::UnboundedReceiver<SessionEvent> {
    let mut events = session.take_events().unwrap();
    let event = tokio::time::timeout(Duration::from_secs(10), events.recv()).await.expect("connected in time");
    assert_eq!(event, Some(SessionEvent::Connected));
    events
}

/// Waits until `capture` holds `seconds` of audio (a deadline, not a sleep).
async fn recorded(capture: &Capture, seconds: f64) {
    let want = (seconds * 48_000.0) as usize;
    tokio::time::timeout(Duration::from_secs(20), async {
        while capture.0.lock().unwrap().len() < want {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("audio recorded in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_side_hears_the_others_tone_and_mute_silences_it() {
    let config = MediaConfig::default();
    let (heard_by_a, heard_by_b) = (Capture::default(), Capture::default());
    let (mut a, offer) = Session::offer(&config, tone_source(440.0), Box::new(heard_by_a.clone())).await.unwrap();
    assert!(offer.contains("a=fingerprint:sha-256"), "the offer carries the DTLS fingerprint");
    let (mut b, answer) =
        Session::answer(&config, &offer, tone_source(660.0), Box::new(heard_by_b.clone())).await.unwrap();
    a.accept_answer(&answer).await.unwrap();
    let _a_events = connected(&mut a).await;
    let mut b_events = connected(&mut b).await;

    recorded(&heard_by_b, 1.5).await;
    recorded(&heard_by_a, 1.5).await;
    let at_b = heard_by_b.0.lock().unwrap().clone();
    let at_a = heard_by_a.0.lock().unwrap().clone();
    let fa = tone::dominant_frequency(&at_b).expect("B heard something");
    let fb = tone::dominant_frequency(&at_a).expect("A heard something");
    assert!((fa - 440.0).abs() < 5.0, "B heard {fa}");
    assert!((fb - 660.0).abs() < 5.0, "A heard {fb}");

    // Muted: B keeps playing (silence), and the tone is gone from what follows.
    a.set_muted(true);
    let muted_from = heard_by_b.0.lock().unwrap().len() + 48_000 / 5; // past what was in flight
    recorded(&heard_by_b, muted_from as f64 / 48_000.0 + 1.0).await;
    let after = heard_by_b.0.lock().unwrap()[muted_from..].to_vec();
    assert!(tone::rms(&after) < 50.0, "muted audio is silent, rms {}", tone::rms(&after));
    // B saw A start speaking (the tone) and stop (muted, past the 400 ms hangover).
    let mut speaking = Vec::new();
    while let Ok(event) = b_events.try_recv() {
        if let SessionEvent::Speaking { speaking: now, .. } = event {
            speaking.push(now);
        }
    }
    assert_eq!(speaking, vec![true, false], "B's speaking events");

    let stats = b.stats();
    assert!(stats.frames_played >= 100, "{stats:?}");
    assert!(a.stats().frames_sent >= 100);
    a.close().await.unwrap();
    b.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_whose_certificate_is_not_the_one_signalled_never_connects() {
    let config = MediaConfig { ice_disconnected: Duration::from_secs(1), ice_failed: Duration::from_secs(2), ..Default::default() };
    let (mut a, offer) = Session::offer(&config, tone_source(440.0), Box::new(Capture::default())).await.unwrap();
    let (mut b, answer) = Session::answer(&config, &offer, tone_source(660.0), Box::new(Capture::default())).await.unwrap();
    // The answer A receives names another certificate (as if a relay of the
    // signalling swapped it): the DTLS handshake must fail.
    let forged = forge_fingerprint(&answer);
    assert_ne!(forged, answer);
    a.accept_answer(&forged).await.unwrap();
    let mut events = a.take_events().unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match events.recv().await {
                Some(SessionEvent::Connected) => return "connected",
                Some(SessionEvent::Failed) | None => return "failed",
                Some(_) => {}
            }
        }
    })
    .await
    .expect("an outcome in time");
    assert_eq!(outcome, "failed");
    let _ = b.take_events();
    assert_eq!(a.stats().frames_played, 0, "no media from an unauthenticated peer");
    a.close().await.unwrap();
    b.close().await.unwrap();
}

/// The SDP with every fingerprint's first byte changed.
fn forge_fingerprint(sdp: &str) -> String {
    sdp.lines()
        .map(|line| match line.strip_prefix("a=fingerprint:sha-256 ") {
            Some(hex) => {
                let first = if hex.starts_with("00") { "11" } else { "00" };
                format!("a=fingerprint:sha-256 {first}{}", &hex[2..])
            }
            None => line.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\r\n")
        + "\r\n"
}
