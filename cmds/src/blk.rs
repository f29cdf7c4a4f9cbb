//! The `blk` command family.
use alloc::vec::Vec;
use capmon_shell::Command;

/// What the `blk` commands need from the machine.
pub trait BlkHost {}

pub fn commands<S: BlkHost>() -> Vec<Command<S>> {
    Vec::new()
}
