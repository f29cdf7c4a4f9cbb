# Multiboot2 header and the 32-bit trampoline into long mode.
#
# GRUB loads the kernel's segments at their physical addresses (LMA = VMA - KERNEL_VMA) and jumps
# to `_start32` in 32-bit protected mode, paging off, EAX = 0x36d76289, EBX = physical address of
# the boot information. We build page tables that map
#   - the first 4 GiB at 0 (identity, dropped once Rust runs),
#   - the first 4 GiB at the direct-map offset 0xFFFF800000000000, and
#   - the first 2 GiB at KERNEL_VMA 0xFFFFFFFF80000000 (where the kernel is linked),
# with 2 MiB pages (1 GiB pages are not on every CPU model QEMU offers), enter long mode, jump to
# the higher half and call `kmain_multiboot2(magic, info_phys)`.

.set KERNEL_VMA, 0xFFFFFFFF80000000
.set MB2_MAGIC, 0xE85250D6
.set MB2_ARCH_I386, 0

.section .multiboot_header, "a"
.balign 8
mb2_header:
    .long MB2_MAGIC
    .long MB2_ARCH_I386
    .long mb2_header_end - mb2_header
    .long -(MB2_MAGIC + MB2_ARCH_I386 + (mb2_header_end - mb2_header))
    # Entry address tag (Multiboot2 spec 3.1.6): the physical address of the 32-bit entry.
    .balign 8
    .short 3
    .short 0
    .long 12
    .long _start32 - KERNEL_VMA
    # End tag.
    .balign 8
    .short 0
    .short 0
    .long 8
mb2_header_end:

.section .boot32, "ax"
.code32
.global _start32
_start32:
    cli
    cld
    mov ebp, eax                    # multiboot2 magic
    mov esi, ebx                    # boot information (physical)
    mov esp, offset boot_stack_top - KERNEL_VMA

    # 2048 PD entries (4 contiguous page directories) covering 0..4 GiB with 2 MiB pages.
    mov edi, offset boot_pd - KERNEL_VMA
    mov eax, 0x83                   # present | writable | page size
    mov ecx, 2048
1:  mov dword ptr [edi], eax
    mov dword ptr [edi + 4], 0
    add eax, 0x200000
    add edi, 8
    dec ecx
    jnz 1b

    # Low PDPT: 4 entries -> the 4 page directories.
    mov edi, offset boot_pdpt_low - KERNEL_VMA
    mov eax, offset boot_pd - KERNEL_VMA
    or eax, 3
    mov ecx, 4
2:  mov dword ptr [edi], eax
    mov dword ptr [edi + 4], 0
    add eax, 0x1000
    add edi, 8
    dec ecx
    jnz 2b

    # High PDPT: entries 510 and 511 -> the first two page directories (kernel window).
    mov edi, offset boot_pdpt_high - KERNEL_VMA
    mov eax, offset boot_pd - KERNEL_VMA
    or eax, 3
    mov dword ptr [edi + 510 * 8], eax
    add eax, 0x1000
    mov dword ptr [edi + 511 * 8], eax

    # PML4: 0 (identity) and 256 (direct map) -> low PDPT; 511 -> high PDPT.
    mov edi, offset boot_pml4 - KERNEL_VMA
    mov eax, offset boot_pdpt_low - KERNEL_VMA
    or eax, 3
    mov dword ptr [edi], eax
    mov dword ptr [edi + 256 * 8], eax
    mov eax, offset boot_pdpt_high - KERNEL_VMA
    or eax, 3
    mov dword ptr [edi + 511 * 8], eax

    # CR4.PAE, CR3, EFER.LME|NXE, CR0.PG|WP.
    mov eax, cr4
    or eax, 1 << 5
    mov cr4, eax
    mov eax, offset boot_pml4 - KERNEL_VMA
    mov cr3, eax
    mov ecx, 0xC0000080
    rdmsr
    or eax, (1 << 8) | (1 << 11)
    wrmsr
    mov eax, cr0
    or eax, (1 << 31) | (1 << 16)
    mov cr0, eax

    lgdt [boot_gdt_ptr - KERNEL_VMA]
    mov eax, offset long_mode_low - KERNEL_VMA
    push 0x08
    push eax
    retf

.code64
long_mode_low:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    xor ax, ax
    mov fs, ax
    mov gs, ax
    movabs rax, offset long_mode_high
    jmp rax

.section .text
long_mode_high:
    movabs rsp, offset boot_stack_top
    mov edi, ebp                    # magic (zero-extended)
    mov esi, esi                    # boot information physical address (zero-extended)
    xor ebp, ebp
    call kmain_multiboot2
3:  cli
    hlt
    jmp 3b

# Limine protocol entry: Limine has already put us in long mode at our link address with its own
# stack; switch to ours so both paths run the same stack.
.global _start_limine
_start_limine:
    movabs rsp, offset boot_stack_top
    xor ebp, ebp
    call kmain_limine
4:  cli
    hlt
    jmp 4b

.section .rodata
.balign 8
boot_gdt:
    .quad 0
    .quad 0x00AF9A000000FFFF        # 64-bit code
    .quad 0x00CF92000000FFFF        # data
boot_gdt_end:
boot_gdt_ptr:
    .short boot_gdt_end - boot_gdt - 1
    .long boot_gdt - KERNEL_VMA

.section .bss
.balign 4096
boot_pml4:      .skip 4096
boot_pdpt_low:  .skip 4096
boot_pdpt_high: .skip 4096
boot_pd:        .skip 4096 * 4
.global boot_stack_bottom
boot_stack_bottom:
    .skip 64 * 1024
.global boot_stack_top
boot_stack_top:
