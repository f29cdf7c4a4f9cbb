//! The modern virtio PCI transport (virtio 1.2 §4.1): vendor capabilities, BAR windows, the
//! common configuration registers, doorbells and the initialisation sequence (§3.1.1).
use crate::features::{self, FeatureNames};
use crate::monitor::{DeviceStatus, VirtioMonitor};
use crate::queue::{SplitVirtqueue, MAX_QUEUE_SIZE};
use crate::{identify, DeviceType, VirtioError};
use capmon_hal::{BarMapper, Dma, Mmio, MmioBox, PciConfig};
use capmon_pci::caps::{self, CapKind, VirtioCfgType};
use capmon_pci::HeaderType;

// PCI configuration space (PCI Local Bus 3.0 §6.2, §6.7).
const PCI_COMMAND: u16 = 0x04;
const PCI_COMMAND_MEMORY: u32 = 1 << 1;
const PCI_COMMAND_BUS_MASTER: u32 = 1 << 2;
const PCI_VENDOR_ID: u16 = 0x00;
const PCI_DEVICE_ID: u16 = 0x02;
const PCI_HEADER_TYPE: u16 = 0x0e;

// Common configuration structure layout (§4.1.4.3).
const COMMON_DFSELECT: usize = 0x00;
const COMMON_DF: usize = 0x04;
const COMMON_GFSELECT: usize = 0x08;
const COMMON_GF: usize = 0x0c;
const COMMON_MSIX: usize = 0x10;
const COMMON_NUMQ: usize = 0x12;
const COMMON_STATUS: usize = 0x14;
const COMMON_CFGGENERATION: usize = 0x15;
const COMMON_Q_SELECT: usize = 0x16;
const COMMON_Q_SIZE: usize = 0x18;
const COMMON_Q_MSIX: usize = 0x1a;
const COMMON_Q_ENABLE: usize = 0x1c;
const COMMON_Q_NOFF: usize = 0x1e;
const COMMON_Q_DESCLO: usize = 0x20;
const COMMON_Q_AVAILLO: usize = 0x28;
const COMMON_Q_USEDLO: usize = 0x30;
/// The common structure up to and including queue_device.
const COMMON_MIN_LEN: usize = 0x38;
/// "No MSI-X vector" (§4.1.5.1.2): written to poll; read back when the device refused a vector.
pub const VIRTIO_MSI_NO_VECTOR: u16 = 0xffff;

/// Polls of device_status after a reset before giving up (QEMU answers at once).
const RESET_POLLS: u32 = 1_000_000;
/// Attempts at a consistent read of device configuration (§4.1.4.3.1 config_generation).
const CONFIG_READ_ATTEMPTS: u32 = 16;

/// One virtio vendor capability as found in config space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VirtioCap {
    /// Where the capability sits in config space.
    pub at: u16,
    pub cfg_type: VirtioCfgType,
    pub bar: u8,
    pub offset: u64,
    pub length: u64,
    /// Only for the notify capability.
    pub notify_off_multiplier: u32,
}

/// Calls `f` for each virtio vendor capability, in list order. The walk is the PCI subsystem's
/// (`capmon_pci::caps::walk`): bounded, safe against loops and pointers into the header, and
/// it stops at a malformed entry, which is logged.
pub fn for_each_virtio_cap(cfg: &dyn PciConfig, mut f: impl FnMut(VirtioCap)) {
    let header = HeaderType::from_raw(cfg.read8(PCI_HEADER_TYPE));
    let list = caps::walk(
        cfg,
        header,
        cfg.read16(PCI_VENDOR_ID),
        cfg.read16(PCI_DEVICE_ID),
    );
    if let Some(problem) = &list.problem {
        log::warn!("virtio: capability list: {}", problem);
    }
    for c in &list.caps {
        if let CapKind::Vendor {
            virtio: Some(v), ..
        } = c.kind
        {
            f(VirtioCap {
                at: c.offset,
                cfg_type: v.cfg_type,
                bar: v.bar,
                offset: v.offset,
                length: v.length,
                notify_off_multiplier: v.notify_off_multiplier.unwrap_or(0),
            });
        }
    }
}

/// The physical base of memory BAR `bar`, decoded from config space (32- or 64-bit; never sized).
pub fn bar_address(cfg: &dyn PciConfig, bar: u8) -> Result<u64, VirtioError> {
    capmon_pci::memory_bar_base(cfg, bar).map_err(|why| VirtioError::BadBar { bar, why })
}

/// Maps the window a capability describes, at least `min_len` bytes long.
fn map_cap(
    cfg: &dyn PciConfig,
    bars: &dyn BarMapper,
    cap: &VirtioCap,
    min_len: usize,
) -> Result<MmioBox, VirtioError> {
    let len = usize::try_from(cap.length)
        .map_err(|_| VirtioError::BadConfig("capability window too large"))?;
    if len < min_len {
        return Err(VirtioError::BadConfig("capability window too short"));
    }
    let phys = bar_address(cfg, cap.bar)?
        .checked_add(cap.offset)
        .ok_or(VirtioError::BadConfig("capability offset overflows"))?;
    bars.map_mmio(phys, len)
        .ok_or(VirtioError::MapFailed { phys, len })
}

/// A virtio device behind the modern PCI transport.
pub struct VirtioPci {
    device_type: DeviceType,
    common: MmioBox,
    notify: MmioBox,
    notify_off_multiplier: u32,
    isr: Option<MmioBox>,
    device: Option<MmioBox>,
    monitor: VirtioMonitor,
}

impl VirtioPci {
    /// Finds the virtio capabilities, maps their windows and enables memory decoding and bus
    /// mastering. Touches no device register yet. Legacy-only devices are `LegacyOnly`.
    pub fn new(cfg: &dyn PciConfig, bars: &dyn BarMapper) -> Result<Self, VirtioError> {
        let device_type = identify(cfg).ok_or(VirtioError::BadConfig("not a virtio function"))?;
        let mut any = false;
        let mut common = None;
        let mut notify = None;
        let mut isr = None;
        let mut device = None;
        let mut first_err = None;
        // Use the first capability of each type we can map (§4.1.4: the driver may use any of
        // several; ones with a bad BAR are skipped).
        for_each_virtio_cap(cfg, |cap| {
            any = true;
            let (slot, min_len) = match cap.cfg_type {
                VirtioCfgType::Common => (&mut common, COMMON_MIN_LEN),
                VirtioCfgType::Notify => (&mut notify, 2),
                VirtioCfgType::Isr => (&mut isr, 1),
                VirtioCfgType::Device => (&mut device, 1),
                _ => return,
            };
            if slot.is_some() {
                return;
            }
            match map_cap(cfg, bars, &cap, min_len) {
                Ok(w) => *slot = Some((w, cap.notify_off_multiplier)),
                Err(e) => {
                    log::warn!("{}: capability at {:#x}: {}", device_type, cap.at, e);
                    first_err.get_or_insert(e);
                }
            }
        });
        if !any {
            return Err(VirtioError::LegacyOnly);
        }
        let missing = |what| first_err.clone().unwrap_or(VirtioError::MissingCap(what));
        let (common, _) = common.ok_or_else(|| missing("common"))?;
        let (notify, notify_off_multiplier) = notify.ok_or_else(|| missing("notify"))?;
        let cmd = cfg.read32(PCI_COMMAND) & 0xffff;
        // Upper half zero: the status register's error bits are write-1-to-clear.
        cfg.write32(
            PCI_COMMAND,
            cmd | PCI_COMMAND_MEMORY | PCI_COMMAND_BUS_MASTER,
        );
        let monitor = VirtioMonitor::new(device_type);
        let t = VirtioPci {
            device_type,
            common,
            notify,
            notify_off_multiplier,
            isr: isr.map(|(w, _)| w),
            device: device.map(|(w, _)| w),
            monitor,
        };
        t.monitor.set_status(t.status().0);
        t.monitor.set_num_queues(t.num_queues());
        Ok(t)
    }

    pub fn device_type(&self) -> DeviceType {
        self.device_type
    }

    /// The shared record the `virtio` command reads.
    pub fn monitor(&self) -> VirtioMonitor {
        self.monitor.clone()
    }

    pub fn status(&self) -> DeviceStatus {
        DeviceStatus(self.common.read8(COMMON_STATUS))
    }

    fn set_status(&self, s: u8) {
        self.common.write8(COMMON_STATUS, s);
        self.monitor.set_status(self.status().0);
    }

    fn add_status(&self, bits: u8) {
        self.set_status(self.status().0 | bits);
    }

    /// Queues the device offers (`num_queues`).
    pub fn num_queues(&self) -> u16 {
        self.common.read16(COMMON_NUMQ)
    }

    /// Reads and clears the ISR status (§4.1.4.5); 0 if the device has no ISR capability.
    pub fn isr(&self) -> u8 {
        self.isr.as_ref().map_or(0, |w| w.read8(0))
    }

    /// Resets the device (§2.4) and waits until it reads back 0.
    pub fn reset(&self) -> Result<(), VirtioError> {
        self.common.write8(COMMON_STATUS, 0);
        for _ in 0..RESET_POLLS {
            if self.common.read8(COMMON_STATUS) == 0 {
                self.monitor.set_status(0);
                self.monitor.clear_queues();
                return Ok(());
            }
            core::hint::spin_loop();
        }
        Err(VirtioError::ResetTimeout)
    }

    /// Marks the device FAILED (§2.1.1) and records why.
    pub fn fail(&self, why: VirtioError) {
        self.add_status(DeviceStatus::FAILED);
        self.monitor.set_problem(why);
    }

    fn device_features(&self) -> u64 {
        self.common.write32(COMMON_DFSELECT, 0);
        let lo = self.common.read32(COMMON_DF) as u64;
        self.common.write32(COMMON_DFSELECT, 1);
        let hi = self.common.read32(COMMON_DF) as u64;
        hi << 32 | lo
    }

    fn set_driver_features(&self, f: u64) {
        self.common.write32(COMMON_GFSELECT, 0);
        self.common.write32(COMMON_GF, f as u32);
        self.common.write32(COMMON_GFSELECT, 1);
        self.common.write32(COMMON_GF, (f >> 32) as u32);
    }

    /// Steps 1-5 of the initialisation sequence (§3.1.1): reset, ACKNOWLEDGE, DRIVER, feature
    /// negotiation, FEATURES_OK. `understood` are the device-specific bits the driver handles;
    /// VERSION_1 is required. Returns the accepted features. On failure the device is FAILED.
    pub fn negotiate(&mut self, understood: u64) -> Result<u64, VirtioError> {
        self.reset()?;
        self.add_status(DeviceStatus::ACKNOWLEDGE);
        self.add_status(DeviceStatus::DRIVER);
        let offered = self.device_features();
        let ty = self.device_type;
        log::info!(
            "{}: device offers {:#x} ({})",
            ty,
            offered,
            FeatureNames { ty, bits: offered }
        );
        if offered & features::VERSION_1 == 0 {
            self.monitor.set_features(offered, 0);
            self.fail(VirtioError::NoVersion1);
            return Err(VirtioError::NoVersion1);
        }
        let accepted = offered & (understood | features::TRANSPORT_ACCEPTED);
        let ignored = offered & !accepted;
        log::info!(
            "{}: accepting {:#x} ({})",
            ty,
            accepted,
            FeatureNames { ty, bits: accepted }
        );
        if ignored != 0 {
            log::info!(
                "{}: not acking {:#x} ({})",
                ty,
                ignored,
                FeatureNames { ty, bits: ignored }
            );
        }
        self.monitor.set_features(offered, accepted);
        self.set_driver_features(accepted);
        self.add_status(DeviceStatus::FEATURES_OK);
        if !self.status().has(DeviceStatus::FEATURES_OK) {
            let e = VirtioError::FeaturesRefused { accepted };
            log::warn!("{}: {}; device left FAILED", ty, e);
            self.fail(e.clone());
            return Err(e);
        }
        Ok(accepted)
    }

    /// Sets up queue `index` with at most `max_size` entries (step 6 of §3.1.1, §4.1.5.1.3),
    /// raising MSI-X table entry `vector` for it (`VIRTIO_MSI_NO_VECTOR`: none). The vector is
    /// set and checked before any other queue field is written: a refusal leaves the queue
    /// unconfigured.
    pub fn setup_queue(
        &mut self,
        index: u16,
        max_size: u16,
        dma: &'static (dyn Dma + Sync),
        vector: u16,
    ) -> Result<SplitVirtqueue, VirtioError> {
        self.common.write16(COMMON_Q_SELECT, index);
        let dev_max = self.common.read16(COMMON_Q_SIZE);
        if dev_max == 0 || self.common.read16(COMMON_Q_ENABLE) != 0 {
            return Err(VirtioError::QueueUnavailable { index });
        }
        // Largest power of two within both limits (split queues are powers of two, §2.7).
        let limit = dev_max.min(max_size).clamp(1, MAX_QUEUE_SIZE);
        let size = 1u16 << (15 - limit.leading_zeros());
        let notify_offset = (self.common.read16(COMMON_Q_NOFF) as usize)
            .checked_mul(self.notify_off_multiplier as usize)
            .filter(|o| o.checked_add(2).is_some_and(|e| e <= self.notify.len()))
            .ok_or(VirtioError::BadNotifyOffset {
                index,
                offset: self.common.read16(COMMON_Q_NOFF) as usize
                    * self.notify_off_multiplier as usize,
            })?;
        // queue_msix_vector is one of the fields set before queue_enable (§4.1.4.3.2).
        self.set_queue_vector(index, vector)?;
        let counters = self.monitor.add_queue(index, size);
        let q = SplitVirtqueue::new(index, size, notify_offset, dma, counters)?;
        let (desc, avail, used) = q.addresses();
        self.common.write16(COMMON_Q_SIZE, size);
        write64_split(&*self.common, COMMON_Q_DESCLO, desc);
        write64_split(&*self.common, COMMON_Q_AVAILLO, avail);
        write64_split(&*self.common, COMMON_Q_USEDLO, used);
        self.common.write16(COMMON_Q_ENABLE, 1);
        log::info!(
            "{}: queue {} size {} (device max {})",
            self.device_type,
            index,
            size,
            dev_max
        );
        Ok(q)
    }

    /// Maps configuration-change interrupts to MSI-X table entry `v` (`VIRTIO_MSI_NO_VECTOR`:
    /// none) and checks the read-back: a device that cannot map it answers NO_VECTOR
    /// (§4.1.5.1.2). A reset unmaps it again.
    pub fn set_config_vector(&self, v: u16) -> Result<(), VirtioError> {
        self.common.write16(COMMON_MSIX, v);
        match self.common.read16(COMMON_MSIX) {
            r if r == v => Ok(()),
            _ => Err(VirtioError::VectorRefused {
                queue: None,
                entry: v,
            }),
        }
    }

    /// Maps queue `index`'s interrupts to MSI-X table entry `v`, checked as for the config
    /// vector. Set before the queue is enabled.
    pub fn set_queue_vector(&self, index: u16, v: u16) -> Result<(), VirtioError> {
        self.common.write16(COMMON_Q_SELECT, index);
        self.common.write16(COMMON_Q_MSIX, v);
        match self.common.read16(COMMON_Q_MSIX) {
            r if r == v => Ok(()),
            _ => Err(VirtioError::VectorRefused {
                queue: Some(index),
                entry: v,
            }),
        }
    }

    /// Step 7 of §3.1.1: the device is live.
    pub fn driver_ok(&self) {
        self.add_status(DeviceStatus::DRIVER_OK);
    }

    /// The window queue doorbells are written to.
    pub fn notify_window(&self) -> &dyn Mmio {
        &*self.notify
    }

    /// Reads device configuration consistently: retries while config_generation changes
    /// (§4.1.4.3.1). `None` if the device has no device configuration window.
    pub fn read_config<T>(&self, mut f: impl FnMut(&dyn Mmio) -> T) -> Result<T, VirtioError> {
        let dev = self
            .device
            .as_deref()
            .ok_or(VirtioError::MissingCap("device"))?;
        for _ in 0..CONFIG_READ_ATTEMPTS {
            let before = self.common.read8(COMMON_CFGGENERATION);
            let v = f(dev);
            if self.common.read8(COMMON_CFGGENERATION) == before {
                return Ok(v);
            }
        }
        Err(VirtioError::ConfigUnstable)
    }

    /// Length of the device configuration window (0 if none).
    pub fn config_len(&self) -> usize {
        self.device.as_ref().map_or(0, |d| d.len())
    }
}

/// 64-bit common-config fields are written as two 32-bit halves, low first (§4.1.3.1).
fn write64_split(m: &dyn Mmio, off: usize, v: u64) {
    m.write32(off, v as u32);
    m.write32(off + 4, (v >> 32) as u32);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{FakeDma, FakeMapper, FakePciConfig, BAR_BASE};

    #[test]
    fn finds_caps_skipping_other_ids() {
        let cfg = FakePciConfig::virtio_blk();
        let mut caps = alloc::vec::Vec::new();
        for_each_virtio_cap(&cfg, |c| caps.push((c.cfg_type, c.bar, c.offset)));
        assert_eq!(
            caps,
            [
                (VirtioCfgType::Common, 4, 0),
                (VirtioCfgType::Notify, 4, 0x3000),
                (VirtioCfgType::Isr, 4, 0x1000),
                (VirtioCfgType::Device, 4, 0x2000)
            ]
        );
    }

    #[test]
    fn cap_walk_survives_a_loop() {
        let cfg = FakePciConfig::virtio_blk();
        // Point the last capability back at the first.
        cfg.poke8(crate::fake::LAST_CAP + 1, 0x40);
        let mut n = 0;
        for_each_virtio_cap(&cfg, |_| n += 1);
        assert_eq!(n, 4);
        // A pointer into the header ends the walk.
        cfg.poke8(0x34, 0x20);
        n = 0;
        for_each_virtio_cap(&cfg, |_| n += 1);
        assert_eq!(n, 0);
    }

    #[test]
    fn decodes_bars() {
        let cfg = FakePciConfig::virtio_blk();
        assert_eq!(bar_address(&cfg, 4), Ok(BAR_BASE));
        cfg.poke32(0x10, 0xfebf_1000); // 32-bit memory BAR
        assert_eq!(bar_address(&cfg, 0), Ok(0xfebf_1000));
        cfg.poke32(0x14, 0xc041); // I/O BAR
        assert!(matches!(
            bar_address(&cfg, 1),
            Err(VirtioError::BadBar { bar: 1, .. })
        ));
        cfg.poke32(0x24, 0x4); // 64-bit type in slot 5
        assert!(matches!(
            bar_address(&cfg, 5),
            Err(VirtioError::BadBar { bar: 5, .. })
        ));
        assert!(matches!(
            bar_address(&cfg, 2),
            Err(VirtioError::BadBar { bar: 2, .. })
        ));
        assert!(matches!(
            bar_address(&cfg, 6),
            Err(VirtioError::BadBar { bar: 6, .. })
        ));
    }

    #[test]
    fn legacy_only_is_unsupported() {
        let cfg = FakePciConfig::virtio_blk();
        cfg.poke8(0x41, 0); // the MSI-X capability at 0x40 ends the list: no virtio caps
        let (mapper, _dev) = FakeMapper::blk(Default::default(), FakeDma::leaked());
        assert!(matches!(
            VirtioPci::new(&cfg, &mapper),
            Err(VirtioError::LegacyOnly)
        ));
        // No capability list at all.
        cfg.poke8(0x06, 0);
        assert!(matches!(
            VirtioPci::new(&cfg, &mapper),
            Err(VirtioError::LegacyOnly)
        ));
    }

    #[test]
    fn unmappable_bar_is_reported() {
        let cfg = FakePciConfig::virtio_blk();
        cfg.poke32(0x20, 0x0000_0004 | 0x1000_0000); // move BAR4 where the mapper has nothing
        let (mapper, _dev) = FakeMapper::blk(Default::default(), FakeDma::leaked());
        assert!(matches!(
            VirtioPci::new(&cfg, &mapper),
            Err(VirtioError::MapFailed { .. })
        ));
    }

    #[test]
    fn enables_memory_and_bus_master() {
        let cfg = FakePciConfig::virtio_blk();
        cfg.poke32(0x04, 0xf910_0000); // status error bits set: must not be cleared by us
        let (mapper, _dev) = FakeMapper::blk(Default::default(), FakeDma::leaked());
        let t = VirtioPci::new(&cfg, &mapper).unwrap();
        assert_eq!(cfg.read32(0x04) & 0x6, 0x6);
        assert_eq!(cfg.writes_to_status(), 0);
        assert_eq!(t.num_queues(), 1);
    }
}
