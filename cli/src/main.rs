//! `kith`: the command-line face of a kith node.
//!
//! Parsing lives in [`args`]; each command is a small function in [`cmd`] that calls
//! the libraries and returns a [`failure::Failure`] on error. `main` only turns the
//! outcome into an exit code (documented in docs/CLI.md) and treats a closed stdout
//! (`kith follow | head`) as success.

mod args;
mod cmd;
mod failure;
mod output;
mod secret;

use std::process::ExitCode;


fn main() -> ExitCode {
    let (cli, json_errors) = match args::parse() {
        Ok(parsed) => parsed,
        Err(exit) => return exit,
    };
    // The terminal interface owns the screen: it logs to a file (see cmd::tui); the
    // demo picks its own logging (it may open the interface).
    if !matches!(cli.command, None | Some(args::Command::Tui(_) | args::Command::Demo)) {
        init_logging(cli.verbose);
    }
    match cmd::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) if failure.is_broken_pipe() => ExitCode::SUCCESS,
        Err(failure) => {
            if json_errors {
                eprintln!("{}", failure.to_json_line());
            } else {
                // Errors can quote names a peer chose (an ambiguous contact, say).
                eprintln!("kith: {}", output::sanitized(&format!("{failure:#}")));
            }
            ExitCode::from(failure.code() as u8)
        }
    }
}

/// Logs go to stderr, off unless `RUST_LOG` or `-v` asks: stdout belongs to the data.
pub(crate) fn init_logging(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        // webrtc's layers warn about routine steps of every call (a DTLS server name,
        // ICE checks before the answer is in): only their errors are worth showing.
        0 => "warn,libp2p_kad=error,rtc=error,rtc_dtls=error,rtc_ice=error,webrtc=error",
        1 => "info,kith=debug,kith_p2p=debug",
        _ => "debug",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
