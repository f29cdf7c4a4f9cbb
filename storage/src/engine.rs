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

/// The size of the chunks new files keep their data in (each inode records its own, so a
/// store holding files of another chunk size reads them all the same). 64 bytes under 64 KiB:
/// a chunk and its B-tree leaf's header then fit one 64 KiB redb page, where a 64 KiB chunk
/// takes a 128 KiB page; measured on a 64 MiB partition, 48 MiB of appends fit instead of 20.
pub const CHUNK_SIZE: u32 = 64 * 1024 - 64;

/// The largest file size a store takes (sparse files included): 1 TiB.
pub const MAX_FILE_SIZE: u64 = 1 << 40;

/// Where a file write lands: at an offset, or at the end (an append, placed atomically after
/// whatever the file holds when it runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum At {
    Offset(u64),
    End,
}

/// The clock an engine stamps times with (nanoseconds; the kernel's is time since boot).
pub type ClockFn = fn() -> u64;

/// A clock that always says 0 (tests, tools that do not care).
pub fn no_clock() -> u64 {
    0
}

/// Asked by `fs_remove` and `fs_rename` of every inode they would remove or replace: `true`
/// refuses the operation with `Busy` (the writer policy: a file open for writing cannot be
/// removed or replaced under its writer).
pub type InUse<'a> = &'a dyn Fn(u64) -> bool;

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

    // ---- files (write side) ----
    // Each is one transaction, visible to every reader once it returns. The disk engine commits
    // them without a flush: they become durable at `sync`, or at any later durable commit (a
    // Store or Namespace mutation), in the order they were made (docs/storage.md).

    /// The engine's clock (what times are stamped with).
    fn now_ns(&self) -> u64;
    /// The writer policy's table (held by the engine so every capability of it shares one).
    fn writers(&self) -> &crate::caps::Writers;
    /// Creates an empty file or directory `name` in `dir`: `Exists` if the name is taken.
    fn fs_create(&self, dir: u64, name: &str, kind: NodeKind) -> Result<u64>;
    /// Makes `name` in `dir` a file holding exactly `data`: created if absent, its contents
    /// replaced if it is a file (`IsDirectory` if it is a directory). `in_use` is asked of an
    /// existing file. Returns the inode.
    fn fs_put(&self, dir: u64, name: &str, data: &[u8], in_use: InUse<'_>) -> Result<u64>;
    /// Writes `data` into file `inode`; the file grows as needed (a gap reads as zeros).
    /// Returns the offset the data was written at.
    fn fs_write(&self, inode: u64, at: At, data: &[u8]) -> Result<u64>;
    /// Sets the size of file `inode`: bytes past it are gone; growing adds zeros.
    fn fs_truncate(&self, inode: u64, size: u64) -> Result<()>;
    /// Removes `name` from `dir`: a file, an empty directory, or with `recursive` a whole
    /// tree. Returns how many nodes went.
    fn fs_remove(&self, dir: u64, name: &str, recursive: bool, in_use: InUse<'_>) -> Result<u64>;
    /// Moves `from_dir/from` to `to_dir/to` atomically, replacing a file there (or an empty
    /// directory, if the source is a directory) as POSIX rename does. A directory cannot move
    /// into its own subtree (`InvalidName`).
    fn fs_rename(
        &self,
        from_dir: u64,
        from: &str,
        to_dir: u64,
        to: &str,
        in_use: InUse<'_>,
    ) -> Result<()>;
    /// Makes every operation so far durable (a flush of the device).
    fn sync(&self) -> Result<()>;
    /// Whether operations since the last durable commit wait for a `sync`.
    fn unsynced(&self) -> u64;
}
