//! The message pane: its title and the focused conversation's rows around the
//! scroll anchor (laid out by [`super::timeline`]), sitting right above the input
//! when they do not fill the pane.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};

use super::theme::Theme;
use super::timeline::{Timeline, notice};
use crate::app::{App, Conversation, Scroll};
use crate::text;

/// The pane title: online dot, name, short peer id and what waits for delivery to
/// the contact; for a group `#name` and its size.
fn title(app: &App, conv: &Conversation, theme: &Theme) -> Line<'static> {
    if let Some(group) = conv.group_view() {
        let size = if group.active { format!(" {} ", crate::text::members(group.members.len())) } else { " left ".to_owned() };
        return Line::from(vec![
            Span::raw(" "),
            Span::styled("#", theme.accent()),
            Span::styled(text::sanitize_line(&group.name), theme.title()),
            Span::styled(size, theme.dim()),
        ]);
    }
    let online = app.is_online(conv.peer_id());
    let (dot, dot_style) = if online { ("●", theme.online()) } else { ("○", theme.dim()) };
    let mut spans = vec![
        Span::raw(" "),
        Span::styled(dot, dot_style),
        Span::raw(" "),
        Span::styled(text::sanitize_line(conv.label()), theme.title()),
        Span::styled(format!(" {} ", text::short_peer(conv.peer_id())), theme.dim()),
        Span::styled(if online { "online " } else { "offline " }, theme.dim()),
    ];
    if let Some(queue) = app.queue(conv.peer_id()) {
        spans.push(Span::styled(format!("· {} waiting, {} ", queue.waiting, super::status::attempt(queue)), theme.dim()));
    }
    Line::from(spans)
}

/// Draw the message pane.
pub(crate) fn render(frame: &mut Frame, app: &App, areas: &super::layout::Areas, theme: &Theme) {
    let inner = areas.messages_inner;
    let conv = app.focused();
    let heading = match conv {
        Some(conv) => title(app, conv, theme),
        None => Line::styled(" kith ", theme.title()),
    };
    let scrolled = conv.is_some_and(|c| c.scroll != Scroll::Bottom);
    if areas.bordered {
        let mut block = Block::bordered().border_style(theme.border_focus()).title(heading);
        if scrolled {
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
    let timeline = Timeline::new(app, conv, width, theme);
    let shown = match timeline.cursor() {
        Some(cursor) => timeline.view(cursor, height),
        None => {
            let mut rows = timeline.empty_rows();
            rows.drain(..rows.len().saturating_sub(height));
            rows
        }
    };
    // Anchor at the bottom: a short conversation sits right above the input.
    let pad = u16::try_from(height - shown.len()).unwrap_or(0);
    let area = Rect { y: inner.y + pad, height: inner.height - pad, ..inner };
    frame.render_widget(Paragraph::new(shown), area);
}
