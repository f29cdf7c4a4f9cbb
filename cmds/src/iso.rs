//! The `iso` command family: the ISO 9660 volume on a block device (`cd0` by default, else the
//! first device holding one): what it is, its directories, a file's text and SHA-256.
use crate::blk::{hex, BlkHost, Progress, PROGRESS_AFTER_NS};
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use capmon_block::partition::borrow;
use capmon_block::{BlockDevice, SharedDevice};
use capmon_iso9660::{Entry, IsoError, Kind, Volume};
use capmon_shell::out::HumanSize;
use capmon_shell::{bad_arg, fail, out, outln, Args, CmdError, CmdResult, Command};
use core::fmt::Write;
use sha2::{Digest, Sha256};

const USAGE: &str = "iso [ls [-R] [PATH] | cat PATH | sum PATH | bench PATH] [-d DEV]";

const LONG_HELP: &str = "\
iso                 the volume: device, id, size, block size, how names are read, dates
iso ls [-R] [PATH]  a directory (default /), or with -R everything under it as full paths:
                    type (d, - or l), size, recording date, name (a link's target after ->)
iso cat PATH        a file as text (at most 1 MiB; bytes that are not text shown as \\xNN)
iso sum PATH        SHA-256 of a file: prints `sha256 <hex>`
iso bench PATH      reads a file once from the device, 256 KiB a request, nothing cached:
                    bytes, microseconds, MB/s (make bench-iso runs it against Linux)
-d DEV              the device holding the volume (default cd0, else the first device
                    that holds an ISO 9660 volume)";

pub fn commands<S: BlkHost>() -> Vec<Command<S>> {
    vec![Command {
        name: "iso",
        group: "storage",
        subcommands: &["ls", "cat", "sum", "bench"],
        usage: USAGE,
        help: "ISO 9660 volumes: info, ls, cat, sha256",
        long_help: LONG_HELP,
        run: iso::<S>,
    }]
}

/// The most `iso cat` prints.
const CAT_MAX: u64 = 1 << 20;
/// How much of a file one read asks for.
const CHUNK: usize = 256 << 10;

fn iso<S: BlkHost>(s: &mut S, a: &mut Args, o: &mut dyn Write) -> CmdResult {
    let recursive = a.flag("-R");
    let mut dev_name: Option<&str> = None;
    let mut words = Vec::new();
    let mut rest = a.rest().into_iter();
    while let Some(w) = rest.next() {
        if w == "-d" {
            dev_name = Some(
                rest.next()
                    .ok_or_else(|| bad_arg!("-d needs a device name"))?,
            );
        } else {
            words.push(w);
        }
    }
    let mut w = words.into_iter();
    let sub = w.next();
    let path = w.next();
    if w.next().is_some() || (recursive && sub != Some("ls")) {
        return Err(CmdError::Usage);
    }
    let (name, dev) = device(s, dev_name)?;
    let mut d = borrow(&dev).map_err(|e| fail!("{}: {}", name, e))?;
    let d: &mut dyn BlockDevice = &mut **d;
    let v = Volume::open(d).map_err(|e| fail!("{}: {}", name, e))?;
    let io = |e: IsoError| fail!("{}: {}", name, e);
    match (sub, path) {
        (None, None) => {
            info(&name, d, &v, o);
            Ok(())
        }
        (Some("ls"), p) => ls(d, &v, p.unwrap_or("/"), recursive, o).map_err(io),
        (Some("cat"), Some(p)) => cat(d, &v, p, o, &io),
        (Some("sum"), Some(p)) => sum(s.clock(), d, &v, p, o, &io),
        (Some("bench"), Some(p)) => bench(s.clock(), d, &v, p, o, &io),
        (Some("cat" | "sum" | "bench"), None) | (None, Some(_)) => Err(CmdError::Usage),
        (Some(w), _) => Err(bad_arg!("unknown subcommand '{}'", w)),
    }
}

/// The device `-d` names, else `cd0`, else the first whole device that holds a volume.
fn device<S: BlkHost>(s: &mut S, name: Option<&str>) -> Result<(String, SharedDevice), CmdError> {
    let reg = s.blk();
    if let Some(n) = name {
        let dev = reg
            .get(n)
            .ok_or_else(|| fail!("no such block device '{}'", n))?;
        return Ok((String::from(n), dev));
    }
    if let Some(dev) = reg.get("cd0") {
        return Ok((String::from("cd0"), dev));
    }
    for e in reg.entries().iter().filter(|e| !e.is_partition()) {
        let Ok(mut d) = borrow(&e.dev) else { continue };
        if Volume::open(&mut **d).is_ok() {
            return Ok((e.name.clone(), e.dev.clone()));
        }
    }
    Err(fail!(
        "no ISO 9660 volume on any block device (there is no cd0; name one with -d DEV)"
    ))
}

fn info(name: &str, d: &mut dyn BlockDevice, v: &Volume, o: &mut dyn Write) {
    let field = |s: &str| {
        if s.is_empty() {
            String::from("-")
        } else {
            String::from(s)
        }
    };
    outln!(
        o,
        "device       {} ({}-byte sectors)",
        name,
        d.sector_size()
    );
    outln!(o, "volume       {}", field(&v.volume_id));
    outln!(
        o,
        "size         {} bytes ({}), {} blocks of {}",
        v.bytes(),
        HumanSize(v.bytes()),
        v.blocks,
        v.block
    );
    let also = if v.has_joliet && v.names != capmon_iso9660::Names::Joliet {
        " (a Joliet tree too)"
    } else {
        ""
    };
    outln!(o, "names        {}{}", v.names, also);
    outln!(o, "system       {}", field(&v.system_id));
    outln!(o, "publisher    {}", field(&v.publisher));
    outln!(o, "application  {}", field(&v.application));
    outln!(o, "created      {}", v.created.as_deref().unwrap_or("-"));
}

/// One listing line: type, size, date, name (and a link's target).
fn line(o: &mut dyn Write, e: &Entry, name: &str) {
    let k = match e.kind {
        Kind::Dir => 'd',
        Kind::File => '-',
        Kind::Symlink => 'l',
    };
    out!(
        o,
        "{} {:>12}  {}  {}",
        k,
        e.size,
        e.recorded.as_deref().unwrap_or("-------------------"),
        name
    );
    if let Some(t) = &e.target {
        out!(o, " -> {}", t);
    }
    outln!(o);
}

fn ls(
    d: &mut dyn BlockDevice,
    v: &Volume,
    path: &str,
    recursive: bool,
    o: &mut dyn Write,
) -> Result<(), IsoError> {
    let e = v.lookup(d, path)?;
    if e.kind != Kind::Dir {
        line(o, &e, path);
        return Ok(());
    }
    let base = path.trim_end_matches('/');
    let mut n = 0u64;
    if recursive {
        // Everything under `path`: a walk from the root, kept to the subtree.
        let prefix = if base.is_empty() {
            String::new()
        } else {
            format!("{}/", absolute(base))
        };
        v.walk(d, &mut |p, e| {
            if p.starts_with(&prefix) {
                line(o, e, p);
                n += 1;
            }
            true
        })?;
    } else {
        for c in v.list(d, &e, if base.is_empty() { "/" } else { base })? {
            line(o, &c, &c.name);
            n += 1;
        }
    }
    outln!(o, "{} entr{}", n, if n == 1 { "y" } else { "ies" });
    Ok(())
}

fn absolute(p: &str) -> String {
    if p.starts_with('/') {
        String::from(p)
    } else {
        format!("/{}", p)
    }
}

/// Reads file `e` from start to end, at most CHUNK a request, handing each piece to `f`;
/// progress after a second, labelled `what`. The bytes read and the microseconds it took.
#[allow(clippy::too_many_arguments)]
fn read_through(
    clock: &dyn capmon_hal::Clock,
    d: &mut dyn BlockDevice,
    v: &Volume,
    e: &Entry,
    o: &mut dyn Write,
    what: &str,
    io: IoErr,
    f: &mut dyn FnMut(&[u8]),
) -> Result<(u64, u64), CmdError> {
    let len = (e.size as usize).clamp(1, CHUNK);
    let mut buf = Vec::new();
    buf.try_reserve_exact(len)
        .map_err(|_| fail!("out of memory for a {} KiB buffer", CHUNK >> 10))?;
    buf.resize(len, 0);
    let mut progress = Progress::new(clock, PROGRESS_AFTER_NS);
    let t0 = clock.now_ns();
    let mut off = 0u64;
    while off < e.size {
        let n = match v.read(d, e, off, &mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) => {
                progress.end(o);
                return Err(io(err));
            }
        };
        f(&buf[..n]);
        off += n as u64;
        progress.bytes(o, what, off, e.size);
    }
    let us = (clock.now_ns().saturating_sub(t0) / 1000).max(1);
    progress.end(o);
    Ok((off, us))
}

/// `iso bench`: one sequential read of the file, timed.
fn bench(
    clock: &dyn capmon_hal::Clock,
    d: &mut dyn BlockDevice,
    v: &Volume,
    path: &str,
    o: &mut dyn Write,
    io: IoErr,
) -> CmdResult {
    let e = file(d, v, path).map_err(io)?;
    let (off, us) = read_through(clock, d, v, &e, o, "bench", io, &mut |_| {})?;
    outln!(
        o,
        "iso bench {}: {} bytes in {} us: {}.{:03} MB/s",
        absolute(path),
        off,
        us,
        off / us,
        off % us * 1000 / us
    );
    Ok(())
}

/// The file at `path`, named by its whole path (the name read errors report).
fn file(d: &mut dyn BlockDevice, v: &Volume, path: &str) -> Result<Entry, IsoError> {
    let mut e = v.lookup(d, path)?;
    if e.kind == Kind::Dir {
        return Err(IsoError::IsADirectory(absolute(path)));
    }
    e.name = absolute(path);
    Ok(e)
}

type IoErr<'a> = &'a dyn Fn(IsoError) -> CmdError;

fn cat(d: &mut dyn BlockDevice, v: &Volume, path: &str, o: &mut dyn Write, io: IoErr) -> CmdResult {
    let e = file(d, v, path).map_err(io)?;
    if e.size > CAT_MAX {
        return Err(fail!(
            "{} is {} bytes; iso cat shows at most {} (iso sum reads any size)",
            absolute(path),
            e.size,
            CAT_MAX
        ));
    }
    let mut buf = vec![0u8; (e.size as usize).min(CHUNK)];
    let mut off = 0u64;
    let mut last = b'\n';
    while off < e.size {
        let n = v.read(d, &e, off, &mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        for &b in &buf[..n] {
            match b {
                b'\n' | b'\t' | 0x20..=0x7e => out!(o, "{}", b as char),
                _ => out!(o, "\\x{:02x}", b),
            }
            last = b;
        }
        off += n as u64;
    }
    if last != b'\n' {
        outln!(o);
    }
    Ok(())
}

fn sum(
    clock: &dyn capmon_hal::Clock,
    d: &mut dyn BlockDevice,
    v: &Volume,
    path: &str,
    o: &mut dyn Write,
    io: IoErr,
) -> CmdResult {
    let e = file(d, v, path).map_err(io)?;
    let mut h = Sha256::new();
    let (off, us) = read_through(clock, d, v, &e, o, "sum", io, &mut |b| h.update(b))?;
    outln!(
        o,
        "{}: {} bytes in {} us ({}.{:03} MB/s)",
        absolute(path),
        off,
        us,
        off / us,
        off % us * 1000 / us
    );
    outln!(o, "sha256 {}", hex(&h.finalize()));
    Ok(())
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use alloc::boxed::Box;
    use alloc::string::ToString;
    use capmon_block::{Kind as DevKind, RamDisk, Registry};
    use capmon_hal::Clock;
    use capmon_shell::parse::words;
    use core::cell::Cell;
    use std::process::Command as Proc;

    struct StepClock(Cell<u64>);

    impl Clock for StepClock {
        fn now_ns(&self) -> u64 {
            self.0.set(self.0.get() + 1000);
            self.0.get()
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

    /// An image made by xorriso of: hello.txt, boot/bins/{a,b} (200 000 and 3 bytes), a link.
    fn image() -> (Vec<u8>, Vec<u8>) {
        static N: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("capmon-iso-cmd-{}-{}", std::process::id(), n));
        let _ = std::fs::remove_dir_all(&dir);
        let tree = dir.join("tree");
        std::fs::create_dir_all(tree.join("boot/bins")).unwrap();
        std::fs::write(tree.join("hello.txt"), "hello, iso\ttab\x01\n").unwrap();
        let big: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(tree.join("boot/bins/a"), &big).unwrap();
        std::fs::write(tree.join("boot/bins/b"), "end").unwrap();
        std::os::unix::fs::symlink("boot/bins/a", tree.join("link")).unwrap();
        let out = dir.join("t.iso");
        let st = Proc::new("xorriso")
            .args([
                "-as", "mkisofs", "-quiet", "-R", "-J", "-V", "CMDTEST", "-o",
            ])
            .arg(&out)
            .arg(&tree)
            .status()
            .unwrap();
        assert!(st.success());
        let img = std::fs::read(&out).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        (img, big)
    }

    fn host(img: &[u8], cd: bool) -> Host {
        let mut reg = Registry::new();
        reg.add(DevKind::Ram, Box::new(RamDisk::new(1 << 20, 512).unwrap()));
        let (kind, ss) = if cd {
            (DevKind::Cdrom, 2048)
        } else {
            (DevKind::Virtio, 512)
        };
        reg.add(
            kind,
            Box::new(RamDisk::from_image(img.to_vec(), ss).unwrap()),
        );
        Host {
            reg,
            clock: StepClock(Cell::new(0)),
        }
    }

    #[test]
    fn info_ls_cat_and_sum_on_a_cd_and_on_a_disk_holding_the_image() {
        let (img, big) = image();
        for (cd, dev) in [(true, "cd0"), (false, "vda")] {
            let mut h = host(&img, cd);
            let info = run(&mut h, "").unwrap();
            assert!(
                info.starts_with(&format!("device       {} (", dev)),
                "{}",
                info
            );
            assert!(info.contains("volume       CMDTEST\n"), "{}", info);
            assert!(
                info.contains(&format!("size         {} bytes", img.len())),
                "{}",
                info
            );
            assert!(
                info.contains("names        Rock Ridge (a Joliet tree too)\n"),
                "{}",
                info
            );

            let ls = run(&mut h, "ls").unwrap();
            let names: Vec<&str> = ls.lines().filter_map(|l| l.split("  ").last()).collect();
            assert_eq!(
                names,
                ["boot", "hello.txt", "link -> boot/bins/a", "3 entries"],
                "{}",
                ls
            );
            assert!(ls.lines().next().unwrap().starts_with("d "));
            let r = run(&mut h, &format!("ls -R /boot -d {}", dev)).unwrap();
            let paths: Vec<&str> = r.lines().filter_map(|l| l.split("  ").last()).collect();
            assert_eq!(
                paths,
                ["/boot/bins", "/boot/bins/a", "/boot/bins/b", "3 entries"]
            );
            assert!(r.contains(&format!("- {:>12}  ", 200_000)));

            assert_eq!(
                run(&mut h, "cat hello.txt").unwrap(),
                "hello, iso\ttab\\x01\n"
            );
            assert_eq!(run(&mut h, "cat /boot/bins/b").unwrap(), "end\n");
            let sum = run(&mut h, "sum boot/bins/a").unwrap();
            let want = Sha256::digest(&big)
                .iter()
                .map(|b| format!("{:02x}", b))
                .collect::<String>();
            assert!(sum.ends_with(&format!("sha256 {}\n", want)), "{}", sum);
            assert!(sum.starts_with("/boot/bins/a: 200000 bytes in "), "{}", sum);
            let b = run(&mut h, "bench /boot/bins/a").unwrap();
            assert!(
                b.starts_with("iso bench /boot/bins/a: 200000 bytes in "),
                "{}",
                b
            );
            assert!(matches!(run(&mut h, "bench"), Err(CmdError::Usage)));

            assert!(failed(run(&mut h, "cat boot")).contains("/boot: is a directory"));
            assert!(failed(run(&mut h, "sum nope")).contains("/nope: not found"));
            assert!(failed(run(&mut h, "ls ../x")).contains("bad path"));
            assert!(failed(run(&mut h, "ls -d ram0")).contains("ram0: not an ISO 9660 volume"));
            assert!(failed(run(&mut h, "ls -d nope")).contains("no such block device 'nope'"));
            assert!(failed(run(&mut h, "frob x")).contains("unknown subcommand 'frob'"));
            assert!(matches!(run(&mut h, "cat"), Err(CmdError::Usage)));
            assert!(matches!(run(&mut h, "-R"), Err(CmdError::Usage)));
        }
    }

    #[test]
    fn without_a_volume_anywhere_it_says_so() {
        let mut h = host(&vec![0u8; 64 * 2048], false);
        let m = failed(run(&mut h, "ls"));
        assert!(
            m.contains("no ISO 9660 volume on any block device"),
            "{}",
            m
        );
        // A damaged primary descriptor on the named device is its own error.
        let (mut img, _) = image();
        img[16 * 2048 + 156] = 0;
        let mut h = host(&img, true);
        let m = failed(run(&mut h, ""));
        assert!(
            m.starts_with("cd0: bad primary volume descriptor: "),
            "{}",
            m
        );
        assert!(!m.to_string().is_empty());
    }
}
