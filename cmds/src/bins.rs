//! The `bins` command: the BootBinary registry the kernel made at boot from the ISO's manifest
//! (capmon-bootpkg): list, verify against the manifest's SHA-256, read chunks, reopen.
use crate::blk::BlkHost;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use capmon_block::partition::borrow;
use capmon_bootpkg::{hex, BootError, Registry, MAX_CHUNK};
use capmon_shell::out::hexdump;
use capmon_shell::{bad_arg, fail, outln, Args, CmdError, CmdResult, Command};
use core::fmt::Write;

/// What `bins` needs from the machine: its block devices and the registry made at boot.
pub trait BinsHost: BlkHost {
    /// None when the machine has no boot CD to read; else the registry or why there is none.
    fn boot_bins(&mut self) -> &mut Option<Result<Registry, BootError>>;
}

const USAGE: &str = "bins [verify [NAME] | read NAME OFFSET LEN | open DEV]";

const LONG_HELP: &str = "\
bins                      the boot binaries: the manifest's names, each one's LBA on the ISO,
                          size, SHA-256 and whether it was verified; the problems found at boot
bins verify [NAME]        SHA-256 of each binary (or NAME) read from the ISO, against the manifest
bins read NAME OFFSET LEN readBinaryChunk: LEN bytes (at most 65536) of NAME from OFFSET, read from
                          the ISO now; a hexdump up to 4096 bytes, then the chunk's SHA-256
bins open DEV             read the manifest and binaries of the ISO on DEV instead (cd0 at boot)";

pub fn commands<S: BinsHost>() -> Vec<Command<S>> {
    vec![Command {
        name: "bins",
        group: "boot",
        subcommands: &["verify", "read", "open"],
        usage: USAGE,
        help: "the boot binaries on the ISO: list, verify, read chunks",
        long_help: LONG_HELP,
        run: bins::<S>,
    }]
}

/// The most `bins read` shows as a hexdump.
const DUMP_MAX: usize = 4096;

fn bins<S: BinsHost>(s: &mut S, a: &mut Args, o: &mut dyn Write) -> CmdResult {
    match a.opt_str() {
        None => list(s, o),
        Some("verify") => {
            let name = a.opt_str();
            a.finish()?;
            verify(s, name, o)
        }
        Some("read") => {
            let name = a.str()?;
            let off = a.u64("OFFSET")?;
            let len = a.u64("LEN")?;
            a.finish()?;
            read(s, name, off, len, o)
        }
        Some("open") => {
            let dev = a.str()?;
            a.finish()?;
            let r = open(s, dev)?;
            *s.boot_bins() = Some(r);
            list(s, o)
        }
        Some(w) => Err(bad_arg!("unknown subcommand '{}'", w)),
    }
}

/// The registry of the ISO on `dev`, or why there is none (the boot-time path too).
pub fn open<S: BlkHost>(s: &mut S, dev: &str) -> Result<Result<Registry, BootError>, CmdError> {
    let d = s
        .blk()
        .get(dev)
        .ok_or_else(|| fail!("no such block device '{}'", dev))?;
    let mut d = borrow(&d).map_err(|e| fail!("{}: {}", dev, e))?;
    Ok(Registry::open(&mut **d, dev))
}

fn registry<S: BinsHost>(s: &mut S) -> Result<&mut Registry, CmdError> {
    match s.boot_bins() {
        None => Err(fail!(
            "no boot binaries: there is no boot CD (cd0); bins open DEV reads one"
        )),
        Some(Err(e)) => Err(fail!("no boot binaries: {}", e)),
        Some(Ok(r)) => Ok(r),
    }
}

fn list<S: BinsHost>(s: &mut S, o: &mut dyn Write) -> CmdResult {
    let r = registry(s)?;
    outln!(
        o,
        "{}:{}: {} binaries of {} named, manifest {} bytes, init {}",
        r.device,
        capmon_bootpkg::MANIFEST_PATH,
        r.binaries.len(),
        r.binaries.len() + r.problems.len(),
        r.manifest_bytes,
        if r.init.is_empty() { "-" } else { &r.init }
    );
    outln!(
        o,
        "{:<16} {:>8} {:>10}  {:<64}  VERIFIED",
        "NAME",
        "LBA",
        "SIZE",
        "SHA256"
    );
    for b in &r.binaries {
        outln!(
            o,
            "{:<16} {:>8} {:>10}  {}  {}",
            b.name,
            b.lba,
            b.size,
            hex(&b.sha256),
            match b.verified {
                None => "-",
                Some(true) => "ok",
                Some(false) => "MISMATCH",
            }
        );
    }
    for p in &r.problems {
        outln!(o, "problem: {}", p);
    }
    Ok(())
}

fn device<S: BinsHost>(s: &mut S) -> Result<capmon_block::SharedDevice, CmdError> {
    let name = registry(s)?.device.clone();
    s.blk()
        .get(&name)
        .ok_or_else(|| fail!("the boot device {} is gone", name))
}

fn verify<S: BinsHost>(s: &mut S, name: Option<&str>, o: &mut dyn Write) -> CmdResult {
    let dev = device(s)?;
    let r = registry(s)?;
    let names: Vec<String> = match name {
        Some(n) => {
            if r.get(n).is_none() {
                return Err(fail!("no boot binary '{}'", n));
            }
            vec![String::from(n)]
        }
        None => r.binaries.iter().map(|b| b.name.clone()).collect(),
    };
    let mut d = borrow(&dev).map_err(|e| fail!("{}: {}", r.device, e))?;
    let mut bad = 0;
    for n in &names {
        let digest = r.verify(&mut **d, n).map_err(|e| fail!("{}: {}", n, e))?;
        let want = r.get(n).map(|b| b.sha256).unwrap_or_default();
        if digest == want {
            outln!(o, "{}: ok, sha256 {}", n, hex(&digest));
        } else {
            bad += 1;
            outln!(
                o,
                "{}: MISMATCH: sha256 {}, the manifest says {}",
                n,
                hex(&digest),
                hex(&want)
            );
        }
    }
    if bad > 0 {
        return Err(fail!(
            "{} of {} binaries do not match the manifest",
            bad,
            names.len()
        ));
    }
    outln!(o, "{} binaries match the manifest", names.len());
    Ok(())
}

fn read<S: BinsHost>(s: &mut S, name: &str, off: u64, len: u64, o: &mut dyn Write) -> CmdResult {
    let len = u32::try_from(len)
        .ok()
        .filter(|l| *l <= MAX_CHUNK)
        .ok_or_else(|| bad_arg!("LEN {} is over the chunk limit of {}", len, MAX_CHUNK))?;
    let dev = device(s)?;
    let r = registry(s)?;
    let mut d = borrow(&dev).map_err(|e| fail!("{}: {}", r.device, e))?;
    let chunk = r
        .read_chunk(&mut **d, name, off, len)
        .map_err(|e| fail!("{}", e))?;
    if chunk.len() <= DUMP_MAX {
        hexdump(o, off, &chunk, 1);
    }
    outln!(
        o,
        "{}: {} bytes at offset {}, sha256 {}",
        name,
        chunk.len(),
        off,
        hex(&sha(&chunk))
    );
    Ok(())
}

fn sha(data: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(data).into()
}

/// The boot log's lines for the registry made at boot.
pub fn boot_report(r: &Result<Registry, BootError>) -> Vec<String> {
    match r {
        Err(e) => vec![format!("bins: {}", e)],
        Ok(r) => {
            let mut v = vec![format!(
                "bins: {} boot binaries from {}:{} (init {})",
                r.binaries.len(),
                r.device,
                capmon_bootpkg::MANIFEST_PATH,
                if r.init.is_empty() { "-" } else { &r.init }
            )];
            v.extend(r.problems.iter().map(|p| format!("bins: {}", p)));
            v
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use alloc::boxed::Box;
    use alloc::string::ToString;
    use capmon_block::{Kind, RamDisk, Registry as Devices};
    use capmon_bootpkg::manifest::{encode, Manifest, ManifestEntry};
    use capmon_hal::Clock;
    use capmon_shell::parse::words;
    use sha2::Digest;
    use std::process::Command as Proc;

    struct Tick(core::cell::Cell<u64>);
    impl Clock for Tick {
        fn now_ns(&self) -> u64 {
            self.0.set(self.0.get() + 1000);
            self.0.get()
        }
    }

    struct Host {
        reg: Devices,
        clock: Tick,
        bins: Option<Result<Registry, BootError>>,
    }

    impl BlkHost for Host {
        fn blk(&mut self) -> &mut Devices {
            &mut self.reg
        }
        fn clock(&self) -> &dyn Clock {
            &self.clock
        }
    }

    impl BinsHost for Host {
        fn boot_bins(&mut self) -> &mut Option<Result<Registry, BootError>> {
            &mut self.bins
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

    /// An ISO with /boot/bins/{hello,sha} and a manifest naming them (sha's digest `bad`ly
    /// wrong when asked), as cd0, plus an empty ram0.
    fn host(tag: &str, bad: bool) -> (Host, Vec<u8>, usize) {
        let dir =
            std::env::temp_dir().join(alloc::format!("capmon-bins-{}-{}", tag, std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("t/boot/bins")).unwrap();
        let hello: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let sha: Vec<u8> = (0..100_000u32).map(|i| (i * 3 % 256) as u8).collect();
        std::fs::write(dir.join("t/boot/bins/hello"), &hello).unwrap();
        std::fs::write(dir.join("t/boot/bins/sha"), &sha).unwrap();
        let mut d2: [u8; 32] = sha2::Sha256::digest(&sha).into();
        if bad {
            d2[5] ^= 0x80;
        }
        let m = Manifest {
            binaries: vec![
                ManifestEntry {
                    name: "hello".to_string(),
                    size: hello.len() as u64,
                    sha256: sha2::Sha256::digest(&hello).into(),
                },
                ManifestEntry {
                    name: "sha".to_string(),
                    size: sha.len() as u64,
                    sha256: d2,
                },
            ],
            init: "hello".to_string(),
        };
        let manifest = encode(&m);
        std::fs::write(dir.join("t/boot/manifest.capnp"), &manifest).unwrap();
        let out = dir.join("t.iso");
        assert!(Proc::new("xorriso")
            .args(["-as", "mkisofs", "-quiet", "-R", "-o"])
            .arg(&out)
            .arg(dir.join("t"))
            .status()
            .unwrap()
            .success());
        let img = std::fs::read(&out).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let mut reg = Devices::new();
        reg.add(Kind::Ram, Box::new(RamDisk::new(1 << 20, 512).unwrap()));
        reg.add(
            Kind::Cdrom,
            Box::new(RamDisk::from_image(img, 2048).unwrap()),
        );
        let mut h = Host {
            reg,
            clock: Tick(core::cell::Cell::new(0)),
            bins: None,
        };
        h.bins = Some(open(&mut h, "cd0").unwrap());
        (h, sha, manifest.len())
    }

    #[test]
    fn lists_verifies_and_reads_the_registry() {
        let (mut h, sha, mlen) = host("good", false);
        let out = run(&mut h, "").unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            alloc::format!(
                "cd0:/boot/manifest.capnp: 2 binaries of 2 named, manifest {} bytes, init hello",
                mlen
            )
        );
        assert!(lines[2].starts_with("hello "), "{}", out);
        assert!(lines[3].starts_with("sha "));
        assert!(lines[3].ends_with("  -"));
        let v = run(&mut h, "verify").unwrap();
        assert!(v.ends_with("2 binaries match the manifest\n"), "{}", v);
        assert!(run(&mut h, "")
            .unwrap()
            .lines()
            .nth(3)
            .unwrap()
            .ends_with("  ok"));
        let r = run(&mut h, "read sha 1000 32").unwrap();
        assert!(r.starts_with("00000000000003e8:"), "{}", r);
        let want = hex(&sha2::Sha256::digest(&sha[1000..1032]));
        assert!(r.ends_with(&alloc::format!(
            "sha: 32 bytes at offset 1000, sha256 {}\n",
            want
        )));
        let big = run(&mut h, "read sha 90000 65536").unwrap();
        assert_eq!(big.lines().count(), 1, "no dump past 4096 bytes");
        assert!(big.contains("10000 bytes at offset 90000"));
        assert!(failed(run(&mut h, "read sha 100001 1")).contains("past the end of sha"));
        assert!(failed(run(&mut h, "read sha 0 65537")).contains("over the chunk limit"));
        assert!(failed(run(&mut h, "read nope 0 1")).contains("no boot binary 'nope'"));
        assert!(failed(run(&mut h, "verify nope")).contains("no boot binary 'nope'"));
        // Reopening from a device without a volume: the reason, and nothing listed after.
        assert!(failed(run(&mut h, "open ram0")).contains("not an ISO 9660 volume"));
        assert!(failed(run(&mut h, "")).contains("no boot binaries: no boot volume"));
        assert!(run(&mut h, "open cd0").unwrap().starts_with("cd0:"));
        assert!(failed(run(&mut h, "open nope")).contains("no such block device 'nope'"));
    }

    #[test]
    fn a_digest_that_does_not_match_fails_verify() {
        let (mut h, _, _) = host("bad", true);
        let e = failed(run(&mut h, "verify"));
        assert_eq!(e, "1 of 2 binaries do not match the manifest");
        assert!(run(&mut h, "").unwrap().contains("  MISMATCH"));
        h.bins = None;
        assert!(failed(run(&mut h, "")).contains("there is no boot CD"));
    }
}
