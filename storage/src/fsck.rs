//! `fsck`: every invariant of a store, checked through the `Engine` boundary (so the RAM and
//! disk engines are checked alike), plus the disk engine's own (redb's integrity check, chunks).
use crate::disk::DiskEngine;
use crate::engine::*;
use crate::error::Result;
use crate::name;
use crate::object::{self, hex, Hash};
use alloc::collections::{BTreeMap, BTreeSet};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FsckReport {
    pub objects: u64,
    pub object_bytes: u64,
    pub names: u64,
    pub dirs: u64,
    pub files: u64,
    pub file_bytes: u64,
    pub chunks: u64,
    /// One line per problem found; empty means clean.
    pub problems: Vec<String>,
}

impl FsckReport {
    pub fn clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks everything `e` holds. Fails only if the engine cannot be read at all; each
/// inconsistency is a line of `problems`.
pub fn fsck(e: &dyn Engine, disk: Option<&DiskEngine>) -> Result<FsckReport> {
    let mut r = FsckReport::default();
    if let Some(d) = disk {
        match d.check_integrity() {
            Ok(true) => {}
            Ok(false) => r
                .problems
                .push(String::from("redb: the database needed repair")),
            Err(err) => r.problems.push(format!("redb integrity check: {}", err)),
        }
    }
    // Objects: the hash is the content's, the message reads, the size and schema are recorded.
    let mut refs: BTreeMap<Hash, u32> = BTreeMap::new();
    let stats = e.objects()?;
    for s in &stats {
        r.objects += 1;
        r.object_bytes += s.size;
        refs.insert(s.hash, 0);
        let id = hex(&s.hash);
        let Some(bytes) = e.get(&s.hash)? else {
            r.problems
                .push(format!("object {}: recorded but missing", id));
            continue;
        };
        let h: Hash = Sha256::digest(&bytes).into();
        if h != s.hash {
            r.problems
                .push(format!("object {}: its bytes hash to {}", id, hex(&h)));
        }
        if bytes.len() as u64 != s.size {
            r.problems.push(format!(
                "object {}: {} bytes, recorded as {}",
                id,
                bytes.len(),
                s.size
            ));
        }
        match object::check(&bytes) {
            Ok(c) if c.canonical != bytes => r
                .problems
                .push(format!("object {}: not in canonical form", id)),
            Ok(c) if c.schema_id != s.schema_id || c.version != s.version => r.problems.push(
                format!("object {}: schema or version differs from its record", id),
            ),
            Ok(_) => {}
            Err(err) => r.problems.push(format!("object {}: {}", id, err)),
        }
    }
    // Names: valid, bound to objects that exist, reference counts exact.
    for (n, v) in e.names("")? {
        r.names += 1;
        if name::check(&n).is_err() {
            r.problems.push(format!(
                "name '{}': breaks the naming rules",
                name::Shown(&n)
            ));
        }
        match v {
            Stored::Object(h) => match refs.get_mut(&h) {
                Some(c) => *c += 1,
                None => r.problems.push(format!(
                    "name '{}': bound to missing object {}",
                    name::Shown(&n),
                    hex(&h)
                )),
            },
            Stored::Cap(c) => {
                if name::check_path(c.path.trim_end_matches('/')).is_err() {
                    r.problems.push(format!(
                        "name '{}': capability path is invalid",
                        name::Shown(&n)
                    ));
                }
            }
        }
    }
    for s in &stats {
        let counted = refs.get(&s.hash).copied().unwrap_or(0);
        if counted != s.refs {
            r.problems.push(format!(
                "object {}: {} name(s) bind it, recorded as {}",
                hex(&s.hash),
                counted,
                s.refs
            ));
        }
    }
    // The tree: every entry's inode exists, every node is reached once, sizes agree.
    let mut seen = BTreeSet::new();
    // Each node reached, and the directory whose entry reached it.
    let mut parents = BTreeMap::new();
    let mut todo = alloc::vec![(ROOT_INODE, String::from("/"))];
    seen.insert(ROOT_INODE);
    parents.insert(ROOT_INODE, ROOT_INODE);
    while let Some((dir, path)) = todo.pop() {
        r.dirs += 1;
        let st = match e.fs_stat(dir) {
            Ok(s) => s,
            Err(err) => {
                r.problems.push(format!("{}: {}", path, err));
                continue;
            }
        };
        let ents = match e.fs_list(dir) {
            Ok(v) => v,
            Err(err) => {
                r.problems.push(format!("{}: {}", path, err));
                continue;
            }
        };
        if st.size != ents.len() as u64 {
            r.problems.push(format!(
                "{}: {} entries, recorded as {}",
                path,
                ents.len(),
                st.size
            ));
        }
        for ent in ents {
            let p = format!("{}{}", path, name::Shown(&ent.name));
            if name::check(&ent.name).is_err() || ent.name.contains('/') {
                r.problems
                    .push(format!("{}: an entry name breaks the naming rules", p));
            }
            if !seen.insert(ent.inode) {
                r.problems
                    .push(format!("{}: inode {} reached twice", p, ent.inode));
                continue;
            }
            parents.insert(ent.inode, dir);
            match ent.kind {
                NodeKind::Dir => todo.push((ent.inode, format!("{}/", p))),
                NodeKind::File => {
                    r.files += 1;
                    r.file_bytes += ent.size;
                }
            }
        }
    }
    if let Some(d) = disk {
        let mut problems = Vec::new();
        r.chunks = d.check_chunks(&mut problems)?;
        r.problems.extend(problems);
        let inodes = d.check_inodes(&parents, &mut r.problems)?;
        if inodes != seen.len() as u64 {
            r.problems.push(format!(
                "{} inode(s) not reachable from the root",
                inodes.saturating_sub(seen.len() as u64)
            ));
        }
    }
    Ok(r)
}
