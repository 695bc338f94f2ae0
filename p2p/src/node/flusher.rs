//! Durability off the event loop.
//!
//! The actor writes to the store — visible at once, durable only once flushed — and
//! hands whatever must wait for durability (an answer to a local caller, an
//! acknowledgement to a peer, an event) to the [`Flusher`]. Its thread flushes
//! everything written before the newest request it has seen, so one fsync covers
//! every write queued while the previous one ran (group commit), and reports which
//! requests it covered; the actor then takes the held actions back, oldest first. The
//! swarm keeps running while the disk works.
//!
//! The rule of the storage crate's docs holds unchanged: nothing is acknowledged
//! before the flush that made it durable. A request is sent after its writes, and
//! the thread starts its flush after receiving the request, so the flush covers them.
//!
//! Some actions wait for durability without being urgent (an event saying a message
//! was delivered): [`Flusher::after_some_flush`] holds them without asking for a
//! flush, so the next flush anyone asks for covers them, and asks for one itself
//! only if none was asked for within its lazy delay (`Timers::lazy_flush_delay`,
//! 20 ms by default). Between two messages of a conversation that saves an
//! `fdatasync`: the delivery state of one is made durable by the flush of the next,
//! instead of by a flush of its own that the next one would have to wait behind.
use std::collections::VecDeque;
use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use kith_storage::Store;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// The node's default lazy delay, for the tests.
#[cfg(test)]
const LAZY_FLUSH_DELAY: Duration = Duration::from_millis(20);

/// A flush failed: what was written may or may not be durable.
#[derive(Clone, Debug, thiserror::Error)]
#[error("flushing the store failed: {0}")]
pub(crate) struct FlushFailed(pub(crate) String);

/// How a flush ended: the newest request it covered, and whether it succeeded.
struct Flushed {
    upto: u64,
    result: Result<(), FlushFailed>,
}

/// Holds actions until the writes made before them are durable (see the module docs).
pub(crate) struct Flusher<A> {
    /// Requests made so far (the newest request's number).
    asked: u64,
    requests: Option<std_mpsc::Sender<u64>>,
    done: mpsc::UnboundedReceiver<Flushed>,
    held: VecDeque<(u64, A)>,
    /// When the flush for actions held without a request must be asked for.
    lazy_deadline: Option<Instant>,
    /// How long an action held by [`Flusher::after_some_flush`] waits for a flush
    /// that someone else asks for before asking for one itself.
    lazy_delay: Duration,
    thread: Option<JoinHandle<()>>,
}

impl<A> Flusher<A> {
    /// Starts the flushing thread for `store`; a lazy hold asks for a flush after
    /// `lazy_delay` (see the module docs).
    pub(crate) fn start(store: Store, lazy_delay: Duration) -> std::io::Result<Flusher<A>> {
        let (requests, incoming) = std_mpsc::channel::<u64>();
        let (report, done) = mpsc::unbounded_channel();
        let thread = std::thread::Builder::new()
            .name("kith-flusher".into())
            .spawn(move || flush_loop(&store, &incoming, &report))?;
        Ok(Flusher {
            asked: 0,
            requests: Some(requests),
            done,
            held: VecDeque::new(),
            lazy_deadline: None,
            lazy_delay,
            thread: Some(thread),
        })
    }

    /// Holds `action` until every write made before this call is durable, and asks
    /// for that flush now.
    pub(crate) fn after_flush(&mut self, action: A) {
        self.hold(action);
        self.request();
    }

    /// Holds `action` until every write made before this call is durable, without
    /// asking for a flush: the next one asked for covers it, or one is asked for
    /// after the lazy delay (see the module docs).
    pub(crate) fn after_some_flush(&mut self, action: A) {
        self.hold(action);
        self.lazy_deadline.get_or_insert_with(|| Instant::now() + self.lazy_delay);
    }

    /// Queues `action` behind every write made so far.
    fn hold(&mut self, action: A) {
        self.asked += 1;
        self.held.push_back((self.asked, action));
    }

    /// Asks the thread to flush everything written before the newest held action.
    fn request(&mut self) {
        self.lazy_deadline = None;
        if let Some(requests) = &self.requests {
            // A send fails only once the thread is gone; then `flushed` says so.
            let _ = requests.send(self.asked);
        }
    }

    /// Whether actions are waiting for a flush.
    pub(crate) fn is_holding(&self) -> bool {
        !self.held.is_empty()
    }

    /// Waits for the next flush, then returns the actions it made durable (oldest
    /// first) with its outcome. Cancel-safe. Never resolves while nothing is held.
    pub(crate) async fn flushed(&mut self) -> (Vec<A>, Result<(), FlushFailed>) {
        if self.held.is_empty() {
            return std::future::pending().await;
        }
        let report = loop {
            let Some(deadline) = self.lazy_deadline else { break self.done.recv().await };
            tokio::select! {
                report = self.done.recv() => break report,
                () = tokio::time::sleep_until(deadline) => self.request(),
            }
        };
        let Some(Flushed { upto, result }) = report else {
            // The thread died: nothing more will be made durable by it.
            let held = self.held.drain(..).map(|(_, a)| a).collect();
            return (held, Err(FlushFailed("the flushing thread stopped".into())));
        };
        let mut ready = Vec::new();
        while self.held.front().is_some_and(|(n, _)| *n <= upto) {
            if let Some((_, action)) = self.held.pop_front() {
                ready.push(action);
            }
        }
        (ready, result)
    }

    /// Flushes on the calling thread and returns every held action (for shutdown).
    pub(crate) fn flush_now(&mut self, store: &Store) -> (Vec<A>, Result<(), FlushFailed>) {
        self.lazy_deadline = None;
        let result = store.flush().map(drop).map_err(|e| FlushFailed(e.to_string()));
        (self.held.drain(..).map(|(_, a)| a).collect(), result)
    }
}

impl<A> Drop for Flusher<A> {
    fn drop(&mut self) {
        // Closing the request channel ends the thread after its current flush.
        self.requests = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The thread: wait for a request, take every other one already queued, flush once,
/// report the newest covered.
fn flush_loop(store: &Store, incoming: &std_mpsc::Receiver<u64>, report: &mpsc::UnboundedSender<Flushed>) {
    while let Ok(mut upto) = incoming.recv() {
        while let Ok(newer) = incoming.try_recv() {
            upto = upto.max(newer);
        }
        let result = store.flush().map(drop).map_err(|e| FlushFailed(e.to_string()));
        if let Err(e) = &result {
            tracing::error!(error = %e, "background flush failed");
        }
        if report.send(Flushed { upto, result }).is_err() {
            return;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use kith_storage::Contact;

    fn contact(n: u8) -> Contact {
        let peer = kith_storage::PeerId::from_bytes(&[&[0x12, 0x20][..], &[n; 32]].concat()).unwrap();
        crate::node::test_support::accepted_contact(peer)
    }

    #[tokio::test]
    async fn held_actions_come_back_in_order_once_flushed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let mut flusher = Flusher::start(store.clone(), LAZY_FLUSH_DELAY).unwrap();
        assert!(!flusher.is_holding());
        for n in 0..50u8 {
            store.contacts().put(&contact(n)).unwrap();
            flusher.after_flush(n);
        }
        let mut returned = Vec::new();
        while flusher.is_holding() {
            let flushed = tokio::time::timeout(std::time::Duration::from_secs(10), flusher.flushed());
            let (actions, result) = flushed.await.expect("a flush within 10 s");
            result.unwrap();
            assert!(!actions.is_empty(), "a flush returns what it covered");
            returned.extend(actions);
        }
        assert_eq!(returned, (0..50).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn nothing_held_means_nothing_to_wait_for() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let mut flusher: Flusher<()> = Flusher::start(store, LAZY_FLUSH_DELAY).unwrap();
        let waited = tokio::time::timeout(std::time::Duration::from_millis(50), flusher.flushed()).await;
        assert!(waited.is_err(), "an idle flusher never resolves");
    }

    #[tokio::test]
    async fn flush_now_hands_back_everything_held() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let mut flusher = Flusher::start(store.clone(), LAZY_FLUSH_DELAY).unwrap();
        flusher.after_flush(1);
        flusher.after_flush(2);
        let (actions, result) = flusher.flush_now(&store);
        result.unwrap();
        assert_eq!(actions, [1, 2]);
        assert!(!flusher.is_holding());
    }

    // Paused time: nothing moves the clock but a timer the flusher waits on. (No
    // timeout around `flushed()` here: paused time would fire it while the
    // flushing thread, which tokio does not see, is still syncing.)
    #[tokio::test(start_paused = true)]
    async fn an_action_held_for_some_flush_rides_on_the_next_one_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let mut flusher = Flusher::start(store.clone(), LAZY_FLUSH_DELAY).unwrap();
        store.contacts().put(&contact(1)).unwrap();
        flusher.after_some_flush(1);
        store.contacts().put(&contact(2)).unwrap();
        flusher.after_flush(2);
        let started = Instant::now();
        let mut returned = Vec::new();
        while flusher.is_holding() {
            let (actions, result) = flusher.flushed().await;
            result.unwrap();
            returned.extend(actions);
        }
        assert_eq!(returned, [1, 2]);
        assert!(started.elapsed() < LAZY_FLUSH_DELAY, "the second action's flush covered the first");
    }

    #[tokio::test(start_paused = true)]
    async fn an_action_held_for_some_flush_asks_for_one_after_the_delay() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let mut flusher = Flusher::start(store.clone(), LAZY_FLUSH_DELAY).unwrap();
        store.contacts().put(&contact(1)).unwrap();
        flusher.after_some_flush(1);
        let started = Instant::now();
        let (actions, result) = flusher.flushed().await;
        result.unwrap();
        assert_eq!(actions, [1]);
        assert!(started.elapsed() >= LAZY_FLUSH_DELAY, "nothing asked for a flush before the delay");
        assert!(!flusher.is_holding());
    }
}
