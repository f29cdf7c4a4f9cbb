//! Fakes and synthetic tables for host tests.
extern crate std;
use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;
use capmon_hal::{Clock, PhysMap, PortIo};
use core::cell::{Cell, RefCell};
use std::collections::BTreeMap;

/// Physical memory made of a few regions; anything else is unmappable.
pub struct FakeMem {
    regions: Vec<(u64, Box<[u8]>)>,
}

impl FakeMem {
    pub fn new(regions: &[(u64, Vec<u8>)]) -> FakeMem {
        FakeMem {
            regions: regions
                .iter()
                .map(|(a, b)| (*a, b.clone().into_boxed_slice()))
                .collect(),
        }
    }

    /// Reads the record format of tests/fixtures/*.bin: (u64 phys, u32 len, bytes)*.
    pub fn from_fixture(mut b: &[u8]) -> FakeMem {
        let mut regions = Vec::new();
        while !b.is_empty() {
            let phys = u64::from_le_bytes(b[..8].try_into().unwrap());
            let len = u32::from_le_bytes(b[8..12].try_into().unwrap()) as usize;
            regions.push((phys, b[12..12 + len].to_vec()));
            b = &b[12 + len..];
        }
        FakeMem::new(&regions)
    }
}

impl PhysMap for FakeMem {
    fn map(&self, phys: u64, len: usize, _mmio: bool) -> Option<*mut u8> {
        let (base, bytes) = self.regions.iter().find(|(a, b)| {
            phys >= *a
                && phys
                    .checked_add(len as u64)
                    .is_some_and(|e| e <= *a + b.len() as u64)
        })?;
        // Tests only read through these pointers.
        Some(bytes[(phys - base) as usize..].as_ptr() as *mut u8)
    }
}

/// I/O ports that log every write and answer reads from a table (default 0). PCI
/// configuration mechanism #1 is modelled too: after a write of an enabled address to 0xCF8,
/// reads of 0xCFC-0xCFF answer from `config` where it has the bytes.
#[derive(Default)]
pub struct FakeIo {
    pub writes: RefCell<Vec<(u16, u32)>>,
    pub values: RefCell<BTreeMap<u16, u32>>,
    /// Configuration bytes by (bus, device, function, offset).
    pub config: RefCell<BTreeMap<(u8, u8, u8, u8), u8>>,
    config_address: Cell<u32>,
}

impl FakeIo {
    /// Sets configuration bytes of one function, starting at `off`.
    pub fn set_config(&self, bus: u8, dev: u8, func: u8, off: u8, bytes: &[u8]) {
        let mut c = self.config.borrow_mut();
        for (i, b) in bytes.iter().enumerate() {
            c.insert((bus, dev, func, off + i as u8), *b);
        }
    }

    fn config_read(&self, port: u16, width: usize) -> Option<u32> {
        let a = self.config_address.get();
        if a & 0x8000_0000 == 0 || !(0xcfc..=0xcff).contains(&port) {
            return None;
        }
        let (bus, dev, func) = (
            (a >> 16) as u8,
            ((a >> 11) & 0x1f) as u8,
            ((a >> 8) & 7) as u8,
        );
        let off = (a & 0xfc) as u8 + (port - 0xcfc) as u8;
        let c = self.config.borrow();
        let mut v = 0;
        let mut any = false;
        for i in 0..width {
            let b = c.get(&(bus, dev, func, off + i as u8));
            any |= b.is_some();
            v |= u32::from(*b.unwrap_or(&0xff)) << (8 * i);
        }
        any.then_some(v)
    }

    fn read(&self, port: u16, width: usize) -> u32 {
        self.config_read(port, width)
            .unwrap_or_else(|| self.values.borrow().get(&port).copied().unwrap_or(0))
    }

    fn write(&self, port: u16, v: u32) {
        if port == 0xcf8 {
            self.config_address.set(v);
        }
        self.writes.borrow_mut().push((port, v));
    }
}

impl PortIo for FakeIo {
    fn inb(&self, port: u16) -> u8 {
        self.read(port, 1) as u8
    }
    fn inw(&self, port: u16) -> u16 {
        self.read(port, 2) as u16
    }
    fn inl(&self, port: u16) -> u32 {
        self.read(port, 4)
    }
    fn outb(&self, port: u16, v: u8) {
        self.write(port, v.into())
    }
    fn outw(&self, port: u16, v: u16) {
        self.write(port, v.into())
    }
    fn outl(&self, port: u16, v: u32) {
        self.write(port, v)
    }
}

/// A clock that advances 1 ms every time it is read, so waits end quickly.
#[derive(Default)]
pub struct FakeClock(Cell<u64>);

impl Clock for FakeClock {
    fn now_ns(&self) -> u64 {
        self.0.set(self.0.get() + 1_000_000);
        self.0.get()
    }
}

fn fix_checksum(b: &mut [u8], at: usize, range: core::ops::Range<usize>) {
    b[at] = 0;
    let sum = b[range].iter().fold(0u8, |s, x| s.wrapping_add(*x));
    b[at] = 0u8.wrapping_sub(sum);
}

/// A table with a standard header and a correct checksum.
pub fn sdt(sig: &[u8; 4], revision: u8, body: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(sig);
    b.extend_from_slice(&((36 + body.len()) as u32).to_le_bytes());
    b.push(revision);
    b.push(0);
    b.extend_from_slice(b"CAPMON");
    b.extend_from_slice(b"TESTTABL");
    b.extend_from_slice(&1u32.to_le_bytes());
    b.extend_from_slice(b"CAPM");
    b.extend_from_slice(&1u32.to_le_bytes());
    b.extend_from_slice(body);
    let n = b.len();
    fix_checksum(&mut b, 9, 0..n);
    b
}

pub fn rsdp_v1(rsdt: u32) -> Vec<u8> {
    let mut b = b"RSD PTR ".to_vec();
    b.push(0);
    b.extend_from_slice(b"CAPMON");
    b.push(0);
    b.extend_from_slice(&rsdt.to_le_bytes());
    fix_checksum(&mut b, 8, 0..20);
    b
}

pub fn rsdp_v2(rsdt: u32, xsdt: u64) -> Vec<u8> {
    let mut b = rsdp_v1(rsdt);
    b[15] = 2;
    b.extend_from_slice(&36u32.to_le_bytes());
    b.extend_from_slice(&xsdt.to_le_bytes());
    b.extend_from_slice(&[0; 4]);
    fix_checksum(&mut b, 8, 0..20);
    fix_checksum(&mut b, 32, 0..36);
    b
}

pub fn rsdt(entries: &[u32]) -> Vec<u8> {
    sdt(
        b"RSDT",
        1,
        &entries
            .iter()
            .flat_map(|e| e.to_le_bytes())
            .collect::<Vec<_>>(),
    )
}

pub fn xsdt(entries: &[u64]) -> Vec<u8> {
    sdt(
        b"XSDT",
        1,
        &entries
            .iter()
            .flat_map(|e| e.to_le_bytes())
            .collect::<Vec<_>>(),
    )
}

fn put(b: &mut [u8], off: usize, v: &[u8]) {
    b[off..off + v.len()].copy_from_slice(v);
}

fn gas(space: u8, width: u8, access: u8, addr: u64) -> Vec<u8> {
    let mut g = vec![space, width, 0, access];
    g.extend_from_slice(&addr.to_le_bytes());
    g
}

/// An ACPI 1.0 FADT like QEMU's `-M pc`: PIIX4 PM at 0x600.
pub fn fadt_v1(dsdt: u32, facs: u32) -> Vec<u8> {
    let mut body = vec![0u8; 116 - 36];
    let mut f = |off: usize, v: &[u8]| put(&mut body, off - 36, v);
    f(36, &facs.to_le_bytes());
    f(40, &dsdt.to_le_bytes());
    f(45, &[1]);
    f(46, &9u16.to_le_bytes());
    f(48, &0xb2u32.to_le_bytes());
    f(52, &[0xf1, 0xf0]);
    f(56, &0x600u32.to_le_bytes());
    f(64, &0x604u32.to_le_bytes());
    f(76, &0x608u32.to_le_bytes());
    f(80, &0xafe0u32.to_le_bytes());
    f(88, &[4, 2, 0, 4, 4]);
    f(109, &2u16.to_le_bytes());
    f(112, &0x0000_80a5u32.to_le_bytes());
    sdt(b"FACP", 1, &body)
}

/// An ACPI 5 FADT with X_ fields (X_PM1a_CNT at 0x1604 to tell it from the legacy 0x604) and
/// a reset register at I/O 0xCF9 with value 6.
pub fn fadt_v5(dsdt: u32, x_dsdt: u64) -> Vec<u8> {
    let v1 = fadt_v1(dsdt, 0);
    let mut body = v1[36..].to_vec();
    body.resize(276 - 36, 0);
    let mut f = |off: usize, v: &[u8]| put(&mut body, off - 36, v);
    f(112, &(0x0000_80a5u32 | 1 << 10).to_le_bytes());
    f(116, &gas(1, 8, 1, 0xcf9));
    f(128, &[6]);
    f(131, &[1]);
    f(140, &x_dsdt.to_le_bytes());
    f(148, &gas(1, 32, 0, 0x600));
    f(172, &gas(1, 16, 0, 0x1604));
    sdt(b"FACP", 5, &body)
}

pub fn facs() -> Vec<u8> {
    let mut b = vec![0u8; 64];
    put(&mut b, 0, b"FACS");
    put(&mut b, 4, &64u32.to_le_bytes());
    b[32] = 1;
    b
}

/// A MADT with every entry type we decode, plus one unknown (type 0x7f).
pub fn madt() -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&0xfee0_0000u32.to_le_bytes());
    body.extend_from_slice(&1u32.to_le_bytes());
    body.extend_from_slice(&[0, 8, 0, 0, 1, 0, 0, 0]); // LAPIC uid 0 id 0 enabled
    body.extend_from_slice(&[0, 8, 1, 1, 2, 0, 0, 0]); // LAPIC uid 1 id 1 online-capable
    body.extend_from_slice(&[1, 12, 0, 0, 0, 0, 0xc0, 0xfe, 0, 0, 0, 0]); // IOAPIC
    body.extend_from_slice(&[2, 10, 0, 0, 2, 0, 0, 0, 0, 0]); // ISO irq0 -> gsi2
    body.extend_from_slice(&[2, 10, 0, 9, 9, 0, 0, 0, 0x0d, 0]); // ISO irq9 high level
    body.extend_from_slice(&[3, 8, 0x07, 0, 23, 0, 0, 0]); // NMI source gsi 23 low edge
    body.extend_from_slice(&[4, 6, 0xff, 0, 0, 1]); // LAPIC NMI all LINT1
    body.extend_from_slice(&[9, 16, 0, 0, 0, 1, 0, 0, 1, 0, 0, 0, 0x2c, 1, 0, 0]); // x2APIC
    body.extend_from_slice(&[0x7f, 4, 0, 0]);
    sdt(b"APIC", 3, &body)
}

pub fn mcfg(regions: &[(u64, u16, u8, u8)]) -> Vec<u8> {
    let mut body = vec![0u8; 8];
    for (base, seg, start, end) in regions {
        body.extend_from_slice(&base.to_le_bytes());
        body.extend_from_slice(&seg.to_le_bytes());
        body.extend_from_slice(&[*start, *end, 0, 0, 0, 0]);
    }
    sdt(b"MCFG", 1, &body)
}

/// QEMU's HPET: vendor 8086, 3 comparators, 64-bit counter, legacy replacement.
pub fn hpet(base: u64) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&0x8086_a201u32.to_le_bytes());
    body.extend_from_slice(&gas(0, 0, 0, base));
    body.push(0);
    body.extend_from_slice(&0x80u16.to_le_bytes());
    body.push(0);
    sdt(b"HPET", 1, &body)
}

fn aml_int(v: u16) -> Vec<u8> {
    match v {
        0 => vec![0x00],                          // ZeroOp
        1 => vec![0x01],                          // OneOp
        2..=0xff => vec![0x0a, v as u8],          // BytePrefix
        _ => vec![0x0b, v as u8, (v >> 8) as u8], // WordPrefix
    }
}

/// AML: `Name(_S5, Package(){ elems... })`.
pub fn aml_s5(elems: &[u16]) -> Vec<u8> {
    let body: Vec<u8> = elems.iter().flat_map(|e| aml_int(*e)).collect();
    let mut b = vec![0x08];
    b.extend_from_slice(b"_S5_");
    b.push(0x12); // PackageOp
    b.push((2 + body.len()) as u8); // PkgLength: itself, NumElements, elements
    b.push(elems.len() as u8);
    b.extend_from_slice(&body);
    b
}

/// AML: a byte field DBGB on I/O port 0x402 and `Method(_PTS, 1) { DBGB = Arg0 }`.
pub fn aml_pts() -> Vec<u8> {
    let mut b = vec![0x5b, 0x80];
    b.extend_from_slice(b"DBG_");
    b.extend_from_slice(&[0x01, 0x0b, 0x02, 0x04, 0x01]); // SystemIO, WordConst 0x402, One
    b.extend_from_slice(&[0x5b, 0x81, 0x0b]);
    b.extend_from_slice(b"DBG_");
    b.push(0x01); // ByteAcc, NoLock, Preserve
    b.extend_from_slice(b"DBGB");
    b.push(8);
    b.extend_from_slice(&[0x14, 0x0c]);
    b.extend_from_slice(b"_PTS");
    b.push(0x01); // one argument
    b.push(0x70); // StoreOp
    b.push(0x68); // Arg0
    b.extend_from_slice(b"DBGB");
    b
}

pub fn dsdt(aml: &[u8]) -> Vec<u8> {
    sdt(b"DSDT", 2, aml)
}

/// Where `machine` puts each table.
pub const RSDP_AT: u64 = 0xe0000;
pub const RSDT_AT: u64 = 0x1000;
pub const XSDT_AT: u64 = 0x2000;
pub const FADT_AT: u64 = 0x3000;
pub const MADT_AT: u64 = 0x4000;
pub const MCFG_AT: u64 = 0x5000;
pub const HPET_AT: u64 = 0x6000;
pub const DSDT_AT: u64 = 0x7000;
pub const FACS_AT: u64 = 0x8000;

/// The regions of a small machine: RSDP (v2 with XSDT when `v2`), RSDT, FADT, MADT, MCFG,
/// HPET, a DSDT with `\_S5 = {5, 5, 0, 0}` and `\_PTS`, and a FACS.
pub fn machine(v2: bool) -> Vec<(u64, Vec<u8>)> {
    let entries = [FADT_AT, MADT_AT, MCFG_AT, HPET_AT];
    let mut aml = aml_s5(&[5, 5, 0, 0]);
    aml.extend_from_slice(&aml_pts());
    let mut m = vec![
        (RSDT_AT, rsdt(&entries.map(|e| e as u32))),
        (MADT_AT, madt()),
        (MCFG_AT, mcfg(&[(0xb000_0000, 0, 0, 255)])),
        (HPET_AT, hpet(0xfed0_0000)),
        (DSDT_AT, dsdt(&aml)),
        (FACS_AT, facs()),
    ];
    if v2 {
        m.push((RSDP_AT, rsdp_v2(RSDT_AT as u32, XSDT_AT)));
        m.push((XSDT_AT, xsdt(&entries)));
        m.push((FADT_AT, fadt_v5(0, DSDT_AT)));
    } else {
        m.push((RSDP_AT, rsdp_v1(RSDT_AT as u32)));
        m.push((FADT_AT, fadt_v1(DSDT_AT as u32, FACS_AT as u32)));
    }
    m
}

/// Replaces the region at `at`.
pub fn replace(m: &mut [(u64, Vec<u8>)], at: u64, bytes: Vec<u8>) {
    if let Some(r) = m.iter_mut().find(|(a, _)| *a == at) {
        r.1 = bytes;
    }
}

/// Fake memory, ports and clock together, as the AML interpreter and power code need them.
pub struct Rig {
    pub mem: FakeMem,
    pub io: FakeIo,
    pub clock: FakeClock,
}

impl Rig {
    pub fn new(regions: &[(u64, Vec<u8>)]) -> Rig {
        Rig::with_mem(FakeMem::new(regions))
    }

    pub fn with_mem(mem: FakeMem) -> Rig {
        Rig {
            mem,
            io: FakeIo::default(),
            clock: FakeClock::default(),
        }
    }

    pub fn hw(&self) -> crate::AcpiHw<'_> {
        crate::AcpiHw {
            mem: &self.mem,
            io: &self.io,
            clock: &self.clock,
        }
    }

    /// The tables of this machine, with the RSDP at `rsdp`.
    pub fn acpi(&self, rsdp: u64) -> crate::Acpi {
        crate::Acpi::new(&self.mem, rsdp).unwrap()
    }
}

/// Hand-assembled AML (ACPI 6.5 §20.2), for tables the tests need.
pub mod asl {
    use alloc::vec;
    use alloc::vec::Vec;

    /// PkgLength (§20.2.4) of `body`, then `body`; up to 4095 bytes.
    pub fn pkg(body: &[u8]) -> Vec<u8> {
        let mut b = if body.len() + 1 < 0x40 {
            vec![(body.len() + 1) as u8]
        } else {
            let n = body.len() + 2;
            assert!(n < 0x1000);
            vec![0x40 | (n & 0xf) as u8, (n >> 4) as u8]
        };
        b.extend_from_slice(body);
        b
    }

    /// A NameString: a `\` or `^` prefixes, then segments (padded with `_`).
    pub fn name_string(path: &str) -> Vec<u8> {
        let (mut b, rest) = match path.strip_prefix('\\') {
            Some(r) => (vec![b'\\'], r),
            None => {
                let r = path.trim_start_matches('^');
                (vec![b'^'; path.len() - r.len()], r)
            }
        };
        let segs: Vec<&str> = rest.split('.').collect();
        match segs.len() {
            1 => {}
            2 => b.push(0x2e),
            n => b.extend_from_slice(&[0x2f, n as u8]),
        }
        for s in segs {
            let mut seg = [b'_'; 4];
            seg[..s.len()].copy_from_slice(s.as_bytes());
            b.extend_from_slice(&seg);
        }
        b
    }

    pub fn int(v: u32) -> Vec<u8> {
        match v {
            0 => vec![0x00],
            1 => vec![0x01],
            2..=0xff => vec![0x0a, v as u8],
            _ => {
                let mut b = vec![0x0c];
                b.extend_from_slice(&v.to_le_bytes());
                b
            }
        }
    }

    pub fn string(s: &str) -> Vec<u8> {
        let mut b = vec![0x0d];
        b.extend_from_slice(s.as_bytes());
        b.push(0);
        b
    }

    /// `Name (NAME, value)`.
    pub fn name(n: &str, value: &[u8]) -> Vec<u8> {
        let mut b = vec![0x08];
        b.extend(name_string(n));
        b.extend_from_slice(value);
        b
    }

    /// `Package () { elements }`; each element already encoded.
    pub fn package(elements: &[Vec<u8>]) -> Vec<u8> {
        let mut body = vec![elements.len() as u8];
        for e in elements {
            body.extend_from_slice(e);
        }
        let mut b = vec![0x12];
        b.extend(pkg(&body));
        b
    }

    /// `Buffer () { bytes }`.
    pub fn buffer(bytes: &[u8]) -> Vec<u8> {
        let mut body = int(bytes.len() as u32);
        body.extend_from_slice(bytes);
        let mut b = vec![0x11];
        b.extend(pkg(&body));
        b
    }

    /// A `_PRT` entry `Package () { address, pin, source, index }`; `link` None means 0.
    pub fn prt_entry(address: u32, pin: u32, link: Option<&str>, index: u32) -> Vec<u8> {
        let source = link.map_or(int(0), name_string);
        package(&[int(address), int(pin), source, int(index)])
    }

    /// `Device (NAME) { body }`.
    pub fn device(n: &str, body: &[u8]) -> Vec<u8> {
        let mut inner = name_string(n);
        inner.extend_from_slice(body);
        let mut b = vec![0x5b, 0x82];
        b.extend(pkg(&inner));
        b
    }

    /// `Scope (NAME) { body }`.
    pub fn scope(n: &str, body: &[u8]) -> Vec<u8> {
        let mut inner = name_string(n);
        inner.extend_from_slice(body);
        let mut b = vec![0x10];
        b.extend(pkg(&inner));
        b
    }

    /// `EisaId ("PNP0A03")` as the DWordConst ASL compilers emit.
    pub fn eisa(id: &str) -> Vec<u8> {
        let c = id.as_bytes();
        let l = |i: usize| u32::from(c[i] - b'@');
        let hex = u32::from_str_radix(&id[3..], 16).unwrap();
        let v = (l(0) << 26 | l(1) << 21 | l(2) << 16 | hex).swap_bytes();
        let mut b = vec![0x0c];
        b.extend_from_slice(&v.to_le_bytes());
        b
    }
}
