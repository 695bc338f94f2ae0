//! Files attached to messages: what a message says about its file ([`FileRef`]) and
//! what this node has done with it ([`FileRecord`], one per blob).
//!
//! The blob itself (sealed chunks) lives outside the database, in the node's blob
//! store; this table only tracks where each file stands, so `kith files` lists them
//! without scanning every message and downloads resume after a restart.

use std::sync::Arc;

use libp2p_identity::PeerId;
use multiaddr::Multiaddr;
use serde::{Deserialize, Serialize};

use crate::codec::{decode, encode};
use crate::contacts::{ContactState, Contacts};
use crate::conversations::{ConversationKind, Conversations};
use crate::error::{StoreError, db};
use crate::messages::{Direction, Messages};
use crate::schema::FILES;
use crate::store::Inner;
use crate::types::{ConversationId, MessageId};

/// Length of a blob id and of a file key, in bytes.
pub const BLOB_ID_LEN: usize = 32;

/// A media node that holds a file's blob, as its message names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSource {
    /// The media node's peer id.
    #[serde(with = "crate::peer::peer_text")]
    pub peer_id: PeerId,
    /// Where to reach it.
    #[serde(with = "crate::peer::addr_texts")]
    pub addrs: Vec<Multiaddr>,
}

/// What a message says about its file: enough to fetch it (the blob id and where it
/// is held), check it (the id is a hash of the sealed chunks) and read it (the key).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRef {
    /// The blob's content address.
    pub blob: [u8; BLOB_ID_LEN],
    /// The file's own key; whoever has it can read the file.
    pub key: [u8; 32],
    /// The file name the sender gave (a bare name, no directories).
    pub name: String,
    /// The plaintext size in bytes.
    pub size: u64,
    /// The media type (`image/png`, `application/octet-stream`, ...).
    pub media_type: String,
    /// Media nodes holding the blob, besides the author (empty when sent directly).
    #[serde(default)]
    pub sources: Vec<FileSource>,
}

impl std::fmt::Debug for FileRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileRef")
            .field("blob", &hex::encode(self.blob))
            .field("key", &"<secret>")
            .field("name", &self.name)
            .field("size", &self.size)
            .field("media_type", &self.media_type)
            .field("sources", &self.sources)
            .finish()
    }
}

/// Where a file stands on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileState {
    /// Ours: sealed into the blob store, served to recipients.
    Shared,
    /// Ours, and also held by the media nodes its message names.
    Uploaded,
    /// Someone else's, not fetched (over the automatic size, or not asked for yet).
    Offered,
    /// Wanted: waiting for a source to answer, or fetching now.
    Downloading,
    /// Fetched, verified and saved ([`FileRecord::path`]).
    Complete,
    /// Given up: the blob arrived but does not open with its key (a hostile sender).
    Failed,
}

impl FileState {
    /// The state as shown to people and scripts.
    pub fn as_str(self) -> &'static str {
        match self {
            FileState::Shared => "shared",
            FileState::Uploaded => "uploaded",
            FileState::Offered => "offered",
            FileState::Downloading => "downloading",
            FileState::Complete => "complete",
            FileState::Failed => "failed",
        }
    }
}

/// Most other messages a received file's record remembers naming its blob
/// ([`FileRecord::claims`]).
pub const MAX_FILE_CLAIMS: usize = 16;

/// Another received message that names a file's blob (see [`FileRecord::claims`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileClaim {
    /// The message's author.
    #[serde(with = "crate::peer::peer_text")]
    pub author: PeerId,
    /// The message.
    pub message: MessageId,
}

/// One file this node sent or received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    /// The blob's content address (the file's id).
    pub blob: [u8; BLOB_ID_LEN],
    /// The message that carries it.
    pub message: MessageId,
    /// That message's author.
    #[serde(with = "crate::peer::peer_text")]
    pub author: PeerId,
    /// That message's conversation.
    pub conversation: ConversationId,
    /// Sent or received.
    pub direction: Direction,
    /// The file name.
    pub name: String,
    /// The plaintext size in bytes.
    pub size: u64,
    /// The media type.
    pub media_type: String,
    /// Where it stands.
    pub state: FileState,
    /// The file on this machine: for ours, the path it was sent from; for others',
    /// where it was saved once complete.
    #[serde(default)]
    pub path: Option<String>,
    /// Why the last attempt to fetch it failed, for people.
    #[serde(default)]
    pub error: Option<String>,
    /// When this record was written first, ms since the Unix epoch.
    pub created_at_ms: u64,
    /// For a received file: the other messages that named its blob after the one
    /// this record names, oldest first, one per author (the record's own author
    /// included) and at most [`MAX_FILE_CLAIMS`]. Anyone who learns a blob's id (a
    /// media node's operator, a group member) can name it in a message of their
    /// own before the real one arrives, with a wrong key, and delete that message
    /// later: so the record passes to the next of these when its message goes or
    /// its key does not open the blob, instead of failing or going with it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub claims: Vec<FileClaim>,
}

impl FileRecord {
    /// The first record of the file `msg` carries (`None` for a plain text, or an
    /// author that is not a peer id): ours are [`FileState::Shared`], others'
    /// [`FileState::Offered`].
    pub fn of(msg: &crate::Message) -> Option<FileRecord> {
        let file = msg.file.as_ref()?;
        let state = match msg.direction {
            Direction::Outgoing => FileState::Shared,
            Direction::Incoming => FileState::Offered,
        };
        Some(FileRecord {
            blob: file.blob,
            message: msg.id,
            author: msg.author.parse().ok()?,
            conversation: msg.conversation,
            direction: msg.direction,
            name: file.name.clone(),
            size: file.size,
            media_type: file.media_type.clone(),
            state,
            path: None,
            error: None,
            created_at_ms: msg.received_at_ms,
            claims: Vec::new(),
        })
    }
}

/// Handle to the files table. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Files {
    pub(crate) inner: Arc<Inner>,
}

impl Files {
    fn tree(&self) -> &sled::Tree {
        &self.inner.trees.files
    }

    /// Stores `record` under its blob id, replacing any earlier record. Not flushed.
    pub fn put(&self, record: &FileRecord) -> Result<(), StoreError> {
        self.tree().insert(record.blob, encode(record)?).map_err(db)?;
        Ok(())
    }

    /// Records received `record`'s message as naming its blob: the record itself
    /// if the blob has none (a message delivered twice does not reset a download),
    /// else a claim on the existing received record (see
    /// [`FileRecord::claims`]) unless its author already has one there or the
    /// record is ours (we sent the file). A record holding [`MAX_FILE_CLAIMS`]
    /// takes no stranger's claim; a [`vouched`](Files::vouched) message's claim
    /// takes the place of the newest claim whose message no longer keeps the file,
    /// else of the newest that is not vouched for, so throwaway identities naming a
    /// blob first cannot crowd a contact's message out. Not flushed.
    pub fn claim(&self, record: &FileRecord) -> Result<(), StoreError> {
        // Asked once, and only of a full record: claims are rare, full ones rarer.
        let mut newcomer_vouched = None;
        loop {
            let old = self.tree().get(record.blob).map_err(db)?;
            let new = match &old {
                None => encode(record)?,
                Some(bytes) => {
                    // A damaged record is left for its readers to report: it must
                    // not make every delivery that names its blob fail.
                    let Ok(mut held) = decode::<FileRecord>(FILES, bytes) else { return Ok(()) };
                    let claimed = held.author == record.author || held.claims.iter().any(|c| c.author == record.author);
                    if held.direction == Direction::Outgoing || claimed {
                        return Ok(());
                    }
                    if held.claims.len() >= MAX_FILE_CLAIMS {
                        let vouched = match newcomer_vouched {
                            Some(v) => v,
                            None => *newcomer_vouched.insert(self.vouched(&record.author, record.conversation)?),
                        };
                        if !vouched {
                            return Ok(());
                        }
                        let Some(at) = self.claim_to_replace(&held.claims)? else { return Ok(()) };
                        held.claims.remove(at);
                    }
                    held.claims.push(FileClaim { author: record.author, message: record.message });
                    encode(&held)?
                }
            };
            if self.tree().compare_and_swap(record.blob, old.as_ref(), Some(new)).map_err(db)?.is_ok() {
                return Ok(());
            }
        }
    }

    /// Whether a file message by `author` in `conversation` is vouched for: its
    /// author is an accepted contact, or it came in a group. (A stranger's is not.)
    pub fn vouched(&self, author: &PeerId, conversation: ConversationId) -> Result<bool, StoreError> {
        let contacts = Contacts { inner: self.inner.clone() };
        if contacts.get(author)?.is_some_and(|c| c.state == ContactState::Accepted) {
            return Ok(true);
        }
        let conversations = Conversations { inner: self.inner.clone() };
        Ok(conversations.get(conversation)?.is_some_and(|c| matches!(c.kind, ConversationKind::Group { .. })))
    }

    /// The position of the claim a vouched-for one takes the place of: the newest
    /// whose message no longer keeps the file (gone, deleted by its author, hidden
    /// by us), else the newest that is not [`vouched`](Files::vouched) for.
    fn claim_to_replace(&self, claims: &[FileClaim]) -> Result<Option<usize>, StoreError> {
        let messages = Messages { inner: self.inner.clone() };
        let mut stranger = None;
        for (at, claim) in claims.iter().enumerate().rev() {
            let Some(message) = messages.get_from(&crate::peer_text(&claim.author), claim.message)? else {
                return Ok(Some(at));
            };
            let annotations = messages.annotations(&message)?;
            if annotations.deleted || annotations.hidden {
                return Ok(Some(at));
            }
            if stranger.is_none() && !self.vouched(&claim.author, message.conversation)? {
                stranger = Some(at);
            }
        }
        Ok(stranger)
    }

    /// Replaces the record of `blob` by `next`, if the record stored now is still
    /// `current` (nothing changed it meanwhile). Returns whether it did. Not
    /// flushed.
    pub fn replace(&self, current: &FileRecord, next: &FileRecord) -> Result<bool, StoreError> {
        self.swap_if(current, Some(encode(next)?))
    }

    /// The record of blob `blob`.
    pub fn get(&self, blob: &[u8; BLOB_ID_LEN]) -> Result<Option<FileRecord>, StoreError> {
        match self.tree().get(blob).map_err(db)? {
            Some(v) => decode(FILES, &v).map(Some),
            None => Ok(None),
        }
    }

    /// The records whose blob id, in lowercase hex, starts with `prefix` (the table
    /// holds one record per file, so a scan is cheap).
    pub fn find(&self, prefix: &str) -> Result<Vec<FileRecord>, StoreError> {
        let prefix = prefix.to_ascii_lowercase();
        let mut out = Vec::new();
        for kv in self.tree().iter() {
            let (k, v) = kv.map_err(db)?;
            if hex::encode(&k).starts_with(&prefix) {
                out.push(decode(FILES, &v)?);
            }
        }
        Ok(out)
    }

    /// Every record, oldest first.
    pub fn list(&self) -> Result<Vec<FileRecord>, StoreError> {
        let mut out = self
            .tree()
            .iter()
            .map(|kv| kv.map_err(db).and_then(|(_, v)| decode::<FileRecord>(FILES, &v)))
            .collect::<Result<Vec<_>, _>>()?;
        out.sort_by_key(|r| (r.created_at_ms, r.blob));
        Ok(out)
    }

    /// Moves the record of `blob` to `state` (with `path` and `error` when given;
    /// `error` is cleared otherwise). Returns the record as stored now, or `None` when
    /// there is none. Not flushed.
    pub fn set_state(
        &self,
        blob: &[u8; BLOB_ID_LEN],
        state: FileState,
        path: Option<String>,
        error: Option<String>,
    ) -> Result<Option<FileRecord>, StoreError> {
        // Compared and swapped: a claim added meanwhile ([`Files::claim`]) stays.
        loop {
            let Some(old) = self.tree().get(blob).map_err(db)? else { return Ok(None) };
            let mut record: FileRecord = decode(FILES, &old)?;
            record.state = state;
            if path.is_some() {
                record.path.clone_from(&path);
            }
            record.error.clone_from(&error);
            if self.tree().compare_and_swap(blob, Some(old), Some(encode(&record)?)).map_err(db)?.is_ok() {
                return Ok(Some(record));
            }
        }
    }

    /// Forgets the record of `blob` if it is still `current` (nothing changed it,
    /// no claim came meanwhile). Returns whether it did. Not flushed.
    pub fn remove_if(&self, current: &FileRecord) -> Result<bool, StoreError> {
        self.swap_if(current, None)
    }

    /// Puts `next` (encoded; `None` removes) in place of the record of
    /// `current.blob` if that record is still `current`. Compared decoded, so a
    /// record written before a field was added still matches.
    fn swap_if(&self, current: &FileRecord, next: Option<Vec<u8>>) -> Result<bool, StoreError> {
        let Some(old) = self.tree().get(current.blob).map_err(db)? else { return Ok(false) };
        if decode::<FileRecord>(FILES, &old)? != *current {
            return Ok(false);
        }
        Ok(self.tree().compare_and_swap(current.blob, Some(old), next).map_err(db)?.is_ok())
    }
}
