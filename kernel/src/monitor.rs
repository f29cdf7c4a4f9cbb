//! The monitor loop: read a line with the editor, run it with each command under the fault
//! guard, repeat.
use crate::arch::traps::{guarded, with_captured_reports};
use crate::console::{ConsoleOut, SerialIo};
use crate::machine::Machine;
use crate::smp::percpu::FaultLog;
use alloc::boxed::Box;
use alloc::string::String;
use capmon_shell::{Editor, Monitor, Outcome, Registry};

pub fn run(m: &mut Machine) -> ! {
    let mut monitor = Monitor::new(Registry::new(capmon_cmds::all::<Machine>()));
    if let Err(e) = monitor.check_table() {
        log::error!("command table: {:?}", e);
    }
    let mut editor = Editor::new(monitor.completer());
    loop {
        let line = match editor.readline("capmon> ", &mut SerialIo) {
            Ok(l) => l,
            Err(_) => continue,
        };
        monitor.execute(m, line, &mut ConsoleOut, &mut |run, m, args, out| {
            guarded(|| run(m, args, out))
        });
    }
}

/// Runs one command line on the calling CPU as the monitor would, under this CPU's fault
/// guard, with everything it prints (fault and panic reports included) captured: for `on`.
pub fn run_captured(m: &mut Machine, line: &str) -> (String, Outcome) {
    let mut monitor = Monitor::new(Registry::new(capmon_cmds::all::<Machine>()));
    let mut out = String::new();
    let mut reports = Box::new(FaultLog::new());
    let outcome = with_captured_reports(&mut reports, || {
        monitor.execute(m, line, &mut out, &mut |run, m, args, out| {
            guarded(|| run(m, args, out))
        })
    });
    out.push_str(reports.as_str());
    (out, outcome)
}
