//! The part of a message shown with a hit, with the matching words marked.

use std::ops::Range;

use crate::query::Need;
use crate::tokens::tokens;

/// Characters of a message a snippet shows at most (plus the ellipses).
pub const SNIPPET_CHARS: usize = 160;

/// Characters shown before the first match when a message is cut.
const LEAD_CHARS: usize = 40;

/// A message's text around its first match, on one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snippet {
    /// The text shown: line breaks made spaces, `…` where it was cut.
    pub text: String,
    /// Byte ranges of `text` that matched the query: sorted, disjoint, on
    /// character boundaries.
    pub marks: Vec<Range<usize>>,
}

/// The snippet of `text` for a query with `needs`.
pub(crate) fn snippet(text: &str, needs: &[Need]) -> Snippet {
    let mut marks: Vec<Range<usize>> = Vec::new();
    for token in tokens(text) {
        if needs.iter().any(|n| n.matches(&token.text)) {
            match marks.last_mut() {
                Some(last) if token.from <= last.end => last.end = last.end.max(token.to),
                _ => marks.push(token.from..token.to),
            }
        }
    }
    let one_line: String = text.chars().map(|c| if c == '\n' || c == '\r' || c == '\t' { ' ' } else { c }).collect();
    if one_line.chars().count() <= SNIPPET_CHARS {
        return Snippet { text: one_line, marks };
    }
    let first = marks.first().map_or(0, |m| m.start);
    let start = one_line[..first].char_indices().rev().nth(LEAD_CHARS.saturating_sub(1)).map_or(0, |(i, _)| i);
    let end = one_line[start..].char_indices().nth(SNIPPET_CHARS).map_or(one_line.len(), |(i, _)| start + i);
    let mut shown = String::new();
    if start > 0 {
        shown.push('…');
    }
    let shift = shown.len();
    shown.push_str(&one_line[start..end]);
    if end < one_line.len() {
        shown.push('…');
    }
    let marks = marks
        .into_iter()
        .filter(|m| m.start >= start && m.start < end)
        .map(|m| m.start - start + shift..m.end.min(end) - start + shift)
        .collect();
    Snippet { text: shown, marks }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::needs;

    fn marked(s: &Snippet) -> Vec<&str> {
        s.marks.iter().map(|m| &s.text[m.clone()]).collect()
    }

    #[test]
    fn matching_words_are_marked_in_a_short_message() {
        let s = snippet("Встреча в пятницу,\nвстречи по средам", &needs("ВСТРЕЧИ"));
        assert_eq!(s.text, "Встреча в пятницу, встречи по средам");
        assert_eq!(marked(&s), ["Встреча", "встречи"]);
        let s = snippet("会議は金曜日です", &needs("金曜"));
        assert_eq!(marked(&s), ["金曜"], "a pair's characters are one mark");
    }

    #[test]
    fn a_long_message_is_cut_around_its_first_match() {
        let text = format!("{} the café opens {}", "word ".repeat(100), "more ".repeat(100));
        let s = snippet(&text, &needs("cafe"));
        assert!(s.text.starts_with('…') && s.text.ends_with('…'), "{}", s.text);
        assert_eq!(s.text.chars().count(), SNIPPET_CHARS + 2);
        assert_eq!(marked(&s), ["café"]);
        let s = snippet(&format!("café {}", "x ".repeat(200)), &needs("cafe"));
        assert!(s.text.starts_with("café") && s.text.ends_with('…'));
    }
}
