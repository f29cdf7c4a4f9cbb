//! The driver against the fake controller: bring-up, identify, queues, data through PRPs
//! (direct and bounced, split at MDTS, chained lists), errors, timeouts and Abort, reset,
//! interrupts, logs and shutdown. Every test ends with the fake reporting no protocol violation.
extern crate std;

use crate::ctrl::{Controller, Env, NvmeError};
use crate::fake::{FakeConfig, FakeNs, FakeNvme, INTX};
use crate::regs::{admin, io};
use crate::Namespace;
use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use capmon_block::{BlkError, BlockDevice, ReadReq, WriteReq};
use capmon_hal::fake::{FakeClock, FakeDma};
use capmon_hal::{Cpus, Interrupts, IrqEvent, IrqOwner, IrqVector, Mechanism, MsiMessage};
use capmon_pci::Bdf;
use core::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

struct FakeCpus {
    count: usize,
    current: AtomicUsize,
}

impl Cpus for FakeCpus {
    fn count(&self) -> usize {
        self.count
    }
    fn current(&self) -> usize {
        self.current.load(Ordering::Relaxed)
    }
}

/// Vectors 0x40.. with one event each; the fake's interrupt hook signals the event of the
/// MSI-X entry it names, which the test wires after bring-up.
struct FakeIrq {
    /// Whether message-signalled vectors are given (else INTx only, as `nvme_irq=intx`).
    msi: bool,
    next: Mutex<u8>,
    /// (vector, apic id, event) in allocation order.
    given: Mutex<Vec<(u8, u32, &'static IrqEvent)>>,
    freed: Mutex<Vec<u8>>,
}

impl Interrupts for FakeIrq {
    fn alloc_msi(&self, owner: IrqOwner, m: Mechanism, label: &str) -> Option<IrqVector> {
        self.alloc_msi_on(owner, m, label, 0)
    }
    fn alloc_msi_on(&self, _: IrqOwner, _: Mechanism, _: &str, cpu: usize) -> Option<IrqVector> {
        if !self.msi {
            return None;
        }
        self.give(cpu)
    }
    fn alloc_intx(&self, _: IrqOwner, pin: u8, _: &str) -> Option<IrqVector> {
        assert_eq!(pin, 1, "INTA");
        self.give(0)
    }
    fn free(&self, v: &IrqVector) {
        self.freed.lock().unwrap().push(v.vector);
    }
    fn wait_for(&self, _: &IrqEvent, _: u64) {}
}

impl FakeIrq {
    fn leaked(msi: bool) -> &'static FakeIrq {
        Box::leak(Box::new(FakeIrq {
            msi,
            next: Mutex::new(0x40),
            given: Mutex::new(Vec::new()),
            freed: Mutex::new(Vec::new()),
        }))
    }

    fn give(&self, cpu: usize) -> Option<IrqVector> {
        let mut n = self.next.lock().unwrap();
        let vector = *n;
        *n += 1;
        let event: &'static IrqEvent = Box::leak(Box::new(IrqEvent::new()));
        let apic_id = cpu as u32 * 2;
        self.given.lock().unwrap().push((vector, apic_id, event));
        Some(IrqVector {
            vector,
            apic_id,
            message: MsiMessage {
                address: 0xfee0_0000 | (apic_id as u64) << 12,
                data: vector as u32,
            },
            event,
        })
    }
}

struct Rig {
    fake: FakeNvme,
    dma: &'static FakeDma,
    cpus: &'static FakeCpus,
}

fn rig(cfg: FakeConfig) -> Rig {
    let dma = FakeDma::leaked();
    dma.direct.store(true, Ordering::Relaxed);
    let cpus: &'static FakeCpus = Box::leak(Box::new(FakeCpus {
        count: 2,
        current: AtomicUsize::new(0),
    }));
    Rig {
        fake: FakeNvme::new(cfg, dma),
        dma,
        cpus,
    }
}

fn bdf() -> Bdf {
    Bdf::new(0, 0, 4, 0).unwrap()
}

impl Rig {
    fn env(&self, irq: Option<&'static dyn Interrupts>) -> Env {
        Env {
            dma: self.dma,
            clock: FakeClock::leaked(1_000),
            irq,
            cpus: self.cpus,
        }
    }

    fn up(&self) -> Arc<Controller> {
        self.up_with(None)
    }

    fn up_with(&self, irq: Option<&'static dyn Interrupts>) -> Arc<Controller> {
        let c = Controller::new(
            String::from("nvme0"),
            bdf(),
            &self.fake.pci_config(),
            &self.fake.mapper(),
            self.env(irq),
        )
        .expect("bring-up");
        Arc::new(c)
    }

    fn clean(&self) {
        assert_eq!(self.fake.violations(), Vec::<String>::new());
    }
}

fn two_namespaces() -> FakeConfig {
    FakeConfig {
        namespaces: vec![
            FakeNs {
                nsid: 1,
                lba_shift: 9,
                blocks: 16384,
            },
            FakeNs {
                nsid: 3,
                lba_shift: 12,
                blocks: 1024,
            },
        ],
        ..FakeConfig::default()
    }
}

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 9) as u8)
        .collect()
}

#[test]
fn bring_up_identifies_the_controller_and_its_sparse_namespaces() {
    let r = rig(two_namespaces());
    let c = r.up();
    assert_eq!(c.id.model, "capmon fake NVMe");
    assert_eq!(c.id.serial, "FAKE0001");
    assert_eq!(c.id.firmware, "1.0");
    assert_eq!(c.vs, 0x0001_0400);
    assert_eq!(c.mechanism, Mechanism::Polling);
    // Two CPUs: two queue pairs asked for, of the four the controller can grant.
    assert_eq!(c.queues_requested, 2);
    assert_eq!(c.queues_granted, (2, 2));
    assert_eq!(c.io_queues(), 2);
    assert_eq!(r.fake.queue_count(), (2, 2));
    let ns: Vec<_> = c
        .namespaces()
        .iter()
        .map(|n| (n.nsid, n.lba_size))
        .collect();
    assert_eq!(ns, [(1, Ok(512)), (3, Ok(4096))]);
    // MDTS 5 with 4 KiB pages: 128 KiB per command.
    assert_eq!(c.max_transfer, 128 << 10);
    let cc = r.fake.cc();
    assert_eq!(cc & 1, 1, "enabled");
    assert_eq!((cc >> 16) & 0xf, 6, "IOSQES");
    assert_eq!((cc >> 20) & 0xf, 4, "IOCQES");
    assert_eq!(
        r.fake.pci_config().command() & 0x6,
        0x6,
        "memory + bus master"
    );
    let n3 = Namespace::new(c.clone(), 3).unwrap();
    assert_eq!((n3.sector_size(), n3.capacity()), (4096, 1024));
    assert!(
        Namespace::new(c.clone(), 2).is_none(),
        "NSID 2 is not active"
    );
    r.clean();
}

#[test]
fn data_round_trips_direct_and_bounced_on_both_lba_sizes() {
    for direct in [true, false] {
        let r = rig(two_namespaces());
        r.dma.direct.store(direct, Ordering::Relaxed);
        let c = r.up();
        for (nsid, ss) in [(1u32, 512usize), (3, 4096)] {
            let mut ns = Namespace::new(c.clone(), nsid).unwrap();
            // Unaligned to pages, several commands long (MDTS 128 KiB).
            let data = pattern(nsid as u8, 300 * 1024 / ss * ss);
            ns.write(7, &data).unwrap();
            assert_eq!(r.fake.read_ns(nsid, 7 * ss as u64, data.len()), data);
            // The sector before is untouched.
            assert!(r
                .fake
                .read_ns(nsid, 6 * ss as u64, ss)
                .iter()
                .all(|b| *b == 0));
            let mut back = vec![0u8; data.len()];
            ns.read(7, &mut back).unwrap();
            assert_eq!(back, data, "direct {} nsid {}", direct, nsid);
            ns.flush().unwrap();
        }
        let cmds = r.fake.commands();
        let reads: Vec<_> = cmds
            .iter()
            .filter(|c| c.qid != 0 && c.opcode == io::READ)
            .collect();
        assert!(reads.iter().all(|c| c.succeeded()));
        // Every command moved at most MDTS (and at most a bounce buffer when bounced).
        for c in &reads {
            let blocks = (c.cdw12 & 0xffff) as usize + 1;
            let ss = if c.nsid == 1 { 512 } else { 4096 };
            assert!(blocks * ss <= 128 << 10, "{} bytes", blocks * ss);
        }
        assert!(cmds.iter().any(|c| c.opcode == io::FLUSH && c.qid != 0));
        r.clean();
    }
}

#[test]
fn large_transfers_use_chained_prp_lists() {
    // No MDTS: the driver's own cap (1023 pages) applies, which needs two list pages.
    let r = rig(FakeConfig {
        mdts: 0,
        ..two_namespaces()
    });
    let c = r.up();
    assert_eq!(c.max_transfer, (4 << 20) - 4096);
    let mut ns = Namespace::new(c.clone(), 1).unwrap();
    let data = pattern(3, 6 << 20);
    ns.write(1, &data).unwrap();
    assert_eq!(r.fake.read_ns(1, 512, data.len()), data);
    let mut back = vec![0u8; data.len()];
    ns.read(1, &mut back).unwrap();
    assert_eq!(back, data);
    let big = r
        .fake
        .commands()
        .iter()
        .filter(|c| c.opcode == io::READ && c.qid != 0)
        .map(|c| (c.cdw12 & 0xffff) as usize + 1)
        .max()
        .unwrap();
    assert_eq!(big * 512, (4 << 20) - 4096);
    r.clean();
}

#[test]
fn device_errors_bounds_and_read_only() {
    let r = rig(two_namespaces());
    let c = r.up();
    let mut ns = Namespace::new(c.clone(), 1).unwrap();
    r.fake.inject_error(1, 100, 2, 0x81);
    let mut buf = vec![0u8; 8192];
    assert_eq!(
        ns.read(96, &mut buf),
        Err(BlkError::Device {
            status: 0x281,
            what: "Unrecovered Read Error"
        })
    );
    // The queue still works, and the error is in the controller's log.
    ns.read(96, &mut buf).unwrap();
    let log = c.error_log().unwrap();
    assert!(log
        .iter()
        .any(|e| e.status.sct == 2 && e.status.sc == 0x81 && e.nsid == 1));
    assert!(matches!(
        ns.read(16384, &mut buf),
        Err(BlkError::OutOfRange { .. })
    ));
    assert!(matches!(
        ns.read(0, &mut buf[..100]),
        Err(BlkError::BadBuffer { .. })
    ));
    r.clean();

    let r = rig(FakeConfig {
        read_only: true,
        ..FakeConfig::default()
    });
    let c = r.up();
    let mut ns = Namespace::new(c, 1).unwrap();
    assert_eq!(
        ns.write(0, &[0u8; 512]),
        Err(BlkError::Device {
            status: 0x20,
            what: "Namespace is Write Protected"
        })
    );
    ns.read(0, &mut [0u8; 512]).unwrap();
    r.clean();
}

#[test]
fn a_hung_command_is_aborted_and_the_queue_recovers() {
    let r = rig(FakeConfig::default());
    let c = r.up();
    c.set_timeout_ms(1);
    let mut ns = Namespace::new(c.clone(), 1).unwrap();
    r.fake.set_hang(1, true);
    let mut buf = vec![0u8; 4096];
    assert_eq!(ns.read(0, &mut buf), Err(BlkError::Timeout));
    let aborts: Vec<_> = r
        .fake
        .commands()
        .into_iter()
        .filter(|x| x.qid == 0 && x.opcode == admin::ABORT)
        .collect();
    assert_eq!(aborts.len(), 1);
    assert_eq!(aborts[0].cdw10 & 0xffff, 1, "SQID");
    assert!(c.failure().is_none(), "the abort was accepted: not failed");
    r.fake.set_hang(1, false);
    c.set_timeout_ms(5000);
    r.fake.write_ns(1, 0, &pattern(9, 4096));
    ns.read(0, &mut buf).unwrap();
    assert_eq!(buf, pattern(9, 4096));
    let q = &c.queue_report()[1];
    assert_eq!(q.timeouts, 1);
    r.clean();
}

#[test]
fn reset_rebuilds_the_queues() {
    let r = rig(two_namespaces());
    let c = r.up();
    let mut ns = Namespace::new(c.clone(), 3).unwrap();
    ns.write(5, &pattern(1, 8192)).unwrap();
    c.reset().unwrap();
    assert_eq!(c.resets(), 1);
    assert_eq!(r.fake.queue_count(), (2, 2));
    let mut back = vec![0u8; 8192];
    ns.read(5, &mut back).unwrap();
    assert_eq!(back, pattern(1, 8192));
    r.clean();
}

#[test]
fn bring_up_failures_are_reported_not_hung_on() {
    for (cfg, want) in [
        (
            FakeConfig {
                never_ready: true,
                timeout: 1,
                ..FakeConfig::default()
            },
            "CSTS.RDY did not become 1 within 500 ms (CAP.TO)",
        ),
        (
            FakeConfig {
                fatal_on_enable: true,
                ..FakeConfig::default()
            },
            "controller fatal status (CSTS.CFS)",
        ),
        (
            FakeConfig {
                mpsmin: 1,
                ..FakeConfig::default()
            },
            "unsupported: minimum memory page 8192 bytes",
        ),
    ] {
        let r = rig(cfg);
        let e = Controller::new(
            String::from("nvme0"),
            bdf(),
            &r.fake.pci_config(),
            &r.fake.mapper(),
            r.env(None),
        )
        .err()
        .expect("fails");
        assert_eq!(alloc::format!("{}", e), want);
    }
    assert!(matches!(NvmeError::Timeout("x").into(), BlkError::Timeout));
}

#[test]
fn every_queue_gets_its_own_msix_vector_on_its_cpu() {
    let irq = FakeIrq::leaked(true);
    let r = rig(two_namespaces());
    // The hook signals the event of the entry's vector (entry n was given the n-th vector).
    let given: &'static Mutex<Vec<(u8, u32, &'static IrqEvent)>> = &irq.given;
    r.fake.set_interrupt_hook(Box::new(move |entry| {
        assert_ne!(entry, INTX, "MSI-X is on");
        if let Some((_, _, e)) = given.lock().unwrap().get(entry as usize) {
            e.signal();
        }
    }));
    let c = r.up_with(Some(irq));
    assert_eq!(c.mechanism, Mechanism::MsiX);
    let q = c.queue_report();
    assert_eq!(q.len(), 3);
    let vectors: Vec<_> = q
        .iter()
        .map(|x| (x.qid, x.vector, x.entry, x.cpu))
        .collect();
    assert_eq!(
        vectors,
        [
            (0, Some(0x40), Some(0), Some(0)),
            (1, Some(0x41), Some(1), Some(0)),
            (2, Some(0x42), Some(2), Some(1))
        ]
    );
    // Entry 2 aims at CPU 1's APIC ID (2 in this fake).
    let (addr, data, masked) = r.fake.msix_entry(2);
    assert_eq!((addr, data, masked), (0xfee0_2000, 0x42, false));
    // CPU 1 submits on queue 2, whose completions interrupt entry 2.
    r.cpus.current.store(1, Ordering::Relaxed);
    let mut ns = Namespace::new(c.clone(), 1).unwrap();
    let mut buf = vec![0u8; 64 << 10];
    ns.read(0, &mut buf).unwrap();
    let q = c.queue_report();
    assert_eq!(q[2].completed, 1);
    assert!(q[2].interrupts >= 1);
    assert_eq!(q[1].completed, 0);
    assert!(r.fake.interrupt_count(2) >= 1);
    drop(ns);
    drop(q);
    let c = Arc::try_unwrap(c).ok().expect("last reference");
    drop(c);
    let mut freed = irq.freed.lock().unwrap().clone();
    freed.sort();
    assert_eq!(freed, [0x40, 0x41, 0x42], "every vector given back");
    r.clean();
}

#[test]
fn without_message_vectors_every_queue_shares_intx() {
    let irq = FakeIrq::leaked(false);
    let r = rig(two_namespaces());
    let given: &'static Mutex<Vec<(u8, u32, &'static IrqEvent)>> = &irq.given;
    r.fake.set_interrupt_hook(Box::new(move |entry| {
        assert_eq!(entry, INTX, "MSI-X is off again");
        if let Some((_, _, e)) = given.lock().unwrap().first() {
            e.signal();
        }
    }));
    let c = r.up_with(Some(irq));
    assert_eq!(c.mechanism, Mechanism::Intx);
    assert_eq!(
        r.fake.pci_config().msix_control() & 0x8000,
        0,
        "MSI-X disabled"
    );
    let mut ns = Namespace::new(c.clone(), 1).unwrap();
    let mut buf = vec![0u8; 8192];
    ns.read(0, &mut buf).unwrap();
    let q = c.queue_report();
    assert!(q
        .iter()
        .all(|x| x.vector == Some(0x40) && x.entry.is_none()));
    assert!(q[1].interrupts >= 1);
    drop((ns, q));
    drop(Arc::try_unwrap(c).ok().expect("last reference"));
    assert_eq!(
        *irq.freed.lock().unwrap(),
        [0x40],
        "the shared vector given back once"
    );
    r.clean();
}

#[test]
fn batches_keep_many_commands_in_flight() {
    let r = rig(two_namespaces());
    let c = r.up();
    r.fake.write_ns(1, 0, &pattern(5, 1 << 20));
    let mut ns = Namespace::new(c.clone(), 1).unwrap();
    let mut bufs: Vec<Vec<u8>> = (0..40).map(|_| vec![0u8; 4096]).collect();
    let lbas: Vec<u64> = (0..40u64).map(|i| (i * 37 % 250) * 8).collect();
    let mut reqs: Vec<ReadReq<'_>> = bufs
        .iter_mut()
        .zip(&lbas)
        .map(|(b, l)| ReadReq { lba: *l, buf: b })
        .collect();
    ns.read_batch(&mut reqs, 32).unwrap();
    drop(reqs);
    let all = pattern(5, 1 << 20);
    for (b, l) in bufs.iter().zip(&lbas) {
        let at = *l as usize * 512;
        assert_eq!(b[..], all[at..at + 4096]);
    }
    assert!(ns.max_depth() >= 32);
    r.clean();
}

#[test]
fn write_batches_land_every_piece_and_check_before_sending() {
    let r = rig(two_namespaces());
    let c = r.up();
    let mut ns = Namespace::new(c.clone(), 1).unwrap();
    let pieces: Vec<(u64, Vec<u8>)> = (0..40u64)
        .map(|i| ((i * 37 % 250) * 8, pattern(i as u8 + 7, 4096)))
        .filter({
            let mut seen = std::collections::BTreeSet::new();
            move |(l, _)| seen.insert(*l)
        })
        .chain([(4000, pattern(99, 300 * 1024))])
        .collect();
    let reqs: Vec<WriteReq<'_>> = pieces
        .iter()
        .map(|(lba, buf)| WriteReq { lba: *lba, buf })
        .collect();
    ns.write_batch(&reqs, 32).unwrap();
    for (lba, buf) in &pieces {
        assert_eq!(r.fake.read_ns(1, lba * 512, buf.len()), *buf, "lba {}", lba);
    }
    // One request past the end: nothing of the batch is sent.
    let end = ns.capacity();
    let marker = pattern(200, 4096);
    let bad = [
        WriteReq {
            lba: 0,
            buf: &marker,
        },
        WriteReq {
            lba: end,
            buf: &marker,
        },
    ];
    assert!(ns.write_batch(&bad, 4).is_err());
    assert_eq!(r.fake.read_ns(1, 0, 4096), pieces[0].1);
    r.clean();
}

#[test]
fn smart_log_and_shutdown() {
    let r = rig(FakeConfig::default());
    let c = r.up();
    r.fake.with_smart(|s| {
        s.temperature_kelvin = 310;
        s.power_on_hours = 42;
    });
    let mut ns = Namespace::new(c.clone(), 1).unwrap();
    ns.write(0, &pattern(1, 1000 * 512)).unwrap();
    let s = c.smart().unwrap();
    assert_eq!((s.temperature_k, s.power_on_hours), (310, 42));
    assert_eq!(s.data_units_written, 1);
    assert!(s.host_writes >= 1);
    c.shutdown().unwrap();
    assert_eq!(r.fake.csts() & 0xc, 0x8, "SHST: shutdown complete");
    assert!(matches!(
        ns.read(0, &mut [0u8; 512]),
        Err(BlkError::Other(_))
    ));
    r.clean();
}
