//! The board: wires concrete hardware access (ports, the mapper, frames, the clock) into the
//! driver libraries, in one readable place.
use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use capmon_acpi::Acpi;
use capmon_block::{Kind, Registry};
use capmon_cmds::ata::{AhciFunction, AhciPortInfo, AtaDevice, AtaFunction};
use capmon_cmds::nvme::NvmeFunction;
use capmon_cmds::virtio::VirtioFunction;
use capmon_pci::{EcamRegion, EcamWindow, LegacyPorts, Pci};
use capmon_virtio::{Driver, PhysMapBars};

use crate::arch::ports::KernelPorts;
use crate::boot::BootInfo;
use crate::mem::paging::{KernelDma, KernelPhysMap};
use crate::time::TscClock;

static DMA: KernelDma = KernelDma;
static CLOCK: TscClock = TscClock;
static PORTS: KernelPorts = KernelPorts;

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

/// The kernel's interrupt layer without message-signalled vectors: what `virtio_irq=intx`
/// hands drivers, so they take their INTx fallback.
struct IntxOnly;

impl capmon_hal::Interrupts for IntxOnly {
    fn alloc_msi(
        &self,
        _: capmon_hal::IrqOwner,
        _: capmon_hal::Mechanism,
        _: &str,
    ) -> Option<capmon_hal::IrqVector> {
        None
    }
    fn alloc_intx(
        &self,
        owner: capmon_hal::IrqOwner,
        pin: u8,
        label: &str,
    ) -> Option<capmon_hal::IrqVector> {
        crate::irq::KERNEL_IRQ.alloc_intx(owner, pin, label)
    }
    fn free(&self, v: &capmon_hal::IrqVector) {
        crate::irq::KERNEL_IRQ.free(v)
    }
    fn wait_for(&self, event: &capmon_hal::IrqEvent, seen: u64) {
        crate::irq::KERNEL_IRQ.wait_for(event, seen)
    }
    fn end_intx(&self, v: &capmon_hal::IrqVector) {
        crate::irq::KERNEL_IRQ.end_intx(v)
    }
}

static INTX_ONLY: IntxOnly = IntxOnly;

/// Which completion a driver family may use, from `KEY=auto|intx|poll` on the command line
/// (`virtio_irq`, `nvme_irq`): `auto` (default: MSI-X, then INTx, then polling), `intx` (INTx,
/// then polling) or `poll`. Interrupts need the local APIC.
fn irq_choice(bi: &BootInfo, key: &str) -> Option<&'static dyn capmon_hal::Interrupts> {
    if !crate::irq::ready() {
        return None;
    }
    match bi.cmdline_value(key) {
        None | Some("auto") => Some(&crate::irq::KERNEL_IRQ),
        Some("intx") => Some(&INTX_ONLY),
        Some("poll") => None,
        Some(v) => {
            log::warn!("{}={}: not auto, intx or poll; using auto", key, v);
            Some(&crate::irq::KERNEL_IRQ)
        }
    }
}

/// Probes every virtio function; block devices join the registry as `vda`, `vdb`, ...
pub fn virtio(bi: &BootInfo, pci: &Pci, blk: &mut Registry) -> Vec<VirtioFunction> {
    let bars = PhysMapBars(&KernelPhysMap);
    let mut found = Vec::new();
    let irq = irq_choice(bi, "virtio_irq");
    for f in pci.enumerate().functions {
        let bdf = f.bdf();
        let Ok(cfg) = pci.function(bdf) else { continue };
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

/// Brings up every NVMe controller (`nvme0`, `nvme1`, ... in PCI order); each usable namespace
/// joins the registry as `nvme{C}n{NSID}`. A controller that fails bring-up is listed with why.
pub fn nvme(bi: &BootInfo, pci: &Pci, blk: &mut Registry) -> Vec<NvmeFunction> {
    let env = capmon_nvme::Env {
        dma: &DMA,
        clock: &CLOCK,
        irq: irq_choice(bi, "nvme_irq"),
        cpus: &crate::smp::KERNEL_CPUS,
    };
    let bars = PhysMapBars(&KernelPhysMap);
    let mut found = Vec::new();
    for f in pci.enumerate().functions {
        let h = &f.header;
        if !capmon_nvme::is_nvme(h.class.base, h.class.sub, h.class.prog_if) {
            continue;
        }
        let bdf = f.bdf();
        let Ok(cfg) = pci.function(bdf) else { continue };
        let name = format!("nvme{}", found.len());
        let ctrl = match capmon_nvme::Controller::new(name.clone(), bdf, &cfg, &bars, env) {
            Ok(c) => alloc::sync::Arc::new(c),
            Err(e) => {
                log::error!("{} ({}): {}", name, bdf, e);
                found.push(NvmeFunction {
                    name,
                    bdf,
                    ctrl: Err(format!("{}", e)),
                });
                continue;
            }
        };
        for ns in ctrl.namespaces() {
            let Some(dev) = capmon_nvme::Namespace::new(ctrl.clone(), ns.nsid) else {
                continue;
            };
            let dev_name = capmon_nvme::ns::device_name(&name, ns.nsid);
            if blk.add_named(&dev_name, Box::new(dev)).is_none() {
                log::error!("{}: name taken", dev_name);
            }
        }
        found.push(NvmeFunction {
            name,
            bdf,
            ctrl: Ok(ctrl),
        });
    }
    found
}

/// Every PCI IDE controller (class 01:01): its channels' ports (compatibility mode's fixed
/// ones, or native mode's from BARs 0-3), I/O decoding on, each channel probed; every ATAPI
/// device with a medium joins the registry as `cd0`, `cd1`, ...
pub fn ata(pci: &Pci, blk: &mut Registry) -> Vec<AtaFunction> {
    let mut found = Vec::new();
    for f in pci.enumerate().functions {
        let h = &f.header;
        if (h.class.base, h.class.sub) != (0x01, 0x01) {
            continue;
        }
        let bdf = f.bdf();
        let Ok(cfg) = pci.function(bdf) else { continue };
        let prog_if = h.class.prog_if;
        let mut channels = Vec::new();
        for (i, ch) in [capmon_ata::PRIMARY, capmon_ata::SECONDARY]
            .into_iter()
            .enumerate()
        {
            // Prog-if bit 0 (primary) / bit 2 (secondary): the channel is in native mode.
            let native = prog_if & (1 << (2 * i)) != 0;
            if !native {
                channels.push((ch, false));
                continue;
            }
            let port = |index: u8| {
                pci.bar(bdf, index)
                    .ok()
                    .filter(|b| b.kind == capmon_pci::BarKind::Io && b.addr != 0)
                    .and_then(|b| u16::try_from(b.addr).ok())
            };
            match (port(2 * i as u8), port(2 * i as u8 + 1)) {
                (Some(base), Some(ctrl)) => channels.push((
                    capmon_ata::Channel {
                        name: ch.name,
                        base,
                        ctrl: ctrl + 2,
                    },
                    true,
                )),
                _ => log::warn!(
                    "{} IDE {} channel: native mode without I/O BARs",
                    bdf,
                    ch.name
                ),
            }
        }
        // I/O space decoding on (Command register bit 0); bus mastering is not used (PIO).
        use capmon_hal::PciConfig;
        cfg.write16(0x04, cfg.read16(0x04) | 0x1);
        let list: Vec<capmon_ata::Channel> = channels.iter().map(|c| c.0).collect();
        let mut devices = Vec::new();
        for fd in capmon_ata::probe(&PORTS, &CLOCK, &list) {
            let name = match (&fd.kind, &fd.identify) {
                (capmon_ata::DevKind::Atapi | capmon_ata::DevKind::Satapi, Ok(id)) => {
                    let t = capmon_ata::IdePacket::new(&PORTS, &CLOCK, fd.channel, fd.slave);
                    match capmon_ata::AtapiCd::open(t, &CLOCK, id.clone()) {
                        Ok(cd) => {
                            let blocks = capmon_block::BlockDevice::capacity(&cd);
                            let n = blk.add(Kind::Cdrom, Box::new(cd));
                            log::info!(
                                "{}: ATAPI {} {} ({}), {} blocks of 2048",
                                n,
                                fd.channel.name,
                                fd.position(),
                                id.model,
                                blocks
                            );
                            Ok(n)
                        }
                        Err(e) => {
                            log::warn!("ATAPI {} {}: {}", fd.channel.name, fd.position(), e);
                            Err(format!("{}", e))
                        }
                    }
                }
                (_, Err(e)) => Err(format!("IDENTIFY: {}", e)),
                _ => Err(String::from(
                    "ATA disks on IDE are not driven (SATA disks are, on AHCI)",
                )),
            };
            devices.push(AtaDevice { found: fd, name });
        }
        found.push(AtaFunction {
            bdf,
            prog_if,
            channels,
            devices,
        });
    }
    found
}

/// Every AHCI controller (PCI class 01:06, prog-if 01): ABAR (BAR 5) mapped, memory decoding
/// and bus mastering on, each port with a device started; SATA disks join the registry as
/// `sda`, `sdb`, ..., ATAPI drives with a medium as `cd0`, `cd1`, ...
pub fn ahci(pci: &Pci, blk: &mut Registry) -> Vec<AhciFunction> {
    use capmon_hal::{BarMapper, PciConfig};
    let mut found = Vec::new();
    let bars = PhysMapBars(&KernelPhysMap);
    for f in pci.enumerate().functions {
        let h = &f.header;
        if (h.class.base, h.class.sub, h.class.prog_if) != (0x01, 0x06, 0x01) {
            continue;
        }
        let bdf = f.bdf();
        let Ok(cfg) = pci.function(bdf) else { continue };
        let abar = match pci.bar(bdf, 5) {
            Ok(b) if b.kind != capmon_pci::BarKind::Io && b.addr != 0 => b,
            other => {
                log::warn!("{} AHCI: no memory BAR 5 ({:?})", bdf, other.err());
                continue;
            }
        };
        let Some(mmio) = bars.map_mmio(abar.addr, abar.size.min(0x1100) as usize) else {
            log::warn!("{} AHCI: cannot map ABAR at {:#x}", bdf, abar.addr);
            continue;
        };
        cfg.write16(0x04, cfg.read16(0x04) | 0x6);
        let (hba, probes) = capmon_ata::ahci::probe(mmio, &DMA, &CLOCK);
        let mut ports = Vec::new();
        for p in probes {
            let mut name = Err(String::from("no device"));
            if let (Some(kind), Ok(id), Some(handle)) = (p.kind, &p.identify, p.handle) {
                name = match kind {
                    capmon_ata::DevKind::Satapi => {
                        match capmon_ata::AtapiCd::open(handle, &CLOCK, id.clone()) {
                            Ok(cd) => Ok(blk.add(Kind::Cdrom, Box::new(cd))),
                            Err(e) => Err(format!("{}", e)),
                        }
                    }
                    _ => match capmon_ata::ahci::AhciDisk::new(handle, id.clone()) {
                        Ok(d) => Ok(blk.add(Kind::Sata, Box::new(d))),
                        Err(e) => Err(format!("{}", e)),
                    },
                };
                match &name {
                    Ok(n) => log::info!("{}: AHCI {} port {} ({})", n, bdf, p.port, id.model),
                    Err(e) => log::warn!("AHCI {} port {}: {}", bdf, p.port, e),
                }
            } else if let Err(e) = &p.identify {
                if p.ssts & 0xf == 3 {
                    name = Err(format!("{}", e));
                }
            }
            ports.push(AhciPortInfo {
                port: p.port,
                ssts: p.ssts,
                sig: p.sig,
                kind: p.kind,
                identify: p.identify,
                name,
            });
        }
        found.push(AhciFunction {
            bdf,
            version: hba.version,
            cap: hba.cap,
            pi: hba.pi,
            ports,
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

/// The BootBinary registry of the boot CD: the first CD (`cd0`, `cd1`, ...) whose manifest
/// opens, else `cd0`'s reason; each line of its report in the log. None without a CD.
pub fn boot_bins(
    m: &mut crate::machine::Machine,
) -> Option<Result<capmon_bootpkg::Registry, capmon_bootpkg::BootError>> {
    let cds: Vec<String> = m
        .blk
        .entries()
        .iter()
        .filter(|e| e.name.starts_with("cd") && !e.is_partition())
        .map(|e| e.name.clone())
        .collect();
    let mut first: Option<Result<capmon_bootpkg::Registry, capmon_bootpkg::BootError>> = None;
    for cd in &cds {
        match capmon_cmds::bins::open(m, cd) {
            Ok(Ok(r)) => {
                first = Some(Ok(r));
                break;
            }
            Ok(Err(e)) => {
                if first.is_none() {
                    first = Some(Err(e));
                }
            }
            Err(e) => log::error!("bins: {}: {:?}", cd, e),
        }
    }
    let r = first?;
    for (i, line) in capmon_cmds::bins::boot_report(&r).iter().enumerate() {
        if i == 0 && r.is_ok() {
            log::info!("{}", line);
        } else {
            log::error!("{}", line);
        }
    }
    Some(r)
}

/// The PS/2 keyboard's scancode decoder, fed by IRQ 1 (only its handler takes the lock).
static KEYBOARD: spin::Mutex<capmon_ps2::Decoder> = spin::Mutex::new(capmon_ps2::Decoder::new());

fn keyboard_irq() {
    let mut d = KEYBOARD.lock();
    capmon_ps2::drain(&PORTS, 16, |b| {
        d.feed(b, &mut |bytes| crate::console::push_input(bytes))
    });
}

/// The PS/2 keyboard as a second input beside COM1: the 8042 brought up (unless the FADT says
/// there is none) and IRQ 1 routed to `keyboard_irq`.
pub fn ps2(acpi: Option<&Acpi>) {
    if let Some(f) = acpi.and_then(|a| a.fadt().ok()) {
        // IAPC_BOOT_ARCH exists from FADT revision 3 (ACPI 2.0) on.
        if f.revision >= 3 && !f.iapc_boot_arch.has_8042() {
            log::info!("PS/2: the FADT says there is no 8042; no keyboard");
            return;
        }
    }
    if !crate::irq::ready() {
        log::warn!("PS/2: no interrupts; no keyboard");
        return;
    }
    crate::irq::set_handler(crate::irq::VEC_ISA_BASE + 1, keyboard_irq);
    match capmon_ps2::init(&PORTS, &CLOCK) {
        Ok(info) => match crate::irq::ioapic::route_isa(1, "PS/2 keyboard") {
            Ok(r) => log::info!(
                "PS/2: 8042 up (config {:#04x}), keyboard {}, IRQ 1 on GSI {}",
                info.config,
                if info.keyboard {
                    "reset and ready"
                } else {
                    "did not answer its reset"
                },
                r.gsi
            ),
            Err(e) => log::warn!("PS/2: no interrupt for the keyboard: {}", e),
        },
        Err(e) => log::warn!("PS/2: {}; no keyboard", e),
    }
}
