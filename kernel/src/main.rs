//! capmon: boot, bring the machine up, and run the monitor. This file reads as the boot
//! sequence; each step lives in its own module.
#![no_std]
#![no_main]

extern crate alloc;

mod arch;
mod board;
mod boot;
mod console;
mod irq;
mod logger;
mod machine;
mod mem;
mod monitor;
mod power;
mod smp;
mod symbols;
mod time;
mod user;

use boot::BootInfo;
use core::arch::global_asm;
use core::fmt::Write;
use spin::Once;

global_asm!(include_str!("boot/entry.s"));

static BOOT_INFO: Once<BootInfo> = Once::new();

/// Entered from the Multiboot2 trampoline in boot/entry.s.
#[unsafe(no_mangle)]
extern "C" fn kmain_multiboot2(magic: u32, info_phys: u64) -> ! {
    console::init();
    let mut bi = BootInfo::empty();
    let res = boot::multiboot2::parse(magic, info_phys, &mut bi);
    kernel_main(bi, res)
}

/// Entered from `_start_limine` in boot/entry.s.
#[unsafe(no_mangle)]
extern "C" fn kmain_limine() -> ! {
    // Before anything else: Limine's parked APs spin, which can starve the BSP (smp).
    smp::limine_pen::enter();
    console::init();
    let mut bi = BootInfo::empty();
    let res = boot::limine::parse(&mut bi);
    kernel_main(bi, res)
}

fn kernel_main(bi: BootInfo, parsed: Result<(), &'static str>) -> ! {
    smp::percpu::init_bsp();
    time::init();
    let level = bi
        .cmdline_value("log")
        .and_then(logger::parse_level)
        .unwrap_or(log::LevelFilter::Info);
    logger::init(level);
    if let Err(e) = parsed {
        log::error!("boot information: {}", e);
    }
    arch::gdt::init();
    arch::traps::init();
    let bi: &'static BootInfo = BOOT_INFO.call_once(|| bi);
    log::info!(
        "capmon {} booted by {} {} ({:?}), TSC {} MHz",
        env!("CARGO_PKG_VERSION"),
        bi.loader,
        bi.loader_version(),
        bi.firmware,
        time::tsc_hz() / 1_000_000
    );
    mem::init(bi);
    let f = mem::frames::stats();
    log::info!(
        "memory: {} MiB usable, {} MiB free",
        (f.usable * 4096) >> 20,
        (f.free * 4096) >> 20
    );
    symbols::init(bi);

    let acpi = match bi.rsdp {
        None => Err(alloc::string::String::from("the loader gave no RSDP")),
        Some(rsdp) => capmon_acpi::Acpi::new(&mem::paging::KernelPhysMap, rsdp)
            .map_err(|e| alloc::format!("{}", e)),
    };
    match &acpi {
        Ok(a) => log::info!("ACPI: {} tables", a.tables().len()),
        Err(e) => log::error!("ACPI: {}", e),
    }
    // The tables live as long as the kernel: interrupt routing reads them after boot.
    let acpi: &'static Result<capmon_acpi::Acpi, alloc::string::String> =
        alloc::boxed::Box::leak(alloc::boxed::Box::new(acpi));
    if let Ok(a) = acpi {
        irq::intx::set_acpi(a);
    }
    irq::init(bi, acpi.as_ref().ok());
    user::init();
    board::ps2(acpi.as_ref().ok());
    smp::init(bi, acpi.as_ref().ok());
    let pci = board::pci(acpi.as_ref().ok());
    let mut blk = capmon_block::Registry::new();
    let (virtio, nvme, ata, ahci) = match &pci {
        Ok(pci) => {
            irq::intx::set_topology(&pci.enumerate());
            let virtio = board::virtio(bi, pci, &mut blk);
            let nvme = board::nvme(bi, pci, &mut blk);
            let ata = board::ata(pci, &mut blk);
            (virtio, nvme, ata, board::ahci(pci, &mut blk))
        }
        Err(_) => Default::default(),
    };
    board::ram_disk(bi, &mut blk);
    board::scan_partitions(&mut blk);
    // Opening the store decodes what the disk holds: under the fault guard, so a fault or a
    // panic there costs the store (a RAM one instead), not the machine.
    let store = arch::traps::guarded(|| capmon_cmds::store::boot_session(&blk, time::now_ns))
        .unwrap_or_else(|| {
            log::warn!("store: opening the data partition faulted; using a RAM store");
            capmon_storage::session::Session::ram(alloc::string::String::from(
                "ram (opening the data partition faulted at boot)",
            ))
        });

    let machine = machine::Machine {
        boot: bi,
        acpi,
        pci,
        blk,
        virtio,
        nvme,
        ata,
        ahci,
        boot_bins: None,
        store,
    };
    let machine = alloc::boxed::Box::leak(alloc::boxed::Box::new(machine));
    // The boot binaries: the boot CD's manifest against its /boot/bins (under the fault
    // guard: a disk's bytes decide what this reads).
    machine.boot_bins = arch::traps::guarded(|| board::boot_bins(machine)).flatten();
    arch::stack::switch_to_monitor_stack(run_monitor, machine as *mut machine::Machine as *mut u8)
}

/// The monitor, on its own guarded stack.
extern "C" fn run_monitor(machine: *mut u8) -> ! {
    // SAFETY: `machine` is the leaked Box made in kernel_main, used by nothing else.
    monitor::run(unsafe { &mut *(machine as *mut machine::Machine) })
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    arch::traps::with_report_sink(|c| {
        let _ = writeln!(c, "\n*** PANIC: {} ***", info.message());
        if let Some(l) = info.location() {
            let _ = writeln!(c, "at {}:{}:{}", l.file(), l.line(), l.column());
        }
    });
    // Inside a command: abandon it and return to the prompt. Otherwise halt (this CPU).
    arch::traps::abort_guarded_command();
    let cpu = smp::percpu::this();
    if cpu.index == 0 {
        let _ = writeln!(
            console::emergency(),
            "panic outside any command: system halted"
        );
    } else {
        cpu.set_state(smp::percpu::CpuState::Halted);
        let _ = writeln!(
            console::emergency(),
            "panic outside any command on CPU {}: CPU {} halted",
            cpu.index,
            cpu.index
        );
    }
    arch::traps::halt_forever()
}
