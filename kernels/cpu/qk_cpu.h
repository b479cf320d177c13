/*
 * qk_cpu.h - internals shared by the CPU kernels (not part of the API).
 *
 * Work that is not a BLAS call is split over rows with qk_cpu_parallel:
 * the range [0, n) is cut into one contiguous block per thread, each row is
 * computed by exactly one thread with the same code as in a serial run, so
 * results do not depend on the thread count at all.
 */
#ifndef QK_CPU_H
#define QK_CPU_H

#include <stdint.h>

#include "kernels.h"

struct qk_ctx {
	qk_device dev;
	int threads;
};

typedef void (*qk_range_fn)(void *arg, int64_t begin, int64_t end);

/* Run fn over [0, n) on up to ctx->threads threads, with at least
 * min_per_thread items each (small jobs stay on the calling thread). */
void qk_cpu_parallel(const qk_ctx *ctx, int64_t n, int64_t min_per_thread, qk_range_fn fn,
                     void *arg);

/* QC_EINVAL unless ctx is a CPU context (the CPU kernels were called with a
 * context of another device, which the dispatch should have prevented). */
int qk_cpu_check(const qk_ctx *ctx, const char *op);

#endif
