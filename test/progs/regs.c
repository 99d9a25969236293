/*
 * A counter whose state lives only in registers and on the stack
 * (count_in_registers in prog.h): r12 counts, r13 holds r12 * K, a stack
 * slot counts in step with r12, and rbx/r14/r15 hold constants. After
 * SIGUSR1 the loop stops and checks that they all still agree. The harness
 * compares the final count with r12 in the dump image: a re-executed
 * program would have counted from 0.
 */
#include "prog.h"

static const unsigned long long K1 = 0x0123456789abcdefULL, K2 = 0xfedcba9876543210ULL,
				K3 = 0x5555aaaa5555aaaaULL;

int main(void)
{
	struct reg_count c;

	prog_trigger_init();
	say("READY");
	count_in_registers(&prog_go, K1, K2, K3, &c);

	CHECK(!c.bad, "counter registers and stack fell out of step");
	CHECK(c.stacked == c.count, "stack counter %llu, register counter %llu", c.stacked, c.count);
	CHECK(c.scaled == c.count * COUNT_K, "r13 = %#llx, expected r12 * K = %#llx", c.scaled,
	      c.count * COUNT_K);
	CHECK(c.k[0] == K1, "rbx = %#llx", c.k[0]);
	CHECK(c.k[1] == K2, "r14 = %#llx", c.k[1]);
	CHECK(c.k[2] == K3, "r15 = %#llx", c.k[2]);
	say("counter=%llu", c.count);
	return prog_finish();
}
