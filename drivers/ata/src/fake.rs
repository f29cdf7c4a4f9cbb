//! A model of two IDE channels for host tests: the task-file registers, an ATAPI drive holding
//! an image (IDENTIFY aborted with the ATAPI signature, IDENTIFY PACKET DEVICE, PACKET with
//! TEST UNIT READY, READ CAPACITY, READ(10)/(12), REQUEST SENSE), and an ATA disk that answers
//! IDENTIFY. Every step the driver takes out of protocol is recorded in `violations`.
use alloc::collections::VecDeque;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use capmon_hal::PortIo;
use std::sync::Mutex;

use crate::ide::{BSY, DRDY, DRQ, ERR};

/// What sits at one position.
#[derive(Clone)]
pub enum Drive {
    Cd(Cd),
    AtaDisk,
}

#[derive(Clone, Default)]
pub struct Cd {
    pub image: Vec<u8>,
    /// UNIT ATTENTIONs still to report (each on the next command but REQUEST SENSE).
    pub unit_attentions: u32,
    /// NOT READY, becoming ready, for this many more commands.
    pub becoming_ready: u32,
    pub no_medium: bool,
    /// Refuses READ(12) as an invalid opcode.
    pub no_read12: bool,
    /// Sends DRQ blocks of at most this many bytes, whatever the driver allows (0: its limit).
    pub max_drq: usize,
}

enum Phase {
    Idle,
    /// Data to the host, in DRQ blocks.
    DataIn(VecDeque<Vec<u8>>, usize),
    /// Expecting the 12 command bytes.
    Cdb(Vec<u8>),
}

struct Chan {
    base: u16,
    ctrl: u16,
    drives: [Option<Drive>; 2],
    sel: usize,
    features: u8,
    count: u8,
    lba: [u8; 3],
    status: [u8; 2],
    error: [u8; 2],
    sense: [(u8, u8, u8); 2],
    phase: Phase,
}

pub struct State {
    chans: [Chan; 2],
    pub violations: Vec<String>,
    /// Every packet command's opcode, in order.
    pub ops: Vec<u8>,
}

pub struct FakeIde(pub Mutex<State>);

pub fn cd(image: Vec<u8>) -> Drive {
    Drive::Cd(Cd {
        image,
        ..Cd::default()
    })
}

impl FakeIde {
    /// Drives at primary master, primary slave, secondary master, secondary slave.
    pub fn new(drives: [Option<Drive>; 4]) -> FakeIde {
        let [a, b, c, d] = drives;
        let chan = |base, ctrl, drives| Chan {
            base,
            ctrl,
            drives,
            sel: 0,
            features: 0,
            count: 0,
            lba: [0; 3],
            status: [DRDY; 2],
            error: [0; 2],
            sense: [(0, 0, 0); 2],
            phase: Phase::Idle,
        };
        FakeIde(Mutex::new(State {
            chans: [chan(0x1f0, 0x3f6, [a, b]), chan(0x170, 0x376, [c, d])],
            violations: Vec::new(),
            ops: Vec::new(),
        }))
    }

    pub fn leaked(drives: [Option<Drive>; 4]) -> &'static FakeIde {
        alloc::boxed::Box::leak(alloc::boxed::Box::new(FakeIde::new(drives)))
    }

    pub fn violations(&self) -> Vec<String> {
        self.0.lock().unwrap().violations.clone()
    }

    pub fn ops(&self) -> Vec<u8> {
        self.0.lock().unwrap().ops.clone()
    }

    /// Changes the drive at position `i` (0..4) in place.
    pub fn with_cd(&self, i: usize, f: impl FnOnce(&mut Cd)) {
        let mut s = self.0.lock().unwrap();
        if let Some(Drive::Cd(c)) = &mut s.chans[i / 2].drives[i % 2] {
            f(c);
        }
    }
}

/// 256 words of IDENTIFY data: word 0, and the strings (two characters a word, high first).
fn identify_words(word0: u16, model: &str, serial: &str) -> Vec<u8> {
    let mut w = [0u16; 256];
    w[0] = word0;
    let put = |w: &mut [u16; 256], at: usize, words: usize, s: &str| {
        let mut b: Vec<u8> = s.bytes().collect();
        b.resize(words * 2, b' ');
        for i in 0..words {
            w[at + i] = (u16::from(b[2 * i]) << 8) | u16::from(b[2 * i + 1]);
        }
    };
    put(&mut w, 10, 10, serial);
    put(&mut w, 23, 4, "2.5+");
    put(&mut w, 27, 20, model);
    w.iter().flat_map(|x| x.to_le_bytes()).collect()
}

impl Chan {
    fn which(&self, port: u16) -> Option<u16> {
        (port >= self.base && port < self.base + 8).then(|| port - self.base)
    }

    fn absent(&self) -> bool {
        self.drives.iter().all(Option::is_none)
    }

    fn status(&self) -> u8 {
        if self.absent() {
            0xff
        } else if self.drives[self.sel].is_none() {
            0
        } else {
            self.status[self.sel]
        }
    }

    fn done(&mut self, status: u8) {
        let s = self.sel;
        self.status[s] = status;
        self.count = 0x3; // command complete: IO and CoD
        self.phase = Phase::Idle;
    }

    fn check(&mut self, key: u8, asc: u8, ascq: u8) {
        let s = self.sel;
        self.sense[s] = (key, asc, ascq);
        self.error[s] = (key << 4) | 0x04;
        self.done(DRDY | ERR);
    }

    fn data_in(&mut self, data: Vec<u8>, limit: usize) {
        if data.is_empty() {
            return self.done(DRDY);
        }
        let blocks: VecDeque<Vec<u8>> = data.chunks(limit.max(2)).map(|c| c.to_vec()).collect();
        self.phase = Phase::DataIn(blocks, 0);
        self.next_block();
    }

    /// Shows the next DRQ block's byte count, or ends the command.
    fn next_block(&mut self) {
        let s = self.sel;
        let Phase::DataIn(blocks, _) = &self.phase else {
            return;
        };
        match blocks.front() {
            Some(b) => {
                let n = b.len();
                self.lba[1] = n as u8;
                self.lba[2] = (n >> 8) as u8;
                self.count = 0x2;
                self.status[s] = DRDY | DRQ;
            }
            None => self.done(DRDY),
        }
    }

    fn command(&mut self, cmd: u8, v: &mut Vec<String>) {
        let s = self.sel;
        let Some(drive) = self.drives[s].clone() else {
            return;
        };
        if self.status[s] & (BSY | DRQ) != 0 {
            v.push(format!(
                "command {:#04x} while the status is {:#04x}",
                cmd, self.status[s]
            ));
        }
        self.error[s] = 0;
        match (cmd, &drive) {
            (0xec, Drive::Cd(_)) => {
                // ATAPI devices abort IDENTIFY DEVICE and show their signature (§9.12).
                self.count = 1;
                self.lba = [1, 0x14, 0xeb];
                self.error[s] = 0x04;
                self.status[s] = DRDY | ERR;
            }
            (0xec, Drive::AtaDisk) => {
                let d = identify_words(0x0040, "FAKE HARDDISK", "D1");
                self.data_in(d, 512);
                // ATA PIO has no byte count: the LBA registers keep the 0 signature.
                self.lba = [0; 3];
            }
            (0xa1, Drive::Cd(_)) => {
                // Word 0: ATAPI (10b), CD-ROM (type 5), removable, 12-byte packets.
                let d = identify_words(0x8580, "FAKE DVD-ROM", "CD1");
                self.data_in(d, 512);
            }
            (0xa0, Drive::Cd(_)) => {
                if self.features & 1 != 0 {
                    v.push(String::from("PACKET asked for DMA"));
                }
                self.phase = Phase::Cdb(Vec::new());
                self.count = 0x1; // CoD: command bytes
                self.status[s] = DRDY | DRQ;
            }
            _ => {
                self.error[s] = 0x04;
                self.done(DRDY | ERR);
            }
        }
    }

    fn execute(&mut self, cdb: &[u8], v: &mut Vec<String>, ops: &mut Vec<u8>) {
        let s = self.sel;
        let op = cdb[0];
        ops.push(op);
        let limit = usize::from(self.lba[1]) | (usize::from(self.lba[2]) << 8);
        if limit == 0 {
            v.push(String::from("PACKET with a byte count limit of 0"));
        }
        let Some(Drive::Cd(cd)) = &mut self.drives[s] else {
            return;
        };
        let limit = match cd.max_drq {
            0 => limit,
            m => limit.min(m),
        };
        if op != 0x03 {
            if cd.unit_attentions > 0 {
                cd.unit_attentions -= 1;
                return self.check(0x6, 0x29, 0);
            }
            if cd.becoming_ready > 0 {
                cd.becoming_ready -= 1;
                return self.check(0x2, 0x04, 0x01);
            }
            if cd.no_medium {
                return self.check(0x2, 0x3a, 0);
            }
        }
        let blocks = (cd.image.len() / 2048) as u64;
        let be32 = |b: &[u8]| u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
        match op {
            0x00 => self.done(DRDY),
            0x03 => {
                let (key, asc, ascq) = self.sense[s];
                self.sense[s] = (0, 0, 0);
                let mut d = vec![0u8; 18];
                d[0] = 0x70;
                d[2] = key;
                d[7] = 10;
                d[12] = asc;
                d[13] = ascq;
                d.truncate(usize::from(cdb[4]));
                self.data_in(d, limit);
            }
            0x25 => {
                let mut d = Vec::new();
                d.extend_from_slice(&((blocks - 1) as u32).to_be_bytes());
                d.extend_from_slice(&2048u32.to_be_bytes());
                self.data_in(d, limit);
            }
            0x28 | 0xa8 => {
                if op == 0xa8 && cd.no_read12 {
                    return self.check(0x5, 0x20, 0);
                }
                let lba = be32(&cdb[2..6]);
                let count = if op == 0x28 {
                    u64::from(u16::from_be_bytes([cdb[7], cdb[8]]))
                } else {
                    be32(&cdb[6..10])
                };
                if lba + count > blocks {
                    return self.check(0x5, 0x21, 0);
                }
                let d = cd.image[lba as usize * 2048..(lba + count) as usize * 2048].to_vec();
                // Whole blocks per DRQ when the limit allows (what real drives do).
                let per = if limit >= 2048 {
                    limit / 2048 * 2048
                } else {
                    limit & !1
                };
                self.data_in(d, per);
            }
            _ => self.check(0x5, 0x20, 0),
        }
    }
}

impl State {
    fn chan(&mut self, port: u16) -> Option<(&mut Chan, &mut Vec<String>, &mut Vec<u8>)> {
        let State {
            chans,
            violations,
            ops,
        } = self;
        chans
            .iter_mut()
            .find(|c| c.which(port).is_some() || c.ctrl == port)
            .map(|c| (c, violations, ops))
    }
}

impl PortIo for FakeIde {
    fn inb(&self, port: u16) -> u8 {
        let mut st = self.0.lock().unwrap();
        let Some((c, _, _)) = st.chan(port) else {
            return 0xff;
        };
        if port == c.ctrl {
            return c.status();
        }
        if c.absent() {
            return 0xff;
        }
        let s = c.sel;
        match c.which(port).unwrap() {
            1 => c.error[s],
            2 => c.count,
            3 => c.lba[0],
            4 => c.lba[1],
            5 => c.lba[2],
            6 => 0xa0 | ((s as u8) << 4),
            7 => c.status(),
            _ => 0xff,
        }
    }

    fn inw(&self, port: u16) -> u16 {
        let mut st = self.0.lock().unwrap();
        let Some((c, v, _)) = st.chan(port) else {
            return 0xffff;
        };
        if c.which(port) != Some(0) {
            v.push(format!("16-bit read of port {:#x}", port));
            return 0xffff;
        }
        let Phase::DataIn(blocks, at) = &mut c.phase else {
            v.push(String::from("data read outside a data phase"));
            return 0xffff;
        };
        let Some(b) = blocks.front() else {
            return 0xffff;
        };
        let lo = b[*at];
        let hi = b.get(*at + 1).copied().unwrap_or(0);
        *at += 2;
        if *at >= b.len() {
            blocks.pop_front();
            *at = 0;
            c.next_block();
        }
        u16::from(lo) | (u16::from(hi) << 8)
    }

    fn inl(&self, port: u16) -> u32 {
        self.0
            .lock()
            .unwrap()
            .violations
            .push(format!("32-bit read of port {:#x}", port));
        0xffff_ffff
    }

    fn outb(&self, port: u16, val: u8) {
        let mut st = self.0.lock().unwrap();
        let Some((c, v, _)) = st.chan(port) else {
            return;
        };
        if port == c.ctrl {
            if val & 0x02 == 0 {
                v.push(String::from("interrupts left enabled (nIEN clear)"));
            }
            return;
        }
        let r = c.which(port).unwrap();
        if r != 7 && c.drives[c.sel].is_some() && c.status[c.sel] & (BSY | DRQ) != 0 {
            v.push(format!(
                "write of register {} while the status is {:#04x}",
                r, c.status[c.sel]
            ));
        }
        match r {
            1 => c.features = val,
            2 => c.count = val,
            3..=5 => c.lba[usize::from(r - 3)] = val,
            6 => c.sel = usize::from((val >> 4) & 1),
            7 => c.command(val, v),
            _ => v.push(format!("8-bit write of the data port {:#x}", port)),
        }
    }

    fn outw(&self, port: u16, val: u16) {
        let mut st = self.0.lock().unwrap();
        let Some((c, v, ops)) = st.chan(port) else {
            return;
        };
        if c.which(port) != Some(0) {
            v.push(format!("16-bit write of port {:#x}", port));
            return;
        }
        let Phase::Cdb(cdb) = &mut c.phase else {
            v.push(String::from("data write outside the packet phase"));
            return;
        };
        cdb.extend_from_slice(&val.to_le_bytes());
        if cdb.len() == 12 {
            let cdb = core::mem::take(cdb);
            c.phase = Phase::Idle;
            c.execute(&cdb, v, ops);
        }
    }

    fn outl(&self, port: u16, _: u32) {
        self.0
            .lock()
            .unwrap()
            .violations
            .push(format!("32-bit write of port {:#x}", port));
    }
}
