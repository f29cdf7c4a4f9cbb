//! System commands: version, mem, md, mw, cpuid, uptime, echo, log, reboot, poweroff.
use alloc::string::String;
use alloc::vec::Vec;
use capmon_shell::out::{hexdump, HumanSize};
use capmon_shell::{bad_arg, fail, outln, Args, CmdError, CmdResult, Command};
use core::fmt::Write;

/// What `version` prints.
pub struct VersionInfo {
    pub version: &'static str,
    pub commit: &'static str,
    pub profile: &'static str,
    pub loader: String,
    pub firmware: &'static str,
    pub cmdline: String,
    pub boot_device: Option<String>,
    /// `WIDTHxHEIGHTxBPP at PHYS` when the loader set up a framebuffer.
    pub framebuffer: Option<String>,
}

/// One memory-map entry.
pub struct MemRegion {
    pub base: u64,
    pub len: u64,
    pub kind: &'static str,
}

#[derive(Default, Clone, Copy)]
pub struct MemStats {
    pub frames_usable: u64,
    pub frames_free: u64,
    pub heap_claimed: usize,
    pub heap_allocated: usize,
    pub heap_available: usize,
    pub heap_allocations: usize,
}

/// What the system commands need from the machine.
pub trait PlatformHost {
    fn version(&self) -> VersionInfo;
    fn memory_map(&self) -> Vec<MemRegion>;
    fn mem_stats(&self) -> MemStats;
    /// Reads `buf.len()` bytes at `addr` (virtual, or physical through the direct map) with
    /// accesses of `unit` bytes. May fault: the monitor's fault guard reports it.
    fn read_mem(
        &mut self,
        addr: u64,
        physical: bool,
        unit: usize,
        buf: &mut [u8],
    ) -> Result<(), String>;
    /// Writes one `unit`-byte value at `addr`. May fault like `read_mem`.
    fn write_mem(
        &mut self,
        addr: u64,
        physical: bool,
        unit: usize,
        value: u64,
    ) -> Result<(), String>;
    fn cpuid(&self, leaf: u32, subleaf: u32) -> [u32; 4];
    fn uptime_ns(&self) -> u64;
    /// Timer ticks on this CPU and the tick rate (Hz), when a periodic tick runs.
    fn ticks(&self) -> Option<(u64, u64)> {
        None
    }
    fn log_level(&self) -> &'static str;
    fn set_log_level(&mut self, level: &str) -> bool;
    /// Resets the machine; returns only if every method failed, saying why.
    fn reboot(&mut self) -> String;
    /// Powers off through ACPI S5; returns only on failure, saying why.
    fn poweroff(&mut self) -> String;
    /// Raises the named fault on purpose (one of `CRASH_KINDS`), to exercise the fault guard.
    /// Returns only if the fault did not happen, saying why.
    fn crash(&mut self, kind: &str) -> String;
}

/// What `crash` can raise: page fault, general protection, invalid opcode, breakpoint,
/// divide error, a Rust panic, and a stack overflow into the monitor stack's guard page.
pub const CRASH_KINDS: &[&str] = &["pf", "gp", "ud", "bp", "de", "panic", "stack"];

pub fn commands<S: PlatformHost>() -> Vec<Command<S>> {
    alloc::vec![
        Command {
            name: "version",
            group: "system",
            subcommands: &[],
            usage: "version",
            help: "kernel version, commit, build profile, loader and firmware",
            long_help: "Prints the crate version, the git commit it was built from, the build profile,\nthe loader that booted the kernel, the firmware (BIOS or UEFI) and the kernel command line.",
            run: version::<S>,
        },
        Command {
            name: "mem",
            group: "memory",
            subcommands: &[],
            usage: "mem",
            help: "memory map, free/used frames, heap statistics",
            long_help: "Prints the boot memory map, the total usable RAM, frames free and used,\nand the kernel heap's claimed, allocated and available bytes.",
            run: mem::<S>,
        },
        Command {
            name: "md",
            group: "memory",
            subcommands: &[],
            usage: "md ADDR [COUNT] [-b|-w|-d|-q] [-p]",
            help: "memory display (hexdump with ASCII)",
            long_help: "Dumps COUNT units (default 64 bytes' worth) at ADDR. Units: -b byte (default),\n-w 16-bit, -d 32-bit, -q 64-bit; ADDR must be aligned to the unit. -p: ADDR is physical\n(through the direct map). An unmapped address reports the page fault and returns here.",
            run: md::<S>,
        },
        Command {
            name: "mw",
            group: "memory",
            subcommands: &[],
            usage: "mw ADDR VALUE [-b|-w|-d|-q] [-p]",
            help: "memory write",
            long_help: "Writes VALUE at ADDR as a byte (-b), 16-bit (-w), 32-bit (-d, default) or 64-bit (-q)\nvalue. -p: ADDR is physical. The value must fit the unit.",
            run: mw::<S>,
        },
        Command {
            name: "cpuid",
            group: "system",
            subcommands: &["raw"],
            usage: "cpuid [raw LEAF [SUBLEAF]]",
            help: "CPU vendor, brand, family/model/stepping, features",
            long_help: "Decodes CPUID: vendor, brand string, family/model/stepping, and key feature flags\n(apic, x2apic, sse*, avx*, 1G pages, invariant TSC, ...). 'cpuid raw LEAF [SUBLEAF]'\nprints the four registers of one leaf.",
            run: cpuid::<S>,
        },
        Command {
            name: "uptime",
            group: "system",
            subcommands: &[],
            usage: "uptime",
            help: "time since boot",
            long_help: "Time since the kernel calibrated its clock, in seconds with microseconds.",
            run: uptime::<S>,
        },
        Command {
            name: "echo",
            group: "system",
            subcommands: &[],
            usage: "echo [WORDS...]",
            help: "print the arguments",
            long_help: "Prints its arguments separated by single spaces.",
            run: echo::<S>,
        },
        Command {
            name: "log",
            group: "system",
            subcommands: &["off", "error", "warn", "info", "debug", "trace"],
            usage: "log [off|error|warn|info|debug|trace]",
            help: "show or set the kernel log level",
            long_help: "Without an argument prints the current log level; with one, sets it.\nThe boot level comes from 'log=LEVEL' on the kernel command line.",
            run: log_cmd::<S>,
        },
        Command {
            name: "crash",
            group: "debug",
            subcommands: CRASH_KINDS,
            usage: "crash pf|gp|ud|bp|de|panic|stack",
            help: "raise a fault inside a command (tests the fault guard)",
            long_help: "Raises a fault on purpose: pf (read of an unmapped page), gp (non-canonical\naddress), ud (invalid opcode), bp (int3), de (divide by zero), panic (a Rust panic),\nstack (unbounded recursion into the monitor stack's guard page). The report is printed\nand the monitor returns to the prompt.",
            run: crash::<S>,
        },
        Command {
            name: "reboot",
            group: "power",
            subcommands: &[],
            usage: "reboot",
            help: "reset the machine (ACPI reset register, 8042, triple fault)",
            long_help: "Resets through the FADT reset register, then the 8042 keyboard controller,\nthen a triple fault.",
            run: reboot::<S>,
        },
        Command {
            name: "poweroff",
            group: "power",
            subcommands: &[],
            usage: "poweroff",
            help: "power off through ACPI S5",
            long_help: "Enters ACPI S5: SLP_TYP from the DSDT's \\_S5 object, written with SLP_EN to the\nFADT's PM1a/PM1b control blocks.",
            run: poweroff::<S>,
        },
    ]
}

fn version<S: PlatformHost>(s: &mut S, a: &mut Args, o: &mut dyn Write) -> CmdResult {
    a.finish()?;
    let v = s.version();
    outln!(
        o,
        "capmon {} (commit {}, {} build)",
        v.version,
        v.commit,
        v.profile
    );
    outln!(o, "loader:   {}", v.loader);
    outln!(o, "firmware: {}", v.firmware);
    outln!(o, "cmdline:  {}", v.cmdline);
    if let Some(d) = v.boot_device {
        outln!(o, "boot device: {}", d);
    }
    if let Some(fb) = v.framebuffer {
        outln!(o, "framebuffer: {}", fb);
    }
    Ok(())
}

fn mem<S: PlatformHost>(s: &mut S, a: &mut Args, o: &mut dyn Write) -> CmdResult {
    a.finish()?;
    outln!(o, "{:<18} {:<18} {:>12}  type", "start", "end", "size");
    let mut usable = 0u64;
    for r in s.memory_map() {
        // RAM the firmware handed to the OS: what the loader and the kernel occupy counts too
        // (GRUB reports it as usable, Limine as its own kinds).
        if matches!(r.kind, "usable" | "bootloader" | "kernel+modules") {
            usable += r.len;
        }
        outln!(
            o,
            "{:#018x} {:#018x} {:>12}  {}",
            r.base,
            r.base.saturating_add(r.len).saturating_sub(1),
            alloc::format!("{}", HumanSize(r.len)),
            r.kind
        );
    }
    let m = s.mem_stats();
    outln!(o, "usable RAM: {} bytes ({})", usable, HumanSize(usable));
    outln!(
        o,
        "frames: {} usable, {} free, {} used ({} free)",
        m.frames_usable,
        m.frames_free,
        m.frames_usable - m.frames_free.min(m.frames_usable),
        HumanSize(m.frames_free * 4096)
    );
    outln!(
        o,
        "heap: {} claimed, {} allocated in {} allocations, {} available",
        HumanSize(m.heap_claimed as u64),
        HumanSize(m.heap_allocated as u64),
        m.heap_allocations,
        HumanSize(m.heap_available as u64)
    );
    Ok(())
}

/// Parses the unit flags shared by `md` and `mw`.
fn unit_flag(a: &mut Args, default: usize) -> Result<usize, CmdError> {
    Ok(match a.one_of(&["-b", "-w", "-d", "-q"])? {
        Some("-b") => 1,
        Some("-w") => 2,
        Some("-d") => 4,
        Some("-q") => 8,
        _ => default,
    })
}

/// Largest `md` dump, to keep output bounded.
const MD_MAX_BYTES: u64 = 64 * 1024;

fn md<S: PlatformHost>(s: &mut S, a: &mut Args, o: &mut dyn Write) -> CmdResult {
    let unit = unit_flag(a, 1)?;
    let phys = a.flag("-p");
    let addr = a.u64("ADDR")?;
    let count = a.opt_u64("COUNT")?.unwrap_or(64 / unit as u64);
    a.finish()?;
    if count == 0 {
        return Err(bad_arg!("COUNT must be at least 1"));
    }
    if addr % unit as u64 != 0 {
        return Err(bad_arg!(
            "ADDR {:#x} is not aligned to {} bytes",
            addr,
            unit
        ));
    }
    let bytes = count
        .checked_mul(unit as u64)
        .filter(|&b| b <= MD_MAX_BYTES);
    let Some(bytes) = bytes else {
        return Err(bad_arg!("at most {} bytes per dump", MD_MAX_BYTES));
    };
    if addr.checked_add(bytes).is_none() {
        return Err(bad_arg!("range wraps around the address space"));
    }
    let mut buf = alloc::vec![0u8; bytes as usize];
    s.read_mem(addr, phys, unit, &mut buf)
        .map_err(CmdError::Failed)?;
    hexdump(o, addr, &buf, unit);
    Ok(())
}

fn mw<S: PlatformHost>(s: &mut S, a: &mut Args, o: &mut dyn Write) -> CmdResult {
    let unit = unit_flag(a, 4)?;
    let phys = a.flag("-p");
    let addr = a.u64("ADDR")?;
    let value = a.u64("VALUE")?;
    a.finish()?;
    if unit < 8 && value >> (unit * 8) != 0 {
        return Err(bad_arg!(
            "VALUE {:#x} does not fit in {} bytes",
            value,
            unit
        ));
    }
    if addr % unit as u64 != 0 {
        return Err(bad_arg!(
            "ADDR {:#x} is not aligned to {} bytes",
            addr,
            unit
        ));
    }
    s.write_mem(addr, phys, unit, value)
        .map_err(CmdError::Failed)?;
    outln!(
        o,
        "wrote {:#x} ({} bytes) at {:#x}{}",
        value,
        unit,
        addr,
        if phys { " (physical)" } else { "" }
    );
    Ok(())
}

/// CPUID feature bits worth showing: (leaf, subleaf, register index, bit, name).
/// Intel SDM Vol. 2A, CPUID instruction, tables 3-10/3-11 and leaf 7/0x80000001/0x80000007.
const FEATURES: &[(u32, u32, usize, u32, &str)] = &[
    (1, 0, 3, 0, "fpu"),
    (1, 0, 3, 4, "tsc"),
    (1, 0, 3, 5, "msr"),
    (1, 0, 3, 6, "pae"),
    (1, 0, 3, 9, "apic"),
    (1, 0, 3, 12, "mtrr"),
    (1, 0, 3, 13, "pge"),
    (1, 0, 3, 16, "pat"),
    (1, 0, 3, 19, "clflush"),
    (1, 0, 3, 25, "sse"),
    (1, 0, 3, 26, "sse2"),
    (1, 0, 3, 28, "htt"),
    (1, 0, 2, 0, "sse3"),
    (1, 0, 2, 9, "ssse3"),
    (1, 0, 2, 12, "fma"),
    (1, 0, 2, 13, "cx16"),
    (1, 0, 2, 17, "pcid"),
    (1, 0, 2, 19, "sse4.1"),
    (1, 0, 2, 20, "sse4.2"),
    (1, 0, 2, 21, "x2apic"),
    (1, 0, 2, 22, "movbe"),
    (1, 0, 2, 23, "popcnt"),
    (1, 0, 2, 24, "tsc-deadline"),
    (1, 0, 2, 25, "aes"),
    (1, 0, 2, 26, "xsave"),
    (1, 0, 2, 28, "avx"),
    (1, 0, 2, 30, "rdrand"),
    (1, 0, 2, 31, "hypervisor"),
    (7, 0, 1, 0, "fsgsbase"),
    (7, 0, 1, 3, "bmi1"),
    (7, 0, 1, 5, "avx2"),
    (7, 0, 1, 7, "smep"),
    (7, 0, 1, 8, "bmi2"),
    (7, 0, 1, 9, "erms"),
    (7, 0, 1, 10, "invpcid"),
    (7, 0, 1, 16, "avx512f"),
    (7, 0, 1, 18, "rdseed"),
    (7, 0, 1, 20, "smap"),
    (7, 0, 2, 2, "umip"),
    (7, 0, 2, 16, "la57"),
    (0x8000_0001, 0, 3, 11, "syscall"),
    (0x8000_0001, 0, 3, 20, "nx"),
    (0x8000_0001, 0, 3, 26, "1g-pages"),
    (0x8000_0001, 0, 3, 27, "rdtscp"),
    (0x8000_0001, 0, 3, 29, "lm"),
    (0x8000_0001, 0, 2, 0, "lahf-lm"),
    (0x8000_0007, 0, 3, 8, "invariant-tsc"),
];

/// Family, model and stepping from leaf 1 EAX (SDM: display family/model rules).
pub fn family_model_stepping(eax: u32) -> (u32, u32, u32) {
    let stepping = eax & 0xf;
    let base_model = (eax >> 4) & 0xf;
    let base_family = (eax >> 8) & 0xf;
    let ext_model = (eax >> 16) & 0xf;
    let ext_family = (eax >> 20) & 0xff;
    let family = if base_family == 0xf {
        base_family + ext_family
    } else {
        base_family
    };
    let model = if base_family == 0x6 || base_family == 0xf {
        (ext_model << 4) | base_model
    } else {
        base_model
    };
    (family, model, stepping)
}

fn regs_str(regs: &[u32]) -> String {
    let mut s = String::new();
    for r in regs {
        for b in r.to_le_bytes() {
            if b.is_ascii_graphic() || b == b' ' {
                s.push(b as char);
            }
        }
    }
    String::from(s.trim())
}

fn cpuid<S: PlatformHost>(s: &mut S, a: &mut Args, o: &mut dyn Write) -> CmdResult {
    if a.flag("raw") {
        let leaf = a.u64("LEAF")?;
        let sub = a.opt_u64("SUBLEAF")?.unwrap_or(0);
        a.finish()?;
        let (Ok(leaf), Ok(sub)) = (u32::try_from(leaf), u32::try_from(sub)) else {
            return Err(bad_arg!("LEAF and SUBLEAF are 32-bit"));
        };
        let r = s.cpuid(leaf, sub);
        outln!(
            o,
            "leaf {:#x}.{:#x}: eax={:#010x} ebx={:#010x} ecx={:#010x} edx={:#010x}",
            leaf,
            sub,
            r[0],
            r[1],
            r[2],
            r[3]
        );
        return Ok(());
    }
    a.finish()?;
    let l0 = s.cpuid(0, 0);
    let max_leaf = l0[0];
    let vendor = regs_str(&[l0[1], l0[3], l0[2]]);
    let max_ext = s.cpuid(0x8000_0000, 0)[0];
    let brand = if max_ext >= 0x8000_0004 {
        let mut regs = Vec::new();
        for leaf in 0x8000_0002..=0x8000_0004 {
            regs.extend_from_slice(&s.cpuid(leaf, 0));
        }
        regs_str(&regs)
    } else {
        String::from("(no brand string)")
    };
    let l1 = s.cpuid(1, 0);
    let (family, model, stepping) = family_model_stepping(l1[0]);
    outln!(o, "vendor:   {}", vendor);
    outln!(o, "brand:    {}", brand);
    outln!(
        o,
        "family {:#x} model {:#x} stepping {} (max leaf {:#x}, max extended {:#x})",
        family,
        model,
        stepping,
        max_leaf,
        max_ext
    );
    outln!(
        o,
        "apic id:  {}, logical processors {}",
        l1[1] >> 24,
        (l1[1] >> 16) & 0xff
    );
    // The initial APIC ID above is 8 bits; leaf 0xB gives the whole 32-bit x2APIC ID (SDM
    // Vol. 3A §11.12.8.1), which is what tells CPU 256 from CPU 0.
    if max_leaf >= 0xb && s.cpuid(0xb, 0)[1] != 0 {
        outln!(o, "x2apic id: {}", s.cpuid(0xb, 0)[3]);
    }
    let mut line = String::from("features:");
    for &(leaf, sub, reg, bit, name) in FEATURES {
        let present = if leaf >= 0x8000_0000 {
            leaf <= max_ext
        } else {
            leaf <= max_leaf
        };
        if present && s.cpuid(leaf, sub)[reg] & (1 << bit) != 0 {
            if line.len() + name.len() > 78 {
                outln!(o, "{}", line);
                line = String::from("         ");
            }
            line.push(' ');
            line.push_str(name);
        }
    }
    outln!(o, "{}", line);
    Ok(())
}

fn uptime<S: PlatformHost>(s: &mut S, a: &mut Args, o: &mut dyn Write) -> CmdResult {
    a.finish()?;
    let ns = s.uptime_ns();
    outln!(
        o,
        "up {}.{:06} s",
        ns / 1_000_000_000,
        ns / 1000 % 1_000_000
    );
    if let Some((ticks, hz)) = s.ticks() {
        outln!(o, "ticks: {} at {} Hz", ticks, hz);
    }
    Ok(())
}

fn echo<S: PlatformHost>(_s: &mut S, a: &mut Args, o: &mut dyn Write) -> CmdResult {
    let words = a.rest();
    let mut first = true;
    for w in words {
        if !first {
            let _ = o.write_char(' ');
        }
        let _ = o.write_str(w);
        first = false;
    }
    outln!(o);
    Ok(())
}

fn log_cmd<S: PlatformHost>(s: &mut S, a: &mut Args, o: &mut dyn Write) -> CmdResult {
    match a.opt_str() {
        None => outln!(o, "log level: {}", s.log_level()),
        Some(l) => {
            a.finish()?;
            if !s.set_log_level(l) {
                return Err(bad_arg!("unknown level '{}'", l));
            }
            outln!(o, "log level: {}", s.log_level());
        }
    }
    Ok(())
}

fn crash<S: PlatformHost>(s: &mut S, a: &mut Args, _o: &mut dyn Write) -> CmdResult {
    let kind = a.str()?;
    a.finish()?;
    if !CRASH_KINDS.contains(&kind) {
        return Err(bad_arg!("unknown fault '{}'", kind));
    }
    Err(fail!("crash {} did not fault: {}", kind, s.crash(kind)))
}

fn reboot<S: PlatformHost>(s: &mut S, a: &mut Args, _o: &mut dyn Write) -> CmdResult {
    a.finish()?;
    Err(fail!("reboot failed: {}", s.reboot()))
}

fn poweroff<S: PlatformHost>(s: &mut S, a: &mut Args, _o: &mut dyn Write) -> CmdResult {
    a.finish()?;
    Err(fail!("poweroff failed: {}", s.poweroff()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fms_decoding() {
        // Intel Skylake client: family 6, model 0x5e, stepping 3 (eax 0x000506e3).
        assert_eq!(family_model_stepping(0x0005_06e3), (6, 0x5e, 3));
        // AMD Zen 2: family 0x17 (0xf + 8), model 0x31.
        assert_eq!(family_model_stepping(0x0083_0f10), (0x17, 0x31, 0));
        // QEMU's qemu64: family 0xf + ext 0 ... model 6 stepping 1 (eax 0x663).
        assert_eq!(family_model_stepping(0x663), (6, 6, 3));
    }

    /// A machine with a Limine-style memory map and 64 KiB of readable memory at 0x1000.
    struct FakeHost {
        mem: alloc::vec::Vec<u8>,
    }

    impl PlatformHost for FakeHost {
        fn version(&self) -> VersionInfo {
            VersionInfo {
                version: "0.1.0",
                commit: "abc",
                profile: "release",
                loader: String::from("Limine 8.2.0"),
                firmware: "UEFI",
                cmdline: String::new(),
                boot_device: None,
                framebuffer: None,
            }
        }
        fn memory_map(&self) -> Vec<MemRegion> {
            alloc::vec![
                MemRegion {
                    base: 0,
                    len: 0x9f000,
                    kind: "usable"
                },
                MemRegion {
                    base: 0x9f000,
                    len: 0x1000,
                    kind: "reserved"
                },
                MemRegion {
                    base: 0x100000,
                    len: 0x100000,
                    kind: "kernel+modules"
                },
                MemRegion {
                    base: 0x200000,
                    len: 0x200000,
                    kind: "bootloader"
                },
                MemRegion {
                    base: 0x400000,
                    len: 0xc00000,
                    kind: "usable"
                },
                MemRegion {
                    base: 0x1000000,
                    len: 0x10000,
                    kind: "ACPI NVS"
                },
            ]
        }
        fn mem_stats(&self) -> MemStats {
            MemStats {
                frames_usable: 100,
                frames_free: 40,
                ..Default::default()
            }
        }
        fn read_mem(
            &mut self,
            addr: u64,
            _p: bool,
            _unit: usize,
            buf: &mut [u8],
        ) -> Result<(), String> {
            let off = addr
                .checked_sub(0x1000)
                .ok_or_else(|| String::from("unmapped"))? as usize;
            let src = self
                .mem
                .get(off..off + buf.len())
                .ok_or_else(|| String::from("unmapped"))?;
            buf.copy_from_slice(src);
            Ok(())
        }
        fn write_mem(
            &mut self,
            addr: u64,
            _p: bool,
            unit: usize,
            value: u64,
        ) -> Result<(), String> {
            let off = (addr - 0x1000) as usize;
            self.mem[off..off + unit].copy_from_slice(&value.to_le_bytes()[..unit]);
            Ok(())
        }
        fn cpuid(&self, _leaf: u32, _subleaf: u32) -> [u32; 4] {
            [0; 4]
        }
        fn uptime_ns(&self) -> u64 {
            1_500_000_000
        }
        fn ticks(&self) -> Option<(u64, u64)> {
            Some((150, 100))
        }
        fn log_level(&self) -> &'static str {
            "info"
        }
        fn set_log_level(&mut self, level: &str) -> bool {
            level == "debug"
        }
        fn reboot(&mut self) -> String {
            String::from("no reset")
        }
        fn poweroff(&mut self) -> String {
            String::from("no ACPI")
        }
        fn crash(&mut self, kind: &str) -> String {
            alloc::format!("{} is harmless here", kind)
        }
    }

    fn run(h: &mut FakeHost, line: &str) -> Result<String, CmdError> {
        let words = capmon_shell::parse::words(line);
        let cmds = commands::<FakeHost>();
        let cmd = cmds
            .iter()
            .find(|c| c.name == words[0])
            .expect("command exists");
        let mut out = String::new();
        (cmd.run)(h, &mut Args::new(words[1..].to_vec()), &mut out).map(|()| out)
    }

    fn host() -> FakeHost {
        FakeHost {
            mem: (0..=255u8).cycle().take(0x10000).collect(),
        }
    }

    #[test]
    fn mem_counts_ram_the_loader_and_kernel_occupy() {
        let out = run(&mut host(), "mem").unwrap();
        // 0x9f000 + 0x100000 + 0x200000 + 0xc00000: reserved and ACPI NVS are not RAM for the OS.
        assert!(
            out.contains("usable RAM: 16379904 bytes (15.6 MiB)"),
            "{}",
            out
        );
        assert!(
            out.contains("frames: 100 usable, 40 free, 60 used"),
            "{}",
            out
        );
    }

    #[test]
    fn md_dumps_and_checks_its_arguments() {
        let mut h = host();
        let out = run(&mut h, "md 0x1010 4 -d").unwrap();
        assert_eq!(
            out,
            "0000000000001010: 13121110 17161514 1b1a1918 1f1e1d1c  |................|\n"
        );
        assert_eq!(run(&mut h, "md"), Err(CmdError::Usage));
        assert!(
            matches!(run(&mut h, "md 0x1001 1 -d"), Err(CmdError::BadArg(m)) if m.contains("not aligned"))
        );
        assert!(
            matches!(run(&mut h, "md 0x1000 0"), Err(CmdError::BadArg(m)) if m.contains("at least 1"))
        );
        assert!(
            matches!(run(&mut h, "md 0x1000 100000 -q"), Err(CmdError::BadArg(m)) if m.contains("at most"))
        );
        assert!(
            matches!(run(&mut h, "md 0xffffffffffffffff 8"), Err(CmdError::BadArg(m)) if m.contains("wraps"))
        );
        assert!(matches!(
            run(&mut h, "md 0x1000 -b -w"),
            Err(CmdError::Usage)
        ));
        assert_eq!(
            run(&mut h, "md 0x900000"),
            Err(CmdError::Failed(String::from("unmapped")))
        );
    }

    #[test]
    fn mw_writes_values_that_fit() {
        let mut h = host();
        assert_eq!(
            run(&mut h, "mw 0x1000 0xdeadbeef").unwrap(),
            "wrote 0xdeadbeef (4 bytes) at 0x1000\n"
        );
        assert_eq!(&h.mem[..4], &[0xef, 0xbe, 0xad, 0xde]);
        assert!(
            matches!(run(&mut h, "mw 0x1000 0x1ff -b"), Err(CmdError::BadArg(m)) if m.contains("does not fit"))
        );
        assert!(
            matches!(run(&mut h, "mw 0x1002 1 -q"), Err(CmdError::BadArg(m)) if m.contains("not aligned"))
        );
    }

    #[test]
    fn small_commands() {
        let mut h = host();
        assert_eq!(run(&mut h, "echo a  \"b c\"").unwrap(), "a b c\n");
        assert_eq!(
            run(&mut h, "uptime").unwrap(),
            "up 1.500000 s\nticks: 150 at 100 Hz\n"
        );
        assert_eq!(run(&mut h, "log").unwrap(), "log level: info\n");
        assert!(
            matches!(run(&mut h, "log loud"), Err(CmdError::BadArg(m)) if m.contains("unknown level"))
        );
        assert_eq!(
            run(&mut h, "poweroff"),
            Err(CmdError::Failed(String::from("poweroff failed: no ACPI")))
        );
        assert!(run(&mut h, "version")
            .unwrap()
            .starts_with("capmon 0.1.0 (commit abc, release build)\n"));
        assert!(matches!(
            run(&mut h, "version extra"),
            Err(CmdError::BadArg(_))
        ));
        assert!(
            matches!(run(&mut h, "crash fire"), Err(CmdError::BadArg(m)) if m.contains("unknown fault"))
        );
        assert_eq!(run(&mut h, "crash"), Err(CmdError::Usage));
        assert_eq!(
            run(&mut h, "crash ud"),
            Err(CmdError::Failed(String::from(
                "crash ud did not fault: ud is harmless here"
            )))
        );
    }

    #[test]
    fn vendor_string() {
        // "GenuineIntel" from ebx, edx, ecx.
        assert_eq!(
            regs_str(&[0x756e_6547, 0x4965_6e69, 0x6c65_746e]),
            "GenuineIntel"
        );
    }
}
