//! virtio-blk (virtio 1.2 §5.2) over a [`VirtioPci`] transport, as a `capmon_block::BlockDevice`.
//!
//! Requests are a header, the data and a status byte (a 3-descriptor chain unless SIZE_MAX forces
//! more data segments). A large transfer is cut into requests of at most one slot, several in
//! flight; a batch of reads (`read_batch`) goes through the same engine, keeping up to the asked
//! depth in flight (at most one request per slot). No request allocates. The device moves data
//! straight to or from the caller's buffer when `Dma::dma_address` can name it; otherwise
//! through a preallocated DMA bounce buffer (one slot per request in flight).
//!
//! Completions arrive as the [`Wakeup`] says: MSI-X, INTx (the waiter reads ISR after each
//! wakeup to deassert the line) or polling. A device reset unmaps its MSI-X vectors, so every
//! (re)initialisation sets them again.
use crate::features::blk as f;
use crate::irq::Wakeup;
use crate::monitor::VirtioMonitor;
use crate::pci::{VirtioPci, VIRTIO_MSI_NO_VECTOR};
use crate::queue::{Segment, SplitVirtqueue};
use crate::VirtioError;
use alloc::format;
use alloc::string::String;
use capmon_block::{check_request, BlkError, BlkInfo, BlockDevice, ReadReq, WriteReq};
use capmon_hal::DmaRegion;
use capmon_hal::{Dma, Mmio};

/// Request types (§5.2.6).
const VIRTIO_BLK_T_IN: u32 = 0;
const VIRTIO_BLK_T_OUT: u32 = 1;
const VIRTIO_BLK_T_FLUSH: u32 = 4;
const VIRTIO_BLK_T_GET_ID: u32 = 8;
/// Status values (§5.2.6).
const VIRTIO_BLK_S_OK: u8 = 0;
const VIRTIO_BLK_S_IOERR: u8 = 1;
const VIRTIO_BLK_S_UNSUPP: u8 = 2;
/// What we put in the status byte before submitting, to catch a device that never writes it.
const STATUS_UNSET: u8 = 0xff;
/// GET_ID answers with at most 20 bytes (§5.2.6).
const ID_BYTES: usize = 20;
/// The header's sector field and `capacity` count 512-byte units whatever blk_size is (§5.2.4).
const UNIT: u64 = 512;

// Device configuration layout (§5.2.4).
const CFG_CAPACITY: usize = 0x00;
const CFG_SIZE_MAX: usize = 0x08;
const CFG_SEG_MAX: usize = 0x0c;
const CFG_BLK_SIZE: usize = 0x14;
const CFG_TOPOLOGY: usize = 0x18;
const CFG_TOPOLOGY_END: usize = 0x20;

/// The blk features capmon understands; the rest are left unacknowledged.
pub const UNDERSTOOD: u64 = f::SIZE_MAX | f::SEG_MAX | f::BLK_SIZE | f::RO | f::FLUSH | f::TOPOLOGY;

/// Requests in flight at once, each with its own bounce slot and header.
const MAX_SLOTS: usize = 4;
/// Bounce slot sizes to try, largest first, if DMA memory is short.
const SLOT_SIZES: [usize; 4] = [256 * 1024, 64 * 1024, 16 * 1024, 4096];
/// Data descriptors per request at most (only SIZE_MAX devices need more than one).
const MAX_DATA_SEGS: usize = 16;
/// Header (16 bytes) and status byte of one slot.
const HDR_STRIDE: usize = 32;
const HDR_LEN: u32 = 16;
const QUEUE_SIZE: u16 = 128;
const DEFAULT_TIMEOUT_NS: u64 = 10_000_000_000;
/// Largest logical sector we accept from blk_size.
const MAX_SECTOR: u32 = 64 * 1024;

#[derive(Debug, Clone, Copy)]
struct Inflight {
    head: u16,
    /// Which of the transfer's buffers the request's data belongs to, and where in it.
    part: usize,
    buf_off: usize,
    len: usize,
    /// The data went through the slot's bounce buffer (not straight to the caller's buffer).
    bounced: bool,
}

/// The caller's buffers of a transfer: reads into, or writes from, one or more buffers, each
/// at its own LBA.
enum Data<'a, 'b> {
    In(&'a mut [ReadReq<'b>]),
    Out(&'a [WriteReq<'b>]),
}

impl Data<'_, '_> {
    /// Buffer `part`'s first sector and length; `None` past the last.
    fn part(&self, part: usize) -> Option<(u64, usize)> {
        match self {
            Data::In(reqs) => reqs.get(part).map(|r| (r.lba, r.buf.len())),
            Data::Out(reqs) => reqs.get(part).map(|r| (r.lba, r.buf.len())),
        }
    }

    /// Bytes `off .. off+len` of buffer `part`, for the device to read or write.
    fn chunk(&mut self, part: usize, off: usize, len: usize) -> Option<*const u8> {
        match self {
            Data::In(reqs) => reqs
                .get_mut(part)
                .and_then(|r| r.buf.get_mut(off..off + len))
                .map(|c| c.as_mut_ptr() as *const u8),
            Data::Out(reqs) => reqs
                .get(part)
                .and_then(|r| r.buf.get(off..off + len))
                .map(|c| c.as_ptr()),
        }
    }
}

/// A virtio-blk device.
pub struct VirtioBlk {
    transport: VirtioPci,
    queue: SplitVirtqueue,
    wakeup: Wakeup,
    dma: &'static (dyn Dma + Sync),
    bounce: DmaRegion,
    headers: DmaRegion,
    slots: usize,
    slot_bytes: usize,
    /// Largest data segment (SIZE_MAX) and largest request, in bytes.
    max_segment: usize,
    max_request: usize,
    sector_size: u32,
    /// Logical sectors.
    capacity: u64,
    read_only: bool,
    has_flush: bool,
    serial: Option<String>,
    inflight: [Option<Inflight>; MAX_SLOTS],
    timeout_ns: u64,
    /// Set when the device was reset after a timeout or protocol error; the next request
    /// re-initialises it.
    dead: Option<VirtioError>,
}

/// What the device configuration says, after checking it.
struct Geometry {
    sector_size: u32,
    capacity: u64,
    size_max: Option<u32>,
    seg_max: Option<u32>,
}

impl VirtioBlk {
    /// Initialises the device (§3.1.1) and reads its identity. On failure the device is reset
    /// and left FAILED, and the monitor (taken from the transport beforehand) says why.
    pub fn new(
        transport: VirtioPci,
        dma: &'static (dyn Dma + Sync),
        wakeup: Wakeup,
    ) -> Result<Self, VirtioError> {
        Self::try_new(transport, dma, wakeup).map_err(|(t, e)| Self::give_up(t, e))
    }

    /// As `new`, but a failure hands the transport back untouched, so the caller can retry
    /// with another wakeup (after a refused MSI-X vector) or give up.
    pub(crate) fn try_new(
        transport: VirtioPci,
        dma: &'static (dyn Dma + Sync),
        wakeup: Wakeup,
    ) -> Result<Self, (VirtioPci, VirtioError)> {
        let mut blk = Self::start(transport, dma, wakeup)?;
        blk.serial = blk.read_serial();
        log::info!(
            "virtio-blk: {} sectors of {} bytes{}{}, requests up to {} bytes, {} in flight",
            blk.capacity,
            blk.sector_size,
            if blk.read_only { ", read-only" } else { "" },
            if blk.has_flush { ", flush" } else { "" },
            blk.max_request,
            blk.slots
        );
        Ok(blk)
    }

    /// Leaves a device that could not be brought up reset (unless it refused features, which
    /// stays visible) and FAILED, with the reason in the monitor.
    pub(crate) fn give_up(t: VirtioPci, e: VirtioError) -> VirtioError {
        if !matches!(
            e,
            VirtioError::FeaturesRefused { .. } | VirtioError::NoVersion1
        ) {
            let _ = t.reset();
        }
        t.fail(e.clone());
        e
    }

    fn start(
        mut transport: VirtioPci,
        dma: &'static (dyn Dma + Sync),
        mut wakeup: Wakeup,
    ) -> Result<Self, (VirtioPci, VirtioError)> {
        macro_rules! tri {
            ($e:expr) => {
                match $e {
                    Ok(v) => v,
                    Err(e) => return Err((transport, e)),
                }
            };
        }
        let accepted = tri!(transport.negotiate(UNDERSTOOD));
        let geo = tri!(read_geometry(&transport, accepted));
        let (bounce, slot_bytes, headers) = tri!(alloc_buffers(dma, geo.sector_size));
        let mut queue = tri!(transport.setup_queue(0, QUEUE_SIZE, dma, wakeup.queue_entry));
        queue.set_interrupts(wakeup.completion.wants_interrupts());
        // Dropping `queue` on error is safe: before DRIVER_OK the device uses no buffers (§3.1.1).
        let (max_segment, max_request, slots) = tri!(request_limits(
            &geo,
            slot_bytes,
            bounce.len() / slot_bytes,
            queue.size()
        ));
        map_config_vector(&transport, &mut wakeup);
        transport.driver_ok();
        Ok(VirtioBlk {
            transport,
            queue,
            wakeup,
            dma,
            bounce,
            headers,
            slots,
            slot_bytes,
            max_segment,
            max_request,
            sector_size: geo.sector_size,
            capacity: geo.capacity,
            read_only: accepted & f::RO != 0,
            has_flush: accepted & f::FLUSH != 0,
            serial: None,
            inflight: [None; MAX_SLOTS],
            timeout_ns: DEFAULT_TIMEOUT_NS,
            dead: None,
        })
    }

    /// How completions reach this driver.
    pub fn wakeup(&self) -> &Wakeup {
        &self.wakeup
    }

    /// The record the `virtio` command shows.
    pub fn monitor(&self) -> VirtioMonitor {
        self.transport.monitor()
    }

    /// How long one request may take before the device is declared hung and reset.
    pub fn set_timeout_ms(&mut self, ms: u64) {
        self.timeout_ns = ms.saturating_mul(1_000_000);
    }

    /// Largest request sent to the device, in bytes.
    pub fn max_request_bytes(&self) -> usize {
        self.max_request
    }

    /// Asks the device for its serial (GET_ID). `None` if unsupported or empty.
    fn read_serial(&mut self) -> Option<String> {
        match self.single(VIRTIO_BLK_T_GET_ID, 0, ID_BYTES, true) {
            Ok(()) => {}
            Err(e) => {
                log::info!("virtio-blk: no serial ({})", e);
                return None;
            }
        }
        let mut id = [0u8; ID_BYTES];
        // SAFETY: slot 0 holds at least ID_BYTES (slots are >= 4 KiB) and the request completed.
        unsafe { core::ptr::copy_nonoverlapping(self.bounce.ptr(0), id.as_mut_ptr(), ID_BYTES) };
        let end = id.iter().position(|b| *b == 0).unwrap_or(ID_BYTES);
        let s: String = id
            .iter()
            .take(end)
            .map(|b| {
                if b.is_ascii_graphic() || *b == b' ' {
                    *b as char
                } else {
                    '?'
                }
            })
            .collect();
        let s = String::from(s.trim());
        if s.is_empty() {
            None
        } else {
            Some(s)
        }
    }

    /// One request using slot 0 (flush, GET_ID); no data when `len` is 0.
    fn single(
        &mut self,
        kind: u32,
        sector: u64,
        len: usize,
        device_writes: bool,
    ) -> Result<(), BlkError> {
        self.revive()?;
        let head = self.submit(0, kind, sector, self.bounce.phys(), len, device_writes)?;
        self.queue.kick(self.transport.notify_window());
        let (used, _) = self.wait_one()?;
        if used != head {
            return Err(self.die(VirtioError::DeviceBug(
                "completed a request we did not send",
            )));
        }
        self.slot_status(0)
    }

    /// Moves `data` to or from the device with up to `depth` requests in flight (at most one
    /// per slot): each buffer is cut into requests of at most `max_request` bytes, taken in
    /// order. Every buffer is already checked against the geometry. On error the first one is
    /// returned once nothing is in flight.
    fn transfer(&mut self, mut data: Data<'_, '_>, depth: usize) -> Result<(), BlkError> {
        self.revive()?;
        let (kind, device_writes) = match &data {
            Data::In(_) => (VIRTIO_BLK_T_IN, true),
            Data::Out(..) => (VIRTIO_BLK_T_OUT, false),
        };
        let depth = depth.clamp(1, self.slots);
        let ss = self.sector_size as usize;
        let units_per_sector = self.sector_size as u64 / UNIT;
        // The next request: buffer `part`, from byte `next` of it.
        let (mut part, mut next) = (0usize, 0usize);
        let mut pending = 0usize;
        let mut first_err = None;
        loop {
            let mut queued = false;
            while first_err.is_none() && pending < depth {
                let Some((lba, total)) = data.part(part) else {
                    break;
                };
                if next >= total {
                    part += 1;
                    next = 0;
                    continue;
                }
                let Some(slot) = self
                    .inflight
                    .iter()
                    .take(self.slots)
                    .position(Option::is_none)
                else {
                    break;
                };
                let len = self.max_request.min(total - next);
                let sector = (lba + (next / ss) as u64) * units_per_sector;
                // Straight to the caller's memory when it is DMA-able: no CPU copy at all.
                let direct = data
                    .chunk(part, next, len)
                    .and_then(|p| self.dma.dma_address(p, len));
                let addr = match direct {
                    Some(a) => a,
                    None => {
                        if let Data::Out(reqs) = &data {
                            let src = reqs.get(part).and_then(|r| r.buf.get(next..next + len));
                            self.fill_slot(slot, src.unwrap_or(&[]));
                        }
                        self.slot_phys(slot)
                    }
                };
                let head = self.submit(slot, kind, sector, addr, len, device_writes)?;
                if let Some(s) = self.inflight.get_mut(slot) {
                    *s = Some(Inflight {
                        head,
                        part,
                        buf_off: next,
                        len,
                        bounced: direct.is_none(),
                    });
                }
                pending += 1;
                next += len;
                queued = true;
            }
            if queued {
                self.queue.kick(self.transport.notify_window());
            }
            if pending == 0 {
                break;
            }
            let (head, _) = self.wait_one()?;
            let Some(slot) = self
                .inflight
                .iter()
                .position(|s| matches!(s, Some(i) if i.head == head))
            else {
                return Err(self.die(VirtioError::DeviceBug(
                    "completed a request we did not send",
                )));
            };
            let Some(done) = self.inflight.get_mut(slot).and_then(Option::take) else {
                continue;
            };
            pending -= 1;
            match self.slot_status(slot) {
                Ok(()) if done.bounced => {
                    if let Data::In(reqs) = &mut data {
                        let dst = reqs
                            .get_mut(done.part)
                            .and_then(|r| r.buf.get_mut(done.buf_off..done.buf_off + done.len));
                        if let Some(d) = dst {
                            self.drain_slot(slot, d);
                        }
                    }
                }
                Ok(()) => {}
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Device address of `slot`'s bounce buffer.
    fn slot_phys(&self, slot: usize) -> u64 {
        self.bounce.phys() + (slot * self.slot_bytes) as u64
    }

    /// Writes the header of `slot`, queues header + `len` bytes of data at device address
    /// `data` + status. Returns the chain head.
    fn submit(
        &mut self,
        slot: usize,
        kind: u32,
        sector: u64,
        data: u64,
        len: usize,
        device_writes: bool,
    ) -> Result<u16, BlkError> {
        let hdr_off = slot * HDR_STRIDE;
        // SAFETY: `slot < slots` so the header and status byte lie inside `headers`
        // (slots * HDR_STRIDE bytes, 16-aligned); the slot is not in flight, so the device does
        // not access it.
        unsafe {
            let h = self.headers.ptr(hdr_off);
            core::ptr::write_volatile(h as *mut u32, kind.to_le());
            core::ptr::write_volatile(h.add(4) as *mut u32, 0);
            core::ptr::write_volatile(h.add(8) as *mut u64, sector.to_le());
            core::ptr::write_volatile(h.add(HDR_LEN as usize), STATUS_UNSET);
        }
        let hdr = self.headers.phys() + hdr_off as u64;
        let blank = Segment {
            addr: 0,
            len: 0,
            device_writes: false,
        };
        let mut segs = [blank; MAX_DATA_SEGS + 2];
        let mut n = 0;
        let mut push = |s: Segment| match segs.get_mut(n) {
            Some(e) => {
                *e = s;
                n += 1;
                Ok(())
            }
            None => Err(BlkError::Other(String::from(
                "virtio-blk: request needs too many segments",
            ))),
        };
        push(Segment {
            addr: hdr,
            len: HDR_LEN,
            device_writes: false,
        })?;
        let mut off = 0;
        while off < len {
            let l = self.max_segment.min(len - off);
            push(Segment {
                addr: data + off as u64,
                len: l as u32,
                device_writes,
            })?;
            off += l;
        }
        push(Segment {
            addr: hdr + HDR_LEN as u64,
            len: 1,
            device_writes: true,
        })?;
        match self.queue.add(&segs[..n]) {
            Ok(head) => Ok(head),
            // Slots are sized so the queue never fills. If it does anyway, other requests may be
            // in flight: reset, so their buffers are ours again.
            Err(e) => Err(self.die(e.into())),
        }
    }

    /// Waits for the device to use one chain.
    fn wait_one(&mut self) -> Result<(u16, u32), BlkError> {
        let (queue, transport) = (&self.queue, &self.transport);
        let read_isr = self.wakeup.read_isr;
        let ack = self.wakeup.intx_ack();
        let done = &mut || {
            // INTx: reading ISR is what deasserts the line (§4.1.4.5), so the waiter does it on
            // every wakeup, then lets the interrupt layer unmask the line; with MSI-X the
            // driver must not (it would race other queues).
            let ack_intx = || {
                transport.isr();
                if let Some((irq, v)) = &ack {
                    irq.end_intx(v);
                }
            };
            if read_isr {
                ack_intx();
            }
            let done = queue.has_used();
            // The device writes the used ring before it raises the interrupt: an interrupt for
            // this completion may have come after the read above. Read ISR once more, or the
            // line stays asserted with nobody left to look.
            if done && read_isr {
                ack_intx();
            }
            done
        };
        if !self.wakeup.completion.wait(self.timeout_ns, done) {
            return Err(self.die(VirtioError::Timeout));
        }
        match self.queue.pop_used() {
            Ok(Some(u)) => Ok(u),
            Ok(None) => Err(self.die(VirtioError::DeviceBug("used index went back"))),
            Err(e) => Err(self.die(e.into())),
        }
    }

    fn slot_status(&self, slot: usize) -> Result<(), BlkError> {
        // SAFETY: inside `headers` (see `submit`); the request completed, the device is done.
        let s = unsafe {
            core::ptr::read_volatile(self.headers.ptr(slot * HDR_STRIDE + HDR_LEN as usize))
        };
        let what = match s {
            VIRTIO_BLK_S_OK => return Ok(()),
            VIRTIO_BLK_S_IOERR => "I/O error",
            VIRTIO_BLK_S_UNSUPP => "unsupported request",
            STATUS_UNSET => "device wrote no status",
            _ => "unknown status",
        };
        Err(BlkError::Device {
            status: s as u32,
            what,
        })
    }

    fn fill_slot(&mut self, slot: usize, src: &[u8]) {
        let len = src.len().min(self.slot_bytes);
        // SAFETY: the slot lies inside `bounce` (slot < slots) and is not in flight.
        unsafe {
            core::ptr::copy_nonoverlapping(
                src.as_ptr(),
                self.bounce.ptr(slot * self.slot_bytes),
                len,
            )
        };
    }

    fn drain_slot(&self, slot: usize, dst: &mut [u8]) {
        let len = dst.len().min(self.slot_bytes);
        // SAFETY: the slot lies inside `bounce` and its request completed.
        unsafe {
            core::ptr::copy_nonoverlapping(
                self.bounce.ptr(slot * self.slot_bytes),
                dst.as_mut_ptr(),
                len,
            )
        };
    }

    /// Resets a device that hung or broke the protocol, so it stops touching our memory.
    fn die(&mut self, why: VirtioError) -> BlkError {
        log::error!("virtio-blk: {}; resetting the device", why);
        let _ = self.transport.reset();
        self.inflight = [None; MAX_SLOTS];
        self.transport.monitor().set_problem(why.clone());
        let err = match &why {
            VirtioError::Timeout => BlkError::Timeout,
            e => BlkError::Other(format!("virtio-blk: {}", e)),
        };
        self.dead = Some(why);
        err
    }

    /// Re-initialises a device reset by `die`, so one hang does not lose the disk for good.
    fn revive(&mut self) -> Result<(), BlkError> {
        let Some(why) = self.dead.clone() else {
            return Ok(());
        };
        let again = |e: VirtioError| {
            BlkError::Other(format!(
                "virtio-blk: device reset after '{}', restart failed: {}",
                why, e
            ))
        };
        let accepted = self.transport.negotiate(UNDERSTOOD).map_err(again)?;
        if (accepted & f::RO != 0) != self.read_only {
            let e = VirtioError::BadConfig("read-only flag changed");
            self.transport.fail(e.clone());
            return Err(again(e));
        }
        // The device is reset, so the old queue's memory may go once the new queue replaces it.
        // The reset unmapped the MSI-X vectors (§4.1.5.1.2): set them again.
        let mut queue = self
            .transport
            .setup_queue(0, QUEUE_SIZE, self.dma, self.wakeup.queue_entry)
            .map_err(again)?;
        if queue.size() < self.queue.size() {
            let _ = self.transport.reset();
            return Err(again(VirtioError::BadConfig("queue shrank")));
        }
        queue.set_interrupts(self.wakeup.completion.wants_interrupts());
        self.queue = queue;
        map_config_vector(&self.transport, &mut self.wakeup);
        self.transport.driver_ok();
        self.dead = None;
        log::info!("virtio-blk: device re-initialised after '{}'", why);
        Ok(())
    }
}

impl Drop for VirtioBlk {
    fn drop(&mut self) {
        // Stop the device before the queue and buffers return to the allocator, and before
        // the wakeup masks its MSI-X entries and frees its vectors.
        let _ = self.transport.reset();
    }
}

/// Maps configuration changes to the wakeup's config entry. A refusal is not fatal: the
/// device still works, only config changes go unsignalled; the entry is masked and its vector
/// freed. Also records the wakeup's vectors in the monitor.
fn map_config_vector(t: &VirtioPci, wakeup: &mut Wakeup) {
    if let Err(e) = t.set_config_vector(wakeup.config_entry) {
        log::warn!(
            "virtio-blk: {}; configuration changes will not interrupt",
            e
        );
        wakeup.drop_config_vector(e);
        let _ = t.set_config_vector(VIRTIO_MSI_NO_VECTOR);
    }
    let m = t.monitor();
    m.set_completion(wakeup.mechanism());
    m.set_config_irq(wakeup.config_vector());
    m.set_queue_irq(0, wakeup.queue_vector());
}

fn read_geometry(t: &VirtioPci, accepted: u64) -> Result<Geometry, VirtioError> {
    let need = if accepted & f::TOPOLOGY != 0 {
        CFG_TOPOLOGY_END
    } else if accepted & f::BLK_SIZE != 0 {
        CFG_BLK_SIZE + 4
    } else {
        CFG_SEG_MAX + 4
    };
    if t.config_len() < need {
        return Err(VirtioError::BadConfig(
            "device configuration window too short",
        ));
    }
    let (units, size_max, seg_max, blk_size, topo) = t.read_config(|c: &dyn Mmio| {
        let units = (c.read32(CFG_CAPACITY + 4) as u64) << 32 | c.read32(CFG_CAPACITY) as u64;
        let topo = if accepted & f::TOPOLOGY != 0 {
            (
                c.read8(CFG_TOPOLOGY),
                c.read16(CFG_TOPOLOGY + 2),
                c.read32(CFG_TOPOLOGY + 4),
            )
        } else {
            (0, 0, 0)
        };
        let blk_size = if accepted & f::BLK_SIZE != 0 {
            c.read32(CFG_BLK_SIZE)
        } else {
            0
        };
        (
            units,
            c.read32(CFG_SIZE_MAX),
            c.read32(CFG_SEG_MAX),
            blk_size,
            topo,
        )
    })?;
    let sector_size = if accepted & f::BLK_SIZE == 0 {
        UNIT as u32
    } else if blk_size.is_power_of_two() && (UNIT as u32..=MAX_SECTOR).contains(&blk_size) {
        blk_size
    } else {
        log::warn!("virtio-blk: ignoring blk_size {}, using 512", blk_size);
        UNIT as u32
    };
    if accepted & f::TOPOLOGY != 0 {
        log::info!(
            "virtio-blk: topology: {} logical per physical block, min io {} blocks, optimal io {} blocks",
            1u64.checked_shl(topo.0 as u32).unwrap_or(0),
            topo.1,
            topo.2
        );
    }
    let capacity = units / (sector_size as u64 / UNIT);
    if capacity == 0 {
        return Err(VirtioError::BadConfig("capacity is zero"));
    }
    Ok(Geometry {
        sector_size,
        capacity,
        size_max: (accepted & f::SIZE_MAX != 0).then_some(size_max),
        seg_max: (accepted & f::SEG_MAX != 0).then_some(seg_max),
    })
}

/// The bounce buffer (as many slots as memory allows, largest slot size first) and headers.
fn alloc_buffers(
    dma: &'static (dyn Dma + Sync),
    sector_size: u32,
) -> Result<(DmaRegion, usize, DmaRegion), VirtioError> {
    let headers = DmaRegion::alloc(dma, MAX_SLOTS * HDR_STRIDE, 16).ok_or(VirtioError::NoMemory)?;
    for slot in SLOT_SIZES
        .iter()
        .copied()
        .filter(|s| *s >= sector_size as usize)
    {
        for slots in (1..=MAX_SLOTS).rev() {
            if let Some(b) = DmaRegion::alloc(dma, slot * slots, 4096) {
                return Ok((b, slot, headers));
            }
        }
    }
    Err(VirtioError::NoMemory)
}

/// `(max segment bytes, max request bytes, slots)` from the device limits (SIZE_MAX, SEG_MAX),
/// the bounce slot size and the queue size.
fn request_limits(
    geo: &Geometry,
    slot_bytes: usize,
    bounce_slots: usize,
    queue_size: u16,
) -> Result<(usize, usize, usize), VirtioError> {
    let qsize = queue_size as usize;
    if qsize < 3 {
        return Err(VirtioError::BadConfig("queue too small for a request"));
    }
    let seg_limit = match geo.seg_max {
        Some(0) => return Err(VirtioError::BadConfig("seg_max is zero")),
        Some(n) => n as usize,
        None => MAX_DATA_SEGS,
    };
    let segs = seg_limit.min(MAX_DATA_SEGS).min(qsize - 2);
    let max_segment = match geo.size_max {
        Some(0) | None => slot_bytes,
        Some(n) => (n as usize).min(slot_bytes),
    };
    let ss = geo.sector_size as usize;
    let max_request = (max_segment * segs).min(slot_bytes) / ss * ss;
    if max_request == 0 {
        return Err(VirtioError::BadConfig(
            "size_max * seg_max is smaller than a sector",
        ));
    }
    let descs = 2 + max_request.div_ceil(max_segment);
    let slots = bounce_slots.min(MAX_SLOTS).min(qsize / descs).max(1);
    Ok((max_segment, max_request, slots))
}

impl BlockDevice for VirtioBlk {
    fn sector_size(&self) -> u32 {
        self.sector_size
    }

    fn capacity(&self) -> u64 {
        self.capacity
    }

    fn read_only(&self) -> bool {
        self.read_only
    }

    fn info(&self) -> BlkInfo {
        BlkInfo {
            driver: "virtio-blk",
            model: None,
            serial: self.serial.clone(),
        }
    }

    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), BlkError> {
        check_request(lba, buf.len(), self.sector_size, self.capacity)?;
        self.transfer(Data::In(&mut [ReadReq { lba, buf }]), self.slots)
    }

    fn write(&mut self, lba: u64, buf: &[u8]) -> Result<(), BlkError> {
        if self.read_only {
            return Err(BlkError::ReadOnly);
        }
        check_request(lba, buf.len(), self.sector_size, self.capacity)?;
        self.transfer(Data::Out(&[WriteReq { lba, buf }]), self.slots)
    }

    fn flush(&mut self) -> Result<(), BlkError> {
        if !self.has_flush {
            // Without VIRTIO_BLK_F_FLUSH the device is write-through: nothing to do (§5.2).
            return Ok(());
        }
        self.single(VIRTIO_BLK_T_FLUSH, 0, 0, false)
    }

    /// One request per bounce slot (and header) at a time.
    fn max_depth(&self) -> usize {
        self.slots
    }

    fn read_batch(&mut self, reqs: &mut [ReadReq<'_>], depth: usize) -> Result<(), BlkError> {
        for r in reqs.iter() {
            check_request(r.lba, r.buf.len(), self.sector_size, self.capacity)?;
        }
        if reqs.is_empty() {
            return Ok(());
        }
        self.transfer(Data::In(reqs), depth)
    }

    fn write_batch(&mut self, reqs: &[WriteReq<'_>], depth: usize) -> Result<(), BlkError> {
        if self.read_only {
            return Err(BlkError::ReadOnly);
        }
        for r in reqs {
            check_request(r.lba, r.buf.len(), self.sector_size, self.capacity)?;
        }
        if reqs.is_empty() {
            return Ok(());
        }
        self.transfer(Data::Out(reqs), depth)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{BlkConfig, FakeBlk};
    use crate::features::{self as feat, blk as bf};
    use crate::monitor::DeviceStatus;
    use crate::Driver;
    use alloc::vec;
    use alloc::vec::Vec;

    fn pattern(off: usize, len: usize) -> Vec<u8> {
        (off..off + len).map(|i| (i * 7 + i / 512) as u8).collect()
    }

    fn up(cfg: BlkConfig) -> (FakeBlk, VirtioBlk) {
        let fake = FakeBlk::new(cfg);
        let blk = fake.driver().expect("driver comes up");
        (fake, blk)
    }

    /// Reads `len` bytes at `lba` and checks them against the fake disk's initial pattern.
    fn assert_reads(blk: &mut VirtioBlk, lba: u64, len: usize) {
        let mut buf = vec![0u8; len];
        blk.read(lba, &mut buf).unwrap();
        assert_eq!(buf, pattern(lba as usize * blk.sector_size() as usize, len));
    }

    fn no_violations(fake: &FakeBlk) {
        let d = fake.dev.lock().unwrap();
        assert!(d.violations.is_empty(), "device saw: {:?}", d.violations);
    }

    #[test]
    fn read_write_flush_round_trip() {
        let (fake, mut blk) = up(BlkConfig::default());
        assert_eq!(blk.sector_size(), 512);
        assert_eq!(blk.capacity(), 8192);
        assert!(!blk.read_only());
        assert_eq!(blk.info().serial.as_deref(), Some("capmon-serial-01"));

        assert_reads(&mut blk, 3, 4096);

        let data: Vec<u8> = (0..8192).map(|i| (i % 251) as u8).collect();
        blk.write(100, &data).unwrap();
        blk.flush().unwrap();
        let mut back = vec![0u8; 8192];
        blk.read(100, &mut back).unwrap();
        assert_eq!(back, data);
        assert_eq!(
            &fake.dev.lock().unwrap().disk[100 * 512..100 * 512 + 8192],
            &data[..]
        );

        let kinds: Vec<u32> = fake
            .dev
            .lock()
            .unwrap()
            .requests
            .iter()
            .map(|r| r.kind)
            .collect();
        assert_eq!(
            kinds,
            [
                VIRTIO_BLK_T_GET_ID,
                VIRTIO_BLK_T_IN,
                VIRTIO_BLK_T_OUT,
                VIRTIO_BLK_T_FLUSH,
                VIRTIO_BLK_T_IN
            ]
        );
        // Every request is header + one data segment + status.
        assert!(fake
            .dev
            .lock()
            .unwrap()
            .requests
            .iter()
            .all(|r| r.data_segs <= 1));
        let r = blk.monitor().report();
        assert_eq!(r.status, DeviceStatus(0x0f));
        assert_eq!(r.queues.len(), 1);
        let q = &r.queues[0];
        assert_eq!(
            (q.size, q.avail_idx, q.used_idx, q.free, q.completions),
            (128, 5, 5, 128, 5)
        );
        assert_eq!(q.notifications, fake.dev.lock().unwrap().notifies);
        no_violations(&fake);
    }

    #[test]
    fn unknown_features_are_not_acked() {
        let offered =
            BlkConfig::default().offered | bf::DISCARD | bf::MQ | feat::RING_EVENT_IDX | 1 << 50;
        let (fake, mut blk) = up(BlkConfig {
            offered,
            ..Default::default()
        });
        let acked = fake.dev.lock().unwrap().driver_features();
        assert_eq!(
            acked,
            feat::VERSION_1 | bf::SEG_MAX | bf::BLK_SIZE | bf::FLUSH | bf::TOPOLOGY
        );
        let r = blk.monitor().report();
        assert_eq!((r.offered, r.accepted), (offered, acked));
        assert_reads(&mut blk, 0, 512);
        no_violations(&fake);
    }

    #[test]
    fn refused_features_leave_device_failed() {
        let fake = FakeBlk::new(BlkConfig {
            refuse_features_ok: true,
            ..Default::default()
        });
        let p = fake.probe();
        assert!(p.driver.is_none());
        let r = p.monitor.report();
        assert!(matches!(
            r.problem,
            Some(VirtioError::FeaturesRefused { .. })
        ));
        assert!(r.status.has(DeviceStatus::FAILED));
        assert!(!r.status.has(DeviceStatus::FEATURES_OK));
        assert!(fake.dev.lock().unwrap().status() & DeviceStatus::FAILED != 0);
        assert!(fake.dev.lock().unwrap().requests.is_empty());
        no_violations(&fake);
    }

    #[test]
    fn version_1_is_required() {
        let fake = FakeBlk::new(BlkConfig {
            offered: bf::FLUSH,
            ..Default::default()
        });
        assert_eq!(fake.driver().err(), Some(VirtioError::NoVersion1));
        assert!(fake.dev.lock().unwrap().status() & DeviceStatus::FAILED != 0);
    }

    #[test]
    fn probe_binds_the_driver() {
        let fake = FakeBlk::new(BlkConfig::default());
        let p = fake.probe();
        let Some(Driver::Blk(mut blk)) = p.driver else {
            panic!("no driver")
        };
        let mut buf = vec![0u8; 512];
        blk.read(7, &mut buf).unwrap();
        assert_eq!(p.monitor.report().queues[0].completions, 2); // GET_ID + read
    }

    #[test]
    fn requests_split_at_size_max_and_seg_max() {
        let offered = BlkConfig::default().offered | bf::SIZE_MAX;
        let (fake, mut blk) = up(BlkConfig {
            offered,
            size_max: 4096,
            seg_max: 3,
            ..Default::default()
        });
        assert_eq!(blk.max_request_bytes(), 12288);
        let mut buf = vec![0u8; 100 * 1024];
        blk.read(5, &mut buf).unwrap();
        assert_eq!(buf, pattern(5 * 512, 100 * 1024));
        let d = fake.dev.lock().unwrap();
        let reads: Vec<_> = d
            .requests
            .iter()
            .filter(|r| r.kind == VIRTIO_BLK_T_IN)
            .collect();
        assert_eq!(reads.len(), 9); // 8 * 12 KiB + 4 KiB
        assert!(reads.iter().all(|r| r.bytes <= 12288 && r.data_segs <= 3));
        let units: Vec<u64> = reads.iter().map(|r| r.unit).collect();
        assert_eq!(units, [5, 29, 53, 77, 101, 125, 149, 173, 197]);
        assert!(d.violations.is_empty(), "{:?}", d.violations);
    }

    #[test]
    fn large_reads_use_bounce_slots_in_parallel() {
        let (fake, mut blk) = up(BlkConfig {
            reverse: true,
            ..Default::default()
        });
        let mut buf = vec![0u8; 1 << 20];
        blk.read(1, &mut buf).unwrap();
        assert_eq!(buf, pattern(512, 1 << 20));
        let d = fake.dev.lock().unwrap();
        let reads: Vec<_> = d
            .requests
            .iter()
            .filter(|r| r.kind == VIRTIO_BLK_T_IN)
            .collect();
        assert_eq!(reads.len(), 4);
        assert!(reads.iter().all(|r| r.bytes == 256 * 1024));
        // Without `dma_address` the data went through the bounce slots, not the caller's buffer.
        let b = buf.as_ptr() as u64..buf.as_ptr() as u64 + (1 << 20);
        assert!(reads.iter().all(|r| !b.contains(&r.data_addr)));
        assert_eq!(d.max_outstanding, 4);
        assert!(d.violations.is_empty(), "{:?}", d.violations);
    }

    #[test]
    fn dma_able_buffers_skip_the_bounce_slots() {
        let (fake, mut blk) = up(BlkConfig {
            reverse: true,
            ..Default::default()
        });
        fake.dma
            .direct
            .store(true, core::sync::atomic::Ordering::Relaxed);
        let mut buf = vec![0u8; 1 << 20];
        blk.read(1, &mut buf).unwrap();
        assert_eq!(buf, pattern(512, 1 << 20));
        let data: Vec<u8> = (0..300 * 1024).map(|i| (i % 253) as u8).collect();
        blk.write(2000, &data).unwrap();
        assert_eq!(
            &fake.dev.lock().unwrap().disk[2000 * 512..2000 * 512 + data.len()],
            &data[..]
        );
        let d = fake.dev.lock().unwrap();
        let at = |kind: u32| -> Vec<u64> {
            d.requests
                .iter()
                .filter(|r| r.kind == kind)
                .map(|r| r.data_addr)
                .collect()
        };
        // The device addressed the callers' buffers themselves, slot-sized pieces in parallel.
        let (b, w) = (buf.as_ptr() as u64, data.as_ptr() as u64);
        let slot = 256 * 1024;
        assert_eq!(
            at(VIRTIO_BLK_T_IN),
            [b, b + slot, b + 2 * slot, b + 3 * slot]
        );
        assert_eq!(at(VIRTIO_BLK_T_OUT), [w, w + slot]);
        assert_eq!(d.max_outstanding, 4);
        assert!(d.violations.is_empty(), "{:?}", d.violations);
    }

    /// Reads `(lba, sectors)` pieces with `read_batch` at `depth`; checks every buffer against
    /// the fake disk's pattern and returns them.
    fn batch(blk: &mut VirtioBlk, pieces: &[(u64, usize)], depth: usize) -> Vec<Vec<u8>> {
        let ss = blk.sector_size() as usize;
        let mut bufs: Vec<Vec<u8>> = pieces.iter().map(|p| vec![0u8; p.1 * ss]).collect();
        let mut reqs: Vec<ReadReq<'_>> = bufs
            .iter_mut()
            .zip(pieces)
            .map(|(buf, p)| ReadReq { lba: p.0, buf })
            .collect();
        blk.read_batch(&mut reqs, depth).unwrap();
        for (b, p) in bufs.iter().zip(pieces) {
            assert_eq!(*b, pattern(p.0 as usize * ss, b.len()), "LBA {}", p.0);
        }
        bufs
    }

    fn units_read(fake: &FakeBlk) -> Vec<u64> {
        let d = fake.dev.lock().unwrap();
        d.requests
            .iter()
            .filter(|r| r.kind == VIRTIO_BLK_T_IN)
            .map(|r| r.unit)
            .collect()
    }

    #[test]
    fn read_batches_keep_the_asked_depth_in_flight() {
        // Completions come back in reverse, so each must find its own buffer.
        let (fake, mut blk) = up(BlkConfig {
            reverse: true,
            ..Default::default()
        });
        assert_eq!(blk.max_depth(), 4);
        let pieces: Vec<(u64, usize)> = (0..12u64).map(|i| ((i * 2741) % 8184, 8)).collect();
        for (depth, most) in [(1, 1), (2, 2), (3, 3), (32, 4), (0, 1)] {
            fake.dev.lock().unwrap().max_outstanding = 0;
            fake.dev.lock().unwrap().requests.clear();
            batch(&mut blk, &pieces, depth);
            assert_eq!(
                fake.dev.lock().unwrap().max_outstanding,
                most,
                "depth {}",
                depth
            );
            // Sent in the batch's order.
            let want: Vec<u64> = pieces.iter().map(|p| p.0).collect();
            assert_eq!(units_read(&fake), want);
        }
        blk.read_batch(&mut [], 4).unwrap();
        let q = blk.monitor().report().queues[0].clone();
        assert_eq!((q.free, q.avail_idx), (q.size, q.used_idx));
        no_violations(&fake);
    }

    #[test]
    fn write_batches_keep_the_asked_depth_in_flight_and_land_every_piece() {
        let (fake, mut blk) = up(BlkConfig {
            reverse: true,
            ..Default::default()
        });
        // Twelve pieces of 4 KiB, scattered, and one of 100 KiB that is split.
        let mut pieces: Vec<(u64, Vec<u8>)> = (0..12u64)
            .map(|i| (i * 650, vec![i as u8 + 1; 4096]))
            .collect();
        pieces.push((7900, (0..100 * 1024).map(|i| (i % 253) as u8).collect()));
        let reqs: Vec<WriteReq<'_>> = pieces
            .iter()
            .map(|(lba, buf)| WriteReq { lba: *lba, buf })
            .collect();
        for (depth, most) in [(1, 1), (32, 4)] {
            fake.dev.lock().unwrap().max_outstanding = 0;
            blk.write_batch(&reqs, depth).unwrap();
            assert_eq!(fake.dev.lock().unwrap().max_outstanding, most);
            let d = fake.dev.lock().unwrap();
            for (lba, buf) in &pieces {
                let at = *lba as usize * 512;
                assert_eq!(&d.disk[at..at + buf.len()], &buf[..], "lba {}", lba);
            }
        }
        // Checked before anything is sent: one bad request sends none.
        let before = fake.dev.lock().unwrap().requests.len();
        let bad = [
            WriteReq {
                lba: 0,
                buf: &pieces[0].1,
            },
            WriteReq {
                lba: 8190,
                buf: &pieces[0].1,
            },
        ];
        assert!(blk.write_batch(&bad, 4).is_err());
        assert_eq!(fake.dev.lock().unwrap().requests.len(), before);
        blk.write_batch(&[], 4).unwrap();
        no_violations(&fake);
    }

    #[test]
    fn read_batches_split_large_pieces_and_go_direct_when_they_can() {
        let (fake, mut blk) = up(BlkConfig::default());
        // 300 KiB is a 256 KiB and a 44 KiB request, through the bounce slots.
        batch(&mut blk, &[(10, 600), (5000, 8), (2, 1)], 4);
        assert_eq!(units_read(&fake), [10, 522, 5000, 2]);
        assert_eq!(fake.dev.lock().unwrap().max_outstanding, 4);
        fake.dma
            .direct
            .store(true, core::sync::atomic::Ordering::Relaxed);
        fake.dev.lock().unwrap().requests.clear();
        let bufs = batch(&mut blk, &[(100, 8), (7, 16), (3000, 1)], 2);
        let d = fake.dev.lock().unwrap();
        let addrs: Vec<u64> = d.requests.iter().map(|r| r.data_addr).collect();
        let want: Vec<u64> = bufs.iter().map(|b| b.as_ptr() as u64).collect();
        assert_eq!(addrs, want, "the device addressed the callers' buffers");
        assert!(d.violations.is_empty(), "{:?}", d.violations);
    }

    #[test]
    fn read_batch_errors() {
        let (fake, mut blk) = up(BlkConfig {
            bad_unit: Some(600),
            ..Default::default()
        });
        // Every request is checked before any reaches the device.
        let (mut a, mut b) = (vec![0u8; 512], vec![0u8; 1024]);
        let mut reqs = [
            ReadReq {
                lba: 0,
                buf: &mut a,
            },
            ReadReq {
                lba: 8191,
                buf: &mut b,
            },
        ];
        assert_eq!(
            blk.read_batch(&mut reqs, 4),
            Err(BlkError::OutOfRange {
                lba: 8191,
                count: 2,
                capacity: 8192
            })
        );
        let mut c = vec![0u8; 100];
        let mut short = [ReadReq {
            lba: 0,
            buf: &mut c,
        }];
        assert!(matches!(
            blk.read_batch(&mut short, 4),
            Err(BlkError::BadBuffer { .. })
        ));
        // Only GET_ID reached the device.
        assert_eq!(fake.dev.lock().unwrap().requests.len(), 1);
        // A device error in the middle: reported once the queue has drained; nothing is sent
        // after it is seen (at depth 2 the request behind it was already in flight).
        let mut bufs = vec![vec![0u8; 4096]; 8];
        let lbas = [0u64, 8, 16, 596, 24, 32, 40, 48];
        let mut reqs: Vec<ReadReq<'_>> = bufs
            .iter_mut()
            .zip(lbas)
            .map(|(buf, lba)| ReadReq { lba, buf })
            .collect();
        assert_eq!(
            blk.read_batch(&mut reqs, 2),
            Err(BlkError::Device {
                status: 1,
                what: "I/O error"
            })
        );
        assert_eq!(units_read(&fake), [0, 8, 16, 596, 24]);
        let q = blk.monitor().report().queues[0].clone();
        assert_eq!((q.free, q.avail_idx), (q.size, q.used_idx));
        assert_reads(&mut blk, 0, 4096);
        no_violations(&fake);
    }

    #[test]
    fn short_dma_memory_shrinks_the_bounce_buffer() {
        let fake = FakeBlk::new(BlkConfig::default());
        fake.dma
            .max_alloc
            .store(64 * 1024, core::sync::atomic::Ordering::Relaxed);
        let mut blk = fake.driver().unwrap();
        assert_eq!(blk.max_request_bytes(), 64 * 1024);
        let mut buf = vec![0u8; 300 * 1024];
        blk.read(0, &mut buf).unwrap();
        assert_eq!(buf, pattern(0, 300 * 1024));
        no_violations(&fake);
    }

    #[test]
    fn read_only_refuses_writes() {
        let offered = BlkConfig::default().offered | bf::RO;
        let (fake, mut blk) = up(BlkConfig {
            offered,
            ..Default::default()
        });
        assert!(blk.read_only());
        assert_eq!(blk.write(0, &[0u8; 512]), Err(BlkError::ReadOnly));
        let mut buf = vec![0u8; 512];
        blk.read(0, &mut buf).unwrap();
        assert!(fake
            .dev
            .lock()
            .unwrap()
            .requests
            .iter()
            .all(|r| r.kind != VIRTIO_BLK_T_OUT));
    }

    #[test]
    fn out_of_range_and_bad_buffers() {
        let (fake, mut blk) = up(BlkConfig::default());
        let mut buf = vec![0u8; 1024];
        assert_eq!(
            blk.read(8191, &mut buf),
            Err(BlkError::OutOfRange {
                lba: 8191,
                count: 2,
                capacity: 8192
            })
        );
        assert_eq!(
            blk.read(u64::MAX, &mut buf),
            Err(BlkError::OutOfRange {
                lba: u64::MAX,
                count: 2,
                capacity: 8192
            })
        );
        assert_eq!(
            blk.write(0, &[0u8; 100]),
            Err(BlkError::BadBuffer {
                len: 100,
                sector_size: 512
            })
        );
        assert_eq!(
            blk.read(0, &mut []),
            Err(BlkError::BadBuffer {
                len: 0,
                sector_size: 512
            })
        );
        assert_eq!(fake.dev.lock().unwrap().requests.len(), 1); // only GET_ID reached the device
    }

    #[test]
    fn device_errors_are_reported_and_the_queue_drains() {
        let (fake, mut blk) = up(BlkConfig {
            bad_unit: Some(600),
            ..Default::default()
        });
        // 1 MiB from unit 0: the second 256 KiB chunk (units 512..1024) fails.
        let mut buf = vec![0u8; 1 << 20];
        assert_eq!(
            blk.read(0, &mut buf),
            Err(BlkError::Device {
                status: 1,
                what: "I/O error"
            })
        );
        let q = blk.monitor().report().queues[0].clone();
        assert_eq!(q.free, q.size);
        assert_eq!(q.avail_idx, q.used_idx);
        assert_reads(&mut blk, 0, 512);
        no_violations(&fake);
    }

    #[test]
    fn unsupported_requests() {
        let offered = feat::VERSION_1;
        let (fake, mut blk) = up(BlkConfig {
            offered,
            serial: None,
            ..Default::default()
        });
        assert_eq!(blk.info().serial, None); // GET_ID answered UNSUPP
        blk.flush().unwrap(); // no FLUSH feature: write-through, nothing sent
        assert_eq!(fake.dev.lock().unwrap().requests.len(), 1);
        assert_eq!(
            blk.single(99, 0, 0, false),
            Err(BlkError::Device {
                status: 2,
                what: "unsupported request"
            })
        );
    }

    #[test]
    fn ring_indices_wrap_around() {
        let (fake, mut blk) = up(BlkConfig {
            queue_max: 8,
            ..Default::default()
        });
        let mut buf = [0u8; 512];
        let n = 70_000u32;
        for i in 0..n {
            let lba = (i % 8192) as u64;
            blk.read(lba, &mut buf).unwrap();
            if i % 9973 == 0 {
                assert_eq!(&buf[..], &pattern(lba as usize * 512, 512)[..]);
            }
        }
        let q = blk.monitor().report().queues[0].clone();
        assert_eq!(q.size, 8);
        assert_eq!(q.completions, n as u64 + 1);
        assert_eq!(q.used_idx, ((n + 1) % 65536) as u16);
        assert_eq!(q.avail_idx, q.used_idx);
        assert_eq!(q.free, 8);
        no_violations(&fake);
    }

    #[test]
    fn hung_device_times_out_then_recovers() {
        let (fake, mut blk) = up(BlkConfig::default());
        blk.set_timeout_ms(5);
        fake.dev.lock().unwrap().cfg.complete = false;
        let mut buf = vec![0u8; 4096];
        assert_eq!(blk.read(0, &mut buf), Err(BlkError::Timeout));
        assert_eq!(fake.dev.lock().unwrap().status(), 0); // reset: no more DMA into our buffers
        assert_eq!(blk.monitor().report().problem, Some(VirtioError::Timeout));
        fake.dev.lock().unwrap().cfg.complete = true;
        blk.read(8, &mut buf).unwrap();
        assert_eq!(buf, pattern(8 * 512, 4096));
        assert_eq!(blk.monitor().report().status, DeviceStatus(0x0f));
        no_violations(&fake);
    }

    #[test]
    fn blk_size_sets_the_logical_sector() {
        let (fake, mut blk) = up(BlkConfig {
            blk_size: 4096,
            ..Default::default()
        });
        assert_eq!(blk.sector_size(), 4096);
        assert_eq!(blk.capacity(), 1024);
        let mut buf = vec![0u8; 4096];
        blk.read(2, &mut buf).unwrap();
        assert_eq!(buf, pattern(2 * 4096, 4096));
        assert_eq!(
            fake.dev.lock().unwrap().requests.last().map(|r| r.unit),
            Some(16)
        );
        assert!(matches!(
            blk.read(0, &mut [0u8; 512]),
            Err(BlkError::BadBuffer { .. })
        ));
        // A nonsense blk_size falls back to 512.
        let (_f, blk) = up(BlkConfig {
            blk_size: 3000,
            ..Default::default()
        });
        assert_eq!(blk.sector_size(), 512);
    }

    #[test]
    fn drop_resets_and_frees_memory() {
        let (fake, blk) = up(BlkConfig::default());
        assert!(fake.dma.live() > 0);
        drop(blk);
        assert_eq!(fake.dma.live(), 0);
        assert_eq!(fake.dev.lock().unwrap().status(), 0);
    }

    #[test]
    fn driver_is_send() {
        fn send<T: Send>() {}
        send::<VirtioBlk>();
    }
}
