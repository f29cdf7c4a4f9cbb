//! Fakes of the hardware traits for host tests of drivers: heap memory standing in for DMA
//! memory (its "physical" address is its virtual address) and a clock that steps on every read.
//! Needs std; enabled by the `fake` feature, never in the kernel.
extern crate std;

use crate::{Clock, Dma, DmaBuf};
use std::alloc::Layout;
use std::boxed::Box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::vec::Vec;

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
