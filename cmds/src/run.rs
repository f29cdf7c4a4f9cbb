//! The `run` command: a boot binary from the registry as a user-mode program. The machine
//! loads and runs it (`RunHost::run_program`); this file gives it the binary and the input
//! object as readBinaryChunk readers and says how the program ended.
use crate::bins::BinsHost;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use capmon_block::partition::borrow;
use capmon_shell::{fail, outln, Args, CmdError, CmdResult, Command};
use core::fmt::Write;

/// How a program ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    Exited(u64),
    /// A fault in the program: the exception report.
    Faulted(String),
    /// Stopped by Ctrl-C.
    Killed,
}

/// Reads `len` bytes at `offset` of an object (the binary, or the input).
pub type Reader<'a> = &'a mut dyn FnMut(u64, u32) -> Result<Vec<u8>, String>;

/// What the machine needs to run a program.
pub struct RunRequest<'a> {
    pub name: &'a str,
    /// The binary's size (what `read` serves).
    pub size: u64,
    pub args: Vec<&'a str>,
    pub read: Reader<'a>,
    /// The program's input object (handle 0), if one was given.
    pub input: Option<Reader<'a>>,
    /// Filled in by the machine: system calls made, and milliseconds run.
    pub syscalls: u64,
    pub ms: u64,
}

pub trait RunHost: BinsHost {
    /// Loads and runs the program; its console output goes to `o`. An error when it could not
    /// start (a bad ELF, no memory, no user mode).
    fn run_program(
        &mut self,
        req: &mut RunRequest<'_>,
        o: &mut dyn Write,
    ) -> Result<RunOutcome, String>;
}

const USAGE: &str = "run NAME [ARGS...] [< INPUT]";

const LONG_HELP: &str = "\
run NAME [ARGS...] [< INPUT]
    runs boot binary NAME (see `bins`) in user mode: its segments are read from the ISO on
    demand and checked (static x86-64 executable, segments in the user half, page-aligned,
    inside the file, not overlapping, not writable and executable, the entry in code). ARGS
    are its arguments; < INPUT hands it boot binary INPUT as its input object (handle 0).
    Ctrl-C stops it. A fault is reported as the program's and the monitor goes on.";

pub fn commands<S: RunHost>() -> Vec<Command<S>> {
    vec![Command {
        name: "run",
        group: "boot",
        subcommands: &[],
        usage: USAGE,
        help: "run a boot binary in user mode",
        long_help: LONG_HELP,
        run: run::<S>,
    }]
}

fn run<S: RunHost>(s: &mut S, a: &mut Args, o: &mut dyn Write) -> CmdResult {
    let words = a.rest();
    let Some((&name, rest)) = words.split_first() else {
        return Err(CmdError::Usage);
    };
    let (args, input): (Vec<&str>, Option<&str>) = match rest.iter().position(|w| *w == "<") {
        Some(i) if i + 2 == rest.len() => (rest[..i].to_vec(), Some(rest[i + 1])),
        Some(_) => return Err(CmdError::Usage),
        None => (rest.to_vec(), None),
    };
    let reg = match s.boot_bins() {
        Some(Ok(r)) => r.clone(),
        Some(Err(e)) => return Err(fail!("no boot binaries: {}", e)),
        None => return Err(fail!("no boot binaries: there is no boot CD (cd0)")),
    };
    let dev = s
        .blk()
        .get(&reg.device)
        .ok_or_else(|| fail!("the boot device {} is gone", reg.device))?;
    let size = reg
        .get(name)
        .ok_or_else(|| fail!("no boot binary '{}'", name))?
        .size;
    if let Some(i) = input {
        if reg.get(i).is_none() {
            return Err(fail!("no boot binary '{}' for the input", i));
        }
    }
    let chunk = |bin: &str, off: u64, len: u32| -> Result<Vec<u8>, String> {
        let mut d = borrow(&dev).map_err(|e| alloc::format!("{}: {}", reg.device, e))?;
        reg.read_chunk(&mut **d, bin, off, len)
            .map_err(|e| alloc::format!("{}", e))
    };
    let mut read_bin = |off: u64, len: u32| chunk(name, off, len);
    let mut read_input = |off: u64, len: u32| chunk(input.unwrap_or(""), off, len);
    let mut req = RunRequest {
        name,
        size,
        args,
        read: &mut read_bin,
        input: if input.is_some() {
            Some(&mut read_input)
        } else {
            None
        },
        syscalls: 0,
        ms: 0,
    };
    let outcome = s.run_program(&mut req, o).map_err(|e| fail!("{}", e))?;
    match outcome {
        RunOutcome::Exited(st) => {
            outln!(
                o,
                "run: {} exited with status {} ({} system calls, {} ms)",
                name,
                st,
                req.syscalls,
                req.ms
            );
            Ok(())
        }
        RunOutcome::Faulted(report) => {
            let _ = o.write_str(&report);
            Err(fail!(
                "{} faulted in user mode and was stopped ({} system calls, {} ms); the kernel is unharmed",
                name,
                req.syscalls,
                req.ms
            ))
        }
        RunOutcome::Killed => Err(fail!(
            "{} stopped by Ctrl-C ({} system calls, {} ms)",
            name,
            req.syscalls,
            req.ms
        )),
    }
}
