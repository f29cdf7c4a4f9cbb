//! `hello [ARGS...]`: prints each argument on its own line.
#![no_std]
#![no_main]

fn main(args: impl Iterator<Item = &'static [u8]>) -> u64 {
    let mut n = 0;
    capmon_user::write(b"hello from user mode\n");
    for a in args {
        capmon_user::write(a);
        capmon_user::write(b"\n");
        n += 1;
    }
    if n == 0 {
        capmon_user::write(b"(no arguments)\n");
    }
    0
}

capmon_user::entry!(main);
