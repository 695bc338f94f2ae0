//! Human-readable rendering of views (the `--json` forms are the views themselves).

use kith_p2p::views::{ContactView, GroupView, InboxEntry, MessageView, RequestView};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::failure::Result;
use crate::output;

/// Decode a result into a view type.
pub(crate) fn view<T: DeserializeOwned>(value: Value) -> Result<T> {
    Ok(serde_json::from_value(value).map_err(anyhow::Error::from)?)
}

fn short(peer: &str) -> String {
    let tail: String = peer.chars().rev().take(8).collect::<Vec<_>>().into_iter().rev().collect();
    format!("…{tail}")
}

/// `HH:MM` of a Unix-ms timestamp, in UTC (the CLI keeps no timezone database).
fn clock(ms: u64) -> String {
    let secs = ms / 1000;
    format!("{:02}:{:02}", (secs / 3600) % 24, (secs / 60) % 60)
}

pub(crate) fn contact(c: &ContactView) -> Result {
    let state = serde_json::to_value(c.state).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
    output::line(format!("{:<20} {:<12} {}", c.label(), state, c.peer_id))
}

pub(crate) fn contacts(list: &[ContactView]) -> Result {
    if list.is_empty() {
        return output::line("no contacts yet: `kith invite` or `kith add <invite>`");
    }
    list.iter().try_for_each(contact)
}

pub(crate) fn requests(list: &[RequestView]) -> Result {
    if list.is_empty() {
        return output::line("no pending requests");
    }
    for r in list {
        let preview = r.preview.as_deref().map(|p| format!(" \"{}\"", p.lines().next().unwrap_or(""))).unwrap_or_default();
        output::line(format!("{} ({}) {} held{}", r.contact.label(), r.contact.peer_id, r.held_messages, preview))?;
    }
    Ok(())
}

fn mark(m: &MessageView) -> &'static str {
    use kith_p2p::kith_storage::{Direction, MessageState};
    match (m.direction, m.state) {
        (Direction::Incoming, _) => " ",
        (_, MessageState::Pending) => "…",
        (_, MessageState::Sent) => "✓",
        (_, MessageState::Delivered) => "✓✓",
        (_, MessageState::Read) => "👁",
        (_, MessageState::Failed) => "✗",
    }
}

pub(crate) fn message(m: &MessageView, me: Option<&str>) -> Result {
    let who = if Some(m.author.as_str()) == me || m.direction == kith_p2p::kith_storage::Direction::Outgoing {
        "me".to_owned()
    } else {
        short(&m.author)
    };
    output::line(format!("{} {:<10} {} {}", clock(m.sent_at), who, m.text, mark(m)))
}

pub(crate) fn history(list: &[MessageView]) -> Result {
    list.iter().try_for_each(|m| message(m, None))
}

pub(crate) fn inbox(list: &[InboxEntry]) -> Result {
    if list.is_empty() {
        return output::line("no unread messages");
    }
    for e in list {
        let name = e.contact.as_ref().map_or(e.conversation.as_str(), |c| c.label());
        let last = e.last.as_ref().map(|m| m.text.lines().next().unwrap_or("").to_owned()).unwrap_or_default();
        output::line(format!("{name:<20} {:>4} unread  {last}", e.unread))?;
    }
    Ok(())
}

/// One line per group: name, member count, id, and whether we are still in it.
pub(crate) fn group_line(g: &GroupView) -> Result {
    let state = match (&g.invited_by, g.active) {
        (Some(by), _) => format!("  (invitation from {}: kith group accept|decline)", short(by)),
        (None, true) => String::new(),
        (None, false) => "  (left)".to_owned(),
    };
    output::line(format!("{:<20} {:>3} members  {}{state}", g.name, g.members.len(), g.id))
}

/// A group with its members.
pub(crate) fn group(g: &GroupView) -> Result {
    group_line(g)?;
    for m in &g.members {
        let role = serde_json::to_value(m.role).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
        let name = m.label.clone().unwrap_or_else(|| short(&m.peer_id));
        output::line(format!("  {name:<20} {role:<7} {}", m.peer_id))?;
    }
    Ok(())
}
