//! Who is speaking: a voice activity decision per incoming stream from the level of
//! its decoded frames, with hysteresis so that a speaker's short pauses between words
//! do not flicker.

/// Level (RMS, 0.0–1.0) a frame must reach to count as speech: about −40 dBFS, above
/// Opus's comfort noise and a quiet room, below any voice near a microphone.
const SPEECH_LEVEL: f32 = 0.01;

/// Frames of speech in a row that start speaking (40 ms: a click is not a word).
const START_FRAMES: u32 = 2;

/// Frames without speech in a row that stop it (400 ms: a pause between words is not
/// the end of speaking).
const STOP_FRAMES: u32 = 20;

/// Whether one stream is speaking, fed one frame level at a time.
#[derive(Debug, Default, Clone)]
pub struct SpeechDetector {
    speaking: bool,
    run: u32,
}

impl SpeechDetector {
    /// Takes the next frame's level; returns the new state when it changed.
    pub fn update(&mut self, level: f32) -> Option<bool> {
        let voiced = level >= SPEECH_LEVEL;
        if voiced == self.speaking {
            self.run = 0;
            return None;
        }
        self.run += 1;
        let needed = if voiced { START_FRAMES } else { STOP_FRAMES };
        if self.run < needed {
            return None;
        }
        self.speaking = voiced;
        self.run = 0;
        Some(voiced)
    }

    /// Whether it is speaking now.
    pub fn speaking(&self) -> bool {
        self.speaking
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speech_starts_after_two_frames_and_survives_short_pauses() {
        let mut d = SpeechDetector::default();
        assert_eq!(d.update(0.2), None, "one loud frame is a click");
        assert_eq!(d.update(0.0), None);
        assert_eq!(d.update(0.2), None);
        assert_eq!(d.update(0.2), Some(true), "two in a row are speech");
        // A 200 ms pause between words.
        for _ in 0..10 {
            assert_eq!(d.update(0.001), None);
        }
        assert_eq!(d.update(0.3), None, "still speaking");
        let changes: Vec<_> = (0..STOP_FRAMES).filter_map(|_| d.update(0.0)).collect();
        assert_eq!(changes, vec![false], "400 ms of silence ends it");
        assert!(!d.speaking());
    }
}
