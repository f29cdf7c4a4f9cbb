//! The block-device boundary: one trait every block driver implements (virtio-blk, NVMe, ATAPI,
//! RAM disk), typed errors, a registry with stable names, and GPT partitions as child devices.
#![no_std]
extern crate alloc;

pub mod bench;
pub mod gpt;
pub mod partition;
pub mod pattern;
pub mod ram;
pub mod range;
pub mod registry;
#[cfg(test)]
mod testdev;

pub use gpt::{Gpt, GptError, GptPartition, Guid};
pub use partition::{Partition, SharedDevice};
pub use pattern::Pattern;
pub use ram::RamDisk;
pub use registry::{Entry, Kind, Registry, ScanError, TableState};

use alloc::string::String;

/// Why a block operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlkError {
    /// The range `lba .. lba+count` is not inside the device (`capacity` sectors).
    OutOfRange { lba: u64, count: u64, capacity: u64 },
    /// The caller's buffer length is not `count * sector_size`, or `count` is zero.
    BadBuffer { len: usize, sector_size: u32 },
    /// The device refused a write.
    ReadOnly,
    /// The device reported an error; `status` is its own status code, `what` names it.
    Device { status: u32, what: &'static str },
    /// The device did not complete the request in time.
    Timeout,
    /// The driver has no memory for the request.
    NoMemory,
    /// Anything else the driver wants to say.
    Other(String),
}

impl core::fmt::Display for BlkError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            BlkError::OutOfRange {
                lba,
                count,
                capacity,
            } => write!(
                f,
                "sectors {}..{} out of range (device has {} sectors)",
                lba,
                lba.saturating_add(*count),
                capacity
            ),
            BlkError::BadBuffer { len, sector_size } => {
                write!(
                    f,
                    "buffer of {} bytes is not a non-zero multiple of the {}-byte sector",
                    len, sector_size
                )
            }
            BlkError::ReadOnly => f.write_str("device is read-only"),
            BlkError::Device { status, what } => {
                write!(f, "device error: {} (status {:#x})", what, status)
            }
            BlkError::Timeout => f.write_str("device timed out"),
            BlkError::NoMemory => f.write_str("out of memory for the request"),
            BlkError::Other(s) => f.write_str(s),
        }
    }
}

/// Identity of a block device, for `blk` listings.
#[derive(Debug, Clone, Default)]
pub struct BlkInfo {
    /// The driver's name: `virtio-blk`, `nvme`, `ram`, `gpt-part`.
    pub driver: &'static str,
    pub model: Option<String>,
    pub serial: Option<String>,
}

/// A device made of fixed-size sectors. Implementations split large requests at the device's
/// own limits; callers may pass any count.
pub trait BlockDevice {
    /// Logical sector size in bytes (512 or 4096 typically).
    fn sector_size(&self) -> u32;
    /// Capacity in sectors.
    fn capacity(&self) -> u64;
    fn read_only(&self) -> bool;
    fn info(&self) -> BlkInfo;
    /// Reads `buf.len() / sector_size` sectors starting at `lba` into `buf`.
    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), BlkError>;
    /// Writes `buf.len() / sector_size` sectors starting at `lba` from `buf`.
    fn write(&mut self, lba: u64, buf: &[u8]) -> Result<(), BlkError>;
    /// Makes previous writes durable.
    fn flush(&mut self) -> Result<(), BlkError>;

    /// How many requests the driver can keep in flight at once (1: one at a time).
    fn max_depth(&self) -> usize {
        1
    }

    /// Reads every request of `reqs`, keeping up to `depth` of them in flight where the
    /// driver can (the default reads them one after another). Each request is checked as
    /// `read` checks it. On error the first error is returned once nothing is in flight;
    /// which of the other requests were read is unspecified.
    fn read_batch(&mut self, reqs: &mut [ReadReq<'_>], depth: usize) -> Result<(), BlkError> {
        let _ = depth;
        for r in reqs.iter_mut() {
            self.read(r.lba, r.buf)?;
        }
        Ok(())
    }

    /// Writes every request of `reqs`, keeping up to `depth` of them in flight where the
    /// driver can (the default writes them one after another), in no promised order: as
    /// between any two flushes, a device may make them durable in any order. Each request is
    /// checked as `write` checks it. On error the first error is returned once nothing is in
    /// flight; which of the other requests were written is unspecified.
    fn write_batch(&mut self, reqs: &[WriteReq<'_>], depth: usize) -> Result<(), BlkError> {
        let _ = depth;
        for r in reqs {
            self.write(r.lba, r.buf)?;
        }
        Ok(())
    }
}

/// One read of a batch: `buf.len() / sector_size` sectors starting at `lba`.
pub struct ReadReq<'a> {
    pub lba: u64,
    pub buf: &'a mut [u8],
}

/// One write of a batch: `buf.len() / sector_size` sectors starting at `lba`.
#[derive(Clone, Copy)]
pub struct WriteReq<'a> {
    pub lba: u64,
    pub buf: &'a [u8],
}

/// Checks a request against a device's geometry: the common prologue of every driver's
/// `read`/`write`. Returns the sector count.
pub fn check_request(
    lba: u64,
    len: usize,
    sector_size: u32,
    capacity: u64,
) -> Result<u64, BlkError> {
    let ss = sector_size as usize;
    if len == 0 || ss == 0 || !len.is_multiple_of(ss) {
        return Err(BlkError::BadBuffer { len, sector_size });
    }
    let count = (len / ss) as u64;
    match lba.checked_add(count) {
        Some(end) if end <= capacity => Ok(count),
        _ => Err(BlkError::OutOfRange {
            lba,
            count,
            capacity,
        }),
    }
}
