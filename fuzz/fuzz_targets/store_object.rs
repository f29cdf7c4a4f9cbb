//! capmon_storage's object check on arbitrary bytes: `object::check` (what `put` runs on every
//! message) and `object::decode` (what `get` shows). Neither may panic; what `check` accepts
//! must be canonical, hash to its own SHA-256, pass `check` again unchanged, and decode.
#![no_main]

use capmon_storage::object;
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};

fuzz_target!(|data: &[u8]| {
    let _ = object::decode(data);
    if let Ok(c) = object::check(data) {
        assert!(c.canonical.len() <= object::MAX_OBJECT_BYTES + 8);
        let h: [u8; 32] = Sha256::digest(&c.canonical).into();
        assert_eq!(h, c.hash);
        let again = object::check(&c.canonical).expect("a canonical message checks again");
        assert_eq!(again.canonical, c.canonical);
        assert_eq!((again.schema_id, again.version), (c.schema_id, c.version));
        let d = object::decode(&c.canonical).expect("an accepted object decodes");
        assert_eq!(d.schema_id, c.schema_id);
    }
});
