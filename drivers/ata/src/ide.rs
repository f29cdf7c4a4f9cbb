//! One IDE channel's task-file registers, and what sits on a channel (ATA/ATAPI-6 §9.12
//! signatures, §8.15 IDENTIFY DEVICE, §8.16 IDENTIFY PACKET DEVICE).
use crate::AtaError;
use alloc::string::String;
use alloc::vec::Vec;
use capmon_hal::{Clock, PortIo};

/// A channel's command block and control block ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Channel {
    pub name: &'static str,
    pub base: u16,
    pub ctrl: u16,
}

/// The compatibility-mode channels of a PCI IDE controller (PCI IDE Controller Spec §2.1).
pub const PRIMARY: Channel = Channel {
    name: "primary",
    base: 0x1f0,
    ctrl: 0x3f6,
};
pub const SECONDARY: Channel = Channel {
    name: "secondary",
    base: 0x170,
    ctrl: 0x376,
};

// Command block registers, as offsets from `base`.
pub(crate) const DATA: u16 = 0;
pub(crate) const ERROR: u16 = 1; // read; FEATURES on write
pub(crate) const FEATURES: u16 = 1;
pub(crate) const COUNT: u16 = 2; // ATAPI: interrupt reason on read
pub(crate) const LBA_LOW: u16 = 3;
pub(crate) const LBA_MID: u16 = 4; // ATAPI: byte count low
pub(crate) const LBA_HIGH: u16 = 5; // ATAPI: byte count high
pub(crate) const DEVICE: u16 = 6;
pub(crate) const STATUS: u16 = 7; // read; COMMAND on write
pub(crate) const COMMAND: u16 = 7;

// Status bits.
pub(crate) const BSY: u8 = 0x80;
#[cfg(test)]
pub(crate) const DRDY: u8 = 0x40;
pub(crate) const DF: u8 = 0x20;
pub(crate) const DRQ: u8 = 0x08;
pub(crate) const ERR: u8 = 0x01;
/// Device control: interrupts off (we poll).
pub(crate) const NIEN: u8 = 0x02;

pub(crate) const CMD_IDENTIFY: u8 = 0xec;
pub(crate) const CMD_IDENTIFY_PACKET: u8 = 0xa1;
pub(crate) const CMD_PACKET: u8 = 0xa0;

/// How long a device may stay busy before it is given up on (spin-up of a real drive).
pub(crate) const BUSY_NS: u64 = 5_000_000_000;
/// How long probing waits at a position that may hold nothing.
const PROBE_NS: u64 = 500_000_000;

/// What the signature registers say sits at a position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DevKind {
    Ata,
    Atapi,
    Sata,
    Satapi,
}

impl DevKind {
    pub fn name(self) -> &'static str {
        match self {
            DevKind::Ata => "ATA",
            DevKind::Atapi => "ATAPI",
            DevKind::Sata => "SATA",
            DevKind::Satapi => "SATAPI",
        }
    }
}

/// The parts of IDENTIFY (PACKET) DEVICE data capmon shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identify {
    pub model: String,
    pub serial: String,
    pub firmware: String,
    /// ATAPI: word 0 bits 1:0 say 12-byte packets (0) or 16-byte ones (1).
    pub packet_bytes: usize,
    /// ATAPI: the peripheral device type of word 0 bits 12:8 (5 = CD/DVD).
    pub device_type: u8,
    pub words: [u16; 256],
}

impl Identify {
    pub fn parse(words: [u16; 256]) -> Identify {
        Identify {
            serial: ata_string(&words[10..20]),
            firmware: ata_string(&words[23..27]),
            model: ata_string(&words[27..47]),
            packet_bytes: if words[0] & 3 == 1 { 16 } else { 12 },
            device_type: ((words[0] >> 8) & 0x1f) as u8,
            words,
        }
    }
}

/// An IDENTIFY string: two characters per word, high byte first, space padded (§8.15.8).
fn ata_string(w: &[u16]) -> String {
    let mut s = String::new();
    for x in w {
        for c in [(x >> 8) as u8, *x as u8] {
            s.push(if (0x20..0x7f).contains(&c) {
                c as char
            } else {
                '?'
            });
        }
    }
    String::from(s.trim())
}

/// One device found by `probe`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub channel: Channel,
    pub slave: bool,
    pub kind: DevKind,
    /// IDENTIFY (PACKET) DEVICE data, or why it could not be read.
    pub identify: Result<Identify, AtaError>,
}

impl Found {
    pub fn position(&self) -> &'static str {
        if self.slave {
            "slave"
        } else {
            "master"
        }
    }
}

/// A channel's registers, through the machine's ports.
pub(crate) struct Regs<'a> {
    pub io: &'a dyn PortIo,
    pub clock: &'a dyn Clock,
    pub ch: Channel,
}

impl Regs<'_> {
    pub fn read(&self, r: u16) -> u8 {
        self.io.inb(self.ch.base + r)
    }
    pub fn write(&self, r: u16, v: u8) {
        self.io.outb(self.ch.base + r, v)
    }
    pub fn alt_status(&self) -> u8 {
        self.io.inb(self.ch.ctrl)
    }
    /// The 400 ns a device may take to show a new status (§9.6.1): four alternate status reads.
    pub fn settle(&self) {
        for _ in 0..4 {
            self.alt_status();
        }
    }
    /// Selects master or slave, interrupts off.
    pub fn select(&self, slave: bool) {
        self.io.outb(self.ch.ctrl, NIEN);
        self.write(DEVICE, 0xa0 | (u8::from(slave) << 4));
        self.settle();
    }
    /// Waits until BSY is clear; the status then. A bus that reads 0xff has nothing on it.
    pub fn wait_ready(&self, what: &'static str, bound_ns: u64) -> Result<u8, AtaError> {
        let start = self.clock.now_ns();
        loop {
            let st = self.alt_status();
            if st == 0xff {
                return Err(AtaError::NoDevice);
            }
            if st & BSY == 0 {
                return Ok(self.read(STATUS));
            }
            if self.clock.now_ns().saturating_sub(start) > bound_ns {
                return Err(AtaError::Timeout { what, status: st });
            }
            core::hint::spin_loop();
        }
    }
    /// Waits for BSY clear and DRQ (or ERR) set; the status.
    pub fn wait_drq(&self, what: &'static str, bound_ns: u64) -> Result<u8, AtaError> {
        let start = self.clock.now_ns();
        loop {
            let st = self.wait_ready(what, bound_ns)?;
            if st & (DRQ | ERR | DF) != 0 {
                return Ok(st);
            }
            if self.clock.now_ns().saturating_sub(start) > bound_ns {
                return Err(AtaError::Timeout { what, status: st });
            }
            core::hint::spin_loop();
        }
    }
    /// Reads one 512-byte data block.
    pub fn read_block(&self) -> [u16; 256] {
        let mut w = [0u16; 256];
        self.io.insw(self.ch.base + DATA, &mut w);
        w
    }
}

/// What sits at each of the four positions of `channels`.
pub fn probe(io: &dyn PortIo, clock: &dyn Clock, channels: &[Channel]) -> Vec<Found> {
    let mut out = Vec::new();
    for ch in channels {
        let r = Regs { io, clock, ch: *ch };
        // Nothing on the channel at all: the bus floats high.
        if r.alt_status() == 0xff {
            continue;
        }
        for slave in [false, true] {
            if let Some(f) = probe_one(&r, slave) {
                out.push(f);
            }
        }
    }
    out
}

fn probe_one(r: &Regs<'_>, slave: bool) -> Option<Found> {
    r.select(slave);
    // An empty position reads 0 (or floats); it is also left alone if it stays busy.
    if matches!(r.alt_status(), 0 | 0xff) {
        return None;
    }
    r.wait_ready("the device to leave BSY before IDENTIFY", PROBE_NS)
        .ok()?;
    for reg in [COUNT, LBA_LOW, LBA_MID, LBA_HIGH] {
        r.write(reg, 0);
    }
    r.write(COMMAND, CMD_IDENTIFY);
    r.settle();
    if r.alt_status() == 0 {
        return None; // no device at this position
    }
    let st = match r.wait_ready("IDENTIFY", PROBE_NS) {
        Ok(st) => st,
        Err(_) => return None,
    };
    let sig = (r.read(LBA_MID), r.read(LBA_HIGH));
    let kind = match sig {
        (0x14, 0xeb) => DevKind::Atapi,
        (0x69, 0x96) => DevKind::Satapi,
        (0x3c, 0xc3) => DevKind::Sata,
        (0, 0) => DevKind::Ata,
        _ => return None,
    };
    let identify = match kind {
        DevKind::Atapi | DevKind::Satapi => identify(r, CMD_IDENTIFY_PACKET),
        DevKind::Ata | DevKind::Sata => {
            if st & ERR != 0 {
                Err(AtaError::Aborted {
                    command: CMD_IDENTIFY,
                    error: r.read(ERROR),
                })
            } else {
                r.wait_drq("IDENTIFY data", PROBE_NS)
                    .map(|_| Identify::parse(r.read_block()))
            }
        }
    };
    Some(Found {
        channel: r.ch,
        slave,
        kind,
        identify,
    })
}

/// Issues an IDENTIFY command and reads its data block.
fn identify(r: &Regs<'_>, cmd: u8) -> Result<Identify, AtaError> {
    r.write(COMMAND, cmd);
    r.settle();
    let st = r.wait_drq("IDENTIFY PACKET DEVICE data", BUSY_NS)?;
    if st & (ERR | DF) != 0 || st & DRQ == 0 {
        return Err(AtaError::Aborted {
            command: cmd,
            error: r.read(ERROR),
        });
    }
    Ok(Identify::parse(r.read_block()))
}
