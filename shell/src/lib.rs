//! The monitor's core: command table types, argument access and output helpers.
//!
//! Commands are generic over a context type `C` (the kernel's machine, or a fake in tests) and
//! print through a `core::fmt::Write` sink, never to the UART directly.
#![no_std]
extern crate alloc;

pub mod args;
pub mod parse;
pub mod registry;
pub mod out;

pub use args::Args;
pub use registry::{Command, Registry};

use alloc::string::String;

/// Why a command did not complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CmdError {
    /// Wrong or missing arguments; the monitor prints the command's usage line.
    Usage,
    /// Wrong argument with an explanation; printed as `error: MSG` followed by the usage line.
    BadArg(String),
    /// The command ran and failed; printed as `error: MSG`.
    Failed(String),
}

pub type CmdResult = Result<(), CmdError>;

/// `CmdError::Failed` from a format string: `fail!("no such device '{}'", name)`.
#[macro_export]
macro_rules! fail {
    ($($arg:tt)*) => { $crate::CmdError::Failed(::alloc::format!($($arg)*)) };
}

/// `CmdError::BadArg` from a format string.
#[macro_export]
macro_rules! bad_arg {
    ($($arg:tt)*) => { $crate::CmdError::BadArg(::alloc::format!($($arg)*)) };
}

/// Writes a line to an output sink, ignoring sink errors (a console cannot usefully fail).
#[macro_export]
macro_rules! outln {
    ($o:expr) => { { let _ = ::core::fmt::Write::write_str($o, "\n"); } };
    ($o:expr, $($arg:tt)*) => { {
        let _ = ::core::fmt::Write::write_fmt($o, ::core::format_args!($($arg)*));
        let _ = ::core::fmt::Write::write_str($o, "\n");
    } };
}

/// Writes to an output sink without a newline.
#[macro_export]
macro_rules! out {
    ($o:expr, $($arg:tt)*) => { {
        let _ = ::core::fmt::Write::write_fmt($o, ::core::format_args!($($arg)*));
    } };
}
