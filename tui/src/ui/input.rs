//! The input box: the editor's rows scrolled to keep the cursor visible, a
//! placeholder when empty, and where the terminal cursor goes.

use ratatui::Frame;
use ratatui::layout::Position;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};

use super::layout::Areas;
use super::theme::Theme;
use crate::app::App;
use crate::text;

/// Draw the input box; returns where the cursor belongs.
pub(crate) fn render(frame: &mut Frame, app: &App, areas: &Areas, theme: &Theme) -> Option<Position> {
    let input = app.input();
    let is_command = input.text().starts_with('/') && !input.text().starts_with("//");
    if areas.bordered {
        let title = match (is_command, app.focused()) {
            (true, _) => " Command ".to_owned(),
            (false, Some(conv)) => format!(" Message {} ", text::truncate(conv.label(), 24)),
            (false, None) => " Message ".to_owned(),
        };
        frame.render_widget(
            Block::bordered().border_style(theme.border()).title(Span::styled(title, theme.title())),
            areas.input,
        );
    } else if !areas.prompt.is_empty() {
        frame.render_widget(Paragraph::new(Span::styled("› ", theme.accent())), areas.prompt);
    }
    let inner = areas.input_inner;
    if inner.is_empty() {
        return None;
    }
    let width = usize::from(inner.width);
    let height = usize::from(inner.height);
    if input.is_empty() {
        let hint = "Write a message · Enter sends · Alt+Enter new line · F1 help";
        frame.render_widget(Paragraph::new(Line::styled(text::truncate(hint, width), theme.dim())), inner);
        return Some(Position { x: inner.x, y: inner.y });
    }
    let layout = input.layout(width);
    let (col, row) = layout.cursor;
    let top = row.saturating_sub(height - 1);
    let lines: Vec<Line> = layout.rows.into_iter().skip(top).take(height).map(Line::raw).collect();
    frame.render_widget(Paragraph::new(lines), inner);
    let x = inner.x + u16::try_from(col.min(width - 1)).unwrap_or(0);
    let y = inner.y + u16::try_from(row - top).unwrap_or(0);
    Some(Position { x, y })
}
