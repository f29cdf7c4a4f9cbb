//! `fault`: reads kernel memory. The kernel must stop it with a fault report and go on.
#![no_std]
#![no_main]

fn main(_: impl Iterator<Item = &'static [u8]>) -> u64 {
    capmon_user::write(b"fault: reading kernel memory at 0xffffffff80000000\n");
    // SAFETY: none; this is the point. The page is supervisor-only, so the read faults.
    let v = unsafe { core::ptr::read_volatile(0xffff_ffff_8000_0000 as *const u64) };
    capmon_user::write(b"fault: the read returned (the kernel is exposed)\n");
    v
}

capmon_user::entry!(main);
