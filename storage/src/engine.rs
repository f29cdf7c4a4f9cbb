//! The engine boundary: what a store keeps (objects, names, files) and the operations on it,
//! each one atomic. Two engines implement it: `RamEngine` (ordinary maps; the model the disk
//! engine is checked against) and `DiskEngine` (redb on a data partition). The capabilities in
//! `caps` are views of an engine with rights and a scope; they hold all the policy, so the
//! engines hold none.
use crate::error::Result;
use crate::object::Hash;
use crate::rights::Rights;
use alloc::string::String;
use alloc::vec::Vec;

/// What a capability bound in a Namespace designates inside the same engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapKind {
    Store,
    Namespace,
    Directory,
    File,
}

impl CapKind {
    pub fn name(self) -> &'static str {
        match self {
            CapKind::Store => "store",
            CapKind::Namespace => "namespace",
            CapKind::Directory => "directory",
            CapKind::File => "file",
        }
    }
}

/// A capability as a Namespace keeps it: kind, scope (a namespace prefix or a path; empty for
/// the root) and the rights it was bound with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SturdyRef {
    pub kind: CapKind,
    pub path: String,
    pub rights: Rights,
}

/// The value of one name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    Object(Hash),
    Cap(SturdyRef),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjStat {
    pub hash: Hash,
    pub size: u64,
    pub schema_id: u64,
    pub version: u16,
    pub refs: u32,
}

/// One object to put: the checked canonical message (`object::check`).
pub struct NewObject<'a> {
    pub hash: Hash,
    pub bytes: &'a [u8],
    pub schema_id: u64,
    pub version: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    File,
    Dir,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStat {
    pub kind: NodeKind,
    /// Bytes (files) or entries (directories).
    pub size: u64,
    pub inode: u64,
    pub generation: u64,
    pub mtime_ns: u64,
    pub ctime_ns: u64,
    pub chunk_size: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEnt {
    pub name: String,
    pub kind: NodeKind,
    pub inode: u64,
    pub size: u64,
}

/// One node of a tree to import: its path relative to the root (parents first), and for files
/// the contents.
pub struct ImportItem<'a> {
    pub path: &'a str,
    pub data: Option<&'a [u8]>,
    pub mtime_ns: u64,
}

/// What an engine says about itself (`store` at the prompt).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EngineInfo {
    /// "ram" or "redb".
    pub engine: &'static str,
    /// Where it lives: "memory", or the block device's name.
    pub device: String,
    pub read_only: bool,
    /// Bytes the engine may grow to (the partition), and bytes it uses now.
    pub capacity: u64,
    pub used: u64,
    pub objects: u64,
    pub object_bytes: u64,
    pub names: u64,
    pub files: u64,
    pub dirs: u64,
    /// Committed write transactions since formatting.
    pub generation: u64,
    pub format_version: u32,
}

/// The inode number of every engine's root directory.
pub const ROOT_INODE: u64 = 1;

/// The size of the chunks file data is kept in.
pub const CHUNK_SIZE: u32 = 64 * 1024;

/// Everything a store keeps. Every method is one atomic operation (one transaction on disk).
pub trait Engine: Send + Sync {
    fn info(&self) -> Result<EngineInfo>;
    /// A number unique to this engine instance while it lives, so a capability can tell whether
    /// another one comes from the same store.
    fn id(&self) -> u64;
    fn read_only(&self) -> bool;

    // ---- objects ----
    /// Stores `obj` (a no-op if it is there) and, with `bind`, binds that name to it in the same
    /// transaction (`replace`: an existing binding is replaced, else `Exists`). Returns whether
    /// the object is new.
    fn put(&self, obj: NewObject<'_>, bind: Option<(&str, bool)>) -> Result<bool>;
    fn get(&self, hash: &Hash) -> Result<Option<Vec<u8>>>;
    fn stat(&self, hash: &Hash) -> Result<Option<ObjStat>>;
    /// Deletes an object no name binds: `NotFound`, or `InUse` with its reference count.
    fn delete(&self, hash: &Hash) -> Result<()>;
    fn objects(&self) -> Result<Vec<ObjStat>>;

    // ---- names ----
    /// Binds `name` (`replace` as in `put`). An object binding must name an existing object.
    /// An object a replaced binding held is deleted when no name binds it any more (as with
    /// `unbind`); so is one `put` replaced.
    fn bind(&self, name: &str, value: Stored, replace: bool) -> Result<()>;
    fn lookup(&self, name: &str) -> Result<Option<Stored>>;
    /// Removes `name` and returns what it held; with `collect`, an object left with no name is
    /// deleted in the same transaction.
    fn unbind(&self, name: &str, collect: bool) -> Result<Stored>;
    /// Every binding whose name starts with `prefix`, in name order.
    fn names(&self, prefix: &str) -> Result<Vec<(String, Stored)>>;

    // ---- files (read side; `import` builds a tree) ----
    fn fs_lookup(&self, dir: u64, name: &str) -> Result<Option<u64>>;
    fn fs_stat(&self, inode: u64) -> Result<NodeStat>;
    fn fs_list(&self, dir: u64) -> Result<Vec<DirEnt>>;
    /// Reads up to `buf.len()` bytes at `offset`; returns how many (0 at the end).
    fn fs_read(&self, inode: u64, offset: u64, buf: &mut [u8]) -> Result<usize>;
    /// Adds the items under the root in one transaction (parents before children; a directory
    /// that exists is reused, a file that exists is an error).
    fn import(&self, items: &[ImportItem<'_>]) -> Result<()>;
}
