//! [`Directory`]: the node's use of the DHT's peer records as a state machine — which
//! lookups to start, when to publish our own record, and which records found to
//! believe — without a swarm or a store.
//!
//! A record is believed only if it verifies (signed by the peer it names, the peer we
//! looked up, unexpired) and is newer than any record of that peer seen before, so a
//! replayed older record cannot move a contact back to old addresses or keys. What a
//! believed record changes in a contact is [`apply_record`]'s to say.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::time::{Duration, Instant};

use kith_storage::Contact;
use libp2p::PeerId;
use libp2p::kad::QueryId;

use crate::peer_record::{PeerRecord, RecordCache};

/// Peers whose newest record is remembered for staleness checks.
const RECORD_CACHE: usize = 4096;

/// Lookups under way and records seen (queries by the swarm's id; any id in tests).
pub(crate) struct Directory<Q = QueryId> {
    records: RecordCache,
    /// Peers being looked up, and by which query.
    looking_up: HashSet<PeerId>,
    lookups: HashMap<Q, PeerId>,
    /// When our record was last published, and how far apart publications must be.
    last_publish: Option<Instant>,
    publish_spacing: Duration,
}

impl<Q: Hash + Eq> Directory<Q> {
    /// A directory that publishes our record at most once per `publish_spacing`.
    pub(crate) fn new(publish_spacing: Duration) -> Self {
        Directory {
            records: RecordCache::new(RECORD_CACHE),
            looking_up: HashSet::new(),
            lookups: HashMap::new(),
            last_publish: None,
            publish_spacing,
        }
    }

    /// Whether to start a lookup of `peer`: not while one is under way. A `true`
    /// counts as started; report its query with [`looking_up`](Self::looking_up).
    pub(crate) fn should_look_up(&mut self, peer: PeerId) -> bool {
        self.looking_up.insert(peer)
    }

    /// Query `query` looks up `peer`.
    pub(crate) fn looking_up(&mut self, query: Q, peer: PeerId) {
        self.lookups.insert(query, peer);
    }

    /// Whether to publish our record at `now`; a `true` counts as published.
    pub(crate) fn should_publish(&mut self, now: Instant) -> bool {
        if self.last_publish.is_some_and(|t| now.saturating_duration_since(t) < self.publish_spacing) {
            return false;
        }
        self.last_publish = Some(now);
        true
    }

    /// Our record changed (e.g. new relays): the next publication goes out at once.
    pub(crate) fn record_changed(&mut self) {
        self.last_publish = None;
    }

    /// Query `query` found `value` at `now_secs`: the record, if it is one to believe
    /// (see the module docs); `None` for anything else, including a record already
    /// seen.
    pub(crate) fn found(&mut self, query: &Q, value: &[u8], now_secs: u64) -> Option<PeerRecord> {
        let peer = *self.lookups.get(query)?;
        let record = match PeerRecord::verify(value, Some(&peer), now_secs) {
            Ok(record) => record,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "ignoring invalid peer record");
                return None;
            }
        };
        match self.records.accept(record.clone()) {
            Ok(true) => Some(record),
            Ok(false) => None,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "ignoring stale peer record");
                None
            }
        }
    }

    /// Query `query` is over.
    pub(crate) fn query_done(&mut self, query: &Q) {
        if let Some(peer) = self.lookups.remove(query) {
            self.looking_up.remove(&peer);
        }
    }
}

/// Brings `contact` up to date with its peer's believed `record` at `now_ms`: keys,
/// addresses and relays follow the record; the name the peer chose fills in only
/// where the contact has none (a local alias always wins, as it is a separate field).
/// Returns whether the record brought an end-to-end key other than the one known
/// (then the contact is marked changed: see [`Contact::held`]). A record whose key is
/// older than the one held, or whose binding expired, changes nothing.
pub(crate) fn apply_record(contact: &mut Contact, record: &PeerRecord, now_ms: u64) -> bool {
    use crate::identity::KeyUpdate;
    let update = crate::ops::take_key(contact, record.e2e_public, &record.binding, now_ms);
    if matches!(update, KeyUpdate::Stale | KeyUpdate::Expired) {
        return false;
    }
    let changed = update == KeyUpdate::Changed;
    if contact.display_name.is_none() {
        contact.display_name = record.display_name.clone();
    }
    contact.addrs = record.addrs.clone();
    contact.relays = record.relays.clone();
    contact.updated_at_ms = now_ms;
    changed
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use kith_storage::ContactState;

    use super::*;
    use crate::identity::Identity;

    const NOW: u64 = 1_700_000_000;

    fn record(identity: &Identity, seq: u64, addr: &str) -> PeerRecord {
        PeerRecord {
            peer_id: identity.peer_id(),
            e2e_public: identity.e2e_public(),
            binding: identity.binding(),
            addrs: vec![addr.parse().unwrap()],
            relays: Vec::new(),
            display_name: Some("Ann".into()),
            seq,
            expires_at_secs: NOW + 3600,
        }
    }

    fn signed(identity: &Identity, seq: u64, addr: &str) -> Vec<u8> {
        record(identity, seq, addr).sign(identity).unwrap()
    }

    #[test]
    fn one_lookup_per_peer_at_a_time() {
        let mut dir = Directory::<u32>::new(Duration::from_secs(2));
        let peer = PeerId::random();
        assert!(dir.should_look_up(peer));
        dir.looking_up(1, peer);
        assert!(!dir.should_look_up(peer), "already under way");
        dir.query_done(&1);
        assert!(dir.should_look_up(peer), "over: may start again");
    }

    #[test]
    fn only_newer_records_signed_by_the_peer_looked_up_are_believed() {
        let ann = Identity::generate();
        let mallory = Identity::generate();
        let mut dir = Directory::<u32>::new(Duration::from_secs(2));
        assert!(dir.should_look_up(ann.peer_id()));
        dir.looking_up(7, ann.peer_id());
        // Mallory's own valid record, answered to a lookup of Ann: refused.
        assert_eq!(dir.found(&7, &signed(&mallory, 5, "/ip4/10.0.0.66/tcp/1"), NOW), None);
        assert_eq!(dir.found(&7, b"garbage", NOW), None);
        let newer = dir.found(&7, &signed(&ann, 5, "/ip4/10.0.0.1/tcp/1"), NOW).unwrap();
        assert_eq!(newer.seq, 5);
        // Seen already, then an older (replayed) one: neither is news.
        assert_eq!(dir.found(&7, &signed(&ann, 5, "/ip4/10.0.0.1/tcp/1"), NOW), None);
        assert_eq!(dir.found(&7, &signed(&ann, 4, "/ip4/10.0.0.9/tcp/1"), NOW), None);
        // Expired: refused.
        assert_eq!(dir.found(&7, &signed(&ann, 6, "/ip4/10.0.0.2/tcp/1"), NOW + 7200), None);
        assert_eq!(dir.found(&7, &signed(&ann, 6, "/ip4/10.0.0.2/tcp/1"), NOW).map(|r| r.seq), Some(6));
        // An answer to a query we did not start is ignored.
        assert_eq!(dir.found(&8, &signed(&ann, 9, "/ip4/10.0.0.3/tcp/1"), NOW), None);
    }

    #[test]
    fn publications_are_spaced_unless_the_record_changed() {
        let mut dir = Directory::<u32>::new(Duration::from_secs(2));
        let t = Instant::now();
        assert!(dir.should_publish(t));
        assert!(!dir.should_publish(t + Duration::from_secs(1)));
        assert!(dir.should_publish(t + Duration::from_secs(2)));
        dir.record_changed();
        assert!(dir.should_publish(t + Duration::from_secs(2)), "a change goes out at once");
    }

    #[test]
    fn a_record_updates_keys_and_addresses_but_not_a_name_already_known() {
        let ann = Identity::generate();
        let mut contact = Contact {
            peer_id: ann.peer_id(),
            alias: Some("my sister".into()),
            display_name: None,
            state: ContactState::Accepted,
            e2e_public: None,
            binding: None,
            addrs: vec!["/ip4/10.0.0.1/tcp/1".parse().unwrap()],
            relays: vec!["/ip4/10.0.0.5/tcp/1".parse().unwrap()],
            added_at_ms: 1,
            updated_at_ms: 1,
            last_seen_ms: None,
            verified_at_ms: None,
            key_changed_at_ms: None,
        };
        let rec = record(&ann, 3, "/ip4/10.0.0.2/tcp/2");
        apply_record(&mut contact, &rec, 99);
        assert_eq!(contact.e2e_public, Some(ann.e2e_public()));
        assert_eq!(contact.addrs, ["/ip4/10.0.0.2/tcp/2".parse::<libp2p::Multiaddr>().unwrap()]);
        assert!(contact.relays.is_empty());
        assert_eq!((contact.alias.as_deref(), contact.display_name.as_deref()), (Some("my sister"), Some("Ann")));
        assert_eq!(contact.updated_at_ms, 99);
        let mut renamed = rec.clone();
        renamed.display_name = Some("Annie".into());
        assert!(!apply_record(&mut contact, &renamed, 100), "the same key is no change");
        assert_eq!(contact.display_name.as_deref(), Some("Ann"), "the first name learned stays");
        assert_eq!(contact.key_changed_at_ms, None);

        // The same identity with another end-to-end key: taken, and marked.
        let rekeyed = Identity::from_secrets(ann.ed25519_seed(), [9; 32]);
        assert!(apply_record(&mut contact, &record(&rekeyed, 4, "/ip4/10.0.0.2/tcp/2"), 101));
        assert_eq!(contact.e2e_public, Some(rekeyed.e2e_public()));
        assert_eq!(contact.key_changed_at_ms, Some(101));
        contact.verified_at_ms = Some(50);
        assert!(contact.held(), "a verified contact whose key changed is held");
    }
}
