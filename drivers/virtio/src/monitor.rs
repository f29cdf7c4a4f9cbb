//! What the monitor can see of a virtio device while a driver owns it: negotiated features,
//! status, live per-queue counters, and how completions reach the driver (mechanism, vectors,
//! interrupts per vector).
//!
//! A driver records into a [`VirtioMonitor`]; the kernel keeps a clone for the `virtio` command,
//! so the command works even when the driver itself sits behind `dyn BlockDevice`.
use crate::{DeviceType, VirtioError};
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use capmon_hal::{IrqEvent, IrqVector, Mechanism};
use core::sync::atomic::{AtomicU16, AtomicU64, Ordering};

/// Device status bits (virtio 1.2 §2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeviceStatus(pub u8);

impl DeviceStatus {
    pub const ACKNOWLEDGE: u8 = 1;
    pub const DRIVER: u8 = 2;
    pub const DRIVER_OK: u8 = 4;
    pub const FEATURES_OK: u8 = 8;
    pub const DEVICE_NEEDS_RESET: u8 = 64;
    pub const FAILED: u8 = 128;

    const NAMES: [(u8, &'static str); 6] = [
        (Self::ACKNOWLEDGE, "ACKNOWLEDGE"),
        (Self::DRIVER, "DRIVER"),
        (Self::FEATURES_OK, "FEATURES_OK"),
        (Self::DRIVER_OK, "DRIVER_OK"),
        (Self::DEVICE_NEEDS_RESET, "NEEDS_RESET"),
        (Self::FAILED, "FAILED"),
    ];

    pub fn has(&self, bits: u8) -> bool {
        self.0 & bits == bits
    }
}

impl core::fmt::Display for DeviceStatus {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if self.0 == 0 {
            return f.write_str("reset");
        }
        let mut first = true;
        for (bit, name) in Self::NAMES {
            if self.0 & bit != 0 {
                if !first {
                    f.write_str("|")?;
                }
                first = false;
                f.write_str(name)?;
            }
        }
        let unknown = self.0 & !Self::NAMES.iter().fold(0, |m, (b, _)| m | b);
        if unknown != 0 {
            write!(f, "{}{:#x}", if first { "" } else { "|" }, unknown)?;
        }
        Ok(())
    }
}

/// Live counters of one virtqueue. The queue is their only writer; readers see a recent value.
#[derive(Debug)]
pub struct QueueCounters {
    index: u16,
    size: u16,
    avail_idx: AtomicU16,
    used_idx: AtomicU16,
    free: AtomicU16,
    notifications: AtomicU64,
    completions: AtomicU64,
}

impl QueueCounters {
    fn new(index: u16, size: u16) -> Self {
        QueueCounters {
            index,
            size,
            avail_idx: AtomicU16::new(0),
            used_idx: AtomicU16::new(0),
            free: AtomicU16::new(size),
            notifications: AtomicU64::new(0),
            completions: AtomicU64::new(0),
        }
    }

    /// The driver published its avail ring up to `avail_idx`; `notified` if it rang the doorbell.
    pub fn published(&self, avail_idx: u16, free: u16, notified: bool) {
        self.avail_idx.store(avail_idx, Ordering::Relaxed);
        self.free.store(free, Ordering::Relaxed);
        if notified {
            // Single writer: a load and a store avoid a locked read-modify-write.
            let n = self.notifications.load(Ordering::Relaxed);
            self.notifications
                .store(n.wrapping_add(1), Ordering::Relaxed);
        }
    }

    /// The driver consumed a used element; its used index is now `used_idx`.
    pub fn completed(&self, used_idx: u16, free: u16) {
        self.used_idx.store(used_idx, Ordering::Relaxed);
        self.free.store(free, Ordering::Relaxed);
        let n = self.completions.load(Ordering::Relaxed);
        self.completions.store(n.wrapping_add(1), Ordering::Relaxed);
    }

    pub fn report(&self) -> QueueReport {
        QueueReport {
            index: self.index,
            size: self.size,
            avail_idx: self.avail_idx.load(Ordering::Relaxed),
            used_idx: self.used_idx.load(Ordering::Relaxed),
            free: self.free.load(Ordering::Relaxed),
            notifications: self.notifications.load(Ordering::Relaxed),
            completions: self.completions.load(Ordering::Relaxed),
            vector: None,
        }
    }
}

/// A vector a device raises: the CPU vector and the interrupts that arrived on it since the
/// driver took it (on a shared INTx line, other devices' too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VectorReport {
    pub vector: u8,
    pub interrupts: u64,
}

/// A vector in use and its event count when the driver took it.
#[derive(Debug, Clone, Copy)]
struct VectorUse {
    vector: u8,
    event: &'static IrqEvent,
    base: u64,
}

impl VectorUse {
    fn new(v: &IrqVector) -> Self {
        VectorUse {
            vector: v.vector,
            event: v.event,
            base: v.event.count(),
        }
    }

    fn report(&self) -> VectorReport {
        VectorReport {
            vector: self.vector,
            interrupts: self.event.count().wrapping_sub(self.base),
        }
    }
}

/// A snapshot of one queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueReport {
    pub index: u16,
    pub size: u16,
    /// The driver's published avail index.
    pub avail_idx: u16,
    /// The used index the driver has consumed up to.
    pub used_idx: u16,
    /// Free descriptors.
    pub free: u16,
    /// Doorbell writes.
    pub notifications: u64,
    /// Used elements consumed.
    pub completions: u64,
    /// The vector the device raises for this queue (`None` when polled).
    pub vector: Option<VectorReport>,
}

/// A snapshot of a virtio device for the `virtio` command.
#[derive(Debug, Clone)]
pub struct Report {
    pub device_type: DeviceType,
    /// Features the device offered (0 if never read).
    pub offered: u64,
    /// Features the driver accepted.
    pub accepted: u64,
    pub status: DeviceStatus,
    /// Queues the device has (`num_queues`).
    pub num_queues: u16,
    /// Queues the driver set up.
    pub queues: Vec<QueueReport>,
    /// Why the device is not (or no longer) driven.
    pub problem: Option<VirtioError>,
    /// How the driver learns of completions.
    pub completion: Mechanism,
    /// Why better mechanisms were not used, e.g. "MSI-X: ...; INTx: ...".
    pub fallback: Option<String>,
    /// The vector the device raises for configuration changes.
    pub config_vector: Option<VectorReport>,
}

#[derive(Debug)]
struct State {
    offered: u64,
    accepted: u64,
    status: u8,
    num_queues: u16,
    queues: Vec<Arc<QueueCounters>>,
    problem: Option<VirtioError>,
    completion: Mechanism,
    fallback: Option<String>,
    config_irq: Option<VectorUse>,
    /// Kept across resets (the driver sets the same vectors again).
    queue_irqs: Vec<(u16, VectorUse)>,
}

#[derive(Debug)]
struct Shared {
    device_type: DeviceType,
    state: spin::Mutex<State>,
}

/// A shared, cheaply cloned record of one virtio device.
#[derive(Debug, Clone)]
pub struct VirtioMonitor {
    shared: Arc<Shared>,
}

impl VirtioMonitor {
    pub fn new(device_type: DeviceType) -> Self {
        VirtioMonitor {
            shared: Arc::new(Shared {
                device_type,
                state: spin::Mutex::new(State {
                    offered: 0,
                    accepted: 0,
                    status: 0,
                    num_queues: 0,
                    queues: Vec::new(),
                    problem: None,
                    completion: Mechanism::Polling,
                    fallback: None,
                    config_irq: None,
                    queue_irqs: Vec::new(),
                }),
            }),
        }
    }

    /// A record of a device that could not even be set up (e.g. legacy-only).
    pub fn failed(device_type: DeviceType, problem: VirtioError) -> Self {
        let m = Self::new(device_type);
        m.set_problem(problem);
        m
    }

    pub fn device_type(&self) -> DeviceType {
        self.shared.device_type
    }

    pub fn set_features(&self, offered: u64, accepted: u64) {
        let mut s = self.shared.state.lock();
        s.offered = offered;
        s.accepted = accepted;
    }

    pub fn set_status(&self, status: u8) {
        self.shared.state.lock().status = status;
    }

    pub fn set_num_queues(&self, n: u16) {
        self.shared.state.lock().num_queues = n;
    }

    pub fn set_problem(&self, problem: VirtioError) {
        self.shared.state.lock().problem = Some(problem);
    }

    /// Forgets the queues (after a reset); counters of new queues start at zero.
    pub fn clear_queues(&self) {
        self.shared.state.lock().queues.clear();
    }

    /// Registers a queue and returns the counters its driver updates.
    pub fn add_queue(&self, index: u16, size: u16) -> Arc<QueueCounters> {
        let c = Arc::new(QueueCounters::new(index, size));
        self.shared.state.lock().queues.push(c.clone());
        c
    }

    /// How completions reach the driver.
    pub fn set_completion(&self, mechanism: Mechanism) {
        self.shared.state.lock().completion = mechanism;
    }

    /// Why better ways than the one in use were not used (`None`: it is the best).
    pub fn set_fallback(&self, why: Option<String>) {
        self.shared.state.lock().fallback = why;
    }

    /// The vector the device raises for configuration changes (`None`: none).
    pub fn set_config_irq(&self, v: Option<&IrqVector>) {
        self.shared.state.lock().config_irq = v.map(VectorUse::new);
    }

    /// The vector the device raises for queue `index` (`None`: polled).
    pub fn set_queue_irq(&self, index: u16, v: Option<&IrqVector>) {
        let mut s = self.shared.state.lock();
        s.queue_irqs.retain(|(i, _)| *i != index);
        if let Some(v) = v {
            s.queue_irqs.push((index, VectorUse::new(v)));
        }
    }

    pub fn report(&self) -> Report {
        let s = self.shared.state.lock();
        let queue = |q: &Arc<QueueCounters>| {
            let mut r = q.report();
            r.vector = s
                .queue_irqs
                .iter()
                .find(|(i, _)| *i == r.index)
                .map(|(_, v)| v.report());
            r
        };
        Report {
            device_type: self.shared.device_type,
            offered: s.offered,
            accepted: s.accepted,
            status: DeviceStatus(s.status),
            num_queues: s.num_queues,
            queues: s.queues.iter().map(queue).collect(),
            problem: s.problem.clone(),
            completion: s.completion,
            fallback: s.fallback.clone(),
            config_vector: s.config_irq.map(|v| v.report()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

    #[test]
    fn status_names() {
        assert_eq!(format!("{}", DeviceStatus(0)), "reset");
        assert_eq!(
            format!("{}", DeviceStatus(0x0f)),
            "ACKNOWLEDGE|DRIVER|FEATURES_OK|DRIVER_OK"
        );
        assert_eq!(
            format!("{}", DeviceStatus(0x83)),
            "ACKNOWLEDGE|DRIVER|FAILED"
        );
        assert_eq!(format!("{}", DeviceStatus(0x30)), "0x30");
    }

    #[test]
    fn counters_show_in_report() {
        let m = VirtioMonitor::new(DeviceType::Block);
        let q = m.add_queue(0, 8);
        q.published(3, 5, true);
        q.completed(1, 6);
        let r = m.clone().report();
        assert_eq!(
            r.queues,
            [QueueReport {
                index: 0,
                size: 8,
                avail_idx: 3,
                used_idx: 1,
                free: 6,
                notifications: 1,
                completions: 1,
                vector: None
            }]
        );
        assert_eq!(r.completion, Mechanism::Polling);
    }

    #[test]
    fn vectors_count_interrupts_since_taken() {
        let m = VirtioMonitor::new(DeviceType::Block);
        m.add_queue(0, 8);
        let event: &'static IrqEvent =
            alloc::boxed::Box::leak(alloc::boxed::Box::new(IrqEvent::new()));
        event.signal(); // before the driver took it: not counted
        let v = IrqVector {
            vector: 0x31,
            apic_id: 0,
            message: capmon_hal::MsiMessage {
                address: 0xfee0_0000,
                data: 0x31,
            },
            event,
        };
        m.set_queue_irq(0, Some(&v));
        m.set_completion(Mechanism::MsiX);
        event.signal();
        event.signal();
        let r = m.report();
        assert_eq!(
            r.queues[0].vector,
            Some(VectorReport {
                vector: 0x31,
                interrupts: 2
            })
        );
        // A reset forgets the queues, not their vectors.
        m.clear_queues();
        m.add_queue(0, 8);
        assert_eq!(m.report().queues[0].vector.map(|v| v.interrupts), Some(2));
        m.set_queue_irq(0, None);
        assert_eq!(m.report().queues[0].vector, None);
        assert_eq!(r.completion, Mechanism::MsiX);
    }
}
