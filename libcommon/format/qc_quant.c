/* qc_quant.c - quantization primitives (see qc_quant.h for the rules). */
#include "qc_quant.h"

#include <float.h>
#include <math.h>
#include <string.h>

#include "qc_err.h"
#include "qc_num.h"
#include "qc_qarith.h"

int qc_qargs_check(const qc_qargs *a)
{
	if (a->is_float && a->bits != 8)
		return qc_seterr(QC_EINVAL, "float quantization is FP8 E4M3 only (8 bits, not %d)", a->bits);
	if (!a->is_float && a->bits != 4 && a->bits != 8)
		return qc_seterr(QC_EINVAL, "integer quantization is 4 or 8 bits, not %d", a->bits);
	if (a->is_float && !a->symmetric)
		return qc_seterr(QC_EINVAL, "FP8 quantization is symmetric");
	if (a->strategy == QC_QS_GROUP && a->group_size <= 0)
		return qc_seterr(QC_EINVAL, "group size must be positive, not %lld", (long long)a->group_size);
	if (a->strategy != QC_QS_TENSOR && a->strategy != QC_QS_CHANNEL && a->strategy != QC_QS_GROUP)
		return qc_seterr(QC_EINVAL, "unknown quantization strategy %d", (int)a->strategy);
	if (a->scale_dtype != QC_DT_BF16 && a->scale_dtype != QC_DT_F16 && a->scale_dtype != QC_DT_F32)
		return qc_seterr(QC_EINVAL, "scales are BF16, F16 or F32, not %s", qc_dtype_name(a->scale_dtype));
	if (a->arith != QC_DT_BF16 && a->arith != QC_DT_F16 && a->arith != QC_DT_F32)
		return qc_seterr(QC_EINVAL, "quantization arithmetic is BF16, F16 or F32, not %s",
		                 qc_dtype_name(a->arith));
	return 0;
}

void qc_qrange(const qc_qargs *a, float *qmin, float *qmax)
{
	qc_qa_range(a->is_float, a->bits, qmin, qmax);
}

int64_t qc_qgroups(const qc_qargs *a, int64_t cols)
{
	if (a->strategy == QC_QS_GROUP)
		return (cols + a->group_size - 1) / a->group_size;
	return 1;
}

void qc_qparams(const qc_qargs *a, float xmin, float xmax, float *scale, float *zp)
{
	qc_qa_params(a->is_float, a->bits, a->symmetric, a->scale_dtype, xmin, xmax, scale, zp);
}

float qc_quantize_value(const qc_qargs *a, float x, float scale, float zp)
{
	return qc_qa_quantize(a->is_float, a->bits, a->arith, x, scale, zp);
}

float qc_qdq(const qc_qargs *a, float x, float scale, float zp)
{
	return qc_dequantize_value(qc_quantize_value(a, x, scale, zp), scale, zp);
}

float qc_code_load(const qc_qargs *a, const void *codes, size_t i)
{
	if (a->is_float)
		return qc_fp8e4m3_to_f32(((const uint8_t *)codes)[i]);
	return (float)((const int8_t *)codes)[i];
}

void qc_clip_opts_default(qc_clip_opts *c, qc_clip mode)
{
	c->mode = mode;
	c->grid = 100;
	c->maxshrink = 0.20;
	c->patience = 5;
	c->norm = 2.4;
}

void qc_minmax(const float *x, size_t n, float *mn, float *mx)
{
	float lo = 0, hi = 0; /* zero is always in range, so start there */
	for (size_t i = 0; i < n; i++) {
		if (x[i] < lo)
			lo = x[i];
		if (x[i] > hi)
			hi = x[i];
	}
	*mn = lo;
	*mx = hi;
}

static double group_err(const qc_qargs *a, const float *x, int64_t n, const float *colw,
                        float s, float z, double norm)
{
	double e = 0;
	for (int64_t i = 0; i < n; i++) {
		double d = fabs((double)qc_qdq(a, x[i], s, z) - x[i]);
		double t = norm == 2.0 ? d * d : pow(d, norm);
		e += colw ? colw[i] * t : t;
	}
	return e;
}

void qc_group_params(const qc_qargs *a, const qc_clip_opts *c, const float *x, int64_t n,
                     const float *colw, float *scale, float *zp)
{
	float mn, mx;
	qc_minmax(x, (size_t)n, &mn, &mx);
	qc_qparams(a, mn, mx, scale, zp);
	if (!c || c->mode == QC_CLIP_MINMAX)
		return;
	double best = group_err(a, x, n, colw, *scale, *zp, c->norm);
	int since = 0;
	int steps = (int)(c->maxshrink * c->grid);
	for (int i = 1; i < steps; i++) {
		float p = 1.0f - (float)i / (float)c->grid;
		float s, z;
		qc_qparams(a, p * mn, p * mx, &s, &z);
		double e = group_err(a, x, n, colw, s, z, c->norm);
		if (e < best) {
			best = e;
			*scale = s;
			*zp = z;
			since = 0;
		} else if (++since >= c->patience) {
			break;
		}
	}
}

int qc_quant_rtn(const qc_qargs *a, const qc_clip_opts *c, const float *W, int64_t rows,
                 int64_t cols, const float *colw, void *codes, float *scales, float *zps,
                 float *deq)
{
	int rc = qc_qargs_check(a);
	if (rc)
		return rc;
	int64_t ng = qc_qgroups(a, cols);
	int64_t gs = a->strategy == QC_QS_GROUP ? a->group_size : cols;
	float ts = 0, tz = 0;
	if (a->strategy == QC_QS_TENSOR) {
		/* one scale from the global min and max (clipping search per tensor
		 * would need the whole matrix per candidate: minmax only) */
		float mn = 0, mx = 0;
		for (int64_t r = 0; r < rows; r++) {
			float a_mn, a_mx;
			qc_minmax(W + r * cols, (size_t)cols, &a_mn, &a_mx);
			if (a_mn < mn)
				mn = a_mn;
			if (a_mx > mx)
				mx = a_mx;
		}
		qc_qparams(a, mn, mx, &ts, &tz);
		scales[0] = ts;
		if (zps)
			zps[0] = tz;
	}
	for (int64_t r = 0; r < rows; r++) {
		const float *w = W + r * cols;
		for (int64_t g = 0; g < ng; g++) {
			int64_t c0 = g * gs, n = cols - c0 < gs ? cols - c0 : gs;
			float s = ts, z = tz;
			if (a->strategy != QC_QS_TENSOR) {
				qc_group_params(a, c, w + c0, n, colw ? colw + c0 : NULL, &s, &z);
				scales[r * ng + g] = s;
				if (zps)
					zps[r * ng + g] = z;
			}
			for (int64_t j = c0; j < c0 + n; j++) {
				float q = qc_quantize_value(a, w[j], s, z);
				qc_code_store(a, codes, (size_t)(r * cols + j), q);
				if (deq)
					deq[r * cols + j] = qc_dequantize_value(q, s, z);
			}
		}
	}
	return 0;
}

/*
 * FP8 E4M3 quantization of n values with one scale, exact FP32 arithmetic:
 * the fast path of qc_quant_apply (it is checked against qc_quantize_value
 * and qc_f32_to_fp8e4m3 in the tests). After v = clamp(x / s, +-448), a
 * value of at least 2^-6 (E4M3's smallest normal) is rounded to 3 mantissa
 * bits, ties to even, by integer arithmetic on its FP32 bits; a smaller one
 * is a multiple of the subnormal step 2^-9, rounded with nearbyintf. No NaN
 * reaches here (callers reject non-finite weights), and 448 is the largest
 * value, which stays representable after rounding.
 */
/* Built for AVX2 and for the baseline, chosen at load time (GCC's function
 * multiversioning): the loops below are written branch-free so that both
 * vectorize; their results do not depend on the version. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
#define QC_HOT __attribute__((target_clones("avx2", "default")))
#else
#define QC_HOT
#endif

QC_HOT
static void fp8_block(const float *x, int64_t n, float s, uint8_t *codes, float *deq)
{
#pragma omp simd
	for (int64_t i = 0; i < n; i++) {
		float v = x[i] / s;
		v = v < -QC_FP8_E4M3_MAX ? -QC_FP8_E4M3_MAX : v > QC_FP8_E4M3_MAX ? QC_FP8_E4M3_MAX : v;
		uint32_t b;
		memcpy(&b, &v, 4);
		uint32_t sign = b & 0x80000000u, a = b & 0x7fffffffu;
		/* normal: round the FP32 mantissa to 3 bits, ties to even */
		uint32_t rn = (a + 0x7ffffu + ((a >> 20) & 1u)) & 0xfff00000u;
		uint32_t cn = ((((rn >> 23) - 120u) & 0xfu) << 3) | ((rn >> 20) & 7u);
		uint32_t qb = rn | sign;
		float qn;
		memcpy(&qn, &qb, 4);
		/* subnormal: multiples of 2^-9, |v| * 512 in [0, 8] rounded half to
		 * even by the 1.5 * 2^23 trick (exact: the sum stays below 2^24) */
		float av = v < 0 ? -v : v;
		float m = (av * 512.0f + 12582912.0f) - 12582912.0f;
		float qs = m * (1.0f / 512.0f);
		qs = sign ? -qs : qs;
		int norm = a >= 0x3c800000u; /* |v| >= 2^-6 */
		codes[i] = (uint8_t)((sign >> 24) | (norm ? cn : (uint32_t)m));
		deq[i] = (norm ? qn : qs) * s;
	}
}

static void fp8_row(const float *x, int64_t n, float s, uint8_t *codes, float *deq)
{
	if (deq) {
		fp8_block(x, n, s, codes, deq);
		return;
	}
	float tmp[256];
	for (int64_t i = 0; i < n; i += 256)
		fp8_block(x + i, n - i < 256 ? n - i : 256, s, codes + i, tmp);
}

QC_HOT
float qc_absmax(const float *x, size_t n)
{
	/* for finite floats the order of |x| is the order of their bits with
	 * the sign cleared, so the maximum is an integer maximum */
	uint32_t m = 0;
#pragma omp simd reduction(max : m)
	for (size_t i = 0; i < n; i++) {
		uint32_t b;
		memcpy(&b, &x[i], 4);
		b &= 0x7fffffffu;
		m = b > m ? b : m;
	}
	float f;
	memcpy(&f, &m, 4);
	return f;
}

QC_HOT
void qc_sqerr(const float *w, const float *d, size_t n, double *err, double *norm)
{
	/* float sums over blocks of 512 (vectorized), added up in double */
	double e = 0, q = 0;
	for (size_t i0 = 0; i0 < n; i0 += 512) {
		size_t i1 = i0 + 512 < n ? i0 + 512 : n;
		float es = 0, qs = 0;
#pragma omp simd reduction(+ : es, qs)
		for (size_t i = i0; i < i1; i++) {
			float t = w[i] - d[i];
			es += t * t;
			qs += w[i] * w[i];
		}
		e += es;
		q += qs;
	}
	*err += e;
	*norm += q;
}

int qc_quant_apply(const qc_qargs *a, const float *W, int64_t rows, int64_t cols,
                   const float *scales, const float *zps, void *codes, float *deq)
{
	int rc = qc_qargs_check(a);
	if (rc)
		return rc;
	if (a->is_float && a->arith == QC_DT_F32 && a->strategy != QC_QS_GROUP) {
		for (int64_t r = 0; r < rows; r++) {
			float s = scales[a->strategy == QC_QS_TENSOR ? 0 : r];
			fp8_row(W + r * cols, cols, s, (uint8_t *)codes + r * cols,
			        deq ? deq + r * cols : NULL);
		}
		return 0;
	}
	int64_t ng = qc_qgroups(a, cols);
	int64_t gs = a->strategy == QC_QS_GROUP ? a->group_size : cols;
	for (int64_t r = 0; r < rows; r++) {
		for (int64_t g = 0; g < ng; g++) {
			size_t k = a->strategy == QC_QS_TENSOR ? 0 : (size_t)(r * ng + g);
			float s = scales[k], z = zps ? zps[k] : 0;
			int64_t c0 = g * gs, c1 = c0 + gs < cols ? c0 + gs : cols;
			for (int64_t j = c0; j < c1; j++) {
				float q = qc_quantize_value(a, W[r * cols + j], s, z);
				qc_code_store(a, codes, (size_t)(r * cols + j), q);
				if (deq)
					deq[r * cols + j] = qc_dequantize_value(q, s, z);
			}
		}
	}
	return 0;
}
