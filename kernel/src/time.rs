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

/// Measures the TSC frequency by counting TSC ticks over a PIT channel 2 one-shot.
pub fn init() {
    TSC_BOOT.store(rdtsc(), Ordering::Relaxed);
    let ticks = (PIT_HZ * CALIBRATE_MS / 1000) as u16;
    // SAFETY: ports 0x42/0x43/0x61 are the PIT channel 2 and its gate; nothing else uses them.
    let hz = unsafe {
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
        gate.write(g & !0x01);
        gate.write(g | 0x01);
        let start = rdtsc();
        let mut spins: u64 = 0;
        while gate.read() & 0x20 == 0 {
            spins += 1;
            if spins > 100_000_000 {
                break;
            }
        }
        let end = rdtsc();
        (end - start) * 1000 / CALIBRATE_MS
    };
    // A broken PIT (or none) must not leave time at zero: assume 1 GHz and say so later.
    TSC_HZ.store(
        if hz < 1_000_000 { 1_000_000_000 } else { hz },
        Ordering::Relaxed,
    );
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
