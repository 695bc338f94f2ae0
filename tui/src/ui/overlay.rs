//! Windows over the main screen: help, quick switcher, invite with QR code, the
//! log of notices and errors, the picture viewer, and questions asked before
//! something that cannot be undone.

use ratatui::Frame;
use ratatui::layout::{Margin, Position, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph};

use super::layout::Areas;
use super::theme::Theme;
use crate::app::{App, Confirm, InviteView, LogEntry, Preview, Switcher, Viewer, bindings};
use crate::{commands, picture, text};

/// Widest the help window gets.
const HELP_WIDTH: u16 = 80;
/// Widest the switcher gets.
const SWITCHER_WIDTH: u16 = 60;
/// Most matches the switcher lists at once.
const SWITCHER_ROWS: u16 = 12;
/// Widest a question (`/delete-all`) gets.
const CONFIRM_WIDTH: u16 = 60;
/// Most rows of a question shown (it quotes a message, which can be long).
const CONFIRM_ROWS: usize = 4;

/// A `width`×`height` rectangle centred in `area`, shrunk to fit.
pub(crate) fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let width = width.min(area.width);
    let height = height.min(area.height);
    Rect { x: area.x + (area.width - width) / 2, y: area.y + (area.height - height) / 2, width, height }
}

/// Clear `area`, draw a bordered window titled `title`, return its inside.
pub(crate) fn window(frame: &mut Frame, area: Rect, title: &str, theme: &Theme) -> Rect {
    frame.render_widget(Clear, area);
    let block =
        Block::bordered().border_style(theme.border_focus()).title(Span::styled(title.to_owned(), theme.title()));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    inner
}

/// The help window's area on a screen `area` (the log and the search use it too).
pub(crate) fn help_area(area: Rect) -> Rect {
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
            // Marked as in the list: `#` for a group, presence for a contact.
            let marker = super::list::marker(app, conv, theme);
            let mut spans = vec![
                if n == selected { Span::styled("▌", theme.accent()) } else { Span::raw(" ") },
                marker,
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

/// Narrowest side panel next to the QR code; narrower screens put the text below it.
const INVITE_SIDE_MIN: usize = 28;
/// Rows kept below a QR code with the text under it, so what to do stays in view.
const INVITE_SIDE_ROWS: usize = 8;

/// The invite screen's rows for `area`: the QR code (redrawn to fit, see
/// [`crate::qr`]) with what to do beside or below it, then the invite as one line
/// from the first column, broken only at the screen's edge (no border or indent, so
/// a terminal selection copies exactly the invite, and `/add` or `kith add` take it
/// back even over several rows).
fn invite_lines(invite: &str, qr: &str, copied: bool, area: Rect, theme: &Theme) -> Vec<Line<'static>> {
    let width = usize::from(area.width);
    let code = crate::qr::compact(qr).unwrap_or_else(|| qr.lines().map(str::to_owned).collect());
    let code_w = code.iter().map(|r| text::width(r)).max().unwrap_or(0);
    // The code is only useful whole: shown when it fits, beside what to do or above
    // it (then with room for that too), else say so.
    let height = usize::from(area.height);
    let beside = code_w + 1 + INVITE_SIDE_MIN <= width && code.len() <= height;
    let side_w = if beside { width - code_w - 1 } else { width };
    let fits = !code.is_empty() && (beside || (code_w <= width && code.len() + INVITE_SIDE_ROWS <= height));
    let mut side: Vec<Line<'static>> = vec![Line::styled("Your invite", theme.title()), Line::default()];
    let explain = "Scan the code, or share the text: they add you with /add <invite>.";
    side.extend(text::wrap(explain, side_w, side_w).into_iter().map(Line::raw));
    if !fits && !code.is_empty() {
        let need = format!("(the QR code needs {code_w}×{} cells: enlarge the terminal)", code.len());
        side.extend(text::wrap(&need, side_w, side_w).into_iter().map(|r| Line::styled(r, theme.dim())));
    }
    side.push(Line::default());
    // OSC 52 has no answer: say what was done, not that it worked.
    let copy = if copied { "sent to the terminal's clipboard (OSC 52)" } else { "copy it to the clipboard" };
    for (key, what) in [("c", copy), ("↓", "the invite as text"), ("Esc", "close")] {
        let rows = text::wrap(what, side_w.saturating_sub(5), side_w.saturating_sub(5));
        for (i, row) in rows.into_iter().enumerate() {
            let left = if i == 0 { text::pad(key, 5) } else { " ".repeat(5) };
            side.push(Line::from(vec![Span::styled(left, theme.key()), Span::raw(row)]));
        }
    }
    let mut lines: Vec<Line<'static>> = Vec::new();
    if beside && fits {
        for i in 0..code.len().max(side.len()) {
            let row = code.get(i).map_or(String::new(), |r| r.clone());
            let mut spans = vec![Span::styled(text::pad(&row, code_w), theme.qr()), Span::raw(" ")];
            if let Some(line) = side.get(i) {
                spans.extend(line.spans.iter().cloned());
            }
            lines.push(Line::from(spans));
        }
    } else {
        if fits {
            lines.extend(code.iter().map(|r| Line::styled(r.clone(), theme.qr()).centered()));
        }
        lines.extend(side);
    }
    lines.push(Line::default());
    lines.extend(text::hard_wrap(invite, width.max(1)).into_iter().map(|r| Line::styled(r, theme.accent())));
    lines
}

/// Draw the invite: a small window while it is made, then a screen of its own.
pub(crate) fn render_invite(frame: &mut Frame, view: &InviteView, area: Rect, theme: &Theme) {
    let (invite, qr, scroll, copied) = match view {
        InviteView::Loading => {
            let area = centered(area, 34, 3);
            if area.is_empty() {
                return;
            }
            let inner = window(frame, area, " Invite ", theme);
            frame.render_widget(Paragraph::new(Line::styled("creating your invite…", theme.dim())), inner);
            return;
        }
        InviteView::Ready { invite, qr, scroll, copied } => (invite, qr, *scroll, *copied),
    };
    if area.is_empty() {
        return;
    }
    frame.render_widget(Clear, area);
    let lines = invite_lines(invite, qr, copied, area, theme);
    let height = usize::from(area.height);
    let scroll = scroll.min(lines.len().saturating_sub(height));
    let shown: Vec<Line> = lines.into_iter().skip(scroll).take(height).collect();
    frame.render_widget(Paragraph::new(shown), area);
}

/// How far the invite screen scrolls on a screen of `size` (to bound scrolling).
pub(crate) fn invite_scroll_max(view: &InviteView, size: (u16, u16)) -> usize {
    let InviteView::Ready { invite, qr, copied, .. } = view else { return 0 };
    let area = Rect::new(0, 0, size.0, size.1);
    invite_lines(invite, qr, *copied, area, &Theme::new(true)).len().saturating_sub(usize::from(size.1))
}

/// The log's rows for `width` columns, oldest first: every entry wrapped whole,
/// after its time (`HH:MM`, in the zone `utc_offset_secs`) when known, errors marked
/// `✗` (and coloured) so they stand out without colours too.
fn log_lines<'a>(
    log: impl Iterator<Item = &'a LogEntry>,
    width: usize,
    utc_offset_secs: i32,
    theme: &Theme,
) -> Vec<Line<'static>> {
    let mut lines = Vec::new();
    for entry in log {
        let (mark, style) = if entry.error { ("✗ ", theme.error()) } else { ("· ", Style::new()) };
        let time = entry.at.map_or(String::new(), |at| format!("{} ", text::clock(at, utc_offset_secs)));
        let lead_w = text::width(&time) + 2;
        let rows = text::wrap(&entry.text, width.saturating_sub(lead_w), width.saturating_sub(lead_w));
        for (i, row) in rows.into_iter().enumerate() {
            let lead = if i == 0 {
                vec![Span::styled(time.clone(), theme.dim()), Span::styled(mark, style)]
            } else {
                vec![Span::raw(" ".repeat(lead_w))]
            };
            let mut spans = lead;
            spans.push(Span::styled(row, style));
            lines.push(Line::from(spans));
        }
    }
    lines
}

/// How far the log scrolls up on the app's screen: its rows less the window's.
pub(crate) fn log_scroll_max(app: &App) -> usize {
    let area = help_area(Rect::new(0, 0, app.size().0, app.size().1));
    let width = usize::from(area.width.saturating_sub(2));
    let rows = log_lines(app.log().iter(), width, app.config().utc_offset_secs, &Theme::new(true)).len();
    rows.saturating_sub(usize::from(area.height.saturating_sub(2)))
}

/// Draw the log window, `scroll` rows up from its newest line.
pub(crate) fn render_log(frame: &mut Frame, app: &App, area: Rect, scroll: usize, theme: &Theme) {
    let area = help_area(area);
    if area.is_empty() {
        return;
    }
    let inner = window(frame, area, " Log · Esc closes ", theme);
    let height = usize::from(inner.height);
    let mut lines = log_lines(app.log().iter(), usize::from(inner.width), app.config().utc_offset_secs, theme);
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

/// Where the picture viewer goes on a screen `area`: the message pane (its frame,
/// and inside it the room for the picture). The state machine asks for the picture
/// encoded for exactly this room, so both use this.
pub(crate) fn picture_area(area: Rect, app: &App) -> (Rect, Rect) {
    let areas = Areas::compute(area, app);
    let outer = areas.messages;
    let inner = if areas.bordered { outer.inner(Margin::new(1, 1)) } else { outer };
    (outer, inner)
}

/// Draw the picture viewer over the message pane: the picture encoded for the
/// terminal's graphics protocol when there is one, else the half-block preview at
/// the pane's size; centred, or a line saying why not yet.
pub(crate) fn render_picture(frame: &mut Frame, app: &App, viewer: &Viewer, area: Rect, theme: &Theme) {
    let (outer, inner) = picture_area(area, app);
    if outer.is_empty() {
        return;
    }
    let inner = if outer == inner {
        frame.render_widget(Clear, outer);
        outer
    } else {
        window(frame, outer, &format!(" {} · Esc closes, Ctrl+O opens ", viewer.name), theme)
    };
    if inner.is_empty() {
        return;
    }
    let say = |frame: &mut Frame, what: &str| {
        let rows = super::timeline::notice(what, usize::from(inner.width), theme.dim());
        let height = u16::try_from(rows.len()).unwrap_or(u16::MAX);
        frame.render_widget(Paragraph::new(rows), centered(inner, inner.width, height));
    };
    if app.graphics().is_protocol() {
        match (&viewer.encoded, &viewer.error) {
            (Some(encoded), _) if encoded.size().0 <= inner.width && encoded.size().1 <= inner.height => {
                let (width, height) = encoded.size();
                encoded.render(centered(inner, width, height), frame.buffer_mut());
            }
            (_, Some(error)) => say(frame, &format!("cannot show it: {}", text::sanitize_line(error))),
            // The encoding for this size is on its way (the pane just shrank, or opened).
            _ => say(frame, "preparing the picture…"),
        }
        return;
    }
    match app.preview(&viewer.id) {
        Some(Preview::Ready(p)) => {
            let (width, height) = picture::cells(p, inner.width, inner.height);
            let rows = picture::half_blocks(p, inner.width, inner.height);
            frame.render_widget(Paragraph::new(rows), centered(inner, width, height));
        }
        Some(Preview::Failed) => say(frame, "this picture cannot be shown"),
        _ => say(frame, "decoding the picture…"),
    }
}

/// Draw a question that `y` answers yes and `n` or Esc no. Its text (which quotes a
/// message) is wrapped, at most [`CONFIRM_ROWS`] rows, the last one cut with `…`.
pub(crate) fn render_confirm(frame: &mut Frame, confirm: &Confirm, area: Rect, theme: &Theme) {
    let width = CONFIRM_WIDTH.min(area.width);
    let room = usize::from(width.saturating_sub(6));
    let mut rows = text::wrap(&confirm.question, room, room);
    if rows.len() > CONFIRM_ROWS {
        rows.truncate(CONFIRM_ROWS);
        if let Some(last) = rows.last_mut() {
            *last = text::truncate(&format!("{last} …"), room);
        }
    }
    let height = u16::try_from(rows.len()).unwrap_or(0).saturating_add(5);
    let area = centered(area, width, height);
    if area.is_empty() {
        return;
    }
    let inner = window(frame, area, " Are you sure? ", theme);
    let mut lines = vec![Line::default()];
    lines.extend(rows.into_iter().map(|row| Line::styled(format!("  {row}"), theme.title())));
    lines.push(Line::default());
    lines.push(Line::from(vec![
        Span::raw("  "),
        Span::styled("y", theme.key()),
        Span::raw(" yes   "),
        Span::styled("n, Esc", theme.key()),
        Span::raw(" no"),
    ]));
    frame.render_widget(Paragraph::new(lines), inner);
}
