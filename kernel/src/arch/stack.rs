//! The monitor's stack: frames mapped in their own virtual range with an unmapped guard page
//! below, so a command that overflows it faults (and is reported) instead of overwriting the
//! kernel's data.
use core::arch::global_asm;
use x86_64::structures::paging::{Page, PageTableFlags as F, PhysFrame, Size4KiB};
use x86_64::{PhysAddr, VirtAddr};

/// Where the monitor stack lives (PML4 slot 384, used for nothing else).
pub const STACK_REGION: u64 = 0xFFFF_C000_0000_0000;
/// 256 KiB: commands keep buffers on the heap, so this is generous.
pub const STACK_PAGES: u64 = 64;
const PAGE: u64 = 4096;

/// The guard page: a fault address in here is a stack overflow.
pub fn guard_page() -> core::ops::Range<u64> {
    STACK_REGION..STACK_REGION + PAGE
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

/// Maps the monitor stack (guard page left unmapped) and runs `f(arg)` on it, never returning.
/// Falls back to calling `f` on the boot stack if memory is short.
pub fn switch_to_monitor_stack(f: extern "C" fn(*mut u8) -> !, arg: *mut u8) -> ! {
    let top = STACK_REGION + PAGE + STACK_PAGES * PAGE;
    let mapped = (0..STACK_PAGES).all(|i| {
        let Some(phys) = crate::mem::frames::alloc_zeroed(1, 1) else {
            return false;
        };
        let page =
            Page::<Size4KiB>::containing_address(VirtAddr::new(STACK_REGION + PAGE + i * PAGE));
        let frame = PhysFrame::containing_address(PhysAddr::new(phys));
        crate::mem::paging::map_page(page, frame, F::PRESENT | F::WRITABLE | F::NO_EXECUTE)
    });
    if !mapped {
        log::error!("no memory for the monitor stack: staying on the boot stack (no guard page)");
        f(arg)
    }
    // SAFETY: `top` is the end of a freshly mapped, writable, 16-byte aligned stack that nothing
    // else uses; `f` never returns, so abandoning the boot stack is fine.
    unsafe { run_on_stack(top, f, arg) }
}
