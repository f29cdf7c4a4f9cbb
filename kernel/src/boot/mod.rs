//! What the loader told us, normalised into one `BootInfo` whichever protocol booted us.
pub mod limine;
pub mod multiboot2;

/// Maximum memory-map entries kept (firmware maps are rarely above 100).
pub const MAX_REGIONS: usize = 256;
pub const MAX_MODULES: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegionKind {
    Usable,
    Reserved,
    AcpiReclaimable,
    AcpiNvs,
    Bad,
    /// Loader data we must keep (Limine's page tables, boot info).
    Bootloader,
    /// The kernel image and modules.
    KernelAndModules,
    Framebuffer,
}

impl RegionKind {
    pub fn name(self) -> &'static str {
        match self {
            RegionKind::Usable => "usable",
            RegionKind::Reserved => "reserved",
            RegionKind::AcpiReclaimable => "ACPI reclaimable",
            RegionKind::AcpiNvs => "ACPI NVS",
            RegionKind::Bad => "bad",
            RegionKind::Bootloader => "bootloader",
            RegionKind::KernelAndModules => "kernel+modules",
            RegionKind::Framebuffer => "framebuffer",
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Region {
    pub base: u64,
    pub len: u64,
    pub kind: RegionKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Firmware {
    Bios,
    Uefi,
}

#[derive(Clone, Copy, Debug)]
pub struct Module {
    pub start: u64,
    pub end: u64,
    /// First word of the module's command line (GRUB) or its path (Limine).
    pub name: [u8; 64],
}

impl Module {
    pub fn name(&self) -> &str {
        let n = self
            .name
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(self.name.len());
        core::str::from_utf8(&self.name[..n]).unwrap_or("?")
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Framebuffer {
    pub phys: u64,
    pub width: u32,
    pub height: u32,
    pub pitch: u32,
    pub bpp: u8,
}

/// The disk the loader came from, as far as the loader says.
#[derive(Clone, Copy, Debug)]
pub enum BootDevice {
    /// Multiboot2 BIOS boot device tag: BIOS drive number and partition.
    Bios {
        drive: u32,
        partition: u32,
        sub: u32,
    },
    /// Limine: the kernel file's media, partition index and GPT disk/partition GUIDs.
    Limine {
        media: u32,
        partition: u32,
        disk_guid: [u8; 16],
        part_guid: [u8; 16],
    },
}

pub struct BootInfo {
    pub loader: &'static str,
    pub loader_version: [u8; 32],
    pub firmware: Firmware,
    pub regions: [Region; MAX_REGIONS],
    pub nregions: usize,
    pub rsdp: Option<u64>,
    /// Virtual address of physical 0 in the direct map.
    pub direct_map: u64,
    pub cmdline: [u8; 256],
    pub framebuffer: Option<Framebuffer>,
    pub kernel_phys: u64,
    pub modules: [Module; MAX_MODULES],
    pub nmodules: usize,
    /// Physical range of loader structures that must stay reserved (Multiboot2 info).
    pub reserved: Option<(u64, u64)>,
    pub boot_device: Option<BootDevice>,
}

impl BootInfo {
    pub const fn empty() -> Self {
        BootInfo {
            loader: "unknown",
            loader_version: [0; 32],
            firmware: Firmware::Bios,
            regions: [Region {
                base: 0,
                len: 0,
                kind: RegionKind::Reserved,
            }; MAX_REGIONS],
            nregions: 0,
            rsdp: None,
            direct_map: 0,
            cmdline: [0; 256],
            framebuffer: None,
            kernel_phys: 0,
            modules: [Module {
                start: 0,
                end: 0,
                name: [0; 64],
            }; MAX_MODULES],
            nmodules: 0,
            reserved: None,
            boot_device: None,
        }
    }

    pub fn regions(&self) -> &[Region] {
        &self.regions[..self.nregions]
    }

    pub fn modules(&self) -> &[Module] {
        &self.modules[..self.nmodules]
    }

    pub fn cmdline(&self) -> &str {
        let n = self
            .cmdline
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(self.cmdline.len());
        core::str::from_utf8(&self.cmdline[..n]).unwrap_or("")
    }

    pub fn loader_version(&self) -> &str {
        let n = self
            .loader_version
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(32);
        core::str::from_utf8(&self.loader_version[..n]).unwrap_or("")
    }

    pub fn push_region(&mut self, base: u64, len: u64, kind: RegionKind) {
        if self.nregions < MAX_REGIONS && len > 0 {
            self.regions[self.nregions] = Region { base, len, kind };
            self.nregions += 1;
        }
    }

    pub fn push_module(&mut self, start: u64, end: u64, name: &str) {
        if self.nmodules < MAX_MODULES {
            let m = &mut self.modules[self.nmodules];
            m.start = start;
            m.end = end;
            copy_str(&mut m.name, name);
            self.nmodules += 1;
        }
    }

    /// The value of `key=` on the kernel command line.
    pub fn cmdline_value(&self, key: &str) -> Option<&str> {
        self.cmdline()
            .split_ascii_whitespace()
            .find_map(|w| w.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
    }
}

/// Copies `s` into a NUL-padded buffer, truncating at a character boundary.
pub fn copy_str(dst: &mut [u8], s: &str) {
    let mut n = s.len().min(dst.len().saturating_sub(1));
    while !s.is_char_boundary(n) {
        n -= 1;
    }
    dst[..n].copy_from_slice(&s.as_bytes()[..n]);
    dst[n..].fill(0);
}
