/*
 * The freestanding environment of the parasite and restorer blobs: raw
 * syscalls and a few string functions. No libc, no globals that need
 * relocation, no SSE (-mgeneral-regs-only).
 */
#ifndef CRYO_PIE_H
#define CRYO_PIE_H

#include <stddef.h>
#include <stdint.h>
#include <asm/unistd.h>

#define PIE_EXPORT __attribute__((used, visibility("hidden")))

static inline long sys_call6(long nr, long a1, long a2, long a3, long a4, long a5, long a6)
{
	register long r10 asm("r10") = a4;
	register long r8 asm("r8") = a5;
	register long r9 asm("r9") = a6;
	long ret;

	asm volatile("syscall"
		     : "=a"(ret)
		     : "a"(nr), "D"(a1), "S"(a2), "d"(a3), "r"(r10), "r"(r8), "r"(r9)
		     : "rcx", "r11", "memory");
	return ret;
}

#define SC(nr, a, b, c, d, e, f) \
	sys_call6(nr, (long)(a), (long)(b), (long)(c), (long)(d), (long)(e), (long)(f))
#define sys0(nr)			SC(nr, 0, 0, 0, 0, 0, 0)
#define sys1(nr, a)			SC(nr, a, 0, 0, 0, 0, 0)
#define sys2(nr, a, b)			SC(nr, a, b, 0, 0, 0, 0)
#define sys3(nr, a, b, c)		SC(nr, a, b, c, 0, 0, 0)
#define sys4(nr, a, b, c, d)		SC(nr, a, b, c, d, 0, 0)
#define sys5(nr, a, b, c, d, e)		SC(nr, a, b, c, d, e, 0)
#define sys6(nr, a, b, c, d, e, f)	SC(nr, a, b, c, d, e, f)

void *memcpy(void *d, const void *s, size_t n);
void *memmove(void *d, const void *s, size_t n);
void *memset(void *d, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);

/*
 * Tiny formatter for error messages: %s %d %u %x %lx %lu %ld %p only.
 * Returns the length written (always NUL terminated when size > 0).
 */
int pie_snprintf(char *buf, size_t size, const char *fmt, ...);

#endif
