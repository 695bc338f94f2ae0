//! `@name` mentions in message texts: a display and notification rule over the text,
//! nothing on the wire.
//!
//! A mention is `@` at the start of the text or after a character that is not a
//! letter or digit (so `bob@example.org` mentions nobody), followed by a name,
//! compared case-insensitively, and then the end of the text or a character that is
//! not a letter, digit or `_`. A message mentions us when it names our display name
//! that way, or when the word after `@` is at least [`MIN_ID_PREFIX`] characters of
//! our peer id (`@12D3KooWAbCd`), compared exactly (peer ids are case-sensitive).

use std::ops::Range;

/// The fewest characters of our peer id that mention us: every id starts with the
/// same few characters (`12D3KooW`), so fewer would mention everyone.
pub const MIN_ID_PREFIX: usize = 12;

/// Who a mention names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whom {
    /// Us.
    Me,
    /// Another member.
    Other,
}

/// Who we are, for finding mentions of us.
#[derive(Debug, Clone, Copy, Default)]
pub struct Me<'a> {
    /// Our display name, if set.
    pub name: Option<&'a str>,
    /// Our peer id, once known.
    pub peer_id: Option<&'a str>,
}

/// The mentions in `text`, in order: their byte ranges (from `@` to the end of the
/// name) and whom they name. `others` are the names of other members; the longest
/// name that fits wins.
pub fn find(text: &str, me: Me<'_>, others: &[String]) -> Vec<(Range<usize>, Whom)> {
    let mut out = Vec::new();
    let mut prev: Option<char> = None;
    for (at, c) in text.char_indices() {
        let starts = c == '@' && !prev.is_some_and(char::is_alphanumeric);
        prev = Some(c);
        if !starts {
            continue;
        }
        let rest = &text[at + 1..];
        let mut best: Option<(usize, Whom)> = None;
        let mut consider = |len: Option<usize>, whom: Whom| {
            if let Some(len) = len
                && best.is_none_or(|(l, _)| len > l)
            {
                best = Some((len, whom));
            }
        };
        if let Some(name) = me.name {
            consider(name_len(rest, name), Whom::Me);
        }
        if let Some(peer) = me.peer_id {
            let word = rest.find(|c: char| !c.is_ascii_alphanumeric()).unwrap_or(rest.len());
            consider((word >= MIN_ID_PREFIX && peer.starts_with(&rest[..word])).then_some(word), Whom::Me);
        }
        for name in others {
            consider(name_len(rest, name), Whom::Other);
        }
        if let Some((len, whom)) = best {
            out.push((at..at + 1 + len, whom));
        }
    }
    out
}

/// Whether `text` mentions us.
pub fn mentions_me(text: &str, me: Me<'_>) -> bool {
    find(text, me, &[]).iter().any(|(_, whom)| *whom == Whom::Me)
}

/// How many bytes of `rest` are `name` (case-insensitively) followed by a boundary.
fn name_len(rest: &str, name: &str) -> Option<usize> {
    if name.trim().is_empty() {
        return None;
    }
    let mut chars = rest.char_indices();
    for expected in name.chars() {
        let (_, got) = chars.next()?;
        if !got.to_lowercase().eq(expected.to_lowercase()) {
            return None;
        }
    }
    let end = chars.next().map_or(rest.len(), |(i, _)| i);
    let boundary = rest[end..].chars().next().is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
    boundary.then_some(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEER: &str = "12D3KooWMeMeMeMeMeMeMeMeMeMeMe";

    fn me() -> Me<'static> {
        Me { name: Some("Алиса"), peer_id: Some(PEER) }
    }

    #[test]
    fn our_name_or_id_prefix_after_an_at_mentions_us() {
        assert!(mentions_me("@Алиса, ты придёшь?", me()));
        assert!(mentions_me("привет @алиса", me()), "case-insensitive");
        assert!(mentions_me("ping @12D3KooWMeMe", me()));
        assert!(!mentions_me("ping @12D3KooW", me()), "too short an id prefix: everyone's");
        assert!(!mentions_me("@Алисандра", me()), "a longer name is someone else");
        assert!(!mentions_me("mail алиса@Алиса", me()), "not after a letter");
        assert!(!mentions_me("Алиса without an at", me()));
        assert!(!mentions_me("@Алиса", Me::default()));
    }

    #[test]
    fn others_are_found_and_the_longest_name_wins() {
        let others = vec!["Bob".to_owned(), "Bob 🎸".to_owned()];
        let text = "@bob 🎸 and @Алиса and @carol";
        let found = find(text, me(), &others);
        let parts: Vec<(&str, Whom)> = found.iter().map(|(r, w)| (&text[r.clone()], *w)).collect();
        assert_eq!(parts, vec![("@bob 🎸", Whom::Other), ("@Алиса", Whom::Me)]);
    }
}
