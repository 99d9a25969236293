/*
 * cryo show PATH: print an image file, or every *.img file of an image
 * directory (and the chain of dumps it builds on), as JSON on stdout.
 *
 * Records are converted generically from their protobuf-c descriptors, so a
 * new image kind or field shows up with no code here:
 *   - 64-bit integers are JSON numbers (exact: no float on the way);
 *   - enums are their value names, bytes lowercase hex strings;
 *   - strings are UTF-8; a byte that is not valid UTF-8 becomes \udcXX, as
 *     Python's "surrogateescape" does, so a path keeps its exact bytes;
 *   - optional fields that are absent are left out, repeated ones are lists.
 * The whole output is built in memory and printed only on success: a bad
 * image gives one error line on stderr and no half document on stdout.
 *
 * A directory is shown only once its manifest.img (and that of every
 * directory up its chain) vouches for it: the manifest is checked first,
 * then shown with the others, as the list of the images with their sizes
 * and checksums. Each message image ends with its end marker: "end" shows
 * the number of records it counts.
 *
 * CRIU's statistics files (stats-dump, stats-restore; stats.c), which are
 * not in cryo's image format, are shown by path: their one message as the
 * one record, magic "STATS".
 */
#define LOG_PREFIX "show: "
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "chain.h"
#include "cryo.h"
#include "image.h"
#include "log.h"
#include "stats.h"
#include "util.h"

#define JSON_MAX_DEPTH	64

struct json {
	FILE *f;
	int depth;
	bool first[JSON_MAX_DEPTH];	/* nothing written yet at this depth */
	const char *file;		/* the image being shown, for errors */
};

/* ---- JSON text ---- */

/* Length of the valid UTF-8 sequence at p, 0 if it is not one. */
static size_t utf8_len(const unsigned char *p, size_t avail)
{
	unsigned n, cp, min;

	if (p[0] < 0x80)
		return 1;
	if ((p[0] & 0xe0) == 0xc0) {
		n = 2, cp = p[0] & 0x1f, min = 0x80;
	} else if ((p[0] & 0xf0) == 0xe0) {
		n = 3, cp = p[0] & 0x0f, min = 0x800;
	} else if ((p[0] & 0xf8) == 0xf0) {
		n = 4, cp = p[0] & 0x07, min = 0x10000;
	} else {
		return 0;
	}
	if (avail < n)
		return 0;
	for (unsigned i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (p[i] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

static void j_string(struct json *j, const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s, *end = p + len;

	fputc('"', j->f);
	while (p < end) {
		size_t n = utf8_len(p, end - p);

		if (n == 0) {
			fprintf(j->f, "\\udc%02x", *p++);
			continue;
		}
		if (n > 1) {
			fwrite(p, 1, n, j->f);
			p += n;
			continue;
		}
		switch (*p) {
		case '"':  fputs("\\\"", j->f); break;
		case '\\': fputs("\\\\", j->f); break;
		case '\n': fputs("\\n", j->f); break;
		case '\r': fputs("\\r", j->f); break;
		case '\t': fputs("\\t", j->f); break;
		case '\b': fputs("\\b", j->f); break;
		case '\f': fputs("\\f", j->f); break;
		default:
			if (*p < 0x20)
				fprintf(j->f, "\\u%04x", *p);
			else
				fputc(*p, j->f);
		}
		p++;
	}
	fputc('"', j->f);
}

static void j_cstr(struct json *j, const char *s)
{
	j_string(j, s, strlen(s));
}

/* Start a value: comma, new line and indentation, and the key in an object. */
static void j_item(struct json *j, const char *key)
{
	if (j->depth > 0) {
		if (!j->first[j->depth])
			fputc(',', j->f);
		j->first[j->depth] = false;
		fprintf(j->f, "\n%*s", 2 * j->depth, "");
	}
	if (key) {
		j_cstr(j, key);
		fputs(": ", j->f);
	}
}

static void j_begin(struct json *j, char c)
{
	fputc(c, j->f);
	j->first[++j->depth] = true;
}

static void j_end(struct json *j, char c)
{
	bool empty = j->first[j->depth--];

	if (!empty)
		fprintf(j->f, "\n%*s", 2 * j->depth, "");
	fputc(c, j->f);
}

static void j_key_str(struct json *j, const char *key, const char *s)
{
	j_item(j, key);
	j_cstr(j, s);
}

static void j_key_u64(struct json *j, const char *key, uint64_t v)
{
	j_item(j, key);
	fprintf(j->f, "%" PRIu64, v);
}

static void j_hex(struct json *j, const uint8_t *p, size_t len)
{
	static const char digit[] = "0123456789abcdef";

	fputc('"', j->f);
	for (size_t i = 0; i < len; i++) {
		fputc(digit[p[i] >> 4], j->f);
		fputc(digit[p[i] & 15], j->f);
	}
	fputc('"', j->f);
}

/* JSON has no NaN or infinity: those become strings */
static void j_double(struct json *j, double v, int digits)
{
	if (isnan(v))
		j_cstr(j, "NaN");
	else if (isinf(v))
		j_cstr(j, v > 0 ? "Infinity" : "-Infinity");
	else
		fprintf(j->f, "%.*g", digits, v);
}

/* ---- protobuf messages, from their descriptors ---- */

static int j_message(struct json *j, const ProtobufCMessage *m);

static size_t pb_type_size(ProtobufCType type)
{
	switch (type) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
		return 4;
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		return 8;
	case PROTOBUF_C_TYPE_FLOAT:
		return sizeof(float);
	case PROTOBUF_C_TYPE_DOUBLE:
		return sizeof(double);
	case PROTOBUF_C_TYPE_BOOL:
		return sizeof(protobuf_c_boolean);
	case PROTOBUF_C_TYPE_ENUM:
		return sizeof(int);
	case PROTOBUF_C_TYPE_STRING:
		return sizeof(char *);
	case PROTOBUF_C_TYPE_BYTES:
		return sizeof(ProtobufCBinaryData);
	case PROTOBUF_C_TYPE_MESSAGE:
		return sizeof(ProtobufCMessage *);
	}
	return 0;
}

/* One value of field fd, stored at v (an element, for repeated fields). */
static int j_value(struct json *j, const ProtobufCFieldDescriptor *fd, const void *v)
{
	switch (fd->type) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
		fprintf(j->f, "%" PRId32, *(const int32_t *)v);
		break;
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
		fprintf(j->f, "%" PRIu32, *(const uint32_t *)v);
		break;
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
		fprintf(j->f, "%" PRId64, *(const int64_t *)v);
		break;
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		fprintf(j->f, "%" PRIu64, *(const uint64_t *)v);
		break;
	case PROTOBUF_C_TYPE_FLOAT:
		j_double(j, *(const float *)v, 9);
		break;
	case PROTOBUF_C_TYPE_DOUBLE:
		j_double(j, *(const double *)v, 17);
		break;
	case PROTOBUF_C_TYPE_BOOL:
		fputs(*(const protobuf_c_boolean *)v ? "true" : "false", j->f);
		break;
	case PROTOBUF_C_TYPE_ENUM: {
		int e = *(const int *)v;
		const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(fd->descriptor, e);

		if (ev)
			j_cstr(j, ev->name);
		else
			fprintf(j->f, "%d", e);	/* a value this cryo does not know */
		break;
	}
	case PROTOBUF_C_TYPE_STRING: {
		const char *s = *(char *const *)v;

		j_cstr(j, s ? s : "");
		break;
	}
	case PROTOBUF_C_TYPE_BYTES: {
		const ProtobufCBinaryData *b = v;

		j_hex(j, b->data, b->len);
		break;
	}
	case PROTOBUF_C_TYPE_MESSAGE: {
		const ProtobufCMessage *m = *(ProtobufCMessage *const *)v;

		if (!m) {
			fputs("null", j->f);
			break;
		}
		return j_message(j, m);
	}
	}
	return 0;
}

/* Is the (non-repeated) field set? */
static bool pb_has(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *fd)
{
	const char *base = (const char *)m;
	bool pointer = fd->type == PROTOBUF_C_TYPE_MESSAGE || fd->type == PROTOBUF_C_TYPE_STRING;
	const void *ptr = pointer ? *(const void *const *)(base + fd->offset) : NULL;

	if (fd->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
		return *(const uint32_t *)(base + fd->quantifier_offset) == fd->id;
	switch (fd->label) {
	case PROTOBUF_C_LABEL_OPTIONAL:
		/* strings and messages have no has_ member: unset is NULL or the default */
		if (pointer)
			return ptr && ptr != fd->default_value;
		return *(const protobuf_c_boolean *)(base + fd->quantifier_offset);
	case PROTOBUF_C_LABEL_NONE:	/* proto3: scalars are always there */
		return fd->type != PROTOBUF_C_TYPE_MESSAGE || ptr;
	default:
		return true;
	}
}

static int j_message(struct json *j, const ProtobufCMessage *m)
{
	const ProtobufCMessageDescriptor *d = m->descriptor;
	const char *base = (const char *)m;
	int ret = 0;

	if (j->depth >= JSON_MAX_DEPTH - 2) {
		pr_err("image %s: %s nested too deeply to show", j->file, d->name);
		return -EINVAL;
	}
	j_begin(j, '{');
	for (unsigned i = 0; i < d->n_fields && !ret; i++) {
		const ProtobufCFieldDescriptor *fd = &d->fields[i];

		if (fd->label == PROTOBUF_C_LABEL_REPEATED) {
			size_t n = *(const size_t *)(base + fd->quantifier_offset);
			const char *arr = *(const char *const *)(base + fd->offset);

			j_item(j, fd->name);
			j_begin(j, '[');
			for (size_t k = 0; k < n && !ret; k++) {
				j_item(j, NULL);
				ret = j_value(j, fd, arr + k * pb_type_size(fd->type));
			}
			j_end(j, ']');
		} else if (pb_has(m, fd)) {
			j_item(j, fd->name);
			ret = j_value(j, fd, base + fd->offset);
		}
	}
	j_end(j, '}');
	return ret;
}

/* ---- images ---- */

static int show_pages(struct json *j, struct img *img)
{
	struct stat st;
	uint64_t len;

	if (fstat(img->fd, &st))
		return pr_perror("cannot stat image %s", img->name);
	len = st.st_size - IMG_PAGES_HDR_LEN;
	if (len % PAGE_SIZE) {
		pr_err("image %s is truncated: %" PRIu64 " bytes of pages, not a whole number of pages",
		       img->name, len);
		return -EINVAL;
	}
	j_key_u64(j, "data_bytes", len);
	j_key_u64(j, "pages", len / PAGE_SIZE);
	return 0;
}

static int show_records(struct json *j, struct img *img)
{
	ProtobufCMessage *msg;
	int ret;

	j_item(j, "records");
	j_begin(j, '[');
	while ((ret = img_read(img, &msg)) > 0) {
		j_item(j, NULL);
		ret = j_message(j, msg);
		img_free_msg(img->type, msg);
		if (ret)
			break;
	}
	j_end(j, ']');
	if (ret)
		return ret;
	/* the end marker, checked when the file was opened */
	j_item(j, "end");
	j_begin(j, '{');
	j_key_u64(j, "records", img->nr_records);
	j_end(j, '}');
	return 0;
}

/* CRIU's stats-dump or stats-restore (stats.c): its one message, as a record */
static int show_stats(struct json *j, const char *path)
{
	StatsEntry *e = NULL;
	int ret = stats_read(AT_FDCWD, path, &e);

	if (ret)
		return ret;
	j->file = path;
	j_item(j, NULL);
	j_begin(j, '{');
	j_key_str(j, "file", basename(path));
	j_key_str(j, "magic", "STATS");
	j_item(j, "records");
	j_begin(j, '[');
	j_item(j, NULL);
	ret = j_message(j, &e->base);
	j_end(j, ']');
	j_end(j, '}');
	j->file = NULL;
	stats_entry__free_unpacked(e, NULL);
	return ret;
}

/* One image file as a JSON object. */
static int show_file(struct json *j, const char *path)
{
	const struct img_desc *desc;
	struct img *img;
	char magic[9];
	int ret = stats_identify(AT_FDCWD, path);

	if (ret)
		return ret < 0 ? ret : show_stats(j, path);
	img = img_open_path(AT_FDCWD, path);
	if (!img)
		return -EINVAL;
	desc = &img_descs[img->type];
	snprintf(magic, sizeof(magic), "CRYO%.4s", desc->tag);
	j->file = img->name;
	j_item(j, NULL);
	j_begin(j, '{');
	j_key_str(j, "file", basename(path));
	j_key_str(j, "magic", magic);
	j_key_u64(j, "version", desc->version);	/* img_open_path checked the file has it */
	ret = desc->pb ? show_records(j, img) : show_pages(j, img);
	j_end(j, '}');
	j->file = NULL;
	img_close(img);
	return ret;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool is_image_name(const char *name)
{
	size_t n = strlen(name);

	return n > 4 && !strcmp(name + n - 4, ".img");
}

/*
 * Every *.img file of the directory, sorted by name: the manifest let
 * none through that is not a regular file.
 */
static int list_images(DIR *d, const char *path, char ***out, size_t *count)
{
	char **names = NULL;
	size_t n = 0;
	struct dirent *de;

	while ((errno = 0, de = readdir(d))) {
		char **nn;

		if (!is_image_name(de->d_name))
			continue;
		nn = xrealloc_array(names, n + 1, sizeof(*names));
		if (!nn)
			goto err;
		names = nn;
		names[n] = xstrdup(de->d_name);
		if (!names[n])
			goto err;
		n++;
	}
	if (errno) {
		pr_perror("cannot read directory %s", path);
		goto err;
	}
	qsort(names, n, sizeof(*names), cmp_names);
	*out = names;
	*count = n;
	return 0;
err:
	while (n)
		free(names[--n]);
	free(names);
	return -EINVAL;
}

/*
 * The chain of previous dumps the directory builds on (--prev-images-dir),
 * newest first: each one's directory, its link, and whether it is a
 * pre-dump.
 */
static int show_chain(struct json *j, const char *path)
{
	_cleanup_free_ char *dir = xstrdup(path);
	int ret = 0;

	if (!dir)
		return -ENOMEM;
	j_item(j, "chain");
	j_begin(j, '[');
	for (int depth = 0; depth < 64 && !ret; depth++) {
		_cleanup_free_ char *parent = NULL, *link = NULL, *inv_path = NULL;
		ProtobufCMessage *m = NULL;
		InventoryEntry *inv;
		struct img *img;

		if (asprintf(&parent, "%s/parent", dir) < 0 || asprintf(&inv_path, "%s/inventory.img", parent) < 0) {
			parent = inv_path = NULL;
			ret = -ENOMEM;
			break;
		}
		if (readlink_alloc(parent, &link))
			break;	/* the first dump of the chain */
		img = img_open_path(AT_FDCWD, inv_path);
		if (!img) {
			ret = -EIO;
			break;
		}
		ret = img_read(img, &m) == 1 ? 0 : -EINVAL;
		img_close(img);
		if (ret) {
			pr_err("%s is empty", inv_path);
			break;
		}
		inv = (InventoryEntry *)m;
		j_item(j, NULL);
		j_begin(j, '{');
		j_key_str(j, "dir", parent);
		j_key_str(j, "link", link);
		j_item(j, "pre_dump");
		fputs(inv->pre_dump ? "true" : "false", j->f);
		j_key_u64(j, "dump_time_ns", inv->dump_time_ns);
		j_end(j, '}');
		img_free_msg(IMG_INVENTORY, m);
		free(dir);
		dir = steal_ptr(parent);
	}
	j_end(j, ']');
	return ret;
}

static int show_dir(struct json *j, const char *path)
{
	DIR *d = opendir(path);
	char **names = NULL;
	size_t n = 0;
	int ret;

	if (!d)
		return pr_perror("cannot open image directory %s", path);
	/* first: what the manifests say the directory and its chain hold */
	ret = chain_check(dirfd(d), path, path, true) ?: list_images(d, path, &names, &n);
	if (ret)
		goto out;
	j_begin(j, '{');
	j_key_str(j, "dir", path);
	ret = show_chain(j, path);
	if (ret)
		goto out_json;
	j_item(j, "images");
	j_begin(j, '[');
	for (size_t i = 0; i < n && !ret; i++) {
		_cleanup_free_ char *file = NULL;

		/* by path, so that errors name the directory too */
		if (asprintf(&file, "%s/%s", path, names[i]) < 0) {
			file = NULL;	/* undefined after a failure */
			pr_err("out of memory");
			ret = -ENOMEM;
			break;
		}
		ret = show_file(j, file);
	}
	j_end(j, ']');
out_json:
	j_end(j, '}');
out:
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	closedir(d);
	return ret;
}

int cmd_show(struct cryo_opts *o, int argc, char **argv)
{
	_cleanup_free_ char *buf = NULL;
	struct json j = { 0 };
	const char *path;
	struct stat st;
	size_t len = 0;
	int ret;

	if (argc != 1) {
		pr_err("usage: cryo show PATH, where PATH is an image file or an image directory");
		return 1;
	}
	path = argv[0];
	if (stat(path, &st)) {
		pr_perror("cannot show %s", path);
		return 1;
	}
	j.f = open_memstream(&buf, &len);
	if (!j.f) {
		pr_perror("cannot allocate the output buffer");
		return 1;
	}
	if (S_ISDIR(st.st_mode))
		ret = show_dir(&j, path);
	else
		ret = show_file(&j, path);
	fputc('\n', j.f);
	if (fclose(j.f) && !ret)
		ret = pr_perror("cannot build the output of %s", path);
	if (ret)
		return 1;
	if (fwrite(buf, 1, len, stdout) != len || fflush(stdout)) {
		pr_perror("cannot write to stdout");
		return 1;
	}
	return 0;
}
