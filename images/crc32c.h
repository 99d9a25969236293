/* CRC-32C (Castagnoli), shared by the image library and the parasite. */
#ifndef CRYO_CRC32C_H
#define CRYO_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* crc32c(0, buf, len) is the standard CRC-32C; pass a previous result to chain. */
uint32_t crc32c(uint32_t crc, const void *buf, size_t len);

#endif
