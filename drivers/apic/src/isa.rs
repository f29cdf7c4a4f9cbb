//! Where an ISA IRQ lands: identity-mapped to GSI n, edge-triggered, active high, unless the
//! MADT has an interrupt source override for it (ACPI 6.5 §5.2.12.5).
use capmon_acpi::madt::{InterruptOverride, Polarity, Trigger};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IsaRoute {
    pub irq: u8,
    pub gsi: u32,
    pub active_low: bool,
    pub level: bool,
    /// An override changed something.
    pub overridden: bool,
}

pub fn isa_route(irq: u8, overrides: &[InterruptOverride]) -> IsaRoute {
    match overrides.iter().find(|o| o.bus == 0 && o.irq == irq) {
        None => IsaRoute {
            irq,
            gsi: irq as u32,
            active_low: false,
            level: false,
            overridden: false,
        },
        Some(o) => IsaRoute {
            irq,
            gsi: o.gsi,
            // "Conforms" means the bus's own convention; ISA's is edge, active high.
            active_low: matches!(o.polarity, Polarity::ActiveLow),
            level: matches!(o.trigger, Trigger::Level),
            overridden: true,
        },
    }
}

/// The ISA IRQ (if any) that an override moved onto `gsi`, so identity routing does not put
/// two sources on one pin (e.g. IRQ 0 -> GSI 2 on QEMU: GSI 2 is no longer IRQ 2).
pub fn gsi_taken_by_override(gsi: u32, irq: u8, overrides: &[InterruptOverride]) -> bool {
    overrides
        .iter()
        .any(|o| o.bus == 0 && o.gsi == gsi && o.irq != irq)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ov(irq: u8, gsi: u32, p: Polarity, t: Trigger) -> InterruptOverride {
        InterruptOverride {
            bus: 0,
            irq,
            gsi,
            polarity: p,
            trigger: t,
        }
    }

    #[test]
    fn qemu_overrides() {
        // What QEMU's MADT carries: IRQ0 -> GSI2, and 5, 9, 10, 11 level active-high.
        let o = [
            ov(0, 2, Polarity::Conforms, Trigger::Conforms),
            ov(5, 5, Polarity::ActiveHigh, Trigger::Level),
            ov(9, 9, Polarity::ActiveHigh, Trigger::Level),
        ];
        assert_eq!(
            isa_route(4, &o),
            IsaRoute {
                irq: 4,
                gsi: 4,
                active_low: false,
                level: false,
                overridden: false
            }
        );
        let t = isa_route(0, &o);
        assert_eq!(
            (t.gsi, t.level, t.active_low, t.overridden),
            (2, false, false, true)
        );
        let s = isa_route(9, &o);
        assert_eq!((s.gsi, s.level, s.active_low), (9, true, false));
        assert!(gsi_taken_by_override(2, 2, &o));
        assert!(!gsi_taken_by_override(4, 4, &o));
    }

    #[test]
    fn active_low_override() {
        let o = [ov(9, 20, Polarity::ActiveLow, Trigger::Level)];
        let r = isa_route(9, &o);
        assert_eq!((r.gsi, r.active_low, r.level), (20, true, true));
    }
}
