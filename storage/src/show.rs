//! The lines the monitor's storage commands and the host tool `capmon-store` print, written
//! once so the two always agree (the proofs compare them line for line).
use crate::caps::NameEntry;
use crate::engine::{DirEnt, NodeKind, NodeStat, ObjStat};
use crate::error::Result;
use crate::fsck::FsckReport;
use crate::name::Shown;
use crate::object::{self, hex, Body, Hash};
use core::fmt::Write;
use sha2::{Digest, Sha256};

/// `fs ls` / `capmon-store ls`: kind, size, name; then the count.
pub fn dir(o: &mut dyn Write, ents: &[DirEnt]) {
    for e in ents {
        let _ = match e.kind {
            NodeKind::Dir => writeln!(o, "d {:>12}  {}/", e.size, Shown(&e.name)),
            NodeKind::File => writeln!(o, "f {:>12}  {}", e.size, Shown(&e.name)),
        };
    }
    let _ = writeln!(o, "{} entries", ents.len());
}

/// `fs stat PATH`.
pub fn node(o: &mut dyn Write, path: &str, st: &NodeStat) {
    let dir = st.kind == NodeKind::Dir;
    let _ = writeln!(o, "path        /{}", Shown(path));
    let _ = writeln!(o, "kind        {}", if dir { "directory" } else { "file" });
    let _ = writeln!(
        o,
        "size        {}{}",
        st.size,
        if dir { " entries" } else { " bytes" }
    );
    let _ = writeln!(o, "inode       {}", st.inode);
    let _ = writeln!(o, "generation  {}", st.generation);
    let _ = writeln!(o, "mtime       {} ns", st.mtime_ns);
    let _ = writeln!(o, "ctime       {} ns", st.ctime_ns);
    if !dir {
        let _ = writeln!(o, "chunk size  {}", st.chunk_size);
    }
}

/// `fs sum PATH`: the SHA-256 of `len` bytes.
pub fn digest(o: &mut dyn Write, d: &[u8; 32], len: u64) {
    let _ = writeln!(o, "sha256 {}  {} bytes", hex(d), len);
}

/// `store get NAME`: the object decoded (text, or the data's length and SHA-256).
pub fn object(o: &mut dyn Write, name: &str, h: &Hash, bytes: &[u8]) -> Result<()> {
    let d = object::decode(bytes)?;
    let _ = writeln!(
        o,
        "{}: {} {} v{}, {} bytes",
        Shown(name),
        hex(h),
        object::schema_name(d.schema_id),
        d.version,
        bytes.len()
    );
    let _ = match d.body {
        Body::Text(t) => writeln!(o, "text: {}", Shown(&t)),
        Body::Bytes(b) => {
            let sum: [u8; 32] = Sha256::digest(&b).into();
            writeln!(o, "data: {} bytes, sha256 {}", b.len(), hex(&sum))
        }
        Body::Other { words } => writeln!(
            o,
            "body: schema {:#018x}, {} words (not a schema this build decodes)",
            d.schema_id, words
        ),
    };
    Ok(())
}

/// `store put`: what was stored under `name`.
pub fn put(o: &mut dyn Write, name: &str, st: &ObjStat) {
    let _ = writeln!(
        o,
        "put {}: {} ({} bytes, {})",
        Shown(name),
        hex(&st.hash),
        st.size,
        object::schema_name(st.schema_id)
    );
}

/// `store ls`: every object with its size, schema and references; then the totals.
pub fn objects(o: &mut dyn Write, list: &[ObjStat]) {
    let _ = writeln!(o, "{:<64}  {:>9}  {:<9}  refs", "hash", "bytes", "schema");
    let mut total = 0;
    for st in list {
        total += st.size;
        let _ = writeln!(
            o,
            "{}  {:>9}  {:<9}  {}",
            hex(&st.hash),
            st.size,
            object::schema_name(st.schema_id),
            st.refs
        );
    }
    let _ = writeln!(o, "{} object(s), {} bytes", list.len(), total);
}

/// `ns ls`: kind, then the hash (objects) or the rights (capabilities), then the name.
pub fn names(o: &mut dyn Write, list: &[NameEntry]) {
    for e in list {
        let _ = match (e.hash, e.rights) {
            (Some(h), _) => writeln!(o, "{:<9}  {}  {}", e.kind, hex(&h), Shown(&e.name)),
            (None, Some(r)) => writeln!(o, "{:<9}  {:<64}  {}", e.kind, r, Shown(&e.name)),
            _ => writeln!(o, "{:<9}  {:<64}  {}", e.kind, "", Shown(&e.name)),
        };
    }
    let _ = writeln!(o, "{} name(s)", list.len());
}

/// `store fsck`: the counts, a line per problem, `fsck: clean` when there is none.
pub fn fsck(o: &mut dyn Write, r: &FsckReport) {
    let _ = writeln!(
        o,
        "fsck: {} objects ({} bytes), {} names, {} directories, {} files ({} bytes), {} chunks",
        r.objects, r.object_bytes, r.names, r.dirs, r.files, r.file_bytes, r.chunks
    );
    for p in &r.problems {
        let _ = writeln!(o, "problem: {}", p);
    }
    if r.clean() {
        let _ = writeln!(o, "fsck: clean");
    }
}
