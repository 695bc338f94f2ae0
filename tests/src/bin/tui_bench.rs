//! Benchmark of the terminal interface on a long conversation (issue 6): time to the
//! first frame, paging a 100,000-message conversation back to its first message and
//! down again, frame (draw) times while doing so by depth, key-press-to-screen latency
//! (at the newest message and at the top), and memory.
//!
//! Run: `cargo run --release -p kith-tests --bin tui-bench -- [--messages N]
//! [--size 120x40] [--keys N] [--first-frame-runs N] [--scroll-deadline SECS]
//! [--deadline SECS] [--show-frames]`.
//!
//! Set-up: two fresh homes (`kith init`); with no daemon running, the contact is
//! written straight into my store as `accepted` and N messages (both directions,
//! texts of varying length with Cyrillic, CJK and emoji, spread over a year so day
//! separators occur, the newest three incoming ones unread) are inserted into the
//! conversation in batches. Then my daemon starts, and everything below goes through
//! its real control socket.
//!
//! Measurement: the real state machine ([`kith_tui::update`]) and renderer
//! ([`kith_tui::render`]) on a ratatui `TestBackend`; the effects `update` asks for
//! are performed on the control socket with the same requests as the TUI's runtime
//! (its `request` is used here, bounded by a deadline).
//! Requests run one at a time on one connection, as the runtime's quick worker does;
//! the screen is drawn after every key and every answer, as the runtime does when
//! answers arrive one by one.
//!
//! The TUI keeps a bounded window of messages around the scroll anchor, so a frame
//! costs the same at any depth; "depth" below is how many messages lie between the
//! newest one and the oldest loaded one. Scrolling up and back down are each bounded
//! by `--scroll-deadline` (default 3600 s) and by a PageUp count far above what the
//! history needs; the report says how far they got.
//!
//! Numbers go to docs/PERFORMANCE.md; nothing here is a pass/fail test, but every
//! phase is bounded in time (`--deadline`, default 5400 s, for the whole run; SIGTERM
//! and SIGINT too stop the daemon and exit 2).

#![allow(clippy::unwrap_used)]

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use kith_p2p::control::Client;
use kith_p2p::data::open_store;
use kith_p2p::home::Home;
use kith_p2p::kith_storage::{
    Contact, ContactState, ConversationKind, Direction, Message, MessageId, MessageState,
};
use kith_p2p::libp2p::PeerId;
use kith_p2p::ops;
use kith_tests::bench::{ms, proc_status_kib, rss_kib, summary};
use kith_tests::{Peer, kith_bin};
use kith_tui::{Action, App, Config, Effect, Response, render, update};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use tokio::sync::mpsc;

/// One control-socket request may take this long.
const REQUEST_DEADLINE: Duration = Duration::from_secs(30);
/// Messages per `insert_incoming_batch` call while seeding.
const INSERT_BATCH: usize = 1_000;
/// The TUI's history page (`kith_tui::app::PAGE`).
const PAGE: usize = kith_tui::app::PAGE;
/// Ms in a day.
const DAY_MS: u64 = 24 * 3600 * 1000;
/// The first message's text (ASCII start, so it can be found on the screen).
const OLDEST_TEXT: &str = "The very first message of this conversation: hello there! 🌱";
/// The newest message's text.
const NEWEST_TEXT: &str = "Newest message: see you tomorrow, good night 🌙";
/// Found on the screen when the first message is visible.
const OLDEST_MARK: &str = "The very first message of this conversation";
/// Found on the screen when the newest message is visible.
const NEWEST_MARK: &str = "Newest message: see you tomorrow";

/// What the measured phases return.
struct Report {
    first: FirstFrame,
    repeats: Vec<Duration>,
    rss_first: u64,
    typing_fresh: Vec<Duration>,
    up: Scroll,
    down: Scroll,
    depth: usize,
    loaded: usize,
    typing_deep: Vec<Duration>,
    rss_top: u64,
    page_up_near: Vec<Duration>,
    rss_end: u64,
    hwm_end: u64,
}

/// The daemon's pid, for the watchdog.
static DAEMON_PID: AtomicU32 = AtomicU32::new(0);

struct Args {
    messages: usize,
    width: u16,
    height: u16,
    keys: usize,
    first_frame_runs: usize,
    scroll_deadline: Duration,
    deadline: Duration,
    days: u64,
    show_frames: bool,
}

fn parse_args() -> Args {
    let mut args = Args {
        messages: 100_000,
        width: 120,
        height: 40,
        keys: 1_000,
        first_frame_runs: 5,
        scroll_deadline: Duration::from_secs(3600),
        deadline: Duration::from_secs(5400),
        days: 365,
        show_frames: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--show-frames" {
            args.show_frames = true;
            continue;
        }
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        let number = || -> u64 { value.parse().unwrap_or_else(|_| panic!("{flag} needs a number")) };
        match flag.as_str() {
            "--messages" => args.messages = (number() as usize).max(2),
            "--keys" => args.keys = number() as usize,
            "--first-frame-runs" => args.first_frame_runs = (number() as usize).max(1),
            "--scroll-deadline" => args.scroll_deadline = Duration::from_secs(number()),
            "--deadline" => args.deadline = Duration::from_secs(number()),
            "--days" => args.days = number().max(1),
            "--size" => {
                let (w, h) = value.split_once('x').unwrap_or_else(|| panic!("--size is WxH"));
                args.width = w.parse().unwrap();
                args.height = h.parse().unwrap();
            }
            other => panic!("unknown flag {other}"),
        }
    }
    args
}

// ---- statistics -----------------------------------------------------------------------

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

// ---- seeding --------------------------------------------------------------------------

/// splitmix64: a small deterministic generator, so every run seeds the same history.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len() as u64) as usize]
    }
    fn id(&mut self) -> [u8; 16] {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&self.next().to_le_bytes());
        id[8..].copy_from_slice(&self.next().to_le_bytes());
        id
    }
}

const SHORT: &[&str] = &[
    "ok", "да", "👍", "haha", "sure", "ага", "на связи", "thanks!", "спасибо 🙏", "lol", "no", "yes", "🙂", "?",
    "good night 🌙", "доброе утро ☀️", "brb", "ок, понял", "😂😂😂", "точно", "agreed", "хорошо", "❤️", "on my way",
    "сейчас", "nice!", "ну да", "👀", "wait what", "👌",
];

const MEDIUM: &[&str] = &[
    "Are we still on for Thursday?",
    "Купил билеты, скинул тебе на почту",
    "I'll call you after the meeting, should be around 6",
    "Смотри, что нашёл 👉 https://example.org/articles/2025/how-to-make-bread-at-home",
    "Мне кажется, этот кусок нужно переписать с нуля",
    "can you send me the address again? I lost it somewhere in this chat",
    "Поезд опаздывает минут на двадцать 🚆",
    "Just pushed the fix, let me know if it still crashes on your machine",
    "你好！明天见面吗？我们可以一起吃饭。",
    "Не забудь взять зарядку 🔌 и паспорт",
    "The build is green again 🎉",
    "Сколько стоит доставка до Казани?",
    "Happy birthday!!! 🎂🎈🥳",
    "Я на месте, у входа слева",
    "Did you see the game yesterday? Unbelievable ending",
    "日本語のテキストも大丈夫ですか？",
    "Перезвоню через пять минут, я за рулём",
    "Let's move the call to tomorrow morning, something came up",
    "Кот опять уронил ёлку 🎄🐈",
    "Remember to water the plants while I'm away 🪴",
    "Всё хорошо, спасибо 🙂 А у тебя как?",
    "ping me when you're back",
];

const LONG: &[&str] = &[
    "So here's the plan for the weekend: we leave on Friday around five, stop for dinner somewhere \
     halfway, and get to the cabin before midnight. Saturday is hiking if the weather holds, otherwise \
     board games and the sauna. Bring warm clothes, it gets cold at night up there even in summer.",
    "Длинное сообщение, которое точно не поместится в одну строку: вчера разговаривал с арендодателем, \
     он готов снизить цену, если мы подпишем договор на год вперёд и внесём залог за два месяца. \
     Мне кажется, это разумно, но хочу услышать твоё мнение, прежде чем соглашаться.",
    "Shopping list:\n- milk\n- eggs (a dozen)\n- bread\n- coffee beans, the dark roast\n- something for dessert 🍰",
    "Я тут подумал насчёт проекта.\nВо-первых, сроки нереальные.\nВо-вторых, нам нужен ещё один человек на бэкенд.\n\
     В-третьих, давай обсудим всё это завтра на созвоне 📞",
    "I finally finished the book you lent me. The first half was slow, but the last hundred pages \
     were impossible to put down — I stayed up until 3 am. We need to talk about that ending, \
     I have so many questions. 📚",
    "混合テキスト: English, русский, 中文 and emoji 🌏🚀✨ all in one message, to check that wide \
     characters wrap correctly at the edge of the pane without splitting anything in half.",
];

/// The text of message `i` of `n`.
fn text_for(i: usize, n: usize, rng: &mut Rng) -> String {
    if i == 0 {
        return OLDEST_TEXT.to_owned();
    }
    if i == n - 1 {
        return NEWEST_TEXT.to_owned();
    }
    match rng.below(100) {
        0..45 => rng.pick(SHORT).to_owned(),
        45..85 => rng.pick(MEDIUM).to_owned(),
        85..97 => {
            // A few medium sentences run together.
            let k = 2 + rng.below(3);
            (0..k).map(|_| rng.pick(MEDIUM)).collect::<Vec<_>>().join(" ")
        }
        _ => rng.pick(LONG).to_owned(),
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// The seeded conversation: `n` messages oldest first, spread over `days` days ending
/// an hour ago, in bursts; both directions in runs; the newest three incoming unread.
fn generate(n: usize, days: u64, me: &str, them: &str, conversation: kith_p2p::kith_storage::ConversationId) -> Vec<Message> {
    let mut rng = Rng(0x6b69_7468_7475_6962);
    // Gaps in ms: mostly seconds to minutes within a burst, sometimes hours between.
    let gaps: Vec<u64> = (0..n)
        .map(|_| if rng.below(100) < 3 { 600_000 + rng.below(36_000_000) } else { 2_000 + rng.below(120_000) })
        .collect();
    let raw_total: u64 = gaps.iter().sum::<u64>().max(1);
    let span = days * DAY_MS;
    let end = now_ms() - 3_600_000;
    let start = end - span;
    let mut at = 0u64;
    let mut outgoing = false;
    let mut run_left = 0;
    let mut messages = Vec::with_capacity(n);
    for (i, gap) in gaps.iter().enumerate() {
        at += gap;
        let sent_at = start + (u128::from(at) * u128::from(span) / u128::from(raw_total)) as u64;
        if run_left == 0 {
            outgoing = !outgoing;
            run_left = 1 + rng.below(4);
        }
        run_left -= 1;
        // The newest three are incoming and unread.
        let dir_out = outgoing && i + 3 < n;
        let unread = !dir_out && i + 3 >= n;
        let state = match (dir_out, unread) {
            (true, _) if i + 40 >= n => MessageState::Delivered,
            (true, _) => MessageState::Read,
            (false, true) => MessageState::Delivered,
            (false, false) => MessageState::Read,
        };
        messages.push(Message {
            id: MessageId::from_bytes(rng.id()),
            conversation,
            author: if dir_out { me.to_owned() } else { them.to_owned() },
            lamport: i as u64 + 1,
            sent_at_ms: sent_at,
            received_at_ms: sent_at + if dir_out { 0 } else { 150 + rng.below(2_000) },
            text: text_for(i, n, &mut rng),
            state,
            direction: if dir_out { Direction::Outgoing } else { Direction::Incoming },
            file: None,
            link: None,
        });
    }
    messages
}

/// What the seeding child process is told: my home and peer id, the contact's peer id
/// and name, how many messages over how many days.
struct SeedJob {
    home: PathBuf,
    me: String,
    contact: String,
    contact_name: String,
    messages: usize,
    days: u64,
}

/// Seed in a child process (this program with `--seed-into`), so that the seeding's
/// allocations and sled's cache do not count in this process's RSS. Returns the
/// seeding time and the bytes of text.
fn seed_in_child(job: &SeedJob) -> (Duration, usize) {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .arg("--seed-into")
        .arg(&job.home)
        .args([&job.me, &job.contact, &job.contact_name, &job.messages.to_string(), &job.days.to_string()])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success(), "seeding failed: {:?}", out.status);
    let text = String::from_utf8(out.stdout).unwrap();
    let mut words = text.split_whitespace();
    assert_eq!(words.next(), Some("seeded"), "{text}");
    let micros: u64 = words.next().unwrap().parse().unwrap();
    let bytes: usize = words.next().unwrap().parse().unwrap();
    (Duration::from_micros(micros), bytes)
}

/// The child's side: `--seed-into HOME ME CONTACT NAME MESSAGES DAYS`.
fn seed_main(mut argv: impl Iterator<Item = String>) {
    let mut next = || argv.next().expect("--seed-into HOME ME CONTACT NAME MESSAGES DAYS");
    let job = SeedJob {
        home: PathBuf::from(next()),
        me: next(),
        contact: next(),
        contact_name: next(),
        messages: next().parse().unwrap(),
        days: next().parse().unwrap(),
    };
    let (took, bytes) = seed(&job);
    println!("seeded {} {bytes}", took.as_micros());
}

/// Write the contact and the messages into my store (no daemon may run).
fn seed(job: &SeedJob) -> (Duration, usize) {
    let (n, days) = (job.messages, job.days);
    let t = Instant::now();
    let store = open_store(&Home::at(&job.home)).unwrap();
    let my_id: PeerId = job.me.parse().unwrap();
    let their_id: PeerId = job.contact.parse().unwrap();
    let now = now_ms();
    store
        .contacts()
        .put(&Contact {
            peer_id: their_id,
            alias: None,
            display_name: Some(job.contact_name.clone()),
            state: ContactState::Accepted,
            e2e_public: None,
            binding: None,
            addrs: Vec::new(),
            relays: Vec::new(),
            added_at_ms: now - days * DAY_MS,
            updated_at_ms: now - days * DAY_MS,
            last_seen_ms: None,
            verified_at_ms: None,
            key_changed_at_ms: None,
        })
        .unwrap();
    let conversation = ops::direct_conversation(&my_id, &their_id);
    store
        .conversations()
        .get_or_create(conversation, ConversationKind::Direct { peer_id: job.contact.clone() }, now - days * DAY_MS)
        .unwrap();
    let messages = generate(n, days, &job.me, &job.contact, conversation);
    let bytes: usize = messages.iter().map(|m| m.text.len()).sum();
    for batch in messages.chunks(INSERT_BATCH) {
        // Stores outgoing ones too (no outbox entries: nothing is to be sent).
        store.insert_incoming_batch(batch).unwrap();
    }
    store.flush().unwrap();
    assert_eq!(store.messages().count(conversation).unwrap(), n);
    drop(store);
    (t.elapsed(), bytes)
}

// ---- the TUI, driven ------------------------------------------------------------------

/// The runtime's own request code, bounded by [`REQUEST_DEADLINE`].
async fn perform(client: &mut Client, effect: &Effect) -> Result<Response, String> {
    tokio::time::timeout(REQUEST_DEADLINE, kith_tui::request(client, effect))
        .await
        .map_err(|_| format!("{} took longer than {REQUEST_DEADLINE:?}", effect_name(effect)))?
        .map_err(|e| e.to_string())
}

fn effect_name(effect: &Effect) -> &'static str {
    match effect {
        Effect::Refresh => "contacts+requests+inbox",
        Effect::LoadStatus => "status",
        Effect::LoadHistory { before: None, limit, .. } if *limit == PAGE => "history (newest page)",
        Effect::LoadHistory { .. } => "history (older or newer page)",
        Effect::LoadPreview { .. } => "history (preview)",
        Effect::MarkRead { .. } => "read",
        _ => "other",
    }
}

/// The state machine, a `TestBackend` terminal and the request connection.
struct Driver {
    app: App,
    terminal: Terminal<TestBackend>,
    quick: Client,
    events: mpsc::Receiver<Action>,
    events_task: tokio::task::JoinHandle<()>,
    /// The last frame drawn.
    last_frame: Buffer,
    /// How long asking `date` for the time zone took (part of the runtime's start-up).
    tz_time: Duration,
    /// Node requests waiting, in order.
    pending: VecDeque<Effect>,
    /// Time spent in `update`, in draws, and in requests, since the last reset.
    update_time: Duration,
    draw_time: Duration,
    draws: usize,
    requests: Vec<(&'static str, Duration)>,
}

impl Driver {
    /// Connect as the runtime does (quick, slow and event connections; subscribe).
    async fn connect(socket: &Path, width: u16, height: u16) -> Driver {
        let connect = || async {
            tokio::time::timeout(REQUEST_DEADLINE, Client::connect(socket)).await.expect("connect timed out").unwrap()
        };
        let quick = connect().await;
        let _slow = connect().await; // The runtime's connection for `add`/`invite`: unused here.
        let mut events = connect().await;
        tokio::time::timeout(REQUEST_DEADLINE, events.subscribe()).await.expect("subscribe timed out").unwrap();
        let (tx, rx) = mpsc::channel(256);
        let events_task = tokio::spawn(kith_tui::forward_events(events, tx));
        // As the runtime does next: the time zone from `date +%z`.
        let t = Instant::now();
        let utc_offset_secs = kith_tui::local_utc_offset().await;
        let tz_time = t.elapsed();
        let config = Config { no_color: false, bell: false, notify: false, utc_offset_secs, runs_node: false, display_name: None, open_on: None };
        Driver {
            app: App::new(config),
            terminal: Terminal::new(TestBackend::new(width, height)).unwrap(),
            quick,
            events: rx,
            events_task,
            tz_time,
            last_frame: Buffer::empty(ratatui::layout::Rect::new(0, 0, width, height)),
            pending: VecDeque::new(),
            update_time: Duration::ZERO,
            draw_time: Duration::ZERO,
            draws: 0,
            requests: Vec::new(),
        }
    }

    fn reset_counters(&mut self) {
        self.update_time = Duration::ZERO;
        self.draw_time = Duration::ZERO;
        self.draws = 0;
        self.requests.clear();
    }

    /// Apply an action; queue its node requests. Returns the time `update` took.
    fn apply(&mut self, action: Action) -> Duration {
        let t = Instant::now();
        let effects = update(&mut self.app, action);
        let took = t.elapsed();
        self.update_time += took;
        for effect in effects {
            match effect {
                Effect::Quit | Effect::Bell | Effect::Notify { .. } => {}
                other => self.pending.push_back(other),
            }
        }
        took
    }

    /// Apply node events that arrived meanwhile.
    fn drain_events(&mut self) {
        while let Ok(action) = self.events.try_recv() {
            self.apply(action);
        }
    }

    /// Draw a frame; returns how long it took.
    fn draw(&mut self) -> Duration {
        let app = &self.app;
        let t = Instant::now();
        let frame = self.terminal.draw(|frame| render(frame, app)).unwrap();
        let took = t.elapsed();
        // Keep the frame as ratatui drew it: the `TestBackend`'s own buffer keeps stale
        // symbols in cells that wide characters cover (ratatui's diff skips them; a
        // real terminal overwrites them), so it is not a faithful picture.
        self.last_frame.clone_from(frame.buffer);
        self.draw_time += took;
        self.draws += 1;
        took
    }

    /// Perform the oldest waiting request and apply its answer; `None` if none waits.
    async fn perform_next(&mut self) -> Option<(&'static str, Duration)> {
        let effect = self.pending.pop_front()?;
        let name = effect_name(&effect);
        let t = Instant::now();
        let result = perform(&mut self.quick, &effect).await;
        let took = t.elapsed();
        self.requests.push((name, took));
        let action = match result {
            Ok(response) => Action::Done(response),
            Err(error) => {
                eprintln!("request {name} failed: {error}");
                Action::Failed { effect, error }
            }
        };
        self.apply(action);
        Some((name, took))
    }

    /// The last frame as text, row by row (wide characters followed by their filler cell).
    fn screen(&self) -> String {
        let buffer = &self.last_frame;
        let mut out = String::new();
        for y in 0..buffer.area.height {
            let mut line = String::new();
            for x in 0..buffer.area.width {
                line.push_str(buffer[(x, y)].symbol());
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    fn shows(&self, mark: &str) -> bool {
        self.screen().contains(mark)
    }

    fn loaded(&self) -> usize {
        self.app.focused().map_or(0, |c| c.messages.len())
    }

    /// Messages from the newest to the oldest loaded one (the window plus the newer
    /// ones it evicted).
    fn depth(&self) -> usize {
        self.app.focused().map_or(0, |c| c.depth())
    }

    fn at_bottom(&self) -> bool {
        self.app.focused().is_some_and(|c| c.scroll == kith_tui::app::Scroll::Bottom && !c.detached())
    }

    /// Press a key: update, then draw. Returns (update, draw) times.
    fn key(&mut self, code: KeyCode, modifiers: KeyModifiers) -> (Duration, Duration) {
        let u = self.apply(Action::Key(KeyEvent::new(code, modifiers)));
        self.drain_events();
        let d = self.draw();
        (u, d)
    }

    fn close(self) {
        self.events_task.abort();
    }
}

// ---- phases ---------------------------------------------------------------------------

struct FirstFrame {
    total: Duration,
    connect: Duration,
    tz: Duration,
    requests: Vec<(&'static str, Duration)>,
    update: Duration,
    draw: Duration,
    draws: usize,
}

/// From connecting until a frame shows the newest messages of the conversation,
/// which the TUI opens by itself (it is the most recent; the only one here).
async fn first_frame(socket: &Path, args: &Args, deadline: Instant) -> (Driver, FirstFrame) {
    let t0 = Instant::now();
    let mut d = Driver::connect(socket, args.width, args.height).await;
    let connect = t0.elapsed();
    d.apply(Action::Resize { width: args.width, height: args.height });
    for effect in d.app.start() {
        d.pending.push_back(effect);
    }
    d.draw(); // The runtime draws once before any answer ("connecting").
    loop {
        assert!(Instant::now() < deadline, "first frame: deadline passed");
        if d.loaded() > 0 && d.shows(NEWEST_MARK) {
            break;
        }
        if d.perform_next().await.is_none() {
            // Nothing to ask: wait for an event briefly (should not happen).
            match tokio::time::timeout(Duration::from_secs(5), d.events.recv()).await {
                Ok(Some(action)) => {
                    d.apply(action);
                }
                _ => panic!("first frame: no request pending and no event; screen:\n{}", d.screen()),
            }
        }
        d.drain_events();
        d.draw();
    }
    let total = t0.elapsed();
    let ff = FirstFrame {
        total,
        connect: connect - d.tz_time,
        tz: d.tz_time,
        requests: d.requests.clone(),
        update: d.update_time,
        draw: d.draw_time,
        draws: d.draws,
    };
    // Requests still queued (e.g. `read`) are what the runtime sends next; finish them.
    while d.perform_next().await.is_some() {
        d.drain_events();
        d.draw();
    }
    d.reset_counters();
    (d, ff)
}

#[derive(Default)]
struct Scroll {
    /// Whether the phase got where it was going (the first or the newest message).
    reached_end: bool,
    total: Duration,
    pages: usize,
    page_ups: usize,
    /// (depth, draw time) of every frame.
    frames: Vec<(usize, Duration)>,
    /// (depth, update + draw) of PageUps that did not ask for a page.
    page_up_no_load: Vec<(usize, Duration)>,
    /// (depth, update) of every PageUp (the state machine alone).
    page_up_update: Vec<(usize, Duration)>,
    /// The most messages loaded at once.
    max_loaded: usize,
    /// `history` request times (older pages).
    history: Vec<Duration>,
    /// Time from a loading PageUp to the frame with the page in it.
    page_to_screen: Vec<(usize, Duration)>,
    /// (depth, time since the first PageUp) at milestones.
    milestones: Vec<(usize, Duration)>,
}

/// Most PageUps (or PageDowns) one scroll phase presses: far more than 100,000
/// messages need at any screen height the bench is run with (about 5,000 at 40 rows).
const MAX_PAGE_KEYS: usize = 200_000;

/// Press `code` (PageUp or PageDown) until `done`, performing the page requests it
/// causes and drawing after each answer, as the runtime does.
async fn scroll(d: &mut Driver, code: KeyCode, deadline: Instant, done: impl Fn(&Driver) -> bool) -> Scroll {
    let mut s = Scroll::default();
    let t0 = Instant::now();
    loop {
        if done(d) {
            s.reached_end = true;
            break;
        }
        if Instant::now() >= deadline || s.page_ups >= MAX_PAGE_KEYS {
            break;
        }
        let depth = d.depth();
        let t_key = Instant::now();
        let (u, draw) = d.key(code, KeyModifiers::NONE);
        s.page_ups += 1;
        s.frames.push((depth, draw));
        s.page_up_update.push((depth, u));
        let loads = d.pending.iter().any(|e| matches!(e, Effect::LoadHistory { .. }));
        if !loads {
            s.page_up_no_load.push((depth, u + draw));
        }
        while let Some((name, took)) = d.perform_next().await {
            if name.starts_with("history (older") || name.starts_with("history (newer") {
                s.pages += 1;
                s.history.push(took);
            }
            d.drain_events();
            let draw = d.draw();
            s.frames.push((d.depth(), draw));
        }
        if loads {
            s.page_to_screen.push((depth, t_key.elapsed()));
        }
        s.max_loaded = s.max_loaded.max(d.loaded());
        let now = d.depth();
        if now / 10_000 != depth / 10_000 {
            s.milestones.push((now, t0.elapsed()));
            eprintln!(
                "[tui-bench] depth {now} after {:.1} s; last frame {}, {} loaded",
                t0.elapsed().as_secs_f64(),
                ms(s.frames.last().map_or(Duration::ZERO, |f| f.1)),
                d.loaded()
            );
        }
    }
    s.total = t0.elapsed();
    s
}

/// Type `keys` characters (sentences, cleared with Ctrl+U after each) and time each
/// key from `update` to the end of its frame. Stops at `deadline`.
fn typing(d: &mut Driver, keys: usize, deadline: Instant) -> Vec<Duration> {
    const SENTENCES: &[&str] = &[
        "hey, are you around tonight? ",
        "Привет! Как дела, что нового? ",
        "sounds good 👍 see you at 8 ",
        "我明天下午有空。 ",
        "Купи, пожалуйста, хлеба и молока 🥛 ",
        "the quick brown fox jumps over the lazy dog ",
    ];
    let mut samples = Vec::with_capacity(keys);
    let mut typed = 0;
    'outer: for sentence in SENTENCES.iter().cycle() {
        for c in sentence.chars() {
            if typed >= keys || Instant::now() >= deadline {
                break 'outer;
            }
            let (u, draw) = d.key(KeyCode::Char(c), KeyModifiers::NONE);
            samples.push(u + draw);
            typed += 1;
        }
        d.key(KeyCode::Char('u'), KeyModifiers::CONTROL);
    }
    d.key(KeyCode::Char('u'), KeyModifiers::CONTROL);
    assert!(d.app.input().is_empty(), "the input was not cleared");
    samples
}

/// PageUp/PageDown in the middle of the loaded window: key-to-screen of the PageUps
/// (a PageUp that asks for a page is performed but not counted).
async fn page_up_loaded(d: &mut Driver, presses: usize, deadline: Instant) -> Vec<Duration> {
    let mut samples = Vec::new();
    // Back to the newest message, then half way up, away from both ends.
    d.key(KeyCode::Esc, KeyModifiers::NONE);
    for _ in 0..presses {
        if Instant::now() >= deadline {
            break;
        }
        d.key(KeyCode::PageUp, KeyModifiers::NONE);
        while d.perform_next().await.is_some() {}
    }
    for _ in 0..presses {
        if Instant::now() >= deadline {
            break;
        }
        let (u, draw) = d.key(KeyCode::PageUp, KeyModifiers::NONE);
        if d.pending.is_empty() {
            samples.push(u + draw);
        }
        while d.perform_next().await.is_some() {}
        d.key(KeyCode::PageDown, KeyModifiers::NONE);
    }
    samples
}

/// Samples by depth (messages from the newest to the oldest loaded): (label, samples).
fn by_depth(samples: &[(usize, Duration)], total: usize) -> Vec<(String, Vec<Duration>)> {
    let edges = [0, 1_000, 10_000, 50_000, usize::MAX];
    let mut out = Vec::new();
    for w in edges.windows(2) {
        let (lo, hi) = (w[0], w[1].min(total + 1));
        if lo > total {
            break;
        }
        let v: Vec<Duration> = samples.iter().filter(|(n, _)| *n >= lo && *n < hi).map(|(_, d)| *d).collect();
        if v.is_empty() {
            continue;
        }
        let label = if w[1] == usize::MAX || hi > total { format!("{lo}–{total}") } else { format!("{lo}–{}", hi - 1) };
        out.push((label, v));
    }
    out
}

fn show_frame(title: &str, d: &Driver) {
    println!("---- {title} ----");
    print!("{}", d.screen());
}

// ---- main -----------------------------------------------------------------------------

/// Temp dirs of the homes, removed by the watchdog (normally `Peer`'s drop does it).
static TEMP_DIRS: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

/// Give up after `deadline`, or on SIGTERM/SIGINT: kill the daemon, remove the
/// homes, exit 2 (drops do not run on `exit`, so the daemon would stay behind).
fn watchdog(deadline: Duration) {
    use tokio::signal::unix::{SignalKind, signal};
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (mut term, mut int) = rt.block_on(async {
        (signal(SignalKind::terminate()).unwrap(), signal(SignalKind::interrupt()).unwrap())
    });
    std::thread::spawn(move || {
        let why = rt.block_on(async {
            tokio::select! {
                _ = tokio::time::sleep(deadline) => format!("the overall deadline of {deadline:?} passed"),
                _ = term.recv() => "SIGTERM".to_owned(),
                _ = int.recv() => "SIGINT".to_owned(),
            }
        });
        eprintln!("tui-bench: {why}; stopping the daemon and giving up");
        let pid = DAEMON_PID.load(Ordering::SeqCst);
        if pid != 0 {
            let _ = std::process::Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
        for dir in TEMP_DIRS.lock().map(|d| d.clone()).unwrap_or_default() {
            let _ = std::fs::remove_dir_all(dir);
        }
        std::process::exit(2);
    });
}

fn main() {
    let mut argv = std::env::args().skip(1).peekable();
    if argv.peek().map(String::as_str) == Some("--seed-into") {
        argv.next();
        seed_main(argv);
        return;
    }
    let args = parse_args();
    watchdog(args.deadline);
    let command = format!(
        "cargo run --release -p kith-tests --bin tui-bench --{}",
        std::env::args().skip(1).map(|a| format!(" {a}")).collect::<String>()
    );
    let kith = kith_bin();

    // ---- set-up ----
    let mut me = Peer::init("me");
    let contact = Peer::init("Алиса");
    for peer in [&me, &contact] {
        if let (Some(dir), Ok(mut dirs)) = (peer.home().parent(), TEMP_DIRS.lock()) {
            dirs.push(dir.to_owned());
        }
    }
    let (seed_time, text_bytes) = seed_in_child(&SeedJob {
        home: me.home().to_owned(),
        me: me.peer_id.clone(),
        contact: contact.peer_id.clone(),
        contact_name: contact.name.clone(),
        messages: args.messages,
        days: args.days,
    });
    let rss_start = rss_kib(std::process::id());
    let t = Instant::now();
    me.start(&[]);
    let daemon_start = t.elapsed();
    let daemon_pid = me.daemon.as_ref().unwrap().id();
    DAEMON_PID.store(daemon_pid, Ordering::SeqCst);
    let socket: PathBuf = Home::at(me.home()).socket_path();

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let overall = Instant::now() + args.deadline;
    let report = runtime.block_on(async {
        // ---- first frame: once cold (fresh daemon, with unread messages), then repeated ----
        let (mut d, first) = first_frame(&socket, &args, overall).await;
        if args.show_frames {
            show_frame("first frame", &d);
        }
        let mut repeats = Vec::new();
        for _ in 1..args.first_frame_runs {
            let (other, ff) = first_frame(&socket, &args, overall).await;
            other.close();
            repeats.push(ff.total);
        }
        let rss_first = rss_kib(std::process::id());

        // ---- typing with the newest page loaded ----
        let typing_fresh = typing(&mut d, args.keys, Instant::now() + Duration::from_secs(120));

        // ---- scroll to the top ----
        let scroll_deadline = (Instant::now() + args.scroll_deadline).min(overall);
        let up = scroll(&mut d, KeyCode::PageUp, scroll_deadline, |d| d.shows(OLDEST_MARK)).await;
        if args.show_frames {
            show_frame("top of the conversation", &d);
        }
        let depth = d.depth();
        let loaded = d.loaded();

        // ---- at the top: typing ----
        let typing_deep = typing(&mut d, args.keys, Instant::now() + Duration::from_secs(120));
        let rss_top = rss_kib(std::process::id());

        // ---- back down to the newest message ----
        let scroll_deadline = (Instant::now() + args.scroll_deadline).min(overall);
        let down =
            scroll(&mut d, KeyCode::PageDown, scroll_deadline, |d| d.at_bottom() && d.shows(NEWEST_MARK)).await;
        if args.show_frames {
            show_frame("back at the newest message", &d);
        }

        // ---- near the newest: PageUp without loads ----
        let page_up_near = page_up_loaded(&mut d, 20, Instant::now() + Duration::from_secs(120)).await;
        let rss_end = rss_kib(std::process::id());
        let hwm_end = proc_status_kib(std::process::id(), "VmHWM:");
        d.close();
        Report {
            first,
            repeats,
            rss_first,
            typing_fresh,
            up,
            down,
            depth,
            loaded,
            typing_deep,
            rss_top,
            page_up_near,
            rss_end,
            hwm_end,
        }
    });
    let Report {
        first,
        repeats,
        rss_first,
        typing_fresh,
        up,
        down,
        depth,
        loaded,
        typing_deep,
        rss_top,
        page_up_near,
        rss_end,
        hwm_end,
    } = report;
    let daemon_rss = proc_status_kib(daemon_pid, "VmRSS:");
    me.stop();

    // ---- report ----
    let n = args.messages;
    println!();
    println!("tui-bench (issue 6): {command}");
    println!(
        "kith {}; TestBackend {}x{}; 1 conversation of {n} messages ({:.1} MB of text, {} days), page {PAGE}",
        kith.display(),
        args.width,
        args.height,
        text_bytes as f64 / 1e6,
        args.days
    );
    println!("set-up: seeding the store {}, daemon start to ready {}", ms(seed_time), ms(daemon_start));
    println!();
    let row = |metric: &str, value: String, target: &str| println!("{metric:<44} {value:<52} {target}");
    row("metric", "value".into(), "target");
    row("time to first frame (cold, unread)", ms(first.total), "< 50 ms");
    let mut req = String::new();
    for (name, took) in &first.requests {
        req.push_str(&format!("{name} {}, ", ms(*took)));
    }
    row(
        "  of which",
        format!(
            "connect+subscribe {}, `date +%z` {}, {req}update {}, {} draws {}",
            ms(first.connect),
            ms(first.tz),
            ms(first.update),
            first.draws,
            ms(first.draw)
        ),
        "",
    );
    if !repeats.is_empty() {
        row("time to first frame (warm, repeated)", summary(&repeats), "< 50 ms");
    }
    let top = if up.reached_end {
        "reached the first message".to_owned()
    } else {
        format!("NOT reached: stopped at depth {depth} of {n}")
    };
    let phases = [("scroll to the top (PageUp)", &up, top), ("scroll back down (PageDown)", &down, {
        if down.reached_end { "reached the newest message".to_owned() } else { "NOT back at the newest".to_owned() }
    })];
    for (name, s, end) in phases {
        row(name, format!("{} total, {} pages, {} keys; {end}", ms(s.total), s.pages, s.page_ups), "");
        let marks: Vec<String> =
            s.milestones.iter().map(|(n, t)| format!("{}k {:.1} s", n / 1000, t.as_secs_f64())).collect();
        if !marks.is_empty() {
            row("  time until depth N", marks.join(", "), "");
        }
        row("  history request per page", summary(&s.history), "");
        let pts: Vec<Duration> = s.page_to_screen.iter().map(|x| x.1).collect();
        row("  key→page on screen (keys that loaded)", summary(&pts), "");
        let frames: Vec<Duration> = s.frames.iter().map(|f| f.1).collect();
        row("  frame (draw) time", summary(&frames), "< 16 ms");
        for (label, v) in by_depth(&s.frames, n) {
            row(&format!("    at depth {label}"), summary(&v), "< 16 ms");
        }
        let no_load: Vec<Duration> = s.page_up_no_load.iter().map(|x| x.1).collect();
        row("  key→screen, keys that loaded nothing", summary(&no_load), "< 16 ms");
        for (label, v) in by_depth(&s.page_up_no_load, n) {
            row(&format!("    at depth {label}"), summary(&v), "");
        }
        row("  most messages loaded at once", s.max_loaded.to_string(), "");
    }
    row("typing key→screen (newest page loaded)", summary(&typing_fresh), "< 16 ms");
    row(&format!("typing key→screen at the top ({loaded} loaded)"), summary(&typing_deep), "< 16 ms");
    row("PageUp key→screen near the newest, no load", summary(&page_up_near), "< 16 ms");
    row("RSS of this process before connecting", mib(rss_start), "");
    row("RSS of this process after first frame", mib(rss_first), "");
    row("RSS of this process at the top", mib(rss_top), "");
    row("RSS of this process at the end", format!("{} (peak {})", mib(rss_end), mib(hwm_end)), "");
    row("RSS of the daemon at the end", mib(daemon_rss), "");
}
