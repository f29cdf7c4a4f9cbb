//! Interrupt controllers: local APIC (xAPIC and x2APIC backends), I/O APIC, ISA IRQ routing
//! through MADT overrides, and the CPU vector allocator. Register access goes through
//! capmon-hal's `Mmio` and `Msr`, so everything here runs under host tests with fakes.
#![no_std]
extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod ioapic;
pub mod isa;
pub mod lapic;
pub mod vectors;

pub use ioapic::{IoApic, Redirection};
pub use isa::{isa_route, IsaRoute};
pub use lapic::{choose_mode, Lapic, LapicState, Mode, ModeRequest};
pub use vectors::VectorAllocator;

#[cfg(test)]
mod fake;
