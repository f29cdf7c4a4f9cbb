//! AHCI (Serial ATA AHCI 1.3.1): an HBA's ports, with SATA disks and ATAPI drives on them,
//! by DMA through one command slot per port, polled. Register offsets: §3.1 (HBA), §3.3
//! (port); the command list, received-FIS area and command table: §4.2.
use crate::atapi::PacketTransport;
use crate::ide::{DevKind, Identify, BUSY_NS};
use crate::AtaError;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use capmon_block::{check_request, BlkError, BlkInfo, BlockDevice};
use capmon_hal::{Clock, Dma, DmaRegion, MmioBox};

// HBA registers.
const CAP: usize = 0x00;
const GHC: usize = 0x04;
const PI: usize = 0x0c;
const VS: usize = 0x10;
const GHC_AE: u32 = 1 << 31;
const GHC_IE: u32 = 1 << 1;
pub const CAP_S64A: u32 = 1 << 31;
const CAP_SSS: u32 = 1 << 27;

// Port registers, at 0x100 + port * 0x80.
const PORT_BASE: usize = 0x100;
const PORT_LEN: usize = 0x80;
const P_CLB: usize = 0x00;
const P_CLBU: usize = 0x04;
const P_FB: usize = 0x08;
const P_FBU: usize = 0x0c;
const P_IS: usize = 0x10;
const P_IE: usize = 0x14;
const P_CMD: usize = 0x18;
const P_TFD: usize = 0x20;
const P_SIG: usize = 0x24;
const P_SSTS: usize = 0x28;
const P_SERR: usize = 0x30;
const P_CI: usize = 0x38;
const CMD_ST: u32 = 1 << 0;
const CMD_SUD: u32 = 1 << 1;
const CMD_POD: u32 = 1 << 2;
const CMD_FRE: u32 = 1 << 4;
const CMD_FR: u32 = 1 << 14;
const CMD_CR: u32 = 1 << 15;
const CMD_ATAPI: u32 = 1 << 24;
const IS_TFES: u32 = 1 << 30;
const TFD_BSY: u32 = 0x80;
const TFD_DRQ: u32 = 0x08;
const TFD_ERR: u32 = 0x01;
/// Port signatures (§3.3.9): what the device's first D2H FIS said.
pub const SIG_ATA: u32 = 0x0000_0101;
pub const SIG_ATAPI: u32 = 0xeb14_0101;

// ATA commands (ACS-3).
const ATA_IDENTIFY: u8 = 0xec;
const ATA_IDENTIFY_PACKET: u8 = 0xa1;
const ATA_PACKET: u8 = 0xa0;
const ATA_READ_DMA_EXT: u8 = 0x25;
const ATA_WRITE_DMA_EXT: u8 = 0x35;
const ATA_FLUSH_CACHE_EXT: u8 = 0xea;

// One port's DMA memory: command list (1 KiB aligned), received FISes (256 aligned), the
// command table (128 aligned) with one PRD, and the data buffer.
const MEM_CL: usize = 0;
const MEM_FIS: usize = 1024;
const MEM_CT: usize = 2048;
const MEM_DATA: usize = 4096;
/// The most one command moves: the data buffer's size.
pub const DATA_BYTES: usize = 256 << 10;
/// How long stopping or starting a port's engines may take (§10.1.2: 500 ms).
const ENGINE_NS: u64 = 500_000_000;

/// An HBA's registers, shared by its ports.
pub struct Hba {
    mmio: MmioBox,
    pub cap: u32,
    pub pi: u32,
    pub version: u32,
}

impl Hba {
    fn preg(&self, port: usize, r: usize) -> u32 {
        self.mmio.read32(PORT_BASE + port * PORT_LEN + r)
    }
    fn set_preg(&self, port: usize, r: usize, v: u32) {
        self.mmio.write32(PORT_BASE + port * PORT_LEN + r, v)
    }
    /// Command slots per port (CAP.NCS + 1).
    pub fn slots(&self) -> u32 {
        ((self.cap >> 8) & 0x1f) + 1
    }
    /// Ports the HBA has (CAP.NP + 1).
    pub fn ports(&self) -> u32 {
        (self.cap & 0x1f) + 1
    }
}

/// What one implemented port holds.
pub struct PortProbe {
    pub port: usize,
    /// PxSSTS: DET (bits 3:0; 3 = device and link up), SPD (7:4), IPM (11:8).
    pub ssts: u32,
    pub sig: u32,
    pub kind: Option<DevKind>,
    pub identify: Result<Identify, AtaError>,
    /// The started port, for a disk or drive to be made of.
    pub handle: Option<AhciPort>,
}

/// Brings the HBA behind `mmio` into AHCI mode, interrupts off, and starts every port a
/// device sits on: its signature and IDENTIFY (PACKET) DEVICE data.
pub fn probe(
    mmio: MmioBox,
    dma: &'static (dyn Dma + Sync),
    clock: &'static dyn Clock,
) -> (Arc<Hba>, Vec<PortProbe>) {
    mmio.write32(GHC, mmio.read32(GHC) | GHC_AE);
    mmio.write32(GHC, (mmio.read32(GHC) | GHC_AE) & !GHC_IE);
    let hba = Arc::new(Hba {
        cap: mmio.read32(CAP),
        pi: mmio.read32(PI),
        version: mmio.read32(VS),
        mmio,
    });
    let mut out = Vec::new();
    for port in 0..32 {
        if hba.pi & (1 << port) == 0 {
            continue;
        }
        let ssts = hba.preg(port, P_SSTS);
        let mut p = PortProbe {
            port,
            ssts,
            sig: 0,
            kind: None,
            identify: Err(AtaError::NoDevice),
            handle: None,
        };
        if ssts & 0xf == 3 {
            match AhciPort::start(hba.clone(), port, dma, clock) {
                Ok(mut h) => {
                    p.sig = h.sig;
                    p.kind = match h.sig {
                        SIG_ATA => Some(DevKind::Sata),
                        SIG_ATAPI => Some(DevKind::Satapi),
                        _ => None,
                    };
                    p.identify = match p.kind {
                        Some(DevKind::Satapi) => h.identify(ATA_IDENTIFY_PACKET),
                        Some(_) => h.identify(ATA_IDENTIFY),
                        None => Err(AtaError::Protocol(format!("signature {:#010x}", h.sig))),
                    };
                    p.handle = Some(h);
                }
                Err(e) => p.identify = Err(e),
            }
        }
        out.push(p);
    }
    (hba, out)
}

/// One started port: its command list, FIS area, command table and data buffer.
pub struct AhciPort {
    hba: Arc<Hba>,
    pub port: usize,
    clock: &'static dyn Clock,
    mem: DmaRegion,
    pub sig: u32,
    /// Commands that ended in an error and the port was restarted after.
    pub recoveries: u64,
}

impl AhciPort {
    fn start(
        hba: Arc<Hba>,
        port: usize,
        dma: &'static (dyn Dma + Sync),
        clock: &'static dyn Clock,
    ) -> Result<AhciPort, AtaError> {
        let mem = DmaRegion::alloc(dma, MEM_DATA + DATA_BYTES, 4096)
            .ok_or_else(|| AtaError::Protocol(String::from("no DMA memory for the port")))?;
        if mem.phys() >> 32 != 0 && hba.cap & CAP_S64A == 0 {
            return Err(AtaError::Protocol(String::from(
                "DMA memory above 4 GiB and the HBA has no 64-bit addressing",
            )));
        }
        let mut p = AhciPort {
            hba,
            port,
            clock,
            mem,
            sig: 0,
            recoveries: 0,
        };
        p.stop()?;
        let cl = p.mem.phys() + MEM_CL as u64;
        let fis = p.mem.phys() + MEM_FIS as u64;
        p.set(P_CLB, cl as u32);
        p.set(P_CLBU, (cl >> 32) as u32);
        p.set(P_FB, fis as u32);
        p.set(P_FBU, (fis >> 32) as u32);
        p.set(P_SERR, u32::MAX);
        p.set(P_IS, u32::MAX);
        p.set(P_IE, 0);
        let mut cmd = p.reg(P_CMD) | CMD_FRE;
        if p.hba.cap & CAP_SSS != 0 {
            cmd |= CMD_SUD | CMD_POD;
        }
        p.set(P_CMD, cmd);
        // The device's first D2H FIS clears BSY (and gives the signature).
        p.wait("the device to leave BSY after start", BUSY_NS, |p| {
            p.reg(P_TFD) & (TFD_BSY | TFD_DRQ) == 0
        })?;
        p.sig = p.reg(P_SIG);
        let mut cmd = p.reg(P_CMD) | CMD_ST;
        if p.sig == SIG_ATAPI {
            cmd |= CMD_ATAPI;
        }
        p.set(P_CMD, cmd);
        Ok(p)
    }

    fn reg(&self, r: usize) -> u32 {
        self.hba.preg(self.port, r)
    }
    fn set(&self, r: usize, v: u32) {
        self.hba.set_preg(self.port, r, v)
    }

    fn wait(
        &self,
        what: &'static str,
        bound_ns: u64,
        done: impl Fn(&Self) -> bool,
    ) -> Result<(), AtaError> {
        let start = self.clock.now_ns();
        while !done(self) {
            if self.clock.now_ns().saturating_sub(start) > bound_ns {
                return Err(AtaError::Timeout {
                    what,
                    status: self.reg(P_TFD) as u8,
                });
            }
            core::hint::spin_loop();
        }
        Ok(())
    }

    /// Stops the command engine, then FIS receive (§10.1.2).
    fn stop(&mut self) -> Result<(), AtaError> {
        self.set(P_CMD, self.reg(P_CMD) & !CMD_ST);
        self.wait("the port's command engine to stop", ENGINE_NS, |p| {
            p.reg(P_CMD) & CMD_CR == 0
        })?;
        self.set(P_CMD, self.reg(P_CMD) & !CMD_FRE);
        self.wait("the port's FIS receive to stop", ENGINE_NS, |p| {
            p.reg(P_CMD) & CMD_FR == 0
        })
    }

    /// After a task-file error the HBA stops taking commands: clear the error and restart the
    /// command engine (§6.2.2.1).
    fn recover(&mut self) {
        self.recoveries += 1;
        self.set(P_CMD, self.reg(P_CMD) & !CMD_ST);
        let _ = self.wait("the port's command engine to stop", ENGINE_NS, |p| {
            p.reg(P_CMD) & CMD_CR == 0
        });
        self.set(P_SERR, u32::MAX);
        self.set(P_IS, u32::MAX);
        self.set(P_CMD, self.reg(P_CMD) | CMD_ST);
    }

    fn put(&self, off: usize, bytes: &[u8]) {
        debug_assert!(off + bytes.len() <= self.mem.len());
        // SAFETY: `off + len` lies inside the port's DMA region (all offsets are the layout's
        // constants, data at most DATA_BYTES), which only this port object touches; the HBA
        // reads it only while a command is issued, and commands are issued from here alone.
        unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), self.mem.ptr(off), bytes.len()) }
    }

    fn get(&self, off: usize, out: &mut [u8]) {
        debug_assert!(off + out.len() <= self.mem.len());
        // SAFETY: as in `put`; the command that filled the data has completed (CI clear).
        unsafe { core::ptr::copy_nonoverlapping(self.mem.ptr(off), out.as_mut_ptr(), out.len()) }
    }

    /// Issues one command in slot 0 and waits for it: the register FIS, the ATAPI packet if
    /// any, `len` bytes of data at MEM_DATA (to the device when `write`). Returns the bytes the
    /// HBA moved (PRDBC).
    fn issue(
        &mut self,
        fis: &[u8; 20],
        packet: Option<&[u8; 12]>,
        write: bool,
        len: usize,
    ) -> Result<usize, AtaError> {
        if len > DATA_BYTES || !len.is_multiple_of(2) {
            return Err(AtaError::Protocol(format!("a transfer of {} bytes", len)));
        }
        self.wait("the device to leave BSY before a command", BUSY_NS, |p| {
            p.reg(P_TFD) & (TFD_BSY | TFD_DRQ) == 0
        })?;
        let prdtl: u32 = u32::from(len > 0);
        let dw0 = 5 | (u32::from(packet.is_some()) << 5) | (u32::from(write) << 6) | (prdtl << 16);
        let ct = self.mem.phys() + MEM_CT as u64;
        let mut hdr = [0u8; 32];
        hdr[0..4].copy_from_slice(&dw0.to_le_bytes());
        hdr[8..12].copy_from_slice(&(ct as u32).to_le_bytes());
        hdr[12..16].copy_from_slice(&((ct >> 32) as u32).to_le_bytes());
        self.put(MEM_CL, &hdr);
        let mut table = [0u8; 0x90];
        table[..20].copy_from_slice(fis);
        if let Some(p) = packet {
            table[0x40..0x4c].copy_from_slice(p);
        }
        if len > 0 {
            let data = self.mem.phys() + MEM_DATA as u64;
            table[0x80..0x84].copy_from_slice(&(data as u32).to_le_bytes());
            table[0x84..0x88].copy_from_slice(&((data >> 32) as u32).to_le_bytes());
            table[0x8c..0x90].copy_from_slice(&((len as u32) - 1).to_le_bytes());
        }
        self.put(MEM_CT, &table);
        self.set(P_IS, u32::MAX);
        self.set(P_CI, 1);
        let start = self.clock.now_ns();
        let failed = loop {
            if self.reg(P_IS) & IS_TFES != 0 {
                break true;
            }
            if self.reg(P_CI) & 1 == 0 {
                break false;
            }
            if self.clock.now_ns().saturating_sub(start) > BUSY_NS {
                let status = self.reg(P_TFD) as u8;
                self.recover();
                return Err(AtaError::Timeout {
                    what: "an AHCI command to complete",
                    status,
                });
            }
            core::hint::spin_loop();
        };
        let tfd = self.reg(P_TFD);
        if failed || tfd & TFD_ERR != 0 {
            self.recover();
            return Err(AtaError::Aborted {
                command: fis[2],
                error: (tfd >> 8) as u8,
            });
        }
        let mut moved = [0u8; 4];
        self.get(MEM_CL + 4, &mut moved);
        Ok(u32::from_le_bytes(moved) as usize)
    }

    fn identify(&mut self, cmd: u8) -> Result<Identify, AtaError> {
        let n = self.issue(&h2d(cmd, 0, 0, 0), None, false, 512)?;
        if n != 512 {
            return Err(AtaError::Protocol(format!("IDENTIFY moved {} bytes", n)));
        }
        let mut b = [0u8; 512];
        self.get(MEM_DATA, &mut b);
        let mut w = [0u16; 256];
        for (i, x) in w.iter_mut().enumerate() {
            *x = u16::from_le_bytes([b[2 * i], b[2 * i + 1]]);
        }
        Ok(Identify::parse(w))
    }

    /// PxSSTS, PxTFD and PxSERR now, for the `ahci` command.
    pub fn status(&self) -> (u32, u32, u32) {
        (self.reg(P_SSTS), self.reg(P_TFD), self.reg(P_SERR))
    }
}

/// A host-to-device register FIS (SATA 3.x §10.5.6): type 0x27, C set, a 48-bit LBA.
fn h2d(cmd: u8, features: u8, lba: u64, count: u16) -> [u8; 20] {
    let l = lba.to_le_bytes();
    let c = count.to_le_bytes();
    [
        0x27, 0x80, cmd, features, l[0], l[1], l[2], 0x40, l[3], l[4], l[5], 0, c[0], c[1], 0, 0,
        0, 0, 0, 0,
    ]
}

impl PacketTransport for AhciPort {
    fn packet(&mut self, cdb: &[u8; 12], buf: &mut [u8]) -> Result<usize, AtaError> {
        let len = buf.len().next_multiple_of(2);
        // Features bit 0: the data phase by DMA. LBA mid/high: the byte count limit, which
        // PIO would use.
        let mut fis = h2d(ATA_PACKET, 1, 0, 0);
        fis[5] = len as u8;
        fis[6] = (len >> 8) as u8;
        fis[7] = 0;
        let n = self.issue(&fis, Some(cdb), false, len)?;
        if n > len {
            return Err(AtaError::Protocol(format!(
                "op {:#04x}: {} bytes moved into {}",
                cdb[0], n, len
            )));
        }
        let take = n.min(buf.len());
        self.get(MEM_DATA, &mut buf[..take]);
        Ok(n.min(buf.len()))
    }

    fn driver(&self) -> &'static str {
        "ahci-atapi"
    }
}

/// A SATA disk on an AHCI port.
pub struct AhciDisk {
    port: AhciPort,
    ident: Identify,
    sector: u32,
    sectors: u64,
}

impl AhciDisk {
    /// A disk of the geometry IDENTIFY DEVICE gives: LBA48 capacity (words 100-103, else
    /// 60-61), logical sector size (words 106, 117-118).
    pub fn new(port: AhciPort, ident: Identify) -> Result<AhciDisk, AtaError> {
        let w = &ident.words;
        let sectors = if w[83] & (1 << 10) != 0 {
            u64::from(w[100])
                | u64::from(w[101]) << 16
                | u64::from(w[102]) << 32
                | u64::from(w[103]) << 48
        } else {
            u64::from(w[60]) | u64::from(w[61]) << 16
        };
        let sector = if w[106] & 0xc000 == 0x4000 && w[106] & (1 << 12) != 0 {
            2 * (u32::from(w[117]) | u32::from(w[118]) << 16)
        } else {
            512
        };
        if sectors == 0 || !(512..=DATA_BYTES as u32).contains(&sector) || !sector.is_power_of_two()
        {
            return Err(AtaError::Protocol(format!(
                "IDENTIFY gives {} sectors of {} bytes",
                sectors, sector
            )));
        }
        Ok(AhciDisk {
            port,
            ident,
            sector,
            sectors,
        })
    }

    pub fn identify(&self) -> &Identify {
        &self.ident
    }

    pub fn port(&self) -> &AhciPort {
        &self.port
    }

    fn per_command(&self) -> usize {
        DATA_BYTES / self.sector as usize
    }
}

fn blk(e: AtaError) -> BlkError {
    BlkError::Other(format!("{}", e))
}

impl BlockDevice for AhciDisk {
    fn sector_size(&self) -> u32 {
        self.sector
    }
    fn capacity(&self) -> u64 {
        self.sectors
    }
    fn read_only(&self) -> bool {
        false
    }
    fn info(&self) -> BlkInfo {
        BlkInfo {
            driver: "ahci",
            model: Some(self.ident.model.clone()),
            serial: Some(self.ident.serial.clone()).filter(|s| !s.is_empty()),
        }
    }
    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), BlkError> {
        check_request(lba, buf.len(), self.sector, self.sectors)?;
        let per = self.per_command();
        let ss = self.sector as usize;
        for (i, chunk) in buf.chunks_mut(per * ss).enumerate() {
            let at = lba + (i * per) as u64;
            let count = (chunk.len() / ss) as u16;
            let n = self
                .port
                .issue(
                    &h2d(ATA_READ_DMA_EXT, 0, at, count),
                    None,
                    false,
                    chunk.len(),
                )
                .map_err(blk)?;
            if n != chunk.len() {
                return Err(blk(AtaError::Protocol(format!(
                    "READ DMA EXT of {} sectors at {} moved {} bytes",
                    count, at, n
                ))));
            }
            self.port.get(MEM_DATA, chunk);
        }
        Ok(())
    }
    fn write(&mut self, lba: u64, buf: &[u8]) -> Result<(), BlkError> {
        check_request(lba, buf.len(), self.sector, self.sectors)?;
        let per = self.per_command();
        let ss = self.sector as usize;
        for (i, chunk) in buf.chunks(per * ss).enumerate() {
            let at = lba + (i * per) as u64;
            let count = (chunk.len() / ss) as u16;
            self.port.put(MEM_DATA, chunk);
            let n = self
                .port
                .issue(
                    &h2d(ATA_WRITE_DMA_EXT, 0, at, count),
                    None,
                    true,
                    chunk.len(),
                )
                .map_err(blk)?;
            if n != chunk.len() {
                return Err(blk(AtaError::Protocol(format!(
                    "WRITE DMA EXT of {} sectors at {} moved {} bytes",
                    count, at, n
                ))));
            }
        }
        Ok(())
    }
    fn flush(&mut self) -> Result<(), BlkError> {
        self.port
            .issue(&h2d(ATA_FLUSH_CACHE_EXT, 0, 0, 0), None, false, 0)
            .map(|_| ())
            .map_err(blk)
    }
}
