//! `kith` / `kith tui`: the terminal interface.
//!
//! With a daemon running it is one more client of its control socket. Without one it
//! starts the node in this process (as `kith daemon` would) and serves the control
//! socket while the interface is open, so scripts keep working alongside it. Logs go
//! to `<home>/kith.log`, never to the screen.

use std::time::Duration;

use kith_p2p::control::{Client, ClientError};
use kith_p2p::home::Home;
use kith_tui::TuiOptions;

use crate::args::{DaemonArgs, Global};
use crate::failure::{Code, Failure, Result};

pub(crate) fn run(global: &Global, args: DaemonArgs) -> Result {
    let home = super::home(global)?;
    let config = super::load_config(&home)?;
    let mut options =
        TuiOptions {
            no_color: false,
            notify_command: config.notify_command.clone(),
            bell: true,
            runs_node: false,
            display_name: config.display_name.clone(),
            open_on: None,
        };
    let socket = home.socket_path();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let daemon_runs = rt.block_on(async {
        match Client::connect(&socket).await {
            Ok(_) => Ok(true),
            Err(ClientError::NoNode) => Ok(false),
            Err(e) => Err(super::net::client_failure(e)),
        }
    })?;
    if daemon_runs {
        log_to_file(&home)?;
        return rt.block_on(kith_tui::run(&socket, options)).map_err(|e| Failure::new(Code::Error, e));
    }
    // The node runs in this process and stops when the interface quits.
    options.runs_node = true;
    // Unlock before the screen is taken over: the passphrase prompt needs the terminal.
    let identity = super::load_identity(&home)?;
    let node_config = super::daemon::node_config(identity, &config, &args, &home)?;
    log_to_file(&home)?;
    rt.block_on(async {
        let (server, started) = super::daemon::start(&home, node_config).await?;
        let handle = started.handle.clone();
        let server = std::sync::Arc::new(server);
        let serving = tokio::spawn({
            let (server, handle) = (server.clone(), handle.clone());
            async move { server.serve(handle).await }
        });
        let result = kith_tui::run(&socket, options).await;
        handle.shutdown().await;
        serving.abort();
        // Bounded: the actor flushes and stops, then the socket file and the home's
        // lock go with the server.
        let _ = tokio::time::timeout(Duration::from_secs(10), started.stopped).await;
        let _ = serving.await;
        drop(server);
        result.map_err(|e| Failure::new(Code::Error, e))
    })
}

/// Send logs to `<home>/kith.log` (mode 0600): the screen belongs to the interface.
pub(crate) fn log_to_file(home: &Home) -> Result {
    use std::os::unix::fs::OpenOptionsExt;
    use tracing_subscriber::EnvFilter;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(home.log_path())
        .map_err(|e| Failure::new(Code::Error, anyhow::anyhow!("{}: {e}", home.log_path().display())))?;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,libp2p_kad=error"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::sync::Mutex::new(file))
        .try_init();
    Ok(())
}
