//! An in-memory PCI machine for host tests: config spaces with per-bit write masks (so BAR
//! sizing behaves like hardware), reached through fake legacy ports and fake ECAM windows,
//! and fake MMIO windows (an MSI-X table, a PBA). Every write is logged in order, config and
//! MMIO in one log, so tests can check register sequences.
//!
//! Built only for tests and with the `fake` feature; the kernel never enables it.
use crate::access::{EcamRegion, EcamWindow, LegacyPorts};
use crate::{Bdf, Pci, PciError};
use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use capmon_hal::{Mmio, PortIo};
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

/// One write a test can check, in the order it happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FakeWrite {
    /// `len` bytes of config space at `off` (as the access mechanism delivered them).
    Config {
        bdf: Bdf,
        off: u16,
        len: u8,
        value: u32,
    },
    /// A dword (or narrower) write into a fake MMIO window named `window`.
    Mmio {
        window: &'static str,
        off: usize,
        value: u32,
    },
}

/// The write log shared by a machine and the MMIO windows of a test.
pub type WriteLog = Arc<spin::Mutex<Vec<FakeWrite>>>;

/// One function's config space.
#[derive(Clone)]
pub struct FakeFunction {
    cfg: Vec<u8>,
    /// Bits software may change; everything else is read-only.
    wmask: Vec<u8>,
    /// 256 for conventional functions (ECAM reads all-ones above), 4096 for PCIe ones.
    size: usize,
}

impl FakeFunction {
    /// A type 0 function with IDs and class (base, sub, prog-if). The command register's
    /// I/O, memory and bus-master bits start set, as firmware leaves them.
    pub fn new(vendor: u16, device: u16, class: (u8, u8, u8)) -> Self {
        let mut f = FakeFunction {
            cfg: vec![0; 4096],
            wmask: vec![0; 4096],
            size: 256,
        };
        f.set16(0x00, vendor);
        f.set16(0x02, device);
        f.set8(0x09, class.2);
        f.set8(0x0a, class.1);
        f.set8(0x0b, class.0);
        f.set16(0x04, 0x0007);
        f.mask16(0x04, 0x0547);
        f.mask8(0x3c, 0xff);
        f
    }

    /// A type 1 bridge leading to `secondary..=subordinate`.
    pub fn bridge(vendor: u16, device: u16, primary: u8, secondary: u8, subordinate: u8) -> Self {
        let mut f = FakeFunction::new(vendor, device, (0x06, 0x04, 0x00));
        f.set8(0x0e, 0x01);
        f.set8(0x18, primary);
        f.set8(0x19, secondary);
        f.set8(0x1a, subordinate);
        f.mask32(0x18, 0x00ff_ffff);
        f
    }

    /// Sets the header type's multi-function bit.
    pub fn multifunction(mut self) -> Self {
        let ht = self.get8(0x0e);
        self.set8(0x0e, ht | 0x80);
        self
    }

    /// A PCI Express function: 4 KiB of config space.
    pub fn express(mut self) -> Self {
        self.size = 4096;
        self
    }

    pub fn revision(mut self, rev: u8) -> Self {
        self.set8(0x08, rev);
        self
    }

    pub fn irq(mut self, line: u8, pin: u8) -> Self {
        self.set8(0x3c, line);
        self.set8(0x3d, pin);
        self
    }

    /// A 32-bit memory BAR (or an I/O BAR with `io`), `size` a power of two.
    pub fn bar32(mut self, index: u8, addr: u32, size: u32, io: bool, prefetch: bool) -> Self {
        let off = 0x10 + 4 * index as usize;
        let flags = if io {
            1
        } else if prefetch {
            8
        } else {
            0
        };
        self.set32(off, addr | flags);
        self.mask32(off, !(size.wrapping_sub(1)) & if io { !3 } else { !0xf });
        self
    }

    /// A 64-bit memory BAR in slots `index` and `index + 1`.
    pub fn bar64(mut self, index: u8, addr: u64, size: u64, prefetch: bool) -> Self {
        let off = 0x10 + 4 * index as usize;
        let flags = 0b100 | if prefetch { 8 } else { 0 };
        let wm = !(size.wrapping_sub(1));
        self.set32(off, addr as u32 | flags);
        self.set32(off + 4, (addr >> 32) as u32);
        self.mask32(off, wm as u32 & !0xf);
        self.mask32(off + 4, (wm >> 32) as u32);
        self
    }

    /// An expansion ROM BAR (type 0 position).
    pub fn rom(mut self, addr: u32, size: u32) -> Self {
        self.set32(0x30, addr);
        self.mask32(0x30, !(size.wrapping_sub(1)) & !0x7ff | 1);
        self
    }

    /// Chains standard capabilities at the given offsets, in order: sets the status bit and
    /// the pointer at 0x34, and each body's next pointer. Bodies start with the ID byte; the
    /// second byte is overwritten with the next pointer.
    pub fn caps(mut self, list: &[(u8, &[u8])]) -> Self {
        let status = self.get16(0x06);
        self.set16(0x06, status | 0x10);
        self.set8(0x34, list.first().map_or(0, |c| c.0));
        for (i, (off, body)) in list.iter().enumerate() {
            self.put(*off as usize, body);
            let next = list.get(i + 1).map_or(0, |c| c.0);
            self.set8(*off as usize + 1, next);
            self.cap_wmask(*off as usize);
        }
        self
    }

    /// MSI and MSI-X capabilities get the bits hardware lets software change (PCI Local Bus
    /// 3.0 §6.8.1, §6.8.2); other capabilities stay read-only.
    fn cap_wmask(&mut self, off: usize) {
        match self.get8(off) {
            0x05 => {
                let ctl = self.get16(off + 2);
                let (addr64, pvm) = (ctl & (1 << 7) != 0, ctl & (1 << 8) != 0);
                // Enable and Multiple Message Enable.
                self.mask16(off + 2, 0x0071);
                self.mask32(off + 4, 0xffff_fffc);
                let data = if addr64 {
                    self.mask32(off + 8, u32::MAX);
                    off + 0x0c
                } else {
                    off + 0x08
                };
                self.mask16(data, 0xffff);
                if pvm {
                    let vectors = 1u64 << ((ctl >> 1) & 7).min(5);
                    self.mask32(data + 4, ((1u64 << vectors) - 1) as u32);
                }
            }
            // Enable and Function Mask; the table size is read-only.
            0x11 => self.mask16(off + 2, 0xc000),
            _ => {}
        }
    }

    /// Chains extended capabilities `(offset, id, version, body after the header)`.
    pub fn ext_caps(mut self, list: &[(u16, u16, u8, &[u8])]) -> Self {
        for (i, (off, id, ver, body)) in list.iter().enumerate() {
            let next = list.get(i + 1).map_or(0, |c| c.0) as u32;
            self.set32(*off as usize, *id as u32 | (*ver as u32) << 16 | next << 20);
            self.put(*off as usize + 4, body);
        }
        self
    }

    /// Writes raw read-only bytes.
    pub fn raw(mut self, off: usize, bytes: &[u8]) -> Self {
        self.put(off, bytes);
        self
    }

    fn put(&mut self, off: usize, bytes: &[u8]) {
        for (i, b) in bytes.iter().enumerate() {
            if let Some(c) = self.cfg.get_mut(off + i) {
                *c = *b;
            }
        }
    }

    pub fn set8(&mut self, off: usize, v: u8) {
        self.put(off, &[v]);
    }
    pub fn set16(&mut self, off: usize, v: u16) {
        self.put(off, &v.to_le_bytes());
    }
    pub fn set32(&mut self, off: usize, v: u32) {
        self.put(off, &v.to_le_bytes());
    }
    fn mask8(&mut self, off: usize, m: u8) {
        if let Some(w) = self.wmask.get_mut(off) {
            *w = m;
        }
    }
    fn mask16(&mut self, off: usize, m: u16) {
        for (i, b) in m.to_le_bytes().iter().enumerate() {
            self.mask8(off + i, *b);
        }
    }
    fn mask32(&mut self, off: usize, m: u32) {
        for (i, b) in m.to_le_bytes().iter().enumerate() {
            self.mask8(off + i, *b);
        }
    }
    fn get8(&self, off: usize) -> u8 {
        self.cfg.get(off).copied().unwrap_or(0xff)
    }
    fn get16(&self, off: usize) -> u16 {
        self.read(off, 2) as u16
    }

    fn read(&self, off: usize, len: usize) -> u32 {
        if off + len > self.size {
            return u32::MAX >> (32 - 8 * len);
        }
        (0..len).fold(0, |v, i| v | (self.get8(off + i) as u32) << (8 * i))
    }

    fn write(&mut self, off: usize, len: usize, v: u32) {
        if off + len > self.size {
            return;
        }
        for i in 0..len {
            let (Some(c), Some(m)) = (self.cfg.get(off + i), self.wmask.get(off + i)) else {
                return;
            };
            let b = (v >> (8 * i)) as u8;
            let n = (c & !m) | (b & m);
            self.set8(off + i, n);
        }
    }
}

/// Counters a test can check.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub legacy_accesses: u32,
    pub ecam_accesses: u32,
    /// All-ones writes to a BAR while the function's I/O or memory decoding was on.
    pub sized_while_decoding: u32,
    /// All-ones writes to a BAR with decoding off.
    pub sized_safely: u32,
}

/// Every function of the fake machine, by (segment, bus, device, function).
#[derive(Default)]
pub struct FakeMachine {
    functions: BTreeMap<(u16, u8, u8, u8), FakeFunction>,
    pub stats: Stats,
    /// Every config write to a present function, in order.
    pub log: WriteLog,
}

impl FakeMachine {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, seg: u16, bus: u8, dev: u8, func: u8, f: FakeFunction) {
        self.functions.insert((seg, bus, dev, func), f);
    }

    fn key(bdf: Bdf) -> (u16, u8, u8, u8) {
        (bdf.segment, bdf.bus, bdf.device(), bdf.function())
    }

    /// Reads `len` bytes; all-ones where nothing answers.
    pub fn read(&self, bdf: Bdf, off: usize, len: usize) -> u32 {
        match self.functions.get(&Self::key(bdf)) {
            Some(f) => f.read(off, len),
            None => u32::MAX >> (32 - 8 * len),
        }
    }

    pub fn write(&mut self, bdf: Bdf, off: usize, len: usize, v: u32) {
        let Some(f) = self.functions.get_mut(&Self::key(bdf)) else {
            return;
        };
        self.log.lock().push(FakeWrite::Config {
            bdf,
            off: off as u16,
            len: len as u8,
            value: v,
        });
        let is_bar = (0x10..0x28).contains(&off) || off == 0x30;
        if is_bar && len == 4 && v & 0xffff_f800 == 0xffff_f800 {
            if f.read(0x04, 2) & 3 != 0 {
                self.stats.sized_while_decoding += 1;
            } else {
                self.stats.sized_safely += 1;
            }
        }
        f.write(off, len, v);
    }

    /// Replaces the write mask of a dword (to model odd hardware).
    pub fn set_wmask32(&mut self, bdf: Bdf, off: usize, mask: u32) {
        if let Some(f) = self.functions.get_mut(&Self::key(bdf)) {
            f.mask32(off, mask);
        }
    }

    /// Config dword of a function, for assertions.
    pub fn peek32(&self, bdf: Bdf, off: usize) -> u32 {
        self.read(bdf, off, 4)
    }

    /// Builds a `Pci` over this machine: legacy ports if `legacy`, and one ECAM window on
    /// segment 0 for each `(start_bus, end_bus)` in `ecam`.
    pub fn into_pci(self, legacy: bool, ecam: &[(u16, u8, u8)]) -> Result<(Pci, Shared), PciError> {
        let shared = Shared(Arc::new(spin::Mutex::new(self)));
        let ports = legacy.then(|| LegacyPorts::new(Box::new(FakePorts::new(shared.clone()))));
        let windows: Vec<EcamWindow> = ecam
            .iter()
            .map(|(segment, start, end)| {
                let region = EcamRegion {
                    base: 0xb000_0000,
                    segment: *segment,
                    start_bus: *start,
                    end_bus: *end,
                };
                let mmio = FakeEcam {
                    m: shared.clone(),
                    region,
                };
                EcamWindow::with_mmio(region, Box::new(mmio))
            })
            .collect::<Result<_, _>>()?;
        Ok((Pci::new(ports, windows)?, shared))
    }
}

/// The machine, shared between the fake ports, the fake ECAM windows and the test.
#[derive(Clone)]
pub struct Shared(pub Arc<spin::Mutex<FakeMachine>>);

impl Shared {
    pub fn stats(&self) -> Stats {
        self.0.lock().stats
    }
    pub fn peek32(&self, bdf: Bdf, off: usize) -> u32 {
        self.0.lock().peek32(bdf, off)
    }
    /// The machine's write log, to share with fake MMIO windows.
    pub fn log(&self) -> WriteLog {
        self.0.lock().log.clone()
    }
    /// Takes the writes logged so far.
    pub fn take_writes(&self) -> Vec<FakeWrite> {
        core::mem::take(&mut *self.log().lock())
    }
}

/// A fake MMIO window (an MSI-X table, a PBA): little-endian bytes, writes logged into a
/// shared [`WriteLog`]. Out-of-window or misaligned accesses read all-ones and drop writes,
/// as `hal::Mmio` requires; `gone` makes the whole window behave so (a vanished function).
pub struct FakeMmio {
    name: &'static str,
    mem: spin::Mutex<Vec<u8>>,
    log: WriteLog,
    pub gone: AtomicBool,
}

impl FakeMmio {
    pub fn new(name: &'static str, len: usize, log: WriteLog) -> Self {
        FakeMmio {
            name,
            mem: spin::Mutex::new(vec![0; len]),
            log,
            gone: AtomicBool::new(false),
        }
    }

    /// An MSI-X table of `entries`, each masked as after reset (§6.8.2.9).
    pub fn msix_table(entries: u16, log: WriteLog) -> Self {
        let t = FakeMmio::new("table", entries as usize * 16, log);
        for e in 0..entries as usize {
            t.poke32(e * 16 + 12, 1);
        }
        t
    }

    /// Sets a dword without logging (device-side state).
    pub fn poke32(&self, off: usize, v: u32) {
        if let Some(b) = self.mem.lock().get_mut(off..off + 4) {
            b.copy_from_slice(&v.to_le_bytes());
        }
    }

    pub fn peek32(&self, off: usize) -> u32 {
        self.rd(off, 4) as u32
    }

    fn ok(&self, off: usize, size: usize) -> bool {
        !self.gone.load(Ordering::Relaxed)
            && off.is_multiple_of(size)
            && off.checked_add(size).is_some_and(|e| e <= self.len())
    }

    fn rd(&self, off: usize, size: usize) -> u64 {
        if !self.ok(off, size) {
            return u64::MAX;
        }
        let mem = self.mem.lock();
        (0..size).fold(0, |v, i| v | (mem[off + i] as u64) << (8 * i))
    }

    fn wr(&self, off: usize, size: usize, v: u64) {
        if !self.ok(off, size) {
            return;
        }
        self.log.lock().push(FakeWrite::Mmio {
            window: self.name,
            off,
            value: v as u32,
        });
        let mut mem = self.mem.lock();
        for i in 0..size {
            mem[off + i] = (v >> (8 * i)) as u8;
        }
    }
}

impl Mmio for FakeMmio {
    fn len(&self) -> usize {
        self.mem.lock().len()
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

/// Bytes of an MSI capability (PCI Local Bus 3.0 §6.8.1) with Multiple Message Capable
/// `mmc_log2`, disabled, address and data zero.
pub fn msi_cap(addr64: bool, per_vector_mask: bool, mmc_log2: u8) -> Vec<u8> {
    let ctl = (mmc_log2 as u16 & 7) << 1 | (addr64 as u16) << 7 | (per_vector_mask as u16) << 8;
    let len = match (addr64, per_vector_mask) {
        (false, false) => 0x0a,
        (true, false) => 0x0e,
        (false, true) => 0x14,
        (true, true) => 0x18,
    };
    let mut v = vec![0u8; len];
    v[0] = 0x05;
    v[2..4].copy_from_slice(&ctl.to_le_bytes());
    v
}

/// Bytes of an MSI-X capability (§6.8.2): `entries` table entries at BAR `table.0` + `table.1`,
/// the PBA at BAR `pba.0` + `pba.1`; disabled.
pub fn msix_cap(entries: u16, table: (u8, u32), pba: (u8, u32)) -> Vec<u8> {
    let mut v = vec![0x11, 0];
    v.extend_from_slice(&(entries.wrapping_sub(1) & 0x7ff).to_le_bytes());
    v.extend_from_slice(&(table.1 | table.0 as u32).to_le_bytes());
    v.extend_from_slice(&(pba.1 | pba.0 as u32).to_le_bytes());
    v
}

/// Ports 0xCF8/0xCFC..0xCFF of the fake machine.
pub struct FakePorts {
    m: Shared,
    address: AtomicU32,
}

impl FakePorts {
    pub fn new(m: Shared) -> Self {
        FakePorts {
            m,
            address: AtomicU32::new(0),
        }
    }

    /// The function and offset the latched address selects for a data-port access.
    fn target(&self, port: u16) -> Option<(Bdf, usize)> {
        let a = self.address.load(Ordering::Relaxed);
        if a & 0x8000_0000 == 0 || !(0xcfc..=0xcff).contains(&port) {
            return None;
        }
        let bdf = Bdf::new(
            0,
            (a >> 16) as u8,
            ((a >> 11) & 0x1f) as u8,
            ((a >> 8) & 7) as u8,
        )?;
        Some((bdf, (a & 0xfc) as usize + (port - 0xcfc) as usize))
    }

    fn rd(&self, port: u16, len: usize) -> u32 {
        if port == 0xcf8 && len == 4 {
            return self.address.load(Ordering::Relaxed);
        }
        let mut m = self.m.0.lock();
        m.stats.legacy_accesses += 1;
        match self.target(port) {
            Some((bdf, off)) => m.read(bdf, off, len),
            None => u32::MAX >> (32 - 8 * len),
        }
    }

    fn wr(&self, port: u16, len: usize, v: u32) {
        if port == 0xcf8 && len == 4 {
            self.address.store(v, Ordering::Relaxed);
            return;
        }
        let mut m = self.m.0.lock();
        m.stats.legacy_accesses += 1;
        if let Some((bdf, off)) = self.target(port) {
            m.write(bdf, off, len, v);
        }
    }
}

impl PortIo for FakePorts {
    fn inb(&self, port: u16) -> u8 {
        self.rd(port, 1) as u8
    }
    fn inw(&self, port: u16) -> u16 {
        self.rd(port, 2) as u16
    }
    fn inl(&self, port: u16) -> u32 {
        self.rd(port, 4)
    }
    fn outb(&self, port: u16, v: u8) {
        self.wr(port, 1, v as u32)
    }
    fn outw(&self, port: u16, v: u16) {
        self.wr(port, 2, v as u32)
    }
    fn outl(&self, port: u16, v: u32) {
        self.wr(port, 4, v)
    }
}

/// One ECAM window of the fake machine.
pub struct FakeEcam {
    m: Shared,
    region: EcamRegion,
}

impl FakeEcam {
    fn target(&self, off: usize, len: usize) -> Option<(Bdf, usize)> {
        if !off.is_multiple_of(len) || off >= self.len() {
            return None;
        }
        let bus = self.region.start_bus as usize + (off >> 20);
        let bdf = Bdf::new(
            self.region.segment,
            bus as u8,
            ((off >> 15) & 0x1f) as u8,
            ((off >> 12) & 7) as u8,
        )?;
        Some((bdf, off & 0xfff))
    }

    fn rd(&self, off: usize, len: usize) -> u32 {
        let mut m = self.m.0.lock();
        m.stats.ecam_accesses += 1;
        match self.target(off, len) {
            Some((bdf, reg)) => m.read(bdf, reg, len),
            None => u32::MAX >> (32 - 8 * len),
        }
    }

    fn wr(&self, off: usize, len: usize, v: u32) {
        let mut m = self.m.0.lock();
        m.stats.ecam_accesses += 1;
        if let Some((bdf, reg)) = self.target(off, len) {
            m.write(bdf, reg, len, v);
        }
    }
}

impl Mmio for FakeEcam {
    fn len(&self) -> usize {
        (self.region.end_bus as usize - self.region.start_bus as usize + 1) << 20
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

/// Little-endian bytes of a virtio_pci_cap (Virtio 1.2 §4.1.4): ID, next, len, type, bar, id,
/// padding, offset, length, then `extra` dwords (the notify multiplier).
pub fn virtio_cap(cfg_type: u8, bar: u8, offset: u32, length: u32, extra: &[u32]) -> Vec<u8> {
    let len = 16 + 4 * extra.len() as u8;
    let mut v = vec![0x09, 0, len, cfg_type, bar, 0, 0, 0];
    v.extend_from_slice(&offset.to_le_bytes());
    v.extend_from_slice(&length.to_le_bytes());
    for e in extra {
        v.extend_from_slice(&e.to_le_bytes());
    }
    v
}

/// A small q35-like machine:
/// - 00:00.0 host bridge 8086:29c0
/// - 00:01.0 VGA 1234:1111: BAR0 mem32 pref 0xfd000000/16M, BAR2 mem32 0xfebf4000/4K, ROM
/// - 00:02.0 virtio-blk 1af4:1042: BAR1 mem32 0xfebf1000/4K, BAR4 mem64 pref 0xfe000000/16K,
///   MSI-X (table BAR1+0, PBA BAR1+0x800, 2 vectors), five virtio capabilities
/// - 00:1c.0 PCIe root port 1b36:000c leading to bus 01, link 2.5GT/s x1, AER
/// - 00:1f.0 ISA bridge 8086:2918 (multi-function), 00:1f.2 SATA 8086:2922 with I/O BAR4
///   0xc040/32, BAR5 mem32 0xfebf2000/4K and MSI, 00:1f.3 SMBus 8086:2930 I/O BAR4 0x700/64
/// - 01:00.0 NVMe 1b36:0010 behind the root port: BAR0 mem64 0xfe800000/16K, PM, MSI-X, PCIe
///   endpoint, device serial number
pub fn sample_machine() -> FakeMachine {
    let mut m = FakeMachine::new();
    m.add(
        0,
        0,
        0,
        0,
        FakeFunction::new(0x8086, 0x29c0, (0x06, 0x00, 0x00)),
    );
    let vga = FakeFunction::new(0x1234, 0x1111, (0x03, 0x00, 0x00))
        .revision(2)
        .bar32(0, 0xfd00_0000, 16 << 20, false, true)
        .bar32(2, 0xfebf_4000, 0x1000, false, false)
        .rom(0xfebe_0000, 0x10000);
    m.add(0, 0, 1, 0, vga);
    let common = virtio_cap(1, 4, 0x0000, 0x1000, &[]);
    let isr = virtio_cap(3, 4, 0x1000, 0x1000, &[]);
    let device = virtio_cap(4, 4, 0x2000, 0x1000, &[]);
    let notify = virtio_cap(2, 4, 0x3000, 0x1000, &[4]);
    let pcicfg = virtio_cap(5, 0, 0, 0, &[0]);
    let msix: &[u8] = &[0x11, 0, 0x01, 0x80, 0x01, 0, 0, 0, 0x01, 0x08, 0, 0];
    let blk = FakeFunction::new(0x1af4, 0x1042, (0x01, 0x00, 0x00))
        .revision(1)
        .irq(11, 1)
        .bar32(1, 0xfebf_1000, 0x1000, false, false)
        .bar64(4, 0xfe00_0000, 0x4000, true)
        .caps(&[
            (0x98, msix),
            (0x84, &pcicfg),
            (0x70, &notify),
            (0x60, &device),
            (0x50, &isr),
            (0x40, &common),
        ]);
    m.add(0, 0, 2, 0, blk);
    // PCIe capability v2, root port, slot; link cap 2.5GT/s x1, link status 2.5GT/s x1.
    let mut pcie_rp = vec![0x10, 0, 0x42, 0x01];
    pcie_rp.resize(0x3c, 0);
    pcie_rp[0x0c] = 0x11;
    pcie_rp[0x12] = 0x11;
    let rp = FakeFunction::bridge(0x1b36, 0x000c, 0, 1, 1)
        .express()
        .caps(&[(0x40, &pcie_rp)])
        .ext_caps(&[(0x100, 0x0001, 2, &[0; 8])]);
    m.add(0, 0, 0x1c, 0, rp);
    m.add(
        0,
        0,
        0x1f,
        0,
        FakeFunction::new(0x8086, 0x2918, (0x06, 0x01, 0x00)).multifunction(),
    );
    let msi: &[u8] = &[0x05, 0, 0x80, 0, 0, 0, 0xe0, 0xfe, 0, 0, 0, 0, 0x21, 0x40];
    let sata = FakeFunction::new(0x8086, 0x2922, (0x01, 0x06, 0x01))
        .multifunction()
        .bar32(4, 0xc040, 0x20, true, false)
        .bar32(5, 0xfebf_2000, 0x1000, false, false)
        .caps(&[(0x80, msi)]);
    m.add(0, 0, 0x1f, 2, sata);
    let smbus = FakeFunction::new(0x8086, 0x2930, (0x0c, 0x05, 0x00))
        .multifunction()
        .bar32(4, 0x700, 0x40, true, false);
    m.add(0, 0, 0x1f, 3, smbus);
    // PCIe v2 endpoint; link cap 8GT/s x4, link status 2.5GT/s x1.
    let mut pcie_ep = vec![0x10, 0, 0x02, 0x00];
    pcie_ep.resize(0x3c, 0);
    pcie_ep[0x0c] = 0x43;
    pcie_ep[0x12] = 0x11;
    let pm: &[u8] = &[0x01, 0, 0x03, 0x00, 0x00, 0x00, 0, 0];
    let nvme_msix: &[u8] = &[0x11, 0, 0x3f, 0x00, 0x00, 0x20, 0, 0, 0x00, 0x30, 0, 0];
    let nvme = FakeFunction::new(0x1b36, 0x0010, (0x01, 0x08, 0x02))
        .express()
        .bar64(0, 0xfe80_0000, 0x4000, false)
        .caps(&[(0x40, pm), (0x60, nvme_msix), (0x80, &pcie_ep)])
        .ext_caps(&[(
            0x100,
            0x0003,
            1,
            &[0x78, 0x56, 0x34, 0x12, 0xf0, 0xde, 0xbc, 0x9a],
        )]);
    m.add(0, 1, 0, 0, nvme);
    m
}
