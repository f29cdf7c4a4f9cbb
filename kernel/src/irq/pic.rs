//! The 8259A pair: remapped off the exception vectors and masked, so a stray or spurious
//! interrupt cannot be mistaken for a CPU exception (8259A datasheet, ICW1-ICW4).
use x86_64::instructions::port::Port;

const MASTER_CMD: u16 = 0x20;
const MASTER_DATA: u16 = 0x21;
const SLAVE_CMD: u16 = 0xa0;
const SLAVE_DATA: u16 = 0xa1;

pub fn remap_and_mask() {
    // SAFETY: the 8259 ports belong to this module; the sequence is the datasheet's
    // initialisation (edge, cascade, 8086 mode), then every line masked.
    unsafe {
        let mut mc = Port::<u8>::new(MASTER_CMD);
        let mut md = Port::<u8>::new(MASTER_DATA);
        let mut sc = Port::<u8>::new(SLAVE_CMD);
        let mut sd = Port::<u8>::new(SLAVE_DATA);
        let mut delay = Port::<u8>::new(0x80);
        let mut w = |p: &mut Port<u8>, v: u8| {
            p.write(v);
            delay.write(0);
        };
        w(&mut mc, 0x11); // ICW1: init, ICW4 follows
        w(&mut sc, 0x11);
        w(&mut md, super::VEC_PIC_BASE); // ICW2: vector base
        w(&mut sd, super::VEC_PIC_BASE + 8);
        w(&mut md, 0x04); // ICW3: slave on IRQ 2
        w(&mut sd, 0x02); // ICW3: cascade identity
        w(&mut md, 0x01); // ICW4: 8086 mode
        w(&mut sd, 0x01);
        w(&mut md, 0xff); // OCW1: mask all
        w(&mut sd, 0xff);
    }
}
