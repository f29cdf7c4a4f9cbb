//! Capability lists: the standard list (PCI Local Bus 3.0 §6.7) and the PCIe extended list
//! (PCIe Base 4.0 §7.6), with decoders for the structures drivers care about.
//!
//! Both walks are bounded: every dword may start at most one capability, so a loop is detected
//! the second time a pointer lands on the same place, and the walk stops with a `CapError`
//! keeping what it decoded so far.
use crate::header::{reg, status, HeaderType};
use alloc::vec::Vec;
use capmon_hal::PciConfig;
use core::fmt;

/// Capabilities live after the 64-byte header.
pub const CAP_MIN_OFFSET: u16 = 0x40;
/// The standard list lives in the first 256 bytes.
pub const CAP_END: u16 = 0x100;
/// The extended list starts at 0x100 and lives in the 4 KiB ECAM space.
pub const EXT_CAP_START: u16 = 0x100;
pub const EXT_CAP_END: u16 = 0x1000;

/// Capability IDs (PCI Code and ID Assignment 1.11 §2).
pub mod id {
    pub const POWER_MANAGEMENT: u8 = 0x01;
    pub const MSI: u8 = 0x05;
    pub const VENDOR: u8 = 0x09;
    pub const PCIE: u8 = 0x10;
    pub const MSIX: u8 = 0x11;
}

/// Extended capability IDs (PCI Code and ID Assignment 1.11 §3).
pub mod ext_id {
    pub const SERIAL_NUMBER: u16 = 0x0003;
    pub const VENDOR: u16 = 0x000b;
}

/// Why a capability walk stopped early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapError {
    /// A pointer (stored at `at`) points into the header or, for the extended list, below 0x100.
    PointerTooLow { at: u16, ptr: u16 },
    /// The pointer stored at `at` leads back to a capability already visited.
    Loop { at: u16, ptr: u16 },
    /// The capability header at `ptr` reads all-ones (the function vanished or the pointer is
    /// garbage).
    AllOnes { ptr: u16 },
}

impl fmt::Display for CapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CapError::PointerTooLow { at, ptr } => {
                write!(f, "pointer at {:#x} -> {:#x} is inside the header", at, ptr)
            }
            CapError::Loop { at, ptr } => {
                write!(f, "pointer at {:#x} -> {:#x} loops back", at, ptr)
            }
            CapError::AllOnes { ptr } => write!(f, "capability at {:#x} reads all-ones", ptr),
        }
    }
}

/// PCIe device/port type (PCIe Base 4.0 §7.5.3.2, bits 7:4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortType {
    Endpoint,
    LegacyEndpoint,
    RootPort,
    UpstreamSwitchPort,
    DownstreamSwitchPort,
    PcieToPciBridge,
    PciToPcieBridge,
    RootComplexIntegratedEndpoint,
    RootComplexEventCollector,
    Unknown(u8),
}

impl PortType {
    pub fn from_raw(v: u8) -> Self {
        match v {
            0x0 => PortType::Endpoint,
            0x1 => PortType::LegacyEndpoint,
            0x4 => PortType::RootPort,
            0x5 => PortType::UpstreamSwitchPort,
            0x6 => PortType::DownstreamSwitchPort,
            0x7 => PortType::PcieToPciBridge,
            0x8 => PortType::PciToPcieBridge,
            0x9 => PortType::RootComplexIntegratedEndpoint,
            0xa => PortType::RootComplexEventCollector,
            n => PortType::Unknown(n),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            PortType::Endpoint => "endpoint",
            PortType::LegacyEndpoint => "legacy-endpoint",
            PortType::RootPort => "root-port",
            PortType::UpstreamSwitchPort => "upstream-port",
            PortType::DownstreamSwitchPort => "downstream-port",
            PortType::PcieToPciBridge => "pcie-to-pci-bridge",
            PortType::PciToPcieBridge => "pci-to-pcie-bridge",
            PortType::RootComplexIntegratedEndpoint => "rc-integrated-endpoint",
            PortType::RootComplexEventCollector => "rc-event-collector",
            PortType::Unknown(_) => "unknown",
        }
    }

    /// Root-complex integrated functions have no link (PCIe Base 4.0 §7.5.3.6).
    fn has_link(self) -> bool {
        !matches!(
            self,
            PortType::RootComplexIntegratedEndpoint | PortType::RootComplexEventCollector
        )
    }
}

/// A link's speed (Supported Link Speeds encoding, PCIe Base 4.0 §7.5.3.6) and width.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkState {
    /// 1 = 2.5 GT/s, 2 = 5, 3 = 8, 4 = 16, 5 = 32, 6 = 64.
    pub speed: u8,
    pub width: u8,
}

/// GT/s of a link speed code, as text.
pub fn link_speed_name(code: u8) -> &'static str {
    match code {
        1 => "2.5GT/s",
        2 => "5GT/s",
        3 => "8GT/s",
        4 => "16GT/s",
        5 => "32GT/s",
        6 => "64GT/s",
        _ => "unknown-speed",
    }
}

/// Virtio structure types (Virtio 1.2 §4.1.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VirtioCfgType {
    Common,
    Notify,
    Isr,
    Device,
    PciCfg,
    SharedMemory,
    Vendor,
    Unknown(u8),
}

impl VirtioCfgType {
    pub fn from_raw(v: u8) -> Self {
        match v {
            1 => VirtioCfgType::Common,
            2 => VirtioCfgType::Notify,
            3 => VirtioCfgType::Isr,
            4 => VirtioCfgType::Device,
            5 => VirtioCfgType::PciCfg,
            8 => VirtioCfgType::SharedMemory,
            9 => VirtioCfgType::Vendor,
            n => VirtioCfgType::Unknown(n),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            VirtioCfgType::Common => "common",
            VirtioCfgType::Notify => "notify",
            VirtioCfgType::Isr => "isr",
            VirtioCfgType::Device => "device",
            VirtioCfgType::PciCfg => "pci",
            VirtioCfgType::SharedMemory => "shm",
            VirtioCfgType::Vendor => "vendor",
            VirtioCfgType::Unknown(_) => "unknown",
        }
    }
}

/// A `virtio_pci_cap` (Virtio 1.2 §4.1.4): where one virtio structure lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VirtioCap {
    pub cfg_type: VirtioCfgType,
    pub bar: u8,
    /// Distinguishes several structures of the same type (shared memory regions).
    pub id: u8,
    pub offset: u64,
    pub length: u64,
    /// For `Notify`: the queue notify offset multiplier.
    pub notify_off_multiplier: Option<u32>,
}

/// Virtio's PCI vendor and device ID range (Virtio 1.2 §4.1.2).
pub const VIRTIO_VENDOR: u16 = 0x1af4;
pub const VIRTIO_DEVICES: core::ops::RangeInclusive<u16> = 0x1000..=0x107f;

/// A decoded standard capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapKind {
    /// PCI Power Management 1.2 §3.2.
    PowerManagement {
        version: u8,
        d1: bool,
        d2: bool,
        pme_support: u8,
        state: u8,
    },
    /// PCI Local Bus 3.0 §6.8.1.
    Msi {
        enabled: bool,
        addr64: bool,
        per_vector_mask: bool,
        vectors: u8,
        enabled_vectors: u8,
        address: u64,
        data: u16,
    },
    /// PCI Local Bus 3.0 §6.8.2; `table_size` is the number of entries.
    MsiX {
        enabled: bool,
        function_mask: bool,
        table_size: u16,
        table_bar: u8,
        table_offset: u32,
        pba_bar: u8,
        pba_offset: u32,
    },
    /// PCIe Base 4.0 §7.5.3; `link` and `max_link` are absent on root-complex integrated ones.
    Pcie {
        version: u8,
        port_type: PortType,
        slot: bool,
        link: Option<LinkState>,
        max_link: Option<LinkState>,
    },
    /// Vendor-specific; decoded further on virtio devices.
    Vendor { len: u8, virtio: Option<VirtioCap> },
    /// Any other capability, named by ID.
    Other,
    /// The structure is invalid (too short, past the end of config space, reserved values).
    Malformed(&'static str),
}

/// One entry of the standard list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cap {
    pub offset: u16,
    pub id: u8,
    pub kind: CapKind,
}

/// The standard list: what was decoded and, if the walk stopped early, why.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CapList {
    pub caps: Vec<Cap>,
    pub problem: Option<CapError>,
}

impl CapList {
    /// The first capability with `id`.
    pub fn find(&self, id: u8) -> Option<&Cap> {
        self.caps.iter().find(|c| c.id == id)
    }

    /// The virtio structures among the vendor capabilities, in list order.
    pub fn virtio(&self) -> impl Iterator<Item = VirtioCap> + '_ {
        self.caps.iter().filter_map(|c| match c.kind {
            CapKind::Vendor { virtio, .. } => virtio,
            _ => None,
        })
    }
}

/// Walks the standard capability list of a function whose header type and IDs are known.
pub fn walk(cfg: &dyn PciConfig, header_type: HeaderType, vendor: u16, device: u16) -> CapList {
    let mut list = CapList::default();
    let Some(mut at) = header_type.cap_ptr_offset() else {
        return list;
    };
    if cfg.read16(reg::STATUS) & status::CAP_LIST == 0 {
        return list;
    }
    let virtio = vendor == VIRTIO_VENDOR && VIRTIO_DEVICES.contains(&device);
    let mut seen = [false; (CAP_END / 4) as usize];
    loop {
        // Bits 1:0 of a capability pointer are reserved (PCI Local Bus 3.0 §6.7).
        let ptr = (cfg.read8(at) & 0xfc) as u16;
        if ptr == 0 {
            break;
        }
        if ptr < CAP_MIN_OFFSET {
            list.problem = Some(CapError::PointerTooLow { at, ptr });
            break;
        }
        let Some(slot) = seen.get_mut((ptr / 4) as usize) else {
            break;
        };
        if *slot {
            list.problem = Some(CapError::Loop { at, ptr });
            break;
        }
        *slot = true;
        let header = cfg.read16(ptr);
        if header == 0xffff {
            list.problem = Some(CapError::AllOnes { ptr });
            break;
        }
        let cap_id = header as u8;
        list.caps.push(Cap {
            offset: ptr,
            id: cap_id,
            kind: decode(cfg, ptr, cap_id, virtio),
        });
        at = ptr + 1;
    }
    list
}

/// Whether `len` bytes at `ptr` fit in the standard config space.
fn fits(ptr: u16, len: u16) -> bool {
    ptr + len <= CAP_END
}

const PAST_END: &str = "extends past offset 0xff";

fn decode(cfg: &dyn PciConfig, ptr: u16, cap_id: u8, virtio: bool) -> CapKind {
    match cap_id {
        id::POWER_MANAGEMENT => decode_pm(cfg, ptr),
        id::MSI => decode_msi(cfg, ptr),
        id::MSIX => decode_msix(cfg, ptr),
        id::PCIE => decode_pcie(cfg, ptr),
        id::VENDOR => decode_vendor(cfg, ptr, virtio),
        _ => CapKind::Other,
    }
}

fn decode_pm(cfg: &dyn PciConfig, ptr: u16) -> CapKind {
    if !fits(ptr, 8) {
        return CapKind::Malformed(PAST_END);
    }
    let pmc = cfg.read16(ptr + 2);
    let pmcsr = cfg.read16(ptr + 4);
    CapKind::PowerManagement {
        version: (pmc & 7) as u8,
        d1: pmc & (1 << 9) != 0,
        d2: pmc & (1 << 10) != 0,
        pme_support: (pmc >> 11) as u8,
        state: (pmcsr & 3) as u8,
    }
}

fn decode_msi(cfg: &dyn PciConfig, ptr: u16) -> CapKind {
    if !fits(ptr, 4) {
        return CapKind::Malformed(PAST_END);
    }
    let ctl = cfg.read16(ptr + 2);
    let addr64 = ctl & (1 << 7) != 0;
    let per_vector_mask = ctl & (1 << 8) != 0;
    // 32-bit: id/next/control, address, data (10 bytes); 64-bit adds an upper address dword;
    // per-vector masking adds mask and pending dwords after the data (padded to a dword).
    let len = match (addr64, per_vector_mask) {
        (false, false) => 0x0a,
        (true, false) => 0x0e,
        (false, true) => 0x14,
        (true, true) => 0x18,
    };
    if !fits(ptr, len) {
        return CapKind::Malformed(PAST_END);
    }
    let mmc = (ctl >> 1) & 7;
    let mme = (ctl >> 4) & 7;
    // Encodings 110b and 111b are reserved (at most 32 vectors).
    if mmc > 5 || mme > 5 {
        return CapKind::Malformed("reserved MSI vector count");
    }
    let lo = cfg.read32(ptr + 4) as u64;
    let (address, data_off) = if addr64 {
        ((cfg.read32(ptr + 8) as u64) << 32 | lo, ptr + 0x0c)
    } else {
        (lo, ptr + 0x08)
    };
    CapKind::Msi {
        enabled: ctl & 1 != 0,
        addr64,
        per_vector_mask,
        vectors: 1 << mmc,
        enabled_vectors: 1 << mme,
        address,
        data: cfg.read16(data_off),
    }
}

/// BAR Indicator values 6 and 7 are reserved (PCI Local Bus 3.0 §6.8.2.4).
const BIR_MAX: u8 = 5;

fn decode_msix(cfg: &dyn PciConfig, ptr: u16) -> CapKind {
    if !fits(ptr, 12) {
        return CapKind::Malformed(PAST_END);
    }
    let ctl = cfg.read16(ptr + 2);
    let table = cfg.read32(ptr + 4);
    let pba = cfg.read32(ptr + 8);
    let (table_bar, pba_bar) = ((table & 7) as u8, (pba & 7) as u8);
    if table_bar > BIR_MAX || pba_bar > BIR_MAX {
        return CapKind::Malformed("reserved MSI-X BAR indicator");
    }
    CapKind::MsiX {
        enabled: ctl & (1 << 15) != 0,
        function_mask: ctl & (1 << 14) != 0,
        table_size: (ctl & 0x7ff) + 1,
        table_bar,
        table_offset: table & !7,
        pba_bar,
        pba_offset: pba & !7,
    }
}

fn decode_pcie(cfg: &dyn PciConfig, ptr: u16) -> CapKind {
    if !fits(ptr, 4) {
        return CapKind::Malformed(PAST_END);
    }
    let caps = cfg.read16(ptr + 2);
    let version = (caps & 0xf) as u8;
    let port_type = PortType::from_raw(((caps >> 4) & 0xf) as u8);
    let slot = caps & (1 << 8) != 0;
    let (link, max_link) = if port_type.has_link() {
        // Link Capabilities at +0x0c, Link Status at +0x12.
        if !fits(ptr, 0x14) {
            return CapKind::Malformed(PAST_END);
        }
        let lcap = cfg.read32(ptr + 0x0c);
        let lsta = cfg.read16(ptr + 0x12);
        let state = |v: u32| LinkState {
            speed: (v & 0xf) as u8,
            width: ((v >> 4) & 0x3f) as u8,
        };
        (Some(state(lsta as u32)), Some(state(lcap)))
    } else {
        (None, None)
    };
    CapKind::Pcie {
        version,
        port_type,
        slot,
        link,
        max_link,
    }
}

/// `struct virtio_pci_cap` is 16 bytes; the notify variant adds a multiplier, the 64-bit
/// shared-memory variant adds upper halves of offset and length.
const VIRTIO_CAP_LEN: u8 = 16;
const VIRTIO_NOTIFY_CAP_LEN: u8 = 20;
const VIRTIO_CAP64_LEN: u8 = 24;

fn decode_vendor(cfg: &dyn PciConfig, ptr: u16, virtio: bool) -> CapKind {
    if !fits(ptr, 3) {
        return CapKind::Malformed(PAST_END);
    }
    let len = cfg.read8(ptr + 2);
    if len < 3 {
        return CapKind::Malformed("vendor capability shorter than its header");
    }
    if !fits(ptr, len as u16) {
        return CapKind::Malformed(PAST_END);
    }
    if !virtio {
        return CapKind::Vendor { len, virtio: None };
    }
    if len < VIRTIO_CAP_LEN {
        return CapKind::Malformed("virtio capability shorter than 16 bytes");
    }
    let cfg_type = VirtioCfgType::from_raw(cfg.read8(ptr + 3));
    let mut offset = cfg.read32(ptr + 8) as u64;
    let mut length = cfg.read32(ptr + 12) as u64;
    let mut notify_off_multiplier = None;
    match cfg_type {
        VirtioCfgType::Notify => {
            if len < VIRTIO_NOTIFY_CAP_LEN {
                return CapKind::Malformed("virtio notify capability shorter than 20 bytes");
            }
            notify_off_multiplier = Some(cfg.read32(ptr + 16));
        }
        VirtioCfgType::SharedMemory => {
            if len < VIRTIO_CAP64_LEN {
                return CapKind::Malformed("virtio shared-memory capability shorter than 24 bytes");
            }
            offset |= (cfg.read32(ptr + 16) as u64) << 32;
            length |= (cfg.read32(ptr + 20) as u64) << 32;
        }
        _ => {}
    }
    let virtio = VirtioCap {
        cfg_type,
        bar: cfg.read8(ptr + 4),
        id: cfg.read8(ptr + 5),
        offset,
        length,
        notify_off_multiplier,
    };
    CapKind::Vendor {
        len,
        virtio: Some(virtio),
    }
}

/// A decoded extended capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtCapKind {
    /// Device Serial Number (PCIe Base 4.0 §7.9.3).
    SerialNumber(u64),
    /// Vendor-Specific Extended Capability header (PCIe Base 4.0 §7.9.5).
    Vendor {
        vsec_id: u16,
        rev: u8,
        len: u16,
    },
    Other,
    Malformed(&'static str),
}

/// One entry of the extended list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtCap {
    pub offset: u16,
    pub id: u16,
    pub version: u8,
    pub kind: ExtCapKind,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtCapList {
    pub caps: Vec<ExtCap>,
    pub problem: Option<CapError>,
}

/// Walks the extended list at 0x100. `cfg` must reach 4 KiB (ECAM). A header of zero or
/// all-ones at 0x100 means the function has no extended capabilities (conventional PCI
/// functions read all-ones there).
pub fn walk_ext(cfg: &dyn PciConfig) -> ExtCapList {
    let mut list = ExtCapList::default();
    let mut seen = [false; (EXT_CAP_END / 4) as usize];
    let mut at = 0u16;
    let mut ptr = EXT_CAP_START;
    while let Some(slot) = seen.get_mut((ptr / 4) as usize) {
        if *slot {
            list.problem = Some(CapError::Loop { at, ptr });
            break;
        }
        *slot = true;
        let header = cfg.read32(ptr);
        if header == u32::MAX {
            if ptr != EXT_CAP_START {
                list.problem = Some(CapError::AllOnes { ptr });
            }
            break;
        }
        if header == 0 && ptr == EXT_CAP_START {
            break;
        }
        let cap_id = header as u16;
        let version = ((header >> 16) & 0xf) as u8;
        list.caps.push(ExtCap {
            offset: ptr,
            id: cap_id,
            version,
            kind: decode_ext(cfg, ptr, cap_id),
        });
        // Next pointer: bits 31:20, bits 1:0 reserved (PCIe Base 4.0 §7.6.3).
        let next = ((header >> 20) as u16) & 0xffc;
        if next == 0 {
            break;
        }
        if next < EXT_CAP_START {
            list.problem = Some(CapError::PointerTooLow { at: ptr, ptr: next });
            break;
        }
        at = ptr;
        ptr = next;
    }
    list
}

fn decode_ext(cfg: &dyn PciConfig, ptr: u16, cap_id: u16) -> ExtCapKind {
    let fits = |len: u16| ptr as u32 + len as u32 <= EXT_CAP_END as u32;
    match cap_id {
        ext_id::SERIAL_NUMBER if fits(12) => ExtCapKind::SerialNumber(
            (cfg.read32(ptr + 8) as u64) << 32 | cfg.read32(ptr + 4) as u64,
        ),
        ext_id::VENDOR if fits(8) => {
            let h = cfg.read32(ptr + 4);
            ExtCapKind::Vendor {
                vsec_id: h as u16,
                rev: ((h >> 16) & 0xf) as u8,
                len: (h >> 20) as u16,
            }
        }
        ext_id::SERIAL_NUMBER | ext_id::VENDOR => {
            ExtCapKind::Malformed("extends past offset 0xfff")
        }
        _ => ExtCapKind::Other,
    }
}
