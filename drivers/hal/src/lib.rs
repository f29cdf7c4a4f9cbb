//! Hardware-access traits shared by capmon's drivers.
//!
//! Drivers are written against these traits, never against raw addresses; the kernel crate
//! implements them with port I/O, the page mapper and the frame allocator, and host tests
//! implement them with fakes backed by ordinary memory.
#![no_std]
extern crate alloc;

#[cfg(any(test, feature = "fake"))]
pub mod fake;
pub mod irq;
pub use irq::{
    Completion, Interrupt, Interrupts, IrqEvent, IrqOwner, IrqVector, Mechanism, MsiMessage,
    Polling,
};

/// A physically contiguous, zero-initialised buffer that a device may read or write by DMA.
#[derive(Debug)]
pub struct DmaBuf {
    /// Where the CPU sees the buffer.
    pub virt: *mut u8,
    /// Where the device sees the buffer.
    pub phys: u64,
    /// Length in bytes.
    pub len: usize,
}

impl DmaBuf {
    /// The buffer as a byte slice.
    ///
    /// # Safety
    /// The caller must ensure no device is writing the buffer concurrently.
    pub unsafe fn as_slice(&self) -> &[u8] {
        // SAFETY: `virt` points at `len` bytes owned by this buffer (Dma contract).
        unsafe { core::slice::from_raw_parts(self.virt, self.len) }
    }

    /// The buffer as a mutable byte slice.
    ///
    /// # Safety
    /// The caller must ensure no device is accessing the buffer concurrently.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn as_mut_slice(&self) -> &mut [u8] {
        // SAFETY: `virt` points at `len` bytes owned by this buffer (Dma contract).
        unsafe { core::slice::from_raw_parts_mut(self.virt, self.len) }
    }
}

/// DMA memory owned by a driver, returned to the allocator on drop.
///
/// The owner must stop the device from using the memory (reset it) before dropping it.
pub struct DmaRegion {
    buf: DmaBuf,
    dma: &'static (dyn Dma + Sync),
}

// SAFETY: the region is plain memory owned by exactly one driver object; the raw pointer inside
// `DmaBuf` is only dereferenced through that owner.
unsafe impl Send for DmaRegion {}

impl DmaRegion {
    pub fn alloc(dma: &'static (dyn Dma + Sync), len: usize, align: usize) -> Option<Self> {
        let buf = dma.alloc(len, align)?;
        if buf.len < len {
            dma.free(buf);
            return None;
        }
        Some(DmaRegion { buf, dma })
    }

    pub fn phys(&self) -> u64 {
        self.buf.phys
    }

    pub fn len(&self) -> usize {
        self.buf.len
    }

    pub fn is_empty(&self) -> bool {
        self.buf.len == 0
    }

    /// A pointer to byte `off`; `off` must be at most `len()`.
    pub fn ptr(&self, off: usize) -> *mut u8 {
        debug_assert!(off <= self.buf.len);
        self.buf.virt.wrapping_add(off)
    }
}

impl Drop for DmaRegion {
    fn drop(&mut self) {
        let buf = DmaBuf {
            virt: self.buf.virt,
            phys: self.buf.phys,
            len: self.buf.len,
        };
        self.dma.free(buf);
    }
}

/// Allocates memory that devices can reach by physical address.
pub trait Dma {
    /// A zeroed buffer of at least `len` bytes, aligned to at least `align` (a power of two,
    /// at most 4096) in both virtual and physical address. `None` when memory is exhausted.
    fn alloc(&self, len: usize, align: usize) -> Option<DmaBuf>;
    /// Returns a buffer obtained from `alloc` on the same allocator.
    fn free(&self, buf: DmaBuf);
    /// The device-visible address of `len` bytes at `virt`, memory the caller already owns
    /// (a heap buffer), if that range is ordinary RAM, physically contiguous and reachable by
    /// DMA; `None` otherwise. Lets a driver move data straight to or from its caller's buffer
    /// instead of copying through one from `alloc`. The default says `None` (always copy).
    fn dma_address(&self, virt: *const u8, len: usize) -> Option<u64> {
        let _ = (virt, len);
        None
    }
}

/// A window of memory-mapped device registers. Offsets are relative to the window's start;
/// an implementation must ignore (or report) accesses outside the window, never fault.
pub trait Mmio {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn read8(&self, off: usize) -> u8;
    fn read16(&self, off: usize) -> u16;
    fn read32(&self, off: usize) -> u32;
    fn read64(&self, off: usize) -> u64 {
        self.read32(off) as u64 | (self.read32(off + 4) as u64) << 32
    }
    fn write8(&self, off: usize, v: u8);
    fn write16(&self, off: usize, v: u16);
    fn write32(&self, off: usize, v: u32);
    fn write64(&self, off: usize, v: u64) {
        self.write32(off, v as u32);
        self.write32(off + 4, (v >> 32) as u32);
    }
}

/// A register window the transport owns.
pub type MmioBox = alloc::boxed::Box<dyn Mmio + Send + Sync>;

/// Maps register windows that lie inside a PCI function's memory BARs.
pub trait BarMapper {
    /// An uncached window over `len` bytes at physical address `phys`, or `None`.
    fn map_mmio(&self, phys: u64, len: usize) -> Option<MmioBox>;
}

/// A `BarMapper` over the kernel's `PhysMap`, giving `RawMmio` windows.
pub struct PhysMapBars<'a>(pub &'a dyn PhysMap);

impl BarMapper for PhysMapBars<'_> {
    fn map_mmio(&self, phys: u64, len: usize) -> Option<MmioBox> {
        let virt = self.0.map(phys, len, true)?;
        // SAFETY: `PhysMap::map` returned a mapping of `len` bytes at `phys`, uncached as asked;
        // the kernel never unmaps MMIO mappings.
        Some(alloc::boxed::Box::new(unsafe { RawMmio::new(virt, len) }))
    }
}

/// x86 I/O port access.
pub trait PortIo {
    fn inb(&self, port: u16) -> u8;
    fn inw(&self, port: u16) -> u16;
    fn inl(&self, port: u16) -> u32;
    fn outb(&self, port: u16, v: u8);
    fn outw(&self, port: u16, v: u16);
    fn outl(&self, port: u16, v: u32);
    /// `buf.len()` 16-bit reads of one port (the kernel's is `rep insw`).
    fn insw(&self, port: u16, buf: &mut [u16]) {
        for w in buf {
            *w = self.inw(port);
        }
    }
}

/// Model-specific registers (RDMSR/WRMSR).
pub trait Msr {
    fn read(&self, msr: u32) -> u64;
    fn write(&self, msr: u32, v: u64);
}

/// The CPUs a driver may spread per-CPU resources (NVMe I/O queues) over.
pub trait Cpus: Sync {
    /// How many CPUs are online; they are numbered 0 (the boot CPU) to `count() - 1`.
    fn count(&self) -> usize;
    /// The number of the CPU running the caller.
    fn current(&self) -> usize;
}

/// A machine of one CPU: what host tests and a kernel without SMP hand drivers.
pub struct OneCpu;

impl Cpus for OneCpu {
    fn count(&self) -> usize {
        1
    }
    fn current(&self) -> usize {
        0
    }
}

/// A monotonic clock.
pub trait Clock {
    /// Nanoseconds since an arbitrary fixed point (boot).
    fn now_ns(&self) -> u64;
}

/// Maps physical memory (tables, MMIO) into the kernel's address space.
pub trait PhysMap {
    /// A virtual address through which `len` bytes at `phys` can be accessed, mapped uncached
    /// when `mmio` is true. `None` if the range cannot be mapped.
    fn map(&self, phys: u64, len: usize, mmio: bool) -> Option<*mut u8>;
}

/// The configuration space of one PCI function (256 bytes, or 4 KiB through ECAM).
/// Offsets must be naturally aligned; reads past the end return all-ones.
pub trait PciConfig {
    fn read32(&self, off: u16) -> u32;
    fn write32(&self, off: u16, v: u32);
    fn read16(&self, off: u16) -> u16 {
        (self.read32(off & !3) >> ((off & 2) * 8)) as u16
    }
    fn read8(&self, off: u16) -> u8 {
        (self.read32(off & !3) >> ((off & 3) * 8)) as u8
    }
    /// Writes 16 bits by read-modify-write of the containing dword.
    fn write16(&self, off: u16, v: u16) {
        let shift = (off & 2) * 8;
        let old = self.read32(off & !3) & !(0xffff << shift);
        self.write32(off & !3, old | (v as u32) << shift);
    }
    /// Writes 8 bits by read-modify-write of the containing dword.
    fn write8(&self, off: u16, v: u8) {
        let shift = (off & 3) * 8;
        let old = self.read32(off & !3) & !(0xff << shift);
        self.write32(off & !3, old | (v as u32) << shift);
    }
}

/// An `Mmio` window over real memory-mapped registers, accessed with volatile loads and stores.
/// Accesses outside the window (or misaligned) read all-ones and drop writes.
#[derive(Debug, Clone, Copy)]
pub struct RawMmio {
    base: *mut u8,
    len: usize,
}

// SAFETY: the registers behind a RawMmio are device memory; the drivers that own a window
// serialise access to it themselves.
unsafe impl Send for RawMmio {}
unsafe impl Sync for RawMmio {}

impl RawMmio {
    /// # Safety
    /// `base .. base+len` must be mapped (uncached for device registers) for as long as the
    /// window is used.
    pub const unsafe fn new(base: *mut u8, len: usize) -> Self {
        RawMmio { base, len }
    }

    pub fn base(&self) -> *mut u8 {
        self.base
    }

    fn ok(&self, off: usize, size: usize) -> bool {
        off.is_multiple_of(size) && off.checked_add(size).is_some_and(|e| e <= self.len)
    }
}

macro_rules! raw_mmio_rw {
    ($r:ident, $w:ident, $t:ty) => {
        fn $r(&self, off: usize) -> $t {
            if !self.ok(off, core::mem::size_of::<$t>()) {
                return <$t>::MAX;
            }
            // SAFETY: in bounds and aligned (checked above); mapped per `new`'s contract.
            unsafe { core::ptr::read_volatile(self.base.add(off) as *const $t) }
        }
        fn $w(&self, off: usize, v: $t) {
            if self.ok(off, core::mem::size_of::<$t>()) {
                // SAFETY: in bounds and aligned (checked above); mapped per `new`'s contract.
                unsafe { core::ptr::write_volatile(self.base.add(off) as *mut $t, v) }
            }
        }
    };
}

impl Mmio for RawMmio {
    fn len(&self) -> usize {
        self.len
    }
    raw_mmio_rw!(read8, write8, u8);
    raw_mmio_rw!(read16, write16, u16);
    raw_mmio_rw!(read32, write32, u32);
    raw_mmio_rw!(read64, write64, u64);
}
