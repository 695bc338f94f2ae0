//! What a call plays and records: 20 ms frames of 48 kHz mono PCM, from a [`Source`]
//! into a [`Sink`]. Files ([`crate::wav`]) and, later, sound devices implement them;
//! benchmarks implement their own.

use std::time::Duration;

pub use crate::wav::{AudioError, FRAME_SAMPLES, SAMPLE_RATE};

/// One frame's duration.
pub const FRAME: Duration = Duration::from_millis(20);

/// One 20 ms frame of 48 kHz mono PCM.
pub type Frame = [i16; FRAME_SAMPLES];

/// Where a call's outgoing audio comes from: asked for one frame every 20 ms.
pub trait Source: Send {
    /// The next 20 ms. A source that has run dry gives silence.
    fn next_frame(&mut self) -> Frame;
}

/// Where a call's incoming audio goes: handed one frame every 20 ms once playout
/// has started.
pub trait Sink: Send {
    /// Takes one frame.
    fn write(&mut self, frame: &Frame) -> Result<(), AudioError>;
    /// Called once when the call ends: make what was written whole (a file's header).
    fn finish(self: Box<Self>) -> Result<(), AudioError>;
}

/// A source of silence (no input chosen).
#[derive(Debug, Default)]
pub struct Silence;

impl Source for Silence {
    fn next_frame(&mut self) -> Frame {
        [0; FRAME_SAMPLES]
    }
}

/// A sink that drops what it gets (no output chosen).
#[derive(Debug, Default)]
pub struct Discard;

impl Sink for Discard {
    fn write(&mut self, _frame: &Frame) -> Result<(), AudioError> {
        Ok(())
    }
    fn finish(self: Box<Self>) -> Result<(), AudioError> {
        Ok(())
    }
}

impl Source for crate::wav::WavSource {
    fn next_frame(&mut self) -> Frame {
        crate::wav::WavSource::next_frame(self)
    }
}

impl Sink for crate::wav::WavSink {
    fn write(&mut self, frame: &Frame) -> Result<(), AudioError> {
        crate::wav::WavSink::write(self, frame)
    }
    fn finish(self: Box<Self>) -> Result<(), AudioError> {
        crate::wav::WavSink::finish(*self)
    }
}

/// A frame's level for meters: RMS over full scale, 0.0 (silence) to 1.0.
pub fn level(frame: &Frame) -> f32 {
    let sum: f64 = frame.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    ((sum / FRAME_SAMPLES as f64).sqrt() / 32768.0) as f32
}
