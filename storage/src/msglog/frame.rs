//! The log file's framing: a magic header, then frames that each hold whole
//! records and apply all or nothing.
//!
//! ```text
//! file   := MAGIC frame*
//! frame  := payload length (u32 LE) ‖ checksum (first 8 bytes of BLAKE3(payload)) ‖ payload
//! payload:= record+
//! record := kind (u8) ‖ body length (u32 LE) ‖ body
//! ```
//!
//! One frame is one call of the store (a batch of sends, of receipts, …), so a
//! batch survives a crash whole or not at all. Frames are only appended and
//! made durable by one `fdatasync` for everything before it, so a crash can
//! damage only the frames after the last completed sync: reading stops at the
//! first frame whose length or checksum is wrong, and the file is cut there.

use std::io::{self, Read};

/// The first bytes of every message log.
pub(crate) const MAGIC: &[u8; 8] = b"kithlog1";

/// Bytes before a frame's payload.
pub(crate) const FRAME_HEADER: usize = 12;

/// Bytes before a record's body.
pub(crate) const RECORD_HEADER: usize = 5;

/// The largest payload a frame may have. Larger lengths are read as damage.
pub(crate) const MAX_PAYLOAD: usize = 256 << 20;

fn checksum(payload: &[u8]) -> [u8; 8] {
    let mut sum = [0; 8];
    sum.copy_from_slice(&blake3::hash(payload).as_bytes()[..8]);
    sum
}

/// A frame being built: records are added, then [`Frame::finish`] seals it.
#[derive(Debug)]
pub(crate) struct Frame {
    bytes: Vec<u8>,
}

impl Frame {
    /// An empty frame.
    pub(crate) fn new() -> Frame {
        Frame { bytes: vec![0; FRAME_HEADER] }
    }

    /// Its size so far, header included.
    pub(crate) fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether no record was added.
    pub(crate) fn is_empty(&self) -> bool {
        self.bytes.len() == FRAME_HEADER
    }

    /// Starts a record of `kind` whose body the caller then writes with
    /// [`Frame::body`]; returns the body's offset from the frame's start.
    /// Close it with [`Frame::end_record`].
    pub(crate) fn begin_record(&mut self, kind: u8) -> usize {
        self.bytes.push(kind);
        self.bytes.extend_from_slice(&[0; 4]);
        self.bytes.len()
    }

    /// The frame's bytes, to write a record body into.
    pub(crate) fn body(&mut self) -> &mut Vec<u8> {
        &mut self.bytes
    }

    /// Ends the record whose body started at `body_at`; returns the body's length.
    pub(crate) fn end_record(&mut self, body_at: usize) -> io::Result<u32> {
        let len = u32::try_from(self.bytes.len() - body_at).map_err(|_| too_large())?;
        self.bytes[body_at - 4..body_at].copy_from_slice(&len.to_le_bytes());
        Ok(len)
    }

    /// Adds a record whose body is `body`; returns the body's offset.
    pub(crate) fn record(&mut self, kind: u8, body: &[u8]) -> io::Result<usize> {
        let at = self.begin_record(kind);
        self.bytes.extend_from_slice(body);
        self.end_record(at)?;
        Ok(at)
    }

    /// The frame's bytes with its header filled in.
    pub(crate) fn finish(mut self) -> io::Result<Vec<u8>> {
        let payload_len = self.bytes.len() - FRAME_HEADER;
        if payload_len > MAX_PAYLOAD {
            return Err(too_large());
        }
        let sum = checksum(&self.bytes[FRAME_HEADER..]);
        self.bytes[..4].copy_from_slice(&(payload_len as u32).to_le_bytes());
        self.bytes[4..FRAME_HEADER].copy_from_slice(&sum);
        Ok(self.bytes)
    }
}

fn too_large() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, "a batch too large for one log frame")
}

/// One record read back: its kind, its body, and the body's offset in the file.
#[derive(Debug)]
pub(crate) struct RecordRef<'a> {
    pub(crate) kind: u8,
    pub(crate) body: &'a [u8],
    pub(crate) at: u64,
}

/// What reading a whole file found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Scanned {
    /// Where the last whole frame ends: the file's valid length.
    pub(crate) valid_end: u64,
    /// Whether bytes followed that could not be read as a frame.
    pub(crate) damaged_tail: bool,
}

/// Reads every whole frame after [`MAGIC`] from `reader` (positioned just
/// after it, at file offset `MAGIC.len()`), handing each record to `each`.
/// Stops at the end of the file or at the first damaged frame. An error from
/// `each` stops the scan and is returned.
pub(crate) fn scan<R: Read, E>(
    reader: R,
    io_error: impl Fn(io::Error) -> E,
    each: impl FnMut(RecordRef<'_>) -> Result<(), E>,
) -> Result<Scanned, E> {
    scan_from(reader, MAGIC.len() as u64, io_error, each)
}

/// [`scan`] from the frame at file offset `start`, where `reader` is positioned.
pub(crate) fn scan_from<R: Read, E>(
    mut reader: R,
    start: u64,
    io_error: impl Fn(io::Error) -> E,
    mut each: impl FnMut(RecordRef<'_>) -> Result<(), E>,
) -> Result<Scanned, E> {
    let mut at = start;
    let mut payload = Vec::new();
    loop {
        let mut header = [0u8; FRAME_HEADER];
        match read_full(&mut reader, &mut header).map_err(&io_error)? {
            0 => return Ok(Scanned { valid_end: at, damaged_tail: false }),
            n if n < FRAME_HEADER => return Ok(Scanned { valid_end: at, damaged_tail: true }),
            _ => {}
        }
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        if len == 0 || len > MAX_PAYLOAD {
            return Ok(Scanned { valid_end: at, damaged_tail: true });
        }
        payload.resize(len, 0);
        if read_full(&mut reader, &mut payload).map_err(&io_error)? < len || checksum(&payload) != header[4..] {
            return Ok(Scanned { valid_end: at, damaged_tail: true });
        }
        let payload_at = at + FRAME_HEADER as u64;
        // A frame that passed its checksum was written whole by us; records that
        // do not fit it mean a bug or deliberate damage, reported as such.
        let mut pos = 0;
        while pos < len {
            if len - pos < RECORD_HEADER {
                return Err(io_error(io::Error::new(io::ErrorKind::InvalidData, "a record header runs past its frame")));
            }
            let kind = payload[pos];
            let body_len =
                u32::from_le_bytes([payload[pos + 1], payload[pos + 2], payload[pos + 3], payload[pos + 4]]) as usize;
            let start = pos + RECORD_HEADER;
            let end = start.checked_add(body_len).filter(|&end| end <= len).ok_or_else(|| {
                io_error(io::Error::new(io::ErrorKind::InvalidData, "a record runs past its frame"))
            })?;
            each(RecordRef { kind, body: &payload[start..end], at: payload_at + start as u64 })?;
            pos = end;
        }
        at = payload_at + len as u64;
    }
}

/// Reads until `buf` is full or the reader ends; returns how much was read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn file_of(frames: &[Vec<u8>]) -> Vec<u8> {
        let mut file = MAGIC.to_vec();
        for f in frames {
            file.extend_from_slice(f);
        }
        file
    }

    fn frame(records: &[(u8, &[u8])]) -> Vec<u8> {
        let mut f = Frame::new();
        for (kind, body) in records {
            f.record(*kind, body).unwrap();
        }
        f.finish().unwrap()
    }

    fn read(file: &[u8]) -> (Vec<(u8, Vec<u8>, u64)>, Scanned) {
        let mut seen = Vec::new();
        let scanned = scan(&file[MAGIC.len()..], |e| e, |r| {
            seen.push((r.kind, r.body.to_vec(), r.at));
            Ok(())
        })
        .unwrap();
        (seen, scanned)
    }

    #[test]
    fn records_come_back_with_their_offsets() {
        let file = file_of(&[frame(&[(1, b"one"), (2, b"")]), frame(&[(3, b"three")])]);
        let (seen, scanned) = read(&file);
        assert_eq!(scanned, Scanned { valid_end: file.len() as u64, damaged_tail: false });
        assert_eq!(seen.len(), 3);
        for (kind, body, at) in &seen {
            assert_eq!(&file[*at as usize..*at as usize + body.len()], body.as_slice(), "kind {kind}");
        }
        assert_eq!(seen.iter().map(|s| s.0).collect::<Vec<_>>(), [1, 2, 3]);
    }

    #[test]
    fn a_torn_or_damaged_last_frame_is_cut_off_whole() {
        let first = frame(&[(1, b"kept")]);
        let second = frame(&[(1, b"lost"), (2, b"with it")]);
        let whole = file_of(&[first.clone(), second.clone()]);
        let kept_end = (MAGIC.len() + first.len()) as u64;
        for cut in 1..second.len() {
            let (seen, scanned) = read(&whole[..whole.len() - cut]);
            assert_eq!(seen.len(), 1, "cut {cut}");
            assert_eq!(scanned, Scanned { valid_end: kept_end, damaged_tail: true });
        }
        for flip in kept_end as usize..whole.len() {
            let mut damaged = whole.clone();
            damaged[flip] ^= 0x40;
            let (seen, scanned) = read(&damaged);
            assert_eq!(seen.len(), 1, "flip at {flip}");
            assert_eq!(scanned.valid_end, kept_end);
        }
    }
}
