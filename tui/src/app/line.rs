//! The keys of a one-line input: the quick switcher's query and the search's. One
//! place maps them to [`Input`] operations, so both overlays edit alike; each
//! overlay handles its own keys (choosing, closing) before asking this.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use crate::input::Input;

/// Apply `key` to `input` if it edits text or moves the cursor on one line: `None`
/// when it does neither (the caller's to handle), else whether the text changed.
pub(super) fn edit(input: &mut Input, key: KeyEvent) -> Option<bool> {
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    let alt = key.modifiers.contains(KeyModifiers::ALT);
    let moved = |input: &mut Input, step: fn(&mut Input)| {
        step(input);
        false
    };
    Some(match key.code {
        KeyCode::Backspace if ctrl || alt => input.delete_word_back(),
        KeyCode::Backspace => input.backspace(),
        KeyCode::Char('h') if ctrl => input.backspace(),
        KeyCode::Delete => input.delete(),
        KeyCode::Char('w') if ctrl => input.delete_word_back(),
        KeyCode::Char('u') if ctrl => input.delete_to_line_start(),
        KeyCode::Left if ctrl || alt => moved(input, Input::word_left),
        KeyCode::Right if ctrl || alt => moved(input, Input::word_right),
        KeyCode::Left => moved(input, Input::move_left),
        KeyCode::Right => moved(input, Input::move_right),
        KeyCode::Home => moved(input, Input::line_start),
        KeyCode::End => moved(input, Input::line_end),
        // Ctrl+Alt is AltGr on some systems.
        KeyCode::Char(c) if ctrl == alt => {
            input.insert_char(c);
            true
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode, modifiers: KeyModifiers) -> KeyEvent {
        KeyEvent::new(code, modifiers)
    }

    #[test]
    fn edits_say_whether_the_text_changed_and_other_keys_are_left_alone() {
        let mut input = Input::new();
        for c in "hello world".chars() {
            assert_eq!(edit(&mut input, key(KeyCode::Char(c), KeyModifiers::NONE)), Some(true));
        }
        assert_eq!(edit(&mut input, key(KeyCode::Left, KeyModifiers::CONTROL)), Some(false));
        assert_eq!(edit(&mut input, key(KeyCode::Backspace, KeyModifiers::NONE)), Some(true));
        assert_eq!(input.text(), "helloworld");
        assert_eq!(edit(&mut input, key(KeyCode::Home, KeyModifiers::NONE)), Some(false));
        assert_eq!(edit(&mut input, key(KeyCode::Backspace, KeyModifiers::NONE)), Some(false), "nothing before");
        assert_eq!(edit(&mut input, key(KeyCode::End, KeyModifiers::NONE)), Some(false));
        assert_eq!(edit(&mut input, key(KeyCode::Char('w'), KeyModifiers::CONTROL)), Some(true));
        assert_eq!(input.text(), "");
        assert_eq!(edit(&mut input, key(KeyCode::Char('@'), KeyModifiers::CONTROL | KeyModifiers::ALT)), Some(true));
        assert_eq!(input.text(), "@", "AltGr types");
        for code in [KeyCode::Enter, KeyCode::Esc, KeyCode::Up, KeyCode::Tab] {
            assert_eq!(edit(&mut input, key(code, KeyModifiers::NONE)), None);
        }
        assert_eq!(edit(&mut input, key(KeyCode::Char('k'), KeyModifiers::CONTROL)), None);
    }
}
