//! Kernel stacks: frames mapped in their own virtual range with an unmapped guard page below
//! each, so a command that overflows its stack faults (and is reported) instead of
//! overwriting the kernel's data.
//!
//! The range is cut into 1 MiB slots: the guard page at the bottom of a slot, the stack's
//! pages above it, the rest unmapped. Slot 0 is the monitor's stack on the boot CPU; slots
//! 1.. are the application processors' (`smp`).
use core::arch::global_asm;
use x86_64::structures::paging::{Page, PageTableFlags as F, PhysFrame, Size4KiB};
use x86_64::{PhysAddr, VirtAddr};

/// Where the kernel stacks live (PML4 slot 384, used for nothing else).
pub const STACK_REGION: u64 = 0xFFFF_C000_0000_0000;
/// Virtual space per stack, its guard page included.
pub const SLOT_SIZE: u64 = 1 << 20;
/// Slots in the region: the monitor's and one per AP, with room to spare (4 GiB).
pub const SLOTS: u64 = 4096;
/// The monitor's stack, 256 KiB: commands keep buffers on the heap, so this is generous.
pub const STACK_PAGES: u64 = 64;
const PAGE: u64 = 4096;

/// The slot whose guard page contains `addr`: a fault there is a stack overflow.
pub fn guard_slot(addr: u64) -> Option<u64> {
    let off = addr.checked_sub(STACK_REGION)?;
    let slot = off / SLOT_SIZE;
    (slot < SLOTS && off % SLOT_SIZE < PAGE).then_some(slot)
}

/// Maps `pages` fresh frames above the guard page of `slot`; the stack's top, or `None` when
/// memory is short or the slot is out of range (what was mapped stays mapped, unused).
pub fn map_stack(slot: u64, pages: u64) -> Option<u64> {
    if slot >= SLOTS || pages * PAGE > SLOT_SIZE - PAGE {
        return None;
    }
    let bottom = STACK_REGION + slot * SLOT_SIZE + PAGE;
    for i in 0..pages {
        let phys = crate::mem::frames::alloc_zeroed(1, 1)?;
        let page = Page::<Size4KiB>::containing_address(VirtAddr::new(bottom + i * PAGE));
        let frame = PhysFrame::containing_address(PhysAddr::new(phys));
        if !crate::mem::paging::map_page(page, frame, F::PRESENT | F::WRITABLE | F::NO_EXECUTE) {
            crate::mem::frames::free(phys, 1);
            return None;
        }
    }
    Some(bottom + pages * PAGE)
}

global_asm!(
    r#"
.section .text
# ! run_on_stack(top: u64, f: extern "C" fn(*mut u8) -> !, arg: *mut u8)
.global run_on_stack
run_on_stack:
    mov rsp, rdi
    xor ebp, ebp
    mov rdi, rdx
    call rsi
1:  cli
    hlt
    jmp 1b
"#
);

unsafe extern "C" {
    fn run_on_stack(top: u64, f: extern "C" fn(*mut u8) -> !, arg: *mut u8) -> !;
}

/// Maps the monitor stack (slot 0, guard page left unmapped) and runs `f(arg)` on it, never
/// returning. Falls back to calling `f` on the boot stack if memory is short.
pub fn switch_to_monitor_stack(f: extern "C" fn(*mut u8) -> !, arg: *mut u8) -> ! {
    let Some(top) = map_stack(0, STACK_PAGES) else {
        log::error!("no memory for the monitor stack: staying on the boot stack (no guard page)");
        f(arg)
    };
    // SAFETY: `top` is the end of a freshly mapped, writable, 16-byte aligned stack that nothing
    // else uses; `f` never returns, so abandoning the boot stack is fine.
    unsafe { run_on_stack(top, f, arg) }
}
