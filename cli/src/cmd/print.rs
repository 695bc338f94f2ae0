//! Human-readable rendering of views (the `--json` forms are the views themselves).
//!
//! Every text a peer chose (names, message texts, previews) goes through
//! [`safe`] before it is laid out, so a name cannot break a row in two or carry an
//! escape sequence; message texts keep their lines, each sanitised and indented under
//! the first. (`output` sanitises every line once more as a backstop.)

use kith_p2p::display::sanitize_line as safe;
use kith_p2p::views::{ContactView, GroupView, InboxEntry, MessageView, RequestView};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::failure::Result;
use crate::output;

/// Decode a result into a view type.
pub(crate) fn view<T: DeserializeOwned>(value: Value) -> Result<T> {
    Ok(serde_json::from_value(value).map_err(anyhow::Error::from)?)
}

/// `…` and the last 8 characters of a peer id.
pub(crate) fn short(peer: &str) -> String {
    let tail: String = peer.chars().rev().take(8).collect::<Vec<_>>().into_iter().rev().collect();
    format!("…{tail}")
}

/// `HH:MM` of a Unix-ms timestamp, in UTC (the CLI keeps no timezone database).
fn clock(ms: u64) -> String {
    let secs = ms / 1000;
    format!("{:02}:{:02}", (secs / 3600) % 24, (secs / 60) % 60)
}

pub(crate) fn contact(c: &ContactView) -> Result {
    output::line(contact_line(c))
}

fn contact_line(c: &ContactView) -> String {
    let state = serde_json::to_value(c.state).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
    format!("{:<20} {:<12} {}", safe(c.label()), state, safe(&c.peer_id))
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
    list.iter().try_for_each(|r| output::line(request_line(r)))
}

fn request_line(r: &RequestView) -> String {
    let preview = r.preview.as_deref().map(|p| format!(" \"{}\"", safe(p.lines().next().unwrap_or("")))).unwrap_or_default();
    format!("{} ({}) {} held{}", safe(r.contact.label()), safe(&r.contact.peer_id), r.held_messages, preview)
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
    output::line(message_lines(m, me))
}

/// `HH:MM who text mark`; a text of several lines continues under its first line.
fn message_lines(m: &MessageView, me: Option<&str>) -> String {
    let who = if Some(m.author.as_str()) == me || m.direction == kith_p2p::kith_storage::Direction::Outgoing {
        "me".to_owned()
    } else {
        short(&safe(&m.author))
    };
    let prefix = format!("{} {:<10} ", clock(m.sent_at), who);
    let indent = " ".repeat(prefix.chars().count());
    let mut out = prefix;
    for (n, line) in m.text.split('\n').enumerate() {
        if n > 0 {
            out.push('\n');
            out.push_str(&indent);
        }
        out.push_str(&safe(line));
    }
    out.push(' ');
    out.push_str(mark(m));
    out
}

pub(crate) fn history(list: &[MessageView]) -> Result {
    list.iter().try_for_each(|m| message(m, None))
}

pub(crate) fn inbox(list: &[InboxEntry]) -> Result {
    if list.is_empty() {
        return output::line("no unread messages");
    }
    list.iter().try_for_each(|e| output::line(inbox_line(e)))
}

fn inbox_line(e: &InboxEntry) -> String {
    let name = safe(e.contact.as_ref().map_or(e.conversation.as_str(), |c| c.label()));
    let last = e.last.as_ref().map(|m| safe(m.text.lines().next().unwrap_or(""))).unwrap_or_default();
    format!("{name:<20} {:>4} unread  {last}", e.unread)
}

/// One line per group: name, member count, id, and whether we are still in it.
pub(crate) fn group_line(g: &GroupView) -> Result {
    output::line(group_summary(g))
}

fn group_summary(g: &GroupView) -> String {
    let state = match (&g.invited_by, g.active) {
        (Some(by), _) => format!("  (invitation from {}: kith group accept|decline)", safe(&short(by))),
        (None, true) => String::new(),
        (None, false) => "  (left)".to_owned(),
    };
    format!("{:<20} {:>3} members  {}{state}", safe(&g.name), g.members.len(), safe(&g.id))
}

/// A group with its members.
pub(crate) fn group(g: &GroupView) -> Result {
    group_line(g)?;
    g.members.iter().try_for_each(|m| {
        let role = serde_json::to_value(m.role).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
        let name = safe(&m.label.clone().unwrap_or_else(|| short(&m.peer_id)));
        output::line(format!("  {name:<20} {role:<7} {}", safe(&m.peer_id)))
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use kith_p2p::kith_storage::{ContactState, Direction, MessageState, Role};
    use kith_p2p::views::MemberView;

    use super::*;

    /// ESC sequences (colour, clear screen, window title), C0 and C1 controls, a bidi
    /// override and isolate, a line break: everything a peer might try.
    const HOSTILE: &str = "\u{1b}[31mred\u{1b}[2J\u{1b}]0;title\u{7}\r\u{8}\u{9b}1m\u{202e}evil\u{2066}\nsecond";

    fn is_clean(s: &str) -> bool {
        !s.chars().any(|c| c != '\n' && kith_p2p::display::is_unsafe(c))
    }

    fn contact_view(name: &str) -> ContactView {
        ContactView {
            peer_id: "12D3KooWAbcdefgh".into(),
            alias: None,
            display_name: Some(name.into()),
            state: ContactState::PendingIn,
            addrs: vec![],
            relays: vec![],
        }
    }

    fn message_view(text: &str) -> MessageView {
        MessageView {
            id: "00".into(),
            conversation: "c".into(),
            peer: None,
            author: "12D3KooWAbcdefgh".into(),
            direction: Direction::Incoming,
            text: text.into(),
            sent_at: 0,
            received_at: 0,
            lamport: 1,
            state: MessageState::Delivered,
        }
    }

    #[test]
    fn names_stay_on_their_line_without_control_sequences() {
        let lines = [
            contact_line(&contact_view(HOSTILE)),
            request_line(&RequestView { contact: contact_view(HOSTILE), held_messages: 2, preview: Some(HOSTILE.into()) }),
            inbox_line(&InboxEntry {
                conversation: "c".into(),
                contact: Some(contact_view(HOSTILE)),
                unread: 1,
                last: Some(message_view(HOSTILE)),
            }),
            group_summary(&GroupView {
                id: "g".into(),
                name: HOSTILE.into(),
                members: vec![MemberView { peer_id: "p".into(), role: Role::Member, label: Some(HOSTILE.into()) }],
                version: 1,
                relays: vec![],
                active: false,
                invited_by: Some(HOSTILE.into()),
            }),
        ];
        for line in lines {
            assert!(is_clean(&line) && !line.contains('\n'), "{line:?}");
            assert!(line.contains("red") && line.contains("evil"), "{line:?}");
        }
    }

    #[test]
    fn message_texts_keep_their_lines_indented_and_clean() {
        let out = message_lines(&message_view(HOSTILE), None);
        assert!(is_clean(&out), "{out:?}");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out:?}");
        assert!(lines[0].starts_with("00:00 …Abcdefgh  \u{fffd}[31mred"), "{out:?}");
        // The second line starts under the first line's text (after "HH:MM who ").
        assert_eq!(lines[1], format!("{}second  ", " ".repeat("00:00 ".len() + 10 + 1)));
        // Ordinary text is untouched.
        let plain = message_lines(&message_view("Привет 👋\n\tok"), None);
        assert!(plain.contains("Привет 👋") && plain.ends_with("  ok  "), "{plain:?}");
    }
}
