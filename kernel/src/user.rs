//! User-mode programs: a boot binary loaded from the ISO through readBinaryChunk into a fresh
//! address space, run in ring 3 on the boot CPU, with the system calls of
//! docs/boot-binaries.md (`syscall`: exit, write, read). The program ends by `exit`, by a
//! fault (reported as the program's), or by Ctrl-C at the console; the monitor then goes on.
use crate::arch::gdt;
use crate::arch::traps::{JmpBuf, TrapFrame};
use crate::mem::paging::UserSpace;
use alloc::string::String;
use alloc::vec::Vec;
use capmon_bootpkg::elf::{self, Image, PAGE, USER_TOP};
use capmon_cmds::run::{RunOutcome, RunRequest};
use core::arch::global_asm;
use core::fmt::Write;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};

/// The program's stack: its top (arguments above it, below USER_TOP + 1 MiB) and size.
const STACK_TOP: u64 = USER_TOP + (1 << 20) - 0x1000;
const STACK_BYTES: u64 = 256 << 10;
/// Where the arguments go (one page above the stack, read-only for the program).
const ARGS_AT: u64 = STACK_TOP;
/// The most one write or read call moves.
const MAX_IO: u64 = 64 << 10;
const KSTACK_BYTES: usize = 64 << 10;

// System call numbers and errors (docs/boot-binaries.md).
const SYS_EXIT: u64 = 0;
const SYS_WRITE: u64 = 1;
const SYS_READ: u64 = 2;
const E_FAULT: i64 = -1;
const E_HANDLE: i64 = -2;
const E_IO: i64 = -3;
const E_NOSYS: i64 = -38;

/// Only its address is used (the field is never read by name).
#[repr(align(16))]
struct KStack(#[allow(dead_code)] [u8; KSTACK_BYTES]);
/// The kernel stack interrupts, exceptions and system calls from ring 3 run on.
static mut KSTACK: KStack = KStack([0; KSTACK_BYTES]);

/// Read by syscall_entry: the kernel stack top, and a slot for the user RSP.
#[unsafe(no_mangle)]
static mut USER_KSTACK_TOP: u64 = 0;
#[unsafe(no_mangle)]
static mut USER_RSP_SCRATCH: u64 = 0;

/// Why the program stopped, set before resuming the `run` context.
const END_EXIT: u64 = 1;
const END_FAULT: u64 = 2;
const END_KILLED: u64 = 3;
static END: AtomicU64 = AtomicU64::new(0);
static STATUS: AtomicU64 = AtomicU64::new(0);
static RUNNING: AtomicBool = AtomicBool::new(false);
static KILL: AtomicBool = AtomicBool::new(false);
/// The `run` context to resume (a JmpBuf on the kernel stack of `run`).
static RESUME: AtomicPtr<JmpBuf> = AtomicPtr::new(core::ptr::null_mut());
/// The running program's state, for the system calls (valid while RUNNING).
static CURRENT: AtomicPtr<Current<'static, 'static>> = AtomicPtr::new(core::ptr::null_mut());

struct Current<'o, 'i> {
    space: UserSpace,
    out: &'o mut dyn Write,
    input: Option<capmon_cmds::run::Reader<'i>>,
    syscalls: u64,
    fault: Option<String>,
}

global_asm!(
    r#"
.section .text
# SYSCALL from ring 3: rcx = user rip, r11 = user rflags, interrupts masked (FMASK).
.global syscall_entry
syscall_entry:
    mov [rip + USER_RSP_SCRATCH], rsp
    mov rsp, [rip + USER_KSTACK_TOP]
    push qword ptr [rip + USER_RSP_SCRATCH]
    push r11
    push rcx
    push rax
    push rdi
    push rsi
    push rdx
    push r10
    push r8
    push r9
    mov rdi, rsp
    cld
    call {dispatch}
    pop r9
    pop r8
    pop r10
    pop rdx
    pop rsi
    pop rdi
    add rsp, 8
    pop rcx
    pop r11
    pop rsp
    sysretq

# u64 user_enter(entry, user_rsp, argv, argc, *mut JmpBuf): saves the caller's context like
# guard_call, then IRETQ to ring 3. Returns (1, through guard_longjmp or a rewritten frame)
# when the program has ended.
.global user_enter
user_enter:
    mov [r8 + 0], rbx
    mov [r8 + 8], rbp
    mov [r8 + 16], r12
    mov [r8 + 24], r13
    mov [r8 + 32], r14
    mov [r8 + 40], r15
    lea rax, [rsp + 8]
    mov [r8 + 48], rax
    mov rax, [rsp]
    mov [r8 + 56], rax
    push {user_ss}
    push rsi
    push 0x202
    push {user_cs}
    push rdi
    mov rdi, rdx
    mov rsi, rcx
    xor eax, eax
    xor ebx, ebx
    xor ecx, ecx
    xor edx, edx
    xor ebp, ebp
    xor r8d, r8d
    xor r9d, r9d
    xor r10d, r10d
    xor r11d, r11d
    xor r12d, r12d
    xor r13d, r13d
    xor r14d, r14d
    xor r15d, r15d
    iretq
"#,
    dispatch = sym syscall_dispatch,
    user_ss = const 0x2b,
    user_cs = const 0x33,
);

unsafe extern "C" {
    fn syscall_entry();
    fn user_enter(entry: u64, rsp: u64, argv: u64, argc: u64, buf: *mut JmpBuf) -> u64;
    fn guard_longjmp(buf: *const JmpBuf) -> !;
}

/// SYSCALL's MSRs on the boot CPU: EFER.SCE, STAR (kernel CS 0x08; SYSRET's base 0x20, so
/// user SS 0x28 and CS 0x30, RPL 3), LSTAR, FMASK (IF, DF, TF, AC cleared on entry); the TSS's
/// RSP0. Checks the GDT has the user selectors where SYSRET looks for them.
pub fn init() {
    let (cs, ss) = gdt::user_selectors();
    if (cs, ss) != (0x33, 0x2b) || gdt::code_selector() != 0x08 {
        log::error!(
            "user mode: unexpected GDT layout (user CS {:#x} SS {:#x}); run is off",
            cs,
            ss
        );
        return;
    }
    let top = core::ptr::addr_of!(KSTACK) as u64 + KSTACK_BYTES as u64;
    // SAFETY: written once at boot, read by syscall_entry only after this.
    unsafe { core::ptr::addr_of_mut!(USER_KSTACK_TOP).write(top) };
    gdt::set_rsp0(top);
    use x86_64::registers::model_specific::Msr;
    // SAFETY: architectural MSRs (SDM Vol. 3A §5.8.8); the values are the ones described above.
    unsafe {
        let mut efer = Msr::new(0xc000_0080);
        efer.write(efer.read() | 1);
        Msr::new(0xc000_0081).write((0x20u64 << 48) | (0x08u64 << 32));
        Msr::new(0xc000_0082).write(syscall_entry as *const () as usize as u64);
        Msr::new(0xc000_0084).write(0x4_0700);
    }
    READY.store(true, Ordering::Release);
}

static READY: AtomicBool = AtomicBool::new(false);

/// Whether a program runs now (the console's receive interrupt asks, for Ctrl-C).
pub fn running() -> bool {
    RUNNING.load(Ordering::Acquire)
}

/// Ctrl-C at the console while a program runs: it is stopped at its next interrupt.
pub fn request_kill() {
    KILL.store(true, Ordering::Release);
}

/// Resumes the `run` context from an interrupt or exception frame taken in ring 3.
fn resume_from(f: &mut TrapFrame, why: u64) {
    END.store(why, Ordering::Release);
    let buf = RESUME.load(Ordering::Acquire);
    // SAFETY: RESUME points at the JmpBuf of `run`'s frame, live below us on the kernel stack
    // (set before entering ring 3, cleared after).
    unsafe { &*buf }.resume_into(f);
    // Back to ring 0, interrupts on.
    f.cs = u64::from(gdt::code_selector());
    f.ss = u64::from(gdt::data_selector());
    f.rflags = 0x202;
}

/// From the exception path: a fault in ring 3 is the program's. Reported, and `run` resumes.
pub fn on_user_fault(f: &mut TrapFrame) {
    let cur = CURRENT.load(Ordering::Acquire);
    let mut report = String::new();
    crate::arch::traps::report(f, &mut report);
    if !cur.is_null() {
        // SAFETY: CURRENT is `run`'s state, live while the program runs (we are inside it).
        unsafe { (*cur).fault = Some(report) };
    }
    crate::irq::end_in_service();
    resume_from(f, END_FAULT);
}

/// From the interrupt path, before returning to ring 3: a pending Ctrl-C ends the program.
pub fn on_irq_return(f: &mut TrapFrame) {
    if f.cs & 3 == 3 && RUNNING.load(Ordering::Acquire) && KILL.swap(false, Ordering::AcqRel) {
        resume_from(f, END_KILLED);
    }
}

#[repr(C)]
struct SyscallFrame {
    r9: u64,
    r8: u64,
    r10: u64,
    rdx: u64,
    rsi: u64,
    rdi: u64,
    rax: u64,
    rcx: u64,
    r11: u64,
    rsp: u64,
}

extern "C" fn syscall_dispatch(f: &mut SyscallFrame) -> i64 {
    let cur = CURRENT.load(Ordering::Acquire);
    if cur.is_null() {
        return E_NOSYS;
    }
    // SAFETY: as in on_user_fault; system calls run with interrupts masked, one at a time.
    let c = unsafe { &mut *cur };
    c.syscalls += 1;
    match f.rax {
        SYS_EXIT => {
            STATUS.store(f.rdi, Ordering::Release);
            END.store(END_EXIT, Ordering::Release);
            let buf = RESUME.load(Ordering::Acquire);
            // SAFETY: as in resume_from; `run`'s frame is below this one on the kernel stack.
            unsafe { guard_longjmp(buf) }
        }
        SYS_WRITE => {
            let (ptr, len) = (f.rdi, f.rsi);
            if len > MAX_IO {
                return E_FAULT;
            }
            let Some(bytes) = copy_in(&c.space, ptr, len) else {
                return E_FAULT;
            };
            let _ = c.out.write_str(&String::from_utf8_lossy(&bytes));
            len as i64
        }
        SYS_READ => {
            let (handle, off, ptr, len) = (f.rdi, f.rsi, f.rdx, f.r10.min(MAX_IO));
            let Some(input) = c.input.as_mut().filter(|_| handle == 0) else {
                return E_HANDLE;
            };
            if !writable(&c.space, ptr, len) {
                return E_FAULT;
            }
            match input(off, len as u32) {
                Ok(data) => {
                    c.space.fill(ptr, &data);
                    data.len() as i64
                }
                Err(_) => E_IO,
            }
        }
        _ => E_NOSYS,
    }
}

/// `len` bytes the program owns at `ptr` (mapped user pages), or None.
fn copy_in(space: &UserSpace, ptr: u64, len: u64) -> Option<Vec<u8>> {
    let end = ptr.checked_add(len)?;
    if end > 1 << 39 {
        return None;
    }
    let mut out = Vec::with_capacity(len as usize);
    let mut p = ptr;
    while p < end {
        let n = ((p | (PAGE - 1)) + 1).min(end) - p;
        let k = space.kernel_addr(p)?;
        // SAFETY: `k` is the kernel alias of `n` bytes of one mapped user page.
        out.extend_from_slice(unsafe { core::slice::from_raw_parts(k, n as usize) });
        p += n;
    }
    Some(out)
}

fn writable(space: &UserSpace, ptr: u64, len: u64) -> bool {
    let Some(end) = ptr.checked_add(len) else {
        return false;
    };
    // The program's writable memory: its stack and its writable segments' pages, known to
    // the space; a page outside those is not mapped writable (checked by mapping state).
    let mut p = ptr & !(PAGE - 1);
    while p < end {
        if space.kernel_addr(p).is_none() || !space.is_writable(p) {
            return false;
        }
        p += PAGE;
    }
    end <= 1 << 39
}

/// Loads `image` (checked by `elf::validate`) into `space`, reading each segment's file bytes
/// through `chunk(offset, len)`.
fn load(
    space: &mut UserSpace,
    image: &Image,
    chunk: &mut dyn FnMut(u64, u32) -> Result<Vec<u8>, String>,
) -> Result<(), String> {
    for s in &image.segments {
        let (first, end) = s.pages();
        let mut va = first;
        while va < end {
            space
                .map_user(va, s.write, s.exec)
                .ok_or("out of memory for the program's pages")?;
            va += PAGE;
        }
        let mut done = 0u64;
        while done < s.filesz {
            let n = (s.filesz - done).min(MAX_IO) as u32;
            let data = chunk(s.offset + done, n)?;
            if data.len() as u64 != u64::from(n) {
                return Err(alloc::format!(
                    "the binary ended at {} of a segment",
                    s.offset + done
                ));
            }
            space.fill(s.vaddr + done, &data);
            done += u64::from(n);
        }
    }
    Ok(())
}

/// Runs the program `req` describes: loads it, enters ring 3, and returns how it ended.
pub fn run(req: &mut RunRequest<'_>, out: &mut dyn Write) -> Result<RunOutcome, String> {
    if !READY.load(Ordering::Acquire) {
        return Err(String::from("user mode is not set up on this machine"));
    }
    if crate::smp::percpu::this().index != 0 {
        return Err(String::from("programs run on CPU 0 only"));
    }
    let head = (req.read)(0, elf::HEAD_BYTES.min(req.size as usize) as u32)?;
    let image =
        elf::validate(&head, req.size).map_err(|e| alloc::format!("{}: {}", req.name, e))?;
    let mut space =
        UserSpace::new().ok_or("no address space (memory, or the loader's low mapping)")?;
    load(&mut space, &image, req.read)?;
    // Stack, then the arguments: `Arg { ptr, len }` records, then their bytes.
    let mut va = STACK_TOP - STACK_BYTES;
    while va < STACK_TOP {
        space
            .map_user(va, true, false)
            .ok_or("out of memory for the stack")?;
        va += PAGE;
    }
    let mut block: Vec<u8> = Vec::new();
    let n = req.args.len() as u64;
    let mut text_at = ARGS_AT + 16 * n;
    let mut text: Vec<u8> = Vec::new();
    for a in req.args.iter() {
        block.extend_from_slice(&text_at.to_le_bytes());
        block.extend_from_slice(&(a.len() as u64).to_le_bytes());
        text.extend_from_slice(a.as_bytes());
        text_at += a.len() as u64;
    }
    block.extend_from_slice(&text);
    if block.len() as u64 > PAGE {
        return Err(String::from("the arguments are over 4 KiB"));
    }
    space
        .map_user(ARGS_AT, false, false)
        .ok_or("out of memory for the arguments")?;
    space.fill(ARGS_AT, &block);

    let mut cur = Current {
        space,
        out,
        input: req.input.take(),
        syscalls: 0,
        fault: None,
    };
    let mut buf = JmpBuf::default();
    let t0 = crate::time::now_ns();
    KILL.store(false, Ordering::Release);
    END.store(0, Ordering::Release);
    CURRENT.store(
        (&mut cur as *mut Current<'_, '_>).cast::<Current<'static, 'static>>(),
        Ordering::Release,
    );
    RESUME.store(&mut buf, Ordering::Release);
    let kernel_cr3 = crate::mem::paging::kernel_pml4();
    // SAFETY: the program's PML4 maps the kernel's higher half exactly as the kernel's does,
    // so this code, its stack and every interrupt path stay mapped; user_enter returns here
    // when the program ends (exit, fault or Ctrl-C), with CR3 still the program's.
    unsafe {
        x86_64::instructions::interrupts::disable();
        RUNNING.store(true, Ordering::Release);
        load_cr3(cur.space.cr3());
        user_enter(image.entry, STACK_TOP, ARGS_AT, n, &mut buf);
        load_cr3(kernel_cr3);
        RUNNING.store(false, Ordering::Release);
        x86_64::instructions::interrupts::enable();
    }
    CURRENT.store(core::ptr::null_mut(), Ordering::Release);
    RESUME.store(core::ptr::null_mut(), Ordering::Release);
    let ms = crate::time::now_ns().saturating_sub(t0) / 1_000_000;
    let outcome = match END.load(Ordering::Acquire) {
        END_EXIT => RunOutcome::Exited(STATUS.load(Ordering::Acquire)),
        END_KILLED => RunOutcome::Killed,
        _ => RunOutcome::Faulted(cur.fault.take().unwrap_or_default()),
    };
    req.syscalls = cur.syscalls;
    req.ms = ms;
    req.input = cur.input.take();
    Ok(outcome)
}

/// # Safety
/// `pml4` must map the running code, stack and data as the kernel's PML4 does.
unsafe fn load_cr3(pml4: u64) {
    use x86_64::registers::control::{Cr3, Cr3Flags};
    use x86_64::structures::paging::PhysFrame;
    // SAFETY: the caller's promise.
    unsafe {
        Cr3::write(
            PhysFrame::containing_address(x86_64::PhysAddr::new(pml4)),
            Cr3Flags::empty(),
        )
    };
}
