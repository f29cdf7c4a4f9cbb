//! The local APIC (Intel SDM Vol. 3A ch. 11) through either of its two interfaces:
//!
//! - xAPIC: 4 KiB of MMIO at the base in IA32_APIC_BASE, registers at 16-byte offsets;
//! - x2APIC: MSRs 0x800 + offset/16, a 32-bit ID, a single 64-bit ICR write per IPI.
//!
//! `Lapic` speaks xAPIC offsets and maps them onto whichever backend is live. Registers that
//! one mode lacks (DFR, APR and the ICR high half in x2APIC, where reading them faults) are
//! never touched in that mode.
use capmon_hal::{Mmio, Msr};
use core::fmt;

/// IA32_APIC_BASE (SDM Vol. 3A §11.4.4).
pub const IA32_APIC_BASE: u32 = 0x1b;
pub const APIC_BASE_BSP: u64 = 1 << 8;
pub const APIC_BASE_EXTD: u64 = 1 << 10;
pub const APIC_BASE_EN: u64 = 1 << 11;
pub const APIC_BASE_ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
/// IA32_TSC_DEADLINE (SDM Vol. 3A §11.5.4.1).
pub const IA32_TSC_DEADLINE: u32 = 0x6e0;
/// The first x2APIC MSR; register at xAPIC offset `o` is MSR 0x800 + o/16.
const X2APIC_MSR_BASE: u32 = 0x800;

/// Register offsets in the xAPIC page (SDM Vol. 3A Table 11-1).
pub mod reg {
    pub const ID: u16 = 0x020;
    pub const VERSION: u16 = 0x030;
    pub const TPR: u16 = 0x080;
    pub const APR: u16 = 0x090;
    pub const PPR: u16 = 0x0a0;
    pub const EOI: u16 = 0x0b0;
    pub const LDR: u16 = 0x0d0;
    pub const DFR: u16 = 0x0e0;
    pub const SVR: u16 = 0x0f0;
    pub const ISR: u16 = 0x100;
    pub const TMR: u16 = 0x180;
    pub const IRR: u16 = 0x200;
    pub const ESR: u16 = 0x280;
    pub const ICR_LOW: u16 = 0x300;
    pub const ICR_HIGH: u16 = 0x310;
    pub const LVT_TIMER: u16 = 0x320;
    pub const LVT_THERMAL: u16 = 0x330;
    pub const LVT_PMC: u16 = 0x340;
    pub const LVT_LINT0: u16 = 0x350;
    pub const LVT_LINT1: u16 = 0x360;
    pub const LVT_ERROR: u16 = 0x370;
    pub const TIMER_INITIAL: u16 = 0x380;
    pub const TIMER_CURRENT: u16 = 0x390;
    pub const TIMER_DIVIDE: u16 = 0x3e0;
}

/// LVT bits (SDM Vol. 3A Figure 11-8).
pub mod lvt {
    pub const MASKED: u32 = 1 << 16;
    pub const TIMER_ONE_SHOT: u32 = 0b00 << 17;
    pub const TIMER_PERIODIC: u32 = 0b01 << 17;
    pub const TIMER_TSC_DEADLINE: u32 = 0b10 << 17;
    pub const TIMER_MODE_MASK: u32 = 0b11 << 17;
    pub const DELIVERY_NMI: u32 = 0b100 << 8;
    pub const DELIVERY_EXTINT: u32 = 0b111 << 8;
    pub const LEVEL: u32 = 1 << 15;
    pub const ACTIVE_LOW: u32 = 1 << 13;
}

/// SVR bit 8: the APIC is software-enabled.
pub const SVR_ENABLE: u32 = 1 << 8;

/// Which interface the local APIC is used through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    XApic,
    X2Apic,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::XApic => "xAPIC",
            Mode::X2Apic => "x2APIC",
        }
    }
}

/// The `apic=` kernel command-line request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModeRequest {
    Auto,
    XApic,
    X2Apic,
}

impl ModeRequest {
    pub fn parse(s: &str) -> Option<ModeRequest> {
        match s {
            "auto" => Some(ModeRequest::Auto),
            "xapic" => Some(ModeRequest::XApic),
            "x2apic" => Some(ModeRequest::X2Apic),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ModeRequest::Auto => "auto",
            ModeRequest::XApic => "xapic",
            ModeRequest::X2Apic => "x2apic",
        }
    }
}

/// Picks the mode: x2APIC when the CPU has it unless xAPIC was asked for. The second value
/// explains a request that could not be honoured (to be logged).
///
/// `firmware_x2apic` (the firmware left x2APIC on) does not force x2APIC: leaving x2APIC needs
/// the APIC disabled in between (SDM Vol. 3A §11.12.5), which `enter_mode` does.
pub fn choose_mode(
    cpu_has_x2apic: bool,
    firmware_x2apic: bool,
    req: ModeRequest,
) -> (Mode, Option<&'static str>) {
    match req {
        ModeRequest::Auto if cpu_has_x2apic || firmware_x2apic => (Mode::X2Apic, None),
        ModeRequest::Auto => (Mode::XApic, None),
        ModeRequest::X2Apic if cpu_has_x2apic || firmware_x2apic => (Mode::X2Apic, None),
        ModeRequest::X2Apic => (
            Mode::XApic,
            Some("apic=x2apic: the CPU has no x2APIC (CPUID.1:ECX bit 21); using xAPIC"),
        ),
        ModeRequest::XApic => (Mode::XApic, None),
    }
}

/// The IA32_APIC_BASE value that puts the APIC in `mode`, and whether the APIC must be
/// disabled first (x2APIC -> xAPIC is only legal through the disabled state).
pub fn apic_base_for(current: u64, mode: Mode) -> (u64, bool) {
    let keep = current & (APIC_BASE_ADDR_MASK | APIC_BASE_BSP);
    match mode {
        Mode::X2Apic => (keep | APIC_BASE_EN | APIC_BASE_EXTD, false),
        Mode::XApic => (keep | APIC_BASE_EN, current & APIC_BASE_EXTD != 0),
    }
}

/// Switches the APIC of the calling CPU to `mode` through IA32_APIC_BASE; returns the xAPIC
/// MMIO base (meaningful in xAPIC mode).
pub fn enter_mode(msr: &dyn Msr, mode: Mode) -> u64 {
    let cur = msr.read(IA32_APIC_BASE);
    let (want, disable_first) = apic_base_for(cur, mode);
    if disable_first {
        msr.write(IA32_APIC_BASE, cur & !(APIC_BASE_EN | APIC_BASE_EXTD));
    }
    if mode == Mode::X2Apic && cur & APIC_BASE_EN == 0 {
        // xAPIC enabled before x2APIC (the disabled -> x2APIC transition is invalid).
        msr.write(IA32_APIC_BASE, want & !APIC_BASE_EXTD);
    }
    if cur != want || disable_first {
        msr.write(IA32_APIC_BASE, want);
    }
    want & APIC_BASE_ADDR_MASK
}

/// Timer divide configuration encodings (SDM Vol. 3A Figure 11-10): (divisor, DCR value).
const DIVIDES: [(u32, u32); 8] = [
    (1, 0b1011),
    (2, 0b0000),
    (4, 0b0001),
    (8, 0b0010),
    (16, 0b0011),
    (32, 0b1000),
    (64, 0b1001),
    (128, 0b1010),
];

/// The DCR value for `divisor` (a power of two up to 128).
pub fn divide_config(divisor: u32) -> Option<u32> {
    DIVIDES.iter().find(|d| d.0 == divisor).map(|d| d.1)
}

/// The divisor a DCR value selects.
pub fn divisor_of(dcr: u32) -> u32 {
    let v = dcr & 0b1011;
    DIVIDES.iter().find(|d| d.1 == v).map(|d| d.0).unwrap_or(1)
}

/// ICR delivery modes (SDM Vol. 3A §11.6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Fixed(u8),
    Nmi,
    Init,
    /// Start-up with the page number of the real-mode entry.
    Startup(u8),
    InitDeassert,
}

/// ICR destination shorthands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dest {
    /// One CPU by APIC ID.
    Id(u32),
    SelfOnly,
    All,
    AllButSelf,
}

/// The ICR low word for an IPI (without the destination, which lives in the high half).
pub fn icr_low(d: Delivery, dest: Dest) -> u32 {
    const LEVEL_ASSERT: u32 = 1 << 14;
    const TRIGGER_LEVEL: u32 = 1 << 15;
    let (mode, vector, level) = match d {
        Delivery::Fixed(v) => (0b000, v, LEVEL_ASSERT),
        Delivery::Nmi => (0b100, 0, LEVEL_ASSERT),
        Delivery::Init => (0b101, 0, LEVEL_ASSERT),
        Delivery::InitDeassert => (0b101, 0, TRIGGER_LEVEL),
        Delivery::Startup(page) => (0b110, page, LEVEL_ASSERT),
    };
    let shorthand = match dest {
        Dest::Id(_) => 0b00,
        Dest::SelfOnly => 0b01,
        Dest::All => 0b10,
        Dest::AllButSelf => 0b11,
    };
    vector as u32 | mode << 8 | level | shorthand << 18
}

/// ICR bit 12 (xAPIC only): the previous IPI has not been accepted yet.
const ICR_PENDING: u32 = 1 << 12;

/// Every register the `apic` command shows, read in one go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LapicState {
    pub id: u32,
    pub version: u32,
    pub tpr: u32,
    pub ppr: u32,
    pub ldr: u32,
    /// xAPIC only.
    pub dfr: Option<u32>,
    pub svr: u32,
    pub esr: u32,
    pub lvt_timer: u32,
    pub lvt_thermal: u32,
    pub lvt_pmc: u32,
    pub lvt_lint0: u32,
    pub lvt_lint1: u32,
    pub lvt_error: u32,
    pub timer_initial: u32,
    pub timer_current: u32,
    pub timer_divide: u32,
    pub isr: [u32; 8],
    pub irr: [u32; 8],
    pub tmr: [u32; 8],
}

impl LapicState {
    /// The highest LVT index this APIC implements (VERSION bits 23:16).
    pub fn max_lvt(&self) -> u32 {
        (self.version >> 16) & 0xff
    }

    /// The vectors whose bit is set in a 256-bit ISR/IRR/TMR image.
    pub fn vectors(bits: &[u32; 8]) -> impl Iterator<Item = u8> + '_ {
        (0..256u32)
            .filter(move |v| bits[(v / 32) as usize] & (1 << (v % 32)) != 0)
            .map(|v| v as u8)
    }
}

/// The local APIC of the calling CPU, through one backend.
#[derive(Clone, Copy)]
pub enum Lapic<'a> {
    XApic(&'a dyn Mmio),
    X2Apic(&'a dyn Msr),
}

impl fmt::Debug for Lapic<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.mode().name())
    }
}

impl<'a> Lapic<'a> {
    pub fn mode(&self) -> Mode {
        match self {
            Lapic::XApic(_) => Mode::XApic,
            Lapic::X2Apic(_) => Mode::X2Apic,
        }
    }

    /// Reads the 32-bit register at xAPIC offset `off`.
    pub fn read(&self, off: u16) -> u32 {
        match self {
            Lapic::XApic(m) => m.read32(off as usize),
            Lapic::X2Apic(r) => r.read(X2APIC_MSR_BASE + (off as u32 >> 4)) as u32,
        }
    }

    /// Writes the 32-bit register at xAPIC offset `off`.
    pub fn write(&self, off: u16, v: u32) {
        match self {
            Lapic::XApic(m) => m.write32(off as usize, v),
            Lapic::X2Apic(r) => r.write(X2APIC_MSR_BASE + (off as u32 >> 4), v as u64),
        }
    }

    /// The APIC ID: 8 bits in xAPIC (ID bits 31:24), 32 in x2APIC.
    pub fn id(&self) -> u32 {
        match self {
            Lapic::XApic(_) => self.read(reg::ID) >> 24,
            Lapic::X2Apic(_) => self.read(reg::ID),
        }
    }

    /// Software-enables the APIC with `spurious` as the spurious-interrupt vector.
    pub fn enable(&self, spurious: u8) {
        let svr = self.read(reg::SVR);
        self.write(reg::SVR, (svr & !0xff) | SVR_ENABLE | spurious as u32);
    }

    pub fn eoi(&self) {
        self.write(reg::EOI, 0);
    }

    pub fn set_tpr(&self, v: u8) {
        self.write(reg::TPR, v as u32);
    }

    /// Latches and reads the error status (a write before the read updates it, §11.5.3).
    pub fn esr(&self) -> u32 {
        self.write(reg::ESR, 0);
        self.read(reg::ESR)
    }

    /// Masks every LVT entry: the state the timer and LINT pins start from.
    pub fn mask_all_lvts(&self) {
        for r in [
            reg::LVT_TIMER,
            reg::LVT_THERMAL,
            reg::LVT_PMC,
            reg::LVT_LINT0,
            reg::LVT_LINT1,
            reg::LVT_ERROR,
        ] {
            self.write(r, lvt::MASKED);
        }
    }

    /// Stops the timer and programs it: `mode` is one of `lvt::TIMER_*`. In TSC-deadline mode
    /// the count registers are ignored and IA32_TSC_DEADLINE arms it.
    pub fn set_timer(&self, vector: u8, mode: u32, divide: u32, initial: u32) {
        self.write(reg::TIMER_INITIAL, 0);
        self.write(reg::TIMER_DIVIDE, divide_config(divide).unwrap_or(0b0011));
        self.write(
            reg::LVT_TIMER,
            vector as u32 | (mode & lvt::TIMER_MODE_MASK),
        );
        if mode & lvt::TIMER_MODE_MASK != lvt::TIMER_TSC_DEADLINE {
            self.write(reg::TIMER_INITIAL, initial);
        }
    }

    /// Sends an IPI. In xAPIC mode waits (bounded by `spins` polls) for the previous one to be
    /// accepted; false if it never was.
    pub fn send_ipi(&self, d: Delivery, dest: Dest, spins: u32) -> bool {
        let low = icr_low(d, dest);
        let id = match dest {
            Dest::Id(id) => id,
            _ => 0,
        };
        match self {
            Lapic::XApic(_) => {
                if !self.wait_icr_idle(spins) {
                    return false;
                }
                self.write(reg::ICR_HIGH, (id & 0xff) << 24);
                self.write(reg::ICR_LOW, low);
                self.wait_icr_idle(spins)
            }
            Lapic::X2Apic(r) => {
                r.write(
                    X2APIC_MSR_BASE + (reg::ICR_LOW as u32 >> 4),
                    (id as u64) << 32 | low as u64,
                );
                true
            }
        }
    }

    fn wait_icr_idle(&self, spins: u32) -> bool {
        for _ in 0..spins.max(1) {
            if self.read(reg::ICR_LOW) & ICR_PENDING == 0 {
                return true;
            }
            core::hint::spin_loop();
        }
        false
    }

    /// Every register, for display. ESR is latched first (which clears it).
    pub fn state(&self) -> LapicState {
        let bank = |base: u16| {
            let mut a = [0u32; 8];
            for (i, w) in a.iter_mut().enumerate() {
                *w = self.read(base + (i as u16) * 0x10);
            }
            a
        };
        LapicState {
            id: self.id(),
            version: self.read(reg::VERSION),
            tpr: self.read(reg::TPR),
            ppr: self.read(reg::PPR),
            ldr: self.read(reg::LDR),
            dfr: match self.mode() {
                Mode::XApic => Some(self.read(reg::DFR)),
                Mode::X2Apic => None,
            },
            svr: self.read(reg::SVR),
            esr: self.esr(),
            lvt_timer: self.read(reg::LVT_TIMER),
            lvt_thermal: self.read(reg::LVT_THERMAL),
            lvt_pmc: self.read(reg::LVT_PMC),
            lvt_lint0: self.read(reg::LVT_LINT0),
            lvt_lint1: self.read(reg::LVT_LINT1),
            lvt_error: self.read(reg::LVT_ERROR),
            timer_initial: self.read(reg::TIMER_INITIAL),
            timer_current: self.read(reg::TIMER_CURRENT),
            timer_divide: self.read(reg::TIMER_DIVIDE),
            isr: bank(reg::ISR),
            irr: bank(reg::IRR),
            tmr: bank(reg::TMR),
        }
    }
}

/// Decodes an LVT entry for display: "vector 0xec periodic", "masked", "NMI", ...
pub fn describe_lvt(v: u32, timer: bool) -> alloc::string::String {
    use alloc::string::String;
    use core::fmt::Write;
    let mut s = String::new();
    let mode = (v >> 8) & 7;
    let _ = match mode {
        0b000 => write!(s, "fixed vector {:#04x}", v & 0xff),
        0b010 => write!(s, "SMI"),
        0b100 => write!(s, "NMI"),
        0b101 => write!(s, "INIT"),
        0b111 => write!(s, "ExtINT"),
        _ => write!(s, "delivery mode {}", mode),
    };
    if timer {
        s.push_str(match v & lvt::TIMER_MODE_MASK {
            lvt::TIMER_ONE_SHOT => " one-shot",
            lvt::TIMER_PERIODIC => " periodic",
            lvt::TIMER_TSC_DEADLINE => " TSC-deadline",
            _ => " reserved-mode",
        });
    } else {
        s.push_str(if v & lvt::LEVEL != 0 {
            " level"
        } else {
            " edge"
        });
        s.push_str(if v & lvt::ACTIVE_LOW != 0 {
            " active-low"
        } else {
            ""
        });
    }
    if v & lvt::MASKED != 0 {
        s.push_str(" masked");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{FakeMmio, FakeMsr};

    #[test]
    fn x2apic_maps_offsets_onto_msrs() {
        let msr = FakeMsr::default();
        msr.regs.borrow_mut().insert(0x802, 0x1_2345);
        let l = Lapic::X2Apic(&msr);
        assert_eq!(l.id(), 0x1_2345, "x2APIC IDs are 32 bits, unshifted");
        l.eoi();
        l.enable(0xff);
        l.set_timer(0xec, lvt::TIMER_PERIODIC, 16, 1000);
        let w = msr.writes.borrow().clone();
        assert_eq!(w[0], (0x80b, 0));
        assert_eq!(w[1], (0x80f, 0x1ff));
        assert_eq!(
            &w[2..],
            &[(0x838, 0), (0x83e, 0b0011), (0x832, 0x200ec), (0x838, 1000)]
        );
    }

    #[test]
    fn xapic_id_is_the_top_byte_and_ipi_writes_high_then_low() {
        let m = FakeMmio::default();
        m.regs.borrow_mut().insert(0x20, 0x0300_0000);
        let l = Lapic::XApic(&m);
        assert_eq!(l.id(), 3);
        assert!(l.send_ipi(Delivery::Fixed(0xe0), Dest::Id(5), 10));
        let w = m.writes.borrow().clone();
        assert_eq!(w, [(0x310, 5 << 24), (0x300, 0x40e0)]);
    }

    #[test]
    fn xapic_ipi_gives_up_when_never_accepted() {
        let m = FakeMmio::default();
        m.regs.borrow_mut().insert(0x300, ICR_PENDING);
        let l = Lapic::XApic(&m);
        assert!(!l.send_ipi(Delivery::Nmi, Dest::AllButSelf, 100));
        assert!(
            m.writes.borrow().is_empty(),
            "nothing sent while the ICR is busy"
        );
    }

    #[test]
    fn x2apic_ipi_is_one_64_bit_write() {
        let msr = FakeMsr::default();
        let l = Lapic::X2Apic(&msr);
        assert!(l.send_ipi(Delivery::Fixed(0xe1), Dest::Id(300), 1));
        assert!(l.send_ipi(Delivery::Startup(0x08), Dest::Id(7), 1));
        assert!(l.send_ipi(Delivery::Nmi, Dest::AllButSelf, 1));
        let w = msr.writes.borrow().clone();
        assert_eq!(w[0], (0x830, 300 << 32 | 0x40e1));
        assert_eq!(w[1], (0x830, 7 << 32 | 0x4608));
        assert_eq!(w[2], (0x830, 0xc4400));
    }

    #[test]
    fn init_deassert_is_level_triggered_without_assert() {
        assert_eq!(icr_low(Delivery::InitDeassert, Dest::Id(1)), 0x8500);
        assert_eq!(icr_low(Delivery::Init, Dest::Id(1)), 0x4500);
    }

    #[test]
    fn divide_encodings_round_trip() {
        for d in [1, 2, 4, 8, 16, 32, 64, 128] {
            assert_eq!(divisor_of(divide_config(d).unwrap()), d);
        }
        assert_eq!(divide_config(3), None);
        assert_eq!(divide_config(16), Some(3));
        assert_eq!(divide_config(1), Some(0xb));
    }

    #[test]
    fn state_skips_registers_x2apic_lacks() {
        let msr = FakeMsr::default();
        let s = Lapic::X2Apic(&msr).state();
        assert_eq!(s.dfr, None);
        let reads_dfr = msr.writes.borrow().iter().any(|w| w.0 == 0x80e);
        assert!(!reads_dfr);
        let m = FakeMmio::default();
        m.regs.borrow_mut().insert(0xe0, 0xffff_ffff);
        m.regs.borrow_mut().insert(0x200 + 0x70, 1 << 31);
        let s = Lapic::XApic(&m).state();
        assert_eq!(s.dfr, Some(0xffff_ffff));
        assert_eq!(
            LapicState::vectors(&s.irr).collect::<std::vec::Vec<_>>(),
            [255]
        );
    }

    #[test]
    fn mode_choice_honours_requests_it_can() {
        use ModeRequest::*;
        assert_eq!(choose_mode(true, false, Auto), (Mode::X2Apic, None));
        assert_eq!(choose_mode(false, false, Auto), (Mode::XApic, None));
        assert_eq!(choose_mode(true, true, XApic), (Mode::XApic, None));
        let (m, why) = choose_mode(false, false, X2Apic);
        assert_eq!(m, Mode::XApic);
        assert!(why.unwrap().contains("no x2APIC"));
        assert_eq!(ModeRequest::parse("x2apic"), Some(X2Apic));
        assert_eq!(ModeRequest::parse("X2"), None);
    }

    #[test]
    fn leaving_x2apic_goes_through_disabled() {
        let msr = FakeMsr::default();
        msr.regs.borrow_mut().insert(
            IA32_APIC_BASE,
            0xfee0_0000 | APIC_BASE_BSP | APIC_BASE_EN | APIC_BASE_EXTD,
        );
        let base = enter_mode(&msr, Mode::XApic);
        assert_eq!(base, 0xfee0_0000);
        let w = msr.writes.borrow().clone();
        assert_eq!(
            w,
            [
                (IA32_APIC_BASE, 0xfee0_0000 | APIC_BASE_BSP),
                (IA32_APIC_BASE, 0xfee0_0000 | APIC_BASE_BSP | APIC_BASE_EN)
            ]
        );
    }

    #[test]
    fn entering_x2apic_from_disabled_enables_xapic_first() {
        let msr = FakeMsr::default();
        msr.regs.borrow_mut().insert(IA32_APIC_BASE, 0xfee0_0000);
        enter_mode(&msr, Mode::X2Apic);
        let w = msr.writes.borrow().clone();
        assert_eq!(
            w,
            [
                (IA32_APIC_BASE, 0xfee0_0000 | APIC_BASE_EN),
                (IA32_APIC_BASE, 0xfee0_0000 | APIC_BASE_EN | APIC_BASE_EXTD)
            ]
        );
        // Already there: nothing written.
        msr.writes.borrow_mut().clear();
        enter_mode(&msr, Mode::X2Apic);
        assert!(msr.writes.borrow().is_empty());
    }

    #[test]
    fn lvt_descriptions() {
        assert_eq!(describe_lvt(0x200ec, true), "fixed vector 0xec periodic");
        assert_eq!(describe_lvt(0x10700, false), "ExtINT edge masked");
        assert_eq!(describe_lvt(0x400, false), "NMI edge");
        assert_eq!(
            describe_lvt(0x400ec, true),
            "fixed vector 0xec TSC-deadline"
        );
    }
}
