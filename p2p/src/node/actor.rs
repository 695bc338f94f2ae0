//! The node actor: the one task that owns the swarm, the sealer/opener and the store's
//! write path. It `select!`s over completed flushes, commands, swarm events and the
//! retry timer — biased in that order: what a flush made durable is answered at once,
//! and commands come before network work so shutdown is prompt — and ends on shutdown
//! or when every handle is gone.
//!
//! The hot paths — staging sends, storing a peer's delivery, recording delivery
//! states — write without flushing and hand what must wait for durability to the
//! [`Flusher`] (see [`AfterFlush`]), so the swarm keeps running while the disk works.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use futures::StreamExt;
use kith_storage::{ContactState, ConversationId, FileState, Message, MessageId, OutboxEntry, Recipient, Store};
use libp2p::kad::{self, QueryId, QueryResult, Quorum, Record, RecordKey};
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundRequestId};
use libp2p::swarm::{DialError, ListenError, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, autonat, dcutr, identify, mdns, noise, ping, yamux};
use tokio::sync::{broadcast, mpsc};

use super::behaviour::{Behaviour, BehaviourEvent};
use super::contact_rules::{self, Adding};
use super::direct;
use super::flusher::{FlushFailed, Flusher};
use super::outbox::{Flight, Queues};
use super::request_size::RequestSize;
use super::send_ahead::SendAhead;
use super::or_log::OrLog;
use super::{Command, Event, NodeConfig, NodeError, StartError, Status};
use crate::conn_limits;
use crate::dm::{self, DmRequest, DmResponse, DmResult, RejectReason};
use crate::envelope::{Opener, Sealer, SealerConfig};
use crate::invite::Invite;
use crate::ops::{self, OpError};
use crate::payload::Payload;
use crate::node::directory::{self, Directory};
use crate::peer_record::{self, PeerRecord};
use crate::views::{ContactView, MessageView};

/// Sessions the opener remembers (each saves a handshake's DH work on later messages).
const OPENER_CACHE: usize = 4096;
/// Contacts dialed at start-up; the rest connect when there is something to send.
const STARTUP_DIALS: usize = 64;
/// Most sends sharing one flush; bounds how long the first caller waits.
const MAX_SEND_BATCH: usize = 512;

/// Where the answer to a `Command::Send` goes.
type SendReply = tokio::sync::oneshot::Sender<Result<MessageView, NodeError>>;

/// What the files table records of a sent file: blob, state, path, why no media node
/// took it.
type NotedAttachment = ([u8; 32], FileState, Option<String>, Option<String>);

/// An outgoing message composed for a `send`, with where it goes.
type Composed = Result<(Message, OutboxEntry, group_messages::Dest), NodeError>;

/// Sends a command's answer, given how the flush of its writes went.
type DurableReply = Box<dyn FnOnce(&Result<(), FlushFailed>) + Send>;

/// What waits for the flush that makes the writes before it durable.
enum AfterFlush {
    /// Staged sends: answer their callers, then send those not sent ahead.
    Sends {
        composed: Vec<(Composed, SendReply)>,
        /// Contacts marked for sending ahead in this batch (see [`SendAhead`]).
        marked: Vec<PeerId>,
        /// The batch's number, in the order batches are staged.
        batch: u64,
    },
    /// A peer's delivery request, stored: answer it, then act on what it brought.
    Answer {
        channel: request_response::ResponseChannel<DmResponse>,
        results: Vec<DmResult>,
        accepted: Accepted,
    },
    /// Events about recorded writes (delivery states that moved).
    Events(Vec<Event>),
    /// The answer to a command whose writes are waiting for the flush.
    Reply(DurableReply),
    /// Outbox entries were queued (group keys, histories, syncs): send them.
    ReloadOutbox,
    /// A batch sealed at dispatch: send it once the ratchet state it advanced is
    /// durable (see [`Actor::send_sealed`]).
    Sealed(SealedBatch),
    /// A page of our mail drained from a relay, stored: ack what is durable there,
    /// then act on what it brought.
    Drained {
        relay: PeerId,
        /// The page's sequence numbers, in order, one per result.
        seqs: Vec<u64>,
        results: Vec<DmResult>,
        accepted: Accepted,
    },
    /// A fetched group log page is stored: record how far this relay's log was read.
    GroupLogCursor { group: kith_storage::GroupId, relay: PeerId, seq: u64 },
}

/// A batch sealed at dispatch, waiting in flight for the flush of the ratchet state
/// it advanced.
struct SealedBatch {
    peer: PeerId,
    flight: Flight,
    envelopes: Vec<Vec<u8>>,
    /// What it sealed, to undo if the flush fails.
    sealed_now: Vec<(PeerId, MessageId)>,
    /// The contact's gate when it was made: sent only if it is still the same.
    gate: direct::Gate,
}

/// What stored envelopes brought besides their results, acted on once they are
/// durable (see [`Actor::accept`]).
struct Accepted {
    events: Vec<Event>,
    /// Whether new outbox entries were queued (answers, receipts).
    queued: bool,
    /// Contacts whose keys or addresses changed.
    touched: Vec<PeerId>,
    /// Contacts whose ratchet keys changed.
    rekeyed: Vec<PeerId>,
}

mod delivery;
mod group_inbound;
mod group_messages;
mod groups;
mod keys;
mod limbo;
mod profile;
mod ratchet;
mod sends;
pub(super) mod relays;


pub(crate) struct Actor {
    swarm: Swarm<Behaviour>,
    store: Store,
    config: NodeConfig,
    me: PeerId,
    sealer: Sealer,
    opener: Opener,
    /// Olm sessions with contacts, inside the sealed envelopes.
    ratchets: crate::ratchet::Ratchets,
    /// Our end-to-end key ring, if this node keeps one.
    key_ring: Option<keys::RingState>,
    /// When each contact was last offered new ratchet keys with `reset`, and that
    /// offer's outbox id.
    ratchet_resets: HashMap<PeerId, (Instant, Option<kith_storage::MessageId>)>,
    /// When we last sent a contact again what it never confirmed (after its reset).
    resent: HashMap<PeerId, Instant>,
    /// Queued payloads as sealed in the ratchet, by contact and outbox id: every
    /// attempt sends the same sealed payload (an attempt that never arrived spends
    /// no chain key, and a copy that did is recognised), until the entry leaves the
    /// queue or the contact's keys change. See [`Actor::ratchet_cached`].
    ratcheted: super::seal_cache::SealCaches,
    /// Per contact, the last send batch that staged a message of it without its
    /// seal cached (or that was the newest when the contact's seals were dropped):
    /// until that batch is queued, the contact's later batches are not presealed
    /// (see [`Actor::preseal`]).
    unsealed_staged: ratchet::UntilQueued,
    /// Per contact, the last send batch that presealed a message of it: until that
    /// batch is queued, outbox entries for the contact written meanwhile (receipts,
    /// resends) are not queued, or they would go, sealed at later keys, ahead of the
    /// batch's messages (see [`Actor::reload_outbox`]).
    presealed_staged: ratchet::UntilQueued,
    /// The last send batch whose flush completed (batches complete in order).
    finished_send_batches: u64,
    /// A reload of the outbox left entries behind for a batch presealed for their
    /// contact: the next completed batch reloads it again.
    reload_after_sends: bool,
    /// Outbox ids of key offers made in this run whose one-time keys were written
    /// but not known flushed: such an offer leaves only after a flush, or a crash
    /// could leave a contact building its session on a key we no longer hold.
    unflushed_offers: HashSet<MessageId>,
    queues: Queues,
    commands: mpsc::Receiver<Command>,
    events: broadcast::Sender<Event>,
    listen_addrs: Vec<Multiaddr>,
    connected: HashSet<PeerId>,
    /// How many envelopes and bytes a request for each contact may carry (to it,
    /// or a deposit at its relays).
    request_size: RequestSize,
    directory: Directory,
    next_refresh: Instant,
    relays: crate::node::mailbox_client::MailboxClient,
    next_drain: Instant,
    /// When expired invite tokens are next deleted.
    next_invite_purge: Instant,
    /// When accepted contacts' deposit tickets are next checked for renewal.
    next_ticket_check: Instant,
    /// [`kith_storage::Contacts::state_changes`] at the last check of deposit tickets:
    /// between timed checks, one runs only when some contact changed.
    tickets_checked: Option<u64>,
    /// When the node next looks whether its message log is worth compacting.
    next_compaction_check: Instant,
    /// Whether a compaction runs on the blocking pool now.
    compacting: Arc<AtomicBool>,
    /// Addresses the last failed dial to a peer with queued mail tried.
    failed_dials: HashMap<PeerId, Vec<Multiaddr>>,
    /// The latest AutoNAT verdict, for `status`.
    reachability: String,
    /// Which contacts are online, and what we told whom.
    presence: super::presence::Presence,
    /// Delivery receipts for group messages, waiting to go out together.
    group_receipts: super::receipt_batch::ReceiptBatch,
    /// When we last said we type in each conversation.
    typing_sent: HashMap<ConversationId, Instant>,
    /// When we last passed on each (conversation, peer)'s typing.
    typing_heard: HashMap<(String, String), Instant>,
    /// Redials per peer since its last connection (see [`direct::after_failure`]).
    redials: HashMap<PeerId, u8>,
    groups: groups::GroupsState,
    group_messages: crate::node::grouplog_client::GroupLogClient,
    flusher: Flusher<AfterFlush>,
    /// Sends staged but not yet durable: [`Actor::reload_outbox`] leaves them to
    /// [`Actor::finish_sends`], so none goes out before its flush.
    unflushed_sends: HashSet<MessageId>,
    /// How many messages have ever left `unflushed_sends`: with the queues'
    /// departures, what tells a full seal cache that a sweep may free room.
    staged_departures: u64,
    /// Which new 1:1 messages leave before their flush.
    send_ahead: SendAhead,
    /// Numbers the batches waiting for the flush of what they were sealed with.
    sealing_flights: u64,
    /// Contacts whose answer came back: their next batch is sealed and sent once the
    /// sends already waiting on the command channel are staged (see
    /// [`Actor::settle`]).
    dispatch_after_sends: Vec<PeerId>,
    /// Numbers the send batches, in the order they are staged.
    send_batches: u64,
}

impl Actor {
    /// A control for raw streams on this node's swarm (`/kith/blob/1`).
    pub(super) fn blob_control(&self) -> libp2p_stream::Control {
        self.swarm.behaviour().blobs.new_control()
    }

    pub(crate) async fn build(
        mut config: NodeConfig,
        store: Store,
        commands: mpsc::Receiver<Command>,
        events: broadcast::Sender<Event>,
    ) -> Result<(Actor, Vec<Multiaddr>), StartError> {
        let key = config.identity.libp2p_keypair();
        let me = key.public().to_peer_id();
        let timers = config.timers.clone();
        let mdns_on = config.mdns;
        let mut swarm = libp2p::SwarmBuilder::with_existing_identity(key)
            .with_tokio()
            .with_quic()
            .with_other_transport(crate::tcp::transport)
            .map_err(|e| StartError::Build(e.to_string()))?
            .with_relay_client(noise::Config::new, yamux::Config::default)
            .map_err(|e| StartError::Build(e.to_string()))?
            .with_behaviour(|key, relay_client| {
                Behaviour::new(key, relay_client, mdns_on, &timers)
                .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { Box::new(e) })
            })
            .map_err(|e| StartError::Build(e.to_string()))?
            .with_swarm_config(|c| {
                // Every stream we open names one protocol (or several, of which only
                // the last is tried lazily), and none nests a second negotiation, so
                // the request can go out with its protocol's name instead of a round
                // trip later: one network round trip less per message.
                c.with_idle_connection_timeout(timers.idle_connection)
                    .with_substream_upgrade_protocol_override(libp2p::core::upgrade::Version::V1Lazy)
            })
            .build();

        // Listener id → (the configured template, whether we are trying a remembered port).
        let mut listeners = HashMap::new();
        for template in &config.listen {
            let remembered = remembered_listen_addr(&store, template);
            let attempt = remembered.clone().unwrap_or_else(|| template.clone());
            let id = match swarm.listen_on(attempt) {
                Ok(id) => id,
                Err(_) if remembered.is_some() => swarm
                    .listen_on(template.clone())
                    .map_err(|e| StartError::Listen { addr: template.clone(), reason: e.to_string() })?,
                Err(e) => return Err(StartError::Listen { addr: template.clone(), reason: e.to_string() }),
            };
            listeners.insert(id, (template.clone(), remembered.is_some()));
        }
        let mut listen_addrs = Vec::new();
        let deadline = tokio::time::sleep(config.timers.listen_deadline);
        tokio::pin!(deadline);
        while !listeners.is_empty() {
            tokio::select! {
                event = swarm.select_next_some() => match event {
                    SwarmEvent::NewListenAddr { listener_id, address } => {
                        if let Some((template, _)) = listeners.remove(&listener_id) {
                            remember_listen_addr(&store, &template, &address);
                        }
                        listen_addrs.push(address);
                    }
                    SwarmEvent::ListenerClosed { listener_id, addresses, reason, .. } => {
                        match listeners.remove(&listener_id) {
                            // The remembered port is taken now: fall back to a fresh one.
                            Some((template, true)) => {
                                let id = swarm.listen_on(template.clone()).map_err(|e| StartError::Listen {
                                    addr: template.clone(),
                                    reason: e.to_string(),
                                })?;
                                listeners.insert(id, (template, false));
                            }
                            _ => {
                                let addr = addresses.first().cloned().unwrap_or_else(Multiaddr::empty);
                                return Err(StartError::Listen { addr, reason: format!("{reason:?}") });
                            }
                        }
                    }
                    SwarmEvent::ListenerError { error, .. } => {
                        return Err(StartError::Listen { addr: Multiaddr::empty(), reason: error.to_string() });
                    }
                    _ => {}
                },
                _ = &mut deadline => {
                    return Err(StartError::Build("listeners did not report an address in time".into()));
                }
            }
        }

        let (key_ring, identity) = match config.key_ring.clone() {
            Some(path) => {
                let (ring, identity) = keys::load(path, config.identity.clone(), &store)?;
                (Some(ring), identity)
            }
            None => (None, config.identity.clone()),
        };
        // The keystore's identity: state from before state keys was sealed under its
        // X25519 key (the key ring did not exist then), whatever key is in use now.
        let keystore = std::mem::replace(&mut config.identity, identity.clone());
        let timers = config.timers.clone();
        let ratchets = crate::ratchet::Ratchets::load(store.ratchet(), &keystore, ops::now_ms())
            .map_err(|e| StartError::Build(format!("cannot load the ratchet state: {e}")))?
            .with_roll_interval(timers.ratchet_state_roll);
        let flusher = Flusher::start(store.clone(), config.timers.lazy_flush_delay)
            .map_err(|e| StartError::Build(format!("cannot start the flushing thread: {e}")))?;
        let mut actor = Actor {
            swarm,
            store,
            me,
            sealer: Sealer::new(&identity, SealerConfig::default()),
            opener: keys::opener(&identity, key_ring.as_ref()),
            ratchets,
            key_ring,
            ratchet_resets: HashMap::new(),
            resent: HashMap::new(),
            ratcheted: super::seal_cache::SealCaches::new(ratchet::MAX_CACHED_PER_CONTACT),
            unsealed_staged: ratchet::UntilQueued::default(),
            presealed_staged: ratchet::UntilQueued::default(),
            finished_send_batches: 0,
            reload_after_sends: false,
            unflushed_offers: HashSet::new(),
            queues: Queues::new(timers.retry_initial, timers.retry_max),
            commands,
            events,
            listen_addrs: listen_addrs.clone(),
            connected: HashSet::new(),
            request_size: RequestSize::default(),
            directory: Directory::new(config.timers.publish_spacing),
            next_refresh: Instant::now() + timers.record_refresh,
            relays: crate::node::mailbox_client::MailboxClient::new(config.timers.redeposit_after),
            next_drain: Instant::now() + config.timers.drain_interval,
            next_invite_purge: Instant::now() + config.timers.invite_purge_interval,
            // At start: contacts made by a build without tickets get theirs.
            next_ticket_check: Instant::now(),
            tickets_checked: None,
            next_compaction_check: Instant::now() + config.timers.log_compaction_check,
            compacting: Arc::default(),
            failed_dials: HashMap::new(),
            reachability: "unknown".into(),
            presence: super::presence::Presence::new(config.presence, config.timers.presence_ttl),
            group_receipts: super::receipt_batch::ReceiptBatch::new(config.timers.group_receipt_batch),
            typing_sent: HashMap::new(),
            typing_heard: HashMap::new(),
            redials: HashMap::new(),
            groups: groups::GroupsState::default(),
            group_messages: crate::node::grouplog_client::GroupLogClient::new(config.timers.group_retry),
            flusher,
            unflushed_sends: HashSet::new(),
            staged_departures: 0,
            send_ahead: SendAhead::default(),
            sealing_flights: 0,
            dispatch_after_sends: Vec::new(),
            send_batches: 0,
            config,
        };
        match actor.store.prune_tombstones(ops::now_ms()) {
            Ok(0) => {}
            Ok(pruned) => tracing::debug!(pruned, "forgot tombstones older than the replay window"),
            Err(e) => tracing::warn!(error = %e, "pruning tombstones failed"),
        }
        actor.resume_sends_ahead();
        actor.purge_invites();
        actor.load_groups();
        actor.bootstrap();
        actor.drain_all();
        actor.learn_contact_addresses();
        actor.dial_contacts();
        actor.reload_outbox();
        actor.offer_ratchet_keys_to_all();
        actor.fetch_all_group_logs();
        actor.dial_group_members();
        Ok((actor, listen_addrs))
    }

    pub(crate) async fn run(mut self) {
        let span = tracing::info_span!("node", peer = %self.me);
        let _enter = span.enter();
        loop {
            if self.commands.is_empty() {
                self.dispatch_deferred();
            }
            let wake = self.next_wakeup();
            tokio::select! {
                biased;
                (actions, result) = self.flusher.flushed(), if self.flusher.is_holding() => {
                    self.after_flush(actions, &result);
                }
                command = self.commands.recv() => {
                    let Some(command) = command else {
                        // Every handle is gone.
                        self.clear_sends_ahead();
                        self.flush_held();
                        break;
                    };
                    // Sends queued behind this one share its flush (group commit);
                    // the first other command ends the batch and runs after it.
                    let mut next = Some(command);
                    while let Some(Command::Send(request)) = next {
                        next = self.send_batch(request);
                    }
                    match next {
                        Some(Command::Shutdown(reply)) => {
                            self.send_group_receipts(None);
                            self.say_goodbye().await;
                            self.clear_sends_ahead();
                            self.flush_held();
                            let _ = reply.send(());
                            break;
                        }
                        Some(command) => self.command(command),
                        None => {}
                    }
                    self.dispatch_deferred();
                },
                event = self.swarm.select_next_some() => self.swarm_event(event),
                _ = tokio::time::sleep_until(wake.into()) => self.tick(),
            }
        }
        tracing::info!("node stopped");
    }

    /// Sends the next batches that [`Actor::settle`] left for after the waiting sends.
    fn dispatch_deferred(&mut self) {
        for peer in std::mem::take(&mut self.dispatch_after_sends) {
            self.dispatch(peer);
        }
    }

    fn next_wakeup(&self) -> Instant {
        let timers = self.next_refresh.min(self.next_drain).min(self.next_invite_purge).min(self.next_compaction_check).min(self.next_ticket_check);
        let timers = self.group_messages.next_wakeup().map_or(timers, |t| t.min(timers));
        let timers = self.presence.next_deadline().map_or(timers, |t| t.min(timers));
        let timers = self.group_receipts.next_wakeup().map_or(timers, |t| t.min(timers));
        let timers = self.ratchets.next_roll().map_or(timers, |t| t.min(timers));
        let timers = self.relays.next_wakeup().map_or(timers, |t| t.min(timers));
        self.queues.next_wakeup().map_or(timers, |t| t.min(timers))
    }

    fn tick(&mut self) {
        let now = Instant::now();
        if now >= self.next_refresh {
            self.next_refresh = now + self.config.timers.record_refresh;
            self.maintain_keys();
            self.publish_record();
        }
        if now >= self.next_drain {
            self.next_drain = now + self.config.timers.drain_interval;
            self.drain_all();
            self.fetch_all_group_logs();
            self.dial_group_members();
        }
        if now >= self.next_invite_purge {
            self.next_invite_purge = now + self.config.timers.invite_purge_interval;
            self.purge_invites();
        }
        if now >= self.next_ticket_check {
            self.next_ticket_check = now + self.config.timers.deposit_ticket_check;
            self.give_tickets_due(true);
        }
        if now >= self.next_compaction_check {
            self.next_compaction_check = now + self.config.timers.log_compaction_check;
            self.compact_log();
        }
        self.group_tick(now);
        self.send_group_receipts(Some(now));
        self.presence_tick(now);
        self.roll_ratchet_state(now);
        self.redeposit_due(now);
        for peer in self.queues.ready(now) {
            self.dispatch(peer);
        }
    }

    /// Contacts whose presence lapsed go offline; those online to us hear again
    /// that we are.
    fn presence_tick(&mut self, now: Instant) {
        let (lapsed, renew) = self.presence.tick(now);
        for change in lapsed {
            self.emit(presence_event(change));
        }
        for peer in renew {
            self.send_presence(peer, true);
        }
    }

    /// Tells the peers of `target` (a contact, or a group's members) connected now
    /// that we are typing there, at most once per `Timers::typing_spacing` per
    /// conversation; nothing with presence off. Returns how many were told.
    fn typing(&mut self, target: &str) -> Result<usize, NodeError> {
        if !self.config.presence {
            return Ok(0);
        }
        let (conversation, peers, group) = match ops::resolve_target(&self.store, target)? {
            // Receivers take it only from accepted contacts and members of groups they
            // are in: anything else would be sent for nothing.
            ops::Target::Contact(c) if c.state != ContactState::Accepted => return Ok(0),
            ops::Target::Group(g) if !g.active => return Ok(0),
            ops::Target::Contact(c) => (ops::direct_conversation(&self.me, &c.peer_id), vec![c.peer_id], None),
            ops::Target::Group(g) => {
                let peers = g.members.iter().filter_map(|m| m.peer_id.parse::<PeerId>().ok()).filter(|p| *p != self.me).collect();
                (crate::group::conversation(&g.id), peers, Some(g.id))
            }
        };
        let (now, spacing) = (Instant::now(), self.config.timers.typing_spacing);
        if self.typing_sent.get(&conversation).is_some_and(|at| now.duration_since(*at) < spacing) {
            return Ok(0);
        }
        self.typing_sent.insert(conversation, now);
        self.typing_sent.retain(|_, at| now.duration_since(*at) < spacing);
        let payload = Payload::Typing { group };
        // Members we blocked hear nothing from us.
        let blocked = |p: &PeerId| self.store.contacts().is_blocked(p).unwrap_or(false);
        let connected: Vec<PeerId> = peers.into_iter().filter(|p| self.connected.contains(p) && !blocked(p)).collect();
        Ok(connected.into_iter().filter(|p| self.send_ephemeral(*p, &payload).is_some()).count())
    }

    /// Records when `peer` was last seen online in its contact record (not flushed:
    /// losing the latest in a crash only makes it older).
    fn remember_last_seen(&self, peer: &PeerId, at_ms: u64) {
        if let Ok(Some(mut contact)) = self.store.contacts().get(peer)
            && contact.last_seen_ms.is_none_or(|seen| seen < at_ms)
        {
            contact.last_seen_ms = Some(at_ms);
            self.store.contacts().put(&contact).or_log("recording when a contact was last seen");
        }
    }

    /// Contacts' presence: those heard from since we started, then accepted contacts
    /// seen before (offline, with when). Empty with presence off.
    fn presence_views(&self) -> Vec<super::presence::PresenceView> {
        let mut views = self.presence.views(Instant::now());
        if !self.config.presence {
            return views;
        }
        let contacts = match self.store.contacts().list() {
            Ok(contacts) => contacts,
            Err(e) => {
                tracing::warn!(error = %e, "reading contacts for presence failed");
                return views;
            }
        };
        for c in contacts.iter().filter(|c| c.state == ContactState::Accepted) {
            let peer_id = c.peer_id.to_base58();
            if let Some(at) = c.last_seen_ms
                && !views.iter().any(|v| v.peer_id == peer_id)
            {
                views.push(super::presence::PresenceView { peer_id, online: false, last_seen: Some(at) });
            }
        }
        views
    }

    /// Tells `peer` we are online, unless presence is off, it is not an accepted
    /// contact, or we did a moment ago.
    fn announce(&mut self, peer: PeerId) {
        let now = Instant::now();
        if self.presence.should_tell(&peer, now) && self.send_presence(peer, true).is_some() {
            self.presence.told(peer, now);
        }
    }

    /// Sends `peer` (an accepted contact) our presence, sealed, straight over a
    /// connection (dialled if needed): never queued, never retried. Returns the
    /// request, if one went out.
    fn send_presence(&mut self, peer: PeerId, online: bool) -> Option<OutboundRequestId> {
        match self.store.contacts().get(&peer) {
            Ok(Some(c)) if c.state == ContactState::Accepted => {}
            _ => return None,
        }
        let ttl_s = if online { u32::try_from(self.presence.ttl().as_secs()).unwrap_or(u32::MAX) } else { 0 };
        self.send_ephemeral(peer, &Payload::Presence { online, ttl_s })
    }

    /// Sends `payload` to `peer` (a contact or group member whose key we hold),
    /// sealed, straight over a connection: never queued, never retried.
    fn send_ephemeral(&mut self, peer: PeerId, payload: &Payload) -> Option<OutboundRequestId> {
        let contact = match self.store.contacts().get(&peer) {
            Ok(Some(c)) if matches!(c.state, ContactState::Accepted | ContactState::Member) => c,
            _ => return None,
        };
        let e2e = contact.e2e_public?;
        let payload = payload.encode().ok()?;
        let envelope = match self.sealer.seal(&e2e, &payload) {
            Ok(envelope) => envelope,
            Err(e) => {
                tracing::warn!(error = %e, "sealing a presence or typing notice failed");
                return None;
            }
        };
        let request = DmRequest { envelopes: vec![envelope] };
        Some(self.swarm.behaviour_mut().dm.send_request_with_addresses(&peer, request, contact.addrs.clone()))
    }

    /// Stopping: tell the contacts we told we were online that we are not, and give
    /// the swarm a moment (at most `Timers::presence_goodbye`) to get the words out.
    async fn say_goodbye(&mut self) {
        let peers: Vec<PeerId> = self.presence.stopping().into_iter().filter(|p| self.connected.contains(p)).collect();
        let mut waiting: HashSet<OutboundRequestId> = peers.into_iter().filter_map(|p| self.send_presence(p, false)).collect();
        let deadline = tokio::time::Instant::now() + self.config.timers.presence_goodbye;
        while !waiting.is_empty() {
            let Ok(event) = tokio::time::timeout_at(deadline, self.swarm.select_next_some()).await else { break };
            if let SwarmEvent::Behaviour(BehaviourEvent::Dm(
                request_response::Event::Message { message: request_response::Message::Response { request_id, .. }, .. }
                | request_response::Event::OutboundFailure { request_id, .. },
            )) = &event
            {
                waiting.remove(request_id);
            }
        }
    }

    /// Delete expired invite tokens (redeeming one fails anyway; this keeps them from
    /// piling up). Not flushed: a purge lost in a crash is simply done again.
    fn purge_invites(&self) {
        match self.store.invites().purge_expired(ops::now_ms()) {
            Ok(0) => {}
            Ok(purged) => tracing::debug!(purged, "deleted expired invites"),
            Err(e) => tracing::warn!(error = %e, "deleting expired invites failed"),
        }
    }

    /// Queues a deposit ticket for each accepted contact whose own runs out soon or
    /// that has none (see [`super::tickets`]); what was queued goes out once durable.
    /// Unless `timed`, only if some contact changed since the last check: callers
    /// ask after anything that may have made a contact, at no cost otherwise.
    pub(super) fn give_tickets_due(&mut self, timed: bool) {
        let changes = self.store.contacts().state_changes();
        if !timed && self.tickets_checked == Some(changes) {
            return;
        }
        match super::tickets::give_due(&self.store, &self.config.identity, ops::now_ms()) {
            Ok(given) => {
                self.tickets_checked = Some(changes);
                if given > 0 {
                    tracing::debug!(given, "gave contacts deposit tickets");
                    self.flusher.after_flush(AfterFlush::ReloadOutbox);
                }
            }
            Err(e) => {
                // The tickets queued before the failure still go; the rest come
                // with the next check.
                tracing::warn!(error = %e, "giving contacts deposit tickets failed");
                self.flusher.after_flush(AfterFlush::ReloadOutbox);
            }
        }
    }

    /// Compacts the message log on the blocking pool if it is due, one compaction
    /// at a time; the store's writers and readers go on meanwhile.
    fn compact_log(&self) {
        if self.compacting.swap(true, Ordering::AcqRel) {
            return;
        }
        /// Lets the next compaction start when this one ends, even by a panic.
        struct Running(Arc<AtomicBool>);
        impl Drop for Running {
            fn drop(&mut self) {
                self.0.store(false, Ordering::Release);
            }
        }
        let (store, running) = (self.store.clone(), Running(Arc::clone(&self.compacting)));
        tokio::task::spawn_blocking(move || {
            let _running = running;
            if let Err(e) = store.compact_log_if_due() {
                tracing::warn!(error = %e, "compacting the message log failed; it goes on as it was");
            }
        });
    }

    /// Flushes here and now and carries out everything held for a flush (shutdown).
    fn flush_held(&mut self) {
        let (actions, result) = self.flusher.flush_now(&self.store);
        self.after_flush(actions, &result);
    }

    /// Carries out what a flush has made durable, oldest first. After a failed flush
    /// nothing is reported as stored: callers hear the error, peers are asked to retry,
    /// and nothing that depended on it is announced or sent.
    fn after_flush(&mut self, actions: Vec<AfterFlush>, result: &Result<(), FlushFailed>) {
        // One outbox reload however many actions asked for one: it reads the whole
        // outbox.
        let mut reload = false;
        for action in actions {
            match action {
                AfterFlush::Sends { composed, marked, batch } => self.finish_sends(composed, (batch, marked), result),
                AfterFlush::Sealed(sealed) => self.send_sealed(sealed, result),
                AfterFlush::Answer { channel, mut results, accepted } => {
                    if result.is_err() {
                        unstored(&mut results);
                    }
                    if self.swarm.behaviour_mut().dm.send_response(channel, DmResponse { results }).is_err() {
                        tracing::debug!("requester went away before the answer");
                    }
                    if result.is_ok() {
                        reload |= self.after_accept(accepted);
                    }
                }
                AfterFlush::Events(events) if result.is_ok() => {
                    for event in events {
                        self.emit(event);
                    }
                }
                AfterFlush::Reply(answer) => answer(result),
                AfterFlush::ReloadOutbox => reload |= result.is_ok(),
                AfterFlush::Drained { relay, seqs, mut results, accepted } => {
                    if result.is_err() {
                        unstored(&mut results);
                    } else {
                        reload |= self.after_accept(accepted);
                    }
                    self.drained_stored(relay, &seqs, &results);
                }
                AfterFlush::GroupLogCursor { group, relay, seq } if result.is_ok() => {
                    // Not flushed itself: a lost cursor only means fetching the page again.
                    let key = group_messages::cursor_key(&group, &relay);
                    if let Err(e) = self.store.settings().set(&key, &seq) {
                        tracing::error!(error = %e, "storing a group log cursor failed");
                    }
                }
                // Not durable: not announced, and no cursor moves past it (queued
                // outbox entries stay for a later reload to send).
                AfterFlush::Events(_) | AfterFlush::GroupLogCursor { .. } => {}
            }
        }
        if reload {
            self.reload_outbox();
        }
    }

    fn emit(&self, event: Event) {
        // No subscribers is fine; events are also reflected in the store.
        let _ = self.events.send(event);
    }

    // ---- commands -------------------------------------------------------------

    fn command(&mut self, command: Command) {
        match command {
            Command::Status(reply) => {
                let _ = reply.send(self.status());
            }
            Command::Presence(reply) => {
                let _ = reply.send(self.presence_views());
            }
            Command::Typing { target, reply } => {
                let _ = reply.send(self.typing(&target));
            }
            Command::Keys(reply) => {
                let _ = reply.send(Ok(self.keys_view()));
            }
            Command::RotateKey(reply) => {
                let result = self.rotate_key();
                self.reply_when_durable(reply, result);
            }
            Command::SetProfile { change, reply } => {
                let result = self.set_profile(change);
                self.reply_when_durable(reply, result);
            }
            Command::Invite(reply) => {
                let result = self.invite();
                self.reply_when_durable(reply, result);
            }
            Command::AddInvite { invite, alias, reply } => {
                let result = self.add_invite(*invite, alias);
                // An invite's owner who asked us too may be a contact now.
                self.give_tickets_due(false);
                self.reply_when_durable(reply, result);
            }
            Command::AddPeer { peer, alias, reply } => {
                let result = self.add_peer(peer, alias);
                self.give_tickets_due(false);
                self.reply_when_durable(reply, result);
            }
            // `run` batches sends before they get here; this arm is for completeness.
            Command::Send(request) => {
                if let Some(next) = self.send_batch(request) {
                    self.command(next);
                }
            }
            Command::Local { op, reply } => {
                let result = op(&self.store, &self.config.local_context()).map_err(NodeError::from);
                // Blocking takes effect at once; what the op queued goes out, and the
                // caller hears back, once it is durable. A contact it accepted gets
                // its deposit ticket with the acceptance.
                self.drop_queues_of_blocked();
                self.give_tickets_due(false);
                self.flusher.after_flush(AfterFlush::ReloadOutbox);
                self.reply_when_durable(reply, result);
            }
            Command::Dial(addr, reply) => {
                let result = self
                    .swarm
                    .dial(addr)
                    .map_err(|e| NodeError::BadTarget(format!("cannot dial: {e}")));
                let _ = reply.send(result);
            }
            Command::Reach(peer, addrs, reply) => {
                self.reach(peer, addrs);
                let _ = reply.send(());
            }
            Command::SetRelays(relays, reply) => {
                self.config.relays = relays;
                self.directory.record_changed();
                self.publish_record();
                self.drain_all();
                let _ = reply.send(());
            }
            Command::Group(change, reply) => {
                let result = self.group_change(change);
                self.reply_when_durable(reply, result);
            }
            Command::PinnedRelays(reply) => {
                let _ = reply.send(self.config.relays.clone());
            }
            Command::RoomTicket(group, reply) => {
                let _ = reply.send(self.room_ticket(&group));
            }
            Command::Shutdown(_) => unreachable_shutdown(),
        }
    }

    fn status(&mut self) -> Status {
        let routing_table_size = self.swarm.behaviour_mut().kad.kbuckets().map(|b| b.num_entries()).sum();
        Status {
            peer_id: self.me.to_string(),
            listen_addrs: self.listen_addrs.iter().map(ToString::to_string).collect(),
            connected_peers: self.connected.iter().map(ToString::to_string).collect(),
            routing_table_size,
            relays: self.config.relays.iter().map(ToString::to_string).collect(),
            outbox: self.queues.len(),
            queues: self.queues.snapshot(Instant::now()),
            files_served_bytes: 0,
            files_fetched_bytes: 0,
            reachability: self.reachability.clone(),
            storage_failed: self.store.failed(),
        }
    }

    /// Addresses worth giving to others: concrete listen addresses, each with /p2p/<us>.
    fn shareable_addrs(&self) -> Vec<Multiaddr> {
        self.listen_addrs
            .iter()
            .filter(|a| !a.iter().any(|p| matches!(p, Protocol::Ip4(ip) if ip.is_unspecified())))
            .cloned()
            .collect()
    }

    /// Announces a contact change, and sends what it queued, once durable.
    fn contact_changed_when_durable(&mut self, view: &ContactView) {
        self.flusher.after_flush(AfterFlush::Events(vec![Event::ContactChanged { contact: view.clone() }]));
        self.flusher.after_flush(AfterFlush::ReloadOutbox);
    }

    /// Answers a command once what it wrote is durable (at once if it failed).
    fn reply_when_durable<T: Send + 'static>(
        &mut self,
        reply: tokio::sync::oneshot::Sender<Result<T, NodeError>>,
        result: Result<T, NodeError>,
    ) {
        if result.is_err() {
            let _ = reply.send(result);
            return;
        }
        self.flusher.after_flush(AfterFlush::Reply(Box::new(move |flushed| {
            let answer = match flushed {
                Ok(()) => result,
                Err(e) => Err(NodeError::Op(OpError::NotStored(e.to_string()))),
            };
            let _ = reply.send(answer);
        })));
    }

    /// A new invite; its token is written, durable once the caller's answer goes out
    /// ([`Actor::reply_when_durable`]).
    fn invite(&mut self) -> Result<Invite, NodeError> {
        let token: [u8; 16] = rand::random();
        let expires = ops::now_ms() + self.config.timers.invite_ttl.as_millis() as u64;
        self.store.invites().create(token, expires).map_err(OpError::from)?;
        let public = self.config.identity.public();
        Ok(Invite {
            peer_id: public.peer_id,
            e2e_public: public.e2e_public,
            binding: public.binding,
            name: self.config.display_name.clone(),
            addrs: self.shareable_addrs(),
            relays: self.config.relays.clone(),
            token: Some(token),
        })
    }

    /// Queues "add me" to `peer`, with where to reach us and leave us mail, and our
    /// ratchet keys unless it has some from us already (written, not flushed). A
    /// request carrying keys is noted like an offer: it leaves only after a flush.
    fn enqueue_contact_request(&mut self, peer: PeerId, token: Option<[u8; 16]>) -> Result<(), OpError> {
        let keys = self.request_keys(peer);
        let carries_keys = keys.is_some();
        let issued_us = ops::issue_time_us();
        let request = Payload::ContactRequest {
            name: self.config.display_name.clone(),
            addrs: self.shareable_addrs().iter().map(|a| a.to_vec()).collect(),
            token,
            relays: self.config.relays.iter().map(|a| a.to_vec()).collect(),
            keys,
            issued_us,
        };
        let id = ops::enqueue(&self.store, &peer, &request)?;
        if carries_keys {
            self.unflushed_offers.insert(id);
        }
        // Only an acceptance of this request (or a later one) makes them a contact.
        // Failing to note it only weakens that check: the request goes all the same.
        self.store
            .note_contact_payload(&peer, kith_storage::ContactPayload::Asked, issued_us)
            .or_log("noting a contact request we made");
        Ok(())
    }

    /// Add the maker of `invite` as [`contact_rules::from_invite`] says, and queue our
    /// request (with its token, which makes us contacts without their approval).
    fn add_invite(&mut self, invite: Invite, alias: Option<String>) -> Result<ContactView, NodeError> {
        if invite.peer_id == self.me {
            return Err(NodeError::BadTarget("that invite is your own".into()));
        }
        let existing = self.store.contacts().get(&invite.peer_id).map_err(OpError::from)?;
        let contact = contact_rules::from_invite(existing.as_ref(), &invite, alias, ops::now_ms())?;
        self.store.contacts().put(&contact).map_err(OpError::from)?;
        self.enqueue_contact_request(invite.peer_id, invite.token)?;
        for addr in &invite.addrs {
            self.swarm.add_peer_address(invite.peer_id, addr.clone());
        }
        let view = ContactView::from(&contact);
        self.contact_changed_when_durable(&view);
        Ok(view)
    }

    /// Add `peer` by its id as [`contact_rules::add_by_peer_id`] says: accept, ask, or
    /// only store a new alias; look its key up if we have none.
    fn add_peer(&mut self, peer: PeerId, alias: Option<String>) -> Result<ContactView, NodeError> {
        if peer == self.me {
            return Err(NodeError::BadTarget("that is your own peer id".into()));
        }
        let existing = self.store.contacts().get(&peer).map_err(OpError::from)?;
        let adding = contact_rules::add_by_peer_id(existing, peer, alias, ops::now_ms());
        if let Adding::Accept(contact) = &adding {
            let accepted = ops::accept(&self.store, contact, self.config.display_name.as_deref())?;
            // As `kith accept` does: our profile goes with the acceptance, and both
            // leave once durable.
            super::profiles::share(&self.store, &self.me, &peer)?;
            self.flusher.after_flush(AfterFlush::ReloadOutbox);
            return Ok(ContactView::from(&accepted));
        }
        let contact = adding.contact();
        self.store.contacts().put(contact).map_err(OpError::from)?;
        if matches!(adding, Adding::Request(_)) {
            self.enqueue_contact_request(peer, None)?;
        }
        if contact.e2e_public.is_none() {
            self.lookup(peer);
        }
        let view = ContactView::from(contact);
        self.contact_changed_when_durable(&view);
        Ok(view)
    }

    /// Pick up outbox entries written by local operations (or a previous run).
    ///
    /// Entries for a contact with presealed messages not queued yet (waiting for
    /// their flush) are left for the reload after that batch: queued now, they
    /// would go first, sealed at keys after the batch's, and the contact, which
    /// keeps only 40 skipped keys, would refuse the batch's older ones for good.
    fn reload_outbox(&mut self) {
        let mut entries = match self.store.outbox().list() {
            Ok(entries) => entries,
            Err(e) => {
                tracing::error!(error = %e, "reading the outbox failed");
                return;
            }
        };
        entries.retain(|e| !self.unflushed_sends.contains(&e.id));
        let finished = self.finished_send_batches;
        let (presealed, queues) = (&self.presealed_staged, &self.queues);
        let mut left = false;
        entries.retain(|e| {
            let waits = matches!(e.recipient, Recipient::Peer(p) if presealed.waits(&p, finished))
                && !queues.is_queued(&e.id);
            left |= waits;
            !waits
        });
        self.reload_after_sends |= left;
        let (group_entries, entries): (Vec<OutboxEntry>, Vec<OutboxEntry>) =
            entries.into_iter().partition(|e| matches!(e.recipient, Recipient::Group(_)));
        self.load_group_outbox(group_entries);
        for bad in self.queues.load(entries, Instant::now()) {
            tracing::warn!(recipient = %bad.recipient, "dropping outbox entry with an invalid recipient");
            self.store.outbox().remove(bad.id).or_log("removing an outbox entry with an invalid recipient");
        }
        for peer in self.queues.ready(Instant::now()) {
            self.dispatch(peer);
        }
    }

    fn drop_queues_of_blocked(&mut self) {
        let Ok(contacts) = self.store.contacts().list() else { return };
        for c in contacts.iter().filter(|c| c.state == ContactState::Blocked) {
            if self.queues.has_pending(&c.peer_id) {
                // Kept in the outbox; they go out if the contact is unblocked.
                self.queues.forget(&c.peer_id);
            }
        }
    }

    /// Dial `peer` unless connected: with `addrs`, its stored addresses if it is a
    /// contact, and whatever the behaviours know (a file fetch then opens its stream
    /// on the connection).
    fn reach(&mut self, peer: PeerId, mut addrs: Vec<Multiaddr>) {
        if self.connected.contains(&peer) || peer == self.me {
            return;
        }
        if let Ok(Some(contact)) = self.store.contacts().get(&peer) {
            if contact.state == ContactState::Blocked {
                return;
            }
            addrs.extend(contact.addrs);
        }
        let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(peer)
            .condition(libp2p::swarm::dial_opts::PeerCondition::DisconnectedAndNotDialing)
            .addresses(addrs)
            .extend_addresses_through_behaviour()
            .build();
        if let Err(e) = self.swarm.dial(opts) {
            tracing::debug!(%peer, error = %e, "cannot dial a file source");
        }
    }

    // ---- delivery: in `actor/delivery.rs` ----------------------------------

    // ---- discovery ------------------------------------------------------------

    fn bootstrap(&mut self) {
        // Pinned relays usually serve the DHT too; they make good entry points.
        let mut bootstrap = self.config.bootstrap.clone();
        bootstrap.extend(self.config.relays.iter().filter(|r| !bootstrap.contains(r)).cloned().collect::<Vec<_>>());
        for addr in bootstrap {
            let Some(Protocol::P2p(peer)) = addr.iter().last() else {
                tracing::warn!(%addr, "bootstrap address lacks /p2p/<peer id>; dialing without adding to the DHT");
                let _ = self.swarm.dial(addr);
                continue;
            };
            self.swarm.behaviour_mut().kad.add_address(&peer, addr.clone());
            if let Err(e) = self.swarm.dial(addr.clone()) {
                tracing::warn!(%addr, error = %e, "cannot dial bootstrap peer");
            }
        }
        if !self.config.bootstrap.is_empty() || !self.config.relays.is_empty() {
            let _ = self.swarm.behaviour_mut().kad.bootstrap();
        }
    }

    fn learn_contact_addresses(&mut self) {
        let Ok(contacts) = self.store.contacts().list() else { return };
        for c in contacts {
            for addr in c.addrs {
                self.swarm.add_peer_address(c.peer_id, addr);
            }
        }
    }

    /// Tell our contacts we are back: a connection wakes their queues for us (and ours
    /// for them), so mail waiting on either side flows without waiting for a retry.
    fn dial_contacts(&mut self) {
        let Ok(contacts) = self.store.contacts().list() else { return };
        for c in contacts.iter().filter(|c| c.state == ContactState::Accepted).take(STARTUP_DIALS) {
            if c.addrs.is_empty() {
                continue;
            }
            let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(c.peer_id).addresses(c.addrs.clone()).build();
            let _ = self.swarm.dial(opts);
        }
    }

    fn lookup(&mut self, peer: PeerId) {
        if !self.directory.should_look_up(peer) {
            return;
        }
        let key = RecordKey::new(&peer_record::dht_key(&peer));
        let query = self.swarm.behaviour_mut().kad.get_record(key);
        self.directory.looking_up(query, peer);
    }

    fn publish_record(&mut self) {
        if !self.directory.should_publish(Instant::now()) {
            return;
        }
        let public = self.config.identity.public();
        let now_secs = ops::now_ms() / 1000;
        let record = PeerRecord {
            peer_id: self.me,
            e2e_public: public.e2e_public,
            binding: public.binding,
            addrs: self.shareable_addrs(),
            relays: self.config.relays.clone(),
            display_name: self.config.display_name.clone(),
            seq: ops::now_ms(),
            expires_at_secs: now_secs + self.config.timers.record_ttl.as_secs(),
        };
        let value = match record.sign(&self.config.identity) {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(error = %e, "signing our peer record failed");
                return;
            }
        };
        let record = Record::new(RecordKey::new(&peer_record::dht_key(&self.me)), value);
        if let Err(e) = self.swarm.behaviour_mut().kad.put_record(record, Quorum::One) {
            tracing::debug!(error = %e, "publishing peer record failed");
        }
    }

    /// A believed record of `peer` (see [`Directory::found`]): its contact follows it,
    /// and mail waiting for the peer tries the addresses it names.
    fn on_record(&mut self, peer: PeerId, record: &PeerRecord) {
        let Ok(Some(mut contact)) = self.store.contacts().get(&peer) else { return };
        let key_changed = directory::apply_record(&mut contact, record, ops::now_ms());
        // Not flushed: a record lost in a crash is looked up again.
        if self.store.contacts().put(&contact).is_err() {
            return;
        }
        if key_changed {
            tracing::warn!(%peer, "a contact's peer record brought a new end-to-end key");
            self.emit(Event::KeyChanged { contact: crate::views::ContactView::from(&contact) });
        }
        for addr in &record.addrs {
            self.swarm.add_peer_address(peer, addr.clone());
        }
        self.queues.wake(&peer, Instant::now());
        self.dispatch(peer);
    }

    fn learned_address(&mut self, peer: PeerId, addr: Multiaddr) {
        self.swarm.add_peer_address(peer, addr.clone());
        self.swarm.behaviour_mut().kad.add_address(&peer, addr);
        if self.queues.has_pending(&peer) && !self.connected.contains(&peer) {
            self.queues.wake(&peer, Instant::now());
            self.dispatch(peer);
        }
    }

    // ---- swarm events ---------------------------------------------------------

    fn swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                if !self.listen_addrs.contains(&address) {
                    self.listen_addrs.push(address.clone());
                }
                self.emit(Event::Listening { addr: address.to_string() });
            }
            SwarmEvent::ConnectionEstablished { peer_id, num_established, endpoint, .. } => {
                let addr = endpoint.get_remote_address().to_string();
                let relayed = endpoint.is_relayed();
                tracing::debug!(%peer_id, %addr, relayed, "connection established");
                self.redials.remove(&peer_id);
                self.failed_dials.remove(&peer_id);
                if num_established.get() == 1 {
                    self.connected.insert(peer_id);
                    self.emit(Event::PeerConnected { peer_id: peer_id.to_string() });
                }
                self.emit(Event::ConnectionOpened { peer_id: peer_id.to_string(), addr, relayed });
                self.queues.wake(&peer_id, Instant::now());
                self.dispatch(peer_id);
                if num_established.get() == 1
                    && let Some(addr) = self.is_pinned_relay(&peer_id)
                {
                    self.start_drain(peer_id, addr);
                }
                if num_established.get() == 1 {
                    self.group_relay_connected(&peer_id);
                    self.announce(peer_id);
                }
            }
            SwarmEvent::OutgoingConnectionError { peer_id: Some(peer), error, .. } if self.queues.has_pending(&peer) => {
                tracing::debug!(%peer, %error, "dial failed");
                // Reported before the failed requests, which `on_failure` checks.
                let tried = match error {
                    DialError::Transport(attempts) => attempts.into_iter().map(|(addr, _)| addr).collect(),
                    _ => Vec::new(),
                };
                self.failed_dials.insert(peer, tried);
            }
            SwarmEvent::ConnectionClosed { peer_id, num_established: 0, .. } => {
                self.connected.remove(&peer_id);
                self.request_size.disconnected(&peer_id);
                self.emit(Event::PeerDisconnected { peer_id: peer_id.to_string() });
            }
            SwarmEvent::Behaviour(event) => self.behaviour_event(event),
            SwarmEvent::IncomingConnectionError { send_back_addr, error: ListenError::Denied { cause }, .. } => {
                if let Some(refusal) = conn_limits::refusal(&cause) {
                    tracing::debug!(addr = %send_back_addr, limit = refusal.limit().as_str(), %refusal, "connection refused");
                }
            }
            _ => {}
        }
    }

    fn behaviour_event(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Dm(request_response::Event::Message { peer, message, .. }) => match message {
                request_response::Message::Request { request, channel, .. } => {
                    self.on_request(request, channel);
                }
                request_response::Message::Response { request_id, response } => {
                    self.on_response(peer, request_id, response);
                }
            },
            BehaviourEvent::Dm(request_response::Event::OutboundFailure { peer, request_id, error, .. }) => {
                self.on_failure(peer, request_id, &error);
            }
            BehaviourEvent::Dm(request_response::Event::InboundFailure { peer, error, .. }) => {
                tracing::debug!(%peer, %error, "inbound delivery failed");
            }
            BehaviourEvent::Mailbox(event) => self.mailbox_event(event),
            BehaviourEvent::Grouplog(event) => self.grouplog_event(event),
            BehaviourEvent::Gossipsub(event) => self.gossip_event(event),
            BehaviourEvent::Kad(kad::Event::OutboundQueryProgressed { id, result, step, .. }) => {
                self.kad_progress(id, result, step.last);
            }
            BehaviourEvent::Kad(kad::Event::RoutingUpdated { is_new_peer: true, .. }) => {
                self.publish_record();
            }
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                // Known only while connected: a peer may come back as an older version.
                let takes_large = info.protocols.contains(&dm::PROTOCOL_V2) && self.connected.contains(&peer_id);
                self.request_size.identified(peer_id, takes_large);
                for addr in info.listen_addrs {
                    self.learned_address(peer_id, addr);
                }
            }
            BehaviourEvent::Autonat(autonat::Event::StatusChanged { new, .. }) => {
                self.reachability = super::reachability::verdict(&new);
                tracing::info!(reachability = %self.reachability, "AutoNAT status changed");
            }
            BehaviourEvent::Dcutr(dcutr::Event { remote_peer_id, result }) => match result {
                Ok(connection) => {
                    tracing::info!(peer = %remote_peer_id, ?connection, "hole punch succeeded: direct connection");
                }
                Err(error) => tracing::info!(peer = %remote_peer_id, %error, "hole punch failed; staying relayed"),
            },
            BehaviourEvent::Mdns(mdns::Event::Discovered(found)) => {
                for (peer, addr) in found {
                    self.learned_address(peer, addr);
                }
            }
            BehaviourEvent::Ping(ping::Event { peer, connection, result: Err(error) }) if !ping_unsupported(&error) => {
                // A partition drops packets without resetting anything: the connection
                // would look alive for as long as TCP retransmits (many minutes). A
                // failed ping closes it, so `status` and the queues see the peer gone
                // and deliveries take the relays. A peer that does not speak ping says
                // nothing about the path, so its connection stays.
                tracing::info!(%peer, %error, "ping failed; closing the connection");
                self.swarm.close_connection(connection);
            }
            _ => {}
        }
    }

    fn kad_progress(&mut self, id: QueryId, result: QueryResult, last: bool) {
        if let QueryResult::GetRecord(Ok(kad::GetRecordOk::FoundRecord(found))) = &result
            && let Some(record) = self.directory.found(&id, &found.record.value, ops::now_ms() / 1000)
        {
            self.on_record(record.peer_id, &record);
        }
        if let QueryResult::PutRecord(Err(e)) = &result {
            tracing::debug!(error = %e, "peer record publication incomplete");
        }
        if last {
            self.directory.query_done(&id);
        }
    }
}

/// After a failed flush: nothing in `results` may be reported as stored or taken,
/// so the sender keeps it and tries again.
fn unstored(results: &mut [DmResult]) {
    for r in results {
        if !matches!(r, DmResult::Rejected(_)) {
            *r = DmResult::Rejected(RejectReason::Storage);
        }
    }
}

/// The settings key remembering which concrete address a listen template got.
fn listen_setting(template: &Multiaddr) -> String {
    format!("listen:{template}")
}

/// For a template with port 0, the concrete address it had last time, so contacts'
/// stored addresses stay valid across restarts.
fn remembered_listen_addr(store: &Store, template: &Multiaddr) -> Option<Multiaddr> {
    let ephemeral = template.iter().any(|p| matches!(p, Protocol::Tcp(0) | Protocol::Udp(0)));
    if !ephemeral {
        return None;
    }
    let previous: Multiaddr = store.settings().get::<String>(&listen_setting(template)).ok().flatten()?.parse().ok()?;
    let port = previous.iter().find_map(|p| match p {
        Protocol::Tcp(port) | Protocol::Udp(port) => Some(port),
        _ => None,
    })?;
    // Same template (so 0.0.0.0 stays all interfaces), previous port.
    Some(
        template
            .iter()
            .map(|p| match p {
                Protocol::Tcp(0) => Protocol::Tcp(port),
                Protocol::Udp(0) => Protocol::Udp(port),
                other => other,
            })
            .collect(),
    )
}

fn remember_listen_addr(store: &Store, template: &Multiaddr, address: &Multiaddr) {
    let saved = store.settings().set(&listen_setting(template), &address.to_string()).and_then(|_| store.flush());
    if let Err(e) = saved {
        tracing::warn!(error = %e, "cannot remember the listen port");
    }
}

/// Shutdown is handled in the loop before dispatching to `command`.
fn unreachable_shutdown() {
    tracing::error!("shutdown reached the command handler");
}

/// The event of a contact's presence change.
fn presence_event(change: super::presence::Change) -> Event {
    Event::Presence { peer_id: change.peer_id, online: change.online, last_seen: change.last_seen }
}

/// Whether a ping failed because the peer does not speak ping. Streams are
/// negotiated lazily, so that refusal usually arrives as the pong's read error
/// rather than as [`ping::Failure::Unsupported`].
fn ping_unsupported(error: &ping::Failure) -> bool {
    match error {
        ping::Failure::Unsupported => true,
        ping::Failure::Other { error } => {
            error.downcast_ref::<std::io::Error>().is_some_and(crate::streams::refused_protocol)
        }
        _ => false,
    }
}
