//! The RAM engine: the store in ordinary maps behind one lock. Gone at reboot; used when the
//! machine has no data partition, and as the model `DiskEngine` is tested against.
use crate::engine::*;
use crate::error::{Result, StoreError};
use crate::object::{hex, Hash};
use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};
use spin::Mutex;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A fresh engine id (shared by every engine kind, so ids never collide).
pub fn next_engine_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

struct Node {
    stat: NodeStat,
    data: Vec<u8>,
}

#[derive(Default)]
pub(crate) struct State {
    objects: BTreeMap<Hash, (Vec<u8>, ObjStat)>,
    names: BTreeMap<String, Stored>,
    nodes: BTreeMap<u64, Node>,
    dirents: BTreeMap<(u64, String), u64>,
    next_inode: u64,
    generation: u64,
}

pub struct RamEngine {
    id: u64,
    pub(crate) state: Mutex<State>,
}

impl Default for RamEngine {
    fn default() -> Self {
        Self::new()
    }
}

impl RamEngine {
    pub fn new() -> Self {
        let mut s = State {
            next_inode: ROOT_INODE + 1,
            ..State::default()
        };
        s.nodes.insert(
            ROOT_INODE,
            Node {
                stat: NodeStat {
                    kind: NodeKind::Dir,
                    size: 0,
                    inode: ROOT_INODE,
                    generation: 0,
                    mtime_ns: 0,
                    ctime_ns: 0,
                    chunk_size: 0,
                },
                data: Vec::new(),
            },
        );
        RamEngine {
            id: next_engine_id(),
            state: Mutex::new(s),
        }
    }
}

fn bind_in(s: &mut State, name: &str, value: Stored, replace: bool) -> Result<()> {
    if let Stored::Object(h) = &value {
        if !s.objects.contains_key(h) {
            return Err(StoreError::NotFound(alloc::format!("object {}", hex(h))));
        }
    }
    if s.names.contains_key(name) && !replace {
        return Err(StoreError::Exists(name.to_string()));
    }
    if let Stored::Object(h) = &value {
        if let Some(o) = s.objects.get_mut(h) {
            o.1.refs += 1;
        }
    }
    if let Some(Stored::Object(old)) = s.names.insert(name.to_string(), value) {
        // A replaced object no name binds any more goes, as on unbind.
        let gone = match s.objects.get_mut(&old) {
            Some(o) => {
                o.1.refs = o.1.refs.saturating_sub(1);
                o.1.refs == 0
            }
            None => false,
        };
        if gone {
            s.objects.remove(&old);
        }
    }
    Ok(())
}

impl RamEngine {
    /// The state, or `Busy` if an aborted command left it locked (see `DiskEngine`).
    fn st(&self) -> Result<spin::MutexGuard<'_, State>> {
        self.state.try_lock().ok_or_else(crate::disk::busy)
    }
}

impl Engine for RamEngine {
    fn info(&self) -> Result<EngineInfo> {
        let s = self.st()?;
        let object_bytes: u64 = s.objects.values().map(|o| o.1.size).sum();
        let files = s
            .nodes
            .values()
            .filter(|n| n.stat.kind == NodeKind::File)
            .count() as u64;
        let data: u64 = s.nodes.values().map(|n| n.data.len() as u64).sum();
        Ok(EngineInfo {
            engine: "ram",
            device: "memory".to_string(),
            read_only: false,
            capacity: 0,
            used: object_bytes + data,
            objects: s.objects.len() as u64,
            object_bytes,
            names: s.names.len() as u64,
            files,
            dirs: s.nodes.len() as u64 - files,
            generation: s.generation,
            format_version: 0,
        })
    }

    fn id(&self) -> u64 {
        self.id
    }

    fn read_only(&self) -> bool {
        false
    }

    fn put(&self, obj: NewObject<'_>, bind: Option<(&str, bool)>) -> Result<bool> {
        let mut s = self.st()?;
        if let Some((name, false)) = bind {
            if s.names.contains_key(name) {
                return Err(StoreError::Exists(name.to_string()));
            }
        }
        let new = !s.objects.contains_key(&obj.hash);
        if new {
            s.objects.insert(
                obj.hash,
                (
                    obj.bytes.to_vec(),
                    ObjStat {
                        hash: obj.hash,
                        size: obj.bytes.len() as u64,
                        schema_id: obj.schema_id,
                        version: obj.version,
                        refs: 0,
                    },
                ),
            );
        }
        if let Some((name, replace)) = bind {
            bind_in(&mut s, name, Stored::Object(obj.hash), replace)?;
        }
        s.generation += 1;
        Ok(new)
    }

    fn get(&self, hash: &Hash) -> Result<Option<Vec<u8>>> {
        Ok(self.st()?.objects.get(hash).map(|o| o.0.clone()))
    }

    fn stat(&self, hash: &Hash) -> Result<Option<ObjStat>> {
        Ok(self.st()?.objects.get(hash).map(|o| o.1.clone()))
    }

    fn delete(&self, hash: &Hash) -> Result<()> {
        let mut s = self.st()?;
        match s.objects.get(hash) {
            None => Err(StoreError::NotFound(alloc::format!("object {}", hex(hash)))),
            Some(o) if o.1.refs > 0 => Err(StoreError::InUse { refs: o.1.refs }),
            Some(_) => {
                s.objects.remove(hash);
                s.generation += 1;
                Ok(())
            }
        }
    }

    fn objects(&self) -> Result<Vec<ObjStat>> {
        Ok(self
            .state
            .lock()
            .objects
            .values()
            .map(|o| o.1.clone())
            .collect())
    }

    fn bind(&self, name: &str, value: Stored, replace: bool) -> Result<()> {
        let mut s = self.st()?;
        bind_in(&mut s, name, value, replace)?;
        s.generation += 1;
        Ok(())
    }

    fn lookup(&self, name: &str) -> Result<Option<Stored>> {
        Ok(self.st()?.names.get(name).cloned())
    }

    fn unbind(&self, name: &str, collect: bool) -> Result<Stored> {
        let mut s = self.st()?;
        let old = s
            .names
            .remove(name)
            .ok_or_else(|| StoreError::NotFound(name.to_string()))?;
        if let Stored::Object(h) = &old {
            let gone = match s.objects.get_mut(h) {
                Some(o) => {
                    o.1.refs = o.1.refs.saturating_sub(1);
                    o.1.refs == 0
                }
                None => false,
            };
            if gone && collect {
                s.objects.remove(h);
            }
        }
        s.generation += 1;
        Ok(old)
    }

    fn names(&self, prefix: &str) -> Result<Vec<(String, Stored)>> {
        let s = self.st()?;
        Ok(s.names
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn fs_lookup(&self, dir: u64, name: &str) -> Result<Option<u64>> {
        let s = self.st()?;
        match s.nodes.get(&dir) {
            Some(n) if n.stat.kind == NodeKind::Dir => {}
            Some(_) => return Err(StoreError::NotDirectory(name.to_string())),
            None => return Err(StoreError::NotFound(alloc::format!("inode {}", dir))),
        }
        Ok(s.dirents.get(&(dir, name.to_string())).copied())
    }

    fn fs_stat(&self, inode: u64) -> Result<NodeStat> {
        let s = self.st()?;
        s.nodes
            .get(&inode)
            .map(|n| n.stat.clone())
            .ok_or_else(|| StoreError::NotFound(alloc::format!("inode {}", inode)))
    }

    fn fs_list(&self, dir: u64) -> Result<Vec<DirEnt>> {
        let s = self.st()?;
        let mut v = Vec::new();
        for ((_, name), ino) in s
            .dirents
            .range((dir, String::new())..)
            .take_while(|((d, _), _)| *d == dir)
        {
            let n = s
                .nodes
                .get(ino)
                .ok_or_else(|| StoreError::Corrupt(alloc::format!("dangling entry {}", name)))?;
            v.push(DirEnt {
                name: name.clone(),
                kind: n.stat.kind,
                inode: *ino,
                size: n.stat.size,
            });
        }
        Ok(v)
    }

    fn fs_read(&self, inode: u64, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let s = self.st()?;
        let n = s
            .nodes
            .get(&inode)
            .ok_or_else(|| StoreError::NotFound(alloc::format!("inode {}", inode)))?;
        if n.stat.kind == NodeKind::Dir {
            return Err(StoreError::IsDirectory(alloc::format!("inode {}", inode)));
        }
        let len = n.data.len() as u64;
        if offset >= len {
            return Ok(0);
        }
        let k = ((len - offset) as usize).min(buf.len());
        buf[..k].copy_from_slice(&n.data[offset as usize..offset as usize + k]);
        Ok(k)
    }

    fn import(&self, items: &[ImportItem<'_>]) -> Result<()> {
        let mut guard = self.st()?;
        // All or nothing: work on a copy of the tree's maps.
        let mut nodes: BTreeMap<u64, (NodeStat, Vec<u8>)> = BTreeMap::new();
        let mut dirents = guard.dirents.clone();
        let mut next = guard.next_inode;
        let find = |nodes: &BTreeMap<u64, (NodeStat, Vec<u8>)>, s: &State, i: u64| {
            nodes
                .get(&i)
                .map(|n| n.0.kind)
                .or_else(|| s.nodes.get(&i).map(|n| n.stat.kind))
        };
        for it in items {
            crate::name::check(it.path)?;
            let (parent_path, leaf) = match it.path.rsplit_once('/') {
                Some((p, l)) => (Some(p), l),
                None => (None, it.path),
            };
            let mut dir = ROOT_INODE;
            if let Some(p) = parent_path {
                for c in p.split('/') {
                    dir = *dirents
                        .get(&(dir, c.to_string()))
                        .ok_or_else(|| StoreError::NotFound(p.to_string()))?;
                    if find(&nodes, &guard, dir) != Some(NodeKind::Dir) {
                        return Err(StoreError::NotDirectory(p.to_string()));
                    }
                }
            }
            let key = (dir, leaf.to_string());
            if let Some(&existing) = dirents.get(&key) {
                if it.data.is_none() && find(&nodes, &guard, existing) == Some(NodeKind::Dir) {
                    continue;
                }
                return Err(StoreError::Exists(it.path.to_string()));
            }
            let ino = next;
            next += 1;
            let (kind, data) = match it.data {
                Some(d) => (NodeKind::File, d.to_vec()),
                None => (NodeKind::Dir, Vec::new()),
            };
            let stat = NodeStat {
                kind,
                size: data.len() as u64,
                inode: ino,
                generation: 1,
                mtime_ns: it.mtime_ns,
                ctime_ns: it.mtime_ns,
                chunk_size: if kind == NodeKind::File {
                    CHUNK_SIZE
                } else {
                    0
                },
            };
            nodes.insert(ino, (stat, data));
            dirents.insert(key, ino);
        }
        let s = &mut *guard;
        for (ino, (stat, data)) in nodes {
            s.nodes.insert(ino, Node { stat, data });
        }
        s.dirents = dirents;
        s.next_inode = next;
        // Directory sizes are their entry counts.
        let mut counts: BTreeMap<u64, u64> = BTreeMap::new();
        for (d, _) in s.dirents.keys() {
            *counts.entry(*d).or_default() += 1;
        }
        for (ino, n) in s.nodes.iter_mut() {
            if n.stat.kind == NodeKind::Dir {
                n.stat.size = counts.get(ino).copied().unwrap_or(0);
            }
        }
        s.generation += 1;
        Ok(())
    }
}
