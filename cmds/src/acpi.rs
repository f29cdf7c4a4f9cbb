//! The `acpi` command family.
use alloc::vec::Vec;
use capmon_shell::Command;

/// What the `acpi` commands need from the machine.
pub trait AcpiHost {}

pub fn commands<S: AcpiHost>() -> Vec<Command<S>> {
    Vec::new()
}
