//! The Multiple APIC Description Table (ACPI 6.5 §5.2.12).
use crate::bytes::{u16_at, u32_at, u64_at, u8_at};
use crate::{AcpiError, Signature};
use alloc::vec::Vec;

const LOCAL_APIC_ADDRESS: usize = 36;
const FLAGS: usize = 40;
const ENTRIES: usize = 44;
/// MADT flags bit 0: the machine also has dual 8259s (ACPI 6.5 Table 5.20).
const PCAT_COMPAT: u32 = 1 << 0;
/// Local APIC flags (ACPI 6.5 Table 5.23).
const LAPIC_ENABLED: u32 = 1 << 0;
const LAPIC_ONLINE_CAPABLE: u32 = 1 << 1;

// Interrupt controller structure types (ACPI 6.5 Table 5.21) and their lengths.
const TYPE_LOCAL_APIC: u8 = 0;
const TYPE_IO_APIC: u8 = 1;
const TYPE_INTERRUPT_OVERRIDE: u8 = 2;
const TYPE_NMI_SOURCE: u8 = 3;
const TYPE_LOCAL_APIC_NMI: u8 = 4;
const TYPE_LOCAL_APIC_ADDRESS_OVERRIDE: u8 = 5;
const TYPE_LOCAL_X2APIC: u8 = 9;
const TYPE_LOCAL_X2APIC_NMI: u8 = 0xa;

/// A processor's local APIC (type 0) or local x2APIC (type 9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalApic {
    /// ACPI processor UID.
    pub uid: u32,
    pub apic_id: u32,
    /// From a local x2APIC entry.
    pub x2apic: bool,
    pub enabled: bool,
    /// Disabled now but may be brought online (meaningful only when `!enabled`).
    pub online_capable: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoApic {
    pub id: u8,
    pub address: u32,
    pub gsi_base: u32,
}

/// MPS INTI polarity (ACPI 6.5 Table 5.27, bits 0-1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Polarity {
    /// Conforms to the bus (ISA: active high).
    Conforms,
    ActiveHigh,
    Reserved,
    ActiveLow,
}

/// MPS INTI trigger mode (ACPI 6.5 Table 5.27, bits 2-3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// Conforms to the bus (ISA: edge).
    Conforms,
    Edge,
    Reserved,
    Level,
}

fn inti(flags: u16) -> (Polarity, Trigger) {
    let p = match flags & 3 {
        0 => Polarity::Conforms,
        1 => Polarity::ActiveHigh,
        2 => Polarity::Reserved,
        _ => Polarity::ActiveLow,
    };
    let t = match (flags >> 2) & 3 {
        0 => Trigger::Conforms,
        1 => Trigger::Edge,
        2 => Trigger::Reserved,
        _ => Trigger::Level,
    };
    (p, t)
}

impl Polarity {
    pub fn name(&self) -> &'static str {
        match self {
            Polarity::Conforms => "conforms",
            Polarity::ActiveHigh => "high",
            Polarity::Reserved => "reserved",
            Polarity::ActiveLow => "low",
        }
    }
}

impl Trigger {
    pub fn name(&self) -> &'static str {
        match self {
            Trigger::Conforms => "conforms",
            Trigger::Edge => "edge",
            Trigger::Reserved => "reserved",
            Trigger::Level => "level",
        }
    }
}

/// An ISA IRQ routed to a different GSI or with different signalling (type 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InterruptOverride {
    pub bus: u8,
    pub irq: u8,
    pub gsi: u32,
    pub polarity: Polarity,
    pub trigger: Trigger,
}

/// A GSI that is an NMI (type 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NmiSource {
    pub gsi: u32,
    pub polarity: Polarity,
    pub trigger: Trigger,
}

/// A local APIC LINT pin wired to NMI (type 4, or type 0xA for x2APIC UIDs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalApicNmi {
    /// Processor UID; `None` means all processors (0xFF, or 0xFFFFFFFF for x2APIC).
    pub uid: Option<u32>,
    pub lint: u8,
    pub polarity: Polarity,
    pub trigger: Trigger,
}

/// Decoded MADT.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Madt {
    /// The local APIC base: the 32-bit header field, or the type 5 override when present.
    pub local_apic_address: u64,
    /// Dual 8259s present (they must be masked before using the I/O APIC).
    pub pcat_compat: bool,
    pub local_apics: Vec<LocalApic>,
    pub io_apics: Vec<IoApic>,
    pub overrides: Vec<InterruptOverride>,
    pub nmi_sources: Vec<NmiSource>,
    pub local_apic_nmis: Vec<LocalApicNmi>,
    /// Structures of other types: (type, length).
    pub other: Vec<(u8, u8)>,
}

pub(crate) fn parse(b: &[u8]) -> Result<Madt, AcpiError> {
    let sig = Signature::MADT;
    if b.len() < ENTRIES {
        return Err(AcpiError::TooShort {
            sig,
            len: b.len() as u64,
        });
    }
    let mut m = Madt {
        local_apic_address: u64::from(u32_at(b, LOCAL_APIC_ADDRESS).unwrap_or(0)),
        pcat_compat: u32_at(b, FLAGS).unwrap_or(0) & PCAT_COMPAT != 0,
        ..Madt::default()
    };
    let mut off = ENTRIES;
    // Each entry is at least 2 bytes long, so this loop ends within b.len()/2 steps.
    while off < b.len() {
        let bad = |what| AcpiError::BadEntry {
            sig,
            offset: off,
            what,
        };
        let typ = u8_at(b, off).ok_or(bad("truncated entry header"))?;
        let len = u8_at(b, off + 1).ok_or(bad("truncated entry header"))? as usize;
        if len < 2 {
            return Err(bad("entry length below 2"));
        }
        let e = b
            .get(off..off + len)
            .ok_or(bad("entry runs past the end of the table"))?;
        let need = |n: usize| {
            if len >= n {
                Ok(())
            } else {
                Err(bad("entry too short for its type"))
            }
        };
        // `need` guarantees the fields below are inside `e`; `unwrap_or` is never taken.
        match typ {
            TYPE_LOCAL_APIC => {
                need(8)?;
                let flags = u32_at(e, 4).unwrap_or(0);
                m.local_apics.push(LocalApic {
                    uid: u32::from(u8_at(e, 2).unwrap_or(0)),
                    apic_id: u32::from(u8_at(e, 3).unwrap_or(0)),
                    x2apic: false,
                    enabled: flags & LAPIC_ENABLED != 0,
                    online_capable: flags & LAPIC_ONLINE_CAPABLE != 0,
                });
            }
            TYPE_IO_APIC => {
                need(12)?;
                m.io_apics.push(IoApic {
                    id: u8_at(e, 2).unwrap_or(0),
                    address: u32_at(e, 4).unwrap_or(0),
                    gsi_base: u32_at(e, 8).unwrap_or(0),
                });
            }
            TYPE_INTERRUPT_OVERRIDE => {
                need(10)?;
                let (polarity, trigger) = inti(u16_at(e, 8).unwrap_or(0));
                m.overrides.push(InterruptOverride {
                    bus: u8_at(e, 2).unwrap_or(0),
                    irq: u8_at(e, 3).unwrap_or(0),
                    gsi: u32_at(e, 4).unwrap_or(0),
                    polarity,
                    trigger,
                });
            }
            TYPE_NMI_SOURCE => {
                need(8)?;
                let (polarity, trigger) = inti(u16_at(e, 2).unwrap_or(0));
                m.nmi_sources.push(NmiSource {
                    gsi: u32_at(e, 4).unwrap_or(0),
                    polarity,
                    trigger,
                });
            }
            TYPE_LOCAL_APIC_NMI => {
                need(6)?;
                let uid = u8_at(e, 2).unwrap_or(0);
                let (polarity, trigger) = inti(u16_at(e, 3).unwrap_or(0));
                m.local_apic_nmis.push(LocalApicNmi {
                    uid: (uid != 0xff).then_some(u32::from(uid)),
                    lint: u8_at(e, 5).unwrap_or(0),
                    polarity,
                    trigger,
                });
            }
            TYPE_LOCAL_APIC_ADDRESS_OVERRIDE => {
                need(12)?;
                m.local_apic_address = u64_at(e, 4).unwrap_or(0);
            }
            TYPE_LOCAL_X2APIC => {
                need(16)?;
                let flags = u32_at(e, 8).unwrap_or(0);
                m.local_apics.push(LocalApic {
                    uid: u32_at(e, 12).unwrap_or(0),
                    apic_id: u32_at(e, 4).unwrap_or(0),
                    x2apic: true,
                    enabled: flags & LAPIC_ENABLED != 0,
                    online_capable: flags & LAPIC_ONLINE_CAPABLE != 0,
                });
            }
            TYPE_LOCAL_X2APIC_NMI => {
                need(12)?;
                let uid = u32_at(e, 4).unwrap_or(0);
                let (polarity, trigger) = inti(u16_at(e, 2).unwrap_or(0));
                m.local_apic_nmis.push(LocalApicNmi {
                    uid: (uid != u32::MAX).then_some(uid),
                    lint: u8_at(e, 8).unwrap_or(0),
                    polarity,
                    trigger,
                });
            }
            other => m.other.push((other, len as u8)),
        }
        off += len;
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{madt, sdt};

    #[test]
    fn decodes_every_known_entry() {
        let m = parse(&madt()).unwrap();
        assert_eq!(m.local_apic_address, 0xfee0_0000);
        assert!(m.pcat_compat);
        assert_eq!(
            m.local_apics,
            [
                LocalApic {
                    uid: 0,
                    apic_id: 0,
                    x2apic: false,
                    enabled: true,
                    online_capable: false
                },
                LocalApic {
                    uid: 1,
                    apic_id: 1,
                    x2apic: false,
                    enabled: false,
                    online_capable: true
                },
                LocalApic {
                    uid: 300,
                    apic_id: 256,
                    x2apic: true,
                    enabled: true,
                    online_capable: false
                },
            ]
        );
        assert_eq!(
            m.io_apics,
            [IoApic {
                id: 0,
                address: 0xfec0_0000,
                gsi_base: 0
            }]
        );
        assert_eq!(
            m.overrides,
            [
                InterruptOverride {
                    bus: 0,
                    irq: 0,
                    gsi: 2,
                    polarity: Polarity::Conforms,
                    trigger: Trigger::Conforms
                },
                InterruptOverride {
                    bus: 0,
                    irq: 9,
                    gsi: 9,
                    polarity: Polarity::ActiveHigh,
                    trigger: Trigger::Level
                },
            ]
        );
        assert_eq!(
            m.local_apic_nmis,
            [LocalApicNmi {
                uid: None,
                lint: 1,
                polarity: Polarity::Conforms,
                trigger: Trigger::Conforms
            }]
        );
        assert_eq!(
            m.nmi_sources,
            [NmiSource {
                gsi: 23,
                polarity: Polarity::ActiveLow,
                trigger: Trigger::Edge
            }]
        );
        assert_eq!(m.other, [(0x7f, 4)]);
    }

    #[test]
    fn malformed_entries_are_errors() {
        let base = sdt(b"APIC", 1, &[0, 0, 0xe0, 0xfe, 1, 0, 0, 0]);
        let with = |entry: &[u8]| {
            let mut body = base[36..].to_vec();
            body.extend_from_slice(entry);
            sdt(b"APIC", 1, &body)
        };
        // Zero length would loop forever.
        assert!(matches!(
            parse(&with(&[0, 0])),
            Err(AcpiError::BadEntry { offset: 44, .. })
        ));
        // Length past the table end.
        assert!(matches!(
            parse(&with(&[1, 12, 0, 0])),
            Err(AcpiError::BadEntry { offset: 44, .. })
        ));
        // I/O APIC entry claiming 6 bytes.
        assert!(matches!(
            parse(&with(&[1, 6, 0, 0, 0, 0])),
            Err(AcpiError::BadEntry { offset: 44, .. })
        ));
        // Lone type byte.
        assert!(matches!(
            parse(&with(&[1])),
            Err(AcpiError::BadEntry { offset: 44, .. })
        ));
        assert!(matches!(
            parse(&base[..40]),
            Err(AcpiError::TooShort { .. })
        ));
        assert_eq!(parse(&base).unwrap().local_apics.len(), 0);
    }
}
