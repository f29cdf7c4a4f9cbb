//! The disk engine's records on arbitrary bytes: a name's binding (`StoredBinding`) and an
//! inode (`Inode`), as read back from the redb tables. Neither decoder may panic, and what
//! they accept encodes to a record that decodes to the same value.
#![no_main]

use capmon_storage::disk::{decode_binding, decode_inode, encode_binding, encode_inode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(b) = decode_binding(data) {
        assert_eq!(decode_binding(&encode_binding(&b)).ok(), Some(b));
    }
    if let Ok((st, parent)) = decode_inode(7, data) {
        assert_eq!(st.inode, 7);
        let back = decode_inode(7, &encode_inode(&st, parent)).expect("re-encoded inode");
        assert_eq!(back, (st, parent));
    }
});
