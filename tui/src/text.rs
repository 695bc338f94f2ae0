//! Text helpers shared by the editor, the state machine and the renderer: display
//! sanitising, Unicode display widths, word wrapping, truncation and clock formatting.
//!
//! Everything here measures in terminal columns (`unicode-width`) and cuts only at
//! grapheme boundaries (`unicode-segmentation`), so wide CJK characters and emoji
//! never get split or miscounted.

use kith_p2p::display::is_unsafe;
/// Shared with the CLI: see [`kith_p2p::display`].
pub(crate) use kith_p2p::display::sanitize_line;
use unicode_segmentation::UnicodeSegmentation;
use unicode_width::UnicodeWidthStr;

/// One grapheme as it is drawn: unsafe characters replaced, tabs as a space.
pub(crate) fn display_grapheme(g: &str) -> std::borrow::Cow<'_, str> {
    if g.chars().any(|c| c == '\t' || is_unsafe(c)) {
        std::borrow::Cow::Owned(sanitize_line(g))
    } else {
        std::borrow::Cow::Borrowed(g)
    }
}

/// Display width of `s` in terminal columns, after sanitising.
pub(crate) fn width(s: &str) -> usize {
    s.graphemes(true).map(|g| display_grapheme(g).width()).sum()
}

/// `s` cut to at most `max` columns, ending in `…` when something was cut.
pub(crate) fn truncate(s: &str, max: usize) -> String {
    let s = sanitize_line(s);
    if s.width() <= max {
        return s;
    }
    if max == 0 {
        return String::new();
    }
    let mut out = String::new();
    let mut used = 0;
    for g in s.graphemes(true) {
        let w = g.width();
        if used + w > max - 1 {
            break;
        }
        used += w;
        out.push_str(g);
    }
    out.push('…');
    out
}

/// `s` padded with spaces on the right to `columns` (cut first if wider).
pub(crate) fn pad(s: &str, columns: usize) -> String {
    let mut out = truncate(s, columns);
    let w = out.width();
    out.extend(std::iter::repeat_n(' ', columns.saturating_sub(w)));
    out
}

/// Word-wrap `text` into rows: the first row holds at most `first` columns, every
/// other row at most `rest`. Newlines in `text` start new rows; rows break at
/// whitespace, which disappears at the break. A word wider than a row is broken
/// between graphemes, and so is any word with wide (CJK) characters, since those
/// scripts break anywhere. Rows are sanitised for display.
///
/// Returns at least one row (possibly empty). With `rest == 0` nothing fits and
/// the result is a single empty row.
pub(crate) fn wrap(text: &str, first: usize, rest: usize) -> Vec<String> {
    let mut rows: Vec<String> = vec![String::new()];
    if rest == 0 {
        return rows;
    }
    let mut used = 0;
    // The limit of the row being filled.
    let limit = |rows: &Vec<String>| if rows.len() == 1 { first } else { rest };
    for (n, line) in text.split('\n').enumerate() {
        if n > 0 {
            rows.push(String::new());
            used = 0;
        }
        for token in words(line) {
            let token = sanitize_line(token);
            let tw = token.width();
            if used + tw <= limit(&rows) {
                push(&mut rows, &token);
                used += tw;
                continue;
            }
            if token.chars().all(char::is_whitespace) {
                // A break: the whitespace goes.
                if used > 0 {
                    rows.push(String::new());
                    used = 0;
                }
                continue;
            }
            let wide = token.graphemes(true).any(|g| g.width() > 1);
            if !wide && tw <= rest {
                rows.push(String::new());
                push(&mut rows, &token);
                used = tw;
                continue;
            }
            for g in token.graphemes(true) {
                let gw = g.width();
                if used + gw > limit(&rows) && (used > 0 || limit(&rows) == 0) {
                    rows.push(String::new());
                    used = 0;
                }
                push(&mut rows, g);
                used += gw;
            }
        }
    }
    // Spaces before a break are not shown.
    for row in &mut rows {
        row.truncate(row.trim_end().len());
    }
    rows
}

/// `line` cut into alternating runs of whitespace and non-whitespace.
fn words(line: &str) -> impl Iterator<Item = &str> {
    let mut rest = line;
    std::iter::from_fn(move || {
        let first = rest.chars().next()?;
        let blank = first.is_whitespace();
        let end = rest.char_indices().find(|(_, c)| c.is_whitespace() != blank).map_or(rest.len(), |(i, _)| i);
        let (word, tail) = rest.split_at(end);
        rest = tail;
        Some(word)
    })
}

fn push(rows: &mut [String], s: &str) {
    if let Some(row) = rows.last_mut() {
        row.push_str(s);
    }
}

/// Break `s` into rows of at most `width` columns between any two graphemes (for
/// URIs and other text without spaces). Sanitised for display.
pub(crate) fn hard_wrap(s: &str, width: usize) -> Vec<String> {
    let mut rows = vec![String::new()];
    let mut used = 0;
    for g in s.graphemes(true) {
        let shown = display_grapheme(g);
        let gw = shown.width();
        if used + gw > width && used > 0 {
            rows.push(String::new());
            used = 0;
        }
        push(&mut rows, &shown);
        used += gw;
    }
    rows
}

/// Days since the Unix epoch of `ms` shifted by `offset_secs`.
pub(crate) fn day_of(ms: u64, offset_secs: i32) -> i64 {
    local_secs(ms, offset_secs).div_euclid(86_400)
}

fn local_secs(ms: u64, offset_secs: i32) -> i64 {
    i64::try_from(ms / 1000).unwrap_or(i64::MAX / 2) + i64::from(offset_secs)
}

/// `HH:MM` of a Unix-ms timestamp in the zone `offset_secs` east of UTC.
pub(crate) fn clock(ms: u64, offset_secs: i32) -> String {
    let secs = local_secs(ms, offset_secs).rem_euclid(86_400);
    format!("{:02}:{:02}", secs / 3600, (secs / 60) % 60)
}

/// A calendar date such as `Tue, 14 Jan 2025` for a day number from [`day_of`].
pub(crate) fn date_label(day: i64) -> String {
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let weekday = WEEKDAYS[day.rem_euclid(7) as usize];
    let (y, m, d) = kith_p2p::display::civil_from_days(day);
    let month = MONTHS[(m as usize).clamp(1, 12) - 1];
    format!("{weekday}, {d} {month} {y}")
}


/// What a message says, in one line for previews: its text, or for a file message
/// `[file] name` (and the caption); `deleted` once its author deleted it.
pub(crate) fn summary(m: &kith_p2p::views::MessageView) -> String {
    if m.deleted {
        return "deleted".to_owned();
    }
    let first = m.text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    match &m.file {
        Some(file) if first.is_empty() => format!("[file] {}", kith_p2p::files::safe_file_name(&file.name)),
        Some(file) => format!("[file] {} · {first}", kith_p2p::files::safe_file_name(&file.name)),
        None => first.to_owned(),
    }
}

/// `path` with the `home` directory written `~`.
pub(crate) fn tilde(path: &str, home: Option<&str>) -> String {
    match home.map(|h| h.trim_end_matches('/')).filter(|h| !h.is_empty()) {
        Some(home) if path == home => "~".to_owned(),
        Some(home) => match path.strip_prefix(home).filter(|rest| rest.starts_with('/')) {
            Some(rest) => format!("~{rest}"),
            None => path.to_owned(),
        },
        None => path.to_owned(),
    }
}

/// `1 member`, `3 members`.
pub(crate) fn members(n: usize) -> String {
    if n == 1 { "1 member".to_owned() } else { format!("{n} members") }
}

/// The last eight characters of a peer id after `…`, enough to tell peers apart.
pub(crate) fn short_peer(peer: &str) -> String {
    let chars: Vec<char> = peer.chars().collect();
    if chars.len() <= 10 {
        return peer.to_owned();
    }
    let tail: String = chars[chars.len() - 8..].iter().collect();
    format!("…{tail}")
}

/// Parse a `date +%z` style offset (`+0200`, `-0530`) into seconds east of UTC.
pub(crate) fn parse_utc_offset(s: &str) -> Option<i32> {
    let s = s.trim();
    let (sign, digits) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let hours: i32 = digits[..2].parse().ok()?;
    let minutes: i32 = digits[2..].parse().ok()?;
    if hours > 14 || minutes > 59 {
        return None;
    }
    Some(sign * (hours * 3600 + minutes * 60))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kith_p2p::display::human_size;

    #[test]
    fn sizes_and_home_paths_read_well() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1023), "1023 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(42 * 1024 * 1024), "42 MiB");
        assert_eq!(human_size(3_435_973_837), "3.2 GiB");
        assert_eq!(tilde("/home/me/Downloads/a.png", Some("/home/me")), "~/Downloads/a.png");
        assert_eq!(tilde("/home/meow/a.png", Some("/home/me")), "/home/meow/a.png");
        assert_eq!(tilde("/tmp/a.png", None), "/tmp/a.png");
    }

    #[test]
    fn wraps_by_words_and_width() {
        assert_eq!(wrap("hello world foo", 11, 11), vec!["hello world", "foo"]);
        assert_eq!(wrap("hello world", 5, 5), vec!["hello", "world"]);
        assert_eq!(wrap("abcdefgh", 3, 3), vec!["abc", "def", "gh"]);
        assert_eq!(wrap("a\nb", 5, 5), vec!["a", "b"]);
        assert_eq!(wrap("", 5, 5), vec![""]);
        assert_eq!(wrap("abc", 0, 5), vec!["", "abc"]);
        assert_eq!(wrap("abc", 5, 0), vec![""]);
        assert_eq!(wrap("use /add <invite> now", 10, 10), vec!["use /add", "<invite>", "now"]);
        assert_eq!(wrap("a  b", 1, 1), vec!["a", "b"]);
        assert_eq!(wrap("      x", 3, 3), vec!["x"]);
    }

    #[test]
    fn wraps_wide_characters_by_columns() {
        // Each ideograph is two columns wide.
        let rows = wrap("你好世界", 5, 5);
        assert_eq!(rows, vec!["你好", "世界"]);
        for row in wrap("🎉🎉🎉 ok", 4, 4) {
            assert!(width(&row) <= 4, "{row:?}");
        }
        // A wide character never fits into one column; it still goes somewhere.
        assert_eq!(wrap("你", 1, 1), vec!["你"]);
    }

    #[test]
    fn sanitises_escape_sequences() {
        assert_eq!(sanitize_line("a\x1b[31mb\tc"), "a\u{fffd}[31mb c");
        assert_eq!(width("a\x1bb"), 3);
    }

    #[test]
    fn truncates_with_ellipsis() {
        assert_eq!(truncate("hello", 10), "hello");
        assert_eq!(truncate("hello", 4), "hel…");
        assert_eq!(truncate("你好世界", 5), "你好…");
        assert_eq!(truncate("hello", 0), "");
        assert_eq!(pad("ab", 4), "ab  ");
    }

    #[test]
    fn formats_clock_and_dates() {
        // 2025-01-14 10:42:00 UTC
        let ms = 1_736_851_320_000;
        assert_eq!(clock(ms, 0), "10:42");
        assert_eq!(clock(ms, 3600), "11:42");
        assert_eq!(clock(ms, -11 * 3600), "23:42");
        assert_eq!(date_label(day_of(ms, 0)), "Tue, 14 Jan 2025");
        assert_eq!(date_label(0), "Thu, 1 Jan 1970");
        assert_eq!(date_label(day_of(ms, -11 * 3600)), "Mon, 13 Jan 2025");
    }

    #[test]
    fn parses_offsets() {
        assert_eq!(parse_utc_offset("+0200\n"), Some(7200));
        assert_eq!(parse_utc_offset("-0530"), Some(-(5 * 3600 + 30 * 60)));
        assert_eq!(parse_utc_offset("UTC"), None);
        assert_eq!(parse_utc_offset("+2"), None);
    }
}
