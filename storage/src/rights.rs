//! What a capability may do.
use core::fmt;
use core::ops::BitAnd;

/// A set of rights. Derived capabilities (`sub`, `read_only`, a lookup) carry the intersection
/// of their source's rights and what they were made with: never more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Rights(u8);

impl Rights {
    pub const NONE: Rights = Rights(0);
    pub const READ: Rights = Rights(1);
    /// Create, replace, remove, bind, unbind, put, delete.
    pub const WRITE: Rights = Rights(2);
    /// Files: write only at the end.
    pub const APPEND: Rights = Rights(4);
    pub const RW: Rights = Rights(1 | 2);
    pub const ALL: Rights = Rights(1 | 2 | 4);

    pub const fn bits(self) -> u8 {
        self.0
    }

    pub const fn from_bits(b: u8) -> Rights {
        Rights(b & 7)
    }

    /// Whether every right of `other` is in `self`.
    pub const fn contains(self, other: Rights) -> bool {
        self.0 & other.0 == other.0
    }

    pub const fn can_read(self) -> bool {
        self.contains(Rights::READ)
    }

    pub const fn can_write(self) -> bool {
        self.contains(Rights::WRITE)
    }

    /// Parses `r`, `rw`, `ra`, `rwa` (any order), or `-` for none.
    pub fn parse(s: &str) -> Option<Rights> {
        if s == "-" {
            return Some(Rights::NONE);
        }
        let mut r = Rights::NONE;
        for c in s.chars() {
            r = Rights(
                r.0 | match c {
                    'r' => 1,
                    'w' => 2,
                    'a' => 4,
                    _ => return None,
                },
            );
        }
        if s.is_empty() {
            None
        } else {
            Some(r)
        }
    }
}

impl BitAnd for Rights {
    type Output = Rights;
    fn bitand(self, o: Rights) -> Rights {
        Rights(self.0 & o.0)
    }
}

/// `rw-`, `r--`, `r-a`: fixed width, for listings.
impl fmt::Display for Rights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = |bit: u8, ch: char| if self.0 & bit != 0 { ch } else { '-' };
        let s = [c(1, 'r'), c(2, 'w'), c(4, 'a')];
        let mut buf = [0u8; 3];
        for (b, ch) in buf.iter_mut().zip(s) {
            *b = ch as u8;
        }
        // `pad`, so a width (`{:<64}`) applies.
        f.pad(core::str::from_utf8(&buf).unwrap_or("---"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

    #[test]
    fn intersection_never_widens() {
        for a in 0..8 {
            for b in 0..8 {
                let (a, b) = (Rights::from_bits(a), Rights::from_bits(b));
                let c = a & b;
                assert!(a.contains(c) && b.contains(c));
            }
        }
    }

    #[test]
    fn parse_and_show() {
        assert_eq!(Rights::parse("rw"), Some(Rights::RW));
        assert_eq!(Rights::parse("wr"), Some(Rights::RW));
        assert_eq!(Rights::parse("r"), Some(Rights::READ));
        assert_eq!(Rights::parse("-"), Some(Rights::NONE));
        assert_eq!(Rights::parse("rx"), None);
        assert_eq!(Rights::parse(""), None);
        assert_eq!(format!("{}", Rights::RW), "rw-");
        assert_eq!(format!("{}", Rights::READ), "r--");
    }
}
