//! `fs race [-n N] [CPU]`: two CPUs at once on one file and on one directory, through the same
//! root Directory capability, to show the writer policy (docs/storage.md) holds under real
//! concurrency. This CPU and CPU (default 1) each run the same four phases, meeting at a
//! barrier between them:
//! 1. N times: open `/race/f` for appending; if that works, append a block of `RECORDS`
//!    records, one commit each, then let go and wait until the other CPU tries the file (so
//!    neither can starve the other by reopening at once); if it is `busy`, read the file as it
//!    stands.
//! 2. create `/race/d/n0` .. `n{N-1}` (both CPUs the same names);
//! 3. move each to `/race/e/m{i}`; 4. remove each `/race/e/m{i}`.
//!
//! Then it checks what came out: the file is whole blocks, each of one CPU's records in order
//! (no two writers ever interleaved), as many as the opens that succeeded; a read while the
//! other CPU wrote never saw a torn record; every name had exactly one winner in each of
//! phases 2 to 4, the loser getting `exists` or `notFound` (or `busy` if the engine's lock
//! waited past its bound); both directories end empty; fsck is clean. `/race/f` stays for the
//! host tool to check.
use crate::store::{err, StoreHost, Work};
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use capmon_shell::{bad_arg, fail, outln, Args, CmdResult};
use capmon_storage::caps::Directory;
use capmon_storage::engine::ClockFn;
use capmon_storage::{Rights, StoreError};
use core::fmt::Write;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use spin::Mutex;

/// Records appended per hold of the writer slot.
pub const RECORDS: u64 = 8;
/// One record: `C IIIIII KK ok\n` (CPU letter, round, index in the block).
pub const RECORD_BYTES: usize = 15;
const DEFAULT_ROUNDS: u64 = 100;
const MAX_ROUNDS: u64 = 10_000;
/// How long a CPU waits at a barrier for the other before it gives the race up.
const BARRIER_NS: u64 = 60_000_000_000;
/// The longest a CPU that let go of the file waits for the other to try it (`make_way`).
const MAKE_WAY_NS: u64 = 50_000_000;

/// What a CPU got for one name in one phase.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Got {
    Won,
    Exists,
    NotFound,
    Busy,
    Other,
}

/// What one CPU did, filled in as it goes.
#[derive(Default)]
struct Side {
    held: u64,
    busy_writer: u64,
    busy_lock: u64,
    reads: u64,
    torn: Vec<String>,
    names: [Vec<Option<Got>>; 3],
    other: Vec<String>,
}

struct Race {
    root: Arc<dyn Directory>,
    rounds: u64,
    clock: ClockFn,
    arrived: AtomicU64,
    /// Set by a side that gave up, so the other stops waiting for it.
    abandoned: AtomicBool,
    /// Each side's opens of the file so far, and whether it is done with the file.
    tries: [AtomicU64; 2],
    past_file: [AtomicBool; 2],
    sides: [Mutex<Side>; 2],
}

pub fn race<S: StoreHost>(s: &mut S, a: &mut Args, o: &mut dyn Write) -> CmdResult {
    let mut rounds = DEFAULT_ROUNDS;
    let mut cpu = 1;
    while let Some(w) = a.opt_str() {
        if w == "-n" {
            rounds = a.u64("N")?;
            if !(1..=MAX_ROUNDS).contains(&rounds) {
                return Err(bad_arg!("N must be 1..={}", MAX_ROUNDS));
            }
        } else {
            cpu = w
                .parse::<usize>()
                .map_err(|_| bad_arg!("CPU '{}' is not a CPU index", w))?;
        }
    }
    a.finish()?;
    let root = s.session().fs.clone();
    for d in ["race", "race/d", "race/e"] {
        root.mkdir(d).map_err(err)?;
    }
    root.create("race/f").map_err(err)?;
    let r = Arc::new(Race {
        root: root.clone(),
        rounds,
        clock: s.store_time(),
        arrived: AtomicU64::new(0),
        abandoned: AtomicBool::new(false),
        tries: [AtomicU64::new(0), AtomicU64::new(0)],
        past_file: [AtomicBool::new(false), AtomicBool::new(false)],
        sides: [Mutex::new(Side::default()), Mutex::new(Side::default())],
    });
    let (r0, r1) = (r.clone(), r.clone());
    let here: Work = alloc::boxed::Box::new(move || run_side(&r0, 0));
    let there: Work = alloc::boxed::Box::new(move || run_side(&r1, 1));
    let t0 = s.store_clock().now_ns();
    let (mine, theirs) = match s.store_race(cpu, here, there) {
        Ok(r) => r,
        Err(e) => {
            // Nothing raced (or the other CPU faulted): take the scratch tree away again.
            let _ = root.remove("race", true);
            return Err(e);
        }
    };
    let ms = s.store_clock().now_ns().saturating_sub(t0) / 1_000_000;
    for (who, said) in [(0, mine), (cpu, theirs)] {
        if !said.is_empty() {
            return Err(fail!("CPU {}: {}", who, said.trim_end()));
        }
    }
    outln!(
        o,
        "fs race: this CPU and CPU {}, {} rounds each, on /race, in {} ms",
        cpu,
        rounds,
        ms
    );
    let mut problems = Vec::new();
    let sides = [r.sides[0].lock(), r.sides[1].lock()];
    for (i, sd) in sides.iter().enumerate() {
        for m in sd.other.iter().take(3) {
            problems.push(format!("side {}: {}", i, m));
        }
        for m in sd.torn.iter().take(3) {
            problems.push(format!("side {}: a read saw {}", i, m));
        }
    }
    check_file(&*root, &sides, o, &mut problems)?;
    check_names(&sides, rounds, o, &mut problems);
    for d in ["race/d", "race/e"] {
        let n = root.open_dir(d).map_err(err)?.list().map_err(err)?.len();
        if n != 0 {
            problems.push(format!("/{} holds {} entries at the end", d, n));
        }
    }
    drop(sides);
    if crate::store::run_fsck(s, o).is_err() {
        problems.push(String::from("fsck is not clean"));
    }
    if problems.is_empty() {
        outln!(
            o,
            "the policy held: one writer at a time, one winner per name"
        );
        Ok(())
    } else {
        for p in &problems {
            outln!(o, "VIOLATION {}", p);
        }
        Err(fail!(
            "fs race: {} violation(s) of the policy",
            problems.len()
        ))
    }
}

/// One CPU's four phases. Returns "" or why it gave up.
fn run_side(r: &Race, me: usize) -> String {
    let letter = if me == 0 { 'A' } else { 'B' };
    let mut sd = Side {
        names: [
            vec![None; r.rounds as usize],
            vec![None; r.rounds as usize],
            vec![None; r.rounds as usize],
        ],
        ..Side::default()
    };
    let mut phase = 0;
    let mut meet = |sd: &mut Side| -> bool {
        phase += 1;
        if barrier(r, phase) {
            true
        } else {
            sd.other
                .push(format!("the other CPU never reached phase {}", phase + 1));
            false
        }
    };
    // 1: the file.
    if meet(&mut sd) {
        for i in 0..r.rounds {
            r.tries[me].fetch_add(1, Ordering::AcqRel);
            match r.root.open("race/f", Rights::APPEND) {
                Ok(f) => {
                    sd.held += 1;
                    for k in 0..RECORDS {
                        if let Err(e) = f.append(&record(letter, i, k)) {
                            sd.other.push(format!("append: {}", e));
                        }
                    }
                    drop(f);
                    make_way(r, me);
                }
                Err(StoreError::Busy(m)) => {
                    if m.contains("open for writing") {
                        sd.busy_writer += 1;
                    } else {
                        sd.busy_lock += 1;
                    }
                    read_whole(r, &mut sd);
                }
                Err(e) => sd.other.push(format!("open race/f: {}", e)),
            }
        }
    }
    r.past_file[me].store(true, Ordering::Release);
    // 2-4: the names.
    for ph in 0..3 {
        if !meet(&mut sd) {
            break;
        }
        for i in 0..r.rounds {
            let res = match ph {
                0 => r.root.create(&format!("race/d/n{}", i)),
                1 => r
                    .root
                    .rename(&format!("race/d/n{}", i), &format!("race/e/m{}", i)),
                _ => r.root.remove(&format!("race/e/m{}", i), false).map(|_| ()),
            };
            let got = match res {
                Ok(()) => Got::Won,
                Err(StoreError::Exists(_)) => Got::Exists,
                Err(StoreError::NotFound(_)) => Got::NotFound,
                Err(StoreError::Busy(_)) => Got::Busy,
                Err(e) => {
                    sd.other.push(format!("phase {} name {}: {}", ph + 2, i, e));
                    Got::Other
                }
            };
            sd.names[ph][i as usize] = Some(got);
        }
    }
    let gave_up = sd.other.iter().any(|m| m.starts_with("the other CPU"));
    if gave_up {
        r.abandoned.store(true, Ordering::Release);
    }
    *r.sides[me].lock() = sd;
    String::new()
}

/// Both CPUs arrive before either goes on (at most `BARRIER_NS`); false if the other never did.
fn barrier(r: &Race, phase: u64) -> bool {
    r.arrived.fetch_add(1, Ordering::AcqRel);
    let start = (r.clock)();
    while r.arrived.load(Ordering::Acquire) < 2 * phase {
        if r.abandoned.load(Ordering::Acquire) || (r.clock)().saturating_sub(start) > BARRIER_NS {
            r.abandoned.store(true, Ordering::Release);
            return false;
        }
        core::hint::spin_loop();
    }
    true
}

/// After a hold: waits (at most `MAKE_WAY_NS`, not at all once the other CPU is past phase 1)
/// until the other CPU starts an open of the file, then races it for the reopen. Without it the
/// two loops can fall into step, this CPU reopening the moment it let go while the other, one
/// read behind, only ever finds the file held.
fn make_way(r: &Race, me: usize) {
    let other = 1 - me;
    let seen = r.tries[other].load(Ordering::Acquire);
    let start = (r.clock)();
    while r.tries[other].load(Ordering::Acquire) == seen
        && !r.past_file[other].load(Ordering::Acquire)
        && (r.clock)().saturating_sub(start) < MAKE_WAY_NS
    {
        core::hint::spin_loop();
    }
}

fn record(c: char, i: u64, k: u64) -> Vec<u8> {
    let s = format!("{} {:06} {:02} ok\n", c, i % 1_000_000, k);
    debug_assert_eq!(s.len(), RECORD_BYTES);
    s.into_bytes()
}

/// A reader while the other CPU writes: the file is whole records, the last one intact.
fn read_whole(r: &Race, sd: &mut Side) {
    let Ok(f) = r.root.open("race/f", Rights::READ) else {
        return;
    };
    let Ok(st) = f.stat() else { return };
    sd.reads += 1;
    if st.size % RECORD_BYTES as u64 != 0 {
        sd.torn
            .push(format!("a size of {} bytes, not whole records", st.size));
        return;
    }
    if st.size == 0 {
        return;
    }
    let mut last = [0u8; RECORD_BYTES];
    match f.read(st.size - RECORD_BYTES as u64, &mut last) {
        Ok(n) if n == RECORD_BYTES && parse(&last).is_some() => {}
        Ok(_) => sd.torn.push(format!(
            "a torn last record at {}",
            st.size - RECORD_BYTES as u64
        )),
        Err(e) => sd.other.push(format!("read race/f: {}", e)),
    }
}

/// `(cpu letter, round, index)` of one record.
fn parse(rec: &[u8]) -> Option<(u8, u64, u64)> {
    let s = core::str::from_utf8(rec).ok()?;
    let s = s.strip_suffix(" ok\n")?;
    let mut w = s.split(' ');
    let c = w.next().filter(|c| *c == "A" || *c == "B")?.as_bytes()[0];
    let i = w.next().filter(|x| x.len() == 6)?.parse().ok()?;
    let k = w.next().filter(|x| x.len() == 2)?.parse().ok()?;
    w.next().is_none().then_some((c, i, k))
}

/// The file against the writer policy: whole blocks, each one CPU's, as many as its holds.
fn check_file(
    root: &dyn Directory,
    sides: &[spin::MutexGuard<'_, Side>; 2],
    o: &mut dyn Write,
    problems: &mut Vec<String>,
) -> CmdResult {
    let f = root.open("race/f", Rights::READ).map_err(err)?;
    let size = f.stat().map_err(err)?.size;
    let mut data = vec![0u8; size as usize];
    let mut off = 0;
    while off < data.len() {
        let n = f.read(off as u64, &mut data[off..]).map_err(err)?;
        if n == 0 {
            break;
        }
        off += n;
    }
    let mut blocks = [0u64; 2];
    let mut bad = 0u64;
    let recs: Vec<Option<(u8, u64, u64)>> = data.chunks(RECORD_BYTES).map(parse).collect();
    for (b, blk) in recs.chunks(RECORDS as usize).enumerate() {
        let Some(Some((c, i, _))) = blk.first().copied() else {
            bad += 1;
            continue;
        };
        let whole = blk.len() == RECORDS as usize
            && blk
                .iter()
                .enumerate()
                .all(|(k, r)| *r == Some((c, i, k as u64)));
        if whole {
            blocks[(c - b'A') as usize] += 1;
        } else {
            bad += 1;
            if bad <= 3 {
                problems.push(format!(
                    "block {} of /race/f (at {}) is not one CPU's {} records in order",
                    b,
                    b * RECORDS as usize * RECORD_BYTES,
                    RECORDS
                ));
            }
        }
    }
    outln!(
        o,
        "file /race/f: {} bytes, {} blocks of {} appends: this CPU held it {} times and wrote {} \
         blocks, the other {} and {}; busy by the writer policy {} + {}, by the lock {} + {}",
        size,
        blocks[0] + blocks[1],
        RECORDS,
        sides[0].held,
        blocks[0],
        sides[1].held,
        blocks[1],
        sides[0].busy_writer,
        sides[1].busy_writer,
        sides[0].busy_lock,
        sides[1].busy_lock
    );
    outln!(
        o,
        "readers: {} + {} reads while the other CPU wrote, {} torn",
        sides[0].reads,
        sides[1].reads,
        sides[0].torn.len() + sides[1].torn.len()
    );
    if bad > 0 {
        problems.push(format!("{} block(s) of /race/f interleaved or torn", bad));
    }
    for (i, sd) in sides.iter().enumerate() {
        if blocks[i] != sd.held {
            problems.push(format!(
                "side {} held the file {} times but {} blocks are its",
                i, sd.held, blocks[i]
            ));
        }
    }
    Ok(())
}

/// Every name had one winner per phase, the loser a named refusal.
fn check_names(
    sides: &[spin::MutexGuard<'_, Side>; 2],
    rounds: u64,
    o: &mut dyn Write,
    problems: &mut Vec<String>,
) {
    const PHASES: [(&str, Got); 3] = [
        ("create /race/d/n*", Got::Exists),
        ("mv /race/d/n* /race/e/m*", Got::NotFound),
        ("rm /race/e/m*", Got::NotFound),
    ];
    for (ph, (what, loses)) in PHASES.iter().enumerate() {
        let mut won = [0u64; 2];
        let mut lost = [0u64; 2];
        let mut busy = 0u64;
        let mut bad = 0u64;
        for i in 0..rounds as usize {
            let at = |s: usize| sides[s].names[ph].get(i).copied().flatten();
            let got = [at(0), at(1)];
            for (s, g) in got.iter().enumerate() {
                match g {
                    Some(Got::Won) => won[s] += 1,
                    Some(g) if g == loses => lost[s] += 1,
                    Some(Got::Busy) => busy += 1,
                    _ => {}
                }
            }
            let winners = got.iter().filter(|g| **g == Some(Got::Won)).count();
            let ok = match got {
                [Some(Got::Won), Some(b)] | [Some(b), Some(Got::Won)] => {
                    b == *loses || b == Got::Busy
                }
                [Some(Got::Busy), Some(b)] | [Some(b), Some(Got::Busy)] => {
                    b == Got::Busy || b == *loses
                }
                _ => false,
            };
            if !ok || winners > 1 {
                bad += 1;
                if bad <= 3 {
                    problems.push(format!("{}: name {}: {:?}", what, i, got));
                }
            }
        }
        outln!(
            o,
            "{}: {} names: this CPU won {}, the other {}; {} {} + {}, busy {}",
            what,
            rounds,
            won[0],
            won[1],
            if *loses == Got::Exists {
                "exists"
            } else {
                "notFound"
            },
            lost[0],
            lost[1],
            busy
        );
        if bad > 0 {
            problems.push(format!(
                "{}: {} name(s) without exactly one winner",
                what, bad
            ));
        }
    }
}
