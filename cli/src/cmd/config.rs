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
                let mut all = serde_json::Map::new();
                for key in kith_p2p::config::KEYS {
                    all.insert(key.to_owned(), config.get(key).map_err(Failure::usage)?);
                }
                output::json(&all)
            } else {
                output::line(config.to_toml().trim_end())
            }
        }
    }
}
