//! The I/O APIC (Intel 82093AA datasheet §3): an index register (IOREGSEL, offset 0x00) and a
//! data window (IOWIN, offset 0x10); registers 0x00 ID, 0x01 version, 0x10 + 2n the 64-bit
//! redirection entry of pin n (low dword first).
//!
//! The select/data pair is not atomic: the owner serialises access (the kernel keeps each
//! I/O APIC behind a lock).
use capmon_hal::Mmio;

const IOREGSEL: usize = 0x00;
const IOWIN: usize = 0x10;
const REG_ID: u32 = 0x00;
const REG_VERSION: u32 = 0x01;
const REG_REDIRECTION: u32 = 0x10;
/// The most pins the version register can describe (bits 23:16 hold the last index).
pub const MAX_PINS: u32 = 240;

/// Delivery modes of a redirection entry (82093AA §3.2.4, bits 10:8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryMode {
    Fixed,
    LowestPriority,
    Smi,
    Nmi,
    Init,
    ExtInt,
    Reserved(u8),
}

impl DeliveryMode {
    fn from_bits(b: u8) -> Self {
        match b & 7 {
            0 => DeliveryMode::Fixed,
            1 => DeliveryMode::LowestPriority,
            2 => DeliveryMode::Smi,
            4 => DeliveryMode::Nmi,
            5 => DeliveryMode::Init,
            7 => DeliveryMode::ExtInt,
            r => DeliveryMode::Reserved(r),
        }
    }
    fn bits(self) -> u64 {
        match self {
            DeliveryMode::Fixed => 0,
            DeliveryMode::LowestPriority => 1,
            DeliveryMode::Smi => 2,
            DeliveryMode::Nmi => 4,
            DeliveryMode::Init => 5,
            DeliveryMode::ExtInt => 7,
            DeliveryMode::Reserved(r) => (r & 7) as u64,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            DeliveryMode::Fixed => "fixed",
            DeliveryMode::LowestPriority => "lowest",
            DeliveryMode::Smi => "SMI",
            DeliveryMode::Nmi => "NMI",
            DeliveryMode::Init => "INIT",
            DeliveryMode::ExtInt => "ExtINT",
            DeliveryMode::Reserved(_) => "reserved",
        }
    }
}

/// One redirection entry, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Redirection {
    pub vector: u8,
    pub delivery: DeliveryMode,
    /// Destination mode: logical (true) or physical APIC ID (false).
    pub logical: bool,
    /// Delivery status (read-only): an interrupt is waiting to be accepted.
    pub pending: bool,
    pub active_low: bool,
    /// Remote IRR (read-only, level-triggered only): accepted, EOI not yet seen.
    pub remote_irr: bool,
    pub level: bool,
    pub masked: bool,
    /// Destination APIC ID (physical) or logical set (bits 63:56).
    pub dest: u8,
}

impl Redirection {
    /// A masked entry: how every pin starts.
    pub const MASKED: Redirection = Redirection {
        vector: 0,
        delivery: DeliveryMode::Fixed,
        logical: false,
        pending: false,
        active_low: false,
        remote_irr: false,
        level: false,
        masked: true,
        dest: 0,
    };

    pub fn decode(v: u64) -> Redirection {
        Redirection {
            vector: v as u8,
            delivery: DeliveryMode::from_bits((v >> 8) as u8),
            logical: v & (1 << 11) != 0,
            pending: v & (1 << 12) != 0,
            active_low: v & (1 << 13) != 0,
            remote_irr: v & (1 << 14) != 0,
            level: v & (1 << 15) != 0,
            masked: v & (1 << 16) != 0,
            dest: (v >> 56) as u8,
        }
    }

    /// The value to write (read-only bits 12 and 14 are written as 0).
    pub fn encode(&self) -> u64 {
        self.vector as u64
            | self.delivery.bits() << 8
            | (self.logical as u64) << 11
            | (self.active_low as u64) << 13
            | (self.level as u64) << 15
            | (self.masked as u64) << 16
            | (self.dest as u64) << 56
    }
}

/// One I/O APIC.
pub struct IoApic<'a> {
    mmio: &'a dyn Mmio,
    /// The first GSI its pin 0 serves (MADT).
    pub gsi_base: u32,
}

impl<'a> IoApic<'a> {
    pub fn new(mmio: &'a dyn Mmio, gsi_base: u32) -> Self {
        IoApic { mmio, gsi_base }
    }

    fn read(&self, r: u32) -> u32 {
        self.mmio.write32(IOREGSEL, r);
        self.mmio.read32(IOWIN)
    }

    fn write(&self, r: u32, v: u32) {
        self.mmio.write32(IOREGSEL, r);
        self.mmio.write32(IOWIN, v);
    }

    /// The APIC ID in the ID register (bits 27:24).
    pub fn id(&self) -> u8 {
        ((self.read(REG_ID) >> 24) & 0xf) as u8
    }

    pub fn version(&self) -> u32 {
        self.read(REG_VERSION)
    }

    /// How many pins: the last redirection index + 1, bounded against a garbage register
    /// (an all-ones read from a missing device says 256).
    pub fn pins(&self) -> u32 {
        (((self.version() >> 16) & 0xff) + 1).min(MAX_PINS)
    }

    /// Whether `gsi` is one of this I/O APIC's pins.
    pub fn serves(&self, gsi: u32) -> bool {
        gsi >= self.gsi_base && gsi - self.gsi_base < self.pins()
    }

    /// The raw 64-bit entry of `pin`; `None` past the last pin.
    pub fn read_raw(&self, pin: u32) -> Option<u64> {
        if pin >= self.pins() {
            return None;
        }
        let lo = self.read(REG_REDIRECTION + 2 * pin) as u64;
        let hi = self.read(REG_REDIRECTION + 2 * pin + 1) as u64;
        Some(hi << 32 | lo)
    }

    pub fn entry(&self, pin: u32) -> Option<Redirection> {
        self.read_raw(pin).map(Redirection::decode)
    }

    /// Writes `pin`'s entry; false past the last pin. The entry is masked while it is
    /// half-written: mask first, high dword (destination), then the low dword (vector, mask).
    pub fn set_entry(&self, pin: u32, e: Redirection) -> bool {
        if pin >= self.pins() {
            return false;
        }
        let v = e.encode();
        let lo = REG_REDIRECTION + 2 * pin;
        let cur = self.read(lo);
        self.write(lo, cur | 1 << 16);
        self.write(lo + 1, (v >> 32) as u32);
        self.write(lo, v as u32);
        true
    }

    /// Masks or unmasks `pin`, keeping the rest of its entry.
    pub fn set_masked(&self, pin: u32, masked: bool) -> bool {
        if pin >= self.pins() {
            return false;
        }
        let lo = REG_REDIRECTION + 2 * pin;
        let cur = self.read(lo);
        self.write(
            lo,
            if masked {
                cur | 1 << 16
            } else {
                cur & !(1 << 16)
            },
        );
        true
    }

    /// Masks every pin (boot: nothing fires until it is routed).
    pub fn mask_all(&self) {
        for pin in 0..self.pins() {
            self.set_entry(pin, Redirection::MASKED);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakeMmio;

    fn chip() -> FakeMmio {
        FakeMmio::ioapic(&[(0, 0x0200_0000), (1, 0x0017_0020)])
    }

    #[test]
    fn id_version_and_pins() {
        let m = chip();
        let io = IoApic::new(&m, 0);
        assert_eq!(io.id(), 2);
        assert_eq!(io.version() & 0xff, 0x20);
        assert_eq!(io.pins(), 24);
        assert!(io.serves(23));
        assert!(!io.serves(24));
        assert_eq!(io.read_raw(24), None);
        assert!(!io.set_entry(24, Redirection::MASKED));
    }

    #[test]
    fn garbage_version_is_bounded() {
        let m = FakeMmio::ioapic(&[(1, 0xffff_ffff)]);
        assert_eq!(IoApic::new(&m, 0).pins(), MAX_PINS);
    }

    #[test]
    fn entries_round_trip_and_are_written_masked_first() {
        let m = chip();
        let io = IoApic::new(&m, 0);
        let e = Redirection {
            vector: 0x34,
            delivery: DeliveryMode::Fixed,
            logical: false,
            pending: false,
            active_low: true,
            remote_irr: false,
            level: true,
            masked: false,
            dest: 3,
        };
        assert!(io.set_entry(4, e));
        assert_eq!(io.read_raw(4), Some(0x0300_0000_0000_a034));
        assert_eq!(io.entry(4), Some(e));
        // Writes to IOWIN: mask (old value | mask), high dword, low dword.
        let win: std::vec::Vec<u32> = m
            .writes
            .borrow()
            .iter()
            .filter(|w| w.0 == 0x10)
            .map(|w| w.1)
            .collect();
        assert_eq!(win, [1 << 16, 0x0300_0000, 0xa034]);
        assert!(io.set_masked(4, true));
        assert!(io.entry(4).unwrap().masked);
        assert_eq!(io.entry(4).unwrap().vector, 0x34);
    }

    #[test]
    fn read_only_bits_decode_but_never_encode() {
        let r = Redirection::decode(0x0000_0000_0001_5000 | 0x20);
        assert!(r.pending && r.remote_irr && r.masked);
        assert_eq!(r.encode(), 0x0001_0020);
        assert_eq!(Redirection::decode(0x700).delivery, DeliveryMode::ExtInt);
        assert_eq!(
            Redirection::decode(0x300).delivery,
            DeliveryMode::Reserved(3)
        );
    }

    #[test]
    fn mask_all_masks_every_pin() {
        let m = chip();
        let io = IoApic::new(&m, 0);
        io.mask_all();
        assert!((0..24).all(|p| io.entry(p).unwrap().masked));
    }
}
