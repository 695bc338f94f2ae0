//! `kith daemon`: run the node and serve the control socket until told to stop.

use std::io::Write as _;
use std::time::Duration;

use kith_p2p::config::Config;
use kith_p2p::control::{Server, ServeError};
use kith_p2p::home::Home;
use kith_p2p::identity::Identity;
use kith_p2p::libp2p::Multiaddr;
use kith_p2p::node::{self, NodeConfig};

use crate::args::{DaemonArgs, Global};
use crate::failure::{Code, Failure, Result};

pub(crate) fn run(global: &Global, args: DaemonArgs) -> Result {
    let home = super::home(global)?;
    let identity = super::load_identity(&home)?;
    let config = super::load_config(&home)?;
    let node_config = node_config(identity, &config, &args, &home)?;
    // One thread by default: the node's event loop, its connections and its control
    // clients hand work to each other all the time, and on one thread a hand-off is
    // a queue push where between worker threads it is a wake-up of another thread
    // (durable writes have their own thread, blocking work tokio's blocking pool).
    // Measured in docs/PERFORMANCE.md (*The daemon on one thread*).
    let rt = match super::knobs::daemon_workers() {
        None => tokio::runtime::Builder::new_current_thread().enable_all().build()?,
        Some(workers) => tokio::runtime::Builder::new_multi_thread().worker_threads(workers).enable_all().build()?,
    };
    rt.block_on(serve(home, node_config))
}

fn parse_addrs(list: &[String], flag: &str) -> Result<Vec<Multiaddr>> {
    list.iter()
        .map(|a| a.parse().map_err(|e| Failure::usage(format!("--{flag} {a:?}: {e}"))))
        .collect()
}

/// The node's settings: config.toml, overridden or extended by flags.
pub(crate) fn node_config(identity: Identity, config: &Config, args: &DaemonArgs, home: &Home) -> Result<NodeConfig> {
    let listen = if args.listen.is_empty() { config.listen.clone() } else { parse_addrs(&args.listen, "listen")? };
    let mut bootstrap = config.bootstrap.clone();
    bootstrap.extend(parse_addrs(&args.bootstrap, "bootstrap")?);
    let timers = super::knobs::timers();
    Ok(NodeConfig {
        identity,
        listen,
        bootstrap,
        relays: config.relays.clone(),
        mdns: config.mdns && !args.no_mdns,
        display_name: config.display_name.clone(),
        read_receipts: config.read_receipts,
        presence: config.presence,
        timers,
        files: Some(home.files_config(config.auto_download_max)),
        key_ring: Some(home.key_ring_path()),
    })
}

/// Bind the control socket, open the store and start the node: what `kith daemon`
/// and the in-process node of `kith tui` share.
pub(crate) async fn start(home: &Home, config: NodeConfig) -> Result<(Server, node::Started)> {
    let socket = home.socket_path();
    // The socket is made 0600 just after it is bound: until then only the home's
    // own mode (0700, tightened here if someone loosened it) keeps others out.
    home.ensure().map_err(|e| Failure::new(Code::Error, e))?;
    // Bind first: a live socket means another daemon owns this home.
    let server = Server::bind(&socket, &home.lock_path()).await.map_err(|e| match e {
        ServeError::InUse(_) => Failure::new(
            Code::Error,
            anyhow::anyhow!("a kith node is already running on {}", home.root().display()),
        ),
        other => Failure::new(Code::Error, other),
    })?;
    let store = kith_p2p::data::open_store(home).map_err(|e| {
        Failure::new(Code::Error, anyhow::anyhow!("{e}; is another kith node using this home?"))
    })?;
    let started = node::start(config, store).await.map_err(|e| Failure::new(Code::Error, e))?;
    Ok((server, started))
}

async fn serve(home: Home, config: NodeConfig) -> Result {
    let socket = home.socket_path();
    let peer_id = config.identity.peer_id();
    let (server, started) = start(&home, config).await?;
    let addrs: Vec<String> = started.listen_addrs.iter().map(ToString::to_string).collect();
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "ready {peer_id} {}", addrs.join(" "))?;
        out.flush()?;
    }
    tracing::info!(%peer_id, socket = %socket.display(), "daemon ready");

    let handle = started.handle.clone();
    let mut stopped = started.stopped;
    let ended = tokio::select! {
        _ = server.serve(handle.clone()) => None,
        _ = shutdown_signal() => {
            tracing::info!("signal received; shutting down");
            handle.shutdown().await;
            None
        }
        ended = &mut stopped => Some(ended),
    };
    // Wait (bounded) for the actor to flush and stop before the socket and the home's
    // lock go with `server`, at the end of this function.
    let ended = match ended {
        Some(ended) => ended,
        None => match tokio::time::timeout(Duration::from_secs(10), stopped).await {
            Ok(ended) => ended,
            Err(_) => return Err(Failure::new(Code::Error, anyhow::anyhow!("the node did not stop within 10 s"))),
        },
    };
    ended.map_err(|e| Failure::new(Code::Error, anyhow::anyhow!("the node failed: {e}")))
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
