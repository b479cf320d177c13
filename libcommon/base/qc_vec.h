/*
 * qc_vec.h - growable arrays: one growth rule and one out-of-memory error
 * for every array libcommon builds up an element at a time.
 *
 * An array is fields the caller keeps: a pointer, a count and a capacity in
 * elements, all zero to start (no constructor). Before writing element n:
 *
 *     QC_TRY(qc_grow((void **)&a->v, &a->cap, a->n + 1, sizeof *a->v));
 *     a->v[a->n++] = x;
 *
 * Parallel arrays that share one capacity grow each from a copy of it and
 * store the capacity last, so that a failure half way leaves a capacity that
 * is still true of every array (the first may just be larger than it says):
 *
 *     size_t c = a->cap;
 *     QC_TRY(qc_grow((void **)&a->key, &c, a->n + 1, sizeof *a->key));
 *     QC_TRY(qc_grow((void **)&a->val, &a->cap, a->n + 1, sizeof *a->val));
 *
 * Thread-safe: it touches nothing but its arguments.
 */
#ifndef QC_VEC_H
#define QC_VEC_H

#include <stddef.h>

/* Make *p hold at least need elements of elem bytes (elem > 0). Nothing
 * happens when *cap >= need. Otherwise the capacity doubles, from 16 when it
 * was 0, until it holds need; the block is reallocated and the new elements
 * [old *cap, new *cap) are zero. Returns 0, or QC_ENOMEM with the message
 * "out of memory (...)" when the allocation fails or the size overflows;
 * *p and *cap are then unchanged (and still owned by the caller). */
static inline int qc_grow(void **p, size_t *cap, size_t need, size_t elem);

/* The reallocating part of qc_grow, out of line; call qc_grow, whose check
 * for room costs one compare in the loops that push element by element. */
int qc_grow_alloc(void **p, size_t *cap, size_t need, size_t elem);

static inline int qc_grow(void **p, size_t *cap, size_t need, size_t elem)
{
	return need <= *cap ? 0 : qc_grow_alloc(p, cap, need, elem);
}

#endif
