//! System commands: version, mem, md, mw, cpuid, uptime, echo, log, reboot, poweroff.
use alloc::vec::Vec;
use capmon_shell::Command;

/// What the system commands need from the machine.
pub trait PlatformHost {}

pub fn commands<S: PlatformHost>() -> Vec<Command<S>> {
    Vec::new()
}
