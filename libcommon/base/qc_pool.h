/*
 * qc_pool.h - the one way libcommon and the kernels run work on several
 * threads: a fork-join over numbered parts.
 *
 * A job is cut into nparts parts; qc_pool_run runs fn(ctx, i, nparts) for
 * every i, part 0 on the calling thread and the others on threads of their
 * own, and returns when all are done. What a part computes must depend only
 * on its number (use qc_pool_range for a split of [0, n)), never on which
 * thread runs it or when: a part whose thread cannot be started runs on the
 * calling thread instead, with the same result.
 *
 * Errors. A part returns 0 or a negative QC_E* code with its message set
 * (messages are per thread, qc_err.h). Every part runs even when another
 * fails; qc_pool_run returns the code of the lowest-numbered part that
 * failed and sets that part's message on the calling thread, so the result
 * and the message do not depend on timing.
 */
#ifndef QC_POOL_H
#define QC_POOL_H

#include <stdint.h>

typedef int (*qc_pool_fn)(void *ctx, int part, int nparts);

/* Run fn(ctx, i, nparts) for i = 0..nparts-1 on up to nparts threads (part 0
 * on the calling thread); returns 0, or the error of the lowest-numbered part
 * that failed, with that part's error message set in the calling thread
 * (qc_err's message is per thread). nparts < 1 runs nothing. */
int qc_pool_run(int nparts, qc_pool_fn fn, void *ctx);

/* The deterministic split: [*lo, *hi) of [0, n) for part i of nparts,
 * contiguous, in order: lo = n * i / nparts, hi = n * (i + 1) / nparts
 * (parts differ in size by at most one; n >= 0, 0 <= i < nparts). */
void qc_pool_range(int64_t n, int part, int nparts, int64_t *lo, int64_t *hi);

#endif
