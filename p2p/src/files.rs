//! Files in messages: turning a file on disk into what a message says about it, and
//! what a received message says into something safe to store and save.
//!
//! Names come from other people: [`safe_file_name`] keeps the last path component,
//! with no control characters, so a name can neither climb out of the download
//! directory nor paint the terminal.

use std::path::{Path, PathBuf};

use kith_storage::{FileRef, FileSource, PeerId};

use crate::payload::{FileOffer, MAX_FILE_NAME_BYTES, MAX_FILE_SOURCES, MAX_MEDIA_TYPE_BYTES, PeerHint};

/// Default largest file downloaded without being asked (`files.auto_download_max`).
pub const DEFAULT_AUTO_DOWNLOAD_MAX: u64 = 25 << 20;

/// A name that is safe as the last component of a path on this machine: the last
/// component of `name` (either slash), without control or bidi characters, cut to
/// [`MAX_FILE_NAME_BYTES`]; `file` if nothing is left, and never `.` or `..`.
pub fn safe_file_name(name: &str) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let mut out = String::with_capacity(last.len());
    for c in last.chars() {
        if c.is_control() || crate::display::is_unsafe(c) || c == ':' && cfg!(windows) {
            continue;
        }
        if out.len() + c.len_utf8() > MAX_FILE_NAME_BYTES {
            break;
        }
        out.push(c);
    }
    let trimmed = out.trim();
    if trimmed.is_empty() || trimmed == "." || trimmed == ".." {
        return "file".to_owned();
    }
    trimmed.to_owned()
}

/// The media type of a file, from its name's extension (what receivers need to
/// decide whether to show a picture); `application/octet-stream` when unknown.
pub fn media_type_of(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
    match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "bmp" => "image/bmp",
        "svg" => "image/svg+xml",
        "txt" | "md" | "log" => "text/plain",
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        "gz" | "tgz" => "application/gzip",
        "json" => "application/json",
        "mp3" => "audio/mpeg",
        "ogg" | "opus" => "audio/ogg",
        "wav" => "audio/wav",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        _ => "application/octet-stream",
    }
}

/// Whether a media type names a picture the interface may show inline.
pub fn is_image(media_type: &str) -> bool {
    matches!(media_type, "image/png" | "image/jpeg" | "image/gif" | "image/webp" | "image/bmp")
}

/// What a message says about a file, as the wire carries it.
pub fn offer_of(file: &FileRef) -> FileOffer {
    FileOffer {
        blob: file.blob,
        key: file.key,
        name: file.name.clone(),
        size: file.size,
        media_type: file.media_type.clone(),
        sources: file
            .sources
            .iter()
            .take(MAX_FILE_SOURCES)
            .map(|s| PeerHint {
                peer_id: s.peer_id.to_bytes(),
                addrs: crate::payload::addr_bytes(&s.addrs),
                relays: Vec::new(),
            })
            .collect(),
    }
}

/// What a received offer says, made safe to store: the name reduced by
/// [`safe_file_name`], an over-long or empty media type replaced, sources whose peer
/// id does not parse left out.
pub fn file_of(offer: FileOffer) -> FileRef {
    let media_type = if offer.media_type.is_empty()
        || offer.media_type.len() > MAX_MEDIA_TYPE_BYTES
        || offer.media_type.chars().any(|c| c.is_control() || c.is_whitespace())
    {
        "application/octet-stream".to_owned()
    } else {
        offer.media_type
    };
    FileRef {
        blob: offer.blob,
        key: offer.key,
        name: safe_file_name(&offer.name),
        size: offer.size,
        media_type,
        sources: offer
            .sources
            .into_iter()
            .filter_map(|hint| {
                let peer_id = PeerId::from_bytes(&hint.peer_id).ok()?;
                Some(FileSource { peer_id, addrs: crate::payload::addrs_of(&hint.addrs) })
            })
            .collect(),
    }
}

/// A path in `dir` for a file called `name` that does not exist yet: `name`, else
/// `stem (2).ext`, `stem (3).ext`, ... (The caller creates it without replacing, so
/// a race with another writer fails instead of overwriting.)
pub fn free_path(dir: &Path, name: &str) -> PathBuf {
    let first = dir.join(name);
    if !first.exists() {
        return first;
    }
    let (stem, ext) = match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => (stem, format!(".{ext}")),
        _ => (name, String::new()),
    };
    (2..)
        .map(|n| dir.join(format!("{stem} ({n}){ext}")))
        .find(|p| !p.exists())
        .unwrap_or(first)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_from_peers_cannot_climb_out_or_paint_the_terminal() {
        assert_eq!(safe_file_name("../../.ssh/authorized_keys"), "authorized_keys");
        assert_eq!(safe_file_name("C:\\Windows\\evil.exe"), "evil.exe");
        assert_eq!(safe_file_name(".."), "file");
        assert_eq!(safe_file_name("a/b/"), "file");
        assert_eq!(safe_file_name("re\u{1b}[31mport\u{202e}fdp.exe"), "re[31mportfdp.exe");
        assert_eq!(safe_file_name("фото 1.jpg"), "фото 1.jpg");
        assert!(safe_file_name(&"ж".repeat(300)).len() <= MAX_FILE_NAME_BYTES);
    }

    #[test]
    fn offers_round_trip_and_bad_sources_are_left_out() {
        let peer = PeerId::random();
        let file = FileRef {
            blob: [1; 32],
            key: [2; 32],
            name: "cat.png".into(),
            size: 42,
            media_type: "image/png".into(),
            sources: vec![FileSource { peer_id: peer, addrs: vec!["/ip4/127.0.0.1/tcp/1".parse().unwrap()] }],
        };
        assert_eq!(file_of(offer_of(&file)), file);
        let mut offer = offer_of(&file);
        offer.sources[0].peer_id = vec![0xff; 3];
        offer.media_type = "image/png\u{0}".into();
        let back = file_of(offer);
        assert!(back.sources.is_empty());
        assert_eq!(back.media_type, "application/octet-stream");
    }

    #[test]
    fn free_paths_never_reuse_an_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(free_path(dir.path(), "a.txt"), dir.path().join("a.txt"));
        std::fs::write(dir.path().join("a.txt"), b"x").unwrap();
        assert_eq!(free_path(dir.path(), "a.txt"), dir.path().join("a (2).txt"));
        std::fs::write(dir.path().join("a (2).txt"), b"x").unwrap();
        assert_eq!(free_path(dir.path(), "a.txt"), dir.path().join("a (3).txt"));
        std::fs::write(dir.path().join("Makefile"), b"x").unwrap();
        assert_eq!(free_path(dir.path(), "Makefile"), dir.path().join("Makefile (2)"));
    }

    #[test]
    fn media_types_follow_the_extension() {
        assert_eq!(media_type_of("Photo.JPG"), "image/jpeg");
        assert_eq!(media_type_of("notes"), "application/octet-stream");
        assert!(is_image(media_type_of("x.png")));
        assert!(!is_image(media_type_of("x.svg")));
    }
}
