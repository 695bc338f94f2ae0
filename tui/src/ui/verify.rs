//! The verify overlay (`/verify <contact>`): the contact's safety number in rows of
//! six groups, whether they are verified (and a warning when their key changed),
//! what to do, and the number's QR code as the node drew it, beside the text when
//! the screen is wide enough, else below it.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::overlay::{centered, window};
use super::theme::Theme;
use crate::app::{App, VerifyCard};
use crate::text;

/// Groups of digits per row of the safety number.
const GROUPS_PER_ROW: usize = 6;
/// Width of the text column (a row of six groups is 35 columns).
const TEXT_W: u16 = 44;
/// Columns between the text and the code.
const GAP: u16 = 2;

/// The safety number in rows of [`GROUPS_PER_ROW`] groups.
pub(crate) fn number_rows(safety_number: &str) -> Vec<String> {
    let groups: Vec<&str> = safety_number.split_whitespace().collect();
    groups.chunks(GROUPS_PER_ROW).map(|row| row.join(" ")).collect()
}

/// What the profile overlay and this one say about a verified contact:
/// `yes, since Tue, 14 Jan 2025` (or `yes` when the date is not known), or `no`.
pub(crate) fn verified_text(app: &App, peer_id: &str, verified: bool) -> String {
    if !verified {
        return "no".to_owned();
    }
    match crate::app::verified_at(app, peer_id) {
        Some(at) => format!("yes, since {}", text::date_label(text::day_of(at, app.config().utc_offset_secs))),
        None => "yes".to_owned(),
    }
}

/// The warning for a contact whose key changed (`held`: they were verified, so
/// messages to them wait).
pub(crate) fn key_changed_text(held: bool) -> &'static str {
    if held {
        "key changed — compare safety numbers again; messages to them are held"
    } else {
        "key changed — compare safety numbers again"
    }
}

/// The text rows for `card` at `width` columns.
fn lines(app: &App, card: &VerifyCard, width: usize, theme: &Theme) -> Vec<Line<'static>> {
    let wrapped = |s: &str, style| -> Vec<Line<'static>> {
        text::wrap(s, width, width).into_iter().map(|r| Line::styled(r, style)).collect()
    };
    if let Some(error) = &card.error {
        return wrapped(&format!("cannot read the safety number: {}", text::sanitize_line(error)), theme.error());
    }
    let Some(view) = &card.view else {
        return vec![Line::styled("reading the safety number…", theme.dim())];
    };
    let contact = &view.contact;
    let name = text::sanitize_line(contact.label());
    let mut out = vec![Line::styled(text::truncate(&name, width), theme.title()), Line::default()];
    let verified = verified_text(app, &contact.peer_id, contact.verified);
    out.push(Line::from(vec![Span::styled("Verified  ", theme.key()), Span::raw(verified)]));
    if contact.key_changed {
        out.extend(wrapped(&format!("⚠ {}", key_changed_text(contact.verified)), theme.key_warning()));
    }
    out.push(Line::default());
    out.push(Line::styled("Safety number", theme.key()));
    out.extend(number_rows(&view.safety_number).into_iter().map(|r| Line::raw(text::truncate(&r, width))));
    out.push(Line::default());
    let what = if contact.verified && !contact.key_changed {
        format!("/verify {name} unmark takes the mark back.")
    } else {
        format!(
            "Compare it with the number on their device (or scan the code there). If they match: /verify {name} mark"
        )
    };
    out.extend(wrapped(&what, theme.dim()));
    out
}

/// Draw the verify overlay.
pub(crate) fn render(frame: &mut Frame, app: &App, card: &VerifyCard, area: Rect, theme: &Theme) {
    let code: Vec<&str> = card.view.as_ref().map(|v| v.qr.lines().collect()).unwrap_or_default();
    let code_w = u16::try_from(code.iter().map(|r| text::width(r)).max().unwrap_or(0)).unwrap_or(u16::MAX);
    let code_h = u16::try_from(code.len()).unwrap_or(u16::MAX);
    let room = area.width.saturating_sub(2);
    let beside = code_w > 0 && TEXT_W + GAP + code_w <= room;
    let text_w = if beside { TEXT_W } else { TEXT_W.max(code_w).min(room) };
    let rows = lines(app, card, usize::from(text_w.max(1)), theme);
    let text_h = u16::try_from(rows.len()).unwrap_or(u16::MAX);
    let (inner_w, inner_h) = if beside {
        (TEXT_W + GAP + code_w, text_h.max(code_h))
    } else if code_h > 0 {
        (text_w, text_h.saturating_add(1).saturating_add(code_h))
    } else {
        (text_w, text_h)
    };
    let area = centered(area, inner_w.saturating_add(2), inner_h.saturating_add(2));
    if area.is_empty() {
        return;
    }
    let inner = window(frame, area, " Safety number · Esc closes ", theme);
    if inner.is_empty() {
        return;
    }
    let text_area = Rect { width: text_w.min(inner.width), ..inner };
    frame.render_widget(Paragraph::new(rows), text_area);
    let code_area = if beside {
        let x = inner.x + TEXT_W + GAP;
        Rect { x, width: inner.width.saturating_sub(TEXT_W + GAP), ..inner }
    } else {
        let y = inner.y.saturating_add(text_h).saturating_add(1);
        Rect { y, height: inner.height.saturating_sub(text_h.saturating_add(1)), ..inner }
    };
    // The code as the node drew it; cut, it would not scan, so it shows whole or not.
    if code_area.width >= code_w && code_area.height >= code_h && code_h > 0 {
        let code: Vec<Line<'static>> = code.iter().map(|r| Line::styled((*r).to_owned(), theme.qr())).collect();
        frame.render_widget(Paragraph::new(code), centered(code_area, code_w, code_h));
    } else if code_h > 0 && code_area.height > 0 {
        let need = format!("(the QR code needs {code_w}×{code_h} cells: enlarge the terminal)");
        frame.render_widget(Paragraph::new(Line::styled(need, theme.dim())), code_area);
    }
}
