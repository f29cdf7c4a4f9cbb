//! capmon_bootpkg::elf::validate on arbitrary bytes as a boot binary (what `run` checks before
//! it maps anything). Never panics; what it accepts obeys every rule it states: segments in
//! the user range, inside the file, page-congruent, not overlapping, never W+X, within the
//! memory limit, the entry in an executable segment.
#![no_main]

use capmon_bootpkg::elf::{validate, MAX_IMAGE_BYTES, PAGE, USER_BASE, USER_TOP};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let size = data.len() as u64;
    match validate(data, size) {
        Ok(img) => {
            assert!(!img.segments.is_empty() && img.memory() <= MAX_IMAGE_BYTES);
            for (i, s) in img.segments.iter().enumerate() {
                assert!(s.vaddr >= USER_BASE && s.vaddr + s.memsz <= USER_TOP);
                assert!(s.filesz <= s.memsz && s.offset + s.filesz <= size);
                assert_eq!(s.vaddr % PAGE, s.offset % PAGE);
                assert!(!(s.write && s.exec));
                for t in &img.segments[i + 1..] {
                    let (a0, a1) = s.pages();
                    let (b0, b1) = t.pages();
                    assert!(a1 <= b0 || b1 <= a0);
                }
            }
            assert!(img
                .segments
                .iter()
                .any(|s| s.exec && img.entry >= s.vaddr && img.entry < s.vaddr + s.memsz));
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});
