//! The operator's HTTP endpoint: `GET /metrics` (Prometheus, OpenMetrics text) and
//! `GET /health` (200 `ok` while the process serves).
//!
//! Meant for loopback or a private network: it has no authentication, and axum
//! handles each connection on its own task.

use std::future::{Future, IntoFuture};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::metrics::Exposition;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// The content type of `/metrics` responses.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Binds `addr` (port 0 picks a free port) and returns the bound address with the
/// server future, which serves until it fails or is dropped. Binding happens before
/// this returns, so callers learn the real port and bind errors early.
///
/// Dropping (or aborting) the future stops accepting connections; requests already
/// accepted finish on their own tasks.
pub async fn serve_metrics(
    addr: SocketAddr,
    exposition: Arc<Exposition>,
) -> io::Result<(
    SocketAddr,
    impl Future<Output = io::Result<()>> + Send + 'static,
)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(|| async { "ok\n" }))
        .with_state(exposition);
    tracing::info!(%bound, "serving metrics");
    Ok((bound, axum::serve(listener, app).into_future()))
}

async fn metrics(State(exposition): State<Arc<Exposition>>) -> Response {
    match exposition.encode() {
        Ok(body) => ([(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)], body).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "encoding metrics failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}
