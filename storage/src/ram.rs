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
    parent: u64,
}

/// File bytes a RAM store holds at most (sizes, holes included: they are kept as zeros).
pub const RAM_FILE_BYTES: u64 = 64 << 20;

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
    clock: ClockFn,
    writers: crate::caps::Writers,
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
                parent: ROOT_INODE,
            },
        );
        RamEngine {
            id: next_engine_id(),
            clock: no_clock,
            writers: crate::caps::Writers::default(),
            state: Mutex::new(s),
        }
    }

    /// The same, stamping times from `clock`.
    pub fn with_clock(clock: ClockFn) -> Self {
        let mut e = Self::new();
        e.clock = clock;
        let now = clock();
        let root = e.state.get_mut().nodes.get_mut(&ROOT_INODE);
        if let Some(r) = root {
            r.stat.mtime_ns = now;
            r.stat.ctime_ns = now;
        }
        e
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
    /// The state, waiting a bounded time for another CPU's operation; `Busy` if an aborted
    /// command left it locked (see `DiskEngine`).
    fn st(&self) -> Result<spin::MutexGuard<'_, State>> {
        crate::disk::lock_bounded(&self.state, self.clock)
    }
}

impl State {
    fn node(&self, ino: u64) -> Result<&Node> {
        self.nodes
            .get(&ino)
            .ok_or_else(|| StoreError::NotFound(alloc::format!("inode {}", ino)))
    }

    fn node_mut(&mut self, ino: u64) -> Result<&mut Node> {
        self.nodes
            .get_mut(&ino)
            .ok_or_else(|| StoreError::NotFound(alloc::format!("inode {}", ino)))
    }

    fn dir(&self, ino: u64) -> Result<&Node> {
        let n = self.node(ino)?;
        if n.stat.kind != NodeKind::Dir {
            return Err(StoreError::NotDirectory(alloc::format!("inode {}", ino)));
        }
        Ok(n)
    }

    fn file_mut(&mut self, ino: u64) -> Result<&mut Node> {
        let n = self.node_mut(ino)?;
        if n.stat.kind != NodeKind::File {
            return Err(StoreError::IsDirectory(alloc::format!("inode {}", ino)));
        }
        Ok(n)
    }

    fn file_bytes(&self) -> u64 {
        self.nodes.values().map(|n| n.data.len() as u64).sum()
    }

    /// Room for a file to go from `old` to `new` bytes.
    fn room(&self, old: u64, new: u64) -> Result<()> {
        if new > MAX_FILE_SIZE {
            return Err(StoreError::TooLarge {
                what: "file",
                size: new,
                limit: MAX_FILE_SIZE,
            });
        }
        if new > old && self.file_bytes() + (new - old) > RAM_FILE_BYTES {
            return Err(StoreError::NoSpace(alloc::format!(
                "a RAM store holds at most {} bytes of files",
                RAM_FILE_BYTES
            )));
        }
        Ok(())
    }

    /// A directory changed: its entry count, generation and times.
    fn touch_dir(&mut self, dir: u64, now: u64) {
        let count = self
            .dirents
            .range((dir, String::new())..)
            .take_while(|((d, _), _)| *d == dir)
            .count() as u64;
        if let Some(n) = self.nodes.get_mut(&dir) {
            n.stat.size = count;
            n.stat.generation += 1;
            n.stat.mtime_ns = now;
            n.stat.ctime_ns = now;
        }
    }

    /// Every inode of the tree at `ino` (itself first).
    fn subtree(&self, ino: u64) -> Vec<u64> {
        let mut out = alloc::vec![ino];
        let mut i = 0;
        while i < out.len() {
            let d = out[i];
            i += 1;
            if self.nodes.get(&d).map(|n| n.stat.kind) == Some(NodeKind::Dir) {
                out.extend(
                    self.dirents
                        .range((d, String::new())..)
                        .take_while(|((p, _), _)| *p == d)
                        .map(|(_, c)| *c),
                );
            }
        }
        out
    }

    fn new_node(&mut self, kind: NodeKind, parent: u64, now: u64) -> u64 {
        let ino = self.next_inode;
        self.next_inode += 1;
        self.nodes.insert(
            ino,
            Node {
                stat: NodeStat {
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
                },
                data: Vec::new(),
                parent,
            },
        );
        ino
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
        Ok(self.st()?.objects.values().map(|o| o.1.clone()).collect())
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
        let mut nodes: BTreeMap<u64, (NodeStat, Vec<u8>, u64)> = BTreeMap::new();
        let mut dirents = guard.dirents.clone();
        let mut next = guard.next_inode;
        let find = |nodes: &BTreeMap<u64, (NodeStat, Vec<u8>, u64)>, s: &State, i: u64| {
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
            nodes.insert(ino, (stat, data, dir));
            dirents.insert(key, ino);
        }
        let s = &mut *guard;
        for (ino, (stat, data, parent)) in nodes {
            s.nodes.insert(ino, Node { stat, data, parent });
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

    fn now_ns(&self) -> u64 {
        (self.clock)()
    }

    fn writers(&self) -> &crate::caps::Writers {
        &self.writers
    }

    fn fs_create(&self, dir: u64, name: &str, kind: NodeKind) -> Result<u64> {
        crate::name::check_component(name)?;
        let now = self.now_ns();
        let mut s = self.st()?;
        s.dir(dir)?;
        if s.dirents.contains_key(&(dir, name.to_string())) {
            return Err(StoreError::Exists(name.to_string()));
        }
        let ino = s.new_node(kind, dir, now);
        s.dirents.insert((dir, name.to_string()), ino);
        s.touch_dir(dir, now);
        s.generation += 1;
        Ok(ino)
    }

    fn fs_put(&self, dir: u64, name: &str, data: &[u8], in_use: InUse<'_>) -> Result<u64> {
        crate::name::check_component(name)?;
        let now = self.now_ns();
        let mut s = self.st()?;
        s.dir(dir)?;
        let existing = s.dirents.get(&(dir, name.to_string())).copied();
        let ino = match existing {
            Some(i) => {
                let n = s.node(i)?;
                if n.stat.kind == NodeKind::Dir {
                    return Err(StoreError::IsDirectory(name.to_string()));
                }
                if in_use(i) {
                    return Err(crate::caps::writer_busy(name));
                }
                let old = n.data.len() as u64;
                s.room(old, data.len() as u64)?;
                let n = s.file_mut(i)?;
                n.data = data.to_vec();
                n.stat.size = data.len() as u64;
                n.stat.generation += 1;
                n.stat.mtime_ns = now;
                n.stat.ctime_ns = now;
                i
            }
            None => {
                s.room(0, data.len() as u64)?;
                let i = s.new_node(NodeKind::File, dir, now);
                let n = s.file_mut(i)?;
                n.data = data.to_vec();
                n.stat.size = data.len() as u64;
                s.dirents.insert((dir, name.to_string()), i);
                s.touch_dir(dir, now);
                i
            }
        };
        s.generation += 1;
        Ok(ino)
    }

    fn fs_write(&self, inode: u64, at: At, data: &[u8]) -> Result<u64> {
        let now = self.now_ns();
        let mut s = self.st()?;
        let old = s.node(inode)?.data.len() as u64;
        s.file_mut(inode)?;
        let off = match at {
            At::Offset(o) => o,
            At::End => old,
        };
        let end = off.saturating_add(data.len() as u64);
        s.room(old, end.max(old))?;
        let n = s.file_mut(inode)?;
        if end as usize > n.data.len() {
            n.data.resize(end as usize, 0);
        }
        n.data[off as usize..end as usize].copy_from_slice(data);
        n.stat.size = n.data.len() as u64;
        n.stat.generation += 1;
        n.stat.mtime_ns = now;
        n.stat.ctime_ns = now;
        s.generation += 1;
        Ok(off)
    }

    fn fs_truncate(&self, inode: u64, size: u64) -> Result<()> {
        let now = self.now_ns();
        let mut s = self.st()?;
        let old = s.node(inode)?.data.len() as u64;
        s.file_mut(inode)?;
        s.room(old, size)?;
        let n = s.file_mut(inode)?;
        n.data.resize(size as usize, 0);
        n.stat.size = size;
        n.stat.generation += 1;
        n.stat.mtime_ns = now;
        n.stat.ctime_ns = now;
        s.generation += 1;
        Ok(())
    }

    fn fs_remove(&self, dir: u64, name: &str, recursive: bool, in_use: InUse<'_>) -> Result<u64> {
        crate::name::check_component(name)?;
        let now = self.now_ns();
        let mut s = self.st()?;
        s.dir(dir)?;
        let key = (dir, name.to_string());
        let ino = *s
            .dirents
            .get(&key)
            .ok_or_else(|| StoreError::NotFound(name.to_string()))?;
        let gone = s.subtree(ino);
        if gone.len() > 1 && !recursive {
            return Err(StoreError::NotEmpty(name.to_string()));
        }
        if gone.iter().any(|&i| in_use(i)) {
            return Err(crate::caps::writer_busy(name));
        }
        s.dirents.remove(&key);
        for i in &gone {
            s.nodes.remove(i);
            let kids: Vec<(u64, String)> = s
                .dirents
                .range((*i, String::new())..)
                .take_while(|((p, _), _)| p == i)
                .map(|(k, _)| k.clone())
                .collect();
            for k in kids {
                s.dirents.remove(&k);
            }
        }
        s.touch_dir(dir, now);
        s.generation += 1;
        Ok(gone.len() as u64)
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
        let mut s = self.st()?;
        s.dir(from_dir)?;
        s.dir(to_dir)?;
        let src = *s
            .dirents
            .get(&(from_dir, from.to_string()))
            .ok_or_else(|| StoreError::NotFound(from.to_string()))?;
        let kind = s.node(src)?.stat.kind;
        // A directory cannot go under itself: walk up from the target directory.
        if kind == NodeKind::Dir {
            let mut d = to_dir;
            loop {
                if d == src {
                    return Err(crate::caps::into_itself(from, to));
                }
                if d == ROOT_INODE {
                    break;
                }
                d = s.node(d)?.parent;
            }
        }
        let dst = s.dirents.get(&(to_dir, to.to_string())).copied();
        if dst == Some(src) {
            return Ok(());
        }
        if let Some(d) = dst {
            let dk = s.node(d)?.stat.kind;
            match (kind, dk) {
                (NodeKind::File, NodeKind::Dir) => {
                    return Err(StoreError::IsDirectory(to.to_string()))
                }
                (NodeKind::Dir, NodeKind::File) => {
                    return Err(StoreError::NotDirectory(to.to_string()))
                }
                (NodeKind::Dir, NodeKind::Dir) if s.subtree(d).len() > 1 => {
                    return Err(StoreError::NotEmpty(to.to_string()))
                }
                _ => {}
            }
            if in_use(d) {
                return Err(crate::caps::writer_busy(to));
            }
            s.nodes.remove(&d);
        }
        s.dirents.remove(&(from_dir, from.to_string()));
        s.dirents.insert((to_dir, to.to_string()), src);
        let n = s.node_mut(src)?;
        n.parent = to_dir;
        n.stat.ctime_ns = now;
        s.touch_dir(from_dir, now);
        if to_dir != from_dir {
            s.touch_dir(to_dir, now);
        }
        s.generation += 1;
        Ok(())
    }

    fn sync(&self) -> Result<()> {
        Ok(())
    }

    fn unsynced(&self) -> u64 {
        0
    }
}
