/* Multiboot entry for the validation guest: header, flat GDT, stack, IRQ0 stub. */
    .set MB_MAGIC, 0x1BADB002
    .set MB_FLAGS, 0x00000003          /* page-align modules, want the memory map */
    .set MB_CHECKSUM, -(MB_MAGIC + MB_FLAGS)

    .section .multiboot, "a"
    .align 4
    .long MB_MAGIC
    .long MB_FLAGS
    .long MB_CHECKSUM

    .section .bss
    .align 16
stack_bottom:
    .skip 65536
stack_top:

    .section .data
    .align 8
gdt:
    .quad 0x0000000000000000           /* null */
    .quad 0x00CF9A000000FFFF           /* 0x08: flat 32-bit code */
    .quad 0x00CF92000000FFFF           /* 0x10: flat 32-bit data */
gdt_end:
gdt_ptr:
    .word gdt_end - gdt - 1
    .long gdt

    .section .text
    .global _start
_start:
    cli
    mov $stack_top, %esp
    lgdt gdt_ptr
    ljmp $0x08, $1f
1:
    mov $0x10, %ecx
    mov %ecx, %ds
    mov %ecx, %es
    mov %ecx, %fs
    mov %ecx, %gs
    mov %ecx, %ss
    push %ebx                          /* multiboot info */
    push %eax                          /* multiboot magic */
    call kmain
2:
    cli
    hlt
    jmp 2b

/* IRQ0 (PIT channel 0, 1 kHz): count the tick, acknowledge the PIC, return. */
    .global irq0_stub
irq0_stub:
    push %eax
    incl ticks
    mov $0x20, %al
    outb %al, $0x20
    pop %eax
    iret

/* Other interrupt vectors: ignore (a spurious IRQ must not kill the guest). */
    .global ignore_stub
ignore_stub:
    iret

/* CPU exceptions (vectors 0-31): say so on COM1 and stop; the harness sees the 'FAULT'. */
    .global fault_stub
fault_stub:
    cli
    call guest_fault
3:
    hlt
    jmp 3b

    .section .note.GNU-stack, "", @progbits
