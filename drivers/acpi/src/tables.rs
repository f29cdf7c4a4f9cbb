//! Reading tables out of physical memory and walking the XSDT/RSDT (ACPI 6.5 §5.2.6-§5.2.8).
use crate::bytes::{array_at, checksum_ok, u32_at, u64_at};
use crate::rsdp::Rsdp;
use crate::{fadt, AcpiError, Signature};
use alloc::vec::Vec;
use capmon_hal::PhysMap;

/// The system description table header (ACPI 6.5 §5.2.6, Table 5.4).
pub(crate) const HEADER_LEN: usize = 36;
/// No firmware table comes near this; a larger length field is corrupt.
const MAX_TABLE_LEN: u64 = 16 << 20;
/// Every table (and the FACS) starts with a 4-byte signature and a 4-byte length.
const SIG_AND_LEN: usize = 8;
/// FACS (ACPI 6.5 §5.2.10): no checksum, length at offset 4, at least 64 bytes.
const FACS_MIN_LEN: u64 = 64;
const FACS_MAX_LEN: u64 = 4096;

/// One table copied out of memory.
#[derive(Debug, Clone)]
pub struct Table {
    pub signature: Signature,
    pub phys: u64,
    /// The whole table, header included (`length` bytes).
    pub bytes: Vec<u8>,
    /// Whether the bytes sum to zero; `None` for the FACS, which has no checksum.
    pub checksum_ok: Option<bool>,
}

impl Table {
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The header revision (for the FACS: its version field).
    pub fn revision(&self) -> u8 {
        let off = if self.signature == Signature::FACS {
            32
        } else {
            8
        };
        self.bytes.get(off).copied().unwrap_or(0)
    }

    /// The OEM ID (6 bytes; empty for the FACS).
    pub fn oem_id(&self) -> &[u8] {
        self.header_field(10, 6)
    }

    /// The OEM table ID (8 bytes; empty for the FACS).
    pub fn oem_table_id(&self) -> &[u8] {
        self.header_field(16, 8)
    }

    fn header_field(&self, off: usize, len: usize) -> &[u8] {
        if self.signature == Signature::FACS {
            return &[];
        }
        self.bytes.get(off..off + len).unwrap_or(&[])
    }
}

/// A table pointer that led nowhere usable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub phys: u64,
    /// Who pointed at it: "XSDT[3]", "FADT.DSDT", "RSDP.XSDT".
    pub referrer: alloc::string::String,
    pub error: AcpiError,
}

/// Copies `len` bytes of physical memory.
pub(crate) fn copy_phys(mem: &dyn PhysMap, phys: u64, len: usize) -> Result<Vec<u8>, AcpiError> {
    let unmappable = AcpiError::Unmappable {
        phys,
        len: len as u64,
    };
    if phys.checked_add(len as u64).is_none() {
        return Err(unmappable);
    }
    let ptr = mem.map(phys, len, false).ok_or(unmappable)?;
    let mut v = alloc::vec![0u8; len];
    // SAFETY: PhysMap::map returned a mapping of `len` bytes at `ptr`; firmware tables are
    // ordinary RAM that nothing writes while we copy, and `v` is a distinct allocation.
    unsafe { core::ptr::copy_nonoverlapping(ptr as *const u8, v.as_mut_ptr(), len) };
    Ok(v)
}

/// Reads a table with a standard header at `phys`, checking its pointer, length and (if given)
/// signature. The checksum is recorded, not enforced: a bad table is still listed and dumpable.
pub(crate) fn read_sdt(
    mem: &dyn PhysMap,
    phys: u64,
    expect: Option<Signature>,
) -> Result<Table, AcpiError> {
    let (signature, bytes) = read_checked(mem, phys, expect, HEADER_LEN as u64..=MAX_TABLE_LEN)?;
    let checksum_ok = Some(checksum_ok(&bytes));
    Ok(Table {
        signature,
        phys,
        bytes,
        checksum_ok,
    })
}

/// Reads the FACS, which has its own header and no checksum (ACPI 6.5 §5.2.10, Table 5.14).
pub(crate) fn read_facs(mem: &dyn PhysMap, phys: u64) -> Result<Table, AcpiError> {
    let (signature, bytes) = read_checked(
        mem,
        phys,
        Some(Signature::FACS),
        FACS_MIN_LEN..=FACS_MAX_LEN,
    )?;
    Ok(Table {
        signature,
        phys,
        bytes,
        checksum_ok: None,
    })
}

/// Copies the table at `phys` after checking the signature and length fields that start every
/// table (and the FACS): the signature against `expect`, the length against `lens`.
fn read_checked(
    mem: &dyn PhysMap,
    phys: u64,
    expect: Option<Signature>,
    lens: core::ops::RangeInclusive<u64>,
) -> Result<(Signature, Vec<u8>), AcpiError> {
    if phys == 0 {
        return Err(AcpiError::NullAddress);
    }
    let head = copy_phys(mem, phys, SIG_AND_LEN)?;
    let sig = Signature(array_at(&head, 0).unwrap_or([0; 4]));
    match expect {
        Some(expected) if expected != sig => {
            return Err(AcpiError::BadSignature {
                expected,
                found: sig,
            });
        }
        _ => {}
    }
    let len = u64::from(u32_at(&head, 4).unwrap_or(0));
    if len < *lens.start() {
        return Err(AcpiError::TooShort { sig, len });
    }
    if len > *lens.end() {
        return Err(AcpiError::TooLong { sig, len });
    }
    Ok((sig, copy_phys(mem, phys, len as usize)?))
}

/// Reads the root table (XSDT, else RSDT) and every table it lists, then the DSDT and FACS.
pub(crate) fn discover(
    mem: &dyn PhysMap,
    rsdp: &Rsdp,
) -> Result<(Vec<Table>, Vec<Skipped>), AcpiError> {
    let mut tables = Vec::new();
    let mut skipped = Vec::new();
    let mut skip = |phys, referrer: &str, error| {
        log::warn!(
            "acpi: skipping table at {:#x} ({}): {}",
            phys,
            referrer,
            error
        );
        skipped.push(Skipped {
            phys,
            referrer: referrer.into(),
            error,
        });
    };

    // ACPI 6.5 §5.2.5.3: use the XSDT when there is one; the RSDT is for ACPI 1.0 OSes.
    let mut root = None;
    if let Some(x) = rsdp.xsdt {
        match read_root(mem, x, Signature::XSDT) {
            Ok(r) => root = Some(r),
            Err(e) => skip(x, "RSDP.XSDT", e),
        }
    }
    if root.is_none() {
        match read_root(mem, u64::from(rsdp.rsdt), Signature::RSDT) {
            Ok(r) => root = Some(r),
            Err(e) => {
                skip(u64::from(rsdp.rsdt), "RSDP.RSDT", e);
                return Err(AcpiError::NoRootTable);
            }
        }
    }
    let Some((root, entries)) = root else {
        return Err(AcpiError::NoRootTable);
    };
    let root_sig = root.signature;
    tables.push(root);

    for (i, phys) in entries.into_iter().enumerate() {
        match read_sdt(mem, phys, None) {
            Ok(t) => tables.push(t),
            Err(e) => skip(phys, &alloc::format!("{}[{}]", root_sig, i), e),
        }
    }

    // The DSDT and FACS are not in the root table; the FADT points at them.
    let fadt_table = tables
        .iter()
        .find(|t| t.signature == Signature::FADT && t.checksum_ok == Some(true));
    match fadt_table.map(|t| fadt::parse(&t.bytes)) {
        Some(Ok(f)) => {
            match read_sdt(mem, f.dsdt, Some(Signature::DSDT)) {
                Ok(t) => tables.push(t),
                Err(e) => skip(f.dsdt, "FADT.DSDT", e),
            }
            // Hardware-reduced platforms have no FACS.
            if f.firmware_ctrl != 0 {
                match read_facs(mem, f.firmware_ctrl) {
                    Ok(t) => tables.push(t),
                    Err(e) => skip(f.firmware_ctrl, "FADT.FACS", e),
                }
            }
        }
        Some(Err(e)) => log::warn!("acpi: FADT unusable, no DSDT/FACS: {}", e),
        None => log::warn!("acpi: no valid FADT, no DSDT/FACS"),
    }
    Ok((tables, skipped))
}

/// Reads an XSDT or RSDT, which must be intact (its checksum guards every other pointer), and
/// returns it with its entries (8-byte addresses in the XSDT, 4-byte in the RSDT).
fn read_root(mem: &dyn PhysMap, phys: u64, sig: Signature) -> Result<(Table, Vec<u64>), AcpiError> {
    let t = read_sdt(mem, phys, Some(sig))?;
    if t.checksum_ok != Some(true) {
        return Err(AcpiError::BadChecksum(sig));
    }
    let size = if sig == Signature::XSDT { 8 } else { 4 };
    let body = t.bytes.get(HEADER_LEN..).unwrap_or(&[]);
    if !body.len().is_multiple_of(size) {
        return Err(AcpiError::BadEntry {
            sig,
            offset: HEADER_LEN,
            what: "length is not a whole number of entries",
        });
    }
    let entries = (0..body.len() / size)
        .filter_map(|i| {
            if size == 8 {
                u64_at(body, i * 8)
            } else {
                u32_at(body, i * 4).map(u64::from)
            }
        })
        .collect();
    Ok((t, entries))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{facs, sdt, FakeMem};

    fn with_len(sig: &[u8; 4], len: u32) -> Vec<u8> {
        let mut t = sdt(sig, 1, &[0; 64]);
        t[4..8].copy_from_slice(&len.to_le_bytes());
        t
    }

    #[test]
    fn length_fields_are_checked() {
        let mem = FakeMem::new(&[
            (0x1000, with_len(b"APIC", 30)),
            (0x2000, with_len(b"APIC", u32::MAX)),
        ]);
        let sig = Signature::MADT;
        assert_eq!(
            read_sdt(&mem, 0x1000, None).unwrap_err(),
            AcpiError::TooShort { sig, len: 30 }
        );
        assert_eq!(
            read_sdt(&mem, 0x2000, None).unwrap_err(),
            AcpiError::TooLong {
                sig,
                len: u32::MAX.into()
            }
        );
        assert_eq!(read_sdt(&mem, 0, None).unwrap_err(), AcpiError::NullAddress);
        assert_eq!(
            read_sdt(&mem, u64::MAX - 8, None).unwrap_err(),
            AcpiError::Unmappable {
                phys: u64::MAX - 8,
                len: 8
            }
        );
        // A table whose bytes were changed after its checksum was computed.
        let mut t = sdt(b"HPET", 1, &[1, 2, 3]);
        t[37] = 9;
        let mem = FakeMem::new(&[(0x1000, t)]);
        assert_eq!(
            read_sdt(&mem, 0x1000, None).unwrap().checksum_ok,
            Some(false)
        );
    }

    #[test]
    fn facs_is_checked_on_its_own_terms() {
        let mut short = facs();
        short[4] = 32;
        let mem = FakeMem::new(&[
            (0x1000, facs()),
            (0x2000, short),
            (0x3000, sdt(b"DSDT", 1, &[])),
        ]);
        let f = read_facs(&mem, 0x1000).unwrap();
        assert_eq!((f.len(), f.checksum_ok, f.revision()), (64, None, 1));
        assert_eq!(
            read_facs(&mem, 0x2000).unwrap_err(),
            AcpiError::TooShort {
                sig: Signature::FACS,
                len: 32
            }
        );
        assert!(matches!(
            read_facs(&mem, 0x3000),
            Err(AcpiError::BadSignature { .. })
        ));
    }
}
