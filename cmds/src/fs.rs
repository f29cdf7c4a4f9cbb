//! `fs`: the file tree, through the session's root Directory capability. Reading (`ls`, `cat`,
//! `stat`, `sum`), changing (`mkdir`, `create`, `put`, `write`, `append`, `truncate`, `mv`,
//! `rm`, `sync`: one atomic operation each, `change`), and the store-wide `fsck`, `df` and
//! `bench`. The host tool `capmon-store` runs `change` itself, so a verb means the same thing
//! and prints the same line at the prompt and on the host.
use crate::blk::{Progress, PROGRESS_AFTER_NS};
use crate::store::{err, StoreHost};
use alloc::format;
use alloc::vec;
use alloc::vec::Vec;
use capmon_block::Pattern;
use capmon_hal::Clock;
use capmon_shell::out::HumanSize;
use capmon_shell::{bad_arg, fail, out, outln, Args, CmdError, CmdResult, Command};
use capmon_storage::caps::Directory;
use capmon_storage::engine::MAX_FILE_SIZE;
use capmon_storage::name::Shown;
use capmon_storage::{show, Rights};
use core::fmt::Write;
use sha2::{Digest, Sha256};

const USAGE: &str = "fs [ls [PATH] | cat PATH | stat PATH | sum PATH | mkdir PATH | create PATH | \
put PATH TEXT... | put PATH --pattern P SIZE | write PATH OFFSET COUNT PATTERN | \
append PATH TEXT... | append PATH --pattern P COUNT | truncate PATH SIZE | mv FROM TO | \
rm [-r] PATH | sync | fsck | df | bench [-n N] [-m MIB] | race [-n N] [CPU]]";

const HELP: &str = "\
fs ls [PATH]           a directory: kind, size, name (d for directories)
fs cat PATH            a file's bytes as text (control characters escaped)
fs stat PATH           kind, size, inode, generation, times, chunk size
fs sum PATH            SHA-256 of a file: prints `sha256 <hex>`
fs mkdir PATH          a new empty directory (`exists` if the name is taken)
fs create PATH         a new empty file (`exists` if the name is taken)
fs put PATH TEXT...    make PATH a file holding exactly TEXT (created or replaced), atomically
fs put PATH --pattern P SIZE
                       the same with SIZE bytes of pattern P (0xa5, inc, seed:N; up to 16 MiB)
fs write PATH OFFSET COUNT PATTERN
                       write COUNT bytes of PATTERN at OFFSET (the bytes of the pattern at
                       those file offsets); the file grows, a gap reads as zeros; 1 MiB per
                       atomic step
fs append PATH TEXT... / fs append PATH --pattern P COUNT
                       add at the end, atomically (a pattern: in 1 MiB atomic steps)
fs truncate PATH SIZE  set the size: bytes past it are gone, growing adds zeros
fs mv FROM TO          rename atomically, across directories too; a file at TO is replaced
fs rm [-r] PATH        remove a file or an empty directory; -r a whole tree
fs sync                make every operation so far durable
fs fsck                check every object, name, file, chunk and redb's structure
fs df                  space and counts of the store's partition
fs bench [-n N] [-m MIB]
                       N creates of a file with 4 KiB, each synced (default 1000); MIB 1 MiB
                       writes and a sync (16); reads of both; N renames and a sync; ops/s and
                       MB/s, and the last 10% of creates' rate against the first 10%'s
fs race [-n N] [CPU]   this CPU and CPU (default 1) at once, N rounds (default 100) each, on a
                       new /race: appends to one file (one writer at a time: the other gets
                       busy), then create, mv and rm of the same names; checks every block
                       is one CPU's, every name had one winner, fsck is clean
PATH is relative to the root directory capability; a leading / is allowed. File operations
are atomic and visible at once; they are durable after `fs sync` (docs/storage.md).";

pub fn commands<S: StoreHost>() -> Vec<Command<S>> {
    vec![Command {
        name: "fs",
        group: "storage",
        subcommands: &[
            "ls", "cat", "stat", "sum", "mkdir", "create", "put", "write", "append", "truncate",
            "mv", "rm", "sync", "fsck", "df", "bench", "race",
        ],
        usage: USAGE,
        help: "files: ls, cat, stat, sum; mkdir, put, write, append, truncate, mv, rm, sync",
        long_help: HELP,
        run: fs::<S>,
    }]
}

/// A path as typed: one leading `/` names the root directory capability itself.
pub fn path_arg(p: &str) -> &str {
    let p = p.strip_prefix('/').unwrap_or(p);
    p.strip_suffix('/').unwrap_or(p)
}

fn fs<S: StoreHost>(s: &mut S, a: &mut Args, o: &mut dyn Write) -> CmdResult {
    let sub = a.opt_str();
    let root = s.session().fs.clone();
    match sub {
        None | Some("ls") => {
            let p = path_arg(a.opt_str().unwrap_or(""));
            a.finish()?;
            let dir = root.open_dir(p).map_err(err)?;
            let ents = dir.list().map_err(err)?;
            show::dir(o, &ents);
            Ok(())
        }
        Some("cat") => cat(&*root, a, o),
        Some("stat") => {
            let p = path_arg(a.str()?);
            a.finish()?;
            let st = root.stat(p).map_err(err)?;
            show::node(o, p, &st);
            Ok(())
        }
        Some("sum") => {
            let p = path_arg(a.str()?);
            a.finish()?;
            let (d, len) = sum(&*root, p)?;
            show::digest(o, &d, len);
            Ok(())
        }
        Some("fsck") => {
            a.finish()?;
            crate::store::run_fsck(s, o)
        }
        Some("df") => {
            a.finish()?;
            df(s, o)
        }
        Some("bench") => bench(s, a, o),
        Some("race") => crate::fs_race::race(s, a, o),
        Some(w) => match change(&*root, w, a, o, s.store_clock()) {
            Some(r) => r,
            None => Err(bad_arg!("unknown subcommand '{}'", w)),
        },
    }
}

fn cat(root: &dyn Directory, a: &mut Args, o: &mut dyn Write) -> CmdResult {
    let p = path_arg(a.str()?);
    a.finish()?;
    let f = root.open(p, Rights::READ).map_err(err)?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut off = 0u64;
    let mut carry: Vec<u8> = Vec::new();
    loop {
        let n = f.read(off, &mut buf).map_err(err)?;
        if n == 0 {
            break;
        }
        off += n as u64;
        carry.extend_from_slice(&buf[..n]);
        // Print whole UTF-8 characters; keep a split one for the next read.
        let valid = match core::str::from_utf8(&carry) {
            Ok(_) => carry.len(),
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(e) => e.valid_up_to() + e.error_len().unwrap_or(1),
        };
        print_text(o, &carry[..valid]);
        carry.drain(..valid);
    }
    print_text(o, &carry);
    Ok(())
}

/// The SHA-256 of the file at `path` and its length.
pub fn sum(root: &dyn Directory, path: &str) -> Result<([u8; 32], u64), CmdError> {
    let f = root.open(path, Rights::READ).map_err(err)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut off = 0u64;
    loop {
        let n = f.read(off, &mut buf).map_err(err)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        off += n as u64;
    }
    Ok((h.finalize().into(), off))
}

/// The most bytes one `put` or text `append` makes in a single atomic step (held in memory).
pub const MAX_PUT_BYTES: u64 = 16 << 20;
/// `write` and a pattern `append` go in atomic steps of this many bytes.
pub const STEP_BYTES: u64 = 1 << 20;

/// The verbs `change` runs.
pub const CHANGES: &[&str] = &[
    "mkdir", "create", "put", "write", "append", "truncate", "mv", "rm", "sync",
];

/// The verbs that change the tree, on `root`: `None` if `verb` is not one of them. Every line
/// printed is computed from the store after the operation (the sizes are `stat`'s).
pub fn change(
    root: &dyn Directory,
    verb: &str,
    a: &mut Args,
    o: &mut dyn Write,
    clock: &dyn Clock,
) -> Option<CmdResult> {
    Some(match verb {
        "mkdir" => one_path(a).and_then(|p| {
            root.mkdir(p).map_err(err)?;
            outln!(o, "mkdir /{}", Shown(p));
            Ok(())
        }),
        "create" => one_path(a).and_then(|p| {
            root.create(p).map_err(err)?;
            outln!(o, "create /{}", Shown(p));
            Ok(())
        }),
        "put" => put(root, a, o),
        "write" => write(root, a, o, clock),
        "append" => append(root, a, o, clock),
        "truncate" => truncate(root, a, o),
        "mv" => (|| {
            let from = path_arg(a.str()?);
            let to = path_arg(a.str()?);
            a.finish()?;
            root.rename(from, to).map_err(err)?;
            outln!(o, "renamed /{} -> /{}", Shown(from), Shown(to));
            Ok(())
        })(),
        "rm" => (|| {
            let recursive = a.flag("-r");
            let p = one_path(a)?;
            let n = root.remove(p, recursive).map_err(err)?;
            outln!(
                o,
                "removed /{}: {} node{}",
                Shown(p),
                n,
                if n == 1 { "" } else { "s" }
            );
            Ok(())
        })(),
        "sync" => (|| {
            a.finish()?;
            let t0 = clock.now_ns();
            root.sync().map_err(err)?;
            outln!(
                o,
                "synced in {} us",
                clock.now_ns().saturating_sub(t0) / 1000
            );
            Ok(())
        })(),
        _ => return None,
    })
}

fn one_path<'a>(a: &mut Args<'a>) -> Result<&'a str, CmdError> {
    let p = path_arg(a.str()?);
    a.finish()?;
    Ok(p)
}

fn pattern_arg(a: &mut Args) -> Result<Pattern, CmdError> {
    let w = a.str()?;
    Pattern::parse(w).map_err(|e| bad_arg!("PATTERN '{}': {}", w, e))
}

/// `TEXT...` or `--pattern P COUNT` (at most `MAX_PUT_BYTES` of it), laid out as the pattern's
/// bytes at offsets from 0.
fn text_or_pattern(a: &mut Args) -> Result<Vec<u8>, CmdError> {
    if a.flag("--pattern") {
        let p = pattern_arg(a)?;
        let n = a.size("SIZE")?;
        a.finish()?;
        if n > MAX_PUT_BYTES {
            return Err(bad_arg!(
                "SIZE must be at most {}",
                HumanSize(MAX_PUT_BYTES)
            ));
        }
        let mut v = vec![0u8; n as usize];
        p.fill(0, &mut v);
        Ok(v)
    } else {
        let words = a.rest();
        if words.is_empty() {
            return Err(CmdError::Usage);
        }
        Ok(words.join(" ").into_bytes())
    }
}

fn size_line(o: &mut dyn Write, root: &dyn Directory, p: &str) -> CmdResult {
    let st = root.stat(p).map_err(err)?;
    outln!(o, "/{}: {} bytes", Shown(p), st.size);
    Ok(())
}

fn put(root: &dyn Directory, a: &mut Args, o: &mut dyn Write) -> CmdResult {
    let p = path_arg(a.str()?);
    let data = text_or_pattern(a)?;
    root.put(p, &data).map_err(err)?;
    out!(o, "put ");
    size_line(o, root, p)
}

fn write(root: &dyn Directory, a: &mut Args, o: &mut dyn Write, clock: &dyn Clock) -> CmdResult {
    let p = path_arg(a.str()?);
    let off = a.size("OFFSET")?;
    let count = a.size("COUNT")?;
    let pat = pattern_arg(a)?;
    a.finish()?;
    match off.checked_add(count) {
        Some(end) if end <= MAX_FILE_SIZE => {}
        _ => {
            return Err(fail!(
                "OFFSET + COUNT is past the largest file size, {}",
                HumanSize(MAX_FILE_SIZE)
            ))
        }
    }
    let f = root.open(p, Rights::WRITE).map_err(err)?;
    let mut buf = vec![0u8; count.min(STEP_BYTES) as usize];
    let mut done = 0u64;
    let mut progress = Progress::new(clock, PROGRESS_AFTER_NS);
    while done < count {
        let n = (count - done).min(STEP_BYTES) as usize;
        pat.fill(off + done, &mut buf[..n]);
        if let Err(e) = f.write(off + done, &buf[..n]) {
            progress.end(o);
            return Err(stopped(e, done, count));
        }
        done += n as u64;
        progress.bytes(o, "write", done, count);
    }
    progress.end(o);
    let st = f.stat().map_err(err)?;
    outln!(
        o,
        "wrote {} bytes at {}: /{} is {} bytes",
        count,
        off,
        Shown(p),
        st.size
    );
    Ok(())
}

/// A write or append in steps that failed after `done` of `count` bytes: the steps before
/// the failing one were committed and stay (the code stays last, as every error ends).
fn stopped(e: capmon_storage::StoreError, done: u64, count: u64) -> CmdError {
    if done == 0 {
        return err(e);
    }
    fail!(
        "{}, after {} of {} bytes (the {} steps before it are kept) [{}]",
        e,
        done,
        count,
        done.div_ceil(STEP_BYTES),
        e.code_name()
    )
}

fn append(root: &dyn Directory, a: &mut Args, o: &mut dyn Write, clock: &dyn Clock) -> CmdResult {
    let p = path_arg(a.str()?);
    let f = root.open(p, Rights::APPEND).map_err(err)?;
    let (first, count) = if a.flag("--pattern") {
        let pat = pattern_arg(a)?;
        let count = a.size("COUNT")?;
        a.finish()?;
        // Each step lands at the end; its bytes are the pattern's at the offsets they land at
        // (nothing else writes the file meanwhile: this capability holds its writer slot).
        let mut buf = vec![0u8; count.min(STEP_BYTES) as usize];
        let mut done = 0u64;
        let mut first = None;
        let mut progress = Progress::new(clock, PROGRESS_AFTER_NS);
        while done < count {
            let n = (count - done).min(STEP_BYTES) as usize;
            let at = f.stat().map_err(err)?.size;
            if at.saturating_add(n as u64) > MAX_FILE_SIZE {
                progress.end(o);
                return Err(fail!(
                    "/{} would pass the largest file size, {}",
                    Shown(p),
                    HumanSize(MAX_FILE_SIZE)
                ));
            }
            pat.fill(at, &mut buf[..n]);
            let landed = match f.append(&buf[..n]) {
                Ok(at) => at,
                Err(e) => {
                    progress.end(o);
                    return Err(stopped(e, done, count));
                }
            };
            first.get_or_insert(landed);
            done += n as u64;
            progress.bytes(o, "append", done, count);
        }
        progress.end(o);
        (first.unwrap_or(f.stat().map_err(err)?.size), count)
    } else {
        let words = a.rest();
        if words.is_empty() {
            return Err(CmdError::Usage);
        }
        let text = words.join(" ");
        (f.append(text.as_bytes()).map_err(err)?, text.len() as u64)
    };
    let st = f.stat().map_err(err)?;
    outln!(
        o,
        "appended {} bytes at {}: /{} is {} bytes",
        count,
        first,
        Shown(p),
        st.size
    );
    Ok(())
}

fn truncate(root: &dyn Directory, a: &mut Args, o: &mut dyn Write) -> CmdResult {
    let p = path_arg(a.str()?);
    let size = a.size("SIZE")?;
    a.finish()?;
    let f = root.open(p, Rights::WRITE).map_err(err)?;
    let was = f.stat().map_err(err)?.size;
    f.truncate(size).map_err(err)?;
    let now = f.stat().map_err(err)?.size;
    outln!(o, "truncated /{}: {} -> {} bytes", Shown(p), was, now);
    Ok(())
}

fn df<S: StoreHost>(s: &mut S, o: &mut dyn Write) -> CmdResult {
    let sess = s.session();
    let i = sess.store.info().map_err(err)?;
    let free = i.capacity.saturating_sub(i.used);
    outln!(
        o,
        "{} on {}: {} used of {}, {} free ({}%)",
        i.engine,
        i.device,
        HumanSize(i.used),
        HumanSize(i.capacity),
        HumanSize(free),
        free.saturating_mul(100) / i.capacity.max(1)
    );
    outln!(
        o,
        "bytes: capacity {}, used {}, free {}",
        i.capacity,
        i.used,
        free
    );
    outln!(
        o,
        "files {}, directories {}, objects {}, names {}",
        i.files,
        i.dirs,
        i.objects,
        i.names
    );
    outln!(
        o,
        "open for writing {}, commits waiting for sync {}, generation {}",
        sess.engine.writers().count(),
        sess.engine.unsynced(),
        i.generation
    );
    Ok(())
}

const BENCH_DEFAULT_N: u64 = 1000;
const BENCH_MAX_N: u64 = 100_000;
const BENCH_DEFAULT_MIB: u64 = 16;
const BENCH_MAX_MIB: u64 = 1024;

/// `fs bench`: the rows `make bench-fs` compares with a Linux guest on ext4
/// (scripts/bench-fs-linux.c prints the same lines for the same work).
fn bench<S: StoreHost>(s: &mut S, a: &mut Args, o: &mut dyn Write) -> CmdResult {
    let (mut n, mut mib) = (BENCH_DEFAULT_N, BENCH_DEFAULT_MIB);
    while let Some(w) = a.opt_str() {
        match w {
            "-n" => n = a.u64("N")?,
            "-m" => mib = a.u64("MIB")?,
            _ => return Err(CmdError::Usage),
        }
    }
    if !(10..=BENCH_MAX_N).contains(&n) {
        return Err(bad_arg!("N must be 10..={}", BENCH_MAX_N));
    }
    if !(1..=BENCH_MAX_MIB).contains(&mib) {
        return Err(bad_arg!("MIB must be 1..={}", BENCH_MAX_MIB));
    }
    let root = s.session().fs.clone();
    let clock = s.store_clock();
    let dir = format!("fs-bench-{:x}", clock.now_ns());
    root.mkdir(&dir).map_err(err)?;
    root.sync().map_err(err)?;
    let r = bench_in(&*root, &dir, n, mib, clock, o);
    // The run's tree goes whatever happened, and its removal is made durable (untimed), so
    // the next run starts on a store as empty as this one did.
    let cleanup = root.remove(&dir, true).and_then(|_| root.sync());
    r?;
    cleanup.map_err(err)?;
    Ok(())
}

/// The runs of `bench`, in `root`'s directory `dir`. Each row's time is the sum of its timed
/// operations (making the bytes to write is outside it); every byte read is checked.
fn bench_in(
    root: &dyn Directory,
    dir: &str,
    n: u64,
    mib: u64,
    clock: &dyn Clock,
    o: &mut dyn Write,
) -> CmdResult {
    let d = root.open_dir(dir).map_err(err)?;
    let mut data = vec![0u8; 4096];
    // Creates: each a new file with 4 KiB written into it, then a sync, which makes the file
    // and its name durable (as create, write, fsync the file and its directory).
    let tenth = (n / 10).max(1);
    let (mut total, mut first, mut last) = (0u64, 0u64, 0u64);
    for i in 0..n {
        Pattern::Seed(i).fill(0, &mut data);
        let name = format!("f{}", i);
        let t = clock.now_ns();
        d.create(&name).map_err(err)?;
        let f = d.open(&name, Rights::RW).map_err(err)?;
        f.write(0, &data).map_err(err)?;
        f.sync().map_err(err)?;
        drop(f);
        let dt = clock.now_ns().saturating_sub(t);
        total += dt;
        if i < tenth {
            first += dt;
        }
        if i >= n - tenth {
            last += dt;
        }
    }
    rate(o, "create+write 4K+sync", n, n * 4096, total);
    let (fr, lr) = (per_s_x10(tenth, first), per_s_x10(tenth, last));
    let ratio = lr as u128 * 1000 / fr.max(1) as u128;
    outln!(
        o,
        "fs bench creates: first {} at {}.{} ops/s, last {} at {}.{} ops/s: last/first {}.{:03}x",
        tenth,
        fr / 10,
        fr % 10,
        tenth,
        lr / 10,
        lr % 10,
        ratio / 1000,
        ratio % 1000
    );
    // Sequential: MIB writes of 1 MiB into a new file, then a sync.
    let mut block = vec![0u8; 1 << 20];
    let f = d.open_or_create("seq", Rights::RW).map_err(err)?;
    let mut total = 0u64;
    for i in 0..mib {
        Pattern::Seed(n + i).fill(0, &mut block);
        let t = clock.now_ns();
        f.write(i << 20, &block).map_err(err)?;
        total += clock.now_ns().saturating_sub(t);
    }
    let t = clock.now_ns();
    f.sync().map_err(err)?;
    total += clock.now_ns().saturating_sub(t);
    rate(o, "write 1M+sync", mib, mib << 20, total);
    // Reads: the sequential file, in 1 MiB reads, each checked.
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    for i in 0..mib {
        let t = clock.now_ns();
        let got = f.read(i << 20, &mut buf).map_err(err)?;
        total += clock.now_ns().saturating_sub(t);
        Pattern::Seed(n + i).fill(0, &mut block);
        if got != buf.len() || buf != block {
            return Err(fail!("seq: 1 MiB at {} read back wrong", i << 20));
        }
    }
    rate(o, "read 1M", mib, mib << 20, total);
    drop(f);
    // Then every small file: open, read it whole, check it.
    let mut want = vec![0u8; 4096];
    let mut total = 0u64;
    for i in 0..n {
        let name = format!("f{}", i);
        let t = clock.now_ns();
        let f = d.open(&name, Rights::READ).map_err(err)?;
        let got = f.read(0, &mut data).map_err(err)?;
        drop(f);
        total += clock.now_ns().saturating_sub(t);
        Pattern::Seed(i).fill(0, &mut want);
        if got != 4096 || data != want {
            return Err(fail!("{}: read back wrong", name));
        }
    }
    rate(o, "open+read 4K", n, n * 4096, total);
    // Renames, then one sync that makes them all durable.
    let mut total = 0u64;
    for i in 0..n {
        let (from, to) = (format!("f{}", i), format!("g{}", i));
        let t = clock.now_ns();
        d.rename(&from, &to).map_err(err)?;
        total += clock.now_ns().saturating_sub(t);
    }
    let t = clock.now_ns();
    d.sync().map_err(err)?;
    total += clock.now_ns().saturating_sub(t);
    rate(o, "rename+1 sync", n, 0, total);
    Ok(())
}

/// Ten times the rate of `n` operations in `ns`.
fn per_s_x10(n: u64, ns: u64) -> u64 {
    (n as u128 * 10_000_000_000 / ns.max(1) as u128) as u64
}

/// One result line: `fs bench ROW: N ops in U us: R ops/s[, M MB/s]` (MB: 10^6 bytes).
fn rate(o: &mut dyn Write, what: &str, n: u64, bytes: u64, ns: u64) {
    let ns = ns.max(1);
    let r = per_s_x10(n, ns);
    out!(
        o,
        "fs bench {}: {} ops in {} us: {}.{} ops/s",
        what,
        n,
        ns / 1000,
        r / 10,
        r % 10
    );
    if bytes > 0 {
        let kb_s = bytes as u128 * 1_000_000 / ns as u128;
        out!(o, ", {}.{:03} MB/s", kb_s / 1000, kb_s % 1000);
    }
    outln!(o);
}

/// Text with control characters other than newline and tab escaped, invalid UTF-8 as `\xNN`.
fn print_text(o: &mut dyn Write, bytes: &[u8]) {
    let mut rest = bytes;
    while !rest.is_empty() {
        match core::str::from_utf8(rest) {
            Ok(s) => {
                put_escaped(o, s);
                break;
            }
            Err(e) => {
                let (good, bad) = rest.split_at(e.valid_up_to());
                put_escaped(o, core::str::from_utf8(good).unwrap_or(""));
                let skip = e.error_len().unwrap_or(bad.len()).max(1).min(bad.len());
                for b in &bad[..skip] {
                    let _ = write!(o, "\\x{:02x}", b);
                }
                rest = &bad[skip..];
            }
        }
    }
}

fn put_escaped(o: &mut dyn Write, s: &str) {
    for ch in s.chars() {
        if ch.is_control() && ch != '\n' && ch != '\t' {
            let _ = write!(o, "\\x{:02x}", ch as u32);
        } else {
            let _ = o.write_char(ch);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;
    use alloc::sync::Arc;
    use capmon_storage::caps::DirCap;
    use capmon_storage::RamEngine;

    struct Zero;
    impl Clock for Zero {
        fn now_ns(&self) -> u64 {
            0
        }
    }

    #[test]
    fn change_takes_exactly_the_verbs_it_names() {
        let root = DirCap::root(Arc::new(RamEngine::new()), Rights::ALL);
        for verb in CHANGES.iter().chain(["ls", "cat", "fsck"].iter()) {
            let mut o = String::new();
            let r = change(&*root, verb, &mut Args::new(vec!["x"]), &mut o, &Zero);
            assert_eq!(r.is_some(), CHANGES.contains(verb), "{}", verb);
        }
    }
}
