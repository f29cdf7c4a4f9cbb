//! Enumeration: every segment, bus, device and function reachable from each segment's first
//! bus through bridges.
use crate::access::{ConfigSpace, FunctionView};
use crate::bdf::{DEVICES_PER_BUS, FUNCTIONS_PER_DEVICE};
use crate::header::{BridgeBuses, Header, HeaderType};
use crate::Bdf;
use alloc::vec::Vec;
use core::fmt;

/// One present function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Function {
    pub header: Header,
    /// Bus numbers, for PCI-to-PCI and CardBus bridges.
    pub bridge: Option<BridgeBuses>,
    /// The bridge whose secondary bus this function sits on; `None` on a root bus.
    pub parent: Option<Bdf>,
}

impl Function {
    pub fn bdf(&self) -> Bdf {
        self.header.bdf
    }
}

/// Something about the bus topology that enumeration did not follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanProblem {
    /// Firmware left the bridge's secondary bus at 0.
    BridgeUnconfigured { bridge: Bdf },
    /// The secondary bus is not above the bridge's own bus.
    SecondaryNotBelow { bridge: Bdf, secondary: u8 },
    /// The secondary bus is outside what the access mechanism reaches (ECAM bus range).
    BusUnreachable { bridge: Bdf, bus: u8 },
    /// Another bridge already leads to this bus (a loop or overlapping bus numbers).
    BusRevisited { bridge: Bdf, bus: u8 },
}

impl fmt::Display for ScanProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScanProblem::BridgeUnconfigured { bridge } => {
                write!(f, "bridge {} has no secondary bus assigned", bridge)
            }
            ScanProblem::SecondaryNotBelow { bridge, secondary } => {
                write!(
                    f,
                    "bridge {} secondary bus {:02x} is not below it",
                    bridge, secondary
                )
            }
            ScanProblem::BusUnreachable { bridge, bus } => {
                write!(
                    f,
                    "bridge {} leads to bus {:02x}, outside the config window",
                    bridge, bus
                )
            }
            ScanProblem::BusRevisited { bridge, bus } => {
                write!(
                    f,
                    "bridge {} leads to bus {:02x}, already scanned",
                    bridge, bus
                )
            }
        }
    }
}

/// A root bus: where enumeration of a segment starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RootBus {
    pub segment: u16,
    pub bus: u8,
}

/// The result of enumeration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Topology {
    /// Sorted by address.
    pub functions: Vec<Function>,
    pub roots: Vec<RootBus>,
    pub problems: Vec<ScanProblem>,
}

impl Topology {
    pub fn get(&self, bdf: Bdf) -> Option<&Function> {
        self.functions.iter().find(|f| f.bdf() == bdf)
    }

    /// The functions on one bus, in address order.
    pub fn on_bus(&self, segment: u16, bus: u8) -> impl Iterator<Item = &Function> + '_ {
        self.functions
            .iter()
            .filter(move |f| f.bdf().segment == segment && f.bdf().bus == bus)
    }

    /// The bus that `bridge` leads to, if enumeration went through it.
    pub fn child_bus(&self, bridge: Bdf) -> Option<u8> {
        self.functions
            .iter()
            .find(|f| f.parent == Some(bridge))
            .map(|f| f.bdf().bus)
    }
}

/// Buses per segment.
const BUSES: usize = 256;

/// Enumerates everything `space` reaches.
pub fn scan(space: &dyn ConfigSpace) -> Topology {
    let mut topo = Topology::default();
    for range in space.bus_ranges() {
        let mut visited = [false; BUSES];
        // Pending buses and the bridge that leads to each; every bus is pushed at most once.
        let mut pending: Vec<(u8, Option<Bdf>)> = Vec::new();
        for bus in root_buses(space, range.segment, range.start) {
            if let Some(v) = visited.get_mut(bus as usize) {
                if !*v {
                    *v = true;
                    topo.roots.push(RootBus {
                        segment: range.segment,
                        bus,
                    });
                    pending.push((bus, None));
                }
            }
        }
        while let Some((bus, parent)) = pending.pop() {
            let first_new = topo.functions.len();
            scan_bus(space, range.segment, bus, parent, &mut topo.functions);
            let bridges: Vec<Function> = topo.functions[first_new..]
                .iter()
                .filter(|f| f.bridge.is_some())
                .copied()
                .collect();
            let mut children = Vec::new();
            for f in &bridges {
                let Some(buses) = f.bridge else { continue };
                let bridge = f.bdf();
                let next = buses.secondary;
                let problem = if next == 0 {
                    Some(ScanProblem::BridgeUnconfigured { bridge })
                } else if next <= bus {
                    Some(ScanProblem::SecondaryNotBelow {
                        bridge,
                        secondary: next,
                    })
                } else if !(range.start..=range.end).contains(&next) {
                    Some(ScanProblem::BusUnreachable { bridge, bus: next })
                } else if visited[next as usize] {
                    Some(ScanProblem::BusRevisited { bridge, bus: next })
                } else {
                    None
                };
                match problem {
                    Some(p) => topo.problems.push(p),
                    None => {
                        visited[next as usize] = true;
                        children.push((next, Some(bridge)));
                    }
                }
            }
            // Depth first, lowest device first.
            pending.extend(children.into_iter().rev());
        }
    }
    topo.functions.sort_by_key(|f| f.bdf());
    topo
}

/// A segment's root buses: its first bus, plus, on chipsets with several host bridges as
/// functions of device 0 on that bus, bus N for host-bridge function N.
fn root_buses(space: &dyn ConfigSpace, segment: u16, first: u8) -> Vec<u8> {
    let mut roots = alloc::vec![first];
    let Some(bdf) = Bdf::new(segment, first, 0, 0) else {
        return roots;
    };
    let Some(h) = Header::read(&FunctionView { space, bdf }, bdf) else {
        return roots;
    };
    if !(h.is_host_bridge() && h.multifunction) {
        return roots;
    }
    for func in 1..FUNCTIONS_PER_DEVICE {
        let Some(bdf) = Bdf::new(segment, first, 0, func) else {
            continue;
        };
        match Header::read(&FunctionView { space, bdf }, bdf) {
            Some(h) if h.is_host_bridge() => roots.push(first.saturating_add(func)),
            _ => {}
        }
    }
    roots
}

fn scan_bus(
    space: &dyn ConfigSpace,
    segment: u16,
    bus: u8,
    parent: Option<Bdf>,
    out: &mut Vec<Function>,
) {
    for dev in 0..DEVICES_PER_BUS {
        let Some(bdf0) = Bdf::new(segment, bus, dev, 0) else {
            continue;
        };
        let Some(h0) = Header::read(&FunctionView { space, bdf: bdf0 }, bdf0) else {
            continue;
        };
        let funcs = if h0.multifunction {
            FUNCTIONS_PER_DEVICE
        } else {
            1
        };
        for func in 0..funcs {
            let Some(bdf) = Bdf::new(segment, bus, dev, func) else {
                continue;
            };
            let view = FunctionView { space, bdf };
            let header = if func == 0 {
                Some(h0)
            } else {
                Header::read(&view, bdf)
            };
            let Some(header) = header else { continue };
            let bridge = match header.header_type {
                HeaderType::Bridge | HeaderType::CardBus => Some(BridgeBuses::read(&view)),
                _ => None,
            };
            out.push(Function {
                header,
                bridge,
                parent,
            });
        }
    }
}
