//! One submission/completion queue pair in DMA memory (NVMe Base 2.0 §3.3): the driver writes
//! entries at the SQ tail and rings its doorbell; the controller posts completions whose phase
//! tag flips each time the CQ wraps, and the driver releases them through the CQ head doorbell.
use crate::regs::{self, Command, Completion, CQE_LEN, SQE_LEN};
use alloc::sync::Arc;
use capmon_hal::{Dma, DmaRegion, Mmio};
use core::sync::atomic::{fence, AtomicU64, Ordering};

/// Live counters of one queue pair for `nvme queues`; the queue is their only writer.
#[derive(Debug, Default)]
pub struct QueueStats {
    /// SQ tail, SQ head (as the controller last reported it), CQ head, phase: packed as
    /// `tail | head << 16 | cq_head << 32 | phase << 48`.
    pointers: AtomicU64,
    pub submitted: AtomicU64,
    pub completed: AtomicU64,
    /// Commands that timed out (and were aborted).
    pub timeouts: AtomicU64,
    /// Completions with an error status.
    pub errors: AtomicU64,
}

/// A snapshot of a queue's pointers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pointers {
    pub sq_tail: u16,
    pub sq_head: u16,
    pub cq_head: u16,
    pub phase: bool,
}

impl QueueStats {
    pub fn pointers(&self) -> Pointers {
        let p = self.pointers.load(Ordering::Relaxed);
        Pointers {
            sq_tail: p as u16,
            sq_head: (p >> 16) as u16,
            cq_head: (p >> 32) as u16,
            phase: (p >> 48) & 1 != 0,
        }
    }
}

pub struct QueuePair {
    pub qid: u16,
    /// Entries in each ring (both rings have the same size here).
    size: u16,
    sq: DmaRegion,
    cq: DmaRegion,
    sq_tail: u16,
    sq_head: u16,
    cq_head: u16,
    phase: bool,
    sq_doorbell: usize,
    cq_doorbell: usize,
    /// Completions consumed since the CQ head doorbell was last written.
    unreleased: u16,
    pub stats: Arc<QueueStats>,
}

impl QueuePair {
    /// Rings of `size` entries (at least 2) for queue `qid`; `None` without DMA memory.
    pub fn new(dma: &'static (dyn Dma + Sync), qid: u16, size: u16, stride: usize) -> Option<Self> {
        let size = size.max(2);
        let sq = DmaRegion::alloc(dma, size as usize * SQE_LEN, 4096)?;
        let cq = DmaRegion::alloc(dma, size as usize * CQE_LEN, 4096)?;
        let q = QueuePair {
            qid,
            size,
            sq,
            cq,
            sq_tail: 0,
            sq_head: 0,
            cq_head: 0,
            phase: true,
            sq_doorbell: regs::doorbell(qid, false, stride),
            cq_doorbell: regs::doorbell(qid, true, stride),
            unreleased: 0,
            stats: Arc::new(QueueStats::default()),
        };
        q.publish();
        Some(q)
    }

    pub fn size(&self) -> u16 {
        self.size
    }

    pub fn sq_phys(&self) -> u64 {
        self.sq.phys()
    }

    pub fn cq_phys(&self) -> u64 {
        self.cq.phys()
    }

    /// Back to the state after creation (the controller was reset; the rings are reused).
    pub fn reset(&mut self) {
        self.sq_tail = 0;
        self.sq_head = 0;
        self.cq_head = 0;
        self.phase = true;
        self.unreleased = 0;
        // SAFETY: the controller is disabled (the caller's contract), so nothing reads or
        // writes the rings; both lie inside their regions.
        unsafe {
            core::ptr::write_bytes(self.cq.ptr(0), 0, self.cq.len());
            core::ptr::write_bytes(self.sq.ptr(0), 0, self.sq.len());
        }
        self.publish();
    }

    /// Free submission slots (one entry always stays empty: full is tail + 1 == head).
    pub fn free(&self) -> u16 {
        let used = (self.sq_tail + self.size - self.sq_head) % self.size;
        self.size - 1 - used
    }

    /// Writes `cmd` at the tail. The controller sees it at the next `ring`. Returns false when
    /// the ring is full.
    pub fn push(&mut self, cmd: &Command) -> bool {
        if self.free() == 0 {
            return false;
        }
        let off = self.sq_tail as usize * SQE_LEN;
        for (i, d) in cmd.to_dwords().iter().enumerate() {
            // SAFETY: `sq_tail < size`, so the 64-byte entry lies inside `sq`; the controller
            // does not read entries between head and tail... beyond the tail it has been told of.
            unsafe { core::ptr::write_volatile(self.sq.ptr(off + 4 * i) as *mut u32, d.to_le()) };
        }
        self.sq_tail = (self.sq_tail + 1) % self.size;
        self.stats.submitted.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Tells the controller of every entry pushed so far.
    pub fn ring(&mut self, bar: &dyn Mmio) {
        // The entries must be in memory before the doorbell write reaches the device.
        fence(Ordering::SeqCst);
        bar.write32(self.sq_doorbell, self.sq_tail as u32);
        self.publish();
    }

    /// The next completion, if the controller has posted one (its phase tag matches ours).
    /// Call `release` after a batch of these.
    pub fn pop(&mut self) -> Option<Completion> {
        let off = self.cq_head as usize * CQE_LEN;
        let read = |i: usize| {
            // SAFETY: `cq_head < size`, so the 16-byte entry lies inside `cq`.
            u32::from_le(unsafe {
                core::ptr::read_volatile(self.cq.ptr(off + 4 * i) as *const u32)
            })
        };
        let dw3 = read(3);
        if (dw3 & (1 << 16) != 0) != self.phase {
            return None;
        }
        // The rest of the entry was written before its phase bit.
        fence(Ordering::Acquire);
        let c = Completion::from_dwords([read(0), read(1), read(2), dw3]);
        self.cq_head += 1;
        if self.cq_head == self.size {
            self.cq_head = 0;
            self.phase = !self.phase;
        }
        self.unreleased += 1;
        if c.sq_head < self.size {
            self.sq_head = c.sq_head;
        }
        self.stats.completed.fetch_add(1, Ordering::Relaxed);
        if !c.status.is_success() {
            self.stats.errors.fetch_add(1, Ordering::Relaxed);
        }
        Some(c)
    }

    /// Whether a completion is waiting (without consuming it).
    pub fn has_completion(&self) -> bool {
        let off = self.cq_head as usize * CQE_LEN + 12;
        // SAFETY: inside `cq`, as in `pop`.
        let dw3 = u32::from_le(unsafe { core::ptr::read_volatile(self.cq.ptr(off) as *const u32) });
        (dw3 & (1 << 16) != 0) == self.phase
    }

    /// Hands consumed completion entries back to the controller.
    pub fn release(&mut self, bar: &dyn Mmio) {
        if self.unreleased > 0 {
            bar.write32(self.cq_doorbell, self.cq_head as u32);
            self.unreleased = 0;
        }
        self.publish();
    }

    fn publish(&self) {
        let p = self.sq_tail as u64
            | (self.sq_head as u64) << 16
            | (self.cq_head as u64) << 32
            | (self.phase as u64) << 48;
        self.stats.pointers.store(p, Ordering::Relaxed);
    }
}
