//! Command-line arguments (clap derive). Only parsing here; behaviour lives in `cmd`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// kith: a terminal-first peer-to-peer messenger.
#[derive(Debug, Parser)]
#[command(name = "kith", version, about, long_about = None)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: Global,
    /// More log output on stderr (-v, -vv); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub(crate) verbose: u8,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Options every command accepts.
#[derive(Debug, Args)]
pub(crate) struct Global {
    /// The kith home (identity, database, config, control socket).
    /// Default: $KITH_HOME, else the platform data dir (e.g. ~/.local/share/kith).
    #[arg(long, global = true, value_name = "DIR")]
    pub(crate) home: Option<PathBuf>,
}

/// The `kith` commands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Create a new identity in the kith home.
    Init(InitArgs),
    /// Show this identity: peer id, E2E key, fingerprint and invite.
    Id(JsonFlag),
    /// Inspect the configuration (config.toml in the kith home).
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print a shell completion script.
    Completions {
        /// The shell to generate completions for.
        shell: clap_complete::Shell,
    },
}

/// `--json`: machine-readable output.
#[derive(Debug, Args)]
pub(crate) struct JsonFlag {
    /// Print JSON instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

/// Arguments of `kith init`.
#[derive(Debug, Args)]
pub(crate) struct InitArgs {
    /// The display name others see.
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// Store the keys unencrypted (not recommended; anyone who can read the file can be you).
    #[arg(long)]
    pub(crate) no_passphrase: bool,
    #[command(flatten)]
    pub(crate) output: JsonFlag,
}

/// `kith config ...`
#[derive(Debug, Subcommand)]
pub(crate) enum ConfigCommand {
    /// Show the effective configuration (defaults filled in).
    Show(JsonFlag),
    /// Print where config.toml lives.
    Path,
}
