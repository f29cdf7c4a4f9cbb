//! The board: wires concrete hardware access (ports, the mapper, frames, the clock) into the
//! driver libraries, in one readable place.
use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use capmon_acpi::Acpi;
use capmon_block::{Kind, Registry};
use capmon_cmds::virtio::VirtioFunction;
use capmon_pci::{EcamRegion, EcamWindow, LegacyPorts, Pci};
use capmon_virtio::{Driver, PhysMapBars};

use crate::arch::ports::KernelPorts;
use crate::boot::BootInfo;
use crate::mem::paging::{KernelDma, KernelPhysMap};
use crate::time::TscClock;

static DMA: KernelDma = KernelDma;
static CLOCK: TscClock = TscClock;

/// PCI through ECAM when the MCFG describes it, with the legacy ports beside it for comparison.
pub fn pci(acpi: Option<&Acpi>) -> Result<Pci, String> {
    let mut ecam = Vec::new();
    if let Some(regions) = acpi.and_then(|a| a.mcfg_regions().ok()) {
        for r in regions {
            let region = EcamRegion {
                base: r.base,
                segment: r.segment,
                start_bus: r.bus_start,
                end_bus: r.bus_end,
            };
            match EcamWindow::map(&KernelPhysMap, region) {
                Ok(w) => ecam.push(w),
                Err(e) => log::error!("ECAM segment {} at {:#x}: {}", r.segment, r.base, e),
            }
        }
    }
    let pci = Pci::new(Some(LegacyPorts::new(Box::new(KernelPorts))), ecam)
        .map_err(|e| format!("{}", e))?;
    log::info!("PCI: {:?} config access", pci.mode());
    Ok(pci)
}

/// Probes every virtio function; block devices join the registry as `vda`, `vdb`, ...
pub fn virtio(pci: &Pci, blk: &mut Registry) -> Vec<VirtioFunction> {
    let bars = PhysMapBars(&KernelPhysMap);
    let mut found = Vec::new();
    for f in pci.enumerate().functions {
        let bdf = f.bdf();
        let Ok(cfg) = pci.function(bdf) else { continue };
        // Interrupt-driven completion needs the local APIC; without it the driver polls.
        let irq: Option<&'static dyn capmon_hal::Interrupts> =
            crate::irq::ready().then_some(&crate::irq::KERNEL_IRQ);
        let Some(p) = capmon_virtio::probe(bdf, &cfg, &bars, &DMA, &CLOCK, irq) else {
            continue;
        };
        let name = p
            .driver
            .map(|Driver::Blk(b)| blk.add(Kind::Virtio, Box::new(b)));
        found.push(VirtioFunction {
            bdf,
            name,
            monitor: p.monitor,
        });
    }
    found
}

/// `ramdisk=SIZE` on the command line (default 4M, `ramdisk=0` for none) creates `ram0`.
pub fn ram_disk(bi: &BootInfo, blk: &mut Registry) {
    let size = match bi.cmdline_value("ramdisk") {
        Some(v) => match capmon_shell::parse::size(v) {
            Ok(s) => s,
            Err(e) => {
                log::error!("ramdisk={}: {}", v, e);
                return;
            }
        },
        None => 4 << 20,
    };
    if size == 0 {
        return;
    }
    match capmon_block::RamDisk::new(size, 512) {
        Ok(rd) => {
            let name = blk.add(Kind::Ram, Box::new(rd));
            log::info!("{}: RAM disk of {} bytes", name, size);
        }
        Err(e) => log::error!("ramdisk: {}", e),
    }
}

/// Reads the GPT of every whole disk; partitions join the registry as children.
pub fn scan_partitions(blk: &mut Registry) {
    let disks: Vec<String> = blk
        .entries()
        .iter()
        .filter(|e| !e.is_partition())
        .map(|e| e.name.clone())
        .collect();
    for name in disks {
        match blk.scan_partitions(&name) {
            Ok(r) => {
                if let Some(e) = &r.primary_error {
                    log::warn!("{}: primary GPT header bad ({}), using the backup", name, e);
                }
                log::info!("{}: GPT with {} partitions", name, r.partitions.len());
            }
            // A blank disk is normal; a damaged table is worth a warning at boot.
            Err(capmon_block::ScanError::Gpt(g)) if g.is_absent() => log::debug!("{}: {}", name, g),
            Err(e) => log::warn!("{}: {}", name, e),
        }
    }
}
