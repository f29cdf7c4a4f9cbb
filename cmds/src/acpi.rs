//! The `acpi` command family: list the ACPI tables, decode MADT/MCFG/FADT/HPET, dump a table,
//! show the S5 sleep types the firmware's AML gives, evaluate any AML object, and show the PCI
//! interrupt routing of the `_PRT`s.
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use capmon_acpi::{eisa_id, oem_str, Acpi, AcpiError, AcpiHw, AmlPath, AmlValue, Gas, Signature};
use capmon_shell::out::hexdump;
use capmon_shell::{bad_arg, fail, out, outln, parse, Args, CmdError, CmdResult, Command};
use core::fmt::Write;

/// What the `acpi` commands need from the machine.
pub trait AcpiHost {
    /// The tables read at boot, or why there are none (`fail!("no RSDP from the bootloader")`).
    fn acpi(&mut self) -> Result<&Acpi, CmdError>;
    /// The tables and the hardware the AML interpreter may touch (memory, ports, clock).
    fn acpi_hw(&mut self) -> Result<(&Acpi, AcpiHw<'_>), CmdError>;
}

const USAGE: &str =
    "acpi [madt | mcfg | fadt | hpet | dump SIG [N] | s5 | eval PATH [ARG...] | prt]";

const LONG_HELP: &str = "\
acpi              one line per table: signature, address, length, revision, OEM IDs, checksum;
                  then one SKIP line per table pointer that led nowhere usable
acpi madt         local APICs / x2APICs, I/O APICs, interrupt source overrides, NMIs
acpi mcfg         PCIe ECAM windows: segment, bus range, base
acpi fadt         PM1 blocks, PM timer, GPEs, SCI, reset register, boot architecture, flags
acpi hpet         HPET base address and capabilities
acpi dump SIG [N] hexdump of the Nth (default 0) table with signature SIG (or RSDP)
acpi s5           SLP_TYPa/SLP_TYPb of \\_S5, evaluated by the AML interpreter
acpi eval PATH [ARG...]
                  evaluate the AML object at absolute PATH (\\_S5, \\_SB.PCI0._PRT), running it
                  with integer ARGs if it is a method: integers (hex and decimal), strings,
                  buffers (hexdump), packages (indexed, nested); names inside packages show
                  as strings. Each evaluation starts from freshly loaded tables (so without
                  the \\_PIC(1) that acpi prt makes)
acpi prt          PCI INTx routing from the _PRT of every PCI root bridge and bridge below,
                  after \\_PIC(1) (APIC mode): SEG:BUS:DEV PIN gsi trigger polarity shared link";

pub fn commands<S: AcpiHost>() -> Vec<Command<S>> {
    vec![Command {
        name: "acpi",
        group: "platform",
        subcommands: &["madt", "mcfg", "fadt", "hpet", "dump", "s5", "eval", "prt"],
        usage: USAGE,
        help: "ACPI tables: list, decode MADT/MCFG/FADT/HPET, dump, S5, AML eval, PCI _PRT",
        long_help: LONG_HELP,
        run: acpi::<S>,
    }]
}

fn acpi<S: AcpiHost>(s: &mut S, a: &mut Args, o: &mut dyn Write) -> CmdResult {
    let sub = a.opt_str();
    match sub {
        Some("s5") => {
            a.finish()?;
            return s5(s, o);
        }
        Some("eval") => return eval(s, a, o),
        Some("prt") => {
            a.finish()?;
            return prt(s, o);
        }
        _ => {}
    }
    let t = s.acpi()?;
    match sub {
        None => a.finish().and_then(|_| list(t, o)),
        Some("madt") => a.finish().and_then(|_| madt(t, o)),
        Some("mcfg") => a.finish().and_then(|_| mcfg(t, o)),
        Some("fadt") => a.finish().and_then(|_| fadt(t, o)),
        Some("hpet") => a.finish().and_then(|_| hpet(t, o)),
        Some("dump") => dump(t, a, o),
        Some(w) => Err(bad_arg!("unknown subcommand '{}'", w)),
    }
}

fn err(e: AcpiError) -> CmdError {
    fail!("{}", e)
}

fn ok(good: bool) -> &'static str {
    if good {
        "ok"
    } else {
        "BAD"
    }
}

fn list(t: &Acpi, o: &mut dyn Write) -> CmdResult {
    let r = t.rsdp();
    outln!(
        o,
        "RSDP addr={:#x} len={} rev={} oem={} oem_table=- checksum={}",
        r.phys,
        r.bytes.len(),
        r.revision,
        oem_str(&r.oem_id),
        ok(r.extended_checksum_ok)
    );
    for tb in t.tables() {
        let (oem, oem_table) = if tb.signature == Signature::FACS {
            ("-".into(), "-".into())
        } else {
            (oem_str(tb.oem_id()), oem_str(tb.oem_table_id()))
        };
        outln!(
            o,
            "{} addr={:#x} len={} rev={} oem={} oem_table={} checksum={}",
            tb.signature,
            tb.phys,
            tb.len(),
            tb.revision(),
            oem,
            oem_table,
            tb.checksum_ok.map_or("n/a", ok)
        );
    }
    for sk in t.skipped() {
        outln!(
            o,
            "SKIP addr={:#x} from={} reason={}",
            sk.phys,
            sk.referrer,
            sk.error
        );
    }
    Ok(())
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

fn madt(t: &Acpi, o: &mut dyn Write) -> CmdResult {
    let m = t.madt().map_err(err)?;
    outln!(
        o,
        "local_apic_addr={:#x} pcat_compat={}",
        m.local_apic_address,
        yes(m.pcat_compat)
    );
    for l in &m.local_apics {
        let (kind, id) = if l.x2apic {
            ("X2APIC", "x2apic_id")
        } else {
            ("LAPIC", "apic_id")
        };
        out!(
            o,
            "{} uid={} {}={} {}",
            kind,
            l.uid,
            id,
            l.apic_id,
            if l.enabled { "enabled" } else { "disabled" }
        );
        if l.online_capable {
            out!(o, " online-capable");
        }
        outln!(o);
    }
    for io in &m.io_apics {
        outln!(
            o,
            "IOAPIC id={} addr={:#x} gsi_base={}",
            io.id,
            io.address,
            io.gsi_base
        );
    }
    for i in &m.overrides {
        outln!(
            o,
            "ISO bus={} irq={} gsi={} polarity={} trigger={}",
            i.bus,
            i.irq,
            i.gsi,
            i.polarity.name(),
            i.trigger.name()
        );
    }
    for n in &m.nmi_sources {
        outln!(
            o,
            "NMI gsi={} polarity={} trigger={}",
            n.gsi,
            n.polarity.name(),
            n.trigger.name()
        );
    }
    for n in &m.local_apic_nmis {
        match n.uid {
            Some(uid) => out!(o, "LAPIC_NMI uid={}", uid),
            None => out!(o, "LAPIC_NMI uid=all"),
        }
        outln!(
            o,
            " lint={} polarity={} trigger={}",
            n.lint,
            n.polarity.name(),
            n.trigger.name()
        );
    }
    for (typ, len) in &m.other {
        outln!(o, "OTHER type={} len={}", typ, len);
    }
    Ok(())
}

fn mcfg(t: &Acpi, o: &mut dyn Write) -> CmdResult {
    let regions = t.mcfg_regions().map_err(err)?;
    if regions.is_empty() {
        outln!(o, "MCFG lists no regions");
    }
    for r in regions {
        outln!(
            o,
            "segment={} bus={}-{} base={:#x}",
            r.segment,
            r.bus_start,
            r.bus_end,
            r.base
        );
    }
    Ok(())
}

/// A register block for display: `io:0x604/16`, or `-` when absent.
struct Reg(Option<Gas>);

impl core::fmt::Display for Reg {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            Some(g) => write!(f, "{}", g),
            None => f.write_str("-"),
        }
    }
}

fn fadt(t: &Acpi, o: &mut dyn Write) -> CmdResult {
    let f = t.fadt().map_err(err)?;
    out!(o, "revision={}", f.revision);
    if let Some(minor) = f.minor_version {
        out!(o, " minor={}", minor);
    }
    outln!(
        o,
        " profile={} dsdt={:#x} facs={:#x}",
        f.pm_profile.name(),
        f.dsdt,
        f.firmware_ctrl
    );
    outln!(
        o,
        "sci={} smi_cmd={:#x} acpi_enable={:#x} acpi_disable={:#x} century={:#x}",
        f.sci_int,
        f.smi_cmd,
        f.acpi_enable,
        f.acpi_disable,
        f.century
    );
    outln!(
        o,
        "pm1a_evt={} pm1b_evt={} pm1a_cnt={} pm1b_cnt={}",
        Reg(f.pm1a_event),
        Reg(f.pm1b_event),
        Reg(f.pm1a_control),
        Reg(f.pm1b_control)
    );
    outln!(
        o,
        "pm_tmr={} gpe0={} gpe1={}",
        Reg(f.pm_timer),
        Reg(f.gpe0),
        Reg(f.gpe1)
    );
    outln!(
        o,
        "reset={} reset_value={:#x} reset_supported={}",
        Reg(f.reset_reg),
        f.reset_value,
        yes(f.flags.reset_reg_supported() && f.reset_reg.is_some())
    );
    out!(o, "iapc_boot_arch={:#06x}", f.iapc_boot_arch.0);
    for n in f.iapc_boot_arch.names() {
        out!(o, " {}", n);
    }
    outln!(o);
    out!(o, "flags={:#010x}", f.flags.0);
    for n in f.flags.names() {
        out!(o, " {}", n);
    }
    outln!(o);
    Ok(())
}

fn hpet(t: &Acpi, o: &mut dyn Write) -> CmdResult {
    let h = t.hpet().map_err(err)?;
    outln!(
        o,
        "base={} vendor={:#06x} rev={} comparators={} counter={}-bit legacy_replacement={}",
        h.base,
        h.pci_vendor_id,
        h.hardware_rev,
        h.comparators,
        if h.counter_64bit { 64 } else { 32 },
        yes(h.legacy_replacement)
    );
    outln!(
        o,
        "number={} min_tick={} page_protection={}",
        h.number,
        h.min_tick,
        h.page_protection
    );
    Ok(())
}

fn dump(t: &Acpi, a: &mut Args, o: &mut dyn Write) -> CmdResult {
    let word = a.str()?;
    let n = a.opt_u64("N")?.unwrap_or(0);
    a.finish()?;
    let upper = word.to_ascii_uppercase();
    if upper == "RSDP" {
        let r = t.rsdp();
        hexdump(o, r.phys, &r.bytes, 1);
        return Ok(());
    }
    let sig = Signature::parse(&upper).ok_or_else(|| {
        bad_arg!(
            "'{}' is not a table signature (4 characters, e.g. APIC)",
            word
        )
    })?;
    let idx = usize::try_from(n).unwrap_or(usize::MAX);
    let tb = t.table(sig, idx).ok_or_else(|| match n {
        0 => fail!("no {} table", sig),
        _ => fail!("no {} table number {}", sig, n),
    })?;
    hexdump(o, tb.phys, &tb.bytes, 1);
    Ok(())
}

fn s5<S: AcpiHost>(s: &mut S, o: &mut dyn Write) -> CmdResult {
    let (t, hw) = s.acpi_hw()?;
    let (a, b) = t.s5_sleep_types(&hw).map_err(err)?;
    outln!(o, "SLP_TYPa={} SLP_TYPb={}", a, b);
    Ok(())
}

fn eval<S: AcpiHost>(s: &mut S, a: &mut Args, o: &mut dyn Write) -> CmdResult {
    let word = a.str()?;
    let path = AmlPath::parse(word).map_err(|e| bad_arg!("'{}': {}", word, e))?;
    let args = a
        .rest()
        .into_iter()
        .map(|w| parse::number(w).map_err(|e| bad_arg!("argument '{}': {}", w, e)))
        .collect::<Result<Vec<u64>, _>>()?;
    let (t, hw) = s.acpi_hw()?;
    let v = t.evaluate(&hw, &path, &args).map_err(err)?;
    // _HID and _CID integers are compressed EISA IDs (ACPI 6.5 §6.1.5).
    let ids = matches!(path.last(), Some(n) if n == *b"_HID" || n == *b"_CID");
    show(o, &v, 0, ids);
    Ok(())
}

/// Prints a value: the rest of the current line, then its contents indented by `indent`.
fn show(o: &mut dyn Write, v: &AmlValue, indent: usize, ids: bool) {
    match v {
        AmlValue::Integer(i) => {
            out!(o, "integer {:#x} ({})", i, i);
            match eisa_id(*i) {
                Some(id) if ids => outln!(o, " EisaId(\"{}\")", id),
                _ => outln!(o),
            }
        }
        AmlValue::String(st) => outln!(o, "string {:?}", st),
        AmlValue::Buffer(b) => {
            outln!(o, "buffer, {} bytes", b.len());
            let mut dump = String::new();
            hexdump(&mut dump, 0, b, 1);
            for line in dump.lines() {
                outln!(o, "{:w$}{}", "", line, w = indent + 2);
            }
        }
        AmlValue::Package(elems) => {
            outln!(o, "package, {} elements", elems.len());
            for (i, e) in elems.iter().enumerate() {
                out!(o, "{:w$}[{}] ", "", i, w = indent + 2);
                show(o, e, indent + 2, ids);
            }
        }
        AmlValue::Reference(r) => {
            out!(o, "reference to ");
            show(o, r, indent, ids);
        }
        AmlValue::Other(what) => outln!(o, "{}", what),
    }
}

fn prt<S: AcpiHost>(s: &mut S, o: &mut dyn Write) -> CmdResult {
    let (t, hw) = s.acpi_hw()?;
    let r = t.pci_routes(&hw).map_err(err)?;
    if r.routes.is_empty() && r.unrouted.is_empty() {
        outln!(o, "no _PRT entries");
    }
    let link = |l: &Option<AmlPath>| match l {
        Some(p) => alloc::format!("{}", p),
        None => String::from("-"),
    };
    for e in &r.routes {
        outln!(
            o,
            "{:04x}:{:02x}:{:02x} {} gsi={} trigger={} polarity={} shared={} link={}",
            e.segment,
            e.bus,
            e.device,
            e.pin.name(),
            e.gsi,
            e.trigger.name(),
            e.polarity.name(),
            yes(e.shared),
            link(&e.source)
        );
    }
    for u in &r.unrouted {
        outln!(
            o,
            "{:04x}:{:02x}:{:02x} {} gsi=- link={} unrouted: {}",
            u.segment,
            u.bus,
            u.device,
            u.pin.name(),
            link(&u.source),
            u.reason
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use alloc::string::String;
    use capmon_hal::{Clock, PhysMap, PortIo};
    use core::cell::Cell;

    /// QEMU 8.2 `-M q35` tables under SeaBIOS, as the acpi crate's tests use them.
    const Q35: &[u8] = include_bytes!("../../drivers/acpi/tests/fixtures/qemu-q35.bin");
    const Q35_RSDP: u64 = 0xf59e0;

    /// Physical memory from the fixture's (u64 phys, u32 len, bytes) records.
    struct Mem(Vec<(u64, Vec<u8>)>);

    impl PhysMap for Mem {
        fn map(&self, phys: u64, len: usize, _mmio: bool) -> Option<*mut u8> {
            let (base, b) = self.0.iter().find(|(a, b)| {
                phys >= *a
                    && phys
                        .checked_add(len as u64)
                        .is_some_and(|e| e <= *a + b.len() as u64)
            })?;
            Some(b[(phys - base) as usize..].as_ptr() as *mut u8)
        }
    }

    fn fixture(mut b: &[u8]) -> Mem {
        let mut v = Vec::new();
        while !b.is_empty() {
            let phys = u64::from_le_bytes(b[..8].try_into().unwrap());
            let len = u32::from_le_bytes(b[8..12].try_into().unwrap()) as usize;
            v.push((phys, b[12..12 + len].to_vec()));
            b = &b[12 + len..];
        }
        Mem(v)
    }

    struct NoPorts;
    impl PortIo for NoPorts {
        fn inb(&self, _: u16) -> u8 {
            0
        }
        fn inw(&self, _: u16) -> u16 {
            0
        }
        fn inl(&self, _: u16) -> u32 {
            0
        }
        fn outb(&self, _: u16, _: u8) {}
        fn outw(&self, _: u16, _: u16) {}
        fn outl(&self, _: u16, _: u32) {}
    }

    struct Ticks(Cell<u64>);
    impl Clock for Ticks {
        fn now_ns(&self) -> u64 {
            self.0.set(self.0.get() + 1_000_000);
            self.0.get()
        }
    }

    struct Host {
        mem: Mem,
        io: NoPorts,
        clock: Ticks,
        acpi: Option<Acpi>,
    }

    impl AcpiHost for Host {
        fn acpi(&mut self) -> Result<&Acpi, CmdError> {
            self.acpi.as_ref().ok_or_else(|| fail!("no ACPI tables"))
        }
        fn acpi_hw(&mut self) -> Result<(&Acpi, AcpiHw<'_>), CmdError> {
            let t = self.acpi.as_ref().ok_or_else(|| fail!("no ACPI tables"))?;
            Ok((
                t,
                AcpiHw {
                    mem: &self.mem,
                    io: &self.io,
                    clock: &self.clock,
                },
            ))
        }
    }

    fn host() -> Host {
        let mem = fixture(Q35);
        let acpi = Acpi::new(&mem, Q35_RSDP).ok();
        Host {
            mem,
            io: NoPorts,
            clock: Ticks(Cell::new(0)),
            acpi,
        }
    }

    fn run(h: &mut Host, line: &str) -> Result<String, CmdError> {
        let mut o = String::new();
        let words = capmon_shell::parse::words(line);
        let mut a = Args::new(words[1..].to_vec());
        (commands::<Host>()[0].run)(h, &mut a, &mut o).map(|_| o)
    }

    #[test]
    fn lists_every_table() {
        let out = run(&mut host(), "acpi").unwrap();
        let sigs: Vec<&str> = out.lines().map(|l| l.split(' ').next().unwrap()).collect();
        assert_eq!(
            sigs,
            ["RSDP", "RSDT", "FACP", "APIC", "HPET", "MCFG", "WAET", "DSDT", "FACS"]
        );
        assert!(
            out.starts_with("RSDP addr=0xf59e0 len=20 rev=0 oem=BOCHS oem_table=- checksum=ok\n"),
            "{out}"
        );
        assert!(
            out.contains(
                "\nAPIC addr=0x7fe2199 len=120 rev=1 oem=BOCHS oem_table=BXPC checksum=ok\n"
            ),
            "{out}"
        );
        assert!(
            out.contains("\nFACS addr=0x7fe0000 len=64 rev=") && out.contains("checksum=n/a"),
            "{out}"
        );
    }

    #[test]
    fn decodes_q35() {
        let mut h = host();
        let madt = run(&mut h, "acpi madt").unwrap();
        assert!(madt.contains("\nLAPIC uid=0 apic_id=0 enabled\n"), "{madt}");
        assert!(
            madt.contains("\nIOAPIC id=0 addr=0xfec00000 gsi_base=0\n"),
            "{madt}"
        );
        assert!(
            madt.contains("\nISO bus=0 irq=0 gsi=2 polarity=conforms trigger=conforms\n"),
            "{madt}"
        );
        assert!(
            madt.contains("\nISO bus=0 irq=9 gsi=9 polarity=high trigger=level\n"),
            "{madt}"
        );
        assert!(madt.contains("\nLAPIC_NMI uid=all lint=1"), "{madt}");
        assert_eq!(
            run(&mut h, "acpi mcfg").unwrap(),
            "segment=0 bus=0-255 base=0xb0000000\n"
        );
        let fadt = run(&mut h, "acpi fadt").unwrap();
        assert!(fadt.contains("pm1a_cnt=io:0x604/16 pm1b_cnt=-"), "{fadt}");
        assert!(
            fadt.contains("reset=io:0xcf9/8 reset_value=0xf reset_supported=yes"),
            "{fadt}"
        );
        let hpet = run(&mut h, "acpi hpet").unwrap();
        assert!(hpet.starts_with("base=mem:0xfed00000/"), "{hpet}");
        assert_eq!(run(&mut h, "acpi s5").unwrap(), "SLP_TYPa=0 SLP_TYPb=0\n");
    }

    #[test]
    fn dumps_tables() {
        let mut h = host();
        let out = run(&mut h, "acpi dump mcfg").unwrap();
        assert_eq!(out.lines().count(), 4, "60 bytes → 4 lines");
        assert!(
            out.starts_with("0000000007fe2249: 4d 43 46 47 3c 00 00 00"),
            "{out}"
        );
        assert!(run(&mut h, "acpi dump RSDP").unwrap().contains("|RSD PTR "));
        assert_eq!(
            run(&mut h, "acpi dump NOPE").unwrap_err(),
            fail!("no NOPE table")
        );
        assert_eq!(
            run(&mut h, "acpi dump APIC 1").unwrap_err(),
            fail!("no APIC table number 1")
        );
        assert!(matches!(
            run(&mut h, "acpi dump TOOLONG"),
            Err(CmdError::BadArg(_))
        ));
        assert_eq!(run(&mut h, "acpi dump"), Err(CmdError::Usage));
    }

    #[test]
    fn bad_input_and_missing_tables() {
        let mut h = host();
        assert!(matches!(run(&mut h, "acpi nope"), Err(CmdError::BadArg(_))));
        assert!(matches!(
            run(&mut h, "acpi madt extra"),
            Err(CmdError::BadArg(_))
        ));
        let mut none = Host {
            acpi: None,
            ..host()
        };
        assert_eq!(run(&mut none, "acpi"), Err(fail!("no ACPI tables")));
        assert_eq!(run(&mut none, "acpi s5"), Err(fail!("no ACPI tables")));
        // -M pc has no MCFG.
        let mem = fixture(include_bytes!(
            "../../drivers/acpi/tests/fixtures/qemu-pc.bin"
        ));
        let acpi = Acpi::new(&mem, 0xf59d0).ok();
        let mut pc = Host {
            mem,
            io: NoPorts,
            clock: Ticks(Cell::new(0)),
            acpi,
        };
        assert_eq!(run(&mut pc, "acpi mcfg"), Err(fail!("no valid MCFG table")));
        assert_eq!(run(&mut pc, "acpi s5").unwrap(), "SLP_TYPa=0 SLP_TYPb=0\n");
    }

    #[test]
    fn evaluates_aml_objects() {
        let mut h = host();
        assert_eq!(
            run(&mut h, "acpi eval \\_S5").unwrap(),
            "package, 4 elements\n  [0] integer 0x0 (0)\n  [1] integer 0x0 (0)\n  \
             [2] integer 0x0 (0)\n  [3] integer 0x0 (0)\n"
        );
        assert_eq!(
            run(&mut h, "acpi eval \\_SB.PCI0.S10._ADR").unwrap(),
            "integer 0x20000 (131072)\n"
        );
        // Case does not matter; _HID/_CID integers show their EISA ID.
        assert_eq!(
            run(&mut h, "acpi eval \\_sb.pci0._hid").unwrap(),
            "integer 0x80ad041 (134926401) EisaId(\"PNP0A08\")\n"
        );
        assert_eq!(
            run(&mut h, "acpi eval \\_SB.GSIA._CRS").unwrap(),
            "buffer, 11 bytes\n  0000000000000000: 89 06 00 09 01 10 00 00 00 79 00             \
             \x20   |.........y.|\n"
        );
        assert_eq!(
            run(&mut h, "acpi eval \\_SB.HPET._HID").unwrap(),
            "integer 0x301d041 (50450497) EisaId(\"PNP0103\")\n"
        );
        assert_eq!(
            run(&mut h, "acpi eval \\_SB.PCI0.GPE0._HID").unwrap(),
            "string \"PNP0A06\"\n"
        );
        assert_eq!(run(&mut h, "acpi eval \\_SB.PCI0").unwrap(), "device\n");
        // A method with an argument and no Return.
        assert_eq!(
            run(&mut h, "acpi eval \\_PIC 1").unwrap(),
            "uninitialized\n"
        );
        // Nested packages are indented, names inside them are strings (the 8259-mode table:
        // eval does not call \_PIC first).
        let prt = run(&mut h, "acpi eval \\_SB.PCI0._PRT").unwrap();
        assert!(
            prt.starts_with(
                "package, 128 elements\n  [0] package, 4 elements\n    [0] integer 0xffff \
                 (65535)\n    [1] integer 0x0 (0)\n    [2] string \"LNKE\"\n    \
                 [3] integer 0x0 (0)\n  [1] package, 4 elements\n"
            ),
            "{prt}"
        );
        assert!(
            prt.ends_with(
                "  [127] package, 4 elements\n    [0] integer 0x1fffff (2097151)\n    \
                 [1] integer 0x3 (3)\n    [2] string \"LNKD\"\n    [3] integer 0x0 (0)\n"
            ),
            "{prt}"
        );
    }

    #[test]
    fn eval_errors() {
        let mut h = host();
        assert_eq!(
            run(&mut h, "acpi eval \\_SB.NOPE"),
            Err(fail!("no AML object \\_SB.NOPE"))
        );
        assert_eq!(
            run(&mut h, "acpi eval \\NO.SUCH.PATH"),
            Err(fail!("no AML object \\NO.SUCH.PATH"))
        );
        assert_eq!(
            run(&mut h, "acpi eval \\_PIC"),
            Err(fail!("AML: MethodArgCountIncorrect"))
        );
        assert_eq!(
            run(&mut h, "acpi eval _S5"),
            Err(bad_arg!(
                "'_S5': bad AML path: an absolute path starts with \\"
            ))
        );
        assert_eq!(
            run(&mut h, "acpi eval \\_SB.TOOLONG"),
            Err(bad_arg!(
                "'\\_SB.TOOLONG': bad AML path: a name segment has 1 to 4 characters"
            ))
        );
        assert_eq!(
            run(&mut h, "acpi eval \\_PIC zz"),
            Err(bad_arg!(
                "argument 'zz': not a number (use decimal or 0x hex)"
            ))
        );
        assert_eq!(run(&mut h, "acpi eval"), Err(CmdError::Usage));
        let mut none = Host {
            acpi: None,
            ..host()
        };
        assert_eq!(
            run(&mut none, "acpi eval \\_S5"),
            Err(fail!("no ACPI tables"))
        );
        assert_eq!(run(&mut none, "acpi prt"), Err(fail!("no ACPI tables")));
    }

    #[test]
    fn prints_pci_routing() {
        let out = run(&mut host(), "acpi prt").unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 128, "{out}");
        assert_eq!(
            lines[0],
            "0000:00:00 INTA gsi=20 trigger=level polarity=high shared=yes link=\\_SB.GSIE"
        );
        assert_eq!(
            lines[7],
            "0000:00:01 INTD gsi=20 trigger=level polarity=high shared=yes link=\\_SB.GSIE"
        );
        assert_eq!(
            lines[124],
            "0000:00:1f INTA gsi=16 trigger=level polarity=high shared=yes link=\\_SB.GSIA"
        );
        assert!(matches!(
            run(&mut host(), "acpi prt extra"),
            Err(CmdError::BadArg(_))
        ));
    }
}
