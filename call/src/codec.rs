//! Opus at 48 kHz mono, one 20 ms frame per packet: the only format kith's calls use.
//!
//! Encoding asks for in-band FEC, so a lost packet can be rebuilt from the one after
//! it ([`VoiceDecoder::recover`]); with nothing after it, the decoder conceals the gap
//! (Opus PLC).

use opus_rs::{Application, OpusDecoder, OpusEncoder};

use crate::audio::{FRAME_SAMPLES, Frame, SAMPLE_RATE};

/// Largest Opus packet we produce or accept (RFC 6716 allows 1275 bytes per frame).
pub const MAX_PACKET: usize = 1275;

/// Target bitrate: wideband speech with room for music and FEC.
const BITRATE_BPS: i32 = 32_000;

/// What went wrong in the codec (a malformed packet, or a frame the codec refused).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("opus: {0}")]
pub struct CodecError(pub &'static str);

/// Encodes 20 ms frames of mono PCM into Opus packets.
pub struct VoiceEncoder {
    inner: OpusEncoder,
    out: Vec<u8>,
}

impl VoiceEncoder {
    /// A VoIP encoder at 32 kbit/s with in-band FEC, tuned for `loss_percent` packet loss.
    pub fn new(loss_percent: u8) -> Result<VoiceEncoder, CodecError> {
        let mut inner = OpusEncoder::new(SAMPLE_RATE as i32, 1, Application::Voip).map_err(CodecError)?;
        inner.bitrate_bps = BITRATE_BPS;
        inner.use_inband_fec = true;
        inner.packet_loss_perc = i32::from(loss_percent.min(100));
        Ok(VoiceEncoder { inner, out: vec![0; MAX_PACKET] })
    }

    /// One frame in, one packet out (borrowed until the next call).
    pub fn encode(&mut self, frame: &Frame) -> Result<&[u8], CodecError> {
        let n = self.inner.encode_i16(frame, FRAME_SAMPLES, &mut self.out).map_err(CodecError)?;
        Ok(&self.out[..n])
    }
}

/// Decodes Opus packets into 20 ms frames, concealing or rebuilding lost ones.
pub struct VoiceDecoder {
    inner: OpusDecoder,
    pcm: Vec<f32>,
}

impl VoiceDecoder {
    /// A mono decoder at 48 kHz.
    pub fn new() -> Result<VoiceDecoder, CodecError> {
        Ok(VoiceDecoder { inner: OpusDecoder::new(SAMPLE_RATE as i32, 1).map_err(CodecError)?, pcm: vec![0.0; FRAME_SAMPLES] })
    }

    /// The frame a packet carries. A packet longer than [`MAX_PACKET`] or one the codec
    /// cannot parse is an error; the caller conceals that frame instead.
    pub fn decode(&mut self, packet: &[u8]) -> Result<Frame, CodecError> {
        if packet.len() > MAX_PACKET {
            return Err(CodecError("packet too long"));
        }
        if packet.len() <= 1 {
            // A ToC-only packet would be concealment, not data: refuse, so the
            // caller's counts stay honest.
            return Err(CodecError("empty packet"));
        }
        // The packet comes from the network, and a young codec port may have a bug
        // left: a panic in it costs this frame (concealed by the caller), not the call.
        let (inner, pcm) = (&mut self.inner, &mut self.pcm);
        let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| inner.decode(packet, FRAME_SAMPLES, pcm)));
        let n = decoded.map_err(|_| CodecError("the decoder failed on this packet"))?.map_err(CodecError)?;
        Ok(self.frame(n))
    }

    /// A frame for a lost packet: rebuilt from `next`'s in-band FEC when it carries
    /// some, else concealed from what came before.
    pub fn recover(&mut self, next: Option<&[u8]>) -> Frame {
        let (inner, pcm) = (&mut self.inner, &mut self.pcm);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match next {
            Some(next) if next.len() > 1 && next.len() <= MAX_PACKET => inner.decode_fec(next, FRAME_SAMPLES, pcm),
            _ => inner.decode(&[], FRAME_SAMPLES, pcm),
        }));
        match result.unwrap_or(Err("the decoder failed")) {
            Ok(n) => self.frame(n),
            // Concealment can only fail on a bad frame size, which is fixed here;
            // silence is the safe answer anyway.
            Err(_) => [0; FRAME_SAMPLES],
        }
    }

    fn frame(&self, n: usize) -> Frame {
        let mut frame = [0i16; FRAME_SAMPLES];
        for (out, sample) in frame.iter_mut().zip(&self.pcm[..n.min(FRAME_SAMPLES)]) {
            *out = (sample * 32768.0).clamp(-32768.0, 32767.0) as i16;
        }
        frame
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn tone(freq: f64, index: usize) -> Frame {
        let mut frame = [0i16; FRAME_SAMPLES];
        for (i, s) in frame.iter_mut().enumerate() {
            let t = (index * FRAME_SAMPLES + i) as f64 / f64::from(SAMPLE_RATE);
            *s = (8000.0 * (2.0 * std::f64::consts::PI * freq * t).sin()) as i16;
        }
        frame
    }

    fn energy(frame: &Frame) -> f64 {
        frame.iter().map(|&s| f64::from(s) * f64::from(s)).sum::<f64>() / FRAME_SAMPLES as f64
    }

    #[test]
    fn a_tone_survives_the_round_trip_and_losses_are_filled() {
        let mut enc = VoiceEncoder::new(10).unwrap();
        let mut dec = VoiceDecoder::new().unwrap();
        let packets: Vec<Vec<u8>> = (0..50).map(|i| enc.encode(&tone(440.0, i)).unwrap().to_vec()).collect();
        assert!(packets.iter().all(|p| p.len() > 1 && p.len() <= MAX_PACKET));
        let mut out = Vec::new();
        for (i, p) in packets.iter().enumerate() {
            if i == 30 {
                out.push(dec.recover(packets.get(31).map(Vec::as_slice)));
            } else if i == 40 {
                out.push(dec.recover(None));
            } else {
                out.push(dec.decode(p).unwrap());
            }
        }
        // After the codec's start-up, decoded frames carry the tone's energy,
        // including the rebuilt and the concealed one.
        for (i, frame) in out.iter().enumerate().skip(5) {
            assert!(energy(frame) > 1.0e6, "frame {i} is near silent: {}", energy(frame));
        }
    }

    #[test]
    fn bad_packets_are_errors_not_panics() {
        let mut dec = VoiceDecoder::new().unwrap();
        assert!(dec.decode(&[]).is_err());
        assert!(dec.decode(&vec![0xff; MAX_PACKET + 1]).is_err());
        for seed in 0u32..200 {
            let junk: Vec<u8> = (0..(seed % 97 + 2)).map(|i| (seed.wrapping_mul(2_654_435_761).wrapping_add(i * 7919) >> 8) as u8).collect();
            let _ = dec.decode(&junk);
        }
        let _ = dec.recover(Some(&[0xfc, 0xff, 0xff]));
    }
}
