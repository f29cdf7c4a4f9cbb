//! A partition: a window of sectors on a parent device, itself a `BlockDevice`.
use crate::{check_request, BlkError, BlkInfo, BlockDevice, ReadReq, WriteReq};
use alloc::boxed::Box;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
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

    fn max_depth(&self) -> usize {
        borrow(&self.parent).map_or(1, |p| p.max_depth())
    }

    fn read_batch(&mut self, reqs: &mut [ReadReq<'_>], depth: usize) -> Result<(), BlkError> {
        for r in reqs.iter() {
            check_request(r.lba, r.buf.len(), self.sector_size, self.sectors)?;
        }
        let mut parent = borrow(&self.parent)?;
        // Checked as `read` checks: start + lba cannot overflow. The requests are the caller's,
        // so their LBAs go back to the partition's own once the parent is done, error or not.
        for r in reqs.iter_mut() {
            r.lba += self.start;
        }
        let done = parent.read_batch(reqs, depth);
        for r in reqs.iter_mut() {
            r.lba -= self.start;
        }
        done
    }

    fn write_batch(&mut self, reqs: &[WriteReq<'_>], depth: usize) -> Result<(), BlkError> {
        for r in reqs {
            check_request(r.lba, r.buf.len(), self.sector_size, self.sectors)?;
        }
        if self.read_only {
            return Err(BlkError::ReadOnly);
        }
        let mut moved = Vec::new();
        moved
            .try_reserve_exact(reqs.len())
            .map_err(|_| BlkError::NoMemory)?;
        // Checked as `write` checks: start + lba cannot overflow.
        moved.extend(reqs.iter().map(|r| WriteReq {
            lba: self.start + r.lba,
            buf: r.buf,
        }));
        borrow(&self.parent)?.write_batch(&moved, depth)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdev::Recorder;
    use crate::RamDisk;
    use alloc::vec;
    use alloc::vec::Vec;

    /// Reads `(lba, sectors)` pieces of `p` as one batch at depth 4; the buffers and the LBAs
    /// the requests hold afterwards.
    fn batch(p: &mut Partition, pieces: &[(u64, usize)]) -> (Result<(), BlkError>, Vec<Vec<u8>>) {
        let mut bufs: Vec<Vec<u8>> = pieces.iter().map(|x| vec![0u8; x.1]).collect();
        let mut reqs: Vec<ReadReq<'_>> = bufs
            .iter_mut()
            .zip(pieces)
            .map(|(buf, x)| ReadReq { lba: x.0, buf })
            .collect();
        let done = p.read_batch(&mut reqs, 4);
        let lbas: Vec<u64> = reqs.iter().map(|r| r.lba).collect();
        let want: Vec<u64> = pieces.iter().map(|x| x.0).collect();
        assert_eq!(lbas, want, "the caller's LBAs are kept");
        (done, bufs)
    }

    #[test]
    fn batches_reach_the_parent_at_the_partition_offset() {
        // Sector n of the parent holds the byte n.
        let img: Vec<u8> = (0..64u8).flat_map(|n| [n; 512]).collect();
        let dev = Recorder::new(RamDisk::from_image(img, 512).unwrap(), 8);
        let log = dev.log.clone();
        let parent = share(Box::new(dev));
        let mut p = Partition::new(parent.clone(), 10, 20).unwrap();
        assert_eq!(p.max_depth(), 8);
        let (done, bufs) = batch(&mut p, &[(18, 1024), (0, 512)]);
        done.unwrap();
        assert_eq!(log.borrow().batches, [(vec![28, 10], 4)]);
        assert_eq!(bufs[0], [[28u8; 512], [29; 512]].concat());
        assert_eq!(bufs[1], [10u8; 512]);

        // A request past the window's end, or not whole sectors: refused before anything
        // reaches the parent.
        let (done, _) = batch(&mut p, &[(0, 512), (19, 1024)]);
        let range = BlkError::OutOfRange {
            lba: 19,
            count: 2,
            capacity: 20,
        };
        assert_eq!(done, Err(range));
        assert!(matches!(
            batch(&mut p, &[(0, 100)]).0,
            Err(BlkError::BadBuffer { .. })
        ));
        assert_eq!(log.borrow().batches.len(), 1);

        // A busy parent: an error for the batch, depth 1 for max_depth.
        let _held = parent.borrow_mut();
        assert_eq!(p.max_depth(), 1);
        assert!(matches!(
            batch(&mut p, &[(0, 512)]).0,
            Err(BlkError::Other(_))
        ));
    }
}
