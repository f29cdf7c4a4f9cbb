//! Capabilities: Rust objects whose traits mirror the schema's interfaces (`Store`, `Namespace`,
//! `Directory`, `File` in schema/storage.capnp). Each is a view of an engine with rights and a
//! scope; every check of authority is here, so an engine holds none.
//!
//! The rules:
//! - a derived capability (`sub`, `read_only`, `open`, a lookup) carries the intersection of its
//!   source's rights and its own: never more;
//! - names and paths are relative and checked (`name::check`), so a Namespace confined to a
//!   prefix cannot name a sibling, and no path escapes the Directory it is handed to;
//! - a capability bound in a Namespace is kept as a `SturdyRef` in the same engine; one from
//!   another engine is refused (`ForeignCapability`).
use crate::engine::*;
use crate::error::{Result, StoreError};
use crate::name;
use crate::object::{self, Hash};
use crate::rights::Rights;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;

pub type EngineRef = Arc<dyn Engine>;

/// A name's value as a Namespace hands it out.
#[derive(Clone)]
pub enum Value {
    Object(Hash),
    Store(Arc<dyn Store>),
    Namespace(Arc<dyn Namespace>),
    Directory(Arc<dyn Directory>),
    File(Arc<dyn File>),
}

impl Value {
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Object(_) => "object",
            Value::Store(_) => "store",
            Value::Namespace(_) => "namespace",
            Value::Directory(_) => "directory",
            Value::File(_) => "file",
        }
    }

    /// The capability's rights; objects are plain data and carry none.
    pub fn rights(&self) -> Option<Rights> {
        match self {
            Value::Object(_) => None,
            Value::Store(c) => Some(c.rights()),
            Value::Namespace(c) => Some(c.rights()),
            Value::Directory(c) => Some(c.rights()),
            Value::File(c) => Some(c.rights()),
        }
    }

    /// The same capability with at most `r`.
    pub fn restrict(&self, r: Rights) -> Value {
        match self {
            Value::Object(h) => Value::Object(*h),
            Value::Store(c) => Value::Store(c.restrict(r)),
            Value::Namespace(c) => Value::Namespace(c.restrict(r)),
            Value::Directory(c) => Value::Directory(c.restrict(r)),
            Value::File(c) => Value::File(c.restrict(r)),
        }
    }

    /// What the capability designates, for listings (`store`, a prefix, a path).
    pub fn describe(&self) -> String {
        match self {
            Value::Object(h) => object::hex(h),
            Value::Store(c) => c.describe(),
            Value::Namespace(c) => c.describe(),
            Value::Directory(c) => c.describe(),
            Value::File(c) => c.describe(),
        }
    }

    fn sturdy(&self) -> Option<(u64, SturdyRef)> {
        match self {
            Value::Object(_) => None,
            Value::Store(c) => c.sturdy(),
            Value::Namespace(c) => c.sturdy(),
            Value::Directory(c) => c.sturdy(),
            Value::File(c) => c.sturdy(),
        }
    }
}

/// One line of `Namespace::list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameEntry {
    /// Relative to the Namespace listed.
    pub name: String,
    pub kind: &'static str,
    pub hash: Option<Hash>,
    pub rights: Option<Rights>,
}

/// Common to every capability. Capabilities are shared between CPUs (`fs race`).
pub trait Cap: Send + Sync {
    fn rights(&self) -> Rights;
    /// `store`, a namespace's prefix, a path.
    fn describe(&self) -> String;
    /// The engine id and how to bind this capability there; `None` if it cannot be bound.
    fn sturdy(&self) -> Option<(u64, SturdyRef)>;
}

pub trait Store: Cap {
    /// Checks the message (`object::check`) and stores its canonical form.
    fn put(&self, msg: &[u8]) -> Result<Hash>;
    fn get(&self, hash: &Hash) -> Result<Vec<u8>>;
    fn has(&self, hash: &Hash) -> Result<bool>;
    fn delete(&self, hash: &Hash) -> Result<()>;
    fn list(&self) -> Result<Vec<ObjStat>>;
    fn stat(&self, hash: &Hash) -> Result<ObjStat>;
    fn info(&self) -> Result<EngineInfo>;
    fn restrict(&self, r: Rights) -> Arc<dyn Store>;
}

pub trait Namespace: Cap {
    fn bind(&self, name: &str, value: Value, replace: bool) -> Result<()>;
    fn lookup(&self, name: &str) -> Result<Value>;
    /// Removes the name; an object it held that no other name binds is deleted.
    fn unbind(&self, name: &str) -> Result<()>;
    /// Every name under `prefix` (relative), in order.
    fn list(&self, prefix: &str) -> Result<Vec<NameEntry>>;
    /// A Namespace confined to `prefix` (names in it are relative to the prefix).
    fn sub(&self, prefix: &str) -> Result<Arc<dyn Namespace>>;
    /// The same names, refusing every mutation.
    fn read_only(&self) -> Arc<dyn Namespace>;
    fn restrict(&self, r: Rights) -> Arc<dyn Namespace>;
    /// Checks and stores `msg` and binds `name` to it in one atomic step.
    fn put(&self, name: &str, msg: &[u8], replace: bool) -> Result<Hash>;
    /// The store the namespace's objects live in, with this namespace's rights (to read an
    /// object a lookup returned).
    fn store(&self) -> Arc<dyn Store>;
}

/// Paths are relative to the directory (`name::check_path`). Every mutation needs `w`, is one
/// atomic operation, and is durable at the next `sync` (docs/storage.md).
pub trait Directory: Cap {
    /// The entries of this directory.
    fn list(&self) -> Result<Vec<DirEnt>>;
    /// `path` relative to this directory; "" is the directory itself.
    fn stat(&self, path: &str) -> Result<NodeStat>;
    /// Opens a file with `rights` (at most this directory's; its `w` covers `a`). A file opened
    /// with `w` or `a` holds the file's one writer slot until every copy of the capability is
    /// dropped: a second open for writing is `Busy` (the writer policy).
    fn open(&self, path: &str, rights: Rights) -> Result<Arc<dyn File>>;
    /// The same, creating an empty file first if there is none (`create` needs `w`).
    fn open_or_create(&self, path: &str, rights: Rights) -> Result<Arc<dyn File>>;
    fn open_dir(&self, path: &str) -> Result<Arc<dyn Directory>>;
    fn read_only(&self) -> Arc<dyn Directory>;
    fn restrict(&self, r: Rights) -> Arc<dyn Directory>;
    /// A new empty directory (`Exists` if the name is taken).
    fn mkdir(&self, path: &str) -> Result<()>;
    /// A new empty file (`Exists` if the name is taken).
    fn create(&self, path: &str) -> Result<()>;
    /// Makes `path` a file holding exactly `data` (created, or its contents replaced) in one
    /// step. `Busy` while another capability writes it.
    fn put(&self, path: &str, data: &[u8]) -> Result<()>;
    /// Removes a file, an empty directory, or with `recursive` a tree; returns how many nodes
    /// went. `Busy` if a file in it is open for writing.
    fn remove(&self, path: &str, recursive: bool) -> Result<u64>;
    /// Renames atomically, within or across directories under this one (POSIX rename: a file
    /// there is replaced; a directory cannot move into itself).
    fn rename(&self, from: &str, to: &str) -> Result<()>;
    /// Makes everything done so far durable.
    fn sync(&self) -> Result<()>;
}

/// An open file. `read` needs `r`; `write` and `truncate` need `w`; `append` needs `w` or `a`.
pub trait File: Cap {
    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<usize>;
    fn stat(&self) -> Result<NodeStat>;
    fn restrict(&self, r: Rights) -> Arc<dyn File>;
    fn write(&self, offset: u64, data: &[u8]) -> Result<()>;
    /// Writes at the end, atomically; returns the offset the data landed at.
    fn append(&self, data: &[u8]) -> Result<u64>;
    fn truncate(&self, size: u64) -> Result<()>;
    fn sync(&self) -> Result<()>;
}

/// The writer policy's table: the inodes some File capability holds open for writing (one
/// per engine, `Engine::writers`). Taken only briefly, and never while waiting for the engine,
/// so it cannot deadlock with it.
#[derive(Default)]
pub struct Writers(spin::Mutex<alloc::collections::BTreeSet<u64>>);

impl Writers {
    /// Whether a capability holds `inode` open for writing.
    pub fn held(&self, inode: u64) -> bool {
        self.0.lock().contains(&inode)
    }

    fn claim(&self, inode: u64) -> bool {
        self.0.lock().insert(inode)
    }

    fn release(&self, inode: u64) {
        self.0.lock().remove(&inode);
    }

    /// How many files are open for writing.
    pub fn count(&self) -> usize {
        self.0.lock().len()
    }
}

/// The writer slot of one file, released when the last capability sharing it is dropped.
struct WriterSlot {
    engine: EngineRef,
    inode: u64,
}

impl Drop for WriterSlot {
    fn drop(&mut self) {
        self.engine.writers().release(self.inode);
    }
}

/// The error of the writer policy.
pub fn writer_busy(path: &str) -> StoreError {
    StoreError::Busy(format!(
        "{} is open for writing by another capability",
        name::Shown(path)
    ))
}

/// The error of a directory renamed into its own subtree.
pub fn into_itself(from: &str, to: &str) -> StoreError {
    StoreError::InvalidName {
        name: format!("{} -> {}", from, to),
        why: "a directory cannot move into itself",
    }
}

fn need(have: Rights, want: Rights, what: &'static str, cap: &dyn Cap) -> Result<()> {
    if have.contains(want) {
        Ok(())
    } else {
        Err(StoreError::PermissionDenied {
            what,
            cap: format!("{} ({})", cap.describe(), have),
        })
    }
}

/// Maps an engine failure on a read-only engine (a read-only device) to the same error a
/// read-only capability gives.
fn writable(e: &EngineRef, what: &'static str, cap: &dyn Cap) -> Result<()> {
    if e.read_only() {
        Err(StoreError::PermissionDenied {
            what,
            cap: format!("{} (the store's device is read-only)", cap.describe()),
        })
    } else {
        Ok(())
    }
}

// ---- Store ----

pub struct StoreCap {
    engine: EngineRef,
    rights: Rights,
}

impl StoreCap {
    // A capability is only ever handed out as a trait object.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(engine: EngineRef, rights: Rights) -> Arc<dyn Store> {
        Arc::new(StoreCap { engine, rights })
    }
}

impl Cap for StoreCap {
    fn rights(&self) -> Rights {
        self.rights
    }
    fn describe(&self) -> String {
        "store".to_string()
    }
    fn sturdy(&self) -> Option<(u64, SturdyRef)> {
        Some((
            self.engine.id(),
            SturdyRef {
                kind: CapKind::Store,
                path: String::new(),
                rights: self.rights,
            },
        ))
    }
}

impl Store for StoreCap {
    fn put(&self, msg: &[u8]) -> Result<Hash> {
        need(self.rights, Rights::WRITE, "put", self)?;
        writable(&self.engine, "put", self)?;
        let c = object::check(msg)?;
        self.engine.put(
            NewObject {
                hash: c.hash,
                bytes: &c.canonical,
                schema_id: c.schema_id,
                version: c.version,
            },
            None,
        )?;
        Ok(c.hash)
    }

    fn get(&self, hash: &Hash) -> Result<Vec<u8>> {
        need(self.rights, Rights::READ, "get", self)?;
        self.engine
            .get(hash)?
            .ok_or_else(|| StoreError::NotFound(format!("object {}", object::hex(hash))))
    }

    fn has(&self, hash: &Hash) -> Result<bool> {
        need(self.rights, Rights::READ, "has", self)?;
        Ok(self.engine.stat(hash)?.is_some())
    }

    fn delete(&self, hash: &Hash) -> Result<()> {
        need(self.rights, Rights::WRITE, "delete", self)?;
        writable(&self.engine, "delete", self)?;
        self.engine.delete(hash)
    }

    fn list(&self) -> Result<Vec<ObjStat>> {
        need(self.rights, Rights::READ, "list", self)?;
        self.engine.objects()
    }

    fn stat(&self, hash: &Hash) -> Result<ObjStat> {
        need(self.rights, Rights::READ, "stat", self)?;
        self.engine
            .stat(hash)?
            .ok_or_else(|| StoreError::NotFound(format!("object {}", object::hex(hash))))
    }

    fn info(&self) -> Result<EngineInfo> {
        self.engine.info()
    }

    fn restrict(&self, r: Rights) -> Arc<dyn Store> {
        StoreCap::new(self.engine.clone(), self.rights & r)
    }
}

// ---- Namespace ----

pub struct NamespaceCap {
    engine: EngineRef,
    /// "" (the root) or a prefix ending in '/'.
    prefix: String,
    rights: Rights,
}

impl NamespaceCap {
    /// The root namespace of `engine`.
    pub fn root(engine: EngineRef, rights: Rights) -> Arc<dyn Namespace> {
        Arc::new(NamespaceCap {
            engine,
            prefix: String::new(),
            rights,
        })
    }

    /// A namespace of `engine` confined to `prefix` ("" for the root).
    #[allow(clippy::new_ret_no_self)]
    pub fn new(engine: EngineRef, prefix: &str, rights: Rights) -> Result<Arc<dyn Namespace>> {
        let prefix = if prefix.is_empty() {
            String::new()
        } else {
            name::check_prefix(prefix)?;
            let p = prefix.strip_suffix('/').unwrap_or(prefix);
            format!("{}/", p)
        };
        Ok(Arc::new(NamespaceCap {
            engine,
            prefix,
            rights,
        }))
    }

    fn full(&self, n: &str) -> Result<String> {
        name::check(n)?;
        let full = format!("{}{}", self.prefix, n);
        name::check(&full)?;
        Ok(full)
    }

    /// Turns a stored binding back into a live value, with at most this namespace's rights.
    fn resolve(&self, s: Stored) -> Result<Value> {
        Ok(match s {
            Stored::Object(h) => Value::Object(h),
            Stored::Cap(r) => {
                let rights = r.rights & self.rights;
                let e = self.engine.clone();
                match r.kind {
                    CapKind::Store => Value::Store(StoreCap::new(e, rights)),
                    CapKind::Namespace => Value::Namespace(NamespaceCap::new(e, &r.path, rights)?),
                    CapKind::Directory => Value::Directory(
                        DirCap::root(e, rights).open_dir(&r.path)?.restrict(rights),
                    ),
                    CapKind::File => {
                        // A bound file capability opens read-only whatever it was bound with:
                        // the writer slot belongs to whoever opened the file, and a lookup
                        // must not take it behind their back.
                        let root = DirCap::root(e, Rights::READ);
                        Value::File(root.open(&r.path, Rights::READ)?.restrict(rights))
                    }
                }
            }
        })
    }
}

impl Cap for NamespaceCap {
    fn rights(&self) -> Rights {
        self.rights
    }
    fn describe(&self) -> String {
        if self.prefix.is_empty() {
            "namespace /".to_string()
        } else {
            format!("namespace {}", self.prefix)
        }
    }
    fn sturdy(&self) -> Option<(u64, SturdyRef)> {
        Some((
            self.engine.id(),
            SturdyRef {
                kind: CapKind::Namespace,
                path: self.prefix.clone(),
                rights: self.rights,
            },
        ))
    }
}

impl Namespace for NamespaceCap {
    fn bind(&self, n: &str, value: Value, replace: bool) -> Result<()> {
        need(self.rights, Rights::WRITE, "bind", self)?;
        writable(&self.engine, "bind", self)?;
        let full = self.full(n)?;
        let stored = match &value {
            Value::Object(h) => Stored::Object(*h),
            v => match v.sturdy() {
                Some((id, r)) if id == self.engine.id() => Stored::Cap(r),
                _ => return Err(StoreError::ForeignCapability),
            },
        };
        self.engine.bind(&full, stored, replace)
    }

    fn lookup(&self, n: &str) -> Result<Value> {
        need(self.rights, Rights::READ, "lookup", self)?;
        let full = self.full(n)?;
        match self.engine.lookup(&full)? {
            Some(s) => self.resolve(s),
            None => Err(StoreError::NotFound(n.to_string())),
        }
    }

    fn unbind(&self, n: &str) -> Result<()> {
        need(self.rights, Rights::WRITE, "unbind", self)?;
        writable(&self.engine, "unbind", self)?;
        let full = self.full(n)?;
        self.engine.unbind(&full, true).map(|_| ())
    }

    fn list(&self, prefix: &str) -> Result<Vec<NameEntry>> {
        need(self.rights, Rights::READ, "list", self)?;
        if !prefix.is_empty() {
            // A partial last component is allowed ("ap" lists "apps/..."), so check the
            // prefix with a stand-in completion, and report the prefix as typed.
            if let Err(StoreError::InvalidName { why, .. }) = name::check(&format!("{}x", prefix)) {
                return Err(StoreError::InvalidName {
                    name: prefix.to_string(),
                    why,
                });
            }
        }
        let full = format!("{}{}", self.prefix, prefix);
        let mut v = Vec::new();
        for (k, s) in self.engine.names(&full)? {
            let rel = k[self.prefix.len()..].to_string();
            v.push(match s {
                Stored::Object(h) => NameEntry {
                    name: rel,
                    kind: "object",
                    hash: Some(h),
                    rights: None,
                },
                Stored::Cap(r) => NameEntry {
                    name: rel,
                    kind: r.kind.name(),
                    hash: None,
                    rights: Some(r.rights & self.rights),
                },
            });
        }
        Ok(v)
    }

    fn sub(&self, prefix: &str) -> Result<Arc<dyn Namespace>> {
        name::check_prefix(prefix)?;
        let p = prefix.strip_suffix('/').unwrap_or(prefix);
        NamespaceCap::new(
            self.engine.clone(),
            &format!("{}{}/", self.prefix, p),
            self.rights,
        )
    }

    fn read_only(&self) -> Arc<dyn Namespace> {
        self.restrict(Rights::READ)
    }

    fn restrict(&self, r: Rights) -> Arc<dyn Namespace> {
        Arc::new(NamespaceCap {
            engine: self.engine.clone(),
            prefix: self.prefix.clone(),
            rights: self.rights & r,
        })
    }

    fn put(&self, n: &str, msg: &[u8], replace: bool) -> Result<Hash> {
        need(self.rights, Rights::WRITE, "put", self)?;
        writable(&self.engine, "put", self)?;
        let full = self.full(n)?;
        let c = object::check(msg)?;
        self.engine.put(
            NewObject {
                hash: c.hash,
                bytes: &c.canonical,
                schema_id: c.schema_id,
                version: c.version,
            },
            Some((&full, replace)),
        )?;
        Ok(c.hash)
    }

    fn store(&self) -> Arc<dyn Store> {
        StoreCap::new(self.engine.clone(), self.rights & Rights::READ)
    }
}

// ---- Directory and File ----

pub struct DirCap {
    engine: EngineRef,
    inode: u64,
    /// From the engine's root, for listings and sturdy refs ("" is the root).
    path: String,
    rights: Rights,
}

impl DirCap {
    /// The engine's root directory.
    pub fn root(engine: EngineRef, rights: Rights) -> Arc<dyn Directory> {
        Arc::new(DirCap {
            engine,
            inode: ROOT_INODE,
            path: String::new(),
            rights,
        })
    }

    /// Walks `path` (checked) from this directory; returns the inode and its path from the root.
    fn walk(&self, path: &str) -> Result<(u64, String)> {
        name::check_path(path)?;
        let mut ino = self.inode;
        if path.is_empty() {
            return Ok((ino, self.path.clone()));
        }
        for c in path.split('/') {
            ino = match self.engine.fs_lookup(ino, c) {
                Ok(Some(i)) => i,
                Ok(None) => return Err(StoreError::NotFound(path.to_string())),
                // Name the path as given, not the component the engine met.
                Err(StoreError::NotDirectory(_)) => {
                    return Err(StoreError::NotDirectory(path.to_string()))
                }
                Err(e) => return Err(e),
            };
        }
        let full = if self.path.is_empty() {
            path.to_string()
        } else {
            format!("{}/{}", self.path, path)
        };
        Ok((ino, full))
    }
}

impl Cap for DirCap {
    fn rights(&self) -> Rights {
        self.rights
    }
    fn describe(&self) -> String {
        format!("directory /{}", self.path)
    }
    fn sturdy(&self) -> Option<(u64, SturdyRef)> {
        Some((
            self.engine.id(),
            SturdyRef {
                kind: CapKind::Directory,
                path: self.path.clone(),
                rights: self.rights,
            },
        ))
    }
}

impl Directory for DirCap {
    fn list(&self) -> Result<Vec<DirEnt>> {
        need(self.rights, Rights::READ, "list", self)?;
        self.engine.fs_list(self.inode)
    }

    fn stat(&self, path: &str) -> Result<NodeStat> {
        need(self.rights, Rights::READ, "stat", self)?;
        let (ino, _) = self.walk(path)?;
        self.engine.fs_stat(ino)
    }

    fn open(&self, path: &str, rights: Rights) -> Result<Arc<dyn File>> {
        self.open_file(path, rights, false)
    }

    fn open_or_create(&self, path: &str, rights: Rights) -> Result<Arc<dyn File>> {
        self.open_file(path, rights, true)
    }

    fn open_dir(&self, path: &str) -> Result<Arc<dyn Directory>> {
        let (ino, full) = self.walk(path)?;
        if self.engine.fs_stat(ino)?.kind != NodeKind::Dir {
            return Err(StoreError::NotDirectory(path.to_string()));
        }
        Ok(Arc::new(DirCap {
            engine: self.engine.clone(),
            inode: ino,
            path: full,
            rights: self.rights,
        }))
    }

    fn read_only(&self) -> Arc<dyn Directory> {
        self.restrict(Rights::READ)
    }

    fn restrict(&self, r: Rights) -> Arc<dyn Directory> {
        Arc::new(DirCap {
            engine: self.engine.clone(),
            inode: self.inode,
            path: self.path.clone(),
            rights: self.rights & r,
        })
    }

    fn mkdir(&self, path: &str) -> Result<()> {
        self.mutating("mkdir")?;
        let (dir, leaf) = self.parent_of(path)?;
        self.engine.fs_create(dir, leaf, NodeKind::Dir).map(|_| ())
    }

    fn create(&self, path: &str) -> Result<()> {
        self.mutating("create")?;
        let (dir, leaf) = self.parent_of(path)?;
        self.engine.fs_create(dir, leaf, NodeKind::File).map(|_| ())
    }

    fn put(&self, path: &str, data: &[u8]) -> Result<()> {
        self.mutating("put")?;
        let (dir, leaf) = self.parent_of(path)?;
        let w = self.engine.writers();
        self.engine
            .fs_put(dir, leaf, data, &|i| w.held(i))
            .map_err(|e| name_busy(e, path))
            .map(|_| ())
    }

    fn remove(&self, path: &str, recursive: bool) -> Result<u64> {
        self.mutating("remove")?;
        let (dir, leaf) = self.parent_of(path)?;
        let w = self.engine.writers();
        self.engine
            .fs_remove(dir, leaf, recursive, &|i| w.held(i))
            .map_err(|e| name_busy(e, path))
            .map_err(|e| renamed(e, leaf, path))
    }

    fn rename(&self, from: &str, to: &str) -> Result<()> {
        self.mutating("rename")?;
        let (fd, fl) = self.parent_of(from)?;
        let (td, tl) = self.parent_of(to)?;
        let w = self.engine.writers();
        self.engine
            .fs_rename(fd, fl, td, tl, &|i| w.held(i))
            .map_err(|e| match e {
                StoreError::InvalidName { why, .. } if why.contains("into itself") => {
                    into_itself(from, to)
                }
                StoreError::Busy(_) => writer_busy(to),
                e => renamed(renamed(e, fl, from), tl, to),
            })
    }

    fn sync(&self) -> Result<()> {
        self.engine.sync()
    }
}

/// An engine error naming a leaf, renamed to the path the caller gave.
fn renamed(e: StoreError, leaf: &str, path: &str) -> StoreError {
    match e {
        StoreError::NotFound(n) if n == leaf => StoreError::NotFound(path.to_string()),
        StoreError::Exists(n) if n == leaf => StoreError::Exists(path.to_string()),
        StoreError::NotEmpty(n) if n == leaf => StoreError::NotEmpty(path.to_string()),
        StoreError::IsDirectory(n) if n == leaf => StoreError::IsDirectory(path.to_string()),
        StoreError::NotDirectory(n) if n == leaf => StoreError::NotDirectory(path.to_string()),
        e => e,
    }
}

fn name_busy(e: StoreError, path: &str) -> StoreError {
    match e {
        StoreError::Busy(_) => writer_busy(path),
        e => e,
    }
}

impl DirCap {
    /// Every mutation needs `w` and a writable engine.
    fn mutating(&self, what: &'static str) -> Result<()> {
        need(self.rights, Rights::WRITE, what, self)?;
        writable(&self.engine, what, self)
    }

    /// The directory holding `path` (walked from this one) and the last component.
    fn parent_of<'p>(&self, path: &'p str) -> Result<(u64, &'p str)> {
        name::check(path)?;
        let (parent, leaf) = match path.rsplit_once('/') {
            Some((p, l)) => (p, l),
            None => ("", path),
        };
        let (ino, _) = self.walk(parent)?;
        if self.engine.fs_stat(ino)?.kind != NodeKind::Dir {
            return Err(StoreError::NotDirectory(parent.to_string()));
        }
        Ok((ino, leaf))
    }

    fn open_file(&self, path: &str, rights: Rights, create: bool) -> Result<Arc<dyn File>> {
        // A directory's `w` covers `a` (appending is a narrower write).
        let have = if self.rights.can_write() {
            Rights::from_bits(self.rights.bits() | Rights::APPEND.bits())
        } else {
            self.rights
        };
        need(have, rights, "open", self)?;
        if path.is_empty() {
            return Err(StoreError::IsDirectory(self.describe()));
        }
        let writes = rights.contains(Rights::WRITE) || rights.contains(Rights::APPEND);
        if writes {
            writable(&self.engine, "open for writing", self)?;
        }
        let (ino, full) = match self.walk(path) {
            Err(StoreError::NotFound(_)) if create => {
                need(self.rights, Rights::WRITE, "create", self)?;
                let (dir, leaf) = self.parent_of(path)?;
                match self.engine.fs_create(dir, leaf, NodeKind::File) {
                    // Another CPU made it first: open what it made.
                    Ok(_) | Err(StoreError::Exists(_)) => {}
                    Err(e) => return Err(e),
                }
                self.walk(path)?
            }
            r => r?,
        };
        if self.engine.fs_stat(ino)?.kind == NodeKind::Dir {
            return Err(StoreError::IsDirectory(path.to_string()));
        }
        let slot = if writes {
            if !self.engine.writers().claim(ino) {
                return Err(writer_busy(path));
            }
            Some(Arc::new(WriterSlot {
                engine: self.engine.clone(),
                inode: ino,
            }))
        } else {
            None
        };
        Ok(Arc::new(FileCap {
            engine: self.engine.clone(),
            inode: ino,
            path: full,
            rights: rights & have,
            slot,
        }))
    }
}

pub struct FileCap {
    engine: EngineRef,
    inode: u64,
    path: String,
    rights: Rights,
    /// The writer slot, when the capability was opened for writing (shared by its restricted
    /// copies; one that keeps neither `w` nor `a` drops it).
    slot: Option<Arc<WriterSlot>>,
}

impl Cap for FileCap {
    fn rights(&self) -> Rights {
        self.rights
    }
    fn describe(&self) -> String {
        format!("file /{}", self.path)
    }
    fn sturdy(&self) -> Option<(u64, SturdyRef)> {
        Some((
            self.engine.id(),
            SturdyRef {
                kind: CapKind::File,
                path: self.path.clone(),
                rights: self.rights,
            },
        ))
    }
}

impl File for FileCap {
    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<usize> {
        need(self.rights, Rights::READ, "read", self)?;
        self.engine.fs_read(self.inode, offset, buf)
    }

    fn stat(&self) -> Result<NodeStat> {
        self.engine.fs_stat(self.inode)
    }

    fn restrict(&self, r: Rights) -> Arc<dyn File> {
        let rights = self.rights & r;
        let writes = rights.contains(Rights::WRITE) || rights.contains(Rights::APPEND);
        Arc::new(FileCap {
            engine: self.engine.clone(),
            inode: self.inode,
            path: self.path.clone(),
            rights,
            slot: if writes { self.slot.clone() } else { None },
        })
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<()> {
        self.writing(Rights::WRITE, "write")?;
        self.engine
            .fs_write(self.inode, At::Offset(offset), data)
            .map(|_| ())
    }

    fn append(&self, data: &[u8]) -> Result<u64> {
        if !self.rights.contains(Rights::WRITE) {
            self.writing(Rights::APPEND, "append")?;
        } else {
            self.writing(Rights::WRITE, "append")?;
        }
        self.engine.fs_write(self.inode, At::End, data)
    }

    fn truncate(&self, size: u64) -> Result<()> {
        self.writing(Rights::WRITE, "truncate")?;
        self.engine.fs_truncate(self.inode, size)
    }

    fn sync(&self) -> Result<()> {
        self.engine.sync()
    }
}

impl FileCap {
    fn writing(&self, right: Rights, what: &'static str) -> Result<()> {
        need(self.rights, right, what, self)?;
        writable(&self.engine, what, self)?;
        // A capability with the right always holds the slot (`open` took it); one that was
        // made otherwise cannot write.
        if self.slot.is_none() {
            return Err(writer_busy(&self.path));
        }
        Ok(())
    }
}
