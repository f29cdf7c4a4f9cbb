//! Fakes for host tests: an MMIO register file and an MSR file that record writes.
extern crate std;
use capmon_hal::{Mmio, Msr};
use core::cell::RefCell;
use std::collections::BTreeMap;
use std::vec::Vec;

#[derive(Default)]
pub struct FakeMmio {
    pub regs: RefCell<BTreeMap<usize, u32>>,
    pub writes: RefCell<Vec<(usize, u32)>>,
    /// A register file that behaves like an I/O APIC (IOREGSEL at 0, IOWIN at 0x10).
    pub ioapic: Option<RefCell<BTreeMap<u32, u32>>>,
}

impl FakeMmio {
    pub fn ioapic(regs: &[(u32, u32)]) -> Self {
        FakeMmio {
            ioapic: Some(RefCell::new(regs.iter().copied().collect())),
            ..Default::default()
        }
    }
}

impl Mmio for FakeMmio {
    fn len(&self) -> usize {
        0x1000
    }
    fn read8(&self, off: usize) -> u8 {
        self.read32(off & !3) as u8
    }
    fn read16(&self, off: usize) -> u16 {
        self.read32(off & !3) as u16
    }
    fn read32(&self, off: usize) -> u32 {
        if let (Some(io), 0x10) = (&self.ioapic, off) {
            let sel = self.regs.borrow().get(&0).copied().unwrap_or(0);
            return io.borrow().get(&sel).copied().unwrap_or(0);
        }
        self.regs.borrow().get(&off).copied().unwrap_or(0)
    }
    fn write8(&self, off: usize, v: u8) {
        self.write32(off, v as u32)
    }
    fn write16(&self, off: usize, v: u16) {
        self.write32(off, v as u32)
    }
    fn write32(&self, off: usize, v: u32) {
        self.writes.borrow_mut().push((off, v));
        if let (Some(io), 0x10) = (&self.ioapic, off) {
            let sel = self.regs.borrow().get(&0).copied().unwrap_or(0);
            io.borrow_mut().insert(sel, v);
            return;
        }
        self.regs.borrow_mut().insert(off, v);
    }
}

#[derive(Default)]
pub struct FakeMsr {
    pub regs: RefCell<BTreeMap<u32, u64>>,
    pub writes: RefCell<Vec<(u32, u64)>>,
}

impl Msr for FakeMsr {
    fn read(&self, msr: u32) -> u64 {
        self.regs.borrow().get(&msr).copied().unwrap_or(0)
    }
    fn write(&self, msr: u32, v: u64) {
        self.writes.borrow_mut().push((msr, v));
        self.regs.borrow_mut().insert(msr, v);
    }
}
