//! A fake NVMe controller for host tests (NVM Express Base Specification 2.0, NVMe over PCIe
//! Transport 1.0, NVM Command Set 1.0), shaped like QEMU's `nvme` device (1b36:0010): PCI
//! config space with MSI-X and PCI Express capabilities, and a 64-bit BAR0 that holds the
//! controller registers (0x0000), the doorbells (0x1000), the MSI-X table (0x2000) and its
//! pending-bit array (0x3000).
//!
//! The controller works synchronously: a write to a submission queue tail doorbell fetches every
//! new entry at once, executes it against in-memory namespaces and posts its completion, then
//! signals the interrupt the completion queue was created with through a hook the test installs
//! ([`FakeNvme::set_interrupt_hook`]). A completion queue that is full is never overwritten:
//! completions wait inside the controller until a head doorbell write makes room.
//!
//! DMA memory is [`FakeDma`] heap memory whose "physical" address is its virtual address. Every
//! address the driver hands the controller (queues, PRP entries, PRP lists) is checked with
//! [`FakeDma::contains`] before it is touched. Whatever the driver does wrong (an address outside
//! memory, a misaligned PRP entry, a doorbell past a queue's end, a command before CSTS.RDY, ...)
//! is recorded as a violation; tests assert [`FakeNvme::violations`] is empty.
//!
//! Needs std; built for this crate's tests and with the `fake` feature, never in the kernel.
use capmon_hal::fake::FakeDma;
use capmon_hal::{BarMapper, Mmio, MmioBox, PciConfig};
use std::boxed::Box;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::format;
use std::string::String;
use std::sync::{Arc, Mutex, MutexGuard};
use std::vec;
use std::vec::Vec;

/// QEMU's NVMe controller IDs (Red Hat, Inc. QEMU NVM Express Controller).
pub const VENDOR: u16 = 0x1b36;
pub const DEVICE: u16 = 0x0010;
/// Subsystem IDs, as QEMU (Red Hat, Inc. QEMU Virtual Machine).
pub const SUBSYSTEM_VENDOR: u16 = 0x1af4;
pub const SUBSYSTEM: u16 = 0x1100;
/// Where firmware placed BAR0 (a 64-bit, non-prefetchable memory BAR in slots 0 and 1).
pub const BAR0_BASE: u64 = 0xfe00_0000;
/// BAR0's size: registers 0x0..0x1000, doorbells from 0x1000, MSI-X table at 0x2000, PBA at
/// 0x3000.
pub const BAR0_LEN: usize = 0x4000;
/// The first doorbell (submission queue 0 tail).
pub const DOORBELLS: usize = 0x1000;
/// Offset of the MSI-X table in BAR0 (Table BIR 0).
pub const MSIX_TABLE: usize = 0x2000;
/// Offset of the MSI-X pending-bit array in BAR0 (PBA BIR 0).
pub const MSIX_PBA: usize = 0x3000;
/// Offset of the MSI-X capability in config space.
pub const MSIX_CAP: u16 = 0x40;
/// Offset of the PCI Express capability in config space.
pub const PCIE_CAP: u16 = 0x80;
/// What the interrupt hook is called with when the INTx line (INTA) asserts.
pub const INTX: u16 = 0xffff;
/// Entries in the Error Information log page (Identify Controller ELPE + 1).
pub const ERROR_LOG_ENTRIES: usize = 64;
/// Identify Controller ACL and AERL (0-based): 4 Aborts and 4 Asynchronous Event Requests.
pub const ACL: u8 = 3;
pub const AERL: u8 = 3;
/// Warning and critical composite temperature thresholds (Identify Controller WCTEMP, CCTEMP),
/// Kelvin; WCTEMP is also the default over-temperature threshold feature.
pub const WCTEMP: u16 = 0x0157;
pub const CCTEMP: u16 = 0x0175;

/// Status code types and status codes the fake completes commands with (NVMe Base 2.0
/// §4.2.3, NVM Command Set 1.0 §4.1.1.2).
pub mod codes {
    pub const SCT_GENERIC: u8 = 0;
    pub const SCT_COMMAND_SPECIFIC: u8 = 1;
    pub const SCT_MEDIA: u8 = 2;

    // Generic command status (SCT 0).
    pub const SUCCESS: u8 = 0x00;
    pub const INVALID_OPCODE: u8 = 0x01;
    pub const INVALID_FIELD: u8 = 0x02;
    pub const CID_CONFLICT: u8 = 0x03;
    pub const DATA_TRANSFER_ERROR: u8 = 0x04;
    pub const ABORT_REQUESTED: u8 = 0x07;
    pub const INVALID_NAMESPACE: u8 = 0x0b;
    pub const COMMAND_SEQUENCE_ERROR: u8 = 0x0c;
    pub const PRP_OFFSET_INVALID: u8 = 0x13;
    pub const NS_WRITE_PROTECTED: u8 = 0x20;
    pub const LBA_OUT_OF_RANGE: u8 = 0x80;

    // Command specific status (SCT 1).
    pub const CQ_INVALID: u8 = 0x00;
    pub const INVALID_QID: u8 = 0x01;
    pub const INVALID_QUEUE_SIZE: u8 = 0x02;
    pub const AER_LIMIT_EXCEEDED: u8 = 0x05;
    pub const INVALID_VECTOR: u8 = 0x08;
    pub const INVALID_LOG_PAGE: u8 = 0x09;
    pub const INVALID_QUEUE_DELETION: u8 = 0x0c;
    pub const FEATURE_NOT_SAVEABLE: u8 = 0x0d;

    // Media and data integrity errors (SCT 2).
    pub const UNRECOVERED_READ_ERROR: u8 = 0x81;

    /// Bits of the 15-bit status field (completion DW3 bits 31:17): SC 7:0, SCT 10:8,
    /// CRD 12:11, More 13, Do Not Retry 14.
    pub const MORE: u16 = 1 << 13;
    pub const DNR: u16 = 1 << 14;

    /// The status field's SCT and SC.
    pub fn split(field: u16) -> (u8, u8) {
        (((field >> 8) & 7) as u8, field as u8)
    }
}
use codes::*;

/// One namespace of the fake controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeNs {
    /// 1-based namespace ID.
    pub nsid: u32,
    /// log2 of the LBA size: 9 (512 B, LBA format 0) or 12 (4096 B, LBA format 1).
    pub lba_shift: u8,
    /// Size in logical blocks (NSZE = NCAP = NUSE).
    pub blocks: u64,
}

/// Knobs of the fake controller.
#[derive(Debug, Clone)]
pub struct FakeConfig {
    pub namespaces: Vec<FakeNs>,
    /// CAP.MQES: largest I/O queue, 0-based.
    pub mqes: u16,
    /// CAP.DSTRD: doorbell stride 4 << dstrd bytes.
    pub dstrd: u8,
    /// Identify Controller MDTS: largest transfer 2^mdts minimum pages; 0 = no limit.
    pub mdts: u8,
    /// I/O submission and completion queues the controller can grant (each).
    pub max_io_queues: u16,
    /// MSI-X table size.
    pub msix_entries: u16,
    pub model: String,
    pub serial: String,
    pub firmware: String,
    /// VS: major << 16 | minor << 8 | tertiary.
    pub version: u32,
    /// Writes complete with Namespace is Write Protected; SMART reports read-only media.
    pub read_only: bool,
    /// CSTS reads that still show the old RDY after CC.EN changes (both directions).
    pub ready_after_reads: u32,
    /// CSTS.RDY never becomes 1.
    pub never_ready: bool,
    /// Enabling sets CSTS.CFS and RDY stays 0.
    pub fatal_on_enable: bool,
    /// A volatile write cache is present (Identify Controller VWC bit 0, feature 06h).
    pub vwc: bool,
    /// CAP.TO, in 500 ms units.
    pub timeout: u8,
    /// CAP.MPSMIN and CAP.MPSMAX: page sizes 2^(12 + n).
    pub mpsmin: u8,
    pub mpsmax: u8,
}

impl Default for FakeConfig {
    fn default() -> Self {
        FakeConfig {
            namespaces: vec![FakeNs {
                nsid: 1,
                lba_shift: 9,
                blocks: 2048,
            }],
            mqes: 1023,
            dstrd: 0,
            mdts: 5,
            max_io_queues: 4,
            msix_entries: 9,
            model: String::from("capmon fake NVMe"),
            serial: String::from("FAKE0001"),
            firmware: String::from("1.0"),
            version: 0x0001_0400,
            read_only: false,
            ready_after_reads: 2,
            never_ready: false,
            fatal_on_enable: false,
            vwc: true,
            timeout: 20,
            mpsmin: 0,
            mpsmax: 4,
        }
    }
}

/// The SMART / Health Information the controller reports (log page 02h).
///
/// `data_units_read`/`data_units_written` are what the log reports: thousands of 512-byte
/// units, rounded up; they follow `sectors_read`/`sectors_written`, the exact 512-byte counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FakeSmart {
    pub critical_warning: u8,
    /// Composite temperature, Kelvin.
    pub temperature_kelvin: u16,
    pub available_spare: u8,
    pub spare_threshold: u8,
    pub percentage_used: u8,
    pub data_units_read: u128,
    pub data_units_written: u128,
    pub host_read_commands: u128,
    pub host_write_commands: u128,
    pub controller_busy_time: u128,
    pub power_cycles: u128,
    pub power_on_hours: u128,
    pub unsafe_shutdowns: u128,
    pub media_errors: u128,
    pub num_err_log_entries: u128,
    pub sectors_read: u128,
    pub sectors_written: u128,
}

impl Default for FakeSmart {
    fn default() -> Self {
        FakeSmart {
            critical_warning: 0,
            temperature_kelvin: 0x0143,
            available_spare: 100,
            spare_threshold: 10,
            percentage_used: 0,
            data_units_read: 0,
            data_units_written: 0,
            host_read_commands: 0,
            host_write_commands: 0,
            controller_busy_time: 0,
            power_cycles: 1,
            power_on_hours: 0,
            unsafe_shutdowns: 0,
            media_errors: 0,
            num_err_log_entries: 0,
            sectors_read: 0,
            sectors_written: 0,
        }
    }
}

/// One command the controller fetched, in fetch order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeCommand {
    /// The submission queue it came from.
    pub qid: u16,
    pub cid: u16,
    pub opcode: u8,
    /// Command dword 0 as written (opcode, FUSE, PSDT, CID).
    pub cdw0: u32,
    pub nsid: u32,
    pub cdw10: u32,
    pub cdw11: u32,
    pub cdw12: u32,
    pub cdw13: u32,
    pub cdw14: u32,
    pub cdw15: u32,
    pub prp1: u64,
    pub prp2: u64,
    /// The 15-bit status field it completed with (see [`codes`]); `None` while outstanding
    /// (hung, an Asynchronous Event Request) or if it was dropped by a reset or queue deletion.
    pub status: Option<u16>,
    /// Completion dword 0.
    pub dw0: u32,
}

impl FakeCommand {
    /// SCT and SC of the completion, if it completed.
    pub fn sct_sc(&self) -> Option<(u8, u8)> {
        self.status.map(split)
    }

    /// Whether it completed successfully.
    pub fn succeeded(&self) -> bool {
        self.status.is_some_and(|s| split(s) == (0, 0))
    }
}

/// Why a command failed: the status it completes with and what the error log records.
#[derive(Debug, Clone, Copy)]
struct Fail {
    sct: u8,
    sc: u8,
    dnr: bool,
    lba: u64,
    /// Parameter Error Location: byte (7:0) and bit (10:8) of the command; FFFFh if none.
    loc: u16,
}

impl Fail {
    fn new(sct: u8, sc: u8) -> Fail {
        Fail {
            sct,
            sc,
            dnr: true,
            lba: 0,
            loc: 0xffff,
        }
    }

    fn generic(sc: u8) -> Fail {
        Fail::new(SCT_GENERIC, sc)
    }

    fn specific(sc: u8) -> Fail {
        Fail::new(SCT_COMMAND_SPECIFIC, sc)
    }

    fn at(mut self, byte: u16) -> Fail {
        self.loc = byte;
        self
    }

    fn lba(mut self, lba: u64) -> Fail {
        self.lba = lba;
        self
    }

    fn retry(mut self) -> Fail {
        self.dnr = false;
        self
    }

    /// The status field; every failure has an Error Information log entry (More set).
    fn field(&self) -> u16 {
        self.sc as u16 | (self.sct as u16 & 7) << 8 | MORE | if self.dnr { DNR } else { 0 }
    }
}

type CmdResult = Result<u32, Fail>;

/// What executing a command led to.
enum Exec {
    Done(CmdResult),
    /// The command stays outstanding (an Asynchronous Event Request).
    Held,
}

/// A completion waiting for room in its completion queue.
#[derive(Debug, Clone, Copy)]
struct Cqe {
    dw0: u32,
    sqid: u16,
    cid: u16,
    status: u16,
}

#[derive(Debug)]
struct Sq {
    base: u64,
    size: u16,
    cqid: u16,
    head: u16,
    tail: u16,
}

#[derive(Debug)]
struct Cq {
    base: u64,
    size: u16,
    head: u16,
    tail: u16,
    phase: bool,
    ien: bool,
    iv: u16,
    held: VecDeque<Cqe>,
}

impl Cq {
    /// Entries posted and not yet released by the host.
    fn posted(&self) -> u16 {
        (self.tail + self.size - self.head) % self.size
    }

    fn full(&self) -> bool {
        (self.tail + 1) % self.size == self.head
    }
}

/// A command fetched but not completed.
#[derive(Debug, Clone, Copy)]
struct Pending {
    sqid: u16,
    cid: u16,
    d: [u32; 16],
    log: usize,
}

/// A namespace's blocks, stored sparsely in 4 KiB chunks (unwritten chunks read as zeroes).
struct Ns {
    nsid: u32,
    lba_shift: u8,
    blocks: u64,
    chunks: BTreeMap<u64, Box<[u8]>>,
}

const CHUNK: usize = 4096;

impl Ns {
    fn bytes(&self) -> u64 {
        self.blocks << self.lba_shift
    }

    fn read(&self, off: u64, len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        let mut done = 0usize;
        while done < len {
            let at = off + done as u64;
            let (chunk, inner) = (at / CHUNK as u64, (at % CHUNK as u64) as usize);
            let n = (CHUNK - inner).min(len - done);
            if let Some(c) = self.chunks.get(&chunk) {
                out[done..done + n].copy_from_slice(&c[inner..inner + n]);
            }
            done += n;
        }
        out
    }

    fn write(&mut self, off: u64, data: &[u8]) {
        let mut done = 0usize;
        while done < data.len() {
            let at = off + done as u64;
            let (chunk, inner) = (at / CHUNK as u64, (at % CHUNK as u64) as usize);
            let n = (CHUNK - inner).min(data.len() - done);
            let c = self
                .chunks
                .entry(chunk)
                .or_insert_with(|| vec![0u8; CHUNK].into_boxed_slice());
            c[inner..inner + n].copy_from_slice(&data[done..done + n]);
            done += n;
        }
    }

    /// Zeroes (deallocates) `len` bytes at `off`.
    fn zero(&mut self, off: u64, len: u64) {
        let end = off + len;
        let mut at = off;
        while at < end {
            let (chunk, inner) = (at / CHUNK as u64, (at % CHUNK as u64) as usize);
            let n = ((CHUNK - inner) as u64).min(end - at) as usize;
            if n == CHUNK {
                self.chunks.remove(&chunk);
            } else if let Some(c) = self.chunks.get_mut(&chunk) {
                c[inner..inner + n].fill(0);
            }
            at += n as u64;
        }
    }
}

/// Current values of the features the fake implements (NVMe Base 2.0 §5.27.1).
#[derive(Debug, Clone)]
struct Features {
    arbitration: u32,
    power_management: u32,
    temp_over: u16,
    temp_under: u16,
    error_recovery: u32,
    write_cache: bool,
    coalescing: u32,
    vector_config: BTreeMap<u16, u32>,
    write_atomicity: u32,
    async_config: u32,
}

impl Default for Features {
    fn default() -> Self {
        Features {
            arbitration: 0,
            power_management: 0,
            temp_over: WCTEMP,
            temp_under: 0,
            error_recovery: 0,
            write_cache: true,
            coalescing: 0,
            vector_config: BTreeMap::new(),
            write_atomicity: 0,
            async_config: 0,
        }
    }
}

/// One Error Information log entry (NVMe Base 2.0 §5.16.1.2).
#[derive(Debug, Clone, Copy)]
struct ErrorEntry {
    count: u64,
    sqid: u16,
    cid: u16,
    /// Status field (15:1) and phase tag (0).
    status: u16,
    loc: u16,
    lba: u64,
    nsid: u32,
}

/// An error injected for the next I/O command touching `lba` of `nsid`.
#[derive(Debug, Clone, Copy)]
struct Injected {
    nsid: u32,
    lba: u64,
    sct: u8,
    sc: u8,
}

// Controller register offsets (NVMe Base 2.0 §3.1.4).
const REG_CAP: usize = 0x00;
const REG_VS: usize = 0x08;
const REG_INTMS: usize = 0x0c;
const REG_INTMC: usize = 0x10;
const REG_CC: usize = 0x14;
const REG_CSTS: usize = 0x1c;
const REG_NSSR: usize = 0x20;
const REG_AQA: usize = 0x24;
const REG_ASQ: usize = 0x28;
const REG_ACQ: usize = 0x30;

const CC_EN: u32 = 1;
/// CC fields that must not change while CC.EN is 1: CSS (6:4), MPS (10:7), AMS (13:11).
const CC_LOCKED: u32 = 0x3ff0;

// PCI config space (PCI Local Bus 3.0 §6.2, PCIe Base 4.0 §7.5).
const CFG_LEN: usize = 4096;
const CMD_MEMORY: u16 = 1 << 1;
const CMD_BUS_MASTER: u16 = 1 << 2;
const CMD_INTX_DISABLE: u16 = 1 << 10;
const STATUS_INTERRUPT: u32 = 1 << 3;
const MSIX_ENABLE: u16 = 1 << 15;
const MSIX_FUNCTION_MASK: u16 = 1 << 14;
/// PCIe Device Control (capability + 8), bit 15: Initiate Function Level Reset.
const DEVCTL: u16 = PCIE_CAP + 8;
const DEVCTL_FLR: u32 = 1 << 15;

// Admin opcodes (NVMe Base 2.0 §5).
const ADMIN_DELETE_SQ: u8 = 0x00;
const ADMIN_CREATE_SQ: u8 = 0x01;
const ADMIN_GET_LOG_PAGE: u8 = 0x02;
const ADMIN_DELETE_CQ: u8 = 0x04;
const ADMIN_CREATE_CQ: u8 = 0x05;
const ADMIN_IDENTIFY: u8 = 0x06;
const ADMIN_ABORT: u8 = 0x08;
const ADMIN_SET_FEATURES: u8 = 0x09;
const ADMIN_GET_FEATURES: u8 = 0x0a;
const ADMIN_ASYNC_EVENT: u8 = 0x0c;

// NVM command set opcodes (NVM Command Set 1.0 §3).
const NVM_FLUSH: u8 = 0x00;
const NVM_WRITE: u8 = 0x01;
const NVM_READ: u8 = 0x02;
const NVM_WRITE_ZEROES: u8 = 0x08;
const NVM_DSM: u8 = 0x09;

/// Identify Controller ONCS: Dataset Management, Write Zeroes, Save/Select in features.
const ONCS: u16 = 1 << 2 | 1 << 3 | 1 << 4;
/// Identify Controller LPA: extended data for Get Log Page (NUMDU, LPOL/LPOU).
const LPA: u8 = 1 << 2;

/// Byte offsets into a command, for Parameter Error Location.
const AT_NSID: u16 = 4;
const AT_CDW10: u16 = 40;
const AT_CDW11: u16 = 44;
const AT_CDW12: u16 = 48;

fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

fn put128(b: &mut [u8], at: usize, v: u128) {
    b[at..at + 16].copy_from_slice(&v.to_le_bytes());
}

/// An ASCII field padded with spaces (Identify SN, MN, FR).
fn put_ascii(b: &mut [u8], s: &str) {
    b.fill(b' ');
    let n = s.len().min(b.len());
    b[..n].copy_from_slice(&s.as_bytes()[..n]);
}

/// The controller and its PCI function.
struct State {
    cfg: FakeConfig,
    dma: &'static FakeDma,
    // PCI function.
    space: Vec<u8>,
    wmask: Vec<u8>,
    msix: Vec<[u32; 4]>,
    pba: Vec<u64>,
    // Controller registers.
    cc: u32,
    rdy: bool,
    rdy_reads: u32,
    cfs: bool,
    shst: u8,
    intms: u32,
    aqa: u32,
    asq: u64,
    acq: u64,
    // Queues and commands.
    sqs: BTreeMap<u16, Sq>,
    cqs: BTreeMap<u16, Cq>,
    nsqa: u16,
    ncqa: u16,
    features: Features,
    hang: BTreeSet<u16>,
    hung: Vec<Pending>,
    aers: Vec<Pending>,
    events: VecDeque<u32>,
    events_masked: u8,
    // Media.
    ns: Vec<Ns>,
    injected: Vec<Injected>,
    dirty: u64,
    // What a test reads.
    smart: FakeSmart,
    errors: VecDeque<ErrorEntry>,
    error_count: u64,
    log: Vec<FakeCommand>,
    violations: Vec<String>,
    irq_counts: BTreeMap<u16, u64>,
    /// Interrupts raised while the lock was held, delivered to the hook after.
    irqs: Vec<u16>,
}

impl State {
    fn new(cfg: FakeConfig, dma: &'static FakeDma) -> State {
        let mut seen = BTreeSet::new();
        for n in &cfg.namespaces {
            assert!(
                n.nsid != 0 && n.nsid < 0xffff_fffe && seen.insert(n.nsid),
                "FakeNvme: bad or duplicate NSID {}",
                n.nsid
            );
            assert!(
                n.lba_shift == 9 || n.lba_shift == 12,
                "FakeNvme: lba_shift must be 9 or 12"
            );
        }
        assert!(
            (1..=2048).contains(&cfg.msix_entries),
            "FakeNvme: 1..=2048 MSI-X entries"
        );
        assert!(cfg.mqes >= 1, "FakeNvme: MQES must allow 2 entries");
        assert!(cfg.mpsmin <= cfg.mpsmax && cfg.mpsmax <= 15);
        assert!(cfg.max_io_queues >= 1 && cfg.max_io_queues < 0xffff);
        let stride = 4usize << cfg.dstrd;
        assert!(
            DOORBELLS + (2 * cfg.max_io_queues as usize + 2) * stride <= MSIX_TABLE,
            "FakeNvme: doorbells of {} queues at stride {} run into the MSI-X table",
            cfg.max_io_queues,
            stride
        );
        let mut ns: Vec<Ns> = cfg
            .namespaces
            .iter()
            .map(|n| Ns {
                nsid: n.nsid,
                lba_shift: n.lba_shift,
                blocks: n.blocks,
                chunks: BTreeMap::new(),
            })
            .collect();
        ns.sort_by_key(|n| n.nsid);
        let entries = cfg.msix_entries as usize;
        let mut st = State {
            dma,
            space: vec![0; CFG_LEN],
            wmask: vec![0; CFG_LEN],
            msix: vec![[0, 0, 0, 1]; entries],
            pba: vec![0; entries.div_ceil(64)],
            cc: 0,
            rdy: false,
            rdy_reads: 0,
            cfs: false,
            shst: 0,
            intms: 0,
            aqa: 0,
            asq: 0,
            acq: 0,
            sqs: BTreeMap::new(),
            cqs: BTreeMap::new(),
            nsqa: cfg.max_io_queues,
            ncqa: cfg.max_io_queues,
            features: Features::default(),
            hang: BTreeSet::new(),
            hung: Vec::new(),
            aers: Vec::new(),
            events: VecDeque::new(),
            events_masked: 0,
            ns,
            injected: Vec::new(),
            dirty: 0,
            smart: FakeSmart::default(),
            errors: VecDeque::new(),
            error_count: 0,
            log: Vec::new(),
            violations: Vec::new(),
            irq_counts: BTreeMap::new(),
            irqs: Vec::new(),
            cfg,
        };
        st.pci_reset(BAR0_BASE, CMD_MEMORY, 0x0b);
        st
    }

    fn violation(&mut self, what: String) {
        self.violations.push(what);
    }

    // ---- PCI config space ----

    fn c8(&mut self, off: u16, v: u8, wmask: u8) {
        self.space[off as usize] = v;
        self.wmask[off as usize] = wmask;
    }

    fn c16(&mut self, off: u16, v: u16, wmask: u16) {
        for i in 0..2 {
            self.c8(off + i, (v >> (8 * i)) as u8, (wmask >> (8 * i)) as u8);
        }
    }

    fn c32(&mut self, off: u16, v: u32, wmask: u32) {
        for i in 0..4 {
            self.c8(off + i, (v >> (8 * i)) as u8, (wmask >> (8 * i)) as u8);
        }
    }

    fn cfg16(&self, off: u16) -> u16 {
        u16::from_le_bytes([self.space[off as usize], self.space[off as usize + 1]])
    }

    fn cfg32(&self, off: u16) -> u32 {
        let o = off as usize;
        u32::from_le_bytes([
            self.space[o],
            self.space[o + 1],
            self.space[o + 2],
            self.space[o + 3],
        ])
    }

    /// Config space as after reset, BAR0 at `bar`, Command `command`: header type 0, class
    /// 01/08/02, MSI-X at 0x40 (table BAR0+0x2000, PBA BAR0+0x3000), PCIe endpoint at 0x80.
    fn pci_reset(&mut self, bar: u64, command: u16, line: u8) {
        self.space.fill(0);
        self.wmask.fill(0);
        self.c16(0x00, VENDOR, 0);
        self.c16(0x02, DEVICE, 0);
        // Memory space, bus master, parity, SERR, INTx disable; no I/O BARs.
        self.c16(0x04, command, 0x0546);
        self.c16(0x06, 0x0010, 0); // capability list
        self.c32(0x08, 0x0108_0202, 0); // class 01/08/02, revision 2
        self.c8(0x0c, 0, 0xff); // cache line size
        let mask = !(BAR0_LEN as u64 - 1);
        self.c32(0x10, (bar as u32 & !0xf) | 0x4, mask as u32 & !0xf);
        self.c32(0x14, (bar >> 32) as u32, (mask >> 32) as u32);
        self.c16(0x2c, SUBSYSTEM_VENDOR, 0);
        self.c16(0x2e, SUBSYSTEM, 0);
        self.c8(0x34, MSIX_CAP as u8, 0);
        self.c8(0x3c, line, 0xff);
        self.c8(0x3d, 1, 0); // INTA
                             // MSI-X (PCI Local Bus 3.0 §6.8.2): Enable and Function Mask writable.
        let table_size = self.cfg.msix_entries - 1;
        self.c8(MSIX_CAP, 0x11, 0);
        self.c8(MSIX_CAP + 1, PCIE_CAP as u8, 0);
        self.c16(MSIX_CAP + 2, table_size, MSIX_ENABLE | MSIX_FUNCTION_MASK);
        self.c32(MSIX_CAP + 4, MSIX_TABLE as u32, 0);
        self.c32(MSIX_CAP + 8, MSIX_PBA as u32, 0);
        // PCI Express v2 endpoint (PCIe Base 4.0 §7.5.3): FLR capable, 8 GT/s x4.
        self.c8(PCIE_CAP, 0x10, 0);
        self.c8(PCIE_CAP + 1, 0, 0);
        self.c16(PCIE_CAP + 2, 0x0002, 0);
        self.c32(PCIE_CAP + 4, 1 << 28 | 1 << 15, 0);
        self.c16(DEVCTL, 0x2810, 0x7fff);
        self.c32(PCIE_CAP + 0x0c, 0x0000_0043, 0);
        self.c16(PCIE_CAP + 0x10, 0, 0x00ff);
        self.c16(PCIE_CAP + 0x12, 0x0043, 0);
        self.c32(PCIE_CAP + 0x24, 1 << 4, 0); // DevCap2: completion timeout disable
        self.c16(PCIE_CAP + 0x28, 0, 0x001f);
        for e in self.msix.iter_mut() {
            *e = [0, 0, 0, 1];
        }
        self.pba.fill(0);
    }

    fn command(&self) -> u16 {
        self.cfg16(0x04)
    }

    fn bus_master(&self) -> bool {
        self.command() & CMD_BUS_MASTER != 0
    }

    fn msix_control(&self) -> u16 {
        self.cfg16(MSIX_CAP + 2)
    }

    fn msix_enabled(&self) -> bool {
        self.msix_control() & MSIX_ENABLE != 0
    }

    fn bar0(&self) -> u64 {
        (self.cfg32(0x14) as u64) << 32 | (self.cfg32(0x10) & !0xf) as u64
    }

    fn cfg_read32(&mut self, off: u16) -> u32 {
        if off as usize + 4 > CFG_LEN {
            return u32::MAX;
        }
        if !off.is_multiple_of(4) {
            self.violation(format!("config read32 at misaligned offset {:#x}", off));
            return u32::MAX;
        }
        let mut v = self.cfg32(off);
        if off == 0x04 && self.intx_asserted() {
            v |= STATUS_INTERRUPT << 16;
        }
        v
    }

    fn cfg_write32(&mut self, off: u16, v: u32) {
        if off as usize + 4 > CFG_LEN || !off.is_multiple_of(4) {
            self.violation(format!("config write32 of {:#x} at offset {:#x}", v, off));
            return;
        }
        let old_cmd = self.command();
        for i in 0..4 {
            let o = off as usize + i;
            let m = self.wmask[o];
            self.space[o] = (self.space[o] & !m) | ((v >> (8 * i)) as u8 & m);
        }
        match off {
            0x04 if old_cmd & CMD_INTX_DISABLE != 0 && self.command() & CMD_INTX_DISABLE == 0 => {
                self.intx_recheck()
            }
            MSIX_CAP => self.msix_recheck(),
            DEVCTL if v & DEVCTL_FLR != 0 => self.function_level_reset(),
            _ => {}
        }
    }

    /// Function Level Reset (PCIe Base 4.0 §6.6.2): the controller and the function's
    /// registers return to their reset values (BAR0 unassigned, decoding off).
    fn function_level_reset(&mut self) {
        self.controller_reset();
        self.cc = 0;
        self.rdy = false;
        self.rdy_reads = 0;
        self.cfs = false;
        self.shst = 0;
        self.aqa = 0;
        self.asq = 0;
        self.acq = 0;
        let line = self.space[0x3c];
        self.pci_reset(0, 0, line);
    }

    // ---- BAR0 ----

    fn bar_read(&mut self, abs: usize, size: usize) -> u32 {
        match abs {
            0..DOORBELLS => {
                if size != 4 {
                    self.violation(format!(
                        "{}-byte read of controller register {:#x} (registers are 32/64-bit)",
                        size, abs
                    ));
                    return 0;
                }
                self.reg_read(abs)
            }
            DOORBELLS..MSIX_TABLE => 0,
            MSIX_TABLE..MSIX_PBA => {
                if size != 4 {
                    self.violation(format!("{}-byte read of MSI-X table {:#x}", size, abs));
                    return u32::MAX;
                }
                let o = abs - MSIX_TABLE;
                self.msix.get(o / 16).map_or(0, |e| e[(o % 16) / 4])
            }
            _ => {
                if size != 4 {
                    self.violation(format!("{}-byte read of MSI-X PBA {:#x}", size, abs));
                    return u32::MAX;
                }
                let o = abs - MSIX_PBA;
                self.pba
                    .get(o / 8)
                    .map_or(0, |q| (q >> (32 * ((o % 8) / 4))) as u32)
            }
        }
    }

    fn bar_write(&mut self, abs: usize, size: usize, v: u32) {
        if size != 4 {
            self.violation(format!(
                "{}-byte write of {:#x} at BAR0 offset {:#x} (dword accesses only)",
                size, v, abs
            ));
            return;
        }
        match abs {
            0..DOORBELLS => self.reg_write(abs, v),
            DOORBELLS..MSIX_TABLE => self.doorbell(abs, v),
            MSIX_TABLE..MSIX_PBA => {
                let o = abs - MSIX_TABLE;
                let (e, r) = (o / 16, (o % 16) / 4);
                if e >= self.msix.len() {
                    self.violation(format!(
                        "write of {:#x} past the MSI-X table at {:#x}",
                        v, abs
                    ));
                    return;
                }
                let live = self.msix_enabled()
                    && self.msix_control() & MSIX_FUNCTION_MASK == 0
                    && self.msix[e][3] & 1 == 0;
                if r < 3 && live && self.msix[e][r] != v {
                    self.violation(format!(
                        "MSI-X entry {} message changed while unmasked (PCI 3.0 §6.8.2.9)",
                        e
                    ));
                }
                // Vector Control: only Mask (bit 0) is implemented; the rest reads 0.
                let v = if r == 3 { v & 1 } else { v };
                let unmasked = r == 3 && self.msix[e][3] & 1 != 0 && v & 1 == 0;
                self.msix[e][r] = v;
                if unmasked {
                    self.msix_recheck();
                }
            }
            _ => self.violation(format!("write of {:#x} to the MSI-X PBA at {:#x}", v, abs)),
        }
    }

    fn cap(&self) -> u64 {
        let c = &self.cfg;
        c.mqes as u64
            | 1 << 16 // CQR: queues must be physically contiguous
            | (c.timeout as u64) << 24
            | (c.dstrd as u64 & 0xf) << 32
            | 1 << 37 // CSS: NVM command set
            | (c.mpsmin as u64 & 0xf) << 48
            | (c.mpsmax as u64 & 0xf) << 52
    }

    fn csts(&self) -> u32 {
        self.rdy as u32 | (self.cfs as u32) << 1 | (self.shst as u32) << 2
    }

    fn reg_read(&mut self, off: usize) -> u32 {
        match off {
            REG_CAP => self.cap() as u32,
            0x04 => (self.cap() >> 32) as u32,
            REG_VS => self.cfg.version,
            REG_INTMS | REG_INTMC => {
                if self.msix_enabled() {
                    self.violation(format!("INTMS/INTMC read at {:#x} with MSI-X enabled", off));
                }
                self.intms
            }
            REG_CC => self.cc,
            REG_CSTS => {
                let target = self.rdy_target();
                if self.rdy != target {
                    if self.rdy_reads == 0 {
                        self.rdy = target;
                    } else {
                        self.rdy_reads -= 1;
                    }
                }
                self.csts()
            }
            REG_AQA => self.aqa,
            REG_ASQ => self.asq as u32,
            0x2c => (self.asq >> 32) as u32,
            REG_ACQ => self.acq as u32,
            0x34 => (self.acq >> 32) as u32,
            _ => 0,
        }
    }

    fn rdy_target(&self) -> bool {
        self.cc & CC_EN != 0 && !self.cfg.never_ready && !self.cfs
    }

    fn reg_write(&mut self, off: usize, v: u32) {
        let enabled = self.cc & CC_EN != 0;
        match off {
            REG_INTMS | REG_INTMC => {
                if self.msix_enabled() {
                    self.violation(format!(
                        "INTMS/INTMC write of {:#x} with MSI-X enabled (NVMe 2.0 §3.1.4.3)",
                        v
                    ));
                    return;
                }
                if off == REG_INTMS {
                    self.intms |= v;
                } else {
                    self.intms &= !v;
                    self.intx_recheck();
                }
            }
            REG_CC => self.write_cc(v),
            REG_AQA | REG_ASQ | 0x2c | REG_ACQ | 0x34 => {
                if enabled {
                    self.violation(format!(
                        "admin queue register {:#x} written with CC.EN = 1",
                        off
                    ));
                }
                match off {
                    REG_AQA => self.aqa = v & 0x0fff_0fff,
                    REG_ASQ => self.asq = (self.asq & !0xffff_ffff) | v as u64,
                    0x2c => self.asq = (self.asq & 0xffff_ffff) | (v as u64) << 32,
                    REG_ACQ => self.acq = (self.acq & !0xffff_ffff) | v as u64,
                    _ => self.acq = (self.acq & 0xffff_ffff) | (v as u64) << 32,
                }
            }
            REG_NSSR => self.violation(format!(
                "NSSR written with {:#x}: subsystem reset not supported (CAP.NSSRS = 0)",
                v
            )),
            _ => self.violation(format!(
                "write of {:#x} to read-only or reserved register {:#x}",
                v, off
            )),
        }
    }

    fn write_cc(&mut self, v: u32) {
        let old = self.cc;
        let (was, now) = (old & CC_EN != 0, v & CC_EN != 0);
        if was && now && (old ^ v) & CC_LOCKED != 0 {
            self.violation(format!(
                "CC.CSS/MPS/AMS changed ({:#x} -> {:#x}) while CC.EN = 1",
                old, v
            ));
        }
        if !was && now && self.rdy {
            self.violation(String::from(
                "CC.EN set while CSTS.RDY is still 1 (the last disable had not finished)",
            ));
        }
        // Clearing EN before RDY showed the enable is undefined (§3.1.4.5), unless the
        // controller will never get there (a timeout or a fatal status is a reason to reset).
        if was && !now && !self.rdy && self.rdy_target() {
            self.violation(String::from(
                "CC.EN cleared before CSTS.RDY became 1 (the enable had not finished)",
            ));
        }
        self.cc = v;
        if was != now {
            self.rdy_reads = self.cfg.ready_after_reads;
        }
        if was && !now {
            self.controller_reset();
        } else if !was && now {
            self.enable();
        }
        let shn = (v >> 14) & 3;
        if shn != 0 && (old >> 14) & 3 == 0 && self.shst == 0 {
            // Shutdown processing is instant: the cache is flushed, SHST says complete.
            self.dirty = 0;
            self.shst = 2;
        }
    }

    fn page_size(&self) -> u64 {
        1 << (12 + ((self.cc >> 7) & 0xf))
    }

    fn enable(&mut self) {
        let mut bad = Vec::new();
        let mps = ((self.cc >> 7) & 0xf) as u8;
        if mps < self.cfg.mpsmin || mps > self.cfg.mpsmax {
            bad.push(format!(
                "CC.MPS {} outside CAP.MPSMIN..=MPSMAX {}..={}",
                mps, self.cfg.mpsmin, self.cfg.mpsmax
            ));
        }
        if (self.cc >> 4) & 7 != 0 {
            bad.push(format!(
                "CC.CSS {} but CAP.CSS offers only the NVM command set (000b)",
                (self.cc >> 4) & 7
            ));
        }
        if (self.cc >> 11) & 7 != 0 {
            bad.push(format!(
                "CC.AMS {} but CAP.AMS offers round robin only",
                (self.cc >> 11) & 7
            ));
        }
        let asqs = (self.aqa & 0xfff) as u16 + 1;
        let acqs = ((self.aqa >> 16) & 0xfff) as u16 + 1;
        if asqs < 2 || acqs < 2 {
            bad.push(format!(
                "AQA {:#x}: admin queues need at least 2 entries",
                self.aqa
            ));
        }
        let page = self.page_size();
        for (name, base, len) in [
            ("ASQ", self.asq, asqs as usize * 64),
            ("ACQ", self.acq, acqs as usize * 16),
        ] {
            if base == 0 || !base.is_multiple_of(page) {
                bad.push(format!("{} {:#x} not set or not page aligned", name, base));
            } else if !self.dma.contains(base, len) {
                bad.push(format!(
                    "{} {:#x}+{:#x} outside DMA memory",
                    name, base, len
                ));
            }
        }
        if self.cfg.fatal_on_enable {
            self.cfs = true;
            return;
        }
        if !bad.is_empty() {
            for b in bad {
                self.violation(format!("enable: {}", b));
            }
            self.cfs = true;
            return;
        }
        self.sqs.insert(
            0,
            Sq {
                base: self.asq,
                size: asqs,
                cqid: 0,
                head: 0,
                tail: 0,
            },
        );
        self.cqs.insert(
            0,
            Cq {
                base: self.acq,
                size: acqs,
                head: 0,
                tail: 0,
                phase: true,
                ien: true,
                iv: 0,
                held: VecDeque::new(),
            },
        );
    }

    /// Controller Level Reset (§3.7.2): queues deleted, outstanding commands dropped, features
    /// back to defaults; AQA, ASQ and ACQ keep their values.
    fn controller_reset(&mut self) {
        self.sqs.clear();
        self.cqs.clear();
        self.hung.clear();
        self.aers.clear();
        self.events.clear();
        self.events_masked = 0;
        self.nsqa = self.cfg.max_io_queues;
        self.ncqa = self.cfg.max_io_queues;
        self.features = Features::default();
        self.intms = 0;
        self.cfs = false;
        self.shst = 0;
    }

    fn running(&self) -> Result<(), &'static str> {
        if self.cc & CC_EN == 0 {
            Err("CC.EN = 0")
        } else if self.cfs {
            Err("CSTS.CFS = 1")
        } else if !self.rdy {
            Err("CSTS.RDY = 0 (the host has not seen the controller ready)")
        } else if self.shst != 0 {
            Err("shutdown")
        } else {
            Ok(())
        }
    }

    // ---- Doorbells ----

    fn doorbell(&mut self, abs: usize, v: u32) {
        let stride = 4usize << self.cfg.dstrd;
        let rel = abs - DOORBELLS;
        if !rel.is_multiple_of(stride) {
            self.violation(format!(
                "write of {:#x} at {:#x}: not a doorbell (stride {})",
                v, abs, stride
            ));
            return;
        }
        let (qid, completion) = ((rel / stride / 2) as u16, (rel / stride) % 2 == 1);
        let name = if completion { "CQ head" } else { "SQ tail" };
        if let Err(why) = self.running() {
            self.violation(format!(
                "{} doorbell {} of queue {} written while {}",
                name, v, qid, why
            ));
            return;
        }
        if v > 0xffff {
            self.violation(format!(
                "{} doorbell of queue {}: reserved bits set in {:#x}",
                name, qid, v
            ));
            self.async_error(1);
            return;
        }
        let v = v as u16;
        if completion {
            self.cq_head(qid, v);
        } else {
            self.sq_tail(qid, v);
        }
    }

    fn sq_tail(&mut self, qid: u16, v: u16) {
        let Some(sq) = self.sqs.get_mut(&qid) else {
            self.violation(format!(
                "SQ tail doorbell {} of nonexistent queue {}",
                v, qid
            ));
            self.async_error(0);
            return;
        };
        if v >= sq.size {
            let size = sq.size;
            self.violation(format!(
                "SQ {} tail doorbell {} beyond the queue's {} entries",
                qid, v, size
            ));
            self.async_error(1);
            return;
        }
        sq.tail = v;
        if !self.bus_master() {
            self.violation(format!(
                "SQ {} doorbell with bus mastering disabled: the controller cannot fetch",
                qid
            ));
            return;
        }
        self.process_sq(qid);
    }

    fn cq_head(&mut self, qid: u16, v: u16) {
        let Some(cq) = self.cqs.get_mut(&qid) else {
            self.violation(format!(
                "CQ head doorbell {} of nonexistent queue {}",
                v, qid
            ));
            self.async_error(0);
            return;
        };
        if v >= cq.size {
            let size = cq.size;
            self.violation(format!(
                "CQ {} head doorbell {} beyond the queue's {} entries",
                qid, v, size
            ));
            self.async_error(1);
            return;
        }
        let advance = (v + cq.size - cq.head) % cq.size;
        if advance > cq.posted() {
            let (head, tail) = (cq.head, cq.tail);
            self.violation(format!(
                "CQ {} head doorbell {} releases entries not posted (head {}, tail {})",
                qid, v, head, tail
            ));
            self.async_error(1);
            return;
        }
        cq.head = v;
        self.flush_cq(qid);
    }

    /// Fetches and executes every entry between the SQ's head and tail.
    fn process_sq(&mut self, qid: u16) {
        loop {
            let Some(sq) = self.sqs.get(&qid) else {
                return;
            };
            if sq.head == sq.tail {
                return;
            }
            let addr = sq.base + sq.head as u64 * 64;
            let mut raw = [0u8; 64];
            if !self.mem_read(addr, &mut raw, "submission queue entry") {
                return;
            }
            if let Some(sq) = self.sqs.get_mut(&qid) {
                sq.head = (sq.head + 1) % sq.size;
            }
            let mut d = [0u32; 16];
            for (i, w) in d.iter_mut().enumerate() {
                *w = u32::from_le_bytes(raw[4 * i..4 * i + 4].try_into().unwrap());
            }
            self.execute(qid, d);
        }
    }

    // ---- DMA ----

    fn mem_read(&mut self, addr: u64, buf: &mut [u8], what: &str) -> bool {
        if !self.bus_master() {
            self.violation(format!("DMA read of {} with bus mastering disabled", what));
            return false;
        }
        if !self.dma.contains(addr, buf.len()) {
            self.violation(format!(
                "DMA read of {} outside memory at {:#x}+{:#x}",
                what,
                addr,
                buf.len()
            ));
            return false;
        }
        // SAFETY: `contains` says addr..addr+len lies inside one live FakeDma allocation or
        // granted range, and FakeDma's physical addresses are virtual addresses.
        unsafe { core::ptr::copy_nonoverlapping(addr as *const u8, buf.as_mut_ptr(), buf.len()) };
        true
    }

    fn mem_write(&mut self, addr: u64, data: &[u8], what: &str) -> bool {
        if !self.bus_master() {
            self.violation(format!("DMA write of {} with bus mastering disabled", what));
            return false;
        }
        if !self.dma.contains(addr, data.len()) {
            self.violation(format!(
                "DMA write of {} outside memory at {:#x}+{:#x}",
                what,
                addr,
                data.len()
            ));
            return false;
        }
        // SAFETY: as in `mem_read`.
        unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), addr as *mut u8, data.len()) };
        true
    }

    /// The memory `len` bytes of data occupy by the command's PRP1 and PRP2 (NVMe Base 2.0
    /// §4.1.1): one segment per memory page, each checked to lie in DMA memory.
    fn prp_segments(
        &mut self,
        prp1: u64,
        prp2: u64,
        len: usize,
    ) -> Result<Vec<(u64, usize)>, Fail> {
        let page = self.page_size();
        let offset_invalid = Fail::generic(PRP_OFFSET_INVALID);
        let transfer_error = Fail::generic(DATA_TRANSFER_ERROR);
        let mut segs = Vec::new();
        if len == 0 {
            return Ok(segs);
        }
        if prp1 & 3 != 0 {
            self.violation(format!("PRP1 {:#x} not dword aligned", prp1));
            return Err(offset_invalid.at(24));
        }
        let first = ((page - prp1 % page) as usize).min(len);
        segs.push((prp1, first));
        let mut left = len - first;
        if left > 0 && left as u64 <= page {
            if !prp2.is_multiple_of(page) {
                self.violation(format!(
                    "PRP2 {:#x} names the second page of a {}-byte transfer but is not page aligned",
                    prp2, len
                ));
                return Err(offset_invalid.at(32));
            }
            segs.push((prp2, left));
            left = 0;
        }
        if left > 0 {
            // PRP2 points at a PRP list; only this first list pointer may have an offset.
            if prp2 & 7 != 0 {
                self.violation(format!("PRP list pointer {:#x} not qword aligned", prp2));
                return Err(offset_invalid.at(32));
            }
            let mut at = prp2;
            while left > 0 {
                let mut raw = [0u8; 8];
                if !self.mem_read(at, &mut raw, "PRP list entry (list too short?)") {
                    return Err(transfer_error);
                }
                let e = u64::from_le_bytes(raw);
                let last_in_page = (at + 8).is_multiple_of(page);
                if last_in_page && left as u64 > page {
                    if !e.is_multiple_of(page) {
                        self.violation(format!(
                            "PRP list chain pointer {:#x} (at {:#x}) not page aligned",
                            e, at
                        ));
                        return Err(offset_invalid);
                    }
                    at = e;
                    continue;
                }
                if !e.is_multiple_of(page) {
                    self.violation(format!(
                        "PRP list entry {:#x} (at {:#x}) not page aligned",
                        e, at
                    ));
                    return Err(offset_invalid);
                }
                let n = (page as usize).min(left);
                segs.push((e, n));
                left -= n;
                at += 8;
            }
        }
        if !self.bus_master() {
            self.violation(String::from("data transfer with bus mastering disabled"));
            return Err(transfer_error);
        }
        for &(a, n) in &segs {
            if !self.dma.contains(a, n) {
                self.violation(format!(
                    "PRP entry {:#x}+{:#x} outside DMA memory (transfer of {} bytes)",
                    a, n, len
                ));
                return Err(transfer_error);
            }
        }
        Ok(segs)
    }

    /// Moves `data` to the host through the command's PRPs.
    fn send(&mut self, d: &[u32; 16], data: &[u8]) -> Result<(), Fail> {
        let segs = self.prp_segments(prp(d, 6), prp(d, 8), data.len())?;
        let mut done = 0;
        for (a, n) in segs {
            if !self.mem_write(a, &data[done..done + n], "command data") {
                return Err(Fail::generic(DATA_TRANSFER_ERROR));
            }
            done += n;
        }
        Ok(())
    }

    /// Reads `len` bytes from the host through the command's PRPs.
    fn receive(&mut self, d: &[u32; 16], len: usize) -> Result<Vec<u8>, Fail> {
        let segs = self.prp_segments(prp(d, 6), prp(d, 8), len)?;
        let mut out = vec![0u8; len];
        let mut done = 0;
        for (a, n) in segs {
            if !self.mem_read(a, &mut out[done..done + n], "command data") {
                return Err(Fail::generic(DATA_TRANSFER_ERROR));
            }
            done += n;
        }
        Ok(out)
    }

    /// The largest transfer MDTS allows, in bytes (None: no limit).
    fn max_transfer(&self) -> Option<u64> {
        match self.cfg.mdts {
            0 => None,
            m => Some((1u64 << m.min(40)) << (12 + self.cfg.mpsmin)),
        }
    }

    fn check_mdts(&self, len: u64) -> Result<(), Fail> {
        match self.max_transfer() {
            Some(max) if len > max => Err(Fail::generic(INVALID_FIELD).at(AT_CDW12)),
            _ => Ok(()),
        }
    }

    // ---- Commands ----

    fn execute(&mut self, sqid: u16, d: [u32; 16]) {
        let cid = (d[0] >> 16) as u16;
        let opcode = d[0] as u8;
        let log = self.log.len();
        self.log.push(FakeCommand {
            qid: sqid,
            cid,
            opcode,
            cdw0: d[0],
            nsid: d[1],
            cdw10: d[10],
            cdw11: d[11],
            cdw12: d[12],
            cdw13: d[13],
            cdw14: d[14],
            cdw15: d[15],
            prp1: prp(&d, 6),
            prp2: prp(&d, 8),
            status: None,
            dw0: 0,
        });
        let p = Pending { sqid, cid, d, log };
        if self.cid_outstanding(sqid, cid, log) {
            self.violation(format!(
                "CID {:#x} submitted on SQ {} while a command with that CID is outstanding",
                cid, sqid
            ));
            self.complete(p, Err(Fail::generic(CID_CONFLICT).at(2)));
            return;
        }
        let fuse = (d[0] >> 8) & 3;
        let psdt = (d[0] >> 14) & 3;
        if fuse != 0 || psdt != 0 {
            self.violation(format!(
                "command {:#x} on SQ {}: FUSE {} / PSDT {} but the controller supports neither \
                 fused operations nor SGLs",
                opcode, sqid, fuse, psdt
            ));
            self.complete(p, Err(Fail::generic(INVALID_FIELD).at(1)));
            return;
        }
        // An Abort must get through a hung admin queue, or nothing could rescue it.
        if self.hang.contains(&sqid) && !(sqid == 0 && opcode == ADMIN_ABORT) {
            self.hung.push(p);
            return;
        }
        self.run(p);
    }

    fn run(&mut self, p: Pending) {
        let r = if p.sqid == 0 {
            self.admin(p)
        } else {
            Exec::Done(self.nvm(&p.d))
        };
        if let Exec::Done(r) = r {
            self.complete(p, r);
        }
        if p.sqid == 0 {
            self.deliver_events();
        }
    }

    fn cid_outstanding(&self, sqid: u16, cid: u16, log: usize) -> bool {
        let pending = self
            .hung
            .iter()
            .chain(self.aers.iter())
            .any(|p| p.sqid == sqid && p.cid == cid && p.log != log);
        let held = self
            .sqs
            .get(&sqid)
            .and_then(|sq| self.cqs.get(&sq.cqid))
            .is_some_and(|cq| cq.held.iter().any(|e| e.sqid == sqid && e.cid == cid));
        pending || held
    }

    /// Completes a command: logs the status, records an error log entry for a failure, and
    /// queues the completion on the SQ's CQ (dropped if the SQ is gone).
    fn complete(&mut self, p: Pending, r: CmdResult) {
        let (dw0, status) = match r {
            Ok(dw0) => (dw0, 0),
            Err(f) => (0, f.field()),
        };
        if let Some(c) = self.log.get_mut(p.log) {
            c.status = Some(status);
            c.dw0 = dw0;
        }
        let Some(cqid) = self.sqs.get(&p.sqid).map(|s| s.cqid) else {
            return;
        };
        if let Err(f) = r {
            let phase = self.cqs.get(&cqid).is_some_and(|cq| cq.phase);
            self.record_error(p, f, status, phase);
        }
        if let Some(cq) = self.cqs.get_mut(&cqid) {
            cq.held.push_back(Cqe {
                dw0,
                sqid: p.sqid,
                cid: p.cid,
                status,
            });
        }
        self.flush_cq(cqid);
    }

    fn record_error(&mut self, p: Pending, f: Fail, status: u16, phase: bool) {
        self.error_count += 1;
        self.smart.num_err_log_entries += 1;
        if f.sct == SCT_MEDIA {
            self.smart.media_errors += 1;
        }
        self.errors.push_front(ErrorEntry {
            count: self.error_count,
            sqid: p.sqid,
            cid: p.cid,
            status: status << 1 | phase as u16,
            loc: f.loc,
            lba: f.lba,
            nsid: p.d[1],
        });
        self.errors.truncate(ERROR_LOG_ENTRIES);
    }

    /// Posts the completions waiting for `cqid` while it has room.
    fn flush_cq(&mut self, cqid: u16) {
        loop {
            let Some(cq) = self.cqs.get_mut(&cqid) else {
                return;
            };
            if cq.held.is_empty() || cq.full() {
                return;
            }
            let e = cq.held.pop_front().unwrap();
            let addr = cq.base + cq.tail as u64 * 16;
            let phase = cq.phase;
            cq.tail = (cq.tail + 1) % cq.size;
            if cq.tail == 0 {
                cq.phase = !cq.phase;
            }
            let sq_head = self.sqs.get(&e.sqid).map_or(0, |s| s.head);
            let mut raw = [0u8; 16];
            put32(&mut raw, 0, e.dw0);
            put32(&mut raw, 8, sq_head as u32 | (e.sqid as u32) << 16);
            put32(
                &mut raw,
                12,
                e.cid as u32 | (phase as u32) << 16 | (e.status as u32) << 17,
            );
            if self.mem_write(addr, &raw, "completion queue entry") {
                self.raise(cqid);
            }
        }
    }

    // ---- Interrupts ----

    fn fire(&mut self, entry: u16) {
        *self.irq_counts.entry(entry).or_insert(0) += 1;
        self.irqs.push(entry);
    }

    /// A completion was posted to `cqid`: signal its vector.
    fn raise(&mut self, cqid: u16) {
        let Some(cq) = self.cqs.get(&cqid) else {
            return;
        };
        if !cq.ien {
            return;
        }
        let iv = cq.iv;
        if self.msix_enabled() {
            let function_masked = self.msix_control() & MSIX_FUNCTION_MASK != 0;
            match self.msix.get(iv as usize) {
                Some(e) if !function_masked && e[3] & 1 == 0 => self.fire(iv),
                Some(_) => self.pba[iv as usize / 64] |= 1 << (iv % 64),
                None => {}
            }
        } else if self.command() & CMD_INTX_DISABLE == 0 && self.intms & 1 == 0 {
            self.fire(INTX);
        }
    }

    /// Sends the messages of pending entries that are no longer masked.
    fn msix_recheck(&mut self) {
        if !self.msix_enabled() || self.msix_control() & MSIX_FUNCTION_MASK != 0 {
            return;
        }
        for e in 0..self.msix.len() {
            let bit = 1u64 << (e % 64);
            if self.pba[e / 64] & bit != 0 && self.msix[e][3] & 1 == 0 {
                self.pba[e / 64] &= !bit;
                self.fire(e as u16);
            }
        }
    }

    /// Whether INTx is asserted: MSI-X off, an interrupting CQ holds unreleased entries and
    /// the vector is not masked by INTMS (Interrupt Disable only stops the pin).
    fn intx_asserted(&self) -> bool {
        !self.msix_enabled()
            && self.intms & 1 == 0
            && self.cqs.values().any(|cq| cq.ien && cq.posted() > 0)
    }

    /// The INTx line may have become visible (unmasked): assert it if the level is high.
    fn intx_recheck(&mut self) {
        if self.intx_asserted() && self.command() & CMD_INTX_DISABLE == 0 {
            self.fire(INTX);
        }
    }

    // ---- Asynchronous events ----

    fn async_error(&mut self, info: u8) {
        // Error status events, Error Information log (NVMe Base 2.0 §5.2, Figure 145).
        self.queue_event(0, info, 0x01);
    }

    fn queue_event(&mut self, event_type: u8, info: u8, lid: u8) {
        let dw0 = (event_type & 7) as u32 | (info as u32) << 8 | (lid as u32) << 16;
        self.events.push_back(dw0);
        self.deliver_events();
    }

    /// Completes outstanding Asynchronous Event Requests with queued events whose type is not
    /// masked (an event type stays masked until its log page is read with RAE cleared).
    fn deliver_events(&mut self) {
        while !self.aers.is_empty() {
            let masked = self.events_masked;
            let Some(i) = self
                .events
                .iter()
                .position(|e| masked & (1 << (e & 7)) == 0)
            else {
                return;
            };
            let dw0 = self.events.remove(i).unwrap();
            self.events_masked |= 1 << (dw0 & 7);
            let p = self.aers.remove(0);
            self.complete(p, Ok(dw0));
        }
    }

    // ---- Admin commands ----

    fn admin(&mut self, p: Pending) -> Exec {
        let d = &p.d;
        let r = match d[0] as u8 {
            ADMIN_DELETE_SQ => self.delete_sq(d),
            ADMIN_CREATE_SQ => self.create_sq(d),
            ADMIN_GET_LOG_PAGE => self.get_log_page(d),
            ADMIN_DELETE_CQ => self.delete_cq(d),
            ADMIN_CREATE_CQ => self.create_cq(d),
            ADMIN_IDENTIFY => self.identify(d),
            ADMIN_ABORT => self.abort(d),
            ADMIN_SET_FEATURES => self.set_features(d),
            ADMIN_GET_FEATURES => self.get_features(d),
            ADMIN_ASYNC_EVENT => {
                if self.aers.len() > AERL as usize {
                    Err(Fail::specific(AER_LIMIT_EXCEEDED))
                } else {
                    self.aers.push(p);
                    self.deliver_events();
                    return Exec::Held;
                }
            }
            _ => Err(Fail::generic(INVALID_OPCODE).at(0)),
        };
        Exec::Done(r)
    }

    fn check_entry_sizes(&mut self, sq: bool) -> Result<(), Fail> {
        let (name, got, want) = if sq {
            ("IOSQES", (self.cc >> 16) & 0xf, 6)
        } else {
            ("IOCQES", (self.cc >> 20) & 0xf, 4)
        };
        if got != want {
            self.violation(format!(
                "I/O queue created with CC.{} = {} (the controller's entries are 2^{} bytes)",
                name, got, want
            ));
            return Err(Fail::generic(INVALID_FIELD));
        }
        Ok(())
    }

    /// Checks an I/O queue's base (PRP1, page aligned, physically contiguous) and size.
    fn check_queue_memory(&mut self, what: &str, base: u64, len: usize) -> Result<(), Fail> {
        if !base.is_multiple_of(self.page_size()) {
            self.violation(format!("{} base {:#x} not page aligned", what, base));
            return Err(Fail::generic(PRP_OFFSET_INVALID).at(24));
        }
        if !self.dma.contains(base, len) {
            self.violation(format!(
                "{} at {:#x}+{:#x} outside DMA memory",
                what, base, len
            ));
            return Err(Fail::generic(DATA_TRANSFER_ERROR));
        }
        Ok(())
    }

    fn queue_size(&self, cdw10: u32) -> Result<u16, Fail> {
        let qsize = (cdw10 >> 16) as u16;
        if qsize == 0 || qsize > self.cfg.mqes {
            return Err(Fail::specific(INVALID_QUEUE_SIZE).at(AT_CDW10 + 2));
        }
        Ok(qsize + 1)
    }

    fn create_cq(&mut self, d: &[u32; 16]) -> CmdResult {
        self.check_entry_sizes(false)?;
        let qid = d[10] as u16;
        if qid == 0 || qid > self.ncqa || self.cqs.contains_key(&qid) {
            return Err(Fail::specific(INVALID_QID).at(AT_CDW10));
        }
        let size = self.queue_size(d[10])?;
        if d[11] & 1 == 0 {
            // CAP.CQR = 1: queues must be physically contiguous.
            return Err(Fail::generic(INVALID_FIELD).at(AT_CDW11));
        }
        let ien = d[11] & 2 != 0;
        let iv = (d[11] >> 16) as u16;
        if iv >= self.cfg.msix_entries {
            return Err(Fail::specific(INVALID_VECTOR).at(AT_CDW11 + 2));
        }
        let base = prp(d, 6);
        self.check_queue_memory("I/O CQ", base, size as usize * 16)?;
        self.cqs.insert(
            qid,
            Cq {
                base,
                size,
                head: 0,
                tail: 0,
                phase: true,
                ien,
                iv,
                held: VecDeque::new(),
            },
        );
        Ok(0)
    }

    fn create_sq(&mut self, d: &[u32; 16]) -> CmdResult {
        self.check_entry_sizes(true)?;
        let qid = d[10] as u16;
        if qid == 0 || qid > self.nsqa || self.sqs.contains_key(&qid) {
            return Err(Fail::specific(INVALID_QID).at(AT_CDW10));
        }
        let cqid = (d[11] >> 16) as u16;
        if cqid == 0 || !self.cqs.contains_key(&cqid) {
            return Err(Fail::specific(CQ_INVALID).at(AT_CDW11 + 2));
        }
        let size = self.queue_size(d[10])?;
        if d[11] & 1 == 0 {
            return Err(Fail::generic(INVALID_FIELD).at(AT_CDW11));
        }
        let base = prp(d, 6);
        self.check_queue_memory("I/O SQ", base, size as usize * 64)?;
        self.sqs.insert(
            qid,
            Sq {
                base,
                size,
                cqid,
                head: 0,
                tail: 0,
            },
        );
        Ok(0)
    }

    fn delete_sq(&mut self, d: &[u32; 16]) -> CmdResult {
        let qid = d[10] as u16;
        if qid == 0 || !self.sqs.contains_key(&qid) {
            return Err(Fail::specific(INVALID_QID).at(AT_CDW10));
        }
        let sq = self.sqs.remove(&qid).unwrap();
        // Commands not completed are dropped; so are completions still waiting for CQ room.
        self.hung.retain(|p| p.sqid != qid);
        if let Some(cq) = self.cqs.get_mut(&sq.cqid) {
            cq.held.retain(|e| e.sqid != qid);
        }
        Ok(0)
    }

    fn delete_cq(&mut self, d: &[u32; 16]) -> CmdResult {
        let qid = d[10] as u16;
        if qid == 0 || !self.cqs.contains_key(&qid) {
            return Err(Fail::specific(INVALID_QID).at(AT_CDW10));
        }
        if self.sqs.values().any(|s| s.cqid == qid) {
            return Err(Fail::specific(INVALID_QUEUE_DELETION).at(AT_CDW10));
        }
        self.cqs.remove(&qid);
        Ok(0)
    }

    fn abort(&mut self, d: &[u32; 16]) -> CmdResult {
        let sqid = d[10] as u16;
        let cid = (d[10] >> 16) as u16;
        let find = |v: &Vec<Pending>| v.iter().position(|p| p.sqid == sqid && p.cid == cid);
        let p = if let Some(i) = find(&self.hung) {
            self.hung.remove(i)
        } else if let Some(i) = find(&self.aers) {
            self.aers.remove(i)
        } else {
            // Not found (already completed, or never submitted): DW0 bit 0 set, not aborted.
            return Ok(1);
        };
        self.complete(p, Err(Fail::generic(ABORT_REQUESTED).retry()));
        Ok(0)
    }

    fn namespace(&self, nsid: u32) -> Option<usize> {
        self.ns.iter().position(|n| n.nsid == nsid)
    }

    /// Highest NSID (Identify Controller NN).
    fn nn(&self) -> u32 {
        self.ns.iter().map(|n| n.nsid).max().unwrap_or(0)
    }

    fn identify(&mut self, d: &[u32; 16]) -> CmdResult {
        let nsid = d[1];
        let invalid_ns = Fail::generic(INVALID_NAMESPACE).at(AT_NSID);
        let data = match d[10] as u8 {
            0x00 => {
                if nsid == 0 || nsid > self.nn() {
                    return Err(invalid_ns);
                }
                match self.namespace(nsid) {
                    Some(i) => self.identify_ns(i),
                    // An inactive NSID in range: a zero-filled structure.
                    None => vec![0; 4096],
                }
            }
            0x01 => self.identify_ctrl(),
            0x02 => {
                if nsid >= 0xffff_fffe {
                    return Err(invalid_ns);
                }
                let mut b = vec![0u8; 4096];
                let ids = self.ns.iter().map(|n| n.nsid).filter(|&n| n > nsid);
                for (i, id) in ids.take(1024).enumerate() {
                    put32(&mut b, 4 * i, id);
                }
                b
            }
            0x03 => match self.namespace(nsid) {
                Some(i) => self.ns_descriptors(i),
                None => return Err(invalid_ns),
            },
            _ => return Err(Fail::generic(INVALID_FIELD).at(AT_CDW10)),
        };
        self.send(d, &data)?;
        Ok(0)
    }

    fn eui64(nsid: u32) -> [u8; 8] {
        let n = nsid.to_be_bytes();
        [0x52, 0x54, 0x00, 0xca, n[0], n[1], n[2], n[3]]
    }

    fn nguid(&self, nsid: u32) -> [u8; 16] {
        let mut g = [0u8; 16];
        let s = self.cfg.serial.as_bytes();
        let n = s.len().min(12);
        g[..n].copy_from_slice(&s[..n]);
        g[12..].copy_from_slice(&nsid.to_be_bytes());
        g
    }

    /// Identify Namespace data structure (NVM Command Set 1.0 §4.1.5.1).
    fn identify_ns(&self, i: usize) -> Vec<u8> {
        let ns = &self.ns[i];
        let mut b = vec![0u8; 4096];
        put64(&mut b, 0, ns.blocks); // NSZE
        put64(&mut b, 8, ns.blocks); // NCAP
        put64(&mut b, 16, ns.blocks); // NUSE
        b[25] = 1; // NLBAF: two formats
        b[26] = if ns.lba_shift == 12 { 1 } else { 0 }; // FLBAS
                                                        // DLFEAT: deallocated blocks read as zeroes; Write Zeroes takes DEAC.
        b[33] = 0x09;
        put128(&mut b, 48, ns.bytes() as u128); // NVMCAP
        b[104..120].copy_from_slice(&self.nguid(ns.nsid));
        b[120..128].copy_from_slice(&Self::eui64(ns.nsid));
        put32(&mut b, 128, 9 << 16); // LBAF0: 512 B, no metadata
        put32(&mut b, 132, 12 << 16); // LBAF1: 4096 B, no metadata
        b
    }

    /// Namespace Identification Descriptor list (NVMe Base 2.0 §5.17.2.3).
    fn ns_descriptors(&self, i: usize) -> Vec<u8> {
        let nsid = self.ns[i].nsid;
        let mut b = vec![0u8; 4096];
        b[0] = 1; // EUI64
        b[1] = 8;
        b[4..12].copy_from_slice(&Self::eui64(nsid));
        b[12] = 2; // NGUID
        b[13] = 16;
        b[16..32].copy_from_slice(&self.nguid(nsid));
        if self.cfg.version >= 0x0002_0000 {
            b[32] = 4; // Command Set Identifier: NVM
            b[33] = 1;
        }
        b
    }

    /// Identify Controller data structure (NVMe Base 2.0 §5.17.2.1).
    fn identify_ctrl(&self) -> Vec<u8> {
        let c = &self.cfg;
        let mut b = vec![0u8; 4096];
        put16(&mut b, 0, VENDOR);
        put16(&mut b, 2, SUBSYSTEM_VENDOR);
        put_ascii(&mut b[4..24], &c.serial);
        put_ascii(&mut b[24..64], &c.model);
        put_ascii(&mut b[64..72], &c.firmware);
        b[72] = 6; // RAB
        b[73..76].copy_from_slice(&[0x00, 0x54, 0x52]); // IEEE OUI 52:54:00
        b[77] = c.mdts;
        put16(&mut b, 78, 1); // CNTLID
        put32(&mut b, 80, c.version);
        b[111] = 1; // CNTRLTYPE: I/O controller
        put16(&mut b, 256, 0); // OACS: no optional admin commands
        b[258] = ACL;
        b[259] = AERL;
        b[260] = 0x03; // FRMW: one slot, slot 1 read-only
        b[261] = LPA;
        b[262] = (ERROR_LOG_ENTRIES - 1) as u8; // ELPE
        b[263] = 0; // NPSS: one power state
        put16(&mut b, 266, WCTEMP);
        put16(&mut b, 268, CCTEMP);
        b[512] = 0x66; // SQES
        b[513] = 0x44; // CQES
        put32(&mut b, 516, self.nn());
        put16(&mut b, 520, ONCS);
        // VWC: present (bit 0); Flush takes NSID FFFFFFFFh (bits 2:1 = 11b).
        b[525] = 0x06 | c.vwc as u8;
        let nqn = format!("nqn.2019-08.org.qemu:{}", c.serial);
        let n = nqn.len().min(255);
        b[768..768 + n].copy_from_slice(&nqn.as_bytes()[..n]);
        // Power state 0: 25 W, entry/exit latency 16/4 us.
        put16(&mut b, 2048, 2500);
        put32(&mut b, 2052, 16);
        put32(&mut b, 2056, 4);
        b
    }

    fn smart_now(&self) -> FakeSmart {
        let mut s = self.smart;
        s.data_units_read = s.sectors_read.div_ceil(1000);
        s.data_units_written = s.sectors_written.div_ceil(1000);
        if s.available_spare < s.spare_threshold {
            s.critical_warning |= 1 << 0;
        }
        let t = s.temperature_kelvin;
        if t > self.features.temp_over || t < self.features.temp_under {
            s.critical_warning |= 1 << 1;
        }
        if self.cfg.read_only {
            s.critical_warning |= 1 << 3;
        }
        s
    }

    /// SMART / Health Information log page (NVMe Base 2.0 §5.16.1.3).
    fn smart_log(&self) -> Vec<u8> {
        let s = self.smart_now();
        let mut b = vec![0u8; 512];
        b[0] = s.critical_warning;
        put16(&mut b, 1, s.temperature_kelvin);
        b[3] = s.available_spare;
        b[4] = s.spare_threshold;
        b[5] = s.percentage_used;
        put128(&mut b, 32, s.data_units_read);
        put128(&mut b, 48, s.data_units_written);
        put128(&mut b, 64, s.host_read_commands);
        put128(&mut b, 80, s.host_write_commands);
        put128(&mut b, 96, s.controller_busy_time);
        put128(&mut b, 112, s.power_cycles);
        put128(&mut b, 128, s.power_on_hours);
        put128(&mut b, 144, s.unsafe_shutdowns);
        put128(&mut b, 160, s.media_errors);
        put128(&mut b, 176, s.num_err_log_entries);
        put16(&mut b, 200, s.temperature_kelvin); // temperature sensor 1
        b
    }

    /// Error Information log page (§5.16.1.2): newest entry first, unused entries zero.
    fn error_log(&self) -> Vec<u8> {
        let mut b = vec![0u8; 64 * ERROR_LOG_ENTRIES];
        for (i, e) in self.errors.iter().enumerate() {
            let o = 64 * i;
            put64(&mut b, o, e.count);
            put16(&mut b, o + 8, e.sqid);
            put16(&mut b, o + 10, e.cid);
            put16(&mut b, o + 12, e.status);
            put16(&mut b, o + 14, e.loc);
            put64(&mut b, o + 16, e.lba);
            put32(&mut b, o + 24, e.nsid);
        }
        b
    }

    /// Firmware Slot Information log page (§5.16.1.4): slot 1 active.
    fn firmware_log(&self) -> Vec<u8> {
        let mut b = vec![0u8; 512];
        b[0] = 1;
        put_ascii(&mut b[8..16], &self.cfg.firmware);
        b
    }

    fn get_log_page(&mut self, d: &[u32; 16]) -> CmdResult {
        let lid = d[10] as u8;
        let rae = d[10] & (1 << 15) != 0;
        let numd = ((d[11] & 0xffff) << 16 | d[10] >> 16) as u64 + 1;
        let len = numd * 4;
        let offset = d[12] as u64 | (d[13] as u64) << 32;
        let nsid = d[1];
        let (page, event_type) = match lid {
            0x01 => (self.error_log(), 0),
            0x02 => {
                // No SMART per namespace (LPA bit 0 clear): controller-wide NSIDs only.
                if nsid != 0 && nsid != 0xffff_ffff {
                    return Err(Fail::generic(INVALID_FIELD).at(AT_NSID));
                }
                (self.smart_log(), 1)
            }
            0x03 => (self.firmware_log(), 2),
            _ => return Err(Fail::specific(INVALID_LOG_PAGE).at(AT_CDW10)),
        };
        if !offset.is_multiple_of(4) || offset > page.len() as u64 {
            return Err(Fail::generic(INVALID_FIELD).at(AT_CDW12));
        }
        self.check_mdts(len)?;
        let mut data = vec![0u8; len as usize];
        let avail = &page[offset as usize..];
        let n = avail.len().min(data.len());
        data[..n].copy_from_slice(&avail[..n]);
        self.send(d, &data)?;
        if !rae {
            // Delivered once this command has completed (see `run`).
            self.events_masked &= !(1 << event_type);
        }
        Ok(0)
    }

    fn set_features(&mut self, d: &[u32; 16]) -> CmdResult {
        let fid = d[10] as u8;
        let v = d[11];
        if d[10] & (1 << 31) != 0 {
            return Err(Fail::specific(FEATURE_NOT_SAVEABLE).at(AT_CDW10 + 3));
        }
        let invalid = Fail::generic(INVALID_FIELD).at(AT_CDW11);
        let f = &mut self.features;
        match fid {
            0x01 => f.arbitration = v,
            0x02 => {
                if v & 0x1f != 0 {
                    return Err(invalid); // NPSS = 0: power state 0 only
                }
                f.power_management = v & 0xff;
            }
            0x04 => {
                let (tmpsel, thsel) = ((v >> 16) & 0xf, (v >> 20) & 3);
                if tmpsel != 0 && tmpsel != 0xf {
                    return Err(invalid);
                }
                match thsel {
                    0 => f.temp_over = v as u16,
                    1 => f.temp_under = v as u16,
                    _ => return Err(invalid),
                }
            }
            0x05 => {
                if v & (1 << 16) != 0 {
                    return Err(invalid); // DULBE needs NSFEAT bit 2
                }
                f.error_recovery = v & 0xffff;
            }
            0x06 => {
                if !self.cfg.vwc {
                    return Err(Fail::generic(INVALID_FIELD).at(AT_CDW10));
                }
                f.write_cache = v & 1 != 0;
            }
            0x07 => {
                if self.sqs.keys().any(|&q| q != 0) || self.cqs.keys().any(|&q| q != 0) {
                    return Err(Fail::generic(COMMAND_SEQUENCE_ERROR));
                }
                let (nsqr, ncqr) = (v & 0xffff, v >> 16);
                if nsqr == 0xffff || ncqr == 0xffff {
                    return Err(invalid);
                }
                let max = self.cfg.max_io_queues as u32;
                self.nsqa = (nsqr + 1).min(max) as u16;
                self.ncqa = (ncqr + 1).min(max) as u16;
                return Ok(self.queues_granted());
            }
            0x08 => f.coalescing = v & 0xffff,
            0x09 => {
                let iv = v as u16;
                if iv >= self.cfg.msix_entries {
                    return Err(invalid);
                }
                f.vector_config.insert(iv, v & (1 << 16));
            }
            0x0a => f.write_atomicity = v & 1,
            0x0b => f.async_config = v & 0x0000_33ff,
            _ => return Err(Fail::generic(INVALID_FIELD).at(AT_CDW10)),
        }
        Ok(0)
    }

    fn queues_granted(&self) -> u32 {
        (self.nsqa as u32 - 1) | (self.ncqa as u32 - 1) << 16
    }

    fn get_features(&mut self, d: &[u32; 16]) -> CmdResult {
        let fid = d[10] as u8;
        let sel = (d[10] >> 8) & 7;
        let known =
            matches!(fid, 0x01 | 0x02 | 0x04 | 0x05 | 0x07..=0x0b) || (fid == 0x06 && self.cfg.vwc);
        if !known {
            return Err(Fail::generic(INVALID_FIELD).at(AT_CDW10));
        }
        let defaults = Features::default();
        let max = self.cfg.max_io_queues as u32 - 1;
        let (f, queues) = match sel {
            0 => (&self.features, self.queues_granted()),
            // Nothing is saveable: saved values are the defaults.
            1 | 2 => (&defaults, max | max << 16),
            // Capabilities: changeable, not saveable, not namespace specific.
            3 => return Ok(1 << 2),
            _ => return Err(Fail::generic(INVALID_FIELD).at(AT_CDW10 + 1)),
        };
        let v = d[11];
        let dw0 = match fid {
            0x01 => f.arbitration,
            0x02 => f.power_management,
            0x04 => {
                let (tmpsel, thsel) = ((v >> 16) & 0xf, (v >> 20) & 3);
                if tmpsel != 0 {
                    return Err(Fail::generic(INVALID_FIELD).at(AT_CDW11));
                }
                match thsel {
                    0 => f.temp_over as u32,
                    1 => f.temp_under as u32,
                    _ => return Err(Fail::generic(INVALID_FIELD).at(AT_CDW11)),
                }
            }
            0x05 => f.error_recovery,
            0x06 => f.write_cache as u32,
            0x07 => queues,
            0x08 => f.coalescing,
            0x09 => {
                let iv = v as u16;
                if iv >= self.cfg.msix_entries {
                    return Err(Fail::generic(INVALID_FIELD).at(AT_CDW11));
                }
                // The admin vector is never coalesced.
                let cd =
                    f.vector_config
                        .get(&iv)
                        .copied()
                        .unwrap_or(if iv == 0 { 1 << 16 } else { 0 });
                iv as u32 | cd
            }
            0x0a => f.write_atomicity,
            _ => f.async_config,
        };
        Ok(dw0)
    }

    // ---- NVM commands ----

    fn nvm(&mut self, d: &[u32; 16]) -> CmdResult {
        let nsid = d[1];
        let opcode = d[0] as u8;
        let invalid_ns = Fail::generic(INVALID_NAMESPACE).at(AT_NSID);
        if opcode == NVM_FLUSH {
            if nsid != 0xffff_ffff && self.namespace(nsid).is_none() {
                return Err(invalid_ns);
            }
            self.dirty = 0;
            return Ok(0);
        }
        if !matches!(opcode, NVM_WRITE | NVM_READ | NVM_WRITE_ZEROES | NVM_DSM) {
            return Err(Fail::generic(INVALID_OPCODE).at(0));
        }
        let Some(i) = self.namespace(nsid) else {
            return Err(invalid_ns);
        };
        if opcode == NVM_DSM {
            return self.dsm(d, i);
        }
        let slba = d[10] as u64 | (d[11] as u64) << 32;
        let nlb = (d[12] & 0xffff) as u64 + 1;
        let shift = self.ns[i].lba_shift;
        let bytes = nlb << shift;
        if opcode != NVM_WRITE_ZEROES {
            self.check_mdts(bytes)?;
        }
        if slba
            .checked_add(nlb)
            .is_none_or(|end| end > self.ns[i].blocks)
        {
            return Err(Fail::generic(LBA_OUT_OF_RANGE).at(AT_CDW10).lba(slba));
        }
        if opcode != NVM_READ && self.cfg.read_only {
            return Err(Fail::generic(NS_WRITE_PROTECTED).lba(slba));
        }
        if let Some(k) = self
            .injected
            .iter()
            .position(|e| e.nsid == nsid && e.lba >= slba && e.lba < slba + nlb)
        {
            let e = self.injected.remove(k);
            return Err(Fail::new(e.sct, e.sc).lba(e.lba));
        }
        let off = slba << shift;
        match opcode {
            NVM_READ => {
                let data = self.ns[i].read(off, bytes as usize);
                self.send(d, &data)?;
                self.smart.sectors_read += (bytes / 512) as u128;
                self.smart.host_read_commands += 1;
            }
            NVM_WRITE => {
                let data = self.receive(d, bytes as usize)?;
                self.ns[i].write(off, &data);
                self.smart.sectors_written += (bytes / 512) as u128;
                self.smart.host_write_commands += 1;
                if self.cfg.vwc && self.features.write_cache && d[12] & (1 << 30) == 0 {
                    self.dirty += 1;
                }
            }
            _ => self.ns[i].zero(off, bytes),
        }
        Ok(0)
    }

    /// Dataset Management (NVM Command Set 1.0 §3.2.3): Deallocate zeroes the ranges.
    fn dsm(&mut self, d: &[u32; 16], i: usize) -> CmdResult {
        let ranges = (d[10] & 0xff) as usize + 1;
        let raw = self.receive(d, ranges * 16)?;
        if d[11] & (1 << 2) == 0 {
            return Ok(0); // only attributes (IDR, IDW): nothing to do
        }
        if self.cfg.read_only {
            return Err(Fail::generic(NS_WRITE_PROTECTED));
        }
        let ns = &self.ns[i];
        let parsed: Vec<(u64, u64)> = raw
            .chunks(16)
            .map(|r| {
                let len = u32::from_le_bytes(r[4..8].try_into().unwrap()) as u64;
                let slba = u64::from_le_bytes(r[8..16].try_into().unwrap());
                (slba, len)
            })
            .collect();
        if let Some(&(slba, _)) = parsed
            .iter()
            .find(|(s, l)| s.checked_add(*l).is_none_or(|e| e > ns.blocks))
        {
            return Err(Fail::generic(LBA_OUT_OF_RANGE).lba(slba));
        }
        let shift = ns.lba_shift;
        for (slba, len) in parsed {
            self.ns[i].zero(slba << shift, len << shift);
        }
        Ok(0)
    }
}

/// A PRP entry (or any 64-bit field) at command dwords `i`, `i + 1`.
fn prp(d: &[u32; 16], i: usize) -> u64 {
    d[i] as u64 | (d[i + 1] as u64) << 32
}

type Hook = dyn Fn(u16) + Send + Sync;

struct Shared {
    st: Mutex<State>,
    hook: Mutex<Option<Arc<Hook>>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the state, then delivers the interrupts it raised, without the lock held
    /// (the hook may call back into the fake).
    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let (r, irqs) = {
            let mut st = self.lock();
            let r = f(&mut st);
            (r, core::mem::take(&mut st.irqs))
        };
        if !irqs.is_empty() {
            let hook = self.hook.lock().unwrap_or_else(|e| e.into_inner()).clone();
            if let Some(h) = hook {
                for v in irqs {
                    h(v);
                }
            }
        }
        r
    }
}

/// The fake NVMe controller. Clones share the controller.
#[derive(Clone)]
pub struct FakeNvme {
    sh: Arc<Shared>,
}

impl FakeNvme {
    /// A controller with `cfg`'s namespaces (all zeroes), disabled, BAR0 at [`BAR0_BASE`] with
    /// memory decoding on and bus mastering off (as firmware leaves a device it did not use).
    pub fn new(cfg: FakeConfig, dma: &'static FakeDma) -> FakeNvme {
        FakeNvme {
            sh: Arc::new(Shared {
                st: Mutex::new(State::new(cfg, dma)),
                hook: Mutex::new(None),
            }),
        }
    }

    /// The whole of BAR0 (offset 0 = BAR0 start).
    pub fn bar0(&self) -> FakeBar {
        FakeBar {
            sh: self.sh.clone(),
            base: 0,
            len: BAR0_LEN,
            decodes_at: None,
        }
    }

    /// The function's config space.
    pub fn pci_config(&self) -> FakePciConfig {
        FakePciConfig {
            sh: self.sh.clone(),
        }
    }

    /// Maps windows onto BAR0 at the address the BAR holds.
    pub fn mapper(&self) -> FakeMapper {
        FakeMapper {
            sh: self.sh.clone(),
        }
    }

    fn ns_index(st: &State, nsid: u32) -> usize {
        st.namespace(nsid)
            .unwrap_or_else(|| panic!("FakeNvme: no namespace {}", nsid))
    }

    /// `len` bytes of namespace `nsid` at byte offset `byte_off`.
    pub fn read_ns(&self, nsid: u32, byte_off: u64, len: usize) -> Vec<u8> {
        let st = self.sh.lock();
        let ns = &st.ns[Self::ns_index(&st, nsid)];
        assert!(
            byte_off + len as u64 <= ns.bytes(),
            "FakeNvme: read_ns past the end of namespace {}",
            nsid
        );
        ns.read(byte_off, len)
    }

    /// Writes namespace `nsid`'s backing bytes at byte offset `byte_off`.
    pub fn write_ns(&self, nsid: u32, byte_off: u64, data: &[u8]) {
        let mut st = self.sh.lock();
        let i = Self::ns_index(&st, nsid);
        let ns = &mut st.ns[i];
        assert!(
            byte_off + data.len() as u64 <= ns.bytes(),
            "FakeNvme: write_ns past the end of namespace {}",
            nsid
        );
        ns.write(byte_off, data);
    }

    /// The SMART / Health values the controller would report now.
    pub fn smart(&self) -> FakeSmart {
        self.sh.lock().smart_now()
    }

    /// Changes the SMART base values (temperature, spare, wear, power-on hours...). Data units
    /// follow `sectors_read`/`sectors_written`; critical warning bits the controller derives
    /// (spare, temperature, read-only) are added to the one set here.
    pub fn with_smart(&self, f: impl FnOnce(&mut FakeSmart)) {
        f(&mut self.sh.lock().smart);
    }

    /// Every protocol violation the driver committed, in order.
    pub fn violations(&self) -> Vec<String> {
        self.sh.lock().violations.clone()
    }

    /// Every command fetched, in order, with the status it completed with.
    pub fn commands(&self) -> Vec<FakeCommand> {
        self.sh.lock().log.clone()
    }

    /// Forgets the command log.
    pub fn clear_commands(&self) {
        self.sh.lock().log.clear();
    }

    /// While `hang` is set, commands submitted on `qid` are fetched but not completed; they are
    /// dropped by an Abort (which completes them with Command Abort Requested), a deletion of
    /// the queue or a controller reset. Clearing it executes and completes the ones still
    /// outstanding (a late completion).
    pub fn set_hang(&self, qid: u16, hang: bool) {
        self.sh.with(|st| {
            if hang {
                st.hang.insert(qid);
                return;
            }
            st.hang.remove(&qid);
            let (late, keep): (Vec<Pending>, Vec<Pending>) =
                st.hung.drain(..).partition(|p| p.sqid == qid);
            st.hung = keep;
            for p in late {
                st.run(p);
            }
        })
    }

    /// Commands fetched on `qid` and not completed (hung ones, Asynchronous Event Requests).
    pub fn outstanding(&self, qid: u16) -> usize {
        let st = self.sh.lock();
        st.hung
            .iter()
            .chain(st.aers.iter())
            .filter(|p| p.sqid == qid)
            .count()
    }

    /// The next I/O command on `nsid` whose LBA range includes `lba` fails with `sct`/`sc`
    /// (DNR set) without transferring data. SCT 2 errors count as SMART media errors.
    pub fn inject_error(&self, nsid: u32, lba: u64, sct: u8, sc: u8) {
        self.sh
            .lock()
            .injected
            .push(Injected { nsid, lba, sct, sc });
    }

    /// Called with the MSI-X entry each time a completion is posted to a CQ with interrupts
    /// enabled, if MSI-X is enabled and neither the function nor the entry is masked (a masked
    /// entry sets its pending bit instead and fires when unmasked); with MSI-X disabled, called
    /// with [`INTX`] when the INTx line asserts (Interrupt Disable clear, INTMS bit 0 clear).
    /// Never called with the controller's lock held.
    pub fn set_interrupt_hook(&self, f: Box<dyn Fn(u16) + Send + Sync>) {
        *self.sh.hook.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::from(f));
    }

    /// Interrupts signalled so far on MSI-X `entry` (or [`INTX`]), hook or not.
    pub fn interrupt_count(&self, entry: u16) -> u64 {
        self.sh.lock().irq_counts.get(&entry).copied().unwrap_or(0)
    }

    /// MSI-X table entry `entry`: message address, data, masked.
    pub fn msix_entry(&self, entry: u16) -> (u64, u32, bool) {
        let st = self.sh.lock();
        let e = st.msix[entry as usize];
        ((e[1] as u64) << 32 | e[0] as u64, e[2], e[3] & 1 != 0)
    }

    /// Whether MSI-X `entry`'s pending bit is set.
    pub fn msix_pending(&self, entry: u16) -> bool {
        let st = self.sh.lock();
        st.pba[entry as usize / 64] & (1 << (entry % 64)) != 0
    }

    /// Posts an asynchronous event (completes an outstanding Asynchronous Event Request with
    /// DW0 = type | info << 8 | log page << 16, or queues it until one arrives).
    pub fn async_event(&self, event_type: u8, info: u8, log_page: u8) {
        self.sh
            .with(|st| st.queue_event(event_type, info, log_page))
    }

    /// Write commands completed since the last Flush or shutdown, with a volatile write
    /// cache enabled and without FUA.
    pub fn unflushed_writes(&self) -> u64 {
        self.sh.lock().dirty
    }

    /// Live I/O submission queues and I/O completion queues.
    pub fn queue_count(&self) -> (usize, usize) {
        let st = self.sh.lock();
        let io = |k: &u16| *k != 0;
        (
            st.sqs.keys().filter(|k| io(k)).count(),
            st.cqs.keys().filter(|k| io(k)).count(),
        )
    }

    /// The number of I/O SQs and CQs the controller grants (Number of Queues feature).
    pub fn queues_granted(&self) -> (u16, u16) {
        let st = self.sh.lock();
        (st.nsqa, st.ncqa)
    }

    pub fn cc(&self) -> u32 {
        self.sh.lock().cc
    }

    /// CSTS as it stands, without counting as a read of the register.
    pub fn csts(&self) -> u32 {
        self.sh.lock().csts()
    }
}

/// A window onto BAR0 (dword accesses; `Mmio::read64`/`write64` are two dword accesses, low
/// first). While Memory Space is disabled, or after the BAR moved away from where the window
/// was mapped, accesses read all-ones, drop writes and count as violations.
#[derive(Clone)]
pub struct FakeBar {
    sh: Arc<Shared>,
    base: usize,
    len: usize,
    /// The BAR address the window was mapped at (`None`: `FakeNvme::bar0`, any address).
    decodes_at: Option<u64>,
}

impl FakeBar {
    fn decodes(&self, st: &mut State, off: usize, size: usize, write: bool) -> bool {
        let dir = if write { "write" } else { "read" };
        if !off.is_multiple_of(size) || off.checked_add(size).is_none_or(|e| e > self.len) {
            st.violation(format!(
                "{}-byte BAR0 {} at window offset {:#x} outside or misaligned in a {:#x}-byte \
                 window",
                size, dir, off, self.len
            ));
            return false;
        }
        if st.command() & CMD_MEMORY == 0 {
            st.violation(format!(
                "BAR0 {} at {:#x} with Memory Space disabled",
                dir,
                self.base + off
            ));
            return false;
        }
        if self.decodes_at.is_some_and(|a| a != st.bar0()) {
            st.violation(format!(
                "BAR0 {} at {:#x} through a window the BAR no longer decodes",
                dir,
                self.base + off
            ));
            return false;
        }
        true
    }

    fn rd(&self, off: usize, size: usize) -> u32 {
        self.sh.with(|st| {
            if !self.decodes(st, off, size, false) {
                return u32::MAX;
            }
            st.bar_read(self.base + off, size)
        })
    }

    fn wr(&self, off: usize, size: usize, v: u32) {
        self.sh.with(|st| {
            if self.decodes(st, off, size, true) {
                st.bar_write(self.base + off, size, v);
            }
        })
    }
}

impl Mmio for FakeBar {
    fn len(&self) -> usize {
        self.len
    }
    fn read8(&self, off: usize) -> u8 {
        self.rd(off, 1) as u8
    }
    fn read16(&self, off: usize) -> u16 {
        self.rd(off, 2) as u16
    }
    fn read32(&self, off: usize) -> u32 {
        self.rd(off, 4)
    }
    fn write8(&self, off: usize, v: u8) {
        self.wr(off, 1, v as u32)
    }
    fn write16(&self, off: usize, v: u16) {
        self.wr(off, 2, v as u32)
    }
    fn write32(&self, off: usize, v: u32) {
        self.wr(off, 4, v)
    }
}

/// The function's config space (4 KiB; the extended capability list is empty). Writable: the
/// Command register (Memory Space, Bus Master, Parity, SERR, Interrupt Disable), cache line
/// size, interrupt line, BAR0/BAR1 address bits (so sizing reads back the size mask), MSI-X
/// Enable and Function Mask, PCIe Device Control (bit 15 starts a Function Level Reset) and
/// Link Control. Everything else is read-only; the Status register's Interrupt Status bit
/// shows the INTx level.
#[derive(Clone)]
pub struct FakePciConfig {
    sh: Arc<Shared>,
}

impl FakePciConfig {
    pub fn command(&self) -> u16 {
        self.sh.lock().command()
    }

    /// MSI-X Message Control.
    pub fn msix_control(&self) -> u16 {
        self.sh.lock().msix_control()
    }
}

impl PciConfig for FakePciConfig {
    fn read32(&self, off: u16) -> u32 {
        self.sh.with(|st| st.cfg_read32(off))
    }

    fn write32(&self, off: u16, v: u32) {
        self.sh.with(|st| st.cfg_write32(off, v))
    }
}

/// Maps windows of BAR0 at the address BAR0 holds when mapped.
#[derive(Clone)]
pub struct FakeMapper {
    sh: Arc<Shared>,
}

impl BarMapper for FakeMapper {
    fn map_mmio(&self, phys: u64, len: usize) -> Option<MmioBox> {
        let bar = self.sh.lock().bar0();
        let end = phys.checked_add(len as u64)?;
        if bar == 0 || phys < bar || end > bar + BAR0_LEN as u64 {
            return None;
        }
        Some(Box::new(FakeBar {
            sh: self.sh.clone(),
            base: (phys - bar) as usize,
            len,
            decodes_at: Some(bar),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use capmon_hal::{Dma, DmaBuf, MsiMessage};
    use capmon_pci::header::HeaderType;
    use capmon_pci::msi::{self, MsixTable};
    use std::sync::atomic::{AtomicBool, Ordering};

    const PAGE: usize = 4096;
    const CC_ENABLE: u32 = 6 << 16 | 4 << 20 | 1;

    fn buf(dma: &'static FakeDma, len: usize) -> DmaBuf {
        dma.alloc(len, PAGE).expect("fake DMA memory")
    }

    fn peek(b: &DmaBuf, off: usize, len: usize) -> Vec<u8> {
        assert!(off + len <= b.len);
        // SAFETY: in bounds of a live FakeDma buffer; the fake only touches it synchronously
        // inside calls this test makes.
        unsafe { b.as_slice()[off..off + len].to_vec() }
    }

    fn poke(b: &DmaBuf, off: usize, data: &[u8]) {
        assert!(off + data.len() <= b.len);
        // SAFETY: as in `peek`.
        unsafe { b.as_mut_slice()[off..off + data.len()].copy_from_slice(data) }
    }

    fn u32_at(v: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(v[at..at + 4].try_into().unwrap())
    }

    fn u64_at(v: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(v[at..at + 8].try_into().unwrap())
    }

    fn u128_at(v: &[u8], at: usize) -> u128 {
        u128::from_le_bytes(v[at..at + 16].try_into().unwrap())
    }

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ (i >> 9) as u8 ^ seed)
            .collect()
    }

    /// A command: opcode, NSID, PRP1, PRP2, then CDW10.. as given.
    fn cmd(opcode: u8, nsid: u32, prp1: u64, prp2: u64, cdw: &[u32]) -> [u32; 16] {
        let mut d = [0u32; 16];
        d[0] = opcode as u32;
        d[1] = nsid;
        d[6] = prp1 as u32;
        d[7] = (prp1 >> 32) as u32;
        d[8] = prp2 as u32;
        d[9] = (prp2 >> 32) as u32;
        d[10..10 + cdw.len()].copy_from_slice(cdw);
        d
    }

    fn rw(opcode: u8, slba: u64, blocks: u32, prp1: u64, prp2: u64) -> [u32; 16] {
        cmd(
            opcode,
            1,
            prp1,
            prp2,
            &[slba as u32, (slba >> 32) as u32, blocks - 1],
        )
    }

    /// SCT and SC of a completion.
    fn st(c: &[u32; 4]) -> (u8, u8) {
        split((c[3] >> 17) as u16)
    }

    fn ok(c: &[u32; 4]) {
        assert_eq!(st(c), (0, 0), "completion {:x?}", c);
    }

    struct HostSq {
        mem: DmaBuf,
        size: u16,
        tail: u16,
    }

    struct HostCq {
        mem: DmaBuf,
        size: u16,
        head: u16,
        phase: bool,
    }

    /// A minimal driver, doing everything through registers and queue memory.
    struct Host {
        nvme: FakeNvme,
        bar: FakeBar,
        dma: &'static FakeDma,
        stride: usize,
        sqs: BTreeMap<u16, HostSq>,
        cqs: BTreeMap<u16, HostCq>,
        next_cid: u16,
    }

    impl Host {
        fn new(cfg: FakeConfig) -> Host {
            let dma = FakeDma::leaked();
            let nvme = FakeNvme::new(cfg, dma);
            let pci = nvme.pci_config();
            let cmd = pci.read16(0x04);
            pci.write16(0x04, cmd | CMD_MEMORY | CMD_BUS_MASTER);
            let bar = nvme.bar0();
            let stride = 4 << ((bar.read64(REG_CAP) >> 32) & 0xf);
            Host {
                nvme,
                bar,
                dma,
                stride,
                sqs: BTreeMap::new(),
                cqs: BTreeMap::new(),
                next_cid: 0x100,
            }
        }

        /// Enabled, with admin queues of `entries`.
        fn enabled(cfg: FakeConfig, entries: u16) -> Host {
            let mut h = Host::new(cfg);
            h.enable(entries);
            h
        }

        /// Enabled, with I/O queue pair 1 (64 entries, MSI-X vector 1).
        fn ready() -> Host {
            Host::ready_with(FakeConfig::default())
        }

        fn ready_with(cfg: FakeConfig) -> Host {
            let mut h = Host::enabled(cfg, 16);
            h.create_pair(1, 64, 64, 1);
            h
        }

        fn enable(&mut self, entries: u16) {
            self.enable_with(entries, CC_ENABLE);
        }

        fn enable_with(&mut self, entries: u16, cc: u32) {
            let asq = buf(self.dma, 64 * entries as usize);
            let acq = buf(self.dma, 16 * entries as usize);
            let n = entries as u32 - 1;
            self.bar.write32(REG_AQA, n | n << 16);
            self.bar.write64(REG_ASQ, asq.phys);
            self.bar.write64(REG_ACQ, acq.phys);
            self.bar.write32(REG_CC, cc);
            assert!(self.wait_ready(true) <= 3, "ready after at most 3 reads");
            self.sqs.insert(
                0,
                HostSq {
                    mem: asq,
                    size: entries,
                    tail: 0,
                },
            );
            self.cqs.insert(
                0,
                HostCq {
                    mem: acq,
                    size: entries,
                    head: 0,
                    phase: true,
                },
            );
        }

        fn disable(&mut self) {
            self.bar.write32(REG_CC, 0);
            self.wait_ready(false);
            self.sqs.clear();
            self.cqs.clear();
        }

        /// CSTS reads until RDY is `rdy` (panics after 100).
        fn wait_ready(&self, rdy: bool) -> u32 {
            for n in 1..=100 {
                if (self.bar.read32(REG_CSTS) & 1 != 0) == rdy {
                    return n;
                }
            }
            panic!("CSTS.RDY never became {}", rdy);
        }

        fn db(&self, qid: u16, completion: bool) -> usize {
            DOORBELLS + (2 * qid as usize + completion as usize) * self.stride
        }

        /// Writes `d` at the SQ's tail with a fresh CID, without ringing; returns the CID.
        fn put(&mut self, qid: u16, mut d: [u32; 16]) -> u16 {
            let cid = self.next_cid;
            self.next_cid = self.next_cid.wrapping_add(1);
            d[0] = (d[0] & 0xffff) | (cid as u32) << 16;
            let sq = self.sqs.get_mut(&qid).expect("host SQ");
            let mut raw = [0u8; 64];
            for (i, w) in d.iter().enumerate() {
                raw[4 * i..4 * i + 4].copy_from_slice(&w.to_le_bytes());
            }
            poke(&sq.mem, sq.tail as usize * 64, &raw);
            sq.tail = (sq.tail + 1) % sq.size;
            cid
        }

        fn ring(&mut self, qid: u16) {
            let tail = self.sqs[&qid].tail;
            self.bar.write32(self.db(qid, false), tail as u32);
        }

        fn submit(&mut self, qid: u16, d: [u32; 16]) -> u16 {
            let cid = self.put(qid, d);
            self.ring(qid);
            cid
        }

        /// The entry at the CQ's head if its phase says it is new, without consuming it.
        fn peek_cq(&self, qid: u16) -> Option<[u32; 4]> {
            let cq = &self.cqs[&qid];
            let raw = peek(&cq.mem, cq.head as usize * 16, 16);
            let e = [0, 4, 8, 12].map(|o| u32_at(&raw, o));
            (((e[3] >> 16) & 1 != 0) == cq.phase).then_some(e)
        }

        /// Consumes one new entry and writes the head doorbell.
        fn reap(&mut self, qid: u16) -> Option<[u32; 4]> {
            let e = self.peek_cq(qid)?;
            let cq = self.cqs.get_mut(&qid).unwrap();
            cq.head = (cq.head + 1) % cq.size;
            if cq.head == 0 {
                cq.phase = !cq.phase;
            }
            let head = cq.head;
            self.bar.write32(self.db(qid, true), head as u32);
            Some(e)
        }

        fn call(&mut self, qid: u16, d: [u32; 16]) -> [u32; 4] {
            let cid = self.submit(qid, d);
            let e = self.reap(qid).expect("a completion");
            assert_eq!(e[3] as u16, cid, "completion for the command submitted");
            e
        }

        fn admin(&mut self, d: [u32; 16]) -> [u32; 4] {
            self.call(0, d)
        }

        fn create_cq(&mut self, qid: u16, entries: u16, iv: u16, ien: bool) -> [u32; 4] {
            let mem = buf(self.dma, 16 * entries as usize);
            let c = self.admin(cmd(
                ADMIN_CREATE_CQ,
                0,
                mem.phys,
                0,
                &[
                    qid as u32 | (entries as u32 - 1) << 16,
                    1 | (ien as u32) << 1 | (iv as u32) << 16,
                ],
            ));
            if st(&c) == (0, 0) {
                self.cqs.insert(
                    qid,
                    HostCq {
                        mem,
                        size: entries,
                        head: 0,
                        phase: true,
                    },
                );
            }
            c
        }

        fn create_sq(&mut self, qid: u16, entries: u16, cqid: u16) -> [u32; 4] {
            let mem = buf(self.dma, 64 * entries as usize);
            let c = self.admin(cmd(
                ADMIN_CREATE_SQ,
                0,
                mem.phys,
                0,
                &[
                    qid as u32 | (entries as u32 - 1) << 16,
                    1 | (cqid as u32) << 16,
                ],
            ));
            if st(&c) == (0, 0) {
                self.sqs.insert(
                    qid,
                    HostSq {
                        mem,
                        size: entries,
                        tail: 0,
                    },
                );
            }
            c
        }

        fn create_pair(&mut self, qid: u16, sq_entries: u16, cq_entries: u16, iv: u16) {
            ok(&self.create_cq(qid, cq_entries, iv, true));
            ok(&self.create_sq(qid, sq_entries, qid));
        }

        /// Runs an admin command that returns `len` bytes into a fresh page-aligned buffer.
        fn admin_data(&mut self, d: [u32; 16], len: usize) -> ([u32; 4], Vec<u8>) {
            let b = buf(self.dma, len.max(PAGE));
            let mut d = d;
            d[6] = b.phys as u32;
            d[7] = (b.phys >> 32) as u32;
            assert!(len <= 2 * PAGE);
            let p2 = if len > PAGE { b.phys + PAGE as u64 } else { 0 };
            d[8] = p2 as u32;
            d[9] = (p2 >> 32) as u32;
            let c = self.admin(d);
            let data = peek(&b, 0, len);
            self.dma.free(b);
            (c, data)
        }

        fn identify(&mut self, cns: u8, nsid: u32) -> ([u32; 4], Vec<u8>) {
            self.admin_data(cmd(ADMIN_IDENTIFY, nsid, 0, 0, &[cns as u32]), 4096)
        }

        fn log_page(&mut self, lid: u8, nsid: u32, len: usize, offset: u64) -> ([u32; 4], Vec<u8>) {
            let numd = (len / 4 - 1) as u32;
            self.admin_data(
                cmd(
                    ADMIN_GET_LOG_PAGE,
                    nsid,
                    0,
                    0,
                    &[
                        lid as u32 | (numd & 0xffff) << 16,
                        numd >> 16,
                        offset as u32,
                        (offset >> 32) as u32,
                    ],
                ),
                len,
            )
        }

        fn violations(&self) -> Vec<String> {
            self.nvme.violations()
        }

        fn assert_clean(&self) {
            assert_eq!(self.violations(), Vec::<String>::new());
        }
    }

    /// A buffer of `pages` whole pages and the PRP1/PRP2 naming it (a list when needed),
    /// written like a driver would.
    struct Data {
        mem: DmaBuf,
        _lists: Vec<DmaBuf>,
        prp1: u64,
        prp2: u64,
    }

    fn data_pages(dma: &'static FakeDma, pages: usize) -> Data {
        let mem = buf(dma, pages * PAGE);
        let entries: Vec<u64> = (0..pages).map(|i| mem.phys + (i * PAGE) as u64).collect();
        let (prp2, lists) = prp2_for(dma, &entries);
        Data {
            prp1: entries[0],
            prp2,
            mem,
            _lists: lists,
        }
    }

    /// PRP2 for page list `e` (PRP1 = e[0]): 0, e[1], or a chained list in fresh pages.
    fn prp2_for(dma: &'static FakeDma, e: &[u64]) -> (u64, Vec<DmaBuf>) {
        match e.len() {
            1 => (0, Vec::new()),
            2 => (e[1], Vec::new()),
            _ => {
                let mut lists: Vec<DmaBuf> = Vec::new();
                let mut rest = &e[1..];
                let per = PAGE / 8;
                while !rest.is_empty() {
                    let page = buf(dma, PAGE);
                    let n = if rest.len() <= per {
                        rest.len()
                    } else {
                        per - 1
                    };
                    for (i, p) in rest[..n].iter().enumerate() {
                        poke(&page, 8 * i, &p.to_le_bytes());
                    }
                    if let Some(prev) = lists.last() {
                        poke(prev, PAGE - 8, &page.phys.to_le_bytes());
                    }
                    rest = &rest[n..];
                    lists.push(page);
                }
                (lists[0].phys, lists)
            }
        }
    }

    #[test]
    fn config_space_sizes_and_walks_like_hardware() {
        let nvme = FakeNvme::new(FakeConfig::default(), FakeDma::leaked());
        let cfg = nvme.pci_config();
        assert_eq!(cfg.read16(0x00), VENDOR);
        assert_eq!(cfg.read16(0x02), DEVICE);
        assert_eq!(
            (cfg.read8(0x0b), cfg.read8(0x0a), cfg.read8(0x09)),
            (1, 8, 2)
        );
        assert_eq!(cfg.read8(0x0e), 0, "header type 0");
        assert_eq!(cfg.read8(0x3d), 1, "INTA");
        let ht = HeaderType::from_raw(cfg.read8(0x0e));
        let bars = capmon_pci::bar::read_bars(&cfg, ht, false);
        assert!(bars.problems.is_empty(), "{:?}", bars.problems);
        assert_eq!(bars.bars.len(), 1);
        let b = bars.bars[0];
        assert_eq!(
            (b.index, b.kind, b.addr, b.size, b.prefetchable),
            (
                0,
                capmon_pci::BarKind::Mem64,
                BAR0_BASE,
                BAR0_LEN as u64,
                false
            )
        );
        assert_eq!(bars.rom, None);
        assert_eq!(cfg.command() & CMD_MEMORY, CMD_MEMORY, "decoding restored");
        assert_eq!(capmon_pci::bar::memory_bar_base(&cfg, 0), Ok(BAR0_BASE));
        assert_eq!(msi::find_cap(&cfg, 0x11), Some(MSIX_CAP));
        assert_eq!(msi::find_cap(&cfg, 0x10), Some(PCIE_CAP));
        assert_eq!(msi::find_cap(&cfg, 0x05), None, "no MSI, like QEMU");
        let layout = msi::msix_layout(&cfg, MSIX_CAP, Some(&bars)).unwrap();
        assert_eq!(layout.entries, 9);
        assert_eq!((layout.table.bir, layout.table.offset), (0, 0x2000));
        assert_eq!((layout.pba.bir, layout.pba.offset), (0, 0x3000));
        // Read-only registers ignore writes; the Command register keeps only its bits.
        cfg.write32(0x00, 0);
        cfg.write32(0x04, 0xffff_ffff);
        assert_eq!(cfg.read16(0x00), VENDOR);
        assert_eq!(cfg.command(), 0x0546);
        assert!(nvme.violations().is_empty(), "{:?}", nvme.violations());
    }

    #[test]
    fn registers_at_reset() {
        let h = Host::new(FakeConfig::default());
        let cap = h.bar.read64(REG_CAP);
        assert_eq!(cap & 0xffff, 1023, "MQES");
        assert_eq!((cap >> 16) & 1, 1, "CQR");
        assert_eq!((cap >> 17) & 3, 0, "AMS");
        assert_eq!((cap >> 24) & 0xff, 20, "TO");
        assert_eq!((cap >> 32) & 0xf, 0, "DSTRD");
        assert_eq!((cap >> 36) & 1, 0, "NSSRS");
        assert_eq!((cap >> 37) & 0xff, 1, "CSS: NVM");
        assert_eq!(((cap >> 48) & 0xf, (cap >> 52) & 0xf), (0, 4), "MPSMIN/MAX");
        assert_eq!(h.bar.read32(REG_VS), 0x0001_0400);
        assert_eq!(h.bar.read32(REG_CC), 0);
        assert_eq!(h.bar.read32(REG_CSTS), 0);
        assert_eq!(h.bar.read32(0x18), 0, "reserved reads 0");
        // The MSI-X table starts masked, the PBA clear.
        for e in 0..9 {
            assert_eq!(h.bar.read32(MSIX_TABLE + 16 * e + 12), 1);
        }
        assert_eq!(h.bar.read32(MSIX_PBA), 0);
        h.assert_clean();
    }

    #[test]
    fn ready_follows_enable_after_reads_both_ways() {
        let h = Host::new(FakeConfig::default());
        let asq = buf(h.dma, PAGE);
        let acq = buf(h.dma, PAGE);
        h.bar.write32(REG_AQA, 0x000f_000f);
        h.bar.write64(REG_ASQ, asq.phys);
        h.bar.write64(REG_ACQ, acq.phys);
        assert_eq!(h.bar.read64(REG_ASQ), asq.phys);
        assert_eq!(h.bar.read64(REG_ACQ), acq.phys);
        h.bar.write32(REG_CC, CC_ENABLE);
        assert_eq!(h.nvme.cc(), CC_ENABLE);
        assert_eq!(h.bar.read32(REG_CSTS) & 1, 0);
        assert_eq!(h.bar.read32(REG_CSTS) & 1, 0);
        assert_eq!(h.bar.read32(REG_CSTS) & 1, 1, "ready on the third read");
        assert_eq!(h.nvme.csts() & 1, 1);
        h.bar.write32(REG_CC, 0);
        assert_eq!(h.bar.read32(REG_CSTS) & 1, 1);
        assert_eq!(h.bar.read32(REG_CSTS) & 1, 1);
        assert_eq!(h.bar.read32(REG_CSTS) & 1, 0, "not ready on the third read");
        // Admin queue registers survive a controller reset.
        assert_eq!(h.bar.read32(REG_AQA), 0x000f_000f);
        assert_eq!(h.bar.read64(REG_ASQ), asq.phys);
        h.assert_clean();

        let cfg = FakeConfig {
            ready_after_reads: 0,
            ..Default::default()
        };
        let mut h = Host::new(cfg);
        h.enable(4);
        assert_eq!(h.wait_ready(true), 1);
        h.assert_clean();
    }

    #[test]
    fn never_ready_and_fatal_on_enable() {
        let cfg = FakeConfig {
            never_ready: true,
            ..Default::default()
        };
        let h = Host::new(cfg);
        let q = buf(h.dma, PAGE);
        h.bar.write32(REG_AQA, 0x0001_0001);
        h.bar.write64(REG_ASQ, q.phys);
        h.bar.write64(REG_ACQ, q.phys);
        h.bar.write32(REG_CC, CC_ENABLE);
        for _ in 0..50 {
            assert_eq!(h.bar.read32(REG_CSTS), 0);
        }
        // Giving up and resetting is what a driver must do; no violation.
        h.bar.write32(REG_CC, 0);
        h.assert_clean();

        let cfg = FakeConfig {
            fatal_on_enable: true,
            ..Default::default()
        };
        let h = Host::new(cfg);
        h.bar.write32(REG_AQA, 0x0001_0001);
        h.bar.write64(REG_ASQ, q.phys);
        h.bar.write64(REG_ACQ, q.phys);
        h.bar.write32(REG_CC, CC_ENABLE);
        for _ in 0..5 {
            assert_eq!(h.bar.read32(REG_CSTS), 2, "CFS, never RDY");
        }
        h.bar.write32(REG_CC, 0);
        assert_eq!(h.bar.read32(REG_CSTS), 0, "a reset clears CFS");
        h.assert_clean();
    }

    #[test]
    fn a_bad_enable_is_fatal_and_a_violation() {
        let h = Host::new(FakeConfig::default());
        let q = buf(h.dma, 2 * PAGE);
        h.bar.write32(REG_AQA, 0x0001_0001);
        h.bar.write64(REG_ASQ, q.phys + 0x100);
        h.bar.write64(REG_ACQ, q.phys);
        h.bar.write32(REG_CC, CC_ENABLE | 5 << 7); // MPS 5 > MPSMAX 4
        assert_eq!(h.bar.read32(REG_CSTS) & 3, 2);
        let v = h.violations();
        assert!(v.iter().any(|s| s.contains("CC.MPS 5")), "{:?}", v);
        assert!(v.iter().any(|s| s.contains("ASQ")), "{:?}", v);
        // Unset admin queues.
        let h = Host::new(FakeConfig::default());
        h.bar.write32(REG_CC, CC_ENABLE);
        assert_eq!(h.bar.read32(REG_CSTS) & 2, 2);
        assert!(h.violations().iter().any(|s| s.contains("AQA")));
    }

    #[test]
    fn commands_before_ready_or_after_disable_are_violations() {
        let h = Host::new(FakeConfig::default());
        let q = buf(h.dma, 2 * PAGE);
        h.bar.write32(REG_AQA, 0x0003_0003);
        h.bar.write64(REG_ASQ, q.phys);
        h.bar.write64(REG_ACQ, q.phys + PAGE as u64);
        h.bar.write32(DOORBELLS, 1);
        assert!(h.violations()[0].contains("CC.EN = 0"));
        h.bar.write32(REG_CC, CC_ENABLE);
        h.bar.write32(DOORBELLS, 1);
        assert!(h.violations()[1].contains("CSTS.RDY = 0"));
        // Toggling EN back before RDY showed is undefined.
        h.bar.write32(REG_CC, 0);
        assert!(h.violations()[2].contains("before CSTS.RDY became 1"));
        assert_eq!(h.violations().len(), 3);
    }

    #[test]
    fn identify_controller_namespaces_and_lists() {
        let cfg = FakeConfig {
            namespaces: vec![
                FakeNs {
                    nsid: 1,
                    lba_shift: 9,
                    blocks: 2048,
                },
                FakeNs {
                    nsid: 3,
                    lba_shift: 12,
                    blocks: 1000,
                },
            ],
            ..Default::default()
        };
        let mut h = Host::enabled(cfg, 4);
        let (c, id) = h.identify(1, 0);
        ok(&c);
        assert_eq!(u16::from_le_bytes([id[0], id[1]]), VENDOR);
        assert_eq!(u16::from_le_bytes([id[2], id[3]]), SUBSYSTEM_VENDOR);
        assert_eq!(&id[4..24], b"FAKE0001            ");
        assert_eq!(&id[24..64], b"capmon fake NVMe                        ");
        assert_eq!(&id[64..72], b"1.0     ");
        assert_eq!(id[77], 5, "MDTS");
        assert_eq!(u32_at(&id, 80), 0x0001_0400, "VER");
        assert_eq!((id[258], id[259]), (ACL, AERL));
        assert_eq!(id[261] & 4, 4, "LPA: extended data");
        assert_eq!(id[262], 63, "ELPE");
        assert_eq!(id[263], 0, "NPSS");
        assert_eq!((id[512], id[513]), (0x66, 0x44));
        assert_eq!(u32_at(&id, 516), 3, "NN: highest NSID");
        assert_eq!(u16::from_le_bytes([id[520], id[521]]) & 0x0c, 0x0c, "ONCS");
        assert_eq!(id[525] & 1, 1, "VWC");
        assert!(id[768..].starts_with(b"nqn.2019-08.org.qemu:FAKE0001\0"));

        let (c, ns) = h.identify(0, 1);
        ok(&c);
        assert_eq!(
            (u64_at(&ns, 0), u64_at(&ns, 8), u64_at(&ns, 16)),
            (2048, 2048, 2048)
        );
        assert_eq!((ns[25], ns[26] & 0xf), (1, 0), "NLBAF, FLBAS");
        assert_eq!((u32_at(&ns, 128) >> 16) & 0xff, 9);
        assert_eq!((u32_at(&ns, 132) >> 16) & 0xff, 12);
        let (c, ns3) = h.identify(0, 3);
        ok(&c);
        assert_eq!((u64_at(&ns3, 0), ns3[26] & 0xf), (1000, 1));
        let (c, ns2) = h.identify(0, 2);
        ok(&c);
        assert!(ns2.iter().all(|&b| b == 0), "inactive NSID: zero-filled");
        for bad in [0, 4, 0xffff_ffff] {
            assert_eq!(st(&h.identify(0, bad).0), (0, INVALID_NAMESPACE), "{}", bad);
        }
        let (c, list) = h.identify(2, 0);
        ok(&c);
        assert_eq!(
            (u32_at(&list, 0), u32_at(&list, 4), u32_at(&list, 8)),
            (1, 3, 0)
        );
        let (_, list) = h.identify(2, 1);
        assert_eq!((u32_at(&list, 0), u32_at(&list, 4)), (3, 0));
        assert_eq!(st(&h.identify(2, 0xffff_fffe).0), (0, INVALID_NAMESPACE));
        let (c, desc) = h.identify(3, 3);
        ok(&c);
        assert_eq!((desc[0], desc[1], desc[12], desc[13]), (1, 8, 2, 16));
        assert_eq!(st(&h.identify(0x1f, 0).0), (0, INVALID_FIELD));

        // Identify data at an offset inside a page spills into PRP2's page: power state
        // descriptor 0 (byte 2048) lands at 0x900 + 2048 = 0x1100.
        let b = buf(h.dma, 2 * PAGE);
        let c = h.admin(cmd(
            ADMIN_IDENTIFY,
            0,
            b.phys + 0x900,
            b.phys + PAGE as u64,
            &[1],
        ));
        ok(&c);
        assert_eq!(peek(&b, 0x900 + 4, 20), b"FAKE0001            ");
        assert_eq!(peek(&b, 0x1100, 2), 2500u16.to_le_bytes());
        assert_eq!(peek(&b, 0x900 + 4096, PAGE - 0x900), vec![0; PAGE - 0x900]);
        h.assert_clean();
    }

    #[test]
    fn number_of_queues_and_queue_creation() {
        let mut h = Host::enabled(FakeConfig::default(), 8);
        let c = h.admin(cmd(ADMIN_SET_FEATURES, 0, 0, 0, &[0x07, 7 | 1 << 16]));
        ok(&c);
        assert_eq!(c[0], 3 | 1 << 16, "min(requested, 4) SQs, 2 CQs, 0-based");
        assert_eq!(h.nvme.queues_granted(), (4, 2));
        let c = h.admin(cmd(ADMIN_GET_FEATURES, 0, 0, 0, &[0x07]));
        assert_eq!(c[0], 3 | 1 << 16);
        let c = h.admin(cmd(ADMIN_GET_FEATURES, 0, 0, 0, &[0x07 | 1 << 8]));
        assert_eq!(c[0], 3 | 3 << 16, "default");

        assert_eq!(
            st(&h.create_cq(3, 16, 0, true)),
            (1, INVALID_QID),
            "past NCQA"
        );
        assert_eq!(st(&h.create_cq(0, 16, 0, true)), (1, INVALID_QID));
        assert_eq!(st(&h.create_cq(1, 1, 0, true)), (1, INVALID_QUEUE_SIZE));
        assert_eq!(st(&h.create_cq(1, 1025, 0, true)), (1, INVALID_QUEUE_SIZE));
        assert_eq!(st(&h.create_cq(1, 16, 9, true)), (1, INVALID_VECTOR));
        let m = buf(h.dma, PAGE);
        let c = h.admin(cmd(ADMIN_CREATE_CQ, 0, m.phys, 0, &[1 | 15 << 16, 2]));
        assert_eq!(st(&c), (0, INVALID_FIELD), "PC = 0 with CAP.CQR");
        ok(&h.create_cq(1, 1024, 8, true));
        assert_eq!(st(&h.create_cq(1, 16, 0, true)), (1, INVALID_QID), "exists");
        assert_eq!(st(&h.create_sq(1, 16, 2)), (1, CQ_INVALID));
        assert_eq!(
            st(&h.create_sq(1, 16, 0)),
            (1, CQ_INVALID),
            "not the admin CQ"
        );
        assert_eq!(st(&h.create_sq(5, 16, 1)), (1, INVALID_QID), "past NSQA");
        ok(&h.create_sq(1, 16, 1));
        ok(&h.create_sq(2, 16, 1));
        assert_eq!(h.nvme.queue_count(), (2, 1));
        let c = h.admin(cmd(ADMIN_SET_FEATURES, 0, 0, 0, &[0x07, 0]));
        assert_eq!(st(&c), (0, COMMAND_SEQUENCE_ERROR), "after queues exist");
        let c = h.admin(cmd(ADMIN_DELETE_CQ, 0, 0, 0, &[1]));
        assert_eq!(st(&c), (1, INVALID_QUEUE_DELETION));
        ok(&h.admin(cmd(ADMIN_DELETE_SQ, 0, 0, 0, &[1])));
        ok(&h.admin(cmd(ADMIN_DELETE_SQ, 0, 0, 0, &[2])));
        assert_eq!(
            st(&h.admin(cmd(ADMIN_DELETE_SQ, 0, 0, 0, &[2]))),
            (1, INVALID_QID)
        );
        ok(&h.admin(cmd(ADMIN_DELETE_CQ, 0, 0, 0, &[1])));
        assert_eq!(
            st(&h.admin(cmd(ADMIN_DELETE_CQ, 0, 0, 0, &[0]))),
            (1, INVALID_QID)
        );
        assert_eq!(h.nvme.queue_count(), (0, 0));
        let c = h.admin(cmd(ADMIN_SET_FEATURES, 0, 0, 0, &[0x07, 0xffff]));
        assert_eq!(st(&c), (0, INVALID_FIELD));
        // Unknown admin opcode.
        assert_eq!(st(&h.admin(cmd(0x7e, 0, 0, 0, &[]))), (0, INVALID_OPCODE));
        h.assert_clean();
        // A controller reset forgets the grant.
        h.disable();
        assert_eq!(h.nvme.queues_granted(), (4, 4));
    }

    #[test]
    fn queue_creation_with_bad_memory_or_entry_sizes() {
        let mut h = Host::enabled(FakeConfig::default(), 8);
        let m = buf(h.dma, 2 * PAGE);
        let c = h.admin(cmd(
            ADMIN_CREATE_CQ,
            0,
            m.phys + 0x100,
            0,
            &[1 | 15 << 16, 1],
        ));
        assert_eq!(st(&c), (0, PRP_OFFSET_INVALID));
        let c = h.admin(cmd(ADMIN_CREATE_CQ, 0, m.phys, 0, &[1 | 1023 << 16, 1]));
        assert_eq!(st(&c), (0, DATA_TRANSFER_ERROR), "16 KiB queue in 8 KiB");
        let v = h.violations();
        assert!(v[0].contains("not page aligned"), "{:?}", v);
        assert!(v[1].contains("outside DMA memory"), "{:?}", v);
        // IOSQES and IOCQES left 0.
        let mut h = Host::new(FakeConfig::default());
        h.enable_with(4, 1);
        assert_eq!(st(&h.create_cq(1, 16, 0, true)), (0, INVALID_FIELD));
        assert_eq!(st(&h.create_sq(1, 16, 0)), (0, INVALID_FIELD));
        assert!(h.violations()[0].contains("IOCQES"));
        assert!(h.violations()[1].contains("IOSQES"));
    }

    #[test]
    fn reads_and_writes_through_every_prp_form() {
        let mut h = Host::ready();
        // One block at a dword-aligned offset inside a page: PRP1 only.
        let b = buf(h.dma, PAGE);
        let one = pattern(512, 1);
        poke(&b, 0x204, &one);
        ok(&h.call(1, rw(NVM_WRITE, 7, 1, b.phys + 0x204, 0)));
        assert_eq!(h.nvme.read_ns(1, 7 * 512, 512), one);

        // 4 KiB starting half-way into a page: PRP1 + PRP2 (the second page).
        let b2 = buf(h.dma, 2 * PAGE);
        let four = pattern(4096, 2);
        poke(&b2, 0x800, &four);
        let c = h.call(
            1,
            rw(NVM_WRITE, 100, 8, b2.phys + 0x800, b2.phys + PAGE as u64),
        );
        ok(&c);
        assert_eq!(h.nvme.read_ns(1, 100 * 512, 4096), four);

        // 64 KiB over 16 pages scattered in separate allocations: a PRP list.
        let pages: Vec<DmaBuf> = (0..16).map(|_| buf(h.dma, PAGE)).collect();
        let big = pattern(16 * PAGE, 3);
        for (i, p) in pages.iter().enumerate() {
            poke(p, 0, &big[i * PAGE..(i + 1) * PAGE]);
        }
        let e: Vec<u64> = pages.iter().map(|p| p.phys).collect();
        let (prp2, _lists) = prp2_for(h.dma, &e);
        ok(&h.call(1, rw(NVM_WRITE, 512, 128, e[0], prp2)));
        assert_eq!(h.nvme.read_ns(1, 512 * 512, 16 * PAGE), big);

        // Read it back through a PRP list whose pointer has an offset (a small list pool).
        let dst = data_pages(h.dma, 16);
        let pool = buf(h.dma, PAGE);
        for i in 1..16 {
            let a = dst.mem.phys + (i * PAGE) as u64;
            poke(&pool, 0x100 + 8 * (i - 1), &a.to_le_bytes());
        }
        ok(&h.call(1, rw(NVM_READ, 512, 128, dst.prp1, pool.phys + 0x100)));
        assert_eq!(peek(&dst.mem, 0, 16 * PAGE), big);

        // A read that starts at an offset and ends inside the third page: PRP list of 2.
        let dst = buf(h.dma, 3 * PAGE);
        let list = buf(h.dma, 16);
        poke(&list, 0, &(dst.phys + PAGE as u64).to_le_bytes());
        poke(&list, 8, &(dst.phys + 2 * PAGE as u64).to_le_bytes());
        ok(&h.call(1, rw(NVM_READ, 512, 16, dst.phys + 0xc00, list.phys)));
        assert_eq!(peek(&dst, 0xc00, 8192), big[..8192]);

        let s = h.nvme.smart();
        assert_eq!(s.host_write_commands, 3);
        assert_eq!(s.host_read_commands, 2);
        assert_eq!(s.sectors_written, 1 + 8 + 128);
        assert_eq!(s.sectors_read, 128 + 16);
        assert_eq!((s.data_units_written, s.data_units_read), (1, 1));
        assert_eq!(h.nvme.unflushed_writes(), 3);
        ok(&h.call(1, cmd(NVM_FLUSH, 1, 0, 0, &[])));
        assert_eq!(h.nvme.unflushed_writes(), 0);
        ok(&h.call(1, cmd(NVM_FLUSH, 0xffff_ffff, 0, 0, &[])));
        let log = h.nvme.commands();
        let w = log
            .iter()
            .find(|c| c.opcode == NVM_WRITE && c.cdw10 == 100)
            .unwrap();
        assert_eq!((w.qid, w.nsid, w.cdw12, w.prp1), (1, 1, 7, b2.phys + 0x800));
        assert!(w.succeeded());
        h.assert_clean();
    }

    #[test]
    fn prp_lists_chain_and_fill_exactly() {
        let cfg = FakeConfig {
            mdts: 0,
            namespaces: vec![FakeNs {
                nsid: 1,
                lba_shift: 12,
                blocks: 1024,
            }],
            ..Default::default()
        };
        let mut h = Host::ready_with(cfg);
        // 513 pages: PRP1 and exactly 512 list entries, the last one data, not a chain.
        let d = data_pages(h.dma, 513);
        assert_eq!(d._lists.len(), 1);
        let want = pattern(513 * PAGE, 4);
        h.nvme.write_ns(1, 0, &want);
        ok(&h.call(1, rw(NVM_READ, 0, 513, d.prp1, d.prp2)));
        assert_eq!(peek(&d.mem, 0, want.len()), want);
        // 600 pages: the first list page gives its last slot to the chain pointer.
        let d = data_pages(h.dma, 600);
        assert_eq!(d._lists.len(), 2);
        let want = pattern(600 * PAGE, 5);
        poke(&d.mem, 0, &want);
        ok(&h.call(1, rw(NVM_WRITE, 200, 600, d.prp1, d.prp2)));
        assert_eq!(h.nvme.read_ns(1, 200 * 4096, want.len()), want);
        h.assert_clean();
    }

    #[test]
    fn bad_prps_are_violations_and_fail() {
        let mut h = Host::ready();
        let b = buf(h.dma, 2 * PAGE);
        let c = h.call(1, rw(NVM_READ, 0, 1, b.phys + 2, 0));
        assert_eq!(st(&c), (0, PRP_OFFSET_INVALID));
        let c = h.call(1, rw(NVM_READ, 0, 16, b.phys, b.phys + PAGE as u64 + 8));
        assert_eq!(st(&c), (0, PRP_OFFSET_INVALID));
        // A list entry with an offset.
        let big = buf(h.dma, 4 * PAGE);
        let list = buf(h.dma, PAGE);
        poke(&list, 0, &(big.phys + PAGE as u64 + 0x10).to_le_bytes());
        let c = h.call(1, rw(NVM_READ, 0, 24, big.phys, list.phys));
        assert_eq!(st(&c), (0, PRP_OFFSET_INVALID));
        // A list too short for the transfer: the second entry is outside the allocation.
        let short = buf(h.dma, 8);
        poke(&short, 0, &(big.phys + PAGE as u64).to_le_bytes());
        let c = h.call(1, rw(NVM_READ, 0, 24, big.phys, short.phys));
        assert_eq!(st(&c), (0, DATA_TRANSFER_ERROR));
        // A data page outside DMA memory: nothing is written anywhere.
        let c = h.call(1, rw(NVM_READ, 0, 16, b.phys, 0x1000));
        assert_eq!(st(&c), (0, DATA_TRANSFER_ERROR));
        // A buffer crossing the end of its allocation.
        let small = buf(h.dma, 512);
        let c = h.call(1, rw(NVM_WRITE, 0, 2, small.phys, 0));
        assert_eq!(st(&c), (0, DATA_TRANSFER_ERROR));
        let v = h.violations();
        assert_eq!(v.len(), 6, "{:?}", v);
        assert!(v[0].contains("PRP1"));
        assert!(v[1].contains("PRP2"));
        assert!(v[2].contains("not page aligned"));
        assert!(v[3].contains("list too short"));
        assert!(v[4].contains("0x1000"));
        assert!(v[5].contains("outside DMA memory"));
        assert_eq!(h.nvme.smart().host_read_commands, 0);
    }

    #[test]
    fn phase_wraps_around_small_queues() {
        let cfg = FakeConfig {
            dstrd: 2,
            ..Default::default()
        };
        let mut h = Host::enabled(cfg, 2);
        assert_eq!(h.stride, 16);
        h.create_pair(1, 3, 2, 1);
        let b = buf(h.dma, PAGE);
        let mut phases = Vec::new();
        for i in 0..10u32 {
            let slot = h.cqs[&1].head;
            let cid = h.submit(1, rw(NVM_READ, i as u64, 1, b.phys, 0));
            let e = h.reap(1).expect("completion");
            ok(&e);
            assert_eq!(e[3] as u16, cid);
            assert_eq!(e[2] >> 16, 1, "SQ ID");
            assert_eq!(e[2] & 0xffff, (i + 1) % 3, "SQ head");
            phases.push(((e[3] >> 16) & 1, slot));
        }
        assert_eq!(
            phases,
            [
                (1, 0),
                (1, 1),
                (0, 0),
                (0, 1),
                (1, 0),
                (1, 1),
                (0, 0),
                (0, 1),
                (1, 0),
                (1, 1)
            ]
        );
        // The 2-entry admin queue wraps too.
        for _ in 0..5 {
            ok(&h.admin(cmd(ADMIN_GET_FEATURES, 0, 0, 0, &[0x07])));
        }
        h.assert_clean();
        h.bar.write32(DOORBELLS + 4, 0);
        assert!(h.violations()[0].contains("not a doorbell (stride 16)"));
    }

    #[test]
    fn a_full_cq_holds_completions_back() {
        let mut h = Host::enabled(FakeConfig::default(), 8);
        h.create_pair(1, 8, 2, 1);
        let cids: Vec<u16> = (0..4)
            .map(|_| h.put(1, cmd(NVM_FLUSH, 1, 0, 0, &[])))
            .collect();
        h.ring(1);
        // Room for one entry: the second slot stays old until the head moves.
        let first = h.peek_cq(1).unwrap();
        assert_eq!(first[3] as u16, cids[0]);
        assert_eq!(peek(&h.cqs[&1].mem, 16, 16), [0; 16]);
        let io = h.nvme.commands();
        assert_eq!(io.iter().filter(|c| c.qid == 1 && c.succeeded()).count(), 4);
        let mut got = Vec::new();
        while let Some(e) = h.reap(1) {
            // SQ head as it stood when the entry was posted: the held ones after all four
            // were fetched.
            let want = if got.is_empty() { 1 } else { 4 };
            assert_eq!(e[2] & 0xffff, want);
            got.push(e[3] as u16);
        }
        assert_eq!(got, cids);
        // Releasing more than was posted is a violation.
        let head = h.cqs[&1].head;
        h.bar.write32(h.db(1, true), (head as u32 + 1) % 2);
        assert!(h.violations()[0].contains("not posted"));
    }

    #[test]
    fn io_errors_and_the_error_log() {
        let mut h = Host::ready();
        let b = buf(h.dma, 2 * PAGE);
        let c = h.call(1, rw(NVM_READ, 2048, 1, b.phys, 0));
        assert_eq!(st(&c), (0, LBA_OUT_OF_RANGE));
        assert_eq!(c[3] >> 31, 1, "DNR");
        assert_eq!((c[3] >> 30) & 1, 1, "More: see the error log");
        assert_eq!(
            st(&h.call(1, rw(NVM_READ, 2047, 2, b.phys, 0))),
            (0, LBA_OUT_OF_RANGE)
        );
        assert_eq!(
            st(&h.call(1, rw(NVM_READ, u64::MAX, 1, b.phys, 0))),
            (0, LBA_OUT_OF_RANGE)
        );
        let mut bad_ns = rw(NVM_READ, 0, 1, b.phys, 0);
        bad_ns[1] = 2;
        assert_eq!(st(&h.call(1, bad_ns)), (0, INVALID_NAMESPACE));
        // 257 blocks of 512 B is more than MDTS 5 (128 KiB).
        assert_eq!(
            st(&h.call(1, rw(NVM_READ, 0, 257, b.phys, 0))),
            (0, INVALID_FIELD)
        );
        assert_eq!(st(&h.call(1, cmd(0x7f, 1, 0, 0, &[]))), (0, INVALID_OPCODE));
        h.nvme
            .inject_error(1, 10, SCT_MEDIA, UNRECOVERED_READ_ERROR);
        ok(&h.call(1, rw(NVM_READ, 0, 8, b.phys, 0)));
        let c = h.call(1, rw(NVM_READ, 8, 8, b.phys, 0));
        assert_eq!(st(&c), (SCT_MEDIA, UNRECOVERED_READ_ERROR));
        let failed_cid = c[3] as u16;
        ok(&h.call(1, rw(NVM_READ, 8, 8, b.phys, 0)));
        let s = h.nvme.smart();
        assert_eq!((s.num_err_log_entries, s.media_errors), (7, 1));

        let (c, log) = h.log_page(0x01, 0xffff_ffff, 4096, 0);
        ok(&c);
        // Newest first.
        assert_eq!(u64_at(&log, 0), 7, "error count");
        assert_eq!(u16::from_le_bytes([log[8], log[9]]), 1, "SQ ID");
        assert_eq!(u16::from_le_bytes([log[10], log[11]]), failed_cid);
        let status = u16::from_le_bytes([log[12], log[13]]) >> 1;
        assert_eq!(split(status), (SCT_MEDIA, UNRECOVERED_READ_ERROR));
        assert_eq!(u64_at(&log, 16), 10, "LBA");
        assert_eq!(u32_at(&log, 24), 1, "NSID");
        assert_eq!(u64_at(&log, 6 * 64), 1, "oldest");
        assert_eq!(u64_at(&log, 6 * 64 + 16), 2048, "its LBA");
        assert_eq!(u64_at(&log, 7 * 64), 0, "unused entries are zero");
        h.assert_clean();

        let cfg = FakeConfig {
            read_only: true,
            ..Default::default()
        };
        let mut h = Host::ready_with(cfg);
        let b = buf(h.dma, PAGE);
        let c = h.call(1, rw(NVM_WRITE, 0, 1, b.phys, 0));
        assert_eq!(st(&c), (0, NS_WRITE_PROTECTED));
        ok(&h.call(1, rw(NVM_READ, 0, 1, b.phys, 0)));
        assert_eq!(h.nvme.smart().critical_warning & 8, 8, "read-only media");
        h.assert_clean();
    }

    #[test]
    fn smart_firmware_and_partial_log_reads() {
        let mut h = Host::ready();
        let d = data_pages(h.dma, 32);
        for i in 0..8 {
            ok(&h.call(1, rw(NVM_WRITE, i * 256, 256, d.prp1, d.prp2)));
        }
        ok(&h.call(1, rw(NVM_READ, 0, 256, d.prp1, d.prp2)));
        h.nvme.with_smart(|s| {
            s.power_on_hours = 42;
            s.temperature_kelvin = 0x0160;
        });
        let (c, log) = h.log_page(0x02, 0xffff_ffff, 512, 0);
        ok(&c);
        assert_eq!(log[0], 2, "temperature above the 343 K threshold");
        assert_eq!(u16::from_le_bytes([log[1], log[2]]), 0x0160);
        assert_eq!((log[3], log[4], log[5]), (100, 10, 0));
        assert_eq!(
            u128_at(&log, 32),
            1,
            "256 units read: 1 thousand, rounded up"
        );
        assert_eq!(u128_at(&log, 48), 3, "2048 units written");
        assert_eq!(u128_at(&log, 64), 1);
        assert_eq!(u128_at(&log, 80), 8);
        assert_eq!(u128_at(&log, 112), 1, "power cycles");
        assert_eq!(u128_at(&log, 128), 42);
        let s = h.nvme.smart();
        assert_eq!((s.data_units_read, s.data_units_written), (1, 3));
        // Lowering nothing but raising the threshold clears the warning.
        ok(&h.admin(cmd(ADMIN_SET_FEATURES, 0, 0, 0, &[0x04, 0x0170])));
        assert_eq!(h.nvme.smart().critical_warning, 0);
        // 16 bytes at offset 32: data units read.
        let (c, part) = h.log_page(0x02, 0, 16, 32);
        ok(&c);
        assert_eq!(u128_at(&part, 0), 1);
        let (c, _) = h.log_page(0x02, 1, 512, 0);
        assert_eq!(st(&c), (0, INVALID_FIELD), "no SMART per namespace");
        let (c, _) = h.log_page(0x02, 0, 16, 514);
        assert_eq!(st(&c), (0, INVALID_FIELD), "offset not dword aligned");
        let (c, _) = h.log_page(0x02, 0, 16, 1024);
        assert_eq!(st(&c), (0, INVALID_FIELD), "offset past the page");
        let (c, fw) = h.log_page(0x03, 0, 512, 0);
        ok(&c);
        assert_eq!((fw[0], &fw[8..16]), (1, &b"1.0     "[..]));
        let (c, _) = h.log_page(0x42, 0, 512, 0);
        assert_eq!(st(&c), (1, INVALID_LOG_PAGE));
        h.assert_clean();
    }

    #[test]
    fn hang_abort_late_completion_and_drops() {
        let mut h = Host::ready();
        let b = buf(h.dma, PAGE);
        h.nvme.set_hang(1, true);
        let hung = h.submit(1, rw(NVM_READ, 0, 1, b.phys, 0));
        assert!(h.peek_cq(1).is_none());
        assert_eq!(h.nvme.outstanding(1), 1);
        // Reusing its CID while it is outstanding is a conflict.
        let abort = h.admin(cmd(ADMIN_ABORT, 0, 0, 0, &[1 | (hung as u32) << 16]));
        ok(&abort);
        assert_eq!(abort[0] & 1, 0, "aborted");
        let e = h.reap(1).expect("the aborted command completes");
        assert_eq!((e[3] as u16, st(&e)), (hung, (0, ABORT_REQUESTED)));
        let again = h.admin(cmd(ADMIN_ABORT, 0, 0, 0, &[1 | (hung as u32) << 16]));
        assert_eq!(again[0] & 1, 1, "nothing to abort");
        // Unhanging completes what is still outstanding, late.
        let late = h.submit(1, rw(NVM_READ, 0, 1, b.phys, 0));
        assert!(h.peek_cq(1).is_none());
        h.nvme.set_hang(1, false);
        let e = h.reap(1).expect("late completion");
        assert_eq!(e[3] as u16, late);
        ok(&e);
        // Deleting the queue drops a hung command without a completion.
        h.nvme.set_hang(1, true);
        let dropped = h.submit(1, rw(NVM_READ, 0, 1, b.phys, 0));
        ok(&h.admin(cmd(ADMIN_DELETE_SQ, 0, 0, 0, &[1])));
        assert_eq!(h.nvme.outstanding(1), 0);
        assert!(h.peek_cq(1).is_none());
        let c = h.nvme.commands();
        assert_eq!(c.iter().find(|c| c.cid == dropped).unwrap().status, None);
        h.assert_clean();
        // A controller reset drops hung admin commands (but an Abort still gets through).
        h.nvme.set_hang(0, true);
        let get = h.submit(0, cmd(ADMIN_GET_FEATURES, 0, 0, 0, &[0x07]));
        let abort = h.submit(0, cmd(ADMIN_ABORT, 0, 0, 0, &[(get as u32) << 16]));
        let e = h.reap(0).unwrap();
        assert_eq!((e[3] as u16, st(&e)), (get, (0, ABORT_REQUESTED)));
        let e = h.reap(0).unwrap();
        assert_eq!((e[3] as u16, e[0] & 1), (abort, 0));
        h.submit(0, cmd(ADMIN_GET_FEATURES, 0, 0, 0, &[0x07]));
        assert_eq!(h.nvme.outstanding(0), 1);
        h.disable();
        assert_eq!(h.nvme.outstanding(0), 0);
        h.nvme.set_hang(0, false);
        h.enable(4);
        ok(&h.admin(cmd(ADMIN_GET_FEATURES, 0, 0, 0, &[0x07])));
        h.assert_clean();
    }

    #[test]
    fn cid_conflicts_are_violations() {
        let mut h = Host::ready();
        h.nvme.set_hang(1, true);
        let cid = h.submit(1, cmd(NVM_FLUSH, 1, 0, 0, &[]));
        // The same CID again while the first is outstanding.
        h.next_cid = cid;
        h.submit(1, cmd(NVM_FLUSH, 1, 0, 0, &[]));
        let e = h.reap(1).unwrap();
        assert_eq!((e[3] as u16, st(&e)), (cid, (0, CID_CONFLICT)));
        assert!(h.violations()[0].contains("outstanding"));
        // The original still completes, late.
        h.nvme.set_hang(1, false);
        let e = h.reap(1).unwrap();
        assert_eq!(e[3] as u16, cid);
        ok(&e);
        // Once completed, the CID may be used again.
        h.next_cid = cid;
        ok(&h.call(1, cmd(NVM_FLUSH, 1, 0, 0, &[])));
        assert_eq!(h.violations().len(), 1);
    }

    #[test]
    fn doorbell_misuse_is_recorded() {
        let mut h = Host::ready();
        h.bar.write32(h.db(1, false), 64);
        h.bar.write32(h.db(1, true), 64);
        h.bar.write32(h.db(3, false), 0);
        h.bar.write32(h.db(3, true), 0);
        h.bar.write32(h.db(1, true), 5);
        h.bar.write32(DOORBELLS + 2, 0);
        h.bar.write16(REG_CC, 1);
        let _ = h.bar.read8(REG_CSTS);
        h.bar.write32(REG_CAP, 0);
        h.bar.write32(MSIX_PBA, 1);
        let v = h.violations();
        assert_eq!(v.len(), 10, "{:#?}", v);
        assert!(v[0].contains("beyond"));
        assert!(v[1].contains("beyond"));
        assert!(v[2].contains("nonexistent queue 3"));
        assert!(v[3].contains("nonexistent queue 3"));
        assert!(v[4].contains("not posted"));
        assert!(v[5].contains("misaligned"));
        assert!(v[6].contains("2-byte write"));
        assert!(v[7].contains("1-byte read"));
        assert!(v[8].contains("read-only"));
        assert!(v[9].contains("PBA"));
        // Still works afterwards.
        ok(&h.admin(cmd(ADMIN_GET_FEATURES, 0, 0, 0, &[0x07])));
    }

    #[test]
    fn dma_needs_bus_mastering_and_cc_fields_stay_put() {
        let mut h = Host::ready();
        let pci = h.nvme.pci_config();
        pci.write16(0x04, CMD_MEMORY);
        h.submit(0, cmd(ADMIN_GET_FEATURES, 0, 0, 0, &[0x07]));
        assert!(h.violations()[0].contains("bus mastering disabled"));
        pci.write16(0x04, CMD_MEMORY | CMD_BUS_MASTER);
        h.bar.write32(REG_CC, CC_ENABLE | 1 << 7);
        assert!(h.violations()[1].contains("while CC.EN = 1"));
        pci.write16(0x04, 0);
        assert_eq!(h.bar.read32(REG_CSTS), u32::MAX);
        assert!(h.violations()[2].contains("Memory Space disabled"));
    }

    #[test]
    fn msix_interrupts_follow_table_and_masks() {
        let mut h = Host::enabled(FakeConfig::default(), 8);
        let fired = Arc::new(Mutex::new(Vec::new()));
        let f = fired.clone();
        h.nvme
            .set_interrupt_hook(Box::new(move |v| f.lock().unwrap().push(v)));
        let cfg = h.nvme.pci_config();
        let layout = msi::msix_layout(&cfg, MSIX_CAP, None).unwrap();
        let window = h
            .nvme
            .mapper()
            .map_mmio(BAR0_BASE + layout.table.offset as u64, layout.table.len)
            .unwrap();
        let pba = h
            .nvme
            .mapper()
            .map_mmio(BAR0_BASE + layout.pba.offset as u64, layout.pba.len)
            .unwrap();
        let table = MsixTable::new(&*window, layout.entries)
            .unwrap()
            .with_pba(&*pba)
            .unwrap();
        let mut en = msi::enable_msix(&cfg, MSIX_CAP).unwrap();
        for e in 0..2 {
            let msg = MsiMessage {
                address: 0xfee0_0000,
                data: 0x40 + e as u32,
            };
            en.program(&table, e, msg).unwrap();
        }
        // Function masked: the admin completion leaves entry 0 pending.
        ok(&h.admin(cmd(ADMIN_GET_FEATURES, 0, 0, 0, &[0x07])));
        assert!(fired.lock().unwrap().is_empty());
        assert!(table.pending(0).unwrap());
        en.finish().unwrap();
        assert_eq!(*fired.lock().unwrap(), [0], "sent on unmask");
        assert!(!h.nvme.msix_pending(0));
        assert_eq!(h.nvme.msix_entry(1), (0xfee0_0000, 0x41, false));
        h.create_pair(1, 16, 16, 1);
        ok(&h.create_cq(2, 16, 1, false));
        ok(&h.create_sq(2, 16, 2));
        fired.lock().unwrap().clear();
        ok(&h.call(1, cmd(NVM_FLUSH, 1, 0, 0, &[])));
        ok(&h.call(2, cmd(NVM_FLUSH, 1, 0, 0, &[])));
        assert_eq!(*fired.lock().unwrap(), [1], "CQ 2 has interrupts disabled");
        table.mask(1).unwrap();
        ok(&h.call(1, cmd(NVM_FLUSH, 1, 0, 0, &[])));
        assert_eq!(fired.lock().unwrap().len(), 1);
        assert!(h.nvme.msix_pending(1));
        table.unmask(1).unwrap();
        assert_eq!(*fired.lock().unwrap(), [1, 1]);
        assert_eq!(h.nvme.interrupt_count(1), 2);
        // The hook may call back into the fake.
        let n2 = h.nvme.clone();
        let seen = Arc::new(AtomicBool::new(false));
        let s2 = seen.clone();
        h.nvme.set_interrupt_hook(Box::new(move |_| {
            let _ = n2.csts();
            s2.store(true, Ordering::Relaxed);
        }));
        ok(&h.call(1, cmd(NVM_FLUSH, 1, 0, 0, &[])));
        assert!(seen.load(Ordering::Relaxed));
        h.assert_clean();
        // Reprogramming a live entry without masking it first is undefined.
        window.write32(16 + 8, 0x99);
        assert!(h.violations()[0].contains("changed while unmasked"));
    }

    #[test]
    fn handles_are_shareable() {
        fn shareable<T: Clone + Send + Sync + 'static>() {}
        shareable::<FakeNvme>();
        shareable::<FakeBar>();
        shareable::<FakePciConfig>();
        shareable::<FakeMapper>();
    }

    #[test]
    fn intx_asserts_unless_masked() {
        let mut h = Host::enabled(FakeConfig::default(), 8);
        let fired = Arc::new(Mutex::new(Vec::new()));
        let f = fired.clone();
        h.nvme
            .set_interrupt_hook(Box::new(move |v| f.lock().unwrap().push(v)));
        let cfg = h.nvme.pci_config();
        ok(&h.admin(cmd(ADMIN_GET_FEATURES, 0, 0, 0, &[0x07])));
        assert_eq!(*fired.lock().unwrap(), [INTX]);
        // Masked by INTMS: the level rises but the line does not.
        h.bar.write32(REG_INTMS, 1);
        assert_eq!(h.bar.read32(REG_INTMS), 1);
        let cid = h.submit(0, cmd(ADMIN_GET_FEATURES, 0, 0, 0, &[0x07]));
        assert_eq!(fired.lock().unwrap().len(), 1);
        assert_eq!(cfg.read16(0x06) & 8, 0, "no interrupt status while masked");
        h.bar.write32(REG_INTMC, 1);
        assert_eq!(
            fired.lock().unwrap().len(),
            2,
            "unmasking with entries pending"
        );
        assert_eq!(cfg.read16(0x06) & 8, 8, "Interrupt Status");
        assert_eq!(h.reap(0).unwrap()[3] as u16, cid);
        assert_eq!(cfg.read16(0x06) & 8, 0);
        // Interrupt Disable stops the pin.
        msi::disable_intx(&cfg).unwrap();
        ok(&h.admin(cmd(ADMIN_GET_FEATURES, 0, 0, 0, &[0x07])));
        assert_eq!(fired.lock().unwrap().len(), 2);
        h.assert_clean();
    }

    #[test]
    fn features_and_volatile_write_cache() {
        let mut h = Host::ready();
        assert_eq!(h.admin(cmd(ADMIN_GET_FEATURES, 0, 0, 0, &[0x06]))[0], 1);
        ok(&h.admin(cmd(ADMIN_SET_FEATURES, 0, 0, 0, &[0x06, 0])));
        assert_eq!(h.admin(cmd(ADMIN_GET_FEATURES, 0, 0, 0, &[0x06]))[0], 0);
        let b = buf(h.dma, PAGE);
        ok(&h.call(1, rw(NVM_WRITE, 0, 1, b.phys, 0)));
        assert_eq!(h.nvme.unflushed_writes(), 0, "write-through");
        let c = h.admin(cmd(ADMIN_SET_FEATURES, 0, 0, 0, &[0x06 | 1 << 31, 1]));
        assert_eq!(st(&c), (1, FEATURE_NOT_SAVEABLE));
        assert_eq!(
            h.admin(cmd(ADMIN_GET_FEATURES, 0, 0, 0, &[0x06 | 3 << 8]))[0],
            4
        );
        assert_eq!(
            st(&h.admin(cmd(ADMIN_SET_FEATURES, 0, 0, 0, &[0x77, 0]))),
            (0, INVALID_FIELD)
        );
        assert_eq!(
            h.admin(cmd(ADMIN_GET_FEATURES, 0, 0, 0, &[0x04]))[0],
            WCTEMP as u32
        );
        ok(&h.admin(cmd(ADMIN_SET_FEATURES, 0, 0, 0, &[0x09, 3 | 1 << 16])));
        assert_eq!(
            h.admin(cmd(ADMIN_GET_FEATURES, 0, 0, 0, &[0x09, 3]))[0],
            3 | 1 << 16
        );
        assert_eq!(
            st(&h.admin(cmd(ADMIN_SET_FEATURES, 0, 0, 0, &[0x09, 9]))),
            (0, INVALID_FIELD)
        );
        h.assert_clean();

        let cfg = FakeConfig {
            vwc: false,
            ..Default::default()
        };
        let mut h = Host::ready_with(cfg);
        let (_, id) = h.identify(1, 0);
        assert_eq!(id[525] & 1, 0);
        let c = h.admin(cmd(ADMIN_GET_FEATURES, 0, 0, 0, &[0x06]));
        assert_eq!(st(&c), (0, INVALID_FIELD));
        ok(&h.call(1, cmd(NVM_FLUSH, 1, 0, 0, &[])));
        h.assert_clean();
    }

    #[test]
    fn write_zeroes_and_deallocate() {
        let mut h = Host::ready();
        h.nvme.write_ns(1, 0, &[0xaa; 8192]);
        ok(&h.call(1, cmd(NVM_WRITE_ZEROES, 1, 0, 0, &[2, 0, 1])));
        assert_eq!(h.nvme.read_ns(1, 1024, 1024), [0; 1024]);
        assert_eq!(h.nvme.read_ns(1, 0, 1024), [0xaa; 1024]);
        let r = buf(h.dma, 32);
        let mut range = [0u8; 16];
        range[4..8].copy_from_slice(&4u32.to_le_bytes());
        range[8..16].copy_from_slice(&8u64.to_le_bytes());
        poke(&r, 0, &range);
        ok(&h.call(1, cmd(NVM_DSM, 1, r.phys, 0, &[0, 1 << 2])));
        assert_eq!(h.nvme.read_ns(1, 4096, 2048), [0; 2048]);
        assert_eq!(h.nvme.read_ns(1, 6144, 2048), [0xaa; 2048]);
        range[8..16].copy_from_slice(&2046u64.to_le_bytes());
        poke(&r, 0, &range);
        let c = h.call(1, cmd(NVM_DSM, 1, r.phys, 0, &[0, 1 << 2]));
        assert_eq!(st(&c), (0, LBA_OUT_OF_RANGE));
        h.assert_clean();
    }

    #[test]
    fn asynchronous_events_wait_for_requests_and_log_reads() {
        let mut h = Host::ready();
        let aer = h.submit(0, cmd(ADMIN_ASYNC_EVENT, 0, 0, 0, &[]));
        assert!(h.peek_cq(0).is_none());
        h.nvme.async_event(1, 0x01, 0x02);
        let e = h.reap(0).unwrap();
        assert_eq!((e[3] as u16, e[0]), (aer, 1 | 1 << 8 | 2 << 16));
        // The next SMART event waits for the log read that unmasks it.
        let aer2 = h.submit(0, cmd(ADMIN_ASYNC_EVENT, 0, 0, 0, &[]));
        h.nvme.async_event(1, 0x00, 0x02);
        assert!(h.peek_cq(0).is_none());
        let (c, _) = h.log_page(0x02, 0, 512, 0);
        ok(&c);
        let e = h.reap(0).unwrap();
        assert_eq!((e[3] as u16, e[0]), (aer2, 1 | 2 << 16));
        for _ in 0..=AERL {
            h.submit(0, cmd(ADMIN_ASYNC_EVENT, 0, 0, 0, &[]));
        }
        let c = h.admin(cmd(ADMIN_ASYNC_EVENT, 0, 0, 0, &[]));
        assert_eq!(st(&c), (1, AER_LIMIT_EXCEEDED));
        assert_eq!(h.nvme.outstanding(0), 4);
        h.assert_clean();
        // A doorbell error is reported through one of them.
        h.bar.write32(h.db(4, false), 0);
        let e = h.reap(0).unwrap();
        assert_eq!(e[0], 0x01 << 16, "error event, invalid doorbell register");
        assert_eq!(h.violations().len(), 1);
    }

    #[test]
    fn shutdown_flushes_and_stops_commands() {
        let mut h = Host::ready();
        let b = buf(h.dma, PAGE);
        ok(&h.call(1, rw(NVM_WRITE, 0, 1, b.phys, 0)));
        assert_eq!(h.nvme.unflushed_writes(), 1);
        h.bar.write32(REG_CC, CC_ENABLE | 1 << 14);
        assert_eq!(h.bar.read32(REG_CSTS) & 0xc, 0x8, "shutdown complete");
        assert_eq!(h.nvme.unflushed_writes(), 0);
        h.assert_clean();
        h.submit(1, cmd(NVM_FLUSH, 1, 0, 0, &[]));
        assert!(h.violations()[0].contains("shutdown"));
        h.disable();
        assert_eq!(h.bar.read32(REG_CSTS), 0);
    }

    #[test]
    fn mapper_windows_and_function_level_reset() {
        let mut h = Host::ready();
        let m = h.nvme.mapper();
        assert!(m.map_mmio(BAR0_BASE - 4, 8).is_none());
        assert!(m.map_mmio(BAR0_BASE + 0x3ff0, 0x20).is_none());
        let regs = m.map_mmio(BAR0_BASE, 0x1000).unwrap();
        assert_eq!(regs.read32(REG_VS), 0x0001_0400);
        let dbs = m.map_mmio(BAR0_BASE + 0x1000, 0x1000).unwrap();
        // Doorbells through the window, offset-adjusted.
        let cid = h.put(0, cmd(ADMIN_GET_FEATURES, 0, 0, 0, &[0x07]));
        dbs.write32(0, h.sqs[&0].tail as u32);
        assert_eq!(h.reap(0).unwrap()[3] as u16, cid);
        assert_eq!(regs.read32(0x1000), u32::MAX, "outside the window");
        assert_eq!(h.violations().len(), 1);
        // FLR: everything back to power-on, BAR unassigned.
        let cfg = h.nvme.pci_config();
        cfg.write16(DEVCTL, cfg.read16(DEVCTL) | 0x8000);
        assert_eq!(cfg.read16(DEVCTL) & 0x8000, 0);
        assert_eq!(cfg.command(), 0);
        assert_eq!(h.nvme.cc(), 0);
        assert_eq!(h.nvme.queue_count(), (0, 0));
        assert!(m.map_mmio(BAR0_BASE, 0x1000).is_none());
        cfg.write32(0x10, BAR0_BASE as u32);
        cfg.write16(0x04, CMD_MEMORY);
        assert_eq!(h.bar.read32(REG_CSTS), 0);
        assert_eq!(
            regs.read32(REG_VS),
            0x0001_0400,
            "the BAR decodes there again"
        );
        cfg.write32(0x10, 0xfd00_0000);
        assert_eq!(regs.read32(REG_VS), u32::MAX);
        assert!(h.violations()[1].contains("no longer decodes"));
    }
}
