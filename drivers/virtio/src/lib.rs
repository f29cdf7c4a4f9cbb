//! Virtio 1.x devices over PCI: the modern transport (virtio 1.2 §4.1), split virtqueues
//! (§2.7) in memory from `hal::Dma`, and the virtio-blk driver (§5.2).
//!
//! The kernel hands [`probe`] a function's address and config space, a way to map BAR windows,
//! the DMA allocator, a clock and (when it has one) its interrupt layer; it gets back a
//! [`VirtioMonitor`] (what the `virtio` command shows) and, for a block device, a [`VirtioBlk`]
//! implementing `capmon_block::BlockDevice`, completing by MSI-X, INTx or polling ([`irq`]).
#![no_std]
extern crate alloc;
#[cfg(any(test, feature = "fake"))]
extern crate std;

pub mod blk;
pub mod completion;
#[cfg(any(test, feature = "fake"))]
pub mod fake;
pub mod features;
pub mod irq;
pub mod monitor;
pub mod pci;
pub mod queue;

pub use blk::VirtioBlk;
pub use capmon_hal::{BarMapper, MmioBox, PhysMapBars};
pub use completion::{Completion, Polling};
pub use irq::Wakeup;
pub use monitor::{DeviceStatus, QueueReport, Report, VectorReport, VirtioMonitor};
pub use pci::{VirtioPci, VIRTIO_MSI_NO_VECTOR};
pub use queue::SplitVirtqueue;

use capmon_hal::{Clock, Dma, Interrupts, PciConfig};
use capmon_pci::Bdf;

/// PCI vendor ID of every virtio function (virtio 1.2 §4.1.2).
pub const VIRTIO_PCI_VENDOR: u16 = 0x1af4;
/// Modern PCI device IDs are 0x1040 + the virtio device ID (§4.1.2).
const MODERN_ID_BASE: u16 = 0x1040;
const MODERN_ID_LAST: u16 = 0x107f;
/// Transitional devices use 0x1000..=0x103f; their virtio type is the subsystem ID (§4.1.2.1).
const TRANSITIONAL_ID_FIRST: u16 = 0x1000;
const TRANSITIONAL_ID_LAST: u16 = 0x103f;
const PCI_VENDOR_ID: u16 = 0x00;
const PCI_DEVICE_ID: u16 = 0x02;
const PCI_SUBSYSTEM_ID: u16 = 0x2e;

/// The kind of a virtio device, from its virtio device ID (virtio 1.2 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceType {
    Net,
    Block,
    Console,
    Entropy,
    Balloon,
    Scsi,
    NineP,
    Gpu,
    Input,
    Vsock,
    Other(u16),
}

impl DeviceType {
    pub fn from_id(id: u16) -> Self {
        match id {
            1 => DeviceType::Net,
            2 => DeviceType::Block,
            3 => DeviceType::Console,
            4 => DeviceType::Entropy,
            5 => DeviceType::Balloon,
            8 => DeviceType::Scsi,
            9 => DeviceType::NineP,
            16 => DeviceType::Gpu,
            18 => DeviceType::Input,
            19 => DeviceType::Vsock,
            n => DeviceType::Other(n),
        }
    }

    /// The short name the monitor prints: `virtio-blk`, `virtio-net`, `virtio-23`.
    pub fn name(&self) -> &'static str {
        match self {
            DeviceType::Net => "virtio-net",
            DeviceType::Block => "virtio-blk",
            DeviceType::Console => "virtio-console",
            DeviceType::Entropy => "virtio-rng",
            DeviceType::Balloon => "virtio-balloon",
            DeviceType::Scsi => "virtio-scsi",
            DeviceType::NineP => "virtio-9p",
            DeviceType::Gpu => "virtio-gpu",
            DeviceType::Input => "virtio-input",
            DeviceType::Vsock => "virtio-vsock",
            DeviceType::Other(_) => "virtio-other",
        }
    }
}

impl core::fmt::Display for DeviceType {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            DeviceType::Other(n) => write!(f, "virtio-{}", n),
            t => f.write_str(t.name()),
        }
    }
}

/// The virtio type of a PCI function, or `None` if it is not a virtio function.
pub fn identify(cfg: &dyn PciConfig) -> Option<DeviceType> {
    if cfg.read16(PCI_VENDOR_ID) != VIRTIO_PCI_VENDOR {
        return None;
    }
    match cfg.read16(PCI_DEVICE_ID) {
        id @ MODERN_ID_BASE..=MODERN_ID_LAST => Some(DeviceType::from_id(id - MODERN_ID_BASE)),
        TRANSITIONAL_ID_FIRST..=TRANSITIONAL_ID_LAST => {
            Some(DeviceType::from_id(cfg.read16(PCI_SUBSYSTEM_ID)))
        }
        _ => None,
    }
}

/// Why a virtio device could not be driven.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VirtioError {
    /// No modern (virtio 1.x) capabilities: a legacy-only device, which we do not drive.
    LegacyOnly,
    /// A required virtio capability (`common`, `notify`, `device`) is missing or unusable.
    MissingCap(&'static str),
    /// A capability names a BAR that is not a usable memory BAR.
    BadBar { bar: u8, why: &'static str },
    /// The kernel could not map a register window.
    MapFailed { phys: u64, len: usize },
    /// The device did not read back status 0 after a reset.
    ResetTimeout,
    /// The device does not offer VIRTIO_F_VERSION_1 (legacy semantics only).
    NoVersion1,
    /// The device cleared FEATURES_OK: it cannot work with the features we accepted.
    FeaturesRefused { accepted: u64 },
    /// The queue does not exist (queue_size 0) or was already enabled.
    QueueUnavailable { index: u16 },
    /// The queue's notify address lies outside the notify window.
    BadNotifyOffset { index: u16, offset: usize },
    /// Device configuration kept changing while we read it.
    ConfigUnstable,
    /// The device's configuration makes no sense (`what` says which field).
    BadConfig(&'static str),
    /// DMA memory for rings or buffers could not be allocated.
    NoMemory,
    /// The device did not answer an initialisation request in time.
    Timeout,
    /// The device broke a virtqueue rule (bad used index or id).
    DeviceBug(&'static str),
    /// The device type has no driver in capmon yet.
    NoDriver,
    /// The device could not map an event to an MSI-X table entry: it read back NO_VECTOR
    /// (§4.1.5.1.2). `queue` is `None` for configuration changes.
    VectorRefused { queue: Option<u16>, entry: u16 },
}

impl core::fmt::Display for VirtioError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            VirtioError::LegacyOnly => {
                f.write_str("legacy-only device (no virtio 1.x capabilities): unsupported")
            }
            VirtioError::MissingCap(c) => write!(f, "missing virtio {} capability", c),
            VirtioError::BadBar { bar, why } => write!(f, "BAR{}: {}", bar, why),
            VirtioError::MapFailed { phys, len } => {
                write!(f, "cannot map {:#x} bytes at {:#x}", len, phys)
            }
            VirtioError::ResetTimeout => f.write_str("device did not complete reset"),
            VirtioError::NoVersion1 => {
                f.write_str("device does not offer VIRTIO_F_VERSION_1: unsupported")
            }
            VirtioError::FeaturesRefused { accepted } => {
                write!(f, "device refused FEATURES_OK for features {:#x}", accepted)
            }
            VirtioError::QueueUnavailable { index } => write!(f, "queue {} unavailable", index),
            VirtioError::BadNotifyOffset { index, offset } => {
                write!(
                    f,
                    "queue {} notify offset {:#x} outside the notify window",
                    index, offset
                )
            }
            VirtioError::ConfigUnstable => f.write_str("device configuration kept changing"),
            VirtioError::BadConfig(what) => write!(f, "bad device configuration: {}", what),
            VirtioError::NoMemory => f.write_str("out of DMA memory"),
            VirtioError::Timeout => f.write_str("device timed out"),
            VirtioError::DeviceBug(what) => {
                write!(f, "device broke the virtqueue protocol: {}", what)
            }
            VirtioError::NoDriver => f.write_str("no driver for this device type"),
            VirtioError::VectorRefused {
                queue: Some(q),
                entry,
            } => write!(f, "device refused MSI-X entry {} for queue {}", entry, q),
            VirtioError::VectorRefused { queue: None, entry } => write!(
                f,
                "device refused MSI-X entry {} for configuration changes",
                entry
            ),
        }
    }
}

/// What [`probe`] made of one virtio function.
pub struct Probed {
    /// The record the `virtio` command shows; keep it even when `driver` is `None`.
    pub monitor: VirtioMonitor,
    /// The driver bound to the function, if capmon drives this type and initialisation worked.
    pub driver: Option<Driver>,
}

/// A driver bound to a virtio function.
pub enum Driver {
    Blk(VirtioBlk),
}

/// Identifies, initialises and binds a driver to one PCI function `bdf`. `None` if the
/// function is not a virtio device. With `irq`, a block device completes by MSI-X, else INTx,
/// else polling ([`irq`] says how and logs which); without, by polling. Failures are logged
/// and recorded in the returned monitor (status FAILED or a problem such as "legacy-only"),
/// never panics.
pub fn probe(
    bdf: Bdf,
    cfg: &dyn PciConfig,
    bars: &dyn BarMapper,
    dma: &'static (dyn Dma + Sync),
    clock: &'static (dyn Clock + Sync),
    irq: Option<&'static dyn Interrupts>,
) -> Option<Probed> {
    let ty = identify(cfg)?;
    let transport = match VirtioPci::new(cfg, bars) {
        Ok(t) => t,
        Err(e) => {
            log::warn!("{} {}: {}", ty, bdf, e);
            return Some(Probed {
                monitor: VirtioMonitor::failed(ty, e),
                driver: None,
            });
        }
    };
    let monitor = transport.monitor();
    let driver = match ty {
        DeviceType::Block => {
            let f = irq::Function {
                bdf,
                cfg,
                bars,
                dma,
                clock,
                irq,
            };
            match irq::bind_blk(&f, transport) {
                Ok(b) => Some(Driver::Blk(b)),
                Err(e) => {
                    log::warn!("virtio-blk {}: {}", bdf, e);
                    None
                }
            }
        }
        _ => {
            log::info!("{} {}: no driver yet, left alone", ty, bdf);
            monitor.set_problem(VirtioError::NoDriver);
            None
        }
    };
    Some(Probed { monitor, driver })
}
