//! The kernel heap: `talc` over frames from the frame allocator, growing on demand.
use crate::smp::lock::CpuLock;
use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;
use talc::{OomHandler, Span, Talc};

use super::frames::{self, FRAME};

/// Grows the heap with fresh frames when talc runs out.
pub struct GrowFromFrames;

/// The smallest growth step (fewer, larger arenas keep fragmentation down).
const GROW_MIN: u64 = 1 << 20;

impl OomHandler for GrowFromFrames {
    fn handle_oom(talc: &mut Talc<Self>, layout: Layout) -> Result<(), ()> {
        let want = ((layout.size() + layout.align() + 4096) as u64)
            .max(GROW_MIN)
            .next_multiple_of(FRAME);
        let phys = frames::alloc(want / FRAME, 1).ok_or(())?;
        let base = super::paging::phys_to_virt(phys) as *mut u8;
        // SAFETY: fresh frames owned by the heap from now on.
        unsafe { talc.claim(Span::from_base_size(base, want as usize)) }.map(|_| ())
    }
}

struct KernelHeap(CpuLock<Talc<GrowFromFrames>>);

#[global_allocator]
static HEAP: KernelHeap = KernelHeap(CpuLock::new(Talc::new(GrowFromFrames)));

// SAFETY: talc is a correct allocator; the lock serialises access.
unsafe impl GlobalAlloc for KernelHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded contract.
        unsafe { self.0.lock().malloc(layout) }.map_or(core::ptr::null_mut(), |p| p.as_ptr())
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(p) = NonNull::new(ptr) {
            // SAFETY: forwarded contract.
            unsafe { self.0.lock().free(p, layout) }
        }
    }
}

/// Starts the heap with a first arena sized to the machine (1/8 of free RAM, 1..32 MiB).
pub fn init() {
    let free = frames::stats().free * FRAME;
    let size = (free / 8).clamp(1 << 20, 32 << 20).next_multiple_of(FRAME);
    if let Some(phys) = frames::alloc(size / FRAME, 1) {
        let base = super::paging::phys_to_virt(phys) as *mut u8;
        // SAFETY: fresh frames owned by the heap from now on.
        let _ = unsafe {
            HEAP.0
                .lock()
                .claim(Span::from_base_size(base, size as usize))
        };
    }
}

#[derive(Clone, Copy, Default, Debug)]
pub struct HeapStats {
    pub claimed: usize,
    pub allocated: usize,
    pub available: usize,
    pub allocations: usize,
}

pub fn stats() -> HeapStats {
    let h = HEAP.0.lock();
    let c = h.get_counters();
    HeapStats {
        claimed: c.claimed_bytes,
        allocated: c.allocated_bytes,
        available: c.available_bytes,
        allocations: c.allocation_count,
    }
}

/// A command faulted, possibly inside the allocator: release the locks this CPU held.
pub fn recover_after_fault() {
    HEAP.0.release_if_held_here();
    frames::FRAMES.release_if_held_here();
}
