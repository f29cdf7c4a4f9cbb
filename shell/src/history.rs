//! A bounded list of the lines typed at the monitor, numbered from 1 like a shell's history.
use alloc::collections::VecDeque;
use alloc::string::String;

/// The most recent lines, oldest first. Numbers keep counting when old lines are dropped, so
/// `history` shows the same number for the same line for as long as it is kept.
pub struct History {
    entries: VecDeque<String>,
    capacity: usize,
    /// The number of `entries[0]`.
    first_number: usize,
}

impl History {
    /// Lines kept by the monitor and by the editor.
    pub const DEFAULT_CAPACITY: usize = 64;
    /// Longer lines are kept cut to this many bytes (a serial line is shorter anyway).
    pub const MAX_LINE: usize = 256;

    pub fn new(capacity: usize) -> Self {
        History {
            entries: VecDeque::new(),
            capacity,
            first_number: 1,
        }
    }

    /// Records `line` (cut to `MAX_LINE` bytes), dropping the oldest line when full.
    /// Blank lines are not recorded.
    pub fn push(&mut self, line: &str) {
        if line.trim().is_empty() || self.capacity == 0 {
            return;
        }
        if self.entries.len() >= self.capacity {
            self.entries.pop_front();
            self.first_number += 1;
        }
        self.entries
            .push_back(String::from(cut(line, Self::MAX_LINE)));
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The `i`-th kept line, oldest first.
    pub fn get(&self, i: usize) -> Option<&str> {
        self.entries.get(i).map(String::as_str)
    }

    /// The newest line.
    pub fn last(&self) -> Option<&str> {
        self.entries.back().map(String::as_str)
    }

    /// The kept lines with their numbers, oldest first.
    pub fn numbered(&self) -> impl Iterator<Item = (usize, &str)> {
        let first = self.first_number;
        self.entries
            .iter()
            .enumerate()
            .map(move |(i, l)| (first + i, l.as_str()))
    }
}

impl Default for History {
    fn default() -> Self {
        History::new(Self::DEFAULT_CAPACITY)
    }
}

/// The longest prefix of `s` that is at most `max` bytes and ends on a character boundary.
pub(crate) fn cut(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    #[test]
    fn numbers_keep_counting_when_old_lines_drop() {
        let mut h = History::new(3);
        for l in ["a", "  ", "b", "c", "d", ""] {
            h.push(l);
        }
        let got: Vec<(usize, &str)> = h.numbered().collect();
        assert_eq!(got, [(2, "b"), (3, "c"), (4, "d")]);
        assert_eq!(h.get(0), Some("b"));
        assert_eq!(h.last(), Some("d"));
        assert_eq!(h.get(3), None);
    }

    #[test]
    fn long_lines_are_cut_on_a_char_boundary() {
        let mut h = History::new(2);
        let long: String = core::iter::repeat_n('é', History::MAX_LINE).collect();
        h.push(&long);
        let kept = h.last().unwrap();
        assert_eq!(kept.len(), History::MAX_LINE);
        assert!(kept.chars().all(|c| c == 'é'));
        assert_eq!(cut("abc", 2), "ab");
        assert_eq!(cut("é", 1), "");
    }

    #[test]
    fn zero_capacity_keeps_nothing() {
        let mut h = History::new(0);
        h.push("x");
        assert!(h.is_empty());
    }
}
