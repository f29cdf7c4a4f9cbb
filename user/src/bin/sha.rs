//! `sha`: the SHA-256 of its input object, read in chunks through the read call.
#![no_std]
#![no_main]

use sha2::{Digest, Sha256};

fn main(_: impl Iterator<Item = &'static [u8]>) -> u64 {
    let mut h = Sha256::new();
    let mut buf = [0u8; 4096];
    let mut off = 0u64;
    loop {
        let n = capmon_user::read(capmon_user::INPUT, off, &mut buf);
        if n < 0 {
            capmon_user::write(b"sha: cannot read the input\n");
            return 1;
        }
        if n == 0 {
            break;
        }
        h.update(&buf[..n as usize]);
        off += n as u64;
    }
    let mut line = [0u8; 71];
    line[..7].copy_from_slice(b"sha256 ");
    for (i, b) in h.finalize().iter().enumerate() {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        line[7 + 2 * i] = HEX[usize::from(b >> 4)];
        line[8 + 2 * i] = HEX[usize::from(b & 15)];
    }
    capmon_user::write(&line);
    capmon_user::write(b"\n");
    0
}

capmon_user::entry!(main);
