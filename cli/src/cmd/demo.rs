//! `kith demo`: a working chat with nothing else running.
//!
//! Starts two real nodes on loopback in this process — yours and an echo bot — makes
//! them contacts through a one-time invite, and turns stdin into a chat: every line is
//! an end-to-end encrypted message to the bot, which answers it. Your node also serves
//! its control socket, so `kith --home <dir>/you history echo` works alongside.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use kith_p2p::control::Server;
use kith_p2p::home::Home;
use kith_p2p::identity::Identity;
use kith_p2p::keystore::{self, Protection};
use kith_p2p::kith_storage::Direction;
use kith_p2p::node::{self, Event, NodeConfig, NodeHandle, Timers};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::args::Global;
use crate::failure::Result;

/// How long the demo waits for outstanding replies after stdin closes.
const DRAIN_DEADLINE: Duration = Duration::from_secs(10);

pub(crate) fn run(global: &Global) -> Result {
    let base = global
        .home
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("kith-demo-{}", std::process::id())));
    let you = prepare(base.join("you"), "you")?;
    let bot = prepare(base.join("echo-bot"), "echo bot")?;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(chat(base, you, bot))
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
        timers: Timers::default(),
    };
    Ok(node::start(config, store).await.map_err(anyhow::Error::from)?)
}

async fn chat(base: PathBuf, (you_home, you_id): (Home, Identity), (bot_home, bot_id): (Home, Identity)) -> Result {
    let bot = start(&bot_home, bot_id, "echo bot").await?;
    let you = start(&you_home, you_id, "you").await?;
    let server = Server::bind(&you_home.socket_path()).await.map_err(anyhow::Error::from)?;
    tokio::spawn(server.serve(you.handle.clone()));

    let invite = bot.handle.invite().await.map_err(anyhow::Error::from)?;
    you.handle.add_invite(invite, Some("echo".into())).await.map_err(anyhow::Error::from)?;
    tokio::spawn(echo(bot.handle.clone()));

    println!("kith demo: you are {}", you.handle.peer_id());
    println!("chatting end-to-end encrypted with a local echo bot. Type and press Enter; Ctrl-D quits.");
    println!("(in another terminal: kith --home {} history echo)", you_home.root().display());
    let mut events = you.handle.subscribe();
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
                Ok(Some(text)) => match you.handle.send("echo", &text).await {
                    Ok(_) => outstanding += 1,
                    Err(e) => eprintln!("not sent: {e}"),
                },
                _ => {
                    stdin_open = false;
                    drain.as_mut().reset(tokio::time::Instant::now() + DRAIN_DEADLINE);
                }
            },
            event = events.recv() => match event {
                Ok(Event::MessageReceived { message }) if message.direction == Direction::Incoming => {
                    println!("echo> {}", crate::output::sanitized(&message.text));
                    let _ = std::io::stdout().flush();
                    outstanding = outstanding.saturating_sub(1);
                }
                Ok(Event::MessageStateChanged { state, .. }) => {
                    tracing::debug!(?state, "message state");
                }
                Ok(_) => {}
                Err(_) => {}
            },
            _ = &mut drain => break,
        }
    }
    you.handle.shutdown().await;
    bot.handle.shutdown().await;
    println!("bye (demo data kept in {})", base.display());
    Ok(())
}

/// The bot: answer every incoming text with "echo: <text>".
async fn echo(bot: NodeHandle) {
    let mut events = bot.subscribe();
    while let Ok(event) = events.recv().await {
        if let Event::MessageReceived { message } = event
            && message.direction == Direction::Incoming
        {
            let _ = bot.send(&message.author, &format!("echo: {}", message.text)).await;
        }
    }
}
