/* empty.S: the smallest Multiboot2 kernel, the baseline of `make bench-boot`. GRUB loads it
 * exactly as it loads capmon (same grub.cfg settings); it writes one byte (0x06, ACK: never
 * part of GRUB's own output) to COM1 and halts. Whatever capmon takes beyond this is its own
 * initialization. Multiboot2 spec 1.0, §3.1 (header) and §3.3 (machine state: 32-bit
 * protected mode, paging off). Built by scripts/bench-boot.sh with `as --32` and `ld`. */
    .set MB2_MAGIC, 0xe85250d6
    .set MB2_ARCH_I386, 0
    .set COM1, 0x3f8
    .set MARK, 0x06

    .section .text
    .code32
    .balign 8
mb2_header:
    .long MB2_MAGIC
    .long MB2_ARCH_I386
    .long mb2_header_end - mb2_header
    .long -(MB2_MAGIC + MB2_ARCH_I386 + (mb2_header_end - mb2_header))
    /* end tag: type 0, flags 0, size 8 */
    .word 0
    .word 0
    .long 8
mb2_header_end:

    .globl _start
_start:
    /* GRUB programmed the UART (serial --unit=0 --speed=115200): just send the byte. */
    mov $COM1, %dx
    mov $MARK, %al
    out %al, %dx
1:  cli
    hlt
    jmp 1b
