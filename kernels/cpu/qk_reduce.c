/* qk_reduce.c - reductions and copies over device memory (kernels.h):
 * plain loops, serial, in index order, so that a result never depends on
 * the thread count. */
#include "qk_cpu.h"

#include <math.h>
#include <string.h>

#include "qc_err.h"

int qk_absmax(qk_ctx *ctx, const float *x, size_t n, float *amax)
{
	QC_TRY(qk_cpu_check(ctx, "absmax"));
	float m = *amax;
	for (size_t i = 0; i < n; i++)
		m = fmaxf(m, fabsf(x[i]));
	*amax = m;
	return 0;
}

int qk_sumsq(qk_ctx *ctx, const float *x, size_t n, double *sum)
{
	QC_TRY(qk_cpu_check(ctx, "sumsq"));
	double s = 0;
	for (size_t i = 0; i < n; i++)
		s += (double)x[i] * x[i];
	*sum += s;
	return 0;
}

int qk_sub(qk_ctx *ctx, float *d, const float *a, const float *b, size_t n)
{
	QC_TRY(qk_cpu_check(ctx, "sub"));
	for (size_t i = 0; i < n; i++)
		d[i] = a[i] - b[i];
	return 0;
}

int qk_copy(qk_ctx *ctx, void *dst, const void *src, size_t bytes)
{
	QC_TRY(qk_cpu_check(ctx, "copy"));
	if (bytes)
		memcpy(dst, src, bytes);
	return 0;
}
