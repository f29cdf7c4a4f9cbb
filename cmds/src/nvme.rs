//! The `nvme` command family: controllers, decoded Identify data, SMART / health and the error
//! log, per-queue state, and a controller reset.
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use capmon_nvme::identify::{self, IdNamespace};
use capmon_nvme::Controller;
use capmon_pci::Bdf;
use capmon_shell::{bad_arg, fail, outln, Args, CmdError, CmdResult, Command};
use core::fmt::Write;

/// One NVMe function the kernel found: its controller, or why bring-up failed.
pub struct NvmeFunction {
    /// `nvme0`, `nvme1`, ... in PCI order.
    pub name: String,
    pub bdf: Bdf,
    pub ctrl: Result<Arc<Controller>, String>,
}

/// What the `nvme` commands need from the machine.
pub trait NvmeHost {
    fn nvme_functions(&self) -> &[NvmeFunction];
}

const USAGE: &str =
    "nvme [id CTRL [-x] | ns CTRL NSID [-x] | smart CTRL | log CTRL error | queues CTRL | reset CTRL]";

const LONG_HELP: &str = "\
nvme                  list controllers: BDF, model, serial, firmware, NVMe version, MDTS,
                      I/O queues asked for and granted, interrupts, namespaces
nvme id CTRL [-x]     the decoded Identify Controller data (asked again now); -x: the raw
                      4 KiB as a hexdump
nvme ns CTRL NSID [-x]  the decoded Identify Namespace data: size, capacity, LBA formats
nvme smart CTRL       SMART / health log: temperature, spare, data units, hours, errors
nvme log CTRL error   the error information log, newest first
nvme queues CTRL      per queue: size, SQ tail and head, CQ head and phase, commands
                      submitted and completed, errors, timeouts, vector, interrupts
nvme reset CTRL       disable and re-initialise the controller (drops commands in flight)
CTRL is a controller name (nvme0), its index (0) or its BDF (00:04.0).";

pub fn commands<S: NvmeHost>() -> Vec<Command<S>> {
    vec![Command {
        name: "nvme",
        group: "nvme",
        subcommands: &["id", "ns", "smart", "log", "queues", "reset"],
        usage: USAGE,
        help: "NVMe controllers: identify, namespaces, SMART, error log, queues",
        long_help: LONG_HELP,
        run: nvme::<S>,
    }]
}

fn nvme<S: NvmeHost>(s: &mut S, a: &mut Args, o: &mut dyn Write) -> CmdResult {
    let Some(sub) = a.opt_str() else {
        return list(s, o);
    };
    if !matches!(sub, "id" | "ns" | "smart" | "log" | "queues" | "reset") {
        return Err(bad_arg!("unknown subcommand '{}'", sub));
    }
    let ctrl = find(s.nvme_functions(), a.str()?)?;
    match sub {
        "id" => {
            let raw = a.flag("-x");
            a.finish()?;
            id(&ctrl, raw, o)
        }
        "ns" => {
            let raw = a.flag("-x");
            let nsid = a.u64("NSID")?;
            a.finish()?;
            let nsid = u32::try_from(nsid)
                .ok()
                .filter(|n| *n != 0 && *n != u32::MAX)
                .ok_or_else(|| bad_arg!("NSID must be 1..=4294967294"))?;
            namespace(&ctrl, nsid, raw, o)
        }
        "smart" => {
            a.finish()?;
            smart(&ctrl, o)
        }
        "log" => {
            match a.str()? {
                "error" => {}
                w => return Err(bad_arg!("unknown log '{}' (logs: error)", w)),
            }
            a.finish()?;
            error_log(&ctrl, o)
        }
        "queues" => {
            a.finish()?;
            queues(&ctrl, o)
        }
        _ => {
            a.finish()?;
            ctrl.reset()
                .map_err(|e| fail!("{}: reset failed: {}", ctrl.name, e))?;
            outln!(
                o,
                "{}: reset done ({} resets so far); {} I/O queues",
                ctrl.name,
                ctrl.resets(),
                ctrl.io_queues()
            );
            Ok(())
        }
    }
}

/// A controller by name, index or BDF.
fn find(fns: &[NvmeFunction], which: &str) -> Result<Arc<Controller>, CmdError> {
    let f = if !which.is_empty() && which.bytes().all(|c| c.is_ascii_digit()) {
        which.parse::<usize>().ok().and_then(|i| fns.get(i))
    } else if which.contains(':') {
        let bdf = Bdf::parse(which).map_err(|e| bad_arg!("CTRL: {}", e))?;
        fns.iter().find(|f| f.bdf == bdf)
    } else {
        fns.iter().find(|f| f.name == which)
    };
    let f = f.ok_or_else(|| fail!("no NVMe controller '{}' (see `nvme`)", which))?;
    match &f.ctrl {
        Ok(c) => Ok(c.clone()),
        Err(e) => Err(fail!("{} did not come up: {}", f.name, e)),
    }
}

/// "512 B", "64 KiB", "1 GiB": binary units, exact when they divide, else one decimal.
fn size(bytes: u128) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut u = 0;
    let mut v = bytes;
    while v >= 1024 && v.is_multiple_of(1024) && u + 1 < UNITS.len() {
        v /= 1024;
        u += 1;
    }
    if v < 10240 || u + 1 == UNITS.len() {
        return format!("{} {}", v, UNITS[u]);
    }
    // Not a round number: one decimal of the largest unit below it.
    let mut unit = 0;
    let mut scale = 1u128;
    while bytes / (scale * 1024) >= 1 && unit + 1 < UNITS.len() {
        scale *= 1024;
        unit += 1;
    }
    format!(
        "{}.{} {}",
        bytes / scale,
        bytes % scale * 10 / scale,
        UNITS[unit]
    )
}

fn list<S: NvmeHost>(s: &mut S, o: &mut dyn Write) -> CmdResult {
    let fns = s.nvme_functions();
    if fns.is_empty() {
        outln!(o, "no NVMe controllers");
        return Ok(());
    }
    for f in fns {
        let c = match &f.ctrl {
            Ok(c) => c,
            Err(e) => {
                outln!(o, "{}  {}  not driven: {}", f.name, f.bdf, e);
                continue;
            }
        };
        let id = &c.id;
        outln!(
            o,
            "{}  {}  model \"{}\"  serial \"{}\"  firmware \"{}\"",
            c.name,
            f.bdf,
            id.model,
            id.serial,
            id.firmware
        );
        let mdts = if id.mdts == 0 {
            String::from("0 (no limit)")
        } else {
            format!(
                "{} ({} per command)",
                id.mdts,
                size((c.cap.page_min() as u128) << id.mdts)
            )
        };
        outln!(
            o,
            "   version {}  MDTS {}  transfers up to {}",
            identify::version_string(c.vs),
            mdts,
            size(c.max_transfer as u128)
        );
        outln!(
            o,
            "   queues  {} I/O (asked {}, granted {} SQ / {} CQ), {} entries max, completions by {}",
            c.io_queues(),
            c.queues_requested,
            c.queues_granted.0,
            c.queues_granted.1,
            c.cap.max_queue_entries(),
            c.mechanism
        );
        for ns in c.namespaces() {
            let f = ns.id.format();
            match ns.lba_size {
                Ok(lba) => outln!(
                    o,
                    "   ns {:<4} {}n{}  {} LBAs of {} B = {}{}",
                    ns.nsid,
                    c.name,
                    ns.nsid,
                    ns.id.nsze,
                    lba,
                    size(ns.id.nsze as u128 * lba as u128),
                    if ns.id.write_protected() {
                        ", write protected"
                    } else {
                        ""
                    }
                ),
                Err(why) => outln!(
                    o,
                    "   ns {:<4} not exposed: {} (format {:?})",
                    ns.nsid,
                    why,
                    f
                ),
            }
        }
        if c.namespaces().is_empty() {
            outln!(o, "   no active namespaces");
        }
        if let Some(why) = c.failure() {
            outln!(o, "   FAILED  {} (`nvme reset {}` retries)", why, c.name);
        }
    }
    Ok(())
}

fn id(c: &Controller, raw_dump: bool, o: &mut dyn Write) -> CmdResult {
    let raw = c
        .identify(capmon_nvme::regs::cns::CONTROLLER, 0)
        .map_err(|e| fail!("{}: {}", c.name, e))?;
    if raw_dump {
        capmon_shell::out::hexdump(o, 0, &raw, 1);
        return Ok(());
    }
    let id = identify::IdController::parse(&raw);
    outln!(o, "{}: Identify Controller", c.name);
    outln!(o, "   vid      {:#06x}   ssvid {:#06x}", id.vid, id.ssvid);
    outln!(o, "   sn       \"{}\"", id.serial);
    outln!(o, "   mn       \"{}\"", id.model);
    outln!(o, "   fr       \"{}\"", id.firmware);
    outln!(
        o,
        "   ieee     {:06x}   cmic {:#x}   cntlid {:#x}   cntrltype {}",
        id.ieee_oui,
        id.cmic,
        id.cntlid,
        id.cntrltype
    );
    outln!(
        o,
        "   ver      {:#010x} ({})",
        id.ver,
        identify::version_string(id.ver)
    );
    outln!(o, "   mdts     {}", id.mdts);
    outln!(
        o,
        "   rab      {}   rtd3r {} us   rtd3e {} us",
        id.rab,
        id.rtd3r,
        id.rtd3e
    );
    outln!(o, "   oaes     {:#x}   ctratt {:#x}", id.oaes, id.ctratt);
    outln!(
        o,
        "   oacs     {:#06x} {}",
        id.oacs,
        id.oacs_names().join(", ")
    );
    outln!(
        o,
        "   acl      {}   aerl {}   frmw {:#x}   lpa {:#x}   elpe {}",
        id.acl,
        id.aerl,
        id.frmw,
        id.lpa,
        id.elpe
    );
    outln!(o, "   wctemp   {} K   cctemp {} K", id.wctemp, id.cctemp);
    outln!(
        o,
        "   sqes     {:#04x}   cqes {:#04x}   maxcmd {}",
        id.sqes,
        id.cqes,
        id.maxcmd
    );
    outln!(o, "   nn       {}", id.nn);
    outln!(
        o,
        "   oncs     {:#06x} {}",
        id.oncs,
        id.oncs_names().join(", ")
    );
    outln!(
        o,
        "   fuses    {:#x}   fna {:#x}   vwc {:#x}{}",
        id.fuses,
        id.fna,
        id.vwc,
        if id.has_volatile_cache() {
            " (volatile write cache)"
        } else {
            ""
        }
    );
    outln!(
        o,
        "   awun     {}   awupf {}   sgls {:#010x}   mnan {}",
        id.awun,
        id.awupf,
        id.sgls,
        id.mnan
    );
    outln!(o, "   subnqn   \"{}\"", id.subnqn);
    for (i, p) in id.power_states.iter().enumerate() {
        let (w, frac) = if p.mxps {
            (p.max_power / 10000, p.max_power % 10000 / 100)
        } else {
            (p.max_power / 100, p.max_power % 100)
        };
        outln!(
            o,
            "   ps{:<3}    {}.{:02} W{}   enlat {} us   exlat {} us",
            i,
            w,
            frac,
            if p.non_operational {
                " non-operational"
            } else {
                ""
            },
            p.entry_latency_us,
            p.exit_latency_us
        );
    }
    Ok(())
}

fn namespace(c: &Controller, nsid: u32, raw_dump: bool, o: &mut dyn Write) -> CmdResult {
    if !c.namespaces().iter().any(|n| n.nsid == nsid) {
        let active: Vec<String> = c
            .namespaces()
            .iter()
            .map(|n| format!("{}", n.nsid))
            .collect();
        return Err(fail!(
            "{}: no active namespace {} (active: {})",
            c.name,
            nsid,
            if active.is_empty() {
                String::from("none")
            } else {
                active.join(", ")
            }
        ));
    }
    let raw = c
        .identify(capmon_nvme::regs::cns::NAMESPACE, nsid)
        .map_err(|e| fail!("{}: {}", c.name, e))?;
    if raw_dump {
        capmon_shell::out::hexdump(o, 0, &raw, 1);
        return Ok(());
    }
    let n = IdNamespace::parse(&raw);
    let lba = n.format().and_then(|f| f.data_size()).unwrap_or(0) as u128;
    outln!(o, "{}n{}: Identify Namespace {}", c.name, nsid, nsid);
    outln!(
        o,
        "   nsze     {} LBAs ({})",
        n.nsze,
        size(n.nsze as u128 * lba)
    );
    outln!(o, "   ncap     {} LBAs", n.ncap);
    outln!(o, "   nuse     {} LBAs", n.nuse);
    outln!(
        o,
        "   nsfeat   {:#x}   nmic {:#x}   nsattr {:#x}{}",
        n.nsfeat,
        n.nmic,
        n.nsattr,
        if n.write_protected() {
            " (write protected)"
        } else {
            ""
        }
    );
    outln!(
        o,
        "   flbas    {:#x} (format {}{})",
        n.flbas,
        n.format_index(),
        if n.extended_lba() {
            ", extended LBA"
        } else {
            ""
        }
    );
    outln!(
        o,
        "   mc       {:#x}   dpc {:#x}   dps {:#x}",
        n.mc,
        n.dpc,
        n.dps
    );
    outln!(o, "   nguid    {}", hex(&n.nguid));
    outln!(o, "   eui64    {}", hex(&n.eui64));
    for (i, f) in n.formats.iter().enumerate() {
        outln!(
            o,
            "   lbaf{:<2}   ms {:<3} lbads {:<2} ({}) rp {} ({}){}",
            i,
            f.ms,
            f.lbads,
            f.data_size()
                .map(|d| format!("{} B", d))
                .unwrap_or_else(|| String::from("unsupported")),
            f.rp,
            f.performance(),
            if i == n.format_index() {
                "  in use"
            } else {
                ""
            }
        );
    }
    match n.usable() {
        Ok(_) => {}
        Err(why) => outln!(o, "   not usable as a block device: {}", why),
    }
    Ok(())
}

fn hex(b: &[u8]) -> String {
    b.iter().fold(String::new(), |mut s, x| {
        let _ = write!(s, "{:02x}", x);
        s
    })
}

fn smart(c: &Controller, o: &mut dyn Write) -> CmdResult {
    let s = c.smart().map_err(|e| fail!("{}: {}", c.name, e))?;
    outln!(o, "{}: SMART / health", c.name);
    let warnings = s.warnings();
    outln!(
        o,
        "   critical warning   {:#04x}{}{}",
        s.critical_warning,
        if warnings.is_empty() { "" } else { " " },
        warnings.join(", ")
    );
    let c_deg = s.temperature_k as i32 - 273;
    outln!(
        o,
        "   temperature        {} K ({} C)",
        s.temperature_k,
        c_deg
    );
    for (i, t) in s.sensors.iter().enumerate().filter(|(_, t)| **t != 0) {
        outln!(o, "   sensor {}           {} K", i + 1, t);
    }
    outln!(
        o,
        "   available spare    {}% (threshold {}%)",
        s.available_spare,
        s.spare_threshold
    );
    outln!(o, "   percentage used    {}%", s.percentage_used);
    outln!(
        o,
        "   data units read    {} ({} x 512000 B)",
        s.data_units_read,
        s.data_units_read
    );
    outln!(o, "   data units written {}", s.data_units_written);
    outln!(o, "   host reads         {}", s.host_reads);
    outln!(o, "   host writes        {}", s.host_writes);
    outln!(o, "   busy time          {} min", s.busy_time);
    outln!(o, "   power cycles       {}", s.power_cycles);
    outln!(o, "   power-on hours     {}", s.power_on_hours);
    outln!(o, "   unsafe shutdowns   {}", s.unsafe_shutdowns);
    outln!(o, "   media errors       {}", s.media_errors);
    outln!(o, "   error log entries  {}", s.error_log_entries);
    outln!(
        o,
        "   warning temp time  {} min   critical temp time {} min",
        s.warning_temp_minutes,
        s.critical_temp_minutes
    );
    Ok(())
}

fn error_log(c: &Controller, o: &mut dyn Write) -> CmdResult {
    let mut l = c.error_log().map_err(|e| fail!("{}: {}", c.name, e))?;
    l.sort_by_key(|e| core::cmp::Reverse(e.count));
    outln!(
        o,
        "{}: error log, {} entries (the controller keeps {})",
        c.name,
        l.len(),
        c.id.elpe as u32 + 1
    );
    for e in &l {
        outln!(
            o,
            "   #{:<5} sq {} cid {:#06x} nsid {} lba {}: {}",
            e.count,
            e.sqid,
            e.cid,
            e.nsid,
            e.lba,
            e.status
        );
    }
    Ok(())
}

fn queues(c: &Controller, o: &mut dyn Write) -> CmdResult {
    outln!(
        o,
        "{}: {} ({} I/O queues)",
        c.name,
        c.mechanism,
        c.io_queues()
    );
    outln!(
        o,
        "qid  size  cpu  sq tail  sq head  cq head  phase   submitted   completed  errors  timeouts  vector  entry  interrupts"
    );
    for q in c.queue_report() {
        let opt = |v: Option<String>| v.unwrap_or_else(|| String::from("-"));
        outln!(
            o,
            "{:<3}  {:>4}  {:>3}  {:>7}  {:>7}  {:>7}  {:>5}  {:>10}  {:>10}  {:>6}  {:>8}  {:>6}  {:>5}  {:>10}",
            q.qid,
            q.size,
            opt(q.cpu.map(|c| format!("{}", c))),
            q.pointers.sq_tail,
            q.pointers.sq_head,
            q.pointers.cq_head,
            q.pointers.phase as u8,
            q.submitted,
            q.completed,
            q.errors,
            q.timeouts,
            opt(q.vector.map(|v| format!("{:#04x}", v))),
            opt(q.entry.map(|e| format!("{}", e))),
            q.interrupts
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_naturally() {
        assert_eq!(size(512), "512 B");
        assert_eq!(size(512 << 10), "512 KiB");
        assert_eq!(size(1 << 30), "1 GiB");
        assert_eq!(size(3 * 512), "1536 B");
        assert_eq!(size(64 << 20), "64 MiB");
        assert_eq!(size((1 << 30) + 512), "1.0 GiB");
    }
}
