//! The monitor's core: command table types, argument access and output helpers, the monitor
//! that runs typed lines (with the built-ins `help` and `history`), tab completion and the line
//! editor for the serial console.
//!
//! Commands are generic over a context type `C` (the kernel's machine, or a fake in tests) and
//! print through a `core::fmt::Write` sink, never to the UART directly.
#![no_std]
extern crate alloc;

pub mod args;
pub mod complete;
pub mod editor;
pub mod history;
pub mod keys;
pub mod monitor;
pub mod out;
pub mod parse;
pub mod registry;

#[cfg(test)]
mod fuzz;

/// The byte-stream traits `Editor::readline` takes, re-exported so the kernel implements exactly
/// the version this crate uses.
pub use embedded_io;

pub use args::Args;
pub use complete::{Completer, Completion};
pub use editor::{Editor, ReadlineError};
pub use history::History;
pub use monitor::{Invoker, Monitor, Outcome};
pub use registry::{Command, Handler, Registry};

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
