//! The AP start-up trampoline: 16-bit real mode -> 32-bit protected mode -> long mode, copied
//! into one page below 1 MiB that a start-up IPI names (SDM Vol. 3A §9.4.4 "MP
//! initialization", §11.6.1: the SIPI vector is the page number, CS = vector << 8, IP = 0).
//!
//! The code is position-independent: in real mode it finds its own linear base from CS; every
//! absolute address it needs (its GDT's base, the two far-jump targets, CR3, the 64-bit entry)
//! is a data field the BSP fills in after copying (`install`). Every AP runs the same copy at
//! the same time, so the trampoline writes no memory and uses no stack: the far jumps go
//! through memory operands, not push/retf.
//!
//! Long mode is entered with the trampoline's own CR3 (`paging::trampoline_pml4`: this page
//! identity-mapped, the kernel's higher half shared), then `ap_long_entry`, in the kernel's
//! text, switches to the kernel's CR3, takes a ticket that picks its stack, and calls
//! `smp::ap_main(ticket)`.
use core::arch::global_asm;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Selectors of the trampoline's GDT.
const SEL_CODE64: u16 = 0x08;
const SEL_CODE32: u16 = 0x18;

global_asm!(
    r#"
.section .rodata.ap_trampoline, "a"
.balign 16
.global ap_trampoline_start
ap_trampoline_start:
.code16
    cli
    cld
    mov ax, cs
    mov ds, ax
    xor ebx, ebx
    mov bx, ax
    shl ebx, 4                          # ebx = the page's linear base, kept to the end
    # lgdt [ap_tramp_gdtr] (0F 01 /2, 16-bit address; the assembler takes no label
    # differences in memory operands, hence the hand encoding here and below).
    .byte 0x0f, 0x01, 0x16
    .short ap_tramp_gdtr - ap_trampoline_start
    mov eax, cr0
    or eax, 1                           # CR0.PE
    mov cr0, eax
    # jmp far m16:32 [ap_tramp_far32] (66 FF /5, 16-bit address): into 32-bit code.
    .byte 0x66, 0xff, 0x2e
    .short ap_tramp_far32 - ap_trampoline_start

.code32
.global ap_tramp_pm32
ap_tramp_pm32:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov fs, ax
    mov gs, ax
    mov eax, cr4
    or eax, 1 << 5                      # CR4.PAE
    mov cr4, eax
    # mov eax, [ebx + ap_tramp_cr3] (8B /r, [ebx + disp32])
    .byte 0x8b, 0x83
    .long ap_tramp_cr3 - ap_trampoline_start
    mov cr3, eax
    mov ecx, 0xC0000080                 # IA32_EFER: LME, and NXE (the kernel's tables use NX)
    rdmsr
    or eax, (1 << 8) | (1 << 11)
    wrmsr
    mov eax, cr0
    or eax, (1 << 31) | (1 << 16)       # CR0.PG, CR0.WP
    mov cr0, eax
    # jmp far m16:32 [ebx + ap_tramp_far64] (FF /5, [ebx + disp32]): into 64-bit code.
    .byte 0xff, 0xab
    .long ap_tramp_far64 - ap_trampoline_start

.code64
.global ap_tramp_lm64
ap_tramp_lm64:
    mov ebx, ebx                        # the upper half is undefined after the mode switch
    # mov rax, [rbx + ap_tramp_entry] (REX.W 8B /r, [rbx + disp32])
    .byte 0x48, 0x8b, 0x83
    .long ap_tramp_entry - ap_trampoline_start
    jmp rax

.balign 8
.global ap_tramp_gdt
ap_tramp_gdt:
    .quad 0
    .quad 0x00AF9A000000FFFF            # 0x08: 64-bit code
    .quad 0x00CF92000000FFFF            # 0x10: data
    .quad 0x00CF9A000000FFFF            # 0x18: 32-bit code
ap_tramp_gdt_end:
.global ap_tramp_gdtr
ap_tramp_gdtr:
    .short ap_tramp_gdt_end - ap_tramp_gdt - 1
    .long 0                             # filled: base + (ap_tramp_gdt - start)
.global ap_tramp_far32
ap_tramp_far32:
    .long 0                             # filled: base + (ap_tramp_pm32 - start)
    .short 0
.global ap_tramp_far64
ap_tramp_far64:
    .long 0                             # filled: base + (ap_tramp_lm64 - start)
    .short 0
.balign 8
.global ap_tramp_cr3
ap_tramp_cr3:
    .quad 0                             # filled: the trampoline PML4 (below 4 GiB)
.global ap_tramp_entry
ap_tramp_entry:
    .quad 0                             # filled: ap_long_entry
.global ap_trampoline_end
ap_trampoline_end:

.section .text
# The 64-bit entry in the kernel's own text: the kernel's CR3, a ticket, that ticket's stack.
.global ap_long_entry
ap_long_entry:
    mov rax, qword ptr [rip + {kernel_cr3}]
    mov cr3, rax
    mov eax, 1
    lock xadd dword ptr [rip + {ticket}], eax
    cmp eax, dword ptr [rip + {stacks}]
    jae 2f
    mov rcx, qword ptr [rip + {tops}]
    mov rsp, qword ptr [rcx + rax * 8]
    xor ebp, ebp
    mov edi, eax
    call {main}
2:  cli
    hlt
    jmp 2b
"#,
    kernel_cr3 = sym KERNEL_CR3,
    ticket = sym TICKET,
    stacks = sym STACK_COUNT,
    tops = sym STACK_TOPS,
    main = sym super::ap_main,
);

unsafe extern "C" {
    static ap_trampoline_start: u8;
    static ap_trampoline_end: u8;
    static ap_tramp_gdtr: u8;
    static ap_tramp_far32: u8;
    static ap_tramp_far64: u8;
    static ap_tramp_cr3: u8;
    static ap_tramp_entry: u8;
    static ap_tramp_pm32: u8;
    static ap_tramp_lm64: u8;
    static ap_tramp_gdt: u8;
    fn ap_long_entry();
}

/// Read by `ap_long_entry` (hence plain atomics with the layout of their integer).
static KERNEL_CR3: AtomicU64 = AtomicU64::new(0);
static TICKET: AtomicU32 = AtomicU32::new(0);
static STACK_COUNT: AtomicU32 = AtomicU32::new(0);
/// Address of an array of `STACK_COUNT` stack tops, one per ticket.
static STACK_TOPS: AtomicU64 = AtomicU64::new(0);

/// Offset of a trampoline symbol from its start.
fn offset_of(sym: *const u8) -> usize {
    sym as usize - core::ptr::addr_of!(ap_trampoline_start) as usize
}

fn off32(sym: *const u8) -> u32 {
    offset_of(sym) as u32
}

/// What `ap_long_entry` reads: the kernel's CR3 and the stack tops APs pick by ticket.
pub fn set_stacks(stacks: &'static [u64]) {
    KERNEL_CR3.store(crate::mem::paging::kernel_pml4(), Ordering::Relaxed);
    STACK_TOPS.store(stacks.as_ptr() as u64, Ordering::Relaxed);
    STACK_COUNT.store(stacks.len() as u32, Ordering::Relaxed);
    TICKET.store(0, Ordering::Release);
}

/// Copies the trampoline to `page` (physical, below 1 MiB, reachable through the direct map)
/// and fills in its fields: `cr3` for the switch to long mode, `stacks` the stack tops APs pick
/// by ticket. Returns the SIPI vector (the page number).
pub fn install(page: u64, cr3: u64, stacks: &'static [u64]) -> Option<u8> {
    let start = core::ptr::addr_of!(ap_trampoline_start);
    let len = core::ptr::addr_of!(ap_trampoline_end) as usize - start as usize;
    if page >= 0x10_0000 || !page.is_multiple_of(4096) || len > 4096 || cr3 >= 1 << 32 {
        return None;
    }
    set_stacks(stacks);
    let dst = crate::mem::paging::phys_to_virt(page) as *mut u8;
    let base = page as u32;
    let put32 = |off: usize, v: u32| {
        // SAFETY: `off` is a field inside the copied trampoline, within the page.
        unsafe { core::ptr::write_unaligned(dst.add(off) as *mut u32, v) }
    };
    let put16 = |off: usize, v: u16| {
        // SAFETY: as above.
        unsafe { core::ptr::write_unaligned(dst.add(off) as *mut u16, v) }
    };
    let put64 = |off: usize, v: u64| {
        // SAFETY: as above.
        unsafe { core::ptr::write_unaligned(dst.add(off) as *mut u64, v) }
    };
    // SAFETY: the page is ours (frames::alloc_low) and mapped in the direct map; the source is
    // the trampoline image in the kernel's rodata, `len` bytes long.
    unsafe { core::ptr::copy_nonoverlapping(start, dst, len) };
    let gdtr = offset_of(core::ptr::addr_of!(ap_tramp_gdtr));
    put32(gdtr + 2, base + off32(core::ptr::addr_of!(ap_tramp_gdt)));
    let far32 = offset_of(core::ptr::addr_of!(ap_tramp_far32));
    put32(far32, base + off32(core::ptr::addr_of!(ap_tramp_pm32)));
    put16(far32 + 4, SEL_CODE32);
    let far64 = offset_of(core::ptr::addr_of!(ap_tramp_far64));
    put32(far64, base + off32(core::ptr::addr_of!(ap_tramp_lm64)));
    put16(far64 + 4, SEL_CODE64);
    put64(offset_of(core::ptr::addr_of!(ap_tramp_cr3)), cr3);
    put64(
        offset_of(core::ptr::addr_of!(ap_tramp_entry)),
        ap_long_entry as *const () as u64,
    );
    core::sync::atomic::fence(Ordering::SeqCst);
    Some((page >> 12) as u8)
}
