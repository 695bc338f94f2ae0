//! Property test: random deposits, lists, acks, expiries and restarts, checked
//! against a simple in-memory model of the mailbox store.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use kith_relay::mailbox::{
    DepositOutcome, MailboxLimits, MailboxStats, MailboxStore, Refusal, Share, Usage,
};
use proptest::prelude::*;

const TTL_MS: u64 = 100;

fn limits() -> MailboxLimits {
    MailboxLimits {
        ttl: Duration::from_millis(TTL_MS),
        max_messages_per_mailbox: 5,
        max_bytes_per_mailbox: 40,
        // Three envelopes, 24 bytes: a depositor without a ticket fills a mailbox
        // only that far.
        open_share_percent: 60,
        max_total_bytes: 90,
        // Below three full mailboxes, so it binds; envelopes averaging 15 bytes or
        // more fill `max_total_bytes` first, so both totals bind in turn.
        max_total_envelopes: 6,
        max_envelope_bytes: 16,
        challenge_ttl: Duration::from_secs(1),
        max_pending_challenges: 4,
        max_challenges_per_mailbox: 4,
    }
}

#[derive(Debug, Clone)]
enum Op {
    /// Deposit envelopes (drawn from a small set, so duplicates happen).
    Deposit {
        mailbox: u8,
        envelopes: Vec<(u8, usize)>,
        /// Whether the depositor holds no ticket (the open share).
        open: bool,
    },
    /// List after the `nth` held envelope (or from the start).
    List {
        mailbox: u8,
        after_nth: Option<usize>,
        max_items: usize,
        max_bytes: usize,
    },
    /// Ack the held envelopes at these positions, plus a made-up seq.
    Ack {
        mailbox: u8,
        picks: Vec<usize>,
        bogus: u64,
    },
    /// Let time pass.
    Advance(u64),
    Expire,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    let mailbox = 0..3u8;
    prop_oneof![
        6 => (mailbox.clone(), prop::collection::vec((0..8u8, 0..20usize), 0..5), any::<bool>())
            .prop_map(|(mailbox, envelopes, open)| Op::Deposit { mailbox, envelopes, open }),
        3 => (mailbox.clone(), prop::option::of(0..6usize), 0..5usize, 0..40usize)
            .prop_map(|(mailbox, after_nth, max_items, max_bytes)| Op::List { mailbox, after_nth, max_items, max_bytes }),
        3 => (mailbox, prop::collection::vec(0..6usize, 0..4), 0..40u64)
            .prop_map(|(mailbox, picks, bogus)| Op::Ack { mailbox, picks, bogus }),
        2 => (0..60u64).prop_map(Op::Advance),
        1 => Just(Op::Expire),
        1 => Just(Op::Reopen),
    ]
}

/// The model: per mailbox, seq → (envelope, deposited_at); plus the highest seq
/// ever issued per mailbox, which new ones must exceed.
#[derive(Default)]
struct Model {
    boxes: BTreeMap<u8, BTreeMap<u64, (Vec<u8>, u64)>>,
    last_seq: BTreeMap<u8, u64>,
}

impl Model {
    fn bytes(&self) -> u64 {
        self.boxes
            .values()
            .flat_map(|b| b.values())
            .map(|(e, _)| e.len() as u64)
            .sum()
    }

    fn usage(&self, mailbox: u8) -> Usage {
        let held = self.boxes.get(&mailbox);
        Usage {
            envelopes: held.map_or(0, |b| b.len() as u64),
            bytes: held.map_or(0, |b| b.values().map(|(e, _)| e.len() as u64).sum()),
        }
    }

    fn stats(&self) -> MailboxStats {
        MailboxStats {
            mailboxes: self.boxes.values().filter(|b| !b.is_empty()).count() as u64,
            envelopes: self.boxes.values().map(|b| b.len() as u64).sum(),
            bytes: self.bytes(),
        }
    }

    /// What the store must answer for `envelope` (seq of a stored one is checked
    /// separately).
    fn expected(&self, mailbox: u8, envelope: &[u8], open: bool) -> Result<Option<u64>, Refusal> {
        let limits = limits();
        // 60 % of 5 envelopes and of 40 bytes.
        let (max_messages, max_bytes) = if open { (3, 24) } else { (limits.max_messages_per_mailbox, limits.max_bytes_per_mailbox) };
        let len = envelope.len() as u64;
        let usage = self.usage(mailbox);
        if len > limits.max_envelope_bytes {
            Err(Refusal::TooLarge)
        } else if let Some((seq, _)) = self
            .boxes
            .get(&mailbox)
            .and_then(|b| b.iter().find(|(_, (e, _))| e.as_slice() == envelope))
        {
            Ok(Some(*seq))
        } else if usage.envelopes >= max_messages {
            Err(Refusal::QuotaCount)
        } else if usage.bytes + len > max_bytes {
            Err(Refusal::QuotaBytes)
        } else if self.bytes() + len > limits.max_total_bytes
            || self.stats().envelopes >= limits.max_total_envelopes
        {
            Err(Refusal::StoreFull)
        } else {
            Ok(None)
        }
    }
}

fn envelope(kind: u8, len: usize) -> Vec<u8> {
    // The kind picks the content; lengths vary so quotas bite at different points.
    vec![kind; len]
}

fn run(ops: Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    let mut store = MailboxStore::open(dir.path(), limits()).unwrap();
    let mut model = Model::default();
    let mut now = 1_000u64;
    for op in ops {
        match op {
            Op::Deposit { mailbox, envelopes, open } => {
                let envelopes: Vec<Vec<u8>> =
                    envelopes.into_iter().map(|(k, l)| envelope(k, l)).collect();
                let share = if open { Share::Open } else { Share::Whole };
                let outcomes = store.deposit_in(&[mailbox], &envelopes, now, share).unwrap();
                assert_eq!(outcomes.len(), envelopes.len());
                for (envelope, outcome) in envelopes.into_iter().zip(outcomes) {
                    match (model.expected(mailbox, &envelope, open), outcome) {
                        (Err(want), DepositOutcome::Refused(got)) => assert_eq!(want, got),
                        (Ok(Some(want)), DepositOutcome::Duplicate { seq }) => {
                            assert_eq!(want, seq)
                        }
                        (Ok(None), DepositOutcome::Stored { seq }) => {
                            let last = model.last_seq.entry(mailbox).or_insert(0);
                            assert!(seq > *last, "seq {seq} after {last}");
                            *last = seq;
                            model
                                .boxes
                                .entry(mailbox)
                                .or_default()
                                .insert(seq, (envelope, now));
                        }
                        (want, got) => panic!("expected {want:?}, got {got:?}"),
                    }
                }
            }
            Op::List {
                mailbox,
                after_nth,
                max_items,
                max_bytes,
            } => {
                let held = model.boxes.get(&mailbox).cloned().unwrap_or_default();
                let after = after_nth.and_then(|n| held.keys().nth(n).copied());
                let got = store.list(&[mailbox], after, max_items, max_bytes).unwrap();
                let mut want = Vec::new();
                let mut bytes = 0;
                for (seq, (envelope, at)) in held.range(after.map_or(0, |a| a + 1)..) {
                    bytes += envelope.len();
                    if want.len() >= max_items || (!want.is_empty() && bytes > max_bytes) {
                        break;
                    }
                    want.push((*seq, envelope.clone(), *at));
                }
                let got: Vec<_> = got
                    .into_iter()
                    .map(|e| (e.seq, e.envelope, e.deposited_at_ms))
                    .collect();
                assert_eq!(got, want);
            }
            Op::Ack {
                mailbox,
                picks,
                bogus,
            } => {
                let held = model.boxes.entry(mailbox).or_default();
                let mut seqs: Vec<u64> = picks
                    .iter()
                    .filter_map(|&i| held.keys().nth(i).copied())
                    .collect();
                seqs.push(bogus + 1_000_000);
                let mut removed = 0;
                for seq in &seqs {
                    removed += usize::from(held.remove(seq).is_some());
                }
                assert_eq!(store.ack(&[mailbox], &seqs).unwrap(), removed);
            }
            Op::Advance(ms) => now += ms,
            Op::Expire => {
                let mut removed = 0;
                for held in model.boxes.values_mut() {
                    let before = held.len();
                    held.retain(|_, (_, at)| now - *at < TTL_MS);
                    removed += before - held.len();
                }
                assert_eq!(store.expire(now).unwrap(), removed);
            }
            Op::Reopen => {
                drop(store);
                store = MailboxStore::open(dir.path(), limits()).unwrap();
            }
        }
        assert_eq!(store.stats(), model.stats());
        for mailbox in 0..3u8 {
            assert_eq!(
                store.usage(&[mailbox]).unwrap(),
                model.usage(mailbox),
                "mailbox {mailbox}"
            );
        }
    }
    // Finally, everything the model holds is listed, and nothing else.
    for mailbox in 0..3u8 {
        let got: Vec<u64> = store
            .list(&[mailbox], None, usize::MAX, usize::MAX)
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        let want: Vec<u64> = model
            .boxes
            .get(&mailbox)
            .map(|b| b.keys().copied().collect())
            .unwrap_or_default();
        assert_eq!(got, want);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn store_matches_model(ops in prop::collection::vec(op(), 1..40)) {
        run(ops);
    }
}
