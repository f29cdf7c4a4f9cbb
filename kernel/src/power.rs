//! Reset and power-off.
use alloc::string::String;
use x86_64::instructions::port::Port;

/// Resets the machine: 8042 pulse, then a triple fault. Returns only if both failed.
pub fn reboot() -> String {
    log::info!("reboot: 8042 reset pulse");
    // SAFETY: port 0x64 is the 8042 command port; 0xFE pulses the CPU reset line.
    unsafe { Port::<u8>::new(0x64).write(0xfe) };
    crate::time::delay_us(50_000);
    log::info!("reboot: triple fault");
    let empty = x86_64::structures::DescriptorTablePointer { limit: 0, base: x86_64::VirtAddr::new(0) };
    // SAFETY: deliberately loads an empty IDT and raises an exception: the CPU triple-faults
    // and resets. Nothing after this runs.
    unsafe {
        x86_64::instructions::tables::lidt(&empty);
        core::arch::asm!("int3");
    }
    String::from("the CPU did not reset")
}

pub fn poweroff() -> String {
    String::from("ACPI is not available")
}
