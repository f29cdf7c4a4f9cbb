//! capmon_nvme's decoders of what a controller writes (Identify Controller, Identify Namespace,
//! the active namespace list, SMART, the error log) on arbitrary bytes: they must return, never
//! panic, and what they return must be consistent with the input.
#![no_main]

use capmon_nvme::identify::{
    parse_error_log, parse_ns_list, IdController, IdNamespace, Smart, ERROR_ENTRY_LEN,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let c = IdController::parse(data);
    assert!(c.serial.len() <= 20 && c.model.len() <= 40 && c.firmware.len() <= 8);
    assert_eq!(c.power_states.len(), c.npss as usize + 1);
    let _ = (c.oncs_names(), c.oacs_names(), c.has_volatile_cache());

    let n = IdNamespace::parse(data);
    assert!(n.formats.len() <= 64);
    // A usable namespace names a listed format of 512 B to 64 KiB without metadata.
    if let Ok(size) = n.usable() {
        let f = n.format().expect("usable implies a format");
        assert!(size.is_power_of_two() && (512..=65536).contains(&size));
        assert_eq!(f.ms, 0);
        assert!(n.nsze > 0);
    }

    let list = parse_ns_list(data);
    assert!(list.len() <= data.len() / 4);
    assert!(list.windows(2).all(|w| w[0] < w[1]));
    assert!(list.iter().all(|id| *id != 0 && *id != u32::MAX));

    let s = Smart::parse(data);
    assert!(s.warnings().len() <= 6);

    let log = parse_error_log(data);
    assert!(log.len() <= data.len().div_ceil(ERROR_ENTRY_LEN));
    assert!(log.iter().all(|e| e.count != 0));
});
