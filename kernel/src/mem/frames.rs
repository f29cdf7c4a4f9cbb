//! The physical frame allocator: a bitmap over all usable RAM (1 bit per 4 KiB frame, set =
//! in use), built from the boot memory map with the kernel, boot information, modules and the
//! first MiB reserved. Allocations search from low addresses, so page tables and DMA buffers
//! land in memory every device can reach.
//!
//! The usable frames of the first MiB stay out of that pool: they are the only memory a CPU in
//! real mode can run from (a start-up IPI names a page below 1 MiB, SDM Vol. 3A §11.6.1), so
//! they are kept apart and handed out one at a time by `alloc_low`.
use crate::boot::{BootInfo, RegionKind};
use crate::smp::lock::CpuLock;

pub const FRAME: u64 = 4096;
/// RAM below this is in the direct map from the first instruction (boot/entry.s maps 4 GiB).
const BOOT_MAPPED: u64 = 4 << 30;
/// The real-mode-addressable first MiB, kept out of the general pool.
const LOW_LIMIT: u64 = 0x10_0000;
const LOW_FRAMES: usize = (LOW_LIMIT / FRAME) as usize;

pub struct Frames {
    bitmap: &'static mut [u64],
    /// Frames covered by the bitmap (0 .. nframes).
    nframes: u64,
    usable: u64,
    free: u64,
    /// Lowest index that may be free.
    hint: u64,
    /// Frames below `LOW_LIMIT` the memory map calls usable and nobody uses: bit i = frame i.
    low_free: [u64; LOW_FRAMES / 64],
}

pub static FRAMES: CpuLock<Option<Frames>> = CpuLock::new(None);

#[derive(Clone, Copy, Debug, Default)]
pub struct FrameStats {
    pub usable: u64,
    pub free: u64,
}

fn overlaps(a: (u64, u64), b: (u64, u64)) -> bool {
    a.0 < b.1 && b.0 < a.1
}

pub fn init(bi: &BootInfo) {
    let usable = || bi.regions().iter().filter(|r| r.kind == RegionKind::Usable);
    let top = usable().map(|r| r.base + r.len).max().unwrap_or(0);
    let nframes = top / FRAME;
    let words = nframes.div_ceil(64);
    let bytes = (words * 8).next_multiple_of(FRAME);

    // Ranges nobody may allocate.
    let kernel = (bi.kernel_phys, bi.kernel_phys + super::kernel_size());
    let mut reserved: [(u64, u64); 3 + crate::boot::MAX_MODULES] =
        [(0, 0); 3 + crate::boot::MAX_MODULES];
    reserved[0] = (0, 0x10_0000);
    reserved[1] = kernel;
    reserved[2] = bi.reserved.unwrap_or((0, 0));
    for (i, m) in bi.modules().iter().enumerate() {
        reserved[3 + i] = (m.start & !(FRAME - 1), m.end.next_multiple_of(FRAME));
    }

    // The bitmap itself lives at the top of the highest usable region that has room for it
    // below 4 GiB: the only RAM the Multiboot2 trampoline's direct map is sure to cover before
    // paging::init extends it.
    let Some(bitmap_phys) = usable()
        .filter_map(|r| {
            let end = (r.base + r.len).min(BOOT_MAPPED);
            let start = end.saturating_sub(bytes) & !(FRAME - 1);
            (start >= r.base
                && !reserved
                    .iter()
                    .any(|&x| overlaps(x, (start, start + bytes))))
            .then_some(start)
        })
        .max()
    else {
        log::error!("no usable memory for the frame bitmap");
        return;
    };
    // SAFETY: the range is usable RAM, reserved from allocation below, reachable through the
    // direct map, and nothing else refers to it.
    let bitmap = unsafe {
        core::slice::from_raw_parts_mut((bi.direct_map + bitmap_phys) as *mut u64, words as usize)
    };
    bitmap.fill(u64::MAX);
    let mut f = Frames {
        bitmap,
        nframes,
        usable: 0,
        free: 0,
        hint: 0,
        low_free: [0; LOW_FRAMES / 64],
    };
    for r in usable() {
        let first = r.base.div_ceil(FRAME);
        let last = (r.base + r.len) / FRAME;
        f.set_range(first, last, false);
        f.usable += last.saturating_sub(first);
        f.free += last.saturating_sub(first);
    }
    // Whole usable frames of the first MiB, frame 0 excepted (the real-mode interrupt vector
    // table and BIOS data area; a null page is never handed out), minus the loader's ranges.
    for r in usable() {
        let first = r.base.div_ceil(FRAME).max(1);
        let last = ((r.base + r.len) / FRAME).min(LOW_FRAMES as u64);
        for i in first..last {
            let frame = (i * FRAME, (i + 1) * FRAME);
            if !reserved[1..].iter().any(|&x| overlaps(x, frame)) {
                f.low_free[(i / 64) as usize] |= 1 << (i % 64);
            }
        }
    }
    for &(s, e) in reserved
        .iter()
        .chain(core::iter::once(&(bitmap_phys, bitmap_phys + bytes)))
    {
        for i in s / FRAME..e.div_ceil(FRAME) {
            if i < nframes && !f.get(i) {
                f.set(i, true);
                f.free -= 1;
            }
        }
    }
    *FRAMES.lock() = Some(f);
}

impl Frames {
    fn get(&self, i: u64) -> bool {
        self.bitmap[(i / 64) as usize] & (1 << (i % 64)) != 0
    }

    /// Marks frames `first..last`, a whole word at a time where possible.
    fn set_range(&mut self, first: u64, last: u64, used: bool) {
        let mut i = first;
        while i < last {
            if i.is_multiple_of(64) && last - i >= 64 {
                self.bitmap[(i / 64) as usize] = if used { u64::MAX } else { 0 };
                i += 64;
            } else {
                self.set(i, used);
                i += 1;
            }
        }
    }

    fn set(&mut self, i: u64, used: bool) {
        let w = &mut self.bitmap[(i / 64) as usize];
        if used {
            *w |= 1 << (i % 64);
        } else {
            *w &= !(1 << (i % 64));
        }
    }

    /// `count` contiguous frames whose first frame number is a multiple of `align` frames.
    pub fn alloc(&mut self, count: u64, align: u64) -> Option<u64> {
        let align = align.max(1);
        let mut i = self.hint.next_multiple_of(align);
        while i + count <= self.nframes {
            // Skip full words quickly.
            if i.is_multiple_of(64) && self.bitmap[(i / 64) as usize] == u64::MAX {
                i = (i + 64).next_multiple_of(align);
                continue;
            }
            match (i..i + count).find(|&k| self.get(k)) {
                None => {
                    for k in i..i + count {
                        self.set(k, true);
                    }
                    self.free -= count;
                    if count == 1 || i == self.hint {
                        self.hint = i + count;
                    }
                    return Some(i * FRAME);
                }
                Some(busy) => i = (busy + 1).next_multiple_of(align),
            }
        }
        None
    }

    /// The highest free usable frame below `limit` (at most 1 MiB), taken for good.
    pub fn alloc_low(&mut self, limit: u64) -> Option<u64> {
        let top = (limit.min(LOW_LIMIT) / FRAME) as usize;
        let i = (0..top)
            .rev()
            .find(|&i| self.low_free[i / 64] & (1 << (i % 64)) != 0)?;
        self.low_free[i / 64] &= !(1 << (i % 64));
        Some(i as u64 * FRAME)
    }

    pub fn free(&mut self, phys: u64, count: u64) {
        let first = phys / FRAME;
        for i in first..(first + count).min(self.nframes) {
            if self.get(i) {
                self.set(i, false);
                self.free += 1;
            }
        }
        self.hint = self.hint.min(first);
    }
}

/// `count` contiguous zeroed frames aligned to `align` frames; the physical address.
pub fn alloc_zeroed(count: u64, align: u64) -> Option<u64> {
    let phys = FRAMES.lock().as_mut()?.alloc(count, align)?;
    let virt = crate::mem::paging::phys_to_virt(phys);
    // SAFETY: freshly allocated frames, reachable through the direct map, owned by the caller.
    unsafe { core::ptr::write_bytes(virt as *mut u8, 0, (count * FRAME) as usize) };
    Some(phys)
}

/// `count` contiguous frames aligned to `align` frames, contents undefined.
pub fn alloc(count: u64, align: u64) -> Option<u64> {
    FRAMES.lock().as_mut()?.alloc(count, align)
}

/// One frame below `limit` (at most 1 MiB) from the usable memory of the first MiB, for code
/// a CPU runs in real mode. Never returned: nothing frees it.
pub fn alloc_low(limit: u64) -> Option<u64> {
    FRAMES.lock().as_mut()?.alloc_low(limit)
}

pub fn free(phys: u64, count: u64) {
    if let Some(f) = FRAMES.lock().as_mut() {
        f.free(phys, count);
    }
}

pub fn stats() -> FrameStats {
    FRAMES
        .lock()
        .as_ref()
        .map(|f| FrameStats {
            usable: f.usable,
            free: f.free,
        })
        .unwrap_or_default()
}
