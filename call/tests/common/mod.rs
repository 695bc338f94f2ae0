//! What the media tests share: a sink that keeps what it is given.

#![allow(dead_code, clippy::unwrap_used)]

use std::sync::{Arc, Mutex};

use kith_call::audio::{AudioError, Frame, Sink};

/// A sink that keeps every frame it is given, readable while the session runs.
#[derive(Clone, Default)]
pub(crate) struct Capture(pub(crate) Arc<Mutex<Vec<i16>>>);

impl Sink for Capture {
    fn write(&mut self, frame: &Frame) -> Result<(), AudioError> {
        self.0.lock().unwrap().extend_from_slice(frame);
        Ok(())
    }
    fn finish(self: Box<Self>) -> Result<(), AudioError> {
        Ok(())
    }
}

impl Capture {
    /// Samples kept so far.
    pub(crate) fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    /// Everything kept from sample `from` on.
    pub(crate) fn since(&self, from: usize) -> Vec<i16> {
        self.0.lock().unwrap()[from..].to_vec()
    }
}
