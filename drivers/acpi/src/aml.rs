//! The hardware the AML interpreter may touch, and the `acpi` crate's interpreter loaded with
//! our tables: evaluation by path, the namespace's devices, `\_S5` / `\_PTS`.
use crate::eval::{AmlPath, NameSegBytes};
use crate::tables::HEADER_LEN;
use crate::{Acpi, AcpiError, Fadt, Table};
use acpi::aml::namespace::{AmlName, NamespaceLevel, NamespaceLevelKind};
use acpi::aml::object::{Object, WrappedObject};
use acpi::aml::{AmlError, Interpreter};
use acpi::registers::{FixedRegisters, Pm1ControlRegisterBlock, Pm1EventRegisterBlock};
use acpi::{Handle, Handler, PciAddress, PhysicalMapping};
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use capmon_hal::{Clock, PhysMap, PortIo};
use core::ptr::NonNull;
use core::str::FromStr;
use core::sync::atomic::{AtomicU32, Ordering};

/// The machine as ACPI code sees it: physical memory, I/O ports and a clock. PCI configuration
/// space is reached through the legacy 0xCF8/0xCFC ports (segment 0, first 256 bytes).
#[derive(Clone, Copy)]
pub struct AcpiHw<'a> {
    pub mem: &'a dyn PhysMap,
    pub io: &'a dyn PortIo,
    pub clock: &'a dyn Clock,
}

/// PCI Local Bus 3.0 §3.2.2.3.2: configuration mechanism #1.
const PCI_CONFIG_ADDRESS: u16 = 0xcf8;
const PCI_CONFIG_DATA: u16 = 0xcfc;
/// No busy wait may last longer than this, whatever AML asks for (AML sleeps are short;
/// a longer one is a firmware bug we do not want to hang the monitor on).
const MAX_WAIT_NS: u64 = 2_000_000_000;
/// Bound on clock polls in one wait, in case the clock does not advance.
const MAX_WAIT_POLLS: u64 = 100_000_000;

impl AcpiHw<'_> {
    /// Reads `size` (1, 2, 4, 8) bytes of physical memory; all-ones if it cannot be mapped.
    pub(crate) fn mem_read(&self, phys: u64, size: usize) -> u64 {
        let Some(p) = self.mem.map(phys, size, true) else {
            log::warn!("acpi: cannot map {:#x} for a {}-byte read", phys, size);
            return u64::MAX;
        };
        // SAFETY: PhysMap mapped `size` bytes at `p`; the access width matches the register.
        unsafe {
            match size {
                1 => u64::from(core::ptr::read_volatile(p)),
                2 => u64::from(core::ptr::read_volatile(p as *const u16)),
                4 => u64::from(core::ptr::read_volatile(p as *const u32)),
                _ => core::ptr::read_volatile(p as *const u64),
            }
        }
    }

    /// Writes `size` (1, 2, 4, 8) bytes of physical memory; dropped if it cannot be mapped.
    pub(crate) fn mem_write(&self, phys: u64, size: usize, v: u64) {
        let Some(p) = self.mem.map(phys, size, true) else {
            log::warn!("acpi: cannot map {:#x} for a {}-byte write", phys, size);
            return;
        };
        // SAFETY: PhysMap mapped `size` bytes at `p`; the access width matches the register.
        unsafe {
            match size {
                1 => core::ptr::write_volatile(p, v as u8),
                2 => core::ptr::write_volatile(p as *mut u16, v as u16),
                4 => core::ptr::write_volatile(p as *mut u32, v as u32),
                _ => core::ptr::write_volatile(p as *mut u64, v),
            }
        }
    }

    fn pci_select(&self, a: PciAddress, off: u16) -> Option<u16> {
        if a.segment() != 0 || off > 0xff || a.device() > 31 || a.function() > 7 {
            log::warn!(
                "acpi: PCI config {:?}+{:#x} unreachable through 0xCF8",
                a,
                off
            );
            return None;
        }
        let addr = 0x8000_0000
            | u32::from(a.bus()) << 16
            | u32::from(a.device()) << 11
            | u32::from(a.function()) << 8
            | u32::from(off & 0xfc);
        self.io.outl(PCI_CONFIG_ADDRESS, addr);
        Some(PCI_CONFIG_DATA + (off & 3))
    }

    pub(crate) fn pci_read(&self, a: PciAddress, off: u16, size: usize) -> u32 {
        let Some(port) = self.pci_select(a, off) else {
            return u32::MAX;
        };
        match size {
            1 => u32::from(self.io.inb(port)),
            2 => u32::from(self.io.inw(port)),
            _ => self.io.inl(port),
        }
    }

    pub(crate) fn pci_write(&self, a: PciAddress, off: u16, size: usize, v: u32) {
        let Some(port) = self.pci_select(a, off) else {
            return;
        };
        match size {
            1 => self.io.outb(port, v as u8),
            2 => self.io.outw(port, v as u16),
            _ => self.io.outl(port, v),
        }
    }

    /// Busy-waits at least `ns` nanoseconds (capped at MAX_WAIT_NS).
    pub(crate) fn wait_ns(&self, ns: u64) {
        let start = self.clock.now_ns();
        let ns = ns.min(MAX_WAIT_NS);
        for _ in 0..MAX_WAIT_POLLS {
            if self.clock.now_ns().wrapping_sub(start) >= ns {
                return;
            }
            core::hint::spin_loop();
        }
    }
}

/// `acpi::Handler` over capmon's hal traits, counting the PCI configuration accesses AML makes
/// (see `Aml::pci_config_accesses`).
#[derive(Clone)]
struct AmlHandler<'a>(AcpiHw<'a>, Arc<AtomicU32>);

impl AmlHandler<'_> {
    fn count_pci_access(&self) {
        self.1.fetch_add(1, Ordering::Relaxed);
    }
}

impl Handler for AmlHandler<'_> {
    /// Only reached through `acpi` APIs that map memory themselves (AcpiTables, FACS, memory
    /// GAS registers), which capmon does not call: it copies tables itself and gives the
    /// interpreter I/O-space placeholders and no FACS. Should it happen anyway on an unmappable
    /// address, the crate gets a zeroed, leaked buffer rather than a panic.
    unsafe fn map_physical_region<T>(&self, phys: usize, size: usize) -> PhysicalMapping<Self, T> {
        let ptr = self
            .0
            .mem
            .map(phys as u64, size, true)
            .and_then(|p| NonNull::new(p as *mut T));
        let ptr = ptr.unwrap_or_else(|| {
            log::error!(
                "acpi: AML mapping of {} bytes at {:#x} failed; using zeroes",
                size,
                phys
            );
            let words = vec![0u64; size.div_ceil(8).max(1)].leak();
            NonNull::from(words).cast::<T>()
        });
        PhysicalMapping {
            physical_start: phys,
            virtual_start: ptr,
            region_length: size,
            mapped_length: size,
            handler: self.clone(),
        }
    }

    /// PhysMap has no unmap: mappings are permanent.
    fn unmap_physical_region<T>(_region: &PhysicalMapping<Self, T>) {}

    fn read_u8(&self, a: usize) -> u8 {
        self.0.mem_read(a as u64, 1) as u8
    }
    fn read_u16(&self, a: usize) -> u16 {
        self.0.mem_read(a as u64, 2) as u16
    }
    fn read_u32(&self, a: usize) -> u32 {
        self.0.mem_read(a as u64, 4) as u32
    }
    fn read_u64(&self, a: usize) -> u64 {
        self.0.mem_read(a as u64, 8)
    }
    fn write_u8(&self, a: usize, v: u8) {
        self.0.mem_write(a as u64, 1, v.into())
    }
    fn write_u16(&self, a: usize, v: u16) {
        self.0.mem_write(a as u64, 2, v.into())
    }
    fn write_u32(&self, a: usize, v: u32) {
        self.0.mem_write(a as u64, 4, v.into())
    }
    fn write_u64(&self, a: usize, v: u64) {
        self.0.mem_write(a as u64, 8, v)
    }

    fn read_io_u8(&self, port: u16) -> u8 {
        self.0.io.inb(port)
    }
    fn read_io_u16(&self, port: u16) -> u16 {
        self.0.io.inw(port)
    }
    fn read_io_u32(&self, port: u16) -> u32 {
        self.0.io.inl(port)
    }
    fn write_io_u8(&self, port: u16, v: u8) {
        self.0.io.outb(port, v)
    }
    fn write_io_u16(&self, port: u16, v: u16) {
        self.0.io.outw(port, v)
    }
    fn write_io_u32(&self, port: u16, v: u32) {
        self.0.io.outl(port, v)
    }

    fn read_pci_u8(&self, a: PciAddress, off: u16) -> u8 {
        self.count_pci_access();
        self.0.pci_read(a, off, 1) as u8
    }
    fn read_pci_u16(&self, a: PciAddress, off: u16) -> u16 {
        self.count_pci_access();
        self.0.pci_read(a, off, 2) as u16
    }
    fn read_pci_u32(&self, a: PciAddress, off: u16) -> u32 {
        self.count_pci_access();
        self.0.pci_read(a, off, 4)
    }
    fn write_pci_u8(&self, a: PciAddress, off: u16, v: u8) {
        self.count_pci_access();
        self.0.pci_write(a, off, 1, v.into())
    }
    fn write_pci_u16(&self, a: PciAddress, off: u16, v: u16) {
        self.count_pci_access();
        self.0.pci_write(a, off, 2, v.into())
    }
    fn write_pci_u32(&self, a: PciAddress, off: u16, v: u32) {
        self.count_pci_access();
        self.0.pci_write(a, off, 4, v)
    }

    fn nanos_since_boot(&self) -> u64 {
        self.0.clock.now_ns()
    }
    fn stall(&self, us: u64) {
        self.0.wait_ns(us.saturating_mul(1_000))
    }
    fn sleep(&self, ms: u64) {
        self.0.wait_ns(ms.saturating_mul(1_000_000))
    }

    /// AML runs on one CPU, from the monitor, never concurrently: every mutex is free when
    /// acquired, so one handle and no bookkeeping suffice.
    fn create_mutex(&self) -> Handle {
        Handle(0)
    }
    fn acquire(&self, _mutex: Handle, _timeout: u16) -> Result<(), AmlError> {
        Ok(())
    }
    fn release(&self, _mutex: Handle) {}

    /// The default panics; a firmware's Fatal opcode must not take the monitor down.
    fn handle_fatal_error(&self, fatal_type: u8, fatal_code: u32, fatal_arg: u64) {
        log::error!(
            "acpi: AML Fatal type={} code={:#x} arg={:#x}",
            fatal_type,
            fatal_code,
            fatal_arg
        );
    }
}

fn aml_err(e: AmlError) -> AcpiError {
    AcpiError::Aml(alloc::format!("{:?}", e))
}

fn name(path: &str) -> Result<AmlName, AcpiError> {
    AmlName::from_str(path).map_err(aml_err)
}

/// An interpreter with the DSDT and SSDTs loaded.
pub(crate) struct Aml<'a> {
    interp: Interpreter<AmlHandler<'a>>,
    pci_config_accesses: Arc<AtomicU32>,
    /// The first table load error, reported if a later lookup fails.
    pub(crate) load_error: Option<AcpiError>,
}

impl<'a> Aml<'a> {
    pub(crate) fn load(acpi: &Acpi, hw: AcpiHw<'a>) -> Result<Aml<'a>, AcpiError> {
        let pci_config_accesses = Arc::new(AtomicU32::new(0));
        let handler = AmlHandler(hw, pci_config_accesses.clone());
        let tables = acpi.aml_tables()?;
        let dsdt_revision = tables.first().map_or(2, |t| t.revision());
        let registers = placeholder_registers(&acpi.fadt().ok(), handler.clone())?;
        // No FACS: the interpreter then never touches the firmware global lock nor, through it,
        // the PM1 registers above.
        // The interpreter's API takes an Arc; it never leaves this thread.
        #[allow(clippy::arc_with_non_send_sync)]
        let interp = Interpreter::new(handler, dsdt_revision, Arc::new(registers), None);
        let mut load_error = None;
        for t in tables {
            if let Err(e) = load_table(&interp, t) {
                log::warn!("acpi: loading {} at {:#x}: {}", t.signature, t.phys, e);
                load_error.get_or_insert(e);
            }
        }
        Ok(Aml {
            interp,
            pci_config_accesses,
            load_error,
        })
    }

    /// How many PCI configuration space accesses AML has made so far. The acpi 6.1 interpreter
    /// addresses a `PCI_Config` OperationRegion wrongly: it drops the region's base offset and
    /// takes the bus from the device's own `_BBR` instead of its root's `_BBN` (fixed in acpi
    /// 7), so any value computed from such an access is suspect.
    pub(crate) fn pci_config_accesses(&self) -> u32 {
        self.pci_config_accesses.load(Ordering::Relaxed)
    }

    /// Evaluates `path`; `None` if it does not exist.
    pub(crate) fn evaluate(
        &self,
        path: &str,
        args: Vec<WrappedObject>,
    ) -> Result<Option<WrappedObject>, AcpiError> {
        self.interp
            .evaluate_if_present(name(path)?, args)
            .map_err(aml_err)
    }

    /// Evaluates the object at `path`; `None` if it (or a scope on the way) does not exist.
    pub(crate) fn evaluate_path(
        &self,
        path: &AmlPath,
        args: Vec<WrappedObject>,
    ) -> Result<Option<WrappedObject>, AcpiError> {
        let name = path.to_aml_name()?;
        // `Namespace::get` fails only when the object or a level on its way is missing; asking
        // first tells "absent" apart from an error inside a method that names something absent.
        if self.interp.namespace.lock().get(name.clone()).is_err() {
            return Ok(None);
        }
        self.interp.evaluate(name, args).map(Some).map_err(aml_err)
    }

    /// The integer value of `path`, `None` if it does not exist.
    pub(crate) fn integer(&self, path: &AmlPath) -> Result<Option<u64>, AcpiError> {
        let Some(v) = self.evaluate_path(path, Vec::new())? else {
            return Ok(None);
        };
        match *v {
            Object::Integer(i) => Ok(Some(i)),
            _ => Err(AcpiError::BadObject {
                path: alloc::format!("{}", path),
                what: "not an integer",
            }),
        }
    }

    /// Every `Device` in the namespace, parents before children, with the names it holds.
    pub(crate) fn devices(&self) -> Vec<NsDevice> {
        let mut out = Vec::new();
        // `traverse` hands over the root level first; `walk` covers the rest, so stop it there.
        let _ = self.interp.namespace.lock().traverse(|_, root| {
            walk(root, &[], &mut out);
            Ok(false)
        });
        out
    }

    /// Tells the firmware that interrupts go through I/O APICs: `\_PIC(1)` if it exists
    /// (ACPI 6.5 §5.8.1). Some `_PRT`s depend on it (QEMU q35 returns its 8259 links before).
    pub(crate) fn announce_apic_mode(&self) -> Result<(), AcpiError> {
        const APIC_MODE: u64 = 1;
        let pic = AmlPath::from_segments(vec![*b"_PIC"]);
        self.evaluate_path(&pic, vec![Object::Integer(APIC_MODE).wrap()])
            .map(|_| ())
    }

    /// SLP_TYPa and SLP_TYPb for S5 (ACPI 6.5 §7.4.2: `\_S5` is a package whose first two
    /// elements are the PM1a and PM1b SLP_TYP values).
    pub(crate) fn s5(&self) -> Result<(u8, u8), AcpiError> {
        let Some(obj) = self.evaluate("\\_S5", Vec::new())? else {
            return Err(self
                .load_error
                .clone()
                .unwrap_or(AcpiError::BadS5("not defined")));
        };
        let Object::Package(ref elems) = *obj else {
            return Err(AcpiError::BadS5("not a package"));
        };
        let int = |i: usize| match elems.get(i).map(|e| &**e) {
            Some(Object::Integer(v)) => Ok(Some(*v)),
            Some(_) => Err(AcpiError::BadS5("element is not an integer")),
            None => Ok(None),
        };
        let (a, b) = match (int(0)?, int(1)?) {
            (Some(a), Some(b)) => (a, b),
            // Like ACPICA: a lone element carries SLP_TYPa in bits 0-7 and SLP_TYPb in 8-15.
            (Some(both), None) => (both & 0xff, (both >> 8) & 0xff),
            _ => return Err(AcpiError::BadS5("empty package")),
        };
        // SLP_TYPx is a 3-bit field of PM1x_CNT (ACPI 6.5 Table 4.13).
        if a > 7 || b > 7 {
            return Err(AcpiError::BadS5("SLP_TYP value above 7"));
        }
        Ok((a as u8, b as u8))
    }

    /// Runs `\_PTS(5)` if the firmware has it (ACPI 6.5 §7.4.1: tell the platform we are about
    /// to enter S5).
    pub(crate) fn prepare_to_sleep(&self) -> Result<(), AcpiError> {
        self.evaluate("\\_PTS", vec![Object::Integer(5).wrap()])
            .map(|_| ())
    }
}

/// A device in the namespace, as `Aml::devices` lists it.
pub(crate) struct NsDevice {
    pub(crate) path: AmlPath,
    /// The objects directly inside it (`_HID`, `_ADR`, `_PRT`, ...).
    pub(crate) names: Vec<NameSegBytes>,
}

impl NsDevice {
    pub(crate) fn has(&self, name: &NameSegBytes) -> bool {
        self.names.contains(name)
    }
}

/// How deep `walk` follows the namespace (real firmware nests a handful of levels).
const MAX_NAMESPACE_DEPTH: usize = 64;

fn seg_bytes(s: &acpi::aml::namespace::NameSeg) -> Option<NameSegBytes> {
    s.as_str().as_bytes().try_into().ok()
}

fn walk(level: &NamespaceLevel, path: &[NameSegBytes], out: &mut Vec<NsDevice>) {
    if path.len() >= MAX_NAMESPACE_DEPTH {
        log::warn!("acpi: namespace deeper than {} levels", MAX_NAMESPACE_DEPTH);
        return;
    }
    for (seg, child) in &level.children {
        // A method's locals are not part of the device tree.
        if child.kind == NamespaceLevelKind::MethodLocals {
            continue;
        }
        let Some(b) = seg_bytes(seg) else {
            continue;
        };
        let mut p = path.to_vec();
        p.push(b);
        if child.kind == NamespaceLevelKind::Device {
            out.push(NsDevice {
                path: AmlPath::from_segments(p.clone()),
                names: child.values.keys().filter_map(seg_bytes).collect(),
            });
        }
        walk(child, &p, out);
    }
}

/// Hands the checksummed table body (after the header) to the interpreter.
fn load_table(interp: &Interpreter<AmlHandler<'_>>, t: &Table) -> Result<(), AcpiError> {
    let body = t.bytes.get(HEADER_LEN..).unwrap_or(&[]);
    interp
        .load_table(body)
        .map_err(|e| AcpiError::Aml(alloc::format!("{} load: {:?}", t.signature, e)))
}

/// The interpreter wants the PM1 blocks only to release the firmware global lock, which needs
/// a FACS we do not give it; I/O-space addresses keep its mapping code out of the picture.
fn placeholder_registers<'a>(
    fadt: &Option<Fadt>,
    h: AmlHandler<'a>,
) -> Result<FixedRegisters<AmlHandler<'a>>, AcpiError> {
    use acpi::address::{AddressSpace, GenericAddress, MappedGas};
    let port = |g: Option<crate::Gas>| match g {
        Some(g) if g.space == crate::AddressSpace::SystemIo => g.address,
        _ => 0,
    };
    let io = |address, bit_width| GenericAddress {
        address_space: AddressSpace::SystemIo,
        bit_width,
        bit_offset: 0,
        access_size: 0,
        address,
    };
    let f = fadt.as_ref();
    // SAFETY: system I/O generic addresses create no mapping; nothing is dereferenced.
    let map = |g| {
        unsafe { MappedGas::map_gas(g, &h) }.map_err(|e| AcpiError::Aml(alloc::format!("{:?}", e)))
    };
    Ok(FixedRegisters {
        pm1_event_registers: Pm1EventRegisterBlock {
            pm1_event_length: f
                .and_then(|f| f.pm1a_event)
                .map_or(4, |g| usize::from(g.bit_width / 8)),
            pm1a: map(io(port(f.and_then(|f| f.pm1a_event)), 32))?,
            pm1b: None,
        },
        pm1_control_registers: Pm1ControlRegisterBlock {
            pm1a: map(io(port(f.and_then(|f| f.pm1a_control)), 16))?,
            pm1b: None,
        },
    })
}

impl Acpi {
    /// The S5 (soft-off) SLP_TYPa/SLP_TYPb values from `\_S5` in the DSDT/SSDTs.
    pub fn s5_sleep_types(&self, hw: &AcpiHw<'_>) -> Result<(u8, u8), AcpiError> {
        Aml::load(self, *hw)?.s5()
    }
}
