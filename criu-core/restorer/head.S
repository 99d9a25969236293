/*
 * Restorer entry: cryo's child jumps here with rdi = struct restorer_args,
 * rsi = the top of the restorer stack. From here on nothing of cryo is
 * used. When the restorer is done it sits in pause() until cryo takes the
 * task over with ptrace and sets its final registers.
 */
#include <asm/unistd.h>

	.section .head.text, "ax"
	.globl __export_entry
	.hidden __export_entry
__export_entry:
	movq	%rsi, %rsp
	xorl	%ebp, %ebp
	call	restorer_main
1:	movl	$__NR_pause, %eax
	syscall
	jmp	1b

	/* cryo runs the final munmap of this area from here, with ptrace */
	.globl __export_syscall
	.hidden __export_syscall
__export_syscall:
	syscall
	ud2

	.section .note.GNU-stack, "", @progbits
