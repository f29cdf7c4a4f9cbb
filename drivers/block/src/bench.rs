//! A throughput/latency benchmark: sequential or random, read or write, fixed request size,
//! bounded by bytes, time and the device's end. Reads may keep several requests in flight
//! (`Spec::depth`): they go to the device in batches through `BlockDevice::read_batch`.
use crate::{pattern::splitmix64, BlkError, BlockDevice, Pattern, ReadReq};
use alloc::format;
use alloc::string::String;
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
/// The deepest queue `run` asks for.
pub const MAX_DEPTH: usize = 256;
/// Above queue depth 1, requests go to the device in batches of this many...
pub const BATCH: u64 = 128;
/// ...fewer where their buffers would take more than this (but never fewer than the depth),
/// and fewer where the byte bound or the device's end comes first.
pub const BATCH_BYTES: u64 = 8 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    pub access: Access,
    pub dir: Dir,
    /// Request size in bytes: a non-zero multiple of the sector size, at most `MAX_REQUEST`.
    pub request: u64,
    pub max_bytes: u64,
    pub max_ns: u64,
    /// Requests kept in flight, `1..=MAX_DEPTH`; above 1 only for reads.
    pub depth: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Outcome {
    pub ops: u64,
    pub bytes: u64,
    pub elapsed_ns: u64,
    /// Sum of every request's latency (above queue depth 1 an estimate: see `run`).
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
/// after every request (every batch above queue depth 1) with the running totals (the caller
/// throttles its output).
///
/// The k-th request goes to the k-th offset whatever the depth (sequential, or the k-th output
/// of splitmix64 seeded with `RAND_SEED`), so every depth reads the same sectors in the same
/// order.
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
    if spec.depth == 0 || spec.depth > MAX_DEPTH {
        return Err(BlkError::Other(format!(
            "queue depth {} is not in 1..={}",
            spec.depth, MAX_DEPTH
        )));
    }
    if spec.dir == Dir::Write && spec.depth > 1 {
        return Err(BlkError::Other(String::from(
            "a queue depth above 1 is for reads only",
        )));
    }
    if spec.dir == Dir::Write && dev.read_only() {
        return Err(BlkError::ReadOnly);
    }
    let offsets = Offsets {
        access: spec.access,
        per_request,
        capacity,
        slots: capacity / per_request,
    };
    let batch = batch_len(spec);
    let mut buf = Vec::new();
    buf.try_reserve_exact((batch * request) as usize)
        .map_err(|_| BlkError::NoMemory)?;
    buf.resize((batch * request) as usize, 0);
    if spec.dir == Dir::Write {
        Pattern::Seed(RAND_SEED).fill(0, &mut buf);
    }
    // What the device really keeps in flight: no more than it can.
    let device_depth = spec.depth.min(dev.max_depth().max(1)) as u64;
    let mut out = Outcome::default();
    let start = now();
    let mut k = 0u64;
    // Bounded by max_bytes / request requests even if the clock stands still. The clock is
    // read twice per request (per batch above depth 1; it may cost a division): the end of one
    // is the elapsed time the loop checks.
    while out.bytes < spec.max_bytes && out.elapsed_ns < spec.max_ns {
        let t0;
        let n = if spec.depth == 1 {
            let Some(lba) = offsets.lba(k) else { break };
            k += 1;
            t0 = now();
            match spec.dir {
                Dir::Read => dev.read(lba, &mut buf)?,
                Dir::Write => dev.write(lba, &buf)?,
            }
            1
        } else {
            let want = (spec.max_bytes - out.bytes).div_ceil(request).min(batch);
            let mut reqs = Vec::new();
            reqs.try_reserve_exact(want as usize)
                .map_err(|_| BlkError::NoMemory)?;
            for chunk in buf.chunks_exact_mut(request as usize).take(want as usize) {
                let Some(lba) = offsets.lba(k) else { break };
                k += 1;
                reqs.push(ReadReq { lba, buf: chunk });
            }
            if reqs.is_empty() {
                break;
            }
            t0 = now();
            dev.read_batch(&mut reqs, spec.depth)?;
            reqs.len() as u64
        };
        let t1 = now();
        // Above depth 1 requests overlap, so no one request's latency can be timed alone.
        // Little's law (requests in flight = throughput * latency) gives their mean instead:
        // with `inflight` requests in flight all along, the batch's n requests took
        // took * inflight / n each, so together took * inflight. (It overstates a little: the
        // queue fills at the start of a batch and drains at its end.) At depth 1 it is exact.
        let inflight = device_depth.min(n);
        out.latency_ns += t1.saturating_sub(t0).saturating_mul(inflight);
        out.ops += n;
        out.bytes += n * request;
        out.elapsed_ns = t1.saturating_sub(start);
        progress(&out);
    }
    if spec.dir == Dir::Write {
        dev.flush()?;
    }
    out.elapsed_ns = now().saturating_sub(start).max(1);
    Ok(out)
}

/// Requests per batch above queue depth 1 (1 at depth 1): `BATCH`, or as many as fit in
/// `BATCH_BYTES` but at least `depth`, and no more than the byte bound needs.
pub fn batch_len(spec: &Spec) -> u64 {
    if spec.depth <= 1 {
        return 1;
    }
    let request = spec.request.max(1);
    BATCH
        .min((BATCH_BYTES / request).max(spec.depth as u64))
        .min(spec.max_bytes.div_ceil(request))
        .max(1)
}

/// Where the k-th request goes.
struct Offsets {
    access: Access,
    per_request: u64,
    capacity: u64,
    /// Request-sized slots on the device (random offsets are slot-aligned).
    slots: u64,
}

impl Offsets {
    /// The k-th request's first sector; `None` past the device's end (sequential only).
    fn lba(&self, k: u64) -> Option<u64> {
        match self.access {
            Access::Seq => {
                let lba = k * self.per_request;
                (lba + self.per_request <= self.capacity).then_some(lba)
            }
            Access::Rand => Some(splitmix64(RAND_SEED, k) % self.slots * self.per_request),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdev::{Log, Recorder};
    use crate::RamDisk;
    use alloc::rc::Rc;
    use alloc::vec;
    use core::cell::Cell;

    fn spec(access: Access, dir: Dir, request: u64) -> Spec {
        Spec {
            access,
            dir,
            request,
            max_bytes: MAX_BYTES,
            max_ns: MAX_NS,
            depth: 1,
        }
    }

    /// A clock that advances `step` ns each time it is read.
    fn stepping(t: &Cell<u64>, step: u64) -> impl Fn() -> u64 + '_ {
        move || {
            t.set(t.get() + step);
            t.get()
        }
    }

    #[test]
    fn seq_read_stops_at_device_end() {
        let mut d = RamDisk::new(4 << 20, 512).unwrap();
        let t = Cell::new(0u64);
        let now = stepping(&t, 1000);
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
        let now = stepping(&t, 100_000_000);
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

    fn qd(access: Access, request: u64, depth: usize) -> Spec {
        Spec {
            depth,
            ..spec(access, Dir::Read, request)
        }
    }

    /// Runs `spec` on a disk of `bytes` that reads in 100 µs of fake time, `max_depth` at
    /// once: the outcome, what the disk was asked, and how often progress was called.
    fn recorded(bytes: u64, max_depth: usize, spec: &Spec) -> (Outcome, Log, usize) {
        let t = Rc::new(Cell::new(0u64));
        let disk = RamDisk::new(bytes, 512).unwrap();
        let mut d = Recorder::new(disk, max_depth).timed(t.clone(), 100_000);
        let mut calls = 0;
        let o = run(&mut d, spec, &|| t.get(), &mut |_| calls += 1).unwrap();
        let log = d.log.take();
        (o, log, calls)
    }

    #[test]
    fn queue_depth_reads_the_same_offsets_in_batches() {
        let (o1, one, _) = recorded(8 << 20, 64, &qd(Access::Rand, 4096, 1));
        let (o32, deep, calls) = recorded(8 << 20, 64, &qd(Access::Rand, 4096, 32));
        assert_eq!((o1.ops, o32.ops), (8192, 8192));
        assert_eq!(o1.bytes, o32.bytes);
        assert!(one.batches.is_empty());
        assert_eq!(one.lbas, deep.lbas, "the same offsets in the same order");
        // 8192 requests in batches of 128 at depth 32, progress after each.
        assert_eq!(deep.batch_sizes(), [(128, 32); 64]);
        assert_eq!(calls, 64);
        // QD1: 100 µs each. QD32: 128 requests in 4 rounds of 32 = 400 µs a batch, so
        // Little's law gives 400 µs * 32 / 128 = 100 µs each, at 32 times the IOPS.
        assert_eq!(o1.mean_latency_us(), 100);
        assert_eq!(o32.mean_latency_us(), 100);
        assert_eq!((o1.iops(), o32.iops()), (10_000, 320_000));
        // The device keeps 4 in flight whatever is asked: 32 rounds of 4 a batch, and the
        // latency counts that depth, not the one asked.
        let (o, d, _) = recorded(8 << 20, 4, &qd(Access::Rand, 4096, 32));
        assert_eq!((o.mean_latency_us(), o.iops()), (100, 40_000));
        assert_eq!(d.batch_sizes(), [(128, 32); 64]);
    }

    #[test]
    fn batches_are_bounded_by_bytes_memory_and_the_device_end() {
        // 1 MiB requests: 8 fit in BATCH_BYTES, but a batch holds at least the depth.
        let (o, d, _) = recorded(64 << 20, 64, &qd(Access::Seq, 1 << 20, 32));
        assert_eq!((o.ops, d.batch_sizes()), (32, vec![(32, 32)]));
        let (_, d, _) = recorded(64 << 20, 64, &qd(Access::Rand, 1 << 20, 2));
        assert_eq!(d.batch_sizes(), [(8, 2); 4]);
        // A byte bound that is not a multiple of the request: rounded up, as at depth 1.
        let s = Spec {
            max_bytes: 100 * 1024 + 1,
            ..qd(Access::Rand, 4096, 8)
        };
        assert_eq!(batch_len(&s), 26);
        let (o, d, _) = recorded(8 << 20, 64, &s);
        assert_eq!((o.ops, d.batch_sizes()), (26, vec![(26, 8)]));
        // Sequential reads stop at the device's end, mid-batch: 4 MiB of 16 KiB is 256.
        let (o, d, _) = recorded(4 << 20, 64, &qd(Access::Seq, 16384, 16));
        assert_eq!(o.ops, 256);
        assert_eq!(d.batch_sizes(), [(128, 16), (128, 16)]);
        let want: Vec<u64> = (0..256).map(|k| k * 32).collect();
        assert_eq!(d.lbas, want);
    }

    #[test]
    fn batches_stop_on_time_and_bad_depths_are_refused() {
        let mut d = RamDisk::new(1 << 20, 512).unwrap();
        let t = Cell::new(0u64);
        let now = stepping(&t, 100_000_000);
        // Two clock reads per batch, 100 ms each: 2 s are up after 10 batches of 128.
        let o = run(&mut d, &qd(Access::Rand, 4096, 4), &now, &mut |_| {}).unwrap();
        assert_eq!(o.ops, 10 * 128, "stopped by time");
        // A RAM disk keeps one request in flight (max_depth 1): 100 ms / 128 each.
        assert_eq!(o.mean_latency_us(), 100_000 / 128);
        let z = || 0;
        for depth in [0, MAX_DEPTH + 1] {
            assert!(matches!(
                run(&mut d, &qd(Access::Rand, 4096, depth), &z, &mut |_| {}),
                Err(BlkError::Other(_))
            ));
        }
        let w = Spec {
            depth: 2,
            ..spec(Access::Seq, Dir::Write, 4096)
        };
        assert!(matches!(
            run(&mut d, &w, &z, &mut |_| {}),
            Err(BlkError::Other(_))
        ));
        assert_eq!(d.image().iter().filter(|b| **b != 0).count(), 0);
    }
}
