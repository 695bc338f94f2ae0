//! The sound-device build (kith-call's `devices` feature, which the release build
//! turns on through `audio-devices`): it compiles and links against ALSA, and on a
//! machine without sound devices (CI) opening the microphone and the speaker gives a
//! typed error, never a panic. The default build leaves this code out, so this test
//! builds it: `cargo test -p kith-call --features devices --test devices` in this
//! workspace, with the same target directory (only cpal, ALSA's bindings and kith-call
//! are compiled anew).
//!
//! Needs ALSA's development files (Debian's libasound2-dev, which `.ci/run` installs)
//! and pkg-config; without them it fails under CI and elsewhere says why and skips.

#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::time::Duration;

use kith_tests::{skip_or_fail, wait_output};

#[test]
fn the_sound_device_build_compiles_and_opens_devices_or_says_why_not() {
    let test = "the_sound_device_build_compiles_and_opens_devices_or_says_why_not";
    let alsa = Command::new("pkg-config").args(["--exists", "alsa"]).status();
    if !alsa.is_ok_and(|s| s.success()) {
        return skip_or_fail(test, "ALSA's development files are missing (pkg-config alsa; Debian: libasound2-dev)");
    }
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // The build's log goes to a file: through a pipe nobody reads while waiting, a
    // long one would fill it and stall the build.
    let log = tempfile::NamedTempFile::new().unwrap();
    let child = Command::new(cargo)
        .current_dir(workspace)
        .args(["test", "--locked", "-p", "kith-call", "--features", "devices", "--test", "devices", "--", "--nocapture"])
        .stdout(std::process::Stdio::piped())
        .stderr(log.reopen().unwrap())
        .spawn()
        .unwrap();
    let out = wait_output(child, Duration::from_secs(900), "the sound-device build and its test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = std::fs::read_to_string(log.path()).unwrap_or_default();
    assert!(out.status.success(), "the device build or its test failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("test devices_open_and_run_or_say_why_not ... ok"), "{stdout}");
    // What this machine has, for the log: devices, or the typed reason there are none.
    for line in stderr.lines().filter(|l| l.starts_with("no microphone") || l.starts_with("no speaker")) {
        eprintln!("{line}");
    }
}
