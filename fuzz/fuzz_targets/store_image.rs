//! A whole store from arbitrary bytes: the bytes are the region (the redb file) behind a valid
//! superblock, on a RAM disk. Opening it (writable: redb's integrity check verifies every page
//! checksum before anything is decoded, and may repair), `fsck`, a listing of every name and of
//! the root directory, a put and fsck again. Nothing may panic or hang: a damaged store is an
//! error of the operation that met it. Read-only opens are not exercised: redb cannot check a
//! store it may not write, and makes no promise about corrupt files there (docs/storage.md).
#![no_main]

use capmon_block::{BlockDevice, RamDisk};
use capmon_storage::backend::{Superblock, ENCODED_BYTES, SUPERBLOCK_BYTES};
use capmon_storage::caps::{DirCap, NamespaceCap};
use capmon_storage::engine::Engine;
use capmon_storage::{disk, fsck, object, Rights};
use libfuzzer_sys::fuzz_target;
use std::sync::Arc;

fuzz_target!(|data: &[u8]| {
    let region = data.len() as u64;
    // Room to grow, so the writable open can commit.
    let partition = (SUPERBLOCK_BYTES + region + (256 << 10)).next_multiple_of(512);
    let mut sb = Superblock::new(partition, 1, 1);
    sb.region_len = region;
    let mut img = vec![0u8; partition as usize];
    img[..ENCODED_BYTES].copy_from_slice(&sb.encode());
    img[SUPERBLOCK_BYTES as usize..SUPERBLOCK_BYTES as usize + data.len()].copy_from_slice(data);
    let dev = RamDisk::from_image(img, 512).unwrap();
    exercise(dev, true);
});

fn exercise<D: BlockDevice + Send + 'static>(dev: D, writable: bool) {
    let Ok((e, _)) = disk::open(dev, "fuzz", writable, 1) else {
        return;
    };
    let d = Arc::new(e);
    let e: Arc<dyn Engine> = d.clone();
    let _ = e.info();
    let _ = fsck::fsck(&*e, Some(&d));
    let ns = NamespaceCap::root(e.clone(), Rights::RW);
    if let Ok(list) = ns.list("") {
        for n in list.iter().take(64) {
            let _ = ns.lookup(&n.name);
        }
    }
    let root = DirCap::root(e.clone(), Rights::READ);
    if let Ok(ents) = root.list() {
        let mut buf = [0u8; 4096];
        for ent in ents.iter().take(64) {
            if let Ok(f) = root.open(&ent.name, Rights::READ) {
                let _ = f.read(0, &mut buf);
            }
        }
    }
    if writable {
        let _ = ns.put("fuzz", &object::text("after"), true);
        let _ = fsck::fsck(&*e, Some(&d));
    }
}
