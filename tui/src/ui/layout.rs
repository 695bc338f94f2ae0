//! Where each pane goes for a terminal size. Shared by the renderer and by the state
//! machine (mouse hit tests, page sizes), so both always agree.
//!
//! Plain `Rect` arithmetic, saturating everywhere: any size, down to 0×0, yields
//! areas inside the screen (possibly empty), never a panic.

use ratatui::layout::{Margin, Rect};

use crate::app::App;

/// Most rows the input box grows to.
const MAX_INPUT_ROWS: usize = 6;
/// Narrowest screen that still shows the conversation list next to the messages.
const LIST_MIN_SCREEN_WIDTH: u16 = 56;
/// Fewest rows left to the messages for the call bar (or the room bar, or the bar
/// above the input saying what it replies to or edits) to be shown.
const CALL_MIN_MAIN: u16 = 3;
/// Smallest screen that gets borders around panes.
const BORDER_MIN: (u16, u16) = (20, 10);

/// The panes of one frame.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Areas {
    /// Whether panes have borders (not on tiny screens).
    pub(crate) bordered: bool,
    /// The conversation list pane (empty when hidden).
    pub(crate) list: Rect,
    /// Inside the list's border.
    pub(crate) list_inner: Rect,
    /// The message pane.
    pub(crate) messages: Rect,
    /// Where message rows go.
    pub(crate) messages_inner: Rect,
    /// A title row above the messages when there are no borders.
    pub(crate) title: Rect,
    /// The input box.
    pub(crate) input: Rect,
    /// Where the input text goes.
    pub(crate) input_inner: Rect,
    /// The prompt before the input text when there are no borders.
    pub(crate) prompt: Rect,
    /// The status bar.
    pub(crate) status: Rect,
    /// The call bar above the input box, while a call is in progress (else empty).
    pub(crate) call: Rect,
    /// The room bar above the call bar, while we are in a voice room (else empty).
    pub(crate) room: Rect,
    /// The bar right above the input box saying what it replies to or edits, while
    /// it does (else empty).
    pub(crate) compose: Rect,
}

impl Areas {
    /// The panes for a screen `area` and the state `app` (the input's height
    /// follows its text).
    pub(crate) fn compute(area: Rect, app: &App) -> Areas {
        let mut a = Areas::default();
        if area.is_empty() {
            return a;
        }
        a.bordered = area.width >= BORDER_MIN.0 && area.height >= BORDER_MIN.1;
        let border = u16::from(a.bordered);
        let status_h = u16::from(area.height >= 2);
        let room = area.height - status_h;

        // The input box: as many rows as its text needs, within limits.
        let prompt_w = if a.bordered || area.width < 6 { 0 } else { 2 };
        let text_w = area.width.saturating_sub(2 * border + prompt_w);
        let wanted = app.input().layout(usize::from(text_w)).rows.len().clamp(1, MAX_INPUT_ROWS);
        let allowed = usize::from((room / 3).max(1));
        let rows = u16::try_from(wanted.min(allowed)).unwrap_or(1);
        let input_h = (rows + 2 * border).min(room);
        // What the input replies to or edits takes a row right above it (first: it
        // says what Enter does), a call one above that, and a voice room one above
        // that, if the messages keep a few.
        let composing = app.focused().is_some_and(|c| c.compose.is_some());
        let compose_h = u16::from(composing && room > input_h + CALL_MIN_MAIN);
        let call_h = u16::from(app.call().is_some() && room > input_h + compose_h + CALL_MIN_MAIN);
        let room_h = u16::from(app.room().is_some() && room > input_h + compose_h + call_h + CALL_MIN_MAIN);
        let main_h = room - input_h - compose_h - call_h - room_h;

        let main = Rect { height: main_h, ..area };
        a.room = Rect { y: area.y + main_h, height: room_h, ..area };
        a.call = Rect { y: area.y + main_h + room_h, height: call_h, ..area };
        a.compose = Rect { y: a.call.y + call_h, height: compose_h, ..area };
        a.input = Rect { y: a.compose.y + compose_h, height: input_h, ..area };
        a.status = Rect { y: a.input.y + input_h, height: status_h, ..area };
        if a.bordered {
            a.input_inner = a.input.inner(Margin::new(1, 1));
        } else {
            a.prompt = Rect { width: prompt_w, ..a.input };
            a.input_inner = Rect { x: a.input.x + prompt_w, width: a.input.width - prompt_w, ..a.input };
        }

        if a.bordered && area.width >= LIST_MIN_SCREEN_WIDTH && main_h >= 3 {
            let list_w = (area.width / 4).clamp(18, 30);
            a.list = Rect { width: list_w, ..main };
            a.list_inner = a.list.inner(Margin::new(1, 1));
            a.messages = Rect { x: main.x + list_w, width: main.width - list_w, ..main };
        } else {
            a.messages = main;
        }
        if a.bordered {
            a.messages_inner = a.messages.inner(Margin::new(1, 1));
        } else if a.messages.height >= 2 {
            a.title = Rect { height: 1, ..a.messages };
            a.messages_inner = Rect { y: a.messages.y + 1, height: a.messages.height - 1, ..a.messages };
        } else {
            a.messages_inner = a.messages;
        }
        a
    }
}
