//! Text that came from a peer, made safe to show on a terminal.
//!
//! Message texts, contact and member names, group names, contact-request previews:
//! all of it is chosen by someone else. Printed as is, a control character would let
//! that someone move the cursor, recolour or clear the screen, set the window title or
//! fake other output (ANSI escape sequences start with ESC, U+001B, or the C1 control
//! CSI, U+009B), and a bidirectional override would let them disguise text (a name
//! that reads differently from what it is). The TUI and the CLI's human output both
//! pass every such text through [`sanitize_line`], one line at a time; JSON output
//! needs nothing, since JSON escapes control characters itself and a program, not a
//! terminal, reads it.

/// What an unsafe character is shown as.
pub const REPLACEMENT: &str = "\u{fffd}";

/// Whether `c` must not reach a terminal as is: C0 and C1 control characters and DEL
/// (escape sequences, carriage returns, backspaces, bells), the bidirectional
/// embeddings, overrides and isolates (U+202A–U+202E, U+2066–U+2069) and the
/// directional marks (U+200E, U+200F, U+061C), and the Unicode line and paragraph
/// separators (U+2028, U+2029), which some terminals treat as line breaks.
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}' | '\u{061c}' | '\u{2028}' | '\u{2029}'
        )
}

/// `s` made safe to print on one line: a tab becomes a space, a newline and every
/// other [unsafe](is_unsafe) character becomes [`REPLACEMENT`], everything else stays.
/// Callers that show several lines split on `'\n'` first and sanitise each line.
pub fn sanitize_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\t' => out.push(' '),
            c if is_unsafe(c) => out.push_str(REPLACEMENT),
            c => out.push(c),
        }
    }
    out
}

/// The proleptic Gregorian (year, month, day) of a day number counted from
/// 1970-01-01 (Howard Hinnant's `civil_from_days`): dates for people without a
/// timezone database.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// A size in bytes for people: `512 B`, `1.5 KiB`, `42 MiB`, `3.2 GiB` (one decimal
/// under 10 units).
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if value < 10.0 { format!("{value:.1} {}", UNITS[unit]) } else { format!("{value:.0} {}", UNITS[unit]) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences_and_controls_are_replaced() {
        assert_eq!(sanitize_line("a\x1b[31mb\tc"), "a\u{fffd}[31mb c");
        assert_eq!(sanitize_line("ok\r\nfake\x07\x08\x7f"), "ok\u{fffd}\u{fffd}fake\u{fffd}\u{fffd}\u{fffd}");
        // C1: CSI and OSC without ESC.
        assert_eq!(sanitize_line("\u{9b}2J\u{9d}0;title\u{9c}"), "\u{fffd}2J\u{fffd}0;title\u{fffd}");
    }

    #[test]
    fn bidi_controls_and_separators_are_replaced() {
        for c in ['\u{202e}', '\u{202a}', '\u{2066}', '\u{2069}', '\u{200f}', '\u{061c}', '\u{2028}', '\u{2029}'] {
            assert_eq!(sanitize_line(&format!("a{c}b")), "a\u{fffd}b", "{:?}", c);
        }
    }

    #[test]
    fn ordinary_text_is_unchanged() {
        for text in ["hello", "Привет, как дела? 👋🏽🇺🇦 漢字", "שלום عربى", "a\u{200d}b e\u{301}"] {
            assert_eq!(sanitize_line(text), text);
        }
    }

    #[test]
    fn civil_dates_of_day_numbers() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_790), (2026, 12, 3));
    }
}
