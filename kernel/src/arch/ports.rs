//! x86 port I/O for drivers, behind `capmon_hal::PortIo`.
use x86_64::instructions::port::Port;

pub struct KernelPorts;

// Every method: port I/O has no memory-safety effect on the kernel; what a port write does to a
// device is the calling driver's responsibility.
impl capmon_hal::PortIo for KernelPorts {
    fn inb(&self, port: u16) -> u8 {
        // SAFETY: see above.
        unsafe { Port::<u8>::new(port).read() }
    }
    fn inw(&self, port: u16) -> u16 {
        // SAFETY: see above.
        unsafe { Port::<u16>::new(port).read() }
    }
    fn inl(&self, port: u16) -> u32 {
        // SAFETY: see above.
        unsafe { Port::<u32>::new(port).read() }
    }
    fn outb(&self, port: u16, v: u8) {
        // SAFETY: see above.
        unsafe { Port::<u8>::new(port).write(v) }
    }
    fn outw(&self, port: u16, v: u16) {
        // SAFETY: see above.
        unsafe { Port::<u16>::new(port).write(v) }
    }
    fn outl(&self, port: u16, v: u32) {
        // SAFETY: see above.
        unsafe { Port::<u32>::new(port).write(v) }
    }
    fn insw(&self, port: u16, buf: &mut [u16]) {
        // SAFETY: `rep insw` stores exactly `buf.len()` words at `buf`, which it owns mutably;
        // the direction flag is clear (the ABI keeps it so).
        unsafe {
            core::arch::asm!(
                "rep insw",
                in("dx") port,
                inout("rdi") buf.as_mut_ptr() => _,
                inout("rcx") buf.len() => _,
                options(nostack, preserves_flags)
            );
        }
    }
}
