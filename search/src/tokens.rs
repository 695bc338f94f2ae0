//! How text becomes index terms, the same way for messages and for queries.
//!
//! - Words (runs of letters and digits) are lower-cased and folded: Latin
//!   letters lose their diacritics (`café` → `cafe`, `Ångström` →
//!   `angstrom`, `ß` → `ss`), Cyrillic `ё` becomes `е`. Other scripts keep
//!   their marks (`й` stays `й`; Japanese voiced kana stay voiced).
//! - Chinese, Japanese and Korean have no spaces between words, so a run of
//!   their characters gives every character and every pair of neighbours
//!   (`金曜日` → `金`, `金曜`, `曜`, `曜日`, `日`): a query of one character finds
//!   it anywhere, a longer one finds its pairs in order.
//! - Each emoji is a term of its own (without skin tone or presentation
//!   selectors); other punctuation and symbols are dropped.
//!
//! No stop words: in chat, a short word may be exactly what someone looks for.

use tantivy::tokenizer::{Token as TantivyToken, TokenStream, Tokenizer};

/// The name the index's text field is tokenized under.
pub(crate) const TOKENIZER: &str = "kith";

/// What kind of text a token came from; queries treat each differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A word of letters or digits (folded).
    Word,
    /// One CJK character.
    CjkChar,
    /// Two neighbouring CJK characters.
    CjkPair,
    /// One emoji.
    Emoji,
}

/// A term with where it lies in the text (byte offsets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// The folded term.
    pub text: String,
    /// Byte offset of its start in the original text.
    pub from: usize,
    /// Byte offset just past its end.
    pub to: usize,
    /// What it is.
    pub kind: Kind,
}

/// Whether `c` is written without spaces between words (Han, kana, Hangul).
pub(crate) fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30FF      // hiragana, katakana
        | 0x31F0..=0x31FF    // katakana phonetic extensions
        | 0x3400..=0x4DBF    // Han extension A
        | 0x4E00..=0x9FFF    // Han
        | 0xAC00..=0xD7AF    // Hangul syllables
        | 0xF900..=0xFAFF    // Han compatibility
        | 0xFF66..=0xFF9F    // half-width katakana
        | 0x20000..=0x2FA1F) // Han extensions B and later
}

/// Whether `c` is an emoji base character (not a modifier or selector).
fn is_emoji(c: char) -> bool {
    matches!(c as u32,
        0x2300..=0x23FF | 0x2600..=0x27BF | 0x2B00..=0x2BFF | 0x1F000..=0x1F3FA | 0x1F400..=0x1FAFF)
}

/// Pushes `c`, lower-cased and folded, onto `word`.
fn push_folded(word: &mut String, c: char) {
    for l in c.to_lowercase() {
        match l {
            'ß' => word.push_str("ss"),
            'æ' => word.push_str("ae"),
            'œ' => word.push_str("oe"),
            'ø' => word.push('o'),
            'ł' => word.push('l'),
            'đ' | 'ð' => word.push('d'),
            'þ' => word.push_str("th"),
            'ı' => word.push('i'),
            'ё' => word.push('е'),
            _ => word.push(latin_base(l)),
        }
    }
}

/// Latin letters with diacritics and, at the same places, their base letters.
const LATIN_FROM: &str = "àáâãäåāăąçćĉċčďèéêëēĕėęěĝğġģĥħìíîïĩīĭįĵķĺļľŀñńņňŉòóôõöōŏőŕŗřśŝşšţťŧùúûüũūŭůűųŵýÿŷźżžǎǐǒǔǘǚǜșțẁẃẅạảấầẩẫậắằẳẵặẹẻẽếềểễệỉịọỏốồổỗộớờởỡợụủứừửữựỳỵỷỹ";
const LATIN_TO: &str = "aaaaaaaaacccccdeeeeeeeeegggghhiiiiiiiijkllllnnnnnoooooooorrrsssstttuuuuuuuuuuwyyyzzzaiouuuustwwwaaaaaaaaaaaaeeeeeeeeiioooooooooooouuuuuuuyyyy";

/// The base letter of a lower-case Latin letter with diacritics (itself otherwise).
fn latin_base(c: char) -> char {
    if c.is_ascii() || !(('\u{00C0}'..='\u{024F}').contains(&c) || ('\u{1E00}'..='\u{1EFF}').contains(&c)) {
        return c;
    }
    LATIN_FROM.chars().zip(LATIN_TO.chars()).find(|&(f, _)| f == c).map_or(c, |(_, t)| t)
}

/// The terms of `text`, in order.
pub fn tokens(text: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut word_from = 0;
    let mut previous_cjk: Option<(usize, char)> = None;
    let end_word = |out: &mut Vec<Token>, word: &mut String, from: usize, to: usize| {
        if !word.is_empty() {
            out.push(Token { text: std::mem::take(word), from, to, kind: Kind::Word });
        }
    };
    for (at, c) in text.char_indices() {
        // Most text is ASCII: decided without the Unicode tables, the same way.
        if c.is_ascii() {
            previous_cjk = None;
            if c.is_ascii_alphanumeric() {
                if word.is_empty() {
                    word_from = at;
                }
                word.push(c.to_ascii_lowercase());
            } else {
                end_word(&mut out, &mut word, word_from, at);
            }
            continue;
        }
        let next = at + c.len_utf8();
        if is_cjk(c) {
            end_word(&mut out, &mut word, word_from, at);
            out.push(Token { text: c.to_string(), from: at, to: next, kind: Kind::CjkChar });
            if let Some((pat, pc)) = previous_cjk {
                out.push(Token { text: format!("{pc}{c}"), from: pat, to: next, kind: Kind::CjkPair });
            }
            previous_cjk = Some((at, c));
            continue;
        }
        previous_cjk = None;
        if c.is_alphanumeric() {
            if word.is_empty() {
                word_from = at;
            }
            push_folded(&mut word, c);
        } else if is_combining_mark(c) && !word.is_empty() {
            // A decomposed accent (e + U+0301): part of the word, folded away.
        } else {
            end_word(&mut out, &mut word, word_from, at);
            if is_emoji(c) {
                out.push(Token { text: c.to_string(), from: at, to: next, kind: Kind::Emoji });
            }
        }
    }
    end_word(&mut out, &mut word, word_from, text.len());
    out
}

/// Combining diacritical marks, as decomposed text writes accents.
fn is_combining_mark(c: char) -> bool {
    ('\u{0300}'..='\u{036F}').contains(&c)
}

/// The tokenizer registered with tantivy for the text field.
#[derive(Clone, Default)]
pub(crate) struct KithTokenizer;

/// A message's tokens handed to tantivy one by one.
pub(crate) struct KithTokenStream {
    tokens: Vec<TantivyToken>,
    at: usize,
}

impl Tokenizer for KithTokenizer {
    type TokenStream<'a> = KithTokenStream;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> KithTokenStream {
        let tokens = tokens(text)
            .into_iter()
            .enumerate()
            .map(|(position, t)| TantivyToken {
                offset_from: t.from,
                offset_to: t.to,
                position,
                text: t.text,
                position_length: 1,
            })
            .collect();
        KithTokenStream { tokens, at: 0 }
    }
}

impl TokenStream for KithTokenStream {
    fn advance(&mut self) -> bool {
        if self.at < self.tokens.len() {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn token(&self) -> &TantivyToken {
        &self.tokens[self.at.saturating_sub(1).min(self.tokens.len().saturating_sub(1))]
    }

    fn token_mut(&mut self) -> &mut TantivyToken {
        let at = self.at.saturating_sub(1).min(self.tokens.len().saturating_sub(1));
        &mut self.tokens[at]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms(text: &str) -> Vec<String> {
        tokens(text).into_iter().map(|t| t.text).collect()
    }

    #[test]
    fn words_are_lower_cased_and_latin_diacritics_folded() {
        assert_eq!(terms("Café CRÈME, Ångström straße"), ["cafe", "creme", "angstrom", "strasse"]);
        assert_eq!(terms("Встреча в пятницу, ЁЖ"), ["встреча", "в", "пятницу", "еж"]);
        assert_eq!(terms("йогурт"), ["йогурт"], "й is a letter of its own in Russian");
        assert_eq!(terms("cafe\u{301} ok"), ["cafe", "ok"], "a decomposed accent folds too");
        assert_eq!(terms("v2.0 rc1"), ["v2", "0", "rc1"]);
        // A word of ASCII and other letters is one word, with byte offsets.
        let t = tokens("Grüße, OK");
        assert_eq!((t[0].text.as_str(), t[0].from, t[0].to), ("grusse", 0, 7));
        assert_eq!((t[1].text.as_str(), t[1].from, t[1].to), ("ok", 9, 11));
    }

    #[test]
    fn every_folded_letter_has_its_base() {
        assert_eq!(LATIN_FROM.chars().count(), LATIN_TO.chars().count());
        for (accented, base) in LATIN_FROM.chars().zip(LATIN_TO.chars()) {
            assert_eq!(latin_base(accented), base);
            assert!(base.is_ascii_lowercase(), "{accented} → {base}");
        }
    }

    #[test]
    fn cjk_runs_give_characters_and_neighbouring_pairs() {
        assert_eq!(terms("金曜日"), ["金", "曜", "金曜", "日", "曜日"]);
        assert_eq!(terms("会議はabc"), ["会", "議", "会議", "は", "議は", "abc"]);
        let t = tokens("x 会議");
        assert_eq!((t[3].from, t[3].to, t[3].kind), (2, 8, Kind::CjkPair));
    }

    #[test]
    fn emoji_are_terms_without_modifiers() {
        assert_eq!(terms("party 🎉!"), ["party", "🎉"]);
        assert_eq!(terms("❤️👍🏽"), ["❤", "👍"], "presentation selector and skin tone dropped");
        assert_eq!(terms("a → b"), ["a", "b"], "arrows are not emoji");
    }

    #[test]
    fn the_stream_hands_tantivy_every_token_with_its_offsets() {
        let mut tokenizer = KithTokenizer;
        let mut stream = tokenizer.token_stream("Hello 世界");
        let mut seen = Vec::new();
        while stream.advance() {
            let t = stream.token();
            seen.push((t.text.clone(), t.offset_from, t.position));
        }
        assert_eq!(seen[0], ("hello".to_owned(), 0, 0));
        assert_eq!(seen.len(), 4);
        assert!(!stream.advance());
    }
}
