//! Valid inputs for every target: the fuzzer's seed corpus (`fuzz/corpus/<target>/`,
//! written by the `write_seeds` program of the fuzz workspace) and the starting
//! points of the mutation property tests.
//!
//! Sealed and signed seeds use the fixed keys of [`super::fixtures`], so they stay
//! valid inputs for every build. Where a target takes a mode byte, each seed starts
//! with it.

use kith_storage::{GroupId, MessageId, Role};
use libp2p::Multiaddr;
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::dm::{DmRequest, DmResponse, DmResult, RejectReason};
use crate::envelope::{Sealer, SealerConfig};
use crate::group::membership::{MemberCard, OpId, OpKind};
use crate::group::post::GroupPost;
use crate::group::sender_key;
use crate::grouplog::{GroupLogRequest, GroupLogResponse, LogItem};
use crate::invite::Invite;
use crate::mailbox::{DepositResult, MailItem, MailboxRequest, MailboxResponse, Refusal};
use crate::payload::{Payload, PeerHint, ReceiptKind};
use crate::peer_record::PeerRecord;
use crate::wire::{self, Frame, PROTOCOL_FRAME_VERSION};

use super::fixtures::{self, NOW_SECS, group_id, group_secret, identity, peer_id, public, sender_key};

/// The seeds of target `name` (see [`super::TARGETS`]); none for an unknown name.
pub fn seeds(name: &str) -> Vec<Vec<u8>> {
    match name {
        "wire_frame" => wire_frame(),
        "dm" => dm(),
        "mailbox" => mailbox(),
        "grouplog" => grouplog(),
        "envelope" => envelope(),
        "group_message" => group_message(),
        "group_op" => group_op(),
        "group_post" => posts().iter().map(encode_post).collect(),
        "payload" => payloads().iter().map(encode_payload).collect(),
        "peer_record" => peer_record(),
        "invite" => invite(),
        "control" => control(),
        "node_config" => node_config(),
        _ => Vec::new(),
    }
}

/// A length-prefixed protocol frame of `body`.
fn frame<T: Serialize>(body: &T) -> Vec<u8> {
    let bytes = wire::encode(&Frame { v: PROTOCOL_FRAME_VERSION, body }).unwrap_or_else(|e| panic!("encode a seed: {e}"));
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    [&len.to_be_bytes()[..], &bytes].concat()
}

/// `mode` followed by `rest`.
fn with_mode(mode: u8, rest: &[u8]) -> Vec<u8> {
    [&[mode][..], rest].concat()
}

fn addr(text: &str) -> Multiaddr {
    text.parse().unwrap_or_else(|e| panic!("seed multiaddr {text}: {e}"))
}

fn relay_addr() -> Multiaddr {
    addr(&format!("/ip4/192.0.2.7/tcp/4001/p2p/{}", peer_id(3)))
}

fn wire_frame() -> Vec<Vec<u8>> {
    let dm = frame(&DmRequest { envelopes: vec![b"sealed".to_vec()] });
    let fetch = frame(&GroupLogRequest::Fetch { log: [9; 32], after: 3, limit: 10 });
    vec![dm.clone(), [dm, fetch.clone()].concat(), frame(&0u8), fetch, vec![0, 0, 0, 0]]
}

fn dm() -> Vec<Vec<u8>> {
    let envelopes = envelope().into_iter().filter_map(|e| (e.first() == Some(&0)).then(|| e[1..].to_vec())).collect();
    vec![
        with_mode(0, &frame(&DmRequest { envelopes })),
        with_mode(0, &frame(&DmRequest { envelopes: vec![] })),
        with_mode(
            1,
            &frame(&DmResponse {
                results: vec![DmResult::Stored, DmResult::Accepted, DmResult::Rejected(RejectReason::Decrypt)],
            }),
        ),
    ]
}

fn mailbox() -> Vec<Vec<u8>> {
    let relay = peer_id(3);
    let nonce = [5; 32];
    let requests = [
        MailboxRequest::deposit(&peer_id(0), vec![b"envelope one".to_vec(), b"two".to_vec()]),
        MailboxRequest::deposit_with(
            &peer_id(0),
            vec![b"a contact's".to_vec()],
            Some(crate::mailbox::sign_ticket(identity(0), &peer_id(1), 1_800_000_000_000)),
        ),
        MailboxRequest::Challenge,
        MailboxRequest::drain(identity(0), &relay, nonce, Some(4), 16),
        MailboxRequest::ack(identity(0), &relay, nonce, vec![1, 2, 9]),
    ];
    let item = MailItem { seq: 4, envelope: b"sealed".to_vec(), deposited_at_ms: 1_700_000_000_000 };
    let responses = [
        MailboxResponse::Deposited {
            results: vec![DepositResult::Stored, DepositResult::Duplicate, DepositResult::Refused(Refusal::QuotaBytes)],
        },
        MailboxResponse::Challenge { nonce },
        MailboxResponse::Envelopes { items: vec![item], more: true },
        MailboxResponse::Acked { removed: 3 },
        MailboxResponse::Refused(Refusal::RateLimited { retry_after_ms: 1500 }),
    ];
    requests.iter().map(|r| with_mode(0, &frame(r))).chain(responses.iter().map(|r| with_mode(1, &frame(r)))).collect()
}

fn grouplog() -> Vec<Vec<u8>> {
    let secret = group_secret();
    let requests = [
        GroupLogRequest::append(&secret, vec![b"item".to_vec(), vec![]]),
        GroupLogRequest::fetch(&secret, 7, 100),
    ];
    let responses = [
        GroupLogResponse::Appended { seqs: vec![8, 9] },
        GroupLogResponse::Page {
            items: vec![LogItem { seq: 8, bytes: b"item".to_vec(), appended_at_ms: 1_700_000_000_000 }],
            more: false,
        },
        GroupLogResponse::Refused(Refusal::NotMember),
    ];
    requests.iter().map(|r| with_mode(0, &frame(r))).chain(responses.iter().map(|r| with_mode(1, &frame(r)))).collect()
}

fn envelope() -> Vec<Vec<u8>> {
    let mut sealer = Sealer::new(identity(1), SealerConfig::default());
    let recipient = public(0).e2e_public;
    let mut out: Vec<Vec<u8>> = payloads()
        .iter()
        .take(3)
        .map(|p| {
            let sealed = sealer.seal(&recipient, &encode_payload(p)).unwrap_or_else(|e| panic!("seal a seed: {e}"));
            with_mode(0, &sealed)
        })
        .collect();
    out.push(with_mode(1, b"hello"));
    out
}

fn group_message() -> Vec<Vec<u8>> {
    let seal = |author: usize, plaintext: &[u8]| {
        sender_key::seal(identity(author), group_id(), &group_secret(), &sender_key(), 1, plaintext)
            .unwrap_or_else(|e| panic!("seal a group seed: {e}"))
    };
    let post = encode_post(&posts()[0]);
    vec![with_mode(0, &seal(1, &post)), with_mode(0, &seal(2, &post)), with_mode(1, b"hi all")]
}

fn group_op() -> Vec<Vec<u8>> {
    let create = fixtures::create();
    let membership = fixtures::membership();
    let add = membership
        .sign(identity(0), 2, OpKind::Add { member: MemberCard::of(public(1)), role: Role::Admin })
        .unwrap_or_else(|e| panic!("sign a seed operation: {e}"));
    let encode = |op: &crate::group::membership::SignedOp| op.encode().unwrap_or_else(|e| panic!("encode a seed: {e}"));
    vec![
        with_mode(0, &encode(create)),
        with_mode(0, &encode(&add)),
        // owner adds 1 as admin; 1 adds 2; 1 removes 2 concurrently with the owner
        // demoting 1; 2 leaves.
        with_mode(1, &[0, 0, 0x41, 0, 1, 0, 2, 1, 1, 1, 2, 1, 0, 2, 1, 2, 2, 4, 0, 1, 3, 1, 2]),
        // owner adds 1 and 2; both rename concurrently; owner leaves.
        with_mode(1, &[0, 0, 0x41, 0, 0, 0, 0x42, 1, 1, 3, 5, 1, 2, 3, 6, 2, 0, 4, 0, 3, 9, 8]),
    ]
}

fn posts() -> Vec<GroupPost> {
    vec![
        GroupPost::Text { id: MessageId([1; 16]), lamport: 3, sent_at_ms: 1_700_000_000_000, text: "hello group".into(), file: None, link: None },
        GroupPost::Text { id: MessageId([2; 16]), lamport: 0, sent_at_ms: 0, text: String::new(), file: None, link: None },
        GroupPost::Text {
            id: MessageId([3; 16]),
            lamport: 4,
            sent_at_ms: 1_700_000_000_000,
            text: String::new(),
            file: None,
            link: Some(kith_storage::Link::React { target: MessageId([1; 16]), emoji: "👍".into(), on: true }),
        },
    ]
}

fn encode_post(post: &GroupPost) -> Vec<u8> {
    post.encode().unwrap_or_else(|e| panic!("encode a seed post: {e}"))
}

fn payloads() -> Vec<Payload> {
    let group = GroupId([7; 16]);
    let op = fixtures::create().encode().unwrap_or_else(|e| panic!("encode a seed: {e}"));
    vec![
        Payload::Text { id: MessageId([1; 16]), lamport: 4, sent_at_ms: 1_700_000_000_000, text: "hi there".into(), file: None, link: None },
        Payload::Text {
            id: MessageId([2; 16]),
            lamport: 5,
            sent_at_ms: 1_700_000_000_000,
            text: "hi there, fixed".into(),
            file: None,
            link: Some(kith_storage::Link::Edit(MessageId([1; 16]))),
        },
        Payload::ContactRequest {
            name: Some("Alice".into()),
            addrs: vec![addr("/ip4/127.0.0.1/tcp/4001").to_vec()],
            token: Some([3; 16]),
            relays: vec![relay_addr().to_vec()],
            keys: Some(crate::payload::RequestKeys { identity: [4; 32], signature: [5; 64], one_time: [6; 32], issued_us: 7 }),
            issued_us: 1_700_000_000_000_000,
        },
        Payload::Receipt { kind: ReceiptKind::Read, ids: vec![MessageId([1; 16]), MessageId([2; 16])] },
        Payload::ContactAccepted { name: None, issued_us: 1_700_000_000_000_001, answers_us: 1_700_000_000_000_000 },
        Payload::GroupOps {
            group,
            ops: vec![op],
            hints: vec![PeerHint {
                peer_id: peer_id(2).to_bytes(),
                addrs: vec![addr("/ip4/10.0.0.2/udp/9/quic-v1").to_vec()],
                relays: vec![],
            }],
        },
        Payload::GroupSync { group, heads: vec![OpId([4; 32])] },
        Payload::GroupKey { group, generation: 2, index: 9, key: [6; 32] },
        Payload::Profile { signed: signed_profile() },
        Payload::Prekeys { identity: [8; 32], signature: [9; 64], one_time: [10; 32], reset: false, issued_us: 1_700_000_000_000_000 },
        Payload::Ratcheted { kind: crate::ratchet::NORMAL_MESSAGE, body: vec![3; 64] },
    ]
}

/// A profile with a name, a status and a tiny PNG avatar, signed by identity 1.
fn signed_profile() -> Vec<u8> {
    let mut png = Vec::new();
    image::RgbImage::new(2, 2)
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap_or_else(|e| panic!("encode a seed avatar: {e}"));
    let profile = crate::profile::Profile {
        name: Some("Alice".into()),
        status: Some("at the lake".into()),
        avatar: Some(crate::profile::Avatar { media_type: "image/png".into(), bytes: png }),
        version: 1_700_000_000_000,
    };
    let signed = profile.sign(identity(1)).unwrap_or_else(|e| panic!("sign a seed profile: {e}"));
    signed.encode().unwrap_or_else(|e| panic!("encode a seed profile: {e}"))
}

fn encode_payload(payload: &Payload) -> Vec<u8> {
    payload.encode().unwrap_or_else(|e| panic!("encode a seed payload: {e}"))
}

/// The signed container of a peer record, for taking the body out of a seed.
#[derive(Deserialize)]
struct SignedRecord {
    #[serde(with = "wire::bytes")]
    record: Vec<u8>,
}

fn peer_record() -> Vec<Vec<u8>> {
    let public = public(0);
    let record = |seq, display_name: Option<&str>, addrs: Vec<Multiaddr>| PeerRecord {
        peer_id: public.peer_id,
        e2e_public: public.e2e_public,
        binding: public.binding,
        addrs,
        relays: vec![relay_addr()],
        display_name: display_name.map(str::to_owned),
        seq,
        expires_at_secs: NOW_SECS + 3600,
    };
    let mut out = Vec::new();
    for r in [record(1, Some("Alice"), vec![addr("/ip4/198.51.100.1/tcp/4001")]), record(2, None, vec![])] {
        let signed = r.sign(identity(0)).unwrap_or_else(|e| panic!("sign a seed record: {e}"));
        let body: SignedRecord = wire::decode(&signed, usize::MAX).unwrap_or_else(|e| panic!("seed record body: {e}"));
        out.push(with_mode(0, &signed));
        out.push(with_mode(1, &body.record));
    }
    out
}

fn invite() -> Vec<Vec<u8>> {
    let mut full = Invite::new(public(0).clone());
    full.name = Some("Alice".into());
    full.addrs = vec![addr("/ip4/198.51.100.1/tcp/4001"), addr("/ip6/::1/udp/4001/quic-v1")];
    full.relays = vec![relay_addr()];
    full.token = Some([9; 16]);
    let bare = Invite::new(public(1).clone());
    let mut out = Vec::new();
    for invite in [full, bare] {
        let uri = invite.to_uri();
        out.push(with_mode(0, uri.as_bytes()));
        let payload = bs58::decode(&uri[crate::invite::SCHEME.len()..])
            .into_vec()
            .unwrap_or_else(|e| panic!("seed invite base58: {e}"));
        out.push(with_mode(1, &payload));
    }
    out
}

fn control() -> Vec<Vec<u8>> {
    let peer = peer_id(2);
    [
        r#"{"id":1,"method":"contacts"}"#.to_owned(),
        r#"{"id":"a","method":"contacts","params":{"state":"accepted"}}"#.to_owned(),
        r#"{"id":2,"method":"history","params":{"contact":"bob","limit":5,"before":"00"}}"#.to_owned(),
        format!(r#"{{"id":3,"method":"message","params":{{"id":"{}"}}}}"#, "ab".repeat(16)),
        format!(r#"{{"id":4,"method":"block","params":{{"contact":"{peer}"}}}}"#),
        format!(r#"{{"id":5,"method":"rename","params":{{"contact":"{peer}","alias":"Bob"}}}}"#),
        r#"{"id":6,"method":"read","params":{"contact":"nobody"}}"#.to_owned(),
        r#"{"id":7,"method":"group","params":{"group":"friends"}}"#.to_owned(),
        r#"{"id":8,"method":"send","params":{"contact":"bob","text":"hi"}}"#.to_owned(),
        r#"{"method":"subscribe"}"#.to_owned(),
        r#"{"id":[1,{"x":null}],"method":"inbox","params":null}"#.to_owned(),
        r#"{"id":9,"method":"requests"}"#.to_owned(),
        // What serde_json checks less when it skips a value than when it reads one:
        // the quick read of a line must leave these to the read through a `Value`.
        r#"{"id":10,"method":"send","params":{"contact":"bob","text":"hi","x":1e999}}"#.to_owned(),
        r#"{"method":"subscribe","x":"\udc00"}"#.to_owned(),
        r#"{"id":11,"method":"status","params":{},"extra":{"deep":[[[true]]],"s":"caf\u00e9"}}"#.to_owned(),
    ]
    .into_iter()
    .map(|line| line.into_bytes())
    .collect()
}

fn node_config() -> Vec<Vec<u8>> {
    let full = Config {
        listen: vec![addr("/ip4/0.0.0.0/tcp/4001"), addr("/ip6/::/udp/4001/quic-v1")],
        bootstrap: vec![relay_addr()],
        relays: vec![relay_addr()],
        mdns: false,
        display_name: Some("Alice \u{1F600}".into()),
        read_receipts: false,
        presence: false,
        notify_command: Some("notify-send kith 'new message'".into()),
        auto_download_max: 1 << 20,
    };
    vec![
        Config::default().to_toml().into_bytes(),
        full.to_toml().into_bytes(),
        b"listen = []\nmdns = true\n".to_vec(),
        b"display_name = \"Bob\" # a comment\nrelays = [ ]\n".to_vec(),
    ]
}
