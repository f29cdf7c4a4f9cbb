//! Faults raised on purpose by the `crash` command, to prove the fault guard and the reports.
use alloc::format;
use alloc::string::String;

/// An address in the lower half that is never mapped (the identity map is dropped at boot).
const UNMAPPED: u64 = 0x1000;
/// Bit 63 set without the upper bits: not canonical.
const NON_CANONICAL: u64 = 0x8000_0000_0000_0000;

// Never inlined, so a fault report names this function whatever the optimiser decides.
#[inline(never)]
pub fn raise(kind: &str) -> String {
    // SAFETY (all arms): each deliberately faults; the monitor's guard reports the fault and
    // abandons this command's frames. Nothing here touches memory that is in use.
    match kind {
        "pf" => {
            let v = unsafe { core::ptr::read_volatile(UNMAPPED as *const u64) };
            format!("read {:#x} at {:#x}", v, UNMAPPED)
        }
        "gp" => {
            let v = unsafe { core::ptr::read_volatile(NON_CANONICAL as *const u64) };
            format!("read {:#x} at {:#x}", v, NON_CANONICAL)
        }
        "ud" => {
            unsafe { core::arch::asm!("ud2") };
            String::from("ud2 executed")
        }
        "bp" => {
            unsafe { core::arch::asm!("int3") };
            String::from("int3 returned")
        }
        "de" => {
            let zero = core::hint::black_box(0u32);
            let r: u32;
            unsafe {
                core::arch::asm!("div {d:e}", d = in(reg) zero, inout("eax") 1u32 => r, inout("edx") 0u32 => _)
            };
            format!("1 / 0 = {}", r)
        }
        "panic" => panic!("crash: panic requested from the monitor"),
        "stack" => format!("recursion ended at depth {}", recurse(0)),
        _ => format!("unknown fault '{}'", kind),
    }
}

/// Recurses with a 1 KiB frame until the stack runs into its guard page.
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    let mut frame = [0u8; 1024];
    frame[(depth % 1024) as usize] = depth as u8;
    let frame = core::hint::black_box(frame);
    if core::hint::black_box(depth) == u64::MAX {
        return depth;
    }
    recurse(depth + 1) + frame[0] as u64
}
