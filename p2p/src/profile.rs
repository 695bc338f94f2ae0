//! Profiles: the name, status line and avatar a user shows their contacts.
//!
//! A profile is signed by its owner's identity key (Ed25519, over the domain
//! [`SIGNING_DOMAIN`] and the encoded profile), so whoever passes it on, and
//! whatever stores it, cannot change a word of it. It travels as
//! [`crate::payload::Payload::Profile`] through the 1:1 channel (outbox, direct or a
//! relay's mailbox), so a contact who is offline gets it like a message. Each
//! profile carries a `version` (its owner's clock when it changed, kept rising):
//! a receiver keeps the newest and ignores older or equal ones, so replays and
//! reordering never roll a profile back.
//!
//! The avatar is a small picture inside the profile (a PNG or JPEG of at most
//! [`MAX_AVATAR_BYTES`] and [`MAX_AVATAR_SIDE`] pixels a side): no download, no media
//! node. [`avatar_from_file`] makes one from any picture the user picks.
//!
//! A contact's alias given locally still wins over the name their profile
//! carries; the name replaces the one they offered when they became a contact.

use std::io::Cursor;
use std::path::Path;

use image::{ImageFormat, ImageReader};
use libp2p::PeerId;
use serde::{Deserialize, Serialize};

use crate::identity::{Identity, verify_signature};
use crate::peer_record::MAX_DISPLAY_NAME_BYTES;
use crate::wire::{self, WireError};

/// What a profile signature covers, before the encoded profile.
pub const SIGNING_DOMAIN: &[u8] = b"kith profile v1\0";
/// Longest status line, in characters.
pub const MAX_STATUS_CHARS: usize = 140;
/// Longest status line, in bytes of UTF-8 (checked while decoding).
pub const MAX_STATUS_BYTES: usize = 4 * MAX_STATUS_CHARS;
/// Largest avatar picture, in bytes.
pub const MAX_AVATAR_BYTES: usize = 32 * 1024;
/// Most pixels an avatar has on a side; [`avatar_from_file`] makes them this size.
pub const MAX_AVATAR_SIDE: u32 = 128;
/// Largest encoded signed profile.
pub const MAX_SIGNED_PROFILE_LEN: usize = MAX_AVATAR_BYTES + 2 * 1024;
/// Largest picture file [`avatar_from_file`] reads.
const MAX_SOURCE_BYTES: u64 = 32 << 20;
/// Largest picture [`avatar_from_file`] decodes, in pixels a side.
const MAX_SOURCE_SIDE: u32 = 8192;
/// Most memory decoding one picture may take (an 8192×4096 RGBA picture fits).
const MAX_SOURCE_ALLOC: u64 = 128 << 20;

/// What a user shows their contacts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// The name they chose (contacts' aliases win over it).
    #[serde(default, deserialize_with = "wire::Max::<MAX_DISPLAY_NAME_BYTES>::opt_text")]
    pub name: Option<String>,
    /// A short status line.
    #[serde(default, deserialize_with = "wire::Max::<MAX_STATUS_BYTES>::opt_text")]
    pub status: Option<String>,
    /// A small picture.
    #[serde(default)]
    pub avatar: Option<Avatar>,
    /// When it last changed, ms since the Unix epoch on the owner's clock (kept
    /// rising by the owner); a receiver keeps the profile with the highest.
    pub version: u64,
}

/// A profile picture: PNG or JPEG, at most [`MAX_AVATAR_BYTES`].
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Avatar {
    /// `image/png` or `image/jpeg`.
    #[serde(deserialize_with = "wire::Max::<32>::text")]
    pub media_type: String,
    /// The encoded picture.
    #[serde(with = "wire::bytes")]
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for Avatar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Avatar").field("media_type", &self.media_type).field("len", &self.bytes.len()).finish()
    }
}

/// A profile with its owner's signature, as it travels and is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedProfile {
    /// The encoded [`Profile`].
    #[serde(with = "wire::bytes")]
    pub profile: Vec<u8>,
    /// Ed25519 over [`SIGNING_DOMAIN`] ‖ `profile`.
    #[serde(with = "wire::bytes")]
    pub signature: Vec<u8>,
}

/// Why a profile was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProfileError {
    /// Not a profile (or over a size limit).
    #[error("malformed profile: {0}")]
    Malformed(#[from] WireError),
    /// The signature is not its sender's.
    #[error("the profile's signature is not its sender's")]
    BadSignature,
    /// A field breaks the rules (a blank name, control characters, a bad picture).
    #[error("invalid profile: {0}")]
    Invalid(String),
    /// The picture file could not be read or is no picture we take.
    #[error("cannot use that picture: {0}")]
    Picture(String),
}

impl Profile {
    /// Checks every field's rules (the sizes were checked while decoding).
    pub fn check(&self) -> Result<(), ProfileError> {
        if let Some(name) = &self.name {
            crate::config::check_display_name(name).map_err(|why| ProfileError::Invalid(format!("the name {why}")))?;
        }
        if let Some(status) = &self.status {
            check_status(status)?;
        }
        if let Some(avatar) = &self.avatar {
            check_avatar(avatar)?;
        }
        Ok(())
    }

    /// Signs it as `identity`.
    pub fn sign(&self, identity: &Identity) -> Result<SignedProfile, ProfileError> {
        self.check()?;
        let profile = wire::encode(self)?;
        let signature = identity.sign(&signed_bytes(&profile)).to_vec();
        Ok(SignedProfile { profile, signature })
    }
}

impl SignedProfile {
    /// Encodes it for the wire or the store.
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        wire::encode(self)
    }

    /// Decodes one (bounded by [`MAX_SIGNED_PROFILE_LEN`]).
    pub fn decode(bytes: &[u8]) -> Result<SignedProfile, WireError> {
        wire::decode(bytes, MAX_SIGNED_PROFILE_LEN)
    }

    /// The profile, if `owner` signed it and it keeps the rules.
    pub fn open(&self, owner: &PeerId) -> Result<Profile, ProfileError> {
        verify_signature(owner, &signed_bytes(&self.profile), &self.signature).map_err(|_| ProfileError::BadSignature)?;
        let profile: Profile = wire::decode(&self.profile, MAX_SIGNED_PROFILE_LEN)?;
        profile.check()?;
        Ok(profile)
    }
}

fn signed_bytes(profile: &[u8]) -> Vec<u8> {
    [SIGNING_DOMAIN, profile].concat()
}

/// A status line may be empty (none) but holds no control characters and at most
/// [`MAX_STATUS_CHARS`] characters.
pub fn check_status(status: &str) -> Result<(), ProfileError> {
    if status.chars().count() > MAX_STATUS_CHARS {
        return Err(ProfileError::Invalid(format!("the status is longer than {MAX_STATUS_CHARS} characters")));
    }
    if status.chars().any(|c| c.is_control() || crate::display::is_unsafe(c)) {
        return Err(ProfileError::Invalid("the status holds control characters".into()));
    }
    Ok(())
}

/// An avatar is a PNG or JPEG (by its bytes, matching its media type) of at most
/// [`MAX_AVATAR_BYTES`] and [`MAX_AVATAR_SIDE`] pixels a side. Only its header is
/// read: whoever shows it decodes it with limits of its own.
pub fn check_avatar(avatar: &Avatar) -> Result<(), ProfileError> {
    let invalid = |why: &str| ProfileError::Invalid(format!("the avatar {why}"));
    if avatar.bytes.len() > MAX_AVATAR_BYTES {
        return Err(invalid(&format!("is larger than {MAX_AVATAR_BYTES} bytes")));
    }
    let format = image::guess_format(&avatar.bytes).map_err(|_| invalid("is no picture"))?;
    let expected = match format {
        ImageFormat::Png => "image/png",
        ImageFormat::Jpeg => "image/jpeg",
        _ => return Err(invalid("is neither PNG nor JPEG")),
    };
    if avatar.media_type != expected {
        return Err(invalid("is not of the type it claims"));
    }
    let (w, h) = ImageReader::with_format(Cursor::new(&avatar.bytes), format)
        .into_dimensions()
        .map_err(|_| invalid("is a damaged picture"))?;
    if w == 0 || h == 0 || w > MAX_AVATAR_SIDE || h > MAX_AVATAR_SIDE {
        return Err(invalid(&format!("must be at most {MAX_AVATAR_SIDE}×{MAX_AVATAR_SIDE} pixels")));
    }
    Ok(())
}

/// Makes an avatar from the picture at `path` (PNG or JPEG, any size up to a
/// limit): the middle square, scaled to [`MAX_AVATAR_SIDE`] pixels a side, as PNG,
/// or as JPEG when a PNG would be over [`MAX_AVATAR_BYTES`]. Blocks: run it off
/// async workers.
pub fn avatar_from_file(path: &Path) -> Result<Avatar, ProfileError> {
    let picture = |e: &dyn std::fmt::Display| ProfileError::Picture(e.to_string());
    let size = std::fs::metadata(path).map_err(|e| picture(&e))?.len();
    if size > MAX_SOURCE_BYTES {
        return Err(ProfileError::Picture(format!("it is larger than {} MiB", MAX_SOURCE_BYTES >> 20)));
    }
    let mut reader = ImageReader::open(path).map_err(|e| picture(&e))?.with_guessed_format().map_err(|e| picture(&e))?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SOURCE_SIDE);
    limits.max_image_height = Some(MAX_SOURCE_SIDE);
    limits.max_alloc = Some(MAX_SOURCE_ALLOC);
    reader.limits(limits);
    let decoded = reader.decode().map_err(|e| picture(&e))?;
    let side = decoded.width().min(decoded.height()).min(MAX_AVATAR_SIDE);
    // Scaled, then its middle cut out: no full-size copy of the picture.
    let small = decoded.resize_to_fill(side, side, image::imageops::FilterType::Triangle);
    drop(decoded);
    let mut png = Vec::new();
    small.write_to(&mut Cursor::new(&mut png), ImageFormat::Png).map_err(|e| picture(&e))?;
    let avatar = if png.len() <= MAX_AVATAR_BYTES {
        Avatar { media_type: "image/png".into(), bytes: png }
    } else {
        let mut jpeg = Vec::new();
        let rgb = image::DynamicImage::ImageRgb8(small.to_rgb8());
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 85).encode_image(&rgb).map_err(|e| picture(&e))?;
        Avatar { media_type: "image/jpeg".into(), bytes: jpeg }
    };
    check_avatar(&avatar)?;
    Ok(avatar)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn profile() -> Profile {
        Profile { name: Some("Alice".into()), status: Some("at the lake".into()), avatar: None, version: 7 }
    }

    #[test]
    fn a_signed_profile_opens_for_its_owner_only_and_unchanged() {
        let (alice, mallory) = (Identity::generate(), Identity::generate());
        let signed = profile().sign(&alice).unwrap();
        let again = SignedProfile::decode(&signed.encode().unwrap()).unwrap();
        assert_eq!(again.open(&alice.peer_id()).unwrap(), profile());
        assert!(matches!(again.open(&mallory.peer_id()), Err(ProfileError::BadSignature)));
        let mut changed = again.clone();
        let mut other = profile();
        other.status = Some("forged".into());
        changed.profile = wire::encode(&other).unwrap();
        assert!(matches!(changed.open(&alice.peer_id()), Err(ProfileError::BadSignature)));
    }

    #[test]
    fn fields_that_break_the_rules_are_refused() {
        let alice = Identity::generate();
        let bad = [
            Profile { name: Some("  ".into()), ..profile() },
            Profile { status: Some("x".repeat(MAX_STATUS_CHARS + 1)), ..profile() },
            Profile { status: Some("bell\u{7}".into()), ..profile() },
            Profile { avatar: Some(Avatar { media_type: "image/png".into(), bytes: b"GIF89a....".to_vec() }), ..profile() },
        ];
        for p in bad {
            assert!(matches!(p.sign(&alice), Err(ProfileError::Invalid(_))), "{p:?}");
        }
    }

    #[test]
    fn a_large_picture_becomes_a_small_square_avatar() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wide.png");
        let noisy = image::RgbImage::from_fn(900, 600, |x, y| image::Rgb([(x * 7 % 251) as u8, (y * 13 % 241) as u8, ((x ^ y) % 256) as u8]));
        noisy.save(&path).unwrap();
        let avatar = avatar_from_file(&path).unwrap();
        assert!(avatar.bytes.len() <= MAX_AVATAR_BYTES, "{}", avatar.bytes.len());
        let decoded = image::load_from_memory(&avatar.bytes).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (MAX_AVATAR_SIDE, MAX_AVATAR_SIDE));
        check_avatar(&avatar).unwrap();
        let not_a_picture = dir.path().join("notes.txt");
        std::fs::write(&not_a_picture, "hello").unwrap();
        assert!(matches!(avatar_from_file(&not_a_picture), Err(ProfileError::Picture(_))));
    }
}
