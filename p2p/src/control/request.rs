//! The control API's requests as one typed value, shared by the dispatcher (a running
//! node or the offline CLI), the CLI and the TUI: method names are matched in one
//! place, [`Request::parse`].
//!
//! On the wire a request is `{"method": "...", "params": {...}}` (docs/API.md): serde
//! tags each variant with its snake_case method name. Params may be left out for
//! methods that take none. Group changes keep their own type, [`GroupChange`], and
//! travel the same way.

use kith_storage::ContactState;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::dispatch::{ApiError, ErrorCode};
use crate::node::GroupChange;

/// One request to a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "method", content = "params", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Request {
    // ---- reads --------------------------------------------------------------------
    /// Contacts in listing order, optionally only those in `state`.
    Contacts {
        /// Only contacts in this state.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        state: Option<ContactState>,
    },
    /// Strangers' pending contact requests.
    Requests {},
    /// Conversations with their unread counts and last messages.
    Inbox {},
    /// A page of a conversation (contact or group), oldest first.
    History {
        /// Contact or group, as the user names it.
        contact: String,
        /// At most this many messages ([`super::DEFAULT_HISTORY_LIMIT`] if absent).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<usize>,
        /// Only messages before this message id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        before: Option<String>,
    },
    /// Every group (and invitation).
    Groups {},
    /// One group with its members.
    Group {
        /// The group, as the user names it.
        group: String,
    },
    /// One message by id.
    Message {
        /// The message id (hex).
        id: String,
    },
    /// What a name means: the contact or the group it resolves to, by the rules
    /// every other request uses (contacts first).
    Resolve {
        /// A contact or group, as the user names it.
        target: String,
    },
    /// Our messages that are not sent yet (`pending`) or were given up (`failed`),
    /// oldest first, in every conversation.
    Unsent {},
    /// Files sent and received, oldest first, only those of one conversation when
    /// `contact` is given.
    Files {
        /// A contact or group.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        contact: Option<String>,
    },
    /// Every conversation with its mute and draft.
    Conversations {},
    /// Full-text search over every conversation: hits best first.
    Search {
        /// The words (see docs/CLI.md, "Search", for how they match).
        query: String,
        /// Only this conversation: a contact or group, as the user names it.
        #[serde(default, rename = "in", skip_serializing_if = "Option::is_none")]
        within: Option<String>,
        /// Only messages by this contact, or `me`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<String>,
        /// At most this many hits (default 20, at most 1000).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<usize>,
    },
    /// Build the search index again from every stored message.
    SearchRebuild {},
    // ---- local writes -------------------------------------------------------------
    /// Accept a contact request.
    Accept {
        /// The contact, as the user names it.
        contact: String,
    },
    /// Reject a contact request (forgets the stranger).
    Reject {
        /// The contact.
        contact: String,
    },
    /// Block a contact or a stranger's peer id.
    Block {
        /// The contact, or a peer id.
        contact: String,
    },
    /// Unblock a blocked contact.
    Unblock {
        /// The contact.
        contact: String,
    },
    /// Remove a contact and its conversation.
    Remove {
        /// The contact.
        contact: String,
    },
    /// Mark a conversation (contact or group) read.
    Read {
        /// The contact or group.
        contact: String,
    },
    /// Set a contact's alias.
    Rename {
        /// The contact.
        contact: String,
        /// The new alias.
        alias: String,
    },
    /// Mute a conversation (contact or group): no bell and no notification for it.
    MuteConversation {
        /// The contact or group.
        contact: String,
        /// When the mute lapses (ms since the Unix epoch); forever if absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        until_ms: Option<u64>,
    },
    /// Unmute a conversation.
    UnmuteConversation {
        /// The contact or group.
        contact: String,
    },
    /// Keep the text typed and not sent in a conversation (empty: none).
    SetDraft {
        /// The contact or group.
        contact: String,
        /// The draft, at most [`kith_storage::MAX_DRAFT_LEN`] bytes.
        text: String,
    },
    // ---- network: a running node only -----------------------------------------------
    /// The node's status.
    Status {},
    /// Contacts' presence: online or not, and when last seen (empty with presence off).
    Presence {},
    /// A contact's safety number; `mark` true marks it verified (clearing a key
    /// change), false unmarks it.
    Verify {
        /// The contact.
        contact: String,
        /// Mark (`true`) or unmark (`false`) it verified; absent: only show.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mark: Option<bool>,
    },
    /// A profile: ours, or a contact's as they last sent it.
    Profile {
        /// The contact (absent: ours).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        contact: Option<String>,
        /// Include the picture's bytes (base64).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        avatar: bool,
    },
    /// Our end-to-end keys: the current one (version, expiry) and those rotated out.
    Keys {},
    /// Rotate our end-to-end key: a new one is used from now on and announced to every
    /// contact; the old one still opens mail for its window.
    RotateKey {},
    /// Change our profile and send it to every contact; what is absent stays.
    SetProfile {
        /// A new name (empty: none).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// A new status line (empty: none).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        status: Option<String>,
        /// A picture file to make the avatar from (an absolute path, read by the node).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        avatar: Option<String>,
        /// Drop the avatar.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        clear_avatar: bool,
    },
    /// Tell a conversation's peers (connected now) that we are typing in it.
    Typing {
        /// The contact or group.
        contact: String,
    },
    /// A new one-time invite.
    Invite {},
    /// Add a contact by invite (`kith:…`) or peer id.
    Add {
        /// The invite or peer id.
        target: String,
        /// The alias to give the contact.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        alias: Option<String>,
    },
    /// Send a text to a contact or group.
    Send {
        /// The contact or group.
        contact: String,
        /// The text.
        text: String,
        /// The message (id) this one answers; it must be in the same conversation.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reply_to: Option<String>,
    },
    /// Replace the text of one of our messages, for everyone who got it.
    Edit {
        /// The message id.
        id: String,
        /// The new text.
        text: String,
    },
    /// Delete a message: here only ("delete for me"), or, for one of our own
    /// messages, for everyone who got it (`for_everyone`, needs a running node).
    Delete {
        /// The message id.
        id: String,
        /// Delete it for everyone (only its author may).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        for_everyone: bool,
    },
    /// React to a message with an emoji, or take that reaction back if we gave it.
    React {
        /// The message id.
        id: String,
        /// One emoji.
        emoji: String,
    },
    /// Send a file (an absolute path on the node's machine) to a contact or group.
    SendFile {
        /// The contact or group.
        contact: String,
        /// The file, an absolute path.
        path: String,
        /// A caption sent with it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        caption: Option<String>,
    },
    /// Fetch a received file (whatever its size) and optionally save a copy.
    GetFile {
        /// The file id, or a unique prefix of it (at least 8 hex characters).
        id: String,
        /// Also save it here (an absolute path on the node's machine).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        out: Option<String>,
        /// Answer once it is complete and saved, rather than at once.
        #[serde(default)]
        wait: bool,
    },
    /// The calls in progress and the call history (newest last).
    Calls {
        /// At most this many ended calls ([`super::DEFAULT_HISTORY_LIMIT`] if absent).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<usize>,
    },
    /// Call a contact; answered once the callee's node rings.
    Call {
        /// The contact.
        contact: String,
        /// A 48 kHz 16-bit WAV file to send (an absolute path); silence if absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        input: Option<String>,
        /// Record what the contact sends into this WAV file (an absolute path).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        output: Option<String>,
    },
    /// Answer a ringing call; answered once the caller has the answer.
    Answer {
        /// The call id or a unique prefix; the only ringing call if absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        call: Option<String>,
        /// As for [`Request::Call`].
        #[serde(default, skip_serializing_if = "Option::is_none")]
        input: Option<String>,
        /// As for [`Request::Call`].
        #[serde(default, skip_serializing_if = "Option::is_none")]
        output: Option<String>,
    },
    /// Hang up a call (decline it while it rings).
    Hangup {
        /// The call id or a unique prefix; the only call if absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        call: Option<String>,
    },
    /// Mute or unmute our side of a call.
    Mute {
        /// The call id or a unique prefix; the only call with media if absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        call: Option<String>,
        /// Mute (true) or unmute (false).
        muted: bool,
    },
    /// Join a group's voice room on the first of the group's relays that serves rooms.
    RoomJoin {
        /// The group.
        group: String,
        /// As for [`Request::Call`].
        #[serde(default, skip_serializing_if = "Option::is_none")]
        input: Option<String>,
        /// As for [`Request::Call`].
        #[serde(default, skip_serializing_if = "Option::is_none")]
        output: Option<String>,
    },
    /// Leave a group's voice room.
    RoomLeave {
        /// The group.
        group: String,
    },
    /// Mute or unmute our side in a group's voice room.
    RoomMute {
        /// The group.
        group: String,
        /// Mute (true) or unmute (false).
        muted: bool,
    },
    /// The voice rooms we are in, with who is in each.
    Rooms {},
    /// Replace the pinned relays (multiaddrs).
    SetRelays {
        /// The relays' multiaddrs.
        relays: Vec<String>,
    },
    /// Dial a multiaddr.
    Dial {
        /// The address.
        addr: String,
    },
    /// Stop the node once everything is flushed.
    Shutdown {},
    /// Turn the connection into an event stream as well (the server's business).
    Subscribe {},
    /// A change to a group ([`GroupChange`], methods `group_*`).
    #[serde(skip)]
    ChangeGroup(GroupChange),
}

impl Request {
    /// Whether answering it can take long (a download it waits for): the server then
    /// watches for the client going meanwhile.
    pub fn waits_long(&self) -> bool {
        matches!(self, Request::GetFile { wait: true, .. })
    }

    /// The methods of the variants other than [`Request::ChangeGroup`], whose methods
    /// are [`GroupChange::METHODS`].
    pub const METHODS: [&'static str; 52] = [
        "contacts",
        "requests",
        "inbox",
        "history",
        "groups",
        "group",
        "message",
        "resolve",
        "unsent",
        "files",
        "conversations",
        "search",
        "search_rebuild",
        "accept",
        "reject",
        "block",
        "unblock",
        "remove",
        "read",
        "rename",
        "mute_conversation",
        "unmute_conversation",
        "set_draft",
        "status",
        "presence",
        "typing",
        "verify",
        "profile",
        "keys",
        "rotate_key",
        "set_profile",
        "invite",
        "add",
        "send",
        "edit",
        "delete",
        "react",
        "send_file",
        "get_file",
        "calls",
        "call",
        "answer",
        "hangup",
        "mute",
        "room_join",
        "room_leave",
        "room_mute",
        "rooms",
        "set_relays",
        "dial",
        "shutdown",
        "subscribe",
    ];

    /// The request a `method` with `params` (absent or `null` for none) asks for: an
    /// unknown method is [`ErrorCode::UnknownMethod`], params that do not fit it are
    /// [`ErrorCode::BadParams`].
    pub fn parse(method: &str, params: Value) -> Result<Request, ApiError> {
        let params = if params.is_null() { json!({}) } else { params };
        let tagged = json!({ "method": method, "params": params });
        let bad_params = |e: serde_json::Error| ApiError::new(ErrorCode::BadParams, format!("{method}: {e}"));
        if GroupChange::METHODS.contains(&method) {
            return serde_json::from_value(tagged).map(Request::ChangeGroup).map_err(bad_params);
        }
        if !Request::METHODS.contains(&method) {
            return Err(ApiError::new(ErrorCode::UnknownMethod, format!("no method {method:?}")));
        }
        serde_json::from_value(tagged).map_err(bad_params)
    }

    /// [`Request::parse`] of params still in their JSON text (`None`: none given),
    /// for a well-formed request: `None` if the method is unknown or the params do
    /// not fit it, which [`Request::parse`] then explains.
    pub(crate) fn parse_raw(method: &str, params: Option<&serde_json::value::RawValue>) -> Option<Request> {
        let group_change = GroupChange::METHODS.contains(&method);
        if !group_change && !Request::METHODS.contains(&method) {
            return None;
        }
        let params = params.map_or("{}", |p| p.get());
        // The tag first, so serde reads the params straight into their variant. A
        // listed method is snake_case ASCII: quoted as it is, it is its JSON string.
        let mut tagged = String::with_capacity(method.len() + params.len() + 26);
        tagged.push_str("{\"method\":\"");
        tagged.push_str(method);
        tagged.push_str("\",\"params\":");
        tagged.push_str(params);
        tagged.push('}');
        if group_change {
            return serde_json::from_str(&tagged).map(Request::ChangeGroup).ok();
        }
        serde_json::from_str(&tagged).ok()
    }

    /// The method and params that carry this request on the wire.
    pub fn to_parts(&self) -> (String, Value) {
        // Both are serde-tagged as `{"method", "params"}`.
        let tagged = match self {
            Request::ChangeGroup(change) => serde_json::to_value(change),
            request => serde_json::to_value(request),
        };
        let mut tagged = tagged.unwrap_or_default();
        let method = tagged["method"].as_str().unwrap_or_default().to_owned();
        (method, tagged["params"].take())
    }

    /// Its method name.
    pub fn method(&self) -> String {
        self.to_parts().0
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use kith_storage::Role;

    /// One request of every method, with every optional param set where there is one.
    fn one_of_each() -> Vec<Request> {
        let c = || "alice".to_owned();
        vec![
            Request::Contacts { state: Some(ContactState::Blocked) },
            Request::Requests {},
            Request::Inbox {},
            Request::History { contact: c(), limit: Some(5), before: Some("00".repeat(16)) },
            Request::Groups {},
            Request::Group { group: "friends".into() },
            Request::Message { id: "00".repeat(16) },
            Request::Resolve { target: c() },
            Request::Unsent {},
            Request::Files { contact: Some(c()) },
            Request::Conversations {},
            Request::Search { query: "café".into(), within: Some(c()), from: Some("me".into()), limit: Some(5) },
            Request::SearchRebuild {},
            Request::Accept { contact: c() },
            Request::Reject { contact: c() },
            Request::Block { contact: c() },
            Request::Unblock { contact: c() },
            Request::Remove { contact: c() },
            Request::Read { contact: c() },
            Request::Rename { contact: c(), alias: "al".into() },
            Request::MuteConversation { contact: c(), until_ms: Some(1_700_000_000_000) },
            Request::UnmuteConversation { contact: c() },
            Request::SetDraft { contact: c(), text: "half a thought".into() },
            Request::Status {},
            Request::Presence {},
            Request::Typing { contact: c() },
            Request::Verify { contact: c(), mark: Some(true) },
            Request::Profile { contact: Some(c()), avatar: true },
            Request::Keys {},
            Request::RotateKey {},
            Request::SetProfile { name: Some("Al".into()), status: Some("away".into()), avatar: Some("/tmp/me.png".into()), clear_avatar: false },
            Request::Invite {},
            Request::Add { target: "kith:x".into(), alias: Some("al".into()) },
            Request::Send { contact: c(), text: "hi".into(), reply_to: Some("00".repeat(16)) },
            Request::Edit { id: "00".repeat(16), text: "hi again".into() },
            Request::Delete { id: "00".repeat(16), for_everyone: true },
            Request::React { id: "00".repeat(16), emoji: "👍".into() },
            Request::SendFile { contact: c(), path: "/tmp/a.png".into(), caption: Some("look".into()) },
            Request::GetFile { id: "ab".repeat(8), out: Some("/tmp/b.png".into()), wait: true },
            Request::Calls { limit: Some(5) },
            Request::Call { contact: c(), input: Some("/tmp/in.wav".into()), output: None },
            Request::Answer { call: Some("ab".into()), input: None, output: Some("/tmp/out.wav".into()) },
            Request::Hangup { call: None },
            Request::Mute { call: None, muted: true },
            Request::RoomJoin { group: "club".into(), input: None, output: None },
            Request::RoomLeave { group: "club".into() },
            Request::RoomMute { group: "club".into(), muted: true },
            Request::Rooms {},
            Request::SetRelays { relays: vec!["/ip4/127.0.0.1/tcp/1".into()] },
            Request::Dial { addr: "/ip4/127.0.0.1/tcp/1".into() },
            Request::Shutdown {},
            Request::Subscribe {},
        ]
    }

    #[test]
    fn every_method_goes_over_the_wire_and_back() {
        let requests = one_of_each();
        let methods: Vec<String> = requests.iter().map(Request::method).collect();
        assert_eq!(methods, Request::METHODS, "METHODS lists every variant, in order");
        for request in requests {
            let (method, params) = request.to_parts();
            assert_eq!(Request::parse(&method, params).unwrap(), request);
        }
        let change = Request::ChangeGroup(GroupChange::Rename { group: "g".into(), name: "n".into() });
        let (method, params) = change.to_parts();
        assert_eq!(method, "group_rename");
        assert_eq!(Request::parse(&method, params).unwrap(), change);
    }

    #[test]
    fn group_changes_round_trip_through_their_control_requests() {
        let (g, m) = (String::from("club"), String::from("bob"));
        let all = [
            GroupChange::Create { name: "club".into() },
            GroupChange::Add { group: g.clone(), contact: m.clone() },
            GroupChange::Remove { group: g.clone(), member: m.clone() },
            GroupChange::SetRole { group: g.clone(), member: m.clone(), role: Role::Admin },
            GroupChange::Rename { group: g.clone(), name: "new".into() },
            GroupChange::Leave { group: g.clone() },
            GroupChange::Accept { group: g.clone() },
            GroupChange::Decline { group: g },
        ];
        let requests: Vec<Request> = all.into_iter().map(Request::ChangeGroup).collect();
        let methods: Vec<String> = requests.iter().map(Request::method).collect();
        assert_eq!(methods, GroupChange::METHODS);
        for request in requests {
            let (method, params) = request.to_parts();
            assert_eq!(Request::parse(&method, params).unwrap(), request);
        }
        let set_role = GroupChange::SetRole { group: "g".into(), member: "m".into(), role: Role::Member };
        let (_, params) = Request::ChangeGroup(set_role).to_parts();
        assert_eq!(params, json!({ "group": "g", "member": "m", "role": "member" }));
        assert!(!matches!(Request::parse("group", json!({ "group": "g" })).unwrap(), Request::ChangeGroup(_)));
        assert_eq!(Request::parse("group_add", json!({ "group": "g" })).unwrap_err().code, ErrorCode::BadParams);
    }

    #[test]
    fn the_quick_read_of_a_line_agrees_with_the_read_through_a_value() {
        use super::super::server::{parse_quick, parse_through_value};
        // `parse_raw` quotes a method name as it is: none needs escaping.
        for method in Request::METHODS.iter().chain(GroupChange::METHODS.iter()) {
            assert!(method.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{method}");
        }
        let change = Request::ChangeGroup(GroupChange::SetRole { group: "g".into(), member: "m".into(), role: Role::Admin });
        for (n, request) in one_of_each().into_iter().chain([change]).enumerate() {
            let (method, params) = request.to_parts();
            let line = json!({ "id": n, "method": method, "params": params }).to_string();
            let quick = parse_quick(line.as_bytes()).unwrap_or_else(|| panic!("not taken quickly: {line}"));
            assert_eq!(quick, (json!(n), request.clone()), "{line}");
            assert_eq!(parse_through_value(line.as_bytes()).ok(), Some(quick), "{line}");
        }
        // Params left out or null, an id of any kind, escapes but `\u`, fields it does not use.
        let taken: [(&str, Value, Request); 4] = [
            (r#"{"method":"status"}"#, Value::Null, Request::Status {}),
            (r#" {"id":"a","method":"status","params":null} "#, json!("a"), Request::Status {}),
            (
                r#"{"params":{"contact":"b\/ob","text":"\"hi\"\n\t\\ é"},"method":"send","id":[1,{"x":2}]}"#,
                json!([1, { "x": 2 }]),
                Request::Send { contact: "b/ob".into(), text: "\"hi\"\n\t\\ é".into(), reply_to: None },
            ),
            (r#"{"id":1,"method":"status","params":{},"extra":{"deep":[true,null]}}"#, json!(1), Request::Status {}),
        ];
        for (line, id, request) in taken {
            assert_eq!(parse_quick(line.as_bytes()), Some((id, request)), "{line}");
            assert_eq!(parse_quick(line.as_bytes()), parse_through_value(line.as_bytes()).ok(), "{line}");
        }
        // Left to the read through a `Value`, which answers each as it always has.
        for line in [
            &b"[1, 2, 3]"[..],
            b"{\"id\": 2}",
            b"{\"id\": 3, \"method\": 7}",
            b"{\"method\": \"frobnicate\"}",
            b"{\"method\": \"send\", \"params\": {\"contact\": 5}}",
            b"{\"method\": \"status\", \"method\": \"inbox\"}",
            b"{\"method\": \"send\", \"params\": {\"contact\": \"a\", \"text\": \"x\", \"text\": \"y\"}}",
            b"{\"method\": \"status\", \"x\": \"\xff\"}",
            b"{\"method\": \"status\"} trailing",
        ] {
            assert_eq!(parse_quick(line), None, "{}", String::from_utf8_lossy(line));
        }
        // serde_json checks less in a value it skips than in one it reads into a
        // `Value`: a lone surrogate, a number past f64, nesting past 128. Such a
        // line is refused through a `Value`, so the quick read must not take it.
        let deep = format!(r#"{{"method":"status","x":{}{}}}"#, "[".repeat(200), "]".repeat(200));
        let skipped_leniently = [
            r#"{"method":"status","x":"\ud800"}"#.to_owned(),
            r#"{"method":"status","x":1e400}"#.to_owned(),
            format!(r#"{{"method":"status","x":{}}}"#, "9".repeat(400)),
            deep,
            r#"{"method":"send","params":{"contact":"a","text":"x","x":"\udc00"}}"#.to_owned(),
            r#"{"method":"send","params":{"contact":"a","text":"x","x":-2E+999}}"#.to_owned(),
            // An escaped backslash before a `u` starts no escape: the number is seen.
            r#"{"method":"status","x":["\\u",1e999]}"#.to_owned(),
        ];
        for line in &skipped_leniently {
            assert_eq!(parse_quick(line.as_bytes()), None, "{line}");
            assert!(parse_through_value(line.as_bytes()).is_err(), "{line}");
        }
        // Refused by the quick read on its bytes alone, and taken through a `Value`.
        let cautious = r#"{"method":"send","params":{"contact":"a","text":"3e5 \ud83d\ude00"}}"#;
        assert_eq!(parse_quick(cautious.as_bytes()), None);
        let (_, request) = parse_through_value(cautious.as_bytes()).unwrap();
        assert_eq!(request, Request::Send { contact: "a".into(), text: "3e5 \u{1F600}".into(), reply_to: None });
        // Other `\u` escapes (an ASCII-only client's é) go the quick way.
        let escaped = r#"{"method":"send","params":{"contact":"a","text":"caf\u00e9 \u001b"}}"#;
        let quick = parse_quick(escaped.as_bytes());
        assert_eq!(quick, Some((Value::Null, Request::Send { contact: "a".into(), text: "caf\u{e9} \u{1b}".into(), reply_to: None })));
        assert_eq!(quick, parse_through_value(escaped.as_bytes()).ok());
        let repeated = br#"{"method": "send", "params": {"contact": "a", "text": "x", "text": "y"}}"#;
        let (_, request) = parse_through_value(repeated).unwrap();
        assert_eq!(request, Request::Send { contact: "a".into(), text: "y".into(), reply_to: None });
    }

    #[test]
    fn params_may_be_left_out_where_none_are_needed() {
        assert_eq!(Request::parse("status", Value::Null).unwrap(), Request::Status {});
        assert_eq!(Request::parse("contacts", json!({})).unwrap(), Request::Contacts { state: None });
        assert_eq!(
            Request::parse("history", json!({ "contact": "bob" })).unwrap(),
            Request::History { contact: "bob".into(), limit: None, before: None }
        );
    }

    #[test]
    fn unknown_methods_and_bad_params_are_told_apart() {
        assert_eq!(Request::parse("launch", Value::Null).unwrap_err().code, ErrorCode::UnknownMethod);
        let missing = Request::parse("send", json!({ "contact": "bob" })).unwrap_err();
        assert_eq!(missing.code, ErrorCode::BadParams);
        assert!(missing.message.contains("text"), "{missing:?}");
        assert_eq!(Request::parse("history", json!({ "contact": 5 })).unwrap_err().code, ErrorCode::BadParams);
        assert_eq!(Request::parse("group_add", json!({})).unwrap_err().code, ErrorCode::BadParams);
    }
}
