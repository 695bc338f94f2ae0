//! Re-drawing the node's QR code to fit small terminals.
//!
//! The node draws an invite's QR code with half blocks (`▀▄█`, two module rows per
//! text row, light modules inked for a dark terminal) inside a quiet zone of two
//! modules. On a 100×30 terminal a typical invite's code (57 modules) then needs 31
//! rows. [`compact`] reads the modules back from that text and draws them again
//! with a quiet zone of one module, which scanners read fine on a terminal's dark
//! background: 30 rows.

/// Light modules drawn around the code.
const QUIET_ZONE: usize = 1;

/// The node's QR text redrawn with a one-module quiet zone, one string per row;
/// `None` when `qr` is not half blocks or holds no code (it is then shown as is).
pub(crate) fn compact(qr: &str) -> Option<Vec<String>> {
    let rows: Vec<Vec<char>> = qr.lines().map(|l| l.chars().collect()).collect();
    let width = rows.iter().map(Vec::len).max()?;
    // Each character holds two module rows; the grid is square (a last half row past
    // it is padding, not a module).
    let size = width.min(2 * rows.len());
    let mut ink = vec![vec![false; width]; size];
    for (y, row) in rows.iter().enumerate() {
        for (x, c) in row.iter().enumerate() {
            let (top, bottom) = match c {
                '█' => (true, true),
                '▀' => (true, false),
                '▄' => (false, true),
                ' ' => (false, false),
                _ => return None,
            };
            for (dy, on) in [(0, top), (1, bottom)] {
                if let Some(cell) = ink.get_mut(2 * y + dy).and_then(|r| r.get_mut(x)) {
                    *cell = on;
                }
            }
        }
    }
    // The code is the bounding box of the dark (uninked) modules: its finder
    // patterns put dark modules on all four of its edges.
    let dark = |x: usize, y: usize| !ink[y][x];
    let ys: Vec<usize> = (0..size).filter(|&y| (0..width).any(|x| dark(x, y))).collect();
    let xs: Vec<usize> = (0..width).filter(|&x| (0..size).any(|y| dark(x, y))).collect();
    let (&top, &bottom, &left, &right) = (ys.first()?, ys.last()?, xs.first()?, xs.last()?);
    let (w, h) = (right - left + 1 + 2 * QUIET_ZONE, bottom - top + 1 + 2 * QUIET_ZONE);
    // Whether the module at (x, y) of the new grid is inked: the quiet zone is.
    let at = |x: usize, y: usize| -> bool {
        let inside = |v: usize, from: usize, len: usize| v.checked_sub(QUIET_ZONE).filter(|v| *v < len).map(|v| v + from);
        match (inside(x, left, right - left + 1), inside(y, top, bottom - top + 1)) {
            (Some(x), Some(y)) => ink[y][x],
            _ => y < h,
        }
    };
    let drawn = (0..h)
        .step_by(2)
        .map(|y| {
            (0..w)
                .map(|x| match (at(x, y), at(x, y + 1)) {
                    (true, true) => '█',
                    (true, false) => '▀',
                    (false, true) => '▄',
                    (false, false) => ' ',
                })
                .collect()
        })
        .collect();
    Some(drawn)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 3×3 "code" (dark corners, light elsewhere) drawn as the node draws it: a
    /// quiet zone of two modules, light inked, the 7th module row sharing its text row
    /// with padding.
    const NODE: &str = "███████\n██▄█▄██\n██▄█▄██\n▀▀▀▀▀▀▀\n";

    #[test]
    fn redraws_with_a_one_module_quiet_zone() {
        let rows = compact(NODE).expect("half blocks");
        // 5×5 modules: three rows of text, the last one half padding.
        assert_eq!(rows, vec!["█▀█▀█", "█▀█▀█", "▀▀▀▀▀"]);
    }

    #[test]
    fn anything_else_is_left_alone() {
        assert_eq!(compact("##\n##\n"), None);
        assert_eq!(compact(""), None);
        assert_eq!(compact("███\n███\n"), None, "no code in it");
    }
}
