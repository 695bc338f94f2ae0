//! The message pane: its title and the focused conversation's rows around the
//! scroll anchor (laid out by [`super::timeline`]), sitting right above the input
//! when they do not fill the pane, and on its bottom border who is typing there.
//!
//! With a terminal graphics protocol the title of a 1:1 conversation begins with
//! the contact's picture ([`crate::app::HEADER_AVATAR_CELLS`], see [`avatar_slot`]);
//! with half-blocks it never does.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};

use super::layout::Areas;
use super::theme::Theme;
use super::timeline::{Timeline, notice};
use crate::app::{App, Conversation, HEADER_AVATAR_CELLS, Presence, Scroll};
use crate::text;

/// Fewest columns the title row keeps for the name beside the header's picture.
const AVATAR_MIN_TEXT: u16 = 12;

/// What the bottom border says while the view is scrolled up.
const SCROLLED: &str = " ↓ Esc jumps to the newest ";

/// A contact's presence as the pane title says it: `online`, `last seen 09:15`
/// (today, local time), `last seen Mon, 13 Jan 2025`, or `offline` when the node has
/// not seen it online since it started.
pub(crate) fn seen(app: &App, presence: Presence) -> String {
    let offset = app.config().utc_offset_secs;
    match presence.last_seen {
        _ if presence.online => "online".to_owned(),
        None => "offline".to_owned(),
        Some(at) if app.now_ms().map(|now| text::day_of(now, offset)) == Some(text::day_of(at, offset)) => {
            format!("last seen {}", text::clock(at, offset))
        }
        Some(at) => format!("last seen {}", text::date_label(text::day_of(at, offset))),
    }
}

/// The pane title: presence dot, name, short peer id, `✓ verified` or `⚠ key
/// changed` when so, presence (none when the node
/// did not say: presence off), their status line if they set one, and what waits for delivery to the contact; for a
/// group `#name` and its size. With `avatar`, a blank for the contact's picture
/// comes first.
fn title(app: &App, conv: &Conversation, avatar: bool, theme: &Theme) -> Line<'static> {
    if let Some(group) = conv.group_view() {
        let size = if group.active { format!(" {} ", crate::text::members(group.members.len())) } else { " left ".to_owned() };
        return Line::from(vec![
            Span::raw(" "),
            Span::styled("#", theme.accent()),
            Span::styled(text::sanitize_line(&group.name), theme.title()),
            Span::styled(size, theme.dim()),
        ]);
    }
    let presence = app.presence(conv.peer_id());
    let mut spans = vec![Span::raw(" ")];
    if avatar {
        spans.push(Span::raw(" ".repeat(usize::from(HEADER_AVATAR_CELLS.0) + 1)));
    }
    if presence.is_some() {
        spans.extend([super::list::marker(app, conv, theme), Span::raw(" ")]);
    }
    spans.extend([
        Span::styled(text::sanitize_line(conv.label()), theme.title()),
        Span::styled(format!(" {} ", text::short_peer(conv.peer_id())), theme.dim()),
    ]);
    // Whether their key was checked: a mark when verified, a warning when it changed
    // (nothing for the usual contact, neither).
    if let Some(contact) = conv.contact() {
        if contact.key_changed {
            let held = if contact.verified { ", messages held" } else { "" };
            spans.push(Span::styled(format!("⚠ key changed{held} "), theme.key_warning()));
        } else if contact.verified {
            spans.push(Span::styled("✓ verified ", theme.verified()));
        }
    }
    if let Some(presence) = presence {
        spans.push(Span::styled(format!("{} ", seen(app, presence)), theme.dim()));
    }
    // Their status line (from their profile), after who and where they are.
    if let Some(status) = crate::app::status_of(app, conv.peer_id()) {
        spans.push(Span::styled(format!("· {} ", text::sanitize_line(status)), theme.dim().add_modifier(Modifier::ITALIC)));
    }
    if let Some(queue) = app.queue(conv.peer_id()) {
        spans.push(Span::styled(format!("· {} waiting, {} ", queue.waiting, super::status::attempt(queue)), theme.dim()));
    }
    Line::from(spans)
}

/// Where the header's picture goes in these panes: on the title row (the pane's
/// top border, or the row above the messages without borders), after the title's
/// leading blank; `None` when that row is too narrow to spare it.
pub(crate) fn avatar_slot(areas: &Areas) -> Option<Rect> {
    let row = if areas.bordered {
        let pane = areas.messages;
        Rect { x: pane.x + 1, width: pane.width.saturating_sub(2), height: pane.height.min(1), ..pane }
    } else {
        areas.title
    };
    let (width, height) = HEADER_AVATAR_CELLS;
    let fits = row.height >= height && row.width >= 1 + width + 1 + AVATAR_MIN_TEXT;
    fits.then_some(Rect { x: row.x + 1, y: row.y, width, height })
}

/// Draw the message pane.
pub(crate) fn render(frame: &mut Frame, app: &App, areas: &Areas, theme: &Theme) {
    let inner = areas.messages_inner;
    let conv = app.focused();
    // The contact's picture, where it fits (only ever with a graphics protocol).
    let avatar = app.header_avatar().zip(avatar_slot(areas));
    let heading = match conv {
        Some(conv) => title(app, conv, avatar.is_some(), theme),
        None => Line::styled(" kith ", theme.title()),
    };
    let scrolled = conv.is_some_and(|c| c.scroll != Scroll::Bottom);
    if areas.bordered {
        let mut block = Block::bordered().border_style(theme.border_focus()).title(heading);
        let mut room = usize::from(areas.messages.width.saturating_sub(2));
        if scrolled {
            block = block.title_bottom(Line::styled(SCROLLED, theme.dim()).right_aligned());
            room = room.saturating_sub(text::width(SCROLLED) + 1);
        }
        // Who is typing, on the border right above the input: the messages do not
        // move when it comes and goes. (Without borders there is no room for it.)
        if let Some(typing) = conv.and_then(|c| crate::app::typing_notice(app, c))
            && room > 2
        {
            let typing = format!(" {} ", text::truncate(&typing, room - 2));
            block = block.title_bottom(Line::styled(typing, theme.dim().add_modifier(Modifier::ITALIC)).left_aligned());
        }
        frame.render_widget(block, areas.messages);
    } else if !areas.title.is_empty() {
        frame.render_widget(Paragraph::new(heading), areas.title);
    }
    if let Some((encoded, slot)) = avatar {
        // Drawn whole or not at all: a part of a sixel or iTerm2 picture cannot be.
        let (w, h) = encoded.size();
        if w <= slot.width && h <= slot.height {
            encoded.render(Rect { width: w, height: h, ..slot }, frame.buffer_mut());
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_picture_goes_after_the_titles_blank_where_there_is_room() {
        let (w, h) = HEADER_AVATAR_CELLS;
        // Bordered: on the top border, after the corner and the title's blank.
        let areas = Areas { bordered: true, messages: Rect::new(25, 0, 75, 24), ..Areas::default() };
        assert_eq!(avatar_slot(&areas), Some(Rect::new(27, 0, w, h)));
        // Without borders: on the title row.
        let areas = Areas { title: Rect::new(0, 0, 19, 1), ..Areas::default() };
        assert_eq!(avatar_slot(&areas), Some(Rect::new(1, 0, w, h)));
        // Too narrow to keep room for the name, or no title row at all.
        let areas = Areas { title: Rect::new(0, 0, 15, 1), ..Areas::default() };
        assert_eq!(avatar_slot(&areas), None);
        assert_eq!(avatar_slot(&Areas::default()), None);
        let areas = Areas { bordered: true, messages: Rect::new(0, 0, 17, 0), ..Areas::default() };
        assert_eq!(avatar_slot(&areas), None);
    }
}
