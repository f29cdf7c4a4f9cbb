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

fn open_secondary_master(ide: &'static FakeIde) -> AtapiCd {
    let clock = FakeClock::leaked(1000);
    let found = probe(ide, clock, &[PRIMARY, SECONDARY]);
    let f = found
        .iter()
        .find(|f| f.channel == SECONDARY && !f.slave)
        .unwrap();
    AtapiCd::open(ide, clock, SECONDARY, false, f.identify.clone().unwrap()).unwrap()
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
    let img = image(100);
    let ide = FakeIde::leaked([None, None, Some(cd(img.clone())), None]);
    let mut d = open_secondary_master(ide);
    assert_eq!(
        (d.capacity(), d.sector_size(), d.read_only()),
        (100, 2048, true)
    );
    assert_eq!(d.info().model.as_deref(), Some("FAKE DVD-ROM"));
    // 70 blocks: three READ commands (32 + 32 + 6), each in several DRQ blocks.
    let mut buf = vec![0u8; 70 * 2048];
    d.read(20, &mut buf).unwrap();
    assert_eq!(buf[..], img[20 * 2048..90 * 2048]);
    let reads = ide.ops().iter().filter(|o| **o == 0xa8).count();
    assert_eq!(reads, 3);
    // Small DRQ blocks (a drive may send less than the limit): still whole.
    ide.with_cd(2, |c| c.max_drq = 512);
    let mut b = vec![0u8; 3 * 2048];
    d.read(97, &mut b).unwrap();
    assert_eq!(b[..], img[97 * 2048..]);
    assert!(matches!(
        d.read(99, &mut b),
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
    match AtapiCd::open(ide, clock, SECONDARY, false, f.identify.unwrap()) {
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
