//! A slow link for fault tests (issue 12): a TCP forwarder that delays every chunk it
//! carries by `DELAY_MS ± JITTER_MS` (uniform), keeping each direction's bytes in
//! order. It stands in for `tc netem delay` where the kernel lacks the netem qdisc.
//!
//! Run: `slow-link LISTEN_ADDR TARGET_ADDR DELAY_MS JITTER_MS`; prints
//! `ready slow-link LISTEN_ADDR` once it listens. Runs until killed.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Chunks in flight per direction: bounds the memory a fast sender can pile up.
const IN_FLIGHT: usize = 256;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [listen, target, delay, jitter] = args.as_slice() else {
        eprintln!("usage: slow-link LISTEN_ADDR TARGET_ADDR DELAY_MS JITTER_MS");
        std::process::exit(2);
    };
    let delay = Duration::from_millis(delay.parse().unwrap());
    let jitter = Duration::from_millis(jitter.parse().unwrap());
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async move {
        let listener = TcpListener::bind(listen.as_str()).await.unwrap();
        // The `ready <name> <addrs>` line the test helpers wait for.
        println!("ready slow-link {listen}");
        loop {
            let Ok((inbound, _)) = listener.accept().await else { continue };
            let target = target.clone();
            tokio::spawn(async move {
                let Ok(outbound) = TcpStream::connect(target.as_str()).await else { return };
                let _ = inbound.set_nodelay(true);
                let _ = outbound.set_nodelay(true);
                let (in_read, in_write) = inbound.into_split();
                let (out_read, out_write) = outbound.into_split();
                tokio::spawn(carry(in_read, out_write, delay, jitter));
                tokio::spawn(carry(out_read, in_write, delay, jitter));
            });
        }
    });
}

/// Forward `from` to `to`, each chunk delivered `delay ± jitter` after it was read but
/// never before the chunk ahead of it.
async fn carry(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
    jitter: Duration,
) {
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(IN_FLIGHT);
    let writer = tokio::spawn(async move {
        while let Some((at, chunk)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    });
    let mut last = Instant::now();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let spread = rand::thread_rng().gen_range(0..=2 * jitter.as_micros() as u64);
        let this = (delay + Duration::from_micros(spread)).saturating_sub(jitter);
        last = last.max(Instant::now() + this);
        if tx.send((last, buf[..n].to_vec())).await.is_err() {
            break;
        }
    }
    drop(tx);
    let _ = writer.await;
}
