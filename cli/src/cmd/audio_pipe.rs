//! `--input -` and `--output -`: a call's audio from standard input and to standard
//! output, as WAV streams (16-bit PCM at 48 kHz; mono or stereo in, mono out).
//!
//! The node runs the media and opens audio by path, so for each `-` the command makes
//! a named pipe in a private directory (mode 0700) and pumps standard input into one
//! and the other into standard output, each in a thread of its own. The input's
//! header is read and checked before the call starts, so a wrong format is refused
//! before anything rings.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use kith_call::stream::{WavStream, write_frame, write_header};

use crate::args::CallAudio;
use crate::failure::{Failure, Result};

/// The audio of a call being placed, answered or a room joined: paths for the node.
pub(crate) struct CallIo {
    /// The input the node reads: a file, or the pipe fed from standard input.
    pub(crate) input: Option<String>,
    /// The output the node writes: a file, or the pipe copied to standard output.
    pub(crate) output: Option<String>,
    /// Hears when everything the node wrote reached standard output.
    copied: Option<mpsc::Receiver<()>>,
    _dir: Option<tempfile::TempDir>,
}

fn is_dash(path: Option<&Path>) -> bool {
    path == Some(Path::new("-"))
}

impl CallIo {
    /// Paths for `audio`: files made absolute, pipes for `-`.
    pub(crate) fn open(audio: &CallAudio) -> Result<CallIo> {
        let (stdin, stdout) = (is_dash(audio.input.as_deref()), is_dash(audio.output.as_deref()));
        let file = |path: Option<&Path>| path.map(super::files::absolute).transpose();
        let mut io = CallIo {
            input: if stdin { None } else { file(audio.input.as_deref())? },
            output: if stdout { None } else { file(audio.output.as_deref())? },
            copied: None,
            _dir: None,
        };
        if !stdin && !stdout {
            return Ok(io);
        }
        let dir = tempfile::Builder::new()
            .prefix("kith-audio-")
            .tempdir()
            .map_err(|e| Failure::usage(format!("a private directory for the audio pipes: {e}")))?;
        if stdin {
            let stream = WavStream::new(std::io::stdin(), Path::new("standard input"))
                .map_err(|e| Failure::usage(format!("--input -: {e}")))?;
            let pipe = fifo(dir.path(), "input.wav")?;
            io.input = Some(pipe.display().to_string());
            std::thread::spawn(move || {
                // Ends when standard input does, or when the node closes the pipe.
                let _ = feed(&pipe, stream);
            });
        }
        if stdout {
            let pipe = fifo(dir.path(), "output.wav")?;
            io.output = Some(pipe.display().to_string());
            let (done, copied) = mpsc::channel();
            std::thread::spawn(move || {
                let _ = drain(&pipe);
                let _ = done.send(());
            });
            io.copied = Some(copied);
        }
        io._dir = Some(dir);
        Ok(io)
    }

    /// Whether standard output carries audio (so everything else goes to stderr).
    pub(crate) fn stdout_taken(&self) -> bool {
        self.copied.is_some()
    }

    /// Whether either side is a pipe, which only this process feeds: it must stay
    /// until the call ends.
    pub(crate) fn piped(&self) -> bool {
        self._dir.is_some()
    }

    /// Waits (up to `deadline`) until the node closed the output stream and all of it
    /// reached standard output.
    pub(crate) fn finish(self, deadline: Duration) {
        if let Some(copied) = &self.copied {
            let _ = copied.recv_timeout(deadline);
        }
    }
}

/// A named pipe `name` in `dir`, readable and writable by us only.
fn fifo(dir: &Path, name: &str) -> Result<PathBuf> {
    use nix::sys::stat::Mode;
    let path = dir.join(name);
    nix::unistd::mkfifo(&path, Mode::S_IRUSR | Mode::S_IWUSR)
        .map_err(|e| Failure::usage(format!("a pipe for the call's audio ({}): {e}", path.display())))?;
    Ok(path)
}

/// Standard input's audio into the node's pipe, as a mono stream.
fn feed(pipe: &Path, mut stream: WavStream<std::io::Stdin>) -> std::io::Result<()> {
    // Opening waits for the node to open its end.
    let mut out = std::io::BufWriter::new(std::fs::OpenOptions::new().write(true).open(pipe)?);
    write_header(&mut out)?;
    while let Some(frame) = stream.next_frame() {
        write_frame(&mut out, &frame)?;
        out.flush()?;
    }
    Ok(())
}

/// The node's pipe onto standard output, until the node closes it.
fn drain(pipe: &Path) -> std::io::Result<()> {
    let mut from = std::fs::File::open(pipe)?;
    let mut stdout = std::io::stdout().lock();
    std::io::copy(&mut from, &mut stdout)?;
    stdout.flush()
}
