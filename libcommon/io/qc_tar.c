/*
 * qc_tar.c - deterministic ustar/pax writer and strict sequential reader
 * (see qc_tar.h for the format and the rules).
 */
#include "qc_tar.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qc_err.h"

/* Field offsets and widths of the ustar header block. */
enum {
	T_NAME = 0, T_MODE = 100, T_UID = 108, T_GID = 116, T_SIZE = 124, T_MTIME = 136,
	T_CHKSUM = 148, T_TYPE = 156, T_LINK = 157, T_MAGIC = 257, T_VERSION = 263,
	T_UNAME = 265, T_GNAME = 297, T_DEVMAJ = 329, T_DEVMIN = 337, T_PREFIX = 345,
};

/* Largest size an 11-digit octal field holds: 8 GiB - 1. */
#define OCTAL11_MAX ((((uint64_t)1) << 33) - 1)
/* Limits on extension data held in memory (pax records, GNU long names). */
#define PAX_MAX ((uint64_t)1 << 20)
#define LONGNAME_MAX ((uint64_t)65536)

// ---------------------------------------------------------------- writer

static void put_octal(unsigned char *f, int width, uint64_t v)
{
	/* width-1 zero-padded digits and a NUL, as GNU tar writes them */
	char tmp[32];
	snprintf(tmp, sizeof tmp, "%0*llo", width - 1, (unsigned long long)v);
	memcpy(f, tmp, (size_t)width - 1);
	f[width - 1] = 0;
}

static void finish_header(unsigned char h[QC_TAR_BLOCK])
{
	memset(h + T_CHKSUM, ' ', 8);
	unsigned sum = 0;
	for (int i = 0; i < QC_TAR_BLOCK; i++)
		sum += h[i];
	/* six octal digits, NUL, space: the traditional layout */
	char tmp[16];
	snprintf(tmp, sizeof tmp, "%06o", sum & 0777777);
	memcpy(h + T_CHKSUM, tmp, 6);
	h[T_CHKSUM + 6] = 0;
	h[T_CHKSUM + 7] = ' ';
}

static void base_header(unsigned char h[QC_TAR_BLOCK], const char *name, uint64_t size, char type)
{
	memset(h, 0, QC_TAR_BLOCK);
	size_t n = strlen(name);
	memcpy(h + T_NAME, name, n < 100 ? n : 100);
	put_octal(h + T_MODE, 8, 0644);
	put_octal(h + T_UID, 8, 0);
	put_octal(h + T_GID, 8, 0);
	put_octal(h + T_SIZE, 12, size);
	put_octal(h + T_MTIME, 12, 0);
	h[T_TYPE] = (unsigned char)type;
	memcpy(h + T_MAGIC, "ustar", 6);
	memcpy(h + T_VERSION, "00", 2);
}

/* Append one pax record "<len> key=value\n" (len counts the whole record,
 * its own digits included). */
static size_t pax_record(char *out, size_t cap, const char *key, const char *value)
{
	size_t body = 1 + strlen(key) + 1 + strlen(value) + 1;   /* " key=value\n" */
	/* the smallest digit count d for which body + d has d digits */
	for (size_t d = 1;; d++) {
		size_t total = body + d, nd = 1;
		for (size_t t = total; t >= 10; t /= 10)
			nd++;
		if (nd == d) {
			if (out)
				snprintf(out, cap, "%zu %s=%s\n", total, key, value);
			return total;
		}
	}
}

int qc_tar_write_header(qc_sink *s, const char *name, uint64_t size)
{
	if (!qc_safe_filename(name))
		return qc_seterr(QC_EINVAL, "cannot write tar member '%s': not a plain file name", name);
	size_t nlen = strlen(name);
	int long_name = nlen > 100, big = size > OCTAL11_MAX;
	unsigned char h[QC_TAR_BLOCK];
	if (long_name || big) {
		char sz[32], rec[400];
		size_t len = 0;
		snprintf(sz, sizeof sz, "%llu", (unsigned long long)size);
		if (long_name)
			len += pax_record(rec + len, sizeof rec - len, "path", name);
		if (big)
			len += pax_record(rec + len, sizeof rec - len, "size", sz);
		char pname[128];
		snprintf(pname, sizeof pname, "./PaxHeaders/%s", name);
		base_header(h, pname, len, 'x');
		finish_header(h);
		QC_TRY(qc_sink_write(s, h, sizeof h));
		QC_TRY(qc_sink_write(s, rec, len));
		QC_TRY(qc_tar_write_pad(s, len));
	}
	base_header(h, name, big ? 0 : size, '0');
	finish_header(h);
	return qc_sink_write(s, h, sizeof h);
}

int qc_tar_write_pad(qc_sink *s, uint64_t size)
{
	size_t pad = (size_t)((QC_TAR_BLOCK - size % QC_TAR_BLOCK) % QC_TAR_BLOCK);
	return qc_sink_zeros(s, pad);
}

int qc_tar_write_file(qc_sink *s, const char *name, const void *data, uint64_t size)
{
	QC_TRY(qc_tar_write_header(s, name, size));
	QC_TRY(qc_sink_write(s, data, (size_t)size));
	return qc_tar_write_pad(s, size);
}

int qc_tar_write_end(qc_sink *s)
{
	return qc_sink_zeros(s, 2 * QC_TAR_BLOCK);
}

// ---------------------------------------------------------------- reader

struct qc_tar_reader {
	qc_source *src;
	char *name;             /* current member name */
	uint64_t size, left;    /* current member: size, unread bytes */
	uint64_t pad;           /* padding after the current member */
	int at_end;
	int in_member;
};

#define TBAD(r, ...) tbad_(r, __VA_ARGS__)
static int tbad_(const qc_tar_reader *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int tbad_(const qc_tar_reader *r, const char *fmt, ...)
{
	char detail[700];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(detail, sizeof detail, fmt, ap);
	va_end(ap);
	return qc_seterr(QC_EFORMAT, "%s in '%s'", detail, qc_source_name(r->src));
}

int qc_tar_reader_new(qc_tar_reader **out, qc_source *src)
{
	*out = calloc(1, sizeof **out);
	if (!*out)
		return qc_seterr(QC_ENOMEM, "out of memory");
	(*out)->src = src;
	return 0;
}

void qc_tar_reader_free(qc_tar_reader *r)
{
	if (!r)
		return;
	free(r->name);
	free(r);
}

const char *qc_tar_stream_name(const qc_tar_reader *r) { return qc_source_name(r->src); }
uint64_t qc_tar_remaining(const qc_tar_reader *r) { return r->in_member ? r->left : 0; }

/* Parse a numeric field: octal ASCII (leading spaces or NULs, then digits,
 * then a space or NUL terminator), or GNU base-256 when the high bit of the
 * first byte is set (positive values only). */
static int parse_num(const unsigned char *f, int width, uint64_t *out)
{
	uint64_t v = 0;
	if (f[0] & 0x80) {
		if (f[0] != 0x80)
			return -1;                  /* negative, or 0xff-style */
		for (int i = 1; i < width; i++) {
			if (v >> 55)
				return -1;              /* would overflow 63 bits */
			v = v << 8 | f[i];
		}
		*out = v;
		return 0;
	}
	int i = 0;
	while (i < width && (f[i] == ' ' || f[i] == 0))
		i++;
	if (i == width) {
		*out = 0;
		return 0;
	}
	for (; i < width && f[i] >= '0' && f[i] <= '7'; i++) {
		if (v >> 60)
			return -1;
		v = v << 3 | (uint64_t)(f[i] - '0');
	}
	for (; i < width; i++)
		if (f[i] != ' ' && f[i] != 0)
			return -1;
	*out = v;
	return 0;
}

static int checksum_ok(const unsigned char h[QC_TAR_BLOCK])
{
	uint64_t want;
	if (parse_num(h + T_CHKSUM, 8, &want) != 0)
		return 0;
	/* unsigned sum (POSIX); some historic writers used signed chars */
	long us = 0, ss = 0;
	for (int i = 0; i < QC_TAR_BLOCK; i++) {
		unsigned char c = i >= T_CHKSUM && i < T_CHKSUM + 8 ? ' ' : h[i];
		us += c;
		ss += (signed char)c;
	}
	return (uint64_t)us == want || (ss >= 0 && (uint64_t)ss == want);
}

static int is_zero_block(const unsigned char *h)
{
	for (int i = 0; i < QC_TAR_BLOCK; i++)
		if (h[i])
			return 0;
	return 1;
}

/* Read one block; 1 when read, 0 at a clean end of stream before any byte. */
static int read_block(qc_tar_reader *r, unsigned char *h)
{
	size_t got;
	QC_TRY(qc_source_read(r->src, h, QC_TAR_BLOCK, &got));
	if (got == 0)
		return 0;
	uint64_t off = qc_source_offset(r->src) - got;
	if (got < QC_TAR_BLOCK && off == 0)
		return TBAD(r, "not a tar stream (%zu bytes, shorter than one tar header)", got);
	if (got < QC_TAR_BLOCK)
		return TBAD(r, "unexpected end of archive (partial header block at offset %llu)",
		            (unsigned long long)off);
	return 1;
}

/* Read an extension member's data (pax records, GNU long name) into memory. */
static int read_ext(qc_tar_reader *r, uint64_t size, uint64_t max, char **out, const char *what)
{
	if (size > max)
		return TBAD(r, "%s of %llu bytes is too large", what, (unsigned long long)size);
	char *b = malloc((size_t)size + 1);
	if (!b)
		return qc_seterr(QC_ENOMEM, "out of memory");
	int rc = qc_source_read_full(r->src, b, (size_t)size);
	if (rc == 0)
		rc = qc_source_skip(r->src, (QC_TAR_BLOCK - size % QC_TAR_BLOCK) % QC_TAR_BLOCK);
	if (rc) {
		free(b);
		return rc == QC_EFORMAT ? TBAD(r, "unexpected end of archive in %s", what) : rc;
	}
	b[size] = 0;
	*out = b;
	return 0;
}

/* Parse pax records; set *path / *size (size_set) from "path" and "size". */
static int parse_pax(qc_tar_reader *r, const char *rec, size_t len, char **path, uint64_t *size,
                     int *size_set)
{
	size_t pos = 0;
	while (pos < len) {
		/* "<len> key=value\n" */
		size_t n = 0, i = pos;
		while (i < len && rec[i] >= '0' && rec[i] <= '9' && n < len)
			n = n * 10 + (size_t)(rec[i++] - '0');
		if (i == pos || i >= len || rec[i] != ' ' || n == 0 || n > len - pos || rec[pos + n - 1] != '\n')
			return TBAD(r, "malformed pax record at byte %zu", pos);
		const char *key = rec + i + 1, *end = rec + pos + n - 1;
		const char *eq = memchr(key, '=', (size_t)(end - key));
		if (!eq || eq == key)
			return TBAD(r, "malformed pax record at byte %zu", pos);
		size_t klen = (size_t)(eq - key), vlen = (size_t)(end - eq - 1);
		const char *val = eq + 1;
		if (klen == 4 && memcmp(key, "path", 4) == 0 && path) {
			if (memchr(val, 0, vlen))
				return TBAD(r, "pax path contains a NUL byte");
			free(*path);
			*path = strndup(val, vlen);
			if (!*path)
				return qc_seterr(QC_ENOMEM, "out of memory");
		} else if (klen == 4 && memcmp(key, "size", 4) == 0 && size) {
			uint64_t v = 0;
			if (vlen == 0 || vlen > 19)
				return TBAD(r, "bad pax size '%.*s'", (int)(vlen < 40 ? vlen : 40), val);
			for (size_t k = 0; k < vlen; k++) {
				if (val[k] < '0' || val[k] > '9')
					return TBAD(r, "bad pax size '%.*s'", (int)(vlen < 40 ? vlen : 40), val);
				v = v * 10 + (uint64_t)(val[k] - '0');
			}
			if (v > INT64_MAX)
				return TBAD(r, "bad pax size");
			*size = v;
			*size_set = 1;
		}
		pos += n;
	}
	return 0;
}

/* Drain a pipe after the end-of-archive marker (record padding). */
static int drain(qc_tar_reader *r)
{
	unsigned char tmp[65536];
	size_t got;
	do
		QC_TRY(qc_source_read(r->src, tmp, sizeof tmp, &got));
	while (got == sizeof tmp);
	return 0;
}

int qc_tar_next(qc_tar_reader *r, qc_tar_member *m)
{
	if (r->at_end)
		return 0;
	/* skip the rest of the current member and its padding */
	if (r->in_member) {
		int rc = qc_source_skip(r->src, r->left + r->pad);
		r->in_member = 0;
		if (rc == QC_EFORMAT)
			return TBAD(r, "tar member '%s' is truncated", r->name);
		QC_TRY(rc);
	}
	char *xpath = NULL, *longname = NULL;
	uint64_t xsize = 0;
	int xsize_set = 0, rc = 0;
	unsigned char h[QC_TAR_BLOCK];
	for (;;) {
		uint64_t off = qc_source_offset(r->src);
		rc = read_block(r, h);
		if (rc < 0)
			goto out;
		if (rc == 0) {
			rc = off == 0 ? TBAD(r, "empty input, not a tar stream")
			              : TBAD(r, "unexpected end of archive (no end-of-archive blocks)");
			goto out;
		}
		if (is_zero_block(h)) {
			if (xpath || longname || xsize_set) {
				rc = TBAD(r, "extended header at offset %llu is not followed by a member",
				          (unsigned long long)off);
				goto out;
			}
			/* end of archive: the second zero block must follow (a stream cut
			 * between the two is cut, however complete its members look),
			 * then any record padding */
			rc = read_block(r, h);
			if (rc < 0)
				goto out;
			if (rc == 0 || !is_zero_block(h)) {
				rc = TBAD(r, "unexpected end of archive (one end-of-archive block of two at "
				          "offset %llu)", (unsigned long long)off);
				goto out;
			}
			r->at_end = 1;
			rc = drain(r);
			goto out;
		}
		if (!checksum_ok(h)) {
			rc = off == 0 ? TBAD(r, "not a tar stream (bad header checksum at offset 0)")
			              : TBAD(r, "bad tar header checksum at offset %llu", (unsigned long long)off);
			goto out;
		}
		uint64_t size;
		if (parse_num(h + T_SIZE, 12, &size) != 0 || size > INT64_MAX) {
			rc = TBAD(r, "bad size field in tar header at offset %llu", (unsigned long long)off);
			goto out;
		}
		char type = (char)h[T_TYPE];
		if (type == 'x' || type == 'g') {
			char *rec = NULL;
			rc = read_ext(r, size, PAX_MAX, &rec, "pax header");
			if (rc)
				goto out;
			rc = type == 'x' ? parse_pax(r, rec, (size_t)size, &xpath, &xsize, &xsize_set)
			                 : parse_pax(r, rec, (size_t)size, NULL, NULL, NULL);
			free(rec);
			if (rc)
				goto out;
			continue;
		}
		if (type == 'L' || type == 'K') {
			char *ln = NULL;
			rc = read_ext(r, size, LONGNAME_MAX, &ln, "GNU long name");
			if (rc)
				goto out;
			/* the name ends at its first NUL; anything but NULs after it
			 * would be a second name hidden in the first */
			for (size_t i = strlen(ln); i < (size_t)size; i++)
				if (ln[i]) {
					rc = TBAD(r, "GNU long name at offset %llu holds a NUL byte",
					          (unsigned long long)off);
					free(ln);
					goto out;
				}
			if (type == 'L') {
				free(longname);
				longname = ln;
			} else {
				free(ln);
			}
			continue;
		}
		if (xsize_set)
			size = xsize;
		/* The member's name: pax path, GNU long name, or prefix/name. */
		char *name;
		if (xpath) {
			name = xpath;
			xpath = NULL;
		} else if (longname) {
			name = longname;
			longname = NULL;
		} else {
			char nb[256 + 2] = "";
			size_t plen = 0;
			if (memcmp(h + T_MAGIC, "ustar\0", 6) == 0 && h[T_PREFIX]) {
				plen = strnlen((const char *)h + T_PREFIX, 155);
				memcpy(nb, h + T_PREFIX, plen);
				nb[plen++] = '/';
			}
			size_t nlen = strnlen((const char *)h + T_NAME, 100);
			memcpy(nb + plen, h + T_NAME, nlen);
			nb[plen + nlen] = 0;
			name = strdup(nb);
			if (!name) {
				rc = qc_seterr(QC_ENOMEM, "out of memory");
				goto out;
			}
		}
		xsize_set = 0;
		/* "./name" is what `tar -C dir -c .` writes: the same file */
		const char *plain = name;
		while (plain[0] == '.' && plain[1] == '/')
			plain += 2;
		int is_dir = type == '5' || (plain[0] && plain[strlen(plain) - 1] == '/');
		if (is_dir && (strcmp(plain, "") == 0 || strcmp(plain, ".") == 0 || strcmp(plain, "./") == 0)) {
			/* the top directory entry itself: nothing to do */
			free(name);
			if (size && (rc = qc_source_skip(r->src, size + (QC_TAR_BLOCK - size % QC_TAR_BLOCK) % QC_TAR_BLOCK)))
				goto out;
			continue;
		}
		if (!qc_safe_filename(plain)) {
			rc = TBAD(r, "unsafe member name '%s' at offset %llu (checkpoint members are plain file names)",
			          name, (unsigned long long)off);
			free(name);
			goto out;
		}
		if (type != '0' && type != '\0' && type != '7') {
			rc = TBAD(r, "tar member '%s' has unsupported type '%c' (only regular files)", plain,
			          type >= 0x20 && type < 0x7f ? type : '?');
			free(name);
			goto out;
		}
		memmove(name, plain, strlen(plain) + 1);
		free(r->name);
		r->name = name;
		r->size = r->left = size;
		r->pad = (QC_TAR_BLOCK - size % QC_TAR_BLOCK) % QC_TAR_BLOCK;
		r->in_member = 1;
		m->name = r->name;
		m->size = size;
		m->offset = off;
		rc = 1;
		goto out;
	}
out:
	free(xpath);
	free(longname);
	return rc;
}

int qc_tar_read(qc_tar_reader *r, void *buf, size_t len, size_t *got)
{
	*got = 0;
	if (!r->in_member)
		return qc_seterr(QC_EINVAL, "no current tar member");
	if (len > r->left)
		len = (size_t)r->left;
	size_t n;
	QC_TRY(qc_source_read(r->src, buf, len, &n));
	r->left -= n;
	*got = n;
	if (n < len)
		return TBAD(r, "tar member '%s' is truncated (%llu of %llu bytes)", r->name,
		            (unsigned long long)(r->size - r->left), (unsigned long long)r->size);
	return 0;
}

int qc_tar_read_full(qc_tar_reader *r, void *buf, size_t len)
{
	if (len > r->left)
		return TBAD(r, "tar member '%s' is shorter than %zu bytes", r->name ? r->name : "?", len);
	size_t got;
	return qc_tar_read(r, buf, len, &got);
}
