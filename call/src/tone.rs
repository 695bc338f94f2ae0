//! Test signals and their analysis: sine tones in, and which tone a recording carries
//! and for how long (Goertzel filters). Used by the end-to-end call tests and the call
//! benchmark to check what crossed a call without listening to it.

use crate::wav::SAMPLE_RATE;

/// RMS below which a stretch of audio counts as silence.
pub const SILENCE_RMS: f64 = 100.0;

/// Analysis window of [`tone_seconds`]: 100 ms.
const WINDOW: usize = SAMPLE_RATE as usize / 10;

/// A sine of `freq_hz` lasting `seconds` at peak `amplitude`.
pub fn sine(freq_hz: f64, seconds: f64, amplitude: i16) -> Vec<i16> {
    let n = (seconds * f64::from(SAMPLE_RATE)) as usize;
    (0..n)
        .map(|i| {
            let t = i as f64 / f64::from(SAMPLE_RATE);
            (f64::from(amplitude) * (2.0 * std::f64::consts::PI * freq_hz * t).sin()) as i16
        })
        .collect()
}

/// The root mean square of `samples` (0 for none).
pub fn rms(samples: &[i16]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    (samples.iter().map(|&s| f64::from(s) * f64::from(s)).sum::<f64>() / samples.len() as f64).sqrt()
}

/// The power of `samples` at `freq_hz` (Goertzel), divided by the length squared so
/// windows of different lengths compare.
pub fn goertzel_power(samples: &[i16], freq_hz: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let n = samples.len() as f64;
    goertzel_power_at(samples, freq_hz, f64::from(SAMPLE_RATE)) / (n * n)
}

/// The strongest frequency between 80 and 4,000 Hz, or `None` for silence. At most 2 s
/// from the middle of the recording are analysed (fast even unoptimised); the scan is
/// in 10 Hz steps, refined to 0.25 Hz around the best.
pub fn dominant_frequency(samples: &[i16]) -> Option<f64> {
    let take = samples.len().min(2 * SAMPLE_RATE as usize);
    let start = (samples.len() - take) / 2;
    let slice = &samples[start..start + take];
    if rms(slice) < SILENCE_RMS {
        return None;
    }
    // The coarse scan on a decimated copy is enough to find the peak's neighbourhood.
    let coarse: Vec<i16> = slice.iter().step_by(4).copied().collect();
    let coarse_power = |f: f64| goertzel_power_at(&coarse, f, f64::from(SAMPLE_RATE) / 4.0);
    let best = (8..=400).map(|i| f64::from(i) * 10.0).max_by(|a, b| coarse_power(*a).total_cmp(&coarse_power(*b)))?;
    let fine = (0..=80).map(|i| best - 10.0 + f64::from(i) * 0.25);
    fine.max_by(|a, b| goertzel_power(slice, *a).total_cmp(&goertzel_power(slice, *b)))
}

/// The Goertzel filter's output power at `freq_hz` for samples taken at `rate`.
fn goertzel_power_at(samples: &[i16], freq_hz: f64, rate: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * freq_hz / rate;
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in samples {
        let s0 = f64::from(x) + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    s1 * s1 + s2 * s2 - coeff * s1 * s2
}

/// How many seconds of `samples` carry the tone `freq_hz`: the number of 100 ms
/// windows that are not silent and whose power at `freq_hz` is at least 10× the power
/// at each probe — `freq_hz` × 0.9 and × 1.1 (its neighbourhood: noise and other tones
/// are broad there, a pure tone is not), 250 Hz and 3,000 Hz — times 0.1 s. A mix of
/// tones counts for each of them (the probes avoid whole-fifth neighbours such as 440
/// and 660).
pub fn tone_seconds(samples: &[i16], freq_hz: f64) -> f64 {
    let probes = [freq_hz * 0.9, freq_hz * 1.1, 250.0, 3000.0];
    let count = samples
        .chunks_exact(WINDOW)
        .filter(|w| rms(w) >= SILENCE_RMS)
        .filter(|w| {
            let at = goertzel_power(w, freq_hz);
            probes.iter().filter(|p| (**p - freq_hz).abs() > 20.0).all(|p| at >= 10.0 * goertzel_power(w, *p))
        })
        .count();
    count as f64 * WINDOW as f64 / f64::from(SAMPLE_RATE)
}

/// Whether at least half a second of `samples` carries `freq_hz`.
pub fn contains_tone(samples: &[i16], freq_hz: f64) -> bool {
    tone_seconds(samples, freq_hz) >= 0.5
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn mix(a: &[i16], b: &[i16]) -> Vec<i16> {
        a.iter().zip(b).map(|(x, y)| x / 2 + y / 2).collect()
    }

    fn noise(n: usize) -> Vec<i16> {
        let mut x: u32 = 12345;
        (0..n)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                ((x >> 16) as i16) / 4
            })
            .collect()
    }

    #[test]
    fn finds_a_tone_and_its_duration() {
        let a = sine(440.0, 3.0, 8000);
        let f = dominant_frequency(&a).unwrap();
        assert!((f - 440.0).abs() <= 1.0, "{f}");
        assert!((tone_seconds(&a, 440.0) - 3.0).abs() <= 0.1);
        assert_eq!(tone_seconds(&a, 660.0), 0.0);
        assert!(dominant_frequency(&[0; 48_000]).is_none());
        let mut half = sine(660.0, 1.0, 8000);
        half.extend(std::iter::repeat_n(0, 48_000));
        assert!((tone_seconds(&half, 660.0) - 1.0).abs() <= 0.1);
        let f = dominant_frequency(&sine(1234.5, 1.5, 6000)).unwrap();
        assert!((f - 1234.5).abs() <= 1.0, "{f}");
    }

    #[test]
    fn a_mix_carries_both_tones_and_neither_is_found_in_what_does_not() {
        let both = mix(&sine(440.0, 2.0, 8000), &sine(660.0, 2.0, 8000));
        assert!(tone_seconds(&both, 440.0) >= 1.9);
        assert!(tone_seconds(&both, 660.0) >= 1.9);
        let other = sine(550.0, 2.0, 8000);
        assert_eq!(tone_seconds(&other, 440.0), 0.0);
        assert_eq!(tone_seconds(&other, 660.0), 0.0);
        let hiss = noise(96_000);
        assert!(!contains_tone(&hiss, 440.0) && !contains_tone(&hiss, 660.0));
        assert!(rms(&hiss) > SILENCE_RMS);
    }
}
