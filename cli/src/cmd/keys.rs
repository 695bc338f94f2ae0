//! `kith keys`: our end-to-end key (show, rotate).

use kith_p2p::control::Request;
use kith_p2p::views::KeysView;

use super::net::call;
use super::print;
use crate::args::{Global, KeysCommand};
use crate::failure::Result;
use crate::output;

/// Runs `kith keys show|rotate`.
pub(crate) fn run(global: &Global, command: KeysCommand) -> Result {
    let home = super::home(global)?;
    let (request, json, rotating) = match command {
        KeysCommand::Show(flag) => (Request::Keys {}, flag.json, false),
        KeysCommand::Rotate(flag) => (Request::RotateKey {}, flag.json, true),
    };
    let result = call(&home, request)?;
    if json {
        return output::json(&result);
    }
    let keys: KeysView = print::view(result)?;
    output::rows(&[
        ("e2e key", keys.e2e_public.clone()),
        ("version", when(keys.version)),
        ("expires", when(keys.expires_ms)),
    ])?;
    for k in &keys.retired {
        output::line(format!("rotated out: {} (opens mail until {})", k.e2e_public, when(k.wiped_at_ms)))?;
    }
    if rotating {
        output::line("your contacts are told the new key; until it reaches them, mail to the old one still opens")?;
    }
    Ok(())
}

/// A time in ms since the epoch as UTC, `-` for 0.
fn when(ms: u64) -> String {
    if ms == 0 {
        return "-".into();
    }
    print::date_time(ms)
}
