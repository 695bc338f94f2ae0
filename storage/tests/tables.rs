//! The single-table handles: contacts, conversations, outbox, groups,
//! settings, invites.
#![allow(clippy::unwrap_used)]

mod common;

use common::{cid, mid, peer, temp_store};
use kith_storage::{
    Contact, ContactState, ConversationKind, Group, GroupId, Member, OutboxEntry, Recipient, Role,
    StoreError,
};

fn contact(n: u8, alias: Option<&str>) -> Contact {
    Contact {
        peer_id: peer(n),
        alias: alias.map(Into::into),
        display_name: Some("announced".into()),
        state: ContactState::PendingOut,
        e2e_public: None,
        binding: None,
        addrs: vec![],
        relays: vec!["/dns4/relay.example/tcp/4001".parse().unwrap()],
        added_at_ms: 5,
        updated_at_ms: 5,
        last_seen_ms: None,
        verified_at_ms: None,
        key_changed_at_ms: None,
    }
}

#[test]
fn the_contacts_state_change_count_moves_with_additions_state_changes_and_removals_only() {
    let (_dir, store) = temp_store();
    let contacts = store.contacts();
    let mut seen = contacts.state_changes();
    let mut moved = |what: &str, expected: bool| {
        let now = contacts.state_changes();
        assert_eq!(now != seen, expected, "{what}");
        seen = now;
    };
    contacts.put(&contact(1, None)).unwrap();
    moved("a new contact", true);
    contacts.get(&peer(1)).unwrap();
    contacts.list().unwrap();
    moved("reading", false);
    contacts.set_state(&peer(1), ContactState::Accepted).unwrap();
    moved("a state change", true);
    contacts.set_state(&peer(1), ContactState::Accepted).unwrap();
    moved("the same state again", false);
    let accepted = Contact { state: ContactState::Accepted, ..contact(1, Some("bob")) };
    contacts.put(&accepted).unwrap();
    moved("a rename", false);
    contacts.put(&contact(1, Some("bob"))).unwrap();
    moved("a state change written whole", true);
    contacts.remove(&peer(1)).unwrap();
    moved("a removal", true);
}

#[test]
fn contacts() {
    let (_dir, store) = temp_store();
    let contacts = store.contacts();
    contacts.put(&contact(26, Some("bob"))).unwrap();
    contacts.put(&contact(1, Some("Carol"))).unwrap();
    contacts.put(&contact(2, None)).unwrap();
    contacts.put(&contact(3, Some("alice"))).unwrap();
    let order: Vec<_> = contacts
        .list()
        .unwrap()
        .into_iter()
        .map(|c| c.peer_id)
        .collect();
    // Peer 2 has no alias: it sorts by its peer id's text, "Qm…".
    assert_eq!(
        order,
        [peer(3), peer(26), peer(1), peer(2)],
        "by alias or peer id, ignoring case"
    );

    let updated = contacts
        .set_state(&peer(26), ContactState::Accepted)
        .unwrap();
    assert_eq!(updated.state, ContactState::Accepted);
    assert_eq!(contacts.get(&peer(26)).unwrap(), Some(updated));
    assert!(matches!(
        contacts.set_state(&peer(99), ContactState::Blocked),
        Err(StoreError::NotFound { .. })
    ));
    assert!(contacts.remove(&peer(26)).unwrap());
    assert!(!contacts.remove(&peer(26)).unwrap());
    assert_eq!(contacts.get(&peer(26)).unwrap(), None);
    contacts.set_state(&peer(1), ContactState::Blocked).unwrap();

    // Contacts are read from memory: what the table holds, reopened, is the same.
    let shown = contacts.list().unwrap();
    assert_eq!(contacts.count(ContactState::Blocked).unwrap(), 1);
    let path = store.path().to_owned();
    drop((contacts, store));
    let store = common::open(&path).unwrap();
    assert_eq!(store.contacts().list().unwrap(), shown);
    assert_eq!(store.contacts().get(&peer(1)).unwrap().map(|c| c.state), Some(ContactState::Blocked));
}

#[test]
fn conversations() {
    let (_dir, store) = temp_store();
    let convs = store.conversations();
    let direct = ConversationKind::Direct {
        peer_id: "p".into(),
    };
    let group = ConversationKind::Group {
        group_id: GroupId([1; 16]),
    };
    let first = convs.get_or_create(cid(1), direct.clone(), 10).unwrap();
    assert_eq!(
        (first.kind.clone(), first.last_activity_ms, first.unread),
        (direct.clone(), 10, 0)
    );
    // An existing conversation is returned unchanged.
    assert_eq!(
        convs.get_or_create(cid(1), group.clone(), 99).unwrap(),
        first
    );
    // `ensure` creates a missing one and leaves an existing one as it is.
    convs.ensure(cid(1), group.clone(), 99).unwrap();
    assert_eq!(convs.get(cid(1)).unwrap(), Some(first));
    convs.ensure(cid(2), group, 30).unwrap();
    convs.get_or_create(cid(3), direct, 20).unwrap();
    let order: Vec<_> = convs.list().unwrap().into_iter().map(|c| c.id).collect();
    assert_eq!(order, [cid(2), cid(3), cid(1)], "most recent first");
    assert_eq!(convs.get(cid(4)).unwrap(), None);
}

#[test]
fn outbox() {
    let (_dir, store) = temp_store();
    let outbox = store.outbox();
    let entry = |n, next| OutboxEntry {
        id: mid(n),
        recipient: Recipient::Peer(common::peer(1)),
        payload: vec![n as u8],
        attempts: 0,
        next_attempt_ms: next,
        created_at_ms: 1,
    };
    assert!(outbox.is_empty());
    outbox.put(&entry(1, 300)).unwrap();
    outbox.put(&entry(2, 100)).unwrap();
    outbox.put(&entry(3, 200)).unwrap();
    let order: Vec<_> = outbox.list().unwrap().into_iter().map(|e| e.id).collect();
    assert_eq!(order, [mid(2), mid(3), mid(1)]);
    assert_eq!(outbox.due(200).unwrap().len(), 2);
    // Rescheduling replaces the entry.
    outbox
        .put(&OutboxEntry {
            attempts: 1,
            ..entry(2, 400)
        })
        .unwrap();
    assert_eq!(outbox.len(), 3);
    assert_eq!(outbox.get(mid(2)).unwrap().unwrap().attempts, 1);
    assert_eq!(outbox.list().unwrap().last().unwrap().id, mid(2));
    assert!(outbox.remove(mid(2)).unwrap());
    assert!(!outbox.remove(mid(2)).unwrap());
    assert_eq!(outbox.len(), 2);
}

#[test]
fn groups() {
    let (_dir, store) = temp_store();
    let groups = store.groups();
    let group = |n: u8, name: &str| Group {
        id: GroupId([n; 16]),
        name: name.into(),
        members: vec![
            Member {
                peer_id: "owner".into(),
                role: Role::Owner,
            },
            Member {
                peer_id: "m".into(),
                role: Role::Member,
            },
        ],
        version: 1,
        created_at_ms: 7,
        relays: vec!["/ip4/127.0.0.1/tcp/1".into()],
        active: true,
        invited_by: None,
    };
    groups.put(&group(1, "zeta")).unwrap();
    groups.put(&group(2, "alpha")).unwrap();
    assert_eq!(
        groups.get(GroupId([1; 16])).unwrap(),
        Some(group(1, "zeta"))
    );
    let names: Vec<_> = groups.list().unwrap().into_iter().map(|g| g.name).collect();
    assert_eq!(names, ["alpha", "zeta"]);
    assert!(groups.remove(GroupId([1; 16])).unwrap());
    assert_eq!(groups.get(GroupId([1; 16])).unwrap(), None);
}

#[test]
fn group_ops_keys_and_pending() {
    let (_dir, store) = temp_store();
    let groups = store.groups();
    let (g, other) = (GroupId([1; 16]), GroupId([2; 16]));
    // Operations come back in (height, digest) order, whatever the insertion order.
    assert!(groups.put_op(g, 3, &[0; 32], b"third").unwrap());
    assert!(groups.put_op(g, 1, &[9; 32], b"first").unwrap());
    assert!(groups.put_op(g, 2, &[5; 32], b"second").unwrap());
    assert!(!groups.put_op(g, 2, &[5; 32], b"second").unwrap(), "a repeat is not new");
    groups.put_op(other, 1, &[1; 32], b"elsewhere").unwrap();
    assert_eq!(groups.ops(g).unwrap(), [b"first".to_vec(), b"second".to_vec(), b"third".to_vec()]);
    // Keys by author and generation.
    groups.put_key(g, "alice", 1, &[7; 32]).unwrap();
    groups.put_key(g, "alice", 2, &[8; 32]).unwrap();
    assert_eq!(groups.key(g, "alice", 2).unwrap(), Some([8; 32]));
    assert_eq!(groups.key(g, "bob", 1).unwrap(), None);
    assert_eq!(groups.key(other, "alice", 1).unwrap(), None);
    // Pending messages by author and digest.
    groups.put_pending(g, "bob", &[3; 32], b"later").unwrap();
    groups.put_pending(g, "carol", &[4; 32], b"also later").unwrap();
    assert_eq!(groups.pending_count(g), 2);
    assert_eq!(groups.pending_count_by(g, "bob"), 1);
    let pending = groups.pending(g).unwrap();
    let (key, _) = pending.iter().find(|(_, bytes)| bytes == b"later").unwrap();
    groups.remove_pending(g, key).unwrap();
    assert_eq!(groups.pending_count(g), 1);
    assert_eq!(groups.pending_count_by(g, "bob"), 0);
    // Removing a group takes its operations and keys along, and nothing else.
    groups.put(&Group {
        id: g,
        name: "g".into(),
        members: Vec::new(),
        version: 3,
        created_at_ms: 0,
        relays: Vec::new(),
        active: true,
        invited_by: None,
    })
    .unwrap();
    groups.remove(g).unwrap();
    assert!(groups.ops(g).unwrap().is_empty());
    assert_eq!(groups.key(g, "alice", 1).unwrap(), None);
    assert_eq!(groups.ops(other).unwrap().len(), 1);
}

#[test]
fn sender_keys_keep_the_newest_generations_per_author() {
    let (_dir, store) = temp_store();
    let groups = store.groups();
    let g = GroupId([1; 16]);
    let generations = kith_storage::MAX_KEY_GENERATIONS as u32;
    // A member sending a key for every generation it can name leaves at most
    // MAX_KEY_GENERATIONS of them, the newest.
    for generation in 1..=generations + 5 {
        groups.put_key(g, "mallory", generation, &[generation as u8; 32]).unwrap();
    }
    groups.put_key(g, "alice", 1, &[1; 32]).unwrap();
    let kept: Vec<u32> = (1..=generations + 5).filter(|n| groups.key(g, "mallory", *n).unwrap().is_some()).collect();
    assert_eq!(kept, (6..=generations + 5).collect::<Vec<_>>());
    assert_eq!(groups.key(g, "alice", 1).unwrap(), Some([1; 32]), "another author's keys are untouched");
    // A key older than everything kept does not stay.
    groups.put_key(g, "mallory", 1, &[1; 32]).unwrap();
    assert_eq!(groups.key(g, "mallory", 1).unwrap(), None);
}

#[test]
fn settings() {
    let (_dir, store) = temp_store();
    let settings = store.settings();
    assert_eq!(settings.get::<u32>("port").unwrap(), None);
    settings.set("port", &4001u32).unwrap();
    settings.set("relays", &vec!["a", "b"]).unwrap();
    assert_eq!(settings.get::<u32>("port").unwrap(), Some(4001));
    assert_eq!(
        settings.get::<Vec<String>>("relays").unwrap().unwrap(),
        ["a", "b"]
    );
    // A value of the wrong type is a typed error, not a panic.
    assert!(matches!(
        settings.get::<String>("port"),
        Err(StoreError::Corrupt { .. })
    ));
    assert!(settings.remove("port").unwrap());
    assert_eq!(settings.get::<u32>("port").unwrap(), None);
}

#[test]
fn invites() {
    let (_dir, store) = temp_store();
    let invites = store.invites();
    invites.create([1; 16], 1_000).unwrap();
    invites.create([2; 16], 500).unwrap();
    invites.create([3; 16], 2_000).unwrap();
    assert_eq!(invites.len(), 3, "expired or not");
    assert_eq!(
        invites.list_active(600).unwrap(),
        [([1; 16], 1_000), ([3; 16], 2_000)]
    );
    assert!(invites.redeem(&[1; 16], 999).unwrap());
    assert!(!invites.redeem(&[1; 16], 999).unwrap(), "one time only");
    assert!(
        !invites.redeem(&[2; 16], 500).unwrap(),
        "expired at its expiry"
    );
    assert!(!invites.redeem(&[9; 16], 0).unwrap(), "unknown");
    assert_eq!(invites.list_active(0).unwrap(), [([3; 16], 2_000)]);
    assert_eq!(invites.purge_expired(2_000).unwrap(), 1);
    assert_eq!(invites.list_active(0).unwrap(), []);
    assert!(invites.is_empty());
}

#[test]
fn redeem_succeeds_once_under_concurrency() {
    let (_dir, store) = temp_store();
    store.invites().create([1; 16], u64::MAX).unwrap();
    let wins: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| s.spawn(|| store.invites().redeem(&[1; 16], 0).unwrap()))
            .collect();
        handles
            .into_iter()
            .map(|h| usize::from(h.join().unwrap()))
            .sum()
    });
    assert_eq!(wins, 1);
}

#[test]
fn ratchet_state_writes_in_one_batch_and_its_key_file_is_overwritten_in_place_and_survives_a_torn_write() {
    let (dir, store) = temp_store();
    let ratchet = store.ratchet();
    ratchet
        .write(&[
            (b"account".to_vec(), Some(b"a".to_vec())),
            (b"p/1".to_vec(), Some(b"one".to_vec())),
            (b"p/2".to_vec(), Some(b"two".to_vec())),
            (b"p/1".to_vec(), None),
        ])
        .unwrap();
    assert_eq!(ratchet.scan(b"p/").unwrap(), [(b"p/2".to_vec(), b"two".to_vec())], "a later change of a key wins");
    let too_long = vec![0u8; 70_000];
    assert!(matches!(
        ratchet.write(&[(b"p/3".to_vec(), Some(b"x".to_vec())), (too_long, None)]),
        Err(StoreError::Encode { .. })
    ));
    assert_eq!(ratchet.get(b"p/3").unwrap(), None, "refused whole, before anything was written");
    ratchet.write(&[(b"p/3".to_vec(), Some(b"three".to_vec()))]).unwrap();
    assert_eq!(
        ratchet.scan_where(b"p/", |key, len| key != b"p/2" && len >= 5).unwrap(),
        [(b"p/3".to_vec(), b"three".to_vec())],
        "a scan that leaves records by key and length"
    );

    assert_eq!(ratchet.read_key_file().unwrap(), None);
    let key_file = dir.path().join("db").join(kith_storage::RATCHET_KEY_FILE);
    let first = [7u8; 200];
    ratchet.write_key_file(&first).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(ratchet.read_key_file().unwrap().as_deref(), Some(&first[..]));
    let size = std::fs::metadata(&key_file).unwrap().len();
    ratchet.write_key_file(b"short").unwrap();
    assert_eq!(ratchet.read_key_file().unwrap().as_deref(), Some(&b"short"[..]));
    let bytes = std::fs::read(&key_file).unwrap();
    assert_eq!(bytes.len() as u64, size, "one fixed slot");
    assert!(!bytes.windows(8).any(|w| w == [7u8; 8]), "nothing of the longer contents before stays");
    // A crash inside the next write, as the file would be left: `before` holds
    // "short" in one slot of 512 bytes, `after` holds "newer" in the other.
    let before = bytes;
    ratchet.write_key_file(b"newer").unwrap();
    let after = std::fs::read(&key_file).unwrap();
    let old = if before[..512].iter().all(|b| *b == 0) { 1 } else { 0 };
    let slot = |n: usize| n * 512..(n + 1) * 512;
    // After the new slot was synced, before the old one was zeroed: both are
    // whole, and the newer one wins.
    let mut crashed = after.clone();
    crashed[slot(old)].copy_from_slice(&before[slot(old)]);
    std::fs::write(&key_file, &crashed).unwrap();
    assert_eq!(ratchet.read_key_file().unwrap().as_deref(), Some(&b"newer"[..]), "the higher sequence wins");
    // While the new slot was being written: half of it on disk, the old slot
    // whole, which is what the file holds.
    let mut torn = before.clone();
    torn[slot(1 - old).start..slot(1 - old).start + 256].copy_from_slice(&after[slot(1 - old).start..slot(1 - old).start + 256]);
    std::fs::write(&key_file, &torn).unwrap();
    assert_eq!(ratchet.read_key_file().unwrap().as_deref(), Some(&b"short"[..]), "a torn write leaves the last whole contents");
    ratchet.write_key_file(b"after the tear").unwrap();
    assert_eq!(ratchet.read_key_file().unwrap().as_deref(), Some(&b"after the tear"[..]));
    assert!(!std::fs::read(&key_file).unwrap().windows(5).any(|w| w == b"short"), "the replaced contents are zeroed");
    assert!(ratchet.write_key_file(&vec![1; kith_storage::RATCHET_KEY_FILE_CAPACITY + 1]).is_err());
    ratchet.write_key_file(&vec![1; kith_storage::RATCHET_KEY_FILE_CAPACITY]).unwrap();
    drop(ratchet);
    drop(store);

    let store = common::open(&dir.path().join("db")).unwrap();
    assert_eq!(store.ratchet().get(b"p/3").unwrap().as_deref(), Some(&b"three"[..]));
    assert_eq!(store.ratchet().read_key_file().unwrap().map(|c| c.len()), Some(kith_storage::RATCHET_KEY_FILE_CAPACITY));
    std::fs::write(&key_file, b"not a slot").unwrap();
    assert!(matches!(store.ratchet().read_key_file(), Err(StoreError::Corrupt { .. })));
}
