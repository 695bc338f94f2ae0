//! The input box: the editor's rows scrolled to keep the cursor visible, a
//! placeholder when empty, and where the terminal cursor goes; and the bar above
//! it while it holds a reply or an edit (`replying to Bob: where?`).

use ratatui::Frame;
use ratatui::layout::{Position, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};

use super::layout::Areas;
use super::theme::Theme;
use crate::app::{App, Compose};
use crate::text;

/// Draw the input box; returns where the cursor belongs.
pub(crate) fn render(frame: &mut Frame, app: &App, areas: &Areas, theme: &Theme) -> Option<Position> {
    let input = app.input();
    let compose = app.focused().and_then(|c| c.compose.as_ref());
    let editing = matches!(compose, Some(Compose::Edit { .. }));
    // During an edit a leading `/` is text, not a command.
    let is_command = !editing && crate::commands::is_command(input.text());
    if areas.bordered {
        let title = match (is_command, compose, app.focused()) {
            (true, ..) => " Command ".to_owned(),
            (false, Some(Compose::Edit { .. }), _) => " Edit your message ".to_owned(),
            (false, Some(Compose::Reply(quote)), _) => format!(" Reply to {} ", text::truncate(&quote.author, 24)),
            (false, None, Some(conv)) => format!(" Message {} ", text::truncate(conv.label(), 24)),
            (false, None, None) => " Message ".to_owned(),
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
        let hint = match compose {
            Some(Compose::Reply(_)) => "Write your reply · Enter sends · Esc cancels the reply",
            Some(Compose::Edit { .. }) => "Write the new text · Enter saves · Esc cancels the edit",
            None => "Write a message · Enter sends · Alt+Enter new line · F1 help",
        };
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

/// Draw the bar saying what the input replies to or edits into `area` (empty when
/// it does neither, or there is no room for the bar).
pub(crate) fn render_bar(frame: &mut Frame, app: &App, area: Rect, theme: &Theme) {
    let Some(compose) = app.focused().and_then(|c| c.compose.as_ref()) else { return };
    if area.is_empty() {
        return;
    }
    let quote = compose.quote();
    let (glyph, what, hint) = match compose {
        Compose::Reply(_) => (" ↪ ", format!("replying to {}: ", quote.author), " Esc cancels "),
        Compose::Edit { .. } => (" ✎ ", "editing: ".to_owned(), " Enter saves, Esc cancels "),
    };
    let spans = vec![
        Span::styled(glyph, theme.accent()),
        Span::styled(what, theme.title()),
        Span::styled(quote.text.clone(), theme.dim()),
    ];
    let line = super::call::fit(spans, hint, theme.dim(), usize::from(area.width));
    frame.render_widget(Paragraph::new(line), area);
}
