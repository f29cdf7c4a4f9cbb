//! Tab completion of command names and subcommands, as a pure function of the text before the
//! cursor.
use alloc::string::String;
use alloc::vec::Vec;

/// What Tab does to the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion {
    /// Nothing to complete: no candidate matches, or the cursor is past the completable words.
    NoMatch,
    /// One candidate: the rest of it plus a space, to insert at the cursor.
    Unique(String),
    /// Several candidates: the part they all share beyond what was typed (may be empty), to
    /// insert at the cursor, and the sorted list to show.
    Several {
        insert: String,
        candidates: Vec<&'static str>,
    },
}

/// One completable command: its name and the words that may follow it.
#[derive(Debug, Clone, Copy)]
pub struct CompletionEntry {
    pub name: &'static str,
    pub subcommands: &'static [&'static str],
    /// The second word is a command name (`help CMD`).
    pub takes_command: bool,
}

/// The completion table: a copy of every command's name and subcommands, so a line editor can
/// complete without borrowing the monitor.
#[derive(Debug, Clone, Default)]
pub struct Completer {
    entries: Vec<CompletionEntry>,
}

impl Completer {
    pub fn new(entries: Vec<CompletionEntry>) -> Self {
        Completer { entries }
    }

    /// Completes the word under the cursor: the first word against command names, the second
    /// against that command's subcommands. Quoted text is not completed.
    pub fn complete(&self, before_cursor: &str) -> Completion {
        if before_cursor.contains('"') {
            return Completion::NoMatch;
        }
        let words: Vec<&str> = before_cursor.split_ascii_whitespace().collect();
        let at_word_start = before_cursor
            .chars()
            .last()
            .is_none_or(|c| c.is_ascii_whitespace());
        let (index, partial) = if at_word_start {
            (words.len(), "")
        } else {
            (
                words.len().saturating_sub(1),
                words.last().copied().unwrap_or(""),
            )
        };
        let pool: Vec<&'static str> = match (index, words.first()) {
            (0, _) => self.entries.iter().map(|e| e.name).collect(),
            (1, Some(cmd)) => match self.entries.iter().find(|e| e.name == *cmd) {
                Some(e) if e.takes_command => self.entries.iter().map(|e| e.name).collect(),
                Some(e) => e.subcommands.to_vec(),
                None => Vec::new(),
            },
            _ => Vec::new(),
        };
        let mut candidates: Vec<&'static str> = pool
            .into_iter()
            .filter(|c| c.starts_with(partial))
            .collect();
        candidates.sort_unstable();
        candidates.dedup();
        match candidates.as_slice() {
            [] => Completion::NoMatch,
            [one] => {
                let mut insert = String::from(one.get(partial.len()..).unwrap_or(""));
                insert.push(' ');
                Completion::Unique(insert)
            }
            [first, rest @ ..] => {
                let shared = rest.iter().fold(*first, |acc, c| common_prefix(acc, c));
                Completion::Several {
                    insert: String::from(shared.get(partial.len()..).unwrap_or("")),
                    candidates,
                }
            }
        }
    }
}

/// The longest common prefix of `a` and `b`, ending on a character boundary.
fn common_prefix<'a>(a: &'a str, b: &str) -> &'a str {
    let mut end = a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
    while !a.is_char_boundary(end) {
        end -= 1;
    }
    a.get(..end).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn table() -> Completer {
        let e = |name, subcommands| CompletionEntry {
            name,
            subcommands,
            takes_command: false,
        };
        Completer::new(vec![
            e("lspci", &[]),
            e("blk", &["read", "write", "list", "info"]),
            e("boot", &[]),
            e("blkbench", &[]),
            CompletionEntry {
                name: "help",
                subcommands: &[],
                takes_command: true,
            },
        ])
    }

    fn several(insert: &str, candidates: &[&'static str]) -> Completion {
        Completion::Several {
            insert: String::from(insert),
            candidates: candidates.to_vec(),
        }
    }

    #[test]
    fn first_word_unique_match_gets_a_space() {
        assert_eq!(
            table().complete("ls"),
            Completion::Unique(String::from("pci "))
        );
        assert_eq!(
            table().complete("  ls"),
            Completion::Unique(String::from("pci "))
        );
        assert_eq!(
            table().complete("lspci"),
            Completion::Unique(String::from(" "))
        );
    }

    #[test]
    fn first_word_several_matches_extend_to_the_common_prefix() {
        assert_eq!(
            table().complete("b"),
            several("", &["blk", "blkbench", "boot"])
        );
        assert_eq!(table().complete("bl"), several("k", &["blk", "blkbench"]));
        assert_eq!(table().complete("blk"), several("", &["blk", "blkbench"]));
    }

    #[test]
    fn empty_line_lists_every_command() {
        assert_eq!(
            table().complete(""),
            several("", &["blk", "blkbench", "boot", "help", "lspci"])
        );
    }

    #[test]
    fn second_word_completes_subcommands() {
        assert_eq!(
            table().complete("blk r"),
            Completion::Unique(String::from("ead "))
        );
        assert_eq!(
            table().complete("blk "),
            several("", &["info", "list", "read", "write"])
        );
        assert_eq!(table().complete("blk x"), Completion::NoMatch);
        assert_eq!(table().complete("lspci "), Completion::NoMatch);
        assert_eq!(table().complete("nosuch "), Completion::NoMatch);
    }

    #[test]
    fn help_completes_command_names() {
        assert_eq!(
            table().complete("help ls"),
            Completion::Unique(String::from("pci "))
        );
        assert_eq!(
            table().complete("help bo"),
            Completion::Unique(String::from("ot "))
        );
    }

    #[test]
    fn third_word_and_quotes_are_not_completed() {
        assert_eq!(table().complete("blk read "), Completion::NoMatch);
        assert_eq!(table().complete("blk read 0"), Completion::NoMatch);
        assert_eq!(table().complete("blk \"r"), Completion::NoMatch);
        assert_eq!(table().complete("zz"), Completion::NoMatch);
    }

    #[test]
    fn common_prefix_respects_char_boundaries() {
        assert_eq!(common_prefix("aé", "aè"), "a");
        assert_eq!(common_prefix("abc", "abd"), "ab");
        assert_eq!(common_prefix("", "x"), "");
    }
}
