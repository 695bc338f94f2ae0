//! `kith config show|path|get|set`.

use crate::args::{ConfigCommand, Global};
use crate::failure::{Failure, Result};
use crate::output;

pub(crate) fn run(global: &Global, command: ConfigCommand) -> Result {
    let home = super::home(global)?;
    match command {
        ConfigCommand::Path => output::line(home.config_path().display()),
        ConfigCommand::Get(args) => {
            let value = super::load_config(&home)?.get(&args.key).map_err(Failure::usage)?;
            match value {
                _ if args.output.json => output::json(&value),
                serde_json::Value::String(text) => output::line(text),
                serde_json::Value::Array(items) => {
                    items.iter().try_for_each(|item| output::line(item.as_str().unwrap_or_default()))
                }
                serde_json::Value::Null => Ok(()),
                other => output::line(other),
            }
        }
        ConfigCommand::Set(args) => {
            let config = super::load_config(&home)?.with(&args.key, &args.value).map_err(Failure::usage)?;
            config.save(&home.config_path())?;
            Ok(())
        }
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
