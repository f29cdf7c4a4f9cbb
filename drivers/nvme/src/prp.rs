//! Physical Region Page entries (NVMe Base 2.0 §4.1.1): how a command names its data.
//!
//! PRP1 names the first page and may start at a dword-aligned offset inside it; every later
//! entry names a whole page. Two pages fit PRP1 and PRP2; more put PRP2 at a PRP list, a page of
//! 512 entries whose last entry points at the next list page when the list goes on.
use alloc::vec::Vec;

/// The memory page size the driver programs (CC.MPS = 0).
pub const PAGE: usize = 4096;
/// Entries in one PRP list page.
pub const PER_LIST: usize = PAGE / 8;

/// Puts into `out` (emptied first; a caller's scratch vector, so a command allocates nothing
/// once it has grown) the PRP entries of a buffer at virtual address `virt`, `len` bytes: one
/// per memory page it touches. `phys(virt, len)` names the device address of a range inside
/// one page, or `None`. `None` when the buffer is not dword aligned or some page has no
/// device address.
pub fn entries(
    out: &mut Vec<u64>,
    virt: usize,
    len: usize,
    phys: &mut dyn FnMut(usize, usize) -> Option<u64>,
) -> Option<()> {
    out.clear();
    if len == 0 || !virt.is_multiple_of(4) {
        return None;
    }
    out.try_reserve(len / PAGE + 2).ok()?;
    let mut at = virt;
    let end = virt.checked_add(len)?;
    while at < end {
        let page_end = (at / PAGE + 1) * PAGE;
        let n = page_end.min(end) - at;
        let p = phys(at, n)?;
        // A page's device address keeps the virtual address's offset in the page, or the
        // entries below could not describe it.
        if p as usize % PAGE != at % PAGE {
            return None;
        }
        out.push(p);
        at += n;
    }
    Some(())
}

/// Puts into `out` (emptied first) the entries of a physically contiguous range (a bounce
/// buffer).
pub fn contiguous(out: &mut Vec<u64>, phys: u64, len: usize) {
    let first = phys as usize % PAGE;
    let pages = (first + len).div_ceil(PAGE);
    out.clear();
    out.extend((0..pages).map(|i| {
        if i == 0 {
            phys
        } else {
            (phys & !(PAGE as u64 - 1)) + (i * PAGE) as u64
        }
    }));
}

/// How many list pages `n` entries need.
pub fn list_pages(n: usize) -> usize {
    if n <= 2 {
        return 0;
    }
    // Entries after PRP1; every page but the last gives up its last slot to the chain pointer.
    let rest = n - 1;
    if rest <= PER_LIST {
        1
    } else {
        (rest - 1).div_ceil(PER_LIST - 1)
    }
}

/// A page of DMA memory for a PRP list: where the CPU writes it and where the device reads it.
#[derive(Debug, Clone, Copy)]
pub struct ListPage {
    pub virt: *mut u64,
    pub phys: u64,
}

/// PRP1 and PRP2 for `e` (at least one entry), writing list pages from `pages` (page-aligned,
/// `list_pages(e.len())` of them) as needed.
pub fn place(e: &[u64], pages: &[ListPage]) -> Option<(u64, u64)> {
    let prp1 = *e.first()?;
    match e.len() {
        1 => Some((prp1, 0)),
        2 => Some((prp1, *e.get(1)?)),
        n => {
            if pages.len() < list_pages(n) {
                return None;
            }
            let mut rest = e.get(1..)?;
            for (i, page) in pages.iter().take(list_pages(n)).enumerate() {
                let last = i + 1 == list_pages(n);
                let here = if last { rest.len() } else { PER_LIST - 1 };
                let (now, later) = rest.split_at(here.min(rest.len()));
                for (j, v) in now.iter().enumerate() {
                    // SAFETY: a list page holds PER_LIST entries and `j < PER_LIST`; the page
                    // is the caller's DMA memory, not in use by the device yet.
                    unsafe { core::ptr::write_volatile(page.virt.add(j), v.to_le()) };
                }
                if !last {
                    let next = pages.get(i + 1)?;
                    // SAFETY: as above, the last slot of the page.
                    unsafe {
                        core::ptr::write_volatile(page.virt.add(PER_LIST - 1), next.phys.to_le())
                    };
                }
                rest = later;
            }
            Some((prp1, pages.first()?.phys))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn entries_follow_pages_and_keep_the_first_offset() {
        let mut id = |v: usize, _| Some(v as u64 + 0x1000_0000);
        let mut e = Vec::new();
        let mut get = |virt, len, phys: &mut dyn FnMut(usize, usize) -> Option<u64>| {
            entries(&mut e, virt, len, phys).map(|()| e.clone())
        };
        assert_eq!(get(0x2010, 100, &mut id).unwrap(), [0x1000_2010]);
        assert_eq!(
            get(0x2ff0, 0x20, &mut id).unwrap(),
            [0x1000_2ff0, 0x1000_3000]
        );
        assert_eq!(get(0x4000, 3 * PAGE, &mut id).unwrap().len(), 3);
        assert!(get(0x2001, 4, &mut id).is_none(), "not dword aligned");
        assert!(get(0x2000, 0, &mut id).is_none());
        assert!(get(0x2000, 8192, &mut |_, _| None).is_none());
        // A device address whose offset differs from the virtual one cannot be described.
        assert!(get(0x2010, 8, &mut |_, _| Some(0x5000)).is_none());
        let mut c = Vec::new();
        contiguous(&mut c, 0x8000, 8192);
        assert_eq!(c, [0x8000, 0x9000]);
        contiguous(&mut c, 0x8200, 8192);
        assert_eq!(c, [0x8200, 0x9000, 0xa000]);
    }

    #[test]
    fn list_pages_chain() {
        assert_eq!(list_pages(1), 0);
        assert_eq!(list_pages(2), 0);
        assert_eq!(list_pages(3), 1);
        assert_eq!(list_pages(1 + PER_LIST), 1);
        assert_eq!(list_pages(2 + PER_LIST), 2);
        // 2048 pages (8 MiB): 2047 after PRP1 in pages of 511 + the last.
        assert_eq!(list_pages(2048), 5);

        let n = 2 + PER_LIST + 10;
        let e: Vec<u64> = (0..n as u64).map(|i| 0x10_0000 + i * PAGE as u64).collect();
        let mut mem = vec![vec![0u64; PER_LIST]; 2];
        let pages: Vec<ListPage> = mem
            .iter_mut()
            .enumerate()
            .map(|(i, m)| ListPage {
                virt: m.as_mut_ptr(),
                phys: 0xa000_0000 + (i * PAGE) as u64,
            })
            .collect();
        let (p1, p2) = place(&e, &pages).unwrap();
        assert_eq!((p1, p2), (e[0], 0xa000_0000));
        assert_eq!(mem[0][..PER_LIST - 1], e[1..PER_LIST]);
        assert_eq!(mem[0][PER_LIST - 1], 0xa000_1000, "chain pointer");
        assert_eq!(mem[1][..n - PER_LIST], e[PER_LIST..]);
        assert_eq!(place(&e[..2], &[]), Some((e[0], e[1])));
        assert_eq!(place(&e[..1], &[]), Some((e[0], 0)));
        assert!(place(&e, &pages[..1]).is_none());
    }
}
