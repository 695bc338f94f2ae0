//! `kith relay add|remove|list`: the relays this user pins (config.toml `relays`).
//!
//! Pinned relays hold our mail while we are offline and are advertised in invites and
//! peer records. The list lives in config.toml; a running daemon is told at once.

use kith_p2p::control::{Client, ClientError, Request};
use kith_p2p::libp2p::Multiaddr;
use kith_p2p::libp2p::multiaddr::Protocol;
use serde_json::json;

use crate::args::{Global, RelayCommand};
use crate::failure::{Failure, Result};
use crate::output;

pub(crate) fn run(global: &Global, command: RelayCommand) -> Result {
    let home = super::home(global)?;
    let mut config = super::load_config(&home)?;
    let (changed, json) = match command {
        RelayCommand::List(out) => (false, out.json),
        RelayCommand::Add(args) => {
            let addr = parse_relay(&args.multiaddr)?;
            let new = !config.relays.contains(&addr);
            if new {
                config.relays.push(addr);
            }
            (new, args.output.json)
        }
        RelayCommand::Remove(args) => {
            let addr = parse_relay(&args.multiaddr)?;
            let before = config.relays.len();
            config.relays.retain(|r| r != &addr);
            if config.relays.len() == before {
                return Err(Failure::usage(format!("{addr} is not a pinned relay")));
            }
            (true, args.output.json)
        }
    };
    if changed {
        config.save(&home.config_path()).map_err(|e| Failure::new(crate::failure::Code::Error, e))?;
        tell_daemon(&home, &config.relays)?;
    }
    let list: Vec<String> = config.relays.iter().map(ToString::to_string).collect();
    if json {
        output::json(&json!({ "relays": list }))
    } else if list.is_empty() {
        output::line("no relays pinned (add one with `kith relay add <MULTIADDR>`; two or more are recommended)")
    } else {
        output::line(list.join("\n"))
    }
}

/// A relay address must name the relay: it ends in `/p2p/<relay peer id>`.
fn parse_relay(text: &str) -> Result<Multiaddr> {
    let addr: Multiaddr = text.parse().map_err(|e| Failure::usage(format!("{text:?} is not a multiaddr: {e}")))?;
    match addr.iter().last() {
        Some(Protocol::P2p(_)) => Ok(addr),
        _ => Err(Failure::usage(format!("{addr} must end in /p2p/<relay peer id> (see `kith-relay id`)"))),
    }
}

/// If a daemon runs, switch it to the new list now; otherwise it reads config.toml at
/// start.
fn tell_daemon(home: &kith_p2p::home::Home, relays: &[Multiaddr]) -> Result {
    let relays: Vec<String> = relays.iter().map(ToString::to_string).collect();
    super::net::runtime()?.block_on(async {
        match Client::connect(&home.socket_path()).await {
            Ok(mut client) => {
                client.request(&Request::SetRelays { relays }).await.map_err(super::net::client_failure)?;
                Ok(())
            }
            Err(ClientError::NoNode) => Ok(()),
            Err(e) => Err(super::net::client_failure(e)),
        }
    })
}
