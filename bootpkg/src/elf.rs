//! What `run` accepts as a boot binary: a static x86-64 ELF executable whose loadable
//! segments lie in the user half, page-aligned against their file offsets, inside the file,
//! without overlap, never both writable and executable, with the entry point in an executable
//! one. Parsing is the `elf` crate's; the checks are capmon's.
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;
use elf::endian::LittleEndian;
use elf::ElfBytes;

/// The lowest address a program may use (the first 4 MiB stay unmapped: null dereferences
/// fault) and the end of what its segments may use (its stack and arguments are above).
pub const USER_BASE: u64 = 0x40_0000;
pub const USER_TOP: u64 = 0x7f_0000_0000;
pub const PAGE: u64 = 4096;
pub const MAX_SEGMENTS: usize = 16;
/// The most memory a program's segments may take.
pub const MAX_IMAGE_BYTES: u64 = 32 << 20;
/// How much of the file's start `validate` is given: the ELF header and program headers must
/// lie in it.
pub const HEAD_BYTES: usize = 64 << 10;

const PT_LOAD: u32 = 1;
const PT_INTERP: u32 = 3;
const PT_DYNAMIC: u32 = 2;
const PF_X: u32 = 1;
const PF_W: u32 = 2;
const PF_R: u32 = 4;
const ET_EXEC: u16 = 2;
const EM_X86_64: u16 = 62;

/// One loadable segment: `memsz` bytes at `vaddr`, the first `filesz` from file `offset`, the
/// rest zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub vaddr: u64,
    pub memsz: u64,
    pub offset: u64,
    pub filesz: u64,
    pub read: bool,
    pub write: bool,
    pub exec: bool,
}

impl Segment {
    /// The pages it covers: `[first, end)`.
    pub fn pages(&self) -> (u64, u64) {
        (
            self.vaddr & !(PAGE - 1),
            (self.vaddr + self.memsz).next_multiple_of(PAGE),
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub entry: u64,
    pub segments: Vec<Segment>,
}

impl Image {
    pub fn memory(&self) -> u64 {
        self.segments
            .iter()
            .map(|s| {
                let (a, b) = s.pages();
                b - a
            })
            .sum()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElfError {
    Parse(String),
    Class,
    Type(u16),
    Machine(u16),
    Dynamic,
    NoSegments,
    TooManySegments(usize),
    Segment { index: usize, why: String },
    Overlap(usize, usize),
    TooLarge(u64),
    Entry(u64),
}

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ElfError::Parse(w) => write!(f, "not an ELF file: {}", w),
            ElfError::Class => write!(f, "not a 64-bit little-endian ELF"),
            ElfError::Type(t) => write!(f, "ELF type {} (only executables, ET_EXEC, run)", t),
            ElfError::Machine(m) => write!(f, "machine {} (not x86-64)", m),
            ElfError::Dynamic => write!(f, "dynamically linked (only static programs run)"),
            ElfError::NoSegments => write!(f, "no loadable segment"),
            ElfError::TooManySegments(n) => {
                write!(f, "{} loadable segments (at most {})", n, MAX_SEGMENTS)
            }
            ElfError::Segment { index, why } => write!(f, "segment {}: {}", index, why),
            ElfError::Overlap(a, b) => write!(f, "segments {} and {} share a page", a, b),
            ElfError::TooLarge(n) => {
                write!(f, "{} bytes of segments (at most {})", n, MAX_IMAGE_BYTES)
            }
            ElfError::Entry(e) => write!(f, "entry point {:#x} is not in an executable segment", e),
        }
    }
}

/// Checks the ELF whose first bytes are `head` (at least its headers; see HEAD_BYTES) and whose
/// file is `file_size` bytes; the segments to load.
pub fn validate(head: &[u8], file_size: u64) -> Result<Image, ElfError> {
    if head.len() < 64 || head[4] != 2 || head[5] != 1 {
        if head.len() >= 4 && &head[..4] != b"\x7fELF" {
            return Err(ElfError::Parse(String::from("no ELF magic")));
        }
        return Err(ElfError::Class);
    }
    // Sections play no part in loading: the copy parsed has none, so a section table past
    // `head` is not an error.
    let mut h = head.to_vec();
    h[0x28..0x30].fill(0); // e_shoff
    h[0x3c..0x40].fill(0); // e_shnum, e_shstrndx
    let file =
        ElfBytes::<LittleEndian>::minimal_parse(&h).map_err(|e| ElfError::Parse(e.to_string()))?;
    let eh = file.ehdr;
    if eh.e_type != ET_EXEC {
        return Err(ElfError::Type(eh.e_type));
    }
    if eh.e_machine != EM_X86_64 {
        return Err(ElfError::Machine(eh.e_machine));
    }
    let table = file.segments().ok_or(ElfError::NoSegments)?;
    let mut segments = Vec::new();
    for (i, ph) in table.iter().enumerate() {
        if ph.p_type == PT_INTERP || ph.p_type == PT_DYNAMIC {
            return Err(ElfError::Dynamic);
        }
        if ph.p_type != PT_LOAD {
            continue;
        }
        if segments.len() == MAX_SEGMENTS {
            return Err(ElfError::TooManySegments(table.len()));
        }
        let bad = |why: String| ElfError::Segment { index: i, why };
        if ph.p_memsz == 0 {
            continue;
        }
        if ph.p_filesz > ph.p_memsz {
            return Err(bad(format!(
                "{} bytes in the file but {} in memory",
                ph.p_filesz, ph.p_memsz
            )));
        }
        let end = ph.p_vaddr.checked_add(ph.p_memsz);
        if ph.p_vaddr < USER_BASE || end.is_none_or(|e| e > USER_TOP) {
            return Err(bad(format!(
                "{:#x}+{:#x} is outside the user range {:#x}..{:#x}",
                ph.p_vaddr, ph.p_memsz, USER_BASE, USER_TOP
            )));
        }
        if ph
            .p_offset
            .checked_add(ph.p_filesz)
            .is_none_or(|e| e > file_size)
        {
            return Err(bad(format!(
                "file bytes {}+{} are past the end of the file ({} bytes)",
                ph.p_offset, ph.p_filesz, file_size
            )));
        }
        if ph.p_vaddr % PAGE != ph.p_offset % PAGE {
            return Err(bad(format!(
                "address {:#x} and file offset {:#x} differ within a page",
                ph.p_vaddr, ph.p_offset
            )));
        }
        if ph.p_align > 1
            && (!ph.p_align.is_power_of_two()
                || ph.p_vaddr % ph.p_align != ph.p_offset % ph.p_align)
        {
            return Err(bad(format!("alignment {:#x}", ph.p_align)));
        }
        let s = Segment {
            vaddr: ph.p_vaddr,
            memsz: ph.p_memsz,
            offset: ph.p_offset,
            filesz: ph.p_filesz,
            read: ph.p_flags & PF_R != 0,
            write: ph.p_flags & PF_W != 0,
            exec: ph.p_flags & PF_X != 0,
        };
        if s.write && s.exec {
            return Err(bad(String::from("both writable and executable")));
        }
        segments.push(s);
    }
    if segments.is_empty() {
        return Err(ElfError::NoSegments);
    }
    for (i, a) in segments.iter().enumerate() {
        for (j, b) in segments.iter().enumerate().skip(i + 1) {
            let (a0, a1) = a.pages();
            let (b0, b1) = b.pages();
            if a0 < b1 && b0 < a1 {
                return Err(ElfError::Overlap(i, j));
            }
        }
    }
    let image = Image {
        entry: eh.e_entry,
        segments,
    };
    if image.memory() > MAX_IMAGE_BYTES {
        return Err(ElfError::TooLarge(image.memory()));
    }
    if !image
        .segments
        .iter()
        .any(|s| s.exec && eh.e_entry >= s.vaddr && eh.e_entry < s.vaddr + s.memsz)
    {
        return Err(ElfError::Entry(eh.e_entry));
    }
    Ok(image)
}
