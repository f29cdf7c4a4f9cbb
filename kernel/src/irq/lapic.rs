//! The local APIC of the boot CPU: mode (xAPIC or x2APIC) from CPUID, the firmware's state and
//! `apic=` on the command line; LVTs, the error and spurious vectors; the timer calibrated
//! against the HPET (or the TSC, itself calibrated on the PIT) and run as a 100 Hz tick, in
//! TSC-deadline mode where the CPU has it and periodic mode otherwise.
use alloc::format;
use alloc::string::String;
use capmon_apic::lapic::{self as regs, lvt, Lapic, LapicState, Mode, ModeRequest};
use capmon_hal::{Mmio, Msr, RawMmio};
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use spin::Once;

use super::{add_route, Route, VEC_ERROR, VEC_SPURIOUS, VEC_TIMER};
use crate::arch::msr::KernelMsr;

/// The tick rate: bounds every halt (timeouts are checked at least this often).
pub const TICK_HZ: u64 = 100;

static X2APIC: AtomicBool = AtomicBool::new(false);
static XAPIC_WINDOW: Once<RawMmio> = Once::new();
static XAPIC_PHYS: AtomicU64 = AtomicU64::new(0);
static BSP_ID: AtomicU32 = AtomicU32::new(0);
static MSR: KernelMsr = KernelMsr;

/// Timer state, written at boot; each CPU's tick count and next deadline are in its PerCpu.
/// 0 none, 1 periodic, 2 TSC-deadline.
static TIMER_MODE: AtomicU8 = AtomicU8::new(0);
/// LAPIC timer input clock (before the divider), Hz.
static TIMER_HZ: AtomicU64 = AtomicU64::new(0);
/// TSC ticks per tick period, for re-arming the deadline.
static DEADLINE_STEP: AtomicU64 = AtomicU64::new(0);
/// What the calibration was timed against, and what was requested.
static CALIBRATED_BY: Once<&'static str> = Once::new();
static REQUEST: Once<String> = Once::new();

const DIVIDE: u32 = 16;

/// The local APIC of the calling CPU.
pub fn lapic() -> Lapic<'static> {
    if X2APIC.load(Ordering::Relaxed) {
        Lapic::X2Apic(&MSR)
    } else {
        match XAPIC_WINDOW.get() {
            Some(w) => Lapic::XApic(w),
            // Not mapped yet: a window of length 0 reads all-ones and drops writes.
            None => Lapic::XApic(&EMPTY),
        }
    }
}

// SAFETY: a zero-length window is never dereferenced (RawMmio bounds-checks every access).
static EMPTY: RawMmio = unsafe { RawMmio::new(core::ptr::null_mut(), 0) };

pub fn eoi() {
    lapic().eoi();
}

pub fn mode() -> Mode {
    lapic().mode()
}

/// The xAPIC MMIO base (physical), 0 in x2APIC mode.
pub fn xapic_base() -> u64 {
    if X2APIC.load(Ordering::Relaxed) {
        0
    } else {
        XAPIC_PHYS.load(Ordering::Relaxed)
    }
}

pub fn bsp_id() -> u32 {
    BSP_ID.load(Ordering::Relaxed)
}

/// Ticks taken by the calling CPU's timer.
pub fn ticks() -> u64 {
    crate::smp::percpu::this().ticks.load(Ordering::Relaxed)
}

pub fn state() -> LapicState {
    lapic().state()
}

fn cpuid(leaf: u32) -> core::arch::x86_64::CpuidResult {
    core::arch::x86_64::__cpuid_count(leaf, 0)
}

pub fn init(
    request: Option<&str>,
    madt: Option<&capmon_acpi::Madt>,
    _acpi: Option<&capmon_acpi::Acpi>,
) -> Result<(), String> {
    let f1 = cpuid(1);
    if f1.edx & (1 << 9) == 0 {
        return Err(String::from(
            "the CPU has no local APIC (CPUID.1:EDX bit 9)",
        ));
    }
    let has_x2 = f1.ecx & (1 << 21) != 0;
    let base_msr = MSR.read(regs::IA32_APIC_BASE);
    let fw_x2 = base_msr & regs::APIC_BASE_EN != 0 && base_msr & regs::APIC_BASE_EXTD != 0;
    let req = match request {
        None => ModeRequest::Auto,
        Some(r) => ModeRequest::parse(r).unwrap_or_else(|| {
            log::warn!("apic={}: not auto, xapic or x2apic; using auto", r);
            ModeRequest::Auto
        }),
    };
    REQUEST.call_once(|| String::from(req.name()));
    let (mode, note) = regs::choose_mode(has_x2, fw_x2, req);
    if let Some(n) = note {
        log::warn!("{}", n);
    }
    let phys = regs::enter_mode(&MSR, mode);
    let phys = match madt {
        // The MADT's address (with its type 5 override) is what the firmware documents;
        // IA32_APIC_BASE is what the CPU decodes. They should agree.
        Some(m) if m.local_apic_address != phys && mode == Mode::XApic => {
            log::warn!(
                "MADT local APIC address {:#x} differs from IA32_APIC_BASE {:#x}; using the MSR",
                m.local_apic_address,
                phys
            );
            phys
        }
        _ => phys,
    };
    if mode == Mode::XApic {
        let p = crate::mem::paging::map_phys(phys, 4096, true)
            .ok_or_else(|| format!("cannot map the xAPIC page at {:#x}", phys))?;
        // SAFETY: map_phys mapped 4 KiB of uncached MMIO at `p` for the kernel's lifetime.
        XAPIC_WINDOW.call_once(|| unsafe { RawMmio::new(p, 4096) });
        XAPIC_PHYS.store(phys, Ordering::Relaxed);
    } else {
        X2APIC.store(true, Ordering::Relaxed);
    }
    let l = lapic();
    BSP_ID.store(l.id(), Ordering::Relaxed);
    setup_lvts(l);
    add_route(Route {
        vector: VEC_ERROR,
        source: String::from("LAPIC error"),
        mechanism: String::from("LAPIC"),
        apic_id: None,
    });
    add_route(Route {
        vector: VEC_SPURIOUS,
        source: String::from("LAPIC spurious"),
        mechanism: String::from("LAPIC"),
        apic_id: None,
    });
    log::info!(
        "interrupts: local APIC {:#x} in {} mode{} (requested {})",
        bsp_id(),
        mode.name(),
        if mode == Mode::XApic {
            format!(" at {:#x}", phys)
        } else {
            String::new()
        },
        req.name()
    );
    Ok(())
}

/// Puts an application processor's local APIC in the BSP's mode (x2APIC before anything
/// else touches it, so a 32-bit APIC ID reads whole; an AP leaves INIT in xAPIC mode) and
/// returns its APIC ID.
pub fn ap_enter_mode() -> u32 {
    let mode = if X2APIC.load(Ordering::Relaxed) {
        Mode::X2Apic
    } else {
        Mode::XApic
    };
    regs::enter_mode(&MSR, mode);
    lapic().id()
}

/// Every LVT masked, then the error and spurious vectors, TPR 0 and the APIC enabled: what
/// every CPU's local APIC starts from (the timer comes later).
fn setup_lvts(l: Lapic<'_>) {
    l.mask_all_lvts();
    if let Lapic::XApic(_) = l {
        // Flat model, all-ones: unused (physical destinations only) but defined.
        l.write(regs::reg::DFR, 0xffff_ffff);
    }
    l.set_tpr(0);
    l.write(regs::reg::LVT_ERROR, VEC_ERROR as u32);
    l.enable(VEC_SPURIOUS);
    l.esr();
    // LINT1 is NMI on every PC (the MADT's local APIC NMI entry says so on QEMU).
    l.write(regs::reg::LVT_LINT1, lvt::DELIVERY_NMI);
}

/// An application processor's local APIC (after `ap_enter_mode`), set up with the same LVTs
/// as `init` gives the BSP's. Routes are the BSP's business.
pub fn init_ap() {
    setup_lvts(lapic());
}

/// Starts an application processor's tick in the mode `start_timer` chose on the BSP, with
/// the BSP's calibration (every local APIC timer runs from the same clock).
pub fn start_timer_ap() {
    match TIMER_MODE.load(Ordering::Relaxed) {
        2 => {
            lapic().set_timer(VEC_TIMER, lvt::TIMER_TSC_DEADLINE, DIVIDE, 0);
            let next = crate::time::rdtsc() + DEADLINE_STEP.load(Ordering::Relaxed);
            crate::smp::percpu::this()
                .next_deadline
                .store(next, Ordering::Relaxed);
            MSR.write(regs::IA32_TSC_DEADLINE, next);
        }
        1 => {
            let hz = TIMER_HZ.load(Ordering::Relaxed);
            let initial = (hz / DIVIDE as u64 / TICK_HZ).clamp(1, u32::MAX as u64) as u32;
            lapic().set_timer(VEC_TIMER, lvt::TIMER_PERIODIC, DIVIDE, initial);
        }
        _ => {}
    }
}

/// Measures the LAPIC timer's input clock over `window_ns`, timed by the HPET when the ACPI
/// tables describe one and by the TSC otherwise.
fn calibrate(acpi: Option<&capmon_acpi::Acpi>) -> (u64, &'static str) {
    const WINDOW_NS: u64 = 10_000_000;
    let l = lapic();
    l.set_timer(0, lvt::TIMER_ONE_SHOT, DIVIDE, u32::MAX);
    l.write(regs::reg::LVT_TIMER, lvt::MASKED | lvt::TIMER_ONE_SHOT);
    l.write(regs::reg::TIMER_INITIAL, u32::MAX);
    let hpet = acpi.and_then(|a| a.hpet().ok()).and_then(|h| {
        let p = crate::mem::paging::map_phys(h.base.address, 1024, true)?;
        // SAFETY: map_phys mapped the HPET's 1 KiB register block, uncached, for good.
        Some(unsafe { RawMmio::new(p, 1024) })
    });
    let counted = hpet.and_then(|h| {
        // HPET 1.0a §2.3: GCAP_ID bits 63:32 = period in femtoseconds; GEN_CONF bit 0
        // enables the main counter at 0xf0.
        let period_fs = h.read64(0) >> 32;
        if period_fs == 0 || period_fs > 100_000_000 {
            return None;
        }
        h.write64(0x10, h.read64(0x10) | 1);
        let window = WINDOW_NS * 1_000_000 / period_fs;
        // Each LAPIC read sits between two HPET reads; a window counts only if both brackets
        // are narrow (an emulator may stall this vCPU for longer than the window). The
        // estimate from the narrowest brackets wins.
        let bracket = |l: &Lapic| {
            let a = h.read64(0xf0);
            let t = l.read(regs::reg::TIMER_CURRENT);
            let b = h.read64(0xf0);
            (a / 2 + b / 2, b.wrapping_sub(a), t)
        };
        let mut best: Option<(u64, u64)> = None;
        for _ in 0..8 {
            l.write(regs::reg::TIMER_INITIAL, u32::MAX);
            let (m0, w0, t0) = bracket(&l);
            let mut spins = 0u64;
            while h.read64(0xf0).wrapping_sub(m0) < window && spins < 100_000_000 {
                spins += 1;
                core::hint::spin_loop();
            }
            let (m1, w1, t1) = bracket(&l);
            let slack = w0 + w1;
            let elapsed = m1.wrapping_sub(m0);
            if spins >= 100_000_000 || t1 >= t0 || slack > elapsed / 100 || elapsed == 0 {
                continue;
            }
            let hz = ((t0 - t1) as u128 * DIVIDE as u128 * 1_000_000_000_000_000
                / (elapsed as u128 * period_fs as u128)) as u64;
            if best.is_none_or(|(_, s)| slack < s) {
                best = Some((hz, slack));
            }
        }
        best.map(|(hz, _)| hz)
    });
    let r = match counted {
        Some(hz) => (hz, "HPET"),
        None => {
            let s = crate::time::now_ns();
            let t0 = l.read(regs::reg::TIMER_CURRENT);
            while crate::time::now_ns() - s < WINDOW_NS {
                core::hint::spin_loop();
            }
            let t1 = l.read(regs::reg::TIMER_CURRENT);
            let ns = crate::time::now_ns() - s;
            (
                ((t0 - t1) as u128 * DIVIDE as u128 * 1_000_000_000 / ns as u128) as u64,
                "TSC (PIT-calibrated)",
            )
        }
    };
    l.write(regs::reg::TIMER_INITIAL, 0);
    r
}

fn tick_periodic() {
    let me = crate::smp::percpu::this();
    me.tick();
    if me.index == 0 {
        super::intx::on_tick();
    }
}

fn tick_deadline() {
    let me = crate::smp::percpu::this();
    me.tick();
    if me.index == 0 {
        super::intx::on_tick();
    }
    let step = DEADLINE_STEP.load(Ordering::Relaxed);
    let now = crate::time::rdtsc();
    // The next period boundary after now: late ticks are dropped, not bunched.
    let mut next = me.next_deadline.load(Ordering::Relaxed).wrapping_add(step);
    if next <= now {
        next = now + step;
    }
    me.next_deadline.store(next, Ordering::Relaxed);
    MSR.write(regs::IA32_TSC_DEADLINE, next);
}

fn start_periodic(hz: u64) {
    TIMER_MODE.store(1, Ordering::Relaxed);
    super::set_handler(VEC_TIMER, tick_periodic);
    let initial = (hz / DIVIDE as u64 / TICK_HZ).clamp(1, u32::MAX as u64) as u32;
    lapic().set_timer(VEC_TIMER, lvt::TIMER_PERIODIC, DIVIDE, initial);
}

/// Calibrates and starts the tick; called with interrupts enabled.
pub fn start_timer(acpi: Option<&capmon_acpi::Acpi>) {
    let (hz, by) = calibrate(acpi);
    TIMER_HZ.store(hz, Ordering::Relaxed);
    CALIBRATED_BY.call_once(|| by);
    add_route(Route {
        vector: VEC_TIMER,
        source: String::from("LAPIC timer"),
        mechanism: String::from("LAPIC"),
        apic_id: None,
    });
    let deadline = cpuid(1).ecx & (1 << 24) != 0;
    if deadline {
        let step = crate::time::tsc_hz() / TICK_HZ;
        DEADLINE_STEP.store(step, Ordering::Relaxed);
        super::set_handler(VEC_TIMER, tick_deadline);
        TIMER_MODE.store(2, Ordering::Relaxed);
        lapic().set_timer(VEC_TIMER, lvt::TIMER_TSC_DEADLINE, DIVIDE, 0);
        let next = crate::time::rdtsc() + step;
        crate::smp::percpu::this()
            .next_deadline
            .store(next, Ordering::Relaxed);
        MSR.write(regs::IA32_TSC_DEADLINE, next);
        // Trust it only once it ticks: an emulation may list the feature and never fire.
        let start = crate::time::now_ns();
        while ticks() < 2 && crate::time::now_ns() - start < 100_000_000 {
            core::hint::spin_loop();
        }
        if ticks() < 2 {
            log::warn!("LAPIC timer: TSC-deadline mode never fired; using periodic mode");
            MSR.write(regs::IA32_TSC_DEADLINE, 0);
            start_periodic(hz);
        }
    } else {
        start_periodic(hz);
    }
    log::info!(
        "LAPIC timer: {} Hz input clock (calibrated against the {}), {} mode, {} Hz tick",
        hz,
        by,
        timer_mode_name(),
        TICK_HZ
    );
}

pub fn timer_mode_name() -> &'static str {
    match TIMER_MODE.load(Ordering::Relaxed) {
        1 => "periodic",
        2 => "TSC-deadline",
        _ => "stopped",
    }
}

/// The timer line of the `apic` command.
pub fn timer_summary() -> String {
    format!(
        "{}, vector {:#04x}, tick {} Hz, LAPIC clock {} Hz (divide {}), calibrated against the {}",
        timer_mode_name(),
        VEC_TIMER,
        TICK_HZ,
        TIMER_HZ.load(Ordering::Relaxed),
        DIVIDE,
        CALIBRATED_BY.get().copied().unwrap_or("nothing")
    )
}

pub fn requested() -> &'static str {
    REQUEST.get().map(|s| s.as_str()).unwrap_or("auto")
}

/// EOIs every vector the local APIC has in service (highest first, as EOI ends the highest).
pub fn end_in_service() {
    let l = lapic();
    for _ in 0..256 {
        let in_service = (0..8u16).any(|i| l.read(regs::reg::ISR + i * 0x10) != 0);
        if !in_service {
            break;
        }
        l.eoi();
    }
}
