//! Model-specific registers for drivers, behind `capmon_hal::Msr`.
pub struct KernelMsr;

impl capmon_hal::Msr for KernelMsr {
    fn read(&self, msr: u32) -> u64 {
        // SAFETY: callers name architectural MSRs they checked CPUID for (APIC base, x2APIC,
        // TSC deadline); RDMSR has no memory effects.
        unsafe { x86_64::registers::model_specific::Msr::new(msr).read() }
    }
    fn write(&self, msr: u32, v: u64) {
        // SAFETY: as for `read`; what the write does to the APIC is the caller's business.
        unsafe { x86_64::registers::model_specific::Msr::new(msr).write(v) }
    }
}
