/*
 * qc_strmap.h - a hash map from byte strings to int32 values: open
 * addressing with linear probing on XXH3-64 hashes, at most 3/4 full.
 *
 * The map copies every key into its own arena, so a caller may pass pointers
 * into buffers that move or go away later (a word of the text being
 * encoded, a scratch buffer). Keys are any bytes, NUL included; the map's
 * keys take less than 4 GiB in all. Values are >= 0: qc_strmap_get answers
 * -1 for a key that is not there. What the values mean is the caller's: an
 * id, or an index into the caller's own array of records.
 *
 * Zero-initialize (no constructor); release with qc_strmap_free. The fields
 * are public only so that a map can be embedded; use the functions.
 *
 * Iteration (qc_strmap_next) is in slot order, which depends on the keys and
 * the order they were put, not on the platform or the run; code whose output
 * must not depend on it should only test membership or sort what it finds.
 *
 * Not thread-safe for writes; concurrent qc_strmap_get on a map no thread is
 * writing is safe.
 */
#ifndef QC_STRMAP_H
#define QC_STRMAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct qc_strmap_slot qc_strmap_slot;

typedef struct qc_strmap {
	char *keys;               /* arena: every key followed by a NUL        */
	size_t keys_n, keys_cap;
	qc_strmap_slot *slots;    /* cap slots, cap a power of two (or 0)      */
	size_t cap, count;
} qc_strmap;

/* The value stored for key[0..len), or -1. */
int32_t qc_strmap_get(const qc_strmap *m, const void *key, size_t len);

/* Insert key[0..len) with value val (>= 0), or overwrite the value of a key
 * already there (later puts win). Returns 0, QC_ENOMEM, QC_EINVAL for a
 * negative value, or QC_EUNSUPPORTED when the keys would pass 4 GiB; the map
 * is unchanged on failure. */
int qc_strmap_put(qc_strmap *m, const void *key, size_t len, int32_t val);

/* Number of keys. */
size_t qc_strmap_count(const qc_strmap *m);

/* Iterate: start with *pos = 0; each call returns 1 with the next entry
 * (key NUL-terminated, in the map's arena, valid until the next put, clear
 * or free), or 0 when there are no more. */
int qc_strmap_next(const qc_strmap *m, size_t *pos, const char **key, size_t *len, int32_t *val);

/* Remove every key, keeping the memory for reuse. */
void qc_strmap_clear(qc_strmap *m);

/* Free the memory and zero the struct (then usable again). */
void qc_strmap_free(qc_strmap *m);

#endif
