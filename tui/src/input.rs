//! The message editor: a multi-line text buffer with a cursor, and the history of
//! submitted inputs.
//!
//! The cursor is a byte offset that always sits on a grapheme boundary, so every
//! movement and deletion acts on whole user-perceived characters (an emoji with a
//! skin tone, a letter with combining accents). Vertical movement keeps the display
//! column, measured in terminal columns. The editor knows nothing about keys; the
//! state machine in [`crate::app`] maps keys to these operations.

use unicode_segmentation::UnicodeSegmentation;
use unicode_width::UnicodeWidthStr;

use crate::text;

/// A multi-line text buffer with a cursor.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Input {
    text: String,
    /// Byte offset into `text`, always on a grapheme boundary.
    cursor: usize,
}

/// Character classes for word movement.
#[derive(PartialEq, Eq, Clone, Copy)]
enum Class {
    Space,
    Word,
    Other,
}

fn class(g: &str) -> Class {
    match g.chars().next() {
        Some(c) if c.is_whitespace() => Class::Space,
        Some(c) if c.is_alphanumeric() || c == '_' => Class::Word,
        _ => Class::Other,
    }
}

/// How the editor content is laid out in a box of a given width.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputLayout {
    /// The display rows (logical lines broken at the box width), sanitised.
    pub rows: Vec<String>,
    /// The cursor as (column, row) within `rows`.
    pub cursor: (usize, usize),
}

impl Input {
    /// An empty editor.
    pub fn new() -> Input {
        Input::default()
    }

    /// The text being edited.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The cursor as a byte offset into [`Input::text`].
    pub fn cursor(&self) -> usize {
        self.cursor
    }

    /// Whether nothing has been typed.
    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// Replace the text and put the cursor at its end.
    pub fn set_text(&mut self, text: impl Into<String>) {
        self.text = text.into();
        self.cursor = self.text.len();
    }

    /// Take the text out, leaving the editor empty.
    pub fn take(&mut self) -> String {
        self.cursor = 0;
        std::mem::take(&mut self.text)
    }

    /// Replace the bytes `range` of the text with `with` and put the cursor after it.
    /// `range` must lie on character boundaries (completion takes it from the text).
    pub fn replace(&mut self, range: std::ops::Range<usize>, with: &str) {
        if self.text.get(range.clone()).is_none() {
            return;
        }
        self.text.replace_range(range.clone(), with);
        self.cursor = self.boundary_at_or_after(range.start + with.len());
    }

    /// Insert one character at the cursor.
    pub fn insert_char(&mut self, c: char) {
        let mut buf = [0; 4];
        self.insert_str(c.encode_utf8(&mut buf));
    }

    /// Insert `s` at the cursor (a paste: taken verbatim, `\r\n` and `\r` become `\n`).
    pub fn insert_str(&mut self, s: &str) {
        let s = normalize_newlines(s);
        self.text.insert_str(self.cursor, &s);
        self.cursor += s.len();
        // Inserting a combining mark may merge graphemes; keep the cursor on a boundary.
        self.cursor = self.boundary_at_or_after(self.cursor);
    }

    /// Add `text` after what is there, on a line of its own, and leave the cursor
    /// where it was (at the end if the editor was empty): text given back (a send
    /// that failed) must not move or overwrite what is being typed.
    pub fn append(&mut self, text: &str) {
        if self.text.is_empty() {
            self.set_text(normalize_newlines(text));
            return;
        }
        self.text.push('\n');
        self.text.push_str(&normalize_newlines(text));
    }

    /// Insert a line break at the cursor.
    pub fn newline(&mut self) {
        self.insert_char('\n');
    }

    /// Delete the grapheme before the cursor. Returns whether anything changed.
    pub fn backspace(&mut self) -> bool {
        let start = self.prev_boundary(self.cursor);
        if start == self.cursor {
            return false;
        }
        self.text.replace_range(start..self.cursor, "");
        self.cursor = start;
        true
    }

    /// Delete the grapheme after the cursor. Returns whether anything changed.
    pub fn delete(&mut self) -> bool {
        let end = self.next_boundary(self.cursor);
        if end == self.cursor {
            return false;
        }
        self.text.replace_range(self.cursor..end, "");
        true
    }

    /// Move one grapheme left.
    pub fn move_left(&mut self) {
        self.cursor = self.prev_boundary(self.cursor);
    }

    /// Move one grapheme right.
    pub fn move_right(&mut self) {
        self.cursor = self.next_boundary(self.cursor);
    }

    /// Move to the start of the previous word.
    pub fn word_left(&mut self) {
        self.cursor = self.word_start_before(self.cursor);
    }

    /// Move past the end of the next word.
    pub fn word_right(&mut self) {
        self.cursor = self.word_end_after(self.cursor);
    }

    /// Move to the start of the current line.
    pub fn line_start(&mut self) {
        self.cursor = self.line_start_of(self.cursor);
    }

    /// Move to the end of the current line.
    pub fn line_end(&mut self) {
        self.cursor = self.line_end_of(self.cursor);
    }

    /// Move to the start of the text.
    pub fn buffer_start(&mut self) {
        self.cursor = 0;
    }

    /// Move to the end of the text.
    pub fn buffer_end(&mut self) {
        self.cursor = self.text.len();
    }

    /// Whether the cursor is on the first line.
    pub fn on_first_line(&self) -> bool {
        !self.text[..self.cursor].contains('\n')
    }

    /// Whether the cursor is on the last line.
    pub fn on_last_line(&self) -> bool {
        !self.text[self.cursor..].contains('\n')
    }

    /// Move to the line above, keeping the display column. Returns `false` (and does
    /// nothing) on the first line.
    pub fn move_up(&mut self) -> bool {
        if self.on_first_line() {
            return false;
        }
        let column = self.column();
        let start = self.line_start_of(self.cursor);
        // `start - 1` is the '\n' that ends the previous line.
        let prev_start = self.line_start_of(start - 1);
        self.cursor = self.at_column(prev_start, column);
        true
    }

    /// Move to the line below, keeping the display column. Returns `false` (and does
    /// nothing) on the last line.
    pub fn move_down(&mut self) -> bool {
        if self.on_last_line() {
            return false;
        }
        let column = self.column();
        let next_start = self.line_end_of(self.cursor) + 1;
        self.cursor = self.at_column(next_start, column);
        true
    }

    /// Delete from the start of the previous word to the cursor.
    pub fn delete_word_back(&mut self) -> bool {
        let start = self.word_start_before(self.cursor);
        if start == self.cursor {
            return false;
        }
        self.text.replace_range(start..self.cursor, "");
        self.cursor = start;
        true
    }

    /// Delete from the cursor to the end of the next word.
    pub fn delete_word_forward(&mut self) -> bool {
        let end = self.word_end_after(self.cursor);
        if end == self.cursor {
            return false;
        }
        self.text.replace_range(self.cursor..end, "");
        true
    }

    /// Delete from the start of the line to the cursor.
    pub fn delete_to_line_start(&mut self) -> bool {
        let start = self.line_start_of(self.cursor);
        if start == self.cursor {
            return false;
        }
        self.text.replace_range(start..self.cursor, "");
        self.cursor = start;
        true
    }

    /// Number of logical lines (one more than the number of `\n`).
    pub fn line_count(&self) -> usize {
        self.text.split('\n').count()
    }

    /// Lay the text out in a box `width` columns wide: lines broken at the width
    /// (between graphemes, so the cursor maps exactly), and where the cursor is.
    pub fn layout(&self, width: usize) -> InputLayout {
        let width = width.max(1);
        let mut rows = vec![String::new()];
        let mut used = 0;
        let mut cursor = (0, 0);
        let mut offset = 0;
        for (n, line) in self.text.split('\n').enumerate() {
            if n > 0 {
                rows.push(String::new());
                used = 0;
                offset += 1; // the '\n'
            }
            for (i, g) in line.grapheme_indices(true) {
                let shown = text::display_grapheme(g);
                let gw = shown.width();
                if used + gw > width && used > 0 {
                    rows.push(String::new());
                    used = 0;
                }
                if offset + i == self.cursor {
                    cursor = (used, rows.len() - 1);
                }
                if let Some(row) = rows.last_mut() {
                    row.push_str(&shown);
                }
                used += gw;
            }
            offset += line.len();
            if offset == self.cursor {
                if used >= width {
                    // The cursor sits after a full row: show it at the next row's start.
                    rows.push(String::new());
                    used = 0;
                }
                cursor = (used, rows.len() - 1);
            }
        }
        InputLayout { rows, cursor }
    }

    // ---- positions ----------------------------------------------------------------

    fn prev_boundary(&self, at: usize) -> usize {
        self.text[..at].grapheme_indices(true).next_back().map_or(0, |(i, _)| i)
    }

    fn next_boundary(&self, at: usize) -> usize {
        self.text[at..].graphemes(true).next().map_or(at, |g| at + g.len())
    }

    fn boundary_at_or_after(&self, at: usize) -> usize {
        let mut pos = 0;
        for (i, g) in self.text.grapheme_indices(true) {
            if i >= at {
                return i;
            }
            pos = i + g.len();
        }
        pos.max(at).min(self.text.len())
    }

    fn line_start_of(&self, at: usize) -> usize {
        self.text[..at].rfind('\n').map_or(0, |i| i + 1)
    }

    fn line_end_of(&self, at: usize) -> usize {
        self.text[at..].find('\n').map_or(self.text.len(), |i| at + i)
    }

    /// Display column of the cursor within its line.
    fn column(&self) -> usize {
        text::width(&self.text[self.line_start_of(self.cursor)..self.cursor])
    }

    /// The byte offset in the line starting at `start` closest to display `column`
    /// without passing it.
    fn at_column(&self, start: usize, column: usize) -> usize {
        let end = self.line_end_of(start);
        let mut used = 0;
        for (i, g) in self.text[start..end].grapheme_indices(true) {
            let gw = text::display_grapheme(g).width();
            if used + gw > column {
                return start + i;
            }
            used += gw;
        }
        end
    }

    fn word_start_before(&self, at: usize) -> usize {
        let graphemes: Vec<(usize, &str)> = self.text[..at].grapheme_indices(true).collect();
        let mut i = graphemes.len();
        while i > 0 && class(graphemes[i - 1].1) == Class::Space {
            i -= 1;
        }
        if i > 0 {
            let kind = class(graphemes[i - 1].1);
            while i > 0 && class(graphemes[i - 1].1) == kind {
                i -= 1;
            }
        }
        graphemes.get(i).map_or(at, |(offset, _)| *offset)
    }

    fn word_end_after(&self, at: usize) -> usize {
        let mut iter = self.text[at..].grapheme_indices(true).peekable();
        while iter.next_if(|(_, g)| class(g) == Class::Space).is_some() {}
        if let Some(&(_, g)) = iter.peek() {
            let kind = class(g);
            while iter.next_if(|(_, g)| class(g) == kind).is_some() {}
        }
        iter.peek().map_or(self.text.len(), |(i, _)| at + i)
    }
}

fn normalize_newlines(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains('\r') {
        std::borrow::Cow::Owned(s.replace("\r\n", "\n").replace('\r', "\n"))
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

/// Submitted inputs, browsed with Up/Down like a shell history.
#[derive(Debug, Clone, Default)]
pub struct History {
    entries: Vec<String>,
    /// The entry being shown while browsing.
    position: Option<usize>,
    /// What was typed before browsing started, restored when browsing past the end.
    draft: String,
}

impl History {
    /// How many entries are kept; older ones are forgotten.
    pub const CAPACITY: usize = 200;

    /// An empty history.
    pub fn new() -> History {
        History::default()
    }

    /// Remember a submitted input (not twice in a row) and stop browsing.
    pub fn push(&mut self, entry: String) {
        self.position = None;
        self.draft.clear();
        if entry.trim().is_empty() || self.entries.last() == Some(&entry) {
            return;
        }
        if self.entries.len() >= Self::CAPACITY {
            self.entries.remove(0);
        }
        self.entries.push(entry);
    }

    /// The remembered entries, oldest first.
    pub fn entries(&self) -> &[String] {
        &self.entries
    }

    /// Whether Up/Down currently browse the history.
    pub fn is_browsing(&self) -> bool {
        self.position.is_some()
    }

    /// Step back: the older entry to show, saving `current` as the draft when
    /// browsing starts. `None` when there is nothing older.
    pub fn older(&mut self, current: &str) -> Option<&str> {
        let next = match self.position {
            None => {
                if self.entries.is_empty() {
                    return None;
                }
                self.draft = current.to_owned();
                self.entries.len() - 1
            }
            Some(0) => return None,
            Some(p) => p - 1,
        };
        self.position = Some(next);
        self.entries.get(next).map(String::as_str)
    }

    /// Step forward: the newer entry, or the saved draft past the newest.
    /// `None` when not browsing.
    pub fn newer(&mut self) -> Option<String> {
        let p = self.position?;
        if p + 1 < self.entries.len() {
            self.position = Some(p + 1);
            self.entries.get(p + 1).cloned()
        } else {
            self.position = None;
            Some(std::mem::take(&mut self.draft))
        }
    }

    /// Stop browsing (the user edited the recalled text).
    pub fn stop_browsing(&mut self) {
        self.position = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(text: &str) -> Input {
        let mut i = Input::new();
        i.set_text(text);
        i
    }

    #[test]
    fn inserts_and_deletes_graphemes() {
        let mut i = Input::new();
        for c in "héllo".chars() {
            i.insert_char(c);
        }
        assert_eq!(i.text(), "héllo");
        i.move_left();
        i.move_left();
        i.move_left();
        assert!(i.backspace());
        assert_eq!(i.text(), "hllo");
        assert!(i.delete());
        assert_eq!(i.text(), "hlo");
        i.buffer_start();
        assert!(!i.backspace());
        i.buffer_end();
        assert!(!i.delete());
    }

    #[test]
    fn emoji_with_modifiers_is_one_step() {
        // A thumbs-up with a skin tone and a family: each one grapheme.
        let mut i = input("a👍🏽👨‍👩‍👧b");
        i.move_left();
        i.move_left();
        assert!(i.backspace());
        assert_eq!(i.text(), "a👨‍👩‍👧b");
        i.move_right();
        assert_eq!(&i.text()[i.cursor()..], "b");
    }

    #[test]
    fn word_movement() {
        let mut i = input("hello, big world");
        i.word_left();
        assert_eq!(&i.text()[i.cursor()..], "world");
        i.word_left();
        assert_eq!(&i.text()[i.cursor()..], "big world");
        i.word_left();
        assert_eq!(&i.text()[i.cursor()..], ", big world");
        i.word_right();
        assert_eq!(&i.text()[i.cursor()..], " big world");
        assert!(i.delete_word_forward());
        assert_eq!(i.text(), "hello, world");
        i.buffer_end();
        assert!(i.delete_word_back());
        assert_eq!(i.text(), "hello, ");
    }

    #[test]
    fn vertical_movement_keeps_display_column() {
        let mut i = input("你好世界\nabcdefgh");
        // Cursor at the end: column 8 on line 2.
        assert!(i.move_up());
        assert_eq!(i.cursor(), "你好世界".len());
        i.line_start();
        i.move_right();
        i.move_right(); // column 4
        assert!(i.move_down());
        assert_eq!(&i.text()[i.cursor()..], "efgh");
        assert!(!i.move_down());
        assert!(i.move_up());
        assert!(!i.move_up());
    }

    #[test]
    fn paste_normalises_line_endings() {
        let mut i = Input::new();
        i.insert_str("a\r\nb\rc");
        assert_eq!(i.text(), "a\nb\nc");
        assert_eq!(i.line_count(), 3);
    }

    #[test]
    fn layout_breaks_rows_and_places_cursor() {
        let i = input("abcdef\nxy");
        let layout = i.layout(4);
        assert_eq!(layout.rows, vec!["abcd", "ef", "xy"]);
        assert_eq!(layout.cursor, (2, 2));
        let full = input("abcd");
        assert_eq!(full.layout(4).cursor, (0, 1));
        let mut wide = input("你好");
        wide.buffer_start();
        wide.move_right();
        assert_eq!(wide.layout(3).cursor, (0, 1));
        assert_eq!(Input::new().layout(0).cursor, (0, 0));
    }

    #[test]
    fn history_browses_and_restores_draft() {
        let mut h = History::new();
        h.push("one".into());
        h.push("two".into());
        h.push("two".into());
        assert_eq!(h.entries(), ["one", "two"]);
        assert_eq!(h.older("draft"), Some("two"));
        assert_eq!(h.older("ignored"), Some("one"));
        assert_eq!(h.older("ignored"), None);
        assert_eq!(h.newer().as_deref(), Some("two"));
        assert_eq!(h.newer().as_deref(), Some("draft"));
        assert_eq!(h.newer(), None);
    }
}
