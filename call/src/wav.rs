//! Audio files for calls: 16-bit PCM WAV at 48 kHz. A [`WavSource`] reads the whole
//! file at open (mono, or stereo mixed down) and hands it out in 20 ms frames; a
//! [`WavSink`] records frames into a mono file whose header is kept valid as it grows.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The calls' sample rate.
pub const SAMPLE_RATE: u32 = 48_000;

/// Samples in one 20 ms frame.
pub const FRAME_SAMPLES: usize = 960;

/// The longest file a source reads: 30 minutes.
pub const MAX_SOURCE_SECONDS: u32 = 30 * 60;

/// Frames between header updates of a sink (1 s): a killed process leaves a file
/// that plays up to the last update.
const SINK_FLUSH_FRAMES: u64 = 50;

/// What can go wrong with an audio file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AudioError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not a WAV file kith can use.
    #[error("{path}: {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong (the format kith needs is 16-bit PCM at 48 kHz, mono or stereo).
        reason: String,
    },
}

fn error(path: &Path, e: hound::Error) -> AudioError {
    match e {
        hound::Error::IoError(source) => AudioError::Io { path: path.to_owned(), source },
        other => AudioError::Format { path: path.to_owned(), reason: other.to_string() },
    }
}

/// Whether a call can use audio of this format (16-bit integer PCM at 48 kHz, mono
/// or stereo); if not, what is wrong with it.
pub fn check_spec(spec: &hound::WavSpec) -> Result<(), String> {
    if spec.sample_format != hound::SampleFormat::Int || spec.bits_per_sample != 16 {
        return Err(format!(
            "{}-bit {:?} samples; calls need 16-bit integer PCM",
            spec.bits_per_sample, spec.sample_format
        ));
    }
    if spec.sample_rate != SAMPLE_RATE {
        return Err(format!("{} Hz; calls need {SAMPLE_RATE} Hz", spec.sample_rate));
    }
    if !(1..=2).contains(&spec.channels) {
        return Err(format!("{} channels; calls take mono or stereo", spec.channels));
    }
    Ok(())
}

/// A WAV file's audio as a source of 20 ms frames.
#[derive(Debug, Clone)]
pub struct WavSource {
    samples: Vec<i16>,
    at: usize,
}

impl WavSource {
    /// Reads `path`: 16-bit integer PCM at 48 kHz, mono or stereo (mixed down), at most
    /// [`MAX_SOURCE_SECONDS`] long.
    pub fn open(path: &Path) -> Result<WavSource, AudioError> {
        let reader = hound::WavReader::open(path).map_err(|e| error(path, e))?;
        let bad = |reason: String| AudioError::Format { path: path.to_owned(), reason };
        check_spec(&reader.spec()).map_err(bad)?;
        if reader.duration() > MAX_SOURCE_SECONDS * SAMPLE_RATE {
            return Err(bad(format!("longer than {} minutes", MAX_SOURCE_SECONDS / 60)));
        }
        Ok(WavSource { samples: mono_samples(reader, path)?, at: 0 })
    }

    /// A source of these mono samples (tests, benchmarks).
    pub fn from_samples(samples: Vec<i16>) -> WavSource {
        WavSource { samples, at: 0 }
    }

    /// The next 20 ms: zero-padded at the end, silence after it.
    pub fn next_frame(&mut self) -> [i16; FRAME_SAMPLES] {
        let mut frame = [0; FRAME_SAMPLES];
        let end = (self.at + FRAME_SAMPLES).min(self.samples.len());
        if self.at < end {
            frame[..end - self.at].copy_from_slice(&self.samples[self.at..end]);
        }
        self.at = end.max(self.at);
        frame
    }

    /// Whether everything was handed out.
    pub fn finished(&self) -> bool {
        self.at >= self.samples.len()
    }

    /// The file's length.
    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.samples.len() as f64 / f64::from(SAMPLE_RATE))
    }
}

/// A mono 48 kHz WAV file being recorded.
pub struct WavSink {
    writer: hound::WavWriter<BufWriter<File>>,
    path: PathBuf,
    written: u64,
}

impl std::fmt::Debug for WavSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WavSink").field("path", &self.path).field("written", &self.written).finish()
    }
}

fn spec() -> hound::WavSpec {
    hound::WavSpec { channels: 1, sample_rate: SAMPLE_RATE, bits_per_sample: 16, sample_format: hound::SampleFormat::Int }
}

impl WavSink {
    /// Creates (or truncates) `path`.
    pub fn create(path: &Path) -> Result<WavSink, AudioError> {
        let writer = hound::WavWriter::create(path, spec()).map_err(|e| error(path, e))?;
        Ok(WavSink { writer, path: path.to_owned(), written: 0 })
    }

    /// Appends samples; the header is brought up to date every second of audio.
    pub fn write(&mut self, frame: &[i16]) -> Result<(), AudioError> {
        let mut samples = self.writer.get_i16_writer(frame.len() as u32);
        for &s in frame {
            samples.write_sample(s);
        }
        samples.flush().map_err(|e| error(&self.path, e))?;
        self.written += frame.len() as u64;
        if (self.written / FRAME_SAMPLES as u64).is_multiple_of(SINK_FLUSH_FRAMES) {
            self.writer.flush().map_err(|e| error(&self.path, e))?;
        }
        Ok(())
    }

    /// Samples written so far.
    pub fn samples_written(&self) -> u64 {
        self.written
    }

    /// Writes the final header.
    pub fn finish(self) -> Result<(), AudioError> {
        let path = self.path;
        self.writer.finalize().map_err(|e| error(&path, e))
    }
}

/// A whole WAV file as mono samples (any rate is read as is; stereo is mixed down).
pub fn read_mono(path: &Path) -> Result<Vec<i16>, AudioError> {
    mono_samples(hound::WavReader::open(path).map_err(|e| error(path, e))?, path)
}

/// A reader's samples, channels averaged into one.
fn mono_samples(reader: hound::WavReader<std::io::BufReader<File>>, path: &Path) -> Result<Vec<i16>, AudioError> {
    let channels = usize::from(reader.spec().channels.max(1));
    let interleaved = reader.into_samples::<i16>().collect::<Result<Vec<i16>, _>>().map_err(|e| error(path, e))?;
    Ok(interleaved.chunks(channels).map(|c| (c.iter().map(|&s| i32::from(s)).sum::<i32>() / c.len() as i32) as i16).collect())
}

/// Writes `samples` as a mono 48 kHz WAV file.
pub fn write_mono(path: &Path, samples: &[i16]) -> Result<(), AudioError> {
    let mut sink = WavSink::create(path)?;
    sink.write(samples)?;
    sink.finish()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_frames_padding_and_silence_after_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.wav");
        let samples: Vec<i16> = (0..2000).map(|i| (i % 300) as i16).collect();
        write_mono(&path, &samples).unwrap();
        assert_eq!(read_mono(&path).unwrap(), samples);
        let mut source = WavSource::open(&path).unwrap();
        assert_eq!(source.duration(), Duration::from_secs_f64(2000.0 / 48_000.0));
        assert_eq!(source.next_frame()[..], samples[..960]);
        assert_eq!(source.next_frame()[..], samples[960..1920]);
        let last = source.next_frame();
        assert_eq!(last[..80], samples[1920..]);
        assert!(last[80..].iter().all(|&s| s == 0));
        assert!(source.finished());
        assert!(source.next_frame().iter().all(|&s| s == 0));
    }

    #[test]
    fn stereo_is_mixed_down_and_other_formats_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let stereo = dir.path().join("s.wav");
        let mut w = hound::WavWriter::create(&stereo, hound::WavSpec { channels: 2, ..spec() }).unwrap();
        for _ in 0..960 {
            w.write_sample(100i16).unwrap();
            w.write_sample(300i16).unwrap();
        }
        w.finalize().unwrap();
        assert!(WavSource::open(&stereo).unwrap().next_frame().iter().all(|&s| s == 200));

        let slow = dir.path().join("r.wav");
        let mut w = hound::WavWriter::create(&slow, hound::WavSpec { sample_rate: 44_100, ..spec() }).unwrap();
        w.write_sample(0i16).unwrap();
        w.finalize().unwrap();
        let err = WavSource::open(&slow).unwrap_err();
        assert!(matches!(err, AudioError::Format { .. }) && err.to_string().contains("44100 Hz"), "{err}");

        let text = dir.path().join("t.wav");
        std::fs::write(&text, b"not a wav file at all").unwrap();
        assert!(matches!(WavSource::open(&text).unwrap_err(), AudioError::Format { .. }));
        let missing = dir.path().join("missing.wav");
        assert!(matches!(WavSource::open(&missing).unwrap_err(), AudioError::Io { .. }));
        assert!(matches!(WavSink::create(&dir.path().join("no/such/dir.wav")).unwrap_err(), AudioError::Io { .. }));
    }

    #[test]
    fn a_sink_never_finished_is_readable_up_to_its_last_second() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.wav");
        let mut sink = WavSink::create(&path).unwrap();
        for _ in 0..(SINK_FLUSH_FRAMES + 10) {
            sink.write(&[7; FRAME_SAMPLES]).unwrap();
        }
        assert_eq!(sink.samples_written(), (SINK_FLUSH_FRAMES + 10) * FRAME_SAMPLES as u64);
        // As if the process were killed: the writer is leaked, never finalized.
        std::mem::forget(sink);
        let read = read_mono(&path).unwrap();
        assert!(read.len() as u64 >= SINK_FLUSH_FRAMES * FRAME_SAMPLES as u64, "{}", read.len());
        assert!(read.iter().all(|&s| s == 7));
    }
}
