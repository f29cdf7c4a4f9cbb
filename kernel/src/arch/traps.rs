//! CPU exceptions: entry code, a decoded report, and the fault guard that lets a command that
//! faults return to the monitor prompt.
//!
//! Every vector 0..=31 enters `trap_common` through a per-vector entry that pushes a uniform
//! frame (error code or 0, vector number, then all general registers). `trap_dispatch` prints the report; if
//! a guarded command is running, it rewrites the frame so that `iretq` resumes at the guard's
//! saved context (a longjmp), otherwise it halts.
//!
//! The guard is per CPU (`PerCpu::guard`): a fault on an AP resumes the command that AP runs.
//! A CPU whose command output is captured (`on`) has its reports written to its
//! `PerCpu::fault_sink` instead of the console. NMIs that `smp` sent on purpose (a ping, or
//! the abort of a command that overran its time) are handled without a report.
use core::arch::global_asm;
use core::fmt::Write;
use core::sync::atomic::Ordering;

use super::gdt;
use crate::smp::percpu::{self, CpuState, NMI_ABORT, NMI_PING};

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct TrapFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    pub vector: u64,
    pub error: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

/// Saved callee-saved context of `guard_call` (System V ABI).
#[repr(C)]
#[derive(Default)]
pub struct JmpBuf {
    rbx: u64,
    rbp: u64,
    r12: u64,
    r13: u64,
    r14: u64,
    r15: u64,
    rsp: u64,
    rip: u64,
}

impl JmpBuf {
    /// Rewrites trap frame `f` so that its `iretq` resumes this context, returning 1 from the
    /// call that saved it (guard_call, user_enter). Selectors and flags stay the caller's.
    pub fn resume_into(&self, f: &mut TrapFrame) {
        f.rbx = self.rbx;
        f.rbp = self.rbp;
        f.r12 = self.r12;
        f.r13 = self.r13;
        f.r14 = self.r14;
        f.r15 = self.r15;
        f.rsp = self.rsp;
        f.rip = self.rip;
        f.rax = 1;
    }
}

global_asm!(
    r#"
# The general registers, in TrapFrame order (r15 lowest).
.macro SAVE_REGS
    push rax
    push rbx
    push rcx
    push rdx
    push rsi
    push rdi
    push rbp
    push r8
    push r9
    push r10
    push r11
    push r12
    push r13
    push r14
    push r15
.endm
.macro RESTORE_REGS
    pop r15
    pop r14
    pop r13
    pop r12
    pop r11
    pop r10
    pop r9
    pop r8
    pop rbp
    pop rdi
    pop rsi
    pop rdx
    pop rcx
    pop rbx
    pop rax
.endm

.macro TRAP_NOERR n
trap_stub_\n:
    push 0
    push \n
    jmp trap_common
.endm
.macro TRAP_ERR n
trap_stub_\n:
    push \n
    jmp trap_common
.endm

.section .text
TRAP_NOERR 0
TRAP_NOERR 1
TRAP_NOERR 2
TRAP_NOERR 3
TRAP_NOERR 4
TRAP_NOERR 5
TRAP_NOERR 6
TRAP_NOERR 7
TRAP_ERR 8
TRAP_NOERR 9
TRAP_ERR 10
TRAP_ERR 11
TRAP_ERR 12
TRAP_ERR 13
TRAP_ERR 14
TRAP_NOERR 15
TRAP_NOERR 16
TRAP_ERR 17
TRAP_NOERR 18
TRAP_NOERR 19
TRAP_NOERR 20
TRAP_ERR 21
TRAP_NOERR 22
TRAP_NOERR 23
TRAP_NOERR 24
TRAP_NOERR 25
TRAP_NOERR 26
TRAP_NOERR 27
TRAP_NOERR 28
TRAP_ERR 29
TRAP_ERR 30
TRAP_NOERR 31

trap_common:
    SAVE_REGS
    mov rdi, rsp
    cld
    call {dispatch}
    RESTORE_REGS
    add rsp, 16
    iretq

.section .rodata
.balign 8
.global trap_stub_table
trap_stub_table:
    .quad trap_stub_0, trap_stub_1, trap_stub_2, trap_stub_3, trap_stub_4, trap_stub_5
    .quad trap_stub_6, trap_stub_7, trap_stub_8, trap_stub_9, trap_stub_10, trap_stub_11
    .quad trap_stub_12, trap_stub_13, trap_stub_14, trap_stub_15, trap_stub_16, trap_stub_17
    .quad trap_stub_18, trap_stub_19, trap_stub_20, trap_stub_21, trap_stub_22, trap_stub_23
    .quad trap_stub_24, trap_stub_25, trap_stub_26, trap_stub_27, trap_stub_28, trap_stub_29
    .quad trap_stub_30, trap_stub_31

# Vectors 32..=255: external interrupts and IPIs. Each stub is 16 bytes (push 0, push vector,
# jmp), so the stub of vector v is at irq_stubs + (v - 32) * 16.
.section .text
.balign 16
.global irq_stubs
irq_stubs:
.set irq_vec, 32
.rept 224
    .balign 16
    push 0
    push irq_vec
    jmp irq_common
.set irq_vec, irq_vec + 1
.endr

irq_common:
    SAVE_REGS
    mov rdi, [rsp + 15 * 8]
    mov rsi, rsp
    # The System V ABI wants a 16-byte aligned stack at the call. The CPU aligned RSP before
    # pushing its 5-word frame and 17 words followed, so it is aligned already; the mask
    # keeps that true should the stubs ever push an odd number of words.
    mov rbx, rsp
    and rsp, -16
    cld
    call {irq_dispatch}
    mov rsp, rbx
    RESTORE_REGS
    add rsp, 16
    iretq

.section .text
# u64 guard_call(extern "C" fn(*mut u8), *mut u8, *mut JmpBuf): saves the callee-saved context,
# calls f(arg) and returns 0; a fault inside f resumes here returning 1 (see guard_resume).
.global guard_call
guard_call:
    mov [rdx + 0], rbx
    mov [rdx + 8], rbp
    mov [rdx + 16], r12
    mov [rdx + 24], r13
    mov [rdx + 32], r14
    mov [rdx + 40], r15
    lea rax, [rsp + 8]
    mov [rdx + 48], rax
    mov rax, [rsp]
    mov [rdx + 56], rax
    mov rax, rdi
    mov rdi, rsi
    sub rsp, 8
    call rax
    add rsp, 8
    xor eax, eax
    ret

# ! guard_longjmp(*const JmpBuf): resumes a guard_call context, returning 1 from it.
.global guard_longjmp
guard_longjmp:
    mov rbx, [rdi + 0]
    mov rbp, [rdi + 8]
    mov r12, [rdi + 16]
    mov r13, [rdi + 24]
    mov r14, [rdi + 32]
    mov r15, [rdi + 40]
    mov rsp, [rdi + 48]
    mov eax, 1
    jmp qword ptr [rdi + 56]
"#,
    dispatch = sym trap_dispatch,
    irq_dispatch = sym crate::irq::dispatch,
);

unsafe extern "C" {
    static trap_stub_table: [u64; 32];
    static irq_stubs: u8;
    fn guard_call(f: extern "C" fn(*mut u8), arg: *mut u8, buf: *mut JmpBuf) -> u64;
    fn guard_longjmp(buf: *const JmpBuf) -> !;
}

#[repr(C, packed)]
#[derive(Clone, Copy)]
struct IdtEntry {
    offset_lo: u16,
    selector: u16,
    ist: u8,
    type_attr: u8,
    offset_mid: u16,
    offset_hi: u32,
    zero: u32,
}

static mut IDT: [IdtEntry; 256] = [IdtEntry {
    offset_lo: 0,
    selector: 0,
    ist: 0,
    type_attr: 0,
    offset_mid: 0,
    offset_hi: 0,
    zero: 0,
}; 256];

/// Installs gates for the 32 exception vectors and the 224 interrupt vectors (interrupt
/// gates, DPL 0).
pub fn init() {
    let sel = gdt::code_selector();
    // SAFETY: trap_stub_table is a read-only table of 32 code addresses defined above.
    let stubs = unsafe { &*core::ptr::addr_of!(trap_stub_table) };
    for (v, &addr) in stubs.iter().enumerate() {
        let ist = match v {
            8 => gdt::IST_DOUBLE_FAULT + 1,
            2 => gdt::IST_NMI + 1,
            18 => gdt::IST_MACHINE_CHECK + 1,
            _ => 0,
        } as u8;
        let e = IdtEntry {
            offset_lo: addr as u16,
            selector: sel,
            ist,
            type_attr: 0x8e, // present, DPL 0, 64-bit interrupt gate
            offset_mid: (addr >> 16) as u16,
            offset_hi: (addr >> 32) as u32,
            zero: 0,
        };
        // SAFETY: single-threaded boot; the IDT is written before it is loaded.
        unsafe { (*core::ptr::addr_of_mut!(IDT))[v] = e };
    }
    // irq_stubs is the start of 224 16-byte stubs defined above (only its address is taken).
    let irq_base = core::ptr::addr_of!(irq_stubs) as u64;
    for v in 32..256usize {
        let addr = irq_base + (v as u64 - 32) * 16;
        let e = IdtEntry {
            offset_lo: addr as u16,
            selector: sel,
            ist: 0,
            type_attr: 0x8e,
            offset_mid: (addr >> 16) as u16,
            offset_hi: (addr >> 32) as u32,
            zero: 0,
        };
        // SAFETY: as above.
        unsafe { (*core::ptr::addr_of_mut!(IDT))[v] = e };
    }
    load_idt();
}

/// Loads the IDT `init` built on the calling CPU (every CPU shares it).
pub fn load_idt() {
    let ptr = x86_64::structures::DescriptorTablePointer {
        limit: (core::mem::size_of::<[IdtEntry; 256]>() - 1) as u16,
        base: x86_64::VirtAddr::new(core::ptr::addr_of!(IDT) as u64),
    };
    // SAFETY: the IDT is a static that lives forever and holds valid gates for 0..32.
    unsafe { x86_64::instructions::tables::lidt(&ptr) };
}

/// Runs `f` with the calling CPU's report sink: its captured-output log when one is set,
/// otherwise the console (taken by force, see `console::emergency`).
pub fn with_report_sink(f: impl FnOnce(&mut dyn Write)) {
    let sink = percpu::this().fault_sink.load(Ordering::Acquire);
    if sink.is_null() {
        f(&mut *crate::console::emergency());
    } else {
        // SAFETY: a sink is set only by `with_captured_reports` for the duration of a call on
        // this CPU, and only this CPU writes it.
        f(unsafe { &mut *sink });
    }
}

/// Runs `f` with this CPU's fault and panic reports going into `log` instead of the console.
pub fn with_captured_reports<R>(log: &mut percpu::FaultLog, f: impl FnOnce() -> R) -> R {
    let me = percpu::this();
    let prev = me.fault_sink.swap(log, Ordering::AcqRel);
    let r = f();
    me.fault_sink.store(prev, Ordering::Release);
    r
}

pub const VECTOR_NAMES: [&str; 32] = [
    "#DE divide error",
    "#DB debug",
    "NMI",
    "#BP breakpoint",
    "#OF overflow",
    "#BR bound range exceeded",
    "#UD invalid opcode",
    "#NM device not available",
    "#DF double fault",
    "coprocessor segment overrun",
    "#TS invalid TSS",
    "#NP segment not present",
    "#SS stack-segment fault",
    "#GP general protection",
    "#PF page fault",
    "reserved",
    "#MF x87 floating-point",
    "#AC alignment check",
    "#MC machine check",
    "#XM SIMD floating-point",
    "#VE virtualization",
    "#CP control protection",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "#HV hypervisor injection",
    "#VC VMM communication",
    "#SX security",
    "reserved",
];

/// #PF error code bits (Intel SDM Vol. 3A §4.7).
fn decode_pf(err: u64, o: &mut dyn Write) {
    let _ = write!(
        o,
        "{} {} in {} mode{}{}{}",
        if err & 1 != 0 {
            "protection violation"
        } else {
            "page not present"
        },
        if err & 0x10 != 0 {
            "on instruction fetch"
        } else if err & 2 != 0 {
            "on write"
        } else {
            "on read"
        },
        if err & 4 != 0 { "user" } else { "supervisor" },
        if err & 8 != 0 {
            ", reserved bit set"
        } else {
            ""
        },
        if err & 0x20 != 0 {
            ", protection key"
        } else {
            ""
        },
        if err & 0x8000 != 0 { ", SGX" } else { "" },
    );
}

/// Selector error code (#GP, #TS, #NP, #SS; SDM Vol. 3A §6.13).
fn decode_selector(err: u64, o: &mut dyn Write) {
    if err == 0 {
        let _ = o.write_str("no selector (general protection, e.g. non-canonical address)");
        return;
    }
    let table = match (err >> 1) & 3 {
        0 => "GDT",
        2 => "LDT",
        _ => "IDT",
    };
    let _ = write!(
        o,
        "selector index {:#x} in {}{}",
        err >> 3,
        table,
        if err & 1 != 0 { ", external" } else { "" }
    );
}

/// Prints the exception report for `f`.
pub fn report(f: &TrapFrame, o: &mut dyn Write) {
    let v = f.vector as usize;
    let name = VECTOR_NAMES.get(v).copied().unwrap_or("unknown");
    let _ = writeln!(o, "\n*** EXCEPTION {} (vector {}) ***", name, v);
    if v == 8 || v == 14 {
        let cr2 = x86_64::registers::control::Cr2::read_raw();
        match super::stack::guard_slot(cr2).or(super::stack::guard_slot(f.rsp)) {
            Some(0) => {
                let _ = writeln!(
                    o,
                    "kernel stack overflow: the monitor stack ran into its guard page"
                );
            }
            Some(slot) => {
                let _ = writeln!(
                    o,
                    "kernel stack overflow: CPU {}'s stack ran into its guard page",
                    crate::smp::cpu_on_stack_slot(slot)
                        .map_or(alloc::string::String::from("?"), |c| alloc::format!(
                            "{}", c
                        ))
                );
            }
            None => {}
        }
    }
    match v {
        14 => {
            let _ = write!(o, "error code {:#x}: ", f.error);
            decode_pf(f.error, o);
            let _ = writeln!(o);
            let _ = writeln!(
                o,
                "CR2 (fault address) = {:#018x}",
                x86_64::registers::control::Cr2::read_raw()
            );
        }
        10..=13 => {
            let _ = write!(o, "error code {:#x}: ", f.error);
            decode_selector(f.error, o);
            let _ = writeln!(o);
        }
        8 | 17 | 21 | 29 | 30 => {
            let _ = writeln!(o, "error code {:#x}", f.error);
        }
        _ => {}
    }
    let _ = write!(o, "RIP={:#018x}", f.rip);
    match crate::symbols::lookup(f.rip) {
        Some((name, off)) => {
            let _ = writeln!(o, " <{}+{:#x}>", name, off);
        }
        None => {
            let _ = writeln!(o, " <no symbol>");
        }
    }
    let _ = writeln!(
        o,
        "RSP={:#018x} RFLAGS={:#018x} CS={:#x} SS={:#x}",
        f.rsp, f.rflags, f.cs, f.ss
    );
    let _ = writeln!(
        o,
        "RAX={:#018x} RBX={:#018x} RCX={:#018x} RDX={:#018x}",
        f.rax, f.rbx, f.rcx, f.rdx
    );
    let _ = writeln!(
        o,
        "RSI={:#018x} RDI={:#018x} RBP={:#018x} R8 ={:#018x}",
        f.rsi, f.rdi, f.rbp, f.r8
    );
    let _ = writeln!(
        o,
        "R9 ={:#018x} R10={:#018x} R11={:#018x} R12={:#018x}",
        f.r9, f.r10, f.r11, f.r12
    );
    let _ = writeln!(
        o,
        "R13={:#018x} R14={:#018x} R15={:#018x}",
        f.r13, f.r14, f.r15
    );
}

extern "C" fn trap_dispatch(f: &mut TrapFrame) {
    let me = percpu::this();
    let mut aborting = false;
    if f.vector == 2 {
        me.nmis.fetch_add(1, Ordering::AcqRel);
        match me.nmi_action.swap(percpu::NMI_REPORT, Ordering::AcqRel) {
            // Counted; the sender watches `nmis`.
            NMI_PING => return,
            NMI_ABORT => aborting = true,
            _ => {}
        }
    }
    // A fault in ring 3 is the running program's: reported as its, and `run` resumes.
    if f.cs & 3 == 3 && !aborting {
        crate::user::on_user_fault(f);
        return;
    }
    if aborting && me.guard.load(Ordering::SeqCst).is_null() {
        // The command ended on its own just before the NMI arrived.
        return;
    }
    if aborting {
        with_report_sink(|o| {
            let _ = writeln!(
                o,
                "\n*** command on CPU {} overran its time: stopped by NMI ***",
                me.index
            );
        });
    } else {
        with_report_sink(|o| report(f, o));
    }
    let guard = me.guard.swap(core::ptr::null_mut(), Ordering::SeqCst);
    if guard.is_null() {
        if aborting {
            return;
        }
        if me.index == 0 {
            let _ = writeln!(
                crate::console::emergency(),
                "fault outside any command: system halted"
            );
        } else {
            me.set_state(CpuState::Halted);
            let _ = writeln!(
                crate::console::emergency(),
                "fault outside any command on CPU {}: CPU {} halted",
                me.index,
                me.index
            );
        }
        halt_forever();
    }
    crate::mem::heap::recover_after_fault();
    // A fault inside an interrupt handler leaves its vector in service: end it, or that
    // vector and every lower-priority one stay blocked.
    crate::irq::end_in_service();
    with_report_sink(|o| {
        let _ = writeln!(o, "command aborted; back to the monitor");
    });
    // Resume with interrupts on, whatever the faulting context had (an interrupt handler
    // runs with them off).
    f.rflags |= 0x200;
    // SAFETY: `guard` points at the JmpBuf of a guard_call frame that is still live below us on
    // this CPU's stack (`guarded` takes it out of PerCpu::guard before that frame is left).
    unsafe { &*guard }.resume_into(f);
}

pub fn halt_forever() -> ! {
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}

/// Runs `f` under the calling CPU's fault guard; `None` if it faulted (the report has been
/// printed). Nests: an inner guard replaces the outer one for its duration.
pub fn guarded<R, F: FnOnce() -> R>(f: F) -> Option<R> {
    struct Slot<F, R> {
        f: Option<F>,
        r: Option<R>,
    }
    extern "C" fn tramp<R, F: FnOnce() -> R>(arg: *mut u8) {
        // SAFETY: `arg` is the `Slot` that `guarded` passed, alive for the whole call.
        let slot = unsafe { &mut *(arg as *mut Slot<F, R>) };
        if let Some(f) = slot.f.take() {
            slot.r = Some(f());
        }
    }
    let mut slot = Slot {
        f: Some(f),
        r: None,
    };
    let mut buf = JmpBuf::default();
    let me = percpu::this();
    let outer = me.guard.swap(&mut buf, Ordering::SeqCst);
    // A fault may skip whoever set a report sink inside `f`: restore ours afterwards.
    let sink = me.fault_sink.load(Ordering::Acquire);
    // SAFETY: guard_call saves our callee-saved registers and returns normally or through
    // trap_dispatch/guard_longjmp to this frame, which is still live.
    let faulted = unsafe {
        guard_call(
            tramp::<R, F>,
            &mut slot as *mut Slot<F, R> as *mut u8,
            &mut buf,
        )
    };
    me.guard.store(outer, Ordering::SeqCst);
    me.fault_sink.store(sink, Ordering::Release);
    // The trampoline wrote `slot` behind the compiler's back (through a raw pointer in asm).
    let slot = core::hint::black_box(&mut slot);
    if faulted == 0 {
        slot.r.take()
    } else {
        None
    }
}

/// Whether a guarded call is running on this CPU (code that may run both inside a command
/// and at boot asks first).
pub fn in_guarded() -> bool {
    !percpu::this().guard.load(Ordering::SeqCst).is_null()
}

/// From the panic handler: abandons the running command, if any.
pub fn abort_guarded_command() {
    let guard = percpu::this()
        .guard
        .swap(core::ptr::null_mut(), Ordering::SeqCst);
    if !guard.is_null() {
        crate::mem::heap::recover_after_fault();
        crate::irq::end_in_service();
        with_report_sink(|o| {
            let _ = writeln!(o, "command aborted; back to the monitor");
        });
        // A panic inside an interrupt handler ran with interrupts off; the monitor runs
        // with them on.
        x86_64::instructions::interrupts::enable();
        // SAFETY: as in trap_dispatch: the guard's frame is live below us.
        unsafe { guard_longjmp(guard) }
    }
}
