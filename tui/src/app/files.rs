//! Files in conversations: `/file`, a pasted path, Ctrl+O on a file message, where
//! each file stands (from `files` answers, `file_progress` and `file_changed`
//! events) and the picture previews asked for.
//!
//! The state keeps an entry per file of the conversations looked at, seeded with the
//! `files` answer when a conversation's newest page arrives and kept current by
//! events; and a preview per picture in the open conversation's loaded window that
//! is on this machine (ours, or fetched), decoded off the loop. Both maps are
//! bounded: past their size, what the open conversation does not show is dropped.

use kith_p2p::files::is_image;
use kith_p2p::kith_storage::{Direction, FileState};
use kith_p2p::payload::MAX_TEXT_LEN;
use kith_p2p::views::{FileEntryView, FileView, MessageView};

use super::App;
use super::update::{bottom_message, jump_to_newest};
use crate::action::Effect;
use crate::commands::quote_path;
use crate::picture::Picture;
use crate::text;

/// Most file entries kept (a few hundred conversations' worth of files is plenty).
const FILES_MAX: usize = 4096;
/// Most picture previews kept, ready or on their way (each at most
/// 256×64 pixels, 48 KiB).
const PREVIEWS_MAX: usize = 32;

/// A picture's preview.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Preview {
    /// Being decoded.
    Loading,
    /// Decoded and shrunk.
    Ready(Picture),
    /// Could not be decoded (not a picture this can show, or unreadable).
    Failed,
}

/// Whether `entry` is on this machine, whole: ours, or fetched.
pub(super) fn local_path(entry: &FileEntryView) -> Option<&str> {
    match entry.state {
        FileState::Complete | FileState::Shared | FileState::Uploaded => entry.path.as_deref(),
        _ => None,
    }
}

/// The node's `files` answer for a conversation.
pub(super) fn on_files(app: &mut App, files: Vec<FileEntryView>, fx: &mut Vec<Effect>) {
    for entry in files {
        remember(app, entry);
    }
    want_previews(app, fx);
}

/// A file changed (fetched, saved, failed, or an attempt failed).
pub(super) fn on_file_changed(app: &mut App, entry: FileEntryView, fx: &mut Vec<Effect>) {
    let name = text::sanitize_line(&kith_p2p::files::safe_file_name(&entry.name));
    let shown = app.focused().is_some_and(|c| c.messages.iter().any(|m| m.id == entry.message));
    match entry.state {
        FileState::Complete if entry.direction == Direction::Incoming && shown => {
            let path = entry.path.as_deref().map(|p| text::tilde(p, app.home_dir())).unwrap_or_default();
            app.note(format!("received {name}: saved {path}"), false);
        }
        FileState::Failed => {
            let why = entry.error.clone().unwrap_or_else(|| "it does not open with its key".to_owned());
            app.set_status(format!("{name} failed: {why}"), true);
        }
        _ => {}
    }
    remember(app, entry);
    want_previews(app, fx);
}

/// The node no longer keeps file `id`: forget what was known of it.
pub(super) fn on_file_removed(app: &mut App, id: &str) {
    app.files.remove(id);
    app.progress.remove(id);
    app.previews.remove(id);
}

/// Bytes of file `id` held so far.
pub(super) fn on_progress(app: &mut App, id: String, have: u64) {
    if app.progress.len() >= FILES_MAX && !app.progress.contains_key(&id) {
        app.progress.clear();
    }
    app.progress.insert(id, have);
}

/// Keep `entry`, making room if needed.
fn remember(app: &mut App, entry: FileEntryView) {
    if entry.state != FileState::Downloading {
        app.progress.remove(&entry.id);
    }
    if let Some(Preview::Failed) = app.previews.get(&entry.id)
        && app.files.get(&entry.id).is_some_and(|old| old.path != entry.path)
    {
        // A new copy (saved again elsewhere) may decode.
        app.previews.remove(&entry.id);
    }
    if app.files.len() >= FILES_MAX && !app.files.contains_key(&entry.id) {
        let shown = shown_files(app);
        app.files.retain(|id, _| shown.contains(id));
    }
    app.files.insert(entry.id.clone(), entry);
}

/// The ids of the files in the open conversation's loaded window.
fn shown_files(app: &App) -> Vec<String> {
    let Some(conv) = app.focused() else { return Vec::new() };
    conv.messages.iter().filter_map(|m| m.file.as_ref().map(|f| f.id.clone())).collect()
}

/// Ask for the previews of the pictures in the open conversation's loaded window
/// that are on this machine and not asked for yet, newest first, within
/// [`PREVIEWS_MAX`] (dropping those no longer shown when full).
pub(super) fn want_previews(app: &mut App, fx: &mut Vec<Effect>) {
    if app.config.no_color {
        return;
    }
    let Some(conv) = app.focused() else { return };
    let wanted: Vec<(String, String)> = conv
        .messages
        .iter()
        .rev()
        .filter_map(|m| m.file.as_ref())
        .filter(|f| is_image(&f.media_type) && !app.previews.contains_key(&f.id))
        .filter_map(|f| app.files.get(&f.id).and_then(local_path).map(|p| (f.id.clone(), p.to_owned())))
        .collect();
    if wanted.is_empty() {
        return;
    }
    if app.previews.len() + wanted.len() > PREVIEWS_MAX {
        let shown = shown_files(app);
        app.previews.retain(|id, _| shown.contains(id));
    }
    for (id, path) in wanted {
        if app.previews.len() >= PREVIEWS_MAX {
            break;
        }
        app.previews.insert(id.clone(), Preview::Loading);
        fx.push(Effect::DecodePicture { id, path });
    }
}

/// A picture was decoded (`Some`) or could not be (`None`).
pub(super) fn on_picture(app: &mut App, id: String, picture: Option<Picture>) {
    // Only if still wanted (it may have been dropped meanwhile).
    if let Some(preview) = app.previews.get_mut(&id) {
        *preview = picture.map_or(Preview::Failed, Preview::Ready);
    }
}

/// `/file PATH [caption]`: send a file to the open conversation.
pub(super) fn send_file(app: &mut App, path: String, caption: Option<String>, fx: &mut Vec<Effect>) {
    let Some(contact) = app.focused.clone() else {
        app.set_status("no conversation open: open one to send the file to (Ctrl+K)", true);
        return;
    };
    if caption.as_ref().is_some_and(|c| c.len() > MAX_TEXT_LEN) {
        app.set_status(format!("the caption is too long: a message holds at most {} KiB", MAX_TEXT_LEN / 1024), true);
        return;
    }
    let name = path.rsplit('/').next().unwrap_or(&path).to_owned();
    app.set_status(format!("sending {}…", text::sanitize_line(&name)), false);
    jump_to_newest(app, fx);
    *app.sending.entry(contact.clone()).or_default() += 1;
    fx.push(Effect::SendFile { contact, path, caption });
}

/// The `/file` line a failed [`Effect::SendFile`] gives back to the input.
pub(super) fn file_command(path: &str, caption: Option<&str>) -> String {
    match caption {
        Some(caption) => format!("/file {} {caption}", quote_path(path)),
        None => format!("/file {}", quote_path(path)),
    }
}

/// A pasted path to a file: into an empty input it becomes `/file <path>`, which
/// Enter sends; anywhere else it is text like any paste.
pub(super) fn on_pasted_file(app: &mut App, path: &str, fx: &mut Vec<Effect>) {
    if app.overlay.is_none() && app.input.is_empty() && app.focused.is_some() && !super::changes::editing(app) {
        app.input.set_text(format!("/file {} ", quote_path(path)));
        app.set_status("Enter sends this file (type a caption after it first, if you like)", false);
    } else {
        super::user::on_paste(app, path, fx);
    }
}

/// The file message Ctrl+O (any file) and Ctrl+G (a picture) act on: the selected
/// message if its file is `wanted`, else the newest one whose file is at or above
/// the pane's bottom row (the last one in view, or the last one scrolled past).
pub(super) fn target(app: &App, wanted: impl Fn(&FileView) -> bool) -> Option<&MessageView> {
    let conv = app.focused()?;
    let is_wanted = |m: &&MessageView| m.file.as_ref().is_some_and(&wanted);
    let selected = conv.selected.as_ref().and_then(|id| conv.messages.iter().find(|m| m.id == *id));
    if let Some(m) = selected.filter(is_wanted) {
        return Some(m);
    }
    let bottom = bottom_message(app)?;
    conv.messages.iter().take(bottom + 1).rev().find(is_wanted)
}

/// Ctrl+O: fetch the file message in view, or open it when it is here (or say
/// where it is when nothing here opens files).
pub(super) fn open_or_fetch(app: &mut App, fx: &mut Vec<Effect>) {
    let Some((message_id, file)) = target(app, |_| true).and_then(|m| Some((m.id.clone(), m.file.clone()?))) else {
        app.set_status("no file message in view (scroll to one, then Ctrl+O)", true);
        return;
    };
    let name = text::sanitize_line(&kith_p2p::files::safe_file_name(&file.name));
    let entry = app.files.get(&file.id).cloned();
    if let Some(path) = entry.as_ref().and_then(local_path) {
        app.set_status(format!("opening {}…", text::tilde(path, app.home_dir())), false);
        fx.push(Effect::OpenFile { path: path.to_owned() });
        return;
    }
    match entry.as_ref().map(|e| e.state) {
        Some(FileState::Downloading) if entry.as_ref().is_some_and(|e| e.error.is_none()) => {
            let percent = app.file_progress(&file.id).map(|have| percent(have, file.size));
            let at = percent.map(|p| format!(": {p}%")).unwrap_or_default();
            app.set_status(format!("downloading {name}{at}"), false);
        }
        Some(FileState::Shared | FileState::Uploaded) => {
            app.set_status(format!("{name} is yours, but not on this machine any more"), true);
        }
        _ => {
            tracing::debug!(file = %file.id, message = %message_id, "fetching a file");
            app.set_status(format!("fetching {name}…"), false);
            fx.push(Effect::GetFile { id: file.id });
        }
    }
}

/// `have` of `size` bytes, in whole percent (100 only when complete).
pub fn percent(have: u64, size: u64) -> u64 {
    if size == 0 || have >= size { 100 } else { (u128::from(have) * 100 / u128::from(size)).min(99) as u64 }
}
