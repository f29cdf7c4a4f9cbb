//! IPIs between running CPUs: the idle loop APs live in, the ping-pong that times a round trip,
//! NMIs sent on purpose, and the mailbox through which `on` runs a monitor command on another
//! CPU.
//!
//! Interrupts post, waiters wait: handlers only count, answer a ping or flush a TLB; a command
//! posted in the mailbox runs in the target's idle loop, never inside a handler.
use alloc::string::String;
use capmon_apic::lapic::{Delivery, Dest};
use capmon_shell::Outcome;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};

use super::percpu::{self, PerCpu, NMI_ABORT, NMI_PING, NMI_REPORT};
use super::{send_ipi, VEC_PING, VEC_PONG, VEC_TLB, VEC_WAKE};
use crate::machine::Machine;

pub fn init() {
    crate::irq::set_handler(VEC_WAKE, on_wake);
    crate::irq::set_handler(VEC_PING, on_ping);
    crate::irq::set_handler(VEC_PONG, on_pong);
    crate::irq::set_handler(VEC_TLB, super::tlb::on_ipi);
    for (vector, what) in [
        (VEC_WAKE, "IPI wake (mailbox, bring-up)"),
        (VEC_PING, "IPI ping (ipi CPU)"),
        (VEC_PONG, "IPI pong (ipi CPU)"),
        (VEC_TLB, "IPI TLB shootdown"),
    ] {
        crate::irq::add_route(crate::irq::Route {
            vector,
            source: alloc::string::String::from(what),
            mechanism: alloc::string::String::from("IPI"),
            apic_id: None,
        });
    }
}

/// An AP's life once online: run what the mailbox holds for it, otherwise halt.
pub fn idle_loop(me: &'static PerCpu) -> ! {
    loop {
        serve(me);
        crate::irq::idle_unless(|| has_work(me));
    }
}

/// Wakes `cpu` from `hlt`.
pub fn wake(cpu: &PerCpu) -> bool {
    send_ipi(Delivery::Fixed(VEC_WAKE), Dest::Id(cpu.apic_id()))
}

fn on_wake() {
    percpu::this().ipis.fetch_add(1, Ordering::Relaxed);
}

/// Who the current ping answers to, and the answers counted so far.
static PING_FROM: AtomicU32 = AtomicU32::new(0);
static PONGS: AtomicU64 = AtomicU64::new(0);

fn on_ping() {
    percpu::this().ipis.fetch_add(1, Ordering::Relaxed);
    let to = PING_FROM.load(Ordering::Acquire);
    super::lapic::lapic().send_ipi(Delivery::Fixed(VEC_PONG), Dest::Id(to), super::ICR_SPINS);
}

fn on_pong() {
    percpu::this().ipis.fetch_add(1, Ordering::Relaxed);
    PONGS.fetch_add(1, Ordering::AcqRel);
}

/// Bound of one round trip or one NMI (generous: an overloaded TCG host can take tens of
/// milliseconds to run a halted virtual CPU).
const ROUND_TIMEOUT_NS: u64 = 1_000_000_000;

/// Pings `cpu` `rounds` times (a fixed IPI there, answered by a fixed IPI back to us) and
/// returns each answered round trip in nanoseconds, and how many went unanswered. The caller
/// spins with interrupts on while it waits, so the answer is taken as soon as it arrives.
pub fn round_trips(cpu: &PerCpu, rounds: usize) -> (alloc::vec::Vec<u64>, usize) {
    let me = percpu::this();
    let mut times = alloc::vec::Vec::with_capacity(rounds);
    let mut lost = 0;
    PING_FROM.store(me.apic_id(), Ordering::Release);
    for _ in 0..rounds {
        let before = PONGS.load(Ordering::Acquire);
        let t0 = crate::time::rdtsc();
        let sent = send_ipi(Delivery::Fixed(VEC_PING), Dest::Id(cpu.apic_id()));
        let deadline = crate::time::now_ns() + ROUND_TIMEOUT_NS;
        while sent && PONGS.load(Ordering::Acquire) == before && crate::time::now_ns() < deadline {
            core::hint::spin_loop();
        }
        let t1 = crate::time::rdtsc();
        if sent && PONGS.load(Ordering::Acquire) != before {
            times.push(super::tsc_to_ns(t1 - t0));
        } else {
            lost += 1;
        }
    }
    (times, lost)
}

/// Sends `cpu` an NMI marked as a ping; the nanoseconds until its NMI count moved, or `None`
/// if it never did (the mark is then withdrawn).
pub fn nmi(cpu: &PerCpu) -> Option<u64> {
    let before = cpu.nmis.load(Ordering::Acquire);
    cpu.nmi_action.store(NMI_PING, Ordering::Release);
    let t0 = crate::time::rdtsc();
    let sent = send_ipi(Delivery::Nmi, Dest::Id(cpu.apic_id()));
    let deadline = crate::time::now_ns() + ROUND_TIMEOUT_NS;
    while sent && cpu.nmis.load(Ordering::Acquire) == before && crate::time::now_ns() < deadline {
        core::hint::spin_loop();
    }
    let t1 = crate::time::rdtsc();
    if cpu.nmis.load(Ordering::Acquire) != before {
        Some(super::tsc_to_ns(t1 - t0))
    } else {
        let _ = cpu.nmi_action.compare_exchange(
            NMI_PING,
            NMI_REPORT,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
        None
    }
}

// ---------------------------------------------------------------- the `on` mailbox

/// Mailbox states. IDLE -> POSTED (requester) -> RUNNING (target) -> DONE (target) -> IDLE
/// (requester). A requester that gives up moves POSTED -> IDLE, or RUNNING -> ABANDONED, after
/// which the target drops the job and moves ABANDONED -> IDLE itself.
const IDLE: u8 = 0;
const POSTED: u8 = 1;
const RUNNING: u8 = 2;
const DONE: u8 = 3;
const ABANDONED: u8 = 4;

/// Work handed to another CPU as a closure (`run_beside`): it runs there under that CPU's
/// fault guard and returns its report.
pub type Work = alloc::boxed::Box<dyn FnOnce() -> String + Send>;

struct Job {
    line: String,
    /// A closure to run instead of `line` (then `machine` is null).
    work: Option<Work>,
    machine: *mut Machine,
    output: String,
    outcome: Outcome,
    /// The requester's APIC ID (woken when the job is done).
    from: u32,
}

struct Mailbox {
    state: AtomicU8,
    /// The CPU index the job is for.
    target: AtomicU32,
    job: UnsafeCell<Option<Job>>,
}

// SAFETY: `job` is touched only by whoever the state says owns it: the requester in IDLE and
// DONE, the target in RUNNING and ABANDONED; the state moves with Release/Acquire.
unsafe impl Sync for Mailbox {}

static MAILBOX: Mailbox = Mailbox {
    state: AtomicU8::new(IDLE),
    target: AtomicU32::new(u32::MAX),
    job: UnsafeCell::new(None),
};

fn has_work(me: &PerCpu) -> bool {
    MAILBOX.state.load(Ordering::Acquire) == POSTED
        && MAILBOX.target.load(Ordering::Acquire) == me.index
}

/// Runs the mailbox's job if it is for this CPU.
fn serve(me: &PerCpu) {
    if MAILBOX.target.load(Ordering::Acquire) != me.index
        || MAILBOX
            .state
            .compare_exchange(POSTED, RUNNING, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
    {
        return;
    }
    // SAFETY: RUNNING: the job is ours until we move the state on.
    let slot = unsafe { &mut *MAILBOX.job.get() };
    let Some(job) = slot.as_mut() else {
        MAILBOX.state.store(IDLE, Ordering::Release);
        return;
    };
    let (output, outcome) = match job.work.take() {
        Some(work) => run_work(work),
        None => {
            // SAFETY: the requester handed us its `&mut Machine` and does not touch it until
            // the job is DONE (or it has given up, see `RunError::Wedged`).
            let m = unsafe { &mut *job.machine };
            crate::monitor::run_captured(m, &job.line)
        }
    };
    job.output = output;
    job.outcome = outcome;
    let from = job.from;
    if MAILBOX
        .state
        .compare_exchange(RUNNING, DONE, Ordering::AcqRel, Ordering::Acquire)
        .is_ok()
    {
        send_ipi(Delivery::Fixed(VEC_WAKE), Dest::Id(from));
    } else {
        // ABANDONED: nobody waits for the result.
        *slot = None;
        MAILBOX.state.store(IDLE, Ordering::Release);
    }
}

/// What `run_on` got back.
pub struct Ran {
    pub output: String,
    pub outcome: Outcome,
    /// The command overran its time and was stopped by an NMI.
    pub stopped: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunError {
    /// Only the boot CPU's monitor hands out commands (one mailbox; an AP waiting on another
    /// CPU could deadlock with it).
    NotFromAp,
    /// A previous command the requester gave up on still runs there.
    Busy(u32),
    /// The target never picked the command up.
    NotPickedUp,
    /// The command overran, and the target did not answer the NMI that should have stopped
    /// it: it is left running, and the machine it was given may still be in use.
    Wedged,
    /// `run_beside` was asked to race this CPU against itself.
    SameCpu,
}

/// Runs a closure under this CPU's fault guard, with a fault's report as its output.
fn run_work(work: Work) -> (String, Outcome) {
    let mut reports = alloc::boxed::Box::new(percpu::FaultLog::new());
    let r = crate::arch::traps::with_captured_reports(&mut reports, || {
        crate::arch::traps::guarded(work)
    });
    match r {
        Some(out) => (out, Outcome::Success),
        None => (String::from(reports.as_str()), Outcome::Faulted),
    }
}

/// Runs `there` on `cpu` and `here` on this CPU at the same time (the two race for real),
/// and returns both reports once both are done; `there` is bounded as `run_on`'s command
/// is, from the moment `here` returns. `cpu` must be another CPU.
pub fn run_beside(
    cpu: &'static PerCpu,
    there: Work,
    here: impl FnOnce() -> String,
    timeout_ns: u64,
) -> Result<(String, Ran), RunError> {
    if cpu.index == percpu::this().index {
        return Err(RunError::SameCpu);
    }
    post(
        cpu,
        Job {
            line: String::new(),
            work: Some(there),
            machine: core::ptr::null_mut(),
            output: String::new(),
            outcome: Outcome::Blank,
            from: percpu::this().apic_id(),
        },
    )?;
    let mine = here();
    Ok((mine, collect(cpu, timeout_ns)?))
}

/// Runs `line` on `cpu` with `m` and returns its captured output; waits at most `timeout_ns`,
/// then stops the command with an NMI (1 s more). On the calling CPU itself the command simply
/// runs here, captured the same way.
pub fn run_on(
    cpu: &'static PerCpu,
    m: &mut Machine,
    line: &str,
    timeout_ns: u64,
) -> Result<Ran, RunError> {
    let me = percpu::this();
    if cpu.index == me.index {
        let (output, outcome) = crate::monitor::run_captured(m, line);
        return Ok(Ran {
            output,
            outcome,
            stopped: false,
        });
    }
    post(
        cpu,
        Job {
            line: String::from(line),
            work: None,
            machine: m as *mut Machine,
            output: String::new(),
            outcome: Outcome::Blank,
            from: me.apic_id(),
        },
    )?;
    collect(cpu, timeout_ns)
}

/// Puts `job` in the mailbox for `cpu` and wakes it.
fn post(cpu: &'static PerCpu, job: Job) -> Result<(), RunError> {
    if percpu::this().index != 0 {
        return Err(RunError::NotFromAp);
    }
    if MAILBOX.state.load(Ordering::Acquire) != IDLE {
        return Err(RunError::Busy(MAILBOX.target.load(Ordering::Acquire)));
    }
    // SAFETY: IDLE: the job slot is the requester's (we are the only requester).
    unsafe { *MAILBOX.job.get() = Some(job) };
    MAILBOX.target.store(cpu.index, Ordering::Release);
    MAILBOX.state.store(POSTED, Ordering::Release);
    wake(cpu);
    Ok(())
}

/// Waits for the job posted to `cpu` (at most `timeout_ns`, then stops it with an NMI) and
/// takes its result.
fn collect(cpu: &'static PerCpu, timeout_ns: u64) -> Result<Ran, RunError> {
    let done = || {
        let s = MAILBOX.state.load(Ordering::Acquire);
        s != POSTED && s != RUNNING
    };
    let start = crate::time::now_ns();
    while !done() && crate::time::now_ns() - start < timeout_ns {
        crate::irq::idle_unless(done);
    }
    let mut stopped = false;
    if !done() {
        if MAILBOX
            .state
            .compare_exchange(POSTED, IDLE, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            // SAFETY: IDLE again and the target never took it.
            unsafe { *MAILBOX.job.get() = None };
            return Err(RunError::NotPickedUp);
        }
        // RUNNING: stop it as if it had faulted.
        cpu.nmi_action.store(NMI_ABORT, Ordering::Release);
        send_ipi(Delivery::Nmi, Dest::Id(cpu.apic_id()));
        stopped = true;
        let start = crate::time::now_ns();
        while !done() && crate::time::now_ns() - start < 1_000_000_000 {
            crate::irq::idle_unless(done);
        }
        if MAILBOX
            .state
            .compare_exchange(RUNNING, ABANDONED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            return Err(RunError::Wedged);
        }
    }
    // SAFETY: DONE: the target has let go of the job.
    let job = unsafe { (*MAILBOX.job.get()).take() };
    MAILBOX.state.store(IDLE, Ordering::Release);
    let job = job.ok_or(RunError::NotPickedUp)?;
    Ok(Ran {
        output: job.output,
        outcome: job.outcome,
        stopped,
    })
}
