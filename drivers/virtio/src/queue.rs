//! Split virtqueues (virtio 1.2 §2.7): descriptor table, avail ring and used ring in one block of
//! DMA memory, a free list of descriptors, and counters for the monitor.
use crate::monitor::QueueCounters;
use crate::VirtioError;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use capmon_hal::DmaRegion;
use capmon_hal::{Dma, Mmio};
use core::sync::atomic::{fence, Ordering};

/// Descriptor flags (§2.7.5).
const VIRTQ_DESC_F_NEXT: u16 = 1;
const VIRTQ_DESC_F_WRITE: u16 = 2;
/// Avail ring flag: do not interrupt when buffers are used (§2.7.7).
const VIRTQ_AVAIL_F_NO_INTERRUPT: u16 = 1;
/// Used ring flag: the device does not need doorbells (§2.7.10).
const VIRTQ_USED_F_NO_NOTIFY: u16 = 1;

const DESC_SIZE: usize = 16;
/// Ring header (flags, idx) in front of avail and used ring entries.
const RING_HEADER: usize = 4;
const USED_ELEM_SIZE: usize = 8;

/// The largest queue capmon sets up; bigger device maxima are cut down (memory, not speed).
pub const MAX_QUEUE_SIZE: u16 = 256;

/// One buffer of a descriptor chain.
#[derive(Debug, Clone, Copy)]
pub struct Segment {
    /// Device-visible address.
    pub addr: u64,
    pub len: u32,
    /// The device writes this buffer (a read from the disk), rather than reads it.
    pub device_writes: bool,
}

/// Why a queue operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueError {
    /// Not enough free descriptors for the chain (or an empty chain).
    Full,
    /// The device broke the protocol; the queue must not be used until the device is reset.
    DeviceBug(&'static str),
}

impl From<QueueError> for VirtioError {
    fn from(e: QueueError) -> Self {
        match e {
            QueueError::Full => VirtioError::DeviceBug("queue full"),
            QueueError::DeviceBug(w) => VirtioError::DeviceBug(w),
        }
    }
}

/// A split virtqueue owned by a driver. The device must be reset before the queue is dropped.
pub struct SplitVirtqueue {
    index: u16,
    size: u16,
    mem: DmaRegion,
    avail_off: usize,
    used_off: usize,
    /// Head of the free descriptor list (linked through `next`), valid when `num_free > 0`.
    free_head: u16,
    num_free: u16,
    /// Chain length of each in-flight head; 0 if that descriptor is not an in-flight head.
    chain_len: Vec<u16>,
    /// Next avail index to publish (the driver's shadow of avail.idx).
    avail_idx: u16,
    /// avail.idx as last written to memory.
    published_idx: u16,
    /// Used index consumed so far.
    last_used: u16,
    /// Byte offset of this queue's doorbell in the notify window.
    notify_offset: usize,
    counters: Arc<QueueCounters>,
}

impl SplitVirtqueue {
    /// Allocates and initialises a queue of `size` entries (a power of two). `counters` comes
    /// from the device's monitor.
    pub(crate) fn new(
        index: u16,
        size: u16,
        notify_offset: usize,
        dma: &'static (dyn Dma + Sync),
        counters: Arc<QueueCounters>,
    ) -> Result<Self, VirtioError> {
        if size == 0 || !size.is_power_of_two() || size > MAX_QUEUE_SIZE {
            return Err(VirtioError::BadConfig("queue size"));
        }
        let n = size as usize;
        // Layout (§2.7): descriptors (align 16), avail ring (align 2), used ring (align 4).
        let avail_off = DESC_SIZE * n;
        let used_off = (avail_off + RING_HEADER + 2 * n + 2 + 3) & !3;
        let total = used_off + RING_HEADER + USED_ELEM_SIZE * n + 2;
        let mem = DmaRegion::alloc(dma, total, 4096).ok_or(VirtioError::NoMemory)?;
        let mut q = SplitVirtqueue {
            index,
            size,
            mem,
            avail_off,
            used_off,
            free_head: 0,
            num_free: size,
            chain_len: vec![0; n],
            avail_idx: 0,
            published_idx: 0,
            last_used: 0,
            notify_offset,
            counters,
        };
        for i in 0..size {
            // The last descriptor's `next` is never followed: `num_free` bounds the list.
            q.write_desc(i, 0, 0, 0, i.wrapping_add(1) % size);
        }
        Ok(q)
    }

    pub fn index(&self) -> u16 {
        self.index
    }

    pub fn size(&self) -> u16 {
        self.size
    }

    pub fn num_free(&self) -> u16 {
        self.num_free
    }

    /// Device addresses of the descriptor table, avail ring and used ring.
    pub fn addresses(&self) -> (u64, u64, u64) {
        let base = self.mem.phys();
        (
            base,
            base + self.avail_off as u64,
            base + self.used_off as u64,
        )
    }

    /// Asks the device for (or tells it to skip) used-buffer notifications.
    pub fn set_interrupts(&mut self, on: bool) {
        let flags = if on { 0 } else { VIRTQ_AVAIL_F_NO_INTERRUPT };
        self.store16(self.avail_off, flags);
    }

    /// Queues a descriptor chain (not yet visible to the device: see `kick`). Returns its head.
    pub fn add(&mut self, segs: &[Segment]) -> Result<u16, QueueError> {
        let count = u16::try_from(segs.len()).map_err(|_| QueueError::Full)?;
        if count == 0 || count > self.num_free {
            return Err(QueueError::Full);
        }
        let head = self.free_head;
        let mut id = head;
        for (i, s) in segs.iter().enumerate() {
            let next = self.desc_next(id);
            let mut flags = if s.device_writes {
                VIRTQ_DESC_F_WRITE
            } else {
                0
            };
            if i + 1 < segs.len() {
                flags |= VIRTQ_DESC_F_NEXT;
            }
            self.write_desc(id, s.addr, s.len, flags, next);
            if i + 1 < segs.len() {
                id = next;
            } else {
                self.free_head = next;
            }
        }
        self.num_free -= count;
        if let Some(l) = self.chain_len.get_mut(head as usize) {
            *l = count;
        }
        let slot = self.avail_off + RING_HEADER + 2 * (self.avail_idx % self.size) as usize;
        self.store16(slot, head);
        self.avail_idx = self.avail_idx.wrapping_add(1);
        Ok(head)
    }

    /// Publishes queued chains and rings the doorbell unless the device asked not to.
    pub fn kick(&mut self, notify: &dyn Mmio) {
        if self.avail_idx == self.published_idx {
            return;
        }
        // Descriptors and ring entries must be visible before the index (§2.7.13.3.1).
        fence(Ordering::Release);
        self.store16(self.avail_off + 2, self.avail_idx);
        self.published_idx = self.avail_idx;
        // The index store must be visible before we read the device's suppression flag (§2.7.13.4).
        fence(Ordering::SeqCst);
        let notified = self.load16(self.used_off) & VIRTQ_USED_F_NO_NOTIFY == 0;
        if notified {
            notify.write16(self.notify_offset, self.index);
        }
        self.counters
            .published(self.avail_idx, self.num_free, notified);
    }

    /// True if the device has used a buffer we have not consumed yet.
    pub fn has_used(&self) -> bool {
        self.load16(self.used_off + 2) != self.last_used
    }

    /// Consumes one used element: `(head, bytes written by the device)`. Frees its chain.
    pub fn pop_used(&mut self) -> Result<Option<(u16, u32)>, QueueError> {
        let used_idx = self.load16(self.used_off + 2);
        if used_idx == self.last_used {
            return Ok(None);
        }
        if used_idx.wrapping_sub(self.last_used) > self.size {
            return Err(QueueError::DeviceBug(
                "used index ran ahead of the avail ring",
            ));
        }
        // Read the element only after seeing the index (§2.7.14).
        fence(Ordering::Acquire);
        let elem =
            self.used_off + RING_HEADER + USED_ELEM_SIZE * (self.last_used % self.size) as usize;
        let id = self.load32(elem);
        let len = self.load32(elem + 4);
        let head = u16::try_from(id).map_err(|_| QueueError::DeviceBug("used id out of range"))?;
        let count = match self.chain_len.get_mut(head as usize) {
            Some(c) if *c > 0 => core::mem::take(c),
            Some(_) => return Err(QueueError::DeviceBug("used id is not an in-flight chain")),
            None => return Err(QueueError::DeviceBug("used id out of range")),
        };
        self.free_chain(head, count);
        self.last_used = self.last_used.wrapping_add(1);
        self.counters.completed(self.last_used, self.num_free);
        Ok(Some((head, len)))
    }

    /// Returns a chain of `count` descriptors starting at `head` to the free list.
    fn free_chain(&mut self, head: u16, count: u16) {
        let mut tail = head;
        for _ in 1..count {
            tail = self.desc_next(tail);
        }
        let old_head = self.free_head;
        self.set_desc_next(tail, old_head);
        self.free_head = head;
        self.num_free += count;
    }

    fn desc_off(&self, id: u16) -> usize {
        DESC_SIZE * (id % self.size) as usize
    }

    fn desc_next(&self, id: u16) -> u16 {
        self.load16(self.desc_off(id) + 14) % self.size
    }

    fn set_desc_next(&mut self, id: u16, next: u16) {
        self.store16(self.desc_off(id) + 14, next);
    }

    fn write_desc(&mut self, id: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let off = self.desc_off(id);
        self.store32(off, addr as u32);
        self.store32(off + 4, (addr >> 32) as u32);
        self.store32(off + 8, len);
        self.store16(off + 12, flags);
        self.store16(off + 14, next);
    }

    // Ring memory is shared with the device, so every access is volatile. Offsets come from the
    // layout computed in `new` (never from device data), aligned and inside the region.

    fn load16(&self, off: usize) -> u16 {
        debug_assert!(off.is_multiple_of(2) && off + 2 <= self.mem.len());
        // SAFETY: in bounds and aligned (layout invariant above); the region lives as long as self.
        u16::from_le(unsafe { core::ptr::read_volatile(self.mem.ptr(off) as *const u16) })
    }

    fn load32(&self, off: usize) -> u32 {
        debug_assert!(off.is_multiple_of(4) && off + 4 <= self.mem.len());
        // SAFETY: as in `load16`.
        u32::from_le(unsafe { core::ptr::read_volatile(self.mem.ptr(off) as *const u32) })
    }

    fn store16(&mut self, off: usize, v: u16) {
        debug_assert!(off.is_multiple_of(2) && off + 2 <= self.mem.len());
        // SAFETY: as in `load16`.
        unsafe { core::ptr::write_volatile(self.mem.ptr(off) as *mut u16, v.to_le()) }
    }

    fn store32(&mut self, off: usize, v: u32) {
        debug_assert!(off.is_multiple_of(4) && off + 4 <= self.mem.len());
        // SAFETY: as in `load16`.
        unsafe { core::ptr::write_volatile(self.mem.ptr(off) as *mut u32, v.to_le()) }
    }
}
