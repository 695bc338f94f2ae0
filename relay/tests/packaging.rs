//! The systemd unit and the container file agree with the binary and each other:
//! one config path, the config-error exit code that stops restarts, and
//! documentation that the install steps put where the unit points.
#![allow(clippy::unwrap_used)]

use std::path::Path;

fn read(relative: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The value of the first `Key=` line of a unit file.
fn unit_value<'a>(unit: &'a str, key: &str) -> &'a str {
    unit.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key}= in the unit"))
}

/// The word after `--config` in a command line.
fn config_arg(command: &str) -> &str {
    let mut words = command.split(|c: char| c.is_whitespace() || c == ',' || c == '"');
    words.find(|w| *w == "--config").unwrap();
    words.find(|w| !w.is_empty()).unwrap()
}

#[test]
fn unit_and_container_use_one_config_path() {
    let unit = read("kith-relay.service");
    let container = read("Containerfile");
    let from_unit = config_arg(unit_value(&unit, "ExecStart"));
    let entrypoint = container
        .lines()
        .find_map(|l| l.strip_prefix("ENTRYPOINT "))
        .unwrap();
    assert_eq!(config_arg(entrypoint), from_unit);
    // The image puts its built-in config there.
    assert!(
        container
            .lines()
            .any(|l| l.starts_with("COPY ") && l.ends_with(&format!(" {from_unit}"))),
        "no COPY to {from_unit}"
    );
}

#[test]
fn the_unit_stops_restarting_on_a_config_error() {
    let unit = read("kith-relay.service");
    assert_eq!(unit_value(&unit, "Restart"), "on-failure");
    assert_eq!(
        unit_value(&unit, "RestartPreventExitStatus"),
        kith_relay::cli::EXIT_CONFIG.to_string()
    );
}

#[test]
fn the_unit_documentation_is_installed_by_its_own_steps() {
    let unit = read("kith-relay.service");
    let doc = unit_value(&unit, "Documentation");
    let installed = doc.strip_prefix("file://").unwrap();
    // One of the install steps at the top of the unit puts a file of the repository
    // at exactly that path, and that file exists.
    let step = unit
        .lines()
        .filter_map(|l| l.strip_prefix("#"))
        .find(|l| l.contains("install ") && l.trim_end().ends_with(installed))
        .unwrap_or_else(|| panic!("no install step for {installed}"));
    let source = step.split_whitespace().rev().nth(1).unwrap();
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    assert!(workspace.join(source).is_file(), "{source} does not exist");
}
