//! Forward secrecy for 1:1: an Olm double ratchet (vodozemac) inside the envelope.
//!
//! # Layers
//! The outer layer stays the sealed envelope of [`crate::envelope`]: it authenticates
//! the sender's peer id and hides who wrote to whom from relays. Inside it, between
//! accepted contacts, a payload travels as [`crate::payload::Payload::Ratcheted`]: an
//! Olm message whose plaintext is the real payload. Olm (Matrix's double ratchet,
//! in vodozemac's audited implementation) advances a symmetric chain per message
//! (forward secrecy) and a Diffie-Hellman ratchet per round trip (post-compromise
//! security); every message key is deleted once used.
//!
//! # Starting a session
//! Each node has an Olm account: an identity key (Curve25519) and one-time keys. A
//! node *offers* each accepted contact its identity key, signed by its ed25519
//! identity, and one one-time key made for that contact alone
//! ([`crate::payload::Payload::Prekeys`], sent through the outbox, so it waits in
//! relays like any message). The contact's first ratcheted message is an Olm pre-key
//! message built from them: no round trip. The contact's identity key is pinned; one
//! that changes is refused until a new signed offer replaces it.
//!
//! Both sides may start a session at once; each keeps up to [`SESSIONS_PER_PEER`]
//! and sends with the one that most recently opened a message, so both converge on
//! one. A side that cannot open a message (state lost, a restored device) offers new
//! keys with `reset`, and the other side starts again.
//!
//! # Durability
//! A session's state is written (not flushed) after every seal and open. The sender
//! flushes it before a sealed envelope leaves, so a crash never seals two messages
//! with one key; the receiver flushes it with the message it opened, and a crash
//! before that flush leaves an older state that opens the sender's retry again.
//!
//! # Sending ahead
//! A sealed message may also leave before the flush that makes its state durable,
//! so that the sender's disk write overlaps the network and the receiver's. A
//! crash in between would leave the stored state behind keys already used, and
//! the next seal would use one of them again. So a contact is first *marked*
//! ([`Ratchets::mark_sends_ahead`]), and the mark made durable, before anything
//! leaves that way; at most [`MAX_SENT_AHEAD`] such messages per contact wait for
//! their flush at once (the caller keeps that bound). A start that finds a mark
//! (the node stopped without clearing it: a crash) advances every session of
//! that contact by [`MAX_SENT_AHEAD`] keys before sealing anything, so no key a
//! lost message used is used again. A clean stop clears the marks
//! ([`Ratchets::clear_sends_ahead`]); one record says whether any mark is set,
//! so a start after a clean stop decodes no peer record. A message sealed on a sending chain whose
//! start is not durable yet ([`Ratchets::take_new_chains`]) waits for its flush: a
//! chain started again after a crash is one the contact cannot follow.
//!
//! # State on disk
//! The records live in the store's message log, which is append-only: a record
//! replaced (a session after the next message) stays in the file until a
//! compaction, and with it chain keys of messages already read. So records are
//! sealed under a random *state key* (see [`keys`]) kept in the store's key file,
//! which is overwritten in place and itself sealed under a key derived from the
//! identity's Ed25519 seed: the database alone opens nothing, and the X25519 key
//! can rotate without losing sessions. A *roll* ([`Ratchets::roll`]) makes a new
//! state key, re-seals every live record under it and deletes the old key, so the
//! records it replaced no longer open with anything left on disk. It runs at every
//! load and, while state is written, every [`STATE_ROLL`] (the node's
//! `ratchet_state_roll` timer): that is how long a replaced record stays readable
//! to someone who takes the device's keys and files.
//!
//! A roll in steps, each one leaving every live record readable after a crash:
//! write the key file {K, K'} (synced); re-seal every live record under K' in one
//! batch; sync the store; write the key file {K'} (synced).
//!
//! # Copies
//! One envelope may arrive by several paths (a direct send and two relays). Its key
//! is gone after the first, so every opened message leaves a digest
//! ([`Ratchets::open`] answers a copy with [`RatchetError::Duplicate`]); digests
//! older than [`SEEN_RETENTION`] are pruned at start and at every roll, so a node
//! that runs for months holds the digests of the retention window only. A
//! digest's value (its time, 8 bytes) is held in the store's memory, so a
//! pruning reads from the disk only the few digests that hold a plaintext.

mod keys;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::time::{Duration, Instant};

use kith_storage::{RatchetChange, RatchetState, StoreError};
use libp2p::PeerId;
use serde::{Deserialize, Serialize};
use vodozemac::Curve25519PublicKey;
use vodozemac::olm::{Account, AccountPickle, DecryptionError, OlmMessage, Session, SessionConfig, SessionCreationError, SessionPickle};
use zeroize::Zeroizing;

use crate::identity::{self, Identity};
use crate::wire;
use keys::StateKeys;

/// Sessions kept per peer (the newest-used first); older ones are dropped.
pub const SESSIONS_PER_PEER: usize = 4;

/// How long after a contact's first ratcheted message its envelopes sealed the old
/// way (no ratchet) are still opened: mail sealed before the upgrade may wait that
/// long in relays. After it, such payloads are refused.
pub const LEGACY_GRACE: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// How long digests of opened messages are kept to recognise copies: the replay
/// window, past which a copied text is refused as stale anyway (the other payloads
/// are safe to apply twice).
pub const SEEN_RETENTION: Duration = kith_storage::REPLAY_WINDOW;

/// How often, by default, the key that seals the ratchet state on disk is replaced
/// while state is written (see the module docs, "State on disk"): the longest a
/// replaced record stays readable with what is left on disk.
pub const STATE_ROLL: Duration = Duration::from_secs(10 * 60);

/// Most messages to one contact that may leave before the state that sealed them is
/// durable (see the module docs, "Sending ahead"); after a crash, the sessions of a
/// contact marked for that skip this many keys.
pub const MAX_SENT_AHEAD: usize = 64;

/// Olm message types on the wire ([`OlmMessage::to_parts`]).
pub const PRE_KEY_MESSAGE: u8 = 0;
/// See [`PRE_KEY_MESSAGE`].
pub const NORMAL_MESSAGE: u8 = 1;

const OFFER_DOMAIN: &[u8] = b"kith ratchet offer v1\0";
const ACCOUNT_KEY: &[u8] = b"account";
/// Present while any contact is marked for sending ahead, so that a start after a
/// clean stop reads no peer record to find marks.
const MARKED_KEY: &[u8] = b"marked";
const PEER_PREFIX: &[u8] = b"p/";
const SEEN_PREFIX: &[u8] = b"d/";
const MAX_RECORD_LEN: usize = 1 << 20;

/// Why a ratchet message did not open, or state could not be kept.
#[derive(Debug, thiserror::Error)]
pub enum RatchetError {
    /// A copy of a message already opened (another path brought it first).
    #[error("a copy of a ratchet message already opened")]
    Duplicate,
    /// No session with the sender opens it (lost state, or a session never made).
    #[error("no ratchet session with the sender opens this message")]
    NoSession,
    /// Its key was used or dropped (too far out of order).
    #[error("the key of ratchet message {0} is gone (used, or dropped while skipping)")]
    KeyGone(u64),
    /// It skips more messages than a session will derive keys for.
    #[error("ratchet message skips {0} messages, more than the bound of {1}")]
    TooFarAhead(u64, u64),
    /// A pre-key message names a one-time key we do not hold (used, or never ours).
    #[error("the one-time key a pre-key message names is unknown or used")]
    UnknownPrekey,
    /// The sender's Olm identity key is not the one pinned for it.
    #[error("the sender's ratchet identity key is not the one it offered")]
    IdentityMismatch,
    /// A signed offer whose signature does not verify.
    #[error("a ratchet key offer not signed by its sender")]
    Forged,
    /// Bytes that are no Olm message or key.
    #[error("malformed ratchet message: {0}")]
    Malformed(String),
    /// Reading or writing the state failed.
    #[error("ratchet state: {0}")]
    State(String),
}

/// Our keys for one contact to start a session with (see the module docs).
#[derive(Clone, PartialEq, Eq)]
pub struct Offer {
    /// Our Olm identity key.
    pub identity: [u8; 32],
    /// Our ed25519 identity's signature over all the other fields.
    pub signature: [u8; 64],
    /// A one-time key made for this contact.
    pub one_time: [u8; 32],
    /// Whether the receiver should drop its sessions with us (our state was lost).
    pub reset: bool,
    /// When it was made (µs, strictly increasing per node): an offer no newer than
    /// the last one taken from its sender is a replay and changes nothing.
    pub issued_us: u64,
}

impl fmt::Debug for Offer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Offer").finish_non_exhaustive()
    }
}

/// What a contact's offer changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learned {
    /// Kept for the next session (none was running, or the contact reset).
    Prekey,
    /// A session is running and the contact did not ask for a reset: ignored.
    Ignored,
    /// No newer than an offer already taken from this sender (a replay): ignored.
    Stale,
    /// A different identity key than the one pinned: sessions dropped, the new key
    /// pinned, our keys to be offered again. The caller warns the user.
    IdentityChanged,
}

/// What one peer's record holds, decoded.
#[derive(Default)]
struct PeerState {
    identity: Option<[u8; 32]>,
    prekey: Option<[u8; 32]>,
    /// Newest-used first; [`Self::sessions`]`[0]` seals.
    sessions: Vec<Session>,
    offered: bool,
    since_ms: Option<u64>,
    /// `issued_us` of the newest offer taken from the peer.
    offer_us: u64,
    /// Marked: messages may leave before the state that sealed them is durable.
    sends_ahead: bool,
}

#[derive(Serialize, Deserialize)]
struct PeerRecord {
    identity: Option<[u8; 32]>,
    prekey: Option<[u8; 32]>,
    sessions: Vec<SessionPickle>,
    offered: bool,
    since_ms: Option<u64>,
    #[serde(default)]
    offer_us: u64,
    #[serde(default)]
    sends_ahead: bool,
}

/// The node's ratchet state: its Olm account and a cache of peers' sessions over
/// the store (see the module docs). Not `Sync`; lives in the node actor.
pub struct Ratchets {
    account: Account,
    /// The keys that seal and open the records.
    keys: StateKeys,
    /// The key that seals the key file.
    file_key: keys::Key,
    peers: HashMap<PeerId, PeerState>,
    dirty: HashSet<PeerId>,
    account_dirty: bool,
    /// `issued_us` of our newest offer (offers are stamped strictly increasing).
    last_issued_us: u64,
    /// Digests of opened messages to write: with the plaintext when it is held for
    /// a retry (see [`Ratchets::hold`]).
    seen: Vec<([u8; 16], Option<Vec<u8>>)>,
    store: RatchetState,
    /// Whether records were written (and so others replaced) since the last roll.
    written_since_roll: bool,
    /// When the last roll began (also one that failed: it is tried again an
    /// interval later, not at once).
    last_roll: Instant,
    roll_every: Duration,
    /// Contacts found marked at load (see the module docs, "Sending ahead"), whose
    /// sessions were advanced.
    marked_at_load: Vec<PeerId>,
    /// Every contact marked, in the store or about to be.
    marked: HashSet<PeerId>,
    /// Whether [`MARKED_KEY`] is in the store, and what the next [`Self::persist`]
    /// changes it to.
    marked_key: (bool, Option<bool>),
    /// Contacts for which a seal may have started a new sending chain (a new
    /// session, or a ratchet step after a message opened) since the last
    /// [`Self::take_new_chains`].
    new_chains: HashSet<PeerId>,
    /// Contacts whose sealing chain a seal has used since the load, with no message
    /// opened since: their next seal continues that chain.
    chain_in_use: HashSet<PeerId>,
}

impl fmt::Debug for Ratchets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ratchets").field("peers", &self.peers.len()).finish_non_exhaustive()
    }
}

impl Ratchets {
    /// Loads the state of `identity`'s node from `store` (making an account on first
    /// use), prunes old digests and rolls the state key (see [`Self::roll`]; state
    /// sealed the way it was before state keys is read and re-sealed here). State
    /// that does not open with `identity`'s keys (another identity's, or a key file
    /// lost) is dropped with a warning and the node starts afresh: contacts get new
    /// keys and see the change, as after any lost state. An identity restored with
    /// a new X25519 key keeps its sessions (the state keys depend on its Ed25519 seed
    /// alone), unless its state was still sealed the old way.
    ///
    /// # Errors
    /// [`RatchetError::State`] if the store cannot be read, or the roll fails with no
    /// state key to seal with (a roll that fails otherwise is logged and tried again
    /// later).
    pub fn load(store: RatchetState, identity: &Identity, now_ms: u64) -> Result<Ratchets, RatchetError> {
        let mut ratchets = Self::load_unrolled(store, identity)?;
        ratchets.skip_past_sent_ahead(now_ms)?;
        if let Err(e) = ratchets.roll(Instant::now(), now_ms) {
            if ratchets.keys.current_epoch().is_none() {
                return Err(e);
            }
            tracing::error!(error = %e, "replacing the ratchet state key failed; trying again later");
        }
        Ok(ratchets)
    }

    /// [`Self::load`] without the roll.
    fn load_unrolled(store: RatchetState, identity: &Identity) -> Result<Ratchets, RatchetError> {
        let file_key = keys::file_key(identity);
        let keys = match store.read_key_file() {
            Ok(Some(bytes)) => StateKeys::from_file(&file_key, &bytes, || keys::legacy_key(identity)),
            // Before state keys: sealed under the end-to-end key, to be read once.
            Ok(None) => Ok(StateKeys::legacy_only(Some(keys::legacy_key(identity)))),
            Err(e @ StoreError::Corrupt { .. }) => Err(state(e)),
            Err(e) => return Err(state(e)),
        };
        let keys = keys.and_then(|keys| {
            // A key file with no account is as good as none: nothing to lose.
            match store.get(ACCOUNT_KEY).map_err(state)? {
                Some(bytes) => load_account(&keys, &bytes).map(|account| (keys, Some(account))),
                None => Ok((keys, None)),
            }
        });
        let (keys, account) = match keys {
            Ok(loaded) => loaded,
            Err(e) => {
                tracing::warn!(error = %e, "the ratchet state does not open with this identity's keys; starting new sessions");
                let all: Vec<RatchetChange> = store.scan(b"").map_err(state)?.into_iter().map(|(key, _)| (key, None)).collect();
                store.write(&all).map_err(state)?;
                (StateKeys::legacy_only(None), None)
            }
        };
        let account_dirty = account.is_none();
        let ratchets = Ratchets {
            account: account.unwrap_or_else(Account::new),
            keys,
            file_key,
            peers: HashMap::new(),
            dirty: HashSet::new(),
            account_dirty,
            last_issued_us: 0,
            seen: Vec::new(),
            store,
            written_since_roll: false,
            last_roll: Instant::now(),
            roll_every: STATE_ROLL,
            marked_at_load: Vec::new(),
            marked: HashSet::new(),
            marked_key: (false, None),
            new_chains: HashSet::new(),
            chain_in_use: HashSet::new(),
        };
        Ok(ratchets)
    }

    /// Rolls the state key every `every` while state is written, instead of every
    /// [`STATE_ROLL`].
    #[must_use]
    pub fn with_roll_interval(mut self, every: Duration) -> Ratchets {
        self.roll_every = every;
        self
    }

    /// Whether a roll is due at `now`: state was written since the last one, which
    /// began at least the roll interval ago.
    pub fn roll_due(&self, now: Instant) -> bool {
        self.next_roll().is_some_and(|at| now >= at)
    }

    /// When the next roll is due, if any state was written since the last one.
    pub fn next_roll(&self) -> Option<Instant> {
        self.written_since_roll.then(|| self.last_roll + self.roll_every)
    }

    /// Replaces the key that seals the state on disk (see the module docs, "State on
    /// disk"): a new key K' is added to the key file (synced), every live record is
    /// re-sealed under K' in one batch and the store flushed, then the key file keeps
    /// K' alone (synced). Records replaced before the roll no longer open with
    /// anything left on disk. A record that opens with no key held is dropped (it
    /// never could again). Blocks on five syncs (two per key file write, one for
    /// the records); changes not yet written by [`Self::persist`] stay pending, to
    /// be sealed under K'. First deletes the copy digests older than
    /// [`SEEN_RETENTION`] at `now_ms` (the roll's sync covers that too; a
    /// pruning that fails is logged and the roll goes on).
    ///
    /// # Errors
    /// [`RatchetError::State`] if a step fails: every live record still opens with
    /// the keys in the key file, and the next roll finishes the job.
    pub fn roll(&mut self, now: Instant, now_ms: u64) -> Result<(), RatchetError> {
        self.last_roll = now;
        // A pruning that fails must not hold the roll up: replaced session
        // records would stay readable. It is tried again at the next roll.
        if let Err(e) = self.prune_seen(now_ms) {
            tracing::warn!(error = %e, "pruning old copy digests failed; trying again at the next roll");
        }
        let opened = self.roll_begin()?;
        self.roll_reseal(&opened, |_| true)?;
        self.roll_end()
    }

    /// A roll's first step: reads every live sealed record, writes the key file with
    /// the keys they need and a new one (synced), and seals with the new one from
    /// now on. Returns the records to re-seal (and those to drop: no plaintext).
    fn roll_begin(&mut self) -> Result<Vec<Unsealed>, RatchetError> {
        let mut opened = Vec::new();
        let (mut epochs, mut legacy) = (Vec::new(), false);
        // Copy digests without a held plaintext (most records) seal nothing: their
        // values are not even read.
        for (key, value) in self.store.scan_where(b"", |key, len| len > sealed_from(key)).map_err(state)? {
            let from = sealed_from(&key);
            // The scan's filter left only values longer than their prefix.
            let Some(sealed) = value.get(from..) else { continue };
            match self.keys.open(&key, sealed) {
                Ok((plain, epoch)) => {
                    match epoch {
                        Some(epoch) if !epochs.contains(&epoch) => epochs.push(epoch),
                        Some(_) => {}
                        None => legacy = true,
                    }
                    opened.push(Unsealed { prefix: value[..from].to_vec(), plain: Some(plain), key });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "a ratchet record opens with no key held; dropping it");
                    opened.push(Unsealed { prefix: Vec::new(), plain: None, key });
                }
            }
        }
        let rolled = self.keys.rolled(&epochs, legacy);
        self.store.write_key_file(&rolled.to_file(&self.file_key)?).map_err(state)?;
        self.keys = rolled;
        Ok(opened)
    }

    /// A roll's second step: re-seals the records `opened` whose key `only` takes
    /// under the newest key, and drops those with no plaintext, in one batch.
    fn roll_reseal(&mut self, opened: &[Unsealed], only: impl Fn(&[u8]) -> bool) -> Result<(), RatchetError> {
        let mut changes: Vec<RatchetChange> = Vec::new();
        for record in opened.iter().filter(|r| only(&r.key)) {
            let value = match &record.plain {
                Some(plain) => Some([&record.prefix[..], &self.keys.seal(&record.key, plain)?].concat()),
                None => None,
            };
            changes.push((record.key.clone(), value));
        }
        self.store.write(&changes).map_err(state)
    }

    /// A roll's last step: syncs the re-sealed records, then writes the key file
    /// with the newest key alone (synced).
    fn roll_end(&mut self) -> Result<(), RatchetError> {
        self.store.flush().map_err(state)?;
        let newest = self.keys.newest_only();
        self.store.write_key_file(&newest.to_file(&self.file_key)?).map_err(state)?;
        self.keys = newest;
        self.written_since_roll = false;
        Ok(())
    }

    /// Our Olm identity key.
    pub fn identity_key(&self) -> [u8; 32] {
        self.account.curve25519_key().to_bytes()
    }

    /// Whether we offered `peer` keys already.
    pub fn offered(&mut self, peer: &PeerId) -> Result<bool, RatchetError> {
        Ok(self.peer(peer)?.offered)
    }

    /// Makes a one-time key for `peer` and returns our signed offer (with `reset`:
    /// the peer should drop its sessions with us). Written, not flushed (persist,
    /// then queue the offer, then flush: both or neither survive).
    pub fn offer(&mut self, identity: &Identity, peer: &PeerId, reset: bool) -> Result<Offer, RatchetError> {
        let created = self.account.generate_one_time_keys(1).created;
        let one_time = created.first().ok_or_else(|| RatchetError::State("no one-time key made".into()))?.to_bytes();
        self.account.mark_keys_as_published();
        self.account_dirty = true;
        let own = self.identity_key();
        self.peer(peer)?.offered = true;
        self.dirty.insert(*peer);
        let now_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        let issued_us = now_us.max(self.last_issued_us.saturating_add(1));
        self.last_issued_us = issued_us;
        let mut offer = Offer { identity: own, signature: [0; 64], one_time, reset, issued_us };
        offer.signature = identity.sign(&offer_signed(&offer));
        Ok(offer)
    }

    /// Takes `peer`'s offer (checking its signature and that it is newer than the
    /// last one taken): see [`Learned`].
    pub fn learn(&mut self, peer: &PeerId, offer: &Offer) -> Result<Learned, RatchetError> {
        identity::verify_signature(peer, &offer_signed(offer), &offer.signature).map_err(|_| RatchetError::Forged)?;
        let state = self.peer(peer)?;
        if offer.issued_us <= state.offer_us {
            return Ok(Learned::Stale);
        }
        state.offer_us = offer.issued_us;
        let learned = match state.identity {
            Some(pinned) if pinned != offer.identity => {
                state.sessions.clear();
                Learned::IdentityChanged
            }
            _ if offer.reset => {
                state.sessions.clear();
                Learned::Prekey
            }
            _ if !state.sessions.is_empty() => Learned::Ignored,
            _ => Learned::Prekey,
        };
        if learned != Learned::Ignored {
            state.identity = Some(offer.identity);
            state.prekey = Some(offer.one_time);
            if offer.reset || learned == Learned::IdentityChanged {
                // Its state is new: whatever keys we offered it before are gone with
                // the old state, so it gets new ones.
                state.offered = false;
            }
        }
        self.dirty.insert(*peer);
        Ok(learned)
    }

    /// Advances every session of each contact marked for sending ahead by
    /// [`MAX_SENT_AHEAD`] keys (see the module docs, "Sending ahead"). Written at
    /// once, so that a [`Self::rollback`] reloads the advanced sessions, not the ones
    /// behind the lost keys; not flushed, and the marks stay: a crash before a flush
    /// does it again from the same stored state.
    fn skip_past_sent_ahead(&mut self, now_ms: u64) -> Result<(), RatchetError> {
        if self.store.get(MARKED_KEY).map_err(state)?.is_none() {
            return Ok(());
        }
        self.marked_key = (true, None);
        for (key, _) in self.store.scan(PEER_PREFIX).map_err(state)? {
            let Some(peer) = key.strip_prefix(PEER_PREFIX).and_then(|id| PeerId::from_bytes(id).ok()) else { continue };
            let state = self.peer(&peer)?;
            if !state.sends_ahead {
                self.peers.remove(&peer);
                continue;
            }
            for session in &mut state.sessions {
                for _ in 0..MAX_SENT_AHEAD {
                    // A session that cannot encrypt (a contact gave it an unusable
                    // ratchet key) seals nothing, so it reuses no key either: left
                    // as it is rather than keeping the node from starting.
                    if let Err(e) = session.encrypt(b"") {
                        tracing::warn!(%peer, error = %e, "a ratchet session cannot seal; not advancing it");
                        break;
                    }
                }
            }
            self.dirty.insert(peer);
            self.marked_at_load.push(peer);
            self.marked.insert(peer);
        }
        if !self.marked_at_load.is_empty() {
            tracing::warn!(contacts = self.marked_at_load.len(), "the node did not stop cleanly while messages could leave ahead of their flush; sessions with those contacts skip the keys such messages may have used");
            self.persist(now_ms)?;
        }
        Ok(())
    }

    /// Contacts found marked for sending ahead at load: the node had not stopped
    /// cleanly, their sessions were advanced, and the caller raises their
    /// conversations' Lamport values past what may have been lost
    /// (docs/PROTOCOL.md, *Delivery*, *Sending ahead*). They stay marked.
    pub fn marked_at_load(&self) -> &[PeerId] {
        &self.marked_at_load
    }

    /// Whether `peer` is marked for sending ahead, as its state stands (written, or
    /// to be written by the next [`Self::persist`]).
    pub fn is_marked(&mut self, peer: &PeerId) -> Result<bool, RatchetError> {
        Ok(self.peer(peer)?.sends_ahead)
    }

    /// Marks `peer` for sending ahead (see the module docs). Written by the next
    /// [`Self::persist`]; nothing may leave ahead before that write is flushed.
    /// Returns whether the mark is new.
    pub fn mark_sends_ahead(&mut self, peer: &PeerId) -> Result<bool, RatchetError> {
        let state = self.peer(peer)?;
        if state.sends_ahead {
            return Ok(false);
        }
        state.sends_ahead = true;
        self.dirty.insert(*peer);
        self.marked.insert(*peer);
        if !self.marked_key.0 {
            self.marked_key.1 = Some(true);
        }
        Ok(true)
    }

    /// The contacts for which a seal may have started a new sending chain since the
    /// last call: a new session, the first seal since the load, or the first since
    /// a message from the contact opened (which makes the next seal take a ratchet
    /// step). A message sealed on a chain whose start is not durable must not leave
    /// ahead: after a crash the sender would start another chain from the same
    /// point, which the contact, having read the first, cannot follow (no key is
    /// used twice, but the session breaks and a reset follows); a new session would
    /// be lost whole, with the contact's one-time key.
    pub fn take_new_chains(&mut self) -> HashSet<PeerId> {
        std::mem::take(&mut self.new_chains)
    }

    /// Clears every mark (a clean stop: everything sealed is durable). Written by
    /// the next [`Self::persist`].
    pub fn clear_sends_ahead(&mut self) -> Result<(), RatchetError> {
        for peer in std::mem::take(&mut self.marked) {
            let state = self.peer(&peer)?;
            if state.sends_ahead {
                state.sends_ahead = false;
                self.dirty.insert(peer);
            }
        }
        if self.marked_key.0 || self.marked_key.1.is_some() {
            self.marked_key.1 = Some(false);
        }
        Ok(())
    }

    /// Whether a message to `peer` can be ratcheted now (a session, or its keys).
    pub fn ready(&mut self, peer: &PeerId) -> Result<bool, RatchetError> {
        let state = self.peer(peer)?;
        Ok(!state.sessions.is_empty() || (state.identity.is_some() && state.prekey.is_some()))
    }

    /// Seals `plaintext` for `peer`: `(message type, Olm message)`, or `None` when
    /// there is neither a session nor keys to start one. Written, not flushed: the
    /// caller flushes before the message leaves.
    pub fn seal(&mut self, peer: &PeerId, plaintext: &[u8]) -> Result<Option<(u8, Vec<u8>)>, RatchetError> {
        if !self.ready(peer)? {
            return Ok(None);
        }
        let account = &self.account;
        let Some(state) = self.peers.get_mut(peer) else { return Err(RatchetError::State("peer state vanished".into())) };
        if state.sessions.is_empty() {
            let (Some(identity), Some(prekey)) = (state.identity, state.prekey.take()) else { return Ok(None) };
            let session = account
                .create_outbound_session(
                    SessionConfig::version_1(),
                    Curve25519PublicKey::from_bytes(identity),
                    Curve25519PublicKey::from_bytes(prekey),
                )
                .map_err(|e| RatchetError::Malformed(e.to_string()))?;
            state.sessions.insert(0, session);
            self.chain_in_use.remove(peer);
        }
        let message = state.sessions[0].encrypt(plaintext).map_err(|e| RatchetError::Malformed(e.to_string()))?;
        if self.chain_in_use.insert(*peer) {
            self.new_chains.insert(*peer);
        }
        self.dirty.insert(*peer);
        let (kind, bytes) = message.to_parts();
        let kind = if kind == 0 { PRE_KEY_MESSAGE } else { NORMAL_MESSAGE };
        Ok(Some((kind, bytes)))
    }

    /// Opens an Olm message from `peer` (authenticated by the envelope around it).
    ///
    /// # Errors
    /// See [`RatchetError`]; a refused message changes no state.
    pub fn open(&mut self, peer: &PeerId, kind: u8, body: &[u8], now_ms: u64) -> Result<Vec<u8>, RatchetError> {
        self.open_digested(peer, kind, body, copy_digest(kind, body), now_ms)
    }

    /// [`Ratchets::open`] for a caller that holds the message's [`copy_digest`] already
    /// (to record it after): the digest is computed once.
    pub fn open_digested(&mut self, peer: &PeerId, kind: u8, body: &[u8], digest: [u8; 16], now_ms: u64) -> Result<Vec<u8>, RatchetError> {
        if let Some((_, held)) = self.seen.iter().rev().find(|(d, _)| *d == digest) {
            return held.clone().ok_or(RatchetError::Duplicate);
        }
        let key = seen_key(&digest);
        if let Some(value) = self.store.get(&key).map_err(state)? {
            return match value.get(8..) {
                Some(sealed) if !sealed.is_empty() => Ok(self.keys.open(&key, sealed)?.0.to_vec()),
                _ => Err(RatchetError::Duplicate),
            };
        }
        let message = OlmMessage::from_parts(usize::from(kind), body).map_err(|e| RatchetError::Malformed(e.to_string()))?;
        self.peer(peer)?;
        let Some(state) = self.peers.get_mut(peer) else { return Err(RatchetError::State("peer state vanished".into())) };
        let plaintext = match &message {
            OlmMessage::PreKey(m) => {
                let identity = m.identity_key().to_bytes();
                if state.identity.is_some_and(|pinned| pinned != identity) {
                    return Err(RatchetError::IdentityMismatch);
                }
                let existing = state.sessions.iter().position(|s| s.session_keys() == m.session_keys());
                match existing {
                    Some(at) => {
                        let plaintext = state.sessions[at].decrypt(&message).map_err(decryption)?;
                        let session = state.sessions.remove(at);
                        state.sessions.insert(0, session);
                        plaintext
                    }
                    None => {
                        let created = self
                            .account
                            .create_inbound_session(SessionConfig::version_1(), m.identity_key(), m)
                            .map_err(|e| match e {
                                SessionCreationError::MissingOneTimeKey(_) => RatchetError::UnknownPrekey,
                                SessionCreationError::Decryption(e) => decryption(e),
                                other => RatchetError::Malformed(other.to_string()),
                            })?;
                        self.account_dirty = true;
                        state.identity = Some(identity);
                        state.sessions.insert(0, created.session);
                        state.sessions.truncate(SESSIONS_PER_PEER);
                        created.plaintext
                    }
                }
            }
            OlmMessage::Normal(_) => {
                let mut failure = RatchetError::NoSession;
                let mut opened = None;
                for at in 0..state.sessions.len() {
                    match state.sessions[at].decrypt(&message) {
                        Ok(plaintext) => {
                            opened = Some((at, plaintext));
                            break;
                        }
                        // The most telling reason wins: a session that knew the chain.
                        Err(e @ (DecryptionError::MissingMessageKey(_) | DecryptionError::TooBigMessageGap(..))) => {
                            failure = decryption(e);
                        }
                        Err(_) => {}
                    }
                }
                let Some((at, plaintext)) = opened else { return Err(failure) };
                let session = state.sessions.remove(at);
                state.sessions.insert(0, session);
                plaintext
            }
        };
        state.since_ms.get_or_insert(now_ms);
        self.dirty.insert(*peer);
        self.chain_in_use.remove(peer);
        Ok(plaintext)
    }

    /// Records that the message with `digest` ([`copy_digest`]) was opened and its
    /// payload dealt with for good: a copy is answered [`RatchetError::Duplicate`].
    /// Every opened message gets this or [`Self::hold`] before the next persist,
    /// or a copy would find its key gone.
    pub fn record(&mut self, digest: [u8; 16]) {
        self.seen.push((digest, None));
    }

    /// Keeps the plaintext of an opened message whose payload could not be taken yet
    /// (its sender retries with the same sealed bytes): a copy opens to it again.
    /// Stored encrypted like the rest, until [`Self::record`] replaces it.
    pub fn hold(&mut self, digest: [u8; 16], plaintext: Vec<u8>) {
        self.seen.push((digest, Some(plaintext)));
    }

    /// Whether payloads from `peer` sealed without the ratchet are refused now: its
    /// first ratcheted message came more than `grace` ago.
    pub fn legacy_closed(&mut self, peer: &PeerId, now_ms: u64, grace: Duration) -> Result<bool, RatchetError> {
        let grace_ms = u64::try_from(grace.as_millis()).unwrap_or(u64::MAX);
        Ok(self.peer(peer)?.since_ms.is_some_and(|since| now_ms.saturating_sub(since) > grace_ms))
    }

    /// Drops every change not yet written by [`Self::persist`], so memory holds
    /// what the store holds (after a write that failed, or messages not stored).
    pub fn rollback(&mut self) {
        for peer in std::mem::take(&mut self.dirty) {
            self.peers.remove(&peer);
            self.chain_in_use.remove(&peer);
        }
        self.marked_key.1 = None;
        self.seen.clear();
        if self.account_dirty {
            match self.store.get(ACCOUNT_KEY).map_err(state).and_then(|stored| stored.map(|b| load_account(&self.keys, &b)).transpose()) {
                Ok(Some(account)) => {
                    self.account = account;
                    self.account_dirty = false;
                }
                // Never written: the new account stays, to be written next time.
                Ok(None) => {}
                Err(e) => tracing::error!(error = %e, "reading the ratchet account back failed"),
            }
        }
    }

    /// Forgets everything about `peer` (a removed contact). Written, not flushed.
    pub fn forget(&mut self, peer: &PeerId) -> Result<(), RatchetError> {
        self.peers.remove(peer);
        self.dirty.remove(peer);
        self.store.write(&[(peer_key(peer), None)]).map_err(state)?;
        self.written_since_roll = true;
        Ok(())
    }

    /// Whether anything waits to be written by [`Self::persist`].
    pub fn is_dirty(&self) -> bool {
        self.account_dirty || !self.dirty.is_empty() || !self.seen.is_empty() || self.marked_key.1.is_some()
    }

    /// Writes every changed record in one batch of the store (not flushed).
    /// On an error nothing was written and the changes stay pending (see
    /// [`Self::rollback`]).
    pub fn persist(&mut self, now_ms: u64) -> Result<(), RatchetError> {
        let mut changes: Vec<RatchetChange> = Vec::new();
        if self.account_dirty {
            let plain = Zeroizing::new(wire::encode(&self.account.pickle()).map_err(state)?);
            changes.push((ACCOUNT_KEY.to_vec(), Some(self.keys.seal(ACCOUNT_KEY, &plain)?)));
        }
        for peer in &self.dirty {
            let Some(s) = self.peers.get(peer) else { continue };
            let record = PeerRecord {
                identity: s.identity,
                prekey: s.prekey,
                sessions: s.sessions.iter().map(Session::pickle).collect(),
                offered: s.offered,
                since_ms: s.since_ms,
                offer_us: s.offer_us,
                sends_ahead: s.sends_ahead,
            };
            let key = peer_key(peer);
            let plain = Zeroizing::new(wire::encode(&record).map_err(state)?);
            let sealed = self.keys.seal(&key, &plain)?;
            changes.push((key, Some(sealed)));
        }
        for (digest, held) in &self.seen {
            let key = seen_key(digest);
            let mut value = now_ms.to_be_bytes().to_vec();
            if let Some(plaintext) = held {
                value.extend(self.keys.seal(&key, plaintext)?);
            }
            changes.push((key, Some(value)));
        }
        // In the same batch as the marks it stands for.
        if let Some(present) = self.marked_key.1 {
            let value = if present { Some(self.keys.seal(MARKED_KEY, b"1")?) } else { None };
            changes.push((MARKED_KEY.to_vec(), value));
        }
        if !changes.is_empty() {
            self.store.write(&changes).map_err(state)?;
            self.written_since_roll = true;
        }
        if let Some(present) = self.marked_key.1.take() {
            self.marked_key.0 = present;
        }
        self.account_dirty = false;
        self.dirty.clear();
        self.seen.clear();
        Ok(())
    }

    /// The state of `peer`, loaded into the cache.
    fn peer(&mut self, peer: &PeerId) -> Result<&mut PeerState, RatchetError> {
        if !self.peers.contains_key(peer) {
            let key = peer_key(peer);
            let loaded = match self.store.get(&key).map_err(state)? {
                Some(bytes) => match self.decode_peer(&key, &bytes) {
                    Ok(loaded) => loaded,
                    Err(e) => {
                        // Unreadable: as if lost (the peer is offered new keys when it
                        // sends what no session opens).
                        tracing::warn!(%peer, error = %e, "a peer's ratchet record is unreadable; starting it afresh");
                        PeerState::default()
                    }
                },
                None => PeerState::default(),
            };
            self.peers.insert(*peer, loaded);
        }
        self.peers.get_mut(peer).ok_or_else(|| RatchetError::State("peer state vanished".into()))
    }

    fn decode_peer(&self, key: &[u8], bytes: &[u8]) -> Result<PeerState, RatchetError> {
        let (plain, _) = self.keys.open(key, bytes)?;
        let r: PeerRecord = wire::decode(&plain, MAX_RECORD_LEN).map_err(state)?;
        Ok(PeerState {
            identity: r.identity,
            prekey: r.prekey,
            sessions: r.sessions.into_iter().map(Session::from_pickle).collect(),
            offered: r.offered,
            since_ms: r.since_ms,
            offer_us: r.offer_us,
            sends_ahead: r.sends_ahead,
        })
    }

    /// Deletes the digests written more than [`SEEN_RETENTION`] before `now_ms`
    /// (written, not flushed: a pruning lost to a crash is done again). A
    /// digest's value, its time, is held in the store's memory: this walks the
    /// records and reads from the disk only digests that hold a plaintext.
    fn prune_seen(&self, now_ms: u64) -> Result<(), RatchetError> {
        let retention = u64::try_from(SEEN_RETENTION.as_millis()).unwrap_or(u64::MAX);
        let expired = self
            .store
            .keys_where(SEEN_PREFIX, |value| {
                // A value too short for a time is as old as can be.
                let at = value.get(..8).and_then(|v| v.try_into().ok()).map_or(0, u64::from_be_bytes);
                now_ms.saturating_sub(at) > retention
            })
            .map_err(state)?;
        if expired.is_empty() {
            return Ok(());
        }
        let pruned: Vec<RatchetChange> = expired.into_iter().map(|key| (key, None)).collect();
        self.store.write(&pruned).map_err(state)
    }
}

fn load_account(keys: &StateKeys, bytes: &[u8]) -> Result<Account, RatchetError> {
    let (plain, _) = keys.open(ACCOUNT_KEY, bytes)?;
    let pickle: AccountPickle = wire::decode(&plain, MAX_RECORD_LEN).map_err(state)?;
    Ok(Account::from_pickle(pickle))
}

/// What an offer's signature covers: every field but the signature.
fn offer_signed(offer: &Offer) -> Vec<u8> {
    [OFFER_DOMAIN, &offer.identity, &offer.one_time, &[u8::from(offer.reset)], &offer.issued_us.to_be_bytes()].concat()
}

fn peer_key(peer: &PeerId) -> Vec<u8> {
    [PEER_PREFIX, &peer.to_bytes()].concat()
}

/// What identifies a ratchet message for recognising its copies.
pub fn copy_digest(kind: u8, body: &[u8]) -> [u8; 16] {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&[kind]).update(body);
    let mut digest = [0u8; 16];
    digest.copy_from_slice(&hasher.finalize().as_bytes()[..16]);
    digest
}

fn seen_key(digest: &[u8; 16]) -> Vec<u8> {
    [SEEN_PREFIX, digest.as_slice()].concat()
}

fn decryption(e: DecryptionError) -> RatchetError {
    match e {
        DecryptionError::MissingMessageKey(index) => RatchetError::KeyGone(index),
        DecryptionError::TooBigMessageGap(gap, max) => RatchetError::TooFarAhead(gap, max),
        _ => RatchetError::NoSession,
    }
}

fn state(e: impl fmt::Display) -> RatchetError {
    RatchetError::State(e.to_string())
}

/// Where the sealed part of a record's value starts: a digest's value begins with
/// the time it was opened (not secret, read to prune), the others are sealed whole.
fn sealed_from(key: &[u8]) -> usize {
    if key.starts_with(SEEN_PREFIX) { 8 } else { 0 }
}

/// A live record opened by a roll, to be re-sealed (or dropped: no plaintext).
struct Unsealed {
    key: Vec<u8>,
    /// What precedes the sealed part (see [`sealed_from`]).
    prefix: Vec<u8>,
    plain: Option<Zeroizing<Vec<u8>>>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests;
