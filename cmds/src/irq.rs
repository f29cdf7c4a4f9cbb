//! The interrupt command family: `irq` (every vector: source, mechanism, target CPU, count),
//! `irq route` (the routing table from device sources to vectors, CPUs and handlers),
//! `apic` (the local APIC's mode and registers), `ioapic` (redirection entries).
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use capmon_apic::ioapic::Redirection;
use capmon_apic::lapic::{describe_lvt, divisor_of, LapicState, Mode};
use capmon_shell::{bad_arg, fail, outln, Args, CmdError, CmdResult, Command};
use core::fmt::Write;

/// One routed vector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteLine {
    pub vector: u8,
    pub source: String,
    pub mechanism: String,
    /// Target CPU (APIC ID); `None` when every CPU takes the vector (LAPIC timer, IPIs).
    pub apic_id: Option<u32>,
    pub count: u64,
}

/// The local APIC of the CPU running the command.
#[derive(Debug, Clone)]
pub struct ApicInfo {
    pub mode: Mode,
    /// xAPIC MMIO base (physical); unused in x2APIC mode.
    pub base: u64,
    /// What `apic=` asked for ("auto" without it).
    pub requested: &'static str,
    pub state: LapicState,
    /// One line: timer mode, vector, tick rate, clock, what it was calibrated against.
    pub timer: String,
    pub ticks: u64,
}

/// One I/O APIC and its redirection entries (raw).
#[derive(Debug, Clone)]
pub struct IoApicInfo {
    pub id: u8,
    pub phys: u64,
    pub gsi_base: u32,
    pub version: u32,
    pub entries: Vec<u64>,
}

/// Where one PCI function's INTx pin lands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntxLine {
    /// "00:03.0"
    pub bdf: String,
    /// 'A'..'D'
    pub pin: char,
    /// "GSI 16 level high (\_SB.GSIA)" plus the swizzle steps and the vector when in use, or
    /// why it has no route.
    pub route: Result<String, String>,
}

/// What the interrupt commands need from the machine.
pub trait IrqHost {
    /// Every routed vector with its count, sorted by vector.
    fn irq_routes(&mut self) -> Vec<RouteLine>;
    /// The local APIC, or why there is none in use.
    fn apic_info(&mut self) -> Result<ApicInfo, CmdError>;
    /// Every I/O APIC, in MADT order.
    fn ioapics(&mut self) -> Vec<IoApicInfo>;
    /// Every PCI function with an interrupt pin and where ACPI `_PRT` routes it; `Err` when
    /// there is no routing table at all (no ACPI, or its `_PRT` failed).
    fn intx_routes(&mut self) -> Result<Vec<IntxLine>, String>;
}

const IRQ_USAGE: &str = "irq [route]";
const IRQ_HELP: &str = "\
irq          one line per vector in use: vector, source, mechanism (LAPIC, I/O APIC pin,
             MSI-X entry, MSI, INTx, 8259), target CPU (APIC ID), interrupts counted
irq route    the same table grouped by device: source -> vector -> CPU, and each handler";

const APIC_USAGE: &str = "apic";
const APIC_HELP: &str = "\
apic         the local APIC of this CPU: mode (xAPIC MMIO base or x2APIC), ID, version,
             every LVT, timer registers, SPIV, ESR (latched), TPR, PPR, LDR, vectors in
             service and requested, the timer's mode and calibration, ticks so far";

const IOAPIC_USAGE: &str = "ioapic [N]";
const IOAPIC_HELP: &str = "\
ioapic       every I/O APIC: ID, address, GSI range, version, and per pin its raw
             redirection entry decoded (vector, delivery, destination, trigger, polarity, mask)
ioapic N     only the Nth I/O APIC (MADT order)";

pub fn commands<S: IrqHost>() -> Vec<Command<S>> {
    vec![
        Command {
            name: "irq",
            group: "interrupts",
            subcommands: &["route"],
            usage: IRQ_USAGE,
            help: "interrupt vectors: source, mechanism, target CPU, count; routing table",
            long_help: IRQ_HELP,
            run: irq::<S>,
        },
        Command {
            name: "apic",
            group: "interrupts",
            subcommands: &[],
            usage: APIC_USAGE,
            help: "local APIC: mode, ID, LVTs, timer, TPR, ESR",
            long_help: APIC_HELP,
            run: apic::<S>,
        },
        Command {
            name: "ioapic",
            group: "interrupts",
            subcommands: &[],
            usage: IOAPIC_USAGE,
            help: "I/O APIC redirection entries",
            long_help: IOAPIC_HELP,
            run: ioapic::<S>,
        },
    ]
}

fn irq<S: IrqHost>(s: &mut S, a: &mut Args, o: &mut dyn Write) -> CmdResult {
    match a.opt_str() {
        None => {
            let routes = s.irq_routes();
            outln!(
                o,
                "vector  {:<40} {:<18} {:>4} {:>10}",
                "source",
                "mechanism",
                "cpu",
                "count"
            );
            for r in routes {
                outln!(
                    o,
                    "{:#04x}    {:<40} {:<18} {:>4} {:>10}",
                    r.vector,
                    r.source,
                    r.mechanism,
                    cpu_col(r.apic_id),
                    r.count
                );
            }
            Ok(())
        }
        Some("route") => {
            a.finish()?;
            route(s, o)
        }
        Some(w) => Err(bad_arg!("unknown subcommand '{}'", w)),
    }
}

/// The `cpu` column: an APIC ID, or "all" for vectors every CPU takes.
fn cpu_col(id: Option<u32>) -> String {
    match id {
        Some(id) => alloc::format!("{}", id),
        None => String::from("all"),
    }
}

fn route<S: IrqHost>(s: &mut S, o: &mut dyn Write) -> CmdResult {
    let routes = s.irq_routes();
    outln!(o, "vectors (source -> mechanism -> vector -> CPU):");
    for r in &routes {
        outln!(
            o,
            "{} -> {} -> vector {:#04x} -> {} ({} interrupts)",
            r.source,
            r.mechanism,
            r.vector,
            match r.apic_id {
                Some(id) => alloc::format!("CPU {}", id),
                None => String::from("every CPU"),
            },
            r.count
        );
    }
    match s.intx_routes() {
        Ok(lines) => {
            outln!(o, "PCI INTx (ACPI _PRT):");
            if lines.is_empty() {
                outln!(o, "  no PCI function has an interrupt pin");
            }
            for l in lines {
                match l.route {
                    Ok(r) => outln!(o, "  {} INT{} -> {}", l.bdf, l.pin, r),
                    Err(e) => outln!(o, "  {} INT{} -> no route: {}", l.bdf, l.pin, e),
                }
            }
        }
        Err(e) => outln!(o, "PCI INTx: no routing table: {}", e),
    }
    Ok(())
}

fn apic<S: IrqHost>(s: &mut S, a: &mut Args, o: &mut dyn Write) -> CmdResult {
    if let Some(w) = a.opt_str() {
        return Err(bad_arg!("unexpected argument '{}'", w));
    }
    let i = s.apic_info()?;
    let st = &i.state;
    match i.mode {
        Mode::XApic => outln!(o, "mode: xAPIC at {:#x} (apic={})", i.base, i.requested),
        Mode::X2Apic => outln!(o, "mode: x2APIC (apic={})", i.requested),
    }
    outln!(o, "id: {:#x}", st.id);
    outln!(
        o,
        "version: {:#x} (version {:#x}, max LVT {})",
        st.version,
        st.version & 0xff,
        st.max_lvt()
    );
    let lvts = [
        ("LVT0", st.lvt_lint0, false),
        ("LVT1", st.lvt_lint1, false),
        ("LVTPC", st.lvt_pmc, false),
        ("LVTERR", st.lvt_error, false),
        ("LVTTHMR", st.lvt_thermal, false),
        ("LVTT", st.lvt_timer, true),
    ];
    for (name, v, timer) in lvts {
        outln!(o, "{:<7} {:#010x}  {}", name, v, describe_lvt(v, timer));
    }
    outln!(
        o,
        "DCR     {:#010x}  divide by {}",
        st.timer_divide,
        divisor_of(st.timer_divide)
    );
    outln!(o, "TMICT   {:#010x}", st.timer_initial);
    outln!(o, "TMCCT   {:#010x}", st.timer_current);
    outln!(
        o,
        "SPIV    {:#010x}  {}, spurious vector {:#04x}",
        st.svr,
        if st.svr & (1 << 8) != 0 {
            "enabled"
        } else {
            "disabled"
        },
        st.svr & 0xff
    );
    outln!(o, "ESR     {:#010x}", st.esr);
    outln!(o, "TPR     {:#010x}", st.tpr);
    outln!(o, "PPR     {:#010x}", st.ppr);
    outln!(o, "LDR     {:#010x}", st.ldr);
    if let Some(d) = st.dfr {
        outln!(o, "DFR     {:#010x}", d);
    }
    for (name, bits) in [("ISR", &st.isr), ("IRR", &st.irr)] {
        let v: Vec<String> = LapicState::vectors(bits)
            .map(|v| alloc::format!("{:#04x}", v))
            .collect();
        outln!(
            o,
            "{:<7} {}",
            name,
            if v.is_empty() {
                String::from("(none)")
            } else {
                v.join(" ")
            }
        );
    }
    outln!(o, "timer: {}", i.timer);
    outln!(o, "ticks: {}", i.ticks);
    Ok(())
}

fn ioapic<S: IrqHost>(s: &mut S, a: &mut Args, o: &mut dyn Write) -> CmdResult {
    let which = a.opt_u64("I/O APIC index")?;
    a.finish()?;
    let chips = s.ioapics();
    if chips.is_empty() {
        return Err(fail!("no I/O APIC (the MADT lists none)"));
    }
    if let Some(n) = which {
        if n as usize >= chips.len() {
            return Err(fail!(
                "no I/O APIC {} (there {} {})",
                n,
                if chips.len() == 1 { "is" } else { "are" },
                chips.len()
            ));
        }
    }
    for (n, c) in chips.iter().enumerate() {
        if which.is_some_and(|w| w as usize != n) {
            continue;
        }
        outln!(
            o,
            "ioapic {}: id {:#x} at {:#x}, GSI {}-{}, version {:#x}",
            n,
            c.id,
            c.phys,
            c.gsi_base,
            c.gsi_base + (c.entries.len() as u32).saturating_sub(1),
            c.version & 0xff
        );
        for (pin, raw) in c.entries.iter().enumerate() {
            let e = Redirection::decode(*raw);
            outln!(
                o,
                "pin {:>2} gsi {:>3} {:#018x} vector {:#04x} {} {} dest {:#x} {} {}{}{}{}",
                pin,
                c.gsi_base + pin as u32,
                raw,
                e.vector,
                e.delivery.name(),
                if e.logical { "logical" } else { "physical" },
                e.dest,
                if e.level { "level" } else { "edge" },
                if e.active_low { "low" } else { "high" },
                if e.masked { " masked" } else { "" },
                if e.remote_irr { " remote-irr" } else { "" },
                if e.pending { " pending" } else { "" },
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use capmon_shell::Args;

    struct Host {
        apic: Option<ApicInfo>,
        chips: Vec<IoApicInfo>,
    }

    impl IrqHost for Host {
        fn irq_routes(&mut self) -> Vec<RouteLine> {
            vec![
                RouteLine {
                    vector: 0x34,
                    source: "COM1 (ISA IRQ 4, GSI 4)".into(),
                    mechanism: "I/O APIC 0 pin 4".into(),
                    apic_id: Some(0),
                    count: 12,
                },
                RouteLine {
                    vector: 0xec,
                    source: "LAPIC timer".into(),
                    mechanism: "LAPIC".into(),
                    apic_id: None,
                    count: 345,
                },
            ]
        }
        fn apic_info(&mut self) -> Result<ApicInfo, CmdError> {
            self.apic
                .clone()
                .ok_or_else(|| fail!("no local APIC in use"))
        }
        fn ioapics(&mut self) -> Vec<IoApicInfo> {
            self.chips.clone()
        }
        fn intx_routes(&mut self) -> Result<Vec<IntxLine>, String> {
            if self.chips.is_empty() {
                return Err("_PRT: the AML interpreter faulted".into());
            }
            Ok(vec![
                IntxLine {
                    bdf: "00:03.0".into(),
                    pin: 'A',
                    route: Ok("GSI 16 level high (\\_SB.GSIA) -> vector 0x42".into()),
                },
                IntxLine {
                    bdf: "01:00.0".into(),
                    pin: 'B',
                    route: Err("no _PRT entry for 0000:00:1c INTC".into()),
                },
            ])
        }
    }

    fn host() -> Host {
        let mut st = LapicState {
            id: 0,
            version: 0x50014,
            svr: 0x1ff,
            lvt_timer: 0x200ec,
            lvt_lint0: 0x10700,
            lvt_lint1: 0x400,
            lvt_error: 0xfe,
            lvt_pmc: 0x10000,
            lvt_thermal: 0x10000,
            timer_divide: 3,
            timer_initial: 62500,
            ..Default::default()
        };
        st.irr[7] = 1 << 12; // vector 0xec
        Host {
            apic: Some(ApicInfo {
                mode: Mode::X2Apic,
                base: 0,
                requested: "auto",
                state: st,
                timer: "periodic, vector 0xec".into(),
                ticks: 99,
            }),
            chips: vec![IoApicInfo {
                id: 0,
                phys: 0xfec0_0000,
                gsi_base: 0,
                version: 0x170020,
                entries: vec![0x10000, 0x0000_0000_0000_0034, 0x0300_0000_0001_a045],
            }],
        }
    }

    fn run(h: &mut Host, line: &str) -> (CmdResult, String) {
        let mut out = String::new();
        let words = capmon_shell::parse::words(line);
        let mut a = Args::new(words[1..].to_vec());
        let r = match words[0] {
            "irq" => irq(h, &mut a, &mut out),
            "apic" => apic(h, &mut a, &mut out),
            _ => ioapic(h, &mut a, &mut out),
        };
        (r, out)
    }

    #[test]
    fn irq_lists_vectors_with_counts() {
        let (r, out) = run(&mut host(), "irq");
        assert_eq!(r, Ok(()));
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].starts_with("vector  source"));
        assert!(lines[1].starts_with("0x34    COM1 (ISA IRQ 4, GSI 4)"));
        assert!(lines[1].contains("I/O APIC 0 pin 4"));
        assert!(lines[1].ends_with("   0         12"));
        assert!(lines[2].starts_with("0xec    LAPIC timer"));
        assert!(lines[2].ends_with(" all        345"), "{}", lines[2]);
        let (r, out) = run(&mut host(), "irq route");
        assert_eq!(r, Ok(()));
        assert!(out.contains(
            "COM1 (ISA IRQ 4, GSI 4) -> I/O APIC 0 pin 4 -> vector 0x34 -> CPU 0 (12 interrupts)"
        ));
        assert!(out.contains(
            "PCI INTx (ACPI _PRT):\n  00:03.0 INTA -> GSI 16 level high (\\_SB.GSIA) -> vector 0x42\n  01:00.0 INTB -> no route: no _PRT entry for 0000:00:1c INTC\n"
        ));
        let mut h = host();
        h.chips.clear();
        let (_, out) = run(&mut h, "irq route");
        assert!(out.ends_with("PCI INTx: no routing table: _PRT: the AML interpreter faulted\n"));
        assert!(run(&mut host(), "irq bogus").0.is_err());
    }

    #[test]
    fn apic_prints_every_register() {
        let (r, out) = run(&mut host(), "apic");
        assert_eq!(r, Ok(()));
        for want in [
            "mode: x2APIC (apic=auto)",
            "id: 0x0",
            "LVT0    0x00010700  ExtINT edge masked",
            "LVT1    0x00000400  NMI edge",
            "LVTT    0x000200ec  fixed vector 0xec periodic",
            "DCR     0x00000003  divide by 16",
            "TMICT   0x0000f424",
            "SPIV    0x000001ff  enabled, spurious vector 0xff",
            "IRR     0xec",
            "ISR     (none)",
            "ticks: 99",
        ] {
            assert!(
                out.lines().any(|l| l == want),
                "missing '{}' in\n{}",
                want,
                out
            );
        }
        assert!(!out.contains("DFR"), "x2APIC has no DFR");
        let mut h = host();
        h.apic = None;
        assert_eq!(run(&mut h, "apic").0, Err(fail!("no local APIC in use")));
        assert!(run(&mut host(), "apic bogus").0.is_err());
    }

    #[test]
    fn ioapic_decodes_entries() {
        let (r, out) = run(&mut host(), "ioapic");
        assert_eq!(r, Ok(()));
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            "ioapic 0: id 0x0 at 0xfec00000, GSI 0-2, version 0x20"
        );
        assert_eq!(
            lines[1],
            "pin  0 gsi   0 0x0000000000010000 vector 0x00 fixed physical dest 0x0 edge high masked"
        );
        assert_eq!(
            lines[2],
            "pin  1 gsi   1 0x0000000000000034 vector 0x34 fixed physical dest 0x0 edge high"
        );
        assert_eq!(
            lines[3],
            "pin  2 gsi   2 0x030000000001a045 vector 0x45 fixed physical dest 0x3 level low masked"
        );
        assert_eq!(run(&mut host(), "ioapic 0").1, out);
        let (r, _) = run(&mut host(), "ioapic 7");
        assert_eq!(r, Err(fail!("no I/O APIC 7 (there is 1)")));
        let mut h = host();
        h.chips.clear();
        assert!(run(&mut h, "ioapic").0.is_err());
    }
}
