//! The node: one actor owns the libp2p swarm and the store; clients hold a
//! [`NodeHandle`].
//!
//! The handle sends [`Command`]s over a bounded channel, each carrying a oneshot for
//! its answer, and subscribes to a broadcast of [`Event`]s. Reads that need no
//! network (history, contacts) go straight to the store through
//! [`NodeHandle::store`]; everything that changes state or touches the network goes
//! through the actor, which is the single writer.

mod actor;
mod request_size;

pub(crate) use actor::relays::relay_peer;
mod behaviour;
mod changes;
mod contact_rules;
mod direct;
mod group_rules;
#[cfg(test)]
mod test_support;
mod directory;
mod downloads;
mod event;
mod file_sweep;
mod flusher;
mod grouplog_client;
mod inbound;
mod mailbox_client;
mod or_log;
mod receipt_batch;
mod outbox;
pub mod presence;
pub mod profiles;
mod pushing;
mod reachability;
mod redeposits;
mod sending;
mod seal_cache;
mod send_ahead;
mod session_reset;
mod tickets;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use kith_search::SearchIndex;
use kith_storage::{FileState, Role, Store};
use libp2p::{Multiaddr, PeerId};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc, oneshot};

pub use behaviour::{IDENTIFY_VERSION, KAD_PROTOCOL};
pub use downloads::FilesConfig;
pub use event::{Event, SendingPhase};
pub use outbox::QueueStatus;
pub use reachability::AutonatProbes;

use crate::blob::transfer::{self, FetchError};
use crate::blob::{BlobError, BlobId, BlobKey, BlobStore};
use crate::conn_limits::ConnectionLimits;
use crate::identity::Identity;
use crate::invite::Invite;
use crate::ops::OpError;
use crate::views::{ContactView, FileEntryView, GroupView, MessageView};

/// Every timer and limit of the node, so tests can change them. Defaults are for real
/// use.
#[derive(Debug, Clone)]
pub struct Timers {
    /// First retry delay after a failed delivery attempt (default 500 ms).
    pub retry_initial: Duration,
    /// Ceiling of the exponential retry backoff (default 30 s).
    pub retry_max: Duration,
    /// How long a delivery request may take before it counts as failed (default 10 s).
    pub request_timeout: Duration,
    /// How often the node re-publishes its peer record (default 10 min).
    pub record_refresh: Duration,
    /// How long a published peer record stays valid (default 1 h).
    pub record_ttl: Duration,
    /// How long an idle connection is kept open (default 60 s).
    pub idle_connection: Duration,
    /// How often a connection is pinged; a failed ping closes it (default 15 s).
    pub ping_interval: Duration,
    /// How long a one-time invite stays redeemable (default 7 days).
    pub invite_ttl: Duration,
    /// How often the node deletes expired invite tokens (default 1 h; also at start).
    pub invite_purge_interval: Duration,
    /// How often the node gives accepted contacts a new deposit ticket where theirs
    /// runs out within 20 days (default 1 h; also at start and when a contact is
    /// accepted). See docs/PROTOCOL.md, *Deposit tickets*.
    pub deposit_ticket_check: Duration,
    /// How long mail one of a contact's relays held waits before it is sent again to
    /// another of its relays that missed it (default 30 s; doubling per try, at most
    /// five more tries).
    pub redeposit_after: Duration,
    /// How often the node drains its relays' mailboxes, fetches its groups' logs and
    /// redials group members (default 60 s; also at start and when relays change).
    pub drain_interval: Duration,
    /// Connections the node accepts: in total, per peer, per IP address, and a memory
    /// ceiling (default [`ConnectionLimits::default`]; see docs/CONFIG.md).
    pub connection_limits: ConnectionLimits,
    /// Events buffered per subscriber (a control client, the TUI) before the slowest
    /// is told it lagged and missed some (default 4096; at least 1).
    pub event_buffer: usize,
    /// How the node finds out whether others can dial it (AutoNAT; default
    /// [`AutonatProbes::default`], libp2p's timers).
    pub autonat: AutonatProbes,
    /// How long `start` waits for the listeners to report their addresses (default 10 s).
    pub listen_deadline: Duration,
    /// Least time between two peer-record publications triggered by new DHT peers
    /// (default 2 s).
    pub publish_spacing: Duration,
    /// How long a group message waits before it is published and appended again while
    /// no relay holds it yet (default 3 s).
    pub group_retry: Duration,
    /// Least time between two syncs of one group's history with one peer, asked or
    /// answered (default 10 s): a member cannot make us fill our outbox with answers.
    pub group_sync_spacing: Duration,
    /// How long a DHT query (a peer record lookup or publication) may run (default 30 s).
    pub dht_query_timeout: Duration,
    /// The gossip mesh's heartbeat, which repairs the mesh and gossips what was
    /// published (default 500 ms).
    pub gossip_heartbeat: Duration,
    /// First wait before a failed file download is tried again; it doubles per failure
    /// up to `download_retry_max` (defaults 5 s and 5 min; any peer connecting retries
    /// at once).
    pub download_retry_initial: Duration,
    /// Ceiling of the download retry backoff (default 5 min).
    pub download_retry_max: Duration,
    /// How long an upload to a media node that failed for a passing reason (a
    /// connection being replaced, a busy node) waits before its one more try
    /// (default 500 ms).
    pub upload_retry: Duration,
    /// Least time between two progress events of one file being sent or received
    /// (default 250 ms; the first and the last always go out).
    pub file_progress_every: Duration,
    /// Least time between two sweeps for the files of deleted messages (default 1 s):
    /// a sweep reads every file record and its message, so a peer's flood of
    /// deletions costs at most one a spacing.
    pub file_sweep_spacing: Duration,
    /// How long our presence announcements hold; they are renewed every half of it
    /// (default 10 min: a node that vanishes without a word shows offline within it).
    pub presence_ttl: Duration,
    /// How often the full-text index takes in new messages in the background
    /// (default 2 s; a search also catches up first, so this only spares searches
    /// the wait).
    pub search_catch_up: Duration,
    /// How long delivery receipts for group messages gather before they go out, one
    /// per author (default 2 s): a busy group costs an author one receipt per member
    /// per interval, not one per message.
    pub group_receipt_batch: Duration,
    /// How long after a contact's first ratcheted message its payloads sealed the
    /// old way are still taken (default [`crate::ratchet::LEGACY_GRACE`], 30 days:
    /// mail sealed before the upgrade may wait that long in relays).
    pub ratchet_legacy_grace: Duration,
    /// How often the key that seals the ratchet state on disk is replaced, while
    /// that state is written (default [`crate::ratchet::STATE_ROLL`], 10 min; also at
    /// start): the longest a replaced session state stays readable to someone who
    /// later takes the device's keys and database. Each roll costs three syncs.
    pub ratchet_state_roll: Duration,
    /// Least time between two typing notices this node sends to one conversation
    /// (default 3 s).
    pub typing_spacing: Duration,
    /// Least time between two typing events of one peer in one conversation passed
    /// to clients (default 1 s).
    pub typing_shown_spacing: Duration,
    /// How long a stopping node waits for its contacts to take its "offline"
    /// (default 2 s).
    pub presence_goodbye: Duration,
    /// Least time between two ratchet resets offered to one contact, and between two
    /// resends of undelivered messages to a contact that lost its sessions (default
    /// 60 s): a peer that keeps sending what we cannot open gets new keys once a
    /// minute, not once per envelope.
    pub ratchet_reset_spacing: Duration,
    /// How long a write that needs no flush of its own (a delivery state taken from a
    /// peer's answer) waits for some other flush to cover it before asking for one
    /// (default 20 ms; docs/PROTOCOL.md, *Delivery*).
    pub lazy_flush_delay: Duration,
    /// How often the node looks whether its message log is worth compacting (more
    /// than half of it, and at least 8 MiB, no longer live); a compaction runs in the
    /// background while the node goes on (default 60 s).
    pub log_compaction_check: Duration,
    /// Call signalling and ringing (defaults 10 s to reach the peer, 45 s of ringing).
    pub calls: crate::call::CallTimers,
}

impl Default for Timers {
    fn default() -> Timers {
        Timers {
            retry_initial: Duration::from_millis(500),
            retry_max: Duration::from_secs(30),
            request_timeout: Duration::from_secs(10),
            record_refresh: Duration::from_secs(600),
            record_ttl: Duration::from_secs(3600),
            idle_connection: Duration::from_secs(60),
            ping_interval: Duration::from_secs(15),
            invite_ttl: Duration::from_secs(7 * 24 * 3600),
            invite_purge_interval: Duration::from_secs(3600),
            deposit_ticket_check: Duration::from_secs(3600),
            drain_interval: Duration::from_secs(60),
            redeposit_after: Duration::from_secs(30),
            connection_limits: ConnectionLimits::default(),
            event_buffer: 4096,
            autonat: AutonatProbes::default(),
            listen_deadline: Duration::from_secs(10),
            publish_spacing: Duration::from_secs(2),
            group_retry: Duration::from_secs(3),
            group_sync_spacing: Duration::from_secs(10),
            dht_query_timeout: Duration::from_secs(30),
            gossip_heartbeat: Duration::from_millis(500),
            download_retry_initial: Duration::from_secs(5),
            download_retry_max: Duration::from_secs(300),
            upload_retry: Duration::from_millis(500),
            file_progress_every: Duration::from_millis(250),
            file_sweep_spacing: Duration::from_secs(1),
            search_catch_up: Duration::from_secs(2),
            group_receipt_batch: Duration::from_secs(2),
            presence_ttl: Duration::from_secs(600),
            ratchet_legacy_grace: crate::ratchet::LEGACY_GRACE,
            ratchet_state_roll: crate::ratchet::STATE_ROLL,
            log_compaction_check: Duration::from_secs(60),
            typing_spacing: Duration::from_secs(3),
            typing_shown_spacing: Duration::from_secs(1),
            presence_goodbye: Duration::from_secs(2),
            ratchet_reset_spacing: Duration::from_secs(60),
            lazy_flush_delay: Duration::from_millis(20),
            calls: crate::call::CallTimers::default(),
        }
    }
}

/// What a node needs to start.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The user's identity (libp2p key and E2E key).
    pub identity: Identity,
    /// Addresses to listen on.
    pub listen: Vec<Multiaddr>,
    /// Peers to join the DHT through.
    pub bootstrap: Vec<Multiaddr>,
    /// Pinned relays, advertised in invites and peer records.
    pub relays: Vec<Multiaddr>,
    /// Discover peers on the LAN with mDNS.
    pub mdns: bool,
    /// The name others see.
    pub display_name: Option<String>,
    /// Send read receipts when the user marks a conversation read.
    pub read_receipts: bool,
    /// Tell contacts when we are online, and see when they are (both or neither).
    pub presence: bool,
    /// Timers and deadlines.
    pub timers: Timers,
    /// Files: where they live and which download by themselves; `None` turns files
    /// off: the node neither serves nor fetches them.
    pub files: Option<FilesConfig>,
    /// Where the end-to-end key ring lives ([`crate::keyring`]); `identity` is then the
    /// keystore's, and the node uses the ring's current key. `None`: the identity's key
    /// alone, unversioned, and no rotation.
    pub key_ring: Option<std::path::PathBuf>,
}

/// Why the node could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// Building the transport or a behaviour failed.
    #[error("building the network stack: {0}")]
    Build(String),
    /// A listen address was refused.
    #[error("cannot listen on {addr}: {reason}")]
    Listen {
        /// The address.
        addr: Multiaddr,
        /// Why.
        reason: String,
    },
}

/// Why a node operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// A local operation failed (unknown contact, bad state, storage...).
    #[error(transparent)]
    Op(#[from] OpError),
    /// The peer could not be found (no record in the DHT, no address).
    #[error("cannot find peer {0}: not in the DHT and no known address")]
    PeerNotFound(String),
    /// The input was not a valid invite or peer id.
    #[error("{0}")]
    BadTarget(String),
    /// The node has shut down.
    #[error("the node has stopped")]
    Stopped,
    /// This node runs without a blob store ([`NodeConfig::blob_dir`] is `None`).
    #[error("files are off on this node")]
    FilesOff,
    /// Reading, sealing, storing or opening a file failed.
    #[error(transparent)]
    Blob(#[from] BlobError),
    /// Fetching a file from a peer failed; what arrived and was checked is kept.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// A media node did not take a blob.
    #[error(transparent)]
    Upload(#[from] crate::blob::media::UploadError),
    /// A call request failed.
    #[error(transparent)]
    Call(#[from] crate::call::CallError),
}

/// A file sealed into this node's blob store: what a recipient needs to fetch it
/// (`id`) and read it (`key`), and its size.
#[derive(Debug, Clone)]
pub struct SharedFile {
    /// The blob's content address.
    pub id: BlobId,
    /// The file's own key.
    pub key: BlobKey,
    /// The plaintext size in bytes.
    pub size: u64,
}

/// The node's blob store, the stream control its transfers use, and its downloads.
#[derive(Clone)]
struct Blobs {
    store: Arc<BlobStore>,
    control: libp2p_stream::Control,
    downloads: downloads::Downloads,
    /// Bytes served and fetched (see [`Status`]).
    counters: Arc<downloads::Counters>,
    /// Uploads to media nodes being watched for their progress.
    uploads: sending::Uploads,
    /// Wait before an upload that failed in passing is tried once more
    /// (`Timers::upload_retry`).
    upload_retry: Duration,
    /// Least time between two progress events of one file (`Timers::file_progress_every`).
    progress_every: Duration,
}

/// A snapshot of the node for `kith status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// Our peer id.
    pub peer_id: String,
    /// Addresses we listen on.
    pub listen_addrs: Vec<String>,
    /// Peers with an open connection.
    pub connected_peers: Vec<String>,
    /// Peers in the Kademlia routing table.
    pub routing_table_size: usize,
    /// Pinned relays.
    pub relays: Vec<String>,
    /// Items waiting in the outbox.
    pub outbox: usize,
    /// Per recipient with items waiting: how many, and when and how the next attempt
    /// goes (most waiting first).
    #[serde(default)]
    pub queues: Vec<QueueStatus>,
    /// Sealed file bytes this node served to peers since it started.
    #[serde(default)]
    pub files_served_bytes: u64,
    /// Sealed file bytes this node fetched, verified and stored since it started.
    #[serde(default)]
    pub files_fetched_bytes: u64,
    /// What AutoNAT found: `unknown` (not probed yet, e.g. no peers to ask),
    /// `public <address>` (others can dial us there) or `private` (only through
    /// relays and hole punching).
    pub reachability: String,
    /// A write or a flush of the database failed (a full or failing disk): from
    /// then on the node stores nothing new, so it sends and acknowledges nothing,
    /// until it is restarted ([`kith_storage::Store::failed`]).
    #[serde(default)]
    pub storage_failed: bool,
}

/// A change to a group, asked for by the user. On the control socket each variant is
/// one method (`group_create`, `group_add`, ...) whose params are its fields; see
/// [`crate::control::Request::ChangeGroup`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "method", content = "params")]
#[non_exhaustive]
pub enum GroupChange {
    /// Create a group with us as owner (its relays: our pinned relays).
    #[serde(rename = "group_create")]
    Create {
        /// Its name.
        name: String,
    },
    /// Add a contact as a member.
    #[serde(rename = "group_add")]
    Add {
        /// The group (id, name or unique prefix).
        group: String,
        /// The contact (alias, peer id or unique prefix).
        contact: String,
    },
    /// Remove a member.
    #[serde(rename = "group_remove")]
    Remove {
        /// The group.
        group: String,
        /// The member (contact name or peer id prefix).
        member: String,
    },
    /// Make a member an admin or a plain member.
    #[serde(rename = "group_role")]
    SetRole {
        /// The group.
        group: String,
        /// The member.
        member: String,
        /// `Admin` or `Member`.
        role: Role,
    },
    /// Rename the group.
    #[serde(rename = "group_rename")]
    Rename {
        /// The group.
        group: String,
        /// The new name.
        name: String,
    },
    /// Leave the group.
    #[serde(rename = "group_leave")]
    Leave {
        /// The group.
        group: String,
    },
    /// Join a group someone who is not an accepted contact added us to.
    #[serde(rename = "group_accept")]
    Accept {
        /// The group.
        group: String,
    },
    /// Turn down such an invitation: the group is forgotten locally and does not come
    /// back; nothing is sent to its members.
    #[serde(rename = "group_decline")]
    Decline {
        /// The group.
        group: String,
    },
}

impl GroupChange {
    /// The control-socket methods of group changes.
    pub const METHODS: [&'static str; 8] = [
        "group_create",
        "group_add",
        "group_remove",
        "group_role",
        "group_rename",
        "group_leave",
        "group_accept",
        "group_decline",
    ];

}

/// A request to the actor. Every variant that needs an answer carries its oneshot.
pub(crate) enum Command {
    Status(oneshot::Sender<Status>),
    /// Contacts' presence as this node knows it.
    Presence(oneshot::Sender<Vec<presence::PresenceView>>),
    /// Tell a conversation's peers we are typing.
    Typing { target: String, reply: oneshot::Sender<Result<usize, NodeError>> },
    /// Our end-to-end keys.
    Keys(oneshot::Sender<Result<crate::views::KeysView, NodeError>>),
    /// Rotate our end-to-end key.
    RotateKey(oneshot::Sender<Result<crate::views::KeysView, NodeError>>),
    /// Change our profile, and send it to every contact.
    SetProfile { change: profiles::ProfileChange, reply: oneshot::Sender<Result<crate::views::ProfileView, NodeError>> },
    Invite(oneshot::Sender<Result<Invite, NodeError>>),
    AddInvite {
        invite: Box<Invite>,
        alias: Option<String>,
        reply: oneshot::Sender<Result<ContactView, NodeError>>,
    },
    AddPeer {
        peer: PeerId,
        alias: Option<String>,
        reply: oneshot::Sender<Result<ContactView, NodeError>>,
    },
    Send(SendRequest),
    /// Run a storage operation as the single writer, then pick up whatever it queued.
    Local {
        op: LocalOp,
        reply: oneshot::Sender<Result<serde_json::Value, NodeError>>,
    },
    Dial(Multiaddr, oneshot::Sender<Result<(), NodeError>>),
    /// Connect to a peer unless connected (with these addresses and any known ones);
    /// answered once the dial is under way, not when it succeeds.
    Reach(PeerId, Vec<Multiaddr>, oneshot::Sender<()>),
    /// The pinned relays' addresses (where the calls task asks for TURN grants).
    PinnedRelays(oneshot::Sender<Vec<Multiaddr>>),
    SetRelays(Vec<Multiaddr>, oneshot::Sender<()>),
    Group(GroupChange, oneshot::Sender<Result<GroupView, NodeError>>),
    /// What joining a group's voice room takes (the group as the user names it).
    RoomTicket(String, oneshot::Sender<Result<crate::call::RoomTicket, NodeError>>),
    Shutdown(oneshot::Sender<()>),
}

/// A message to send: text, or a file with its caption.
pub(crate) struct SendRequest {
    /// The contact or group, as the user names it.
    pub(crate) contact: String,
    /// The text (a file's caption, maybe empty).
    pub(crate) text: String,
    /// The file, already sealed into the blob store.
    pub(crate) attachment: Option<Box<Attachment>>,
    /// The message it answers or changes.
    pub(crate) link: Option<kith_storage::Link>,
    /// Where the answer goes.
    pub(crate) reply: oneshot::Sender<Result<MessageView, NodeError>>,
}

/// A file a message carries, as its sender knows it.
pub(crate) struct Attachment {
    /// What the message says about it.
    pub(crate) file: kith_storage::FileRef,
    /// Where it stands ([`FileState::Shared`] or, once on media nodes, `Uploaded`).
    pub(crate) state: kith_storage::FileState,
    /// The path it was sent from.
    pub(crate) path: Option<String>,
    /// Why no media node took it, when one should have.
    pub(crate) error: Option<String>,
}

/// A storage operation run as the single writer: inside the actor when a node runs,
/// directly on the store when none does. It writes without flushing; its caller makes
/// the writes durable before answering (the node's flushing thread, or a flush in
/// place when no node runs).
pub type LocalOp = Box<dyn FnOnce(&Store, &LocalContext) -> Result<serde_json::Value, OpError> + Send>;

/// What local operations need to know about the user.
#[derive(Debug, Clone)]
pub struct LocalContext {
    /// Our peer id.
    pub me: PeerId,
    /// Our display name (sent with contact acceptances).
    pub display_name: Option<String>,
    /// Whether marking read sends read receipts.
    pub read_receipts: bool,
}

impl NodeConfig {
    /// The [`LocalContext`] of this node's user.
    pub fn local_context(&self) -> LocalContext {
        LocalContext {
            me: self.identity.peer_id(),
            display_name: self.display_name.clone(),
            read_receipts: self.read_receipts,
        }
    }
}

/// Bound on queued commands: callers wait (backpressure) rather than grow memory.
const COMMAND_QUEUE: usize = 256;

/// A cheap, cloneable handle to a running node.
#[derive(Clone)]
pub struct NodeHandle {
    commands: mpsc::Sender<Command>,
    events: broadcast::Sender<Event>,
    store: Store,
    peer_id: PeerId,
    blobs: Option<Blobs>,
    calls: crate::call::manager::Calls,
    /// The full-text index; `None` when it could not be opened (searches then fail
    /// with the reason, everything else works).
    search: Result<Arc<SearchIndex>, String>,
}

/// The node's listening addresses once it is up, plus the handle.
pub struct Started {
    /// Drive the node with this.
    pub handle: NodeHandle,
    /// The concrete addresses the node listens on.
    pub listen_addrs: Vec<Multiaddr>,
    /// Resolves when the actor has stopped (after shutdown, everything flushed).
    pub stopped: tokio::task::JoinHandle<()>,
}

impl NodeHandle {
    /// Our peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The store, for reads. Writes go through the handle's methods.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The full-text index of this node's messages, kept up to date in the
    /// background (see [`crate::search`]).
    pub fn search_index(&self) -> Result<&Arc<SearchIndex>, OpError> {
        self.search.as_ref().map_err(|why| OpError::Search(why.clone()))
    }

    /// A stream of events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, NodeError> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(make(tx)).await.map_err(|_| NodeError::Stopped)?;
        rx.await.map_err(|_| NodeError::Stopped)
    }

    /// Current status.
    pub async fn status(&self) -> Result<Status, NodeError> {
        let mut status = self.ask(Command::Status).await?;
        if let Some(blobs) = &self.blobs {
            status.files_served_bytes = blobs.counters.served.load(std::sync::atomic::Ordering::Relaxed);
            status.files_fetched_bytes = blobs.counters.fetched.load(std::sync::atomic::Ordering::Relaxed);
        }
        Ok(status)
    }

    /// Contacts' presence: everyone heard from since the node started, online
    /// first. Empty with presence off.
    pub async fn presence(&self) -> Result<Vec<presence::PresenceView>, NodeError> {
        self.ask(Command::Presence).await
    }

    /// Tells `target`'s peers (a contact, or a group's members) connected now that
    /// we are typing there: at most once per 3 s per conversation, nothing with
    /// presence off. Returns how many were told.
    pub async fn typing(&self, target: &str) -> Result<usize, NodeError> {
        let target = target.to_owned();
        self.ask(|reply| Command::Typing { target, reply }).await?
    }

    /// Changes our profile (signed, kept, and queued for every accepted contact, so
    /// those offline get it through relays); answers once that is durable.
    pub async fn set_profile(&self, change: profiles::ProfileChange) -> Result<crate::views::ProfileView, NodeError> {
        self.ask(|reply| Command::SetProfile { change, reply }).await?
    }

    /// Our end-to-end keys: the current one and those rotated out but still kept.
    pub async fn keys(&self) -> Result<crate::views::KeysView, NodeError> {
        self.ask(Command::Keys).await?
    }

    /// Takes a new end-to-end key into use (see [`crate::keyring`]) and announces it
    /// to every accepted contact through the outbox; the old key still opens mail for
    /// [`crate::keyring::RETIRED_KEEP_MS`]. Answers once the new ring and the
    /// announcements are durable. Fails with [`OpError::NotAllowed`] on a node started
    /// without a key ring ([`NodeConfig::key_ring`]).
    pub async fn rotate_key(&self) -> Result<crate::views::KeysView, NodeError> {
        self.ask(Command::RotateKey).await?
    }

    /// Create a one-time invite (mutual contact on redemption, no approval needed).
    pub async fn invite(&self) -> Result<Invite, NodeError> {
        self.ask(Command::Invite).await?
    }

    /// Add a contact from an invite: mutual at once if it carries a token, else a request.
    pub async fn add_invite(&self, invite: Invite, alias: Option<String>) -> Result<ContactView, NodeError> {
        self.ask(|reply| Command::AddInvite { invite: Box::new(invite), alias, reply }).await?
    }

    /// Send a contact request to a bare peer id (its keys are looked up in the DHT).
    pub async fn add_peer(&self, peer: PeerId, alias: Option<String>) -> Result<ContactView, NodeError> {
        self.ask(|reply| Command::AddPeer { peer, alias, reply }).await?
    }

    /// Send a text; returns once it is durably in the outbox (state `pending`).
    pub async fn send(&self, contact: &str, text: &str) -> Result<MessageView, NodeError> {
        self.ask(|reply| {
            Command::Send(SendRequest { contact: contact.to_owned(), text: text.to_owned(), attachment: None, link: None, reply })
        })
            .await?
    }

    /// Run a storage operation through the actor (the single writer).
    pub async fn local(&self, op: LocalOp) -> Result<serde_json::Value, NodeError> {
        self.ask(|reply| Command::Local { op, reply }).await?
    }

    /// Calls a contact (`target` as the user names it): returns once the callee's node
    /// rings, or fails (`unreachable`, `refused`, `busy` as [`CallError::Ended`]).
    pub async fn call(&self, target: &str, audio: crate::call::AudioChoice) -> Result<crate::call::CallView, NodeError> {
        let contact = crate::ops::resolve_contact(&self.store, target)?;
        let peer = contact.peer_id;
        Ok(self.calls.ask(|reply| crate::call::manager::Input::Place { peer, audio, reply }).await??)
    }

    /// Answers the ringing call `call` (a hex prefix; the only one when `None`):
    /// returns once the caller has the answer.
    pub async fn answer(&self, call: Option<String>, audio: crate::call::AudioChoice) -> Result<crate::call::CallView, NodeError> {
        Ok(self.calls.ask(|reply| crate::call::manager::Input::Answer { call, audio, reply }).await??)
    }

    /// Hangs up (or declines, while it rings) call `call`, or the only one.
    pub async fn hangup(&self, call: Option<String>) -> Result<crate::call::CallView, NodeError> {
        Ok(self.calls.ask(|reply| crate::call::manager::Input::Hangup { call, reply }).await??)
    }

    /// Mutes or unmutes our side of call `call`, or of the only one with media.
    pub async fn mute(&self, call: Option<String>, muted: bool) -> Result<crate::call::CallView, NodeError> {
        Ok(self.calls.ask(|reply| crate::call::manager::Input::Mute { call, muted, reply }).await??)
    }

    /// Joins a group's voice room (`group` as the user names it): returns once a
    /// relay of the group took us in. Already in it: the room as it is.
    pub async fn join_room(&self, group: &str, audio: crate::call::AudioChoice) -> Result<crate::call::voice_room::RoomView, NodeError> {
        let group = group.to_owned();
        Ok(self.calls.ask(|reply| crate::call::manager::Input::RoomJoin { group, audio, reply }).await??)
    }

    /// Leaves a group's voice room.
    pub async fn leave_room(&self, group: &str) -> Result<crate::call::voice_room::RoomView, NodeError> {
        let group = group.to_owned();
        Ok(self.calls.ask(|reply| crate::call::manager::Input::RoomLeave { group, reply }).await??)
    }

    /// Mutes or unmutes our side in a group's voice room.
    pub async fn mute_room(&self, group: &str, muted: bool) -> Result<crate::call::voice_room::RoomView, NodeError> {
        let group = group.to_owned();
        Ok(self.calls.ask(|reply| crate::call::manager::Input::RoomMute { group, muted, reply }).await??)
    }

    /// The voice rooms we are in.
    pub async fn rooms(&self) -> Result<Vec<crate::call::voice_room::RoomView>, NodeError> {
        Ok(self.calls.ask(|reply| crate::call::manager::Input::RoomList { reply }).await?)
    }

    /// The calls in progress.
    pub async fn active_calls(&self) -> Result<Vec<crate::call::CallView>, NodeError> {
        Ok(self.calls.ask(|reply| crate::call::manager::Input::List { reply }).await?)
    }

    /// Dial an address (e.g. a peer on the same machine).
    pub async fn dial(&self, addr: Multiaddr) -> Result<(), NodeError> {
        self.ask(|reply| Command::Dial(addr, reply)).await?
    }

    /// Replace the pinned relays (each address ends in `/p2p/<relay id>`): they are
    /// advertised from now on and drained at once.
    pub async fn set_relays(&self, relays: Vec<Multiaddr>) -> Result<(), NodeError> {
        self.ask(|reply| Command::SetRelays(relays, reply)).await
    }

    /// Create a group, or change one we are an admin of (or leave it); answers with
    /// the group as it is afterwards. The change is stored and on its way to every
    /// member when this returns.
    pub async fn group(&self, change: GroupChange) -> Result<GroupView, NodeError> {
        self.ask(|reply| Command::Group(change, reply)).await?
    }

    fn blobs(&self) -> Result<&Blobs, NodeError> {
        self.blobs.as_ref().ok_or(NodeError::FilesOff)
    }

    /// Removes, soon and off this call, the files this node no longer keeps: those
    /// of messages deleted for everyone, of received messages hidden, and of deleted
    /// conversations (see `file_sweep`). Call it after a local change that can
    /// make some go.
    pub fn sweep_files(&self) {
        if let Some(blobs) = &self.blobs {
            blobs.downloads.sweep();
        }
    }

    /// Seals the file at `path` under a new key into this node's blob store, where
    /// peers who are given its id can fetch it. The file is read once, a chunk at a
    /// time, off the async workers; [`Event::FileSending`] reports the sealing.
    pub async fn share_file(&self, path: &Path) -> Result<SharedFile, NodeError> {
        self.share_file_each(path, |_, _| Ok(())).await
    }

    /// [`NodeHandle::share_file`], handing each sealed chunk to `also` in order as
    /// it is sealed (for [`pushing::drive`]).
    async fn share_file_each(
        &self,
        path: &Path,
        also: impl FnMut(u64, Vec<u8>) -> Result<(), BlobError> + Send + 'static,
    ) -> Result<SharedFile, NodeError> {
        let blobs = self.blobs()?;
        let (store, every) = (blobs.store.clone(), blobs.progress_every);
        let events = self.events.clone();
        let path = path.to_path_buf();
        let shared = tokio::task::spawn_blocking(move || -> Result<SharedFile, BlobError> {
            let mut file = std::fs::File::open(&path)?;
            let size = file.metadata()?.len();
            let key = BlobKey::generate();
            let progress = sending::Progress::new(events, path.display().to_string(), size, SendingPhase::Sealing, every);
            let mut reading = sending::Counting::new(std::io::BufReader::with_capacity(1 << 20, &mut file), progress);
            let outboard = store.seal_file_each(&key, size, &mut reading, also)?;
            Ok(SharedFile { id: outboard.id(), key, size })
        })
        .await
        .map_err(|e| BlobError::Io(std::io::Error::other(e)))??;
        Ok(shared)
    }

    /// Fetches blob `id` from `peer` into this node's blob store, resuming what an
    /// earlier fetch left; `progress` hears chunks held and chunks in all.
    pub async fn fetch_blob(&self, peer: PeerId, id: BlobId, progress: impl FnMut(u64, u64)) -> Result<(), NodeError> {
        let blobs = self.blobs()?;
        transfer::fetch(&blobs.control, peer, id, &blobs.store, progress).await?;
        Ok(())
    }

    /// Asks the media node `media` to hold blob `id` (complete in this node's store);
    /// returns once the media node holds it durably.
    pub async fn upload_blob(&self, media: PeerId, id: BlobId) -> Result<(), NodeError> {
        let blobs = self.blobs()?;
        crate::blob::media::upload(&blobs.control, &blobs.store, media, id).await?;
        Ok(())
    }

    /// Decrypts the complete blob `id` with `key` into a new file at `out` (written
    /// next to it under a temporary name and renamed when whole and checked, so `out`
    /// never holds half a file).
    pub async fn save_blob(&self, id: BlobId, key: BlobKey, out: &Path) -> Result<(), NodeError> {
        downloads::save(self.blobs()?.store.clone(), id, key, out.to_path_buf(), downloads::Saving::Copy).await?;
        Ok(())
    }

    /// Sends the file at `path` to a contact or group, with `caption` (maybe empty):
    /// seals it into the blob store, where recipients fetch it; for a group, or a
    /// contact that is not connected, first uploads it to every pinned relay that
    /// takes it as a media node, and the message names them. Answers like
    /// [`NodeHandle::send`], once the message is stored.
    pub async fn send_file(&self, target: &str, path: &Path, caption: &str) -> Result<MessageView, NodeError> {
        let name = path
            .file_name()
            .map(|n| crate::files::safe_file_name(&n.to_string_lossy()))
            .ok_or_else(|| NodeError::Op(OpError::Invalid(format!("{} is not a file", path.display()))))?;
        // The user's path, told apart from our blob store's own failures: opened here
        // once, so a file that cannot be read is `invalid` with its path.
        let readable = std::fs::File::open(path).and_then(|f| f.metadata());
        match readable {
            Ok(meta) if meta.is_file() => {}
            Ok(_) => return Err(NodeError::Op(OpError::Invalid(format!("{} is not a file", path.display())))),
            Err(e) => return Err(NodeError::Op(OpError::Invalid(format!("{}: {e}", path.display())))),
        }
        // Refuse an unknown target before sealing gigabytes for it.
        let resolved = self.resolve_for_file(target)?;
        let offline = match resolved {
            None => true,
            Some(peer) => !self.status().await?.connected_peers.contains(&peer.to_string()),
        };
        let mut state = FileState::Shared;
        let mut error = None;
        let (shared, sources) = if offline {
            let (shared, sources, refusals) = self.share_file_via_media_nodes(path).await?;
            if !sources.is_empty() {
                state = FileState::Uploaded;
            } else if !refusals.is_empty() {
                // Kept with the file for `kith files`: the recipient can still fetch
                // it from us once both are online.
                error = Some(refusals.join("; "));
            }
            (shared, sources)
        } else {
            (self.share_file(path).await?, Vec::new())
        };
        let file = kith_storage::FileRef {
            blob: shared.id.0,
            key: shared.key.0,
            media_type: crate::files::media_type_of(&name).to_owned(),
            name,
            size: shared.size,
            sources,
        };
        let attachment = Attachment { file, state, path: Some(path.display().to_string()), error };
        self.ask(|reply| {
            Command::Send(SendRequest {
                contact: target.to_owned(),
                text: caption.to_owned(),
                attachment: Some(Box::new(attachment)),
                link: None,
                reply,
            })
        })
        .await?
    }

    /// The peer a file for `target` goes to, `None` for a group.
    fn resolve_for_file(&self, target: &str) -> Result<Option<PeerId>, NodeError> {
        match crate::ops::resolve_target(&self.store, target)? {
            crate::ops::Target::Contact(contact) => Ok(Some(contact.peer_id)),
            crate::ops::Target::Group(_) => Ok(None),
        }
    }

    /// Seals the file at `path` and uploads it to each pinned relay that takes it
    /// as a media node: pushed while it is sealed to those that admit a push, pulled
    /// afterwards by the others (and by those whose push failed on the way). Returns
    /// the file, the media nodes that hold it, and why each other media node refused
    /// (a relay without the media role is left out silently).
    async fn share_file_via_media_nodes(
        &self,
        path: &Path,
    ) -> Result<(SharedFile, Vec<kith_storage::FileSource>, Vec<String>), NodeError> {
        let size = std::fs::metadata(path).map_err(BlobError::Io)?.len();
        let sealed_size = crate::blob::sealed_size_of(size);
        let control = self.blobs()?.control.clone();
        let nodes = self.media_nodes().await?;
        let mut pushes = Vec::new();
        let mut pull = Vec::new();
        let mut held = Vec::new();
        let mut refusals = Vec::new();
        // Admitted by all at once: a media node's wait for the first chunk starts
        // with its `ready`.
        let starts = nodes.iter().map(|(peer, _)| crate::blob::media::Push::start(&control, *peer, sealed_size));
        for ((peer, addr), started) in nodes.iter().zip(futures::future::join_all(starts).await) {
            match started {
                Ok(push) => pushes.push(push),
                Err(e) if e.is_refusal() => refusals.push(format!("media node {peer}: {e}")),
                // Not offered yet, busy, a media node that predates pushes: it
                // pulls once the file is sealed, with the pull's retry.
                Err(e) => {
                    tracing::debug!(media = %peer, error = %e, "no push to a media node; it will pull");
                    pull.push((*peer, addr.clone()));
                }
            }
        }
        let shared = if pushes.is_empty() {
            self.share_file(path).await?
        } else {
            let every = self.blobs()?.progress_every;
            let mut progress =
                sending::Progress::new(self.events.clone(), path.display().to_string(), size, SendingPhase::Uploading, every);
            let (chunks, queued) = mpsc::channel(pushing::QUEUE);
            let sealing = self.share_file_each(path, move |_, chunk| {
                // A closed queue means every push is over: sealing goes on regardless.
                let _ = chunks.blocking_send(chunk);
                Ok(())
            });
            let (shared, (pushes, failed)) = tokio::join!(sealing, pushing::drive(pushes, queued, &mut progress));
            let shared = shared?;
            let address = |peer: PeerId| nodes.iter().find(|(p, _)| *p == peer).map(|(_, a)| a.clone());
            let mut again = failed;
            for (peer, result) in pushing::finish(pushes, shared.id).await {
                match result {
                    Ok(_) => {
                        let addrs = address(peer).into_iter().collect();
                        held.push(kith_storage::FileSource { peer_id: peer, addrs });
                    }
                    Err(e) => {
                        tracing::debug!(media = %peer, error = %e, "a push to a media node was not held; it will pull");
                        again.push(peer);
                    }
                }
            }
            pull.extend(again.into_iter().filter_map(|peer| Some((peer, address(peer)?))));
            shared
        };
        let every = self.blobs()?.progress_every;
        let progress = sending::Progress::new(self.events.clone(), path.display().to_string(), size, SendingPhase::Uploading, every);
        let (pulled, pull_refusals) = self.upload_to_media_nodes(shared.id, &progress, pull).await;
        held.extend(pulled);
        refusals.extend(pull_refusals);
        Ok((shared, held, refusals))
    }

    /// The pinned relays, each reached (connected, if it can be) and with its peer id.
    async fn media_nodes(&self) -> Result<Vec<(PeerId, Multiaddr)>, NodeError> {
        let mut nodes = Vec::new();
        for relay in self.status().await?.relays {
            let Ok(addr) = relay.parse::<Multiaddr>() else { continue };
            let Some(peer) = relay_peer(&addr) else { continue };
            let (tx, rx) = oneshot::channel();
            self.commands.send(Command::Reach(peer, vec![addr.clone()], tx)).await.map_err(|_| NodeError::Stopped)?;
            let _ = rx.await;
            nodes.push((peer, addr));
        }
        Ok(nodes)
    }

    /// Uploads blob `id` to each of the media `nodes` by pull; returns those that
    /// hold it, and why each other media node refused (a relay without the media
    /// role is left out silently). `progress` hears how much each has pulled.
    async fn upload_to_media_nodes(
        &self,
        id: BlobId,
        progress: &sending::Progress,
        nodes: Vec<(PeerId, Multiaddr)>,
    ) -> (Vec<kith_storage::FileSource>, Vec<String>) {
        let mut held = Vec::new();
        let mut refusals = Vec::new();
        // Without a blob store there is nothing to upload: every try fails at once.
        let retry = self.blobs().map_or(Duration::ZERO, |b| b.upload_retry);
        for (peer, addr) in nodes {
            // One more try after a moment for what passes (a connection being
            // replaced, a busy node); refusals stand.
            let mut result = self.upload_watched(peer, id, progress.fresh()).await;
            if let Err(NodeError::Upload(e)) = &result
                && e.is_transient()
            {
                tokio::time::sleep(retry).await;
                result = self.upload_watched(peer, id, progress.fresh()).await;
            }
            match result {
                Ok(()) => held.push(kith_storage::FileSource { peer_id: peer, addrs: vec![addr] }),
                Err(NodeError::Upload(crate::blob::media::UploadError::NotOffered)) => {}
                Err(e) => {
                    tracing::warn!(relay = %peer, error = %e, "a media node did not take a file");
                    refusals.push(format!("media node {peer}: {e}"));
                }
            }
        }
        (held, refusals)
    }

    /// [`NodeHandle::upload_blob`], telling `progress` how much of the file the media
    /// node has pulled so far (counted where this node serves it).
    async fn upload_watched(&self, media: PeerId, id: BlobId, mut progress: sending::Progress) -> Result<(), NodeError> {
        let size = progress.size();
        let watch = self.blobs()?.uploads.watch(media, id);
        progress.report(0);
        let upload = self.upload_blob(media, id);
        tokio::pin!(upload);
        // `interval` panics on zero, which a test may set to report every change.
        let mut ticks = tokio::time::interval(progress.every().max(Duration::from_millis(1)));
        let result = loop {
            tokio::select! {
                result = &mut upload => break result,
                _ = ticks.tick() => progress.report(watch.plain_served(size)),
            }
        };
        if result.is_ok() {
            progress.report(size);
        }
        result
    }

    /// Files this node sent and received, oldest first; only those of `target`'s
    /// conversation when given.
    pub fn files(&self, target: Option<&str>) -> Result<Vec<FileEntryView>, NodeError> {
        Ok(crate::ops::files(&self.store, &self.peer_id, target)?)
    }

    /// The file whose id starts with `prefix` (at least 8 hex characters).
    pub fn file(&self, prefix: &str) -> Result<kith_storage::FileRecord, NodeError> {
        let invalid = |m: String| NodeError::Op(OpError::Invalid(m));
        if prefix.len() < 8 || !prefix.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(invalid(format!("{prefix:?} is not a file id (8 to 64 hex characters)")));
        }
        let mut found = self.store.files().find(prefix).map_err(OpError::from)?;
        match found.len() {
            0 => Err(NodeError::Op(OpError::UnknownFile(prefix.to_owned()))),
            1 => Ok(found.remove(0)),
            n => Err(invalid(format!("{n} files have ids starting with {prefix}; give more of it"))),
        }
    }

    /// Fetches the file whose id starts with `prefix` (whatever its size), and
    /// saves a copy at `out` when given. With `wait`, answers once it is complete
    /// and saved; otherwise at once, with the file as it stands.
    pub async fn get_file(&self, prefix: &str, out: Option<PathBuf>, wait: bool) -> Result<FileEntryView, NodeError> {
        let record = self.file(prefix)?;
        let blobs = self.blobs()?;
        let (tx, rx) = oneshot::channel();
        let waiter = wait.then_some(tx);
        let held = matches!(record.state, FileState::Complete | FileState::Shared | FileState::Uploaded);
        blobs.downloads.want(downloads::Want { blob: record.blob, save_to: out, waiter }).await?;
        if wait || held {
            if !wait {
                return Ok(FileEntryView::from(&record));
            }
            return rx.await.map_err(|_| NodeError::Stopped)?;
        }
        Ok(FileEntryView::from(&self.file(prefix)?))
    }

    /// Stop the node: pending writes are flushed before this returns.
    pub async fn shutdown(&self) {
        // Calls first: they tell their peers and write their history through the actor.
        let _ = self.calls.ask(|reply| crate::call::manager::Input::Shutdown { reply }).await;
        let _ = self.ask(Command::Shutdown).await;
    }
}

/// The IP addresses calls offer media on: those the node listens on (libp2p reports
/// concrete interface addresses for a wildcard listener), loopback when it has none.
fn media_addrs(listen_addrs: &[Multiaddr]) -> Vec<std::net::IpAddr> {
    let mut ips = crate::call::media_ips(listen_addrs);
    if ips.is_empty() {
        ips.push(std::net::IpAddr::from([127, 0, 0, 1]));
    }
    ips
}

/// Start a node: build the swarm, listen, and run the actor on the current runtime.
/// Returns when every listen address is bound.
pub async fn start(mut config: NodeConfig, store: Store) -> Result<Started, StartError> {
    config.display_name = profiles::name_we_go_by(&store, &config.identity.peer_id(), config.display_name.take());
    let (commands_tx, commands_rx) = mpsc::channel(COMMAND_QUEUE);
    // A broadcast channel of capacity 0 would panic.
    let (events_tx, _) = broadcast::channel(config.timers.event_buffer.max(1));
    let peer_id = config.identity.peer_id();
    let files = config.files.clone();
    let download_retry = (config.timers.download_retry_initial, config.timers.download_retry_max);
    let sweep_spacing = config.timers.file_sweep_spacing;
    let (upload_retry, progress_every) = (config.timers.upload_retry, config.timers.file_progress_every);
    let call_timers = config.timers.calls.clone();
    let search_every = config.timers.search_catch_up;
    let me = config.identity.peer_id();
    let (actor, listen_addrs) =
        actor::Actor::build(config, store.clone(), commands_rx, events_tx.clone()).await?;
    let blobs = match files {
        None => None,
        Some(files) => {
            let dir = &files.blob_dir;
            let blob_store =
                Arc::new(BlobStore::open(dir).map_err(|e| StartError::Build(format!("blob store {}: {e}", dir.display())))?);
            let mut control = actor.blob_control();
            let incoming = control.accept(transfer::PROTOCOL).map_err(|e| StartError::Build(e.to_string()))?;
            let counters = Arc::new(downloads::Counters::default());
            let uploads = sending::Uploads::default();
            let (served, watched) = (counters.clone(), uploads.clone());
            let count = Arc::new(move |peer: &PeerId, id: &BlobId, n: u64| {
                served.served.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                watched.served(peer, id, n);
            });
            // Ends with the swarm, when the actor stops.
            tokio::spawn(transfer::serve_counted(blob_store.clone(), incoming, count));
            let downloads = downloads::start(downloads::Context {
                store: store.clone(),
                blobs: blob_store.clone(),
                control: control.clone(),
                commands: commands_tx.clone(),
                events: events_tx.clone(),
                config: files,
                retry: download_retry,
                progress_every,
                sweep_spacing,
                me,
                counters: counters.clone(),
            });
            Some(Blobs {
                store: blob_store,
                control,
                downloads,
                counters,
                uploads,
                upload_retry,
                progress_every,
            })
        }
    };
    let calls = {
        let mut control = actor.blob_control();
        let incoming = control.accept(crate::call::signal::PROTOCOL).map_err(|e| StartError::Build(e.to_string()))?;
        crate::call::manager::start(
            crate::call::manager::Context {
                store: store.clone(),
                grants: crate::call::turn::Keeper::start(control.clone(), commands_tx.clone()),
                control,
                commands: commands_tx.clone(),
                events: events_tx.clone(),
                media: kith_call::MediaConfig { bind: media_addrs(&listen_addrs), ..Default::default() },
                timers: call_timers,
                me,
            },
            incoming,
        )
    };
    // Opening creates files and fsyncs: the blocking pool's work, not a worker's.
    let opening = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || crate::search::open_index(&store)).await
    };
    let opened = opening.unwrap_or_else(|e| Err(OpError::Search(format!("opening the index panicked: {e}"))));
    let search = match opened {
        Ok(index) => {
            let index = Arc::new(index);
            let commands = commands_tx.clone();
            crate::search::keep_up(index.clone(), store.clone(), search_every, move || commands.is_closed());
            Ok(index)
        }
        Err(e) => {
            tracing::warn!(error = %e, "full-text search is off: its index does not open");
            Err(e.to_string())
        }
    };
    let stopped = tokio::spawn(actor.run());
    Ok(Started {
        handle: NodeHandle { commands: commands_tx, events: events_tx, store, peer_id, blobs, calls, search },
        listen_addrs,
        stopped,
    })
}
