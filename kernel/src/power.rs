//! Reset and power-off: ACPI first, legacy fallbacks for reset.
use alloc::format;
use alloc::string::String;
use capmon_acpi::{Acpi, AcpiHw};
use x86_64::instructions::port::Port;

/// Powers off through ACPI S5. Returns only on failure, saying why.
pub fn poweroff(acpi: Option<&Acpi>, hw: &AcpiHw) -> String {
    let Some(acpi) = acpi else {
        return String::from("no ACPI tables");
    };
    log::info!("poweroff: entering ACPI S5");
    let e = acpi.enter_s5(hw);
    // Give the chipset a moment: the write may take effect asynchronously.
    crate::time::delay_us(100_000);
    format!("ACPI S5 did not power off: {}", e)
}

/// Resets: the FADT reset register, then an 8042 pulse, then a triple fault.
pub fn reboot(acpi: Option<&Acpi>, hw: &AcpiHw) -> String {
    let mut why = String::new();
    log::info!("reboot: ACPI reset register");
    match acpi.map(|a| a.reset(hw)) {
        Some(Err(e)) => {
            log::warn!("reboot: ACPI reset register: {}", e);
            why = format!("ACPI reset register: {}; ", e);
        }
        None => why.push_str("no ACPI tables; "),
        Some(Ok(())) => {}
    }
    crate::time::delay_us(50_000);
    log::info!("reboot: 8042 reset pulse");
    // SAFETY: port 0x64 is the 8042 command port; 0xFE pulses the CPU reset line.
    unsafe { Port::<u8>::new(0x64).write(0xfe) };
    crate::time::delay_us(50_000);
    log::info!("reboot: triple fault");
    let empty = x86_64::structures::DescriptorTablePointer {
        limit: 0,
        base: x86_64::VirtAddr::new(0),
    };
    // SAFETY: deliberately loads an empty IDT and raises an exception: the CPU triple-faults
    // and resets. Nothing after this runs.
    unsafe {
        x86_64::instructions::tables::lidt(&empty);
        core::arch::asm!("int3");
    }
    why.push_str("8042 and triple fault did not reset");
    why
}
