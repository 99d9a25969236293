/*
 * Parasite entry. The dumper sets rip = __export_entry, rdi = the shared
 * area, rsp = top of the parasite stack (16-byte aligned).
 */
#include <asm/unistd.h>

	.section .head.text, "ax"
	.globl __export_entry
	.hidden __export_entry
__export_entry:
	call	parasite_main
1:	movl	$__NR_pause, %eax	/* wait for the dumper to take us back */
	syscall
	jmp	1b

	.section .note.GNU-stack, "", @progbits
