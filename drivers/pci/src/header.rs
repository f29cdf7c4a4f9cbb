//! The common configuration header (PCI Local Bus 3.0 §6.1, PCI-to-PCI Bridge 1.2 §3.2).
use crate::Bdf;
use capmon_hal::PciConfig;

/// Register offsets of the configuration header.
pub mod reg {
    pub const VENDOR_ID: u16 = 0x00;
    pub const DEVICE_ID: u16 = 0x02;
    pub const COMMAND: u16 = 0x04;
    pub const STATUS: u16 = 0x06;
    pub const REVISION: u16 = 0x08;
    pub const PROG_IF: u16 = 0x09;
    pub const SUBCLASS: u16 = 0x0a;
    pub const CLASS: u16 = 0x0b;
    pub const HEADER_TYPE: u16 = 0x0e;
    pub const BAR0: u16 = 0x10;
    /// Type 2 (CardBus) header: capabilities pointer.
    pub const CARDBUS_CAP_PTR: u16 = 0x14;
    /// Type 1 (bridge) header: bus numbers.
    pub const PRIMARY_BUS: u16 = 0x18;
    pub const SECONDARY_BUS: u16 = 0x19;
    pub const SUBORDINATE_BUS: u16 = 0x1a;
    /// Type 1 header: forwarding windows.
    pub const IO_BASE: u16 = 0x1c;
    pub const IO_LIMIT: u16 = 0x1d;
    pub const MEMORY_BASE: u16 = 0x20;
    pub const MEMORY_LIMIT: u16 = 0x22;
    pub const PREF_BASE: u16 = 0x24;
    pub const PREF_LIMIT: u16 = 0x26;
    pub const PREF_BASE_UPPER: u16 = 0x28;
    pub const PREF_LIMIT_UPPER: u16 = 0x2c;
    pub const IO_BASE_UPPER: u16 = 0x30;
    pub const IO_LIMIT_UPPER: u16 = 0x32;
    /// Type 0 header: subsystem IDs.
    pub const SUBSYSTEM_VENDOR_ID: u16 = 0x2c;
    pub const SUBSYSTEM_ID: u16 = 0x2e;
    /// Expansion ROM base: 0x30 in type 0 headers, 0x38 in type 1.
    pub const ROM_TYPE0: u16 = 0x30;
    pub const ROM_TYPE1: u16 = 0x38;
    pub const CAP_PTR: u16 = 0x34;
    pub const INTERRUPT_LINE: u16 = 0x3c;
    pub const INTERRUPT_PIN: u16 = 0x3d;
}

/// Command register bits (PCI Local Bus 3.0 §6.2.2).
pub mod command {
    pub const IO: u16 = 1 << 0;
    pub const MEMORY: u16 = 1 << 1;
    pub const BUS_MASTER: u16 = 1 << 2;
    pub const SERR: u16 = 1 << 8;
    pub const INTX_DISABLE: u16 = 1 << 10;
    /// Names of the bits worth showing, in bit order.
    pub const NAMES: &[(u16, &str)] = &[
        (IO, "io"),
        (MEMORY, "mem"),
        (BUS_MASTER, "master"),
        (1 << 3, "special"),
        (1 << 4, "mwi"),
        (1 << 5, "vga-snoop"),
        (1 << 6, "parity"),
        (SERR, "serr"),
        (1 << 9, "fast-b2b"),
        (INTX_DISABLE, "intx-off"),
    ];
}

/// Status register bits (PCI Local Bus 3.0 §6.2.3).
pub mod status {
    pub const INTERRUPT: u16 = 1 << 3;
    pub const CAP_LIST: u16 = 1 << 4;
    pub const NAMES: &[(u16, &str)] = &[
        (INTERRUPT, "intx"),
        (CAP_LIST, "caplist"),
        (1 << 5, "66mhz"),
        (1 << 7, "fast-b2b"),
        (1 << 8, "master-parity-err"),
        (1 << 11, "sig-target-abort"),
        (1 << 12, "rcv-target-abort"),
        (1 << 13, "rcv-master-abort"),
        (1 << 14, "sig-system-err"),
        (1 << 15, "parity-err"),
    ];
}

/// The layout of the header after the first 16 bytes (header type bits 6:0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderType {
    /// Type 0: an endpoint, six BARs.
    Normal,
    /// Type 1: PCI-to-PCI bridge (or PCIe root/switch port), two BARs.
    Bridge,
    /// Type 2: CardBus bridge.
    CardBus,
    Unknown(u8),
}

impl HeaderType {
    pub fn from_raw(v: u8) -> Self {
        match v & 0x7f {
            0 => HeaderType::Normal,
            1 => HeaderType::Bridge,
            2 => HeaderType::CardBus,
            n => HeaderType::Unknown(n),
        }
    }

    /// How many BARs this header has.
    pub fn bar_count(self) -> u8 {
        match self {
            HeaderType::Normal => 6,
            HeaderType::Bridge => 2,
            HeaderType::CardBus => 1,
            HeaderType::Unknown(_) => 0,
        }
    }

    /// Where the expansion ROM BAR lives, if the header has one.
    pub fn rom_offset(self) -> Option<u16> {
        match self {
            HeaderType::Normal => Some(reg::ROM_TYPE0),
            HeaderType::Bridge => Some(reg::ROM_TYPE1),
            _ => None,
        }
    }

    /// Where the capabilities pointer lives.
    pub fn cap_ptr_offset(self) -> Option<u16> {
        match self {
            HeaderType::Normal | HeaderType::Bridge => Some(reg::CAP_PTR),
            HeaderType::CardBus => Some(reg::CARDBUS_CAP_PTR),
            HeaderType::Unknown(_) => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            HeaderType::Normal => "normal",
            HeaderType::Bridge => "pci-bridge",
            HeaderType::CardBus => "cardbus-bridge",
            HeaderType::Unknown(_) => "unknown",
        }
    }
}

/// Header type bit 7: the device implements functions 1..7.
const MULTIFUNCTION: u8 = 0x80;

/// Class code: base class, subclass, programming interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClassCode {
    pub base: u8,
    pub sub: u8,
    pub prog_if: u8,
}

/// Base class 0x06 subclass 0x00: host bridge.
pub const CLASS_HOST_BRIDGE: (u8, u8) = (0x06, 0x00);

/// The identifying fields of one present function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub bdf: Bdf,
    pub vendor: u16,
    pub device: u16,
    pub class: ClassCode,
    pub revision: u8,
    pub header_type: HeaderType,
    pub multifunction: bool,
}

impl Header {
    /// Reads the header; `None` if no function answers (vendor ID all-ones or zero).
    pub fn read(cfg: &dyn PciConfig, bdf: Bdf) -> Option<Header> {
        let id = cfg.read32(reg::VENDOR_ID);
        if !present(id) {
            return None;
        }
        let class = cfg.read32(reg::REVISION);
        let ht = cfg.read8(reg::HEADER_TYPE);
        Some(Header {
            bdf,
            vendor: id as u16,
            device: (id >> 16) as u16,
            class: ClassCode {
                base: (class >> 24) as u8,
                sub: (class >> 16) as u8,
                prog_if: (class >> 8) as u8,
            },
            revision: class as u8,
            header_type: HeaderType::from_raw(ht),
            multifunction: ht & MULTIFUNCTION != 0,
        })
    }

    pub fn is_host_bridge(&self) -> bool {
        (self.class.base, self.class.sub) == CLASS_HOST_BRIDGE
    }
}

/// Whether a vendor/device dword names a function. All-ones is what a missing function returns
/// (master abort); a zero vendor or device is never assigned.
pub fn present(id: u32) -> bool {
    let vendor = id as u16;
    let device = (id >> 16) as u16;
    vendor != 0xffff && vendor != 0 && device != 0xffff && id != 0
}

/// A bridge's bus numbers (PCI-to-PCI Bridge 1.2 §3.2.5.2-4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BridgeBuses {
    pub primary: u8,
    pub secondary: u8,
    pub subordinate: u8,
}

impl BridgeBuses {
    pub fn read(cfg: &dyn PciConfig) -> Self {
        let v = cfg.read32(reg::PRIMARY_BUS);
        BridgeBuses {
            primary: v as u8,
            secondary: (v >> 8) as u8,
            subordinate: (v >> 16) as u8,
        }
    }
}

/// A bridge forwarding window; `None` fields mean the window is closed (base above limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BridgeWindows {
    pub io: Option<(u64, u64)>,
    pub memory: Option<(u64, u64)>,
    pub prefetchable: Option<(u64, u64)>,
}

impl BridgeWindows {
    /// Decodes the type 1 window registers (PCI-to-PCI Bridge 1.2 §3.2.5.6-9).
    pub fn read(cfg: &dyn PciConfig) -> Self {
        let io_base = cfg.read8(reg::IO_BASE);
        let io_limit = cfg.read8(reg::IO_LIMIT);
        // Low nibble 1: 32-bit I/O addressing with upper 16 bits in 0x30/0x32.
        let (io_hi_base, io_hi_limit) = if io_base & 0xf == 1 {
            (
                cfg.read16(reg::IO_BASE_UPPER) as u64,
                cfg.read16(reg::IO_LIMIT_UPPER) as u64,
            )
        } else {
            (0, 0)
        };
        let io_lo = io_hi_base << 16 | ((io_base & 0xf0) as u64) << 8;
        let io_hi = io_hi_limit << 16 | ((io_limit & 0xf0) as u64) << 8 | 0xfff;

        let mem_lo = ((cfg.read16(reg::MEMORY_BASE) & 0xfff0) as u64) << 16;
        let mem_hi = ((cfg.read16(reg::MEMORY_LIMIT) & 0xfff0) as u64) << 16 | 0xf_ffff;

        let pb = cfg.read16(reg::PREF_BASE);
        let pl = cfg.read16(reg::PREF_LIMIT);
        // Low nibble 1: 64-bit prefetchable window with upper 32 bits in 0x28/0x2c.
        let (pb_hi, pl_hi) = if pb & 0xf == 1 {
            (
                cfg.read32(reg::PREF_BASE_UPPER) as u64,
                cfg.read32(reg::PREF_LIMIT_UPPER) as u64,
            )
        } else {
            (0, 0)
        };
        let pref_lo = pb_hi << 32 | ((pb & 0xfff0) as u64) << 16;
        let pref_hi = pl_hi << 32 | ((pl & 0xfff0) as u64) << 16 | 0xf_ffff;

        let open = |lo: u64, hi: u64| (lo <= hi).then_some((lo, hi));
        BridgeWindows {
            io: open(io_lo, io_hi),
            memory: open(mem_lo, mem_hi),
            prefetchable: open(pref_lo, pref_hi),
        }
    }
}
