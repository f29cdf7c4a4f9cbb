//! The command table: each command declares its name, group, subcommands, usage and help beside
//! its handler, in one `Command` value.
use crate::{Args, CmdResult};
use alloc::vec::Vec;
use core::fmt::Write;

/// A command handler: the context, the arguments after the command name, the output sink.
pub type Handler<C> = fn(&mut C, &mut Args, &mut dyn Write) -> CmdResult;

pub struct Command<C: ?Sized> {
    /// What the user types: `lspci`, `blk`.
    pub name: &'static str,
    /// The heading `help` lists it under: "system", "memory", "pci", "storage", ...
    pub group: &'static str,
    /// Words completed after the name (`blk` → `read`, `write`, ...). Empty if none.
    pub subcommands: &'static [&'static str],
    /// The usage line without the leading `usage: `, e.g. `md ADDR [COUNT] [-b|-w|-d|-q] [-p]`.
    pub usage: &'static str,
    /// One line for `help`.
    pub help: &'static str,
    /// Several lines for `help CMD`.
    pub long_help: &'static str,
    pub run: Handler<C>,
}

impl<C: ?Sized> Clone for Command<C> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<C: ?Sized> Copy for Command<C> {}

/// The set of commands the monitor knows.
pub struct Registry<C: ?Sized> {
    pub commands: Vec<Command<C>>,
}

impl<C: ?Sized> Registry<C> {
    pub fn new(commands: Vec<Command<C>>) -> Self {
        Registry { commands }
    }

    pub fn find(&self, name: &str) -> Option<&Command<C>> {
        self.commands.iter().find(|c| c.name == name)
    }
}
