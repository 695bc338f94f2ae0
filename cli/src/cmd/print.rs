//! Human-readable rendering of views (the `--json` forms are the views themselves).
//!
//! Every text a peer chose (names, message texts, previews) goes through
//! [`safe`] before it is laid out, so a name cannot break a row in two or carry an
//! escape sequence; message texts keep their lines, each sanitised and indented under
//! the first. (`output` sanitises every line once more as a backstop.)

pub(crate) use kith_p2p::display::sanitize_line as safe;
use std::collections::HashMap;

use kith_p2p::control::Request;
use kith_p2p::home::Home;
use kith_p2p::kith_storage::Direction;
use kith_p2p::views::{ContactView, FileEntryView, GroupView, InboxEntry, MessageView, RequestView};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::failure::Result;
use crate::output;

/// The name a value has on the wire (`pending_out`, `delivered`, `admin`): how
/// states and roles are shown to people too.
pub(crate) fn wire_name<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

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

/// `YYYY-MM-DD HH:MM UTC` of a Unix-ms timestamp.
pub(crate) fn date_time(ms: u64) -> String {
    let (y, m, d) = kith_p2p::display::civil_from_days((ms / 86_400_000) as i64);
    format!("{y:04}-{m:02}-{d:02} {} UTC", clock(ms))
}

/// Who is who, for people: contacts' aliases or names, group members' names and the
/// groups' names, so human output never shows a peer id where a name is known.
#[derive(Debug, Default)]
pub(crate) struct Names {
    peers: HashMap<String, String>,
    groups: HashMap<String, String>,
    /// Contacts' names, as the user calls them.
    contacts: Vec<String>,
}

impl Names {
    /// The node's contacts and groups (through the daemon, or the store when none runs).
    pub(crate) fn load(home: &Home) -> Result<Names> {
        let contacts: Vec<ContactView> = view(super::net::call(home, Request::Contacts { state: None })?)?;
        let groups: Vec<GroupView> = view(super::net::call(home, Request::Groups {})?)?;
        Ok(Names::new(&contacts, &groups))
    }

    fn new(contacts: &[ContactView], groups: &[GroupView]) -> Names {
        let mut names = Names::default();
        for g in groups {
            names.groups.insert(g.id.clone(), g.name.clone());
            for m in g.members.iter().filter(|m| m.label.is_some()) {
                names.peers.insert(m.peer_id.clone(), m.label.clone().unwrap_or_default());
            }
        }
        for c in contacts {
            names.peers.insert(c.peer_id.clone(), c.label().to_owned());
            names.contacts.push(c.label().to_owned());
        }
        names
    }

    /// Every contact's name, then every group's name (what completion offers).
    pub(crate) fn all(&self) -> impl Iterator<Item = &str> {
        let mut contacts: Vec<&str> = self.contacts.iter().map(String::as_str).collect();
        contacts.sort_unstable();
        let mut groups: Vec<&str> = self.groups.values().map(String::as_str).collect();
        groups.sort_unstable();
        contacts.into_iter().chain(groups)
    }

    /// A peer's name, else its shortened peer id.
    pub(crate) fn peer(&self, peer: &str) -> String {
        self.peers.get(peer).map_or_else(|| short(peer), |name| safe(name))
    }

    /// Who wrote `m`: `you` for our own messages.
    pub(crate) fn author(&self, m: &MessageView) -> String {
        if m.direction == Direction::Outgoing { "you".to_owned() } else { self.peer(&m.author) }
    }

    /// What a reply quotes, for its first line: `NAME: TEXT` (the first line of the
    /// text, cut to 60 characters), `NAME: (deleted)`, or `a message not here`.
    pub(crate) fn quote(&self, m: &MessageView) -> Option<String> {
        let q = m.reply_to.as_ref()?;
        Some(match (&q.author, &q.text) {
            (Some(author), Some(text)) => {
                // In a 1:1 conversation whoever is not the contact is us.
                let ours = (m.direction == Direction::Outgoing && *author == m.author)
                    || m.peer.as_deref().is_some_and(|peer| peer != author);
                let who = if ours { "you".to_owned() } else { self.peer(author) };
                let first: String = text.lines().next().unwrap_or("").chars().take(60).collect();
                if q.deleted { format!("{who}: (deleted)") } else { format!("{who}: {}", safe(&first)) }
            }
            _ => "a message not here".to_owned(),
        })
    }

    /// Where `m` belongs: the contact's name, or `#group`.
    pub(crate) fn conversation(&self, m: &MessageView) -> String {
        match &m.peer {
            Some(peer) => self.peer(peer),
            None => format!("#{}", self.groups.get(&m.conversation).map_or_else(|| short(&m.conversation), |n| safe(n))),
        }
    }
}

/// The width that lines `labels` up: the longest, at most `max` characters.
pub(crate) fn column(labels: impl Iterator<Item = usize>, max: usize) -> usize {
    labels.max().unwrap_or(0).min(max)
}

pub(crate) fn contact(c: &ContactView) -> Result {
    output::line(contact_line(c))
}

fn contact_line(c: &ContactView) -> String {
    let state = wire_name(&c.state);
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

/// A message's reactions on one line: `👍 2 · 🎉 1`.
pub(crate) fn reactions(m: &MessageView) -> String {
    m.reactions.iter().map(|r| format!("{} {}", safe(&r.emoji), r.count)).collect::<Vec<_>>().join(" · ")
}

/// `HH:MM who text mark`, `who` padded to `width`; a text of several lines continues
/// under its first line. A reply starts with `↪ ` and the first line of what it
/// answers (`quote`: its author's name and text); an edited text ends with
/// `(edited)`, a deleted one reads `(deleted)`; reactions follow on a line of their own.
fn message_lines(m: &MessageView, who: &str, quote: Option<String>, width: usize) -> String {
    let prefix = format!("{} {who:<width$} ", clock(m.sent_at));
    let indent = " ".repeat(prefix.chars().count());
    let mut out = prefix;
    let mut lines: Vec<String> = Vec::new();
    lines.extend(quote.map(|q| format!("↪ {q}")));
    if let Some(file) = &m.file {
        lines.push(format!("[file {} {} {}]", safe(&file.name), kith_p2p::display::human_size(file.size), &file.id[..file.id.len().min(12)]));
    }
    if m.deleted {
        lines.push("(deleted)".into());
    }
    lines.extend(m.text.split('\n').filter(|l| !(m.deleted || m.file.is_some() && l.is_empty())).map(str::to_owned));
    if m.edited && let Some(last) = lines.last_mut() {
        last.push_str(" (edited)");
    }
    if !m.reactions.is_empty() {
        lines.push(reactions(m));
    }
    for (n, line) in lines.iter().enumerate() {
        if n > 0 {
            out.push('\n');
            out.push_str(&indent);
        }
        out.push_str(&safe(line));
    }
    out.push(' ');
    out.push_str(mark(m));
    if let Some(counts) = group_counts(m) {
        out.push(' ');
        out.push_str(&counts);
    }
    out
}

/// Where one of our group messages stands (`GroupReceiptsView::summary`).
pub(crate) fn group_counts(m: &MessageView) -> Option<String> {
    m.receipts.as_ref()?.summary()
}


/// Files: id (first 12 characters), state, size, name and where it is.
pub(crate) fn files(list: &[FileEntryView]) -> Result {
    list.iter().try_for_each(|f| {
        let state = wire_name(&f.state);
        let place = f.path.as_deref().map(safe).unwrap_or_default();
        let error = f.error.as_deref().map(|e| format!("  ({})", safe(e))).unwrap_or_default();
        output::line(format!("{}  {state:<11}  {:>10}  {}  {place}{error}", &f.id[..f.id.len().min(12)], kith_p2p::display::human_size(f.size), safe(&f.name)))
    })
}

/// A conversation's messages, authors by name in one column.
pub(crate) fn history(list: &[MessageView], names: &Names) -> Result {
    let authors: Vec<String> = list.iter().map(|m| names.author(m)).collect();
    let width = column(authors.iter().map(|a| a.chars().count()), 20);
    list.iter().zip(&authors).try_for_each(|(m, who)| output::line(message_lines(m, who, names.quote(m), width)))
}

/// Unsent messages: where each was going, when, its state and text.
pub(crate) fn unsent(list: &[MessageView], names: &Names) -> Result {
    let places: Vec<String> = list.iter().map(|m| names.conversation(m)).collect();
    let width = column(places.iter().map(|p| p.chars().count()), 20);
    list.iter().zip(&places).try_for_each(|(m, to)| {
        let state = wire_name(&m.state);
        let text = safe(m.text.lines().next().unwrap_or(""));
        output::line(format!("{}  {to:<width$}  {state:<7}  {}  {text}", date_time(m.sent_at), m.id))
    })
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
    let muted = if e.muted { "  (muted)" } else { "" };
    format!("{name:<20} {:>4} unread  {last}{muted}", e.unread)
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
    let n = g.members.len();
    let members = if n == 1 { "member " } else { "members" };
    format!("{:<20} {n:>3} {members}  {}{state}", safe(&g.name), safe(&g.id))
}

/// A group with its members.
pub(crate) fn group(g: &GroupView) -> Result {
    group_line(g)?;
    g.members.iter().try_for_each(|m| {
        let role = wire_name(&m.role);
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
            verified: false,
            key_changed: false,
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
            file: None,
            reply_to: None,
            edited: false,
            versions: Vec::new(),
            deleted: false,
            reactions: Vec::new(),
            receipts: None,
        }
    }

    #[test]
    fn a_group_message_says_how_far_it_got() {
        let counts = |delivered: usize, read: usize| {
            let receipts = kith_p2p::views::GroupReceiptsView {
                members: 4,
                delivered,
                read,
                read_by: Vec::new(),
                delivered_to: Vec::new(),
            };
            group_counts(&MessageView { receipts: Some(receipts), ..message_view("hi") })
        };
        assert_eq!(counts(0, 0), None);
        assert_eq!(counts(2, 0).as_deref(), Some("delivered to 2 of 4"));
        assert_eq!(counts(3, 1).as_deref(), Some("read by 1 of 4"));
        assert_eq!(group_counts(&message_view("hi")), None, "not a group message of ours");
    }

    #[test]
    fn a_reply_an_edit_a_deletion_and_reactions_show_in_the_history_line() {
        use kith_p2p::views::{QuoteView, ReactionView};
        let mut m = message_view("see you at dusk");
        m.edited = true;
        m.reply_to = Some(QuoteView { id: "01".into(), author: Some("12D3KooWAbcdefgh".into()), text: Some("when?\nlater".into()), deleted: false });
        m.reactions = vec![ReactionView { emoji: "👍".into(), count: 2, by: vec!["a".into(), "b".into()] }];
        let names = Names::default();
        let out = message_lines(&m, "x", names.quote(&m), 2);
        assert_eq!(out, "00:00 x  ↪ …Abcdefgh: when?\n         see you at dusk (edited)\n         👍 2  ");
        let mut gone = message_view("");
        gone.deleted = true;
        assert!(message_lines(&gone, "x", None, 2).contains("(deleted)"));
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
                muted: false,
                muted_until: None,
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
    fn names_replace_peer_ids_wherever_known() {
        let mut alice = contact_view("Alice");
        alice.peer_id = "12D3KooWAlice0000".into();
        alice.alias = Some("al".into());
        let group = GroupView {
            id: "g1".into(),
            name: "club".into(),
            members: vec![
                MemberView { peer_id: "12D3KooWAlice0000".into(), role: Role::Owner, label: Some("al".into()) },
                MemberView { peer_id: "12D3KooWCarol0000".into(), role: Role::Member, label: Some("Carol".into()) },
                MemberView { peer_id: "12D3KooWStranger1".into(), role: Role::Member, label: None },
            ],
            version: 1,
            relays: vec![],
            active: true,
            invited_by: None,
        };
        let names = Names::new(&[alice], &[group]);
        let mut m = message_view("hi");
        m.author = "12D3KooWCarol0000".into();
        assert_eq!(names.author(&m), "Carol");
        m.author = "12D3KooWStranger1".into();
        assert_eq!(names.author(&m), "…tranger1");
        m.direction = Direction::Outgoing;
        assert_eq!(names.author(&m), "you");
        m.conversation = "g1".into();
        assert_eq!(names.conversation(&m), "#club");
        m.peer = Some("12D3KooWAlice0000".into());
        assert_eq!(names.conversation(&m), "al");
    }

    #[test]
    fn dates_for_people() {
        assert_eq!(date_time(1_796_320_800_000), "2026-12-03 18:00 UTC");
    }

    #[test]
    fn message_texts_keep_their_lines_indented_and_clean() {
        let out = message_lines(&message_view(HOSTILE), "…Abcdefgh", None, 10);
        assert!(is_clean(&out), "{out:?}");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out:?}");
        assert!(lines[0].starts_with("00:00 …Abcdefgh  \u{fffd}[31mred"), "{out:?}");
        // The second line starts under the first line's text (after "HH:MM who ").
        assert_eq!(lines[1], format!("{}second  ", " ".repeat("00:00 ".len() + 10 + 1)));
        // Ordinary text is untouched.
        let plain = message_lines(&message_view("Привет 👋\n\tok"), "x", None, 10);
        assert!(plain.contains("Привет 👋") && plain.ends_with("  ok  "), "{plain:?}");
    }
}
