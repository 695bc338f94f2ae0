//! The `kith-relay` command line: clap arguments and the commands behind them.
//!
//! ```text
//! kith-relay --config FILE            run the relay (same as `kith-relay run --config FILE`)
//! kith-relay init-config [PATH]       write the example config (default ./kith-relay.toml)
//! kith-relay id --config FILE         print the peer id and the addresses to pin
//! ```
//!
//! `run` prints exactly one line to stdout once it listens:
//! `ready <peer id> <multiaddr> [<multiaddr>...]`, the concrete listen addresses (real
//! ports when the config says 0). Everything else goes to stderr through `tracing`.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use libp2p::Multiaddr;
use libp2p::multiaddr::Protocol;

use crate::config::{EXAMPLE_CONFIG, LogFormat, RelayConfig};
use crate::identity::{self, Origin};
use crate::server::Relay;

/// Where `init-config` writes when no path is given.
pub const DEFAULT_CONFIG_PATH: &str = "kith-relay.toml";

/// kith relay node: DHT server, circuit relay, AutoNAT and store-and-forward mailbox
/// for kith peers.
#[derive(Debug, Parser)]
#[command(name = "kith-relay", version)]
pub struct Cli {
    /// The relay's config file (TOML; see `kith-relay init-config`).
    #[arg(long, short = 'c', value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// What to do (default: run).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the relay until SIGINT or SIGTERM (the default command).
    Run,
    /// Write a commented example config listing every key with its default.
    InitConfig {
        /// Where to write it; an existing file is never overwritten.
        #[arg(value_name = "PATH", default_value = DEFAULT_CONFIG_PATH)]
        path: PathBuf,
    },
    /// Print the relay's peer id, then its listen (and external) addresses with
    /// `/p2p/<peer id>`, creating the identity key if it does not exist yet.
    Id,
}

/// Runs the parsed command line. Errors carry context for the operator.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command.unwrap_or(Command::Run) {
        Command::InitConfig { path } => init_config(&path),
        Command::Id => {
            let config = load_config(cli.config.as_deref())?;
            print_id(&config)
        }
        Command::Run => {
            let config = load_config(cli.config.as_deref())?;
            init_logging(config.log.format);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            runtime.block_on(serve(config))
        }
    }
}

fn load_config(path: Option<&Path>) -> anyhow::Result<RelayConfig> {
    let Some(path) = path else {
        bail!(
            "no config file given: pass --config FILE (create one with `kith-relay init-config`)"
        );
    };
    Ok(RelayConfig::load(path)?)
}

fn init_config(path: &Path) -> anyhow::Result<()> {
    let mut file = match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => bail!(
            "{} already exists; refusing to overwrite it (remove it or pick another path)",
            path.display()
        ),
        Err(e) => return Err(e).with_context(|| format!("cannot create {}", path.display())),
    };
    file.write_all(EXAMPLE_CONFIG.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

fn print_id(config: &RelayConfig) -> anyhow::Result<()> {
    let (keypair, origin) = identity::load_or_create(&config.identity_path())?;
    if origin == Origin::Created {
        eprintln!(
            "created a new relay identity in {}",
            config.identity_path().display()
        );
    }
    let peer_id = keypair.public().to_peer_id();
    let mut out = io::stdout().lock();
    writeln!(out, "{peer_id}")?;
    for (key, addrs) in [
        ("listen", &config.listen),
        ("external_addresses", &config.external_addresses),
    ] {
        for (i, text) in addrs.iter().enumerate() {
            let addr: Multiaddr = text
                .parse()
                .with_context(|| format!("config `{key}[{i}]`: {text:?} is not a multiaddr"))?;
            writeln!(out, "{}", addr.with(Protocol::P2p(peer_id)))?;
        }
    }
    out.flush()?;
    Ok(())
}

/// Logs to stderr: `RUST_LOG` sets the filter (default `info`), `format` the shape.
fn init_logging(format: LogFormat) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;

    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr);
    // A second initialisation (tests calling `run` twice) is harmless.
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        _ => builder.with_ansi(io::stderr().is_terminal()).try_init(),
    };
}

async fn serve(config: RelayConfig) -> anyhow::Result<()> {
    let identity_path = config.identity_path();
    let (keypair, origin) = identity::load_or_create(&identity_path)?;
    if origin == Origin::Created {
        tracing::info!(path = %identity_path.display(), "created a new relay identity");
    }
    let relay = Relay::start(config, keypair)
        .await
        .context("cannot start the relay")?;

    // Watch the signals before announcing readiness: a supervisor (or test) may
    // signal as soon as it reads the ready line, and an unwatched SIGINT or SIGTERM
    // would kill the process without the graceful shutdown.
    let shutdown = shutdown_signal();
    let mut line = format!("ready {}", relay.peer_id());
    for addr in relay.listen_addrs() {
        line.push(' ');
        line.push_str(&addr.to_string());
    }
    {
        let mut out = io::stdout().lock();
        writeln!(out, "{line}").context("cannot write the ready line")?;
        out.flush().context("cannot write the ready line")?;
    }

    relay.run(shutdown).await?;
    Ok(())
}

/// Starts watching SIGINT and SIGTERM (Ctrl-C elsewhere) at once; the future
/// completes on the first of them.
fn shutdown_signal() -> impl Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{Signal, SignalKind, signal};
        // Registered here, not when first polled.
        let watch = |kind: SignalKind, name: &'static str| -> Option<Signal> {
            signal(kind)
                .inspect_err(|e| tracing::warn!(error = %e, signal = name, "cannot watch signal"))
                .ok()
        };
        let mut term = watch(SignalKind::terminate(), "SIGTERM");
        let mut int = watch(SignalKind::interrupt(), "SIGINT");
        async move {
            tokio::select! {
                _ = next(&mut term) => tracing::info!("SIGTERM received"),
                _ = next(&mut int) => tracing::info!("SIGINT received"),
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("Ctrl-C received");
        }
    }
}

/// The next delivery of `signal`; never, if it could not be watched.
#[cfg(unix)]
async fn next(signal: &mut Option<tokio::signal::unix::Signal>) {
    match signal {
        Some(signal) => {
            signal.recv().await;
        }
        None => std::future::pending().await,
    }
}
