//! The System Use Sharing Protocol (SUSP 1.12) and the Rock Ridge entries read from it
//! (RRIP 1.12): names (`NM`), POSIX modes (`PX`), symbolic links (`SL`), relocated
//! directories (`CL`, `RE`).
use crate::{read_at, IsoError, Volume};
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use capmon_block::BlockDevice;

/// POSIX file type bits of `PX`'s mode.
pub const S_IFMT: u32 = 0o170_000;
pub const S_IFLNK: u32 = 0o120_000;
/// How many continuation areas (`CE`) one record may chain.
const MAX_CONTINUATIONS: usize = 16;
/// The longest name or link target put together from `NM`/`SL` pieces.
const MAX_NAME_BYTES: usize = 4096;

/// What a record's Rock Ridge entries say.
#[derive(Default, Debug)]
pub struct RockRidge {
    pub name: Option<String>,
    pub mode: Option<u32>,
    pub target: Option<String>,
    /// `RE`: this is a relocated directory, listed where its `CL` is.
    pub relocated: bool,
    /// `CL`: the directory this record stands for is at this block.
    pub child: Option<u64>,
}

/// SUSP's `SP` entry at the start of the root's "." System Use area (§5.3): its `LEN_SKP`.
/// `dot` is the whole "." record (its identifier is one byte, so the area starts at 34).
pub fn sp_skip(dot: &[u8]) -> Option<u8> {
    let sp = dot.get(34..41)?;
    (sp[0..2] == *b"SP" && sp[2] == 7 && sp[3] == 1 && sp[4] == 0xbe && sp[5] == 0xef)
        .then_some(sp[6])
}

/// The Rock Ridge entries of one System Use area `sua` (LEN_SKP already skipped), following
/// continuation areas; `dir` names the directory in errors.
pub fn rock_ridge(
    v: &Volume,
    dev: &mut dyn BlockDevice,
    sua: &[u8],
    dir: &str,
) -> Result<RockRidge, IsoError> {
    let bad = |why: String| IsoError::BadRecord {
        dir: String::from(dir),
        why,
    };
    let mut rr = RockRidge::default();
    let mut name: Vec<u8> = Vec::new();
    let mut link = Link::default();
    let mut area: Vec<u8> = Vec::from(sua);
    let mut hops = 0;
    loop {
        let mut next: Option<(u64, u64, u64)> = None;
        let mut p = 0usize;
        while p + 4 <= area.len() {
            let (sig, len, _ver) = (
                [area[p], area[p + 1]],
                usize::from(area[p + 2]),
                area[p + 3],
            );
            if len == 0 && sig == [0, 0] {
                break; // zero padding to the end of the area
            }
            if len < 4 || p + len > area.len() {
                return Err(bad(format!(
                    "a System Use entry {:?} of length {} at byte {} of an area of {}",
                    String::from_utf8_lossy(&sig),
                    len,
                    p,
                    area.len()
                )));
            }
            let e = &area[p..p + len];
            p += len;
            match &sig {
                b"ST" => break,
                b"CE" if len >= 28 => {
                    let f = |o: usize| {
                        u64::from(u32::from_le_bytes([e[o], e[o + 1], e[o + 2], e[o + 3]]))
                    };
                    next = Some((f(4), f(12), f(20)));
                }
                b"NM" if len >= 5 => {
                    // Flags: CONTINUE 1, CURRENT 2, PARENT 4 (RRIP §4.1.4); the last two only
                    // on "." and "..", which are never asked for.
                    if e[4] & 0x06 == 0 {
                        name.extend_from_slice(&e[5..]);
                        if name.len() > MAX_NAME_BYTES {
                            return Err(bad(format!(
                                "a Rock Ridge name over {} bytes",
                                MAX_NAME_BYTES
                            )));
                        }
                    }
                }
                b"PX" if len >= 12 => {
                    rr.mode = Some(u32::from_le_bytes([e[4], e[5], e[6], e[7]]));
                }
                b"SL" if len >= 5 => {
                    link.add(&e[5..]).map_err(bad)?;
                }
                b"CL" if len >= 12 => {
                    rr.child = Some(u64::from(u32::from_le_bytes([e[4], e[5], e[6], e[7]])));
                }
                b"RE" => rr.relocated = true,
                _ => {} // RR, ER, PN, TF, SF, ES and the rest: nothing capmon shows
            }
        }
        let Some((lba, off, len)) = next else { break };
        hops += 1;
        if hops > MAX_CONTINUATIONS {
            return Err(bad(format!(
                "more than {} System Use continuation areas",
                MAX_CONTINUATIONS
            )));
        }
        let b = u64::from(v.block);
        if len == 0 || off + len > b {
            return Err(bad(format!(
                "a continuation area of {} bytes at offset {} of a {}-byte block",
                len, off, b
            )));
        }
        v.check_extent(&|| String::from("a System Use continuation area"), lba, b)?;
        area = vec![0u8; len as usize];
        read_at(dev, lba * b + off, &mut area)?;
    }
    if !name.is_empty() {
        rr.name = Some(String::from_utf8_lossy(&name).into_owned());
    }
    rr.target = link.done();
    Ok(rr)
}

/// A symbolic link's target put together from `SL` component records (RRIP §4.1.3.1).
#[derive(Default)]
struct Link {
    target: Option<String>,
    /// The previous component continues in the next one (no `/` between).
    cont: bool,
}

impl Link {
    fn add(&mut self, mut comps: &[u8]) -> Result<(), String> {
        let t = self.target.get_or_insert_with(String::new);
        while comps.len() >= 2 {
            let (flags, len) = (comps[0], usize::from(comps[1]));
            let text = comps.get(2..2 + len).ok_or_else(|| {
                format!("a symbolic link component of {} bytes past its entry", len)
            })?;
            comps = &comps[2 + len..];
            if flags & 0x08 != 0 {
                // ROOT
                t.clear();
                t.push('/');
                self.cont = false;
                continue;
            }
            if !self.cont && !t.is_empty() && !t.ends_with('/') {
                t.push('/');
            }
            if flags & 0x02 != 0 {
                t.push('.');
            } else if flags & 0x04 != 0 {
                t.push_str("..");
            } else {
                t.push_str(&String::from_utf8_lossy(text));
            }
            self.cont = flags & 0x01 != 0;
            if t.len() > MAX_NAME_BYTES {
                return Err(format!(
                    "a symbolic link target over {} bytes",
                    MAX_NAME_BYTES
                ));
            }
        }
        Ok(())
    }

    fn done(self) -> Option<String> {
        self.target
    }
}
