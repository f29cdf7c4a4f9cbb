//! An image file as a `BlockDevice`, and the capmon data partition inside it: found through
//! capmon-block's GPT reader and reached through its `Partition` window, as the kernel does.
use capmon_block::partition;
use capmon_block::{check_request, gpt, BlkError, BlkInfo, BlockDevice, GptPartition, Partition};
use capmon_storage::session::SharedDev;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Sectors of an image file: 512 bytes, like the disks QEMU makes of a raw image.
pub const SECTOR: u32 = 512;

/// A file of 512-byte sectors. Opened read-only, it refuses every write before the file sees
/// it (and the OS would refuse it too). A tail shorter than a sector is not part of the device.
pub struct FileDisk {
    file: File,
    sectors: u64,
    read_only: bool,
}

impl FileDisk {
    pub fn open(path: &Path, writable: bool) -> std::io::Result<FileDisk> {
        let file = OpenOptions::new().read(true).write(writable).open(path)?;
        let len = file.metadata()?.len();
        Ok(FileDisk {
            file,
            sectors: len / u64::from(SECTOR),
            read_only: !writable,
        })
    }
}

fn io_error(e: std::io::Error) -> BlkError {
    BlkError::Other(format!("image file: {}", e))
}

impl BlockDevice for FileDisk {
    fn sector_size(&self) -> u32 {
        SECTOR
    }
    fn capacity(&self) -> u64 {
        self.sectors
    }
    fn read_only(&self) -> bool {
        self.read_only
    }
    fn info(&self) -> BlkInfo {
        BlkInfo {
            driver: "file",
            model: None,
            serial: None,
        }
    }
    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), BlkError> {
        check_request(lba, buf.len(), SECTOR, self.sectors)?;
        self.file
            .read_exact_at(buf, lba * u64::from(SECTOR))
            .map_err(io_error)
    }
    fn write(&mut self, lba: u64, buf: &[u8]) -> Result<(), BlkError> {
        check_request(lba, buf.len(), SECTOR, self.sectors)?;
        if self.read_only {
            return Err(BlkError::ReadOnly);
        }
        self.file
            .write_all_at(buf, lba * u64::from(SECTOR))
            .map_err(io_error)
    }
    fn flush(&mut self) -> Result<(), BlkError> {
        if self.read_only {
            return Ok(());
        }
        self.file.sync_data().map_err(io_error)
    }
}

/// Where the store lives in the image file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// A whole disk with a GPT: partition `Some(N)` (GPT entry N), or the first of type
    /// capmon data.
    Gpt(Option<u32>),
    /// The file is the partition.
    Raw,
}

/// The data partition of an image, ready for `backend`/`disk`.
pub struct Target {
    /// The partition as a device the storage code can own (it wants `Send`).
    pub dev: SharedDev,
    /// How messages name it: `IMAGE partition N`, or `IMAGE` for a bare partition.
    pub name: String,
    /// The GPT entry, for a partition of a whole disk.
    pub entry: Option<GptPartition>,
    pub bytes: u64,
}

/// Opens `path` (read-only unless `writable`) and finds its data partition.
pub fn open(path: &Path, layout: Layout, writable: bool) -> Result<Target, String> {
    let shown = path.display().to_string();
    let disk = FileDisk::open(path, writable).map_err(|e| format!("{}: {}", shown, e))?;
    if disk.capacity() == 0 {
        return Err(format!(
            "{}: the image is empty (no whole 512-byte sector)",
            shown
        ));
    }
    let disk = partition::share(Box::new(disk));
    let (part, name, entry) = match layout {
        Layout::Raw => (disk, shown, None),
        Layout::Gpt(want) => {
            let table = {
                let mut d = partition::borrow(&disk).map_err(|e| e.to_string())?;
                gpt::read(&mut **d)
            };
            let table = match table {
                Ok(t) => t,
                Err(e) if e.is_absent() => {
                    return Err(format!(
                        "{}: no GPT ({}); use --raw for an image of a bare partition",
                        shown, e
                    ))
                }
                Err(e) => return Err(format!("{}: corrupt GPT: {}", shown, e)),
            };
            let p = pick(&table.partitions, want).map_err(|e| format!("{}: {}", shown, e))?;
            let window = Partition::new(disk, p.first_lba, p.sectors()).map_err(|e| {
                format!(
                    "{}: partition {} (LBA {}..={}) does not fit the image: {}",
                    shown, p.number, p.first_lba, p.last_lba, e
                )
            })?;
            let name = format!("{} partition {}", shown, p.number);
            (partition::share(Box::new(window)), name, Some(p))
        }
    };
    let bytes = {
        let d = partition::borrow(&part).map_err(|e| e.to_string())?;
        d.capacity() * u64::from(d.sector_size())
    };
    Ok(Target {
        // SharedDev's `Send` rests on one thread touching the device at a time: this tool
        // has one thread.
        dev: SharedDev::new(part),
        name,
        entry,
        bytes,
    })
}

/// GPT entry `want`, which must be a capmon data partition, or the first capmon data partition.
fn pick(parts: &[GptPartition], want: Option<u32>) -> Result<GptPartition, String> {
    match want {
        None => parts
            .iter()
            .find(|p| p.type_guid == gpt::CAPMON_DATA)
            .cloned()
            .ok_or_else(|| {
                format!(
                    "no capmon data partition (type {}) in the GPT; --part N names one",
                    gpt::CAPMON_DATA
                )
            }),
        Some(n) => {
            let p = parts
                .iter()
                .find(|p| p.number == n)
                .ok_or_else(|| format!("the GPT has no partition {}", n))?;
            if p.type_guid != gpt::CAPMON_DATA {
                return Err(format!(
                    "partition {} is of type {} ({}), not capmon data ({})",
                    n,
                    p.type_guid,
                    p.type_name().unwrap_or("unknown"),
                    gpt::CAPMON_DATA
                ));
            }
            Ok(p.clone())
        }
    }
}
