//! The Fixed ACPI Description Table (ACPI 6.5 §5.2.9, Table 5.9).
use crate::bytes::{u16_at, u32_at, u64_at, u8_at};
use crate::gas::{Gas, GAS_LEN};
use crate::{AcpiError, Signature};

/// ACPI 1.0's FADT ends after the Flags field; anything shorter is corrupt.
const MIN_LEN: usize = 116;

// Byte offsets of the fields we decode (ACPI 6.5 Table 5.9).
const FIRMWARE_CTRL: usize = 36;
const DSDT: usize = 40;
const PREFERRED_PM_PROFILE: usize = 45;
const SCI_INT: usize = 46;
const SMI_CMD: usize = 48;
const ACPI_ENABLE: usize = 52;
const ACPI_DISABLE: usize = 53;
const PM1A_EVT_BLK: usize = 56;
const PM1B_EVT_BLK: usize = 60;
const PM1A_CNT_BLK: usize = 64;
const PM1B_CNT_BLK: usize = 68;
const PM_TMR_BLK: usize = 76;
const GPE0_BLK: usize = 80;
const GPE1_BLK: usize = 84;
const PM1_EVT_LEN: usize = 88;
const PM1_CNT_LEN: usize = 89;
const PM_TMR_LEN: usize = 91;
const GPE0_BLK_LEN: usize = 92;
const GPE1_BLK_LEN: usize = 93;
const CENTURY: usize = 108;
const IAPC_BOOT_ARCH: usize = 109;
const FLAGS: usize = 112;
const RESET_REG: usize = 116;
const RESET_VALUE: usize = 128;
const MINOR_VERSION: usize = 131;
const X_FIRMWARE_CTRL: usize = 132;
const X_DSDT: usize = 140;
const X_PM1A_EVT_BLK: usize = 148;
const X_PM1B_EVT_BLK: usize = 160;
const X_PM1A_CNT_BLK: usize = 172;
const X_PM1B_CNT_BLK: usize = 184;
const X_PM_TMR_BLK: usize = 208;
const X_GPE0_BLK: usize = 220;
const X_GPE1_BLK: usize = 232;

/// Decoded FADT. Register blocks prefer the 64-bit `X_` generic address when the table has it
/// and it is non-zero (ACPI 6.5 §5.2.9), else the legacy I/O port with its length field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fadt {
    pub revision: u8,
    /// FADT minor version (offset 131), when the table is long enough.
    pub minor_version: Option<u8>,
    /// FACS address (X_FIRMWARE_CTRL, else FIRMWARE_CTRL); 0 when absent.
    pub firmware_ctrl: u64,
    /// DSDT address (X_DSDT, else DSDT).
    pub dsdt: u64,
    pub pm_profile: PmProfile,
    /// The SCI's 8259 vector / GSI.
    pub sci_int: u16,
    /// Port to write ACPI_ENABLE/ACPI_DISABLE to; 0 on hardware that is always in ACPI mode.
    pub smi_cmd: u32,
    pub acpi_enable: u8,
    pub acpi_disable: u8,
    pub pm1a_event: Option<Gas>,
    pub pm1b_event: Option<Gas>,
    pub pm1a_control: Option<Gas>,
    pub pm1b_control: Option<Gas>,
    pub pm_timer: Option<Gas>,
    pub gpe0: Option<Gas>,
    pub gpe1: Option<Gas>,
    /// RTC CMOS index of the century byte, 0 if none.
    pub century: u8,
    pub iapc_boot_arch: IapcBootArch,
    pub flags: FadtFlags,
    /// The reset register (ACPI 6.5 §4.8.3.6), present in FADT revision 2+.
    pub reset_reg: Option<Gas>,
    pub reset_value: u8,
}

pub(crate) fn parse(b: &[u8]) -> Result<Fadt, AcpiError> {
    let sig = Signature::FADT;
    if b.len() < MIN_LEN {
        return Err(AcpiError::TooShort {
            sig,
            len: b.len() as u64,
        });
    }
    let t = |offset| AcpiError::Truncated { sig, offset };
    let u8f = |off| u8_at(b, off).ok_or(t(off));
    let u32f = |off| u32_at(b, off).ok_or(t(off));
    // An X_ field counts only if the table reaches past it and it is non-zero.
    let x64 = |off: usize| u64_at(b, off).filter(|a| *a != 0);
    let xgas = |off: usize| {
        if off + GAS_LEN <= b.len() {
            Gas::parse(b, off)
        } else {
            None
        }
    };

    let block = |x_off, legacy_off, len_off| -> Result<Option<Gas>, AcpiError> {
        Ok(xgas(x_off).or(Gas::io(u32f(legacy_off)?, u8f(len_off)?)))
    };
    let pm1_evt_len = u8f(PM1_EVT_LEN)?;
    let pm1_cnt_len = u8f(PM1_CNT_LEN)?;
    let has_reset = b.len() > RESET_VALUE;
    Ok(Fadt {
        revision: u8f(8)?,
        minor_version: u8_at(b, MINOR_VERSION),
        firmware_ctrl: x64(X_FIRMWARE_CTRL).unwrap_or(u64::from(u32f(FIRMWARE_CTRL)?)),
        dsdt: x64(X_DSDT).unwrap_or(u64::from(u32f(DSDT)?)),
        pm_profile: PmProfile::from_id(u8f(PREFERRED_PM_PROFILE)?),
        sci_int: u16_at(b, SCI_INT).ok_or(t(SCI_INT))?,
        smi_cmd: u32f(SMI_CMD)?,
        acpi_enable: u8f(ACPI_ENABLE)?,
        acpi_disable: u8f(ACPI_DISABLE)?,
        pm1a_event: xgas(X_PM1A_EVT_BLK).or(Gas::io(u32f(PM1A_EVT_BLK)?, pm1_evt_len)),
        pm1b_event: xgas(X_PM1B_EVT_BLK).or(Gas::io(u32f(PM1B_EVT_BLK)?, pm1_evt_len)),
        pm1a_control: xgas(X_PM1A_CNT_BLK).or(Gas::io(u32f(PM1A_CNT_BLK)?, pm1_cnt_len)),
        pm1b_control: xgas(X_PM1B_CNT_BLK).or(Gas::io(u32f(PM1B_CNT_BLK)?, pm1_cnt_len)),
        pm_timer: block(X_PM_TMR_BLK, PM_TMR_BLK, PM_TMR_LEN)?,
        gpe0: block(X_GPE0_BLK, GPE0_BLK, GPE0_BLK_LEN)?,
        gpe1: block(X_GPE1_BLK, GPE1_BLK, GPE1_BLK_LEN)?,
        century: u8f(CENTURY)?,
        iapc_boot_arch: IapcBootArch(u16_at(b, IAPC_BOOT_ARCH).ok_or(t(IAPC_BOOT_ARCH))?),
        flags: FadtFlags(u32f(FLAGS)?),
        reset_reg: if has_reset {
            Gas::parse(b, RESET_REG)
        } else {
            None
        },
        reset_value: if has_reset { u8f(RESET_VALUE)? } else { 0 },
    })
}

/// Preferred power management profile (ACPI 6.5 Table 5.9, offset 45).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PmProfile {
    Unspecified,
    Desktop,
    Mobile,
    Workstation,
    EnterpriseServer,
    SohoServer,
    AppliancePc,
    PerformanceServer,
    Tablet,
    Unknown(u8),
}

impl PmProfile {
    fn from_id(id: u8) -> PmProfile {
        use PmProfile::*;
        match id {
            0 => Unspecified,
            1 => Desktop,
            2 => Mobile,
            3 => Workstation,
            4 => EnterpriseServer,
            5 => SohoServer,
            6 => AppliancePc,
            7 => PerformanceServer,
            8 => Tablet,
            other => Unknown(other),
        }
    }

    pub fn name(&self) -> &'static str {
        use PmProfile::*;
        match self {
            Unspecified => "unspecified",
            Desktop => "desktop",
            Mobile => "mobile",
            Workstation => "workstation",
            EnterpriseServer => "enterprise-server",
            SohoServer => "soho-server",
            AppliancePc => "appliance-pc",
            PerformanceServer => "performance-server",
            Tablet => "tablet",
            Unknown(_) => "unknown",
        }
    }
}

/// IA-PC boot architecture flags (ACPI 6.5 §5.2.9.3, Table 5.11).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IapcBootArch(pub u16);

impl IapcBootArch {
    pub const NAMES: [(u16, &'static str); 6] = [
        (1 << 0, "legacy-devices"),
        (1 << 1, "8042"),
        (1 << 2, "vga-not-present"),
        (1 << 3, "msi-not-supported"),
        (1 << 4, "pcie-aspm-controls"),
        (1 << 5, "cmos-rtc-not-present"),
    ];

    pub fn has_8042(&self) -> bool {
        self.0 & (1 << 1) != 0
    }

    /// Names of the bits that are set, in bit order.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        Self::NAMES
            .iter()
            .filter(|(bit, _)| self.0 & bit != 0)
            .map(|(_, n)| *n)
    }
}

/// Fixed feature flags (ACPI 6.5 §5.2.9, Table 5.10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FadtFlags(pub u32);

impl FadtFlags {
    pub const RESET_REG_SUP: u32 = 1 << 10;
    pub const HW_REDUCED_ACPI: u32 = 1 << 20;
    pub const NAMES: [(u32, &'static str); 22] = [
        (1 << 0, "wbinvd"),
        (1 << 1, "wbinvd-flush"),
        (1 << 2, "proc-c1"),
        (1 << 3, "p-lvl2-up"),
        (1 << 4, "pwr-button"),
        (1 << 5, "slp-button"),
        (1 << 6, "fix-rtc"),
        (1 << 7, "rtc-s4"),
        (1 << 8, "tmr-val-ext"),
        (1 << 9, "dck-cap"),
        (1 << 10, "reset-reg-sup"),
        (1 << 11, "sealed-case"),
        (1 << 12, "headless"),
        (1 << 13, "cpu-sw-slp"),
        (1 << 14, "pci-exp-wak"),
        (1 << 15, "use-platform-clock"),
        (1 << 16, "s4-rtc-sts-valid"),
        (1 << 17, "remote-power-on"),
        (1 << 18, "force-apic-cluster"),
        (1 << 19, "force-apic-physical"),
        (1 << 20, "hw-reduced-acpi"),
        (1 << 21, "low-power-s0-idle"),
    ];

    pub fn reset_reg_supported(&self) -> bool {
        self.0 & Self::RESET_REG_SUP != 0
    }

    pub fn hw_reduced(&self) -> bool {
        self.0 & Self::HW_REDUCED_ACPI != 0
    }

    /// Names of the bits that are set, in bit order.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        Self::NAMES
            .iter()
            .filter(|(bit, _)| self.0 & bit != 0)
            .map(|(_, n)| *n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gas::AddressSpace;
    use crate::testutil::{fadt_v1, fadt_v5};

    #[test]
    fn legacy_fadt_uses_io_ports() {
        let f = parse(&fadt_v1(0x3000, 0x4000)).unwrap();
        assert_eq!(
            (f.revision, f.dsdt, f.firmware_ctrl, f.sci_int),
            (1, 0x3000, 0x4000, 9)
        );
        let cnt = f.pm1a_control.unwrap();
        assert_eq!(
            (cnt.space, cnt.address, cnt.bit_width),
            (AddressSpace::SystemIo, 0x604, 16)
        );
        assert_eq!(f.pm1a_event.unwrap().bit_width, 32);
        assert_eq!(f.pm1b_control, None);
        assert_eq!(f.reset_reg, None, "revision 1 has no reset register");
        assert_eq!(f.pm_profile, PmProfile::Desktop);
        assert!(f.iapc_boot_arch.has_8042());
    }

    #[test]
    fn x_fields_win_when_present() {
        let f = parse(&fadt_v5(0x3000, 0x1_0000_3000)).unwrap();
        assert_eq!(f.dsdt, 0x1_0000_3000);
        let cnt = f.pm1a_control.unwrap();
        assert_eq!((cnt.space, cnt.address), (AddressSpace::SystemIo, 0x1604));
        let r = f.reset_reg.unwrap();
        assert_eq!(
            (r.space, r.address, f.reset_value),
            (AddressSpace::SystemIo, 0xcf9, 6)
        );
        assert!(f.flags.reset_reg_supported());
        assert_eq!(f.minor_version, Some(1));
    }

    #[test]
    fn short_fadt_is_rejected() {
        let b = fadt_v1(0x3000, 0);
        assert_eq!(
            parse(&b[..100]).unwrap_err(),
            AcpiError::TooShort {
                sig: Signature::FADT,
                len: 100
            }
        );
    }
}
