//! ATA/ATAPI over the legacy IDE channels, PIO mode, polled: probing (`ide`) and ATAPI CD-ROMs
//! as block devices (`atapi`). Register layout and protocol: ATA/ATAPI-6 (T13 1410D) §6-§9;
//! packet commands: SCSI MMC.
#![no_std]
extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod ahci;
pub mod atapi;
#[cfg(test)]
pub mod fake;
#[cfg(test)]
pub mod fake_ahci;
pub mod ide;
#[cfg(test)]
mod tests;

use alloc::string::String;
use core::fmt;

pub use atapi::{AtapiCd, IdePacket, PacketTransport};
pub use ide::{probe, Channel, DevKind, Found, Identify, PRIMARY, SECONDARY};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AtaError {
    /// A wait for BSY to clear (or DRQ to set) ran past its bound.
    Timeout { what: &'static str, status: u8 },
    /// The device ended a command with ERR; the error register's value.
    Aborted { command: u8, error: u8 },
    /// A packet command ended in CHECK CONDITION: sense key, ASC, ASCQ (REQUEST SENSE).
    Sense { op: u8, key: u8, asc: u8, ascq: u8 },
    /// The device moved a byte count the protocol does not allow.
    Protocol(String),
    /// No device answered at this position.
    NoDevice,
}

impl fmt::Display for AtaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AtaError::Timeout { what, status } => {
                write!(f, "timed out waiting for {} (status {:#04x})", what, status)
            }
            AtaError::Aborted { command, error } => write!(
                f,
                "command {:#04x} aborted (error register {:#04x})",
                command, error
            ),
            AtaError::Sense { op, key, asc, ascq } => write!(
                f,
                "packet command {:#04x}: {} (sense key {:#x}, ASC {:#04x}, ASCQ {:#04x})",
                op,
                sense_text(*key, *asc),
                key,
                asc,
                ascq
            ),
            AtaError::Protocol(w) => write!(f, "protocol error: {}", w),
            AtaError::NoDevice => write!(f, "no device"),
        }
    }
}

/// The words for the sense data a CD-ROM commonly reports (SPC-3 §4.5.6, MMC ASC codes).
fn sense_text(key: u8, asc: u8) -> &'static str {
    match (key, asc) {
        (0x2, 0x3a) => "no medium",
        (0x2, 0x04) => "not ready, becoming ready",
        (0x2, _) => "not ready",
        (0x3, _) => "medium error",
        (0x4, _) => "hardware error",
        (0x5, 0x21) => "logical block address out of range",
        (0x5, _) => "illegal request",
        (0x6, _) => "unit attention",
        (0xb, _) => "aborted command",
        _ => "check condition",
    }
}
