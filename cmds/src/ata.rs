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

/// What the `ata` command needs from the machine.
pub trait AtaHost {
    fn ata_functions(&self) -> &[AtaFunction];
}

const USAGE: &str = "ata [-x]";

const LONG_HELP: &str = "\
ata      IDE controllers (PCI class 01:01): each channel's ports and mode; each device found:
         position, signature (ATA, ATAPI, SATA, SATAPI), model, serial, firmware, and the
         block device it is (cd0, ...) or why it is not one
ata -x   also the IDENTIFY data of each device as 256 words";

pub fn commands<S: AtaHost>() -> Vec<Command<S>> {
    vec![Command {
        name: "ata",
        group: "storage",
        subcommands: &[],
        usage: USAGE,
        help: "IDE controllers and ATA/ATAPI devices",
        long_help: LONG_HELP,
        run: ata::<S>,
    }]
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
                for (i, row) in id.words.chunks(8).enumerate() {
                    let mut line = String::new();
                    for w in row {
                        let _ = write!(line, " {:04x}", w);
                    }
                    outln!(o, "    {:3}:{}", i * 8, line);
                }
            }
        }
    }
    Ok(())
}
