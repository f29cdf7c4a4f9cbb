//! `capmon_acpi::decode_resources` on arbitrary bytes: it must return, never panic, and what it
//! returns must describe the input it was given.
#![no_main]

use capmon_acpi::{decode_resources, InterruptKind, Resource};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(items) = decode_resources(data) else {
        return;
    };
    // Every item takes at least one byte, and so does the End Tag.
    assert!(items.len() < data.len());
    for item in &items {
        match item {
            Resource::Interrupt(i) => match i.kind {
                // A 16-bit mask names IRQs 0-15, each once, in order.
                InterruptKind::Irq => {
                    assert!(i.interrupts.len() <= 16);
                    assert!(i.interrupts.windows(2).all(|w| w[0] < w[1]));
                    assert!(i.interrupts.iter().all(|n| *n < 16));
                }
                // The list holds 1 to 255 entries of 4 bytes inside the buffer.
                InterruptKind::Extended => {
                    assert!(!i.interrupts.is_empty() && i.interrupts.len() <= 255);
                    assert!(i.interrupts.len() * 4 < data.len());
                }
            },
            Resource::Other { offset, .. } => assert!(*offset < data.len()),
        }
    }
});
