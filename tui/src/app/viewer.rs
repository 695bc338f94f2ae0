//! The picture viewer: Ctrl+G shows the picture message in view over the message
//! pane, as large as the pane allows, through the terminal's graphics protocol
//! where it has one ([`crate::graphics`]), else in half-blocks.
//!
//! Why a viewer over the pane and not the protocol inline in the timeline: the pane
//! is rows of text, laid out again and moved by every scroll, and ratatui only
//! rewrites the cells that changed. A sixel or iTerm2 picture is drawn by escape
//! sequences onto a fixed rectangle of the screen: when the rows under it move its
//! pixels stay behind until something overwrites them, and a picture cut by the
//! pane's edge cannot be drawn at all. The viewer is a rectangle that does not
//! scroll, so the picture is encoded once for its size (off the loop:
//! [`Effect::EncodePicture`]), drawn whole, encoded again only when the pane's size
//! changes, and the runtime clears the screen when it goes. The previews in the
//! timeline stay half-blocks, which are cells and scroll like text.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use kith_p2p::files::{is_image, safe_file_name};

use super::files::{Preview, local_path, target};
use super::update::screen;
use super::{App, Overlay};
use crate::action::Effect;
use crate::picture::Encoded;
use crate::text;
use crate::ui::overlay::picture_area;

/// The picture viewer's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Viewer {
    /// The file's id.
    pub id: String,
    /// Its name, cleaned for the screen.
    pub name: String,
    /// Where it is on this machine.
    pub path: String,
    /// The room (columns, rows) the newest encoding was asked for, if one was.
    pub(crate) asked: Option<(u16, u16)>,
    /// The picture encoded for the terminal's graphics protocol, once it came; kept
    /// while a new one for a new size is on its way.
    pub encoded: Option<Encoded>,
    /// Why it could not be encoded.
    pub error: Option<String>,
}

/// Ctrl+G: show the picture message in view (the newest one at or above the pane's
/// bottom row), if it is here.
pub(super) fn open(app: &mut App, fx: &mut Vec<Effect>) {
    let file = target(app, |f| is_image(&f.media_type)).and_then(|m| m.file.clone());
    let Some(file) = file else {
        app.set_status("no picture in view (scroll to one, then Ctrl+G)", true);
        return;
    };
    let name = text::sanitize_line(&safe_file_name(&file.name));
    let Some(path) = app.files.get(&file.id).and_then(local_path).map(str::to_owned) else {
        app.set_status(format!("{name} is not here: Ctrl+O downloads it"), true);
        return;
    };
    let graphics = app.graphics;
    if !graphics.is_protocol() && app.config.no_color {
        app.set_status("pictures are drawn in colour, which is off (NO_COLOR)", true);
        return;
    }
    let id = file.id;
    if !graphics.is_protocol() && !app.previews.contains_key(&id) {
        // Dropped from the bounded previews meanwhile: decode it again.
        app.previews.insert(id.clone(), Preview::Loading);
        fx.push(Effect::DecodePicture { id: id.clone(), path: path.clone() });
    }
    let viewer = Viewer { id, name, path, asked: None, encoded: None, error: None };
    app.overlay = Some(Overlay::Picture(viewer));
    want_encoding(app, fx);
}

/// Ask for the open viewer's picture encoded for the room it has now, unless that
/// was asked for already (a graphics protocol only; half-blocks are drawn as is).
pub(super) fn want_encoding(app: &mut App, fx: &mut Vec<Effect>) {
    if !app.graphics.is_protocol() {
        return;
    }
    let inner = picture_area(screen(app), app).1;
    let room = (inner.width, inner.height);
    let Some(Overlay::Picture(viewer)) = &mut app.overlay else { return };
    if viewer.asked == Some(room) || room.0 == 0 || room.1 == 0 {
        return;
    }
    viewer.asked = Some(room);
    viewer.error = None;
    fx.push(Effect::EncodePicture { id: viewer.id.clone(), path: viewer.path.clone(), room });
}

/// An encoding came: shown if it is the one the open viewer asked for last.
pub(super) fn on_encoded(app: &mut App, id: &str, room: (u16, u16), picture: Encoded) {
    if let Some(Overlay::Picture(viewer)) = &mut app.overlay
        && viewer.id == id
        && viewer.asked == Some(room)
    {
        viewer.encoded = Some(picture);
        viewer.error = None;
    }
}

/// An encoding failed: the viewer says why, if it still waits for that picture at
/// that size (a failure of one asked for before a resize is not this one's).
pub(super) fn on_failed(app: &mut App, id: &str, room: (u16, u16), error: String) {
    if let Some(Overlay::Picture(viewer)) = &mut app.overlay
        && viewer.id == id
        && viewer.asked == Some(room)
    {
        viewer.error = Some(error);
    }
}

/// Keys while the viewer is open: Esc, Enter, q and Ctrl+G close it; Ctrl+O opens
/// the file with the system's opener.
pub(super) fn key(app: &mut App, key: KeyEvent, fx: &mut Vec<Effect>) {
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    match key.code {
        KeyCode::Esc | KeyCode::Enter | KeyCode::Char('q') => app.overlay = None,
        KeyCode::Char('g') if ctrl => app.overlay = None,
        KeyCode::Char('o') if ctrl => {
            if let Some(Overlay::Picture(viewer)) = app.overlay.take() {
                app.set_status(format!("opening {}…", text::tilde(&viewer.path, app.home_dir())), false);
                fx.push(Effect::OpenFile { path: viewer.path });
            }
        }
        _ => {}
    }
}
