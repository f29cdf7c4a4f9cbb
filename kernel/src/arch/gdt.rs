//! GDT with a TSS whose interrupt stack table gives double fault, NMI and machine check their
//! own stacks (a fault on a broken stack must still be reported).
use spin::Once;
use x86_64::instructions::segmentation::{Segment, CS, DS, ES, SS};
use x86_64::instructions::tables::load_tss;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable, SegmentSelector};
use x86_64::structures::tss::TaskStateSegment;
use x86_64::VirtAddr;

pub const IST_DOUBLE_FAULT: u16 = 0;
pub const IST_NMI: u16 = 1;
pub const IST_MACHINE_CHECK: u16 = 2;
const IST_STACK_SIZE: usize = 16 * 1024;

#[repr(align(16))]
struct Stack {
    _bytes: [u8; IST_STACK_SIZE],
}
static mut IST_STACKS: [Stack; 3] = [const {
    Stack {
        _bytes: [0; IST_STACK_SIZE],
    }
}; 3];

static TSS: Once<TaskStateSegment> = Once::new();
static GDT: Once<(
    GlobalDescriptorTable,
    SegmentSelector,
    SegmentSelector,
    SegmentSelector,
)> = Once::new();

pub fn init() {
    let tss = TSS.call_once(|| {
        let mut tss = TaskStateSegment::new();
        for (i, slot) in [IST_DOUBLE_FAULT, IST_NMI, IST_MACHINE_CHECK]
            .iter()
            .enumerate()
        {
            // SAFETY: each IST stack is used only by its own vector; we take its end address.
            let top = unsafe { core::ptr::addr_of!(IST_STACKS[i]) as u64 } + IST_STACK_SIZE as u64;
            tss.interrupt_stack_table[*slot as usize] = VirtAddr::new(top);
        }
        tss
    });
    let (gdt, code, data, tss_sel) = GDT.call_once(|| {
        let mut gdt = GlobalDescriptorTable::new();
        let code = gdt.append(Descriptor::kernel_code_segment());
        let data = gdt.append(Descriptor::kernel_data_segment());
        let tss_sel = gdt.append(Descriptor::tss_segment(tss));
        (gdt, code, data, tss_sel)
    });
    gdt.load();
    // SAFETY: the selectors index the GDT just loaded.
    unsafe {
        CS::set_reg(*code);
        SS::set_reg(*data);
        DS::set_reg(*data);
        ES::set_reg(*data);
        load_tss(*tss_sel);
    }
}

/// The kernel code selector (for IDT gates).
pub fn code_selector() -> u16 {
    GDT.get().map(|g| g.1 .0).unwrap_or(0x08)
}
