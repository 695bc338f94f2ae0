//! `kith manpages DIR`: the man pages, generated from the same definition as `--help`,
//! so they never drift from the binary that wrote them.

use std::path::Path;

use clap::CommandFactory as _;

use crate::args::Cli;
use crate::failure::{Code, Failure, Result};
use crate::output;

/// Writes `kith.1` and one `kith-<command>.1` per command (`kith-group-add.1` for
/// nested ones) into `dir`, creating it if needed, and says where they went.
pub(crate) fn write(dir: &Path) -> Result {
    let failed = |e: std::io::Error| Failure::new(Code::Error, anyhow::anyhow!("{}: {e}", dir.display()));
    std::fs::create_dir_all(dir).map_err(failed)?;
    clap_mangen::generate_to(Cli::command(), dir).map_err(failed)?;
    output::line(format!("man pages written to {} (try `man kith`)", dir.display()))
}
