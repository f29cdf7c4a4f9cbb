//! The `blk` command family: list block devices and partitions, dump sectors, write and verify
//! test patterns, hash ranges, rescan partition tables, benchmark.
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use capmon_block::bench::{self, Access, Dir};
use capmon_block::partition::borrow;
use capmon_block::{gpt, range, BlkError, Pattern, Registry, ScanError, SharedDevice, TableState};
use capmon_hal::Clock;
use capmon_shell::out::{hexdump, HumanSize};
use capmon_shell::{bad_arg, fail, out, outln, parse, Args, CmdError, CmdResult, Command};
use core::fmt::Write;

/// What the `blk` commands need from the machine.
pub trait BlkHost {
    /// The machine's block devices.
    fn blk(&mut self) -> &mut Registry;
    /// A monotonic clock, for progress reports and benchmarks.
    fn clock(&self) -> &dyn Clock;
}

const USAGE: &str = "blk [info DEV | read DEV LBA [COUNT] | write DEV LBA COUNT PATTERN | \
verify DEV LBA COUNT PATTERN | sum DEV LBA COUNT | rescan DEV | \
bench DEV [seq|rand] [read|write] [SIZE] [-q N] [-f]]";

const LONG_HELP: &str = "\
blk                              list block devices and their GPT partitions
blk info DEV                     geometry, identity and partition table details
blk read DEV LBA [COUNT]         hexdump COUNT sectors (default 1, at most 64)
blk write DEV LBA COUNT PATTERN  fill sectors with a test pattern
blk verify DEV LBA COUNT PATTERN compare sectors with a test pattern
blk sum DEV LBA COUNT            SHA-256 of the sectors: prints `sha256 <hex>`
blk rescan DEV                   re-read DEV's GPT and re-create its partitions
blk bench DEV [seq|rand] [read|write] [SIZE] [-q N] [-f]
                                 request size SIZE (default 1M seq, 4K rand); stops after
                                 32 MiB, 2 s or the device end; writes need -f on a device
                                 with a GPT and on partitions; -q N keeps up to N reads in
                                 flight (1..=256, default 1; reads only), in batches, mean
                                 latency then from Little's law
PATTERN is a byte (0xa5), inc (byte = absolute byte offset mod 256) or seed:N (splitmix64 of
N and offset/8; scripts/blkpattern.py makes and checks the same bytes on the host).";

pub fn commands<S: BlkHost>() -> Vec<Command<S>> {
    vec![Command {
        name: "blk",
        group: "storage",
        subcommands: &["info", "read", "write", "verify", "sum", "rescan", "bench"],
        usage: USAGE,
        help: "block devices: list, read, write/verify patterns, sha256, rescan, bench",
        long_help: LONG_HELP,
        run: blk::<S>,
    }]
}

/// The most sectors `blk read` dumps.
const MAX_READ_SECTORS: u64 = 64;
/// Long operations print progress once they have run this long...
pub(crate) const PROGRESS_AFTER_NS: u64 = 1_000_000_000;
/// ...and then at most this often.
const PROGRESS_EVERY_NS: u64 = 250_000_000;

fn blk<S: BlkHost>(s: &mut S, a: &mut Args, o: &mut dyn Write) -> CmdResult {
    match a.opt_str() {
        None => list(s, o),
        Some("info") => info(s, a, o),
        Some("read") => read(s, a, o),
        Some("write") => write(s, a, o),
        Some("verify") => verify(s, a, o),
        Some("sum") => sum(s, a, o),
        Some("rescan") => rescan(s, a, o),
        Some("bench") => run_bench(s, a, o),
        Some(w) => Err(bad_arg!("unknown subcommand '{}'", w)),
    }
}

fn device<S: BlkHost>(s: &mut S, name: &str) -> Result<SharedDevice, CmdError> {
    s.blk()
        .get(name)
        .ok_or_else(|| fail!("no such block device '{}'", name))
}

/// A device error as a monitor message naming the device.
fn io(name: &str, e: BlkError) -> CmdError {
    match e {
        BlkError::ReadOnly => fail!("{} is read-only", name),
        e => fail!("{}: {}", name, e),
    }
}

/// Checks `lba .. lba+count` against a device of `capacity` sectors.
fn check_range(name: &str, lba: u64, count: u64, capacity: u64) -> CmdResult {
    if count == 0 {
        return Err(fail!("count must be at least 1"));
    }
    if lba >= capacity {
        return Err(fail!(
            "LBA {} out of range ({} has {} sectors)",
            lba,
            name,
            capacity
        ));
    }
    match lba.checked_add(count) {
        Some(end) if end <= capacity => Ok(()),
        _ => Err(fail!(
            "sectors {}..{} out of range ({} has {} sectors)",
            lba,
            lba.saturating_add(count),
            name,
            capacity
        )),
    }
}

/// `DEV LBA COUNT`: the device, its sector size, and the checked range.
fn dev_range<S: BlkHost>(
    s: &mut S,
    a: &mut Args,
) -> Result<(String, SharedDevice, u64, u64, u64), CmdError> {
    let name = a.str()?;
    let lba = a.u64("LBA")?;
    let count = a.u64("COUNT")?;
    let dev = device(s, name)?;
    let (ss, capacity) = {
        let d = borrow(&dev).map_err(|e| io(name, e))?;
        (d.sector_size() as u64, d.capacity())
    };
    check_range(name, lba, count, capacity)?;
    Ok((String::from(name), dev, ss, lba, count))
}

fn pattern(a: &mut Args) -> Result<Pattern, CmdError> {
    let w = a.str()?;
    Pattern::parse(w).map_err(|e| bad_arg!("PATTERN '{}': {}", w, e))
}

/// Carriage-return progress for long runs, written to the command's sink.
pub(crate) struct Progress<'a> {
    clock: &'a dyn Clock,
    start: u64,
    last: u64,
    after_ns: u64,
    shown: bool,
}

impl<'a> Progress<'a> {
    pub(crate) fn new(clock: &'a dyn Clock, after_ns: u64) -> Self {
        let now = clock.now_ns();
        Progress {
            clock,
            start: now,
            last: now,
            after_ns,
            shown: false,
        }
    }

    /// True (and remembers it) when a progress line is due.
    fn due(&mut self) -> bool {
        let now = self.clock.now_ns();
        if now.saturating_sub(self.start) < self.after_ns
            || (self.shown && now.saturating_sub(self.last) < PROGRESS_EVERY_NS)
        {
            return false;
        }
        self.last = now;
        self.shown = true;
        true
    }

    fn sectors(&mut self, o: &mut dyn Write, what: &str, done: u64, total: u64) {
        if self.due() {
            out!(
                o,
                "\r{}: {}/{} sectors ({}%)",
                what,
                done,
                total,
                done * 100 / total.max(1)
            );
        }
    }

    /// `what: done/total bytes (n%)`, when due.
    pub(crate) fn bytes(&mut self, o: &mut dyn Write, what: &str, done: u64, total: u64) {
        if self.due() {
            out!(
                o,
                "\r{}: {}/{} bytes ({}%)",
                what,
                done,
                total,
                done * 100 / total.max(1)
            );
        }
    }

    /// Ends the progress line, if one was printed.
    pub(crate) fn end(&self, o: &mut dyn Write) {
        if self.shown {
            outln!(o);
        }
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{:02x}", b);
        s
    })
}

/// A byte count as an exact figure: `32 MiB`, `96 KiB`, `1536 B`.
fn exact_size(bytes: u64) -> String {
    if bytes != 0 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else if bytes != 0 && bytes.is_multiple_of(1024) {
        format!("{} KiB", bytes >> 10)
    } else {
        format!("{} B", bytes)
    }
}

fn list<S: BlkHost>(s: &mut S, o: &mut dyn Write) -> CmdResult {
    let reg = s.blk();
    if reg.entries().is_empty() {
        outln!(o, "no block devices");
        return Ok(());
    }
    outln!(
        o,
        "{:<12} {:<11} {:>12} {:>15} {:<10} {:>6} {:<4} DETAILS",
        "NAME",
        "DRIVER",
        "SECTORS",
        "BYTES",
        "SIZE",
        "SECTOR",
        "MODE"
    );
    for e in reg.entries() {
        let d = match borrow(&e.dev) {
            Ok(d) => d,
            Err(_) => {
                outln!(o, "{:<12} (busy)", e.name);
                continue;
            }
        };
        let info = d.info();
        let (ss, sectors) = (d.sector_size() as u64, d.capacity());
        let bytes = sectors.saturating_mul(ss);
        let mut details = String::new();
        if let Some((_, p)) = &e.partition {
            let _ = write!(details, "start {}, ", p.first_lba);
            match p.type_name() {
                Some(t) => details.push_str(t),
                None => {
                    let _ = write!(details, "type {}", p.type_guid);
                }
            }
            let _ = write!(details, ", \"{}\"", p.name);
        } else {
            if let Some(m) = &info.model {
                let _ = write!(details, "model \"{}\" ", m);
            }
            if let Some(sn) = &info.serial {
                let _ = write!(details, "serial \"{}\" ", sn);
            }
            match &e.table {
                TableState::NotScanned => {}
                TableState::Absent(_) => details.push_str("no GPT"),
                TableState::Gpt(g) => {
                    let _ = write!(details, "GPT, {} partitions", g.partitions.len());
                    if g.primary_error.is_some() {
                        details.push_str(" (from backup header: primary corrupt)");
                    }
                }
                TableState::Corrupt(_) => details.push_str("GPT corrupt (see blk info)"),
            }
        }
        let row = format!(
            "{:<12} {:<11} {:>12} {:>15} {:<10} {:>6} {:<4} {}",
            e.name,
            info.driver,
            sectors,
            bytes,
            format!("{}", HumanSize(bytes)),
            ss,
            if d.read_only() { "RO" } else { "RW" },
            details
        );
        outln!(o, "{}", row.trim_end());
    }
    Ok(())
}

fn info<S: BlkHost>(s: &mut S, a: &mut Args, o: &mut dyn Write) -> CmdResult {
    let name = a.str()?;
    a.finish()?;
    let reg = s.blk();
    let e = reg
        .entry(name)
        .ok_or_else(|| fail!("no such block device '{}'", name))?;
    {
        let d = borrow(&e.dev).map_err(|err| io(name, err))?;
        let info = d.info();
        let bytes = d.capacity().saturating_mul(d.sector_size() as u64);
        outln!(
            o,
            "{}: {}, {}",
            name,
            info.driver,
            if d.read_only() {
                "read-only"
            } else {
                "read-write"
            }
        );
        outln!(
            o,
            "  {} sectors of {} bytes, {} bytes ({})",
            d.capacity(),
            d.sector_size(),
            bytes,
            HumanSize(bytes)
        );
        if let Some(m) = &info.model {
            outln!(o, "  model: {}", m);
        }
        if let Some(sn) = &info.serial {
            outln!(o, "  serial: {}", sn);
        }
    }
    if let Some((parent, p)) = &e.partition {
        outln!(
            o,
            "  partition {} of {}: LBA {}..={} ({} sectors)",
            p.number,
            parent,
            p.first_lba,
            p.last_lba,
            p.sectors()
        );
        outln!(
            o,
            "  type: {} ({})",
            p.type_guid,
            p.type_name().unwrap_or("unknown")
        );
        outln!(o, "  unique GUID: {}", p.unique_guid);
        outln!(
            o,
            "  name: \"{}\", attributes {:#018x}",
            p.name,
            p.attributes
        );
        return Ok(());
    }
    match &e.table {
        TableState::NotScanned => outln!(o, "  partition table: not scanned (blk rescan {})", name),
        TableState::Absent(err) => outln!(o, "  partition table: none ({})", err),
        TableState::Corrupt(err) => outln!(o, "  partition table: corrupt GPT: {}", err),
        TableState::Gpt(g) => {
            let h = &g.header;
            outln!(
                o,
                "  GPT: disk {}, header at LBA {}, backup at LBA {}",
                h.disk_guid,
                h.my_lba,
                h.alternate_lba
            );
            outln!(
                o,
                "  usable LBA {}..={}, {} entries of {} bytes at LBA {}",
                h.first_usable,
                h.last_usable,
                h.num_entries,
                h.entry_size,
                h.entries_lba
            );
            if let Some(err) = &g.primary_error {
                outln!(
                    o,
                    "  warning: primary GPT unusable, using the backup: {}",
                    err
                );
            }
            for (n, why) in &g.skipped {
                outln!(o, "  warning: entry {} not exposed: {}", n, why);
            }
            for p in reg.partitions_of(name) {
                if let Some((_, gp)) = &p.partition {
                    outln!(
                        o,
                        "  {:<12} {:>10} {:>10} {:<20} {} \"{}\"",
                        p.name,
                        gp.first_lba,
                        gp.last_lba,
                        gp.type_name().unwrap_or("unknown type"),
                        gp.unique_guid,
                        gp.name
                    );
                }
            }
        }
    }
    Ok(())
}

fn read<S: BlkHost>(s: &mut S, a: &mut Args, o: &mut dyn Write) -> CmdResult {
    let name = a.str()?;
    let lba = a.u64("LBA")?;
    let count = a.opt_u64("COUNT")?.unwrap_or(1);
    a.finish()?;
    let dev = device(s, name)?;
    let mut d = borrow(&dev).map_err(|e| io(name, e))?;
    check_range(name, lba, count, d.capacity())?;
    if count > MAX_READ_SECTORS {
        return Err(fail!(
            "count at most {} sectors for read (use 'blk sum' for larger ranges)",
            MAX_READ_SECTORS
        ));
    }
    let ss = d.sector_size() as u64;
    let len = count.saturating_mul(ss) as usize;
    let mut buf = Vec::new();
    buf.try_reserve_exact(len)
        .map_err(|_| io(name, BlkError::NoMemory))?;
    buf.resize(len, 0);
    d.read(lba, &mut buf).map_err(|e| io(name, e))?;
    outln!(
        o,
        "{} sectors {}..{} ({} bytes at byte offset {:#x})",
        name,
        lba,
        lba + count,
        len,
        lba.saturating_mul(ss)
    );
    hexdump(o, lba.saturating_mul(ss), &buf, 1);
    Ok(())
}

fn write<S: BlkHost>(s: &mut S, a: &mut Args, o: &mut dyn Write) -> CmdResult {
    let (name, dev, ss, lba, count) = dev_range(s, a)?;
    let p = pattern(a)?;
    a.finish()?;
    let mut d = borrow(&dev).map_err(|e| io(&name, e))?;
    if d.read_only() {
        return Err(io(&name, BlkError::ReadOnly));
    }
    let mut progress = Progress::new(s.clock(), PROGRESS_AFTER_NS);
    let done = range::write_pattern(&mut **d, lba, count, &p, &mut |n| {
        progress.sectors(o, "write", n, count)
    });
    progress.end(o);
    done.map_err(|e| io(&name, e))?;
    outln!(
        o,
        "wrote {} to {} sectors {}..{} ({} bytes)",
        p,
        name,
        lba,
        lba + count,
        count.saturating_mul(ss)
    );
    Ok(())
}

fn verify<S: BlkHost>(s: &mut S, a: &mut Args, o: &mut dyn Write) -> CmdResult {
    let (name, dev, ss, lba, count) = dev_range(s, a)?;
    let p = pattern(a)?;
    a.finish()?;
    let mut d = borrow(&dev).map_err(|e| io(&name, e))?;
    let mut progress = Progress::new(s.clock(), PROGRESS_AFTER_NS);
    let report = range::verify_pattern(&mut **d, lba, count, &p, &mut |n| {
        progress.sectors(o, "verify", n, count)
    });
    progress.end(o);
    let report = report.map_err(|e| io(&name, e))?;
    match report.first {
        None => {
            outln!(o, "verify ok: {} sectors {}..{} ({} bytes) match {}", name, lba, lba + count, report.bytes, p);
            Ok(())
        }
        Some(m) => Err(fail!(
            "verify {} sectors {}..{} against {}: {} of {} bytes differ, first at byte offset {} (LBA {} + {}): expected {:#04x}, got {:#04x}",
            name,
            lba,
            lba + count,
            p,
            report.mismatches,
            report.bytes,
            m.offset,
            m.offset / ss,
            m.offset % ss,
            m.expected,
            m.got
        )),
    }
}

fn sum<S: BlkHost>(s: &mut S, a: &mut Args, o: &mut dyn Write) -> CmdResult {
    let (name, dev, ss, lba, count) = dev_range(s, a)?;
    a.finish()?;
    let mut d = borrow(&dev).map_err(|e| io(&name, e))?;
    let mut progress = Progress::new(s.clock(), PROGRESS_AFTER_NS);
    let digest = range::sha256(&mut **d, lba, count, &mut |n| {
        progress.sectors(o, "sum", n, count)
    });
    progress.end(o);
    let digest = digest.map_err(|e| io(&name, e))?;
    outln!(
        o,
        "{} sectors {}..{} ({} bytes at byte offset {})",
        name,
        lba,
        lba + count,
        count.saturating_mul(ss),
        lba.saturating_mul(ss)
    );
    outln!(o, "sha256 {}", hex(&digest));
    Ok(())
}

fn rescan<S: BlkHost>(s: &mut S, a: &mut Args, o: &mut dyn Write) -> CmdResult {
    let name = a.str()?;
    a.finish()?;
    match s.blk().scan_partitions(name) {
        Ok(r) => {
            if let Some(e) = &r.primary_error {
                outln!(
                    o,
                    "warning: {}: primary GPT unusable, using the backup: {}",
                    name,
                    e
                );
            }
            for (n, why) in &r.skipped {
                outln!(o, "warning: {}: entry {} not exposed: {}", name, n, why);
            }
            outln!(
                o,
                "{}: GPT, {} partitions: {}",
                name,
                r.partitions.len(),
                r.partitions.join(" ")
            );
            Ok(())
        }
        Err(ScanError::Gpt(e)) if e.is_absent() => {
            outln!(o, "{}: no GPT ({})", name, e);
            Ok(())
        }
        Err(e @ (ScanError::NoSuchDevice(_) | ScanError::IsPartition(_))) => Err(fail!("{}", e)),
        Err(e) => Err(fail!("{}: {}", name, e)),
    }
}

fn run_bench<S: BlkHost>(s: &mut S, a: &mut Args, o: &mut dyn Write) -> CmdResult {
    let force = a.flag("-f");
    let mut words = a.rest().into_iter();
    let (mut name, mut depth) = (None, None);
    let (mut access, mut dir, mut size) = (Access::Seq, Dir::Read, None);
    while let Some(w) = words.next() {
        match w {
            "-q" => depth = Some(queue_depth(words.next())?),
            _ if name.is_none() => name = Some(w),
            "seq" => access = Access::Seq,
            "rand" => access = Access::Rand,
            "read" => dir = Dir::Read,
            "write" => dir = Dir::Write,
            _ if size.is_none() => {
                size = Some(parse::size(w).map_err(|e| bad_arg!("SIZE '{}': {}", w, e))?)
            }
            _ => return Err(bad_arg!("unexpected argument '{}'", w)),
        }
    }
    let name = name.ok_or(CmdError::Usage)?;
    if depth.is_some() && dir == Dir::Write {
        return Err(bad_arg!("-q is for reads only: writes run one at a time"));
    }
    let depth = depth.unwrap_or(1);
    let (dev, parent) = {
        let e = s
            .blk()
            .entry(name)
            .ok_or_else(|| fail!("no such block device '{}'", name))?;
        (e.dev.clone(), e.partition.as_ref().map(|(p, _)| p.clone()))
    };
    let mut d = borrow(&dev).map_err(|e| io(name, e))?;
    let (ss, capacity) = (d.sector_size() as u64, d.capacity());
    if dir == Dir::Write {
        if d.read_only() {
            return Err(io(name, BlkError::ReadOnly));
        }
        if !force {
            if let Some(p) = parent {
                return Err(fail!(
                    "{} is a partition of {}: a write bench destroys its data; add -f to go ahead",
                    name,
                    p
                ));
            }
            // Look at the disk itself, not the last scan: the table may have been written since.
            match gpt::read(&mut **d) {
                Err(e) if e.is_absent() => {}
                _ => {
                    return Err(fail!(
                        "{} has a GPT: a write bench destroys it; add -f to go ahead",
                        name
                    ))
                }
            }
        }
    }
    let device_bytes = capacity.saturating_mul(ss);
    let request = match size {
        Some(r) => r,
        None if access == Access::Seq => (1u64 << 20).min(device_bytes),
        None => 4096u64.max(ss).min(device_bytes),
    };
    if ss == 0 || request == 0 || !request.is_multiple_of(ss) {
        return Err(fail!(
            "request size must be a non-zero multiple of the {}-byte sector",
            ss
        ));
    }
    if request > bench::MAX_REQUEST {
        return Err(fail!(
            "request size at most {}",
            exact_size(bench::MAX_REQUEST)
        ));
    }
    if request > device_bytes {
        return Err(fail!(
            "request size {} is larger than {} ({} bytes)",
            request,
            name,
            device_bytes
        ));
    }
    let spec = bench::Spec {
        access,
        dir,
        request,
        max_bytes: bench::MAX_BYTES,
        max_ns: bench::MAX_NS,
        depth,
    };
    let keeps = d.max_depth().max(1);
    if depth > keeps {
        outln!(o, "note: {} keeps at most {} in flight", name, keeps);
    }
    let clock = s.clock();
    let mut progress = Progress::new(clock, PROGRESS_EVERY_NS);
    let now = || clock.now_ns();
    let result = bench::run(&mut **d, &spec, &now, &mut |r| {
        if progress.due() {
            out!(
                o,
                "\rbench {}: {}, {}.{} MB/s",
                name,
                exact_size(r.bytes),
                r.mb_per_s_x10() / 10,
                r.mb_per_s_x10() % 10
            );
        }
    });
    progress.end(o);
    let r = result.map_err(|e| io(name, e))?;
    // The depth shows only above 1, so depth-1 lines read as they always did.
    let qd = if depth > 1 {
        format!(" qd{}", depth)
    } else {
        String::new()
    };
    outln!(
        o,
        "bench {} {} {} {}{}: {} in {} ms: {}.{} MB/s, {} IOPS, mean {} us",
        name,
        access.name(),
        dir.name(),
        request,
        qd,
        exact_size(r.bytes),
        r.elapsed_ns / 1_000_000,
        r.mb_per_s_x10() / 10,
        r.mb_per_s_x10() % 10,
        r.iops(),
        r.mean_latency_us()
    );
    Ok(())
}

/// The word after `-q`: a queue depth in `1..=bench::MAX_DEPTH`.
fn queue_depth(w: Option<&str>) -> Result<usize, CmdError> {
    let w = w.ok_or_else(|| bad_arg!("-q needs a queue depth (1..={})", bench::MAX_DEPTH))?;
    match parse::number(w) {
        Ok(n) if (1..=bench::MAX_DEPTH as u64).contains(&n) => Ok(n as usize),
        _ => Err(bad_arg!(
            "-q '{}': queue depth must be 1..={}",
            w,
            bench::MAX_DEPTH
        )),
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use alloc::boxed::Box;
    use capmon_block::gpt::build;
    use capmon_block::gpt::Guid;
    use capmon_block::{Kind, RamDisk};
    use capmon_shell::parse::words;
    use core::cell::Cell;

    /// A clock that advances `step` ns each time it is read.
    struct StepClock {
        t: Cell<u64>,
        step: u64,
    }

    impl Clock for StepClock {
        fn now_ns(&self) -> u64 {
            self.t.set(self.t.get() + self.step);
            self.t.get()
        }
    }

    struct Host {
        reg: Registry,
        clock: StepClock,
    }

    impl BlkHost for Host {
        fn blk(&mut self) -> &mut Registry {
            &mut self.reg
        }
        fn clock(&self) -> &dyn Clock {
            &self.clock
        }
    }

    /// vda: 256 KiB with a GPT (vda1 = EFI "boot" at 40..=59, vda2 = capmon "data" at 60..=99);
    /// ram0: 1 MiB blank; ram1: 64 KiB read-only.
    fn host() -> Host {
        let mut reg = Registry::new();
        let img = build::sample_two_partitions(512, 512, Guid([7; 16]));
        let vda = reg.add(
            Kind::Virtio,
            Box::new(RamDisk::from_image(img, 512).unwrap()),
        );
        reg.scan_partitions(&vda).unwrap();
        reg.add(Kind::Ram, Box::new(RamDisk::new(1 << 20, 512).unwrap()));
        let mut ro = RamDisk::new(64 * 1024, 512).unwrap();
        ro.set_read_only(true);
        reg.add(Kind::Ram, Box::new(ro));
        Host {
            reg,
            clock: StepClock {
                t: Cell::new(0),
                step: 1000,
            },
        }
    }

    fn run(h: &mut Host, line: &str) -> Result<String, CmdError> {
        let cmds = commands::<Host>();
        let mut a = Args::new(words(line));
        let mut out = String::new();
        (cmds[0].run)(h, &mut a, &mut out).map(|_| out)
    }

    fn failed(r: Result<String, CmdError>) -> String {
        match r {
            Err(CmdError::Failed(m)) | Err(CmdError::BadArg(m)) => m,
            other => panic!("expected an error, got {:?}", other),
        }
    }

    #[test]
    fn lists_devices_and_partitions() {
        let mut h = host();
        let out = run(&mut h, "").unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].starts_with("NAME"));
        let names: Vec<&str> = lines[1..]
            .iter()
            .map(|l| l.split_whitespace().next().unwrap())
            .collect();
        assert_eq!(names, ["vda", "vda1", "vda2", "ram0", "ram1"]);
        let cols = |l: &str| l.split_whitespace().map(String::from).collect::<Vec<_>>();
        assert_eq!(
            cols(lines[1])[..5],
            ["vda", "ram", "512", "262144", "256.0"]
        );
        assert!(lines[1].ends_with("RW   GPT, 2 partitions"), "{}", lines[1]);
        assert_eq!(cols(lines[3])[..4], ["vda2", "gpt-part", "40", "20480"]);
        assert!(
            lines[3].ends_with("start 60, capmon data, \"data\""),
            "{}",
            lines[3]
        );
        assert!(lines[2].contains("start 40, EFI System, \"boot\""));
        assert!(lines[5].ends_with(" RO"), "{}", lines[5]);
        assert!(
            !lines[4].contains("GPT"),
            "ram0 never scanned: {}",
            lines[4]
        );

        let info = run(&mut h, "info vda").unwrap();
        assert!(info.contains(
            "GPT: disk 07070707-0707-0707-0707-070707070707, header at LBA 1, backup at LBA 511"
        ));
        assert!(info.contains("vda2                 60         99 capmon data          02020202-0202-0202-0202-020202020202 \"data\""), "{}", info);
        let info = run(&mut h, "info vda1").unwrap();
        assert!(info.contains("partition 1 of vda: LBA 40..=59 (20 sectors)"));
        assert!(info.contains("type: c12a7328-f81f-11d2-ba4b-00a0c93ec93b (EFI System)"));
        assert!(run(
            &mut Host {
                reg: Registry::new(),
                clock: h.clock
            },
            ""
        )
        .unwrap()
        .contains("no block devices"));
    }

    #[test]
    fn write_read_verify_sum() {
        let mut h = host();
        assert_eq!(
            run(&mut h, "write ram0 2 2 inc").unwrap(),
            "wrote inc to ram0 sectors 2..4 (1024 bytes)\n"
        );
        let out = run(&mut h, "read ram0 2").unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            "ram0 sectors 2..3 (512 bytes at byte offset 0x400)"
        );
        assert!(lines[1].starts_with("0000000000000400: 00 01 02 03"));
        assert_eq!(lines.len(), 1 + 32);
        assert!(run(&mut h, "verify ram0 2 2 inc")
            .unwrap()
            .starts_with("verify ok: ram0 sectors 2..4 (1024 bytes) match inc"));
        // sha256(bytes(range(256)) * 4), computed with python3's hashlib.
        let out = run(&mut h, "sum ram0 2 2").unwrap();
        assert_eq!(
            out,
            "ram0 sectors 2..4 (1024 bytes at byte offset 1024)\n\
             sha256 785b0751fc2c53dc14a4ce3d800e69ef9ce1009eb327ccf458afe09c242c26c9\n"
        );
        run(&mut h, "write ram0 0 8 0xa5").unwrap();
        // sha256(b"\xa5" * 4096)
        assert!(run(&mut h, "sum ram0 0 8")
            .unwrap()
            .contains("sha256 f600eca824e84a43f0691b267bd620e462c50da165c5b80e17aecb7a924f1fa8\n"));
        let m = failed(run(&mut h, "verify ram0 0 9 0xa5"));
        assert_eq!(m, "verify ram0 sectors 0..9 against 0xa5: 512 of 4608 bytes differ, first at byte offset 4096 (LBA 8 + 0): expected 0xa5, got 0x00");
        // Partitions write through to the parent at their offset.
        run(&mut h, "write vda2 0 1 seed:9").unwrap();
        run(&mut h, "verify vda 60 1 seed:9")
            .map(|_| ())
            .unwrap_err();
        assert!(run(&mut h, "verify vda2 0 1 seed:9").is_ok());
    }

    #[test]
    fn bad_input_is_reported() {
        let mut h = host();
        assert_eq!(
            failed(run(&mut h, "read vdz 0")),
            "no such block device 'vdz'"
        );
        assert_eq!(
            failed(run(&mut h, "write ram0 0 0 inc")),
            "count must be at least 1"
        );
        assert_eq!(
            failed(run(&mut h, "read ram0 2048")),
            "LBA 2048 out of range (ram0 has 2048 sectors)"
        );
        assert_eq!(
            failed(run(&mut h, "sum ram0 2000 100")),
            "sectors 2000..2100 out of range (ram0 has 2048 sectors)"
        );
        assert_eq!(
            failed(run(&mut h, "read vda1 20 1")),
            "LBA 20 out of range (vda1 has 20 sectors)"
        );
        assert_eq!(
            failed(run(&mut h, "write ram1 0 1 inc")),
            "ram1 is read-only"
        );
        assert!(failed(run(&mut h, "read ram0 0 65")).starts_with("count at most 64 sectors"));
        assert!(failed(run(&mut h, "write ram0 0 1 zeros"))
            .starts_with("PATTERN 'zeros': unknown pattern"));
        assert!(failed(run(&mut h, "read ram0 x")).starts_with("LBA: not a number"));
        assert_eq!(failed(run(&mut h, "frob")), "unknown subcommand 'frob'");
        assert_eq!(run(&mut h, "read ram0"), Err(CmdError::Usage));
        assert_eq!(
            failed(run(&mut h, "read ram0 0 1 extra")),
            "unexpected argument 'extra'"
        );
        assert_eq!(
            failed(run(&mut h, "sum ram0 0xffffffffffffffff 2")),
            "LBA 18446744073709551615 out of range (ram0 has 2048 sectors)"
        );
        assert_eq!(
            failed(run(&mut h, "rescan vda1")),
            "vda1 is a partition, not a whole device"
        );
        assert_eq!(
            failed(run(&mut h, "rescan vdq")),
            "no such block device 'vdq'"
        );
    }

    #[test]
    fn rescan_reports_backup_use_and_corruption() {
        let mut h = host();
        assert_eq!(
            run(&mut h, "rescan ram0").unwrap(),
            "ram0: no GPT (no protective MBR at LBA 0)\n"
        );
        assert_eq!(
            run(&mut h, "rescan vda").unwrap(),
            "vda: GPT, 2 partitions: vda1 vda2\n"
        );
        // Damage the primary header: the backup is used, and said so.
        run(&mut h, "write vda 1 1 0x00").unwrap();
        let out = run(&mut h, "rescan vda").unwrap();
        assert!(
            out.starts_with(
                "warning: vda: primary GPT unusable, using the backup: no GPT header at LBA 1\n"
            ),
            "{}",
            out
        );
        assert!(out.ends_with("vda: GPT, 2 partitions: vda1 vda2\n"));
        assert!(run(&mut h, "")
            .unwrap()
            .contains("GPT, 2 partitions (from backup header: primary corrupt)"));
        // Damage the backup's entry array too: corrupt, no partitions.
        run(&mut h, "write vda 479 1 0x45").unwrap();
        let m = failed(run(&mut h, "rescan vda"));
        assert!(
            m.starts_with("vda: corrupt GPT: primary and backup GPT both invalid"),
            "{}",
            m
        );
        assert!(failed(run(&mut h, "read vda1 0")).contains("no such block device 'vda1'"));
        assert!(run(&mut h, "")
            .unwrap()
            .contains("GPT corrupt (see blk info)"));
    }

    fn parse_bench(line: &str) -> (String, u64, u64) {
        // bench ram0 seq read 1048576: 1 MiB in 3 ms: 349.5 MB/s, 333 IOPS, mean 1 us
        let (head, rest) = line.split_once(": ").unwrap();
        let (amount, rest) = rest.split_once(" in ").unwrap();
        let ms: u64 = rest.split(' ').next().unwrap().parse().unwrap();
        let iops: u64 = rest
            .split(", ")
            .nth(1)
            .unwrap()
            .trim_end_matches(" IOPS")
            .parse()
            .unwrap();
        let _ = amount;
        (String::from(head), ms, iops)
    }

    /// Checks that the last line of `out` is a result line `HEAD: AMOUNT in ...`; its IOPS.
    fn bench_line(out: &str, head: &str, amount: &str) -> u64 {
        let last = out.lines().last().unwrap_or("");
        assert!(
            last.starts_with(&format!("{}: {} in ", head, amount)),
            "{:?}",
            out
        );
        let (h, _ms, iops) = parse_bench(last);
        assert_eq!(h, head);
        iops
    }

    #[test]
    fn bench_runs_bounded_and_protects_data() {
        let mut h = host();
        let out = run(&mut h, "bench ram0").unwrap();
        assert!(bench_line(&out, "bench ram0 seq read 1048576", "1 MiB") > 0);
        let out = run(&mut h, "bench ram0 rand write 8K").unwrap();
        assert!(
            out.lines()
                .last()
                .unwrap()
                .starts_with("bench ram0 rand write 8192: 32 MiB in "),
            "{}",
            out
        );
        // Writes are refused on a GPT disk, its partitions and read-only devices unless forced.
        assert_eq!(
            failed(run(&mut h, "bench vda seq write")),
            "vda has a GPT: a write bench destroys it; add -f to go ahead"
        );
        assert!(
            failed(run(&mut h, "bench vda1 rand write")).starts_with("vda1 is a partition of vda")
        );
        assert_eq!(
            failed(run(&mut h, "bench ram1 seq write -f")),
            "ram1 is read-only"
        );
        assert!(run(&mut h, "bench vda -f seq write 4K")
            .unwrap()
            .contains("bench vda seq write 4096: 256 KiB in "));
        assert!(run(&mut h, "bench vda seq read")
            .unwrap()
            .contains("bench vda seq read 262144: 256 KiB"));
        assert!(failed(run(&mut h, "bench ram0 seq read 1000"))
            .starts_with("request size must be a non-zero multiple"));
        assert!(failed(run(&mut h, "bench ram0 seq read 2M"))
            .starts_with("request size 2097152 is larger than ram0"));
        assert!(failed(run(&mut h, "bench ram0 seq read 4K 8K")).starts_with("unexpected argument"));
        assert_eq!(
            failed(run(&mut h, "bench nope")),
            "no such block device 'nope'"
        );
    }

    #[test]
    fn bench_queue_depth() {
        let mut h = host();
        let out = run(&mut h, "bench ram0 rand read 4K -q 32").unwrap();
        // A RAM disk reads one request at a time, and the bench says so.
        assert_eq!(
            out.lines().next(),
            Some("note: ram0 keeps at most 1 in flight")
        );
        assert!(bench_line(&out, "bench ram0 rand read 4096 qd32", "32 MiB") > 0);
        assert!(out.contains(" IOPS, mean ") && out.ends_with(" us\n"));
        // Anywhere on the line, on partitions too; depth 1 prints the plain line.
        for (line, head, amount) in [
            (
                "bench -q 4 vda2 rand read 1K",
                "bench vda2 rand read 1024 qd4",
                "32 MiB",
            ),
            (
                "bench vda seq read 4K -q 8",
                "bench vda seq read 4096 qd8",
                "256 KiB",
            ),
            (
                "bench ram0 rand read 4K -q 1",
                "bench ram0 rand read 4096",
                "32 MiB",
            ),
        ] {
            bench_line(&run(&mut h, line).unwrap(), head, amount);
        }
        assert!(!run(&mut h, "bench ram0 rand read -q 1")
            .unwrap()
            .contains("note"));
        for (line, want) in [
            ("bench ram0 -q", "-q needs a queue depth (1..=256)"),
            ("bench ram0 -q 0", "-q '0': queue depth must be 1..=256"),
            (
                "bench ram0 rand read -q 257",
                "-q '257': queue depth must be 1..=256",
            ),
            (
                "bench ram0 -q many",
                "-q 'many': queue depth must be 1..=256",
            ),
            (
                "bench ram0 seq write -q 4 -f",
                "-q is for reads only: writes run one at a time",
            ),
            (
                "bench ram0 -q 1 rand write",
                "-q is for reads only: writes run one at a time",
            ),
        ] {
            assert_eq!(failed(run(&mut h, line)), want, "{}", line);
        }
        assert_eq!(run(&mut h, "bench -q 2"), Err(CmdError::Usage));
    }

    #[test]
    fn long_runs_print_progress_and_stop_on_time() {
        let mut h = host();
        h.clock.step = 200_000_000; // 200 ms per clock read
        let out = run(&mut h, "write ram0 0 2048 seed:1").unwrap();
        assert!(
            out.contains("\rwrite: ") && out.contains("/2048 sectors ("),
            "{:?}",
            out
        );
        assert!(out.ends_with("\nwrote seed:1 to ram0 sectors 0..2048 (1048576 bytes)\n"));
        h.clock.step = 50_000_000;
        let out = run(&mut h, "bench ram0 rand read 4K").unwrap();
        assert!(out.contains("\rbench ram0: "), "{:?}", out);
        let (_, ms, _) = parse_bench(out.lines().last().unwrap());
        assert!(
            (2000..2300).contains(&ms),
            "stopped after about 2 s: {} ms",
            ms
        );
        // Batches: progress after each, and the same time bound.
        let out = run(&mut h, "bench ram0 rand read 4K -q 16").unwrap();
        assert!(out.contains("\rbench ram0: "), "{:?}", out);
        let (head, ms, _) = parse_bench(out.lines().last().unwrap());
        assert_eq!(head, "bench ram0 rand read 4096 qd16");
        assert!((2000..2300).contains(&ms), "{} ms", ms);
    }
}
