//! The naming rules shared by Namespace names and Directory paths.
//!
//! A name is one or more components joined by `/`. Every component is non-empty, is neither `.`
//! nor `..`, holds no control character (so a name printed at the prompt cannot move the
//! cursor or fake a prompt) and is at most `MAX_COMPONENT` bytes; the whole name is at most
//! `MAX_NAME` bytes. There is no leading `/`: names are always relative to the capability they
//! are handed to, which is what keeps a confined Namespace or Directory from escaping.
use crate::error::{Result, StoreError};
use alloc::string::ToString;
use core::fmt;

pub const MAX_NAME: usize = 1024;
pub const MAX_COMPONENT: usize = 255;

/// Checks `name` against the rules above.
pub fn check(name: &str) -> Result<()> {
    let bad = |why| {
        Err(StoreError::InvalidName {
            name: clip(name).to_string(),
            why,
        })
    };
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > MAX_NAME {
        return bad("longer than 1024 bytes");
    }
    if name.starts_with('/') {
        return bad("absolute (names are relative to the capability)");
    }
    for c in name.split('/') {
        if c.is_empty() {
            return bad("empty component");
        }
        if c == "." || c == ".." {
            return bad("'.' and '..' are not names");
        }
        if c.len() > MAX_COMPONENT {
            return bad("a component longer than 255 bytes");
        }
        if c.chars().any(|ch| ch.is_control()) {
            return bad("control character");
        }
    }
    Ok(())
}

/// Checks one directory entry name: a valid name without `/`.
pub fn check_component(name: &str) -> Result<()> {
    check(name)?;
    if name.contains('/') {
        return Err(StoreError::InvalidName {
            name: clip(name).to_string(),
            why: "a '/' in an entry name",
        });
    }
    Ok(())
}

/// Checks a prefix for `Namespace::sub`: a valid name, optionally ending in `/`.
pub fn check_prefix(prefix: &str) -> Result<()> {
    check(prefix.strip_suffix('/').unwrap_or(prefix))
}

/// Checks a path handed to a Directory: empty (the directory itself) or a valid name.
pub fn check_path(path: &str) -> Result<()> {
    if path.is_empty() {
        Ok(())
    } else {
        check(path)
    }
}

/// At most 64 bytes of `s` (on a character boundary), for error messages.
fn clip(s: &str) -> &str {
    let mut end = s.len().min(64);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Displays a string with control characters escaped (`\x1b`), so that names read from a disk
/// can be printed safely.
pub struct Shown<'a>(pub &'a str);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for ch in self.0.chars() {
            if ch.is_control() {
                write!(f, "\\x{:02x}", ch as u32)?;
            } else {
                fmt::Write::write_char(f, ch)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;
    use alloc::string::String;

    #[test]
    fn good_names() {
        for n in [
            "a",
            "a/b",
            "apps/game-1/save",
            "ünïcødé/名前",
            "x.y",
            "...",
            ".hidden",
        ] {
            assert_eq!(check(n), Ok(()), "{}", n);
        }
        let long: String = "a".repeat(255);
        assert_eq!(check(&long), Ok(()));
    }

    #[test]
    fn bad_names() {
        let long_c: String = "a".repeat(256);
        let long_n: String = ["b"; 600].join("/");
        let cases = [
            ("", "empty"),
            ("/a", "absolute (names are relative to the capability)"),
            ("a//b", "empty component"),
            ("a/", "empty component"),
            ("..", "'.' and '..' are not names"),
            ("a/../b", "'.' and '..' are not names"),
            ("./a", "'.' and '..' are not names"),
            (long_c.as_str(), "a component longer than 255 bytes"),
            (long_n.as_str(), "longer than 1024 bytes"),
            ("a\x1b[2Jb", "control character"),
            ("a\rb", "control character"),
        ];
        for (n, why) in cases {
            match check(n) {
                Err(StoreError::InvalidName { why: w, .. }) => assert_eq!(w, why, "{:?}", n),
                other => panic!("{:?}: {:?}", n, other),
            }
        }
    }

    #[test]
    fn prefixes_and_paths() {
        assert_eq!(check_prefix("apps/"), Ok(()));
        assert_eq!(check_prefix("apps"), Ok(()));
        assert!(check_prefix("").is_err());
        assert!(check_prefix("/").is_err());
        assert_eq!(check_path(""), Ok(()));
        assert!(check_path("/").is_err());
    }

    #[test]
    fn shown_escapes_control_characters() {
        assert_eq!(format!("{}", Shown("a\x1b[2J\rb")), "a\\x1b[2J\\x0db");
    }
}
