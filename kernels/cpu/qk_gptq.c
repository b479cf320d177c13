/*
 * qk_gptq.c - the GPTQ solver's steps on the CPU (kernels.h, "GPTQ
 * support"): the Hessian's diagonal, its permutation and damped factor,
 * group parameters with the clipping search, round to nearest, the error
 * products and the sweep.
 *
 * Rows are independent in every step but the factorization, so each op
 * over weights splits the rows of its matrices (stacked in order) into one
 * contiguous share per thread (qc_pool_range), and each share runs start to
 * end, calling BLAS in its own thread with one BLAS thread: no pool to wake
 * and wait for at every small step of a sweep. Each row is computed by one
 * thread with the same code whatever the split, so a row's results depend
 * only on the row and on the share's size, which is fixed by the thread
 * count.
 */
#include "qk_cpu.h"

#include <cblas.h>
#include <lapacke.h>

#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "qc_err.h"
#include "qc_num.h"
#include "qc_pool.h"
#include "qc_qarith.h"

/* Set by the tests (which compile this file in): the sweep takes its plain
 * paths only (rows in their original order, one row at a time), which the
 * fast ones are compared with bit for bit. */
static int plain_sweep;

/* Four float lanes (GCC/Clang vector extension; SSE2 or NEON registers). */
typedef float qv4 __attribute__((vector_size(16)));

/* Parts for n items of at least min_per each, at most the context's threads
 * (and 64). */
static int nparts(const qk_ctx *ctx, int64_t n, int64_t min_per)
{
	int64_t nt = ctx->threads < 64 ? ctx->threads : 64;
	if (min_per < 1)
		min_per = 1;
	if (n / min_per < nt)
		nt = n / min_per;
	return nt < 1 ? 1 : (int)nt;
}

static int fits(int64_t v) { return v >= 0 && v <= INT_MAX; }

/*
 * Working memory of the ops. A fresh page costs a fault on its first touch,
 * and faults are slow (in a VM, several microseconds each): a [rows, cols]
 * working matrix of a large Linear is some 10^5 pages. Buffers of 4 MiB
 * and more therefore come from qk_mem.c: 2 MiB-aligned, offered transparent
 * huge pages, and kept for reuse when freed.
 */
#define HUGE_MIN ((size_t)4 << 20)

static void *work_alloc(size_t bytes)
{
	/* large ones 2 MiB aligned, offered huge pages, kept for reuse */
	void *p = bytes < HUGE_MIN ? malloc(bytes ? bytes : 1) : qk_cpu_big_alloc(bytes);
	if (!p)
		qc_seterr(QC_ENOMEM, "out of memory (%zu bytes of GPTQ working memory)", bytes);
	return p;
}

static void work_free(void *p)
{
	if (!qk_cpu_big_free(p))
		free(p);
}

// ---------------------------------------------------------------- quantization arithmetic

/* compressed-tensors' rules (calculate_qparams, _quantize; qc_qarith.h) on a qk_qspec. */

static void qrange(const qk_qspec *q, float *qmin, float *qmax)
{
	qc_qa_range(q->is_float, q->bits, qmin, qmax);
}

static void qparams(const qk_qspec *q, float xmin, float xmax, float *scale, float *zp)
{
	qc_qa_params(q->is_float, q->bits, q->symmetric, q->scale_dtype, xmin, xmax, scale, zp);
}

static float quantize(const qk_qspec *q, float x, float scale, float zp)
{
	return qc_qa_quantize(q->is_float, q->bits, q->arith, x, scale, zp);
}

static inline float dequantize(float q, float s, float z) { return (q - z) * s; }

static inline float qdq(const qk_qspec *q, float x, float s, float z)
{
	return dequantize(quantize(q, x, s, z), s, z);
}

static inline void code_store(const qk_qspec *q, uint8_t *codes, int64_t i, float v)
{
	if (q->is_float)
		codes[i] = qc_f32_to_fp8e4m3(v);
	else
		((int8_t *)codes)[i] = (int8_t)v;
}

static void minmax(const float *x, int64_t n, float *mn, float *mx)
{
	float lo = 0, hi = 0;
	for (int64_t i = 0; i < n; i++) {
		if (x[i] < lo)
			lo = x[i];
		if (x[i] > hi)
			hi = x[i];
	}
	*mn = lo;
	*mx = hi;
}

// ---------------------------------------------------------------- group parameters

/*
 * The parameters of one group, exactly as qc_group_params computes them
 * (same candidates, same error terms summed in the same order, same
 * comparisons), only faster:
 *  - a candidate whose partial error already reaches the best one cannot
 *    win (every term is >= 0), so its sum stops there: it counts as "no
 *    improvement", as its full sum would;
 *  - a candidate with the same scale and zero point as the one before it
 *    has the same error, so it is not summed again;
 *  - for integer codes with FP32 arithmetic, quantize-dequantize is inlined
 *    (the same operations as qc_qdq).
 * colw values must be >= 0 (a Hessian diagonal) for the early stop; with a
 * negative weight the sums run to the end.
 */

/* The code of x, as quantize computes it for integer codes in FP32
 * arithmetic: the same operations, inlined. */
static inline float quant_int_f32(float x, float s, float z, float qmin, float qmax)
{
	float v = x / s;
	if (z != 0)
		v = v + z;
	if (v < qmin)
		v = qmin;
	if (v > qmax)
		v = qmax;
	if (v != v)
		v = 0;
	/* round half to even for |v| < 2^22 in the default rounding mode, the
	 * same result as nearbyintf (v is clamped to the code range), whose
	 * sign it keeps: -0.3 rounds to -0 */
	return copysignf((v + 12582912.0f) - 12582912.0f, v);
}

static inline float qdq_int_f32(float x, float s, float z, float qmin, float qmax)
{
	return (quant_int_f32(x, s, z, qmin, qmax) - z) * s;
}

/* Sum of |qdq(x) - x|^norm (weighted), stopping once it reaches `stop`. */
static double group_err_upto(const qk_qspec *q, int fast, float qmin, float qmax, const float *x,
                             int64_t n, const float *colw, float s, float z, double norm,
                             double stop)
{
	double e = 0;
	for (int64_t i = 0; i < n; i++) {
		float v = fast ? qdq_int_f32(x[i], s, z, qmin, qmax) : qdq(q, x[i], s, z);
		double d = fabs((double)v - x[i]);
		double t = norm == 2.0 ? d * d : pow(d, norm);
		e += colw ? colw[i] * t : t;
		if (e >= stop)
			return e;
	}
	return e;
}

#if defined(__SSE2__)
#include <emmintrin.h>

/*
 * The same search with approximate errors, for the default norm 2.4 on
 * integer codes: |d|^2.4 = d^2 m^0.4 2^(0.4 e) for d = m 2^e (m in [1, 2)),
 * with 2^(0.4 e) = 4^k 2^(0.4 r) for e = 5k + r and m^0.4 from two Newton
 * steps on y^5 = m^2, four lanes at a time, summed in double. Every term
 * is within POW24_REL of its exact value (measured over every mantissa:
 * 3.2e-7, plus 1.4e-7 for d rounded to float), so every sum
 * is too, and each comparison of the search is decided only when the
 * approximate sums are further apart than that; otherwise, or when some
 * |d| is outside [2^-40, 2^40) and not 0, the exact search decides. The
 * result is therefore always the exact search's.
 */
#define POW24_REL 4e-6

static const float pow24_t5[5] = { 1.0f, 1.31950791f, 1.74110113f, 2.29739671f, 3.03143313f };

/* The approximate error, stopping once it reaches stop; *bad set when the
 * approximation does not apply. */
static double err24(const float *x, int64_t n, const float *colw, float s, float z, float qmin,
                    float qmax, double stop, int *bad)
{
	const __m128 vs = _mm_set1_ps(s), vz = _mm_set1_ps(z), vlo = _mm_set1_ps(qmin),
	             vhi = _mm_set1_ps(qmax), magic = _mm_set1_ps(12582912.0f),
	             absm = _mm_castsi128_ps(_mm_set1_epi32(0x7fffffff));
	__m128d acc0 = _mm_setzero_pd(), acc1 = _mm_setzero_pd();
	__m128i out = _mm_setzero_si128();
	int64_t i = 0;
	for (; i + 4 <= n; i += 4) {
		__m128 xv = _mm_loadu_ps(x + i);
		/* quantize-dequantize as qdq_int_f32 does it */
		__m128 v = _mm_add_ps(_mm_div_ps(xv, vs), vz);
		v = _mm_min_ps(_mm_max_ps(v, vlo), vhi);
		v = _mm_sub_ps(_mm_add_ps(v, magic), magic);
		__m128 d = _mm_and_ps(_mm_sub_ps(_mm_mul_ps(_mm_sub_ps(v, vz), vs), xv), absm);
		/* d = m 2^e: exponent bits, mantissa in [1, 2) */
		__m128i u = _mm_castps_si128(d);
		__m128i eb = _mm_srli_epi32(u, 23);
		__m128 m = _mm_castsi128_ps(_mm_or_si128(_mm_and_si128(u, _mm_set1_epi32(0x7fffff)),
		                                         _mm_set1_epi32(0x3f800000)));
		__m128i nz = _mm_xor_si128(_mm_cmpeq_epi32(u, _mm_setzero_si128()), _mm_set1_epi32(-1));
		out = _mm_or_si128(out, _mm_cmpgt_epi32(eb, _mm_set1_epi32(127 + 39)));
		out = _mm_or_si128(out, _mm_and_si128(nz, _mm_cmplt_epi32(eb, _mm_set1_epi32(127 - 40))));
		/* e + 500 = eb + 373 = 5 q5 + r (q5 = k + 100), in 16-bit lanes */
		__m128i w = _mm_add_epi32(eb, _mm_set1_epi32(373));
		__m128i q5 = _mm_srli_epi16(_mm_mulhi_epu16(w, _mm_set1_epi16((short)52429)), 2);
		__m128i r = _mm_sub_epi32(w, _mm_add_epi32(_mm_slli_epi32(q5, 2), q5));
		__m128 t5 = _mm_set1_ps(pow24_t5[0]);
		for (int j = 1; j < 5; j++) {
			__m128 mk = _mm_castsi128_ps(_mm_cmpeq_epi32(r, _mm_set1_epi32(j)));
			t5 = _mm_or_ps(_mm_andnot_ps(mk, t5), _mm_and_ps(mk, _mm_set1_ps(pow24_t5[j])));
		}
		/* 4^k = 2^(2 q5 - 200) */
		__m128 p4 = _mm_castsi128_ps(
		    _mm_slli_epi32(_mm_sub_epi32(_mm_add_epi32(q5, q5), _mm_set1_epi32(73)), 23));
		__m128 y = _mm_add_ps(_mm_set1_ps(0.6889f), _mm_mul_ps(_mm_set1_ps(0.3195f), m));
		__m128 m2 = _mm_mul_ps(m, m);
		for (int it = 0; it < 2; it++) {
			__m128 y2 = _mm_mul_ps(y, y);
			y = _mm_add_ps(_mm_mul_ps(_mm_set1_ps(0.8f), y),
			               _mm_mul_ps(_mm_set1_ps(0.2f), _mm_div_ps(m2, _mm_mul_ps(y2, y2))));
		}
		__m128 t = _mm_mul_ps(_mm_mul_ps(_mm_mul_ps(d, d), _mm_mul_ps(y, t5)), p4);
		__m128d tl = _mm_cvtps_pd(t), th = _mm_cvtps_pd(_mm_movehl_ps(t, t));
		if (colw) {
			__m128 cw = _mm_loadu_ps(colw + i);
			tl = _mm_mul_pd(tl, _mm_cvtps_pd(cw));
			th = _mm_mul_pd(th, _mm_cvtps_pd(_mm_movehl_ps(cw, cw)));
		}
		acc0 = _mm_add_pd(acc0, tl);
		acc1 = _mm_add_pd(acc1, th);
		if ((i & 15) == 12) {
			__m128d sacc = _mm_add_pd(acc0, acc1);
			double part = _mm_cvtsd_f64(_mm_add_sd(sacc, _mm_unpackhi_pd(sacc, sacc)));
			if (part >= stop)
				break;
		}
	}
	__m128d sacc = _mm_add_pd(acc0, acc1);
	double e = _mm_cvtsd_f64(_mm_add_sd(sacc, _mm_unpackhi_pd(sacc, sacc)));
	if (_mm_movemask_epi8(out))
		*bad = 1;
	if (e >= stop)
		return e;
	for (; i < n; i++) { /* the tail, with the exact term */
		float d = fabsf(qdq_int_f32(x[i], s, z, qmin, qmax) - x[i]);
		double t = pow((double)d, 2.4);
		e += colw ? colw[i] * t : t;
	}
	return e;
}

#if defined(__x86_64__)
#include <immintrin.h>

/*
 * err24 eight lanes at a time (AVX2, where the CPU has it): the same
 * quantize-dequantize and the same approximation of each term, the table
 * of 2^(0.4 r) read by a lane permutation; the terms are summed in another
 * order, which moves a sum by far less than the approximation's own
 * POW24_REL, so the search decides exactly as with err24.
 */
__attribute__((target("avx2")))
static double err24_avx2(const float *x, int64_t n, const float *colw, float s, float z,
                         float qmin, float qmax, double stop, int *bad)
{
	const __m256 vs = _mm256_set1_ps(s), vz = _mm256_set1_ps(z), vlo = _mm256_set1_ps(qmin),
	             vhi = _mm256_set1_ps(qmax), magic = _mm256_set1_ps(12582912.0f),
	             absm = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
	const __m256 t5tab = _mm256_setr_ps(pow24_t5[0], pow24_t5[1], pow24_t5[2], pow24_t5[3],
	                                    pow24_t5[4], 1.0f, 1.0f, 1.0f);
	__m256d acc0 = _mm256_setzero_pd(), acc1 = _mm256_setzero_pd();
	__m256i out = _mm256_setzero_si256();
	int64_t i = 0;
	for (; i + 8 <= n; i += 8) {
		__m256 xv = _mm256_loadu_ps(x + i);
		__m256 v = _mm256_add_ps(_mm256_div_ps(xv, vs), vz);
		v = _mm256_min_ps(_mm256_max_ps(v, vlo), vhi);
		v = _mm256_sub_ps(_mm256_add_ps(v, magic), magic);
		__m256 d = _mm256_and_ps(_mm256_sub_ps(_mm256_mul_ps(_mm256_sub_ps(v, vz), vs), xv), absm);
		__m256i u = _mm256_castps_si256(d);
		__m256i eb = _mm256_srli_epi32(u, 23);
		__m256 m = _mm256_castsi256_ps(_mm256_or_si256(
		    _mm256_and_si256(u, _mm256_set1_epi32(0x7fffff)), _mm256_set1_epi32(0x3f800000)));
		__m256i nz = _mm256_xor_si256(_mm256_cmpeq_epi32(u, _mm256_setzero_si256()),
		                              _mm256_set1_epi32(-1));
		out = _mm256_or_si256(out, _mm256_cmpgt_epi32(eb, _mm256_set1_epi32(127 + 39)));
		out = _mm256_or_si256(out, _mm256_and_si256(nz, _mm256_cmpgt_epi32(
		                                                    _mm256_set1_epi32(127 - 40), eb)));
		__m256i w = _mm256_add_epi32(eb, _mm256_set1_epi32(373));
		__m256i q5 = _mm256_srli_epi16(_mm256_mulhi_epu16(w, _mm256_set1_epi16((short)52429)), 2);
		__m256i r = _mm256_sub_epi32(w, _mm256_add_epi32(_mm256_slli_epi32(q5, 2), q5));
		__m256 t5 = _mm256_permutevar8x32_ps(t5tab, r);
		__m256 p4 = _mm256_castsi256_ps(_mm256_slli_epi32(
		    _mm256_sub_epi32(_mm256_add_epi32(q5, q5), _mm256_set1_epi32(73)), 23));
		__m256 y = _mm256_add_ps(_mm256_set1_ps(0.6889f), _mm256_mul_ps(_mm256_set1_ps(0.3195f), m));
		__m256 m2 = _mm256_mul_ps(m, m);
		for (int it = 0; it < 2; it++) {
			__m256 y2 = _mm256_mul_ps(y, y);
			y = _mm256_add_ps(_mm256_mul_ps(_mm256_set1_ps(0.8f), y),
			                  _mm256_mul_ps(_mm256_set1_ps(0.2f),
			                                _mm256_div_ps(m2, _mm256_mul_ps(y2, y2))));
		}
		__m256 t = _mm256_mul_ps(_mm256_mul_ps(_mm256_mul_ps(d, d), _mm256_mul_ps(y, t5)), p4);
		__m256d tl = _mm256_cvtps_pd(_mm256_castps256_ps128(t));
		__m256d th = _mm256_cvtps_pd(_mm256_extractf128_ps(t, 1));
		if (colw) {
			__m256 cw = _mm256_loadu_ps(colw + i);
			tl = _mm256_mul_pd(tl, _mm256_cvtps_pd(_mm256_castps256_ps128(cw)));
			th = _mm256_mul_pd(th, _mm256_cvtps_pd(_mm256_extractf128_ps(cw, 1)));
		}
		acc0 = _mm256_add_pd(acc0, tl);
		acc1 = _mm256_add_pd(acc1, th);
		if ((i & 31) == 24) {
			__m256d a = _mm256_add_pd(acc0, acc1);
			__m128d h = _mm_add_pd(_mm256_castpd256_pd128(a), _mm256_extractf128_pd(a, 1));
			if (_mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h))) >= stop)
				break;
		}
	}
	__m256d a = _mm256_add_pd(acc0, acc1);
	__m128d h = _mm_add_pd(_mm256_castpd256_pd128(a), _mm256_extractf128_pd(a, 1));
	double e = _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
	if (!_mm256_testz_si256(out, out))
		*bad = 1;
	if (e >= stop)
		return e;
	for (; i < n; i++) { /* the tail, with the exact term */
		float d = fabsf(qdq_int_f32(x[i], s, z, qmin, qmax) - x[i]);
		double t = pow((double)d, 2.4);
		e += colw ? colw[i] * t : t;
	}
	return e;
}

/*
 * err24 sixteen lanes at a time (AVX-512, where the CPU has it): the AVX2
 * version's operations lane for lane, the out-of-range test in mask
 * registers; only the order of the sum differs again, which the search
 * tolerates as above. A copy in other intrinsics on purpose: one source in
 * the compiler's 16-lane vector types, built for both targets, made the
 * clipping search 1.4x slower with AVX-512 and 4.4x slower with AVX2
 * (GCC 12, a 1B layer's search).
 */
__attribute__((target("avx512f")))
static double err24_avx512(const float *x, int64_t n, const float *colw, float s, float z,
                           float qmin, float qmax, double stop, int *bad)
{
	const __m512 vs = _mm512_set1_ps(s), vz = _mm512_set1_ps(z), vlo = _mm512_set1_ps(qmin),
	             vhi = _mm512_set1_ps(qmax), magic = _mm512_set1_ps(12582912.0f);
	const __m512 t5tab = _mm512_setr_ps(pow24_t5[0], pow24_t5[1], pow24_t5[2], pow24_t5[3],
	                                    pow24_t5[4], 1.0f, 1.0f, 1.0f, 1.0f, 1.0f, 1.0f, 1.0f,
	                                    1.0f, 1.0f, 1.0f, 1.0f);
	__m512d acc0 = _mm512_setzero_pd(), acc1 = _mm512_setzero_pd();
	__mmask16 out = 0;
	int64_t i = 0;
	for (; i + 16 <= n; i += 16) {
		__m512 xv = _mm512_loadu_ps(x + i);
		__m512 v = _mm512_add_ps(_mm512_div_ps(xv, vs), vz);
		v = _mm512_min_ps(_mm512_max_ps(v, vlo), vhi);
		v = _mm512_sub_ps(_mm512_add_ps(v, magic), magic);
		__m512 d = _mm512_abs_ps(_mm512_sub_ps(_mm512_mul_ps(_mm512_sub_ps(v, vz), vs), xv));
		__m512i u = _mm512_castps_si512(d);
		__m512i eb = _mm512_srli_epi32(u, 23);
		__m512 m = _mm512_castsi512_ps(_mm512_or_si512(
		    _mm512_and_si512(u, _mm512_set1_epi32(0x7fffff)), _mm512_set1_epi32(0x3f800000)));
		__mmask16 nz = _mm512_test_epi32_mask(u, u);
		out |= _mm512_cmpgt_epi32_mask(eb, _mm512_set1_epi32(127 + 39));
		out |= _mm512_mask_cmplt_epi32_mask(nz, eb, _mm512_set1_epi32(127 - 40));
		/* e + 500 = eb + 373 = 5 q5 + r: q5 = w / 5 for w < 2^16 */
		__m512i w = _mm512_add_epi32(eb, _mm512_set1_epi32(373));
		__m512i q5 = _mm512_srli_epi32(_mm512_mullo_epi32(w, _mm512_set1_epi32(52429)), 18);
		__m512i r = _mm512_sub_epi32(w, _mm512_add_epi32(_mm512_slli_epi32(q5, 2), q5));
		__m512 t5 = _mm512_permutexvar_ps(r, t5tab);
		__m512 p4 = _mm512_castsi512_ps(_mm512_slli_epi32(
		    _mm512_sub_epi32(_mm512_add_epi32(q5, q5), _mm512_set1_epi32(73)), 23));
		__m512 y = _mm512_add_ps(_mm512_set1_ps(0.6889f), _mm512_mul_ps(_mm512_set1_ps(0.3195f), m));
		__m512 m2 = _mm512_mul_ps(m, m);
		for (int it = 0; it < 2; it++) {
			__m512 y2 = _mm512_mul_ps(y, y);
			y = _mm512_add_ps(_mm512_mul_ps(_mm512_set1_ps(0.8f), y),
			                  _mm512_mul_ps(_mm512_set1_ps(0.2f),
			                                _mm512_div_ps(m2, _mm512_mul_ps(y2, y2))));
		}
		__m512 t = _mm512_mul_ps(_mm512_mul_ps(_mm512_mul_ps(d, d), _mm512_mul_ps(y, t5)), p4);
		__m512d tl = _mm512_cvtps_pd(_mm512_castps512_ps256(t));
		__m512d th = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(t), 1)));
		if (colw) {
			__m512 cw = _mm512_loadu_ps(colw + i);
			tl = _mm512_mul_pd(tl, _mm512_cvtps_pd(_mm512_castps512_ps256(cw)));
			th = _mm512_mul_pd(th, _mm512_cvtps_pd(_mm256_castpd_ps(
			                           _mm512_extractf64x4_pd(_mm512_castps_pd(cw), 1))));
		}
		acc0 = _mm512_add_pd(acc0, tl);
		acc1 = _mm512_add_pd(acc1, th);
		if ((i & 63) == 48 && _mm512_reduce_add_pd(_mm512_add_pd(acc0, acc1)) >= stop)
			break;
	}
	double e = _mm512_reduce_add_pd(_mm512_add_pd(acc0, acc1));
	if (out)
		*bad = 1;
	if (e >= stop)
		return e;
	for (; i < n; i++) { /* the tail, with the exact term */
		float d = fabsf(qdq_int_f32(x[i], s, z, qmin, qmax) - x[i]);
		double t = pow((double)d, 2.4);
		e += colw ? colw[i] * t : t;
	}
	return e;
}

static double err24_best(const float *x, int64_t n, const float *colw, float s, float z,
                         float qmin, float qmax, double stop, int *bad)
{
	if (__builtin_cpu_supports("avx512f"))
		return err24_avx512(x, n, colw, s, z, qmin, qmax, stop, bad);
	if (__builtin_cpu_supports("avx2"))
		return err24_avx2(x, n, colw, s, z, qmin, qmax, stop, bad);
	return err24(x, n, colw, s, z, qmin, qmax, stop, bad);
}
#else
#define err24_best err24
#endif

/* 1 and the parameters when the approximate search decided every step;
 * 0 when the exact search must decide. */
static int gparams24(const qk_qspec *q, const float *x, int64_t n, const float *colw, float mn,
                     float mx, float *scale, float *zp)
{
	const double lo = (1 - POW24_REL) / (1 + POW24_REL), hi = 1 / lo;
	float qmin, qmax;
	qrange(q, &qmin, &qmax);
	int bad = 0;
	float bs = *scale, bz = *zp, ps = bs, pz = bz;
	double best = err24_best(x, n, colw, bs, bz, qmin, qmax, INFINITY, &bad);
	int since = 0;
	int steps = (int)(q->maxshrink * q->grid);
	for (int i = 1; i < steps && !bad; i++) {
		float p = 1.0f - (float)i / (float)q->grid;
		float s, z;
		qparams(q, p * mn, p * mx, &s, &z);
		if (s == ps && z == pz) {
			if (++since >= q->patience)
				break;
			continue;
		}
		ps = s;
		pz = z;
		double e = err24_best(x, n, colw, s, z, qmin, qmax, best * hi, &bad);
		if (e >= best * hi) {         /* surely not below the best */
			if (++since >= q->patience)
				break;
		} else if (e < best * lo) {   /* surely below */
			best = e;
			bs = s;
			bz = z;
			since = 0;
		} else {
			return 0;
		}
	}
	if (bad)
		return 0;
	*scale = bs;
	*zp = bz;
	return 1;
}
#endif

/* One group's parameters (qc_group_params' result). */
static void gparams(const qk_qspec *q, const float *x, int64_t n, const float *colw, float *scale,
                    float *zp)
{
	float mn, mx;
	minmax(x, n, &mn, &mx);
	qparams(q, mn, mx, scale, zp);
	if (!q->mse)
		return;
	float qmin, qmax;
	qrange(q, &qmin, &qmax);
	int fast = !q->is_float && q->arith == QC_DT_F32;
	int monotone = 1;
	if (colw)
		for (int64_t i = 0; i < n; i++)
			if (!(colw[i] >= 0))
				monotone = 0;
#if defined(__SSE2__)
	if (fast && monotone && q->norm == 2.4 && gparams24(q, x, n, colw, mn, mx, scale, zp))
		return;
#endif
	double best = group_err_upto(q, fast, qmin, qmax, x, n, colw, *scale, *zp, q->norm, INFINITY);
	float ps = *scale, pz = *zp;
	int since = 0;
	int steps = (int)(q->maxshrink * q->grid);
	for (int i = 1; i < steps; i++) {
		float p = 1.0f - (float)i / (float)q->grid;
		float s, z;
		qparams(q, p * mn, p * mx, &s, &z);
		if (s == ps && z == pz) { /* the candidate before, again: no improvement */
			if (++since >= q->patience)
				break;
			continue;
		}
		ps = s;
		pz = z;
		double e = group_err_upto(q, fast, qmin, qmax, x, n, colw, s, z, q->norm,
		                          monotone ? best : INFINITY);
		if (e < best) {
			best = e;
			*scale = s;
			*zp = z;
			since = 0;
		} else if (++since >= q->patience) {
			break;
		}
	}
}

// ---------------------------------------------------------------- rows of the matrices

/* One row of the stacked matrices. */
typedef struct qrow {
	const float *w;      /* [cols] */
	uint8_t *code;       /* [cols] */
	float *deq;          /* [cols] or NULL */
	float *sc, *zp;      /* [ng], or the tensor's [1]; zp NULL when symmetric */
	qk_gptq_sums *sum;
} qrow;

static int check_spec(const qk_qspec *q, int64_t cols, const char *op)
{
	if (!q || cols < 1 || !fits(cols))
		return qc_seterr(QC_EINVAL, "%s: invalid arguments", op);
	if ((q->is_float && (q->bits != 8 || !q->symmetric)) ||
	    (!q->is_float && q->bits != 4 && q->bits != 8) || q->group < 1 ||
	    (q->scale_dtype != QC_DT_BF16 && q->scale_dtype != QC_DT_F16 &&
	     q->scale_dtype != QC_DT_F32) ||
	    (q->arith != QC_DT_BF16 && q->arith != QC_DT_F16 && q->arith != QC_DT_F32) ||
	    (q->mse && (q->grid < 1 || q->patience < 1 || !(q->maxshrink >= 0 && q->maxshrink < 1) ||
	                !(q->norm > 0))))
		return qc_seterr(QC_EINVAL, "%s: invalid quantization arguments", op);
	return 0;
}

/* The rows of m[nmat] in order, *R of them (malloc'd). */
static int make_rows(const qk_qspec *q, const qk_gptq_mat *m, int nmat, int64_t cols, int need_sums,
                     const char *op, qrow **out, int64_t *R)
{
	*out = NULL;
	*R = 0;
	QC_TRY(check_spec(q, cols, op));
	if (!m || nmat < 1)
		return qc_seterr(QC_EINVAL, "%s: no matrices", op);
	int64_t n = 0;
	for (int k = 0; k < nmat; k++) {
		if (!m[k].W || m[k].rows < 1 || !m[k].scales || (!q->symmetric && !m[k].zps) ||
		    (need_sums && !m[k].sums) || m[k].rows > INT64_MAX / cols - n)
			return qc_seterr(QC_EINVAL, "%s: invalid matrix %d", op, k);
		n += m[k].rows;
	}
	qrow *rows = malloc((size_t)n * sizeof *rows);
	if (!rows)
		return qc_seterr(QC_ENOMEM, "out of memory");
	const int64_t ng = (cols + q->group - 1) / q->group;
	int64_t r = 0;
	for (int k = 0; k < nmat; k++)
		for (int64_t lr = 0; lr < m[k].rows; lr++, r++) {
			qrow *x = &rows[r];
			int64_t off = q->tensor ? 0 : lr * ng;
			x->w = m[k].W + lr * cols;
			x->code = m[k].codes ? (uint8_t *)m[k].codes + lr * cols : NULL;
			x->deq = m[k].deq ? m[k].deq + lr * cols : NULL;
			x->sc = m[k].scales + off;
			x->zp = q->symmetric ? NULL : m[k].zps + off;
			x->sum = m[k].sums ? m[k].sums + lr : NULL;
		}
	*out = rows;
	*R = n;
	return 0;
}

static inline void row_params(const qrow *r, int64_t g, float *s, float *z)
{
	*s = r->sc[g];
	*z = r->zp ? r->zp[g] : 0.0f;
}

/* Squared norms of the rows of Y [rows, cols] (ld), added to the field at
 * byte offset `field` of sums[rows]. */
static void add_row_sq(const float *Y, int64_t rows, int64_t cols, int64_t ld, const qrow *rw,
                       size_t field)
{
	for (int64_t i = 0; i < rows; i++) {
		const float *y = Y + i * ld;
		double s = 0;
		for (int64_t j = 0; j < cols; j++)
			s += (double)y[j] * y[j];
		*(double *)((char *)rw[i].sum + field) += s;
	}
}

/* A context like ctx with one thread: BLAS in the calling thread. */
static qk_ctx one_thread(const qk_ctx *ctx)
{
	qk_ctx one = *ctx;
	one.threads = 1;
	return one;
}

// ---------------------------------------------------------------- the Hessian

typedef struct hjob {
	float *H;
	int64_t n;
	const int64_t *sigma;
	float *tmp;          /* [parts, n] */
	float *dg;           /* [n] out */
	int64_t *bad;        /* [parts] first non-finite index per part */
} hjob;

static int hdiag_part(void *arg, int part, int np)
{
	hjob *j = arg;
	int64_t b, e;
	qc_pool_range(j->n, part, np, &b, &e);
	j->bad[part] = -1;
	for (int64_t i = b; i < e; i++) {
		const float *row = j->H + i * j->n;
		j->dg[i] = row[i];
		if (j->bad[part] < 0)
			for (int64_t c = i; c < j->n; c++)
				if (!isfinite(row[c])) {
					j->bad[part] = i * j->n + c;
					break;
				}
	}
	return 0;
}

int qk_cpu_gptq_hdiag(qk_ctx *ctx, const float *H, int64_t n, float *diag, int64_t *bad)
{
	QC_TRY(qk_cpu_check(ctx, "gptq hdiag"));
	if (!H || !diag || !bad || n < 1)
		return qc_seterr(QC_EINVAL, "gptq hdiag: invalid arguments");
	int np = nparts(ctx, n, 64);
	int64_t pb[64];
	hjob j = { .H = (float *)H, .n = n, .dg = diag, .bad = pb };
	QC_TRY(qc_pool_run(np, hdiag_part, &j));
	*bad = -1;
	for (int p = 0; p < np && *bad < 0; p++)
		*bad = pb[p];
	return 0;
}

/* Strict lower triangle of H [n, n] = the mirror of its upper one, in
 * tiles of 64 x 64 (a transpose column by column would miss the cache on
 * every element), tile rows split over the parts. */
#define MIRROR_T 64

static void mirror_rows(float *H, int64_t n, int64_t b, int64_t e)
{
	const int64_t T = MIRROR_T;
	for (int64_t bi = b; bi < e; bi++) {
		int64_t i0 = bi * T, i1 = i0 + T < n ? i0 + T : n;
		for (int64_t j0 = 0; j0 <= i0; j0 += T) {
			int64_t j1 = j0 + T < n ? j0 + T : n;
			for (int64_t i = i0; i < i1; i++)
				for (int64_t j = j0; j < j1 && j < i; j++)
					H[i * n + j] = H[j * n + i];
		}
	}
}

static int mirror_part(void *arg, int part, int np)
{
	hjob *j = arg;
	int64_t b, e;
	qc_pool_range((j->n + MIRROR_T - 1) / MIRROR_T, part, np, &b, &e);
	mirror_rows(j->H, j->n, b, e);
	return 0;
}

static int mirror(qk_ctx *ctx, float *H, int64_t n)
{
	hjob j = { .H = H, .n = n };
	return qc_pool_run(nparts(ctx, (n + MIRROR_T - 1) / MIRROR_T, 4), mirror_part, &j);
}

/* Columns of rows [b, e) of H: row[j] = row[sigma[j]]. */
static int permute_cols_part(void *arg, int part, int np)
{
	hjob *j = arg;
	int64_t b, e;
	qc_pool_range(j->n, part, np, &b, &e);
	float *tmp = j->tmp + (size_t)part * (size_t)j->n;
	for (int64_t i = b; i < e; i++) {
		float *row = j->H + i * j->n;
		for (int64_t c = 0; c < j->n; c++)
			tmp[c] = row[j->sigma[c]];
		memcpy(row, tmp, (size_t)j->n * sizeof *row);
	}
	return 0;
}

int qk_cpu_gptq_permute(qk_ctx *ctx, float *H, int64_t n, const int64_t *sigma)
{
	QC_TRY(qk_cpu_check(ctx, "gptq permute"));
	if (!H || !sigma || n < 1)
		return qc_seterr(QC_EINVAL, "gptq permute: invalid arguments");
	/* H is made symmetric first; rows move along the cycles of sigma with
	 * one spare row, then each row's columns are gathered */
	QC_TRY(mirror(ctx, H, n));
	int np = nparts(ctx, n, 64);
	float *tmp = malloc((size_t)n * (size_t)(np > 1 ? np : 1) * sizeof *tmp);
	uint8_t *seen = calloc((size_t)n, 1);
	if (!tmp || !seen) {
		free(tmp);
		free(seen);
		return qc_seterr(QC_ENOMEM, "out of memory");
	}
	for (int64_t s = 0; s < n; s++) {
		if (seen[s])
			continue;
		seen[s] = 1;
		if (sigma[s] == s)
			continue;
		memcpy(tmp, H + s * n, (size_t)n * sizeof *tmp);
		for (int64_t i = s;;) {
			int64_t j = sigma[i];
			if (j == s) {
				memcpy(H + i * n, tmp, (size_t)n * sizeof *tmp);
				break;
			}
			memcpy(H + i * n, H + j * n, (size_t)n * sizeof *tmp);
			seen[j] = 1;
			i = j;
		}
	}
	free(seen);
	hjob j = { .H = H, .n = n, .sigma = sigma, .tmp = tmp };
	int rc = qc_pool_run(np, permute_cols_part, &j);
	free(tmp);
	return rc;
}

/*
 * The sweep's block inverses through LAPACKE's row-major interface (a
 * transposed copy of a block of at most 256 x 256, nothing beside the
 * O(nb^3) work). qk_tri_inverse skips that copy by inverting the other
 * triangle column-major, which rounds differently; this keeps the
 * inverses, and so the codes, as they have been.
 */
static int small_tri_inverse(qk_ctx *ctx, float *A, int64_t n, int upper)
{
	qk_cpu_blas_threads(ctx->threads);
	lapack_int info = LAPACKE_strtri(LAPACK_ROW_MAJOR, upper ? 'U' : 'L', 'N', (lapack_int)n, A,
	                                 (lapack_int)n);
	if (info > 0)
		return qc_seterr(QC_ENUMERIC, "triangular inverse failed: diagonal entry %d is zero",
		                 (int)info);
	if (info < 0)
		return qc_seterr(info == -5 ? QC_ENUMERIC : QC_EINTERNAL,
		                 "triangular inverse failed: LAPACKE_strtri argument %d invalid or NaN",
		                 (int)-info);
	return 0;
}

/*
 * Cholesky factorization A = L L^T of A [n, n] in place, reading and
 * writing only the lower triangle (diagonal included): LAPACK's potrf on
 * the upper triangle of the column-major matrix, which is the row-major
 * lower one, so no copy (OpenBLAS runs it blocked on GEMMs with the
 * context's threads, at about the sgemm rate). LAPACK leaves the other
 * triangle alone, also when the factorization fails, which is what lets
 * the caller keep a copy of A there.
 * QC_ENUMERIC when A is not positive definite (to working precision).
 */
static int chol_lower(qk_ctx *ctx, float *A, int64_t n)
{
	qk_cpu_blas_threads(ctx->threads);
	lapack_int info = LAPACKE_spotrf(LAPACK_COL_MAJOR, 'U', (lapack_int)n, A, (lapack_int)n);
	if (info > 0)
		return qc_seterr(QC_ENUMERIC,
		                 "cholesky failed: matrix is not positive definite (leading minor %d of %lld)",
		                 (int)info, (long long)n);
	if (info < 0)
		return qc_seterr(info == -4 ? QC_ENUMERIC : QC_EINTERNAL,
		                 "cholesky failed: LAPACKE_spotrf argument %d invalid or NaN", (int)-info);
	return 0;
}

/* V = J L J from L in the lower triangle (and a copy of M in the strict
 * upper one): rows i and n-1-i swap, each reversed, then the strict lower
 * triangle (the copy, moved there) is cleared. Row pairs split over the
 * parts. */
static int reverse_part(void *arg, int part, int np)
{
	hjob *j = arg;
	const int64_t n = j->n;
	int64_t b, e;
	qc_pool_range((n + 1) / 2, part, np, &b, &e);
	for (int64_t i = b; i < e; i++) {
		float *x = j->H + i * n, *y = j->H + (n - 1 - i) * n;
		if (x == y) {
			for (int64_t k = 0, l = n - 1; k < l; k++, l--) {
				float t = x[k];
				x[k] = x[l];
				x[l] = t;
			}
		} else {
			for (int64_t k = 0; k < n; k++) {
				float t = x[k];
				x[k] = y[n - 1 - k];
				y[n - 1 - k] = t;
			}
			memset(y, 0, (size_t)(n - 1 - i) * sizeof *y);
		}
		memset(x, 0, (size_t)i * sizeof *x);
	}
	return 0;
}

int qk_cpu_gptq_factor(qk_ctx *ctx, float *H, int64_t n, const float *diag, double lambda)
{
	QC_TRY(qk_cpu_check(ctx, "gptq factor"));
	if (!H || !diag || n < 1 || !fits(n))
		return qc_seterr(QC_EINVAL, "gptq factor: invalid arguments");
	for (int64_t i = 0; i < n; i++)
		H[i * n + i] = (float)((double)diag[i] + lambda);
	int rc = chol_lower(ctx, H, n);
	if (rc == QC_ENUMERIC) {
		/* the strict upper triangle is M's: restore the lower one */
		char msg[256];
		snprintf(msg, sizeof msg, "%s", qc_errmsg());
		int rc2 = mirror(ctx, H, n);
		return rc2 ? rc2 : qc_seterr(QC_ENUMERIC, "%s", msg);
	}
	if (rc)
		return rc;
	hjob j = { .H = H, .n = n };
	return qc_pool_run(nparts(ctx, (n + 1) / 2, 64), reverse_part, &j);
}

int qk_cpu_gptq_minmax(qk_ctx *ctx, const float *W, size_t n, float *mn, float *mx)
{
	QC_TRY(qk_cpu_check(ctx, "gptq minmax"));
	if (!W || !mn || !mx)
		return qc_seterr(QC_EINVAL, "gptq minmax: invalid arguments");
	minmax(W, (int64_t)n, mn, mx);
	return 0;
}

// ---------------------------------------------------------------- parameters and RTN

typedef struct wjob {
	qk_ctx *ctx;
	const qk_qspec *q;
	const qrow *rows;
	int64_t R, n, ng;
	const float *colw;
	/* errors and sweep */
	const float *V;
	const int64_t *perm;
	const uint8_t *dead;
	int dynamic;
	int identity;        /* perm is the identity */
	int64_t block;
	float *S;            /* [R, n] accumulated errors D V */
	float *ubb;          /* U_BB of every block at ubb + i1 wmax */
	const int64_t *starts;
	int64_t nblocks, wmax;
} wjob;

static int params_part(void *arg, int part, int np)
{
	wjob *j = arg;
	int64_t b, e;
	qc_pool_range(j->R, part, np, &b, &e);
	for (int64_t r = b; r < e; r++) {
		const qrow *x = &j->rows[r];
		for (int64_t gi = 0; gi < j->ng; gi++) {
			int64_t c0 = gi * j->q->group, len = j->n - c0 < j->q->group ? j->n - c0 : j->q->group;
			float s, z;
			gparams(j->q, x->w + c0, len, j->colw ? j->colw + c0 : NULL, &s, &z);
			x->sc[gi] = s;
			if (x->zp)
				x->zp[gi] = z;
		}
	}
	return 0;
}

int qk_cpu_gptq_params(qk_ctx *ctx, const qk_qspec *q, const qk_gptq_mat *m, int nmat,
                       int64_t cols, const float *colw)
{
	QC_TRY(qk_cpu_check(ctx, "gptq params"));
	qrow *rows;
	int64_t R;
	QC_TRY(make_rows(q, m, nmat, cols, 0, "gptq params", &rows, &R));
	if (q->tensor) {
		free(rows);
		return qc_seterr(QC_EINVAL, "gptq params: not for a tensor-wide scale");
	}
	wjob j = { .ctx = ctx, .q = q, .rows = rows, .R = R, .n = cols,
	           .ng = (cols + q->group - 1) / q->group, .colw = colw };
	int rc = qc_pool_run(nparts(ctx, R, 4), params_part, &j);
	free(rows);
	return rc;
}

static int rtn_part(void *arg, int part, int np)
{
	wjob *j = arg;
	int64_t b, e;
	qc_pool_range(j->R, part, np, &b, &e);
	const int fast = !j->q->is_float && j->q->arith == QC_DT_F32;
	float qmin, qmax;
	qrange(j->q, &qmin, &qmax);
	for (int64_t r = b; r < e; r++) {
		const qrow *x = &j->rows[r];
		double werr = 0, w2 = 0, hw2 = 0, herr = 0;
		for (int64_t c = 0; c < j->n; c++)
			w2 += (double)x->w[c] * x->w[c];
		if (j->colw)
			for (int64_t c = 0; c < j->n; c++)
				hw2 += (double)j->colw[c] * ((double)x->w[c] * x->w[c]);
		/* group by group; integer codes in FP32 through the inlined
		 * quantize (the same operations) */
		for (int64_t c0 = 0; c0 < j->n; c0 += j->q->group) {
			int64_t c1 = c0 + j->q->group < j->n ? c0 + j->q->group : j->n;
			float s, z;
			row_params(x, j->q->tensor ? 0 : c0 / j->q->group, &s, &z);
			for (int64_t c = c0; c < c1; c++) {
				float qv = fast ? quant_int_f32(x->w[c], s, z, qmin, qmax)
				                : quantize(j->q, x->w[c], s, z);
				code_store(j->q, x->code, c, qv);
				float dq = dequantize(qv, s, z);
				double d = (double)x->w[c] - dq;
				werr += d * d;
				if (j->colw)
					herr += (double)j->colw[c] * (d * d);
				if (x->deq)
					x->deq[c] = dq;
			}
		}
		x->sum->w2 += w2;
		x->sum->werr += werr;
		x->sum->hw2 += hw2;
		x->sum->herr += herr;
	}
	return 0;
}

int qk_cpu_gptq_rtn(qk_ctx *ctx, const qk_qspec *q, const qk_gptq_mat *m, int nmat, int64_t cols,
                    const float *colw)
{
	QC_TRY(qk_cpu_check(ctx, "gptq rtn"));
	qrow *rows;
	int64_t R;
	QC_TRY(make_rows(q, m, nmat, cols, 1, "gptq rtn", &rows, &R));
	for (int k = 0; k < nmat; k++)
		if (!m[k].codes) {
			free(rows);
			return qc_seterr(QC_EINVAL, "gptq rtn: no codes for matrix %d", k);
		}
	wjob j = { .ctx = ctx, .q = q, .rows = rows, .R = R, .n = cols, .colw = colw };
	int rc = qc_pool_run(nparts(ctx, R, 16), rtn_part, &j);
	free(rows);
	return rc;
}

// ---------------------------------------------------------------- errors: tr(A H A^T)

/*
 * ||Wp V||^2 and ||(W - Q_rtn)p V||^2 for the rows of a share, in chunks
 * of ERR_ROWS rows: X [2m, n] times the upper triangular V, one column
 * block J of width ERR_NB at a time, Y_J = X[:, :end(J)] V[:end(J), J]
 * (V's zero lower triangle makes the rectangular product the triangular
 * one).
 */
#define ERR_ROWS 128
#define ERR_NB 512

/* Rows [r0, r0 + m) into the chunk: X[i] = Wp (sweep order, dead columns 0)
 * and X[m + i] = the same of W - Q_rtn; their squared norms. */
static void xrows(const wjob *j, int64_t r0, int64_t m, float *X)
{
	const int64_t n = j->n;
	const int fast = !j->q->is_float && j->q->arith == QC_DT_F32;
	float qmin, qmax;
	qrange(j->q, &qmin, &qmax);
	for (int64_t i = 0; i < m; i++) {
		const qrow *x = &j->rows[r0 + i];
		float *xw = X + i * n, *xr = X + (m + i) * n;
		double nw = 0, nr = 0;
		for (int64_t k = 0; k < n; k++) {
			int64_t c = j->perm[k];
			if (j->dead && j->dead[c]) {
				xw[k] = xr[k] = 0;
				continue;
			}
			float w = x->w[c], s, z;
			row_params(x, j->q->tensor ? 0 : c / j->q->group, &s, &z);
			float d = w - (fast ? qdq_int_f32(w, s, z, qmin, qmax) : qdq(j->q, w, s, z));
			xw[k] = w;
			xr[k] = d;
			nw += (double)w * w;
			nr += (double)d * d;
		}
		x->sum->n_w += nw;
		x->sum->n_r += nr;
	}
}

static int errors_part(void *arg, int part, int np)
{
	wjob *j = arg;
	const int64_t n = j->n, nb = n < ERR_NB ? n : ERR_NB;
	int64_t b, e;
	qc_pool_range(j->R, part, np, &b, &e);
	float *X = work_alloc((size_t)(2 * ERR_ROWS * n) * sizeof *X);
	float *Y = work_alloc((size_t)(2 * ERR_ROWS * nb) * sizeof *Y);
	int rc = 0;
	if (!X || !Y)
		rc = QC_ENOMEM;
	qk_ctx k1 = one_thread(j->ctx);
	for (int64_t r0 = b; r0 < e && rc == 0; r0 += ERR_ROWS) {
		int64_t mm = e - r0 < ERR_ROWS ? e - r0 : ERR_ROWS;
		xrows(j, r0, mm, X);
		for (int64_t j0 = 0; j0 < n && rc == 0; j0 += nb) {
			int64_t jb = n - j0 < nb ? n - j0 : nb;
			rc = qk_cpu_gemm(&k1, 0, 0, 2 * mm, jb, j0 + jb, 1.0f, X, n, j->V + j0, n, 0.0f, Y, jb);
			add_row_sq(Y, mm, jb, jb, j->rows + r0, offsetof(qk_gptq_sums, xv_w));
			add_row_sq(Y + mm * jb, mm, jb, jb, j->rows + r0, offsetof(qk_gptq_sums, xv_r));
		}
	}
	work_free(X);
	work_free(Y);
	return rc;
}

int qk_cpu_gptq_errors(qk_ctx *ctx, const qk_qspec *q, const qk_gptq_mat *m, int nmat,
                       int64_t cols, const float *V, const int64_t *perm, const uint8_t *dead)
{
	QC_TRY(qk_cpu_check(ctx, "gptq errors"));
	if (!V || !perm)
		return qc_seterr(QC_EINVAL, "gptq errors: invalid arguments");
	qrow *rows;
	int64_t R;
	QC_TRY(make_rows(q, m, nmat, cols, 1, "gptq errors", &rows, &R));
	wjob j = { .ctx = ctx, .q = q, .rows = rows, .R = R, .n = cols, .V = V, .perm = perm,
	           .dead = dead };
	qk_cpu_blas_threads(1);
	int rc = qc_pool_run(nparts(ctx, R, 64), errors_part, &j);
	free(rows);
	return rc;
}

// ---------------------------------------------------------------- the sweep

/* y[0..n) -= a x[0..n), four lanes at a time (GCC at -O2 does not
 * vectorize the plain loop; each lane computes exactly what it would). */
static inline void axpy_sub(float *restrict y, const float *restrict x, float a, int64_t n)
{
	int64_t i = 0;
	qv4 va = { a, a, a, a };
	for (; i + 4 <= n; i += 4) {
		qv4 xv, yv;
		memcpy(&xv, x + i, sizeof xv);
		memcpy(&yv, y + i, sizeof yv);
		yv -= va * xv;
		memcpy(y + i, &yv, sizeof yv);
	}
	for (; i < n; i++)
		y[i] -= a * x[i];
}

/*
 * One share's block state: rows [rb, re) of the stack, block buffers
 * [rows, wmax] holding them from row 0.
 *
 * With act-order a block's columns lie scattered over every row: each
 * block would read them, and write codes and dequantized values back,
 * scattered, touching most cache lines of every row again. So a share
 * first lays each of its rows out in sweep order, in the row's deq (which
 * the sweep overwrites anyway) or in a scratch row when it has none; the
 * blocks then read and write contiguous columns, and at the end each row's
 * codes and deq are put back in the original order. The values are the
 * same; only where they wait changes.
 */
typedef struct sshare {
	const wjob *j;
	int64_t rb, re;
	int64_t i1, bw;      /* the block: columns i1 .. i1 + bw of the sweep */
	const float *ubb;    /* [bw, bw] */
	float *Wp;           /* [rows, bw] original weights (dead: 0), then D = Wp - Q */
	float *W1;           /* [rows, bw] GPTQ-updated weights; then S_B and E_B */
	float *Qb;           /* [rows, bw] dequantized codes */
	float *Eb;           /* [rows, bw] GPTQ's errors (w - q) / U[j][j] */
	int sorted;          /* rows laid out in sweep order (act-order) */
	float *scratch;      /* [rows, n] sweep-order rows of matrices without deq */
} sshare;

/* Where row r's weights are read and its codes and deq written: in sweep
 * order when sorted (deq holds the sorted weights until the sweep
 * overwrites them), else the row itself in the original order. */
static inline float *row_deq(const sshare *sh, const qrow *x, int64_t r)
{
	if (!sh->sorted)
		return x->deq;
	return x->deq ? x->deq : sh->scratch + (r - sh->rb) * sh->j->n;
}

static inline const float *row_src(const sshare *sh, const qrow *x, int64_t r)
{
	return sh->sorted ? row_deq(sh, x, r) : x->w;
}

/* The position of sweep column k in a row as the share holds it. */
static inline int64_t row_at(const sshare *sh, int64_t k)
{
	return sh->sorted ? k : sh->j->perm[k];
}

/* Rows of the share into sweep order (tmp [n]). */
static void sort_rows(sshare *sh, float *tmp)
{
	const wjob *j = sh->j;
	const int64_t n = j->n;
	for (int64_t r = sh->rb; r < sh->re; r++) {
		const qrow *x = &j->rows[r];
		for (int64_t k = 0; k < n; k++)
			tmp[k] = x->w[j->perm[k]];
		memcpy(row_deq(sh, x, r), tmp, (size_t)n * sizeof *tmp);
	}
}

/* Codes and deq of the share's rows back into the original order (tmp
 * [n] floats). */
static void unsort_rows(sshare *sh, float *tmp)
{
	const wjob *j = sh->j;
	const int64_t n = j->n;
	uint8_t *ct = (uint8_t *)tmp;
	for (int64_t r = sh->rb; r < sh->re; r++) {
		const qrow *x = &j->rows[r];
		for (int64_t k = 0; k < n; k++)
			ct[j->perm[k]] = x->code[k];
		memcpy(x->code, ct, (size_t)n);
		if (x->deq) {
			for (int64_t k = 0; k < n; k++)
				tmp[j->perm[k]] = x->deq[k];
			memcpy(x->deq, tmp, (size_t)n * sizeof *tmp);
		}
	}
}

/* Gather the block's columns: Wp (dead columns 0) and W1 = Wp. */
static void gather(sshare *sh)
{
	const wjob *j = sh->j;
	for (int64_t r = sh->rb; r < sh->re; r++) {
		const qrow *x = &j->rows[r];
		const float *src = row_src(sh, x, r);
		float *wp = sh->Wp + (r - sh->rb) * sh->bw, *w1 = sh->W1 + (r - sh->rb) * sh->bw;
		double werr = 0;
		for (int64_t jj = 0; jj < sh->bw; jj++) {
			int64_t k = sh->i1 + jj, c = j->perm[k];
			float w = src[row_at(sh, k)];
			if (j->dead && j->dead[c]) {
				werr += (double)w * w; /* Q is 0 there */
				w = 0;
			}
			wp[jj] = w1[jj] = w;
		}
		x->sum->werr += werr;
	}
}

#define SUB 32 /* columns updated one by one before a GEMM updates the rest */

/*
 * Columns [s0, s1) of the block, one by one, for rows [r0, r1): group
 * parameters when a group is entered (dynamic), quantize with the stored
 * scale, err = (w - q) / U[j][j] into Eb, and spread the error over the
 * rest of the sub-block through U_BB, as GPTQ does. The columns after s1
 * get the sub-block's errors afterwards, in one GEMM (sweep_part): the
 * reference's rank-1 updates of the whole rest of the block, lazily
 * batched once more. Sub-blocks end at group starts, so a group entered at
 * s0 sees every earlier column's update.
 */
static void inblock_rows(sshare *sh, int64_t r0, int64_t r1, int64_t s0, int64_t s1)
{
	const wjob *j = sh->j;
	const qk_qspec *q = j->q;
	const int64_t bw = sh->bw, gs = q->group;
	const int fast = !q->is_float && q->arith == QC_DT_F32;
	float qmin, qmax;
	qrange(q, &qmin, &qmax);
	for (int64_t r = r0; r < r1; r++) {
		const qrow *x = &j->rows[r];
		float *deq = row_deq(sh, x, r);
		int64_t o = (r - sh->rb) * bw;
		float *w1 = sh->W1 + o, *qb = sh->Qb + o, *eb = sh->Eb + o;
		for (int64_t jj = s0; jj < s1; jj++) {
			int64_t col = sh->i1 + jj, c = j->perm[col], at = row_at(sh, col);
			int64_t gi = q->tensor ? 0 : c / gs;
			if (j->dynamic && col % gs == 0) {
				/* blocks hold whole groups, and w1 is up to date from
				 * s0 on: the group's updated weights (no act-order
				 * here, so c == col) */
				int64_t len = j->n - col < gs ? j->n - col : gs;
				float s, z;
				gparams(q, w1 + jj, len, j->colw ? j->colw + col : NULL, &s, &z);
				x->sc[gi] = s;
				if (x->zp)
					x->zp[gi] = z;
			}
			float s, z, qv;
			row_params(x, gi, &s, &z);
			if (fast)
				qv = quant_int_f32(w1[jj], s, z, qmin, qmax);
			else
				qv = quantize(q, w1[jj], s, z);
			code_store(q, x->code, at, qv);
			float dq = dequantize(qv, s, z);
			if (deq)
				deq[at] = dq;
			qb[jj] = dq;
			const float *u = sh->ubb + jj * bw;
			float err = (w1[jj] - dq) / u[jj];
			eb[jj] = err;
			/* from the aligned quad holding jj, so that every load meets
			 * an earlier store of the same quad (no store-forwarding
			 * stalls); the columns <= jj are done (U_BB is 0 below its
			 * diagonal, and w1[jj] is not read again) */
			int64_t k0 = jj & ~(int64_t)3;
			if (k0 < s1)
				axpy_sub(w1 + k0, u + k0, err, s1 - k0);
		}
	}
}

/*
 * The same for NV x 8 rows at once, one per lane of NV vectors of eight,
 * for integer codes in FP32 arithmetic. A row's columns form a chain (each
 * column waits for the update by the one before: two divisions and a
 * rounding deep), so one row at a time leaves the core idle; NV x 8
 * independent rows side by side fill it. The sub-block's columns of these
 * rows are held transposed (a column's eight values in one vector) and
 * every lane does exactly the operations of inblock_rows and quant_int_f32
 * in the same order, so the results are the same bits.
 */
#define LANES 8
typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));

#define V8_SET1(a) ((v8f){ (a), (a), (a), (a), (a), (a), (a), (a) })
/* m ? a : b, lane by lane (m from a comparison: all ones or zero) */
#define V8_SEL(m, a, b) ((v8f)(((m) & (v8i)(a)) | (~(m) & (v8i)(b))))

#define INBLOCK_V(NV)                                                                              \
	const wjob *j = sh->j;                                                                         \
	const qk_qspec *q = j->q;                                                                      \
	const int64_t bw = sh->bw, gs = q->group, i1 = sh->i1;                                        \
	const v8f vmin = V8_SET1(qmin), vmax = V8_SET1(qmax), magic = V8_SET1(12582912.0f),           \
	          zero = V8_SET1(0.0f);                                                                \
	const v8i sign = (v8i)V8_SET1(-0.0f);                                                          \
	v8f T[SUB][NV], Qt[SUB][NV], Et[SUB][NV], Rt[SUB][NV];                                         \
	const qrow *x[NV * LANES];                                                                     \
	float *w1[NV * LANES], *qb[NV * LANES], *eb[NV * LANES], *dqo[NV * LANES];                     \
	for (int l = 0; l < NV * LANES; l++) {                                                         \
		int64_t o = (r0 + l - sh->rb) * bw;                                                        \
		x[l] = &j->rows[r0 + l];                                                                   \
		dqo[l] = row_deq(sh, x[l], r0 + l);                                                        \
		w1[l] = sh->W1 + o;                                                                        \
		qb[l] = sh->Qb + o;                                                                        \
		eb[l] = sh->Eb + o;                                                                        \
	}                                                                                              \
	if (j->dynamic && (i1 + s0) % gs == 0) {                                                       \
		/* a group starts here (sub-blocks are cut at group starts): its                          \
		 * parameters from the updated weights, as inblock_rows finds them */                      \
		int64_t col = i1 + s0, gi = col / gs, len = j->n - col < gs ? j->n - col : gs;            \
		for (int l = 0; l < NV * LANES; l++) {                                                     \
			float s_, z_;                                                                          \
			gparams(q, w1[l] + s0, len, j->colw ? j->colw + col : NULL, &s_, &z_);                 \
			x[l]->sc[gi] = s_;                                                                     \
			if (x[l]->zp)                                                                          \
				x[l]->zp[gi] = z_;                                                                 \
		}                                                                                          \
	}                                                                                              \
	for (int64_t k = s0; k < s1; k++)                                                              \
		for (int l = 0; l < NV * LANES; l++)                                                       \
			T[k - s0][l / LANES][l % LANES] = w1[l][k];                                            \
	for (int64_t jj = s0; jj < s1; jj++) {                                                         \
		int64_t c = j->perm[i1 + jj], gi = q->tensor ? 0 : c / gs;                                 \
		const float *u = sh->ubb + jj * bw;                                                        \
		const v8f ujj = V8_SET1(u[jj]);                                                            \
		v8f err[NV], dq[NV], rq[NV];                                                               \
		for (int g = 0; g < NV; g++) {                                                             \
			v8f s, z;                                                                              \
			for (int l = 0; l < LANES; l++) {                                                      \
				const qrow *xr = x[g * LANES + l];                                                 \
				s[l] = xr->sc[gi];                                                                 \
				z[l] = xr->zp ? xr->zp[gi] : 0.0f;                                                 \
			}                                                                                      \
			/* quant_int_f32 */                                                                    \
			v8f w = T[jj - s0][g];                                                                 \
			v8f v = w / s;                                                                         \
			v = V8_SEL(z != zero, v + z, v);                                                       \
			v = V8_SEL(v < vmin, vmin, v);                                                         \
			v = V8_SEL(v > vmax, vmax, v);                                                         \
			v = V8_SEL(v != v, zero, v);                                                           \
			rq[g] = (v8f)(((v8i)((v + magic) - magic) & ~sign) | ((v8i)v & sign));                 \
			dq[g] = (rq[g] - z) * s;                                                               \
			err[g] = (w - dq[g]) / ujj;                                                            \
			Rt[jj - s0][g] = rq[g];                                                                \
			Qt[jj - s0][g] = dq[g];                                                                \
			Et[jj - s0][g] = err[g];                                                               \
		}                                                                                          \
		for (int64_t k = jj + 1; k < s1; k++) {                                                    \
			const v8f uk = V8_SET1(u[k]);                                                          \
			for (int g = 0; g < NV; g++)                                                           \
				T[k - s0][g] -= err[g] * uk;                                                       \
		}                                                                                          \
	}                                                                                              \
	/* the outputs row by row (contiguous runs; many rows' scattered                              \
	 * stores per column would keep the store queue full) */                                       \
	for (int l = 0; l < NV * LANES; l++) {                                                         \
		int g = l / LANES, i = l % LANES;                                                          \
		int8_t *code = (int8_t *)x[l]->code;                                                       \
		for (int64_t jj = s0; jj < s1; jj++) {                                                     \
			int64_t at = row_at(sh, i1 + jj);                                                      \
			code[at] = (int8_t)Rt[jj - s0][g][i];                                                  \
			if (dqo[l])                                                                            \
				dqo[l][at] = Qt[jj - s0][g][i];                                                    \
			qb[l][jj] = Qt[jj - s0][g][i];                                                         \
			eb[l][jj] = Et[jj - s0][g][i];                                                         \
		}                                                                                          \
	}

__attribute__((target_clones("avx2", "default")))
static void inblock_v4(sshare *sh, int64_t r0, int64_t s0, int64_t s1, float qmin, float qmax)
{
	INBLOCK_V(4)
}

__attribute__((target_clones("avx2", "default")))
static void inblock_v1(sshare *sh, int64_t r0, int64_t s0, int64_t s1, float qmin, float qmax)
{
	INBLOCK_V(1)
}

static void inblock(sshare *sh, int64_t s0, int64_t s1)
{
	const qk_qspec *q = sh->j->q;
	int64_t r = sh->rb;
	if (!q->is_float && q->arith == QC_DT_F32 && !plain_sweep) {
		float qmin, qmax;
		qrange(q, &qmin, &qmax);
		for (; r + 4 * LANES <= sh->re; r += 4 * LANES)
			inblock_v4(sh, r, s0, s1, qmin, qmax);
		for (; r + LANES <= sh->re; r += LANES)
			inblock_v1(sh, r, s0, s1, qmin, qmax);
	}
	inblock_rows(sh, r, sh->re, s0, s1);
}

/* D = Wp - Q with its squared norms, and W1 = S_B (the start of
 * E_B = S_B + D V_BB). */
static void delta(sshare *sh)
{
	const wjob *j = sh->j;
	for (int64_t r = sh->rb; r < sh->re; r++) {
		const qrow *x = &j->rows[r];
		float *wp = sh->Wp + (r - sh->rb) * sh->bw;
		const float *qb = sh->Qb + (r - sh->rb) * sh->bw;
		double s = 0, se = 0;
		for (int64_t jj = 0; jj < sh->bw; jj++) {
			double de = (double)wp[jj] - qb[jj];
			float d = wp[jj] - qb[jj];
			wp[jj] = d;
			s += (double)d * d;
			se += de * de;
		}
		x->sum->n_g += s;
		x->sum->werr += se;
		memcpy(sh->W1 + (r - sh->rb) * sh->bw, j->S + r * j->n + sh->i1,
		       (size_t)sh->bw * sizeof(float));
	}
}

/* One share of the sweep: its rows through every block. */
static int sweep_part(void *arg, int part, int np)
{
	const wjob *j = arg;
	const int64_t n = j->n, wmax = j->wmax, gs = j->q->group;
	sshare sh = { .j = j };
	qc_pool_range(j->R, part, np, &sh.rb, &sh.re);
	const int64_t b = sh.rb, rows = sh.re - sh.rb;
	sh.sorted = !j->identity && !plain_sweep;
	int need_scratch = 0;
	for (int64_t r = b; r < sh.re && sh.sorted; r++)
		need_scratch |= !j->rows[r].deq;
	float *buf = work_alloc((size_t)(4 * rows * wmax + n) * sizeof *buf);
	if (!buf)
		return QC_ENOMEM;
	if (need_scratch && !(sh.scratch = work_alloc((size_t)(rows * n) * sizeof(float)))) {
		work_free(buf);
		return QC_ENOMEM;
	}
	float *tmp = buf + 4 * rows * wmax; /* [n] */
	sh.Wp = buf;
	sh.W1 = buf + rows * wmax;
	sh.Qb = buf + 2 * rows * wmax;
	sh.Eb = buf + 3 * rows * wmax;
	memset(j->S + b * n, 0, (size_t)(rows * n) * sizeof(float));
	for (int64_t r = b; r < sh.re; r++) {
		const float *w = j->rows[r].w;
		double s = 0;
		for (int64_t c = 0; c < n; c++)
			s += (double)w[c] * w[c];
		j->rows[r].sum->w2 += s;
	}
	if (sh.sorted)
		sort_rows(&sh, tmp);
	qk_ctx k1 = one_thread(j->ctx);
	int rc = 0;
	for (int64_t k = 0; k < j->nblocks && rc == 0; k++) {
		int64_t i1 = j->starts[k], i2 = j->starts[k + 1], bw = i2 - i1;
		sh.i1 = i1;
		sh.bw = bw;
		sh.ubb = j->ubb + i1 * wmax;
		/* W1 = Wp_B + S_B U_BB: the weights as GPTQ has updated them */
		gather(&sh);
		if (i1 > 0 && (rc = qk_cpu_gemm(&k1, 0, 0, rows, bw, bw, 1.0f, j->S + b * n + i1, n, sh.ubb,
		                                bw, 1.0f, sh.W1, bw)) != 0)
			break;
		/* sub-blocks of SUB columns, cut at group starts when groups are
		 * computed during the sweep */
		for (int64_t s0 = 0; s0 < bw && rc == 0;) {
			int64_t s1 = s0 + SUB < bw ? s0 + SUB : bw;
			if (j->dynamic) {
				int64_t ng = ((i1 + s0) / gs + 1) * gs - i1;
				s1 = ng < s1 ? ng : s1;
			}
			inblock(&sh, s0, s1);
			if (s1 < bw)
				rc = qk_cpu_gemm(&k1, 0, 0, rows, bw - s1, s1 - s0, -1.0f, sh.Eb + s0, bw,
				                 sh.ubb + s0 * bw + s1, bw, 1.0f, sh.W1 + s1, bw);
			s0 = s1;
		}
		if (rc)
			break;
		/* D_B = Wp_B - Q_B; E_B = S_B + D_B V_BB, whose squared norm is
		 * this block's share of tr(D H_damped D^T) */
		delta(&sh);
		if ((rc = qk_cpu_gemm(&k1, 0, 0, rows, bw, bw, 1.0f, sh.Wp, bw, j->V + i1 * n + i1, n, 1.0f,
		                      sh.W1, bw)) != 0)
			break;
		add_row_sq(sh.W1, rows, bw, bw, j->rows + b, offsetof(qk_gptq_sums, xv_g));
		/* the lazy update of every later column: S[:, i2:] += D_B V[B, i2:] */
		if (i2 < n)
			rc = qk_cpu_gemm(&k1, 0, 0, rows, n - i2, bw, 1.0f, sh.Wp, bw, j->V + i1 * n + i2, n,
			                 1.0f, j->S + b * n + i2, n);
	}
	if (rc == 0 && sh.sorted)
		unsort_rows(&sh, tmp);
	work_free(buf);
	work_free(sh.scratch);
	return rc;
}

/* End of the next block starting at i1: blocks of `block` columns, or, when
 * groups are computed during the sweep, a whole number of groups (at most
 * `block` columns, or one group when groups are larger). */
static int64_t block_end(int64_t n, int64_t gs, int dynamic, int64_t i1, int64_t block)
{
	int64_t w = block;
	if (dynamic)
		w = gs <= block ? block / gs * gs : gs;
	return n - i1 < w ? n : i1 + w;
}

int qk_cpu_gptq_sweep(qk_ctx *ctx, const qk_qspec *q, const qk_gptq_mat *m, int nmat,
                      int64_t cols, const float *V, const int64_t *perm, const uint8_t *dead,
                      const float *colw, int64_t block, int dynamic)
{
	QC_TRY(qk_cpu_check(ctx, "gptq sweep"));
	if (!V || !perm || block < 1)
		return qc_seterr(QC_EINVAL, "gptq sweep: invalid arguments");
	if (dynamic && q && q->tensor)
		return qc_seterr(QC_EINVAL, "gptq sweep: dynamic groups need the group strategy");
	qrow *rows;
	int64_t R;
	QC_TRY(make_rows(q, m, nmat, cols, 1, "gptq sweep", &rows, &R));
	for (int k = 0; k < nmat; k++)
		if (!m[k].codes) {
			free(rows);
			return qc_seterr(QC_EINVAL, "gptq sweep: no codes for matrix %d", k);
		}
	const int64_t n = cols, gs = q->group;
	int64_t wmax = dynamic && gs > block ? gs : block;
	if (wmax > n)
		wmax = n;
	wjob j = { .ctx = ctx, .q = q, .rows = rows, .R = R, .n = n, .colw = colw, .V = V,
	           .perm = perm, .dead = dead, .dynamic = dynamic, .block = block, .wmax = wmax };
	int64_t *starts = malloc((size_t)(n + 1) * sizeof *starts);
	float *S = work_alloc((size_t)(R * n) * sizeof *S); /* each share zeroes its rows */
	float *ubb = work_alloc((size_t)(n * wmax) * sizeof *ubb);
	int rc = 0;
	if (!starts || !S || !ubb) {
		rc = qc_seterr(QC_ENOMEM, "out of memory (%lld x %lld working matrix of GPTQ)",
		               (long long)R, (long long)n);
		goto out;
	}
	int64_t nb = 0;
	for (int64_t i1 = 0; i1 < n; i1 = block_end(n, gs, dynamic, i1, block))
		starts[nb++] = i1;
	starts[nb] = n;
	/* U_BB = V_BB^-1 of every block (U's diagonal blocks), at ubb + i1 wmax */
	for (int64_t k = 0; k < nb && rc == 0; k++) {
		int64_t i1 = starts[k], bw = starts[k + 1] - i1;
		float *u = ubb + i1 * wmax;
		for (int64_t i = 0; i < bw; i++)
			memcpy(u + i * bw, V + (i1 + i) * n + i1, (size_t)bw * sizeof(float));
		rc = small_tri_inverse(ctx, u, bw, 1); /* V's zero lower triangle stays */
	}
	if (rc)
		goto out;
	j.identity = 1;
	for (int64_t i = 0; i < n && j.identity; i++)
		j.identity = perm[i] == i;
	if (dynamic && !j.identity) {
		rc = qc_seterr(QC_EINVAL, "gptq sweep: dynamic groups need the identity order");
		goto out;
	}
	j.S = S;
	j.ubb = ubb;
	j.starts = starts;
	j.nblocks = nb;
	qk_cpu_blas_threads(1);
	rc = qc_pool_run(nparts(ctx, R, 16), sweep_part, &j);
out:
	free(starts);
	work_free(S);
	work_free(ubb);
	free(rows);
	return rc;
}
