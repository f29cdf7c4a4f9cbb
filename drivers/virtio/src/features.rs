//! Feature bits (virtio 1.2 §6 for the transport, §5.2.3 for virtio-blk) and their names.
use crate::DeviceType;

// Reserved (device-independent) feature bits, virtio 1.2 §6.
pub const RING_INDIRECT_DESC: u64 = 1 << 28;
pub const RING_EVENT_IDX: u64 = 1 << 29;
/// Modern device: virtio 1.x semantics (little-endian, modern layout). Required by capmon.
pub const VERSION_1: u64 = 1 << 32;
/// The device accesses memory through the platform's DMA translation. Our `Dma::phys` is
/// the address the device must use, so accepting it is correct with or without an IOMMU.
pub const ACCESS_PLATFORM: u64 = 1 << 33;
pub const RING_PACKED: u64 = 1 << 34;
pub const IN_ORDER: u64 = 1 << 35;
pub const ORDER_PLATFORM: u64 = 1 << 36;
pub const SR_IOV: u64 = 1 << 37;
pub const NOTIFICATION_DATA: u64 = 1 << 38;
pub const NOTIF_CONFIG_DATA: u64 = 1 << 39;
pub const RING_RESET: u64 = 1 << 40;

/// What every driver accepts when offered.
pub const TRANSPORT_ACCEPTED: u64 = VERSION_1 | ACCESS_PLATFORM;

/// virtio-blk feature bits, virtio 1.2 §5.2.3.
pub mod blk {
    pub const SIZE_MAX: u64 = 1 << 1;
    pub const SEG_MAX: u64 = 1 << 2;
    pub const GEOMETRY: u64 = 1 << 4;
    pub const RO: u64 = 1 << 5;
    pub const BLK_SIZE: u64 = 1 << 6;
    pub const FLUSH: u64 = 1 << 9;
    pub const TOPOLOGY: u64 = 1 << 10;
    pub const CONFIG_WCE: u64 = 1 << 11;
    pub const MQ: u64 = 1 << 12;
    pub const DISCARD: u64 = 1 << 13;
    pub const WRITE_ZEROES: u64 = 1 << 14;
    pub const LIFETIME: u64 = 1 << 15;
    pub const SECURE_ERASE: u64 = 1 << 16;
    pub const ZONED: u64 = 1 << 17;
}

const TRANSPORT_NAMES: &[(u64, &str)] = &[
    (RING_INDIRECT_DESC, "RING_INDIRECT_DESC"),
    (RING_EVENT_IDX, "RING_EVENT_IDX"),
    (VERSION_1, "VERSION_1"),
    (ACCESS_PLATFORM, "ACCESS_PLATFORM"),
    (RING_PACKED, "RING_PACKED"),
    (IN_ORDER, "IN_ORDER"),
    (ORDER_PLATFORM, "ORDER_PLATFORM"),
    (SR_IOV, "SR_IOV"),
    (NOTIFICATION_DATA, "NOTIFICATION_DATA"),
    (NOTIF_CONFIG_DATA, "NOTIF_CONFIG_DATA"),
    (RING_RESET, "RING_RESET"),
];

const BLK_NAMES: &[(u64, &str)] = &[
    (blk::SIZE_MAX, "SIZE_MAX"),
    (blk::SEG_MAX, "SEG_MAX"),
    (blk::GEOMETRY, "GEOMETRY"),
    (blk::RO, "RO"),
    (blk::BLK_SIZE, "BLK_SIZE"),
    (blk::FLUSH, "FLUSH"),
    (blk::TOPOLOGY, "TOPOLOGY"),
    (blk::CONFIG_WCE, "CONFIG_WCE"),
    (blk::MQ, "MQ"),
    (blk::DISCARD, "DISCARD"),
    (blk::WRITE_ZEROES, "WRITE_ZEROES"),
    (blk::LIFETIME, "LIFETIME"),
    (blk::SECURE_ERASE, "SECURE_ERASE"),
    (blk::ZONED, "ZONED"),
];

/// The name of one feature bit of a device type, `None` if capmon does not know it.
pub fn name(ty: DeviceType, bit: u32) -> Option<&'static str> {
    let mask = 1u64.checked_shl(bit)?;
    let device: &[(u64, &str)] = match ty {
        DeviceType::Block => BLK_NAMES,
        _ => &[],
    };
    device
        .iter()
        .chain(TRANSPORT_NAMES)
        .find(|(m, _)| *m == mask)
        .map(|(_, n)| *n)
}

/// Formats a feature set as space-separated names; unknown bits print as `bit<N>`.
pub struct FeatureNames {
    pub ty: DeviceType,
    pub bits: u64,
}

impl core::fmt::Display for FeatureNames {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut first = true;
        for bit in 0..64u32 {
            if self.bits & (1u64 << bit) == 0 {
                continue;
            }
            if !first {
                f.write_str(" ")?;
            }
            first = false;
            match name(self.ty, bit) {
                Some(n) => f.write_str(n)?,
                None => write!(f, "bit{}", bit)?,
            }
        }
        if first {
            f.write_str("none")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

    #[test]
    fn names_known_and_unknown_bits() {
        let s = FeatureNames {
            ty: DeviceType::Block,
            bits: blk::SEG_MAX | blk::FLUSH | VERSION_1 | (1 << 50),
        };
        assert_eq!(format!("{}", s), "SEG_MAX FLUSH VERSION_1 bit50");
        // A blk bit means nothing on another device type.
        let s = FeatureNames {
            ty: DeviceType::Net,
            bits: blk::FLUSH,
        };
        assert_eq!(format!("{}", s), "bit9");
        assert_eq!(
            format!(
                "{}",
                FeatureNames {
                    ty: DeviceType::Block,
                    bits: 0
                }
            ),
            "none"
        );
        assert_eq!(name(DeviceType::Block, 64), None);
    }
}
