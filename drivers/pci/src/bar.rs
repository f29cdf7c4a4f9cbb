//! Base address registers: decoding and sizing (PCI Local Bus 3.0 §6.2.5.1).
use crate::header::{command, reg, HeaderType};
use alloc::vec::Vec;
use capmon_hal::PciConfig;
use core::fmt;

/// BAR bit 0: 1 for I/O space, 0 for memory space.
const BAR_IO: u32 = 1;
/// I/O BAR address bits.
const IO_ADDR_MASK: u32 = !0x3;
/// Memory BAR address bits (bits 3:0 are type and prefetchable).
const MEM_ADDR_MASK: u32 = !0xf;
/// Memory BAR bit 3: prefetchable.
const MEM_PREFETCH: u32 = 1 << 3;
/// Expansion ROM BAR: bit 0 enables decoding, address in bits 31:11.
const ROM_ENABLE: u32 = 1;
const ROM_ADDR_MASK: u32 = !0x7ff;

/// What address space a BAR decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BarKind {
    Io,
    Mem32,
    /// Memory type 01b: a PCI 2.x BAR that must be placed below 1 MiB.
    Mem1M,
    /// Memory type 10b: takes two BAR slots.
    Mem64,
}

impl BarKind {
    pub fn name(self) -> &'static str {
        match self {
            BarKind::Io => "io",
            BarKind::Mem32 => "mem32",
            BarKind::Mem1M => "mem1m",
            BarKind::Mem64 => "mem64",
        }
    }

    pub fn is_memory(self) -> bool {
        self != BarKind::Io
    }
}

/// One implemented BAR: where the function decodes and how much.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bar {
    /// Slot number 0..5 (the lower slot of a 64-bit pair).
    pub index: u8,
    pub kind: BarKind,
    pub prefetchable: bool,
    /// Physical (memory) or port (I/O) address as programmed; 0 if firmware left it unassigned.
    pub addr: u64,
    pub size: u64,
}

/// The expansion ROM BAR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rom {
    pub addr: u64,
    pub size: u64,
    pub enabled: bool,
}

/// Why a BAR could not be decoded. The slot is skipped, the others still decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BarError {
    /// The BAR read all-ones before sizing: the function vanished or is broken.
    AllOnes,
    /// Memory type 11b is reserved.
    ReservedType,
    /// A 64-bit BAR in the last slot has no upper half.
    Mem64InLastSlot,
    /// The bits that stuck after writing ones are not a contiguous run from the top.
    NonContiguousMask { mask: u64 },
    /// The BAR holds an address but no address bit is writable.
    NotWritable { value: u32 },
    /// The programmed address is not a multiple of the size.
    Misaligned { addr: u64, size: u64 },
    /// After sizing, the BAR did not take back its original value.
    RestoreFailed { expected: u32, got: u32 },
}

impl fmt::Display for BarError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BarError::AllOnes => f.write_str("reads all-ones"),
            BarError::ReservedType => f.write_str("reserved memory type 11b"),
            BarError::Mem64InLastSlot => f.write_str("64-bit BAR in the last slot"),
            BarError::NonContiguousMask { mask } => {
                write!(f, "non-contiguous size mask {:#x}", mask)
            }
            BarError::NotWritable { value } => {
                write!(f, "value {:#x} but no writable address bit", value)
            }
            BarError::Misaligned { addr, size } => {
                write!(f, "address {:#x} not aligned to size {:#x}", addr, size)
            }
            BarError::RestoreFailed { expected, got } => {
                write!(
                    f,
                    "did not restore: wrote {:#x}, reads {:#x}",
                    expected, got
                )
            }
        }
    }
}

/// One BAR slot that could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BarProblem {
    pub index: u8,
    pub error: BarError,
}

/// Every BAR of one function.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bars {
    pub bars: Vec<Bar>,
    pub rom: Option<Rom>,
    pub problems: Vec<BarProblem>,
}

/// The address memory BAR `index` holds, read without sizing it (sizing pauses the function's
/// decoding, which a driver or a monitor command must not do to a live function). The error
/// says why there is none.
pub fn memory_bar_base(cfg: &dyn PciConfig, index: u8) -> Result<u64, &'static str> {
    if index > 5 {
        return Err("no such BAR");
    }
    let reg = reg::BAR0 + 4 * index as u16;
    let low = cfg.read32(reg);
    if low & 1 != 0 {
        return Err("I/O BAR, memory BAR needed");
    }
    let base = match (low >> 1) & 3 {
        0 | 1 => (low & !0xf) as u64,
        2 if index < 5 => (cfg.read32(reg + 4) as u64) << 32 | (low & !0xf) as u64,
        2 => return Err("64-bit BAR in the last slot"),
        _ => return Err("reserved BAR type"),
    };
    if base == 0 {
        return Err("not assigned an address");
    }
    Ok(base)
}

/// Decodes and sizes every BAR (and the expansion ROM) of a function.
///
/// Sizing writes all-ones and reads back which bits stuck, so the function's decoding is turned
/// off meanwhile (command I/O and memory bits cleared) and restored afterwards; host bridges keep
/// decoding, as on Linux, because turning them off can cut the CPU off from memory.
pub fn read_bars(cfg: &dyn PciConfig, header_type: HeaderType, host_bridge: bool) -> Bars {
    let cmd = cfg.read16(reg::COMMAND);
    let decode = command::IO | command::MEMORY;
    let pause = !host_bridge && cmd & decode != 0 && cmd != 0xffff;
    if pause {
        cfg.write16(reg::COMMAND, cmd & !decode);
    }
    let mut out = Bars::default();
    let count = header_type.bar_count();
    let mut i = 0u8;
    while i < count {
        match size_bar(cfg, i, count) {
            (Ok(Some(bar)), used) => {
                out.bars.push(bar);
                i += used;
            }
            (Ok(None), used) => i += used,
            (Err(error), used) => {
                out.problems.push(BarProblem { index: i, error });
                i += used;
            }
        }
    }
    if let Some(off) = header_type.rom_offset() {
        match size_rom(cfg, off) {
            Ok(rom) => out.rom = rom,
            Err(error) => out.problems.push(BarProblem {
                index: ROM_INDEX,
                error,
            }),
        }
    }
    if pause {
        cfg.write16(reg::COMMAND, cmd);
    }
    out
}

/// The index QEMU's `query-pci` gives the expansion ROM (PCI_ROM_SLOT), used in `BarProblem`.
pub const ROM_INDEX: u8 = 6;

/// Writes all-ones to a BAR dword, returns what stuck, and puts the original back.
fn probe(cfg: &dyn PciConfig, off: u16, orig: u32, ones: u32) -> Result<u32, BarError> {
    cfg.write32(off, ones);
    let stuck = cfg.read32(off);
    cfg.write32(off, orig);
    let back = cfg.read32(off);
    if back != orig {
        return Err(BarError::RestoreFailed {
            expected: orig,
            got: back,
        });
    }
    Ok(stuck)
}

/// Sizes slot `i`; returns the BAR (None if unimplemented) and how many slots it used.
fn size_bar(cfg: &dyn PciConfig, i: u8, count: u8) -> (Result<Option<Bar>, BarError>, u8) {
    let off = reg::BAR0 + 4 * i as u16;
    let orig = cfg.read32(off);
    if orig == u32::MAX {
        return (Err(BarError::AllOnes), 1);
    }
    if orig & BAR_IO != 0 {
        return (size_io(cfg, i, off, orig), 1);
    }
    let prefetchable = orig & MEM_PREFETCH != 0;
    let kind = match (orig >> 1) & 3 {
        0 => BarKind::Mem32,
        1 => BarKind::Mem1M,
        2 => BarKind::Mem64,
        _ => return (Err(BarError::ReservedType), 1),
    };
    if kind != BarKind::Mem64 {
        let r = probe(cfg, off, orig, u32::MAX).and_then(|stuck| {
            let mask = (stuck & MEM_ADDR_MASK) as u64;
            decode(
                i,
                kind,
                prefetchable,
                (orig & MEM_ADDR_MASK) as u64,
                mask,
                0xffff_ffff,
                orig,
            )
        });
        return (r, 1);
    }
    if i + 1 >= count {
        return (Err(BarError::Mem64InLastSlot), 1);
    }
    let hi_off = off + 4;
    let orig_hi = cfg.read32(hi_off);
    let r = probe(cfg, off, orig, u32::MAX).and_then(|lo| {
        let hi = probe(cfg, hi_off, orig_hi, u32::MAX)?;
        let mask = (hi as u64) << 32 | (lo & MEM_ADDR_MASK) as u64;
        let addr = (orig_hi as u64) << 32 | (orig & MEM_ADDR_MASK) as u64;
        // A 64-bit BAR whose upper half is hardwired to zero only decodes below 4 GiB; the
        // run of writable bits then ends at bit 31.
        let all = if hi == 0 { 0xffff_ffff } else { u64::MAX };
        decode(i, kind, prefetchable, addr, mask, all, orig)
    });
    (r, 2)
}

fn size_io(cfg: &dyn PciConfig, i: u8, off: u16, orig: u32) -> Result<Option<Bar>, BarError> {
    let stuck = probe(cfg, off, orig, u32::MAX)?;
    let mut mask = stuck & IO_ADDR_MASK;
    // Devices that decode only 16 I/O address bits may hardwire the upper half to zero
    // (PCI Local Bus 3.0 §6.2.5.1).
    if mask != 0 && mask & 0xffff_0000 == 0 {
        mask |= 0xffff_0000;
    }
    decode(
        i,
        BarKind::Io,
        false,
        (orig & IO_ADDR_MASK) as u64,
        mask as u64,
        0xffff_ffff,
        orig,
    )
}

/// Turns the stuck bits into a size and checks the pattern.
fn decode(
    i: u8,
    kind: BarKind,
    prefetchable: bool,
    addr: u64,
    mask: u64,
    all: u64,
    orig: u32,
) -> Result<Option<Bar>, BarError> {
    if mask == 0 {
        return if addr == 0 {
            Ok(None)
        } else {
            Err(BarError::NotWritable { value: orig })
        };
    }
    // The lowest writable address bit is the size; every bit above it must be writable too.
    let size = mask & mask.wrapping_neg();
    if mask | (size - 1) != all {
        return Err(BarError::NonContiguousMask { mask });
    }
    if addr & (size - 1) != 0 {
        return Err(BarError::Misaligned { addr, size });
    }
    Ok(Some(Bar {
        index: i,
        kind,
        prefetchable,
        addr,
        size,
    }))
}

fn size_rom(cfg: &dyn PciConfig, off: u16) -> Result<Option<Rom>, BarError> {
    let orig = cfg.read32(off);
    if orig == u32::MAX {
        return Err(BarError::AllOnes);
    }
    // Sizing with the enable bit clear, so the ROM never decodes at address 0xfffff800.
    let stuck = probe(cfg, off, orig, ROM_ADDR_MASK)?;
    let mask = (stuck & ROM_ADDR_MASK) as u64;
    let addr = (orig & ROM_ADDR_MASK) as u64;
    let enabled = orig & ROM_ENABLE != 0;
    match decode(
        ROM_INDEX,
        BarKind::Mem32,
        false,
        addr,
        mask,
        0xffff_ffff,
        orig,
    )? {
        None => Ok(None),
        Some(b) => Ok(Some(Rom {
            addr: b.addr,
            size: b.size,
            enabled,
        })),
    }
}
