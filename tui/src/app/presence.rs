//! Presence: which contacts are online, and when each was last seen, as the node
//! says: its `presence` list at start and after reconnecting (or missed events),
//! and `presence` events in between.
//!
//! Only what the node heard is known. With presence off its list is empty and no
//! event ever comes, so nothing is shown: no contact is called offline for want of
//! news. Open connections are not presence (a contact can be online with none open,
//! an idle one having closed), and showing them would show online a contact who
//! turned presence off; the interface no longer marks them.

use kith_p2p::node::presence::PresenceView;

use super::App;

/// A contact's presence as the node last said it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Presence {
    /// Online now.
    pub online: bool,
    /// When it was last seen online (ms since the Unix epoch): now while online.
    /// `None` if the node has not seen it online since it started.
    pub last_seen: Option<u64>,
}

impl From<&PresenceView> for Presence {
    fn from(view: &PresenceView) -> Presence {
        Presence { online: view.online, last_seen: view.last_seen }
    }
}

/// The node's whole list: it replaces what was known.
pub(super) fn on_list(app: &mut App, list: &[PresenceView]) {
    app.presence = list.iter().map(|view| (view.peer_id.clone(), Presence::from(view))).collect();
    let offline: Vec<String> = list.iter().filter(|v| !v.online).map(|v| v.peer_id.clone()).collect();
    for peer in offline {
        super::typing::stop_everywhere(app, &peer);
    }
}

/// A contact came online or went offline. Someone offline types nowhere.
pub(super) fn on_event(app: &mut App, peer_id: String, online: bool, last_seen: Option<u64>) {
    if !online {
        super::typing::stop_everywhere(app, &peer_id);
    }
    app.presence.insert(peer_id, Presence { online, last_seen });
}

/// The node is gone: nothing it said holds any more (the list is asked for again
/// once it is back).
pub(super) fn forget(app: &mut App) {
    app.presence.clear();
}
