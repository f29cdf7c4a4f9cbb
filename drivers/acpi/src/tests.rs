//! Whole-crate tests: discovery over synthetic machines and QEMU's real tables.
extern crate std;
use crate::testutil::*;
use crate::*;
use alloc::vec;

fn sigs(a: &Acpi) -> std::vec::Vec<std::string::String> {
    a.tables()
        .iter()
        .map(|t| alloc::format!("{}", t.signature))
        .collect()
}

/// (referrer, error) of each skipped table.
fn why_skipped(a: &Acpi) -> std::vec::Vec<(&str, AcpiError)> {
    a.skipped()
        .iter()
        .map(|s| (s.referrer.as_str(), s.error.clone()))
        .collect()
}

#[test]
fn discovers_v1_through_rsdt() {
    let mem = FakeMem::new(&machine(false));
    let a = Acpi::new(&mem, RSDP_AT).unwrap();
    assert_eq!(a.rsdp().revision, 0);
    assert_eq!(
        sigs(&a),
        ["RSDT", "FACP", "APIC", "MCFG", "HPET", "DSDT", "FACS"]
    );
    assert!(a.skipped().is_empty());
    assert!(a.tables().iter().all(|t| t.checksum_ok != Some(false)));
    let facs = a.table(Signature::FACS, 0).unwrap();
    assert_eq!(
        (facs.phys, facs.checksum_ok, facs.revision(), facs.oem_id()),
        (FACS_AT, None, 1, &[][..])
    );
    let madt = a.table(Signature::MADT, 0).unwrap();
    assert_eq!(
        (madt.revision(), madt.oem_id(), madt.oem_table_id()),
        (3, &b"CAPMON"[..], &b"TESTTABL"[..])
    );
}

#[test]
fn discovers_v2_through_xsdt() {
    let mem = FakeMem::new(&machine(true));
    let a = Acpi::new(&mem, RSDP_AT).unwrap();
    assert_eq!(a.rsdp().xsdt, Some(XSDT_AT));
    // The v5 FADT has no FACS; its DSDT comes from X_DSDT.
    assert_eq!(sigs(&a), ["XSDT", "FACP", "APIC", "MCFG", "HPET", "DSDT"]);
    assert_eq!(a.table(Signature::DSDT, 0).unwrap().phys, DSDT_AT);
    assert_eq!(
        a.mcfg_regions().unwrap(),
        [McfgRegion {
            segment: 0,
            bus_start: 0,
            bus_end: 255,
            base: 0xb000_0000
        }]
    );
    assert_eq!(a.madt().unwrap().io_apics.len(), 1);
    assert_eq!(a.hpet().unwrap().comparators, 3);
    assert_eq!(a.fadt().unwrap().pm1a_control.unwrap().address, 0x1604);
}

#[test]
fn corrupt_xsdt_falls_back_to_rsdt() {
    let mut m = machine(true);
    let mut x = xsdt(&[FADT_AT]);
    x[40] ^= 1;
    replace(&mut m, XSDT_AT, x);
    let a = Acpi::new(&FakeMem::new(&m), RSDP_AT).unwrap();
    assert_eq!(a.tables()[0].signature, Signature::RSDT);
    assert_eq!(a.skipped().len(), 1);
    assert_eq!(a.skipped()[0].referrer, "RSDP.XSDT");
    assert_eq!(
        a.skipped()[0].error,
        AcpiError::BadChecksum(Signature::XSDT)
    );
}

#[test]
fn unusable_roots_fail() {
    let mut m = machine(false);
    replace(&mut m, RSDP_AT, rsdp_v1(0x9999_0000));
    assert_eq!(
        Acpi::new(&FakeMem::new(&m), RSDP_AT).unwrap_err(),
        AcpiError::NoRootTable
    );

    let mut m = machine(false);
    replace(&mut m, RSDT_AT, xsdt(&[])); // wrong signature at the RSDT pointer
    assert_eq!(
        Acpi::new(&FakeMem::new(&m), RSDP_AT).unwrap_err(),
        AcpiError::NoRootTable
    );

    let mut m = machine(false);
    let mut r = rsdt(&[FADT_AT as u32]);
    r.push(0); // 41 bytes: not a whole number of entries
    r[4] = 41;
    let n = r.len();
    r[9] = 0;
    r[9] = 0u8.wrapping_sub(r[..n].iter().fold(0u8, |s, x| s.wrapping_add(*x)));
    replace(&mut m, RSDT_AT, r);
    assert_eq!(
        Acpi::new(&FakeMem::new(&m), RSDP_AT).unwrap_err(),
        AcpiError::NoRootTable
    );
}

#[test]
fn bad_entries_are_skipped_not_fatal() {
    let mut m = machine(false);
    // Entries: a pointer outside memory, a truncated table, a lying length, a null, and HPET.
    replace(
        &mut m,
        RSDT_AT,
        rsdt(&[
            0xdead_0000,
            MADT_AT as u32,
            MCFG_AT as u32,
            0,
            HPET_AT as u32,
        ]),
    );
    let madt = madt();
    let madt_len = madt.len() as u64;
    replace(&mut m, MADT_AT, madt[..20].to_vec());
    let mut mcfg = mcfg(&[(0xb000_0000, 0, 0, 255)]);
    mcfg[4] = 0xff; // length 255 but only 60 bytes exist
    replace(&mut m, MCFG_AT, mcfg);
    let mem = FakeMem::new(&m);
    let a = Acpi::new(&mem, RSDP_AT).unwrap();
    assert_eq!(sigs(&a), ["RSDT", "HPET"]);
    assert_eq!(
        why_skipped(&a),
        [
            (
                "RSDT[0]",
                AcpiError::Unmappable {
                    phys: 0xdead_0000,
                    len: 8
                }
            ),
            (
                "RSDT[1]",
                AcpiError::Unmappable {
                    phys: MADT_AT,
                    len: madt_len
                }
            ),
            (
                "RSDT[2]",
                AcpiError::Unmappable {
                    phys: MCFG_AT,
                    len: 255
                }
            ),
            ("RSDT[3]", AcpiError::NullAddress),
        ]
    );
    assert_eq!(a.madt().unwrap_err(), AcpiError::Missing(Signature::MADT));
    assert_eq!(a.fadt().unwrap_err(), AcpiError::Missing(Signature::FADT));
    assert!(a.hpet().is_ok());
}

#[test]
fn bad_checksum_is_listed_but_not_decoded() {
    let mut m = machine(false);
    let mut madt = madt();
    madt[50] ^= 0xff;
    replace(&mut m, MADT_AT, madt);
    let mut dsdt = dsdt(&aml_s5(&[5, 5]));
    dsdt[40] ^= 1;
    replace(&mut m, DSDT_AT, dsdt);
    let mem = FakeMem::new(&m);
    let a = Acpi::new(&mem, RSDP_AT).unwrap();
    assert_eq!(
        a.table(Signature::MADT, 0).unwrap().checksum_ok,
        Some(false)
    );
    assert_eq!(
        a.madt().unwrap_err(),
        AcpiError::BadChecksum(Signature::MADT)
    );
    let rig = Rig::with_mem(mem);
    assert_eq!(
        a.s5_sleep_types(&rig.hw()).unwrap_err(),
        AcpiError::BadChecksum(Signature::DSDT)
    );
}

#[test]
fn dsdt_pointer_problems_are_skipped() {
    let mut m = machine(false);
    replace(&mut m, FADT_AT, fadt_v1(MADT_AT as u32, 0xdead_0000));
    let a = Acpi::new(&FakeMem::new(&m), RSDP_AT).unwrap();
    assert_eq!(
        why_skipped(&a),
        [
            (
                "FADT.DSDT",
                AcpiError::BadSignature {
                    expected: Signature::DSDT,
                    found: Signature::MADT
                }
            ),
            (
                "FADT.FACS",
                AcpiError::Unmappable {
                    phys: 0xdead_0000,
                    len: 8
                }
            ),
        ]
    );
}

fn s5_of(aml: &[u8]) -> Result<(u8, u8), AcpiError> {
    let mut m = machine(false);
    replace(&mut m, DSDT_AT, dsdt(aml));
    let rig = Rig::new(&m);
    rig.acpi(RSDP_AT).s5_sleep_types(&rig.hw())
}

#[test]
fn s5_from_aml() {
    assert_eq!(s5_of(&aml_s5(&[5, 5, 0, 0])), Ok((5, 5)));
    assert_eq!(s5_of(&aml_s5(&[0, 7])), Ok((0, 7)));
    assert_eq!(
        s5_of(&aml_s5(&[0x0502])),
        Ok((2, 5)),
        "one element packs both values"
    );
    assert_eq!(
        s5_of(&aml_s5(&[9, 0])),
        Err(AcpiError::BadS5("SLP_TYP value above 7"))
    );
    assert_eq!(s5_of(&aml_s5(&[])), Err(AcpiError::BadS5("empty package")));
    assert_eq!(s5_of(&aml_pts()), Err(AcpiError::BadS5("not defined")));
    // Name(_S5, One): not a package.
    let mut int = vec![0x08];
    int.extend_from_slice(b"_S5_");
    int.push(0x01);
    assert_eq!(s5_of(&int), Err(AcpiError::BadS5("not a package")));
    // Garbage AML: the load error is reported.
    assert!(matches!(s5_of(&[0x5b, 0xff, 0xff]), Err(AcpiError::Aml(_))));
}

#[test]
fn s5_found_in_an_ssdt() {
    let mut m = machine(false);
    replace(&mut m, DSDT_AT, dsdt(&aml_pts()));
    replace(&mut m, RSDT_AT, rsdt(&[FADT_AT as u32, 0x9000]));
    m.push((0x9000, sdt(b"SSDT", 2, &aml_s5(&[3, 4]))));
    let rig = Rig::new(&m);
    assert_eq!(rig.acpi(RSDP_AT).s5_sleep_types(&rig.hw()), Ok((3, 4)));
}

#[test]
fn enter_s5_writes_pm1a_after_pts() {
    let rig = Rig::new(&machine(false));
    rig.io.values.borrow_mut().insert(0x604, 0x0001 | 0x1c00); // SCI_EN set, stale SLP_TYP
    assert_eq!(
        rig.acpi(RSDP_AT).enter_s5(&rig.hw()),
        AcpiError::StillRunning
    );
    let slp = 0x0001 | 5 << 10;
    assert_eq!(
        *rig.io.writes.borrow(),
        [(0x402, 5), (0x604, slp), (0x604, slp | 1 << 13)]
    );
}

#[test]
fn enter_s5_uses_x_pm1a_and_pm1b() {
    let mut m = machine(true);
    let mut f = fadt_v5(0, DSDT_AT);
    f[184..196].copy_from_slice(&[1, 16, 0, 0, 0x08, 0x16, 0, 0, 0, 0, 0, 0]); // X_PM1b_CNT 0x1608
    f[9] = 0;
    f[9] = 0u8.wrapping_sub(f.iter().fold(0u8, |s, x| s.wrapping_add(*x)));
    replace(&mut m, FADT_AT, f);
    let rig = Rig::new(&m);
    assert_eq!(
        rig.acpi(RSDP_AT).enter_s5(&rig.hw()),
        AcpiError::StillRunning
    );
    let (typ, en) = (5 << 10, 1 << 13);
    assert_eq!(
        rig.io.writes.borrow()[1..],
        [
            (0x1604, typ),
            (0x1604, typ | en),
            (0x1608, typ),
            (0x1608, typ | en)
        ]
    );
}

#[test]
fn enter_s5_without_s5_writes_nothing() {
    let mut m = machine(false);
    replace(&mut m, DSDT_AT, dsdt(&[]));
    let rig = Rig::new(&m);
    assert_eq!(
        rig.acpi(RSDP_AT).enter_s5(&rig.hw()),
        AcpiError::BadS5("not defined")
    );
    assert!(rig.io.writes.borrow().is_empty());
}

#[test]
fn reset_through_fadt_register() {
    let rig = Rig::new(&machine(true));
    assert_eq!(
        rig.acpi(RSDP_AT).reset(&rig.hw()),
        Err(AcpiError::StillRunning)
    );
    assert_eq!(*rig.io.writes.borrow(), [(0xcf9, 6)]);

    let rig = Rig::new(&machine(false));
    assert_eq!(
        rig.acpi(RSDP_AT).reset(&rig.hw()),
        Err(AcpiError::ResetNotSupported)
    );
    assert!(rig.io.writes.borrow().is_empty());
}

/// Tables dumped from QEMU 8.2 with SeaBIOS (see tests/fixtures/README.md).
fn qemu(fixture: &[u8], rsdp: u64) -> (Rig, Acpi) {
    let rig = Rig::with_mem(FakeMem::from_fixture(fixture));
    let a = rig.acpi(rsdp);
    (rig, a)
}

#[test]
fn qemu_pc_tables() {
    let (rig, a) = qemu(include_bytes!("../tests/fixtures/qemu-pc.bin"), 0xf59d0);
    assert_eq!(
        sigs(&a),
        ["RSDT", "FACP", "APIC", "HPET", "WAET", "DSDT", "FACS"]
    );
    assert!(a.skipped().is_empty());
    assert!(a.tables().iter().all(|t| t.checksum_ok != Some(false)));
    let f = a.fadt().unwrap();
    assert_eq!(
        (f.pm1a_control.unwrap().address, f.sci_int, f.reset_reg),
        (0x604, 9, None)
    );
    let m = a.madt().unwrap();
    assert_eq!(
        m.io_apics,
        [IoApic {
            id: 0,
            address: 0xfec0_0000,
            gsi_base: 0
        }]
    );
    assert_eq!(m.local_apics.len(), 1);
    assert!(m.overrides.iter().any(|o| o.irq == 0 && o.gsi == 2));
    assert_eq!(
        a.mcfg_regions().unwrap_err(),
        AcpiError::Missing(Signature::MCFG)
    );
    assert_eq!(a.hpet().unwrap().base.address, 0xfed0_0000);
    assert_eq!(a.s5_sleep_types(&rig.hw()), Ok((0, 0)));
    let aml = crate::aml::Aml::load(&a, rig.hw()).unwrap();
    assert_eq!(aml.load_error, None, "the whole DSDT loads");
}

#[test]
fn qemu_q35_tables() {
    let (rig, a) = qemu(include_bytes!("../tests/fixtures/qemu-q35.bin"), 0xf59e0);
    assert_eq!(
        sigs(&a),
        ["RSDT", "FACP", "APIC", "HPET", "MCFG", "WAET", "DSDT", "FACS"]
    );
    let f = a.fadt().unwrap();
    assert_eq!(f.pm1a_control.unwrap().address, 0x604);
    let r = f.reset_reg.unwrap();
    assert_eq!(
        (r.space, r.address, f.reset_value),
        (AddressSpace::SystemIo, 0xcf9, 0x0f)
    );
    assert!(f.flags.reset_reg_supported());
    let ecam = McfgRegion {
        segment: 0,
        bus_start: 0,
        bus_end: 255,
        base: 0xb000_0000,
    };
    assert_eq!(a.mcfg_regions().unwrap(), [ecam]);
    assert_eq!(a.s5_sleep_types(&rig.hw()), Ok((0, 0)));
    let aml = crate::aml::Aml::load(&a, rig.hw()).unwrap();
    assert_eq!(aml.load_error, None, "the whole DSDT loads");
    assert_eq!(a.enter_s5(&rig.hw()), AcpiError::StillRunning);
    assert_eq!(rig.io.writes.borrow().last(), Some(&(0x604, 1 << 13)));
}
