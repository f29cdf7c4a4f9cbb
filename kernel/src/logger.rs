//! The `log` facade on the serial console: `[   1.234567] INFO  module: message`.
use crate::console::CONSOLE;
use core::fmt::Write;
use log::{LevelFilter, Log, Metadata, Record};

struct SerialLogger;

static LOGGER: SerialLogger = SerialLogger;

impl Log for SerialLogger {
    fn enabled(&self, m: &Metadata) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let ns = crate::time::now_ns();
        let mut c = CONSOLE.lock();
        let _ = writeln!(
            c,
            "[{:5}.{:06}] {:5} {}: {}",
            ns / 1_000_000_000,
            ns / 1000 % 1_000_000,
            r.level(),
            r.module_path().unwrap_or("?"),
            r.args()
        );
    }

    fn flush(&self) {}
}

pub fn init(level: LevelFilter) {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}

pub fn parse_level(s: &str) -> Option<LevelFilter> {
    Some(match s {
        "off" => LevelFilter::Off,
        "error" => LevelFilter::Error,
        "warn" => LevelFilter::Warn,
        "info" => LevelFilter::Info,
        "debug" => LevelFilter::Debug,
        "trace" => LevelFilter::Trace,
        _ => return None,
    })
}
