//! Run the interface against a running node without the `kith` binary:
//!
//! ```text
//! cargo run -p kith-tui --example tui -- <home>/kith.sock
//! ```
//!
//! `KITH_NOTIFY` sets the notification command; `NO_COLOR` turns colours off.

use std::path::PathBuf;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let Some(socket) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: tui <control socket>");
        return ExitCode::from(2);
    };
    // A client of a running node: quitting leaves it running.
    let options = kith_tui::TuiOptions {
        no_color: false,
        notify_command: std::env::var("KITH_NOTIFY").ok(),
        bell: true,
        runs_node: false,
        display_name: std::env::var("KITH_NAME").ok(),
        open_on: None,
    };
    match kith_tui::run(&socket, options).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kith-tui: {e}");
            ExitCode::FAILURE
        }
    }
}
