//! The room bar: one row above the call bar (or the input box) while we are in a
//! group's voice room. It shows the room of the open group, else the one joined
//! last, with how many others we are in; how long we have been in; "muted"; the
//! level of what we hear; and who is in, by the names the group's conversation
//! uses, each speaker marked `●` and highlighted.
//!
//! ```text
//!  ♫ #Book club (+1 room) · 01:23 · muted · spk ▮▮▯▯▯ · you, Алиса,●Bob 🎸     /mute · /room leave
//! ```

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::Span;
use ratatui::widgets::Paragraph;

use super::call::{fit, meter, speaker};
use super::theme::Theme;
use crate::app::{App, RoomInfo, RoomState, duration, room_group_name, room_participant_name};
use crate::text;

/// Widest a group's name is shown.
const NAME_MAX: usize = 24;
/// Widest a participant's name is shown.
const PARTICIPANT_MAX: usize = 16;

/// The room bar's text, in spans, and the hint for its right end.
fn bar_spans(app: &App, room: &RoomInfo, theme: &Theme) -> (Vec<Span<'static>>, &'static str) {
    let name = text::truncate(&room_group_name(app, &room.group), NAME_MAX);
    let mut spans = vec![Span::raw(format!(" ♫ {name}"))];
    match app.rooms().len().saturating_sub(1) {
        0 => {}
        1 => spans.push(Span::raw(" (+1 room)")),
        more => spans.push(Span::raw(format!(" (+{more} rooms)"))),
    }
    match (room.state, room.joined_at_ms, app.now_ms()) {
        (RoomState::Joining, ..) => spans.push(Span::raw(" · joining…")),
        (RoomState::Leaving, ..) => spans.push(Span::raw(" · leaving…")),
        (RoomState::Joined, Some(at), Some(now)) => {
            spans.push(Span::raw(format!(" · {}", duration(now.saturating_sub(at)))))
        }
        (RoomState::Joined, ..) => {}
    }
    if room.muted {
        spans.push(Span::raw(" · "));
        spans.push(Span::styled("muted", theme.muted()));
    }
    if room.state != RoomState::Joining {
        spans.push(Span::raw(" · spk "));
        spans.extend(meter(room.output_level, theme));
    }
    // Us first, then the others in the order they came; each after a slot that
    // marks a speaker.
    let me = app.me();
    let ours = room.participants.iter().filter(|p| Some(p.as_str()) == me);
    let others = room.participants.iter().filter(|p| Some(p.as_str()) != me);
    for (i, peer) in ours.chain(others).enumerate() {
        spans.push(Span::raw(if i == 0 { " ·" } else { "," }));
        let who = text::truncate(&room_participant_name(app, &room.group, peer), PARTICIPANT_MAX);
        spans.extend(speaker(who, room.is_speaking(peer), theme));
    }
    let hint = match room.state {
        RoomState::Joined if app.call().is_some() => " /room mute · /room leave ",
        RoomState::Joined => " /mute · /room leave ",
        RoomState::Joining | RoomState::Leaving => "",
    };
    (spans, hint)
}

/// Draw the room bar into `area` (empty when we are in no room or there is no room
/// for the bar).
pub(crate) fn render_bar(frame: &mut Frame, app: &App, area: Rect, theme: &Theme) {
    let Some(room) = app.room() else { return };
    if area.is_empty() {
        return;
    }
    let (spans, hint) = bar_spans(app, room, theme);
    let line = fit(spans, hint, theme.call_bar(), usize::from(area.width));
    frame.render_widget(Paragraph::new(line).style(theme.call_bar()), area);
}
