//! TLB shootdown: after a kernel mapping is removed or changed, every other online CPU drops
//! the stale translation before the caller goes on (SDM Vol. 3A §4.10.5 "Propagation of
//! Paging-Structure Changes to Multiple Processors": the initiator flushes its own TLB, sends
//! an IPI, and the others flush in their handler and acknowledge). Bounded: a CPU that does
//! not acknowledge within `ACK_TIMEOUT_NS` is counted and reported by `stats`.
//!
//! The same IPI also carries a probe (`probe`): every CPU reads one word through its own
//! TLB, which is how `cpus tlb` checks that a remap reached them all.
use alloc::vec::Vec;
use capmon_apic::lapic::{Delivery, Dest};
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use spin::Mutex;

use super::percpu::{self, PerCpu};
use super::{cpus, send_ipi, VEC_TLB};

/// What to drop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(dead_code)] // `All` is for callers that change many mappings at once; none does yet.
pub enum Flush {
    All,
    Range { start: u64, pages: u64 },
}

/// Above this many pages a full flush is cheaper than `invlpg` per page.
const INVLPG_MAX: u64 = 32;
/// Long enough for every CPU of a loaded host: under TCG with -smp 288 and the other proof of
/// `make test` beside it, one broadcast took 133 ms, and a probe cut off at 100 ms counted 14
/// CPUs that had not answered yet as not reading the new frame.
const ACK_TIMEOUT_NS: u64 = 1_000_000_000;

/// Request kinds in REQ_KIND.
const KIND_FLUSH_ALL: u64 = 0;
const KIND_FLUSH_RANGE: u64 = 1;
const KIND_PROBE: u64 = 2;

/// One request at a time; its fields are written before the IPIs go out and read by handlers.
static LOCK: Mutex<()> = Mutex::new(());
static REQ_KIND: AtomicU64 = AtomicU64::new(0);
static REQ_START: AtomicU64 = AtomicU64::new(0);
static REQ_PAGES: AtomicU64 = AtomicU64::new(0);
static ACKS: AtomicU32 = AtomicU32::new(0);
/// Probe answers, by CPU index.
static PROBE_SLOTS: spin::Once<Vec<AtomicU64>> = spin::Once::new();

static SHOOTDOWNS: AtomicU64 = AtomicU64::new(0);
static MISSED_ACKS: AtomicU64 = AtomicU64::new(0);
static LAST_NS: AtomicU64 = AtomicU64::new(0);

/// Shootdowns sent, acknowledgements that never came, and how long the last one took.
pub fn stats() -> (u64, u64, u64) {
    (
        SHOOTDOWNS.load(Ordering::Relaxed),
        MISSED_ACKS.load(Ordering::Relaxed),
        LAST_NS.load(Ordering::Relaxed),
    )
}

fn flush_local(kind: u64, start: u64, pages: u64) {
    use x86_64::instructions::tlb;
    if kind == KIND_FLUSH_RANGE && pages <= INVLPG_MAX {
        for i in 0..pages {
            tlb::flush(x86_64::VirtAddr::new_truncate(start + i * 4096));
        }
    } else {
        tlb::flush_all();
    }
}

/// The VEC_TLB handler.
pub fn on_ipi() {
    let me = percpu::this();
    me.ipis.fetch_add(1, Ordering::Relaxed);
    let kind = REQ_KIND.load(Ordering::Acquire);
    let start = REQ_START.load(Ordering::Acquire);
    if kind == KIND_PROBE {
        // SAFETY: `probe` names a mapped, 8-byte aligned kernel address and keeps it mapped
        // until every CPU answered or the wait timed out (then this read may fault like any
        // stray access, caught by nothing: the probe is a test of the test page only).
        let v = unsafe { core::ptr::read_volatile(start as *const u64) };
        if let Some(slot) = PROBE_SLOTS.get().and_then(|s| s.get(me.index as usize)) {
            slot.store(v, Ordering::Release);
        }
    } else {
        flush_local(kind, start, REQ_PAGES.load(Ordering::Acquire));
    }
    ACKS.fetch_add(1, Ordering::AcqRel);
}

/// Sends the current request to every other online CPU and waits for their acknowledgements;
/// how many were sent and how many answered.
fn broadcast(me: &PerCpu) -> (u32, u32) {
    ACKS.store(0, Ordering::Release);
    let mut sent = 0;
    for c in cpus() {
        if c.index != me.index
            && c.is_online()
            && send_ipi(Delivery::Fixed(VEC_TLB), Dest::Id(c.apic_id()))
        {
            sent += 1;
        }
    }
    let deadline = crate::time::now_ns() + ACK_TIMEOUT_NS;
    while ACKS.load(Ordering::Acquire) < sent && crate::time::now_ns() < deadline {
        core::hint::spin_loop();
    }
    (sent, ACKS.load(Ordering::Acquire).min(sent))
}

/// Drops `f` from the TLB of every other online CPU (the caller has flushed its own) and waits
/// for them, bounded. Nothing to do while the boot CPU runs alone.
pub fn shootdown(f: Flush) {
    if cpus().iter().filter(|c| c.is_online()).count() < 2 {
        return;
    }
    let t0 = crate::time::rdtsc();
    // Spin with interrupts on: another initiator may be waiting for our acknowledgement.
    let _one = LOCK.lock();
    let me = percpu::this();
    match f {
        Flush::All => REQ_KIND.store(KIND_FLUSH_ALL, Ordering::Release),
        Flush::Range { start, pages } => {
            REQ_START.store(start, Ordering::Release);
            REQ_PAGES.store(pages, Ordering::Release);
            REQ_KIND.store(KIND_FLUSH_RANGE, Ordering::Release);
        }
    }
    let (sent, acked) = broadcast(me);
    SHOOTDOWNS.fetch_add(1, Ordering::Relaxed);
    MISSED_ACKS.fetch_add((sent - acked) as u64, Ordering::Relaxed);
    LAST_NS.store(
        super::tsc_to_ns(crate::time::rdtsc() - t0),
        Ordering::Relaxed,
    );
}

/// Every online CPU reads the u64 at `addr` through its own TLB; the values by CPU index
/// (`None` for CPUs that are offline or did not answer). `addr` must stay mapped meanwhile.
pub fn probe(addr: u64) -> Vec<Option<u64>> {
    let n = cpus().len();
    let slots = PROBE_SLOTS.call_once(|| (0..n).map(|_| AtomicU64::new(0)).collect());
    let _one = LOCK.lock();
    const UNSET: u64 = 0x5eed_5eed_5eed_5eed;
    for s in slots.iter() {
        s.store(UNSET, Ordering::Release);
    }
    let me = percpu::this();
    REQ_START.store(addr, Ordering::Release);
    REQ_KIND.store(KIND_PROBE, Ordering::Release);
    // SAFETY: as in on_ipi: the caller keeps `addr` mapped and aligned.
    let mine = unsafe { core::ptr::read_volatile(addr as *const u64) };
    slots[me.index as usize].store(mine, Ordering::Release);
    broadcast(me);
    cpus()
        .iter()
        .map(|c| {
            let v = slots[c.index as usize].load(Ordering::Acquire);
            (c.is_online() && v != UNSET).then_some(v)
        })
        .collect()
}

/// What `self_test` saw: per phase, how many CPUs read which frame through the test page.
#[derive(Debug, Clone, Copy, Default)]
pub struct SelfTest {
    /// CPUs that answered the probes.
    pub cpus: usize,
    /// Mapped to frame A: CPUs that read A.
    pub first: usize,
    /// Remapped to B with only a local flush: CPUs that still read A (stale TLB entries).
    pub stale: usize,
    /// Remapped to C with a shootdown: CPUs that read C.
    pub after: usize,
    /// The shootdown's duration.
    pub shootdown_ns: u64,
}

/// Checks the shootdown on every online CPU: maps a test page to frame A and has every CPU
/// read it (which caches the translation), remaps it to B with a local flush only (CPUs that
/// still read A show the TLBs really hold it), then to C through `paging::remap_page` (which
/// shoots it down): every CPU must read C. Unmaps and frees everything after.
pub fn self_test() -> Result<SelfTest, &'static str> {
    use crate::mem::{frames, paging};
    use x86_64::structures::paging::{Page, PageTableFlags as F, PhysFrame, Size4KiB};
    const PATTERNS: [u64; 3] = [
        0xa1a1_a1a1_0000_000a,
        0xb2b2_b2b2_0000_000b,
        0xc3c3_c3c3_0000_000c,
    ];
    let mut phys = [0u64; 3];
    for (i, p) in phys.iter_mut().enumerate() {
        let Some(f) = frames::alloc_zeroed(1, 1) else {
            for q in &phys[..i] {
                frames::free(*q, 1);
            }
            return Err("out of memory for the test frames");
        };
        *p = f;
        // SAFETY: a fresh frame of ours, reached through the direct map.
        unsafe { core::ptr::write_volatile(paging::phys_to_virt(f) as *mut u64, PATTERNS[i]) };
    }
    let frame =
        |i: usize| PhysFrame::<Size4KiB>::containing_address(x86_64::PhysAddr::new(phys[i]));
    let page = Page::<Size4KiB>::containing_address(x86_64::VirtAddr::new(paging::SCRATCH_PAGE));
    let flags = F::PRESENT | F::WRITABLE | F::NO_EXECUTE;
    let count = |v: &[Option<u64>], want: u64| v.iter().filter(|x| **x == Some(want)).count();
    let mut r = SelfTest::default();
    let result = (|| {
        if !paging::map_page(page, frame(0), flags) {
            return Err("the test page is already mapped, or no memory for its tables");
        }
        let v = probe(paging::SCRATCH_PAGE);
        r.cpus = v.iter().filter(|x| x.is_some()).count();
        r.first = count(&v, PATTERNS[0]);
        paging::remap_page_local_only(page, frame(1), flags).ok_or("remap failed")?;
        r.stale = count(&probe(paging::SCRATCH_PAGE), PATTERNS[0]);
        paging::remap_page(page, frame(2), flags).ok_or("remap failed")?;
        r.shootdown_ns = stats().2;
        r.after = count(&probe(paging::SCRATCH_PAGE), PATTERNS[2]);
        Ok(())
    })();
    let unmapped = paging::unmap_page(page).is_some();
    // A frame a CPU may still see (no unmap, or a stale entry) is not handed out again.
    if unmapped {
        for p in phys {
            frames::free(p, 1);
        }
    }
    result.map(|()| r)
}
