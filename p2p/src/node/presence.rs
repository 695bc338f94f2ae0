//! Presence: which contacts are online, and when each was last seen.
//!
//! A node with presence on tells an accepted contact "online for the next
//! `ttl`" ([`crate::payload::Payload::Presence`]) when a connection to it opens,
//! renews that every half `ttl` to the contacts that are online to it (over the
//! connection, or dialling it again once an idle connection closed), and says
//! "offline" to those it is connected to when it stops. A contact counts as
//! online from its announcement until it says otherwise or its `ttl` lapses
//! (a crash, a lost network), so no one polls anyone: traffic is one small
//! sealed message per online contact per half `ttl` (docs/PERFORMANCE.md).
//!
//! With presence off a node sends none of this and keeps none of what it
//! receives: it neither shows nor is shown.
//!
//! Plain state with no I/O: the actor feeds it connections, announcements and
//! time, and sends what it says to.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::PeerId;
use serde::{Deserialize, Serialize};

/// The longest `ttl` an announcement may claim; longer ones are cut to it.
pub const MAX_TTL: Duration = Duration::from_secs(3600);

/// The shortest: an announcement "online" for less counts as offline.
pub const MIN_TTL: Duration = Duration::from_secs(2);

/// A contact's presence as clients see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceView {
    /// The contact's peer id.
    pub peer_id: String,
    /// Whether it is online now.
    pub online: bool,
    /// When it was last seen online (ms since the Unix epoch): now while online,
    /// the moment it went offline after (kept in the contact record across
    /// restarts). `None` if never seen.
    pub last_seen: Option<u64>,
}

/// One contact whose presence changed, to report.
pub(crate) type Change = PresenceView;

/// What one contact told us.
#[derive(Debug, Clone, Copy)]
struct Heard {
    /// Online until then (`None`: offline).
    until: Option<Instant>,
    /// Wall clock of the last moment it was online.
    last_seen_ms: u64,
}

/// The presence state of one node.
#[derive(Debug)]
pub(crate) struct Presence {
    enabled: bool,
    ttl: Duration,
    heard: HashMap<PeerId, Heard>,
    /// When we last told each contact we are online.
    told: HashMap<PeerId, Instant>,
}

impl Presence {
    /// Presence `enabled` or not, announcing `ttl` (renewed every half of it).
    pub(crate) fn new(enabled: bool, ttl: Duration) -> Presence {
        Presence { enabled, ttl: ttl.clamp(MIN_TTL, MAX_TTL), heard: HashMap::new(), told: HashMap::new() }
    }

    /// The `ttl` our announcements carry.
    pub(crate) fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Whether to tell `peer` we are online now (a connection opened, or it became
    /// an accepted contact): not if we did a moment ago.
    pub(crate) fn should_tell(&self, peer: &PeerId, now: Instant) -> bool {
        self.enabled && self.told.get(peer).is_none_or(|at| now.duration_since(*at) >= self.ttl / 4)
    }

    /// We told `peer` we are online.
    pub(crate) fn told(&mut self, peer: PeerId, now: Instant) {
        self.told.insert(peer, now);
    }

    /// `peer` said it is online for `ttl` (or offline, `ttl` zero): the change to
    /// report, if any.
    pub(crate) fn heard(&mut self, peer: PeerId, online: bool, ttl: Duration, now: Instant, now_ms: u64) -> Option<Change> {
        if !self.enabled {
            return None;
        }
        let was_online = self.is_online(&peer, now);
        // Online for less than our least ttl is a flap, not presence: offline.
        let online = online && ttl >= MIN_TTL;
        let heard = if online {
            Heard { until: Some(now + ttl.min(MAX_TTL)), last_seen_ms: now_ms }
        } else {
            let last_seen_ms = self.heard.get(&peer).map_or(now_ms, |h| if was_online { now_ms } else { h.last_seen_ms });
            Heard { until: None, last_seen_ms }
        };
        self.heard.insert(peer, heard);
        if online != was_online {
            // A contact that went away forgot what we told it; back, it must hear it again.
            self.told.remove(&peer);
        }
        (online != was_online).then(|| view(&peer, online, Some(heard.last_seen_ms)))
    }

    /// Time passed: contacts whose announcements lapsed (now offline), and the
    /// contacts to tell again that we are online (those online to us whom we told
    /// half a `ttl` ago or never).
    pub(crate) fn tick(&mut self, now: Instant) -> (Vec<Change>, Vec<PeerId>) {
        if !self.enabled {
            return (Vec::new(), Vec::new());
        }
        let mut lapsed = Vec::new();
        for (peer, heard) in &mut self.heard {
            if heard.until.is_some_and(|until| until <= now) {
                heard.until = None;
                lapsed.push(view(peer, false, Some(heard.last_seen_ms)));
            }
        }
        let renew: Vec<PeerId> = self
            .heard
            .iter()
            .filter(|(_, h)| h.until.is_some())
            .map(|(peer, _)| *peer)
            .filter(|peer| self.told.get(peer).is_none_or(|at| now.duration_since(*at) >= self.ttl / 2))
            .collect();
        for peer in &renew {
            self.told.insert(*peer, now);
        }
        (lapsed, renew)
    }

    /// The contacts to tell we go offline (those we told we are online).
    pub(crate) fn stopping(&mut self) -> Vec<PeerId> {
        self.told.drain().map(|(peer, _)| peer).collect()
    }

    /// Everyone heard from since the node started, online first; empty when off.
    pub(crate) fn views(&self, now: Instant) -> Vec<PresenceView> {
        let mut all: Vec<PresenceView> = self
            .heard
            .iter()
            .map(|(peer, h)| view(peer, h.until.is_some_and(|u| u > now), Some(h.last_seen_ms)))
            .collect();
        all.sort_by(|a, b| b.online.cmp(&a.online).then_with(|| a.peer_id.cmp(&b.peer_id)));
        all
    }

    /// When the next announcement lapses, for the actor's timer.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.heard.values().filter_map(|h| h.until).min()
    }

    fn is_online(&self, peer: &PeerId, now: Instant) -> bool {
        self.heard.get(peer).and_then(|h| h.until).is_some_and(|until| until > now)
    }
}

fn view(peer: &PeerId, online: bool, last_seen: Option<u64>) -> PresenceView {
    PresenceView { peer_id: peer.to_base58(), online, last_seen }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(600);

    #[test]
    fn an_announcement_makes_a_contact_online_until_it_says_otherwise_or_lapses() {
        let mut p = Presence::new(true, TTL);
        let (bob, t0) = (PeerId::random(), Instant::now());
        let change = p.heard(bob, true, TTL, t0, 1_000).unwrap();
        assert!(change.online);
        assert_eq!(change.last_seen, Some(1_000));
        assert!(p.heard(bob, true, TTL, t0 + Duration::from_secs(300), 301_000).is_none(), "a renewal changes nothing");
        let change = p.heard(bob, false, Duration::ZERO, t0 + Duration::from_secs(400), 401_000).unwrap();
        assert!(!change.online);
        assert_eq!(change.last_seen, Some(401_000), "last seen when it said goodbye");

        p.heard(bob, true, TTL, t0 + Duration::from_secs(500), 501_000);
        let (lapsed, _) = p.tick(t0 + Duration::from_secs(500) + TTL);
        assert_eq!(lapsed.len(), 1, "silence past the ttl: offline");
        assert_eq!(lapsed[0].last_seen, Some(501_000));
        assert!(!p.views(t0 + Duration::from_secs(2000))[0].online);
    }

    #[test]
    fn we_tell_a_contact_on_connecting_and_renew_at_half_the_ttl_only_while_it_is_online() {
        let mut p = Presence::new(true, TTL);
        let (bob, carol, t0) = (PeerId::random(), PeerId::random(), Instant::now());
        assert!(p.should_tell(&bob, t0));
        p.told(bob, t0);
        assert!(!p.should_tell(&bob, t0 + Duration::from_secs(10)), "not again at once");
        assert!(p.should_tell(&carol, t0));
        p.told(carol, t0);
        p.heard(bob, true, TTL, t0, 1);
        assert!(p.should_tell(&bob, t0), "back from offline: what we told it before is forgotten");
        p.told(bob, t0);
        let (_, renew) = p.tick(t0 + Duration::from_secs(299));
        assert!(renew.is_empty());
        let (_, renew) = p.tick(t0 + TTL / 2);
        assert_eq!(renew, [bob], "Carol never said she is online: no renewals to her");
        let mut stopping = p.stopping();
        stopping.sort();
        let mut both = vec![bob, carol];
        both.sort();
        assert_eq!(stopping, both);
    }

    #[test]
    fn with_presence_off_nothing_is_sent_or_kept() {
        let mut p = Presence::new(false, TTL);
        let (bob, t0) = (PeerId::random(), Instant::now());
        assert!(!p.should_tell(&bob, t0));
        assert!(p.heard(bob, true, TTL, t0, 1).is_none());
        assert!(p.views(t0).is_empty());
        assert_eq!(p.tick(t0 + TTL), (Vec::new(), Vec::new()));
        assert!(p.stopping().is_empty());
    }

    #[test]
    fn an_announcement_is_one_small_sealed_message() {
        use crate::envelope::{Opener, Sealer, SealerConfig};
        use crate::identity::Identity;
        use crate::payload::Payload;
        let (alice, bob) = (Identity::generate(), Identity::generate());
        let mut sealer = Sealer::new(&alice, SealerConfig::default());
        let mut opener = Opener::new(&bob, 16);
        let payload = Payload::Presence { online: true, ttl_s: 600 }.encode().unwrap();
        let first = sealer.seal(&bob.e2e_public(), &payload).unwrap();
        let next = sealer.seal(&bob.e2e_public(), &payload).unwrap();
        // Recorded in docs/PERFORMANCE.md ("Presence").
        println!("presence payload {} bytes, sealed {} (with the session's handshake), then {}", payload.len(), first.len(), next.len());
        assert!(first.len() < 400 && next.len() < 400, "{} then {}", first.len(), next.len());
        let opened = opener.open(&next).unwrap();
        assert_eq!(Payload::decode(&opened.plaintext).unwrap(), Payload::Presence { online: true, ttl_s: 600 });
    }

    #[test]
    fn online_for_less_than_two_seconds_is_offline() {
        let mut p = Presence::new(true, TTL);
        let (bob, t0) = (PeerId::random(), Instant::now());
        p.heard(bob, true, TTL, t0, 1);
        let change = p.heard(bob, true, Duration::ZERO, t0, 2).unwrap();
        assert!(!change.online, "a zero ttl flaps nothing online");
        assert!(p.heard(bob, true, Duration::from_secs(1), t0, 3).is_none(), "still offline");
    }

    #[test]
    fn a_claimed_ttl_is_held_to_an_hour() {
        let mut p = Presence::new(true, TTL);
        let (bob, t0) = (PeerId::random(), Instant::now());
        p.heard(bob, true, Duration::from_secs(365 * 86_400), t0, 1);
        let (lapsed, _) = p.tick(t0 + MAX_TTL);
        assert_eq!(lapsed.len(), 1);
    }
}
