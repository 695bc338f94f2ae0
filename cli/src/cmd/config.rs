//! `kith config show|path`.

use crate::args::{ConfigCommand, Global};
use crate::failure::Result;
use crate::output;

pub(crate) fn run(global: &Global, command: ConfigCommand) -> Result {
    let home = super::home(global)?;
    match command {
        ConfigCommand::Path => output::line(home.config_path().display()),
        ConfigCommand::Show(out) => {
            let config = super::load_config(&home)?;
            if out.json {
                let strings = |addrs: &[kith_p2p::libp2p::Multiaddr]| {
                    addrs.iter().map(ToString::to_string).collect::<Vec<_>>()
                };
                output::json(&serde_json::json!({
                    "listen": strings(&config.listen),
                    "bootstrap": strings(&config.bootstrap),
                    "relays": strings(&config.relays),
                    "mdns": config.mdns,
                    "display_name": config.display_name,
                    "read_receipts": config.read_receipts,
                    "notify_command": config.notify_command,
                }))
            } else {
                output::line(config.to_toml().trim_end())
            }
        }
    }
}
