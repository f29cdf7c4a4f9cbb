//! The serial console on COM1 (16550 UART, 115200 8N1): the one global output device.
//!
//! All output goes through `Console`, which turns "\n" into "\r\n". Exception and panic reports
//! use `emergency()`, which takes the lock by force: the interrupted code may have held it.
use core::fmt;
use core::sync::atomic::{AtomicUsize, Ordering};
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
    // An interrupt per received byte: the handler moves each into the ring at once, so a
    // paste never waits for the FIFO's character timeout.
    let config = Config {
        baud_rate: uart_16550::BaudRate::Baud115200,
        fifo_trigger_level: Some(uart_16550::spec::registers::FifoTriggerLevel::One),
        ..Config::default()
    };
    if uart.init(config).is_ok() {
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

/// Received bytes, moved out of the UART by its interrupt handler (one producer: the COM1
/// handler; one consumer: the monitor). A full ring leaves bytes in the UART, whose receiver
/// then holds them (QEMU stops feeding a full FIFO).
struct RxRing {
    buf: core::cell::UnsafeCell<[u8; RX_RING]>,
    /// Next slot the handler writes (only the handler stores it).
    head: AtomicUsize,
    /// Next slot the monitor reads (only the monitor stores it).
    tail: AtomicUsize,
}

const RX_RING: usize = 64 * 1024;

// SAFETY: single producer and single consumer; each slot is written before `head` publishes
// it (Release) and read after `head` is seen (Acquire), and is not rewritten until `tail` has
// moved past it.
unsafe impl Sync for RxRing {}

static RX: RxRing = RxRing {
    buf: core::cell::UnsafeCell::new([0; RX_RING]),
    head: AtomicUsize::new(0),
    tail: AtomicUsize::new(0),
};

impl RxRing {
    fn push(&self, b: u8) -> bool {
        let h = self.head.load(Ordering::Relaxed);
        let next = (h + 1) % RX_RING;
        if next == self.tail.load(Ordering::Acquire) {
            return false;
        }
        // SAFETY: slot `h` is not visible to the consumer until `head` moves (see Sync).
        unsafe { (*self.buf.get())[h] = b };
        self.head.store(next, Ordering::Release);
        true
    }

    fn pop(&self) -> Option<u8> {
        let t = self.tail.load(Ordering::Relaxed);
        if t == self.head.load(Ordering::Acquire) {
            return None;
        }
        // SAFETY: slot `t` was published by the producer's Release store of `head`.
        let b = unsafe { (*self.buf.get())[t] };
        self.tail.store((t + 1) % RX_RING, Ordering::Release);
        Some(b)
    }

    fn is_empty(&self) -> bool {
        self.tail.load(Ordering::Relaxed) == self.head.load(Ordering::Acquire)
    }
}

/// 16550 registers the interrupt path touches directly (the lock-holding transmit path may be
/// interrupted mid-byte; reading LSR and RBR does not disturb it).
const COM1_RBR: u16 = COM1;
const COM1_IER: u16 = COM1 + 1;
const COM1_LSR: u16 = COM1 + 5;
const LSR_DATA_READY: u8 = 1;

/// COM1's interrupt handler: drain the receiver into the ring.
fn com1_rx() {
    // SAFETY: reading LSR/RBR of COM1, which this console owns; see the constants above.
    unsafe {
        let mut lsr = x86_64::instructions::port::Port::<u8>::new(COM1_LSR);
        let mut rbr = x86_64::instructions::port::Port::<u8>::new(COM1_RBR);
        // Bounded: a broken UART that always says "data ready" cannot hold the CPU here.
        for _ in 0..256 {
            if lsr.read() & LSR_DATA_READY == 0 {
                break;
            }
            let b = rbr.read();
            // Ctrl-C while a program runs stops it (the line editor never sees it).
            if b == 0x03 && crate::user::running() {
                crate::user::request_kill();
                continue;
            }
            if !RX.push(b) {
                break;
            }
        }
    }
}

/// Input from another keyboard (the PS/2 one), as if typed on COM1: into the same ring, with
/// Ctrl-C stopping a running program as it does from COM1. From an interrupt handler.
pub fn push_input(bytes: &[u8]) {
    for &b in bytes {
        if b == 0x03 && crate::user::running() {
            crate::user::request_kill();
            continue;
        }
        if !RX.push(b) {
            break;
        }
    }
}

/// Routes COM1 (ISA IRQ 4) through the I/O APIC and turns on its receive interrupt.
pub fn enable_rx_interrupt() {
    crate::irq::set_handler(crate::irq::VEC_ISA_BASE + 4, com1_rx);
    match crate::irq::ioapic::route_isa(4, "COM1") {
        Ok(r) => {
            let present = CONSOLE.lock().uart.is_some();
            if present {
                // SAFETY: IER of COM1 (DLAB is 0 after init): received-data interrupt only.
                unsafe { x86_64::instructions::port::Port::<u8>::new(COM1_IER).write(0x01) };
                log::info!("COM1: receive interrupt on GSI {}", r.gsi);
            }
        }
        Err(e) => log::warn!("COM1: no receive interrupt ({}); polling", e),
    }
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
            if let Some(b) = RX.pop() {
                buf[0] = b;
                return Ok(1);
            }
            // Also poll the UART: before its interrupt is routed, or if an edge was missed
            // while the ring was full. With interrupts off, so the handler cannot reorder
            // bytes between ring and UART.
            let polled = x86_64::instructions::interrupts::without_interrupts(|| {
                if RX.is_empty() {
                    CONSOLE.lock().try_read()
                } else {
                    None
                }
            });
            if let Some(b) = polled {
                buf[0] = b;
                return Ok(1);
            }
            // Halt until the next interrupt (a byte, or the tick).
            crate::irq::idle_unless(|| !RX.is_empty());
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
