//! The key bindings, as the help overlay lists them. The matching code is in
//! `update.rs`; keep the two in step.

use crate::commands::quit_help;

/// (keys, what they do), in the order the help overlay shows them, except quitting,
/// whose line [`bindings`] adds.
pub const BINDINGS: &[(&str, &str)] = &[
    ("Enter", "send the message or run the /command"),
    ("Alt+Enter, Shift+Enter, Ctrl+J", "new line"),
    ("Tab, Shift+Tab", "complete a /command, a name or a path (~/…); again: the next/previous candidate"),
    ("Ctrl+N, Alt+Down", "next conversation (each keeps its draft)"),
    ("Ctrl+P, Alt+Up", "previous conversation"),
    ("Ctrl+K", "quick switcher (type to filter, Enter opens)"),
    ("Ctrl+F", "search messages; Enter opens the one chosen"),
    ("Ctrl+O", "download the file in view, or open it if here"),
    ("Ctrl+G", "view the picture in view, sized to the pane"),
    ("PageUp, PageDown", "scroll messages; PageUp at the top loads older ones"),
    ("Ctrl+Up, Ctrl+Down", "select an older/newer message: /reply, /edit, /delete, /react act on it"),
    ("Ctrl+R", "reply to the selected message (none: the newest in view)"),
    ("Esc", "close the overlay; end a reply or edit; else unselect and jump to the newest message"),
    ("Enter or A, Esc or D", "on an incoming call: answer, decline"),
    ("Up, Down", "previous/next line; on the first/last line: input history"),
    ("Left, Right", "move by character"),
    ("Ctrl+Left/Right, Alt+B/F", "move by word"),
    ("Home, End, Ctrl+A, Ctrl+E", "start/end of the line"),
    ("Ctrl+Home, Ctrl+End", "start/end of the text"),
    ("Backspace, Delete", "delete a character"),
    ("Ctrl+W, Alt+Backspace", "delete the word before the cursor"),
    ("Alt+D, Ctrl+Delete", "delete the word after the cursor"),
    ("Ctrl+U", "delete to the start of the line"),
    ("Mouse wheel", "scroll the pane under the pointer"),
    ("Click", "open a conversation"),
    ("F1, ? (on empty input)", "this help"),
    ("F2", "the log of notices and errors"),
];

/// Every binding's help line, in order, for an interface that does or does not run
/// the node itself (quitting stops a node the interface runs).
pub fn bindings(runs_node: bool) -> Vec<(&'static str, &'static str)> {
    let mut lines = BINDINGS.to_vec();
    lines.push(("Ctrl+C, Ctrl+Q", quit_help(runs_node)));
    lines
}
