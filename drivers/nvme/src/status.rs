//! Completion status: the Status Field of a completion queue entry (NVMe Base 2.0 §4.6.1),
//! decoded into its type (SCT) and code (SC), with the names the specification gives them.
use core::fmt;

/// A completion's status: Status Code Type, Status Code, and the More and Do Not Retry bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    pub sct: u8,
    pub sc: u8,
    pub more: bool,
    pub dnr: bool,
}

impl Status {
    /// From the 15-bit Status Field (without the phase tag): SC in bits 7:0, SCT in 10:8,
    /// CRD in 12:11, More in 13, DNR in 14.
    pub fn from_field(field: u16) -> Status {
        Status {
            sc: field as u8,
            sct: ((field >> 8) & 7) as u8,
            more: field & (1 << 13) != 0,
            dnr: field & (1 << 14) != 0,
        }
    }

    pub const SUCCESS: Status = Status {
        sct: 0,
        sc: 0,
        more: false,
        dnr: false,
    };

    pub fn is_success(&self) -> bool {
        self.sct == 0 && self.sc == 0
    }

    /// SCT and SC as one number, `(sct << 8) | sc`, as the block layer reports it.
    pub fn code(&self) -> u32 {
        (self.sct as u32) << 8 | self.sc as u32
    }

    /// Command Abort Requested: what a command we aborted completes with.
    pub fn is_abort_requested(&self) -> bool {
        self.sct == 0 && self.sc == 0x07
    }

    pub fn type_name(&self) -> &'static str {
        match self.sct {
            0 => "generic",
            1 => "command specific",
            2 => "media and data integrity",
            3 => "path related",
            7 => "vendor specific",
            _ => "reserved type",
        }
    }

    /// The specification's name of this status.
    pub fn name(&self) -> &'static str {
        match (self.sct, self.sc) {
            (0, 0x00) => "Successful Completion",
            (0, 0x01) => "Invalid Command Opcode",
            (0, 0x02) => "Invalid Field in Command",
            (0, 0x03) => "Command ID Conflict",
            (0, 0x04) => "Data Transfer Error",
            (0, 0x05) => "Commands Aborted due to Power Loss Notification",
            (0, 0x06) => "Internal Error",
            (0, 0x07) => "Command Abort Requested",
            (0, 0x08) => "Command Aborted due to SQ Deletion",
            (0, 0x09) => "Command Aborted due to Failed Fused Command",
            (0, 0x0a) => "Command Aborted due to Missing Fused Command",
            (0, 0x0b) => "Invalid Namespace or Format",
            (0, 0x0c) => "Command Sequence Error",
            (0, 0x0d) => "Invalid SGL Segment Descriptor",
            (0, 0x0e) => "Invalid Number of SGL Descriptors",
            (0, 0x0f) => "Data SGL Length Invalid",
            (0, 0x10) => "Metadata SGL Length Invalid",
            (0, 0x11) => "SGL Descriptor Type Invalid",
            (0, 0x12) => "Invalid Use of Controller Memory Buffer",
            (0, 0x13) => "PRP Offset Invalid",
            (0, 0x14) => "Atomic Write Unit Exceeded",
            (0, 0x15) => "Operation Denied",
            (0, 0x16) => "SGL Offset Invalid",
            (0, 0x18) => "Host Identifier Inconsistent Format",
            (0, 0x19) => "Keep Alive Timer Expired",
            (0, 0x1a) => "Keep Alive Timeout Invalid",
            (0, 0x1b) => "Command Aborted due to Preempt and Abort",
            (0, 0x1c) => "Sanitize Failed",
            (0, 0x1d) => "Sanitize In Progress",
            (0, 0x1e) => "SGL Data Block Granularity Invalid",
            (0, 0x1f) => "Command Not Supported for Queue in CMB",
            (0, 0x20) => "Namespace is Write Protected",
            (0, 0x21) => "Command Interrupted",
            (0, 0x22) => "Transient Transport Error",
            (0, 0x80) => "LBA Out of Range",
            (0, 0x81) => "Capacity Exceeded",
            (0, 0x82) => "Namespace Not Ready",
            (0, 0x83) => "Reservation Conflict",
            (0, 0x84) => "Format In Progress",
            (1, 0x00) => "Completion Queue Invalid",
            (1, 0x01) => "Invalid Queue Identifier",
            (1, 0x02) => "Invalid Queue Size",
            (1, 0x03) => "Abort Command Limit Exceeded",
            (1, 0x05) => "Asynchronous Event Request Limit Exceeded",
            (1, 0x06) => "Invalid Firmware Slot",
            (1, 0x07) => "Invalid Firmware Image",
            (1, 0x08) => "Invalid Interrupt Vector",
            (1, 0x09) => "Invalid Log Page",
            (1, 0x0a) => "Invalid Format",
            (1, 0x0b) => "Firmware Activation Requires Conventional Reset",
            (1, 0x0c) => "Invalid Queue Deletion",
            (1, 0x0d) => "Feature Identifier Not Saveable",
            (1, 0x0e) => "Feature Not Changeable",
            (1, 0x0f) => "Feature Not Namespace Specific",
            (1, 0x10) => "Firmware Activation Requires NVM Subsystem Reset",
            (1, 0x11) => "Firmware Activation Requires Controller Level Reset",
            (1, 0x12) => "Firmware Activation Requires Maximum Time Violation",
            (1, 0x13) => "Firmware Activation Prohibited",
            (1, 0x14) => "Overlapping Range",
            (1, 0x15) => "Namespace Insufficient Capacity",
            (1, 0x16) => "Namespace Identifier Unavailable",
            (1, 0x18) => "Namespace Already Attached",
            (1, 0x19) => "Namespace Is Private",
            (1, 0x1a) => "Namespace Not Attached",
            (1, 0x1b) => "Thin Provisioning Not Supported",
            (1, 0x1c) => "Controller List Invalid",
            (1, 0x80) => "Conflicting Attributes",
            (1, 0x81) => "Invalid Protection Information",
            (1, 0x82) => "Attempted Write to Read Only Range",
            (2, 0x80) => "Write Fault",
            (2, 0x81) => "Unrecovered Read Error",
            (2, 0x82) => "End-to-end Guard Check Error",
            (2, 0x83) => "End-to-end Application Tag Check Error",
            (2, 0x84) => "End-to-end Reference Tag Check Error",
            (2, 0x85) => "Compare Failure",
            (2, 0x86) => "Access Denied",
            (2, 0x87) => "Deallocated or Unwritten Logical Block",
            (3, 0x00) => "Internal Path Error",
            (3, 0x01) => "Asymmetric Access Persistent Loss",
            (3, 0x02) => "Asymmetric Access Inaccessible",
            (3, 0x03) => "Asymmetric Access Transition",
            (3, 0x60) => "Controller Pathing Error",
            (3, 0x70) => "Host Pathing Error",
            (3, 0x71) => "Command Aborted By Host",
            (7, _) => "vendor specific status",
            _ => "unknown status",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (SCT {:#x} {}, SC {:#04x}{})",
            self.name(),
            self.sct,
            self.type_name(),
            self.sc,
            if self.dnr { ", do not retry" } else { "" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

    #[test]
    fn field_decodes_type_code_and_flags() {
        // SCT 0, SC 0x80, DNR (QEMU's 0x4080).
        let s = Status::from_field(0x4000 | 0x80);
        assert_eq!((s.sct, s.sc, s.dnr, s.more), (0, 0x80, true, false));
        assert_eq!(s.name(), "LBA Out of Range");
        assert_eq!(s.code(), 0x80);
        assert_eq!(
            format!("{}", s),
            "LBA Out of Range (SCT 0x0 generic, SC 0x80, do not retry)"
        );
        let q = Status::from_field(1 << 8 | 1 | 1 << 13);
        assert_eq!((q.sct, q.sc, q.more), (1, 1, true));
        assert_eq!(q.name(), "Invalid Queue Identifier");
        assert_eq!(q.code(), 0x101);
        assert!(Status::from_field(0).is_success());
        assert!(Status::from_field(7).is_abort_requested());
        assert_eq!(
            Status::from_field(2 << 8 | 0x81).name(),
            "Unrecovered Read Error"
        );
        assert_eq!(Status::from_field(5 << 8).name(), "unknown status");
        // QEMU's Internal Error with DNR, as a completion's dword 3 carries it.
        let dw3: u32 = 0x4006 << 17 | 1 << 16 | 0x200;
        let s = Status::from_field((dw3 >> 17) as u16);
        assert_eq!((s.sct, s.sc, s.dnr), (0, 6, true));
    }
}
