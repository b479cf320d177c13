/* qk_chan.c - per-channel statistics and rescaling (kernels.h): plain
 * loops, rows split over the context's threads where each row is written by
 * one thread (the column maxima are reduced in row order: max is exact, so
 * the result does not depend on the split). */
#include "qk_cpu.h"

#include <float.h>
#include <math.h>

#include "qc_err.h"

int qk_cpu_col_absmax(qk_ctx *ctx, const float *x, int64_t rows, int64_t cols, float *amax)
{
	QC_TRY(qk_cpu_check(ctx, "column absmax"));
	for (int64_t r = 0; r < rows; r++) {
		const float *row = x + r * cols;
		/* a comparison, not fmaxf: the same result (a NaN is passed
		 * over either way) without a libm call per element, and it
		 * vectorizes */
		for (int64_t j = 0; j < cols; j++) {
			float a = fabsf(row[j]);
			amax[j] = a > amax[j] ? a : amax[j];
		}
	}
	return 0;
}

typedef struct scale_job {
	float *x;
	int64_t cols;
	const float *s;
	int divide, by_row;
} scale_job;

static void scale_range(void *p, int64_t r0, int64_t r1)
{
	const scale_job *j = p;
	for (int64_t r = r0; r < r1; r++) {
		float *row = j->x + r * j->cols;
		if (j->by_row) {
			float v = j->s[r];
			for (int64_t c = 0; c < j->cols; c++)
				row[c] = j->divide ? row[c] / v : row[c] * v;
		} else if (j->divide) {
			for (int64_t c = 0; c < j->cols; c++)
				row[c] /= j->s[c];
		} else {
			for (int64_t c = 0; c < j->cols; c++)
				row[c] *= j->s[c];
		}
	}
}

int qk_cpu_scale_cols(qk_ctx *ctx, float *x, int64_t rows, int64_t cols, const float *s,
                      int divide)
{
	QC_TRY(qk_cpu_check(ctx, "scale columns"));
	scale_job j = { x, cols, s, divide, 0 };
	qk_cpu_parallel(ctx, rows, (1 << 16) / (cols > 0 ? cols : 1) + 1, scale_range, &j);
	return 0;
}

int qk_cpu_scale_rows(qk_ctx *ctx, float *x, int64_t rows, int64_t cols, const float *s,
                      int divide)
{
	QC_TRY(qk_cpu_check(ctx, "scale rows"));
	scale_job j = { x, cols, s, divide, 1 };
	qk_cpu_parallel(ctx, rows, (1 << 16) / (cols > 0 ? cols : 1) + 1, scale_range, &j);
	return 0;
}

typedef struct q8_job {
	float *w;
	int64_t cols;
	const float *s;
} q8_job;

static void q8_range(void *p, int64_t r0, int64_t r1)
{
	const q8_job *j = p;
	for (int64_t r = r0; r < r1; r++) {
		float *w = j->w + r * j->cols, amax = 0;
		if (j->s)
			for (int64_t c = 0; c < j->cols; c++)
				w[c] *= j->s[c];
		for (int64_t c = 0; c < j->cols; c++) { /* as in col_absmax */
			float a = fabsf(w[c]);
			amax = a > amax ? a : amax;
		}
		float sc = amax / 127.5f;
		if (sc < FLT_EPSILON)
			sc = FLT_EPSILON;
		for (int64_t c = 0; c < j->cols; c++) {
			float v = nearbyintf(w[c] / sc);
			v = v < -128.0f ? -128.0f : v > 127.0f ? 127.0f : v;
			w[c] = v * sc;
		}
	}
}

int qk_cpu_q8_rows(qk_ctx *ctx, float *w, int64_t rows, int64_t cols, const float *s)
{
	QC_TRY(qk_cpu_check(ctx, "int8 rows"));
	q8_job j = { w, cols, s };
	qk_cpu_parallel(ctx, rows, (1 << 14) / (cols > 0 ? cols : 1) + 1, q8_range, &j);
	return 0;
}
