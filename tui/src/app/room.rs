//! Voice rooms: the groups' voice rooms we are in (what the room bar shows), `/room`
//! (join, leave, mute), `/call` in a group, `/mute` and `/hangup` on a room when no
//! call goes on, the node's room events, and the polling that keeps the level current.
//!
//! The node can be in several rooms at once (one per group), so the state keeps a
//! [`RoomInfo`] per group, in the order they were joined. `/room` adds one at once,
//! joining (the node asks the group's relays, which takes seconds); `room_joined` or
//! the answer, whichever comes first, makes it joined. The events move who is in and
//! who speaks; `rooms`, polled with the calls (about every 400 ms while any room
//! lasts, one request at a time), brings the level and corrects the rest.
//! `room_left` or the answer to `/room leave`, whichever comes first, drops it and
//! says why.
//!
//! Two races are guarded. A poll answer that was on its way while we left cannot
//! bring the room back: the group is remembered as left until a poll agrees or we
//! join again. A poll answer that overtook our join does not drop the room: only
//! [`MISSES_MAX`] polls in a row without it do.

use std::collections::HashSet;

use kith_p2p::call::voice_room::{LeftReason, RoomView};

use super::{App, NodeState, member_label};
use crate::action::{Effect, RoomOp};
use crate::commands::RoomCommand;
use crate::text;

/// Rooms kept at most: far more than anyone talks in at once (the node keeps two
/// per relay); a node listing more shows its first ones.
const ROOMS_MAX: usize = 16;
/// Groups remembered as left (see the module header); the oldest is forgotten first.
const LEFT_MAX: usize = 16;
/// Polls in a row that may not list a joined room before it is dropped as over:
/// one that overtook the join is normal, this many (about 1.2 s) mean it is gone
/// and its `room_left` was missed.
const MISSES_MAX: u8 = 3;

/// Where we stand in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomState {
    /// `/room` asked the node to join; no relay has taken us in yet.
    Joining,
    /// In: media flows to and from the room's forwarder.
    Joined,
    /// `/room leave` is on its way.
    Leaving,
}

/// A voice room as the interface keeps it: the node's [`RoomView`] with the level
/// in whole percent (so states compare exactly), where we stand, and since when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomInfo {
    /// The group's id.
    pub group: String,
    /// The group's name as the node gave it (empty until it did).
    pub name: String,
    /// Where we stand.
    pub state: RoomState,
    /// Who is in (peer ids, us included once the node said), in the order they
    /// were first seen, so the bar does not reshuffle as people come and go.
    pub participants: Vec<String>,
    /// Who speaks now (peer ids, sorted; never us).
    pub speaking: Vec<String>,
    /// Whether our side is muted.
    pub muted: bool,
    /// The level of what we hear (everyone mixed), 0–100.
    pub output_level: u8,
    /// When we got in (Unix ms), if this interface saw it.
    pub joined_at_ms: Option<u64>,
    /// Polls in a row that did not list it.
    misses: u8,
}

impl From<&RoomView> for RoomInfo {
    fn from(view: &RoomView) -> RoomInfo {
        let mut speaking = view.speaking.clone();
        speaking.sort();
        RoomInfo {
            group: view.group.clone(),
            name: view.name.clone(),
            state: RoomState::Joined,
            participants: view.participants.clone(),
            speaking,
            muted: view.muted,
            output_level: super::level(view.output_level),
            joined_at_ms: None,
            misses: 0,
        }
    }
}

impl RoomInfo {
    /// A room of `group` we are joining, or got into at `at` unseen.
    fn new(group: &str, state: RoomState, at: Option<u64>) -> RoomInfo {
        RoomInfo {
            group: group.to_owned(),
            name: String::new(),
            state,
            participants: Vec::new(),
            speaking: Vec::new(),
            muted: false,
            output_level: 0,
            joined_at_ms: at,
            misses: 0,
        }
    }

    /// Whether `peer` speaks now.
    pub fn is_speaking(&self, peer: &str) -> bool {
        self.speaking.binary_search_by(|p| p.as_str().cmp(peer)).is_ok()
    }
}

/// The room the bar shows: the open group's, else the one joined last.
pub(super) fn shown(app: &App) -> Option<&RoomInfo> {
    let focused = app.focused.as_deref();
    app.rooms.iter().find(|r| Some(r.group.as_str()) == focused).or_else(|| app.rooms.last())
}

fn room_mut<'a>(app: &'a mut App, group: &str) -> Option<&'a mut RoomInfo> {
    app.rooms.iter_mut().find(|r| r.group == group)
}

fn take(app: &mut App, group: &str) -> Option<RoomInfo> {
    let index = app.rooms.iter().position(|r| r.group == group)?;
    Some(app.rooms.remove(index))
}

/// A group's name as the interface shows it, with its `#`: the conversation's, else
/// the node's for the room, else a short id.
pub(crate) fn group_name(app: &App, group: &str) -> String {
    let listed = app.conversation(group).filter(|c| c.group_view().is_some()).map(|c| c.label().to_owned());
    let named =
        listed.or_else(|| app.rooms.iter().find(|r| r.group == group && !r.name.is_empty()).map(|r| r.name.clone()));
    format!("#{}", text::sanitize_line(&named.unwrap_or_else(|| text::short_peer(group))))
}

/// A participant's name as the group's conversation shows it ("you" for us).
pub(crate) fn participant_name(app: &App, group: &str, peer: &str) -> String {
    if app.me() == Some(peer) {
        return "you".to_owned();
    }
    let name = match app.conversation(group).and_then(|c| c.group_view()) {
        Some(view) => member_label(app, view, peer),
        None => super::call::name(app, peer),
    };
    text::sanitize_line(&name)
}

/// " · 05:12" since `joined_at_ms`, if both it and the clock are known.
fn lasted(app: &App, joined_at_ms: Option<u64>) -> String {
    match (joined_at_ms, app.now_ms) {
        (Some(at), Some(now)) => format!(" · {}", super::duration(now.saturating_sub(at))),
        _ => String::new(),
    }
}

fn remember_left(app: &mut App, group: &str) {
    if app.left_rooms.iter().any(|g| g == group) {
        return;
    }
    if app.left_rooms.len() >= LEFT_MAX {
        app.left_rooms.pop_front();
    }
    app.left_rooms.push_back(group.to_owned());
}

fn forget_left(app: &mut App, group: &str) {
    app.left_rooms.retain(|g| g != group);
}

/// Ask for the rooms now, unless a poll is on its way or there is no node.
pub(super) fn sync(app: &mut App, fx: &mut Vec<Effect>) {
    if app.node == NodeState::Connected && !app.rooms_loading {
        app.rooms_loading = true;
        fx.push(Effect::LoadRooms);
    }
}

/// [`Action::CallTick`](crate::action::Action::CallTick): poll while we are in a room.
pub(super) fn poll(app: &mut App, fx: &mut Vec<Effect>) {
    if app.rooms.iter().any(|r| r.state != RoomState::Joining) {
        sync(app, fx);
    }
}

/// The node went away: what it said of rooms no longer holds (a restarted node is
/// in none); the reload after reconnecting reads them again.
pub(super) fn forget(app: &mut App) {
    app.rooms.clear();
    app.left_rooms.clear();
    app.rooms_loading = false;
}

/// Take in what the node says of a room (an answer or a poll): the kept room is
/// brought up to date, or this one is kept when none is, unless we left it lately
/// (the news is older than that). A room we were joining is now joined, and the
/// status line says so.
fn take_in(app: &mut App, info: RoomInfo) {
    let now = app.now_ms;
    let group = info.group.clone();
    if app.left_rooms.contains(&group) {
        return;
    }
    let full = app.rooms.len() >= ROOMS_MAX;
    let arrived = match room_mut(app, &group) {
        Some(kept) => {
            let arrived = kept.state == RoomState::Joining;
            if arrived {
                kept.state = RoomState::Joined;
                kept.joined_at_ms = kept.joined_at_ms.or(now);
            }
            kept.participants = in_order(&kept.participants, info.participants);
            kept.speaking = info.speaking;
            kept.muted = info.muted;
            kept.output_level = info.output_level;
            kept.misses = 0;
            if !info.name.is_empty() {
                kept.name = info.name;
            }
            arrived
        }
        None if !full => {
            app.rooms.push(info);
            false
        }
        None => false,
    };
    if arrived {
        say_joined(app, &group);
    }
}

/// `fresh` in the order of `kept` where it has them, the new ones after.
fn in_order(kept: &[String], fresh: Vec<String>) -> Vec<String> {
    let mut ordered: Vec<String> = kept.iter().filter(|p| fresh.contains(p)).cloned().collect();
    for peer in fresh {
        if !ordered.contains(&peer) {
            ordered.push(peer);
        }
    }
    ordered
}

fn say_joined(app: &mut App, group: &str) {
    let name = group_name(app, group);
    app.set_status(format!("in the voice room of {name}: /room leave leaves"), false);
}

// ---- events ----------------------------------------------------------------------------

/// `room_joined`: the room we were joining is joined; one this interface did not
/// join (`kith room join`, or a missed answer) is kept and read.
pub(super) fn on_joined(app: &mut App, group: String, fx: &mut Vec<Effect>) {
    forget_left(app, &group);
    let now = app.now_ms;
    let full = app.rooms.len() >= ROOMS_MAX;
    match room_mut(app, &group) {
        Some(kept) if kept.state == RoomState::Joining => {
            kept.state = RoomState::Joined;
            kept.joined_at_ms = kept.joined_at_ms.or(now);
            say_joined(app, &group);
        }
        Some(_) => {}
        None if !full => {
            app.rooms.push(RoomInfo::new(&group, RoomState::Joined, now));
            say_joined(app, &group);
            sync(app, fx);
        }
        None => {}
    }
}

/// `room_participant_joined` (`joined`) or `room_participant_left`: someone came or
/// went; the log says so.
pub(super) fn on_participant(app: &mut App, group: String, peer: String, joined: bool) {
    if app.me() == Some(peer.as_str()) {
        return;
    }
    let (who, name) = (participant_name(app, &group, &peer), group_name(app, &group));
    let Some(room) = room_mut(app, &group) else { return };
    if joined {
        if !room.participants.contains(&peer) {
            room.participants.push(peer);
        }
    } else {
        room.participants.retain(|p| *p != peer);
        room.speaking.retain(|p| *p != peer);
    }
    let did = if joined { "came into" } else { "left" };
    app.note(format!("{who} {did} the voice room of {name}"), false);
}

/// `room_speaking`: someone started or stopped speaking.
pub(super) fn on_speaking(app: &mut App, group: String, peer: String, speaking: bool) {
    if app.me() == Some(peer.as_str()) {
        return;
    }
    let Some(room) = room_mut(app, &group) else { return };
    let at = room.speaking.binary_search(&peer);
    match (speaking, at) {
        (true, Err(at)) => room.speaking.insert(at, peer.clone()),
        (false, Ok(at)) => {
            room.speaking.remove(at);
        }
        _ => {}
    }
    if speaking && !room.participants.contains(&peer) {
        room.participants.push(peer);
    }
}

/// `room_left`: we are out, and the status line says why; a room ended by the node
/// (not by us) is also noted in the group's conversation.
pub(super) fn on_left(app: &mut App, group: String, reason: LeftReason) {
    remember_left(app, &group);
    let kept = take(app, &group);
    let name = group_name(app, &group);
    let took = lasted(app, kept.as_ref().and_then(|r| r.joined_at_ms));
    let (text, error) = match reason {
        // Said once: by the answer to `/room leave` if it came first.
        LeftReason::Left if kept.is_none() => return,
        LeftReason::Left => (format!("left the voice room of {name}{took}"), false),
        LeftReason::Removed => {
            (format!("out of the voice room of {name}: you are no longer in the group{took}"), false)
        }
        LeftReason::Closed => {
            (format!("out of the voice room of {name}: the media node closed it or put you out{took}"), true)
        }
        LeftReason::Failed => (format!("out of the voice room of {name}: the audio path failed{took}"), true),
    };
    if reason != LeftReason::Left
        && let Some(conv) = app.conversation_mut(&group)
    {
        conv.add_notice(text.clone());
    }
    app.set_status(text, error);
}

// ---- answers ---------------------------------------------------------------------------

/// A room request succeeded.
pub(super) fn on_response(app: &mut App, op: RoomOp, info: RoomInfo) {
    let group = info.group.clone();
    match op {
        RoomOp::Join => {
            forget_left(app, &group);
            // In as of now, unless `room_joined` said so earlier.
            take_in(app, RoomInfo { joined_at_ms: app.now_ms, ..info });
        }
        RoomOp::Leave => {
            remember_left(app, &group);
            // Said once: by `room_left` if it came first.
            if let Some(room) = take(app, &group) {
                let took = lasted(app, room.joined_at_ms);
                let name = group_name(app, &group);
                app.set_status(format!("left the voice room of {name}{took}"), false);
            }
        }
        RoomOp::Mute => {
            let name = group_name(app, &group);
            let muted = info.muted;
            take_in(app, info);
            // Out of it meanwhile: `room_left` said so.
            if room_of(app, &group).is_none() {
                return;
            }
            app.set_status(
                if muted {
                    format!("muted in the voice room of {name}: nobody hears you")
                } else {
                    format!("unmuted in the voice room of {name}")
                },
                false,
            );
        }
    }
}

/// The answer to a poll: the rooms the node is in.
pub(super) fn on_rooms(app: &mut App, listed: Vec<RoomInfo>) {
    app.rooms_loading = false;
    let groups: HashSet<String> = listed.iter().map(|r| r.group.clone()).collect();
    // A left room the node no longer lists is gone for good; one it still lists was
    // asked for before we left (or is about to go), and is not taken back.
    app.left_rooms.retain(|g| groups.contains(g));
    for info in listed {
        take_in(app, info);
    }
    let mut gone = Vec::new();
    for room in app.rooms.iter_mut().filter(|r| r.state != RoomState::Joining && !groups.contains(&r.group)) {
        room.misses += 1;
        if room.misses >= MISSES_MAX {
            gone.push(room.group.clone());
        }
    }
    for group in gone {
        take(app, &group);
        let name = group_name(app, &group);
        app.note(format!("the voice room of {name} is over (the node is no longer in it)"), false);
    }
}

/// A room request failed; `false` if `effect` is not one.
pub(super) fn on_failure(app: &mut App, effect: &Effect, error: &str) -> bool {
    match effect {
        Effect::LoadRooms => {
            // Quiet: the next poll tries again, and the status line says when the node is away.
            app.rooms_loading = false;
            tracing::debug!(%error, "reading the rooms failed");
        }
        Effect::JoinRoom { group } => {
            if room_of(app, group).is_some_and(|r| r.state == RoomState::Joining) {
                take(app, group);
            }
            let name = group_name(app, group);
            app.set_status(format!("joining the voice room of {name}: {error}"), true);
        }
        Effect::LeaveRoom { group } => {
            let name = group_name(app, group);
            // The node is not in it (any more): neither are we.
            if error.starts_with("not in the voice room") {
                take(app, group);
                remember_left(app, group);
                app.set_status(format!("not in the voice room of {name} any more"), false);
            } else {
                if let Some(room) = room_mut(app, group).filter(|r| r.state == RoomState::Leaving) {
                    room.state = RoomState::Joined;
                }
                app.set_status(format!("leaving the voice room of {name}: {error}"), true);
            }
        }
        Effect::MuteRoom { group, muted } => {
            let name = group_name(app, group);
            let doing = if *muted { "muting" } else { "unmuting" };
            app.set_status(format!("{doing} in the voice room of {name}: {error}"), true);
        }
        _ => return false,
    }
    true
}

fn room_of<'a>(app: &'a App, group: &str) -> Option<&'a RoomInfo> {
    app.rooms.iter().find(|r| r.group == group)
}

// ---- commands --------------------------------------------------------------------------

/// Run `/room`, `/room join`, `/room leave` or `/room mute`.
pub(super) fn command(app: &mut App, command: RoomCommand, fx: &mut Vec<Effect>) {
    match command {
        RoomCommand::Toggle => {
            let Some(group) = open_group(app) else { return };
            match room_of(app, &group).map(|r| r.state) {
                None => join(app, group, fx),
                Some(_) => leave(app, &group, fx),
            }
        }
        RoomCommand::Join => join_open(app, fx),
        RoomCommand::Leave => {
            // The open group's room, else the one the bar shows.
            let focused = app.focused.clone().filter(|f| room_of(app, f).is_some());
            match focused.or_else(|| shown(app).map(|r| r.group.clone())) {
                Some(group) => leave(app, &group, fx),
                None => app.set_status("not in a voice room", true),
            }
        }
        RoomCommand::Mute => mute(app, fx),
    }
}

/// `/room join`, or `/call` in a group: join the open group's voice room.
pub(super) fn join_open(app: &mut App, fx: &mut Vec<Effect>) {
    let Some(group) = open_group(app) else { return };
    match room_of(app, &group).map(|r| r.state) {
        None => join(app, group, fx),
        Some(RoomState::Joining) => still_joining(app, &group),
        Some(_) => {
            let name = group_name(app, &group);
            app.set_status(format!("already in the voice room of {name}: /room leave leaves"), true);
        }
    }
}

/// The open conversation's group id, if it is a group whose room can be joined;
/// else the status line says why not.
fn open_group(app: &mut App) -> Option<String> {
    let Some(conv) = app.focused() else {
        app.set_status("no group open: open one (Ctrl+K), then /room joins its voice room", true);
        return None;
    };
    let Some(group) = conv.group_view() else {
        let who = text::sanitize_line(conv.label());
        app.set_status(format!("{who} is not a group: voice rooms are a group's (/call calls a contact)"), true);
        return None;
    };
    let (id, name) = (group.id.clone(), text::sanitize_line(&group.name));
    let refusal = if group.invited_by.is_some() {
        Some(format!("accept the invitation to #{name} first (/accept), then /room"))
    } else if !group.active {
        Some(format!("you are no longer in #{name}: its voice room is for members"))
    } else {
        None
    };
    match refusal {
        // A room kept anyway (joined before we were removed) can still be left.
        Some(why) if room_of(app, &id).is_none() => {
            app.set_status(why, true);
            None
        }
        _ => Some(id),
    }
}

fn join(app: &mut App, group: String, fx: &mut Vec<Effect>) {
    if app.rooms.len() >= ROOMS_MAX {
        app.set_status(format!("in {ROOMS_MAX} voice rooms already: /room leave one first"), true);
        return;
    }
    forget_left(app, &group);
    app.rooms.push(RoomInfo::new(&group, RoomState::Joining, None));
    let name = group_name(app, &group);
    app.set_status(format!("joining the voice room of {name}…"), false);
    fx.push(Effect::JoinRoom { group });
}

fn still_joining(app: &mut App, group: &str) {
    let name = group_name(app, group);
    app.set_status(format!("still joining the voice room of {name}: the node is asking the group's relays"), true);
}

/// Leave the room of `group` (kept).
fn leave(app: &mut App, group: &str, fx: &mut Vec<Effect>) {
    let Some(room) = room_mut(app, group) else { return };
    match room.state {
        RoomState::Joining => still_joining(app, group),
        RoomState::Leaving => {
            let name = group_name(app, group);
            app.set_status(format!("leaving the voice room of {name} already"), true);
        }
        RoomState::Joined => {
            room.state = RoomState::Leaving;
            let name = group_name(app, group);
            app.set_status(format!("leaving the voice room of {name}…"), false);
            fx.push(Effect::LeaveRoom { group: group.to_owned() });
        }
    }
}

/// `/room mute`, or `/mute` with no call: mute our side in the room the bar shows,
/// or unmute it.
pub(super) fn mute(app: &mut App, fx: &mut Vec<Effect>) {
    let Some(room) = shown(app) else {
        app.set_status("not in a voice room", true);
        return;
    };
    let group = room.group.clone();
    if room.state == RoomState::Joining {
        return still_joining(app, &group);
    }
    fx.push(Effect::MuteRoom { group, muted: !room.muted });
}

/// `/hangup` with no call: leave the room the bar shows. `false` if in none.
pub(super) fn hang_up(app: &mut App, fx: &mut Vec<Effect>) -> bool {
    let Some(group) = shown(app).map(|r| r.group.clone()) else { return false };
    leave(app, &group, fx);
    true
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::action::{Action, Response};
    use crate::app::{Config, Conversation, update};
    use kith_p2p::kith_storage::Role;
    use kith_p2p::node::Event;
    use kith_p2p::views::{GroupView, MemberView};

    const ME: &str = "me";
    const GROUP: &str = "g1";

    fn group(id: &str, name: &str) -> GroupView {
        let member = |peer: &str, label: Option<&str>| MemberView {
            peer_id: peer.into(),
            role: Role::Member,
            label: label.map(str::to_owned),
        };
        GroupView {
            id: id.into(),
            name: name.into(),
            members: vec![member(ME, None), member("ann", Some("Ann")), member("bo", Some("Bo"))],
            version: 1,
            relays: Vec::new(),
            active: true,
            invited_by: None,
        }
    }

    /// Connected, us known, two groups listed, "g1" open, the clock at 1000 s.
    fn app() -> App {
        let mut app = App::new(Config::default());
        app.node = NodeState::Connected;
        app.me = Some(ME.into());
        app.now_ms = Some(1_000_000);
        app.conversations.push(Conversation::group(group(GROUP, "Club")));
        app.conversations.push(Conversation::group(group("g2", "Other")));
        app.focused = Some(GROUP.into());
        app
    }

    fn view(group: &str, participants: &[&str], speaking: &[&str]) -> RoomInfo {
        RoomInfo::from(&RoomView {
            group: group.into(),
            name: "Club".into(),
            relay: "relay".into(),
            participants: participants.iter().map(|p| (*p).to_owned()).collect(),
            frames_played: 0,
            output_level: 0.42,
            muted: false,
            speaking: speaking.iter().map(|p| (*p).to_owned()).collect(),
        })
    }

    fn node(app: &mut App, event: Event) -> Vec<Effect> {
        update(app, Action::Node(event))
    }

    fn joined(group: &str) -> Event {
        Event::RoomJoined { group: group.into() }
    }

    fn came(peer: &str, joined: bool) -> Event {
        let (group, peer) = (GROUP.to_owned(), peer.to_owned());
        if joined { Event::RoomParticipantJoined { group, peer } } else { Event::RoomParticipantLeft { group, peer } }
    }

    fn speaks(peer: &str, speaking: bool) -> Event {
        Event::RoomSpeaking { group: GROUP.into(), peer: peer.into(), speaking }
    }

    fn status(app: &App) -> &str {
        app.status.as_ref().map_or("", |s| s.text.as_str())
    }

    /// Run `/room` `command`; its effects.
    fn run(app: &mut App, command: RoomCommand) -> Vec<Effect> {
        let mut fx = Vec::new();
        super::command(app, command, &mut fx);
        fx
    }

    /// `/room` on the open group, and the node's `room_joined`.
    fn in_room() -> App {
        let mut app = app();
        assert_eq!(run(&mut app, RoomCommand::Toggle), vec![Effect::JoinRoom { group: GROUP.into() }]);
        node(&mut app, joined(GROUP));
        app
    }

    #[test]
    fn joining_then_the_event_makes_the_room_joined_with_its_start() {
        let mut app = app();
        assert_eq!(run(&mut app, RoomCommand::Toggle), vec![Effect::JoinRoom { group: GROUP.into() }]);
        assert_eq!(shown(&app).unwrap().state, RoomState::Joining);
        assert_eq!(status(&app), "joining the voice room of #Club…");
        // Polls leave a joining room alone, and none go out for it.
        assert!(update(&mut app, Action::CallTick).is_empty());
        node(&mut app, joined(GROUP));
        let room = shown(&app).unwrap();
        assert_eq!((room.state, room.joined_at_ms), (RoomState::Joined, Some(1_000_000)));
        assert_eq!(status(&app), "in the voice room of #Club: /room leave leaves");
        // The answer after the event changes nothing said.
        let logged = app.log.len();
        app.now_ms = Some(1_005_000);
        update(&mut app, Action::Done(Response::Room { op: RoomOp::Join, room: view(GROUP, &[ME, "ann"], &[]) }));
        assert_eq!(app.log.len(), logged);
        let room = shown(&app).unwrap();
        assert_eq!(room.joined_at_ms, Some(1_000_000), "in since the event");
        assert_eq!(room.participants, [ME, "ann"]);
        assert_eq!(room.output_level, 42);
        // Joined: the poll goes out, one at a time.
        assert_eq!(update(&mut app, Action::CallTick), vec![Effect::LoadRooms]);
        assert!(update(&mut app, Action::CallTick).is_empty());
    }

    #[test]
    fn events_move_who_is_in_and_who_speaks() {
        let mut app = in_room();
        node(&mut app, came("bo", true));
        node(&mut app, came("ann", true));
        node(&mut app, came("ann", true));
        node(&mut app, came(ME, true));
        assert_eq!(shown(&app).unwrap().participants, ["bo", "ann"], "once each, never us by event");
        assert_eq!(app.log.back().unwrap().text, "Ann came into the voice room of #Club");
        node(&mut app, speaks("bo", true));
        node(&mut app, speaks("ann", true));
        node(&mut app, speaks("ann", true));
        node(&mut app, speaks(ME, true));
        let room = shown(&app).unwrap();
        assert_eq!(room.speaking, ["ann", "bo"], "sorted, once each, never us");
        assert!(room.is_speaking("ann") && !room.is_speaking(ME));
        node(&mut app, speaks("ann", false));
        assert_eq!(shown(&app).unwrap().speaking, ["bo"]);
        // Someone heard before being seen coming in is in.
        node(&mut app, speaks("cy", true));
        assert_eq!(shown(&app).unwrap().participants, ["bo", "ann", "cy"]);
        // Leaving takes one out of both lists.
        node(&mut app, came("bo", false));
        let room = shown(&app).unwrap();
        assert_eq!(room.participants, ["ann", "cy"]);
        assert_eq!(room.speaking, ["cy"]);
        assert_eq!(app.log.back().unwrap().text, "Bo left the voice room of #Club");
        // Events of rooms we are not in change nothing.
        node(&mut app, Event::RoomSpeaking { group: "g2".into(), peer: "ann".into(), speaking: true });
        assert_eq!(app.rooms.len(), 1);
    }

    #[test]
    fn a_poll_keeps_the_order_seen_and_takes_the_rest() {
        let mut app = in_room();
        node(&mut app, came("bo", true));
        node(&mut app, speaks("bo", true));
        update(&mut app, Action::CallTick);
        let polled = view(GROUP, &["ann", "bo", ME], &["ann"]);
        update(&mut app, Action::Done(Response::Rooms(vec![polled])));
        let room = shown(&app).unwrap();
        assert_eq!(room.participants, ["bo", "ann", ME]);
        assert_eq!(room.speaking, ["ann"], "the node's speakers replace ours");
        assert!(!app.rooms_loading);
    }

    #[test]
    fn a_late_poll_does_not_bring_a_left_room_back_and_a_missed_end_drops_it() {
        let mut app = in_room();
        update(&mut app, Action::CallTick);
        node(&mut app, Event::RoomLeft { group: GROUP.into(), reason: LeftReason::Left });
        assert!(app.rooms.is_empty());
        assert_eq!(status(&app), "left the voice room of #Club · 00:00");
        // The poll sent before we left lists it: not taken back.
        update(&mut app, Action::Done(Response::Rooms(vec![view(GROUP, &[ME], &[])])));
        assert!(app.rooms.is_empty());
        // Joining again is joining again.
        assert_eq!(run(&mut app, RoomCommand::Join), vec![Effect::JoinRoom { group: GROUP.into() }]);
        update(&mut app, Action::Done(Response::Room { op: RoomOp::Join, room: view(GROUP, &[ME], &[]) }));
        assert_eq!(shown(&app).unwrap().state, RoomState::Joined);

        // The node no longer lists it: dropped after a few polls, not at the first.
        for _ in 1..MISSES_MAX {
            update(&mut app, Action::CallTick);
            update(&mut app, Action::Done(Response::Rooms(Vec::new())));
            assert_eq!(app.rooms.len(), 1);
        }
        update(&mut app, Action::CallTick);
        update(&mut app, Action::Done(Response::Rooms(Vec::new())));
        assert!(app.rooms.is_empty());
        assert!(app.log.back().unwrap().text.contains("is over"));
        assert!(update(&mut app, Action::CallTick).is_empty(), "no room, no poll");
    }

    #[test]
    fn a_room_ended_by_the_node_says_why_here_and_in_the_conversation() {
        for (reason, said, error) in [
            (LeftReason::Removed, "you are no longer in the group", false),
            (LeftReason::Closed, "the media node closed it", true),
            (LeftReason::Failed, "the audio path failed", true),
        ] {
            let mut app = in_room();
            app.now_ms = Some(1_065_000);
            node(&mut app, Event::RoomLeft { group: GROUP.into(), reason });
            assert!(app.rooms.is_empty());
            let shown = app.status.clone().unwrap();
            assert!(
                shown.text.starts_with("out of the voice room of #Club: ") && shown.text.contains(said),
                "{}",
                shown.text
            );
            assert!(shown.text.ends_with(" · 01:05"), "{}", shown.text);
            assert_eq!(shown.error, error);
            let notices = &app.conversation(GROUP).unwrap().notices;
            assert_eq!(notices.back().map(|n| n.text.as_str()), Some(shown.text.as_str()));
        }
    }

    #[test]
    fn leaving_is_said_once_whichever_comes_first() {
        let mut app = in_room();
        assert_eq!(run(&mut app, RoomCommand::Toggle), vec![Effect::LeaveRoom { group: GROUP.into() }]);
        assert_eq!(shown(&app).unwrap().state, RoomState::Leaving);
        let logged = app.log.len();
        update(&mut app, Action::Done(Response::Room { op: RoomOp::Leave, room: view(GROUP, &[ME], &[]) }));
        node(&mut app, Event::RoomLeft { group: GROUP.into(), reason: LeftReason::Left });
        assert_eq!(app.log.len(), logged + 1);
        assert!(app.rooms.is_empty());
    }

    #[test]
    fn a_failed_join_drops_the_room_and_a_failed_leave_keeps_it() {
        let mut app = app();
        let mut fx = run(&mut app, RoomCommand::Join);
        update(&mut app, Action::Failed { effect: fx.remove(0), error: "no relay of the group took us in".into() });
        assert!(app.rooms.is_empty());
        assert_eq!(status(&app), "joining the voice room of #Club: no relay of the group took us in");

        let mut app = in_room();
        fx = run(&mut app, RoomCommand::Leave);
        update(&mut app, Action::Failed { effect: fx.remove(0), error: "the node has stopped".into() });
        assert_eq!(shown(&app).unwrap().state, RoomState::Joined);
        fx = run(&mut app, RoomCommand::Leave);
        update(&mut app, Action::Failed { effect: fx.remove(0), error: "not in the voice room of g1".into() });
        assert!(app.rooms.is_empty());
    }

    #[test]
    fn a_mute_answer_after_the_room_ended_does_not_bring_it_back() {
        let mut app = in_room();
        assert_eq!(run(&mut app, RoomCommand::Mute), vec![Effect::MuteRoom { group: GROUP.into(), muted: true }]);
        node(&mut app, Event::RoomLeft { group: GROUP.into(), reason: LeftReason::Failed });
        let said = status(&app).to_owned();
        let mut muted = view(GROUP, &[ME], &[]);
        muted.muted = true;
        update(&mut app, Action::Done(Response::Room { op: RoomOp::Mute, room: muted }));
        assert!(app.rooms.is_empty());
        assert_eq!(status(&app), said, "the end stays said");
    }

    #[test]
    fn the_bar_shows_the_open_groups_room_else_the_last_joined() {
        let mut app = in_room();
        node(&mut app, joined("g2"));
        assert_eq!(app.rooms.len(), 2);
        assert_eq!(shown(&app).unwrap().group, GROUP, "the open group's");
        app.focused = None;
        assert_eq!(shown(&app).unwrap().group, "g2", "the last joined");
        // Muting goes to the room shown.
        let mut fx = Vec::new();
        mute(&mut app, &mut fx);
        assert_eq!(fx, vec![Effect::MuteRoom { group: "g2".into(), muted: true }]);
    }

    #[test]
    fn losing_the_node_forgets_the_rooms() {
        let mut app = in_room();
        update(&mut app, Action::Disconnected { error: "gone".into(), retry_in: None });
        assert!(app.rooms.is_empty() && !app.wants_call_ticks());
        let fx = update(&mut app, Action::Reconnected);
        assert!(fx.contains(&Effect::LoadRooms), "{fx:?}");
    }
}
