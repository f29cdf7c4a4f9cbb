//! An ATAPI CD-ROM as a `BlockDevice`: SCSI packet commands through the PACKET command in PIO
//! mode (ATA/ATAPI-6 §8.21, §9.8), polled.
use crate::ide::{
    Channel, Identify, Regs, BUSY_NS, CMD_PACKET, COUNT, DF, DRQ, ERR, ERROR, FEATURES, LBA_HIGH,
    LBA_MID,
};
use crate::AtaError;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use capmon_block::{check_request, BlkError, BlkInfo, BlockDevice};
use capmon_hal::{Clock, PortIo};

/// A CD's logical block.
pub const BLOCK: usize = 2048;
/// The most bytes the device may move per DRQ block (the byte count limit, §8.21.4): a
/// multiple of the block that fits the 16-bit register.
const BYTE_COUNT_LIMIT: u16 = 16 * BLOCK as u16;
/// The most blocks one READ asks for.
const MAX_BLOCKS: usize = 128;
/// How often a command is tried again after UNIT ATTENTION.
const UA_RETRIES: usize = 4;
/// How long a drive that is becoming ready is waited for.
const READY_NS: u64 = 10_000_000_000;

// SCSI operation codes (SPC-3, MMC-5).
const TEST_UNIT_READY: u8 = 0x00;
const REQUEST_SENSE: u8 = 0x03;
const READ_CAPACITY: u8 = 0x25;
const READ_10: u8 = 0x28;
const READ_12: u8 = 0xa8;

// Sense keys and codes.
const KEY_NOT_READY: u8 = 0x2;
const KEY_ILLEGAL_REQUEST: u8 = 0x5;
const KEY_UNIT_ATTENTION: u8 = 0x6;
const ASC_BECOMING_READY: u8 = 0x04;
const ASC_INVALID_OPCODE: u8 = 0x20;

/// How packet commands reach a drive: the IDE task file in PIO (`IdePacket`), or an AHCI
/// port by DMA (`crate::ahci`).
pub trait PacketTransport {
    /// One packet command with data to the host, into `buf`: the bytes the drive sent.
    /// CHECK CONDITION is `AtaError::Aborted` whose error value's high nibble is the sense key.
    fn packet(&mut self, cdb: &[u8; 12], buf: &mut [u8]) -> Result<usize, AtaError>;
    /// `atapi` or `ahci-atapi`, for `BlkInfo::driver`.
    fn driver(&self) -> &'static str;
}

/// An ATAPI CD/DVD drive over a transport: 2048-byte blocks, read-only.
pub struct AtapiCd<T: PacketTransport> {
    t: T,
    clock: &'static dyn Clock,
    ident: Identify,
    blocks: u64,
    /// Cleared when the drive refuses READ(12); READ(10) then.
    read12: bool,
    /// UNIT ATTENTIONs seen (and retried past) since open.
    pub unit_attentions: u64,
}

impl<T: PacketTransport> AtapiCd<T> {
    /// Opens the drive behind `t` (IDENTIFY PACKET DEVICE gave `ident`): waits out UNIT
    /// ATTENTION and a drive becoming ready, then reads its capacity.
    pub fn open(t: T, clock: &'static dyn Clock, ident: Identify) -> Result<Self, AtaError> {
        if ident.packet_bytes != 12 {
            return Err(AtaError::Protocol(format!(
                "{}-byte packets (only 12-byte ones are supported)",
                ident.packet_bytes
            )));
        }
        let mut cd = AtapiCd {
            t,
            clock,
            ident,
            blocks: 0,
            read12: true,
            unit_attentions: 0,
        };
        cd.command(&[TEST_UNIT_READY, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], &mut [])?;
        let mut cap = [0u8; 8];
        let n = cd.command(&[READ_CAPACITY, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], &mut cap)?;
        if n != 8 {
            return Err(AtaError::Protocol(format!(
                "READ CAPACITY returned {} bytes",
                n
            )));
        }
        let last = u32::from_be_bytes([cap[0], cap[1], cap[2], cap[3]]);
        let len = u32::from_be_bytes([cap[4], cap[5], cap[6], cap[7]]);
        if len as usize != BLOCK {
            return Err(AtaError::Protocol(format!(
                "a block length of {} (not {})",
                len, BLOCK
            )));
        }
        cd.blocks = u64::from(last) + 1;
        Ok(cd)
    }

    pub fn identify(&self) -> &Identify {
        &self.ident
    }

    pub fn transport(&self) -> &T {
        &self.t
    }

    /// A packet command with retries: after UNIT ATTENTION (a medium change or reset the
    /// drive reports once) and while the drive is becoming ready. Returns the bytes moved.
    pub fn command(&mut self, cdb: &[u8; 12], buf: &mut [u8]) -> Result<usize, AtaError> {
        let start = self.clock.now_ns();
        let mut ua = 0;
        loop {
            let e = match self.t.packet(cdb, buf) {
                Ok(n) => return Ok(n),
                Err(AtaError::Aborted { error, .. }) if cdb[0] != REQUEST_SENSE => {
                    self.sense(cdb[0], error)?
                }
                Err(e) => return Err(e),
            };
            match e {
                AtaError::Sense {
                    key: KEY_UNIT_ATTENTION,
                    ..
                } if ua < UA_RETRIES => {
                    ua += 1;
                    self.unit_attentions += 1;
                }
                AtaError::Sense {
                    key: KEY_NOT_READY,
                    asc: ASC_BECOMING_READY,
                    ..
                } if self.clock.now_ns().saturating_sub(start) < READY_NS => {}
                e => return Err(e),
            }
        }
    }

    /// REQUEST SENSE after `op` ended with CHECK CONDITION (`error`'s high nibble is the sense
    /// key); the error to report.
    fn sense(&mut self, op: u8, error: u8) -> Result<AtaError, AtaError> {
        let mut s = [0u8; 18];
        let cdb = [REQUEST_SENSE, 0, 0, 0, 18, 0, 0, 0, 0, 0, 0, 0];
        match self.t.packet(&cdb, &mut s) {
            Ok(n) if n >= 14 && s[0] & 0x7e == 0x70 => Ok(AtaError::Sense {
                op,
                key: s[2] & 0x0f,
                asc: s[12],
                ascq: s[13],
            }),
            // No usable sense data: the key from the error register alone.
            Ok(_) => Ok(AtaError::Sense {
                op,
                key: error >> 4,
                asc: 0,
                ascq: 0,
            }),
            Err(e) => Err(e),
        }
    }

    fn read_blocks(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), AtaError> {
        let count = (buf.len() / BLOCK) as u32;
        let l = (lba as u32).to_be_bytes();
        let n = if self.read12 {
            let c = count.to_be_bytes();
            let cdb = [
                READ_12, 0, l[0], l[1], l[2], l[3], c[0], c[1], c[2], c[3], 0, 0,
            ];
            match self.command(&cdb, buf) {
                Err(AtaError::Sense {
                    key: KEY_ILLEGAL_REQUEST,
                    asc: ASC_INVALID_OPCODE,
                    ..
                }) => {
                    log::info!("atapi: the drive refuses READ(12); using READ(10)");
                    self.read12 = false;
                    return self.read_blocks(lba, buf);
                }
                r => r?,
            }
        } else {
            let c = (count as u16).to_be_bytes();
            let cdb = [READ_10, 0, l[0], l[1], l[2], l[3], 0, c[0], c[1], 0, 0, 0];
            self.command(&cdb, buf)?
        };
        if n != buf.len() {
            return Err(AtaError::Protocol(format!(
                "READ of {} blocks at {} moved {} bytes",
                count, lba, n
            )));
        }
        Ok(())
    }
}

/// Packet commands through an IDE channel's task file, PIO data-in, polled (ATA/ATAPI-6
/// §8.21, §9.8).
pub struct IdePacket {
    io: &'static dyn PortIo,
    clock: &'static dyn Clock,
    ch: Channel,
    slave: bool,
    /// One DRQ block of data words.
    words: Vec<u16>,
}

impl IdePacket {
    pub fn new(
        io: &'static dyn PortIo,
        clock: &'static dyn Clock,
        ch: Channel,
        slave: bool,
    ) -> Self {
        IdePacket {
            io,
            clock,
            ch,
            slave,
            words: vec![0u16; BYTE_COUNT_LIMIT as usize / 2],
        }
    }

    pub fn channel(&self) -> Channel {
        self.ch
    }

    pub fn is_slave(&self) -> bool {
        self.slave
    }

    fn regs(&self) -> Regs<'static> {
        Regs {
            io: self.io,
            clock: self.clock,
            ch: self.ch,
        }
    }
}

impl PacketTransport for IdePacket {
    fn driver(&self) -> &'static str {
        "atapi"
    }

    /// One PACKET command, PIO data-in into `buf`: returns the bytes the device sent.
    fn packet(&mut self, cdb: &[u8; 12], buf: &mut [u8]) -> Result<usize, AtaError> {
        let r = self.regs();
        r.select(self.slave);
        r.wait_ready("the drive to leave BSY before PACKET", BUSY_NS)?;
        r.write(FEATURES, 0); // PIO, no overlap
        r.write(LBA_MID, BYTE_COUNT_LIMIT as u8);
        r.write(LBA_HIGH, (BYTE_COUNT_LIMIT >> 8) as u8);
        r.write(crate::ide::COMMAND, CMD_PACKET);
        r.settle();
        let st = r.wait_drq("the drive to take the packet", BUSY_NS)?;
        if st & (ERR | DF) != 0 || st & DRQ == 0 {
            return Err(AtaError::Aborted {
                command: CMD_PACKET,
                error: r.read(ERROR),
            });
        }
        for w in cdb.chunks(2) {
            self.io
                .outw(self.ch.base, u16::from(w[0]) | (u16::from(w[1]) << 8));
        }
        let mut got = 0usize;
        let words = &mut self.words;
        loop {
            r.settle();
            let st = r.wait_ready("the drive to finish the packet command", BUSY_NS)?;
            if st & (ERR | DF) != 0 {
                return Err(AtaError::Aborted {
                    command: CMD_PACKET,
                    error: r.read(ERROR),
                });
            }
            if st & DRQ == 0 {
                return Ok(got);
            }
            // Interrupt reason: IO set, CoD clear for data to the host (§9.8, table 37).
            let reason = r.read(COUNT) & 0x3;
            let n = usize::from(r.read(LBA_MID)) | (usize::from(r.read(LBA_HIGH)) << 8);
            if reason != 0x2 || n == 0 || n > BYTE_COUNT_LIMIT as usize || got + n > buf.len() {
                // Drain what the device offers so the channel is left idle, then report.
                let w = n.div_ceil(2).min(words.len());
                self.io.insw(self.ch.base, &mut words[..w]);
                return Err(AtaError::Protocol(format!(
                    "op {:#04x}: a data block of {} bytes (reason {}) with {} of {} taken",
                    cdb[0],
                    n,
                    reason,
                    got,
                    buf.len()
                )));
            }
            let w = n.div_ceil(2);
            self.io.insw(self.ch.base, &mut words[..w]);
            for (i, x) in words[..w].iter().enumerate() {
                let b = x.to_le_bytes();
                buf[got + 2 * i] = b[0];
                if 2 * i + 1 < n {
                    buf[got + 2 * i + 1] = b[1];
                }
            }
            got += n;
        }
    }
}

fn blk(e: AtaError) -> BlkError {
    BlkError::Other(format!("{}", e))
}

impl<T: PacketTransport> BlockDevice for AtapiCd<T> {
    fn sector_size(&self) -> u32 {
        BLOCK as u32
    }
    fn capacity(&self) -> u64 {
        self.blocks
    }
    fn read_only(&self) -> bool {
        true
    }
    fn info(&self) -> BlkInfo {
        BlkInfo {
            driver: self.t.driver(),
            model: Some(self.ident.model.clone()),
            serial: Some(String::from(self.ident.serial.as_str())).filter(|s| !s.is_empty()),
        }
    }
    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), BlkError> {
        check_request(lba, buf.len(), BLOCK as u32, self.blocks)?;
        for (i, chunk) in buf.chunks_mut(MAX_BLOCKS * BLOCK).enumerate() {
            self.read_blocks(lba + (i * MAX_BLOCKS) as u64, chunk)
                .map_err(blk)?;
        }
        Ok(())
    }
    fn write(&mut self, lba: u64, buf: &[u8]) -> Result<(), BlkError> {
        check_request(lba, buf.len(), BLOCK as u32, self.blocks)?;
        Err(BlkError::ReadOnly)
    }
    fn flush(&mut self) -> Result<(), BlkError> {
        Ok(())
    }
}
