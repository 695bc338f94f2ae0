//! Tab completion in the input, the weechat/irssi way: Tab completes the word before
//! the cursor, and pressing it again cycles through the other candidates (Shift+Tab
//! cycles back).
//!
//! [`candidates`] decides what the word can become from where it stands: the first
//! word of a `/command` completes to command names, the word after `/group` or
//! `/room` to its subcommands, any other word to names (contacts, and the open
//! group's members).
//! [`Completion`] remembers the candidates of the word being completed, so cycling
//! goes through the same list whatever the inserted text now looks like.
//!
//! A word that looks like a path (`~/`, `./`, `../`, or `/` past the first word)
//! completes to files: [`path_word`] spots it, the runtime lists the directory off
//! the loop with [`list_paths`] and the state machine completes with the answer
//! ([`Completion::with`]), so `update` itself never touches the file system.

use std::ops::Range;
use std::path::Path;

use crate::commands::{GROUP_NAMES, NAMES, ROOM_NAMES};
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

    /// Start completing the bytes `range` of `input` with `candidates` (from
    /// [`list_paths`]); `None` when there are none or the input no longer has `range`.
    pub fn with(input: &mut Input, range: Range<usize>, candidates: Vec<String>, backwards: bool) -> Option<Completion> {
        if candidates.is_empty() || input.text().get(range.clone()).is_none() {
            return None;
        }
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
    let command = crate::commands::is_command(text);
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
        (true, [room]) if room.eq_ignore_ascii_case("/room") => matching(&mut ROOM_NAMES.iter().copied(), word, " "),
        // A name at the start of a message addresses its person, as in IRC.
        (false, []) if !word.is_empty() => matching(&mut names.iter().map(String::as_str), word, ": "),
        _ if !word.is_empty() => matching(&mut names.iter().map(String::as_str), word, " "),
        _ => Vec::new(),
    };
    (!found.is_empty()).then_some((start..cursor, found))
}

/// Most files a path completes to: the first in name order of those read.
const PATHS_MAX: usize = 200;

/// Most directory entries read for one completion: a huge directory is cut here
/// (completing in it offers the best of what was read) so a Tab costs a bounded
/// amount of work.
const ENTRIES_MAX: usize = 20_000;

/// The word before `cursor` if it looks like a path: `~/`, `./`, `../` anywhere,
/// `/` past the first word (a first word with `/` is a command), or any word right
/// after `/file` (whose argument is a path, relative ones included).
pub fn path_word(text: &str, cursor: usize) -> Option<Range<usize>> {
    let before = text.get(..cursor)?;
    let start = before.char_indices().rev().find(|(_, c)| c.is_whitespace()).map_or(0, |(i, c)| i + c.len_utf8());
    let word = &before[start..];
    let mut words_before = before[..start].split_whitespace();
    let file_argument = words_before.next().is_some_and(|w| w.eq_ignore_ascii_case("/file")) && words_before.next().is_none();
    let path = ["~/", "./", "../"].iter().any(|p| word.starts_with(p)) || (word.starts_with('/') && start > 0);
    (path || file_argument).then_some(start..cursor)
}

/// The files `word` (a path as typed, `~/` for `home`) can complete to, in name
/// order: directories with a `/` after them, files with a space. Hidden files only
/// when the typed name starts with a dot. Reads at most [`ENTRIES_MAX`] entries and
/// asks the file system about an entry only when it is a symbolic link (whether it
/// leads to a directory). Reads the file system: call it off the interface's loop.
pub fn list_paths(word: &str, home: Option<&Path>) -> Vec<String> {
    list_paths_within(word, home, ENTRIES_MAX)
}

/// [`list_paths`], reading at most `entries_max` directory entries.
fn list_paths_within(word: &str, home: Option<&Path>, entries_max: usize) -> Vec<String> {
    let (dir, prefix) = match word.rfind('/') {
        Some(i) => (&word[..=i], &word[i + 1..]),
        None => ("", word),
    };
    let on_disk = match (dir.strip_prefix("~/"), home) {
        (Some(rest), Some(home)) => home.join(rest),
        (Some(_), None) => return Vec::new(),
        // A bare name is in the working directory.
        (None, _) if dir.is_empty() => Path::new(".").to_path_buf(),
        (None, _) => Path::new(dir).to_path_buf(),
    };
    let Ok(entries) = std::fs::read_dir(&on_disk) else { return Vec::new() };
    let mut found: Vec<(String, bool)> = Vec::new();
    for entry in entries.take(entries_max).filter_map(Result::ok) {
        let Ok(name) = entry.file_name().into_string() else { continue };
        if !name.starts_with(prefix) || (name.starts_with('.') && !prefix.starts_with('.')) {
            continue;
        }
        // The type comes with the entry on most systems; only a symbolic link needs
        // a look at what it leads to.
        let Ok(kind) = entry.file_type() else { continue };
        let is_dir = kind.is_dir() || (kind.is_symlink() && entry.path().is_dir());
        found.push((name, is_dir));
        // Keep the best PATHS_MAX, sorting now and then rather than holding them all.
        if found.len() >= 2 * PATHS_MAX {
            found.sort();
            found.truncate(PATHS_MAX);
        }
    }
    found.sort();
    found.truncate(PATHS_MAX);
    found.into_iter().map(|(name, is_dir)| format!("{dir}{name}{}", if is_dir { "/" } else { " " })).collect()
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
        let re = ["/react ", "/read ", "/reject ", "/remove ", "/rename ", "/reply "];
        assert_eq!(complete("/re"), Some(re.iter().map(|c| (*c).to_owned()).collect()));
        assert_eq!(complete("/del"), Some(vec!["/delete ".into(), "/delete-all ".into()]));
        assert_eq!(complete("/group m"), Some(vec!["members ".into()]));
        assert_eq!(complete("/ro"), Some(vec!["/room ".into()]));
        assert_eq!(complete("/room l"), Some(vec!["leave ".into()]));
        assert_eq!(complete("/ROOM "), Some(vec!["join ".into(), "leave ".into(), "mute ".into()]));
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
    fn spots_paths_and_lists_them() {
        assert_eq!(path_word("see ~/Do", 8), Some(4..8));
        assert_eq!(path_word("/add ./inv", 10), Some(5..10));
        assert_eq!(path_word("look at /tmp", 12), Some(8..12));
        assert_eq!(path_word("/gro", 4), None, "a first word with / is a command");
        assert_eq!(path_word("hello", 5), None);
        assert_eq!(path_word("/file ca", 8), Some(6..8), "/file takes a path, relative too");
        assert_eq!(path_word("/file ", 6), Some(6..6));
        assert_eq!(path_word("/file cat.png capt", 18), None, "the caption is not a path");

        let dir = std::env::temp_dir().join(format!("kith-complete-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("notes")).expect("temp dir");
        for file in ["notes.txt", "nope", ".hidden"] {
            std::fs::write(dir.join(file), b"").expect("temp file");
        }
        let typed = format!("{}/no", dir.display());
        let found = list_paths(&typed, None);
        let base = dir.display();
        assert_eq!(found, vec![format!("{base}/nope "), format!("{base}/notes/"), format!("{base}/notes.txt ")]);
        assert_eq!(list_paths(&format!("{base}/."), None), vec![format!("{base}/.hidden ")]);
        assert_eq!(list_paths("~/notes", Some(&dir)), vec!["~/notes/".to_owned(), "~/notes.txt ".to_owned()]);
        assert!(list_paths(&format!("{base}/missing/x"), None).is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_big_directory_is_read_only_so_far_and_cut_to_the_first_names() {
        let dir = std::env::temp_dir().join(format!("kith-complete-big-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        // Created in reverse so the cut cannot rely on the directory's own order.
        for n in (0..PATHS_MAX * 3).rev() {
            std::fs::write(dir.join(format!("f{n:04}")), b"").expect("temp file");
        }
        std::os::unix::fs::symlink(&dir, dir.join("link")).expect("symlink");
        let base = dir.display();
        let found = list_paths(&format!("{base}/f"), None);
        assert_eq!(found.len(), PATHS_MAX);
        let expected: Vec<String> = (0..PATHS_MAX).map(|n| format!("{base}/f{n:04} ")).collect();
        assert_eq!(found, expected, "the first names of all, not of the first read");
        // A symbolic link to a directory completes as one.
        assert_eq!(list_paths(&format!("{base}/li"), None), vec![format!("{base}/link/")]);
        // Reading stops after the bound: at most that many entries are considered.
        assert!(list_paths_within(&format!("{base}/f"), None, 10).len() <= 10);
        let _ = std::fs::remove_dir_all(&dir);
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
