//! `kith:` invite URIs: everything needed to add a contact in one string (or QR code).
//!
//! An invite is `kith:` followed by the base58 (Bitcoin alphabet) encoding of a CBOR
//! map with short text keys:
//!
//! | key | value                                                      |
//! |-----|------------------------------------------------------------|
//! | `v` | format version, unsigned integer, `1`                     |
//! | `i` | peer id, bytes (its multihash encoding)                    |
//! | `k` | X25519 E2E public key, 32 bytes                            |
//! | `s` | binding signature over the E2E key, 64 bytes               |
//! | `b` | the binding's stamp: key version ‖ expiry (u64 BE each) ‖ signature, 80 bytes, if stamped |
//! | `n` | display name, text (optional)                              |
//! | `a` | direct addresses, array of binary multiaddrs (optional)    |
//! | `r` | pinned relays, array of binary multiaddrs (optional)       |
//! | `t` | one-time token, 16 bytes (optional)                        |
//!
//! Writers emit keys in that order with minimal-length CBOR heads, so the same invite
//! always gives the same URI. Readers ignore unknown keys (room to grow within v1)
//! and reject any other version with [`InviteError::UnsupportedVersion`]. Each address
//! list holds at most [`MAX_ADDRS`] entries.
//!
//! [`Invite::parse`] checks the length before decoding anything and verifies the E2E
//! key binding, so a parsed invite's key is known to belong to its peer id. The
//! addresses, name and token are *not* signed: they are hints from whoever handed
//! over the invite, which is the trust anchor for adding the contact.

use std::fmt;
use std::str::FromStr;

use ciborium::Value;
use libp2p::{Multiaddr, PeerId};
use qrcode::{Color, EcLevel, QrCode};

use crate::config::check_display_name;
use crate::identity::{Binding, PublicIdentity};
use crate::peer_record::MAX_ADDRS;

/// The URI scheme prefix (matched case-insensitively on parse).
pub const SCHEME: &str = "kith:";

/// Longest accepted invite, in characters (after removing whitespace).
/// Checked before decoding so a hostile paste cannot make the base58 decoder (which
/// is quadratic) or the CBOR decoder do much work; it also keeps invites small enough
/// for a QR code a phone can read off a terminal.
pub const MAX_INVITE_LEN: usize = 4096;

/// The invite format version this build writes and reads.
const VERSION: u64 = 1;
/// Fewer base58 characters than any complete invite's payload (a bare one: version,
/// peer id, key and binding; the test `a_cut_off_invite_says_it_is_truncated` checks
/// the margin).
const MIN_PAYLOAD_CHARS: usize = 190;

/// Light modules added around the code on every side. The QR spec asks for 4; 2 is
/// what `qrencode` uses for terminal output and keeps a typical invite within 80
/// columns, and the drawn quiet zone is what scanners need on a dark terminal.
const QR_QUIET_ZONE: usize = 2;

/// Errors from parsing or rendering an invite.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InviteError {
    /// The text does not start with `kith:`.
    #[error("not a kith invite (it should start with \"kith:\")")]
    NotKith,
    /// The text is longer than [`MAX_INVITE_LEN`].
    #[error("invite is too long (more than {MAX_INVITE_LEN} characters)")]
    TooLong,
    /// The payload does not decode and is shorter than the smallest invite: it was
    /// cut when copied. (base58 keeps no prefix of the bytes, so a longer cut shows
    /// as [`InviteError::Encoding`].)
    #[error("the invite is truncated: copy all of it (it is one long line starting with \"kith:\")")]
    Truncated,
    /// The payload is not valid base58, CBOR, or invite fields.
    #[error("invalid invite (cut off or mistyped? copy all of it in one piece): {0}")]
    Encoding(String),
    /// The invite was made by a newer version of kith.
    #[error("invite format version {0} is not supported; upgrade kith")]
    UnsupportedVersion(u64),
    /// The E2E key's binding signature does not verify against the peer id.
    #[error("invite's encryption key is not signed by its peer id")]
    BadBinding,
    /// The invite could not be drawn as a QR code (too much data).
    #[error("cannot render the invite as a QR code: {0}")]
    Qr(String),
}

/// Which way round to draw a QR code in a terminal.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum QrColors {
    /// Light modules are drawn with block characters, dark ones left blank: correct
    /// on a dark-background terminal (the common case).
    #[default]
    LightOnDark,
    /// Dark modules are drawn, light ones left blank: for light-background terminals.
    DarkOnLight,
}

/// A contact invite: a user's public identity plus hints on how to reach them.
#[derive(Clone, PartialEq, Eq)]
pub struct Invite {
    /// The inviter's user id.
    pub peer_id: PeerId,
    /// The inviter's X25519 end-to-end encryption key.
    pub e2e_public: [u8; 32],
    /// `peer_id`'s binding of `e2e_public` (see [`PublicIdentity`]).
    pub binding: Binding,
    /// The name the inviter suggests for themselves.
    pub name: Option<String>,
    /// Addresses the inviter can be dialled at directly.
    pub addrs: Vec<Multiaddr>,
    /// The inviter's pinned relays.
    pub relays: Vec<Multiaddr>,
    /// A one-time token; presenting it makes a mutual contact without approval.
    /// Secret until redeemed: never logged or shown by `Debug`.
    pub token: Option<[u8; 16]>,
}

impl fmt::Debug for Invite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Invite")
            .field("peer_id", &self.peer_id)
            .field("name", &self.name)
            .field("addrs", &self.addrs)
            .field("relays", &self.relays)
            .field("token", &self.token.map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

impl Invite {
    /// An invite for `identity` with no name, addresses, relays or token.
    pub fn new(identity: PublicIdentity) -> Invite {
        Invite {
            peer_id: identity.peer_id,
            e2e_public: identity.e2e_public,
            binding: identity.binding,
            name: None,
            addrs: Vec::new(),
            relays: Vec::new(),
            token: None,
        }
    }

    /// Encodes the invite as a `kith:` URI. Deterministic.
    ///
    /// Infallible, but an invite with very many addresses can exceed
    /// [`MAX_INVITE_LEN`] and would then be refused by [`Invite::parse`]; keep the
    /// address lists short.
    pub fn to_uri(&self) -> String {
        let mut cbor = Vec::with_capacity(256);
        let versioned = self.binding.stamp.is_some();
        let entries = 4
            + usize::from(versioned)
            + usize::from(self.name.is_some())
            + usize::from(!self.addrs.is_empty())
            + usize::from(!self.relays.is_empty())
            + usize::from(self.token.is_some());
        cbor_head(&mut cbor, MAJOR_MAP, entries as u64);
        cbor_text(&mut cbor, "v");
        cbor_head(&mut cbor, MAJOR_UINT, VERSION);
        cbor_text(&mut cbor, "i");
        cbor_bytes(&mut cbor, &self.peer_id.to_bytes());
        cbor_text(&mut cbor, "k");
        cbor_bytes(&mut cbor, &self.e2e_public);
        cbor_text(&mut cbor, "s");
        cbor_bytes(&mut cbor, &self.binding.signature);
        if versioned {
            cbor_text(&mut cbor, "b");
            cbor_bytes(&mut cbor, &self.binding.to_bytes()[64..]);
        }
        if let Some(name) = &self.name {
            cbor_text(&mut cbor, "n");
            cbor_text(&mut cbor, name);
        }
        for (key, addrs) in [("a", &self.addrs), ("r", &self.relays)] {
            if !addrs.is_empty() {
                cbor_text(&mut cbor, key);
                cbor_head(&mut cbor, MAJOR_ARRAY, addrs.len() as u64);
                for addr in addrs {
                    cbor_bytes(&mut cbor, &addr.to_vec());
                }
            }
        }
        if let Some(token) = &self.token {
            cbor_text(&mut cbor, "t");
            cbor_bytes(&mut cbor, token);
        }
        format!("{SCHEME}{}", bs58::encode(cbor).into_string())
    }

    /// Parses and verifies a `kith:` URI.
    ///
    /// Whitespace anywhere (a copy wrapped over lines) is ignored and the scheme is
    /// case-insensitive; a cut-off payload is [`InviteError::Truncated`]. The
    /// length is checked first ([`InviteError::TooLong`]); then the payload is
    /// decoded, the version checked ([`InviteError::UnsupportedVersion`]) and the
    /// E2E key binding verified ([`InviteError::BadBinding`]).
    pub fn parse(uri: &str) -> Result<Invite, InviteError> {
        if uri.len() > MAX_INVITE_LEN * 2 {
            return Err(InviteError::TooLong);
        }
        // Copied from a terminal, a long invite arrives wrapped over lines or indented:
        // base58 has no whitespace, so all of it can go.
        let uri: String = uri.chars().filter(|c| !c.is_whitespace()).collect();
        let uri = uri.as_str();
        if uri.len() > MAX_INVITE_LEN {
            return Err(InviteError::TooLong);
        }
        let payload = match uri.get(..SCHEME.len()) {
            Some(scheme) if scheme.eq_ignore_ascii_case(SCHEME) => &uri[SCHEME.len()..],
            _ => return Err(InviteError::NotKith),
        };
        // A short payload that does not even decode is a copy cut off (base58 keeps
        // no prefix of the bytes, so this is the one sign of it we have).
        let short = payload.len() < MIN_PAYLOAD_CHARS;
        let undecodable = |detail: String| if short { InviteError::Truncated } else { InviteError::Encoding(detail) };
        let bytes = bs58::decode(payload).into_vec().map_err(|e| undecodable(format!("base58: {e}")))?;
        // A generic CBOR value is fine here: the input is at most MAX_INVITE_LEN
        // characters, so the whole tree is a few hundred KB at worst; nesting is capped
        // like every kith decoder's.
        let mut reader = bytes.as_slice();
        let value: Value = ciborium::de::from_reader_with_recursion_limit(&mut reader, crate::wire::RECURSION_LIMIT)
            .map_err(|e| undecodable(format!("cbor: {e}")))?;
        if !reader.is_empty() {
            return Err(undecodable("trailing bytes after the invite".into()));
        }
        let invite = Invite::from_value(value)?;
        invite
            .public_identity()
            .verify()
            .map_err(|_| InviteError::BadBinding)?;
        Ok(invite)
    }

    fn from_value(value: Value) -> Result<Invite, InviteError> {
        let Value::Map(entries) = value else {
            return Err(enc("payload is not a map"));
        };
        let mut fields = Fields::default();
        for (key, value) in entries {
            let Value::Text(key) = key else {
                return Err(enc("map key is not text"));
            };
            let slot = match key.as_str() {
                "v" => &mut fields.v,
                "i" => &mut fields.i,
                "k" => &mut fields.k,
                "s" => &mut fields.s,
                "b" => &mut fields.b,
                "n" => &mut fields.n,
                "a" => &mut fields.a,
                "r" => &mut fields.r,
                "t" => &mut fields.t,
                // Unknown keys are additions from a newer v1 writer.
                _ => continue,
            };
            if slot.replace(value).is_some() {
                return Err(InviteError::Encoding(format!("duplicate key {key:?}")));
            }
        }

        // The version decides how to read everything else, so it goes first.
        let version = match fields.v {
            Some(Value::Integer(v)) => u64::try_from(v).map_err(|_| enc("version is negative"))?,
            Some(_) => return Err(enc("version is not an integer")),
            None => return Err(enc("version missing")),
        };
        if version != VERSION {
            return Err(InviteError::UnsupportedVersion(version));
        }

        let peer_id = PeerId::from_bytes(&required_bytes(fields.i, "peer id")?)
            .map_err(|e| InviteError::Encoding(format!("peer id: {e}")))?;
        let e2e_public = fixed_bytes::<32>(required_bytes(fields.k, "e2e key")?, "e2e key")?;
        let signature = fixed_bytes::<64>(required_bytes(fields.s, "binding")?, "binding")?;
        let binding = match fields.b {
            None => Binding::unversioned(signature),
            Some(Value::Bytes(b)) => {
                let stamp = fixed_bytes::<{ Binding::STAMPED_LEN - 64 }>(b, "binding stamp")?;
                Binding::from_bytes(&[&signature[..], &stamp[..]].concat()).ok_or_else(|| enc("binding stamp"))?
            }
            Some(_) => return Err(enc("binding version is not bytes")),
        };
        let name = match fields.n {
            None => None,
            Some(Value::Text(name)) => {
                check_display_name(&name)
                    .map_err(|e| InviteError::Encoding(format!("name {e}")))?;
                Some(name)
            }
            Some(_) => return Err(enc("name is not text")),
        };
        let token = match fields.t {
            None => None,
            Some(Value::Bytes(token)) => Some(fixed_bytes::<16>(token, "token")?),
            Some(_) => return Err(enc("token is not bytes")),
        };
        Ok(Invite {
            peer_id,
            e2e_public,
            binding,
            name,
            addrs: multiaddrs(fields.a, "addrs")?,
            relays: multiaddrs(fields.r, "relays")?,
            token,
        })
    }

    /// The inviter's public identity (peer id, E2E key, binding).
    pub fn public_identity(&self) -> PublicIdentity {
        PublicIdentity {
            peer_id: self.peer_id,
            e2e_public: self.e2e_public,
            binding: self.binding,
        }
    }

    /// The URI as a QR code for a dark-background terminal
    /// ([`QrColors::LightOnDark`]); see [`Invite::to_qr_with`].
    pub fn to_qr(&self) -> Result<String, InviteError> {
        self.to_qr_with(QrColors::LightOnDark)
    }

    /// The URI as a QR code drawn with Unicode half blocks (two module rows per text
    /// line), surrounded by a quiet zone, one `\n`-terminated line per row.
    pub fn to_qr_with(&self, colors: QrColors) -> Result<String, InviteError> {
        qr_text(&self.to_uri(), colors)
    }
}

/// `data` as a QR code drawn with Unicode half blocks (two module rows per text
/// line), surrounded by a quiet zone, one `\n`-terminated line per row.
pub fn qr_text(data: &str, colors: QrColors) -> Result<String, InviteError> {
    let code = QrCode::with_error_correction_level(data, EcLevel::L)
        .map_err(|e| InviteError::Qr(e.to_string()))?;
    let width = code.width();
    let modules = code.to_colors();
    let size = width + 2 * QR_QUIET_ZONE;
    // Whether the module at (x, y) of the padded grid gets ink.
    let drawn = |x: usize, y: usize| -> bool {
        let inner = |v: usize| v.checked_sub(QR_QUIET_ZONE).filter(|v| *v < width);
        let light = match (inner(x), inner(y)) {
            (Some(x), Some(y)) => modules.get(y * width + x) != Some(&Color::Dark),
            // The quiet zone is light.
            _ => y < size,
        };
        match colors {
            QrColors::LightOnDark => light,
            QrColors::DarkOnLight => !light && y < size,
        }
    };
    let mut out = String::with_capacity((size + 1) * size.div_ceil(2) * 3);
    for row in (0..size).step_by(2) {
        for x in 0..size {
            out.push(match (drawn(x, row), drawn(x, row + 1)) {
                (true, true) => '█',
                (true, false) => '▀',
                (false, true) => '▄',
                (false, false) => ' ',
            });
        }
        out.push('\n');
    }
    Ok(out)
}

impl FromStr for Invite {
    type Err = InviteError;

    fn from_str(s: &str) -> Result<Invite, InviteError> {
        Invite::parse(s)
    }
}

impl fmt::Display for Invite {
    /// The `kith:` URI.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_uri())
    }
}

/// The recognised map entries, each seen at most once.
#[derive(Default)]
struct Fields {
    v: Option<Value>,
    i: Option<Value>,
    k: Option<Value>,
    s: Option<Value>,
    /// The binding's version ‖ expiry ‖ stamp (80 bytes), for a stamped binding.
    b: Option<Value>,
    n: Option<Value>,
    a: Option<Value>,
    r: Option<Value>,
    t: Option<Value>,
}

fn enc(message: &str) -> InviteError {
    InviteError::Encoding(message.to_owned())
}

fn required_bytes(value: Option<Value>, what: &str) -> Result<Vec<u8>, InviteError> {
    match value {
        Some(Value::Bytes(bytes)) => Ok(bytes),
        Some(_) => Err(InviteError::Encoding(format!("{what} is not bytes"))),
        None => Err(InviteError::Encoding(format!("{what} missing"))),
    }
}

fn fixed_bytes<const N: usize>(bytes: Vec<u8>, what: &str) -> Result<[u8; N], InviteError> {
    let len = bytes.len();
    bytes
        .try_into()
        .map_err(|_| InviteError::Encoding(format!("{what} is {len} bytes, expected {N}")))
}

fn multiaddrs(value: Option<Value>, what: &str) -> Result<Vec<Multiaddr>, InviteError> {
    let items = match value {
        None => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(InviteError::Encoding(format!("{what} is not an array"))),
    };
    if items.len() > MAX_ADDRS {
        return Err(InviteError::Encoding(format!("{what}: more than {MAX_ADDRS} addresses")));
    }
    items
        .into_iter()
        .map(|item| match item {
            Value::Bytes(bytes) => Multiaddr::try_from(bytes)
                .map_err(|e| InviteError::Encoding(format!("{what}: invalid multiaddr: {e}"))),
            _ => Err(InviteError::Encoding(format!(
                "{what}: multiaddr is not bytes"
            ))),
        })
        .collect()
}

// A minimal deterministic CBOR writer (RFC 8949 §4.2.1 "preferred" heads) for the
// few types an invite uses. Unlike a serde serializer it cannot fail, so `to_uri`
// needs no error path.
const MAJOR_UINT: u8 = 0;
const MAJOR_BYTES: u8 = 2;
const MAJOR_TEXT: u8 = 3;
const MAJOR_ARRAY: u8 = 4;
const MAJOR_MAP: u8 = 5;

fn cbor_head(out: &mut Vec<u8>, major: u8, value: u64) {
    let major = major << 5;
    if value < 24 {
        out.push(major | value as u8);
    } else if let Ok(v) = u8::try_from(value) {
        out.extend_from_slice(&[major | 24, v]);
    } else if let Ok(v) = u16::try_from(value) {
        out.push(major | 25);
        out.extend_from_slice(&v.to_be_bytes());
    } else if let Ok(v) = u32::try_from(value) {
        out.push(major | 26);
        out.extend_from_slice(&v.to_be_bytes());
    } else {
        out.push(major | 27);
        out.extend_from_slice(&value.to_be_bytes());
    }
}

fn cbor_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    cbor_head(out, MAJOR_BYTES, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn cbor_text(out: &mut Vec<u8>, text: &str) {
    cbor_head(out, MAJOR_TEXT, text.len() as u64);
    out.extend_from_slice(text.as_bytes());
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::identity::Identity;

    fn sample() -> Invite {
        let id = Identity::from_secrets([5; 32], [6; 32]);
        Invite {
            name: Some("Ada".into()),
            addrs: vec![
                "/ip4/192.0.2.1/tcp/4001".parse().unwrap(),
                "/ip6/::1/udp/4001/quic-v1".parse().unwrap(),
            ],
            relays: vec![
                format!(
                    "/dns4/relay.example.org/tcp/443/p2p/{}",
                    Identity::generate().peer_id()
                )
                .parse()
                .unwrap(),
            ],
            token: Some([9; 16]),
            ..Invite::new(id.public())
        }
    }

    fn encode_value(value: &Value) -> String {
        let mut bytes = Vec::new();
        ciborium::into_writer(value, &mut bytes).unwrap();
        format!("kith:{}", bs58::encode(bytes).into_string())
    }

    fn sample_value() -> Vec<(Value, Value)> {
        let id = Identity::from_secrets([5; 32], [6; 32]);
        vec![
            (Value::Text("v".into()), Value::Integer(1.into())),
            (
                Value::Text("i".into()),
                Value::Bytes(id.peer_id().to_bytes()),
            ),
            (
                Value::Text("k".into()),
                Value::Bytes(id.e2e_public().to_vec()),
            ),
            (Value::Text("s".into()), Value::Bytes(id.binding().signature.to_vec())),
        ]
    }

    #[test]
    fn uri_round_trip() {
        let invite = sample();
        let uri = invite.to_uri();
        assert!(uri.starts_with("kith:"));
        assert_eq!(Invite::parse(&uri).unwrap(), invite);
        assert_eq!(uri.parse::<Invite>().unwrap(), invite);
        assert_eq!(Invite::parse(&format!("  \n{uri}\t ")).unwrap(), invite);
        assert_eq!(
            Invite::parse(&uri.replacen("kith:", "KITH:", 1)).unwrap(),
            invite
        );
        assert_eq!(invite.to_string(), uri);
        // Deterministic.
        assert_eq!(invite.clone().to_uri(), uri);
    }

    #[test]
    fn a_versioned_binding_round_trips_and_its_stamp_is_signed() {
        let id = Identity::generate().with_e2e([4; 32], 1_700_000_000_000, 1_800_000_000_000);
        let invite = Invite::new(id.public());
        let parsed = Invite::parse(&invite.to_uri()).unwrap();
        assert_eq!(parsed.binding, id.binding());
        assert_eq!(parsed, invite);
        let mut moved = invite.clone();
        moved.binding.expires_ms += 1;
        // Older readers take the unstamped part alone.
        let mut unstamped = invite.clone();
        unstamped.binding = Binding::unversioned(invite.binding.signature);
        assert_eq!(Invite::parse(&unstamped.to_uri()).unwrap().binding.stamp, None);
        assert!(matches!(Invite::parse(&moved.to_uri()), Err(InviteError::BadBinding)));
    }

    #[test]
    fn an_invite_wrapped_over_lines_parses() {
        let invite = sample();
        let uri = invite.to_uri();
        let (head, tail) = uri.split_at(uri.len() / 2);
        assert_eq!(Invite::parse(&format!("  {head}\r\n    {tail}\n")).unwrap(), invite);
    }

    #[test]
    fn a_cut_off_invite_says_it_is_truncated() {
        let shortest = (0..50)
            .map(|_| Invite::new(Identity::generate().public()).to_uri().len() - SCHEME.len())
            .min()
            .unwrap();
        assert!(shortest >= MIN_PAYLOAD_CHARS + 5, "a bare invite has {shortest} characters");
        let uri = sample().to_uri();
        // Cut where a terminal wraps (80 columns), or right after the scheme.
        for cut in [80, SCHEME.len(), SCHEME.len() + MIN_PAYLOAD_CHARS - 1] {
            assert!(matches!(Invite::parse(&uri[..cut]), Err(InviteError::Truncated)), "cut at {cut}");
        }
        // Longer cuts are still refused, and the message says what to check.
        let error = Invite::parse(&uri[..uri.len() - 3]).unwrap_err();
        assert!(error.to_string().contains("cut off or mistyped"), "{error}");
    }

    #[test]
    fn minimal_invite_round_trips() {
        let invite = Invite::new(Identity::generate().public());
        assert_eq!(Invite::parse(&invite.to_uri()).unwrap(), invite);
    }

    #[test]
    fn own_encoder_matches_ciborium() {
        // Our hand-written CBOR must be what a standard decoder reads back.
        let uri = Invite::new(Identity::from_secrets([5; 32], [6; 32]).public()).to_uri();
        assert_eq!(uri, encode_value(&Value::Map(sample_value())));
        let mut out = Vec::new();
        for n in [
            0u64,
            23,
            24,
            255,
            256,
            65_535,
            65_536,
            u64::from(u32::MAX) + 1,
        ] {
            out.clear();
            cbor_head(&mut out, MAJOR_UINT, n);
            let value: Value = ciborium::from_reader(out.as_slice()).unwrap();
            assert_eq!(value, Value::Integer(n.into()));
        }
    }

    #[test]
    fn not_kith_garbage_and_too_long() {
        assert!(matches!(
            Invite::parse("https://example.org"),
            Err(InviteError::NotKith)
        ));
        assert!(matches!(Invite::parse(""), Err(InviteError::NotKith)));
        let padded = |payload: &str| format!("kith:{payload}{}", "1".repeat(MIN_PAYLOAD_CHARS));
        assert!(matches!(Invite::parse(&padded("0OIl")), Err(InviteError::Encoding(_))));
        assert!(matches!(Invite::parse("kith:"), Err(InviteError::Truncated)));
        assert!(matches!(Invite::parse(&padded("3mJr7AoUXx2Wqd")), Err(InviteError::Encoding(_))));
        let long = format!("kith:{}", "1".repeat(MAX_INVITE_LEN));
        assert!(matches!(Invite::parse(&long), Err(InviteError::TooLong)));
        // Multi-byte input near the limit does not panic on slicing.
        assert!(matches!(Invite::parse("ki€"), Err(InviteError::NotKith)));
    }

    #[test]
    fn tampered_binding_is_rejected() {
        let mut invite = sample();
        invite.binding.signature[0] ^= 0x80;
        assert!(matches!(
            Invite::parse(&invite.to_uri()),
            Err(InviteError::BadBinding)
        ));

        let mut invite = sample();
        invite.e2e_public[31] ^= 1;
        assert!(matches!(
            Invite::parse(&invite.to_uri()),
            Err(InviteError::BadBinding)
        ));

        let mut invite = sample();
        invite.peer_id = Identity::generate().peer_id();
        assert!(matches!(
            Invite::parse(&invite.to_uri()),
            Err(InviteError::BadBinding)
        ));
    }

    #[test]
    fn flipped_payload_characters_never_parse_as_a_different_key() {
        let invite = sample();
        let uri = invite.to_uri();
        for i in SCHEME.len()..uri.len() {
            let mut bytes = uri.clone().into_bytes();
            bytes[i] = if bytes[i] == b'2' { b'3' } else { b'2' };
            let tampered = String::from_utf8(bytes).unwrap();
            if let Ok(parsed) = Invite::parse(&tampered) {
                // Only unsigned hints may change; the identity must stay verified.
                assert_eq!(parsed.public_identity(), invite.public_identity());
            }
        }
    }

    #[test]
    fn version_and_structure_errors_are_typed() {
        let mut v2 = sample_value();
        v2[0].1 = Value::Integer(2.into());
        assert!(matches!(
            Invite::parse(&encode_value(&Value::Map(v2))),
            Err(InviteError::UnsupportedVersion(2))
        ));

        let missing_key: Vec<_> = sample_value()
            .into_iter()
            .filter(|(k, _)| k != &Value::Text("k".into()))
            .collect();
        assert!(matches!(
            Invite::parse(&encode_value(&Value::Map(missing_key))),
            Err(InviteError::Encoding(_))
        ));

        let mut dup = sample_value();
        dup.push(dup[1].clone());
        assert!(matches!(
            Invite::parse(&encode_value(&Value::Map(dup))),
            Err(InviteError::Encoding(_))
        ));

        let mut unknown = sample_value();
        unknown.push((Value::Text("future".into()), Value::Bool(true)));
        assert!(Invite::parse(&encode_value(&Value::Map(unknown))).is_ok());

        let mut bad_name = sample_value();
        bad_name.push((Value::Text("n".into()), Value::Text("a\u{7}b".into())));
        assert!(matches!(
            Invite::parse(&encode_value(&Value::Map(bad_name))),
            Err(InviteError::Encoding(_))
        ));

        assert!(matches!(
            Invite::parse(&encode_value(&Value::Array(vec![]))),
            Err(InviteError::Encoding(_))
        ));
    }

    #[test]
    fn address_count_and_nesting_at_and_past_the_limits() {
        let addr: Multiaddr = "/ip4/192.0.2.1/tcp/4001".parse().unwrap();
        for which in ["addrs", "relays"] {
            let mut invite = sample();
            let list = if which == "addrs" { &mut invite.addrs } else { &mut invite.relays };
            *list = vec![addr.clone(); MAX_ADDRS];
            assert_eq!(Invite::parse(&invite.to_uri()).unwrap(), invite);
            let list = if which == "addrs" { &mut invite.addrs } else { &mut invite.relays };
            list.push(addr.clone());
            let r = Invite::parse(&invite.to_uri());
            assert!(matches!(&r, Err(InviteError::Encoding(e)) if e.contains("more than")), "{r:?}");
        }
        // Deeply nested arrays under an unknown key: refused, not a stack overflow.
        let mut deep = sample_value();
        let mut value = Value::Integer(0.into());
        for _ in 0..=crate::wire::RECURSION_LIMIT {
            value = Value::Array(vec![value]);
        }
        deep.push((Value::Text("x".into()), value));
        assert!(matches!(Invite::parse(&encode_value(&Value::Map(deep))), Err(InviteError::Encoding(_))));
    }

    #[test]
    fn debug_redacts_token() {
        let text = format!("{:?}", sample());
        assert!(text.contains("redacted"));
        assert!(!text.contains("9, 9"));
    }

    #[test]
    fn qr_renders() {
        let invite = sample();
        let qr = invite.to_qr().unwrap();
        let lines: Vec<&str> = qr.lines().collect();
        let width = lines[0].chars().count();
        assert!(lines.iter().all(|line| line.chars().count() == width));
        assert!(width > 2 * QR_QUIET_ZONE + 21);
        assert_eq!(lines.len(), width.div_ceil(2));
        // Light-on-dark: the quiet zone is fully drawn.
        assert!(lines[0].chars().all(|c| c == '█'));
        assert!(
            qr.chars()
                .all(|c| matches!(c, '█' | '▀' | '▄' | ' ' | '\n'))
        );
        // Inverted: the quiet zone is blank.
        let inverted = invite.to_qr_with(QrColors::DarkOnLight).unwrap();
        assert!(inverted.lines().next().unwrap().chars().all(|c| c == ' '));
        assert_eq!(inverted.lines().count(), lines.len());
    }

    fn arb_addr() -> impl Strategy<Value = Multiaddr> {
        prop_oneof![
            (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, port)| {
                format!("/ip4/{}.{}.{}.{}/tcp/{port}", ip[0], ip[1], ip[2], ip[3])
                    .parse()
                    .unwrap()
            }),
            any::<u16>().prop_map(|port| format!("/ip6/::1/udp/{port}/quic-v1").parse().unwrap()),
            "[a-z]{1,20}\\.example"
                .prop_map(|host| format!("/dns4/{host}/tcp/443").parse().unwrap()),
        ]
    }

    proptest! {
        #[test]
        fn prop_uri_round_trip(
            seed in any::<[u8; 32]>(),
            name in proptest::option::of("[^\\p{C}\\p{Zl}\\p{Zp}]{1,64}".prop_filter("not blank", |s| !s.trim().is_empty())),
            addrs in proptest::collection::vec(arb_addr(), 0..4),
            relays in proptest::collection::vec(arb_addr(), 0..3),
            token in proptest::option::of(any::<[u8; 16]>()),
        ) {
            let identity = Identity::from_secrets(seed, seed.map(|b| b ^ 0x55));
            let invite = Invite { name, addrs, relays, token, ..Invite::new(identity.public()) };
            prop_assert_eq!(Invite::parse(&invite.to_uri()).unwrap(), invite);
        }

        #[test]
        fn prop_garbage_never_panics(text in "kith:[1-9A-HJ-NP-Za-km-z]{0,300}") {
            let _ = Invite::parse(&text);
        }
    }
}
