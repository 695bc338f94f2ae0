//! The sound devices (feature `devices`): on a machine with them, a microphone and a
//! speaker open and run a call's worth of frames; on one without, each is a typed
//! error, never a panic. Run with `cargo test -p kith-call --features devices`.

#![cfg(feature = "devices")]
#![allow(clippy::unwrap_used)]

use kith_call::audio::{Sink, Source};
use kith_call::device::{DeviceError, microphone, speaker};

#[test]
fn devices_open_and_run_or_say_why_not() {
    match microphone() {
        Ok(mut mic) => {
            for _ in 0..10 {
                let _ = mic.next_frame();
            }
        }
        Err(e) => {
            assert!(matches!(e, DeviceError::NoDevice(_) | DeviceError::Device(..)));
            eprintln!("no microphone here: {e}");
        }
    }
    match speaker() {
        Ok(mut out) => {
            for _ in 0..10 {
                out.write(&[0; 960]).unwrap();
            }
            Box::new(out).finish().unwrap();
        }
        Err(e) => eprintln!("no speaker here: {e}"),
    }
}

