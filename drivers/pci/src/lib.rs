//! PCI and PCIe for capmon: config-space access (legacy ports 0xCF8/0xCFC or ECAM from MCFG,
//! switchable live), enumeration through bridges, BAR decoding and sizing, capability lists,
//! MSI/MSI-X programming (`msi`), and names for what it finds.
//!
//! The kernel builds one [`Pci`] at boot from a `PortIo` and the MCFG windows; commands and
//! drivers go through it. Drivers that keep their function's config space get a
//! [`FunctionConfig`], which implements `hal::PciConfig`.
#![no_std]
extern crate alloc;

pub mod access;
pub mod bar;
pub mod bdf;
pub mod caps;
pub mod enumerate;
#[cfg(any(test, feature = "fake"))]
pub mod fake;
pub mod header;
pub mod msi;
pub mod names;
#[cfg(test)]
mod tests;

pub use access::{
    AccessMode, BusRange, ConfigSpace, EcamRegion, EcamWindow, FunctionConfig, LegacyPorts, Width,
};
pub use bar::{memory_bar_base, Bar, BarError, BarKind, Bars};
pub use bdf::{Bdf, BdfError, ShortBdf};
pub use caps::{Cap, CapError, CapKind, CapList, ExtCap, ExtCapList, VirtioCap, VirtioCfgType};
pub use enumerate::{Function, ScanProblem, Topology};
pub use header::{Header, HeaderType};
pub use msi::{MsiCap, MsiError, MsixEnabling, MsixEntry, MsixLayout, MsixRegion, MsixTable};

use access::{Ecam, FunctionView};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;

/// Why a PCI operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PciError {
    /// Neither legacy ports nor ECAM windows were given.
    NoMechanism,
    /// The requested mechanism is not available on this machine (no MCFG, or no ports).
    ModeUnavailable(AccessMode),
    /// Nothing answers at this address.
    NoSuchFunction(Bdf),
    /// The segment or bus is outside what the current mechanism reaches.
    NotReachable { bdf: Bdf, mode: AccessMode },
    /// The offset is not a multiple of the access width.
    Misaligned { off: u16, width: Width },
    /// The offset is past the 4 KiB extended config space.
    OffsetOutOfRange { off: u16 },
    /// The offset is in the extended config space, which only ECAM reaches.
    NeedsEcam { off: u16 },
    /// An MCFG allocation cannot be used.
    BadEcamRegion {
        region: EcamRegion,
        why: &'static str,
    },
    /// The kernel could not map an ECAM window.
    MapFailed { phys: u64, len: usize },
    /// The function has no implemented BAR with this index.
    NoSuchBar { bdf: Bdf, index: u8 },
    /// The BAR exists but its registers are malformed.
    BadBar {
        bdf: Bdf,
        index: u8,
        error: BarError,
    },
}

impl fmt::Display for PciError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PciError::NoMechanism => f.write_str("no config-space access mechanism"),
            PciError::ModeUnavailable(AccessMode::Ecam) => {
                f.write_str("ECAM not available (no MCFG table)")
            }
            PciError::ModeUnavailable(AccessMode::Legacy) => {
                f.write_str("legacy config ports not available")
            }
            PciError::NoSuchFunction(bdf) => write!(f, "no such function {}", bdf),
            PciError::NotReachable { bdf, mode } => {
                write!(f, "{} is outside what {} access reaches", bdf, mode)
            }
            PciError::Misaligned { off, width } => {
                write!(
                    f,
                    "offset {:#x} is not aligned to {} bytes",
                    off,
                    width.bytes()
                )
            }
            PciError::OffsetOutOfRange { off } => {
                write!(f, "offset {:#x} is past the 4 KiB config space", off)
            }
            PciError::NeedsEcam { off } => {
                write!(
                    f,
                    "offset {:#x} is in extended config space: needs ECAM (pci mode ecam)",
                    off
                )
            }
            PciError::BadEcamRegion { region, why } => write!(
                f,
                "MCFG window {:#x} segment {:04x} buses {:02x}-{:02x}: {}",
                region.base, region.segment, region.start_bus, region.end_bus, why
            ),
            PciError::MapFailed { phys, len } => {
                write!(f, "cannot map ECAM window {:#x}+{:#x}", phys, len)
            }
            PciError::NoSuchBar { bdf, index } => write!(f, "{} has no BAR{}", bdf, index),
            PciError::BadBar { bdf, index, error } => write!(f, "{} BAR{}: {}", bdf, index, error),
        }
    }
}

/// The PCI subsystem: the available access mechanisms and the one in use.
pub struct Pci {
    legacy: Option<Arc<dyn ConfigSpace>>,
    ecam: Option<Arc<dyn ConfigSpace>>,
    regions: Vec<EcamRegion>,
    /// One of the two above.
    current: Arc<dyn ConfigSpace>,
}

impl Pci {
    /// ECAM is used when there is at least one window, legacy ports otherwise.
    pub fn new(legacy: Option<LegacyPorts>, ecam: Vec<EcamWindow>) -> Result<Pci, PciError> {
        let regions: Vec<EcamRegion> = ecam.iter().map(|w| w.region()).collect();
        let ecam: Option<Arc<dyn ConfigSpace>> = if ecam.is_empty() {
            None
        } else {
            Some(Arc::new(Ecam::new(ecam)?))
        };
        let legacy: Option<Arc<dyn ConfigSpace>> = match legacy {
            Some(l) => Some(Arc::new(l)),
            None => None,
        };
        let current = ecam
            .as_ref()
            .or(legacy.as_ref())
            .ok_or(PciError::NoMechanism)?;
        let current = Arc::clone(current);
        Ok(Pci {
            legacy,
            ecam,
            regions,
            current,
        })
    }

    pub fn mode(&self) -> AccessMode {
        self.current.mode()
    }

    pub fn has_mode(&self, mode: AccessMode) -> bool {
        self.mechanism(mode).is_some()
    }

    /// Switches the mechanism used from now on.
    pub fn set_mode(&mut self, mode: AccessMode) -> Result<(), PciError> {
        let space = self
            .mechanism(mode)
            .ok_or(PciError::ModeUnavailable(mode))?;
        self.current = Arc::clone(space);
        Ok(())
    }

    /// The MCFG windows in use by ECAM.
    pub fn ecam_regions(&self) -> &[EcamRegion] {
        &self.regions
    }

    fn mechanism(&self, mode: AccessMode) -> Option<&Arc<dyn ConfigSpace>> {
        match mode {
            AccessMode::Legacy => self.legacy.as_ref(),
            AccessMode::Ecam => self.ecam.as_ref(),
        }
    }

    /// The mechanism in use.
    pub fn space(&self) -> &dyn ConfigSpace {
        &*self.current
    }

    /// Bytes of config space per function in the current mode.
    pub fn config_size(&self) -> u16 {
        self.space().size()
    }

    /// A checked read of `w` bytes at `off`.
    pub fn read(&self, bdf: Bdf, off: u16, w: Width) -> Result<u32, PciError> {
        access::read(self.space(), bdf, off, w)
    }

    /// A checked write of `w` bytes at `off`.
    pub fn write(&self, bdf: Bdf, off: u16, w: Width, v: u32) -> Result<(), PciError> {
        access::write(self.space(), bdf, off, w, v)
    }

    /// Enumerates every function the current mechanism reaches.
    pub fn enumerate(&self) -> Topology {
        enumerate::scan(self.space())
    }

    /// The header of a present function.
    pub fn header(&self, bdf: Bdf) -> Result<Header, PciError> {
        let space = self.space();
        access::check(space, bdf, 0, Width::Dword)?;
        Header::read(&FunctionView { space, bdf }, bdf).ok_or(PciError::NoSuchFunction(bdf))
    }

    /// A present function's config space, for a driver to keep. It stays on the mechanism in
    /// use now, even if the mode changes later.
    pub fn function(&self, bdf: Bdf) -> Result<FunctionConfig, PciError> {
        self.header(bdf)?;
        Ok(FunctionConfig::new(Arc::clone(&self.current), bdf))
    }

    /// Decodes and sizes every BAR of a function (briefly disabling its decoding).
    pub fn bars(&self, bdf: Bdf) -> Result<Bars, PciError> {
        let h = self.header(bdf)?;
        let view = FunctionView {
            space: self.space(),
            bdf,
        };
        Ok(bar::read_bars(&view, h.header_type, h.is_host_bridge()))
    }

    /// One BAR's physical (or port) address and size, for a driver to map.
    pub fn bar(&self, bdf: Bdf, index: u8) -> Result<Bar, PciError> {
        let bars = self.bars(bdf)?;
        if let Some(b) = bars.bars.iter().find(|b| b.index == index) {
            return Ok(*b);
        }
        match bars.problems.iter().find(|p| p.index == index) {
            Some(p) => Err(PciError::BadBar {
                bdf,
                index,
                error: p.error,
            }),
            None => Err(PciError::NoSuchBar { bdf, index }),
        }
    }

    /// The standard capability list.
    pub fn capabilities(&self, bdf: Bdf) -> Result<CapList, PciError> {
        let h = self.header(bdf)?;
        let view = FunctionView {
            space: self.space(),
            bdf,
        };
        Ok(caps::walk(&view, h.header_type, h.vendor, h.device))
    }

    /// The extended capability list; needs ECAM.
    pub fn ext_capabilities(&self, bdf: Bdf) -> Result<ExtCapList, PciError> {
        self.header(bdf)?;
        let space = self.space();
        access::check(space, bdf, caps::EXT_CAP_START, Width::Dword)?;
        Ok(caps::walk_ext(&FunctionView { space, bdf }))
    }

    /// Bytes of config space the function has: 4 KiB if ECAM is in use and the function is
    /// PCI Express with an extended space (0x100 does not read all-ones), else 256.
    pub fn function_config_size(&self, bdf: Bdf) -> Result<u16, PciError> {
        let h = self.header(bdf)?;
        if self.config_size() < access::ECAM_CONFIG_SIZE {
            return Ok(access::LEGACY_CONFIG_SIZE);
        }
        let view = FunctionView {
            space: self.space(),
            bdf,
        };
        let pcie = caps::walk(&view, h.header_type, h.vendor, h.device)
            .find(caps::id::PCIE)
            .is_some();
        let ext = self.read(bdf, caps::EXT_CAP_START, Width::Dword)? != u32::MAX;
        Ok(if pcie && ext {
            access::ECAM_CONFIG_SIZE
        } else {
            access::LEGACY_CONFIG_SIZE
        })
    }
}
