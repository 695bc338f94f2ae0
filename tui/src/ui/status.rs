//! The status bar: node connection (and the countdown to the next reconnection
//! attempt), who is online, queued messages and their next delivery attempt, the
//! latest notice or error, and a pointer to the help, or to the log (F2) when the
//! notice is too long for the line.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use kith_p2p::node::QueueStatus;

use super::theme::Theme;
use crate::app::{App, NodeState};
use crate::text;

/// When a queue's next delivery attempt goes and where: "sending", "trying now",
/// "retry in 12 s", with " via relays" once its direct path failed.
pub(crate) fn attempt(queue: &QueueStatus) -> String {
    let when = if queue.in_flight {
        "sending".to_owned()
    } else if queue.next_try_in_ms == 0 {
        "trying now".to_owned()
    } else {
        format!("retry in {} s", queue.next_try_in_ms.div_ceil(1000))
    };
    if queue.via_relays { format!("{when} via relays") } else { when }
}

/// The soonest of all queues' next attempts (one in flight first), for the status bar.
fn next_attempt(queues: &[QueueStatus]) -> Option<String> {
    queues.iter().min_by_key(|q| (!q.in_flight, q.next_try_in_ms)).map(attempt)
}

/// Draw the status bar into `area`.
pub(crate) fn render(frame: &mut Frame, app: &App, area: Rect, theme: &Theme) {
    if area.is_empty() {
        return;
    }
    let width = usize::from(area.width);
    let node = match app.node() {
        NodeState::Connecting => " ◌ connecting".to_owned(),
        NodeState::Connected => " ● connected".to_owned(),
        NodeState::Disconnected { retry_in_secs: None, .. } => " ✗ disconnected".to_owned(),
        NodeState::Disconnected { retry_in_secs: Some(0), .. } => " ✗ disconnected · reconnecting…".to_owned(),
        NodeState::Disconnected { retry_in_secs: Some(secs), .. } => {
            format!(" ✗ disconnected · reconnecting in {secs} s…")
        }
    };
    let mut facts = node;
    if *app.node() == NodeState::Connected {
        // Nobody online is the absence of a fact, not "0 online".
        if app.online_count() > 0 {
            facts.push_str(&format!(" · {} online", app.online_count()));
        }
        if app.outbox() > 0 {
            facts.push_str(&format!(" · {} queued", app.outbox()));
            if let Some(next) = next_attempt(app.queues()) {
                facts.push_str(&format!(", {next}"));
            }
        }
    }
    // A notice too long for the line is cut, and the hint points at the log that
    // holds it whole.
    let status_w = app.status().map_or(0, |s| 3 + text::width(&s.text));
    let cut = text::width(&facts) + status_w + " F1 help ".len() > width;
    let help = if cut && app.status().is_some() { " F2 log " } else { " F1 help " };
    let mut spans = Vec::new();
    let mut used = 0;
    let mut add = |s: String, style, room: usize, spans: &mut Vec<Span<'static>>| {
        let room = room.saturating_sub(used);
        let s = text::truncate(&s, room);
        used += text::width(&s);
        if !s.is_empty() {
            spans.push(Span::styled(s, style));
        }
    };
    add(facts, theme.status_bar(), width, &mut spans);
    if let Some(status) = app.status() {
        let style = if status.error { theme.error() } else { theme.status_bar() };
        let room = width.saturating_sub(help.len() + 1);
        add(" · ".to_owned(), theme.status_bar(), room, &mut spans);
        add(status.text.clone(), style, room, &mut spans);
    }
    let room = width.saturating_sub(used);
    if room > help.len() {
        spans.push(Span::styled(" ".repeat(room - help.len()), theme.status_bar()));
        spans.push(Span::styled(help, theme.status_bar()));
    } else {
        spans.push(Span::styled(" ".repeat(room), theme.status_bar()));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)).style(theme.status_bar()), area);
}
