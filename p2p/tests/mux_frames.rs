//! The stream muxer under kith's patch of yamux (vendor/yamux/KITH-PATCH.md):
//! frames that streams queue together leave in one write to the connection, so
//! a direct message's request (its stream's opening, its data, its close) costs
//! the peer one Noise frame and one TCP segment instead of one per frame.

#![allow(clippy::unwrap_used)]

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

/// What a connection wrote: the batches that each flush ended, and what is not
/// flushed yet.
#[derive(Default)]
struct Written {
    unflushed: Vec<u8>,
    flushed: Vec<Vec<u8>>,
}

/// A connection's transport that records what is written and never has anything
/// to read.
#[derive(Clone, Default)]
struct Recorded(Arc<Mutex<Written>>);

impl AsyncRead for Recorded {
    fn poll_read(self: Pin<&mut Self>, _: &mut Context<'_>, _: &mut [u8]) -> Poll<std::io::Result<usize>> {
        Poll::Pending
    }
}

impl AsyncWrite for Recorded {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.0.lock().unwrap().unflushed.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let mut written = self.0.lock().unwrap();
        if !written.unflushed.is_empty() {
            let batch = std::mem::take(&mut written.unflushed);
            written.flushed.push(batch);
        }
        Poll::Ready(Ok(()))
    }
    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[test]
fn frames_queued_together_leave_in_one_flush() {
    let transport = Recorded::default();
    let mut connection = yamux::Connection::new(transport.clone(), yamux::Config::default(), yamux::Mode::Client);
    futures::executor::block_on(async {
        let mut stream = futures::future::poll_fn(|cx| connection.poll_new_outbound(cx)).await.unwrap();
        // What a request-response exchange queues on a new stream: a protocol
        // proposal, the request, the close. Nothing runs the connection meanwhile.
        stream.write_all(b"/kith/dm/2\n").await.unwrap();
        stream.write_all(&[7; 700]).await.unwrap();
        stream.close().await.unwrap();

        // One turn of the connection sends what the stream queued.
        let waker = futures::task::noop_waker();
        assert!(connection.poll_next_inbound(&mut Context::from_waker(&waker)).is_pending());
    });

    let written = transport.0.lock().unwrap();
    assert!(written.unflushed.is_empty(), "everything written was flushed");
    assert_eq!(written.flushed.len(), 1, "the stream's frames leave in one flush");
    let frames = frames(&written.flushed[0]);
    let data: Vec<usize> = frames.iter().filter(|f| f.kind == DATA && f.body > 0).map(|f| f.body).collect();
    assert_eq!(data, vec![11, 700], "both writes, in order");
    assert!(frames.iter().any(|f| f.flags & FIN != 0), "and the close");
}

/// The length of a yamux frame header, and the header fields read here.
const HEADER: usize = 12;
const DATA: u8 = 0;
const FIN: u16 = 4;

/// One yamux frame: its type, flags and body length (only data frames have a body).
struct Frame {
    kind: u8,
    flags: u16,
    body: usize,
}

/// The frames in `bytes`, which must hold whole frames only.
fn frames(mut bytes: &[u8]) -> Vec<Frame> {
    let mut frames = Vec::new();
    while !bytes.is_empty() {
        let kind = bytes[1];
        let flags = u16::from_be_bytes([bytes[2], bytes[3]]);
        let length = u32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize;
        let body = if kind == DATA { length } else { 0 };
        frames.push(Frame { kind, flags, body });
        bytes = &bytes[HEADER + body..];
    }
    frames
}
