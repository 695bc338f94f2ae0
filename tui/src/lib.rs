//! kith's terminal interface: a ratatui client of a running kith node.
//!
//! [`run`] connects to a node's control socket and takes over the terminal until the
//! user quits. Inside, the code follows events → actions → update → render:
//!
//! - [`action`]: terminal input, node events and request results as [`Action`]s, and
//!   the [`Effect`]s the state machine asks for;
//! - [`app`]: the state ([`App`]) and the pure [`update`] function (keys, mouse,
//!   paste, node events, answers), which tests drive directly;
//! - [`input`], [`commands`] and [`complete`]: the multi-line editor with its
//!   history, the slash commands, and Tab completion;
//! - [`ui`]: [`render`], a pure function of the state (tested with ratatui's
//!   `TestBackend` and insta snapshots);
//! - [`picture`]: pictures decoded for inline previews and drawn in half-blocks, or
//!   encoded for the picture viewer when the terminal has a graphics protocol;
//! - [`graphics`]: which protocol that is, decided once at start-up (`KITH_IMAGES`);
//! - `runtime` and `terminal` (private): the tokio loop, the task that owns the
//!   control-socket connections (and gets them back after the node restarts), and
//!   the real terminal (including the OSC 52 clipboard).
//!
//! The interface never blocks on the network: requests run in their own tasks and
//! come back as actions. Logs go wherever the caller's `tracing` subscriber sends
//! them; callers must not send them to the terminal while the interface runs.

pub mod action;
pub mod app;
pub mod commands;
pub mod complete;
pub mod fuzzy;
pub mod graphics;
pub mod input;
pub mod picture;
pub mod ui;

pub mod mention;
mod qr;
mod runtime;
mod terminal;
mod text;

use std::path::Path;

pub use action::{Action, Effect, Response};
pub use kith_p2p::node::GroupChange;
pub use app::{App, Config, update};
pub use runtime::{RequestError, forward_events, local_utc_offset, request};
pub use ui::render;

/// How the interface behaves; the caller fills it from flags and config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TuiOptions {
    /// Draw without colours. The `NO_COLOR` environment variable (set and not
    /// empty) has the same effect.
    pub no_color: bool,
    /// A shell command run (`sh -c`) when a message arrives in a conversation that
    /// is not in view, with `KITH_FROM` (the sender's name; `NAME in #GROUP` for a
    /// group) and `KITH_TEXT` (the message) in its environment. Its output is discarded.
    pub notify_command: Option<String>,
    /// Ring the terminal bell when a message arrives in a conversation not in view.
    pub bell: bool,
    /// The caller runs the node for this interface (no daemon was running), so it
    /// stops when the user quits; the help says so instead of "the node keeps running".
    pub runs_node: bool,
    /// Our display name, for `@name` mentions of us in groups.
    pub display_name: Option<String>,
    /// The conversation (a contact's peer id or a group's id) to open first when it
    /// is listed as the interface starts; otherwise it opens the first of the list.
    /// Used once: later, with nothing open, the first of the list opens.
    pub open_on: Option<String>,
}

/// Why the interface stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TuiError {
    /// Connecting to the node failed; [`kith_p2p::control::ClientError::NoNode`]
    /// when none is running.
    #[error(transparent)]
    Node(kith_p2p::control::ClientError),
    /// Reading from or drawing to the terminal failed.
    #[error("terminal: {0}")]
    Terminal(#[source] std::io::Error),
}

/// Connect to the node whose control socket is `socket`, subscribe to its events
/// and run the interface on the terminal until the user quits.
///
/// The terminal is put into raw mode with the alternate screen and mouse capture,
/// and restored on return and on panic. Must run inside a tokio runtime.
///
/// Nothing may write to the terminal meanwhile: install a `tracing` subscriber that
/// writes to a file (or none) before calling this, never one on stderr.
///
/// # Errors
///
/// [`TuiError::Node`] when the control socket cannot be reached
/// ([`ClientError::NoNode`](kith_p2p::control::ClientError::NoNode) if no node
/// runs); [`TuiError::Terminal`] when the terminal fails. Losing the node while
/// running is not an error: the interface says so, keeps running, and reconnects
/// (with backoff) when the node is back, e.g. after a daemon restart.
pub async fn run(socket: &Path, options: TuiOptions) -> Result<(), TuiError> {
    runtime::run(socket, options).await
}
