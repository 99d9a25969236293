/*
 * CRC-32C, polynomial 0x1EDC6F41 (reflected 0x82F63B78). Uses the SSE4.2
 * crc32 instruction when the CPU has it, a nibble table otherwise.
 * Freestanding: this file is also linked into the parasite blob, so it uses
 * no libc and no data that would need relocation.
 */
#include "crc32c.h"

static const uint32_t nibble_table[16] = {
	0x00000000, 0x105ec76f, 0x20bd8ede, 0x30e349b1,
	0x417b1dbc, 0x5125dad3, 0x61c69362, 0x7198540d,
	0x82f63b78, 0x92a8fc17, 0xa24bb5a6, 0xb21572c9,
	0xc38d26c4, 0xd3d3e1ab, 0xe330a81a, 0xf36e6f75,
};

static uint32_t crc32c_sw(uint32_t crc, const unsigned char *p, size_t len)
{
	while (len--) {
		crc ^= *p++;
		crc = (crc >> 4) ^ nibble_table[crc & 15];
		crc = (crc >> 4) ^ nibble_table[crc & 15];
	}
	return crc;
}

static int have_sse42(void)
{
	static int cached = -1;	/* -1 unknown */
	unsigned a = 1, b, c, d;

	if (cached < 0) {
		asm volatile("cpuid" : "+a"(a), "=b"(b), "=c"(c), "=d"(d) : "c"(0));
		cached = (c >> 20) & 1;
	}
	return cached;
}

static uint32_t crc32c_hw(uint32_t crc, const unsigned char *p, size_t len)
{
	uint64_t c = crc;

	while (len && ((uintptr_t)p & 7)) {
		asm("crc32b %1, %k0" : "+r"(c) : "rm"(*p));
		p++;
		len--;
	}
	while (len >= 32) {
		const uint64_t *q = (const uint64_t *)p;

		asm("crc32q %1, %0" : "+r"(c) : "rm"(q[0]));
		asm("crc32q %1, %0" : "+r"(c) : "rm"(q[1]));
		asm("crc32q %1, %0" : "+r"(c) : "rm"(q[2]));
		asm("crc32q %1, %0" : "+r"(c) : "rm"(q[3]));
		p += 32;
		len -= 32;
	}
	while (len >= 8) {
		asm("crc32q %1, %0" : "+r"(c) : "rm"(*(const uint64_t *)p));
		p += 8;
		len -= 8;
	}
	while (len--) {
		asm("crc32b %1, %k0" : "+r"(c) : "rm"(*p));
		p++;
	}
	return (uint32_t)c;
}

uint32_t crc32c(uint32_t crc, const void *buf, size_t len)
{
	crc = ~crc;
	crc = have_sse42() ? crc32c_hw(crc, buf, len) : crc32c_sw(crc, buf, len);
	return ~crc;
}
