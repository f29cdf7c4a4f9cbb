//! Message-signalled interrupts: the MSI capability (PCI Local Bus 3.0 §6.8.1), the MSI-X
//! capability, table and pending-bit array (§6.8.2), and the Command register's Interrupt
//! Disable bit around them (§6.2.2: INTx off while messages are on).
//!
//! Nothing here trusts the function: a capability that reads all-ones, a reserved encoding, a
//! table that does not fit its BAR or its window, an entry that does not take what was written
//! are errors, never a panic. Requests are checked before the first write, so a refused request
//! leaves the function as it was.
use crate::bar::Bars;
use crate::caps::{self, id, CAP_END, CAP_MIN_OFFSET};
use crate::header::{command, reg, HeaderType};
use alloc::format;
use alloc::string::String;
use capmon_hal::{
    BarMapper, Interrupts, IrqOwner, IrqVector, Mmio, MmioBox, MsiMessage, PciConfig,
};
use core::fmt;

// MSI capability registers, as offsets from the capability (§6.8.1). The layout after the
// address depends on whether the function takes 64-bit addresses.
const MSI_CONTROL: u16 = 0x02;
const MSI_ADDRESS_LO: u16 = 0x04;
const MSI_ADDRESS_HI: u16 = 0x08;
const MSI_DATA_32: u16 = 0x08;
const MSI_DATA_64: u16 = 0x0c;
const MSI_MASK_32: u16 = 0x0c;
const MSI_MASK_64: u16 = 0x10;

/// MSI Message Control bits (§6.8.1.3).
mod msi_ctl {
    pub const ENABLE: u16 = 1 << 0;
    /// Multiple Message Capable, log2 of the vectors the function asks for (bits 3:1).
    pub const MMC_SHIFT: u16 = 1;
    /// Multiple Message Enable, log2 of the vectors software grants (bits 6:4).
    pub const MME_SHIFT: u16 = 4;
    pub const MM_MASK: u16 = 0x7;
    pub const ADDR64: u16 = 1 << 7;
    pub const PER_VECTOR_MASK: u16 = 1 << 8;
}

/// MMC/MME encodings 110b and 111b are reserved: at most 32 vectors (§6.8.1.3).
const MSI_MAX_LOG2: u8 = 5;

// MSI-X capability registers (§6.8.2).
const MSIX_CONTROL: u16 = 0x02;
const MSIX_TABLE: u16 = 0x04;
const MSIX_PBA: u16 = 0x08;
/// The MSI-X capability is 12 bytes.
const MSIX_CAP_LEN: u16 = 12;

/// MSI-X Message Control bits (§6.8.2.3).
mod msix_ctl {
    /// Table Size, encoded as N-1 (bits 10:0).
    pub const TABLE_SIZE: u16 = 0x7ff;
    pub const FUNCTION_MASK: u16 = 1 << 14;
    pub const ENABLE: u16 = 1 << 15;
}

/// Table/PBA Offset registers: BAR Indicator in bits 2:0, QWORD-aligned offset above (§6.8.2.4).
const BIR_MASK: u32 = 0x7;
/// BIR values 6 and 7 are reserved.
const BIR_MAX: u8 = 5;
/// At most 2048 entries (an 11-bit N-1 field).
pub const MSIX_MAX_ENTRIES: u16 = 2048;

// One MSI-X table entry (§6.8.2.6-9): 16 bytes, accessed as aligned DWORDs.
const ENTRY_SIZE: usize = 16;
const ENTRY_ADDRESS_LO: usize = 0x0;
const ENTRY_ADDRESS_HI: usize = 0x4;
const ENTRY_DATA: usize = 0x8;
const ENTRY_VECTOR_CONTROL: usize = 0xc;
/// Vector Control bit 0; bits 31:1 are preserved when it changes (§6.8.2.9).
const VECTOR_MASKED: u32 = 1;
/// Message addresses are DWORD-aligned: bits 1:0 are reserved (§6.8.1.4, §6.8.2.6).
const ADDRESS_RESERVED: u64 = 0x3;

/// Why MSI or MSI-X could not be read or programmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsiError {
    /// The capability at `at` is not the one expected (`found` 0xff: the function reads all-ones).
    NotCapability { at: u16, want: u8, found: u8 },
    /// The capability offset is not a dword in 0x40..0x100, or the capability runs past 0xff.
    BadCapOffset { at: u16 },
    /// A register reads all-ones: the function is gone or broken.
    AllOnes { at: u16 },
    /// A field holds a value the spec reserves.
    Reserved { what: &'static str, value: u32 },
    /// More MSI vectors were asked for than the function can take.
    TooManyVectors { asked_log2: u8, capable_log2: u8 },
    /// The function takes 32-bit message addresses only.
    AddressTooHigh { address: u64 },
    /// Message addresses must be DWORD-aligned.
    MisalignedAddress { address: u64 },
    /// MSI message data is 16 bits.
    DataTooWide { data: u32 },
    /// With 2^n MSI vectors the function owns the low n bits of the data.
    DataNotAligned { data: u32, vectors: u32 },
    /// The BAR the table or PBA names is not implemented.
    NoSuchBar { bir: u8 },
    /// The BAR the table or PBA names decodes I/O space.
    NotMemoryBar { bir: u8 },
    /// The table or PBA does not fit in its BAR.
    OutsideBar {
        what: &'static str,
        bir: u8,
        offset: u32,
        len: usize,
        bar_size: u64,
    },
    /// The table and the PBA overlap.
    Overlap,
    /// The mapped window is smaller than the structure it should hold.
    WindowTooSmall {
        what: &'static str,
        needed: usize,
        have: usize,
    },
    /// The MSI-X table has fewer entries.
    NoSuchEntry { entry: u16, entries: u16 },
    /// The table was built without its PBA window.
    NoPba,
    /// A register did not keep what was written.
    ReadBack {
        what: &'static str,
        wrote: u64,
        read: u64,
    },
}

impl fmt::Display for MsiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MsiError::NotCapability { at, want, found } => write!(
                f,
                "no capability {:#04x} at {:#x} (found ID {:#04x})",
                want, at, found
            ),
            MsiError::BadCapOffset { at } => write!(
                f,
                "capability at {:#x}: not a dword in 0x40..0x100 or runs past 0xff",
                at
            ),
            MsiError::AllOnes { at } => {
                write!(f, "register {:#x} reads all-ones (function gone?)", at)
            }
            MsiError::Reserved { what, value } => write!(f, "reserved {} {:#x}", what, value),
            MsiError::TooManyVectors {
                asked_log2,
                capable_log2,
            } => write!(
                f,
                "{} MSI vectors asked, function takes at most {}",
                1u64 << (*asked_log2).min(63),
                1u64 << (*capable_log2).min(63)
            ),
            MsiError::AddressTooHigh { address } => write!(
                f,
                "message address {:#x} above 4 GiB on a 32-bit-only function",
                address
            ),
            MsiError::MisalignedAddress { address } => {
                write!(f, "message address {:#x} not DWORD-aligned", address)
            }
            MsiError::DataTooWide { data } => {
                write!(f, "message data {:#x} wider than MSI's 16 bits", data)
            }
            MsiError::DataNotAligned { data, vectors } => write!(
                f,
                "message data {:#x} not aligned to {} vectors",
                data, vectors
            ),
            MsiError::NoSuchBar { bir } => write!(f, "MSI-X structure in missing BAR{}", bir),
            MsiError::NotMemoryBar { bir } => {
                write!(f, "MSI-X structure in BAR{}, an I/O BAR", bir)
            }
            MsiError::OutsideBar {
                what,
                bir,
                offset,
                len,
                bar_size,
            } => write!(
                f,
                "MSI-X {} at BAR{}+{:#x} ({:#x} bytes) outside the BAR ({:#x} bytes)",
                what, bir, offset, len, bar_size
            ),
            MsiError::Overlap => f.write_str("MSI-X table and PBA overlap"),
            MsiError::WindowTooSmall { what, needed, have } => write!(
                f,
                "MSI-X {} window of {:#x} bytes, needs {:#x}",
                what, have, needed
            ),
            MsiError::NoSuchEntry { entry, entries } => write!(
                f,
                "MSI-X entry {} out of range (table has {})",
                entry, entries
            ),
            MsiError::NoPba => f.write_str("MSI-X PBA not mapped"),
            MsiError::ReadBack { what, wrote, read } => {
                write!(f, "{}: wrote {:#x}, reads {:#x}", what, wrote, read)
            }
        }
    }
}

/// The offset of the first capability `cap_id` in the standard list, walked with the header
/// and IDs read from `cfg` itself.
pub fn find_cap(cfg: &dyn PciConfig, cap_id: u8) -> Option<u16> {
    let header = HeaderType::from_raw(cfg.read8(reg::HEADER_TYPE));
    let vendor = cfg.read16(reg::VENDOR_ID);
    let device = cfg.read16(reg::DEVICE_ID);
    caps::walk(cfg, header, vendor, device)
        .find(cap_id)
        .map(|c| c.offset)
}

/// Checks that a capability `want` of `len` bytes sits at `at`; returns its control word.
fn control(cfg: &dyn PciConfig, at: u16, want: u8, len: u16) -> Result<u16, MsiError> {
    if at < CAP_MIN_OFFSET || !at.is_multiple_of(4) || at as u32 + len as u32 > CAP_END as u32 {
        return Err(MsiError::BadCapOffset { at });
    }
    let found = cfg.read8(at);
    if found != want {
        return Err(MsiError::NotCapability { at, want, found });
    }
    let ctl = cfg.read16(at + 2);
    if ctl == 0xffff {
        return Err(MsiError::AllOnes { at: at + 2 });
    }
    Ok(ctl)
}

/// Sets and clears Command register bits. Written as a dword with the Status half zero: its
/// error bits are write-1-to-clear.
fn update_command(cfg: &dyn PciConfig, set: u16, clear: u16) -> Result<(), MsiError> {
    let cmd = cfg.read16(reg::COMMAND);
    if cmd == 0xffff {
        return Err(MsiError::AllOnes { at: reg::COMMAND });
    }
    cfg.write32(reg::COMMAND, ((cmd & !clear) | set) as u32);
    Ok(())
}

/// Lets the function assert INTx again (Command.InterruptDisable clear), for after MSI or
/// MSI-X is disabled.
pub fn enable_intx(cfg: &dyn PciConfig) -> Result<(), MsiError> {
    update_command(cfg, 0, command::INTX_DISABLE)
}

/// The INTx vector of the function's interrupt pin, routed by `irq` (ACPI `_PRT`) and named
/// `label` in the routing table, with the function's INTx enabled. The error says why not:
/// no pin, no route, or the Command register refused.
pub fn route_intx(
    cfg: &dyn PciConfig,
    irq: &dyn Interrupts,
    owner: IrqOwner,
    label: &str,
) -> Result<IrqVector, String> {
    let pin = cfg.read8(reg::INTERRUPT_PIN);
    if !(1..=4).contains(&pin) {
        return Err(String::from("no interrupt pin"));
    }
    let v = irq
        .alloc_intx(owner, pin, label)
        .ok_or_else(|| format!("no route for INT{}", (b'A' + pin - 1) as char))?;
    if let Err(e) = enable_intx(cfg) {
        irq.free(&v);
        return Err(format!("{}", e));
    }
    Ok(v)
}

/// Stops the function asserting INTx (Command.InterruptDisable set), e.g. while nobody
/// listens to its line.
pub fn disable_intx(cfg: &dyn PciConfig) -> Result<(), MsiError> {
    update_command(cfg, command::INTX_DISABLE, 0)
}

/// Messages are memory writes by the function: it needs Bus Master; INTx goes off.
fn messages_on(cfg: &dyn PciConfig) -> Result<(), MsiError> {
    update_command(cfg, command::BUS_MASTER | command::INTX_DISABLE, 0)
}

/// What an MSI capability offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsiCap {
    pub offset: u16,
    /// Takes a 64-bit message address.
    pub addr64: bool,
    /// Has mask and pending bits per vector.
    pub per_vector_mask: bool,
    /// Log2 of the vectors the function can use (Multiple Message Capable).
    pub vectors_log2: u8,
}

impl MsiCap {
    /// Reads and checks the MSI capability at `cap_offset`.
    pub fn read(cfg: &dyn PciConfig, cap_offset: u16) -> Result<MsiCap, MsiError> {
        let ctl = control(cfg, cap_offset, id::MSI, MSI_DATA_32 + 2)?;
        let addr64 = ctl & msi_ctl::ADDR64 != 0;
        let per_vector_mask = ctl & msi_ctl::PER_VECTOR_MASK != 0;
        let cap = MsiCap {
            offset: cap_offset,
            addr64,
            per_vector_mask,
            vectors_log2: ((ctl >> msi_ctl::MMC_SHIFT) & msi_ctl::MM_MASK) as u8,
        };
        if cap.vectors_log2 > MSI_MAX_LOG2 {
            return Err(MsiError::Reserved {
                what: "MSI Multiple Message Capable",
                value: cap.vectors_log2 as u32,
            });
        }
        // Mask and pending dwords follow the data when per-vector masking exists.
        let end = if per_vector_mask {
            cap.mask_offset() + 8
        } else {
            cap.data_offset() + 2
        };
        if cap_offset + end > CAP_END {
            return Err(MsiError::BadCapOffset { at: cap_offset });
        }
        Ok(cap)
    }

    fn data_offset(&self) -> u16 {
        if self.addr64 {
            MSI_DATA_64
        } else {
            MSI_DATA_32
        }
    }

    fn mask_offset(&self) -> u16 {
        if self.addr64 {
            MSI_MASK_64
        } else {
            MSI_MASK_32
        }
    }
}

/// Programs and enables MSI with 2^`vectors_log2` vectors, all signalled by writing `msg`
/// (the function ORs the vector number into the low data bits). In order: MSI off, address
/// (low, then high on a 64-bit function), data, Multiple Message Enable, per-vector masks
/// cleared, Bus Master on and INTx off, MSI on. MSI-X, if the function has it enabled, is
/// turned off first: software must not enable both (§6.8.1).
pub fn program_msi(
    cfg: &dyn PciConfig,
    cap_offset: u16,
    msg: MsiMessage,
    vectors_log2: u8,
) -> Result<MsiCap, MsiError> {
    let cap = MsiCap::read(cfg, cap_offset)?;
    if vectors_log2 > cap.vectors_log2 {
        return Err(MsiError::TooManyVectors {
            asked_log2: vectors_log2,
            capable_log2: cap.vectors_log2,
        });
    }
    if msg.address & ADDRESS_RESERVED != 0 {
        return Err(MsiError::MisalignedAddress {
            address: msg.address,
        });
    }
    if !cap.addr64 && msg.address > u32::MAX as u64 {
        return Err(MsiError::AddressTooHigh {
            address: msg.address,
        });
    }
    if msg.data > u16::MAX as u32 {
        return Err(MsiError::DataTooWide { data: msg.data });
    }
    let vectors = 1u32 << vectors_log2;
    if msg.data & (vectors - 1) != 0 {
        return Err(MsiError::DataNotAligned {
            data: msg.data,
            vectors,
        });
    }
    if let Some(msix) = find_cap(cfg, id::MSIX) {
        if cfg.read16(msix + MSIX_CONTROL) & msix_ctl::ENABLE != 0 {
            disable_msix(cfg, msix)?;
        }
    }
    let at = |off: u16| cap_offset + off;
    let ctl = cfg.read16(at(MSI_CONTROL));
    let mme_field = msi_ctl::MM_MASK << msi_ctl::MME_SHIFT;
    let off = ctl & !(msi_ctl::ENABLE | mme_field);
    cfg.write16(at(MSI_CONTROL), off);
    cfg.write32(at(MSI_ADDRESS_LO), msg.address as u32);
    if cap.addr64 {
        cfg.write32(at(MSI_ADDRESS_HI), (msg.address >> 32) as u32);
    }
    cfg.write16(at(cap.data_offset()), msg.data as u16);
    let with_mme = off | (vectors_log2 as u16) << msi_ctl::MME_SHIFT;
    cfg.write16(at(MSI_CONTROL), with_mme);
    if cap.per_vector_mask {
        let mask = cfg.read32(at(cap.mask_offset()));
        let granted = if vectors == 32 {
            u32::MAX
        } else {
            (1 << vectors) - 1
        };
        cfg.write32(at(cap.mask_offset()), mask & !granted);
    }
    messages_on(cfg)?;
    cfg.write16(at(MSI_CONTROL), with_mme | msi_ctl::ENABLE);
    let now = cfg.read16(at(MSI_CONTROL));
    if now & (msi_ctl::ENABLE | mme_field) != (with_mme & mme_field) | msi_ctl::ENABLE {
        cfg.write16(at(MSI_CONTROL), off);
        return Err(MsiError::ReadBack {
            what: "MSI Message Control",
            wrote: (with_mme | msi_ctl::ENABLE) as u64,
            read: now as u64,
        });
    }
    Ok(cap)
}

/// Turns MSI off (INTx stays off until [`enable_intx`]).
pub fn disable_msi(cfg: &dyn PciConfig, cap_offset: u16) -> Result<(), MsiError> {
    let ctl = control(cfg, cap_offset, id::MSI, MSI_DATA_32 + 2)?;
    cfg.write16(cap_offset + MSI_CONTROL, ctl & !msi_ctl::ENABLE);
    Ok(())
}

/// Where an MSI-X table or PBA lives: BAR `bir`, `offset` bytes in, `len` bytes long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsixRegion {
    pub bir: u8,
    pub offset: u32,
    pub len: usize,
}

impl MsixRegion {
    fn end(&self) -> u64 {
        self.offset as u64 + self.len as u64
    }
}

/// The MSI-X structures of a function, from its capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsixLayout {
    /// Table entries (1..=2048).
    pub entries: u16,
    /// 16 bytes per entry.
    pub table: MsixRegion,
    /// One bit per entry, in QWORDs.
    pub pba: MsixRegion,
}

/// Reads where the MSI-X table and PBA of the capability at `cap_offset` live, and how long
/// they are. With `bars` (from [`crate::Pci::bars`], which sizes them), also checks that both
/// fit in their memory BARs; without, only the capability is read (sizing a BAR pauses the
/// function's decoding, which a driver of a live function must not do).
pub fn msix_layout(
    cfg: &dyn PciConfig,
    cap_offset: u16,
    bars: Option<&Bars>,
) -> Result<MsixLayout, MsiError> {
    let ctl = control(cfg, cap_offset, id::MSIX, MSIX_CAP_LEN)?;
    let region = |reg: u16, what: &'static str, len: usize| {
        let v = cfg.read32(cap_offset + reg);
        let bir = (v & BIR_MASK) as u8;
        if bir > BIR_MAX {
            return Err(MsiError::Reserved {
                what: "MSI-X BAR indicator",
                value: bir as u32,
            });
        }
        let r = MsixRegion {
            bir,
            offset: v & !BIR_MASK,
            len,
        };
        if let Some(bars) = bars {
            let bar = bars
                .bars
                .iter()
                .find(|b| b.index == bir)
                .ok_or(MsiError::NoSuchBar { bir })?;
            if !bar.kind.is_memory() {
                return Err(MsiError::NotMemoryBar { bir });
            }
            if r.end() > bar.size {
                return Err(MsiError::OutsideBar {
                    what,
                    bir,
                    offset: r.offset,
                    len,
                    bar_size: bar.size,
                });
            }
        }
        Ok(r)
    };
    let entries = (ctl & msix_ctl::TABLE_SIZE) + 1;
    let table = region(MSIX_TABLE, "table", entries as usize * ENTRY_SIZE)?;
    let pba = region(MSIX_PBA, "PBA", pba_len(entries))?;
    let overlap = table.bir == pba.bir
        && (table.offset as u64) < pba.end()
        && (pba.offset as u64) < table.end();
    if overlap {
        return Err(MsiError::Overlap);
    }
    Ok(MsixLayout {
        entries,
        table,
        pba,
    })
}

/// Bytes of PBA for `entries`: one bit each, in whole QWORDs (§6.8.2.10).
fn pba_len(entries: u16) -> usize {
    (entries as usize).div_ceil(64) * 8
}

/// Maps the MSI-X table `layout` names (its BAR's base read without sizing, as a driver of a
/// live function must), through `bars`. The error says why not.
pub fn map_msix_table(
    cfg: &dyn PciConfig,
    layout: &MsixLayout,
    bars: &dyn BarMapper,
) -> Result<MmioBox, String> {
    let bir = layout.table.bir;
    let phys = crate::memory_bar_base(cfg, bir)
        .map_err(|why| format!("table: BAR{}: {}", bir, why))?
        .checked_add(layout.table.offset as u64)
        .ok_or("table offset overflows")?;
    bars.map_mmio(phys, layout.table.len)
        .ok_or_else(|| format!("cannot map table at {:#x}", phys))
}

/// One MSI-X table entry as read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsixEntry {
    pub message: MsiMessage,
    /// Vector Control's Mask bit.
    pub masked: bool,
}

/// An MSI-X table (and optionally its PBA) in windows the caller mapped: the table window
/// starts at the table (BAR base + table offset), the PBA window at the PBA.
pub struct MsixTable<'a> {
    table: &'a dyn Mmio,
    pba: Option<&'a dyn Mmio>,
    entries: u16,
}

impl<'a> MsixTable<'a> {
    /// A table of `entries` (from [`MsixLayout`]) in `table`, which must hold all of them.
    pub fn new(table: &'a dyn Mmio, entries: u16) -> Result<Self, MsiError> {
        if entries == 0 || entries > MSIX_MAX_ENTRIES {
            return Err(MsiError::Reserved {
                what: "MSI-X table size",
                value: entries as u32,
            });
        }
        let needed = entries as usize * ENTRY_SIZE;
        if table.len() < needed {
            return Err(MsiError::WindowTooSmall {
                what: "table",
                needed,
                have: table.len(),
            });
        }
        Ok(MsixTable {
            table,
            pba: None,
            entries,
        })
    }

    /// Adds the PBA window, which must hold one bit per entry.
    pub fn with_pba(mut self, pba: &'a dyn Mmio) -> Result<Self, MsiError> {
        let needed = pba_len(self.entries);
        if pba.len() < needed {
            return Err(MsiError::WindowTooSmall {
                what: "PBA",
                needed,
                have: pba.len(),
            });
        }
        self.pba = Some(pba);
        Ok(self)
    }

    pub fn entries(&self) -> u16 {
        self.entries
    }

    /// Byte offset of `entry` in the table.
    fn base(&self, entry: u16) -> Result<usize, MsiError> {
        if entry >= self.entries {
            return Err(MsiError::NoSuchEntry {
                entry,
                entries: self.entries,
            });
        }
        Ok(entry as usize * ENTRY_SIZE)
    }

    pub fn entry(&self, entry: u16) -> Result<MsixEntry, MsiError> {
        let b = self.base(entry)?;
        let lo = self.table.read32(b + ENTRY_ADDRESS_LO) as u64;
        let hi = self.table.read32(b + ENTRY_ADDRESS_HI) as u64;
        Ok(MsixEntry {
            message: MsiMessage {
                address: hi << 32 | lo,
                data: self.table.read32(b + ENTRY_DATA),
            },
            masked: self.table.read32(b + ENTRY_VECTOR_CONTROL) & VECTOR_MASKED != 0,
        })
    }

    fn set_mask(&self, entry: u16, masked: bool) -> Result<(), MsiError> {
        let at = self.base(entry)? + ENTRY_VECTOR_CONTROL;
        let ctl = self.table.read32(at);
        let new = if masked {
            ctl | VECTOR_MASKED
        } else {
            ctl & !VECTOR_MASKED
        };
        self.table.write32(at, new);
        Ok(())
    }

    /// Stops `entry` from sending (the function latches its pending bit instead).
    pub fn mask(&self, entry: u16) -> Result<(), MsiError> {
        self.set_mask(entry, true)
    }

    pub fn unmask(&self, entry: u16) -> Result<(), MsiError> {
        self.set_mask(entry, false)
    }

    /// Points `entry` at `msg`: masks it, writes address low, address high and data, checks
    /// they read back, then unmasks it. An entry must not change while unmasked (§6.8.2.9);
    /// one that does not take the message is left masked.
    pub fn program(&self, entry: u16, msg: MsiMessage) -> Result<(), MsiError> {
        let b = self.base(entry)?;
        if msg.address & ADDRESS_RESERVED != 0 {
            return Err(MsiError::MisalignedAddress {
                address: msg.address,
            });
        }
        self.mask(entry)?;
        self.table.write32(b + ENTRY_ADDRESS_LO, msg.address as u32);
        self.table
            .write32(b + ENTRY_ADDRESS_HI, (msg.address >> 32) as u32);
        self.table.write32(b + ENTRY_DATA, msg.data);
        let read = self.entry(entry)?;
        if read.message.address != msg.address {
            return Err(MsiError::ReadBack {
                what: "MSI-X entry address",
                wrote: msg.address,
                read: read.message.address,
            });
        }
        if read.message.data != msg.data {
            return Err(MsiError::ReadBack {
                what: "MSI-X entry data",
                wrote: msg.data as u64,
                read: read.message.data as u64,
            });
        }
        self.unmask(entry)
    }

    /// Whether `entry` has a message pending (it fired while masked), from the PBA.
    pub fn pending(&self, entry: u16) -> Result<bool, MsiError> {
        self.base(entry)?;
        let pba = self.pba.ok_or(MsiError::NoPba)?;
        // DWORD reads are allowed on the PBA (§6.8.2.10); bit n of the array is entry n.
        let dword = pba.read32(entry as usize / 32 * 4);
        Ok(dword & (1 << (entry % 32)) != 0)
    }
}

/// MSI-X enabled with the whole function masked: the only state in which the table is
/// programmed before any entry may fire. [`MsixEnabling::finish`] unmasks the function;
/// dropping it unfinished turns MSI-X off again.
#[must_use = "MSI-X stays function-masked until finish(); dropping it disables MSI-X"]
pub struct MsixEnabling<'a> {
    cfg: &'a dyn PciConfig,
    cap: u16,
    finished: bool,
}

/// Starts enabling MSI-X: MSI off if the function has it on (software must not enable both,
/// §6.8.2), then Function Mask and MSI-X Enable in one write, then Bus Master on and INTx off.
/// Program entries through the returned guard, then call `finish`.
pub fn enable_msix(cfg: &dyn PciConfig, cap_offset: u16) -> Result<MsixEnabling<'_>, MsiError> {
    let ctl = control(cfg, cap_offset, id::MSIX, MSIX_CAP_LEN)?;
    if let Some(msi) = find_cap(cfg, id::MSI) {
        if cfg.read16(msi + MSI_CONTROL) & msi_ctl::ENABLE != 0 {
            disable_msi(cfg, msi)?;
        }
    }
    let want = ctl | msix_ctl::FUNCTION_MASK | msix_ctl::ENABLE;
    cfg.write16(cap_offset + MSIX_CONTROL, want);
    let guard = MsixEnabling {
        cfg,
        cap: cap_offset,
        finished: false,
    };
    let now = cfg.read16(cap_offset + MSIX_CONTROL);
    let both = msix_ctl::FUNCTION_MASK | msix_ctl::ENABLE;
    if now & both != both {
        return Err(MsiError::ReadBack {
            what: "MSI-X Message Control",
            wrote: want as u64,
            read: now as u64,
        });
    }
    messages_on(cfg)?;
    Ok(guard)
}

impl MsixEnabling<'_> {
    /// Programs one entry (see [`MsixTable::program`]) while the function is masked.
    pub fn program(
        &mut self,
        table: &MsixTable<'_>,
        entry: u16,
        msg: MsiMessage,
    ) -> Result<(), MsiError> {
        table.program(entry, msg)
    }

    /// Clears Function Mask: unmasked entries may fire from now on.
    pub fn finish(mut self) -> Result<(), MsiError> {
        let at = self.cap + MSIX_CONTROL;
        let ctl = self.cfg.read16(at);
        self.cfg.write16(at, ctl & !msix_ctl::FUNCTION_MASK);
        let now = self.cfg.read16(at);
        if now & (msix_ctl::FUNCTION_MASK | msix_ctl::ENABLE) != msix_ctl::ENABLE {
            // Drop turns MSI-X off again.
            return Err(MsiError::ReadBack {
                what: "MSI-X Message Control",
                wrote: (ctl & !msix_ctl::FUNCTION_MASK) as u64,
                read: now as u64,
            });
        }
        self.finished = true;
        Ok(())
    }
}

impl Drop for MsixEnabling<'_> {
    fn drop(&mut self) {
        if !self.finished {
            let _ = disable_msix(self.cfg, self.cap);
        }
    }
}

/// Turns MSI-X off (Enable and Function Mask clear). Table entries keep their contents; INTx
/// stays off until [`enable_intx`].
pub fn disable_msix(cfg: &dyn PciConfig, cap_offset: u16) -> Result<(), MsiError> {
    let ctl = control(cfg, cap_offset, id::MSIX, MSIX_CAP_LEN)?;
    cfg.write16(
        cap_offset + MSIX_CONTROL,
        ctl & !(msix_ctl::ENABLE | msix_ctl::FUNCTION_MASK),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{msi_cap, msix_cap, sample_machine, FakeFunction, FakeMachine, FakeMmio};
    use crate::fake::{FakeWrite, Shared, WriteLog};
    use crate::{Bdf, FunctionConfig, Pci};
    use alloc::vec::Vec;

    const MSI: u16 = 0x50;
    const MSIX: u16 = 0x70;
    const MSG: MsiMessage = MsiMessage {
        address: 0xfee0_1000,
        data: 0x4034,
    };

    fn bdf() -> Bdf {
        Bdf::new(0, 0, 5, 0).unwrap()
    }

    /// A function with BAR0 (mem32, 16 KiB), BAR2 (I/O), a 64-bit MSI capability with
    /// per-vector masking and 4 vectors at 0x50, and MSI-X (`msix`) at 0x70.
    fn function(msix: &[u8]) -> FakeFunction {
        FakeFunction::new(0x8086, 0x1234, (0x02, 0x00, 0x00))
            .bar32(0, 0xfebf_0000, 0x4000, false, false)
            .bar32(2, 0xc000, 0x20, true, false)
            .caps(&[(MSI as u8, &msi_cap(true, true, 2)), (MSIX as u8, msix)])
    }

    fn standard_msix() -> Vec<u8> {
        msix_cap(4, (0, 0x2000), (0, 0x3000))
    }

    fn machine(f: FakeFunction) -> (Pci, Shared, FunctionConfig) {
        let mut m = FakeMachine::new();
        m.add(0, 0, 5, 0, f);
        let (pci, shared) = m.into_pci(true, &[(0, 0, 0)]).unwrap();
        let cfg = pci.function(bdf()).unwrap();
        shared.take_writes();
        (pci, shared, cfg)
    }

    fn cfgw(off: u16, len: u8, value: u32) -> FakeWrite {
        FakeWrite::Config {
            bdf: bdf(),
            off,
            len,
            value,
        }
    }

    fn mmw(window: &'static str, off: usize, value: u32) -> FakeWrite {
        FakeWrite::Mmio { window, off, value }
    }

    #[test]
    fn msi_64bit_is_programmed_in_order() {
        // Firmware left every vector masked.
        let (_pci, m, cfg) = machine(function(&standard_msix()).raw(0x60, &[0xf, 0, 0, 0]));
        let cap = program_msi(&cfg, MSI, MSG, 2).unwrap();
        assert_eq!(
            cap,
            MsiCap {
                offset: MSI,
                addr64: true,
                per_vector_mask: true,
                vectors_log2: 2
            }
        );
        assert_eq!(
            m.take_writes(),
            [
                cfgw(0x52, 2, 0x0184),      // MSI off, MME 0
                cfgw(0x54, 4, 0xfee0_1000), // address low
                cfgw(0x58, 4, 0),           // address high
                cfgw(0x5c, 2, 0x4034),      // data (64-bit layout)
                cfgw(0x52, 2, 0x01a4),      // MME = 4 vectors
                cfgw(0x60, 4, 0),           // per-vector masks cleared
                cfgw(0x04, 4, 0x0407),      // bus master, INTx off
                cfgw(0x52, 2, 0x01a5),      // MSI on
            ]
        );
        assert_eq!(m.peek32(bdf(), 0x50), 0x01a5_7005);
        assert_eq!(m.peek32(bdf(), 0x5c) & 0xffff, 0x4034);

        disable_msi(&cfg, MSI).unwrap();
        assert_eq!(m.take_writes(), [cfgw(0x52, 2, 0x01a4)]);
        enable_intx(&cfg).unwrap();
        assert_eq!(m.take_writes(), [cfgw(0x04, 4, 0x0007)]);
        disable_intx(&cfg).unwrap();
        assert_eq!(m.take_writes(), [cfgw(0x04, 4, 0x0407)]);
    }

    #[test]
    fn msi_32bit_layout_and_refusals() {
        let f = FakeFunction::new(0x8086, 0x1235, (0x02, 0x00, 0x00))
            .caps(&[(0x40, &msi_cap(false, false, 0))]);
        let (_pci, m, cfg) = machine(f);
        let high = MsiMessage {
            address: 0x1_fee0_0000,
            data: 0x41,
        };
        assert_eq!(
            program_msi(&cfg, 0x40, high, 0),
            Err(MsiError::AddressTooHigh {
                address: 0x1_fee0_0000
            })
        );
        assert_eq!(
            program_msi(&cfg, 0x40, MSG, 1),
            Err(MsiError::TooManyVectors {
                asked_log2: 1,
                capable_log2: 0
            })
        );
        let wide = MsiMessage {
            address: 0xfee0_0000,
            data: 0x1_0041,
        };
        assert_eq!(
            program_msi(&cfg, 0x40, wide, 0),
            Err(MsiError::DataTooWide { data: 0x1_0041 })
        );
        let odd = MsiMessage {
            address: 0xfee0_0002,
            data: 0x41,
        };
        assert!(matches!(
            program_msi(&cfg, 0x40, odd, 0),
            Err(MsiError::MisalignedAddress { .. })
        ));
        assert_eq!(m.take_writes(), [], "refusals write nothing");

        let msg = MsiMessage {
            address: 0xfee0_0000,
            data: 0x41,
        };
        program_msi(&cfg, 0x40, msg, 0).unwrap();
        assert_eq!(
            m.take_writes(),
            [
                cfgw(0x42, 2, 0x0000),
                cfgw(0x44, 4, 0xfee0_0000),
                cfgw(0x48, 2, 0x0041), // data right after the 32-bit address
                cfgw(0x42, 2, 0x0000),
                cfgw(0x04, 4, 0x0407),
                cfgw(0x42, 2, 0x0001),
            ]
        );
    }

    #[test]
    fn msi_data_must_leave_the_vector_bits_to_the_function() {
        let (_pci, m, cfg) = machine(function(&standard_msix()));
        let msg = MsiMessage {
            address: 0xfee0_0000,
            data: 0x42,
        };
        assert_eq!(
            program_msi(&cfg, MSI, msg, 2),
            Err(MsiError::DataNotAligned {
                data: 0x42,
                vectors: 4
            })
        );
        assert_eq!(m.take_writes(), []);
        // Not an MSI capability where one is claimed.
        assert_eq!(
            program_msi(&cfg, MSIX, MSG, 0),
            Err(MsiError::NotCapability {
                at: MSIX,
                want: 0x05,
                found: 0x11
            })
        );
    }

    #[test]
    fn enabling_msi_turns_msix_off_first() {
        // MSI-X left enabled (control 0x8003).
        let (_pci, m, cfg) = machine(function(&standard_msix()).raw(0x72, &[0x03, 0x80]));
        program_msi(&cfg, MSI, MSG, 0).unwrap();
        let w = m.take_writes();
        assert_eq!(w[0], cfgw(0x72, 2, 0x0003));
        assert_eq!(w.last(), Some(&cfgw(0x52, 2, 0x0185)));
    }

    #[test]
    fn msix_enable_programs_entries_between_mask_and_unmask() {
        // MSI left enabled by firmware: it goes off before MSI-X comes on.
        let (_pci, m, cfg) = machine(function(&standard_msix()).raw(0x52, &[0x85, 0x01]));
        let layout = msix_layout(&cfg, MSIX, None).unwrap();
        assert_eq!(layout.entries, 4);
        let table = FakeMmio::msix_table(4, m.log());
        let table = MsixTable::new(&table, layout.entries).unwrap();
        let m3 = MsiMessage {
            address: 0x1_0000_0040,
            data: 0x31,
        };
        let mut en = enable_msix(&cfg, MSIX).unwrap();
        en.program(&table, 0, MSG).unwrap();
        en.program(&table, 3, m3).unwrap();
        en.finish().unwrap();
        assert_eq!(
            m.take_writes(),
            [
                cfgw(0x52, 2, 0x0184),           // MSI off
                cfgw(0x72, 2, 0xc003),           // MSI-X on, function masked
                cfgw(0x04, 4, 0x0407),           // bus master, INTx off
                mmw("table", 0x0c, 1),           // entry 0 masked
                mmw("table", 0x00, 0xfee0_1000), // address low
                mmw("table", 0x04, 0),           // address high
                mmw("table", 0x08, 0x4034),      // data
                mmw("table", 0x0c, 0),           // unmasked
                mmw("table", 0x3c, 1),
                mmw("table", 0x30, 0x40),
                mmw("table", 0x34, 1),
                mmw("table", 0x38, 0x31),
                mmw("table", 0x3c, 0),
                cfgw(0x72, 2, 0x8003), // function unmasked
            ]
        );
        assert_eq!(
            table.entry(3),
            Ok(MsixEntry {
                message: m3,
                masked: false
            })
        );
        assert!(table.entry(1).unwrap().masked);
        disable_msix(&cfg, MSIX).unwrap();
        assert_eq!(m.take_writes(), [cfgw(0x72, 2, 0x0003)]);
    }

    #[test]
    fn an_unfinished_enable_turns_msix_off_again() {
        let (_pci, m, cfg) = machine(function(&standard_msix()));
        let en = enable_msix(&cfg, MSIX).unwrap();
        assert_eq!(m.peek32(bdf(), 0x70) >> 16, 0xc003);
        drop(en);
        assert_eq!(m.peek32(bdf(), 0x70) >> 16, 0x0003);
    }

    #[test]
    fn table_entries_out_of_range_and_reserved_bits() {
        let log = WriteLog::default();
        let mem = FakeMmio::msix_table(4, log.clone());
        // A steering tag in Vector Control bits 31:16 is preserved.
        mem.poke32(0x1c, 0x1234_0001);
        let table = MsixTable::new(&mem, 4).unwrap();
        table.program(1, MSG).unwrap();
        assert_eq!(mem.peek32(0x1c), 0x1234_0000);
        log.lock().clear();
        assert_eq!(
            table.program(4, MSG),
            Err(MsiError::NoSuchEntry {
                entry: 4,
                entries: 4
            })
        );
        assert_eq!(
            table.entry(u16::MAX),
            Err(MsiError::NoSuchEntry {
                entry: u16::MAX,
                entries: 4
            })
        );
        assert!(matches!(
            table.program(
                0,
                MsiMessage {
                    address: 0xfee0_0001,
                    data: 0
                }
            ),
            Err(MsiError::MisalignedAddress { .. })
        ));
        assert!(log.lock().is_empty());
        assert!(matches!(
            MsixTable::new(&mem, 5),
            Err(MsiError::WindowTooSmall { needed: 80, .. })
        ));
        assert!(matches!(
            MsixTable::new(&mem, 0),
            Err(MsiError::Reserved { .. })
        ));
    }

    #[test]
    fn pending_bits_come_from_the_pba() {
        let log = WriteLog::default();
        let mem = FakeMmio::msix_table(40, log.clone());
        let pba = FakeMmio::new("pba", 8, log.clone());
        pba.poke32(4, 1 << 1);
        let bare = MsixTable::new(&mem, 40).unwrap();
        assert_eq!(bare.pending(33), Err(MsiError::NoPba));
        let table = MsixTable::new(&mem, 40).unwrap().with_pba(&pba).unwrap();
        assert_eq!(table.pending(33), Ok(true));
        assert_eq!(table.pending(32), Ok(false));
        assert_eq!(table.pending(1), Ok(false));
        assert!(matches!(
            table.pending(40),
            Err(MsiError::NoSuchEntry { .. })
        ));
        let small = FakeMmio::new("pba", 4, log);
        assert!(matches!(
            MsixTable::new(&mem, 40).unwrap().with_pba(&small),
            Err(MsiError::WindowTooSmall { what: "PBA", .. })
        ));
    }

    #[test]
    fn layout_from_the_capability_and_the_bars() {
        let (pci, _m) = sample_machine().into_pci(true, &[]).unwrap();
        let blk = Bdf::new(0, 0, 2, 0).unwrap();
        let cfg = pci.function(blk).unwrap();
        let bars = pci.bars(blk).unwrap();
        assert_eq!(
            msix_layout(&cfg, 0x98, Some(&bars)),
            Ok(MsixLayout {
                entries: 2,
                table: MsixRegion {
                    bir: 1,
                    offset: 0,
                    len: 32
                },
                pba: MsixRegion {
                    bir: 1,
                    offset: 0x800,
                    len: 8
                },
            })
        );
        let nvme = Bdf::new(0, 1, 0, 0).unwrap();
        let l = msix_layout(
            &pci.function(nvme).unwrap(),
            0x60,
            Some(&pci.bars(nvme).unwrap()),
        )
        .unwrap();
        assert_eq!((l.entries, l.table.len, l.pba.offset), (64, 1024, 0x3000));
    }

    fn layout_of(msix: &[u8], with_bars: bool) -> Result<MsixLayout, MsiError> {
        let (pci, _m, cfg) = machine(function(msix));
        let bars = pci.bars(bdf()).unwrap();
        msix_layout(&cfg, MSIX, with_bars.then_some(&bars))
    }

    #[test]
    fn layouts_that_do_not_fit_are_refused() {
        // 2048 entries (32 KiB) in a 16 KiB BAR: fine by the capability, not by the BAR.
        let huge = msix_cap(2048, (0, 0), (0, 0x8000));
        let l = layout_of(&huge, false).unwrap();
        assert_eq!((l.entries, l.table.len, l.pba.len), (2048, 0x8000, 256));
        assert_eq!(
            layout_of(&huge, true),
            Err(MsiError::OutsideBar {
                what: "table",
                bir: 0,
                offset: 0,
                len: 0x8000,
                bar_size: 0x4000
            })
        );
        let small = FakeMmio::new("table", 0x1000, WriteLog::default());
        assert!(matches!(
            MsixTable::new(&small, l.entries),
            Err(MsiError::WindowTooSmall { needed: 0x8000, .. })
        ));
        // An offset past the BAR (and past 4 GiB arithmetic) does not overflow.
        let past = msix_cap(4, (0, 0xffff_fff8), (0, 0x3000));
        assert!(matches!(
            layout_of(&past, true),
            Err(MsiError::OutsideBar {
                offset: 0xffff_fff8,
                ..
            })
        ));
        let pba_past = msix_cap(4, (0, 0x2000), (0, 0x4000));
        assert!(matches!(
            layout_of(&pba_past, true),
            Err(MsiError::OutsideBar { what: "PBA", .. })
        ));
        assert_eq!(
            layout_of(&msix_cap(4, (7, 0), (0, 0x3000)), false),
            Err(MsiError::Reserved {
                what: "MSI-X BAR indicator",
                value: 7
            })
        );
        assert_eq!(
            layout_of(&msix_cap(4, (3, 0), (0, 0x3000)), true),
            Err(MsiError::NoSuchBar { bir: 3 })
        );
        assert_eq!(
            layout_of(&msix_cap(4, (2, 0), (0, 0x3000)), true),
            Err(MsiError::NotMemoryBar { bir: 2 })
        );
        assert_eq!(
            layout_of(&msix_cap(4, (0, 0x100), (0, 0x120)), false),
            Err(MsiError::Overlap)
        );
    }

    /// A function that vanished: every read is all-ones.
    struct Gone;
    impl PciConfig for Gone {
        fn read32(&self, _: u16) -> u32 {
            u32::MAX
        }
        fn write32(&self, _: u16, _: u32) {}
    }

    #[test]
    fn all_ones_and_bad_offsets_are_errors() {
        let gone = NotCap(MSI, 0x05);
        assert_eq!(program_msi(&Gone, MSI, MSG, 0), Err(gone.err()));
        assert_eq!(disable_msi(&Gone, MSI), Err(gone.err()));
        let gone = NotCap(MSIX, 0x11);
        assert_eq!(msix_layout(&Gone, MSIX, None), Err(gone.err()));
        assert!(matches!(enable_msix(&Gone, MSIX), Err(e) if e == gone.err()));
        assert_eq!(disable_msix(&Gone, MSIX), Err(gone.err()));
        assert_eq!(enable_intx(&Gone), Err(MsiError::AllOnes { at: 0x04 }));
        assert_eq!(disable_intx(&Gone), Err(MsiError::AllOnes { at: 0x04 }));
        assert_eq!(find_cap(&Gone, id::MSIX), None);
        for at in [0x3c, 0x52, 0xfc, 0xfffc] {
            assert_eq!(
                msix_layout(&Gone, at, None),
                Err(MsiError::BadCapOffset { at })
            );
        }
        // A table that reads all-ones: entries decode, programming fails, nothing panics.
        let mem = FakeMmio::msix_table(2, WriteLog::default());
        mem.gone.store(true, core::sync::atomic::Ordering::Relaxed);
        let table = MsixTable::new(&mem, 2).unwrap().with_pba(&mem).unwrap();
        let e = table.entry(1).unwrap();
        assert_eq!((e.message.address, e.masked), (u64::MAX, true));
        assert!(matches!(
            table.program(1, MSG),
            Err(MsiError::ReadBack { .. })
        ));
        assert_eq!(table.pending(1), Ok(true));
    }

    /// The error for a capability that reads all-ones.
    struct NotCap(u16, u8);
    impl NotCap {
        fn err(&self) -> MsiError {
            MsiError::NotCapability {
                at: self.0,
                want: self.1,
                found: 0xff,
            }
        }
    }

    #[test]
    fn errors_read_well() {
        use alloc::format;
        assert_eq!(
            format!(
                "{}",
                MsiError::OutsideBar {
                    what: "table",
                    bir: 1,
                    offset: 0x2000,
                    len: 0x8000,
                    bar_size: 0x4000
                }
            ),
            "MSI-X table at BAR1+0x2000 (0x8000 bytes) outside the BAR (0x4000 bytes)"
        );
        assert_eq!(
            format!(
                "{}",
                MsiError::TooManyVectors {
                    asked_log2: 3,
                    capable_log2: 1
                }
            ),
            "8 MSI vectors asked, function takes at most 2"
        );
    }
}
