//! The `ata` command: the IDE controllers the machine found, their channels, and what sits on
//! each (signature, IDENTIFY data, the block device it became).
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use capmon_ata::{Channel, Found};
use capmon_pci::Bdf;
use capmon_shell::{bad_arg, outln, Args, CmdResult, Command};
use core::fmt::Write;

/// One PCI IDE controller and what its probe found.
pub struct AtaFunction {
    pub bdf: Bdf,
    pub prog_if: u8,
    /// Each channel, and whether it runs in native mode (ports from the BARs) or compatibility.
    pub channels: Vec<(Channel, bool)>,
    pub devices: Vec<AtaDevice>,
}

pub struct AtaDevice {
    pub found: Found,
    /// The block device it joined the registry as, or why it did not.
    pub name: Result<String, String>,
}

/// One AHCI controller and what is on its ports.
pub struct AhciFunction {
    pub bdf: Bdf,
    pub version: u32,
    pub cap: u32,
    pub pi: u32,
    pub ports: Vec<AhciPortInfo>,
}

pub struct AhciPortInfo {
    pub port: usize,
    pub ssts: u32,
    pub sig: u32,
    pub kind: Option<capmon_ata::DevKind>,
    pub identify: Result<capmon_ata::Identify, capmon_ata::AtaError>,
    /// The block device it became, or why not ("no device" for an empty port).
    pub name: Result<String, String>,
}

/// What the `ata` and `ahci` commands need from the machine.
pub trait AtaHost {
    fn ata_functions(&self) -> &[AtaFunction];
    fn ahci_functions(&self) -> &[AhciFunction];
}

const USAGE: &str = "ata [-x]";

const LONG_HELP: &str = "\
ata      IDE controllers (PCI class 01:01): each channel's ports and mode; each device found:
         position, signature (ATA, ATAPI, SATA, SATAPI), model, serial, firmware, and the
         block device it is (cd0, ...) or why it is not one
ata -x   also the IDENTIFY data of each device as 256 words";

const AHCI_USAGE: &str = "ahci [-x]";

const AHCI_LONG_HELP: &str = "\
ahci     AHCI controllers (PCI class 01:06:01): version, ports, command slots, 64-bit DMA; each
         implemented port: link state (PxSSTS DET, speed), signature, model, serial,
         firmware, and the block device it is (sda, cd0, ...) or why it is not one
ahci -x  also the IDENTIFY data of each device as 256 words";

pub fn commands<S: AtaHost>() -> Vec<Command<S>> {
    vec![
        Command {
            name: "ata",
            group: "storage",
            subcommands: &[],
            usage: USAGE,
            help: "IDE controllers and ATA/ATAPI devices",
            long_help: LONG_HELP,
            run: ata::<S>,
        },
        Command {
            name: "ahci",
            group: "storage",
            subcommands: &[],
            usage: AHCI_USAGE,
            help: "AHCI controllers, their ports and SATA/ATAPI devices",
            long_help: AHCI_LONG_HELP,
            run: ahci::<S>,
        },
    ]
}

fn identify_words(o: &mut dyn Write, id: &capmon_ata::Identify) {
    for (i, row) in id.words.chunks(8).enumerate() {
        let mut line = String::new();
        for w in row {
            let _ = write!(line, " {:04x}", w);
        }
        outln!(o, "    {:3}:{}", i * 8, line);
    }
}

fn ahci<S: AtaHost>(s: &mut S, a: &mut Args, o: &mut dyn Write) -> CmdResult {
    let words = a.flag("-x");
    if let Some(w) = a.opt_str() {
        return Err(bad_arg!("unexpected '{}'", w));
    }
    let fns = s.ahci_functions();
    if fns.is_empty() {
        outln!(o, "no AHCI controller (PCI class 01:06:01)");
        return Ok(());
    }
    for f in fns {
        outln!(
            o,
            "{} AHCI {}.{}, {} ports (implemented {:#010x}), {} command slots, {}-bit DMA",
            f.bdf,
            f.version >> 16,
            (f.version >> 8 & 0xff) * 10 + (f.version & 0xff),
            (f.cap & 0x1f) + 1,
            f.pi,
            ((f.cap >> 8) & 0x1f) + 1,
            if f.cap & capmon_ata::ahci::CAP_S64A != 0 {
                64
            } else {
                32
            }
        );
        for p in &f.ports {
            let det = p.ssts & 0xf;
            if det != 3 {
                outln!(o, "  port {}: no device (DET {})", p.port, det);
                continue;
            }
            let speed = match (p.ssts >> 4) & 0xf {
                1 => "1.5 Gb/s",
                2 => "3 Gb/s",
                3 => "6 Gb/s",
                _ => "speed unknown",
            };
            let kind = p.kind.map_or("unknown", |k| k.name());
            let dev = match &p.name {
                Ok(n) => n.clone(),
                Err(why) => alloc::format!("not a block device: {}", why),
            };
            match &p.identify {
                Ok(id) => {
                    outln!(
                        o,
                        "  port {}: link up, {}, signature {:#010x} {}, model '{}', serial '{}', firmware '{}': {}",
                        p.port,
                        speed,
                        p.sig,
                        kind,
                        id.model,
                        id.serial,
                        id.firmware,
                        dev
                    );
                    if words {
                        identify_words(o, id);
                    }
                }
                Err(e) => outln!(
                    o,
                    "  port {}: link up, {}, signature {:#010x} {}, IDENTIFY failed: {}",
                    p.port,
                    speed,
                    p.sig,
                    kind,
                    e
                ),
            }
        }
    }
    Ok(())
}

fn ata<S: AtaHost>(s: &mut S, a: &mut Args, o: &mut dyn Write) -> CmdResult {
    let words = a.flag("-x");
    if let Some(w) = a.opt_str() {
        return Err(bad_arg!("unexpected '{}'", w));
    }
    let fns = s.ata_functions();
    if fns.is_empty() {
        outln!(o, "no IDE controller (PCI class 01:01)");
        return Ok(());
    }
    for f in fns {
        outln!(o, "{} IDE controller, prog-if {:#04x}", f.bdf, f.prog_if);
        for (ch, native) in &f.channels {
            outln!(
                o,
                "  {} channel: ports {:#x}/{:#x}, {} mode",
                ch.name,
                ch.base,
                ch.ctrl,
                if *native { "native" } else { "compatibility" }
            );
        }
        if f.devices.is_empty() {
            outln!(o, "  no devices");
        }
        for d in &f.devices {
            let fd = &d.found;
            let dev = match &d.name {
                Ok(n) => n.clone(),
                Err(why) => alloc::format!("not a block device: {}", why),
            };
            match &fd.identify {
                Ok(id) => outln!(
                    o,
                    "  {} {}: {}, model '{}', serial '{}', firmware '{}': {}",
                    fd.channel.name,
                    fd.position(),
                    fd.kind.name(),
                    id.model,
                    id.serial,
                    id.firmware,
                    dev
                ),
                Err(e) => outln!(
                    o,
                    "  {} {}: {}, IDENTIFY failed: {}",
                    fd.channel.name,
                    fd.position(),
                    fd.kind.name(),
                    e
                ),
            }
            if let (true, Ok(id)) = (words, &fd.identify) {
                identify_words(o, id);
            }
        }
    }
    Ok(())
}
