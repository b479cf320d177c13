/*
 * qk_wbf16.c - the Linear with BF16 weights on the CPU (qk_linear_bf16 in
 * kernels.h), for a few rows of activations: the lm_head of a decoding step.
 *
 * One decoding step multiplies one token by the whole lm_head (128256 x
 * 2048 for Llama 3.2 1B: 525 MB of BF16). Converting it to FP32 first, as
 * the general path does block by block, writes and reads 2 bytes more for
 * every byte of weight; here each BF16 weight is widened in a register
 * (BF16 is the high half of an FP32: a 16-bit shift) and multiplied at
 * once, so the step reads the weights once, at their stored size. Output
 * rows are split over threads; each row's arithmetic is the same whatever
 * the thread count.
 */
#include "qk_cpu.h"

#include <limits.h>
#include <string.h>

#include "qc_err.h"

typedef struct {
	float *y;
	const float *x, *bias;
	const uint16_t *w;
	int64_t T, in, out;
	int accumulate, simd;
} wbf16_job;

static float bf16_to_f32(uint16_t h)
{
	uint32_t u = (uint32_t)h << 16;
	float f;
	memcpy(&f, &u, sizeof f);
	return f;
}

/* w . x over n values, plain: four accumulators in the order of the
 * vector path's lanes' groups, the reference the SIMD path is tested
 * against */
static float dot_plain(const uint16_t *w, const float *x, int64_t n)
{
	float a0 = 0, a1 = 0, a2 = 0, a3 = 0;
	int64_t i = 0;
	for (; i + 4 <= n; i += 4) {
		a0 += bf16_to_f32(w[i]) * x[i];
		a1 += bf16_to_f32(w[i + 1]) * x[i + 1];
		a2 += bf16_to_f32(w[i + 2]) * x[i + 2];
		a3 += bf16_to_f32(w[i + 3]) * x[i + 3];
	}
	for (; i < n; i++)
		a0 += bf16_to_f32(w[i]) * x[i];
	return (a0 + a1) + (a2 + a3);
}

#if defined(__x86_64__)
#include <immintrin.h>

/* w . x sixteen values at a time (AVX2 and FMA): 8 BF16 widened to FP32 by
 * a zero extension and a shift, two accumulators; the tail is plain */
__attribute__((target("avx2,fma")))
static float dot_avx2(const uint16_t *w, const float *x, int64_t n)
{
	__m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
	int64_t i = 0;
	for (; i + 16 <= n; i += 16) {
		__m256i h0 = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(w + i)));
		__m256i h1 = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(w + i + 8)));
		__m256 f0 = _mm256_castsi256_ps(_mm256_slli_epi32(h0, 16));
		__m256 f1 = _mm256_castsi256_ps(_mm256_slli_epi32(h1, 16));
		a0 = _mm256_fmadd_ps(f0, _mm256_loadu_ps(x + i), a0);
		a1 = _mm256_fmadd_ps(f1, _mm256_loadu_ps(x + i + 8), a1);
	}
	return qk_cpu_hsum256(_mm256_add_ps(a0, a1)) + (i < n ? dot_plain(w + i, x + i, n - i) : 0.0f);
}

static int have_avx2(void)
{
	return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
#else
#define dot_avx2 dot_plain
static int have_avx2(void) { return 0; }
#endif

float qk_cpu_bf16_dot(const uint16_t *w, const float *x, int64_t n, int simd)
{
	return simd && have_avx2() ? dot_avx2(w, x, n) : dot_plain(w, x, n);
}

static void rows(void *p, int64_t o0, int64_t o1)
{
	wbf16_job *j = p;
	for (int64_t o = o0; o < o1; o++)
		for (int64_t t = 0; t < j->T; t++) {
			const uint16_t *wr = j->w + o * j->in;
			const float *xr = j->x + t * j->in;
			float acc = j->simd ? dot_avx2(wr, xr, j->in) : dot_plain(wr, xr, j->in);
			if (j->bias)
				acc += j->bias[o];
			float *yo = j->y + t * j->out + o;
			*yo = j->accumulate ? *yo + acc : acc;
		}
}

int qk_cpu_linear_bf16(qk_ctx *ctx, float *y, const float *x, const uint16_t *w,
                       const float *bias, int64_t T, int64_t in, int64_t out, int accumulate)
{
	QC_TRY(qk_cpu_check(ctx, "linear_bf16"));
	if (T < 0 || in <= 0 || out <= 0 || in > INT_MAX || out > INT_MAX || T > INT_MAX)
		return qc_seterr(QC_EINVAL, "linear_bf16: invalid shape [%lld, %lld] x [%lld, %lld]^T",
		                 (long long)T, (long long)in, (long long)out, (long long)in);
	if (T == 0)
		return 0;
	wbf16_job j = { y, x, bias, w, T, in, out, accumulate, have_avx2() };
	/* 256 rows a thread at least: a row is a few microseconds */
	qk_cpu_parallel(ctx, out, 256, rows, &j);
	return 0;
}
