//! The search overlay: the query line, a line saying where the search stands, and
//! the hits, two rows each — when, in which conversation and by whom, then the text
//! around the match with the matching words marked ([`Theme::found`]).
//!
//! Snippets and their marks come from the node and may be hostile: the marks are
//! checked against the text before anything is cut at them ([`runs`]), every piece
//! is sanitised like all peer text, and only the first [`SNIPPET_MAX`] bytes are
//! looked at.

use kith_p2p::kith_storage::Direction;
use ratatui::Frame;
use ratatui::layout::{Margin, Position, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use unicode_segmentation::UnicodeSegmentation;
use unicode_width::UnicodeWidthStr;

use super::overlay::{centered, help_area, window};
use super::theme::Theme;
use crate::app::{App, Conversation, Search, SearchHit, SearchResults};
use crate::text;

/// Rows each hit takes: its line of where and who, and its snippet.
const ROWS_PER_HIT: usize = 2;
/// Widest conversation name in a hit's first row.
const NAME_MAX: usize = 24;
/// Widest author name in a hit's first row (as the timeline cuts them).
const AUTHOR_MAX: usize = 16;
/// Bytes of a snippet looked at: a node sends about 160 characters; one that sends
/// megabytes costs no more than this per frame.
const SNIPPET_MAX: usize = 4096;

/// Widest the overlay gets: snippets are up to 160 characters.
const WIDTH: u16 = 110;

/// Where the overlay goes on a screen: as tall as the help's window, wider.
fn area(screen: Rect) -> Rect {
    let help = help_area(screen);
    centered(screen, WIDTH.min(screen.width.saturating_sub(2)).max(help.width), help.height)
}

/// How many hits the list shows at once on a screen of `size` (what PageUp and
/// PageDown move by).
pub(crate) fn hits_per_page(size: (u16, u16)) -> usize {
    let inner = area(Rect::new(0, 0, size.0, size.1)).inner(Margin::new(1, 1));
    (usize::from(inner.height).saturating_sub(2) / ROWS_PER_HIT).max(1)
}

/// A conversation's name as the list and the pane title give it: a contact's
/// label, `#name` for a group (sanitised).
fn name(conv: &Conversation) -> String {
    match conv.group_view() {
        Some(group) => format!("#{}", text::sanitize_line(&group.name)),
        None => text::sanitize_line(conv.label()),
    }
}

/// Draw the overlay; returns where the cursor belongs (in the query).
pub(crate) fn render(frame: &mut Frame, app: &App, search: &Search, screen: Rect, theme: &Theme) -> Option<Position> {
    let area = area(screen);
    if area.is_empty() {
        return None;
    }
    let here = search.here.as_deref().and_then(|id| app.conversation(id));
    let scope = match here {
        Some(conv) if search.only_here => format!("in {}", name(conv)),
        _ => "all conversations".to_owned(),
    };
    let title = text::truncate(&format!(" Search {scope} "), usize::from(area.width.saturating_sub(2)));
    let inner = window(frame, area, &title, theme);
    if inner.is_empty() {
        return None;
    }
    let width = usize::from(inner.width);
    if area.height > 2 {
        let hint = match here {
            Some(conv) if !search.only_here => format!(" Tab: only {} · Enter opens · Esc closes ", name(conv)),
            Some(_) => " Tab: all conversations · Enter opens · Esc closes ".to_owned(),
            None => " Enter opens · Esc closes ".to_owned(),
        };
        let hint = Line::styled(text::truncate(&hint, width), theme.dim()).right_aligned();
        let bottom = Rect { y: area.y + area.height - 1, height: 1, ..area.inner(Margin::new(1, 0)) };
        frame.render_widget(Paragraph::new(hint), bottom);
    }
    let (query, column) = query_line(search, width.saturating_sub(2));
    frame.render_widget(
        Paragraph::new(Line::from(vec![Span::styled("› ", theme.accent()), Span::raw(query)])),
        Rect { height: 1, ..inner },
    );
    let cursor = Position { x: inner.x + u16::try_from((2 + column).min(width - 1)).unwrap_or(0), y: inner.y };
    if inner.height < 2 {
        return Some(cursor);
    }
    let (said, style) = standing(search, theme);
    frame.render_widget(
        Paragraph::new(Line::styled(text::truncate(&said, width), style)),
        Rect { y: inner.y + 1, height: 1, ..inner },
    );
    let list = Rect { y: inner.y + 2, height: inner.height - 2, ..inner };
    let hits = search.hits();
    if list.is_empty() || hits.is_empty() {
        return Some(cursor);
    }
    let shown = (usize::from(list.height) / ROWS_PER_HIT).max(1);
    let selected = search.selected.min(hits.len() - 1);
    let top = (selected + 1).saturating_sub(shown);
    let lines: Vec<Line> = hits
        .iter()
        .enumerate()
        .skip(top)
        .take(shown)
        .flat_map(|(n, hit)| hit_lines(app, hit, n == selected, width, theme))
        .collect();
    frame.render_widget(Paragraph::new(lines), list);
    Some(cursor)
}

/// The query as shown in `width` columns and the cursor's column in it: from the
/// start, or its end when the cursor would be past the edge.
fn query_line(search: &Search, width: usize) -> (String, usize) {
    let typed = search.query.text();
    let cursor = search.query.cursor().min(typed.len());
    let before = text::sanitize_line(typed.get(..cursor).unwrap_or(typed));
    let after = text::sanitize_line(typed.get(cursor..).unwrap_or_default());
    let mut shown: Vec<&str> = before.graphemes(true).collect();
    let mut column: usize = shown.iter().map(|g| g.width()).sum();
    // Keep the cursor's cell on the line: drop from the start what does not fit.
    while column + 1 > width && !shown.is_empty() {
        column -= shown.remove(0).width();
    }
    let mut line: String = shown.concat();
    line.push_str(&after);
    (text::truncate(&line, width), column)
}

/// What the line under the query says, and its style.
fn standing(search: &Search, theme: &Theme) -> (String, Style) {
    if search.wanted().is_none() {
        return ("type words to find the messages that have them all".to_owned(), theme.dim());
    }
    if !search.is_current() {
        return ("searching…".to_owned(), theme.dim());
    }
    match search.shown.as_ref().map(|(_, results)| results) {
        Some(SearchResults::Failed(error)) => (text::sanitize_line(error), theme.error()),
        Some(SearchResults::Hits(hits)) if hits.is_empty() => ("no messages match".to_owned(), theme.dim()),
        Some(SearchResults::Hits(hits)) => {
            let count = match hits.len() {
                1 => "1 message".to_owned(),
                n if n >= crate::app::SEARCH_LIMIT => format!("the {n} best matches"),
                n => format!("{n} messages"),
            };
            (format!("{count} · ↑↓ choose · Enter opens it in its conversation"), theme.dim())
        }
        None => ("searching…".to_owned(), theme.dim()),
    }
}

/// The two rows of a hit: when, who and where (as notifications name them: `Bob`,
/// `you to Алиса`, `Алиса in #Book club`); then the snippet.
fn hit_lines(app: &App, hit: &SearchHit, selected: bool, width: usize, theme: &Theme) -> Vec<Line<'static>> {
    let m = &hit.message;
    let conv = app.conversation(App::key_of(m));
    let bar = if selected { Span::styled("▌", theme.accent()) } else { Span::raw(" ") };
    let group = m.peer.is_none();
    let place = match (conv, &m.peer) {
        (_, None) => crate::app::room_group_name(app, &m.conversation),
        (Some(conv), Some(_)) => name(conv),
        // Not listed (a blocked contact): its id.
        (None, Some(peer)) => text::short_peer(peer),
    };
    let place = text::truncate(&place, NAME_MAX);
    let ours = m.direction == Direction::Outgoing || app.me() == Some(m.author.as_str());
    let mut meta = vec![bar.clone(), Span::styled(when(app, m.sent_at), theme.dim()), Span::raw("  ")];
    if group || ours {
        let author = match conv {
            _ if ours => "you".to_owned(),
            Some(conv) => conv.author_label(app, &m.author),
            None => text::short_peer(&m.author),
        };
        let author_style = if ours { theme.me() } else { theme.them() };
        meta.push(Span::styled(text::truncate(&author, AUTHOR_MAX), author_style));
        meta.push(Span::styled(if group { " in " } else { " to " }, theme.dim()));
        meta.push(Span::styled(place, if group { theme.accent() } else { theme.title() }));
    } else {
        // A 1:1 conversation's other side wrote it.
        meta.push(Span::styled(place, theme.them()));
    }
    let meta = Line::from(meta);
    let base = if selected { theme.selected() } else { Style::new() };
    let mut snippet = vec![bar, Span::styled(" ", base)];
    snippet.extend(snippet_spans(hit, width.saturating_sub(2), base, base.patch(theme.found())));
    let snippet = Line::from(snippet);
    vec![if selected { meta.patch_style(theme.selected()) } else { meta }, snippet]
}

/// When a message was sent: `HH:MM` today, else the date before it (as the
/// timeline's day separators write it).
fn when(app: &App, at: u64) -> String {
    let offset = app.config().utc_offset_secs;
    let clock = text::clock(at, offset);
    let today = app.now_ms().map(|now| text::day_of(now, offset));
    let day = text::day_of(at, offset);
    if today == Some(day) { clock } else { format!("{} {clock}", text::date_label(day)) }
}

/// `snippet` cut into runs, each matched or not, by `marks` as a node sent them.
/// A mark that is empty or reversed, reaches past the text, falls inside a
/// character, or starts before the previous one ends is ignored: nothing a node
/// sends can make this slice where it must not.
pub(crate) fn runs<'a>(snippet: &'a str, marks: &[[usize; 2]]) -> Vec<(&'a str, bool)> {
    let mut out = Vec::new();
    let mut at = 0;
    for &[start, end] in marks {
        if start < at || start >= end {
            continue;
        }
        let (Some(plain), Some(marked)) = (snippet.get(at..start), snippet.get(start..end)) else { continue };
        if !plain.is_empty() {
            out.push((plain, false));
        }
        out.push((marked, true));
        at = end;
    }
    if let Some(rest) = snippet.get(at..).filter(|rest| !rest.is_empty()) {
        out.push((rest, false));
    }
    out
}

/// A hit's snippet in `width` columns: sanitised, matched runs in `mark` and the
/// rest in `base`, cut with `…` at the end, and at the start too when the first
/// match would otherwise be past the edge.
fn snippet_spans(hit: &SearchHit, width: usize, base: Style, mark: Style) -> Vec<Span<'static>> {
    let mut end = hit.snippet.len().min(SNIPPET_MAX);
    while !hit.snippet.is_char_boundary(end) {
        end -= 1;
    }
    // Graphemes as drawn, each with its width and whether it matched.
    let mut cells: Vec<(String, usize, bool)> = Vec::new();
    for (run, matched) in runs(&hit.snippet[..end], &hit.marks) {
        let shown = text::sanitize_line(run);
        cells.extend(shown.graphemes(true).map(|g| (g.to_owned(), g.width(), matched)));
    }
    let total: usize = cells.iter().map(|c| c.1).sum();
    let mut from = 0;
    let mut lead = false;
    if total > width {
        // Where the first match starts and ends, in columns.
        let start_cell = cells.iter().position(|c| c.2);
        let column = |i: usize| cells[..i].iter().map(|c| c.1).sum::<usize>();
        if let Some(start) = start_cell {
            let stop = start + cells[start..].iter().take_while(|c| c.2).count();
            if column(stop) + 1 > width {
                // Keep a quarter of the line of context before it.
                let wanted = column(start).saturating_sub(width / 4);
                while from < start && column(from) < wanted {
                    from += 1;
                }
                lead = from > 0;
            }
        }
    }
    let mut out: Vec<(String, bool)> = Vec::new();
    let mut push = |s: &str, matched: bool| match out.last_mut() {
        Some((text, m)) if *m == matched => text.push_str(s),
        _ => out.push((s.to_owned(), matched)),
    };
    let mut used = 0;
    if lead {
        push("…", false);
        used = 1;
    }
    let rest: usize = cells[from..].iter().map(|c| c.1).sum();
    let room = if used + rest <= width { width } else { width.saturating_sub(1) };
    let mut cut = false;
    for (g, w, matched) in &cells[from..] {
        if used + w > room {
            cut = true;
            break;
        }
        push(g, *matched);
        used += w;
    }
    if cut && width > 0 {
        push("…", false);
    }
    out.into_iter().map(|(s, matched)| Span::styled(s, if matched { mark } else { base })).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marked<'a>(snippet: &'a str, marks: &[[usize; 2]]) -> Vec<&'a str> {
        runs(snippet, marks).into_iter().filter(|(_, m)| *m).map(|(s, _)| s).collect()
    }

    #[test]
    fn marks_a_node_sends_are_checked_before_cutting() {
        let s = "Встреча в пятницу";
        assert_eq!(marked(s, &[[0, 14]]), ["Встреча"]);
        // Inside a character, past the end, empty, reversed, overlapping, unsorted:
        // ignored, never a panic.
        assert_eq!(marked(s, &[[1, 14]]), Vec::<&str>::new());
        assert_eq!(marked(s, &[[0, 999]]), Vec::<&str>::new());
        assert_eq!(marked(s, &[[3, 3], [14, 2], [usize::MAX, usize::MAX]]), Vec::<&str>::new());
        assert_eq!(marked(s, &[[18, 32], [0, 14], [20, 24]]), ["пятницу"]);
        assert_eq!(marked(s, &[[0, 14], [18, 33]]), ["Встреча"], "one past the end");
        // Whatever is dropped, the runs still spell the whole text.
        let whole: String = runs(s, &[[1, 14], [18, 32]]).into_iter().map(|(r, _)| r).collect();
        assert_eq!(whole, s);
    }

    fn hit(snippet: &str, marks: &[[usize; 2]]) -> SearchHit {
        SearchHit {
            message: crate::app::test_message(1, Direction::Incoming),
            snippet: snippet.into(),
            marks: marks.to_vec(),
        }
    }

    fn shown(hit: &SearchHit, width: usize) -> (String, Vec<String>) {
        let spans = snippet_spans(hit, width, Style::new(), Style::new().bg(ratatui::style::Color::Yellow));
        let text: String = spans.iter().map(|s| s.content.as_ref()).collect();
        let marks = spans.iter().filter(|s| s.style.bg.is_some()).map(|s| s.content.to_string()).collect();
        (text, marks)
    }

    #[test]
    fn a_snippet_fits_its_row_with_the_first_match_in_view() {
        let text = format!("{} café at noon", "word ".repeat(12));
        let at = text.find("café").unwrap_or_default();
        let h = hit(&text, &[[at, at + "café".len()]]);
        let (line, marks) = shown(&h, 30);
        assert_eq!(marks, ["café"]);
        assert!(line.starts_with('…') && text::width(&line) <= 30, "{line}");
        // Wide enough: whole, nothing cut.
        assert_eq!(shown(&h, 200).0, text);
        // A short row cuts at the end only when the match is near the start.
        let (line, marks) = shown(&hit("café and much more text after it", &[[0, 5]]), 12);
        assert_eq!((line.as_str(), marks), ("café and mu…", vec!["café".to_owned()]));
    }

    #[test]
    fn peer_text_in_a_snippet_is_sanitised_and_its_marks_still_line_up() {
        // An escape sequence before the match: shown as a replacement character,
        // the match still marked (marks are cut on the raw text, then sanitised).
        let text = "\u{1b}[31mred\u{202e} alert";
        let at = text.find("alert").unwrap_or_default();
        let (line, marks) = shown(&hit(text, &[[at, at + 5]]), 40);
        assert!(!line.contains('\u{1b}') && !line.contains('\u{202e}'), "{line:?}");
        assert_eq!(marks, ["alert"]);
    }
}
