//! A partition: a window of sectors on a parent device, itself a `BlockDevice`.
use crate::{check_request, BlkError, BlkInfo, BlockDevice};
use alloc::boxed::Box;
use alloc::rc::Rc;
use alloc::string::String;
use core::cell::{RefCell, RefMut};

/// A device shared between the registry and the partitions on it. capmon's monitor is
/// single-threaded, so `Rc<RefCell<..>>` is enough; a borrow conflict is reported as an error.
pub type SharedDevice = Rc<RefCell<Box<dyn BlockDevice>>>;

/// Wraps a driver's device for sharing.
pub fn share(dev: Box<dyn BlockDevice>) -> SharedDevice {
    Rc::new(RefCell::new(dev))
}

/// Borrows a shared device for one request; `Other("device busy")` instead of a panic if it is
/// already borrowed (only possible through misuse, e.g. a partition of itself).
pub fn borrow(dev: &SharedDevice) -> Result<RefMut<'_, Box<dyn BlockDevice>>, BlkError> {
    dev.try_borrow_mut()
        .map_err(|_| BlkError::Other(String::from("device busy")))
}

/// Sectors `start .. start+sectors` of `parent`. Every request is checked against the window
/// before it reaches the parent, so a partition can never touch sectors outside its range.
pub struct Partition {
    parent: SharedDevice,
    start: u64,
    sectors: u64,
    sector_size: u32,
    read_only: bool,
}

impl Partition {
    /// Fails with `OutOfRange` if the window does not lie inside the parent, or is empty.
    pub fn new(parent: SharedDevice, start: u64, sectors: u64) -> Result<Self, BlkError> {
        let (sector_size, capacity, read_only) = {
            let p = borrow(&parent)?;
            (p.sector_size(), p.capacity(), p.read_only())
        };
        match start.checked_add(sectors) {
            Some(end) if sectors > 0 && end <= capacity => {}
            _ => {
                return Err(BlkError::OutOfRange {
                    lba: start,
                    count: sectors,
                    capacity,
                })
            }
        }
        Ok(Partition {
            parent,
            start,
            sectors,
            sector_size,
            read_only,
        })
    }

    /// First sector on the parent.
    pub fn start(&self) -> u64 {
        self.start
    }
}

impl BlockDevice for Partition {
    fn sector_size(&self) -> u32 {
        self.sector_size
    }

    fn capacity(&self) -> u64 {
        self.sectors
    }

    fn read_only(&self) -> bool {
        self.read_only
    }

    fn info(&self) -> BlkInfo {
        BlkInfo {
            driver: "gpt-part",
            model: None,
            serial: None,
        }
    }

    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), BlkError> {
        check_request(lba, buf.len(), self.sector_size, self.sectors)?;
        // lba + count <= sectors and start + sectors <= parent capacity: no overflow.
        borrow(&self.parent)?.read(self.start + lba, buf)
    }

    fn write(&mut self, lba: u64, buf: &[u8]) -> Result<(), BlkError> {
        check_request(lba, buf.len(), self.sector_size, self.sectors)?;
        if self.read_only {
            return Err(BlkError::ReadOnly);
        }
        borrow(&self.parent)?.write(self.start + lba, buf)
    }

    fn flush(&mut self) -> Result<(), BlkError> {
        borrow(&self.parent)?.flush()
    }
}
