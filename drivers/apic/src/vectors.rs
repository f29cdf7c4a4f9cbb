//! The CPU's 256 interrupt vectors: 0..32 are exceptions, the rest are handed out here.
//!
//! The kernel reserves its fixed vectors (legacy 8259 range, ISA lines, timer, IPIs, error,
//! spurious) at boot; devices get the rest one at a time.

/// Which vectors are taken.
#[derive(Debug, Clone)]
pub struct VectorAllocator {
    used: [u64; 4],
    /// Where device vectors are handed out from, inclusive.
    lo: u8,
    hi: u8,
}

impl VectorAllocator {
    /// Exceptions (0..32) are taken; device vectors come from `lo..=hi`.
    pub const fn new(lo: u8, hi: u8) -> Self {
        VectorAllocator {
            used: [0xffff_ffff, 0, 0, 0],
            lo,
            hi,
        }
    }

    pub fn is_used(&self, v: u8) -> bool {
        self.used[(v / 64) as usize] & (1 << (v % 64)) != 0
    }

    /// Marks `v` taken; false if it already was.
    pub fn reserve(&mut self, v: u8) -> bool {
        if self.is_used(v) {
            return false;
        }
        self.used[(v / 64) as usize] |= 1 << (v % 64);
        true
    }

    /// The lowest free device vector.
    pub fn alloc(&mut self) -> Option<u8> {
        let v = (self.lo..=self.hi).find(|&v| !self.is_used(v))?;
        self.reserve(v);
        Some(v)
    }

    /// Frees a vector taken by `alloc` or `reserve` (exceptions stay taken).
    pub fn free(&mut self, v: u8) {
        if v >= 32 {
            self.used[(v / 64) as usize] &= !(1 << (v % 64));
        }
    }

    /// How many device vectors are still free.
    pub fn free_count(&self) -> usize {
        (self.lo..=self.hi).filter(|&v| !self.is_used(v)).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hands_out_lowest_free_and_runs_out() {
        let mut a = VectorAllocator::new(0x40, 0x43);
        assert!(a.is_used(0) && a.is_used(31) && !a.is_used(32));
        assert!(a.reserve(0x41));
        assert!(!a.reserve(0x41));
        assert_eq!(a.alloc(), Some(0x40));
        assert_eq!(a.alloc(), Some(0x42));
        assert_eq!(a.alloc(), Some(0x43));
        assert_eq!(a.alloc(), None);
        assert_eq!(a.free_count(), 0);
        a.free(0x42);
        assert_eq!(a.alloc(), Some(0x42));
        a.free(3);
        assert!(a.is_used(3), "exceptions are never freed");
    }

    #[test]
    fn top_vector_is_usable() {
        let mut a = VectorAllocator::new(0xfe, 0xff);
        assert_eq!(a.alloc(), Some(0xfe));
        assert_eq!(a.alloc(), Some(0xff));
        assert_eq!(a.alloc(), None);
    }
}
