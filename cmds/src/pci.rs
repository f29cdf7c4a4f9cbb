//! The `pci` command family: `lspci` (list, verbose, hexdump, tree) and `pci` (read, write,
//! mode, bench).
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use capmon_hal::Clock;
use capmon_pci::bar::Rom;
use capmon_pci::caps::{self, link_speed_name, ExtCapKind};
use capmon_pci::header::{command, reg, status, BridgeWindows};
use capmon_pci::names;
use capmon_pci::{
    AccessMode, Bdf, CapKind, Function, Header, HeaderType, Pci, PciError, Topology, Width,
};
use capmon_shell::{bad_arg, fail, out, outln, Args, CmdError, CmdResult, Command};
use core::fmt::Write;

/// What the `pci` commands need from the machine.
pub trait PciHost {
    /// The PCI subsystem; an error (e.g. `fail!("PCI not initialised")`) if the kernel found no
    /// way to reach config space.
    fn pci(&mut self) -> Result<&mut Pci, CmdError>;
    /// A monotonic clock, for `pci bench`.
    fn pci_clock(&self) -> &dyn Clock;
    /// Maps device memory (BAR contents such as an MSI-X table) for `pci msix`.
    fn pci_map(&self) -> &dyn capmon_hal::PhysMap;
}

pub fn commands<S: PciHost>() -> Vec<Command<S>> {
    vec![
        Command {
            name: "lspci",
            group: "pci",
            subcommands: &[],
            usage: "lspci [-v [BDF] | -x BDF | -t | BDF]",
            help: "list PCI functions",
            long_help: "lspci            one line per function: SSSS:BB:DD.F class vendor:device [names]\n\
                        lspci -v [BDF]   header, command/status, BARs (sized), IRQ, capabilities\n\
                        lspci -x BDF     hexdump of config space (4 KiB for PCIe functions in ECAM mode)\n\
                        lspci -t         tree of buses and bridges\n\
                        BDF is BB:DD.F or SSSS:BB:DD.F in hex.",
            run: lspci::<S>,
        },
        Command {
            name: "pci",
            group: "pci",
            subcommands: &["read", "write", "mode", "bench", "msix"],
            usage: "pci read BDF OFF [b|w|d] | pci write BDF OFF VALUE [b|w|d] | pci mode [legacy|ecam] | pci bench [N] | pci msix BDF",
            help: "config-space access, access mechanism, enumeration benchmark",
            long_help: "pci read BDF OFF [b|w|d]          read a byte, word or dword (default d)\n\
                        pci write BDF OFF VALUE [b|w|d]   write, then read back\n\
                        pci mode [legacy|ecam]            show or switch the access mechanism\n\
                        pci bench [N]                     time N enumerations (default 20) per mechanism\n\
                        pci msix BDF                      the MSI-X table and PBA as the device holds them\n\
                        Offsets must be aligned to the width; 0x100 and above need ECAM.",
            run: pci::<S>,
        },
    ]
}

fn err(e: PciError) -> CmdError {
    fail!("{}", e)
}

fn parse_bdf(w: &str) -> Result<Bdf, CmdError> {
    Bdf::parse(w).map_err(|e| bad_arg!("bad BDF '{}': {}", w, e))
}

fn lspci<S: PciHost>(s: &mut S, a: &mut Args, o: &mut dyn Write) -> CmdResult {
    let mode = a.one_of(&["-v", "-x", "-t"])?;
    let bdf = a.opt_str().map(parse_bdf).transpose()?;
    a.finish()?;
    let pci = s.pci()?;
    match (mode, bdf) {
        (None, None) => {
            let topo = pci.enumerate();
            for f in &topo.functions {
                line(&f.header, o);
            }
            problems(&topo, o);
        }
        (None, Some(b)) => line(&pci.header(b).map_err(err)?, o),
        (Some("-v"), Some(b)) => verbose(pci, b, o)?,
        (Some("-v"), None) => {
            let topo = pci.enumerate();
            for (i, f) in topo.functions.iter().enumerate() {
                if i > 0 {
                    outln!(o);
                }
                verbose(pci, f.bdf(), o)?;
            }
            problems(&topo, o);
        }
        (Some("-x"), Some(b)) => hexdump(pci, b, o)?,
        (Some("-t"), None) => tree(&pci.enumerate(), o),
        _ => return Err(CmdError::Usage),
    }
    Ok(())
}

/// `SSSS:BB:DD.F class-name vvvv:dddd [Vendor Device]`.
fn line(h: &Header, o: &mut dyn Write) {
    out!(o, "{} ", h.bdf);
    class(h, o);
    out!(o, " {:04x}:{:04x}", h.vendor, h.device);
    if let Some(v) = names::vendor_name(h.vendor) {
        match names::device_name(h.vendor, h.device) {
            Some(d) => out!(o, " [{} {}]", v, d),
            None => out!(o, " [{} Device {:04x}]", v, h.device),
        }
    }
    outln!(o);
}

fn class(h: &Header, o: &mut dyn Write) {
    match names::class_name(h.class.base, h.class.sub) {
        Some(n) => out!(o, "{}", n),
        None => out!(o, "Class {:02x}{:02x}", h.class.base, h.class.sub),
    }
}

fn problems(t: &Topology, o: &mut dyn Write) {
    for p in &t.problems {
        outln!(o, "warning: {}", p);
    }
}

/// Names of the set bits of a register, space-separated.
fn bits(v: u16, table: &[(u16, &str)], o: &mut dyn Write) {
    let mut first = true;
    for (bit, name) in table {
        if v & bit != 0 {
            out!(o, "{}{}", if first { "" } else { " " }, name);
            first = false;
        }
    }
}

fn verbose(pci: &Pci, bdf: Bdf, o: &mut dyn Write) -> CmdResult {
    let h = pci.header(bdf).map_err(err)?;
    let f = pci.function(bdf).map_err(err)?;
    let cfg: &dyn capmon_hal::PciConfig = &f;
    line(&h, o);
    outln!(
        o,
        "  class: {:02x}{:02x}{:02x} rev {:02x} header: {}{}",
        h.class.base,
        h.class.sub,
        h.class.prog_if,
        h.revision,
        h.header_type.name(),
        if h.multifunction {
            " multi-function"
        } else {
            ""
        }
    );
    if h.header_type == HeaderType::Normal {
        let sv = cfg.read16(reg::SUBSYSTEM_VENDOR_ID);
        let sd = cfg.read16(reg::SUBSYSTEM_ID);
        outln!(o, "  subsystem: {:04x}:{:04x}", sv, sd);
    }
    let cmd = cfg.read16(reg::COMMAND);
    out!(o, "  command: {:#06x} (", cmd);
    bits(cmd, command::NAMES, o);
    outln!(o, ")");
    let st = cfg.read16(reg::STATUS);
    out!(o, "  status: {:#06x} (", st);
    bits(st, status::NAMES, o);
    outln!(o, ")");
    let pin = cfg.read8(reg::INTERRUPT_PIN);
    let irq_line = cfg.read8(reg::INTERRUPT_LINE);
    match pin {
        0 => outln!(o, "  irq: none"),
        1..=4 => outln!(
            o,
            "  irq: line {} pin {}",
            irq_line,
            (b'A' + pin - 1) as char
        ),
        _ => outln!(o, "  irq: line {} pin invalid ({})", irq_line, pin),
    }
    bars(pci, bdf, o)?;
    if matches!(h.header_type, HeaderType::Bridge | HeaderType::CardBus) {
        let b = capmon_pci::header::BridgeBuses::read(cfg);
        outln!(
            o,
            "  bus: primary {:02x} secondary {:02x} subordinate {:02x}",
            b.primary,
            b.secondary,
            b.subordinate
        );
    }
    if h.header_type == HeaderType::Bridge {
        let w = BridgeWindows::read(cfg);
        window("io", w.io, o);
        window("mem", w.memory, o);
        window("pref", w.prefetchable, o);
    }
    capabilities(pci, &h, o)
}

fn bars(pci: &Pci, bdf: Bdf, o: &mut dyn Write) -> CmdResult {
    let b = pci.bars(bdf).map_err(err)?;
    for bar in &b.bars {
        outln!(
            o,
            "  BAR{}: {}{} {:#x} size {:#x}",
            bar.index,
            bar.kind.name(),
            if bar.prefetchable { " pref" } else { "" },
            bar.addr,
            bar.size
        );
    }
    if let Some(Rom {
        addr,
        size,
        enabled,
    }) = b.rom
    {
        outln!(
            o,
            "  ROM: {:#x} size {:#x}{}",
            addr,
            size,
            if enabled { "" } else { " disabled" }
        );
    }
    for p in &b.problems {
        if p.index == capmon_pci::bar::ROM_INDEX {
            outln!(o, "  ROM: error: {}", p.error);
        } else {
            outln!(o, "  BAR{}: error: {}", p.index, p.error);
        }
    }
    Ok(())
}

fn window(name: &str, w: Option<(u64, u64)>, o: &mut dyn Write) {
    match w {
        Some((lo, hi)) => outln!(o, "  {} window: {:#x}-{:#x}", name, lo, hi),
        None => outln!(o, "  {} window: disabled", name),
    }
}

fn capabilities(pci: &Pci, h: &Header, o: &mut dyn Write) -> CmdResult {
    let list = pci.capabilities(h.bdf).map_err(err)?;
    for c in &list.caps {
        out!(o, "  cap {:#04x}: {}", c.offset, names::cap_name(c.id));
        cap_detail(&c.kind, o);
        outln!(o);
    }
    if let Some(p) = list.problem {
        outln!(o, "  cap error: {}", p);
    }
    let pcie = list.find(caps::id::PCIE).is_some();
    if !pcie {
        return Ok(());
    }
    if pci.mode() == AccessMode::Legacy {
        outln!(
            o,
            "  ext caps: not reachable in legacy mode (pci mode ecam)"
        );
        return Ok(());
    }
    let ext = pci.ext_capabilities(h.bdf).map_err(err)?;
    for c in &ext.caps {
        out!(
            o,
            "  ext {:#05x}: {} v{}",
            c.offset,
            names::ext_cap_name(c.id),
            c.version
        );
        match c.kind {
            ExtCapKind::SerialNumber(sn) => out!(o, ", serial {:016x}", sn),
            ExtCapKind::Vendor { vsec_id, rev, len } => {
                out!(o, ", id {:#06x} rev {} len {:#x}", vsec_id, rev, len)
            }
            ExtCapKind::Malformed(why) => out!(o, ", malformed: {}", why),
            ExtCapKind::Other => {}
        }
        outln!(o);
    }
    if let Some(p) = ext.problem {
        outln!(o, "  ext error: {}", p);
    }
    Ok(())
}

fn on(b: bool) -> &'static str {
    if b {
        "enabled"
    } else {
        "disabled"
    }
}

fn cap_detail(k: &CapKind, o: &mut dyn Write) {
    match *k {
        CapKind::PowerManagement {
            version,
            d1,
            d2,
            pme_support,
            state,
        } => {
            out!(o, ": v{}, D{}", version, state);
            if d1 || d2 {
                out!(
                    o,
                    ", supports{}{}",
                    if d1 { " D1" } else { "" },
                    if d2 { " D2" } else { "" }
                );
            }
            if pme_support != 0 {
                out!(o, ", PME from {:#04x}", pme_support);
            }
        }
        CapKind::Msi {
            enabled,
            addr64,
            per_vector_mask,
            vectors,
            enabled_vectors,
            address,
            data,
        } => {
            out!(
                o,
                ": {}, {}-bit, {}/{} vectors{}, address {:#x} data {:#06x}",
                on(enabled),
                if addr64 { 64 } else { 32 },
                enabled_vectors,
                vectors,
                if per_vector_mask {
                    ", per-vector masking"
                } else {
                    ""
                },
                address,
                data
            );
        }
        CapKind::MsiX {
            enabled,
            function_mask,
            table_size,
            table_bar,
            table_offset,
            pba_bar,
            pba_offset,
        } => {
            out!(
                o,
                ": {}{}, {} vectors, table BAR{}+{:#x}, PBA BAR{}+{:#x}",
                on(enabled),
                if function_mask { " (masked)" } else { "" },
                table_size,
                table_bar,
                table_offset,
                pba_bar,
                pba_offset
            );
        }
        CapKind::Pcie {
            version,
            port_type,
            slot,
            link,
            max_link,
        } => {
            out!(o, ": v{} {}", version, port_type.name());
            if slot {
                out!(o, ", slot");
            }
            if let (Some(l), Some(m)) = (link, max_link) {
                out!(
                    o,
                    ", link {} x{} (max {} x{})",
                    link_speed_name(l.speed),
                    l.width,
                    link_speed_name(m.speed),
                    m.width
                );
            }
        }
        CapKind::Vendor {
            virtio: Some(v), ..
        } => {
            out!(
                o,
                ": virtio {}, BAR{}+{:#x} len {:#x}",
                v.cfg_type.name(),
                v.bar,
                v.offset,
                v.length
            );
            if let Some(m) = v.notify_off_multiplier {
                out!(o, ", notify multiplier {}", m);
            }
        }
        CapKind::Vendor { len, virtio: None } => out!(o, ": len {}", len),
        CapKind::Other => {}
        CapKind::Malformed(why) => out!(o, ": malformed: {}", why),
    }
}

fn hexdump(pci: &Pci, bdf: Bdf, o: &mut dyn Write) -> CmdResult {
    let size = pci.function_config_size(bdf).map_err(err)?;
    let mut data = Vec::with_capacity(size as usize);
    for off in (0..size).step_by(4) {
        let v = pci.read(bdf, off, Width::Dword).map_err(err)?;
        data.extend_from_slice(&v.to_le_bytes());
    }
    capmon_shell::out::hexdump(o, 0, &data, 1);
    Ok(())
}

/// One bus being printed by `tree`: its functions and how far we got.
struct Level<'t> {
    funcs: Vec<&'t Function>,
    next: usize,
    prefix: String,
}

/// Draws buses and bridges without recursion (bus chains can be 255 deep).
fn tree(t: &Topology, o: &mut dyn Write) {
    for root in &t.roots {
        outln!(o, "[{:04x}:{:02x}]", root.segment, root.bus);
        let mut stack = vec![Level {
            funcs: t.on_bus(root.segment, root.bus).collect(),
            next: 0,
            prefix: String::from(" "),
        }];
        while let Some(level) = stack.last_mut() {
            let Some(f) = level.funcs.get(level.next).copied() else {
                stack.pop();
                continue;
            };
            level.next += 1;
            let last = level.next == level.funcs.len();
            let h = &f.header;
            out!(
                o,
                "{}{}-{:02x}.{:x} ",
                level.prefix,
                if last { "\\" } else { "+" },
                h.bdf.device(),
                h.bdf.function()
            );
            class(h, o);
            out!(o, " {:04x}:{:04x}", h.vendor, h.device);
            if let Some(b) = f.bridge {
                out!(o, " [{:02x}-{:02x}]", b.secondary, b.subordinate);
            }
            outln!(o);
            if let Some(bus) = t.child_bus(h.bdf) {
                let mut prefix = level.prefix.clone();
                prefix.push_str(if last { "   " } else { "|  " });
                outln!(o, "{}\\-[{:04x}:{:02x}]", prefix, h.bdf.segment, bus);
                prefix.push_str("   ");
                stack.push(Level {
                    funcs: t.on_bus(h.bdf.segment, bus).collect(),
                    next: 0,
                    prefix,
                });
            }
        }
    }
    problems(t, o);
}

fn pci<S: PciHost>(s: &mut S, a: &mut Args, o: &mut dyn Write) -> CmdResult {
    match a.str()? {
        "read" => read(s, a, o),
        "write" => write(s, a, o),
        "mode" => mode(s, a, o),
        "bench" => bench(s, a, o),
        "msix" => msix(s, a, o),
        other => Err(bad_arg!("unknown subcommand '{}'", other)),
    }
}

fn msix<S: PciHost>(s: &mut S, a: &mut Args, o: &mut dyn Write) -> CmdResult {
    use capmon_pci::msi::{self, MsixTable};
    let bdf = parse_bdf(a.str()?)?;
    a.finish()?;
    let pci = s.pci()?;
    pci.header(bdf).map_err(err)?;
    let cfg = pci.function(bdf).map_err(err)?;
    let name = bdf.short();
    let cap = msi::find_cap(&cfg, capmon_pci::caps::id::MSIX)
        .ok_or_else(|| fail!("{} has no MSI-X capability", name))?;
    let layout = msi::msix_layout(&cfg, cap, None).map_err(|e| fail!("{}: {}", name, e))?;
    let ctl = capmon_hal::PciConfig::read16(&cfg, cap + 2);
    let bar_base = |bir: u8| {
        capmon_pci::memory_bar_base(&cfg, bir)
            .map_err(|why| fail!("{}: BAR {}: {}", name, bir, why))
    };
    let table_phys = bar_base(layout.table.bir)? + layout.table.offset as u64;
    let pba_phys = bar_base(layout.pba.bir)? + layout.pba.offset as u64;
    let map = |phys: u64, len: usize| {
        s.pci_map()
            .map(phys, len, true)
            // SAFETY: the host mapped `len` bytes of device memory at this address, uncached,
            // for the kernel's lifetime (PhysMap contract); RawMmio bounds-checks every access.
            .map(|p| unsafe { capmon_hal::RawMmio::new(p, len) })
            .ok_or_else(|| fail!("cannot map {} bytes at {:#x}", len, phys))
    };
    let tw = map(table_phys, layout.table.len)?;
    let pw = map(pba_phys, layout.pba.len)?;
    let table = MsixTable::new(&tw, layout.entries)
        .and_then(|t| t.with_pba(&pw))
        .map_err(|e| fail!("{}: {}", name, e))?;
    let mut lines = Vec::new();
    let mut used = 0;
    for i in 0..layout.entries {
        let e = table.entry(i).map_err(|e| fail!("{}: {}", name, e))?;
        let pending = table.pending(i).map_err(|e| fail!("{}: {}", name, e))?;
        if !e.masked {
            used += 1;
        }
        lines.push(alloc::format!(
            "entry {}: address {:#018x} data {:#010x} {} pending {}",
            i,
            e.message.address,
            e.message.data,
            if e.masked { "masked" } else { "unmasked" },
            if pending { "yes" } else { "no" }
        ));
    }
    outln!(
        o,
        "{} MSI-X: {} of {} entries, table BAR {} + {:#x} ({:#x}), PBA BAR {} + {:#x}, {}, function mask {}",
        name,
        used,
        layout.entries,
        layout.table.bir,
        layout.table.offset,
        table_phys,
        layout.pba.bir,
        layout.pba.offset,
        if ctl & (1 << 15) != 0 { "enabled" } else { "disabled" },
        if ctl & (1 << 14) != 0 { "on" } else { "off" }
    );
    for l in lines {
        outln!(o, "{}", l);
    }
    Ok(())
}

/// The optional trailing width word.
fn width(a: &mut Args) -> Result<Width, CmdError> {
    match a.opt_str() {
        None | Some("d") => Ok(Width::Dword),
        Some("w") => Ok(Width::Word),
        Some("b") => Ok(Width::Byte),
        Some(w) => Err(bad_arg!("width '{}': use b, w or d", w)),
    }
}

fn offset(a: &mut Args) -> Result<u16, CmdError> {
    let off = a.u64("OFF")?;
    match u16::try_from(off) {
        Ok(v) if v < capmon_pci::access::ECAM_CONFIG_SIZE => Ok(v),
        _ => Err(bad_arg!("OFF {:#x} is past the 4 KiB config space", off)),
    }
}

fn digits(w: Width) -> usize {
    2 * w.bytes() as usize
}

fn read<S: PciHost>(s: &mut S, a: &mut Args, o: &mut dyn Write) -> CmdResult {
    let bdf = parse_bdf(a.str()?)?;
    let off = offset(a)?;
    let w = width(a)?;
    a.finish()?;
    let pci = s.pci()?;
    pci.header(bdf).map_err(err)?;
    let v = pci.read(bdf, off, w).map_err(err)?;
    outln!(o, "{} {:#05x}: {:#0d$x}", bdf, off, v, d = digits(w) + 2);
    Ok(())
}

fn write<S: PciHost>(s: &mut S, a: &mut Args, o: &mut dyn Write) -> CmdResult {
    let bdf = parse_bdf(a.str()?)?;
    let off = offset(a)?;
    let value = a.u64("VALUE")?;
    let w = width(a)?;
    a.finish()?;
    let max = u64::MAX >> (64 - 8 * w.bytes() as u32);
    if value > max {
        return Err(bad_arg!(
            "VALUE {:#x} does not fit in {} byte(s)",
            value,
            w.bytes()
        ));
    }
    let pci = s.pci()?;
    pci.header(bdf).map_err(err)?;
    pci.write(bdf, off, w, value as u32).map_err(err)?;
    let back = pci.read(bdf, off, w).map_err(err)?;
    outln!(
        o,
        "{} {:#05x}: wrote {:#0d$x}, reads {:#0d$x}",
        bdf,
        off,
        value,
        back,
        d = digits(w) + 2
    );
    Ok(())
}

fn mode<S: PciHost>(s: &mut S, a: &mut Args, o: &mut dyn Write) -> CmdResult {
    let want = match a.opt_str() {
        None => None,
        Some("legacy") => Some(AccessMode::Legacy),
        Some("ecam") => Some(AccessMode::Ecam),
        Some(m) => return Err(bad_arg!("mode '{}': use legacy or ecam", m)),
    };
    a.finish()?;
    let pci = s.pci()?;
    if let Some(m) = want {
        pci.set_mode(m).map_err(err)?;
    }
    out!(o, "mode: {} (available:", pci.mode());
    for m in [AccessMode::Legacy, AccessMode::Ecam] {
        if pci.has_mode(m) {
            out!(o, " {}", m);
        }
    }
    outln!(o, ")");
    for r in pci.ecam_regions() {
        outln!(
            o,
            "ecam: segment {:04x} buses {:02x}-{:02x} at {:#x}",
            r.segment,
            r.start_bus,
            r.end_bus,
            r.base
        );
    }
    Ok(())
}

/// Bounds `pci bench N` so a typo cannot hang the monitor for minutes.
const BENCH_MAX: u64 = 10_000;
const BENCH_DEFAULT: u64 = 20;

fn bench<S: PciHost>(s: &mut S, a: &mut Args, o: &mut dyn Write) -> CmdResult {
    let n = a.opt_u64("N")?.unwrap_or(BENCH_DEFAULT);
    a.finish()?;
    if n == 0 || n > BENCH_MAX {
        return Err(bad_arg!("N must be 1..={}", BENCH_MAX));
    }
    let pci = s.pci()?;
    let before = pci.mode();
    for m in [AccessMode::Ecam, AccessMode::Legacy] {
        if !pci.has_mode(m) {
            return Err(fail!(
                "bench needs both mechanisms: {}",
                PciError::ModeUnavailable(m)
            ));
        }
    }
    let ecam = time(s, AccessMode::Ecam, n);
    let legacy = time(s, AccessMode::Legacy, n);
    s.pci()?.set_mode(before).map_err(err)?;
    let ((ecam_ns, ecam_fns), (legacy_ns, legacy_fns)) = (ecam?, legacy?);
    outln!(o, "pci bench: {} enumerations per mechanism", n);
    outln!(
        o,
        "ecam:   {} ns/enumeration ({} functions)",
        ecam_ns / n,
        ecam_fns
    );
    outln!(
        o,
        "legacy: {} ns/enumeration ({} functions)",
        legacy_ns / n,
        legacy_fns
    );
    match legacy_ns.saturating_mul(100).checked_div(ecam_ns) {
        Some(r) => outln!(o, "ratio legacy/ecam: {}.{:02}", r / 100, r % 100),
        None => outln!(o, "ratio legacy/ecam: n/a (clock did not advance)"),
    }
    if ecam_fns != legacy_fns {
        outln!(
            o,
            "warning: ecam found {} functions, legacy {}",
            ecam_fns,
            legacy_fns
        );
    }
    Ok(())
}

/// Nanoseconds for `n` enumerations in `mode`, and how many functions the last one found.
fn time<S: PciHost>(s: &mut S, mode: AccessMode, n: u64) -> Result<(u64, usize), CmdError> {
    s.pci()?.set_mode(mode).map_err(err)?;
    // One untimed pass first: under emulation the first run of a path pays for translating
    // its code, which would penalise whichever mechanism is timed first.
    s.pci()?.enumerate();
    let start = s.pci_clock().now_ns();
    let mut found = 0;
    for _ in 0..n {
        found = s.pci()?.enumerate().functions.len();
    }
    let end = s.pci_clock().now_ns();
    Ok((end.saturating_sub(start), found))
}

#[cfg(test)]
mod tests {
    use super::*;
    use capmon_pci::fake::{sample_machine, FakeFunction, FakeMachine, Shared};
    use capmon_shell::parse::words;

    /// Time advances with config accesses: 100 ns per ECAM access, 200 ns per legacy one (the
    /// address write plus the data access).
    struct AccessClock(Shared);

    impl Clock for AccessClock {
        fn now_ns(&self) -> u64 {
            let s = self.0.stats();
            s.ecam_accesses as u64 * 100 + s.legacy_accesses as u64 * 200
        }
    }

    struct Host {
        pci: Option<Pci>,
        clock: AccessClock,
        mem: DevMem,
    }

    impl PciHost for Host {
        fn pci(&mut self) -> Result<&mut Pci, CmdError> {
            self.pci
                .as_mut()
                .ok_or_else(|| fail!("PCI not initialised"))
        }
        fn pci_clock(&self) -> &dyn Clock {
            &self.clock
        }
        fn pci_map(&self) -> &dyn capmon_hal::PhysMap {
            &self.mem
        }
    }

    /// Device memory for `pci msix`: one page of "BAR" at DEVMEM_BASE.
    struct DevMem(alloc::boxed::Box<[u32; 1024]>);
    const DEVMEM_BASE: u64 = 0xfebd_0000;
    impl capmon_hal::PhysMap for DevMem {
        fn map(&self, phys: u64, len: usize, _mmio: bool) -> Option<*mut u8> {
            let off = phys.checked_sub(DEVMEM_BASE)? as usize;
            (off + len <= 4096).then(|| (self.0.as_ptr() as *mut u8).wrapping_add(off))
        }
    }

    fn host_of(m: FakeMachine, legacy: bool, ecam: bool) -> (Host, Shared) {
        let windows: &[(u16, u8, u8)] = if ecam { &[(0, 0, 0xff)] } else { &[] };
        let (pci, shared) = m.into_pci(legacy, windows).unwrap();
        (
            Host {
                pci: Some(pci),
                clock: AccessClock(shared.clone()),
                mem: DevMem(alloc::boxed::Box::new([0; 1024])),
            },
            shared,
        )
    }

    fn host() -> Host {
        host_of(sample_machine(), true, true).0
    }

    fn run(h: &mut Host, line: &str) -> Result<String, CmdError> {
        let w = words(line);
        let table = commands::<Host>();
        let cmd = table.iter().find(|c| c.name == w[0]).unwrap();
        let mut args = Args::new(w[1..].to_vec());
        let mut out = String::new();
        (cmd.run)(h, &mut args, &mut out)?;
        Ok(out)
    }

    fn failed(r: Result<String, CmdError>) -> String {
        match r {
            Err(CmdError::Failed(m)) | Err(CmdError::BadArg(m)) => m,
            other => panic!("expected an error, got {:?}", other),
        }
    }

    #[test]
    fn lists_one_line_per_function() {
        let mut h = host();
        let out = run(&mut h, "lspci").unwrap();
        assert_eq!(
            out,
            "0000:00:00.0 Host bridge 8086:29c0 [Intel Corporation 82G33/G31/P35/P31 Express DRAM Controller]\n\
             0000:00:01.0 VGA compatible controller 1234:1111 [QEMU Bochs/QEMU standard VGA]\n\
             0000:00:02.0 SCSI storage controller 1af4:1042 [Red Hat, Inc. Virtio block device]\n\
             0000:00:1c.0 PCI bridge 1b36:000c [Red Hat, Inc. QEMU PCIe Root port]\n\
             0000:00:1f.0 ISA bridge 8086:2918 [Intel Corporation 82801IB (ICH9) LPC Interface Controller]\n\
             0000:00:1f.2 SATA controller 8086:2922 [Intel Corporation 82801IR/IO/IH (ICH9R/DO/DH) 6 port SATA Controller [AHCI mode]]\n\
             0000:00:1f.3 SMBus 8086:2930 [Intel Corporation 82801I (ICH9 Family) SMBus Controller]\n\
             0000:01:00.0 Non-Volatile memory controller 1b36:0010 [Red Hat, Inc. QEMU NVM Express Controller]\n"
        );
        // Same list through the legacy ports.
        run(&mut h, "pci mode legacy").unwrap();
        assert_eq!(run(&mut h, "lspci").unwrap(), out);
        assert_eq!(
            run(&mut h, "lspci 1f.3").unwrap_err(),
            CmdError::BadArg("bad BDF '1f.3': expected BB:DD.F or SSSS:BB:DD.F (hex)".into())
        );
        assert_eq!(run(&mut h, "lspci 00:1f.3").unwrap(), "0000:00:1f.3 SMBus 8086:2930 [Intel Corporation 82801I (ICH9 Family) SMBus Controller]\n");
    }

    #[test]
    fn unknown_names_print_as_numbers() {
        let mut m = FakeMachine::new();
        m.add(
            0,
            0,
            0,
            0,
            FakeFunction::new(0xabcd, 0x0001, (0x77, 0x01, 0)),
        );
        m.add(
            0,
            0,
            1,
            0,
            FakeFunction::new(0x8086, 0xfff0, (0x02, 0x42, 0)),
        );
        let (mut h, _) = host_of(m, true, false);
        assert_eq!(
            run(&mut h, "lspci").unwrap(),
            "0000:00:00.0 Class 7701 abcd:0001\n\
             0000:00:01.0 Network controller 8086:fff0 [Intel Corporation Device fff0]\n"
        );
    }

    #[test]
    fn verbose_shows_bars_irq_and_capabilities() {
        let mut h = host();
        let out = run(&mut h, "lspci -v 00:02.0").unwrap();
        assert_eq!(
            out,
            "0000:00:02.0 SCSI storage controller 1af4:1042 [Red Hat, Inc. Virtio block device]\n\
             \x20 class: 010000 rev 01 header: normal\n\
             \x20 subsystem: 0000:0000\n\
             \x20 command: 0x0007 (io mem master)\n\
             \x20 status: 0x0010 (caplist)\n\
             \x20 irq: line 11 pin A\n\
             \x20 BAR1: mem32 0xfebf1000 size 0x1000\n\
             \x20 BAR4: mem64 pref 0xfe000000 size 0x4000\n\
             \x20 cap 0x98: MSI-X: enabled, 2 vectors, table BAR1+0x0, PBA BAR1+0x800\n\
             \x20 cap 0x84: Vendor Specific: virtio pci, BAR0+0x0 len 0x0\n\
             \x20 cap 0x70: Vendor Specific: virtio notify, BAR4+0x3000 len 0x1000, notify multiplier 4\n\
             \x20 cap 0x60: Vendor Specific: virtio device, BAR4+0x2000 len 0x1000\n\
             \x20 cap 0x50: Vendor Specific: virtio isr, BAR4+0x1000 len 0x1000\n\
             \x20 cap 0x40: Vendor Specific: virtio common, BAR4+0x0 len 0x1000\n"
        );
        let nvme = run(&mut h, "lspci -v 01:00.0").unwrap();
        assert!(
            nvme.contains("\n  BAR0: mem64 0xfe800000 size 0x4000\n"),
            "{}",
            nvme
        );
        assert!(
            nvme.contains("\n  cap 0x40: Power Management: v3, D0\n"),
            "{}",
            nvme
        );
        assert!(
            nvme.contains(
                "\n  cap 0x80: PCI Express: v2 endpoint, link 2.5GT/s x1 (max 8GT/s x4)\n"
            ),
            "{}",
            nvme
        );
        assert!(
            nvme.contains("\n  ext 0x100: Device Serial Number v1, serial 9abcdef012345678\n"),
            "{}",
            nvme
        );
        let rp = run(&mut h, "lspci -v 00:1c.0").unwrap();
        assert!(
            rp.contains("\n  bus: primary 00 secondary 01 subordinate 01\n"),
            "{}",
            rp
        );
        assert!(
            rp.contains(
                "\n  cap 0x40: PCI Express: v2 root-port, slot, link 2.5GT/s x1 (max 2.5GT/s x1)\n"
            ),
            "{}",
            rp
        );
        assert!(
            rp.contains("\n  ext 0x100: Advanced Error Reporting v2\n"),
            "{}",
            rp
        );
        let sata = run(&mut h, "lspci -v 00:1f.2").unwrap();
        assert!(
            sata.contains("\n  BAR4: io 0xc040 size 0x20\n  BAR5: mem32 0xfebf2000 size 0x1000\n"),
            "{}",
            sata
        );
        assert!(
            sata.contains(
                "cap 0x80: MSI: disabled, 64-bit, 1/1 vectors, address 0xfee00000 data 0x4021"
            ),
            "{}",
            sata
        );
        let vga = run(&mut h, "lspci -v 00:01.0").unwrap();
        assert!(
            vga.contains("\n  BAR0: mem32 pref 0xfd000000 size 0x1000000\n"),
            "{}",
            vga
        );
        assert!(
            vga.contains("\n  ROM: 0xfebe0000 size 0x10000 disabled\n"),
            "{}",
            vga
        );

        run(&mut h, "pci mode legacy").unwrap();
        let nvme = run(&mut h, "lspci -v 01:00.0").unwrap();
        assert!(
            nvme.contains("\n  ext caps: not reachable in legacy mode (pci mode ecam)\n"),
            "{}",
            nvme
        );
        // Every function, blank-line separated.
        let all = run(&mut h, "lspci -v").unwrap();
        assert_eq!(all.matches("\n\n").count(), 7);
        assert_eq!(
            failed(run(&mut h, "lspci -v 00:09.0")),
            "no such function 0000:00:09.0"
        );
    }

    #[test]
    fn verbose_reports_malformed_config() {
        let mut f = FakeFunction::new(0x1af4, 0x1041, (0x02, 0, 0)).bar32(
            0,
            0xfe00_0000,
            0x1000,
            false,
            false,
        );
        f.set16(0x06, 0x10);
        f.set8(0x34, 0x40);
        let mut f = f.raw(0x40, &[0x01, 0x40, 0x03, 0x00, 0, 0, 0, 0]);
        f.set32(0x14, 0x0000_0006);
        let mut m = FakeMachine::new();
        m.add(0, 0, 3, 0, f);
        let (mut h, _) = host_of(m, true, true);
        let out = run(&mut h, "lspci -v 00:03.0").unwrap();
        assert!(
            out.contains(
                "\n  BAR0: mem32 0xfe000000 size 0x1000\n  BAR1: error: reserved memory type 11b\n"
            ),
            "{}",
            out
        );
        assert!(out.contains("\n  cap 0x40: Power Management: v3, D0\n  cap error: pointer at 0x41 -> 0x40 loops back\n"), "{}", out);
    }

    #[test]
    fn hexdump_is_256_bytes_or_4k() {
        let mut h = host();
        let out = run(&mut h, "lspci -x 00:02.0").unwrap();
        assert_eq!(out.lines().count(), 16);
        assert!(out.starts_with("0000000000000000: f4 1a 42 10 07 00 10 00 01 00 00 01 00 00 00 00  |..B.............|\n"), "{}", out);
        assert_eq!(
            run(&mut h, "lspci -x 01:00.0").unwrap().lines().count(),
            256
        );
        run(&mut h, "pci mode legacy").unwrap();
        assert_eq!(run(&mut h, "lspci -x 01:00.0").unwrap().lines().count(), 16);
        assert_eq!(run(&mut h, "lspci -x"), Err(CmdError::Usage));
        assert_eq!(
            failed(run(&mut h, "lspci -x 07:00.0")),
            "no such function 0000:07:00.0"
        );
    }

    #[test]
    fn tree_shows_bridges_and_buses() {
        let mut h = host();
        assert_eq!(
            run(&mut h, "lspci -t").unwrap(),
            "[0000:00]\n\
             \x20+-00.0 Host bridge 8086:29c0\n\
             \x20+-01.0 VGA compatible controller 1234:1111\n\
             \x20+-02.0 SCSI storage controller 1af4:1042\n\
             \x20+-1c.0 PCI bridge 1b36:000c [01-01]\n\
             \x20|  \\-[0000:01]\n\
             \x20|     \\-00.0 Non-Volatile memory controller 1b36:0010\n\
             \x20+-1f.0 ISA bridge 8086:2918\n\
             \x20+-1f.2 SATA controller 8086:2922\n\
             \x20\\-1f.3 SMBus 8086:2930\n"
        );
    }

    #[test]
    fn read_and_write_config() {
        let (mut h, m) = host_of(sample_machine(), true, true);
        assert_eq!(
            run(&mut h, "pci read 00:02.0 0").unwrap(),
            "0000:00:02.0 0x000: 0x10421af4\n"
        );
        assert_eq!(
            run(&mut h, "pci read 0000:00:02.0 0x0b b").unwrap(),
            "0000:00:02.0 0x00b: 0x01\n"
        );
        assert_eq!(
            run(&mut h, "pci read 00:02.0 2 w").unwrap(),
            "0000:00:02.0 0x002: 0x1042\n"
        );
        assert_eq!(
            run(&mut h, "pci write 00:02.0 0x3c 5 b").unwrap(),
            "0000:00:02.0 0x03c: wrote 0x05, reads 0x05\n"
        );
        assert_eq!(m.peek32(Bdf::parse("00:02.0").unwrap(), 0x3c) & 0xff, 5);
        assert_eq!(
            failed(run(&mut h, "pci read 00:02.0 2")),
            "offset 0x2 is not aligned to 4 bytes"
        );
        assert_eq!(
            failed(run(&mut h, "pci read 00:02.0 0x1000")),
            "OFF 0x1000 is past the 4 KiB config space"
        );
        assert_eq!(
            failed(run(&mut h, "pci read 00:02.0 0 q")),
            "width 'q': use b, w or d"
        );
        assert_eq!(
            failed(run(&mut h, "pci write 00:02.0 0x3c 0x100 b")),
            "VALUE 0x100 does not fit in 1 byte(s)"
        );
        assert_eq!(
            failed(run(&mut h, "pci read 00:09.0 0")),
            "no such function 0000:00:09.0"
        );
        assert_eq!(
            failed(run(&mut h, "pci read 00:1f.8 0")),
            "bad BDF '00:1f.8': function number above 7"
        );
        assert_eq!(
            run(&mut h, "pci read 01:00.0 0x100").unwrap(),
            "0000:01:00.0 0x100: 0x00010003\n"
        );
        run(&mut h, "pci mode legacy").unwrap();
        assert_eq!(
            failed(run(&mut h, "pci read 01:00.0 0x100")),
            "offset 0x100 is in extended config space: needs ECAM (pci mode ecam)"
        );
        assert_eq!(run(&mut h, "pci read 00:02.0"), Err(CmdError::Usage));
        assert_eq!(failed(run(&mut h, "pci frob")), "unknown subcommand 'frob'");
    }

    #[test]
    fn mode_shows_and_switches() {
        let mut h = host();
        assert_eq!(
            run(&mut h, "pci mode").unwrap(),
            "mode: ecam (available: legacy ecam)\necam: segment 0000 buses 00-ff at 0xb0000000\n"
        );
        assert!(run(&mut h, "pci mode legacy")
            .unwrap()
            .starts_with("mode: legacy "));
        assert!(run(&mut h, "pci mode")
            .unwrap()
            .starts_with("mode: legacy "));
        assert_eq!(
            failed(run(&mut h, "pci mode fast")),
            "mode 'fast': use legacy or ecam"
        );
        let (mut h, _) = host_of(sample_machine(), true, false);
        assert_eq!(
            failed(run(&mut h, "pci mode ecam")),
            "ECAM not available (no MCFG table)"
        );
        assert_eq!(
            run(&mut h, "pci mode").unwrap(),
            "mode: legacy (available: legacy)\n"
        );
        let mut none = Host {
            pci: None,
            clock: AccessClock(h.clock.0.clone()),
            mem: DevMem(alloc::boxed::Box::new([0; 1024])),
        };
        assert_eq!(failed(run(&mut none, "lspci")), "PCI not initialised");
    }

    #[test]
    fn msix_reads_the_table_where_the_capability_says() {
        use capmon_pci::fake::msix_cap;
        let mut m = FakeMachine::new();
        // Three entries at BAR 1 + 0, PBA at BAR 1 + 0x800; BAR 1 = DEVMEM_BASE.
        let f = FakeFunction::new(0x1af4, 0x1042, (1, 0, 0))
            .bar32(1, DEVMEM_BASE as u32, 0x1000, false, false)
            .caps(&[(0x40, &msix_cap(3, (1, 0), (1, 0x800)))]);
        m.add(0, 0, 3, 0, f);
        m.add(0, 0, 4, 0, FakeFunction::new(0x8086, 0x10d3, (2, 0, 0)));
        let (mut h, _) = host_of(m, true, true);
        // Entry 0 and 1 programmed and unmasked, entry 2 masked; entry 1 pending.
        for (i, (addr, data, ctl)) in [
            (0xfee0_0000u32, 0x40u32, 0u32),
            (0xfee0_1000, 0x41, 0),
            (0, 0, 1),
        ]
        .iter()
        .enumerate()
        {
            h.mem.0[i * 4] = *addr;
            h.mem.0[i * 4 + 2] = *data;
            h.mem.0[i * 4 + 3] = *ctl;
        }
        h.mem.0[0x800 / 4] = 1 << 1;
        let out = run(&mut h, "pci msix 00:03.0").unwrap();
        assert_eq!(
            out,
            "00:03.0 MSI-X: 2 of 3 entries, table BAR 1 + 0x0 (0xfebd0000), PBA BAR 1 + 0x800, disabled, function mask off\n\
             entry 0: address 0x00000000fee00000 data 0x00000040 unmasked pending no\n\
             entry 1: address 0x00000000fee01000 data 0x00000041 unmasked pending yes\n\
             entry 2: address 0x0000000000000000 data 0x00000000 masked pending no\n"
        );
        assert_eq!(
            failed(run(&mut h, "pci msix 00:04.0")),
            "00:04.0 has no MSI-X capability"
        );
        assert!(run(&mut h, "pci msix 00:1f.7").is_err());
        assert!(run(&mut h, "pci msix zz").is_err());
    }

    #[test]
    fn bench_times_both_mechanisms() {
        let mut h = host();
        run(&mut h, "pci mode legacy").unwrap();
        let out = run(&mut h, "pci bench 3").unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "pci bench: 3 enumerations per mechanism");
        assert!(
            lines[1].starts_with("ecam:   ") && lines[1].ends_with(" ns/enumeration (8 functions)"),
            "{}",
            out
        );
        assert!(
            lines[2].starts_with("legacy: ") && lines[2].ends_with(" ns/enumeration (8 functions)"),
            "{}",
            out
        );
        assert_eq!(lines[3], "ratio legacy/ecam: 2.00");
        // The mode in use before the bench is restored.
        assert!(run(&mut h, "pci mode")
            .unwrap()
            .starts_with("mode: legacy "));
        assert_eq!(failed(run(&mut h, "pci bench 0")), "N must be 1..=10000");
        let (mut h, _) = host_of(sample_machine(), true, false);
        assert_eq!(
            failed(run(&mut h, "pci bench")),
            "bench needs both mechanisms: ECAM not available (no MCFG table)"
        );
    }
}
