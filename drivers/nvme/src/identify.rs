//! The data structures the controller returns, decoded from the bytes it wrote: Identify
//! Controller (CNS 01h), Identify Namespace (CNS 00h), the Active Namespace ID list (CNS 02h),
//! the SMART / Health log (02h) and the Error Information log (01h) (NVMe Base 2.0 §5.17, §5.16).
//!
//! Every parser takes whatever the device wrote, of any length: a short buffer reads as zeros
//! past its end, so a lying or broken controller gives odd values, never a panic.
use alloc::string::String;
use alloc::vec::Vec;

/// The size of one Identify data structure and of the driver's admin data page.
pub const IDENTIFY_LEN: usize = 4096;
pub const SMART_LEN: usize = 512;
pub const ERROR_ENTRY_LEN: usize = 64;

fn u8_at(b: &[u8], off: usize) -> u8 {
    b.get(off).copied().unwrap_or(0)
}

fn le(b: &[u8], off: usize, n: usize) -> u128 {
    (0..n)
        .rev()
        .fold(0u128, |v, i| v << 8 | u8_at(b, off + i) as u128)
}

fn u16_at(b: &[u8], off: usize) -> u16 {
    le(b, off, 2) as u16
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    le(b, off, 4) as u32
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    le(b, off, 8) as u64
}

/// An ASCII field padded with spaces (or NULs): trimmed, non-printable bytes shown as `?`.
fn ascii(b: &[u8], off: usize, len: usize) -> String {
    let s: String = (off..off + len)
        .map(|i| u8_at(b, i))
        .take_while(|c| *c != 0)
        .map(|c| {
            if c.is_ascii_graphic() || c == b' ' {
                c as char
            } else {
                '?'
            }
        })
        .collect();
    String::from(s.trim_end())
}

/// One power state descriptor (§5.17.2.1, Figure 276).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PowerState {
    /// Maximum power in units of 0.01 W (or 0.0001 W when `mxps`).
    pub max_power: u16,
    pub mxps: bool,
    pub non_operational: bool,
    /// Entry and exit latency, microseconds.
    pub entry_latency_us: u32,
    pub exit_latency_us: u32,
}

/// Identify Controller, the fields the monitor shows and the driver uses.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IdController {
    pub vid: u16,
    pub ssvid: u16,
    pub serial: String,
    pub model: String,
    pub firmware: String,
    pub rab: u8,
    pub ieee_oui: u32,
    pub cmic: u8,
    /// Maximum Data Transfer Size as a power of two in minimum memory pages; 0 = no limit.
    pub mdts: u8,
    pub cntlid: u16,
    pub ver: u32,
    pub rtd3r: u32,
    pub rtd3e: u32,
    pub oaes: u32,
    pub ctratt: u32,
    pub cntrltype: u8,
    pub oacs: u16,
    /// Abort Command Limit, 0-based.
    pub acl: u8,
    pub aerl: u8,
    pub frmw: u8,
    pub lpa: u8,
    /// Error Log Page Entries, 0-based.
    pub elpe: u8,
    /// Number of Power States Support, 0-based.
    pub npss: u8,
    pub wctemp: u16,
    pub cctemp: u16,
    pub sqes: u8,
    pub cqes: u8,
    pub maxcmd: u16,
    /// Number of Namespaces: the largest valid NSID.
    pub nn: u32,
    pub oncs: u16,
    pub fuses: u16,
    pub fna: u8,
    pub vwc: u8,
    pub awun: u16,
    pub awupf: u16,
    pub sgls: u32,
    pub mnan: u32,
    pub subnqn: String,
    pub power_states: Vec<PowerState>,
}

impl IdController {
    pub fn parse(b: &[u8]) -> IdController {
        let npss = u8_at(b, 263);
        let power_states = (0..=npss as usize)
            .map(|i| {
                let o = 2048 + i * 32;
                PowerState {
                    max_power: u16_at(b, o),
                    mxps: u8_at(b, o + 3) & 1 != 0,
                    non_operational: u8_at(b, o + 3) & 2 != 0,
                    entry_latency_us: u32_at(b, o + 4),
                    exit_latency_us: u32_at(b, o + 8),
                }
            })
            .collect();
        IdController {
            vid: u16_at(b, 0),
            ssvid: u16_at(b, 2),
            serial: ascii(b, 4, 20),
            model: ascii(b, 24, 40),
            firmware: ascii(b, 64, 8),
            rab: u8_at(b, 72),
            ieee_oui: le(b, 73, 3) as u32,
            cmic: u8_at(b, 76),
            mdts: u8_at(b, 77),
            cntlid: u16_at(b, 78),
            ver: u32_at(b, 80),
            rtd3r: u32_at(b, 84),
            rtd3e: u32_at(b, 88),
            oaes: u32_at(b, 92),
            ctratt: u32_at(b, 96),
            cntrltype: u8_at(b, 111),
            oacs: u16_at(b, 256),
            acl: u8_at(b, 258),
            aerl: u8_at(b, 259),
            frmw: u8_at(b, 260),
            lpa: u8_at(b, 261),
            elpe: u8_at(b, 262),
            npss,
            wctemp: u16_at(b, 266),
            cctemp: u16_at(b, 268),
            sqes: u8_at(b, 512),
            cqes: u8_at(b, 513),
            maxcmd: u16_at(b, 514),
            nn: u32_at(b, 516),
            oncs: u16_at(b, 520),
            fuses: u16_at(b, 522),
            fna: u8_at(b, 524),
            vwc: u8_at(b, 525),
            awun: u16_at(b, 526),
            awupf: u16_at(b, 528),
            sgls: u32_at(b, 536),
            mnan: u32_at(b, 540),
            subnqn: ascii(b, 768, 256),
            power_states,
        }
    }

    /// Whether a volatile write cache is present (so Flush matters).
    pub fn has_volatile_cache(&self) -> bool {
        self.vwc & 1 != 0
    }

    /// Optional NVM commands (ONCS bits) by name.
    pub fn oncs_names(&self) -> Vec<&'static str> {
        bit_names(
            self.oncs as u32,
            &[
                "Compare",
                "Write Uncorrectable",
                "Dataset Management",
                "Write Zeroes",
                "Save/Select in Features",
                "Reservations",
                "Timestamp",
                "Verify",
                "Copy",
            ],
        )
    }

    /// Optional admin commands (OACS bits) by name.
    pub fn oacs_names(&self) -> Vec<&'static str> {
        bit_names(
            self.oacs as u32,
            &[
                "Security Send/Receive",
                "Format NVM",
                "Firmware Download/Commit",
                "Namespace Management",
                "Device Self-test",
                "Directives",
                "NVMe-MI Send/Receive",
                "Virtualization Management",
                "Doorbell Buffer Config",
                "Get LBA Status",
                "Command and Feature Lockdown",
            ],
        )
    }
}

fn bit_names(v: u32, names: &[&'static str]) -> Vec<&'static str> {
    names
        .iter()
        .enumerate()
        .filter(|(i, _)| v & (1 << i) != 0)
        .map(|(_, n)| *n)
        .collect()
}

/// "1.4.0" from a VS register or Identify VER value (0 reads as "1.0.0 or older").
pub fn version_string(v: u32) -> String {
    if v == 0 {
        return String::from("1.0 (no VER)");
    }
    alloc::format!("{}.{}.{}", v >> 16, (v >> 8) & 0xff, v & 0xff)
}

/// One LBA Format (§5.17.2.1, Figure 277).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LbaFormat {
    /// Metadata bytes per LBA.
    pub ms: u16,
    /// LBA data size as a power of two (9 = 512 bytes); below 9 means unsupported.
    pub lbads: u8,
    /// Relative performance, 0 (best) to 3 (degraded).
    pub rp: u8,
}

impl LbaFormat {
    /// Bytes per LBA, if the format is usable (2^9 .. 2^16).
    pub fn data_size(&self) -> Option<u32> {
        (9..=16).contains(&self.lbads).then(|| 1u32 << self.lbads)
    }

    pub fn performance(&self) -> &'static str {
        ["best", "better", "good", "degraded"][(self.rp & 3) as usize]
    }
}

/// Identify Namespace (NVM command set), the fields the monitor shows and the driver uses.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IdNamespace {
    /// Namespace size, capacity and utilisation, in LBAs.
    pub nsze: u64,
    pub ncap: u64,
    pub nuse: u64,
    pub nsfeat: u8,
    /// The LBA formats the namespace supports (NLBAF + 1 of them).
    pub formats: Vec<LbaFormat>,
    pub flbas: u8,
    pub mc: u8,
    pub dpc: u8,
    pub dps: u8,
    pub nmic: u8,
    /// Namespace Attributes (bit 0: write protected).
    pub nsattr: u8,
    pub nguid: [u8; 16],
    pub eui64: [u8; 8],
}

impl IdNamespace {
    pub fn parse(b: &[u8]) -> IdNamespace {
        let nlbaf = u8_at(b, 25) as usize;
        // At most 64 formats fit the structure (NVMe 2.0); older controllers list up to 16.
        let formats = (0..=nlbaf.min(63))
            .map(|i| {
                let d = u32_at(b, 128 + 4 * i);
                LbaFormat {
                    ms: d as u16,
                    lbads: (d >> 16) as u8,
                    rp: ((d >> 24) & 3) as u8,
                }
            })
            .collect();
        let mut nguid = [0u8; 16];
        let mut eui64 = [0u8; 8];
        for (i, g) in nguid.iter_mut().enumerate() {
            *g = u8_at(b, 104 + i);
        }
        for (i, e) in eui64.iter_mut().enumerate() {
            *e = u8_at(b, 120 + i);
        }
        IdNamespace {
            nsze: u64_at(b, 0),
            ncap: u64_at(b, 8),
            nuse: u64_at(b, 16),
            nsfeat: u8_at(b, 24),
            formats,
            flbas: u8_at(b, 26),
            mc: u8_at(b, 27),
            dpc: u8_at(b, 28),
            dps: u8_at(b, 29),
            nmic: u8_at(b, 30),
            nsattr: u8_at(b, 99),
            nguid,
            eui64,
        }
    }

    /// The index of the LBA format in use (FLBAS bits 3:0, with bits 6:5 above them).
    pub fn format_index(&self) -> usize {
        ((self.flbas & 0xf) | ((self.flbas >> 5) & 3) << 4) as usize
    }

    /// The LBA format in use, if the index names one of the listed formats.
    pub fn format(&self) -> Option<LbaFormat> {
        self.formats.get(self.format_index()).copied()
    }

    /// Whether the namespace is write protected (NSATTR bit 0).
    pub fn write_protected(&self) -> bool {
        self.nsattr & 1 != 0
    }

    /// Whether metadata is transferred at the end of each LBA (extended LBA).
    pub fn extended_lba(&self) -> bool {
        self.flbas & 0x10 != 0
    }

    /// Whether the namespace is usable as a block device, and if not, why not.
    pub fn usable(&self) -> Result<u32, &'static str> {
        let f = self.format().ok_or("LBA format index out of range")?;
        let size = f.data_size().ok_or("unsupported LBA data size")?;
        if f.ms != 0 && self.extended_lba() {
            return Err("metadata interleaved with data (extended LBA)");
        }
        if f.ms != 0 {
            return Err("separate metadata buffer required");
        }
        if self.nsze == 0 {
            return Err("namespace size is 0");
        }
        Ok(size)
    }
}

/// The Active Namespace ID list: NSIDs in increasing order, up to the first zero.
pub fn parse_ns_list(b: &[u8]) -> Vec<u32> {
    let mut out: Vec<u32> = Vec::new();
    for i in 0..b.len().min(IDENTIFY_LEN) / 4 {
        let id = u32_at(b, 4 * i);
        if id == 0 {
            break;
        }
        // The list must increase; a controller that repeats or goes back is cut off there.
        if out.last().is_some_and(|l| id <= *l) || id == u32::MAX {
            break;
        }
        out.push(id);
    }
    out
}

/// The SMART / Health Information log page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Smart {
    pub critical_warning: u8,
    /// Composite temperature, Kelvin.
    pub temperature_k: u16,
    pub available_spare: u8,
    pub spare_threshold: u8,
    pub percentage_used: u8,
    /// In thousands of 512-byte units, rounded up.
    pub data_units_read: u128,
    pub data_units_written: u128,
    pub host_reads: u128,
    pub host_writes: u128,
    /// Minutes.
    pub busy_time: u128,
    pub power_cycles: u128,
    pub power_on_hours: u128,
    pub unsafe_shutdowns: u128,
    pub media_errors: u128,
    pub error_log_entries: u128,
    pub warning_temp_minutes: u32,
    pub critical_temp_minutes: u32,
    /// Temperature sensors 1..8 that report (non-zero), Kelvin.
    pub sensors: [u16; 8],
}

impl Smart {
    pub fn parse(b: &[u8]) -> Smart {
        let mut sensors = [0u16; 8];
        for (i, s) in sensors.iter_mut().enumerate() {
            *s = u16_at(b, 200 + 2 * i);
        }
        Smart {
            critical_warning: u8_at(b, 0),
            temperature_k: u16_at(b, 1),
            available_spare: u8_at(b, 3),
            spare_threshold: u8_at(b, 4),
            percentage_used: u8_at(b, 5),
            data_units_read: le(b, 32, 16),
            data_units_written: le(b, 48, 16),
            host_reads: le(b, 64, 16),
            host_writes: le(b, 80, 16),
            busy_time: le(b, 96, 16),
            power_cycles: le(b, 112, 16),
            power_on_hours: le(b, 128, 16),
            unsafe_shutdowns: le(b, 144, 16),
            media_errors: le(b, 160, 16),
            error_log_entries: le(b, 176, 16),
            warning_temp_minutes: u32_at(b, 192),
            critical_temp_minutes: u32_at(b, 196),
            sensors,
        }
    }

    /// The critical warning bits by name.
    pub fn warnings(&self) -> Vec<&'static str> {
        bit_names(
            self.critical_warning as u32,
            &[
                "spare below threshold",
                "temperature out of range",
                "reliability degraded",
                "read-only",
                "volatile backup failed",
                "persistent memory read-only",
            ],
        )
    }
}

/// One Error Information log entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorEntry {
    /// Unique, increasing; 0 means the entry is empty.
    pub count: u64,
    pub sqid: u16,
    pub cid: u16,
    pub status: crate::Status,
    pub param_location: u16,
    pub lba: u64,
    pub nsid: u32,
    pub command_info: u64,
}

/// The non-empty entries of an Error Information log, in the order the controller wrote them.
pub fn parse_error_log(b: &[u8]) -> Vec<ErrorEntry> {
    b.chunks(ERROR_ENTRY_LEN)
        .map(|e| ErrorEntry {
            count: u64_at(e, 0),
            sqid: u16_at(e, 8),
            cid: u16_at(e, 10),
            status: crate::Status::from_field(u16_at(e, 12) >> 1),
            param_location: u16_at(e, 14),
            lba: u64_at(e, 16),
            nsid: u32_at(e, 24),
            command_info: u64_at(e, 32),
        })
        .filter(|e| e.count != 0)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn put(b: &mut [u8], off: usize, v: &[u8]) {
        b[off..off + v.len()].copy_from_slice(v);
    }

    #[test]
    fn controller_fields_and_padded_strings() {
        let mut b = vec![0u8; IDENTIFY_LEN];
        put(&mut b, 0, &0x1b36u16.to_le_bytes());
        put(&mut b, 4, b"capmon-nv0          ");
        put(&mut b, 24, b"QEMU NVMe Ctrl                          ");
        put(&mut b, 64, b"10.0.2  ");
        b[77] = 7;
        put(&mut b, 80, &0x0001_0400u32.to_le_bytes());
        b[263] = 0;
        put(&mut b, 2048, &2500u16.to_le_bytes());
        b[512] = 0x66;
        b[513] = 0x44;
        put(&mut b, 516, &256u32.to_le_bytes());
        put(&mut b, 520, &0x15u16.to_le_bytes());
        b[525] = 1;
        put(&mut b, 768, b"nqn.2019-08.org.qemu:capmon-nv0\0");
        let c = IdController::parse(&b);
        assert_eq!(c.vid, 0x1b36);
        assert_eq!(c.serial, "capmon-nv0");
        assert_eq!(c.model, "QEMU NVMe Ctrl");
        assert_eq!(c.firmware, "10.0.2");
        assert_eq!((c.mdts, c.nn, c.sqes, c.cqes), (7, 256, 0x66, 0x44));
        assert_eq!(version_string(c.ver), "1.4.0");
        assert_eq!(c.subnqn, "nqn.2019-08.org.qemu:capmon-nv0");
        assert_eq!(
            c.oncs_names(),
            ["Compare", "Dataset Management", "Save/Select in Features"]
        );
        assert!(c.has_volatile_cache());
        assert_eq!(c.power_states.len(), 1);
        assert_eq!(c.power_states[0].max_power, 2500);
        // A short or empty buffer decodes to zeros, never panics.
        let z = IdController::parse(&b[..10]);
        assert_eq!((z.vid, z.model.as_str(), z.nn), (0x1b36, "", 0));
        assert_eq!(IdController::parse(&[]).serial, "");
    }

    #[test]
    fn namespace_formats_and_the_one_in_use() {
        let mut b = vec![0u8; IDENTIFY_LEN];
        put(&mut b, 0, &1000u64.to_le_bytes());
        put(&mut b, 8, &1000u64.to_le_bytes());
        b[25] = 1; // two formats
        b[26] = 1; // using format 1
        put(&mut b, 128, &(9u32 << 16).to_le_bytes());
        put(&mut b, 132, &(12u32 << 16 | 2 << 24).to_le_bytes());
        let n = IdNamespace::parse(&b);
        assert_eq!(n.formats.len(), 2);
        assert_eq!(n.format_index(), 1);
        assert_eq!(n.format().unwrap().data_size(), Some(4096));
        assert_eq!(n.format().unwrap().performance(), "good");
        assert_eq!(n.usable(), Ok(4096));
        b[26] = 5; // no such format
        assert_eq!(
            IdNamespace::parse(&b).usable(),
            Err("LBA format index out of range")
        );
        b[26] = 0x10; // format 0 with extended LBA but no metadata: usable
        assert_eq!(IdNamespace::parse(&b).usable(), Ok(512));
        put(&mut b, 128, &(9u32 << 16 | 8).to_le_bytes());
        assert!(IdNamespace::parse(&b).usable().is_err());
        b[26] = 0x60; // FLBAS high bits: format 48, beyond the two listed
        assert_eq!(IdNamespace::parse(&b).format_index(), 48);
    }

    #[test]
    fn namespace_list_is_cut_at_zero_and_disorder() {
        let mut b = vec![0u8; IDENTIFY_LEN];
        for (i, id) in [1u32, 3, 7].iter().enumerate() {
            put(&mut b, 4 * i, &id.to_le_bytes());
        }
        assert_eq!(parse_ns_list(&b), [1, 3, 7]);
        put(&mut b, 12, &2u32.to_le_bytes());
        assert_eq!(parse_ns_list(&b), [1, 3, 7]);
        assert!(parse_ns_list(&[0xff; 3]).is_empty());
    }

    /// What QEMU 10.0's emulated controller returned (captured with `nvme id 0 -x` and
    /// `nvme ns 0 N -x`; also the fuzz target's seeds).
    #[test]
    fn qemu_identify_data() {
        let c = IdController::parse(include_bytes!(
            "../../../fuzz/corpus/nvme_identify/qemu-identify-controller.bin"
        ));
        assert_eq!((c.vid, c.ssvid), (0x1b36, 0x1af4));
        assert_eq!(c.model, "QEMU NVMe Ctrl");
        assert_eq!(c.serial, "cap-a");
        assert_eq!(c.mdts, 0);
        assert_eq!(version_string(c.ver), "1.4.0");
        assert_eq!((c.sqes, c.cqes), (0x66, 0x44));
        assert!(c.nn >= 3);
        let n = IdNamespace::parse(include_bytes!(
            "../../../fuzz/corpus/nvme_identify/qemu-identify-ns-4096.bin"
        ));
        assert_eq!(n.nsze, 8192);
        assert_eq!(n.usable(), Ok(4096));
        assert_eq!(n.formats.len(), 8);
        let n = IdNamespace::parse(include_bytes!(
            "../../../fuzz/corpus/nvme_identify/qemu-identify-ns-512.bin"
        ));
        assert_eq!((n.nsze, n.usable()), (131072, Ok(512)));
    }

    #[test]
    fn smart_and_error_log() {
        let mut b = vec![0u8; SMART_LEN];
        b[0] = 0x09;
        put(&mut b, 1, &323u16.to_le_bytes());
        b[3] = 100;
        b[4] = 10;
        put(&mut b, 32, &12345u64.to_le_bytes());
        put(&mut b, 48 + 8, &1u64.to_le_bytes()); // high half of data units written
        let s = Smart::parse(&b);
        assert_eq!(s.temperature_k, 323);
        assert_eq!(s.data_units_read, 12345);
        assert_eq!(s.data_units_written, 1u128 << 64);
        assert_eq!(s.warnings(), ["spare below threshold", "read-only"]);

        let mut e = vec![0u8; 3 * ERROR_ENTRY_LEN];
        put(&mut e, 64, &5u64.to_le_bytes());
        put(&mut e, 72, &1u16.to_le_bytes());
        put(&mut e, 74, &9u16.to_le_bytes());
        put(&mut e, 76, &((0x80u16 | 1 << 14) << 1).to_le_bytes());
        put(&mut e, 80, &4242u64.to_le_bytes());
        put(&mut e, 88, &1u32.to_le_bytes());
        let l = parse_error_log(&e);
        assert_eq!(l.len(), 1);
        assert_eq!((l[0].count, l[0].sqid, l[0].cid, l[0].lba), (5, 1, 9, 4242));
        assert_eq!(l[0].status.name(), "LBA Out of Range");
        assert!(l[0].status.dnr);
    }
}
