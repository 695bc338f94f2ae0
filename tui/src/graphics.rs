//! Which way pictures reach the screen: half-blocks, or a terminal graphics protocol
//! (kitty, sixel, iTerm2), chosen once at start-up.
//!
//! [`plan`] decides from the user's choice ([`ENV`], parsed by [`Choice::parse`]) and
//! the facts about the terminal ([`Terminal`]) whether to ask the terminal at all.
//! It is pure, so the rules are unit-tested without a terminal:
//!
//! - stdin or stdout not a terminal: half-blocks, nothing asked (a query would write
//!   escape sequences into a pipe and wait on input that never answers);
//! - `KITH_IMAGES=halfblocks`: half-blocks, nothing asked;
//! - inside tmux, unless a protocol is forced: half-blocks, nothing asked. Graphics
//!   through tmux need its passthrough (which ratatui-image switches on for the pane
//!   with `tmux set -p allow-passthrough on`), and tmux does not move or clear
//!   pictures when it redraws or switches windows, so they go stale;
//! - otherwise the terminal is asked ([`detect`]), and a forced protocol overrides
//!   its answer (the query still gives the cell size in pixels, which every protocol
//!   needs to size a picture).
//!
//! The query itself is ratatui-image's: it writes a few escape sequences and reads the
//! answers from stdin for at most [`QUERY_TIMEOUT`], ending early on the answer to a
//! status report every terminal gives. It must run before anything else reads the
//! terminal's input (the runtime calls it from `terminal::enter`, before the event
//! stream exists); any failure means half-blocks.

use std::io::IsTerminal;
use std::time::Duration;

use ratatui_image::picker::cap_parser::QueryStdioOptions;
use ratatui_image::picker::{Picker, ProtocolType};

/// The environment variable that forces how pictures are drawn: `auto` (the default),
/// `halfblocks`, `kitty`, `sixel` or `iterm`.
pub const ENV: &str = "KITH_IMAGES";

/// How long the start-up query may wait for the terminal's answers. A terminal
/// answers in milliseconds (over SSH, a round trip); one that does not answer at all
/// costs this much at every start, so it is short.
pub const QUERY_TIMEOUT: Duration = Duration::from_millis(1000);

/// How pictures are drawn.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Graphics {
    /// Coloured `▀` cells: every terminal with 24-bit colour, and the fallback.
    #[default]
    HalfBlocks,
    /// The kitty graphics protocol (kitty, Ghostty).
    Kitty,
    /// Sixel (foot, xterm with `-ti vt340`, mlterm, Windows Terminal, ...).
    Sixel,
    /// iTerm2's inline images (iTerm2, WezTerm, mintty, VS Code's terminal).
    Iterm,
}

impl Graphics {
    /// Whether this draws with terminal escape sequences outside ratatui's cells.
    pub fn is_protocol(self) -> bool {
        self != Graphics::HalfBlocks
    }

    /// The name [`ENV`] takes for it.
    pub fn name(self) -> &'static str {
        match self {
            Graphics::HalfBlocks => "halfblocks",
            Graphics::Kitty => "kitty",
            Graphics::Sixel => "sixel",
            Graphics::Iterm => "iterm",
        }
    }
}

/// What the user asked for in [`ENV`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Choice {
    /// Ask the terminal (half-blocks inside tmux).
    #[default]
    Auto,
    /// This, whatever the terminal says.
    Force(Graphics),
}

/// [`ENV`] holds something other than the names it takes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{ENV}={0:?} is not one of auto, halfblocks, kitty, sixel, iterm")]
pub struct UnknownChoice(pub String);

impl Choice {
    /// The choice [`ENV`]'s value names; unset or empty is [`Choice::Auto`]. Case and
    /// surrounding blanks do not matter; `half-blocks`, `blocks` and `iterm2` are
    /// accepted too.
    pub fn parse(value: Option<&str>) -> Result<Choice, UnknownChoice> {
        let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else { return Ok(Choice::Auto) };
        Ok(match value.to_ascii_lowercase().as_str() {
            "auto" => Choice::Auto,
            "halfblocks" | "half-blocks" | "blocks" => Choice::Force(Graphics::HalfBlocks),
            "kitty" => Choice::Force(Graphics::Kitty),
            "sixel" => Choice::Force(Graphics::Sixel),
            "iterm" | "iterm2" => Choice::Force(Graphics::Iterm),
            _ => return Err(UnknownChoice(value.to_owned())),
        })
    }
}

/// What [`plan`] needs to know about where the interface runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Terminal {
    /// Standard input is a terminal (the answers are read from it).
    pub stdin_tty: bool,
    /// Standard output is a terminal (the questions are written to it).
    pub stdout_tty: bool,
    /// Running inside tmux (`TMUX` set, or `TERM` starting with `tmux`, or
    /// `TERM_PROGRAM=tmux`).
    pub tmux: bool,
}

impl Terminal {
    /// The facts about this process's terminal and environment.
    pub fn current() -> Terminal {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Terminal {
            stdin_tty: std::io::stdin().is_terminal(),
            stdout_tty: std::io::stdout().is_terminal(),
            tmux: is_tmux(var("TMUX").as_deref(), var("TERM").as_deref(), var("TERM_PROGRAM").as_deref()),
        }
    }
}

/// Whether these environment variables say tmux: tmux sets `TMUX` in its panes,
/// `TERM` is `tmux-*` where configured so (often lost over SSH, where `TMUX` is not
/// passed either), and tmux 3.2 and later set `TERM_PROGRAM=tmux`.
fn is_tmux(tmux: Option<&str>, term: Option<&str>, term_program: Option<&str>) -> bool {
    tmux.is_some() || term.is_some_and(|t| t.starts_with("tmux")) || term_program == Some("tmux")
}

/// What to do at start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Draw half-blocks; ask the terminal nothing.
    HalfBlocks,
    /// Ask the terminal, and use `force` instead of its answer if set.
    Query {
        /// The protocol the user forced, if any.
        force: Option<Graphics>,
    },
}

/// What to do for `choice` on `terminal` (see the module header for the rules).
pub fn plan(choice: Choice, terminal: &Terminal) -> Plan {
    if !terminal.stdin_tty || !terminal.stdout_tty {
        return Plan::HalfBlocks;
    }
    match choice {
        Choice::Force(Graphics::HalfBlocks) => Plan::HalfBlocks,
        Choice::Force(forced) => Plan::Query { force: Some(forced) },
        Choice::Auto if terminal.tmux => Plan::HalfBlocks,
        Choice::Auto => Plan::Query { force: None },
    }
}

/// How pictures are drawn after start-up: the protocol and, for one, the picker
/// that encodes for it (which knows the cell size in pixels).
#[derive(Debug, Clone, Default)]
pub(crate) struct Detected {
    /// The protocol in use.
    pub(crate) graphics: Graphics,
    /// ratatui-image's encoder; `None` for half-blocks (drawn by `crate::picture`).
    pub(crate) picker: Option<Picker>,
}

/// Carry out `plan`: for [`Plan::Query`], ask the terminal (waiting at most
/// `timeout`). Blocks the calling thread for as long as the terminal takes; must run
/// with the terminal in raw mode and before anything else reads stdin. Never fails:
/// whatever goes wrong means half-blocks (and is logged).
pub(crate) fn detect(plan: Plan, timeout: Duration) -> Detected {
    let Plan::Query { force } = plan else { return Detected::default() };
    let options = QueryStdioOptions {
        timeout_ms: i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX),
        ..QueryStdioOptions::default()
    };
    let mut picker = match Picker::from_query_stdio_with_options(options) {
        Ok(picker) => picker,
        Err(error) => {
            tracing::info!(%error, "the terminal's graphics could not be queried; pictures in half-blocks");
            return Detected::default();
        }
    };
    let graphics = force.unwrap_or(match picker.protocol_type() {
        ProtocolType::Halfblocks => Graphics::HalfBlocks,
        ProtocolType::Kitty => Graphics::Kitty,
        ProtocolType::Sixel => Graphics::Sixel,
        ProtocolType::Iterm2 => Graphics::Iterm,
    });
    let protocol = match graphics {
        Graphics::HalfBlocks => return Detected::default(),
        Graphics::Kitty => ProtocolType::Kitty,
        Graphics::Sixel => ProtocolType::Sixel,
        Graphics::Iterm => ProtocolType::Iterm2,
    };
    picker.set_protocol_type(protocol);
    let font = picker.font_size();
    tracing::info!(graphics = graphics.name(), cell_px = ?(font.width, font.height), "pictures through the terminal's graphics");
    Detected { graphics, picker: Some(picker) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTY: Terminal = Terminal { stdin_tty: true, stdout_tty: true, tmux: false };
    const TMUX: Terminal = Terminal { tmux: true, ..TTY };

    #[test]
    fn the_variable_names_a_choice() {
        assert_eq!(Choice::parse(None), Ok(Choice::Auto));
        assert_eq!(Choice::parse(Some("")), Ok(Choice::Auto));
        assert_eq!(Choice::parse(Some(" auto ")), Ok(Choice::Auto));
        assert_eq!(Choice::parse(Some("halfblocks")), Ok(Choice::Force(Graphics::HalfBlocks)));
        assert_eq!(Choice::parse(Some("Half-Blocks")), Ok(Choice::Force(Graphics::HalfBlocks)));
        assert_eq!(Choice::parse(Some("KITTY")), Ok(Choice::Force(Graphics::Kitty)));
        assert_eq!(Choice::parse(Some("sixel")), Ok(Choice::Force(Graphics::Sixel)));
        assert_eq!(Choice::parse(Some("iterm2")), Ok(Choice::Force(Graphics::Iterm)));
        assert_eq!(Choice::parse(Some("iterm")), Ok(Choice::Force(Graphics::Iterm)));
        assert_eq!(Choice::parse(Some("png")), Err(UnknownChoice("png".into())));
        for graphics in [Graphics::HalfBlocks, Graphics::Kitty, Graphics::Sixel, Graphics::Iterm] {
            assert_eq!(Choice::parse(Some(graphics.name())), Ok(Choice::Force(graphics)));
        }
    }

    #[test]
    fn nothing_is_asked_unless_both_ends_are_a_terminal() {
        for terminal in [
            Terminal { stdin_tty: false, ..TTY },
            Terminal { stdout_tty: false, ..TTY },
            Terminal::default(),
        ] {
            for choice in [Choice::Auto, Choice::Force(Graphics::Kitty), Choice::Force(Graphics::Sixel)] {
                assert_eq!(plan(choice, &terminal), Plan::HalfBlocks, "{choice:?} on {terminal:?}");
            }
        }
    }

    #[test]
    fn tmux_gets_half_blocks_unless_a_protocol_is_forced() {
        assert_eq!(plan(Choice::Auto, &TMUX), Plan::HalfBlocks);
        assert_eq!(plan(Choice::Force(Graphics::Kitty), &TMUX), Plan::Query { force: Some(Graphics::Kitty) });
        assert_eq!(plan(Choice::Force(Graphics::HalfBlocks), &TMUX), Plan::HalfBlocks);
        assert!(is_tmux(Some("/tmp/tmux-1000/default,123,0"), Some("xterm-256color"), None));
        assert!(is_tmux(None, Some("tmux-256color"), None));
        assert!(is_tmux(None, Some("xterm-256color"), Some("tmux")));
        assert!(!is_tmux(None, Some("xterm-kitty"), Some("WezTerm")));
    }

    #[test]
    fn outside_tmux_the_terminal_is_asked() {
        assert_eq!(plan(Choice::Auto, &TTY), Plan::Query { force: None });
        assert_eq!(plan(Choice::Force(Graphics::Sixel), &TTY), Plan::Query { force: Some(Graphics::Sixel) });
        assert_eq!(plan(Choice::Force(Graphics::HalfBlocks), &TTY), Plan::HalfBlocks);
    }

    #[test]
    fn half_blocks_need_no_query() {
        // `detect` returns at once for half-blocks: it never touches stdin or stdout.
        let detected = detect(Plan::HalfBlocks, Duration::ZERO);
        assert_eq!(detected.graphics, Graphics::HalfBlocks);
        assert!(detected.picker.is_none());
    }
}
