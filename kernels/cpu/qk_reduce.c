/* qk_reduce.c - reductions, copies and storage-dtype conversions over
 * device memory (kernels.h). The reductions are plain loops, serial, in
 * index order, so that a result never depends on the thread count; the
 * element-wise conversions are split over threads (each element is
 * converted alone, so the split cannot change a bit). */
#include "qk_cpu.h"

#include <math.h>
#include <string.h>

#include "qc_err.h"
#include "qc_num.h"

int qk_cpu_absmax(qk_ctx *ctx, const float *x, size_t n, float *amax)
{
	QC_TRY(qk_cpu_check(ctx, "absmax"));
	float m = *amax;
	/* a comparison, not fmaxf: the same result, a NaN passed over, without
	 * a libm call per element */
	for (size_t i = 0; i < n; i++) {
		float a = fabsf(x[i]);
		m = a > m ? a : m;
	}
	*amax = m;
	return 0;
}

int qk_cpu_sumsq(qk_ctx *ctx, const float *x, size_t n, double *sum)
{
	QC_TRY(qk_cpu_check(ctx, "sumsq"));
	double s = 0;
	for (size_t i = 0; i < n; i++)
		s += (double)x[i] * x[i];
	*sum += s;
	return 0;
}

int qk_cpu_sub(qk_ctx *ctx, float *d, const float *a, const float *b, size_t n)
{
	QC_TRY(qk_cpu_check(ctx, "sub"));
	for (size_t i = 0; i < n; i++)
		d[i] = a[i] - b[i];
	return 0;
}

int qk_cpu_add(qk_ctx *ctx, float *d, const float *a, const float *b, size_t n)
{
	QC_TRY(qk_cpu_check(ctx, "add"));
	for (size_t i = 0; i < n; i++)
		d[i] = a[i] + b[i];
	return 0;
}

int qk_cpu_copy(qk_ctx *ctx, void *dst, const void *src, size_t bytes)
{
	QC_TRY(qk_cpu_check(ctx, "copy"));
	if (bytes)
		memcpy(dst, src, bytes);
	return 0;
}

int qk_cpu_zero(qk_ctx *ctx, void *p, size_t bytes)
{
	QC_TRY(qk_cpu_check(ctx, "zero"));
	if (bytes)
		memset(p, 0, bytes);
	return 0;
}

int qk_cpu_diff_sumsq(qk_ctx *ctx, const float *a, const float *b, size_t n, double *d2,
                      double *b2)
{
	QC_TRY(qk_cpu_check(ctx, "diff sumsq"));
	/* the running sums continue from the caller's values, term by term */
	double s = *d2, t = *b2;
	for (size_t i = 0; i < n; i++) {
		double d = (double)a[i] - (double)b[i];
		s += d * d;
		t += (double)b[i] * b[i];
	}
	*d2 = s;
	*b2 = t;
	return 0;
}

int qk_cpu_nonfinite(qk_ctx *ctx, const float *x, size_t n, int64_t *first)
{
	QC_TRY(qk_cpu_check(ctx, "non-finite scan"));
	*first = qc_first_nonfinite(x, QC_DT_F32, n);
	return 0;
}

typedef struct {
	void *bf;
	float *f;
	const void *cbf;
	const float *cf;
} bf16_job;

static void store_range(void *p, int64_t b, int64_t e)
{
	bf16_job *j = p;
	/* cannot fail: BF16 is a dtype qc_from_f32 converts */
	(void)qc_from_f32((uint16_t *)j->bf + b, QC_DT_BF16, j->cf + b, (size_t)(e - b));
}

static void load_range(void *p, int64_t b, int64_t e)
{
	bf16_job *j = p;
	(void)qc_to_f32(j->f + b, (const uint16_t *)j->cbf + b, QC_DT_BF16, (size_t)(e - b));
}

int qk_cpu_bf16_store(qk_ctx *ctx, void *dst, const float *src, size_t n)
{
	QC_TRY(qk_cpu_check(ctx, "bf16 store"));
	bf16_job j = { dst, NULL, NULL, src };
	qk_cpu_parallel(ctx, (int64_t)n, 1 << 16, store_range, &j);
	return 0;
}

int qk_cpu_bf16_load(qk_ctx *ctx, float *dst, const void *src, size_t n)
{
	QC_TRY(qk_cpu_check(ctx, "bf16 load"));
	bf16_job j = { NULL, dst, src, NULL };
	qk_cpu_parallel(ctx, (int64_t)n, 1 << 16, load_range, &j);
	return 0;
}
