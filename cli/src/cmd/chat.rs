//! Contacts and messages: `invite`, `add`, `contacts`, `requests`, `accept` …, `send`,
//! `history`, `inbox`, `read`, `follow`, `status`.

use std::io::Read as _;
use std::time::Duration;

use kith_p2p::control::{Client, Request};
use kith_p2p::invite::SCHEME;
use kith_p2p::kith_storage::{ContactState, MessageState};
use kith_p2p::node::{Event, Status};
use kith_p2p::views::{ContactView, ConversationView, InboxEntry, MessageView, RequestView};
use serde_json::Value;

use super::net::{call, client_failure, runtime};
use super::print;
use crate::args::{
    AddArgs, ContactArg, Global, HistoryArgs, InviteArgs, MessageArgs, MuteConversationArgs, RenameArgs, SendArgs, WaitArgs,
    WaitFor,
};
use crate::failure::{Code, Failure, Result};
use crate::output;

pub(crate) fn invite(global: &Global, args: InviteArgs) -> Result {
    let home = super::home(global)?;
    let result = call(&home, Request::Invite {})?;
    if args.output.json {
        return output::json(&result);
    }
    output::line(result["invite"].as_str().unwrap_or_default())?;
    if args.qr {
        output::line(result["qr"].as_str().unwrap_or_default())?;
    }
    Ok(())
}

pub(crate) fn add(global: &Global, args: AddArgs) -> Result {
    let home = super::home(global)?;
    // Only an invite's maker accepts by itself; a request to a bare peer id waits for
    // a person, so there is nothing to wait for.
    let is_invite = args.target.trim_start().get(..SCHEME.len()).is_some_and(|s| s.eq_ignore_ascii_case(SCHEME));
    let wait = if is_invite { Duration::from_secs(args.timeout) } else { Duration::ZERO };
    let contact = runtime()?.block_on(async {
        let mut client = Client::connect(&home.socket_path()).await.map_err(client_failure)?;
        if !wait.is_zero() {
            // Subscribed first, so the maker's acceptance cannot slip by unseen.
            client.subscribe().await.map_err(client_failure)?;
        }
        let result = client.request(&Request::Add { target: args.target, alias: args.name }).await.map_err(client_failure)?;
        let contact: ContactView = print::view(result)?;
        if wait.is_zero() || contact.state == ContactState::Accepted {
            return Ok::<_, Failure>(contact);
        }
        let peer = contact.peer_id.clone();
        let accepted = async {
            loop {
                match client.next_event().await.map_err(client_failure)? {
                    Event::ContactChanged { contact } if contact.peer_id == peer && contact.state == ContactState::Accepted => {
                        return Ok::<_, Failure>(contact);
                    }
                    // Events were dropped: the acceptance may be among them.
                    Event::Lagged { .. } => {
                        let now = current_contact(&mut client, &peer).await?;
                        if now.state == ContactState::Accepted {
                            return Ok(now);
                        }
                    }
                    _ => {}
                }
            }
        };
        match tokio::time::timeout(wait, accepted).await {
            Ok(result) => result,
            Err(_) => current_contact(&mut client, &peer).await,
        }
    })?;
    if args.output.json {
        return output::json(&contact);
    }
    if contact.state == ContactState::Accepted {
        return output::line(format!("{} is now a contact", print::safe(contact.label())));
    }
    output::line(format!(
        "contact request sent to {}; it becomes a contact once they accept \
         (an invite that was already used or has expired arrives as a request)",
        print::safe(contact.label())
    ))
}

/// The contact with this peer id as the node has it now.
async fn current_contact(client: &mut Client, peer: &str) -> Result<ContactView> {
    let resolved = client.request(&Request::Resolve { target: peer.to_owned() }).await.map_err(client_failure)?;
    print::view(resolved["contact"].clone())
}

/// A parameterless listing: JSON as the node sent it, or decoded and printed for people.
fn listing<T: serde::de::DeserializeOwned>(global: &Global, request: Request, json_out: bool, show: fn(&[T]) -> Result) -> Result {
    let home = super::home(global)?;
    let result = call(&home, request)?;
    if json_out {
        return output::json(&result);
    }
    show(&print::view::<Vec<T>>(result)?)
}

pub(crate) fn contacts(global: &Global, json_out: bool) -> Result {
    listing::<ContactView>(global, Request::Contacts { state: None }, json_out, print::contacts)
}

pub(crate) fn requests(global: &Global, json_out: bool) -> Result {
    listing::<RequestView>(global, Request::Requests {}, json_out, print::requests)
}

/// `accept`, `reject`, `block`, `unblock`, `remove`, `read`: one contact, one request
/// (`request` makes it from the contact).
pub(crate) fn contact_op(global: &Global, request: fn(String) -> Request, args: ContactArg) -> Result {
    let home = super::home(global)?;
    let result = call(&home, request(args.contact))?;
    if args.output.json {
        return output::json(&result);
    }
    if let Some(peer) = result.get("removed").and_then(Value::as_str) {
        return output::line(format!("removed {peer}"));
    }
    if let Some(n) = result.get("marked").and_then(Value::as_u64) {
        return output::line(format!("marked {n} message(s) read"));
    }
    print::contact(&print::view::<ContactView>(result)?)
}

pub(crate) fn mute(global: &Global, args: MuteConversationArgs) -> Result {
    let home = super::home(global)?;
    let until_ms = args.duration.map(|d| {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        kith_p2p::ops::now_ms().saturating_add(ms)
    });
    let result = call(&home, Request::MuteConversation { contact: args.contact.clone(), until_ms })?;
    muted(&args.contact, result, args.output.json)
}

pub(crate) fn unmute(global: &Global, args: ContactArg) -> Result {
    let home = super::home(global)?;
    let result = call(&home, Request::UnmuteConversation { contact: args.contact.clone() })?;
    muted(&args.contact, result, args.output.json)
}

/// The answer to `kith mute` or `kith unmute`: the conversation as it is now.
fn muted(name: &str, result: Value, json_out: bool) -> Result {
    if json_out {
        return output::json(&result);
    }
    let view = print::view::<ConversationView>(result)?;
    let name = kith_p2p::display::sanitize_line(name);
    output::line(match (view.muted, view.muted_until) {
        (false, _) => format!("{name}: not muted"),
        (true, None) => format!("{name}: muted"),
        (true, Some(until)) => format!("{name}: muted until {}", print::date_time(until)),
    })
}

pub(crate) fn rename(global: &Global, args: RenameArgs) -> Result {
    let home = super::home(global)?;
    let result = call(&home, Request::Rename { contact: args.contact, alias: args.alias })?;
    if args.output.json {
        return output::json(&result);
    }
    print::contact(&print::view::<ContactView>(result)?)
}

/// A message text given on the command line: `-` reads it from stdin, one final
/// line break dropped.
pub(crate) fn text_arg(text: &str) -> Result<String> {
    if text != "-" {
        return Ok(text.to_owned());
    }
    let mut read = String::new();
    std::io::stdin().read_to_string(&mut read)?;
    Ok(without_final_newline(read))
}

pub(crate) fn send(global: &Global, args: SendArgs) -> Result {
    let home = super::home(global)?;
    let text = text_arg(&args.text)?;
    runtime()?.block_on(async {
        let mut client = Client::connect(&home.socket_path()).await.map_err(client_failure)?;
        let request = Request::Send { contact: args.contact.clone(), text, reply_to: args.reply_to.clone() };
        let (message, waited) = send_waiting(&mut client, &request, &args.contact, &args.wait).await?;
        // Printed whatever the wait did: a script that timed out still learns the id.
        if args.output.json {
            output::json(&message)?;
        } else {
            output::line(&message.id)?;
        }
        waited
    })
}

/// Sends `request` (a message to `target`) and waits as `wait` asks; returns the
/// message (with the state reached) and how the wait went, so the caller prints the
/// message even when the wait timed out.
pub(crate) async fn send_waiting(
    client: &mut Client,
    request: &Request,
    target: &str,
    wait: &WaitArgs,
) -> Result<(MessageView, Result)> {
    let target_state = wait.wait.map(WaitFor::state);
    if let Some(state) = target_state.filter(|s| *s > MessageState::Sent) {
        refuse_group_wait(client, target, state).await?;
    }
    if target_state.is_some() {
        // Subscribed before sending so no state change can slip by unseen.
        client.subscribe().await.map_err(client_failure)?;
    }
    let result = client.request(request).await.map_err(client_failure)?;
    let mut message: MessageView = print::view(result)?;
    let waited = match target_state {
        Some(state) => match wait_for_state(client, &message.id, state, Duration::from_secs(wait.timeout)).await {
            Ok(state) => {
                message.state = state;
                Ok(())
            }
            Err(failure) => Err(failure),
        },
        None => Ok(()),
    };
    Ok((message, waited))
}

/// Text read from stdin without its one final line break (`echo text | kith send`).
fn without_final_newline(mut text: String) -> String {
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    text
}

/// Group messages stop at `sent` (held by the group's relays or members): waiting for
/// more would only time out, so the command refuses before sending anything.
async fn refuse_group_wait(client: &mut Client, target: &str, state: MessageState) -> Result {
    let resolved = client.request(&Request::Resolve { target: target.to_owned() }).await.map_err(client_failure)?;
    if resolved["kind"] == "group" {
        let state = print::wire_name(&state);
        return Err(Failure::usage(format!(
            "--wait {state} works for contacts only: a group message's state ends at `sent` \
             (held by the group's relays or members); use --wait sent"
        )));
    }
    Ok(())
}

async fn wait_for_state(client: &mut Client, id: &str, target: MessageState, timeout: Duration) -> Result<MessageState> {
    let waiting = async {
        // The state may have moved before we subscribed: check once, then follow events.
        let now = current_state(client, id).await?;
        if reached(now, target) {
            return Ok(now);
        }
        loop {
            match client.next_event().await.map_err(client_failure)? {
                Event::MessageStateChanged { id: changed, state, .. } if changed == id => {
                    if state == MessageState::Failed {
                        return Err(Failure::new(Code::Error, anyhow::anyhow!("message {id} failed")).named("failed"));
                    }
                    if reached(state, target) {
                        return Ok(state);
                    }
                }
                Event::Lagged { .. } => {
                    let now = current_state(client, id).await?;
                    if reached(now, target) {
                        return Ok(now);
                    }
                }
                _ => {}
            }
        }
    };
    tokio::time::timeout(timeout, waiting).await.unwrap_or_else(|_| {
        Err(Failure::new(
            Code::Error,
            anyhow::anyhow!("timed out waiting for {id}; it stays queued and will be retried"),
        )
        .named("timeout"))
    })
}

async fn current_state(client: &mut Client, id: &str) -> Result<MessageState> {
    let request = Request::Message { id: id.to_owned() };
    let message: MessageView = print::view(client.request(&request).await.map_err(client_failure)?)?;
    Ok(message.state)
}

fn reached(state: MessageState, target: MessageState) -> bool {
    state != MessageState::Failed && state >= target
}

pub(crate) fn history(global: &Global, args: HistoryArgs) -> Result {
    let home = super::home(global)?;
    let result = call(&home, Request::History { contact: args.contact, limit: Some(args.limit), before: args.before })?;
    if args.output.json {
        return output::json(&result);
    }
    let list: Vec<MessageView> = print::view(result)?;
    print::history(&list, &print::Names::load(&home)?)
}

pub(crate) fn inbox(global: &Global, json_out: bool) -> Result {
    listing::<InboxEntry>(global, Request::Inbox {}, json_out, print::inbox)
}

pub(crate) fn follow(global: &Global) -> Result {
    let home = super::home(global)?;
    runtime()?.block_on(async {
        let mut client = Client::connect(&home.socket_path()).await.map_err(client_failure)?;
        client.subscribe().await.map_err(client_failure)?;
        // On stderr, so stdout stays one event per line: from here on nothing is
        // missed (scripts and tests may wait for this line before acting).
        eprintln!("following events (Ctrl+C stops)");
        loop {
            match client.next_event_json().await {
                Ok(event) => output::json(&event)?,
                // A script following events must learn that they stopped coming.
                Err(kith_p2p::control::ClientError::Closed) => {
                    return Err(Failure::new(Code::Error, anyhow::anyhow!("the node stopped")).named("stopped"));
                }
                Err(e) => return Err(client_failure(e)),
            }
        }
    })
}

/// `kith message ID`: one message and where it belongs.
pub(crate) fn message(global: &Global, args: MessageArgs) -> Result {
    let home = super::home(global)?;
    let result = call(&home, Request::Message { id: args.id })?;
    if args.output.json {
        return output::json(&result);
    }
    let m: MessageView = print::view(result)?;
    let names = print::Names::load(&home)?;
    let state = print::wire_name(&m.state);
    output::rows(&[
        ("id", m.id.clone()),
        ("conversation", names.conversation(&m)),
        ("from", names.author(&m)),
        ("sent", print::date_time(m.sent_at)),
        ("state", state),
    ])?;
    output::line(&m.text)
}

/// `kith unsent`: what has not left yet, and what was given up.
pub(crate) fn unsent(global: &Global, json_out: bool) -> Result {
    let home = super::home(global)?;
    let result = call(&home, Request::Unsent {})?;
    if json_out {
        return output::json(&result);
    }
    let list: Vec<MessageView> = print::view(result)?;
    if list.is_empty() {
        return output::line("nothing unsent: every message has left");
    }
    let names = print::Names::load(&home)?;
    print::unsent(&list, &names)
}

pub(crate) fn status(global: &Global, json_out: bool) -> Result {
    let home = super::home(global)?;
    let result = call(&home, Request::Status {})?;
    if json_out {
        return output::json(&result);
    }
    let s: Status = print::view(result)?;
    output::rows(&[
        ("peer id", s.peer_id),
        ("listening", s.listen_addrs.join(" ")),
        ("connected", format!("{} peer(s)", s.connected_peers.len())),
        ("dht", format!("{} peer(s) in routing table", s.routing_table_size)),
        ("relays", if s.relays.is_empty() { "none pinned".into() } else { s.relays.join(" ") }),
        ("outbox", format!("{} item(s) waiting", s.outbox)),
        ("reachability", s.reachability.clone()),
        ("storage", storage_line(s.storage_failed).into()),
    ])?;
    if !s.queues.is_empty() {
        let names = print::Names::load(&home)?;
        for q in &s.queues {
            output::line(queue_line(q, &names))?;
        }
    }
    Ok(())
}

/// The `storage` row of `kith status`: whether the node can still store.
fn storage_line(failed: bool) -> &'static str {
    match failed {
        true => "FAILED: a write to disk failed; nothing new is stored or sent until kith restarts",
        false => "ok",
    }
}

/// One recipient's queue for people: "waiting for Bob: 3 item(s), next try in 4.0 s
/// (through its relays)".
fn queue_line(q: &kith_p2p::node::QueueStatus, names: &print::Names) -> String {
    let when = if q.in_flight {
        "sending now".to_owned()
    } else if q.next_try_in_ms == 0 {
        "trying now".to_owned()
    } else {
        format!("next try in {:.1} s", q.next_try_in_ms as f64 / 1000.0)
    };
    let path = if q.via_relays { " (through its relays)" } else { "" };
    format!("  waiting for {}: {} item(s), {when}{path}", names.peer(&q.peer_id), q.waiting)
}


/// `kith presence`: one line per contact heard from since the node started, online
/// first: its name and `online`, or when it was last seen.
pub(crate) fn presence(global: &Global, json_out: bool) -> Result {
    let home = super::home(global)?;
    let result = call(&home, Request::Presence {})?;
    if json_out {
        return output::json(&result);
    }
    let list: Vec<kith_p2p::node::presence::PresenceView> = print::view(result)?;
    if list.is_empty() {
        let why = if super::load_config(&home)?.presence {
            "no contact has been online since the node started"
        } else {
            "presence is off (config presence = false): nothing is sent or shown"
        };
        return output::line(why);
    }
    let names = print::Names::load(&home)?;
    for p in &list {
        let state = match (p.online, p.last_seen) {
            (true, _) => "online".to_owned(),
            (false, Some(at)) => format!("last seen {}", print::date_time(at)),
            (false, None) => "offline".to_owned(),
        };
        output::line(format!("{:<20} {state}", names.peer(&p.peer_id)))?;
    }
    Ok(())
}
