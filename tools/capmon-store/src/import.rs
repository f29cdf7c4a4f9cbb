//! A host directory tree as the items of one `Engine::import`: parents before children,
//! regular files and directories only, every path checked against capmon's naming rules
//! before anything is written.
use capmon_storage::engine::ImportItem;
use capmon_storage::name::{self, Shown};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

/// One node of the tree: its path in the store (`a/b/c`), its contents if it is a file, and its
/// modification time.
pub struct Node {
    pub path: String,
    pub data: Option<Vec<u8>>,
    pub mtime_ns: u64,
}

impl Node {
    pub fn item(&self) -> ImportItem<'_> {
        ImportItem {
            path: &self.path,
            data: self.data.as_deref(),
            mtime_ns: self.mtime_ns,
        }
    }
}

/// What `scan` found, counted for the summary line.
#[derive(Default)]
pub struct Tree {
    pub nodes: Vec<Node>,
    pub dirs: u64,
    pub files: u64,
    pub bytes: u64,
}

/// Reads every directory and file under `root` (not `root` itself: its entries land in the
/// store's root directory). Entries are taken in byte order of their names, so two runs on the
/// same tree give the same items.
pub fn scan(root: &Path) -> Result<Tree, String> {
    let meta = fs::metadata(root).map_err(|e| format!("{}: {}", shown(root), e))?;
    if !meta.is_dir() {
        return Err(format!("{}: not a directory", shown(root)));
    }
    let mut tree = Tree::default();
    walk(root, "", &mut tree)?;
    Ok(tree)
}

fn walk(dir: &Path, prefix: &str, tree: &mut Tree) -> Result<(), String> {
    let rd = fs::read_dir(dir).map_err(|e| format!("{}: {}", shown(dir), e))?;
    let mut entries: Vec<PathBuf> = Vec::new();
    for e in rd {
        entries.push(e.map_err(|e| format!("{}: {}", shown(dir), e))?.path());
    }
    entries.sort();
    for host in entries {
        let leaf = host
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| format!("{}: the name is not UTF-8", shown(&host)))?;
        let path = if prefix.is_empty() {
            leaf.to_string()
        } else {
            format!("{}/{}", prefix, leaf)
        };
        name::check(&path).map_err(|e| format!("{}: {}", shown(&host), e))?;
        let meta = fs::symlink_metadata(&host).map_err(|e| format!("{}: {}", shown(&host), e))?;
        let kind = meta.file_type();
        let mtime_ns = mtime_ns(&meta);
        if kind.is_symlink() {
            return Err(format!(
                "{}: a symbolic link (only regular files and directories are imported)",
                shown(&host)
            ));
        } else if kind.is_dir() {
            tree.nodes.push(Node {
                path: path.clone(),
                data: None,
                mtime_ns,
            });
            tree.dirs += 1;
            walk(&host, &path, tree)?;
        } else if kind.is_file() {
            let data = fs::read(&host).map_err(|e| format!("{}: {}", shown(&host), e))?;
            tree.files += 1;
            tree.bytes += data.len() as u64;
            tree.nodes.push(Node {
                path,
                data: Some(data),
                mtime_ns,
            });
        } else {
            return Err(format!(
                "{}: a special file (only regular files and directories are imported)",
                shown(&host)
            ));
        }
    }
    Ok(())
}

/// Nanoseconds since the Unix epoch (0 for a time before it, or none).
fn mtime_ns(meta: &fs::Metadata) -> u64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// A host path for a message, control characters escaped (a name may hold them).
pub fn shown(p: &Path) -> String {
    Shown(&p.to_string_lossy()).to_string()
}
