//! The `virtio` command family.
use alloc::vec::Vec;
use capmon_shell::Command;

/// What the `virtio` commands need from the machine.
pub trait VirtioHost {}

pub fn commands<S: VirtioHost>() -> Vec<Command<S>> {
    Vec::new()
}
