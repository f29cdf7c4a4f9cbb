//! Controller registers in BAR0 (NVMe Base 2.0 §3.1.4) and the command and completion entry
//! layouts (§4.2, §4.6).

pub const CAP: usize = 0x00;
pub const VS: usize = 0x08;
pub const INTMS: usize = 0x0c;
pub const INTMC: usize = 0x10;
pub const CC: usize = 0x14;
pub const CSTS: usize = 0x1c;
pub const AQA: usize = 0x24;
pub const ASQ: usize = 0x28;
pub const ACQ: usize = 0x30;
/// The first doorbell register.
pub const DOORBELLS: usize = 0x1000;

pub const CC_EN: u32 = 1 << 0;
/// CC.SHN = 01b: normal shutdown notification.
pub const CC_SHN_NORMAL: u32 = 1 << 14;
pub const CC_SHN_MASK: u32 = 3 << 14;
pub const CSTS_RDY: u32 = 1 << 0;
pub const CSTS_CFS: u32 = 1 << 1;
pub const CSTS_SHST_MASK: u32 = 3 << 2;
pub const CSTS_SHST_DONE: u32 = 2 << 2;

/// 64-byte submission and 16-byte completion entries: log2 sizes for CC.IOSQES/IOCQES.
pub const SQE_SHIFT: u32 = 6;
pub const CQE_SHIFT: u32 = 4;
pub const SQE_LEN: usize = 1 << SQE_SHIFT;
pub const CQE_LEN: usize = 1 << CQE_SHIFT;

/// The Controller Capabilities register, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cap {
    pub raw: u64,
}

impl Cap {
    /// Maximum Queue Entries Supported, as a count (the register holds it 0-based; at least 2).
    pub fn max_queue_entries(&self) -> u32 {
        (self.raw & 0xffff) as u32 + 1
    }
    /// Contiguous Queues Required.
    pub fn cqr(&self) -> bool {
        self.raw & (1 << 16) != 0
    }
    /// Worst-case time for CSTS.RDY to follow CC.EN, in milliseconds (TO is in 500 ms units).
    pub fn timeout_ms(&self) -> u64 {
        ((self.raw >> 24) & 0xff) * 500
    }
    /// Doorbell stride in bytes: 4 << DSTRD.
    pub fn doorbell_stride(&self) -> usize {
        4 << ((self.raw >> 32) & 0xf)
    }
    /// NVM Subsystem Reset Supported.
    pub fn nssrs(&self) -> bool {
        self.raw & (1 << 36) != 0
    }
    /// Command Sets Supported (bit 0 of the field = NVM command set).
    pub fn css(&self) -> u8 {
        ((self.raw >> 37) & 0xff) as u8
    }
    /// Minimum and maximum memory page size, bytes (2^(12 + MPSMIN/MPSMAX)).
    pub fn page_min(&self) -> u64 {
        1 << (12 + ((self.raw >> 48) & 0xf))
    }
    pub fn page_max(&self) -> u64 {
        1 << (12 + ((self.raw >> 52) & 0xf))
    }
    /// Controller Memory Buffer / Persistent Memory Region supported.
    pub fn cmbs(&self) -> bool {
        self.raw & (1 << 57) != 0
    }
    pub fn pmrs(&self) -> bool {
        self.raw & (1 << 56) != 0
    }
}

/// The CC value the driver writes to enable the controller: NVM command set, 4 KiB pages,
/// round-robin arbitration, 64/16-byte entries.
pub fn cc_enable() -> u32 {
    SQE_SHIFT << 16 | CQE_SHIFT << 20 | CC_EN
}

/// Offset of the submission queue tail (`completion` false) or completion queue head
/// doorbell of queue `qid`.
pub fn doorbell(qid: u16, completion: bool, stride: usize) -> usize {
    DOORBELLS + (2 * qid as usize + completion as usize) * stride
}

/// A submission queue entry (64 bytes, §4.2): the fields a PRP-based command uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Command {
    pub opcode: u8,
    pub cid: u16,
    pub nsid: u32,
    pub prp1: u64,
    pub prp2: u64,
    pub cdw10: u32,
    pub cdw11: u32,
    pub cdw12: u32,
    pub cdw13: u32,
    pub cdw14: u32,
    pub cdw15: u32,
}

impl Command {
    /// The 16 dwords as the controller reads them.
    pub fn to_dwords(&self) -> [u32; 16] {
        let mut d = [0u32; 16];
        // PSDT 00b (PRPs), FUSE 00b (normal).
        d[0] = self.opcode as u32 | (self.cid as u32) << 16;
        d[1] = self.nsid;
        d[6] = self.prp1 as u32;
        d[7] = (self.prp1 >> 32) as u32;
        d[8] = self.prp2 as u32;
        d[9] = (self.prp2 >> 32) as u32;
        d[10] = self.cdw10;
        d[11] = self.cdw11;
        d[12] = self.cdw12;
        d[13] = self.cdw13;
        d[14] = self.cdw14;
        d[15] = self.cdw15;
        d
    }
}

/// A completion queue entry (16 bytes, §4.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completion {
    pub dw0: u32,
    pub dw1: u32,
    pub sq_head: u16,
    pub sqid: u16,
    pub cid: u16,
    pub phase: bool,
    pub status: crate::Status,
}

impl Completion {
    pub fn from_dwords(d: [u32; 4]) -> Completion {
        Completion {
            dw0: d[0],
            dw1: d[1],
            sq_head: d[2] as u16,
            sqid: (d[2] >> 16) as u16,
            cid: d[3] as u16,
            phase: d[3] & (1 << 16) != 0,
            status: crate::Status::from_field((d[3] >> 17) as u16),
        }
    }
}

/// Admin command opcodes (§5).
pub mod admin {
    pub const DELETE_SQ: u8 = 0x00;
    pub const CREATE_SQ: u8 = 0x01;
    pub const GET_LOG_PAGE: u8 = 0x02;
    pub const DELETE_CQ: u8 = 0x04;
    pub const CREATE_CQ: u8 = 0x05;
    pub const IDENTIFY: u8 = 0x06;
    pub const ABORT: u8 = 0x08;
    pub const SET_FEATURES: u8 = 0x09;
    pub const GET_FEATURES: u8 = 0x0a;
}

/// NVM command set I/O opcodes (NVM Command Set 1.0 §3).
pub mod io {
    pub const FLUSH: u8 = 0x00;
    pub const WRITE: u8 = 0x01;
    pub const READ: u8 = 0x02;
}

/// Identify CNS values.
pub mod cns {
    pub const NAMESPACE: u8 = 0x00;
    pub const CONTROLLER: u8 = 0x01;
    pub const ACTIVE_NS_LIST: u8 = 0x02;
}

/// Log page identifiers.
pub mod log_id {
    pub const ERROR: u8 = 0x01;
    pub const SMART: u8 = 0x02;
}

/// Feature identifiers.
pub const FEATURE_NUM_QUEUES: u8 = 0x07;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_fields() {
        // QEMU's: MQES 0x7ff, CQR, TO 0x0f, DSTRD 0, CSS NVM (bit 37), MPSMAX 4.
        let cap = Cap {
            raw: 0x7ff | 1 << 16 | 0x0f << 24 | 1 << 37 | 4 << 52,
        };
        assert_eq!(cap.max_queue_entries(), 2048);
        assert!(cap.cqr());
        assert_eq!(cap.timeout_ms(), 7500);
        assert_eq!(cap.doorbell_stride(), 4);
        assert_eq!(cap.css(), 1);
        assert_eq!((cap.page_min(), cap.page_max()), (4096, 65536));
        assert_eq!(doorbell(0, false, 4), 0x1000);
        assert_eq!(doorbell(0, true, 4), 0x1004);
        assert_eq!(doorbell(3, true, 16), 0x1000 + 7 * 16);
        assert_eq!(cc_enable(), 0x0046_0001);
    }

    #[test]
    fn entries_round_trip() {
        let c = Command {
            opcode: 2,
            cid: 0x1234,
            nsid: 1,
            prp1: 0x1_2345_6000,
            prp2: 0xdead_b000,
            cdw10: 7,
            cdw12: 0xff,
            ..Default::default()
        };
        let d = c.to_dwords();
        assert_eq!(d[0], 0x1234_0002);
        assert_eq!((d[6], d[7], d[8], d[9]), (0x2345_6000, 1, 0xdead_b000, 0));
        let e = Completion::from_dwords([5, 0, 0x0001_0007, 0x0001_1234 | 0x80 << 17]);
        assert_eq!(
            (e.dw0, e.sq_head, e.sqid, e.cid, e.phase),
            (5, 7, 1, 0x1234, true)
        );
        assert_eq!(e.status.sc, 0x80);
    }
}
