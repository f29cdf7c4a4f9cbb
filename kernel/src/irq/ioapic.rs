//! The I/O APICs the MADT lists: mapped, every pin masked at boot, and ISA lines (through the
//! MADT's source overrides) or PCI INTx GSIs routed to the boot CPU on request.
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use capmon_acpi::Madt;
use capmon_apic::ioapic::{DeliveryMode, IoApic, Redirection};
use capmon_apic::isa::{isa_route, IsaRoute};
use capmon_hal::RawMmio;
use spin::Mutex;

use super::{add_route, Route, VEC_ISA_BASE};

pub struct Chip {
    pub id: u8,
    pub phys: u64,
    pub gsi_base: u32,
    window: RawMmio,
}

impl Chip {
    pub fn regs(&self) -> IoApic<'_> {
        IoApic::new(&self.window, self.gsi_base)
    }
}

/// Every I/O APIC, behind one lock (IOREGSEL/IOWIN is a two-step access).
static CHIPS: Mutex<Vec<Chip>> = Mutex::new(Vec::new());
/// The MADT's overrides, for ISA routing after boot.
static OVERRIDES: Mutex<Vec<capmon_acpi::madt::InterruptOverride>> = Mutex::new(Vec::new());

pub fn init(m: &Madt) {
    let mut chips = CHIPS.lock();
    for io in &m.io_apics {
        let Some(p) = crate::mem::paging::map_phys(io.address as u64, 0x20, true) else {
            log::error!("I/O APIC {}: cannot map {:#x}", io.id, io.address);
            continue;
        };
        // SAFETY: map_phys mapped the I/O APIC's register window, uncached, for good.
        let window = unsafe { RawMmio::new(p, 0x20) };
        let chip = Chip {
            id: io.id,
            phys: io.address as u64,
            gsi_base: io.gsi_base,
            window,
        };
        let r = chip.regs();
        r.mask_all();
        log::info!(
            "I/O APIC {} at {:#x}: GSI {}-{}, version {:#x}",
            io.id,
            io.address,
            io.gsi_base,
            io.gsi_base + r.pins() - 1,
            r.version() & 0xff
        );
        chips.push(chip);
    }
    *OVERRIDES.lock() = m.overrides.clone();
}

/// Runs `f` on the I/O APICs. Interrupts stay off meanwhile: an INTx handler masks its pin
/// through the same lock, and must not find it held by the code it interrupted.
pub fn with_chips<R>(f: impl FnOnce(&[Chip]) -> R) -> R {
    x86_64::instructions::interrupts::without_interrupts(|| f(&CHIPS.lock()))
}

fn mask_gsi(chips: &[Chip], gsi: u32, masked: bool) {
    if let Some(c) = chips.iter().find(|c| c.regs().serves(gsi)) {
        c.regs().set_masked(gsi - c.gsi_base, masked);
    }
}

/// Masks or unmasks the pin serving `gsi`.
pub fn set_gsi_masked(gsi: u32, masked: bool) {
    with_chips(|c| mask_gsi(c, gsi, masked));
}

/// The same from an interrupt handler (interrupts already off).
pub fn set_gsi_masked_irq(gsi: u32, masked: bool) {
    mask_gsi(&CHIPS.lock(), gsi, masked);
}

/// Routes ISA `irq` to vector 0x30 + irq on the boot CPU, unmasked; the route it took.
pub fn route_isa(irq: u8, label: &str) -> Result<IsaRoute, String> {
    if irq >= 16 {
        return Err(format!("ISA IRQ {} does not exist", irq));
    }
    let r = isa_route(irq, &OVERRIDES.lock());
    let vector = VEC_ISA_BASE + irq;
    let pin = route_gsi(r.gsi, vector, r.level, r.active_low)?;
    add_route(Route {
        vector,
        source: format!("{} (ISA IRQ {}, GSI {})", label, irq, r.gsi),
        mechanism: pin,
        apic_id: Some(super::lapic::bsp_id()),
    });
    Ok(r)
}

/// Points `gsi` at `vector` on the boot CPU and unmasks it; says which pin it used.
pub fn route_gsi(gsi: u32, vector: u8, level: bool, active_low: bool) -> Result<String, String> {
    let dest = super::lapic::bsp_id();
    if dest > 0xff {
        return Err(format!(
            "the boot CPU's APIC ID {:#x} does not fit an I/O APIC destination",
            dest
        ));
    }
    with_chips(|chips| {
        let chip = chips
            .iter()
            .find(|c| c.regs().serves(gsi))
            .ok_or_else(|| format!("no I/O APIC serves GSI {}", gsi))?;
        let pin = gsi - chip.gsi_base;
        chip.regs().set_entry(
            pin,
            Redirection {
                vector,
                delivery: DeliveryMode::Fixed,
                logical: false,
                pending: false,
                active_low,
                remote_irr: false,
                level,
                masked: false,
                dest: dest as u8,
            },
        );
        Ok(format!("I/O APIC {} pin {}", chip.id, pin))
    })
}
