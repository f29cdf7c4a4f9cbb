//! Soft-off (S5) through the PM1 control blocks and reset through the FADT reset register.
use crate::aml::{AcpiHw, Aml};
use crate::gas::{AddressSpace, Gas};
use crate::{Acpi, AcpiError};
use acpi::PciAddress;

/// PM1 control register fields (ACPI 6.5 §4.8.3.2.1, Table 4.13).
const SLP_TYP_SHIFT: u32 = 10;
const SLP_TYP_MASK: u64 = 0b111 << SLP_TYP_SHIFT;
const SLP_EN: u64 = 1 << 13;
/// How long to wait for the machine to go away before reporting that it did not.
const POWER_OFF_WAIT_NS: u64 = 1_000_000_000;
const RESET_WAIT_NS: u64 = 500_000_000;

/// Reads a register described by a generic address.
pub(crate) fn gas_read(hw: &AcpiHw<'_>, g: &Gas) -> Result<u64, AcpiError> {
    let bits = g
        .access_bits()
        .ok_or(AcpiError::BadGas("no usable access width"))?;
    let size = usize::from(bits / 8);
    match g.space {
        AddressSpace::SystemMemory => Ok(hw.mem_read(g.address, size)),
        AddressSpace::SystemIo => {
            let port = io_port(g)?;
            match bits {
                8 => Ok(hw.io.inb(port).into()),
                16 => Ok(hw.io.inw(port).into()),
                32 => Ok(hw.io.inl(port).into()),
                _ => Err(AcpiError::BadGas("64-bit I/O port access")),
            }
        }
        AddressSpace::PciConfig => {
            let (a, off) = pci_target(g)?;
            Ok(hw.pci_read(a, off, size).into())
        }
        AddressSpace::Other(_) => Err(AcpiError::BadGas("unsupported address space")),
    }
}

/// Writes a register described by a generic address.
pub(crate) fn gas_write(hw: &AcpiHw<'_>, g: &Gas, v: u64) -> Result<(), AcpiError> {
    let bits = g
        .access_bits()
        .ok_or(AcpiError::BadGas("no usable access width"))?;
    let size = usize::from(bits / 8);
    match g.space {
        AddressSpace::SystemMemory => hw.mem_write(g.address, size, v),
        AddressSpace::SystemIo => {
            let port = io_port(g)?;
            match bits {
                8 => hw.io.outb(port, v as u8),
                16 => hw.io.outw(port, v as u16),
                32 => hw.io.outl(port, v as u32),
                _ => return Err(AcpiError::BadGas("64-bit I/O port access")),
            }
        }
        AddressSpace::PciConfig => {
            let (a, off) = pci_target(g)?;
            hw.pci_write(a, off, size, v as u32);
        }
        AddressSpace::Other(_) => return Err(AcpiError::BadGas("unsupported address space")),
    }
    Ok(())
}

fn io_port(g: &Gas) -> Result<u16, AcpiError> {
    u16::try_from(g.address).map_err(|_| AcpiError::BadGas("I/O port above 0xffff"))
}

/// ACPI 6.5 Table 5.1: PCI config GAS = device << 32 | function << 16 | offset, segment 0 bus 0.
fn pci_target(g: &Gas) -> Result<(PciAddress, u16), AcpiError> {
    let dev = (g.address >> 32) & 0xffff;
    let func = (g.address >> 16) & 0xffff;
    if dev > 31 || func > 7 {
        return Err(AcpiError::BadGas("PCI device/function out of range"));
    }
    Ok((
        PciAddress::new(0, 0, dev as u8, func as u8),
        g.address as u16,
    ))
}

/// Sets SLP_TYP in a PM1 control register, then SLP_TYP|SLP_EN, preserving the other bits
/// (SCI_EN must stay as firmware left it).
fn write_sleep(hw: &AcpiHw<'_>, g: &Gas, typ: u8) -> Result<(), AcpiError> {
    let keep = gas_read(hw, g)? & !(SLP_TYP_MASK | SLP_EN);
    let v = keep | (u64::from(typ) << SLP_TYP_SHIFT);
    // ACPICA writes SLP_TYP first and SLP_EN in a second write; some chipsets need that.
    gas_write(hw, g, v)?;
    gas_write(hw, g, v | SLP_EN)
}

impl Acpi {
    /// Powers the machine off through ACPI S5: evaluates `\_S5` (and `\_PTS(5)`), then writes
    /// SLP_TYPa|SLP_EN to PM1a_CNT and SLP_TYPb|SLP_EN to PM1b_CNT if present. Returns only if
    /// that failed, with the reason (`StillRunning` if the writes had no effect within 1 s).
    pub fn enter_s5(&self, hw: &AcpiHw<'_>) -> AcpiError {
        match self.try_enter_s5(hw) {
            Ok(()) => AcpiError::StillRunning,
            Err(e) => e,
        }
    }

    fn try_enter_s5(&self, hw: &AcpiHw<'_>) -> Result<(), AcpiError> {
        let fadt = self.fadt()?;
        let pm1a = fadt.pm1a_control.ok_or(AcpiError::NoPm1aControl)?;
        let aml = Aml::load(self, *hw)?;
        let (typ_a, typ_b) = aml.s5()?;
        if let Err(e) = aml.prepare_to_sleep() {
            log::warn!("acpi: \\_PTS(5) failed, powering off anyway: {}", e);
        }
        log::info!("acpi: entering S5 (SLP_TYPa={} SLP_TYPb={})", typ_a, typ_b);
        write_sleep(hw, &pm1a, typ_a)?;
        if let Some(pm1b) = fadt.pm1b_control {
            write_sleep(hw, &pm1b, typ_b)?;
        }
        hw.wait_ns(POWER_OFF_WAIT_NS);
        Ok(())
    }

    /// Resets the machine through the FADT reset register (ACPI 6.5 §4.8.3.6), when the FADT
    /// flags say it is supported. Returns only on failure.
    pub fn reset(&self, hw: &AcpiHw<'_>) -> Result<(), AcpiError> {
        let fadt = self.fadt()?;
        let reg = match fadt.reset_reg {
            Some(r) if fadt.flags.reset_reg_supported() => r,
            _ => return Err(AcpiError::ResetNotSupported),
        };
        // The reset register is 8 bits wide at bit offset 0 (§4.8.3.6); force a byte access.
        let byte = Gas {
            bit_width: 8,
            bit_offset: 0,
            access_size: 1,
            ..reg
        };
        gas_write(hw, &byte, fadt.reset_value.into())?;
        hw.wait_ns(RESET_WAIT_NS);
        Err(AcpiError::StillRunning)
    }
}
