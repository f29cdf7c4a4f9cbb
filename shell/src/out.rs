//! Output helpers shared by commands: hexdumps, sizes.
use core::fmt::Write;

/// A hexdump of `data`, 16 bytes a line, addresses starting at `base`, with an ASCII column.
/// `unit` is the element width in bytes (1, 2, 4, 8); elements are little-endian.
pub fn hexdump(o: &mut dyn Write, base: u64, data: &[u8], unit: usize) {
    let unit = match unit {
        1 | 2 | 4 | 8 => unit,
        _ => 1,
    };
    for (i, line) in data.chunks(16).enumerate() {
        let _ = write!(o, "{:016x}:", base + (i * 16) as u64);
        for el in line.chunks(unit) {
            let mut v: u64 = 0;
            for (k, b) in el.iter().enumerate() {
                v |= (*b as u64) << (8 * k);
            }
            let _ = write!(o, " {:0w$x}", v, w = el.len() * 2);
        }
        // Pad a short last line so the ASCII column lines up.
        let missing = 16 - line.len();
        let pad = missing / unit * (unit * 2 + 1) + if missing % unit != 0 { missing % unit * 2 + 1 } else { 0 };
        let _ = write!(o, "{:pad$}  |", "", pad = pad);
        for b in line {
            let c = if (0x20..0x7f).contains(b) { *b as char } else { '.' };
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
        let mut s = String::new();
        hexdump(&mut s, 0, &[1, 0, 0, 0, 2, 0, 0, 0], 4);
        assert_eq!(s, "0000000000000000: 00000001 00000002                      |........|\n");
    }

    #[test]
    fn human_sizes() {
        assert_eq!(alloc::format!("{}", HumanSize(512)), "512 B");
        assert_eq!(alloc::format!("{}", HumanSize(64 * 1024)), "64.0 KiB");
        assert_eq!(alloc::format!("{}", HumanSize(3 << 29)), "1.5 GiB");
    }
}
