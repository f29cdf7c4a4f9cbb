//! The `virtio` command family: list virtio functions (type, status, negotiated features,
//! queues, how completions arrive) and show per-queue state and interrupt counts.
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use capmon_pci::Bdf;
use capmon_shell::{bad_arg, fail, outln, Args, CmdError, CmdResult, Command};
use capmon_virtio::features::FeatureNames;
use capmon_virtio::{Report, VectorReport, VirtioMonitor};
use core::fmt::Write;

/// One virtio PCI function the kernel found, driven or not.
pub struct VirtioFunction {
    pub bdf: Bdf,
    /// The block (or later network) device name its driver registered, e.g. `vda`.
    pub name: Option<String>,
    /// The record `capmon_virtio::probe` returned.
    pub monitor: VirtioMonitor,
}

/// What the `virtio` commands need from the machine.
pub trait VirtioHost {
    /// Every virtio function found at boot, in discovery order (the list index is `#`).
    fn virtio_functions(&self) -> &[VirtioFunction];
}

const USAGE: &str = "virtio [queues DEV]";

const LONG_HELP: &str = "\
virtio              list virtio functions: index, BDF, type, device name, status,
                    negotiated features (hex and names), features offered but ignored
                    (not acknowledged), queues and their sizes, how completions arrive
                    (MSI-X, INTx or polling, with the vectors) and why not a better way,
                    and why a device is not driven
virtio queues DEV   per queue: size, avail idx, used idx, free descriptors,
                    notifications sent, completions, vector and interrupts on it;
                    then the configuration-change vector
DEV is a list index (0), a BDF (00:04.0 or 0000:00:04.0) or a device name (vda).";

pub fn commands<S: VirtioHost>() -> Vec<Command<S>> {
    vec![Command {
        name: "virtio",
        group: "virtio",
        subcommands: &["queues"],
        usage: USAGE,
        help: "virtio devices: transport status, features, queue state",
        long_help: LONG_HELP,
        run: virtio::<S>,
    }]
}

fn virtio<S: VirtioHost>(s: &mut S, a: &mut Args, o: &mut dyn Write) -> CmdResult {
    match a.opt_str() {
        None => list(s, o),
        Some("queues") => {
            let dev = a.str()?;
            a.finish()?;
            queues(s, dev, o)
        }
        Some(w) => Err(bad_arg!("unknown subcommand '{}'", w)),
    }
}

fn title(i: usize, f: &VirtioFunction) -> String {
    let mut t = alloc::format!("{}: {} {}", i, f.bdf, f.monitor.device_type());
    if let Some(n) = &f.name {
        t.push(' ');
        t.push_str(n);
    }
    t
}

fn list<S: VirtioHost>(s: &mut S, o: &mut dyn Write) -> CmdResult {
    let fns = s.virtio_functions();
    if fns.is_empty() {
        outln!(o, "no virtio devices");
        return Ok(());
    }
    for (i, f) in fns.iter().enumerate() {
        let r = f.monitor.report();
        let ty = r.device_type;
        outln!(o, "{}", title(i, f));
        outln!(o, "   status   {:#04x} {}", r.status.0, r.status);
        outln!(
            o,
            "   features {:#018x} {}",
            r.accepted,
            FeatureNames {
                ty,
                bits: r.accepted
            }
        );
        let ignored = r.offered & !r.accepted;
        if ignored != 0 {
            outln!(
                o,
                "   ignored  {:#018x} {}",
                ignored,
                FeatureNames { ty, bits: ignored }
            );
        }
        let sizes: Vec<String> = r
            .queues
            .iter()
            .map(|q| alloc::format!("q{} size {}", q.index, q.size))
            .collect();
        outln!(
            o,
            "   queues   {} set up of {}{}{}",
            r.queues.len(),
            r.num_queues,
            if sizes.is_empty() { "" } else { ": " },
            sizes.join(", ")
        );
        if r.status.0 != 0 || !r.queues.is_empty() {
            outln!(o, "   irq      {}", irq_summary(&r));
            if let Some(why) = &r.fallback {
                outln!(o, "   fallback {}", why);
            }
        }
        if let Some(p) = &r.problem {
            outln!(o, "   problem  {}", p);
        }
    }
    Ok(())
}

/// `MSI-X: config 0x30, q0 0x31`, `INTx: config 0x24, q0 0x24` or `polling`.
fn irq_summary(r: &Report) -> String {
    let config = r.config_vector.iter().map(|v| ("config".into(), v));
    let queues = r.queues.iter().filter_map(|q| {
        q.vector
            .as_ref()
            .map(|v| (alloc::format!("q{}", q.index), v))
    });
    let vectors: Vec<String> = config
        .chain(queues)
        .map(|(who, v): (String, &VectorReport)| alloc::format!("{} {:#04x}", who, v.vector))
        .collect();
    if vectors.is_empty() {
        String::from(r.completion.name())
    } else {
        alloc::format!("{}: {}", r.completion, vectors.join(", "))
    }
}

/// Finds a function by list index, BDF or device name.
fn find<'a>(fns: &'a [VirtioFunction], dev: &str) -> Result<(usize, &'a VirtioFunction), CmdError> {
    let found = if !dev.is_empty() && dev.bytes().all(|c| c.is_ascii_digit()) {
        dev.parse::<usize>()
            .ok()
            .and_then(|i| fns.get(i).map(|f| (i, f)))
    } else if dev.contains(':') {
        let bdf = Bdf::parse(dev).map_err(|e| bad_arg!("DEV: {}", e))?;
        fns.iter().enumerate().find(|(_, f)| f.bdf == bdf)
    } else {
        fns.iter()
            .enumerate()
            .find(|(_, f)| f.name.as_deref() == Some(dev))
    };
    found.ok_or_else(|| fail!("no virtio device '{}' (see `virtio`)", dev))
}

fn queues<S: VirtioHost>(s: &mut S, dev: &str, o: &mut dyn Write) -> CmdResult {
    let (i, f) = find(s.virtio_functions(), dev)?;
    let r = f.monitor.report();
    outln!(o, "{}  status {}", title(i, f), r.status);
    if r.queues.is_empty() {
        match &r.problem {
            Some(p) => outln!(o, "no queues set up: {}", p),
            None => outln!(o, "no queues set up"),
        }
        return Ok(());
    }
    outln!(
        o,
        "queue  size  avail  used   free  notified   completed  vector  interrupts"
    );
    for q in &r.queues {
        let (vector, interrupts) = match &q.vector {
            Some(v) => (
                alloc::format!("{:#04x}", v.vector),
                alloc::format!("{}", v.interrupts),
            ),
            None => (String::from("-"), String::from("-")),
        };
        outln!(
            o,
            "{:<5}  {:>4}  {:>5}  {:>5}  {:>4}  {:>9}  {:>10}  {:>6}  {:>10}",
            q.index,
            q.size,
            q.avail_idx,
            q.used_idx,
            q.free,
            q.notifications,
            q.completions,
            vector,
            interrupts
        );
    }
    match &r.config_vector {
        Some(v) => outln!(
            o,
            "config changes: {} vector {:#04x}, interrupts {}",
            r.completion,
            v.vector,
            v.interrupts
        ),
        None => outln!(o, "config changes: no vector ({})", r.completion),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use capmon_hal::{IrqEvent, IrqVector, Mechanism, MsiMessage};
    use capmon_shell::Args;
    use capmon_virtio::features::{blk, VERSION_1};
    use capmon_virtio::{DeviceType, VirtioError};

    fn vector(v: u8, interrupts: u64) -> IrqVector {
        let event: &'static IrqEvent = std::boxed::Box::leak(std::boxed::Box::new(IrqEvent::new()));
        let iv = IrqVector {
            vector: v,
            apic_id: 0,
            message: MsiMessage {
                address: 0xfee0_0000,
                data: v as u32,
            },
            event,
        };
        for _ in 0..interrupts {
            event.signal();
        }
        iv
    }

    struct Host(Vec<VirtioFunction>);

    impl VirtioHost for Host {
        fn virtio_functions(&self) -> &[VirtioFunction] {
            &self.0
        }
    }

    fn host() -> Host {
        let blk = VirtioMonitor::new(DeviceType::Block);
        blk.set_status(0x0f);
        blk.set_num_queues(1);
        blk.set_features(
            VERSION_1 | blk::FLUSH | blk::SEG_MAX | blk::DISCARD | 1 << 50,
            VERSION_1 | blk::FLUSH | blk::SEG_MAX,
        );
        let q = blk.add_queue(0, 128);
        q.published(7, 125, true);
        q.completed(6, 128);
        blk.set_completion(Mechanism::MsiX);
        let (config, queue) = (vector(0x30, 0), vector(0x31, 0));
        blk.set_config_irq(Some(&config));
        blk.set_queue_irq(0, Some(&queue));
        for _ in 0..5 {
            queue.event.signal();
        }
        config.event.signal();
        let polled = VirtioMonitor::new(DeviceType::Block);
        polled.set_status(0x0f);
        polled.set_num_queues(1);
        polled.add_queue(0, 64);
        polled.set_fallback(Some(
            "MSI-X: device refused MSI-X entry 1 for queue 0; INTx: no route for INTA".into(),
        ));
        let legacy = VirtioMonitor::failed(DeviceType::Net, VirtioError::LegacyOnly);
        Host(vec![
            VirtioFunction {
                bdf: Bdf::new(0, 0, 4, 0).unwrap(),
                name: Some("vda".into()),
                monitor: blk,
            },
            VirtioFunction {
                bdf: Bdf::new(0, 0, 5, 0).unwrap(),
                name: None,
                monitor: legacy,
            },
            VirtioFunction {
                bdf: Bdf::new(0, 0, 6, 0).unwrap(),
                name: Some("vdb".into()),
                monitor: polled,
            },
        ])
    }

    fn run(h: &mut Host, line: &str) -> (CmdResult, String) {
        let mut out = String::new();
        let mut a = Args::new(capmon_shell::parse::words(line));
        let r = virtio(h, &mut a, &mut out);
        (r, out)
    }

    #[test]
    fn lists_devices() {
        let (r, out) = run(&mut host(), "");
        assert_eq!(r, Ok(()));
        assert_eq!(
            out,
            "0: 0000:00:04.0 virtio-blk vda\n\
             \x20  status   0x0f ACKNOWLEDGE|DRIVER|FEATURES_OK|DRIVER_OK\n\
             \x20  features 0x0000000100000204 SEG_MAX FLUSH VERSION_1\n\
             \x20  ignored  0x0004000000002000 DISCARD bit50\n\
             \x20  queues   1 set up of 1: q0 size 128\n\
             \x20  irq      MSI-X: config 0x30, q0 0x31\n\
             1: 0000:00:05.0 virtio-net\n\
             \x20  status   0x00 reset\n\
             \x20  features 0x0000000000000000 none\n\
             \x20  queues   0 set up of 0\n\
             \x20  problem  legacy-only device (no virtio 1.x capabilities): unsupported\n\
             2: 0000:00:06.0 virtio-blk vdb\n\
             \x20  status   0x0f ACKNOWLEDGE|DRIVER|FEATURES_OK|DRIVER_OK\n\
             \x20  features 0x0000000000000000 none\n\
             \x20  queues   1 set up of 1: q0 size 64\n\
             \x20  irq      polling\n\
             \x20  fallback MSI-X: device refused MSI-X entry 1 for queue 0; INTx: no route for INTA\n"
        );
        let (r, out) = run(&mut Host(Vec::new()), "");
        assert_eq!((r, out.as_str()), (Ok(()), "no virtio devices\n"));
    }

    #[test]
    fn queue_state_by_index_bdf_and_name() {
        let want =
            "0: 0000:00:04.0 virtio-blk vda  status ACKNOWLEDGE|DRIVER|FEATURES_OK|DRIVER_OK\n\
                    queue  size  avail  used   free  notified   completed  vector  interrupts\n\
                    0       128      7      6   128          1           1    0x31           5\n\
                    config changes: MSI-X vector 0x30, interrupts 1\n";
        for dev in ["0", "00:04.0", "0000:00:04.0", "vda"] {
            let (r, out) = run(&mut host(), &alloc::format!("queues {}", dev));
            assert_eq!(r, Ok(()));
            assert_eq!(out, want, "DEV {}", dev);
        }
        let (r, out) = run(&mut host(), "queues 1");
        assert_eq!(r, Ok(()));
        assert!(out.ends_with(
            "no queues set up: legacy-only device (no virtio 1.x capabilities): unsupported\n"
        ));
        let (r, out) = run(&mut host(), "queues vdb");
        assert_eq!(r, Ok(()));
        assert!(
            out.ends_with(
                "0        64      0      0    64          0           0       -           -\n\
                 config changes: no vector (polling)\n"
            ),
            "{}",
            out
        );
    }

    #[test]
    fn bad_arguments() {
        let mut h = host();
        assert_eq!(run(&mut h, "queues").0, Err(CmdError::Usage));
        assert_eq!(
            run(&mut h, "queues 7").0,
            Err(CmdError::Failed(
                "no virtio device '7' (see `virtio`)".into()
            ))
        );
        assert_eq!(
            run(&mut h, "queues vdz").0,
            Err(CmdError::Failed(
                "no virtio device 'vdz' (see `virtio`)".into()
            ))
        );
        assert!(matches!(
            run(&mut h, "queues 00:99.0").0,
            Err(CmdError::BadArg(_))
        ));
        assert!(matches!(
            run(&mut h, "queues 0 extra").0,
            Err(CmdError::BadArg(_))
        ));
        assert!(matches!(run(&mut h, "frob").0, Err(CmdError::BadArg(_))));
        // The monitor keeps working after errors.
        assert_eq!(run(&mut h, "queues vda").0, Ok(()));
    }
}
