//! Streamed WAV: a call's audio through a pipe (`kith call --input - --output -`).
//!
//! A stream's length is unknown when its header is written, so its RIFF and data
//! sizes are `0xFFFFFFFF` (as sox and ffmpeg write to a pipe) and a reader reads
//! until the end of the stream, whatever the header says. [`WavStream`] reads one
//! (16-bit PCM at 48 kHz, mono or stereo mixed down) and [`write_header`] starts
//! one (mono). The node reads and writes the named pipes the CLI makes through
//! [`StreamSource`] and [`StreamSink`], each with a thread of its own doing the
//! blocking I/O: a pipe must never stall a call's send or playout loop. A stream is
//! read as fast as the call plays it (a file streamed in plays whole); a live source
//! written before the call connects waits in the pipe, adding its backlog (what the
//! pipes buffer, a second or so) to the call's latency.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{SyncSender, TrySendError};

use crate::audio::{Frame, Sink, Source};
use crate::wav::{AudioError, FRAME_SAMPLES, SAMPLE_RATE, check_spec};

/// Longest header chunk skipped before `data` (a LIST chunk of tags, say).
const MAX_SKIPPED_CHUNK: u32 = 1 << 20;

/// A WAV stream being read: 20 ms mono frames until its end.
pub struct WavStream<R> {
    reader: R,
    channels: usize,
    ended: bool,
}

impl<R: Read> WavStream<R> {
    /// Reads and checks the header; `label` names the stream in errors.
    pub fn new(mut reader: R, label: &Path) -> Result<WavStream<R>, AudioError> {
        let io = |source| AudioError::Io { path: label.to_owned(), source };
        let bad = |reason: &str| AudioError::Format { path: label.to_owned(), reason: reason.to_owned() };
        let mut riff = [0u8; 12];
        reader.read_exact(&mut riff).map_err(io)?;
        if &riff[..4] != b"RIFF" || &riff[8..] != b"WAVE" {
            return Err(bad("not a WAV stream (no RIFF/WAVE header)"));
        }
        let mut format: Option<hound::WavSpec> = None;
        loop {
            let mut chunk = [0u8; 8];
            reader.read_exact(&mut chunk).map_err(io)?;
            let len = u32::from_le_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]);
            match &chunk[..4] {
                b"fmt " => {
                    if !(16..=64).contains(&len) {
                        return Err(bad("a malformed fmt chunk"));
                    }
                    let mut fmt = vec![0u8; len as usize + (len as usize & 1)];
                    reader.read_exact(&mut fmt).map_err(io)?;
                    let tag = u16::from_le_bytes([fmt[0], fmt[1]]);
                    // 1: PCM; 0xFFFE: WAVE_FORMAT_EXTENSIBLE (its subformat is PCM for
                    // 16-bit integer data in practice).
                    if tag != 1 && tag != 0xFFFE {
                        return Err(bad("not PCM; calls need 16-bit integer PCM"));
                    }
                    format = Some(hound::WavSpec {
                        channels: u16::from_le_bytes([fmt[2], fmt[3]]),
                        sample_rate: u32::from_le_bytes([fmt[4], fmt[5], fmt[6], fmt[7]]),
                        bits_per_sample: u16::from_le_bytes([fmt[14], fmt[15]]),
                        sample_format: hound::SampleFormat::Int,
                    });
                }
                b"data" => break,
                _ if len <= MAX_SKIPPED_CHUNK => {
                    let skip = u64::from(len) + u64::from(len & 1);
                    io::copy(&mut (&mut reader).take(skip), &mut io::sink()).map_err(io)?;
                }
                _ => return Err(bad("an oversized chunk before the audio")),
            }
        }
        let spec = format.ok_or_else(|| bad("no fmt chunk before the audio"))?;
        check_spec(&spec).map_err(|reason| bad(&reason))?;
        Ok(WavStream { reader, channels: usize::from(spec.channels), ended: false })
    }

    /// The next 20 ms, mono; the last one zero-padded; `None` at the end of the stream.
    pub fn next_frame(&mut self) -> Option<Frame> {
        if self.ended {
            return None;
        }
        let mut bytes = vec![0u8; FRAME_SAMPLES * self.channels * 2];
        let got = read_full(&mut self.reader, &mut bytes);
        if got < bytes.len() {
            self.ended = true;
            if got < self.channels * 2 {
                return None;
            }
        }
        let mut frame = [0i16; FRAME_SAMPLES];
        for (out, sample) in frame.iter_mut().zip(bytes.chunks_exact(self.channels * 2)) {
            let sum: i32 = sample.chunks_exact(2).map(|b| i32::from(i16::from_le_bytes([b[0], b[1]]))).sum();
            *out = (sum / self.channels as i32) as i16;
        }
        Some(frame)
    }
}

/// Reads until `buf` is full or the stream ends (or fails); how much it read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> usize {
    let mut got = 0;
    while got < buf.len() {
        match reader.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    got
}

/// Writes the header of a mono 48 kHz 16-bit stream of unknown length.
pub fn write_header(writer: &mut impl Write) -> io::Result<()> {
    let mut header = Vec::with_capacity(44);
    header.extend_from_slice(b"RIFF");
    header.extend_from_slice(&u32::MAX.to_le_bytes());
    header.extend_from_slice(b"WAVEfmt ");
    header.extend_from_slice(&16u32.to_le_bytes());
    header.extend_from_slice(&1u16.to_le_bytes()); // PCM
    header.extend_from_slice(&1u16.to_le_bytes()); // mono
    header.extend_from_slice(&SAMPLE_RATE.to_le_bytes());
    header.extend_from_slice(&(SAMPLE_RATE * 2).to_le_bytes()); // bytes per second
    header.extend_from_slice(&2u16.to_le_bytes()); // block align
    header.extend_from_slice(&16u16.to_le_bytes()); // bits per sample
    header.extend_from_slice(b"data");
    header.extend_from_slice(&u32::MAX.to_le_bytes());
    writer.write_all(&header)
}

/// Writes one frame's samples (little-endian).
pub fn write_frame(writer: &mut impl Write, frame: &Frame) -> io::Result<()> {
    let bytes: Vec<u8> = frame.iter().flat_map(|s| s.to_le_bytes()).collect();
    writer.write_all(&bytes)
}

/// Frames a [`StreamSource`] holds ahead of the call (100 ms): the pipe holds back
/// its writer beyond that, so a file streamed in plays whole and in time.
const SOURCE_AHEAD: usize = 5;

/// A call's outgoing audio read from a WAV stream (a named pipe): a thread reads it
/// as the call takes frames, at most [`SOURCE_AHEAD`] ahead, and nothing is dropped;
/// a stream that runs dry or lags gives silence meanwhile.
pub struct StreamSource {
    frames: std::sync::mpsc::Receiver<Frame>,
}

impl StreamSource {
    /// Starts reading `path` (opening a pipe waits for its writer, in the thread).
    pub fn spawn(path: &Path) -> StreamSource {
        let (tx, frames) = std::sync::mpsc::sync_channel(SOURCE_AHEAD);
        let path = path.to_owned();
        std::thread::spawn(move || {
            if let Err(e) = read_into(&path, &tx) {
                tracing::warn!("call audio input: {e}");
            }
        });
        StreamSource { frames }
    }
}

fn read_into(path: &PathBuf, frames: &SyncSender<Frame>) -> Result<(), AudioError> {
    let file = std::fs::File::open(path).map_err(|source| AudioError::Io { path: path.clone(), source })?;
    let mut stream = WavStream::new(io::BufReader::new(file), path)?;
    while let Some(frame) = stream.next_frame() {
        // Blocks while the call is behind; fails once the call is over.
        if frames.send(frame).is_err() {
            break;
        }
    }
    Ok(())
}

impl Source for StreamSource {
    fn next_frame(&mut self) -> Frame {
        self.frames.try_recv().unwrap_or([0; FRAME_SAMPLES])
    }
}

/// Frames a [`StreamSink`] queues for its writer thread (5 s); a reader that falls
/// further behind loses frames rather than stalling the call.
const SINK_QUEUE: usize = 250;

/// A call's incoming audio written as a WAV stream (into a named pipe) by a thread of
/// its own.
pub struct StreamSink {
    frames: Option<SyncSender<Frame>>,
    path: PathBuf,
}

impl StreamSink {
    /// Starts writing `path` (opening a pipe waits for its reader, in the thread).
    pub fn spawn(path: &Path) -> StreamSink {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Frame>(SINK_QUEUE);
        let target = path.to_owned();
        std::thread::spawn(move || {
            let written = (|| {
                let file = std::fs::OpenOptions::new().write(true).open(&target)?;
                let mut out = io::BufWriter::new(file);
                write_header(&mut out)?;
                out.flush()?;
                for frame in rx {
                    write_frame(&mut out, &frame)?;
                    out.flush()?;
                }
                Ok::<(), io::Error>(())
            })();
            if let Err(e) = written {
                tracing::debug!(path = %target.display(), "call audio output: {e}");
            }
        });
        StreamSink { frames: Some(tx), path: path.to_owned() }
    }
}

impl Sink for StreamSink {
    fn write(&mut self, frame: &Frame) -> Result<(), AudioError> {
        let Some(frames) = &self.frames else { return Ok(()) };
        match frames.try_send(*frame) {
            Ok(()) | Err(TrySendError::Full(_)) => Ok(()),
            Err(TrySendError::Disconnected(_)) => Err(AudioError::Io {
                path: self.path.clone(),
                source: io::Error::new(io::ErrorKind::BrokenPipe, "the reader of the call's audio went away"),
            }),
        }
    }

    fn finish(mut self: Box<Self>) -> Result<(), AudioError> {
        // The writer drains what is queued, then closes the stream.
        self.frames.take();
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn a_stream_round_trips_and_ends_with_a_padded_frame() {
        let mut bytes = Vec::new();
        write_header(&mut bytes).unwrap();
        let frame: Frame = std::array::from_fn(|i| i as i16);
        write_frame(&mut bytes, &frame).unwrap();
        write_frame(&mut bytes, &frame).unwrap();
        bytes.truncate(bytes.len() - 1000); // the end of the second frame is cut off
        let mut stream = WavStream::new(&bytes[..], Path::new("-")).unwrap();
        assert_eq!(stream.next_frame().unwrap(), frame);
        let last = stream.next_frame().unwrap();
        assert_eq!(last[..460], frame[..460]);
        assert!(last[460..].iter().all(|&s| s == 0));
        assert_eq!(stream.next_frame(), None);
    }

    #[test]
    fn stereo_is_mixed_down_chunks_are_skipped_and_wrong_formats_are_refused() {
        let wav = |channels: u16, rate: u32, bits: u16, extra: &[u8]| {
            let mut b = b"RIFF\xff\xff\xff\xffWAVE".to_vec();
            b.extend_from_slice(extra);
            b.extend_from_slice(b"fmt \x10\0\0\0\x01\0");
            b.extend_from_slice(&channels.to_le_bytes());
            b.extend_from_slice(&rate.to_le_bytes());
            b.extend_from_slice(&(rate * u32::from(channels) * 2).to_le_bytes());
            b.extend_from_slice(&(channels * 2).to_le_bytes());
            b.extend_from_slice(&bits.to_le_bytes());
            b.extend_from_slice(b"data\xff\xff\xff\xff");
            b
        };
        let mut stereo = wav(2, 48_000, 16, b"LIST\x03\0\0\0abc\0");
        for _ in 0..FRAME_SAMPLES {
            stereo.extend_from_slice(&100i16.to_le_bytes());
            stereo.extend_from_slice(&300i16.to_le_bytes());
        }
        let mut stream = WavStream::new(&stereo[..], Path::new("-")).unwrap();
        assert!(stream.next_frame().unwrap().iter().all(|&s| s == 200));
        let refused = |bytes: Vec<u8>| WavStream::new(&bytes[..], Path::new("-")).err().unwrap().to_string();
        assert!(refused(wav(1, 44_100, 16, b"")).contains("44100 Hz"));
        assert!(refused(wav(1, 48_000, 24, b"")).contains("16-bit"));
        assert!(refused(b"ID3 something else".to_vec()).contains("not a WAV stream"));
    }

    #[test]
    fn a_source_hands_out_every_frame_in_order_then_silence() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.wav");
        let mut bytes = Vec::new();
        write_header(&mut bytes).unwrap();
        for n in 1..=20i16 {
            write_frame(&mut bytes, &[n; FRAME_SAMPLES]).unwrap();
        }
        std::fs::write(&path, bytes).unwrap();
        let mut source = StreamSource::spawn(&path);
        let mut taken = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while taken.len() < 20 && Instant::now() < deadline {
            let first = source.next_frame()[0];
            if first != 0 {
                taken.push(first);
            } else {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        assert_eq!(taken, (1..=20).collect::<Vec<i16>>(), "nothing dropped, in order");
        assert_eq!(source.next_frame()[0], 0, "silence after the end");
    }
}
