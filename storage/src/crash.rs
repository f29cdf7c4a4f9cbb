//! A crash-consistency harness for the disk engine, in the manner of CrashMonkey and ACE
//! (Mohan et al., "Finding Crash-Consistency Bugs with Bounded Black-Box Crash Testing",
//! OSDI 2018).
//!
//! A workload runs twice: on a `RamEngine` (the model), whose logical state is snapshotted
//! after every step, and on a `DiskEngine` over `SimDisk`, a RAM block device that logs every
//! write and flush, with markers the workload puts in the log (step i started; every step up to
//! i is durable). From that log the harness builds the disks a power cut could have left
//! (`plan`): every prefix of the writes; within each flush epoch (the writes between two
//! flushes, which a device may persist in any order) every subset, or 1000 seeded random ones;
//! and every multi-sector write torn at each sector. Each such disk is opened as the boot opens
//! it (writable: redb repairs it), must pass fsck, and must hold exactly the model's state after
//! some step k no older than what was acknowledged durable and no newer than what had started
//! (`judge`). A panic anywhere in that is a failure with its message, never an abort.
//!
//! The durability rule checked (docs/storage.md, engine.rs): a Store or Namespace mutation that
//! returned is durable with everything before it; a file-system operation is durable at the
//! next `sync` or durable commit; and whenever the engine says nothing waits for a flush
//! (`unsynced() == 0`, as near a full partition) everything so far is durable.
//!
//! Every crash state must open: the log starts from a formatted, set-up and synced store, or
//! (`blank_workloads`) from a blank partition with `format` and the first open in the log,
//! where only a crash before `format`'s flush may leave it unformatted.
//!
//! Not covered: the backend's early write-out past `backend::DIRTY_LIMIT` (16 MiB waiting for a
//! sync; a workload that large makes each state cost a full check of a 20 MiB store), devices
//! with sectors over 512 bytes, and read-only opens (they cannot repair a crashed store).
//!
//! `crash_states_bounded` checks an even sample (`CAPMON_CRASH_STATES` states, default
//! `DEFAULT_STATES`); `crash_states_full` (ignored; `make crash-test`) checks every state of
//! every workload.
extern crate std;

use crate::caps::{DirCap, Directory, Namespace, NamespaceCap};
use crate::engine::*;
use crate::object;
use crate::rights::Rights;
use crate::{backend, disk, fsck};
use alloc::collections::BTreeSet;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use capmon_block::{check_request, BlkError, BlkInfo, BlockDevice};
use core::fmt;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::hash::{DefaultHasher, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, Once};
use std::time::Instant;

/// The simulated device's sector, and so the grain a power cut tears a write at.
const SECTOR: usize = 512;

/// States the bounded test checks unless `CAPMON_CRASH_STATES` says otherwise. A state of an
/// ACE workload costs about half a millisecond of redb repair, fsck and snapshot in a debug
/// build (one over a store of a few MiB, about 4 ms): 10^5 of them take about 25 s on two
/// cores.
const DEFAULT_STATES: u64 = 100_000;

/// Within a flush epoch of more writes than this, seeded random subsets instead of all of them.
const MAX_EXHAUSTIVE_EPOCH: usize = 10;
/// How many random subsets such an epoch gets.
const RANDOM_SUBSETS: usize = 1000;
/// Failures described in full in a run's summary.
const SHOWN_FAILURES: usize = 5;
/// A recovered file larger than any workload writes is not read (a corrupt size could claim a
/// terabyte); it cannot match the model anyway.
const MAX_SNAPSHOT_FILE: u64 = 64 << 20;

// ---- a seeded stream ----

use crate::tests::Rng;

/// `len` bytes determined by `seed` (file data that differs from step to step).
fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut r = Rng(seed);
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        v.extend_from_slice(&r.next().to_le_bytes());
    }
    v.truncate(len);
    v
}

// ---- the recording device ----

/// A sector's bytes: `SECTOR` of them at `off` in a logged write's buffer (shared, not copied,
/// so a crash image costs a map of references, not a disk's worth of bytes).
#[derive(Clone)]
struct SectorRef {
    data: Arc<[u8]>,
    off: usize,
}

impl SectorRef {
    fn bytes(&self) -> &[u8] {
        &self.data[self.off..self.off + SECTOR]
    }
}

/// Sectors written over the template, by LBA.
type Sectors = HashMap<u64, SectorRef>;

/// One device write as the log keeps it.
#[derive(Clone)]
struct Write {
    lba: u64,
    data: Arc<[u8]>,
}

impl Write {
    fn sectors(&self) -> usize {
        self.data.len() / SECTOR
    }

    fn sector(&self, i: usize) -> SectorRef {
        SectorRef {
            data: self.data.clone(),
            off: i * SECTOR,
        }
    }

    fn covers(&self, lba: u64) -> bool {
        lba >= self.lba && lba < self.lba + self.sectors() as u64
    }

    fn overlaps(&self, o: &Write) -> bool {
        self.lba < o.lba + o.sectors() as u64 && o.lba < self.lba + self.sectors() as u64
    }
}

/// What the device log holds, in order.
#[derive(Clone)]
enum Event {
    Write(Write),
    Flush,
    /// The workload began step i (1-based).
    Started(usize),
    /// Every step up to i is durable (acknowledged by the engine's durability rule).
    Durable(usize),
}

/// A disk image in layers, newest first: what the disk itself was written (`own`), then
/// `extents` (whole or torn writes of a crash state: the first `n` sectors of a write, later
/// ones winning), then `base` (a prefix of the log), then the template image.
struct Layers {
    template: Arc<Vec<u8>>,
    base: Arc<Sectors>,
    extents: Vec<(Write, usize)>,
    own: Sectors,
    /// The event log, while recording.
    log: Option<Vec<Event>>,
}

impl Layers {
    fn sector(&self, lba: u64) -> &[u8] {
        if let Some(s) = self.own.get(&lba) {
            return s.bytes();
        }
        for (w, n) in self.extents.iter().rev() {
            if lba >= w.lba && lba < w.lba + *n as u64 {
                let i = (lba - w.lba) as usize * SECTOR;
                return &w.data[i..i + SECTOR];
            }
        }
        if let Some(s) = self.base.get(&lba) {
            return s.bytes();
        }
        let at = lba as usize * SECTOR;
        &self.template[at..at + SECTOR]
    }
}

/// A RAM block device of `SECTOR`-byte sectors over a layered image, recording its writes and
/// flushes while asked to. Clones share the device: the engine owns one, the harness another.
#[derive(Clone)]
struct SimDisk(Arc<Mutex<Layers>>);

impl SimDisk {
    fn new(template: Arc<Vec<u8>>, base: Arc<Sectors>, extents: Vec<(Write, usize)>) -> Self {
        SimDisk(Arc::new(Mutex::new(Layers {
            template,
            base,
            extents,
            own: Sectors::new(),
            log: None,
        })))
    }

    fn layers(&self) -> std::sync::MutexGuard<'_, Layers> {
        // A panic inside redb while it held the device is the state check's failure, reported
        // by `guarded`; the image itself is still whole.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts the log; returns the image so far (over the template), the crash states' base.
    fn start_recording(&self) -> Arc<Sectors> {
        let mut l = self.layers();
        assert!(l.extents.is_empty() && l.base.is_empty());
        l.log = Some(Vec::new());
        Arc::new(l.own.clone())
    }

    fn mark(&self, e: Event) {
        if let Some(log) = self.layers().log.as_mut() {
            log.push(e);
        }
    }

    fn take_log(&self) -> Vec<Event> {
        self.layers().log.take().unwrap_or_default()
    }

    /// The whole image as one buffer (to make a template of).
    fn flatten(&self) -> Vec<u8> {
        let l = self.layers();
        let mut img = l.template.as_ref().clone();
        for (lba, s) in l.base.iter().chain(l.own.iter()) {
            let at = *lba as usize * SECTOR;
            img[at..at + SECTOR].copy_from_slice(s.bytes());
        }
        img
    }
}

impl BlockDevice for SimDisk {
    fn sector_size(&self) -> u32 {
        SECTOR as u32
    }

    fn capacity(&self) -> u64 {
        (self.layers().template.len() / SECTOR) as u64
    }

    fn read_only(&self) -> bool {
        false
    }

    fn info(&self) -> BlkInfo {
        BlkInfo {
            driver: "crash-sim",
            ..BlkInfo::default()
        }
    }

    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), BlkError> {
        let l = self.layers();
        let cap = (l.template.len() / SECTOR) as u64;
        check_request(lba, buf.len(), SECTOR as u32, cap)?;
        for (i, out) in buf.chunks_exact_mut(SECTOR).enumerate() {
            out.copy_from_slice(l.sector(lba + i as u64));
        }
        Ok(())
    }

    fn write(&mut self, lba: u64, buf: &[u8]) -> Result<(), BlkError> {
        let mut l = self.layers();
        let cap = (l.template.len() / SECTOR) as u64;
        let n = check_request(lba, buf.len(), SECTOR as u32, cap)?;
        let w = Write {
            lba,
            data: Arc::from(buf),
        };
        for i in 0..n as usize {
            l.own.insert(lba + i as u64, w.sector(i));
        }
        if let Some(log) = l.log.as_mut() {
            log.push(Event::Write(w));
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), BlkError> {
        if let Some(log) = self.layers().log.as_mut() {
            log.push(Event::Flush);
        }
        Ok(())
    }
}

// ---- workloads ----

/// The files of the ACE-style workloads: two directories of two files each.
const FILES: usize = 4;
const DIRS: usize = 2;
/// Names the workloads bind in the root namespace.
const KEYS: usize = 2;

fn file_path(f: usize) -> String {
    format!("d{}/f{}", f / 2, f % 2)
}

fn dir_path(d: usize) -> String {
    format!("d{}", d)
}

fn key_name(k: usize) -> String {
    format!("k{}", k)
}

/// One step of a workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Create(usize),
    Mkdir(usize),
    Write {
        file: usize,
        off: u64,
        len: usize,
    },
    Append {
        file: usize,
        len: usize,
    },
    Truncate {
        file: usize,
        size: u64,
    },
    Rename {
        from: usize,
        to: usize,
    },
    RenameDir {
        from: usize,
        to: usize,
    },
    Remove(usize),
    Rmdir(usize),
    /// `store put`: an object bound to the key (replacing), durable on return.
    Put(usize),
    /// `store rm`: the key unbound (its object goes with it), durable on return.
    Delete(usize),
    Sync,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Op::Create(x) => write!(f, "create {}", file_path(x)),
            Op::Mkdir(d) => write!(f, "mkdir {}", dir_path(d)),
            Op::Write { file, off, len } => write!(f, "write {} @{}+{}", file_path(file), off, len),
            Op::Append { file, len } => write!(f, "append {} +{}", file_path(file), len),
            Op::Truncate { file, size } => write!(f, "truncate {} {}", file_path(file), size),
            Op::Rename { from, to } => write!(f, "mv {} {}", file_path(from), file_path(to)),
            Op::RenameDir { from, to } => write!(f, "mv {} {}", dir_path(from), dir_path(to)),
            Op::Remove(x) => write!(f, "rm {}", file_path(x)),
            Op::Rmdir(d) => write!(f, "rmdir {}", dir_path(d)),
            Op::Put(k) => write!(f, "store put {}", key_name(k)),
            Op::Delete(k) => write!(f, "store rm {}", key_name(k)),
            Op::Sync => f.write_str("sync"),
        }
    }
}

/// What every workload starts from (made durable before the log starts): `d0/f0` holding
/// 1000 bytes, `k0` bound; `d1`, the other files and `k1` absent.
const SETUP: [Op; 5] = [
    Op::Mkdir(0),
    Op::Create(0),
    Op::Write {
        file: 0,
        off: 0,
        len: 1000,
    },
    Op::Put(0),
    Op::Sync,
];

/// The step numbers setup runs as (so its data differs from any workload step's).
const SETUP_STEP: usize = 1_000_000;

#[derive(Clone)]
struct Workload {
    name: String,
    steps: Vec<Op>,
    /// The partition's size: large enough that file commits wait for a sync, or small enough
    /// that every commit is durable (`DiskEngine::write_fs`).
    partition: u64,
    /// Whether the log starts from a blank partition, with `format` and the first open (which
    /// creates the tables) in it; else from the set-up store.
    from_blank: bool,
}

/// A defect the harness can inject into its own model of the device or of the engine's
/// promises, to show that it catches the failures such a defect causes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    /// The device drops every flush (as a disk with a volatile cache that lies about it).
    IgnoreFlushes,
    /// Every step that returned counts as durable (file operations too, which are not).
    EagerAcks,
}

/// Partitions file commits wait for a sync on (used + 8 MiB stays under the capacity).
const ROOMY: u64 = 40 << 20;
/// A partition so small that every commit is durable.
const TIGHT: u64 = 8 << 20;

/// The capabilities a workload acts through.
struct Caps {
    dir: Arc<dyn Directory>,
    ns: Arc<dyn Namespace>,
}

impl Caps {
    fn of(e: &Arc<dyn Engine>) -> Caps {
        Caps {
            dir: DirCap::root(e.clone(), Rights::ALL),
            ns: NamespaceCap::root(e.clone(), Rights::RW),
        }
    }
}

/// Runs `op` as step `step`; returns "ok" or the error's code (both engines must agree).
fn run_op(c: &Caps, op: Op, step: usize) -> String {
    let seed = (step as u64).wrapping_mul(0x100_0000_01b3) ^ 0xc0ff_ee00;
    let r = match op {
        Op::Create(f) => c.dir.create(&file_path(f)),
        Op::Mkdir(d) => c.dir.mkdir(&dir_path(d)),
        Op::Write { file, off, len } => c
            .dir
            .open(&file_path(file), Rights::WRITE)
            .and_then(|h| h.write(off, &pattern(seed, len))),
        Op::Append { file, len } => c
            .dir
            .open(&file_path(file), Rights::APPEND)
            .and_then(|h| h.append(&pattern(seed, len)).map(|_| ())),
        Op::Truncate { file, size } => c
            .dir
            .open(&file_path(file), Rights::WRITE)
            .and_then(|h| h.truncate(size)),
        Op::Rename { from, to } => c.dir.rename(&file_path(from), &file_path(to)),
        Op::RenameDir { from, to } => c.dir.rename(&dir_path(from), &dir_path(to)),
        Op::Remove(f) => c.dir.remove(&file_path(f), false).map(|_| ()),
        Op::Rmdir(d) => c.dir.remove(&dir_path(d), false).map(|_| ()),
        Op::Put(k) => {
            let msg = object::text(&format!("{} at step {}", key_name(k), step));
            c.ns.put(&key_name(k), &msg, true).map(|_| ())
        }
        Op::Delete(k) => c.ns.unbind(&key_name(k)),
        Op::Sync => c.dir.sync(),
    };
    match r {
        Ok(()) => String::from("ok"),
        Err(e) => String::from(e.code_name()),
    }
}

/// Whether the documented rule makes `op` durable (with everything before it) once it
/// returned `code`: a sync, or a Store or Namespace mutation that committed.
fn durable_on_return(op: Op, code: &str) -> bool {
    code == "ok" && matches!(op, Op::Sync | Op::Put(_) | Op::Delete(_))
}

/// The ACE alphabet: every operation over the two directories, four files and two keys, with
/// one choice of offsets and sizes each (writes that overwrite and extend, appends past a
/// 4 KiB page, a truncate that shrinks the set-up file and grows an empty one).
fn alphabet() -> Vec<Op> {
    let mut v = Vec::new();
    for f in 0..FILES {
        v.push(Op::Create(f));
        v.push(Op::Write {
            file: f,
            off: 700,
            len: 6000,
        });
        v.push(Op::Append { file: f, len: 5000 });
        v.push(Op::Truncate { file: f, size: 100 });
        v.push(Op::Remove(f));
        for t in 0..FILES {
            if t != f {
                v.push(Op::Rename { from: f, to: t });
            }
        }
    }
    for d in 0..DIRS {
        v.push(Op::Mkdir(d));
        v.push(Op::Rmdir(d));
        v.push(Op::RenameDir { from: d, to: 1 - d });
    }
    for k in 0..KEYS {
        v.push(Op::Put(k));
        v.push(Op::Delete(k));
    }
    v
}

/// A RAM engine holding the set-up state (`set_up`), or an empty one.
fn model(set_up: bool) -> (Arc<dyn Engine>, Caps) {
    let e: Arc<dyn Engine> = Arc::new(crate::ram::RamEngine::new());
    let c = Caps::of(&e);
    if set_up {
        for (i, op) in SETUP.iter().enumerate() {
            assert_eq!(run_op(&c, *op, SETUP_STEP + i), "ok", "setup: {}", op);
        }
    }
    (e, c)
}

/// Whether every op of `ops` succeeds on the model, in order.
fn all_succeed(ops: &[Op]) -> bool {
    let (_e, c) = model(true);
    ops.iter()
        .enumerate()
        .all(|(i, op)| run_op(&c, *op, i + 1) == "ok")
}

/// The ACE-style workloads: every operation alone (failing ones too: both engines must agree
/// they fail), and every sequence of two or three operations that all succeed on the model
/// (so the workloads exercise what they name), each with every choice of a sync after each
/// operation (from none to a sync after every one).
fn ace_workloads() -> Vec<Workload> {
    let ops = alphabet();
    let mut seqs: Vec<Vec<Op>> = ops.iter().map(|op| vec![*op]).collect();
    let mut frontier: Vec<Vec<Op>> = seqs.iter().filter(|s| all_succeed(s)).cloned().collect();
    for _ in 1..3 {
        let mut next = Vec::new();
        for s in &frontier {
            for op in &ops {
                let mut t = s.clone();
                t.push(*op);
                if all_succeed(&t) {
                    next.push(t);
                }
            }
        }
        seqs.extend(next.iter().cloned());
        frontier = next;
    }
    let mut out = Vec::new();
    for s in seqs {
        for syncs in 0..1u32 << s.len() {
            let mut steps = Vec::new();
            for (i, op) in s.iter().enumerate() {
                steps.push(*op);
                if syncs & (1 << i) != 0 {
                    steps.push(Op::Sync);
                }
            }
            out.push(Workload {
                name: describe_steps(&steps),
                steps,
                partition: ROOMY,
                from_blank: false,
            });
        }
    }
    out
}

fn describe_steps(steps: &[Op]) -> String {
    let v: Vec<String> = steps.iter().map(|s| s.to_string()).collect();
    v.join("; ")
}

/// A long random workload over the same files and keys: 50 to 200 steps, a sync now and then,
/// writes at random offsets, and (on the roomy partition) one append of a few MiB.
fn random_workload(seed: u64, partition: u64) -> Workload {
    let mut r = Rng(seed);
    let n = 50 + r.below(151) as usize;
    let roomy = partition == ROOMY;
    let big_at = if roomy {
        Some(r.below(n as u64) as usize)
    } else {
        None
    };
    let small = if roomy { 96 << 10 } else { 24 << 10 };
    let mut steps = Vec::with_capacity(n);
    for i in 0..n {
        let f = r.below(FILES as u64) as usize;
        let op = if big_at == Some(i) {
            Op::Append {
                file: f,
                len: (2 << 20) + r.below(2 << 20) as usize,
            }
        } else {
            match r.below(20) {
                0..=1 => Op::Create(f),
                2..=4 => Op::Write {
                    file: f,
                    off: r.below(200_000),
                    len: 1 + r.below(small) as usize,
                },
                5..=7 => Op::Append {
                    file: f,
                    len: 1 + r.below(small) as usize,
                },
                8 => Op::Truncate {
                    file: f,
                    size: r.below(150_000),
                },
                9..=10 => Op::Rename {
                    from: f,
                    to: r.below(FILES as u64) as usize,
                },
                11 => Op::Remove(f),
                12 => Op::Mkdir(r.below(DIRS as u64) as usize),
                13 => {
                    let d = r.below(DIRS as u64) as usize;
                    if r.chance(2) {
                        Op::Rmdir(d)
                    } else {
                        Op::RenameDir { from: d, to: 1 - d }
                    }
                }
                14..=15 => Op::Put(r.below(KEYS as u64) as usize),
                16 => Op::Delete(r.below(KEYS as u64) as usize),
                _ => Op::Sync,
            }
        };
        steps.push(op);
    }
    Workload {
        name: format!(
            "random seed {} ({} steps, {} MiB partition)",
            seed,
            n,
            partition >> 20
        ),
        steps,
        partition,
        from_blank: false,
    }
}

/// A blank partition formatted and opened for the first time (redb creates its file, the
/// engine its tables), then set up: a crash anywhere in that must leave a store that opens,
/// once `format` has flushed (before, the partition may still read as never formatted).
fn blank_workloads() -> Vec<Workload> {
    [ROOMY, TIGHT]
        .iter()
        .map(|&partition| Workload {
            name: format!(
                "format {} MiB; open; {}",
                partition >> 20,
                describe_steps(&SETUP)
            ),
            steps: SETUP.to_vec(),
            partition,
            from_blank: true,
        })
        .collect()
}

/// Every workload of a run: the first opens, the ACE ones and `random` long ones (two on a
/// roomy partition for one on a tight one).
fn workloads(random: u64) -> Vec<Workload> {
    let mut v = blank_workloads();
    v.extend(ace_workloads());
    for s in 0..random {
        let partition = if s % 3 == 2 { TIGHT } else { ROOMY };
        v.push(random_workload(0x5eed_0000 + s, partition));
    }
    v
}

// ---- logical snapshots ----

/// A stream of bytes reduced to a fingerprint (SipHash with fixed keys: the same in every run).
fn fingerprint(parts: &[&[u8]]) -> u64 {
    let mut h = DefaultHasher::new();
    for p in parts {
        h.write(p);
    }
    h.finish()
}

/// One node of the file tree as the model sees it: no inode numbers, times or generations.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TreeNode {
    path: String,
    kind: NodeKind,
    /// Bytes (files) or entries (directories).
    size: u64,
    /// The file's contents (0 for a directory).
    content: u64,
}

/// An object as the model sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ObjNode {
    stat: ObjStat,
    content: u64,
}

/// What a store holds, logically.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Snapshot {
    names: Vec<(String, Stored)>,
    objects: Vec<ObjNode>,
    tree: Vec<TreeNode>,
}

fn snapshot(e: &dyn Engine) -> crate::Result<Snapshot> {
    let names = e.names("")?;
    let mut stats = e.objects()?;
    stats.sort_by_key(|s| s.hash);
    let mut objects = Vec::with_capacity(stats.len());
    for stat in stats {
        let bytes = e.get(&stat.hash)?.unwrap_or_default();
        let content = fingerprint(&[&bytes]);
        objects.push(ObjNode { stat, content });
    }
    let mut tree = Vec::new();
    walk(e, ROOT_INODE, "", &mut tree)?;
    Ok(Snapshot {
        names,
        objects,
        tree,
    })
}

/// Appends the nodes under directory `dir` (at `prefix`) to `out`, depth first, in name order.
fn walk(e: &dyn Engine, dir: u64, prefix: &str, out: &mut Vec<TreeNode>) -> crate::Result<()> {
    let mut ents = e.fs_list(dir)?;
    ents.sort_by(|a, b| a.name.cmp(&b.name));
    for ent in ents {
        let path = format!("{}{}", prefix, ent.name);
        let content = match ent.kind {
            NodeKind::File => file_fingerprint(e, ent.inode, ent.size)?,
            NodeKind::Dir => 0,
        };
        out.push(TreeNode {
            path: path.clone(),
            kind: ent.kind,
            size: ent.size,
            content,
        });
        if ent.kind == NodeKind::Dir {
            walk(e, ent.inode, &format!("{}/", path), out)?;
        }
    }
    Ok(())
}

fn file_fingerprint(e: &dyn Engine, ino: u64, size: u64) -> crate::Result<u64> {
    if size > MAX_SNAPSHOT_FILE {
        return Ok(u64::MAX);
    }
    let mut h = DefaultHasher::new();
    let mut buf = vec![0u8; size.clamp(1, 1 << 20) as usize];
    let mut off = 0;
    while off < size {
        let n = e.fs_read(ino, off, &mut buf)?;
        if n == 0 {
            break;
        }
        h.write(&buf[..n]);
        off += n as u64;
    }
    h.write_u64(off);
    Ok(h.finish())
}

/// A few lines on how `got` differs from `want`.
fn diff(want: &Snapshot, got: &Snapshot) -> String {
    let mut out = Vec::new();
    let names = |s: &Snapshot| -> BTreeSet<String> {
        s.names
            .iter()
            .map(|(n, v)| format!("{}={:?}", n, v))
            .collect()
    };
    let nodes = |s: &Snapshot| -> BTreeSet<String> {
        s.tree
            .iter()
            .map(|n| format!("{} {:?} {} #{:x}", n.path, n.kind, n.size, n.content))
            .collect()
    };
    let objs = |s: &Snapshot| -> BTreeSet<String> {
        s.objects
            .iter()
            .map(|o| format!("{} refs {}", object::hex(&o.stat.hash[..4]), o.stat.refs))
            .collect()
    };
    for (what, a, b) in [
        ("name", names(want), names(got)),
        ("node", nodes(want), nodes(got)),
        ("object", objs(want), objs(got)),
    ] {
        for x in a.difference(&b).take(3) {
            out.push(format!("missing {} {}", what, x));
        }
        for x in b.difference(&a).take(3) {
            out.push(format!("extra {} {}", what, x));
        }
    }
    if out.is_empty() {
        String::from("no visible difference")
    } else {
        out.join(", ")
    }
}

// ---- panics as failures ----

std::thread_local! {
    /// Set while a guarded check runs: its panics are recorded, not printed.
    static GUARDED: Cell<bool> = const { Cell::new(false) };
    static PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Installs (once) a panic hook that records the message and place of a guarded check's panic
/// and leaves every other thread's panics to the previous hook.
fn install_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(alloc::boxed::Box::new(move |info| {
            if GUARDED.with(|g| g.get()) {
                PANIC.with(|p| *p.borrow_mut() = Some(info.to_string().replace('\n', " ")));
            } else {
                prev(info)
            }
        }));
    });
}

/// Runs `f`; a panic in it is an `Err` carrying its message.
fn guarded<T>(f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    install_hook();
    GUARDED.with(|g| g.set(true));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    GUARDED.with(|g| g.set(false));
    match r {
        Ok(r) => r,
        Err(_) => Err(format!(
            "panic: {}",
            PANIC
                .with(|p| p.borrow_mut().take())
                .unwrap_or_else(|| String::from("(no message)"))
        )),
    }
}

// ---- recording a workload ----

/// A formatted store holding the set-up state, closed cleanly: what every workload on a
/// partition of its size starts from.
fn make_template(partition: u64) -> Arc<Vec<u8>> {
    let dev = SimDisk::new(
        Arc::new(vec![0u8; partition as usize]),
        Arc::new(Sectors::new()),
        Vec::new(),
    );
    backend::format(&mut dev.clone(), 0xc4a5, 1).unwrap();
    let (e, opened) = disk::open(dev.clone(), "sim0", true, 1).unwrap();
    assert!(opened.created);
    let e: Arc<dyn Engine> = Arc::new(e);
    let c = Caps::of(&e);
    for (i, op) in SETUP.iter().enumerate() {
        assert_eq!(run_op(&c, *op, SETUP_STEP + i), "ok", "setup: {}", op);
    }
    drop(c);
    drop(e);
    Arc::new(dev.flatten())
}

/// The template images, made once per run: per partition size, a set-up store and a blank
/// partition.
struct Templates(Vec<Template>);

/// The images a partition of one size starts from.
struct Template {
    partition: u64,
    set_up: Arc<Vec<u8>>,
    blank: Arc<Vec<u8>>,
}

impl Templates {
    fn new() -> Self {
        let of = |partition: u64| Template {
            partition,
            set_up: make_template(partition),
            blank: Arc::new(vec![0u8; partition as usize]),
        };
        Templates(vec![of(ROOMY), of(TIGHT)])
    }

    fn get(&self, w: &Workload) -> Arc<Vec<u8>> {
        let t = self.0.iter().find(|t| t.partition == w.partition);
        let t = t.expect("a template per partition size");
        if w.from_blank { &t.blank } else { &t.set_up }.clone()
    }
}

/// A workload's run: its device log and the model's state after every step.
struct Recording {
    template: Arc<Vec<u8>>,
    /// The image when the log started (over the template).
    base: Arc<Sectors>,
    events: Vec<Event>,
    /// `snapshots[k]`: the model after step k (0: the set-up state, or an empty store).
    snapshots: Vec<Snapshot>,
    /// Where `format`'s flush is in the log, when the log starts from a blank partition: a
    /// crash before it may leave the partition unformatted.
    format_flush: Option<usize>,
}

/// Runs `w` on the model and, over a recording device, on the disk engine opened as the boot
/// opens it; every step must give both the same result, and the two must end alike. The
/// engine is closed at the end, and what the close writes is in the log too.
fn record(w: &Workload, templates: &Templates, fault: Fault) -> Result<Recording, String> {
    let template = templates.get(w);
    let (m, mc) = model(!w.from_blank);
    let dev = SimDisk::new(template.clone(), Arc::new(Sectors::new()), Vec::new());
    let (base, e) = if w.from_blank {
        let base = dev.start_recording();
        backend::format(&mut dev.clone(), 0xb1a4, 2).map_err(|e| format!("format: {}", e))?;
        (base, open_to_record(&dev)?)
    } else {
        let e = open_to_record(&dev)?;
        (dev.start_recording(), e)
    };
    let dc = Caps::of(&e);
    let snap = |e: &dyn Engine| snapshot(e).map_err(|err| format!("snapshot: {}", err));
    let mut snapshots = vec![snap(&*m)?];
    for (k, op) in w.steps.iter().enumerate() {
        let step = k + 1;
        dev.mark(Event::Started(step));
        let want = run_op(&mc, *op, step);
        let got = run_op(&dc, *op, step);
        if want != got {
            return Err(format!(
                "step {} ({}): the model says {}, the disk engine {}",
                step, op, want, got
            ));
        }
        if durable_on_return(*op, &got) || e.unsynced() == 0 || fault == Fault::EagerAcks {
            dev.mark(Event::Durable(step));
        }
        snapshots.push(snap(&*m)?);
    }
    let live = snap(&*e)?;
    let last = snapshots.last().ok_or("no snapshot")?;
    if live != *last {
        return Err(format!(
            "the disk engine ends unlike the model: {}",
            diff(last, &live)
        ));
    }
    drop(dc);
    drop(e);
    let mut events = dev.take_log();
    if fault == Fault::IgnoreFlushes {
        events.retain(|e| !matches!(e, Event::Flush));
    }
    let format_flush = match w.from_blank {
        true => events.iter().position(|e| matches!(e, Event::Flush)),
        false => None,
    };
    Ok(Recording {
        template,
        base,
        events,
        snapshots,
        format_flush,
    })
}

/// Opens the store on `dev` as the boot does, for a workload to run on.
fn open_to_record(dev: &SimDisk) -> Result<Arc<dyn Engine>, String> {
    let (e, _) = disk::open(dev.clone(), "sim0", true, 2).map_err(|f| format!("opening: {}", f))?;
    Ok(Arc::new(e))
}

// ---- crash states ----

/// Which disk a power cut left.
#[derive(Debug, Clone)]
enum Kind {
    /// The first `n` writes of the log, whole.
    Prefix(usize),
    /// Every write before epoch `epoch`, and of its writes those listed (log indices).
    Subset { epoch: usize, writes: Vec<usize> },
    /// Every write before `write`, and that write's first `sectors` sectors.
    Torn { write: usize, sectors: usize },
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Kind::Prefix(n) => write!(f, "the first {} writes", n),
            Kind::Subset { epoch, writes } => {
                write!(f, "flush epoch {} with only writes {:?}", epoch, writes)
            }
            Kind::Torn { write, sectors } => {
                write!(f, "write {} torn after {} sectors", write, sectors)
            }
        }
    }
}

/// One crash state: the disk, and for each crash point that leaves this disk the steps its
/// contents may match (`[durable floor, steps started]`): one of each range must match.
#[derive(Debug, Clone)]
struct CrashState {
    kind: Kind,
    ranges: Vec<(usize, usize)>,
    /// Every crash point that leaves this disk precedes `format`'s flush: the partition may
    /// read as never formatted.
    unformatted_ok: bool,
}

impl CrashState {
    /// The writes applied whole under the state's own (the base they build on).
    fn base_writes(&self, epochs: &[Epoch]) -> usize {
        match &self.kind {
            Kind::Prefix(n) => *n,
            Kind::Subset { epoch, .. } => epochs[*epoch].first,
            Kind::Torn { write, .. } => *write,
        }
    }
}

/// The writes between two flushes (log write indices `first..end`), and where the flush that
/// ends it is in the event log (the log's end if none does).
struct Epoch {
    first: usize,
    end: usize,
    flush_at: usize,
}

/// A recording's writes, epochs and crash states.
struct Plan {
    writes: Vec<Write>,
    /// For each write, which of its sectors change the image they land on.
    changed: Vec<Vec<bool>>,
    epochs: Vec<Epoch>,
    states: Vec<CrashState>,
}

/// Where each write is in the event log, and the durable floor and steps started before each
/// event-log position (`floor[p]`, `started[p]` cover `events[..p]`).
struct Marks {
    pos: Vec<usize>,
    floor: Vec<usize>,
    started: Vec<usize>,
}

impl Marks {
    fn of(events: &[Event]) -> Marks {
        let (mut pos, mut floor, mut started) = (Vec::new(), vec![0], vec![0]);
        let (mut f, mut s) = (0, 0);
        for (p, e) in events.iter().enumerate() {
            match e {
                Event::Write(_) => pos.push(p),
                Event::Started(i) => s = s.max(*i),
                Event::Durable(i) => f = f.max(*i),
                Event::Flush => {}
            }
            floor.push(f);
            started.push(s);
        }
        Marks {
            pos,
            floor,
            started,
        }
    }

    /// The distinct ranges of the crash points `from..=to` (event-log positions).
    fn ranges(&self, from: usize, to: usize) -> Vec<(usize, usize)> {
        let mut v: Vec<(usize, usize)> = Vec::new();
        for p in from..=to {
            let r = (self.floor[p], self.started[p]);
            if v.last() != Some(&r) {
                v.push(r);
            }
        }
        v
    }

    /// The position just after write `j` (0 for "before the first write").
    fn after(&self, j: Option<usize>) -> usize {
        j.map_or(0, |j| self.pos[j] + 1)
    }

    /// The position of write `j`, or the log's end for `j` past the last write.
    fn at(&self, j: usize, end: usize) -> usize {
        self.pos.get(j).copied().unwrap_or(end)
    }
}

/// For each write, which of its sectors change what the disk held just before it.
fn changed_sectors(base: &Sectors, template: &[u8], writes: &[Write]) -> Vec<Vec<bool>> {
    let mut running: HashMap<u64, SectorRef> = HashMap::new();
    let under = |running: &HashMap<u64, SectorRef>, lba: u64| -> Vec<u8> {
        match running.get(&lba).or_else(|| base.get(&lba)) {
            Some(s) => s.bytes().to_vec(),
            None => template[lba as usize * SECTOR..][..SECTOR].to_vec(),
        }
    };
    let mut out = Vec::with_capacity(writes.len());
    for w in writes {
        let mut c = Vec::with_capacity(w.sectors());
        for i in 0..w.sectors() {
            let lba = w.lba + i as u64;
            c.push(under(&running, lba) != w.sector(i).bytes());
        }
        for i in 0..w.sectors() {
            running.insert(w.lba + i as u64, w.sector(i));
        }
        out.push(c);
    }
    out
}

/// Every crash state of a recording (`seed` picks the random subsets of large epochs).
fn plan(rec: &Recording, seed: u64) -> Plan {
    let end = rec.events.len();
    let marks = Marks::of(&rec.events);
    let writes: Vec<Write> = rec
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Write(w) => Some(w.clone()),
            _ => None,
        })
        .collect();
    let epochs = epochs_of(&rec.events);
    let changed = changed_sectors(&rec.base, &rec.template, &writes);
    // A state left by a crash at any point from `from` to `to` (event-log positions).
    let state = |kind: Kind, from: usize, to: usize| CrashState {
        kind,
        ranges: marks.ranges(from, to),
        unformatted_ok: rec.format_flush.is_some_and(|f| to <= f),
    };
    let mut states = Vec::new();
    // Every prefix: the crash fell between write j-1 and write j.
    for j in 0..=writes.len() {
        let from = marks.after(j.checked_sub(1));
        states.push(state(Kind::Prefix(j), from, marks.at(j, end)));
    }
    // Every write torn at each sector boundary where the image changes.
    for (j, w) in writes.iter().enumerate() {
        for t in 1..w.sectors() {
            if changed[j][t - 1] {
                let kind = Kind::Torn {
                    write: j,
                    sectors: t,
                };
                states.push(state(kind, marks.pos[j], marks.pos[j]));
            }
        }
    }
    // Within each epoch, the subsets of its writes: the crash fell after the last of them was
    // issued and before the epoch's flush completed.
    let mut rng = Rng(seed);
    for (e, ep) in epochs.iter().enumerate() {
        for subset in epoch_subsets(ep, &writes, &changed, &mut rng) {
            let from = marks.after(subset.last().copied());
            let kind = Kind::Subset {
                epoch: e,
                writes: subset,
            };
            states.push(state(kind, from, ep.flush_at));
        }
    }
    Plan {
        writes,
        changed,
        epochs,
        states,
    }
}

fn epochs_of(events: &[Event]) -> Vec<Epoch> {
    let mut epochs = Vec::new();
    let (mut first, mut n) = (0, 0);
    for (p, e) in events.iter().enumerate() {
        match e {
            Event::Write(_) => n += 1,
            Event::Flush => {
                epochs.push(Epoch {
                    first,
                    end: n,
                    flush_at: p,
                });
                first = n;
            }
            _ => {}
        }
    }
    epochs.push(Epoch {
        first,
        end: n,
        flush_at: events.len(),
    });
    epochs
}

/// The subsets of an epoch's writes that make images no prefix makes: writes that change
/// nothing and overlap no other write of the epoch are left out (with or without them the
/// image is the same), and so are the subsets that are a prefix of the rest (the prefix states
/// have them). All of them up to `MAX_EXHAUSTIVE_EPOCH` writes, else `RANDOM_SUBSETS` random
/// ones.
fn epoch_subsets(
    ep: &Epoch,
    writes: &[Write],
    changed: &[Vec<bool>],
    rng: &mut Rng,
) -> Vec<Vec<usize>> {
    let live: Vec<usize> = (ep.first..ep.end)
        .filter(|&j| {
            changed[j].iter().any(|&c| c)
                || (ep.first..ep.end).any(|k| k != j && writes[k].overlaps(&writes[j]))
        })
        .collect();
    let n = live.len();
    let is_prefix = |mask: &[bool]| {
        let k = mask.iter().take_while(|&&b| b).count();
        mask[k..].iter().all(|&b| !b)
    };
    let pick = |mask: &[bool]| -> Vec<usize> {
        live.iter()
            .zip(mask)
            .filter(|(_, &b)| b)
            .map(|(j, _)| *j)
            .collect()
    };
    let mut out = Vec::new();
    if n <= MAX_EXHAUSTIVE_EPOCH {
        for m in 0u32..1 << n {
            let mask: Vec<bool> = (0..n).map(|i| m & (1 << i) != 0).collect();
            if !is_prefix(&mask) {
                out.push(pick(&mask));
            }
        }
    } else {
        let mut seen = BTreeSet::new();
        for _ in 0..RANDOM_SUBSETS {
            let mask: Vec<bool> = (0..n).map(|_| rng.chance(2)).collect();
            if !is_prefix(&mask) && seen.insert(mask.clone()) {
                out.push(pick(&mask));
            }
        }
    }
    out
}

/// The whole and torn writes a state puts over its base.
fn extents(state: &CrashState, writes: &[Write]) -> Vec<(Write, usize)> {
    match &state.kind {
        Kind::Prefix(_) => Vec::new(),
        Kind::Subset { writes: ws, .. } => ws
            .iter()
            .map(|&j| (writes[j].clone(), writes[j].sectors()))
            .collect(),
        Kind::Torn { write, sectors } => vec![(writes[*write].clone(), *sectors)],
    }
}

/// Opens a crash disk as the boot does (writable: redb repairs it), checks it with fsck and
/// reads what it holds. `None`: the partition reads as never formatted, which `unformatted_ok`
/// allows (a crash before `format` flushed); any other refusal to open is a failure.
fn recover(dev: SimDisk, unformatted_ok: bool) -> Result<Option<Snapshot>, String> {
    let e = match disk::open(dev, "crashed", true, 3) {
        Ok((e, _)) => e,
        Err(disk::OpenFailure::Partition(backend::OpenError::NotFormatted)) if unformatted_ok => {
            return Ok(None)
        }
        Err(f) => return Err(format!("open: {}", f)),
    };
    let r = fsck::fsck(&e, Some(&e)).map_err(|err| format!("fsck failed: {}", err))?;
    if !r.clean() {
        return Err(format!("fsck: {}", r.problems.join("; ")));
    }
    let snap = snapshot(&e).map_err(|err| format!("reading the recovered store: {}", err))?;
    Ok(Some(snap))
}

/// Whether `got` is a state the workload may have left at every crash point of `ranges`.
fn judge(snapshots: &[Snapshot], got: &Snapshot, ranges: &[(usize, usize)]) -> Result<(), String> {
    for &(floor, started) in ranges {
        let top = started.min(snapshots.len() - 1);
        if !(floor..=top).any(|k| snapshots[k] == *got) {
            return Err(format!(
                "the recovered store is no state of steps {}..={} (against step {}: {})",
                floor,
                top,
                floor,
                diff(&snapshots[floor.min(top)], got)
            ));
        }
    }
    Ok(())
}

// ---- running ----

/// What checking some workloads found.
#[derive(Default)]
struct Totals {
    workloads: u64,
    states: u64,
    /// Crash disks opened (a prefix whose last write changed nothing reuses the one before).
    opened: u64,
    failures: u64,
    shown: Vec<String>,
}

impl Totals {
    fn fail(&mut self, what: String) {
        self.failures += 1;
        if self.shown.len() < SHOWN_FAILURES {
            self.shown.push(what);
        }
    }

    fn add(&mut self, o: Totals) {
        self.workloads += o.workloads;
        self.states += o.states;
        self.opened += o.opened;
        self.failures += o.failures;
        for s in o.shown {
            if self.shown.len() < SHOWN_FAILURES {
                self.shown.push(s);
            }
        }
    }
}

/// Records `w` and checks its crash states: all of them, or with `cap` an even sample of at
/// most that many.
fn check_workload(
    w: &Workload,
    templates: &Templates,
    seed: u64,
    cap: Option<usize>,
    fault: Fault,
) -> Totals {
    let mut t = Totals {
        workloads: 1,
        ..Totals::default()
    };
    let rec = match guarded(|| record(w, templates, fault)) {
        Ok(r) => r,
        Err(why) => {
            t.fail(format!("workload [{}]: {}", w.name, why));
            return t;
        }
    };
    let p = plan(&rec, seed);
    let mut chosen: Vec<&CrashState> = match cap {
        Some(c) if p.states.len() > c => {
            let step = p.states.len() as f64 / c as f64;
            (0..c)
                .map(|i| &p.states[(i as f64 * step) as usize])
                .collect()
        }
        _ => p.states.iter().collect(),
    };
    // Built in order of the writes under them, so one running image serves them all.
    chosen.sort_by_key(|s| s.base_writes(&p.epochs));
    let mut running: Sectors = rec.base.as_ref().clone();
    let mut applied = 0;
    let mut frozen: Option<(usize, Arc<Sectors>)> = None;
    let mut last_prefix: Option<(usize, Result<Option<Snapshot>, String>)> = None;
    for s in chosen {
        let b = s.base_writes(&p.epochs);
        while applied < b {
            let w = &p.writes[applied];
            for i in 0..w.sectors() {
                running.insert(w.lba + i as u64, w.sector(i));
            }
            applied += 1;
        }
        if frozen.as_ref().is_none_or(|(n, _)| *n != b) {
            frozen = Some((b, Arc::new(running.clone())));
        }
        let base = frozen.as_ref().map(|(_, m)| m.clone()).unwrap_or_default();
        t.states += 1;
        let reuse = match (&s.kind, &last_prefix) {
            (Kind::Prefix(n), Some((m, r))) if *n == m + 1 && !p.changed[*m].contains(&true) => {
                Some(r.clone())
            }
            _ => None,
        };
        let got = match reuse {
            Some(r) => r,
            None => {
                t.opened += 1;
                let dev = SimDisk::new(rec.template.clone(), base, extents(s, &p.writes));
                guarded(|| recover(dev, s.unformatted_ok))
            }
        };
        if let Kind::Prefix(n) = s.kind {
            last_prefix = Some((n, got.clone()));
        }
        let verdict = got.and_then(|snap| match snap {
            Some(snap) => judge(&rec.snapshots, &snap, &s.ranges),
            None => Ok(()),
        });
        if let Err(why) = verdict {
            t.fail(format!("workload [{}]: {}: {}", w.name, s.kind, why));
        }
    }
    t
}

/// Checks `workloads` on every CPU, visiting them in an order that spreads evenly over the
/// list (so a run stopped by `max_states` has sampled all kinds), until `max_states` states
/// have been checked.
fn run(workloads: &[Workload], max_states: Option<u64>, cap: Option<usize>) -> Totals {
    let templates = Templates::new();
    let n = workloads.len();
    let stride = coprime_stride(n);
    let next = AtomicUsize::new(0);
    let states = AtomicU64::new(0);
    let totals = Mutex::new(Totals::default());
    let cpus = std::thread::available_parallelism().map_or(2, |c| c.get());
    std::thread::scope(|sc| {
        for _ in 0..cpus {
            sc.spawn(|| loop {
                if max_states.is_some_and(|m| states.load(Ordering::Relaxed) >= m) {
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let idx = (i as u64 * stride as u64 % n as u64) as usize;
                let t = check_workload(&workloads[idx], &templates, idx as u64, cap, Fault::None);
                states.fetch_add(t.states, Ordering::Relaxed);
                totals.lock().unwrap().add(t);
            });
        }
    });
    totals.into_inner().unwrap()
}

/// A stride near n/φ that shares no factor with `n` (so `i * stride mod n` visits every index).
fn coprime_stride(n: usize) -> usize {
    fn gcd(a: usize, b: usize) -> usize {
        if b == 0 {
            a
        } else {
            gcd(b, a % b)
        }
    }
    let mut s = ((n as f64 * 0.618_033_988_75) as usize).max(1);
    while n > 1 && gcd(s, n) != 1 {
        s += 1;
    }
    s
}

fn report(what: &str, workloads: usize, t: &Totals, started: Instant) {
    std::println!(
        "{}: {} of {} workloads, {} crash states checked ({} disks opened), {} failures, {:.1} s",
        what,
        t.workloads,
        workloads,
        t.states,
        t.opened,
        t.failures,
        started.elapsed().as_secs_f64()
    );
    for s in &t.shown {
        std::println!("  FAIL {}", s);
    }
}

/// Random long workloads in the bounded run and in the full one.
const RANDOM_BOUNDED: u64 = 12;
const RANDOM_FULL: u64 = 24;

#[test]
fn crash_states_bounded() {
    let started = Instant::now();
    let budget = std::env::var("CAPMON_CRASH_STATES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_STATES);
    let all = workloads(RANDOM_BOUNDED);
    // No workload takes more than its share: a random one has tens of thousands of states.
    let cap = (budget / 400).max(20) as usize;
    let t = run(&all, Some(budget), Some(cap));
    report("crash_states_bounded", all.len(), &t, started);
    assert_eq!(t.failures, 0, "crash states failed: {:?}", t.shown);
}

#[test]
#[ignore]
fn crash_states_full() {
    let started = Instant::now();
    let all = workloads(RANDOM_FULL);
    let t = run(&all, None, None);
    report("crash_states_full", all.len(), &t, started);
    assert_eq!(t.failures, 0, "crash states failed: {:?}", t.shown);
}

// ---- the harness checks itself ----

#[test]
fn the_recording_device_reads_what_it_wrote_and_logs_it() {
    let dev = SimDisk::new(
        Arc::new(vec![7u8; 64 * SECTOR]),
        Arc::new(Sectors::new()),
        Vec::new(),
    );
    let mut d = dev.clone();
    d.write(0, &[1u8; SECTOR]).unwrap();
    dev.start_recording();
    d.write(2, &[2u8; 2 * SECTOR]).unwrap();
    d.flush().unwrap();
    dev.mark(Event::Durable(1));
    let mut buf = vec![0u8; 4 * SECTOR];
    d.read(0, &mut buf).unwrap();
    assert!(buf[..SECTOR].iter().all(|&b| b == 1));
    assert!(buf[SECTOR..2 * SECTOR].iter().all(|&b| b == 7));
    assert!(buf[2 * SECTOR..].iter().all(|&b| b == 2));
    assert_eq!(code(d.write(63, &[0u8; 2 * SECTOR])), "out of range");
    let log = dev.take_log();
    assert!(matches!(
        log.as_slice(),
        [Event::Write(w), Event::Flush, Event::Durable(1)] if w.lba == 2 && w.sectors() == 2
    ));
}

fn code(r: Result<(), BlkError>) -> &'static str {
    match r {
        Ok(()) => "ok",
        Err(BlkError::OutOfRange { .. }) => "out of range",
        Err(_) => "other",
    }
}

#[test]
fn a_crash_state_layers_torn_writes_over_its_base() {
    let w = Write {
        lba: 1,
        data: Arc::from(vec![9u8; 3 * SECTOR]),
    };
    let mut base = Sectors::new();
    base.insert(3, w.sector(0));
    let dev = SimDisk::new(
        Arc::new(vec![0u8; 8 * SECTOR]),
        Arc::new(base),
        vec![(w.clone(), 2)],
    );
    assert!(w.covers(3) && !w.covers(4));
    let mut buf = vec![0u8; 8 * SECTOR];
    dev.clone().read(0, &mut buf).unwrap();
    let at = |s: usize| buf[s * SECTOR];
    // Sectors 1 and 2 from the torn write, 3 from the base, the rest the template's.
    assert_eq!([at(0), at(1), at(2), at(3), at(4)], [0, 9, 9, 9, 0]);
}

#[test]
fn crash_states_cover_prefixes_subsets_and_torn_writes() {
    let w = |lba: u64, n: usize, b: u8| {
        Event::Write(Write {
            lba,
            data: Arc::from(vec![b; n * SECTOR]),
        })
    };
    let rec = Recording {
        template: Arc::new(vec![0u8; 64 * SECTOR]),
        base: Arc::new(Sectors::new()),
        events: vec![
            Event::Started(1),
            w(0, 1, 1),
            w(4, 2, 1),
            w(8, 1, 1),
            Event::Flush,
            Event::Durable(1),
            Event::Started(2),
            w(20, 4, 0),
            w(0, 1, 2),
        ],
        snapshots: Vec::new(),
        format_flush: None,
    };
    let p = plan(&rec, 1);
    let count = |f: fn(&Kind) -> bool| p.states.iter().filter(|s| f(&s.kind)).count();
    assert_eq!(count(|k| matches!(k, Kind::Prefix(_))), 6);
    // The 2-sector write tears once; the 4 zero sectors over zeros never change the image.
    assert_eq!(count(|k| matches!(k, Kind::Torn { .. })), 1);
    // Epoch 0: 2^3 subsets less the 4 prefixes; epoch 1: the zero write is inert, so one
    // write and no subset that is not a prefix.
    assert_eq!(count(|k| matches!(k, Kind::Subset { .. })), 4);
    let last = p.states.iter().find(|s| matches!(s.kind, Kind::Prefix(5)));
    // After everything: step 1 was acknowledged, step 2 had started.
    assert_eq!(last.unwrap().ranges, vec![(1, 2)]);
    let first = p.states.iter().find(|s| matches!(s.kind, Kind::Prefix(0)));
    // Before step 1 started, and after: both must see the set-up state.
    assert_eq!(first.unwrap().ranges, vec![(0, 0), (0, 1)]);
}

/// The workloads of `all` whose names are `names`.
fn named(all: &[Workload], names: &[&str]) -> Vec<Workload> {
    let v: Vec<Workload> = all
        .iter()
        .filter(|w| names.contains(&w.name.as_str()))
        .cloned()
        .collect();
    assert_eq!(v.len(), names.len(), "workloads named {:?}", names);
    v
}

/// Checks `workloads` with `fault` injected; returns the failures.
fn failures_with(workloads: &[Workload], fault: Fault) -> u64 {
    let templates = Templates::new();
    let mut t = Totals::default();
    for (i, w) in workloads.iter().enumerate() {
        t.add(check_workload(w, &templates, i as u64, None, fault));
    }
    t.failures
}

#[test]
fn the_oracle_passes_the_engine_and_catches_injected_faults() {
    let all = ace_workloads();
    let ws = named(
        &all,
        &[
            "create d0/f1; sync",
            "write d0/f0 @700+6000; store put k1",
            "mv d0/f0 d0/f1; sync; store rm k0; sync",
            "mkdir d1; mv d0/f0 d1/f1; rmdir d0",
        ],
    );
    assert_eq!(failures_with(&ws, Fault::None), 0);
    // A device that drops flushes loses commits that were acknowledged.
    assert!(failures_with(&ws, Fault::IgnoreFlushes) > 0);
    // File operations are not durable until a sync: claiming so is caught where no sync
    // followed.
    let unsynced = named(&all, &["mkdir d1; mv d0/f0 d1/f1; rmdir d0"]);
    assert!(failures_with(&unsynced, Fault::EagerAcks) > 0);
}
/// Every crash state of a first open: redb's file grown but not initialised, initialised but
/// without the engine's tables. Both once failed every later open (the boot never formats
/// again, so the partition was lost until `store format -f`).
#[test]
fn a_crash_in_the_first_open_leaves_a_store_that_opens() {
    let ws = blank_workloads();
    assert_eq!(failures_with(&ws, Fault::None), 0);
}
