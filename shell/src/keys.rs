//! Turns the bytes a terminal sends into editing keys: printable ASCII, control keys (Emacs
//! style) and the ANSI escape sequences for cursor keys (ECMA-48 §5.4 control sequences).
//!
//! Every byte is accepted; anything that is not a key the editor knows is dropped.

/// One editing key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// A printable ASCII character (0x20..=0x7e).
    Char(u8),
    /// CR or LF; the LF of a CRLF pair is swallowed.
    Enter,
    Tab,
    /// Backspace (0x7f) or Ctrl-H: delete before the cursor.
    Backspace,
    /// ESC [ 3 ~ or Ctrl-D: delete under the cursor.
    Delete,
    Left,
    Right,
    Up,
    Down,
    Home,
    End,
    /// Ctrl-K: delete from the cursor to the end of the line.
    KillToEnd,
    /// Ctrl-U: delete from the start of the line to the cursor.
    KillToStart,
    /// Ctrl-W: delete the word before the cursor.
    KillWord,
    /// Ctrl-C: abandon the line.
    Cancel,
    /// Ctrl-L: clear the screen and redraw the line.
    Redraw,
}

const ESC: u8 = 0x1b;
/// Longest control sequence accepted; longer ones are dropped (the bytes are not real keys).
const MAX_SEQUENCE: u8 = 16;
/// Numeric parameters saturate here; no key needs more.
const MAX_PARAM: u16 = 999;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Ground,
    /// After ESC.
    Escape,
    /// After ESC [ : the first parameter so far, and the sequence length.
    Csi {
        param: Option<u16>,
        more_params: bool,
        len: u8,
    },
    /// After ESC O (SS3), sent for cursor keys in application mode.
    Ss3,
}

/// The decoder's state between bytes. It lives as long as the editor, so a sequence (or a CRLF
/// pair) split across two reads still decodes.
#[derive(Debug, Clone)]
pub struct KeyDecoder {
    state: State,
    after_cr: bool,
}

impl Default for KeyDecoder {
    fn default() -> Self {
        KeyDecoder {
            state: State::Ground,
            after_cr: false,
        }
    }
}

impl KeyDecoder {
    /// Feeds one byte; returns the key it completes, if any.
    pub fn feed(&mut self, byte: u8) -> Option<Key> {
        let after_cr = core::mem::replace(&mut self.after_cr, false);
        match self.state {
            State::Ground => self.ground(byte, after_cr),
            State::Escape => match byte {
                b'[' => {
                    self.state = State::Csi {
                        param: None,
                        more_params: false,
                        len: 0,
                    };
                    None
                }
                b'O' => {
                    self.state = State::Ss3;
                    None
                }
                // Alt+key and other escapes: not supported, dropped.
                0x20..=0x7e => {
                    self.state = State::Ground;
                    None
                }
                _ => self.interrupt(byte, after_cr),
            },
            State::Csi {
                param,
                more_params,
                len,
            } => match byte {
                b'0'..=b'9' if !more_params => {
                    let digit = u16::from(byte - b'0');
                    let p = param.unwrap_or(0).saturating_mul(10).saturating_add(digit);
                    self.csi_continue(Some(p.min(MAX_PARAM)), false, len)
                }
                // Further parameters (`1;5C` for Ctrl+Right), intermediates and private markers.
                b'0'..=b'9' | b';' | b':' | 0x20..=0x2f | 0x3c..=0x3f => {
                    self.csi_continue(param, true, len)
                }
                0x40..=0x7e => {
                    self.state = State::Ground;
                    csi_key(byte, param)
                }
                _ => self.interrupt(byte, after_cr),
            },
            State::Ss3 => match byte {
                0x20..=0x7e => {
                    self.state = State::Ground;
                    match byte {
                        b'A' => Some(Key::Up),
                        b'B' => Some(Key::Down),
                        b'C' => Some(Key::Right),
                        b'D' => Some(Key::Left),
                        b'H' => Some(Key::Home),
                        b'F' => Some(Key::End),
                        _ => None,
                    }
                }
                _ => self.interrupt(byte, after_cr),
            },
        }
    }

    fn csi_continue(&mut self, param: Option<u16>, more_params: bool, len: u8) -> Option<Key> {
        self.state = if len >= MAX_SEQUENCE {
            State::Ground
        } else {
            State::Csi {
                param,
                more_params,
                len: len + 1,
            }
        };
        None
    }

    /// A byte that cannot be part of the sequence in progress (a control character or a
    /// non-ASCII byte): the sequence is dropped and the byte is taken on its own, so Enter typed
    /// after a stray ESC still ends the line.
    fn interrupt(&mut self, byte: u8, after_cr: bool) -> Option<Key> {
        self.state = State::Ground;
        self.ground(byte, after_cr)
    }

    fn ground(&mut self, byte: u8, after_cr: bool) -> Option<Key> {
        match byte {
            0x20..=0x7e => Some(Key::Char(byte)),
            b'\r' => {
                self.after_cr = true;
                Some(Key::Enter)
            }
            b'\n' if after_cr => None,
            b'\n' => Some(Key::Enter),
            ESC => {
                self.state = State::Escape;
                None
            }
            b'\t' => Some(Key::Tab),
            0x7f | 0x08 => Some(Key::Backspace),
            0x01 => Some(Key::Home),        // Ctrl-A
            0x02 => Some(Key::Left),        // Ctrl-B
            0x03 => Some(Key::Cancel),      // Ctrl-C
            0x04 => Some(Key::Delete),      // Ctrl-D
            0x05 => Some(Key::End),         // Ctrl-E
            0x06 => Some(Key::Right),       // Ctrl-F
            0x0b => Some(Key::KillToEnd),   // Ctrl-K
            0x0c => Some(Key::Redraw),      // Ctrl-L
            0x0e => Some(Key::Down),        // Ctrl-N
            0x10 => Some(Key::Up),          // Ctrl-P
            0x15 => Some(Key::KillToStart), // Ctrl-U
            0x17 => Some(Key::KillWord),    // Ctrl-W
            // Other control characters and non-ASCII bytes are not keys.
            _ => None,
        }
    }
}

/// The key a complete control sequence stands for (xterm and VT220 forms).
fn csi_key(final_byte: u8, param: Option<u16>) -> Option<Key> {
    match (final_byte, param) {
        (b'A', _) => Some(Key::Up),
        (b'B', _) => Some(Key::Down),
        (b'C', _) => Some(Key::Right),
        (b'D', _) => Some(Key::Left),
        (b'H', _) => Some(Key::Home),
        (b'F', _) => Some(Key::End),
        (b'~', Some(1 | 7)) => Some(Key::Home),
        (b'~', Some(4 | 8)) => Some(Key::End),
        (b'~', Some(3)) => Some(Key::Delete),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    fn keys(bytes: &[u8]) -> Vec<Key> {
        let mut d = KeyDecoder::default();
        bytes.iter().filter_map(|b| d.feed(*b)).collect()
    }

    #[test]
    fn cursor_keys_in_every_form() {
        use Key::*;
        assert_eq!(keys(b"\x1b[A\x1b[B\x1b[C\x1b[D"), [Up, Down, Right, Left]);
        assert_eq!(
            keys(b"\x1b[H\x1b[F\x1b[1~\x1b[4~\x1b[7~\x1b[8~"),
            [Home, End, Home, End, Home, End]
        );
        assert_eq!(keys(b"\x1bOA\x1bOH\x1bOF"), [Up, Home, End]);
        assert_eq!(keys(b"\x1b[3~"), [Delete]);
        assert_eq!(keys(b"\x1b[1;5C"), [Right]);
    }

    #[test]
    fn control_keys() {
        use Key::*;
        assert_eq!(
            keys(b"\x01\x05\x0b\x15\x17\x7f\x08\x04\x03\x0c\x02\x06\x10\x0e\t"),
            [
                Home,
                End,
                KillToEnd,
                KillToStart,
                KillWord,
                Backspace,
                Backspace,
                Delete,
                Cancel,
                Redraw,
                Left,
                Right,
                Up,
                Down,
                Tab
            ]
        );
    }

    #[test]
    fn cr_lf_and_crlf_are_each_one_enter() {
        use Key::*;
        assert_eq!(
            keys(b"a\rb\nc\r\nd"),
            [
                Char(b'a'),
                Enter,
                Char(b'b'),
                Enter,
                Char(b'c'),
                Enter,
                Char(b'd')
            ]
        );
        assert_eq!(keys(b"\r\r\n\n"), [Enter, Enter, Enter]);
    }

    #[test]
    fn junk_is_dropped_and_enter_survives_a_broken_sequence() {
        use Key::*;
        assert_eq!(keys(&[0x80, 0xff, 0x00, 0x1f, b'x']), [Char(b'x')]);
        assert_eq!(keys(b"\x1b[12\r"), [Enter]);
        assert_eq!(keys(b"\x1bx"), []);
        assert_eq!(keys(b"\x1b[99999999999999~z"), [Char(b'z')]);
        assert_eq!(keys(b"\x1b[R\x1b[5~"), []);
    }

    #[test]
    fn overlong_sequences_end() {
        let mut long = Vec::from(&b"\x1b["[..]);
        long.extend(core::iter::repeat_n(b';', 40));
        long.push(b'q');
        // The decoder gives up after MAX_SEQUENCE bytes and reads the rest as text.
        let got = keys(&long);
        assert_eq!(got.last(), Some(&Key::Char(b'q')));
        assert_eq!(got.len(), 40 - usize::from(MAX_SEQUENCE));
        assert!(got.iter().rev().skip(1).all(|k| *k == Key::Char(b';')));
    }
}
