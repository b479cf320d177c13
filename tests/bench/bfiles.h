/*
 * bfiles.h - the files of a checkpoint directory as the read-bound
 * benchmarks (bench_read, bench_pack) time them: listed through
 * qc_ckpt_list, dropped from the page cache for cold runs, and read by
 * `cat` as the reference.
 */
#ifndef BFILES_H
#define BFILES_H

#include <stddef.h>
#include <stdint.h>

#include "qc_dtype.h"

typedef struct bfiles {
	char **path;           /* dir/member, owned */
	size_t n, cap;
	uint64_t bytes;        /* their sizes summed */
	const char *dir;       /* set by the caller */
	int cold;              /* evict the files before each bf_cat */
} bfiles;

/* qc_ckpt_list's callback (ctx: a bfiles): each member's path and size. */
int bf_add_member(void *ctx, const char *member, uint64_t size, const qc_tensor *t);

/* Drop the files' pages from the page cache (a hint the kernel follows for
 * clean pages), so the next run reads from the device. */
void bf_evict(const bfiles *f);

/* `cat FILES > /dev/null` (evicting first when cold): seconds, or -1. */
double bf_cat(const bfiles *f);

#endif
