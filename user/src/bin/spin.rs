//! `spin`: loops until it is killed (Ctrl-C at the monitor).
#![no_std]
#![no_main]

fn main(_: impl Iterator<Item = &'static [u8]>) -> u64 {
    capmon_user::write(b"spin: looping until stopped\n");
    loop {
        core::hint::spin_loop();
    }
}

capmon_user::entry!(main);
