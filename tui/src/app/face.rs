//! The open 1:1 contact's avatar in the conversation header, a picture of
//! [`HEADER_AVATAR_CELLS`] drawn only through the terminal's graphics protocol
//! (kitty, sixel, iTerm2): in half-blocks two cells would show a blur, so with
//! none nothing here asks for anything and the header stays as it was.
//!
//! It is fetched once per contact, when their conversation is opened and they are
//! not known to have no picture: [`Effect::LoadProfile`] with the picture, then
//! [`Effect::DecodeAvatar`] for the header's room, as the profile overlay does. The
//! encoding is kept per contact. A `profile_changed` event for a contact fetches it
//! again (their open conversation keeps showing the old one until the new one is
//! decoded); a contact not in view is simply fetched anew when next opened.

use std::collections::HashMap;

use kith_p2p::kith_storage::ContactState;
use kith_p2p::views::ProfileView;

use super::App;
use crate::action::Effect;
use crate::picture::Encoded;

/// The room the header gives the avatar, in cells (columns, rows): about square.
pub const HEADER_AVATAR_CELLS: (u16, u16) = (2, 1);

/// The header pictures, by contact.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Faces {
    /// Whether each contact has a picture, as their last profile said.
    pictured: HashMap<String, bool>,
    /// Contacts whose picture was fetched (or is being).
    faces: HashMap<String, Face>,
}

/// One contact's header picture.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Face {
    /// What the header draws: the last picture decoded (none: no picture, or it
    /// failed), kept while a newer one is fetched.
    encoded: Option<Encoded>,
    /// A fetch in flight.
    pending: Option<Pending>,
}

/// How far a fetch got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    /// The profile, with the picture, was asked for.
    Asked,
    /// The picture is being decoded.
    Decoding,
}

/// The picture the header draws now: the focused conversation's contact's, when
/// the terminal has a graphics protocol and it was decoded.
pub(crate) fn shown(app: &App) -> Option<&Encoded> {
    if !app.graphics.is_protocol() {
        return None;
    }
    let contact = app.focused()?.contact()?;
    app.faces.faces.get(&contact.peer_id)?.encoded.as_ref()
}

/// The focused conversation changed (or what is known about its contact did):
/// fetch its contact's picture if the header can show one and it was not fetched.
pub(super) fn want(app: &mut App, fx: &mut Vec<Effect>) {
    if !app.graphics.is_protocol() {
        return;
    }
    let Some(contact) = app.focused().and_then(|c| c.contact()) else { return };
    let peer = contact.peer_id.clone();
    let known_bare = app.faces.pictured.get(&peer) == Some(&false);
    if contact.state != ContactState::Accepted || known_bare || app.faces.faces.contains_key(&peer) {
        return;
    }
    app.faces.faces.insert(peer.clone(), Face { encoded: None, pending: Some(Pending::Asked) });
    // The answer carries the status line too: no second request for it.
    app.statuses.asked.insert(peer.clone());
    fx.push(Effect::LoadProfile { contact: Some(peer), avatar: true });
}

/// A profile came ([`Effect::LoadProfile`]): with the picture's bytes, a fetch the
/// header waits for goes on to decode them.
pub(super) fn on_profile(app: &mut App, with_avatar: bool, profile: &ProfileView, fx: &mut Vec<Effect>) {
    let peer = &profile.peer_id;
    app.faces.pictured.insert(peer.clone(), profile.avatar.is_some());
    if profile.avatar.is_none() {
        // No picture any more: nothing to draw, nothing to fetch.
        if let Some(face) = app.faces.faces.get_mut(peer) {
            *face = Face::default();
        }
    } else if let Some(face) = app.faces.faces.get_mut(peer)
        && with_avatar
        && face.pending == Some(Pending::Asked)
    {
        match profile.avatar.as_ref().and_then(|a| a.data.clone()) {
            Some(data) => {
                face.pending = Some(Pending::Decoding);
                fx.push(Effect::DecodeAvatar { peer_id: peer.clone(), data, room: HEADER_AVATAR_CELLS });
            }
            None => face.pending = None,
        }
    }
    want(app, fx);
}

/// A contact's profile changed: their picture is fetched again, now if their
/// conversation is open (unless `asked`: the profile overlay asks for the same
/// profile with the picture, and its answer does for both), else when it is next.
pub(super) fn on_changed(app: &mut App, profile: &ProfileView, asked: bool, fx: &mut Vec<Effect>) {
    let peer = &profile.peer_id;
    app.faces.pictured.insert(peer.clone(), profile.avatar.is_some());
    let open = app.focused_id() == Some(peer.as_str());
    match app.faces.faces.get_mut(peer) {
        None => {}
        Some(face) if profile.avatar.is_none() => *face = Face::default(),
        Some(face) if open && app.graphics.is_protocol() => {
            face.pending = Some(Pending::Asked);
            if !asked {
                fx.push(Effect::LoadProfile { contact: Some(peer.clone()), avatar: true });
            }
        }
        Some(_) => {
            app.faces.faces.remove(peer);
        }
    }
    want(app, fx);
}

/// A picture was decoded for `room`: the header's, if it waited for it.
pub(super) fn on_avatar(app: &mut App, peer_id: &str, room: (u16, u16), encoded: Option<Encoded>) {
    if room != HEADER_AVATAR_CELLS {
        return;
    }
    if let Some(face) = app.faces.faces.get_mut(peer_id)
        && face.pending == Some(Pending::Decoding)
    {
        *face = Face { encoded, pending: None };
    }
}

/// A fetch failed: the header goes without the picture (the old one, if any, stays)
/// until the profile changes. Returns whether it was the header's decoding (a
/// failed `profile` request may be the overlay's as well, so it is not claimed).
pub(super) fn on_failure(app: &mut App, effect: &Effect, error: &str) -> bool {
    match effect {
        Effect::LoadProfile { contact: Some(peer), avatar: true } => {
            if let Some(face) = app.faces.faces.get_mut(peer)
                && face.pending == Some(Pending::Asked)
            {
                face.pending = None;
            }
            false
        }
        Effect::DecodeAvatar { peer_id, room, .. } if *room == HEADER_AVATAR_CELLS => {
            if let Some(face) = app.faces.faces.get_mut(peer_id) {
                face.pending = None;
            }
            app.note(format!("decoding a contact's picture for the header: {error}"), true);
            true
        }
        _ => false,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::app::{Config, Conversation, test_contact};
    use crate::graphics::Graphics;
    use kith_p2p::views::AvatarView;

    /// A state with `peer` listed and focused, drawing through `graphics`.
    fn open(graphics: Graphics) -> App {
        let mut app = App::new(Config::default()).with_graphics(graphics);
        app.conversations.push(Conversation::new(test_contact("peer")));
        app.focused = Some("peer".into());
        app
    }

    fn profile(data: Option<&str>, pictured: bool) -> ProfileView {
        let avatar =
            pictured.then(|| AvatarView { media_type: "image/png".into(), size: 4, data: data.map(Into::into) });
        ProfileView { peer_id: "peer".into(), name: None, alias: None, status: None, avatar, updated_at: Some(1) }
    }

    fn encoded() -> Encoded {
        let image = image::DynamicImage::ImageRgb8(image::RgbImage::new(4, 4));
        let size = ratatui::layout::Size::new(2, 1);
        let blocks = ratatui_image::protocol::halfblocks::Halfblocks::new(image, size).unwrap();
        Encoded::new(ratatui_image::protocol::Protocol::Halfblocks(blocks))
    }

    #[test]
    fn half_blocks_never_ask() {
        let mut app = open(Graphics::HalfBlocks);
        let mut fx = Vec::new();
        want(&mut app, &mut fx);
        on_profile(&mut app, false, &profile(None, true), &mut fx);
        assert!(fx.is_empty());
        assert!(shown(&app).is_none());
    }

    #[test]
    fn fetched_once_decoded_for_the_header_and_fetched_again_when_changed() {
        let mut app = open(Graphics::Kitty);
        let mut fx = Vec::new();
        want(&mut app, &mut fx);
        want(&mut app, &mut fx);
        assert_eq!(fx, [Effect::LoadProfile { contact: Some("peer".into()), avatar: true }], "asked once");
        fx.clear();
        on_profile(&mut app, true, &profile(Some("AAAA"), true), &mut fx);
        let room = HEADER_AVATAR_CELLS;
        assert_eq!(fx, [Effect::DecodeAvatar { peer_id: "peer".into(), data: "AAAA".into(), room }]);
        // The overlay's decoding is not the header's.
        on_avatar(&mut app, "peer", crate::app::AVATAR_CELLS, Some(encoded()));
        assert!(shown(&app).is_none());
        let picture = encoded();
        on_avatar(&mut app, "peer", room, Some(picture.clone()));
        assert_eq!(shown(&app), Some(&picture));
        // Changed: asked again, the old picture shown meanwhile.
        fx.clear();
        on_changed(&mut app, &profile(None, true), false, &mut fx);
        assert_eq!(fx, [Effect::LoadProfile { contact: Some("peer".into()), avatar: true }]);
        assert_eq!(shown(&app), Some(&picture));
        // The picture dropped: none shown, none asked for.
        fx.clear();
        on_changed(&mut app, &profile(None, false), false, &mut fx);
        assert!(fx.is_empty() && shown(&app).is_none());
    }

    #[test]
    fn a_contact_known_to_have_no_picture_is_not_asked() {
        let mut app = open(Graphics::Sixel);
        let mut fx = Vec::new();
        on_profile(&mut app, false, &profile(None, false), &mut fx);
        assert!(fx.is_empty());
        // Their picture arrives: now it is.
        on_changed(&mut app, &profile(None, true), false, &mut fx);
        assert_eq!(fx, [Effect::LoadProfile { contact: Some("peer".into()), avatar: true }]);
    }
}
