/*
 * A counter whose state lives only in registers and on the stack: the loop
 * is assembly, so the compiler keeps nothing of its own around it. r12
 * counts, r13 holds r12 * K, a stack slot counts in step with r12, and
 * rbx/r14/r15 hold constants. After SIGUSR1 the loop stops and checks
 * that they all still agree. The harness compares the final count with
 * r12 in the dump image: a re-executed program would have counted from 0.
 */
#include <stdint.h>

#include "prog.h"

#define K 0x9e3779b97f4a7c15ULL

int main(void)
{
	/* bound to the registers the loop uses: no memory operand may be
	 * addressed off rsp while the loop has moved it */
	register uint64_t count asm("r12"), scaled asm("r13"), c1 asm("rbx");
	register uint64_t c2 asm("r14"), c3 asm("r15");
	uint64_t stacked, bad;

	prog_trigger_init();
	say("READY");
	asm volatile(
		"	movabs	$0x0123456789abcdef, %%rbx\n"
		"	movabs	$0xfedcba9876543210, %%r14\n"
		"	movabs	$0x5555aaaa5555aaaa, %%r15\n"
		"	xor	%%r12, %%r12\n"
		"	xor	%%r13, %%r13\n"
		"	xor	%%ecx, %%ecx\n"
		"	sub	$16, %%rsp\n"
		"	movq	$0, (%%rsp)\n"
		"1:	inc	%%r12\n"
		"	incq	(%%rsp)\n"
		"	movabs	%[k], %%rax\n"
		"	add	%%rax, %%r13\n"
		/* lockstep checks: stack slot == r12, r13 == r12 * K */
		"	cmp	(%%rsp), %%r12\n"
		"	jne	2f\n"
		"	mov	%%r12, %%rax\n"
		"	movabs	%[k], %%rdx\n"
		"	imul	%%rdx, %%rax\n"
		"	cmp	%%rax, %%r13\n"
		"	jne	2f\n"
		"	cmpl	$0, %[go]\n"
		"	je	1b\n"
		"	jmp	3f\n"
		"2:	mov	$1, %%ecx\n"
		"3:	mov	(%%rsp), %%rax\n"
		"	add	$16, %%rsp\n"
		: "=r"(count), "=r"(scaled), "=r"(c1), "=r"(c2), "=r"(c3), "=a"(stacked), "=c"(bad)
		: [k] "i"(K), [go] "m"(prog_go)
		: "rdx", "cc", "memory");

	CHECK(!bad, "counter registers and stack fell out of step");
	CHECK(stacked == count, "stack counter %llu, register counter %llu",
	      (unsigned long long)stacked, (unsigned long long)count);
	CHECK(scaled == count * K, "r13 = %#llx, expected r12 * K = %#llx",
	      (unsigned long long)scaled, (unsigned long long)(count * K));
	CHECK(c1 == 0x0123456789abcdefULL, "rbx = %#llx", (unsigned long long)c1);
	CHECK(c2 == 0xfedcba9876543210ULL, "r14 = %#llx", (unsigned long long)c2);
	CHECK(c3 == 0x5555aaaa5555aaaaULL, "r15 = %#llx", (unsigned long long)c3);
	say("counter=%llu", (unsigned long long)count);
	return prog_finish();
}
