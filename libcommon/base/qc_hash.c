/*
 * qc_hash.c - XXH3 hashes over libxxhash (see qc_hash.h).
 *
 * Thin wrappers: the hashing itself is xxHash's. What this file adds is the
 * canonical hex form (through the library's canonical structs, so that the
 * byte order is xxhsum's by construction), strict parsing, opaque streaming
 * states, and a whole-file hasher that reads in large blocks.
 */
#include "qc_hash.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <xxhash.h>
/* Debian's libxxhash is built for SSE2; the dispatch entry points pick its
 * AVX2/AVX-512 code at run time (about 4x faster per core). */
#include <xxh_x86dispatch.h>

#include "qc_err.h"

/* Block size of qc_hash_file: large enough that the syscall cost vanishes
 * against XXH3's ~10+ GB/s, small enough to stay in L2/L3 cache. */
#define QC_HASH_BLOCK ((size_t)4 << 20)

// ---------------------------------------------------------------- one shot

uint64_t qc_xxh3_64(const void *data, size_t len)
{
	return XXH3_64bits(data, len);
}

qc_h128 qc_xxh3_128(const void *data, size_t len)
{
	XXH128_hash_t h = XXH3_128bits(data, len);
	return (qc_h128){ .hi = h.high64, .lo = h.low64 };
}

int qc_h128_eq(qc_h128 a, qc_h128 b)
{
	return a.hi == b.hi && a.lo == b.lo;
}

// ---------------------------------------------------------------- hex forms

static const char hexdig[] = "0123456789abcdef";

static void bytes_hex(char *out, const unsigned char *b, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = hexdig[b[i] >> 4];
		out[2 * i + 1] = hexdig[b[i] & 15];
	}
	out[2 * n] = 0;
}

char *qc_h128_hex(qc_h128 h, char out[33])
{
	/* XXH128_canonical_t is hi then lo, each big-endian: xxhsum's order */
	XXH128_canonical_t c;
	XXH128_canonicalFromHash(&c, (XXH128_hash_t){ .low64 = h.lo, .high64 = h.hi });
	bytes_hex(out, c.digest, sizeof c.digest);
	return out;
}

char *qc_h64_hex(uint64_t h, char out[17])
{
	XXH64_canonical_t c;   /* XXH3-64 shares XXH64's canonical form */
	XXH64_canonicalFromHash(&c, h);
	bytes_hex(out, c.digest, sizeof c.digest);
	return out;
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Parse exactly 2*n hex digits of hex into n bytes; 0 or -1. */
static int hex_bytes(const char *hex, unsigned char *b, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int h = hexval((unsigned char)hex[2 * i]);
		int l = h < 0 ? -1 : hexval((unsigned char)hex[2 * i + 1]);
		if (l < 0)
			return -1;
		b[i] = (unsigned char)(h << 4 | l);
	}
	return hex[2 * n] == 0 ? 0 : -1;
}

int qc_h128_parse(const char *hex, qc_h128 *out)
{
	XXH128_canonical_t c;
	if (!hex || hex_bytes(hex, c.digest, sizeof c.digest) < 0)
		return qc_seterr(QC_EFORMAT, "invalid XXH3-128 '%.40s': expected 32 hex digits",
		                 hex ? hex : "(null)");
	XXH128_hash_t h = XXH128_hashFromCanonical(&c);
	out->hi = h.high64;
	out->lo = h.low64;
	return 0;
}

int qc_h64_parse(const char *hex, uint64_t *out)
{
	XXH64_canonical_t c;
	if (!hex || hex_bytes(hex, c.digest, sizeof c.digest) < 0)
		return qc_seterr(QC_EFORMAT, "invalid XXH3-64 '%.24s': expected 16 hex digits",
		                 hex ? hex : "(null)");
	*out = XXH64_hashFromCanonical(&c);
	return 0;
}

// ---------------------------------------------------------------- streaming

/* Both widths wrap one xxHash state (64-byte aligned, allocated by the
 * library) and a flag that says which XXH3 variant resets and feeds it; the
 * two public types stay distinct so that a 64-bit hasher cannot be digested
 * at 128 bits by mistake. */
typedef struct hstate {
	XXH3_state_t *st;
	int wide;                 /* 1: XXH3-128, 0: XXH3-64 */
} hstate;

struct qc_hasher {
	hstate s;
};
struct qc_hasher64 {
	hstate s;
};

static void hs_reset(hstate *s)
{
	if (s->wide)
		XXH3_128bits_reset(s->st);
	else
		XXH3_64bits_reset(s->st);
}

/* A hasher of either width: size bytes whose first member is the hstate,
 * ready to take data; NULL on out of memory. */
static void *hs_new(size_t size, int wide)
{
	hstate *s = malloc(size);
	if (s && !(s->st = XXH3_createState())) {
		free(s);
		return NULL;
	}
	if (s) {
		s->wide = wide;
		hs_reset(s);
	}
	return s;
}

static void hs_update(hstate *s, const void *data, size_t len)
{
	/* only fails for a NULL state or NULL data with len > 0: caller bugs */
	if (len) {
		XXH_errorcode e = s->wide ? XXH3_128bits_update(s->st, data, len)
		                          : XXH3_64bits_update(s->st, data, len);
		QC_ASSERT(e == XXH_OK);
	}
}

static void hs_free(hstate *s)
{
	if (s)
		XXH3_freeState(s->st);
	free(s);
}

qc_hasher *qc_hasher_new(void) { return hs_new(sizeof(qc_hasher), 1); }
void qc_hasher_reset(qc_hasher *h) { hs_reset(&h->s); }
void qc_hasher_update(qc_hasher *h, const void *data, size_t len) { hs_update(&h->s, data, len); }
void qc_hasher_free(qc_hasher *h) { hs_free(h ? &h->s : NULL); }

qc_h128 qc_hasher_digest128(const qc_hasher *h)
{
	XXH128_hash_t r = XXH3_128bits_digest(h->s.st);
	return (qc_h128){ .hi = r.high64, .lo = r.low64 };
}

qc_hasher64 *qc_hasher64_new(void) { return hs_new(sizeof(qc_hasher64), 0); }
void qc_hasher64_reset(qc_hasher64 *h) { hs_reset(&h->s); }
void qc_hasher64_update(qc_hasher64 *h, const void *data, size_t len) { hs_update(&h->s, data, len); }
void qc_hasher64_free(qc_hasher64 *h) { hs_free(h ? &h->s : NULL); }
uint64_t qc_hasher64_digest(const qc_hasher64 *h) { return XXH3_64bits_digest(h->s.st); }

// ---------------------------------------------------------------- files

int qc_hash_file(const char *path, qc_h128 *out, uint64_t *size_out)
{
	int rc = 0;
	uint64_t total = 0;
	unsigned char *buf = NULL;
	qc_hasher *h = NULL;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return qc_seterr(QC_EIO, "cannot open '%s':", path);
	/* tell the kernel to read ahead aggressively; advisory only */
	(void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);

	buf = malloc(QC_HASH_BLOCK);
	h = qc_hasher_new();
	if (!buf || !h) {
		rc = qc_seterr(QC_ENOMEM, "cannot hash '%s': out of memory", path);
		goto out;
	}
	for (;;) {
		ssize_t n = read(fd, buf, QC_HASH_BLOCK);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			rc = qc_seterr(QC_EIO, "cannot read '%s':", path);
			goto out;
		}
		if (n == 0)
			break;
		qc_hasher_update(h, buf, (size_t)n);
		total += (uint64_t)n;
	}
	*out = qc_hasher_digest128(h);
	if (size_out)
		*size_out = total;
out:
	qc_hasher_free(h);
	free(buf);
	close(fd);
	return rc;
}
