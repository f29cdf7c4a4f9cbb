//! A block device for host tests: a RAM disk that records what it is asked, says it keeps
//! `max_depth` requests in flight, and can model time on a shared clock.
use crate::{BlkError, BlkInfo, BlockDevice, RamDisk, ReadReq};
use alloc::rc::Rc;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};

/// What a `Recorder` was asked.
#[derive(Debug, Default)]
pub struct Log {
    /// Every read's first sector, in order, batched or not.
    pub lbas: Vec<u64>,
    /// Each `read_batch`: its requests' first sectors and the depth asked.
    pub batches: Vec<(Vec<u64>, usize)>,
}

impl Log {
    /// (requests, depth asked) of each `read_batch`.
    pub fn batch_sizes(&self) -> Vec<(usize, usize)> {
        self.batches.iter().map(|(l, d)| (l.len(), *d)).collect()
    }
}

pub struct Recorder {
    disk: RamDisk,
    max_depth: usize,
    /// Each read takes `op_ns` on `clock`, up to `max_depth` of them at once.
    clock: Rc<Cell<u64>>,
    op_ns: u64,
    /// Shared, so a test can read it once the device has been given away.
    pub log: Rc<RefCell<Log>>,
}

impl Recorder {
    pub fn new(disk: RamDisk, max_depth: usize) -> Self {
        Recorder {
            disk,
            max_depth,
            clock: Rc::default(),
            op_ns: 0,
            log: Rc::default(),
        }
    }

    /// Makes every read take `op_ns` on `clock`.
    pub fn timed(self, clock: Rc<Cell<u64>>, op_ns: u64) -> Self {
        Recorder {
            clock,
            op_ns,
            ..self
        }
    }
}

impl BlockDevice for Recorder {
    fn sector_size(&self) -> u32 {
        self.disk.sector_size()
    }
    fn capacity(&self) -> u64 {
        self.disk.capacity()
    }
    fn read_only(&self) -> bool {
        self.disk.read_only()
    }
    fn info(&self) -> BlkInfo {
        self.disk.info()
    }
    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), BlkError> {
        self.log.borrow_mut().lbas.push(lba);
        self.clock.set(self.clock.get() + self.op_ns);
        self.disk.read(lba, buf)
    }
    fn write(&mut self, lba: u64, buf: &[u8]) -> Result<(), BlkError> {
        self.disk.write(lba, buf)
    }
    fn flush(&mut self) -> Result<(), BlkError> {
        self.disk.flush()
    }
    fn max_depth(&self) -> usize {
        self.max_depth
    }
    fn read_batch(&mut self, reqs: &mut [ReadReq<'_>], depth: usize) -> Result<(), BlkError> {
        let lbas: Vec<u64> = reqs.iter().map(|r| r.lba).collect();
        let mut log = self.log.borrow_mut();
        log.lbas.extend_from_slice(&lbas);
        log.batches.push((lbas, depth));
        // `lanes` requests at a time, `op_ns` each.
        let lanes = depth.clamp(1, self.max_depth.max(1)) as u64;
        let rounds = (reqs.len() as u64).div_ceil(lanes);
        self.clock.set(self.clock.get() + rounds * self.op_ns);
        for r in reqs.iter_mut() {
            self.disk.read(r.lba, r.buf)?;
        }
        Ok(())
    }
}
