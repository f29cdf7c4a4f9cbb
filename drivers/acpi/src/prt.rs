//! PCI INTx routing from `_PRT` (ACPI 6.5 §6.2.13): which interrupt each PCI device's INTA-INTD
//! pin raises, through a hard-wired GSI or an interrupt link device's current resources.
//!
//! Runs the AML interpreter, so like `\_S5` it is only evaluated on demand, inside the
//! monitor's fault guard.
use crate::aml::{AcpiHw, Aml, NsDevice};
use crate::eval::{AmlPath, NameSegBytes};
use crate::resource::{decode_resources, Resource};
use crate::{Acpi, AcpiError, Polarity, Trigger};
use acpi::aml::object::Object;
use acpi::PciAddress;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

const PRT: NameSegBytes = *b"_PRT";
const HID: NameSegBytes = *b"_HID";
const CID: NameSegBytes = *b"_CID";
const ADR: NameSegBytes = *b"_ADR";
const SEG: NameSegBytes = *b"_SEG";
const BBN: NameSegBytes = *b"_BBN";
const STA: NameSegBytes = *b"_STA";
const CRS: NameSegBytes = *b"_CRS";

/// PCI and PCI Express root bridges (PCI Firmware 3.2 §4.1.2 and ACPI 6.5 §6.1.5).
const ROOT_BRIDGE_IDS: [&str; 2] = ["PNP0A03", "PNP0A08"];

/// `_STA` bits (ACPI 6.5 §6.3.7).
const STA_PRESENT: u64 = 1 << 0;
const STA_ENABLED: u64 = 1 << 1;

/// PCI 3.0 §6.1 configuration header: vendor ID, header type, and the type 1 (bridge)
/// header's secondary bus number.
const CFG_VENDOR: u16 = 0x00;
const CFG_HEADER_TYPE: u16 = 0x0e;
const CFG_SECONDARY_BUS: u16 = 0x19;
const HEADER_TYPE_MASK: u32 = 0x7f;
const HEADER_TYPE_BRIDGE: u32 = 0x01;
const NO_DEVICE: u32 = 0xffff;

/// A PCI interrupt pin. `_PRT` numbers them 0-3; the Interrupt Pin configuration register
/// (offset 0x3D) 1-4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Pin {
    IntA,
    IntB,
    IntC,
    IntD,
}

impl Pin {
    /// From a `_PRT` entry's Pin field (0 = INTA).
    pub fn from_prt(v: u64) -> Option<Pin> {
        match v {
            0 => Some(Pin::IntA),
            1 => Some(Pin::IntB),
            2 => Some(Pin::IntC),
            3 => Some(Pin::IntD),
            _ => None,
        }
    }

    /// From the Interrupt Pin configuration register (1 = INTA, 0 = no pin).
    pub fn from_config(v: u8) -> Option<Pin> {
        v.checked_sub(1).and_then(|p| Pin::from_prt(p.into()))
    }

    pub fn name(self) -> &'static str {
        match self {
            Pin::IntA => "INTA",
            Pin::IntB => "INTB",
            Pin::IntC => "INTC",
            Pin::IntD => "INTD",
        }
    }
}

/// Where one device's pin goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PciRoute {
    pub segment: u16,
    pub bus: u8,
    pub device: u8,
    pub pin: Pin,
    pub gsi: u32,
    pub trigger: Trigger,
    pub polarity: Polarity,
    pub shared: bool,
    /// The interrupt link device, or `None` for a hard-wired GSI (which §6.2.13 makes
    /// level-triggered, active-low and shared).
    pub source: Option<AmlPath>,
}

/// A `_PRT` entry whose interrupt could not be determined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unrouted {
    pub segment: u16,
    pub bus: u8,
    pub device: u8,
    pub pin: Pin,
    /// The link device named by the entry, when it could be found.
    pub source: Option<AmlPath>,
    pub reason: AcpiError,
}

/// Every `_PRT` entry of every PCI root bridge and of the bridges below them, sorted by
/// segment, bus, device and pin.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PciRouting {
    pub routes: Vec<PciRoute>,
    pub unrouted: Vec<Unrouted>,
}

impl PciRouting {
    /// The route of one device's pin, if a `_PRT` gives one.
    pub fn find(&self, segment: u16, bus: u8, device: u8, pin: Pin) -> Option<&PciRoute> {
        self.routes
            .iter()
            .find(|r| (r.segment, r.bus, r.device, r.pin) == (segment, bus, device, pin))
    }
}

/// A compressed EISA ID (`EisaId("PNP0A03")` = 0x030AD041) as its 7 characters: three letters
/// of 5 bits each and four hex digits, stored big-endian in the low 32 bits.
pub fn eisa_id(v: u64) -> Option<String> {
    let v = u32::try_from(v).ok()?.swap_bytes();
    if v & 0x8000_0000 != 0 {
        return None;
    }
    let letter = |shift: u32| char::from(b'@' + ((v >> shift) & 0x1f) as u8);
    Some(format!(
        "{}{}{}{:04X}",
        letter(26),
        letter(21),
        letter(16),
        v & 0xffff
    ))
}

fn bad(path: &AmlPath, what: &'static str) -> AcpiError {
    AcpiError::BadObject {
        path: format!("{}", path),
        what,
    }
}

/// One `_PRT` entry: device and pin, and either a GSI or a link name with its Source Index.
struct PrtEntry {
    device: u8,
    pin: Pin,
    source: PrtSource,
}

enum PrtSource {
    Gsi(u32),
    Link { name: String, index: u32 },
}

/// §6.2.13: a package of packages `{Address, Pin, Source, Source Index}`; Address is
/// `_ADR`-style with function 0xFFFF (any function).
fn parse_prt(prt: &AmlPath, obj: &Object) -> Result<Vec<PrtEntry>, AcpiError> {
    let Object::Package(entries) = obj else {
        return Err(bad(prt, "not a package"));
    };
    let mut out = Vec::with_capacity(entries.len());
    for (i, e) in entries.iter().enumerate() {
        let at_entry = |what| AcpiError::BadObject {
            path: format!("{}[{}]", prt, i),
            what,
        };
        let Object::Package(f) = &**e else {
            return Err(at_entry("entry is not a package"));
        };
        let int = |k: usize| match f.get(k).map(|o| &**o) {
            Some(Object::Integer(v)) => Some(*v),
            _ => None,
        };
        if f.len() < 4 {
            return Err(at_entry("entry has fewer than 4 fields"));
        }
        let address = int(0).ok_or_else(|| at_entry("address is not an integer"))?;
        let device = u8::try_from(address >> 16)
            .ok()
            .filter(|d| *d < 32)
            .ok_or_else(|| at_entry("device number above 31"))?;
        let pin = int(1)
            .and_then(Pin::from_prt)
            .ok_or_else(|| at_entry("pin is not 0-3"))?;
        let index = int(3)
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| at_entry("source index is not a 32-bit integer"))?;
        let source = match f.get(2).map(|o| &**o) {
            Some(Object::Integer(0)) => PrtSource::Gsi(index),
            Some(Object::String(name)) => PrtSource::Link {
                name: name.clone(),
                index,
            },
            _ => return Err(at_entry("source is neither 0 nor a name")),
        };
        out.push(PrtEntry {
            device,
            pin,
            source,
        });
    }
    Ok(out)
}

/// The interrupt a link device currently delivers.
#[derive(Clone)]
struct LinkIrq {
    gsi: u32,
    trigger: Trigger,
    polarity: Polarity,
    shared: bool,
}

/// The state one `pci_routes` call works on.
struct Router<'a, 'h> {
    aml: &'a Aml<'h>,
    hw: &'a AcpiHw<'h>,
    devices: BTreeMap<AmlPath, &'a NsDevice>,
    is_root: BTreeMap<AmlPath, bool>,
    links: BTreeMap<(AmlPath, u32), Result<LinkIrq, AcpiError>>,
}

impl Router<'_, '_> {
    /// True if `_HID` or one of the `_CID`s names a PCI root bridge.
    fn is_root_bridge(&mut self, path: &AmlPath) -> bool {
        if let Some(known) = self.is_root.get(path) {
            return *known;
        }
        let ids = [HID, CID]
            .iter()
            .flat_map(|n| match self.ids(&path.child(*n)) {
                Ok(ids) => ids,
                Err(e) => {
                    log::warn!("acpi: {}: {}", path, e);
                    Vec::new()
                }
            })
            .collect::<Vec<_>>();
        let root = ids.iter().any(|id| ROOT_BRIDGE_IDS.contains(&id.as_str()));
        self.is_root.insert(path.clone(), root);
        root
    }

    /// The IDs of a `_HID` or `_CID`: EISA ID integers, strings, or (`_CID`) a package of them.
    fn ids(&self, path: &AmlPath) -> Result<Vec<String>, AcpiError> {
        let Some(v) = self.aml.evaluate_path(path, Vec::new())? else {
            return Ok(Vec::new());
        };
        let one = |o: &Object| match o {
            Object::Integer(i) => eisa_id(*i),
            Object::String(s) => Some(s.clone()),
            _ => None,
        };
        Ok(match &*v {
            Object::Package(p) => p.iter().filter_map(|o| one(o)).collect(),
            o => one(o).into_iter().collect(),
        })
    }

    /// The innermost PCI root bridge that is `path` or encloses it.
    fn root_of(&mut self, path: &AmlPath) -> Option<AmlPath> {
        (1..=path.segments().len())
            .rev()
            .filter_map(|n| path.prefix(n))
            .find(|p| self.devices.contains_key(p) && self.is_root_bridge(p))
    }

    /// `_STA` says present (or there is no `_STA`).
    fn present(&self, dev: &AmlPath) -> Result<bool, AcpiError> {
        Ok(self
            .aml
            .integer(&dev.child(STA))?
            .is_none_or(|s| s & STA_PRESENT != 0))
    }

    /// A root bridge's segment (`_SEG`, default 0) and bus (`_BBN`, default 0).
    fn root_location(&self, root: &AmlPath) -> Result<(u16, u8), AcpiError> {
        let seg = self.aml.integer(&root.child(SEG))?.unwrap_or(0);
        let bus = self.aml.integer(&root.child(BBN))?.unwrap_or(0);
        // PCI Firmware 3.2 §4.1.4: _SEG's low 16 bits are the segment.
        let seg = (seg & 0xffff) as u16;
        let bus = u8::try_from(bus).map_err(|_| bad(&root.child(BBN), "bus above 255"))?;
        Ok((seg, bus))
    }

    /// The secondary bus of the PCI-to-PCI bridge at `dev`, found by walking from `root` (at
    /// `segment`:`bus`) down the `_ADR`s of the devices in between and reading each bridge's
    /// secondary bus number from configuration space.
    fn bridge_bus(
        &self,
        segment: u16,
        root_bus: u8,
        root: &AmlPath,
        dev: &AmlPath,
    ) -> Result<u8, AcpiError> {
        if segment != 0 {
            return Err(bad(
                dev,
                "bridge outside segment 0 (configuration space is reached through 0xCF8)",
            ));
        }
        let mut bus = root_bus;
        for n in root.segments().len() + 1..=dev.segments().len() {
            let Some(bridge) = dev.prefix(n) else {
                break;
            };
            let adr = self
                .aml
                .integer(&bridge.child(ADR))?
                .ok_or_else(|| bad(&bridge, "bridge has no _ADR"))?;
            // ACPI 6.5 §6.1.1: PCI _ADR is device << 16 | function.
            let (d, f) = (adr >> 16, adr & 0xffff);
            if d > 31 || f > 7 {
                return Err(bad(&bridge.child(ADR), "not a PCI device/function"));
            }
            let a = PciAddress::new(0, bus, d as u8, f as u8);
            if self.hw.pci_read(a, CFG_VENDOR, 2) == NO_DEVICE {
                return Err(bad(&bridge, "bridge is not present in configuration space"));
            }
            if self.hw.pci_read(a, CFG_HEADER_TYPE, 1) & HEADER_TYPE_MASK != HEADER_TYPE_BRIDGE {
                return Err(bad(&bridge, "not a PCI-to-PCI bridge"));
            }
            bus = match self.hw.pci_read(a, CFG_SECONDARY_BUS, 1) as u8 {
                0 => return Err(bad(&bridge, "bridge has no secondary bus assigned")),
                b => b,
            };
        }
        Ok(bus)
    }

    /// Finds the link device an entry names, relative to the `_PRT`'s scope (§5.3).
    fn find_link(&self, scope: &AmlPath, name: &str) -> Result<AmlPath, AcpiError> {
        AmlPath::candidates(scope, name)?
            .into_iter()
            .find(|p| self.devices.contains_key(p))
            .ok_or_else(|| AcpiError::NoSuchObject(String::from(name)))
    }

    /// The link's current interrupt: `_STA` must say enabled, and descriptor `index` of `_CRS`
    /// must be an interrupt descriptor naming a nonzero interrupt (0 means none assigned).
    fn link_irq(&mut self, link: &AmlPath, index: u32) -> Result<LinkIrq, AcpiError> {
        let key = (link.clone(), index);
        if let Some(r) = self.links.get(&key) {
            return r.clone();
        }
        let r = self.read_link(link, index);
        self.links.insert(key, r.clone());
        r
    }

    fn read_link(&self, link: &AmlPath, index: u32) -> Result<LinkIrq, AcpiError> {
        let pci_accesses = self.aml.pci_config_accesses();
        let sta = self.aml.integer(&link.child(STA))?;
        let crs = link.child(CRS);
        let v = self
            .aml
            .evaluate_path(&crs, Vec::new())?
            .ok_or_else(|| AcpiError::NoSuchObject(format!("{}", crs)))?;
        // PIIX/ICH-style links keep their IRQ in chipset PCI registers, which the interpreter
        // reads at the wrong offset (see `Aml::pci_config_accesses`): refuse rather than route
        // to a wrong GSI.
        if self.aml.pci_config_accesses() != pci_accesses {
            return Err(AcpiError::InterpreterLimit {
                path: format!("{}", link),
                what: "reads PCI configuration space through AML, which acpi 6.1 misaddresses",
            });
        }
        if sta.is_some_and(|s| s & STA_ENABLED == 0) {
            return Err(AcpiError::LinkDisabled(format!("{}", link)));
        }
        let Object::Buffer(b) = &*v else {
            return Err(bad(&crs, "not a buffer"));
        };
        let resources = decode_resources(b)?;
        let Some(Resource::Interrupt(i)) = resources.get(index as usize) else {
            return Err(bad(&crs, "source index names no interrupt descriptor"));
        };
        match i.interrupts.first() {
            Some(gsi) if *gsi != 0 => Ok(LinkIrq {
                gsi: *gsi,
                trigger: i.trigger,
                polarity: i.polarity,
                shared: i.shared,
            }),
            _ => Err(bad(&crs, "no interrupt assigned")),
        }
    }
}

impl Acpi {
    /// The PCI INTx routing of every PCI root bridge (`_HID`/`_CID` PNP0A03 or PNP0A08, with
    /// `_STA` present) and of the PCI-to-PCI bridges below them that have a `_PRT`.
    ///
    /// Announces the APIC interrupt model first (`\_PIC(1)`), so the routes are GSIs of the
    /// I/O APICs. A root's bus is `_BBN` (default 0) in segment `_SEG` (default 0); a bridge's
    /// is its secondary bus number, read from configuration space through 0xCF8 (so segment 0
    /// only); a bridge whose bus cannot be found is left out with a warning in the log. An
    /// entry naming a link device gets the first interrupt of the link's `_CRS` descriptor at
    /// its Source Index; a disabled or unusable link makes the entry `Unrouted`. A malformed
    /// `_PRT` or an interpreter error fails the whole call.
    pub fn pci_routes(&self, hw: &AcpiHw<'_>) -> Result<PciRouting, AcpiError> {
        let aml = Aml::load(self, *hw)?;
        if let Some(e) = &aml.load_error {
            log::warn!("acpi: routing with a partly loaded namespace: {}", e);
        }
        aml.announce_apic_mode()?;
        let devices = aml.devices();
        let mut r = Router {
            aml: &aml,
            hw,
            devices: devices.iter().map(|d| (d.path.clone(), d)).collect(),
            is_root: BTreeMap::new(),
            links: BTreeMap::new(),
        };
        let mut out = PciRouting::default();
        for dev in devices.iter().filter(|d| d.has(&PRT)) {
            let Some(root) = r.root_of(&dev.path) else {
                log::warn!("acpi: {} has a _PRT but no PCI root bridge", dev.path);
                continue;
            };
            if !r.present(&root)? {
                continue;
            }
            let (segment, root_bus) = r.root_location(&root)?;
            let bus = if root == dev.path {
                root_bus
            } else {
                match r.bridge_bus(segment, root_bus, &root, &dev.path) {
                    Ok(b) => b,
                    Err(e) => {
                        log::warn!("acpi: skipping the _PRT of {}: {}", dev.path, e);
                        continue;
                    }
                }
            };
            let prt = dev.path.child(PRT);
            let obj = aml
                .evaluate_path(&prt, Vec::new())?
                .ok_or_else(|| AcpiError::NoSuchObject(format!("{}", prt)))?;
            for e in parse_prt(&prt, &obj)? {
                let (source, irq) = match e.source {
                    PrtSource::Gsi(gsi) => (
                        None,
                        Ok(LinkIrq {
                            gsi,
                            trigger: Trigger::Level,
                            polarity: Polarity::ActiveLow,
                            shared: true,
                        }),
                    ),
                    PrtSource::Link { name, index } => match r.find_link(&dev.path, &name) {
                        Ok(link) => {
                            let irq = r.link_irq(&link, index);
                            (Some(link), irq)
                        }
                        Err(e) => (None, Err(e)),
                    },
                };
                match irq {
                    Ok(i) => out.routes.push(PciRoute {
                        segment,
                        bus,
                        device: e.device,
                        pin: e.pin,
                        gsi: i.gsi,
                        trigger: i.trigger,
                        polarity: i.polarity,
                        shared: i.shared,
                        source,
                    }),
                    Err(reason) => out.unrouted.push(Unrouted {
                        segment,
                        bus,
                        device: e.device,
                        pin: e.pin,
                        source,
                        reason,
                    }),
                }
            }
        }
        out.routes
            .sort_by_key(|r| (r.segment, r.bus, r.device, r.pin));
        out.unrouted
            .sort_by_key(|r| (r.segment, r.bus, r.device, r.pin));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::testutil::asl::*;
    use crate::testutil::*;

    fn path(s: &str) -> AmlPath {
        AmlPath::parse(s).unwrap()
    }

    fn route(
        (segment, bus, device, pin): (u16, u8, u8, Pin),
        gsi: u32,
        (trigger, polarity, shared): (Trigger, Polarity, bool),
        source: Option<&str>,
    ) -> PciRoute {
        PciRoute {
            segment,
            bus,
            device,
            pin,
            gsi,
            trigger,
            polarity,
            shared,
            source: source.map(path),
        }
    }

    const PINS: [Pin; 4] = [Pin::IntA, Pin::IntB, Pin::IntC, Pin::IntD];
    const LEVEL_HIGH_SHARED: (Trigger, Polarity, bool) =
        (Trigger::Level, Polarity::ActiveHigh, true);
    const LEVEL_LOW_SHARED: (Trigger, Polarity, bool) = (Trigger::Level, Polarity::ActiveLow, true);

    #[test]
    fn pins_and_eisa_ids() {
        assert_eq!(Pin::from_prt(3), Some(Pin::IntD));
        assert_eq!(Pin::from_prt(4), None);
        assert_eq!(Pin::from_config(1), Some(Pin::IntA));
        assert_eq!(Pin::from_config(0), None);
        assert_eq!(Pin::from_config(5), None);
        assert_eq!(eisa_id(0x030a_d041).as_deref(), Some("PNP0A03"));
        assert_eq!(eisa_id(0x080a_d041).as_deref(), Some("PNP0A08"));
        assert_eq!(eisa_id(0x0f0c_d041).as_deref(), Some("PNP0C0F"));
        assert_eq!(eisa_id(1 << 40), None);
        assert_eq!(
            eisa_id(0x80),
            None,
            "bit 31 of the swapped value is reserved"
        );
    }

    /// QEMU's `-M q35` (see tests/fixtures/README.md), with the ICH9 PIRQ route registers
    /// (00:1f.0 offsets 0x60-0x63, 0x68-0x6b) as SeaBIOS leaves them: 10, 10, 11, 11 (read from
    /// a QEMU 10 guest). They only matter in PIC mode; in APIC mode the q35 `_PRT` names
    /// GSIA-GSIH, whose `_CRS` are constants.
    #[test]
    fn qemu_q35_routes() {
        let rig = Rig::with_mem(FakeMem::from_fixture(include_bytes!(
            "../tests/fixtures/qemu-q35.bin"
        )));
        rig.io.set_config(0, 0x1f, 0, 0x60, &[10, 10, 11, 11]);
        rig.io.set_config(0, 0x1f, 0, 0x68, &[10, 10, 11, 11]);
        let r = rig.acpi(0xf59e0).pci_routes(&rig.hw()).unwrap();
        assert_eq!(r.unrouted, []);
        assert_eq!(r.routes.len(), 128, "32 devices x 4 pins");
        // QEMU's ich9 wiring: slots below 0x18 rotate over PIRQ E-H, the chipset's own
        // functions at 0x18-0x1f use A-D (E-H for 0x18 and 0x1e); PIRQ A-H are GSI 16-23.
        let mut want = Vec::new();
        for d in 0u8..32 {
            for (p, pin) in PINS.iter().enumerate() {
                let pirq = match d {
                    0..=0x17 => 4 + (usize::from(d) + p) % 4,
                    0x18 | 0x1e => 4 + p,
                    _ => p,
                };
                let link = alloc::format!("\\_SB.GSI{}", char::from(b'A' + pirq as u8));
                want.push(route(
                    (0, 0, d, *pin),
                    16 + pirq as u32,
                    LEVEL_HIGH_SHARED,
                    Some(&link),
                ));
            }
        }
        assert_eq!(r.routes, want);
        assert_eq!(
            r.find(0, 0, 0x1f, Pin::IntA).map(|r| r.gsi),
            Some(16),
            "SATA/SMBus INTA on PIRQA"
        );
        assert_eq!(r.find(0, 1, 0, Pin::IntA), None);
    }

    fn qemu_pc(pirq: [u8; 4]) -> (Rig, Acpi) {
        let rig = Rig::with_mem(FakeMem::from_fixture(include_bytes!(
            "../tests/fixtures/qemu-pc.bin"
        )));
        rig.io.set_config(0, 1, 0, 0x60, &pirq);
        let a = rig.acpi(0xf59d0);
        (rig, a)
    }

    /// QEMU's `-M pc` `_PRT` builds its package with `Local0 [Local1] = Local4`, a store
    /// through an Index reference that the acpi 6.1 interpreter does not implement (`todo!()`
    /// in `do_store`). In the kernel that panic ends the guarded command; this test records the
    /// limitation until the interpreter handles it.
    #[test]
    #[should_panic(expected = "not yet implemented")]
    fn qemu_pc_prt_needs_index_stores() {
        let (rig, a) = qemu_pc([10, 10, 11, 11]);
        let _ = a.pci_routes(&rig.hw());
    }

    /// The pc link devices: LNKS (the SCI) is a constant, IRQ 9. LNKA-LNKD read the PIIX3 PIRQ
    /// route registers (00:01.0 offsets 0x60-0x63, set here to 10, 10, 11, 11 as SeaBIOS
    /// programs them; read from a QEMU 10 guest: `pci read 00:01.0 0x60 d` = 0x0b0b0a0a), but
    /// acpi 6.1 reads offsets 0x00-0x03 (the vendor and device ID) instead, so they are refused.
    #[test]
    fn qemu_pc_links() {
        let (rig, a) = qemu_pc([10, 10, 11, 11]);
        rig.io.set_config(0, 1, 0, 0, &[0x86, 0x80, 0x00, 0x70]);
        let hw = rig.hw();
        let aml = Aml::load(&a, hw).unwrap();
        let devices = aml.devices();
        let mut r = Router {
            aml: &aml,
            hw: &hw,
            devices: devices.iter().map(|d| (d.path.clone(), d)).collect(),
            is_root: BTreeMap::new(),
            links: BTreeMap::new(),
        };
        assert!(r.is_root_bridge(&path("\\_SB.PCI0")));
        assert!(!r.is_root_bridge(&path("\\_SB.LNKA")));
        let i = r.link_irq(&path("\\_SB.LNKS"), 0).unwrap();
        assert_eq!(
            (i.gsi, i.trigger, i.polarity, i.shared),
            (9, Trigger::Level, Polarity::ActiveHigh, true)
        );
        for link in ["LNKA", "LNKB", "LNKC", "LNKD"] {
            let l = alloc::format!("\\_SB.{link}");
            assert_eq!(
                r.link_irq(&path(&l), 0).err(),
                Some(AcpiError::InterpreterLimit {
                    path: l,
                    what: "reads PCI configuration space through AML, which acpi 6.1 misaddresses"
                })
            );
        }
        assert_eq!(
            r.find_link(&path("\\_SB.PCI0"), "LNKD"),
            Ok(path("\\_SB.LNKD"))
        );
        // What acpi 6.1 makes of LNKD: the PIIX3 device ID's high byte 0x70 as "IRQ 112".
        let crs = a.evaluate(&hw, &path("\\_SB.LNKD._CRS"), &[]).unwrap();
        assert_eq!(
            crs,
            crate::AmlValue::Buffer(alloc::vec![0x89, 6, 0, 9, 1, 0x70, 0, 0, 0, 0x79, 0])
        );
    }

    /// A namespace with two roots (one at `_BBN` 0x10 with a bridge below it, one in segment 1),
    /// a disabled root, a `_PRT` outside any root, and entries of every kind.
    fn synthetic() -> Vec<u8> {
        let irq5_low = buffer(&[0x23, 0x20, 0x00, 0x18, 0x79, 0x00]);
        let mut pci1 = name("_HID", &eisa("PNP0A08"));
        pci1.extend(name("_BBN", &int(0x10)));
        pci1.extend(name(
            "_PRT",
            &package(&[
                prt_entry(0x0002_ffff, 0, None, 40),
                prt_entry(0x0002_ffff, 1, Some("LNK1"), 0),
                prt_entry(0x0002_ffff, 2, Some("^LNK1"), 0),
                prt_entry(0x0002_ffff, 3, Some("NOPE"), 0),
                prt_entry(0x0004_ffff, 0, Some("\\_SB.LNK1"), 1),
                prt_entry(0x0005_ffff, 0, Some("LNK2"), 0),
                prt_entry(0x0005_ffff, 1, Some("LNK3"), 0),
                prt_entry(0x0005_ffff, 2, Some("LNK4"), 0),
            ]),
        ));
        let mut br0 = name("_ADR", &int(0x0003_0001));
        br0.extend(name("_PRT", &package(&[prt_entry(0xffff, 3, None, 50)])));
        pci1.extend(device("BR0", &br0));
        // No _ADR: its bus cannot be found, so its _PRT is skipped.
        pci1.extend(device(
            "BR1",
            &name("_PRT", &package(&[prt_entry(0xffff, 0, None, 51)])),
        ));
        let mut pci2 = name("_HID", &string("PNP0A03"));
        pci2.extend(name("_CID", &package(&[eisa("PNP0A05")])));
        pci2.extend(name("_SEG", &int(1)));
        pci2.extend(name(
            "_PRT",
            &package(&[prt_entry(0x001f_ffff, 2, None, 60)]),
        ));
        let mut pci3 = name("_HID", &eisa("PNP0A06"));
        pci3.extend(name("_CID", &package(&[string("X"), eisa("PNP0A03")])));
        pci3.extend(name("_STA", &int(0)));
        pci3.extend(name("_PRT", &package(&[prt_entry(0xffff, 0, None, 70)])));
        let mut sb = device("PCI1", &pci1);
        sb.extend(device("PCI2", &pci2));
        sb.extend(device("PCI3", &pci3));
        sb.extend(device(
            "FOO",
            &name("_PRT", &package(&[prt_entry(0xffff, 0, None, 80)])),
        ));
        sb.extend(device("LNK1", &name("_CRS", &irq5_low)));
        // Present and functioning but not enabled, as QEMU's IQST says for a disabled link.
        let mut lnk2 = name("_STA", &int(0x09));
        lnk2.extend(name("_CRS", &irq5_low));
        sb.extend(device("LNK2", &lnk2));
        sb.extend(device(
            "LNK3",
            &name("_CRS", &buffer(&[0x22, 0x00, 0x00, 0x79, 0x00])),
        ));
        sb.extend(device("LNK4", &name("_CRS", &buffer(&[0x89, 0xff]))));
        scope("\\_SB", &sb)
    }

    fn synthetic_rig() -> Rig {
        let mut m = machine(false);
        replace(&mut m, DSDT_AT, dsdt(&synthetic()));
        let rig = Rig::new(&m);
        // The bridge at 10:03.1: vendor 1b36, header type 1, secondary bus 0x11.
        rig.io.set_config(0x10, 3, 1, 0, &[0x36, 0x1b]);
        rig.io.set_config(0x10, 3, 1, 0x0e, &[0x01]);
        rig.io.set_config(0x10, 3, 1, 0x19, &[0x11]);
        rig
    }

    #[test]
    fn synthetic_routes() {
        let rig = synthetic_rig();
        let a = rig.acpi(RSDP_AT);
        let r = a.pci_routes(&rig.hw()).unwrap();
        let irq5 = (Trigger::Level, Polarity::ActiveLow, true);
        assert_eq!(
            r.routes,
            [
                route((0, 0x10, 2, Pin::IntA), 40, LEVEL_LOW_SHARED, None),
                route((0, 0x10, 2, Pin::IntB), 5, irq5, Some("\\_SB.LNK1")),
                route((0, 0x10, 2, Pin::IntC), 5, irq5, Some("\\_SB.LNK1")),
                route((0, 0x11, 0, Pin::IntD), 50, LEVEL_LOW_SHARED, None),
                route((1, 0, 0x1f, Pin::IntC), 60, LEVEL_LOW_SHARED, None),
            ]
        );
        assert_eq!(
            r.unrouted,
            [
                Unrouted {
                    segment: 0,
                    bus: 0x10,
                    device: 2,
                    pin: Pin::IntD,
                    source: None,
                    reason: AcpiError::NoSuchObject("NOPE".into()),
                },
                Unrouted {
                    segment: 0,
                    bus: 0x10,
                    device: 4,
                    pin: Pin::IntA,
                    source: Some(path("\\_SB.LNK1")),
                    reason: AcpiError::BadObject {
                        path: "\\_SB.LNK1._CRS".into(),
                        what: "source index names no interrupt descriptor"
                    },
                },
                Unrouted {
                    segment: 0,
                    bus: 0x10,
                    device: 5,
                    pin: Pin::IntA,
                    source: Some(path("\\_SB.LNK2")),
                    reason: AcpiError::LinkDisabled("\\_SB.LNK2".into()),
                },
                Unrouted {
                    segment: 0,
                    bus: 0x10,
                    device: 5,
                    pin: Pin::IntB,
                    source: Some(path("\\_SB.LNK3")),
                    reason: AcpiError::BadObject {
                        path: "\\_SB.LNK3._CRS".into(),
                        what: "no interrupt assigned"
                    },
                },
                Unrouted {
                    segment: 0,
                    bus: 0x10,
                    device: 5,
                    pin: Pin::IntC,
                    source: Some(path("\\_SB.LNK4")),
                    reason: AcpiError::BadResource {
                        offset: 0,
                        what: "large item header truncated"
                    },
                },
            ]
        );
    }

    #[test]
    fn bridge_bus_comes_from_config_space() {
        let rig = synthetic_rig();
        // The bridge reads as absent: its _PRT is left out, the rest stays.
        rig.io.config.borrow_mut().clear();
        let r = rig.acpi(RSDP_AT).pci_routes(&rig.hw()).unwrap();
        assert!(r.routes.iter().all(|r| r.bus != 0x11));
        assert_eq!(r.routes.len(), 4);
        // Configured but with secondary bus 0: left out too.
        rig.io.set_config(0x10, 3, 1, 0, &[0x36, 0x1b, 0, 0]);
        rig.io.set_config(0x10, 3, 1, 0x0e, &[0x01]);
        rig.io.set_config(0x10, 3, 1, 0x19, &[0]);
        let r = rig.acpi(RSDP_AT).pci_routes(&rig.hw()).unwrap();
        assert_eq!(r.routes.len(), 4);
    }

    fn routes_of(prt: Vec<u8>) -> Result<PciRouting, AcpiError> {
        let mut root = name("_HID", &eisa("PNP0A03"));
        root.extend(name("_PRT", &prt));
        let mut m = machine(false);
        replace(
            &mut m,
            DSDT_AT,
            dsdt(&scope("\\_SB", &device("PCI0", &root))),
        );
        let rig = Rig::new(&m);
        let a = rig.acpi(RSDP_AT);
        a.pci_routes(&rig.hw())
    }

    #[test]
    fn malformed_prt_is_an_error() {
        let bad = |what| {
            Err(AcpiError::BadObject {
                path: "\\_SB.PCI0._PRT[0]".into(),
                what,
            })
        };
        assert_eq!(
            routes_of(int(5)),
            Err(AcpiError::BadObject {
                path: "\\_SB.PCI0._PRT".into(),
                what: "not a package"
            })
        );
        assert_eq!(routes_of(package(&[int(1)])), bad("entry is not a package"));
        assert_eq!(
            routes_of(package(&[package(&[int(0xffff), int(0), int(0)])])),
            bad("entry has fewer than 4 fields")
        );
        assert_eq!(
            routes_of(package(&[prt_entry(0x0020_ffff, 0, None, 1)])),
            bad("device number above 31")
        );
        assert_eq!(
            routes_of(package(&[prt_entry(0xffff, 4, None, 1)])),
            bad("pin is not 0-3")
        );
        assert_eq!(
            routes_of(package(&[package(&[int(0xffff), int(0), int(1), int(0)])])),
            bad("source is neither 0 nor a name")
        );
        assert_eq!(
            routes_of(package(&[package(&[string("x"), int(0), int(0), int(0)])])),
            bad("address is not an integer")
        );
        assert_eq!(routes_of(package(&[])), Ok(PciRouting::default()));
    }
}
