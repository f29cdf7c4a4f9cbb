//! Operations over a range of sectors, done in bounded chunks: pattern write, pattern verify,
//! SHA-256. Each calls `progress(done_sectors)` after every chunk so a command can report on
//! long runs.
use crate::{BlkError, BlockDevice, Pattern};
use alloc::vec::Vec;
use sha2::{Digest, Sha256};

/// Bytes moved per device request on a device of `LARGE_DEVICE` bytes or more: large enough
/// that a driver sees multi-megabyte requests (an NVMe command needing a chained PRP list, a
/// virtio request split at its size limits).
pub const CHUNK_BYTES: u64 = 4 << 20;
/// On smaller devices (RAM disks, floppies-sized images) requests stay at this size, so that
/// progress on them stays fine-grained and buffers small.
pub const SMALL_CHUNK_BYTES: u64 = 128 << 10;
pub const LARGE_DEVICE: u64 = 64 << 20;

/// The request size range operations use on `dev`.
pub fn chunk_bytes(dev: &dyn BlockDevice) -> u64 {
    if dev.capacity().saturating_mul(dev.sector_size() as u64) >= LARGE_DEVICE {
        CHUNK_BYTES
    } else {
        SMALL_CHUNK_BYTES
    }
}

/// Where a verify first found a byte that differs from the pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mismatch {
    /// Absolute byte offset on the device.
    pub offset: u64,
    pub expected: u8,
    pub got: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyReport {
    /// Bytes compared.
    pub bytes: u64,
    /// Bytes that differ.
    pub mismatches: u64,
    pub first: Option<Mismatch>,
}

/// Checks `lba .. lba+count` against the device and returns a chunk buffer and its capacity
/// in sectors.
fn prepare(dev: &dyn BlockDevice, lba: u64, count: u64) -> Result<(Vec<u8>, u64), BlkError> {
    let ss = dev.sector_size() as u64;
    let capacity = dev.capacity();
    if count == 0 || ss == 0 {
        return Err(BlkError::BadBuffer {
            len: 0,
            sector_size: ss as u32,
        });
    }
    match lba.checked_add(count) {
        Some(end) if end <= capacity => {}
        _ => {
            return Err(BlkError::OutOfRange {
                lba,
                count,
                capacity,
            })
        }
    }
    let per_chunk = (chunk_bytes(dev) / ss).max(1);
    let len = usize::try_from(per_chunk.min(count) * ss).map_err(|_| BlkError::NoMemory)?;
    let mut buf = Vec::new();
    buf.try_reserve_exact(len).map_err(|_| BlkError::NoMemory)?;
    buf.resize(len, 0);
    Ok((buf, per_chunk))
}

/// Calls `f(lba, bytes)` for consecutive chunks of the range, then `progress(done)`.
fn for_chunks(
    dev: &mut dyn BlockDevice,
    lba: u64,
    count: u64,
    progress: &mut dyn FnMut(u64),
    mut f: impl FnMut(&mut dyn BlockDevice, u64, &mut [u8]) -> Result<(), BlkError>,
) -> Result<(), BlkError> {
    let (mut buf, per_chunk) = prepare(dev, lba, count)?;
    let ss = dev.sector_size() as u64;
    let mut done = 0;
    while done < count {
        let n = per_chunk.min(count - done);
        // n * ss <= buf.len() by construction in `prepare`.
        let chunk = buf.get_mut(..(n * ss) as usize).ok_or(BlkError::NoMemory)?;
        f(dev, lba + done, chunk)?;
        done += n;
        progress(done);
    }
    Ok(())
}

/// Writes `pattern` over `lba .. lba+count`, then flushes.
pub fn write_pattern(
    dev: &mut dyn BlockDevice,
    lba: u64,
    count: u64,
    pattern: &Pattern,
    progress: &mut dyn FnMut(u64),
) -> Result<(), BlkError> {
    if dev.read_only() {
        return Err(BlkError::ReadOnly);
    }
    let ss = dev.sector_size() as u64;
    for_chunks(dev, lba, count, progress, |dev, at, chunk| {
        pattern.fill(at.wrapping_mul(ss), chunk);
        dev.write(at, chunk)
    })?;
    dev.flush()
}

/// Compares `lba .. lba+count` with `pattern`.
pub fn verify_pattern(
    dev: &mut dyn BlockDevice,
    lba: u64,
    count: u64,
    pattern: &Pattern,
    progress: &mut dyn FnMut(u64),
) -> Result<VerifyReport, BlkError> {
    let ss = dev.sector_size() as u64;
    let mut report = VerifyReport {
        bytes: 0,
        mismatches: 0,
        first: None,
    };
    for_chunks(dev, lba, count, progress, |dev, at, chunk| {
        dev.read(at, chunk)?;
        let base = at.wrapping_mul(ss);
        for (i, got) in chunk.iter().enumerate() {
            let offset = base + i as u64;
            let expected = pattern.byte_at(offset);
            if *got != expected {
                report.mismatches += 1;
                report.first.get_or_insert(Mismatch {
                    offset,
                    expected,
                    got: *got,
                });
            }
        }
        report.bytes += chunk.len() as u64;
        Ok(())
    })?;
    Ok(report)
}

/// SHA-256 of the bytes of `lba .. lba+count`.
pub fn sha256(
    dev: &mut dyn BlockDevice,
    lba: u64,
    count: u64,
    progress: &mut dyn FnMut(u64),
) -> Result<[u8; 32], BlkError> {
    let mut h = Sha256::new();
    for_chunks(dev, lba, count, progress, |dev, at, chunk| {
        dev.read(at, chunk)?;
        h.update(&*chunk);
        Ok(())
    })?;
    let mut out = [0u8; 32];
    out.copy_from_slice(&h.finalize());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RamDisk;

    fn ram(bytes: u64, ss: u32) -> RamDisk {
        RamDisk::new(bytes, ss).unwrap()
    }

    #[test]
    fn write_then_verify_each_pattern_across_chunks() {
        for ss in [512u32, 4096] {
            let mut d = ram(1 << 20, ss);
            let count = d.capacity() - 2;
            for p in [Pattern::Byte(0xa5), Pattern::Inc, Pattern::Seed(99)] {
                let mut calls = 0;
                write_pattern(&mut d, 1, count, &p, &mut |_| calls += 1).unwrap();
                assert!(calls >= 7, "chunked: {} calls", calls);
                let r = verify_pattern(&mut d, 1, count, &p, &mut |_| {}).unwrap();
                assert_eq!(
                    r,
                    VerifyReport {
                        bytes: count * ss as u64,
                        mismatches: 0,
                        first: None
                    }
                );
                // Sectors outside the range are untouched.
                assert!(d.image()[..ss as usize].iter().all(|b| *b == 0));
                assert!(d.image()[((count + 1) * ss as u64) as usize..]
                    .iter()
                    .all(|b| *b == 0));
            }
        }
    }

    #[test]
    fn inc_pattern_is_absolute() {
        let mut d = ram(8192, 512);
        write_pattern(&mut d, 3, 2, &Pattern::Inc, &mut |_| {}).unwrap();
        assert_eq!(d.image()[3 * 512], 0);
        assert_eq!(d.image()[3 * 512 + 1], 1);
        assert_eq!(d.image()[3 * 512 + 300], (1536 + 300) as u8);
    }

    #[test]
    fn verify_reports_first_mismatch_and_count() {
        let mut d = ram(64 * 1024, 512);
        write_pattern(&mut d, 0, 128, &Pattern::Seed(5), &mut |_| {}).unwrap();
        let mut img = d.image().to_vec();
        img[1000] ^= 0xff;
        img[40000] ^= 0x01;
        let expected = img[1000] ^ 0xff;
        let mut d = RamDisk::from_image(img, 512).unwrap();
        let r = verify_pattern(&mut d, 0, 128, &Pattern::Seed(5), &mut |_| {}).unwrap();
        assert_eq!(r.mismatches, 2);
        assert_eq!(
            r.first,
            Some(Mismatch {
                offset: 1000,
                expected,
                got: expected ^ 0xff
            })
        );
        // A range that starts after the first bad byte sees only the second.
        let r = verify_pattern(&mut d, 2, 126, &Pattern::Seed(5), &mut |_| {}).unwrap();
        assert_eq!((r.mismatches, r.first.map(|m| m.offset)), (1, Some(40000)));
    }

    #[test]
    fn sha256_known_vectors() {
        // sha256 of 1024 zero bytes (python3: hashlib.sha256(bytes(1024)).hexdigest()).
        let mut d = ram(4096, 512);
        let h = sha256(&mut d, 1, 2, &mut |_| {}).unwrap();
        assert_eq!(
            hex(&h),
            "5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"
        );
        // sha256 of the bytes 0..=255 repeated: inc over the first 512 bytes.
        write_pattern(&mut d, 0, 1, &Pattern::Inc, &mut |_| {}).unwrap();
        let h = sha256(&mut d, 0, 1, &mut |_| {}).unwrap();
        assert_eq!(
            hex(&h),
            "110009dcee21620b166f3abfecb5eff7a873be729d1c2d53822e7acc5f34eb9b"
        );
    }

    fn hex(b: &[u8]) -> alloc::string::String {
        b.iter().map(|x| alloc::format!("{:02x}", x)).collect()
    }

    #[test]
    fn bad_ranges_are_errors() {
        let mut d = ram(4096, 512);
        assert!(matches!(
            sha256(&mut d, 0, 0, &mut |_| {}),
            Err(BlkError::BadBuffer { .. })
        ));
        assert_eq!(
            sha256(&mut d, 7, 2, &mut |_| {}),
            Err(BlkError::OutOfRange {
                lba: 7,
                count: 2,
                capacity: 8
            })
        );
        assert!(matches!(
            sha256(&mut d, u64::MAX, 2, &mut |_| {}),
            Err(BlkError::OutOfRange { .. })
        ));
        d.set_read_only(true);
        assert_eq!(
            write_pattern(&mut d, 0, 1, &Pattern::Inc, &mut |_| {}),
            Err(BlkError::ReadOnly)
        );
    }
}
