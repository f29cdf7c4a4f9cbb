//! NVMe over PCIe (NVM Express Base Specification 2.0, NVMe over PCIe Transport 1.0): controller
//! bring-up, admin and I/O queue pairs, PRP lists, identify/log decoding, and every active
//! namespace as a [`capmon_block::BlockDevice`].
#![no_std]
extern crate alloc;

#[cfg(any(test, feature = "fake"))]
extern crate std;

#[cfg(any(test, feature = "fake"))]
pub mod fake;
#[cfg(test)]
mod tests;

pub mod ctrl;
pub mod identify;
pub mod ns;
pub mod prp;
pub mod queue;
pub mod regs;
pub mod status;

pub use ctrl::{Controller, Env, NsInfo, NvmeError, QueueReport};
pub use ns::Namespace;
pub use status::Status;

/// PCI class 01h (mass storage), subclass 08h (non-volatile memory), programming interface
/// 02h (NVM Express I/O controller).
pub fn is_nvme(class: u8, subclass: u8, prog_if: u8) -> bool {
    class == 0x01 && subclass == 0x08 && prog_if == 0x02
}
