//! The monitor's root set of capabilities, and how it is made from a data partition.
use crate::caps::{DirCap, Directory, Namespace, NamespaceCap, Store, StoreCap};
use crate::disk::{self, DiskEngine, OpenFailure, Opened};
use crate::engine::{ClockFn, Engine};
use crate::ram::RamEngine;
use crate::rights::Rights;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use capmon_block::partition::{self, SharedDevice};
use capmon_block::{BlkError, BlkInfo, BlockDevice, ReadReq, WriteReq};

/// A registry device handed to the disk engine, which redb requires to be `Send + Sync`.
///
/// A `SharedDevice` is an `Rc<RefCell<..>>`: it is sound to move it into the engine only
/// because capmon's monitor runs one command at a time on one CPU, and everything reachable
/// from the machine (the registry, this engine) is touched only by the CPU running the current
/// command (`on N` hands the machine over and waits for it). Every request borrows the device
/// for its own duration, so a conflicting borrow is an error, never a second mutable alias.
pub struct SharedDev(SharedDevice);

impl SharedDev {
    pub fn new(dev: SharedDevice) -> Self {
        SharedDev(dev)
    }
}

// SAFETY: see the type's comment: one CPU at a time touches the Rc and the RefCell.
unsafe impl Send for SharedDev {}

impl BlockDevice for SharedDev {
    fn sector_size(&self) -> u32 {
        self.0.try_borrow().map_or(512, |d| d.sector_size())
    }
    fn capacity(&self) -> u64 {
        self.0.try_borrow().map_or(0, |d| d.capacity())
    }
    fn read_only(&self) -> bool {
        self.0.try_borrow().map_or(true, |d| d.read_only())
    }
    fn info(&self) -> BlkInfo {
        self.0.try_borrow().map(|d| d.info()).unwrap_or_default()
    }
    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), BlkError> {
        partition::borrow(&self.0)?.read(lba, buf)
    }
    fn write(&mut self, lba: u64, buf: &[u8]) -> Result<(), BlkError> {
        partition::borrow(&self.0)?.write(lba, buf)
    }
    fn flush(&mut self) -> Result<(), BlkError> {
        partition::borrow(&self.0)?.flush()
    }
    fn max_depth(&self) -> usize {
        self.0.try_borrow().map_or(1, |d| d.max_depth())
    }
    fn read_batch(&mut self, reqs: &mut [ReadReq<'_>], depth: usize) -> Result<(), BlkError> {
        partition::borrow(&self.0)?.read_batch(reqs, depth)
    }
    fn write_batch(&mut self, reqs: &[WriteReq<'_>], depth: usize) -> Result<(), BlkError> {
        partition::borrow(&self.0)?.write_batch(reqs, depth)
    }
}

/// The capabilities the monitor holds, and the stack of namespaces `ns sub`/`ns ro` pushed.
pub struct Session {
    pub engine: Arc<dyn Engine>,
    /// The same engine when it is the disk one (for fsck's extra checks).
    pub disk: Option<Arc<DiskEngine>>,
    pub store: Arc<dyn Store>,
    pub root: Arc<dyn Namespace>,
    pub fs: Arc<dyn Directory>,
    /// Pushed namespaces, innermost last; commands use the innermost (or `root`).
    pub stack: Vec<Arc<dyn Namespace>>,
    /// Where the store came from, or why there is only a RAM store ("vda1: not a capmon
    /// store: ..."), for `store` and the boot log.
    pub note: String,
    pub opened: Opened,
}

impl Session {
    /// A store in memory only. `note` says why.
    pub fn ram(note: String) -> Session {
        Self::ram_clocked(note, crate::engine::no_clock)
    }

    /// A store in memory only, stamping times from `clock`. `note` says why.
    pub fn ram_clocked(note: String, clock: ClockFn) -> Session {
        let e: Arc<dyn Engine> = Arc::new(RamEngine::with_clock(clock));
        Self::over(e, None, note, Opened::default())
    }

    /// The store in `engine` (a disk one).
    pub fn disk(engine: DiskEngine, note: String, opened: Opened) -> Session {
        let d = Arc::new(engine);
        let e: Arc<dyn Engine> = d.clone();
        Self::over(e, Some(d), note, opened)
    }

    fn over(
        e: Arc<dyn Engine>,
        disk: Option<Arc<DiskEngine>>,
        note: String,
        opened: Opened,
    ) -> Session {
        let rights = if e.read_only() {
            Rights::READ
        } else {
            Rights::RW
        };
        let root = NamespaceCap::root(e.clone(), rights);
        Session {
            store: StoreCap::new(e.clone(), rights),
            // The root directory's `w` covers appends (a File opened through it may be `rwa`).
            fs: DirCap::root(
                e.clone(),
                if e.read_only() {
                    Rights::READ
                } else {
                    Rights::ALL
                },
            ),
            root,
            engine: e,
            disk,
            stack: Vec::new(),
            note,
            opened,
        }
    }

    /// Makes everything the store committed durable, for a clean power-off or reboot (file
    /// operations are committed without a flush: docs/storage.md). Returns how many commits
    /// were waiting, or why they could not be made durable.
    pub fn sync_for_close(&self) -> core::result::Result<u64, crate::StoreError> {
        let n = self.engine.unsynced();
        if n > 0 {
            self.engine.sync()?;
        }
        Ok(n)
    }

    /// The namespace commands act in.
    pub fn ns(&self) -> Arc<dyn Namespace> {
        self.stack
            .last()
            .cloned()
            .unwrap_or_else(|| self.root.clone())
    }

    /// Opens the store on `dev`, or a RAM store with the reason it could not be; either
    /// stamps times from `clock`.
    pub fn open_or_ram(
        dev: SharedDevice,
        name: &str,
        clock: ClockFn,
    ) -> (Session, Option<OpenFailure>) {
        match disk::open(SharedDev::new(dev), name, true, clock()) {
            Ok((e, opened)) => {
                let note = alloc::format!("redb on {}", name);
                (Session::disk(e.with_clock(clock), note, opened), None)
            }
            Err(f) => (
                Session::ram_clocked(alloc::format!("{}: {}; using a RAM store", name, f), clock),
                Some(f),
            ),
        }
    }
}
