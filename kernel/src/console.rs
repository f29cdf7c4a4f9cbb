//! The serial console on COM1 (16550 UART, 115200 8N1): the one global output device.
//!
//! All output goes through `Console`, which turns "\n" into "\r\n". Exception and panic reports
//! use `emergency()`, which takes the lock by force: the interrupted code may have held it.
use core::fmt;
use spin::Mutex;
use uart_16550::{backend::PioBackend, Config, Uart16550};

/// COM1's I/O base (PC/AT convention).
const COM1: u16 = 0x3f8;

pub struct Serial {
    uart: Option<Uart16550<PioBackend>>,
}

/// The console: exactly one, behind one lock.
pub static CONSOLE: Mutex<Serial> = Mutex::new(Serial { uart: None });

pub fn init() {
    // SAFETY: COM1's eight registers at 0x3f8 belong to the console only.
    let Ok(mut uart) = (unsafe { Uart16550::new_port(COM1) }) else {
        return;
    };
    if uart.init(Config::default()).is_ok() {
        CONSOLE.lock().uart = Some(uart);
    }
}

impl Serial {
    pub fn write_bytes(&mut self, bytes: &[u8]) {
        if let Some(u) = self.uart.as_mut() {
            for &b in bytes {
                if b == b'\n' {
                    u.send_bytes_exact(b"\r");
                }
                u.send_bytes_exact(&[b]);
            }
        }
    }

    /// A byte if one has arrived.
    pub fn try_read(&mut self) -> Option<u8> {
        self.uart.as_mut()?.try_receive_byte().ok()
    }
}

impl fmt::Write for Serial {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.write_bytes(s.as_bytes());
        Ok(())
    }
}

/// A `fmt::Write` that locks the console per call: what commands print into.
pub struct ConsoleOut;

impl fmt::Write for ConsoleOut {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        CONSOLE.lock().write_bytes(s.as_bytes());
        Ok(())
    }
}

/// The console for fault and panic reports, taken even if the faulting code held the lock.
pub fn emergency() -> spin::MutexGuard<'static, Serial> {
    if CONSOLE.is_locked() {
        // SAFETY: we are on the fault path; the holder was interrupted and will never resume
        // (the guard unwinds to the monitor or the kernel halts), so its critical section is over.
        unsafe { CONSOLE.force_unlock() };
    }
    CONSOLE.lock()
}

/// The serial port as the line editor's byte stream (blocking reads).
pub struct SerialIo;

impl embedded_io::ErrorType for SerialIo {
    type Error = core::convert::Infallible;
}

impl embedded_io::Read for SerialIo {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if let Some(b) = CONSOLE.lock().try_read() {
                buf[0] = b;
                return Ok(1);
            }
            core::hint::spin_loop();
        }
    }
}

impl embedded_io::Write for SerialIo {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        // The editor emits its own CR/LF sequences: send bytes untranslated.
        let mut c = CONSOLE.lock();
        if let Some(u) = c.uart.as_mut() {
            u.send_bytes_exact(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}
