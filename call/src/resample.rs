//! Linear resampling between a sound device's rate and the calls' 48 kHz. Speech in a
//! call is band-limited well below either Nyquist frequency, so linear interpolation is
//! enough; the state carries across buffers so there is no click at their edges.

/// A streaming linear resampler for one channel.
#[derive(Debug, Clone)]
pub struct Resampler {
    /// Input samples per output sample.
    step: f64,
    /// Where the next output sample falls, in input samples after `last`.
    pos: f64,
    /// The last input sample of the previous buffer.
    last: f32,
}

impl Resampler {
    /// From `from_hz` to `to_hz` (both above zero).
    pub fn new(from_hz: u32, to_hz: u32) -> Resampler {
        Resampler { step: f64::from(from_hz.max(1)) / f64::from(to_hz.max(1)), pos: 1.0, last: 0.0 }
    }

    /// Resamples `input`, appending to `out`.
    pub fn process(&mut self, input: &[f32], out: &mut Vec<f32>) {
        // Sample `i` of the stream is `last` for i = 0 and input[i - 1] after it.
        let at = |i: usize| if i == 0 { self.last } else { input[i - 1] };
        let len = input.len() as f64;
        while self.pos <= len {
            let i = self.pos.floor() as usize;
            let frac = (self.pos - self.pos.floor()) as f32;
            let a = at(i);
            let b = if i < input.len() { input[i] } else { a };
            out.push(a + (b - a) * frac);
            self.pos += self.step;
        }
        self.pos -= len;
        if let Some(&last) = input.last() {
            self.last = last;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_same_rate_passes_samples_through() {
        let mut r = Resampler::new(48_000, 48_000);
        let mut out = Vec::new();
        let input: Vec<f32> = (0..100).map(|i| i as f32).collect();
        r.process(&input[..37], &mut out);
        r.process(&input[37..], &mut out);
        assert_eq!(out, input);
    }

    #[test]
    fn rates_convert_in_length_and_keep_a_tone() {
        for (from, to) in [(44_100, 48_000), (48_000, 44_100), (16_000, 48_000), (48_000, 8_000)] {
            let mut r = Resampler::new(from, to);
            let input: Vec<f32> =
                (0..from).map(|i| (2.0 * std::f32::consts::PI * 440.0 * i as f32 / from as f32).sin()).collect();
            let mut out = Vec::new();
            for chunk in input.chunks(441) {
                r.process(chunk, &mut out);
            }
            assert!((out.len() as i64 - i64::from(to)).abs() <= 2, "{from}→{to}: {}", out.len());
            // The tone is still a 440 Hz sine at the new rate.
            let worst = out
                .iter()
                .enumerate()
                .skip(2)
                .map(|(i, s)| (s - (2.0 * std::f32::consts::PI * 440.0 * i as f32 / to as f32).sin()).abs())
                .fold(0.0f32, f32::max);
            assert!(worst < 0.1, "{from}→{to}: off by {worst}");
        }
    }
}
