//! Windows over the main screen: help, quick switcher, invite with QR code, and the
//! log of notices and errors.

use ratatui::Frame;
use ratatui::layout::{Margin, Position, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph};

use super::theme::Theme;
use crate::app::{App, InviteView, LogEntry, Switcher, bindings};
use crate::commands;
use crate::text;

/// Widest the help window gets.
const HELP_WIDTH: u16 = 80;
/// Widest the switcher gets.
const SWITCHER_WIDTH: u16 = 60;
/// Most matches the switcher lists at once.
const SWITCHER_ROWS: u16 = 12;

/// A `width`×`height` rectangle centred in `area`, shrunk to fit.
fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let width = width.min(area.width);
    let height = height.min(area.height);
    Rect { x: area.x + (area.width - width) / 2, y: area.y + (area.height - height) / 2, width, height }
}

/// Clear `area`, draw a bordered window titled `title`, return its inside.
fn window(frame: &mut Frame, area: Rect, title: &str, theme: &Theme) -> Rect {
    frame.render_widget(Clear, area);
    let block =
        Block::bordered().border_style(theme.border_focus()).title(Span::styled(title.to_owned(), theme.title()));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    inner
}

/// The help window's area on a screen of `size`.
fn help_area(area: Rect) -> Rect {
    centered(
        area,
        HELP_WIDTH.min(area.width.saturating_sub(2)).max(area.width.min(20)),
        area.height.saturating_sub(2).max(area.height.min(5)),
    )
}

/// The help text laid out for `width` columns, for an interface that does or does
/// not run the node itself (what quitting does differs).
fn help_lines(width: usize, runs_node: bool, theme: &Theme) -> Vec<Line<'static>> {
    let mut lines = Vec::new();
    let section = |lines: &mut Vec<Line<'static>>, title: &str| {
        if !lines.is_empty() {
            lines.push(Line::default());
        }
        lines.push(Line::styled(title.to_owned(), theme.header()));
    };
    let pairs = |lines: &mut Vec<Line<'static>>, pairs: &[(&str, &str)]| {
        let key_w = pairs.iter().map(|(k, _)| text::width(k)).max().unwrap_or(0) + 2;
        for (key, what) in pairs {
            if width >= key_w + 20 {
                let rows = text::wrap(what, width - key_w, width - key_w);
                for (i, row) in rows.into_iter().enumerate() {
                    let left = if i == 0 { text::pad(key, key_w) } else { " ".repeat(key_w) };
                    lines.push(Line::from(vec![Span::styled(left, theme.key()), Span::raw(row)]));
                }
            } else {
                lines.push(Line::styled(text::truncate(key, width), theme.key()));
                for row in text::wrap(what, width.saturating_sub(2), width.saturating_sub(2)) {
                    lines.push(Line::raw(format!("  {row}")));
                }
            }
        }
    };
    section(&mut lines, "Keys");
    pairs(&mut lines, &bindings(runs_node));
    section(&mut lines, "Commands");
    pairs(&mut lines, &commands::help(runs_node));
    section(&mut lines, "Message marks");
    lines.push(Line::from(vec![
        Span::styled("◷", theme.mark()),
        Span::raw(" pending  "),
        Span::styled("✓", theme.mark()),
        Span::raw(" sent  "),
        Span::styled("✓✓", theme.mark()),
        Span::raw(" delivered  "),
        Span::styled("✓✓", theme.mark_read()),
        Span::raw(" read (bold)  "),
        Span::styled("✗", theme.mark_failed()),
        Span::raw(" failed"),
    ]));
    lines
}

/// How many rows the help has on a screen of `size` (to bound scrolling).
pub(crate) fn help_line_count(size: (u16, u16), runs_node: bool) -> usize {
    let area = help_area(Rect::new(0, 0, size.0, size.1));
    help_lines(usize::from(area.width.saturating_sub(2)), runs_node, &Theme::new(true)).len()
}

/// Draw the help window (see [`help_lines`] for `runs_node`).
pub(crate) fn render_help(frame: &mut Frame, area: Rect, scroll: usize, runs_node: bool, theme: &Theme) {
    let area = help_area(area);
    if area.is_empty() {
        return;
    }
    let inner = window(frame, area, " Help · Esc closes ", theme);
    let lines = help_lines(usize::from(inner.width), runs_node, theme);
    let scroll = scroll.min(lines.len().saturating_sub(usize::from(inner.height)));
    if scroll + usize::from(inner.height) < lines.len() && area.height > 2 {
        let hint = Line::styled(" ↓ more: Down, PageDown ", theme.dim()).right_aligned();
        frame.render_widget(
            Paragraph::new(hint),
            Rect { y: area.y + area.height - 1, height: 1, ..area.inner(Margin::new(1, 0)) },
        );
    }
    let shown: Vec<Line> = lines.into_iter().skip(scroll).take(usize::from(inner.height)).collect();
    frame.render_widget(Paragraph::new(shown), inner);
}

/// Draw the quick switcher; returns where the cursor belongs.
pub(crate) fn render_switcher(
    frame: &mut Frame,
    app: &App,
    switcher: &Switcher,
    area: Rect,
    theme: &Theme,
) -> Option<Position> {
    let matches = app.switcher_matches(switcher.query.text());
    let wanted_rows = u16::try_from(matches.len().max(1)).unwrap_or(SWITCHER_ROWS).min(SWITCHER_ROWS);
    let screen = area;
    let mut area =
        centered(area, SWITCHER_WIDTH.min(area.width.saturating_sub(2)).max(area.width.min(12)), wanted_rows + 3);
    // Near the top, so the box does not jump around as matches come and go.
    area.y = screen.y + (area.y - screen.y).min(screen.height / 6);
    if area.is_empty() {
        return None;
    }
    let inner = window(frame, area, " Go to conversation ", theme);
    if inner.is_empty() {
        return None;
    }
    let width = usize::from(inner.width);
    // The query line.
    let query = text::truncate(switcher.query.text(), width.saturating_sub(3));
    frame.render_widget(
        Paragraph::new(Line::from(vec![Span::styled("› ", theme.accent()), Span::raw(query.clone())])),
        Rect { height: 1, ..inner },
    );
    let cursor =
        Position { x: inner.x + u16::try_from((2 + text::width(&query)).min(width - 1)).unwrap_or(0), y: inner.y };
    let list = Rect { y: inner.y + 1, height: inner.height - 1, ..inner };
    if list.is_empty() {
        return Some(cursor);
    }
    let height = usize::from(list.height);
    if matches.is_empty() {
        frame.render_widget(Paragraph::new(Line::styled(text::truncate("no match", width), theme.dim())), list);
        return Some(cursor);
    }
    let selected = switcher.selected.min(matches.len() - 1);
    let top = (selected + 1).saturating_sub(height);
    let lines: Vec<Line> = matches
        .iter()
        .enumerate()
        .skip(top)
        .take(height)
        .filter_map(|(n, (i, m))| {
            let conv = app.conversations().get(*i)?;
            let online = app.is_online(conv.peer_id());
            let mut spans = vec![
                if n == selected { Span::styled("▌", theme.accent()) } else { Span::raw(" ") },
                if online { Span::styled("●", theme.online()) } else { Span::styled("○", theme.dim()) },
                Span::raw(" "),
            ];
            let mut used = 3;
            let tag = match (conv.is_request(), conv.unread) {
                (true, _) => " request ".to_owned(),
                (false, 0) => String::new(),
                (false, n) => format!(" {n} "),
            };
            let room = width.saturating_sub(used + text::width(&tag));
            let label = text::truncate(conv.label(), room);
            for (ci, ch) in label.chars().enumerate() {
                let style = if m.positions.contains(&ci) { theme.matched() } else { Style::new() };
                spans.push(Span::styled(ch.to_string(), style));
            }
            used += text::width(&label);
            spans.push(Span::raw(" ".repeat(width.saturating_sub(used + text::width(&tag)))));
            if !tag.is_empty() {
                spans.push(Span::styled(tag, theme.badge()));
            }
            let line = Line::from(spans);
            Some(if n == selected { line.patch_style(theme.selected()) } else { line })
        })
        .collect();
    frame.render_widget(Paragraph::new(lines), list);
    Some(cursor)
}

/// Draw the invite window.
pub(crate) fn render_invite(frame: &mut Frame, view: &InviteView, area: Rect, theme: &Theme) {
    let (invite, qr, scroll) = match view {
        InviteView::Loading => {
            let area = centered(area, 34, 3);
            if area.is_empty() {
                return;
            }
            let inner = window(frame, area, " Invite ", theme);
            frame.render_widget(Paragraph::new(Line::styled("creating your invite…", theme.dim())), inner);
            return;
        }
        InviteView::Ready { invite, qr, scroll } => (invite, qr, *scroll),
    };
    let qr_rows: Vec<&str> = qr.lines().collect();
    let qr_w = qr_rows.iter().map(|r| text::width(r)).max().unwrap_or(0);
    let width = u16::try_from(qr_w.max(60) + 2).unwrap_or(u16::MAX).min(area.width);
    let inner_w = usize::from(width.saturating_sub(2));
    let uri_rows = text::hard_wrap(invite, inner_w);
    let mut lines: Vec<Line> = Vec::new();
    // The QR code is only useful whole: show it first when it fits on the screen
    // (the link is then below it, reached by scrolling), else say so.
    let fits = qr_w <= inner_w && qr_rows.len() + 2 <= usize::from(area.height);
    if fits {
        lines.extend(qr_rows.iter().map(|r| Line::styled((*r).to_owned(), theme.qr()).centered()));
        lines.push(Line::raw(""));
    }
    lines.extend(
        text::wrap("Share this invite; they add you with /add <invite>", inner_w, inner_w).into_iter().map(Line::raw),
    );
    if !fits && !qr_rows.is_empty() {
        lines.push(Line::styled("(enlarge the terminal to see the QR code)", theme.dim()));
    }
    lines.push(Line::raw(""));
    lines.extend(uri_rows.into_iter().map(|r| Line::styled(r, theme.accent())));
    let height = u16::try_from(lines.len() + 2).unwrap_or(u16::MAX);
    let area = centered(area, width, height);
    if area.is_empty() {
        return;
    }
    let inner = window(frame, area, " Your invite · Esc closes ", theme);
    let scroll = scroll.min(lines.len().saturating_sub(usize::from(inner.height)));
    if scroll + usize::from(inner.height) < lines.len() && area.height > 2 {
        let hint = Line::styled(" ↓ the link is below: Down, PageDown ", theme.dim()).right_aligned();
        frame.render_widget(
            Paragraph::new(hint),
            Rect { y: area.y + area.height - 1, height: 1, ..area.inner(Margin::new(1, 0)) },
        );
    }
    let shown: Vec<Line> = lines.into_iter().skip(scroll).take(usize::from(inner.height)).collect();
    frame.render_widget(Paragraph::new(shown), inner);
}

/// The log's rows for `width` columns, oldest first: every entry wrapped whole, errors
/// marked `✗` (and coloured) so they stand out without colours too.
fn log_lines<'a>(log: impl Iterator<Item = &'a LogEntry>, width: usize, theme: &Theme) -> Vec<Line<'static>> {
    let mut lines = Vec::new();
    for entry in log {
        let (mark, style) = if entry.error { ("✗ ", theme.error()) } else { ("· ", Style::new()) };
        let rows = text::wrap(&entry.text, width.saturating_sub(2), width.saturating_sub(2));
        for (i, row) in rows.into_iter().enumerate() {
            let lead = if i == 0 { mark } else { "  " };
            lines.push(Line::from(vec![Span::styled(lead, style), Span::styled(row, style)]));
        }
    }
    lines
}

/// How many rows the log has on a screen of `size` (to bound scrolling).
pub(crate) fn log_line_count(app: &App) -> usize {
    let area = help_area(Rect::new(0, 0, app.size().0, app.size().1));
    log_lines(app.log().iter(), usize::from(area.width.saturating_sub(2)), &Theme::new(true)).len()
}

/// Draw the log window, `scroll` rows up from its newest line.
pub(crate) fn render_log(frame: &mut Frame, app: &App, area: Rect, scroll: usize, theme: &Theme) {
    let area = help_area(area);
    if area.is_empty() {
        return;
    }
    let inner = window(frame, area, " Log · Esc closes ", theme);
    let height = usize::from(inner.height);
    let mut lines = log_lines(app.log().iter(), usize::from(inner.width), theme);
    if lines.is_empty() {
        lines.push(Line::styled("Notices and errors will show here.", theme.dim()));
    }
    let scroll = scroll.min(lines.len().saturating_sub(height));
    let end = lines.len() - scroll;
    if scroll > 0 && area.height > 2 {
        let hint = Line::styled(" ↓ newer: Down, PageDown, End ", theme.dim()).right_aligned();
        frame.render_widget(
            Paragraph::new(hint),
            Rect { y: area.y + area.height - 1, height: 1, ..area.inner(Margin::new(1, 0)) },
        );
    }
    let shown: Vec<Line> = lines.into_iter().take(end).skip(end.saturating_sub(height)).collect();
    frame.render_widget(Paragraph::new(shown), inner);
}
