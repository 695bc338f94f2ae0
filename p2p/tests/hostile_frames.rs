//! Maximum-size hostile frames are refused *while decoding*, with bounded memory.
//!
//! Every frame here is as large as its protocol allows and built so that one input
//! byte would become a 24-byte `Vec` (an empty byte string or array), an 8-byte
//! integer, a buffered map entry or a nesting level. A counting global allocator
//! measures every byte allocated while the frame is decoded: it must stay under
//! [`BUDGET`], where decoding the same bytes without limits costs hundreds of MB.
//!
//! One test function on purpose: the allocator counts every thread of this process,
//! so nothing else may run while it measures.

#![allow(clippy::unwrap_used)]

use std::alloc::System;

use futures::io::Cursor;
use kith_p2p::envelope::{MAX_CHUNKS, MAX_ENVELOPE_LEN, OpenError, Opener};
use kith_p2p::identity::Identity;
use kith_p2p::libp2p::request_response::Codec as _;
use kith_p2p::mailbox::{MailboxResponse, Refusal};
use kith_p2p::payload::{MAX_PAYLOAD_LEN, Payload};
use kith_p2p::peer_record::MAX_ADDRS;
use kith_p2p::wire::{self, Frame, RECURSION_LIMIT, WireError};
use kith_p2p::{dm, grouplog, mailbox};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Most bytes a refused (or harmlessly skipped) maximum-size frame may cost to decode.
const BUDGET: usize = 1024 * 1024;

/// Bytes allocated while `f` runs (growth by reallocation included), and its result.
/// An upper bound on what decoding held at any one time.
fn allocated<T>(f: impl FnOnce() -> T) -> (usize, T) {
    let region = Region::new(GLOBAL);
    let out = f();
    (region.change().bytes_allocated, out)
}

/// A CBOR head: major type and argument, in the shortest form.
fn head(out: &mut Vec<u8>, major: u8, n: u64) {
    let m = major << 5;
    match n {
        0..=23 => out.push(m | n as u8),
        24..=0xff => out.extend([m | 24, n as u8]),
        0x100..=0xffff => {
            out.push(m | 25);
            out.extend((n as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(m | 26);
            out.extend((n as u32).to_be_bytes());
        }
        _ => {
            out.push(m | 27);
            out.extend(n.to_be_bytes());
        }
    }
}

fn text(out: &mut Vec<u8>, s: &str) {
    head(out, 3, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// An indefinite-length array (CBOR head byte).
const ARRAY: u8 = 0x9f;
/// An indefinite-length map (CBOR head byte).
const MAP: u8 = 0xbf;

/// `prefix`, then an indefinite-length array or map (`open`) of `item` repeated to
/// fill `total` bytes, closed by its break byte.
fn filled(prefix: &[u8], open: u8, item: &[u8], total: usize) -> Vec<u8> {
    let mut out = prefix.to_vec();
    out.push(open);
    let room = total - out.len() - 1;
    out.extend_from_slice(&item.repeat(room / item.len()));
    out.push(0xff);
    out
}

/// `{"v": 1, "body": {<variant>: {<field>: ...` for an externally tagged variant
/// (`variant` None: the body is the struct itself).
fn frame_prefix(variant: Option<&str>, fields: &[(&str, &[u8])], field: &str) -> Vec<u8> {
    let mut out = vec![0xa2];
    text(&mut out, "v");
    out.push(0x01);
    text(&mut out, "body");
    if let Some(variant) = variant {
        out.push(0xa1);
        text(&mut out, variant);
    }
    head(&mut out, 5, fields.len() as u64 + 1);
    for (name, value) in fields {
        text(&mut out, name);
        out.extend_from_slice(value);
    }
    text(&mut out, field);
    out
}

fn assert_bounded<T: std::fmt::Debug>(what: &str, bytes: usize, result: &T) {
    println!("{what}: {bytes} bytes allocated, {result:?}");
    assert!(bytes < BUDGET, "{what}: decoding allocated {bytes} bytes (budget {BUDGET}): {result:?}");
}

#[test]
fn maximum_size_frames_are_refused_while_decoding_with_bounded_memory() {
    // The meter works: the same kind of input decoded without limits (1 MiB of empty
    // arrays into a plain Vec<Vec<u8>>) costs 24+ bytes per input byte.
    let plain = filled(&[], ARRAY, &[0x80], 1024 * 1024);
    let (bytes, result) = allocated(|| wire::decode::<Vec<Vec<u8>>>(&plain, plain.len()).map(|v| v.len()));
    println!("unbounded control: {bytes} bytes allocated for {result:?} items");
    assert!(bytes > 16 * 1024 * 1024, "the allocator does not see the decoder: {bytes}");
    drop(plain);

    // DM: 8 MiB of empty byte strings as envelopes.
    let dm_frame = filled(&frame_prefix(None, &[], "envelopes"), ARRAY, &[0x40], dm::MAX_REQUEST_LEN);
    let (bytes, r) = allocated(|| wire::decode::<Frame<dm::DmRequest>>(&dm_frame, dm::MAX_REQUEST_LEN).map(|_| ()));
    assert!(matches!(r, Err(WireError::TooMany { max: dm::MAX_BATCH })), "{r:?}");
    assert_bounded("dm request of empty byte strings", bytes, &r);

    // The same through the protocol's codec, as the node reads it off a stream: the
    // frame buffer itself (grown as bytes arrive, to exactly the frame's length) plus
    // the same small decoding cost.
    let mut framed = u32::try_from(dm_frame.len()).unwrap().to_be_bytes().to_vec();
    framed.extend_from_slice(&dm_frame);
    drop(dm_frame);
    let (bytes, r) = allocated(|| {
        futures::executor::block_on(dm::Codec::default().read_request(&dm::PROTOCOL, &mut Cursor::new(&framed[..])))
            .map(|_| ())
    });
    let inner = r.as_ref().err().and_then(|e| e.get_ref()).and_then(|e| e.downcast_ref::<WireError>());
    assert!(matches!(inner, Some(WireError::TooMany { max: dm::MAX_BATCH })), "{r:?}");
    println!("dm request through the codec: {bytes} bytes allocated");
    assert!(bytes < dm::MAX_REQUEST_LEN + BUDGET, "{bytes}");
    drop(framed);

    // Mailbox: an ack of 8 MiB of one-byte integers (8 bytes each once decoded).
    let nonce = [&[0x58, 0x20][..], &[0; 32]].concat();
    let ack = filled(
        &frame_prefix(Some("ack"), &[("nonce", &nonce), ("signature", &[0x40])], "seqs"),
        ARRAY,
        &[0x00],
        mailbox::MAX_REQUEST_LEN,
    );
    let (bytes, r) = allocated(|| wire::decode::<Frame<mailbox::MailboxRequest>>(&ack, mailbox::MAX_REQUEST_LEN).map(|_| ()));
    assert!(matches!(r, Err(WireError::TooMany { max: mailbox::MAX_ACK })), "{r:?}");
    assert_bounded("mailbox ack of small integers", bytes, &r);
    drop(ack);

    // Mailbox: a relay's refusal padded with 4 M unknown entries (serde's derived
    // decoder for tagged enums would buffer every one of them).
    let mut refusal = vec![0xa2];
    text(&mut refusal, "v");
    refusal.push(0x01);
    text(&mut refusal, "body");
    refusal.push(0xa1);
    text(&mut refusal, "refused");
    let mut code = Vec::new();
    text(&mut code, "code");
    text(&mut code, "storage");
    let mut refusal = filled(&refusal, MAP, &[0x60, 0x80], mailbox::MAX_RESPONSE_LEN - code.len());
    refusal.splice(refusal.len() - 1..refusal.len() - 1, code);
    let (bytes, r) = allocated(|| wire::decode::<Frame<MailboxResponse>>(&refusal, mailbox::MAX_RESPONSE_LEN).map(|f| f.body));
    assert!(matches!(r, Ok(MailboxResponse::Refused(Refusal::Storage))), "{r:?}");
    assert_bounded("refusal with millions of unknown entries", bytes, &r);
    drop(refusal);

    // Group log: an append answer of 8 MiB of sequence numbers.
    let appended = filled(&frame_prefix(Some("appended"), &[], "seqs"), ARRAY, &[0x00], grouplog::MAX_RESPONSE_LEN);
    let (bytes, r) =
        allocated(|| wire::decode::<Frame<grouplog::GroupLogResponse>>(&appended, grouplog::MAX_RESPONSE_LEN).map(|_| ()));
    assert!(matches!(r, Err(WireError::TooMany { max: grouplog::MAX_APPEND_BATCH })), "{r:?}");
    assert_bounded("group log answer of small integers", bytes, &r);
    drop(appended);

    // Unknown fields are skipped, not stored: 8 MiB of empty arrays under a key the
    // DM request does not have.
    let unknown = filled(
        &frame_prefix(None, &[("envelopes", &[0x80])], "from_the_future"),
        ARRAY,
        &[0x80],
        dm::MAX_REQUEST_LEN,
    );
    let (bytes, r) = allocated(|| wire::decode::<Frame<dm::DmRequest>>(&unknown, dm::MAX_REQUEST_LEN).map(|f| f.body));
    assert!(matches!(&r, Ok(req) if req.envelopes.is_empty()), "{r:?}");
    assert_bounded("unknown field of empty arrays", bytes, &r);
    drop(unknown);

    // Nesting: 8 MiB of nested arrays under a key the decoder would skip.
    let mut nested = frame_prefix(None, &[("envelopes", &[0x80])], "from_the_future");
    nested.resize(dm::MAX_REQUEST_LEN, 0x81);
    let (bytes, r) = allocated(|| wire::decode::<Frame<dm::DmRequest>>(&nested, dm::MAX_REQUEST_LEN).map(|_| ()));
    assert!(matches!(r, Err(WireError::TooDeep { max: RECURSION_LIMIT })), "{r:?}");
    assert_bounded("nested arrays", bytes, &r);
    drop(nested);

    // An envelope of empty chunks, as a relay or a peer hands it to the opener.
    let mut env = vec![0xa4];
    text(&mut env, "v");
    env.push(0x01);
    text(&mut env, "hs");
    env.push(0x40);
    text(&mut env, "nonce");
    env.push(0x00);
    text(&mut env, "chunks");
    let env = filled(&env, ARRAY, &[0x40], MAX_ENVELOPE_LEN);
    let mut opener = Opener::new(&Identity::generate(), 4);
    let (bytes, r) = allocated(|| opener.open(&env).map(|_| ()));
    assert!(matches!(&r, Err(OpenError::Malformed(m)) if m.contains(&MAX_CHUNKS.to_string())), "{r:?}");
    assert_bounded("envelope of empty chunks", bytes, &r);

    // A payload (what an envelope opens to) whose contact request lists empty arrays
    // as addresses.
    let mut payload = vec![0xa2];
    text(&mut payload, "v");
    payload.push(0x01);
    text(&mut payload, "p");
    payload.push(0xa1);
    text(&mut payload, "ContactRequest");
    payload.push(0xa4);
    for (key, value) in [("name", 0xf6u8), ("token", 0xf6), ("relays", 0x80)] {
        text(&mut payload, key);
        payload.push(value);
    }
    text(&mut payload, "addrs");
    let payload = filled(&payload, ARRAY, &[0x80], MAX_PAYLOAD_LEN);
    let (bytes, r) = allocated(|| Payload::decode(&payload).map(|_| ()));
    assert!(matches!(r, Err(WireError::TooMany { max: MAX_ADDRS })), "{r:?}");
    assert_bounded("payload of empty address arrays", bytes, &r);
}
