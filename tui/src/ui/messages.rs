//! The message pane: the focused conversation's loaded window as display rows (day
//! separators, the "new messages" line, wrapped messages with delivery marks),
//! anchored at the bottom and scrolled by `Conversation::scroll` rows.

use kith_p2p::kith_storage::{ContactState, Direction, MessageState};
use kith_p2p::views::MessageView;
use ratatui::Frame;
use ratatui::layout::{Alignment, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};

use super::theme::Theme;
use crate::app::{App, Conversation};
use crate::text;

/// Columns of `HH:MM `; continuation rows are indented by this much.
const TIME_W: usize = 6;
/// Widest author name shown.
const AUTHOR_MAX: usize = 16;
/// Narrower panes do not indent continuation rows.
const INDENT_MIN_WIDTH: usize = 24;

/// The delivery mark of a message and its style; incoming messages have none.
fn mark(m: &MessageView, theme: &Theme) -> Option<(&'static str, Style)> {
    if m.direction == Direction::Incoming {
        return None;
    }
    Some(match m.state {
        MessageState::Pending => ("◷", theme.mark()),
        MessageState::Sent => ("✓", theme.mark()),
        MessageState::Delivered => ("✓✓", theme.mark()),
        MessageState::Read => ("✓✓", theme.mark_read()),
        MessageState::Failed => ("✗", theme.mark_failed()),
    })
}

/// A full-width rule with `label` in the middle: `──── label ────`.
fn rule(label: &str, width: usize, style: Style) -> Line<'static> {
    let label = text::truncate(label, width.saturating_sub(2));
    let label_w = text::width(&label);
    if label_w == 0 {
        return Line::styled("─".repeat(width), style);
    }
    let side = width.saturating_sub(label_w + 2);
    let left = side / 2;
    let right = side - left;
    Line::styled(format!("{} {label} {}", "─".repeat(left), "─".repeat(right)), style)
}

/// Rows of centered, wrapped notice text.
fn notice(textual: &str, width: usize, style: Style) -> Vec<Line<'static>> {
    text::wrap(textual, width, width).into_iter().map(|r| Line::styled(r, style).alignment(Alignment::Center)).collect()
}

/// The rows of one message.
fn message_rows(app: &App, conv: &Conversation, m: &MessageView, width: usize, theme: &Theme) -> Vec<Line<'static>> {
    let outgoing = m.direction == Direction::Outgoing;
    let author = if outgoing { "you".to_owned() } else { text::truncate(conv.label(), AUTHOR_MAX) };
    let author_style = if outgoing { theme.me() } else { theme.them() };
    let prefix_w = TIME_W + text::width(&author) + 2;
    let indent = if width >= INDENT_MIN_WIDTH { TIME_W } else { 0 };
    let rest_w = width.saturating_sub(indent);
    let rows = text::wrap(&m.text, width.saturating_sub(prefix_w), rest_w);
    let last = rows.len().saturating_sub(1);
    let mut lines: Vec<Line<'static>> = Vec::with_capacity(rows.len() + 1);
    for (i, row) in rows.into_iter().enumerate() {
        let mut spans = if i == 0 {
            vec![
                Span::styled(text::clock(m.sent_at, app.config().utc_offset_secs), theme.dim()),
                Span::raw(" "),
                Span::styled(author.clone(), author_style),
                Span::raw(": "),
            ]
        } else {
            vec![Span::raw(" ".repeat(indent))]
        };
        spans.push(Span::raw(row));
        if i == last
            && let Some((glyph, style)) = mark(m, theme)
        {
            let used: usize = spans.iter().map(|s| s.width()).sum();
            if used + 1 + text::width(glyph) <= width {
                spans.push(Span::raw(" "));
                spans.push(Span::styled(glyph, style));
            } else {
                lines.push(Line::from(spans));
                spans = vec![Span::raw(" ".repeat(indent)), Span::styled(glyph, style)];
            }
        }
        lines.push(Line::from(spans));
    }
    lines
}

/// The last `need` rows of `conv` at `width` columns (or all of them if there are
/// fewer), oldest first, and whether that is all of them. Built from the newest
/// message backwards and stopped once `need` rows exist, so the cost of a frame
/// depends on the screen, not on how much history has been paged in.
pub(crate) fn tail_lines(
    app: &App,
    conv: &Conversation,
    width: usize,
    theme: &Theme,
    need: usize,
) -> (Vec<Line<'static>>, bool) {
    if width == 0 {
        return (Vec::new(), true);
    }
    // Blocks are collected bottom-up and reversed at the end.
    let mut blocks: Vec<Vec<Line<'static>>> = Vec::new();
    let mut count = 0;
    let mut push = |block: Vec<Line<'static>>, blocks: &mut Vec<Vec<Line<'static>>>| {
        count += block.len();
        blocks.push(block);
        count
    };
    match conv.contact.state {
        ContactState::PendingIn => {
            let text = format!("{} wants to add you as a contact: /accept, /reject or /block", conv.label());
            push(notice(&text, width, theme.notice()), &mut blocks);
        }
        ContactState::PendingOut => {
            let text = format!("{} has not accepted your contact request yet", conv.label());
            push(notice(&text, width, theme.notice()), &mut blocks);
        }
        _ => {}
    }
    if !conv.loaded {
        if conv.loading {
            push(notice("loading messages…", width, theme.dim()), &mut blocks);
        }
        return (flatten(blocks), true);
    }
    if conv.messages.is_empty() && !conv.has_older && !conv.is_request() {
        push(notice("no messages yet: say hello", width, theme.dim()), &mut blocks);
    }
    let offset = app.config().utc_offset_secs;
    let mut complete = true;
    for (i, m) in conv.messages.iter().enumerate().rev() {
        let mut block = Vec::new();
        let d = text::day_of(m.sent_at, offset);
        let new_day = i == 0 || text::day_of(conv.messages[i - 1].sent_at, offset) != d;
        if new_day {
            block.push(rule(&text::date_label(d), width, theme.separator()));
        }
        if conv.unread_marker.as_deref() == Some(m.id.as_str()) {
            block.push(rule("new messages", width, theme.new_marker()));
        }
        block.extend(message_rows(app, conv, m, width, theme));
        if push(block, &mut blocks) >= need && i > 0 {
            complete = false;
            break;
        }
    }
    if complete {
        let top = if !conv.has_older {
            format!("beginning of your conversation with {}", conv.label())
        } else if conv.loading {
            "loading older messages…".to_owned()
        } else {
            "↑ PageUp for older messages".to_owned()
        };
        push(notice(&top, width, theme.dim()), &mut blocks);
    }
    (flatten(blocks), complete)
}

/// Bottom-up blocks → rows oldest first.
fn flatten(blocks: Vec<Vec<Line<'static>>>) -> Vec<Line<'static>> {
    blocks.into_iter().rev().flatten().collect()
}

/// The most `conv` can be scrolled up at this size: rows above the screen when they
/// are fewer than `within`, else `None` (more than `within`: not at the top yet).
pub(crate) fn max_scroll(app: &App, conv: &Conversation, width: usize, height: usize, within: usize) -> Option<usize> {
    let (rows, complete) = tail_lines(app, conv, width, &Theme::new(true), within.saturating_add(height));
    complete.then(|| rows.len().saturating_sub(height))
}

/// The pane title: online dot, name, short peer id.
fn title(app: &App, conv: &Conversation, theme: &Theme) -> Line<'static> {
    let online = app.is_online(conv.peer_id());
    let (dot, dot_style) = if online { ("●", theme.online()) } else { ("○", theme.dim()) };
    Line::from(vec![
        Span::raw(" "),
        Span::styled(dot, dot_style),
        Span::raw(" "),
        Span::styled(text::sanitize_line(conv.label()), theme.title()),
        Span::styled(format!(" {} ", text::short_peer(conv.peer_id())), theme.dim()),
        Span::styled(if online { "online " } else { "offline " }, theme.dim()),
    ])
}

/// Draw the message pane.
pub(crate) fn render(frame: &mut Frame, app: &App, areas: &super::layout::Areas, theme: &Theme) {
    let inner = areas.messages_inner;
    let conv = app.focused();
    let heading = match conv {
        Some(conv) => title(app, conv, theme),
        None => Line::styled(" kith ", theme.title()),
    };
    let scrolled = conv.map_or(0, |c| c.scroll);
    if areas.bordered {
        let mut block = Block::bordered().border_style(theme.border_focus()).title(heading);
        if scrolled > 0 {
            block = block.title_bottom(Line::styled(" ↓ Esc jumps to the newest ", theme.dim()).right_aligned());
        }
        frame.render_widget(block, areas.messages);
    } else if !areas.title.is_empty() {
        frame.render_widget(Paragraph::new(heading), areas.title);
    }
    let width = usize::from(inner.width);
    let height = usize::from(inner.height);
    if width == 0 || height == 0 {
        return;
    }
    let Some(conv) = conv else {
        let welcome = "Welcome to kith. /invite shows your invite, /add <invite> adds a contact, F1 lists the keys.";
        let rows = notice(welcome, width, theme.dim());
        let top = height.saturating_sub(rows.len()) / 2;
        let area = Rect {
            y: inner.y + u16::try_from(top).unwrap_or(0),
            height: inner.height.saturating_sub(u16::try_from(top).unwrap_or(0)),
            ..inner
        };
        frame.render_widget(Paragraph::new(rows), area);
        return;
    };
    let (all, complete) = tail_lines(app, conv, width, theme, conv.scroll.saturating_add(height));
    let total = all.len();
    let scroll = if complete { conv.scroll.min(total.saturating_sub(height)) } else { conv.scroll };
    let end = total.saturating_sub(scroll);
    let start = end.saturating_sub(height);
    let shown: Vec<Line> = all.into_iter().skip(start).take(end - start).collect();
    // Anchor at the bottom: a short conversation sits right above the input.
    let pad = u16::try_from(height - shown.len()).unwrap_or(0);
    let area = Rect { y: inner.y + pad, height: inner.height - pad, ..inner };
    frame.render_widget(Paragraph::new(shown), area);
}
