//! The Generic Address Structure (ACPI 6.5 §5.2.3.2, Table 5.1).
use crate::bytes::{u64_at, u8_at};

/// Size of a GAS in a table.
pub(crate) const GAS_LEN: usize = 12;

/// Where a register lives (ACPI 6.5 Table 5.1, Address Space ID).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressSpace {
    SystemMemory,
    SystemIo,
    /// Segment 0, bus 0; address = device << 32 | function << 16 | offset.
    PciConfig,
    Other(u8),
}

impl AddressSpace {
    fn from_id(id: u8) -> AddressSpace {
        match id {
            0 => AddressSpace::SystemMemory,
            1 => AddressSpace::SystemIo,
            2 => AddressSpace::PciConfig,
            other => AddressSpace::Other(other),
        }
    }
}

/// A register address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gas {
    pub space: AddressSpace,
    pub bit_width: u8,
    pub bit_offset: u8,
    /// 0 undefined, 1 byte, 2 word, 3 dword, 4 qword.
    pub access_size: u8,
    pub address: u64,
}

impl Gas {
    /// Decodes the GAS at `off`; `None` if it is past the end or all-zero (not present).
    pub(crate) fn parse(b: &[u8], off: usize) -> Option<Gas> {
        let address = u64_at(b, off + 4)?;
        let space = u8_at(b, off)?;
        if address == 0 {
            return None;
        }
        Some(Gas {
            space: AddressSpace::from_id(space),
            bit_width: u8_at(b, off + 1)?,
            bit_offset: u8_at(b, off + 2)?,
            access_size: u8_at(b, off + 3)?,
            address,
        })
    }

    /// A legacy FADT block: a 32-bit I/O port and its length in bytes.
    pub(crate) fn io(port: u32, len_bytes: u8) -> Option<Gas> {
        (port != 0).then_some(Gas {
            space: AddressSpace::SystemIo,
            bit_width: len_bytes.saturating_mul(8),
            bit_offset: 0,
            access_size: 0,
            address: u64::from(port),
        })
    }

    /// The width of one access in bits, the way ACPICA picks it: the register width when it is
    /// a native size and unshifted, else the declared access size.
    pub fn access_bits(&self) -> Option<u8> {
        if self.bit_offset == 0 && matches!(self.bit_width, 8 | 16 | 32 | 64) {
            return Some(self.bit_width);
        }
        match self.access_size {
            1 => Some(8),
            2 => Some(16),
            3 => Some(32),
            4 => Some(64),
            _ => None,
        }
    }
}

impl core::fmt::Display for Gas {
    /// `io:0x604/16`, `mem:0xfed00000/64`, `pci:0x1f0000000a/8`, `space7:0x10/8`.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.space {
            AddressSpace::SystemMemory => write!(f, "mem:")?,
            AddressSpace::SystemIo => write!(f, "io:")?,
            AddressSpace::PciConfig => write!(f, "pci:")?,
            AddressSpace::Other(id) => write!(f, "space{}:", id)?,
        }
        write!(f, "{:#x}/{}", self.address, self.bit_width)?;
        if self.bit_offset != 0 {
            write!(f, "+{}", self.bit_offset)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_and_width() {
        let b = [1, 16, 0, 2, 0x04, 0x06, 0, 0, 0, 0, 0, 0];
        let g = Gas::parse(&b, 0).unwrap();
        assert_eq!(g.space, AddressSpace::SystemIo);
        assert_eq!((g.address, g.access_bits()), (0x604, Some(16)));
        assert_eq!(alloc::format!("{}", g), "io:0x604/16");
        assert_eq!(Gas::parse(&b, 1), None, "past the end");
        assert_eq!(Gas::parse(&[0; 12], 0), None, "all-zero means absent");
        let odd = Gas {
            bit_width: 3,
            bit_offset: 1,
            access_size: 0,
            ..g
        };
        assert_eq!(odd.access_bits(), None);
        let sized = Gas {
            access_size: 1,
            ..odd
        };
        assert_eq!(sized.access_bits(), Some(8));
        assert_eq!(Gas::io(0, 2), None);
        assert_eq!(Gas::io(0xb000, 4).unwrap().bit_width, 32);
    }
}
