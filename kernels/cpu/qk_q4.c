/*
 * qk_q4.c - the W4A16 Linear on the CPU (qk_linear_q4 in kernels.h): 4-bit
 * codes dequantized inside the product.
 *
 * Decoding multiplies one token by every weight: the time is the time to
 * read the weights, so they are read packed (half a byte each plus a scale
 * and zero point per group) and each group's dot product is taken on the
 * codes directly: s (u . x - z sum(x)), with sum(x) per group computed
 * once per token. Where groups are multiples of 32 the token is first
 * copied in nibble order (each run of 32 columns: the even ones, then the
 * odd ones), the order in which 16 bytes of codes hold them as low and high
 * nibbles, so the vector paths convert and multiply without interleaving
 * (AVX2: 1.3x, AVX-512: 1.8x the interleaving AVX2 path on a layer that
 * fits in cache). For more rows (prefill, scoring) a tile of TILE weight
 * rows is dequantized into per-thread scratch and multiplied by SGEMM, so
 * the weights are still read once per call and never exist in FP32 whole.
 * Output rows are split over threads; each row's arithmetic is fixed, so
 * results do not depend on the thread count.
 */
#include "qk_cpu.h"

#include <cblas.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "qc_err.h"

#define TILE 32       /* weight rows dequantized at once for GEMM */
#define FUSED_T 4     /* up to this many rows use the fused dot products */

typedef struct {
	float *y;
	const float *x, *s, *z, *bias, *xsum;   /* xsum [T, ng] */
	const float *xn;   /* x in nibble order [T, in], or NULL (nibble_order) */
	const uint8_t *q;
	int64_t T, in, out, group, ng;
	int accumulate, failed;
} q4_job;

/* u . x over one group: n/2 bytes of codes, n values of x (n even) */
static float dot_group(const uint8_t *q, const float *x, int64_t n)
{
	/* four accumulators: independent FMAs the CPU can overlap */
	float a0 = 0, a1 = 0, a2 = 0, a3 = 0;
	int64_t j = 0;
	for (; j + 2 <= n / 2; j += 2) {
		uint8_t b0 = q[j], b1 = q[j + 1];
		a0 += (float)(b0 & 15) * x[2 * j];
		a1 += (float)(b0 >> 4) * x[2 * j + 1];
		a2 += (float)(b1 & 15) * x[2 * j + 2];
		a3 += (float)(b1 >> 4) * x[2 * j + 3];
	}
	for (; j < n / 2; j++) {
		a0 += (float)(q[j] & 15) * x[2 * j];
		a1 += (float)(q[j] >> 4) * x[2 * j + 1];
	}
	return (a0 + a1) + (a2 + a3);
}

static float zero_of(const q4_job *j, int64_t o, int64_t g)
{
	return j->z ? j->z[o * j->ng + g] : 8.0f;
}

/* W row o times x row t, before the bias: sum over groups of s (u . x - z sum(x)) */
static float row_dot(const q4_job *j, int64_t o, int64_t t)
{
	const uint8_t *qr = j->q + o * (j->in / 2);
	const float *x = j->x + t * j->in;
	float acc = 0;
	for (int64_t g = 0; g < j->ng; g++) {
		float d = dot_group(qr + g * (j->group / 2), x + g * j->group, j->group);
		acc += j->s[o * j->ng + g] * (d - zero_of(j, o, g) * j->xsum[t * j->ng + g]);
	}
	return acc;
}

#if defined(__x86_64__)
#include <immintrin.h>

/*
 * row_dot eight lanes at a time (AVX2 and FMA, where the CPU has them): 8
 * bytes of codes become 16 floats in column order (low nibbles and high
 * nibbles interleaved, widened, converted), multiplied into two vector
 * accumulators per group, scaled into the row's vector total; the sums run
 * in another order than row_dot's, within FP32 rounding of it (the kernel
 * tests compare both paths' results with the plain reference). Groups
 * whose size is not a multiple of 16 finish with scalar code.
 */
__attribute__((target("avx2,fma")))
static float row_dot_avx2(const q4_job *j, int64_t o, int64_t t)
{
	const uint8_t *qr = j->q + o * (j->in / 2);
	const float *x = j->x + t * j->in;
	const __m128i m15 = _mm_set1_epi8(15);
	__m256 tot = _mm256_setzero_ps();
	float zs = 0, rest = 0;
	for (int64_t g = 0; g < j->ng; g++) {
		const uint8_t *q = qr + g * (j->group / 2);
		const float *xg = x + g * j->group;
		__m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
		int64_t i = 0;
		for (; i + 16 <= j->group; i += 16) {
			__m128i b = _mm_loadl_epi64((const __m128i *)(q + i / 2));
			__m128i lo = _mm_and_si128(b, m15);
			__m128i hi = _mm_and_si128(_mm_srli_epi16(b, 4), m15);
			__m128i c = _mm_unpacklo_epi8(lo, hi);
			__m256 f0 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(c));
			__m256 f1 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(c, 8)));
			a0 = _mm256_fmadd_ps(f0, _mm256_loadu_ps(xg + i), a0);
			a1 = _mm256_fmadd_ps(f1, _mm256_loadu_ps(xg + i + 8), a1);
		}
		float sc = j->s[o * j->ng + g];
		tot = _mm256_fmadd_ps(_mm256_set1_ps(sc), _mm256_add_ps(a0, a1), tot);
		if (i < j->group)
			rest += sc * dot_group(q + i / 2, xg + i, j->group - i);
		zs += sc * zero_of(j, o, g) * j->xsum[t * j->ng + g];
	}
	return qk_cpu_hsum256(tot) + rest - zs;
}

/*
 * The same with x in nibble order (nibble_order below: in each run of 32
 * columns the 16 even ones, then the 16 odd ones), so 16 bytes of codes give
 * the even columns' codes in their low nibbles and the odd ones' in their
 * high nibbles, each already in x's order: no interleaving, and four
 * conversions and FMAs per 32 weights. Groups are multiples of 32.
 */
__attribute__((target("avx2,fma")))
static float row_dot_nib_avx2(const q4_job *j, int64_t o, int64_t t)
{
	const uint8_t *qr = j->q + o * (j->in / 2);
	const float *x = j->xn + t * j->in;
	const __m128i m15 = _mm_set1_epi8(15);
	__m256 tot = _mm256_setzero_ps();
	float zs = 0;
	for (int64_t g = 0; g < j->ng; g++) {
		const uint8_t *q = qr + g * (j->group / 2);
		const float *xg = x + g * j->group;
		__m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
		for (int64_t i = 0; i < j->group; i += 32) {
			__m128i b = _mm_loadu_si128((const __m128i *)(q + i / 2));
			__m128i lo = _mm_and_si128(b, m15);
			__m128i hi = _mm_and_si128(_mm_srli_epi16(b, 4), m15);
			__m256 e0 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(lo));
			__m256 e1 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(lo, 8)));
			__m256 d0 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(hi));
			__m256 d1 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(hi, 8)));
			a0 = _mm256_fmadd_ps(e0, _mm256_loadu_ps(xg + i), a0);
			a1 = _mm256_fmadd_ps(e1, _mm256_loadu_ps(xg + i + 8), a1);
			a0 = _mm256_fmadd_ps(d0, _mm256_loadu_ps(xg + i + 16), a0);
			a1 = _mm256_fmadd_ps(d1, _mm256_loadu_ps(xg + i + 24), a1);
		}
		float sc = j->s[o * j->ng + g];
		tot = _mm256_fmadd_ps(_mm256_set1_ps(sc), _mm256_add_ps(a0, a1), tot);
		zs += sc * zero_of(j, o, g) * j->xsum[t * j->ng + g];
	}
	return qk_cpu_hsum256(tot) - zs;
}

/* the same, sixteen lanes at a time (AVX-512F) */
__attribute__((target("avx512f,avx2,fma")))
static float row_dot_nib_avx512(const q4_job *j, int64_t o, int64_t t)
{
	const uint8_t *qr = j->q + o * (j->in / 2);
	const float *x = j->xn + t * j->in;
	const __m128i m15 = _mm_set1_epi8(15);
	__m512 tot = _mm512_setzero_ps();
	float zs = 0;
	for (int64_t g = 0; g < j->ng; g++) {
		const uint8_t *q = qr + g * (j->group / 2);
		const float *xg = x + g * j->group;
		__m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
		for (int64_t i = 0; i < j->group; i += 32) {
			__m128i b = _mm_loadu_si128((const __m128i *)(q + i / 2));
			__m512 e = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_and_si128(b, m15)));
			__m512 d = _mm512_cvtepi32_ps(
				_mm512_cvtepu8_epi32(_mm_and_si128(_mm_srli_epi16(b, 4), m15)));
			a0 = _mm512_fmadd_ps(e, _mm512_loadu_ps(xg + i), a0);
			a1 = _mm512_fmadd_ps(d, _mm512_loadu_ps(xg + i + 16), a1);
		}
		float sc = j->s[o * j->ng + g];
		tot = _mm512_fmadd_ps(_mm512_set1_ps(sc), _mm512_add_ps(a0, a1), tot);
		zs += sc * zero_of(j, o, g) * j->xsum[t * j->ng + g];
	}
	return _mm512_reduce_add_ps(tot) - zs;
}

static int have_avx2(void)
{
	return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

static int have_avx512(void)
{
	return have_avx2() && __builtin_cpu_supports("avx512f");
}
#else
#define row_dot_avx2 row_dot
#define row_dot_nib_avx2 row_dot
#define row_dot_nib_avx512 row_dot
static int have_avx2(void) { return 0; }
static int have_avx512(void) { return 0; }
#endif

/* x [T, in] in nibble order into xn: in each run of 32 columns, the even
 * ones then the odd ones (in % 32 == 0) */
static void nibble_order(float *xn, const float *x, int64_t T, int64_t in)
{
	for (int64_t t = 0; t < T; t++)
		for (int64_t c = 0; c < in; c += 32)
			for (int64_t k = 0; k < 16; k++) {
				xn[t * in + c + k] = x[t * in + c + 2 * k];
				xn[t * in + c + 16 + k] = x[t * in + c + 2 * k + 1];
			}
}

/* the fastest path the CPU has, or at most qk_cpu_q4_path's choice */
static int q4_limit = 3;

int qk_cpu_q4_path(int path)
{
	int best = have_avx512() ? 3 : have_avx2() ? 2 : 0;
	q4_limit = path < 0 || path > best ? best : path;
	return q4_limit;
}

static void fused_rows(void *p, int64_t o0, int64_t o1)
{
	q4_job *j = p;
	/* 0 plain, 1 AVX2, 2 AVX2 on nibble-ordered x, 3 AVX-512 on it */
	int path = !have_avx2() ? 0 : !j->xn ? 1 : have_avx512() ? 3 : 2;
	if (path > q4_limit)
		path = q4_limit;
	if (path >= 2 && !j->xn)
		path = 1;
	for (int64_t o = o0; o < o1; o++)
		for (int64_t t = 0; t < j->T; t++) {
			float acc = path == 3   ? row_dot_nib_avx512(j, o, t)
			            : path == 2 ? row_dot_nib_avx2(j, o, t)
			            : path == 1 ? row_dot_avx2(j, o, t)
			                        : row_dot(j, o, t);
			if (j->bias)
				acc += j->bias[o];
			float *yo = j->y + t * j->out + o;
			*yo = j->accumulate ? *yo + acc : acc;
		}
}

/* rows [o0, o1) by tiles: dequantize TILE rows, then y[:, tile] (+)= x W_tile^T */
static void tiled_rows(void *p, int64_t o0, int64_t o1)
{
	q4_job *j = p;
	float *w = malloc((size_t)(TILE * j->in) * sizeof *w);
	if (!w) {
		j->failed = 1;
		return;
	}
	for (int64_t r0 = o0; r0 < o1; r0 += TILE) {
		int64_t rows = o1 - r0 < TILE ? o1 - r0 : TILE;
		for (int64_t r = 0; r < rows; r++) {
			int64_t o = r0 + r;
			const uint8_t *qr = j->q + o * (j->in / 2);
			float *wr = w + r * j->in;
			for (int64_t g = 0; g < j->ng; g++) {
				float sc = j->s[o * j->ng + g], zz = zero_of(j, o, g);
				for (int64_t i = g * j->group; i < (g + 1) * j->group; i += 2) {
					uint8_t b = qr[i / 2];
					wr[i] = ((float)(b & 15) - zz) * sc;
					wr[i + 1] = ((float)(b >> 4) - zz) * sc;
				}
			}
		}
		float beta = j->accumulate ? 1.0f : 0.0f;
		if (j->bias) {
			for (int64_t t = 0; t < j->T; t++)
				for (int64_t r = 0; r < rows; r++) {
					float *yo = j->y + t * j->out + r0 + r;
					*yo = (j->accumulate ? *yo : 0.0f) + j->bias[r0 + r];
				}
			beta = 1.0f;
		}
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)j->T, (blasint)rows,
		            (blasint)j->in, 1.0f, j->x, (blasint)j->in, w, (blasint)j->in, beta,
		            j->y + r0, (blasint)j->out);
	}
	free(w);
}

int qk_cpu_linear_q4(qk_ctx *ctx, float *y, const float *x, const uint8_t *q4, const float *s,
                     const float *z, const float *bias, int64_t T, int64_t in, int64_t out,
                     int64_t group, int accumulate)
{
	QC_TRY(qk_cpu_check(ctx, "linear_q4"));
	if (T < 0 || in <= 0 || out <= 0 || in % 2 || group <= 0 || group % 2 || in % group ||
	    in > INT_MAX || out > INT_MAX || T > INT_MAX)
		return qc_seterr(QC_EINVAL, "linear_q4: invalid shape [%lld, %lld] x [%lld, %lld]^T, "
		                 "group %lld", (long long)T, (long long)in, (long long)out,
		                 (long long)in, (long long)group);
	if (T == 0)
		return 0;
	int64_t ng = in / group;
	q4_job j = { y, x, s, z, bias, NULL, NULL, q4, T, in, out, group, ng, accumulate, 0 };
	if (T <= FUSED_T) {
		float *xs = malloc((size_t)(T * ng) * sizeof *xs);
		if (!xs)
			return qc_seterr(QC_ENOMEM, "linear_q4: out of memory");
		for (int64_t t = 0; t < T; t++)
			for (int64_t g = 0; g < ng; g++) {
				float a = 0;
				for (int64_t i = 0; i < group; i++)
					a += x[t * in + g * group + i];
				xs[t * ng + g] = a;
			}
		j.xsum = xs;
		float *xn = NULL;
		if (group % 32 == 0 && have_avx2()) {
			if (!(xn = malloc((size_t)(T * in) * sizeof *xn))) {
				free(xs);
				return qc_seterr(QC_ENOMEM, "linear_q4: out of memory");
			}
			nibble_order(xn, x, T, in);
			j.xn = xn;
		}
		qk_cpu_parallel(ctx, out, 64, fused_rows, &j);
		free(xn);
		free(xs);
		return 0;
	}
	/* the tiles' GEMMs are small: one BLAS thread inside each worker */
	qk_cpu_blas_threads(1);
	qk_cpu_parallel(ctx, out, TILE, tiled_rows, &j);
	if (j.failed)
		return qc_seterr(QC_ENOMEM, "linear_q4: cannot allocate a tile of %d x %lld", TILE,
		                 (long long)in);
	return 0;
}
