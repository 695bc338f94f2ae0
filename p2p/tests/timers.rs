//! libp2p's timeouts (`futures_timer::Delay`) under kith's patch of futures-timer
//! (vendor/futures-timer/KITH-PATCH.md): its helper thread is woken only for a
//! timer due before the thread would wake by itself, and for every 1,024
//! cancellations. These scenarios show a timer still fires on time when that
//! matters, and cancelled timers are let go.
//!
//! The helper thread is shared by the whole process, and any other test's timers
//! would wake it and hide a missing wake-up; so this binary holds one test, which
//! runs the scenarios one after another.

#![allow(clippy::unwrap_used)]

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Wake};
use std::time::{Duration, Instant};

use futures_timer::Delay;

/// A long timer the helper thread is left sleeping for (it outlives the test).
const LONG: Duration = Duration::from_secs(120);

/// How late a short timer may fire here (a loaded two-core machine), well under
/// the [`LONG`] one it would otherwise wait for.
const SLACK: Duration = Duration::from_secs(5);

#[tokio::test]
async fn timers_fire_on_time_and_cancelled_ones_are_let_go() {
    let mut long = Delay::new(LONG);
    assert!(futures::poll!(&mut long).is_pending());
    thread_took_its_list().await;

    a_short_timer_made_while_the_thread_sleeps_for_a_long_one_fires_on_time().await;
    a_timer_reset_to_sooner_fires_at_its_new_time().await;
    timers_cancelled_in_bulk_are_let_go().await;
    many_timers_each_fire_after_their_own_time().await;
    drop(long);
}

/// Waits for the helper thread to have taken every update made so far: a timer
/// due at once wakes it, and it takes its whole list before firing that timer.
async fn thread_took_its_list() {
    tokio::time::timeout(SLACK, Delay::new(Duration::from_millis(1))).await.expect("a timer due at once fired");
}

async fn a_short_timer_made_while_the_thread_sleeps_for_a_long_one_fires_on_time() {
    let started = Instant::now();
    tokio::time::timeout(SLACK, Delay::new(Duration::from_millis(100))).await.expect("the short timer fired");
    assert!(started.elapsed() >= Duration::from_millis(100), "not before its time");
}

async fn a_timer_reset_to_sooner_fires_at_its_new_time() {
    let mut timer = Delay::new(LONG);
    assert!(futures::poll!(&mut timer).is_pending());
    thread_took_its_list().await;
    let started = Instant::now();
    timer.reset(Duration::from_millis(100));
    tokio::time::timeout(SLACK, timer).await.expect("the reset timer fired");
    assert!(started.elapsed() >= Duration::from_millis(100), "not before its new time");
}

/// A task waker whose clones are counted by its `Arc`.
struct Counted;

impl Wake for Counted {
    fn wake(self: Arc<Self>) {}
}

async fn timers_cancelled_in_bulk_are_let_go() {
    let counted = Arc::new(Counted);
    let waker = counted.clone().into();
    let mut cx = Context::from_waker(&waker);
    // Due after the long timer, so none of them needs the thread before it wakes;
    // each keeps a clone of the waker until the thread takes its cancellation.
    for _ in 0..5_000 {
        let mut timer = Delay::new(LONG * 2);
        assert!(std::pin::Pin::new(&mut timer).poll(&mut cx).is_pending());
    }
    // Past 1,024 waiting updates the thread is woken and lets them go.
    let held = || Arc::strong_count(&counted) - 2; // Not `counted` and `waker`.
    let deadline = Instant::now() + SLACK;
    while held() > 1_024 {
        assert!(Instant::now() < deadline, "{} cancelled timers still held after {SLACK:?}", held());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn many_timers_each_fire_after_their_own_time() {
    let started = Instant::now();
    // Due in decreasing order, so each new one is sooner than all before it.
    let waits: Vec<Duration> = (0..200u64).map(|i| Duration::from_millis(400 - 2 * i)).collect();
    let timers = waits.iter().map(|&wait| async move {
        Delay::new(wait).await;
        (wait, started.elapsed())
    });
    let fired = tokio::time::timeout(SLACK, futures::future::join_all(timers)).await.expect("every timer fired");
    for (wait, at) in fired {
        assert!(at >= wait, "a timer due after {wait:?} fired after {at:?}");
    }
}
