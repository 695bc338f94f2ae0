//! Voice calls: `call`, `answer`, `hangup`, `calls`.
//!
//! The node runs the media (it reads and writes the WAV files); these commands only
//! steer it. `kith call` stays until the call ends, hanging up after `--duration`
//! seconds of media or on Ctrl+C.

use std::time::Duration;

use kith_p2p::call::{CallView, EndReason};
use kith_p2p::control::{Client, Request};
use kith_p2p::node::Event;
use kith_p2p::call::voice_room::RoomView;
use kith_p2p::views::CallRecordView;
use serde_json::json;

use super::audio_pipe::CallIo;
use super::net::{call, client_failure, runtime};
use super::print;
use crate::args::{AnswerArgs, CallArgs, CallsArgs, Global, HangupArgs, MuteArgs, RoomCommand, RoomJoinArgs};
use crate::failure::{Code, Failure, Result};
use crate::output;

pub(crate) fn place(global: &Global, args: CallArgs) -> Result {
    let home = super::home(global)?;
    let io = CallIo::open(&args.audio)?;
    let report = Report { json: args.output.json, stderr: io.stdout_taken() };
    runtime()?.block_on(async {
        // Subscribed before calling, so no event of this call slips by unseen.
        let mut events = Client::connect(&home.socket_path()).await.map_err(client_failure)?;
        events.subscribe().await.map_err(client_failure)?;
        let mut requests = Client::connect(&home.socket_path()).await.map_err(client_failure)?;
        let request = Request::Call { contact: args.contact.clone(), input: io.input.clone(), output: io.output.clone() };
        let placed: CallView = print::view(requests.request(&request).await.map_err(client_failure)?)?;
        if !args.output.json {
            eprintln!("ringing {} (call {})", args.contact, placed.id);
        }
        let duration = args.duration.map(Duration::from_secs_f64);
        let (reason, duration_ms) = until_ended(&mut events, &mut requests, &placed.id, duration, !args.output.json).await?;
        io.finish(AUDIO_DRAIN);
        report.ended(&placed.id, reason, duration_ms)
    })
}

/// How long a command waits for the rest of a call's audio to reach standard output.
const AUDIO_DRAIN: Duration = Duration::from_secs(3);

/// Follows call `id` until it ends: hangs up after `duration` of media (counted from
/// when it connects) or on Ctrl+C; tells of its progress on stderr when `chatty`.
async fn until_ended(
    events: &mut Client,
    requests: &mut Client,
    id: &str,
    duration: Option<Duration>,
    chatty: bool,
) -> Result<(EndReason, u64)> {
    let mut hang_up_at: Option<tokio::time::Instant> = None;
    let mut hung_up = false;
    loop {
        let sleep = async {
            match hang_up_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let event = tokio::select! {
            event = events.next_event() => event.map_err(client_failure)?,
            () = sleep => {
                hang_up_at = None;
                hang_up(requests, id, &mut hung_up).await?;
                continue;
            }
            _ = tokio::signal::ctrl_c() => {
                hang_up(requests, id, &mut hung_up).await?;
                continue;
            }
        };
        match event {
            Event::CallAnswered { call, .. } if call == id && chatty => eprintln!("answered"),
            Event::CallConnected { call, .. } if call == id => {
                if chatty {
                    eprintln!("connected");
                }
                if let Some(duration) = duration {
                    hang_up_at = Some(tokio::time::Instant::now() + duration);
                }
            }
            Event::CallEnded { call, reason, duration_ms, .. } if call == id => return Ok((reason, duration_ms)),
            _ => {}
        }
    }
}

/// Where a call command's results go: stdout, or stderr when stdout carries the
/// call's audio (`--output -`).
struct Report {
    json: bool,
    stderr: bool,
}

impl Report {
    fn json<T: serde::Serialize>(&self, value: &T) -> Result {
        if self.stderr {
            eprintln!("{}", serde_json::to_string(value).map_err(|e| Failure::new(Code::Error, anyhow::Error::from(e)))?);
            Ok(())
        } else {
            output::json(value)
        }
    }

    fn line(&self, line: String) -> Result {
        if self.stderr {
            eprintln!("{line}");
            Ok(())
        } else {
            output::line(line)
        }
    }

    /// Prints how the call ended; a call that never connected is a failure (exit 1,
    /// named after the reason).
    fn ended(&self, id: &str, reason: EndReason, duration_ms: u64) -> Result {
        if self.json {
            self.json(&json!({ "call": id, "reason": reason, "duration_ms": duration_ms }))?;
        } else {
            self.line(format!("ended: {reason} after {}", duration(duration_ms)))?;
        }
        match reason {
            EndReason::HungUp | EndReason::RemoteHungUp => Ok(()),
            other => Err(Failure::new(Code::Error, anyhow::anyhow!("the call ended: {other}")).named(other.as_str())),
        }
    }
}

async fn hang_up(requests: &mut Client, id: &str, done: &mut bool) -> Result {
    if *done {
        return Ok(());
    }
    *done = true;
    match requests.request(&Request::Hangup { call: Some(id.to_owned()) }).await {
        Ok(_) => Ok(()),
        // Ended meanwhile: its end event is on its way.
        Err(kith_p2p::control::ClientError::Api(e)) if e.code == kith_p2p::control::ErrorCode::UnknownCall => Ok(()),
        Err(e) => Err(client_failure(e)),
    }
}

pub(crate) fn answer(global: &Global, args: AnswerArgs) -> Result {
    let home = super::home(global)?;
    let io = CallIo::open(&args.audio)?;
    let report = Report { json: args.output.json, stderr: io.stdout_taken() };
    if !io.piped() {
        let result = call(&home, Request::Answer { call: args.call, input: io.input.clone(), output: io.output.clone() })?;
        if args.output.json {
            return output::json(&result);
        }
        let view: CallView = print::view(result)?;
        return output::line(format!("answered {}", view.id));
    }
    // Standard input or output is the call's audio, which only this process pumps:
    // it stays until the call ends, like `kith call`.
    runtime()?.block_on(async {
        let mut events = Client::connect(&home.socket_path()).await.map_err(client_failure)?;
        events.subscribe().await.map_err(client_failure)?;
        let mut requests = Client::connect(&home.socket_path()).await.map_err(client_failure)?;
        let request = Request::Answer { call: args.call, input: io.input.clone(), output: io.output.clone() };
        let answered: CallView = print::view(requests.request(&request).await.map_err(client_failure)?)?;
        if !args.output.json {
            eprintln!("answered {}", answered.id);
        }
        let (reason, duration_ms) = until_ended(&mut events, &mut requests, &answered.id, None, !args.output.json).await?;
        io.finish(AUDIO_DRAIN);
        report.ended(&answered.id, reason, duration_ms)
    })
}

pub(crate) fn hangup(global: &Global, args: HangupArgs) -> Result {
    let home = super::home(global)?;
    let result = call(&home, Request::Hangup { call: args.call })?;
    if args.output.json {
        return output::json(&result);
    }
    let view: CallView = print::view(result)?;
    output::line(format!("hung up {}", view.id))
}

pub(crate) fn mute(global: &Global, args: MuteArgs) -> Result {
    let home = super::home(global)?;
    let result = call(&home, Request::Mute { call: args.call, muted: !args.off })?;
    if args.output.json {
        return output::json(&result);
    }
    let view: CallView = print::view(result)?;
    output::line(format!("{} {}", if view.muted { "muted" } else { "unmuted" }, view.id))
}

pub(crate) fn list(global: &Global, args: CallsArgs) -> Result {
    let home = super::home(global)?;
    let result = call(&home, Request::Calls { limit: args.limit })?;
    if args.output.json {
        return output::json(&result);
    }
    let names = print::Names::load(&home)?;
    let active: Vec<CallView> = print::view(result["active"].clone())?;
    let history: Vec<CallRecordView> = print::view(result["history"].clone())?;
    for c in &history {
        let arrow = if c.outgoing { "→" } else { "←" };
        let what = if c.missed { format!("missed ({})", c.reason) } else { c.reason.clone() };
        output::line(format!(
            "{}  {arrow} {}  {}  {what}",
            print::date_time(c.started_at),
            output::sanitized(&names.peer(&c.peer)),
            duration(c.duration_ms)
        ))?;
    }
    for c in &active {
        let arrow = if c.outgoing { "→" } else { "←" };
        output::line(format!(
            "now  {arrow} {}  {}  {}{}",
            output::sanitized(&names.peer(&c.peer)),
            print::wire_name(&c.state),
            c.id,
            if c.muted { "  (muted)" } else { "" }
        ))?;
    }
    if history.is_empty() && active.is_empty() {
        output::line("no calls yet")?;
    }
    Ok(())
}

/// `1m05s`, `12s`.
fn duration(ms: u64) -> String {
    let secs = ms / 1000;
    if secs >= 60 { format!("{}m{:02}s", secs / 60, secs % 60) } else { format!("{secs}s") }
}

pub(crate) fn room(global: &Global, command: RoomCommand) -> Result {
    let home = super::home(global)?;
    match command {
        RoomCommand::Join(args) => join_room(&home, args),
        RoomCommand::Leave(args) => {
            let left: RoomView = print::view(call(&home, Request::RoomLeave { group: args.group })?)?;
            if args.output.json {
                return output::json(&left);
            }
            output::line(format!("left the voice room of {}", output::sanitized(&left.name)))
        }
        RoomCommand::Mute(args) => {
            let room: RoomView = print::view(call(&home, Request::RoomMute { group: args.group, muted: !args.off })?)?;
            if args.output.json {
                return output::json(&room);
            }
            let what = if room.muted { "muted" } else { "unmuted" };
            output::line(format!("{what} in the voice room of {}", output::sanitized(&room.name)))
        }
        RoomCommand::List(args) => {
            let rooms: Vec<RoomView> = print::view(call(&home, Request::Rooms {})?)?;
            let wanted = match &args.group {
                Some(group) => {
                    let resolved = call(&home, Request::Group { group: group.clone() })?;
                    Some(resolved["id"].as_str().unwrap_or_default().to_owned())
                }
                None => None,
            };
            let rooms: Vec<RoomView> = rooms.into_iter().filter(|r| wanted.as_ref().is_none_or(|g| &r.group == g)).collect();
            if args.output.json {
                return output::json(&rooms);
            }
            let names = print::Names::load(&home)?;
            let me = own_id(&home)?;
            for r in &rooms {
                let muted = if r.muted { "  (you are muted)" } else { "" };
                output::line(format!("{}: {}{muted}", output::sanitized(&r.name), who(&names, &me, r)))?;
            }
            if rooms.is_empty() {
                output::line("not in any voice room")?;
            }
            Ok(())
        }
    }
}

/// Our own peer id (the node's).
fn own_id(home: &kith_p2p::home::Home) -> Result<String> {
    Ok(call(home, Request::Status {})?["peer_id"].as_str().unwrap_or_default().to_owned())
}

/// Who is in `room`, by name (`you` for us), those speaking marked.
fn who(names: &print::Names, me: &str, room: &RoomView) -> String {
    let named: Vec<String> = room
        .participants
        .iter()
        .map(|p| {
            let name = if p == me { "you".to_owned() } else { output::sanitized(&names.peer(p)) };
            if room.speaking.contains(p) { format!("{name} (speaking)") } else { name }
        })
        .collect();
    named.join(", ")
}

/// `kith room join`: in the room until Ctrl+C, `--duration`, or the room ends.
fn join_room(home: &kith_p2p::home::Home, args: RoomJoinArgs) -> Result {
    let io = CallIo::open(&args.audio)?;
    let report = Report { json: args.output.json, stderr: io.stdout_taken() };
    let (input, output) = (io.input.clone(), io.output.clone());
    // Loaded before the runtime starts: they ask the node on a runtime of their own.
    let names = print::Names::load(home)?;
    let me = own_id(home)?;
    runtime()?.block_on(async {
        let mut events = Client::connect(&home.socket_path()).await.map_err(client_failure)?;
        events.subscribe().await.map_err(client_failure)?;
        let mut requests = Client::connect(&home.socket_path()).await.map_err(client_failure)?;
        let request = Request::RoomJoin { group: args.group.clone(), input, output };
        let joined: RoomView = print::view(requests.request(&request).await.map_err(client_failure)?)?;
        if !args.output.json {
            eprintln!("in the voice room of {} ({})", output::sanitized(&joined.name), who(&names, &me, &joined));
        }
        let until = async {
            match args.duration {
                Some(s) => tokio::time::sleep(Duration::from_secs_f64(s)).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(until);
        let mut present: std::collections::HashSet<String> = joined.participants.iter().cloned().collect();
        loop {
            let event = tokio::select! {
                event = events.next_event() => event.map_err(client_failure)?,
                () = &mut until => break,
                _ = tokio::signal::ctrl_c() => break,
            };
            match event {
                // Those already named above are announced by the node as it joins.
                Event::RoomParticipantJoined { group, peer }
                    if group == joined.group && !args.output.json && present.insert(peer.clone()) =>
                {
                    eprintln!("{} joined", output::sanitized(&names.peer(&peer)));
                }
                Event::RoomParticipantLeft { group, peer } if group == joined.group && !args.output.json => {
                    present.remove(&peer);
                    eprintln!("{} left", output::sanitized(&names.peer(&peer)));
                }
                Event::RoomLeft { group, reason } if group == joined.group => {
                    io.finish(AUDIO_DRAIN);
                    if args.output.json {
                        report.json(&json!({ "group": group, "reason": reason }))?;
                    } else {
                        report.line(format!("out of the room: {}", print::wire_name(&reason)))?;
                    }
                    return Ok(());
                }
                _ => {}
            }
        }
        let left: RoomView = print::view(requests.request(&Request::RoomLeave { group: args.group.clone() }).await.map_err(client_failure)?)?;
        io.finish(AUDIO_DRAIN);
        if args.output.json {
            report.json(&json!({ "group": left.group, "reason": "left" }))
        } else {
            report.line("left the room".to_owned())
        }
    })
}
