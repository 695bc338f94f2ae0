//! Target for the control socket's request lines: what the server does with one
//! line, parsed and dispatched against an offline backend (a scratch store, no
//! node), as `kith` does without a running daemon.

use std::path::PathBuf;
use std::sync::Mutex;

use futures::executor::block_on;
use kith_storage::Store;
use serde_json::Value;

use crate::control::{Backend, ErrorCode, parse_quick, parse_through_value, request};
use crate::node::LocalContext;

use super::fixtures::peer_id;

/// Inputs one scratch store answers before it is replaced by an empty one. A
/// persistent fuzzing process runs inputs for minutes: without a reset, contacts and
/// messages of earlier inputs pile up, each input gets slower (AFL's speed fell from
/// 3,300 to 200 per second within five minutes), and a finding depends on all the
/// inputs before it.
const INPUTS_PER_STORE: u32 = 256;

/// The scratch store of this process: opened on first use in a directory named
/// after the process (a fuzzer's forked children each get their own).
struct Scratch {
    pid: u32,
    dir: PathBuf,
    backend: Backend,
    inputs: u32,
}

static SCRATCH: Mutex<Option<Scratch>> = Mutex::new(None);

/// Treat the bytes as one request line and answer it.
///
/// Invariants: the answer is one JSON object that echoes the request's `id` (null
/// if the line has none) and holds exactly one of `result` and `error`; an error
/// has a documented code and a message; the answer serializes to a single line;
/// only `subscribe` subscribes; where the quick read of a line takes it, the read
/// through a `Value` takes it too, as the same id and request.
pub fn control(bytes: &[u8]) {
    let mut guard = SCRATCH.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let pid = std::process::id();
    if guard.as_ref().is_some_and(|s| s.pid == pid && s.inputs >= INPUTS_PER_STORE)
        && let Some(used) = guard.take()
    {
        remove_scratch(used);
    }
    if guard.as_ref().is_none_or(|s| s.pid != pid) {
        *guard = Some(open_scratch(pid));
    }
    let Some(scratch) = guard.as_mut() else { unreachable!("just opened") };
    scratch.inputs += 1;
    check_request(bytes, &scratch.backend);
}

/// Closes a scratch store of this process and deletes its directory.
fn remove_scratch(scratch: Scratch) {
    let Scratch { pid, dir, backend, .. } = scratch;
    drop(backend);
    if pid == std::process::id() {
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// Removes this process's scratch store, if it opened one. Call it when done
/// (the fuzz binaries do after their loop).
pub fn cleanup() {
    let mut guard = SCRATCH.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(scratch) = guard.take() {
        remove_scratch(scratch);
    }
}

fn open_scratch(pid: u32) -> Scratch {
    let dir = std::env::temp_dir().join(format!("kith-fuzz-control-{pid}"));
    let _ = std::fs::remove_dir_all(&dir);
    let store = Store::open(&dir).unwrap_or_else(|e| panic!("open a scratch store in {}: {e}", dir.display()));
    let context = LocalContext { me: peer_id(0), display_name: Some("fuzz".into()), read_receipts: true };
    Scratch { pid, dir, backend: Backend::Offline { store, context }, inputs: 0 }
}

fn check_request(line: &[u8], backend: &Backend) {
    if let Some(quick) = parse_quick(line) {
        let through_value = parse_through_value(line).ok();
        assert_eq!(Some(&quick), through_value.as_ref(), "the quick read differs from the read through a Value");
    }
    let (reply, subscribed) = block_on(request(line, backend));
    let parsed: Option<Value> = serde_json::from_slice(line).ok();
    let want_id = parsed.as_ref().and_then(|v| v.get("id")).cloned().unwrap_or(Value::Null);
    let method = parsed.as_ref().and_then(|v| v.get("method")).and_then(Value::as_str);
    assert_eq!(subscribed, method == Some("subscribe"), "subscribed: {subscribed}, method {method:?}");
    let reply = serde_json::to_value(&reply).unwrap_or_else(|e| panic!("the reply does not serialize: {e}"));
    let Value::Object(reply) = reply else { panic!("the reply is not an object: {reply}") };
    assert_eq!(reply.get("id"), Some(&want_id), "the reply does not echo the id");
    match (reply.get("result"), reply.get("error")) {
        (Some(_), None) => {}
        (None, Some(error)) => {
            // A documented code; not `storage` (the scratch store is healthy, so a
            // storage error means a request broke it) nor `internal`.
            let code = error.get("code").cloned().and_then(|c| serde_json::from_value::<ErrorCode>(c).ok());
            assert!(
                code.is_some_and(|c| !matches!(c, ErrorCode::Storage | ErrorCode::Internal | ErrorCode::Unknown)),
                "undocumented error code in {error}"
            );
            assert!(error.get("message").is_some_and(Value::is_string), "error without a message: {error}");
        }
        _ => panic!("a reply needs exactly one of result and error: {reply:?}"),
    }
    let line = serde_json::to_vec(&reply).unwrap_or_else(|e| panic!("serialize a reply: {e}"));
    assert!(!line.contains(&b'\n'), "a reply spans more than one line");
}
