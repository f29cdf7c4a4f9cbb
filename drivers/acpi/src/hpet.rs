//! The HPET description table (IA-PC HPET Specification 1.0a §3.2.4, Table 3).
use crate::bytes::{u16_at, u32_at, u8_at};
use crate::gas::Gas;
use crate::{AcpiError, Signature};

const EVENT_TIMER_BLOCK_ID: usize = 36;
const BASE_ADDRESS: usize = 40;
const HPET_NUMBER: usize = 52;
const MIN_TICK: usize = 53;
const PAGE_PROTECTION: usize = 55;
const LEN: usize = 56;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hpet {
    pub hardware_rev: u8,
    /// Number of comparators (the table stores the index of the last one).
    pub comparators: u8,
    /// The main counter is 64 bits wide (COUNT_SIZE_CAP).
    pub counter_64bit: bool,
    /// Timers 0 and 1 can replace the PIT and RTC interrupts (LEG_RT_CAP).
    pub legacy_replacement: bool,
    pub pci_vendor_id: u16,
    /// Where the registers are (system memory in practice).
    pub base: Gas,
    /// Sequence number of this timer block.
    pub number: u8,
    /// Minimum main counter ticks for periodic mode without lost interrupts.
    pub min_tick: u16,
    /// 0 none, 1 4 KiB, 2 64 KiB protected (low nibble of the page protection byte).
    pub page_protection: u8,
}

pub(crate) fn parse(b: &[u8]) -> Result<Hpet, AcpiError> {
    let sig = Signature::HPET;
    if b.len() < LEN {
        return Err(AcpiError::TooShort {
            sig,
            len: b.len() as u64,
        });
    }
    let t = |offset| AcpiError::Truncated { sig, offset };
    let id = u32_at(b, EVENT_TIMER_BLOCK_ID).ok_or(t(EVENT_TIMER_BLOCK_ID))?;
    Ok(Hpet {
        hardware_rev: id as u8,
        comparators: ((id >> 8) & 0x1f) as u8 + 1,
        counter_64bit: id & (1 << 13) != 0,
        legacy_replacement: id & (1 << 15) != 0,
        pci_vendor_id: (id >> 16) as u16,
        base: Gas::parse(b, BASE_ADDRESS).ok_or(AcpiError::BadEntry {
            sig,
            offset: BASE_ADDRESS,
            what: "no base address",
        })?,
        number: u8_at(b, HPET_NUMBER).ok_or(t(HPET_NUMBER))?,
        min_tick: u16_at(b, MIN_TICK).ok_or(t(MIN_TICK))?,
        page_protection: u8_at(b, PAGE_PROTECTION).ok_or(t(PAGE_PROTECTION))? & 0xf,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gas::AddressSpace;
    use crate::testutil::{hpet, sdt};

    #[test]
    fn decodes_qemu_like_hpet() {
        let h = parse(&hpet(0xfed0_0000)).unwrap();
        assert_eq!(h.pci_vendor_id, 0x8086);
        assert_eq!(
            (
                h.hardware_rev,
                h.comparators,
                h.counter_64bit,
                h.legacy_replacement
            ),
            (1, 3, true, true)
        );
        assert_eq!(
            (h.base.space, h.base.address),
            (AddressSpace::SystemMemory, 0xfed0_0000)
        );
        assert_eq!((h.number, h.min_tick, h.page_protection), (0, 0x80, 0));
    }

    #[test]
    fn short_or_baseless_hpet() {
        assert!(matches!(
            parse(&hpet(0xfed0_0000)[..50]),
            Err(AcpiError::TooShort { .. })
        ));
        let body = hpet(0)[36..].to_vec();
        assert!(matches!(
            parse(&sdt(b"HPET", 1, &body)),
            Err(AcpiError::BadEntry { offset: 40, .. })
        ));
    }
}
