//! The runtime of capmon's user programs: the entry point, the system calls, a panic handler.
//! System call numbers and registers: docs/boot-binaries.md.
#![no_std]

use core::arch::asm;

/// System call numbers.
pub const SYS_EXIT: u64 = 0;
pub const SYS_WRITE: u64 = 1;
pub const SYS_READ: u64 = 2;

/// The handle of the object a program was given as its input (`run NAME ... < OBJECT`).
pub const INPUT: u64 = 0;

/// One argument as the kernel lays it out: a pointer and a length, into the program's memory.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Arg {
    pub ptr: *const u8,
    pub len: usize,
}

/// # Safety
/// A system call: the kernel checks every pointer and length it is given.
unsafe fn syscall4(n: u64, a: u64, b: u64, c: u64, d: u64) -> i64 {
    let r: i64;
    // SAFETY: `syscall` clobbers rcx and r11 (return address and flags), declared here.
    unsafe {
        asm!("syscall", inlateout("rax") n as i64 => r, in("rdi") a, in("rsi") b, in("rdx") c,
             in("r10") d, lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    r
}

/// Ends the program with `status`.
pub fn exit(status: u64) -> ! {
    // SAFETY: exit takes a number only.
    unsafe { syscall4(SYS_EXIT, status, 0, 0, 0) };
    loop {
        core::hint::spin_loop();
    }
}

/// Writes `bytes` to the console; the count written, or a negative error.
pub fn write(bytes: &[u8]) -> i64 {
    // SAFETY: the pointer and length describe `bytes`.
    unsafe { syscall4(SYS_WRITE, bytes.as_ptr() as u64, bytes.len() as u64, 0, 0) }
}

/// Reads up to `buf.len()` bytes of object `handle` at `offset`: the count (0 at the end), or
/// a negative error.
pub fn read(handle: u64, offset: u64, buf: &mut [u8]) -> i64 {
    // SAFETY: the pointer and length describe `buf`, which the kernel may write.
    unsafe {
        syscall4(
            SYS_READ,
            handle,
            offset,
            buf.as_mut_ptr() as u64,
            buf.len() as u64,
        )
    }
}

/// The arguments the kernel passed (`_start`'s rdi and rsi).
///
/// # Safety
/// `argv` must point at `argc` `Arg`s, each naming bytes that live as long as the program:
/// what the kernel lays out before `_start`.
pub unsafe fn args(argv: *const Arg, argc: usize) -> impl Iterator<Item = &'static [u8]> {
    (0..argc).map(move |i| {
        // SAFETY: the caller's promise above.
        unsafe {
            let a = *argv.add(i);
            core::slice::from_raw_parts(a.ptr, a.len)
        }
    })
}

/// The program's entry: `_start(argv, argc)` calls `main(args)` and exits with its status.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        /// # Safety
        /// Called once, by the kernel, with its layout of the program's arguments.
        #[no_mangle]
        pub unsafe extern "C" fn _start(argv: *const $crate::Arg, argc: usize) -> ! {
            // SAFETY: `_start`'s arguments are the kernel's layout of the program's arguments.
            let status: u64 = $main(unsafe { $crate::args(argv, argc) });
            $crate::exit(status)
        }
    };
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    write(b"panic\n");
    exit(101)
}
