//! Fuzz-style host tests: thousands of random lines through the monitor and random byte streams
//! through the editor, from a seeded PRNG so a failure reproduces. Nothing may panic and the
//! output of one line stays bounded.
extern crate std;

use crate::editor::tests::{completer, FakeConsole};
use crate::editor::{Editor, MAX_LINE};
use crate::{bad_arg, fail, outln, Args, CmdResult, Command, Monitor, Registry};
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt::Write;

/// Output one line may produce, at most.
const MAX_OUTPUT: usize = 64 * 1024;

/// xorshift64* (Vigna 2016): small, seeded, good enough to spread test inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

struct Ctx;

fn echo(_: &mut Ctx, a: &mut Args, o: &mut dyn Write) -> CmdResult {
    let words = a.rest();
    outln!(o, "{}", words.join(" "));
    Ok(())
}

fn sized(_: &mut Ctx, a: &mut Args, o: &mut dyn Write) -> CmdResult {
    let verbose = a.flag("-v");
    let addr = a.u64("address")?;
    let len = a.opt_size("length")?.unwrap_or(16);
    a.finish()?;
    if len > 64 {
        return Err(fail!("length {} is more than 64", len));
    }
    let data: Vec<u8> = (0..len as u8).collect();
    crate::out::hexdump(o, addr, &data, if verbose { 4 } else { 1 });
    Ok(())
}

fn blk(_: &mut Ctx, a: &mut Args, o: &mut dyn Write) -> CmdResult {
    match a.str()? {
        "list" => {
            a.finish()?;
            outln!(o, "vda  {}", crate::out::HumanSize(1 << 30));
            Ok(())
        }
        "read" => {
            let lba = a.u64("lba")?;
            a.finish()?;
            outln!(o, "read {}", lba);
            Ok(())
        }
        other => Err(bad_arg!("no subcommand '{}'", other)),
    }
}

fn monitor() -> Monitor<Ctx> {
    let c = |name, subcommands, usage, run| Command {
        name,
        group: "test",
        subcommands,
        usage,
        help: "a test command",
        long_help: "",
        run,
    };
    Monitor::new(Registry::new(vec![
        c("echo", &[], "echo [WORD...]", echo as crate::Handler<Ctx>),
        c("md", &[], "md ADDR [LEN] [-v]", sized),
        c("blk", &["list", "read"], "blk list|read LBA", blk),
    ]))
}

/// A random line: either random bytes (as the console might deliver them) or words from a
/// vocabulary that reaches deep into the commands.
fn random_line(rng: &mut Rng) -> String {
    if rng.below(3) == 0 {
        let len = rng.below(200);
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        return String::from_utf8_lossy(&bytes).into_owned();
    }
    const WORDS: &[&str] = &[
        "echo",
        "md",
        "blk",
        "help",
        "history",
        "list",
        "read",
        "-v",
        "0",
        "0x10",
        "4K",
        "99G",
        "0xffffffffffffffff",
        "18446744073709551616",
        "\"",
        "\"a b\"",
        "x",
        "",
        " ",
        "\t",
        "é",
        "\x1b[2J",
        "0x",
        "_",
        "65",
    ];
    let n = rng.below(6);
    let mut line = String::new();
    for _ in 0..n {
        line.push_str(rng.pick(WORDS));
        line.push(' ');
    }
    line
}

#[test]
fn monitor_survives_random_lines() {
    let mut rng = Rng(0x5eed_cafe_f00d_0001);
    let mut m = monitor();
    let mut outcomes = [0usize; 4];
    for _ in 0..20_000 {
        let line = random_line(&mut rng);
        let fault = rng.below(10) == 0;
        let mut out = String::new();
        let outcome = m.execute(&mut Ctx, &line, &mut out, &mut |run, c, a, o| {
            if fault {
                None
            } else {
                Some(run(c, a, o))
            }
        });
        outcomes[outcome as usize] += 1;
        assert!(out.len() < MAX_OUTPUT, "{:?}", line);
        assert!(
            out.is_empty() || out.ends_with('\n'),
            "{:?} -> {:?}",
            line,
            out
        );
        if out.starts_with("unknown command") {
            assert!(
                !out.trim_end().contains(|c: char| c.is_control()),
                "{:?}",
                out
            );
        }
        assert!(m.history().len() <= crate::History::DEFAULT_CAPACITY);
    }
    // The vocabulary reaches every outcome, so the run exercised more than error paths.
    assert!(outcomes.iter().all(|n| *n > 100), "{:?}", outcomes);
}

/// A byte a terminal (or line noise) might send, biased towards the interesting ones.
fn random_byte(rng: &mut Rng) -> u8 {
    const SPECIAL: &[u8] =
        b"\x1b[O~;0123456789ABCDHF\r\n\t\x7f\x08\x01\x03\x04\x05\x0b\x0c\x15\x17\x10\x0e";
    match rng.below(4) {
        0 => rng.next() as u8,
        1 => b'a' + rng.below(26) as u8,
        _ => *rng.pick(SPECIAL),
    }
}

#[test]
fn editor_survives_random_bytes() {
    let mut rng = Rng(0x5eed_cafe_f00d_0002);
    for _ in 0..3_000 {
        let len = rng.below(600);
        let input: Vec<u8> = (0..len).map(|_| random_byte(&mut rng)).collect();
        let mut ed = Editor::new(completer());
        let mut io = FakeConsole::new(&input);
        let mut written = 0;
        while let Ok(line) = ed.readline("capmon> ", &mut io) {
            assert!(line.len() <= MAX_LINE);
            assert!(
                line.bytes().all(|b| (0x20..=0x7e).contains(&b)),
                "{:?}",
                line
            );
            assert!(io.output.len() - written < MAX_OUTPUT);
            written = io.output.len();
        }
        assert!(io.input.is_empty());
    }
}

/// Editing keys with the bytes that send them and what they do to a plain model of the line.
#[derive(Clone, Copy, Debug)]
enum Op {
    Char(u8),
    Left,
    Right,
    Home,
    End,
    Backspace,
    Delete,
    KillToEnd,
    KillToStart,
    KillWord,
}

impl Op {
    fn random(rng: &mut Rng) -> (Op, &'static [u8]) {
        const CHARS: &[u8] = b"ab xyz-0";
        match rng.below(14) {
            0..=4 => {
                let i = rng.below(CHARS.len());
                (Op::Char(CHARS[i]), &CHARS[i..i + 1])
            }
            5 => (Op::Left, *rng.pick(&[&b"\x1b[D"[..], b"\x02", b"\x1bOD"])),
            6 => (
                Op::Right,
                *rng.pick(&[&b"\x1b[C"[..], b"\x06", b"\x1b[1;5C"]),
            ),
            7 => (
                Op::Home,
                *rng.pick(&[&b"\x1b[H"[..], b"\x01", b"\x1b[1~", b"\x1bOH"]),
            ),
            8 => (Op::End, *rng.pick(&[&b"\x1b[F"[..], b"\x05", b"\x1b[4~"])),
            9 => (Op::Backspace, *rng.pick(&[&b"\x7f"[..], b"\x08"])),
            10 => (Op::Delete, *rng.pick(&[&b"\x1b[3~"[..], b"\x04"])),
            11 => (Op::KillToEnd, b"\x0b"),
            12 => (Op::KillToStart, b"\x15"),
            _ => (Op::KillWord, b"\x17"),
        }
    }

    fn apply(self, line: &mut Vec<u8>, cursor: &mut usize) {
        match self {
            Op::Char(c) => {
                line.insert(*cursor, c);
                *cursor += 1;
            }
            Op::Left => *cursor = cursor.saturating_sub(1),
            Op::Right => *cursor = (*cursor + 1).min(line.len()),
            Op::Home => *cursor = 0,
            Op::End => *cursor = line.len(),
            Op::Backspace if *cursor > 0 => {
                *cursor -= 1;
                line.remove(*cursor);
            }
            Op::Delete if *cursor < line.len() => {
                line.remove(*cursor);
            }
            Op::Backspace | Op::Delete => {}
            Op::KillToEnd => line.truncate(*cursor),
            Op::KillToStart => {
                line.drain(..*cursor);
                *cursor = 0;
            }
            Op::KillWord => {
                let mut start = *cursor;
                while start > 0 && line[start - 1] == b' ' {
                    start -= 1;
                }
                while start > 0 && line[start - 1] != b' ' {
                    start -= 1;
                }
                line.drain(start..*cursor);
                *cursor = start;
            }
        }
    }
}

/// A one-row terminal that understands what the editor sends: text, CR, BS, BEL, and the
/// CSI sequences K (erase to end), C/D (cursor right/left), 2J and H (clear, home).
fn screen(output: &[u8]) -> (Vec<u8>, usize) {
    let mut row: Vec<u8> = Vec::new();
    let mut col = 0;
    let mut i = 0;
    while i < output.len() {
        match output[i] {
            b'\r' => col = 0,
            0x08 => col -= 1,
            0x07 => {}
            0x1b => {
                assert_eq!(output[i + 1], b'[');
                let mut j = i + 2;
                while output[j].is_ascii_digit() {
                    j += 1;
                }
                let n: usize = core::str::from_utf8(&output[i + 2..j])
                    .unwrap()
                    .parse()
                    .unwrap_or(1);
                match output[j] {
                    b'K' => row.truncate(col),
                    b'C' => col += n,
                    b'D' => col -= n,
                    b'J' | b'H' => {
                        row.clear();
                        col = 0;
                    }
                    other => panic!("unexpected CSI {}", other as char),
                }
                i = j;
            }
            b => {
                assert!((0x20..=0x7e).contains(&b), "byte {:#x} on screen", b);
                if row.len() <= col {
                    row.resize(col + 1, b' ');
                }
                row[col] = b;
                col += 1;
            }
        }
        i += 1;
    }
    (row, col)
}

#[test]
fn editor_matches_a_model_of_the_line_and_the_screen() {
    let mut rng = Rng(0x5eed_cafe_f00d_0003);
    for _ in 0..5_000 {
        let mut line = Vec::new();
        let mut cursor = 0;
        let mut input = Vec::new();
        let mut ops = Vec::new();
        for _ in 0..rng.below(40) {
            let (op, bytes) = Op::random(&mut rng);
            op.apply(&mut line, &mut cursor);
            input.extend_from_slice(bytes);
            ops.push(op);
        }
        input.push(b'\r');
        let mut ed = Editor::new(completer());
        let mut io = FakeConsole::new(&input);
        let got = String::from(ed.readline("capmon> ", &mut io).unwrap());
        assert_eq!(got.as_bytes(), line.as_slice(), "{:?}", ops);

        let shown = io
            .output
            .strip_suffix(b"\r\n")
            .expect("Enter ends with CRLF");
        let (row, col) = screen(shown);
        let mut want = Vec::from(&b"capmon> "[..]);
        want.extend_from_slice(&line);
        let trim = |v: &[u8]| v.iter().rposition(|b| *b != b' ').map_or(0, |i| i + 1);
        assert_eq!(&row[..trim(&row)], &want[..trim(&want)], "{:?}", ops);
        assert_eq!(col, "capmon> ".len() + cursor, "{:?}", ops);
    }
}
