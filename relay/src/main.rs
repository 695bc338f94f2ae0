//! The `kith-relay` binary: parses the command line and maps the outcome to an exit
//! code (0 success, 1 error, 2 usage, 78 config; [`cli::exit_code`]). The work is in
//! [`kith_relay::cli`].

use std::process::ExitCode;

use clap::Parser;
use kith_relay::cli::{self, Cli};

fn main() -> ExitCode {
    let args = Cli::parse();
    match cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Output cut short by a closed pipe (`kith-relay id | head`) is not a failure.
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS;
            }
            eprintln!("kith-relay: {e:#}");
            ExitCode::from(cli::exit_code(&e))
        }
    }
}
