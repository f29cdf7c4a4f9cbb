//! GUID Partition Table reading (UEFI 2.10 §5.2 protective MBR, §5.3 GPT).
//!
//! `read` checks the protective MBR, then the primary header at LBA 1 (header CRC32, entry-array
//! CRC32, geometry); when the primary copy is unusable it falls back to the backup header at the
//! last LBA and says why in `Gpt::primary_error`. Nothing a disk contains can make it panic.
use crate::{BlkError, BlockDevice};
use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// A GUID as stored on disk: the first three fields little-endian (UEFI 2.10 Appendix A).
#[derive(Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Guid(pub [u8; 16]);

/// Position of each on-disk byte in the text form's byte order (mixed endian, Appendix A).
const TEXT_ORDER: [usize; 16] = [3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15];

impl Guid {
    pub const ZERO: Guid = Guid([0; 16]);

    /// Parses the canonical text form `c12a7328-f81f-11d2-ba4b-00a0c93ec93b` (any case).
    pub const fn parse(s: &str) -> Option<Guid> {
        let b = s.as_bytes();
        if b.len() != 36 || b[8] != b'-' || b[13] != b'-' || b[18] != b'-' || b[23] != b'-' {
            return None;
        }
        let mut text = [0u8; 16];
        let (mut i, mut n) = (0, 0);
        while i < 36 {
            if i == 8 || i == 13 || i == 18 || i == 23 {
                i += 1;
                continue;
            }
            let d = match b[i] {
                c @ b'0'..=b'9' => c - b'0',
                c @ b'a'..=b'f' => c - b'a' + 10,
                c @ b'A'..=b'F' => c - b'A' + 10,
                _ => return None,
            };
            text[n / 2] |= d << if n % 2 == 0 { 4 } else { 0 };
            n += 1;
            i += 1;
        }
        let mut disk = [0u8; 16];
        let mut k = 0;
        while k < 16 {
            disk[k] = text[TEXT_ORDER[k]];
            k += 1;
        }
        Some(Guid(disk))
    }

    pub fn is_zero(&self) -> bool {
        self.0 == [0; 16]
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (pos, &k) in TEXT_ORDER.iter().enumerate() {
            if matches!(pos, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            // TEXT_ORDER is a permutation of 0..16, so `k` is in range.
            write!(f, "{:02x}", self.0[k])?;
        }
        Ok(())
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A GUID constant from its text form; a typo is a compile error.
const fn known(s: &str) -> Guid {
    match Guid::parse(s) {
        Some(g) => g,
        None => panic!("malformed GUID constant"),
    }
}

/// Partition type GUIDs we name (UEFI 2.10 Table 5.7 and the Discoverable Partitions Spec).
pub const EFI_SYSTEM: Guid = known("c12a7328-f81f-11d2-ba4b-00a0c93ec93b");
pub const BIOS_BOOT: Guid = known("21686148-6449-6e6f-744e-656564454649");
pub const MICROSOFT_BASIC_DATA: Guid = known("ebd0a0a2-b9e5-4433-87c0-68b6b72699c7");
pub const LINUX_FILESYSTEM: Guid = known("0fc63daf-8483-4772-8e79-3d69d8477de4");
pub const LINUX_SWAP: Guid = known("0657fd6d-a4ab-43c4-84e5-0933c84b4f4f");
pub const LINUX_LVM: Guid = known("e6d6d379-f507-44c2-a23c-238f2a3df928");
/// capmon's own data partition type (the tail spells "capmon" in ASCII).
pub const CAPMON_DATA: Guid = known("c0a9d47a-3f1e-4b8b-9a43-6361706d6f6e");

const KNOWN_TYPES: [(Guid, &str); 7] = [
    (EFI_SYSTEM, "EFI System"),
    (BIOS_BOOT, "BIOS boot"),
    (MICROSOFT_BASIC_DATA, "Microsoft basic data"),
    (LINUX_FILESYSTEM, "Linux filesystem"),
    (LINUX_SWAP, "Linux swap"),
    (LINUX_LVM, "Linux LVM"),
    (CAPMON_DATA, "capmon data"),
];

/// The name of a well-known partition type, if we know it.
pub fn type_name(g: &Guid) -> Option<&'static str> {
    KNOWN_TYPES.iter().find(|(k, _)| k == g).map(|(_, n)| *n)
}

/// "EFI PART" (UEFI 2.10 Table 5.5).
const SIGNATURE: &[u8; 8] = b"EFI PART";
/// Revision 1.0; the major number must be 1, later minors are compatible.
const REVISION_MAJOR: u32 = 0x0001_0000;
/// The header fields we read end at byte 92 (Table 5.5).
const MIN_HEADER_SIZE: u32 = 92;
/// Entries are 128 × 2^n bytes (§5.3.3).
const MIN_ENTRY_SIZE: u32 = 128;
/// The largest entry array we are willing to read: 1 MiB (8192 entries of 128 bytes). The
/// spec's minimum is 16 KiB; larger arrays exist nowhere in practice.
const MAX_ENTRY_ARRAY_BYTES: u64 = 1 << 20;
/// Protective MBR: boot signature at 510 (0x55 0xaa), four 16-byte entries at 446 whose type
/// byte (offset 4) is 0xee for the GPT protective partition (§5.2.3).
const MBR_SIGNATURE_OFFSET: usize = 510;
const MBR_ENTRIES_OFFSET: usize = 446;
const MBR_TYPE_GPT_PROTECTIVE: u8 = 0xee;
/// UTF-16LE name: 36 code units at byte 56 of an entry (Table 5.6).
const NAME_OFFSET: usize = 56;
const NAME_UNITS: usize = 36;

/// Why a partition entry was not exposed as a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryProblem {
    /// Its last LBA is below its first.
    Reversed,
    /// It reaches outside the header's usable LBA range.
    OutsideUsable,
    /// It overlaps the partition with this entry number.
    Overlaps(u32),
}

impl fmt::Display for EntryProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EntryProblem::Reversed => f.write_str("last LBA below first LBA"),
            EntryProblem::OutsideUsable => f.write_str("outside the usable LBA range"),
            EntryProblem::Overlaps(n) => write!(f, "overlaps partition {}", n),
        }
    }
}

/// Why a GPT (or one copy of it) could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GptError {
    /// The sector size is not a power of two of at least 512 bytes.
    BadSectorSize(u32),
    /// The device has too few sectors to hold a GPT.
    TooSmall {
        sectors: u64,
    },
    /// LBA 0 has no protective MBR: no GPT on this device.
    NoProtectiveMbr,
    /// No "EFI PART" signature at this LBA.
    NoSignature {
        lba: u64,
    },
    BadRevision {
        lba: u64,
        revision: u32,
    },
    BadHeaderSize {
        lba: u64,
        size: u32,
    },
    HeaderCrc {
        lba: u64,
        stored: u32,
        computed: u32,
    },
    /// The header's own LBA field does not say where we found it.
    WrongMyLba {
        lba: u64,
        found: u64,
    },
    BadUsableRange {
        lba: u64,
        first: u64,
        last: u64,
    },
    BadEntryGeometry {
        lba: u64,
        count: u32,
        size: u32,
    },
    /// The entry array is outside the device or overlaps the header or the usable range.
    BadEntryArray {
        lba: u64,
        array_lba: u64,
        sectors: u64,
    },
    EntriesCrc {
        lba: u64,
        stored: u32,
        computed: u32,
    },
    /// Reading the device failed.
    Io(BlkError),
    /// Neither copy is usable.
    BothInvalid {
        primary: Box<GptError>,
        backup: Box<GptError>,
    },
}

impl GptError {
    /// True when the device simply has no GPT (as opposed to a damaged one).
    pub fn is_absent(&self) -> bool {
        match self {
            GptError::NoProtectiveMbr | GptError::TooSmall { .. } => true,
            GptError::BothInvalid { primary, backup } => {
                matches!(**primary, GptError::NoSignature { .. })
                    && matches!(**backup, GptError::NoSignature { .. })
            }
            _ => false,
        }
    }
}

impl fmt::Display for GptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GptError::BadSectorSize(s) => write!(f, "unsupported sector size {}", s),
            GptError::TooSmall { sectors } => write!(f, "device too small for a GPT ({} sectors)", sectors),
            GptError::NoProtectiveMbr => f.write_str("no protective MBR at LBA 0"),
            GptError::NoSignature { lba } => write!(f, "no GPT header at LBA {}", lba),
            GptError::BadRevision { lba, revision } => {
                write!(f, "GPT header at LBA {}: unsupported revision {:#010x}", lba, revision)
            }
            GptError::BadHeaderSize { lba, size } => {
                write!(f, "GPT header at LBA {}: bad header size {}", lba, size)
            }
            GptError::HeaderCrc { lba, stored, computed } => write!(
                f,
                "GPT header at LBA {}: header CRC mismatch (stored {:#010x}, computed {:#010x})",
                lba, stored, computed
            ),
            GptError::WrongMyLba { lba, found } => {
                write!(f, "GPT header at LBA {}: says it is at LBA {}", lba, found)
            }
            GptError::BadUsableRange { lba, first, last } => {
                write!(f, "GPT header at LBA {}: bad usable range {}..={}", lba, first, last)
            }
            GptError::BadEntryGeometry { lba, count, size } => {
                write!(f, "GPT header at LBA {}: bad entry array ({} entries of {} bytes)", lba, count, size)
            }
            GptError::BadEntryArray { lba, array_lba, sectors } => write!(
                f,
                "GPT header at LBA {}: entry array at LBA {} ({} sectors) is misplaced",
                lba, array_lba, sectors
            ),
            GptError::EntriesCrc { lba, stored, computed } => write!(
                f,
                "GPT header at LBA {}: entry array CRC mismatch (stored {:#010x}, computed {:#010x})",
                lba, stored, computed
            ),
            GptError::Io(e) => write!(f, "read failed: {}", e),
            GptError::BothInvalid { primary, backup } if self.is_absent() => match **backup {
                GptError::NoSignature { lba } => write!(f, "no GPT header at LBA 1 or at LBA {}", lba),
                _ => write!(f, "no GPT header ({}; {})", primary, backup),
            },
            GptError::BothInvalid { primary, backup } => {
                write!(f, "primary and backup GPT both invalid (primary: {}; backup: {})", primary, backup)
            }
        }
    }
}

impl From<BlkError> for GptError {
    fn from(e: BlkError) -> Self {
        GptError::Io(e)
    }
}

/// The fields of a GPT header (UEFI 2.10 Table 5.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GptHeader {
    pub revision: u32,
    pub header_size: u32,
    pub my_lba: u64,
    pub alternate_lba: u64,
    pub first_usable: u64,
    pub last_usable: u64,
    pub disk_guid: Guid,
    pub entries_lba: u64,
    pub num_entries: u32,
    pub entry_size: u32,
    pub entries_crc: u32,
}

/// One used partition entry (UEFI 2.10 Table 5.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GptPartition {
    /// 1-based entry number: the `N` in `vdaN`.
    pub number: u32,
    pub type_guid: Guid,
    pub unique_guid: Guid,
    pub first_lba: u64,
    /// Inclusive.
    pub last_lba: u64,
    pub attributes: u64,
    pub name: String,
}

impl GptPartition {
    pub fn sectors(&self) -> u64 {
        self.last_lba - self.first_lba + 1
    }

    /// The well-known name of the type, if any.
    pub fn type_name(&self) -> Option<&'static str> {
        type_name(&self.type_guid)
    }
}

/// A GPT as read from a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gpt {
    /// The header the table was taken from (primary, or backup if `primary_error` is set).
    pub header: GptHeader,
    /// Usable partitions, in entry order.
    pub partitions: Vec<GptPartition>,
    /// Why the primary copy was rejected, when the table came from the backup.
    pub primary_error: Option<GptError>,
    /// Used entries that are not exposed, with the reason.
    pub skipped: Vec<(u32, EntryProblem)>,
}

/// Reads the GPT of `dev`: primary first, backup at the last LBA if the primary is unusable.
pub fn read(dev: &mut dyn BlockDevice) -> Result<Gpt, GptError> {
    let ss = dev.sector_size();
    if ss < 512 || !ss.is_power_of_two() {
        return Err(GptError::BadSectorSize(ss));
    }
    let capacity = dev.capacity();
    // pMBR, primary header, one entry sector, backup header at the very least.
    if capacity < 4 {
        return Err(GptError::TooSmall { sectors: capacity });
    }
    let mut sector = zeroed(ss as u64)?;
    dev.read(0, &mut sector)?;
    if !has_protective_mbr(&sector) {
        return Err(GptError::NoProtectiveMbr);
    }
    let primary = match read_copy(dev, 1, &mut sector) {
        Ok(g) => return Ok(g),
        Err(e) => e,
    };
    match read_copy(dev, capacity - 1, &mut sector) {
        Ok(mut g) => {
            g.primary_error = Some(primary);
            Ok(g)
        }
        Err(backup) => Err(GptError::BothInvalid {
            primary: Box::new(primary),
            backup: Box::new(backup),
        }),
    }
}

/// A zeroed buffer of `len` bytes, or `NoMemory` instead of aborting.
fn zeroed(len: u64) -> Result<Vec<u8>, BlkError> {
    let len = usize::try_from(len).map_err(|_| BlkError::NoMemory)?;
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|_| BlkError::NoMemory)?;
    v.resize(len, 0);
    Ok(v)
}

fn has_protective_mbr(lba0: &[u8]) -> bool {
    if lba0.get(MBR_SIGNATURE_OFFSET..MBR_SIGNATURE_OFFSET + 2) != Some(&[0x55, 0xaa][..]) {
        return false;
    }
    (0..4).any(|i| lba0.get(MBR_ENTRIES_OFFSET + i * 16 + 4) == Some(&MBR_TYPE_GPT_PROTECTIVE))
}

fn le32(b: &[u8], off: usize) -> u32 {
    let mut a = [0u8; 4];
    if let Some(s) = b.get(off..off + 4) {
        a.copy_from_slice(s);
    }
    u32::from_le_bytes(a)
}

fn le64(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    if let Some(s) = b.get(off..off + 8) {
        a.copy_from_slice(s);
    }
    u64::from_le_bytes(a)
}

fn guid_at(b: &[u8], off: usize) -> Guid {
    let mut g = [0u8; 16];
    if let Some(s) = b.get(off..off + 16) {
        g.copy_from_slice(s);
    }
    Guid(g)
}

/// Reads and checks one copy (header at `lba`, then its entry array).
fn read_copy(dev: &mut dyn BlockDevice, lba: u64, sector: &mut [u8]) -> Result<Gpt, GptError> {
    dev.read(lba, sector)?;
    let header = parse_header(sector, lba)?;
    check_geometry(&header, lba, dev.capacity(), dev.sector_size())?;
    let array_bytes = header.num_entries as u64 * header.entry_size as u64;
    let ss = dev.sector_size() as u64;
    let mut array = zeroed(array_bytes.div_ceil(ss) * ss)?;
    dev.read(header.entries_lba, &mut array)?;
    let used = array.get(..array_bytes as usize).unwrap_or(&[]);
    let computed = crc32fast::hash(used);
    if computed != header.entries_crc {
        return Err(GptError::EntriesCrc {
            lba,
            stored: header.entries_crc,
            computed,
        });
    }
    let (partitions, skipped) = parse_entries(used, &header);
    Ok(Gpt {
        header,
        partitions,
        primary_error: None,
        skipped,
    })
}

/// Checks signature, revision, size and CRC of the header in `sector`, found at `lba`.
fn parse_header(sector: &[u8], lba: u64) -> Result<GptHeader, GptError> {
    if sector.get(..8) != Some(&SIGNATURE[..]) {
        return Err(GptError::NoSignature { lba });
    }
    let revision = le32(sector, 8);
    if revision & 0xffff_0000 != REVISION_MAJOR {
        return Err(GptError::BadRevision { lba, revision });
    }
    let size = le32(sector, 12);
    if size < MIN_HEADER_SIZE || size as usize > sector.len() {
        return Err(GptError::BadHeaderSize { lba, size });
    }
    let stored = le32(sector, 16);
    let mut h = crc32fast::Hasher::new();
    h.update(sector.get(..16).unwrap_or(&[]));
    h.update(&[0; 4]);
    h.update(sector.get(20..size as usize).unwrap_or(&[]));
    let computed = h.finalize();
    if computed != stored {
        return Err(GptError::HeaderCrc {
            lba,
            stored,
            computed,
        });
    }
    let header = GptHeader {
        revision,
        header_size: size,
        my_lba: le64(sector, 24),
        alternate_lba: le64(sector, 32),
        first_usable: le64(sector, 40),
        last_usable: le64(sector, 48),
        disk_guid: guid_at(sector, 56),
        entries_lba: le64(sector, 72),
        num_entries: le32(sector, 80),
        entry_size: le32(sector, 84),
        entries_crc: le32(sector, 88),
    };
    if header.my_lba != lba {
        return Err(GptError::WrongMyLba {
            lba,
            found: header.my_lba,
        });
    }
    Ok(header)
}

/// Checks that the usable range and the entry array fit the device and do not collide.
fn check_geometry(h: &GptHeader, lba: u64, capacity: u64, ss: u32) -> Result<(), GptError> {
    if h.first_usable > h.last_usable || h.first_usable < 2 || h.last_usable >= capacity - 1 {
        return Err(GptError::BadUsableRange {
            lba,
            first: h.first_usable,
            last: h.last_usable,
        });
    }
    let array_bytes = h.num_entries as u64 * h.entry_size as u64;
    let entry_ok = h.entry_size >= MIN_ENTRY_SIZE
        && h.entry_size.is_multiple_of(MIN_ENTRY_SIZE)
        && (h.entry_size / MIN_ENTRY_SIZE).is_power_of_two();
    if !entry_ok || h.num_entries == 0 || array_bytes > MAX_ENTRY_ARRAY_BYTES {
        return Err(GptError::BadEntryGeometry {
            lba,
            count: h.num_entries,
            size: h.entry_size,
        });
    }
    let sectors = array_bytes.div_ceil(ss as u64);
    let bad = GptError::BadEntryArray {
        lba,
        array_lba: h.entries_lba,
        sectors,
    };
    let end = h.entries_lba.checked_add(sectors).ok_or(bad.clone())?;
    let overlaps_usable = h.entries_lba <= h.last_usable && end > h.first_usable;
    let overlaps_header = h.entries_lba <= lba && end > lba;
    if h.entries_lba == 0 || end > capacity || overlaps_usable || overlaps_header {
        return Err(bad);
    }
    Ok(())
}

/// The used entries of `array`, split into exposable partitions and rejected ones.
fn parse_entries(array: &[u8], h: &GptHeader) -> (Vec<GptPartition>, Vec<(u32, EntryProblem)>) {
    let mut parts: Vec<GptPartition> = Vec::new();
    let mut skipped = Vec::new();
    for (i, e) in array.chunks_exact(h.entry_size as usize).enumerate() {
        let type_guid = guid_at(e, 0);
        if type_guid.is_zero() {
            continue;
        }
        let number = i as u32 + 1;
        let first_lba = le64(e, 32);
        let last_lba = le64(e, 40);
        let problem = if last_lba < first_lba {
            Some(EntryProblem::Reversed)
        } else if first_lba < h.first_usable || last_lba > h.last_usable {
            Some(EntryProblem::OutsideUsable)
        } else {
            parts
                .iter()
                .find(|p| first_lba <= p.last_lba && p.first_lba <= last_lba)
                .map(|p| EntryProblem::Overlaps(p.number))
        };
        if let Some(p) = problem {
            skipped.push((number, p));
            continue;
        }
        parts.push(GptPartition {
            number,
            type_guid,
            unique_guid: guid_at(e, 16),
            first_lba,
            last_lba,
            attributes: le64(e, 48),
            name: utf16le_name(
                e.get(NAME_OFFSET..NAME_OFFSET + NAME_UNITS * 2)
                    .unwrap_or(&[]),
            ),
        });
    }
    (parts, skipped)
}

/// A NUL-terminated UTF-16LE name; unpaired surrogates become U+FFFD.
fn utf16le_name(b: &[u8]) -> String {
    let units = b
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .take_while(|&u| u != 0);
    char::decode_utf16(units)
        .map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect()
}

/// Lays out GPT images: used by tests here and in `capmon-cmds`, and by tools that need a
/// partitioned RAM disk. A protective MBR, primary and backup headers with correct CRCs, and
/// 128 entries of 128 bytes.
pub mod build {
    use super::*;
    use alloc::vec;

    /// One partition to lay out: type, unique GUID, first and last LBA (inclusive), name.
    pub struct Spec<'a> {
        pub type_guid: Guid,
        pub unique_guid: Guid,
        pub first: u64,
        pub last: u64,
        pub name: &'a str,
    }

    pub const ENTRIES: u32 = 128;
    pub const ENTRY_SIZE: u32 = 128;

    /// A disk of `sectors` sectors of `ss` bytes with disk GUID `disk` and two partitions:
    /// 1 "boot" (EFI System, LBA 40..=59) and 2 "data" (capmon data, LBA 60..=99). The fixture
    /// the block layer's and the monitor's tests share.
    pub fn sample_two_partitions(ss: usize, sectors: usize, disk: Guid) -> Vec<u8> {
        let mut img = vec![0u8; ss * sectors];
        let parts = [
            Spec {
                type_guid: EFI_SYSTEM,
                unique_guid: Guid([1; 16]),
                first: 40,
                last: 59,
                name: "boot",
            },
            Spec {
                type_guid: CAPMON_DATA,
                unique_guid: Guid([2; 16]),
                first: 60,
                last: 99,
                name: "data",
            },
        ];
        let written = write(&mut img, ss, disk, &parts);
        debug_assert!(written, "the sample layout fits any disk of 100+ sectors");
        img
    }

    /// Writes a complete GPT into `disk` (a whole-device image of `ss`-byte sectors). Returns
    /// false, writing nothing, if the image is too small, `ss` is not a power of two of at
    /// least 512, or there are more than `ENTRIES` partitions. Partition ranges are written
    /// as given (so tests can lay out bad ones).
    pub fn write(disk: &mut [u8], ss: usize, disk_guid: Guid, parts: &[Spec]) -> bool {
        let array_bytes = (ENTRIES * ENTRY_SIZE) as usize;
        let array_sectors = array_bytes.div_ceil(ss.max(1));
        if ss < 512
            || !ss.is_power_of_two()
            || !disk.len().is_multiple_of(ss)
            || parts.len() > ENTRIES as usize
        {
            return false;
        }
        let capacity = disk.len() / ss;
        if capacity < 2 * array_sectors + 4 {
            return false;
        }
        let mut array = vec![0u8; array_bytes];
        for (p, e) in parts
            .iter()
            .zip(array.chunks_exact_mut(ENTRY_SIZE as usize))
        {
            e[0..16].copy_from_slice(&p.type_guid.0);
            e[16..32].copy_from_slice(&p.unique_guid.0);
            e[32..40].copy_from_slice(&p.first.to_le_bytes());
            e[40..48].copy_from_slice(&p.last.to_le_bytes());
            for (k, u) in p.name.encode_utf16().take(NAME_UNITS).enumerate() {
                let at = NAME_OFFSET + 2 * k;
                e[at..at + 2].copy_from_slice(&u.to_le_bytes());
            }
        }
        let array_crc = crc32fast::hash(&array);
        let first_usable = (2 + array_sectors) as u64;
        let last_usable = (capacity - 2 - array_sectors) as u64;
        // Protective MBR: one 0xee partition from LBA 1 to the end (capped at 2^32-1 sectors).
        disk[..ss].fill(0);
        let pe = &mut disk[MBR_ENTRIES_OFFSET..MBR_ENTRIES_OFFSET + 16];
        pe[4] = MBR_TYPE_GPT_PROTECTIVE;
        pe[8..12].copy_from_slice(&1u32.to_le_bytes());
        let mbr_len = (capacity as u64 - 1).min(u32::MAX as u64) as u32;
        pe[12..16].copy_from_slice(&mbr_len.to_le_bytes());
        disk[MBR_SIGNATURE_OFFSET] = 0x55;
        disk[MBR_SIGNATURE_OFFSET + 1] = 0xaa;
        let last = capacity - 1;
        for (my, alt, entries) in [(1, last, 2), (last, 1, last - array_sectors)] {
            let mut h = vec![0u8; ss];
            h[0..8].copy_from_slice(SIGNATURE);
            h[8..12].copy_from_slice(&REVISION_MAJOR.to_le_bytes());
            h[12..16].copy_from_slice(&MIN_HEADER_SIZE.to_le_bytes());
            h[24..32].copy_from_slice(&(my as u64).to_le_bytes());
            h[32..40].copy_from_slice(&(alt as u64).to_le_bytes());
            h[40..48].copy_from_slice(&first_usable.to_le_bytes());
            h[48..56].copy_from_slice(&last_usable.to_le_bytes());
            h[56..72].copy_from_slice(&disk_guid.0);
            h[72..80].copy_from_slice(&(entries as u64).to_le_bytes());
            h[80..84].copy_from_slice(&ENTRIES.to_le_bytes());
            h[84..88].copy_from_slice(&ENTRY_SIZE.to_le_bytes());
            h[88..92].copy_from_slice(&array_crc.to_le_bytes());
            let crc = crc32fast::hash(&h[..MIN_HEADER_SIZE as usize]);
            h[16..20].copy_from_slice(&crc.to_le_bytes());
            disk[my * ss..(my + 1) * ss].copy_from_slice(&h);
            disk[entries * ss..entries * ss + array_bytes].copy_from_slice(&array);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::build::{self, Spec};
    use super::*;
    use crate::pattern::splitmix64;
    use crate::RamDisk;
    use alloc::vec;
    use std::string::ToString;

    const DISK: Guid = known("737a9a0b-98cf-4e12-8278-0fcaa65d6080");

    fn specs() -> [Spec<'static>; 3] {
        [
            Spec {
                type_guid: EFI_SYSTEM,
                unique_guid: Guid([1; 16]),
                first: 64,
                last: 127,
                name: "EFI boot",
            },
            Spec {
                type_guid: LINUX_FILESYSTEM,
                unique_guid: Guid([2; 16]),
                first: 128,
                last: 191,
                name: "root",
            },
            Spec {
                type_guid: CAPMON_DATA,
                unique_guid: Guid([3; 16]),
                first: 192,
                last: 200,
                name: "capmon dätä 😀",
            },
        ]
    }

    fn image(ss: usize, sectors: usize) -> Vec<u8> {
        let mut img = vec![0u8; ss * sectors];
        assert!(build::write(&mut img, ss, DISK, &specs()));
        img
    }

    fn parse(img: Vec<u8>, ss: u32) -> Result<Gpt, GptError> {
        read(&mut RamDisk::from_image(img, ss).unwrap())
    }

    #[test]
    fn guid_text_round_trip() {
        assert_eq!(
            EFI_SYSTEM.to_string(),
            "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"
        );
        assert_eq!(EFI_SYSTEM.0[..4], [0x28, 0x73, 0x2a, 0xc1]);
        assert_eq!(CAPMON_DATA.0[10..], *b"capmon");
        assert_eq!(
            Guid::parse("C0A9D47A-3F1E-4B8B-9A43-6361706D6F6E"),
            Some(CAPMON_DATA)
        );
        assert_eq!(Guid::parse("c0a9d47a-3f1e-4b8b-9a43-6361706d6f6"), None);
        assert_eq!(Guid::parse("c0a9d47a-3f1e-4b8b-9a43x6361706d6f6e"), None);
        assert_eq!(Guid::parse("g0a9d47a-3f1e-4b8b-9a43-6361706d6f6e"), None);
        assert_eq!(type_name(&CAPMON_DATA), Some("capmon data"));
        assert_eq!(
            type_name(&MICROSOFT_BASIC_DATA),
            Some("Microsoft basic data")
        );
        assert_eq!(type_name(&BIOS_BOOT), Some("BIOS boot"));
        assert_eq!(type_name(&DISK), None);
    }

    #[test]
    fn reads_primary_with_512_and_4096_byte_sectors() {
        for ss in [512usize, 4096] {
            let g = parse(image(ss, 256), ss as u32).unwrap();
            assert_eq!(g.primary_error, None);
            assert_eq!(g.header.my_lba, 1);
            assert_eq!(g.header.alternate_lba, 255);
            assert_eq!(g.header.disk_guid, DISK);
            assert_eq!(g.header.first_usable, 2 + (16384 / ss) as u64);
            assert_eq!(g.partitions.len(), 3);
            let p = &g.partitions[2];
            assert_eq!(
                (p.number, p.first_lba, p.last_lba, p.sectors()),
                (3, 192, 200, 9)
            );
            assert_eq!(p.name, "capmon dätä 😀");
            assert_eq!(p.type_name(), Some("capmon data"));
            assert_eq!(p.unique_guid, Guid([3; 16]));
            assert_eq!(g.partitions[0].type_name(), Some("EFI System"));
            assert_eq!(g.partitions[1].type_name(), Some("Linux filesystem"));
            assert!(g.skipped.is_empty());
        }
    }

    #[test]
    fn corrupt_primary_falls_back_to_backup() {
        for ss in [512usize, 4096] {
            let good = parse(image(ss, 256), ss as u32).unwrap();
            // A flipped bit in the header.
            let mut img = image(ss, 256);
            img[ss + 40] ^= 0x10;
            let g = parse(img, ss as u32).unwrap();
            assert!(
                matches!(g.primary_error, Some(GptError::HeaderCrc { lba: 1, .. })),
                "{:?}",
                g.primary_error
            );
            assert_eq!(g.header.my_lba, 255);
            assert_eq!(g.partitions, good.partitions);
            // A flipped bit in the primary entry array.
            let mut img = image(ss, 256);
            img[2 * ss + 130] ^= 1;
            let g = parse(img, ss as u32).unwrap();
            assert!(matches!(
                g.primary_error,
                Some(GptError::EntriesCrc { lba: 1, .. })
            ));
            assert_eq!(g.partitions, good.partitions);
            // A wiped primary header.
            let mut img = image(ss, 256);
            img[ss..2 * ss].fill(0);
            let g = parse(img, ss as u32).unwrap();
            assert_eq!(g.primary_error, Some(GptError::NoSignature { lba: 1 }));
        }
    }

    #[test]
    fn corrupt_both_is_an_error_and_blank_is_absent() {
        let mut img = image(512, 256);
        img[512 + 40] ^= 1;
        img[255 * 512 + 88] ^= 1; // backup's stored array CRC
        let e = parse(img, 512).unwrap_err();
        assert!(!e.is_absent());
        match e {
            GptError::BothInvalid { primary, backup } => {
                assert!(matches!(*primary, GptError::HeaderCrc { lba: 1, .. }));
                assert!(matches!(*backup, GptError::HeaderCrc { lba: 255, .. }));
            }
            other => panic!("{:?}", other),
        }
        // Both headers gone but the protective MBR is there: no GPT, not corrupt.
        let mut img = image(512, 256);
        img[512..1024].fill(0);
        img[255 * 512..].fill(0);
        let e = parse(img, 512).unwrap_err();
        assert!(e.is_absent());
        assert_eq!(e.to_string(), "no GPT header at LBA 1 or at LBA 255");
        assert_eq!(
            parse(vec![0; 512 * 64], 512),
            Err(GptError::NoProtectiveMbr)
        );
        assert_eq!(
            parse(vec![0; 512 * 3], 512),
            Err(GptError::TooSmall { sectors: 3 })
        );
    }

    #[test]
    fn bad_entries_are_skipped_with_reasons() {
        let mut img = vec![0u8; 512 * 256];
        let s = |first, last, n| Spec {
            type_guid: LINUX_FILESYSTEM,
            unique_guid: Guid([n; 16]),
            first,
            last,
            name: "x",
        };
        let parts = [
            s(40, 60, 1),
            s(60, 70, 2),
            s(80, 79, 3),
            s(200, 230, 4),
            s(100, 222, 5),
            s(1, 30, 6),
            s(150, 150, 7),
        ];
        assert!(build::write(&mut img, 512, DISK, &parts));
        let g = parse(img, 512).unwrap();
        let numbers: Vec<u32> = g.partitions.iter().map(|p| p.number).collect();
        // Usable range is 34..=222.
        assert_eq!(numbers, [1, 5]);
        assert_eq!(
            g.skipped,
            [
                (2, EntryProblem::Overlaps(1)),
                (3, EntryProblem::Reversed),
                (4, EntryProblem::OutsideUsable),
                (6, EntryProblem::OutsideUsable),
                (7, EntryProblem::Overlaps(5))
            ]
        );
    }

    #[test]
    fn hostile_headers_are_rejected() {
        // Rewrites a header field of the primary and fixes its CRC, so only the check under
        // test can reject it; the backup is destroyed so the error surfaces.
        let with = |off: usize, val: &[u8]| {
            let mut img = image(512, 256);
            img[512 + off..512 + off + val.len()].copy_from_slice(val);
            img[512 + 16..512 + 20].fill(0);
            let crc = crc32fast::hash(&img[512..512 + 92]);
            img[512 + 16..512 + 20].copy_from_slice(&crc.to_le_bytes());
            img[255 * 512..].fill(0);
            match parse(img, 512) {
                Err(GptError::BothInvalid { primary, .. }) => *primary,
                other => panic!("{:?}", other),
            }
        };
        assert!(matches!(
            with(80, &u32::MAX.to_le_bytes()),
            GptError::BadEntryGeometry { .. }
        ));
        assert!(matches!(
            with(84, &100u32.to_le_bytes()),
            GptError::BadEntryGeometry { .. }
        ));
        assert!(matches!(
            with(84, &384u32.to_le_bytes()),
            GptError::BadEntryGeometry { .. }
        ));
        assert!(matches!(
            with(72, &u64::MAX.to_le_bytes()),
            GptError::BadEntryArray { .. }
        ));
        assert!(matches!(
            with(72, &40u64.to_le_bytes()),
            GptError::BadEntryArray { .. }
        ));
        assert!(matches!(
            with(48, &300u64.to_le_bytes()),
            GptError::BadUsableRange { .. }
        ));
        assert!(matches!(
            with(24, &7u64.to_le_bytes()),
            GptError::WrongMyLba { lba: 1, found: 7 }
        ));
        assert!(matches!(
            with(8, &0x0002_0000u32.to_le_bytes()),
            GptError::BadRevision { .. }
        ));
        // Header size is checked before the CRC is computed over it.
        let mut img = image(512, 256);
        img[512 + 12..512 + 16].copy_from_slice(&100_000u32.to_le_bytes());
        let g = parse(img, 512).unwrap();
        assert_eq!(
            g.primary_error,
            Some(GptError::BadHeaderSize {
                lba: 1,
                size: 100_000
            })
        );
    }

    #[test]
    fn random_damage_never_panics() {
        let base = image(512, 128);
        for round in 0..2000u64 {
            let mut img = base.clone();
            let flips = 1 + splitmix64(round, 0) % 8;
            for k in 0..flips {
                let r = splitmix64(round, k + 1);
                // Aim at the headers and entry arrays most of the time.
                let at = match r % 4 {
                    0 => 512 + (r >> 8) as usize % 92,
                    1 => 127 * 512 + (r >> 8) as usize % 92,
                    2 => 1024 + (r >> 8) as usize % 512,
                    _ => (r >> 8) as usize % img.len(),
                };
                img[at] = (r >> 40) as u8;
            }
            let _ = parse(img, 512);
        }
    }

    #[test]
    fn device_errors_are_reported() {
        struct Broken;
        impl BlockDevice for Broken {
            fn sector_size(&self) -> u32 {
                512
            }
            fn capacity(&self) -> u64 {
                1000
            }
            fn read_only(&self) -> bool {
                true
            }
            fn info(&self) -> crate::BlkInfo {
                crate::BlkInfo::default()
            }
            fn read(&mut self, _: u64, _: &mut [u8]) -> Result<(), BlkError> {
                Err(BlkError::Timeout)
            }
            fn write(&mut self, _: u64, _: &[u8]) -> Result<(), BlkError> {
                Err(BlkError::ReadOnly)
            }
            fn flush(&mut self) -> Result<(), BlkError> {
                Ok(())
            }
        }
        assert_eq!(read(&mut Broken), Err(GptError::Io(BlkError::Timeout)));
    }

    /// Cross-checks our reader against sgdisk on an image sgdisk made (skips without sgdisk).
    #[test]
    fn agrees_with_sgdisk() {
        use std::process::Command;
        let dir = std::env::temp_dir().join(std::format!("capmon-gpt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("disk.img");
        std::fs::write(&path, vec![0u8; 8 << 20]).unwrap();
        let sg = |args: &[&str]| Command::new("sgdisk").args(args).arg(&path).output();
        let made = sg(&[
            "-o",
            "-n",
            "1:2048:+1M",
            "-t",
            "1:ef00",
            "-c",
            "1:EFI boot",
            "-n",
            "2:0:+2M",
            "-t",
            "2:c0a9d47a-3f1e-4b8b-9a43-6361706d6f6e",
            "-c",
            "2:capmon dätä",
            "-n",
            "4:0:0",
            "-t",
            "4:8300",
            "-c",
            "4:root",
        ]);
        match made {
            Ok(o) if o.status.success() => {}
            Ok(o) => panic!(
                "sgdisk failed: {}",
                std::string::String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => {
                std::eprintln!("SKIP agrees_with_sgdisk: sgdisk not runnable ({})", e);
                return;
            }
        }
        let img = std::fs::read(&path).unwrap();
        let g = parse(img.clone(), 512).unwrap();
        let p = std::string::String::from_utf8(sg(&["-p"]).unwrap().stdout).unwrap();
        let disk_line = p
            .lines()
            .find(|l| l.starts_with("Disk identifier (GUID): "))
            .unwrap();
        assert_eq!(
            disk_line[24..].to_lowercase(),
            g.header.disk_guid.to_string()
        );
        assert_eq!(
            g.partitions.iter().map(|p| p.number).collect::<Vec<_>>(),
            [1, 2, 4]
        );
        for part in &g.partitions {
            let out = sg(&["-i", &part.number.to_string()]).unwrap().stdout;
            let info = std::string::String::from_utf8(out).unwrap();
            let field = |name: &str| {
                let l = info.lines().find(|l| l.starts_with(name)).unwrap();
                l[name.len()..].split(" (").next().unwrap().to_string()
            };
            assert_eq!(
                field("Partition GUID code: ").to_lowercase(),
                part.type_guid.to_string()
            );
            assert_eq!(
                field("Partition unique GUID: ").to_lowercase(),
                part.unique_guid.to_string()
            );
            assert_eq!(field("First sector: "), part.first_lba.to_string());
            assert_eq!(field("Last sector: "), part.last_lba.to_string());
            assert_eq!(field("Partition name: "), std::format!("'{}'", part.name));
        }
        assert_eq!(g.partitions[1].name, "capmon dätä");
        assert_eq!(g.partitions[1].type_name(), Some("capmon data"));
        // Our backup fallback sees what sgdisk wrote as the backup.
        let mut bad = img;
        bad[512 + 30] ^= 0xff;
        let b = parse(bad, 512).unwrap();
        assert!(b.primary_error.is_some());
        assert_eq!(b.partitions, g.partitions);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
