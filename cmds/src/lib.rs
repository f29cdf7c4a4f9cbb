//! capmon's monitor commands, one file per command family.
//!
//! Each family declares a host trait (what it needs from the machine: `PciHost`, `BlkHost`, ...)
//! and `commands::<S>()`, its command table. The kernel's machine implements every host trait;
//! host tests implement them with fakes. Commands print through the sink they are given.
#![no_std]
extern crate alloc;

pub mod acpi;
pub mod ata;
pub mod bins;
pub mod blk;
pub mod fs;
pub mod fs_race;
pub mod irq;
pub mod iso;
pub mod nvme;
pub mod pci;
pub mod run;
pub mod smp;
pub mod store;
pub mod sys;
pub mod virtio;

use alloc::vec::Vec;
use capmon_shell::Command;

/// Everything the monitor's commands need from the machine.
pub trait System:
    sys::PlatformHost
    + acpi::AcpiHost
    + pci::PciHost
    + blk::BlkHost
    + virtio::VirtioHost
    + nvme::NvmeHost
    + ata::AtaHost
    + bins::BinsHost
    + run::RunHost
    + irq::IrqHost
    + smp::SmpHost
    + store::StoreHost
{
}

impl<
        T: sys::PlatformHost
            + acpi::AcpiHost
            + pci::PciHost
            + blk::BlkHost
            + virtio::VirtioHost
            + nvme::NvmeHost
            + ata::AtaHost
            + bins::BinsHost
            + run::RunHost
            + irq::IrqHost
            + smp::SmpHost
            + store::StoreHost,
    > System for T
{
}

/// Every command of every family, in the order `help` lists the groups.
pub fn all<S: System>() -> Vec<Command<S>> {
    let mut v = sys::commands::<S>();
    v.extend(acpi::commands::<S>());
    v.extend(irq::commands::<S>());
    v.extend(smp::commands::<S>());
    v.extend(pci::commands::<S>());
    v.extend(virtio::commands::<S>());
    v.extend(nvme::commands::<S>());
    v.extend(ata::commands::<S>());
    v.extend(blk::commands::<S>());
    v.extend(iso::commands::<S>());
    v.extend(bins::commands::<S>());
    v.extend(run::commands::<S>());
    v.extend(store::commands::<S>());
    v.extend(fs::commands::<S>());
    v
}
