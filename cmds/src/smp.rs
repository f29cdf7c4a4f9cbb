//! The multiprocessor command family: `cpus` (every CPU, its state, ticks and idle time, how
//! the APs were brought up; `cpus tlb` checks TLB shootdown on all of them), `ipi CPU`
//! (round-trip latency of an IPI and its answer, or an NMI), `on CPU COMMAND...` (runs a
//! monitor command on another CPU and prints its output here).
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use capmon_shell::{bad_arg, fail, outln, Args, CmdError, CmdResult, Command};
use core::fmt::Write;

/// One CPU as `cpus` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuLine {
    /// Index: what `ipi` and `on` take. 0 is the boot CPU.
    pub index: usize,
    pub apic_id: u32,
    /// "online", "offline", "timed-out", "halted", ...
    pub state: &'static str,
    pub ticks: u64,
    /// Time halted since it came online, in tenths of a percent.
    pub idle_permille: u64,
    /// IPIs and NMIs it has taken.
    pub ipis: u64,
    pub nmis: u64,
}

impl CpuLine {
    pub fn online(&self) -> bool {
        self.state == "online"
    }
}

/// How the application processors were started.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BringUpInfo {
    /// "INIT-SIPI-SIPI", "Limine MP" or "none".
    pub method: &'static str,
    /// APs the start sequence was sent to.
    pub started: usize,
    /// MADT entries that are not enabled (not started, not listed).
    pub disabled: usize,
    /// From the first start-up IPI to the last AP online.
    pub time_ns: Option<u64>,
    /// The trampoline page, for INIT-SIPI-SIPI.
    pub trampoline: Option<u64>,
    /// APs that had not answered 200 µs after the first SIPI and were sent the second.
    pub resent: usize,
    /// Why some CPUs were not started or did not come up.
    pub notes: Vec<String>,
}

/// Answered IPI round trips, in nanoseconds, and how many went unanswered.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RoundTrips {
    pub samples_ns: Vec<u64>,
    pub lost: usize,
}

/// What a command run on another CPU printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnOutput {
    pub output: String,
    /// It faulted (its report is in `output`).
    pub faulted: bool,
    /// It overran its time and was stopped with an NMI.
    pub stopped: bool,
}

/// `cpus tlb`: CPUs that read each frame through the test page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TlbReport {
    pub cpus: usize,
    pub first: usize,
    pub stale: usize,
    pub after: usize,
    pub shootdown_ns: u64,
    /// Shootdowns since boot, and acknowledgements that never came.
    pub shootdowns: u64,
    pub missed_acks: u64,
}

/// What the SMP commands need from the machine.
pub trait SmpHost {
    /// Every CPU, by index.
    fn cpus(&mut self) -> Vec<CpuLine>;
    fn bring_up(&mut self) -> BringUpInfo;
    /// The index of the CPU running this command.
    fn this_cpu(&self) -> usize;
    /// `rounds` fixed IPIs to `cpu`, each answered by one back.
    fn ipi_round_trips(&mut self, cpu: usize, rounds: usize) -> Result<RoundTrips, CmdError>;
    /// An NMI to `cpu`; how long until it was taken, `None` if it never was.
    fn ipi_nmi(&mut self, cpu: usize) -> Result<Option<u64>, CmdError>;
    /// Runs `line` on `cpu` (on this CPU itself: here) and returns what it printed; stops it
    /// after `timeout_ms`.
    fn run_on(&mut self, cpu: usize, line: &str, timeout_ms: u64) -> Result<OnOutput, CmdError>;
    fn tlb_test(&mut self) -> Result<TlbReport, CmdError>;
}

const CPUS_USAGE: &str = "cpus [tlb]";
const CPUS_HELP: &str = "\
cpus         one line per CPU: index (what ipi and on take), APIC ID, state (online,
             offline, timed-out, halted), timer ticks, time spent halted since it came
             online, IPIs and NMIs taken; then how the APs were started and the time from
             the first start-up IPI to the last CPU online
cpus tlb     TLB shootdown check: maps a test page, has every CPU read it, remaps it with
             only a local flush (CPUs that still read the old frame show the TLBs hold it),
             then with a shootdown: every online CPU must read the new frame";

const IPI_USAGE: &str = "ipi CPU [ROUNDS|nmi]";
const IPI_HELP: &str = "\
ipi CPU          100 round trips: a fixed IPI to CPU, whose handler answers with one back;
                 min, median and max latency (CPU may be this one: a self-IPI)
ipi CPU ROUNDS   as many round trips (1..10000)
ipi CPU nmi      an NMI to CPU; reports that it was taken and after how long";

const ON_USAGE: &str = "on [-t MS] CPU COMMAND [ARGS...]";
const ON_HELP: &str = "\
on CPU COMMAND...   runs a monitor command on CPU and prints its output here: the boot
                    CPU posts the line and the machine in a mailbox, wakes CPU with an IPI
                    and waits. The command runs under CPU's own fault guard: a fault is
                    reported and the monitor goes on. On this CPU itself it simply runs
                    here. Only the boot CPU's monitor hands out commands (on inside on, on
                    another CPU, is refused).
on -t MS CPU ...    waits MS milliseconds (default 10000, at most 600000); a command still
                    running then is stopped with an NMI, as if it had faulted";
/// How long `on` waits by default, and at most.
pub const ON_TIMEOUT_MS: u64 = 10_000;
const ON_TIMEOUT_MAX_MS: u64 = 600_000;

pub fn commands<S: SmpHost>() -> Vec<Command<S>> {
    vec![
        Command {
            name: "cpus",
            group: "smp",
            subcommands: &["tlb"],
            usage: CPUS_USAGE,
            help: "every CPU: APIC ID, state, ticks, idle time; bring-up time; TLB check",
            long_help: CPUS_HELP,
            run: cpus::<S>,
        },
        Command {
            name: "ipi",
            group: "smp",
            subcommands: &["nmi"],
            usage: IPI_USAGE,
            help: "IPI round-trip latency to a CPU, or an NMI",
            long_help: IPI_HELP,
            run: ipi::<S>,
        },
        Command {
            name: "on",
            group: "smp",
            subcommands: &[],
            usage: ON_USAGE,
            help: "run a monitor command on another CPU",
            long_help: ON_HELP,
            run: on::<S>,
        },
    ]
}

fn cpus<S: SmpHost>(s: &mut S, a: &mut Args, o: &mut dyn Write) -> CmdResult {
    match a.opt_str() {
        None => list(s, o),
        Some("tlb") => {
            a.finish()?;
            tlb(s, o)
        }
        Some(w) => Err(bad_arg!("unknown subcommand '{}'", w)),
    }
}

fn list<S: SmpHost>(s: &mut S, o: &mut dyn Write) -> CmdResult {
    let cpus = s.cpus();
    let here = s.this_cpu();
    outln!(o, "cpu  apic-id  state       ticks    idle      ipis  nmis");
    for c in &cpus {
        outln!(
            o,
            "{:>3}  {:>7}  {:<9} {:>7}  {:>5}.{}%  {:>7} {:>5}{}",
            c.index,
            c.apic_id,
            c.state,
            c.ticks,
            c.idle_permille / 10,
            c.idle_permille % 10,
            c.ipis,
            c.nmis,
            if c.index == here { "  <- this CPU" } else { "" }
        );
    }
    let online = cpus.iter().filter(|c| c.online()).count();
    let b = s.bring_up();
    let mut line = alloc::format!(
        "{} CPU{}, {} online; ",
        cpus.len(),
        if cpus.len() == 1 { "" } else { "s" },
        online
    );
    if b.method == "none" {
        line.push_str("no AP started");
    } else {
        line.push_str("APs started by ");
        line.push_str(b.method);
    }
    if b.started > 0 {
        line.push_str(&alloc::format!(" ({} started", b.started));
        if let Some(t) = b.trampoline {
            line.push_str(&alloc::format!(
                ", trampoline at {:#x}, second SIPI to {}",
                t,
                b.resent
            ));
        }
        line.push(')');
    }
    outln!(o, "{}", line);
    match b.time_ns {
        Some(ns) => outln!(
            o,
            "bring-up: first start-up to last CPU online in {}.{:03} ms",
            ns / 1_000_000,
            (ns / 1000) % 1000
        ),
        None => outln!(o, "bring-up: no AP came online"),
    }
    if b.disabled > 0 {
        outln!(
            o,
            "{} MADT entries are not enabled (not started)",
            b.disabled
        );
    }
    for n in &b.notes {
        outln!(o, "note: {}", n);
    }
    Ok(())
}

fn tlb<S: SmpHost>(s: &mut S, o: &mut dyn Write) -> CmdResult {
    let r = s.tlb_test()?;
    outln!(o, "test page read by {} CPUs", r.cpus);
    outln!(o, "mapped to frame A: {} of {} read A", r.first, r.cpus);
    outln!(
        o,
        "remapped to B, local flush only: {} of {} still read A (stale)",
        r.stale,
        r.cpus
    );
    outln!(
        o,
        "remapped to C with a shootdown ({} us): {} of {} read C",
        r.shootdown_ns / 1000,
        r.after,
        r.cpus
    );
    outln!(
        o,
        "shootdowns since boot: {}, missed acknowledgements: {}",
        r.shootdowns,
        r.missed_acks
    );
    if r.after != r.cpus || r.first != r.cpus {
        return Err(fail!(
            "TLB shootdown: {} of {} CPUs read the new frame",
            r.after,
            r.cpus
        ));
    }
    Ok(())
}

/// The CPU named by `word`, which must exist and be online.
fn online_cpu<S: SmpHost>(s: &mut S, word: &str) -> Result<CpuLine, CmdError> {
    let n = capmon_shell::parse::number(word).map_err(|e| bad_arg!("CPU: {}", e))?;
    let cpus = s.cpus();
    let c = cpus
        .iter()
        .find(|c| c.index as u64 == n)
        .ok_or_else(|| fail!("no CPU {} (CPUs 0..={})", n, cpus.len().saturating_sub(1)))?;
    if !c.online() {
        return Err(fail!(
            "CPU {} (APIC ID {}) is {}",
            c.index,
            c.apic_id,
            c.state
        ));
    }
    Ok(c.clone())
}

fn us(ns: u64) -> String {
    alloc::format!("{}.{} us", ns / 1000, (ns % 1000) / 100)
}

fn ipi<S: SmpHost>(s: &mut S, a: &mut Args, o: &mut dyn Write) -> CmdResult {
    let c = online_cpu(s, a.str()?)?;
    match a.opt_str() {
        Some("nmi") => {
            a.finish()?;
            match s.ipi_nmi(c.index)? {
                Some(ns) => outln!(
                    o,
                    "CPU {} (APIC ID {}): NMI taken after {}",
                    c.index,
                    c.apic_id,
                    us(ns)
                ),
                None => {
                    return Err(fail!(
                        "CPU {} (APIC ID {}) did not take the NMI",
                        c.index,
                        c.apic_id
                    ))
                }
            }
        }
        w => {
            let rounds = match w {
                None => 100,
                Some(w) => capmon_shell::parse::number(w).map_err(|e| bad_arg!("ROUNDS: {}", e))?,
            };
            a.finish()?;
            if !(1..=10_000).contains(&rounds) {
                return Err(bad_arg!("ROUNDS must be 1..10000, not {}", rounds));
            }
            let r = s.ipi_round_trips(c.index, rounds as usize)?;
            let mut v = r.samples_ns.clone();
            v.sort_unstable();
            let (Some(min), Some(max)) = (v.first(), v.last()) else {
                return Err(fail!(
                    "CPU {} (APIC ID {}) answered none of {} IPIs",
                    c.index,
                    c.apic_id,
                    rounds
                ));
            };
            outln!(
                o,
                "CPU {} (APIC ID {}): {} round trips: min {}, median {}, max {}{}",
                c.index,
                c.apic_id,
                v.len(),
                us(*min),
                us(v[v.len() / 2]),
                us(*max),
                if r.lost > 0 {
                    alloc::format!(" ({} unanswered)", r.lost)
                } else {
                    String::new()
                }
            );
        }
    }
    Ok(())
}

/// Joins words back into a line the monitor splits the same way (quoting words with spaces).
pub fn join_words(words: &[&str]) -> String {
    let mut line = String::new();
    for (i, w) in words.iter().enumerate() {
        if i > 0 {
            line.push(' ');
        }
        if w.is_empty() || w.contains(|c: char| c.is_ascii_whitespace()) {
            line.push('"');
            line.push_str(w);
            line.push('"');
        } else {
            line.push_str(w);
        }
    }
    line
}

fn on<S: SmpHost>(s: &mut S, a: &mut Args, o: &mut dyn Write) -> CmdResult {
    let Some(mut cpu) = a.opt_str() else {
        return Err(CmdError::Usage);
    };
    // `-t` only in first place: every later word belongs to the command.
    let mut timeout_ms = ON_TIMEOUT_MS;
    if cpu == "-t" {
        timeout_ms = a.u64("MS")?;
        if !(1..=ON_TIMEOUT_MAX_MS).contains(&timeout_ms) {
            return Err(bad_arg!(
                "MS must be 1..{}, not {}",
                ON_TIMEOUT_MAX_MS,
                timeout_ms
            ));
        }
        cpu = a.str()?;
    }
    let words = a.rest();
    if words.is_empty() {
        return Err(bad_arg!("on {}: no command to run", cpu));
    }
    let c = online_cpu(s, cpu)?;
    let r = s.run_on(c.index, &join_words(&words), timeout_ms)?;
    let _ = o.write_str(&r.output);
    if r.stopped {
        return Err(fail!(
            "'{}' on CPU {} overran its time and was stopped",
            words[0],
            c.index
        ));
    }
    if r.faulted {
        return Err(fail!("'{}' faulted on CPU {}", words[0], c.index));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use capmon_shell::{Monitor, Registry};

    struct Fake {
        cpus: Vec<CpuLine>,
        here: usize,
        ran: Vec<(usize, String)>,
    }

    fn line(index: usize, state: &'static str) -> CpuLine {
        CpuLine {
            index,
            apic_id: index as u32 * 2,
            state,
            ticks: 10,
            idle_permille: 995,
            ipis: 0,
            nmis: 0,
        }
    }

    impl SmpHost for Fake {
        fn cpus(&mut self) -> Vec<CpuLine> {
            self.cpus.clone()
        }
        fn bring_up(&mut self) -> BringUpInfo {
            BringUpInfo {
                method: "INIT-SIPI-SIPI",
                started: self.cpus.len() - 1,
                time_ns: Some(12_345_678),
                trampoline: Some(0x9f000),
                notes: vec![String::from("1 CPUs never answered")],
                ..Default::default()
            }
        }
        fn this_cpu(&self) -> usize {
            self.here
        }
        fn ipi_round_trips(&mut self, _cpu: usize, rounds: usize) -> Result<RoundTrips, CmdError> {
            Ok(RoundTrips {
                samples_ns: (0..rounds as u64).map(|i| 10_000 + i * 100).rev().collect(),
                lost: 0,
            })
        }
        fn ipi_nmi(&mut self, cpu: usize) -> Result<Option<u64>, CmdError> {
            Ok((cpu != 2).then_some(4_500))
        }
        fn run_on(
            &mut self,
            cpu: usize,
            line: &str,
            timeout_ms: u64,
        ) -> Result<OnOutput, CmdError> {
            self.ran.push((cpu, String::from(line)));
            if line == "spin" {
                return Ok(OnOutput {
                    output: alloc::format!("stopped after {} ms\n", timeout_ms),
                    faulted: true,
                    stopped: true,
                });
            }
            Ok(OnOutput {
                output: alloc::format!("ran '{}' on {}\n", line, cpu),
                faulted: line.starts_with("crash"),
                stopped: false,
            })
        }
        fn tlb_test(&mut self) -> Result<TlbReport, CmdError> {
            Ok(TlbReport {
                cpus: 3,
                first: 3,
                stale: 2,
                after: 3,
                ..Default::default()
            })
        }
    }

    fn run(f: &mut Fake, cmd: &str) -> String {
        let mut m = Monitor::new(Registry::new(commands::<Fake>()));
        let mut out = String::new();
        m.execute_direct(f, cmd, &mut out);
        out
    }

    fn fake() -> Fake {
        Fake {
            cpus: vec![
                line(0, "online"),
                line(1, "online"),
                line(2, "online"),
                line(3, "timed-out"),
            ],
            here: 0,
            ran: Vec::new(),
        }
    }

    #[test]
    fn cpus_lists_every_cpu_and_the_bring_up() {
        let out = run(&mut fake(), "cpus");
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[1].starts_with("  0        0  online"), "{}", lines[1]);
        assert!(lines[1].contains("99.5%") && lines[1].ends_with("<- this CPU"));
        assert!(
            lines[4].starts_with("  3        6  timed-out"),
            "{}",
            lines[4]
        );
        assert!(out.contains(
            "4 CPUs, 3 online; APs started by INIT-SIPI-SIPI (3 started, trampoline at 0x9f000, second SIPI to 0)"
        ));
        assert!(out.contains("last CPU online in 12.345 ms"));
        assert!(out.contains("note: 1 CPUs never answered"));
    }

    #[test]
    fn ipi_reports_min_median_max() {
        let out = run(&mut fake(), "ipi 1 5");
        assert_eq!(
            out,
            "CPU 1 (APIC ID 2): 5 round trips: min 10.0 us, median 10.2 us, max 10.4 us\n"
        );
        assert!(run(&mut fake(), "ipi 1").contains("100 round trips"));
        assert_eq!(
            run(&mut fake(), "ipi 1 nmi"),
            "CPU 1 (APIC ID 2): NMI taken after 4.5 us\n"
        );
        assert_eq!(
            run(&mut fake(), "ipi 2 nmi"),
            "error: CPU 2 (APIC ID 4) did not take the NMI\n"
        );
    }

    #[test]
    fn bad_cpus_are_errors() {
        assert_eq!(run(&mut fake(), "ipi 9"), "error: no CPU 9 (CPUs 0..=3)\n");
        assert_eq!(
            run(&mut fake(), "ipi 3"),
            "error: CPU 3 (APIC ID 6) is timed-out\n"
        );
        assert!(run(&mut fake(), "ipi x").starts_with("error: CPU: "));
        assert!(run(&mut fake(), "ipi 1 0").starts_with("error: ROUNDS must be 1..10000"));
        assert!(run(&mut fake(), "ipi 1 nmi x").starts_with("error: unexpected argument 'x'"));
        assert_eq!(
            run(&mut fake(), "on 3 cpuid"),
            "error: CPU 3 (APIC ID 6) is timed-out\n"
        );
        assert_eq!(
            run(&mut fake(), "on"),
            "usage: on [-t MS] CPU COMMAND [ARGS...]\n"
        );
        assert!(run(&mut fake(), "on 1").starts_with("error: on 1: no command to run\n"));
        assert!(run(&mut fake(), "cpus x").starts_with("error: unknown subcommand 'x'"));
    }

    #[test]
    fn on_passes_the_line_through_and_reports_faults() {
        let mut f = fake();
        let out = run(&mut f, "on 2 echo \"a b\" -x");
        assert_eq!(out, "ran 'echo \"a b\" -x' on 2\n");
        assert_eq!(f.ran, [(2, String::from("echo \"a b\" -x"))]);
        let out = run(&mut f, "on 0 crash ud");
        assert_eq!(
            out,
            "ran 'crash ud' on 0\nerror: 'crash' faulted on CPU 0\n"
        );
        let out = run(&mut f, "on -t 50 1 spin");
        assert_eq!(
            out,
            "stopped after 50 ms\nerror: 'spin' on CPU 1 overran its time and was stopped\n"
        );
        assert!(run(&mut f, "on -t 0 1 spin").starts_with("error: MS must be 1..600000"));
        assert_eq!(f.ran.len(), 3, "a refused -t runs nothing");
        assert_eq!(
            run(&mut f, "on -t 5"),
            "usage: on [-t MS] CPU COMMAND [ARGS...]\n"
        );
        run(&mut f, "on 1 md -t 5");
        assert_eq!(f.ran[3].1, "md -t 5", "a later -t belongs to the command");
    }

    #[test]
    fn tlb_check_passes_when_every_cpu_reads_the_new_frame() {
        let out = run(&mut fake(), "cpus tlb");
        assert!(out.contains("remapped to B, local flush only: 2 of 3 still read A (stale)"));
        assert!(out.contains("with a shootdown (0 us): 3 of 3 read C"));
        assert!(!out.contains("error"));
    }

    #[test]
    fn joined_words_split_the_same_way() {
        let w = ["md", "0x10", "a b", ""];
        let line = join_words(&w);
        assert_eq!(capmon_shell::parse::words(&line), w);
    }
}
