//! A test call with a tone each way, as the call tests and the NAT test place it.

use std::path::PathBuf;
use std::process::{Child, Stdio};

use kith_call::{tone, wav};

use crate::Peer;

/// Seconds of media each test call carries.
pub const CALL_SECONDS: f64 = 3.0;

/// A call of [`CALL_SECONDS`] with a tone each way: Alice sends 440 Hz, Bob 660 Hz,
/// each records what it hears.
pub struct ToneCall {
    _dir: tempfile::TempDir,
    /// Alice's 440 Hz input.
    pub a_in: PathBuf,
    /// Bob's 660 Hz input.
    pub b_in: PathBuf,
    /// What Alice heard.
    pub a_out: PathBuf,
    /// What Bob heard.
    pub b_out: PathBuf,
}

impl ToneCall {
    /// The two tone files, in a directory of their own.
    pub fn new() -> ToneCall {
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name);
        let call = ToneCall {
            a_in: path("a440.wav"),
            b_in: path("b660.wav"),
            a_out: path("alice-heard.wav"),
            b_out: path("bob-heard.wav"),
            _dir: dir,
        };
        // Longer than the call: the tone is sent for the whole call.
        wav::write_mono(&call.a_in, &tone::sine(440.0, CALL_SECONDS + 2.0, 8000)).unwrap();
        wav::write_mono(&call.b_in, &tone::sine(660.0, CALL_SECONDS + 2.0, 8000)).unwrap();
        call
    }

    /// `alice` calls Bob for [`CALL_SECONDS`] (`kith call --json`, running).
    pub fn place(&self, alice: &Peer) -> Child {
        let (input, output) = (self.a_in.to_str().unwrap(), self.a_out.to_str().unwrap());
        let duration = CALL_SECONDS.to_string();
        let args = ["call", "Bob", "--input", input, "--output", output, "--duration", &duration, "--json"];
        alice.command(&args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
    }

    /// `bob` answers with his tone (the call `prefix`, or the only one ringing).
    pub fn answer(&self, bob: &Peer, prefix: Option<&str>) {
        let mut args = vec!["answer"];
        args.extend(prefix);
        args.extend(["--input", self.b_in.to_str().unwrap(), "--output", self.b_out.to_str().unwrap()]);
        bob.ok(&args);
    }

    /// Each side heard the other's tone, within 5 Hz, for at least 90 % of the call,
    /// and not its own.
    pub fn assert_each_heard_the_other(&self) {
        self.assert_each_heard_at_least(0.9);
    }

    /// Each side heard the other's tone, within 5 Hz, for at least `share` of the
    /// call, and not its own.
    pub fn assert_each_heard_at_least(&self, share: f64) {
        for (heard, sent_hz, name) in [(&self.b_out, 440.0, "Bob"), (&self.a_out, 660.0, "Alice")] {
            let samples = wav::read_mono(heard).unwrap();
            let dominant = tone::dominant_frequency(&samples).unwrap_or_else(|| panic!("{name} recorded silence"));
            assert!((dominant - sent_hz).abs() <= 5.0, "{name} heard {dominant:.1} Hz, expected {sent_hz}");
            let seconds = tone::tone_seconds(&samples, sent_hz);
            let recorded = samples.len() as f64 / 48_000.0;
            eprintln!("{name} heard {seconds:.2} s of the {sent_hz} Hz tone in {recorded:.2} s recorded");
            assert!(seconds >= share * CALL_SECONDS, "{name} heard {seconds:.2} s of the {sent_hz} Hz tone in {recorded:.2} s recorded");
            let own = if sent_hz == 440.0 { 660.0 } else { 440.0 };
            assert!(tone::tone_seconds(&samples, own) < 0.2, "{name} heard its own tone");
        }
    }
}


impl Default for ToneCall {
    fn default() -> ToneCall {
        ToneCall::new()
    }
}
