//! Putting the real terminal into TUI mode and back.
//!
//! [`enter`] switches to raw mode and the alternate screen, runs the caller's probe
//! of the terminal (the graphics query, which reads the terminal's answers from
//! stdin and so must come before anything else reads input), and turns on mouse
//! capture, bracketed paste, focus reports and (where the terminal supports it)
//! unambiguous key codes, so Shift+Enter and Esc can be told apart. The returned
//! guard undoes all of it when dropped, and a panic hook does the same before the
//! panic message is printed, so a crash never leaves the shell unusable.

use std::io::{self, Stdout, Write};
use std::panic::PanicHookInfo;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crossterm::event::{
    DisableBracketedPaste, DisableFocusChange, DisableMouseCapture, EnableBracketedPaste, EnableFocusChange,
    EnableMouseCapture, KeyboardEnhancementFlags, PopKeyboardEnhancementFlags, PushKeyboardEnhancementFlags,
};
use crossterm::terminal::{EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode};
use crossterm::{cursor, execute};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;

/// The terminal type the runtime draws on.
pub(crate) type Tui = Terminal<CrosstermBackend<Stdout>>;

type Hook = Box<dyn Fn(&PanicHookInfo<'_>) + Sync + Send + 'static>;

/// Whether the terminal is in TUI mode (the panic hook only restores then).
static ACTIVE: AtomicBool = AtomicBool::new(false);
/// Whether we pushed keyboard enhancement flags (to pop them again).
static ENHANCED: AtomicBool = AtomicBool::new(false);

/// Restores the terminal and the previous panic hook when dropped.
pub(crate) struct Guard {
    previous_hook: Arc<Mutex<Option<Hook>>>,
}

/// Enter TUI mode, running `probe` once the terminal is in raw mode on the
/// alternate screen and before mouse reports or anything else can arrive on stdin;
/// the guard leaves TUI mode.
///
/// Raw mode first, because the probe (ratatui-image's query) sets its own terminal
/// modes and does not put them back when the terminal does not answer in time: the
/// modes it would leave are then raw mode's, which the guard undoes. The alternate
/// screen first, because a terminal that does not understand a question may print
/// it, and the screen is cleared before the first frame.
pub(crate) fn enter<T>(probe: impl FnOnce() -> T) -> io::Result<(Tui, Guard, T)> {
    let previous_hook = Arc::new(Mutex::new(Some(std::panic::take_hook())));
    let for_hook = Arc::clone(&previous_hook);
    std::panic::set_hook(Box::new(move |info| {
        restore();
        if let Ok(hook) = for_hook.lock()
            && let Some(hook) = hook.as_ref()
        {
            hook(info);
        }
    }));
    let guard = Guard { previous_hook };
    ACTIVE.store(true, Ordering::SeqCst);
    enable_raw_mode()?;
    let mut stdout = io::stdout();
    execute!(stdout, EnterAlternateScreen)?;
    let probed = probe();
    execute!(stdout, EnableMouseCapture, EnableBracketedPaste, EnableFocusChange)?;
    if crossterm::terminal::supports_keyboard_enhancement().unwrap_or(false) {
        execute!(stdout, PushKeyboardEnhancementFlags(KeyboardEnhancementFlags::DISAMBIGUATE_ESCAPE_CODES))?;
        ENHANCED.store(true, Ordering::SeqCst);
    }
    let mut terminal = Terminal::new(CrosstermBackend::new(stdout))?;
    terminal.clear()?;
    Ok((terminal, guard, probed))
}

/// Whether the terminal is still in TUI mode (false after the panic hook restored it
/// because some task panicked: the loop must stop drawing).
pub(crate) fn is_active() -> bool {
    ACTIVE.load(Ordering::SeqCst)
}

/// Leave TUI mode if in it. Errors are ignored: this runs on the way out.
fn restore() {
    if !ACTIVE.swap(false, Ordering::SeqCst) {
        return;
    }
    let mut stdout = io::stdout();
    if ENHANCED.swap(false, Ordering::SeqCst) {
        let _ = execute!(stdout, PopKeyboardEnhancementFlags);
    }
    let _ = execute!(
        stdout,
        DisableFocusChange,
        DisableBracketedPaste,
        DisableMouseCapture,
        LeaveAlternateScreen,
        cursor::Show
    );
    let _ = disable_raw_mode();
    let _ = stdout.flush();
}

impl Drop for Guard {
    fn drop(&mut self) {
        restore();
        // Put the panic hook back as it was before `enter`.
        let previous = self.previous_hook.lock().ok().and_then(|mut h| h.take());
        if let Some(previous) = previous {
            drop(std::panic::take_hook());
            std::panic::set_hook(previous);
        }
    }
}

/// Ask the terminal to put `text` on the system clipboard (OSC 52, base64). Terminals
/// that do not support it ignore the sequence; tmux passes it on with `set-clipboard`.
pub(crate) fn copy(text: &str) {
    let mut stdout = io::stdout();
    let _ = stdout.write_all(osc52(text).as_bytes());
    let _ = stdout.flush();
}

/// The OSC 52 sequence that sets the clipboard (`c`) to `text`.
pub(crate) fn osc52(text: &str) -> String {
    use base64::Engine;
    format!("\x1b]52;c;{}\x07", base64::engine::general_purpose::STANDARD.encode(text))
}

/// Ring the terminal bell.
pub(crate) fn bell() {
    let mut stdout = io::stdout();
    let _ = stdout.write_all(b"\x07");
    let _ = stdout.flush();
}

#[cfg(test)]
mod tests {
    #[test]
    fn osc52_carries_the_text_in_base64() {
        assert_eq!(super::osc52("kith:abc"), "\x1b]52;c;a2l0aDphYmM=\x07");
    }
}
