//! Serializable views of stored data: what `--json` prints and the control socket sends.
//!
//! Field names here are a public interface (docs/API.md); add fields, never rename.

use kith_storage::{
    Contact, ContactState, ConversationKind, Direction, FileRecord, FileRef, FileState, Group, Message, MessageState, Mute, Role, Store,
};
use serde::{Deserialize, Serialize};

/// A contact as users and scripts see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactView {
    /// The contact's peer id.
    pub peer_id: String,
    /// The local alias, if set.
    pub alias: Option<String>,
    /// The name the contact announced.
    pub display_name: Option<String>,
    /// `pending_out`, `pending_in`, `accepted` or `blocked`.
    pub state: ContactState,
    /// Known addresses (multiaddrs).
    pub addrs: Vec<String>,
    /// The contact's pinned relays.
    pub relays: Vec<String>,
    /// Marked verified by the user (safety numbers compared, `kith verify`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub verified: bool,
    /// Its end-to-end key changed since it was added or last verified: warn, and
    /// if it was verified, hold messages to it until it is verified again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub key_changed: bool,
}

impl ContactView {
    /// The name to show: alias, else announced name, else the peer id.
    pub fn label(&self) -> &str {
        self.alias
            .as_deref()
            .or(self.display_name.as_deref())
            .unwrap_or(&self.peer_id)
    }
}

impl From<&Contact> for ContactView {
    fn from(c: &Contact) -> ContactView {
        ContactView {
            peer_id: c.peer_id.to_base58(),
            alias: c.alias.clone(),
            display_name: c.display_name.clone(),
            state: c.state,
            addrs: c.addrs.iter().map(ToString::to_string).collect(),
            relays: c.relays.iter().map(ToString::to_string).collect(),
            verified: c.verified_at_ms.is_some(),
            key_changed: c.key_changed_at_ms.is_some(),
        }
    }
}

/// A message as users and scripts see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageView {
    /// 32 hex characters.
    pub id: String,
    /// The conversation id, 32 hex characters.
    pub conversation: String,
    /// The other party of a 1:1 conversation.
    pub peer: Option<String>,
    /// The author's peer id.
    pub author: String,
    /// `outgoing` or `incoming`.
    pub direction: Direction,
    /// The body.
    pub text: String,
    /// Author's clock at writing, ms since the Unix epoch.
    pub sent_at: u64,
    /// When this node stored it, ms since the Unix epoch.
    pub received_at: u64,
    /// The Lamport counter that orders the conversation.
    pub lamport: u64,
    /// `pending`, `sent`, `delivered`, `read` or `failed`.
    pub state: MessageState,
    /// The file it carries (then `text` is its caption, maybe empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileView>,
    /// The message this one answers, quoted (absent when it is no reply).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<QuoteView>,
    /// Edited by its author: `text` is the latest version and `versions` holds every
    /// one, the original first.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub edited: bool,
    /// Versions of an edited message, oldest (the original) first: the original and
    /// the latest edits, [`MAX_VERSIONS`] at most.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub versions: Vec<VersionView>,
    /// Deleted for everyone by its author: `text` is empty and `file` absent.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
    /// Reactions, one entry per emoji in the order first given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reactions: Vec<ReactionView>,
    /// For our own messages in a group: how many of its members have received and
    /// read it (absent elsewhere).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipts: Option<GroupReceiptsView>,
}

/// How far one of our group messages got: "read by 3 of 5". Counts only current
/// members (someone who left no longer counts either way).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupReceiptsView {
    /// The members besides us it was meant for.
    pub members: usize,
    /// How many of them have stored it (those who read it included).
    pub delivered: usize,
    /// How many of them have read it.
    pub read: usize,
    /// Who read it (peer ids).
    pub read_by: Vec<String>,
    /// Who has it but has not read it (peer ids).
    pub delivered_to: Vec<String>,
}

impl GroupReceiptsView {
    /// How far it got, in words: `read by 3 of 5`, `delivered to 2 of 5` before
    /// anyone read it, nothing before anyone has it.
    pub fn summary(&self) -> Option<String> {
        if self.read > 0 {
            Some(format!("read by {} of {}", self.read, self.members))
        } else if self.delivered > 0 {
            Some(format!("delivered to {} of {}", self.delivered, self.members))
        } else {
            None
        }
    }

    /// Whom `author`'s messages in `group` are counted over now: its current members
    /// besides the author, minus those we blocked (whose receipts we drop). `None`
    /// for a group we do not hold, or one too large to count
    /// ([`crate::group::MAX_COUNTED_MEMBERS`]).
    pub fn audience(store: &Store, group: kith_storage::GroupId, author: &str) -> Result<Option<Vec<String>>, kith_storage::StoreError> {
        let Some(group) = store.groups().get(group)? else { return Ok(None) };
        if group.members.len() > crate::group::MAX_COUNTED_MEMBERS {
            return Ok(None);
        }
        let mut audience = Vec::with_capacity(group.members.len());
        for member in group.members {
            if member.peer_id == author {
                continue;
            }
            let blocked = match member.peer_id.parse() {
                Ok(peer) => store.contacts().is_blocked(&peer)?,
                Err(_) => false,
            };
            if !blocked {
                audience.push(member.peer_id);
            }
        }
        Ok(Some(audience))
    }

    /// The receipts of `m`, if it is one of our messages in a group we hold.
    pub fn of(store: &Store, m: &Message) -> Result<Option<GroupReceiptsView>, kith_storage::StoreError> {
        if !counted(m) {
            return Ok(None);
        }
        let Some(audience) = GroupReceiptsView::audience(store, kith_storage::GroupId(m.conversation.0), &m.author)? else {
            return Ok(None);
        };
        GroupReceiptsView::over(store, m, &audience).map(Some)
    }

    /// The receipts of our group message `m` over `audience` (from
    /// [`GroupReceiptsView::audience`]): only those it was meant for count, so a
    /// member who joined later never makes "of 5" unreachable.
    pub fn over(store: &Store, m: &Message, audience: &[String]) -> Result<GroupReceiptsView, kith_storage::StoreError> {
        let tally = match store.group_receipts().of(m.conversation, m.id) {
            Ok(tally) => tally.unwrap_or_default(),
            Err(e) => {
                // A damaged record costs the counts of one message, not the history.
                tracing::warn!(id = %m.id, error = %e, "a message's receipts do not read");
                kith_storage::Tally::default()
            }
        };
        let (mut members, mut read_by, mut delivered_to) = (0, Vec::new(), Vec::new());
        for member in audience.iter().filter(|member| tally.counts(member)) {
            members += 1;
            match tally.reached(member) {
                Some(kith_storage::Reached::Read) => read_by.push(member.clone()),
                Some(kith_storage::Reached::Delivered) => delivered_to.push(member.clone()),
                None => {}
            }
        }
        Ok(GroupReceiptsView { members, delivered: read_by.len() + delivered_to.len(), read: read_by.len(), read_by, delivered_to })
    }
}

/// Whether `m` is a message whose receipts are counted: ours, and no change.
pub(crate) fn counted(m: &Message) -> bool {
    m.direction == kith_storage::Direction::Outgoing && m.link.as_ref().and_then(kith_storage::Link::changed).is_none()
}

/// The message a reply answers, as the reply shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuoteView {
    /// Its id.
    pub id: String,
    /// Its author's peer id; absent when this node does not hold it (yet).
    pub author: Option<String>,
    /// Its current text, cut to [`QUOTE_CHARS`] characters; empty when deleted,
    /// absent when not held.
    pub text: Option<String>,
    /// Whether it was deleted for everyone.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
}

/// Versions an edited message's view carries at most: the original and the latest
/// edits (the store keeps them all).
pub const MAX_VERSIONS: usize = 20;

/// Characters of a quoted message a reply carries in its view.
pub const QUOTE_CHARS: usize = 200;

/// One version of an edited message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionView {
    /// The text.
    pub text: String,
    /// The author's clock when written, ms since the Unix epoch.
    pub at: u64,
}

/// One emoji's reactions to a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReactionView {
    /// The emoji.
    pub emoji: String,
    /// How many reacted with it.
    pub count: usize,
    /// Who (peer ids), in the order they reacted.
    pub by: Vec<String>,
}

/// A file in a message, as users and scripts see it (never its key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileView {
    /// The file's id: its blob's content address, 64 hex characters (`kith get`
    /// takes any unique prefix).
    pub id: String,
    /// The file name.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its media type.
    pub media_type: String,
}

impl From<&FileRef> for FileView {
    fn from(f: &FileRef) -> FileView {
        FileView { id: hex::encode(f.blob), name: f.name.clone(), size: f.size, media_type: f.media_type.clone() }
    }
}

/// A file this node sent or received and where it stands (`kith files`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntryView {
    /// The file's id (64 hex characters).
    pub id: String,
    /// The file name.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its media type.
    pub media_type: String,
    /// `shared`, `uploaded`, `offered`, `downloading`, `complete` or `failed`.
    pub state: FileState,
    /// Where it is on this machine (the path it was sent from, or where it was saved).
    pub path: Option<String>,
    /// Why the last fetch failed.
    pub error: Option<String>,
    /// The message that carries it.
    pub message: String,
    /// That message's author.
    pub author: String,
    /// That message's conversation.
    pub conversation: String,
    /// `outgoing` or `incoming`.
    pub direction: Direction,
    /// When this node first stored it, ms since the Unix epoch.
    pub created_at: u64,
}

impl From<&FileRecord> for FileEntryView {
    fn from(r: &FileRecord) -> FileEntryView {
        FileEntryView {
            id: hex::encode(r.blob),
            name: r.name.clone(),
            size: r.size,
            media_type: r.media_type.clone(),
            state: r.state,
            path: r.path.clone(),
            error: r.error.clone(),
            message: r.message.to_string(),
            author: r.author.to_base58(),
            conversation: r.conversation.to_string(),
            direction: r.direction,
            created_at: r.created_at_ms,
        }
    }
}

/// An ended call in the history (`kith calls`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallRecordView {
    /// The call's id (hex).
    pub id: String,
    /// The other side's peer id.
    pub peer: String,
    /// Whether we placed it.
    pub outgoing: bool,
    /// When it was placed or rang here (ms since the Unix epoch).
    pub started_at: u64,
    /// When it was answered, if it was.
    pub answered_at: Option<u64>,
    /// When it ended.
    pub ended_at: u64,
    /// How long it was answered, in ms.
    pub duration_ms: u64,
    /// An incoming call nobody answered.
    pub missed: bool,
    /// Why it ended (`hung_up`, `remote_hung_up`, `declined`, `no_answer`,
    /// `unreachable`, `refused`, `busy`, `failed`).
    pub reason: String,
}

impl From<&kith_storage::CallRecord> for CallRecordView {
    fn from(r: &kith_storage::CallRecord) -> CallRecordView {
        CallRecordView {
            id: hex::encode(r.id),
            peer: r.peer.to_base58(),
            outgoing: r.outgoing,
            started_at: r.started_at_ms,
            answered_at: r.answered_at_ms,
            ended_at: r.ended_at_ms,
            duration_ms: r.duration_ms(),
            missed: r.missed(),
            reason: r.reason.clone(),
        }
    }
}

impl MessageView {
    /// The view of `m`; `peer` names the other party of a 1:1 conversation.
    pub fn new(m: &Message, peer: Option<&str>) -> MessageView {
        MessageView {
            id: m.id.to_string(),
            conversation: m.conversation.to_string(),
            peer: peer.map(str::to_owned),
            author: m.author.clone(),
            direction: m.direction,
            text: m.text.clone(),
            sent_at: m.sent_at_ms,
            received_at: m.received_at_ms,
            lamport: m.lamport,
            state: m.state,
            file: m.file.as_deref().map(FileView::from),
            reply_to: None,
            edited: false,
            versions: Vec::new(),
            deleted: false,
            reactions: Vec::new(),
            receipts: None,
        }
    }

    /// The view of `m` as it is shown now: its changes applied (see
    /// [`kith_storage::Annotations`]) and the message it answers quoted.
    pub fn annotated(store: &Store, m: &Message, peer: Option<&str>) -> Result<MessageView, kith_storage::StoreError> {
        let mut view = MessageView::annotated_with(store, m, peer, &store.messages().annotations(m)?)?;
        if peer.is_none() {
            view.receipts = GroupReceiptsView::of(store, m)?;
        }
        Ok(view)
    }

    /// [`MessageView::annotated`] with `m`'s annotations already read.
    pub fn annotated_with(
        store: &Store,
        m: &Message,
        peer: Option<&str>,
        annotations: &kith_storage::Annotations,
    ) -> Result<MessageView, kith_storage::StoreError> {
        let mut view = MessageView::new(m, peer);
        view.text = annotations.text(m).to_owned();
        if !annotations.edits.is_empty() {
            view.edited = true;
            // The original and the latest edits: an author who edits without end
            // cannot make every view of the message grow without end.
            let latest = annotations.edits.len().saturating_sub(MAX_VERSIONS - 1);
            view.versions = std::iter::once(VersionView { text: m.text.clone(), at: m.sent_at_ms })
                .chain(annotations.edits[latest..].iter().map(|v| VersionView { text: v.text.clone(), at: v.at_ms }))
                .collect();
        }
        if annotations.deleted {
            view.deleted = true;
            view.file = None;
        }
        view.reactions = annotations
            .reactions
            .iter()
            .map(|r| ReactionView { emoji: r.emoji.clone(), count: r.by.len(), by: r.by.clone() })
            .collect();
        if let Some(kith_storage::Link::ReplyTo(id)) = &m.link {
            view.reply_to = Some(match store.messages().get_in(m.conversation, *id)? {
                Some(quoted) => {
                    let a = store.messages().annotations(&quoted)?;
                    QuoteView {
                        id: id.to_string(),
                        author: Some(quoted.author.clone()),
                        text: Some(a.text(&quoted).chars().take(QUOTE_CHARS).collect()),
                        deleted: a.deleted,
                    }
                }
                None => QuoteView { id: id.to_string(), author: None, text: None, deleted: false },
            });
        }
        Ok(view)
    }
}

/// One line of `kith inbox`: a conversation with unread messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboxEntry {
    /// The conversation id.
    pub conversation: String,
    /// The contact of a 1:1 conversation.
    pub contact: Option<ContactView>,
    /// How many incoming messages are unread.
    pub unread: u32,
    /// The newest message.
    pub last: Option<MessageView>,
    /// Whether the conversation is muted now (see [`ConversationView::muted`]).
    #[serde(default)]
    pub muted: bool,
    /// When its mute lapses (ms since the Unix epoch); `null` when muted forever or
    /// not muted.
    #[serde(default)]
    pub muted_until: Option<u64>,
}

/// A conversation with this device's preferences for it: what `conversations`,
/// `mute_conversation`, `unmute_conversation` and `set_draft` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationView {
    /// The conversation id.
    pub conversation: String,
    /// The other peer's id, for a 1:1 conversation.
    pub peer: Option<String>,
    /// The group id, for a group's conversation (equal to `conversation`).
    pub group: Option<String>,
    /// How many incoming messages are unread.
    pub unread: u32,
    /// Whether it is muted now: no bell and no notification for its messages (a
    /// mention of us in a group still notifies).
    pub muted: bool,
    /// When the mute lapses (ms since the Unix epoch); `null` when muted forever or
    /// not muted.
    pub muted_until: Option<u64>,
    /// The text typed and not sent here, if any.
    pub draft: Option<String>,
}

impl ConversationView {
    /// The view of `conversation` with its mute (holding now, if any) and draft.
    pub fn new(conversation: &kith_storage::Conversation, mute: Option<Mute>, draft: Option<String>) -> ConversationView {
        let (peer, group) = match &conversation.kind {
            ConversationKind::Direct { peer_id } => (Some(peer_id.clone()), None),
            ConversationKind::Group { group_id } => (None, Some(group_id.to_string())),
        };
        ConversationView {
            conversation: conversation.id.to_string(),
            peer,
            group,
            unread: conversation.unread,
            muted: mute.is_some(),
            muted_until: mute.and_then(Mute::until_ms),
            draft,
        }
    }

    /// Its mute as the store has it, if muted.
    pub fn mute(&self) -> Option<Mute> {
        self.muted.then(|| self.muted_until.map_or(Mute::Forever, Mute::Until))
    }

    /// The key clients name it by: the peer id, or the group id.
    pub fn key(&self) -> &str {
        self.peer.as_deref().or(self.group.as_deref()).unwrap_or(&self.conversation)
    }
}

/// A pending incoming contact request with the messages the stranger already sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestView {
    /// Who asks.
    pub contact: ContactView,
    /// How many messages are held until the request is accepted.
    pub held_messages: usize,
    /// The newest held message, as a preview.
    pub preview: Option<String>,
}

/// A group as users and scripts see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupView {
    /// The group id, 32 hex characters (also the id of its conversation).
    pub id: String,
    /// Its name.
    pub name: String,
    /// Current members, owner first, then admins, then members.
    pub members: Vec<MemberView>,
    /// The membership version: how many operations the group's history holds
    /// (grows with every change; members holding the same history agree).
    pub version: u64,
    /// The relays keeping its log.
    pub relays: Vec<String>,
    /// Whether we take part (false once we left or were removed, and while this is an
    /// invitation).
    pub active: bool,
    /// Set while the group is an invitation we have not answered: the peer id of
    /// whoever added us (not an accepted contact).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invited_by: Option<String>,
}

/// A group member as users see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberView {
    /// Peer id.
    pub peer_id: String,
    /// `owner`, `admin` or `member`.
    pub role: Role,
    /// Our name for them: the contact's alias or display name, if they are a contact.
    pub label: Option<String>,
}

impl GroupView {
    /// The view of `group`, naming members who are contacts as `store` knows them.
    pub fn new(store: &Store, group: &Group) -> GroupView {
        let label = |peer: &str| {
            let contact = store.contacts().get(&peer.parse().ok()?).ok()??;
            contact.alias.or(contact.display_name)
        };
        let rank = |r: Role| match r {
            Role::Owner => 0,
            Role::Admin => 1,
            Role::Member => 2,
        };
        let mut members: Vec<MemberView> = group
            .members
            .iter()
            .map(|m| MemberView { peer_id: m.peer_id.clone(), role: m.role, label: label(&m.peer_id) })
            .collect();
        members.sort_by(|a, b| rank(a.role).cmp(&rank(b.role)).then(a.peer_id.cmp(&b.peer_id)));
        GroupView {
            id: group.id.to_string(),
            name: group.name.clone(),
            members,
            version: group.version,
            relays: group.relays.clone(),
            active: group.active,
            invited_by: group.invited_by.clone(),
        }
    }
}

/// A profile as users and scripts see it: ours, or a contact's as they last sent it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileView {
    /// Whose it is.
    pub peer_id: String,
    /// The name they chose.
    pub name: Option<String>,
    /// Our local alias for them (contacts only); it wins over `name` wherever a name
    /// is shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    /// Their status line.
    pub status: Option<String>,
    /// Their picture.
    pub avatar: Option<AvatarView>,
    /// When it last changed, ms since the Unix epoch on its owner's clock (absent:
    /// no profile received yet).
    pub updated_at: Option<u64>,
}

/// A profile picture.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AvatarView {
    /// `image/png` or `image/jpeg`.
    pub media_type: String,
    /// Its size in bytes.
    pub size: usize,
    /// The picture, base64 (standard alphabet, padded), when asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
}

/// A contact's safety number and whether it is verified (`kith verify`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyView {
    /// The contact.
    pub contact: ContactView,
    /// Both identities' fingerprints, 24 groups of 5 digits, the same on both sides.
    pub safety_number: String,
    /// The safety number as a QR code (Unicode half blocks), to scan on the other
    /// device instead of reading the digits.
    pub qr: String,
    /// When the user marked it verified, ms since the Unix epoch.
    pub verified_at: Option<u64>,
}


/// Our end-to-end keys, as `keys` and `rotate_key` report them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeysView {
    /// The key in use (base58), as contacts and invites see it.
    pub e2e_public: String,
    /// Its version: when it was taken into use (ms since the epoch); 0 unversioned.
    pub version: u64,
    /// When its binding expires unless renewed (ms since the epoch); 0 never.
    pub expires_ms: u64,
    /// Keys rotated out, newest first, still opening mail sealed to them.
    pub retired: Vec<RetiredKeyView>,
}

/// A key rotated out (see [`KeysView`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetiredKeyView {
    /// The key (base58).
    pub e2e_public: String,
    /// Its version.
    pub version: u64,
    /// When it was rotated out (ms since the epoch).
    pub retired_at_ms: u64,
    /// When it is wiped and stops opening anything (ms since the epoch).
    pub wiped_at_ms: u64,
}
