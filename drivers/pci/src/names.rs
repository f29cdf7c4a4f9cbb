//! Human names for vendors, devices, classes and capabilities.
//!
//! Class and subclass names follow the PCI Code and ID Assignment Specification 1.11 §1, worded
//! as in the pci.ids database so they read like Linux `lspci`. Vendors and devices cover what
//! QEMU emulates and common hardware; anything else prints as numbers.

/// (vendor ID, name).
const VENDORS: &[(u16, &str)] = &[
    (0x1002, "Advanced Micro Devices, Inc. [AMD/ATI]"),
    (0x1013, "Cirrus Logic"),
    (0x1022, "Advanced Micro Devices, Inc. [AMD]"),
    (0x102b, "Matrox Electronics Systems Ltd."),
    (0x1033, "NEC Corporation"),
    (0x104c, "Texas Instruments"),
    (0x106b, "Apple Inc."),
    (0x10de, "NVIDIA Corporation"),
    (0x10ec, "Realtek Semiconductor Co., Ltd."),
    (0x1137, "Cisco Systems Inc"),
    (0x14e4, "Broadcom Inc. and subsidiaries"),
    (0x15ad, "VMware"),
    (0x15b3, "Mellanox Technologies"),
    (0x1912, "Renesas Technology Corp."),
    (0x1ae0, "Google, Inc."),
    (0x1af4, "Red Hat, Inc."),
    (0x1b36, "Red Hat, Inc."),
    (0x1b4b, "Marvell Technology Group Ltd."),
    (0x1d0f, "Amazon.com, Inc."),
    (0x1234, "QEMU"),
    (0x144d, "Samsung Electronics Co Ltd"),
    (0x1414, "Microsoft Corporation"),
    (0x1ab8, "Parallels, Inc."),
    (0x1c5c, "SK hynix"),
    (0x80ee, "InnoTek Systemberatung GmbH"),
    (0x8086, "Intel Corporation"),
    (0x9005, "Adaptec"),
    (0x1000, "Broadcom / LSI"),
    (0x1b21, "ASMedia Technology Inc."),
    (0x1106, "VIA Technologies, Inc."),
    (0x1274, "Ensoniq"),
    (0x5853, "XenSource, Inc."),
];

/// (vendor ID, device ID, name).
const DEVICES: &[(u16, u16, &str)] = &[
    // QEMU's chipsets and emulated Intel hardware.
    (0x8086, 0x1237, "440FX - 82441FX PMC [Natoma]"),
    (0x8086, 0x7000, "82371SB PIIX3 ISA [Natoma/Triton II]"),
    (0x8086, 0x7010, "82371SB PIIX3 IDE [Natoma/Triton II]"),
    (0x8086, 0x7020, "82371SB PIIX3 USB [Natoma/Triton II]"),
    (0x8086, 0x7113, "82371AB/EB/MB PIIX4 ACPI"),
    (0x8086, 0x29c0, "82G33/G31/P35/P31 Express DRAM Controller"),
    (0x8086, 0x2918, "82801IB (ICH9) LPC Interface Controller"),
    (
        0x8086,
        0x2922,
        "82801IR/IO/IH (ICH9R/DO/DH) 6 port SATA Controller [AHCI mode]",
    ),
    (0x8086, 0x2930, "82801I (ICH9 Family) SMBus Controller"),
    (
        0x8086,
        0x2934,
        "82801I (ICH9 Family) USB UHCI Controller #1",
    ),
    (
        0x8086,
        0x2935,
        "82801I (ICH9 Family) USB UHCI Controller #2",
    ),
    (
        0x8086,
        0x2936,
        "82801I (ICH9 Family) USB UHCI Controller #3",
    ),
    (
        0x8086,
        0x293a,
        "82801I (ICH9 Family) USB2 EHCI Controller #1",
    ),
    (0x8086, 0x293e, "82801I (ICH9 Family) HD Audio Controller"),
    (
        0x8086,
        0x2668,
        "82801FB/FBM/FR/FW/FRW (ICH6 Family) High Definition Audio Controller",
    ),
    (0x8086, 0x2415, "82801AA AC'97 Audio Controller"),
    (
        0x8086,
        0x24cd,
        "82801DB/DBM (ICH4/ICH4-M) USB2 EHCI Controller",
    ),
    (0x8086, 0x244e, "82801 PCI Bridge"),
    (0x8086, 0x100e, "82540EM Gigabit Ethernet Controller"),
    (0x8086, 0x10d3, "82574L Gigabit Network Connection"),
    (0x8086, 0x10c9, "82576 Gigabit Network Connection"),
    (0x8086, 0x1209, "8255xER/82551IT Fast Ethernet Controller"),
    (
        0x8086,
        0x3420,
        "7500/5520/5500/X58 I/O Hub PCI Express Root Port 0",
    ),
    (0x8086, 0x5845, "QEMU NVM Express Controller"),
    (0x8086, 0x25ab, "6300ESB Watchdog Timer"),
    (
        0x8086,
        0x1e31,
        "7 Series/C210 Series Chipset Family USB xHCI Host Controller",
    ),
    // QEMU's own devices (Red Hat 1b36, QEMU 1234).
    (0x1b36, 0x0001, "QEMU PCI-PCI bridge"),
    (0x1b36, 0x0002, "QEMU PCI 16550A Adapter"),
    (0x1b36, 0x0003, "QEMU PCI Dual-port 16550A Adapter"),
    (0x1b36, 0x0004, "QEMU PCI Quad-port 16550A Adapter"),
    (0x1b36, 0x0005, "QEMU PCI Test Device"),
    (0x1b36, 0x0008, "QEMU PCIe Host bridge"),
    (0x1b36, 0x0009, "QEMU PCI Expander bridge"),
    (0x1b36, 0x000b, "QEMU PCIe Expander bridge"),
    (0x1b36, 0x000c, "QEMU PCIe Root port"),
    (0x1b36, 0x000d, "QEMU XHCI Host Controller"),
    (0x1b36, 0x000e, "QEMU PCIe-to-PCI bridge"),
    (0x1b36, 0x0010, "QEMU NVM Express Controller"),
    (0x1b36, 0x0011, "QEMU PVPanic device"),
    (0x1b36, 0x0100, "QXL paravirtual graphic card"),
    (0x1234, 0x1111, "Bochs/QEMU standard VGA"),
    (0x1af4, 0x1110, "Inter-VM shared memory"),
    (0x1013, 0x00b8, "GD 5446"),
    (0x1022, 0x2000, "79c970 [PCnet32 LANCE]"),
    (
        0x10ec,
        0x8139,
        "RTL-8100/8101L/8139 PCI Fast Ethernet Adapter",
    ),
    (0x15ad, 0x0405, "SVGA II Adapter"),
    (0x15ad, 0x07b0, "VMXNET3 Ethernet Controller"),
    (0x1000, 0x0012, "53c895a"),
];

/// Virtio device types by virtio device ID (Virtio 1.2 §5).
const VIRTIO_TYPES: &[(u16, &str)] = &[
    (1, "network"),
    (2, "block"),
    (3, "console"),
    (4, "RNG"),
    (5, "memory balloon"),
    (8, "SCSI"),
    (9, "9P filesystem"),
    (16, "GPU"),
    (18, "input"),
    (19, "socket"),
    (20, "crypto"),
    (23, "IOMMU"),
    (24, "memory"),
    (25, "sound"),
    (26, "filesystem"),
    (27, "pmem"),
];

/// Transitional virtio device IDs (0x1000..0x103f) carry these types (Virtio 1.2 §4.1.2.1).
const VIRTIO_TRANSITIONAL: &[(u16, u16)] = &[
    (0x1000, 1),
    (0x1001, 2),
    (0x1002, 5),
    (0x1003, 3),
    (0x1004, 8),
    (0x1005, 4),
    (0x1009, 9),
];

pub fn vendor_name(vendor: u16) -> Option<&'static str> {
    VENDORS.iter().find(|(v, _)| *v == vendor).map(|(_, n)| *n)
}

/// The type of a virtio function: `Some("block")` for 1af4:1001 or 1af4:1042.
pub fn virtio_type(vendor: u16, device: u16) -> Option<&'static str> {
    if vendor != 0x1af4 {
        return None;
    }
    let virtio_id = match device {
        0x1040..=0x107f => device - 0x1040,
        _ => VIRTIO_TRANSITIONAL.iter().find(|(d, _)| *d == device)?.1,
    };
    VIRTIO_TYPES
        .iter()
        .find(|(i, _)| *i == virtio_id)
        .map(|(_, n)| *n)
}

/// What to print for a device: the table entry, else a virtio type.
pub enum DeviceName {
    Known(&'static str),
    Virtio(&'static str),
}

impl core::fmt::Display for DeviceName {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            DeviceName::Known(n) => f.write_str(n),
            DeviceName::Virtio(t) => write!(f, "Virtio {} device", t),
        }
    }
}

pub fn device_name(vendor: u16, device: u16) -> Option<DeviceName> {
    if let Some((_, _, n)) = DEVICES
        .iter()
        .find(|(v, d, _)| *v == vendor && *d == device)
    {
        return Some(DeviceName::Known(n));
    }
    virtio_type(vendor, device).map(DeviceName::Virtio)
}

/// Base class names.
const CLASSES: &[(u8, &str)] = &[
    (0x00, "Unclassified device"),
    (0x01, "Mass storage controller"),
    (0x02, "Network controller"),
    (0x03, "Display controller"),
    (0x04, "Multimedia controller"),
    (0x05, "Memory controller"),
    (0x06, "Bridge"),
    (0x07, "Communication controller"),
    (0x08, "Generic system peripheral"),
    (0x09, "Input device controller"),
    (0x0a, "Docking station"),
    (0x0b, "Processor"),
    (0x0c, "Serial bus controller"),
    (0x0d, "Wireless controller"),
    (0x0e, "Intelligent controller"),
    (0x0f, "Satellite communications controller"),
    (0x10, "Encryption controller"),
    (0x11, "Signal processing controller"),
    (0x12, "Processing accelerators"),
    (0x13, "Non-Essential Instrumentation"),
    (0x40, "Coprocessor"),
    (0xff, "Unassigned class"),
];

/// (base class, subclass, name).
const SUBCLASSES: &[(u8, u8, &str)] = &[
    (0x00, 0x00, "Non-VGA unclassified device"),
    (0x00, 0x01, "VGA compatible unclassified device"),
    (0x00, 0x05, "Image coprocessor"),
    (0x01, 0x00, "SCSI storage controller"),
    (0x01, 0x01, "IDE interface"),
    (0x01, 0x02, "Floppy disk controller"),
    (0x01, 0x03, "IPI bus controller"),
    (0x01, 0x04, "RAID bus controller"),
    (0x01, 0x05, "ATA controller"),
    (0x01, 0x06, "SATA controller"),
    (0x01, 0x07, "Serial Attached SCSI controller"),
    (0x01, 0x08, "Non-Volatile memory controller"),
    (0x01, 0x09, "Universal Flash Storage controller"),
    (0x01, 0x80, "Mass storage controller"),
    (0x02, 0x00, "Ethernet controller"),
    (0x02, 0x01, "Token ring network controller"),
    (0x02, 0x02, "FDDI network controller"),
    (0x02, 0x03, "ATM network controller"),
    (0x02, 0x04, "ISDN controller"),
    (0x02, 0x05, "WorldFip controller"),
    (0x02, 0x06, "PICMG controller"),
    (0x02, 0x07, "Infiniband controller"),
    (0x02, 0x08, "Fabric controller"),
    (0x02, 0x80, "Network controller"),
    (0x03, 0x00, "VGA compatible controller"),
    (0x03, 0x01, "XGA compatible controller"),
    (0x03, 0x02, "3D controller"),
    (0x03, 0x80, "Display controller"),
    (0x04, 0x00, "Multimedia video controller"),
    (0x04, 0x01, "Multimedia audio controller"),
    (0x04, 0x02, "Computer telephony device"),
    (0x04, 0x03, "Audio device"),
    (0x04, 0x80, "Multimedia controller"),
    (0x05, 0x00, "RAM memory"),
    (0x05, 0x01, "FLASH memory"),
    (0x05, 0x02, "CXL"),
    (0x05, 0x80, "Memory controller"),
    (0x06, 0x00, "Host bridge"),
    (0x06, 0x01, "ISA bridge"),
    (0x06, 0x02, "EISA bridge"),
    (0x06, 0x03, "MicroChannel bridge"),
    (0x06, 0x04, "PCI bridge"),
    (0x06, 0x05, "PCMCIA bridge"),
    (0x06, 0x06, "NuBus bridge"),
    (0x06, 0x07, "CardBus bridge"),
    (0x06, 0x08, "RACEway bridge"),
    (0x06, 0x09, "Semi-transparent PCI-to-PCI bridge"),
    (0x06, 0x0a, "InfiniBand to PCI host bridge"),
    (0x06, 0x0b, "Advanced Switching to PCI host bridge"),
    (0x06, 0x80, "Bridge"),
    (0x07, 0x00, "Serial controller"),
    (0x07, 0x01, "Parallel controller"),
    (0x07, 0x02, "Multiport serial controller"),
    (0x07, 0x03, "Modem"),
    (0x07, 0x04, "GPIB controller"),
    (0x07, 0x05, "Smart Card controller"),
    (0x07, 0x80, "Communication controller"),
    (0x08, 0x00, "PIC"),
    (0x08, 0x01, "DMA controller"),
    (0x08, 0x02, "Timer"),
    (0x08, 0x03, "RTC"),
    (0x08, 0x04, "PCI Hot-plug controller"),
    (0x08, 0x05, "SD Host controller"),
    (0x08, 0x06, "IOMMU"),
    (0x08, 0x80, "System peripheral"),
    (0x08, 0x99, "Timing Card"),
    (0x09, 0x00, "Keyboard controller"),
    (0x09, 0x01, "Digitizer Pen"),
    (0x09, 0x02, "Mouse controller"),
    (0x09, 0x03, "Scanner controller"),
    (0x09, 0x04, "Gameport controller"),
    (0x09, 0x80, "Input device controller"),
    (0x0a, 0x00, "Generic Docking Station"),
    (0x0a, 0x80, "Docking Station"),
    (0x0b, 0x00, "386"),
    (0x0b, 0x01, "486"),
    (0x0b, 0x02, "Pentium"),
    (0x0b, 0x10, "Alpha"),
    (0x0b, 0x20, "Power PC"),
    (0x0b, 0x30, "MIPS"),
    (0x0b, 0x40, "Co-processor"),
    (0x0c, 0x00, "FireWire (IEEE 1394)"),
    (0x0c, 0x01, "ACCESS Bus"),
    (0x0c, 0x02, "SSA"),
    (0x0c, 0x03, "USB controller"),
    (0x0c, 0x04, "Fibre Channel"),
    (0x0c, 0x05, "SMBus"),
    (0x0c, 0x06, "InfiniBand"),
    (0x0c, 0x07, "IPMI Interface"),
    (0x0c, 0x08, "SERCOS interface"),
    (0x0c, 0x09, "CANBUS"),
    (0x0c, 0x80, "Serial bus controller"),
    (0x0d, 0x00, "IRDA controller"),
    (0x0d, 0x01, "Consumer IR controller"),
    (0x0d, 0x10, "RF controller"),
    (0x0d, 0x11, "Bluetooth"),
    (0x0d, 0x12, "Broadband"),
    (0x0d, 0x20, "802.1a controller"),
    (0x0d, 0x21, "802.1b controller"),
    (0x0d, 0x80, "Wireless controller"),
    (0x0e, 0x00, "I2O"),
    (0x0f, 0x01, "Satellite TV controller"),
    (0x0f, 0x02, "Satellite audio communication controller"),
    (0x0f, 0x03, "Satellite voice communication controller"),
    (0x0f, 0x04, "Satellite data communication controller"),
    (0x10, 0x00, "Network and computing encryption device"),
    (0x10, 0x10, "Entertainment encryption device"),
    (0x10, 0x80, "Encryption controller"),
    (0x11, 0x00, "DPIO module"),
    (0x11, 0x01, "Performance counters"),
    (0x11, 0x10, "Communication synchronizer"),
    (0x11, 0x20, "Signal processing management"),
    (0x11, 0x80, "Signal processing controller"),
    (0x12, 0x00, "Processing accelerators"),
    (
        0x12,
        0x01,
        "SNIA Smart Data Accelerator Interface (SDXI) controller",
    ),
];

/// The most specific class name: the subclass, else the base class.
pub fn class_name(base: u8, sub: u8) -> Option<&'static str> {
    SUBCLASSES
        .iter()
        .find(|(b, s, _)| *b == base && *s == sub)
        .map(|(_, _, n)| *n)
        .or_else(|| CLASSES.iter().find(|(b, _)| *b == base).map(|(_, n)| *n))
}

/// Standard capability names (PCI Code and ID Assignment 1.11 §2).
pub fn cap_name(id: u8) -> &'static str {
    match id {
        0x01 => "Power Management",
        0x02 => "AGP",
        0x03 => "Vital Product Data",
        0x04 => "Slot Identification",
        0x05 => "MSI",
        0x06 => "CompactPCI Hot Swap",
        0x07 => "PCI-X",
        0x08 => "HyperTransport",
        0x09 => "Vendor Specific",
        0x0a => "Debug port",
        0x0b => "CompactPCI Central Resource Control",
        0x0c => "PCI Hot-Plug",
        0x0d => "Bridge Subsystem Vendor ID",
        0x0e => "AGP 8x",
        0x0f => "Secure Device",
        0x10 => "PCI Express",
        0x11 => "MSI-X",
        0x12 => "SATA Data/Index Configuration",
        0x13 => "Advanced Features",
        0x14 => "Enhanced Allocation",
        0x15 => "Flattening Portal Bridge",
        _ => "Unknown",
    }
}

/// Extended capability names (PCI Code and ID Assignment 1.11 §3).
pub fn ext_cap_name(id: u16) -> &'static str {
    match id {
        0x0000 => "Null",
        0x0001 => "Advanced Error Reporting",
        0x0002 | 0x0009 => "Virtual Channel",
        0x0003 => "Device Serial Number",
        0x0004 => "Power Budgeting",
        0x0005 => "Root Complex Link Declaration",
        0x0006 => "Root Complex Internal Link Control",
        0x0007 => "Root Complex Event Collector Endpoint Association",
        0x0008 => "Multi-Function Virtual Channel",
        0x000a => "Root Complex Register Block",
        0x000b => "Vendor-Specific Extended",
        0x000c => "Configuration Access Correlation",
        0x000d => "Access Control Services",
        0x000e => "Alternative Routing-ID Interpretation",
        0x000f => "Address Translation Services",
        0x0010 => "Single Root I/O Virtualization",
        0x0011 => "Multi-Root I/O Virtualization",
        0x0012 => "Multicast",
        0x0013 => "Page Request Interface",
        0x0015 => "Resizable BAR",
        0x0016 => "Dynamic Power Allocation",
        0x0017 => "TPH Requester",
        0x0018 => "Latency Tolerance Reporting",
        0x0019 => "Secondary PCI Express",
        0x001a => "Protocol Multiplexing",
        0x001b => "Process Address Space ID",
        0x001c => "LN Requester",
        0x001d => "Downstream Port Containment",
        0x001e => "L1 PM Substates",
        0x001f => "Precision Time Measurement",
        0x0020 => "PCI Express over M-PHY",
        0x0021 => "FRS Queueing",
        0x0022 => "Readiness Time Reporting",
        0x0023 => "Designated Vendor-Specific",
        0x0024 => "VF Resizable BAR",
        0x0025 => "Data Link Feature",
        0x0026 => "Physical Layer 16.0 GT/s",
        0x0027 => "Lane Margining at the Receiver",
        0x0028 => "Hierarchy ID",
        0x0029 => "Native PCIe Enclosure Management",
        0x002a => "Physical Layer 32.0 GT/s",
        0x002b => "Alternate Protocol",
        0x002c => "System Firmware Intermediary",
        0x002d => "Shadow Functions",
        0x002e => "Data Object Exchange",
        0x002f => "Device 3",
        0x0030 => "Integrity and Data Encryption",
        0x0031 => "Physical Layer 64.0 GT/s",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

    #[test]
    fn names() {
        assert_eq!(class_name(0x01, 0x00), Some("SCSI storage controller"));
        assert_eq!(class_name(0x01, 0x42), Some("Mass storage controller"));
        assert_eq!(class_name(0x77, 0x00), None);
        assert_eq!(vendor_name(0x1af4), Some("Red Hat, Inc."));
        assert_eq!(
            format!("{}", device_name(0x1af4, 0x1042).unwrap()),
            "Virtio block device"
        );
        assert_eq!(
            format!("{}", device_name(0x1af4, 0x1000).unwrap()),
            "Virtio network device"
        );
        assert_eq!(
            format!("{}", device_name(0x8086, 0x100e).unwrap()),
            "82540EM Gigabit Ethernet Controller"
        );
        assert!(device_name(0x1af4, 0x1040).is_none());
        assert!(device_name(0x8086, 0xffff).is_none());
    }

    #[test]
    fn tables_have_no_duplicate_keys() {
        for (i, (v, _)) in VENDORS.iter().enumerate() {
            assert!(
                !VENDORS[i + 1..].iter().any(|(w, _)| w == v),
                "vendor {:04x}",
                v
            );
        }
        for (i, (v, d, _)) in DEVICES.iter().enumerate() {
            assert!(
                !DEVICES[i + 1..].iter().any(|(w, e, _)| w == v && e == d),
                "device {:04x}:{:04x}",
                v,
                d
            );
        }
        for (i, (b, s, _)) in SUBCLASSES.iter().enumerate() {
            assert!(
                !SUBCLASSES[i + 1..].iter().any(|(c, t, _)| c == b && t == s),
                "class {:02x}{:02x}",
                b,
                s
            );
        }
    }
}
