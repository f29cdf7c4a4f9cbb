//! How a driver waits for the device: the seam lives in `capmon-hal` (shared by every driver);
//! re-exported here for virtio's callers.
pub use capmon_hal::irq::{Completion, Interrupt, Polling};
