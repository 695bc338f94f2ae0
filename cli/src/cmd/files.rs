//! Files: `send-file`, `files`, `get`.

use std::future::Future;
use std::io::IsTerminal as _;
use std::path::Path;
use std::time::Duration;

use kith_p2p::control::{Client, Request};
use kith_p2p::home::Home;
use kith_p2p::node::{Event, SendingPhase};
use kith_p2p::views::FileEntryView;

use super::net::{call, client_failure, runtime};
use super::print;
use crate::args::{FilesArgs, GetArgs, Global, SendFileArgs};
use crate::failure::{Code, Failure, Result};
use crate::output;

/// `path` made absolute against this process's directory: the node runs elsewhere.
pub(crate) fn absolute(path: &Path) -> Result<String> {
    let path = std::path::absolute(path).map_err(|e| Failure::usage(format!("{}: {e}", path.display())))?;
    Ok(path.display().to_string())
}

pub(crate) fn send_file(global: &Global, args: SendFileArgs) -> Result {
    let home = super::home(global)?;
    let path = absolute(&args.path)?;
    runtime()?.block_on(async {
        let mut client = Client::connect(&home.socket_path()).await.map_err(client_failure)?;
        let bar = (std::io::stderr().is_terminal() && !args.output.json).then(progress_bar);
        let request = Request::SendFile { contact: args.target.clone(), path: path.clone(), caption: args.caption };
        let sending = super::chat::send_waiting(&mut client, &request, &args.target, &args.wait);
        // A file pushed to a media node as it is sealed reports both phases at once:
        // once it is uploading, the bar follows the upload.
        let mut uploading = false;
        let (message, waited) = with_progress(&home, bar.as_ref(), sending, |bar, event| {
            if let Event::FileSending { path: sent, phase, have, size } = event
                && sent == path
                && !(uploading && matches!(phase, SendingPhase::Sealing))
            {
                uploading |= matches!(phase, SendingPhase::Uploading);
                bar.set_length(size);
                bar.set_position(have);
                bar.set_message(match phase {
                    SendingPhase::Sealing => "sealing",
                    SendingPhase::Uploading => "uploading to a media node",
                });
            }
        })
        .await?;
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        if args.output.json {
            output::json(&message)?;
        } else {
            let id = message.file.as_ref().map(|f| f.id.as_str()).unwrap_or_default();
            output::line(format!("{} {id}", message.id))?;
        }
        waited
    })
}

pub(crate) fn files(global: &Global, args: FilesArgs) -> Result {
    let home = super::home(global)?;
    let result = call(&home, Request::Files { contact: args.target })?;
    if args.output.json {
        return output::json(&result);
    }
    let list: Vec<FileEntryView> = print::view(result)?;
    print::files(&list)
}

pub(crate) fn get(global: &Global, args: GetArgs) -> Result {
    let home = super::home(global)?;
    let out = args.out.as_deref().map(absolute).transpose()?;
    runtime()?.block_on(async {
        let mut client = Client::connect(&home.socket_path()).await.map_err(client_failure)?;
        let bar = (args.wait && std::io::stderr().is_terminal() && !args.output.json).then(progress_bar);
        let request = Request::GetFile { id: args.id.clone(), out, wait: args.wait };
        let answer = async { client.request(&request).await.map_err(client_failure) };
        let fetching = with_progress(&home, bar.as_ref(), answer, |bar, event| {
            if let Event::FileProgress { id, have, size, name } = event
                && id.starts_with(&args.id)
            {
                bar.set_length(size);
                bar.set_position(have);
                bar.set_message(output::sanitized(&name));
            }
        });
        let result = match args.timeout {
            None => fetching.await?,
            Some(secs) => tokio::time::timeout(Duration::from_secs(secs), fetching).await.unwrap_or_else(|_| {
                Err(Failure::new(
                    Code::Error,
                    anyhow::anyhow!("timed out waiting for {}; the download goes on in the node", args.id),
                )
                .named("timeout"))
            })?,
        };
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        let file: FileEntryView = print::view(result)?;
        if args.output.json {
            return output::json(&file);
        }
        if args.wait && file.path.is_none() && file.direction == kith_p2p::kith_storage::Direction::Incoming {
            return Err(Failure::new(Code::Error, anyhow::anyhow!("{} is not complete", file.id)));
        }
        print::files(std::slice::from_ref(&file))
    })
}

/// Runs `answer` (a request on its own connection) while, with a `bar`, the node's
/// events arrive on a second connection and `show` moves the bar.
async fn with_progress<T>(
    home: &Home,
    bar: Option<&indicatif::ProgressBar>,
    answer: impl Future<Output = Result<T>>,
    mut show: impl FnMut(&indicatif::ProgressBar, Event),
) -> Result<T> {
    let Some(bar) = bar else { return answer.await };
    let mut events = Client::connect(&home.socket_path()).await.map_err(client_failure)?;
    events.subscribe().await.map_err(client_failure)?;
    tokio::pin!(answer);
    let mut events_open = true;
    loop {
        tokio::select! {
            result = &mut answer => return result,
            event = events.next_event(), if events_open => match event {
                Ok(event) => show(bar, event),
                Err(_) => events_open = false,
            },
        }
    }
}

fn progress_bar() -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}
