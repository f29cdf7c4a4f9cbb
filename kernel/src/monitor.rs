//! The monitor loop: read a line with the editor, run it with each command under the fault
//! guard, repeat.
use crate::arch::traps::guarded;
use crate::console::{ConsoleOut, SerialIo};
use crate::machine::Machine;
use capmon_shell::{Editor, Monitor, Registry};

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
