//! The control-socket server: one task per client connection, bounded in number.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Semaphore, broadcast};

use super::{ApiError, Backend, ErrorCode, MAX_LINE_LEN, Request, dispatch};
use crate::node::{Event, NodeHandle};

/// Most simultaneous control clients; more wait for a free slot.
const MAX_CLIENTS: usize = 64;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// Another node already serves this socket.
    #[error("a kith node is already running on {0}")]
    InUse(PathBuf),
    /// Binding or securing the socket failed.
    #[error("control socket {path}: {source}")]
    Io {
        /// The socket path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// A bound control socket, ready to serve a node.
pub struct Server {
    listener: UnixListener,
    path: PathBuf,
}

impl Server {
    /// Bind `path` (mode 0600). A stale socket file from a crashed node is replaced;
    /// a live one means another node runs on this home, which is refused.
    pub async fn bind(path: &Path) -> Result<Server, ServeError> {
        let io = |source| ServeError::Io { path: path.to_owned(), source };
        if path.exists() {
            if UnixStream::connect(path).await.is_ok() {
                return Err(ServeError::InUse(path.to_owned()));
            }
            std::fs::remove_file(path).map_err(io)?;
        }
        let listener = UnixListener::bind(path).map_err(io)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
        Ok(Server { listener, path: path.to_owned() })
    }

    /// Serve `node` until the node stops. Cancel-safe: dropping the future stops accepting.
    pub async fn serve(self, node: NodeHandle) {
        let backend = Arc::new(Backend::Node(node));
        let slots = Arc::new(Semaphore::new(MAX_CLIENTS));
        loop {
            let Ok(permit) = slots.clone().acquire_owned().await else { break };
            let (stream, _) = match self.listener.accept().await {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "control socket accept failed");
                    continue;
                }
            };
            let backend = backend.clone();
            tokio::spawn(async move {
                if let Err(e) = connection(stream, &backend).await {
                    tracing::debug!(error = %e, "control client went away");
                }
                drop(permit);
            });
        }
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn connection(stream: UnixStream, backend: &Backend) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut events: Option<broadcast::Receiver<Event>> = None;
    let mut line = Vec::new();
    loop {
        let next_event = async {
            match events.as_mut() {
                Some(rx) => Some(rx.recv().await),
                None => std::future::pending().await,
            }
        };
        // `line` outlives the select: read_until keeps what it read if an event wins.
        let mut limited = (&mut reader).take(MAX_LINE_LEN as u64 + 1);
        tokio::select! {
            read = limited.read_until(b'\n', &mut line) => {
                if read? == 0 {
                    return Ok(());
                }
                if line.len() > MAX_LINE_LEN {
                    let err = ApiError::new(ErrorCode::TooLarge, format!("request line over {MAX_LINE_LEN} bytes"));
                    write_line(&mut write, &Answer::refusal(Value::Null, err)).await?;
                    return Ok(());
                }
                let (reply, subscribe) = request(&line, backend).await;
                line.clear();
                if let (true, Backend::Node(node)) = (subscribe, backend) {
                    events = Some(node.subscribe());
                }
                write_line(&mut write, &reply).await?;
            }
            Some(event) = next_event => {
                let event = match event {
                    Ok(event) => event,
                    Err(broadcast::error::RecvError::Lagged(missed)) => Event::Lagged { missed },
                    Err(broadcast::error::RecvError::Closed) => return Ok(()),
                };
                // Written straight from the event, not through a `Value`: every
                // message a busy node stores is an event to each subscriber.
                write_line(&mut write, &EventLine { event: &event }).await?;
            }
        }
    }
}

/// One request line → its response, and whether it subscribed.
pub(crate) async fn request(line: &[u8], backend: &Backend) -> (Answer, bool) {
    let (id, request) = match parse(line) {
        Ok(parsed) => parsed,
        Err(answer) => return (answer, false),
    };
    if request == (Request::Subscribe {}) {
        // The server's own business, whatever the backend: its events come here.
        return (Answer { id, outcome: super::dispatch::subscribed() }, true);
    }
    (Answer { id, outcome: dispatch(backend, request).await }, false)
}

/// A request line → its id and request, or the answer refusing it.
fn parse(line: &[u8]) -> Result<(Value, Request), Answer> {
    match parse_quick(line) {
        Some(parsed) => Ok(parsed),
        None => parse_through_value(line),
    }
}

/// The top of a request line as [`parse_quick`] reads it: borrowed from the line.
#[derive(serde::Deserialize)]
struct QuickLine<'a> {
    #[serde(default)]
    id: Value,
    #[serde(borrow)]
    method: std::borrow::Cow<'a, str>,
    #[serde(default, borrow)]
    params: Option<&'a serde_json::value::RawValue>,
}

/// A well-formed request line read straight into its request, without building a
/// `Value` of the whole line first (a `send` through a `Value` cost some twenty
/// allocations). `None` for anything it does not take whole: not UTF-8, not an
/// object, a repeated or mistyped field, an unknown method, params that do not
/// fit. [`parse_through_value`] then answers that line exactly as before. Where
/// this succeeds, that one gives the same id and request (the fuzz target
/// `control` checks it on every input).
pub(crate) fn parse_quick(line: &[u8]) -> Option<(Value, Request)> {
    let text = std::str::from_utf8(line).ok()?;
    // A derived struct would also take a JSON array, which is no request.
    if !text.trim_start().starts_with('{') || !nothing_read_leniently(text) {
        return None;
    }
    let QuickLine { id, method, params } = serde_json::from_str(text).ok()?;
    Some((id, Request::parse_raw(&method, params)?))
}

/// Brackets a line may hold for [`parse_quick`]: well under serde_json's nesting
/// limit of 128, which skipping a value does not apply.
const MAX_QUICK_BRACKETS: usize = 64;

/// Whether serde_json could not read any part of `text` more leniently when it
/// skips a value (a field the request does not use; the params before they are
/// read) than when it reads it into a `Value`. Skipping checks neither a `\u`
/// escape for a lone surrogate (`\uD800` to `\uDFFF`), nor a number for overflow
/// (an exponent, or some 309 digits), nor the nesting limit. Judged on the bytes
/// alone, strings included, so it may refuse a line that was fine: that line is
/// read through a `Value` instead.
fn nothing_read_leniently(text: &str) -> bool {
    let bytes = text.as_bytes();
    let (mut at, mut previous, mut digits, mut brackets) = (0, 0u8, 0usize, 0usize);
    while let Some(&byte) = bytes.get(at) {
        match byte {
            b'\\' => {
                // An escape, read whole: `\\` does not start another.
                let escaped = bytes.get(at + 1).copied().unwrap_or(0);
                if escaped == b'u' && escapes_a_surrogate(bytes.get(at + 2..).unwrap_or(&[])) {
                    return false;
                }
                at += if escaped == b'u' { 6 } else { 2 };
                (previous, digits) = (0, 0);
                continue;
            }
            b'e' | b'E' if previous.is_ascii_digit() => return false,
            b'[' | b'{' => brackets += 1,
            _ => {}
        }
        digits = if byte.is_ascii_digit() { digits + 1 } else { 0 };
        if digits >= 300 || brackets > MAX_QUICK_BRACKETS {
            return false;
        }
        previous = byte;
        at += 1;
    }
    true
}

/// Whether the four hex digits of a `\u` escape, at the start of `hex`, name a
/// UTF-16 surrogate (`D800` to `DFFF`).
fn escapes_a_surrogate(hex: &[u8]) -> bool {
    matches!(hex, [b'd' | b'D', b'8' | b'9' | b'a'..=b'f' | b'A'..=b'F', ..])
}

/// A request line read through a `Value`: every refusal's answer comes from here.
pub(crate) fn parse_through_value(line: &[u8]) -> Result<(Value, Request), Answer> {
    let mut parsed: Value = serde_json::from_slice(line).map_err(|e| {
        Answer::refusal(Value::Null, ApiError::new(ErrorCode::BadRequest, format!("not JSON: {e}")))
    })?;
    // Taken out, not cloned: `params` holds the message of every `send`.
    let id = parsed.get_mut("id").map_or(Value::Null, Value::take);
    let params = parsed.get_mut("params").map_or(Value::Null, Value::take);
    let Some(method) = parsed.get("method").and_then(Value::as_str) else {
        return Err(Answer::refusal(id, ApiError::new(ErrorCode::BadRequest, "missing \"method\"")));
    };
    match Request::parse(method, params) {
        Ok(request) => Ok((id, request)),
        Err(err) => Err(Answer::refusal(id, err)),
    }
}

/// A response line: `{"id": …, "result": …}` or `{"id": …, "error": …}`.
#[derive(Debug)]
pub(crate) struct Answer {
    id: Value,
    outcome: Result<super::Reply, ApiError>,
}

impl Answer {
    fn refusal(id: Value, error: ApiError) -> Answer {
        Answer { id, outcome: Err(error) }
    }
}

impl serde::Serialize for Answer {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry("id", &self.id)?;
        match &self.outcome {
            Ok(result) => map.serialize_entry("result", result)?,
            Err(error) => map.serialize_entry("error", error)?,
        }
        map.end()
    }
}

/// An event as a line on the socket: `{"event": …}`.
#[derive(serde::Serialize)]
struct EventLine<'a> {
    event: &'a Event,
}

async fn write_line<T: serde::Serialize>(write: &mut tokio::net::unix::OwnedWriteHalf, value: &T) -> std::io::Result<()> {
    // Most lines are a few hundred bytes: skip the first doublings from empty.
    let mut bytes = Vec::with_capacity(512);
    serde_json::to_writer(&mut bytes, value).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    write.write_all(&bytes).await
}
