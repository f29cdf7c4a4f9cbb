//! capmon_bootpkg's manifest decoder on arbitrary bytes (`manifest::decode`, what the kernel
//! runs on /boot/manifest.capnp at boot). Never panics; what it accepts is within the limits,
//! encodes canonically and decodes to itself.
#![no_main]

use capmon_bootpkg::manifest::{self, MAX_BINARIES, MAX_BINARY_BYTES};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match manifest::decode(data) {
        Ok(m) => {
            assert!(m.binaries.len() <= MAX_BINARIES);
            for b in &m.binaries {
                assert!(manifest::valid_name(&b.name));
                assert!(b.size <= MAX_BINARY_BYTES);
            }
            assert!(m.init.is_empty() || m.binaries.iter().any(|b| b.name == m.init));
            let again = manifest::encode(&m);
            assert_eq!(manifest::decode(&again).as_ref(), Ok(&m));
            assert_eq!(manifest::encode(&manifest::decode(&again).unwrap()), again);
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});
