//! Pure parsing of monitor input: words, numbers, sizes.
use alloc::vec::Vec;

/// Why a word is not a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumError {
    Empty,
    BadDigit,
    Overflow,
    BadSuffix,
}

impl core::fmt::Display for NumError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            NumError::Empty => "empty number",
            NumError::BadDigit => "not a number (use decimal or 0x hex)",
            NumError::Overflow => "number too large",
            NumError::BadSuffix => "bad size suffix (use K, M or G)",
        })
    }
}

/// A decimal or `0x`-prefixed hexadecimal number; `_` separators are allowed.
pub fn number(s: &str) -> Result<u64, NumError> {
    let (digits, radix) = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => (h, 16),
        None => (s, 10),
    };
    let mut any = false;
    let mut v: u64 = 0;
    for c in digits.chars() {
        if c == '_' {
            continue;
        }
        let d = c.to_digit(radix).ok_or(NumError::BadDigit)? as u64;
        v = v
            .checked_mul(radix as u64)
            .and_then(|v| v.checked_add(d))
            .ok_or(NumError::Overflow)?;
        any = true;
    }
    if any {
        Ok(v)
    } else {
        Err(NumError::Empty)
    }
}

/// A number with an optional binary suffix: `K` (KiB), `M` (MiB), `G` (GiB); case-insensitive.
pub fn size(s: &str) -> Result<u64, NumError> {
    let (body, shift) = match s.as_bytes().last() {
        Some(b'k' | b'K') => (&s[..s.len() - 1], 10),
        Some(b'm' | b'M') => (&s[..s.len() - 1], 20),
        Some(b'g' | b'G') => (&s[..s.len() - 1], 30),
        _ => (s, 0),
    };
    if shift != 0 && body.starts_with("0x") {
        return Err(NumError::BadSuffix);
    }
    let v = number(body)?;
    v.checked_mul(1u64 << shift).ok_or(NumError::Overflow)
}

/// Splits a command line into words at ASCII whitespace. Double quotes group a word with spaces.
pub fn words(line: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = line.trim_start();
    while !rest.is_empty() {
        if let Some(q) = rest.strip_prefix('"') {
            let end = q.find('"').unwrap_or(q.len());
            out.push(&q[..end]);
            rest = q.get(end + 1..).unwrap_or("").trim_start();
        } else {
            let end = rest
                .find(|c: char| c.is_ascii_whitespace())
                .unwrap_or(rest.len());
            out.push(&rest[..end]);
            rest = rest[end..].trim_start();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(number("42"), Ok(42));
        assert_eq!(number("0x1F"), Ok(31));
        assert_eq!(number("1_000"), Ok(1000));
        assert_eq!(number(""), Err(NumError::Empty));
        assert_eq!(number("0x"), Err(NumError::Empty));
        assert_eq!(number("12a"), Err(NumError::BadDigit));
        assert_eq!(number("0xffffffffffffffff"), Ok(u64::MAX));
        assert_eq!(number("0x10000000000000000"), Err(NumError::Overflow));
    }

    #[test]
    fn sizes() {
        assert_eq!(size("4K"), Ok(4096));
        assert_eq!(size("1m"), Ok(1 << 20));
        assert_eq!(size("2G"), Ok(2 << 30));
        assert_eq!(size("0x200"), Ok(512));
        assert_eq!(size("K"), Err(NumError::Empty));
        assert_eq!(size("99999999999999G"), Err(NumError::Overflow));
    }

    #[test]
    fn splitting() {
        assert_eq!(words("  md 0x10  4 -b "), ["md", "0x10", "4", "-b"]);
        assert_eq!(words("echo \"a b\" c"), ["echo", "a b", "c"]);
        assert_eq!(words("echo \"unterminated"), ["echo", "unterminated"]);
        assert!(words("   ").is_empty());
    }
}
