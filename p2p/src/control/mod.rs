//! The local control socket: newline-delimited JSON between a node and its clients.
//!
//! A client writes one request per line, `{"id": <any>, "method": "...", "params": {...}}`,
//! and gets one line back with the same `id` and either `result` or
//! `error: {code, message}`. `{"method": "subscribe"}` turns the connection into an
//! event stream as well: `{"event": {...}}` lines arrive between responses.
//! docs/API.md is the reference.

mod client;
mod dispatch;
mod request;
mod server;

pub use client::{Client, ClientError};
pub use dispatch::{ApiError, Backend, DEFAULT_HISTORY_LIMIT, ErrorCode, Reply, dispatch};
pub use request::Request;
pub use server::{ServeError, Server};
/// For the fuzz target of request lines ([`crate::fuzzing::control`]).
#[cfg(any(test, feature = "test-support"))]
pub(crate) use server::{parse_quick, parse_through_value, request};

/// Longest request line a server accepts (a 64 KiB message JSON-escaped fits easily).
pub const MAX_LINE_LEN: usize = 1024 * 1024;
