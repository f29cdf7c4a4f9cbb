//! A RAM disk: sectors in ordinary heap memory.
use crate::{check_request, BlkError, BlkInfo, BlockDevice};
use alloc::vec::Vec;

pub struct RamDisk {
    data: Vec<u8>,
    sector_size: u32,
    read_only: bool,
}

impl RamDisk {
    /// A zero-filled disk of `bytes` bytes. `bytes` must be a non-zero multiple of
    /// `sector_size`, itself a power of two of at least 512; `NoMemory` if the heap cannot
    /// hold it (never an allocation abort).
    pub fn new(bytes: u64, sector_size: u32) -> Result<Self, BlkError> {
        let len = usize::try_from(bytes).map_err(|_| BlkError::NoMemory)?;
        Self::check_geometry(len, sector_size)?;
        let mut data = Vec::new();
        data.try_reserve_exact(len)
            .map_err(|_| BlkError::NoMemory)?;
        data.resize(len, 0);
        Ok(RamDisk {
            data,
            sector_size,
            read_only: false,
        })
    }

    /// A disk holding `image` (same rules on its length as `new`).
    pub fn from_image(image: Vec<u8>, sector_size: u32) -> Result<Self, BlkError> {
        Self::check_geometry(image.len(), sector_size)?;
        Ok(RamDisk {
            data: image,
            sector_size,
            read_only: false,
        })
    }

    fn check_geometry(len: usize, sector_size: u32) -> Result<(), BlkError> {
        let ss = sector_size as usize;
        if sector_size < 512
            || !sector_size.is_power_of_two()
            || len == 0
            || !len.is_multiple_of(ss)
        {
            return Err(BlkError::BadBuffer { len, sector_size });
        }
        Ok(())
    }

    /// Makes the disk refuse (or accept again) writes.
    pub fn set_read_only(&mut self, ro: bool) {
        self.read_only = ro;
    }

    /// The whole disk's contents.
    pub fn image(&self) -> &[u8] {
        &self.data
    }

    /// The byte range of a checked request.
    fn span(&self, lba: u64, len: usize) -> Result<core::ops::Range<usize>, BlkError> {
        check_request(lba, len, self.sector_size, self.capacity())?;
        // Inside the disk (checked above), so it fits in usize like the Vec does.
        let start = lba as usize * self.sector_size as usize;
        Ok(start..start + len)
    }
}

impl BlockDevice for RamDisk {
    fn sector_size(&self) -> u32 {
        self.sector_size
    }

    fn capacity(&self) -> u64 {
        (self.data.len() / self.sector_size as usize) as u64
    }

    fn read_only(&self) -> bool {
        self.read_only
    }

    fn info(&self) -> BlkInfo {
        BlkInfo {
            driver: "ram",
            model: None,
            serial: None,
        }
    }

    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), BlkError> {
        let span = self.span(lba, buf.len())?;
        let src = self.data.get(span).ok_or(BlkError::OutOfRange {
            lba,
            count: 0,
            capacity: self.capacity(),
        })?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn write(&mut self, lba: u64, buf: &[u8]) -> Result<(), BlkError> {
        let span = self.span(lba, buf.len())?;
        if self.read_only {
            return Err(BlkError::ReadOnly);
        }
        let capacity = self.capacity();
        let dst = self.data.get_mut(span).ok_or(BlkError::OutOfRange {
            lba,
            count: 0,
            capacity,
        })?;
        dst.copy_from_slice(buf);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), BlkError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_is_checked() {
        assert!(RamDisk::new(0, 512).is_err());
        assert!(RamDisk::new(1000, 512).is_err());
        assert!(RamDisk::new(4096, 1000).is_err());
        assert!(RamDisk::new(4096, 256).is_err());
        assert!(RamDisk::from_image(alloc::vec![0; 513], 512).is_err());
        let d = RamDisk::new(1 << 20, 4096).unwrap();
        assert_eq!(
            (d.capacity(), d.sector_size(), d.read_only()),
            (256, 4096, false)
        );
        assert_eq!(d.info().driver, "ram");
    }

    #[test]
    fn reads_back_writes_and_enforces_bounds() {
        let mut d = RamDisk::new(8 * 512, 512).unwrap();
        let data: alloc::vec::Vec<u8> = (0..1024).map(|i| (i * 7) as u8).collect();
        d.write(6, &data).unwrap();
        let mut back = [0u8; 1024];
        d.read(6, &mut back).unwrap();
        assert_eq!(&back[..], &data[..]);
        assert_eq!(
            d.write(7, &data),
            Err(BlkError::OutOfRange {
                lba: 7,
                count: 2,
                capacity: 8
            })
        );
        assert!(d.read(0, &mut back[..100]).is_err());
        assert!(d.read(0, &mut []).is_err());
        d.set_read_only(true);
        assert_eq!(d.write(0, &data), Err(BlkError::ReadOnly));
        assert_eq!(&d.image()[6 * 512..], &data[..]);
    }
}
