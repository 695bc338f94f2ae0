//! `kith demo`: a working chat with nothing else running.
//!
//! Starts real nodes on loopback in this process — yours, an echo bot and two group
//! bots — makes the bots your contacts through one-time invites, and puts all of you
//! in a group. In a terminal it then opens kith's interface; with stdin or stdout not
//! a terminal (a pipe, a script) every stdin line becomes an end-to-end encrypted
//! message to the echo bot and its answers are printed. Your node serves its control
//! socket, so `kith --home <dir>/you history echo` works alongside.
//!
//! Without `--home` everything lives in a fresh private temporary directory that is
//! removed when the demo ends, also when it ends by SIGINT, SIGTERM or SIGHUP; with
//! `--home DIR` the demo keeps its identities and history there.

use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use kith_p2p::control::Server;
use kith_p2p::home::Home;
use kith_p2p::identity::Identity;
use kith_p2p::keystore::{self, Protection};
use kith_p2p::kith_storage::{ContactState, Direction, PeerId, Store};
use kith_p2p::node::{self, Event, GroupChange, NodeConfig, NodeHandle, Timers};
use kith_p2p::views::MessageView;
use kith_tui::TuiOptions;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{broadcast, watch};

use crate::args::Global;
use crate::failure::{Code, Failure, Result};

/// How long the line mode waits for outstanding replies after stdin closes.
const DRAIN_DEADLINE: Duration = Duration::from_secs(10);
/// How long setting up the bots may take before the demo gives up.
const SETUP_DEADLINE: Duration = Duration::from_secs(20);
/// The demo group's name.
const GROUP: &str = "kith demo";

/// A bot of the demo: its name (also your alias for it) and how it answers you.
struct Bot {
    name: &'static str,
    answer: fn(&str) -> String,
}

/// Answers 1:1 messages.
const ECHO: Bot = Bot { name: "echo", answer: |text| format!("echo: {text}") };
/// The two members of the demo group besides you.
const GROUP_BOTS: [Bot; 2] = [
    Bot { name: "ada", answer: |text| format!("backwards that is «{}»", text.chars().rev().collect::<String>()) },
    Bot { name: "grace", answer: |text| format!("{} characters, {} words", text.chars().count(), text.split_whitespace().count()) },
];

pub(crate) fn run(global: &Global, verbose: u8) -> Result {
    let interactive = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let result = rt.block_on(async {
        // Before anything is created: no Ctrl-C, closed terminal or `kill` may end the
        // demo without it cleaning up after itself.
        let stop = stop_on_signals()?;
        // mkdtemp: a fresh, private (0700) directory, removed when dropped.
        let temporary = match &global.home {
            Some(_) => None,
            None => Some(tempfile::Builder::new().prefix("kith-demo-").tempdir()?),
        };
        let base = temporary.as_ref().map_or_else(|| global.home.clone().unwrap_or_default(), |dir| dir.path().to_path_buf());
        demo(&base, interactive, verbose, stop).await
    });
    // A read of stdin may still be blocked (a signal ended the chat): do not wait for it.
    rt.shutdown_background();
    result
}

/// Resolves (to `true`) on the first SIGINT, SIGTERM or SIGHUP.
fn stop_on_signals() -> Result<watch::Receiver<bool>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut signals = [SignalKind::interrupt(), SignalKind::terminate(), SignalKind::hangup()]
        .into_iter()
        .map(signal)
        .collect::<std::io::Result<Vec<_>>>()?;
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let any = futures::future::select_all(signals.iter_mut().map(|s| Box::pin(s.recv())));
        any.await;
        let _ = tx.send(true);
    });
    Ok(rx)
}

/// Waits until `stop` says to stop.
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

async fn demo(base: &Path, interactive: bool, verbose: u8, stop: watch::Receiver<bool>) -> Result {
    let you = prepare(base.join("you"), "you")?;
    if interactive {
        // The interface owns the screen: logs go to a file in the demo's home.
        super::tui::log_to_file(&you.0)?;
        eprintln!("kith demo: starting your node and three bots on 127.0.0.1 …");
    } else {
        crate::init_logging(verbose);
    }
    let bots = [&ECHO, &GROUP_BOTS[0], &GROUP_BOTS[1]]
        .into_iter()
        .map(|bot| Ok((bot, prepare(base.join(bot.name), bot.name)?)))
        .collect::<Result<Vec<_>>>()?;
    let you_home = you.0.clone();
    let you = start(&you.0, you.1, "you").await?;
    let mut cast = Vec::new();
    for (bot, (home, identity)) in bots {
        cast.push((bot, start(&home, identity, bot.name).await?));
    }
    let server = Server::bind(&you_home.socket_path(), &you_home.lock_path()).await.map_err(anyhow::Error::from)?;
    let server = std::sync::Arc::new(server);
    let serving = tokio::spawn({
        let (server, handle) = (server.clone(), you.handle.clone());
        async move { server.serve(handle).await }
    });
    let session = async {
        tokio::time::timeout(SETUP_DEADLINE, introduce(&you.handle, &cast))
            .await
            .map_err(|_| Failure::new(Code::Error, anyhow::anyhow!("the demo's bots did not answer in time")))??;
        let me = you.handle.peer_id();
        for (bot, node) in &cast {
            tokio::spawn(answer(node.handle.clone(), me, bot.answer));
        }
        if interactive {
            // A first run opens on the echo bot's greeting, whichever greeting came last.
            let open_on = greet(&you.handle, &cast).await.then(|| echo_peer(&cast)).flatten();
            let options = TuiOptions { runs_node: true, bell: true, open_on, ..TuiOptions::default() };
            kith_tui::run(&you_home.socket_path(), options).await.map_err(|e| Failure::new(Code::Error, e))
        } else {
            chat(&you.handle, &you_home).await
        }
    };
    // A signal ends the session wherever it is (the interface restores the terminal
    // as it is dropped); the nodes then stop as after a normal end.
    let result = tokio::select! {
        result = session => result,
        () = stopped(stop) => Ok(()),
    };
    you.handle.shutdown().await;
    for (_, node) in &cast {
        node.handle.shutdown().await;
    }
    serving.abort();
    for node in std::iter::once(you).chain(cast.into_iter().map(|(_, node)| node)) {
        let _ = tokio::time::timeout(Duration::from_secs(10), node.stopped).await;
    }
    // The socket and the lock go once the nodes have stopped.
    let _ = serving.await;
    drop(server);
    result
}

/// An unencrypted identity in `root` (created once; reused on later runs).
fn prepare(root: PathBuf, name: &str) -> Result<(Home, Identity)> {
    let home = Home::at(root);
    home.ensure().map_err(anyhow::Error::from)?;
    let path = home.keystore_path();
    let identity = if path.exists() {
        keystore::load(&path, None).map_err(anyhow::Error::from)?
    } else {
        let identity = Identity::generate();
        keystore::create(&path, &identity, Protection::Unencrypted).map_err(anyhow::Error::from)?;
        kith_p2p::data::init_home_files(&home, &identity.peer_id(), Some(name)).map_err(anyhow::Error::from)?;
        identity
    };
    Ok((home, identity))
}

async fn start(home: &Home, identity: Identity, name: &str) -> Result<node::Started> {
    let store = kith_p2p::data::open_store(home).map_err(anyhow::Error::from)?;
    let config = NodeConfig {
        identity,
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().map_err(anyhow::Error::from)?],
        bootstrap: Vec::new(),
        relays: Vec::new(),
        mdns: false,
        display_name: Some(name.to_owned()),
        read_receipts: true,
        presence: true,
        timers: Timers::default(),
        files: Some(home.files_config(kith_p2p::files::DEFAULT_AUTO_DOWNLOAD_MAX)),
        key_ring: Some(home.key_ring_path()),
    };
    Ok(node::start(config, store).await.map_err(anyhow::Error::from)?)
}

/// Make every bot your contact (each through its own invite) and put the group bots
/// in the demo group with you. Idempotent, so a demo with `--home` can run again.
async fn introduce(you: &NodeHandle, cast: &[(&Bot, node::Started)]) -> Result {
    let me = you.peer_id();
    for (bot, node) in cast {
        if !is_accepted(you.store(), &node.handle.peer_id()) {
            let invite = node.handle.invite().await.map_err(anyhow::Error::from)?;
            you.add_invite(invite, Some(bot.name.to_owned())).await.map_err(anyhow::Error::from)?;
        }
    }
    for (_, node) in cast {
        let bot = node.handle.peer_id();
        settled(|| is_accepted(you.store(), &bot) && is_accepted(node.handle.store(), &me)).await;
    }
    let groups = you.store().groups().list().map_err(anyhow::Error::from)?;
    if !groups.iter().any(|g| g.name == GROUP) {
        you.group(GroupChange::Create { name: GROUP.to_owned() }).await.map_err(anyhow::Error::from)?;
        for bot in &GROUP_BOTS {
            let change = GroupChange::Add { group: GROUP.to_owned(), contact: bot.name.to_owned() };
            you.group(change).await.map_err(anyhow::Error::from)?;
        }
    }
    for (_, node) in cast.iter().filter(|(bot, _)| bot.name != ECHO.name) {
        settled(|| node.handle.store().groups().list().is_ok_and(|groups| groups.iter().any(|g| g.name == GROUP))).await;
    }
    Ok(())
}

/// The echo bot's peer id.
fn echo_peer(cast: &[(&Bot, node::Started)]) -> Option<String> {
    cast.iter().find(|(bot, _)| bot.name == ECHO.name).map(|(_, node)| node.handle.peer_id().to_string())
}

/// On the first run, the group bots and then the echo bot say hello, so the
/// interface can open on a conversation that tells a newcomer what to do; returns
/// whether they did.
async fn greet(you: &NodeHandle, cast: &[(&Bot, node::Started)]) -> bool {
    if !is_first_run(you) {
        return false;
    }
    let greetings = [
        (GROUP_BOTS[0].name, GROUP, "Welcome to the demo group! ada turns what you write around, grace counts it."),
        (
            ECHO.name,
            "you",
            "Hi! I am the echo bot: I send back whatever you write, end-to-end encrypted. \
             Ctrl+N / Ctrl+P switch chats (the group has two more bots), F1 lists every key, Ctrl+C quits.",
        ),
    ];
    for (name, target, text) in greetings {
        let Some((_, node)) = cast.iter().find(|(bot, _)| bot.name == name) else { continue };
        let target = if target == "you" { you.peer_id().to_string() } else { target.to_owned() };
        if let Err(e) = node.handle.send(&target, text).await {
            tracing::warn!(error = %e, "a demo bot could not say hello");
        }
    }
    true
}

/// Whether this home has no messages yet (a `--home` demo run again keeps its history).
fn is_first_run(you: &NodeHandle) -> bool {
    you.store().conversations().list().is_ok_and(|all| all.iter().all(|c| c.last_lamport == 0))
}

/// Whether `store` holds `peer` as an accepted contact.
fn is_accepted(store: &Store, peer: &PeerId) -> bool {
    store.contacts().get(peer).ok().flatten().is_some_and(|c| c.state == ContactState::Accepted)
}

/// Returns once `done` holds, checking every 20 ms (the caller bounds the wait).
async fn settled(done: impl Fn() -> bool) {
    while !done() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The line mode: stdin lines to the echo bot, its answers to stdout.
async fn chat(you: &NodeHandle, home: &Home) -> Result {
    println!("kith demo: you are {}", you.peer_id());
    println!("chatting end-to-end encrypted with a local echo bot. Type and press Enter; Ctrl-D quits.");
    println!("(in another terminal: kith --home {} history echo)", home.root().display());
    let mut events = you.subscribe();
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut outstanding = 0usize;
    let mut stdin_open = true;
    let drain = tokio::time::sleep(Duration::from_secs(u64::MAX / 4));
    tokio::pin!(drain);
    loop {
        if !stdin_open && outstanding == 0 {
            break;
        }
        tokio::select! {
            line = lines.next_line(), if stdin_open => match line {
                Ok(Some(text)) if text.trim().is_empty() => {}
                Ok(Some(text)) => match you.send(ECHO.name, &text).await {
                    Ok(_) => outstanding += 1,
                    Err(e) => eprintln!("not sent: {e}"),
                },
                _ => {
                    stdin_open = false;
                    drain.as_mut().reset(tokio::time::Instant::now() + DRAIN_DEADLINE);
                }
            },
            event = events.recv() => match event {
                Ok(Event::MessageReceived { message }) if message.direction == Direction::Incoming && message.peer.is_some() => {
                    println!("echo> {}", crate::output::sanitized(&message.text));
                    let _ = std::io::stdout().flush();
                    outstanding = outstanding.saturating_sub(1);
                }
                Err(broadcast::error::RecvError::Closed) => break,
                _ => {}
            },
            _ = &mut drain => break,
        }
    }
    println!("bye");
    Ok(())
}

/// A bot: answers each of your messages where you wrote it (1:1 or the group), and
/// nobody else's, so bots never talk to each other forever.
async fn answer(bot: NodeHandle, you: PeerId, reply: fn(&str) -> String) {
    let mut events = bot.subscribe();
    let you = you.to_string();
    while let Ok(event) = events.recv().await {
        if let Event::MessageReceived { message } = event
            && message.direction == Direction::Incoming
            && message.author == you
        {
            let target = where_to_answer(&message);
            if let Err(e) = bot.send(&target, &reply(&message.text)).await {
                tracing::warn!(error = %e, "a demo bot could not answer");
            }
        }
    }
}

/// The conversation to answer `message` in: its 1:1 peer, else its group.
fn where_to_answer(message: &MessageView) -> String {
    message.peer.clone().unwrap_or_else(|| message.conversation.clone())
}
