//! Method dispatch, shared by the socket server (a running node) and the offline CLI.

use kith_storage::{ContactState, Mute, Store};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::request::Request;
use crate::invite::{Invite, SCHEME};
use crate::node::{LocalContext, LocalOp, NodeError, NodeHandle};
use crate::ops::{self, OpError};
use crate::views::{ContactView, GroupView};

/// Where requests go: a running node, or the store directly when no node runs.
#[derive(Clone)]
pub enum Backend {
    /// A running node; every method is available.
    Node(NodeHandle),
    /// No node: only methods that need no network.
    Offline {
        /// The opened store.
        store: Store,
        /// Who the user is.
        context: LocalContext,
    },
}

/// The machine-readable error codes of the control API: stable on the wire as the
/// snake_case strings docs/API.md lists. Clients branch on them (the CLI maps them to
/// exit codes in one place).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The line is not a JSON request (or has no `method`).
    BadRequest,
    /// The params do not fit the method.
    BadParams,
    /// No such method.
    UnknownMethod,
    /// No contact matches.
    UnknownContact,
    /// Several contacts match.
    AmbiguousContact,
    /// The contact is in a state that does not allow this.
    WrongState,
    /// No such message.
    UnknownMessage,
    /// No such group.
    UnknownGroup,
    /// No such file.
    UnknownFile,
    /// No call matches.
    UnknownCall,
    /// The call ended before the request was through (the message says why:
    /// `unreachable`, `refused`, `busy`, `declined`, ...).
    CallEnded,
    /// A group change the user has no right to make, or that would change nothing.
    NotAllowed,
    /// A text over its limit.
    TooLong,
    /// A malformed id, invite, address or target.
    Invalid,
    /// The node's database failed.
    Storage,
    /// The peer could not be found.
    PeerNotFound,
    /// The method needs a running node (only from the offline CLI path).
    NoNode,
    /// The node is shutting down.
    Stopped,
    /// The request line is over the size limit.
    TooLarge,
    /// The node already serves as many control clients as it takes: try again once
    /// one has gone.
    TooManyClients,
    /// The node failed to encode its own answer (a bug).
    Internal,
    /// A code this build does not know (from a newer node).
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::BadParams => "bad_params",
            ErrorCode::UnknownMethod => "unknown_method",
            ErrorCode::UnknownContact => "unknown_contact",
            ErrorCode::AmbiguousContact => "ambiguous_contact",
            ErrorCode::WrongState => "wrong_state",
            ErrorCode::UnknownMessage => "unknown_message",
            ErrorCode::UnknownGroup => "unknown_group",
            ErrorCode::UnknownFile => "unknown_file",
            ErrorCode::UnknownCall => "unknown_call",
            ErrorCode::CallEnded => "call_ended",
            ErrorCode::NotAllowed => "not_allowed",
            ErrorCode::TooLong => "too_long",
            ErrorCode::Invalid => "invalid",
            ErrorCode::Storage => "storage",
            ErrorCode::PeerNotFound => "peer_not_found",
            ErrorCode::NoNode => "no_node",
            ErrorCode::Stopped => "stopped",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::TooManyClients => "too_many_clients",
            ErrorCode::Internal => "internal",
            ErrorCode::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A typed error on the wire: `code` is stable (docs/API.md), `message` is for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// Machine-readable code.
    pub code: ErrorCode,
    /// Human-readable explanation.
    pub message: String,
}

impl ApiError {
    /// An error with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError { code, message: message.into() }
    }
}

impl From<OpError> for ApiError {
    fn from(e: OpError) -> ApiError {
        let code = match &e {
            OpError::UnknownContact(_) => ErrorCode::UnknownContact,
            OpError::AmbiguousContact { .. } => ErrorCode::AmbiguousContact,
            OpError::WrongState { .. } => ErrorCode::WrongState,
            OpError::UnknownMessage(_) => ErrorCode::UnknownMessage,
            OpError::UnknownFile(_) => ErrorCode::UnknownFile,
            OpError::UnknownGroup(_) => ErrorCode::UnknownGroup,
            OpError::NotAllowed(_) => ErrorCode::NotAllowed,
            OpError::TooLong { .. } => ErrorCode::TooLong,
            OpError::Invalid(_) => ErrorCode::Invalid,
            _ => ErrorCode::Storage,
        };
        ApiError::new(code, e.to_string())
    }
}

impl From<NodeError> for ApiError {
    fn from(e: NodeError) -> ApiError {
        match e {
            NodeError::Op(op) => op.into(),
            NodeError::PeerNotFound(_) => ApiError::new(ErrorCode::PeerNotFound, e.to_string()),
            NodeError::BadTarget(_) => ApiError::new(ErrorCode::Invalid, e.to_string()),
            NodeError::Stopped => ApiError::new(ErrorCode::Stopped, e.to_string()),
            NodeError::Blob(ref blob) => ApiError::new(blob_code(blob), e.to_string()),
            NodeError::Fetch(ref fetch) => {
                use crate::blob::transfer::FetchError;
                let code = match fetch {
                    // No one reachable held it, or those who did failed us.
                    FetchError::NotHeld { .. } | FetchError::Network(_) | FetchError::BadAnswer(_) => ErrorCode::PeerNotFound,
                    FetchError::Store(blob) => blob_code(blob),
                    FetchError::Stopped => ErrorCode::Stopped,
                };
                ApiError::new(code, e.to_string())
            }
            NodeError::Upload(crate::blob::media::UploadError::Local(ref blob)) => ApiError::new(blob_code(blob), e.to_string()),
            NodeError::FilesOff | NodeError::Upload(_) => ApiError::new(ErrorCode::NotAllowed, e.to_string()),
            NodeError::Call(call) => call.into(),
        }
    }
}

/// The code for a failure with a file: one over 64 GiB is `invalid`; anything else
/// is our blob store's (`storage`). (The user's own path is checked before, as
/// `invalid` with the path: `NodeHandle::send_file`.)
fn blob_code(e: &crate::blob::BlobError) -> ErrorCode {
    match e {
        crate::blob::BlobError::TooLarge => ErrorCode::Invalid,
        _ => ErrorCode::Storage,
    }
}

impl From<crate::call::CallError> for ApiError {
    fn from(e: crate::call::CallError) -> ApiError {
        use crate::call::CallError;
        let code = match &e {
            CallError::NotContact(_) | CallError::InCall => ErrorCode::WrongState,
            CallError::NoSuchCall(_) | CallError::NotInRoom(_) => ErrorCode::UnknownCall,
            CallError::Ambiguous | CallError::Audio(_) => ErrorCode::Invalid,
            CallError::Ended(_) => ErrorCode::CallEnded,
            CallError::Storage(_) => ErrorCode::Storage,
            CallError::Stopped => ErrorCode::Stopped,
            _ => ErrorCode::Internal,
        };
        ApiError::new(code, e.to_string())
    }
}

/// A request's result as JSON text, serialized once, straight from what the
/// operation returned: no `Value` tree of maps and strings per answer (every
/// `send` has one).
pub type Reply = Box<serde_json::value::RawValue>;

/// The result of `calls`: the calls under way, and the newest ended ones.
#[derive(Serialize)]
struct CallsView {
    active: Vec<crate::call::CallView>,
    history: Vec<crate::views::CallRecordView>,
}

/// The answer to `subscribe`.
pub(crate) fn subscribed() -> Result<Reply, ApiError> {
    reply(json!({ "subscribed": true }))
}

/// `value` as a [`Reply`].
fn reply<T: Serialize>(value: T) -> Result<Reply, ApiError> {
    serde_json::value::to_raw_value(&value).map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))
}

/// Runs `work` on the runtime's blocking pool, off the async workers the node's
/// network shares; a panic in it is an `internal` error.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work).await.map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))
}

/// Default page size of `history`.
pub const DEFAULT_HISTORY_LIMIT: usize = 50;

/// Said to people running a command offline, so it names no internal method.
fn no_node() -> ApiError {
    ApiError::new(ErrorCode::NoNode, "this command needs a running node; start one with `kith daemon` (or open `kith`)")
}

/// Run a storage operation as the single writer on either backend.
async fn local(backend: &Backend, op: LocalOp) -> Result<Reply, ApiError> {
    let value = match backend {
        Backend::Node(handle) => handle.local(op).await?,
        Backend::Offline { store, context } => {
            let value = op(store, context)?;
            store.flush().map_err(OpError::from)?;
            value
        }
    };
    reply(value)
}

fn store_of(backend: &Backend) -> (&Store, Option<&NodeHandle>) {
    match backend {
        Backend::Node(handle) => (handle.store(), Some(handle)),
        Backend::Offline { store, .. } => (store, None),
    }
}

/// The node's search index, or without a node the database's, opened for this request.
fn search_index(backend: &Backend) -> Result<std::sync::Arc<kith_search::SearchIndex>, ApiError> {
    match backend {
        Backend::Node(handle) => Ok(handle.search_index()?.clone()),
        Backend::Offline { store, .. } => Ok(std::sync::Arc::new(crate::search::open_index(store)?)),
    }
}

fn me(backend: &Backend) -> libp2p::PeerId {
    match backend {
        Backend::Node(handle) => handle.peer_id(),
        Backend::Offline { context, .. } => context.me,
    }
}

/// What a contact operation does (the local writes on one contact).
#[derive(Clone, Copy)]
enum ContactOp {
    Accept,
    Reject,
    Block,
    Unblock,
    Remove,
    Read,
}

/// Answer one request. [`Request::Subscribe`] is the server's business: here it only
/// says that it needs a node.
pub async fn dispatch(backend: &Backend, request: Request) -> Result<Reply, ApiError> {
    let (store, node) = store_of(backend);
    let contact_op = |op: ContactOp, contact: String| {
        local(backend, Box::new(move |store, ctx| contact_op(store, ctx, op, &contact)))
    };
    // After a change that can leave files no message keeps: the node removes them
    // (without a node, its next start does).
    let sweeping_files = |reply: Result<Reply, ApiError>| {
        if let (Ok(_), Some(node)) = (&reply, node) {
            node.sweep_files();
        }
        reply
    };
    match request {
        // ---- reads: straight from the store --------------------------------------
        Request::Contacts { state } => reply(ops::contacts(store, state)?),
        Request::Requests {} => reply(ops::requests(store, &me(backend))?),
        Request::Inbox {} => reply(ops::inbox(store)?),
        Request::History { contact, limit, before } => {
            let limit = limit.unwrap_or(DEFAULT_HISTORY_LIMIT);
            let (store, me) = (store.clone(), me(backend));
            let page = move || match ops::resolve_target(&store, &contact)? {
                ops::Target::Contact(contact) => reply(ops::history(&store, &me, &contact, limit, before.as_deref())?),
                ops::Target::Group(group) => reply(ops::group_history(&store, &group, limit, before.as_deref())?),
            };
            match node {
                // A page can be a whole long conversation (a script's `--limit
                // 100000`): read off the node's two runtime workers, so that its
                // network and its other clients go on meanwhile.
                Some(_) => blocking(page).await?,
                // Offline there is no network to hold up (and the fuzz target runs
                // this without a runtime).
                None => page(),
            }
        }
        Request::Groups {} => {
            let groups = store.groups().list().map_err(OpError::from)?;
            reply(groups.iter().map(|g| GroupView::new(store, g)).collect::<Vec<_>>())
        }
        Request::Group { group } => reply(GroupView::new(store, &ops::resolve_group(store, &group)?)),
        Request::Message { id: text } => {
            let id = text.parse().map_err(|_| ApiError::new(ErrorCode::Invalid, format!("bad message id {text:?}")))?;
            let message = store
                .messages()
                .get(id)
                .map_err(OpError::from)?
                .ok_or_else(|| ApiError::new(ErrorCode::UnknownMessage, format!("no message {text}")))?;
            reply(ops::message_view(store, &message)?)
        }
        Request::Resolve { target } => match ops::resolve_target(store, &target)? {
            ops::Target::Contact(contact) => reply(json!({ "kind": "contact", "contact": ContactView::from(&contact) })),
            ops::Target::Group(group) => reply(json!({ "kind": "group", "group": GroupView::new(store, &group) })),
        },
        Request::Unsent {} => {
            // It reads every message: off the connection's async worker.
            let store = store.clone();
            let unsent = blocking(move || ops::unsent(&store)).await??;
            reply(unsent)
        }
        Request::Files { contact } => reply(ops::files(store, &me(backend), contact.as_deref())?),
        Request::Calls { limit } => {
            let history = store.calls().recent(limit.unwrap_or(DEFAULT_HISTORY_LIMIT)).map_err(OpError::from)?;
            let active = match node {
                Some(node) => node.active_calls().await?,
                None => Vec::new(),
            };
            let history: Vec<crate::views::CallRecordView> = history.iter().map(crate::views::CallRecordView::from).collect();
            reply(CallsView { active, history })
        }
        Request::Conversations {} => reply(ops::conversations(store, ops::now_ms())?),
        Request::Profile { contact, avatar } => {
            let peer = match contact {
                None => me(backend),
                Some(query) => ops::resolve_contact(store, &query)?.peer_id,
            };
            reply(crate::node::profiles::view(store, &peer, avatar)?)
        }
        Request::Search { query, within, from, limit } => {
            let (store, me) = (store.clone(), me(backend));
            let index = search_index(backend)?;
            let hits = blocking(move || {
                let params = crate::search::SearchParams { query: &query, within: within.as_deref(), from: from.as_deref(), limit };
                crate::search::search(&store, &index, &me, &params)
            })
            .await??;
            reply(hits)
        }
        Request::SearchRebuild {} => {
            let store = store.clone();
            let index = search_index(backend)?;
            let held = blocking(move || crate::search::rebuild(&store, &index)).await??;
            reply(json!({ "messages": held }))
        }
        // ---- local writes: through the single writer ----------------------------
        Request::Accept { contact } => contact_op(ContactOp::Accept, contact).await,
        Request::Reject { contact } => sweeping_files(contact_op(ContactOp::Reject, contact).await),
        Request::Block { contact } => contact_op(ContactOp::Block, contact).await,
        Request::Unblock { contact } => contact_op(ContactOp::Unblock, contact).await,
        Request::Remove { contact } => sweeping_files(contact_op(ContactOp::Remove, contact).await),
        Request::Read { contact } => contact_op(ContactOp::Read, contact).await,
        Request::Verify { contact, mark } => {
            local(
                backend,
                Box::new(move |store, ctx| {
                    let contact = ops::resolve_contact(store, &contact)?;
                    Ok(json!(ops::verify(store, &ctx.me, &contact, mark)?))
                }),
            )
            .await
        }
        Request::Rename { contact, alias } => {
            local(
                backend,
                Box::new(move |store, _| {
                    let contact = ops::resolve_contact(store, &contact)?;
                    Ok(json!(ContactView::from(&ops::rename(store, &contact, &alias)?)))
                }),
            )
            .await
        }
        Request::MuteConversation { contact, until_ms } => {
            let mute = until_ms.map_or(Mute::Forever, Mute::Until);
            set_mute(backend, contact, Some(mute)).await
        }
        Request::UnmuteConversation { contact } => set_mute(backend, contact, None).await,
        Request::Delete { id, for_everyone: false } => sweeping_files(
            local(backend, Box::new(move |store, ctx| Ok(json!({ "hidden": ops::hide(store, &ctx.me, &id)? })))).await,
        ),
        Request::SetDraft { contact, text } => {
            local(
                backend,
                Box::new(move |store, ctx| Ok(json!(ops::set_draft(store, &ctx.me, &contact, &text, ops::now_ms())?))),
            )
            .await
        }
        // ---- network: a running node only ---------------------------------------
        request => match node {
            Some(node) => network(node, request).await,
            None => Err(no_node()),
        },
    }
}

async fn network(node: &NodeHandle, request: Request) -> Result<Reply, ApiError> {
    match request {
        Request::ChangeGroup(change) => reply(node.group(change).await?),
        Request::Status {} => reply(node.status().await?),
        Request::Invite {} => {
            let invite = node.invite().await?;
            let qr = invite.to_qr().unwrap_or_default();
            reply(json!({ "invite": invite.to_uri(), "qr": qr }))
        }
        Request::Add { target, alias } => {
            let target = target.trim();
            let contact = if target.get(..SCHEME.len()).is_some_and(|s| s.eq_ignore_ascii_case(SCHEME)) {
                let invite: Invite = target.parse().map_err(|e| ApiError::new(ErrorCode::Invalid, format!("bad invite: {e}")))?;
                node.add_invite(invite, alias).await?
            } else {
                let peer = target
                    .parse()
                    .map_err(|_| ApiError::new(ErrorCode::Invalid, format!("{target:?} is neither an invite nor a peer id")))?;
                node.add_peer(peer, alias).await?
            };
            reply(contact)
        }
        Request::Send { contact, text, reply_to: None } => reply(node.send(&contact, &text).await?),
        Request::Send { contact, text, reply_to: Some(id) } => reply(node.reply(&contact, &text, &id).await?),
        Request::Edit { id, text } => reply(node.edit(&id, &text).await?),
        Request::Presence {} => reply(node.presence().await?),
        Request::Keys {} => reply(node.keys().await?),
        Request::RotateKey {} => reply(node.rotate_key().await?),
        Request::SetProfile { name, status, avatar, clear_avatar } => {
            if avatar.is_some() && clear_avatar {
                return Err(OpError::Invalid("give a picture or drop it, not both".into()).into());
            }
            let avatar = match avatar {
                Some(path) => {
                    let path = absolute(&path)?;
                    let made = tokio::task::spawn_blocking(move || crate::profile::avatar_from_file(&path))
                        .await
                        .map_err(|e| OpError::Invalid(format!("reading the picture failed: {e}")))?;
                    Some(Some(made.map_err(|e| OpError::Invalid(e.to_string()))?))
                }
                None if clear_avatar => Some(None),
                None => None,
            };
            reply(node.set_profile(crate::node::profiles::ProfileChange { name, status, avatar }).await?)
        }
        Request::Typing { contact } => reply(json!({ "told": node.typing(&contact).await? })),
        Request::Delete { id, for_everyone: true } => reply(node.delete_for_everyone(&id).await?),
        Request::React { id, emoji } => reply(node.react(&id, &emoji).await?),
        Request::SendFile { contact, path, caption } => {
            let path = absolute(&path)?;
            reply(node.send_file(&contact, &path, caption.as_deref().unwrap_or_default()).await?)
        }
        Request::GetFile { id, out, wait } => {
            let out = out.as_deref().map(absolute).transpose()?;
            reply(node.get_file(&id, out, wait).await?)
        }
        Request::Call { contact, input, output } => {
            let audio = audio_choice(input, output)?;
            reply(node.call(&contact, audio).await?)
        }
        Request::Answer { call, input, output } => {
            let audio = audio_choice(input, output)?;
            reply(node.answer(call, audio).await?)
        }
        Request::Hangup { call } => reply(node.hangup(call).await?),
        Request::Mute { call, muted } => reply(node.mute(call, muted).await?),
        Request::RoomJoin { group, input, output } => {
            let audio = audio_choice(input, output)?;
            reply(node.join_room(&group, audio).await?)
        }
        Request::RoomLeave { group } => reply(node.leave_room(&group).await?),
        Request::RoomMute { group, muted } => reply(node.mute_room(&group, muted).await?),
        Request::Rooms {} => reply(node.rooms().await?),
        Request::SetRelays { relays } => {
            let relays = relays
                .iter()
                .map(|a| a.parse().map_err(|_| ApiError::new(ErrorCode::Invalid, format!("bad multiaddr {a:?}"))))
                .collect::<Result<Vec<_>, _>>()?;
            node.set_relays(relays).await?;
            reply(json!({}))
        }
        Request::Dial { addr } => {
            let addr = addr.parse().map_err(|_| ApiError::new(ErrorCode::Invalid, format!("bad multiaddr {addr:?}")))?;
            node.dial(addr).await?;
            reply(json!({}))
        }
        Request::Shutdown {} => {
            node.shutdown().await;
            reply(json!({}))
        }
        Request::Subscribe {} => subscribed(),
        other => Err(ApiError::new(ErrorCode::Internal, format!("`{}` is not a network method", other.method()))),
    }
}

/// Mute (`Some`) or unmute (`None`) the conversation with `contact`.
async fn set_mute(backend: &Backend, contact: String, mute: Option<Mute>) -> Result<Reply, ApiError> {
    local(
        backend,
        Box::new(move |store, ctx| Ok(json!(ops::set_mute(store, &ctx.me, &contact, mute, ops::now_ms())?))),
    )
    .await
}

/// A call's audio files, both absolute paths.
fn audio_choice(input: Option<String>, output: Option<String>) -> Result<crate::call::AudioChoice, ApiError> {
    Ok(crate::call::AudioChoice {
        input: input.as_deref().map(absolute).transpose()?,
        output: output.as_deref().map(absolute).transpose()?,
    })
}

/// A path from a client: absolute, since the node's working directory is not the
/// client's.
fn absolute(path: &str) -> Result<std::path::PathBuf, ApiError> {
    let path = std::path::PathBuf::from(path);
    if !path.is_absolute() {
        return Err(ApiError::new(ErrorCode::Invalid, format!("{} is not an absolute path", path.display())));
    }
    Ok(path)
}

fn contact_op(store: &Store, ctx: &LocalContext, op: ContactOp, query: &str) -> Result<Value, OpError> {
    let contact = match (ops::resolve_contact(store, query), op) {
        (Ok(c), _) => c,
        // Marking read works on groups too.
        (Err(OpError::UnknownContact(q)), ContactOp::Read) => {
            let group = match ops::resolve_group(store, query) {
                Err(OpError::UnknownGroup(_)) => return Err(OpError::UnknownContact(q)),
                other => other?,
            };
            return Ok(json!({ "marked": ops::mark_group_read(store, &ctx.me, &group, ctx.read_receipts)? }));
        }
        // Blocking someone who is not a contact yet (a stranger's peer id) is allowed.
        (Err(OpError::UnknownContact(_)), ContactOp::Block) => {
            return Ok(json!(ContactView::from(&ops::block_stranger(store, query)?)));
        }
        (Err(e), _) => return Err(e),
    };
    let view = match op {
        ContactOp::Accept => {
            let accepted = ops::accept(store, &contact, ctx.display_name.as_deref())?;
            crate::node::profiles::share(store, &ctx.me, &accepted.peer_id)?;
            ContactView::from(&accepted)
        }
        ContactOp::Reject => {
            ops::reject(store, &ctx.me, &contact)?;
            return Ok(json!({ "removed": contact.peer_id.to_base58() }));
        }
        ContactOp::Remove => {
            ops::remove(store, &ctx.me, &contact)?;
            return Ok(json!({ "removed": contact.peer_id.to_base58() }));
        }
        ContactOp::Block => ContactView::from(&ops::set_state(store, &contact, ContactState::Blocked)?),
        ContactOp::Unblock => {
            if contact.state != ContactState::Blocked {
                return Err(OpError::WrongState { peer: contact.peer_id.to_base58(), state: contact.state, why: "not blocked" });
            }
            // Changes made while blocked never reached them.
            crate::node::profiles::share(store, &ctx.me, &contact.peer_id)?;
            ContactView::from(&ops::set_state(store, &contact, ContactState::Accepted)?)
        }
        ContactOp::Read => {
            let marked = ops::mark_read(store, &ctx.me, &contact, ctx.read_receipts)?;
            return Ok(json!({ "marked": marked }));
        }
    };
    Ok(json!(view))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_are_their_snake_case_strings_on_the_wire() {
        let all = [
            ErrorCode::BadRequest,
            ErrorCode::BadParams,
            ErrorCode::UnknownMethod,
            ErrorCode::UnknownContact,
            ErrorCode::AmbiguousContact,
            ErrorCode::WrongState,
            ErrorCode::UnknownMessage,
            ErrorCode::UnknownGroup,
            ErrorCode::NotAllowed,
            ErrorCode::TooLong,
            ErrorCode::Invalid,
            ErrorCode::Storage,
            ErrorCode::PeerNotFound,
            ErrorCode::NoNode,
            ErrorCode::Stopped,
            ErrorCode::TooLarge,
            ErrorCode::Internal,
        ];
        for code in all {
            assert_eq!(serde_json::to_value(code).unwrap(), json!(code.as_str()));
            assert_eq!(serde_json::from_value::<ErrorCode>(json!(code.as_str())).unwrap(), code);
        }
        let error = ApiError::new(ErrorCode::NoNode, "start one");
        assert_eq!(serde_json::to_value(&error).unwrap(), json!({"code": "no_node", "message": "start one"}));
        // A newer node's code still reads, as `Unknown`.
        let newer: ApiError = serde_json::from_value(json!({"code": "quota_exceeded", "message": "m"})).unwrap();
        assert_eq!(newer.code, ErrorCode::Unknown);
    }
}
