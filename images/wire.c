/*
 * The wire walk (image.h): before protobuf-c unpacks a record, its bytes
 * are walked against the message's descriptor, sub-messages included, so
 * that what the unpack would silently keep, cut or blow up is refused
 * with the file, the offset and the reason:
 *
 *   - a field the descriptor does not have: state this cryo would drop
 *     (protobuf-c keeps such fields aside, and nobody reads them);
 *   - a wire type that is not the field's, a value cut short, a varint
 *     longer than 10 bytes, a group (wire types 3 and 4 are not proto2's
 *     way here), a field number 0;
 *   - a number too large for its field (a uint32 sent as a 64-bit varint
 *     would be cut), a bool other than 0 or 1, an enum value the enum
 *     does not have;
 *   - a string with a NUL inside (the C string would end there);
 *   - a required field missing;
 *   - a record whose unpacking would allocate more than IMG_UNPACK_MAX,
 *     or more than IMG_UNPACK_RATIO times its size plus IMG_UNPACK_FLOOR:
 *     each message costs its struct, each element of a repeated field its
 *     slot in the array, each string and bytes field its length, and each
 *     field on the wire what protobuf-c notes of it while it scans
 *     (SCAN_COST, its slabs of ScannedMember, which double as they fill).
 *
 * The walk follows the schema, so its depth is the schema's; WIRE_DEPTH
 * bounds it all the same.
 */
#define LOG_PREFIX "image: "
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "image.h"
#include "log.h"

#define WIRE_DEPTH	32
#define SCAN_COST	64
#define MAX_FIELDS	512	/* required fields tracked per message */

struct wire {
	const char *img;		/* the image, for messages */
	size_t rec_off;			/* the record's file offset */
	const uint8_t *base;		/* the record's payload */
	const char *top;		/* the record's message type */
	uint64_t cost, budget;
};

enum wire_type { WT_VARINT = 0, WT_64 = 1, WT_LEN = 2, WT_32 = 5 };

static int refuse(const struct wire *w, const uint8_t *at, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int refuse(const struct wire *w, const uint8_t *at, const char *fmt, ...)
{
	char why[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	pr_err("image %s: record at offset %zu (%s), at offset %zu: %s", w->img, w->rec_off, w->top,
	       w->rec_off + 8 + (size_t)(at - w->base), why);
	return -EINVAL;
}

/* a varint at *p (below end): 0 and *v, or -1 if cut or longer than 10 bytes */
static int varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
	uint64_t r = 0;

	for (int i = 0; i < 10 && *p < end; i++) {
		uint8_t b = *(*p)++;

		if (i == 9 && b > 1)
			return -1;
		r |= (uint64_t)(b & 0x7f) << (7 * i);
		if (!(b & 0x80)) {
			*v = r;
			return 0;
		}
	}
	return -1;
}

static size_t elt_size(ProtobufCType t)
{
	switch (t) {
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
	case PROTOBUF_C_TYPE_DOUBLE:
		return 8;
	case PROTOBUF_C_TYPE_BOOL:
		return sizeof(protobuf_c_boolean);
	case PROTOBUF_C_TYPE_STRING:
	case PROTOBUF_C_TYPE_MESSAGE:
		return sizeof(void *);
	case PROTOBUF_C_TYPE_BYTES:
		return sizeof(ProtobufCBinaryData);
	default:
		return 4;
	}
}

/* the wire type a field of type t comes as (unpacked) */
static enum wire_type wire_type_of(ProtobufCType t)
{
	switch (t) {
	case PROTOBUF_C_TYPE_SFIXED64:
	case PROTOBUF_C_TYPE_FIXED64:
	case PROTOBUF_C_TYPE_DOUBLE:
		return WT_64;
	case PROTOBUF_C_TYPE_SFIXED32:
	case PROTOBUF_C_TYPE_FIXED32:
	case PROTOBUF_C_TYPE_FLOAT:
		return WT_32;
	case PROTOBUF_C_TYPE_STRING:
	case PROTOBUF_C_TYPE_BYTES:
	case PROTOBUF_C_TYPE_MESSAGE:
		return WT_LEN;
	default:
		return WT_VARINT;
	}
}

static int charge(struct wire *w, const uint8_t *at, uint64_t bytes)
{
	w->cost += bytes;
	if (w->cost <= w->budget)
		return 0;
	return refuse(w, at, "unpacking the record would allocate more than %lu bytes (the limit for a record of its size): refused",
		      (unsigned long)w->budget);
}

/* one varint value v of field f: does it fit? */
static int check_varint(const struct wire *w, const uint8_t *at, const ProtobufCMessageDescriptor *d,
			const ProtobufCFieldDescriptor *f, uint64_t v)
{
	int64_t s = (int64_t)v;

	switch (f->type) {
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_SINT32:
		if (v > UINT32_MAX)
			return refuse(w, at, "field %s (%u) of %s: %lu does not fit in 32 bits", f->name, f->id, d->name,
				      (unsigned long)v);
		return 0;
	case PROTOBUF_C_TYPE_INT32:
		if (s < INT32_MIN || s > INT32_MAX)
			return refuse(w, at, "field %s (%u) of %s: %ld does not fit in 32 bits", f->name, f->id, d->name,
				      (long)s);
		return 0;
	case PROTOBUF_C_TYPE_BOOL:
		if (v > 1)
			return refuse(w, at, "field %s (%u) of %s: %lu is not a bool", f->name, f->id, d->name,
				      (unsigned long)v);
		return 0;
	case PROTOBUF_C_TYPE_ENUM:
		if (s < INT32_MIN || s > INT32_MAX ||
		    !protobuf_c_enum_descriptor_get_value(f->descriptor, (int)s))
			return refuse(w, at, "field %s (%u) of %s: %ld is not a value of %s this cryo knows", f->name,
				      f->id, d->name, (long)s, ((const ProtobufCEnumDescriptor *)f->descriptor)->name);
		return 0;
	default:
		return 0;
	}
}

/* a packed repeated scalar field's bytes [p, end) */
static int walk_packed(struct wire *w, const ProtobufCMessageDescriptor *d, const ProtobufCFieldDescriptor *f,
		       const uint8_t *p, const uint8_t *end)
{
	enum wire_type wt = wire_type_of(f->type);
	uint64_t n = 0, v;
	int ret;

	if (wt == WT_LEN)
		return refuse(w, p, "field %s (%u) of %s: a %s cannot be packed", f->name, f->id, d->name,
			      f->type == PROTOBUF_C_TYPE_MESSAGE ? "message" : "string or bytes field");
	if (wt != WT_VARINT) {
		size_t sz = wt == WT_64 ? 8 : 4;

		if ((end - p) % sz)
			return refuse(w, p, "field %s (%u) of %s: packed values of %zu bytes cut short", f->name,
				      f->id, d->name, sz);
		return charge(w, p, (end - p) / sz * elt_size(f->type));
	}
	while (p < end) {
		const uint8_t *at = p;

		if (varint(&p, end, &v))
			return refuse(w, at, "field %s (%u) of %s: a packed value cut short or too long", f->name,
				      f->id, d->name);
		if ((ret = check_varint(w, at, d, f, v)))
			return ret;
		n++;
	}
	return charge(w, end, n * elt_size(f->type));
}

static int walk_message(struct wire *w, const ProtobufCMessageDescriptor *d, const uint8_t *p,
			const uint8_t *end, int depth);

/* a length-delimited value of f: [p, p + len) */
static int walk_len(struct wire *w, const ProtobufCMessageDescriptor *d, const ProtobufCFieldDescriptor *f,
		    const uint8_t *p, uint64_t len, int depth)
{
	switch (f->type) {
	case PROTOBUF_C_TYPE_STRING:
		if (memchr(p, 0, len))
			return refuse(w, p, "field %s (%u) of %s: a string with a NUL byte inside", f->name, f->id,
				      d->name);
		return charge(w, p, len + 1);
	case PROTOBUF_C_TYPE_BYTES:
		return charge(w, p, len);
	case PROTOBUF_C_TYPE_MESSAGE:
		if (depth >= WIRE_DEPTH)
			return refuse(w, p, "messages nested deeper than %d", WIRE_DEPTH);
		return walk_message(w, f->descriptor, p, p + len, depth + 1);
	default:
		if (f->label != PROTOBUF_C_LABEL_REPEATED)
			return refuse(w, p, "field %s (%u) of %s: wire type 2 for a single %s value", f->name, f->id,
				      d->name, wire_type_of(f->type) == WT_VARINT ? "varint" : "fixed-size");
		return walk_packed(w, d, f, p, p + len);
	}
}

/* one field's value, its tag read: *pp moves past it */
static int walk_field(struct wire *w, const ProtobufCMessageDescriptor *d, const ProtobufCFieldDescriptor *f,
		      unsigned wt, const uint8_t **pp, const uint8_t *end, int depth)
{
	const uint8_t *at = *pp;
	uint64_t v;
	int ret;

	if (wt == WT_LEN) {
		if (varint(pp, end, &v) || v > (uint64_t)(end - *pp))
			return refuse(w, at, "field %s (%u) of %s: its length runs past the end of its message", f->name,
				      f->id, d->name);
		ret = walk_len(w, d, f, *pp, v, depth);
		*pp += v;
		return ret;
	}
	if (wt != wire_type_of(f->type))
		return refuse(w, at, "field %s (%u) of %s: wire type %u, expected %u", f->name, f->id, d->name, wt,
			      wire_type_of(f->type));
	if (wt == WT_VARINT) {
		if (varint(pp, end, &v))
			return refuse(w, at, "field %s (%u) of %s: a varint cut short or longer than 10 bytes",
				      f->name, f->id, d->name);
		return check_varint(w, at, d, f, v);
	}
	if ((size_t)(end - *pp) < (wt == WT_64 ? 8u : 4u))
		return refuse(w, at, "field %s (%u) of %s: a fixed-size value cut short", f->name, f->id, d->name);
	*pp += wt == WT_64 ? 8 : 4;
	return 0;
}

static int check_required(const struct wire *w, const ProtobufCMessageDescriptor *d, const uint8_t *seen,
			  const uint8_t *at)
{
	for (unsigned i = 0; i < d->n_fields && i < MAX_FIELDS; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];

		if (f->label == PROTOBUF_C_LABEL_REQUIRED && !(seen[i / 8] & (1u << (i % 8))))
			return refuse(w, at, "required field %s (%u) of %s is missing", f->name, f->id, d->name);
	}
	return 0;
}

static int walk_message(struct wire *w, const ProtobufCMessageDescriptor *d, const uint8_t *p,
			const uint8_t *end, int depth)
{
	uint8_t seen[MAX_FIELDS / 8] = { 0 };
	int ret = charge(w, p, d->sizeof_message);

	while (!ret && p < end) {
		const uint8_t *at = p;
		const ProtobufCFieldDescriptor *f;
		uint64_t tag;
		unsigned wt;

		if (varint(&p, end, &tag) || tag >> 3 == 0 || tag >> 3 > 0x1fffffff)
			return refuse(w, at, "a field tag of %s that is cut short or out of range", d->name);
		wt = tag & 7;
		f = protobuf_c_message_descriptor_get_field(d, tag >> 3);
		if (!f)
			return refuse(w, at, "field %u (wire type %u) of %s is unknown to this cryo: state it would drop",
				      (unsigned)(tag >> 3), wt, d->name);
		if (wt != WT_VARINT && wt != WT_64 && wt != WT_LEN && wt != WT_32)
			return refuse(w, at, "field %s (%u) of %s: wire type %u is not one cryo writes", f->name, f->id,
				      d->name, wt);
		ret = charge(w, at, SCAN_COST + (f->label == PROTOBUF_C_LABEL_REPEATED ? elt_size(f->type) : 0)) ?:
		      walk_field(w, d, f, wt, &p, end, depth);
		if ((size_t)(f - d->fields) < MAX_FIELDS)
			seen[(f - d->fields) / 8] |= 1u << ((f - d->fields) % 8);
	}
	return ret ?: check_required(w, d, seen, end);
}

int img_wire_check(const ProtobufCMessageDescriptor *d, const uint8_t *buf, size_t len, const char *name,
		   size_t off)
{
	uint64_t scaled = (uint64_t)len * IMG_UNPACK_RATIO + IMG_UNPACK_FLOOR;
	struct wire w = {
		.img = name,
		.rec_off = off,
		.base = buf,
		.top = d->name,
		.budget = scaled < IMG_UNPACK_MAX ? scaled : IMG_UNPACK_MAX,
	};

	return walk_message(&w, d, buf, buf + len, 0);
}
