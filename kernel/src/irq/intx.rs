//! PCI INTx: where a function's interrupt pin lands, from the ACPI `_PRT` (evaluated once, on
//! first use, inside the fault guard: the AML interpreter may panic on firmware it does not
//! understand), with the bridge swizzle (PCI-to-PCI Bridge 1.2 §9.1) for buses whose bridge
//! has no `_PRT` of its own. Each GSI gets one vector, shared by every function on the line.
//!
//! A level-triggered line stays asserted until the driver acknowledges the device (virtio:
//! reads ISR), so the handler masks its I/O APIC pin and `end_intx` unmasks it: the line
//! cannot fire again and again before the driver runs.
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use capmon_acpi::Acpi;
use capmon_acpi::{PciRoute, PciRouting, Pin};
use capmon_hal::irq::{IrqOwner, IrqVector};
use capmon_pci::{Bdf, Topology};
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use spin::{Mutex, Once};

use super::{add_route, event, ioapic, msi_message, Route};

static ACPI: Once<&'static Acpi> = Once::new();
/// The `_PRT` routes, or why there are none; evaluated on first use.
static ROUTING: Mutex<Option<Result<PciRouting, String>>> = Mutex::new(None);
/// (segment, bus) -> the bridge that leads to it, from enumeration.
static PARENTS: Mutex<Vec<((u16, u8), Bdf)>> = Mutex::new(Vec::new());

/// One INTx line in use.
struct Line {
    gsi: u32,
    vector: u8,
    users: u32,
}
static LINES: Mutex<Vec<Line>> = Mutex::new(Vec::new());
/// Per vector: 1 + the GSI of the level-triggered line behind it, 0 for none (read by the
/// interrupt handler, so an atomic rather than a lock).
static LEVEL_GSI: [AtomicU32; 256] = [const { AtomicU32::new(0) }; 256];

pub fn set_acpi(a: &'static Acpi) {
    ACPI.call_once(|| a);
}

/// Records which bridge leads to each bus, for the swizzle.
pub fn set_topology(t: &Topology) {
    let mut p = PARENTS.lock();
    p.clear();
    for f in &t.functions {
        if let Some(parent) = f.parent {
            let b = f.bdf();
            if !p.iter().any(|e| e.0 == (b.segment, b.bus)) {
                p.push(((b.segment, b.bus), parent));
            }
        }
    }
}

/// Runs `f` on the routing table, evaluating `_PRT` first if nobody has yet.
///
/// The lock is not held while AML runs: a fault in the interpreter abandons the command with a
/// jump past this frame, which would leave a held lock locked forever. The table says what
/// happened instead, so the next caller gets the reason rather than a hang.
pub fn with_routing<R>(f: impl FnOnce(&Result<PciRouting, String>) -> R) -> R {
    let first = {
        let mut r = ROUTING.lock();
        let first = r.is_none();
        if first {
            *r = Some(Err(String::from(
                "_PRT: the AML interpreter faulted while evaluating it",
            )));
        }
        first
    };
    if first {
        let v = evaluate();
        *ROUTING.lock() = Some(v);
    }
    let r = ROUTING.lock();
    match r.as_ref() {
        Some(x) => f(x),
        None => f(&Err(String::from("not evaluated"))),
    }
}

fn evaluate() -> Result<PciRouting, String> {
    let acpi = ACPI.get().ok_or_else(|| String::from("no ACPI tables"))?;
    let hw = crate::machine::acpi_hw();
    // Inside a command the guard is already taken (it is not reentrant): run directly, the
    // command's guard catches a panic. At boot, take it here.
    let res = if crate::arch::traps::in_guarded() {
        Some(acpi.pci_routes(&hw))
    } else {
        crate::arch::traps::guarded(|| acpi.pci_routes(&hw))
    };
    match res {
        Some(Ok(r)) => Ok(r),
        Some(Err(e)) => Err(format!("_PRT: {}", e)),
        None => Err(String::from("_PRT: the AML interpreter faulted")),
    }
}

/// Where `bdf`'s `pin` (1..=4 = INTA..INTD) lands: the `_PRT` entry that routes it, and the
/// swizzle steps taken to reach a bus that has one.
pub fn route_of(bdf: Bdf, pin: u8) -> Result<(PciRoute, Vec<String>), String> {
    let mut p =
        Pin::from_config(pin).ok_or_else(|| format!("interrupt pin {} is not INTA..INTD", pin))?;
    let (seg, mut bus, mut dev) = (bdf.segment, bdf.bus, bdf.device());
    let mut steps = Vec::new();
    with_routing(|r| {
        let routing = r.as_ref().map_err(|e| e.clone())?;
        for _ in 0..256 {
            if let Some(route) = routing.find(seg, bus, dev, p) {
                return Ok((route.clone(), steps));
            }
            let unusable = routing
                .unrouted
                .iter()
                .find(|u| (u.segment, u.bus, u.device, u.pin) == (seg, bus, dev, p));
            if let Some(u) = unusable {
                return Err(format!(
                    "the _PRT entry for {:04x}:{:02x}:{:02x} INT{}{} is unusable: {}",
                    seg,
                    bus,
                    dev,
                    pin_name(p),
                    u.source
                        .as_ref()
                        .map(|l| format!(" (link {})", l))
                        .unwrap_or_default(),
                    u.reason
                ));
            }
            let parent = PARENTS
                .lock()
                .iter()
                .find(|e| e.0 == (seg, bus))
                .map(|e| e.1);
            let Some(bridge) = parent else {
                return Err(format!(
                    "no _PRT entry for {:04x}:{:02x}:{:02x} INT{}",
                    seg,
                    bus,
                    dev,
                    pin_name(p)
                ));
            };
            // The swizzle: device D's pin P appears on the bridge's pin (P + D) mod 4.
            let idx = (pin_index(p) + dev as u32) % 4;
            p = Pin::from_config(idx as u8 + 1).unwrap_or(Pin::IntA);
            steps.push(format!("via bridge {} INT{}", bridge, pin_name(p)));
            bus = bridge.bus;
            dev = bridge.device();
        }
        Err(String::from("bridge chain too deep"))
    })
}

fn pin_index(p: Pin) -> u32 {
    match p {
        Pin::IntA => 0,
        Pin::IntB => 1,
        Pin::IntC => 2,
        Pin::IntD => 3,
    }
}

pub fn pin_name(p: Pin) -> char {
    (b'A' + pin_index(p) as u8) as char
}

/// A vector for `owner`'s INTx `pin`, its line routed and unmasked; shared per GSI.
pub fn alloc(owner: IrqOwner, pin: u8, label: &str) -> Option<IrqVector> {
    if !super::ready() {
        return None;
    }
    let bdf = Bdf::from_u32(owner.bdf);
    let (route, _) = match route_of(bdf, pin) {
        Ok(r) => r,
        Err(e) => {
            log::info!("{} INTx: {}", super::bdf_name(owner.bdf), e);
            return None;
        }
    };
    let level = !matches!(route.trigger, capmon_acpi::madt::Trigger::Edge);
    let active_low = matches!(route.polarity, capmon_acpi::madt::Polarity::ActiveLow);
    let mut lines = LINES.lock();
    let vector = match lines.iter_mut().find(|l| l.gsi == route.gsi) {
        Some(l) => {
            l.users += 1;
            l.vector
        }
        None => {
            let v = super::alloc_vector()?;
            if let Err(e) = ioapic::route_gsi(route.gsi, v, level, active_low) {
                log::warn!("INTx GSI {}: {}", route.gsi, e);
                super::free_vector(v);
                return None;
            }
            if level {
                LEVEL_GSI[v as usize].store(route.gsi + 1, Ordering::Release);
            }
            lines.push(Line {
                gsi: route.gsi,
                vector: v,
                users: 1,
            });
            v
        }
    };
    drop(lines);
    add_route(Route {
        vector,
        source: format!(
            "{} {} INT{}",
            super::bdf_name(owner.bdf),
            label,
            pin_name(route.pin)
        ),
        mechanism: format!("INTx (GSI {})", route.gsi),
        apic_id: Some(super::lapic::bsp_id()),
    });
    Some(IrqVector {
        vector,
        apic_id: super::lapic::bsp_id(),
        message: msi_message(super::lapic::bsp_id(), vector),
        event: event(vector),
    })
}

/// The vector of the INTx line on `gsi`, if a driver uses it.
pub fn vector_of(gsi: u32) -> Option<u8> {
    LINES.lock().iter().find(|l| l.gsi == gsi).map(|l| l.vector)
}

/// Gives back one user of an INTx vector; the last one masks the line and frees the vector.
pub fn free(v: &IrqVector) -> bool {
    let mut lines = LINES.lock();
    let Some(i) = lines.iter().position(|l| l.vector == v.vector) else {
        return false;
    };
    lines[i].users -= 1;
    if lines[i].users == 0 {
        let l = lines.remove(i);
        ioapic::set_gsi_masked(l.gsi, true);
        LEVEL_GSI[l.vector as usize].store(0, Ordering::Release);
        super::free_vector(l.vector);
    }
    true
}

/// GSIs whose line an interrupt masked and no driver has unmasked yet (a bit per GSI).
static MASKED: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];

fn masked_bit(gsi: u32) -> Option<(&'static AtomicU64, u64)> {
    MASKED
        .get(gsi as usize / 64)
        .map(|w| (w, 1u64 << (gsi % 64)))
}

/// From the interrupt handler: a level-triggered line masks itself until `end`.
pub fn on_interrupt(vector: u8) {
    let g = LEVEL_GSI[vector as usize].load(Ordering::Acquire);
    if g != 0 {
        ioapic::set_gsi_masked_irq(g - 1, true);
        if let Some((w, bit)) = masked_bit(g - 1) {
            w.fetch_or(bit, Ordering::AcqRel);
        }
    }
}

/// The driver deasserted the line: unmask it (it fires again at once if another device on
/// the line still asserts it).
pub fn end(v: &IrqVector) {
    let g = LEVEL_GSI[v.vector as usize].load(Ordering::Acquire);
    if g != 0 {
        if let Some((w, bit)) = masked_bit(g - 1) {
            w.fetch_and(!bit, Ordering::AcqRel);
        }
        ioapic::set_gsi_masked(g - 1, false);
    }
}

/// From the boot CPU's tick: unmasks every line an interrupt masked since the last tick.
/// An interrupt that lands after its driver's last look (the waiter already saw the request
/// done) would otherwise keep the line masked until that driver's next request, and another
/// device sharing the line would wait for it. If the line is still asserted it fires and masks
/// itself again: at most one interrupt a tick per stuck line.
pub fn on_tick() {
    for (i, w) in MASKED.iter().enumerate() {
        let mut bits = w.swap(0, Ordering::AcqRel);
        while bits != 0 {
            let b = bits.trailing_zeros();
            bits &= bits - 1;
            ioapic::set_gsi_masked_irq(i as u32 * 64 + b, false);
        }
    }
}
