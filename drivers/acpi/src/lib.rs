//! ACPI for capmon: find the tables from the RSDP, validate them, decode the static ones
//! (MADT, MCFG, FADT, HPET) into plain structs, and enter S5 or reset through the FADT.
//!
//! Every table is copied out of physical memory once, at `Acpi::new`, after its pointer, length
//! and signature were checked; decoders then work on those bytes with bounds-checked reads.
//! A table that cannot be read is listed in `Acpi::skipped` and otherwise ignored. The `acpi`
//! crate is used only for its AML interpreter (`\_S5`, `\_PTS`, `_PRT`, `acpi eval`), fed with
//! checksummed tables.
#![no_std]
extern crate alloc;

mod aml;
mod bytes;
mod eval;
pub mod fadt;
pub mod gas;
pub mod hpet;
pub mod madt;
pub mod mcfg;
mod power;
pub mod prt;
pub mod resource;
mod rsdp;
mod tables;
#[cfg(test)]
mod testutil;

pub use aml::AcpiHw;
pub use bytes::oem_str;
pub use eval::{AmlPath, AmlValue};
pub use fadt::{Fadt, FadtFlags, IapcBootArch, PmProfile};
pub use gas::{AddressSpace, Gas};
pub use hpet::Hpet;
pub use madt::{
    InterruptOverride, IoApic, LocalApic, LocalApicNmi, Madt, NmiSource, Polarity, Trigger,
};
pub use mcfg::McfgRegion;
pub use prt::{eisa_id, PciRoute, PciRouting, Pin, Unrouted};
pub use resource::{decode_resources, Interrupt, InterruptKind, Resource};
pub use rsdp::Rsdp;
pub use tables::{Skipped, Table};

use alloc::string::String;
use alloc::vec::Vec;
use capmon_hal::PhysMap;

/// A four-character table signature (`APIC`, `FACP`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signature(pub [u8; 4]);

impl Signature {
    pub const RSDT: Signature = Signature(*b"RSDT");
    pub const XSDT: Signature = Signature(*b"XSDT");
    /// The FADT's signature is "FACP" (ACPI 6.5 §5.2.9).
    pub const FADT: Signature = Signature(*b"FACP");
    /// The MADT's signature is "APIC" (ACPI 6.5 §5.2.12).
    pub const MADT: Signature = Signature(*b"APIC");
    pub const MCFG: Signature = Signature(*b"MCFG");
    pub const HPET: Signature = Signature(*b"HPET");
    pub const DSDT: Signature = Signature(*b"DSDT");
    pub const SSDT: Signature = Signature(*b"SSDT");
    pub const FACS: Signature = Signature(*b"FACS");

    /// A signature from user input: exactly four ASCII characters.
    pub fn parse(s: &str) -> Option<Signature> {
        let b: [u8; 4] = s.as_bytes().try_into().ok()?;
        b.is_ascii().then_some(Signature(b))
    }
}

impl core::fmt::Display for Signature {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for c in self.0 {
            let c = if c.is_ascii_graphic() { c as char } else { '?' };
            core::fmt::Write::write_char(f, c)?;
        }
        Ok(())
    }
}

/// Why an ACPI operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcpiError {
    /// A table pointer was zero.
    NullAddress,
    /// `len` bytes at `phys` could not be mapped (outside RAM, or the address overflows).
    Unmappable { phys: u64, len: u64 },
    /// No "RSD PTR " at the given address.
    RsdpSignature,
    /// The RSDP's first 20 bytes do not sum to zero.
    RsdpChecksum,
    /// The ACPI 2.0+ RSDP's length field is out of range.
    RsdpLength(u32),
    /// A table's length field is shorter than its header (or than the fields its revision has).
    TooShort { sig: Signature, len: u64 },
    /// A table's length field is implausibly large.
    TooLong { sig: Signature, len: u64 },
    /// The table at a pointer does not carry the signature its referrer promised.
    BadSignature {
        expected: Signature,
        found: Signature,
    },
    /// The table's bytes do not sum to zero.
    BadChecksum(Signature),
    /// A field lies past the end of the table.
    Truncated { sig: Signature, offset: usize },
    /// A structure inside a table is malformed (zero-length MADT entry, bad MCFG size, ...).
    BadEntry {
        sig: Signature,
        offset: usize,
        what: &'static str,
    },
    /// Neither the XSDT nor the RSDT could be used.
    NoRootTable,
    /// No valid table with this signature.
    Missing(Signature),
    /// A generic address uses a space or width this code cannot access.
    BadGas(&'static str),
    /// The AML interpreter failed.
    Aml(String),
    /// `\_S5` is absent or not a package of small integers.
    BadS5(&'static str),
    /// The FADT names no PM1a control block.
    NoPm1aControl,
    /// The FADT does not declare a usable reset register.
    ResetNotSupported,
    /// The machine was told to power off or reset and is still running.
    StillRunning,
    /// A textual AML name is malformed.
    BadPath(&'static str),
    /// No object at this AML path.
    NoSuchObject(String),
    /// An AML object exists but its value is unusable (wrong type, out of range).
    BadObject { path: String, what: &'static str },
    /// A resource template buffer is malformed at `offset`.
    BadResource { offset: usize, what: &'static str },
    /// An interrupt link device's `_STA` says it is disabled.
    LinkDisabled(String),
    /// The AML at `path` needs something the `acpi` crate's interpreter gets wrong.
    InterpreterLimit { path: String, what: &'static str },
}

impl core::fmt::Display for AcpiError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        use AcpiError::*;
        match self {
            NullAddress => write!(f, "null table pointer"),
            Unmappable { phys, len } => write!(f, "cannot map {} bytes at {:#x}", len, phys),
            RsdpSignature => write!(f, "no RSDP signature at the given address"),
            RsdpChecksum => write!(f, "RSDP checksum bad"),
            RsdpLength(l) => write!(f, "RSDP length {} out of range", l),
            TooShort { sig, len } => write!(f, "{} length {} is too short", sig, len),
            TooLong { sig, len } => write!(f, "{} length {} is too long", sig, len),
            BadSignature { expected, found } => {
                write!(f, "expected {} table, found '{}'", expected, found)
            }
            BadChecksum(sig) => write!(f, "{} checksum bad", sig),
            Truncated { sig, offset } => write!(f, "{} ends before offset {}", sig, offset),
            BadEntry { sig, offset, what } => write!(f, "{} at offset {}: {}", sig, offset, what),
            NoRootTable => write!(f, "neither XSDT nor RSDT is usable"),
            Missing(sig) => write!(f, "no valid {} table", sig),
            BadGas(why) => write!(f, "unusable generic address: {}", why),
            Aml(e) => write!(f, "AML: {}", e),
            BadS5(why) => write!(f, "\\_S5: {}", why),
            NoPm1aControl => write!(f, "FADT has no PM1a control block"),
            ResetNotSupported => write!(f, "FADT declares no reset register"),
            StillRunning => write!(f, "the machine is still running"),
            BadPath(why) => write!(f, "bad AML path: {}", why),
            NoSuchObject(path) => write!(f, "no AML object {}", path),
            BadObject { path, what } => write!(f, "{}: {}", path, what),
            BadResource { offset, what } => {
                write!(f, "resource template at offset {}: {}", offset, what)
            }
            LinkDisabled(link) => write!(f, "interrupt link {} is disabled", link),
            InterpreterLimit { path, what } => write!(f, "{}: {}", path, what),
        }
    }
}

/// The machine's ACPI tables, copied and validated.
#[derive(Debug, Clone)]
pub struct Acpi {
    rsdp: Rsdp,
    tables: Vec<Table>,
    skipped: Vec<Skipped>,
}

impl Acpi {
    /// Reads the RSDP at `rsdp_phys` (from Multiboot2 or Limine), the XSDT (or the RSDT when
    /// there is no usable XSDT), every table they list, and the DSDT and FACS the FADT points
    /// at. Fails only when the RSDP or both root tables are unusable.
    pub fn new(mem: &dyn PhysMap, rsdp_phys: u64) -> Result<Acpi, AcpiError> {
        let rsdp = rsdp::read(mem, rsdp_phys)?;
        let (tables, skipped) = tables::discover(mem, &rsdp)?;
        Ok(Acpi {
            rsdp,
            tables,
            skipped,
        })
    }

    pub fn rsdp(&self) -> &Rsdp {
        &self.rsdp
    }

    /// Every table read, in discovery order: the root table, its entries, then the DSDT and FACS.
    pub fn tables(&self) -> &[Table] {
        &self.tables
    }

    /// Tables that could not be read, with the reason.
    pub fn skipped(&self) -> &[Skipped] {
        &self.skipped
    }

    /// The `n`th table (from 0) with this signature, whatever its checksum.
    pub fn table(&self, sig: Signature, n: usize) -> Option<&Table> {
        self.tables.iter().filter(|t| t.signature == sig).nth(n)
    }

    /// The first table with this signature whose checksum is good, or why there is none.
    fn valid_table(&self, sig: Signature) -> Result<&Table, AcpiError> {
        let mut all = self.tables.iter().filter(|t| t.signature == sig);
        let first = all.clone().next().ok_or(AcpiError::Missing(sig))?;
        all.find(|t| t.checksum_ok != Some(false))
            .ok_or(AcpiError::BadChecksum(first.signature))
    }

    pub fn madt(&self) -> Result<Madt, AcpiError> {
        madt::parse(&self.valid_table(Signature::MADT)?.bytes)
    }

    /// The PCIe ECAM windows (PCI Firmware 3.2 §4.1.2).
    pub fn mcfg_regions(&self) -> Result<Vec<McfgRegion>, AcpiError> {
        mcfg::parse(&self.valid_table(Signature::MCFG)?.bytes)
    }

    pub fn fadt(&self) -> Result<Fadt, AcpiError> {
        fadt::parse(&self.valid_table(Signature::FADT)?.bytes)
    }

    pub fn hpet(&self) -> Result<Hpet, AcpiError> {
        hpet::parse(&self.valid_table(Signature::HPET)?.bytes)
    }

    /// The DSDT and every SSDT with a good checksum, DSDT first.
    fn aml_tables(&self) -> Result<Vec<&Table>, AcpiError> {
        let mut v = Vec::new();
        v.push(self.valid_table(Signature::DSDT)?);
        v.extend(
            self.tables
                .iter()
                .filter(|t| t.signature == Signature::SSDT && t.checksum_ok == Some(true)),
        );
        Ok(v)
    }
}

#[cfg(test)]
mod tests;
