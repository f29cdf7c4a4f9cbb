//! A fake virtio-blk PCI function for host tests: config space with vendor capabilities, a
//! 64-bit BAR whose register windows emulate the common configuration semantics, and a block
//! device model that walks the split virtqueue in (fake) DMA memory when its doorbell rings.
//!
//! DMA memory is ordinary heap memory whose "physical" address is its virtual address; the
//! device checks that every address the driver hands it lies inside a live allocation, or inside
//! a caller's buffer that `FakeDma::dma_address` named (when `direct` is on).
use crate::features::{self, blk as bf};
use crate::monitor::DeviceStatus;
use crate::pci::{BarMapper, MmioBox};
use capmon_hal::{Clock, Dma, DmaBuf, Mmio, PciConfig};
use std::alloc::Layout;
use std::boxed::Box;
use std::string::String;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
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

/// Heap memory standing in for DMA memory.
#[derive(Default)]
pub struct FakeDma {
    live: Mutex<Vec<(usize, usize, usize)>>,
    /// Allocations larger than this fail (to exercise fallbacks).
    pub max_alloc: AtomicU64,
    /// Whether `dma_address` names callers' buffers (like the kernel's direct map), rather
    /// than refusing them (the trait's default).
    pub direct: AtomicBool,
    /// Ranges `dma_address` named, which the device may then reach.
    granted: Mutex<Vec<(usize, usize)>>,
}

impl FakeDma {
    pub fn leaked() -> &'static FakeDma {
        let d = Box::leak(Box::new(FakeDma::default()));
        d.max_alloc.store(u64::MAX, Ordering::Relaxed);
        d
    }

    /// Live allocations.
    pub fn live(&self) -> usize {
        self.live.lock().unwrap().len()
    }

    /// Whether `addr .. addr+len` lies inside one live allocation or one granted range.
    pub fn contains(&self, addr: u64, len: usize) -> bool {
        let a = addr as usize;
        let inside = |p: usize, l: usize| a >= p && a.checked_add(len).is_some_and(|e| e <= p + l);
        self.live
            .lock()
            .unwrap()
            .iter()
            .any(|(p, l, _)| inside(*p, *l))
            || self
                .granted
                .lock()
                .unwrap()
                .iter()
                .any(|(p, l)| inside(*p, *l))
    }
}

impl Dma for FakeDma {
    fn alloc(&self, len: usize, align: usize) -> Option<DmaBuf> {
        if len as u64 > self.max_alloc.load(Ordering::Relaxed) {
            return None;
        }
        let layout = Layout::from_size_align(len.max(1), align.max(1)).ok()?;
        // SAFETY: the layout has a non-zero size.
        let p = unsafe { std::alloc::alloc_zeroed(layout) };
        if p.is_null() {
            return None;
        }
        self.live
            .lock()
            .unwrap()
            .push((p as usize, layout.size(), layout.align()));
        Some(DmaBuf {
            virt: p,
            phys: p as u64,
            len,
        })
    }

    fn free(&self, buf: DmaBuf) {
        let mut live = self.live.lock().unwrap();
        let i = live
            .iter()
            .position(|(p, _, _)| *p == buf.virt as usize)
            .expect("FakeDma: free of a buffer it did not allocate");
        let (p, l, a) = live.swap_remove(i);
        // SAFETY: allocated above with this exact layout, and removed from `live` once.
        unsafe { std::alloc::dealloc(p as *mut u8, Layout::from_size_align(l, a).unwrap()) };
    }

    fn dma_address(&self, virt: *const u8, len: usize) -> Option<u64> {
        if !self.direct.load(Ordering::Relaxed) {
            return None;
        }
        self.granted.lock().unwrap().push((virt as usize, len));
        Some(virt as u64)
    }
}

/// A clock that advances `step` nanoseconds on every read.
pub struct FakeClock {
    now: AtomicU64,
    step: u64,
}

impl FakeClock {
    pub fn new(step: u64) -> Self {
        FakeClock {
            now: AtomicU64::new(0),
            step,
        }
    }

    pub fn leaked(step: u64) -> &'static FakeClock {
        Box::leak(Box::new(FakeClock::new(step)))
    }
}

impl Clock for FakeClock {
    fn now_ns(&self) -> u64 {
        self.now.fetch_add(self.step, Ordering::Relaxed)
    }
}

/// 256 bytes of config space of a modern virtio-blk function (device ID 0x1042): an MSI-X
/// capability, then common, notify, ISR and device capabilities, all in BAR4.
pub struct FakePciConfig {
    space: Mutex<[u8; 256]>,
    status_writes: AtomicU32,
}

impl FakePciConfig {
    pub fn virtio_blk() -> Self {
        let c = FakePciConfig {
            space: Mutex::new([0; 256]),
            status_writes: AtomicU32::new(0),
        };
        c.poke32(0x00, 0x1042_1af4);
        c.poke32(0x04, 0x0010_0000); // status: capability list
        c.poke32(0x08, 0x0100_0000); // class: mass storage
        c.poke32(0x20, BAR_BASE as u32 | 0x4); // BAR4: 64-bit memory
        c.poke32(0x24, (BAR_BASE >> 32) as u32);
        c.poke32(0x2c, 0x0002_1af4); // subsystem: virtio type 2
        c.poke8(0x34, 0x40);
        c.poke32(0x40, 0x0000_5011); // MSI-X, next 0x50
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
}

impl FakeBlkDevice {
    fn new(cfg: BlkConfig, dma: &'static FakeDma) -> Self {
        let disk = (0..cfg.units as usize * 512)
            .map(|i| (i * 7 + i / 512) as u8)
            .collect();
        let q = Queue {
            size: cfg.queue_max,
            msix: 0,
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
            config_msix: 0,
            qsel: 0,
            q,
            isr: 0,
            requests: Vec::new(),
            notifies: 0,
            violations: Vec::new(),
            max_outstanding: 0,
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
        self.q = Queue {
            size: self.cfg.queue_max,
            ..Default::default()
        };
        self.isr = 0;
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
            REGION_ISR => core::mem::take(&mut self.isr) as u64,
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
                    self.process();
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
            0x10 => self.config_msix = v as u16,
            0x14 => self.status_write(v as u8),
            0x16 => self.qsel = v as u16,
            0x18 if q_writable => {
                let s = v as u16;
                if s == 0 || s > self.cfg.queue_max {
                    self.violation(std::format!("queue size {}", s));
                }
                self.q.size = s;
            }
            0x1a if self.qsel == 0 => self.q.msix = v as u16,
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
        self.isr = 1;
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

/// A register window onto the fake BAR.
struct FakeWindow {
    dev: Arc<Mutex<FakeBlkDevice>>,
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
        self.dev.lock().unwrap().read(self.base + off as u64, size)
    }
    fn wr(&self, off: usize, size: usize, v: u64) {
        if self.ok(off, size) {
            self.dev.lock().unwrap().write(self.base + off as u64, v);
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

/// Maps windows of the fake BAR4.
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
        if phys < BAR_BASE || end > BAR_BASE + BAR_LEN {
            return None;
        }
        Some(Box::new(FakeWindow {
            dev: self.dev.clone(),
            base: phys - BAR_BASE,
            len,
        }))
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

    /// Probes the fake function as the kernel would.
    pub fn probe(&self) -> crate::Probed {
        crate::probe(&self.cfg, &self.mapper, self.dma, self.clock)
            .expect("fake is a virtio function")
    }

    pub fn driver(&self) -> Result<crate::VirtioBlk, crate::VirtioError> {
        let t = crate::VirtioPci::new(&self.cfg, &self.mapper)?;
        crate::VirtioBlk::new(t, self.dma, Box::new(crate::Polling::new(self.clock)))
    }
}
