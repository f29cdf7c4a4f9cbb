//! The Limine boot protocol (base revision 2): requests the kernel embeds, answered by Limine.
use super::{copy_str, BootDevice, BootInfo, Firmware, Framebuffer, RegionKind};
use limine::firmware::FIRMWARE_TYPE_X86BIOS;
use limine::memmap;
use limine::request::{
    BootloaderInfoRequest, ExecutableAddressRequest, ExecutableCmdlineRequest,
    ExecutableFileRequest, FirmwareTypeRequest, FramebufferRequest, HhdmRequest, MemmapRequest,
    ModulesRequest, MpRequest, RsdpRequest,
};
use limine::{BaseRevision, RequestsEndMarker, RequestsStartMarker};

#[used]
#[unsafe(link_section = ".requests_start_marker")]
static START: RequestsStartMarker = RequestsStartMarker::new();
/// Revision 2 is the newest Limine 8.x supports (PROTOCOL.md "Base revisions"); later Limine
/// releases still accept it. In revisions below 3 the RSDP address is a HHDM pointer.
const REVISION: u64 = 2;
#[used]
#[unsafe(link_section = ".requests")]
static BASE_REVISION: BaseRevision = BaseRevision::with_revision(REVISION);
#[used]
#[unsafe(link_section = ".requests")]
static HHDM: HhdmRequest = HhdmRequest::new();
#[used]
#[unsafe(link_section = ".requests")]
static MEMMAP: MemmapRequest = MemmapRequest::new();
#[used]
#[unsafe(link_section = ".requests")]
static RSDP: RsdpRequest = RsdpRequest::new();
#[used]
#[unsafe(link_section = ".requests")]
static INFO: BootloaderInfoRequest = BootloaderInfoRequest::new();
#[used]
#[unsafe(link_section = ".requests")]
static FIRMWARE: FirmwareTypeRequest = FirmwareTypeRequest::new();
#[used]
#[unsafe(link_section = ".requests")]
static CMDLINE: ExecutableCmdlineRequest = ExecutableCmdlineRequest::new();
#[used]
#[unsafe(link_section = ".requests")]
static KADDR: ExecutableAddressRequest = ExecutableAddressRequest::new();
#[used]
#[unsafe(link_section = ".requests")]
static KFILE: ExecutableFileRequest = ExecutableFileRequest::new();
#[used]
#[unsafe(link_section = ".requests")]
static MODULES: ModulesRequest = ModulesRequest::new();
#[used]
#[unsafe(link_section = ".requests")]
static FB: FramebufferRequest = FramebufferRequest::new();
/// The application processors: Limine starts them and parks each until its goto address is
/// written (smp::init). x2APIC on where the CPU has it, so APIC IDs above 254 stay reachable.
#[used]
#[unsafe(link_section = ".requests")]
static MP: MpRequest = MpRequest::new(limine::mp::MP_FLAG_X2APIC);
#[used]
#[unsafe(link_section = ".requests_end_marker")]
static END: RequestsEndMarker = RequestsEndMarker::new();

pub fn parse(bi: &mut BootInfo) -> Result<(), &'static str> {
    bi.loader = "Limine";
    let revision = match BASE_REVISION.actual_revision() {
        _ if BASE_REVISION.is_supported() => REVISION,
        Some(r) if r >= 1 => r,
        _ => return Err("the loader does not support Limine base revision 2"),
    };
    bi.direct_map = HHDM.response().ok_or("no HHDM response")?.offset;
    if let Some(info) = INFO.response() {
        copy_str(&mut bi.loader_version, info.version());
    }
    bi.firmware = match FIRMWARE.response() {
        Some(f) if f.firmware_type == FIRMWARE_TYPE_X86BIOS => Firmware::Bios,
        Some(_) => Firmware::Uefi,
        None => Firmware::Bios,
    };
    if let Some(c) = CMDLINE.response() {
        copy_str(&mut bi.cmdline, c.cmdline());
    }
    if let Some(k) = KADDR.response() {
        bi.kernel_phys = k.physical_base;
    }
    let mm = MEMMAP.response().ok_or("no memory map response")?;
    for e in mm.entries() {
        let kind = match e.type_ {
            memmap::MEMMAP_USABLE => RegionKind::Usable,
            memmap::MEMMAP_ACPI_RECLAIMABLE => RegionKind::AcpiReclaimable,
            memmap::MEMMAP_ACPI_NVS => RegionKind::AcpiNvs,
            memmap::MEMMAP_BAD_MEMORY => RegionKind::Bad,
            memmap::MEMMAP_BOOTLOADER_RECLAIMABLE => RegionKind::Bootloader,
            memmap::MEMMAP_EXECUTABLE_AND_MODULES => RegionKind::KernelAndModules,
            memmap::MEMMAP_FRAMEBUFFER => RegionKind::Framebuffer,
            _ => RegionKind::Reserved,
        };
        bi.push_region(e.base, e.length, kind);
    }
    bi.rsdp = RSDP
        .response()
        .map(|r| r.address as u64)
        .filter(|&a| a != 0)
        .map(|a| {
            if revision >= 3 {
                a
            } else {
                a.wrapping_sub(bi.direct_map)
            }
        });
    if let Some(m) = MODULES.response() {
        for f in m.modules() {
            let data = f.data();
            let start = data.as_ptr() as u64 - bi.direct_map;
            let name = f.path().rsplit('/').next().unwrap_or("");
            bi.push_module(start, start + data.len() as u64, name);
        }
    }
    if let Some(f) = KFILE.response() {
        // The `limine` crate's `File` lacks the `unused` field after `media_type` and its `Uuid`
        // is not `repr(C)`, so read the fields through a mirror of `struct limine_file`.
        let raw = f.executable_file() as *const limine::file::File as *const RawFile;
        // SAFETY: Limine's response points at a `struct limine_file`, which RawFile mirrors.
        let raw = unsafe { &*raw };
        bi.boot_device = Some(BootDevice::Limine {
            media: raw.media_type,
            partition: raw.partition_index,
            disk_guid: raw.gpt_disk_uuid,
            part_guid: raw.gpt_part_uuid,
        });
    }
    if let Some(fb) = FB
        .response()
        .and_then(|r| r.framebuffers().first().copied())
    {
        bi.framebuffer = Some(Framebuffer {
            phys: fb.address() as u64 - bi.direct_map,
            width: fb.width as u32,
            height: fb.height as u32,
            pitch: fb.pitch as u32,
            bpp: fb.bpp as u8,
        });
    }
    Ok(())
}

/// `struct limine_file` from limine.h (Limine 8.x). A `limine_uuid` is `u32, u16, u16, u8[8]`
/// stored little-endian: exactly a GPT GUID's on-disk bytes.
#[repr(C)]
#[allow(dead_code)] // mirrors the C layout; only some fields are read
struct RawFile {
    revision: u64,
    address: u64,
    size: u64,
    path: u64,
    cmdline: u64,
    media_type: u32,
    unused: u32,
    tftp_ip: u32,
    tftp_port: u32,
    partition_index: u32,
    mbr_disk_id: u32,
    gpt_disk_uuid: [u8; 16],
    gpt_part_uuid: [u8; 16],
    part_uuid: [u8; 16],
}

/// Limine's MP response, if the loader answered: the BSP's APIC ID and every CPU (the BSP
/// among them).
pub fn mp() -> Option<(u32, &'static [&'static limine::mp::MpInfo])> {
    MP.response().map(|r| (r.bsp_lapic_id, r.cpus()))
}
