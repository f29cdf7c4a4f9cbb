//! The `pci` command family.
use alloc::vec::Vec;
use capmon_shell::Command;

/// What the `pci` commands need from the machine.
pub trait PciHost {}

pub fn commands<S: PciHost>() -> Vec<Command<S>> {
    Vec::new()
}
