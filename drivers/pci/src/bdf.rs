//! PCI function addresses: segment, bus, device, function.
use core::fmt;

/// Devices per bus (PCI Local Bus 3.0 §3.2.2.3.1: 5-bit device number).
pub const DEVICES_PER_BUS: u8 = 32;
/// Functions per device (3-bit function number).
pub const FUNCTIONS_PER_DEVICE: u8 = 8;

/// The address of one PCI function. Printed as `SSSS:BB:DD.F` (hex).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bdf {
    pub segment: u16,
    pub bus: u8,
    device: u8,
    function: u8,
}

/// Why a word is not a BDF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BdfError {
    /// Not of the form `BB:DD.F` or `SSSS:BB:DD.F`.
    Syntax,
    /// A field is not hexadecimal or too wide for its field.
    BadNumber,
    /// Device above 0x1f.
    DeviceRange,
    /// Function above 7.
    FunctionRange,
}

impl fmt::Display for BdfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BdfError::Syntax => "expected BB:DD.F or SSSS:BB:DD.F (hex)",
            BdfError::BadNumber => "bad hex number in BDF",
            BdfError::DeviceRange => "device number above 1f",
            BdfError::FunctionRange => "function number above 7",
        })
    }
}

impl Bdf {
    /// `None` if `device` > 31 or `function` > 7.
    pub const fn new(segment: u16, bus: u8, device: u8, function: u8) -> Option<Bdf> {
        if device >= DEVICES_PER_BUS || function >= FUNCTIONS_PER_DEVICE {
            return None;
        }
        Some(Bdf {
            segment,
            bus,
            device,
            function,
        })
    }

    /// The packed form interrupt owners carry (`capmon_hal::IrqOwner::bdf`):
    /// `segment << 16 | bus << 8 | device << 3 | function`.
    pub const fn to_u32(self) -> u32 {
        (self.segment as u32) << 16
            | (self.bus as u32) << 8
            | (self.device as u32) << 3
            | self.function as u32
    }

    /// The inverse of [`Bdf::to_u32`].
    pub const fn from_u32(v: u32) -> Bdf {
        Bdf {
            segment: (v >> 16) as u16,
            bus: (v >> 8) as u8,
            device: ((v >> 3) & 0x1f) as u8,
            function: (v & 7) as u8,
        }
    }

    /// `BB:DD.F` on segment 0, `SSSS:BB:DD.F` elsewhere (how QEMU and `lspci` name functions).
    pub fn short(self) -> ShortBdf {
        ShortBdf(self)
    }

    pub const fn device(&self) -> u8 {
        self.device
    }

    pub const fn function(&self) -> u8 {
        self.function
    }

    /// Parses `BB:DD.F` (segment 0) or `SSSS:BB:DD.F`, all fields hexadecimal.
    pub fn parse(s: &str) -> Result<Bdf, BdfError> {
        let (head, func) = s.rsplit_once('.').ok_or(BdfError::Syntax)?;
        let mut parts = head.split(':');
        let (seg, bus, dev) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(b), Some(d), None, None) => ("0", b, d),
            (Some(s), Some(b), Some(d), None) => (s, b, d),
            _ => return Err(BdfError::Syntax),
        };
        let segment = hex(seg, 4)? as u16;
        let bus = hex(bus, 2)? as u8;
        let device = hex(dev, 2)? as u8;
        let function = hex(func, 1)? as u8;
        if device >= DEVICES_PER_BUS {
            return Err(BdfError::DeviceRange);
        }
        if function >= FUNCTIONS_PER_DEVICE {
            return Err(BdfError::FunctionRange);
        }
        Ok(Bdf {
            segment,
            bus,
            device,
            function,
        })
    }
}

/// A hex field of at most `max_digits` digits.
fn hex(s: &str, max_digits: usize) -> Result<u32, BdfError> {
    if s.is_empty() || s.len() > max_digits || !s.bytes().all(|c| c.is_ascii_hexdigit()) {
        return Err(BdfError::BadNumber);
    }
    u32::from_str_radix(s, 16).map_err(|_| BdfError::BadNumber)
}

/// A [`Bdf`] displayed without the segment when it is 0.
#[derive(Debug, Clone, Copy)]
pub struct ShortBdf(Bdf);

impl fmt::Display for ShortBdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        if b.segment != 0 {
            write!(f, "{}", b)
        } else {
            write!(f, "{:02x}:{:02x}.{:x}", b.bus, b.device, b.function)
        }
    }
}

impl fmt::Display for Bdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.segment, self.bus, self.device, self.function
        )
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn packs_and_names_short() {
        let b = Bdf::new(1, 0x0a, 0x1f, 7).unwrap();
        assert_eq!(b.to_u32(), 0x0001_0aff);
        assert_eq!(Bdf::from_u32(b.to_u32()), b);
        assert_eq!(alloc::format!("{}", b.short()), "0001:0a:1f.7");
        let z = Bdf::new(0, 0, 3, 0).unwrap();
        assert_eq!(alloc::format!("{}", z.short()), "00:03.0");
    }

    use super::*;
    use alloc::format;

    #[test]
    fn parse_and_print() {
        let b = Bdf::parse("00:1f.3").unwrap();
        assert_eq!(format!("{}", b), "0000:00:1f.3");
        let b = Bdf::parse("0001:0a:00.7").unwrap();
        assert_eq!(
            (b.segment, b.bus, b.device(), b.function()),
            (1, 0x0a, 0, 7)
        );
        assert_eq!(Bdf::parse("FF:1F.0").unwrap().bus, 0xff);
    }

    #[test]
    fn parse_rejects_garbage() {
        assert_eq!(Bdf::parse("00:20.0"), Err(BdfError::DeviceRange));
        assert_eq!(Bdf::parse("00:1f.8"), Err(BdfError::FunctionRange));
        assert_eq!(Bdf::parse("00:1f"), Err(BdfError::Syntax));
        assert_eq!(Bdf::parse("1:2:3:4.0"), Err(BdfError::Syntax));
        assert_eq!(Bdf::parse("100:00.0"), Err(BdfError::BadNumber));
        assert_eq!(Bdf::parse("0g:00.0"), Err(BdfError::BadNumber));
        assert_eq!(Bdf::parse(":00.0"), Err(BdfError::BadNumber));
        assert_eq!(Bdf::parse("+1:00.0"), Err(BdfError::BadNumber));
        assert_eq!(Bdf::parse(""), Err(BdfError::Syntax));
        assert!(Bdf::new(0, 0, 32, 0).is_none());
    }
}
