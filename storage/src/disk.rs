//! The disk engine: the store in a redb database (copy-on-write B-trees, checksummed commits)
//! on a capmon data partition, through `backend::BlockBackend`. Every `Engine` method is one
//! write transaction, committed durably (the commit flushes the device) before it returns.
//!
//! Tables (docs/storage.md has the full description):
//! - `objects`:     hash [u8; 32] -> canonical Object message
//! - `object_meta`: hash -> (schema id, version, refs, size)
//! - `names`:       name -> StoredBinding message
//! - `meta`:        "layout", "generation", "next_inode" -> u64
//! - `fs_inodes`:   inode -> Inode message
//! - `fs_dirents`:  (directory inode, name) -> inode
//! - `fs_chunks`:   (inode, chunk index) -> up to CHUNK_SIZE bytes (a missing chunk reads as zeros)
use crate::engine::*;
use crate::error::{Result, StoreError};
use crate::object::{hex, Hash};
use crate::rights::Rights;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use capmon_schema::storage_capnp::{
    inode, rights as rights_capnp, stored_binding, sturdy_ref, NodeKind as Kind,
};
use core::sync::atomic::{AtomicU64, Ordering};
use redb::{
    Database, ReadOnlyDatabase, ReadTransaction, ReadableDatabase, ReadableTable,
    ReadableTableMetadata, TableDefinition, WriteTransaction,
};
use spin::Mutex;

const OBJECTS: TableDefinition<[u8; 32], &[u8]> = TableDefinition::new("objects");
const OBJECT_META: TableDefinition<[u8; 32], (u64, u16, u32, u64)> =
    TableDefinition::new("object_meta");
const NAMES: TableDefinition<&str, &[u8]> = TableDefinition::new("names");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const INODES: TableDefinition<u64, &[u8]> = TableDefinition::new("fs_inodes");
const DIRENTS: TableDefinition<(u64, &str), u64> = TableDefinition::new("fs_dirents");
const CHUNKS: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("fs_chunks");

/// The table layout this build reads and writes (`meta["layout"]`).
pub const LAYOUT_VERSION: u64 = 1;

/// Records read from disk are read with these limits (they are small).
fn record_options() -> capnp::message::ReaderOptions {
    let mut o = capnp::message::ReaderOptions::new();
    o.traversal_limit_in_words(Some(64 * 1024)).nesting_limit(8);
    o
}

pub(crate) enum Db {
    Rw(Database),
    Ro(ReadOnlyDatabase),
    /// After an I/O error whose reopening failed too (see `DiskEngine::write`).
    Closed(String),
}

impl Db {
    fn begin_read(&self) -> Result<ReadTransaction> {
        match self {
            Db::Rw(d) => d.begin_read().map_err(io),
            Db::Ro(d) => d.begin_read().map_err(io),
            Db::Closed(why) => Err(StoreError::Io(why.clone())),
        }
    }
}

/// What the engine says about the device under it (kept by the opener, e.g. backend stats).
pub trait DeviceInfo: Send + Sync {
    /// The device's name (`vda1`).
    fn name(&self) -> String;
    /// Bytes the store may grow to, and the bytes it spans now.
    fn capacity(&self) -> u64;
    fn used(&self) -> u64;
    fn format_version(&self) -> u32;
    /// Opens the database again on the same device (redb refuses every operation after an
    /// I/O error until it is reopened; reopening recovers the last commit).
    fn reopen(&self) -> Result<Database>;
    /// The backend's counters since the store was opened.
    fn stats(&self) -> crate::backend::BackendStats;
}

pub struct DiskEngine {
    id: u64,
    read_only: bool,
    pub(crate) db: Mutex<Db>,
    dev: alloc::boxed::Box<dyn DeviceInfo>,
    clock: ClockFn,
    writers: crate::caps::Writers,
    /// Transactions committed without a flush since the last durable commit.
    unsynced: AtomicU64,
}

/// How long an operation waits for another CPU's transaction before it says `Busy`.
pub const LOCK_WAIT_NS: u64 = 2_000_000_000;

/// Takes `m`, waiting up to `LOCK_WAIT_NS` by `clock` while another CPU holds it (every
/// operation holds it for one transaction). A lock still held then was left by a stopped
/// command, or by one far longer than any operation should take: `Busy`, never a hang. With a
/// clock that does not move (tests), the wait is bounded by a spin count instead.
pub(crate) fn lock_bounded<T>(m: &Mutex<T>, clock: ClockFn) -> Result<spin::MutexGuard<'_, T>> {
    if let Some(g) = m.try_lock() {
        return Ok(g);
    }
    let start = clock();
    let mut spins: u64 = 0;
    loop {
        for _ in 0..64 {
            core::hint::spin_loop();
        }
        if let Some(g) = m.try_lock() {
            return Ok(g);
        }
        spins += 1;
        let waited = clock().wrapping_sub(start);
        if waited > LOCK_WAIT_NS || (waited == 0 && spins > 100_000) {
            return Err(busy());
        }
    }
}

/// A redb error as a store error: "full" becomes `NoSpace`, corruption `Corrupt`.
pub(crate) fn io<E: core::fmt::Display>(e: E) -> StoreError {
    let s = format!("{}", e);
    if s.contains("store full") {
        StoreError::NoSpace(s)
    } else if s.contains("orrupt") {
        StoreError::Corrupt(s)
    } else {
        StoreError::Io(s)
    }
}

/// The error of an engine whose lock stayed held past `LOCK_WAIT_NS`.
pub(crate) fn busy() -> StoreError {
    StoreError::Busy(String::from(
        "the store stayed locked for 2 s (a stopped command may have left it locked; \
         `store reopen` opens it afresh)",
    ))
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

// ---- records ----

pub fn encode_binding(s: &Stored) -> Vec<u8> {
    let mut m = capnp::message::Builder::new_default();
    {
        let mut b = m.init_root::<stored_binding::Builder>();
        match s {
            Stored::Object(h) => b.set_object(h),
            Stored::Cap(r) => {
                let mut c = b.init_capability();
                let mut rb = c.reborrow().init_rights();
                rb.set_read(r.rights.contains(Rights::READ));
                rb.set_write(r.rights.contains(Rights::WRITE));
                rb.set_append(r.rights.contains(Rights::APPEND));
                match r.kind {
                    CapKind::Store => c.set_store(()),
                    CapKind::Namespace => c.set_namespace(r.path.as_str()),
                    CapKind::Directory => c.set_directory(r.path.as_str()),
                    CapKind::File => c.set_file(r.path.as_str()),
                }
            }
        }
    }
    capnp::serialize::write_message_to_words(&m)
}

fn rights_of(r: rights_capnp::Reader) -> Rights {
    let mut b = 0;
    if r.get_read() {
        b |= 1;
    }
    if r.get_write() {
        b |= 2;
    }
    if r.get_append() {
        b |= 4;
    }
    Rights::from_bits(b)
}

fn text(t: capnp::Result<capnp::text::Reader>) -> Result<String> {
    t?.to_str()
        .map(|s| s.to_string())
        .map_err(|_| corrupt("a stored name is not UTF-8"))
}

pub fn decode_binding(mut bytes: &[u8]) -> Result<Stored> {
    let r = capnp::serialize::read_message_from_flat_slice(&mut bytes, record_options())
        .map_err(|e| StoreError::Corrupt(format!("binding record: {}", e)))?;
    let b: stored_binding::Reader = r
        .get_root()
        .map_err(|e| StoreError::Corrupt(format!("binding record: {}", e)))?;
    let bad = |e: capnp::Error| StoreError::Corrupt(format!("binding record: {}", e));
    match b
        .which()
        .map_err(|_| corrupt("binding record of an unknown kind"))?
    {
        stored_binding::Object(h) => {
            let h = h.map_err(bad)?;
            let h: Hash = h
                .try_into()
                .map_err(|_| corrupt("binding hash is not 32 bytes"))?;
            Ok(Stored::Object(h))
        }
        stored_binding::Capability(c) => {
            let c = c.map_err(bad)?;
            let rights = rights_of(c.get_rights().map_err(bad)?);
            let (kind, path) = match c
                .which()
                .map_err(|_| corrupt("capability of an unknown kind"))?
            {
                sturdy_ref::Store(()) => (CapKind::Store, String::new()),
                sturdy_ref::Namespace(p) => (CapKind::Namespace, text(p)?),
                sturdy_ref::Directory(p) => (CapKind::Directory, text(p)?),
                sturdy_ref::File(p) => (CapKind::File, text(p)?),
            };
            Ok(Stored::Cap(SturdyRef { kind, path, rights }))
        }
    }
}

pub fn encode_inode(s: &NodeStat, parent: u64) -> Vec<u8> {
    let mut m = capnp::message::Builder::new_default();
    {
        let mut b = m.init_root::<inode::Builder>();
        b.set_kind(match s.kind {
            NodeKind::File => Kind::File,
            NodeKind::Dir => Kind::Directory,
        });
        b.set_size(s.size);
        b.set_generation(s.generation);
        b.set_mtime_ns(s.mtime_ns);
        b.set_ctime_ns(s.ctime_ns);
        b.set_chunk_size(s.chunk_size);
        b.set_parent(parent);
    }
    capnp::serialize::write_message_to_words(&m)
}

/// An inode record: its stat and its parent.
pub fn decode_inode(ino: u64, mut bytes: &[u8]) -> Result<(NodeStat, u64)> {
    let bad = |e: capnp::Error| StoreError::Corrupt(format!("inode {}: {}", ino, e));
    let r = capnp::serialize::read_message_from_flat_slice(&mut bytes, record_options())
        .map_err(bad)?;
    let b: inode::Reader = r.get_root().map_err(bad)?;
    let kind = match b.get_kind() {
        Ok(Kind::File) => NodeKind::File,
        Ok(Kind::Directory) => NodeKind::Dir,
        Err(_) => return Err(StoreError::Corrupt(format!("inode {}: unknown kind", ino))),
    };
    let chunk_size = b.get_chunk_size();
    if kind == NodeKind::File && (chunk_size == 0 || chunk_size > 1 << 20) {
        return Err(StoreError::Corrupt(format!(
            "inode {}: chunk size {}",
            ino, chunk_size
        )));
    }
    Ok((
        NodeStat {
            kind,
            size: b.get_size(),
            inode: ino,
            generation: b.get_generation(),
            mtime_ns: b.get_mtime_ns(),
            ctime_ns: b.get_ctime_ns(),
            chunk_size,
        },
        b.get_parent(),
    ))
}

// ---- growth ----

/// redb's largest region with 4 KiB pages: below it the file grows by doubling, above it by
/// up to two regions at a time (redb's `PageManager::grow`).
const REDB_REGION_BYTES: u64 = 4 << 30;
/// What a transaction may need beyond twice its data: its B-tree pages copied on write, and
/// the largest single allocation (a 4 MiB object's page, up to 8 MiB), which redb grows for
/// twice over.
const TXN_SLACK_BYTES: u64 = 16 << 20;

/// The longest redb's file of `len` bytes may become in a transaction that writes `data`
/// bytes: redb's growth steps, taken as if the file were full, until they add twice the data
/// plus the slack.
pub fn worst_growth(len: u64, data: u64) -> u64 {
    let need = data.saturating_mul(2).saturating_add(TXN_SLACK_BYTES);
    let mut l = len;
    while l.saturating_sub(len) < need && l < u64::MAX {
        l = if l < REDB_REGION_BYTES {
            l.saturating_mul(2).max(l.saturating_add(TXN_SLACK_BYTES))
        } else {
            l.saturating_add(2 * REDB_REGION_BYTES)
        };
    }
    l
}

// ---- the engine ----

impl DiskEngine {
    /// Creates the tables of an empty store in a freshly created database.
    pub fn init(db: &Database, now_ns: u64) -> Result<()> {
        let tx = db.begin_write().map_err(io)?;
        {
            let mut meta = tx.open_table(META).map_err(io)?;
            if meta.get("layout").map_err(io)?.is_some() {
                return Err(StoreError::Exists("the store's tables".to_string()));
            }
            meta.insert("layout", LAYOUT_VERSION).map_err(io)?;
            meta.insert("generation", 1).map_err(io)?;
            meta.insert("next_inode", ROOT_INODE + 1).map_err(io)?;
            tx.open_table(OBJECTS).map_err(io)?;
            tx.open_table(OBJECT_META).map_err(io)?;
            tx.open_table(NAMES).map_err(io)?;
            tx.open_table(DIRENTS).map_err(io)?;
            tx.open_table(CHUNKS).map_err(io)?;
            let root = NodeStat {
                kind: NodeKind::Dir,
                size: 0,
                inode: ROOT_INODE,
                generation: 1,
                mtime_ns: now_ns,
                ctime_ns: now_ns,
                chunk_size: 0,
            };
            tx.open_table(INODES)
                .map_err(io)?
                .insert(ROOT_INODE, encode_inode(&root, ROOT_INODE).as_slice())
                .map_err(io)?;
        }
        tx.commit().map_err(io)
    }

    /// An engine over an open database. Checks the table layout: a store from a newer build is
    /// refused by name, not misread.
    pub(crate) fn new(db: Db, dev: alloc::boxed::Box<dyn DeviceInfo>) -> Result<Self> {
        let e = DiskEngine {
            id: crate::ram::next_engine_id(),
            read_only: matches!(db, Db::Ro(_)),
            db: Mutex::new(db),
            dev,
            clock: no_clock,
            writers: crate::caps::Writers::default(),
            unsynced: AtomicU64::new(0),
        };
        let layout = e.read(|tx| {
            let meta = tx.open_table(META).map_err(io)?;
            let v = meta.get("layout").map_err(io)?.map(|g| g.value());
            Ok(v)
        })?;
        match layout {
            Some(LAYOUT_VERSION) => Ok(e),
            Some(v) => Err(StoreError::Unsupported(format!(
                "table layout {} (this build reads {})",
                v, LAYOUT_VERSION
            ))),
            None => Err(corrupt("the store has no layout record")),
        }
    }

    /// Runs redb's own integrity check (page checksums, tree structure). Needs no other
    /// transaction open.
    pub fn check_integrity(&self) -> Result<bool> {
        match &mut *self.lock()? {
            Db::Rw(d) => d.check_integrity().map_err(io),
            Db::Ro(_) => Ok(true),
            Db::Closed(why) => Err(StoreError::Io(why.clone())),
        }
    }

    /// The database, or `Busy` if its lock is held: only possible when a command was stopped
    /// (a fault, a panic, `on`'s timeout) while it used the store. Waiting would hang the
    /// monitor for good; `store reopen` gives a fresh engine instead.
    fn lock(&self) -> Result<spin::MutexGuard<'_, Db>> {
        lock_bounded(&self.db, self.clock)
    }

    /// The same engine, stamping times from `clock` and timing its lock waits by it.
    pub fn with_clock(mut self, clock: ClockFn) -> Self {
        self.clock = clock;
        self
    }

    fn read<T>(&self, f: impl FnOnce(&ReadTransaction) -> Result<T>) -> Result<T> {
        let db = self.lock()?;
        let tx = db.begin_read()?;
        f(&tx)
    }

    /// One write transaction: `f`, then the generation bumped, then a durable commit. An error
    /// from `f` aborts it, leaving the store as it was.
    fn write<T>(&self, f: impl FnOnce(&WriteTransaction) -> Result<T>) -> Result<T> {
        self.write_as(true, f)
    }

    /// A file-system transaction writing about `data` bytes: committed without a flush
    /// (durable at the next durable commit), unless redb's file could outgrow the partition
    /// in it. A transaction that fails for lack of space makes redb reopen the database,
    /// which drops what was committed without a flush; so whenever this one could fail so,
    /// it and everything before it are made durable, and a full partition never costs an
    /// operation that returned.
    fn write_fs<T>(&self, data: u64, f: impl FnOnce(&WriteTransaction) -> Result<T>) -> Result<T> {
        let sb = crate::backend::SUPERBLOCK_BYTES;
        let region = self.dev.used().saturating_sub(sb);
        let durable = sb.saturating_add(worst_growth(region, data)) > self.dev.capacity();
        self.write_as(durable, f)
    }

    fn write_as<T>(
        &self,
        durable: bool,
        f: impl FnOnce(&WriteTransaction) -> Result<T>,
    ) -> Result<T> {
        let db = self.lock()?;
        let d = match &*db {
            Db::Rw(d) => d,
            Db::Ro(_) => {
                return Err(StoreError::PermissionDenied {
                    what: "write",
                    cap: format!("the store on {} (opened read-only)", self.dev.name()),
                })
            }
            Db::Closed(why) => return Err(StoreError::Io(why.clone())),
        };
        let r = (|| {
            let mut tx = d.begin_write().map_err(io)?;
            if !durable {
                tx.set_durability(redb::Durability::None).map_err(io)?;
            }
            let v = f(&tx)?;
            {
                let mut meta = tx.open_table(META).map_err(io)?;
                let g = meta.get("generation").map_err(io)?.map_or(0, |g| g.value());
                meta.insert("generation", g + 1).map_err(io)?;
            }
            tx.commit().map_err(io)?;
            if durable {
                self.unsynced.store(0, Ordering::Release);
            } else {
                self.unsynced.fetch_add(1, Ordering::Release);
            }
            Ok(v)
        })();
        if let Err(StoreError::Io(_) | StoreError::NoSpace(_)) = &r {
            // redb refuses everything after a device error ("previous I/O error") until the
            // database is reopened; reopening recovers the last commit, which the failed
            // transaction never reached.
            // What was committed without a flush is lost with the reopening (it never was
            // durable); `write_fs` makes a commit durable wherever it could run out of space, so that
            // one cannot cost it.
            self.unsynced.store(0, Ordering::Release);
            let mut db = db;
            *db = Db::Closed(String::from("the store is closed after an I/O error"));
            *db = match self.dev.reopen() {
                Ok(d) => Db::Rw(d),
                Err(e) => Db::Closed(format!(
                    "the store could not be reopened after an I/O error: {}",
                    e
                )),
            };
        }
        r
    }
}

fn obj_missing(h: &Hash) -> StoreError {
    StoreError::NotFound(format!("object {}", hex(h)))
}

/// Adds `delta` to an object's reference count inside `tx`.
fn add_ref(tx: &WriteTransaction, h: &Hash, delta: i64) -> Result<u32> {
    let mut t = tx.open_table(OBJECT_META).map_err(io)?;
    let (sid, ver, refs, size) = t.get(h).map_err(io)?.ok_or_else(|| obj_missing(h))?.value();
    let refs = (refs as i64 + delta).clamp(0, u32::MAX as i64) as u32;
    t.insert(h, (sid, ver, refs, size)).map_err(io)?;
    Ok(refs)
}

fn bind_tx(tx: &WriteTransaction, name: &str, value: &Stored, replace: bool) -> Result<()> {
    if let Stored::Object(h) = value {
        add_ref(tx, h, 1)?;
    }
    let old = {
        let mut names = tx.open_table(NAMES).map_err(io)?;
        let old = names
            .get(name)
            .map_err(io)?
            .map(|g| decode_binding(g.value()));
        if old.is_some() && !replace {
            return Err(StoreError::Exists(name.to_string()));
        }
        names
            .insert(name, encode_binding(value).as_slice())
            .map_err(io)?;
        old
    };
    if let Some(Ok(Stored::Object(h))) = old {
        // A replaced object no name binds any more goes, as on unbind.
        if add_ref(tx, &h, -1)? == 0 {
            delete_object(tx, &h)?;
        }
    }
    Ok(())
}

fn delete_object(tx: &WriteTransaction, h: &Hash) -> Result<()> {
    tx.open_table(OBJECTS).map_err(io)?.remove(h).map_err(io)?;
    tx.open_table(OBJECT_META)
        .map_err(io)?
        .remove(h)
        .map_err(io)?;
    Ok(())
}

fn stat_of(h: [u8; 32], v: (u64, u16, u32, u64)) -> ObjStat {
    ObjStat {
        hash: h,
        schema_id: v.0,
        version: v.1,
        refs: v.2,
        size: v.3,
    }
}

impl Engine for DiskEngine {
    fn info(&self) -> Result<EngineInfo> {
        let mut info = self.read(|tx| {
            let meta = tx.open_table(META).map_err(io)?;
            let generation = meta.get("generation").map_err(io)?.map_or(0, |g| g.value());
            let om = tx.open_table(OBJECT_META).map_err(io)?;
            let mut object_bytes = 0;
            for r in om.iter().map_err(io)? {
                let (_, v) = r.map_err(io)?;
                object_bytes += v.value().3;
            }
            let objects = om.len().map_err(io)?;
            let names = tx.open_table(NAMES).map_err(io)?.len().map_err(io)?;
            let (mut files, mut dirs) = (0, 0);
            for r in tx.open_table(INODES).map_err(io)?.iter().map_err(io)? {
                let (k, v) = r.map_err(io)?;
                match decode_inode(k.value(), v.value())?.0.kind {
                    NodeKind::File => files += 1,
                    NodeKind::Dir => dirs += 1,
                }
            }
            Ok(EngineInfo {
                engine: "redb",
                objects,
                object_bytes,
                names,
                files,
                dirs,
                generation,
                ..EngineInfo::default()
            })
        })?;
        info.device = self.dev.name();
        info.read_only = self.read_only();
        info.capacity = self.dev.capacity();
        info.used = self.dev.used();
        info.format_version = self.dev.format_version();
        Ok(info)
    }

    fn id(&self) -> u64 {
        self.id
    }

    fn read_only(&self) -> bool {
        self.read_only
    }

    fn put(&self, obj: NewObject<'_>, bind: Option<(&str, bool)>) -> Result<bool> {
        self.write(|tx| {
            let new = {
                let mut om = tx.open_table(OBJECT_META).map_err(io)?;
                let new = om.get(&obj.hash).map_err(io)?.is_none();
                if new {
                    om.insert(
                        &obj.hash,
                        (obj.schema_id, obj.version, 0u32, obj.bytes.len() as u64),
                    )
                    .map_err(io)?;
                    tx.open_table(OBJECTS)
                        .map_err(io)?
                        .insert(&obj.hash, obj.bytes)
                        .map_err(io)?;
                }
                new
            };
            if let Some((name, replace)) = bind {
                bind_tx(tx, name, &Stored::Object(obj.hash), replace)?;
            }
            Ok(new)
        })
    }

    fn get(&self, hash: &Hash) -> Result<Option<Vec<u8>>> {
        self.read(|tx| {
            let t = tx.open_table(OBJECTS).map_err(io)?;
            let v = t.get(hash).map_err(io)?.map(|g| g.value().to_vec());
            Ok(v)
        })
    }

    fn stat(&self, hash: &Hash) -> Result<Option<ObjStat>> {
        self.read(|tx| {
            let t = tx.open_table(OBJECT_META).map_err(io)?;
            let v = t.get(hash).map_err(io)?.map(|g| stat_of(*hash, g.value()));
            Ok(v)
        })
    }

    fn delete(&self, hash: &Hash) -> Result<()> {
        self.write(|tx| {
            let refs = {
                let t = tx.open_table(OBJECT_META).map_err(io)?;
                let v = t.get(hash).map_err(io)?.ok_or_else(|| obj_missing(hash))?;
                v.value().2
            };
            if refs > 0 {
                return Err(StoreError::InUse { refs });
            }
            delete_object(tx, hash)
        })
    }

    fn objects(&self) -> Result<Vec<ObjStat>> {
        self.read(|tx| {
            let t = tx.open_table(OBJECT_META).map_err(io)?;
            let mut v = Vec::new();
            for r in t.iter().map_err(io)? {
                let (k, m) = r.map_err(io)?;
                v.push(stat_of(k.value(), m.value()));
            }
            Ok(v)
        })
    }

    fn bind(&self, name: &str, value: Stored, replace: bool) -> Result<()> {
        self.write(|tx| bind_tx(tx, name, &value, replace))
    }

    fn lookup(&self, name: &str) -> Result<Option<Stored>> {
        self.read(|tx| {
            let t = tx.open_table(NAMES).map_err(io)?;
            let v = t.get(name).map_err(io)?;
            v.map(|g| decode_binding(g.value())).transpose()
        })
    }

    fn unbind(&self, name: &str, collect: bool) -> Result<Stored> {
        self.write(|tx| {
            let old = {
                let mut t = tx.open_table(NAMES).map_err(io)?;
                let v = t
                    .remove(name)
                    .map_err(io)?
                    .ok_or_else(|| StoreError::NotFound(name.to_string()))?;
                decode_binding(v.value())?
            };
            if let Stored::Object(h) = &old {
                let refs = add_ref(tx, h, -1)?;
                if refs == 0 && collect {
                    delete_object(tx, h)?;
                }
            }
            Ok(old)
        })
    }

    fn names(&self, prefix: &str) -> Result<Vec<(String, Stored)>> {
        self.read(|tx| {
            let t = tx.open_table(NAMES).map_err(io)?;
            let mut v = Vec::new();
            for r in t.range(prefix..).map_err(io)? {
                let (k, b) = r.map_err(io)?;
                let k = k.value();
                if !k.starts_with(prefix) {
                    break;
                }
                v.push((k.to_string(), decode_binding(b.value())?));
            }
            Ok(v)
        })
    }

    fn fs_lookup(&self, dir: u64, name: &str) -> Result<Option<u64>> {
        self.read(|tx| {
            let (st, _) = inode_in(tx, dir)?;
            if st.kind != NodeKind::Dir {
                return Err(StoreError::NotDirectory(name.to_string()));
            }
            let t = tx.open_table(DIRENTS).map_err(io)?;
            let v = t.get((dir, name)).map_err(io)?.map(|g| g.value());
            Ok(v)
        })
    }

    fn fs_stat(&self, ino: u64) -> Result<NodeStat> {
        self.read(|tx| inode_in(tx, ino).map(|(s, _)| s))
    }

    fn fs_list(&self, dir: u64) -> Result<Vec<DirEnt>> {
        self.read(|tx| {
            let (st, _) = inode_in(tx, dir)?;
            if st.kind != NodeKind::Dir {
                return Err(StoreError::NotDirectory(format!("inode {}", dir)));
            }
            let t = tx.open_table(DIRENTS).map_err(io)?;
            let inodes = tx.open_table(INODES).map_err(io)?;
            let mut v = Vec::new();
            for r in t.range((dir, "")..(dir + 1, "")).map_err(io)? {
                let (k, ino) = r.map_err(io)?;
                let (_, name) = k.value();
                let ino = ino.value();
                let rec = inodes.get(ino).map_err(io)?.ok_or_else(|| {
                    StoreError::Corrupt(format!("entry {} has no inode {}", name, ino))
                })?;
                let (s, _) = decode_inode(ino, rec.value())?;
                v.push(DirEnt {
                    name: name.to_string(),
                    kind: s.kind,
                    inode: ino,
                    size: s.size,
                });
            }
            Ok(v)
        })
    }

    fn fs_read(&self, ino: u64, offset: u64, buf: &mut [u8]) -> Result<usize> {
        self.read(|tx| {
            let (st, _) = inode_in(tx, ino)?;
            if st.kind == NodeKind::Dir {
                return Err(StoreError::IsDirectory(format!("inode {}", ino)));
            }
            if offset >= st.size || buf.is_empty() {
                return Ok(0);
            }
            let n = ((st.size - offset).min(buf.len() as u64)) as usize;
            let cs = st.chunk_size as u64;
            let chunks = tx.open_table(CHUNKS).map_err(io)?;
            let mut done = 0usize;
            while done < n {
                let pos = offset + done as u64;
                let (idx, within) = (pos / cs, (pos % cs) as usize);
                let k = ((cs as usize) - within).min(n - done);
                let out = &mut buf[done..done + k];
                match chunks.get((ino, idx)).map_err(io)? {
                    Some(g) => {
                        let c = g.value();
                        // A chunk shorter than the window reads as zeros past its end (holes).
                        let have = c.len().saturating_sub(within).min(k);
                        out[..have].copy_from_slice(&c[within..within + have]);
                        out[have..].fill(0);
                    }
                    None => out.fill(0),
                }
                done += k;
            }
            Ok(n)
        })
    }

    fn now_ns(&self) -> u64 {
        (self.clock)()
    }

    fn writers(&self) -> &crate::caps::Writers {
        &self.writers
    }

    fn fs_create(&self, dir: u64, name: &str, kind: NodeKind) -> Result<u64> {
        crate::name::check_component(name)?;
        let now = self.now_ns();
        self.write_fs(0, |tx| {
            dir_w(tx, dir)?;
            if entry_w(tx, dir, name)?.is_some() {
                return Err(StoreError::Exists(name.to_string()));
            }
            let ino = alloc_inode(tx)?;
            let st = NodeStat {
                kind,
                size: 0,
                inode: ino,
                generation: 1,
                mtime_ns: now,
                ctime_ns: now,
                chunk_size: if kind == NodeKind::File {
                    CHUNK_SIZE
                } else {
                    0
                },
            };
            put_inode(tx, &st, dir)?;
            tx.open_table(DIRENTS)
                .map_err(io)?
                .insert((dir, name), ino)
                .map_err(io)?;
            dir_changed(tx, dir, 1, now)?;
            Ok(ino)
        })
    }

    fn fs_put(&self, dir: u64, name: &str, data: &[u8], in_use: InUse<'_>) -> Result<u64> {
        crate::name::check_component(name)?;
        size_ok(data.len() as u64)?;
        let now = self.now_ns();
        self.write_fs(data.len() as u64, |tx| {
            dir_w(tx, dir)?;
            let (mut st, ino) = match entry_w(tx, dir, name)? {
                Some(ino) => {
                    let (st, _) = inode_w(tx, ino)?;
                    if st.kind == NodeKind::Dir {
                        return Err(StoreError::IsDirectory(name.to_string()));
                    }
                    if in_use(ino) {
                        return Err(crate::caps::writer_busy(name));
                    }
                    cut_chunks(tx, ino, st.chunk_size as u64, 0)?;
                    (st, ino)
                }
                None => {
                    let ino = alloc_inode(tx)?;
                    tx.open_table(DIRENTS)
                        .map_err(io)?
                        .insert((dir, name), ino)
                        .map_err(io)?;
                    dir_changed(tx, dir, 1, now)?;
                    let st = NodeStat {
                        kind: NodeKind::File,
                        size: 0,
                        inode: ino,
                        generation: 0,
                        mtime_ns: now,
                        ctime_ns: now,
                        chunk_size: CHUNK_SIZE,
                    };
                    (st, ino)
                }
            };
            write_chunks(tx, ino, st.chunk_size as u64, 0, data)?;
            st.size = data.len() as u64;
            st.generation += 1;
            st.mtime_ns = now;
            st.ctime_ns = now;
            put_inode(tx, &st, dir)?;
            Ok(ino)
        })
    }

    fn fs_write(&self, ino: u64, at: At, data: &[u8]) -> Result<u64> {
        let now = self.now_ns();
        self.write_fs(data.len() as u64, |tx| {
            let (mut st, parent) = file_w(tx, ino)?;
            let off = match at {
                At::Offset(o) => o,
                At::End => st.size,
            };
            let end = off.saturating_add(data.len() as u64);
            size_ok(end)?;
            write_chunks(tx, ino, st.chunk_size as u64, off, data)?;
            st.size = st.size.max(end);
            st.generation += 1;
            st.mtime_ns = now;
            st.ctime_ns = now;
            put_inode(tx, &st, parent)?;
            Ok(off)
        })
    }

    fn fs_truncate(&self, ino: u64, size: u64) -> Result<()> {
        size_ok(size)?;
        let now = self.now_ns();
        self.write_fs(0, |tx| {
            let (mut st, parent) = file_w(tx, ino)?;
            if size < st.size {
                cut_chunks(tx, ino, st.chunk_size as u64, size)?;
            }
            st.size = size;
            st.generation += 1;
            st.mtime_ns = now;
            st.ctime_ns = now;
            put_inode(tx, &st, parent)
        })
    }

    fn fs_remove(&self, dir: u64, name: &str, recursive: bool, in_use: InUse<'_>) -> Result<u64> {
        crate::name::check_component(name)?;
        let now = self.now_ns();
        self.write_fs(0, |tx| {
            dir_w(tx, dir)?;
            let ino =
                entry_w(tx, dir, name)?.ok_or_else(|| StoreError::NotFound(name.to_string()))?;
            let nodes = subtree_w(tx, ino)?;
            if nodes.len() > 1 && !recursive {
                return Err(StoreError::NotEmpty(name.to_string()));
            }
            if nodes.iter().any(|&(i, _)| in_use(i)) {
                return Err(crate::caps::writer_busy(name));
            }
            tx.open_table(DIRENTS)
                .map_err(io)?
                .remove((dir, name))
                .map_err(io)?;
            drop_nodes(tx, &nodes)?;
            dir_changed(tx, dir, -1, now)?;
            Ok(nodes.len() as u64)
        })
    }

    fn fs_rename(
        &self,
        from_dir: u64,
        from: &str,
        to_dir: u64,
        to: &str,
        in_use: InUse<'_>,
    ) -> Result<()> {
        crate::name::check_component(from)?;
        crate::name::check_component(to)?;
        let now = self.now_ns();
        self.write_fs(0, |tx| {
            dir_w(tx, from_dir)?;
            dir_w(tx, to_dir)?;
            let src = entry_w(tx, from_dir, from)?
                .ok_or_else(|| StoreError::NotFound(from.to_string()))?;
            let (mut sst, _) = inode_w(tx, src)?;
            if sst.kind == NodeKind::Dir {
                // A directory cannot go under itself: walk up from the target directory.
                let mut d = to_dir;
                let mut steps = 0u32;
                loop {
                    if d == src {
                        return Err(crate::caps::into_itself(from, to));
                    }
                    if d == ROOT_INODE {
                        break;
                    }
                    steps += 1;
                    if steps > 1_000_000 {
                        return Err(corrupt("a directory's parents loop"));
                    }
                    d = inode_w(tx, d)?.1;
                }
            }
            let dst = entry_w(tx, to_dir, to)?;
            if dst == Some(src) {
                return Ok(());
            }
            if let Some(d) = dst {
                let (dst_st, _) = inode_w(tx, d)?;
                match (sst.kind, dst_st.kind) {
                    (NodeKind::File, NodeKind::Dir) => {
                        return Err(StoreError::IsDirectory(to.to_string()))
                    }
                    (NodeKind::Dir, NodeKind::File) => {
                        return Err(StoreError::NotDirectory(to.to_string()))
                    }
                    (NodeKind::Dir, NodeKind::Dir) if dst_st.size > 0 => {
                        return Err(StoreError::NotEmpty(to.to_string()))
                    }
                    _ => {}
                }
                if in_use(d) {
                    return Err(crate::caps::writer_busy(to));
                }
                drop_nodes(tx, &[(d, dst_st.kind)])?;
            }
            {
                let mut t = tx.open_table(DIRENTS).map_err(io)?;
                t.remove((from_dir, from)).map_err(io)?;
                t.insert((to_dir, to), src).map_err(io)?;
            }
            sst.ctime_ns = now;
            put_inode(tx, &sst, to_dir)?;
            let added = if dst.is_some() { 0 } else { 1 };
            if from_dir == to_dir {
                dir_changed(tx, from_dir, added - 1, now)?;
            } else {
                dir_changed(tx, from_dir, -1, now)?;
                dir_changed(tx, to_dir, added, now)?;
            }
            Ok(())
        })
    }

    fn sync(&self) -> Result<()> {
        // Nothing waits for a flush: every commit so far was durable (the counter is changed
        // under the engine lock, after the commit it counts).
        if self.read_only || self.unsynced.load(Ordering::Acquire) == 0 {
            return Ok(());
        }
        self.write(|_| Ok(()))
    }

    fn unsynced(&self) -> u64 {
        self.unsynced.load(Ordering::Relaxed)
    }

    fn import(&self, items: &[ImportItem<'_>]) -> Result<()> {
        self.write(|tx| {
            let mut next = {
                let meta = tx.open_table(META).map_err(io)?;
                let v = meta.get("next_inode").map_err(io)?.map(|g| g.value());
                v.ok_or_else(|| corrupt("no next_inode record"))?
            };
            let mut dirs_touched: Vec<u64> = Vec::new();
            for it in items {
                crate::name::check(it.path)?;
                let (parent_path, leaf) = match it.path.rsplit_once('/') {
                    Some((p, l)) => (Some(p), l),
                    None => (None, it.path),
                };
                let mut dir = ROOT_INODE;
                if let Some(p) = parent_path {
                    let t = tx.open_table(DIRENTS).map_err(io)?;
                    for c in p.split('/') {
                        dir = t
                            .get((dir, c))
                            .map_err(io)?
                            .ok_or_else(|| StoreError::NotFound(p.to_string()))?
                            .value();
                    }
                }
                let (pst, _) = inode_w(tx, dir)?;
                if pst.kind != NodeKind::Dir {
                    return Err(StoreError::NotDirectory(it.path.to_string()));
                }
                let existing = tx
                    .open_table(DIRENTS)
                    .map_err(io)?
                    .get((dir, leaf))
                    .map_err(io)?
                    .map(|g| g.value());
                if let Some(e) = existing {
                    if it.data.is_none() && inode_w(tx, e)?.0.kind == NodeKind::Dir {
                        continue;
                    }
                    return Err(StoreError::Exists(it.path.to_string()));
                }
                let ino = next;
                next += 1;
                let st = NodeStat {
                    kind: if it.data.is_some() {
                        NodeKind::File
                    } else {
                        NodeKind::Dir
                    },
                    size: it.data.map_or(0, |d| d.len() as u64),
                    inode: ino,
                    generation: 1,
                    mtime_ns: it.mtime_ns,
                    ctime_ns: it.mtime_ns,
                    chunk_size: if it.data.is_some() { CHUNK_SIZE } else { 0 },
                };
                if let Some(d) = it.data {
                    let mut chunks = tx.open_table(CHUNKS).map_err(io)?;
                    for (i, c) in d.chunks(CHUNK_SIZE as usize).enumerate() {
                        chunks.insert((ino, i as u64), c).map_err(io)?;
                    }
                }
                tx.open_table(INODES)
                    .map_err(io)?
                    .insert(ino, encode_inode(&st, dir).as_slice())
                    .map_err(io)?;
                tx.open_table(DIRENTS)
                    .map_err(io)?
                    .insert((dir, leaf), ino)
                    .map_err(io)?;
                if !dirs_touched.contains(&dir) {
                    dirs_touched.push(dir);
                }
            }
            // Directory sizes are their entry counts.
            for d in dirs_touched {
                let count = tx
                    .open_table(DIRENTS)
                    .map_err(io)?
                    .range((d, "")..(d + 1, ""))
                    .map_err(io)?
                    .count() as u64;
                let (mut st, parent) = inode_w(tx, d)?;
                st.size = count;
                st.generation += 1;
                tx.open_table(INODES)
                    .map_err(io)?
                    .insert(d, encode_inode(&st, parent).as_slice())
                    .map_err(io)?;
            }
            tx.open_table(META)
                .map_err(io)?
                .insert("next_inode", next)
                .map_err(io)?;
            Ok(())
        })
    }
}

/// Inode `ino` from the inode table of either kind of transaction.
fn inode_of(t: &impl ReadableTable<u64, &'static [u8]>, ino: u64) -> Result<(NodeStat, u64)> {
    let g = t
        .get(ino)
        .map_err(io)?
        .ok_or_else(|| StoreError::NotFound(format!("inode {}", ino)))?;
    decode_inode(ino, g.value())
}

fn inode_in(tx: &ReadTransaction, ino: u64) -> Result<(NodeStat, u64)> {
    inode_of(&tx.open_table(INODES).map_err(io)?, ino)
}

fn inode_w(tx: &WriteTransaction, ino: u64) -> Result<(NodeStat, u64)> {
    inode_of(&tx.open_table(INODES).map_err(io)?, ino)
}

// ---- file-system helpers inside a write transaction ----

fn put_inode(tx: &WriteTransaction, st: &NodeStat, parent: u64) -> Result<()> {
    tx.open_table(INODES)
        .map_err(io)?
        .insert(st.inode, encode_inode(st, parent).as_slice())
        .map_err(io)?;
    Ok(())
}

fn dir_w(tx: &WriteTransaction, ino: u64) -> Result<(NodeStat, u64)> {
    let (st, p) = inode_w(tx, ino)?;
    if st.kind != NodeKind::Dir {
        return Err(StoreError::NotDirectory(format!("inode {}", ino)));
    }
    Ok((st, p))
}

fn file_w(tx: &WriteTransaction, ino: u64) -> Result<(NodeStat, u64)> {
    let (st, p) = inode_w(tx, ino)?;
    if st.kind != NodeKind::File {
        return Err(StoreError::IsDirectory(format!("inode {}", ino)));
    }
    Ok((st, p))
}

fn entry_w(tx: &WriteTransaction, dir: u64, name: &str) -> Result<Option<u64>> {
    let t = tx.open_table(DIRENTS).map_err(io)?;
    let v = t.get((dir, name)).map_err(io)?.map(|g| g.value());
    Ok(v)
}

fn alloc_inode(tx: &WriteTransaction) -> Result<u64> {
    let mut meta = tx.open_table(META).map_err(io)?;
    let next = meta
        .get("next_inode")
        .map_err(io)?
        .map(|g| g.value())
        .ok_or_else(|| corrupt("no next_inode record"))?;
    meta.insert("next_inode", next + 1).map_err(io)?;
    Ok(next)
}

/// Directory `dir` gained (`+1`) or lost (`-1`) an entry.
fn dir_changed(tx: &WriteTransaction, dir: u64, delta: i64, now: u64) -> Result<()> {
    let (mut st, parent) = dir_w(tx, dir)?;
    st.size = (st.size as i64 + delta).max(0) as u64;
    st.generation += 1;
    st.mtime_ns = now;
    st.ctime_ns = now;
    put_inode(tx, &st, parent)
}

fn size_ok(size: u64) -> Result<()> {
    if size > MAX_FILE_SIZE {
        return Err(StoreError::TooLarge {
            what: "file",
            size,
            limit: MAX_FILE_SIZE,
        });
    }
    Ok(())
}

/// Writes `data` at `off` into the chunks of file `ino` (chunk size `cs`). A chunk keeps only
/// the bytes up to the last one written in it; the rest of its window reads as zeros.
fn write_chunks(tx: &WriteTransaction, ino: u64, cs: u64, off: u64, data: &[u8]) -> Result<()> {
    let mut chunks = tx.open_table(CHUNKS).map_err(io)?;
    let mut done = 0usize;
    while done < data.len() {
        let pos = off + done as u64;
        let (idx, within) = (pos / cs, (pos % cs) as usize);
        let k = (cs as usize - within).min(data.len() - done);
        let src = &data[done..done + k];
        if within == 0 && k == cs as usize {
            chunks.insert((ino, idx), src).map_err(io)?;
        } else {
            let mut c = chunks
                .get((ino, idx))
                .map_err(io)?
                .map(|g| g.value().to_vec())
                .unwrap_or_default();
            if c.len() < within + k {
                c.resize(within + k, 0);
            }
            c[within..within + k].copy_from_slice(src);
            chunks.insert((ino, idx), c.as_slice()).map_err(io)?;
        }
        done += k;
    }
    Ok(())
}

/// Drops every byte of file `ino` at or past `size`.
fn cut_chunks(tx: &WriteTransaction, ino: u64, cs: u64, size: u64) -> Result<()> {
    let mut chunks = tx.open_table(CHUNKS).map_err(io)?;
    let first_gone = size.div_ceil(cs);
    let keys: Vec<u64> = chunks
        .range((ino, first_gone)..=(ino, u64::MAX))
        .map_err(io)?
        .map(|r| r.map(|(k, _)| k.value().1).map_err(io))
        .collect::<Result<_>>()?;
    for idx in keys {
        chunks.remove((ino, idx)).map_err(io)?;
    }
    let within = (size % cs) as usize;
    if within != 0 {
        let idx = size / cs;
        let c = chunks
            .get((ino, idx))
            .map_err(io)?
            .map(|g| g.value().to_vec());
        if let Some(c) = c {
            if c.len() > within {
                chunks.insert((ino, idx), &c[..within]).map_err(io)?;
            }
        }
    }
    Ok(())
}

/// Every inode of the tree at `ino` (itself first).
fn subtree_w(tx: &WriteTransaction, ino: u64) -> Result<Vec<(u64, NodeKind)>> {
    let inodes = tx.open_table(INODES).map_err(io)?;
    let dirents = tx.open_table(DIRENTS).map_err(io)?;
    let (st, _) = inode_of(&inodes, ino)?;
    let mut out = alloc::vec![(ino, st.kind)];
    let mut i = 0;
    while i < out.len() {
        let (d, kind) = out[i];
        i += 1;
        if kind != NodeKind::Dir {
            continue;
        }
        for r in dirents.range((d, "")..(d + 1, "")).map_err(io)? {
            let (_, c) = r.map_err(io)?;
            let c = c.value();
            let (cst, _) = inode_of(&inodes, c)?;
            out.push((c, cst.kind));
        }
    }
    Ok(out)
}

/// Removes the records of the nodes in `nodes` (their inodes, their own entries, their
/// chunks); the entry naming the first one is the caller's.
fn drop_nodes(tx: &WriteTransaction, nodes: &[(u64, NodeKind)]) -> Result<()> {
    let mut inodes = tx.open_table(INODES).map_err(io)?;
    let mut dirents = tx.open_table(DIRENTS).map_err(io)?;
    let mut chunks = tx.open_table(CHUNKS).map_err(io)?;
    for &(ino, kind) in nodes {
        inodes.remove(ino).map_err(io)?;
        match kind {
            NodeKind::Dir => {
                let names: Vec<String> = dirents
                    .range((ino, "")..(ino + 1, ""))
                    .map_err(io)?
                    .map(|r| r.map(|(k, _)| k.value().1.to_string()).map_err(io))
                    .collect::<Result<_>>()?;
                for n in names {
                    dirents.remove((ino, n.as_str())).map_err(io)?;
                }
            }
            NodeKind::File => {
                let keys: Vec<u64> = chunks
                    .range((ino, 0)..=(ino, u64::MAX))
                    .map_err(io)?
                    .map(|r| r.map(|(k, _)| k.value().1).map_err(io))
                    .collect::<Result<_>>()?;
                for idx in keys {
                    chunks.remove((ino, idx)).map_err(io)?;
                }
            }
        }
    }
    Ok(())
}

// ---- opening a partition ----

/// Why a partition could not be opened as a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenFailure {
    /// The partition is not a usable store (superblock checks, device errors).
    Partition(crate::backend::OpenError),
    /// The superblock is fine but the database in it is not (redb's checks, table layout).
    Database(StoreError),
}

impl core::fmt::Display for OpenFailure {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            OpenFailure::Partition(e) => write!(f, "{}", e),
            OpenFailure::Database(e) => write!(f, "database: {}", e),
        }
    }
}

/// The cache redb keeps of the store's pages.
pub const CACHE_BYTES: usize = 16 << 20;

struct BackendInfo<D> {
    backend: crate::backend::BlockBackend<D>,
    name: String,
}

impl<D: capmon_block::BlockDevice + Send + 'static> DeviceInfo for BackendInfo<D> {
    fn name(&self) -> String {
        self.name.clone()
    }
    fn capacity(&self) -> u64 {
        self.backend
            .superblock()
            .partition_bytes
            .saturating_sub(crate::backend::SUPERBLOCK_BYTES)
    }
    fn used(&self) -> u64 {
        self.backend.superblock().region_len + crate::backend::SUPERBLOCK_BYTES
    }
    fn format_version(&self) -> u32 {
        self.backend.superblock().version
    }
    fn stats(&self) -> crate::backend::BackendStats {
        self.backend.stats()
    }
    fn reopen(&self) -> Result<Database> {
        builder()
            .set_check_integrity_on_open(true)
            .create_with_backend(self.backend.clone())
            .map_err(io)
    }
}

fn builder() -> redb::Builder {
    let mut b = redb::Builder::new();
    b.set_cache_size(CACHE_BYTES);
    b
}

/// What `open` did besides opening.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Opened {
    /// The tables were created (a freshly formatted partition).
    pub created: bool,
}

/// Opens the store on `dev` (named `name` in messages). A freshly formatted partition (an
/// empty region) gets its tables. `writable == false`, or a read-only device, opens it
/// read-only: nothing is ever written to the device then. Nothing is written either when the
/// partition fails its checks (`backend::probe`).
pub fn open<D: capmon_block::BlockDevice + Send + 'static>(
    dev: D,
    name: &str,
    writable: bool,
    now_ns: u64,
) -> core::result::Result<(DiskEngine, Opened), OpenFailure> {
    let writable = writable && !dev.read_only();
    let backend = crate::backend::BlockBackend::open(dev, writable)
        .map_err(|(e, _)| OpenFailure::Partition(e))?;
    let info = alloc::boxed::Box::new(BackendInfo {
        backend: backend.clone(),
        name: name.to_string(),
    });
    let mut fresh = backend.superblock().region_len == 0;
    if writable && !fresh && never_initialised(&backend) {
        // The first open stopped (a power cut) after the region grew and before redb had
        // initialised its file: nothing was ever committed, so it starts again from empty.
        redb::StorageBackend::set_len(&backend, 0).map_err(|e| OpenFailure::Database(io(e)))?;
        fresh = true;
    }
    let mut opened = Opened::default();
    let db = if writable {
        // The integrity check on open verifies the checksum of every page of the committed
        // trees before anything is trusted: a store altered outside redb (a damaged disk, a
        // hostile image) then fails to open with a corruption error, where a plain open may
        // panic on the first bad page it decodes. It reads the whole store once.
        let db = builder()
            .set_check_integrity_on_open(true)
            .create_with_backend(backend)
            .map_err(|e| OpenFailure::Database(io(e)))?;
        if fresh || has_no_tables(&db).map_err(OpenFailure::Database)? {
            DiskEngine::init(&db, now_ns).map_err(OpenFailure::Database)?;
            opened.created = true;
        }
        Db::Rw(db)
    } else {
        if fresh {
            return Err(OpenFailure::Database(StoreError::Unsupported(
                "the partition is formatted but empty, and cannot be written".to_string(),
            )));
        }
        let db = builder()
            .open_read_only_with_backend(backend)
            .map_err(|e| OpenFailure::Database(io(e)))?;
        Db::Ro(db)
    };
    let e = DiskEngine::new(db, info).map_err(OpenFailure::Database)?;
    Ok((e, opened))
}

/// Bytes at the start of every redb file that redb has initialised: its magic number.
const REDB_MAGIC_BYTES: usize = 9;

/// Whether the region holds no redb database yet: where redb's magic number goes, it holds
/// zeros. redb writes the magic last when it initialises its file, before any commit; a first
/// open stopped between the region's growth and that write leaves zeros there (a store that
/// was ever committed to has the magic, and a damaged one is refused by redb as before).
fn never_initialised<D: capmon_block::BlockDevice + Send + 'static>(
    b: &crate::backend::BlockBackend<D>,
) -> bool {
    let mut head = [0u8; REDB_MAGIC_BYTES];
    b.superblock().region_len >= REDB_MAGIC_BYTES as u64
        && redb::StorageBackend::read(b, 0, &mut head).is_ok()
        && head == [0; REDB_MAGIC_BYTES]
}

/// Whether the database has no table at all: `DiskEngine::init` makes every table in one
/// transaction, so none means the first open stopped after redb initialised its file and
/// before that commit.
fn has_no_tables(db: &Database) -> Result<bool> {
    let tx = db.begin_read().map_err(io)?;
    let none = tx.list_tables().map_err(io)?.next().is_none();
    Ok(none)
}

impl DiskEngine {
    /// The backend's I/O counters since the store was opened.
    pub fn io_stats(&self) -> crate::backend::BackendStats {
        self.dev.stats()
    }

    /// The checks only the disk engine can make, added to an fsck report: redb's integrity
    /// check, and every data chunk against its inode.
    pub fn check_chunks(&self, problems: &mut Vec<String>) -> Result<u64> {
        self.read(|tx| {
            let chunks = tx.open_table(CHUNKS).map_err(io)?;
            let inodes = tx.open_table(INODES).map_err(io)?;
            let mut n = 0;
            for r in chunks.iter().map_err(io)? {
                let (k, v) = r.map_err(io)?;
                let (ino, idx) = k.value();
                n += 1;
                let Some(rec) = inodes.get(ino).map_err(io)? else {
                    problems.push(format!("chunk {} of inode {}: no such inode", idx, ino));
                    continue;
                };
                let (st, _) = decode_inode(ino, rec.value())?;
                let len = v.value().len() as u64;
                let cs = st.chunk_size as u64;
                if st.kind != NodeKind::File {
                    problems.push(format!("chunk {} of inode {}: not a file", idx, ino));
                } else if len > cs
                    || idx.saturating_mul(cs) >= st.size.max(1) && st.size == 0
                    || idx.saturating_mul(cs) >= st.size && st.size > 0
                {
                    problems.push(format!(
                        "chunk {} of inode {} ({} bytes) lies beyond its size {}",
                        idx, ino, len, st.size
                    ));
                }
            }
            Ok(n)
        })
    }

    /// The inode table against the tree fsck walked: `parents` maps each node reached from the
    /// root to the directory holding its entry. Every record decodes; a reached node records that
    /// directory as its parent (the root, itself); `next_inode` is past every inode; no node's
    /// generation is past the store's. Returns how many records the table holds.
    pub fn check_inodes(
        &self,
        parents: &alloc::collections::BTreeMap<u64, u64>,
        problems: &mut Vec<String>,
    ) -> Result<u64> {
        self.read(|tx| {
            let meta = tx.open_table(META).map_err(io)?;
            let get = |k: &str| -> Result<Option<u64>> {
                Ok(meta.get(k).map_err(io)?.map(|g| g.value()))
            };
            let next = get("next_inode")?;
            let generation = get("generation")?;
            if next.is_none() {
                problems.push(String::from("meta: no next_inode record"));
            }
            if generation.is_none() {
                problems.push(String::from("meta: no generation record"));
            }
            let inodes = tx.open_table(INODES).map_err(io)?;
            let mut n = 0;
            for r in inodes.iter().map_err(io)? {
                let (k, v) = r.map_err(io)?;
                let ino = k.value();
                n += 1;
                let (st, parent) = match decode_inode(ino, v.value()) {
                    Ok(x) => x,
                    Err(e) => {
                        problems.push(format!("{}", e));
                        continue;
                    }
                };
                if let Some(&want) = parents.get(&ino) {
                    if parent != want {
                        problems.push(format!(
                            "inode {}: records parent {}, its entry is in {}",
                            ino, parent, want
                        ));
                    }
                }
                if next.is_some_and(|next| ino >= next) {
                    problems.push(format!(
                        "inode {}: not below next_inode {}",
                        ino,
                        next.unwrap_or(0)
                    ));
                }
                if generation.is_some_and(|g| st.generation > g) {
                    problems.push(format!(
                        "inode {}: generation {} is past the store's {}",
                        ino,
                        st.generation,
                        generation.unwrap_or(0)
                    ));
                }
            }
            Ok(n)
        })
    }

    /// Test-only damage: rewrites inode `ino`'s record with `parent`, or the meta record `key`.
    #[cfg(test)]
    pub(crate) fn damage(&self, ino: u64, parent: u64, meta: Option<(&str, u64)>) -> Result<()> {
        self.write(|tx| {
            let st = {
                let t = tx.open_table(INODES).map_err(io)?;
                let rec = t.get(ino).map_err(io)?.ok_or_else(|| corrupt("no inode"))?;
                decode_inode(ino, rec.value())?.0
            };
            tx.open_table(INODES)
                .map_err(io)?
                .insert(ino, encode_inode(&st, parent).as_slice())
                .map_err(io)?;
            if let Some((k, v)) = meta {
                tx.open_table(META).map_err(io)?.insert(k, v).map_err(io)?;
            }
            Ok(())
        })
    }

    /// Inodes in the table.
    pub fn inode_count(&self) -> Result<u64> {
        self.read(|tx| tx.open_table(INODES).map_err(io)?.len().map_err(io))
    }
}
