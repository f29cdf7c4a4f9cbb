//! The PS/2 keyboard: 8042 bring-up (`init`) and scancodes to terminal bytes (`Decoder`).
//! Ports and commands: the IBM PC/AT technical reference, as the OSDev "8042" page collects.
#![no_std]
#[cfg(test)]
extern crate std;

use capmon_hal::{Clock, PortIo};
use core::fmt;
use pc_keyboard::{layouts, DecodedKey, HandleControl, KeyCode, Keyboard, ScancodeSet1};

pub const DATA: u16 = 0x60;
pub const STATUS: u16 = 0x64; // read; COMMAND on write
const OUTPUT_FULL: u8 = 0x01;
const INPUT_FULL: u8 = 0x02;
const CMD_READ_CONFIG: u8 = 0x20;
const CMD_WRITE_CONFIG: u8 = 0x60;
const CMD_DISABLE_2: u8 = 0xa7;
const CMD_SELF_TEST: u8 = 0xaa;
const CMD_TEST_1: u8 = 0xab;
const CMD_DISABLE_1: u8 = 0xad;
const CMD_ENABLE_1: u8 = 0xae;
/// Configuration byte bits: port 1 interrupt, port 2 interrupt, port 1 translation.
const CFG_IRQ1: u8 = 0x01;
const CFG_IRQ2: u8 = 0x02;
const CFG_TRANSLATE: u8 = 0x40;
/// Port 1's clock is off (what CMD_DISABLE_1 sets and CMD_ENABLE_1 clears).
const CFG_CLOCK1_OFF: u8 = 0x10;
/// How long one byte may take to come or go.
const WAIT_NS: u64 = 100_000_000;
/// A keyboard reset's self-test may take longer.
const RESET_NS: u64 = 1_000_000_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ps2Error {
    /// Nothing answers at the 8042's ports (no controller, or one that hangs).
    NoController,
    SelfTest(u8),
    PortTest(u8),
    /// The keyboard did not acknowledge or pass its reset (bring-up goes on without it).
    Keyboard(&'static str),
}

impl fmt::Display for Ps2Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ps2Error::NoController => write!(f, "no 8042 controller answers"),
            Ps2Error::SelfTest(v) => write!(f, "8042 self-test failed ({:#04x}, not 0x55)", v),
            Ps2Error::PortTest(v) => write!(f, "PS/2 port 1 test failed ({:#04x}, not 0x00)", v),
            Ps2Error::Keyboard(w) => write!(f, "keyboard: {}", w),
        }
    }
}

/// What bring-up found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Info {
    /// The configuration byte written (IRQ 1 on, translation on).
    pub config: u8,
    /// Whether the keyboard acknowledged its reset and passed its self-test.
    pub keyboard: bool,
}

struct Ctl<'a> {
    io: &'a dyn PortIo,
    clock: &'a dyn Clock,
}

impl Ctl<'_> {
    fn wait(&self, bit: u8, set: bool, ns: u64) -> bool {
        let t0 = self.clock.now_ns();
        loop {
            let st = self.io.inb(STATUS);
            if st == 0xff {
                return false; // nothing on the bus
            }
            if (st & bit != 0) == set {
                return true;
            }
            if self.clock.now_ns().saturating_sub(t0) > ns {
                return false;
            }
            core::hint::spin_loop();
        }
    }
    fn command(&self, c: u8) -> Result<(), Ps2Error> {
        if !self.wait(INPUT_FULL, false, WAIT_NS) {
            return Err(Ps2Error::NoController);
        }
        self.io.outb(STATUS, c);
        Ok(())
    }
    fn write(&self, v: u8) -> Result<(), Ps2Error> {
        if !self.wait(INPUT_FULL, false, WAIT_NS) {
            return Err(Ps2Error::NoController);
        }
        self.io.outb(DATA, v);
        Ok(())
    }
    fn read(&self, ns: u64) -> Option<u8> {
        self.wait(OUTPUT_FULL, true, ns).then(|| self.io.inb(DATA))
    }
    fn flush(&self) {
        for _ in 0..32 {
            if self.io.inb(STATUS) & OUTPUT_FULL == 0 {
                break;
            }
            self.io.inb(DATA);
        }
    }
}

/// Brings the 8042 and its keyboard up (see the crate README). Interrupts from the controller
/// are enabled by the configuration byte written last; the caller routes IRQ 1 first.
pub fn init(io: &dyn PortIo, clock: &dyn Clock) -> Result<Info, Ps2Error> {
    let c = Ctl { io, clock };
    if io.inb(STATUS) == 0xff {
        return Err(Ps2Error::NoController);
    }
    c.command(CMD_DISABLE_1)?;
    c.command(CMD_DISABLE_2)?;
    c.flush();
    c.command(CMD_READ_CONFIG)?;
    let cfg = c.read(WAIT_NS).ok_or(Ps2Error::NoController)?;
    let quiet = (cfg & !(CFG_IRQ1 | CFG_IRQ2)) | CFG_TRANSLATE;
    c.command(CMD_WRITE_CONFIG)?;
    c.write(quiet)?;
    c.command(CMD_SELF_TEST)?;
    match c.read(WAIT_NS) {
        Some(0x55) => {}
        Some(v) => return Err(Ps2Error::SelfTest(v)),
        None => return Err(Ps2Error::NoController),
    }
    // The self-test may reset the configuration: write it again.
    c.command(CMD_WRITE_CONFIG)?;
    c.write(quiet)?;
    c.command(CMD_TEST_1)?;
    match c.read(WAIT_NS) {
        Some(0x00) => {}
        Some(v) => return Err(Ps2Error::PortTest(v)),
        None => return Err(Ps2Error::NoController),
    }
    c.command(CMD_ENABLE_1)?;
    // Reset the keyboard: ACK, then its self-test result.
    c.write(0xff)?;
    let keyboard = c.read(WAIT_NS) == Some(0xfa) && c.read(RESET_NS) == Some(0xaa);
    c.flush();
    // Port 1's clock on (the byte read at the start had it off: both ports were disabled).
    let config = (quiet | CFG_IRQ1) & !CFG_CLOCK1_OFF;
    c.command(CMD_WRITE_CONFIG)?;
    c.write(config)?;
    Ok(Info { config, keyboard })
}

/// Reads the bytes the controller has for us (at most `max`), from the interrupt handler.
pub fn drain(io: &dyn PortIo, max: usize, mut f: impl FnMut(u8)) {
    for _ in 0..max {
        if io.inb(STATUS) & OUTPUT_FULL == 0 {
            break;
        }
        f(io.inb(DATA));
    }
}

/// Scancodes (set 1) to the bytes a serial terminal would send for the same keys.
pub struct Decoder {
    kb: Keyboard<layouts::Us104Key, ScancodeSet1>,
    /// Scancode bytes seen and ones the decoder refused.
    pub bytes: u64,
    pub errors: u64,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    pub const fn new() -> Decoder {
        Decoder {
            kb: Keyboard::new(
                ScancodeSet1::new(),
                layouts::Us104Key,
                HandleControl::MapLettersToUnicode,
            ),
            bytes: 0,
            errors: 0,
        }
    }

    /// Feeds one scancode byte; the terminal bytes of a key it completes go to `out`.
    pub fn feed(&mut self, b: u8, out: &mut dyn FnMut(&[u8])) {
        self.bytes += 1;
        let ev = match self.kb.add_byte(b) {
            Ok(Some(ev)) => ev,
            Ok(None) => return,
            Err(_) => {
                self.errors += 1;
                self.kb.clear();
                return;
            }
        };
        match self.kb.process_keyevent(ev) {
            Some(DecodedKey::Unicode(c)) => {
                let c = match c {
                    '\n' | '\r' => '\r',
                    '\u{8}' => '\u{7f}',
                    c => c,
                };
                let mut buf = [0u8; 4];
                out(c.encode_utf8(&mut buf).as_bytes());
            }
            Some(DecodedKey::RawKey(k)) => {
                let seq: &[u8] = match k {
                    KeyCode::ArrowUp => b"\x1b[A",
                    KeyCode::ArrowDown => b"\x1b[B",
                    KeyCode::ArrowRight => b"\x1b[C",
                    KeyCode::ArrowLeft => b"\x1b[D",
                    KeyCode::Home => b"\x1b[H",
                    KeyCode::End => b"\x1b[F",
                    KeyCode::Delete => b"\x1b[3~",
                    _ => b"",
                };
                if !seq.is_empty() {
                    out(seq);
                }
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests;
