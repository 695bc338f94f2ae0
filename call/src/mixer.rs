//! What a session receives: one or more incoming streams (one in a 1:1 call, one per
//! speaker in a room), each with its own jitter buffer and decoder, mixed into one
//! frame per playout tick.

use bytes::Bytes;

use crate::audio::{FRAME_SAMPLES, Frame, level};
use crate::codec::{CodecError, VoiceDecoder};
use crate::jitter::{JitterBuffer, JitterStats, Playout};
use crate::speech::SpeechDetector;

/// Frames a stream's jitter buffer may hold.
const CAPACITY: usize = 50;

/// Missing frames in a row that are concealed (100 ms); past them the stream is
/// silent until packets come again: concealment stretched further only rings on (a
/// speaker who left a room would echo for half a second).
const MAX_CONCEALED_RUN: u32 = 5;

struct Incoming {
    jitter: JitterBuffer,
    decoder: VoiceDecoder,
    lost_run: u32,
    /// The SSRC of its latest packet (a room's forwarder names its slots by SSRC).
    ssrc: Option<u32>,
    speech: SpeechDetector,
}

/// The incoming streams of a session.
pub struct Mixer {
    depth: usize,
    streams: Vec<Incoming>,
    /// Streams that started or stopped speaking since [`Mixer::take_speaking`].
    speaking: Vec<(u32, bool)>,
}

/// One playout tick's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mixed {
    /// The sum of every playing stream's frame (clamped).
    pub frame: Frame,
    /// How many of those frames were rebuilt (FEC) or concealed (PLC).
    pub concealed: u64,
}

impl Mixer {
    /// No streams yet; each stream's buffer will start playout at `depth` frames.
    pub fn new(depth: usize) -> Mixer {
        Mixer { depth: depth.max(1), streams: Vec::new(), speaking: Vec::new() }
    }

    /// A new incoming stream; its index for [`Mixer::push`].
    pub fn add_stream(&mut self) -> Result<usize, CodecError> {
        self.streams.push(Incoming {
            jitter: JitterBuffer::new(self.depth, CAPACITY),
            decoder: VoiceDecoder::new()?,
            lost_run: 0,
            ssrc: None,
            speech: SpeechDetector::default(),
        });
        Ok(self.streams.len() - 1)
    }

    /// A packet of stream `stream`, sent as `ssrc` (an unknown index is ignored).
    pub fn push(&mut self, stream: usize, ssrc: u32, seq: u16, payload: Bytes) {
        if let Some(incoming) = self.streams.get_mut(stream) {
            incoming.ssrc = Some(ssrc);
            incoming.jitter.push(seq, payload);
        }
    }

    /// The streams (by SSRC) that started (`true`) or stopped speaking since the last
    /// call, in order.
    pub fn take_speaking(&mut self) -> Vec<(u32, bool)> {
        std::mem::take(&mut self.speaking)
    }

    /// One tick: every stream's next frame, decoded, rebuilt or concealed, mixed;
    /// `None` while no stream plays (all still priming, or none).
    pub fn tick(&mut self) -> Option<Mixed> {
        let mut sum = [0i32; FRAME_SAMPLES];
        let (mut playing, mut concealed) = (false, 0);
        for incoming in &mut self.streams {
            let frame = match incoming.jitter.pop() {
                Playout::Waiting => {
                    note_speech(incoming, 0.0, &mut self.speaking);
                    continue;
                }
                Playout::Frame(packet) => {
                    incoming.lost_run = 0;
                    match incoming.decoder.decode(&packet) {
                        Ok(frame) => frame,
                        Err(_) => {
                            concealed += 1;
                            incoming.decoder.recover(None)
                        }
                    }
                }
                Playout::Lost { next } => {
                    incoming.lost_run += 1;
                    if incoming.lost_run > MAX_CONCEALED_RUN && next.is_none() {
                        note_speech(incoming, 0.0, &mut self.speaking);
                        continue;
                    }
                    concealed += 1;
                    incoming.decoder.recover(next.as_deref())
                }
            };
            playing = true;
            note_speech(incoming, level(&frame), &mut self.speaking);
            for (acc, s) in sum.iter_mut().zip(frame) {
                *acc += i32::from(s);
            }
        }
        playing.then(|| {
            let mut frame = [0i16; FRAME_SAMPLES];
            for (out, s) in frame.iter_mut().zip(sum) {
                *out = s.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16;
            }
            Mixed { frame, concealed }
        })
    }

    /// The jitter buffers' counters, summed over the streams.
    pub fn stats(&self) -> JitterStats {
        self.streams.iter().map(|s| s.jitter.stats()).fold(JitterStats::default(), |a, b| JitterStats {
            received: a.received + b.received,
            late: a.late + b.late,
            duplicate: a.duplicate + b.duplicate,
            overflow: a.overflow + b.overflow,
            played: a.played + b.played,
            lost: a.lost + b.lost,
            dropped_for_latency: a.dropped_for_latency + b.dropped_for_latency,
        })
    }

    /// How many streams came in.
    pub fn streams(&self) -> usize {
        self.streams.len()
    }
}

/// Feeds a stream's frame level to its speech detector, noting a change.
fn note_speech(incoming: &mut Incoming, level: f32, changes: &mut Vec<(u32, bool)>) {
    if let (Some(change), Some(ssrc)) = (incoming.speech.update(level), incoming.ssrc) {
        changes.push((ssrc, change));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::codec::VoiceEncoder;
    use crate::tone;

    fn packets(hz: f64, n: usize) -> Vec<Bytes> {
        let samples = tone::sine(hz, n as f64 * 0.02, 6000);
        let mut enc = VoiceEncoder::new(0).unwrap();
        samples
            .chunks_exact(FRAME_SAMPLES)
            .map(|c| Bytes::copy_from_slice(enc.encode(&c.try_into().unwrap()).unwrap()))
            .collect()
    }

    #[test]
    fn two_streams_are_mixed_and_each_keeps_its_own_order() {
        let mut mixer = Mixer::new(2);
        assert_eq!(mixer.tick(), None, "nothing plays before a stream comes");
        let (a, b) = (mixer.add_stream().unwrap(), mixer.add_stream().unwrap());
        let (pa, pb) = (packets(440.0, 100), packets(660.0, 100));
        let mut out = Vec::new();
        for (i, packet) in pa.iter().enumerate() {
            // Stream b's numbering starts elsewhere and its packets come in pairs,
            // swapped: the buffers sort each stream on its own.
            mixer.push(a, 0xA, i as u16, packet.clone());
            let j = if i % 2 == 0 { i + 1 } else { i - 1 };
            mixer.push(b, 0xB, 40_000 + j as u16, pb[j].clone());
            if let Some(mixed) = mixer.tick() {
                out.extend_from_slice(&mixed.frame);
            }
        }
        assert!(tone::tone_seconds(&out, 440.0) >= 1.5, "{}", tone::tone_seconds(&out, 440.0));
        assert!(tone::tone_seconds(&out, 660.0) >= 1.5, "{}", tone::tone_seconds(&out, 660.0));
        assert_eq!(mixer.streams(), 2);
        assert_eq!(mixer.stats().received, 200);
        let mut started = mixer.take_speaking();
        started.sort_unstable();
        assert_eq!(started, vec![(0xA, true), (0xB, true)], "both tones are speech");
        // The packets stop: both streams fall silent, then stop speaking.
        for _ in 0..30 {
            mixer.tick();
        }
        let mut stopped = mixer.take_speaking();
        stopped.sort_unstable();
        assert_eq!(stopped, vec![(0xA, false), (0xB, false)]);
        mixer.push(7, 0, 0, Bytes::new());
    }
}
