/*
 * manifest.img (manifest.h): written last by every dump round, checked
 * first by whatever reads a dump directory.
 */
#define LOG_PREFIX "image: "
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "crc32c.h"
#include "image.h"
#include "log.h"
#include "manifest.h"
#include "util.h"

#define MANIFEST_MAX	(1u << 20)	/* images in one directory */
#define CRC_BUF		(1u << 20)

struct mlist {
	ManifestEntry *v;
	size_t n;
	char **names;			/* the names v points at */
};

static void mlist_free(struct mlist *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->names[i]);
	free(l->names);
	free(l->v);
	l->names = NULL;
	l->v = NULL;
	l->n = 0;
}

static int mlist_add(struct mlist *l, const char *name, uint64_t size, bool has_crc, uint32_t crc)
{
	ManifestEntry *v = xrealloc_array(l->v, l->n + 1, sizeof(*v));
	char **names;

	if (!v)
		return -ENOMEM;
	l->v = v;
	names = xrealloc_array(l->names, l->n + 1, sizeof(*names));
	if (!names)
		return -ENOMEM;
	l->names = names;
	if (!(names[l->n] = xstrdup(name)))
		return -ENOMEM;
	manifest_entry__init(&v[l->n]);
	v[l->n].name = names[l->n];
	v[l->n].size = size;
	v[l->n].has_crc32c = has_crc;
	v[l->n].crc32c = crc;
	l->n++;
	return 0;
}

static int cmp_entry(const void *a, const void *b)
{
	return strcmp(((const ManifestEntry *)a)->name, ((const ManifestEntry *)b)->name);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool is_raw(int type)
{
	return !img_descs[type].pb;
}

/* the *.img names of dirfd but manifest.img, sorted */
static int list_names(int dirfd, const char *dir, char ***out, size_t *n)
{
	int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *de;
	char **v = NULL;
	int ret = 0;

	*n = 0;
	if (!d) {
		ret = pr_perror("cannot list the images directory %s", dir);
		if (fd >= 0)
			close(fd);
		return ret;
	}
	while ((errno = 0, de = readdir(d))) {
		char **nv;

		if (!ends_with(de->d_name, ".img") || !strcmp(de->d_name, img_descs[IMG_MANIFEST].name))
			continue;
		if (*n >= MANIFEST_MAX) {
			pr_err("the images directory %s holds more than %u images", dir, MANIFEST_MAX);
			ret = -E2BIG;
			break;
		}
		if (!(nv = xrealloc_array(v, *n + 1, sizeof(*v))) || !(nv[*n] = xstrdup(de->d_name))) {
			if (nv)
				v = nv;
			ret = -ENOMEM;
			break;
		}
		v = nv;
		(*n)++;
	}
	if (!ret && errno)
		ret = pr_perror("cannot list the images directory %s", dir);
	closedir(d);
	if (ret) {
		while (*n)
			free(v[--*n]);
		free(v);
		return ret;
	}
	qsort(v, *n, sizeof(*v), cmp_str);
	*out = v;
	return 0;
}

/* the crc32c of the whole file fd (what names it) */
static int crc_file(int fd, const char *what, uint32_t *out)
{
	_cleanup_free_ uint8_t *buf = malloc(CRC_BUF);
	uint32_t crc = 0;
	off_t off = 0;

	if (!buf)
		return -ENOMEM;
	for (;;) {
		ssize_t n = pread(fd, buf, CRC_BUF, off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return pr_perror("cannot read image %s", what);
		if (!n)
			break;
		crc = crc32c(crc, buf, n);
		off += n;
	}
	*out = crc;
	return 0;
}

/* one image of the directory as the manifest lists it */
static int describe(int dirfd, const char *name, int type, struct mlist *l)
{
	_cleanup_close_ int fd = -1;
	struct stat st;
	uint32_t crc = 0;
	int ret;

	fd = img_open_regular(dirfd, name, name, false, &st);
	if (fd < 0)
		return fd;
	if (!is_raw(type) && (ret = crc_file(fd, name, &crc)))
		return ret;
	return mlist_add(l, name, st.st_size, !is_raw(type), crc);
}

int manifest_write(int dirfd, const struct manifest_extra *extra, size_t n, unsigned flags)
{
	struct mlist l = { 0 };
	char **names = NULL;
	size_t nn = 0;
	struct img *img;
	int ret = list_names(dirfd, "of the dump", &names, &nn);

	for (size_t i = 0; !ret && i < nn; i++) {
		int type = img_type_of_name(names[i], NULL);

		if (type < 0) {
			pr_err("the images directory holds %s, which is no image of this cryo's: remove it, or dump elsewhere",
			       names[i]);
			ret = -EINVAL;
		} else if (!(type == IMG_PAGES && (flags & MANIFEST_STREAMED_PAGES))) {
			ret = describe(dirfd, names[i], type, &l);
		}
	}
	for (size_t i = 0; i < nn; i++)
		free(names[i]);
	free(names);
	for (size_t i = 0; !ret && i < n; i++)
		ret = mlist_add(&l, extra[i].name, extra[i].size, false, 0);
	if (ret) {
		mlist_free(&l);
		return ret;
	}
	qsort(l.v, l.n, sizeof(*l.v), cmp_entry);
	img = img_create(dirfd, IMG_MANIFEST, 0);
	if (!img) {
		mlist_free(&l);
		return -EIO;
	}
	for (size_t i = 0; i < l.n; i++)
		img_write(img, &l.v[i].base);
	ret = img_close(img);
	if (!ret)
		pr_info("manifest.img lists %zu images", l.n);
	mlist_free(&l);
	return ret;
}

/* ------------------------------------------------------------ checking */

struct mcheck {
	int dirfd;
	const char *dir, *prefix;
	unsigned flags;
	ManifestEntry **v;
	size_t n;
};

static const char *path_of(const struct mcheck *c, const char *name, char *buf, size_t len)
{
	snprintf(buf, len, "%s%s%s", c->prefix ?: "", c->prefix ? "/" : "", name);
	return buf;
}

/* the manifest's records: known image names, each once, in order, with a crc32c for message images */
static int check_entries(const struct mcheck *c)
{
	char path[PATH_MAX_LEN];

	if (c->n > MANIFEST_MAX) {
		pr_err("%s: manifest.img lists %zu images, more than %u", c->dir, c->n, MANIFEST_MAX);
		return -EINVAL;
	}
	for (size_t i = 0; i < c->n; i++) {
		const ManifestEntry *e = c->v[i];
		int type = img_type_of_name(e->name, NULL);

		if (type < 0 || type == IMG_MANIFEST) {
			pr_err("%s: manifest.img lists '%.64s', which is no image name this cryo knows",
			       path_of(c, img_descs[IMG_MANIFEST].name, path, sizeof(path)), e->name);
			return -EINVAL;
		}
		if (i && strcmp(c->v[i - 1]->name, e->name) >= 0) {
			pr_err("%s: %s is listed out of order or twice",
			       path_of(c, img_descs[IMG_MANIFEST].name, path, sizeof(path)), e->name);
			return -EINVAL;
		}
		if (e->has_crc32c == is_raw(type)) {
			pr_err("%s: %s is listed %s a checksum, which a %s image %s",
			       path_of(c, img_descs[IMG_MANIFEST].name, path, sizeof(path)), e->name,
			       e->has_crc32c ? "with" : "without", is_raw(type) ? "raw" : "message",
			       is_raw(type) ? "does not have" : "must have");
			return -EINVAL;
		}
	}
	return 0;
}

/* one listed image: there, a regular file, of its size and checksum */
static int check_one(const struct mcheck *c, const ManifestEntry *e)
{
	char path[PATH_MAX_LEN], what[PATH_MAX_LEN + 32];
	_cleanup_close_ int fd = -1;
	struct stat st;
	uint32_t crc;
	int ret;

	path_of(c, e->name, path, sizeof(path));
	snprintf(what, sizeof(what), "%s (listed in manifest.img)", path);
	fd = img_open_regular(c->dirfd, e->name, what, false, &st);
	if (fd < 0)
		return fd;
	if ((uint64_t)st.st_size != e->size) {
		pr_err("image %s is %s: %lld bytes, manifest.img says %lu", path,
		       (uint64_t)st.st_size < e->size ? "truncated" : "longer than it was at the dump",
		       (long long)st.st_size, (unsigned long)e->size);
		return -EINVAL;
	}
	if (!e->has_crc32c)
		return 0;	/* raw: each chunk is checked against the crc its pagemap or memfds.img records */
	if ((ret = crc_file(fd, path, &crc)))
		return ret;
	if (crc != e->crc32c) {
		pr_err("image %s has changed since the dump: checksum mismatch with manifest.img (crc32c %08x, expected %08x)",
		       path, crc, e->crc32c);
		return -EINVAL;
	}
	return 0;
}

static int cmp_name_entry(const void *key, const void *e)
{
	return strcmp(key, (*(ManifestEntry *const *)e)->name);
}

/* nothing in the directory that the manifest does not list */
static int check_extra(const struct mcheck *c)
{
	char path[PATH_MAX_LEN], **names = NULL;
	size_t nn = 0;
	int ret = list_names(c->dirfd, c->dir, &names, &nn);

	for (size_t i = 0; !ret && i < nn; i++) {
		int type = img_type_of_name(names[i], NULL);

		if ((c->flags & MANIFEST_NO_RAW) && type >= 0 && is_raw(type))
			continue;
		if (!bsearch(names[i], c->v, c->n, sizeof(*c->v), cmp_name_entry)) {
			pr_err("image %s is not listed in manifest.img: not part of the dump, refused",
			       path_of(c, names[i], path, sizeof(path)));
			ret = -EINVAL;
		}
	}
	for (size_t i = 0; i < nn; i++)
		free(names[i]);
	free(names);
	return ret;
}

/* no manifest: say what the directory lacks */
static int no_manifest(const struct mcheck *c)
{
	struct stat st;
	bool inv = !fstatat(c->dirfd, img_descs[IMG_INVENTORY].name, &st, AT_SYMLINK_NOFOLLOW);

	pr_err("%s holds no complete dump: %s", c->dir,
	       inv ? "manifest.img is missing" : "inventory.img and manifest.img are missing");
	return -ENOENT;
}

int manifest_check(int dirfd, const char *dir, const char *prefix, unsigned flags)
{
	struct mcheck c = { .dirfd = dirfd, .dir = dir, .prefix = prefix, .flags = flags };
	int ret;

	if (faccessat(dirfd, img_descs[IMG_MANIFEST].name, F_OK, AT_SYMLINK_NOFOLLOW) && errno == ENOENT)
		return no_manifest(&c);
	ret = img_read_all(dirfd, IMG_MANIFEST, 0, false, &c.v, &c.n);
	if (!ret)
		ret = check_entries(&c);
	for (size_t i = 0; !ret && i < c.n; i++) {
		int type = img_type_of_name(c.v[i]->name, NULL);

		if (!((flags & MANIFEST_NO_RAW) && is_raw(type)))
			ret = check_one(&c, c.v[i]);
	}
	if (!ret)
		ret = check_extra(&c);
	for (size_t i = 0; i < c.n; i++)
		img_free_msg(IMG_MANIFEST, &c.v[i]->base);
	free(c.v);
	return ret;
}
