//! redb on a capmon data partition: a superblock in the partition's first 4096 bytes, the redb
//! file (the "region") after it, and `BlockBackend`, the `redb::StorageBackend` that turns
//! redb's byte-addressed reads, writes and resizes into sector I/O on a `BlockDevice`.
//!
//! docs/storage.md ("On-disk layout: superblock and region") describes the format.
#![forbid(unsafe_code)]

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::sync::Arc;
use alloc::vec::Vec;
use capmon_block::{BlkError, BlockDevice, WriteReq};
use core::fmt;
use redb::{BackendError, StorageBackend};
use spin::Mutex;

#[cfg(test)]
mod tests;

/// Bytes reserved for the superblock at the start of the partition; the region follows.
pub const SUPERBLOCK_BYTES: u64 = 4096;
/// The on-disk format this code writes and the newest it reads.
pub const FORMAT_VERSION: u32 = 1;
/// The first eight bytes of a formatted partition.
pub const MAGIC: [u8; 8] = *b"CAPMONDB";
/// The smallest partition `format` accepts.
pub const MIN_PARTITION_BYTES: u64 = 1 << 20;
/// Bytes `Superblock::encode` produces: one 512-byte sector, so a single sector write replaces it.
pub const ENCODED_BYTES: usize = 512;
/// The largest single device request the backend makes (aligned writes, zero-fill).
const CHUNK_BYTES: usize = 1 << 20;
/// How many bytes of `write_out`'s requests are handed to the device at once.
const BATCH_BYTES: usize = 4 << 20;

// Field offsets of the encoded superblock (all integers little-endian).
const OFF_VERSION: usize = 8;
const OFF_FLAGS: usize = 12;
const OFF_REGION_LEN: usize = 16;
const OFF_PARTITION_BYTES: usize = 24;
const OFF_STORE_ID: usize = 32;
const OFF_FORMATTED_NS: usize = 48;
/// The CRC32 of bytes `0..OFF_CHECKSUM` is stored here.
const OFF_CHECKSUM: usize = 56;
/// Bytes of the superblock that carry meaning; the rest of the 512 are zero.
const FIELDS_BYTES: usize = OFF_CHECKSUM + 4;

/// The record at the start of a capmon store partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Superblock {
    /// On-disk format version (`FORMAT_VERSION` for anything this code wrote).
    pub version: u32,
    /// No flags are defined in version 1; written as 0, kept as found.
    pub flags: u32,
    /// Logical length of the redb file in bytes (redb's `len()`), stored from byte 4096.
    pub region_len: u64,
    /// The partition's size in bytes when it was formatted; the region never grows past it.
    pub partition_bytes: u64,
    /// Identity of this store, derived from the seed given to `format`.
    pub store_id: [u8; 16],
    /// The caller's clock value when the partition was formatted, in nanoseconds.
    pub formatted_ns: u64,
}

impl Superblock {
    /// The superblock of a freshly formatted partition of `partition_bytes` bytes: an empty
    /// region, a store id derived from `seed`.
    pub fn new(partition_bytes: u64, seed: u64, now_ns: u64) -> Self {
        let mut state = seed;
        let mut store_id = [0u8; 16];
        store_id[..8].copy_from_slice(&splitmix64(&mut state).to_le_bytes());
        store_id[8..].copy_from_slice(&splitmix64(&mut state).to_le_bytes());
        Superblock {
            version: FORMAT_VERSION,
            flags: 0,
            region_len: 0,
            partition_bytes,
            store_id,
            formatted_ns: now_ns,
        }
    }

    /// The on-disk bytes: the fields, their CRC32, zeros to 512 bytes.
    pub fn encode(&self) -> [u8; ENCODED_BYTES] {
        let mut b = [0u8; ENCODED_BYTES];
        b[..OFF_VERSION].copy_from_slice(&MAGIC);
        b[OFF_VERSION..OFF_FLAGS].copy_from_slice(&self.version.to_le_bytes());
        b[OFF_FLAGS..OFF_REGION_LEN].copy_from_slice(&self.flags.to_le_bytes());
        b[OFF_REGION_LEN..OFF_PARTITION_BYTES].copy_from_slice(&self.region_len.to_le_bytes());
        b[OFF_PARTITION_BYTES..OFF_STORE_ID].copy_from_slice(&self.partition_bytes.to_le_bytes());
        b[OFF_STORE_ID..OFF_FORMATTED_NS].copy_from_slice(&self.store_id);
        b[OFF_FORMATTED_NS..OFF_CHECKSUM].copy_from_slice(&self.formatted_ns.to_le_bytes());
        let crc = crc32fast::hash(&b[..OFF_CHECKSUM]);
        b[OFF_CHECKSUM..FIELDS_BYTES].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Reads a superblock from the partition's first bytes (up to `SUPERBLOCK_BYTES` of them are
    /// looked at). Checks, in order: all zero, magic, length, checksum, version, and that the
    /// region fits in `partition_bytes`. Whether the partition is as large as it says is
    /// `check_fits`'s job, since these bytes do not tell.
    pub fn decode(bytes: &[u8]) -> Result<Superblock, OpenError> {
        let head = &bytes[..bytes.len().min(SUPERBLOCK_BYTES as usize)];
        if head.iter().all(|&b| b == 0) {
            return Err(OpenError::NotFormatted);
        }
        if head.get(..MAGIC.len()) != Some(&MAGIC[..]) {
            return Err(OpenError::Foreign(Foreign::identify(head)));
        }
        if head.len() < FIELDS_BYTES {
            return Err(OpenError::Truncated {
                needs: SUPERBLOCK_BYTES,
                has: head.len() as u64,
            });
        }
        let stored = le_u32(head, OFF_CHECKSUM);
        if crc32fast::hash(&head[..OFF_CHECKSUM]) != stored {
            return Err(OpenError::BadChecksum);
        }
        let version = le_u32(head, OFF_VERSION);
        if version > FORMAT_VERSION {
            return Err(OpenError::NewerVersion {
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        if version == 0 {
            return Err(OpenError::UnknownVersion { found: version });
        }
        let mut store_id = [0u8; 16];
        store_id.copy_from_slice(&head[OFF_STORE_ID..OFF_FORMATTED_NS]);
        let sb = Superblock {
            version,
            flags: le_u32(head, OFF_FLAGS),
            region_len: le_u64(head, OFF_REGION_LEN),
            partition_bytes: le_u64(head, OFF_PARTITION_BYTES),
            store_id,
            formatted_ns: le_u64(head, OFF_FORMATTED_NS),
        };
        let needs = sb.bytes_needed();
        if needs > sb.partition_bytes {
            return Err(OpenError::Truncated {
                needs,
                has: sb.partition_bytes,
            });
        }
        Ok(sb)
    }

    /// Checks that a partition of `partition_bytes` bytes still holds this store: it has not
    /// shrunk since it was formatted (it may have grown; the store keeps its formatted size).
    pub fn check_fits(&self, partition_bytes: u64) -> Result<(), OpenError> {
        if partition_bytes < self.partition_bytes {
            return Err(OpenError::Truncated {
                needs: self.partition_bytes,
                has: partition_bytes,
            });
        }
        let needs = self.bytes_needed();
        if partition_bytes < needs {
            return Err(OpenError::Truncated {
                needs,
                has: partition_bytes,
            });
        }
        Ok(())
    }

    /// Bytes from the partition's start to the region's end (saturating: a corrupt region_len
    /// near `u64::MAX` then fails every size check instead of wrapping).
    fn bytes_needed(&self) -> u64 {
        SUPERBLOCK_BYTES.saturating_add(self.region_len)
    }
}

/// What a partition that is not a capmon store appears to hold, judged from its first 4096
/// bytes. A guess for the error message, not a promise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Foreign {
    /// ext2/3/4: magic 0xEF53 at byte 1080 (superblock at 1024, `s_magic` at +0x38).
    Ext,
    /// FAT12/16/32: "FAT" file system type at byte 54 or 82 of the boot sector.
    Fat,
    /// exFAT: "EXFAT   " at byte 3 of the boot sector.
    ExFat,
    /// NTFS: "NTFS    " at byte 3 of the boot sector.
    Ntfs,
    /// XFS: "XFSB" at byte 0.
    Xfs,
    /// LUKS encrypted volume: "LUKS\xba\xbe" at byte 0.
    Luks,
    /// squashfs: "hsqs" at byte 0.
    Squashfs,
    /// Linux swap: "SWAPSPACE2" ending at byte 4096 (4 KiB pages).
    Swap,
    /// Some other boot sector or MBR: 0x55 0xAA at bytes 510-511.
    BootSector,
    /// Nothing recognised; `first` holds the first bytes to show the user.
    Unknown { first: [u8; 8] },
}

impl Foreign {
    /// Names what `head` (the partition's first bytes) looks like.
    pub fn identify(head: &[u8]) -> Foreign {
        let at = |off: usize, pat: &[u8]| head.get(off..off + pat.len()) == Some(pat);
        if at(0, b"LUKS\xba\xbe") {
            Foreign::Luks
        } else if at(0, b"XFSB") {
            Foreign::Xfs
        } else if at(0, b"hsqs") {
            Foreign::Squashfs
        } else if at(1080, &[0x53, 0xef]) {
            Foreign::Ext
        } else if at(3, b"EXFAT   ") {
            Foreign::ExFat
        } else if at(3, b"NTFS    ") {
            Foreign::Ntfs
        } else if at(54, b"FAT") || at(82, b"FAT") {
            Foreign::Fat
        } else if at(4086, b"SWAPSPACE2") {
            Foreign::Swap
        } else if at(510, &[0x55, 0xaa]) {
            Foreign::BootSector
        } else {
            let mut first = [0u8; 8];
            let n = head.len().min(first.len());
            first[..n].copy_from_slice(&head[..n]);
            Foreign::Unknown { first }
        }
    }
}

impl fmt::Display for Foreign {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Foreign::Ext => f.write_str("an ext2/3/4 file system"),
            Foreign::Fat => f.write_str("a FAT file system"),
            Foreign::ExFat => f.write_str("an exFAT file system"),
            Foreign::Ntfs => f.write_str("an NTFS file system"),
            Foreign::Xfs => f.write_str("an XFS file system"),
            Foreign::Luks => f.write_str("a LUKS encrypted volume"),
            Foreign::Squashfs => f.write_str("a squashfs image"),
            Foreign::Swap => f.write_str("Linux swap"),
            Foreign::BootSector => f.write_str("a boot sector or MBR"),
            Foreign::Unknown { first } => {
                f.write_str("unrecognised data (first bytes")?;
                for b in first {
                    write!(f, " {:02x}", b)?;
                }
                f.write_str(")")
            }
        }
    }
}

/// Why a partition is not a usable store (or cannot be formatted as one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenError {
    /// The first 4096 bytes are all zero: never formatted (or wiped).
    NotFormatted,
    /// The magic is missing and the bytes are not zero: another file system, or noise.
    Foreign(Foreign),
    /// The magic is there but the superblock's CRC32 does not match its fields.
    BadChecksum,
    /// Written by a newer capmon, in a format this one cannot read.
    NewerVersion { found: u32, supported: u32 },
    /// A version number no capmon ever wrote (0).
    UnknownVersion { found: u32 },
    /// The partition (or the superblock's own `partition_bytes`) is smaller than the store
    /// needs: `needs` bytes, `has` bytes.
    Truncated { needs: u64, has: u64 },
    /// `format`: the partition has `has` bytes, a store needs at least `needs`.
    TooSmall { has: u64, needs: u64 },
    /// `format`, or a writable open, of a read-only device.
    ReadOnlyDevice,
    /// The device's sector size is not a power of two from 512 to 64 KiB.
    UnsupportedSectorSize { sector_size: u32 },
    /// The device failed a read, write or flush.
    Io(BlkError),
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::NotFormatted => f.write_str(
                "not formatted: the partition's first 4096 bytes are zero (format it to create a store)",
            ),
            OpenError::Foreign(what) => {
                write!(f, "not a capmon store: the partition holds {}", what)
            }
            OpenError::BadChecksum => {
                f.write_str("the store's superblock is damaged (checksum mismatch)")
            }
            OpenError::NewerVersion { found, supported } => write!(
                f,
                "the store has format version {}; this capmon reads up to version {}",
                found, supported
            ),
            OpenError::UnknownVersion { found } => write!(
                f,
                "the store's superblock names format version {}, which no capmon writes",
                found
            ),
            OpenError::Truncated { needs, has } => write!(
                f,
                "the partition is truncated: the store needs {} bytes, the partition has {}",
                needs, has
            ),
            OpenError::TooSmall { has, needs } => write!(
                f,
                "the partition is too small for a store: {} bytes, at least {} needed",
                has, needs
            ),
            OpenError::ReadOnlyDevice => f.write_str("the device is read-only"),
            OpenError::UnsupportedSectorSize { sector_size } => write!(
                f,
                "unsupported sector size {} (a store needs 512 B to 64 KiB, a power of two)",
                sector_size
            ),
            OpenError::Io(e) => write!(f, "I/O error: {}", e),
        }
    }
}

impl core::error::Error for OpenError {}

impl From<BlkError> for OpenError {
    fn from(e: BlkError) -> Self {
        OpenError::Io(e)
    }
}

/// Why `BlockBackend` refused or failed a request from redb. redb receives it boxed in
/// `BackendError::Other` and shows its `Display`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegionError {
    /// `len` bytes at region offset `offset` are not inside the region's `region_len` bytes.
    OutOfRange {
        offset: u64,
        len: u64,
        region_len: u64,
    },
    /// Growing the region to `needs` bytes from the partition's start does not fit in the
    /// partition's `has` bytes.
    StoreFull { needs: u64, has: u64 },
    /// The backend was opened read-only.
    ReadOnly,
    /// The device failed the request.
    Device(BlkError),
    /// The backend's lock is held: a command was stopped while the store used it.
    Busy,
}

impl fmt::Display for RegionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegionError::OutOfRange {
                offset,
                len,
                region_len,
            } => write!(
                f,
                "{} bytes at offset {} are outside the store's {} bytes",
                len, offset, region_len
            ),
            RegionError::StoreFull { needs, has } => write!(
                f,
                "store full: needs {} bytes, the partition holds {}",
                needs, has
            ),
            RegionError::ReadOnly => f.write_str("the store is open read-only"),
            RegionError::Device(e) => write!(f, "block device: {}", e),
            RegionError::Busy => f.write_str("the store's device is locked by a stopped command"),
        }
    }
}

impl core::error::Error for RegionError {}

impl From<BlkError> for RegionError {
    fn from(e: BlkError) -> Self {
        RegionError::Device(e)
    }
}

impl From<RegionError> for BackendError {
    fn from(e: RegionError) -> Self {
        BackendError::Other(Box::new(e))
    }
}

/// Reads a partition's superblock and checks that the partition holds the store it describes.
/// Only reads.
pub fn probe(dev: &mut dyn BlockDevice) -> Result<Superblock, OpenError> {
    let geo = Geometry::of(dev)?;
    let n = geo.bytes.min(SUPERBLOCK_BYTES) as usize;
    let mut head = alloc::vec![0u8; n];
    read_bytes(dev, geo.sector, 0, &mut head)?;
    let sb = Superblock::decode(&head)?;
    sb.check_fits(geo.bytes)?;
    Ok(sb)
}

/// Writes a fresh superblock (empty region, the whole partition as its size, id from `seed`,
/// `now_ns` as its format time) over whatever the partition held, and flushes. Asking the user
/// first is the caller's job.
pub fn format(dev: &mut dyn BlockDevice, seed: u64, now_ns: u64) -> Result<Superblock, OpenError> {
    let geo = Geometry::of(dev)?;
    if geo.bytes < MIN_PARTITION_BYTES {
        return Err(OpenError::TooSmall {
            has: geo.bytes,
            needs: MIN_PARTITION_BYTES,
        });
    }
    if dev.read_only() {
        return Err(OpenError::ReadOnlyDevice);
    }
    let sb = Superblock::new(geo.bytes, seed, now_ns);
    // The whole reserved area: the superblock, then zeros over whatever was there.
    let mut area = alloc::vec![0u8; SUPERBLOCK_BYTES as usize];
    area[..ENCODED_BYTES].copy_from_slice(&sb.encode());
    write_bytes(dev, geo.sector, 0, &area, &mut 0)?;
    dev.flush()?;
    Ok(sb)
}

/// Counters of a `BlockBackend`, since it was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BackendStats {
    /// `read` calls from redb.
    pub reads: u64,
    /// `write` calls from redb.
    pub writes: u64,
    /// Device flushes (`sync_data` on a writable backend).
    pub flushes: u64,
    /// Bytes redb read.
    pub bytes_read: u64,
    /// Bytes redb wrote (zero-fill and superblock updates not included).
    pub bytes_written: u64,
    /// Partial sectors read-modify-written (redb writes, zero-fill, superblock updates).
    pub rmw_sectors: u64,
    /// `set_len` calls from redb.
    pub set_lens: u64,
    /// Requests that reached the device (after the page cache, and coalescing at sync).
    pub device_reads: u64,
    pub device_writes: u64,
    /// Batches of writes handed to the device at sync, each kept in flight together.
    pub write_batches: u64,
    /// Pages of redb reads served by the page cache.
    pub cache_hits: u64,
}

/// A `redb::StorageBackend` over the region of a formatted partition. Clones share one device
/// and one superblock behind a lock: redb owns one clone, the caller may keep another for
/// `stats` and, once redb has dropped its clone, `into_device`.
pub struct BlockBackend<D> {
    inner: Arc<Mutex<Inner<D>>>,
}

/// What the clones of a `BlockBackend` share.
struct Inner<D> {
    dev: D,
    /// The superblock as on the device (after the last `set_len`).
    sb: Superblock,
    geo: Geometry,
    writable: bool,
    stats: BackendStats,
    cache: Cache,
}

/// Dirty bytes the cache holds at most before it writes them out (without a flush).
pub const DIRTY_LIMIT: u64 = 16 << 20;

/// Clean pages the cache keeps (dirty ones stay until the next `sync_data` whatever their
/// number): the working set of a monitor's store, like a small page cache.
pub const CACHE_BYTES: usize = 32 << 20;

/// The backend's page cache, in pages of the region (`Cache::page` bytes, at least 4 KiB and
/// at least a sector, so a page is always whole sectors). redb's writes stay here, dirty,
/// until `sync_data` writes them out in ascending order, contiguous pages in one request, and
/// then flushes: a commit's scattered page writes become a few large requests. Clean pages
/// (read, or written out) are kept up to `CACHE_BYTES`, oldest evicted first, so a value read
/// back soon after it was written needs no device read.
struct Cache {
    page: usize,
    pages: BTreeMap<u64, CachedPage>,
    /// Pages in the order they became clean, with the stamp they got then; an entry whose
    /// page is gone, dirty again or clean again since (a newer stamp) is stale and skipped.
    clean_order: VecDeque<(u64, u64)>,
    clean: usize,
    budget: usize,
    stamp: u64,
    /// The dirty pages' indices (a commit touches few of the cached pages).
    dirty: BTreeSet<u64>,
}

struct CachedPage {
    data: Vec<u8>,
    dirty: bool,
    /// When it last became clean.
    stamp: u64,
}

impl Cache {
    fn new(sector: u32) -> Cache {
        let page = (sector as usize).max(4096);
        Cache {
            page,
            pages: BTreeMap::new(),
            clean_order: VecDeque::new(),
            clean: 0,
            budget: (CACHE_BYTES / page).max(16),
            stamp: 0,
            dirty: BTreeSet::new(),
        }
    }

    fn next_stamp(&mut self) -> u64 {
        self.stamp += 1;
        self.stamp
    }

    fn insert_clean(&mut self, idx: u64, data: Vec<u8>) {
        let stamp = self.next_stamp();
        let page = CachedPage {
            data,
            dirty: false,
            stamp,
        };
        if let Some(old) = self.pages.insert(idx, page) {
            if !old.dirty {
                self.clean -= 1;
            }
        }
        self.clean += 1;
        self.clean_order.push_back((idx, stamp));
        self.evict();
    }

    fn mark_clean(&mut self, idx: u64) {
        let stamp = self.next_stamp();
        if let Some(p) = self.pages.get_mut(&idx) {
            if p.dirty {
                self.dirty.remove(&idx);
                p.dirty = false;
                p.stamp = stamp;
                self.clean += 1;
                self.clean_order.push_back((idx, stamp));
            }
        }
    }

    /// Whether a queue entry still stands for a clean page.
    fn live(pages: &BTreeMap<u64, CachedPage>, (idx, stamp): (u64, u64)) -> bool {
        matches!(pages.get(&idx), Some(p) if !p.dirty && p.stamp == stamp)
    }

    fn evict(&mut self) {
        while self.clean > self.budget {
            let Some(e) = self.clean_order.pop_front() else {
                break;
            };
            if Self::live(&self.pages, e) {
                self.pages.remove(&e.0);
                self.clean -= 1;
            }
        }
        // Stale entries: at most one live entry per clean page remains, so this runs rarely.
        if self.clean_order.len() > 2 * self.budget.max(self.clean) {
            let pages = &self.pages;
            self.clean_order.retain(|e| Self::live(pages, *e));
        }
    }

    /// Drops every page at or past `first` (after they were written out: see `set_len`).
    fn drop_from(&mut self, first: u64) {
        let gone = self.pages.split_off(&first);
        self.dirty.split_off(&first);
        for p in gone.values() {
            if !p.dirty {
                self.clean -= 1;
            }
        }
    }

    fn dirty_pages(&self) -> Vec<u64> {
        self.dirty.iter().copied().collect()
    }
}

impl<D> Clone for BlockBackend<D> {
    fn clone(&self) -> Self {
        BlockBackend {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<D> fmt::Debug for BlockBackend<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.inner.lock();
        f.debug_struct("BlockBackend")
            .field("region_len", &inner.sb.region_len)
            .field("partition_bytes", &inner.sb.partition_bytes)
            .field("sector_size", &inner.geo.sector)
            .field("writable", &inner.writable)
            .finish()
    }
}

impl<D: BlockDevice> BlockBackend<D> {
    /// Probes `dev` and wraps it. `writable == false` gives a backend that only ever reads the
    /// device (for `Builder::open_read_only_with_backend`). On error the device is handed back.
    /// The partition's own problems are reported before a read-only device's.
    pub fn open(mut dev: D, writable: bool) -> Result<Self, (OpenError, D)> {
        let opened = Geometry::of(&dev).and_then(|geo| Ok((geo, probe(&mut dev)?)));
        if opened.is_ok() && writable && dev.read_only() {
            return Err((OpenError::ReadOnlyDevice, dev));
        }
        match opened {
            Ok((geo, sb)) => Ok(BlockBackend {
                inner: Arc::new(Mutex::new(Inner {
                    dev,
                    sb,
                    geo,
                    writable,
                    stats: BackendStats::default(),
                    cache: Cache::new(geo.sector),
                })),
            }),
            Err(e) => Err((e, dev)),
        }
    }

    /// The device back, if this is the last clone (redb has dropped its own); `None` otherwise,
    /// the device then staying with the remaining clones.
    pub fn into_device(self) -> Option<D> {
        Arc::try_unwrap(self.inner).ok().map(|m| m.into_inner().dev)
    }

    /// The shared state, or `Busy` rather than spinning for ever on a lock a stopped command
    /// left held (redb calls the backend only while the engine holds its own lock, so two
    /// callers never meet here otherwise).
    fn locked(&self) -> Result<spin::MutexGuard<'_, Inner<D>>, RegionError> {
        self.inner.try_lock().ok_or(RegionError::Busy)
    }

    /// The counters so far.
    pub fn stats(&self) -> BackendStats {
        self.inner.lock().stats
    }

    /// The superblock as last written (or read, if nothing was written).
    pub fn superblock(&self) -> Superblock {
        self.inner.lock().sb
    }
}

impl<D: BlockDevice> Inner<D> {
    /// Checks that `len` bytes at region offset `offset` lie inside the region; returns the
    /// partition byte offset they start at.
    fn span(&self, offset: u64, len: usize) -> Result<u64, RegionError> {
        let out_of_range = RegionError::OutOfRange {
            offset,
            len: len as u64,
            region_len: self.sb.region_len,
        };
        match offset.checked_add(len as u64) {
            // Inside the region, itself inside the partition: the sum cannot overflow.
            Some(end) if end <= self.sb.region_len => Ok(SUPERBLOCK_BYTES + offset),
            _ => Err(out_of_range),
        }
    }

    fn check_writable(&self) -> Result<(), RegionError> {
        if self.writable {
            Ok(())
        } else {
            Err(RegionError::ReadOnly)
        }
    }

    /// Grows or shrinks the region to `len` bytes: zero-fills what it gains, then records the
    /// new length in the superblock (not flushed).
    fn set_len(&mut self, len: u64) -> Result<(), RegionError> {
        let has = self.sb.partition_bytes;
        let needs = SUPERBLOCK_BYTES.saturating_add(len);
        if needs > has {
            return Err(RegionError::StoreFull { needs, has });
        }
        let old = self.sb.region_len;
        if len == old {
            return Ok(());
        }
        // What the cache holds goes to the device first (not flushed), and every page from the
        // lower of the two lengths on leaves the cache: what lies past a shrunk end, and what a
        // grown one zero-fills, is then read from the device.
        self.write_out()?;
        let page = self.cache.page as u64;
        self.cache.drop_from(old.min(len) / page);
        if len > old {
            self.zero_fill(SUPERBLOCK_BYTES + old, len - old)?;
            // The zeros are durable before the superblock claims them: after a crash the
            // region never holds stale bytes redb did not write. Growth is rare (redb grows
            // its file in large steps), so the flush costs little.
            self.dev.flush()?;
            self.stats.flushes += 1;
        }
        let sb = Superblock {
            region_len: len,
            ..self.sb
        };
        write_bytes(
            &mut self.dev,
            self.geo.sector,
            0,
            &sb.encode(),
            &mut self.stats.rmw_sectors,
        )?;
        self.sb = sb;
        Ok(())
    }

    /// The page-aligned, partition-bounded window of region page `idx`: its partition byte
    /// offset and how many of its bytes the partition holds (a last page may be short).
    fn page_window(&self, idx: u64) -> (u64, usize) {
        let page = self.cache.page as u64;
        let pos = SUPERBLOCK_BYTES + idx * page;
        let n = self.geo.bytes.saturating_sub(pos).min(page) as usize;
        (pos, n)
    }

    /// Loads region pages `first..first+count` (none of them cached) with one device read
    /// (bounded by the partition), into the cache as clean pages.
    fn load(&mut self, first: u64, count: u64) -> Result<(), RegionError> {
        let page = self.cache.page;
        let (pos, _) = self.page_window(first);
        let (last_pos, last_n) = self.page_window(first + count - 1);
        let len = (last_pos - pos) as usize + last_n;
        let mut buf = zeroed(len)?;
        read_bytes(&mut self.dev, self.geo.sector, pos, &mut buf)?;
        self.stats.device_reads += 1;
        for k in 0..count {
            let at = k as usize * page;
            let mut data = zeroed(page)?;
            let have = len.saturating_sub(at).min(page);
            data[..have].copy_from_slice(&buf[at..at + have]);
            self.cache.insert_clean(first + k, data);
        }
        Ok(())
    }

    /// redb's read of region bytes `offset..offset+out.len()` (checked by the caller): from the
    /// cache, loading each run of missing pages with one device read.
    fn cached_read(&mut self, offset: u64, out: &mut [u8]) -> Result<(), RegionError> {
        if out.is_empty() {
            return Ok(());
        }
        let page = self.cache.page as u64;
        let first = offset / page;
        let last = (offset + out.len() as u64 - 1) / page;
        let mut idx = first;
        while idx <= last {
            if self.cache.pages.contains_key(&idx) {
                self.stats.cache_hits += 1;
                idx += 1;
                continue;
            }
            let mut end = idx + 1;
            while end <= last
                && !self.cache.pages.contains_key(&end)
                && (end - idx) * page < CHUNK_BYTES as u64
            {
                end += 1;
            }
            self.load(idx, end - idx)?;
            idx = end;
        }
        // Copy out. Pages loaded above may have evicted earlier ones of this read only if the
        // read is larger than the whole cache: those are read again, straight from the device.
        let mut done = 0usize;
        while done < out.len() {
            let pos = offset + done as u64;
            let (idx, within) = (pos / page, (pos % page) as usize);
            let n = (page as usize - within).min(out.len() - done);
            match self.cache.pages.get(&idx) {
                Some(p) => out[done..done + n].copy_from_slice(&p.data[within..within + n]),
                None => {
                    read_bytes(
                        &mut self.dev,
                        self.geo.sector,
                        SUPERBLOCK_BYTES + pos,
                        &mut out[done..done + n],
                    )?;
                    self.stats.device_reads += 1;
                }
            }
            done += n;
        }
        Ok(())
    }

    /// redb's write (checked by the caller): into the cache, dirty. A page the write covers
    /// only in part is loaded first (counted in `rmw_sectors`), so no byte outside the range
    /// changes.
    fn cached_write(&mut self, offset: u64, data: &[u8]) -> Result<(), RegionError> {
        let page = self.cache.page as u64;
        let mut done = 0usize;
        while done < data.len() {
            let pos = offset + done as u64;
            let (idx, within) = (pos / page, (pos % page) as usize);
            let n = (page as usize - within).min(data.len() - done);
            if n < page as usize && !self.cache.pages.contains_key(&idx) {
                self.load(idx, 1)?;
                self.stats.rmw_sectors += 1;
            }
            let p = match self.cache.pages.get_mut(&idx) {
                Some(p) => p,
                None => {
                    self.cache.pages.insert(
                        idx,
                        CachedPage {
                            data: zeroed(page as usize)?,
                            dirty: true,
                            stamp: 0,
                        },
                    );
                    self.cache
                        .pages
                        .get_mut(&idx)
                        .ok_or(RegionError::Device(BlkError::NoMemory))?
                }
            };
            if !p.dirty {
                p.dirty = true;
                self.cache.clean -= 1;
            }
            p.data[within..within + n].copy_from_slice(&data[done..done + n]);
            self.cache.dirty.insert(idx);
            done += n;
        }
        // Work committed without a flush (the file system's) can pile up between syncs: past
        // a bound it goes to the device early, unflushed, which the durability model allows
        // (redb never overwrites a page the last durable commit reaches).
        if self.cache.dirty.len() as u64 * page > DIRTY_LIMIT {
            self.write_out()?;
        }
        Ok(())
    }

    /// Writes every dirty page to the device (no flush): contiguous pages in one request of at
    /// most `CHUNK_BYTES`, the requests in batches of up to `BATCH_BYTES` that the device may
    /// keep in flight at once (between flushes the order of writes promises nothing anyway).
    /// A request that is not whole sectors goes alone, read-modify-written. The pages stay
    /// cached, clean.
    fn write_out(&mut self) -> Result<(), RegionError> {
        let dirty = self.cache.dirty_pages();
        let page = self.cache.page;
        let ss = u64::from(self.geo.sector);
        let depth = self.dev.max_depth();
        let mut batch: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut batch_bytes = 0usize;
        let mut i = 0;
        while i < dirty.len() {
            let mut j = i + 1;
            while j < dirty.len() && dirty[j] == dirty[j - 1] + 1 && (j - i) * page < CHUNK_BYTES {
                j += 1;
            }
            let (pos, _) = self.page_window(dirty[i]);
            let (last_pos, last_n) = self.page_window(dirty[j - 1]);
            let len = (last_pos - pos) as usize + last_n;
            let mut buf = zeroed(len)?;
            for (k, idx) in dirty[i..j].iter().enumerate() {
                let at = k * page;
                let have = len.saturating_sub(at).min(page);
                if let Some(p) = self.cache.pages.get(idx) {
                    buf[at..at + have].copy_from_slice(&p.data[..have]);
                }
            }
            if pos.is_multiple_of(ss) && (len as u64).is_multiple_of(ss) {
                batch_bytes += len;
                batch.try_reserve(1).map_err(|_| BlkError::NoMemory)?;
                batch.push((pos / ss, buf));
                if batch_bytes >= BATCH_BYTES {
                    self.write_batch(&batch, depth)?;
                    batch.clear();
                    batch_bytes = 0;
                }
            } else {
                write_bytes(
                    &mut self.dev,
                    self.geo.sector,
                    pos,
                    &buf,
                    &mut self.stats.rmw_sectors,
                )?;
                self.stats.device_writes += 1;
            }
            i = j;
        }
        self.write_batch(&batch, depth)?;
        for idx in &dirty {
            self.cache.mark_clean(*idx);
        }
        self.cache.evict();
        Ok(())
    }

    /// One batch of `write_out`: whole-sector requests `(lba, bytes)`, up to `depth` in flight.
    fn write_batch(&mut self, batch: &[(u64, Vec<u8>)], depth: usize) -> Result<(), RegionError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut reqs = Vec::new();
        reqs.try_reserve_exact(batch.len())
            .map_err(|_| BlkError::NoMemory)?;
        reqs.extend(batch.iter().map(|(lba, buf)| WriteReq { lba: *lba, buf }));
        self.dev.write_batch(&reqs, depth)?;
        self.stats.device_writes += batch.len() as u64;
        self.stats.write_batches += 1;
        Ok(())
    }

    /// Writes `len` zero bytes from partition byte `pos`, at most `CHUNK_BYTES` at a time.
    fn zero_fill(&mut self, mut pos: u64, len: u64) -> Result<(), RegionError> {
        let zeros = zeroed(CHUNK_BYTES.min(usize::try_from(len).unwrap_or(CHUNK_BYTES)))?;
        let end = pos + len;
        while pos < end {
            let n = zeros
                .len()
                .min(usize::try_from(end - pos).unwrap_or(usize::MAX));
            write_bytes(
                &mut self.dev,
                self.geo.sector,
                pos,
                &zeros[..n],
                &mut self.stats.rmw_sectors,
            )?;
            pos += n as u64;
        }
        Ok(())
    }
}

impl<D: BlockDevice + Send + 'static> StorageBackend for BlockBackend<D> {
    fn len(&self) -> Result<u64, BackendError> {
        Ok(self.locked()?.sb.region_len)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), BackendError> {
        let mut guard = self.locked()?;
        let inner = &mut *guard;
        inner.span(offset, out.len())?;
        inner.stats.reads += 1;
        inner.stats.bytes_read += out.len() as u64;
        inner.cached_read(offset, out)?;
        Ok(())
    }

    fn set_len(&self, len: u64) -> Result<(), BackendError> {
        let mut inner = self.locked()?;
        inner.check_writable()?;
        inner.stats.set_lens += 1;
        inner.set_len(len)?;
        Ok(())
    }

    fn sync_data(&self) -> Result<(), BackendError> {
        let mut inner = self.locked()?;
        // A read-only backend has written nothing to make durable, and never touches the device
        // except to read.
        if !inner.writable {
            return Ok(());
        }
        inner.write_out()?;
        inner.stats.flushes += 1;
        inner.dev.flush().map_err(RegionError::Device)?;
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), BackendError> {
        let mut guard = self.locked()?;
        let inner = &mut *guard;
        inner.check_writable()?;
        inner.span(offset, data.len())?;
        inner.stats.writes += 1;
        inner.stats.bytes_written += data.len() as u64;
        inner.cached_write(offset, data)?;
        Ok(())
    }
}

/// A device's sector size and size in bytes, checked once.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    sector: u32,
    bytes: u64,
}

impl Geometry {
    fn of<D: BlockDevice + ?Sized>(dev: &D) -> Result<Geometry, OpenError> {
        let sector = dev.sector_size();
        if !sector.is_power_of_two() || !(512..=65536).contains(&sector) {
            return Err(OpenError::UnsupportedSectorSize {
                sector_size: sector,
            });
        }
        // A capacity whose byte count overflows u64 is larger than any store needs.
        let bytes = dev.capacity().saturating_mul(u64::from(sector));
        Ok(Geometry { sector, bytes })
    }
}

/// A zeroed buffer of `len` bytes, or `NoMemory` (never an allocation abort).
fn zeroed(len: usize) -> Result<Vec<u8>, BlkError> {
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|_| BlkError::NoMemory)?;
    v.resize(len, 0);
    Ok(v)
}

/// The largest multiple of `sector` that is at most `len` and at most `CHUNK_BYTES`.
fn aligned_chunk(len: usize, sector: usize) -> usize {
    len.min(CHUNK_BYTES.max(sector)) / sector * sector
}

/// Reads `out.len()` bytes at partition byte `pos`: partial first and last sectors through a
/// bounce buffer, the aligned middle straight into `out`.
fn read_bytes<D: BlockDevice + ?Sized>(
    dev: &mut D,
    sector: u32,
    mut pos: u64,
    mut out: &mut [u8],
) -> Result<(), BlkError> {
    let ss = sector as usize;
    let ss64 = u64::from(sector);
    let mut bounce: Vec<u8> = Vec::new();
    while !out.is_empty() {
        let lba = pos / ss64;
        let within = (pos % ss64) as usize;
        if within != 0 || out.len() < ss {
            if bounce.is_empty() {
                bounce = zeroed(ss)?;
            }
            dev.read(lba, &mut bounce)?;
            let n = (ss - within).min(out.len());
            out[..n].copy_from_slice(&bounce[within..within + n]);
            out = &mut out[n..];
            pos += n as u64;
        } else {
            let n = aligned_chunk(out.len(), ss);
            let (now, rest) = out.split_at_mut(n);
            dev.read(lba, now)?;
            out = rest;
            pos += n as u64;
        }
    }
    Ok(())
}

/// Writes `data` at partition byte `pos`, changing no other byte: a partial first or last sector
/// is read from the device, patched and written back (counted in `rmw`); the aligned middle
/// goes straight from `data`, at most `CHUNK_BYTES` per request.
fn write_bytes<D: BlockDevice + ?Sized>(
    dev: &mut D,
    sector: u32,
    mut pos: u64,
    mut data: &[u8],
    rmw: &mut u64,
) -> Result<(), BlkError> {
    let ss = sector as usize;
    let ss64 = u64::from(sector);
    let mut bounce: Vec<u8> = Vec::new();
    while !data.is_empty() {
        let lba = pos / ss64;
        let within = (pos % ss64) as usize;
        if within != 0 || data.len() < ss {
            if bounce.is_empty() {
                bounce = zeroed(ss)?;
            }
            dev.read(lba, &mut bounce)?;
            let n = (ss - within).min(data.len());
            bounce[within..within + n].copy_from_slice(&data[..n]);
            dev.write(lba, &bounce)?;
            *rmw += 1;
            data = &data[n..];
            pos += n as u64;
        } else {
            let n = aligned_chunk(data.len(), ss);
            dev.write(lba, &data[..n])?;
            data = &data[n..];
            pos += n as u64;
        }
    }
    Ok(())
}

fn le_u32(b: &[u8], off: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[off..off + 4]);
    u32::from_le_bytes(a)
}

fn le_u64(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(a)
}

/// splitmix64 (Steele, Lea, Flood 2014): spreads a seed into well-mixed words.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
