//! A fake virtio-blk PCI function for host tests: config space with vendor capabilities, a
//! 64-bit BAR whose register windows emulate the common configuration semantics, and a block
//! device model that walks the split virtqueue in (fake) DMA memory when its doorbell rings.
//!
//! DMA memory is ordinary heap memory whose "physical" address is its virtual address; the
//! device checks that every address the driver hands it lies inside a live allocation, or inside
//! a caller's buffer that `FakeDma::dma_address` named (when `direct` is on).
//!
//! The function also has an MSI-X capability with a 2-entry table in a 32-bit BAR1 (as QEMU's
//! virtio-blk-pci), an INTA pin, and [`FakeIrq`], a fake interrupt layer: when the driver wants
//! interrupts the device completes only when the driver waits (`FakeIrq::wait_for`), and then
//! signals through the MSI-X entry it was given, or the INTx line while ISR is set.
use crate::features::{self, blk as bf};
use crate::monitor::DeviceStatus;
use crate::pci::VIRTIO_MSI_NO_VECTOR;
pub use capmon_hal::fake::{FakeClock, FakeDma};
use capmon_hal::{BarMapper, MmioBox};
use capmon_hal::{
    Interrupts, IrqEvent, IrqOwner, IrqVector, Mechanism, Mmio, MsiMessage, PciConfig,
};
use capmon_pci::Bdf;
use std::boxed::Box;
use std::string::String;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::vec;
use std::vec::Vec;

/// Where the fake places BAR4 (64-bit memory BAR).
pub const BAR_BASE: u64 = 0x8_0000_0000;
const BAR_LEN: u64 = 0x4000;
const REGION_COMMON: u64 = 0x0000;
const REGION_ISR: u64 = 0x1000;
const REGION_DEVICE: u64 = 0x2000;
const REGION_NOTIFY: u64 = 0x3000;
const NOTIFY_MULTIPLIER: u32 = 4;
/// queue_notify_off of queue 0: its doorbell is at NOTIFY + 1 * multiplier.
const QUEUE0_NOTIFY_OFF: u16 = 1;
/// Offset of the last capability in the fake's list.
pub const LAST_CAP: u16 = 0x88;
/// Where the fake places BAR1 (32-bit memory BAR): the MSI-X table at 0, the PBA at 0x800.
pub const MSIX_BAR_BASE: u64 = 0xfebf_1000;
const MSIX_BAR_LEN: u64 = 0x1000;
const MSIX_PBA: usize = 0x800;
/// The fake's MSI-X table size (as QEMU: one vector per queue plus one for config).
pub const MSIX_ENTRIES: usize = 2;
/// Offset of the MSI-X capability.
pub const MSIX_CAP: u16 = 0x40;
/// Where the fake PCI address of the function.
pub fn fake_bdf() -> Bdf {
    Bdf::new(0, 0, 3, 0).expect("valid BDF")
}

/// 256 bytes of config space of a modern virtio-blk function (device ID 0x1042): an MSI-X
/// capability, then common, notify, ISR and device capabilities, all in BAR4. Writable: the
/// command register and the MSI-X Enable and Function Mask bits. Clones share the space.
#[derive(Clone)]
pub struct FakePciConfig {
    space: Arc<Mutex<[u8; 256]>>,
    status_writes: Arc<AtomicU32>,
}

impl FakePciConfig {
    pub fn virtio_blk() -> Self {
        let c = FakePciConfig {
            space: Arc::new(Mutex::new([0; 256])),
            status_writes: Arc::new(AtomicU32::new(0)),
        };
        c.poke32(0x00, 0x1042_1af4);
        c.poke32(0x04, 0x0010_0000); // status: capability list
        c.poke32(0x08, 0x0100_0000); // class: mass storage
        c.poke32(0x14, MSIX_BAR_BASE as u32); // BAR1: 32-bit memory
        c.poke32(0x20, BAR_BASE as u32 | 0x4); // BAR4: 64-bit memory
        c.poke32(0x24, (BAR_BASE >> 32) as u32);
        c.poke32(0x2c, 0x0002_1af4); // subsystem: virtio type 2
        c.poke8(0x34, 0x40);
        c.poke32(0x3c, 0x0000_010b); // INTA, line 11
                                     // MSI-X, next 0x50, table size 2; table BAR1+0, PBA BAR1+0x800.
        c.poke32(MSIX_CAP, 0x0001_5011);
        c.poke32(MSIX_CAP + 4, 1);
        c.poke32(MSIX_CAP + 8, MSIX_PBA as u32 | 1);
        c.vendor_cap(0x50, 0x60, 1, REGION_COMMON, None);
        c.vendor_cap(0x60, 0x78, 2, REGION_NOTIFY, Some(NOTIFY_MULTIPLIER));
        c.vendor_cap(0x78, LAST_CAP as u8, 3, REGION_ISR, None);
        c.vendor_cap(LAST_CAP as u8, 0, 4, REGION_DEVICE, None);
        c
    }

    fn vendor_cap(&self, at: u8, next: u8, cfg_type: u8, offset: u64, mult: Option<u32>) {
        let at = at as u16;
        let len = if mult.is_some() { 20 } else { 16 };
        self.poke32(
            at,
            0x09 | (next as u32) << 8 | len << 16 | (cfg_type as u32) << 24,
        );
        self.poke32(at + 4, 4); // BAR4
        self.poke32(at + 8, offset as u32);
        self.poke32(at + 12, 0x1000);
        if let Some(m) = mult {
            self.poke32(at + 16, m);
        }
    }

    pub fn poke8(&self, off: u16, v: u8) {
        if let Some(b) = self.space.lock().unwrap().get_mut(off as usize) {
            *b = v;
        }
    }

    pub fn poke32(&self, off: u16, v: u32) {
        for (i, b) in v.to_le_bytes().into_iter().enumerate() {
            self.poke8(off + i as u16, b);
        }
    }

    /// Writes to the command/status dword that would have cleared status error bits.
    pub fn writes_to_status(&self) -> u32 {
        self.status_writes.load(Ordering::Relaxed)
    }

    pub fn command(&self) -> u16 {
        self.read16(0x04)
    }

    /// MSI-X Message Control.
    pub fn msix_control(&self) -> u16 {
        self.read16(MSIX_CAP + 2)
    }
}

impl PciConfig for FakePciConfig {
    fn read32(&self, off: u16) -> u32 {
        let s = self.space.lock().unwrap();
        match s.get(off as usize..off as usize + 4) {
            Some(b) => u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            None => u32::MAX,
        }
    }

    fn write32(&self, off: u16, v: u32) {
        match off {
            // Command register writable; status bits are write-1-to-clear.
            0x04 => {
                if v >> 16 != 0 {
                    self.status_writes.fetch_add(1, Ordering::Relaxed);
                }
                let old = self.read32(0x04);
                self.poke32(
                    0x04,
                    (old & 0xffff_0000 & !(v & 0xffff_0000)) | (v & 0xffff),
                );
            }
            // MSI-X Enable and Function Mask (PCI Local Bus 3.0 §6.8.2.3); the rest is RO.
            MSIX_CAP => {
                let old = self.read32(MSIX_CAP);
                self.poke32(MSIX_CAP, (old & !0xc000_0000) | (v & 0xc000_0000));
            }
            // The driver must not size BARs or write anything else.
            _ => panic!("FakePciConfig: unexpected write of {:#x} at {:#x}", v, off),
        }
    }
}

/// Knobs of the fake virtio-blk device.
#[derive(Debug, Clone)]
pub struct BlkConfig {
    pub offered: u64,
    pub refuse_features_ok: bool,
    /// Capacity in 512-byte units.
    pub units: u64,
    pub size_max: u32,
    pub seg_max: u32,
    pub blk_size: u32,
    pub queue_max: u16,
    pub serial: Option<&'static [u8]>,
    /// Process requests when notified; false models a hung device.
    pub complete: bool,
    /// Publish the used elements of one doorbell in reverse order.
    pub reverse: bool,
    /// Requests touching this 512-byte unit fail with IOERR.
    pub bad_unit: Option<u64>,
    /// Answer NO_VECTOR when the driver maps configuration changes / queue 0 to a vector.
    pub refuse_config_vector: bool,
    pub refuse_queue_vector: bool,
    /// The MSI-X table reads all-ones and drops writes.
    pub msix_broken: bool,
}

impl Default for BlkConfig {
    fn default() -> Self {
        BlkConfig {
            offered: features::VERSION_1 | bf::SEG_MAX | bf::BLK_SIZE | bf::FLUSH | bf::TOPOLOGY,
            refuse_features_ok: false,
            units: 8192,
            size_max: 0,
            seg_max: 126,
            blk_size: 512,
            queue_max: 256,
            serial: Some(b"capmon-serial-01"),
            complete: true,
            reverse: false,
            bad_unit: None,
            refuse_config_vector: false,
            refuse_queue_vector: false,
            msix_broken: false,
        }
    }
}

/// One request the device executed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub kind: u32,
    pub unit: u64,
    pub bytes: usize,
    pub data_segs: usize,
    /// Device address of the first data segment (0 without data).
    pub data_addr: u64,
}

#[derive(Debug, Default)]
struct Queue {
    size: u16,
    enabled: bool,
    msix: u16,
    desc: u64,
    driver: u64,
    device: u64,
    last_avail: u16,
    used_idx: u16,
}

/// The device model behind the BAR.
pub struct FakeBlkDevice {
    pub cfg: BlkConfig,
    pub disk: Vec<u8>,
    dma: &'static FakeDma,
    dfsel: u32,
    gfsel: u32,
    driver_features: u64,
    status: u8,
    config_msix: u16,
    qsel: u16,
    q: Queue,
    isr: u8,
    pub requests: Vec<Request>,
    pub notifies: u64,
    /// Protocol violations the device saw; tests expect none.
    pub violations: Vec<String>,
    /// Most chains outstanding at once.
    pub max_outstanding: usize,
    /// MSI-X table entries: address low, address high, data, vector control.
    pub msix_table: [[u32; 4]; MSIX_ENTRIES],
    /// Pending bits of entries that fired while masked.
    pub msix_pending: u64,
    /// A doorbell rang while the driver wants interrupts: the work waits for `run`.
    deferred: bool,
    /// Reads of the ISR status (each one deasserts INTx).
    pub isr_reads: u64,
}

impl FakeBlkDevice {
    fn new(cfg: BlkConfig, dma: &'static FakeDma) -> Self {
        let disk = (0..cfg.units as usize * 512)
            .map(|i| (i * 7 + i / 512) as u8)
            .collect();
        let q = Queue {
            size: cfg.queue_max,
            msix: VIRTIO_MSI_NO_VECTOR,
            ..Default::default()
        };
        FakeBlkDevice {
            cfg,
            disk,
            dma,
            dfsel: 0,
            gfsel: 0,
            driver_features: 0,
            status: 0,
            config_msix: VIRTIO_MSI_NO_VECTOR,
            qsel: 0,
            q,
            isr: 0,
            requests: Vec::new(),
            notifies: 0,
            violations: Vec::new(),
            max_outstanding: 0,
            msix_table: [[0, 0, 0, 1]; MSIX_ENTRIES],
            msix_pending: 0,
            deferred: false,
            isr_reads: 0,
        }
    }

    /// The vector the device maps configuration changes to (NO_VECTOR: none).
    pub fn config_vector(&self) -> u16 {
        self.config_msix
    }

    /// The vector the device maps queue 0 to.
    pub fn queue_vector(&self) -> u16 {
        self.q.msix
    }

    /// The ISR status, without reading (and clearing) it.
    pub fn isr_status(&self) -> u8 {
        self.isr
    }

    /// Does the work a doorbell left for later; returns the vector of queue 0 if it
    /// completed anything (the device then interrupts).
    pub fn run(&mut self) -> Option<u16> {
        if !core::mem::take(&mut self.deferred) || !self.cfg.complete {
            return None;
        }
        self.process();
        Some(self.q.msix)
    }

    /// The device configuration changed (§4.1.4.5 bit 1); returns the config vector.
    pub fn config_change(&mut self) -> u16 {
        self.isr |= 2;
        self.config_msix
    }

    /// Whether the driver left VIRTQ_AVAIL_F_NO_INTERRUPT clear.
    fn driver_wants_interrupts(&mut self) -> bool {
        let flags = self.read16(self.q.driver);
        flags & 1 == 0
    }

    fn msix_read(&self, off: usize) -> u64 {
        if self.cfg.msix_broken {
            return u64::MAX;
        }
        match off {
            o if o < MSIX_ENTRIES * 16 => self.msix_table[o / 16][(o % 16) / 4] as u64,
            MSIX_PBA => self.msix_pending & 0xffff_ffff,
            o if o == MSIX_PBA + 4 => self.msix_pending >> 32,
            _ => 0,
        }
    }

    fn msix_write(&mut self, off: usize, v: u64) {
        if self.cfg.msix_broken {
            return;
        }
        match off {
            o if o < MSIX_ENTRIES * 16 => {
                let (e, r) = (o / 16, (o % 16) / 4);
                // Vector Control: only the Mask bit is implemented.
                let v = if r == 3 { v as u32 & 1 } else { v as u32 };
                self.msix_table[e][r] = v;
            }
            _ => self.violation(std::format!(
                "write of {:#x} at MSI-X BAR offset {:#x}",
                v,
                off
            )),
        }
    }

    pub fn status(&self) -> u8 {
        self.status
    }

    pub fn driver_features(&self) -> u64 {
        self.driver_features
    }

    fn violation(&mut self, what: String) {
        self.violations.push(what);
    }

    fn reset(&mut self) {
        self.status = 0;
        self.driver_features = 0;
        // Every event unmapped on reset (virtio 1.2 §4.1.5.1.2).
        self.q = Queue {
            size: self.cfg.queue_max,
            msix: VIRTIO_MSI_NO_VECTOR,
            ..Default::default()
        };
        self.config_msix = VIRTIO_MSI_NO_VECTOR;
        self.isr = 0;
        self.deferred = false;
    }

    /// Maps an event to MSI-X entry `v` if the device can: NO_VECTOR reads back otherwise.
    fn map_vector(&self, v: u64, refuse: bool) -> u16 {
        let v = v as u16;
        if v == VIRTIO_MSI_NO_VECTOR || (!refuse && (v as usize) < MSIX_ENTRIES) {
            v
        } else {
            VIRTIO_MSI_NO_VECTOR
        }
    }

    fn config_bytes(&self) -> [u8; 0x40] {
        let mut c = [0u8; 0x40];
        c[0..8].copy_from_slice(&self.cfg.units.to_le_bytes());
        c[8..12].copy_from_slice(&self.cfg.size_max.to_le_bytes());
        c[12..16].copy_from_slice(&self.cfg.seg_max.to_le_bytes());
        c[0x14..0x18].copy_from_slice(&self.cfg.blk_size.to_le_bytes());
        c[0x1a..0x1c].copy_from_slice(&1u16.to_le_bytes());
        c
    }

    fn read(&mut self, abs: u64, size: usize) -> u64 {
        let (region, off) = (abs & !0xfff, (abs & 0xfff) as usize);
        match region {
            REGION_COMMON => self.common_read(off),
            REGION_ISR => {
                self.isr_reads += 1;
                core::mem::take(&mut self.isr) as u64
            }
            REGION_DEVICE => {
                let c = self.config_bytes();
                let mut v = 0u64;
                for i in 0..size {
                    v |= (*c.get(off + i).unwrap_or(&0) as u64) << (8 * i);
                }
                v
            }
            _ => u64::MAX,
        }
    }

    fn common_read(&mut self, off: usize) -> u64 {
        let q0 = self.qsel == 0;
        match off {
            0x00 => self.dfsel as u64,
            0x04 => match self.dfsel {
                0 => self.cfg.offered & 0xffff_ffff,
                1 => self.cfg.offered >> 32,
                _ => 0,
            },
            0x08 => self.gfsel as u64,
            0x0c => match self.gfsel {
                0 => self.driver_features & 0xffff_ffff,
                1 => self.driver_features >> 32,
                _ => 0,
            },
            0x10 => self.config_msix as u64,
            0x12 => 1,
            0x14 => self.status as u64,
            0x15 => 0,
            0x16 => self.qsel as u64,
            0x18 if q0 => self.q.size as u64,
            0x1a if q0 => self.q.msix as u64,
            0x1c if q0 => self.q.enabled as u64,
            0x1e if q0 => QUEUE0_NOTIFY_OFF as u64,
            0x18..=0x1e => 0,
            _ => {
                self.violation(std::format!("read of common config {:#x}", off));
                0
            }
        }
    }

    fn write(&mut self, abs: u64, v: u64) {
        let (region, off) = (abs & !0xfff, (abs & 0xfff) as usize);
        match region {
            REGION_COMMON => self.common_write(off, v),
            REGION_NOTIFY => {
                if off as u32 != QUEUE0_NOTIFY_OFF as u32 * NOTIFY_MULTIPLIER || v != 0 {
                    self.violation(std::format!("doorbell {:#x} at {:#x}", v, off));
                    return;
                }
                self.notifies += 1;
                if self.status & DeviceStatus::DRIVER_OK == 0 || !self.q.enabled {
                    self.violation(String::from("doorbell before DRIVER_OK"));
                } else if self.cfg.complete {
                    if self.driver_wants_interrupts() {
                        self.deferred = true;
                    } else {
                        self.process();
                    }
                }
            }
            _ => self.violation(std::format!("write at BAR offset {:#x}", abs)),
        }
    }

    fn common_write(&mut self, off: usize, v: u64) {
        let q_writable = self.qsel == 0 && !self.q.enabled;
        let half = |old: u64, hi: bool| {
            if hi {
                (old & 0xffff_ffff) | v << 32
            } else {
                (old & !0xffff_ffff) | (v & 0xffff_ffff)
            }
        };
        match off {
            0x00 => self.dfsel = v as u32,
            0x08 => self.gfsel = v as u32,
            0x0c => {
                if self.status & DeviceStatus::FEATURES_OK != 0 {
                    self.violation(String::from("feature write after FEATURES_OK"));
                }
                match self.gfsel {
                    0 => self.driver_features = half(self.driver_features, false),
                    1 => self.driver_features = half(self.driver_features, true),
                    _ => {}
                }
            }
            0x10 => self.config_msix = self.map_vector(v, self.cfg.refuse_config_vector),
            0x14 => self.status_write(v as u8),
            0x16 => self.qsel = v as u16,
            0x18 if q_writable => {
                let s = v as u16;
                if s == 0 || s > self.cfg.queue_max {
                    self.violation(std::format!("queue size {}", s));
                }
                self.q.size = s;
            }
            0x1a if q_writable => self.q.msix = self.map_vector(v, self.cfg.refuse_queue_vector),
            0x1c if q_writable => {
                if v != 1 {
                    self.violation(String::from("queue_enable written with 0"));
                }
                self.enable_queue();
            }
            0x20 if q_writable => self.q.desc = half(self.q.desc, false),
            0x24 if q_writable => self.q.desc = half(self.q.desc, true),
            0x28 if q_writable => self.q.driver = half(self.q.driver, false),
            0x2c if q_writable => self.q.driver = half(self.q.driver, true),
            0x30 if q_writable => self.q.device = half(self.q.device, false),
            0x34 if q_writable => self.q.device = half(self.q.device, true),
            _ => self.violation(std::format!(
                "write of {:#x} to common config {:#x}",
                v,
                off
            )),
        }
    }

    fn status_write(&mut self, v: u8) {
        if v == 0 {
            self.reset();
            return;
        }
        if v & !self.status & DeviceStatus::FEATURES_OK != 0 {
            let f = self.driver_features;
            let ok = !self.cfg.refuse_features_ok
                && f & !self.cfg.offered == 0
                && f & features::VERSION_1 != 0;
            if !ok {
                self.status = v & !DeviceStatus::FEATURES_OK;
                return;
            }
        }
        if v & DeviceStatus::DRIVER_OK != 0 && v & DeviceStatus::FEATURES_OK == 0 {
            self.violation(String::from("DRIVER_OK without FEATURES_OK"));
        }
        self.status = v;
    }

    fn enable_queue(&mut self) {
        let n = self.q.size as usize;
        let ok = self.q.desc.is_multiple_of(16)
            && self.q.driver.is_multiple_of(2)
            && self.q.device.is_multiple_of(4)
            && self.dma.contains(self.q.desc, 16 * n)
            && self.dma.contains(self.q.driver, 6 + 2 * n)
            && self.dma.contains(self.q.device, 6 + 8 * n);
        if !ok || self.status & DeviceStatus::FEATURES_OK == 0 {
            self.violation(String::from(
                "queue enabled with bad rings or before FEATURES_OK",
            ));
        }
        self.q.enabled = true;
    }

    fn mem_read(&mut self, addr: u64, buf: &mut [u8]) -> bool {
        if !self.dma.contains(addr, buf.len()) {
            self.violation(std::format!(
                "DMA read outside memory at {:#x}+{}",
                addr,
                buf.len()
            ));
            return false;
        }
        // SAFETY: checked to lie inside a live FakeDma allocation (phys == virt).
        unsafe { core::ptr::copy_nonoverlapping(addr as *const u8, buf.as_mut_ptr(), buf.len()) };
        true
    }

    fn mem_write(&mut self, addr: u64, data: &[u8]) -> bool {
        if !self.dma.contains(addr, data.len()) {
            self.violation(std::format!(
                "DMA write outside memory at {:#x}+{}",
                addr,
                data.len()
            ));
            return false;
        }
        // SAFETY: as in `mem_read`.
        unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), addr as *mut u8, data.len()) };
        true
    }

    fn read16(&mut self, addr: u64) -> u16 {
        let mut b = [0; 2];
        self.mem_read(addr, &mut b);
        u16::from_le_bytes(b)
    }

    /// Consumes every new avail entry and publishes the used elements.
    fn process(&mut self) {
        let size = self.q.size;
        let avail_idx = self.read16(self.q.driver + 2);
        let outstanding = avail_idx.wrapping_sub(self.q.last_avail) as usize;
        if outstanding > size as usize {
            self.violation(std::format!(
                "{} chains published on a queue of {}",
                outstanding,
                size
            ));
            return;
        }
        self.max_outstanding = self.max_outstanding.max(outstanding);
        let mut done = Vec::new();
        while self.q.last_avail != avail_idx {
            let slot = self.q.driver + 4 + 2 * (self.q.last_avail % size) as u64;
            let head = self.read16(slot);
            let written = self.run_chain(head);
            done.push((head, written));
            self.q.last_avail = self.q.last_avail.wrapping_add(1);
        }
        if self.cfg.reverse {
            done.reverse();
        }
        for (head, written) in done {
            let elem = self.q.device + 4 + 8 * (self.q.used_idx % size) as u64;
            let mut e = [0u8; 8];
            e[..4].copy_from_slice(&(head as u32).to_le_bytes());
            e[4..].copy_from_slice(&written.to_le_bytes());
            self.mem_write(elem, &e);
            self.q.used_idx = self.q.used_idx.wrapping_add(1);
            let idx = self.q.used_idx.to_le_bytes();
            self.mem_write(self.q.device + 2, &idx);
        }
        self.isr |= 1;
    }

    /// Executes one request chain; returns the bytes written into device-writable buffers.
    fn run_chain(&mut self, head: u16) -> u32 {
        let size = self.q.size;
        let mut segs = Vec::new();
        let mut id = head;
        let mut ended = false;
        for _ in 0..size {
            if id >= size {
                self.violation(std::format!("descriptor {} out of range", id));
                return 0;
            }
            let mut d = [0u8; 16];
            self.mem_read(self.q.desc + 16 * id as u64, &mut d);
            let addr = u64::from_le_bytes(d[0..8].try_into().unwrap());
            let len = u32::from_le_bytes(d[8..12].try_into().unwrap()) as usize;
            let flags = u16::from_le_bytes([d[12], d[13]]);
            segs.push((addr, len, flags & 2 != 0));
            if flags & 1 == 0 {
                ended = true;
                break;
            }
            id = u16::from_le_bytes([d[14], d[15]]);
        }
        if !ended || segs.len() < 2 {
            self.violation(String::from("malformed chain"));
            return 0;
        }
        let (hdr_addr, hdr_len, hdr_w) = segs[0];
        let (st_addr, st_len, st_w) = segs[segs.len() - 1];
        if hdr_len != 16 || hdr_w || st_len != 1 || !st_w {
            self.violation(String::from("bad header or status descriptor"));
            return 0;
        }
        let data: Vec<(u64, usize, bool)> = segs[1..segs.len() - 1].to_vec();
        let mut hdr = [0u8; 16];
        self.mem_read(hdr_addr, &mut hdr);
        let kind = u32::from_le_bytes(hdr[0..4].try_into().unwrap());
        let unit = u64::from_le_bytes(hdr[8..16].try_into().unwrap());
        let bytes: usize = data.iter().map(|s| s.1).sum();
        if self.cfg.size_max != 0 && data.iter().any(|s| s.1 > self.cfg.size_max as usize) {
            self.violation(String::from("segment larger than size_max"));
        }
        if data.len() > self.cfg.seg_max as usize {
            self.violation(String::from("more segments than seg_max"));
        }
        self.requests.push(Request {
            kind,
            unit,
            bytes,
            data_segs: data.len(),
            data_addr: data.first().map_or(0, |s| s.0),
        });
        let mut written = 0u32;
        let in_range = |d: &Self| {
            let start = unit.checked_mul(512).map(|s| s as usize);
            let bad = d
                .cfg
                .bad_unit
                .is_some_and(|b| b >= unit && b < unit + bytes.div_ceil(512) as u64);
            match start {
                Some(s) if s + bytes <= d.disk.len() && !bad => Some(s),
                _ => None,
            }
        };
        let status = match kind {
            0 | 1 if !bytes.is_multiple_of(512) => 1,
            0 => match in_range(self) {
                Some(mut pos) if data.iter().all(|s| s.2) => {
                    for (addr, len, _) in data {
                        let chunk = self.disk[pos..pos + len].to_vec();
                        self.mem_write(addr, &chunk);
                        pos += len;
                        written += len as u32;
                    }
                    0
                }
                _ => 1,
            },
            1 => match in_range(self) {
                _ if self.driver_features & bf::RO != 0 => 1,
                Some(mut pos) if data.iter().all(|s| !s.2) => {
                    for (addr, len, _) in data {
                        let mut chunk = vec![0u8; len];
                        self.mem_read(addr, &mut chunk);
                        self.disk[pos..pos + len].copy_from_slice(&chunk);
                        pos += len;
                    }
                    0
                }
                _ => 1,
            },
            4 if self.driver_features & bf::FLUSH != 0 && data.is_empty() => 0,
            8 => match (self.cfg.serial, data.first()) {
                (Some(s), Some(&(addr, len, true))) if len >= 20 => {
                    let mut id = [0u8; 20];
                    id[..s.len().min(20)].copy_from_slice(&s[..s.len().min(20)]);
                    self.mem_write(addr, &id);
                    written += 20;
                    0
                }
                _ => 2,
            },
            _ => 2,
        };
        self.mem_write(st_addr, &[status]);
        written + 1
    }
}

/// A register window onto one of the fake BARs.
struct FakeWindow {
    dev: Arc<Mutex<FakeBlkDevice>>,
    /// 1: the MSI-X BAR; 4: the virtio structures.
    bar: u8,
    base: u64,
    len: usize,
}

impl FakeWindow {
    fn ok(&self, off: usize, size: usize) -> bool {
        off.is_multiple_of(size) && off + size <= self.len
    }
    fn rd(&self, off: usize, size: usize) -> u64 {
        if !self.ok(off, size) {
            return u64::MAX;
        }
        let mut d = self.dev.lock().unwrap();
        let at = self.base + off as u64;
        match self.bar {
            1 => d.msix_read(at as usize),
            _ => d.read(at, size),
        }
    }
    fn wr(&self, off: usize, size: usize, v: u64) {
        if self.ok(off, size) {
            let mut d = self.dev.lock().unwrap();
            let at = self.base + off as u64;
            match self.bar {
                1 => d.msix_write(at as usize, v),
                _ => d.write(at, v),
            }
        }
    }
}

impl Mmio for FakeWindow {
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
        self.rd(off, 4) as u32
    }
    fn write8(&self, off: usize, v: u8) {
        self.wr(off, 1, v as u64)
    }
    fn write16(&self, off: usize, v: u16) {
        self.wr(off, 2, v as u64)
    }
    fn write32(&self, off: usize, v: u32) {
        self.wr(off, 4, v as u64)
    }
}

/// Maps windows of the fake BAR1 (MSI-X) and BAR4 (virtio structures).
pub struct FakeMapper {
    dev: Arc<Mutex<FakeBlkDevice>>,
}

impl FakeMapper {
    pub fn blk(cfg: BlkConfig, dma: &'static FakeDma) -> (FakeMapper, Arc<Mutex<FakeBlkDevice>>) {
        let dev = Arc::new(Mutex::new(FakeBlkDevice::new(cfg, dma)));
        (FakeMapper { dev: dev.clone() }, dev)
    }
}

impl BarMapper for FakeMapper {
    fn map_mmio(&self, phys: u64, len: usize) -> Option<MmioBox> {
        let end = phys.checked_add(len as u64)?;
        let (bar, base) = [(1, MSIX_BAR_BASE, MSIX_BAR_LEN), (4, BAR_BASE, BAR_LEN)]
            .into_iter()
            .find(|(_, b, l)| phys >= *b && end <= b + l)
            .map(|(bar, b, _)| (bar, phys - b))?;
        Some(Box::new(FakeWindow {
            dev: self.dev.clone(),
            bar,
            base,
            len,
        }))
    }
}

/// The vector `FakeIrq` gives an INTx line.
pub const INTX_VECTOR: u8 = 0x24;
/// The first vector `FakeIrq` gives for MSI-X; the next ones follow.
pub const MSI_VECTOR_BASE: u8 = 0x30;
const MSI_VECTORS: usize = 8;
/// Where MSI messages go on x86 (Intel SDM Vol. 3A §11.11.1): APIC ID 0, fixed delivery.
const MSI_ADDRESS: u64 = 0xfee0_0000;

/// What the fake interrupt layer handed out and saw.
#[derive(Debug, Default)]
pub struct IrqState {
    /// MSI vectors `alloc_msi` may still hand out.
    pub msi_left: usize,
    /// Whether `alloc_intx` knows the function's INTx route.
    pub intx_routed: bool,
    /// Vectors handed out and not freed: owner, label, vector, message.
    pub live: Vec<(IrqOwner, String, u8, MsiMessage)>,
    /// Vectors freed, in order.
    pub freed: Vec<u8>,
    next: usize,
    /// MSI-X messages the device sent that match no live vector.
    pub stray: Vec<MsiMessage>,
    /// Messages held back by a mask, per entry.
    pub masked: u64,
}

/// A fake interrupt layer for one [`FakeBlk`]. Its `wait_for` is where the device works: it
/// runs the requests the device deferred and delivers the interrupt the device raises: with
/// MSI-X on, the message in the table entry the device was told to use (matched to a live
/// vector, or recorded as stray; held back while masked); with MSI-X off, the INTx line,
/// level-triggered: it fires on every wait while ISR is set and INTx is not disabled.
pub struct FakeIrq {
    dev: Arc<Mutex<FakeBlkDevice>>,
    cfg: FakePciConfig,
    /// Events of vectors MSI_VECTOR_BASE.., then the INTx one.
    events: &'static [IrqEvent; MSI_VECTORS + 1],
    pub state: Mutex<IrqState>,
}

impl FakeIrq {
    /// An interrupt layer with `msi` MSI vectors to give and, if `intx`, the INTx route.
    pub fn leaked(blk: &FakeBlk, msi: usize, intx: bool) -> &'static FakeIrq {
        let events = Box::leak(Box::new([const { IrqEvent::new() }; MSI_VECTORS + 1]));
        Box::leak(Box::new(FakeIrq {
            dev: blk.dev.clone(),
            cfg: blk.cfg.clone(),
            events,
            state: Mutex::new(IrqState {
                msi_left: msi,
                intx_routed: intx,
                ..Default::default()
            }),
        }))
    }

    /// The event of `vector`.
    pub fn event(&self, vector: u8) -> &'static IrqEvent {
        let events: &'static [IrqEvent; MSI_VECTORS + 1] = self.events;
        match vector {
            INTX_VECTOR => &events[MSI_VECTORS],
            v => &events[(v.wrapping_sub(MSI_VECTOR_BASE) as usize).min(MSI_VECTORS)],
        }
    }

    /// Vectors handed out and not freed.
    pub fn live(&self) -> Vec<u8> {
        self.state
            .lock()
            .unwrap()
            .live
            .iter()
            .map(|l| l.2)
            .collect()
    }

    /// The device changes its configuration and interrupts for it.
    pub fn config_change(&self) {
        let entry = self.dev.lock().unwrap().config_change();
        self.raise(Some(entry));
    }

    fn raise(&self, entry: Option<u16>) {
        if self.cfg.msix_control() & 0x8000 != 0 {
            if let Some(e) = entry {
                self.send_msix(e);
            }
            return;
        }
        let asserted = self.dev.lock().unwrap().isr_status() != 0;
        let intx_on = self.cfg.command() & (1 << 10) == 0;
        let routed = self.live().contains(&INTX_VECTOR);
        if asserted && intx_on && routed {
            self.event(INTX_VECTOR).signal();
        }
    }

    fn send_msix(&self, entry: u16) {
        if entry == VIRTIO_MSI_NO_VECTOR {
            return;
        }
        let mut d = self.dev.lock().unwrap();
        let Some(e) = d.msix_table.get(entry as usize).copied() else {
            d.violation(std::format!("interrupt on MSI-X entry {}", entry));
            return;
        };
        let function_masked = self.cfg.msix_control() & 0x4000 != 0;
        if function_masked || e[3] & 1 != 0 {
            d.msix_pending |= 1 << entry;
            self.state.lock().unwrap().masked += 1;
            return;
        }
        drop(d);
        let msg = MsiMessage {
            address: (e[1] as u64) << 32 | e[0] as u64,
            data: e[2],
        };
        let mut st = self.state.lock().unwrap();
        match st.live.iter().find(|l| l.3 == msg).map(|l| l.2) {
            Some(v) => self.event(v).signal(),
            None => st.stray.push(msg),
        }
    }
}

impl Interrupts for FakeIrq {
    fn alloc_msi(&self, owner: IrqOwner, _: Mechanism, label: &str) -> Option<IrqVector> {
        let mut st = self.state.lock().unwrap();
        if st.msi_left == 0 || st.next >= MSI_VECTORS {
            return None;
        }
        st.msi_left -= 1;
        let vector = MSI_VECTOR_BASE + st.next as u8;
        st.next += 1;
        let message = MsiMessage {
            address: MSI_ADDRESS,
            data: vector as u32,
        };
        st.live.push((owner, String::from(label), vector, message));
        Some(IrqVector {
            vector,
            apic_id: 0,
            message,
            event: self.event(vector),
        })
    }

    fn alloc_intx(&self, owner: IrqOwner, pin: u8, label: &str) -> Option<IrqVector> {
        let mut st = self.state.lock().unwrap();
        if !st.intx_routed || pin != 1 {
            return None;
        }
        let message = MsiMessage {
            address: 0,
            data: 0,
        };
        st.live
            .push((owner, String::from(label), INTX_VECTOR, message));
        Some(IrqVector {
            vector: INTX_VECTOR,
            apic_id: 0,
            message,
            event: self.event(INTX_VECTOR),
        })
    }

    fn free(&self, v: &IrqVector) {
        let mut st = self.state.lock().unwrap();
        match st.live.iter().position(|l| l.2 == v.vector) {
            Some(i) => {
                st.live.remove(i);
                st.freed.push(v.vector);
            }
            None => panic!("FakeIrq: free of vector {:#x} not handed out", v.vector),
        }
    }

    fn wait_for(&self, event: &IrqEvent, seen: u64) {
        if event.count() != seen {
            return;
        }
        let entry = self.dev.lock().unwrap().run();
        self.raise(entry);
    }
}

/// Everything a test needs to bring up a virtio-blk driver on the fake.
pub struct FakeBlk {
    pub cfg: FakePciConfig,
    pub mapper: FakeMapper,
    pub dev: Arc<Mutex<FakeBlkDevice>>,
    pub dma: &'static FakeDma,
    pub clock: &'static FakeClock,
}

impl FakeBlk {
    pub fn new(cfg: BlkConfig) -> Self {
        let dma = FakeDma::leaked();
        let (mapper, dev) = FakeMapper::blk(cfg, dma);
        FakeBlk {
            cfg: FakePciConfig::virtio_blk(),
            mapper,
            dev,
            dma,
            clock: FakeClock::leaked(1_000),
        }
    }

    /// Probes the fake function as the kernel would, without an interrupt layer.
    pub fn probe(&self) -> crate::Probed {
        self.probe_with(None)
    }

    /// Probes the fake function as the kernel would, at [`fake_bdf`].
    pub fn probe_with(&self, irq: Option<&'static dyn Interrupts>) -> crate::Probed {
        crate::probe(
            fake_bdf(),
            &self.cfg,
            &self.mapper,
            self.dma,
            self.clock,
            irq,
        )
        .expect("fake is a virtio function")
    }

    /// A polling driver, built directly on the transport.
    pub fn driver(&self) -> Result<crate::VirtioBlk, crate::VirtioError> {
        let t = crate::VirtioPci::new(&self.cfg, &self.mapper)?;
        crate::VirtioBlk::new(t, self.dma, crate::Wakeup::polling(self.clock))
    }
}
