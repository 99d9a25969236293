/*
 * fpu [tamper]: SSE/AVX/x87 state held only in registers. One assembly
 * block loads ymm0-ymm15 (full 256 bits) with random patterns, sets a
 * non-default MXCSR (round toward zero, a sticky flag) and x87 control word
 * (round toward zero), pushes two 80-bit values on the x87 stack, then
 * spins until SIGUSR1 adding ymm14 to ymm15 on every turn. Afterwards it
 * stores everything and checks: ymm0-14 unchanged, ymm15 = start + count *
 * ymm14 in each lane, MXCSR, the control word and both x87 values intact.
 * A restore that lost the upper ymm halves (restoring only FXSAVE state)
 * or the x87 stack fails here. "tamper" clobbers ymm9 before the stores.
 */
#include <stdint.h>
#include <sys/random.h>

#include "prog.h"

#define MXCSR_SET 0x7fa0	/* all exceptions masked, round toward zero, PE flag */
#define X87_CW_SET 0x0f7f	/* all masked, 64-bit precision, round toward zero */

struct state {
	uint64_t ymm[16][4];
	unsigned char x87[2][16];	/* two 80-bit values, 16-byte slots */
	uint32_t mxcsr;
	uint16_t cw;
} __attribute__((aligned(32)));

int main(int argc, char **argv)
{
	int tamper = argc > 1 && !strcmp(argv[1], "tamper");
	static struct state in, out;
	uint64_t count = 0;
	uint32_t mxcsr_default = 0x1f80;
	uint16_t cw_default = 0x037f;

	if (!__builtin_cpu_supports("avx")) {
		say("FAIL: this CPU has no AVX");
		return 2;
	}
	prog_trigger_init();
	if (getrandom(in.ymm, sizeof(in.ymm), 0) != sizeof(in.ymm)) {
		say("FAIL: getrandom: %s", strerror(errno));
		return 2;
	}
	for (int l = 0; l < 4; l++)
		in.ymm[14][l] = l + 1;
	/* 80-bit values: pi-ish and a negative number, built from random bits */
	memcpy(in.x87[0], &in.ymm[0][0], 8);
	in.x87[0][8] = 0x00;
	in.x87[0][9] = 0x40;	/* exponent 0x4000, sign + */
	in.x87[0][7] |= 0x80;	/* explicit integer bit: a normal number */
	memcpy(in.x87[1], &in.ymm[1][0], 8);
	in.x87[1][8] = 0x10;
	in.x87[1][9] = 0xc0;	/* negative */
	in.x87[1][7] |= 0x80;
	in.mxcsr = MXCSR_SET;
	in.cw = X87_CW_SET;

	say("READY");
	asm volatile(
		"	fldcw	%[cw_in]\n"
		"	ldmxcsr	%[mx_in]\n"
		"	fldt	0(%[x87in])\n"
		"	fldt	16(%[x87in])\n"
		"	vmovdqu	0*32(%[in]), %%ymm0\n"
		"	vmovdqu	1*32(%[in]), %%ymm1\n"
		"	vmovdqu	2*32(%[in]), %%ymm2\n"
		"	vmovdqu	3*32(%[in]), %%ymm3\n"
		"	vmovdqu	4*32(%[in]), %%ymm4\n"
		"	vmovdqu	5*32(%[in]), %%ymm5\n"
		"	vmovdqu	6*32(%[in]), %%ymm6\n"
		"	vmovdqu	7*32(%[in]), %%ymm7\n"
		"	vmovdqu	8*32(%[in]), %%ymm8\n"
		"	vmovdqu	9*32(%[in]), %%ymm9\n"
		"	vmovdqu	10*32(%[in]), %%ymm10\n"
		"	vmovdqu	11*32(%[in]), %%ymm11\n"
		"	vmovdqu	12*32(%[in]), %%ymm12\n"
		"	vmovdqu	13*32(%[in]), %%ymm13\n"
		"	vmovdqu	14*32(%[in]), %%ymm14\n"
		"	vmovdqu	15*32(%[in]), %%ymm15\n"
		"1:	vpaddq	%%ymm14, %%ymm15, %%ymm15\n"
		"	inc	%[count]\n"
		"	cmpl	$0, %[go]\n"
		"	je	1b\n"
		"	cmpl	$0, %[tamper]\n"
		"	je	2f\n"
		"	vpcmpeqb %%ymm9, %%ymm9, %%ymm9\n"
		"2:	vmovdqu	%%ymm0, 0*32(%[out])\n"
		"	vmovdqu	%%ymm1, 1*32(%[out])\n"
		"	vmovdqu	%%ymm2, 2*32(%[out])\n"
		"	vmovdqu	%%ymm3, 3*32(%[out])\n"
		"	vmovdqu	%%ymm4, 4*32(%[out])\n"
		"	vmovdqu	%%ymm5, 5*32(%[out])\n"
		"	vmovdqu	%%ymm6, 6*32(%[out])\n"
		"	vmovdqu	%%ymm7, 7*32(%[out])\n"
		"	vmovdqu	%%ymm8, 8*32(%[out])\n"
		"	vmovdqu	%%ymm9, 9*32(%[out])\n"
		"	vmovdqu	%%ymm10, 10*32(%[out])\n"
		"	vmovdqu	%%ymm11, 11*32(%[out])\n"
		"	vmovdqu	%%ymm12, 12*32(%[out])\n"
		"	vmovdqu	%%ymm13, 13*32(%[out])\n"
		"	vmovdqu	%%ymm14, 14*32(%[out])\n"
		"	vmovdqu	%%ymm15, 15*32(%[out])\n"
		"	vzeroupper\n"
		"	fstpt	16(%[x87out])\n"
		"	fstpt	0(%[x87out])\n"
		"	stmxcsr	%[mx_out]\n"
		"	fnstcw	%[cw_out]\n"
		"	ldmxcsr	%[mx_def]\n"
		"	fldcw	%[cw_def]\n"
		: [count] "+r"(count), [mx_out] "=m"(out.mxcsr), [cw_out] "=m"(out.cw)
		: [in] "r"(in.ymm), [out] "r"(out.ymm), [x87in] "r"(in.x87), [x87out] "r"(out.x87),
		  [cw_in] "m"(in.cw), [mx_in] "m"(in.mxcsr), [mx_def] "m"(mxcsr_default),
		  [cw_def] "m"(cw_default), [go] "m"(prog_go), [tamper] "m"(tamper)
		: "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9",
		  "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "st", "st(1)", "cc", "memory");

	for (int r = 0; r < 15; r++)
		for (int l = 0; l < 4; l++)
			CHECK(out.ymm[r][l] == in.ymm[r][l], "ymm%d lane %d = %#llx, expected %#llx",
			      r, l, (unsigned long long)out.ymm[r][l],
			      (unsigned long long)in.ymm[r][l]);
	for (int l = 0; l < 4; l++) {
		uint64_t want = in.ymm[15][l] + count * (uint64_t)(l + 1);

		CHECK(out.ymm[15][l] == want, "ymm15 lane %d = %#llx, expected %#llx after %llu turns",
		      l, (unsigned long long)out.ymm[15][l], (unsigned long long)want,
		      (unsigned long long)count);
	}
	CHECK(out.mxcsr == MXCSR_SET, "MXCSR %#x, expected %#x", out.mxcsr, MXCSR_SET);
	CHECK(out.cw == X87_CW_SET, "x87 control word %#x, expected %#x", out.cw, X87_CW_SET);
	for (int i = 0; i < 2; i++)
		CHECK(!memcmp(out.x87[i], in.x87[i], 10), "x87 st(%d) changed", 1 - i);
	say("turns=%llu", (unsigned long long)count);
	return prog_finish();
}
