//! Throughput of end-to-end sealing: sessions versus one handshake per message.
//!
//! Seals and opens `N` 100-byte messages from one sender to one recipient, first with
//! a single long-lived [`Sealer`]/[`Opener`] pair (one Noise `X` handshake for the whole
//! run), then with sessions of one message and an opener without a session cache (one
//! handshake per message on each side: the cost of sealing without sessions).
//!
//! Then the same messages inside the 1:1 ratchet ([`Ratchets`], Olm) within a session
//! envelope, as the node sends them between accepted contacts: one way (a symmetric
//! chain step per message), ping-pong (a Diffie-Hellman step per message), and with
//! the state written to a real store after every message (the node writes it once
//! per batch). Last, starting a session from an offer.
//!
//! Run with `cargo run --release -p kith-p2p --example seal_bench [N]`; debug builds
//! measure the debug build, not the code.

use std::time::{Duration, Instant};

use kith_p2p::{
    envelope::{OPENER_CACHE_CAPACITY, Opener, Sealer, SealerConfig},
    identity::Identity,
    payload::Payload,
    ratchet::Ratchets,
};
use kith_storage::Store;

/// Messages per run unless given on the command line.
const DEFAULT_MESSAGES: usize = 20_000;

/// Plaintext size of each message: a typical short chat line.
const MESSAGE_BYTES: usize = 100;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = match std::env::args().nth(1) {
        Some(arg) => arg.parse()?,
        None => DEFAULT_MESSAGES,
    };
    let alice = Identity::generate();
    let bob = Identity::generate();
    let recipient = bob.e2e_public();
    let msg = vec![0x42u8; MESSAGE_BYTES];

    // With sessions: one handshake, then only AEAD per message.
    let mut sealer = Sealer::new(&alice, SealerConfig::default());
    let start = Instant::now();
    let envelopes = (0..n)
        .map(|_| sealer.seal(&recipient, &msg))
        .collect::<Result<Vec<_>, _>>()?;
    let seal = start.elapsed();
    let mut opener = Opener::new(&bob, OPENER_CACHE_CAPACITY);
    let start = Instant::now();
    for env in &envelopes {
        let opened = opener.open(env)?;
        assert_eq!(opened.plaintext.len(), MESSAGE_BYTES);
    }
    let open = start.elapsed();
    let envelope_bytes = envelopes.first().map_or(0, Vec::len);
    report("session", n, seal, open);

    // Without sessions: a new handshake for every message on both sides. A sealer whose
    // sessions last one message is a fresh sealer per message, minus the one-off cost of
    // constructing it (which signs the E2E binding).
    let mut per_message = SealerConfig::default();
    per_message.session_max_messages = 1;
    let mut sealer = Sealer::new(&alice, per_message);
    let start = Instant::now();
    let envelopes = (0..n)
        .map(|_| sealer.seal(&recipient, &msg))
        .collect::<Result<Vec<_>, _>>()?;
    let seal = start.elapsed();
    let mut opener = Opener::new(&bob, 0);
    let start = Instant::now();
    for env in &envelopes {
        opener.open(env)?;
    }
    let open = start.elapsed();
    report("no-session", n, seal, open);

    println!("envelope size for a {MESSAGE_BYTES}-byte message: {envelope_bytes} bytes");
    ratchet_runs(&alice, &bob, n)?;
    Ok(())
}

/// One side of a ratcheted conversation: its sealer, opener and ratchets over a real
/// store in a temp dir.
struct Side {
    identity: Identity,
    /// Its E2E public key, computed once (deriving it is an X25519 operation).
    e2e: [u8; 32],
    sealer: Sealer,
    opener: Opener,
    ratchets: Ratchets,
    _store: Store,
    _dir: tempfile::TempDir,
}

impl Side {
    fn new(identity: &Identity) -> Result<Side, Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store = Store::open(&dir.path().join("db"))?;
        let ratchets = Ratchets::load(store.ratchet(), identity, 0)?;
        Ok(Side {
            identity: identity.clone(),
            e2e: identity.e2e_public(),
            sealer: Sealer::new(identity, SealerConfig::default()),
            opener: Opener::new(identity, OPENER_CACHE_CAPACITY),
            ratchets,
            _store: store,
            _dir: dir,
        })
    }

    /// Ratchet, wrap, seal: what the node does per payload to an accepted contact.
    fn seal(&mut self, to: &Side, msg: &[u8], persist: bool) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
        let (kind, body) = self.ratchets.seal(&to.identity.peer_id(), msg)?.ok_or("no session")?;
        if persist {
            self.ratchets.persist(0)?;
        }
        let wrapped = Payload::Ratcheted { kind, body }.encode()?;
        Ok(self.sealer.seal(&to.e2e, &wrapped)?)
    }

    /// Open, unwrap, ratchet.
    fn open(&mut self, envelope: &[u8], persist: bool) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
        let opened = self.opener.open(envelope)?;
        let Payload::Ratcheted { kind, body } = Payload::decode(&opened.plaintext)? else { return Err("not ratcheted".into()) };
        let plaintext = self.ratchets.open(&opened.sender, kind, &body, 0)?;
        self.ratchets.record(kith_p2p::ratchet::copy_digest(kind, &body));
        if persist {
            self.ratchets.persist(0)?;
        }
        Ok(plaintext)
    }
}

fn ratchet_runs(alice: &Identity, bob: &Identity, n: usize) -> Result<(), Box<dyn std::error::Error>> {
    let msg = vec![0x42u8; MESSAGE_BYTES];
    for (label, persist) in [("ratchet", false), ("ratchet+db", true)] {
        let (mut a, mut b) = (Side::new(alice)?, Side::new(bob)?);
        let offer = b.ratchets.offer(&b.identity, &alice.peer_id(), false)?;
        a.ratchets.learn(&bob.peer_id(), &offer)?;
        // Establish the session both ways first, so the run is all normal messages.
        let first = a.seal(&b, &msg, persist)?;
        b.open(&first, persist)?;
        let reply = b.seal(&a, &msg, persist)?;
        a.open(&reply, persist)?;

        let start = Instant::now();
        let envelopes = (0..n).map(|_| a.seal(&b, &msg, persist)).collect::<Result<Vec<_>, _>>()?;
        let seal = start.elapsed();
        let start = Instant::now();
        for env in &envelopes {
            assert_eq!(b.open(env, persist)?.len(), MESSAGE_BYTES);
        }
        let open = start.elapsed();
        report(label, n, seal, open);
        if !persist {
            println!("ratcheted envelope size for a {MESSAGE_BYTES}-byte message: {} bytes", envelopes[0].len());
        }

        // Ping-pong: every message answers the last, so each one is a DH ratchet step.
        let rounds = n / 10;
        let (mut seal, mut open) = (Duration::ZERO, Duration::ZERO);
        for i in 0..rounds {
            let (from, to) = if i % 2 == 0 { (&mut a, &mut b) } else { (&mut b, &mut a) };
            let start = Instant::now();
            let env = from.seal(to, &msg, persist)?;
            seal += start.elapsed();
            let start = Instant::now();
            to.open(&env, persist)?;
            open += start.elapsed();
        }
        report(&format!("{label} pp"), rounds, seal, open);
    }

    // Starting sessions: an offer, the first (pre-key) message, the inbound session.
    let rounds = (n / 100).max(10);
    let (mut offer_time, mut first_seal, mut first_open) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let mut b = Side::new(bob)?;
    for _ in 0..rounds {
        let mut a = Side::new(&Identity::generate())?;
        let start = Instant::now();
        let offer = b.ratchets.offer(&b.identity, &a.identity.peer_id(), false)?;
        offer_time += start.elapsed();
        a.ratchets.learn(&bob.peer_id(), &offer)?;
        let start = Instant::now();
        let env = a.seal(&b, &msg, false)?;
        first_seal += start.elapsed();
        let start = Instant::now();
        b.open(&env, false)?;
        first_open += start.elapsed();
    }
    let per = |d: Duration| d.as_secs_f64() * 1e6 / rounds as f64;
    println!(
        "session start ({rounds}): offer {:.1} µs, first seal {:.1} µs, first open {:.1} µs",
        per(offer_time),
        per(first_seal),
        per(first_open)
    );
    Ok(())
}

fn report(label: &str, n: usize, seal: Duration, open: Duration) {
    let rate = |d: Duration| n as f64 / d.as_secs_f64().max(f64::MIN_POSITIVE);
    println!(
        "{label:>10}: seal {:>10.0} msg/s ({:>7.2} µs/msg)   open {:>10.0} msg/s ({:>7.2} µs/msg)",
        rate(seal),
        seal.as_secs_f64() * 1e6 / n as f64,
        rate(open),
        open.as_secs_f64() * 1e6 / n as f64,
    );
}
