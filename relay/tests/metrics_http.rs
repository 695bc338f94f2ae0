//! The `/metrics` and `/health` endpoint, over a real socket on 127.0.0.1:0.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kith_relay::http::{OPENMETRICS_CONTENT_TYPE, serve_metrics};
use kith_relay::metrics::{Exposition, Metrics, RefusalReason};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A minimal HTTP/1.1 GET; returns (status line, headers, body).
async fn get(addr: SocketAddr, path: &str) -> (String, String, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    (
        status.to_owned(),
        headers.to_ascii_lowercase(),
        body.to_owned(),
    )
}

#[tokio::test]
async fn serves_metrics_and_health() {
    let mut registry = Registry::default();
    let metrics = Metrics::new(&mut registry);
    let (addr, server) = serve_metrics(
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(Exposition::from(registry)),
    )
    .await
    .unwrap();
    assert_ne!(addr.port(), 0);
    let server = tokio::spawn(server);

    let deadline = Duration::from_secs(10);
    let (status, headers, body) = tokio::time::timeout(deadline, get(addr, "/metrics"))
        .await
        .unwrap();
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        headers.contains(&format!("content-type: {OPENMETRICS_CONTENT_TYPE}")),
        "{headers}"
    );
    assert!(body.contains("kith_relay_deposits_total 0"), "{body}");

    metrics.deposits.inc();
    metrics.refused(RefusalReason::NotMember);
    let (_, _, body) = tokio::time::timeout(deadline, get(addr, "/metrics"))
        .await
        .unwrap();
    assert!(body.contains("kith_relay_deposits_total 1"), "{body}");
    assert!(
        body.contains("kith_relay_refusals_total{reason=\"not_member\"} 1"),
        "{body}"
    );
    assert!(body.ends_with("# EOF\n"));

    let (status, _, body) = tokio::time::timeout(deadline, get(addr, "/health"))
        .await
        .unwrap();
    assert_eq!(
        (status.as_str(), body.as_str()),
        ("HTTP/1.1 200 OK", "ok\n")
    );
    let (status, _, _) = tokio::time::timeout(deadline, get(addr, "/nope"))
        .await
        .unwrap();
    assert_eq!(status, "HTTP/1.1 404 Not Found");

    server.abort();
}

#[tokio::test]
async fn bind_errors_are_reported_before_serving() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    assert!(
        serve_metrics(addr, Arc::new(Exposition::from(Registry::default())))
            .await
            .is_err()
    );
}
