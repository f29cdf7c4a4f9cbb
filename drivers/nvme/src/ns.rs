//! A namespace as a block device: `nvme0n1` is namespace 1 of controller `nvme0`.
use crate::ctrl::{Controller, Job};
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use capmon_block::{check_request, BlkError, BlkInfo, BlockDevice, ReadReq, WriteReq};

pub struct Namespace {
    ctrl: Arc<Controller>,
    nsid: u32,
    lba_shift: u32,
    blocks: u64,
    read_only: bool,
}

impl Namespace {
    /// Namespace `nsid` of `ctrl`, if Identify found it active and usable.
    pub fn new(ctrl: Arc<Controller>, nsid: u32) -> Option<Namespace> {
        let info = ctrl.namespaces().iter().find(|n| n.nsid == nsid)?;
        let size = *info.lba_size.as_ref().ok()?;
        let read_only = info.id.write_protected();
        let blocks = info.id.nsze;
        Some(Namespace {
            lba_shift: size.trailing_zeros(),
            blocks,
            read_only,
            nsid,
            ctrl,
        })
    }

    pub fn nsid(&self) -> u32 {
        self.nsid
    }

    pub fn controller(&self) -> &Arc<Controller> {
        &self.ctrl
    }

    fn job(&self, lba: u64, ptr: *mut u8, len: usize, read: bool) -> Job {
        Job {
            nsid: self.nsid,
            lba,
            ptr,
            len,
            read,
            lba_shift: self.lba_shift,
        }
    }
}

impl BlockDevice for Namespace {
    fn sector_size(&self) -> u32 {
        1 << self.lba_shift
    }

    fn capacity(&self) -> u64 {
        self.blocks
    }

    fn read_only(&self) -> bool {
        self.read_only
    }

    fn info(&self) -> BlkInfo {
        BlkInfo {
            driver: "nvme",
            model: Some(self.ctrl.id.model.clone()),
            serial: Some(self.ctrl.id.serial.clone()),
        }
    }

    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), BlkError> {
        check_request(lba, buf.len(), self.sector_size(), self.blocks)?;
        let j = self.job(lba, buf.as_mut_ptr(), buf.len(), true);
        self.ctrl.run(&[j], usize::MAX)
    }

    fn write(&mut self, lba: u64, buf: &[u8]) -> Result<(), BlkError> {
        check_request(lba, buf.len(), self.sector_size(), self.blocks)?;
        if self.read_only {
            return Err(BlkError::ReadOnly);
        }
        // The engine only reads through the pointer for a write (the device reads the data).
        let j = self.job(lba, buf.as_ptr() as *mut u8, buf.len(), false);
        self.ctrl.run(&[j], usize::MAX)
    }

    fn flush(&mut self) -> Result<(), BlkError> {
        if !self.ctrl.id.has_volatile_cache() {
            return Ok(());
        }
        self.ctrl.flush(self.nsid)
    }

    fn max_depth(&self) -> usize {
        crate::ctrl::MAX_INFLIGHT
    }

    fn read_batch(&mut self, reqs: &mut [ReadReq<'_>], depth: usize) -> Result<(), BlkError> {
        let mut jobs = Vec::new();
        jobs.try_reserve_exact(reqs.len())
            .map_err(|_| BlkError::NoMemory)?;
        for r in reqs.iter_mut() {
            check_request(r.lba, r.buf.len(), self.sector_size(), self.blocks)?;
            jobs.push(self.job(r.lba, r.buf.as_mut_ptr(), r.buf.len(), true));
        }
        self.ctrl.run(&jobs, depth)
    }

    fn write_batch(&mut self, reqs: &[WriteReq<'_>], depth: usize) -> Result<(), BlkError> {
        if self.read_only() {
            return Err(BlkError::ReadOnly);
        }
        let mut jobs = Vec::new();
        jobs.try_reserve_exact(reqs.len())
            .map_err(|_| BlkError::NoMemory)?;
        for r in reqs {
            check_request(r.lba, r.buf.len(), self.sector_size(), self.blocks)?;
            // The controller only reads the buffer for a write (the job's `false`).
            jobs.push(self.job(r.lba, r.buf.as_ptr() as *mut u8, r.buf.len(), false));
        }
        self.ctrl.run(&jobs, depth)
    }
}

/// The block-device name of namespace `nsid` of controller `ctrl` (`nvme0n1`): by NSID, so a
/// name stays the same whatever other namespaces come and go.
pub fn device_name(ctrl: &str, nsid: u32) -> String {
    alloc::format!("{}n{}", ctrl, nsid)
}
