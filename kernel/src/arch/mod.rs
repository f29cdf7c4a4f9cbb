//! x86_64 specifics: descriptor tables, traps and the fault guard, CPU identification.
pub mod crash;
pub mod gdt;
pub mod msr;
pub mod ports;
pub mod stack;
pub mod traps;
