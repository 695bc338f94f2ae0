//! The profile overlay (`/profile [contact]`): a window with the picture on the
//! left and, beside it (below it on a narrow screen), the name, the local alias,
//! the status line, the peer id and, for a contact, their presence.
//!
//! The picture is drawn through the terminal's graphics protocol when there is one
//! (encoded off the loop for exactly [`AVATAR_CELLS`], so it is drawn whole or not
//! at all), else in half-blocks, which are ordinary cells.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::overlay::{centered, window};
use super::theme::Theme;
use crate::app::{AVATAR_CELLS, App, Avatar, ProfileCard};
use crate::{picture, text};

/// Widest the window gets.
const WIDTH: u16 = 72;
/// Narrowest text column beside the picture; narrower windows put it below.
const TEXT_MIN: u16 = 24;
/// Width of the field names (`Status  `).
const KEY_W: usize = 10;

/// The text rows for `card` at `width` columns.
fn lines(app: &App, card: &ProfileCard, width: usize, theme: &Theme) -> Vec<Line<'static>> {
    if let Some(error) = &card.error {
        let rows = text::wrap(&format!("cannot read the profile: {}", text::sanitize_line(error)), width, width);
        return rows.into_iter().map(|r| Line::styled(r, theme.error())).collect();
    }
    let Some(profile) = &card.profile else {
        return vec![Line::styled("reading the profile…", theme.dim())];
    };
    let ours = card.asked.is_none();
    let mut out = Vec::new();
    // A contact without a profile name is still known by the name it offered when it
    // became a contact (what the list shows).
    let known = app.conversation(&profile.peer_id).map(|c| c.label().to_owned()).filter(|l| *l != profile.peer_id);
    let title = profile.alias.clone().or_else(|| profile.name.clone()).or(known).map(|t| text::sanitize_line(&t));
    let title = title.unwrap_or_else(|| text::short_peer(&profile.peer_id));
    out.push(Line::styled(text::truncate(&title, width), theme.title()));
    out.push(Line::default());
    let value_w = width.saturating_sub(KEY_W).max(1);
    let field = |out: &mut Vec<Line<'static>>, key: &str, value: &str, style: Style| {
        for (i, row) in text::wrap(value, value_w, value_w).into_iter().enumerate() {
            let left = if i == 0 { text::pad(key, KEY_W) } else { " ".repeat(KEY_W) };
            out.push(Line::from(vec![Span::styled(left, theme.key()), Span::styled(row, style)]));
        }
    };
    let none = |what: &str| format!("({what})");
    let name = profile.name.as_deref().map_or_else(|| none("none"), text::sanitize_line);
    field(&mut out, "Name", &name, Style::new());
    if let Some(alias) = &profile.alias {
        field(&mut out, "Alias", &text::sanitize_line(alias), Style::new());
    }
    let status = profile.status.as_deref().map_or_else(|| none("none"), text::sanitize_line);
    field(&mut out, "Status", &status, Style::new());
    // Whole, so it can be copied; broken anywhere (it has no spaces).
    for (i, row) in text::hard_wrap(&profile.peer_id, value_w).into_iter().enumerate() {
        let left = if i == 0 { text::pad("Peer id", KEY_W) } else { " ".repeat(KEY_W) };
        out.push(Line::from(vec![Span::styled(left, theme.key()), Span::styled(row, theme.dim())]));
    }
    if !ours {
        if let Some(presence) = app.presence(&profile.peer_id) {
            field(&mut out, "Presence", &super::messages::seen(app, presence), Style::new());
        }
        if let Some(contact) = app.conversation(&profile.peer_id).and_then(|c| c.contact()) {
            let verified = super::verify::verified_text(app, &contact.peer_id, contact.verified);
            field(&mut out, "Verified", &verified, Style::new());
            if contact.key_changed {
                let warning = format!("⚠ {}", super::verify::key_changed_text(contact.verified));
                field(&mut out, "", &warning, theme.key_warning());
            }
        }
        if profile.updated_at.is_none() {
            field(&mut out, "", "no profile received from them yet", theme.dim());
        }
    }
    out
}

/// The picture's rows in half-blocks, or a line saying why there is none.
fn avatar_rows(card: &ProfileCard, theme: &Theme) -> Vec<Line<'static>> {
    let (columns, rows) = AVATAR_CELLS;
    match &card.avatar {
        Avatar::Ready { picture, .. } => picture::half_blocks(picture, columns, rows),
        Avatar::Loading => vec![Line::styled("decoding…", theme.dim())],
        Avatar::Failed(_) => vec![Line::styled("(bad picture)", theme.dim())],
        Avatar::None if card.profile.is_some() => vec![Line::styled("(no picture)", theme.dim())],
        Avatar::None => Vec::new(),
    }
}

/// Draw the profile overlay.
pub(crate) fn render(frame: &mut Frame, app: &App, card: &ProfileCard, area: Rect, theme: &Theme) {
    let width = WIDTH.min(area.width.saturating_sub(2)).max(area.width.min(20));
    let (avatar_w, avatar_h) = AVATAR_CELLS;
    let beside = width.saturating_sub(2) >= avatar_w + 2 + TEXT_MIN;
    let text_w = if beside { width.saturating_sub(2 + avatar_w + 2) } else { width.saturating_sub(2) };
    let rows = lines(app, card, usize::from(text_w.max(1)), theme);
    let text_h = u16::try_from(rows.len()).unwrap_or(u16::MAX);
    let inner_h = if beside { text_h.max(avatar_h) } else { text_h.saturating_add(avatar_h + 1) };
    let area = centered(area, width, inner_h.saturating_add(2));
    if area.is_empty() {
        return;
    }
    let title = if card.asked.is_none() { " Your profile · Esc closes " } else { " Profile · Esc closes " };
    let inner = window(frame, area, title, theme);
    if inner.is_empty() {
        return;
    }
    let picture_area = Rect { width: avatar_w.min(inner.width), height: avatar_h.min(inner.height), ..inner };
    let text_area = if beside {
        let x = inner.x + avatar_w + 2;
        Rect { x, width: inner.width.saturating_sub(avatar_w + 2), ..inner }
    } else {
        let y = inner.y + avatar_h + 1;
        Rect { y, height: inner.height.saturating_sub(avatar_h + 1), ..inner }
    };
    frame.render_widget(Paragraph::new(rows), text_area);
    match &card.avatar {
        // Drawn whole or not at all: a part of a sixel or iTerm2 picture cannot be.
        Avatar::Ready { encoded: Some(encoded), .. } if app.graphics().is_protocol() => {
            let (w, h) = encoded.size();
            if w <= picture_area.width && h <= picture_area.height {
                encoded.render(centered(picture_area, w, h), frame.buffer_mut());
            }
        }
        _ => {
            let rows = avatar_rows(card, theme);
            let (w, h) = match &card.avatar {
                Avatar::Ready { picture, .. } => picture::cells(picture, avatar_w, avatar_h),
                _ => (picture_area.width, 1),
            };
            frame.render_widget(Paragraph::new(rows), centered(picture_area, w, h));
        }
    }
}
