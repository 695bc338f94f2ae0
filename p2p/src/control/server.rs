//! The control-socket server: one task per client connection, bounded in number.

use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::time::Duration;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{Semaphore, broadcast};

use super::{ApiError, Backend, ErrorCode, MAX_LINE_LEN, Request, dispatch};
use crate::node::{Event, NodeHandle};

/// Most simultaneous control clients; one more is answered `too_many_clients` and
/// closed.
const MAX_CLIENTS: usize = 64;

/// How long a client refused as `too_many_clients` is given to take its answer.
const BUSY_ANSWER_DEADLINE: Duration = Duration::from_secs(1);

/// How often a client waiting for a long answer (`get_file` with `wait`) is checked
/// for having hung up.
const HANG_UP_POLL: Duration = Duration::from_millis(200);

/// How long the server waits after a failed accept before the next.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

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
    /// Held (an exclusive `flock`) while this server lives: the socket file is ours
    /// to replace and to remove only under it.
    _lock: std::fs::File,
}

impl Server {
    /// Bind `path` (mode 0600) while holding the lock file `lock` (created 0600;
    /// the home's `daemon.lock`). A node already holding the lock, or answering on
    /// the socket, is refused with [`ServeError::InUse`] before anything is touched.
    /// Under the lock, a socket file left by a crashed node is replaced: two nodes
    /// starting at once on one home cannot remove each other's socket.
    pub async fn bind(path: &Path, lock: &Path) -> Result<Server, ServeError> {
        let io = |source| ServeError::Io { path: path.to_owned(), source };
        let lock_file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(lock)
            .map_err(|source| ServeError::Io { path: lock.to_owned(), source })?;
        match lock_file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(ServeError::InUse(path.to_owned())),
            // Some network and FUSE file systems have no locks: the socket alone
            // says whether a node runs, as before locks were taken.
            Err(std::fs::TryLockError::Error(e)) => {
                tracing::warn!(lock = %lock.display(), error = %e, "cannot lock the home; relying on the control socket alone");
            }
        }
        if path.exists() {
            // A node of an older build holds no lock: one that answers still owns it.
            if UnixStream::connect(path).await.is_ok() {
                return Err(ServeError::InUse(path.to_owned()));
            }
            std::fs::remove_file(path).map_err(io)?;
        }
        let listener = UnixListener::bind(path).map_err(io)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
        Ok(Server { listener, path: path.to_owned(), _lock: lock_file })
    }

    /// Serve `node`'s clients until the future is dropped (it never ends by itself:
    /// the caller drops or aborts it when the node stops). Cancel-safe. The socket and
    /// the home's lock stay until the server is dropped, which the caller does once
    /// the node has stopped.
    pub async fn serve(&self, node: NodeHandle) {
        let backend = Arc::new(Backend::Node(node));
        let slots = Arc::new(Semaphore::new(MAX_CLIENTS));
        loop {
            let (stream, _) = match self.listener.accept().await {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors or memory: every accept fails at once
                    // until some are freed, so wait instead of spinning (and logging)
                    // meanwhile. Other failures concern one connection.
                    let starved = matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM));
                    tracing::warn!(error = %e, "control socket accept failed");
                    if starved {
                        tokio::time::sleep(ACCEPT_RETRY).await;
                    }
                    continue;
                }
            };
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                // Answered at once rather than left to wait unanswered in the
                // listen queue: a script or a CLI command fails with a reason.
                tokio::spawn(refuse_busy(stream));
                continue;
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
        // Still under the lock (fields drop after this): the socket file is ours.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Tells a client over [`MAX_CLIENTS`] that the node has too many, and closes.
async fn refuse_busy(stream: UnixStream) {
    let (_, mut write) = stream.into_split();
    let err = ApiError::new(ErrorCode::TooManyClients, format!("the node already serves {MAX_CLIENTS} control clients; try again"));
    let _ = tokio::time::timeout(BUSY_ANSWER_DEADLINE, write_line(&mut write, &Answer::refusal(Value::Null, err))).await;
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
        // `line` outlives the select: read_until keeps what it read if an event wins,
        // so the limit counts what the line already holds (a fresh limit on each
        // pass would let a subscriber's line grow past it between events).
        let budget = (MAX_LINE_LEN + 1).saturating_sub(line.len());
        let mut limited = (&mut reader).take(budget as u64);
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
                let (reply, subscribe) = match parse(&line) {
                    Err(answer) => (answer, false),
                    Ok((id, parsed)) if parsed.waits_long() => {
                        line.clear();
                        // A client that goes while it waits must not keep its place
                        // until the wait ends: its end of the socket closing ends
                        // this connection (what it sent meanwhile stays unread).
                        tokio::select! {
                            answer = answer(id, parsed, backend) => answer,
                            () = hung_up(&write) => return Ok(()),
                        }
                    }
                    Ok((id, parsed)) => answer(id, parsed, backend).await,
                };
                line.clear();
                // Subscribing again keeps the events already queued for this client.
                if let (true, None, Backend::Node(node)) = (subscribe, &events, backend) {
                    events = Some(node.subscribe());
                }
                write_line(&mut write, &reply).await?;
            }
            Some(event) = next_event => {
                let Some(rx) = events.as_mut() else { continue };
                let (lines, closed) = event_lines(event, rx)?;
                write.write_all(&lines).await?;
                if closed {
                    return Ok(());
                }
            }
        }
    }
}

/// Ends once the client has closed its end of the socket (or it failed). Not when
/// the client only stops sending (`shutdown(SHUT_WR)`, as `nc -N` does after its
/// line: it still reads the answer), nor while it sends more, which waits unread.
/// A Unix socket reports a hang-up (`POLLHUP`) only once both directions are shut,
/// so the socket is asked every [`HANG_UP_POLL`]: readiness to read cannot tell a
/// half-close from a close, and a client that pipelines keeps it readable.
async fn hung_up(socket: &tokio::net::unix::OwnedWriteHalf) {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use std::os::fd::AsFd;
    loop {
        let mut fds = [PollFd::new(socket.as_ref().as_fd(), PollFlags::empty())];
        let gone = match poll(&mut fds, PollTimeout::ZERO) {
            Ok(_) => fds[0].revents().is_some_and(|r| r.intersects(PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLNVAL)),
            // A signal came in between: ask again at the next turn.
            Err(nix::errno::Errno::EINTR) => false,
            Err(_) => true,
        };
        if gone {
            return;
        }
        tokio::time::sleep(HANG_UP_POLL).await;
    }
}

/// One request line → its response, and whether it subscribed (what a connection
/// does with a line, for the fuzz target).
#[cfg(any(test, feature = "test-support"))]
pub(crate) async fn request(line: &[u8], backend: &Backend) -> (Answer, bool) {
    match parse(line) {
        Ok((id, request)) => answer(id, request, backend).await,
        Err(answer) => (answer, false),
    }
}

/// The response to `request` (whose id is `id`), and whether it subscribed.
async fn answer(id: Value, request: Request, backend: &Backend) -> (Answer, bool) {
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
    // Anything but an object is refused unread: a 1 MiB line of `[],[],…` would
    // take some 16 MiB as a `Value`, on each of 64 connections.
    if line.trim_ascii_start().first() != Some(&b'{') {
        return Err(Answer::refusal(Value::Null, ApiError::new(ErrorCode::BadRequest, "a request is a JSON object")));
    }
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

/// Most events [`event_lines`] puts in one write, and the size past which it
/// takes no more.
const EVENTS_PER_WRITE: usize = 64;
const EVENT_BYTES_PER_WRITE: usize = 256 * 1024;

/// The lines of `first` and of the events already waiting behind it, for one
/// write (at most [`EVENTS_PER_WRITE`], or until [`EVENT_BYTES_PER_WRITE`] is
/// passed): every message a busy node stores is an event to each subscriber, and
/// a write each was a system call each. Nothing waits for an event that has not
/// come. Events missed by a slow subscriber become one `lagged` line where they
/// were. Also whether the channel closed (the node stopped): the lines before it
/// are still to be written.
fn event_lines(first: Result<Event, RecvError>, rx: &mut broadcast::Receiver<Event>) -> std::io::Result<(Vec<u8>, bool)> {
    // Most lines are a few hundred bytes: skip the first doublings from empty.
    let mut bytes = Vec::with_capacity(512);
    let mut next = match first {
        Ok(event) => event,
        Err(RecvError::Lagged(missed)) => Event::Lagged { missed },
        Err(RecvError::Closed) => return Ok((bytes, true)),
    };
    let mut lines = 0;
    loop {
        // Written straight from the event, not through a `Value`.
        serde_json::to_writer(&mut bytes, &EventLine { event: &next }).map_err(std::io::Error::other)?;
        bytes.push(b'\n');
        lines += 1;
        if lines == EVENTS_PER_WRITE || bytes.len() >= EVENT_BYTES_PER_WRITE {
            break;
        }
        next = match rx.try_recv() {
            Ok(event) => event,
            Err(TryRecvError::Lagged(missed)) => Event::Lagged { missed },
            Err(TryRecvError::Empty) => break,
            Err(TryRecvError::Closed) => return Ok((bytes, true)),
        };
    }
    Ok((bytes, false))
}

async fn write_line<T: serde::Serialize>(write: &mut tokio::net::unix::OwnedWriteHalf, value: &T) -> std::io::Result<()> {
    // Most lines are a few hundred bytes: skip the first doublings from empty.
    let mut bytes = Vec::with_capacity(512);
    serde_json::to_writer(&mut bytes, value).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    write.write_all(&bytes).await
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_second_server_on_a_held_home_is_refused_and_leaves_the_first_ones_socket() {
        let dir = tempfile::tempdir().unwrap();
        let (socket, lock) = (dir.path().join("kith.sock"), dir.path().join("daemon.lock"));
        let first = Server::bind(&socket, &lock).await.unwrap();
        let mode = std::fs::metadata(&lock).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the lock file is the owner's only");
        // As when the first crashed a moment ago and its socket no longer answers:
        // the lock, not the socket, says whose home it is.
        std::fs::remove_file(&socket).unwrap();
        drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
        assert!(matches!(Server::bind(&socket, &lock).await, Err(ServeError::InUse(_))));
        assert!(socket.exists(), "the refused server removed nothing");
        drop(first);
        assert!(!socket.exists(), "a server removes its socket when it goes");
    }

    #[tokio::test]
    async fn a_socket_left_by_a_crashed_node_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let (socket, lock) = (dir.path().join("kith.sock"), dir.path().join("daemon.lock"));
        // A crash leaves the socket file and the lock file, but no lock held.
        drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
        std::fs::write(&lock, b"").unwrap();
        let server = Server::bind(&socket, &lock).await.unwrap();
        assert!(UnixStream::connect(&socket).await.is_ok(), "the new server answers on the socket");
        drop(server);
    }

    /// The events in `bytes`' lines, by the `missed` count each test gives them.
    fn missed_counts(bytes: &[u8]) -> Vec<u64> {
        bytes
            .split(|b| *b == b'\n')
            .filter(|line| !line.is_empty())
            .map(|line| {
                let value: Value = serde_json::from_slice(line).expect("each line is JSON");
                value["event"]["missed"].as_u64().expect("a lagged event")
            })
            .collect()
    }

    fn numbered(missed: u64) -> Event {
        Event::Lagged { missed }
    }

    #[test]
    fn the_events_waiting_behind_one_go_out_with_it_in_order_and_none_is_lost_past_the_cap() {
        let (tx, mut rx) = broadcast::channel(256);
        let total = EVENTS_PER_WRITE as u64 + 5;
        for n in 0..total {
            tx.send(numbered(n)).unwrap();
        }
        let first = rx.try_recv().map_err(|_| RecvError::Closed);
        let (bytes, closed) = event_lines(first, &mut rx).unwrap();
        assert!(!closed);
        assert_eq!(missed_counts(&bytes), (0..EVENTS_PER_WRITE as u64).collect::<Vec<_>>(), "one write holds the cap's worth");
        let first = rx.try_recv().map_err(|_| RecvError::Closed);
        let (bytes, closed) = event_lines(first, &mut rx).unwrap();
        assert!(!closed);
        assert_eq!(missed_counts(&bytes), (EVENTS_PER_WRITE as u64..total).collect::<Vec<_>>(), "the rest comes next, none lost");
        assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));
    }

    #[test]
    fn a_lag_becomes_one_line_where_the_events_were_missed_and_a_close_keeps_the_lines_before_it() {
        let (tx, mut rx) = broadcast::channel(4);
        tx.send(numbered(100)).unwrap();
        let first = rx.try_recv().map_err(|_| RecvError::Closed);
        for n in 0..10 {
            tx.send(numbered(n)).unwrap();
        }
        drop(tx);
        // The first event was taken; ten more came into room for four: six missed.
        let (bytes, closed) = event_lines(first, &mut rx).unwrap();
        assert!(closed, "the channel closed behind the events");
        assert_eq!(missed_counts(&bytes), [100, 6, 6, 7, 8, 9]);
    }

    #[test]
    fn events_past_the_byte_cap_wait_for_the_next_write() {
        let (tx, mut rx) = broadcast::channel(256);
        let long = "x".repeat(EVENT_BYTES_PER_WRITE / 3);
        for _ in 0..5 {
            tx.send(Event::RoomJoined { group: long.clone() }).unwrap();
        }
        let first = rx.try_recv().map_err(|_| RecvError::Closed);
        let (bytes, _) = event_lines(first, &mut rx).unwrap();
        assert_eq!(bytes.iter().filter(|b| **b == b'\n').count(), 3, "stops once past the cap");
        assert_eq!(rx.len(), 2);
    }
}
