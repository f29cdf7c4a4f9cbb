//! Under Limine: where the APs wait until `smp::init` starts them.
//!
//! Limine starts every AP and parks it spinning on its goto address (Limine protocol, "MP
//! feature"). Hundreds of spinning CPUs starve a host that emulates them on a few cores (the
//! BSP then boots slowly and even calibrates its clocks wrong), so the first thing the kernel
//! does under Limine is to send each AP here: it loads a GDT with the kernel's selectors
//! (0x08 code, 0x10 data) and a minimal IDT whose only gate, NMI, just returns, marks itself
//! as penned (its MpInfo's extra argument := 1) and halts with interrupts off. `open` lets
//! them go: a CPU still in the pen is kicked with an NMI (again on every check, since an NMI
//! can land just before its `hlt`) and continues at `ap_long_entry`, like a CPU out of the
//! INIT-SIPI-SIPI trampoline. Because the pen's selectors are the kernel's, a late kick is
//! harmless at every step of `ap_main` (pen or kernel GDT, pen or kernel IDT).
use core::arch::global_asm;
use core::sync::atomic::{AtomicU32, Ordering};

/// Nonzero once the APs may leave the pen (read by `limine_pen_entry`).
static OPEN: AtomicU32 = AtomicU32::new(0);

/// The pen's IDT: gates 0..=2, only the NMI one (2) present.
#[repr(C, align(16))]
struct PenIdt([u64; 6]);
static mut PEN_IDT: PenIdt = PenIdt([0; 6]);
/// The pen's GDT: null, 64-bit code at 0x08, data at 0x10, as in `arch::gdt`. The accessed
/// bits are set already: Limine maps rodata read-only, and a segment load would write them.
#[repr(C, align(16))]
struct PenGdt([u64; 3]);
static PEN_GDT: PenGdt = PenGdt([0, 0x00AF_9B00_0000_FFFF, 0x00CF_9300_0000_FFFF]);
/// A descriptor-table register image (limit, base).
#[repr(C, packed)]
struct TableRegister {
    limit: u16,
    base: u64,
}
static mut PEN_IDTR: TableRegister = TableRegister { limit: 0, base: 0 };
static mut PEN_GDTR: TableRegister = TableRegister { limit: 0, base: 0 };
const SEL_CODE: u64 = 0x08;

global_asm!(
    r#"
.section .text
# extern "C" fn(info: &MpInfo) -> !, entered from Limine's park loop on the loader's stack.
.global limine_pen_entry
limine_pen_entry:
    cli
    lgdt [rip + {gdtr}]
    push 0x08                           # reload CS from the pen's GDT
    lea rax, [rip + 3f]
    push rax
    retfq
3:  mov ax, 0x10
    mov ss, ax
    mov ds, ax
    mov es, ax
    lidt [rip + {idtr}]
    mov qword ptr [rdi + {extra}], 1    # MpInfo.extra_argument: in the pen
1:  mov eax, dword ptr [rip + {open}]
    test eax, eax
    jnz 2f
    hlt
    jmp 1b
2:  jmp ap_long_entry

# The pen's NMI gate: only wakes the CPU from `hlt`.
.global limine_pen_nmi
limine_pen_nmi:
    iretq
"#,
    idtr = sym PEN_IDTR,
    gdtr = sym PEN_GDTR,
    open = sym OPEN,
    extra = const EXTRA_ARGUMENT_OFFSET,
);

unsafe extern "C" {
    fn limine_pen_entry(info: &limine::mp::MpInfo) -> !;
    fn limine_pen_nmi();
}

/// Byte offset of `extra_argument` in `struct limine_mp_info` (x86_64: processor_id u32,
/// lapic_id u32, reserved u64, goto_address u64, extra_argument u64), which the pen writes.
const EXTRA_ARGUMENT_OFFSET: usize = 24;

/// Sends every AP of Limine's MP response into the pen. The first thing `kmain_limine` does:
/// nothing else of the kernel runs yet.
pub fn enter() {
    let Some((bsp, cpus)) = crate::boot::limine::mp() else {
        return;
    };
    let handler = limine_pen_nmi as *const () as u64;
    // A 64-bit interrupt gate (SDM Vol. 3A Figure 6-8): offset 15:0, selector, type 0x8e
    // (present, DPL 0), offset 31:16; then offset 63:32.
    let low =
        (handler & 0xffff) | (SEL_CODE << 16) | (0x8e << 40) | (((handler >> 16) & 0xffff) << 48);
    // SAFETY: only the BSP writes these, before any AP is sent to the pen that reads them.
    unsafe {
        let idt = &mut *core::ptr::addr_of_mut!(PEN_IDT);
        idt.0[4] = low;
        idt.0[5] = handler >> 32;
        let idtr = &mut *core::ptr::addr_of_mut!(PEN_IDTR);
        idtr.limit = (core::mem::size_of::<PenIdt>() - 1) as u16;
        idtr.base = idt as *const PenIdt as u64;
        let gdtr = &mut *core::ptr::addr_of_mut!(PEN_GDTR);
        gdtr.limit = (core::mem::size_of::<PenGdt>() - 1) as u16;
        gdtr.base = core::ptr::addr_of!(PEN_GDT) as u64;
    }
    for c in cpus.iter().filter(|c| c.lapic_id != bsp) {
        c.bootstrap(limine_pen_entry, 0);
    }
}

/// Whether the AP behind `info` has reached the pen (an NMI is safe to send it).
pub fn penned(info: &limine::mp::MpInfo) -> bool {
    info.extra_argument() == 1
}

/// Lets the penned APs go on to `ap_long_entry` (after `trampoline::set_stacks`).
pub fn open() {
    OPEN.store(1, Ordering::Release);
}
