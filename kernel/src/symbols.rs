//! Kernel symbols for fault reports: the build writes `capmon.sym` (sorted `ADDR NAME` lines
//! from `nm`), loaded beside the kernel as a boot module by GRUB or Limine.
use alloc::vec::Vec;
use spin::Once;

static SYMBOLS: Once<Vec<(u64, &'static str)>> = Once::new();

pub fn init(bi: &crate::boot::BootInfo) {
    let Some(m) = bi
        .modules()
        .iter()
        .find(|m| m.name().ends_with("capmon.sym"))
    else {
        log::warn!("no capmon.sym module: fault reports will show addresses only");
        return;
    };
    let len = (m.end - m.start) as usize;
    // SAFETY: the module's frames are reserved and reachable through the direct map; it is
    // read-only from here on.
    let bytes: &'static [u8] = unsafe {
        core::slice::from_raw_parts(crate::mem::paging::phys_to_virt(m.start) as *const u8, len)
    };
    let Ok(text) = core::str::from_utf8(bytes) else {
        log::warn!("capmon.sym is not text");
        return;
    };
    let mut syms: Vec<(u64, &'static str)> = text
        .lines()
        .filter_map(|l| {
            let (addr, name) = l.split_once(' ')?;
            Some((u64::from_str_radix(addr, 16).ok()?, name))
        })
        .collect();
    syms.sort_unstable_by_key(|s| s.0);
    log::info!("{} kernel symbols loaded", syms.len());
    SYMBOLS.call_once(|| syms);
}

/// The symbol containing `addr` and the offset into it.
pub fn lookup(addr: u64) -> Option<(&'static str, u64)> {
    let syms = SYMBOLS.get()?;
    let i = syms.partition_point(|s| s.0 <= addr).checked_sub(1)?;
    let (start, name) = syms[i];
    // Beyond 1 MiB past the last symbol start is not plausibly inside it.
    (addr - start < 1 << 20).then_some((name, addr - start))
}
