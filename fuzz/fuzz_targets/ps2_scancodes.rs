//! capmon_ps2::Decoder on arbitrary scancode bytes (what the keyboard's IRQ feeds it). Never
//! panics; everything it emits is one UTF-8 character or one of its ANSI key sequences.
#![no_main]

use capmon_ps2::Decoder;
use libfuzzer_sys::fuzz_target;

const SEQS: [&[u8]; 7] = [b"\x1b[A", b"\x1b[B", b"\x1b[C", b"\x1b[D", b"\x1b[H", b"\x1b[F", b"\x1b[3~"];

fuzz_target!(|data: &[u8]| {
    let mut d = Decoder::new();
    for &b in data {
        d.feed(b, &mut |out| {
            let ok = SEQS.contains(&out)
                || core::str::from_utf8(out).is_ok_and(|s| s.chars().count() == 1);
            assert!(ok, "{:?}", out);
        });
    }
    assert_eq!(d.bytes, data.len() as u64);
});
