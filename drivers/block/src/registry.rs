//! The block devices of the machine under stable names, with their GPT partitions as child
//! devices listed right after them.
use crate::gpt::{self, Gpt, GptError, GptPartition};
use crate::partition::{self, Partition, SharedDevice};
use crate::{BlkError, BlockDevice};
use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// How a whole device is named: the n-th device of a kind (counting from 0) gets
/// `vd` + letters (`vda`, ..., `vdz`, `vdaa`), `sd` + letters for SATA disks, `nvme{n}n1`,
/// `cd{n}` or `ram{n}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Virtio,
    Nvme,
    Cdrom,
    Ram,
    Sata,
}

impl Kind {
    const ALL: [Kind; 5] = [Kind::Virtio, Kind::Nvme, Kind::Cdrom, Kind::Ram, Kind::Sata];

    fn name(self, n: u32) -> String {
        // Like Linux: a..z, then aa..zz, ... (bijective base 26).
        let letters = |prefix: &str| {
            let mut letters = Vec::new();
            let mut n = n as u64 + 1;
            while n > 0 {
                n -= 1;
                letters.push(b'a' + (n % 26) as u8);
                n /= 26;
            }
            letters.iter().rev().fold(String::from(prefix), |mut s, c| {
                s.push(*c as char);
                s
            })
        };
        match self {
            Kind::Virtio => letters("vd"),
            Kind::Sata => letters("sd"),
            Kind::Nvme => format!("nvme{}n1", n),
            Kind::Cdrom => format!("cd{}", n),
            Kind::Ram => format!("ram{}", n),
        }
    }
}

/// The name of partition `number` of device `parent`: `vda1`, or `nvme0n1p1` when the parent's
/// name ends in a digit.
pub fn partition_name(parent: &str, number: u32) -> String {
    if parent.ends_with(|c: char| c.is_ascii_digit()) {
        format!("{}p{}", parent, number)
    } else {
        format!("{}{}", parent, number)
    }
}

/// What the last partition scan of a whole device found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableState {
    /// Not scanned yet (always the case for partitions).
    NotScanned,
    /// The device has no GPT.
    Absent(GptError),
    /// A GPT was read (its partitions are the child entries).
    Gpt(Gpt),
    /// A GPT is there but unusable, or reading it failed.
    Corrupt(GptError),
}

/// One device in the registry.
pub struct Entry {
    pub name: String,
    pub dev: SharedDevice,
    /// For a partition: the parent's name and its GPT entry.
    pub partition: Option<(String, GptPartition)>,
    /// For a whole device: what its last scan found.
    pub table: TableState,
}

impl Entry {
    pub fn is_partition(&self) -> bool {
        self.partition.is_some()
    }
}

/// Why `scan_partitions` did not produce a partition list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanError {
    NoSuchDevice(String),
    /// Partitions are not scanned for partition tables.
    IsPartition(String),
    /// No GPT, or a corrupt one (`GptError::is_absent` tells which).
    Gpt(GptError),
    /// A partition entry could not be attached (only if the device shrank under us).
    Attach(BlkError),
}

impl fmt::Display for ScanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScanError::NoSuchDevice(n) => write!(f, "no such block device '{}'", n),
            ScanError::IsPartition(n) => write!(f, "{} is a partition, not a whole device", n),
            ScanError::Gpt(e) if e.is_absent() => write!(f, "no GPT: {}", e),
            ScanError::Gpt(e) => write!(f, "corrupt GPT: {}", e),
            ScanError::Attach(e) => write!(f, "cannot attach partition: {}", e),
        }
    }
}

/// What a successful scan found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanReport {
    /// Names of the partitions now registered, in entry order.
    pub partitions: Vec<String>,
    /// Set when the primary GPT was rejected and the backup used.
    pub primary_error: Option<GptError>,
    /// Entries not exposed, with the reason.
    pub skipped: Vec<(u32, gpt::EntryProblem)>,
}

/// All block devices, in the order they were added; partitions follow their device.
#[derive(Default)]
pub struct Registry {
    entries: Vec<Entry>,
    added: [u32; 5],
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a whole device and returns its name. Does no I/O: call `scan_partitions`
    /// to look for a GPT.
    pub fn add(&mut self, kind: Kind, dev: Box<dyn BlockDevice>) -> String {
        let slot = Kind::ALL.iter().position(|k| *k == kind).unwrap_or(0);
        let mut n = self.added.get(slot).copied().unwrap_or(0);
        // Skip a name taken some other way (cannot happen today; keeps names unique anyway).
        let mut name = kind.name(n);
        while self.entry(&name).is_some() {
            n += 1;
            name = kind.name(n);
        }
        if let Some(c) = self.added.get_mut(slot) {
            *c = n + 1;
        }
        self.entries.push(Entry {
            name: name.clone(),
            dev: partition::share(dev),
            partition: None,
            table: TableState::NotScanned,
        });
        name
    }

    /// Registers a whole device under a name its driver chose (`nvme0n3`: namespace 3 of
    /// controller 0); refused (`None`) if the name is taken. Does no I/O.
    pub fn add_named(&mut self, name: &str, dev: Box<dyn BlockDevice>) -> Option<String> {
        if name.is_empty() || self.entry(name).is_some() {
            return None;
        }
        self.entries.push(Entry {
            name: String::from(name),
            dev: partition::share(dev),
            partition: None,
            table: TableState::NotScanned,
        });
        Some(String::from(name))
    }

    /// Every device, whole devices in the order added, each followed by its partitions.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub fn entry(&self, name: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.name == name)
    }

    /// A handle to the device called `name` (whole device or partition).
    pub fn get(&self, name: &str) -> Option<SharedDevice> {
        self.entry(name).map(|e| e.dev.clone())
    }

    /// The partitions currently registered on `name`.
    pub fn partitions_of<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Entry> + 'a {
        self.entries
            .iter()
            .filter(move |e| e.partition.as_ref().is_some_and(|(p, _)| p == name))
    }

    /// Re-reads the GPT of whole device `name` and replaces its partition entries. On any
    /// error the device is left without partitions and its `table` says why.
    pub fn scan_partitions(&mut self, name: &str) -> Result<ScanReport, ScanError> {
        let at = self
            .entries
            .iter()
            .position(|e| e.name == name)
            .ok_or_else(|| ScanError::NoSuchDevice(String::from(name)))?;
        if self.entries.get(at).is_some_and(Entry::is_partition) {
            return Err(ScanError::IsPartition(String::from(name)));
        }
        self.entries
            .retain(|e| !e.partition.as_ref().is_some_and(|(p, _)| p == name));
        let parent = match self.entries.get(at) {
            Some(e) => e.dev.clone(),
            None => return Err(ScanError::NoSuchDevice(String::from(name))),
        };
        let result = match partition::borrow(&parent) {
            Ok(mut d) => gpt::read(&mut **d),
            Err(e) => Err(GptError::Io(e)),
        };
        let (table, outcome) = match result {
            Ok(g) => {
                let mut children = Vec::new();
                for p in &g.partitions {
                    let dev = match Partition::new(parent.clone(), p.first_lba, p.sectors()) {
                        Ok(d) => d,
                        Err(e) => {
                            self.set_table(at, TableState::Corrupt(GptError::Io(e.clone())));
                            return Err(ScanError::Attach(e));
                        }
                    };
                    children.push(Entry {
                        name: partition_name(name, p.number),
                        dev: partition::share(Box::new(dev)),
                        partition: Some((String::from(name), p.clone())),
                        table: TableState::NotScanned,
                    });
                }
                let report = ScanReport {
                    partitions: children.iter().map(|c| c.name.clone()).collect(),
                    primary_error: g.primary_error.clone(),
                    skipped: g.skipped.clone(),
                };
                let tail = self.entries.split_off(at + 1);
                self.entries.extend(children);
                self.entries.extend(tail);
                (TableState::Gpt(g), Ok(report))
            }
            Err(e) if e.is_absent() => (TableState::Absent(e.clone()), Err(ScanError::Gpt(e))),
            Err(e) => (TableState::Corrupt(e.clone()), Err(ScanError::Gpt(e))),
        };
        self.set_table(at, table);
        outcome
    }

    fn set_table(&mut self, at: usize, table: TableState) {
        if let Some(e) = self.entries.get_mut(at) {
            e.table = table;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpt::build;
    use crate::gpt::Guid;
    use crate::{Pattern, RamDisk};
    use alloc::vec;

    #[test]
    fn names_are_stable_and_per_kind() {
        let mut r = Registry::new();
        let ram = || Box::new(RamDisk::new(4096, 512).unwrap()) as Box<dyn BlockDevice>;
        assert_eq!(r.add(Kind::Virtio, ram()), "vda");
        assert_eq!(r.add(Kind::Ram, ram()), "ram0");
        assert_eq!(r.add(Kind::Virtio, ram()), "vdb");
        assert_eq!(r.add(Kind::Nvme, ram()), "nvme0n1");
        assert_eq!(r.add(Kind::Cdrom, ram()), "cd0");
        let names: Vec<_> = r.entries().iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["vda", "ram0", "vdb", "nvme0n1", "cd0"]);
        assert_eq!(Kind::Virtio.name(25), "vdz");
        assert_eq!(Kind::Virtio.name(26), "vdaa");
        assert_eq!(Kind::Virtio.name(27), "vdab");
        assert_eq!(partition_name("vda", 2), "vda2");
        assert_eq!(partition_name("nvme0n1", 1), "nvme0n1p1");
        assert!(r.get("vdz").is_none());
        assert_eq!(r.add_named("nvme1n3", ram()).as_deref(), Some("nvme1n3"));
        assert_eq!(
            r.add_named("nvme1n3", ram()),
            None,
            "a taken name is refused"
        );
        assert_eq!(r.add_named("", ram()), None);
    }

    fn gpt_image(ss: usize, sectors: usize) -> Vec<u8> {
        build::sample_two_partitions(ss, sectors, Guid([9; 16]))
    }

    #[test]
    fn partitions_follow_their_device_and_are_bounded() {
        for ss in [512usize, 4096] {
            let mut r = Registry::new();
            r.add(Kind::Virtio, Box::new(RamDisk::new(4096, 512).unwrap()));
            let nv = r.add(
                Kind::Nvme,
                Box::new(RamDisk::from_image(gpt_image(ss, 256), ss as u32).unwrap()),
            );
            r.add(Kind::Ram, Box::new(RamDisk::new(4096, 512).unwrap()));
            let rep = r.scan_partitions(&nv).unwrap();
            assert_eq!(rep.partitions, ["nvme0n1p1", "nvme0n1p2"]);
            assert_eq!(rep.primary_error, None);
            let names: Vec<_> = r.entries().iter().map(|e| e.name.as_str()).collect();
            assert_eq!(names, ["vda", "nvme0n1", "nvme0n1p1", "nvme0n1p2", "ram0"]);

            let p2 = r.get("nvme0n1p2").unwrap();
            assert_eq!(p2.borrow().capacity(), 40);
            let mut buf = vec![0u8; ss];
            // The last sector of the partition is fine, one past it is refused.
            p2.borrow_mut().write(39, &buf).unwrap();
            assert_eq!(
                p2.borrow_mut().write(40, &buf),
                Err(BlkError::OutOfRange {
                    lba: 40,
                    count: 1,
                    capacity: 40
                })
            );
            assert!(p2.borrow_mut().read(u64::MAX, &mut buf).is_err());
            // Writes land at the partition's offset on the parent.
            Pattern::Byte(0x5a).fill(0, &mut buf);
            p2.borrow_mut().write(0, &buf).unwrap();
            let whole = r.get(&nv).unwrap();
            let mut back = vec![0u8; ss];
            whole.borrow_mut().read(60, &mut back).unwrap();
            assert_eq!(back, buf);
            whole.borrow_mut().read(59, &mut back).unwrap();
            assert!(back.iter().all(|b| *b == 0), "partition 1 untouched");

            // Rescanning replaces, never duplicates; scanning a partition is refused.
            r.scan_partitions(&nv).unwrap();
            assert_eq!(r.partitions_of(&nv).count(), 2);
            assert_eq!(
                r.scan_partitions("nvme0n1p1"),
                Err(ScanError::IsPartition("nvme0n1p1".into()))
            );
            assert_eq!(
                r.scan_partitions("vdq"),
                Err(ScanError::NoSuchDevice("vdq".into()))
            );
        }
    }

    #[test]
    fn absent_and_corrupt_tables_leave_no_partitions() {
        let mut r = Registry::new();
        let blank = r.add(Kind::Ram, Box::new(RamDisk::new(64 * 1024, 512).unwrap()));
        assert!(matches!(r.scan_partitions(&blank), Err(ScanError::Gpt(e)) if e.is_absent()));
        assert!(matches!(
            r.entry(&blank).unwrap().table,
            TableState::Absent(_)
        ));

        let mut img = gpt_image(512, 256);
        img[512 + 60] ^= 1; // a disk GUID byte: inside the CRC'd header
        img[255 * 512 + 60] ^= 1; // same in the backup
        let bad = r.add(
            Kind::Virtio,
            Box::new(RamDisk::from_image(img, 512).unwrap()),
        );
        let e = r.scan_partitions(&bad).unwrap_err();
        assert!(
            matches!(&e, ScanError::Gpt(GptError::BothInvalid { .. })),
            "{:?}",
            e
        );
        assert!(
            alloc::format!("{}", e).starts_with("corrupt GPT: primary and backup GPT both invalid")
        );
        assert_eq!(r.partitions_of(&bad).count(), 0);
    }
}
