//! Resource template buffers (`_CRS`, `_PRS`) decoded into interrupt descriptors
//! (ACPI 6.5 §6.4).
//!
//! A resource template is a list of small and large items ending with an End Tag. Only the two
//! interrupt descriptors are decoded; every other item is listed by kind and position so a
//! caller can count descriptors (a `_PRT` Source Index counts all of them). The bytes come from
//! firmware: every read is bounds-checked and a malformed item is an error, never a panic.
use crate::bytes::{u16_at, u32_at, u8_at};
use crate::{AcpiError, Polarity, Trigger};
use alloc::vec::Vec;

/// §6.4.1: bit 7 of an item's first byte set means a large item.
const LARGE_ITEM: u8 = 0x80;
/// §6.4.2: small item name in bits 6:3, data length in bits 2:0.
const SMALL_NAME_SHIFT: u8 = 3;
const SMALL_NAME_MASK: u8 = 0x0f;
const SMALL_LEN_MASK: u8 = 0x07;
/// §6.4.2.1 IRQ descriptor (tags 0x22 without, 0x23 with the information byte).
const SMALL_IRQ: u8 = 0x04;
/// §6.4.2.9 End Tag (0x79).
const SMALL_END: u8 = 0x0f;
/// §6.4.3.6 Extended Interrupt descriptor (tag 0x89).
const LARGE_EXTENDED_IRQ: u8 = 0x09;
/// A large item's header: tag byte and 16-bit length.
const LARGE_HEADER_LEN: usize = 3;

/// IRQ descriptor information byte (§6.4.2.1, Table 6.x "IRQ Descriptor Definition").
const IRQ_EDGE: u8 = 1 << 0;
const IRQ_ACTIVE_LOW: u8 = 1 << 3;
const IRQ_SHARED: u8 = 1 << 4;
const IRQ_WAKE: u8 = 1 << 5;

/// Extended Interrupt descriptor flags byte (§6.4.3.6).
const EXT_CONSUMER: u8 = 1 << 0;
const EXT_EDGE: u8 = 1 << 1;
const EXT_ACTIVE_LOW: u8 = 1 << 2;
const EXT_SHARED: u8 = 1 << 3;
const EXT_WAKE: u8 = 1 << 4;

/// Which of the two interrupt descriptors an [`Interrupt`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InterruptKind {
    /// Small IRQ descriptor: a 16-bit mask of ISA IRQs.
    Irq,
    /// Large Extended Interrupt descriptor: a list of 32-bit interrupt numbers (GSIs on x86).
    Extended,
}

/// An interrupt descriptor: the interrupt numbers it names and how they signal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interrupt {
    pub kind: InterruptKind,
    /// IRQ numbers from the mask (lowest first), or the Extended descriptor's list in order.
    pub interrupts: Vec<u32>,
    /// `Edge` or `Level` (never `Conforms`: a descriptor always says).
    pub trigger: Trigger,
    /// `ActiveHigh` or `ActiveLow`.
    pub polarity: Polarity,
    pub shared: bool,
    pub wake_capable: bool,
    /// False for an Extended descriptor that marks itself a resource producer.
    pub consumer: bool,
}

/// One item of a resource template, in buffer order (the End Tag is not listed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    Interrupt(Interrupt),
    /// Any other item: its item name (small: bits 6:3; large: bits 6:0), whether it is a large
    /// item, and where its first byte is.
    Other {
        large: bool,
        name: u8,
        offset: usize,
    },
}

fn bad(offset: usize, what: &'static str) -> AcpiError {
    AcpiError::BadResource { offset, what }
}

/// Decodes a resource template buffer. Items after the End Tag are ignored; a buffer without
/// an End Tag, or an item that runs past the end, is an error.
pub fn decode_resources(b: &[u8]) -> Result<Vec<Resource>, AcpiError> {
    let mut out = Vec::new();
    let mut off = 0;
    loop {
        let tag = u8_at(b, off).ok_or(bad(off, "no end tag"))?;
        if tag & LARGE_ITEM != 0 {
            let name = tag & !LARGE_ITEM;
            let len =
                usize::from(u16_at(b, off + 1).ok_or(bad(off, "large item header truncated"))?);
            let data = b
                .get(off + LARGE_HEADER_LEN..off + LARGE_HEADER_LEN + len)
                .ok_or(bad(off, "large item runs past the buffer"))?;
            out.push(match name {
                LARGE_EXTENDED_IRQ => Resource::Interrupt(extended_irq(data, off)?),
                _ => Resource::Other {
                    large: true,
                    name,
                    offset: off,
                },
            });
            off += LARGE_HEADER_LEN + len;
        } else {
            let name = (tag >> SMALL_NAME_SHIFT) & SMALL_NAME_MASK;
            let len = usize::from(tag & SMALL_LEN_MASK);
            let data = b
                .get(off + 1..off + 1 + len)
                .ok_or(bad(off, "small item runs past the buffer"))?;
            match name {
                SMALL_END => return Ok(out),
                SMALL_IRQ => out.push(Resource::Interrupt(small_irq(data, off)?)),
                _ => out.push(Resource::Other {
                    large: false,
                    name,
                    offset: off,
                }),
            }
            off += 1 + len;
        }
    }
}

/// §6.4.2.1: IRQ mask (2 bytes), then an optional information byte. Without it the IRQ is
/// active-high, edge-triggered and not shared.
fn small_irq(data: &[u8], off: usize) -> Result<Interrupt, AcpiError> {
    let mask = match data.len() {
        2 | 3 => u16_at(data, 0).ok_or(bad(off, "IRQ mask truncated"))?,
        _ => return Err(bad(off, "IRQ descriptor length is not 2 or 3")),
    };
    let flags = u8_at(data, 2).unwrap_or(IRQ_EDGE);
    Ok(Interrupt {
        kind: InterruptKind::Irq,
        interrupts: (0..16).filter(|i| mask & (1 << i) != 0).collect(),
        trigger: trigger(flags & IRQ_EDGE != 0),
        polarity: polarity(flags & IRQ_ACTIVE_LOW != 0),
        shared: flags & IRQ_SHARED != 0,
        wake_capable: flags & IRQ_WAKE != 0,
        consumer: true,
    })
}

/// §6.4.3.6: flags, interrupt table length N (at least 1), N 32-bit interrupt numbers, then an
/// optional resource source (index byte and name), which is not needed here.
fn extended_irq(data: &[u8], off: usize) -> Result<Interrupt, AcpiError> {
    let flags = u8_at(data, 0).ok_or(bad(off, "extended interrupt descriptor too short"))?;
    let n = usize::from(u8_at(data, 1).ok_or(bad(off, "extended interrupt descriptor too short"))?);
    if n == 0 {
        return Err(bad(
            off,
            "extended interrupt descriptor lists no interrupts",
        ));
    }
    let interrupts = (0..n)
        .map(|i| u32_at(data, 2 + 4 * i))
        .collect::<Option<Vec<u32>>>()
        .ok_or(bad(off, "interrupt list runs past the descriptor"))?;
    Ok(Interrupt {
        kind: InterruptKind::Extended,
        interrupts,
        trigger: trigger(flags & EXT_EDGE != 0),
        polarity: polarity(flags & EXT_ACTIVE_LOW != 0),
        shared: flags & EXT_SHARED != 0,
        wake_capable: flags & EXT_WAKE != 0,
        consumer: flags & EXT_CONSUMER != 0,
    })
}

fn trigger(edge: bool) -> Trigger {
    if edge {
        Trigger::Edge
    } else {
        Trigger::Level
    }
}

fn polarity(low: bool) -> Polarity {
    if low {
        Polarity::ActiveLow
    } else {
        Polarity::ActiveHigh
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    /// QEMU's `\_SB.GSIA._CRS` on q35: Interrupt (ResourceConsumer, Level, ActiveHigh, Shared)
    /// {0x10}, as the DSDT encodes it.
    const GSIA_CRS: [u8; 11] = [0x89, 0x06, 0x00, 0x09, 0x01, 0x10, 0, 0, 0, 0x79, 0x00];

    fn ext(v: Vec<u32>, trigger: Trigger, polarity: Polarity, shared: bool) -> Resource {
        Resource::Interrupt(Interrupt {
            kind: InterruptKind::Extended,
            interrupts: v,
            trigger,
            polarity,
            shared,
            wake_capable: false,
            consumer: true,
        })
    }

    #[test]
    fn extended_interrupt() {
        assert_eq!(
            decode_resources(&GSIA_CRS),
            Ok(vec![ext(
                vec![16],
                Trigger::Level,
                Polarity::ActiveHigh,
                true
            )])
        );
        // Edge, active-low, exclusive, wake-capable, producer, two interrupts, and a resource
        // source after the list.
        let b = [
            0x89, 0x0e, 0x00, 0x16, 0x02, 5, 0, 0, 0, 0x20, 1, 0, 0, 0x00, b'L', b'N', 0, 0x79, 0,
        ];
        assert_eq!(
            decode_resources(&b),
            Ok(vec![Resource::Interrupt(Interrupt {
                kind: InterruptKind::Extended,
                interrupts: vec![5, 0x120],
                trigger: Trigger::Edge,
                polarity: Polarity::ActiveLow,
                shared: false,
                wake_capable: true,
                consumer: false,
            })])
        );
    }

    #[test]
    fn small_irq_with_and_without_flags() {
        // IRQNoFlags () {1, 12}: edge, active-high, exclusive.
        let r = decode_resources(&[0x22, 0x02, 0x10, 0x79, 0x00]).unwrap();
        assert_eq!(
            r,
            [Resource::Interrupt(Interrupt {
                kind: InterruptKind::Irq,
                interrupts: vec![1, 12],
                trigger: Trigger::Edge,
                polarity: Polarity::ActiveHigh,
                shared: false,
                wake_capable: false,
                consumer: true,
            })]
        );
        // IRQ (Level, ActiveLow, Shared) {5, 10, 11}.
        let r = decode_resources(&[0x23, 0x20, 0x0c, 0x18, 0x79, 0x00]).unwrap();
        let Resource::Interrupt(i) = &r[0] else {
            panic!("{r:?}")
        };
        assert_eq!(
            (&i.interrupts[..], i.trigger, i.polarity, i.shared),
            (&[5, 10, 11][..], Trigger::Level, Polarity::ActiveLow, true)
        );
    }

    #[test]
    fn other_items_are_listed_in_order() {
        // IO (Decode16, 0x60, 0x60, 1, 1), Memory32Fixed (0xfed00000, 0x400), IRQNoFlags {1}.
        let mut b = vec![0x47, 0x01, 0x60, 0x00, 0x60, 0x00, 0x01, 0x01];
        b.extend_from_slice(&[0x86, 0x09, 0x00, 0x00, 0, 0, 0xd0, 0xfe, 0, 4, 0, 0]);
        b.extend_from_slice(&[0x22, 0x02, 0x00, 0x79, 0x00]);
        let r = decode_resources(&b).unwrap();
        assert_eq!(
            r[..2],
            [
                Resource::Other {
                    large: false,
                    name: 0x08,
                    offset: 0
                },
                Resource::Other {
                    large: true,
                    name: 0x06,
                    offset: 8
                }
            ]
        );
        assert!(matches!(&r[2], Resource::Interrupt(i) if i.interrupts == [1]));
        // Bytes after the End Tag are not looked at.
        b.extend_from_slice(&[0xff, 0xff]);
        assert_eq!(decode_resources(&b).unwrap().len(), 3);
    }

    #[test]
    fn malformed_buffers_are_errors() {
        let cases: &[(&[u8], usize, &str)] = &[
            (&[], 0, "no end tag"),
            (&[0x22, 0x02, 0x00], 3, "no end tag"),
            (&[0x22, 0x02], 0, "small item runs past the buffer"),
            (
                &[0x21, 0x00, 0x79, 0],
                0,
                "IRQ descriptor length is not 2 or 3",
            ),
            (&[0x79], 0, "small item runs past the buffer"),
            (&[0x89, 0x06], 0, "large item header truncated"),
            (
                &[0x89, 0x06, 0x00, 0x09],
                0,
                "large item runs past the buffer",
            ),
            (
                &[0x89, 0x01, 0x00, 0x09, 0x79, 0],
                0,
                "extended interrupt descriptor too short",
            ),
            (
                &[0x89, 0x02, 0x00, 0x09, 0x00, 0x79, 0],
                0,
                "extended interrupt descriptor lists no interrupts",
            ),
            (
                &[0x89, 0x05, 0x00, 0x09, 0x01, 1, 2, 3, 0x79, 0],
                0,
                "interrupt list runs past the descriptor",
            ),
            (
                &[0x89, 0xff, 0xff, 0x09, 0x01, 0x10, 0, 0, 0, 0x79, 0x00],
                0,
                "large item runs past the buffer",
            ),
        ];
        for (b, offset, what) in cases {
            assert_eq!(
                decode_resources(b),
                Err(AcpiError::BadResource {
                    offset: *offset,
                    what
                }),
                "{b:x?}"
            );
        }
    }
}
