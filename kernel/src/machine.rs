//! The machine as the monitor's commands see it: the kernel's implementation of every host
//! trait in `capmon-cmds`, wiring commands to the subsystems the board set up at boot.
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use capmon_cmds::sys::{MemRegion, MemStats, PlatformHost, VersionInfo};

use crate::arch::ports::KernelPorts;
use crate::boot::{BootDevice, BootInfo, Firmware};
use crate::mem::paging::KernelPhysMap;
use crate::mem::{frames, heap, paging};
use crate::time::TscClock;
use capmon_acpi::{Acpi, AcpiHw};
use capmon_shell::CmdError;

pub struct Machine {
    pub boot: &'static BootInfo,
    /// The ACPI tables, or why there are none.
    pub acpi: &'static Result<Acpi, String>,
    /// PCI config-space access, or why there is none.
    pub pci: Result<capmon_pci::Pci, String>,
    pub blk: capmon_block::Registry,
    pub virtio: Vec<capmon_cmds::virtio::VirtioFunction>,
    pub nvme: Vec<capmon_cmds::nvme::NvmeFunction>,
    pub ata: Vec<capmon_cmds::ata::AtaFunction>,
    pub ahci: Vec<capmon_cmds::ata::AhciFunction>,
    /// The BootBinary registry read from the boot CD at boot (None without a cd0).
    pub boot_bins: Option<Result<capmon_bootpkg::Registry, capmon_bootpkg::BootError>>,
    /// The monitor's storage capabilities (the store on the data partition, or a RAM one).
    pub store: capmon_storage::session::Session,
}

/// The hardware the AML interpreter and power code may touch.
pub fn acpi_hw() -> AcpiHw<'static> {
    AcpiHw {
        mem: &KernelPhysMap,
        io: &KernelPorts,
        clock: &TscClock,
    }
}

fn guid(b: &[u8; 16]) -> String {
    format!(
        "{:08x}-{:04x}-{:04x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
        u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        u16::from_le_bytes([b[4], b[5]]),
        u16::from_le_bytes([b[6], b[7]]),
        b[8],
        b[9],
        b[10],
        b[11],
        b[12],
        b[13],
        b[14],
        b[15]
    )
}

/// Reads or writes one naturally aligned `unit` at `ptr` with a single access.
///
/// # Safety
/// `ptr` may be anything: a bad address faults, and the monitor's guard reports the fault.
unsafe fn access(ptr: u64, unit: usize, write: Option<u64>) -> u64 {
    // SAFETY: the caller accepts a fault; alignment was checked by the command.
    unsafe {
        match (unit, write) {
            (1, None) => core::ptr::read_volatile(ptr as *const u8) as u64,
            (2, None) => core::ptr::read_volatile(ptr as *const u16) as u64,
            (4, None) => core::ptr::read_volatile(ptr as *const u32) as u64,
            (_, None) => core::ptr::read_volatile(ptr as *const u64),
            (1, Some(v)) => {
                core::ptr::write_volatile(ptr as *mut u8, v as u8);
                v
            }
            (2, Some(v)) => {
                core::ptr::write_volatile(ptr as *mut u16, v as u16);
                v
            }
            (4, Some(v)) => {
                core::ptr::write_volatile(ptr as *mut u32, v as u32);
                v
            }
            (_, Some(v)) => {
                core::ptr::write_volatile(ptr as *mut u64, v);
                v
            }
        }
    }
}

impl Machine {
    fn address(&self, addr: u64, physical: bool) -> Result<u64, String> {
        if physical {
            addr.checked_add(paging::direct_map())
                .ok_or_else(|| String::from("physical address too large"))
        } else {
            Ok(addr)
        }
    }
}

impl Machine {
    /// Before power goes: NVMe controllers get a normal shutdown notification.
    fn shut_down_disks(&mut self) {
        // The store first: what file operations committed without a flush is made durable,
        // and closing the database records a clean shutdown on the disk.
        match self.store.sync_for_close() {
            Ok(0) => {}
            Ok(n) => log::info!("store: synced {} commit(s) before power-off", n),
            Err(e) => log::warn!("store: sync before power-off: {}", e),
        }
        self.store =
            capmon_storage::session::Session::ram(String::from("ram (closed for power-off)"));
        for f in &self.nvme {
            if let Ok(c) = &f.ctrl {
                match c.shutdown() {
                    Ok(ms) => log::info!("{}: shut down in {} ms", c.name, ms),
                    Err(e) => log::warn!("{}: {}", c.name, e),
                }
            }
        }
    }

    /// The registered block device with GPT disk GUID `disk` (its partition `part` if found).
    fn block_name_of(&self, disk: &[u8; 16], part: &[u8; 16]) -> Option<String> {
        use capmon_block::TableState;
        let entries = self.blk.entries();
        let parent = entries
            .iter()
            .find(|e| matches!(&e.table, TableState::Gpt(g) if g.header.disk_guid.0 == *disk))?;
        let child = entries.iter().find(|e| {
            e.partition
                .as_ref()
                .is_some_and(|(p, gp)| *p == parent.name && gp.unique_guid.0 == *part)
        });
        Some(child.unwrap_or(parent).name.clone())
    }
}

impl Machine {
    /// `boot_part=GUID` on the command line (the image's GRUB passes the ESP's GPT partition
    /// GUID): which registered partition that is.
    fn boot_part_line(&self) -> Option<String> {
        let v = self.boot.cmdline_value("boot_part")?;
        let Some(g) = capmon_block::Guid::parse(v) else {
            return Some(format!("boot_part={}: not a GUID", v));
        };
        let name = self.blk.entries().iter().find_map(|e| {
            e.partition
                .as_ref()
                .filter(|(_, gp)| gp.unique_guid == g)
                .map(|_| e.name.clone())
        });
        Some(match name {
            Some(n) => format!("partition GUID {} (boot_part) = {}", g, n),
            None => format!("partition GUID {} (boot_part): no block device has it", g),
        })
    }
}

impl PlatformHost for Machine {
    fn version(&self) -> VersionInfo {
        let b = self.boot;
        let mut loader = String::from(b.loader);
        if !b.loader_version().is_empty() {
            loader = format!("{} [{}]", loader, b.loader_version());
        }
        let mut v = VersionInfo {
            version: env!("CARGO_PKG_VERSION"),
            commit: env!("CAPMON_COMMIT"),
            profile: env!("CAPMON_PROFILE"),
            loader,
            firmware: match b.firmware {
                Firmware::Bios => "BIOS",
                Firmware::Uefi => "UEFI",
            },
            cmdline: String::from(b.cmdline()),
            framebuffer: b.framebuffer.map(|f| {
                format!(
                    "{}x{}x{} pitch {} at {:#x}",
                    f.width, f.height, f.bpp, f.pitch, f.phys
                )
            }),
            boot_device: b.boot_device.map(|d| match d {
                BootDevice::Bios {
                    drive,
                    partition,
                    sub,
                } => format!(
                    "BIOS drive {:#x} ({}) partition {} sub-partition {}",
                    drive,
                    match drive {
                        0xe0..=0xff => "CD-ROM",
                        0x80..=0xdf => "hard disk",
                        _ => "floppy",
                    },
                    partition as i32,
                    sub as i32
                ),
                BootDevice::Limine {
                    media,
                    partition,
                    disk_guid,
                    part_guid,
                } => format!(
                    "{} partition {} (disk GUID {}, partition GUID {}){}",
                    match media {
                        1 => "optical",
                        2 => "tftp",
                        _ => "disk",
                    },
                    partition,
                    guid(&disk_guid),
                    guid(&part_guid),
                    self.block_name_of(&disk_guid, &part_guid)
                        .map(|n| format!(" = {}", n))
                        .unwrap_or_default()
                ),
            }),
        };
        // The loader's word on the boot partition joins (or stands in for) the boot device.
        if let Some(part) = self.boot_part_line() {
            v.boot_device = Some(match v.boot_device.take() {
                Some(d) => format!("{}; {}", d, part),
                None => part,
            });
        }
        v
    }

    fn memory_map(&self) -> Vec<MemRegion> {
        self.boot
            .regions()
            .iter()
            .map(|r| MemRegion {
                base: r.base,
                len: r.len,
                kind: r.kind.name(),
            })
            .collect()
    }

    fn mem_stats(&self) -> MemStats {
        let f = frames::stats();
        let h = heap::stats();
        MemStats {
            frames_usable: f.usable,
            frames_free: f.free,
            heap_claimed: h.claimed,
            heap_allocated: h.allocated,
            heap_available: h.available,
            heap_allocations: h.allocations,
        }
    }

    fn read_mem(
        &mut self,
        addr: u64,
        physical: bool,
        unit: usize,
        buf: &mut [u8],
    ) -> Result<(), String> {
        let base = self.address(addr, physical)?;
        for (i, chunk) in buf.chunks_mut(unit).enumerate() {
            // SAFETY: see `access`: faults are caught by the monitor's guard.
            let v = unsafe { access(base + (i * unit) as u64, unit, None) };
            chunk.copy_from_slice(&v.to_le_bytes()[..chunk.len()]);
        }
        Ok(())
    }

    fn write_mem(
        &mut self,
        addr: u64,
        physical: bool,
        unit: usize,
        value: u64,
    ) -> Result<(), String> {
        let p = self.address(addr, physical)?;
        // SAFETY: see `access`.
        unsafe { access(p, unit, Some(value)) };
        Ok(())
    }

    fn cpuid(&self, leaf: u32, subleaf: u32) -> [u32; 4] {
        let r = core::arch::x86_64::__cpuid_count(leaf, subleaf);
        [r.eax, r.ebx, r.ecx, r.edx]
    }

    fn uptime_ns(&self) -> u64 {
        crate::time::now_ns()
    }

    fn ticks(&self) -> Option<(u64, u64)> {
        crate::irq::ready().then(|| (crate::irq::lapic::ticks(), crate::irq::lapic::TICK_HZ))
    }

    fn log_level(&self) -> &'static str {
        match log::max_level() {
            log::LevelFilter::Off => "off",
            log::LevelFilter::Error => "error",
            log::LevelFilter::Warn => "warn",
            log::LevelFilter::Info => "info",
            log::LevelFilter::Debug => "debug",
            log::LevelFilter::Trace => "trace",
        }
    }

    fn set_log_level(&mut self, level: &str) -> bool {
        match crate::logger::parse_level(level) {
            Some(l) => {
                log::set_max_level(l);
                true
            }
            None => false,
        }
    }

    fn reboot(&mut self) -> String {
        self.shut_down_disks();
        crate::power::reboot(self.acpi.as_ref().ok(), &acpi_hw())
    }

    fn poweroff(&mut self) -> String {
        self.shut_down_disks();
        crate::power::poweroff(self.acpi.as_ref().ok(), &acpi_hw())
    }

    fn crash(&mut self, kind: &str) -> String {
        crate::arch::crash::raise(kind)
    }
}

impl capmon_cmds::acpi::AcpiHost for Machine {
    fn acpi(&mut self) -> Result<&Acpi, CmdError> {
        self.acpi.as_ref().map_err(|e| CmdError::Failed(e.clone()))
    }

    fn acpi_hw(&mut self) -> Result<(&Acpi, AcpiHw<'_>), CmdError> {
        let a = self
            .acpi
            .as_ref()
            .map_err(|e| CmdError::Failed(e.clone()))?;
        Ok((a, acpi_hw()))
    }
}
impl capmon_cmds::pci::PciHost for Machine {
    fn pci(&mut self) -> Result<&mut capmon_pci::Pci, CmdError> {
        self.pci.as_mut().map_err(|e| CmdError::Failed(e.clone()))
    }

    fn pci_clock(&self) -> &dyn capmon_hal::Clock {
        &TscClock
    }

    fn pci_map(&self) -> &dyn capmon_hal::PhysMap {
        &KernelPhysMap
    }
}
impl capmon_cmds::blk::BlkHost for Machine {
    fn blk(&mut self) -> &mut capmon_block::Registry {
        &mut self.blk
    }

    fn clock(&self) -> &dyn capmon_hal::Clock {
        &TscClock
    }
}
impl capmon_cmds::store::StoreHost for Machine {
    fn session(&mut self) -> &mut capmon_storage::session::Session {
        &mut self.store
    }

    fn store_format(&mut self, dev: &str) -> Result<String, CmdError> {
        capmon_cmds::store::format_device(&self.blk, &mut self.store, dev, crate::time::now_ns)
    }

    fn store_time(&self) -> capmon_storage::engine::ClockFn {
        crate::time::now_ns
    }

    fn store_registry(&mut self) -> &mut capmon_block::Registry {
        &mut self.blk
    }

    fn store_clock(&self) -> &dyn capmon_hal::Clock {
        &TscClock
    }

    fn store_race(
        &mut self,
        cpu: usize,
        here: capmon_cmds::store::Work,
        there: capmon_cmds::store::Work,
    ) -> Result<(String, String), CmdError> {
        // Generous: a race of many rounds on an overloaded TCG host.
        const TIMEOUT_MS: u64 = 120_000;
        let c = smp_cpu(cpu)?;
        let (mine, theirs) = crate::smp::ipi::run_beside(c, there, here, TIMEOUT_MS * 1_000_000)
            .map_err(|e| run_error(e, cpu, TIMEOUT_MS))?;
        if theirs.outcome == capmon_shell::Outcome::Faulted || theirs.stopped {
            return Err(CmdError::Failed(format!(
                "CPU {} faulted in its part of the race:\n{}",
                cpu,
                theirs.output.trim_end()
            )));
        }
        Ok((mine, theirs.output))
    }
}
impl capmon_cmds::virtio::VirtioHost for Machine {
    fn virtio_functions(&self) -> &[capmon_cmds::virtio::VirtioFunction] {
        &self.virtio
    }
}
impl capmon_cmds::ata::AtaHost for Machine {
    fn ata_functions(&self) -> &[capmon_cmds::ata::AtaFunction] {
        &self.ata
    }
    fn ahci_functions(&self) -> &[capmon_cmds::ata::AhciFunction] {
        &self.ahci
    }
}

impl capmon_cmds::bins::BinsHost for Machine {
    fn boot_bins(
        &mut self,
    ) -> &mut Option<Result<capmon_bootpkg::Registry, capmon_bootpkg::BootError>> {
        &mut self.boot_bins
    }
}

impl capmon_cmds::run::RunHost for Machine {
    fn run_program(
        &mut self,
        req: &mut capmon_cmds::run::RunRequest<'_>,
        o: &mut dyn core::fmt::Write,
    ) -> Result<capmon_cmds::run::RunOutcome, String> {
        crate::user::run(req, o)
    }
}

impl capmon_cmds::nvme::NvmeHost for Machine {
    fn nvme_functions(&self) -> &[capmon_cmds::nvme::NvmeFunction] {
        &self.nvme
    }
}

impl capmon_cmds::irq::IrqHost for Machine {
    fn irq_routes(&mut self) -> Vec<capmon_cmds::irq::RouteLine> {
        crate::irq::routes()
            .into_iter()
            .map(|r| capmon_cmds::irq::RouteLine {
                vector: r.vector,
                count: crate::irq::count(r.vector),
                source: r.source,
                mechanism: r.mechanism,
                apic_id: r.apic_id,
            })
            .collect()
    }

    fn apic_info(&mut self) -> Result<capmon_cmds::irq::ApicInfo, CmdError> {
        use crate::irq::lapic;
        if !crate::irq::ready() {
            return Err(CmdError::Failed(String::from(
                "no local APIC in use (see the boot log)",
            )));
        }
        Ok(capmon_cmds::irq::ApicInfo {
            mode: lapic::mode(),
            base: lapic::xapic_base(),
            requested: lapic::requested(),
            state: lapic::state(),
            timer: lapic::timer_summary(),
            ticks: lapic::ticks(),
        })
    }

    fn intx_routes(&mut self) -> Result<Vec<capmon_cmds::irq::IntxLine>, String> {
        use crate::irq::intx;
        intx::with_routing(|r| r.as_ref().map(|_| ()).map_err(|e| e.clone()))?;
        let Ok(pci) = self.pci.as_ref() else {
            return Ok(Vec::new());
        };
        let mut lines = Vec::new();
        for f in pci.enumerate().functions {
            let bdf = f.bdf();
            let pin = pci.read(bdf, 0x3d, capmon_pci::Width::Byte).unwrap_or(0) as u8;
            if !(1..=4).contains(&pin) {
                continue;
            }
            let route = intx::route_of(bdf, pin).map(|(r, steps)| {
                let mut s = format!("GSI {} {} {}", r.gsi, r.trigger.name(), r.polarity.name());
                if let Some(link) = &r.source {
                    s.push_str(&format!(" ({})", link));
                }
                for st in steps {
                    s.push(' ');
                    s.push_str(&st);
                }
                if let Some(v) = intx::vector_of(r.gsi) {
                    s.push_str(&format!(" -> vector {:#04x}", v));
                }
                s
            });
            lines.push(capmon_cmds::irq::IntxLine {
                bdf: format!("{}", bdf.short()),
                pin: (b'A' + pin - 1) as char,
                route,
            });
        }
        Ok(lines)
    }

    fn ioapics(&mut self) -> Vec<capmon_cmds::irq::IoApicInfo> {
        crate::irq::ioapic::with_chips(|chips| {
            chips
                .iter()
                .map(|c| {
                    let r = c.regs();
                    capmon_cmds::irq::IoApicInfo {
                        id: r.id(),
                        phys: c.phys,
                        gsi_base: c.gsi_base,
                        version: r.version(),
                        entries: (0..r.pins()).filter_map(|p| r.read_raw(p)).collect(),
                    }
                })
                .collect()
        })
    }
}

impl capmon_cmds::smp::SmpHost for Machine {
    fn cpus(&mut self) -> Vec<capmon_cmds::smp::CpuLine> {
        use core::sync::atomic::Ordering::Relaxed;
        crate::smp::cpus()
            .iter()
            .map(|c| capmon_cmds::smp::CpuLine {
                index: c.index as usize,
                apic_id: c.apic_id(),
                state: c.state().name(),
                ticks: c.ticks.load(Relaxed),
                idle_permille: if c.is_online() { c.idle_permille() } else { 0 },
                ipis: c.ipis.load(Relaxed),
                nmis: c.nmis.load(Relaxed),
            })
            .collect()
    }

    fn bring_up(&mut self) -> capmon_cmds::smp::BringUpInfo {
        let b = crate::smp::bring_up();
        capmon_cmds::smp::BringUpInfo {
            method: b.map_or("none", |b| b.method),
            started: b.map_or(0, |b| b.started),
            disabled: b.map_or(0, |b| b.disabled),
            time_ns: crate::smp::bring_up_ns(),
            trampoline: b.and_then(|b| b.trampoline),
            resent: b.map_or(0, |b| b.resent),
            notes: b.map(|b| b.notes.clone()).unwrap_or_default(),
        }
    }

    fn this_cpu(&self) -> usize {
        crate::smp::percpu::this().index as usize
    }

    fn ipi_round_trips(
        &mut self,
        cpu: usize,
        rounds: usize,
    ) -> Result<capmon_cmds::smp::RoundTrips, CmdError> {
        let c = smp_cpu(cpu)?;
        let (samples_ns, lost) = crate::smp::ipi::round_trips(c, rounds);
        Ok(capmon_cmds::smp::RoundTrips { samples_ns, lost })
    }

    fn ipi_nmi(&mut self, cpu: usize) -> Result<Option<u64>, CmdError> {
        Ok(crate::smp::ipi::nmi(smp_cpu(cpu)?))
    }

    fn run_on(
        &mut self,
        cpu: usize,
        line: &str,
        timeout_ms: u64,
    ) -> Result<capmon_cmds::smp::OnOutput, CmdError> {
        let c = smp_cpu(cpu)?;
        let r = crate::smp::ipi::run_on(c, self, line, timeout_ms * 1_000_000)
            .map_err(|e| run_error(e, cpu, timeout_ms))?;
        Ok(capmon_cmds::smp::OnOutput {
            output: r.output,
            faulted: r.outcome == capmon_shell::Outcome::Faulted,
            stopped: r.stopped,
        })
    }

    fn tlb_test(&mut self) -> Result<capmon_cmds::smp::TlbReport, CmdError> {
        let r = crate::smp::tlb::self_test().map_err(|e| CmdError::Failed(String::from(e)))?;
        let (shootdowns, missed_acks, _) = crate::smp::tlb::stats();
        Ok(capmon_cmds::smp::TlbReport {
            cpus: r.cpus,
            first: r.first,
            stale: r.stale,
            after: r.after,
            shootdown_ns: r.shootdown_ns,
            shootdowns,
            missed_acks,
        })
    }
}

/// Why another CPU did not run what it was handed, in words.
fn run_error(e: crate::smp::ipi::RunError, cpu: usize, timeout_ms: u64) -> CmdError {
    use crate::smp::ipi::RunError;
    CmdError::Failed(match e {
        RunError::NotFromAp => format!(
            "on: only the boot CPU's monitor hands out commands (this is CPU {})",
            crate::smp::percpu::this().index
        ),
        RunError::Busy(t) => format!("CPU {} still runs a command given up on earlier", t),
        RunError::NotPickedUp => format!(
            "CPU {} did not pick the command up within {} ms",
            cpu, timeout_ms
        ),
        RunError::Wedged => format!(
            "CPU {} overran {} ms and ignored the NMI sent to stop it: left running",
            cpu, timeout_ms
        ),
        RunError::SameCpu => format!("CPU {} is this CPU: a race needs another", cpu),
    })
}

/// The online CPU with index `cpu`.
fn smp_cpu(cpu: usize) -> Result<&'static crate::smp::percpu::PerCpu, CmdError> {
    let c = crate::smp::cpus()
        .get(cpu)
        .copied()
        .ok_or_else(|| CmdError::Failed(format!("no CPU {}", cpu)))?;
    if !c.is_online() {
        return Err(CmdError::Failed(format!(
            "CPU {} is {}",
            cpu,
            c.state().name()
        )));
    }
    Ok(c)
}
