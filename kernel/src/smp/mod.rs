//! Symmetric multiprocessing: every enabled CPU of the MADT started and kept idle, each with
//! its own per-CPU block (`percpu`), GDT/TSS and IST stacks, guarded kernel stack, local APIC
//! and tick; IPIs between them (`ipi`), TLB shootdown (`tlb`).
//!
//! Bring-up (Multiboot2, or any loader that leaves the APs alone) is the SDM's INIT-SIPI-SIPI
//! sequence (Vol. 3A §9.4.4.1, §11.6.1) sent to each AP by APIC ID, all APs in one batch: INIT
//! to every AP, 10 ms, a start-up IPI to every AP, 200 µs, a second start-up IPI to those
//! not yet heard from (a CPU already running ignores it), 200 µs. They run the trampoline
//! (`trampoline`) at the same time, take a ticket for a stack, find their block by APIC ID
//! and come online. A CPU silent past the timeout is marked timed-out; if it shows up later it
//! parks itself without touching anything. Under Limine, the loader's MP response starts them
//! at a goto address instead: at once into a pen where they halt (`limine_pen`), and from
//! there, kicked by an NMI, into the same `ap_long_entry` and `ap_main`.
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use capmon_apic::lapic::{Delivery, Dest, Mode};
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use spin::Once;

pub mod ipi;
pub mod limine_pen;
pub mod lock;
pub mod percpu;
pub mod tlb;
mod trampoline;

use crate::irq::lapic;
use percpu::{CpuState, PerCpu};

/// IPI vectors (0xe0..=0xeb is the IPI range of the vector map in irq/mod.rs).
/// Wakes a halted CPU (nothing else to do: the interrupted `hlt` returns).
pub const VEC_WAKE: u8 = 0xe0;
/// `ipi CPU`: the receiver answers with VEC_PONG to the sender.
pub const VEC_PING: u8 = 0xe1;
pub const VEC_PONG: u8 = 0xe2;
/// TLB shootdown and the TLB probe (`tlb`).
pub const VEC_TLB: u8 = 0xe3;

/// An AP's kernel stack: 64 KiB above its guard page (commands run by `on` keep their buffers
/// on the heap; an overflow is caught by the guard page and reported).
const AP_STACK_PAGES: u64 = 16;
/// The bring-up wait ends when every AP is online, or no AP has arrived for QUIET (a slow
/// machine, e.g. QEMU's TCG running hundreds of virtual CPUs on two host cores, still makes
/// progress), or at the latest after MAX_BASE + MAX_PER_AP per AP.
const BRINGUP_QUIET_NS: u64 = 2_000_000_000;
const BRINGUP_MAX_BASE_NS: u64 = 10_000_000_000;
const BRINGUP_MAX_PER_AP_NS: u64 = 200_000_000;
/// Polls of the xAPIC ICR's delivery status before an IPI counts as not accepted.
pub const ICR_SPINS: u32 = 1_000_000;

static BSP_ONLY: [&PerCpu; 1] = [&percpu::BSP];
static CPUS: Once<&'static [&'static PerCpu]> = Once::new();
static BRINGUP: Once<BringUp> = Once::new();
/// The BSP's TSC at the first start-up IPI (or the first Limine goto), 0 before, and when it
/// saw the last AP come online (the last one wakes it with an IPI, so this is not bounded by
/// the tick). Both on the BSP's clock: APs' TSCs need not agree with it.
static FIRST_START_TSC: AtomicU64 = AtomicU64::new(0);
static LAST_ONLINE_TSC: AtomicU64 = AtomicU64::new(0);
/// APs that came online during bring-up, and how many were started.
static ONLINE_APS: AtomicU32 = AtomicU32::new(0);
static STARTED_APS: AtomicU32 = AtomicU32::new(0);
/// The BSP's control registers, mirrored on every AP.
static BSP_CR0: AtomicU64 = AtomicU64::new(0);
static BSP_CR4: AtomicU64 = AtomicU64::new(0);
static BSP_EFER: AtomicU64 = AtomicU64::new(0);
static BSP_PAT: AtomicU64 = AtomicU64::new(0);

const IA32_PAT: u32 = 0x277;
const IA32_EFER: u32 = 0xc000_0080;
const CR4_LA57: u64 = 1 << 12;

/// How the APs were (or were not) started, for `cpus`.
#[derive(Debug, Clone)]
pub struct BringUp {
    /// "INIT-SIPI-SIPI", "Limine MP", or "none".
    pub method: &'static str,
    /// APs the CPUs were started with.
    pub started: usize,
    /// MADT entries that are not enabled (not started, not listed).
    pub disabled: usize,
    /// Why some or all APs were not started.
    pub notes: Vec<String>,
    /// The trampoline page (INIT-SIPI-SIPI).
    pub trampoline: Option<u64>,
    /// APs still silent 200 µs after the first SIPI, sent the second (INIT-SIPI-SIPI).
    pub resent: usize,
}

/// Every CPU the kernel knows: index 0 is the boot CPU, then the MADT's enabled CPUs in MADT
/// order.
pub fn cpus() -> &'static [&'static PerCpu] {
    CPUS.get().copied().unwrap_or(&BSP_ONLY)
}

pub fn bring_up() -> Option<&'static BringUp> {
    BRINGUP.get()
}

/// Nanoseconds from the first start-up IPI to the last AP online, if any came online.
pub fn bring_up_ns() -> Option<u64> {
    let first = FIRST_START_TSC.load(Ordering::Relaxed);
    let last = LAST_ONLINE_TSC.load(Ordering::Relaxed);
    (first != 0 && last != 0).then(|| tsc_to_ns(last.saturating_sub(first)))
}

pub fn tsc_to_ns(t: u64) -> u64 {
    (t as u128 * 1_000_000_000 / crate::time::tsc_hz().max(1) as u128) as u64
}

/// The CPU index running on kernel stack `slot` (arch::stack), for fault reports.
pub fn cpu_on_stack_slot(slot: u64) -> Option<u32> {
    cpus()
        .iter()
        .find(|c| c.index != 0 && c.stack_slot.load(Ordering::Relaxed) == slot)
        .map(|c| c.index)
}

/// Sends an IPI from the calling CPU with interrupts off (an xAPIC IPI is two register writes
/// an interrupt handler's own IPI must not come between).
pub fn send_ipi(d: Delivery, dest: Dest) -> bool {
    x86_64::instructions::interrupts::without_interrupts(|| {
        lapic::lapic().send_ipi(d, dest, ICR_SPINS)
    })
}

/// Starts every enabled CPU of the MADT. Called once on the BSP with its local APIC and tick
/// running; logs what happened. Never fails: CPUs that cannot be started stay offline.
pub fn init(bi: &crate::boot::BootInfo, acpi: Option<&capmon_acpi::Acpi>) {
    percpu::BSP
        .apic_id
        .store(lapic::bsp_id(), Ordering::Relaxed);
    percpu::BSP.stack_slot.store(0, Ordering::Relaxed);
    ipi::init();
    let mut b = BringUp {
        method: "none",
        started: 0,
        disabled: 0,
        notes: Vec::new(),
        trampoline: None,
        resent: 0,
    };
    let madt = acpi.and_then(|a| a.madt().ok());
    match (&madt, crate::irq::ready()) {
        (_, false) => b
            .notes
            .push(String::from("no local APIC in use: APs not started")),
        (None, _) => b.notes.push(String::from("no MADT: APs not started")),
        (Some(m), true) => start_aps(bi, m, &mut b),
    }
    let online = cpus().iter().filter(|c| c.is_online()).count();
    for n in &b.notes {
        log::warn!("SMP: {}", n);
    }
    let resent = if b.method == "INIT-SIPI-SIPI" {
        format!(", second SIPI to {} of {}", b.resent, b.started)
    } else {
        String::new()
    };
    match bring_up_ns() {
        Some(ns) => log::info!(
            "SMP: {} of {} CPUs online ({}{}: first start-up to last online {}.{:03} ms)",
            online,
            cpus().len(),
            b.method,
            resent,
            ns / 1_000_000,
            (ns / 1000) % 1000
        ),
        None => log::info!("SMP: {} of {} CPUs online", online, cpus().len()),
    }
    BRINGUP.call_once(|| b);
}

/// Builds the CPU table from the MADT and starts the APs (through Limine's MP response when
/// the loader gave one, INIT-SIPI-SIPI otherwise).
fn start_aps(bi: &crate::boot::BootInfo, madt: &capmon_acpi::Madt, b: &mut BringUp) {
    let bsp = lapic::bsp_id();
    let x2apic = lapic::mode() == Mode::X2Apic;
    let mut list: Vec<&'static PerCpu> = alloc::vec![&percpu::BSP];
    let mut startable: Vec<&'static PerCpu> = Vec::new();
    let mut unreachable = 0;
    let mut no_memory = 0;
    for e in &madt.local_apics {
        if !e.enabled {
            b.disabled += 1;
            continue;
        }
        // The BSP, or a firmware table listing an APIC ID twice.
        if e.apic_id == bsp || list.iter().any(|c| c.apic_id() == e.apic_id) {
            continue;
        }
        let index = list.len() as u32;
        // xAPIC destinations are 8 bits and 0xff is the broadcast.
        let reachable = x2apic || e.apic_id < 0xff;
        let tables = if reachable {
            crate::arch::gdt::new_ap_tables()
        } else {
            None
        };
        if !reachable {
            unreachable += 1;
        } else if tables.is_none() {
            no_memory += 1;
        }
        let cpu: &'static PerCpu = alloc::boxed::Box::leak(alloc::boxed::Box::new(PerCpu::new(
            index, e.apic_id, tables,
        )));
        list.push(cpu);
        if tables.is_some() {
            startable.push(cpu);
        }
    }
    if unreachable > 0 {
        b.notes.push(format!(
            "{} CPUs have APIC IDs above 254, which xAPIC mode cannot address: offline",
            unreachable
        ));
    }
    // Stacks, one per ticket: a CPU without one is not started.
    let mut tops = Vec::with_capacity(startable.len());
    for k in 0..startable.len() as u64 {
        match crate::arch::stack::map_stack(1 + k, AP_STACK_PAGES) {
            Some(top) => tops.push(top),
            None => break,
        }
    }
    no_memory += startable.len() - tops.len();
    startable.truncate(tops.len());
    if no_memory > 0 {
        b.notes.push(format!(
            "no memory for the stacks or tables of {} CPUs: offline",
            no_memory
        ));
    }
    CPUS.call_once(|| list.leak());
    if startable.is_empty() {
        return;
    }
    save_bsp_registers();
    let tops: &'static [u64] = tops.leak();
    if limine_start(bi, &startable, tops, b) {
        return;
    }
    init_sipi_sipi(&startable, tops, b);
}

fn save_bsp_registers() {
    use x86_64::registers::control::{Cr0, Cr4};
    use x86_64::registers::model_specific::Msr;
    BSP_CR0.store(Cr0::read_raw(), Ordering::Relaxed);
    BSP_CR4.store(Cr4::read_raw(), Ordering::Relaxed);
    // SAFETY: IA32_EFER and IA32_PAT exist on every x86_64 CPU; reading has no side effects.
    let (efer, pat) = unsafe { (Msr::new(IA32_EFER).read(), Msr::new(IA32_PAT).read()) };
    BSP_EFER.store(efer, Ordering::Relaxed);
    BSP_PAT.store(pat, Ordering::Relaxed);
}

/// INIT-SIPI-SIPI to every CPU in `aps`, in one batch, then the bounded wait.
fn init_sipi_sipi(aps: &[&'static PerCpu], tops: &'static [u64], b: &mut BringUp) {
    b.method = "INIT-SIPI-SIPI";
    let Some(page) = crate::mem::frames::alloc_low(0x10_0000) else {
        b.notes.push(String::from(
            "no free page below 1 MiB for the AP trampoline: APs not started",
        ));
        return;
    };
    b.trampoline = Some(page);
    let Some(cr3) = crate::mem::paging::trampoline_pml4(page) else {
        b.notes.push(String::from(
            "no memory below 4 GiB for the trampoline's page tables",
        ));
        return;
    };
    let Some(vector) = trampoline::install(page, cr3, tops) else {
        b.notes
            .push(String::from("the trampoline does not fit its page"));
        return;
    };
    STARTED_APS.store(aps.len() as u32, Ordering::Release);
    b.started = aps.len();
    let mut refused = 0;
    for c in aps {
        c.set_state(CpuState::Starting);
        if !send_ipi(Delivery::Init, Dest::Id(c.apic_id())) {
            refused += 1;
        }
    }
    // SDM Vol. 3A §9.4.4.1: 10 ms after INIT, then SIPI, 200 µs, SIPI.
    crate::time::delay_us(10_000);
    FIRST_START_TSC.store(crate::time::rdtsc(), Ordering::Relaxed);
    for c in aps {
        send_ipi(Delivery::Startup(vector), Dest::Id(c.apic_id()));
    }
    crate::time::delay_us(200);
    for c in aps.iter().filter(|c| c.state() == CpuState::Starting) {
        send_ipi(Delivery::Startup(vector), Dest::Id(c.apic_id()));
        b.resent += 1;
    }
    crate::time::delay_us(200);
    if refused > 0 {
        b.notes.push(format!(
            "{} INIT IPIs were not accepted by the local APIC",
            refused
        ));
    }
    wait_for_aps(aps, b, &|| {});
}

/// Waits (halting between ticks) until every AP in `aps` is online or they stop arriving (see
/// BRINGUP_QUIET_NS); then marks the silent ones timed out.
fn wait_for_aps(aps: &[&'static PerCpu], b: &mut BringUp, kick: &dyn Fn()) {
    let max = BRINGUP_MAX_BASE_NS + BRINGUP_MAX_PER_AP_NS * aps.len() as u64;
    let start = crate::time::now_ns();
    let mut last_progress = start;
    let (mut online, mut arrived) = (0, 0);
    loop {
        kick();
        let n = ONLINE_APS.load(Ordering::Acquire);
        if n != online {
            online = n;
            LAST_ONLINE_TSC.store(crate::time::rdtsc(), Ordering::Relaxed);
        }
        let a = aps
            .iter()
            .filter(|c| c.state() != CpuState::Starting)
            .count();
        let now = crate::time::now_ns();
        if a != arrived {
            arrived = a;
            last_progress = now;
        }
        if n as usize >= aps.len() || now - last_progress >= BRINGUP_QUIET_NS || now - start >= max
        {
            break;
        }
        crate::irq::idle_unless(|| ONLINE_APS.load(Ordering::Acquire) != online);
    }
    let waited_ms = (crate::time::now_ns() - start) / 1_000_000;
    let mut silent = Vec::new();
    for c in aps {
        if c.transition(CpuState::Starting, CpuState::TimedOut) {
            silent.push(c.index);
        }
    }
    // Arrived but not online yet: they run kernel code; give them a little longer.
    let start = crate::time::now_ns();
    while aps.iter().any(|c| c.state() == CpuState::Arrived)
        && crate::time::now_ns() - start < 1_000_000_000
    {
        crate::irq::idle_unless(|| false);
    }
    if !silent.is_empty() {
        b.notes.push(format!(
            "{} CPUs never answered ({} ms of waiting, the last {} s without a new CPU) and \
             stay offline: {}",
            silent.len(),
            waited_ms,
            BRINGUP_QUIET_NS / 1_000_000_000,
            list_indices(&silent)
        ));
    }
    let stuck: Vec<u32> = aps
        .iter()
        .filter(|c| c.state() == CpuState::Arrived)
        .map(|c| c.index)
        .collect();
    if !stuck.is_empty() {
        b.notes.push(format!(
            "{} CPUs started but did not finish setting up: {}",
            stuck.len(),
            list_indices(&stuck)
        ));
    }
}

fn list_indices(v: &[u32]) -> String {
    let shown: Vec<String> = v.iter().take(16).map(|i| format!("{}", i)).collect();
    let more = if v.len() > 16 { ", ..." } else { "" };
    format!("CPU {}{}", shown.join(", "), more)
}

/// Under Limine: starts `aps`, which `limine_pen::enter` took from Limine's MP response into
/// the pen at boot. False when there is no response (then INIT-SIPI-SIPI).
fn limine_start(
    bi: &crate::boot::BootInfo,
    aps: &[&'static PerCpu],
    tops: &'static [u64],
    b: &mut BringUp,
) -> bool {
    if !bi.loader.starts_with("Limine") {
        return false;
    }
    let Some((_, mp)) = crate::boot::limine::mp() else {
        return false;
    };
    b.method = "Limine MP";
    trampoline::set_stacks(tops);
    let mut waiting: Vec<(&'static PerCpu, &'static limine::mp::MpInfo)> = Vec::new();
    for c in aps {
        match mp.iter().find(|m| m.lapic_id == c.apic_id()) {
            Some(info) => {
                c.set_state(CpuState::Starting);
                waiting.push((c, info));
            }
            None => b.notes.push(format!(
                "CPU {} (APIC ID {}) is not in Limine's MP response: offline",
                c.index,
                c.apic_id()
            )),
        }
    }
    b.started = waiting.len();
    STARTED_APS.store(waiting.len() as u32, Ordering::Release);
    FIRST_START_TSC.store(crate::time::rdtsc(), Ordering::Relaxed);
    limine_pen::open();
    // Kick every CPU still halted in the pen; repeated on each check of the wait (an NMI may
    // land just before a CPU's `hlt`). A kick that arrives late is counted and dropped.
    let kick = || {
        for (c, info) in &waiting {
            if c.state() == CpuState::Starting && limine_pen::penned(info) {
                c.nmi_action.store(percpu::NMI_PING, Ordering::Release);
                send_ipi(Delivery::Nmi, Dest::Id(c.apic_id()));
            }
        }
    };
    let cpus: Vec<&'static PerCpu> = waiting.iter().map(|w| w.0).collect();
    wait_for_aps(&cpus, b, &kick);
    true
}

/// Where every AP lands on its own kernel stack, interrupts off, with the kernel's CR3 but
/// not yet its GDT or IDT: nothing here may fault or take a lock before `gdt::load` and
/// `load_idt` (a fault now would be a triple fault and reset the machine).
pub extern "C" fn ap_main(ticket: u32) -> ! {
    let apic_id = lapic::ap_enter_mode();
    let Some(me) = cpus()
        .iter()
        .copied()
        .find(|c| c.index != 0 && c.apic_id() == apic_id)
    else {
        park()
    };
    // Late (the BSP gave up on it) or started twice: touch nothing.
    if !me.transition(CpuState::Starting, CpuState::Arrived) {
        park()
    }
    let Some(tables) = me.tables else { park() };
    percpu::install(me);
    me.stack_slot.store(1 + ticket as u64, Ordering::Relaxed);
    mirror_bsp_registers();
    crate::arch::gdt::load(tables);
    crate::arch::traps::load_idt();
    lapic::init_ap();
    me.online_tsc.store(crate::time::rdtsc(), Ordering::Relaxed);
    // Kicks out of the Limine pen are not NMIs anyone asked about.
    me.nmis.store(0, Ordering::Relaxed);
    me.set_state(CpuState::Online);
    let n = ONLINE_APS.fetch_add(1, Ordering::AcqRel) + 1;
    if n == STARTED_APS.load(Ordering::Acquire) {
        send_ipi(Delivery::Fixed(VEC_WAKE), Dest::Id(percpu::BSP.apic_id()));
    }
    x86_64::instructions::interrupts::enable();
    lapic::start_timer_ap();
    ipi::idle_loop(me)
}

/// CR0, CR4, EFER and PAT as the BSP has them (the trampoline set only what long mode needs).
fn mirror_bsp_registers() {
    use x86_64::registers::control::{Cr0, Cr4};
    use x86_64::registers::model_specific::Msr;
    // CR4.LA57 cannot change in long mode: keep this CPU's.
    let cr4 = (BSP_CR4.load(Ordering::Relaxed) & !CR4_LA57) | (Cr4::read_raw() & CR4_LA57);
    // SAFETY: the values the BSP runs with, on a CPU of the same model in the same mode; the
    // kernel's page tables (already loaded) are valid under them.
    unsafe {
        Cr0::write_raw(BSP_CR0.load(Ordering::Relaxed));
        Cr4::write_raw(cr4);
        Msr::new(IA32_EFER).write(BSP_EFER.load(Ordering::Relaxed));
        Msr::new(IA32_PAT).write(BSP_PAT.load(Ordering::Relaxed));
    }
}

/// Halts for good with interrupts off, touching nothing.
fn park() -> ! {
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}

/// The CPUs as drivers see them: numbered by their place in `cpus()`.
pub struct KernelCpus;

impl capmon_hal::Cpus for KernelCpus {
    fn count(&self) -> usize {
        cpus().len()
    }
    fn current(&self) -> usize {
        percpu::this().index as usize
    }
}

pub static KERNEL_CPUS: KernelCpus = KernelCpus;
