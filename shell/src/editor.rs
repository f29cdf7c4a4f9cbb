//! The line editor for the serial console: prompt, cursor keys, Home/End, Emacs control keys,
//! history recall and Tab completion, over any blocking `embedded_io` byte stream.
//!
//! Written here rather than on the `noline` crate: noline 0.5 has no completion hook, waits for
//! the terminal to answer a cursor-position query before it prints the prompt (a scripted
//! console never answers, and the first typed byte is lost), panics on some malformed escape
//! sequences (`ESC [ R`) and speaks embedded-io 0.6 where the UART crate speaks 0.7.
//!
//! The line holds printable ASCII only (commands, numbers, names); other bytes are dropped.
//! Redraws assume the line fits on one terminal row; typing and erasing at the end work for any
//! length.
use crate::complete::{Completer, Completion};
use crate::history::History;
use crate::keys::{Key, KeyDecoder};
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use embedded_io::{Read, Write};

/// Longest line the editor accepts; further characters ring the bell.
pub const MAX_LINE: usize = 256;

const BELL: &[u8] = b"\x07";
/// ECMA-48 EL (erase in line) from the cursor to the end.
const ERASE_TO_END: &[u8] = b"\x1b[K";
/// ED 2 (erase display) then CUP (cursor to the top left).
const CLEAR_SCREEN: &[u8] = b"\x1b[2J\x1b[H";
/// Width the candidate list is wrapped at.
const LIST_WIDTH: usize = 78;

/// Why `readline` returned without a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadlineError<E> {
    /// Reading or writing the console failed.
    Io(E),
    /// The console reported end of input (`read` returned 0 bytes).
    Eof,
}

impl<E: fmt::Debug> fmt::Display for ReadlineError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadlineError::Io(e) => write!(f, "console error: {:?}", e),
            ReadlineError::Eof => f.write_str("console closed"),
        }
    }
}

/// Where Up/Down recall is within the history.
struct Recall {
    /// Index into the history of the line shown.
    index: usize,
    /// What was typed before the first Up, restored by Down past the newest line.
    draft: String,
}

/// A line editor: owns the line being typed, the recall history and the completion table.
pub struct Editor {
    completer: Completer,
    history: History,
    keys: KeyDecoder,
    /// Printable ASCII only, so a byte index is also a column.
    line: String,
    cursor: usize,
    recall: Option<Recall>,
}

impl Editor {
    pub fn new(completer: Completer) -> Self {
        Editor {
            completer,
            history: History::default(),
            keys: KeyDecoder::default(),
            line: String::new(),
            cursor: 0,
            recall: None,
        }
    }

    /// The lines entered so far (what Up recalls).
    pub fn history(&self) -> &History {
        &self.history
    }

    /// Prints `prompt`, then edits a line until Enter and returns it (without the newline).
    /// Ctrl-C abandons the line and returns an empty one. Blocks in `io.read`.
    pub fn readline<IO: Read + Write>(
        &mut self,
        prompt: &str,
        io: &mut IO,
    ) -> Result<&str, ReadlineError<IO::Error>> {
        self.line.clear();
        self.cursor = 0;
        self.recall = None;
        send(io, prompt.as_bytes())?;
        let mut echo = Vec::new();
        loop {
            let mut byte = [0u8; 1];
            if io.read(&mut byte).map_err(ReadlineError::Io)? == 0 {
                return Err(ReadlineError::Eof);
            }
            echo.clear();
            let done = match self.keys.feed(byte[0]) {
                Some(key) => self.apply(key, prompt, &mut echo),
                None => false,
            };
            send(io, &echo)?;
            if done {
                return Ok(&self.line);
            }
        }
    }

    /// Applies one key to the line, appending the terminal output to `echo`; true on Enter
    /// or Ctrl-C.
    fn apply(&mut self, key: Key, prompt: &str, echo: &mut Vec<u8>) -> bool {
        match key {
            Key::Char(c) => self.insert(&[c], prompt, echo),
            Key::Enter => {
                echo.extend_from_slice(b"\r\n");
                if self.history.last() != Some(self.line.as_str()) {
                    self.history.push(&self.line);
                }
                return true;
            }
            Key::Cancel => {
                echo.extend_from_slice(b"^C\r\n");
                self.line.clear();
                self.cursor = 0;
                return true;
            }
            Key::Backspace if self.cursor == 0 => echo.extend_from_slice(BELL),
            Key::Backspace if self.cursor == self.line.len() => {
                self.line.pop();
                self.cursor -= 1;
                echo.extend_from_slice(b"\x08 \x08");
            }
            Key::Backspace => {
                self.cursor -= 1;
                self.line.remove(self.cursor);
                self.redraw(prompt, echo);
            }
            Key::Delete if self.cursor == self.line.len() => echo.extend_from_slice(BELL),
            Key::Delete => {
                self.line.remove(self.cursor);
                self.redraw(prompt, echo);
            }
            Key::Left if self.cursor == 0 => echo.extend_from_slice(BELL),
            Key::Left => self.move_to(self.cursor - 1, echo),
            Key::Right if self.cursor == self.line.len() => echo.extend_from_slice(BELL),
            Key::Right => self.move_to(self.cursor + 1, echo),
            Key::Home => self.move_to(0, echo),
            Key::End => self.move_to(self.line.len(), echo),
            Key::KillToEnd => {
                self.line.truncate(self.cursor);
                echo.extend_from_slice(ERASE_TO_END);
            }
            Key::KillToStart => {
                self.line.replace_range(..self.cursor, "");
                self.cursor = 0;
                self.redraw(prompt, echo);
            }
            Key::KillWord => {
                let start = word_start(&self.line, self.cursor);
                self.line.replace_range(start..self.cursor, "");
                self.cursor = start;
                self.redraw(prompt, echo);
            }
            Key::Up => self.recall_older(prompt, echo),
            Key::Down => self.recall_newer(prompt, echo),
            Key::Tab => self.complete(prompt, echo),
            Key::Redraw => {
                echo.extend_from_slice(CLEAR_SCREEN);
                self.redraw(prompt, echo);
            }
        }
        false
    }

    /// Inserts printable ASCII at the cursor; the bell if the line would grow past `MAX_LINE`.
    fn insert(&mut self, text: &[u8], prompt: &str, echo: &mut Vec<u8>) {
        let printable = text.iter().all(|b| (0x20..=0x7e).contains(b));
        let Ok(text) = core::str::from_utf8(text) else {
            return;
        };
        if !printable || self.line.len() + text.len() > MAX_LINE {
            echo.extend_from_slice(BELL);
            return;
        }
        let at_end = self.cursor == self.line.len();
        self.line.insert_str(self.cursor, text);
        self.cursor += text.len();
        if at_end {
            echo.extend_from_slice(text.as_bytes());
        } else {
            self.redraw(prompt, echo);
        }
    }

    fn move_to(&mut self, to: usize, echo: &mut Vec<u8>) {
        cursor_move(echo, self.cursor, to);
        self.cursor = to;
    }

    /// Rewrites the whole row: prompt, line, erase the rest, cursor back in place.
    fn redraw(&self, prompt: &str, echo: &mut Vec<u8>) {
        echo.push(b'\r');
        echo.extend_from_slice(prompt.as_bytes());
        echo.extend_from_slice(self.line.as_bytes());
        echo.extend_from_slice(ERASE_TO_END);
        cursor_move(echo, self.line.len(), self.cursor);
    }

    fn show(&mut self, line: &str, prompt: &str, echo: &mut Vec<u8>) {
        self.line.clear();
        self.line.push_str(line);
        self.cursor = self.line.len();
        self.redraw(prompt, echo);
    }

    fn recall_older(&mut self, prompt: &str, echo: &mut Vec<u8>) {
        let index = match &self.recall {
            None if self.history.is_empty() => None,
            None => Some(self.history.len() - 1),
            Some(r) => r.index.checked_sub(1),
        };
        let Some(line) = index.and_then(|i| self.history.get(i)) else {
            echo.extend_from_slice(BELL);
            return;
        };
        let line = String::from(line);
        let draft = match self.recall.take() {
            Some(r) => r.draft,
            None => self.line.clone(),
        };
        self.recall = index.map(|index| Recall { index, draft });
        self.show(&line, prompt, echo);
    }

    fn recall_newer(&mut self, prompt: &str, echo: &mut Vec<u8>) {
        let Some(r) = self.recall.take() else {
            echo.extend_from_slice(BELL);
            return;
        };
        let newer = r.index + 1;
        match self.history.get(newer).map(String::from) {
            Some(line) => {
                self.recall = Some(Recall {
                    index: newer,
                    draft: r.draft,
                });
                self.show(&line, prompt, echo);
            }
            None => self.show(&r.draft, prompt, echo),
        }
    }

    /// Tab: extends the word before the cursor, or lists the candidates when it cannot.
    fn complete(&mut self, prompt: &str, echo: &mut Vec<u8>) {
        let before = self.line.get(..self.cursor).unwrap_or("");
        match self.completer.complete(before) {
            Completion::NoMatch => echo.extend_from_slice(BELL),
            Completion::Unique(insert) => self.insert(insert.as_bytes(), prompt, echo),
            Completion::Several { insert, .. } if !insert.is_empty() => {
                self.insert(insert.as_bytes(), prompt, echo)
            }
            Completion::Several { candidates, .. } => {
                echo.extend_from_slice(b"\r\n");
                list_columns(echo, &candidates);
                self.redraw(prompt, echo);
            }
        }
    }
}

/// Writes `bytes` to the console and flushes; nothing to write is not an error.
fn send<IO: Write>(io: &mut IO, bytes: &[u8]) -> Result<(), ReadlineError<IO::Error>> {
    if bytes.is_empty() {
        return Ok(());
    }
    io.write_all(bytes).map_err(ReadlineError::Io)?;
    io.flush().map_err(ReadlineError::Io)
}

/// Moves the terminal cursor from column `from` to `to` of the line (CUB/CUF, ECMA-48 §8.3.18,
/// §8.3.20). A zero count would mean 1 to the terminal, so no move is sent for it.
fn cursor_move(echo: &mut Vec<u8>, from: usize, to: usize) {
    use core::fmt::Write as _;
    let mut s = String::new();
    let _ = match to.cmp(&from) {
        core::cmp::Ordering::Less => write!(s, "\x1b[{}D", from - to),
        core::cmp::Ordering::Greater => write!(s, "\x1b[{}C", to - from),
        core::cmp::Ordering::Equal => Ok(()),
    };
    echo.extend_from_slice(s.as_bytes());
}

/// Where Ctrl-W's deletion starts: back over spaces, then back over the word.
fn word_start(line: &str, cursor: usize) -> usize {
    let before = line.as_bytes().get(..cursor).unwrap_or(&[]);
    let end_of_word = before.iter().rposition(|b| *b != b' ').map_or(0, |i| i + 1);
    before
        .get(..end_of_word)
        .and_then(|w| w.iter().rposition(|b| *b == b' '))
        .map_or(0, |i| i + 1)
}

/// The candidates, two spaces apart, wrapped at `LIST_WIDTH`, each row ending in CRLF.
fn list_columns(echo: &mut Vec<u8>, candidates: &[&str]) {
    let mut col = 0;
    for c in candidates {
        if col > 0 && col + 2 + c.len() > LIST_WIDTH {
            echo.extend_from_slice(b"\r\n");
            col = 0;
        }
        if col > 0 {
            echo.extend_from_slice(b"  ");
            col += 2;
        }
        echo.extend_from_slice(c.as_bytes());
        col += c.len();
    }
    echo.extend_from_slice(b"\r\n");
}

#[cfg(test)]
pub(crate) mod tests {
    extern crate std;
    use super::*;
    use crate::complete::CompletionEntry;
    use alloc::collections::VecDeque;
    use alloc::vec;
    use core::convert::Infallible;

    /// A console that replays `input` and records everything written.
    pub(crate) struct FakeConsole {
        pub input: VecDeque<u8>,
        pub output: Vec<u8>,
    }

    impl FakeConsole {
        pub fn new(input: &[u8]) -> Self {
            FakeConsole {
                input: input.iter().copied().collect(),
                output: Vec::new(),
            }
        }
    }

    impl embedded_io::ErrorType for FakeConsole {
        type Error = Infallible;
    }

    impl Read for FakeConsole {
        fn read(&mut self, buf: &mut [u8]) -> Result<usize, Infallible> {
            let mut n = 0;
            while n < buf.len() {
                let Some(b) = self.input.pop_front() else {
                    break;
                };
                buf[n] = b;
                n += 1;
            }
            Ok(n)
        }
    }

    impl Write for FakeConsole {
        fn write(&mut self, buf: &[u8]) -> Result<usize, Infallible> {
            self.output.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> Result<(), Infallible> {
            Ok(())
        }
    }

    pub(crate) fn completer() -> Completer {
        let e = |name, subcommands| CompletionEntry {
            name,
            subcommands,
            takes_command: false,
        };
        Completer::new(vec![
            e("lspci", &[]),
            e("blk", &["read", "write"]),
            e("boot", &[]),
            e("help", &[]),
            e("history", &[]),
        ])
    }

    /// The lines `input` produces, until the input runs out.
    fn lines(ed: &mut Editor, input: &[u8]) -> (Vec<String>, FakeConsole) {
        let mut io = FakeConsole::new(input);
        let mut got = Vec::new();
        while let Ok(l) = ed.readline("capmon> ", &mut io) {
            got.push(String::from(l));
        }
        (got, io)
    }

    fn one_line(input: &[u8]) -> String {
        let (mut got, _) = lines(&mut Editor::new(completer()), input);
        assert_eq!(got.len(), 1, "{:?}", got);
        got.remove(0)
    }

    #[test]
    fn prompt_echo_and_enter() {
        let mut ed = Editor::new(completer());
        let mut io = FakeConsole::new(b"lspci\r");
        assert_eq!(ed.readline("capmon> ", &mut io), Ok("lspci"));
        assert_eq!(io.output, b"capmon> lspci\r\n");
        assert_eq!(ed.readline("capmon> ", &mut io), Err(ReadlineError::Eof));
    }

    #[test]
    fn cr_lf_and_crlf_each_end_one_line() {
        let (got, _) = lines(&mut Editor::new(completer()), b"a\rb\nc\r\nd\r\n\r\n");
        assert_eq!(got, ["a", "b", "c", "d", ""]);
    }

    #[test]
    fn cursor_keys_insert_in_the_middle() {
        assert_eq!(one_line(b"ac\x1b[Db\r"), "abc");
        assert_eq!(one_line(b"bc\x1b[Ha\x1b[Fd\r"), "abcd");
        assert_eq!(one_line(b"bc\x01a\x05d\r"), "abcd");
        assert_eq!(one_line(b"ab\x1b[D\x1b[D\x1b[Cx\r"), "axb");
        assert_eq!(one_line(b"ab\x1bOHx\x1bOFy\r"), "xaby");
        assert_eq!(one_line(b"ab\x1b[1~x\x1b[4~y\r"), "xaby");
    }

    #[test]
    fn deleting() {
        assert_eq!(one_line(b"abc\x7f\r"), "ab");
        assert_eq!(one_line(b"abc\x08\x08\r"), "a");
        assert_eq!(one_line(b"abc\x1b[D\x7f\r"), "ac");
        assert_eq!(one_line(b"abc\x01\x1b[3~\r"), "bc");
        assert_eq!(one_line(b"abc\x01\x04\r"), "bc");
        assert_eq!(one_line(b"\x7f\x7fx\r"), "x");
    }

    #[test]
    fn kill_keys() {
        assert_eq!(one_line(b"abc def\x1b[D\x1b[D\x0b\r"), "abc d");
        assert_eq!(one_line(b"abc def\x1b[D\x1b[D\x15\r"), "ef");
        assert_eq!(one_line(b"md 0x10  \x17\r"), "md ");
        assert_eq!(one_line(b"md 0x10\x17\x17\r"), "");
        assert_eq!(one_line(b"ab cd\x1b[D\x17\r"), "ab d");
    }

    #[test]
    fn ctrl_c_abandons_the_line() {
        let mut ed = Editor::new(completer());
        let mut io = FakeConsole::new(b"lspci\x03");
        assert_eq!(ed.readline("capmon> ", &mut io), Ok(""));
        assert!(io.output.ends_with(b"lspci^C\r\n"));
        assert!(ed.history().is_empty());
    }

    #[test]
    fn history_up_and_down() {
        let mut ed = Editor::new(completer());
        // Up twice recalls the older line. History is then one, two, one: Up Up Down shows
        // one, two, then one again. Down past the newest line restores the draft.
        let (got, _) = lines(
            &mut ed,
            b"one\rtwo\r\x1b[A\x1b[A\r\x1b[A\x1b[A\x1b[B\rdr\x1b[A\x1b[B\x1b[B\r",
        );
        assert_eq!(got, ["one", "two", "one", "one", "dr"]);
        // Repeated lines are kept once; Up past the oldest rings the bell and stays.
        let mut ed = Editor::new(completer());
        let (got, io) = lines(&mut ed, b"x\rx\r\x1b[A\x1b[A\x10\r");
        assert_eq!(got, ["x", "x", "x"]);
        assert_eq!(ed.history().len(), 1);
        assert!(io.output.contains(&0x07));
        // Down with nothing recalled rings the bell; an empty history gives nothing.
        let (got, _) = lines(&mut Editor::new(completer()), b"\x1b[B\x1b[Aq\r");
        assert_eq!(got, ["q"]);
    }

    #[test]
    fn recalled_lines_can_be_edited() {
        let (got, _) = lines(
            &mut Editor::new(completer()),
            b"blk read\r\x1b[A\x7f\x7f\x7f\x7fwrite\r",
        );
        assert_eq!(got, ["blk read", "blk write"]);
    }

    #[test]
    fn tab_completes_and_lists() {
        assert_eq!(one_line(b"ls\t\r"), "lspci ");
        assert_eq!(one_line(b"blk w\t0\r"), "blk write 0");
        assert_eq!(one_line(b"h\ti\t\r"), "history ");
        // Several candidates and nothing to add: the list, then the prompt and line again.
        let (got, io) = lines(&mut Editor::new(completer()), b"b\t\r");
        assert_eq!(got, ["b"]);
        let shown = String::from_utf8(io.output).unwrap();
        assert!(
            shown.contains("b\r\nblk  boot\r\n\rcapmon> b\x1b[K"),
            "{:?}",
            shown
        );
        // Nothing matches: the bell.
        let (_, io) = lines(&mut Editor::new(completer()), b"zz\t\r");
        assert_eq!(io.output, b"capmon> zz\x07\r\ncapmon> ");
        // Completion uses the text before the cursor.
        assert_eq!(one_line(b"ls x\x1b[D\x1b[D\t\r"), "lspci  x");
    }

    #[test]
    fn only_printable_ascii_enters_the_line() {
        assert_eq!(one_line("aé\u{0}\x1fb\r".as_bytes()), "ab");
    }

    #[test]
    fn the_line_is_bounded() {
        let mut input = vec![b'x'; MAX_LINE + 10];
        input.push(b'\r');
        let (got, io) = lines(&mut Editor::new(completer()), &input);
        assert_eq!(got[0].len(), MAX_LINE);
        assert_eq!(io.output.iter().filter(|b| **b == 0x07).count(), 10);
    }

    #[test]
    fn redraw_output_for_a_middle_edit() {
        let mut ed = Editor::new(completer());
        let mut io = FakeConsole::new(b"ac\x1b[Db\r");
        assert_eq!(ed.readline("> ", &mut io), Ok("abc"));
        assert_eq!(io.output, b"> ac\x1b[1D\r> abc\x1b[K\x1b[1D\r\n");
    }

    #[test]
    fn ctrl_l_clears_the_screen() {
        let mut ed = Editor::new(completer());
        let mut io = FakeConsole::new(b"ab\x0c\r");
        assert_eq!(ed.readline("> ", &mut io), Ok("ab"));
        assert_eq!(io.output, b"> ab\x1b[2J\x1b[H\r> ab\x1b[K\r\n");
    }

    #[test]
    fn word_start_cases() {
        assert_eq!(word_start("ab cd", 5), 3);
        assert_eq!(word_start("ab cd  ", 7), 3);
        assert_eq!(word_start("ab", 2), 0);
        assert_eq!(word_start("   ", 3), 0);
        assert_eq!(word_start("", 0), 0);
    }
}
