//! Fuzzy matching for the quick switcher: a case-insensitive subsequence match with
//! a small score that prefers prefixes, word starts and consecutive runs.

/// A successful match of a query against a candidate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    /// Higher is better.
    pub score: i64,
    /// Char indices of the candidate that matched, for highlighting.
    pub positions: Vec<usize>,
}

/// Match `query` against `candidate`; `None` when the query's characters do not all
/// occur in order. An empty query matches everything with score 0.
pub fn fuzzy_match(query: &str, candidate: &str) -> Option<Match> {
    let query: Vec<char> = query.chars().filter(|c| !c.is_whitespace()).flat_map(char::to_lowercase).collect();
    if query.is_empty() {
        return Some(Match { score: 0, positions: Vec::new() });
    }
    let chars: Vec<char> = candidate.chars().collect();
    let mut positions = Vec::with_capacity(query.len());
    let mut score: i64 = 0;
    let mut qi = 0;
    let mut previous: Option<usize> = None;
    for (i, c) in chars.iter().enumerate() {
        let Some(want) = query.get(qi) else { break };
        if !c.to_lowercase().any(|l| l == *want) {
            continue;
        }
        score += 1;
        let word_start = i == 0 || chars.get(i - 1).is_some_and(|p| !p.is_alphanumeric());
        if i == 0 {
            score += 8;
        } else if word_start {
            score += 5;
        }
        match previous {
            Some(p) if p + 1 == i => score += 4,
            Some(p) => score -= i64::try_from(i - p - 1).unwrap_or(i64::MAX).min(3),
            None => score -= i64::try_from(i).unwrap_or(i64::MAX).min(5),
        }
        positions.push(i);
        previous = Some(i);
        qi += 1;
    }
    if qi < query.len() {
        return None;
    }
    // Shorter candidates are closer matches.
    score -= i64::try_from(chars.len().saturating_sub(query.len()) / 4).unwrap_or(0);
    Some(Match { score, positions })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_subsequences_case_insensitively() {
        assert!(fuzzy_match("al", "Alice").is_some());
        assert!(fuzzy_match("ace", "Alice").is_some());
        assert!(fuzzy_match("xa", "Alice").is_none());
        assert_eq!(fuzzy_match("ли", "Алиса").map(|m| m.positions), Some(vec![1, 2]));
        assert_eq!(fuzzy_match("", "x").map(|m| m.score), Some(0));
    }

    #[test]
    fn prefers_prefix_and_consecutive() {
        let prefix = fuzzy_match("bo", "bob").map(|m| m.score);
        let scattered = fuzzy_match("bo", "barbara ono").map(|m| m.score);
        assert!(prefix > scattered);
        let word = fuzzy_match("s", "mary sue").map(|m| m.score);
        let inner = fuzzy_match("s", "rosa").map(|m| m.score);
        assert!(word > inner);
    }
}
