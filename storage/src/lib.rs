//! capmon's storage: Cap'n Proto objects in a content-addressed Store, names in a Namespace,
//! files in a Directory, all reached through capabilities (`caps`), over one of two engines:
//! `RamEngine` (memory) and `DiskEngine` (redb on a capmon data partition, `disk`).
//! docs/storage.md describes the on-disk format.
#![no_std]
extern crate alloc;

pub mod backend;
pub mod caps;
pub mod disk;
pub mod engine;
pub mod error;
pub mod fsck;
pub mod name;
pub mod object;
pub mod ram;
pub mod rights;
pub mod session;
pub mod show;
#[cfg(test)]
mod tests;
// The crash-consistency harness (test-only: it needs std, for threads and unwinding).
#[cfg(all(test, feature = "std"))]
mod crash;

pub use caps::{Directory, File, Namespace, Store, Value};
pub use engine::Engine;
pub use error::{Result, StoreError};
pub use ram::RamEngine;
pub use rights::Rights;
