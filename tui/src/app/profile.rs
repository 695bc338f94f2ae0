//! Profiles: the profile overlay (`/profile [contact]`), the contacts' status lines
//! the 1:1 header shows, and the commands that change ours (`/name`, `/status
//! TEXT`, `/avatar PATH`).
//!
//! The overlay asks the node for the profile with its picture
//! ([`Effect::LoadProfile`]); the picture, base64 in the answer, is decoded off the
//! loop ([`Effect::DecodeAvatar`], which also encodes it for the terminal's graphics
//! protocol when there is one) and drawn by `ui/profile.rs`. The status lines come
//! without pictures: asked once per contact when the list arrives (a bounded number
//! at a time), then kept current by `profile_changed` events.

use std::collections::{HashMap, HashSet};

use crossterm::event::{KeyCode, KeyEvent};
use kith_p2p::kith_storage::ContactState;
use kith_p2p::views::ProfileView;

use super::{App, Overlay};
use crate::action::Effect;
use crate::commands::ProfileCommand;
use crate::picture::{Encoded, Picture};

/// The room the overlay gives the avatar, in cells (columns, rows): a square
/// picture, as a cell is about twice as tall as wide. The picture is encoded for
/// exactly this room, so it never needs encoding again when the screen resizes.
pub const AVATAR_CELLS: (u16, u16) = (20, 10);

/// Most status lines asked for at once when the list arrives: each is a request,
/// and the request queue is bounded; the others are asked with later lists.
const STATUS_PREFETCH: usize = 32;

/// The contacts' status lines, and whom they were asked of.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Statuses {
    /// Status lines by peer id (none: no status, or not known yet).
    lines: HashMap<String, String>,
    /// Contacts whose profile was asked for (once per run is enough: events follow).
    pub(super) asked: HashSet<String>,
}

/// The profile overlay's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileCard {
    /// The contact as asked (a peer id, or a name the node resolves); `None`: ours.
    pub asked: Option<String>,
    /// The profile, once it came.
    pub profile: Option<ProfileView>,
    /// Its picture.
    pub avatar: Avatar,
    /// Why the profile could not be read.
    pub error: Option<String>,
}

/// Where the overlay's picture stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Avatar {
    /// There is none (or the profile has not come yet).
    None,
    /// Being decoded.
    Loading,
    /// Decoded.
    Ready {
        /// For half-blocks.
        picture: Picture,
        /// For the terminal's graphics protocol, when it has one.
        encoded: Option<Encoded>,
    },
    /// It could not be decoded.
    Failed(String),
}

impl ProfileCard {
    /// Whether this card shows `peer_id`'s profile (ours being `me`).
    fn shows(&self, peer_id: &str, me: Option<&str>) -> bool {
        match (&self.profile, &self.asked) {
            (Some(p), _) => p.peer_id == peer_id,
            (None, None) => me == Some(peer_id),
            (None, Some(asked)) => asked == peer_id,
        }
    }
}

/// A contact's status line, if they set one and it is known.
pub(crate) fn status_of<'a>(app: &'a App, peer_id: &str) -> Option<&'a str> {
    app.statuses.lines.get(peer_id).map(String::as_str)
}

/// Keep what `profile` says for the header.
fn remember(app: &mut App, profile: &ProfileView) {
    let status = profile.status.as_deref().map(str::trim).filter(|s| !s.is_empty());
    match status {
        Some(status) => app.statuses.lines.insert(profile.peer_id.clone(), status.to_owned()),
        None => app.statuses.lines.remove(&profile.peer_id),
    };
}

/// The peer id of the listed contact `who` names (their peer id, or the name the
/// list shows them by, in any case); anything else as typed (a peer id, or a name
/// the node knows).
pub(super) fn peer_of(app: &App, who: String) -> String {
    let wanted = who.to_lowercase();
    let found = app
        .conversations
        .iter()
        .filter(|c| c.contact().is_some())
        .find(|c| c.peer_id() == who || c.label().to_lowercase() == wanted);
    found.map_or(who, |c| c.peer_id().to_owned())
}

/// `/profile [contact]`: open the overlay and ask for the profile with its picture.
/// A contact named as the list shows them is asked for by peer id; anything else is
/// passed as typed (a peer id, or a name the node knows).
pub(super) fn open(app: &mut App, who: Option<String>, fx: &mut Vec<Effect>) {
    let asked = who.map(|who| peer_of(app, who));
    app.overlay =
        Some(Overlay::Profile(ProfileCard { asked: asked.clone(), profile: None, avatar: Avatar::None, error: None }));
    fx.push(Effect::LoadProfile { contact: asked.clone(), avatar: true });
    if let Some(peer) = &asked {
        super::verify::on_profile_open(app, peer, fx);
    }
}

/// Ask for the status lines of listed contacts not asked yet (at most
/// [`STATUS_PREFETCH`] now).
pub(super) fn prefetch(app: &mut App, fx: &mut Vec<Effect>) {
    let wanted: Vec<String> = app
        .conversations
        .iter()
        .filter_map(|c| c.contact())
        .filter(|c| c.state == ContactState::Accepted && !app.statuses.asked.contains(&c.peer_id))
        .map(|c| c.peer_id.clone())
        .take(STATUS_PREFETCH)
        .collect();
    for peer in wanted {
        app.statuses.asked.insert(peer.clone());
        fx.push(Effect::LoadProfile { contact: Some(peer), avatar: false });
    }
}

/// A profile came: its status line is kept, and the overlay shows it if it asked
/// for it (with the picture; answers without one are for the header only).
pub(super) fn on_profile(
    app: &mut App,
    contact: Option<String>,
    with_avatar: bool,
    profile: ProfileView,
    fx: &mut Vec<Effect>,
) {
    remember(app, &profile);
    super::face::on_profile(app, with_avatar, &profile, fx);
    let Some(Overlay::Profile(card)) = &mut app.overlay else { return };
    if !with_avatar || card.asked != contact {
        return;
    }
    let data = profile.avatar.as_ref().and_then(|a| a.data.clone());
    card.avatar = match data {
        Some(data) => {
            let (columns, rows) = AVATAR_CELLS;
            fx.push(Effect::DecodeAvatar { peer_id: profile.peer_id.clone(), data, room: (columns, rows) });
            Avatar::Loading
        }
        None => Avatar::None,
    };
    card.error = None;
    card.profile = Some(profile);
}

/// An avatar was decoded for `room`: the overlay's shown if it still shows that
/// profile, the header's kept for it.
pub(super) fn on_avatar(app: &mut App, peer_id: &str, room: (u16, u16), picture: Picture, encoded: Option<Encoded>) {
    if room != AVATAR_CELLS {
        return super::face::on_avatar(app, peer_id, room, encoded);
    }
    if let Some(Overlay::Profile(card)) = &mut app.overlay
        && card.profile.as_ref().is_some_and(|p| p.peer_id == peer_id)
    {
        card.avatar = Avatar::Ready { picture, encoded };
    }
}

/// A profile changed (a contact's arrived, or ours changed): its status line is
/// kept, and an overlay showing it asks again (for the new picture), as does the
/// header showing their picture (`face.rs`).
pub(super) fn on_changed(app: &mut App, profile: ProfileView, fx: &mut Vec<Effect>) {
    remember(app, &profile);
    let me = app.me.clone();
    let mut asked = None;
    if let Some(Overlay::Profile(card)) = &app.overlay
        && card.shows(&profile.peer_id, me.as_deref())
    {
        asked = Some(card.asked.clone());
        fx.push(Effect::LoadProfile { contact: card.asked.clone(), avatar: true });
    }
    let same = asked.flatten().is_some_and(|asked| asked == profile.peer_id);
    super::face::on_changed(app, &profile, same, fx);
}

/// Our profile changed as asked: say what it is now.
pub(super) fn on_set(app: &mut App, profile: ProfileView, fx: &mut Vec<Effect>) {
    let name = profile.name.as_deref().map_or_else(|| "no name".to_owned(), |n| format!("name {n}"));
    let status = profile.status.as_deref().map_or_else(|| "no status".to_owned(), |s| format!("status \"{s}\""));
    let avatar = if profile.avatar.is_some() { "a picture" } else { "no picture" };
    app.set_status(crate::text::sanitize_line(&format!("profile updated: {name}, {status}, {avatar}")), false);
    on_changed(app, profile, fx);
}

/// A profile request failed: the overlay says why if it waited for it, and a
/// failed `/name`, `/status` or `/avatar` is told. Returns whether it was one of
/// these effects.
pub(super) fn on_failure(app: &mut App, effect: &Effect, error: &str) -> bool {
    if super::face::on_failure(app, effect, error) {
        return true;
    }
    match effect {
        Effect::LoadProfile { contact, avatar: true } => {
            if let Some(Overlay::Profile(card)) = &mut app.overlay
                && card.asked == *contact
            {
                card.error = Some(error.to_owned());
            }
        }
        // A header's status line is a nicety: the log keeps why it is missing.
        Effect::LoadProfile { avatar: false, .. } => app.note(format!("loading a profile: {error}"), true),
        Effect::SetProfile { .. } => app.set_status(format!("updating your profile: {error}"), true),
        Effect::DecodeAvatar { peer_id, room, .. } if *room == AVATAR_CELLS => {
            if let Some(Overlay::Profile(card)) = &mut app.overlay
                && card.profile.as_ref().is_some_and(|p| p.peer_id == *peer_id)
            {
                card.avatar = Avatar::Failed(error.to_owned());
            }
        }
        _ => return false,
    }
    true
}

/// `/name`, `/status TEXT` and `/avatar`: change our profile.
pub(super) fn command(app: &mut App, change: ProfileCommand, fx: &mut Vec<Effect>) {
    let effect = match change {
        ProfileCommand::Name(name) => {
            Effect::SetProfile { name: Some(name), status: None, avatar: None, clear_avatar: false }
        }
        ProfileCommand::Status(status) => {
            Effect::SetProfile { name: None, status: Some(status), avatar: None, clear_avatar: false }
        }
        ProfileCommand::Avatar(Some(path)) => {
            Effect::SetProfile { name: None, status: None, avatar: Some(path), clear_avatar: false }
        }
        ProfileCommand::Avatar(None) => {
            Effect::SetProfile { name: None, status: None, avatar: None, clear_avatar: true }
        }
    };
    app.set_status("updating your profile…", false);
    fx.push(effect);
}

/// Keys while the profile or safety-number overlay is open: Esc, Enter and q close it.
pub(super) fn key(app: &mut App, key: KeyEvent) {
    if matches!(key.code, KeyCode::Esc | KeyCode::Enter | KeyCode::Char('q')) {
        app.overlay = None;
    }
}
