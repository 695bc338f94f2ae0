//! The media path of a 1:1 call, measured without sound devices.
//!
//! `cargo bench -p kith-call --bench call -- --seconds 60`
//!
//! Two media sessions (`kith_call::Session`, the code a call runs) in one process,
//! connected over real UDP sockets on 127.0.0.1 with WebRTC (ICE, DTLS-SRTP). The
//! caller's source is silence with a 20 ms burst of a 1 kHz tone every 400 ms; the
//! callee's sink notes when each burst's first loud frame is played.
//!
//! - latency: from the moment the sender's pipeline takes the burst's frame from its
//!   source (before encoding) to the moment the receiver's playout hands the decoded
//!   frame to its sink (after the jitter buffer): encode, packetise, SRTP, UDP, the
//!   jitter buffer's depth, decode;
//! - CPU and bandwidth, twice: for that mostly silent call, and for a second call with
//!   a tone both ways all the time (Opus spends more bits on sound than on silence).
//!   CPU is this process's CPU time over the measured window (both ends of the call,
//!   each sending and receiving) per end; bandwidth per direction is the Opus payload
//!   counted by the sender plus 50 bytes of RTP (12), SRTP tag (10), UDP (8) and IPv4
//!   (20) headers per packet.
//! - the latency again with both ends offering only relayed candidates of kith's TURN
//!   server (in this process): every packet goes to the server and out again.
//!
//! - a room's forwarder (SFU): rooms of 5 speakers, each sending a tone, all in this
//!   process; the forwarding delay is from a packet's arrival at the forwarder
//!   (decrypted) to the moment its last copy is handed to its listener's connection.
//!   The participants' own work (encoding one stream, decoding and mixing four, each)
//!   runs on the same 2 cores, so the figures are for the forwarder and 5 members per
//!   room sharing the machine, a harder case than a relay of its own.
//!
//! Timings are printed, never asserted.

#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kith_call::audio::{AudioError, FRAME_SAMPLES, Frame, Sink, Source};
use kith_call::turn::{TurnConfig, TurnServer};
use kith_call::{MediaConfig, Session, SessionEvent, Silence, tone};

/// Frames between bursts (400 ms): more than any latency, so each onset pairs with
/// the last burst before it.
const BURST_EVERY: u64 = 20;

/// Per-packet headers on the wire: RTP 12, SRTP auth tag 10, UDP 8, IPv4 20.
const HEADER_BYTES: u64 = 50;

struct Bursts {
    frame: u64,
    burst: Frame,
    sent: Arc<Mutex<Vec<Instant>>>,
}

impl Source for Bursts {
    fn next_frame(&mut self) -> Frame {
        self.frame += 1;
        if self.frame.is_multiple_of(BURST_EVERY) {
            self.sent.lock().unwrap().push(Instant::now());
            self.burst
        } else {
            [0; FRAME_SAMPLES]
        }
    }
}

struct Onsets {
    loud: bool,
    played: Arc<Mutex<Vec<Instant>>>,
}

impl Sink for Onsets {
    fn write(&mut self, frame: &Frame) -> Result<(), AudioError> {
        let level = tone::rms(frame);
        if level > 1000.0 && !self.loud {
            self.played.lock().unwrap().push(Instant::now());
        }
        // Hysteresis: the codec's tail of a burst is not a new onset.
        self.loud = level > 300.0;
        Ok(())
    }
    fn finish(self: Box<Self>) -> Result<(), AudioError> {
        Ok(())
    }
}

/// This process's user + system CPU time, in seconds (clock ticks of 10 ms).
fn cpu_seconds() -> f64 {
    // getrusage would need unsafe code (forbidden here): /proc has the same counts.
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or_default().split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
    let ticks: f64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

/// `p50 / p99 / max (n)` of `samples`, nearest rank.
fn summary(samples: &[Duration]) -> String {
    let mut s = samples.to_vec();
    s.sort();
    let at = |p: f64| s[((s.len() as f64 - 1.0) * p).round() as usize];
    match s.last() {
        None => "no samples".to_owned(),
        Some(max) => format!("p50 {:.1?} / p99 {:.1?} / max {max:.1?} (n={})", at(0.5), at(0.99), s.len()),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let seconds: u64 = args
        .iter()
        .position(|a| a == "--seconds")
        .and_then(|i| args.get(i + 1))
        .map_or(60, |v| v.parse().expect("--seconds takes a number"));
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(run(seconds));
}

async fn run(seconds: u64) {
    let config = MediaConfig::default();
    println!("call bench: {seconds} s of a 1:1 call's media, both ends in this process, 127.0.0.1");
    bursts(&config, seconds, "direct").await;
    // The same through kith's TURN server (in this process too): each end offers
    // only a relayed candidate, so every packet crosses it twice (in, then out).
    let turn = TurnServer::bind(TurnConfig::default()).await.unwrap();
    let relayed = |who: &[u8]| MediaConfig { relays: vec![turn.grant(who).unwrap()], relay_only: true, ..MediaConfig::default() };
    let (a, b) = (relayed(b"a"), relayed(b"b"));
    bursts_between(&a, &b, seconds, "through the TURN server").await;
    let t = turn.stats();
    println!("  TURN server: {} bytes relayed, {} packets dropped", t.bytes_relayed, t.packets_dropped);
    drop(turn);

    // A tone both ways, all the time.
    let config = MediaConfig::default();
    let tone_source = |hz| Box::new(kith_call::wav::WavSource::from_samples(tone::sine(hz, seconds as f64 + 5.0, 8000)));
    let (mut a, offer) = Session::offer(&config, tone_source(440.0), Box::new(kith_call::Discard)).await.unwrap();
    let (b, answer) = Session::answer(&config, &offer, tone_source(660.0), Box::new(kith_call::Discard)).await.unwrap();
    a.accept_answer(&answer).await.unwrap();
    let mut events = a.take_events().unwrap();
    while events.recv().await != Some(SessionEvent::Connected) {}
    let load = measure(&a, seconds).await;
    println!("  a tone both ways:                       {load}");
    a.close().await.unwrap();
    b.close().await.unwrap();

    for rooms in [1, 4, 8, 12, 16] {
        forwarding(&config, rooms, seconds.min(20)).await;
    }
}

/// A call sending a 20 ms burst every [`BURST_EVERY`] frames: how long from the
/// burst entering the sender's pipeline to its onset at the receiver's playout.
async fn bursts(config: &MediaConfig, seconds: u64, label: &str) {
    bursts_between(config, config, seconds, label).await;
}

async fn bursts_between(caller_config: &MediaConfig, callee_config: &MediaConfig, seconds: u64, label: &str) {
    let sent = Arc::new(Mutex::new(Vec::new()));
    let played = Arc::new(Mutex::new(Vec::new()));
    let mut burst = [0i16; FRAME_SAMPLES];
    burst.copy_from_slice(&tone::sine(1000.0, 0.02, 12_000)[..FRAME_SAMPLES]);
    let source = Bursts { frame: 0, burst, sent: sent.clone() };
    let sink = Onsets { loud: false, played: played.clone() };
    let (mut caller, offer) =
        Session::offer(caller_config, Box::new(source), Box::new(kith_call::Discard)).await.unwrap();
    let (mut callee, answer) = Session::answer(callee_config, &offer, Box::new(Silence), Box::new(sink)).await.unwrap();
    let set_up = Instant::now();
    caller.accept_answer(&answer).await.unwrap();
    let mut events = caller.take_events().unwrap();
    while events.recv().await != Some(SessionEvent::Connected) {}
    let connect = set_up.elapsed();
    let _callee_events = callee.take_events();
    println!("  {label}:");
    println!("    connect (answer in → ICE + DTLS up):  {connect:?}");

    let load = measure(&caller, seconds).await;

    let sent = sent.lock().unwrap().clone();
    let played = played.lock().unwrap().clone();
    let latencies: Vec<Duration> = played
        .iter()
        .filter_map(|p| sent.iter().rev().find(|s| *s <= p).map(|s| *p - *s))
        .filter(|d| *d < Duration::from_millis(BURST_EVERY * 20))
        .collect();
    println!("    bursts sent {} / heard {}", sent.len(), played.len());
    println!("    latency, pipeline in → playout out:    {}", summary(&latencies));
    println!("    mostly silent call:                     {load}");
    let b = callee.stats();
    println!(
        "    receiver: played {} frames, {} concealed; jitter buffer: late {}, dropped for latency {}",
        b.frames_played, b.frames_concealed, b.jitter.late, b.jitter.dropped_for_latency
    );
    caller.close().await.unwrap();
    callee.close().await.unwrap();
}

/// `rooms` rooms of 5 speakers each through one forwarder per room, for `seconds`.
async fn forwarding(config: &MediaConfig, rooms: usize, seconds: u64) {
    let mut forwarders = Vec::new();
    let mut sessions = Vec::new();
    for _ in 0..rooms {
        let room = kith_call::sfu::Room::measured(config.clone());
        for id in 0..5u64 {
            let source = Box::new(kith_call::wav::WavSource::from_samples(tone::sine(
                300.0 + 100.0 * id as f64,
                seconds as f64 + 10.0,
                6000,
            )));
            let (mut session, offer) =
                Session::offer_to_room(config, source, Box::new(kith_call::Discard), 4).await.unwrap();
            let (answer, _events) = room.join(id, &offer).await.unwrap();
            session.accept_answer(&answer).await.unwrap();
            let mut events = session.take_events().unwrap();
            while events.recv().await != Some(SessionEvent::Connected) {}
            sessions.push(session);
        }
        forwarders.push(room);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    for room in &forwarders {
        room.take_delays();
    }
    let cpu0 = cpu_seconds();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let cpu = (cpu_seconds() - cpu0) / seconds as f64 * 100.0;
    let delays: Vec<Duration> = forwarders.iter().flat_map(|r| r.take_delays()).collect();
    let forwarded: u64 = forwarders.iter().map(|r| r.stats().forwarded).sum();
    let dropped: u64 = forwarders.iter().map(|r| r.stats().dropped).sum();
    println!(
        "  forwarder, {rooms} room(s) of 5 speakers: delay {}; {forwarded} copies, {dropped} dropped; process CPU {cpu:.0} % of one core",
        summary(&delays)
    );
    for session in sessions {
        session.close().await.unwrap();
    }
}

/// CPU per end and bandwidth per direction over `seconds` of a connected call, after a
/// second's warm-up.
async fn measure(sender: &Session, seconds: u64) -> String {
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = sender.stats();
    let (cpu0, wall0) = (cpu_seconds(), Instant::now());
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let (cpu1, wall) = (cpu_seconds(), wall0.elapsed().as_secs_f64());
    let after = sender.stats();
    let (bytes, frames) =
        (after.payload_bytes_sent - before.payload_bytes_sent, after.frames_sent - before.frames_sent);
    let per_end = (cpu1 - cpu0) / wall / 2.0 * 100.0;
    let payload_kbps = bytes as f64 * 8.0 / wall / 1000.0;
    let wire_kbps = (bytes + frames * HEADER_BYTES) as f64 * 8.0 / wall / 1000.0;
    format!("CPU {per_end:.1} % of a core per end; {payload_kbps:.1} kbit/s Opus, {wire_kbps:.1} kbit/s on the wire per direction")
}
