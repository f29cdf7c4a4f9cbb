//! Monotonic time from the TSC, calibrated against PIT channel 2 at boot.
use core::sync::atomic::{AtomicU64, Ordering};
use x86_64::instructions::port::Port;

static TSC_HZ: AtomicU64 = AtomicU64::new(0);
static TSC_BOOT: AtomicU64 = AtomicU64::new(0);

/// The PIT's input clock (8254 datasheet): 1.193182 MHz.
const PIT_HZ: u64 = 1_193_182;
/// Calibration window: 10 ms keeps boot fast and the error under 0.1 %.
const CALIBRATE_MS: u64 = 10;

pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no side effects; every x86_64 CPU has it.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// One PIT channel 2 one-shot of CALIBRATE_MS, timed by the TSC: the TSC ticks it took, and
/// the TSC ticks the start took (the gate restart is bracketed by two TSC reads).
fn pit_window() -> Option<(u64, u64)> {
    let ticks = (PIT_HZ * CALIBRATE_MS / 1000) as u16;
    // SAFETY: ports 0x42/0x43/0x61 are the PIT channel 2 and its gate; nothing else uses them.
    unsafe {
        let mut gate = Port::<u8>::new(0x61);
        let mut cmd = Port::<u8>::new(0x43);
        let mut ch2 = Port::<u8>::new(0x42);
        let g = gate.read();
        gate.write((g & !0x02) | 0x01); // gate on, speaker off
        cmd.write(0b1011_0000); // channel 2, lobyte/hibyte, mode 0, binary
        ch2.write(ticks as u8);
        ch2.write((ticks >> 8) as u8);
        // Restart the count by toggling the gate.
        let g = gate.read();
        let s0 = rdtsc();
        gate.write(g & !0x01);
        gate.write(g | 0x01);
        let s1 = rdtsc();
        let mut spins: u64 = 0;
        while gate.read() & 0x20 == 0 {
            spins += 1;
            if spins > 100_000_000 {
                return None;
            }
        }
        let end = rdtsc();
        Some((end.wrapping_sub(s1), s1.wrapping_sub(s0)))
    }
}

/// Measures the TSC frequency over PIT one-shots. A stall of the CPU (an emulator starving
/// this vCPU, an SMI) only ever makes a window look longer, so of up to five windows whose
/// start was quick the shortest counts.
fn calibrate() -> u64 {
    let mut best: Option<u64> = None;
    for _ in 0..5 {
        let Some((d, start)) = pit_window() else {
            continue;
        };
        if start > d / 50 {
            continue; // the start itself stalled: this window says nothing
        }
        best = Some(best.map_or(d, |b| b.min(d)));
    }
    let hz = best.map_or(0, |d| d * 1000 / CALIBRATE_MS);
    // A broken PIT (or none) must not leave time at zero: assume 1 GHz.
    if hz < 1_000_000 {
        1_000_000_000
    } else {
        hz
    }
}

/// Starts the clock and measures the TSC frequency.
pub fn init() {
    TSC_BOOT.store(rdtsc(), Ordering::Relaxed);
    TSC_HZ.store(calibrate(), Ordering::Relaxed);
}

/// Measures the TSC frequency again (after other CPUs that starved this one were stopped);
/// uptime keeps counting from boot.
pub fn recalibrate() {
    TSC_HZ.store(calibrate(), Ordering::Relaxed);
}

pub fn tsc_hz() -> u64 {
    TSC_HZ.load(Ordering::Relaxed)
}

/// Nanoseconds since `init`.
pub fn now_ns() -> u64 {
    let hz = tsc_hz().max(1);
    let d = rdtsc().wrapping_sub(TSC_BOOT.load(Ordering::Relaxed));
    ((d as u128) * 1_000_000_000 / hz as u128) as u64
}

pub struct TscClock;

impl capmon_hal::Clock for TscClock {
    fn now_ns(&self) -> u64 {
        now_ns()
    }
}

/// Busy-waits `us` microseconds.
pub fn delay_us(us: u64) {
    let end = now_ns() + us * 1000;
    while now_ns() < end {
        core::hint::spin_loop();
    }
}
