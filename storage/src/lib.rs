//! kith's local data model and its persistence: messages, their delivery
//! states and the outbox in an append-only message log of our own, the small
//! tables in [sled].
//!
//! A [`Store`] is one open database. Its handles — [`Contacts`],
//! [`Conversations`], [`Messages`], [`Outbox`], [`Groups`], [`Settings`],
//! [`Invites`], [`Files`], [`Mutes`], [`Drafts`], [`GroupReceipts`], [`Profiles`] — each cover one logical table; operations whose
//! invariants span tables are methods of [`Store`]. No sled type appears in
//! the API: sled 0.34 is beta and its on-disk format will change, so the crate
//! stays replaceable.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! use kith_storage::*;
//!
//! let store = Store::open(&dir.path().join("db"))?;
//! let conv = ConversationId::from_bytes([1; 16]); // callers derive ids
//! let kind = ConversationKind::Direct { peer_id: "12D3KooWexample".into() };
//! store.conversations().get_or_create(conv, kind, 1_700_000_000_000)?;
//! let msg = Message {
//!     id: MessageId::from_bytes([7; 16]), // callers supply randomness
//!     conversation: conv,
//!     author: "12D3KooWexample".into(),
//!     lamport: 1,
//!     sent_at_ms: 1_700_000_000_000,
//!     received_at_ms: 1_700_000_000_100,
//!     text: "hi".into(),
//!     state: MessageState::Delivered,
//!     direction: Direction::Incoming,
//!     file: None, // or the file it carries
//!     link: None, // or the message it answers or changes
//! };
//! // Durable when it returns: now the sender may be acknowledged.
//! assert_eq!(store.insert_incoming_batch(&[msg.clone()])?, [Inserted::New]);
//! assert_eq!(store.insert_incoming_batch(&[msg])?, [Inserted::Duplicate]);
//! assert_eq!(store.conversations().get(conv)?.map(|c| c.unread), Some(1));
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//!
//! A message is identified by its author and its id (an id alone is chosen by
//! an author, so another author could reuse it). Messages live in the message
//! log (`messages.log` in the database directory): one checksummed frame per
//! write call, all or nothing across a crash, with every index — each
//! conversation in `(lamport, id, author digest)` order, lookups by (author,
//! id) and by id alone, the unread set, the conversation counters, the outbox
//! — held in memory and rebuilt at open from fixed-size record headers. Texts
//! are read from the file only when asked for. The ratchet's state
//! ([`RatchetState`]) is kept there too, as key/value records. docs/PROTOCOL.md ("The local
//! store") describes the format and what a crash at each point does.
//!
//! The sled trees use big-endian keys, so byte order is numeric order; values
//! are CBOR. Deleted messages leave tombstones there for as long as a replay
//! could bring them back (see [`REPLAY_WINDOW`]). A `meta` tree records the
//! schema version ([`SCHEMA_VERSION`]), checked on [`Store::open`], which
//! migrates older databases.
//!
//! # Durability
//!
//! These calls flush (fsync) before returning `Ok`, so their effects survive a
//! crash from then on:
//!
//! - [`Store::append_outgoing`]
//! - [`Store::insert_incoming_batch`] (one flush per batch: acknowledge the
//!   batch to peers only after it returns; a refused message is never
//!   stored, so it may be acknowledged as well)
//! - [`Store::mark_read`]
//! - [`Store::flush`]
//!
//! Everything else — [`Store::stage_outgoing`], [`Store::stage_incoming`], [`Store::stage_read`], [`Store::set_message_state`], [`Messages::insert`],
//! [`Conversations::get_or_create`]/[`remove`](Conversations::remove), and
//! every `put`, `set`, `remove`, `create`, `redeem`, `set_state` and
//! `purge_expired` of the table handles — is atomic but **not** flushed: a
//! crash may lose it (never half-applied). The message log's writes reach the
//! kernel at once, so a `kill -9` of the process alone loses none of them;
//! sled holds its trees' writes in memory until its background thread writes
//! them out (every 500 ms), so a `kill -9` may lose the last of those. Call
//! [`Store::flush`] where a write must be durable, e.g. after a batch of state
//! changes: it ends with an `fdatasync` of both sled's file and the log
//! ([`engine::SledDb::flush`] says why sled's own flush is not enough). (A conversation's removal
//! and its messages' tombstones are one sled transaction, flushed before the
//! log forgets the messages.
//! [`Store::prune_tombstones`] deletes tombstones one at a time, none of them
//! still needed, so a crash part-way is harmless.)
//!
//! # Errors
//!
//! [`OpenError`] says why a database cannot be opened (I/O, locked, corrupt,
//! foreign, too new); [`StoreError`] covers operations. A value that fails to
//! decode is [`StoreError::Corrupt`], never a panic; a message log that cannot
//! be read or written is [`StoreError::Io`].

mod calls;
mod codec;
mod contacts;
pub mod engine;
mod conversations;
mod durable;
mod error;
mod files;
mod follow;
mod groups;
mod invites;
mod keys;
mod messages;
mod migrate;
mod msglog;
mod outbox;
mod peer;
mod prefs;
mod profiles;
mod ratchet;
mod receipts;
mod replay;
mod schema;
mod sled_blobs;
pub mod seqlog;
mod settings;
mod store;
mod tickets;
mod types;

pub use calls::{CallRecord, Calls, MAX_CALL_RECORDS};
pub use contacts::{Contact, ContactState, Contacts};
/// The peer id and address types contacts are stored with (libp2p's own).
pub use libp2p_identity::PeerId;
pub use multiaddr::Multiaddr;
pub use conversations::{Conversation, ConversationKind, Conversations};
pub use error::{DbError, OpenError, StoreError};
pub use groups::{Group, Groups, MAX_KEY_GENERATIONS, Member, PendingKey, PendingMessage, Role};
pub use files::{BLOB_ID_LEN, FileClaim, FileRecord, FileRef, FileSource, FileState, Files, MAX_FILE_CLAIMS};
pub use follow::{CHECK_LEN, LogCursor, LogEvent, MessagePlace};
pub use invites::Invites;
pub use tickets::{DepositTickets, HeldTicket, TICKET_SIGNATURE_LEN};
pub use msglog::LogCompaction;
/// Zeros the message log keeps written ahead of its last frame, at most (docs/PROTOCOL.md,
/// *Zeros written ahead*): disk use the log has beyond its frames.
pub use msglog::PREALLOCATE as LOG_WRITE_AHEAD;
pub use messages::{Annotations, Direction, Inserted, Link, MAX_EMOJI_LEN, MAX_REACTIONS_PER_AUTHOR, Message, MessageState, Messages, Placed, Reaction, Usage, Version, valid_emoji};
pub use outbox::{Outbox, OutboxEntry, Recipient};
pub use prefs::{Drafts, MAX_DRAFT_LEN, Mute, Mutes};
pub use profiles::Profiles;
pub use ratchet::{Change as RatchetChange, RATCHET_KEY_FILE, RATCHET_KEY_FILE_CAPACITY, RatchetState, Record as RatchetRecord};
pub use receipts::{GroupReceipts, Reached, Tally};
pub use replay::{ContactPayload, MAX_CLOCK_SKEW, REPLAY_WINDOW, Refusal};
pub use peer::text as peer_text;
pub use schema::SCHEMA_VERSION;
pub use settings::Settings;
pub use store::{OpenOptions, Store};
pub use types::{ConversationId, GroupId, ID_LEN, IdParseError, MessageId};
