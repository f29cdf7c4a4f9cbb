//! How a driver waits for the device to use buffers: the seam between "poll the used ring" today
//! and "sleep until the MSI-X vector fires" later, invisible to the driver's callers.
use capmon_hal::Clock;

pub trait Completion: Send {
    /// Whether the device should send used-buffer notifications. A polling waiter says no, so
    /// the driver sets VIRTQ_AVAIL_F_NO_INTERRUPT (virtio 1.2 §2.7.7).
    fn wants_interrupts(&self) -> bool {
        false
    }

    /// Waits until `done()` is true or `timeout_ns` has passed; returns the last `done()`.
    fn wait(&mut self, timeout_ns: u64, done: &mut dyn FnMut() -> bool) -> bool;
}

/// Busy-polls `done()`, reading the clock only every few hundred polls to keep the loop tight.
pub struct Polling {
    clock: &'static (dyn Clock + Sync),
}

impl Polling {
    /// How many polls between clock reads.
    const POLLS_PER_CLOCK_READ: u32 = 256;

    pub fn new(clock: &'static (dyn Clock + Sync)) -> Self {
        Polling { clock }
    }
}

impl Completion for Polling {
    fn wait(&mut self, timeout_ns: u64, done: &mut dyn FnMut() -> bool) -> bool {
        if done() {
            return true;
        }
        let start = self.clock.now_ns();
        loop {
            for _ in 0..Self::POLLS_PER_CLOCK_READ {
                if done() {
                    return true;
                }
                core::hint::spin_loop();
            }
            if self.clock.now_ns().saturating_sub(start) >= timeout_ns {
                return done();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakeClock;

    #[test]
    fn polling_times_out_and_succeeds() {
        let clock: &'static FakeClock =
            std::boxed::Box::leak(std::boxed::Box::new(FakeClock::new(1_000)));
        let mut p = Polling::new(clock);
        let mut calls = 0u32;
        assert!(!p.wait(1_000_000, &mut || {
            calls += 1;
            false
        }));
        assert!(calls > 256);
        let mut n = 0;
        assert!(p.wait(1_000_000, &mut || {
            n += 1;
            n == 10
        }));
    }
}
