//! The commands, one table entry each (name, usage, handler). Every store operation goes
//! through the session's capabilities (Store, the root Namespace, the root Directory), as the
//! monitor's do; the output lines are the monitor's (cmds/src/store.rs) where the same thing is
//! printed.
use crate::image::{self, Layout, Target};
use crate::import;
use capmon_block::{BlockDevice, Pattern};
use capmon_shell::{bad_arg, fail, Args, CmdError};
use capmon_storage::backend::{self, OpenError, Superblock, SUPERBLOCK_BYTES};
use capmon_storage::caps::Value;
use capmon_storage::disk::{self, OpenFailure};
use capmon_storage::engine::ImportItem;
use capmon_storage::name::Shown;
use capmon_storage::object::{self, hex, Body};
use capmon_storage::session::Session;
use capmon_storage::{fsck, show, Rights, StoreError};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::PathBuf;

/// What every command gets besides its words.
pub struct Ctx {
    pub image: PathBuf,
    pub layout: Layout,
    /// `import DIR`'s DIR (a host path need not be UTF-8).
    pub host_path: Option<PathBuf>,
}

type Out<'a> = &'a mut dyn Write;
type CmdResult = Result<(), CmdError>;

pub struct Command {
    pub name: &'static str,
    pub usage: &'static str,
    pub run: fn(&Ctx, &mut Args, Out) -> CmdResult,
}

const COMMANDS: &[Command] = &[
    Command {
        name: "mkfs",
        usage: "usage: capmon-store IMAGE mkfs [-f]",
        run: mkfs,
    },
    Command {
        name: "import",
        usage: "usage: capmon-store IMAGE import DIR",
        run: import_tree,
    },
    Command {
        name: "ls",
        usage: "usage: capmon-store IMAGE ls [PATH]",
        run: ls,
    },
    Command {
        name: "cat",
        usage: "usage: capmon-store IMAGE cat PATH",
        run: cat,
    },
    Command {
        name: "sum",
        usage: "usage: capmon-store IMAGE sum PATH",
        run: sum,
    },
    Command {
        name: "stat",
        usage: "usage: capmon-store IMAGE stat PATH",
        run: stat,
    },
    Command {
        name: "put",
        usage: "usage: capmon-store IMAGE put NAME TEXT... | put NAME --pattern P SIZE",
        run: put,
    },
    Command {
        name: "get",
        usage: "usage: capmon-store IMAGE get NAME [--raw]",
        run: get,
    },
    Command {
        name: "objects",
        usage: "usage: capmon-store IMAGE objects",
        run: objects,
    },
    Command {
        name: "names",
        usage: "usage: capmon-store IMAGE names [PREFIX]",
        run: names,
    },
    Command {
        name: "fs",
        usage: "usage: capmon-store IMAGE fs mkdir|create|put|write|append|truncate|mv|rm|sync ARGS... \
                (as the monitor's `fs`)",
        run: fs_change,
    },
    Command {
        name: "rm",
        usage: "usage: capmon-store IMAGE rm NAME",
        run: rm,
    },
    Command {
        name: "fsck",
        usage: "usage: capmon-store IMAGE fsck",
        run: run_fsck,
    },
    Command {
        name: "info",
        usage: "usage: capmon-store IMAGE info",
        run: info,
    },
    Command {
        name: "repair",
        usage: "usage: capmon-store IMAGE repair",
        run: repair,
    },
];

pub fn find(name: &str) -> Option<&'static Command> {
    COMMANDS.iter().find(|c| c.name == name)
}

/// The error a write to stdout gives when its reader went away (`| head`): the command stops
/// (closing the store as usual), and `main` exits without a message.
pub const STDOUT_CLOSED: &str = "stdout closed";

fn stdout_error(e: std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        STDOUT_CLOSED.to_string()
    } else {
        format!("writing to stdout: {}", e)
    }
}

/// Writes text to stdout.
pub fn emit(o: Out, args: core::fmt::Arguments) -> Result<(), String> {
    o.write_fmt(args).map_err(stdout_error)
}

macro_rules! line {
    ($o:expr, $($arg:tt)*) => {
        emit($o, format_args!("{}\n", format_args!($($arg)*))).map_err(CmdError::Failed)?
    };
}

/// Prints what one of `capmon_storage::show`'s renderings (the monitor's own lines) wrote.
fn shown(o: Out, render: impl FnOnce(&mut String)) -> CmdResult {
    let mut text = String::new();
    render(&mut text);
    emit(o, format_args!("{}", text)).map_err(CmdError::Failed)
}

fn write_raw(o: Out, bytes: &[u8]) -> CmdResult {
    o.write_all(bytes)
        .map_err(|e| CmdError::Failed(stdout_error(e)))
}

/// A store error as the monitor prints it: the message and the schema's code.
fn err(e: StoreError) -> CmdError {
    fail!("{} [{}]", e, e.code_name())
}

/// The current time, in nanoseconds since the Unix epoch (store times are the host's).
fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn target(ctx: &Ctx, writable: bool) -> Result<Target, CmdError> {
    image::open(&ctx.image, ctx.layout, writable).map_err(CmdError::Failed)
}

/// Why the store on `name` did not open, in words that say what to do.
fn open_failure(name: &str, f: OpenFailure, writable: bool) -> CmdError {
    match f {
        // redb refuses a read-only open of a database that was not closed cleanly (its
        // allocator state is not on disk); only a writable open repairs it.
        OpenFailure::Database(StoreError::Io(m)) if !writable && m.contains("repair") => fail!(
            "{}: the store was not closed cleanly and needs a repair, which a read-only \
             command does not make: run `capmon-store IMAGE repair` ({})",
            name,
            m
        ),
        f => fail!("{}: {}", name, f),
    }
}

/// The store in the image as the monitor's capabilities, read-only unless `writable` (then
/// the file itself is opened read-only too, so nothing can write to it).
fn session(ctx: &Ctx, writable: bool) -> Result<Session, CmdError> {
    let t = target(ctx, writable)?;
    let (engine, opened) = disk::open(t.dev, &t.name, writable, now_ns())
        .map_err(|f| open_failure(&t.name, f, writable))?;
    Ok(Session::disk(engine, format!("redb on {}", t.name), opened))
}

/// A path as typed: one leading `/` names the root directory itself (as `fs` takes it).
fn path_arg(p: &str) -> &str {
    let p = p.strip_prefix('/').unwrap_or(p);
    p.strip_suffix('/').unwrap_or(p)
}

// ---- writing ----

fn mkfs(ctx: &Ctx, a: &mut Args, o: Out) -> CmdResult {
    let force = a.flag("-f");
    a.finish()?;
    let mut t = target(ctx, true)?;
    if !force {
        refuse_unless_blank(&mut t)?;
    }
    let now = now_ns();
    let seed = now ^ (u64::from(std::process::id()) << 32) ^ 0x6361_706d_6f6e;
    let sb = backend::format(&mut t.dev, seed, now).map_err(|e| fail!("{}: {}", t.name, e))?;
    // The first writable open creates the tables; closing the engine records a clean close.
    let (engine, _) = disk::open(t.dev, &t.name, true, now)
        .map_err(|f| fail!("{}: formatted, but opening failed: {}", t.name, f))?;
    drop(engine);
    line!(
        o,
        "formatted {}: an empty store ({} bytes, store id {})",
        t.name,
        sb.partition_bytes,
        hex(&sb.store_id)
    );
    Ok(())
}

/// `mkfs` without `-f`: the partition's first 4096 bytes must be zero.
fn refuse_unless_blank(t: &mut Target) -> CmdResult {
    let n =
        t.bytes.min(SUPERBLOCK_BYTES) as usize / image::SECTOR as usize * image::SECTOR as usize;
    if n == 0 {
        return Ok(());
    }
    let mut head = vec![0u8; n];
    t.dev
        .read(0, &mut head)
        .map_err(|e| fail!("{}: {}", t.name, e))?;
    if head.iter().all(|&b| b == 0) {
        return Ok(());
    }
    let what = match Superblock::decode(&head) {
        Ok(sb) => format!("holds a capmon store (store id {})", hex(&sb.store_id)),
        Err(OpenError::Foreign(f)) => format!("holds {}", f),
        Err(e) => format!("is not blank ({})", e),
    };
    Err(fail!("{} {}: `mkfs -f` erases it", t.name, what))
}

fn import_tree(ctx: &Ctx, a: &mut Args, o: Out) -> CmdResult {
    a.finish()?;
    let dir = ctx.host_path.as_ref().ok_or(CmdError::Usage)?;
    // The whole tree is read and checked before the image is opened: a bad tree writes nothing.
    let tree = import::scan(dir).map_err(CmdError::Failed)?;
    let sess = session(ctx, true)?;
    let items: Vec<ImportItem<'_>> = tree.nodes.iter().map(import::Node::item).collect();
    sess.engine.import(&items).map_err(err)?;
    line!(
        o,
        "imported {} directories and {} files ({} bytes) from {}",
        tree.dirs,
        tree.files,
        tree.bytes,
        import::shown(dir)
    );
    Ok(())
}

fn put(ctx: &Ctx, a: &mut Args, o: Out) -> CmdResult {
    let name = a.str()?;
    let msg = if a.flag("--pattern") {
        let p = a.str()?;
        let pat = Pattern::parse(p).map_err(|e| bad_arg!("PATTERN: {}", e))?;
        let size = a.size("SIZE")?;
        a.finish()?;
        object::pattern(&pat, size).map_err(err)?
    } else {
        let words = a.rest();
        if words.is_empty() {
            return Err(CmdError::Usage);
        }
        object::text(&words.join(" "))
    };
    let sess = session(ctx, true)?;
    let ns = sess.ns();
    let h = ns.put(name, &msg, true).map_err(err)?;
    let st = ns.store().stat(&h).map_err(err)?;
    shown(o, |t| show::put(t, name, &st))
}

/// The host's clock for the monitor's verbs (progress lines and `synced in`).
struct HostClock;

impl capmon_hal::Clock for HostClock {
    fn now_ns(&self) -> u64 {
        now_ns()
    }
}

/// The monitor's text output (`core::fmt::Write`) onto stdout, keeping the first I/O error.
struct FmtOut<'a> {
    o: Out<'a>,
    error: Option<std::io::Error>,
}

impl core::fmt::Write for FmtOut<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        if self.error.is_none() {
            if let Err(e) = self.o.write_all(s.as_bytes()) {
                self.error = Some(e);
            }
        }
        Ok(())
    }
}

/// `fs VERB ARGS...`: the monitor's verbs that change the file tree, run by the monitor's own
/// code (`capmon_cmds::fs::change`) on the image's root Directory, stamping times from the
/// host's clock. Everything is made durable before the image is closed.
fn fs_change(ctx: &Ctx, a: &mut Args, o: Out) -> CmdResult {
    let verb = a.str()?;
    if !capmon_cmds::fs::CHANGES.contains(&verb) {
        return Err(fail!(
            "fs: unknown verb '{}' (one of: {})",
            verb,
            capmon_cmds::fs::CHANGES.join(", ")
        ));
    }
    let t = target(ctx, true)?;
    let (engine, opened) =
        disk::open(t.dev, &t.name, true, now_ns()).map_err(|f| open_failure(&t.name, f, true))?;
    let sess = Session::disk(
        engine.with_clock(now_ns),
        format!("redb on {}", t.name),
        opened,
    );
    let mut w = FmtOut { o, error: None };
    let r = capmon_cmds::fs::change(&*sess.fs, verb, a, &mut w, &HostClock)
        .unwrap_or(Err(CmdError::Usage));
    // A failed verb changed nothing; what succeeded before the failure (a step of a long
    // write) is kept and made durable like the rest.
    let synced = sess.sync_for_close().map_err(err);
    r?;
    synced?;
    match w.error {
        Some(e) => Err(CmdError::Failed(stdout_error(e))),
        None => Ok(()),
    }
}

fn rm(ctx: &Ctx, a: &mut Args, o: Out) -> CmdResult {
    let name = a.str()?;
    a.finish()?;
    session(ctx, true)?.ns().unbind(name).map_err(err)?;
    line!(o, "removed {}", Shown(name));
    Ok(())
}

fn repair(ctx: &Ctx, a: &mut Args, o: Out) -> CmdResult {
    a.finish()?;
    let sess = session(ctx, true)?;
    // Every writable open runs redb's integrity check, which verifies every page and rebuilds
    // the allocator state: opening is the repair.
    line!(o, "{}: checked and repaired where needed", sess.note);
    Ok(())
}

// ---- reading ----

fn ls(ctx: &Ctx, a: &mut Args, o: Out) -> CmdResult {
    let p = path_arg(a.opt_str().unwrap_or(""));
    a.finish()?;
    let sess = session(ctx, false)?;
    let ents = sess.fs.open_dir(p).map_err(err)?.list().map_err(err)?;
    shown(o, |t| show::dir(t, &ents))?;
    Ok(())
}

/// Reads the file at `p` from the start, handing each piece to `each`; returns its length.
fn read_file(
    sess: &Session,
    p: &str,
    mut each: impl FnMut(&[u8]) -> CmdResult,
) -> Result<u64, CmdError> {
    let f = sess.fs.open(p, Rights::READ).map_err(err)?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut off = 0u64;
    loop {
        let n = f.read(off, &mut buf).map_err(err)?;
        if n == 0 {
            return Ok(off);
        }
        each(&buf[..n])?;
        off += n as u64;
    }
}

fn cat(ctx: &Ctx, a: &mut Args, o: Out) -> CmdResult {
    let p = path_arg(a.str()?);
    a.finish()?;
    let sess = session(ctx, false)?;
    read_file(&sess, p, |piece| write_raw(o, piece))?;
    Ok(())
}

fn sum(ctx: &Ctx, a: &mut Args, o: Out) -> CmdResult {
    let p = path_arg(a.str()?);
    a.finish()?;
    let sess = session(ctx, false)?;
    let mut h = Sha256::new();
    let len = read_file(&sess, p, |piece| {
        h.update(piece);
        Ok(())
    })?;
    let d: [u8; 32] = h.finalize().into();
    shown(o, |t| show::digest(t, &d, len))?;
    Ok(())
}

fn stat(ctx: &Ctx, a: &mut Args, o: Out) -> CmdResult {
    let p = path_arg(a.str()?);
    a.finish()?;
    let st = session(ctx, false)?.fs.stat(p).map_err(err)?;
    shown(o, |t| show::node(t, p, &st))?;
    Ok(())
}

fn get(ctx: &Ctx, a: &mut Args, o: Out) -> CmdResult {
    let raw = a.flag("--raw");
    let name = a.str()?;
    a.finish()?;
    let sess = session(ctx, false)?;
    let ns = sess.ns();
    let (h, bytes) = match ns.lookup(name).map_err(err)? {
        Value::Object(h) => (h, ns.store().get(&h).map_err(err)?),
        v => {
            return Err(fail!(
                "{} holds a {} capability, not an object",
                Shown(name),
                v.kind()
            ))
        }
    };
    let d = object::decode(&bytes).map_err(err)?;
    if raw {
        return match d.body {
            Body::Text(t) => write_raw(o, t.as_bytes()),
            Body::Bytes(b) => write_raw(o, &b),
            Body::Other { .. } => Err(fail!(
                "{}: schema {:#018x} is not one this build decodes",
                Shown(name),
                d.schema_id
            )),
        };
    }
    let mut r = Ok(());
    shown(o, |t| r = show::object(t, name, &h, &bytes))?;
    r.map_err(err)?;
    Ok(())
}

fn objects(ctx: &Ctx, a: &mut Args, o: Out) -> CmdResult {
    a.finish()?;
    let sess = session(ctx, false)?;
    let list = sess.store.list().map_err(err)?;
    shown(o, |t| show::objects(t, &list))?;
    Ok(())
}

fn names(ctx: &Ctx, a: &mut Args, o: Out) -> CmdResult {
    let prefix = a.opt_str().unwrap_or("");
    a.finish()?;
    let sess = session(ctx, false)?;
    // The image's owner holds the whole store: list each capability with the rights it was
    // bound with, as the monitor's read-write root does (the engine itself stays read-only).
    let root = capmon_storage::caps::NamespaceCap::root(sess.engine.clone(), Rights::RW);
    let list = root.list(prefix).map_err(err)?;
    shown(o, |t| show::names(t, &list))?;
    Ok(())
}

/// fsck never writes the image, yet redb's page-checksum check needs a writable open (it may
/// repair): the store's used bytes go to a sparse scratch file of the partition's size, and the
/// check runs there. The scratch file is removed afterwards.
fn run_fsck(ctx: &Ctx, a: &mut Args, o: Out) -> CmdResult {
    a.finish()?;
    let mut t = target(ctx, false)?;
    let sb = backend::probe(&mut t.dev).map_err(|e| fail!("{}: {}", t.name, e))?;
    let used = SUPERBLOCK_BYTES + sb.region_len;
    let scratch = std::env::temp_dir().join(format!(
        "capmon-store-fsck-{}-{}.img",
        std::process::id(),
        now_ns()
    ));
    let copy = (|| -> Result<(), String> {
        let f = std::fs::File::create(&scratch).map_err(|e| e.to_string())?;
        f.set_len(t.bytes).map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; 1 << 20];
        let mut off = 0u64;
        while off < used {
            let n = (used - off).min(buf.len() as u64).next_multiple_of(512) as usize;
            let n = n.min((t.bytes - off) as usize);
            t.dev
                .read(off / 512, &mut buf[..n])
                .map_err(|e| e.to_string())?;
            std::os::unix::fs::FileExt::write_all_at(&f, &buf[..n], off)
                .map_err(|e| e.to_string())?;
            off += n as u64;
        }
        Ok(())
    })();
    let result = copy
        .map_err(|e| fail!("{}: copying the store for fsck: {}", t.name, e))
        .and_then(|()| {
            let dev = image::open(&scratch, Layout::Raw, true)
                .map_err(CmdError::Failed)?
                .dev;
            let (engine, opened) = disk::open(dev, &t.name, true, now_ns())
                .map_err(|f| open_failure(&t.name, f, true))?;
            report_fsck(
                Session::disk(engine, format!("redb on {}", t.name), opened),
                o,
            )
        });
    let _ = std::fs::remove_file(&scratch);
    result
}

fn report_fsck(sess: Session, o: Out) -> CmdResult {
    let r = fsck::fsck(&*sess.engine, sess.disk.as_deref()).map_err(err)?;
    shown(o, |t| show::fsck(t, &r))?;
    if r.clean() {
        Ok(())
    } else {
        Err(fail!("fsck: {} problem(s)", r.problems.len()))
    }
}

fn info(ctx: &Ctx, a: &mut Args, o: Out) -> CmdResult {
    a.finish()?;
    let mut t = target(ctx, false)?;
    match &t.entry {
        Some(p) => line!(
            o,
            "partition: {}: LBA {}..={} ({} bytes), \"{}\", unique GUID {}",
            t.name,
            p.first_lba,
            p.last_lba,
            t.bytes,
            Shown(&p.name),
            p.unique_guid
        ),
        None => line!(o, "partition: {} ({} bytes)", t.name, t.bytes),
    }
    let sb = backend::probe(&mut t.dev).map_err(|e| fail!("{}: {}", t.name, e))?;
    line!(
        o,
        "superblock: format version {}, flags {:#x}, region {} bytes, partition {} bytes",
        sb.version,
        sb.flags,
        sb.region_len,
        sb.partition_bytes
    );
    line!(o, "store id: {}", hex(&sb.store_id));
    line!(o, "formatted: {} ns after the Unix epoch", sb.formatted_ns);
    if sb.region_len == 0 {
        line!(
            o,
            "store: formatted, no tables yet (the first writable open makes them)"
        );
        return Ok(());
    }
    let name = t.name.clone();
    let (engine, opened) =
        disk::open(t.dev, &name, false, now_ns()).map_err(|f| open_failure(&name, f, false))?;
    let sess = Session::disk(engine, format!("redb on {}", name), opened);
    let i = sess.store.info().map_err(err)?;
    line!(
        o,
        "objects {} ({} bytes), names {}, files {}, directories {}, generation {}",
        i.objects,
        i.object_bytes,
        i.names,
        i.files,
        i.dirs,
        i.generation
    );
    Ok(())
}
