//! The storage commands: `store` (objects), `ns` (names), `fs` (files, read-only here) and
//! `caps` (the capabilities the monitor holds). Every command acts through a capability of the
//! session (capmon_storage::session): the Store, the innermost pushed Namespace, the root
//! Directory; none reaches the engine around them.
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use capmon_block::{gpt, Pattern, Registry};
use capmon_hal::Clock;
use capmon_shell::out::HumanSize;
use capmon_shell::{bad_arg, fail, outln, Args, CmdError, CmdResult, Command};
use capmon_storage::caps::Value;
use capmon_storage::engine::ClockFn;
use capmon_storage::name::Shown;
use capmon_storage::object::{self, hex};
use capmon_storage::session::Session;
use capmon_storage::{fsck, show, Rights, StoreError};
use core::fmt::Write;

/// What the storage commands need from the machine.
pub trait StoreHost {
    /// The monitor's capabilities.
    fn session(&mut self) -> &mut Session;
    /// Formats `dev` as a capmon store and makes it the session's store.
    fn store_format(&mut self, dev: &str) -> Result<String, CmdError>;
    fn store_registry(&mut self) -> &mut Registry;
    fn store_clock(&self) -> &dyn Clock;
    /// The same clock as a function, for the engine to stamp file times with.
    fn store_time(&self) -> ClockFn;
    /// Runs `there` on CPU `cpu` while `here` runs on this CPU, at the same time; returns
    /// both reports (`fs race`). An error if `cpu` is this one, offline, or faulted.
    fn store_race(
        &mut self,
        cpu: usize,
        here: Work,
        there: Work,
    ) -> Result<(String, String), CmdError>;
}

/// One CPU's part of a race: it runs on its own and returns its report.
pub type Work = alloc::boxed::Box<dyn FnOnce() -> String + Send>;

pub(crate) fn err(e: StoreError) -> CmdError {
    fail!("{} [{}]", e, e.code_name())
}

const STORE_USAGE: &str = "store [put NAME TEXT... | put NAME --pattern P SIZE | get NAME | ls | \
rm NAME | stat NAME | fsck | format DEV -f | reopen | bench [-n N] [SIZE...]]";
const STORE_HELP: &str = "\
store                        the store: engine, device, size, objects, bytes, generation
store put NAME TEXT...       a TextBody object of TEXT, bound to NAME (replacing its value)
store put NAME --pattern P SIZE
                             a BytesBody object of SIZE bytes of pattern P (see blk)
store get NAME               the object NAME is bound to, decoded
store ls                     every object: hash, size, schema, names binding it
store rm NAME                unbind NAME; the object goes when no name binds it
store stat NAME              the object's hash, size, schema, version, references
store fsck                   check every object, name, file and redb's own structure
store format DEV -f          make DEV (a partition) an empty store: erases it
store reopen                 close the store and open the data partition again (after a
                             command was stopped while it held the store: `busy` errors)
store bench [-n N] [SIZE...] put (durable) then get N objects of each SIZE (default
                             200 of 4K and 64K); ops/s and mean latency
Objects are Cap'n Proto messages in an Object envelope, named by the SHA-256 of their
canonical form; names live in the current namespace (see ns).";

const NS_USAGE: &str = "ns [ls [PREFIX] | lookup NAME | bind NAME TARGET [-r RIGHTS] [-f] | \
unbind NAME | sub PREFIX | ro | enter NAME | pop]";
const NS_HELP: &str = "\
ns                     the namespace stack commands act in (innermost last)
ns ls [PREFIX]         names (under PREFIX): kind, rights or hash
ns lookup NAME         what NAME holds
ns bind NAME TARGET [-r RIGHTS] [-f]
                       bind NAME to TARGET: a 64-digit object hash, @OTHER (the value of
                       another name), store, ns PREFIX, dir PATH or file PATH (from the
                       monitor's own capabilities); -r narrows a capability (r, rw); -f
                       replaces an existing binding
ns unbind NAME         remove NAME
ns sub PREFIX          push a namespace confined to PREFIX
ns ro                  push a read-only view of the current namespace
ns enter NAME          push the namespace capability NAME holds (as the lookup returns it)
ns pop                 drop the innermost pushed namespace";

pub fn commands<S: StoreHost>() -> Vec<Command<S>> {
    vec![
        Command {
            name: "store",
            group: "storage",
            subcommands: &[
                "put", "get", "ls", "rm", "stat", "fsck", "format", "reopen", "bench",
            ],
            usage: STORE_USAGE,
            help: "the object store: put, get, list, remove, fsck, format, bench",
            long_help: STORE_HELP,
            run: store::<S>,
        },
        Command {
            name: "ns",
            group: "storage",
            subcommands: &[
                "ls", "lookup", "bind", "unbind", "sub", "ro", "enter", "pop",
            ],
            usage: NS_USAGE,
            help: "names: list, bind, unbind; confine (sub) and attenuate (ro)",
            long_help: NS_HELP,
            run: ns::<S>,
        },
        Command {
            name: "caps",
            group: "storage",
            subcommands: &[],
            usage: "caps",
            help: "the capabilities the monitor holds, with their rights",
            long_help:
                "caps   every capability of the monitor's root set and the pushed namespaces",
            run: caps::<S>,
        },
    ]
}

// ---- store ----

fn store<S: StoreHost>(s: &mut S, a: &mut Args, o: &mut dyn Write) -> CmdResult {
    match a.opt_str() {
        None => info(s, o),
        Some("put") => put(s, a, o),
        Some("get") => get(s, a, o),
        Some("ls") => {
            a.finish()?;
            ls_objects(s, o)
        }
        Some("rm") => {
            let name = a.str()?;
            a.finish()?;
            s.session().ns().unbind(name).map_err(err)?;
            outln!(o, "removed {}", Shown(name));
            Ok(())
        }
        Some("stat") => stat(s, a, o),
        Some("fsck") => {
            a.finish()?;
            run_fsck(s, o)
        }
        Some("format") => {
            let force = a.flag("-f");
            let dev = a.str()?;
            a.finish()?;
            if !force {
                return Err(fail!(
                    "this erases {}: type `store format {} -f` to go ahead",
                    dev,
                    dev
                ));
            }
            let msg = s.store_format(dev)?;
            outln!(o, "{}", msg);
            Ok(())
        }
        Some("bench") => bench(s, a, o),
        Some("reopen") => {
            a.finish()?;
            reopen(s, o)
        }
        Some(w) => Err(bad_arg!("unknown subcommand '{}'", w)),
    }
}

/// `store reopen`: the session afresh from the data partition. A store a stopped command left
/// locked is not closed (closing would wait on that lock): it is left behind, and said so.
fn reopen<S: StoreHost>(s: &mut S, o: &mut dyn Write) -> CmdResult {
    let busy = matches!(s.session().store.info(), Err(StoreError::Busy(_)));
    let old = core::mem::replace(s.session(), Session::ram(String::from("ram (reopening)")));
    if busy {
        core::mem::forget(old);
        outln!(
            o,
            "the old store was locked by a stopped command: left open, its memory not reclaimed"
        );
    } else {
        drop(old);
    }
    let clock = s.store_time();
    let new = boot_session(s.store_registry(), clock);
    *s.session() = new;
    info(s, o)
}

fn info<S: StoreHost>(s: &mut S, o: &mut dyn Write) -> CmdResult {
    let sess = s.session();
    let i = sess.store.info().map_err(err)?;
    outln!(
        o,
        "store: {} ({})",
        sess.note,
        if i.read_only {
            "read-only"
        } else {
            "read-write"
        }
    );
    if i.engine == "redb" {
        outln!(
            o,
            "device {}: format {}, {} used of {}",
            i.device,
            i.format_version,
            HumanSize(i.used),
            HumanSize(i.capacity)
        );
    }
    outln!(
        o,
        "objects {} ({} bytes), names {}, files {}, directories {}, generation {}",
        i.objects,
        i.object_bytes,
        i.names,
        i.files,
        i.dirs,
        i.generation
    );
    if let Some(d) = &sess.disk {
        let st = d.io_stats();
        outln!(
            o,
            "i/o since open: redb {} reads ({} bytes, {} pages from the cache), {} writes ({} bytes); \
             device {} reads, {} writes ({} batches), {} flushes; {} partial sectors",
            st.reads,
            st.bytes_read,
            st.cache_hits,
            st.writes,
            st.bytes_written,
            st.device_reads,
            st.device_writes,
            st.write_batches,
            st.flushes,
            st.rmw_sectors
        );
    }
    Ok(())
}

fn put<S: StoreHost>(s: &mut S, a: &mut Args, o: &mut dyn Write) -> CmdResult {
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
    let ns = s.session().ns();
    let h = ns.put(name, &msg, true).map_err(err)?;
    let st = ns.store().stat(&h).map_err(err)?;
    show::put(o, name, &st);
    Ok(())
}

/// "a namespace", "an object".
fn a_kind(kind: &str) -> String {
    if kind.starts_with(['a', 'e', 'i', 'o', 'u']) {
        format!("an {}", kind)
    } else {
        format!("a {}", kind)
    }
}

/// The object `name` is bound to in the current namespace.
fn object_of<S: StoreHost>(s: &mut S, name: &str) -> Result<(object::Hash, Vec<u8>), CmdError> {
    let ns = s.session().ns();
    match ns.lookup(name).map_err(err)? {
        Value::Object(h) => Ok((h, ns.store().get(&h).map_err(err)?)),
        v => Err(fail!(
            "{} holds a {} capability, not an object",
            Shown(name),
            v.kind()
        )),
    }
}

fn get<S: StoreHost>(s: &mut S, a: &mut Args, o: &mut dyn Write) -> CmdResult {
    let name = a.str()?;
    a.finish()?;
    let (h, bytes) = object_of(s, name)?;
    show::object(o, name, &h, &bytes).map_err(err)?;
    Ok(())
}

fn stat<S: StoreHost>(s: &mut S, a: &mut Args, o: &mut dyn Write) -> CmdResult {
    let name = a.str()?;
    a.finish()?;
    let (h, _) = object_of(s, name)?;
    let st = s.session().ns().store().stat(&h).map_err(err)?;
    outln!(o, "name     {}", Shown(name));
    outln!(o, "hash     {}", hex(&st.hash));
    outln!(o, "size     {} bytes", st.size);
    outln!(
        o,
        "schema   {:#018x} ({}) version {}",
        st.schema_id,
        object::schema_name(st.schema_id),
        st.version
    );
    outln!(o, "refs     {}", st.refs);
    Ok(())
}

fn ls_objects<S: StoreHost>(s: &mut S, o: &mut dyn Write) -> CmdResult {
    let list = s.session().store.list().map_err(err)?;
    show::objects(o, &list);
    Ok(())
}

pub(crate) fn run_fsck<S: StoreHost>(s: &mut S, o: &mut dyn Write) -> CmdResult {
    let sess = s.session();
    let r = fsck::fsck(&*sess.engine, sess.disk.as_deref()).map_err(err)?;
    show::fsck(o, &r);
    if r.clean() {
        Ok(())
    } else {
        Err(fail!("fsck: {} problem(s)", r.problems.len()))
    }
}

const BENCH_DEFAULT_N: u64 = 200;
const BENCH_MAX_N: u64 = 100_000;

fn bench<S: StoreHost>(s: &mut S, a: &mut Args, o: &mut dyn Write) -> CmdResult {
    let mut n = BENCH_DEFAULT_N;
    let mut sizes = Vec::new();
    while let Some(w) = a.opt_str() {
        if w == "-n" {
            n = a.u64("N")?;
            if !(1..=BENCH_MAX_N).contains(&n) {
                return Err(bad_arg!("N must be 1..={}", BENCH_MAX_N));
            }
        } else {
            let sz = capmon_shell::parse::size(w).map_err(|e| bad_arg!("SIZE: {}", e))?;
            if sz == 0 || sz > object::MAX_OBJECT_BYTES as u64 / 2 {
                return Err(bad_arg!(
                    "SIZE must be 1..={}",
                    object::MAX_OBJECT_BYTES / 2
                ));
            }
            sizes.push(sz as usize);
        }
    }
    if sizes.is_empty() {
        sizes = vec![4096, 65536];
    }
    let ns = s.session().ns();
    let store = ns.store();
    // A run's names live under one prefix, removed afterwards.
    let t0 = s.store_clock().now_ns();
    let prefix = format!("bench-{:x}", t0);
    for &size in &sizes {
        // The objects are made before the clock starts, as the Linux helper's buffers are:
        // only the store's own work is timed. Distinct bytes each time: the first 16 bytes are
        // the run and the index.
        let mut data = vec![0u8; size];
        let mut msgs = Vec::with_capacity(n as usize);
        for i in 0..n {
            Pattern::Seed(t0 ^ i).fill(0, &mut data);
            data[..8].copy_from_slice(&t0.to_le_bytes());
            data[8..16].copy_from_slice(&i.to_le_bytes());
            msgs.push(object::bytes(&data));
        }
        let names: Vec<String> = (0..n)
            .map(|i| format!("{}/{}-{}", prefix, size, i))
            .collect();
        // What each get must return: the canonical form the store keeps.
        let mut want = Vec::with_capacity(n as usize);
        for m in &msgs {
            want.push(object::check(m).map_err(err)?.canonical);
        }
        let mut hashes = Vec::with_capacity(n as usize);
        let start = s.store_clock().now_ns();
        for (name, msg) in names.iter().zip(&msgs) {
            hashes.push(ns.put(name, msg, true).map_err(err)?);
        }
        let put_ns = s.store_clock().now_ns() - start;
        report(o, "put", size, n, put_ns);
        // Reading back checks every byte, as the Linux helper does.
        let start = s.store_clock().now_ns();
        for (i, h) in hashes.iter().enumerate() {
            let bytes = store.get(h).map_err(err)?;
            if bytes != want[i] {
                return Err(fail!("object {} read back wrong", i));
            }
        }
        let get_ns = s.store_clock().now_ns() - start;
        report(o, "get", size, n, get_ns);
    }
    for &size in &sizes {
        for i in 0..n {
            ns.unbind(&format!("{}/{}-{}", prefix, size, i))
                .map_err(err)?;
        }
    }
    Ok(())
}

fn report(o: &mut dyn Write, what: &str, size: usize, n: u64, ns: u64) {
    let ns = ns.max(1);
    let ops_x10 = n as u128 * 10_000_000_000 / ns as u128;
    outln!(
        o,
        "store bench {} {}: {} ops in {} ms: {}.{} ops/s, mean {} us",
        what,
        size,
        n,
        ns / 1_000_000,
        ops_x10 / 10,
        ops_x10 % 10,
        ns / n / 1000
    );
}

// ---- ns ----

fn ns<S: StoreHost>(s: &mut S, a: &mut Args, o: &mut dyn Write) -> CmdResult {
    match a.opt_str() {
        None => {
            let sess = s.session();
            outln!(o, "0  {}  {}", sess.root.rights(), sess.root.describe());
            for (i, n) in sess.stack.iter().enumerate() {
                outln!(o, "{}  {}  {}", i + 1, n.rights(), n.describe());
            }
            Ok(())
        }
        Some("ls") => {
            let prefix = a.opt_str().unwrap_or("");
            a.finish()?;
            let list = s.session().ns().list(prefix).map_err(err)?;
            show::names(o, &list);
            Ok(())
        }
        Some("lookup") => {
            let name = a.str()?;
            a.finish()?;
            let v = s.session().ns().lookup(name).map_err(err)?;
            match v.rights() {
                Some(r) => outln!(o, "{}: {} ({})", Shown(name), v.describe(), r),
                None => outln!(o, "{}: object {}", Shown(name), v.describe()),
            }
            Ok(())
        }
        Some("bind") => bind(s, a, o),
        Some("unbind") => {
            let name = a.str()?;
            a.finish()?;
            s.session().ns().unbind(name).map_err(err)?;
            outln!(o, "unbound {}", Shown(name));
            Ok(())
        }
        Some("sub") => {
            let prefix = a.str()?;
            a.finish()?;
            let sub = s.session().ns().sub(prefix).map_err(err)?;
            outln!(o, "now in {} ({})", sub.describe(), sub.rights());
            s.session().stack.push(sub);
            Ok(())
        }
        Some("ro") => {
            a.finish()?;
            let ro = s.session().ns().read_only();
            outln!(o, "now in {} ({})", ro.describe(), ro.rights());
            s.session().stack.push(ro);
            Ok(())
        }
        Some("enter") => {
            let name = a.str()?;
            a.finish()?;
            match s.session().ns().lookup(name).map_err(err)? {
                Value::Namespace(n) => {
                    outln!(o, "now in {} ({})", n.describe(), n.rights());
                    s.session().stack.push(n);
                    Ok(())
                }
                v => Err(fail!(
                    "{} holds {}, not a namespace",
                    Shown(name),
                    a_kind(v.kind())
                )),
            }
        }
        Some("pop") => {
            a.finish()?;
            let sess = s.session();
            if sess.stack.pop().is_none() {
                return Err(fail!("no namespace pushed"));
            }
            let cur = sess.ns();
            outln!(o, "now in {} ({})", cur.describe(), cur.rights());
            Ok(())
        }
        Some(w) => Err(bad_arg!("unknown subcommand '{}'", w)),
    }
}

fn bind<S: StoreHost>(s: &mut S, a: &mut Args, o: &mut dyn Write) -> CmdResult {
    let replace = a.flag("-f");
    let rights = match a.words_flag_value("-r") {
        Some(Ok(r)) => Some(Rights::parse(r).ok_or_else(|| bad_arg!("RIGHTS: r, rw, ra or rwa"))?),
        Some(Err(())) => return Err(bad_arg!("-r needs RIGHTS")),
        None => None,
    };
    let name = a.str()?;
    let target = a.str()?;
    let sess = s.session();
    let value =
        match target {
            "store" => Value::Store(sess.store.clone()),
            "ns" => Value::Namespace(sess.root.sub(a.str()?).map_err(err)?),
            "dir" => Value::Directory(
                sess.fs
                    .open_dir(crate::fs::path_arg(a.str()?))
                    .map_err(err)?,
            ),
            "file" => Value::File(
                sess.fs
                    .open(crate::fs::path_arg(a.str()?), Rights::READ)
                    .map_err(err)?,
            ),
            t if t.starts_with('@') => sess.ns().lookup(&t[1..]).map_err(err)?,
            t => Value::Object(object::parse_hash(t).ok_or_else(|| {
                bad_arg!("TARGET: a 64-digit hash, @NAME, store, ns, dir or file")
            })?),
        };
    a.finish()?;
    let value = match rights {
        Some(r) => value.restrict(r),
        None => value,
    };
    sess.ns().bind(name, value.clone(), replace).map_err(err)?;
    match value.rights() {
        Some(r) => outln!(o, "bound {}: {} ({})", Shown(name), value.describe(), r),
        None => outln!(o, "bound {}: object {}", Shown(name), value.describe()),
    }
    Ok(())
}

/// Helpers on `Args` this family needs.
trait ArgsExt<'a> {
    /// Removes `flag VALUE` wherever it appears: `Some(Ok(value))`, `Some(Err(()))` if the flag
    /// has no value, `None` if it is absent.
    fn words_flag_value(&mut self, flag: &str) -> Option<Result<&'a str, ()>>;
}

impl<'a> ArgsExt<'a> for Args<'a> {
    fn words_flag_value(&mut self, flag: &str) -> Option<Result<&'a str, ()>> {
        let mut words = self.rest();
        let r = match words.iter().position(|w| *w == flag) {
            None => None,
            Some(i) if i + 1 < words.len() => {
                let v = words.remove(i + 1);
                words.remove(i);
                Some(Ok(v))
            }
            Some(i) => {
                words.remove(i);
                Some(Err(()))
            }
        };
        *self = Args::new(words);
        r
    }
}

// ---- caps ----

fn caps<S: StoreHost>(s: &mut S, a: &mut Args, o: &mut dyn Write) -> CmdResult {
    a.finish()?;
    let sess = s.session();
    outln!(o, "name   kind       rights  designates");
    outln!(
        o,
        "store  store      {}     {} ({})",
        sess.store.rights(),
        sess.store.describe(),
        sess.note
    );
    outln!(
        o,
        "ns     namespace  {}     {}",
        sess.root.rights(),
        sess.root.describe()
    );
    outln!(
        o,
        "fs     directory  {}     {}",
        sess.fs.rights(),
        sess.fs.describe()
    );
    for (i, n) in sess.stack.iter().enumerate() {
        outln!(
            o,
            "ns.{}   namespace  {}     {}",
            i + 1,
            n.rights(),
            n.describe()
        );
    }
    Ok(())
}

/// The first partition of the registry with the capmon data type, if any.
pub fn data_partition(reg: &Registry) -> Option<String> {
    reg.entries().iter().find_map(|e| match &e.partition {
        Some((_, p)) if p.type_guid == gpt::CAPMON_DATA => Some(e.name.clone()),
        _ => None,
    })
}

/// Opens the store on `dev` from the registry (for boot and `store format`).
pub fn open_session(
    reg: &Registry,
    dev: &str,
    clock: ClockFn,
) -> Result<(Session, Option<String>), CmdError> {
    let e = reg
        .entry(dev)
        .ok_or_else(|| fail!("no such block device '{}'", dev))?;
    let (sess, failure) = Session::open_or_ram(e.dev.clone(), dev, clock);
    Ok((sess, failure.map(|f| f.to_string())))
}

/// The session for a machine at boot: the store on the first capmon data partition, or a RAM
/// store saying why not. Logs what it found.
pub fn boot_session(reg: &Registry, clock: ClockFn) -> Session {
    let Some(dev) = data_partition(reg) else {
        log::info!("store: no capmon data partition; using a RAM store");
        return Session::ram_clocked(String::from("ram (no capmon data partition)"), clock);
    };
    match open_session(reg, &dev, clock) {
        Ok((sess, None)) => {
            match sess.store.info() {
                Ok(i) => log::info!(
                    "store: redb on {}: {} objects, {} names, {} files, generation {}",
                    dev,
                    i.objects,
                    i.names,
                    i.files,
                    i.generation
                ),
                Err(e) => log::warn!("store: {}: {}", dev, e),
            }
            sess
        }
        Ok((sess, Some(why))) => {
            log::warn!("store: {}: {}; using a RAM store", dev, why);
            sess
        }
        Err(e) => {
            log::warn!("store: {:?}", e);
            Session::ram_clocked(String::from("ram"), clock)
        }
    }
}

/// `store format DEV -f`: closes the session's store if it lives on DEV, writes a fresh
/// superblock, opens the empty store and makes it the session's.
pub fn format_device(
    reg: &Registry,
    sess: &mut Session,
    dev: &str,
    clock: ClockFn,
) -> Result<String, CmdError> {
    let e = reg
        .entry(dev)
        .ok_or_else(|| fail!("no such block device '{}'", dev))?;
    if e.partition.is_none() && matches!(e.table, capmon_block::TableState::Gpt(_)) {
        return Err(fail!(
            "{} holds a GPT: format one of its partitions, not the whole disk",
            dev
        ));
    }
    // Whatever store is open goes first (it may be on DEV): its engine releases the device.
    *sess = Session::ram(String::from("ram (formatting)"));
    let mut d = capmon_storage::session::SharedDev::new(e.dev.clone());
    let now_ns = clock();
    capmon_storage::backend::format(&mut d, now_ns ^ 0x6361_706d_6f6e, now_ns)
        .map_err(|e| fail!("{}: {}", dev, e))?;
    let (new, failure) = Session::open_or_ram(e.dev.clone(), dev, clock);
    *sess = new;
    match failure {
        None => Ok(format!("formatted {}: an empty store", dev)),
        Some(f) => Err(fail!("{}: formatted, but opening failed: {}", dev, f)),
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use alloc::boxed::Box;
    use capmon_block::gpt::build::{self, Spec};
    use capmon_block::gpt::{Guid, CAPMON_DATA};
    use capmon_block::{Kind, RamDisk};
    use capmon_shell::parse::words;
    use core::cell::Cell;
    use sha2::{Digest, Sha256};

    struct StepClock(Cell<u64>);
    impl Clock for StepClock {
        fn now_ns(&self) -> u64 {
            self.0.set(self.0.get() + 1000);
            self.0.get()
        }
    }

    struct Host {
        reg: Registry,
        sess: Session,
        clock: StepClock,
    }

    impl StoreHost for Host {
        fn session(&mut self) -> &mut Session {
            &mut self.sess
        }
        fn store_format(&mut self, dev: &str) -> Result<String, CmdError> {
            format_device(&self.reg, &mut self.sess, dev, test_clock)
        }
        fn store_registry(&mut self) -> &mut Registry {
            &mut self.reg
        }
        fn store_clock(&self) -> &dyn Clock {
            &self.clock
        }
        fn store_time(&self) -> ClockFn {
            test_clock
        }
        fn store_race(
            &mut self,
            cpu: usize,
            here: Work,
            there: Work,
        ) -> Result<(String, String), CmdError> {
            if cpu != 1 {
                return Err(CmdError::Failed(alloc::format!("no CPU {}", cpu)));
            }
            // Two host threads: a real race, as two CPUs run one in the kernel.
            let t = std::thread::spawn(there);
            let mine = here();
            let theirs = t
                .join()
                .map_err(|_| CmdError::Failed("CPU 1 panicked".into()))?;
            Ok((mine, theirs))
        }
    }

    /// A clock that moves 1 us at every reading (file times are then distinct and ordered).
    fn test_clock() -> u64 {
        static T: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);
        T.fetch_add(1000, core::sync::atomic::Ordering::Relaxed) + 1000
    }

    /// vda: 8 MiB, a GPT with vda1 (capmon data, LBA 2048..16383), blank or as given.
    fn host_with(img: Option<Vec<u8>>) -> Host {
        let img = img.unwrap_or_else(|| {
            let mut img = vec![0u8; 8 << 20];
            assert!(build::write(
                &mut img,
                512,
                Guid([3; 16]),
                &[Spec {
                    type_guid: CAPMON_DATA,
                    unique_guid: Guid([4; 16]),
                    first: 2048,
                    last: 16383 - 40,
                    name: "data",
                }]
            ));
            img
        });
        let mut reg = Registry::new();
        let vda = reg.add(
            Kind::Virtio,
            Box::new(RamDisk::from_image(img, 512).unwrap()),
        );
        reg.scan_partitions(&vda).unwrap();
        let sess = boot_session(&reg, test_clock);
        Host {
            reg,
            sess,
            clock: StepClock(Cell::new(0)),
        }
    }

    fn run(h: &mut Host, line: &str) -> Result<String, CmdError> {
        let mut cmds = commands::<Host>();
        cmds.extend(crate::fs::commands::<Host>());
        let mut w = words(line);
        let name = w.remove(0);
        let c = cmds.iter().find(|c| c.name == name).unwrap();
        let mut a = Args::new(w);
        let mut out = String::new();
        (c.run)(h, &mut a, &mut out).map(|_| out)
    }

    fn failed(r: Result<String, CmdError>) -> String {
        match r {
            Err(CmdError::Failed(m)) | Err(CmdError::BadArg(m)) => m,
            other => panic!("expected an error, got {:?}", other),
        }
    }

    fn image(h: &Host) -> Vec<u8> {
        let e = h.reg.entry("vda").unwrap();
        let mut d = e.dev.borrow_mut();
        let mut v = vec![0u8; (d.capacity() * 512) as usize];
        d.read(0, &mut v).unwrap();
        v
    }

    #[test]
    fn fs_bench_prints_every_row_and_leaves_the_store_as_it_found_it() {
        let mut h = host_with(None);
        run(&mut h, "store format vda1 -f").unwrap();
        run(&mut h, "fs put keep hello").unwrap();
        let before = run(&mut h, "fs ls").unwrap();
        let out = run(&mut h, "fs bench -n 20 -m 2").unwrap();
        let rows = [
            "fs bench create+write 4K+sync: 20 ops in ",
            "fs bench creates: first 2 at ",
            "fs bench write 1M+sync: 2 ops in ",
            "fs bench read 1M: 2 ops in ",
            "fs bench open+read 4K: 20 ops in ",
            "fs bench rename+1 sync: 20 ops in ",
        ];
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), rows.len(), "{}", out);
        for (l, r) in lines.iter().zip(rows) {
            assert!(l.starts_with(r), "{} does not start with {}", l, r);
        }
        assert!(
            lines[0].ends_with(" MB/s") && !lines[5].contains("MB/s"),
            "{}",
            out
        );
        assert_eq!(run(&mut h, "fs ls").unwrap(), before);
        assert!(run(&mut h, "fs fsck").unwrap().contains("clean"));
        assert!(failed(run(&mut h, "fs bench -n 9")).contains("10..="));
        assert!(failed(run(&mut h, "fs bench -m 0")).contains("MIB"));
    }

    #[test]
    fn a_blank_partition_is_named_and_left_alone_until_formatted() {
        let mut h = host_with(None);
        let before = image(&h);
        let out = run(&mut h, "store").unwrap();
        assert!(out.contains("vda1: not formatted"), "{}", out);
        // The RAM store works meanwhile, and nothing reaches the disk.
        run(&mut h, "store put a b").unwrap();
        assert!(run(&mut h, "store fsck").unwrap().contains("fsck: clean"));
        assert_eq!(image(&h), before);
        assert!(failed(run(&mut h, "store format vda1")).contains("-f"));
        assert!(failed(run(&mut h, "store format vda -f")).contains("holds a GPT"));
        assert_eq!(image(&h), before);
        assert_eq!(
            run(&mut h, "store format vda1 -f").unwrap(),
            "formatted vda1: an empty store\n"
        );
        assert!(run(&mut h, "store")
            .unwrap()
            .starts_with("store: redb on vda1 (read-write)"));
    }

    #[test]
    fn objects_survive_a_new_session_on_the_same_disk() {
        let mut h = host_with(None);
        run(&mut h, "store format vda1 -f").unwrap();
        let put = run(&mut h, "store put greeting hello there").unwrap();
        assert!(put.starts_with("put greeting: "), "{}", put);
        run(&mut h, "store put blob --pattern seed:3 100000").unwrap();
        let img = image(&h);
        h.sess = Session::ram(String::from("closed"));
        let mut h2 = host_with(Some(img));
        let got = run(&mut h2, "store get greeting").unwrap();
        assert!(got.ends_with("text: hello there\n"), "{}", got);
        let mut want = vec![0u8; 100000];
        Pattern::parse("seed:3").unwrap().fill(0, &mut want);
        let sum: [u8; 32] = Sha256::digest(&want).into();
        let got = run(&mut h2, "store get blob").unwrap();
        assert!(
            got.contains(&format!("data: 100000 bytes, sha256 {}", hex(&sum))),
            "{}",
            got
        );
        let ls = run(&mut h2, "ns ls").unwrap();
        assert!(ls.ends_with("2 name(s)\n"), "{}", ls);
        assert!(run(&mut h2, "store fsck").unwrap().contains("fsck: clean"));
    }

    #[test]
    fn files_change_at_the_prompt_and_persist_after_sync() {
        let mut h = host_with(None);
        run(&mut h, "store format vda1 -f").unwrap();
        assert_eq!(run(&mut h, "fs mkdir /a").unwrap(), "mkdir /a\n");
        assert_eq!(run(&mut h, "fs mkdir a/b").unwrap(), "mkdir /a/b\n");
        assert_eq!(
            run(&mut h, "fs create a/empty").unwrap(),
            "create /a/empty\n"
        );
        assert_eq!(
            run(&mut h, "fs put a/f hello world").unwrap(),
            "put /a/f: 11 bytes\n"
        );
        assert_eq!(
            run(&mut h, "fs write a/f 100000 70000 seed:9").unwrap(),
            "wrote 70000 bytes at 100000: /a/f is 170000 bytes\n"
        );
        assert_eq!(
            run(&mut h, "fs append a/f !").unwrap(),
            "appended 1 bytes at 170000: /a/f is 170001 bytes\n"
        );
        assert_eq!(
            run(&mut h, "fs append a/log --pattern inc 1200K").unwrap_err(),
            CmdError::Failed(String::from("not found: a/log [notFound]"))
        );
        run(&mut h, "fs create a/log").unwrap();
        assert_eq!(
            run(&mut h, "fs append a/log --pattern inc 1200K").unwrap(),
            "appended 1228800 bytes at 0: /a/log is 1228800 bytes\n"
        );
        assert_eq!(
            run(&mut h, "fs truncate a/f 150000").unwrap(),
            "truncated /a/f: 170001 -> 150000 bytes\n"
        );
        assert_eq!(
            run(&mut h, "fs mv a/f a/b/g").unwrap(),
            "renamed /a/f -> /a/b/g\n"
        );
        // Refusals, each with its code.
        for (cmd, code) in [
            ("fs mkdir a", "[exists]"),
            ("fs create a/b/g", "[exists]"),
            ("fs rm a", "[notEmpty]"),
            ("fs rm nothing", "[notFound]"),
            ("fs mv a a/b/c", "[invalidName]"),
            ("fs put ../x y", "[invalidName]"),
            ("fs put a//x y", "[invalidName]"),
            ("fs write a 0 1 0", "[isDirectory]"),
            ("fs truncate a/b/g/x 0", "[notDirectory]"),
        ] {
            let m = failed(run(&mut h, cmd));
            assert!(m.ends_with(code), "{}: {}", cmd, m);
        }
        assert!(run(&mut h, "fs sync").unwrap().starts_with("synced in "));
        let df = run(&mut h, "fs df").unwrap();
        assert!(df.contains("files 3, directories 3"), "{}", df);
        assert!(df.contains("commits waiting for sync 0"), "{}", df);
        // What the prompt computed, against the bytes the verbs describe.
        let mut want = vec![0u8; 150000];
        want[..11].copy_from_slice(b"hello world");
        Pattern::Seed(9).fill(100000, &mut want[100000..]);
        let sum: [u8; 32] = Sha256::digest(&want).into();
        assert_eq!(
            run(&mut h, "fs sum a/b/g").unwrap(),
            format!("sha256 {}  150000 bytes\n", hex(&sum))
        );
        // A change after the last sync is made durable by closing as power-off does.
        assert_eq!(
            run(&mut h, "fs rm -r a/b").unwrap(),
            "removed /a/b: 2 nodes\n"
        );
        // On this 7 MiB partition every commit is durable (the near-full rule), so nothing
        // waits; whatever `fs df` says waits is what closing syncs.
        let df = run(&mut h, "fs df").unwrap();
        let waiting: u64 = df
            .split("commits waiting for sync ")
            .nth(1)
            .and_then(|t| t.split(',').next())
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("{}", df));
        assert_eq!(h.sess.sync_for_close().unwrap(), waiting);
        assert_eq!(h.sess.sync_for_close().unwrap(), 0);
        let img = image(&h);
        h.sess = Session::ram(String::from("closed"));
        let mut h2 = host_with(Some(img));
        let ls = run(&mut h2, "fs ls a").unwrap();
        assert_eq!(
            ls, "f            0  empty\nf      1228800  log\n2 entries\n",
            "{}",
            ls
        );
        let mut inc = vec![0u8; 1200 << 10];
        Pattern::Inc.fill(0, &mut inc);
        let sum: [u8; 32] = Sha256::digest(&inc).into();
        assert_eq!(
            run(&mut h2, "fs sum a/log").unwrap(),
            format!("sha256 {}  1228800 bytes\n", hex(&sum))
        );
        assert!(run(&mut h2, "fs fsck").unwrap().contains("fsck: clean"));
    }

    #[test]
    fn two_threads_race_on_one_file_and_one_directory_and_the_policy_holds() {
        for disk in [false, true] {
            let mut h = host_with(None);
            if disk {
                run(&mut h, "store format vda1 -f").unwrap();
            }
            let out = run(&mut h, "fs race -n 60").unwrap();
            assert!(
                out.ends_with("the policy held: one writer at a time, one winner per name\n"),
                "{}",
                out
            );
            assert!(out.contains("fsck: clean"), "{}", out);
            for what in [
                "create /race/d/n*",
                "mv /race/d/n* /race/e/m*",
                "rm /race/e/m*",
            ] {
                let line = out.lines().find(|l| l.starts_with(what)).unwrap();
                let n: Vec<u64> = line
                    .split(|c: char| !c.is_ascii_digit())
                    .filter_map(|w| w.parse().ok())
                    .collect();
                // names, won, won, lost, lost, busy: every name had one winner.
                assert_eq!(n[1] + n[2], 60, "{}", line);
            }
            // The file: whole blocks, as many as the holds.
            let f = run(&mut h, "fs stat race/f").unwrap();
            let size: u64 = f
                .lines()
                .find_map(|l| l.strip_prefix("size        "))
                .and_then(|v| v.trim_end_matches(" bytes").parse().ok())
                .unwrap();
            assert_eq!(size % (8 * 15), 0, "{}", out);
            assert!(size > 0);
            assert!(failed(run(&mut h, "fs race")).contains("[exists]"));
            assert!(failed(run(&mut h, "fs race -n 0 1")).contains("N must be"));
            assert!(failed(
                run(&mut h, "fs rm -r race")
                    .map(|_| String::new())
                    .and_then(|_| run(&mut h, "fs race 2"))
            )
            .contains("no CPU 2"));
        }
    }

    #[test]
    fn namespaces_confine_and_attenuate_at_the_prompt() {
        let mut h = host_with(None);
        run(&mut h, "store put top x").unwrap();
        run(&mut h, "ns sub apps").unwrap();
        run(&mut h, "store put mine y").unwrap();
        assert!(failed(run(&mut h, "store get top")).contains("[notFound]"));
        assert!(failed(run(&mut h, "store get ../top")).contains("[invalidName]"));
        run(&mut h, "ns pop").unwrap();
        assert!(run(&mut h, "store get apps/mine")
            .unwrap()
            .ends_with("text: y\n"));
        assert_eq!(
            run(&mut h, "ns bind appsns ns apps").unwrap(),
            "bound appsns: namespace apps/ (rw-)\n"
        );
        run(&mut h, "ns ro").unwrap();
        for cmd in [
            "store put z w",
            "store rm top",
            "ns unbind top",
            "ns bind q @top",
        ] {
            assert!(
                failed(run(&mut h, cmd)).contains("[permissionDenied]"),
                "{}",
                cmd
            );
        }
        assert!(run(&mut h, "ns enter appsns")
            .unwrap()
            .contains("apps/ (r--)"));
        assert!(failed(run(&mut h, "store put w v")).contains("[permissionDenied]"));
        assert!(run(&mut h, "store get mine")
            .unwrap()
            .ends_with("text: y\n"));
        let caps = run(&mut h, "caps").unwrap();
        assert!(
            caps.contains("ns.2   namespace  r--     namespace apps/"),
            "{}",
            caps
        );
        run(&mut h, "ns pop").unwrap();
        run(&mut h, "ns pop").unwrap();
        assert!(failed(run(&mut h, "ns pop")).contains("no namespace pushed"));
        // Narrowed at bind time: -r r.
        run(&mut h, "ns bind ro-apps ns apps -r r").unwrap();
        run(&mut h, "ns enter ro-apps").unwrap();
        assert!(failed(run(&mut h, "store put w v")).contains("[permissionDenied]"));
    }

    #[test]
    fn reopen_gives_the_same_store_again() {
        let mut h = host_with(None);
        run(&mut h, "store format vda1 -f").unwrap();
        run(&mut h, "store put k v").unwrap();
        let out = run(&mut h, "store reopen").unwrap();
        assert!(
            out.starts_with("store: redb on vda1 (read-write)"),
            "{}",
            out
        );
        assert!(run(&mut h, "store get k").unwrap().ends_with("text: v\n"));
    }

    #[test]
    fn bad_input_is_a_clear_error() {
        let mut h = host_with(None);
        assert!(failed(run(&mut h, "store put big --pattern 0x5a 5M")).contains("[tooLarge]"));
        assert!(failed(run(&mut h, "store put a//b x")).contains("[invalidName]"));
        assert!(failed(run(&mut h, "store get nothing")).contains("[notFound]"));
        assert!(failed(run(&mut h, "store put p --pattern nope 10")).contains("PATTERN"));
        assert!(failed(run(&mut h, "ns bind x zz")).contains("TARGET"));
        assert!(failed(run(&mut h, "fs cat ../x")).contains("[invalidName]"));
        assert!(failed(run(&mut h, "fs cat /")).contains("[isDirectory]"));
        assert!(failed(run(&mut h, "store bench -n 0")).contains("N must be"));
        assert!(matches!(
            run(&mut h, "store put onlyname"),
            Err(CmdError::Usage)
        ));
    }

    #[test]
    fn bench_reports_and_cleans_up() {
        let mut h = host_with(None);
        run(&mut h, "store format vda1 -f").unwrap();
        let out = run(&mut h, "store bench -n 5 4K").unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{}", out);
        assert!(
            lines[0].starts_with("store bench put 4096: 5 ops in "),
            "{}",
            out
        );
        assert!(
            lines[1].starts_with("store bench get 4096: 5 ops in "),
            "{}",
            out
        );
        assert!(run(&mut h, "ns ls").unwrap().ends_with("0 name(s)\n"));
        assert!(run(&mut h, "store ls")
            .unwrap()
            .ends_with("0 object(s), 0 bytes\n"));
    }
}
