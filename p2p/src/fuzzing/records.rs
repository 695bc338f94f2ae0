//! Targets for what describes a peer or travels inside an envelope: end-to-end
//! payloads ([`Payload::decode`]), signed peer records ([`PeerRecord::verify`]) and
//! invites ([`Invite::parse`]).

use serde::Serialize;

use crate::config::check_display_name;
use crate::group::membership::{MAX_PARENTS, SignedOp};
use crate::invite::{Invite, InviteError, MAX_INVITE_LEN, SCHEME};
use crate::payload::{
    MAX_GROUP_OPS, MAX_HINTS, MAX_LAMPORT, MAX_PAYLOAD_LEN, MAX_RECEIPT_IDS, MAX_TEXT_LEN, Payload,
};
use crate::peer_record::{
    MAX_ADDRS, MAX_DISPLAY_NAME_BYTES, PeerRecord, RECORD_SIGNATURE_CONTEXT, RecordCache, RecordError,
};
use crate::wire::{self, WireError};

use super::fixtures::{NOW_SECS, identity, peer_id};

/// Decode the bytes as an opened envelope's plaintext.
///
/// Invariants: every list and text of a decoded payload is within its limit and a
/// text's Lamport counter within [`MAX_LAMPORT`]; it encodes and decodes again to
/// itself (or, encoded canonically, is over [`MAX_PAYLOAD_LEN`]); the group
/// operations it carries decode or fail with typed errors; failures are typed.
pub fn payload(bytes: &[u8]) {
    let decoded = match Payload::decode(bytes) {
        Ok(decoded) => decoded,
        Err(e) => return super::assert_decode_error(&e),
    };
    check_payload_limits(&decoded);
    let encoded = decoded.encode().unwrap_or_else(|e| panic!("encode a decoded payload: {e}"));
    match Payload::decode(&encoded) {
        Ok(again) => assert_eq!(again, decoded, "a payload encoded and decoded again differs"),
        Err(WireError::TooLarge { .. }) if encoded.len() > MAX_PAYLOAD_LEN => {}
        Err(WireError::TooLarge { .. }) if matches!(decoded, Payload::Ratcheted { .. }) => {}
        Err(e) => panic!("decode a re-encoded payload: {e}"),
    }
}

fn check_payload_limits(decoded: &Payload) {
    match decoded {
        Payload::Text { lamport, text, .. } => assert!(*lamport <= MAX_LAMPORT && text.len() <= MAX_TEXT_LEN),
        Payload::Receipt { ids, .. } => assert!(ids.len() <= MAX_RECEIPT_IDS),
        Payload::ContactRequest { name, addrs, relays, .. } => {
            assert!(addrs.len() <= MAX_ADDRS && relays.len() <= MAX_ADDRS);
            assert!(name.as_ref().is_none_or(|n| n.len() <= MAX_DISPLAY_NAME_BYTES));
        }
        Payload::ContactAccepted { name, .. } => {
            assert!(name.as_ref().is_none_or(|n| n.len() <= MAX_DISPLAY_NAME_BYTES));
        }
        Payload::GroupOps { ops, hints, .. } => {
            assert!(ops.len() <= MAX_GROUP_OPS && hints.len() <= MAX_HINTS);
            for op in ops {
                if let Err(e) = SignedOp::decode(op) {
                    assert!(matches!(e, crate::group::GroupError::Malformed(_) | crate::group::GroupError::BadSignature));
                }
            }
            for hint in hints {
                assert!(hint.addrs.len() <= MAX_ADDRS && hint.relays.len() <= MAX_ADDRS);
            }
        }
        Payload::GroupSync { heads, .. } => assert!(heads.len() <= MAX_PARENTS),
        Payload::GroupKey { .. } | Payload::Presence { .. } | Payload::Typing { .. } | Payload::Prekeys { .. } | Payload::DepositTicket { .. } => {}
        Payload::Ratcheted { kind, body } => {
            assert!(*kind <= crate::ratchet::NORMAL_MESSAGE && body.len() <= MAX_PAYLOAD_LEN + crate::payload::RATCHET_OVERHEAD);
        }
        Payload::Profile { signed } => {
            // Whatever the bytes, reading the profile and checking its rules (the
            // avatar's picture header included) ends in a value or a typed error.
            if let Ok(s) = crate::profile::SignedProfile::decode(signed)
                && let Ok(profile) = crate::wire::decode::<crate::profile::Profile>(&s.profile, crate::profile::MAX_SIGNED_PROFILE_LEN)
            {
                let _ = profile.check();
            }
        }
    }
}

/// The signed container of a peer record, as it is on the wire.
#[derive(Serialize)]
struct SignedRecord<'a> {
    v: u32,
    #[serde(with = "wire::bytes")]
    record: &'a [u8],
    #[serde(with = "wire::byte_array")]
    sig: [u8; 64],
}

/// `body` as the record bytes of a signed peer record, signed by identity 0.
pub(crate) fn sign_record_body(body: &[u8]) -> Vec<u8> {
    let sig = identity(0).sign(&[RECORD_SIGNATURE_CONTEXT, body].concat());
    wire::encode(&SignedRecord { v: 1, record: body, sig }).unwrap_or_else(|e| panic!("encode a signed record: {e}"))
}

/// Mode byte even: verify the rest as a signed peer record. Odd: sign the rest as a
/// record body with identity 0's key, then verify that.
///
/// Invariants: a verified record is within its limits, unexpired, its key binding
/// verifies, it verifies again when its peer id is expected and is refused as
/// [`RecordError::WrongPeer`] for another; a record cache takes it once and then
/// calls it known; identity 0's own records, signed again, verify to the same
/// record. Verification without an expected peer never fails as `WrongPeer` or
/// `Stale`.
pub fn peer_record(bytes: &[u8]) {
    let Some((mode, rest)) = super::split_mode(bytes) else { return };
    let signed;
    let bytes = if mode % 2 == 0 {
        rest
    } else {
        signed = sign_record_body(rest);
        &signed
    };
    let record = match PeerRecord::verify(bytes, None, NOW_SECS) {
        Ok(record) => record,
        Err(e) => {
            assert!(!matches!(e, RecordError::WrongPeer | RecordError::Stale { .. }), "{e:?}");
            return;
        }
    };
    assert!(record.addrs.len() <= MAX_ADDRS && record.relays.len() <= MAX_ADDRS);
    assert!(record.display_name.as_ref().is_none_or(|n| n.len() <= MAX_DISPLAY_NAME_BYTES));
    assert!(record.expires_at_secs > NOW_SECS);
    assert!(record.public_identity().verify().is_ok());
    let expected = PeerRecord::verify(bytes, Some(&record.peer_id), NOW_SECS)
        .unwrap_or_else(|e| panic!("verify with the record's own peer expected: {e}"));
    assert_eq!(expected, record);
    let other = if record.peer_id == peer_id(1) { peer_id(2) } else { peer_id(1) };
    assert!(matches!(PeerRecord::verify(bytes, Some(&other), NOW_SECS), Err(RecordError::WrongPeer)));

    let mut cache = RecordCache::new(2);
    assert!(matches!(cache.accept(record.clone()), Ok(true)));
    assert!(matches!(cache.accept(record.clone()), Ok(false)));

    if record.peer_id == peer_id(0) {
        match record.sign(identity(0)) {
            Ok(again) => {
                let reverified =
                    PeerRecord::verify(&again, None, NOW_SECS).unwrap_or_else(|e| panic!("verify a re-signed record: {e}"));
                assert_eq!(reverified, record, "a record signed again verifies to another record");
            }
            Err(RecordError::TooLarge { .. }) => {}
            Err(e) => panic!("sign a verified record again: {e}"),
        }
    }
}

/// Mode byte even: parse the rest (as UTF-8, invalid sequences replaced) as an
/// invite. Odd: the rest is an invite's payload: parse `kith:` and its base58.
///
/// Invariants: a parsed invite's key binding verifies and its name is a valid
/// display name; its URI parses back to the same invite (or is too long); `FromStr`
/// agrees with [`Invite::parse`]; `Debug` never shows the token.
pub fn invite(bytes: &[u8]) {
    let Some((mode, rest)) = super::split_mode(bytes) else { return };
    let text = if mode % 2 == 0 {
        String::from_utf8_lossy(rest).into_owned()
    } else {
        format!("{SCHEME}{}", bs58::encode(rest).into_string())
    };
    let invite = match Invite::parse(&text) {
        Ok(invite) => invite,
        Err(e) => {
            assert!(!matches!(e, InviteError::Qr(_)), "{e:?}");
            assert!(text.parse::<Invite>().is_err());
            return;
        }
    };
    assert!(invite.public_identity().verify().is_ok());
    assert!(invite.name.as_deref().is_none_or(|n| check_display_name(n).is_ok()));
    assert!(text.parse::<Invite>().ok().as_ref() == Some(&invite), "FromStr and parse disagree");
    let uri = invite.to_uri();
    match Invite::parse(&uri) {
        Ok(again) => assert!(again == invite, "an invite's URI parses to another invite: {uri}"),
        Err(InviteError::TooLong) if uri.len() > MAX_INVITE_LEN => {}
        Err(e) => panic!("an invite's own URI does not parse: {e} ({uri})"),
    }
    if let Some(token) = invite.token {
        let debug = format!("{invite:?}");
        assert!(!debug.contains(&format!("{token:?}")), "Debug shows the token");
    }
}
