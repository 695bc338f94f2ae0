//! Throughput and memory of the blob format and store: sealing a file, storing its
//! sealed chunks the way a download does (checked, written at their offsets, synced
//! every 64 chunks), and opening it back, on a real file system.
//!
//! Run with `cargo run --release -p kith-p2p --example blob_bench [MiB]` (default 256);
//! debug builds measure the debug build, not the code. The temporary files go to
//! `$TMPDIR`.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::time::Instant;

use kith_p2p::blob::{BlobKey, BlobStore, CHUNK_SIZE, TAG_SIZE, seal};

/// File size unless given on the command line.
const DEFAULT_MIB: u64 = 256;
/// Chunks between syncs, as a fetch does.
const SYNC_EVERY: u64 = 64;

/// A reader of `len` pseudo-random bytes (incompressible, no allocation).
struct Noise {
    left: u64,
    state: u64,
}

impl Read for Noise {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.left as usize);
        for word in buf[..n].chunks_mut(8) {
            self.state ^= self.state << 13;
            self.state ^= self.state >> 7;
            self.state ^= self.state << 17;
            word.copy_from_slice(&self.state.to_le_bytes()[..word.len()]);
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Peak resident memory of this process, from /proc (Linux), in MiB.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: f64 = status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?.trim().trim_end_matches(" kB").parse().ok()?;
    Some(kib / 1024.0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mib: u64 = match std::env::args().nth(1) {
        Some(arg) => arg.parse()?,
        None => DEFAULT_MIB,
    };
    let len = mib << 20;
    let dir = tempfile::tempdir()?;
    let key = BlobKey::generate();
    let rate = |bytes: u64, secs: f64| bytes as f64 / (1 << 20) as f64 / secs;

    // Seal: plaintext stream → sealed file.
    let sealed_path = dir.path().join("sealed");
    let started = Instant::now();
    let mut sealed = BufWriter::new(File::create(&sealed_path)?);
    let outboard = seal(&key, len, &mut Noise { left: len, state: 0x9e37_79b9_7f4a_7c15 }, &mut sealed)?;
    sealed.into_inner()?.sync_all()?;
    let seal_secs = started.elapsed().as_secs_f64();

    // Store: every sealed chunk checked and written at its offset, synced every 64.
    let store = BlobStore::open(&dir.path().join("store"))?;
    let id = outboard.id();
    let started = Instant::now();
    store.add(&outboard)?;
    let mut input = BufReader::new(File::open(&sealed_path)?);
    let mut chunk = vec![0u8; CHUNK_SIZE + TAG_SIZE];
    for index in 0..outboard.chunks() {
        let size = outboard.sealed_len(index).unwrap_or(0);
        input.read_exact(&mut chunk[..size])?;
        store.put(&id, index, &chunk[..size])?;
        if (index + 1) % SYNC_EVERY == 0 {
            store.sync(&id)?;
        }
    }
    store.sync(&id)?;
    let store_secs = started.elapsed().as_secs_f64();

    // Open: the stored blob → plaintext (discarded).
    let started = Instant::now();
    store.open_into(&id, &key, &mut std::io::sink())?;
    let open_secs = started.elapsed().as_secs_f64();

    let mut out = std::io::stdout().lock();
    writeln!(out, "file: {mib} MiB, {} chunks, outboard {} KiB", outboard.chunks(), outboard.chunks() * 32 / 1024)?;
    writeln!(out, "seal (encrypt + hash + write): {:.0} MiB/s", rate(len, seal_secs))?;
    writeln!(out, "store (check + write + sync every {SYNC_EVERY}): {:.0} MiB/s", rate(len, store_secs))?;
    writeln!(out, "open (read + check + decrypt): {:.0} MiB/s", rate(len, open_secs))?;
    if let Some(peak) = peak_rss_mib() {
        writeln!(out, "peak RSS: {peak:.1} MiB")?;
    }
    Ok(())
}
