//! capmon_storage's store superblock on arbitrary bytes: `Superblock::decode` on them, and
//! `probe` on a RAM disk holding them (zero-padded to whole 4096-byte sectors, 512- and 4096-byte
//! sectors). Both must return, never panic; what they accept must be a superblock that encodes
//! back to the same bytes and fits its partition, and probe must never write.
#![no_main]

use capmon_block::{BlockDevice, RamDisk};
use capmon_storage::backend::{
    probe, OpenError, Superblock, FORMAT_VERSION, MAGIC, SUPERBLOCK_BYTES,
};
use libfuzzer_sys::fuzz_target;

/// Bytes of the superblock that carry meaning (fields and checksum).
const FIELDS_BYTES: usize = 60;

fuzz_target!(|data: &[u8]| {
    let decoded = Superblock::decode(data);
    match &decoded {
        Ok(sb) => {
            assert_eq!(sb.version, FORMAT_VERSION);
            assert!(SUPERBLOCK_BYTES.checked_add(sb.region_len).unwrap() <= sb.partition_bytes);
            let again = sb.encode();
            assert_eq!(&again[..FIELDS_BYTES], &data[..FIELDS_BYTES]);
            assert_eq!(Superblock::decode(&again).as_ref(), Ok(sb));
        }
        Err(OpenError::NotFormatted) => {
            assert!(data.iter().take(SUPERBLOCK_BYTES as usize).all(|&b| b == 0))
        }
        Err(OpenError::Foreign(_)) => assert!(!data.starts_with(&MAGIC)),
        Err(e) => assert!(data.starts_with(&MAGIC), "{:?}", e),
    }
    if let Err(e) = &decoded {
        assert!(!e.to_string().is_empty());
    }

    let len = data
        .len()
        .max(1)
        .next_multiple_of(SUPERBLOCK_BYTES as usize);
    let mut image = data.to_vec();
    image.resize(len, 0);
    // What probe must say: decode's verdict on the first 4096 bytes, then the partition's size.
    let expected = Superblock::decode(&image[..SUPERBLOCK_BYTES as usize])
        .and_then(|sb| sb.check_fits(len as u64).map(|()| sb));
    for sector in [512, 4096] {
        let mut disk = RamDisk::from_image(image.clone(), sector).unwrap();
        disk.set_read_only(true);
        assert_eq!(probe(&mut disk), expected);
        assert_eq!(disk.capacity() * u64::from(sector), len as u64);
        assert!(disk.image() == &image[..]);
    }
});
