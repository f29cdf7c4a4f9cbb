//! A read-only ISO 9660 (ECMA-119) reader over any `BlockDevice`.
//!
//! `Volume::open` reads the volume descriptors and decides how names are read (Rock Ridge, else
//! Joliet, else plain ISO 9660); `list`, `lookup`, `read` and `walk` take the device on every
//! call, so the caller keeps it (a shared device is borrowed per request). Nothing a disk says
//! is trusted: every extent is checked against the volume and the device before it is read,
//! sizes have limits, and a directory that contains one of its ancestors is `IsoError::Loop`.
#![no_std]

extern crate alloc;
#[cfg(test)]
extern crate std;

mod dir;
mod susp;
#[cfg(test)]
mod tests;

use alloc::collections::BTreeSet;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use capmon_block::{BlkError, BlockDevice};
use core::fmt;

pub use dir::{Entry, Extent, Kind};

/// Where the volume descriptors start (ECMA-119 §6.2.1: blocks 0-15 are the system area), in
/// 2048-byte units whatever the logical block size.
const DESCRIPTORS_AT: u64 = 16 * 2048;
/// A descriptor's size, always 2048 (§8.1).
const DESCRIPTOR_BYTES: usize = 2048;
/// How many descriptors are read before giving up on a terminator.
const MAX_DESCRIPTORS: u64 = 64;
/// Volume descriptor types (§8.1.1).
const VD_PRIMARY: u8 = 1;
const VD_SUPPLEMENTARY: u8 = 2;
const VD_TERMINATOR: u8 = 255;
/// The largest directory read (its records are all read into memory at once).
pub const MAX_DIR_BYTES: u64 = 8 << 20;
/// The deepest path followed (ECMA-119 allows 8 levels; Rock Ridge volumes go deeper).
pub const MAX_DEPTH: usize = 64;
/// The most extents one file may have (multi-extent files, §6.5.1).
pub const MAX_EXTENTS: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IsoError {
    Device(BlkError),
    /// No `CD001` descriptor at block 16: not an ISO 9660 volume.
    NotIso,
    /// The primary volume descriptor is missing or a field of it is impossible.
    BadPrimary(String),
    /// A directory record (or its System Use area) is malformed.
    BadRecord {
        dir: String,
        why: String,
    },
    /// An extent reaches past the end of the volume or the device.
    OutOfVolume {
        what: String,
        lba: u64,
        bytes: u64,
        blocks: u64,
    },
    /// A size over one of the limits above.
    TooLarge {
        what: String,
        bytes: u64,
        limit: u64,
    },
    /// A directory contains one of its own ancestors.
    Loop {
        path: String,
    },
    TooDeep {
        path: String,
    },
    NotFound(String),
    NotADirectory(String),
    IsADirectory(String),
    BadPath(String),
    Unsupported(String),
    NoMemory,
}

impl From<BlkError> for IsoError {
    fn from(e: BlkError) -> Self {
        match e {
            BlkError::NoMemory => IsoError::NoMemory,
            e => IsoError::Device(e),
        }
    }
}

impl fmt::Display for IsoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IsoError::Device(e) => write!(f, "device: {}", e),
            IsoError::NotIso => write!(
                f,
                "not an ISO 9660 volume (no CD001 descriptor at block 16)"
            ),
            IsoError::BadPrimary(w) => write!(f, "bad primary volume descriptor: {}", w),
            IsoError::BadRecord { dir, why } => {
                write!(f, "bad directory record in {}: {}", dir, why)
            }
            IsoError::OutOfVolume {
                what,
                lba,
                bytes,
                blocks,
            } => write!(
                f,
                "{}: extent at block {} of {} bytes is outside the volume ({} blocks)",
                what, lba, bytes, blocks
            ),
            IsoError::TooLarge { what, bytes, limit } => {
                write!(
                    f,
                    "{}: {} bytes is over the limit of {}",
                    what, bytes, limit
                )
            }
            IsoError::Loop { path } => {
                write!(f, "directory loop: {} contains one of its ancestors", path)
            }
            IsoError::TooDeep { path } => {
                write!(f, "{}: deeper than {} levels", path, MAX_DEPTH)
            }
            IsoError::NotFound(p) => write!(f, "{}: not found", p),
            IsoError::NotADirectory(p) => write!(f, "{}: not a directory", p),
            IsoError::IsADirectory(p) => write!(f, "{}: is a directory", p),
            IsoError::BadPath(w) => write!(f, "bad path: {}", w),
            IsoError::Unsupported(w) => write!(f, "unsupported: {}", w),
            IsoError::NoMemory => write!(f, "out of memory"),
        }
    }
}

/// How a volume's names are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Names {
    /// Rock Ridge `NM` entries in the primary directory records; `skip` is SUSP's `LEN_SKP`.
    RockRidge { skip: u8 },
    /// The Joliet supplementary descriptor's UCS-2 names.
    Joliet,
    /// Plain ISO 9660 identifiers, the `;1` version taken off.
    Iso,
}

impl fmt::Display for Names {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Names::RockRidge { .. } => "Rock Ridge",
            Names::Joliet => "Joliet",
            Names::Iso => "ISO 9660",
        })
    }
}

/// What the primary volume descriptor says, and how the volume is read.
#[derive(Debug, Clone)]
pub struct Volume {
    pub volume_id: String,
    pub system_id: String,
    pub publisher: String,
    pub application: String,
    /// `YYYY-MM-DD HH:MM:SS` from the creation date, if it has one.
    pub created: Option<String>,
    /// Logical block size in bytes (2048 on every CD).
    pub block: u32,
    /// Volume space size, in logical blocks.
    pub blocks: u64,
    pub names: Names,
    /// Whether the volume also has a Joliet tree (used only when there is no Rock Ridge).
    pub has_joliet: bool,
    root: Entry,
    /// The device's size in bytes, checked again by every read.
    device_bytes: u64,
}

impl Volume {
    /// Reads the descriptors of the volume on `dev`.
    pub fn open(dev: &mut dyn BlockDevice) -> Result<Volume, IsoError> {
        let device_bytes = dev
            .capacity()
            .checked_mul(u64::from(dev.sector_size()))
            .ok_or(IsoError::NotIso)?;
        let mut pvd: Option<Vec<u8>> = None;
        let mut joliet: Option<Vec<u8>> = None;
        for i in 0..MAX_DESCRIPTORS {
            let at = DESCRIPTORS_AT + i * DESCRIPTOR_BYTES as u64;
            if at + DESCRIPTOR_BYTES as u64 > device_bytes {
                if i == 0 {
                    return Err(IsoError::NotIso);
                }
                break;
            }
            let mut d = vec![0u8; DESCRIPTOR_BYTES];
            read_at(dev, at, &mut d)?;
            if &d[1..6] != b"CD001" {
                if i == 0 {
                    return Err(IsoError::NotIso);
                }
                break;
            }
            match d[0] {
                VD_TERMINATOR => break,
                VD_PRIMARY if pvd.is_none() => pvd = Some(d),
                VD_SUPPLEMENTARY if joliet.is_none() && is_joliet(&d) => joliet = Some(d),
                _ => {}
            }
        }
        let pvd = pvd.ok_or_else(|| {
            IsoError::BadPrimary(String::from("there is none before the terminator"))
        })?;
        let (block, blocks, root) = parse_descriptor(&pvd, device_bytes, false)?;
        let mut v = Volume {
            volume_id: a_string(&pvd[40..72]),
            system_id: a_string(&pvd[8..40]),
            publisher: a_string(&pvd[318..446]),
            application: a_string(&pvd[574..702]),
            created: dec_datetime(&pvd[813..830]),
            block,
            blocks,
            names: Names::Iso,
            has_joliet: joliet.is_some(),
            root,
            device_bytes,
        };
        // Rock Ridge: the root's "." record starts its System Use area with SUSP's SP entry
        // (SUSP 1.12 §5.3); RRIP then marks it with an RR or ER entry, or at least NM/PX ones.
        let dot = v.first_record(dev, &v.root.clone())?;
        if let Some(skip) = susp::sp_skip(&dot) {
            v.names = Names::RockRidge { skip };
        } else if let Some(j) = joliet {
            match parse_descriptor(&j, device_bytes, true) {
                Ok((jb, _, jroot)) if jb == block => {
                    v.names = Names::Joliet;
                    v.root = jroot;
                }
                // A broken Joliet tree falls back to the primary one's names.
                _ => v.has_joliet = false,
            }
        }
        Ok(v)
    }

    /// The root directory.
    pub fn root(&self) -> Entry {
        self.root.clone()
    }

    /// The volume's size in bytes.
    pub fn bytes(&self) -> u64 {
        self.blocks * u64::from(self.block)
    }

    /// The entries of directory `d` (`.` and `..` left out; Rock Ridge relocated ones too), in
    /// the order they are recorded. `path` names `d` in errors.
    pub fn list(
        &self,
        dev: &mut dyn BlockDevice,
        d: &Entry,
        path: &str,
    ) -> Result<Vec<Entry>, IsoError> {
        if d.kind != Kind::Dir {
            return Err(IsoError::NotADirectory(path.to_string()));
        }
        let data = self.read_dir(dev, d, path)?;
        dir::parse(self, dev, &data, path)
    }

    /// The entry at `path` (`/`-separated, from the root; `/` alone is the root). `.`, `..`
    /// and empty components other than a leading or trailing `/` are refused.
    pub fn lookup(&self, dev: &mut dyn BlockDevice, path: &str) -> Result<Entry, IsoError> {
        let mut cur = self.root();
        let mut ancestors: Vec<u64> = vec![cur.lba()];
        let mut walked = String::new();
        for comp in components(path)? {
            if ancestors.len() > MAX_DEPTH {
                return Err(IsoError::TooDeep { path: walked });
            }
            let parent = if walked.is_empty() { "/" } else { &walked };
            let list = self.list(dev, &cur, parent)?;
            walked.push('/');
            walked.push_str(comp);
            cur = list
                .into_iter()
                .find(|e| self.name_matches(&e.name, comp))
                .ok_or_else(|| IsoError::NotFound(walked.clone()))?;
            if cur.kind == Kind::Dir {
                if ancestors.contains(&cur.lba()) {
                    return Err(IsoError::Loop { path: walked });
                }
                ancestors.push(cur.lba());
            }
        }
        Ok(cur)
    }

    /// Reads file `f` from byte `off` into `buf`; returns how many bytes were read (fewer
    /// than `buf.len()` only at the end of the file).
    pub fn read(
        &self,
        dev: &mut dyn BlockDevice,
        f: &Entry,
        off: u64,
        buf: &mut [u8],
    ) -> Result<usize, IsoError> {
        if f.kind == Kind::Dir {
            return Err(IsoError::IsADirectory(f.name.clone()));
        }
        let mut done = 0usize;
        let mut base = 0u64; // file offset where the current extent starts
        for x in &f.extents {
            let len = u64::from(x.len);
            let want = off + done as u64;
            if done == buf.len() {
                break;
            }
            if want < base + len {
                self.check_extent(&|| f.name.clone(), x.lba, len)?;
                let within = want - base;
                let n = ((len - within) as usize).min(buf.len() - done);
                let at = x.lba * u64::from(self.block) + within;
                read_at(dev, at, &mut buf[done..done + n])?;
                done += n;
            }
            base += len;
        }
        Ok(done)
    }

    /// Every entry under the root, depth first in recorded order, as `(path, entry)`;
    /// `f` returns false to stop. A directory met twice is `Loop`.
    pub fn walk(
        &self,
        dev: &mut dyn BlockDevice,
        f: &mut dyn FnMut(&str, &Entry) -> bool,
    ) -> Result<(), IsoError> {
        let mut seen = BTreeSet::new();
        seen.insert(self.root.lba());
        self.walk_dir(dev, &self.root(), "", 0, &mut seen, f)
            .map(|_| ())
    }

    fn walk_dir(
        &self,
        dev: &mut dyn BlockDevice,
        d: &Entry,
        path: &str,
        depth: usize,
        seen: &mut BTreeSet<u64>,
        f: &mut dyn FnMut(&str, &Entry) -> bool,
    ) -> Result<bool, IsoError> {
        if depth >= MAX_DEPTH {
            return Err(IsoError::TooDeep {
                path: path.to_string(),
            });
        }
        let shown = if path.is_empty() { "/" } else { path };
        for e in self.list(dev, d, shown)? {
            let p = alloc::format!("{}/{}", path, e.name);
            if !f(&p, &e) {
                return Ok(false);
            }
            if e.kind == Kind::Dir {
                if !seen.insert(e.lba()) {
                    return Err(IsoError::Loop { path: p });
                }
                if !self.walk_dir(dev, &e, &p, depth + 1, seen, f)? {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// Plain ISO names are upper case on disk and matched without regard to case; Rock Ridge
    /// and Joliet names exactly.
    fn name_matches(&self, name: &str, want: &str) -> bool {
        match self.names {
            Names::Iso => name.eq_ignore_ascii_case(want),
            _ => name == want,
        }
    }

    /// The whole of directory `d`'s extent, checked.
    fn read_dir(
        &self,
        dev: &mut dyn BlockDevice,
        d: &Entry,
        path: &str,
    ) -> Result<Vec<u8>, IsoError> {
        if d.size > MAX_DIR_BYTES {
            return Err(IsoError::TooLarge {
                what: alloc::format!("directory {}", path),
                bytes: d.size,
                limit: MAX_DIR_BYTES,
            });
        }
        let x = d
            .extents
            .first()
            .copied()
            .unwrap_or(Extent { lba: 0, len: 0 });
        self.check_extent(
            &|| alloc::format!("directory {}", path),
            x.lba,
            u64::from(x.len),
        )?;
        let mut data = Vec::new();
        data.try_reserve_exact(x.len as usize)
            .map_err(|_| IsoError::NoMemory)?;
        data.resize(x.len as usize, 0);
        read_at(dev, x.lba * u64::from(self.block), &mut data)?;
        Ok(data)
    }

    /// The first record of directory `d` (its `.`), for the SUSP `SP` check.
    fn first_record(&self, dev: &mut dyn BlockDevice, d: &Entry) -> Result<Vec<u8>, IsoError> {
        let mut b = vec![0u8; (self.block as usize).min(d.size as usize)];
        read_at(dev, d.lba() * u64::from(self.block), &mut b)?;
        let len = usize::from(*b.first().unwrap_or(&0));
        if len < dir::RECORD_MIN || len > b.len() {
            return Err(IsoError::BadRecord {
                dir: String::from("/"),
                why: alloc::format!("the root's first record has a length of {}", len),
            });
        }
        b.truncate(len);
        Ok(b)
    }

    /// Checks that `bytes` from block `lba` lie inside the volume and the device.
    fn check_extent(
        &self,
        what: &dyn Fn() -> String,
        lba: u64,
        bytes: u64,
    ) -> Result<(), IsoError> {
        check_extent(what, lba, bytes, self.block, self.blocks, self.device_bytes)
    }
}

fn check_extent(
    what: &dyn Fn() -> String,
    lba: u64,
    bytes: u64,
    block: u32,
    blocks: u64,
    device_bytes: u64,
) -> Result<(), IsoError> {
    if bytes == 0 {
        return Ok(());
    }
    let b = u64::from(block);
    let end = lba
        .checked_add(bytes.div_ceil(b))
        .filter(|e| *e <= blocks && e.saturating_mul(b) <= device_bytes.next_multiple_of(b));
    if end.is_none() {
        return Err(IsoError::OutOfVolume {
            what: what(),
            lba,
            bytes,
            blocks,
        });
    }
    Ok(())
}

/// The components of an absolute or relative path, refusing `.`, `..` and empty ones inside.
pub fn components(path: &str) -> Result<Vec<&str>, IsoError> {
    let p = path.strip_prefix('/').unwrap_or(path);
    let p = p.strip_suffix('/').unwrap_or(p);
    if p.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for c in p.split('/') {
        match c {
            "" => {
                return Err(IsoError::BadPath(alloc::format!(
                    "'{}' has an empty component",
                    path
                )))
            }
            "." | ".." => {
                return Err(IsoError::BadPath(alloc::format!(
                    "'{}': '{}' is not allowed",
                    path,
                    c
                )))
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

/// A supplementary descriptor is Joliet's if its escape sequences name UCS-2 level 1, 2 or 3
/// (`%/@`, `%/C`, `%/E`; Joliet spec §2).
fn is_joliet(d: &[u8]) -> bool {
    let esc = &d[88..120];
    esc.windows(3)
        .any(|w| w[0] == b'%' && w[1] == b'/' && matches!(w[2], b'@' | b'C' | b'E'))
}

/// The checked fields of a primary (or Joliet) descriptor: block size, volume blocks, root.
fn parse_descriptor(
    d: &[u8],
    device_bytes: u64,
    joliet: bool,
) -> Result<(u32, u64, Entry), IsoError> {
    let bad = |w: String| {
        if joliet {
            IsoError::Unsupported(alloc::format!("Joliet descriptor: {}", w))
        } else {
            IsoError::BadPrimary(w)
        }
    };
    if d[6] != 1 {
        return Err(bad(alloc::format!("version {}, not 1", d[6])));
    }
    let blocks = both32(&d[80..88]).ok_or_else(|| {
        bad(String::from(
            "volume space size: its two byte orders differ",
        ))
    })?;
    let block = both16(&d[128..132]).ok_or_else(|| {
        bad(String::from(
            "logical block size: its two byte orders differ",
        ))
    })?;
    if !(512..=2048).contains(&block) || !block.is_power_of_two() {
        return Err(bad(alloc::format!(
            "logical block size {} (512, 1024 or 2048)",
            block
        )));
    }
    let blocks = u64::from(blocks);
    let first = DESCRIPTORS_AT / u64::from(block) + 1;
    if blocks <= first {
        return Err(bad(alloc::format!(
            "volume space of {} blocks cannot hold its own descriptors",
            blocks
        )));
    }
    if blocks * u64::from(block) > device_bytes {
        return Err(bad(alloc::format!(
            "volume space of {} blocks ({} bytes) is larger than the device ({} bytes)",
            blocks,
            blocks * u64::from(block),
            device_bytes
        )));
    }
    let rec = &d[156..190];
    if rec[0] != 34 || rec[32] != 1 || rec[33] != 0 {
        return Err(bad(String::from("the root directory record is malformed")));
    }
    let root = dir::plain_entry(rec, String::from("/"))
        .map_err(|w| bad(alloc::format!("root directory record: {}", w)))?;
    if root.kind != Kind::Dir {
        return Err(bad(String::from(
            "the root directory record is not a directory",
        )));
    }
    if root.size == 0 || !root.size.is_multiple_of(u64::from(block)) {
        return Err(bad(alloc::format!("root directory of {} bytes", root.size)));
    }
    check_extent(
        &|| String::from("root directory"),
        root.lba(),
        root.size,
        block,
        blocks,
        device_bytes,
    )
    .map_err(|e| bad(e.to_string()))?;
    Ok((block, blocks, root))
}

/// A both-byte-order 32-bit field (ECMA-119 §7.3.3), None if the halves disagree.
fn both32(b: &[u8]) -> Option<u32> {
    let le = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let be = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
    (le == be).then_some(le)
}

/// A both-byte-order 16-bit field (§7.2.3).
fn both16(b: &[u8]) -> Option<u32> {
    let le = u16::from_le_bytes([b[0], b[1]]);
    let be = u16::from_be_bytes([b[2], b[3]]);
    (le == be).then_some(u32::from(le))
}

/// A d- or a-character field: trailing spaces off, anything unprintable shown as `?`.
fn a_string(b: &[u8]) -> String {
    let s: String = b
        .iter()
        .map(|&c| {
            if (0x20..0x7f).contains(&c) {
                c as char
            } else {
                '?'
            }
        })
        .collect();
    s.trim_end_matches([' ', '?']).to_string()
}

/// A 17-byte decimal date and time (§8.4.26.1), None when it is all zeros or not digits.
fn dec_datetime(b: &[u8]) -> Option<String> {
    let d = &b[..14];
    if !d.iter().all(u8::is_ascii_digit) || d.iter().all(|c| *c == b'0') {
        return None;
    }
    let s = core::str::from_utf8(d).ok()?;
    Some(alloc::format!(
        "{}-{}-{} {}:{}:{}",
        &s[0..4],
        &s[4..6],
        &s[6..8],
        &s[8..10],
        &s[10..12],
        &s[12..14]
    ))
}

/// Reads `buf.len()` bytes from byte `at` of `dev`, whatever its sector size: whole sectors
/// straight into `buf`, a partial one at either end through a bounce buffer.
pub fn read_at(dev: &mut dyn BlockDevice, at: u64, buf: &mut [u8]) -> Result<(), IsoError> {
    // Nothing to read is nothing to check: an empty extent may name any block (the fuzzer
    // found a zero-length directory at a block past the device).
    if buf.is_empty() {
        return Ok(());
    }
    let ss = u64::from(dev.sector_size());
    let end = at
        .checked_add(buf.len() as u64)
        .filter(|e| *e <= dev.capacity().saturating_mul(ss))
        .ok_or(IsoError::Device(BlkError::OutOfRange {
            lba: at / ss,
            count: (buf.len() as u64).div_ceil(ss),
            capacity: dev.capacity(),
        }))?;
    let mut pos = at;
    let mut done = 0usize;
    let mut bounce: Vec<u8> = Vec::new();
    while pos < end {
        let lba = pos / ss;
        let within = (pos % ss) as usize;
        if within == 0 && end - pos >= ss {
            let whole = ((end - pos) / ss * ss) as usize;
            dev.read(lba, &mut buf[done..done + whole])?;
            pos += whole as u64;
            done += whole;
        } else {
            if bounce.is_empty() {
                bounce
                    .try_reserve_exact(ss as usize)
                    .map_err(|_| IsoError::NoMemory)?;
                bounce.resize(ss as usize, 0);
            }
            dev.read(lba, &mut bounce)?;
            let n = (ss as usize - within).min((end - pos) as usize);
            buf[done..done + n].copy_from_slice(&bounce[within..within + n]);
            pos += n as u64;
            done += n;
        }
    }
    Ok(())
}
