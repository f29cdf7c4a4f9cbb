//! Test patterns: byte streams that are a function of the absolute byte offset on a device, so
//! any range can be written by one tool and checked by another (see scripts/blkpattern.py).
//!
//! For the byte at absolute device offset `x` (= lba * sector_size + index in the sector):
//! - `Byte(b)` (`0xa5`):   `b`
//! - `Inc` (`inc`):        `x mod 256`
//! - `Seed(n)` (`seed:N`): byte `x mod 8` (little-endian) of `splitmix64(n, x div 8)`, where
//!   `splitmix64(n, k)` is the (k+1)-th output of Vigna's splitmix64 seeded with `n`:
//!   ```text
//!   z = n + (k + 1) * 0x9e3779b97f4a7c15            (mod 2^64)
//!   z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9         (mod 2^64)
//!   z = (z ^ (z >> 27)) * 0x94d049bb133111eb         (mod 2^64)
//!   z = z ^ (z >> 31)
//!   ```
use core::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pattern {
    Byte(u8),
    Inc,
    Seed(u64),
}

/// Why a word is not a pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatternError {
    /// Not `inc`, `seed:N` or a byte value.
    Unknown,
    /// A byte value above 255.
    ByteTooLarge,
    /// `seed:` followed by something that is not a number.
    BadSeed,
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PatternError::Unknown => "unknown pattern (use a byte like 0xa5, inc, or seed:N)",
            PatternError::ByteTooLarge => "pattern byte must be at most 0xff",
            PatternError::BadSeed => "seed must be a number (decimal or 0x hex)",
        })
    }
}

const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// The (k+1)-th output of splitmix64 seeded with `seed` (formula in the module comment).
pub fn splitmix64(seed: u64, k: u64) -> u64 {
    let mut z = seed.wrapping_add(k.wrapping_add(1).wrapping_mul(GAMMA));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A decimal or `0x` hex number.
fn number(s: &str) -> Option<u64> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) if !h.is_empty() => u64::from_str_radix(h, 16).ok(),
        Some(_) => None,
        None => s.parse().ok(),
    }
}

impl Pattern {
    /// `0xa5` (or `165`), `inc`, `seed:N`.
    pub fn parse(s: &str) -> Result<Pattern, PatternError> {
        if s == "inc" {
            return Ok(Pattern::Inc);
        }
        if let Some(n) = s.strip_prefix("seed:") {
            return number(n).map(Pattern::Seed).ok_or(PatternError::BadSeed);
        }
        let v = number(s).ok_or(PatternError::Unknown)?;
        u8::try_from(v)
            .map(Pattern::Byte)
            .map_err(|_| PatternError::ByteTooLarge)
    }

    /// The byte at absolute device offset `x`.
    pub fn byte_at(&self, x: u64) -> u8 {
        match *self {
            Pattern::Byte(b) => b,
            Pattern::Inc => x as u8,
            Pattern::Seed(n) => (splitmix64(n, x / 8) >> (8 * (x % 8))) as u8,
        }
    }

    /// Fills `buf` with the bytes at absolute offsets `offset ..`.
    pub fn fill(&self, offset: u64, buf: &mut [u8]) {
        match *self {
            Pattern::Byte(b) => buf.fill(b),
            Pattern::Inc => {
                for (i, v) in buf.iter_mut().enumerate() {
                    *v = offset.wrapping_add(i as u64) as u8;
                }
            }
            Pattern::Seed(n) => {
                let mut word = splitmix64(n, offset / 8);
                for (i, v) in buf.iter_mut().enumerate() {
                    let x = offset.wrapping_add(i as u64);
                    if x.is_multiple_of(8) && i != 0 {
                        word = splitmix64(n, x / 8);
                    }
                    *v = (word >> (8 * (x % 8))) as u8;
                }
            }
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pattern::Byte(b) => write!(f, "{:#04x}", b),
            Pattern::Inc => f.write_str("inc"),
            Pattern::Seed(n) => write!(f, "seed:{}", n),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn parses_patterns() {
        assert_eq!(Pattern::parse("0xa5"), Ok(Pattern::Byte(0xa5)));
        assert_eq!(Pattern::parse("7"), Ok(Pattern::Byte(7)));
        assert_eq!(Pattern::parse("inc"), Ok(Pattern::Inc));
        assert_eq!(Pattern::parse("seed:42"), Ok(Pattern::Seed(42)));
        assert_eq!(Pattern::parse("seed:0x10"), Ok(Pattern::Seed(16)));
        assert_eq!(Pattern::parse("0x100"), Err(PatternError::ByteTooLarge));
        assert_eq!(Pattern::parse("seed:"), Err(PatternError::BadSeed));
        assert_eq!(Pattern::parse("zeros"), Err(PatternError::Unknown));
        assert_eq!(Pattern::parse("0x"), Err(PatternError::Unknown));
        assert_eq!(alloc::format!("{}", Pattern::Seed(3)), "seed:3");
        assert_eq!(alloc::format!("{}", Pattern::Byte(0xa5)), "0xa5");
    }

    #[test]
    fn splitmix64_reference_values() {
        // Reference outputs of splitmix64 seeded with 0 (Vigna's splitmix64.c).
        assert_eq!(splitmix64(0, 0), 0xe220_a839_7b1d_cdaf);
        assert_eq!(splitmix64(0, 1), 0x6e78_9e6a_a1b9_65f4);
        assert_eq!(splitmix64(0, 2), 0x06c4_5d18_8009_454f);
    }

    #[test]
    fn inc_depends_on_absolute_offset() {
        let mut b = [0u8; 4];
        Pattern::Inc.fill(510, &mut b);
        assert_eq!(b, [0xfe, 0xff, 0x00, 0x01]);
    }

    #[test]
    fn fill_matches_byte_at_at_any_alignment() {
        for p in [Pattern::Seed(7), Pattern::Inc, Pattern::Byte(0x5a)] {
            for start in [0u64, 3, 8, 4093] {
                let mut b = [0u8; 37];
                p.fill(start, &mut b);
                for (i, v) in b.iter().enumerate() {
                    assert_eq!(
                        *v,
                        p.byte_at(start + i as u64),
                        "{} at {}",
                        p,
                        start + i as u64
                    );
                }
            }
        }
        // Little-endian bytes of the first word.
        let mut b = [0u8; 8];
        Pattern::Seed(0).fill(0, &mut b);
        assert_eq!(u64::from_le_bytes(b), 0xe220_a839_7b1d_cdaf);
    }

    /// scripts/blkpattern.py must produce the same bytes (skips without python3).
    #[test]
    fn matches_the_host_script() {
        extern crate std;
        use sha2::{Digest, Sha256};
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/blkpattern.py");
        for (p, off, len) in [
            (Pattern::Seed(12345), 4093u64, 70_000usize),
            (Pattern::Inc, 510, 1000),
            (Pattern::Byte(0xa5), 7, 9),
        ] {
            let out = std::process::Command::new("python3")
                .args([
                    script,
                    "sha256",
                    &alloc::format!("{}", p),
                    &off.to_string(),
                    &len.to_string(),
                ])
                .output();
            let out = match out {
                Ok(o) if o.status.success() => o.stdout,
                Ok(o) => panic!(
                    "blkpattern.py failed: {}",
                    std::string::String::from_utf8_lossy(&o.stderr)
                ),
                Err(e) => {
                    std::eprintln!("SKIP matches_the_host_script: python3 not runnable ({})", e);
                    return;
                }
            };
            let mut buf = alloc::vec![0u8; len];
            p.fill(off, &mut buf);
            let ours: alloc::string::String = Sha256::digest(&buf)
                .iter()
                .map(|b| alloc::format!("{:02x}", b))
                .collect();
            assert_eq!(std::str::from_utf8(&out).unwrap().trim(), ours, "{}", p);
        }
    }
}
