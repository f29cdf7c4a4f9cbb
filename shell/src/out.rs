//! Output helpers shared by commands: hexdumps, sizes.
use core::fmt::Write;

/// Bytes shown on one hexdump line.
const BYTES_PER_LINE: usize = 16;

/// A hexdump of `data`, 16 bytes a line, addresses starting at `base`, with an ASCII column.
/// `unit` is the element width in bytes (1, 2, 4, 8); elements are little-endian.
pub fn hexdump(o: &mut dyn Write, base: u64, data: &[u8], unit: usize) {
    let unit = match unit {
        1 | 2 | 4 | 8 => unit,
        _ => 1,
    };
    // Each element prints as a space and two hex digits per byte it holds.
    let full_width = BYTES_PER_LINE / unit * (1 + 2 * unit);
    for (i, line) in data.chunks(BYTES_PER_LINE).enumerate() {
        // Wrapping: a dump that runs past the top of the address space shows wrapped addresses.
        let addr = base.wrapping_add((i * BYTES_PER_LINE) as u64);
        let _ = write!(o, "{:016x}:", addr);
        let mut width = 0;
        for el in line.chunks(unit) {
            let mut v: u64 = 0;
            for (k, b) in el.iter().enumerate() {
                v |= (*b as u64) << (8 * k);
            }
            let _ = write!(o, " {:0w$x}", v, w = el.len() * 2);
            width += 1 + el.len() * 2;
        }
        // Pad a short last line so its ASCII column lines up with the full lines above it.
        let pad = full_width.saturating_sub(width);
        let _ = write!(o, "{:pad$}  |", "", pad = pad);
        for b in line {
            let c = if (0x20..0x7f).contains(b) {
                *b as char
            } else {
                '.'
            };
            let _ = o.write_char(c);
        }
        let _ = o.write_str("|\n");
    }
}

/// A byte count in the largest binary unit that keeps it readable: `512 B`, `64.0 KiB`, `1.5 GiB`.
pub struct HumanSize(pub u64);

impl core::fmt::Display for HumanSize {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
        let mut v = self.0;
        let mut i = 0;
        while v >= 1024 * 1024 && i < UNITS.len() - 2 {
            v /= 1024;
            i += 1;
        }
        if v >= 1024 && i < UNITS.len() - 1 {
            let tenths = (v % 1024) * 10 / 1024;
            write!(f, "{}.{} {}", v / 1024, tenths, UNITS[i + 1])
        } else {
            write!(f, "{} {}", v, UNITS[i])
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use alloc::string::String;

    #[test]
    fn dump_bytes_and_words() {
        let mut s = String::new();
        hexdump(&mut s, 0x1000, b"ABCDEFGHIJKLMNOPQR", 1);
        assert_eq!(
            s,
            "0000000000001000: 41 42 43 44 45 46 47 48 49 4a 4b 4c 4d 4e 4f 50  |ABCDEFGHIJKLMNOP|\n\
             0000000000001010: 51 52                                            |QR|\n"
        );
        // A half line of words: the ASCII column sits where a full line of words puts it
        // (17 address chars + 4 words of 9 chars + 2 spaces), not where a byte dump puts it.
        let mut s = String::new();
        hexdump(&mut s, 0, &[1, 0, 0, 0, 2, 0, 0, 0], 4);
        assert_eq!(
            s,
            "0000000000000000: 00000001 00000002                    |........|\n"
        );
    }

    /// Column of the first `|` on every line of a dump.
    fn ascii_columns(dump: &str) -> std::vec::Vec<usize> {
        dump.lines().map(|l| l.find('|').unwrap()).collect()
    }

    #[test]
    fn short_last_line_lines_up_for_every_unit_and_length() {
        let data: std::vec::Vec<u8> = (0..32).collect();
        for unit in [1, 2, 4, 8] {
            let mut full = String::new();
            hexdump(&mut full, 0, &data[..16], unit);
            let want = ascii_columns(&full)[0];
            for len in 17..32 {
                let mut s = String::new();
                hexdump(&mut s, 0, &data[..len], unit);
                let cols = ascii_columns(&s);
                assert_eq!(cols, [want, want], "unit {} len {}: {}", unit, len, s);
            }
        }
        // A partial element prints only the bytes it has: 6 bytes as words.
        let mut s = String::new();
        hexdump(&mut s, 0, &[1, 0, 0, 0, 2, 0], 4);
        assert_eq!(
            s,
            "0000000000000000: 00000001 0002                        |......|\n"
        );
    }

    #[test]
    fn addresses_wrap_instead_of_overflowing() {
        let mut s = String::new();
        hexdump(&mut s, u64::MAX - 7, &[0u8; 32], 1);
        assert!(
            s.lines().nth(1).unwrap().starts_with("0000000000000008:"),
            "{}",
            s
        );
    }

    #[test]
    fn human_sizes() {
        assert_eq!(alloc::format!("{}", HumanSize(512)), "512 B");
        assert_eq!(alloc::format!("{}", HumanSize(64 * 1024)), "64.0 KiB");
        assert_eq!(alloc::format!("{}", HumanSize(3 << 29)), "1.5 GiB");
    }
}
