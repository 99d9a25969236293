/*
 * manifest.img (its format: image.h): what a dump directory holds, so
 * that a missing, extra, cut or changed image is refused by name before
 * anything is read from the directory.
 */
#ifndef CRYO_MANIFEST_H
#define CRYO_MANIFEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* a raw image written elsewhere (streamed to a page server): its name and the bytes sent */
struct manifest_extra {
	char name[64];
	uint64_t size;
};

/* manifest_write: the local pages-N.img are not the dump's (it streamed them: extra lists them) */
#define MANIFEST_STREAMED_PAGES	1u
/* manifest_check: raw images may be elsewhere (a page server has them): not looked at */
#define MANIFEST_NO_RAW		2u

/*
 * Write manifest.img into dirfd: every *.img there (their crc32c read back
 * from the files), and extra. The last image a dump writes. 0, or -errno
 * (logged).
 */
int manifest_write(int dirfd, const struct manifest_extra *extra, size_t n, unsigned flags);

/*
 * Check dirfd (named dir, for messages) against its manifest.img: every
 * image it lists there, of its size and crc32c, and nothing more. Images
 * are named prefix/NAME in messages, or NAME with prefix NULL. 0, or
 * -errno (logged).
 */
int manifest_check(int dirfd, const char *dir, const char *prefix, unsigned flags);

#endif
