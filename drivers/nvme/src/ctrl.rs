//! One NVMe controller: bring-up by the specification's initialisation sequence (NVMe Base
//! 2.0 §3.5.1), the admin queue, one I/O queue pair per CPU up to what the controller grants,
//! and the I/O engine that keeps several commands in flight on a queue.
//!
//! Locking: the admin queue and every I/O queue have their own lock, so CPUs submitting to
//! their own queues do not contend. Lock order: an I/O queue, then the admin queue (an I/O
//! timeout sends Abort); `reset` takes every I/O queue in index order, then the admin queue.
use crate::identify::{self, IdController, IdNamespace, Smart, IDENTIFY_LEN};
use crate::prp::{self, ListPage, PAGE};
use crate::queue::{QueuePair, QueueStats};
use crate::regs::{self, admin, cns, io, Cap, Command, Completion};
use crate::Status;
use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use capmon_block::BlkError;
use capmon_hal::{
    BarMapper, Clock, Completion as Waiter, Cpus, Dma, DmaRegion, Interrupt, Interrupts, IrqOwner,
    IrqVector, Mechanism, MmioBox, PciConfig, Polling,
};
use capmon_pci::caps::id;
use capmon_pci::header::{command, reg};
use capmon_pci::{msi, Bdf, MsixTable};
use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};
use spin::Mutex;

/// Entries per queue the driver asks for (capped by CAP.MQES).
const ADMIN_ENTRIES: u16 = 32;
const IO_ENTRIES: u16 = 256;
/// Commands one I/O queue keeps in flight at most (slots with their own PRP list page).
pub const MAX_INFLIGHT: usize = 64;
/// The largest transfer of one command, whatever MDTS allows: 1023 pages, which touch at most
/// 1024 pages whatever the buffer's alignment and need a chain of two PRP list pages. QEMU
/// fails a command of more than 1024 PRP entries (its IOV_MAX) with Internal Error; Linux
/// caps NVMe transfers at 4 MiB too.
pub const DRIVER_MAX_TRANSFER: usize = (4 << 20) - PAGE;
/// Bounce buffer of a slot, for callers' buffers that are not DMA-able.
const BOUNCE_BYTES: usize = 128 << 10;
/// I/O queues the driver creates at most.
pub const MAX_IO_QUEUES: usize = 64;
const DEFAULT_TIMEOUT_NS: u64 = 5_000_000_000;
/// How long an aborted command gets to come back before the controller is declared hung.
const ABORT_GRACE_NS: u64 = 1_000_000_000;

/// What the driver needs from the machine.
#[derive(Clone, Copy)]
pub struct Env {
    pub dma: &'static (dyn Dma + Sync),
    pub clock: &'static (dyn Clock + Sync),
    /// `None`: complete by polling.
    pub irq: Option<&'static dyn Interrupts>,
    pub cpus: &'static dyn Cpus,
}

/// Why a controller could not be brought up, or an admin command failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NvmeError {
    Bar(&'static str),
    /// CSTS.RDY did not follow CC.EN within CAP.TO.
    NotReady {
        enable: bool,
        ms: u64,
    },
    /// CSTS.CFS: Controller Fatal Status.
    Fatal,
    Unsupported(String),
    NoMemory,
    /// An admin command did not complete.
    Timeout(&'static str),
    /// An admin command failed.
    Command {
        what: &'static str,
        status: Status,
    },
    /// The controller sent something impossible.
    Protocol(&'static str),
    /// A controller that failed earlier and has not been reset.
    Failed(String),
}

impl fmt::Display for NvmeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NvmeError::Bar(e) => write!(f, "BAR0: {}", e),
            NvmeError::NotReady { enable, ms } => write!(
                f,
                "CSTS.RDY did not become {} within {} ms (CAP.TO)",
                *enable as u8, ms
            ),
            NvmeError::Fatal => f.write_str("controller fatal status (CSTS.CFS)"),
            NvmeError::Unsupported(s) => write!(f, "unsupported: {}", s),
            NvmeError::NoMemory => f.write_str("out of DMA memory"),
            NvmeError::Timeout(w) => write!(f, "{}: timed out", w),
            NvmeError::Command { what, status } => write!(f, "{}: {}", what, status),
            NvmeError::Protocol(w) => write!(f, "controller protocol error: {}", w),
            NvmeError::Failed(w) => write!(f, "controller failed ({}); `nvme reset` retries", w),
        }
    }
}

impl From<NvmeError> for BlkError {
    fn from(e: NvmeError) -> BlkError {
        match e {
            NvmeError::Timeout(_) => BlkError::Timeout,
            NvmeError::NoMemory => BlkError::NoMemory,
            NvmeError::Command { status, .. } => BlkError::Device {
                status: status.code(),
                what: status.name(),
            },
            e => BlkError::Other(format!("nvme: {}", e)),
        }
    }
}

/// How completions of one queue reach the driver.
struct Wake {
    waiter: Box<dyn Waiter>,
    vector: Option<IrqVector>,
    /// The MSI-X entry the queue's CQ names (its IV), when interrupts are on.
    entry: Option<u16>,
}

/// A command slot of an I/O queue: its PRP list page, a bounce buffer made on first need,
/// and what is in flight in it.
struct Slot {
    /// The slot's PRP list pages: one made with the slot, more when a transfer first needs
    /// them, then kept (two at the driver's transfer cap). `pages` names them for
    /// `prp::place`; `entries` is scratch for a command's PRP entries.
    lists: Vec<DmaRegion>,
    pages: Vec<ListPage>,
    entries: Vec<u64>,
    bounce: Option<DmaRegion>,
    /// Bumped on every use, so a completion for an earlier use is recognised as stale.
    generation: u8,
    busy: Option<Inflight>,
}

#[derive(Clone, Copy)]
struct Inflight {
    /// Where the data goes or comes from in the caller's buffer.
    ptr: *mut u8,
    len: usize,
    bounced: bool,
    read: bool,
    /// Index of the request (in a batch) this chunk belongs to.
    request: usize,
    lba: u64,
}

struct IoQueue {
    qp: QueuePair,
    wake: Wake,
    /// The CPU whose interrupts this queue's completions raise.
    cpu: usize,
    slots: Vec<Slot>,
}

// SAFETY: the raw pointers in `Inflight` point into a caller's buffer only for the duration of
// one `run` call, which holds the queue's lock; the DMA regions are owned memory.
unsafe impl Send for IoQueue {}

struct Admin {
    qp: QueuePair,
    wake: Wake,
    data: DmaRegion,
    next_cid: u16,
}

/// What Identify said of one active namespace.
#[derive(Debug, Clone)]
pub struct NsInfo {
    pub nsid: u32,
    pub id: IdNamespace,
    /// Bytes per LBA when usable, else why the namespace is not exposed.
    pub lba_size: Result<u32, &'static str>,
}

/// The interrupt resources the controller holds, to give back on drop.
struct Msix {
    cap: u16,
    table: MmioBox,
    entries: u16,
}

/// One queue's numbers for `nvme queues`.
#[derive(Debug, Clone)]
pub struct QueueReport {
    pub qid: u16,
    pub size: u16,
    pub cpu: Option<usize>,
    pub pointers: crate::queue::Pointers,
    pub submitted: u64,
    pub completed: u64,
    pub errors: u64,
    pub timeouts: u64,
    pub vector: Option<u8>,
    pub entry: Option<u16>,
    pub interrupts: u64,
}

pub struct Controller {
    /// `nvme0`, `nvme1`, ...
    pub name: String,
    pub bdf: Bdf,
    bar: MmioBox,
    bar_phys: u64,
    env: Env,
    pub cap: Cap,
    pub vs: u32,
    pub id: IdController,
    pub mechanism: Mechanism,
    /// Queue pairs asked for in Set Features, and granted (submission, completion).
    pub queues_requested: u16,
    pub queues_granted: (u16, u16),
    /// Largest transfer of one command, bytes (MDTS and the driver's own cap).
    pub max_transfer: usize,
    admin: Mutex<Admin>,
    io: Vec<Mutex<IoQueue>>,
    namespaces: Vec<NsInfo>,
    msix: Option<Msix>,
    timeout_ns: AtomicU64,
    /// Set when a command could not be aborted: every request fails until `reset`.
    failed: Mutex<Option<String>>,
    resets: AtomicU64,
}

// SAFETY: every mutable part sits behind a lock or is atomic; the BAR window is device memory
// whose accesses the locks order.
unsafe impl Sync for Controller {}
unsafe impl Send for Controller {}

fn owner(bdf: Bdf, entry: u16) -> IrqOwner {
    IrqOwner {
        bdf: bdf.to_u32(),
        source: entry,
    }
}

/// A request of the I/O engine: read or write `len` bytes at `ptr` from/to `lba`.
#[derive(Clone, Copy)]
pub(crate) struct Job {
    pub nsid: u32,
    pub lba: u64,
    pub ptr: *mut u8,
    pub len: usize,
    pub read: bool,
    pub lba_shift: u32,
}

impl Controller {
    /// Brings up the controller of PCI function `bdf` and identifies it and its namespaces.
    pub fn new(
        name: String,
        bdf: Bdf,
        cfg: &dyn PciConfig,
        bars: &dyn BarMapper,
        env: Env,
    ) -> Result<Controller, NvmeError> {
        let bar_phys = capmon_pci::memory_bar_base(cfg, 0).map_err(NvmeError::Bar)?;
        if bar_phys == 0 {
            return Err(NvmeError::Bar("not assigned"));
        }
        // Memory space and bus mastering on (the controller reads queues and data by DMA).
        let cmd = cfg.read16(reg::COMMAND);
        cfg.write16(reg::COMMAND, cmd | command::MEMORY | command::BUS_MASTER);
        let probe = bars
            .map_mmio(bar_phys, regs::DOORBELLS)
            .ok_or(NvmeError::Bar("cannot map the registers"))?;
        let cap = Cap {
            raw: probe.read64(regs::CAP),
        };
        if cap.raw == u64::MAX {
            return Err(NvmeError::Bar("registers read all-ones"));
        }
        let vs = probe.read32(regs::VS);
        drop(probe);
        if cap.css() & 1 == 0 {
            return Err(NvmeError::Unsupported(String::from(
                "no NVM command set (CAP.CSS)",
            )));
        }
        if cap.page_min() > PAGE as u64 {
            return Err(NvmeError::Unsupported(format!(
                "minimum memory page {} bytes",
                cap.page_min()
            )));
        }
        // Registers plus doorbells for the admin queue and every I/O queue we may create.
        let bar_len = regs::DOORBELLS + 2 * (MAX_IO_QUEUES + 1) * cap.doorbell_stride();
        let bar = bars
            .map_mmio(bar_phys, bar_len)
            .ok_or(NvmeError::Bar("cannot map the doorbells"))?;

        let stride = cap.doorbell_stride();
        let entries = ADMIN_ENTRIES.min(cap.max_queue_entries().min(u16::MAX as u32) as u16);
        let qp = QueuePair::new(env.dma, 0, entries, stride).ok_or(NvmeError::NoMemory)?;
        let data = DmaRegion::alloc(env.dma, IDENTIFY_LEN, PAGE).ok_or(NvmeError::NoMemory)?;

        // Interrupts: MSI-X (entry 0 for the admin queue, entry q for I/O queue q), else INTx,
        // else polling.
        let (msix, mechanism, intx) = match env.irq {
            Some(irq) => match setup_msix(cfg, bars) {
                Ok(m) => (Some(m), Mechanism::MsiX, None),
                Err(why) => {
                    log::info!("nvme {}: no MSI-X ({}), trying INTx", bdf, why);
                    match intx(bdf, cfg, irq) {
                        Ok(v) => (None, Mechanism::Intx, Some(v)),
                        Err(why) => {
                            log::info!("nvme {}: no INTx ({}), polling", bdf, why);
                            (None, Mechanism::Polling, None)
                        }
                    }
                }
            },
            None => (None, Mechanism::Polling, None),
        };

        let mut ctrl = Controller {
            name,
            bdf,
            bar,
            bar_phys,
            env,
            cap,
            vs,
            id: IdController::default(),
            mechanism,
            queues_requested: 0,
            queues_granted: (0, 0),
            max_transfer: PAGE,
            admin: Mutex::new(Admin {
                qp,
                wake: Wake {
                    waiter: Box::new(Polling::new(env.clock)),
                    vector: None,
                    entry: None,
                },
                data,
                next_cid: 0,
            }),
            io: Vec::new(),
            namespaces: Vec::new(),
            msix,
            timeout_ns: AtomicU64::new(DEFAULT_TIMEOUT_NS),
            failed: Mutex::new(None),
            resets: AtomicU64::new(0),
        };
        let mut intx = intx;
        let mut admin_wake = ctrl.wake_for(0, 0, intx);
        // MSI-X is there but the interrupt layer gives no message vector (none free, or it
        // hands out INTx only): MSI-X off again, and INTx, then polling, as without it.
        if let (Mechanism::MsiX, None, Some(irq)) = (ctrl.mechanism, &admin_wake.vector, env.irq) {
            if let Some(m) = ctrl.msix.take() {
                let _ = msi::disable_msix(cfg, m.cap);
            }
            log::info!("nvme {}: no MSI-X vector, trying INTx", bdf);
            match self::intx(bdf, cfg, irq) {
                Ok(v) => {
                    ctrl.mechanism = Mechanism::Intx;
                    intx = Some(v);
                    admin_wake = ctrl.wake_for(0, 0, intx);
                }
                Err(why) => {
                    log::info!("nvme {}: no INTx ({}), polling", bdf, why);
                    ctrl.mechanism = Mechanism::Polling;
                }
            }
        }
        ctrl.admin.lock().wake = admin_wake;
        ctrl.enable()?;
        ctrl.identify_controller()?;
        ctrl.create_io_queues(intx)?;
        ctrl.namespaces = ctrl.scan_namespaces()?;
        ctrl.unmask_intx();
        log::info!(
            "{}: {} {} fw {}, NVMe {}, {} I/O queues ({}), {} namespaces, transfers up to {} KiB",
            ctrl.name,
            ctrl.id.model,
            ctrl.id.serial,
            ctrl.id.firmware,
            identify::version_string(ctrl.vs),
            ctrl.io.len(),
            ctrl.mechanism,
            ctrl.namespaces.len(),
            ctrl.max_transfer >> 10
        );
        Ok(ctrl)
    }

    /// A waiter for queue `qid`, with MSI-X entry `qid` aimed at `cpu` when MSI-X is on.
    fn wake_for(&self, qid: u16, cpu: usize, intx: Option<IrqVector>) -> Wake {
        let polling = || Wake {
            waiter: Box::new(Polling::new(self.env.clock)),
            vector: None,
            entry: None,
        };
        let Some(irq) = self.env.irq else {
            return polling();
        };
        if let Some(v) = intx {
            return Wake {
                waiter: Box::new(Interrupt::new(irq, self.env.clock, &v, Mechanism::Intx)),
                // Shared by every queue (freed once, see Drop).
                vector: Some(v),
                entry: None,
            };
        }
        let Some(m) = &self.msix else {
            return polling();
        };
        if qid >= m.entries {
            return polling();
        }
        let label = if qid == 0 {
            String::from("nvme admin")
        } else {
            format!("nvme I/O queue {}", qid)
        };
        let Some(v) = irq.alloc_msi_on(owner(self.bdf, qid), Mechanism::MsiX, &label, cpu) else {
            return polling();
        };
        let Ok(table) = MsixTable::new(&*m.table, m.entries) else {
            irq.free(&v);
            return polling();
        };
        if table.program(qid, v.message).is_err() || table.unmask(qid).is_err() {
            irq.free(&v);
            return polling();
        }
        Wake {
            waiter: Box::new(Interrupt::new(irq, self.env.clock, &v, Mechanism::MsiX)),
            vector: Some(v),
            entry: Some(qid),
        }
    }

    fn wait_ready(&self, ready: bool) -> Result<(), NvmeError> {
        let ms = self.cap.timeout_ms().max(500);
        let start = self.env.clock.now_ns();
        loop {
            let csts = self.bar.read32(regs::CSTS);
            if csts == u32::MAX {
                return Err(NvmeError::Bar("CSTS reads all-ones (device gone)"));
            }
            if ready && csts & regs::CSTS_CFS != 0 {
                return Err(NvmeError::Fatal);
            }
            if (csts & regs::CSTS_RDY != 0) == ready {
                return Ok(());
            }
            if self.env.clock.now_ns().saturating_sub(start) > ms * 1_000_000 {
                return Err(NvmeError::NotReady { enable: ready, ms });
            }
            core::hint::spin_loop();
        }
    }

    /// Disables the controller (waiting for RDY = 0), programs the admin queue and enables it.
    fn enable(&self) -> Result<(), NvmeError> {
        let cc = self.bar.read32(regs::CC);
        if cc & regs::CC_EN != 0 {
            self.bar.write32(regs::CC, cc & !regs::CC_EN);
        }
        // Also when EN was already 0: RDY may still be 1 from a reset in progress.
        self.wait_ready(false)?;
        let mut admin = self.admin.lock();
        admin.qp.reset();
        let n = admin.qp.size() as u32 - 1;
        self.bar.write32(regs::AQA, n | n << 16);
        self.bar.write64(regs::ASQ, admin.qp.sq_phys());
        self.bar.write64(regs::ACQ, admin.qp.cq_phys());
        drop(admin);
        self.bar.write32(regs::CC, regs::cc_enable());
        self.wait_ready(true)
    }

    pub fn timeout_ms(&self) -> u64 {
        self.timeout_ns.load(Ordering::Relaxed) / 1_000_000
    }

    pub fn set_timeout_ms(&self, ms: u64) {
        self.timeout_ns
            .store(ms.saturating_mul(1_000_000), Ordering::Relaxed);
    }

    /// Runs one admin command and waits for it. `data`: the command moves up to a page through
    /// the admin data page; its contents are copied out into the returned vector.
    fn admin_cmd(
        &self,
        what: &'static str,
        mut cmd: Command,
        data_len: usize,
    ) -> Result<(Completion, Vec<u8>), NvmeError> {
        let mut a = self.admin.lock();
        let a = &mut *a;
        a.next_cid = a.next_cid.wrapping_add(1);
        cmd.cid = a.next_cid;
        if data_len > 0 {
            // SAFETY: the page is ours; no admin command is in flight (we hold the lock).
            unsafe { core::ptr::write_bytes(a.data.ptr(0), 0, IDENTIFY_LEN) };
            cmd.prp1 = a.data.phys();
        }
        if !a.qp.push(&cmd) {
            return Err(NvmeError::Protocol("admin queue full"));
        }
        a.qp.ring(&*self.bar);
        let timeout = self.timeout_ns.load(Ordering::Relaxed);
        let start = self.env.clock.now_ns();
        loop {
            let qp = &a.qp;
            let intx = a.wake.vector.filter(|_| self.mechanism == Mechanism::Intx);
            let done = a.wake.waiter.wait(timeout, &mut || {
                if let (Some(v), Some(irq)) = (&intx, self.env.irq) {
                    irq.end_intx(v);
                }
                qp.has_completion()
            });
            if !done || self.env.clock.now_ns().saturating_sub(start) > timeout {
                // The command may still complete later: the next admin command skips it by CID.
                return Err(NvmeError::Timeout(what));
            }
            while let Some(c) = a.qp.pop() {
                if c.cid == cmd.cid && c.sqid == 0 {
                    a.qp.release(&*self.bar);
                    if !c.status.is_success() {
                        return Err(NvmeError::Command {
                            what,
                            status: c.status,
                        });
                    }
                    let mut out = Vec::new();
                    if data_len > 0 {
                        out.try_reserve_exact(data_len)
                            .map_err(|_| NvmeError::NoMemory)?;
                        // SAFETY: the command completed; the page holds IDENTIFY_LEN bytes.
                        let page = unsafe {
                            core::slice::from_raw_parts(a.data.ptr(0), data_len.min(IDENTIFY_LEN))
                        };
                        out.extend_from_slice(page);
                    }
                    return Ok((c, out));
                }
                // A late completion of a command that timed out earlier: dropped.
            }
            a.qp.release(&*self.bar);
        }
    }

    /// Identify with CNS `cns` for `nsid`: the 4 KiB data structure.
    pub fn identify(&self, cns: u8, nsid: u32) -> Result<Vec<u8>, NvmeError> {
        let cmd = Command {
            opcode: admin::IDENTIFY,
            nsid,
            cdw10: cns as u32,
            ..Default::default()
        };
        self.admin_cmd("Identify", cmd, IDENTIFY_LEN)
            .map(|(_, d)| d)
    }

    /// Get Log Page `lid` (controller-wide), `len` bytes (a multiple of 4, at most a page).
    pub fn log_page(&self, lid: u8, len: usize) -> Result<Vec<u8>, NvmeError> {
        let len = len.clamp(4, IDENTIFY_LEN) & !3;
        let numd = (len / 4 - 1) as u32;
        let cmd = Command {
            opcode: admin::GET_LOG_PAGE,
            nsid: 0xffff_ffff,
            cdw10: lid as u32 | (numd & 0xffff) << 16,
            cdw11: numd >> 16,
            ..Default::default()
        };
        self.admin_cmd("Get Log Page", cmd, len).map(|(_, d)| d)
    }

    pub fn smart(&self) -> Result<Smart, NvmeError> {
        self.check_failed()?;
        self.log_page(regs::log_id::SMART, identify::SMART_LEN)
            .map(|d| Smart::parse(&d))
    }

    /// The error log: as many entries as the controller keeps (ELPE + 1), up to a page.
    pub fn error_log(&self) -> Result<Vec<identify::ErrorEntry>, NvmeError> {
        self.check_failed()?;
        let n = (self.id.elpe as usize + 1).min(IDENTIFY_LEN / identify::ERROR_ENTRY_LEN);
        self.log_page(regs::log_id::ERROR, n * identify::ERROR_ENTRY_LEN)
            .map(|d| identify::parse_error_log(&d))
    }

    fn identify_controller(&mut self) -> Result<(), NvmeError> {
        let id = IdController::parse(&self.identify(cns::CONTROLLER, 0)?);
        // SQES/CQES: the low nibble is the required (minimum) entry size.
        if id.sqes & 0xf > regs::SQE_SHIFT as u8 || id.cqes & 0xf > regs::CQE_SHIFT as u8 {
            return Err(NvmeError::Unsupported(format!(
                "entry sizes SQES {:#x} CQES {:#x}",
                id.sqes, id.cqes
            )));
        }
        let mdts = if id.mdts == 0 || id.mdts >= 20 {
            usize::MAX
        } else {
            (self.cap.page_min() as usize) << id.mdts
        };
        self.max_transfer = mdts.min(DRIVER_MAX_TRANSFER);
        self.id = id;
        Ok(())
    }

    /// Set Features (Number of Queues) asking for `n` (at least 1) submission and completion
    /// queues; returns how many of each the controller granted.
    fn set_queue_count(&self, n: u32) -> Result<(u16, u16), NvmeError> {
        let n = n.max(1) - 1;
        let cmd = Command {
            opcode: admin::SET_FEATURES,
            cdw10: regs::FEATURE_NUM_QUEUES as u32,
            cdw11: n | n << 16,
            ..Default::default()
        };
        let (c, _) = self.admin_cmd("Set Features (Number of Queues)", cmd, 0)?;
        Ok(((c.dw0 & 0xffff) as u16 + 1, (c.dw0 >> 16) as u16 + 1))
    }

    /// Set Features (Number of Queues), then a CQ/SQ pair per granted queue.
    fn create_io_queues(&mut self, intx: Option<IrqVector>) -> Result<(), NvmeError> {
        let want = self.env.cpus.count().clamp(1, MAX_IO_QUEUES) as u32;
        self.queues_requested = want as u16;
        let (nsqa, ncqa) = self.set_queue_count(want)?;
        self.queues_granted = (nsqa, ncqa);
        let n = (want as u16).min(nsqa).min(ncqa) as usize;
        let stride = self.cap.doorbell_stride();
        let entries = IO_ENTRIES.min(self.cap.max_queue_entries().min(u16::MAX as u32) as u16);
        for i in 0..n {
            let qid = (i + 1) as u16;
            let Some(qp) = QueuePair::new(self.env.dma, qid, entries, stride) else {
                if i == 0 {
                    return Err(NvmeError::NoMemory);
                }
                break;
            };
            let slots = alloc_slots(self.env.dma, (entries as usize - 1).min(MAX_INFLIGHT));
            if slots.is_empty() {
                if i == 0 {
                    return Err(NvmeError::NoMemory);
                }
                break;
            }
            let cpu = i % self.env.cpus.count().max(1);
            let wake = self.wake_for(qid, cpu, intx);
            let q = IoQueue {
                qp,
                wake,
                cpu,
                slots,
            };
            self.create_pair(&q)?;
            self.io.push(Mutex::new(q));
        }
        Ok(())
    }

    /// Create I/O Completion Queue and Submission Queue for `q`.
    fn create_pair(&self, q: &IoQueue) -> Result<(), NvmeError> {
        let qid = q.qp.qid as u32;
        let size = q.qp.size() as u32 - 1;
        let (ien, iv) = match (q.wake.entry, self.mechanism) {
            (Some(e), _) => (2, e as u32),
            // INTx uses vector 0 for every queue.
            (None, Mechanism::Intx) => (2, 0),
            _ => (0, 0),
        };
        let cq = Command {
            opcode: admin::CREATE_CQ,
            prp1: q.qp.cq_phys(),
            cdw10: qid | size << 16,
            cdw11: 1 | ien | iv << 16,
            ..Default::default()
        };
        self.admin_cmd("Create I/O Completion Queue", cq, 0)?;
        let sq = Command {
            opcode: admin::CREATE_SQ,
            prp1: q.qp.sq_phys(),
            cdw10: qid | size << 16,
            cdw11: 1 | qid << 16,
            ..Default::default()
        };
        self.admin_cmd("Create I/O Submission Queue", sq, 0)?;
        Ok(())
    }

    fn scan_namespaces(&self) -> Result<Vec<NsInfo>, NvmeError> {
        let list = identify::parse_ns_list(&self.identify(cns::ACTIVE_NS_LIST, 0)?);
        let mut out = Vec::new();
        for nsid in list {
            if nsid > self.id.nn && self.id.nn != 0 {
                log::warn!("{}: NSID {} above NN {}", self.name, nsid, self.id.nn);
            }
            match self.identify(cns::NAMESPACE, nsid) {
                Ok(d) => {
                    let id = IdNamespace::parse(&d);
                    let lba_size = id.usable();
                    if let Err(why) = lba_size {
                        log::warn!("{}: namespace {} not usable: {}", self.name, nsid, why);
                    }
                    out.push(NsInfo { nsid, id, lba_size });
                }
                Err(e) => log::warn!("{}: namespace {}: {}", self.name, nsid, e),
            }
        }
        Ok(out)
    }

    fn unmask_intx(&self) {
        if let (Mechanism::Intx, Some(irq)) = (self.mechanism, self.env.irq) {
            if let Some(v) = &self.admin.lock().wake.vector {
                irq.end_intx(v);
            }
        }
    }

    /// The active namespaces at bring-up.
    pub fn namespaces(&self) -> &[NsInfo] {
        &self.namespaces
    }

    pub fn io_queues(&self) -> usize {
        self.io.len()
    }

    pub fn bar_phys(&self) -> u64 {
        self.bar_phys
    }

    pub fn resets(&self) -> u64 {
        self.resets.load(Ordering::Relaxed)
    }

    pub fn failure(&self) -> Option<String> {
        self.failed.lock().clone()
    }

    /// CSTS as read now.
    pub fn csts(&self) -> u32 {
        self.bar.read32(regs::CSTS)
    }

    pub fn cc(&self) -> u32 {
        self.bar.read32(regs::CC)
    }

    fn check_failed(&self) -> Result<(), NvmeError> {
        match self.failed.lock().clone() {
            Some(why) => Err(NvmeError::Failed(why)),
            None => Ok(()),
        }
    }

    fn fail(&self, why: String) {
        log::error!("{}: {}", self.name, why);
        *self.failed.lock() = Some(why);
    }

    /// Disables and re-initialises the controller: every command in flight is dropped, the
    /// queues are rebuilt, and a failed controller works again if the device does.
    pub fn reset(&self) -> Result<(), NvmeError> {
        let mut queues: Vec<_> = self.io.iter().map(|q| q.lock()).collect();
        self.resets.fetch_add(1, Ordering::Relaxed);
        self.enable()?;
        self.set_queue_count(queues.len() as u32)?;
        for q in queues.iter_mut() {
            q.qp.reset();
            for s in q.slots.iter_mut() {
                s.busy = None;
            }
            self.create_pair(q)?;
        }
        drop(queues);
        self.unmask_intx();
        *self.failed.lock() = None;
        Ok(())
    }

    /// Normal shutdown (CC.SHN = 01b, §3.6.1): the controller writes back its volatile state
    /// and reports CSTS.SHST = complete, so the next power-on is not an unsafe shutdown.
    /// Takes every queue, so no command is in flight. Returns how long it took, in ms.
    pub fn shutdown(&self) -> Result<u64, NvmeError> {
        let queues: Vec<_> = self.io.iter().map(|q| q.lock()).collect();
        let _admin = self.admin.lock();
        let start = self.env.clock.now_ns();
        let cc = self.bar.read32(regs::CC);
        self.bar
            .write32(regs::CC, (cc & !regs::CC_SHN_MASK) | regs::CC_SHN_NORMAL);
        // RTD3E is the controller's own bound, in microseconds; CAP.TO when it gives none.
        let limit_ns = match self.id.rtd3e {
            0 => self.cap.timeout_ms().max(500) * 1_000_000,
            us => (us as u64 * 1000).max(500_000_000),
        };
        loop {
            let csts = self.bar.read32(regs::CSTS);
            if csts & regs::CSTS_SHST_MASK == regs::CSTS_SHST_DONE {
                break;
            }
            if csts == u32::MAX || self.env.clock.now_ns().saturating_sub(start) > limit_ns {
                return Err(NvmeError::Timeout("shutdown"));
            }
            core::hint::spin_loop();
        }
        drop(queues);
        let ms = self.env.clock.now_ns().saturating_sub(start) / 1_000_000;
        // Not an error: requests fail from here on until `nvme reset` brings it back.
        *self.failed.lock() = Some(String::from("shut down"));
        Ok(ms)
    }

    /// Aborts command `cid` of queue `sqid`; true if the controller says it aborted it.
    fn abort(&self, sqid: u16, cid: u16) -> bool {
        let cmd = Command {
            opcode: admin::ABORT,
            cdw10: sqid as u32 | (cid as u32) << 16,
            ..Default::default()
        };
        match self.admin_cmd("Abort", cmd, 0) {
            // DW0 bit 0 clear: the command was aborted.
            Ok((c, _)) => c.dw0 & 1 == 0,
            Err(e) => {
                log::warn!("{}: Abort of {}:{}: {}", self.name, sqid, cid, e);
                false
            }
        }
    }

    /// Per-queue numbers, admin queue first.
    pub fn queue_report(&self) -> Vec<QueueReport> {
        let mut out = Vec::new();
        let report = |qp: &QueuePair, wake: &Wake, cpu: Option<usize>| {
            let s: &QueueStats = &qp.stats;
            QueueReport {
                qid: qp.qid,
                size: qp.size(),
                cpu,
                pointers: s.pointers(),
                submitted: s.submitted.load(Ordering::Relaxed),
                completed: s.completed.load(Ordering::Relaxed),
                errors: s.errors.load(Ordering::Relaxed),
                timeouts: s.timeouts.load(Ordering::Relaxed),
                vector: wake.vector.map(|v| v.vector),
                entry: wake.entry,
                interrupts: wake.waiter.interrupts(),
            }
        };
        {
            let a = self.admin.lock();
            out.push(report(&a.qp, &a.wake, Some(0)));
        }
        for q in &self.io {
            let q = q.lock();
            out.push(report(&q.qp, &q.wake, Some(q.cpu)));
        }
        out
    }

    /// The queue of the calling CPU, unless the controller failed or has none.
    fn queue(&self) -> Result<&Mutex<IoQueue>, BlkError> {
        self.check_failed()?;
        let n = self.io.len().max(1);
        self.io
            .get(self.env.cpus.current() % n)
            .ok_or(BlkError::Other(String::from(
                "nvme: the controller has no I/O queue",
            )))
    }

    /// Runs `jobs`, keeping up to `depth` commands in flight on the calling CPU's queue.
    /// Returns the first error once nothing is in flight.
    pub(crate) fn run(&self, jobs: &[Job], depth: usize) -> Result<(), BlkError> {
        let mut q = self.queue()?.lock();
        self.run_on(&mut q, jobs, depth)
    }

    pub(crate) fn flush(&self, nsid: u32) -> Result<(), BlkError> {
        let mut q = self.queue()?.lock();
        let cmd = Command {
            opcode: io::FLUSH,
            nsid,
            ..Default::default()
        };
        self.single(&mut q, cmd)
    }

    /// One data-less command on an I/O queue, through slot 0.
    fn single(&self, q: &mut IoQueue, mut cmd: Command) -> Result<(), BlkError> {
        let Some(s) = q.slots.get_mut(0) else {
            return Err(BlkError::NoMemory);
        };
        s.generation = s.generation.wrapping_add(1);
        cmd.cid = cid(0, s.generation);
        s.busy = Some(Inflight {
            ptr: core::ptr::null_mut(),
            len: 0,
            bounced: false,
            read: false,
            request: 0,
            lba: 0,
        });
        if !q.qp.push(&cmd) {
            s.busy = None;
            return Err(BlkError::Other(String::from("nvme: submission queue full")));
        }
        q.qp.ring(&*self.bar);
        let mut first_err = None;
        while q.slots.iter().any(|s| s.busy.is_some()) {
            self.drain_some(q, &mut first_err)?;
        }
        first_err.map_or(Ok(()), Err)
    }

    fn run_on(&self, q: &mut IoQueue, jobs: &[Job], depth: usize) -> Result<(), BlkError> {
        let depth = depth.clamp(1, q.slots.len());
        // Cursor: job index and byte offset inside it.
        let (mut job, mut off) = (0usize, 0usize);
        let mut inflight = 0usize;
        let mut first_err: Option<BlkError> = None;
        loop {
            let mut queued = false;
            while first_err.is_none() && job < jobs.len() && inflight < depth {
                let Some(j) = jobs.get(job) else { break };
                let Some(slot) = q.slots.iter().position(|s| s.busy.is_none()) else {
                    break;
                };
                let (len, cmd) = match self.prepare(q, slot, j, off, job) {
                    Ok(x) => x,
                    Err(e) => {
                        first_err = Some(e);
                        break;
                    }
                };
                if !q.qp.push(&cmd) {
                    if let Some(s) = q.slots.get_mut(slot) {
                        s.busy = None;
                    }
                    break;
                }
                inflight += 1;
                queued = true;
                off += len;
                if off >= j.len {
                    job += 1;
                    off = 0;
                }
            }
            if queued {
                q.qp.ring(&*self.bar);
            }
            if inflight == 0 {
                break;
            }
            let done = self.drain_some(q, &mut first_err)?;
            inflight = inflight.saturating_sub(done);
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Builds the command for the chunk of job `j` at byte `off` in slot `slot`: PRPs straight
    /// at the caller's memory when it is DMA-able, else through the slot's bounce buffer.
    /// Returns the chunk's length and the command.
    fn prepare(
        &self,
        q: &mut IoQueue,
        slot: usize,
        j: &Job,
        off: usize,
        request: usize,
    ) -> Result<(usize, Command), BlkError> {
        let lba_bytes = 1usize << j.lba_shift;
        let remaining = j.len - off;
        let mut len = remaining.min(self.max_transfer);
        len -= len % lba_bytes;
        if len == 0 {
            return Err(BlkError::BadBuffer {
                len: j.len,
                sector_size: lba_bytes as u32,
            });
        }
        let ptr = j.ptr.wrapping_add(off);
        let dma = self.env.dma;
        let s = q.slots.get_mut(slot).ok_or(BlkError::NoMemory)?;
        let direct = prp::entries(&mut s.entries, ptr as usize, len, &mut |v, n| {
            dma.dma_address(v as *const u8, n)
        });
        let bounced = match direct {
            Some(()) => false,
            None => {
                len = len.min(BOUNCE_BYTES);
                len -= len % lba_bytes;
                if len == 0 {
                    return Err(BlkError::Other(String::from(
                        "nvme: LBA larger than the bounce buffer",
                    )));
                }
                if s.bounce.is_none() {
                    s.bounce = DmaRegion::alloc(dma, BOUNCE_BYTES, PAGE);
                }
                let b = s.bounce.as_ref().ok_or(BlkError::NoMemory)?;
                if !j.read {
                    // SAFETY: `ptr .. ptr+len` lies inside the caller's buffer (len <= remaining)
                    // and the bounce buffer holds BOUNCE_BYTES >= len; the slot is free.
                    unsafe { core::ptr::copy_nonoverlapping(ptr, b.ptr(0), len) };
                }
                prp::contiguous(&mut s.entries, b.phys(), len);
                true
            }
        };
        let need = prp::list_pages(s.entries.len());
        while s.pages.len() < need {
            let r = DmaRegion::alloc(dma, PAGE, PAGE).ok_or(BlkError::NoMemory)?;
            s.pages.push(ListPage {
                virt: r.ptr(0) as *mut u64,
                phys: r.phys(),
            });
            s.lists.push(r);
        }
        let (prp1, prp2) = prp::place(&s.entries, &s.pages)
            .ok_or(BlkError::Other(String::from("nvme: PRP list")))?;
        s.generation = s.generation.wrapping_add(1);
        let lba = j.lba + (off >> j.lba_shift) as u64;
        let nlb = (len >> j.lba_shift) as u32 - 1;
        s.busy = Some(Inflight {
            ptr,
            len,
            bounced,
            read: j.read,
            request,
            lba,
        });
        let cmd = Command {
            opcode: if j.read { io::READ } else { io::WRITE },
            cid: cid(slot, s.generation),
            nsid: j.nsid,
            prp1,
            prp2,
            cdw10: lba as u32,
            cdw11: (lba >> 32) as u32,
            cdw12: nlb & 0xffff,
            ..Default::default()
        };
        Ok((len, cmd))
    }

    /// Waits for and retires at least one completion; returns how many slots it freed.
    fn drain_some(
        &self,
        q: &mut IoQueue,
        first_err: &mut Option<BlkError>,
    ) -> Result<usize, BlkError> {
        let timeout = self.timeout_ns.load(Ordering::Relaxed);
        let irq = self.env.irq;
        let mech = self.mechanism;
        // INTx: the line is masked from its interrupt until the driver has looked (end_intx).
        let admin_intx = q.wake.vector.filter(|_| mech == Mechanism::Intx);
        // Bounded even against a controller that posts only completions we did not ask for:
        // if nothing of ours retires within the timeout, the commands in flight timed out.
        let start = self.env.clock.now_ns();
        loop {
            let qp = &q.qp;
            let left = timeout.saturating_sub(self.env.clock.now_ns().saturating_sub(start));
            let done = left > 0
                && q.wake.waiter.wait(left, &mut || {
                    if let (Some(v), Some(irq)) = (&admin_intx, irq) {
                        irq.end_intx(v);
                    }
                    qp.has_completion()
                });
            if !done {
                return self.timed_out(q, first_err);
            }
            let mut freed = 0;
            while let Some(c) = q.qp.pop() {
                freed += self.retire(q, &c, first_err);
            }
            q.qp.release(&*self.bar);
            if let (Some(v), Some(irq)) = (&admin_intx, irq) {
                irq.end_intx(v);
            }
            if freed > 0 {
                return Ok(freed);
            }
        }
    }

    /// Retires one completion: checks its status, copies bounced reads out, frees the slot.
    fn retire(&self, q: &mut IoQueue, c: &Completion, first_err: &mut Option<BlkError>) -> usize {
        let (slot, generation) = ((c.cid & 0xff) as usize, (c.cid >> 8) as u8);
        let Some(s) = q.slots.get_mut(slot) else {
            log::warn!("{}: completion for unknown CID {:#x}", self.name, c.cid);
            return 0;
        };
        if s.generation != generation || s.busy.is_none() || c.sqid != q.qp.qid {
            // Late completion of an aborted command, or a device bug: nothing to retire.
            return 0;
        }
        let Some(done) = s.busy.take() else { return 0 };
        if !c.status.is_success() {
            first_err.get_or_insert(BlkError::Device {
                status: c.status.code(),
                what: c.status.name(),
            });
            log::debug!(
                "{}: queue {} LBA {} (request {}): {}",
                self.name,
                q.qp.qid,
                done.lba,
                done.request,
                c.status
            );
        } else if done.bounced && done.read {
            if let Some(b) = &s.bounce {
                // SAFETY: the command completed; `done.ptr .. +len` is the caller's buffer
                // (still borrowed by the running request) and the bounce holds `len` bytes.
                unsafe { core::ptr::copy_nonoverlapping(b.ptr(0), done.ptr, done.len) };
            }
        }
        1
    }

    /// Nothing completed in time: abort every command in flight; if one does not come back,
    /// the controller is declared failed (the next request resets it).
    fn timed_out(
        &self,
        q: &mut IoQueue,
        first_err: &mut Option<BlkError>,
    ) -> Result<usize, BlkError> {
        let sqid = q.qp.qid;
        let pending: Vec<u16> = q
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.busy.is_some())
            .map(|(i, s)| cid(i, s.generation))
            .collect();
        q.qp.stats
            .timeouts
            .fetch_add(pending.len() as u64, Ordering::Relaxed);
        for c in &pending {
            let aborted = self.abort(sqid, *c);
            log::warn!(
                "{}: queue {} command {:#x} timed out after {} ms; abort {}",
                self.name,
                sqid,
                c,
                self.timeout_ms(),
                if aborted { "accepted" } else { "refused" }
            );
        }
        // Aborted commands complete with Command Abort Requested.
        let start = self.env.clock.now_ns();
        while q.slots.iter().any(|s| s.busy.is_some())
            && self.env.clock.now_ns().saturating_sub(start) < ABORT_GRACE_NS
        {
            let mut ignored = None;
            while let Some(c) = q.qp.pop() {
                self.retire(q, &c, &mut ignored);
            }
            q.qp.release(&*self.bar);
            core::hint::spin_loop();
        }
        let lost = q.slots.iter().filter(|s| s.busy.is_some()).count();
        for s in q.slots.iter_mut() {
            s.busy = None;
        }
        if lost > 0 {
            self.fail(format!(
                "{} command(s) on queue {} neither completed nor aborted",
                lost, sqid
            ));
        }
        *first_err = Some(BlkError::Timeout);
        Ok(usize::MAX)
    }
}

fn cid(slot: usize, generation: u8) -> u16 {
    (generation as u16) << 8 | (slot as u16 & 0xff)
}

fn alloc_slots(dma: &'static (dyn Dma + Sync), n: usize) -> Vec<Slot> {
    let mut v = Vec::new();
    for _ in 0..n {
        let Some(list) = DmaRegion::alloc(dma, PAGE, PAGE) else {
            break;
        };
        let first = ListPage {
            virt: list.ptr(0) as *mut u64,
            phys: list.phys(),
        };
        v.push(Slot {
            lists: alloc::vec![list],
            pages: alloc::vec![first],
            entries: Vec::new(),
            bounce: None,
            generation: 0,
            busy: None,
        });
    }
    v
}

/// Maps the MSI-X table and enables MSI-X with every entry masked; entries are programmed and
/// unmasked one by one as queues get vectors.
fn setup_msix(cfg: &dyn PciConfig, bars: &dyn BarMapper) -> Result<Msix, String> {
    let cap = msi::find_cap(cfg, id::MSIX).ok_or("no MSI-X capability")?;
    let layout = msi::msix_layout(cfg, cap, None).map_err(|e| format!("{}", e))?;
    let table = msi::map_msix_table(cfg, &layout, bars)?;
    {
        let t = MsixTable::new(&*table, layout.entries).map_err(|e| format!("{}", e))?;
        let en = msi::enable_msix(cfg, cap).map_err(|e| format!("{}", e))?;
        for e in 0..layout.entries {
            t.mask(e).map_err(|e| format!("{}", e))?;
        }
        en.finish().map_err(|e| format!("{}", e))?;
    }
    Ok(Msix {
        cap,
        table,
        entries: layout.entries,
    })
}

fn intx(bdf: Bdf, cfg: &dyn PciConfig, irq: &'static dyn Interrupts) -> Result<IrqVector, String> {
    msi::route_intx(cfg, irq, owner(bdf, 0), "nvme")
}

impl Drop for Controller {
    fn drop(&mut self) {
        // Disable first: the controller stops using queue memory and raising interrupts.
        let cc = self.bar.read32(regs::CC);
        self.bar.write32(regs::CC, cc & !regs::CC_EN);
        let _ = self.wait_ready(false);
        if let Some(irq) = self.env.irq {
            let mut vectors = Vec::new();
            vectors.push(self.admin.get_mut().wake.vector.take());
            for q in self.io.iter_mut() {
                vectors.push(q.get_mut().wake.vector.take());
            }
            if let Some(m) = &self.msix {
                if let Ok(t) = MsixTable::new(&*m.table, m.entries) {
                    for e in 0..m.entries {
                        let _ = t.mask(e);
                    }
                }
            }
            // An INTx vector is shared by every queue: give it back once.
            let mut vectors: Vec<IrqVector> = vectors.into_iter().flatten().collect();
            vectors.sort_by_key(|v| v.vector);
            vectors.dedup_by_key(|v| v.vector);
            for v in vectors {
                irq.free(&v);
            }
        }
    }
}
