//! Voice calls: the call in progress (what the call bar shows), the incoming-call
//! window, `/call`, `/answer`, `/hangup` and `/mute`, the node's call events, and
//! the polling that keeps levels and the duration current. `/call` in a group joins
//! its voice room, and `/mute` and `/hangup` with no call act on the room
//! (`room.rs`).
//!
//! The node runs one call at a time (a second caller hears "busy"), so the state
//! holds at most one [`CallInfo`]. It is filled by `/call` at once (before the node
//! has named the call) or by a `call_ringing` event, moved on by the other events
//! and by the answers to call requests, refreshed by `calls` about every 400 ms
//! while it lasts ([`Action::CallTick`](crate::action::Action::CallTick), one
//! request at a time), and dropped when `call_ended` comes — or when a poll finds
//! it in the history, should that event have been missed. The ids of ended calls
//! are remembered for a while, so a poll answer overtaken by the end cannot bring
//! a call back.
//!
//! Calls are placed and answered without audio files: the node uses the default
//! microphone and speaker when built with `audio-devices`, else silence.

use crossterm::event::{KeyCode, KeyEvent};
use kith_p2p::call::{CallState, CallView, EndReason};
use kith_p2p::kith_storage::ContactState;
use kith_p2p::views::CallRecordView;

use super::{App, NodeState, Overlay};
use crate::action::{CallOp, Effect};
use crate::commands::Command;
use crate::text;

/// How many ended calls' ids are remembered (see the module header).
const ENDED_MAX: usize = 16;
/// Polls in a row that may find the call neither in progress nor in the history
/// before it is dropped as over: the node writes the history just after the end, so
/// one miss is normal; this many (about 3 s) mean it is gone for good.
const MISSES_MAX: u8 = 8;
/// Ended calls asked for with each poll (a call that just ended is among them).
pub(crate) const HISTORY_ASKED: usize = 8;

/// A call as the interface keeps it: the node's [`CallView`] with the levels in
/// whole percent (so states compare exactly), and no id while `/call` waits for the
/// node to name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallInfo {
    /// The call's id (hex); `None` until the node answered `/call`.
    pub id: Option<String>,
    /// The other side's peer id.
    pub peer: String,
    /// Whether we placed it.
    pub outgoing: bool,
    /// Where it stands.
    pub state: CallState,
    /// When it was placed or rang here (Unix ms), if known.
    pub started_at_ms: Option<u64>,
    /// When it was answered (Unix ms).
    pub answered_at_ms: Option<u64>,
    /// Whether our side is muted.
    pub muted: bool,
    /// Our outgoing level, 0–100.
    pub input_level: u8,
    /// The peer's level, 0–100.
    pub output_level: u8,
    /// Whether the peer is speaking now.
    pub peer_speaking: bool,
}

impl From<&CallView> for CallInfo {
    fn from(view: &CallView) -> CallInfo {
        CallInfo {
            id: Some(view.id.clone()),
            peer: view.peer.clone(),
            outgoing: view.outgoing,
            state: view.state,
            started_at_ms: Some(view.started_at_ms),
            answered_at_ms: view.answered_at_ms,
            muted: view.muted,
            input_level: level(view.input_level),
            output_level: level(view.output_level),
            peer_speaking: view.peer_speaking,
        }
    }
}

/// A level of 0.0–1.0 in whole percent (anything else clamped; NaN is 0).
pub fn level(value: f32) -> u8 {
    if value.is_nan() { 0 } else { (value.clamp(0.0, 1.0) * 100.0).round() as u8 }
}

/// A call's length as `mm:ss`, or `h:mm:ss` from an hour on.
pub fn duration(ms: u64) -> String {
    let secs = ms / 1000;
    if secs >= 3600 {
        format!("{}:{:02}:{:02}", secs / 3600, (secs / 60) % 60, secs % 60)
    } else {
        format!("{:02}:{:02}", secs / 60, secs % 60)
    }
}

/// How far a call got, to keep a late answer from moving it back.
fn rank(state: CallState) -> u8 {
    match state {
        CallState::Calling => 0,
        CallState::Ringing => 1,
        CallState::Connecting => 2,
        CallState::Active => 3,
        CallState::Ended => 4,
    }
}

/// `peer`'s name as the interface shows it elsewhere: the contact's, else a short
/// peer id.
pub(crate) fn name(app: &App, peer: &str) -> String {
    app.conversation(peer)
        .filter(|c| c.contact().is_some())
        .map_or_else(|| text::short_peer(peer), |c| text::sanitize_line(c.label()))
}

/// Whether the call kept is the one the node calls `id` with `peer` (a call `/call`
/// placed and the node has not named yet is matched by its peer).
fn is_ours(app: &App, id: &str, peer: &str) -> bool {
    app.call.as_ref().is_some_and(|c| match &c.id {
        Some(known) => known == id,
        None => c.outgoing && c.peer == peer,
    })
}

fn has_ended(app: &App, id: &str) -> bool {
    app.ended_calls.iter().any(|e| e == id)
}

fn remember_ended(app: &mut App, id: String) {
    if app.ended_calls.len() >= ENDED_MAX {
        app.ended_calls.pop_front();
    }
    app.ended_calls.push_back(id);
}

/// Close the incoming-call window (if open).
fn close_window(app: &mut App) {
    if matches!(app.overlay, Some(Overlay::IncomingCall { .. })) {
        app.overlay = None;
    }
}

/// Ask for the calls now, unless a poll is on its way or there is no node.
pub(super) fn sync(app: &mut App, fx: &mut Vec<Effect>) {
    if app.node == NodeState::Connected && !app.calls_loading {
        app.calls_loading = true;
        fx.push(Effect::LoadCalls);
    }
}

/// [`Action::CallTick`](crate::action::Action::CallTick): poll while a call lasts.
pub(super) fn poll(app: &mut App, fx: &mut Vec<Effect>) {
    if app.call.is_some() {
        sync(app, fx);
    }
}

/// The node went away: what it said of calls no longer holds (a restarted node has
/// none); the reload after reconnecting reads them again.
pub(super) fn forget(app: &mut App) {
    app.call = None;
    app.calls_loading = false;
    close_window(app);
}

/// Take in what the node says of a call (an answer or a poll): the kept call moves
/// on (never back), or becomes this one when none is kept. Returns whether it was
/// adopted (not kept before).
fn take_in(app: &mut App, info: CallInfo) -> bool {
    let Some(id) = info.id.clone() else { return false };
    if info.state == CallState::Ended || has_ended(app, &id) {
        return false;
    }
    app.call_misses = 0;
    if is_ours(app, &id, &info.peer)
        && let Some(kept) = &mut app.call
    {
        let state = if rank(kept.state) > rank(info.state) { kept.state } else { info.state };
        let answered_at_ms = info.answered_at_ms.or(kept.answered_at_ms);
        *kept = CallInfo { state, answered_at_ms, ..info };
        return false;
    }
    let ringing_here = !info.outgoing && info.state == CallState::Ringing;
    let (call, peer) = (id, info.peer.clone());
    app.call = Some(info);
    if ringing_here {
        app.overlay = Some(Overlay::IncomingCall { call, peer });
    }
    true
}

// ---- events ----------------------------------------------------------------------------

/// `call_ringing`: someone calls us (the window opens, the bell rings), or the
/// callee's node rings for our call.
pub(super) fn on_ringing(app: &mut App, call: String, peer: String, outgoing: bool, fx: &mut Vec<Effect>) {
    if has_ended(app, &call) {
        return;
    }
    let who = name(app, &peer);
    if outgoing {
        if is_ours(app, &call, &peer)
            && let Some(kept) = &mut app.call
        {
            kept.id = Some(call);
            if rank(kept.state) < rank(CallState::Ringing) {
                kept.state = CallState::Ringing;
            }
        } else {
            take_in(app, ringing(call, peer, true, app.now_ms));
        }
        app.set_status(format!("ringing {who}…"), false);
        return;
    }
    take_in(app, ringing(call.clone(), peer.clone(), false, app.now_ms));
    app.overlay = Some(Overlay::IncomingCall { call, peer });
    app.set_status(format!("{who} is calling: Enter answers, Esc declines"), false);
    super::node::notify(app, &who, "is calling you", fx);
}

fn ringing(call: String, peer: String, outgoing: bool, now: Option<u64>) -> CallInfo {
    CallInfo {
        id: Some(call),
        peer,
        outgoing,
        state: CallState::Ringing,
        started_at_ms: now,
        answered_at_ms: None,
        muted: false,
        input_level: 0,
        output_level: 0,
        peer_speaking: false,
    }
}

/// `call_answered` (`active` false) or `call_connected` (`active` true).
pub(super) fn on_progress(app: &mut App, call: String, peer: String, active: bool, fx: &mut Vec<Effect>) {
    if has_ended(app, &call) {
        return;
    }
    if !is_ours(app, &call, &peer) {
        // A call this interface did not see start (it missed events): read it.
        return sync(app, fx);
    }
    let now = app.now_ms;
    let Some(kept) = &mut app.call else { return };
    kept.id = Some(call);
    let state = if active { CallState::Active } else { CallState::Connecting };
    if rank(kept.state) < rank(state) {
        kept.state = state;
    }
    if kept.answered_at_ms.is_none() {
        kept.answered_at_ms = now;
    }
    let outgoing = kept.outgoing;
    close_window(app);
    if outgoing && !active {
        let who = name(app, &peer);
        app.set_status(format!("{who} answered"), false);
    }
}

/// `call_speaking`: the peer started or stopped speaking.
pub(super) fn on_speaking(app: &mut App, call: &str, peer: &str, speaking: bool) {
    if is_ours(app, call, peer)
        && let Some(kept) = &mut app.call
    {
        kept.peer_speaking = speaking;
    }
}

/// `call_ended`: say how, and note a missed call in its conversation.
pub(super) fn on_ended(app: &mut App, call: String, peer: String, reason: EndReason, duration_ms: u64) {
    if has_ended(app, &call) {
        return;
    }
    let kept = if is_ours(app, &call, &peer) { app.call.take() } else { None };
    if matches!(&app.overlay, Some(Overlay::IncomingCall { call: open, .. }) if *open == call) || kept.is_some() {
        close_window(app);
    }
    remember_ended(app, call);
    let End { outgoing, answered, started_at_ms } = match &kept {
        Some(c) => {
            End { outgoing: Some(c.outgoing), answered: c.answered_at_ms.is_some(), started_at_ms: c.started_at_ms }
        }
        // Not seen start: only a call we placed can be unreachable, refused or busy.
        None => End {
            outgoing: matches!(reason, EndReason::Unreachable | EndReason::Refused | EndReason::Busy).then_some(true),
            answered: duration_ms > 0,
            started_at_ms: None,
        },
    };
    finish(app, &peer, End { outgoing, answered, started_at_ms }, reason, duration_ms);
}

/// What is known of an ended call besides its reason.
struct End {
    /// Whether we placed it, if known.
    outgoing: Option<bool>,
    /// Whether it was answered.
    answered: bool,
    /// When it was placed or rang here.
    started_at_ms: Option<u64>,
}

/// Say in the status line how a call ended; a missed call is also noted in the
/// conversation with its caller ("missed call from NAME at HH:MM").
fn finish(app: &mut App, peer: &str, end: End, reason: EndReason, duration_ms: u64) {
    let who = name(app, peer);
    let missed =
        end.outgoing == Some(false) && !end.answered && matches!(reason, EndReason::NoAnswer | EndReason::RemoteHungUp);
    let (text, error) = ended_text(&who, end.outgoing, end.answered, reason, duration_ms);
    app.set_status(text, error);
    if missed {
        let at =
            end.started_at_ms.or(app.now_ms).map(|ms| format!(" at {}", text::clock(ms, app.config.utc_offset_secs)));
        let line = format!("missed call from {who}{}", at.unwrap_or_default());
        if let Some(conv) = app.conversation_mut(peer) {
            conv.add_notice(line);
        }
    }
}

/// How a call with `who` ended, for the status line, and whether that is a failure.
pub(crate) fn ended_text(
    who: &str,
    outgoing: Option<bool>,
    answered: bool,
    reason: EndReason,
    duration_ms: u64,
) -> (String, bool) {
    let took = if answered { format!(" · {}", duration(duration_ms)) } else { String::new() };
    let incoming = outgoing == Some(false);
    match reason {
        EndReason::HungUp if !answered && outgoing == Some(true) => (format!("cancelled the call to {who}"), false),
        EndReason::HungUp => (format!("call with {who} ended: you hung up{took}"), false),
        EndReason::RemoteHungUp | EndReason::NoAnswer if incoming && !answered => {
            (format!("missed call from {who}"), false)
        }
        EndReason::RemoteHungUp if answered => (format!("call with {who} ended: {who} hung up{took}"), false),
        EndReason::RemoteHungUp => (format!("{who} hung up"), false),
        EndReason::Declined if incoming => (format!("declined the call from {who}"), false),
        EndReason::Declined => (format!("{who} declined the call"), false),
        EndReason::NoAnswer => (format!("{who} did not answer"), false),
        EndReason::Unreachable => (format!("could not reach {who}: offline, or no address known"), true),
        EndReason::Refused => (format!("{who}'s node refused the call (are you their contact?)"), true),
        EndReason::Busy => (format!("{who} is in another call"), false),
        EndReason::Failed => {
            (format!("the call with {who} failed: the audio could not be set up or was lost{took}"), true)
        }
    }
}

/// A reason as the history spells it.
fn parse_reason(reason: &str) -> Option<EndReason> {
    serde_json::from_value(serde_json::Value::String(reason.to_owned())).ok()
}

// ---- answers ---------------------------------------------------------------------------

/// A call request succeeded.
pub(super) fn on_response(app: &mut App, op: CallOp, info: CallInfo) {
    let who = name(app, &info.peer);
    match op {
        // `call_ended` says how it ended.
        CallOp::Hangup => return,
        CallOp::Mute => {
            app.set_status(
                if info.muted { format!("muted: {who} hears nothing") } else { "unmuted".to_owned() },
                false,
            );
        }
        CallOp::Call if app.call.as_ref().is_some_and(|c| rank(c.state) <= rank(CallState::Ringing)) => {
            app.set_status(format!("ringing {who}…"), false);
        }
        CallOp::Call | CallOp::Answer => {}
    }
    take_in(app, info);
}

/// The answer to a poll: the calls in progress and the newest ended ones.
pub(super) fn on_calls(app: &mut App, active: Vec<CallInfo>, history: Vec<CallRecordView>) {
    app.calls_loading = false;
    let Some(kept) = app.call.clone() else {
        // None kept: a call going on since before the interface started (or
        // reconnected) is shown, a ringing one with its window.
        if let Some(info) = active.into_iter().find(|c| c.id.as_deref().is_some_and(|id| !has_ended(app, id))) {
            take_in(app, info);
        }
        return;
    };
    let Some(id) = kept.id else {
        // `/call` is on its way: the node may list it already.
        if let Some(info) = active.into_iter().find(|c| c.outgoing && c.peer == kept.peer) {
            take_in(app, info);
        }
        return;
    };
    if let Some(info) = active.into_iter().find(|c| c.id.as_deref() == Some(id.as_str())) {
        take_in(app, info);
    } else if let Some(record) = history.iter().rev().find(|r| r.id == id) {
        // Over, and its `call_ended` was missed (or is still on its way).
        app.call = None;
        close_window(app);
        remember_ended(app, id);
        let end = End {
            outgoing: Some(record.outgoing),
            answered: record.answered_at.is_some(),
            started_at_ms: Some(record.started_at),
        };
        match parse_reason(&record.reason) {
            Some(reason) => finish(app, &record.peer, end, reason, record.duration_ms),
            None => app.set_status(format!("call with {} ended: {}", name(app, &record.peer), record.reason), false),
        }
    } else {
        app.call_misses += 1;
        if app.call_misses >= MISSES_MAX {
            app.call = None;
            app.call_misses = 0;
            close_window(app);
            remember_ended(app, id);
            let who = name(app, &kept.peer);
            app.note(format!("the call with {who} is over (the node no longer has it)"), false);
        }
    }
}

/// A call request failed; `false` if `effect` is not one.
pub(super) fn on_failure(app: &mut App, effect: &Effect, error: &str) -> bool {
    // Ended before the request was through: `call_ended` says how.
    let ended = error.starts_with("the call ended");
    match effect {
        Effect::LoadCalls => {
            // Quiet: the next poll tries again, and the status line says when the node is away.
            app.calls_loading = false;
            tracing::debug!(%error, "reading the calls failed");
        }
        Effect::Call { contact } => {
            if app.call.as_ref().is_some_and(|c| c.id.is_none()) {
                app.call = None;
            }
            if !ended {
                let who = name(app, contact);
                app.set_status(format!("calling {who}: {error}"), true);
            }
        }
        Effect::Answer { .. } if !ended => app.set_status(format!("answering: {error}"), true),
        Effect::Answer { .. } => {}
        Effect::Hangup { .. } => app.set_status(format!("hanging up: {error}"), true),
        Effect::Mute { muted, .. } => {
            app.set_status(format!("{}: {error}", if *muted { "muting" } else { "unmuting" }), true);
        }
        _ => return false,
    }
    true
}

// ---- commands and keys -----------------------------------------------------------------

/// Run `/call`, `/answer`, `/hangup` or `/mute`.
pub(super) fn command(app: &mut App, command: Command, fx: &mut Vec<Effect>) {
    match command {
        Command::Call(who) => place(app, who, fx),
        Command::Answer => answer(app, fx),
        Command::Hangup => hangup(app, fx),
        Command::Mute => mute(app, fx),
        _ => {}
    }
}

/// `/call [contact]`: call the contact named, or the open conversation's.
fn place(app: &mut App, who: Option<String>, fx: &mut Vec<Effect>) {
    if let Some(kept) = &app.call {
        let other = name(app, &kept.peer);
        app.set_status(format!("already in a call with {other}: /hangup first"), true);
        return;
    }
    let conv = match &who {
        Some(who) => {
            let wanted = who.to_lowercase();
            let found = app.conversations.iter().find(|c| c.peer_id() == who || c.label().to_lowercase() == wanted);
            let Some(conv) = found else {
                app.set_status(format!("no contact named {who}"), true);
                return;
            };
            conv
        }
        None => match app.focused() {
            Some(conv) => conv,
            None => {
                app.set_status("no conversation open: open the contact to call (Ctrl+K), or /call <contact>", true);
                return;
            }
        },
    };
    let Some(contact) = conv.contact() else {
        // A group's call is its voice room.
        if who.is_none() {
            super::room::join_open(app, fx);
        } else {
            let name = text::sanitize_line(conv.label());
            app.set_status(format!("/call calls one contact: open #{name}, then /room joins its voice room"), true);
        }
        return;
    };
    let who = text::sanitize_line(contact.label());
    if contact.state != ContactState::Accepted {
        let why = match contact.state {
            ContactState::PendingIn => format!("accept {who}'s request first (/accept), then call"),
            ContactState::PendingOut => format!("{who} has not accepted your request yet: calls are between contacts"),
            _ => format!("{who} is not a contact you can call"),
        };
        app.set_status(why, true);
        return;
    }
    let peer = contact.peer_id.clone();
    app.call = Some(CallInfo {
        id: None,
        peer: peer.clone(),
        outgoing: true,
        state: CallState::Calling,
        started_at_ms: app.now_ms,
        answered_at_ms: None,
        muted: false,
        input_level: 0,
        output_level: 0,
        peer_speaking: false,
    });
    app.call_misses = 0;
    app.set_status(format!("calling {who}…"), false);
    fx.push(Effect::Call { contact: peer });
}

/// `/answer`, Enter on the call window: answer the ringing call.
fn answer(app: &mut App, fx: &mut Vec<Effect>) {
    let Some(kept) = &mut app.call else {
        close_window(app);
        app.set_status("no call is ringing", true);
        return;
    };
    if kept.outgoing || kept.state != CallState::Ringing {
        let peer = kept.peer.clone();
        let who = name(app, &peer);
        app.set_status(format!("nothing to answer: you are in a call with {who}"), true);
        return;
    }
    kept.state = CallState::Connecting;
    let (id, peer) = (kept.id.clone(), kept.peer.clone());
    close_window(app);
    let who = name(app, &peer);
    app.set_status(format!("answering {who}…"), false);
    fx.push(Effect::Answer { call: id });
}

/// `/hangup`, Esc on the call window: hang up, or decline a ringing call.
fn hangup(app: &mut App, fx: &mut Vec<Effect>) {
    let Some(kept) = &app.call else {
        close_window(app);
        if !super::room::hang_up(app, fx) {
            app.set_status("no call to hang up", true);
        }
        return;
    };
    let (id, who) = (kept.id.clone(), name(app, &kept.peer));
    let declining = !kept.outgoing && kept.state == CallState::Ringing;
    close_window(app);
    app.set_status(if declining { format!("declining the call from {who}…") } else { "hanging up…".to_owned() }, false);
    fx.push(Effect::Hangup { call: id });
}

/// `/mute`: mute our side, or unmute it; with no call, in the room the bar shows.
fn mute(app: &mut App, fx: &mut Vec<Effect>) {
    let Some(kept) = &app.call else {
        if app.room().is_some() {
            super::room::mute(app, fx);
        } else {
            app.set_status("no call to mute", true);
        }
        return;
    };
    if !kept.outgoing && kept.state == CallState::Ringing {
        app.set_status("answer first (/answer), then /mute", true);
        return;
    }
    fx.push(Effect::Mute { call: kept.id.clone(), muted: !kept.muted });
}

/// A key on the incoming-call window: Enter or `a` answers, Esc or `d` declines.
pub(super) fn key(app: &mut App, key: KeyEvent, fx: &mut Vec<Effect>) {
    match key.code {
        KeyCode::Enter | KeyCode::Char('a' | 'A') => answer(app, fx),
        KeyCode::Esc | KeyCode::Char('d' | 'D') => hangup(app, fx),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_levels() {
        assert_eq!(duration(0), "00:00");
        assert_eq!(duration(83_999), "01:23");
        assert_eq!(duration(3_723_000), "1:02:03");
        assert_eq!(level(0.5), 50);
        assert_eq!(level(1.7), 100);
        assert_eq!(level(-1.0), 0);
        assert_eq!(level(f32::NAN), 0);
    }

    #[test]
    fn reasons_read_back_from_the_history() {
        for reason in [EndReason::HungUp, EndReason::RemoteHungUp, EndReason::NoAnswer, EndReason::Busy] {
            assert_eq!(parse_reason(reason.as_str()), Some(reason));
        }
        assert_eq!(parse_reason("exploded"), None);
    }

    #[test]
    fn how_a_call_ended_reads() {
        let said = |outgoing, answered, reason, ms| ended_text("Алиса", outgoing, answered, reason, ms);
        assert_eq!(said(Some(true), true, EndReason::HungUp, 65_000).0, "call with Алиса ended: you hung up · 01:05");
        assert_eq!(said(Some(true), false, EndReason::HungUp, 0).0, "cancelled the call to Алиса");
        assert_eq!(said(Some(false), false, EndReason::NoAnswer, 0).0, "missed call from Алиса");
        assert_eq!(said(Some(false), false, EndReason::RemoteHungUp, 0).0, "missed call from Алиса");
        assert_eq!(said(Some(true), false, EndReason::NoAnswer, 0).0, "Алиса did not answer");
        assert_eq!(said(Some(false), false, EndReason::Declined, 0).0, "declined the call from Алиса");
        assert_eq!(said(Some(true), false, EndReason::Declined, 0).0, "Алиса declined the call");
        assert!(said(Some(true), false, EndReason::Unreachable, 0).1, "a failure");
        assert!(!said(Some(true), false, EndReason::Busy, 0).1);
    }
}
