//! The search overlay (Ctrl+F, `/search [words]`): a query line over the messages
//! the node finds for it, best first; Enter shows the chosen one in its
//! conversation (`update::show_message`), Esc closes without moving.
//!
//! Searching follows typing. Every edit starts a wait of [`DEBOUNCE`]
//! ([`Effect::SearchAfter`], which a newer edit replaces); when it ends
//! ([`Action::SearchDue`](crate::action::Action::SearchDue) for the latest edit) the
//! query goes to the node ([`Effect::Search`]), one request at a time: a query due
//! while another is in flight goes when that one is answered. An answer is shown
//! only if it answers what the overlay asks now (the words and the scope); any other
//! is stale and dropped. Enter on results that are not for the query as it stands
//! searches at once instead of opening a hit. The results shown stay while the next
//! ones are on their way, so typing never blanks the list.

use std::time::Duration;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use kith_p2p::search::SearchHitView;
use kith_p2p::views::MessageView;

use super::{App, Overlay};
use crate::action::Effect;
use crate::input::Input;

/// How long after the last edit the query goes to the node: a word typed at speed
/// costs one search, not one per letter, and results still follow within a blink.
pub const DEBOUNCE: Duration = Duration::from_millis(250);

/// Hits asked for (and kept, whatever a node sends): more than a screen holds, few
/// enough that an answer of long messages stays small.
pub const LIMIT: usize = 50;

/// Bytes of a query kept (a paste is cut): far more words than a search needs, and
/// far under the control socket's line limit, which would cost the connection.
const MAX_QUERY: usize = 1024;

/// One message a search found: the node's `SearchHitView` without its score (hits
/// come best first, which is all the overlay uses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchHit {
    /// The message, with its conversation, author and time.
    pub message: MessageView,
    /// The text around the match on one line, as the node sent it: peer text, not
    /// yet sanitised.
    pub snippet: String,
    /// Byte ranges `[start, end)` of `snippet` that matched, as the node sent them:
    /// checked before any use (`ui::search::runs`), since a node can send anything.
    pub marks: Vec<[usize; 2]>,
}

impl From<SearchHitView> for SearchHit {
    fn from(hit: SearchHitView) -> SearchHit {
        SearchHit { message: hit.message, snippet: hit.snippet, marks: hit.marks }
    }
}

/// What a search asks the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchQuery {
    /// The words, as typed (trimmed).
    pub text: String,
    /// Only this conversation: a contact's peer id or a group id.
    pub within: Option<String>,
}

/// The node's answer to a [`SearchQuery`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchResults {
    /// The messages found, best first (none: nothing matches).
    Hits(Vec<SearchHit>),
    /// Why the search failed (a query of punctuation only, say), for the overlay.
    Failed(String),
}

/// The search overlay's state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Search {
    /// What was typed.
    pub query: Input,
    /// The conversation open when the search opened: what Tab narrows it to.
    pub here: Option<String>,
    /// Whether only `here` is searched (Tab toggles).
    pub only_here: bool,
    /// The answer shown and the query it answers; `None` before the first.
    pub shown: Option<(SearchQuery, SearchResults)>,
    /// The hit chosen (an index into the hits shown).
    pub selected: usize,
    /// Edits so far: a wait that ends after a newer edit is stale.
    edits: u64,
    /// The wait for the latest edit ended (or Enter was pressed) while another
    /// search was in flight: ask once it is answered.
    due: bool,
}

impl Search {
    /// What the overlay asks now; `None` while the query is only spaces.
    pub fn wanted(&self) -> Option<SearchQuery> {
        let text = self.query.text().trim();
        let within = if self.only_here { self.here.clone() } else { None };
        (!text.is_empty()).then(|| SearchQuery { text: text.to_owned(), within })
    }

    /// Whether the answer shown is for the query as it stands.
    pub fn is_current(&self) -> bool {
        let wanted = self.wanted();
        wanted.is_some() && self.shown.as_ref().map(|(query, _)| query) == wanted.as_ref()
    }

    /// The hits shown (those of an older query until the next answer comes; none
    /// while the query is empty).
    pub fn hits(&self) -> &[SearchHit] {
        match &self.shown {
            Some((_, SearchResults::Hits(hits))) if !self.query.text().trim().is_empty() => hits,
            _ => &[],
        }
    }
}

/// Open the overlay over the open conversation; with `words` (`/search words`),
/// search for them at once.
pub(super) fn open(app: &mut App, words: Option<String>, fx: &mut Vec<Effect>) {
    let mut search = Search { here: app.focused.clone(), ..Search::default() };
    if let Some(words) = words {
        search.query.set_text(capped(&one_line(&words)));
    }
    app.overlay = Some(Overlay::Search(search));
    want(app, fx);
}

/// A key while the overlay is open.
pub(super) fn key(app: &mut App, key: KeyEvent, fx: &mut Vec<Effect>) {
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    let alt = key.modifiers.contains(KeyModifiers::ALT);
    let page = crate::ui::search::hits_per_page(app.size);
    let Some(Overlay::Search(search)) = &mut app.overlay else { return };
    let last = search.hits().len().saturating_sub(1);
    let edited = match key.code {
        KeyCode::Esc => {
            app.overlay = None;
            return;
        }
        KeyCode::Char('f') if ctrl && !alt => {
            app.overlay = None;
            return;
        }
        KeyCode::Enter => return enter(app, fx),
        KeyCode::Tab | KeyCode::BackTab => {
            if search.here.is_some() {
                search.only_here = !search.only_here;
                want(app, fx);
            }
            return;
        }
        KeyCode::Up => {
            search.selected = search.selected.saturating_sub(1);
            false
        }
        KeyCode::Char('p') if ctrl => {
            search.selected = search.selected.saturating_sub(1);
            false
        }
        KeyCode::Down => {
            search.selected = (search.selected + 1).min(last);
            false
        }
        KeyCode::Char('n') if ctrl => {
            search.selected = (search.selected + 1).min(last);
            false
        }
        KeyCode::PageUp => {
            search.selected = search.selected.saturating_sub(page);
            false
        }
        KeyCode::PageDown => {
            search.selected = (search.selected + page).min(last);
            false
        }
        _ => super::line::edit(&mut search.query, key).unwrap_or(false),
    };
    if edited {
        edit(app, fx);
    }
}

/// The mouse wheel over the overlay moves the selection.
pub(super) fn wheel(app: &mut App, up: bool) {
    let Some(Overlay::Search(search)) = &mut app.overlay else { return };
    let last = search.hits().len().saturating_sub(1);
    search.selected = if up { search.selected.saturating_sub(1) } else { (search.selected + 1).min(last) };
}

/// Text pasted into the query: one line of it.
pub(super) fn paste(app: &mut App, text: &str, fx: &mut Vec<Effect>) {
    let Some(Overlay::Search(search)) = &mut app.overlay else { return };
    search.query.insert_str(&one_line(text));
    edit(app, fx);
}

/// `text` on one line: control characters (line breaks, tabs) as spaces.
fn one_line(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// `text` cut to at most [`MAX_QUERY`] bytes, at a character boundary.
fn capped(text: &str) -> &str {
    let mut end = text.len().min(MAX_QUERY);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The query changed: search once it has stayed so for [`DEBOUNCE`].
fn edit(app: &mut App, fx: &mut Vec<Effect>) {
    let Some(Overlay::Search(search)) = &mut app.overlay else { return };
    if search.query.text().len() > MAX_QUERY {
        let kept = capped(search.query.text()).to_owned();
        search.query.set_text(kept);
    }
    search.edits += 1;
    search.due = false;
    fx.push(Effect::SearchAfter { after: DEBOUNCE, edit: search.edits });
}

/// Enter: open the chosen hit if the results are for the query as it stands, else
/// search now (also again after a failure: the node may be back).
fn enter(app: &mut App, fx: &mut Vec<Effect>) {
    if retry(app, fx) {
        return;
    }
    let Some(Overlay::Search(search)) = &app.overlay else { return };
    if !search.is_current() {
        return want(app, fx);
    }
    let Some(hit) = search.hits().get(search.selected).cloned() else { return };
    app.overlay = None;
    super::update::show_message(app, hit.message, fx);
}

/// Ask again if what the overlay shows is a failure; returns whether it did.
pub(super) fn retry(app: &mut App, fx: &mut Vec<Effect>) -> bool {
    let Some(Overlay::Search(search)) = &mut app.overlay else { return false };
    if !matches!(search.shown, Some((_, SearchResults::Failed(_)))) {
        return false;
    }
    search.shown = None;
    want(app, fx);
    true
}

/// The wait after edit `edit` ended.
pub(super) fn on_due(app: &mut App, edit: u64, fx: &mut Vec<Effect>) {
    if matches!(&app.overlay, Some(Overlay::Search(search)) if search.edits == edit) {
        want(app, fx);
    }
}

/// Ask the node for what the overlay wants, unless it is shown or asked already;
/// while another search is in flight, once that one is answered.
fn want(app: &mut App, fx: &mut Vec<Effect>) {
    let Some(Overlay::Search(search)) = &mut app.overlay else { return };
    search.due = false;
    let Some(query) = search.wanted() else { return };
    if search.is_current() {
        return;
    }
    match &app.search_in_flight {
        // Its answer will do.
        Some(asked) if *asked == query => {}
        Some(_) => search.due = true,
        None => {
            app.search_in_flight = Some(query.clone());
            fx.push(Effect::Search { text: query.text, within: query.within, limit: LIMIT });
        }
    }
}

/// The node answered `query` (or failed it): shown if the overlay still asks it,
/// dropped as stale otherwise; then whatever waited for the answer goes.
pub(super) fn on_results(app: &mut App, query: SearchQuery, results: SearchResults, fx: &mut Vec<Effect>) {
    if app.search_in_flight.as_ref() == Some(&query) {
        app.search_in_flight = None;
    }
    let Some(Overlay::Search(search)) = &mut app.overlay else { return };
    if search.wanted().as_ref() == Some(&query) {
        let results = match results {
            SearchResults::Hits(mut hits) => {
                hits.truncate(LIMIT);
                SearchResults::Hits(hits)
            }
            failed => failed,
        };
        search.shown = Some((query, results));
        search.selected = 0;
    }
    if search.due {
        want(app, fx);
    }
}
