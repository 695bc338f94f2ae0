//! The control socket under misuse: a second daemon on the same home, garbage and
//! oversized request lines, and a subscriber that stops reading. The node answers
//! each with a typed error or event and keeps serving everyone else.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use kith_p2p::control::MAX_LINE_LEN;
use kith_tests::{Peer, connect, wait_until};
use serde_json::{Value, json};

const DEADLINE: Duration = Duration::from_secs(60);

/// A raw connection to a node's control socket: lines in, JSON values out.
struct Raw {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Raw {
    fn connect(peer: &Peer) -> Raw {
        let stream = UnixStream::connect(peer.home().join("kith.sock")).unwrap();
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        Raw { writer: stream.try_clone().unwrap(), reader: BufReader::new(stream) }
    }

    fn send_bytes(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).unwrap();
    }

    /// The next line as JSON (fails the test on a timeout or a closed socket).
    fn read(&mut self) -> Value {
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).unwrap();
        assert!(n > 0, "the node closed the connection");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"))
    }

    /// The next line that is not an event.
    fn response(&mut self) -> Value {
        loop {
            let value = self.read();
            if value.get("event").is_none() {
                return value;
            }
        }
    }

    /// Send `line` (a newline is added) and return the response.
    fn ask(&mut self, line: &[u8]) -> Value {
        let mut bytes = line.to_vec();
        bytes.push(b'\n');
        self.send_bytes(&bytes);
        self.response()
    }

    /// Call `method` with `params`; the response.
    fn call(&mut self, id: u64, method: &str, params: Value) -> Value {
        self.ask(json!({ "id": id, "method": method, "params": params }).to_string().as_bytes())
    }
}

/// The error code of a response, asserting it is an error answering `id`.
fn error_code(response: &Value, id: Value) -> String {
    assert_eq!(response["id"], id, "{response}");
    assert!(response.get("result").is_none(), "{response}");
    response["error"]["code"].as_str().unwrap_or_else(|| panic!("no error code: {response}")).to_owned()
}

#[test]
fn a_second_daemon_on_the_same_home_is_refused() {
    let mut alice = Peer::init("Alice");
    // Loosened since `init`: the socket is 0600 only once bound, so the node makes
    // its home the owner's only again before it binds.
    std::fs::set_permissions(alice.home(), std::fs::Permissions::from_mode(0o755)).unwrap();
    alice.start(&[]);
    let home_mode = std::fs::metadata(alice.home()).unwrap().permissions().mode() & 0o777;
    assert_eq!(home_mode, 0o700, "the home is the owner's only");
    let socket = alice.home().join("kith.sock");
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the control socket is the owner's only");

    let second = alice.run(&["daemon", "--no-mdns", "--listen", "/ip4/127.0.0.1/tcp/0"]);
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "documented exit code (docs/CLI.md); stderr: {stderr}");
    assert!(stderr.contains("a kith node is already running on"), "{stderr}");
    assert!(stderr.contains(alice.home().to_str().unwrap()), "names the home: {stderr}");
    assert!(second.stdout.is_empty(), "no `ready` line: {}", String::from_utf8_lossy(&second.stdout));

    // The first is untouched: same socket, still serving.
    assert!(socket.exists());
    assert_eq!(alice.json(&["status", "--json"])["peer_id"], alice.peer_id.as_str());
    assert!(alice.daemon.as_mut().unwrap().try_wait().unwrap().is_none(), "the first daemon still runs");
}

#[test]
fn garbage_and_oversized_requests_get_typed_errors_and_the_node_keeps_serving() {
    let (alice, bob) = kith_tests::connected_pair();
    let mut raw = Raw::connect(&alice);

    // Each bad line gets its own typed answer, and the connection goes on.
    assert_eq!(error_code(&raw.ask(b"this is not json"), Value::Null), "bad_request");
    assert_eq!(error_code(&raw.ask(b"\xff\xfe\x00 binary \x1b[2J"), Value::Null), "bad_request");
    assert_eq!(error_code(&raw.ask(b"{\"id\": 1, \"method\": "), Value::Null), "bad_request");
    assert_eq!(error_code(&raw.ask(b"[1, 2, 3]"), Value::Null), "bad_request");
    assert_eq!(error_code(&raw.ask(br#"{"id": 2}"#), json!(2)), "bad_request");
    assert_eq!(error_code(&raw.ask(br#"{"id": 3, "method": 7}"#), json!(3)), "bad_request");
    assert_eq!(error_code(&raw.call(4, "frobnicate", Value::Null), json!(4)), "unknown_method");
    assert_eq!(error_code(&raw.call(5, "send", json!({ "contact": 5 })), json!(5)), "bad_params");
    assert_eq!(error_code(&raw.call(6, "send", json!({ "text": "no contact" })), json!(6)), "bad_params");
    assert_eq!(error_code(&raw.call(7, "history", json!({ "contact": "nobody" })), json!(7)), "unknown_contact");
    assert_eq!(error_code(&raw.call(8, "dial", json!({ "addr": "not an address" })), json!(8)), "invalid");
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert_eq!(error_code(&raw.ask(deep.as_bytes()), Value::Null), "bad_request");
    let ok = raw.call(9, "status", Value::Null);
    assert_eq!(ok["result"]["peer_id"], alice.peer_id.as_str(), "{ok}");

    // A line over the limit is answered `too_large`; that connection then closes
    // (nothing after it can be trusted to start a line).
    // (No newline: the node answers as soon as it has read one byte too many, and
    // closes; a byte written after that would fail to send.)
    raw.send_bytes(&vec![b'x'; MAX_LINE_LEN + 1]);
    assert_eq!(error_code(&raw.read(), Value::Null), "too_large");
    // Closed: end of stream (or a reset), well before a 5 s timeout would say it
    // stayed open.
    raw.reader.get_ref().set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut rest = Vec::new();
    let end = raw.reader.read_to_end(&mut rest);
    assert!(
        match &end {
            Ok(_) => rest.is_empty(),
            Err(e) => matches!(e.kind(), std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe),
        },
        "the connection closes after too_large: {end:?}, {} more bytes",
        rest.len()
    );
    // A line just under the limit is read whole (and is not JSON).
    let mut raw = Raw::connect(&alice);
    let mut big = vec![b'y'; MAX_LINE_LEN - 1];
    big.push(b'\n');
    raw.send_bytes(&big);
    assert_eq!(error_code(&raw.response(), Value::Null), "bad_request");

    // The node serves everyone as before: this connection, new ones, the network.
    assert_eq!(raw.call(10, "status", Value::Null)["result"]["peer_id"], alice.peer_id.as_str());
    let msg = alice.json(&["send", "Bob", "still serving", "--wait", "delivered", "--json"]);
    assert_eq!(msg["state"], "delivered");
    assert_eq!(bob.history("Alice").last().unwrap()["text"], "still serving");
}

#[test]
fn a_subscribers_line_over_the_limit_is_refused_though_events_came_while_it_was_read() {
    let (alice, bob) = kith_tests::connected_pair();
    let mut raw = Raw::connect(&alice);
    assert_eq!(raw.call(1, "subscribe", Value::Null)["result"]["subscribed"], true);

    // Half the limit, no newline yet; then an event goes out on this connection
    // while the node is reading the line.
    raw.send_bytes(&vec![b'x'; MAX_LINE_LEN / 2]);
    bob.ok(&["send", "Alice", "while Alice's client writes a long line"]);
    let event = raw.read();
    assert!(event.get("event").is_some(), "an event came between the halves: {event}");

    // The rest passes the limit counted over the whole line, not since the event.
    raw.send_bytes(&vec![b'x'; MAX_LINE_LEN / 2 + 2]);
    raw.reader.get_ref().set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    assert_eq!(error_code(&raw.response(), Value::Null), "too_large");

    // The node goes on serving.
    let mut other = Raw::connect(&alice);
    assert_eq!(other.call(2, "status", Value::Null)["result"]["peer_id"], alice.peer_id.as_str());
}

#[test]
fn a_client_past_the_nodes_limit_is_told_so_instead_of_waiting_unanswered() {
    let mut alice = Peer::init("Alice");
    alice.start(&[]);
    let mut held = Vec::new();
    let refused = loop {
        assert!(held.len() <= 64, "no `too_many_clients` after {} clients", held.len());
        let mut raw = Raw::connect(&alice);
        // A node that is full answers and closes at once, maybe before the request
        // is written: its answer is read all the same.
        let request = format!("{}\n", json!({ "id": 1, "method": "status" }));
        let _ = raw.writer.write_all(request.as_bytes());
        let answer = raw.response();
        if answer.get("error").is_some() {
            break answer;
        }
        held.push(raw);
    };
    assert_eq!(error_code(&refused, Value::Null), "too_many_clients");
    assert_eq!(held.len(), 64, "the node takes 64 clients at once");

    // A command says why instead of hanging.
    let out = alice.run(&["status"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "docs/CLI.md: any other error is 1; stderr: {stderr}");
    assert!(stderr.contains("control clients"), "{stderr}");

    // One client goes: the next one is served.
    held.pop();
    wait_until(DEADLINE, "a freed place serves the next client", || alice.run(&["status"]).status.success());
}

/// `kith get --wait` holds its connection until the download ends, which for a file
/// whose sender is offline can be never. A client that gave up (killed, timed out)
/// used to keep its place all the same, so 64 of them left the node serving no one.
/// One that sent its next request meanwhile is seen going too; one that only shuts
/// its sending side (`nc -N`) is still there and gets its answer.
#[test]
fn a_client_that_goes_while_it_waits_for_a_download_gives_its_place_back() {
    let (mut alice, bob) = kith_tests::connected_pair();
    let dir = tempfile::tempdir().unwrap();
    // Above the automatic download size (25 MiB): offered, fetched only when asked.
    let big = dir.path().join("big.bin");
    std::fs::write(&big, vec![7u8; 26 << 20]).unwrap();
    let message = alice.json(&["send-file", "Bob", big.to_str().unwrap(), "--json"]);
    let id = message["file"]["id"].as_str().unwrap().to_owned();
    wait_until(DEADLINE, "Bob has the offer", || {
        bob.json(&["files", "--json"]).to_string().contains(&id)
    });
    alice.stop();

    // Every place taken by a client waiting for the download, then each goes; every
    // other one has sent its next request meanwhile (unread while it waits).
    let wait_line = format!("{}\n", json!({ "id": 1, "method": "get_file", "params": { "id": id, "wait": true } }));
    for n in 0..64 {
        let mut raw = Raw::connect(&bob);
        raw.send_bytes(wait_line.as_bytes());
        if n % 2 == 0 {
            raw.send_bytes(format!("{}\n", json!({ "id": 2, "method": "status" })).as_bytes());
        }
    }
    let status = format!("{}", json!({ "id": 3, "method": "status" }));
    wait_until(DEADLINE, "every place of the clients that went is free", || {
        let mut held = Vec::new();
        (0..64).all(|_| {
            let mut raw = Raw::connect(&bob);
            // A node that is full answers and closes at once, maybe before the
            // request is written: its answer is read all the same.
            let _ = raw.writer.write_all(format!("{status}\n").as_bytes());
            let served = raw.response().get("error").is_none();
            held.push(raw);
            served
        })
    });
    wait_until(DEADLINE, "the places of the check's clients are free", || bob.run(&["status"]).status.success());
    let file = bob.json(&["files", "--json"]);
    assert!(file.to_string().contains(&id), "the download is still Bob's to finish: {file}");

    // A client that only stops sending after its request (as `nc -N` does) has not
    // gone: it gets its answer once the sender is back and the download ends.
    let mut half_closed = Raw::connect(&bob);
    half_closed.send_bytes(wait_line.as_bytes());
    half_closed.writer.shutdown(std::net::Shutdown::Write).unwrap();
    alice.start(&[]);
    let answer = half_closed.response();
    assert_eq!(answer["result"]["state"], "complete", "{answer}");
}

/// Events buffered per subscriber in this test (`KITH_EVENT_BUFFER`).
const EVENT_BUFFER: usize = 16;
/// Characters of each flood message (two bytes each in UTF-8).
const FILLER_CHARS: usize = 16 * 1024;

/// Messages Bob sends while Alice's subscriber is not reading: enough to fill the
/// socket's buffer (a Unix stream socket queues up to the sender's `wmem_default`
/// bytes), then overflow the event buffer twice over.
fn flood_size() -> usize {
    let socket_buffer: usize = std::fs::read_to_string("/proc/sys/net/core/wmem_default")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(212_992);
    (socket_buffer / (2 * FILLER_CHARS) + 1 + 2 * EVENT_BUFFER).min(1000)
}

#[test]
fn a_subscriber_that_stops_reading_is_told_it_lagged() {
    let mut alice = Peer::init("Alice");
    let mut bob = Peer::init("Bob");
    alice.env.push(("KITH_EVENT_BUFFER".into(), EVENT_BUFFER.to_string()));
    alice.start(&[]);
    bob.start(&[]);
    connect(&alice, &bob);

    let mut stalled = Raw::connect(&alice);
    assert_eq!(stalled.call(1, "subscribe", Value::Null)["result"]["subscribed"], true);
    // From here on `stalled` reads nothing until the flood is over.

    let mut bob_raw = Raw::connect(&bob);
    let filler = "ж".repeat(FILLER_CHARS);
    let flood = flood_size();
    for i in 0..flood {
        let sent = bob_raw.call(i as u64, "send", json!({ "contact": "Alice", "text": format!("{i} {filler}") }));
        assert_eq!(sent["result"]["state"], "pending", "{}", sent["error"]);
    }
    wait_until(DEADLINE, "Alice has stored the whole flood", || {
        let history = bob.history("Alice");
        history.len() == flood && history.iter().all(|m| m["state"] == "delivered")
    });
    // A stalled subscriber costs the node nothing: it answers others as usual.
    assert_eq!(alice.json(&["status", "--json"])["peer_id"], alice.peer_id.as_str());

    // Reading again: the events that still fitted, then `lagged` with how many were
    // dropped, then live events again.
    let mut before = 0;
    let missed = loop {
        assert!(before <= flood, "no lagged event among the flood's");
        let value = stalled.read();
        if value["event"]["type"] == "lagged" {
            break value["event"]["missed"].as_u64().unwrap();
        }
        before += 1;
    };
    assert!(missed > 0 && before < flood, "{before} events before the lag, {missed} missed");
    eprintln!("the stalled subscriber got {before} events, then lagged (missed {missed})");
    bob.ok(&["send", "Alice", "after the lag"]);
    // Bounded: whatever the buffer kept, then the new message (`read` has a deadline).
    for seen in 0.. {
        assert!(seen <= EVENT_BUFFER + 16, "no event for the message after the lag");
        let value = stalled.read();
        if value["event"]["type"] == "message_received" && value["event"]["message"]["text"] == "after the lag" {
            break;
        }
    }
    // And the subscriber can still make requests on the same connection.
    assert_eq!(stalled.call(2, "status", Value::Null)["result"]["peer_id"], alice.peer_id.as_str());
}
