//! capmon_iso9660 on arbitrary bytes as a volume (zero-padded to whole 2048-byte sectors, read
//! as 512- and 2048-byte sectors): `Volume::open`, a walk of the tree (bounded), every entry
//! looked up again and read. Nothing may panic; a volume that opens fits its device, reads
//! never return more than asked or past an entry's size, and both sector sizes see the same
//! tree with the same bytes.
#![no_main]

use capmon_block::RamDisk;
use capmon_iso9660::{Kind, Volume};
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};

/// Entries visited per input, and bytes read per file: enough to reach every code path.
const MAX_ENTRIES: usize = 500;
const MAX_READ: usize = 64 << 10;

fn survey(image: &[u8], sector: u32) -> Option<Vec<String>> {
    let mut disk = RamDisk::from_image(image.to_vec(), sector).unwrap();
    disk.set_read_only(true);
    let v = match Volume::open(&mut disk) {
        Ok(v) => v,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return None;
        }
    };
    assert!(matches!(v.block, 512 | 1024 | 2048));
    assert!(v.bytes() <= image.len() as u64);
    let mut seen = Vec::new();
    let walked = v.walk(&mut disk, &mut |p, e| {
        seen.push((p.to_string(), e.clone()));
        seen.len() < MAX_ENTRIES
    });
    let mut out = vec![format!("{:?}", walked.as_ref().map_err(|e| e.to_string()))];
    for (p, e) in &seen {
        let again = v.lookup(&mut disk, p);
        if let Err(err) = &again {
            assert!(!err.to_string().is_empty());
        }
        let mut line = format!("{} {:?} {}", p, e.kind, e.size);
        if e.kind != Kind::Dir {
            let mut buf = vec![0u8; MAX_READ.min(e.size as usize + 10)];
            match v.read(&mut disk, e, 0, &mut buf) {
                Ok(n) => {
                    assert!(n <= buf.len() && n as u64 <= e.size);
                    assert!(n == buf.len() || n as u64 == e.size);
                    for b in Sha256::digest(&buf[..n]) {
                        line.push_str(&format!("{:02x}", b));
                    }
                }
                Err(err) => line.push_str(&format!(" {}", err)),
            }
        }
        out.push(line);
    }
    Some(out)
}

fuzz_target!(|data: &[u8]| {
    let mut image = data.to_vec();
    image.resize(data.len().max(1).next_multiple_of(2048), 0);
    let a = survey(&image, 512);
    let b = survey(&image, 2048);
    assert_eq!(a, b);
});
