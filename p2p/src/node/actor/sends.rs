//! Local sends: composing what callers ask to send, staging a batch of them in one
//! frame of the message log, sealing and sending ahead what may leave before its
//! flush ([`crate::node::send_ahead`]), and queueing the rest once it is durable
//! (docs/PROTOCOL.md, *Delivery*).

use std::collections::HashMap;
use std::time::Instant;

use kith_storage::{Contact, ConversationId, FileRef, Message, OutboxEntry, StoreError};
use libp2p::PeerId;

use super::{Actor, AfterFlush, Composed, MAX_SEND_BATCH, NotedAttachment, SendReply, group_messages};
use crate::node::flusher::FlushFailed;
use crate::node::send_ahead::Staged;
use crate::node::{Command, NodeError, SendRequest};
use crate::ops::{self, OpError};
use crate::views::MessageView;

impl Actor {
    /// Compose `first` and every send already waiting behind it (up to
    /// [`MAX_SEND_BATCH`]) and store them in one transaction; the flusher makes them
    /// durable, then [`Actor::finish_sends`] answers the callers: each hears `Ok` only
    /// once its message is on disk here. 1:1 messages that [`SendAhead`] allows leave
    /// at once, the others after that flush (docs/PROTOCOL.md, *Delivery*). Returns
    /// the command that ended the batch.
    pub(super) fn send_batch(&mut self, first: SendRequest) -> Option<Command> {
        let mut composed = Vec::new();
        let mut attachments = Vec::new();
        let mut lamports = HashMap::new();
        let mut contacts = HashMap::new();
        let mut request = first;
        let ended_by = loop {
            let file = request.attachment.as_deref().map(|a| &a.file);
            let result =
                self.compose_send(&request.contact, &request.text, file, request.link.as_ref(), &mut lamports, &mut contacts);
            if let (Ok(_), Some(a)) = (&result, request.attachment) {
                attachments.push((a.file.blob, a.state, a.path, a.error));
            }
            composed.push((result, request.reply));
            if composed.len() >= MAX_SEND_BATCH {
                break None;
            }
            match self.commands.try_recv() {
                Ok(Command::Send(next)) => request = next,
                Ok(other) => break Some(other),
                Err(_) => break None,
            }
        };
        let items: Vec<(&Message, &OutboxEntry)> =
            composed.iter().filter_map(|(result, _)| result.as_ref().ok().map(|(m, e, _)| (m, e))).collect();
        match self.store.stage_outgoing(&items).and_then(|()| self.note_attachments(&attachments)) {
            Ok(()) => {
                self.unflushed_sends.extend(items.iter().map(|(m, _)| m.id));
                self.send_batches += 1;
                let batch = self.send_batches;
                let mut marked = self.mark_for_sending_ahead(&composed);
                let presealed = self.preseal(&composed);
                if !presealed {
                    marked.clear();
                }
                // Chains started by this batch's seals, or by seals at dispatch since
                // the last batch: their contacts wait for this batch's flush (the
                // next batch marks them again if this one could not). A contact
                // whose mark was never written stays unmarked: its next batch
                // writes one.
                for peer in self.ratchets.take_new_chains() {
                    self.send_ahead.unmark(batch, &peer);
                    if presealed && !marked.contains(&peer) && matches!(self.ratchets.is_marked(&peer), Ok(true)) {
                        marked.push(peer);
                    }
                }
                let ahead = self.send_ahead(&composed);
                self.flusher.after_flush(AfterFlush::Sends { composed, marked, batch });
                for peer in ahead {
                    self.dispatch(peer);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "staging outgoing messages failed");
                for (result, reply) in composed {
                    let _ = reply.send(result.and(Err(NodeError::Op(OpError::NotStored(e.to_string())))));
                }
            }
        }
        ended_by
    }

    /// Marks, for sending ahead, the contacts of a batch's 1:1 messages that have a
    /// ratchet and no durable mark yet (written with the batch's ratchet state).
    /// Returns them.
    pub(super) fn mark_for_sending_ahead(&mut self, composed: &[(Composed, SendReply)]) -> Vec<PeerId> {
        let mut marked = Vec::new();
        for (result, _) in composed {
            let Ok((_, _, group_messages::Dest::Peer(peer))) = result else { continue };
            if !self.send_ahead.needs_mark(peer) || marked.contains(peer) || !matches!(self.ratchets.ready(peer), Ok(true)) {
                continue;
            }
            match self.ratchets.mark_sends_ahead(peer) {
                Ok(_) => marked.push(*peer),
                Err(e) => tracing::warn!(%peer, error = %e, "marking a contact for sending ahead failed; its messages wait for their flush"),
            }
        }
        marked
    }

    /// Queues the batch's 1:1 messages that may leave before their flush
    /// ([`SendAhead::take`] judges every one, in order). Returns their contacts, to
    /// dispatch.
    pub(super) fn send_ahead(&mut self, composed: &[(Composed, SendReply)]) -> Vec<PeerId> {
        if self.store.a_flush_failed() {
            // Any flush of the store: the flushing thread's, a key rotation's, a roll's.
            self.send_ahead.stop();
        }
        let now = Instant::now();
        let mut peers = Vec::new();
        for (result, _) in composed {
            let Ok((message, entry, group_messages::Dest::Peer(peer))) = result else { continue };
            let presealed = self.ratcheted.contains(peer, &entry.id);
            let staged = Staged { peer: *peer, id: entry.id, lamport: message.lamport, eligible: presealed && message.file.is_none() };
            if self.send_ahead.take(staged) {
                self.queues.push(*peer, entry.clone(), now);
                if !peers.contains(peer) {
                    peers.push(*peer);
                }
            }
        }
        peers
    }

    /// After a start that found contacts marked for sending ahead (a crash): their
    /// conversations' next Lamport values go past what the lost messages may have
    /// used (their sessions skipped the keys at load).
    pub(super) fn resume_sends_ahead(&mut self) {
        for peer in self.ratchets.marked_at_load().to_vec() {
            let conversation = ops::direct_conversation(&self.me, &peer);
            let conversations = self.store.conversations();
            let stored = conversations.highest_lamport(conversation);
            conversations.raise_lamport(conversation, stored.saturating_add(crate::ratchet::MAX_SENT_AHEAD as u64));
            self.send_ahead.marked_at_start(peer, stored);
        }
    }

    /// A clean stop: everything sent ahead is flushed by the caller's flush, so the
    /// marks go with it and the next start skips nothing.
    pub(super) fn clear_sends_ahead(&mut self) {
        let cleared = self.ratchets.clear_sends_ahead().and_then(|()| self.ratchets.persist(ops::now_ms()));
        if let Err(e) = cleared {
            tracing::warn!(error = %e, "clearing the marks for sending ahead failed; the next start skips ratchet keys as after a crash");
            self.ratchets.rollback();
        }
    }

    /// Say where the files of staged messages are (their records were started with
    /// the messages); flushed with them.
    pub(super) fn note_attachments(&self, attachments: &[NotedAttachment]) -> Result<(), StoreError> {
        for (blob, state, path, error) in attachments {
            self.store.files().set_state(blob, *state, path.clone(), error.clone())?;
        }
        Ok(())
    }

    /// Staged sends are durable (or their flush failed): answer the callers, then
    /// queue and send the messages not sent ahead.
    pub(super) fn finish_sends(&mut self, composed: Vec<(Composed, SendReply)>, (batch, marked): (u64, Vec<PeerId>), flushed: &Result<(), FlushFailed>) {
        let now = Instant::now();
        let mut peers = Vec::new();
        let mut groups = Vec::new();
        if flushed.is_ok() {
            self.send_ahead.marks_durable(batch, marked);
        }
        self.finished_send_batches = batch;
        self.unsealed_staged.finished(batch);
        self.presealed_staged.finished(batch);
        for (result, reply) in composed {
            if let Ok((message, ..)) = &result {
                if self.unflushed_sends.remove(&message.id) {
                    self.staged_departures += 1;
                }
                if flushed.is_ok() && message.link.as_ref().and_then(kith_storage::Link::changed).is_some() {
                    // Every client sees our edit, delete or reaction, not only the one that asked.
                    let peer = match &result {
                        Ok((_, _, group_messages::Dest::Peer(peer))) => Some(peer.to_string()),
                        _ => None,
                    };
                    match ops::stored_event(&self.store, message, peer.as_deref()) {
                        Ok(Some(event)) => self.emit(event),
                        Ok(None) => {}
                        Err(e) => tracing::warn!(error = %e, "reading a changed message back failed"),
                    }
                }
            }
            let sent_ahead = match &result {
                Ok((message, _, group_messages::Dest::Peer(peer))) => {
                    self.send_ahead.flushed(*peer, message.id, message.lamport, flushed.is_ok())
                }
                _ => false,
            };
            let answer = match (result, flushed) {
                (Ok((message, entry, group_messages::Dest::Peer(peer))), Ok(())) => {
                    if !sent_ahead {
                        self.queues.push(peer, entry, now);
                        if !peers.contains(&peer) {
                            peers.push(peer);
                        }
                    }
                    Ok(MessageView::new(&message, Some(&kith_storage::peer_text(&peer))))
                }
                (Ok((message, entry, group_messages::Dest::Group(group))), Ok(())) => {
                    self.queue_group_message(group, entry);
                    if !groups.contains(&group) {
                        groups.push(group);
                    }
                    Ok(MessageView::new(&message, None))
                }
                (Ok(_), Err(e)) => Err(NodeError::Op(OpError::NotStored(e.to_string()))),
                (Err(e), _) => Err(e),
            };
            let _ = reply.send(answer);
        }
        if std::mem::take(&mut self.reload_after_sends) && flushed.is_ok() {
            // Behind this batch's messages now, the entries left out wait no more.
            // (After a failed flush nothing is sent until a restart, which loads
            // the whole outbox.)
            self.reload_outbox();
        }
        for peer in peers {
            self.dispatch(peer);
        }
        for group in groups {
            self.push_group(group);
        }
    }

    /// Compose one outgoing message to a contact or a group (nothing written yet but
    /// its conversation).
    pub(super) fn compose_send(
        &mut self,
        target: &str,
        text: &str,
        file: Option<&FileRef>,
        link: Option<&kith_storage::Link>,
        lamports: &mut HashMap<ConversationId, u64>,
        contacts: &mut HashMap<String, Contact>,
    ) -> Result<(Message, OutboxEntry, group_messages::Dest), NodeError> {
        // A batch's contacts are resolved once: nothing changes them while it is
        // composed, and a batch is mostly sends to one.
        if !contacts.contains_key(target) {
            let contact = match ops::resolve_target(&self.store, target)? {
                ops::Target::Contact(contact) => contact,
                ops::Target::Group(group) => {
                    let (message, entry) = self.compose_group(&group, text, file, link, lamports)?;
                    return Ok((message, entry, group_messages::Dest::Group(group.id)));
                }
            };
            contacts.insert(target.to_owned(), contact);
        }
        let contact = &contacts[target];
        let peer = contact.peer_id;
        let (message, entry) = ops::compose_text(&self.store, &self.me, contact, text, file, link, lamports)?;
        Ok((message, entry, group_messages::Dest::Peer(peer)))
    }
}
