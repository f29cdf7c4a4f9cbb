//! Positional arguments and flags of one command invocation.
use crate::{parse, CmdError};
use alloc::vec::Vec;

/// The words after the command name. Flags (`-v`) are taken out with `flag`, positional words
/// with the `next_*` helpers; `finish` reports leftovers as a usage error.
pub struct Args<'a> {
    words: Vec<&'a str>,
}

impl<'a> Args<'a> {
    pub fn new(words: Vec<&'a str>) -> Self {
        Args { words }
    }

    /// Removes `name` (e.g. `-v`) wherever it appears; true if it was there.
    pub fn flag(&mut self, name: &str) -> bool {
        match self.words.iter().position(|w| *w == name) {
            Some(i) => {
                self.words.remove(i);
                true
            }
            None => false,
        }
    }

    /// Removes the first of `names` that appears and returns it (for `-b|-w|-d|-q`).
    pub fn one_of(&mut self, names: &[&'static str]) -> Result<Option<&'static str>, CmdError> {
        let mut found = None;
        for n in names {
            if self.flag(n) {
                if found.is_some() {
                    return Err(CmdError::Usage);
                }
                found = Some(*n);
            }
        }
        Ok(found)
    }

    /// How many positional words remain.
    pub fn len(&self) -> usize {
        self.words.len()
    }

    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// The next positional word, if any.
    pub fn opt_str(&mut self) -> Option<&'a str> {
        if self.words.is_empty() {
            None
        } else {
            Some(self.words.remove(0))
        }
    }

    /// The next positional word; a usage error if missing.
    pub fn str(&mut self) -> Result<&'a str, CmdError> {
        self.opt_str().ok_or(CmdError::Usage)
    }

    /// The next word as a number (decimal or `0x` hex).
    pub fn u64(&mut self, what: &str) -> Result<u64, CmdError> {
        let w = self.str()?;
        parse::number(w).map_err(|e| crate::bad_arg!("{}: {}", what, e))
    }

    /// The next word as a number, if present.
    pub fn opt_u64(&mut self, what: &str) -> Result<Option<u64>, CmdError> {
        match self.opt_str() {
            None => Ok(None),
            Some(w) => parse::number(w)
                .map(Some)
                .map_err(|e| crate::bad_arg!("{}: {}", what, e)),
        }
    }

    /// The next word as a size (`4096`, `0x1000`, `4K`, `1M`, `2G`).
    pub fn size(&mut self, what: &str) -> Result<u64, CmdError> {
        let w = self.str()?;
        parse::size(w).map_err(|e| crate::bad_arg!("{}: {}", what, e))
    }

    /// The next word as a size, if present.
    pub fn opt_size(&mut self, what: &str) -> Result<Option<u64>, CmdError> {
        match self.opt_str() {
            None => Ok(None),
            Some(w) => parse::size(w)
                .map(Some)
                .map_err(|e| crate::bad_arg!("{}: {}", what, e)),
        }
    }

    /// All remaining words.
    pub fn rest(&mut self) -> Vec<&'a str> {
        core::mem::take(&mut self.words)
    }

    /// A usage error if any words are left over.
    pub fn finish(&self) -> Result<(), CmdError> {
        match self.words.first() {
            None => Ok(()),
            Some(w) => Err(crate::bad_arg!("unexpected argument '{}'", w)),
        }
    }
}
