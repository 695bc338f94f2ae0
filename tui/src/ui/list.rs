//! The conversation list: two rows per conversation (name line, preview line),
//! conversations and groups (marked `#`; contacts by presence, `●` online and `○`
//! offline) first, then a "Requests" section.

use kith_p2p::kith_storage::{ContactState, Direction};
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};

use super::theme::Theme;
use crate::app::{App, Conversation};
use crate::text;

/// One row of the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Row {
    /// A section title.
    Header(String),
    /// A gap between sections.
    Blank,
    /// The name line of conversation `i`.
    Entry(usize),
    /// The preview line of conversation `i`.
    Preview(usize),
}

impl Row {
    /// The conversation this row belongs to.
    pub(crate) fn index(&self) -> Option<usize> {
        match self {
            Row::Entry(i) | Row::Preview(i) => Some(*i),
            Row::Header(_) | Row::Blank => None,
        }
    }
}

/// The list's rows in display order.
pub(crate) fn rows(app: &App) -> Vec<Row> {
    let mut rows = Vec::new();
    let conversations = app.conversations();
    let requests = conversations.iter().filter(|c| c.is_request()).count();
    for (i, conv) in conversations.iter().enumerate() {
        if conv.is_request() {
            continue;
        }
        rows.push(Row::Entry(i));
        rows.push(Row::Preview(i));
    }
    if requests > 0 {
        if !rows.is_empty() {
            rows.push(Row::Blank);
        }
        rows.push(Row::Header(format!("Requests ({requests})")));
        for (i, conv) in conversations.iter().enumerate() {
            if conv.is_request() {
                rows.push(Row::Entry(i));
                rows.push(Row::Preview(i));
            }
        }
    }
    rows
}

/// Draw the list into `area` (with its border) and `inner`.
pub(crate) fn render(frame: &mut Frame, app: &App, area: Rect, inner: Rect, theme: &Theme) {
    if area.is_empty() {
        return;
    }
    let unread: u32 = app.conversations().iter().map(|c| c.unread).sum();
    let title = if unread > 0 { format!(" Chats ({unread}) ") } else { " Chats ".to_owned() };
    frame.render_widget(Block::bordered().border_style(theme.border()).title(Span::styled(title, theme.title())), area);
    let width = usize::from(inner.width);
    let height = usize::from(inner.height);
    if width == 0 || height == 0 {
        return;
    }
    let rows = rows(app);
    if rows.is_empty() {
        let hint = "No contacts yet. /invite shows your invite; /add <invite> adds someone.";
        let lines: Vec<Line> =
            text::wrap(hint, width, width).into_iter().map(|r| Line::styled(r, theme.dim())).collect();
        frame.render_widget(Paragraph::new(lines), inner);
        return;
    }
    let offset = app.list_offset().min(rows.len().saturating_sub(height));
    let focused = app.focused_index();
    let lines: Vec<Line> = rows
        .iter()
        .skip(offset)
        .take(height)
        .map(|row| match row {
            Row::Header(title) => Line::styled(text::truncate(&format!(" {title}"), width), theme.header()),
            Row::Blank => Line::default(),
            Row::Entry(i) | Row::Preview(i) => {
                let Some(conv) = app.conversations().get(*i) else { return Line::default() };
                let selected = focused == Some(*i);
                let line = if matches!(row, Row::Entry(_)) {
                    name_line(app, conv, selected, width, theme)
                } else {
                    preview_line(app, conv, selected, width, theme)
                };
                if selected { line.patch_style(theme.selected()) } else { line }
            }
        })
        .collect();
    frame.render_widget(Paragraph::new(lines), inner);
}

fn bar(selected: bool, theme: &Theme) -> Span<'static> {
    if selected { Span::styled("▌", theme.accent()) } else { Span::raw(" ") }
}

/// A conversation's one-cell marker, in the list and the quick switcher: `#` for a
/// group (dimmed once left); for a contact its presence: `●` (green) online, `○`
/// (dim) offline, and nothing when the node has not said (presence off).
pub(crate) fn marker(app: &App, conv: &Conversation, theme: &Theme) -> Span<'static> {
    match (conv.group_view(), app.presence(conv.peer_id())) {
        (Some(g), _) if g.active => Span::styled("#", theme.accent()),
        (Some(_), _) => Span::styled("#", theme.dim()),
        (None, Some(p)) if p.online => Span::styled("●", theme.online()),
        (None, Some(_)) => Span::styled("○", theme.dim()),
        (None, None) => Span::raw(" "),
    }
}

fn name_line(app: &App, conv: &Conversation, selected: bool, width: usize, theme: &Theme) -> Line<'static> {
    // A group has no presence: `#` marks it, and its size (or "left") follows the name.
    let marker = marker(app, conv, theme);
    let size = match conv.group_view() {
        Some(g) if g.active => format!(" ({})", g.members.len()),
        Some(_) => " (left)".to_owned(),
        None => String::new(),
    };
    // A muted conversation says so after its name, and its unread count is quiet.
    let muted = conv.muted(app.now_ms());
    let size = if muted { format!("{size} muted") } else { size };
    let badge = if conv.unread > 0 { format!(" {} ", conv.unread.min(999)) } else { String::new() };
    let name_w = width.saturating_sub(3 + text::width(&badge));
    let name_style = if conv.unread > 0 || selected { theme.title() } else { ratatui::style::Style::new() };
    let label = text::truncate(conv.label(), name_w.saturating_sub(text::width(&size)));
    let size_w = name_w.saturating_sub(text::width(&label));
    let mut spans = vec![
        bar(selected, theme),
        marker,
        Span::raw(" "),
        Span::styled(label, name_style),
        Span::styled(text::pad(&size, size_w), theme.dim()),
    ];
    if !badge.is_empty() {
        spans.push(Span::styled(badge, if muted { theme.dim() } else { theme.badge() }));
    }
    Line::from(spans)
}

fn preview_line(app: &App, conv: &Conversation, selected: bool, width: usize, theme: &Theme) -> Line<'static> {
    let state = conv.contact().map_or(ContactState::Accepted, |c| c.state);
    let preview = match state {
        _ if conv.is_invitation() => "invites you to join".to_owned(),
        ContactState::PendingIn => match (&conv.request_preview, conv.held) {
            (Some(p), _) => format!("“{}”", first_line(p)),
            (None, 0) => "wants to add you".to_owned(),
            (None, n) => format!("{n} held messages"),
        },
        ContactState::PendingOut if conv.last.is_none() => "request sent".to_owned(),
        _ => match &conv.last {
            Some(m) if m.direction == Direction::Outgoing => format!("you: {}", text::summary(m)),
            // In a group, who wrote it matters as much as what.
            Some(m) if conv.group_view().is_some() => {
                format!("{}: {}", conv.author_label(app, &m.author), text::summary(m))
            }
            Some(m) => text::summary(m),
            None => "no messages yet".to_owned(),
        },
    };
    let text = text::pad(&preview, width.saturating_sub(3));
    Line::from(vec![bar(selected, theme), Span::raw("  "), Span::styled(text, theme.dim())])
}

fn first_line(s: &str) -> &str {
    s.lines().find(|l| !l.trim().is_empty()).unwrap_or("")
}
