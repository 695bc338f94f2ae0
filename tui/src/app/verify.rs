//! Key verification: `/verify <contact>` shows the contact's safety number and its
//! QR code (to compare with what their device shows), `/verify <contact> mark`
//! (or `unmark`) records that they were compared.
//!
//! Both ask the node ([`Effect::Verify`]); the answer carries the contact as it is
//! now (verified or not, key changed or not), which replaces the listed one, and
//! when it was marked verified, kept for the profile overlay's "since" date. The
//! overlay is drawn by `ui/verify.rs`; the header's and the profile's markers read
//! the listed contact.

use std::collections::HashMap;

use kith_p2p::views::VerifyView;

use super::{App, Overlay};
use crate::action::Effect;

/// When contacts were marked verified, by peer id, as the node last said.
pub(crate) type VerifiedAt = HashMap<String, u64>;

/// The verify overlay's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyCard {
    /// The contact as asked (a peer id, or a name the node resolves).
    pub asked: String,
    /// The safety number and QR code, once they came.
    pub view: Option<VerifyView>,
    /// Why they could not be read.
    pub error: Option<String>,
}

/// When `peer_id` was marked verified, if known.
pub(crate) fn verified_at(app: &App, peer_id: &str) -> Option<u64> {
    app.verified_at.get(peer_id).copied()
}

/// `/verify <contact> [mark | unmark]`: open the overlay and ask for the safety
/// number, or ask the node to mark (unmark) the contact.
pub(super) fn command(app: &mut App, who: String, mark: Option<bool>, fx: &mut Vec<Effect>) {
    let contact = super::profile::peer_of(app, who);
    match mark {
        None => app.overlay = Some(Overlay::Verify(VerifyCard { asked: contact.clone(), view: None, error: None })),
        Some(mark) => {
            let name = app.conversation(&contact).map_or_else(|| contact.clone(), |c| c.label().to_owned());
            let doing = if mark { "marking" } else { "unmarking" };
            app.set_status(crate::text::sanitize_line(&format!("{doing} {name} verified…")), false);
        }
    }
    fx.push(Effect::Verify { contact, mark });
}

/// The profile overlay opens for `peer_id`: a verified contact's "since" date is
/// asked for if not known yet.
pub(super) fn on_profile_open(app: &App, peer_id: &str, fx: &mut Vec<Effect>) {
    let verified = app.conversation(peer_id).and_then(|c| c.contact()).is_some_and(|c| c.verified);
    if verified && verified_at(app, peer_id).is_none() {
        fx.push(Effect::Verify { contact: peer_id.to_owned(), mark: None });
    }
}

/// The node answered: the contact is updated, a mark confirmed on the status line,
/// and the overlay shows the answer if it waits for this contact.
pub(super) fn on_verified(app: &mut App, mark: Option<bool>, view: VerifyView) {
    let peer = view.contact.peer_id.clone();
    match view.verified_at {
        Some(at) => app.verified_at.insert(peer.clone(), at),
        None => app.verified_at.remove(&peer),
    };
    let name = view.contact.label().to_owned();
    // Only a contact already listed is updated: the answer is no reason to list one.
    if app.conversation(&peer).is_some() {
        super::update::upsert_contact(app, view.contact.clone());
    }
    match mark {
        Some(true) => app.set_status(crate::text::sanitize_line(&format!("{name} is marked verified")), false),
        Some(false) => {
            app.set_status(crate::text::sanitize_line(&format!("{name} is no longer marked verified")), false)
        }
        None => {}
    }
    if let Some(Overlay::Verify(card)) = &mut app.overlay
        && (card.asked == peer || view.contact.label() == card.asked)
    {
        card.error = None;
        card.view = Some(view);
    }
}

/// A verify request failed: the overlay says why if it waited for it, else the
/// status line. Returns whether it was one.
pub(super) fn on_failure(app: &mut App, effect: &Effect, error: &str) -> bool {
    let Effect::Verify { contact, mark } = effect else { return false };
    if let Some(Overlay::Verify(card)) = &mut app.overlay
        && card.asked == *contact
        && card.view.is_none()
    {
        card.error = Some(error.to_owned());
        return true;
    }
    match mark {
        Some(true) => app.set_status(format!("marking {contact} verified: {error}"), true),
        Some(false) => app.set_status(format!("unmarking {contact}: {error}"), true),
        // Only the profile's "since" date was missing: the log keeps why.
        None => app.note(format!("reading {contact}'s safety number: {error}"), true),
    }
    true
}

