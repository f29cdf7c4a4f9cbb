//! How a virtio driver learns that the device used buffers: MSI-X (one vector for configuration
//! changes, one for request queue 0), else INTx, else polling, tried in that order at probe.
//! Whatever a mechanism set up is undone before the next is tried: its MSI-X entries masked,
//! its vectors freed, MSI-X turned off.
//!
//! INTx is level-triggered and virtio deasserts it only when the driver reads the ISR status
//! (virtio 1.2 §4.1.4.5). The interrupt handler only marks the vector's event, so the *waiter*
//! reads ISR: every time it wakes, before it looks at the used ring. Until then the line stays
//! asserted, so the kernel's INTx path must keep a level-triggered line masked between the
//! interrupt and the waiter's wakeup (or tolerate it re-firing) — the read is what ends it.
use crate::blk::VirtioBlk;
use crate::completion::{Completion, Interrupt, Polling};
use crate::pci::{VirtioPci, VIRTIO_MSI_NO_VECTOR};
use crate::VirtioError;
use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use capmon_hal::{BarMapper, MmioBox};
use capmon_hal::{Clock, Dma, Interrupts, IrqOwner, IrqVector, Mechanism, Mmio, PciConfig};
use capmon_pci::caps::id;
use capmon_pci::{msi, Bdf, MsixTable};

/// MSI-X table entries virtio-blk uses: configuration changes, request queue 0.
pub const CONFIG_ENTRY: u16 = 0;
pub const QUEUE0_ENTRY: u16 = 1;

/// The waiter of a driver, the MSI-X entries the device is told to raise, and the vectors
/// behind them (freed, their entries masked first, when dropped).
pub struct Wakeup {
    pub(crate) completion: Box<dyn Completion>,
    /// MSI-X table entry for configuration changes; `VIRTIO_MSI_NO_VECTOR` for none.
    pub(crate) config_entry: u16,
    /// MSI-X table entry for request queue 0; `VIRTIO_MSI_NO_VECTOR` for none.
    pub(crate) queue_entry: u16,
    /// INTx: read ISR after every wakeup, which deasserts the line.
    pub(crate) read_isr: bool,
    /// Why the device refused the config vector, if it did (the queue vector still works).
    pub(crate) config_refused: Option<VirtioError>,
    vectors: Option<Vectors>,
}

impl Wakeup {
    /// Busy-polls the used ring; no interrupts.
    pub fn polling(clock: &'static (dyn Clock + Sync)) -> Self {
        Self::from_completion(Box::new(Polling::new(clock)))
    }

    /// Any waiter, with no vectors behind it (the device is told to raise none).
    pub fn from_completion(completion: Box<dyn Completion>) -> Self {
        Wakeup {
            completion,
            config_entry: VIRTIO_MSI_NO_VECTOR,
            queue_entry: VIRTIO_MSI_NO_VECTOR,
            read_isr: false,
            config_refused: None,
            vectors: None,
        }
    }

    pub fn mechanism(&self) -> Mechanism {
        self.completion.mechanism()
    }

    /// The vector configuration changes arrive on (INTx: the shared line).
    pub fn config_vector(&self) -> Option<&IrqVector> {
        let v = self.vectors.as_ref()?;
        match self.mechanism() {
            Mechanism::Intx => Some(&v.queue),
            _ => v.config.as_ref(),
        }
    }

    /// INTx: what ends an interrupt once ISR has been read (the interrupt layer unmasks the
    /// line); `None` for MSI-X and polling.
    pub(crate) fn intx_ack(&self) -> Option<(&'static dyn Interrupts, IrqVector)> {
        let v = self.vectors.as_ref()?;
        self.read_isr.then_some((v.irq, v.queue))
    }

    /// The vector request queue 0's completions arrive on.
    pub fn queue_vector(&self) -> Option<&IrqVector> {
        self.vectors.as_ref().map(|v| &v.queue)
    }

    /// The device refused the config vector: stop asking for it, mask its entry, free it.
    pub(crate) fn drop_config_vector(&mut self, why: VirtioError) {
        self.config_refused = Some(why);
        self.config_entry = VIRTIO_MSI_NO_VECTOR;
        if let Some(v) = self.vectors.as_mut() {
            v.release_config();
        }
    }
}

/// Vectors from the interrupt layer; MSI-X ones with the table window that points at them.
struct Vectors {
    irq: &'static dyn Interrupts,
    /// MSI-X: the table window and its entry count, to mask entries before freeing.
    table: Option<(MmioBox, u16)>,
    config: Option<IrqVector>,
    queue: IrqVector,
}

impl Vectors {
    fn mask(&self, entry: u16) {
        if let Some((w, n)) = &self.table {
            if let Ok(t) = MsixTable::new(&**w, *n) {
                let _ = t.mask(entry);
            }
        }
    }

    fn release_config(&mut self) {
        if let Some(v) = self.config.take() {
            self.mask(CONFIG_ENTRY);
            self.irq.free(&v);
        }
    }
}

impl Drop for Vectors {
    fn drop(&mut self) {
        // A masked entry cannot fire (PCI Local Bus 3.0 §6.8.2.9), so its vector may go.
        self.release_config();
        self.mask(QUEUE0_ENTRY);
        self.irq.free(&self.queue);
    }
}

/// The routing-table form of a PCI address.
fn owner(bdf: Bdf, source: u16) -> IrqOwner {
    IrqOwner {
        bdf: bdf.to_u32(),
        source,
    }
}

/// Maps the MSI-X table, takes two vectors and programs entries 0 and 1 with MSI-X enabled
/// (function masked while programming). Returns the waiter and the capability offset; on
/// failure everything is undone and the reason returned.
fn msix(
    bdf: Bdf,
    cfg: &dyn PciConfig,
    bars: &dyn BarMapper,
    irq: &'static dyn Interrupts,
    clock: &'static (dyn Clock + Sync),
) -> Result<(Wakeup, u16), String> {
    let cap = msi::find_cap(cfg, id::MSIX).ok_or("no MSI-X capability")?;
    // The length comes from the capability: virtio does not size BARs.
    let layout = msi::msix_layout(cfg, cap, None).map_err(|e| format!("{}", e))?;
    if layout.entries <= QUEUE0_ENTRY {
        return Err(format!("table has {} entry, needs 2", layout.entries));
    }
    let window = msi::map_msix_table(cfg, &layout, bars)?;
    let config = irq
        .alloc_msi(
            owner(bdf, CONFIG_ENTRY),
            Mechanism::MsiX,
            "virtio-blk config",
        )
        .ok_or("no free vector")?;
    let Some(queue) = irq.alloc_msi(
        owner(bdf, QUEUE0_ENTRY),
        Mechanism::MsiX,
        "virtio-blk queue 0",
    ) else {
        irq.free(&config);
        return Err(String::from("no free vector"));
    };
    // From here on, dropping `vectors` masks the entries and frees both.
    let vectors = Vectors {
        irq,
        table: Some((window, layout.entries)),
        config: Some(config),
        queue,
    };
    if let Some((w, n)) = &vectors.table {
        program_entries(cfg, cap, &**w, *n, &config, &queue).map_err(|e| format!("{}", e))?;
    }
    let completion = Interrupt::new(irq, clock, &queue, Mechanism::MsiX);
    let wakeup = Wakeup {
        completion: Box::new(completion),
        config_entry: CONFIG_ENTRY,
        queue_entry: QUEUE0_ENTRY,
        read_isr: false,
        config_refused: None,
        vectors: Some(vectors),
    };
    Ok((wakeup, cap))
}

/// Enables MSI-X with the function masked, points the config and queue 0 entries at their
/// vectors, unmasks the function. An unfinished enable turns MSI-X off again.
fn program_entries(
    cfg: &dyn PciConfig,
    cap: u16,
    window: &dyn Mmio,
    entries: u16,
    config: &IrqVector,
    queue: &IrqVector,
) -> Result<(), msi::MsiError> {
    let table = MsixTable::new(window, entries)?;
    let mut en = msi::enable_msix(cfg, cap)?;
    en.program(&table, CONFIG_ENTRY, config.message)?;
    en.program(&table, QUEUE0_ENTRY, queue.message)?;
    en.finish()
}

/// The function's INTx line, if the interrupt layer knows its route.
fn intx(
    bdf: Bdf,
    cfg: &dyn PciConfig,
    irq: &'static dyn Interrupts,
    clock: &'static (dyn Clock + Sync),
) -> Result<Wakeup, String> {
    let v = msi::route_intx(cfg, irq, owner(bdf, 0), "virtio-blk")?;
    let completion = Interrupt::new(irq, clock, &v, Mechanism::Intx);
    Ok(Wakeup {
        completion: Box::new(completion),
        config_entry: VIRTIO_MSI_NO_VECTOR,
        queue_entry: VIRTIO_MSI_NO_VECTOR,
        read_isr: true,
        config_refused: None,
        vectors: Some(Vectors {
            irq,
            table: None,
            config: None,
            queue: v,
        }),
    })
}

/// MSI and MSI-X off (firmware may have left one on; a failed attempt may have).
fn messages_off(cfg: &dyn PciConfig) {
    if let Some(cap) = msi::find_cap(cfg, id::MSIX) {
        let _ = msi::disable_msix(cfg, cap);
    }
    if let Some(cap) = msi::find_cap(cfg, id::MSI) {
        let _ = msi::disable_msi(cfg, cap);
    }
}

/// What a probe needs to bind virtio-blk with interrupts.
pub(crate) struct Function<'a> {
    pub bdf: Bdf,
    pub cfg: &'a dyn PciConfig,
    pub bars: &'a dyn BarMapper,
    pub dma: &'static (dyn Dma + Sync),
    pub clock: &'static (dyn Clock + Sync),
    pub irq: Option<&'static dyn Interrupts>,
}

/// Brings virtio-blk up on the best mechanism that works and logs which one and why.
/// A refused queue vector moves on to the next mechanism; any other failure is the device's,
/// reported as before.
pub(crate) fn bind_blk(f: &Function<'_>, transport: VirtioPci) -> Result<VirtioBlk, VirtioError> {
    let mut skipped: Vec<String> = Vec::new();
    let mut transport = transport;
    if let Some(irq) = f.irq {
        match msix(f.bdf, f.cfg, f.bars, irq, f.clock) {
            Ok((wakeup, cap)) => match VirtioBlk::try_new(transport, f.dma, wakeup) {
                Ok(blk) => return Ok(announce(f.bdf, blk, skipped)),
                Err((t, e @ VirtioError::VectorRefused { .. })) => {
                    let _ = msi::disable_msix(f.cfg, cap);
                    skipped.push(format!("MSI-X: {}", e));
                    transport = t;
                }
                Err((t, e)) => {
                    let _ = msi::disable_msix(f.cfg, cap);
                    return Err(VirtioBlk::give_up(t, e));
                }
            },
            Err(why) => skipped.push(format!("MSI-X: {}", why)),
        }
        messages_off(f.cfg);
        match intx(f.bdf, f.cfg, irq, f.clock) {
            Ok(wakeup) => {
                return match VirtioBlk::try_new(transport, f.dma, wakeup) {
                    Ok(blk) => Ok(announce(f.bdf, blk, skipped)),
                    Err((t, e)) => Err(VirtioBlk::give_up(t, e)),
                };
            }
            Err(why) => skipped.push(format!("INTx: {}", why)),
        }
    } else {
        skipped.push(String::from("no interrupt layer"));
    }
    // Nobody listens to the line: keep it quiet for whoever shares it.
    messages_off(f.cfg);
    let _ = msi::disable_intx(f.cfg);
    match VirtioBlk::try_new(transport, f.dma, Wakeup::polling(f.clock)) {
        Ok(blk) => Ok(announce(f.bdf, blk, skipped)),
        Err((t, e)) => Err(VirtioBlk::give_up(t, e)),
    }
}

/// Logs and records how `blk` completes, and why better mechanisms were skipped.
fn announce(bdf: Bdf, blk: VirtioBlk, mut skipped: Vec<String>) -> VirtioBlk {
    let w = blk.wakeup();
    if let Some(e) = &w.config_refused {
        skipped.push(format!("config: {}", e));
    }
    let mut vectors: Vec<u8> = w
        .config_vector()
        .into_iter()
        .chain(w.queue_vector())
        .map(|v| v.vector)
        .collect();
    vectors.dedup();
    let list: Vec<String> = vectors.iter().map(|v| format!("{:#04x}", v)).collect();
    let how = match list.len() {
        0 => String::from(w.mechanism().name()),
        1 => format!("{} (vector {})", w.mechanism(), list.join("")),
        _ => format!("{} (vectors {})", w.mechanism(), list.join(", ")),
    };
    let fallback = (!skipped.is_empty()).then(|| skipped.join("; "));
    match &fallback {
        Some(why) => log::info!("virtio-blk {}: completion by {}: {}", bdf, how, why),
        None => log::info!("virtio-blk {}: completion by {}", bdf, how),
    }
    blk.monitor().set_fallback(fallback);
    blk
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{
        fake_bdf, BlkConfig, FakeBlk, FakeIrq, INTX_VECTOR, MSIX_CAP, MSI_VECTOR_BASE,
    };
    use crate::monitor::VectorReport;
    use crate::Driver;
    use alloc::vec;
    use capmon_block::BlockDevice;

    const CONFIG_V: u8 = MSI_VECTOR_BASE;
    const QUEUE_V: u8 = MSI_VECTOR_BASE + 1;

    fn bind(cfg: BlkConfig, msi: usize, intx: bool) -> (FakeBlk, &'static FakeIrq, VirtioBlk) {
        let fake = FakeBlk::new(cfg);
        let irq = FakeIrq::leaked(&fake, msi, intx);
        let p = fake.probe_with(Some(irq));
        let Some(Driver::Blk(blk)) = p.driver else {
            panic!("no driver: {:?}", p.monitor.report().problem)
        };
        (fake, irq, blk)
    }

    /// Reads `len` bytes at `lba` and checks them against the fake disk.
    fn reads_back(fake: &FakeBlk, blk: &mut VirtioBlk, lba: u64, len: usize) {
        let mut buf = vec![0u8; len];
        blk.read(lba, &mut buf).unwrap();
        let at = lba as usize * 512;
        assert_eq!(buf[..], fake.dev.lock().unwrap().disk[at..at + len]);
    }

    fn clean(fake: &FakeBlk, irq: &FakeIrq) {
        let d = fake.dev.lock().unwrap();
        assert!(d.violations.is_empty(), "device saw: {:?}", d.violations);
        assert!(irq.state.lock().unwrap().stray.is_empty());
    }

    #[test]
    fn msix_entries_point_at_the_vectors_and_completions_interrupt() {
        let (fake, irq, mut blk) = bind(BlkConfig::default(), 8, true);
        {
            let d = fake.dev.lock().unwrap();
            // Address low, high, data, vector control (unmasked).
            assert_eq!(d.msix_table[0], [0xfee0_0000, 0, CONFIG_V as u32, 0]);
            assert_eq!(d.msix_table[1], [0xfee0_0000, 0, QUEUE_V as u32, 0]);
            // The device read back the entries it was given.
            assert_eq!((d.config_vector(), d.queue_vector()), (0, 1));
        }
        assert_eq!(
            fake.cfg.msix_control() & 0xc000,
            0x8000,
            "enabled, unmasked"
        );
        assert_eq!(fake.cfg.command() & 0x0404, 0x0404, "bus master, INTx off");
        let owners: Vec<(IrqOwner, String)> = irq
            .state
            .lock()
            .unwrap()
            .live
            .iter()
            .map(|l| (l.0, l.1.clone()))
            .collect();
        let bdf = 3 << 3; // 0000:00:03.0
        assert_eq!(
            owners,
            [
                (
                    IrqOwner { bdf, source: 0 },
                    String::from("virtio-blk config")
                ),
                (
                    IrqOwner { bdf, source: 1 },
                    String::from("virtio-blk queue 0")
                ),
            ]
        );
        assert_eq!(fake_bdf().device(), 3);

        reads_back(&fake, &mut blk, 3, 4096);
        reads_back(&fake, &mut blk, 100, 1 << 20);
        let r = blk.monitor().report();
        assert_eq!(r.completion, Mechanism::MsiX);
        assert_eq!(r.fallback, None);
        // Six completions (GET_ID, 1 + 4 reads); one interrupt per doorbell the device served:
        // the four 256 KiB pieces went in one batch. None for config yet.
        let q = &r.queues[0];
        assert_eq!(q.completions, 6);
        assert_eq!(
            q.vector,
            Some(VectorReport {
                vector: QUEUE_V,
                interrupts: 3
            })
        );
        assert_eq!(
            r.config_vector,
            Some(VectorReport {
                vector: CONFIG_V,
                interrupts: 0
            })
        );
        irq.config_change();
        assert_eq!(blk.monitor().report().config_vector.unwrap().interrupts, 1);
        // With MSI-X the driver leaves ISR alone (§4.1.4.5).
        assert_eq!(fake.dev.lock().unwrap().isr_reads, 0);
        clean(&fake, irq);

        drop(blk);
        assert!(irq.live().is_empty());
        assert_eq!(irq.state.lock().unwrap().freed, [CONFIG_V, QUEUE_V]);
        let d = fake.dev.lock().unwrap();
        assert_eq!((d.msix_table[0][3], d.msix_table[1][3]), (1, 1), "masked");
    }

    #[test]
    fn refused_queue_vector_falls_back_to_intx() {
        let cfg = BlkConfig {
            refuse_queue_vector: true,
            ..Default::default()
        };
        let (fake, irq, mut blk) = bind(cfg, 8, true);
        let r = blk.monitor().report();
        assert_eq!(r.completion, Mechanism::Intx);
        assert_eq!(
            r.fallback.as_deref(),
            Some("MSI-X: device refused MSI-X entry 1 for queue 0")
        );
        // MSI-X undone: entries masked, vectors freed, MSI-X off; INTx on.
        assert_eq!(irq.state.lock().unwrap().freed, [CONFIG_V, QUEUE_V]);
        assert_eq!(irq.live(), [INTX_VECTOR]);
        assert_eq!(fake.cfg.msix_control() & 0xc000, 0);
        assert_eq!(fake.cfg.command() & 0x0400, 0);
        {
            let d = fake.dev.lock().unwrap();
            assert_eq!((d.msix_table[0][3], d.msix_table[1][3]), (1, 1));
            assert_eq!(d.queue_vector(), VIRTIO_MSI_NO_VECTOR);
        }
        reads_back(&fake, &mut blk, 7, 8192);
        // The waiter read ISR after waking, which deasserted the level-triggered line.
        let d = fake.dev.lock().unwrap();
        assert!(d.isr_reads > 0);
        assert_eq!(d.isr_status(), 0);
        let r = blk.monitor().report();
        let q = r.queues[0].vector.unwrap();
        assert_eq!(q.vector, INTX_VECTOR);
        assert!(q.interrupts >= r.queues[0].completions);
        assert_eq!(r.config_vector.map(|v| v.vector), Some(INTX_VECTOR));
        drop(d);
        clean(&fake, irq);
        drop(blk);
        assert!(irq.live().is_empty());
    }

    #[test]
    fn without_an_intx_route_it_polls() {
        let cfg = BlkConfig {
            refuse_queue_vector: true,
            ..Default::default()
        };
        let (fake, irq, mut blk) = bind(cfg, 8, false);
        let r = blk.monitor().report();
        assert_eq!(r.completion, Mechanism::Polling);
        assert_eq!(
            r.fallback.as_deref(),
            Some("MSI-X: device refused MSI-X entry 1 for queue 0; INTx: no route for INTA")
        );
        assert!(irq.live().is_empty());
        assert_eq!(irq.state.lock().unwrap().freed, [CONFIG_V, QUEUE_V]);
        assert_eq!(fake.cfg.msix_control() & 0xc000, 0);
        assert_eq!(
            fake.cfg.command() & 0x0400,
            0x0400,
            "nobody listens: INTx off"
        );
        assert_eq!((r.config_vector, r.queues[0].vector), (None, None));
        reads_back(&fake, &mut blk, 0, 4096);
        clean(&fake, irq);
    }

    #[test]
    fn a_refused_config_vector_leaves_the_device_usable() {
        let cfg = BlkConfig {
            refuse_config_vector: true,
            ..Default::default()
        };
        let (fake, irq, mut blk) = bind(cfg, 8, true);
        let r = blk.monitor().report();
        assert_eq!(r.completion, Mechanism::MsiX);
        assert_eq!(r.config_vector, None);
        assert_eq!(r.queues[0].vector.map(|v| v.vector), Some(QUEUE_V));
        assert_eq!(
            r.fallback.as_deref(),
            Some("config: device refused MSI-X entry 0 for configuration changes")
        );
        assert_eq!(irq.live(), [QUEUE_V]);
        assert_eq!(irq.state.lock().unwrap().freed, [CONFIG_V]);
        {
            let d = fake.dev.lock().unwrap();
            assert_eq!(d.config_vector(), VIRTIO_MSI_NO_VECTOR);
            assert_eq!((d.msix_table[0][3], d.msix_table[1][3]), (1, 0));
        }
        reads_back(&fake, &mut blk, 12, 512);
        reads_back(&fake, &mut blk, 13, 4096);
        // Config changes now raise nothing, and nothing strays.
        irq.config_change();
        clean(&fake, irq);
        assert_eq!(blk.monitor().report().queues[0].completions, 3);
    }

    #[test]
    fn msix_that_cannot_be_set_up_is_undone() {
        // A table that does not take what is written.
        let cfg = BlkConfig {
            msix_broken: true,
            ..Default::default()
        };
        let (fake, irq, mut blk) = bind(cfg, 8, true);
        let r = blk.monitor().report();
        assert_eq!(r.completion, Mechanism::Intx);
        assert!(
            r.fallback
                .as_deref()
                .is_some_and(|f| f.starts_with("MSI-X: MSI-X entry address: wrote 0xfee00000")),
            "{:?}",
            r.fallback
        );
        assert_eq!(irq.state.lock().unwrap().freed, [CONFIG_V, QUEUE_V]);
        assert_eq!(fake.cfg.msix_control() & 0xc000, 0);
        reads_back(&fake, &mut blk, 1, 512);

        // Only one vector free: the first is given back.
        let (_fake, irq, _blk) = bind(BlkConfig::default(), 1, true);
        assert_eq!(irq.state.lock().unwrap().freed, [CONFIG_V]);
        assert_eq!(irq.live(), [INTX_VECTOR]);

        // A one-entry table: INTx (virtio 1.2 §4.1.5.1.2 allows the driver that fallback).
        let fake = FakeBlk::new(BlkConfig::default());
        fake.cfg.poke32(MSIX_CAP, 0x0000_5011);
        let irq = FakeIrq::leaked(&fake, 8, false);
        let r = fake.probe_with(Some(irq)).monitor.report();
        assert_eq!(r.completion, Mechanism::Polling);
        assert_eq!(
            r.fallback.as_deref(),
            Some("MSI-X: table has 1 entry, needs 2; INTx: no route for INTA")
        );
        assert!(irq.state.lock().unwrap().freed.is_empty());
    }

    #[test]
    fn without_an_interrupt_layer_it_polls() {
        let fake = FakeBlk::new(BlkConfig::default());
        let p = fake.probe();
        let r = p.monitor.report();
        assert_eq!(r.completion, Mechanism::Polling);
        assert_eq!(r.fallback.as_deref(), Some("no interrupt layer"));
        assert_eq!(fake.cfg.command() & 0x0400, 0x0400);
        assert!(p.driver.is_some());
    }

    #[test]
    fn vectors_are_set_again_after_a_reset() {
        let (fake, irq, mut blk) = bind(BlkConfig::default(), 8, true);
        blk.set_timeout_ms(5);
        fake.dev.lock().unwrap().cfg.complete = false;
        let mut buf = vec![0u8; 4096];
        assert_eq!(blk.read(0, &mut buf), Err(capmon_block::BlkError::Timeout));
        assert_eq!(
            fake.dev.lock().unwrap().queue_vector(),
            VIRTIO_MSI_NO_VECTOR,
            "reset unmaps"
        );
        fake.dev.lock().unwrap().cfg.complete = true;
        reads_back(&fake, &mut blk, 8, 4096);
        let d = fake.dev.lock().unwrap();
        assert_eq!((d.config_vector(), d.queue_vector()), (0, 1));
        drop(d);
        let r = blk.monitor().report();
        assert_eq!(r.queues[0].vector.map(|v| v.vector), Some(QUEUE_V));
        assert_eq!(r.completion, Mechanism::MsiX);
        clean(&fake, irq);
    }
}
