//! A throughput/latency benchmark: sequential or random, read or write, fixed request size,
//! bounded by bytes, time and the device's end.
use crate::{pattern::splitmix64, BlkError, BlockDevice, Pattern};
use alloc::vec::Vec;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Seq,
    Rand,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    Read,
    Write,
}

impl Access {
    pub fn name(self) -> &'static str {
        match self {
            Access::Seq => "seq",
            Access::Rand => "rand",
        }
    }
}

impl Dir {
    pub fn name(self) -> &'static str {
        match self {
            Dir::Read => "read",
            Dir::Write => "write",
        }
    }
}

/// The default bounds: stop after 32 MiB or 2 s, whichever comes first.
pub const MAX_BYTES: u64 = 32 << 20;
pub const MAX_NS: u64 = 2_000_000_000;
/// The largest request we allocate a buffer for.
pub const MAX_REQUEST: u64 = 16 << 20;
/// The random offsets' PRNG seed (fixed, so runs are repeatable): "capmon" in ASCII.
pub const RAND_SEED: u64 = 0x6361_706d_6f6e;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    pub access: Access,
    pub dir: Dir,
    /// Request size in bytes: a non-zero multiple of the sector size, at most `MAX_REQUEST`.
    pub request: u64,
    pub max_bytes: u64,
    pub max_ns: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Outcome {
    pub ops: u64,
    pub bytes: u64,
    pub elapsed_ns: u64,
    /// Sum of every request's latency.
    pub latency_ns: u64,
}

impl Outcome {
    /// Throughput in tenths of a decimal megabyte (10^6 bytes) per second.
    pub fn mb_per_s_x10(&self) -> u64 {
        (self.bytes as u128 * 10_000 / self.elapsed_ns.max(1) as u128) as u64
    }

    pub fn iops(&self) -> u64 {
        (self.ops as u128 * 1_000_000_000 / self.elapsed_ns.max(1) as u128) as u64
    }

    pub fn mean_latency_us(&self) -> u64 {
        self.latency_ns / self.ops.max(1) / 1000
    }
}

/// Runs the benchmark on `dev`. `now` is a monotonic nanosecond clock; `progress` is called
/// after every request with the running totals (the caller throttles its output).
pub fn run(
    dev: &mut dyn BlockDevice,
    spec: &Spec,
    now: &dyn Fn() -> u64,
    progress: &mut dyn FnMut(&Outcome),
) -> Result<Outcome, BlkError> {
    let ss = dev.sector_size() as u64;
    let capacity = dev.capacity();
    let request = spec.request;
    if ss == 0 || request == 0 || !request.is_multiple_of(ss) || request > MAX_REQUEST {
        return Err(BlkError::BadBuffer {
            len: request as usize,
            sector_size: ss as u32,
        });
    }
    let per_request = request / ss;
    if per_request > capacity {
        return Err(BlkError::OutOfRange {
            lba: 0,
            count: per_request,
            capacity,
        });
    }
    if spec.dir == Dir::Write && dev.read_only() {
        return Err(BlkError::ReadOnly);
    }
    let mut buf = Vec::new();
    buf.try_reserve_exact(request as usize)
        .map_err(|_| BlkError::NoMemory)?;
    buf.resize(request as usize, 0);
    if spec.dir == Dir::Write {
        Pattern::Seed(RAND_SEED).fill(0, &mut buf);
    }
    let slots = capacity / per_request;
    let mut out = Outcome::default();
    let start = now();
    let mut k = 0u64;
    // Bounded by max_bytes / request iterations even if the clock stands still. The clock is
    // read twice per request (it may cost a division): the end of one request is the elapsed
    // time the loop checks.
    while out.bytes < spec.max_bytes && out.elapsed_ns < spec.max_ns {
        let lba = match spec.access {
            Access::Seq => {
                let lba = k * per_request;
                if lba + per_request > capacity {
                    break;
                }
                lba
            }
            Access::Rand => splitmix64(RAND_SEED, k) % slots * per_request,
        };
        k += 1;
        let t0 = now();
        match spec.dir {
            Dir::Read => dev.read(lba, &mut buf)?,
            Dir::Write => dev.write(lba, &buf)?,
        }
        let t1 = now();
        out.latency_ns += t1.saturating_sub(t0);
        out.ops += 1;
        out.bytes += request;
        out.elapsed_ns = t1.saturating_sub(start);
        progress(&out);
    }
    if spec.dir == Dir::Write {
        dev.flush()?;
    }
    out.elapsed_ns = now().saturating_sub(start).max(1);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RamDisk;
    use core::cell::Cell;

    fn spec(access: Access, dir: Dir, request: u64) -> Spec {
        Spec {
            access,
            dir,
            request,
            max_bytes: MAX_BYTES,
            max_ns: MAX_NS,
        }
    }

    #[test]
    fn seq_read_stops_at_device_end() {
        let mut d = RamDisk::new(4 << 20, 512).unwrap();
        let t = Cell::new(0u64);
        let now = || {
            t.set(t.get() + 1000);
            t.get()
        };
        let mut calls = 0;
        let o = run(
            &mut d,
            &spec(Access::Seq, Dir::Read, 1 << 20),
            &now,
            &mut |_| calls += 1,
        )
        .unwrap();
        assert_eq!((o.ops, o.bytes, calls), (4, 4 << 20, 4));
        // Each request takes 1 µs of fake time.
        assert_eq!(o.mean_latency_us(), 1);
        assert!(o.elapsed_ns > 0 && o.iops() > 0 && o.mb_per_s_x10() > 0);
    }

    #[test]
    fn rand_write_is_bounded_by_bytes_and_stays_aligned() {
        let mut d = RamDisk::new(1 << 20, 4096).unwrap();
        let t = Cell::new(0u64);
        let now = || t.get();
        let o = run(
            &mut d,
            &spec(Access::Rand, Dir::Write, 8192),
            &now,
            &mut |_| {},
        )
        .unwrap();
        assert_eq!(o.bytes, MAX_BYTES);
        assert_eq!(o.ops, MAX_BYTES / 8192);
        // Every 8 KiB slot written holds the seed pattern of offset 0, never a torn request.
        let img = d.image();
        let mut first = [0u8; 8192];
        Pattern::Seed(RAND_SEED).fill(0, &mut first);
        let written = img.chunks(8192).filter(|c| *c == &first[..]).count();
        let untouched = img
            .chunks(8192)
            .filter(|c| c.iter().all(|b| *b == 0))
            .count();
        assert_eq!(written + untouched, 128);
        assert!(written > 64, "random offsets spread: {}", written);
    }

    #[test]
    fn time_bound_and_bad_requests() {
        let mut d = RamDisk::new(1 << 20, 512).unwrap();
        let t = Cell::new(0u64);
        let now = || {
            t.set(t.get() + 100_000_000);
            t.get()
        };
        let o = run(
            &mut d,
            &spec(Access::Rand, Dir::Read, 4096),
            &now,
            &mut |_| {},
        )
        .unwrap();
        // Two clock reads per request, 100 ms each: 2 s are up after 10 of 8192 requests.
        assert_eq!(o.ops, 10, "stopped by time");
        let z = || 0;
        assert!(run(&mut d, &spec(Access::Seq, Dir::Read, 1000), &z, &mut |_| {}).is_err());
        assert!(run(
            &mut d,
            &spec(Access::Seq, Dir::Read, 2 << 20),
            &z,
            &mut |_| {}
        )
        .is_err());
        d.set_read_only(true);
        assert_eq!(
            run(
                &mut d,
                &spec(Access::Seq, Dir::Write, 4096),
                &z,
                &mut |_| {}
            ),
            Err(BlkError::ReadOnly)
        );
    }
}
