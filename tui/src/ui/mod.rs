//! Rendering: a pure function of [`App`] into a ratatui [`Frame`].
//!
//! [`render`] draws the conversation list, the message pane, the room bar (in a
//! voice room), the call bar (during a call), the bar saying what the input
//! replies to or edits, the input box, the status bar and any
//! overlay (the search's in `search.rs`, the profile's in `profile.rs`, the safety number's in `verify.rs`), and places the cursor. It
//! reads the state and never changes it, so the same state always draws the same
//! screen (the snapshot tests rely on this). Every size works, down to 0×0: panes
//! shrink, then disappear.

mod call;
pub(crate) mod layout;
pub(crate) mod list;
pub(crate) mod messages;
pub(crate) mod overlay;
mod profile;
pub(crate) mod timeline;
mod verify;

mod input;
mod room;
pub(crate) mod search;
pub(crate) mod status;
pub(crate) mod theme;

use ratatui::Frame;

use crate::app::{App, Overlay};
use layout::Areas;
use theme::Theme;

/// Draw the whole interface for `app` into `frame`.
pub fn render(frame: &mut Frame, app: &App) {
    let area = frame.area();
    if area.is_empty() {
        return;
    }
    let theme = Theme::new(app.config().no_color);
    let areas = Areas::compute(area, app);
    list::render(frame, app, areas.list, areas.list_inner, &theme);
    messages::render(frame, app, &areas, &theme);
    let input_cursor = input::render(frame, app, &areas, &theme);
    status::render(frame, app, areas.status, &theme);
    room::render_bar(frame, app, areas.room, &theme);
    call::render_bar(frame, app, areas.call, &theme);
    input::render_bar(frame, app, areas.compose, &theme);
    let cursor = match app.overlay() {
        None => input_cursor,
        Some(Overlay::Help { scroll }) => {
            overlay::render_help(frame, area, *scroll, app.config().runs_node, &theme);
            None
        }
        Some(Overlay::Switcher(switcher)) => overlay::render_switcher(frame, app, switcher, area, &theme),
        Some(Overlay::Search(search)) => search::render(frame, app, search, area, &theme),
        Some(Overlay::Invite(view)) => {
            overlay::render_invite(frame, view, area, &theme);
            None
        }
        Some(Overlay::Log { scroll }) => {
            overlay::render_log(frame, app, area, *scroll, &theme);
            None
        }
        Some(Overlay::Picture(viewer)) => {
            overlay::render_picture(frame, app, viewer, area, &theme);
            None
        }
        Some(Overlay::IncomingCall { peer, .. }) => {
            call::render_incoming(frame, app, peer, area, &theme);
            None
        }
        Some(Overlay::Confirm(confirm)) => {
            overlay::render_confirm(frame, confirm, area, &theme);
            None
        }
        Some(Overlay::Profile(card)) => {
            profile::render(frame, app, card, area, &theme);
            None
        }
        Some(Overlay::Verify(card)) => {
            verify::render(frame, app, card, area, &theme);
            None
        }
    };
    if let Some(position) = cursor
        && area.contains(position)
    {
        frame.set_cursor_position(position);
    }
}
