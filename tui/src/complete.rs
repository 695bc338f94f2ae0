//! Tab completion in the input, the weechat/irssi way: Tab completes the word before
//! the cursor, and pressing it again cycles through the other candidates (Shift+Tab
//! cycles back).
//!
//! [`candidates`] decides what the word can become from where it stands: the first
//! word of a `/command` completes to command names, the word after `/group` to its
//! subcommands, any other word to names (contacts, and the open group's members).
//! [`Completion`] remembers the candidates of the word being completed, so cycling
//! goes through the same list whatever the inserted text now looks like.

use std::ops::Range;

use crate::commands::{GROUP_NAMES, NAMES};
use crate::input::Input;

/// A completion in progress: where the completed word is and what it cycles through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// The bytes of the input the current candidate occupies (with its suffix).
    range: Range<usize>,
    /// What the word can become, each with its suffix, in cycling order.
    candidates: Vec<String>,
    /// The candidate shown.
    index: usize,
    /// The input's text right after the last step, to tell whether it was edited.
    after: String,
}

impl Completion {
    /// Start completing the word before the cursor of `input` with `names` (the
    /// people it may name); `backwards` starts at the last candidate. `None` when
    /// nothing matches.
    pub fn start(input: &mut Input, names: &[String], backwards: bool) -> Option<Completion> {
        let (range, candidates) = candidates(input.text(), input.cursor(), names)?;
        let index = if backwards { candidates.len() - 1 } else { 0 };
        let mut completion = Completion { range, candidates, index, after: String::new() };
        completion.show(input);
        Some(completion)
    }

    /// Whether `input` is as this completion left it (so Tab cycles on).
    pub fn continues(&self, input: &Input) -> bool {
        input.text() == self.after && input.cursor() == self.range.end
    }

    /// Show the next candidate (the previous one when `backwards`).
    pub fn cycle(&mut self, input: &mut Input, backwards: bool) {
        let n = self.candidates.len();
        self.index = if backwards { (self.index + n - 1) % n } else { (self.index + 1) % n };
        self.show(input);
    }

    fn show(&mut self, input: &mut Input) {
        let Some(candidate) = self.candidates.get(self.index) else { return };
        input.replace(self.range.clone(), candidate);
        self.range.end = self.range.start + candidate.len();
        self.after = input.text().to_owned();
    }
}

/// What the word ending at `cursor` in `text` can become: the bytes it spans and its
/// candidates (with the suffix to insert after each), or `None` when nothing matches.
pub fn candidates(text: &str, cursor: usize, names: &[String]) -> Option<(Range<usize>, Vec<String>)> {
    let before = text.get(..cursor)?;
    let start = before.char_indices().rev().find(|(_, c)| c.is_whitespace()).map_or(0, |(i, c)| i + c.len_utf8());
    let word = &before[start..];
    let command = text.starts_with('/') && !text.starts_with("//");
    let words_before: Vec<&str> = before[..start].split_whitespace().collect();
    let matching = |options: &mut dyn Iterator<Item = &str>, prefix: &str, suffix: &str| -> Vec<String> {
        let prefix = prefix.to_lowercase();
        let mut found: Vec<String> = Vec::new();
        for option in options {
            let candidate = format!("{option}{suffix}");
            if option.to_lowercase().starts_with(&prefix) && !found.contains(&candidate) {
                found.push(candidate);
            }
        }
        found
    };
    let found = match (command, words_before.as_slice()) {
        (true, []) => {
            let commands: Vec<String> = NAMES.iter().map(|n| format!("/{n}")).collect();
            matching(&mut commands.iter().map(String::as_str), word, " ")
        }
        (true, [group]) if group.eq_ignore_ascii_case("/group") => matching(&mut GROUP_NAMES.iter().copied(), word, " "),
        // A name at the start of a message addresses its person, as in IRC.
        (false, []) if !word.is_empty() => matching(&mut names.iter().map(String::as_str), word, ": "),
        _ if !word.is_empty() => matching(&mut names.iter().map(String::as_str), word, " "),
        _ => Vec::new(),
    };
    (!found.is_empty()).then_some((start..cursor, found))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        ["Алиса", "Alan Kay", "alice", "Bob 🎸"].iter().map(|s| (*s).to_owned()).collect()
    }

    fn complete(text: &str) -> Option<Vec<String>> {
        candidates(text, text.len(), &names()).map(|(_, c)| c)
    }

    #[test]
    fn completes_commands_subcommands_and_names() {
        assert_eq!(complete("/re"), Some(vec!["/read ".into(), "/reject ".into(), "/remove ".into(), "/rename ".into()]));
        assert_eq!(complete("/group m"), Some(vec!["members ".into()]));
        assert_eq!(complete("/block al"), Some(vec!["Alan Kay ".into(), "alice ".into()]));
        assert_eq!(complete("ал"), Some(vec!["Алиса: ".into()]), "case-insensitive, any script");
        assert_eq!(complete("see you, b"), Some(vec!["Bob 🎸 ".into()]));
        assert_eq!(complete("/zz"), None);
        assert_eq!(complete("hello "), None, "no word, nothing to complete");
        assert_eq!(complete("//ro"), None, "//text is a message");
    }

    #[test]
    fn tab_cycles_and_shift_tab_goes_back() {
        let mut input = Input::new();
        input.set_text("/block al");
        let mut completion = Completion::start(&mut input, &names(), false).expect("matches");
        assert_eq!(input.text(), "/block Alan Kay ");
        assert!(completion.continues(&input));
        completion.cycle(&mut input, false);
        assert_eq!(input.text(), "/block alice ");
        completion.cycle(&mut input, false);
        assert_eq!(input.text(), "/block Alan Kay ", "wraps around");
        completion.cycle(&mut input, true);
        assert_eq!(input.text(), "/block alice ");
        input.insert_char('x');
        assert!(!completion.continues(&input), "an edit ends it");
    }

    #[test]
    fn completes_in_the_middle_of_the_text() {
        let mut input = Input::new();
        input.set_text("ask b about it");
        for _ in 0.."about it".len() + 1 {
            input.move_left();
        }
        Completion::start(&mut input, &names(), false).expect("matches");
        assert_eq!(input.text(), "ask Bob 🎸  about it");
        assert_eq!(&input.text()[input.cursor()..], " about it");
    }
}
