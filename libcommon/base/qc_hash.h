/*
 * qc_hash.h - XXH3 hashes of tensors and files (xxHash library).
 *
 * XXH3-64 identifies tensors (their raw little-endian bytes); XXH3-128
 * identifies files and token sets. Hex strings use xxHash's canonical
 * (big-endian) byte order, as xxhsum 0.8 prints them: `xxhsum -H2` gives
 * the 128-bit form (32 lower-case hex digits: hi then lo) and `xxhsum -H3`
 * the 64-bit XXH3 (16 digits). So `xxhsum -H2 FILE` checks a manifest's
 * "xxh3_128" by hand.
 *
 * Every function here is thread-safe; a hasher is used by one thread at a
 * time. Seeds are always 0 (the xxhsum default).
 */
#ifndef QC_HASH_H
#define QC_HASH_H

#include <stddef.h>
#include <stdint.h>

typedef struct qc_h128 {
	uint64_t hi, lo;
} qc_h128;

uint64_t qc_xxh3_64(const void *data, size_t len);
qc_h128 qc_xxh3_128(const void *data, size_t len);
int qc_h128_eq(qc_h128 a, qc_h128 b);

/* Hex forms; out must hold 33 (128-bit) or 17 (64-bit) bytes. */
char *qc_h128_hex(qc_h128 h, char out[33]);
char *qc_h64_hex(uint64_t h, char out[17]);
/* Parse exactly 32 (16) hex digits, either case, nothing before or after;
 * return 0 or QC_EFORMAT with the message set. */
int qc_h128_parse(const char *hex, qc_h128 *out);
int qc_h64_parse(const char *hex, uint64_t *out);

/* Streaming hashers for data that arrives in pieces (files written or read
 * through a pipe). Opaque; create, update any number of times, digest. */
typedef struct qc_hasher qc_hasher;
qc_hasher *qc_hasher_new(void);               /* NULL on out of memory */
void qc_hasher_reset(qc_hasher *h);
void qc_hasher_update(qc_hasher *h, const void *data, size_t len);
qc_h128 qc_hasher_digest128(const qc_hasher *h);
void qc_hasher_free(qc_hasher *h);            /* NULL is a no-op */

typedef struct qc_hasher64 qc_hasher64;
qc_hasher64 *qc_hasher64_new(void);            /* NULL on out of memory */
void qc_hasher64_reset(qc_hasher64 *h);
void qc_hasher64_update(qc_hasher64 *h, const void *data, size_t len);
uint64_t qc_hasher64_digest(const qc_hasher64 *h);
void qc_hasher64_free(qc_hasher64 *h);        /* NULL is a no-op */

/* XXH3-128 of a whole file, read in 4 MiB blocks (so that hashing a
 * checkpoint runs at disk speed); size_out (bytes read) may be NULL.
 * Returns 0, QC_ENOMEM, or QC_EIO with the message set ("cannot open
 * 'x': No such file or directory", "cannot read 'x': Is a directory"). */
int qc_hash_file(const char *path, qc_h128 *out, uint64_t *size_out);

#endif
