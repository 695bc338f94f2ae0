//! The STUN side of the TURN server: reading requests and writing responses with
//! webrtc's own STUN and TURN attribute codecs (RFC 5389, RFC 5766).

use std::net::SocketAddr;

use rtc::crypto::RTCCrypto;
use rtc::stun::attributes::{ATTR_NONCE, ATTR_REALM, ATTR_XOR_PEER_ADDRESS};
use rtc::stun::error_code::ErrorCode;
use rtc::stun::fingerprint::FINGERPRINT;
use rtc::stun::integrity::MessageIntegrity;
use rtc::stun::message::{CLASS_ERROR_RESPONSE, CLASS_SUCCESS_RESPONSE, Getter, Message, MessageType, Setter};
use rtc::stun::textattrs::TextAttribute;
use rtc::stun::xoraddr::XorMappedAddress;
use rtc::turn::proto::peeraddr::PeerAddress;

/// Attributes of a response, set in order.
pub(crate) type Attrs = Vec<Box<dyn Setter>>;

/// A success response to `request` with `attrs`, signed with `key` (MESSAGE-INTEGRITY)
/// when there is one.
pub(crate) fn success(request: &Message, attrs: Attrs, key: Option<&[u8]>, crypto: &dyn RTCCrypto) -> Option<Vec<u8>> {
    let mut setters: Vec<Box<dyn Setter + '_>> = vec![
        Box::new(request.clone()),
        Box::new(MessageType::new(request.typ.method, CLASS_SUCCESS_RESPONSE)),
    ];
    setters.extend(attrs.into_iter().map(|a| a as Box<dyn Setter + '_>));
    if let Some(key) = key {
        setters.push(Box::new(MessageIntegrity::new_raw_integrity_with_provider(key.to_vec(), crypto)));
    }
    setters.push(Box::new(FINGERPRINT));
    let mut out = Message::new();
    out.build(&setters).ok()?;
    Some(out.raw)
}

/// An error response to `request` with `code` and, for 401 and 438, the realm and a
/// fresh nonce to authenticate with.
pub(crate) fn error(request: &Message, code: u16, challenge: Option<(&str, &str)>) -> Option<Vec<u8>> {
    let mut setters: Vec<Box<dyn Setter>> = vec![
        Box::new(request.clone()),
        Box::new(MessageType::new(request.typ.method, CLASS_ERROR_RESPONSE)),
        Box::new(ErrorCode(code)),
    ];
    if let Some((realm, nonce)) = challenge {
        setters.push(Box::new(TextAttribute::new(ATTR_REALM, realm.to_owned())));
        setters.push(Box::new(TextAttribute::new(ATTR_NONCE, nonce.to_owned())));
    }
    setters.push(Box::new(FINGERPRINT));
    let mut out = Message::new();
    out.build(&setters).ok()?;
    Some(out.raw)
}

/// XOR-MAPPED-ADDRESS: where the request came from.
pub(crate) fn mapped(addr: SocketAddr) -> Box<dyn Setter> {
    Box::new(XorMappedAddress { ip: addr.ip(), port: addr.port() })
}

/// Every XOR-PEER-ADDRESS of `request` (CreatePermission may carry several); `None`
/// if one is malformed.
pub(crate) fn peer_addresses(request: &Message) -> Option<Vec<SocketAddr>> {
    let mut addrs = Vec::new();
    for attr in request.attributes.0.iter().filter(|a| a.typ == ATTR_XOR_PEER_ADDRESS) {
        // The address is XORed with the transaction id: decode it in a message of
        // its own with the same id.
        let mut one = Message::new();
        one.transaction_id = request.transaction_id;
        one.add(ATTR_XOR_PEER_ADDRESS, &attr.value);
        let mut peer = PeerAddress::default();
        peer.get_from(&one).ok()?;
        addrs.push(SocketAddr::new(peer.ip, peer.port));
    }
    Some(addrs)
}

/// A text attribute of `request`, if present.
pub(crate) fn text(request: &Message, attr: rtc::stun::attributes::AttrType) -> Option<String> {
    TextAttribute::get_from_as(request, attr).ok().map(|t| t.text)
}

/// Whether `request` is signed with `key` (its MESSAGE-INTEGRITY checks out).
pub(crate) fn signed_with(request: &Message, key: &[u8], crypto: &dyn RTCCrypto) -> bool {
    let mut copy = request.clone();
    MessageIntegrity::check(&mut copy, key, crypto).is_ok()
}

/// A Data indication carrying `data` from `peer` (RFC 5766 §10.4).
pub(crate) fn data_indication(peer: SocketAddr, data: &[u8]) -> Option<Vec<u8>> {
    use rtc::stun::message::{CLASS_INDICATION, METHOD_DATA, TransactionId};
    use rtc::turn::proto::data::Data;
    let mut out = Message::new();
    out.build(&[
        Box::new(TransactionId::new()),
        Box::new(MessageType::new(METHOD_DATA, CLASS_INDICATION)),
        Box::new(PeerAddress { ip: peer.ip(), port: peer.port() }),
        Box::new(Data(data.to_vec())),
        Box::new(FINGERPRINT),
    ])
    .ok()?;
    Some(out.raw)
}

/// A ChannelData message carrying `data` on `channel` (RFC 5766 §11.4).
pub(crate) fn channel_data(channel: u16, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + data.len() + 3);
    out.extend_from_slice(&channel.to_be_bytes());
    out.extend_from_slice(&u16::try_from(data.len()).unwrap_or(u16::MAX).to_be_bytes());
    out.extend_from_slice(data);
    // UDP needs no padding to 4 bytes, but RFC 5766 allows it and clients expect it.
    while out.len() % 4 != 0 {
        out.push(0);
    }
    out
}

/// A ChannelData message's channel and payload, if `packet` is one.
pub(crate) fn parse_channel_data(packet: &[u8]) -> Option<(u16, &[u8])> {
    let channel = u16::from_be_bytes([*packet.first()?, *packet.get(1)?]);
    let len = usize::from(u16::from_be_bytes([*packet.get(2)?, *packet.get(3)?]));
    if !(0x4000..=0x7FFF).contains(&channel) {
        return None;
    }
    Some((channel, packet.get(4..4 + len)?))
}
