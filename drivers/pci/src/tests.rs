//! Tests of the whole subsystem against the fake machine in `fake.rs`.
use crate::bar::BarProblem;
use crate::caps::{id, LinkState, PortType};
use crate::fake::{sample_machine, virtio_cap, FakeFunction, FakeMachine, Shared};
use crate::*;
use alloc::vec;
use alloc::vec::Vec;
use capmon_hal::PciConfig;

fn bdf(s: &str) -> Bdf {
    Bdf::parse(s).unwrap()
}

fn sample(legacy: bool, ecam: bool) -> (Pci, Shared) {
    let windows: &[(u16, u8, u8)] = if ecam { &[(0, 0, 0xff)] } else { &[] };
    sample_machine().into_pci(legacy, windows).unwrap()
}

fn addrs(t: &Topology) -> Vec<Bdf> {
    t.functions.iter().map(|f| f.bdf()).collect()
}

#[test]
fn enumerates_whole_topology_in_both_modes() {
    let (mut pci, m) = sample(true, true);
    assert_eq!(pci.mode(), AccessMode::Ecam);
    let want: Vec<Bdf> = [
        "00:00.0", "00:01.0", "00:02.0", "00:1c.0", "00:1f.0", "00:1f.2", "00:1f.3", "01:00.0",
    ]
    .iter()
    .map(|s| bdf(s))
    .collect();
    let before = m.stats();
    let ecam = pci.enumerate();
    let after = m.stats();
    assert_eq!(addrs(&ecam), want);
    assert!(ecam.problems.is_empty(), "{:?}", ecam.problems);
    assert_eq!(
        after.legacy_accesses, before.legacy_accesses,
        "ECAM mode must not touch the ports"
    );
    assert!(after.ecam_accesses > before.ecam_accesses);

    pci.set_mode(AccessMode::Legacy).unwrap();
    let before = m.stats();
    let legacy = pci.enumerate();
    let after = m.stats();
    assert_eq!(legacy, ecam);
    assert_eq!(
        after.ecam_accesses, before.ecam_accesses,
        "legacy mode must not touch ECAM"
    );

    // The device behind the root port knows its parent; multi-function siblings are found.
    let nvme = ecam.get(bdf("01:00.0")).unwrap();
    assert_eq!(nvme.parent, Some(bdf("00:1c.0")));
    assert_eq!(ecam.child_bus(bdf("00:1c.0")), Some(1));
    assert_eq!(ecam.get(bdf("00:1f.2")).unwrap().header.class.sub, 0x06);
    assert_eq!(ecam.roots.len(), 1);
}

#[test]
fn modes_that_do_not_exist_are_refused() {
    let (mut pci, _) = sample(true, false);
    assert_eq!(pci.mode(), AccessMode::Legacy);
    assert_eq!(
        pci.set_mode(AccessMode::Ecam),
        Err(PciError::ModeUnavailable(AccessMode::Ecam))
    );
    let (mut pci, _) = sample(false, true);
    assert_eq!(
        pci.set_mode(AccessMode::Legacy),
        Err(PciError::ModeUnavailable(AccessMode::Legacy))
    );
    assert!(matches!(
        FakeMachine::new().into_pci(false, &[]),
        Err(PciError::NoMechanism)
    ));
}

#[test]
fn sizes_bars_with_decoding_off_and_restores() {
    let (pci, m) = sample(true, true);
    let blk = bdf("00:02.0");
    let bars = pci.bars(blk).unwrap();
    assert!(bars.problems.is_empty(), "{:?}", bars.problems);
    assert_eq!(
        bars.bars,
        vec![
            Bar {
                index: 1,
                kind: BarKind::Mem32,
                prefetchable: false,
                addr: 0xfebf_1000,
                size: 0x1000
            },
            Bar {
                index: 4,
                kind: BarKind::Mem64,
                prefetchable: true,
                addr: 0xfe00_0000,
                size: 0x4000
            },
        ]
    );
    let s = m.stats();
    assert_eq!(s.sized_while_decoding, 0);
    assert!(s.sized_safely >= 4);
    // Command and BARs are back as they were.
    assert_eq!(m.peek32(blk, 0x04) & 0xffff, 0x0007);
    assert_eq!(m.peek32(blk, 0x14), 0xfebf_1000);
    assert_eq!(m.peek32(blk, 0x20), 0xfe00_000c);
    assert_eq!(m.peek32(blk, 0x24), 0);

    let sata = pci.bars(bdf("00:1f.2")).unwrap();
    assert_eq!(
        sata.bars[0],
        Bar {
            index: 4,
            kind: BarKind::Io,
            prefetchable: false,
            addr: 0xc040,
            size: 0x20
        }
    );
    assert_eq!(sata.bars[1].size, 0x1000);
    let vga = pci.bars(bdf("00:01.0")).unwrap();
    assert_eq!(vga.bars[0].size, 16 << 20);
    assert!(vga.bars[0].prefetchable);
    assert_eq!(
        vga.rom,
        Some(bar::Rom {
            addr: 0xfebe_0000,
            size: 0x10000,
            enabled: false
        })
    );
    let nvme = pci.bar(bdf("01:00.0"), 0).unwrap();
    assert_eq!(
        (nvme.kind, nvme.addr, nvme.size),
        (BarKind::Mem64, 0xfe80_0000, 0x4000)
    );
    assert_eq!(
        pci.bar(bdf("01:00.0"), 1),
        Err(PciError::NoSuchBar {
            bdf: bdf("01:00.0"),
            index: 1
        })
    );
    assert_eq!(
        pci.bar(bdf("05:00.0"), 0),
        Err(PciError::NoSuchFunction(bdf("05:00.0")))
    );
}

#[test]
fn host_bridge_keeps_decoding_during_sizing() {
    let mut m = FakeMachine::new();
    m.add(
        0,
        0,
        0,
        0,
        FakeFunction::new(0x8086, 0x1237, (0x06, 0x00, 0x00)).bar32(
            0,
            0xe000_0000,
            0x1000,
            false,
            false,
        ),
    );
    let (pci, m) = m.into_pci(true, &[]).unwrap();
    assert_eq!(pci.bars(bdf("00:00.0")).unwrap().bars.len(), 1);
    let s = m.stats();
    assert!(s.sized_while_decoding > 0 && s.sized_safely == 0, "{:?}", s);
}

#[test]
fn decodes_capabilities() {
    let (pci, _) = sample(true, true);
    let caps = pci.capabilities(bdf("00:02.0")).unwrap();
    assert_eq!(caps.problem, None);
    let offsets: Vec<u16> = caps.caps.iter().map(|c| c.offset).collect();
    assert_eq!(offsets, [0x98, 0x84, 0x70, 0x60, 0x50, 0x40]);
    assert_eq!(
        caps.find(id::MSIX).unwrap().kind,
        CapKind::MsiX {
            enabled: true,
            function_mask: false,
            table_size: 2,
            table_bar: 1,
            table_offset: 0,
            pba_bar: 1,
            pba_offset: 0x800
        }
    );
    let virtio: Vec<(VirtioCfgType, u8, u64)> = caps
        .virtio()
        .map(|v| (v.cfg_type, v.bar, v.offset))
        .collect();
    assert_eq!(
        virtio,
        [
            (VirtioCfgType::PciCfg, 0, 0),
            (VirtioCfgType::Notify, 4, 0x3000),
            (VirtioCfgType::Device, 4, 0x2000),
            (VirtioCfgType::Isr, 4, 0x1000),
            (VirtioCfgType::Common, 4, 0),
        ]
    );
    assert_eq!(caps.virtio().nth(1).unwrap().notify_off_multiplier, Some(4));

    let sata = pci.capabilities(bdf("00:1f.2")).unwrap();
    assert!(matches!(
        sata.caps[0].kind,
        CapKind::Msi {
            addr64: true,
            per_vector_mask: false,
            vectors: 1,
            address: 0xfee0_0000,
            data: 0x4021,
            ..
        }
    ));

    let nvme = pci.capabilities(bdf("01:00.0")).unwrap();
    assert!(matches!(
        nvme.caps[0].kind,
        CapKind::PowerManagement {
            version: 3,
            state: 0,
            ..
        }
    ));
    assert!(matches!(
        nvme.caps[1].kind,
        CapKind::MsiX {
            table_size: 64,
            table_offset: 0x2000,
            pba_offset: 0x3000,
            ..
        }
    ));
    assert_eq!(
        nvme.caps[2].kind,
        CapKind::Pcie {
            version: 2,
            port_type: PortType::Endpoint,
            slot: false,
            link: Some(LinkState { speed: 1, width: 1 }),
            max_link: Some(LinkState { speed: 3, width: 4 })
        }
    );
    let rp = pci.capabilities(bdf("00:1c.0")).unwrap();
    assert!(matches!(
        rp.caps[0].kind,
        CapKind::Pcie {
            port_type: PortType::RootPort,
            slot: true,
            ..
        }
    ));
    // A function without the capability-list status bit has none.
    assert!(pci.capabilities(bdf("00:00.0")).unwrap().caps.is_empty());
}

#[test]
fn extended_capabilities_need_ecam() {
    let (mut pci, _) = sample(true, true);
    let ext = pci.ext_capabilities(bdf("01:00.0")).unwrap();
    assert_eq!(ext.caps.len(), 1);
    assert_eq!(
        ext.caps[0].kind,
        caps::ExtCapKind::SerialNumber(0x9abc_def0_1234_5678)
    );
    assert_eq!(pci.function_config_size(bdf("01:00.0")), Ok(4096));
    // Conventional functions read all-ones at 0x100: no extended space, not an error.
    let vga = pci.ext_capabilities(bdf("00:01.0")).unwrap();
    assert!(vga.caps.is_empty() && vga.problem.is_none());
    assert_eq!(pci.function_config_size(bdf("00:01.0")), Ok(256));
    pci.set_mode(AccessMode::Legacy).unwrap();
    assert_eq!(
        pci.ext_capabilities(bdf("01:00.0")),
        Err(PciError::NeedsEcam { off: 0x100 })
    );
    assert_eq!(pci.function_config_size(bdf("01:00.0")), Ok(256));
}

#[test]
fn checked_reads_and_writes() {
    let (mut pci, m) = sample(true, true);
    let blk = bdf("00:02.0");
    assert_eq!(pci.read(blk, 0, Width::Dword), Ok(0x1042_1af4));
    assert_eq!(pci.read(blk, 2, Width::Word), Ok(0x1042));
    assert_eq!(pci.read(blk, 0x0b, Width::Byte), Ok(0x01));
    assert_eq!(
        pci.read(blk, 2, Width::Dword),
        Err(PciError::Misaligned {
            off: 2,
            width: Width::Dword
        })
    );
    assert_eq!(
        pci.read(blk, 0x1000, Width::Byte),
        Err(PciError::OffsetOutOfRange { off: 0x1000 })
    );
    assert_eq!(
        pci.read(bdf("0001:00:00.0"), 0, Width::Dword),
        Err(PciError::NotReachable {
            bdf: bdf("0001:00:00.0"),
            mode: AccessMode::Ecam
        })
    );
    // A missing function reads all-ones, like hardware.
    assert_eq!(pci.read(bdf("00:05.0"), 0, Width::Dword), Ok(u32::MAX));
    pci.write(blk, 0x3c, Width::Byte, 5).unwrap();
    assert_eq!(m.peek32(blk, 0x3c) & 0xff, 5);
    assert_eq!(pci.read(blk, 0x100, Width::Dword), Ok(u32::MAX));
    pci.set_mode(AccessMode::Legacy).unwrap();
    assert_eq!(
        pci.read(blk, 0x100, Width::Dword),
        Err(PciError::NeedsEcam { off: 0x100 })
    );
    assert_eq!(pci.write(blk, 0x3c, Width::Word, 7), Ok(()));
    assert_eq!(pci.read(blk, 0x3c, Width::Byte), Ok(7));
    assert_eq!(pci.read(blk, 0x3d, Width::Byte), Ok(1));
}

#[test]
fn function_config_implements_hal_trait() {
    let (pci, m) = sample(true, true);
    assert!(matches!(
        pci.function(bdf("00:09.0")),
        Err(PciError::NoSuchFunction(_))
    ));
    let f = pci.function(bdf("00:02.0")).unwrap();
    assert_eq!(f.size(), 4096);
    assert_eq!(f.read16(0), 0x1af4);
    assert_eq!(f.read8(0x0b), 0x01);
    assert_eq!(f.read32(0x10), 0);
    f.write16(0x04, 0x0006);
    assert_eq!(m.peek32(bdf("00:02.0"), 0x04) & 0xffff, 0x0006);
    assert_eq!(f.read32(0x1002), u32::MAX, "past the end reads all-ones");
    assert_eq!(f.read32(0x3), u32::MAX, "misaligned reads all-ones");
    let caps = caps::walk(&f, HeaderType::Normal, 0x1af4, 0x1042);
    assert_eq!(caps.virtio().count(), 5);
}

#[test]
fn ecam_window_respects_bus_range_and_segments() {
    let mut m = FakeMachine::new();
    m.add(
        0,
        0x10,
        0,
        0,
        FakeFunction::new(0x8086, 0x29c0, (0x06, 0x00, 0x00)),
    );
    m.add(
        0,
        0x10,
        3,
        0,
        FakeFunction::new(0x1af4, 0x1041, (0x02, 0x00, 0x00)),
    );
    m.add(
        1,
        0,
        0,
        0,
        FakeFunction::new(0x1b36, 0x0008, (0x06, 0x00, 0x00)),
    );
    let (pci, _) = m.into_pci(false, &[(0, 0x10, 0x1f), (1, 0, 0)]).unwrap();
    let t = pci.enumerate();
    assert_eq!(
        addrs(&t),
        [
            bdf("0000:10:00.0"),
            bdf("0000:10:03.0"),
            bdf("0001:00:00.0")
        ]
    );
    assert_eq!(
        pci.read(bdf("20:00.0"), 0, Width::Dword),
        Err(PciError::NotReachable {
            bdf: bdf("20:00.0"),
            mode: AccessMode::Ecam
        })
    );
}

#[test]
fn bad_ecam_regions_are_refused() {
    let r = EcamRegion {
        base: 0xb000_0000,
        segment: 0,
        start_bus: 2,
        end_bus: 1,
    };
    assert!(matches!(r.window(), Err(PciError::BadEcamRegion { .. })));
    let r = EcamRegion {
        base: 0xb000_0010,
        segment: 0,
        start_bus: 0,
        end_bus: 1,
    };
    assert!(matches!(r.window(), Err(PciError::BadEcamRegion { .. })));
    let r = EcamRegion {
        base: !0xfff,
        segment: 0,
        start_bus: 0,
        end_bus: 255,
    };
    assert!(matches!(r.window(), Err(PciError::BadEcamRegion { .. })));
    let r = EcamRegion {
        base: 0xb000_0000,
        segment: 0,
        start_bus: 1,
        end_bus: 2,
    };
    assert_eq!(r.window(), Ok((0xb010_0000, 2 << 20)));
    let overlap = FakeMachine::new().into_pci(false, &[(0, 0, 0x10), (0, 0x10, 0x20)]);
    assert!(matches!(
        overlap,
        Err(PciError::BadEcamRegion {
            why: "overlaps another MCFG window",
            ..
        })
    ));
}

#[test]
fn malformed_topologies_are_reported_not_followed() {
    let mut m = FakeMachine::new();
    m.add(
        0,
        0,
        0,
        0,
        FakeFunction::new(0x8086, 0x29c0, (0x06, 0x00, 0x00)),
    );
    m.add(0, 0, 1, 0, FakeFunction::bridge(0x1b36, 0x0001, 0, 1, 1));
    // Bus 1's bridge points back at bus 0 and at bus 1 itself.
    m.add(0, 1, 0, 0, FakeFunction::bridge(0x1b36, 0x0001, 1, 0x00, 0));
    m.add(0, 1, 1, 0, FakeFunction::bridge(0x1b36, 0x0001, 1, 0x01, 1));
    // Two bridges claim bus 2.
    m.add(0, 0, 2, 0, FakeFunction::bridge(0x1b36, 0x0001, 0, 2, 2));
    m.add(0, 0, 3, 0, FakeFunction::bridge(0x1b36, 0x0001, 0, 2, 2));
    // A bridge beyond the ECAM window.
    m.add(
        0,
        0,
        4,
        0,
        FakeFunction::bridge(0x1b36, 0x0001, 0, 0x40, 0x40),
    );
    m.add(
        0,
        2,
        0,
        0,
        FakeFunction::new(0x1af4, 0x1041, (0x02, 0x00, 0x00)),
    );
    // A device answering all-ones everywhere is absent.
    m.add(
        0,
        0,
        5,
        0,
        FakeFunction::new(0xffff, 0xffff, (0xff, 0xff, 0xff)),
    );
    let (pci, _) = m.into_pci(false, &[(0, 0, 0x3f)]).unwrap();
    let t = pci.enumerate();
    assert_eq!(t.functions.len(), 8);
    assert!(t.get(bdf("00:05.0")).is_none());
    assert_eq!(t.get(bdf("02:00.0")).unwrap().parent, Some(bdf("00:02.0")));
    let p = &t.problems;
    assert!(
        p.contains(&ScanProblem::BridgeUnconfigured {
            bridge: bdf("01:00.0")
        }),
        "{:?}",
        p
    );
    assert!(p.contains(&ScanProblem::SecondaryNotBelow {
        bridge: bdf("01:01.0"),
        secondary: 1
    }));
    assert!(p.contains(&ScanProblem::BusRevisited {
        bridge: bdf("00:03.0"),
        bus: 2
    }));
    assert!(p.contains(&ScanProblem::BusUnreachable {
        bridge: bdf("00:04.0"),
        bus: 0x40
    }));
    assert_eq!(p.len(), 4);
}

#[test]
fn multiple_host_bridges_as_functions_are_roots() {
    let mut m = FakeMachine::new();
    m.add(
        0,
        0,
        0,
        0,
        FakeFunction::new(0x8086, 0x1237, (0x06, 0x00, 0x00)).multifunction(),
    );
    m.add(
        0,
        0,
        0,
        1,
        FakeFunction::new(0x8086, 0x1237, (0x06, 0x00, 0x00)).multifunction(),
    );
    m.add(
        0,
        1,
        2,
        0,
        FakeFunction::new(0x1af4, 0x1041, (0x02, 0x00, 0x00)),
    );
    let (pci, _) = m.into_pci(true, &[]).unwrap();
    let t = pci.enumerate();
    assert_eq!(t.roots.len(), 2);
    assert!(t.get(bdf("01:02.0")).is_some());
}

/// A machine with one function at 00:03.0, for the malformed-BAR and capability tests.
fn one(f: FakeFunction) -> (Pci, Shared) {
    let mut m = FakeMachine::new();
    m.add(0, 0, 3, 0, f);
    m.into_pci(true, &[(0, 0, 0)]).unwrap()
}

fn problems(b: &Bars) -> Vec<(u8, BarError)> {
    b.problems
        .iter()
        .map(|BarProblem { index, error }| (*index, *error))
        .collect()
}

#[test]
fn bad_bar_patterns_are_reported() {
    let mut f = FakeFunction::new(0x1234, 0x5678, (0xff, 0, 0))
        .bar32(0, 0xfe00_0000, 0x1000, false, false)
        .bar32(1, 0xfd00_0000, 0x100, false, false)
        .bar32(3, 0xfc00_0000, 0x100, false, false);
    f.set32(0x14, 0xfd00_0006); // BAR1: memory type 11b
    f.set32(0x18, 0xffff_ffff); // BAR2: all-ones (read-only)
    f.set32(0x1c, 0xfc00_0010); // BAR3: an address bit below the size that does not move
    f.set32(0x20, 0xfb00_0000); // BAR4: an address, read-only
    f.set32(0x24, 0xfa00_0004); // BAR5: 64-bit in the last slot
    let (pci, m) = one(f);
    let b = pci.bars(bdf("00:03.0")).unwrap();
    assert_eq!(
        b.bars,
        [Bar {
            index: 0,
            kind: BarKind::Mem32,
            prefetchable: false,
            addr: 0xfe00_0000,
            size: 0x1000
        }]
    );
    assert_eq!(
        problems(&b),
        [
            (1, BarError::ReservedType),
            (2, BarError::AllOnes),
            (3, BarError::NonContiguousMask { mask: 0xffff_ff10 }),
            (4, BarError::NonContiguousMask { mask: 0xfb00_0000 }),
            (5, BarError::Mem64InLastSlot),
        ]
    );
    assert_eq!(
        m.peek32(bdf("00:03.0"), 0x1c),
        0xfc00_0010,
        "restored after sizing"
    );
    assert_eq!(
        pci.bar(bdf("00:03.0"), 1),
        Err(PciError::BadBar {
            bdf: bdf("00:03.0"),
            index: 1,
            error: BarError::ReservedType
        })
    );
}

#[test]
fn non_contiguous_bar_mask_is_reported() {
    // Write mask 0xfff0f000: bits 12..15 writable, 16..19 stuck at zero, 20..31 writable.
    let mut m = FakeMachine::new();
    m.add(
        0,
        0,
        3,
        0,
        FakeFunction::new(0x1234, 0x5678, (0xff, 0, 0)).bar32(0, 0xfe00_0000, 0x1000, false, false),
    );
    let (pci, shared) = m.into_pci(true, &[]).unwrap();
    {
        let mut g = shared.0.lock();
        g.set_wmask32(bdf("00:03.0"), 0x10, 0xfff0_f000);
    }
    let b = pci.bars(bdf("00:03.0")).unwrap();
    assert_eq!(
        problems(&b),
        [(0, BarError::NonContiguousMask { mask: 0xfff0_f000 })]
    );
}

#[test]
fn io_bar_with_16_bit_decoder() {
    let mut m = FakeMachine::new();
    m.add(
        0,
        0,
        3,
        0,
        FakeFunction::new(0x1234, 0x5678, (0xff, 0, 0)).bar32(0, 0xc000, 0x40, true, false),
    );
    let (pci, shared) = m.into_pci(true, &[]).unwrap();
    shared
        .0
        .lock()
        .set_wmask32(bdf("00:03.0"), 0x10, 0x0000_ffc0);
    let b = pci.bars(bdf("00:03.0")).unwrap();
    assert_eq!(
        b.bars,
        [Bar {
            index: 0,
            kind: BarKind::Io,
            prefetchable: false,
            addr: 0xc000,
            size: 0x40
        }]
    );
}

/// A type 0 function with the capability-list bit set and raw bytes placed at offsets.
fn caps_fn(ptr: u8, raw: &[(usize, &[u8])]) -> FakeFunction {
    let mut f = FakeFunction::new(0x1af4, 0x1041, (0x02, 0, 0)).express();
    f.set16(0x06, 0x10);
    f.set8(0x34, ptr);
    for (off, bytes) in raw {
        f = f.raw(*off, bytes);
    }
    f
}

#[test]
fn capability_loops_and_bad_pointers_stop_the_walk() {
    let (pci, _) = one(caps_fn(
        0x40,
        &[(0x40, &[0x01, 0x50]), (0x50, &[0x05, 0x40])],
    ));
    let c = pci.capabilities(bdf("00:03.0")).unwrap();
    assert_eq!(c.caps.len(), 2);
    assert_eq!(
        c.problem,
        Some(CapError::Loop {
            at: 0x51,
            ptr: 0x40
        })
    );

    let (pci, _) = one(caps_fn(0x40, &[(0x40, &[0x09, 0x40])]));
    let c = pci.capabilities(bdf("00:03.0")).unwrap();
    assert_eq!(
        c.problem,
        Some(CapError::Loop {
            at: 0x41,
            ptr: 0x40
        })
    );

    let (pci, _) = one(caps_fn(0x40, &[(0x40, &[0x01, 0x20])]));
    let c = pci.capabilities(bdf("00:03.0")).unwrap();
    assert_eq!(
        c.problem,
        Some(CapError::PointerTooLow {
            at: 0x41,
            ptr: 0x20
        })
    );

    let (pci, _) = one(caps_fn(0x3c, &[]));
    assert_eq!(
        pci.capabilities(bdf("00:03.0")).unwrap().problem,
        Some(CapError::PointerTooLow {
            at: 0x34,
            ptr: 0x3c
        })
    );

    let (pci, _) = one(caps_fn(0xf0, &[(0xf0, &[0xff, 0xff])]));
    let c = pci.capabilities(bdf("00:03.0")).unwrap();
    assert_eq!(c.problem, Some(CapError::AllOnes { ptr: 0xf0 }));
    assert!(c.caps.is_empty());
}

#[test]
fn malformed_capability_structures_are_flagged() {
    let short_virtio = {
        let mut v = virtio_cap(1, 4, 0, 0x1000, &[]);
        v[2] = 8;
        v
    };
    let (pci, _) = one(caps_fn(
        0x40,
        &[
            // MSI with 64-bit and per-vector masking needs 24 bytes: at 0xf0 it runs off the end.
            (
                0x40,
                &[0x11, 0x50, 0x00, 0x00, 0x07, 0, 0, 0, 0x00, 0x10, 0, 0],
            ),
            (0x50, &[0x09, 0x60, 0x02]),
            (0x60, &[0x09, 0x70]),
            (0x70, &[0x10, 0xf0]),
            (0xf0, &[0x05, 0x00, 0x80, 0x01]),
        ],
    ));
    let c = pci.capabilities(bdf("00:03.0")).unwrap();
    assert_eq!(c.problem, None);
    let kinds: Vec<CapKind> = c.caps.iter().map(|c| c.kind).collect();
    assert_eq!(kinds[0], CapKind::Malformed("reserved MSI-X BAR indicator"));
    assert_eq!(
        kinds[1],
        CapKind::Malformed("vendor capability shorter than its header")
    );
    assert_eq!(
        kinds[2],
        CapKind::Malformed("vendor capability shorter than its header")
    );
    assert!(matches!(kinds[3], CapKind::Pcie { .. }));
    assert_eq!(kinds[4], CapKind::Malformed("extends past offset 0xff"));

    let (pci, _) = one(caps_fn(0x40, &[(0x40, &short_virtio)]));
    let c = pci.capabilities(bdf("00:03.0")).unwrap();
    assert_eq!(
        c.caps[0].kind,
        CapKind::Malformed("virtio capability shorter than 16 bytes")
    );
}

#[test]
fn extended_capability_malformations() {
    // 0x100 -> 0x140 -> 0x100: a loop.
    let f = caps_fn(0, &[]).ext_caps(&[(0x100, 0x0001, 1, &[]), (0x140, 0x000d, 1, &[])]);
    let mut f = f;
    f.set32(0x140, 0x000d | 1 << 16 | 0x100 << 20);
    let (pci, _) = one(f);
    let e = pci.ext_capabilities(bdf("00:03.0")).unwrap();
    assert_eq!(e.caps.len(), 2);
    assert_eq!(
        e.problem,
        Some(CapError::Loop {
            at: 0x140,
            ptr: 0x100
        })
    );

    let mut f = caps_fn(0, &[]);
    f.set32(0x100, 0x0001 | 1 << 16 | 0x080 << 20);
    let (pci, _) = one(f);
    let e = pci.ext_capabilities(bdf("00:03.0")).unwrap();
    assert_eq!(
        e.problem,
        Some(CapError::PointerTooLow {
            at: 0x100,
            ptr: 0x80
        })
    );

    let mut f = caps_fn(0, &[]);
    f.set32(0x100, 0x0001 | 1 << 16 | 0x200 << 20);
    f.set32(0x200, u32::MAX);
    let (pci, _) = one(f);
    let e = pci.ext_capabilities(bdf("00:03.0")).unwrap();
    assert_eq!(e.problem, Some(CapError::AllOnes { ptr: 0x200 }));

    // A serial number capability at the very end does not fit.
    let mut f = caps_fn(0, &[]);
    f.set32(0x100, 0x0001 | 1 << 16 | 0xffc << 20);
    f.set32(0xffc, 0x0003 | 1 << 16);
    let (pci, _) = one(f);
    let e = pci.ext_capabilities(bdf("00:03.0")).unwrap();
    assert_eq!(
        e.caps[1].kind,
        caps::ExtCapKind::Malformed("extends past offset 0xfff")
    );
}
