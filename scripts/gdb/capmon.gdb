# capmon.gdb: settings and helper commands for debugging capmon under QEMU's gdbstub.
# Loaded by scripts/gdb/run-gdb.sh (`make gdb`) after the kernel ELF (symbols); that script
# then runs `target remote` and `capmon-break-kmain`. Helpers:
#   capmon-break-kmain   hardware breakpoints on both entry points (Multiboot2 and Limine)
#   capmon-bt            backtrace: gdb's own, then a walk of the frame-pointer chain
#   capmon-regs          the control registers and the instruction pointer with its symbol
#   capmon-sym ADDR      which function ADDR is in
set pagination off
set confirm off
set disassembly-flavor intel
set print pretty on
set architecture i386:x86-64

# A hardware breakpoint: the kernel is not in memory yet when QEMU starts (GRUB loads it),
# so a software breakpoint (an int3 written into RAM) would be overwritten.
define capmon-break-kmain
  hbreak *kmain_multiboot2
  hbreak *kmain_limine
end
document capmon-break-kmain
Hardware breakpoints on kmain_multiboot2 and kmain_limine (the two Rust entry points).
end

# The helpers switch to C for their casts (the kernel's frames are Rust), then back to auto.
# The kernel is built with frame pointers (.cargo/config.toml): [rbp] is the caller's rbp,
# [rbp+8] the return address. The walk stops at a null or non-kernel rbp, or after 32 frames.
define capmon-bt
  bt 32
  printf "frame-pointer chain:\n"
  set language c
  set $capmon_fp = (unsigned long)$rbp
  set $capmon_n = 0
  printf "#0  0x%016lx ", (unsigned long)$pc
  info symbol $pc
  while $capmon_n < 32 && $capmon_fp >= 0xffff800000000000 && ($capmon_fp & 7) == 0
    set $capmon_ret = *(unsigned long *)($capmon_fp + 8)
    set $capmon_n = $capmon_n + 1
    if $capmon_ret < 0xffffffff80000000
      loop_break
    end
    # The symbol of ret-1: a call to a noreturn function can be a function's last
    # instruction, and its return address then belongs to the next function.
    printf "#%-2d 0x%016lx in ", $capmon_n, $capmon_ret
    info symbol $capmon_ret - 1
    set $capmon_fp = *(unsigned long *)$capmon_fp
  end
  set language auto
end
document capmon-bt
Backtrace by gdb (DWARF), then by walking the rbp chain (works where unwind info does not).
end

define capmon-regs
  set language c
  printf "rip 0x%016lx ", (unsigned long)$pc
  info symbol $pc
  printf "rsp 0x%016lx  rbp 0x%016lx\n", (unsigned long)$rsp, (unsigned long)$rbp
  info registers eflags cr0 cr2 cr3 cr4 efer
  set language auto
end
document capmon-regs
Instruction pointer (with its symbol), stack registers and the control registers.
end

define capmon-sym
  info symbol $arg0
end
document capmon-sym
capmon-sym ADDR: the function ADDR is in (like the kernel's own fault reports).
end
