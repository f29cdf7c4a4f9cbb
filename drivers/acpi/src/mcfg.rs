//! The PCI Express memory-mapped configuration table (PCI Firmware 3.2 §4.1.2, Table 4-2/4-3).
use crate::bytes::{u16_at, u64_at, u8_at};
use crate::{AcpiError, Signature};
use alloc::vec::Vec;

/// Header (36) + 8 reserved bytes.
const ENTRIES: usize = 44;
const ENTRY_LEN: usize = 16;

/// One ECAM window: config space of `segment`, buses `bus_start..=bus_end`, at `base`
/// (the address of bus 0's space, even when `bus_start` is not 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct McfgRegion {
    pub segment: u16,
    pub bus_start: u8,
    pub bus_end: u8,
    pub base: u64,
}

impl McfgRegion {
    /// The physical address of (bus, device, function)'s 4 KiB of config space, if in range.
    pub fn function_address(&self, bus: u8, device: u8, function: u8) -> Option<u64> {
        if bus < self.bus_start || bus > self.bus_end || device > 31 || function > 7 {
            return None;
        }
        let off = (u64::from(bus) << 20) | (u64::from(device) << 15) | (u64::from(function) << 12);
        self.base.checked_add(off)
    }
}

pub(crate) fn parse(b: &[u8]) -> Result<Vec<McfgRegion>, AcpiError> {
    let sig = Signature::MCFG;
    if b.len() < ENTRIES {
        return Err(AcpiError::TooShort {
            sig,
            len: b.len() as u64,
        });
    }
    if !(b.len() - ENTRIES).is_multiple_of(ENTRY_LEN) {
        return Err(AcpiError::BadEntry {
            sig,
            offset: ENTRIES,
            what: "length is not a whole number of entries",
        });
    }
    let mut v = Vec::new();
    for off in (ENTRIES..b.len()).step_by(ENTRY_LEN) {
        let t = AcpiError::Truncated { sig, offset: off };
        let r = McfgRegion {
            base: u64_at(b, off).ok_or(t.clone())?,
            segment: u16_at(b, off + 8).ok_or(t.clone())?,
            bus_start: u8_at(b, off + 10).ok_or(t.clone())?,
            bus_end: u8_at(b, off + 11).ok_or(t)?,
        };
        if r.bus_end < r.bus_start {
            return Err(AcpiError::BadEntry {
                sig,
                offset: off,
                what: "end bus below start bus",
            });
        }
        v.push(r);
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{mcfg, sdt};

    #[test]
    fn decodes_regions() {
        let v = parse(&mcfg(&[
            (0xb000_0000, 0, 0, 255),
            (0x1_0000_0000, 1, 16, 31),
        ]))
        .unwrap();
        assert_eq!(
            v,
            [
                McfgRegion {
                    segment: 0,
                    bus_start: 0,
                    bus_end: 255,
                    base: 0xb000_0000
                },
                McfgRegion {
                    segment: 1,
                    bus_start: 16,
                    bus_end: 31,
                    base: 0x1_0000_0000
                },
            ]
        );
        assert_eq!(v[0].function_address(0, 31, 2), Some(0xb00f_a000));
        assert_eq!(v[1].function_address(15, 0, 0), None);
        assert_eq!(v[0].function_address(0, 32, 0), None);
        assert!(parse(&mcfg(&[])).unwrap().is_empty());
    }

    #[test]
    fn bad_sizes_and_ranges() {
        let mut body = mcfg(&[(0xb000_0000, 0, 0, 255)])[36..].to_vec();
        body.push(0);
        assert!(matches!(
            parse(&sdt(b"MCFG", 1, &body)),
            Err(AcpiError::BadEntry { offset: 44, .. })
        ));
        assert!(matches!(
            parse(&mcfg(&[(0xb000_0000, 0, 9, 8)])),
            Err(AcpiError::BadEntry { offset: 44, .. })
        ));
        assert!(matches!(
            parse(&sdt(b"MCFG", 1, &[])),
            Err(AcpiError::TooShort { .. })
        ));
    }
}
