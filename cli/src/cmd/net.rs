//! Commands that talk to the node: over the control socket when a daemon runs, else
//! (for methods that need no network) directly on the store.

use kith_p2p::control::{ApiError, Backend, Client, ClientError, ErrorCode, Request, dispatch};
use kith_p2p::home::Home;
use kith_p2p::node::LocalContext;
use serde_json::Value;

use crate::failure::{Code, Failure, Result};

/// A single-threaded runtime is plenty for one request.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}

/// Call `method` on the home's node, or offline when no node runs and the method
/// allows it. Errors carry the documented exit codes.
pub(crate) fn call(home: &Home, request: Request) -> Result<Value> {
    runtime()?.block_on(call_async(home, request))
}

pub(crate) async fn call_async(home: &Home, request: Request) -> Result<Value> {
    match Client::connect(&home.socket_path()).await {
        Ok(mut client) => client.request(&request).await.map_err(client_failure),
        Err(ClientError::NoNode) => offline(home, request).await,
        Err(e) => Err(client_failure(e)),
    }
}

async fn offline(home: &Home, request: Request) -> Result<Value> {
    let store = kith_p2p::data::open_store(home).map_err(|e| {
        Failure::new(Code::Error, anyhow::anyhow!("{e} (is a kith node starting or stopping?)"))
    })?;
    let me = kith_p2p::data::recorded_peer_id(&store).ok_or_else(|| {
        Failure::usage(format!("no identity in {}; run `kith init` first", home.root().display()))
    })?;
    let config = super::load_config(home)?;
    let display_name = kith_p2p::node::profiles::name_we_go_by(&store, &me, config.display_name);
    let context = LocalContext { me, display_name, read_receipts: config.read_receipts };
    let reply = dispatch(&Backend::Offline { store, context }, request).await.map_err(api_failure)?;
    Ok(serde_json::from_str(reply.get())?)
}

/// Map a control error to the CLI's exit codes.
pub(crate) fn client_failure(e: ClientError) -> Failure {
    match e {
        ClientError::NoNode => Failure::new(Code::NoNode, e),
        ClientError::Api(api) => api_failure(api),
        other => Failure::new(Code::Error, other),
    }
}

fn api_failure(e: ApiError) -> Failure {
    let code = match e.code {
        ErrorCode::NoNode => Code::NoNode,
        ErrorCode::UnknownContact
        | ErrorCode::AmbiguousContact
        | ErrorCode::Invalid
        | ErrorCode::BadParams
        | ErrorCode::TooLong
        | ErrorCode::TooLarge
        | ErrorCode::UnknownMessage
        | ErrorCode::UnknownGroup
        | ErrorCode::UnknownFile
        | ErrorCode::UnknownCall
        | ErrorCode::NotAllowed => Code::Usage,
        _ => Code::Error,
    };
    let name = e.code.as_str();
    Failure::new(code, e).named(name)
}
