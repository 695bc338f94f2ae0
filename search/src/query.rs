//! What a query asks for: the terms a message must hold, one need per query
//! word, read with the same tokenizer as messages.
//!
//! The rule for words, documented for users in docs/CLI.md ("Search"):
//!
//! - Every word of the query must match (AND).
//! - A word matches itself and every word that begins with its *stem*: the
//!   longest common beginning of the word and its Snowball stem (Russian for
//!   Cyrillic words, English for Latin ones; words under four letters are not
//!   cut). So `встречи` (stem `встреч`) finds `Встреча`, `meeting` (stem
//!   `meet`) finds `meets`, and `caf` finds `café`: a word typed half-way
//!   finds the whole.
//! - Whole-word matches rank above prefix matches.
//! - CJK text matches by character pairs in order; a single character matches
//!   wherever it occurs. An emoji matches itself.

use std::borrow::Cow;

use frostem::{Algorithm, Stemmer};

use crate::tokens::{Kind, tokens};

/// Words shorter than this (in characters) are matched as typed, never cut.
const MIN_STEMMED: usize = 4;

/// One thing a message must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    /// This exact term (CJK characters and pairs, emoji).
    Term(String),
    /// A word: the whole word, or any term beginning with `prefix`.
    Word {
        /// The word as typed, folded.
        whole: String,
        /// What a matching term must begin with (the whole word or its stem).
        prefix: String,
    },
}

impl Need {
    /// Whether an indexed term (from a message's tokens) satisfies this need.
    pub fn matches(&self, term: &str) -> bool {
        match self {
            Need::Term(t) => t == term,
            Need::Word { prefix, .. } => term.starts_with(prefix.as_str()),
        }
    }
}

/// The needs of a query text, in the order typed, without repeats.
pub fn needs(query: &str) -> Vec<Need> {
    let tokens = tokens(query);
    // A character already inside a pair of the query adds nothing to the pair.
    let paired = |from: usize| tokens.iter().any(|t| t.kind == Kind::CjkPair && (t.from == from || t.to > from && t.from < from));
    let mut out: Vec<Need> = Vec::new();
    for token in &tokens {
        let need = match token.kind {
            Kind::Word => Need::Word { prefix: stem_prefix(&token.text).into_owned(), whole: token.text.clone() },
            Kind::CjkChar if paired(token.from) => continue,
            Kind::CjkChar | Kind::CjkPair | Kind::Emoji => Need::Term(token.text.clone()),
        };
        if !out.contains(&need) {
            out.push(need);
        }
    }
    out
}

/// The beginning shared by `word` and its stem (see the module docs).
fn stem_prefix(word: &str) -> Cow<'_, str> {
    if word.chars().count() < MIN_STEMMED {
        return Cow::Borrowed(word);
    }
    let letters = word.chars().filter(|c| c.is_alphabetic());
    let algorithm = if letters.clone().all(|c| ('\u{0400}'..='\u{04FF}').contains(&c)) {
        Algorithm::Russian
    } else if letters.clone().all(|c| c.is_ascii_lowercase()) {
        Algorithm::English
    } else {
        return Cow::Borrowed(word);
    };
    let stem = Stemmer::new(algorithm).stem(word);
    let shared: usize = word.chars().zip(stem.chars()).take_while(|(a, b)| a == b).map(|(a, _)| a.len_utf8()).sum();
    if word[..shared].chars().count() < MIN_STEMMED - 1 {
        return Cow::Borrowed(word);
    }
    Cow::Owned(word[..shared].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefixes(query: &str) -> Vec<String> {
        needs(query)
            .into_iter()
            .map(|n| match n {
                Need::Term(t) => format!("={t}"),
                Need::Word { prefix, .. } => prefix,
            })
            .collect()
    }

    #[test]
    fn words_are_cut_to_the_stem_they_share_with_their_forms() {
        assert_eq!(prefixes("ВСТРЕЧИ"), ["встреч"]);
        assert_eq!(prefixes("встреча"), ["встреч"]);
        assert_eq!(prefixes("meeting"), ["meet"]);
        assert_eq!(prefixes("happy"), ["happ"], "the stem happi is not a beginning of happy");
        assert_eq!(prefixes("café"), ["cafe"]);
        assert_eq!(prefixes("caf"), ["caf"], "short words stay whole");
        assert_eq!(prefixes("kith2go"), ["kith2go"], "digits: no stemmer");
    }

    #[test]
    fn cjk_queries_need_their_pairs_and_lone_characters_themselves() {
        assert_eq!(prefixes("金曜日"), ["=金曜", "=曜日"]);
        assert_eq!(prefixes("会"), ["=会"]);
        assert_eq!(prefixes("🎉 party 🎉"), ["=🎉", "part"]);
    }

    #[test]
    fn a_need_matches_the_terms_that_begin_with_its_prefix() {
        let need = &needs("встречи")[0];
        assert!(need.matches("встреча"));
        assert!(need.matches("встречу"));
        assert!(!need.matches("встать"));
        assert!(needs("🎉")[0].matches("🎉"));
        assert!(!needs("🎉")[0].matches("🎉x"));
    }
}
