//! GDT with a TSS whose interrupt stack table gives double fault, NMI and machine check their
//! own stacks (a fault on a broken stack must still be reported). Every CPU has its own pair
//! (a TSS is busy while loaded, and each CPU needs its own IST stacks); the selectors are the
//! same on all of them, so the one IDT serves every CPU.
use spin::Once;
use x86_64::instructions::segmentation::{Segment, CS, DS, ES, SS};
use x86_64::instructions::tables::load_tss;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable, SegmentSelector};
use x86_64::structures::tss::TaskStateSegment;
use x86_64::VirtAddr;

pub const IST_DOUBLE_FAULT: u16 = 0;
pub const IST_NMI: u16 = 1;
pub const IST_MACHINE_CHECK: u16 = 2;
const IST_SLOTS: [u16; 3] = [IST_DOUBLE_FAULT, IST_NMI, IST_MACHINE_CHECK];
const IST_STACK_SIZE: usize = 16 * 1024;

#[repr(align(16))]
struct Stack {
    _bytes: [u8; IST_STACK_SIZE],
}
/// The boot CPU's IST stacks (APs get theirs from the frame allocator).
static mut IST_STACKS: [Stack; 3] = [const {
    Stack {
        _bytes: [0; IST_STACK_SIZE],
    }
}; 3];

/// One CPU's GDT and the selectors in it. After the TSS come user data then user code, the
/// order SYSRET wants (STAR[63:48] + 8 and + 16; see `crate::user`).
pub struct CpuTables {
    gdt: GlobalDescriptorTable,
    code: SegmentSelector,
    data: SegmentSelector,
    tss: SegmentSelector,
    user_data: SegmentSelector,
    user_code: SegmentSelector,
}

/// The boot CPU's TSS, written by the CPU and by `set_rsp0` (hence a raw pointer, never a
/// shared reference).
static BSP_TSS: core::sync::atomic::AtomicPtr<TaskStateSegment> =
    core::sync::atomic::AtomicPtr::new(core::ptr::null_mut());
static BSP_TABLES: Once<CpuTables> = Once::new();
static mut BSP_TSS_STORAGE: TaskStateSegment = TaskStateSegment::new();

fn tss_with_stacks(tops: [u64; 3]) -> TaskStateSegment {
    let mut tss = TaskStateSegment::new();
    for (slot, top) in IST_SLOTS.iter().zip(tops) {
        tss.interrupt_stack_table[*slot as usize] = VirtAddr::new(top);
    }
    tss
}

fn tables_for(tss: *const TaskStateSegment) -> CpuTables {
    let mut gdt = GlobalDescriptorTable::new();
    let code = gdt.append(Descriptor::kernel_code_segment());
    let data = gdt.append(Descriptor::kernel_data_segment());
    // SAFETY: every TSS passed here is leaked, so it lives as long as the GDT.
    let tss = gdt.append(unsafe { Descriptor::tss_segment_unchecked(tss) });
    let user_data = gdt.append(Descriptor::user_data_segment());
    let user_code = gdt.append(Descriptor::user_code_segment());
    CpuTables {
        gdt,
        code,
        data,
        tss,
        user_data,
        user_code,
    }
}

/// The boot CPU's GDT and TSS, loaded.
pub fn init() {
    let tables = BSP_TABLES.call_once(|| {
        let mut tops = [0u64; 3];
        for (i, t) in tops.iter_mut().enumerate() {
            // SAFETY: each IST stack is used only by its own vector; we take its end address.
            *t = unsafe { core::ptr::addr_of!(IST_STACKS[i]) as u64 } + IST_STACK_SIZE as u64;
        }
        // The heap is not up yet: the boot CPU's TSS is a static.
        let tss = core::ptr::addr_of_mut!(BSP_TSS_STORAGE);
        // SAFETY: written once, here, before any descriptor points at it.
        unsafe { tss.write(tss_with_stacks(tops)) };
        BSP_TSS.store(tss, core::sync::atomic::Ordering::Release);
        tables_for(tss)
    });
    load(tables);
}

/// Sets the boot CPU's RSP0: the stack the CPU switches to on an interrupt or exception
/// from ring 3.
pub fn set_rsp0(top: u64) {
    let tss = BSP_TSS.load(core::sync::atomic::Ordering::Acquire);
    if !tss.is_null() {
        // SAFETY: the TSS is leaked and only this CPU (the boot CPU, which runs programs)
        // writes it; the CPU reads RSP0 only on a privilege change, which cannot happen while
        // this runs in ring 0.
        unsafe {
            core::ptr::addr_of_mut!((*tss).privilege_stack_table[0])
                .write_volatile(VirtAddr::new(top))
        };
    }
}

/// The user code and data selectors (RPL 3), the same on every CPU.
pub fn user_selectors() -> (u16, u16) {
    BSP_TABLES
        .get()
        .map(|g| (g.user_code.0, g.user_data.0))
        .unwrap_or((0x33, 0x2b))
}

/// The kernel data selector.
pub fn data_selector() -> u16 {
    BSP_TABLES.get().map(|g| g.data.0).unwrap_or(0x10)
}

/// A GDT and TSS for an application processor, with IST stacks from the frame allocator;
/// `None` when memory is short. Built by the BSP, loaded by the AP with `load`.
pub fn new_ap_tables() -> Option<&'static CpuTables> {
    let frames = (IST_STACK_SIZE as u64).div_ceil(crate::mem::frames::FRAME);
    let mut tops = [0u64; 3];
    for t in tops.iter_mut() {
        let phys = crate::mem::frames::alloc_zeroed(frames, 1)?;
        *t = crate::mem::paging::phys_to_virt(phys) + IST_STACK_SIZE as u64;
    }
    let tss: *const TaskStateSegment =
        alloc::boxed::Box::into_raw(alloc::boxed::Box::new(tss_with_stacks(tops)));
    Some(alloc::boxed::Box::leak(alloc::boxed::Box::new(tables_for(
        tss,
    ))))
}

/// Loads `t` on the calling CPU and reloads the segment registers and the task register.
pub fn load(t: &'static CpuTables) {
    t.gdt.load();
    // SAFETY: the selectors index the GDT just loaded; its TSS descriptor is not busy (each
    // CpuTables is loaded by one CPU, once).
    unsafe {
        CS::set_reg(t.code);
        SS::set_reg(t.data);
        DS::set_reg(t.data);
        ES::set_reg(t.data);
        load_tss(t.tss);
    }
}

/// The kernel code selector (for IDT gates): the same in every CPU's GDT.
pub fn code_selector() -> u16 {
    BSP_TABLES.get().map(|g| g.code.0).unwrap_or(0x08)
}
