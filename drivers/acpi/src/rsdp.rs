//! The Root System Description Pointer (ACPI 6.5 §5.2.5.3).
use crate::bytes::{checksum_ok, u32_at, u64_at, u8_at};
use crate::tables::copy_phys;
use crate::AcpiError;
use alloc::vec::Vec;
use capmon_hal::PhysMap;

const SIGNATURE: &[u8; 8] = b"RSD PTR ";
/// ACPI 1.0 RSDP: signature, checksum, OEM ID, revision, RSDT address.
const V1_LEN: usize = 20;
/// ACPI 2.0+ RSDP: adds length, XSDT address, extended checksum, reserved.
const V2_LEN: usize = 36;
/// No RSDP revision defines more than 36 bytes; allow growth but not nonsense.
const MAX_LEN: u32 = 4096;

/// The RSDP as found in memory.
#[derive(Debug, Clone)]
pub struct Rsdp {
    pub phys: u64,
    /// 0 for ACPI 1.0 (RSDT only), 2 for ACPI 2.0+ (XSDT).
    pub revision: u8,
    pub oem_id: [u8; 6],
    pub rsdt: u32,
    /// The XSDT address when the revision has one and the extended checksum is good.
    pub xsdt: Option<u64>,
    /// False when a revision 2+ RSDP fails its extended checksum (its XSDT is then not used).
    pub extended_checksum_ok: bool,
    /// The raw structure (20 or `length` bytes).
    pub bytes: Vec<u8>,
}

pub(crate) fn read(mem: &dyn PhysMap, phys: u64) -> Result<Rsdp, AcpiError> {
    if phys == 0 {
        return Err(AcpiError::NullAddress);
    }
    let v1 = copy_phys(mem, phys, V1_LEN)?;
    if v1.get(..8) != Some(&SIGNATURE[..]) {
        return Err(AcpiError::RsdpSignature);
    }
    if !checksum_ok(&v1) {
        return Err(AcpiError::RsdpChecksum);
    }
    let field = |b: &[u8], off| u8_at(b, off).unwrap_or(0);
    let revision = field(&v1, 15);
    let mut oem_id = [0; 6];
    oem_id.copy_from_slice(v1.get(9..15).unwrap_or(&[0; 6]));
    let rsdt = u32_at(&v1, 16).unwrap_or(0);
    if revision < 2 {
        return Ok(Rsdp {
            phys,
            revision,
            oem_id,
            rsdt,
            xsdt: None,
            extended_checksum_ok: true,
            bytes: v1,
        });
    }
    let head = copy_phys(mem, phys, V2_LEN)?;
    let len = u32_at(&head, 20).unwrap_or(0);
    if !(V2_LEN as u32..=MAX_LEN).contains(&len) {
        return Err(AcpiError::RsdpLength(len));
    }
    let bytes = copy_phys(mem, phys, len as usize)?;
    let extended_checksum_ok = checksum_ok(&bytes);
    let xsdt = u64_at(&bytes, 24).filter(|a| *a != 0 && extended_checksum_ok);
    if !extended_checksum_ok {
        log::warn!("acpi: RSDP extended checksum bad, ignoring its XSDT");
    }
    Ok(Rsdp {
        phys,
        revision,
        oem_id,
        rsdt,
        xsdt,
        extended_checksum_ok,
        bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{rsdp_v1, rsdp_v2, FakeMem};

    #[test]
    fn v1_and_v2() {
        let mem = FakeMem::new(&[(0xe0000, rsdp_v1(0x1000))]);
        let r = read(&mem, 0xe0000).unwrap();
        assert_eq!(
            (r.revision, r.rsdt, r.xsdt, r.bytes.len()),
            (0, 0x1000, None, 20)
        );
        assert_eq!(&r.oem_id, b"CAPMON");

        let mem = FakeMem::new(&[(0xe0000, rsdp_v2(0x1000, 0x2000))]);
        let r = read(&mem, 0xe0000).unwrap();
        assert_eq!(
            (r.revision, r.rsdt, r.xsdt, r.bytes.len()),
            (2, 0x1000, Some(0x2000), 36)
        );
    }

    #[test]
    fn rejects_bad_rsdps() {
        let mem = FakeMem::new(&[(0xe0000, rsdp_v1(0x1000))]);
        assert_eq!(read(&mem, 0).unwrap_err(), AcpiError::NullAddress);
        assert!(matches!(
            read(&mem, 0x5000).unwrap_err(),
            AcpiError::Unmappable { .. }
        ));
        // Straddles the end of the fake region.
        assert!(matches!(
            read(&mem, 0xe0010).unwrap_err(),
            AcpiError::Unmappable { .. }
        ));

        let mut bad = rsdp_v1(0x1000);
        bad[0] = b'X';
        let mem = FakeMem::new(&[(0xe0000, bad)]);
        assert_eq!(read(&mem, 0xe0000).unwrap_err(), AcpiError::RsdpSignature);

        let mut bad = rsdp_v1(0x1000);
        bad[16] ^= 1;
        let mem = FakeMem::new(&[(0xe0000, bad)]);
        assert_eq!(read(&mem, 0xe0000).unwrap_err(), AcpiError::RsdpChecksum);
    }

    #[test]
    fn v2_length_and_extended_checksum() {
        let mut bad = rsdp_v2(0x1000, 0x2000);
        bad[20] = 8; // length 8 < 36
        let mem = FakeMem::new(&[(0xe0000, bad)]);
        assert_eq!(read(&mem, 0xe0000).unwrap_err(), AcpiError::RsdpLength(8));

        let mut bad = rsdp_v2(0x1000, 0x2000);
        bad[24] ^= 0x10; // XSDT pointer corrupted: extended checksum fails, RSDT still usable
        let mem = FakeMem::new(&[(0xe0000, bad)]);
        let r = read(&mem, 0xe0000).unwrap();
        assert!(!r.extended_checksum_ok);
        assert_eq!((r.rsdt, r.xsdt), (0x1000, None));
    }
}
