//! The bring-up against a model of the 8042 and its keyboard, and decoding of real set 1
//! scancode sequences.
use super::*;
use capmon_hal::fake::FakeClock;
use std::collections::VecDeque;
use std::string::ToString;
use std::sync::Mutex;
use std::vec::Vec;

/// An 8042: the output buffer, the configuration byte, what the next data byte is for.
struct Fake8042 {
    st: Mutex<State>,
}

struct State {
    present: bool,
    out: VecDeque<u8>,
    config: u8,
    expect_config: bool,
    port1: bool,
    keyboard: bool,
    self_test: u8,
    log: Vec<u8>,
}

impl Fake8042 {
    fn new(present: bool, keyboard: bool, self_test: u8) -> Fake8042 {
        Fake8042 {
            st: Mutex::new(State {
                present,
                out: VecDeque::from([0x1e, 0x9e]), // a key left in the buffer by the firmware
                config: 0x47,
                expect_config: false,
                port1: true,
                keyboard,
                self_test,
                log: Vec::new(),
            }),
        }
    }
}

impl PortIo for Fake8042 {
    fn inb(&self, port: u16) -> u8 {
        let mut s = self.st.lock().unwrap();
        if !s.present {
            return 0xff;
        }
        match port {
            STATUS => u8::from(!s.out.is_empty()),
            DATA => s.out.pop_front().unwrap_or(0),
            _ => 0xff,
        }
    }
    fn outb(&self, port: u16, v: u8) {
        let mut s = self.st.lock().unwrap();
        match port {
            STATUS => {
                s.log.push(v);
                match v {
                    0x20 => {
                        let c = s.config;
                        s.out.push_back(c)
                    }
                    0x60 => s.expect_config = true,
                    0xaa => {
                        let r = s.self_test;
                        s.out.push_back(r);
                        s.config = 0x07; // some controllers reset it
                    }
                    0xab => s.out.push_back(0x00),
                    0xad => {
                        s.port1 = false;
                        s.config |= 0x10;
                    }
                    0xae => {
                        s.port1 = true;
                        s.config &= !0x10;
                    }
                    _ => {}
                }
            }
            DATA => {
                if s.expect_config {
                    s.config = v;
                    // The configuration byte's clock bit is port 1's state.
                    s.port1 = v & 0x10 == 0;
                    s.expect_config = false;
                } else if v == 0xff && s.port1 && s.keyboard {
                    s.out.push_back(0xfa);
                    s.out.push_back(0xaa);
                }
            }
            _ => {}
        }
    }
    fn inw(&self, _: u16) -> u16 {
        0xffff
    }
    fn inl(&self, _: u16) -> u32 {
        0xffff_ffff
    }
    fn outw(&self, _: u16, _: u16) {}
    fn outl(&self, _: u16, _: u32) {}
}

#[test]
fn bring_up_configures_irq1_and_translation_and_resets_the_keyboard() {
    let c = Fake8042::new(true, true, 0x55);
    let clock = FakeClock::new(1000);
    let info = init(&c, &clock).unwrap();
    assert!(info.keyboard);
    assert_eq!(
        info.config & (CFG_IRQ1 | CFG_IRQ2 | CFG_TRANSLATE | CFG_CLOCK1_OFF),
        CFG_IRQ1 | CFG_TRANSLATE
    );
    let s = c.st.lock().unwrap();
    assert_eq!(s.config, info.config);
    assert!(s.port1, "port 1 left enabled");
    assert!(s.out.is_empty(), "the firmware's leftovers were flushed");
    assert_eq!(s.log[..2], [0xad, 0xa7], "both ports disabled first");
}

#[test]
fn a_missing_or_failing_controller_is_named_and_never_hangs() {
    let clock = FakeClock::new(1_000_000);
    assert_eq!(
        init(&Fake8042::new(false, true, 0x55), &clock),
        Err(Ps2Error::NoController)
    );
    assert_eq!(
        init(&Fake8042::new(true, true, 0xfc), &clock),
        Err(Ps2Error::SelfTest(0xfc))
    );
    // No keyboard: the controller is up, the keyboard said nothing.
    let info = init(&Fake8042::new(true, false, 0x55), &clock).unwrap();
    assert!(!info.keyboard);
    assert!(Ps2Error::SelfTest(1).to_string().contains("0x01"));
}

fn typed(codes: &[u8]) -> Vec<u8> {
    let mut d = Decoder::new();
    let mut out = Vec::new();
    for b in codes {
        d.feed(*b, &mut |s| out.extend_from_slice(s));
    }
    out
}

#[test]
fn set1_scancodes_become_what_a_terminal_sends() {
    // v e r (make and break each), Enter.
    assert_eq!(
        typed(&[0x2f, 0xaf, 0x12, 0x92, 0x13, 0x93, 0x1c, 0x9c]),
        b"ver\r"
    );
    // Shift+a, Ctrl+C, Backspace.
    assert_eq!(
        typed(&[0x2a, 0x1e, 0x9e, 0xaa, 0x1d, 0x2e, 0xae, 0x9d, 0x0e, 0x8e]),
        b"A\x03\x7f"
    );
    // Extended keys: up, left, home, end (E0-prefixed).
    assert_eq!(
        typed(&[
            0xe0, 0x48, 0xe0, 0xc8, 0xe0, 0x4b, 0xe0, 0xcb, 0xe0, 0x47, 0xe0, 0xc7, 0xe0, 0x4f,
            0xe0, 0xcf
        ]),
        b"\x1b[A\x1b[D\x1b[H\x1b[F"
    );
    // Garbage does not panic and leaves the decoder usable.
    let mut d = Decoder::new();
    for b in 0..=255u8 {
        d.feed(b, &mut |_| {});
    }
    let mut out = Vec::new();
    d.feed(0x9c, &mut |_| {});
    for b in [0x2a, 0xaa, 0x2f, 0xaf] {
        d.feed(b, &mut |s| out.extend_from_slice(s));
    }
    // (The garbage may have toggled Caps Lock.)
    assert!(out.eq_ignore_ascii_case(b"v"), "{:?}", out);
}
