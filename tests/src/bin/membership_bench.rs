//! Benchmark of group membership as a causal history (issue 11): how long a member
//! takes to check and apply an operation, and to load a group's history at start-up,
//! as histories grow towards their cap.
//!
//! Two histories are built, signed by real identities:
//! - **chain**: the owner adds `--members` members one after another (each operation
//!   has one parent: the common case);
//! - **storm**: `--admins` admins act concurrently on the same heads in every round
//!   (adds, promotions, removals, renames), then one of them merges the heads, until
//!   the history holds `--ops` operations — a worst case for the fold, which must
//!   settle every revocation against the operations concurrent with it.
//!
//! - **tangle**: what a hostile admin can make: `--ops` renames, each naming two random
//!   earlier operations as parents, so that no recent state is a starting point and
//!   every check folds the operation's whole causal past.
//!
//! For each: the time to load the whole history ([`Membership::from_ops`], what a node
//! does at start for each group), and the time to insert one more operation on top
//! (p50/p99 over `--samples` operations, each on a fresh copy).
//!
//! Run: `cargo run --release -p kith-tests --bin membership-bench -- [--members 1000]
//! [--ops 8192] [--admins 8] [--samples 50]`. Numbers go to docs/PERFORMANCE.md;
//! nothing here is pass/fail.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use kith_p2p::group::membership::{MAX_OPS, MemberCard, Membership, OpKind, SignedOp};
use kith_p2p::identity::Identity;
use kith_p2p::kith_storage::Role;
use kith_tests::bench::{ms, percentile};

struct Args {
    members: usize,
    ops: usize,
    admins: usize,
    samples: usize,
}

fn parse_args() -> Args {
    let mut args = Args { members: 1000, ops: 8192, admins: 8, samples: 50 };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value: usize = it.next().unwrap_or_else(|| panic!("{flag} needs a value")).parse().unwrap();
        match flag.as_str() {
            "--members" => args.members = value,
            "--ops" => args.ops = value,
            "--admins" => args.admins = value,
            "--samples" => args.samples = value,
            other => panic!("unknown flag {other}"),
        }
    }
    args
}

fn person(i: usize) -> Identity {
    let mut a = [0u8; 32];
    let mut b = [0u8; 32];
    a[..8].copy_from_slice(&(i as u64 + 1).to_be_bytes());
    b[..8].copy_from_slice(&(i as u64 + 1_000_000).to_be_bytes());
    Identity::from_secrets(a, b)
}

fn card(i: &Identity) -> MemberCard {
    MemberCard::of(&i.public())
}

/// The owner adds `members` people one after another.
fn chain(owner: &Identity, people: &[Identity]) -> (Membership, Vec<SignedOp>) {
    let (_, create) = SignedOp::create(owner, "bench", Vec::new(), 0).unwrap();
    let mut m = Membership::new(create.clone()).unwrap();
    let mut ops = vec![create];
    for p in people {
        let op = m.sign(owner, 0, OpKind::Add { member: card(p), role: Role::Member }).unwrap();
        m.insert(op.clone()).unwrap();
        ops.push(op);
    }
    (m, ops)
}

/// Rounds of concurrent operations by `admins` admins on the same heads, merged at the
/// end of each round, until the history holds `target` operations.
fn storm(owner: &Identity, admins: &[Identity], pool: &[Identity], target: usize) -> (Membership, Vec<SignedOp>) {
    let (_, create) = SignedOp::create(owner, "bench", Vec::new(), 0).unwrap();
    let mut m = Membership::new(create.clone()).unwrap();
    let mut ops = vec![create];
    for a in admins {
        let op = m.sign(owner, 0, OpKind::Add { member: card(a), role: Role::Admin }).unwrap();
        m.insert(op.clone()).unwrap();
        ops.push(op);
    }
    let mut next = 0;
    let mut round = 0u64;
    while ops.len() < target {
        round += 1;
        let base = m.clone();
        let mut concurrent = Vec::new();
        for (i, a) in admins.iter().enumerate() {
            let who = &pool[next % pool.len()];
            next += 1;
            let present = base.state().members.contains_key(&who.peer_id());
            let kind = match (i + round as usize) % 4 {
                0 | 1 if !present => OpKind::Add { member: card(who), role: Role::Member },
                2 if present => OpKind::Remove { peer: who.peer_id().to_bytes() },
                3 => OpKind::Rename { name: format!("round {round} by {i}") },
                _ => OpKind::Rename { name: format!("r{round}/{i}") },
            };
            if let Ok(op) = base.sign(a, round, kind) {
                concurrent.push(op);
            }
        }
        for op in concurrent {
            if m.insert(op.clone()).is_ok() {
                ops.push(op);
            }
        }
        // One admin merges the heads.
        let merge = m.sign(&admins[0], round, OpKind::Rename { name: format!("merged {round}") }).unwrap();
        if m.insert(merge.clone()).is_ok() {
            ops.push(merge);
        }
    }
    (m, ops)
}

/// Renames by the owner, each on two random earlier operations (seeded).
fn tangle(owner: &Identity, target: usize) -> (Membership, Vec<SignedOp>) {
    use rand::{SeedableRng, seq::SliceRandom};
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let (_, create) = SignedOp::create(owner, "bench", Vec::new(), 0).unwrap();
    let mut m = Membership::new(create.clone()).unwrap();
    let mut ops = vec![create];
    let mut ids = vec![ops[0].id().unwrap()];
    // Bounded: every insert should succeed; the count is checked below.
    for n in 1..=4 * target as u64 {
        if ops.len() >= target {
            break;
        }
        let mut parents: Vec<_> = ids.choose_multiple(&mut rng, 2).copied().collect();
        parents.sort();
        parents.dedup();
        let heads = parents.clone();
        let op = m.sign_on(owner, &heads, n, OpKind::Rename { name: format!("t{n}") }).unwrap();
        if m.insert(op.clone()).is_ok() {
            ids.push(op.id().unwrap());
            ops.push(op);
        }
    }
    assert_eq!(ops.len(), target, "the tangle stopped growing (a limit refused its inserts)");
    (m, ops)
}

fn report(name: &str, m: &Membership, ops: &[SignedOp], extra: impl Fn(&Membership, usize) -> SignedOp, samples: usize) {
    let started = Instant::now();
    let (loaded, merged) = Membership::from_ops(ops.to_vec()).unwrap();
    let load = started.elapsed();
    assert!(merged.waiting.is_empty() && merged.refused.is_empty());
    assert_eq!(loaded.state(), m.state());
    let mut inserts: Vec<Duration> = Vec::new();
    for i in 0..samples {
        let mut copy = m.clone();
        let op = extra(&copy, i);
        let started = Instant::now();
        copy.insert(op).unwrap();
        inserts.push(started.elapsed());
    }
    inserts.sort();
    println!(
        "{name:<6} ops {:>5}  members {:>5}  load {:>8}  insert p50 {:>8}  p99 {:>8}",
        ops.len(),
        m.state().members.len(),
        ms(load),
        ms(percentile(&inserts, 0.50)),
        ms(percentile(&inserts, 0.99)),
    );
}

fn main() {
    let args = parse_args();
    let owner = person(0);
    let people: Vec<Identity> = (1..=args.members).map(person).collect();
    let (m, ops) = chain(&owner, &people);
    let extra_people: Vec<Identity> = (0..args.samples).map(|i| person(10_000_000 + i)).collect();
    report(
        "chain",
        &m,
        &ops,
        |m, i| m.sign(&owner, 0, OpKind::Add { member: card(&extra_people[i]), role: Role::Member }).unwrap(),
        args.samples,
    );

    let admins: Vec<Identity> = (1..=args.admins).map(|i| person(20_000_000 + i)).collect();
    let pool: Vec<Identity> = (0..900).map(|i| person(30_000_000 + i)).collect();
    // Room for a round's overshoot and the sample inserted on top.
    let (m, ops) = storm(&owner, &admins, &pool, args.ops.min(MAX_OPS - 2 * (args.admins + 1)));
    report(
        "storm",
        &m,
        &ops,
        |m, i| m.sign(&owner, 0, OpKind::Rename { name: format!("sample {i}") }).unwrap(),
        args.samples,
    );

    let (m, ops) = tangle(&owner, args.ops.min(MAX_OPS - 1));
    report(
        "tangle",
        &m,
        &ops,
        |m, i| m.sign(&owner, 0, OpKind::Rename { name: format!("sample {i}") }).unwrap(),
        args.samples,
    );
}
