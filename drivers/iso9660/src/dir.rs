//! Directory records (ECMA-119 §9.1) and the entries made of them.
use crate::susp;
use crate::{IsoError, Names, Volume, MAX_EXTENTS};
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use capmon_block::BlockDevice;

/// The shortest directory record: 33 bytes of fields and a one-byte identifier.
pub const RECORD_MIN: usize = 34;
/// File flags (§9.1.6).
const FLAG_DIR: u8 = 0x02;
const FLAG_MULTI_EXTENT: u8 = 0x80;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
}

/// One contiguous run of a file's bytes: `len` bytes from logical block `lba`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    pub lba: u64,
    pub len: u32,
}

/// A file, directory or symbolic link of the volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub kind: Kind,
    /// Bytes, the sum over the extents.
    pub size: u64,
    pub extents: Vec<Extent>,
    /// The recording date, `YYYY-MM-DD HH:MM:SS` (offset from GMT not applied).
    pub recorded: Option<String>,
    /// Rock Ridge's POSIX mode (`PX`), where there is one.
    pub mode: Option<u32>,
    /// A Rock Ridge symbolic link's target (`SL`).
    pub target: Option<String>,
}

impl Entry {
    /// The first block of the entry's data (0 for an empty file).
    pub fn lba(&self) -> u64 {
        self.extents.first().map_or(0, |x| x.lba)
    }
}

/// The fields of one record, named `name`, without looking at its System Use area. An error
/// string for what cannot be read.
pub fn plain_entry(rec: &[u8], name: String) -> Result<Entry, String> {
    if rec.len() < RECORD_MIN {
        return Err(format!("{} bytes, shorter than {}", rec.len(), RECORD_MIN));
    }
    if rec[26] != 0 || rec[27] != 0 {
        return Err(String::from(
            "an interleaved file (file unit size or gap set), which is not supported",
        ));
    }
    // The extended attribute record, if any, fills the extent's first blocks (§9.5).
    let ear = u64::from(rec[1]);
    let lba = u64::from(u32::from_le_bytes([rec[2], rec[3], rec[4], rec[5]])) + ear;
    let len = u32::from_le_bytes([rec[10], rec[11], rec[12], rec[13]]);
    let kind = if rec[25] & FLAG_DIR != 0 {
        Kind::Dir
    } else {
        Kind::File
    };
    Ok(Entry {
        name,
        kind,
        size: u64::from(len),
        extents: vec![Extent { lba, len }],
        recorded: record_date(&rec[18..25]),
        mode: None,
        target: None,
    })
}

/// A 7-byte recording date (§9.1.5), None when it is all zeros.
fn record_date(b: &[u8]) -> Option<String> {
    if b[..6].iter().all(|c| *c == 0) {
        return None;
    }
    Some(format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        1900 + u32::from(b[0]),
        b[1],
        b[2],
        b[3],
        b[4],
        b[5]
    ))
}

/// The entries recorded in one directory's extent `data`; `path` names the directory in
/// errors. Records never cross a logical block; the rest of a block after a zero length byte
/// is padding (§6.8.1.1).
pub fn parse(
    v: &Volume,
    dev: &mut dyn BlockDevice,
    data: &[u8],
    path: &str,
) -> Result<Vec<Entry>, IsoError> {
    let bad = |why: String| IsoError::BadRecord {
        dir: String::from(path),
        why,
    };
    let b = v.block as usize;
    let mut out: Vec<Entry> = Vec::new();
    let mut pending: Option<Entry> = None;
    let mut pos = 0usize;
    while pos < data.len() {
        let block_end = ((pos / b + 1) * b).min(data.len());
        let len = usize::from(data[pos]);
        if len == 0 {
            pos = block_end;
            continue;
        }
        if len < RECORD_MIN || pos + len > block_end {
            return Err(bad(format!(
                "the record at byte {} has a length of {} ({})",
                pos,
                len,
                if len < RECORD_MIN {
                    "too short"
                } else {
                    "it crosses a block"
                }
            )));
        }
        let rec = &data[pos..pos + len];
        let at = pos;
        pos += len;
        let nl = usize::from(rec[32]);
        if nl == 0 || 33 + nl > len {
            return Err(bad(format!(
                "the record at byte {} has an identifier of {} bytes in {}",
                at, nl, len
            )));
        }
        let id = &rec[33..33 + nl];
        if nl == 1 && id[0] <= 1 {
            continue; // "." and ".." (§6.8.2.2)
        }
        let sua = rec.get(33 + nl + (1 - nl % 2)..).unwrap_or(&[]);
        let mut e = plain_entry(rec, String::new())
            .map_err(|w| bad(format!("the record at byte {}: {}", at, w)))?;
        match v.names {
            Names::RockRidge { skip } => {
                let rr =
                    susp::rock_ridge(v, dev, sua.get(usize::from(skip)..).unwrap_or(&[]), path)?;
                if rr.relocated {
                    continue; // shown where its CL entry is
                }
                e.name = match rr.name {
                    Some(n) => n,
                    None => iso_name(id),
                };
                e.mode = rr.mode;
                if let Some(t) = rr.target {
                    e.kind = Kind::Symlink;
                    e.target = Some(t);
                } else if rr.mode.is_some_and(|m| m & susp::S_IFMT == susp::S_IFLNK) {
                    e.kind = Kind::Symlink;
                }
                if let Some(child) = rr.child {
                    e = relocated_dir(v, dev, child, e, path)?;
                }
            }
            Names::Joliet => {
                e.name =
                    joliet_name(id).map_err(|w| bad(format!("the record at byte {}: {}", at, w)))?
            }
            Names::Iso => e.name = iso_name(id),
        }
        check_name(&e.name).map_err(|w| bad(format!("the record at byte {}: {}", at, w)))?;
        // Extents are checked where they are read (`Volume::read`, `list`), so one bad entry
        // costs that entry, not its whole directory.
        let x = e.extents[0];
        let more = rec[25] & FLAG_MULTI_EXTENT != 0;
        if more && e.kind == Kind::Dir {
            return Err(bad(format!(
                "directory {} has more than one extent",
                e.name
            )));
        }
        if let Some(mut p) = pending.take() {
            if p.name != e.name {
                return Err(bad(format!(
                    "{}: a multi-extent file ends without its last extent",
                    p.name
                )));
            }
            if p.extents.len() >= MAX_EXTENTS {
                return Err(IsoError::TooLarge {
                    what: format!("extents of {}", p.name),
                    bytes: p.size,
                    limit: MAX_EXTENTS as u64,
                });
            }
            p.extents.push(x);
            p.size += u64::from(x.len);
            if more {
                pending = Some(p);
            } else {
                out.push(p);
            }
        } else if more {
            pending = Some(e);
        } else {
            out.push(e);
        }
    }
    if let Some(p) = pending {
        return Err(bad(format!(
            "{}: a multi-extent file ends without its last extent",
            p.name
        )));
    }
    Ok(out)
}

/// A Rock Ridge `CL` entry: the directory really lives at block `lba` (deep directories are
/// relocated, RRIP 1.12 §4.1.5.1); its extent and size are its own "." record's.
fn relocated_dir(
    v: &Volume,
    dev: &mut dyn BlockDevice,
    lba: u64,
    mut e: Entry,
    path: &str,
) -> Result<Entry, IsoError> {
    v.check_extent(
        &|| format!("relocated directory {}", e.name),
        lba,
        u64::from(v.block),
    )?;
    let mut blk = vec![0u8; v.block as usize];
    crate::read_at(dev, lba * u64::from(v.block), &mut blk)?;
    let len = usize::from(blk[0]);
    let dot = blk
        .get(..len)
        .filter(|r| r.len() >= RECORD_MIN && r[32] == 1 && r[33] == 0);
    let Some(dot) = dot else {
        return Err(IsoError::BadRecord {
            dir: String::from(path),
            why: format!(
                "{}: its relocated directory at block {} has no '.' record",
                e.name, lba
            ),
        });
    };
    let d = plain_entry(dot, String::new()).map_err(|w| IsoError::BadRecord {
        dir: String::from(path),
        why: format!("{}: relocated directory: {}", e.name, w),
    })?;
    e.kind = Kind::Dir;
    e.size = d.size;
    e.extents = d.extents;
    Ok(e)
}

/// A plain ISO 9660 identifier: the `;N` version and a trailing `.` of a name without an
/// extension taken off (§7.5.1).
pub fn iso_name(id: &[u8]) -> String {
    let mut s = String::from_utf8_lossy(id).into_owned();
    if let Some(i) = s.rfind(';') {
        if s[i + 1..].bytes().all(|c| c.is_ascii_digit()) {
            s.truncate(i);
        }
    }
    if s.ends_with('.') {
        s.pop();
    }
    s
}

/// A Joliet identifier: UCS-2 big-endian, the `;N` version taken off.
fn joliet_name(id: &[u8]) -> Result<String, String> {
    if !id.len().is_multiple_of(2) {
        return Err(format!("a Joliet name of {} bytes (odd)", id.len()));
    }
    let units = id.chunks(2).map(|c| u16::from_be_bytes([c[0], c[1]]));
    let s: String = char::decode_utf16(units)
        .map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect();
    Ok(iso_name(s.as_bytes()))
}

/// A name that could not be a path component is refused rather than shown.
fn check_name(n: &str) -> Result<(), String> {
    if n.is_empty() || n == "." || n == ".." || n.contains('/') || n.contains('\0') {
        return Err(format!("the name {:?} cannot be a path component", n));
    }
    Ok(())
}
