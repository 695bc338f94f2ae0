//! The call bar (one row above the input box while a call is in progress: who,
//! marked `●` while they speak, where it stands, how long it has lasted, "muted",
//! and level meters for our side and theirs) and the incoming-call window; and
//! what the room bar (`room.rs`) draws the same way.

use kith_p2p::call::CallState;
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::overlay::{centered, window};
use super::theme::Theme;
use crate::app::{App, CallInfo, duration};
use crate::text;

/// Cells in a level meter.
const METER_CELLS: usize = 5;
/// Widest the incoming-call window gets.
const INCOMING_WIDTH: u16 = 46;

/// A level (0–100) as [`METER_CELLS`] cells: lit `▮`, unlit `▯` (told apart without
/// colours too). Any sound at all lights one cell.
pub(super) fn meter(level: u8, theme: &Theme) -> Vec<Span<'static>> {
    let lit = (usize::from(level) * METER_CELLS).div_ceil(100).min(METER_CELLS);
    vec![Span::styled("▮".repeat(lit), theme.meter()), Span::raw("▯".repeat(METER_CELLS - lit))]
}

/// Where a call stands, as the bar says it.
fn state_label(call: &CallInfo) -> &'static str {
    match (call.state, call.outgoing) {
        (CallState::Calling, _) => "calling…",
        (CallState::Ringing, true) => "ringing…",
        (CallState::Ringing, false) => "is calling you",
        (CallState::Connecting, _) => "connecting…",
        (CallState::Active, _) => "active",
        (CallState::Ended, _) => "ended",
    }
}

/// A name in a bar after the one-cell slot before it: `●` there, and the name
/// highlighted, while they speak; a space otherwise (so nothing moves when they
/// start or stop).
pub(super) fn speaker(name: String, speaking: bool, theme: &Theme) -> [Span<'static>; 2] {
    if speaking {
        [Span::styled("●", theme.speaking()), Span::styled(name, theme.speaking())]
    } else {
        [Span::raw(" "), Span::raw(name)]
    }
}

/// The call bar's text, in spans, for `call` with `who` as of `now_ms`.
fn bar_spans(call: &CallInfo, who: &str, now_ms: Option<u64>, theme: &Theme) -> (Vec<Span<'static>>, &'static str) {
    let media = matches!(call.state, CallState::Connecting | CallState::Active);
    let mut spans = vec![Span::raw(" ☎")];
    spans.extend(speaker(who.to_owned(), media && call.peer_speaking, theme));
    spans.push(Span::raw(format!(" · {}", state_label(call))));
    if let (Some(answered), Some(now)) = (call.answered_at_ms, now_ms) {
        spans.push(Span::raw(format!(" {}", duration(now.saturating_sub(answered)))));
    }
    if call.muted {
        spans.push(Span::raw(" · "));
        spans.push(Span::styled("muted", theme.muted()));
    }
    if media {
        spans.push(Span::raw(" · mic "));
        spans.extend(meter(call.input_level, theme));
        spans.push(Span::raw(" spk "));
        spans.extend(meter(call.output_level, theme));
    }
    let hint = match (call.state, call.outgoing) {
        (CallState::Ringing, false) => " /answer · /hangup declines ",
        _ if media => " /mute · /hangup ",
        _ => " /hangup ",
    };
    (spans, hint)
}

/// Draw the call bar into `area` (empty when there is no call or no room).
pub(crate) fn render_bar(frame: &mut Frame, app: &App, area: Rect, theme: &Theme) {
    let Some(call) = app.call() else { return };
    if area.is_empty() {
        return;
    }
    let who = crate::app::call_name(app, &call.peer);
    let (spans, hint) = bar_spans(call, &text::truncate(&who, 24), app.now_ms(), theme);
    let line = fit(spans, hint, theme.call_bar(), usize::from(area.width));
    frame.render_widget(Paragraph::new(line).style(theme.call_bar()), area);
}

/// A bar's `spans` cut at `width` (the right edge), span by span, and `hint` (in
/// `hint_style`) after them at the right only where it fits whole.
pub(super) fn fit(spans: Vec<Span<'static>>, hint: &'static str, hint_style: Style, width: usize) -> Line<'static> {
    let mut shown = Vec::new();
    let mut used = 0;
    for span in spans {
        let room = width.saturating_sub(used);
        let content = text::truncate(&span.content, room);
        used += text::width(&content);
        if !content.is_empty() {
            shown.push(Span::styled(content, span.style));
        }
    }
    let room = width.saturating_sub(used);
    if room > hint.len() {
        shown.push(Span::raw(" ".repeat(room - hint.len())));
        shown.push(Span::styled(hint, hint_style));
    }
    Line::from(shown)
}

/// Draw the incoming-call window for a call from `peer`.
pub(crate) fn render_incoming(frame: &mut Frame, app: &App, peer: &str, area: Rect, theme: &Theme) {
    let area = centered(area, INCOMING_WIDTH.min(area.width), 8);
    if area.is_empty() {
        return;
    }
    let inner = window(frame, area, " Incoming call ", theme);
    let width = usize::from(inner.width);
    let who = crate::app::call_name(app, peer);
    let mut lines = vec![Line::default()];
    for row in text::wrap(&format!("☎  {who} is calling you"), width.saturating_sub(2), width.saturating_sub(2)) {
        lines.push(Line::styled(format!("  {row}"), theme.title()));
    }
    lines.push(Line::default());
    for (keys, what) in [("Enter, a", "answer"), ("Esc, d", "decline")] {
        lines.push(Line::from(vec![Span::raw("  "), Span::styled(text::pad(keys, 10), theme.key()), Span::raw(what)]));
    }
    frame.render_widget(Paragraph::new(lines), inner);
}
