//! A model of an AHCI HBA for host tests: HBA and port registers, and on a write of PxCI the
//! command in slot 0 carried out from the driver's DMA memory (FakeDma: physical = virtual),
//! for a SATA disk holding an image (IDENTIFY, READ/WRITE DMA EXT, FLUSH CACHE EXT) or an ATAPI
//! drive holding one (IDENTIFY PACKET DEVICE, PACKET with TEST UNIT READY, READ CAPACITY,
//! READ(10)/(12), REQUEST SENSE). Every step out of protocol is recorded in `violations`.
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use capmon_hal::fake::FakeDma;
use capmon_hal::Mmio;
use std::sync::Mutex;

pub enum Dev {
    Disk(Vec<u8>),
    Cd {
        image: Vec<u8>,
        unit_attentions: u32,
        sense: (u8, u8, u8),
    },
}

struct Port {
    dev: Option<Dev>,
    clb: u64,
    fb: u64,
    is: u32,
    cmd: u32,
    tfd: u32,
    serr: u32,
}

pub struct State {
    ports: Vec<Port>,
    ghc: u32,
    pub violations: Vec<String>,
    /// (port, ATA command, packet opcode) of every command carried out.
    pub commands: Vec<(usize, u8, Option<u8>)>,
    /// Fail the next command on this port with this error register value.
    pub fail_next: Option<(usize, u8)>,
}

pub struct FakeAhci {
    pub st: Mutex<State>,
    dma: &'static FakeDma,
}

fn identify(word0: u16, model: &str, sectors: u64) -> Vec<u8> {
    let mut w = [0u16; 256];
    w[0] = word0;
    let mut b: Vec<u8> = model.bytes().collect();
    b.resize(40, b' ');
    for i in 0..20 {
        w[27 + i] = (u16::from(b[2 * i]) << 8) | u16::from(b[2 * i + 1]);
    }
    for (i, c) in b"SN42    ".chunks(2).enumerate() {
        w[10 + i] = (u16::from(c[0]) << 8) | u16::from(c[1]);
    }
    w[83] = 1 << 10; // LBA48
    for i in 0..4 {
        w[100 + i] = (sectors >> (16 * i)) as u16;
    }
    w.iter().flat_map(|x| x.to_le_bytes()).collect()
}

impl FakeAhci {
    /// An HBA of `devs.len()` ports (all implemented), with what sits on each.
    pub fn leaked(devs: Vec<Option<Dev>>, dma: &'static FakeDma) -> &'static FakeAhci {
        let ports = devs
            .into_iter()
            .map(|dev| Port {
                dev,
                clb: 0,
                fb: 0,
                is: 0,
                cmd: 0,
                tfd: 0x7f,
                serr: 0,
            })
            .collect();
        alloc::boxed::Box::leak(alloc::boxed::Box::new(FakeAhci {
            st: Mutex::new(State {
                ports,
                ghc: 0,
                violations: Vec::new(),
                commands: Vec::new(),
                fail_next: None,
            }),
            dma,
        }))
    }

    pub fn violations(&self) -> Vec<String> {
        self.st.lock().unwrap().violations.clone()
    }

    pub fn disk(&self, port: usize) -> Vec<u8> {
        match &self.st.lock().unwrap().ports[port].dev {
            Some(Dev::Disk(d)) => d.clone(),
            _ => Vec::new(),
        }
    }

    /// Reads `len` bytes of the driver's DMA memory at `addr`, if it owns them.
    fn mem(&self, v: &mut Vec<String>, addr: u64, len: usize) -> Option<&'static mut [u8]> {
        if !self.dma.contains(addr, len) {
            v.push(format!(
                "DMA to {:#x}+{} outside the driver's memory",
                addr, len
            ));
            return None;
        }
        // SAFETY: FakeDma's physical addresses are the virtual ones of live allocations, and
        // `contains` checked the whole range lies in one; the driver is waiting on CI.
        Some(unsafe { core::slice::from_raw_parts_mut(addr as *mut u8, len) })
    }

    fn run(&self, st: &mut State, p: usize) {
        let State {
            ports,
            violations: v,
            commands,
            fail_next,
            ..
        } = st;
        let port = &mut ports[p];
        if port.cmd & 1 == 0 || port.cmd & (1 << 4) == 0 {
            v.push(format!("port {}: CI written with ST or FRE clear", p));
            return;
        }
        let Some(hdr) = self.mem(v, port.clb, 32) else {
            return;
        };
        let dw0 = u32::from_le_bytes(hdr[0..4].try_into().unwrap());
        let ctba = u64::from_le_bytes(hdr[8..16].try_into().unwrap());
        if dw0 & 0x1f != 5 {
            v.push(format!("port {}: CFL {}", p, dw0 & 0x1f));
        }
        let prdtl = (dw0 >> 16) as usize;
        let Some(ct) = self.mem(v, ctba, 0x80 + 16 * prdtl) else {
            return;
        };
        let fis = ct[..20].to_vec();
        let packet: Vec<u8> = ct[0x40..0x4c].to_vec();
        // One PRD, as the driver builds them.
        let (dba, dbc) = if prdtl > 0 {
            let prd = &ct[0x80..0x90];
            (
                u64::from_le_bytes(prd[0..8].try_into().unwrap()),
                (u32::from_le_bytes(prd[12..16].try_into().unwrap()) & 0x3f_ffff) as usize + 1,
            )
        } else {
            (0, 0)
        };
        if fis[0] != 0x27 || fis[1] & 0x80 == 0 {
            v.push(format!("port {}: not a command H2D FIS", p));
        }
        let cmd = fis[2];
        let lba = u64::from_le_bytes([fis[4], fis[5], fis[6], fis[8], fis[9], fis[10], 0, 0]);
        let count = u64::from(u16::from_le_bytes([fis[12], fis[13]]));
        let write = dw0 & (1 << 6) != 0;
        let atapi = dw0 & (1 << 5) != 0;
        commands.push((p, cmd, atapi.then_some(packet[0])));
        let ok = |port: &mut Port| {
            port.tfd = 0x50;
        };
        let error = |port: &mut Port, err: u8| {
            port.tfd = 0x51 | (u32::from(err) << 8);
            port.is |= 1 << 30;
        };
        if let Some((fp, e)) = *fail_next {
            if fp == p {
                *fail_next = None;
                return error(port, e);
            }
        }
        let mut data: Option<Vec<u8>> = None;
        match (&mut port.dev, cmd) {
            (Some(Dev::Disk(img)), 0xec) => {
                data = Some(identify(0x0040, "FAKE SATA DISK", (img.len() / 512) as u64))
            }
            (Some(Dev::Disk(img)), 0x25 | 0x35) => {
                let (a, b) = (lba as usize * 512, (lba + count) as usize * 512);
                if b > img.len() || b - a != dbc {
                    return error(port, 0x10); // IDNF
                }
                if cmd == 0x35 {
                    if !write {
                        v.push(String::from("WRITE DMA EXT without the W bit"));
                    }
                    let Some(src) = self.mem(v, dba, dbc) else {
                        return;
                    };
                    img[a..b].copy_from_slice(src);
                    hdr[4..8].copy_from_slice(&(dbc as u32).to_le_bytes());
                    return ok(port);
                }
                data = Some(img[a..b].to_vec());
            }
            (Some(Dev::Disk(_)), 0xea) => {}
            (Some(Dev::Cd { .. }), 0xa1) => data = Some(identify(0x8580, "FAKE SATA DVD", 0)),
            (
                Some(Dev::Cd {
                    image,
                    unit_attentions,
                    sense,
                }),
                0xa0,
            ) => {
                if !atapi {
                    v.push(String::from("PACKET without the A bit"));
                }
                let op = packet[0];
                let blocks = (image.len() / 2048) as u64;
                let be32 = |b: &[u8]| u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                let mut check = |k: u8, a: u8, q: u8, port_tfd: &mut u32| {
                    *sense = (k, a, q);
                    *port_tfd = 0x51 | (u32::from(k << 4 | 4) << 8);
                };
                if op != 0x03 && *unit_attentions > 0 {
                    *unit_attentions -= 1;
                    check(6, 0x29, 0, &mut port.tfd);
                    port.is |= 1 << 30;
                    return;
                }
                match op {
                    0x00 => {}
                    0x03 => {
                        let mut d = vec![0u8; 18];
                        d[0] = 0x70;
                        d[2] = sense.0;
                        d[7] = 10;
                        d[12] = sense.1;
                        d[13] = sense.2;
                        *sense = (0, 0, 0);
                        d.truncate(usize::from(packet[4]));
                        data = Some(d);
                    }
                    0x25 => {
                        let mut d = ((blocks - 1) as u32).to_be_bytes().to_vec();
                        d.extend_from_slice(&2048u32.to_be_bytes());
                        data = Some(d);
                    }
                    0x28 | 0xa8 => {
                        let lba = be32(&packet[2..6]);
                        let n = if op == 0x28 {
                            u64::from(u16::from_be_bytes([packet[7], packet[8]]))
                        } else {
                            be32(&packet[6..10])
                        };
                        if lba + n > blocks {
                            check(5, 0x21, 0, &mut port.tfd);
                            port.is |= 1 << 30;
                            return;
                        }
                        data = Some(image[lba as usize * 2048..(lba + n) as usize * 2048].to_vec());
                    }
                    _ => {
                        check(5, 0x20, 0, &mut port.tfd);
                        port.is |= 1 << 30;
                        return;
                    }
                }
            }
            _ => return error(port, 0x04),
        }
        let moved = match data {
            Some(d) => {
                let n = d.len().min(dbc);
                if n > 0 {
                    let Some(dst) = self.mem(v, dba, n) else {
                        return;
                    };
                    dst.copy_from_slice(&d[..n]);
                }
                n
            }
            None => 0,
        };
        hdr[4..8].copy_from_slice(&(moved as u32).to_le_bytes());
        ok(port);
    }
}

impl Mmio for FakeAhci {
    fn len(&self) -> usize {
        0x1100
    }
    fn read8(&self, off: usize) -> u8 {
        (self.read32(off & !3) >> ((off & 3) * 8)) as u8
    }
    fn read16(&self, off: usize) -> u16 {
        (self.read32(off & !3) >> ((off & 2) * 8)) as u16
    }
    fn read32(&self, off: usize) -> u32 {
        let st = self.st.lock().unwrap();
        let n = st.ports.len() as u32;
        match off {
            0x00 => (1 << 31) | (31 << 8) | (n - 1), // S64A, 32 slots, NP
            0x04 => st.ghc,
            0x0c => (1u32 << n) - 1,
            0x10 => 0x0001_0000,
            o if o >= 0x100 => {
                let (p, r) = ((o - 0x100) / 0x80, (o - 0x100) % 0x80);
                let Some(port) = st.ports.get(p) else {
                    return 0;
                };
                match r {
                    0x00 => port.clb as u32,
                    0x04 => (port.clb >> 32) as u32,
                    0x08 => port.fb as u32,
                    0x0c => (port.fb >> 32) as u32,
                    0x10 => port.is,
                    0x18 => {
                        // CR and FR follow ST and FRE at once.
                        let c = port.cmd;
                        c | ((c & 1) << 15) | ((c >> 4 & 1) << 14)
                    }
                    0x20 => {
                        if port.dev.is_some() {
                            port.tfd
                        } else {
                            0x7f
                        }
                    }
                    0x24 => match port.dev {
                        Some(Dev::Disk(_)) => 0x0000_0101,
                        Some(Dev::Cd { .. }) => 0xeb14_0101,
                        None => 0xffff_ffff,
                    },
                    0x28 => {
                        if port.dev.is_some() {
                            0x123
                        } else {
                            0
                        }
                    }
                    0x30 => port.serr,
                    0x38 => 0, // commands complete at once
                    _ => 0,
                }
            }
            _ => 0,
        }
    }
    fn write8(&self, off: usize, _: u8) {
        self.st
            .lock()
            .unwrap()
            .violations
            .push(format!("8-bit write at {:#x}", off));
    }
    fn write16(&self, off: usize, _: u16) {
        self.st
            .lock()
            .unwrap()
            .violations
            .push(format!("16-bit write at {:#x}", off));
    }
    fn write32(&self, off: usize, val: u32) {
        let mut st = self.st.lock().unwrap();
        match off {
            0x04 => st.ghc = val,
            o if o >= 0x100 => {
                let (p, r) = ((o - 0x100) / 0x80, (o - 0x100) % 0x80);
                if p >= st.ports.len() {
                    return;
                }
                let running = st.ports[p].cmd & 1 != 0;
                if r == 0x18 && val & 1 != 0 && !running && st.ports[p].is & (1 << 30) != 0 {
                    st.violations
                        .push(format!("port {}: ST set with PxIS.TFES still set", p));
                }
                if r == 0x38 && val & 1 != 0 {
                    self.run(&mut st, p);
                    return;
                }
                let port = &mut st.ports[p];
                match r {
                    0x00 => port.clb = (port.clb & !0xffff_ffff) | u64::from(val),
                    0x04 => port.clb = (port.clb & 0xffff_ffff) | (u64::from(val) << 32),
                    0x08 => port.fb = (port.fb & !0xffff_ffff) | u64::from(val),
                    0x0c => port.fb = (port.fb & 0xffff_ffff) | (u64::from(val) << 32),
                    0x10 => port.is &= !val,
                    0x18 => {
                        if port.dev.is_some() && port.tfd == 0x7f {
                            port.tfd = 0x50; // the device's first D2H FIS
                        }
                        port.cmd = val & !((1 << 15) | (1 << 14));
                    }
                    0x30 => port.serr &= !val,
                    _ => {}
                }
                if r == 0x00 || r == 0x08 {
                    let port = &st.ports[p];
                    if running && port.cmd & 1 != 0 {
                        st.violations
                            .push(format!("port {}: CLB/FB changed while running", p));
                    }
                }
            }
            _ => {}
        }
    }
}

/// A register window onto a leaked model, for `ahci::probe`.
pub struct Window(pub &'static FakeAhci);

impl Mmio for Window {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn read8(&self, off: usize) -> u8 {
        self.0.read8(off)
    }
    fn read16(&self, off: usize) -> u16 {
        self.0.read16(off)
    }
    fn read32(&self, off: usize) -> u32 {
        self.0.read32(off)
    }
    fn write8(&self, off: usize, v: u8) {
        self.0.write8(off, v)
    }
    fn write16(&self, off: usize, v: u16) {
        self.0.write16(off, v)
    }
    fn write32(&self, off: usize, v: u32) {
        self.0.write32(off, v)
    }
}
