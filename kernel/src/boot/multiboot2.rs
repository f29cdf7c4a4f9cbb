//! Multiboot2 (GRUB, or Limine's multiboot2 protocol): read the boot information structure.
use super::{copy_str, BootDevice, BootInfo, Firmware, Framebuffer, RegionKind};
use multiboot2::{BootInformation, BootInformationHeader, MemoryAreaType};

/// Where the 32-bit trampoline put the direct map (boot/entry.s, PML4 slot 256).
pub const DIRECT_MAP: u64 = 0xFFFF_8000_0000_0000;
const MB2_BOOTLOADER_MAGIC: u32 = 0x36d7_6289;
/// Physical address the kernel is loaded at (linker.ld KERNEL_PHYS).
const KERNEL_PHYS: u64 = 0x20_0000;

pub fn parse(magic: u32, info_phys: u64, bi: &mut BootInfo) -> Result<(), &'static str> {
    bi.direct_map = DIRECT_MAP;
    bi.kernel_phys = KERNEL_PHYS;
    bi.loader = "multiboot2";
    if magic != MB2_BOOTLOADER_MAGIC {
        return Err("bad multiboot2 magic");
    }
    let ptr = (DIRECT_MAP + info_phys) as *const BootInformationHeader;
    // SAFETY: the loader passed the physical address of its boot information in EBX; the
    // direct map covers the first 4 GiB, where Multiboot2 places it.
    let mbi =
        unsafe { BootInformation::load(ptr) }.map_err(|_| "unreadable multiboot2 information")?;
    bi.reserved = Some((info_phys, info_phys + mbi.total_size() as u64));

    if let Some(name) = mbi.boot_loader_name_tag().and_then(|t| t.name().ok()) {
        copy_str(&mut bi.loader_version, name);
        bi.loader = if name.starts_with("GRUB") {
            "GRUB (multiboot2)"
        } else {
            "multiboot2"
        };
        if name.starts_with("Limine") {
            bi.loader = "Limine (multiboot2)";
        }
    }
    if let Some(cl) = mbi.command_line_tag().and_then(|t| t.cmdline().ok()) {
        copy_str(&mut bi.cmdline, cl);
    }
    bi.firmware = if mbi.efi_sdt64_tag().is_some() || mbi.efi_memory_map_tag().is_some() {
        Firmware::Uefi
    } else {
        Firmware::Bios
    };
    if let Some(mm) = mbi.memory_map_tag() {
        for a in mm.memory_areas() {
            let kind = match a.typ() {
                MemoryAreaType::Available => RegionKind::Usable,
                MemoryAreaType::AcpiAvailable => RegionKind::AcpiReclaimable,
                MemoryAreaType::ReservedHibernate => RegionKind::AcpiNvs,
                MemoryAreaType::Defective => RegionKind::Bad,
                _ => RegionKind::Reserved,
            };
            bi.push_region(a.start_address(), a.size(), kind);
        }
    }
    // The RSDP tags hold a copy of the RSDP; its physical address is inside the (reserved)
    // boot information, 8 bytes after the tag header.
    let rsdp_tag = mbi
        .rsdp_v2_tag()
        .map(|t| t as *const _ as *const u8 as u64)
        .or_else(|| mbi.rsdp_v1_tag().map(|t| t as *const _ as *const u8 as u64));
    bi.rsdp = rsdp_tag.map(|virt| virt - DIRECT_MAP + 8);
    for m in mbi.module_tags() {
        let name = m
            .cmdline()
            .unwrap_or("")
            .split_ascii_whitespace()
            .next()
            .unwrap_or("");
        bi.push_module(m.start_address() as u64, m.end_address() as u64, name);
    }
    if let Some(Ok(fb)) = mbi.framebuffer_tag() {
        bi.framebuffer = Some(Framebuffer {
            phys: fb.address(),
            width: fb.width(),
            height: fb.height(),
            pitch: fb.pitch(),
            bpp: fb.bpp(),
        });
    }
    if let Some(bd) = mbi.bootdev_tag() {
        bi.boot_device = Some(BootDevice::Bios {
            drive: bd.biosdev(),
            partition: bd.slice(),
            sub: bd.part(),
        });
    }
    Ok(())
}
