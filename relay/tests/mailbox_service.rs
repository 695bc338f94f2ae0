//! The mailbox role end to end: a real `kith-relay` process on loopback, in-test
//! libp2p peers depositing, draining and acking over `/kith/mailbox/1`.
#![allow(clippy::unwrap_used)]

mod common;

use common::{RelayProcess, TestPeer, files_under, loopback_config, metric};
use kith_p2p::envelope::Sealer;
use kith_p2p::identity::Identity;
use kith_p2p::mailbox::{
    DepositResult, MAX_DEPOSIT_BATCH, MailItem, MailboxRequest, MailboxResponse, Refusal,
};
use libp2p::{Multiaddr, PeerId, identity};

/// Deposits `envelopes` for `owner` in batches; returns each batch's results.
async fn deposit_all(
    sender: &mut TestPeer,
    relay: &RelayProcess,
    owner: &PeerId,
    envelopes: &[Vec<u8>],
) -> Vec<DepositResult> {
    let mut results = Vec::new();
    for batch in envelopes.chunks(MAX_DEPOSIT_BATCH) {
        let request = MailboxRequest::deposit(owner, batch.to_vec());
        match sender.request(relay.peer_id, &relay.addr(), request).await {
            MailboxResponse::Deposited { results: r } => {
                assert_eq!(r.len(), batch.len());
                results.extend(r);
            }
            other => panic!("deposit refused: {other:?}"),
        }
    }
    results
}

/// One signed drain page.
async fn drain(
    owner: &mut TestPeer,
    identity: &Identity,
    relay: PeerId,
    addr: &Multiaddr,
    after: Option<u64>,
    max: u32,
) -> MailboxResponse {
    let nonce = owner.challenge(relay, addr).await;
    owner
        .request(
            relay,
            addr,
            MailboxRequest::drain(identity, &relay, nonce, after, max),
        )
        .await
}

/// Drains every page; returns all items.
async fn drain_all(
    owner: &mut TestPeer,
    identity: &Identity,
    relay: PeerId,
    addr: &Multiaddr,
    page: u32,
) -> Vec<MailItem> {
    let mut all: Vec<MailItem> = Vec::new();
    loop {
        let after = all.last().map(|i| i.seq);
        match drain(owner, identity, relay, addr, after, page).await {
            MailboxResponse::Envelopes { items, more } => {
                assert!(items.len() <= page as usize);
                all.extend(items);
                if !more {
                    return all;
                }
            }
            other => panic!("drain refused: {other:?}"),
        }
    }
}

fn envelopes(n: usize, tag: &str) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| format!("{tag} envelope {i:03} {}", "x".repeat(i % 50)).into_bytes())
        .collect()
}

#[tokio::test]
async fn deposit_drain_ack_then_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let relay = RelayProcess::start(dir.path(), &loopback_config(&dir.path().join("data"), ""));
    let addr = relay.addr();
    let owner = Identity::generate();

    let mut sender = TestPeer::new(identity::Keypair::generate_ed25519());
    let sent = envelopes(100, "round trip");
    let results = deposit_all(&mut sender, &relay, &owner.peer_id(), &sent).await;
    assert!(
        results.iter().all(|r| *r == DepositResult::Stored),
        "{results:?}"
    );
    // The same bytes again are duplicates, not new mail.
    let again = deposit_all(&mut sender, &relay, &owner.peer_id(), &sent[..3]).await;
    assert_eq!(again, vec![DepositResult::Duplicate; 3]);

    let mut me = TestPeer::new(owner.libp2p_keypair());
    // In pages of 30: 30, 30, 30, 10, in order.
    let items = drain_all(&mut me, &owner, relay.peer_id, &addr, 30).await;
    let got: Vec<Vec<u8>> = items.iter().map(|i| i.envelope.clone()).collect();
    assert_eq!(got, sent);
    assert!(items.windows(2).all(|w| w[0].seq < w[1].seq));
    // One page of everything.
    match drain(&mut me, &owner, relay.peer_id, &addr, None, 1000).await {
        MailboxResponse::Envelopes { items, more } => assert_eq!((items.len(), more), (100, false)),
        other => panic!("{other:?}"),
    }

    let seqs: Vec<u64> = items.iter().map(|i| i.seq).collect();
    let nonce = me.challenge(relay.peer_id, &addr).await;
    let ack = MailboxRequest::ack(&owner, &relay.peer_id, nonce, seqs);
    assert_eq!(
        me.request(relay.peer_id, &addr, ack).await,
        MailboxResponse::Acked { removed: 100 }
    );
    assert_eq!(
        drain(&mut me, &owner, relay.peer_id, &addr, None, 100).await,
        MailboxResponse::Envelopes {
            items: vec![],
            more: false
        }
    );

    let text = relay.metrics().await;
    assert_eq!(
        metric(&text, "kith_relay_deposits_total"),
        Some(100.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, "kith_relay_deposit_duplicates_total"),
        Some(3.0)
    );
    assert_eq!(metric(&text, "kith_relay_acks_total"), Some(100.0));
    assert_eq!(
        metric(&text, "kith_relay_drained_envelopes_total"),
        Some(200.0)
    );
    assert_eq!(metric(&text, "kith_relay_mailbox_envelopes"), Some(0.0));
    assert!(
        metric(&text, "kith_relay_connections").unwrap() >= 1.0,
        "{text}"
    );

    let log = relay.log();
    let status = relay.signal_and_wait("TERM");
    assert!(status.success(), "exit status {status:?}; log: {log:#?}");
}

/// A clean shutdown leaves the de-duplication index in a checkpoint that the next
/// start loads instead of reading every envelope; held envelopes are still known.
#[tokio::test]
async fn a_graceful_restart_still_knows_the_envelopes_it_holds() {
    let dir = tempfile::tempdir().unwrap();
    let config = loopback_config(&dir.path().join("data"), "");
    let relay = RelayProcess::start(dir.path(), &config);
    let owner = Identity::generate();
    let mut sender = TestPeer::new(identity::Keypair::generate_ed25519());
    let sent = envelopes(50, "before the restart");
    let results = deposit_all(&mut sender, &relay, &owner.peer_id(), &sent).await;
    assert!(results.iter().all(|r| *r == DepositResult::Stored));
    assert!(relay.signal_and_wait("TERM").success());
    let checkpoint = dir.path().join("data/mailbox/mail.index");
    assert!(checkpoint.exists(), "a clean shutdown writes the index checkpoint");

    let relay = RelayProcess::start(dir.path(), &config);
    assert!(!checkpoint.exists(), "the start spent the checkpoint");
    let loaded = |l: &String| l.contains("loaded from the last clean stop's checkpoint") && l.contains("mail");
    assert!(relay.log().iter().any(loaded), "the index came from the checkpoint: {:#?}", relay.log());
    // A new connection (the old one went with the relay); the same bytes.
    let mut sender = TestPeer::new(identity::Keypair::generate_ed25519());
    let again = deposit_all(&mut sender, &relay, &owner.peer_id(), &sent[20..30]).await;
    assert_eq!(again, vec![DepositResult::Duplicate; 10]);
    let fresh = envelopes(1, "after the restart");
    assert_eq!(
        deposit_all(&mut sender, &relay, &owner.peer_id(), &fresh).await,
        [DepositResult::Stored]
    );
    let mut me = TestPeer::new(owner.libp2p_keypair());
    let items = drain_all(&mut me, &owner, relay.peer_id, &relay.addr(), 100).await;
    let got: Vec<Vec<u8>> = items.iter().map(|i| i.envelope.clone()).collect();
    assert_eq!(got, [sent, fresh].concat());
}

#[tokio::test]
async fn challenges_cannot_be_replayed_forged_or_borrowed() {
    let dir = tempfile::tempdir().unwrap();
    let relay = RelayProcess::start(dir.path(), &loopback_config(&dir.path().join("data"), ""));
    let addr = relay.addr();
    let owner = Identity::generate();
    let mallory = Identity::generate();
    let secret = b"for the owner's eyes only".to_vec();
    let mut sender = TestPeer::new(identity::Keypair::generate_ed25519());
    deposit_all(
        &mut sender,
        &relay,
        &owner.peer_id(),
        std::slice::from_ref(&secret),
    )
    .await;

    let mut me = TestPeer::new(owner.libp2p_keypair());
    let mut eve = TestPeer::new(mallory.libp2p_keypair());
    let bad = MailboxResponse::Refused(Refusal::BadChallenge);

    // A replayed drain (same nonce, same signature) is refused.
    let nonce = me.challenge(relay.peer_id, &addr).await;
    let request = MailboxRequest::drain(&owner, &relay.peer_id, nonce, None, 10);
    assert!(matches!(
        me.request(relay.peer_id, &addr, request.clone()).await,
        MailboxResponse::Envelopes { .. }
    ));
    assert_eq!(me.request(relay.peer_id, &addr, request).await, bad);

    // A wrong signature (Mallory's key over the owner's nonce) is refused.
    let nonce = me.challenge(relay.peer_id, &addr).await;
    let forged = MailboxRequest::drain(&mallory, &relay.peer_id, nonce, None, 10);
    assert_eq!(me.request(relay.peer_id, &addr, forged).await, bad);

    // Mallory presenting the owner's nonce and valid signature: the nonce is bound to
    // the owner's mailbox and the signature to the owner, neither is hers.
    let nonce = me.challenge(relay.peer_id, &addr).await;
    let borrowed = MailboxRequest::drain(&owner, &relay.peer_id, nonce, None, 10);
    assert_eq!(eve.request(relay.peer_id, &addr, borrowed).await, bad);
    // Her own nonce with a signature of her own: she drains her own (empty) mailbox.
    let nonce = eve.challenge(relay.peer_id, &addr).await;
    let own = MailboxRequest::drain(&mallory, &relay.peer_id, nonce, None, 10);
    assert_eq!(
        eve.request(relay.peer_id, &addr, own).await,
        MailboxResponse::Envelopes {
            items: vec![],
            more: false
        }
    );
    // Her ack of the owner's envelope (her challenge, her signature) removes nothing.
    let nonce = eve.challenge(relay.peer_id, &addr).await;
    let ack = MailboxRequest::ack(&mallory, &relay.peer_id, nonce, vec![0, 1, 2]);
    assert_eq!(
        eve.request(relay.peer_id, &addr, ack).await,
        MailboxResponse::Acked { removed: 0 }
    );

    // Nothing leaked or lost: the owner still gets exactly their envelope.
    let items = drain_all(&mut me, &owner, relay.peer_id, &addr, 10).await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].envelope, secret);
    let text = relay.metrics().await;
    assert_eq!(
        metric(&text, "kith_relay_refusals_total{reason=\"bad_challenge\"}"),
        Some(3.0),
        "{text}"
    );
}

#[tokio::test]
async fn acknowledged_deposits_survive_a_relay_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let config = loopback_config(&dir.path().join("data"), "");
    let relay = RelayProcess::start(dir.path(), &config);
    let owner = Identity::generate();
    let relay_id = relay.peer_id;

    let mut sender = TestPeer::new(identity::Keypair::generate_ed25519());
    let sent = envelopes(150, "durable");
    let results = deposit_all(&mut sender, &relay, &owner.peer_id(), &sent).await;
    assert!(results.iter().all(DepositResult::is_held));
    // No graceful shutdown: whatever was acknowledged must already be on disk.
    relay.kill();

    let relay = RelayProcess::start(dir.path(), &config);
    assert_eq!(relay.peer_id, relay_id, "the identity survives restarts");
    let mut me = TestPeer::new(owner.libp2p_keypair());
    let items = drain_all(&mut me, &owner, relay.peer_id, &relay.addr(), 64).await;
    let got: Vec<Vec<u8>> = items.into_iter().map(|i| i.envelope).collect();
    assert_eq!(got, sent);
    let text = relay.metrics().await;
    assert_eq!(
        metric(&text, "kith_relay_mailbox_envelopes"),
        Some(150.0),
        "{text}"
    );
}

#[tokio::test]
async fn members_policy_admits_only_members_mailboxes() {
    let dir = tempfile::tempdir().unwrap();
    let member = Identity::generate();
    let stranger = Identity::generate();
    let extra = format!(
        "[access]\npolicy = \"members\"\nmembers = [\"{}\"]\n",
        member.peer_id()
    );
    let relay = RelayProcess::start(
        dir.path(),
        &loopback_config(&dir.path().join("data"), &extra),
    );
    let addr = relay.addr();
    let not_member = MailboxResponse::Refused(Refusal::NotMember);

    // A stranger's mailbox takes no deposits, from anyone.
    let mut sender = TestPeer::new(identity::Keypair::generate_ed25519());
    let to_stranger = MailboxRequest::deposit(&stranger.peer_id(), vec![b"hi".to_vec()]);
    assert_eq!(
        sender.request(relay.peer_id, &addr, to_stranger).await,
        not_member
    );
    // A member's mailbox takes deposits from anyone, strangers included.
    let mut from_stranger = TestPeer::new(stranger.libp2p_keypair());
    let to_member = MailboxRequest::deposit(&member.peer_id(), vec![b"hello".to_vec()]);
    assert_eq!(
        from_stranger.request(relay.peer_id, &addr, to_member).await,
        MailboxResponse::Deposited {
            results: vec![DepositResult::Stored]
        }
    );
    // Strangers cannot drain.
    assert_eq!(
        from_stranger
            .request(relay.peer_id, &addr, MailboxRequest::Challenge)
            .await,
        not_member
    );
    // The relay keeps serving others.
    let again = MailboxRequest::deposit(&member.peer_id(), vec![b"again".to_vec()]);
    assert!(matches!(
        sender.request(relay.peer_id, &addr, again).await,
        MailboxResponse::Deposited { .. }
    ));
    let mut me = TestPeer::new(member.libp2p_keypair());
    let items = drain_all(&mut me, &member, relay.peer_id, &addr, 10).await;
    assert_eq!(items.len(), 2);
    let text = relay.metrics().await;
    assert_eq!(
        metric(&text, "kith_relay_refusals_total{reason=\"not_member\"}"),
        Some(2.0),
        "{text}"
    );
}

#[tokio::test]
async fn quota_and_rate_limit_refusals_show_in_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let extra =
        "[mailbox]\nmax_messages_per_mailbox = 3\nopen_share_percent = 100\nsender_rate_per_sec = 1\nsender_burst = 10\n";
    let relay = RelayProcess::start(
        dir.path(),
        &loopback_config(&dir.path().join("data"), extra),
    );
    let addr = relay.addr();
    let owner = PeerId::random();
    let mut sender = TestPeer::new(identity::Keypair::generate_ed25519());

    // Four envelopes into a mailbox that holds three: the fourth is refused alone.
    let request = MailboxRequest::deposit(&owner, envelopes(4, "quota"));
    assert_eq!(
        sender.request(relay.peer_id, &addr, request).await,
        MailboxResponse::Deposited {
            results: vec![
                DepositResult::Stored,
                DepositResult::Stored,
                DepositResult::Stored,
                DepositResult::Refused(Refusal::QuotaCount),
            ]
        }
    );
    // 4 of a burst of 10 used; 7 more at once is over it: the whole request waits.
    let request = MailboxRequest::deposit(&PeerId::random(), envelopes(7, "rate"));
    match sender.request(relay.peer_id, &addr, request).await {
        MailboxResponse::Refused(Refusal::RateLimited { retry_after_ms }) => {
            assert!(
                retry_after_ms > 0 && retry_after_ms <= 10_000,
                "{retry_after_ms}"
            );
        }
        other => panic!("expected rate limiting, got {other:?}"),
    }
    // Another sender is not affected.
    let mut other = TestPeer::new(identity::Keypair::generate_ed25519());
    let request = MailboxRequest::deposit(&PeerId::random(), envelopes(3, "other"));
    assert!(matches!(
        other.request(relay.peer_id, &addr, request).await,
        MailboxResponse::Deposited { .. }
    ));

    let text = relay.metrics().await;
    assert_eq!(
        metric(&text, "kith_relay_deposits_total"),
        Some(6.0),
        "{text}"
    );
    assert!(metric(&text, "kith_relay_deposited_bytes_total").unwrap() > 0.0);
    assert_eq!(
        metric(&text, "kith_relay_refusals_total{reason=\"quota_count\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric(&text, "kith_relay_refusals_total{reason=\"rate_limited\"}"),
        Some(1.0)
    );
    assert_eq!(metric(&text, "kith_relay_mailboxes"), Some(2.0));
    // libp2p's own metrics are there too.
    assert!(text.contains("libp2p_"), "{text}");
}

#[tokio::test]
async fn the_data_directory_holds_no_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let relay = RelayProcess::start(dir.path(), &loopback_config(&data, ""));
    let alice = Identity::generate();
    let owner = Identity::generate();
    let plaintext: &[u8] = b"PLAINTEXT-MARKER the treasure is under the old oak tree 7391";
    let mut sealer = Sealer::new(&alice, Default::default());
    let sealed: Vec<Vec<u8>> = (0..5)
        .map(|_| sealer.seal(&owner.e2e_public(), plaintext).unwrap())
        .collect();
    // A control: bytes the relay stores as given must be found by the same search.
    let canary = b"CANARY-MARKER stored as is, proving the search works".to_vec();

    let mut sender = TestPeer::new(alice.libp2p_keypair());
    let mut all = sealed.clone();
    all.push(canary.clone());
    let results = deposit_all(&mut sender, &relay, &owner.peer_id(), &all).await;
    assert!(results.iter().all(|r| *r == DepositResult::Stored));
    assert!(relay.signal_and_wait("TERM").success());

    let files = files_under(&data);
    assert!(!files.is_empty());
    let contains = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    let mut canary_found = false;
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        assert!(
            !contains(&bytes, plaintext),
            "plaintext found in {}",
            file.display()
        );
        assert!(!contains(&bytes, b"PLAINTEXT-MARKER"));
        canary_found |= contains(&bytes, &canary);
    }
    assert!(
        canary_found,
        "the control envelope was not found in {files:?}"
    );
}

/// A disk write the store cannot make fails it for good: the deposit is refused
/// `storage`, so are later ones until a restart, and
/// `kith_relay_mailbox_store_failed` goes from 0 to 1, so an operator's alert
/// needs no rate of refusals. The write fails through the store's blob directory,
/// replaced by a file: sled writes an item over ~128 KiB to a file of its own
/// there, and that fails even for root (a full disk cannot be made here without
/// mounting).
#[tokio::test]
async fn a_store_that_failed_for_good_says_so_in_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let relay = RelayProcess::start(dir.path(), &loopback_config(&data, ""));
    let addr = relay.addr();
    let owner = PeerId::random();
    let mut sender = TestPeer::new(identity::Keypair::generate_ed25519());
    deposit_all(&mut sender, &relay, &owner, &envelopes(2, "before")).await;
    let text = relay.metrics().await;
    assert_eq!(
        metric(&text, "kith_relay_mailbox_store_failed"),
        Some(0.0),
        "{text}"
    );

    let blobs = data.join("mailbox").join("blobs");
    std::fs::remove_dir_all(&blobs).unwrap();
    std::fs::write(&blobs, b"").unwrap();
    let large = MailboxRequest::deposit(&owner, vec![vec![0x5a; 200 * 1024]]);
    assert_eq!(
        sender.request(relay.peer_id, &addr, large).await,
        MailboxResponse::Refused(Refusal::Storage)
    );
    // Set before the answer is sent.
    let text = relay.metrics().await;
    assert_eq!(
        metric(&text, "kith_relay_mailbox_store_failed"),
        Some(1.0),
        "{text}"
    );
    let small = MailboxRequest::deposit(&owner, envelopes(1, "after"));
    assert_eq!(
        sender.request(relay.peer_id, &addr, small).await,
        MailboxResponse::Refused(Refusal::Storage),
        "a small deposit is refused too"
    );
}
