//! Interrupts: the 8259 pair masked and out of the way, the local APIC (xAPIC or x2APIC) with
//! its timer tick, the I/O APICs from the MADT, the vector allocator and the routing table
//! every interrupt is listed in, and the `Interrupts` seam drivers allocate vectors through.
//!
//! Handlers run with interrupts off and only count, signal an `IrqEvent`, move bytes into a
//! ring or re-arm the timer: they never log, allocate or take a lock that other code holds.
//!
//! Vector map:
//!   0x20..=0x2f  the 8259 pair, remapped and masked (only spurious IRQ 7/15 can arrive)
//!   0x30..=0x3f  ISA IRQ n through the I/O APIC at 0x30 + n
//!   0x40..=0xdf  device vectors (MSI, MSI-X, PCI INTx), from the allocator
//!   0xe0..=0xeb  inter-processor interrupts: 0xe0 wake, 0xe1/0xe2 ping/pong, 0xe3 TLB
//!                shootdown (kernel/src/smp), the rest reserved
//!   0xec         the local APIC timer tick
//!   0xfe         local APIC error
//!   0xff         local APIC spurious
pub mod intx;
pub mod ioapic;
pub mod lapic;
mod pic;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use capmon_apic::VectorAllocator;
use capmon_hal::irq::{Interrupts, IrqEvent, IrqOwner, IrqVector, Mechanism, MsiMessage};
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use spin::Mutex;

pub const VEC_PIC_BASE: u8 = 0x20;
pub const VEC_ISA_BASE: u8 = 0x30;
pub const VEC_DEVICE_LO: u8 = 0x40;
pub const VEC_DEVICE_HI: u8 = 0xdf;
pub const VEC_TIMER: u8 = 0xec;
pub const VEC_ERROR: u8 = 0xfe;
pub const VEC_SPURIOUS: u8 = 0xff;

/// Interrupts taken per vector.
static COUNTS: [AtomicU64; 256] = [const { AtomicU64::new(0) }; 256];
/// What each vector's handler signals (drivers wait on these).
static EVENTS: [IrqEvent; 256] = [const { IrqEvent::new() }; 256];
/// Extra work for a vector: a `fn()` address, 0 for none.
static HANDLERS: [AtomicUsize; 256] = [const { AtomicUsize::new(0) }; 256];
/// The local APIC is up, so vectors are delivered and the tick bounds every halt.
static READY: AtomicBool = AtomicBool::new(false);

/// One line of the routing table: who raises a vector, how, and where it goes.
#[derive(Debug, Clone)]
pub struct Route {
    pub vector: u8,
    /// "LAPIC timer", "COM1 (ISA IRQ 4, GSI 4)", "00:03.0 virtio-blk queue 0", ...
    pub source: String,
    /// "LAPIC", "I/O APIC 0 pin 4", "MSI-X 1", "MSI", "INTx (GSI 16)", "8259".
    pub mechanism: String,
    /// The target CPU's APIC ID; `None` for a vector every CPU takes (its own LAPIC timer,
    /// error and spurious vectors, IPIs).
    pub apic_id: Option<u32>,
}

struct State {
    vectors: VectorAllocator,
    routes: Vec<Route>,
}

/// Touched only outside interrupt handlers (allocation, display).
static STATE: Mutex<State> = Mutex::new(State {
    vectors: VectorAllocator::new(VEC_DEVICE_LO, VEC_DEVICE_HI),
    routes: Vec::new(),
});

/// Entered from `irq_common` (arch/traps.rs) with interrupts off.
pub extern "C" fn dispatch(vector: u64, frame: *mut crate::arch::traps::TrapFrame) {
    let v = (vector & 0xff) as usize;
    COUNTS[v].fetch_add(1, Ordering::Relaxed);
    EVENTS[v].signal();
    intx::on_interrupt(v as u8);
    let h = HANDLERS[v].load(Ordering::Acquire);
    if h != 0 {
        // SAFETY: HANDLERS only ever holds addresses of `fn()` items (see `set_handler`).
        let f: fn() = unsafe { core::mem::transmute::<usize, fn()>(h) };
        f();
    }
    match v as u8 {
        // A spurious 8259 interrupt is not in the local APIC's ISR, and the spurious vector
        // needs no EOI either (SDM Vol. 3A §11.9).
        VEC_PIC_BASE..=0x2f | VEC_SPURIOUS => {}
        _ => lapic::eoi(),
    }
    if !frame.is_null() {
        // SAFETY: irq_common passes the frame it saved on this stack, live until it returns.
        crate::user::on_irq_return(unsafe { &mut *frame });
    }
}

/// Runs `f` from `vector`'s handler, after its event is signalled.
pub fn set_handler(vector: u8, f: fn()) {
    HANDLERS[vector as usize].store(f as usize, Ordering::Release);
}

pub fn count(vector: u8) -> u64 {
    COUNTS[vector as usize].load(Ordering::Relaxed)
}

pub fn event(vector: u8) -> &'static IrqEvent {
    &EVENTS[vector as usize]
}

/// Whether interrupts are delivered (the local APIC is up and its tick runs).
pub fn ready() -> bool {
    READY.load(Ordering::Acquire)
}

/// A device vector from the allocator (no route yet).
pub fn alloc_vector() -> Option<u8> {
    STATE.lock().vectors.alloc()
}

/// Frees a device vector and drops its routing-table lines.
pub fn free_vector(v: u8) {
    let mut s = STATE.lock();
    s.vectors.free(v);
    s.routes.retain(|r| r.vector != v);
}

/// Adds a line to the routing table.
pub fn add_route(r: Route) {
    STATE.lock().routes.push(r);
}

/// The routing table, sorted by vector.
pub fn routes() -> Vec<Route> {
    let mut r = STATE.lock().routes.clone();
    r.sort_by_key(|r| r.vector);
    r
}

/// Halts unless `cond()` (checked with interrupts off) already holds, so a wakeup between the
/// check and the halt is never lost: `sti; hlt` takes the pending interrupt after the `hlt`.
pub fn idle_unless(cond: impl FnOnce() -> bool) {
    if !ready() {
        core::hint::spin_loop();
        return;
    }
    x86_64::instructions::interrupts::disable();
    if cond() {
        x86_64::instructions::interrupts::enable();
    } else {
        crate::smp::percpu::halt();
    }
}

/// After a fault or panic inside an interrupt handler: EOI every vector still in service.
pub fn end_in_service() {
    if ready() {
        lapic::end_in_service();
    }
}

/// Brings interrupts up: masks the 8259s, starts the local APIC and its timer, masks every
/// I/O APIC pin, routes COM1, and enables interrupts. On failure (no local APIC, bad MADT)
/// says why and leaves everything polling.
pub fn init(bi: &crate::boot::BootInfo, acpi: Option<&capmon_acpi::Acpi>) {
    {
        let mut s = STATE.lock();
        for v in (0..=0x3f).chain(0xe0..=0xff) {
            s.vectors.reserve(v);
        }
    }
    let madt = acpi.and_then(|a| a.madt().ok());
    if madt.as_ref().is_none_or(|m| m.pcat_compat) {
        pic::remap_and_mask();
        for irq in [7u8, 15] {
            add_route(Route {
                vector: VEC_PIC_BASE + irq,
                source: format!("8259 spurious IRQ {}", irq),
                mechanism: String::from("8259 (masked)"),
                apic_id: Some(0),
            });
        }
    }
    let request = bi.cmdline_value("apic");
    if let Err(e) = lapic::init(request, madt.as_ref(), acpi) {
        log::error!("interrupts: {}; drivers and the console poll", e);
        return;
    }
    park_firmware_aps(bi, madt.as_ref());
    READY.store(true, Ordering::Release);
    x86_64::instructions::interrupts::enable();
    lapic::start_timer(acpi);
    match &madt {
        Some(m) => {
            ioapic::init(m);
            crate::console::enable_rx_interrupt();
        }
        None => log::warn!("interrupts: no MADT, so no I/O APIC: the console polls"),
    }
}

/// Firmware may leave the APs spinning (OVMF's MP services under TCG do, and 287 spinning
/// vCPUs on two host cores starve this one: every calibration against wall time comes out
/// wrong). An INIT to all but self parks them in wait-for-SIPI before anything is timed, and
/// the TSC is measured again. Limine's APs already wait in the kernel's pen, which an INIT
/// would tear them out of, so that path is left alone.
fn park_firmware_aps(bi: &crate::boot::BootInfo, madt: Option<&capmon_acpi::Madt>) {
    let limine_mp = bi.loader.starts_with("Limine") && crate::boot::limine::mp().is_some();
    let cpus = madt.map_or(0, |m| m.local_apics.iter().filter(|c| c.enabled).count());
    if limine_mp || cpus < 2 {
        return;
    }
    use capmon_apic::lapic::{Delivery, Dest};
    let before = crate::time::tsc_hz();
    if !lapic::lapic().send_ipi(Delivery::Init, Dest::AllButSelf, 1_000_000) {
        log::warn!("interrupts: the INIT to park the other CPUs was not accepted");
        return;
    }
    crate::time::recalibrate();
    log::info!(
        "interrupts: {} other CPUs parked by INIT; TSC {} MHz (measured {} MHz before)",
        cpus - 1,
        crate::time::tsc_hz() / 1_000_000,
        before / 1_000_000
    );
}

/// The kernel's interrupt layer as drivers see it.
pub struct KernelIrq;

pub static KERNEL_IRQ: KernelIrq = KernelIrq;

impl Interrupts for KernelIrq {
    fn alloc_msi(&self, owner: IrqOwner, mechanism: Mechanism, label: &str) -> Option<IrqVector> {
        self.alloc_msi_on(owner, mechanism, label, 0)
    }

    fn alloc_msi_on(
        &self,
        owner: IrqOwner,
        mechanism: Mechanism,
        label: &str,
        cpu: usize,
    ) -> Option<IrqVector> {
        if !ready() {
            return None;
        }
        // An offline or unknown CPU gets nothing: the boot CPU takes the interrupt instead.
        let apic_id = match crate::smp::cpus().get(cpu) {
            Some(c) if cpu != 0 && c.is_online() => c.apic_id(),
            _ => lapic::bsp_id(),
        };
        // Without interrupt remapping an MSI can name only APIC IDs 0..=255.
        if apic_id > 0xff {
            return None;
        }
        let vector = STATE.lock().vectors.alloc()?;
        let mech = match mechanism {
            Mechanism::MsiX => format!("MSI-X {}", owner.source),
            Mechanism::Msi => format!("MSI {}", owner.source),
            m => String::from(m.name()),
        };
        add_route(Route {
            vector,
            source: format!("{} {}", bdf_name(owner.bdf), label),
            mechanism: mech,
            apic_id: Some(apic_id),
        });
        Some(IrqVector {
            vector,
            apic_id,
            message: msi_message(apic_id, vector),
            event: event(vector),
        })
    }

    fn alloc_intx(&self, owner: IrqOwner, pin: u8, label: &str) -> Option<IrqVector> {
        intx::alloc(owner, pin, label)
    }

    fn free(&self, v: &IrqVector) {
        // A shared INTx line keeps its vector while other functions use it.
        if !intx::free(v) {
            free_vector(v.vector);
        }
    }

    fn end_intx(&self, v: &IrqVector) {
        intx::end(v);
    }

    fn wait_for(&self, event: &IrqEvent, seen: u64) {
        idle_unless(|| event.count() != seen);
    }
}

/// An MSI to one CPU, physical destination, fixed delivery, edge (SDM Vol. 3A §11.11.1-2).
pub fn msi_message(apic_id: u32, vector: u8) -> MsiMessage {
    MsiMessage {
        address: 0xfee0_0000 | ((apic_id as u64 & 0xff) << 12),
        data: vector as u32,
    }
}

pub fn bdf_name(bdf: u32) -> String {
    format!("{}", capmon_pci::Bdf::from_u32(bdf).short())
}
