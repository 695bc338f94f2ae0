//! The status bar: node connection, who is online, queued messages and their next
//! delivery attempt, the latest notice or error, and a pointer to the help.

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
        NodeState::Disconnected(_) => " ✗ disconnected".to_owned(),
    };
    let mut facts = node;
    if *app.node() == NodeState::Connected {
        facts.push_str(&format!(" · {} online", app.online_count()));
        if app.outbox() > 0 {
            facts.push_str(&format!(" · {} queued", app.outbox()));
            if let Some(next) = next_attempt(app.queues()) {
                facts.push_str(&format!(", {next}"));
            }
        }
    }
    let help = " F1 help ";
    let mut spans = Vec::new();
    let mut used = 0;
    let mut add = |s: String, style, spans: &mut Vec<Span<'static>>| {
        let room = width.saturating_sub(used);
        let s = text::truncate(&s, room);
        used += text::width(&s);
        if !s.is_empty() {
            spans.push(Span::styled(s, style));
        }
    };
    add(facts, theme.status_bar(), &mut spans);
    if let Some(status) = app.status() {
        let style = if status.error { theme.error() } else { theme.status_bar() };
        add(" · ".to_owned(), theme.status_bar(), &mut spans);
        add(status.text.clone(), style, &mut spans);
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
