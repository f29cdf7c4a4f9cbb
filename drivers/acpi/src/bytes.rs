//! Bounds-checked little-endian field access over a table's bytes.
//!
//! Every table is copied out of physical memory once, then decoded from a byte slice with these
//! helpers, so a short or lying table gives `None` (turned into `AcpiError::Truncated`), never a
//! read past its end.

pub(crate) fn u8_at(b: &[u8], off: usize) -> Option<u8> {
    b.get(off).copied()
}

pub(crate) fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes(array_at(b, off)?))
}

pub(crate) fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(array_at(b, off)?))
}

pub(crate) fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_le_bytes(array_at(b, off)?))
}

pub(crate) fn array_at<const N: usize>(b: &[u8], off: usize) -> Option<[u8; N]> {
    b.get(off..off.checked_add(N)?)?.try_into().ok()
}

/// ACPI 6.5 §5.2.5.3 / §5.2.6: a structure is valid when all its bytes sum to zero (mod 256).
pub(crate) fn checksum_ok(b: &[u8]) -> bool {
    b.iter().fold(0u8, |s, x| s.wrapping_add(*x)) == 0
}

/// An OEM string (OEM ID, OEM table ID) for display: trailing spaces and NULs trimmed,
/// anything unprintable shown as '.', "-" when empty.
pub fn oem_str(b: &[u8]) -> alloc::string::String {
    let end = b
        .iter()
        .rposition(|c| *c != b' ' && *c != 0)
        .map_or(0, |i| i + 1);
    let s: alloc::string::String = b[..end]
        .iter()
        .map(|c| {
            if (0x21..0x7f).contains(c) {
                *c as char
            } else {
                '.'
            }
        })
        .collect();
    if s.is_empty() {
        alloc::string::String::from("-")
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_bounded() {
        let b = [1, 2, 3, 4, 5, 6, 7, 8];
        assert_eq!(u8_at(&b, 7), Some(8));
        assert_eq!(u8_at(&b, 8), None);
        assert_eq!(u16_at(&b, 6), Some(0x0807));
        assert_eq!(u16_at(&b, 7), None);
        assert_eq!(u32_at(&b, 4), Some(0x0807_0605));
        assert_eq!(u32_at(&b, 5), None);
        assert_eq!(u64_at(&b, 0), Some(0x0807_0605_0403_0201));
        assert_eq!(u64_at(&b, 1), None);
        assert_eq!(u32_at(&b, usize::MAX), None);
    }

    #[test]
    fn checksums() {
        assert!(checksum_ok(&[]));
        assert!(checksum_ok(&[0x80, 0x80]));
        assert!(!checksum_ok(&[0x80, 0x81]));
    }

    #[test]
    fn oem_strings() {
        assert_eq!(oem_str(b"BOCHS "), "BOCHS");
        assert_eq!(oem_str(b"BXPC\0\0\0\0"), "BXPC");
        assert_eq!(oem_str(b"A B\x01  "), "A.B.");
        assert_eq!(oem_str(b"      "), "-");
    }
}
