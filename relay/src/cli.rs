//! The `kith-relay` command line: clap arguments and the commands behind them.
//!
//! ```text
//! kith-relay --config FILE            run the relay (same as `kith-relay run --config FILE`)
//! kith-relay check-config --config FILE
//!                                     validate the config; create and open nothing
//! kith-relay init-config [PATH]       write the example config (default ./kith-relay.toml)
//! kith-relay id --config FILE         print the peer id and the addresses to pin
//! ```
//!
//! Exit codes ([`exit_code`]): 0 success, 1 error, 2 usage, 78 (`EX_CONFIG` of
//! sysexits.h) for a config that is missing or wrong, which no restart can mend —
//! the systemd unit's `RestartPreventExitStatus=78` stops retrying on it.
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

use crate::config::{ConfigError, EXAMPLE_CONFIG, LogFormat, RelayConfig};
use crate::identity::{self, Origin};
use crate::server::{Relay, StartError};

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
    /// Check the config file (every key, listen addresses included) and an existing
    /// identity key, without creating a key or opening the stores; exit 78 if wrong.
    CheckConfig,
}

/// Exit code: success.
pub const EXIT_OK: u8 = 0;
/// Exit code: an error other than the ones below (a store, a port in use...).
pub const EXIT_FAILURE: u8 = 1;
/// Exit code: the command line is wrong.
pub const EXIT_USAGE: u8 = 2;
/// Exit code: the config file is missing, unreadable or invalid (`EX_CONFIG`).
pub const EXIT_CONFIG: u8 = 78;

/// No `--config` was given to a command that needs one.
#[derive(Debug, thiserror::Error)]
#[error("no config file given: pass --config FILE (create one with `kith-relay init-config`)")]
#[non_exhaustive]
pub struct NoConfigGiven;

/// The exit code for an error [`run`] returned: [`EXIT_CONFIG`] when the config is
/// at fault, [`EXIT_USAGE`] for a missing `--config`, else [`EXIT_FAILURE`].
pub fn exit_code(error: &anyhow::Error) -> u8 {
    for cause in error.chain() {
        if cause.is::<NoConfigGiven>() {
            return EXIT_USAGE;
        }
        if cause.is::<ConfigError>() {
            return EXIT_CONFIG;
        }
        // A key file that is not a usable key: no restart mends it.
        if let Some(crate::identity::IdentityError::Malformed { .. } | crate::identity::IdentityError::NotEd25519 { .. }) =
            cause.downcast_ref::<crate::identity::IdentityError>()
        {
            return EXIT_CONFIG;
        }
        // A validated config never gets these from `Relay::start`; a config built
        // in code could.
        if let Some(StartError::BadAddress { .. } | StartError::BadMember { .. }) =
            cause.downcast_ref::<StartError>()
        {
            return EXIT_CONFIG;
        }
    }
    EXIT_FAILURE
}

/// Runs the parsed command line. Errors carry context for the operator.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command.unwrap_or(Command::Run) {
        Command::InitConfig { path } => init_config(&path),
        Command::Id => {
            let config = load_config(cli.config.as_deref())?;
            print_id(&config)
        }
        Command::CheckConfig => check_config(cli.config.as_deref()),
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

/// Loads and validates the config at `path`. An error names the file once: a read
/// error already does, a parse error gets it in front.
fn load_config(path: Option<&Path>) -> anyhow::Result<RelayConfig> {
    let Some(path) = path else {
        return Err(NoConfigGiven.into());
    };
    match RelayConfig::load(path) {
        Ok(config) => Ok(config),
        Err(e @ ConfigError::Io { .. }) => Err(e.into()),
        Err(e) => Err(anyhow::Error::new(e).context(path.display().to_string())),
    }
}

/// `check-config`: everything `run` would find wrong in the config, without its
/// side effects. An existing identity key is read (a copied or damaged key would
/// stop the start); a missing one is only mentioned, since `run` creates it.
fn check_config(path: Option<&Path>) -> anyhow::Result<()> {
    let config = load_config(path)?;
    let identity_path = config.identity_path();
    match identity::load_existing(&identity_path)? {
        Some(_) => {}
        None => eprintln!(
            "note: no identity key at {} yet; `kith-relay run` or `id` creates it",
            identity_path.display()
        ),
    }
    let mut out = io::stdout().lock();
    // `load_config` returned a config, so there is a path.
    let shown = path.map(|p| p.display().to_string()).unwrap_or_default();
    writeln!(out, "{shown}: ok")?;
    out.flush()?;
    Ok(())
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
    for (key, addrs) in [
        ("listen", &config.listen),
        ("external_addresses", &config.external_addresses),
    ] {
        for (i, text) in addrs.iter().enumerate() {
            if has_port_zero(text) {
                eprintln!(
                    "warning: `{key}[{i}]` = {text:?} has port 0: the system picks a new port \
                     at each start, so peers cannot dial it; set a fixed port to pin this address"
                );
            }
        }
    }
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

/// Whether a multiaddr text has a TCP or UDP port 0 (a port picked at each start).
fn has_port_zero(text: &str) -> bool {
    text.parse::<Multiaddr>().is_ok_and(|addr| {
        addr.iter()
            .any(|p| matches!(p, Protocol::Tcp(0) | Protocol::Udp(0)))
    })
}

/// Logs to stderr: `RUST_LOG` sets the filter (default `info`), `format` the shape.
fn init_logging(format: LogFormat) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;

    // webrtc's layers warn about routine steps of every forwarded connection (ICE
    // checks before the answer, SRTP before DTLS is through): only their errors count.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,rtc=error,rtc_dtls=error,rtc_ice=error,webrtc=error"));
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
