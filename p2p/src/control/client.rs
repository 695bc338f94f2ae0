//! A control-socket client, used by the CLI, the TUI and tests.

use std::path::Path;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

use super::{ApiError, Request};
use crate::node::Event;

/// Why a control call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// No node listens on the socket.
    #[error("no kith node is running (start one with `kith daemon`)")]
    NoNode,
    /// The node answered with an error.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// The connection failed or the node sent something unreadable.
    #[error("control connection: {0}")]
    Io(#[from] std::io::Error),
    /// The node closed the connection.
    #[error("the node closed the connection")]
    Closed,
}

/// One connection to a node's control socket. Calls are sequential.
pub struct Client {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    next_id: u64,
    /// Events that arrived while waiting for a response.
    backlog: std::collections::VecDeque<Event>,
}

impl Client {
    /// Connect to the socket at `path`; [`ClientError::NoNode`] if nothing listens.
    pub async fn connect(path: &Path) -> Result<Client, ClientError> {
        let stream = UnixStream::connect(path).await.map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => ClientError::NoNode,
            _ => ClientError::Io(e),
        })?;
        let (read, writer) = stream.into_split();
        Ok(Client { reader: BufReader::new(read), writer, next_id: 1, backlog: Default::default() })
    }

    /// Call `method` with `params`; returns its `result`.
    pub async fn call(&mut self, method: &str, params: Value) -> Result<Value, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        let mut line =
            serde_json::to_vec(&CallLine { id, method, params: &params }).map_err(std::io::Error::other)?;
        line.push(b'\n');
        if let Err(e) = self.writer.write_all(&line).await {
            // The node may have refused the line part-way (over the size limit) and
            // closed: its answer can still be waiting to be read. Otherwise the
            // connection is gone.
            if !matches!(e.kind(), std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset) {
                return Err(e.into());
            }
        }
        loop {
            let mut value = self.read_value().await?;
            if let Some(event) = value.get_mut("event") {
                if let Ok(event) = serde_json::from_value(event.take()) {
                    self.backlog.push_back(event);
                }
                continue;
            }
            // An error with no id is about a line the node could not read as a
            // request: with one request in flight on this connection, ours (a line
            // over the size limit, say; the node closes the connection after it).
            let about_ours = match value.get("id") {
                Some(Value::Null) | None => value.get("error").is_some(),
                Some(answered) => *answered == json!(id),
            };
            if !about_ours {
                continue;
            }
            if let Some(error) = value.get_mut("error") {
                let error: ApiError = serde_json::from_value(error.take()).map_err(std::io::Error::other)?;
                return Err(error.into());
            }
            return Ok(value.get_mut("result").map_or(Value::Null, Value::take));
        }
    }

    /// Send `request`; returns its `result`.
    pub async fn request(&mut self, request: &Request) -> Result<Value, ClientError> {
        let (method, params) = request.to_parts();
        self.call(&method, params).await
    }

    /// Subscribe this connection to the node's events.
    pub async fn subscribe(&mut self) -> Result<(), ClientError> {
        self.request(&Request::Subscribe {}).await.map(drop)
    }

    /// The next event (after [`Client::subscribe`]). Cancel-safe only between lines.
    pub async fn next_event(&mut self) -> Result<Event, ClientError> {
        if let Some(event) = self.backlog.pop_front() {
            return Ok(event);
        }
        loop {
            let line = self.read_line().await?;
            // Straight from the text: every message a node stores is an event.
            match serde_json::from_str::<EventLine>(&line) {
                Ok(EventLine { event: Some(event) }) => return Ok(event),
                Ok(EventLine { event: None }) => {}
                // An event this client does not know is skipped; a line that is
                // not JSON is an error, as for every other line.
                Err(_) => drop(parse_value(&line)?),
            }
        }
    }

    /// The next event as raw JSON, for `kith follow` to print as it came.
    pub async fn next_event_json(&mut self) -> Result<Value, ClientError> {
        if let Some(event) = self.backlog.pop_front() {
            return serde_json::to_value(event).map_err(|e| ClientError::Io(std::io::Error::other(e)));
        }
        loop {
            let mut value = self.read_value().await?;
            if let Some(event) = value.get_mut("event") {
                return Ok(event.take());
            }
        }
    }

    async fn read_value(&mut self) -> Result<Value, ClientError> {
        parse_value(&self.read_line().await?)
    }

    async fn read_line(&mut self) -> Result<String, ClientError> {
        let mut line = String::new();
        if self.reader.read_line(&mut line).await? == 0 {
            return Err(ClientError::Closed);
        }
        Ok(line)
    }
}

fn parse_value(line: &str) -> Result<Value, ClientError> {
    serde_json::from_str(line).map_err(|e| ClientError::Io(std::io::Error::other(e)))
}

/// A request line, written straight from its parts.
#[derive(serde::Serialize)]
struct CallLine<'a> {
    id: u64,
    method: &'a str,
    params: &'a Value,
}

/// A line read for its event, if it carries one.
#[derive(serde::Deserialize)]
struct EventLine {
    #[serde(default)]
    event: Option<Event>,
}
