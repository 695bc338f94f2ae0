//! `kith search`: full-text search over every conversation.

use kith_p2p::control::Request;
use kith_p2p::search::SearchHitView;

use super::net::call;
use super::print;
use crate::args::{Global, SearchArgs};
use crate::failure::Result;
use crate::output;

/// Prints the hits of a search, best first: when, where, who, the message id and
/// the snippet with the words found marked. With `--rebuild`, builds the index
/// again and says how many messages it holds.
pub(crate) fn search(global: &Global, args: SearchArgs) -> Result {
    let home = super::home(global)?;
    if args.rebuild {
        let result = call(&home, Request::SearchRebuild {})?;
        if args.output.json {
            return output::json(&result);
        }
        return output::line(format!("indexed {} messages", result["messages"].as_u64().unwrap_or(0)));
    }
    let request = Request::Search {
        query: args.query.join(" "),
        within: args.within,
        from: args.from,
        limit: Some(args.limit),
    };
    let result = call(&home, request)?;
    if args.output.json {
        return output::json(&result);
    }
    let hits: Vec<SearchHitView> = print::view(result)?;
    if hits.is_empty() {
        return output::line("no messages match");
    }
    let names = print::Names::load(&home)?;
    let places: Vec<String> = hits.iter().map(|h| names.conversation(&h.message)).collect();
    let authors: Vec<String> = hits.iter().map(|h| names.author(&h.message)).collect();
    let place_width = print::column(places.iter().map(|p| p.chars().count()), 20);
    let author_width = print::column(authors.iter().map(|a| a.chars().count()), 16);
    for ((hit, place), author) in hits.iter().zip(&places).zip(&authors) {
        let head = format!(
            "{}  {place:<place_width$}  {author:<author_width$}  {}  ",
            print::date_time(hit.message.sent_at),
            hit.message.id
        );
        let mut parts = vec![(head.as_str(), false)];
        parts.extend(split_marks(&hit.snippet, &hit.marks));
        output::marked_line(&parts)?;
    }
    Ok(())
}

/// `text` cut at the marks' edges into `(part, marked)` pieces. Marks that do not
/// fit the text (a node that is not ours) are ignored rather than trusted.
fn split_marks<'a>(text: &'a str, marks: &[[usize; 2]]) -> Vec<(&'a str, bool)> {
    let mut parts = Vec::new();
    let mut at = 0;
    for &[start, end] in marks {
        if start < at || end <= start || end > text.len() || !text.is_char_boundary(start) || !text.is_char_boundary(end) {
            continue;
        }
        parts.push((&text[at..start], false));
        parts.push((&text[start..end], true));
        at = end;
    }
    parts.push((&text[at..], false));
    parts.retain(|(p, _)| !p.is_empty());
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_split_the_snippet_and_bad_marks_are_ignored() {
        assert_eq!(
            split_marks("meet at the café", &[[0, 4], [12, 17]]),
            [("meet", true), (" at the ", false), ("café", true)]
        );
        assert_eq!(split_marks("café", &[[0, 4]]), [("café", false)], "not on a character boundary");
        assert_eq!(split_marks("abc", &[[1, 9], [2, 1]]), [("abc", false)]);
    }
}
