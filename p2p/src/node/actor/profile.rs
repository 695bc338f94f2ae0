//! Our profile in the actor: changing it renames us in the peer record and in what
//! we send, and queues it for every contact.

use super::{Actor, AfterFlush};
use crate::node::profiles::{self, ProfileChange};
use crate::node::{Event, NodeError};
use crate::views::ProfileView;

impl Actor {
    /// Applies `change` to our profile and shares it (durable once flushed).
    pub(super) fn set_profile(&mut self, change: ProfileChange) -> Result<ProfileView, NodeError> {
        let configured = self.config.display_name.clone();
        let profile = profiles::set_mine(&self.store, &self.config.identity, change, configured.as_deref())?;
        if profile.name != self.config.display_name {
            self.config.display_name = profile.name.clone();
            self.directory.record_changed();
            self.publish_record();
        }
        let told = profiles::share_with_all(&self.store, &self.me)?;
        tracing::debug!(contacts = told, "profile changed");
        let view = profiles::view(&self.store, &self.me, false)?;
        self.flusher.after_flush(AfterFlush::ReloadOutbox);
        self.flusher.after_flush(AfterFlush::Events(vec![Event::ProfileChanged { profile: view.clone() }]));
        Ok(view)
    }
}
