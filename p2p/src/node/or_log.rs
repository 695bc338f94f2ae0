//! Failures the node can do nothing more about, logged with what was being done
//! instead of dropped silently.

/// Logs a failed operation with `what` it was (a warning), dropping its value. For
/// best-effort work whose failure changes nothing the caller could do, e.g. cleaning
/// up an outbox entry that is already refused.
pub(crate) trait OrLog {
    /// Logs the error, if any: "`what` failed: `error`".
    fn or_log(self, what: &'static str);
}

impl<T, E: std::fmt::Display> OrLog for Result<T, E> {
    fn or_log(self, what: &'static str) {
        if let Err(error) = self {
            tracing::warn!(%error, "{what} failed");
        }
    }
}
