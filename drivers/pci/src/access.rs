//! Configuration-space access mechanisms: legacy I/O ports 0xCF8/0xCFC and PCIe ECAM.
//!
//! Both implement [`ConfigSpace`]; [`FunctionConfig`] narrows one of them to a single function
//! and implements `hal::PciConfig` for drivers.
use crate::{Bdf, PciError};
use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use capmon_hal::{Mmio, PciConfig, PhysMap, PortIo, RawMmio};
use core::fmt;

/// Config space per function through the legacy mechanism (PCI Local Bus 3.0 §6.1).
pub const LEGACY_CONFIG_SIZE: u16 = 256;
/// Config space per function through ECAM (PCIe Base 4.0 §7.2.2).
pub const ECAM_CONFIG_SIZE: u16 = 4096;

/// The width of one config access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Width {
    Byte,
    Word,
    Dword,
}

impl Width {
    pub const fn bytes(self) -> u16 {
        match self {
            Width::Byte => 1,
            Width::Word => 2,
            Width::Dword => 4,
        }
    }
}

/// Which mechanism reaches config space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessMode {
    /// Configuration mechanism #1: address to port 0xCF8, data through 0xCFC..0xCFF.
    Legacy,
    /// Enhanced configuration access: memory-mapped windows described by ACPI MCFG.
    Ecam,
}

impl fmt::Display for AccessMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AccessMode::Legacy => "legacy",
            AccessMode::Ecam => "ecam",
        })
    }
}

/// The buses of one segment that a mechanism reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BusRange {
    pub segment: u16,
    pub start: u8,
    pub end: u8,
}

/// A config-space access mechanism for every function it reaches.
pub trait ConfigSpace: Send + Sync {
    fn mode(&self) -> AccessMode;
    /// Bytes of config space per function this mechanism reaches (256 or 4096).
    fn size(&self) -> u16;
    /// The segments and buses this mechanism reaches.
    fn bus_ranges(&self) -> Vec<BusRange>;
    /// Whether `bdf`'s segment and bus are reachable.
    fn reaches(&self, bdf: Bdf) -> bool;
    /// A read the caller has validated with [`check`]: aligned, in range, reachable.
    fn read_raw(&self, bdf: Bdf, off: u16, w: Width) -> u32;
    /// A write the caller has validated with [`check`].
    fn write_raw(&self, bdf: Bdf, off: u16, w: Width, v: u32);
}

/// Validates one access: natural alignment, offset within this mechanism's config space, bus
/// reachable.
pub fn check(space: &dyn ConfigSpace, bdf: Bdf, off: u16, w: Width) -> Result<(), PciError> {
    if !off.is_multiple_of(w.bytes()) {
        return Err(PciError::Misaligned { off, width: w });
    }
    if off >= ECAM_CONFIG_SIZE {
        return Err(PciError::OffsetOutOfRange { off });
    }
    if off >= space.size() {
        return Err(PciError::NeedsEcam { off });
    }
    if !space.reaches(bdf) {
        return Err(PciError::NotReachable {
            bdf,
            mode: space.mode(),
        });
    }
    Ok(())
}

/// A checked read.
pub fn read(space: &dyn ConfigSpace, bdf: Bdf, off: u16, w: Width) -> Result<u32, PciError> {
    check(space, bdf, off, w)?;
    Ok(space.read_raw(bdf, off, w))
}

/// A checked write.
pub fn write(
    space: &dyn ConfigSpace,
    bdf: Bdf,
    off: u16,
    w: Width,
    v: u32,
) -> Result<(), PciError> {
    check(space, bdf, off, w)?;
    space.write_raw(bdf, off, w, v);
    Ok(())
}

/// PCI Local Bus 3.0 §3.2.2.3.2: CONFIG_ADDRESS and CONFIG_DATA ports.
const CONFIG_ADDRESS: u16 = 0xcf8;
const CONFIG_DATA: u16 = 0xcfc;
/// CONFIG_ADDRESS bit 31: enable configuration cycles.
const CONFIG_ENABLE: u32 = 1 << 31;

/// Configuration mechanism #1 over x86 I/O ports. Reaches segment 0 only, 256 bytes per function.
pub struct LegacyPorts {
    io: Box<dyn PortIo + Send + Sync>,
    /// The address/data pair is two port accesses; nobody may slip in between.
    pair: spin::Mutex<()>,
}

impl LegacyPorts {
    pub fn new(io: Box<dyn PortIo + Send + Sync>) -> Self {
        LegacyPorts {
            io,
            pair: spin::Mutex::new(()),
        }
    }

    fn address(bdf: Bdf, off: u16) -> u32 {
        CONFIG_ENABLE
            | (bdf.bus as u32) << 16
            | (bdf.device() as u32) << 11
            | (bdf.function() as u32) << 8
            | (off as u32 & 0xfc)
    }
}

impl ConfigSpace for LegacyPorts {
    fn mode(&self) -> AccessMode {
        AccessMode::Legacy
    }
    fn size(&self) -> u16 {
        LEGACY_CONFIG_SIZE
    }
    fn bus_ranges(&self) -> Vec<BusRange> {
        alloc::vec![BusRange {
            segment: 0,
            start: 0,
            end: 255
        }]
    }
    fn reaches(&self, bdf: Bdf) -> bool {
        bdf.segment == 0
    }
    fn read_raw(&self, bdf: Bdf, off: u16, w: Width) -> u32 {
        let _pair = self.pair.lock();
        self.io.outl(CONFIG_ADDRESS, Self::address(bdf, off));
        match w {
            Width::Byte => self.io.inb(CONFIG_DATA + (off & 3)) as u32,
            Width::Word => self.io.inw(CONFIG_DATA + (off & 2)) as u32,
            Width::Dword => self.io.inl(CONFIG_DATA),
        }
    }
    fn write_raw(&self, bdf: Bdf, off: u16, w: Width, v: u32) {
        let _pair = self.pair.lock();
        self.io.outl(CONFIG_ADDRESS, Self::address(bdf, off));
        match w {
            Width::Byte => self.io.outb(CONFIG_DATA + (off & 3), v as u8),
            Width::Word => self.io.outw(CONFIG_DATA + (off & 2), v as u16),
            Width::Dword => self.io.outl(CONFIG_DATA, v),
        }
    }
}

/// One MCFG allocation (PCI Firmware 3.0 §4.1.2): `base` is the address of bus 0's config space
/// even when `start_bus` is higher; bus N lives at `base + N << 20`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EcamRegion {
    pub base: u64,
    pub segment: u16,
    pub start_bus: u8,
    pub end_bus: u8,
}

/// ECAM: 1 MiB per bus, 32 KiB per device, 4 KiB per function (PCIe Base 4.0 §7.2.2).
const ECAM_BUS_SHIFT: u32 = 20;
const ECAM_DEVICE_SHIFT: u32 = 15;
const ECAM_FUNCTION_SHIFT: u32 = 12;

impl EcamRegion {
    /// Physical address and length of the part of the window that covers `start_bus..=end_bus`.
    pub fn window(&self) -> Result<(u64, usize), PciError> {
        if self.start_bus > self.end_bus {
            return Err(PciError::BadEcamRegion {
                region: *self,
                why: "start bus above end bus",
            });
        }
        if self.base & 0xfff != 0 {
            return Err(PciError::BadEcamRegion {
                region: *self,
                why: "base not 4 KiB aligned",
            });
        }
        let len = (self.end_bus as u64 - self.start_bus as u64 + 1) << ECAM_BUS_SHIFT;
        let phys = (self.start_bus as u64) << ECAM_BUS_SHIFT;
        let phys = self
            .base
            .checked_add(phys)
            .filter(|p| p.checked_add(len).is_some());
        match phys {
            Some(p) => Ok((p, len as usize)),
            None => Err(PciError::BadEcamRegion {
                region: *self,
                why: "window wraps the address space",
            }),
        }
    }
}

/// One segment's ECAM window, mapped.
pub struct EcamWindow {
    region: EcamRegion,
    mmio: Box<dyn Mmio + Send + Sync>,
}

impl EcamWindow {
    /// Maps `region`'s buses uncached through `map`.
    pub fn map(map: &dyn PhysMap, region: EcamRegion) -> Result<Self, PciError> {
        let (phys, len) = region.window()?;
        let virt = map
            .map(phys, len, true)
            .ok_or(PciError::MapFailed { phys, len })?;
        // SAFETY: PhysMap::map returned a mapping of `len` bytes at `phys`, uncached, which the
        // kernel keeps for as long as it runs.
        let mmio = unsafe { RawMmio::new(virt, len) };
        Ok(EcamWindow {
            region,
            mmio: Box::new(mmio),
        })
    }

    /// A window over any `Mmio` (a fake in tests); it must cover the region's buses.
    pub fn with_mmio(
        region: EcamRegion,
        mmio: Box<dyn Mmio + Send + Sync>,
    ) -> Result<Self, PciError> {
        let (_, len) = region.window()?;
        if mmio.len() < len {
            return Err(PciError::BadEcamRegion {
                region,
                why: "window smaller than its bus range",
            });
        }
        Ok(EcamWindow { region, mmio })
    }

    pub fn region(&self) -> EcamRegion {
        self.region
    }

    fn covers(&self, bdf: Bdf) -> bool {
        self.region.segment == bdf.segment
            && (self.region.start_bus..=self.region.end_bus).contains(&bdf.bus)
    }

    fn offset(&self, bdf: Bdf, off: u16) -> usize {
        let bus = bdf.bus.wrapping_sub(self.region.start_bus) as usize;
        bus << ECAM_BUS_SHIFT
            | (bdf.device() as usize) << ECAM_DEVICE_SHIFT
            | (bdf.function() as usize) << ECAM_FUNCTION_SHIFT
            | off as usize
    }
}

/// All ECAM windows of the machine.
pub struct Ecam {
    windows: Vec<EcamWindow>,
}

impl Ecam {
    /// Rejects windows that overlap (same segment, shared buses).
    pub fn new(windows: Vec<EcamWindow>) -> Result<Self, PciError> {
        for (i, a) in windows.iter().enumerate() {
            for b in windows.iter().skip(i + 1) {
                let (a, b) = (a.region, b.region);
                if a.segment == b.segment && a.start_bus <= b.end_bus && b.start_bus <= a.end_bus {
                    return Err(PciError::BadEcamRegion {
                        region: b,
                        why: "overlaps another MCFG window",
                    });
                }
            }
        }
        Ok(Ecam { windows })
    }

    fn window(&self, bdf: Bdf) -> Option<&EcamWindow> {
        self.windows.iter().find(|w| w.covers(bdf))
    }
}

impl ConfigSpace for Ecam {
    fn mode(&self) -> AccessMode {
        AccessMode::Ecam
    }
    fn size(&self) -> u16 {
        ECAM_CONFIG_SIZE
    }
    fn bus_ranges(&self) -> Vec<BusRange> {
        self.windows
            .iter()
            .map(|w| BusRange {
                segment: w.region.segment,
                start: w.region.start_bus,
                end: w.region.end_bus,
            })
            .collect()
    }
    fn reaches(&self, bdf: Bdf) -> bool {
        self.window(bdf).is_some()
    }
    fn read_raw(&self, bdf: Bdf, off: u16, w: Width) -> u32 {
        let Some(win) = self.window(bdf) else {
            return u32::MAX;
        };
        let at = win.offset(bdf, off);
        match w {
            Width::Byte => win.mmio.read8(at) as u32,
            Width::Word => win.mmio.read16(at) as u32,
            Width::Dword => win.mmio.read32(at),
        }
    }
    fn write_raw(&self, bdf: Bdf, off: u16, w: Width, v: u32) {
        let Some(win) = self.window(bdf) else { return };
        let at = win.offset(bdf, off);
        match w {
            Width::Byte => win.mmio.write8(at, v as u8),
            Width::Word => win.mmio.write16(at, v as u16),
            Width::Dword => win.mmio.write32(at, v),
        }
    }
}

/// One function's config space through a borrowed mechanism. Invalid accesses (misaligned, out
/// of range, unreachable) read all-ones and drop writes, as `hal::PciConfig` requires.
#[derive(Clone, Copy)]
pub struct FunctionView<'a> {
    pub space: &'a dyn ConfigSpace,
    pub bdf: Bdf,
}

impl FunctionView<'_> {
    fn rd(&self, off: u16, w: Width) -> u32 {
        read(self.space, self.bdf, off, w).unwrap_or(u32::MAX)
    }
    fn wr(&self, off: u16, w: Width, v: u32) {
        let _ = write(self.space, self.bdf, off, w, v);
    }
}

impl PciConfig for FunctionView<'_> {
    fn read32(&self, off: u16) -> u32 {
        self.rd(off, Width::Dword)
    }
    fn write32(&self, off: u16, v: u32) {
        self.wr(off, Width::Dword, v)
    }
    fn read16(&self, off: u16) -> u16 {
        self.rd(off, Width::Word) as u16
    }
    fn read8(&self, off: u16) -> u8 {
        self.rd(off, Width::Byte) as u8
    }
    // Native-width writes: a read-modify-write of the dword would write back RW1C status bits.
    fn write16(&self, off: u16, v: u16) {
        self.wr(off, Width::Word, v as u32)
    }
    fn write8(&self, off: u16, v: u8) {
        self.wr(off, Width::Byte, v as u32)
    }
}

/// One function's config space, owned, for a driver to keep (e.g. virtio's transport).
#[derive(Clone)]
pub struct FunctionConfig {
    space: Arc<dyn ConfigSpace>,
    bdf: Bdf,
}

impl FunctionConfig {
    pub(crate) fn new(space: Arc<dyn ConfigSpace>, bdf: Bdf) -> Self {
        FunctionConfig { space, bdf }
    }
    pub fn bdf(&self) -> Bdf {
        self.bdf
    }
    /// Bytes reachable: 256 (legacy) or 4096 (ECAM).
    pub fn size(&self) -> u16 {
        self.space.size()
    }
    pub fn view(&self) -> FunctionView<'_> {
        FunctionView {
            space: &*self.space,
            bdf: self.bdf,
        }
    }
}

impl PciConfig for FunctionConfig {
    fn read32(&self, off: u16) -> u32 {
        self.view().read32(off)
    }
    fn write32(&self, off: u16, v: u32) {
        self.view().write32(off, v)
    }
    fn read16(&self, off: u16) -> u16 {
        self.view().read16(off)
    }
    fn read8(&self, off: u16) -> u8 {
        self.view().read8(off)
    }
    fn write16(&self, off: u16, v: u16) {
        self.view().write16(off, v)
    }
    fn write8(&self, off: u16, v: u8) {
        self.view().write8(off, v)
    }
}
