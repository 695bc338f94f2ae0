//! `/kith/grouplog/1`: a group's append-only log of sealed messages on a relay.
//!
//! A group encrypts each message once (sender keys, see [`crate::group`]); the sender
//! appends the sealed bytes once to the group's log on each of the group's relays,
//! and members that were offline fetch what they missed with a cursor. The relay
//! sees only opaque items and a 32-byte log id, [`log_id`]: a one-way hash of the
//! group's secret, so the relay cannot tell which group a log belongs to, and a
//! peer that does not hold the secret cannot name its log. Every exchange is one
//! request and one response:
//!
//! 1. **Append.** A member sends [`GroupLogRequest::Append`] with up to
//!    [`MAX_APPEND_BATCH`] items. The relay answers [`GroupLogResponse::Appended`]
//!    with one sequence number per item, in order, once every item is durable. An
//!    item whose exact bytes the log already holds gets its existing sequence number
//!    (nothing is stored twice), so a sender that timed out simply appends again.
//!    The batch is all or nothing: a refusal means none of it was stored.
//! 2. **Fetch.** Anyone who names the log sends [`GroupLogRequest::Fetch`] with the
//!    highest sequence number it has (`after`, 0 at first); the relay answers
//!    [`GroupLogResponse::Page`]: up to `limit` items with greater sequence numbers,
//!    ascending, and whether more follow. Fetching needs no proof of membership:
//!    naming the log already proves knowledge of the group secret, and the items are
//!    end-to-end encrypted.
//!
//! Sequence numbers are per log, start at 1 and only grow: one is never reused, even
//! after the item it named expired, so a cursor stays valid forever. Items expire
//! after the relay's TTL whether or not anyone fetched them; nothing is ever deleted
//! on request, since a log has many readers.
//!
//! Any request may instead be answered with [`GroupLogResponse::Refused`], reusing
//! the mailbox's [`Refusal`] codes (quotas, too large, rate limited, not member,
//! disabled, storage); [`Refusal::is_permanent`] says whether retrying can help.
//!
//! # Encoding and limits
//! Frames are length-prefixed CBOR `Frame { v: 1, body }` (see [`crate::wire`]), byte
//! fields as CBOR byte strings, the log id a byte string of exactly [`LOG_ID_LEN`]
//! bytes. The codec checks the frame length against [`MAX_REQUEST_LEN`] /
//! [`MAX_RESPONSE_LEN`] before allocating and the counts ([`MAX_APPEND_BATCH`],
//! [`MAX_FETCH_ITEMS`]) while decoding, refusing the item past a limit before it is
//! allocated (see [`wire::Max`]); a violation is an
//! [`std::io::ErrorKind::InvalidData`] error carrying the typed [`wire::WireError`]
//! when reading and an
//! [`std::io::ErrorKind::InvalidInput`] error when writing. The size of one item is *not*
//! a codec limit, so that a relay can answer an oversized item with a typed
//! [`Refusal::TooLarge`] rather than a reset stream; relays accept items up to
//! [`MAX_ITEM_LEN`].

use libp2p::StreamProtocol;
use serde::{Deserialize, Serialize};

pub use crate::mailbox::Refusal;
use crate::group::GroupSecret;
use crate::wire;

/// The protocol name negotiated on the stream.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/kith/grouplog/1");

/// Length of a log id in bytes (a BLAKE3 output, see [`log_id`]).
pub const LOG_ID_LEN: usize = 32;

/// Most items one [`GroupLogRequest::Append`] may carry (and sequence numbers one
/// [`GroupLogResponse::Appended`] may carry): one durable write on the relay.
/// Enforced while decoding, like every count limit here.
pub const MAX_APPEND_BATCH: usize = 64;

/// Most items one [`GroupLogResponse::Page`] may carry; a relay clamps a fetch's
/// `limit` to this.
pub const MAX_FETCH_ITEMS: usize = 256;

/// Largest item a relay accepts, in bytes: room for the largest sender-key message
/// ([`crate::group::sender_key::MAX_MESSAGE_LEN`], 96 KiB) plus headroom for framing
/// a future version may add around it.
pub const MAX_ITEM_LEN: usize = 100 * 1024;

/// Cap on an encoded request: a full batch of the largest items
/// (64 × 100 KiB = 6.25 MiB) fits with room to spare.
pub const MAX_REQUEST_LEN: usize = 8 * 1024 * 1024;

/// Cap on an encoded response (one page). A full page of the largest items would
/// not fit (256 × 100 KiB = 25 MiB), so the relay fills a page by bytes as well as
/// by count: see [`MAX_ITEM_OVERHEAD`].
pub const MAX_RESPONSE_LEN: usize = 8 * 1024 * 1024;

/// Upper bound on the encoded size of one [`LogItem`] beyond its bytes.
///
/// A page of items whose `bytes.len() + MAX_ITEM_OVERHEAD` sum, plus
/// [`MAX_PAGE_OVERHEAD`], to at most [`MAX_RESPONSE_LEN`] is guaranteed to encode
/// within [`MAX_RESPONSE_LEN`] (for items below 4 GiB and any integer values).
pub const MAX_ITEM_OVERHEAD: usize = 64;

/// Upper bound on the encoded size of a [`GroupLogResponse::Page`] frame apart from
/// its items (see [`MAX_ITEM_OVERHEAD`]).
pub const MAX_PAGE_OVERHEAD: usize = 64;

/// BLAKE3 key-derivation context of [`log_id`].
const LOG_ID_CONTEXT: &str = "kith group log v2";

/// The log id of a group: `blake3::derive_key("kith group log v2", group secret)`.
///
/// Derived from the secret only members hold (not from the group id, which members
/// may show around), so the relay can neither tell which group a log belongs to nor
/// link it to the group's gossip topic, and nobody outside the group can name it.
pub fn log_id(secret: &GroupSecret) -> [u8; LOG_ID_LEN] {
    secret.derive(LOG_ID_CONTEXT)
}

/// A request to a relay's group log service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupLogRequest {
    /// Append sealed items to a log, in order. Subject to the relay's access policy.
    Append {
        /// The log ([`log_id`]).
        #[serde(with = "wire::byte_array")]
        log: [u8; LOG_ID_LEN],
        /// Sealed group messages, opaque to the relay; at most [`MAX_APPEND_BATCH`],
        /// each at most [`MAX_ITEM_LEN`] bytes.
        #[serde(
            serialize_with = "wire::bytes_seq::serialize",
            deserialize_with = "wire::Max::<MAX_APPEND_BATCH>::bytes_seq"
        )]
        items: Vec<Vec<u8>>,
    },
    /// Read a page of a log. Open to anyone who names the log.
    Fetch {
        /// The log ([`log_id`]).
        #[serde(with = "wire::byte_array")]
        log: [u8; LOG_ID_LEN],
        /// Return only items with a sequence number above this (0: from the start).
        after: u64,
        /// Most items wanted; the relay clamps it to 1..=[`MAX_FETCH_ITEMS`].
        limit: u32,
    },
}

/// A relay's answer to a [`GroupLogRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupLogResponse {
    /// The answer to an append: every item is durable.
    Appended {
        /// One sequence number per appended item, in request order (an item the log
        /// already held keeps its earlier number).
        #[serde(deserialize_with = "wire::Max::<MAX_APPEND_BATCH>::seq")]
        seqs: Vec<u64>,
    },
    /// The answer to a fetch: items in ascending sequence order.
    Page {
        /// At most [`MAX_FETCH_ITEMS`] items.
        #[serde(deserialize_with = "wire::Max::<MAX_FETCH_ITEMS>::seq")]
        items: Vec<LogItem>,
        /// Whether more items follow the last one.
        more: bool,
    },
    /// The whole request was refused; for an append, nothing was stored.
    Refused(Refusal),
}

/// One item of a fetched page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogItem {
    /// Its sequence number in the log: unique, never reused, ascending in a page.
    pub seq: u64,
    /// The sealed item, exactly as appended.
    #[serde(with = "wire::bytes")]
    pub bytes: Vec<u8>,
    /// When the relay stored it (ms since the Unix epoch, relay clock).
    pub appended_at_ms: u64,
}

impl GroupLogRequest {
    /// An append of `items` to the log of the group with `secret`.
    pub fn append(secret: &GroupSecret, items: Vec<Vec<u8>>) -> GroupLogRequest {
        GroupLogRequest::Append {
            log: log_id(secret),
            items,
        }
    }

    /// A fetch of the log of the group with `secret` after cursor `after`.
    pub fn fetch(secret: &GroupSecret, after: u64, limit: u32) -> GroupLogRequest {
        GroupLogRequest::Fetch {
            log: log_id(secret),
            after,
            limit,
        }
    }
}

/// The request-response codec for [`PROTOCOL`] (see [`wire::Codec`]).
pub type Codec = wire::Codec<GroupLogRequest, GroupLogResponse>;

impl wire::Message for GroupLogRequest {
    const MAX_LEN: usize = MAX_REQUEST_LEN;

    fn check(&self) -> Result<(), &'static str> {
        match self {
            GroupLogRequest::Append { items, .. } if items.len() > MAX_APPEND_BATCH => {
                Err("append batch too large")
            }
            _ => Ok(()),
        }
    }
}

impl wire::Message for GroupLogResponse {
    const MAX_LEN: usize = MAX_RESPONSE_LEN;

    fn check(&self) -> Result<(), &'static str> {
        match self {
            GroupLogResponse::Appended { seqs } if seqs.len() > MAX_APPEND_BATCH => {
                Err("too many sequence numbers in append answer")
            }
            GroupLogResponse::Page { items, .. } if items.len() > MAX_FETCH_ITEMS => {
                Err("too many items in page")
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::io;

    use crate::wire::Message as _;
    use futures::{executor::block_on, io::Cursor};
    use libp2p::request_response::Codec as _;
    use proptest::prelude::*;

    use super::*;
    use crate::wire::{Frame, WireError, raw_frame, wire_error};

    fn group(n: u8) -> GroupSecret {
        GroupSecret::from_bytes([n; 32])
    }

    fn requests() -> Vec<GroupLogRequest> {
        vec![
            GroupLogRequest::append(&group(1), vec![vec![1, 2, 3], vec![], vec![0xff; 300]]),
            GroupLogRequest::append(&group(1), vec![]),
            GroupLogRequest::append(&group(2), vec![vec![7; MAX_ITEM_LEN]]),
            GroupLogRequest::fetch(&group(1), 0, 10),
            GroupLogRequest::fetch(&group(3), u64::MAX, u32::MAX),
        ]
    }

    fn responses() -> Vec<GroupLogResponse> {
        let mut out = vec![
            GroupLogResponse::Appended {
                seqs: vec![1, 2, u64::MAX],
            },
            GroupLogResponse::Appended { seqs: vec![] },
            GroupLogResponse::Page {
                items: vec![
                    LogItem {
                        seq: 1,
                        bytes: vec![1; 10],
                        appended_at_ms: 42,
                    },
                    LogItem {
                        seq: u64::MAX,
                        bytes: vec![],
                        appended_at_ms: u64::MAX,
                    },
                ],
                more: true,
            },
            GroupLogResponse::Page {
                items: vec![],
                more: false,
            },
        ];
        out.extend(
            [
                Refusal::QuotaCount,
                Refusal::QuotaBytes,
                Refusal::TooLarge,
                Refusal::StoreFull,
                Refusal::RateLimited {
                    retry_after_ms: 1500,
                },
                Refusal::NotMember,
                Refusal::Disabled,
                Refusal::BadRequest,
                Refusal::Storage,
                Refusal::Unrecognized,
            ]
            .map(GroupLogResponse::Refused),
        );
        out
    }

    async fn read_req(bytes: Vec<u8>) -> io::Result<GroupLogRequest> {
        Codec::default().read_request(&PROTOCOL, &mut Cursor::new(bytes)).await
    }

    async fn read_res(bytes: Vec<u8>) -> io::Result<GroupLogResponse> {
        Codec::default()
            .read_response(&PROTOCOL, &mut Cursor::new(bytes))
            .await
    }

    fn assert_invalid<T: std::fmt::Debug>(r: io::Result<T>) {
        let err = r.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
    }

    #[test]
    fn log_ids_are_derived_and_distinct() {
        let id = log_id(&group(1));
        assert_eq!(id, blake3::derive_key("kith group log v2", &[1; 32]));
        assert_ne!(id, log_id(&group(2)));
        // Not the plain hash of the secret: the context separates it from other uses
        // (the gossip topic among them).
        assert_ne!(&id, blake3::hash(&[1; 32]).as_bytes());
        assert!(!crate::group::topic(&group(1)).hash().as_str().contains(&hex::encode(id)));
        assert_eq!(
            GroupLogRequest::fetch(&group(1), 0, 1),
            GroupLogRequest::Fetch {
                log: id,
                after: 0,
                limit: 1
            }
        );
    }

    #[test]
    fn item_limit_fits_sender_key_messages() {
        const { assert!(MAX_ITEM_LEN >= crate::group::sender_key::MAX_MESSAGE_LEN) };
        // A full batch of the largest items fits in one request.
        let req = GroupLogRequest::append(&group(1), vec![vec![0; MAX_ITEM_LEN]; MAX_APPEND_BATCH]);
        let len = wire::encode(&Frame { v: 1, body: &req }).unwrap().len();
        assert!(len <= MAX_REQUEST_LEN, "{len}");
    }

    #[tokio::test]
    async fn every_request_round_trips() {
        for req in requests() {
            let mut buf = Cursor::new(Vec::new());
            Codec::default()
                .write_request(&PROTOCOL, &mut buf, req.clone())
                .await
                .unwrap();
            assert_eq!(read_req(buf.into_inner()).await.unwrap(), req);
        }
    }

    #[tokio::test]
    async fn every_response_round_trips() {
        for res in responses() {
            let mut buf = Cursor::new(Vec::new());
            Codec::default()
                .write_response(&PROTOCOL, &mut buf, res.clone())
                .await
                .unwrap();
            assert_eq!(read_res(buf.into_inner()).await.unwrap(), res);
        }
    }

    #[test]
    fn byte_fields_are_cbor_byte_strings() {
        // Byte strings cost one byte per byte; arrays of integers up to two.
        let req = GroupLogRequest::append(&group(1), vec![vec![0xff; 1000]]);
        let len = wire::encode(&req).unwrap().len();
        assert!(len < 1000 + LOG_ID_LEN + 32, "{len}");
        let page = GroupLogResponse::Page {
            items: vec![LogItem {
                seq: 1,
                bytes: vec![0xff; 1000],
                appended_at_ms: 0,
            }],
            more: false,
        };
        assert!(wire::encode(&page).unwrap().len() < 1000 + MAX_ITEM_OVERHEAD + MAX_PAGE_OVERHEAD);
    }

    #[tokio::test]
    async fn malformed_frames_are_errors() {
        let mut buf = Cursor::new(Vec::new());
        Codec::default()
            .write_request(&PROTOCOL, &mut buf, requests().remove(0))
            .await
            .unwrap();
        let bytes = buf.into_inner();
        // Truncated anywhere.
        for cut in [1, 4, 5, bytes.len() - 1] {
            assert!(
                read_req(bytes[..cut].to_vec()).await.is_err(),
                "cut at {cut}"
            );
        }
        // Announced length above the caps: refused before reading the body, typed.
        for huge in [u32::MAX, u32::try_from(MAX_REQUEST_LEN + 1).unwrap()] {
            let err = read_req(huge.to_be_bytes().to_vec()).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData);
            let inner = err.get_ref().and_then(|e| e.downcast_ref::<WireError>());
            assert!(matches!(inner, Some(WireError::TooLarge { .. })), "{err:?}");
        }
        assert_invalid(read_res(u32::MAX.to_be_bytes().to_vec()).await);
        // Garbage body.
        let mut garbage = 8u32.to_be_bytes().to_vec();
        garbage.extend_from_slice(b"\xffnonsens");
        assert_invalid(read_req(garbage.clone()).await);
        assert_invalid(read_res(garbage).await);
        // A well-formed frame of the wrong type, an unknown variant.
        assert_invalid(read_req(raw_frame(GroupLogResponse::Appended { seqs: vec![] }, 1)).await);
        assert_invalid(read_req(raw_frame("truncate", 1)).await);
        // A future frame version is typed as such.
        let err = read_req(raw_frame(requests().remove(3), 2))
            .await
            .unwrap_err();
        let inner = err.get_ref().and_then(|e| e.downcast_ref::<WireError>());
        assert!(
            matches!(inner, Some(WireError::UnsupportedVersion(2))),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn log_ids_of_the_wrong_length_do_not_decode() {
        #[derive(Serialize)]
        #[serde(rename_all = "snake_case")]
        enum Loose {
            Fetch {
                #[serde(with = "wire::bytes")]
                log: Vec<u8>,
                after: u64,
                limit: u32,
            },
        }
        for len in [0, 31, 33, 64] {
            let req = Loose::Fetch {
                log: vec![1; len],
                after: 0,
                limit: 1,
            };
            assert_invalid(read_req(raw_frame(req, 1)).await);
        }
        let ok = Loose::Fetch {
            log: vec![1; LOG_ID_LEN],
            after: 0,
            limit: 1,
        };
        assert!(read_req(raw_frame(ok, 1)).await.is_ok());
    }

    #[tokio::test]
    async fn count_limits_are_enforced_both_ways() {
        let at_limit = GroupLogRequest::append(&group(1), vec![vec![0]; MAX_APPEND_BATCH]);
        assert!(read_req(raw_frame(&at_limit, 1)).await.is_ok());
        let over = GroupLogRequest::append(&group(1), vec![vec![0]; MAX_APPEND_BATCH + 1]);
        assert_invalid(read_req(raw_frame(&over, 1)).await);
        let err = Codec::default()
            .write_request(&PROTOCOL, &mut Cursor::new(Vec::new()), over)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);

        let item = LogItem {
            seq: 1,
            bytes: vec![1],
            appended_at_ms: 0,
        };
        let full = GroupLogResponse::Page {
            items: vec![item.clone(); MAX_FETCH_ITEMS],
            more: true,
        };
        assert!(read_res(raw_frame(&full, 1)).await.is_ok());
        for res in [
            GroupLogResponse::Appended {
                seqs: vec![1; MAX_APPEND_BATCH + 1],
            },
            GroupLogResponse::Page {
                items: vec![item; MAX_FETCH_ITEMS + 1],
                more: false,
            },
        ] {
            assert_invalid(read_res(raw_frame(&res, 1)).await);
            let err = Codec::default()
                .write_response(&PROTOCOL, &mut Cursor::new(Vec::new()), res)
                .await
                .unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        }
    }

    #[tokio::test]
    async fn count_limits_at_and_past_while_decoding() {
        let too_many = |err: io::Error, limit: usize| {
            assert!(matches!(wire_error(&err), Some(WireError::TooMany { max }) if *max == limit), "{err:?}");
        };
        let append = |n| GroupLogRequest::append(&group(1), vec![vec![]; n]);
        let at = append(MAX_APPEND_BATCH);
        assert_eq!(read_req(raw_frame(&at, 1)).await.unwrap(), at);
        too_many(read_req(raw_frame(append(MAX_APPEND_BATCH + 1), 1)).await.unwrap_err(), MAX_APPEND_BATCH);

        let appended = |n| GroupLogResponse::Appended { seqs: vec![0; n] };
        let item = LogItem { seq: 0, bytes: vec![], appended_at_ms: 0 };
        let page = |n| GroupLogResponse::Page { items: vec![item.clone(); n], more: false };
        for (at, past, limit) in [
            (appended(MAX_APPEND_BATCH), appended(MAX_APPEND_BATCH + 1), MAX_APPEND_BATCH),
            (page(MAX_FETCH_ITEMS), page(MAX_FETCH_ITEMS + 1), MAX_FETCH_ITEMS),
        ] {
            assert_eq!(read_res(raw_frame(&at, 1)).await.unwrap(), at);
            too_many(read_res(raw_frame(&past, 1)).await.unwrap_err(), limit);
        }
    }

    #[tokio::test]
    async fn oversized_frames_fail_on_write() {
        // 9 items of 1 MiB exceed the 8 MiB request cap (the item size is the
        // relay's to refuse, the frame size the codec's).
        let req = GroupLogRequest::append(&group(1), vec![vec![0; 1 << 20]; 9]);
        let err = Codec::default()
            .write_request(&PROTOCOL, &mut Cursor::new(Vec::new()), req)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        // An item over MAX_ITEM_LEN in a small frame is not a codec error.
        let big = GroupLogRequest::append(&group(1), vec![vec![0; MAX_ITEM_LEN + 1]]);
        assert!(read_req(raw_frame(&big, 1)).await.is_ok());
    }

    #[test]
    fn page_overhead_bounds_hold() {
        let item = LogItem {
            seq: u64::MAX,
            bytes: vec![0; MAX_ITEM_LEN],
            appended_at_ms: u64::MAX,
        };
        let one = wire::encode(&item).unwrap().len();
        assert!(
            one <= MAX_ITEM_LEN + MAX_ITEM_OVERHEAD,
            "item encodes to {one}"
        );
        let small = LogItem {
            bytes: vec![0; 30_000],
            ..item
        };
        let page = GroupLogResponse::Page {
            items: vec![small; MAX_FETCH_ITEMS],
            more: true,
        };
        let len = wire::encode(&Frame {
            v: wire::PROTOCOL_FRAME_VERSION,
            body: &page,
        })
        .unwrap()
        .len();
        let bound = MAX_PAGE_OVERHEAD + MAX_FETCH_ITEMS * (30_000 + MAX_ITEM_OVERHEAD);
        assert!(len <= bound, "page encodes to {len}, bound {bound}");
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = wire::decode::<Frame<GroupLogRequest>>(&bytes, MAX_REQUEST_LEN);
            let _ = wire::decode::<Frame<GroupLogResponse>>(&bytes, MAX_RESPONSE_LEN);
            let mut framed = u32::try_from(bytes.len()).unwrap().to_be_bytes().to_vec();
            framed.extend_from_slice(&bytes);
            let _ = block_on(read_req(framed.clone()));
            let _ = block_on(read_res(framed));
            let _ = block_on(read_req(bytes));
        }

        #[test]
        fn corrupted_requests_never_panic(index in any::<prop::sample::Index>(), byte in any::<u8>(), which in 0usize..5) {
            let req = requests().swap_remove(which);
            let mut bytes = raw_frame(&req, 1);
            let i = index.index(bytes.len());
            bytes[i] = byte;
            if let Ok(got) = block_on(read_req(bytes)) {
                prop_assert!(got.check().is_ok());
            }
        }

        #[test]
        fn arbitrary_pages_round_trip(
            items in proptest::collection::vec(
                (any::<u64>(), proptest::collection::vec(any::<u8>(), 0..64), any::<u64>()),
                0..16,
            ),
            more in any::<bool>(),
        ) {
            let res = GroupLogResponse::Page {
                items: items
                    .into_iter()
                    .map(|(seq, bytes, appended_at_ms)| LogItem { seq, bytes, appended_at_ms })
                    .collect(),
                more,
            };
            let got = block_on(read_res(raw_frame(&res, 1))).unwrap();
            prop_assert_eq!(got, res);
        }

        #[test]
        fn arbitrary_appends_round_trip(
            log in any::<[u8; LOG_ID_LEN]>(),
            items in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..8),
        ) {
            let req = GroupLogRequest::Append { log, items };
            let got = block_on(read_req(raw_frame(&req, 1))).unwrap();
            prop_assert_eq!(got, req);
        }
    }
}
