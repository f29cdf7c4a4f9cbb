//! Physical frames, page tables, the kernel heap, and mappings of physical memory and MMIO.
pub mod frames;
pub mod heap;
pub mod paging;

use crate::boot::BootInfo;

unsafe extern "C" {
    static __kernel_start: u8;
    static __kernel_end: u8;
}

/// Size of the loaded kernel image in bytes.
pub fn kernel_size() -> u64 {
    // Linker-defined symbols: only their addresses are used.
    core::ptr::addr_of!(__kernel_end) as u64 - core::ptr::addr_of!(__kernel_start) as u64
}

pub fn init(bi: &BootInfo) {
    frames::init(bi);
    paging::init(bi);
    heap::init();
}
