//! The interrupt seam every driver shares: how a driver asks the kernel for an interrupt
//! vector, and how it waits for completion without knowing whether an interrupt or a poll
//! ends the wait.
//!
//! An interrupt handler only marks its [`IrqEvent`] and sends EOI; all work happens in the
//! waiter, which halts until the event's count moves (tolerating spurious wakeups) or its
//! deadline passes.
use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::Clock;

/// What a device writes to signal an MSI or MSI-X interrupt (Intel SDM Vol. 3A §11.11).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsiMessage {
    pub address: u64,
    pub data: u32,
}

/// How an interrupt reaches its handler, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Mechanism {
    MsiX,
    Msi,
    Intx,
    Polling,
}

impl Mechanism {
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::MsiX => "MSI-X",
            Mechanism::Msi => "MSI",
            Mechanism::Intx => "INTx",
            Mechanism::Polling => "polling",
        }
    }
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Signalled by an interrupt handler, read by waiters. Lives as long as the vector is routed.
#[derive(Debug, Default)]
pub struct IrqEvent {
    count: AtomicU64,
}

impl IrqEvent {
    pub const fn new() -> Self {
        IrqEvent {
            count: AtomicU64::new(0),
        }
    }

    /// From the interrupt handler: one more interrupt arrived.
    pub fn signal(&self) {
        self.count.fetch_add(1, Ordering::Release);
    }

    /// How many interrupts have arrived so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Acquire)
    }
}

/// Who an interrupt belongs to, for the routing table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IrqOwner {
    /// PCI function as (segment << 16) | (bus << 8) | (device << 3) | function.
    pub bdf: u32,
    /// The device-side source: MSI-X table entry or MSI vector number; 0 for INTx.
    pub source: u16,
}

/// A vector the kernel set aside for one device interrupt.
#[derive(Debug, Clone, Copy)]
pub struct IrqVector {
    /// The CPU vector (0x20..=0xfe).
    pub vector: u8,
    /// The target CPU's APIC ID.
    pub apic_id: u32,
    /// What the device must write (MSI/MSI-X) to raise it.
    pub message: MsiMessage,
    /// What the handler of `vector` signals.
    pub event: &'static IrqEvent,
}

/// The kernel's interrupt layer as drivers see it.
pub trait Interrupts: Sync {
    /// A vector for a message-signalled interrupt of `owner`, named `label` in the routing
    /// table (e.g. "virtio-blk queue 0"); `None` when no vector is free or the machine has no
    /// usable local APIC.
    fn alloc_msi(&self, owner: IrqOwner, mechanism: Mechanism, label: &str) -> Option<IrqVector>;
    /// The vector and event of a PCI INTx pin (`pin` 1..=4 = INTA..INTD) of `owner`, when its
    /// route is known (ACPI `_PRT`); shared with other devices on the same line.
    fn alloc_intx(&self, owner: IrqOwner, pin: u8, label: &str) -> Option<IrqVector> {
        let _ = (owner, pin, label);
        None
    }
    /// As `alloc_msi`, but aimed at CPU `cpu` (an index as [`crate::Cpus`] counts them), so a
    /// per-CPU queue completes on the CPU that submits to it. The default has only the boot CPU.
    fn alloc_msi_on(
        &self,
        owner: IrqOwner,
        mechanism: Mechanism,
        label: &str,
        cpu: usize,
    ) -> Option<IrqVector> {
        if cpu == 0 {
            self.alloc_msi(owner, mechanism, label)
        } else {
            None
        }
    }
    /// Gives a vector back (the device no longer raises it).
    fn free(&self, v: &IrqVector);
    /// INTx only: the driver has deasserted its line (virtio: read ISR). A level-triggered
    /// line is masked from its interrupt until this call, so it cannot fire again and again
    /// before the driver runs; this unmasks it. A no-op for message-signalled vectors.
    fn end_intx(&self, v: &IrqVector) {
        let _ = v;
    }
    /// Halts the CPU until an interrupt arrives, unless `event` has already moved past
    /// `seen` (checked with interrupts off, so a wakeup between the check and the halt is
    /// never lost). A periodic tick bounds the sleep, so callers may loop on a deadline.
    fn wait_for(&self, event: &IrqEvent, seen: u64);
}

/// How a driver waits for the device to finish a request: the seam between polling and
/// sleeping until an interrupt, invisible to the driver's callers.
pub trait Completion: Send {
    /// Whether the device should send completion interrupts. A polling waiter says no, so
    /// a virtio driver sets VIRTQ_AVAIL_F_NO_INTERRUPT (virtio 1.2 §2.7.7).
    fn wants_interrupts(&self) -> bool {
        false
    }

    /// How this waiter learns of completion.
    fn mechanism(&self) -> Mechanism {
        Mechanism::Polling
    }

    /// How many interrupts this waiter has seen (0 when polling).
    fn interrupts(&self) -> u64 {
        0
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

/// Sleeps until the vector's handler signals, then checks `done()`; spurious wakeups (another
/// vector, the tick, a completion for an earlier request) just loop.
pub struct Interrupt {
    irq: &'static dyn Interrupts,
    clock: &'static (dyn Clock + Sync),
    event: &'static IrqEvent,
    mechanism: Mechanism,
    /// The event count when this waiter was made: `interrupts()` is counted from here.
    base: u64,
}

impl Interrupt {
    pub fn new(
        irq: &'static dyn Interrupts,
        clock: &'static (dyn Clock + Sync),
        vector: &IrqVector,
        mechanism: Mechanism,
    ) -> Self {
        Interrupt {
            irq,
            clock,
            event: vector.event,
            mechanism,
            base: vector.event.count(),
        }
    }
}

impl Completion for Interrupt {
    fn wants_interrupts(&self) -> bool {
        true
    }

    fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    fn interrupts(&self) -> u64 {
        self.event.count().wrapping_sub(self.base)
    }

    fn wait(&mut self, timeout_ns: u64, done: &mut dyn FnMut() -> bool) -> bool {
        let start = self.clock.now_ns();
        loop {
            // Read the count before checking: a completion that lands after the check moves
            // the count, so wait_for returns at once instead of sleeping through it.
            let seen = self.event.count();
            if done() {
                return true;
            }
            if self.clock.now_ns().saturating_sub(start) >= timeout_ns {
                return done();
            }
            self.irq.wait_for(self.event, seen);
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use core::sync::atomic::AtomicU64;
    use std::boxed::Box;

    struct StepClock(AtomicU64);
    impl Clock for StepClock {
        fn now_ns(&self) -> u64 {
            self.0.fetch_add(1_000, Ordering::Relaxed)
        }
    }

    /// A fake interrupt layer whose "halt" delivers one interrupt every `every` waits.
    struct FakeIrq {
        waits: AtomicU64,
        every: u64,
        event: &'static IrqEvent,
    }
    impl Interrupts for FakeIrq {
        fn alloc_msi(&self, _: IrqOwner, _: Mechanism, _: &str) -> Option<IrqVector> {
            Some(IrqVector {
                vector: 0x40,
                apic_id: 0,
                message: MsiMessage {
                    address: 0xfee0_0000,
                    data: 0x40,
                },
                event: self.event,
            })
        }
        fn free(&self, _: &IrqVector) {}
        fn wait_for(&self, event: &IrqEvent, seen: u64) {
            if event.count() != seen {
                return;
            }
            let n = self.waits.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_multiple_of(self.every) {
                event.signal();
            }
        }
    }

    fn leak<T>(t: T) -> &'static T {
        Box::leak(Box::new(t))
    }

    /// An event, a fake interrupt layer that signals it every `every` halts, and a waiter.
    fn setup(every: u64, m: Mechanism) -> (&'static IrqEvent, &'static FakeIrq, Interrupt) {
        let event = leak(IrqEvent::new());
        let irq = leak(FakeIrq {
            waits: AtomicU64::new(0),
            every,
            event,
        });
        let clock = leak(StepClock(AtomicU64::new(0)));
        let v = irq
            .alloc_msi(IrqOwner { bdf: 0, source: 0 }, m, "t")
            .unwrap();
        (event, irq, Interrupt::new(irq, clock, &v, m))
    }

    #[test]
    fn polling_times_out_and_succeeds() {
        let clock = leak(StepClock(AtomicU64::new(0)));
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
        assert_eq!(p.mechanism(), Mechanism::Polling);
        assert!(!p.wants_interrupts());
    }

    #[test]
    fn interrupt_waits_until_signalled_and_counts() {
        let (event, irq, mut w) = setup(3, Mechanism::MsiX);
        // Done once two interrupts have arrived: spurious wakeups in between just loop.
        assert!(w.wait(10_000_000, &mut || event.count() >= 2));
        assert_eq!(w.interrupts(), 2);
        assert_eq!(irq.waits.load(Ordering::Relaxed), 6);
        assert!(w.wants_interrupts());
        assert_eq!(w.mechanism().name(), "MSI-X");
    }

    #[test]
    fn interrupt_times_out_without_signal() {
        let (_, _, mut w) = setup(u64::MAX, Mechanism::Msi);
        assert!(!w.wait(50_000, &mut || false));
        assert_eq!(w.interrupts(), 0);
    }

    #[test]
    fn a_completion_racing_the_check_is_not_slept_through() {
        // The device completes right after done() said no: the count moved, so wait_for
        // returns without halting and the next check sees it.
        let (event, irq, mut w) = setup(u64::MAX, Mechanism::MsiX);
        let mut checks = 0;
        assert!(w.wait(10_000_000, &mut || {
            checks += 1;
            if checks == 1 {
                event.signal();
                false
            } else {
                true
            }
        }));
        assert_eq!(irq.waits.load(Ordering::Relaxed), 0);
    }
}
