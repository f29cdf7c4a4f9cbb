//! The kernel's page tables through the `x86_64` crate's `OffsetPageTable`, the direct map of
//! physical memory, and uncached MMIO mappings.
use crate::boot::{BootInfo, RegionKind};
use core::sync::atomic::{AtomicU64, Ordering};
use spin::Mutex;
use x86_64::structures::paging::mapper::{MapToError, MappedFrame, TranslateResult};
use x86_64::structures::paging::{
    FrameAllocator, Mapper, OffsetPageTable, Page, PageSize, PageTable, PageTableFlags as F,
    PhysFrame, Size2MiB, Size4KiB, Translate,
};
use x86_64::{PhysAddr, VirtAddr};

use super::frames::{self, FRAME};

static DIRECT_MAP: AtomicU64 = AtomicU64::new(0);
/// MMIO windows live at MMIO_BASE + physical address, mapped uncached (PML4 slot 320).
pub const MMIO_BASE: u64 = 0xFFFF_A000_0000_0000;
/// The highest physical address either alias (the direct map, MMIO_BASE) may cover: 64 TiB,
/// well inside the canonical half. Addresses from firmware tables are checked against it.
const PHYS_LIMIT: u64 = 1 << 46;

/// A page for the TLB self-test (`smp::tlb::self_test`), mapped only while it runs (PML4 slot
/// 385, used for nothing else).
pub const SCRATCH_PAGE: u64 = 0xFFFF_C080_0000_0000;

static MAPPER: Mutex<Option<OffsetPageTable<'static>>> = Mutex::new(None);

pub fn phys_to_virt(phys: u64) -> u64 {
    DIRECT_MAP.load(Ordering::Relaxed) + phys
}

pub fn direct_map() -> u64 {
    DIRECT_MAP.load(Ordering::Relaxed)
}

struct KernelFrames;

// SAFETY: frames come from the frame allocator, unused and zeroed.
unsafe impl FrameAllocator<Size4KiB> for KernelFrames {
    fn allocate_frame(&mut self) -> Option<PhysFrame<Size4KiB>> {
        frames::alloc_zeroed(1, 1).map(|p| PhysFrame::containing_address(PhysAddr::new(p)))
    }
}

pub fn init(bi: &BootInfo) {
    DIRECT_MAP.store(bi.direct_map, Ordering::Relaxed);
    let (pml4_frame, _) = x86_64::registers::control::Cr3::read();
    let pml4 = phys_to_virt(pml4_frame.start_address().as_u64()) as *mut PageTable;
    // SAFETY: CR3 points at the live PML4, reachable through the direct map; from here on only
    // MAPPER touches the page tables.
    let mut mapper = unsafe { OffsetPageTable::new(&mut *pml4, VirtAddr::new(bi.direct_map)) };
    if bi.loader.contains("multiboot2") {
        // The trampoline's identity map is no longer needed; dropping it makes null and
        // low-address dereferences fault.
        mapper.level_4_table_mut()[0].set_unused();
        x86_64::instructions::tlb::flush_all();
    }
    // Extend the direct map to usable RAM the boot tables do not cover (above 4 GiB, or any
    // RAM Limine left out), with 2 MiB pages where aligned.
    for r in bi
        .regions()
        .iter()
        .filter(|r| matches!(r.kind, RegionKind::Usable | RegionKind::AcpiReclaimable))
    {
        let _ = ensure_mapped(
            &mut mapper,
            r.base,
            r.len,
            F::PRESENT | F::WRITABLE | F::NO_EXECUTE,
            bi.direct_map,
        );
    }
    *MAPPER.lock() = Some(mapper);
}

/// Maps `phys .. phys+len` at `virt_base + phys` with `flags`, skipping pages already mapped.
fn ensure_mapped(
    m: &mut OffsetPageTable<'static>,
    phys: u64,
    len: u64,
    flags: F,
    virt_base: u64,
) -> Result<(), &'static str> {
    let mut p = phys & !(FRAME - 1);
    let end = phys
        .checked_add(len)
        .ok_or("range overflows")?
        .next_multiple_of(FRAME);
    while p < end {
        let va = virt_base
            .checked_add(p)
            .and_then(|v| VirtAddr::try_new(v).ok())
            .ok_or("address outside the kernel's half")?;
        match m.translate(va) {
            TranslateResult::NotMapped => {}
            // Already mapped: skip to the end of the page that maps it.
            TranslateResult::Mapped { frame, .. } => {
                let size = match frame {
                    MappedFrame::Size4KiB(_) => FRAME,
                    MappedFrame::Size2MiB(_) => Size2MiB::SIZE,
                    MappedFrame::Size1GiB(_) => 1 << 30,
                };
                p = (p + 1).next_multiple_of(size);
                continue;
            }
            TranslateResult::InvalidFrameAddress(_) => return Err("corrupt page table entry"),
        }
        // 2 MiB entries keep PWT/PCD at the same bits as 4 KiB ones, so MMIO may use them too.
        let huge = p.is_multiple_of(Size2MiB::SIZE) && end - p >= Size2MiB::SIZE;
        let res = if huge {
            let page = Page::<Size2MiB>::containing_address(va);
            let frame = PhysFrame::<Size2MiB>::containing_address(PhysAddr::new(p));
            // SAFETY: maps physical memory at its alias; nothing else is mapped there (checked).
            unsafe { m.map_to(page, frame, flags | F::HUGE_PAGE, &mut KernelFrames) }
                .map(|f| f.flush())
                .map_err(|e| match e {
                    MapToError::FrameAllocationFailed => MapToError::FrameAllocationFailed,
                    MapToError::ParentEntryHugePage => MapToError::ParentEntryHugePage,
                    MapToError::PageAlreadyMapped(_) => MapToError::ParentEntryHugePage,
                })
        } else {
            let page = Page::<Size4KiB>::containing_address(va);
            let frame = PhysFrame::<Size4KiB>::containing_address(PhysAddr::new(p));
            // SAFETY: as above.
            unsafe { m.map_to(page, frame, flags, &mut KernelFrames) }.map(|f| f.flush())
        };
        match res {
            Ok(()) => {}
            // A huge page of the boot map already covers part of this range.
            Err(MapToError::PageAlreadyMapped(_)) | Err(MapToError::ParentEntryHugePage) => {}
            Err(MapToError::FrameAllocationFailed) => return Err("out of memory for page tables"),
        }
        p += if huge { Size2MiB::SIZE } else { FRAME };
    }
    Ok(())
}

/// A virtual address for `len` bytes of physical memory: RAM and firmware tables through the
/// direct map (mapping pages on demand), device registers through an uncached MMIO alias.
pub fn map_phys(phys: u64, len: usize, mmio: bool) -> Option<*mut u8> {
    let mut guard = MAPPER.lock();
    let m = guard.as_mut()?;
    if phys.checked_add(len as u64)? > PHYS_LIMIT {
        return None;
    }
    if mmio {
        let flags = F::PRESENT | F::WRITABLE | F::NO_CACHE | F::WRITE_THROUGH | F::NO_EXECUTE;
        ensure_mapped(m, phys, len as u64, flags, MMIO_BASE).ok()?;
        Some((MMIO_BASE + phys) as *mut u8)
    } else {
        let dm = direct_map();
        ensure_mapped(
            m,
            phys,
            len as u64,
            F::PRESENT | F::WRITABLE | F::NO_EXECUTE,
            dm,
        )
        .ok()?;
        Some((dm + phys) as *mut u8)
    }
}

/// Maps one 4 KiB page; false if it is already mapped or page tables cannot be allocated.
pub fn map_page(page: Page<Size4KiB>, frame: PhysFrame<Size4KiB>, flags: F) -> bool {
    let mut guard = MAPPER.lock();
    let Some(m) = guard.as_mut() else {
        return false;
    };
    // SAFETY: the caller hands over a frame it owns for a page nothing else maps.
    unsafe { m.map_to(page, frame, flags, &mut KernelFrames) }
        .map(|f| f.flush())
        .is_ok()
}

/// Unmaps one 4 KiB kernel page and returns the frame it mapped. Every other online CPU
/// drops the translation too (`smp::tlb::shootdown`) before this returns, so the caller may
/// reuse the frame at once.
pub fn unmap_page(page: Page<Size4KiB>) -> Option<PhysFrame<Size4KiB>> {
    let frame = {
        let mut guard = MAPPER.lock();
        let (frame, flush) = guard.as_mut()?.unmap(page).ok()?;
        flush.flush();
        frame
    };
    crate::smp::tlb::shootdown(crate::smp::tlb::Flush::Range {
        start: page.start_address().as_u64(),
        pages: 1,
    });
    Some(frame)
}

/// Points a mapped 4 KiB kernel page at another frame with `flags`; the frame it mapped
/// before. Flushed on every online CPU, as `unmap_page`.
pub fn remap_page(
    page: Page<Size4KiB>,
    frame: PhysFrame<Size4KiB>,
    flags: F,
) -> Option<PhysFrame<Size4KiB>> {
    let old = remap_page_local_only(page, frame, flags)?;
    crate::smp::tlb::shootdown(crate::smp::tlb::Flush::Range {
        start: page.start_address().as_u64(),
        pages: 1,
    });
    Some(old)
}

/// `remap_page` without the shootdown: only the calling CPU's TLB is flushed. Besides
/// `remap_page`, only the TLB self-test (`smp::tlb::self_test`) calls it, to show that other
/// CPUs keep the stale translation without a shootdown.
pub fn remap_page_local_only(
    page: Page<Size4KiB>,
    frame: PhysFrame<Size4KiB>,
    flags: F,
) -> Option<PhysFrame<Size4KiB>> {
    let mut guard = MAPPER.lock();
    let m = guard.as_mut()?;
    let (old, flush) = m.unmap(page).ok()?;
    flush.ignore();
    // SAFETY: the caller hands over a frame it owns for a page it owns.
    unsafe { m.map_to(page, frame, flags, &mut KernelFrames) }
        .ok()?
        .flush();
    Some(old)
}

/// The physical address of the kernel's PML4 (what CR3 holds on every CPU).
pub fn kernel_pml4() -> u64 {
    x86_64::registers::control::Cr3::read()
        .0
        .start_address()
        .as_u64()
}

/// A PML4 for the AP start-up trampoline, below 4 GiB (32-bit code loads it into CR3): the
/// kernel's entries 256..512 (its higher half, shared, not copied deeper), and in the low half
/// only `page` identity-mapped, the page the trampoline runs from. Its page-table frames are
/// never freed (an AP may start late).
pub fn trampoline_pml4(page: u64) -> Option<u64> {
    let pml4_phys = frames::alloc_zeroed(1, 1)?;
    if pml4_phys >= 1 << 32 {
        frames::free(pml4_phys, 1);
        return None;
    }
    let kernel = phys_to_virt(kernel_pml4()) as *const PageTable;
    let new = phys_to_virt(pml4_phys) as *mut PageTable;
    // Hold the mapper lock so the kernel's top half does not change while it is copied.
    let _guard = MAPPER.lock();
    // SAFETY: both are page tables reachable through the direct map; `new` is fresh and ours,
    // the kernel's is only read (under the lock every writer takes).
    let (kernel, new) = unsafe { (&*kernel, &mut *new) };
    for i in 256..512 {
        new[i] = kernel[i].clone();
    }
    // SAFETY: `new` is the PML4 just built; its tables are reached through the direct map.
    let mut m = unsafe { OffsetPageTable::new(new, VirtAddr::new(direct_map())) };
    let p = Page::<Size4KiB>::containing_address(VirtAddr::new(page));
    let f = PhysFrame::<Size4KiB>::containing_address(PhysAddr::new(page));
    // SAFETY: an identity mapping of the trampoline page in a table no CPU uses yet; the
    // flush is meaningless for a PML4 that is not loaded.
    unsafe { m.map_to(p, f, F::PRESENT | F::WRITABLE, &mut KernelFrames) }
        .ok()?
        .ignore();
    Some(pml4_phys)
}

/// The kernel's `PhysMap` for drivers.
pub struct KernelPhysMap;

impl capmon_hal::PhysMap for KernelPhysMap {
    fn map(&self, phys: u64, len: usize, mmio: bool) -> Option<*mut u8> {
        map_phys(phys, len, mmio)
    }
}

/// The kernel's `Dma` for drivers: whole frames from the frame allocator, seen through the
/// direct map (write-back; QEMU's and real PCIe DMA are cache-coherent on x86).
pub struct KernelDma;

impl capmon_hal::Dma for KernelDma {
    fn alloc(&self, len: usize, align: usize) -> Option<capmon_hal::DmaBuf> {
        let count = (len.max(1) as u64).div_ceil(FRAME);
        let align_frames = (align as u64).div_ceil(FRAME).max(1);
        let phys = frames::alloc_zeroed(count, align_frames)?;
        Some(capmon_hal::DmaBuf {
            virt: phys_to_virt(phys) as *mut u8,
            phys,
            len,
        })
    }

    /// The heap and every frame live in the direct map, which aliases physical memory linearly:
    /// a range inside it is physically contiguous at `virt - direct_map`. Anything else (the
    /// kernel image, MMIO windows) is refused, so drivers bounce it.
    fn dma_address(&self, virt: *const u8, len: usize) -> Option<u64> {
        let phys = (virt as u64).checked_sub(direct_map())?;
        let end = phys.checked_add(len as u64)?;
        (end <= MMIO_BASE.saturating_sub(direct_map())).then_some(phys)
    }

    fn free(&self, buf: capmon_hal::DmaBuf) {
        frames::free(buf.phys, (buf.len.max(1) as u64).div_ceil(FRAME));
    }
}

/// A program's address space: a PML4 whose slot 0 (the low 512 GiB) is the program's and whose
/// other slots are the kernel's (copied, so kernel mappings made later in slots the copy
/// shares are seen; the kernel's slot 0 must be empty). Every page mapped here, and every
/// page-table frame under slot 0, is freed on drop.
pub struct UserSpace {
    pml4: u64,
    /// (page address, (frame, writable)) of every mapped page.
    pages: alloc::collections::BTreeMap<u64, (u64, bool)>,
}

impl UserSpace {
    /// None when memory is short or the kernel itself uses slot 0.
    pub fn new() -> Option<UserSpace> {
        let kernel = kernel_pml4();
        // SAFETY: the kernel's PML4 is a live page table reachable through the direct map.
        let k = unsafe { &*(phys_to_virt(kernel) as *const PageTable) };
        if !k[0].is_unused() {
            return None;
        }
        let pml4 = frames::alloc_zeroed(1, 1)?;
        // SAFETY: a fresh zeroed frame, ours alone.
        let t = unsafe { &mut *(phys_to_virt(pml4) as *mut PageTable) };
        for i in 1..512 {
            t[i] = k[i].clone();
        }
        Some(UserSpace {
            pml4,
            pages: alloc::collections::BTreeMap::new(),
        })
    }

    pub fn cr3(&self) -> u64 {
        self.pml4
    }

    /// Maps a fresh zeroed page at user address `va` (4 KiB aligned, in slot 0); its frame's
    /// kernel address for filling it, or None (no memory, or already mapped).
    pub fn map_user(&mut self, va: u64, writable: bool, exec: bool) -> Option<*mut u8> {
        if va >= 1 << 39 || !va.is_multiple_of(FRAME) || self.pages.contains_key(&va) {
            return None;
        }
        let frame = frames::alloc_zeroed(1, 1)?;
        let mut flags = F::PRESENT | F::USER_ACCESSIBLE;
        if writable {
            flags |= F::WRITABLE;
        }
        if !exec {
            flags |= F::NO_EXECUTE;
        }
        // SAFETY: our PML4, reachable through the direct map; only this UserSpace edits it.
        let mut m = unsafe {
            OffsetPageTable::new(
                &mut *(phys_to_virt(self.pml4) as *mut PageTable),
                VirtAddr::new(direct_map()),
            )
        };
        let page = Page::<Size4KiB>::containing_address(VirtAddr::new(va));
        let f = PhysFrame::containing_address(PhysAddr::new(frame));
        // SAFETY: a fresh frame at a user page nothing maps; the parent tables get USER and
        // WRITABLE from `flags` (map_to's parent flags), needed for ring 3 to walk them.
        let r = unsafe {
            m.map_to_with_table_flags(
                page,
                f,
                flags,
                F::PRESENT | F::WRITABLE | F::USER_ACCESSIBLE,
                &mut KernelFrames,
            )
        };
        match r {
            // Not loaded in CR3 yet (or flushed by the CR3 load): nothing to flush.
            Ok(flush) => flush.ignore(),
            Err(_) => {
                frames::free(frame, 1);
                return None;
            }
        }
        self.pages.insert(va, (frame, writable));
        Some(phys_to_virt(frame) as *mut u8)
    }

    /// The kernel address of user address `va`, if its page is mapped.
    pub fn kernel_addr(&self, va: u64) -> Option<*mut u8> {
        let (frame, _) = self.pages.get(&(va & !(FRAME - 1)))?;
        Some((phys_to_virt(*frame) + (va & (FRAME - 1))) as *mut u8)
    }

    /// Whether user address `va` is on a page mapped writable for the program.
    pub fn is_writable(&self, va: u64) -> bool {
        matches!(self.pages.get(&(va & !(FRAME - 1))), Some((_, true)))
    }

    /// Copies `data` to user address `va` (through the kernel alias; any mapped pages,
    /// writable for the program or not); bytes on unmapped pages are dropped.
    pub fn fill(&self, va: u64, data: &[u8]) {
        let mut done = 0usize;
        while done < data.len() {
            let p = va + done as u64;
            let n = ((FRAME - (p & (FRAME - 1))) as usize).min(data.len() - done);
            if let Some(k) = self.kernel_addr(p) {
                // SAFETY: `k` is the kernel alias of `n` bytes of one page this space owns.
                unsafe { core::ptr::copy_nonoverlapping(data[done..].as_ptr(), k, n) };
            }
            done += n;
        }
    }
}

impl Drop for UserSpace {
    fn drop(&mut self) {
        for (frame, _) in self.pages.values() {
            frames::free(*frame, 1);
        }
        // The page-table frames under slot 0 (PDPT, PDs, PTs: no huge pages are made here).
        // SAFETY: our PML4; it is not loaded in CR3 (the caller switched back first).
        let t = unsafe { &*(phys_to_virt(self.pml4) as *const PageTable) };
        if !t[0].is_unused() {
            free_tables(t[0].addr().as_u64(), 3);
        }
        frames::free(self.pml4, 1);
    }
}

/// Frees the page table at `phys` and, for `level` > 1, the tables its entries point at.
fn free_tables(phys: u64, level: u8) {
    if level > 1 {
        // SAFETY: a page table this UserSpace made, reachable through the direct map.
        let t = unsafe { &*(phys_to_virt(phys) as *const PageTable) };
        for e in t.iter().filter(|e| !e.is_unused()) {
            free_tables(e.addr().as_u64(), level - 1);
        }
    }
    frames::free(phys, 1);
}
