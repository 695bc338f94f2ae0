//! The message pane's rows, laid out around the scroll anchor.
//!
//! The loaded window is a sequence of blocks, one per message: its day separator
//! (if the day changed), the "new messages" line (if unread messages start there)
//! and its wrapped rows with the delivery mark. The first block also carries the
//! notice at the top of the window ("beginning of your conversation", "loading older
//! messages…") and the last, when the window ends with the newest message, the notice
//! below the messages (a pending contact request).
//!
//! A [`Cursor`] names the pane's bottom row as a block and a row count from that
//! block's bottom. Everything here walks from the cursor over as many blocks as the
//! asked number of rows needs, so a frame or a scroll step costs about one screen of
//! layout however deep in the history the view is. The state machine (scrolling,
//! prefetching) and the renderer use the same walk, so they always agree.

use kith_p2p::files::{is_image, safe_file_name};
use kith_p2p::kith_storage::{ContactState, Direction, FileState, MessageState};
use kith_p2p::views::{FileView, MessageView, QuoteView};
use ratatui::layout::Alignment;
use ratatui::style::Style;
use ratatui::text::{Line, Span};

use super::theme::Theme;
use crate::app::{App, Conversation, Fetch, Preview, Scroll};
use crate::{picture, text};

/// Columns of `HH:MM `; continuation rows are indented by this much.
const TIME_W: usize = 6;
/// Widest author name shown.
const AUTHOR_MAX: usize = 16;
/// Most emoji of a message's reactions shown (the rest are counted): in a group,
/// every member can react with any number of them.
const REACTIONS_SHOWN: usize = 12;
/// Widest a reaction's emoji is shown: a peer's "emoji" can be any short text.
const EMOJI_MAX: usize = 8;
/// Narrower panes do not indent continuation rows.
const INDENT_MIN_WIDTH: usize = 24;

/// The delivery mark of a message and its style; incoming messages have none.
fn mark(m: &MessageView, theme: &Theme) -> Option<(&'static str, Style)> {
    if m.direction == Direction::Incoming {
        return None;
    }
    Some(match m.state {
        MessageState::Pending => ("◷", theme.mark()),
        MessageState::Sent => ("✓", theme.mark()),
        MessageState::Delivered => ("✓✓", theme.mark()),
        MessageState::Read => ("✓✓", theme.mark_read()),
        MessageState::Failed => ("✗", theme.mark_failed()),
    })
}

/// Where one of our group messages stands with the group's members, as the CLI
/// prints it (`read by 3 of 5`; see `GroupReceiptsView::summary`).
pub(crate) fn group_counts(m: &MessageView) -> Option<String> {
    m.receipts.as_ref()?.summary()
}

/// A full-width rule with `label` in the middle: `──── label ────`.
fn rule(label: &str, width: usize, style: Style) -> Line<'static> {
    let label = text::truncate(label, width.saturating_sub(2));
    let label_w = text::width(&label);
    if label_w == 0 {
        return Line::styled("─".repeat(width), style);
    }
    let side = width.saturating_sub(label_w + 2);
    let left = side / 2;
    let right = side - left;
    Line::styled(format!("{} {label} {}", "─".repeat(left), "─".repeat(right)), style)
}

/// Rows of centered, wrapped notice text.
pub(super) fn notice(textual: &str, width: usize, style: Style) -> Vec<Line<'static>> {
    text::wrap(textual, width, width).into_iter().map(|r| Line::styled(r, style).alignment(Alignment::Center)).collect()
}

/// Most rows a picture preview takes.
pub(crate) const PREVIEW_ROWS: u16 = 12;

/// Where a file stands, as its line says it, and whether that is a failure.
pub(crate) fn file_state(app: &App, m: &MessageView, file: &FileView) -> (String, bool) {
    let Some(entry) = app.file(&file.id) else {
        // Not heard of yet (the `files` answer is on its way): nothing to say.
        return (String::new(), false);
    };
    let retrying = |e: &str| format!("downloading, retrying ({})", text::sanitize_line(e));
    let incoming = m.direction == Direction::Incoming;
    match entry.state {
        // Only ours are shared from here; nothing to tell the reader of theirs.
        FileState::Shared | FileState::Uploaded if incoming => (String::new(), false),
        FileState::Shared => ("shared".to_owned(), false),
        FileState::Uploaded => ("shared, on a media node".to_owned(), false),
        FileState::Offered => ("offered — Ctrl+O downloads".to_owned(), false),
        FileState::Downloading => match (&entry.error, app.file_progress(&file.id)) {
            (Some(e), _) => (retrying(e), true),
            (None, Some(have)) => (format!("downloading {}%", crate::app::percent(have, file.size)), false),
            (None, None) => ("downloading…".to_owned(), false),
        },
        FileState::Complete => match &entry.path {
            Some(path) => (format!("saved {}", text::sanitize_line(&text::tilde(path, app.home_dir()))), false),
            None => ("complete".to_owned(), false),
        },
        FileState::Failed => {
            let why = entry.error.as_deref().map_or_else(|| "does not open".to_owned(), text::sanitize_line);
            (format!("failed: {why}"), true)
        }
    }
}

/// One message being laid out at a width: what the rows of its parts share.
struct Parts<'a> {
    app: &'a App,
    m: &'a MessageView,
    /// The time and the author, which start its first row.
    head: Vec<Span<'static>>,
    /// Columns its other rows are indented by.
    indent: usize,
    width: usize,
    theme: &'a Theme,
}

impl Parts<'_> {
    /// Columns of a row after the indent.
    fn rest_w(&self) -> usize {
        self.width.saturating_sub(self.indent)
    }

    /// The indent, as a span.
    fn indent(&self) -> Span<'static> {
        Span::raw(" ".repeat(self.indent))
    }

    /// `text` wrapped after the head, then indented, each row's text drawn by `draw`.
    fn wrapped(&self, text: &str, draw: impl Fn(String) -> Vec<Span<'static>>) -> Vec<Line<'static>> {
        let head_w: usize = self.head.iter().map(Span::width).sum();
        let rows = text::wrap(text, self.width.saturating_sub(head_w), self.rest_w());
        let line = |(i, row): (usize, String)| {
            let mut spans = if i == 0 { self.head.clone() } else { vec![self.indent()] };
            spans.extend(draw(row));
            Line::from(spans)
        };
        rows.into_iter().enumerate().map(line).collect()
    }

    /// What follows the text: the `(edited)` marker if `edited`, the delivery mark,
    /// and for ours in a group how many members have it ([`group_counts`]).
    fn tail(&self, edited: bool) -> Vec<Span<'static>> {
        let edited = edited.then(|| Span::styled("(edited)", self.theme.dim()));
        let mark = mark(self.m, self.theme).map(|(glyph, style)| Span::styled(glyph, style));
        let counts = group_counts(self.m).map(|c| Span::styled(c, self.theme.dim()));
        edited.into_iter().chain(mark).chain(counts).collect()
    }
}

/// The rows of a file message: `[file] name · size · state` (wrapped), the
/// caption under it, and a preview for a picture that is here and decoded.
fn file_rows(parts: &Parts<'_>, file: &FileView) -> Vec<Line<'static>> {
    let Parts { app, m, indent, width, theme, .. } = *parts;
    let label = if is_image(&file.media_type) { "[image]" } else { "[file]" };
    let name = text::sanitize_line(&safe_file_name(&file.name));
    let (state, failed) = file_state(app, m, file);
    let mut line = format!("{label} {name} · {}", kith_p2p::display::human_size(file.size));
    if !state.is_empty() {
        line.push_str(" · ");
        line.push_str(&state);
    }
    let state_style = if failed { theme.mark_failed() } else { theme.accent() };
    let mut lines = parts.wrapped(&line, |row| vec![Span::styled(row, state_style)]);
    // An edited file message had its caption edited: the marker goes after it.
    let captioned = !m.text.trim().is_empty();
    append_tail(&mut lines, parts.tail(m.edited && !captioned), indent, width);
    if captioned {
        let rest_w = parts.rest_w();
        for row in text::wrap(&m.text, rest_w, rest_w) {
            lines.push(Line::from(vec![parts.indent(), Span::raw(row)]));
        }
        if m.edited {
            append_tail(&mut lines, vec![Span::styled("(edited)", theme.dim())], indent, width);
        }
    }
    if let Some(Preview::Ready(picture)) = app.preview(&file.id)
        && !app.config().no_color
    {
        let columns = u16::try_from(parts.rest_w()).unwrap_or(u16::MAX);
        for row in picture::half_blocks(picture, columns, PREVIEW_ROWS) {
            let mut spans = vec![parts.indent()];
            spans.extend(row.spans);
            lines.push(Line::from(spans));
        }
    }
    lines
}

/// The rows of one message: the quote of the message it answers (a reply), its
/// text (or file, or `deleted`) with the `(edited)` marker and the delivery mark
/// after it, and its reactions under it.
fn message_rows(app: &App, conv: &Conversation, m: &MessageView, width: usize, theme: &Theme) -> Vec<Line<'static>> {
    let outgoing = m.direction == Direction::Outgoing;
    // A group has many authors: each message names its own.
    let author =
        if outgoing { "you".to_owned() } else { text::truncate(&conv.author_label(app, &m.author), AUTHOR_MAX) };
    let author_style = if outgoing { theme.me() } else { theme.them() };
    let indent = if width >= INDENT_MIN_WIDTH { TIME_W } else { 0 };
    let head = vec![
        Span::styled(text::clock(m.sent_at, app.config().utc_offset_secs), theme.dim()),
        Span::raw(" "),
        Span::styled(author, author_style),
        Span::raw(": "),
    ];
    let parts = Parts { app, m, head, indent, width, theme };
    let mut lines = Vec::new();
    if let Some(quote) = &m.reply_to {
        lines.push(quote_row(app, conv, quote, indent, width, theme));
    }
    match &m.file {
        Some(file) => lines.extend(file_rows(&parts, file)),
        None => lines.extend(text_rows(&parts, conv)),
    }
    lines.extend(reaction_rows(app, m, indent, width, theme));
    lines
}

/// The rows of a text message: the head (time and author) and the wrapped text, or
/// `deleted` once its author deleted it, then the `(edited)` marker and the
/// delivery mark.
fn text_rows(parts: &Parts<'_>, conv: &Conversation) -> Vec<Line<'static>> {
    let Parts { app, m, indent, width, theme, .. } = *parts;
    let tail = parts.tail(m.edited && !m.deleted);
    if m.deleted {
        let mut spans = parts.head.clone();
        spans.push(Span::styled("deleted", theme.deleted()));
        let mut lines = vec![Line::from(spans)];
        append_tail(&mut lines, tail, indent, width);
        return lines;
    }
    // Only a group's messages mention anyone: its members other than us.
    let names: Option<Vec<String>> = conv.group_view().map(|g| {
        let others = g.members.iter().filter(|mb| app.me() != Some(mb.peer_id.as_str()));
        others.map(|mb| crate::app::member_label(app, g, &mb.peer_id)).collect()
    });
    let names = names.map(|others| (crate::app::mention_me(app), others));
    let mut lines = parts.wrapped(&m.text, |row| mentions(row, &names, theme));
    append_tail(&mut lines, tail, indent, width);
    lines
}

/// `tail` (the `(edited)` marker, the delivery mark) after the last of `lines`, a
/// space before each of its spans, or where that does not fit, on a row of its own
/// under them, indented.
fn append_tail(lines: &mut Vec<Line<'static>>, tail: Vec<Span<'static>>, indent: usize, width: usize) {
    if tail.is_empty() {
        return;
    }
    let tail_w: usize = tail.iter().map(|span| 1 + span.width()).sum();
    match lines.last_mut() {
        Some(last) if last.width() + tail_w <= width => {
            for span in tail {
                last.spans.push(Span::raw(" "));
                last.spans.push(span);
            }
        }
        _ => {
            let mut spans = vec![Span::raw(" ".repeat(indent))];
            for (i, span) in tail.into_iter().enumerate() {
                if i > 0 {
                    spans.push(Span::raw(" "));
                }
                spans.push(span);
            }
            lines.push(Line::from(spans));
        }
    }
}

/// The one-line quote above a reply: `↪ Bob: where?`, `↪ Bob: (deleted)`, or
/// `↪ a message not here` when this node does not hold the message answered; cut
/// at the pane's edge.
fn quote_row(
    app: &App,
    conv: &Conversation,
    quote: &QuoteView,
    indent: usize,
    width: usize,
    theme: &Theme,
) -> Line<'static> {
    let said = match (&quote.author, &quote.text) {
        (Some(author), Some(said)) => {
            let name = text::truncate(&conv.name_of(app, author), AUTHOR_MAX);
            let what = if quote.deleted {
                "(deleted)".to_owned()
            } else if said.trim().is_empty() {
                // Only a file message has no text.
                "[file]".to_owned()
            } else {
                crate::app::one_line(said)
            };
            format!("↪ {name}: {what}")
        }
        _ => "↪ a message not here".to_owned(),
    };
    let said = text::truncate(&said, width.saturating_sub(indent));
    Line::from(vec![Span::raw(" ".repeat(indent)), Span::styled(said, theme.dim())])
}

/// The reactions under a message, `👍 2  🎉 1`, ours highlighted, wrapped at the
/// pane's edge; past [`REACTIONS_SHOWN`] emoji the rest are counted (`+3`).
fn reaction_rows(app: &App, m: &MessageView, indent: usize, width: usize, theme: &Theme) -> Vec<Line<'static>> {
    let room = width.saturating_sub(indent);
    let mut chips: Vec<Span<'static>> = Vec::new();
    let shown = m.reactions.iter().filter(|r| r.count > 0);
    for r in shown.clone().take(REACTIONS_SHOWN) {
        let ours = app.me().is_some_and(|me| r.by.iter().any(|by| by == me));
        let chip = format!("{} {}", text::truncate(&r.emoji, EMOJI_MAX), r.count);
        chips.push(Span::styled(chip, if ours { theme.reaction_ours() } else { Style::new() }));
    }
    let more = shown.count().saturating_sub(REACTIONS_SHOWN);
    if more > 0 {
        chips.push(Span::styled(format!("+{more}"), theme.dim()));
    }
    let mut lines = Vec::new();
    let mut spans = Vec::new();
    let mut used = 0;
    for chip in chips {
        let w = chip.width();
        if used > 0 && used + 2 + w > room {
            lines.push(Line::from(std::mem::take(&mut spans)));
            used = 0;
        }
        if used == 0 {
            spans.push(Span::raw(" ".repeat(indent)));
        } else {
            spans.push(Span::raw("  "));
            used += 2;
        }
        spans.push(chip);
        used += w;
    }
    if !spans.is_empty() {
        lines.push(Line::from(spans));
    }
    lines
}

/// A row of a message's text, its mentions styled (see [`crate::mention`]; a mention
/// that a wrap cuts in two is not found). `names`: who we are and the other
/// members' names, `None` outside groups.
fn mentions(row: String, names: &Option<(crate::mention::Me<'_>, Vec<String>)>, theme: &Theme) -> Vec<Span<'static>> {
    let Some((me, others)) = names else { return vec![Span::raw(row)] };
    let found = crate::mention::find(&row, *me, others);
    if found.is_empty() {
        return vec![Span::raw(row)];
    }
    let mut spans = Vec::with_capacity(found.len() * 2 + 1);
    let mut at = 0;
    for (range, whom) in found {
        if range.start > at {
            spans.push(Span::raw(row[at..range.start].to_owned()));
        }
        let style = match whom {
            crate::mention::Whom::Me => theme.mention_me(),
            crate::mention::Whom::Other => theme.mention(),
        };
        spans.push(Span::styled(row[range.clone()].to_owned(), style));
        at = range.end;
    }
    if at < row.len() {
        spans.push(Span::raw(row[at..].to_owned()));
    }
    spans
}

/// A place in the window: the pane's bottom row is `below` rows above the bottom of
/// block `index` (message `index` of the window).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cursor {
    /// The block (window index).
    pub(crate) index: usize,
    /// Rows of the block below the pane's bottom row.
    pub(crate) below: usize,
}

/// A conversation's window laid out at one width.
pub(crate) struct Timeline<'a> {
    app: &'a App,
    conv: &'a Conversation,
    width: usize,
    theme: &'a Theme,
}

impl<'a> Timeline<'a> {
    /// The window of `conv` at `width` columns.
    pub(crate) fn new(app: &'a App, conv: &'a Conversation, width: usize, theme: &'a Theme) -> Timeline<'a> {
        Timeline { app, conv, width, theme }
    }

    /// Blocks in the window: one per loaded message, none before the newest page came.
    fn blocks(&self) -> usize {
        if self.conv.loaded && self.width > 0 { self.conv.messages.len() } else { 0 }
    }

    /// The notice at the top of the window.
    fn top_notice(&self) -> Vec<Line<'static>> {
        let conv = self.conv;
        let top = if !conv.has_older {
            match conv.group_view() {
                Some(g) => format!("beginning of #{}", g.name),
                None => format!("beginning of your conversation with {}", conv.label()),
            }
        } else if matches!(conv.loading, Some(Fetch::Older { .. })) {
            "loading older messages…".to_owned()
        } else {
            "↑ PageUp for older messages".to_owned()
        };
        notice(&top, self.width, self.theme.dim())
    }

    /// The notice under the newest message: the state of a pending contact.
    fn footer(&self) -> Vec<Line<'static>> {
        let conv = self.conv;
        if let Some(group) = conv.group_view() {
            if let Some(by) = &group.invited_by {
                let who = self.app.conversation(by).map_or_else(|| crate::text::short_peer(by), |c| c.label().to_owned());
                let text = format!("{who} (not a contact) added you to this group: /accept to join, /reject to decline");
                return notice(&text, self.width, self.theme.notice());
            }
            return if group.active {
                Vec::new()
            } else {
                notice("you left this group", self.width, self.theme.notice())
            };
        }
        match conv.contact().map(|c| c.state) {
            Some(ContactState::PendingIn) => {
                let text = format!("{} wants to add you as a contact: /accept, /reject or /block", conv.label());
                notice(&text, self.width, self.theme.notice())
            }
            Some(ContactState::PendingOut) => {
                let text = format!("{} has not accepted your contact request yet", conv.label());
                notice(&text, self.width, self.theme.notice())
            }
            _ => Vec::new(),
        }
    }

    /// The rows of the notices that follow the message `after` (`None`: those from
    /// before any message).
    fn notices(&self, after: Option<(u64, &str)>) -> Vec<Line<'static>> {
        let follows = |n: &&crate::app::Notice| n.after.as_ref().map(|(l, id)| (*l, id.as_str())) == after;
        self.conv.notices.iter().filter(follows).flat_map(|n| notice(&n.text, self.width, self.theme.dim())).collect()
    }

    /// The rows when there are no blocks: notices only.
    pub(crate) fn empty_rows(&self) -> Vec<Line<'static>> {
        let (conv, width, theme) = (self.conv, self.width, self.theme);
        if width == 0 {
            return Vec::new();
        }
        let mut rows = Vec::new();
        if !conv.loaded {
            if conv.loading.is_some() {
                rows.extend(notice("loading messages…", width, theme.dim()));
            }
        } else {
            rows.extend(self.top_notice());
            rows.extend(self.notices(None));
            if !conv.has_older && !conv.is_request() {
                rows.extend(notice("no messages yet: say hello", width, theme.dim()));
            }
        }
        rows.extend(self.footer());
        rows
    }

    /// The rows of block `i`, top to bottom (at least one).
    pub(crate) fn block(&self, i: usize) -> Vec<Line<'static>> {
        let (app, conv, width, theme) = (self.app, self.conv, self.width, self.theme);
        let offset = app.config().utc_offset_secs;
        let m = &conv.messages[i];
        let mut rows = if i == 0 { self.top_notice() } else { Vec::new() };
        let day = text::day_of(m.sent_at, offset);
        let previous = match i {
            // The message before the window: none, known (evicted) or not yet loaded.
            0 => conv.before_window.filter(|_| conv.has_older),
            _ => Some(conv.messages[i - 1].sent_at),
        };
        if previous.is_none_or(|at| text::day_of(at, offset) != day) {
            rows.push(rule(&text::date_label(day), width, theme.separator()));
        }
        if conv.unread_marker.as_deref() == Some(m.id.as_str()) {
            rows.push(rule("new messages", width, theme.new_marker()));
        }
        if i == 0 {
            rows.extend(self.notices(None));
        }
        let message = message_rows(app, conv, m, width, theme);
        if conv.selected.as_deref() == Some(m.id.as_str()) {
            // The message a search opened: marked like the list's open entry.
            rows.extend(message.into_iter().map(|row| row.patch_style(theme.selected())));
        } else {
            rows.extend(message);
        }
        rows.extend(self.notices(Some((m.lamport, m.id.as_str()))));
        if i + 1 == conv.messages.len() && !conv.detached() {
            rows.extend(self.footer());
        }
        rows
    }

    /// Rows of block `i` (at least one).
    pub(crate) fn height(&self, i: usize) -> usize {
        self.block(i).len().max(1)
    }

    /// Where the conversation's scroll state puts the pane's bottom row; `None` when
    /// there are no blocks.
    pub(crate) fn cursor(&self) -> Option<Cursor> {
        let n = self.blocks();
        if n == 0 {
            return None;
        }
        let below = match &self.conv.scroll {
            Scroll::Bottom => 0,
            Scroll::At { below, .. } => *below,
        };
        Some(self.up(Cursor { index: self.conv.anchor_index().min(n - 1), below: 0 }, below))
    }

    /// The scroll state for `cursor`: following the newest when it is the bottom of
    /// the newest message, else anchored to its message.
    pub(crate) fn anchor(&self, cursor: Cursor) -> Scroll {
        let n = self.blocks();
        if n == 0 || (cursor.index + 1 >= n && cursor.below == 0 && !self.conv.detached()) {
            return Scroll::Bottom;
        }
        let m = &self.conv.messages[cursor.index.min(n - 1)];
        Scroll::At { lamport: m.lamport, id: m.id.clone(), below: cursor.below }
    }

    /// `cursor` moved `rows` up, stopping at the top row of the window.
    pub(crate) fn up(&self, cursor: Cursor, rows: usize) -> Cursor {
        let mut c = Cursor { below: cursor.below.saturating_add(rows), ..cursor };
        loop {
            let h = self.height(c.index);
            if c.below < h {
                return c;
            }
            if c.index == 0 {
                return Cursor { index: 0, below: h - 1 };
            }
            c.below -= h;
            c.index -= 1;
        }
    }

    /// `cursor` moved `rows` down, stopping at the bottom of the window.
    pub(crate) fn down(&self, cursor: Cursor, rows: usize) -> Cursor {
        let n = self.blocks();
        let mut c = cursor;
        let mut rows = rows;
        loop {
            if c.below >= rows {
                c.below -= rows;
                return c;
            }
            rows -= c.below;
            if c.index + 1 >= n {
                c.below = 0;
                return c;
            }
            // The first row of the next block is one row down.
            c.index += 1;
            c.below = self.height(c.index) - 1;
            rows -= 1;
        }
    }

    /// `cursor` moved down as far as needed for the pane (`height` rows) to be full:
    /// the top of the window never comes down into the pane while rows are below it.
    pub(crate) fn settle(&self, cursor: Cursor, height: usize) -> Cursor {
        let c = self.up(cursor, 0);
        let mut above = self.height(c.index) - c.below;
        let mut i = c.index;
        while above < height && i > 0 {
            i -= 1;
            above += self.height(i);
        }
        if above >= height { c } else { self.down(c, height - above) }
    }

    /// Rows of the window above a pane of `height` rows whose bottom is at `cursor`,
    /// counted up to `limit`.
    pub(crate) fn rows_above(&self, cursor: Cursor, height: usize, limit: usize) -> usize {
        let mut above = self.height(cursor.index) - cursor.below.min(self.height(cursor.index));
        let mut i = cursor.index;
        while above < height + limit && i > 0 {
            i -= 1;
            above += self.height(i);
        }
        above.saturating_sub(height)
    }

    /// Rows of the window below `cursor`, counted up to `limit`.
    pub(crate) fn rows_below(&self, cursor: Cursor, limit: usize) -> usize {
        let n = self.blocks();
        let mut below = cursor.below;
        let mut i = cursor.index;
        while below < limit && i + 1 < n {
            i += 1;
            below += self.height(i);
        }
        below
    }

    /// The rows on a pane of `height` rows whose bottom is at `cursor` (settled
    /// first), oldest first; fewer than `height` only if the window has fewer.
    pub(crate) fn view(&self, cursor: Cursor, height: usize) -> Vec<Line<'static>> {
        let c = self.settle(cursor, height);
        let mut block = self.block(c.index);
        block.truncate(block.len().saturating_sub(c.below));
        let mut count = block.len();
        let mut blocks = vec![block];
        let mut i = c.index;
        while count < height && i > 0 {
            i -= 1;
            let block = self.block(i);
            count += block.len();
            blocks.push(block);
        }
        let rows: Vec<Line<'static>> = blocks.into_iter().rev().flatten().collect();
        let skip = rows.len().saturating_sub(height);
        rows.into_iter().skip(skip).collect()
    }
}
