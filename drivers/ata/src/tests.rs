use crate::fake::{cd, Drive, FakeIde};
use crate::*;
use alloc::string::ToString;
use alloc::vec;
use alloc::vec::Vec;
use capmon_block::{BlkError, BlockDevice};
use capmon_hal::fake::FakeClock;

fn image(blocks: usize) -> Vec<u8> {
    (0..blocks * 2048)
        .map(|i| ((i / 2048) as u8) ^ (i as u8).wrapping_mul(31))
        .collect()
}

fn open_secondary_master(ide: &'static FakeIde) -> AtapiCd<IdePacket> {
    let clock = FakeClock::leaked(1000);
    let found = probe(ide, clock, &[PRIMARY, SECONDARY]);
    let f = found
        .iter()
        .find(|f| f.channel == SECONDARY && !f.slave)
        .unwrap();
    let t = IdePacket::new(ide, clock, SECONDARY, false);
    AtapiCd::open(t, clock, f.identify.clone().unwrap()).unwrap()
}

#[test]
fn probe_finds_what_sits_on_each_channel_by_its_signature() {
    let ide = FakeIde::leaked([Some(Drive::AtaDisk), None, Some(cd(image(4))), None]);
    let clock = FakeClock::leaked(1000);
    let found = probe(ide, clock, &[PRIMARY, SECONDARY]);
    assert_eq!(found.len(), 2, "{:?}", found);
    assert_eq!(
        (found[0].channel, found[0].slave, found[0].kind),
        (PRIMARY, false, DevKind::Ata)
    );
    assert_eq!(found[0].identify.as_ref().unwrap().model, "FAKE HARDDISK");
    let c = &found[1];
    assert_eq!(
        (c.channel, c.slave, c.kind),
        (SECONDARY, false, DevKind::Atapi)
    );
    let id = c.identify.as_ref().unwrap();
    assert_eq!(
        (id.model.as_str(), id.serial.as_str(), id.firmware.as_str()),
        ("FAKE DVD-ROM", "CD1", "2.5+")
    );
    assert_eq!((id.packet_bytes, id.device_type), (12, 5));
    assert!(ide.violations().is_empty(), "{:?}", ide.violations());
    // Nothing anywhere: nothing found, quickly.
    let none = FakeIde::leaked([None, None, None, None]);
    assert!(probe(none, clock, &[PRIMARY, SECONDARY]).is_empty());
}

#[test]
fn reads_come_back_whole_across_drq_blocks_and_chunks() {
    let img = image(300);
    let ide = FakeIde::leaked([None, None, Some(cd(img.clone())), None]);
    let mut d = open_secondary_master(ide);
    assert_eq!(
        (d.capacity(), d.sector_size(), d.read_only()),
        (300, 2048, true)
    );
    assert_eq!(d.info().model.as_deref(), Some("FAKE DVD-ROM"));
    // 270 blocks: three READ commands (128 + 128 + 14), each in several DRQ blocks.
    let mut buf = vec![0u8; 270 * 2048];
    d.read(20, &mut buf).unwrap();
    assert_eq!(buf[..], img[20 * 2048..290 * 2048]);
    let reads = ide.ops().iter().filter(|o| **o == 0xa8).count();
    assert_eq!(reads, 3);
    // Small DRQ blocks (a drive may send less than the limit): still whole.
    ide.with_cd(2, |c| c.max_drq = 512);
    let mut b = vec![0u8; 3 * 2048];
    d.read(297, &mut b).unwrap();
    assert_eq!(b[..], img[297 * 2048..]);
    assert!(matches!(
        d.read(299, &mut b),
        Err(BlkError::OutOfRange { .. })
    ));
    assert_eq!(d.write(0, &b), Err(BlkError::ReadOnly));
    assert!(ide.violations().is_empty(), "{:?}", ide.violations());
}

#[test]
fn unit_attention_and_becoming_ready_are_retried_and_other_sense_reported() {
    let img = image(8);
    let ide = FakeIde::leaked([None, None, Some(cd(img.clone())), None]);
    ide.with_cd(2, |c| {
        c.unit_attentions = 2;
        c.becoming_ready = 3;
    });
    let mut d = open_secondary_master(ide);
    assert_eq!(d.unit_attentions, 2);
    ide.with_cd(2, |c| c.unit_attentions = 1);
    let mut b = vec![0u8; 2048];
    d.read(3, &mut b).unwrap();
    assert_eq!(b[..], img[3 * 2048..4 * 2048]);
    assert_eq!(d.unit_attentions, 3);
    // A drive without READ(12): READ(10) from then on.
    ide.with_cd(2, |c| c.no_read12 = true);
    d.read(5, &mut b).unwrap();
    assert_eq!(b[..], img[5 * 2048..6 * 2048]);
    d.read(6, &mut b).unwrap();
    let ops = ide.ops();
    assert_eq!(ops[ops.len() - 4..], [0xa8, 0x03, 0x28, 0x28]);
    // No medium: the sense data named.
    ide.with_cd(2, |c| c.no_medium = true);
    match d.read(0, &mut b) {
        Err(BlkError::Other(m)) => {
            assert!(m.contains("no medium (sense key 0x2, ASC 0x3a"), "{}", m)
        }
        other => panic!("{:?}", other),
    }
    // Endless UNIT ATTENTION is given up on.
    ide.with_cd(2, |c| {
        c.no_medium = false;
        c.unit_attentions = 100;
    });
    match d.read(0, &mut b) {
        Err(BlkError::Other(m)) => assert!(m.contains("unit attention"), "{}", m),
        other => panic!("{:?}", other),
    }
    assert!(ide.violations().is_empty(), "{:?}", ide.violations());
}

#[test]
fn a_drive_with_no_medium_does_not_open() {
    let ide = FakeIde::leaked([None, None, Some(cd(image(8))), None]);
    ide.with_cd(2, |c| c.no_medium = true);
    let clock = FakeClock::leaked(1000);
    let f = probe(ide, clock, &[SECONDARY]).remove(0);
    match AtapiCd::open(
        IdePacket::new(ide, clock, SECONDARY, false),
        clock,
        f.identify.unwrap(),
    ) {
        Err(
            e @ AtaError::Sense {
                key: 2, asc: 0x3a, ..
            },
        ) => {
            assert!(e.to_string().contains("no medium"))
        }
        Err(e) => panic!("{}", e),
        Ok(_) => panic!("opened"),
    }
}

mod ahci_tests {
    use crate::ahci::{self, AhciDisk};
    use crate::fake_ahci::{Dev, FakeAhci, Window};
    use crate::*;
    use alloc::boxed::Box;
    use alloc::vec;
    use alloc::vec::Vec;
    use capmon_block::{BlkError, BlockDevice};
    use capmon_hal::fake::{FakeClock, FakeDma};

    fn pattern(n: usize, seed: u8) -> Vec<u8> {
        (0..n)
            .map(|i| (i as u8).wrapping_mul(7) ^ seed ^ (i >> 9) as u8)
            .collect()
    }

    #[test]
    fn ports_with_a_disk_and_a_drive_are_found_and_read_and_written() {
        let dma = FakeDma::leaked();
        let clock = FakeClock::leaked(1000);
        let disk = pattern(4 << 20, 3);
        let cd = pattern(300 * 2048, 9);
        let hba = FakeAhci::leaked(
            vec![
                Some(Dev::Disk(disk.clone())),
                None,
                Some(Dev::Cd {
                    image: cd.clone(),
                    unit_attentions: 1,
                    sense: (0, 0, 0),
                }),
            ],
            dma,
        );
        let (h, ports) = ahci::probe(Box::new(Window(hba)), dma, clock);
        assert_eq!((h.ports(), h.slots()), (3, 32));
        assert_eq!(ports.len(), 3);
        assert_eq!(ports[1].kind, None, "an empty port");
        assert!(ports[1].handle.is_none());
        let mut it = ports.into_iter();
        let p0 = it.next().unwrap();
        let _ = it.next();
        let p2 = it.next().unwrap();
        assert_eq!((p0.kind, p0.sig), (Some(DevKind::Sata), ahci::SIG_ATA));
        let id = p0.identify.unwrap();
        assert_eq!(id.model, "FAKE SATA DISK");
        let mut d = AhciDisk::new(p0.handle.unwrap(), id).unwrap();
        assert_eq!((d.capacity(), d.sector_size()), (8192, 512));
        // 300 KiB: several commands of the 64 KiB buffer.
        let mut buf = vec![0u8; 300 << 10];
        d.read(100, &mut buf).unwrap();
        assert_eq!(buf[..], disk[100 * 512..100 * 512 + (300 << 10)]);
        let new = pattern(200 << 10, 77);
        d.write(5000, &new).unwrap();
        d.flush().unwrap();
        assert_eq!(hba.disk(0)[5000 * 512..5000 * 512 + new.len()], new[..]);
        assert!(matches!(
            d.read(8190, &mut buf[..4096]),
            Err(BlkError::OutOfRange { .. })
        ));
        // A failed command is reported and the port goes on after it is restarted.
        hba.st.lock().unwrap().fail_next = Some((0, 0x40));
        match d.read(0, &mut buf[..512]) {
            Err(BlkError::Other(m)) => {
                assert!(m.contains("aborted (error register 0x40)"), "{}", m)
            }
            other => panic!("{:?}", other),
        }
        assert_eq!(d.port().recoveries, 1);
        d.read(0, &mut buf[..512]).unwrap();
        assert_eq!(buf[..512], disk[..512]);

        assert_eq!((p2.kind, p2.sig), (Some(DevKind::Satapi), ahci::SIG_ATAPI));
        let id = p2.identify.unwrap();
        let mut c = AtapiCd::open(p2.handle.unwrap(), clock, id).unwrap();
        assert_eq!(c.unit_attentions, 1);
        assert_eq!((c.capacity(), c.sector_size()), (300, 2048));
        assert_eq!(c.info().driver, "ahci-atapi");
        let mut b = vec![0u8; 70 * 2048];
        c.read(200, &mut b).unwrap();
        assert_eq!(b[..], cd[200 * 2048..270 * 2048]);
        match c.read(299, &mut b[..4096]) {
            Err(BlkError::OutOfRange { .. }) => {}
            other => panic!("{:?}", other),
        }
        assert!(hba.violations().is_empty(), "{:?}", hba.violations());
    }
}
