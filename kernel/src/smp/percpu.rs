//! Per-CPU state: one `PerCpu` block per processor, reached through the GS base. IA32_GS_BASE
//! holds the block's address and the block's first word holds that address again, so
//! `mov rax, gs:[0]` yields a plain reference (the kernel never runs user code, so it never
//! needs `swapgs`). The boot CPU's block is a static installed first thing at boot; each AP's
//! is allocated by the BSP before the AP is started.
use core::fmt;
use core::sync::atomic::{
    AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering,
};

use crate::arch::gdt::CpuTables;
use crate::arch::traps::JmpBuf;

/// IA32_GS_BASE (SDM Vol. 4 Table 2-2).
const IA32_GS_BASE: u32 = 0xc000_0101;

/// Where a CPU is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum CpuState {
    /// Listed but never started (no trampoline, unreachable APIC ID, no memory).
    Offline = 0,
    /// INIT and SIPIs sent; not heard from yet.
    Starting = 1,
    /// Running kernel code, setting itself up.
    Arrived = 2,
    Online = 3,
    /// Never answered within the bring-up timeout; if it shows up later it parks itself.
    TimedOut = 4,
    /// Faulted outside any command and halted for good.
    Halted = 5,
}

impl CpuState {
    fn from_u8(v: u8) -> CpuState {
        match v {
            1 => CpuState::Starting,
            2 => CpuState::Arrived,
            3 => CpuState::Online,
            4 => CpuState::TimedOut,
            5 => CpuState::Halted,
            _ => CpuState::Offline,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            CpuState::Offline => "offline",
            CpuState::Starting => "starting",
            CpuState::Arrived => "arrived",
            CpuState::Online => "online",
            CpuState::TimedOut => "timed-out",
            CpuState::Halted => "halted",
        }
    }
}

/// What the next NMI on a CPU is for (set by the sender before it sends).
pub const NMI_REPORT: u8 = 0;
/// `ipi CPU nmi`: count it and return.
pub const NMI_PING: u8 = 1;
/// A command that overran its time: abandon it as if it had faulted.
pub const NMI_ABORT: u8 = 2;

#[repr(C)]
pub struct PerCpu {
    /// This block's own address: must stay the first field (read as `gs:[0]`).
    self_addr: AtomicUsize,
    /// Position in `smp::cpus()`: 0 is the boot CPU.
    pub index: u32,
    pub apic_id: AtomicU32,
    state: AtomicU8,
    /// Local APIC timer ticks taken.
    pub ticks: AtomicU64,
    /// TSC ticks spent halted, the TSC when the CPU came online, and at its last tick: all
    /// read on this CPU, so idle time never compares two CPUs' TSCs.
    pub idle_tsc: AtomicU64,
    pub online_tsc: AtomicU64,
    pub tick_tsc: AtomicU64,
    /// The next TSC deadline of this CPU's tick (TSC-deadline mode).
    pub next_deadline: AtomicU64,
    /// The fault guard of the command running on this CPU (arch::traps).
    pub guard: AtomicPtr<JmpBuf>,
    /// Where fault and panic reports go instead of the console (a command whose output is
    /// captured, see `on`).
    pub fault_sink: AtomicPtr<FaultLog>,
    pub nmis: AtomicU64,
    pub nmi_action: AtomicU8,
    /// IPIs handled (wake, ping, TLB) on this CPU.
    pub ipis: AtomicU64,
    /// The kernel stack slot (arch::stack) this CPU runs on.
    pub stack_slot: AtomicU64,
    /// GDT and TSS for an AP, built by the BSP before the AP starts (the BSP's are statics).
    pub tables: Option<&'static CpuTables>,
}

impl PerCpu {
    pub const fn new(index: u32, apic_id: u32, tables: Option<&'static CpuTables>) -> PerCpu {
        PerCpu {
            self_addr: AtomicUsize::new(0),
            index,
            apic_id: AtomicU32::new(apic_id),
            state: AtomicU8::new(CpuState::Offline as u8),
            ticks: AtomicU64::new(0),
            idle_tsc: AtomicU64::new(0),
            online_tsc: AtomicU64::new(0),
            tick_tsc: AtomicU64::new(0),
            next_deadline: AtomicU64::new(0),
            guard: AtomicPtr::new(core::ptr::null_mut()),
            fault_sink: AtomicPtr::new(core::ptr::null_mut()),
            nmis: AtomicU64::new(0),
            nmi_action: AtomicU8::new(NMI_REPORT),
            ipis: AtomicU64::new(0),
            stack_slot: AtomicU64::new(0),
            tables,
        }
    }

    pub fn apic_id(&self) -> u32 {
        self.apic_id.load(Ordering::Relaxed)
    }

    pub fn state(&self) -> CpuState {
        CpuState::from_u8(self.state.load(Ordering::Acquire))
    }

    pub fn set_state(&self, s: CpuState) {
        self.state.store(s as u8, Ordering::Release);
    }

    /// Moves `from` -> `to` if the state is still `from`; false if someone else moved it.
    pub fn transition(&self, from: CpuState, to: CpuState) -> bool {
        self.state
            .compare_exchange(from as u8, to as u8, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    pub fn is_online(&self) -> bool {
        self.state() == CpuState::Online
    }

    /// From this CPU's timer interrupt: one more tick.
    pub fn tick(&self) {
        self.ticks.fetch_add(1, Ordering::Relaxed);
        self.tick_tsc.store(crate::time::rdtsc(), Ordering::Relaxed);
    }

    /// Fraction of the time from coming online to its last tick spent halted, in tenths of a
    /// percent.
    pub fn idle_permille(&self) -> u64 {
        let since = self.online_tsc.load(Ordering::Relaxed);
        let total = self.tick_tsc.load(Ordering::Relaxed).saturating_sub(since);
        let idle = self.idle_tsc.load(Ordering::Relaxed);
        if total == 0 {
            0
        } else {
            ((idle as u128 * 1000) / total as u128).min(1000) as u64
        }
    }
}

/// The boot CPU's block (index 0; its APIC ID is filled in once the local APIC is up).
pub static BSP: PerCpu = PerCpu::new(0, 0, None);
/// GS base points at a `PerCpu` on every CPU that runs kernel code from here on.
static GS_READY: AtomicBool = AtomicBool::new(false);

/// Makes `cpu` the calling CPU's block: its own address in its first word, then GS base.
pub fn install(cpu: &'static PerCpu) {
    let addr = cpu as *const PerCpu as usize;
    cpu.self_addr.store(addr, Ordering::Relaxed);
    // SAFETY: IA32_GS_BASE exists on every x86_64 CPU; nothing in the kernel uses GS for
    // anything else, and the block it names lives forever.
    unsafe { x86_64::registers::model_specific::Msr::new(IA32_GS_BASE).write(addr as u64) };
}

/// Installs the boot CPU's block: the first thing `kernel_main` does.
pub fn init_bsp() {
    install(&BSP);
    BSP.online_tsc
        .store(crate::time::rdtsc(), Ordering::Relaxed);
    BSP.set_state(CpuState::Online);
    GS_READY.store(true, Ordering::Release);
}

/// The calling CPU's block.
pub fn this() -> &'static PerCpu {
    if !GS_READY.load(Ordering::Relaxed) {
        return &BSP;
    }
    let addr: usize;
    // SAFETY: once GS_READY is set, every CPU running kernel code has installed its block
    // (APs do it before anything can call this), and gs:[0] holds that block's address.
    unsafe {
        core::arch::asm!("mov {}, gs:[0]", out(reg) addr,
            options(nostack, readonly, preserves_flags))
    };
    // SAFETY: the address of a `PerCpu` that is never freed (a static or a leaked Box).
    unsafe { &*(addr as *const PerCpu) }
}

/// Halts until the next interrupt with interrupts enabled, counting the time as idle.
pub fn halt() {
    let t0 = crate::time::rdtsc();
    x86_64::instructions::interrupts::enable_and_hlt();
    let dt = crate::time::rdtsc().saturating_sub(t0);
    this().idle_tsc.fetch_add(dt, Ordering::Relaxed);
}

/// A fixed-size text buffer fault and panic reports are written into when a command's output
/// is captured: the fault path must not allocate.
pub struct FaultLog {
    buf: [u8; 4096],
    len: usize,
}

impl FaultLog {
    pub const fn new() -> FaultLog {
        FaultLog {
            buf: [0; 4096],
            len: 0,
        }
    }

    pub fn as_str(&self) -> &str {
        // Only whole `str`s are appended (see write_str), so this never fails.
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

impl fmt::Write for FaultLog {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = self.buf.len() - self.len;
        // Cut at a character boundary when full.
        let mut n = s.len().min(room);
        while !s.is_char_boundary(n) {
            n -= 1;
        }
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}
