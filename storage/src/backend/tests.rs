//! Host tests of the superblock, the open checks, the backend's byte-range promises (against a
//! `Vec<u8>` model) and redb end to end, all over `RamDisk`s with 512- and 4096-byte sectors.
use super::*;
use alloc::string::{String, ToString};
use alloc::vec;
use capmon_block::{BlkInfo, RamDisk};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use redb::{ReadableDatabase, ReadableTable, TableDefinition};

const MIB: u64 = 1 << 20;
const SECTOR_SIZES: [u32; 2] = [512, 4096];

/// splitmix64 as a test random source (no rand crate).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        splitmix64(&mut self.0)
    }
    /// Uniform-ish in `0..n` (`n > 0`).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let w = self.next().to_le_bytes();
            chunk.copy_from_slice(&w[..chunk.len()]);
        }
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        self.fill(&mut v);
        v
    }
}

/// Counts what reaches the wrapped device; the counters are shared so they outlive the move
/// into a backend. With `fail` set, every read, write and flush fails.
struct Probe<D> {
    dev: D,
    writes: Arc<AtomicU64>,
    flushes: Arc<AtomicU64>,
    /// The largest read or write request, in bytes.
    largest: Arc<AtomicU64>,
    fail: Arc<AtomicBool>,
}

impl<D> Probe<D> {
    fn new(dev: D) -> Self {
        Probe {
            dev,
            writes: Arc::default(),
            flushes: Arc::default(),
            largest: Arc::default(),
            fail: Arc::default(),
        }
    }
    fn check(&self) -> Result<(), BlkError> {
        if self.fail.load(Ordering::SeqCst) {
            Err(BlkError::Device {
                status: 0x281,
                what: "unrecovered read error",
            })
        } else {
            Ok(())
        }
    }
}

impl<D: BlockDevice> BlockDevice for Probe<D> {
    fn sector_size(&self) -> u32 {
        self.dev.sector_size()
    }
    fn capacity(&self) -> u64 {
        self.dev.capacity()
    }
    fn read_only(&self) -> bool {
        self.dev.read_only()
    }
    fn info(&self) -> BlkInfo {
        self.dev.info()
    }
    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), BlkError> {
        self.largest.fetch_max(buf.len() as u64, Ordering::SeqCst);
        self.check()?;
        self.dev.read(lba, buf)
    }
    fn write(&mut self, lba: u64, buf: &[u8]) -> Result<(), BlkError> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.largest.fetch_max(buf.len() as u64, Ordering::SeqCst);
        self.check()?;
        self.dev.write(lba, buf)
    }
    fn flush(&mut self) -> Result<(), BlkError> {
        self.flushes.fetch_add(1, Ordering::SeqCst);
        self.check()?;
        self.dev.flush()
    }
}

/// A device with a sector size a store refuses.
struct OddSectors;

impl BlockDevice for OddSectors {
    fn sector_size(&self) -> u32 {
        520
    }
    fn capacity(&self) -> u64 {
        1 << 20
    }
    fn read_only(&self) -> bool {
        false
    }
    fn info(&self) -> BlkInfo {
        BlkInfo::default()
    }
    fn read(&mut self, _: u64, _: &mut [u8]) -> Result<(), BlkError> {
        unreachable!("never read")
    }
    fn write(&mut self, _: u64, _: &[u8]) -> Result<(), BlkError> {
        unreachable!("never written")
    }
    fn flush(&mut self) -> Result<(), BlkError> {
        unreachable!("never flushed")
    }
}

fn open<D: BlockDevice>(dev: D, writable: bool) -> BlockBackend<D> {
    match BlockBackend::open(dev, writable) {
        Ok(b) => b,
        Err((e, _)) => panic!("open: {}", e),
    }
}

fn open_err<D: BlockDevice>(dev: D, writable: bool) -> OpenError {
    match BlockBackend::open(dev, writable) {
        Ok(_) => panic!("open succeeded"),
        Err((e, _)) => e,
    }
}

fn formatted(bytes: u64, ss: u32) -> RamDisk {
    let mut d = RamDisk::new(bytes, ss).unwrap();
    format(&mut d, 42, 1_000_000_007).unwrap();
    d
}

/// A disk holding `first` at its start (zeros after), `bytes` long.
fn disk_with(first: &[u8], bytes: u64, ss: u32) -> RamDisk {
    let mut image = vec![0u8; bytes as usize];
    image[..first.len()].copy_from_slice(first);
    RamDisk::from_image(image, ss).unwrap()
}

fn probe_of(first: &[u8], ss: u32) -> Result<Superblock, OpenError> {
    probe(&mut disk_with(first, 2 * MIB, ss))
}

// ---- superblock ----

#[test]
fn superblock_round_trips_with_its_layout_pinned() {
    let sb = Superblock {
        version: FORMAT_VERSION,
        flags: 0x0102_0304,
        region_len: 0x1122_3344_5566_7788,
        partition_bytes: u64::MAX,
        store_id: *b"0123456789abcdef",
        formatted_ns: 0xdead_beef,
    };
    let b = sb.encode();
    assert_eq!(Superblock::decode(&b), Ok(sb));
    assert_eq!(&b[0..8], b"CAPMONDB");
    assert_eq!(&b[8..12], &1u32.to_le_bytes());
    assert_eq!(&b[12..16], &0x0102_0304u32.to_le_bytes());
    assert_eq!(&b[16..24], &0x1122_3344_5566_7788u64.to_le_bytes());
    assert_eq!(&b[24..32], &u64::MAX.to_le_bytes());
    assert_eq!(&b[32..48], b"0123456789abcdef");
    assert_eq!(&b[48..56], &0xdead_beefu64.to_le_bytes());
    assert_eq!(&b[56..60], &crc32fast::hash(&b[..56]).to_le_bytes());
    assert!(b[60..].iter().all(|&x| x == 0));
    // decode looks at the superblock only: a 4096-byte area with the same head decodes alike.
    let mut area = vec![0u8; 4096];
    area[..512].copy_from_slice(&b);
    area[4000] = 0x5a;
    assert_eq!(Superblock::decode(&area), Ok(sb));
}

#[test]
fn store_id_comes_from_the_seed() {
    let a = Superblock::new(MIB, 1, 5);
    assert_eq!(a, Superblock::new(MIB, 1, 5));
    assert_ne!(a.store_id, Superblock::new(MIB, 2, 5).store_id);
    assert_ne!(a.store_id, [0; 16]);
    assert_eq!(
        (a.region_len, a.partition_bytes, a.formatted_ns),
        (0, MIB, 5)
    );
}

#[test]
fn format_then_probe() {
    for ss in SECTOR_SIZES {
        let mut d = RamDisk::new(3 * MIB, ss).unwrap();
        // Whatever was on the partition before: format must clear the reserved area and leave
        // the rest alone (the region is zero-filled as redb grows it).
        let mut rng = Rng(ss.into());
        let garbage = rng.bytes(3 * MIB as usize);
        d.write(0, &garbage).unwrap();
        let sb = format(&mut d, 7, 99).unwrap();
        assert_eq!(sb, Superblock::new(3 * MIB, 7, 99));
        assert_eq!(probe(&mut d), Ok(sb));
        assert_eq!(&d.image()[..512], &sb.encode()[..]);
        assert!(d.image()[512..4096].iter().all(|&x| x == 0));
        assert_eq!(&d.image()[4096..], &garbage[4096..]);
        let b = open(d, true);
        assert_eq!(b.superblock(), sb);
        assert_eq!(b.len().unwrap(), 0);
    }
}

// ---- every OpenError ----

#[test]
fn all_zeros_is_not_formatted() {
    for ss in SECTOR_SIZES {
        assert_eq!(probe_of(&[], ss), Err(OpenError::NotFormatted));
        // A store's first 4096 bytes only: data after them does not make it formatted.
        let mut after = vec![0u8; 8192];
        after[4096] = 1;
        assert_eq!(probe_of(&after, ss), Err(OpenError::NotFormatted));
    }
    let e = open_err(RamDisk::new(MIB, 512).unwrap(), true);
    assert_eq!(e, OpenError::NotFormatted);
    assert!(e.to_string().contains("not formatted"));
}

#[test]
fn random_bytes_are_foreign_and_named_by_their_first_bytes() {
    for seed in 0..50 {
        let bytes = Rng(seed).bytes(4096);
        let e = probe_of(&bytes, 512).unwrap_err();
        let OpenError::Foreign(what) = e else {
            panic!("seed {}: {:?}", seed, e)
        };
        if let Foreign::Unknown { first } = what {
            assert_eq!(first[..], bytes[..8]);
        }
    }
    let bytes = [0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5];
    let e = probe_of(&bytes, 4096).unwrap_err();
    assert_eq!(
        e.to_string(),
        "not a capmon store: the partition holds unrecognised data (first bytes de ad be ef 01 02 03 04)"
    );
}

#[test]
fn other_file_systems_are_named() {
    // ext4: superblock at 1024, s_magic 0xEF53 at +0x38, a few plausible fields around it.
    let mut ext = vec![0u8; 4096];
    ext[1024..1028].copy_from_slice(&65536u32.to_le_bytes()); // s_inodes_count
    ext[1024 + 0x18..1024 + 0x1c].copy_from_slice(&2u32.to_le_bytes()); // s_log_block_size
    ext[1080..1082].copy_from_slice(&0xef53u16.to_le_bytes());
    // FAT16 boot sector: jump, OEM name, BPB, "FAT16   " at 54, boot signature.
    let mut fat = vec![0u8; 512];
    fat[..3].copy_from_slice(&[0xeb, 0x3c, 0x90]);
    fat[3..11].copy_from_slice(b"MSDOS5.0");
    fat[11..13].copy_from_slice(&512u16.to_le_bytes());
    fat[54..62].copy_from_slice(b"FAT16   ");
    fat[510..512].copy_from_slice(&[0x55, 0xaa]);
    // FAT32: the type string sits at 82.
    let mut fat32 = fat.clone();
    fat32[54..62].fill(0);
    fat32[82..90].copy_from_slice(b"FAT32   ");
    let mut ntfs = fat.clone();
    ntfs[3..11].copy_from_slice(b"NTFS    ");
    ntfs[54..62].fill(0);
    let mut exfat = ntfs.clone();
    exfat[3..11].copy_from_slice(b"EXFAT   ");
    let mut mbr = vec![0u8; 512];
    mbr[446] = 0x80;
    mbr[510..512].copy_from_slice(&[0x55, 0xaa]);
    let mut swap = vec![0u8; 4096];
    swap[1024] = 1;
    swap[4086..4096].copy_from_slice(b"SWAPSPACE2");
    let cases: [(&[u8], Foreign, &str); 10] = [
        (&ext, Foreign::Ext, "ext2/3/4"),
        (&fat, Foreign::Fat, "FAT"),
        (&fat32, Foreign::Fat, "FAT"),
        (&ntfs, Foreign::Ntfs, "NTFS"),
        (&exfat, Foreign::ExFat, "exFAT"),
        (&mbr, Foreign::BootSector, "boot sector"),
        (&swap, Foreign::Swap, "swap"),
        (b"XFSB\0\0\x10\0", Foreign::Xfs, "XFS"),
        (b"LUKS\xba\xbe\0\x02", Foreign::Luks, "LUKS"),
        (b"hsqs", Foreign::Squashfs, "squashfs"),
    ];
    for ss in SECTOR_SIZES {
        for (bytes, kind, name) in cases {
            let e = probe_of(bytes, ss).unwrap_err();
            assert_eq!(e, OpenError::Foreign(kind), "{}", name);
            assert!(e.to_string().contains(name), "{}", e);
        }
    }
}

#[test]
fn a_damaged_superblock_fails_its_checksum() {
    for ss in SECTOR_SIZES {
        let d = formatted(2 * MIB, ss);
        // Every byte after the magic, up to and including the checksum itself.
        for i in 8..60 {
            let mut image = d.image().to_vec();
            image[i] ^= 0x10;
            let mut bad = RamDisk::from_image(image, ss).unwrap();
            assert_eq!(probe(&mut bad), Err(OpenError::BadChecksum), "byte {}", i);
        }
    }
    assert!(OpenError::BadChecksum.to_string().contains("checksum"));
}

#[test]
fn a_newer_or_unknown_version_is_refused() {
    let sb = Superblock {
        version: 2,
        ..Superblock::new(2 * MIB, 1, 1)
    };
    let e = probe_of(&sb.encode(), 512).unwrap_err();
    assert_eq!(
        e,
        OpenError::NewerVersion {
            found: 2,
            supported: 1
        }
    );
    assert!(e.to_string().contains("version 2"), "{}", e);
    let zero = Superblock { version: 0, ..sb };
    assert_eq!(
        probe_of(&zero.encode(), 4096),
        Err(OpenError::UnknownVersion { found: 0 })
    );
}

#[test]
fn a_partition_shrunk_after_formatting_is_truncated() {
    for ss in SECTOR_SIZES {
        let big = formatted(4 * MIB, ss);
        let mut small = RamDisk::from_image(big.image()[..2 * MIB as usize].to_vec(), ss).unwrap();
        let e = probe(&mut small).unwrap_err();
        assert_eq!(
            e,
            OpenError::Truncated {
                needs: 4 * MIB,
                has: 2 * MIB
            }
        );
        assert!(e.to_string().contains("4194304"), "{}", e);
        // Grown partitions are fine: the store keeps its formatted size.
        let mut image = big.image().to_vec();
        image.resize(8 * MIB as usize, 0);
        let mut grown = RamDisk::from_image(image, ss).unwrap();
        assert_eq!(probe(&mut grown).unwrap().partition_bytes, 4 * MIB);
    }
}

#[test]
fn a_region_beyond_the_partition_is_truncated() {
    let base = Superblock::new(2 * MIB, 1, 1);
    // region_len one byte too many for the partition the superblock itself names.
    let sb = Superblock {
        region_len: 2 * MIB - SUPERBLOCK_BYTES + 1,
        ..base
    };
    assert_eq!(
        probe_of(&sb.encode(), 512),
        Err(OpenError::Truncated {
            needs: 2 * MIB + 1,
            has: 2 * MIB
        })
    );
    // A region_len near u64::MAX saturates rather than wrapping past the check.
    let huge = Superblock {
        region_len: u64::MAX - 100,
        ..base
    };
    assert_eq!(
        Superblock::decode(&huge.encode()),
        Err(OpenError::Truncated {
            needs: u64::MAX,
            has: 2 * MIB
        })
    );
    // The region exactly fills the partition: fine.
    let full = Superblock {
        region_len: 2 * MIB - SUPERBLOCK_BYTES,
        ..base
    };
    assert_eq!(probe_of(&full.encode(), 4096), Ok(full));
    // A superblock cut short (a device smaller than its fields) is truncated too.
    assert_eq!(
        Superblock::decode(&MAGIC),
        Err(OpenError::Truncated {
            needs: SUPERBLOCK_BYTES,
            has: 8
        })
    );
}

#[test]
fn format_refuses_small_and_read_only_devices() {
    let mut small = RamDisk::new(MIB - 512, 512).unwrap();
    let e = format(&mut small, 1, 1).unwrap_err();
    assert_eq!(
        e,
        OpenError::TooSmall {
            has: MIB - 512,
            needs: MIB
        }
    );
    assert!(e.to_string().contains("too small"), "{}", e);
    assert!(small.image().iter().all(|&b| b == 0));
    assert!(format(&mut RamDisk::new(MIB, 4096).unwrap(), 1, 1).is_ok());

    let mut ro = RamDisk::new(2 * MIB, 512).unwrap();
    ro.set_read_only(true);
    assert_eq!(format(&mut ro, 1, 1), Err(OpenError::ReadOnlyDevice));
}

#[test]
fn a_read_only_device_opens_only_read_only() {
    let mut d = formatted(2 * MIB, 4096);
    d.set_read_only(true);
    let (e, d) = match BlockBackend::open(d, true) {
        Err(x) => x,
        Ok(_) => panic!("writable open of a read-only device"),
    };
    assert_eq!(e, OpenError::ReadOnlyDevice);
    assert!(e.to_string().contains("read-only"));
    // The device came back intact and opens read-only.
    let b = open(d, false);
    assert_eq!(b.len().unwrap(), 0);
    // The partition's own problem is named first.
    let mut blank = RamDisk::new(MIB, 512).unwrap();
    blank.set_read_only(true);
    assert_eq!(open_err(blank, true), OpenError::NotFormatted);
}

#[test]
fn device_errors_and_odd_geometry_are_reported() {
    let p = Probe::new(formatted(2 * MIB, 512));
    p.fail.store(true, Ordering::SeqCst);
    let e = open_err(p, false);
    assert!(
        matches!(e, OpenError::Io(BlkError::Device { .. })),
        "{:?}",
        e
    );
    assert!(e.to_string().contains("unrecovered read error"), "{}", e);

    let e = probe(&mut OddSectors).unwrap_err();
    assert_eq!(e, OpenError::UnsupportedSectorSize { sector_size: 520 });
    assert!(format(&mut OddSectors, 1, 1).is_err());
    // A device smaller than the superblock area: read what there is.
    assert_eq!(
        probe(&mut RamDisk::new(512, 512).unwrap()),
        Err(OpenError::NotFormatted)
    );
}

#[test]
fn probe_only_reads() {
    for ss in SECTOR_SIZES {
        let mut p = Probe::new(formatted(2 * MIB, ss));
        probe(&mut p).unwrap();
        let _ = probe(&mut Probe::new(RamDisk::new(MIB, ss).unwrap()));
        assert_eq!(p.writes.load(Ordering::SeqCst), 0);
        assert_eq!(p.flushes.load(Ordering::SeqCst), 0);
    }
}

// ---- the backend against a model ----

/// Random `write`/`read`/`set_len` (unaligned, across sector and chunk boundaries, some out of
/// range) on a partition first filled with noise; after every operation the whole device must
/// equal the model: the superblock naming the model's length, the region, and every byte
/// outside the region as it was.
#[test]
fn random_operations_match_a_model() {
    for ss in SECTOR_SIZES {
        for seed in 1..=3u64 {
            random_operations(ss, seed);
        }
    }
}

fn random_operations(ss: u32, seed: u64) {
    let ssz = ss as u64;
    // Not a multiple of the chunk size, so zero-fill ends on a partial chunk.
    let bytes = 3 * MIB + 5 * ssz;
    let mut rng = Rng(seed * 1000 + u64::from(ss));
    let mut d = Probe::new(RamDisk::from_image(rng.bytes(bytes as usize), ss).unwrap());
    let largest = d.largest.clone();
    let mut sb = format(&mut d, seed, 0).unwrap();
    let mut model = d.dev.image().to_vec();
    let b = open(d, true);
    let room = bytes - SUPERBLOCK_BYTES;
    let ctx = |i: usize, op: &str| alloc::format!("ss {} seed {} op {} ({})", ss, seed, i, op);

    for i in 0..500 {
        let len = sb.region_len;
        let op;
        let mut set_len_ok = false;
        match rng.below(10) {
            0..=2 => {
                op = "set_len";
                let new = match rng.below(8) {
                    0 => room + 1 + rng.below(3 * ssz),
                    1 => room,
                    2 => 0,
                    3 => len.saturating_sub(rng.below(3 * ssz)),
                    _ => (len + rng.below(MIB + 3 * ssz)).min(room),
                };
                let r = b.set_len(new);
                set_len_ok = r.is_ok() && new != len;
                if new > room {
                    let msg = r.unwrap_err().to_string();
                    assert!(msg.contains("store full"), "{}: {}", ctx(i, op), msg);
                } else {
                    r.unwrap();
                    if new > len {
                        let (lo, hi) = (
                            (SUPERBLOCK_BYTES + len) as usize,
                            (SUPERBLOCK_BYTES + new) as usize,
                        );
                        model[lo..hi].fill(0);
                    }
                    sb.region_len = new;
                    model[..512].copy_from_slice(&sb.encode());
                }
            }
            3..=6 => {
                op = "write";
                let (off, n) = pick_range(&mut rng, len, ssz);
                let data = rng.bytes(n as usize);
                let r = b.write(off, &data);
                if off + n > len {
                    assert!(r.is_err(), "{}", ctx(i, op));
                } else {
                    r.unwrap();
                    let at = (SUPERBLOCK_BYTES + off) as usize;
                    model[at..at + n as usize].copy_from_slice(&data);
                }
            }
            _ => {
                op = "read";
                let (off, n) = pick_range(&mut rng, len, ssz);
                let mut out = vec![0u8; n as usize];
                let r = b.read(off, &mut out);
                if off + n > len {
                    assert!(r.is_err(), "{}", ctx(i, op));
                } else {
                    r.unwrap();
                    let at = (SUPERBLOCK_BYTES + off) as usize;
                    assert!(out == model[at..at + n as usize], "{}", ctx(i, op));
                }
            }
        }
        assert_eq!(b.len().unwrap(), sb.region_len, "{}", ctx(i, op));
        // Through the backend, the whole region always reads as the model (the cache holds
        // writes until a sync)...
        let mut all = vec![0u8; sb.region_len as usize];
        b.read(0, &mut all).unwrap();
        let at = SUPERBLOCK_BYTES as usize;
        assert!(
            all == model[at..at + all.len()],
            "{} (read back)",
            ctx(i, op)
        );
        // ...and after a sync (every few operations, and every set_len, which writes the cache
        // out first), the device itself equals the model, bytes outside the region included.
        if i % 7 == 0 {
            b.sync_data().unwrap();
        }
        if i % 7 == 0 || set_len_ok {
            let inner = b.inner.lock();
            assert!(
                inner.dev.dev.image() == &model[..],
                "{} (device)",
                ctx(i, op)
            );
        }
    }
    let s = b.stats();
    assert!(
        s.reads > 50 && s.writes > 50 && s.set_lens > 50 && s.rmw_sectors > 50,
        "{:?}",
        s
    );
    // Large writes and zero-fills were split into requests of at most 1 MiB.
    assert_eq!(largest.load(Ordering::SeqCst), MIB);
    // What the device holds is a store the next open reads back as the model says.
    let mut d = b.into_device().unwrap();
    assert_eq!(probe(&mut d), Ok(sb));
}

/// A range for a read or write in a region of `len` bytes: mostly inside it (small unaligned
/// ones around sector boundaries, sometimes over a MiB), sometimes poking past its end.
fn pick_range(rng: &mut Rng, len: u64, ss: u64) -> (u64, u64) {
    if len == 0 || rng.below(12) == 0 {
        let off = len.saturating_sub(rng.below(2 * ss));
        return (off, 1 + rng.below(2 * ss));
    }
    let n = match rng.below(10) {
        0 => rng.below(2 * MIB + 3 * ss),
        1 => ss * (1 + rng.below(4)),
        _ => 1 + rng.below(3 * ss),
    }
    .min(len);
    let off = match rng.below(3) {
        // Near a sector boundary.
        0 => (rng.below(len / ss + 1) * ss).saturating_sub(rng.below(8)),
        _ => rng.below(len - n + 1),
    }
    .min(len - n);
    (off, n)
}

#[test]
fn a_read_only_backend_refuses_changes() {
    let b = open(formatted(2 * MIB, 512), true);
    b.set_len(10_000).unwrap();
    b.write(100, b"hello").unwrap();
    b.sync_data().unwrap();
    // A writable device, opened read-only: the backend alone keeps it unchanged.
    let p = Probe::new(b.into_device().unwrap());
    let writes = p.writes.clone();
    let b = open(p, false);
    let mut out = [0u8; 5];
    b.read(100, &mut out).unwrap();
    assert_eq!(&out, b"hello");
    let e = b.write(0, b"x").unwrap_err().to_string();
    assert!(e.contains("read-only"), "{}", e);
    assert!(b.set_len(20_000).is_err());
    assert!(b.sync_data().is_ok());
    assert_eq!(b.len().unwrap(), 10_000);
    assert_eq!(writes.load(Ordering::SeqCst), 0);
}

#[test]
fn clones_share_the_device_and_into_device_waits_for_the_last() {
    let b = open(formatted(2 * MIB, 4096), true);
    let c = b.clone();
    c.set_len(4096).unwrap();
    c.write(0, &[1; 4096]).unwrap();
    assert_eq!(b.stats().writes, 1);
    assert_eq!(b.superblock().region_len, 4096);
    assert!(alloc::format!("{:?}", b).contains("region_len: 4096"));
    assert!(c.into_device().is_none());
    assert!(b.into_device().is_some());
}

// ---- redb end to end ----

const TABLE: TableDefinition<u64, &[u8]> = TableDefinition::new("things");
const ENTRIES: u64 = 3000;

/// Entry `i`'s value: a few of 100 KiB, the rest short.
fn value(i: u64) -> Vec<u8> {
    let n = if i % 500 == 7 {
        100 * 1024
    } else {
        (i % 61) as usize
    };
    Rng(i).bytes(n)
}

fn check_all<T: ReadableTable<u64, &'static [u8]>>(t: &T) {
    assert_eq!(t.len().unwrap(), ENTRIES);
    for i in 0..ENTRIES {
        let got = t.get(i).unwrap().unwrap();
        assert!(got.value() == &value(i)[..], "entry {}", i);
    }
}

#[test]
fn redb_end_to_end() {
    for ss in SECTOR_SIZES {
        redb_round_trip(ss);
    }
}

fn redb_round_trip(ss: u32) {
    // Create and fill.
    let b = open(formatted(32 * MIB, ss), true);
    let handle = b.clone();
    let db = redb::Builder::new().create_with_backend(b).unwrap();
    let tx = db.begin_write().unwrap();
    {
        let mut t = tx.open_table(TABLE).unwrap();
        for i in 0..ENTRIES {
            t.insert(i, &value(i)[..]).unwrap();
        }
    }
    tx.commit().unwrap();
    drop(db);
    let s = handle.stats();
    assert!(s.writes > 0 && s.flushes > 0 && s.set_lens > 0, "{:?}", s);
    assert!(handle.superblock().region_len > 600 * 1024);
    let d = handle.into_device().expect("redb dropped its clone");

    // Reopen writable from the same disk and read everything back.
    let b = open(d, true);
    let handle = b.clone();
    let db = redb::Builder::new().create_with_backend(b).unwrap();
    check_all(&db.begin_read().unwrap().open_table(TABLE).unwrap());
    drop(db);
    let d = handle.into_device().unwrap();

    // Read-only: redb reads it all and the device sees no write and no flush.
    let p = Probe::new(d);
    let (writes, flushes) = (p.writes.clone(), p.flushes.clone());
    let b = open(p, false);
    let handle = b.clone();
    let db = redb::Builder::new().open_read_only_with_backend(b).unwrap();
    check_all(&db.begin_read().unwrap().open_table(TABLE).unwrap());
    drop(db);
    assert_eq!(writes.load(Ordering::SeqCst), 0);
    assert_eq!(flushes.load(Ordering::SeqCst), 0);
    assert!(handle.stats().reads > 0);
    assert!(handle.into_device().is_some());
}

/// Every error a chain of `source`s holds, joined (redb wraps the backend's error).
fn chain(e: &dyn core::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(" <- ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[test]
fn redb_reports_a_full_store_as_an_error() {
    for ss in SECTOR_SIZES {
        // The smallest partition format accepts: redb may not even fit; that is an error too.
        let b = open(formatted(MIB, ss), true);
        if let Err(e) = redb::Builder::new().create_with_backend(b) {
            assert!(chain(&e).contains("store full"), "{}", chain(&e));
        }

        let b = open(formatted(4 * MIB, ss), true);
        let handle = b.clone();
        let db = redb::Builder::new().create_with_backend(b).unwrap();
        let mut committed = 0u64;
        let mut failure = None;
        for i in 0..100u64 {
            let r = (|| -> Result<(), redb::Error> {
                let tx = db.begin_write()?;
                tx.open_table(TABLE)?
                    .insert(i, &Rng(i).bytes(100 * 1024)[..])?;
                tx.commit()?;
                Ok(())
            })();
            match r {
                Ok(()) => committed += 1,
                Err(e) => {
                    failure = Some(chain(&e));
                    break;
                }
            }
        }
        let failure = failure.expect("4 MiB cannot hold 10 MiB");
        assert!(failure.contains("store full"), "{}", failure);
        assert!(committed > 5, "{} committed", committed);
        drop(db);

        // What was committed before the failure is still there.
        let d = handle.into_device().unwrap();
        let db = redb::Builder::new()
            .create_with_backend(open(d, true))
            .unwrap();
        let tx = db.begin_read().unwrap();
        let t = tx.open_table(TABLE).unwrap();
        for i in 0..committed {
            assert!(t.get(i).unwrap().unwrap().value() == &Rng(i).bytes(100 * 1024)[..]);
        }
    }
}

#[test]
fn redb_reports_device_errors_as_errors() {
    let p = Probe::new(formatted(8 * MIB, 512));
    let fail = p.fail.clone();
    let db = redb::Builder::new()
        .create_with_backend(open(p, true))
        .unwrap();
    let tx = db.begin_write().unwrap();
    tx.open_table(TABLE)
        .unwrap()
        .insert(1, &[1u8; 10][..])
        .unwrap();
    tx.commit().unwrap();
    fail.store(true, Ordering::SeqCst);
    let r = (|| -> Result<(), redb::Error> {
        let tx = db.begin_write()?;
        tx.open_table(TABLE)?.insert(2, &[2u8; 200_000][..])?;
        tx.commit()?;
        Ok(())
    })();
    let e = chain(&r.unwrap_err());
    assert!(e.contains("unrecovered read error"), "{}", e);
}
