//! A bounded, seeded chaos run (issue 12): three `kith daemon`s and two `kith-relay`s
//! on 127.0.0.1 exchange messages — 1:1 and in a group of all three — while a
//! scheduler `kill -9`s a random process at random moments and restarts it.
//!
//! Every message is sent through a node's control socket; only those the caller got
//! an `ok` for count as acknowledged (a call cut off by a kill may or may not have
//! stored its message: such a message may show up, at most once). At the end every
//! process runs again, and the run checks, at every recipient:
//! - every acknowledged message is present **exactly once**;
//! - no message is present twice, acknowledged or not;
//! - each sender's messages appear in the order it sent them;
//! - every node's store opens and reads cleanly once the node is stopped, and every
//!   relay restarts on its data (no corrupt store).
//!
//! The same seed gives the same schedule of kills and sends (the timing of the
//! processes themselves is not seeded). [`run`] is used by the short version in the
//! test suite and by the `chaos` program for the long run.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kith_p2p::control::Client;
use kith_p2p::kith_storage::Store;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use crate::group::make_group;
use crate::{Peer, Relay, connect};

/// What to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Seeds the schedule of kills and the choice of recipients.
    pub seed: u64,
    /// Messages to send in all (split over the three senders).
    pub messages: usize,
    /// Processes to kill (and restart) during the run, at most: killing stops when the
    /// senders are done.
    pub kills: usize,
    /// Longest pause between two messages of one sender (each pause is random up to
    /// this), so that the kills fall among the sends.
    pub pace: Duration,
    /// How long the final delivery may take once everything runs again.
    pub settle: Duration,
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct Report {
    /// Messages whose `send` answered `ok`.
    pub acknowledged: usize,
    /// Sends cut off by a kill (no answer): delivered at most once, or not at all.
    pub unanswered: usize,
    /// Of those, how many reached their recipients anyway.
    pub unanswered_delivered: usize,
    /// Kills performed: (process, milliseconds into the run).
    pub kills: Vec<(String, u64)>,
    /// Deliveries checked (acknowledged messages × their recipients).
    pub deliveries_checked: usize,
    /// How long sending took, and then settling.
    pub send_phase: Duration,
    /// How long the final delivery took once every process ran again.
    pub settle_phase: Duration,
}

/// One message a sender tried to send.
#[derive(Debug, Clone)]
struct Sent {
    from: usize,
    /// Index of the recipient node, or `None` for the group.
    to: Option<usize>,
    /// Per (sender, conversation) sequence number: the order the sender sent them.
    seq: u64,
    acknowledged: bool,
}

const GROUP: &str = "chaos";
/// One control call may take this long before it counts as cut off.
const CALL_DEADLINE: Duration = Duration::from_secs(10);
/// How long a sender waits for its node to come back before trying again.
const RECONNECT_PAUSE: Duration = Duration::from_millis(100);

fn text(from: usize, to: Option<usize>, seq: u64) -> String {
    match to {
        Some(to) => format!("chaos {from}>{to} #{seq}"),
        None => format!("chaos {from}>group #{seq}"),
    }
}

/// Parse a chaos text back into (from, to, seq).
fn parse(text: &str) -> Option<(usize, Option<usize>, u64)> {
    let rest = text.strip_prefix("chaos ")?;
    let (route, seq) = rest.split_once(" #")?;
    let (from, to) = route.split_once('>')?;
    let to = if to == "group" { None } else { Some(to.parse().ok()?) };
    Some((from.parse().ok()?, to, seq.parse().ok()?))
}

/// Run the chaos scenario; `Err` describes the first violated property.
pub fn run(config: &Config) -> Result<Report, String> {
    let mut relays = vec![Relay::new(""), Relay::new("")];
    for r in &mut relays {
        r.start();
    }
    let mut peers: Vec<Peer> = ["Ann", "Ben", "Cat"].iter().map(|n| Peer::init(n)).collect();
    for p in &mut peers {
        for r in &relays {
            p.ok(&["relay", "add", &r.addr()]);
        }
        p.start(&[]);
    }
    connect(&peers[0], &peers[1]);
    connect(&peers[0], &peers[2]);
    connect(&peers[1], &peers[2]);
    let group = make_group(&peers, GROUP);
    let names: Vec<String> = peers.iter().map(|p| p.name.clone()).collect();
    let sockets: Vec<PathBuf> = peers.iter().map(|p| p.home().join("kith.sock")).collect();

    let sent: Arc<Mutex<Vec<Sent>>> = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let per_sender = config.messages.div_ceil(3);
    let mut senders = Vec::new();
    for (from, socket) in sockets.iter().enumerate() {
        let (sent, socket, names) = (sent.clone(), socket.clone(), names.clone());
        let seed = config.seed.wrapping_add(from as u64 + 1);
        let pace = config.pace;
        senders.push(std::thread::spawn(move || send_loop(from, per_sender, seed, pace, &socket, &names, &sent)));
    }

    // The scheduler: kill a random process, restart it, until the senders finish or
    // the kills are used up.
    let mut rng = StdRng::seed_from_u64(config.seed);
    let mut kills = Vec::new();
    while kills.len() < config.kills && !senders.iter().all(|s| s.is_finished()) {
        pause(&senders, Duration::from_millis(rng.gen_range(200..1500)));
        let victim = rng.gen_range(0..peers.len() + relays.len());
        let down = Duration::from_millis(rng.gen_range(50..800));
        let at = started.elapsed().as_millis() as u64;
        if victim < peers.len() {
            kills.push((peers[victim].name.clone(), at));
            peers[victim].kill9();
            std::thread::sleep(down);
            peers[victim].start(&[]);
        } else {
            let r = victim - peers.len();
            kills.push((format!("relay {r}"), at));
            relays[r].kill9();
            std::thread::sleep(down);
            relays[r].start();
        }
    }
    for s in senders {
        s.join().map_err(|_| "a sender thread panicked".to_owned())?;
    }
    let send_phase = started.elapsed();
    let sent = sent.lock().map_err(|_| "poisoned")?.clone();

    // Settle: everything acknowledged reaches every recipient.
    let settling = Instant::now();
    let expected = expected_deliveries(&sent);
    let deadline = Instant::now() + config.settle;
    while let Some(lacking) = missing(&expected, &histories(&peers, &names, &group, Taken::Incoming)) {
        if Instant::now() > deadline {
            return Err(format!("not delivered within {:?}: {lacking}", config.settle));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let settle_phase = settling.elapsed();

    // Exactly once and in order, acknowledged or not.
    check_same_order(&histories(&peers, &names, &group, Taken::All))?;
    let histories = histories(&peers, &names, &group, Taken::Incoming);
    check_once_and_in_order(&histories)?;
    let unanswered: Vec<&Sent> = sent.iter().filter(|s| !s.acknowledged).collect();
    let unanswered_delivered = unanswered
        .iter()
        .filter(|s| histories.values().any(|h| h.iter().any(|m| m.text == text(s.from, s.to, s.seq))))
        .count();

    // Every store reads cleanly after a graceful stop; every relay restarts on its data.
    for p in &mut peers {
        p.stop();
        check_store(p)?;
    }
    for r in &mut relays {
        r.kill9();
        r.start();
    }
    Ok(Report {
        acknowledged: sent.iter().filter(|s| s.acknowledged).count(),
        unanswered: unanswered.len(),
        unanswered_delivered,
        kills,
        deliveries_checked: expected.values().map(Vec::len).sum(),
        send_phase,
        settle_phase,
    })
}

/// Sleep `total`, waking early when every sender is done.
fn pause(senders: &[std::thread::JoinHandle<()>], total: Duration) {
    let end = Instant::now() + total;
    while Instant::now() < end && !senders.iter().all(|s| s.is_finished()) {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One sender: `count` messages to random recipients (the other two or the group),
/// through its node's control socket, reconnecting when the node was killed.
fn send_loop(
    from: usize,
    count: usize,
    seed: u64,
    pace: Duration,
    socket: &std::path::Path,
    names: &[String],
    sent: &Mutex<Vec<Sent>>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(_) => return,
    };
    let mut rng = StdRng::seed_from_u64(seed);
    let mut seqs: HashMap<Option<usize>, u64> = HashMap::new();
    let others: Vec<usize> = (0..3).filter(|i| *i != from).collect();
    let mut client: Option<Client> = None;
    let give_up = Instant::now() + Duration::from_secs(600);
    for _ in 0..count {
        let gap = rng.gen_range(0..=pace.as_micros() as u64);
        std::thread::sleep(Duration::from_micros(gap));
        let to = match rng.gen_range(0..3) {
            2 => None,
            i => Some(others[i]),
        };
        let seq = {
            let s = seqs.entry(to).or_default();
            *s += 1;
            *s
        };
        let target = to.map_or(GROUP.to_owned(), |i| names[i].clone());
        let body = text(from, to, seq);
        let acknowledged = runtime.block_on(async {
            loop {
                if Instant::now() > give_up {
                    return false;
                }
                if client.is_none() {
                    match Client::connect(socket).await {
                        Ok(c) => client = Some(c),
                        Err(_) => {
                            tokio::time::sleep(RECONNECT_PAUSE).await;
                            continue;
                        }
                    }
                }
                let Some(c) = client.as_mut() else { continue };
                let call = c.call("send", json!({ "contact": target, "text": body }));
                match tokio::time::timeout(CALL_DEADLINE, call).await {
                    Ok(Ok(_)) => return true,
                    // Cut off: the node died with the call in flight. Whether the message
                    // was stored is unknown; it is not retried (a retry would be a new
                    // message), only accounted as unanswered.
                    Ok(Err(_)) | Err(_) => {
                        client = None;
                        return false;
                    }
                }
            }
        });
        if let Ok(mut list) = sent.lock() {
            list.push(Sent { from, to, seq, acknowledged });
        }
    }
}

/// A message as a recipient's history shows it.
#[derive(Debug, Clone)]
struct Seen {
    id: String,
    author: String,
    text: String,
}

/// A node's view of a conversation: (node index, `Some(peer)` or `None` for the group).
type View = (usize, Option<usize>);

/// Which messages of a history to take.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Taken {
    /// What the node received.
    Incoming,
    /// Everything, its own messages too.
    All,
}

/// Histories keyed by (node index, conversation: `Some(peer)` or `None` for the
/// group), in the order the node shows them.
fn histories(
    peers: &[Peer],
    names: &[String],
    group: &str,
    taken: Taken,
) -> BTreeMap<(usize, Option<usize>), Vec<Seen>> {
    let mut out = BTreeMap::new();
    for (i, p) in peers.iter().enumerate() {
        let mut conversations: Vec<(Option<usize>, String)> =
            (0..peers.len()).filter(|j| *j != i).map(|j| (Some(j), names[j].clone())).collect();
        conversations.push((None, group.to_owned()));
        for (key, name) in conversations {
            let seen = p
                .history(&name)
                .iter()
                .filter(|m| taken == Taken::All || m["direction"] == "incoming")
                .map(|m| Seen {
                    id: m["id"].as_str().unwrap_or_default().to_owned(),
                    author: m["author"].as_str().unwrap_or_default().to_owned(),
                    text: m["text"].as_str().unwrap_or_default().to_owned(),
                })
                .collect();
            out.insert((i, key), seen);
        }
    }
    out
}

/// For each (recipient, conversation), the acknowledged texts it must hold.
fn expected_deliveries(sent: &[Sent]) -> BTreeMap<(usize, Option<usize>), Vec<String>> {
    let mut out: BTreeMap<(usize, Option<usize>), Vec<String>> = BTreeMap::new();
    for s in sent.iter().filter(|s| s.acknowledged) {
        match s.to {
            Some(to) => out.entry((to, Some(s.from))).or_default().push(text(s.from, s.to, s.seq)),
            None => {
                for member in (0..3).filter(|m| *m != s.from) {
                    out.entry((member, None)).or_default().push(text(s.from, None, s.seq));
                }
            }
        }
    }
    out
}

/// The first acknowledged message a recipient lacks, if any.
fn missing(
    expected: &BTreeMap<(usize, Option<usize>), Vec<String>>,
    histories: &BTreeMap<(usize, Option<usize>), Vec<Seen>>,
) -> Option<String> {
    let mut lacking = 0;
    let mut first = None;
    for (key, texts) in expected {
        let have: std::collections::HashSet<&str> =
            histories.get(key).map(|h| h.iter().map(|m| m.text.as_str()).collect()).unwrap_or_default();
        for t in texts {
            if !have.contains(t.as_str()) {
                lacking += 1;
                first.get_or_insert_with(|| format!("node {} lacks {t:?}", key.0));
            }
        }
    }
    first.map(|f| format!("{lacking} deliveries missing, e.g. {f}"))
}

/// No message twice (by id or text) at any recipient, and each sender's messages in
/// the order it sent them.
fn check_once_and_in_order(histories: &BTreeMap<(usize, Option<usize>), Vec<Seen>>) -> Result<(), String> {
    for (key, seen) in histories {
        let mut ids = std::collections::HashSet::new();
        let mut texts = std::collections::HashSet::new();
        let mut last_seq: HashMap<(String, usize), u64> = HashMap::new();
        for m in seen {
            if !ids.insert((m.author.clone(), m.id.clone())) || !texts.insert(m.text.clone()) {
                return Err(format!("node {} holds {:?} twice", key.0, m.text));
            }
            let Some((from, _, seq)) = parse(&m.text) else { continue };
            let last = last_seq.entry((m.author.clone(), from)).or_insert(0);
            if seq <= *last {
                return Err(format!("node {}: {:?} after #{last} from the same sender", key.0, m.text));
            }
            *last = seq;
        }
    }
    Ok(())
}

/// Every conversation reads in the same order on every side: the messages two nodes
/// both hold (1:1: the two ends; group: every pair of members) come in the same
/// sequence.
fn check_same_order(histories: &BTreeMap<View, Vec<Seen>>) -> Result<(), String> {
    // Both ends of every 1:1 chat, and every pair of the group's members.
    let group: Vec<usize> = histories.keys().filter(|(_, with)| with.is_none()).map(|&(node, _)| node).collect();
    let sides: Vec<(View, View)> = histories
        .keys()
        .filter_map(|&(node, with)| match with {
            Some(peer) if node < peer => Some(((node, with), (peer, Some(node)))),
            _ => None,
        })
        .chain(group.iter().flat_map(|&a| group.iter().filter(move |&&b| a < b).map(move |&b| ((a, None), (b, None)))))
        .collect();
    for (a, b) in sides {
        let (Some(left), Some(right)) = (histories.get(&a), histories.get(&b)) else { continue };
        let key = |m: &Seen| (m.author.clone(), m.id.clone());
        let in_right: std::collections::HashSet<_> = right.iter().map(key).collect();
        let in_left: std::collections::HashSet<_> = left.iter().map(key).collect();
        let left_order: Vec<_> = left.iter().map(key).filter(|k| in_right.contains(k)).collect();
        let right_order: Vec<_> = right.iter().map(key).filter(|k| in_left.contains(k)).collect();
        if left_order != right_order {
            let at = left_order.iter().zip(&right_order).position(|(l, r)| l != r).unwrap_or(0);
            return Err(format!(
                "nodes {} and {} show conversation {:?} in different orders from message {at} on",
                a.0, b.0, a.1
            ));
        }
    }
    Ok(())
}

/// A stopped node's store opens and every conversation reads to its start.
fn check_store(peer: &Peer) -> Result<(), String> {
    let path = kith_p2p::home::Home::at(peer.home()).db_path();
    let store = Store::open(&path).map_err(|e| format!("{}'s store does not open: {e}", peer.name))?;
    let conversations = store.conversations().list().map_err(|e| format!("{}: {e}", peer.name))?;
    for c in conversations {
        let mut before = None;
        loop {
            let page = store
                .messages()
                .page(c.id, before, 500)
                .map_err(|e| format!("{}'s conversation {} does not read: {e}", peer.name, c.id))?;
            let Some(first) = page.first() else { break };
            before = Some(first.id);
            if page.len() < 500 {
                break;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(author: &str, id: &str, text: &str) -> Seen {
        Seen { id: id.into(), author: author.into(), text: text.into() }
    }

    #[test]
    fn the_checks_catch_duplicates_reordering_and_losses() {
        let key = (1, Some(0));
        let ok = BTreeMap::from([(key, vec![seen("a", "1", &text(0, Some(1), 1)), seen("a", "2", &text(0, Some(1), 2))])]);
        assert!(check_once_and_in_order(&ok).is_ok());
        let twice = BTreeMap::from([(key, vec![seen("a", "1", &text(0, Some(1), 1)), seen("a", "1", &text(0, Some(1), 1))])]);
        assert!(check_once_and_in_order(&twice).unwrap_err().contains("twice"));
        let swapped = BTreeMap::from([(key, vec![seen("a", "2", &text(0, Some(1), 2)), seen("a", "1", &text(0, Some(1), 1))])]);
        assert!(check_once_and_in_order(&swapped).unwrap_err().contains("after"));
        // Both ends of a conversation: the same order passes (a message only one side
        // holds does not count), another order fails.
        let (m1, m2, only) = (seen("a", "1", "x"), seen("b", "2", "y"), seen("a", "3", "z"));
        let same = BTreeMap::from([((0, Some(1)), vec![m1.clone(), only, m2.clone()]), ((1, Some(0)), vec![m1.clone(), m2.clone()])]);
        assert!(check_same_order(&same).is_ok());
        let crossed = BTreeMap::from([((0, Some(1)), vec![m1.clone(), m2.clone()]), ((1, Some(0)), vec![m2.clone(), m1.clone()])]);
        assert!(check_same_order(&crossed).unwrap_err().contains("different orders"));
        let group = BTreeMap::from([((0, None), vec![m1.clone(), m2.clone()]), ((2, None), vec![m2.clone(), m1.clone()])]);
        assert!(check_same_order(&group).unwrap_err().contains("different orders"));
        // Members 1 and 2 disagree on messages member 0 does not hold.
        let (m3, m4) = (seen("c", "4", "u"), seen("c", "5", "v"));
        let apart = BTreeMap::from([
            ((0, None), vec![m1.clone()]),
            ((1, None), vec![m1.clone(), m3.clone(), m4.clone()]),
            ((2, None), vec![m1, m4, m3]),
        ]);
        assert!(check_same_order(&apart).unwrap_err().contains("nodes 1 and 2"));
        let sent = [
            Sent { from: 0, to: Some(1), seq: 1, acknowledged: true },
            Sent { from: 0, to: Some(1), seq: 3, acknowledged: true },
            Sent { from: 0, to: None, seq: 1, acknowledged: false },
        ];
        let expected = expected_deliveries(&sent);
        assert_eq!(expected.values().map(Vec::len).sum::<usize>(), 2, "unacknowledged sends are not expected");
        assert!(missing(&expected, &ok).unwrap().contains("#3"));
    }

    #[test]
    fn texts_parse_back() {
        assert_eq!(parse(&text(2, Some(0), 17)), Some((2, Some(0), 17)));
        assert_eq!(parse(&text(1, None, 3)), Some((1, None, 3)));
        assert_eq!(parse("hello"), None);
    }
}
