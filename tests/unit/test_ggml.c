/* test_ggml.c - ggml block formats (qc_ggml.h) against a second, plain
 * implementation of ggml's reference functions written here from ggml's
 * src/ggml-common.h and src/ggml-quants.c (quantize_row_q4_0_ref, _q4_1_ref,
 * _q8_0_ref, _q4_K_ref, _q5_K_ref, _q6_K_ref, make_qkx2_quants,
 * make_qx_quants, dequantize_row_*), in ggml's own shape: block structs,
 * the same loops, the same float expressions. The library works on bytes
 * with its own loops; the two must agree bit for bit on random rows and on
 * the edge cases (all-zero blocks, one huge value, negative minimums, values
 * below F16's range). */
#include "tutil.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "qc_err.h"
#include "qc_ggml.h"
#include "qc_num.h"

/* ------------------------------------------------------------ ggml, plainly */

typedef uint16_t ggml_half;
#define QK_K 256
#define K_SCALE_SIZE 12
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#define FP32_TO_FP16(x) qc_f32_to_f16(x)
#define FP16_TO_FP32(x) qc_f16_to_f32(x)

typedef struct { ggml_half d; uint8_t qs[16]; } block_q4_0;
typedef struct { ggml_half d; ggml_half m; uint8_t qs[16]; } block_q4_1;
typedef struct { ggml_half d; int8_t qs[32]; } block_q8_0;
typedef struct { ggml_half d; ggml_half dmin; uint8_t scales[K_SCALE_SIZE]; uint8_t qs[QK_K / 2]; } block_q4_K;
typedef struct { ggml_half d; ggml_half dmin; uint8_t scales[K_SCALE_SIZE]; uint8_t qh[QK_K / 8]; uint8_t qs[QK_K / 2]; } block_q5_K;
typedef struct { uint8_t ql[QK_K / 2]; uint8_t qh[QK_K / 4]; int8_t scales[QK_K / 16]; ggml_half d; } block_q6_K;

static void ref_q4_0(const float *x, block_q4_0 *y, int k)
{
	for (int i = 0; i < k / 32; i++) {
		float amax = 0.0f, max = 0.0f;
		for (int j = 0; j < 32; j++) {
			const float v = x[i * 32 + j];
			if (amax < fabsf(v)) {
				amax = fabsf(v);
				max = v;
			}
		}
		const float d = max / -8;
		const float id = d ? 1.0f / d : 0.0f;
		y[i].d = FP32_TO_FP16(d);
		for (int j = 0; j < 16; ++j) {
			const float x0 = x[i * 32 + 0 + j] * id;
			const float x1 = x[i * 32 + 16 + j] * id;
			const uint8_t xi0 = MIN(15, (int8_t)(x0 + 8.5f));
			const uint8_t xi1 = MIN(15, (int8_t)(x1 + 8.5f));
			y[i].qs[j] = xi0;
			y[i].qs[j] |= xi1 << 4;
		}
	}
}

static void ref_q4_1(const float *x, block_q4_1 *y, int k)
{
	for (int i = 0; i < k / 32; i++) {
		float min = FLT_MAX, max = -FLT_MAX;
		for (int j = 0; j < 32; j++) {
			const float v = x[i * 32 + j];
			if (v < min) min = v;
			if (v > max) max = v;
		}
		const float d = (max - min) / ((1 << 4) - 1);
		const float id = d ? 1.0f / d : 0.0f;
		y[i].d = FP32_TO_FP16(d);
		y[i].m = FP32_TO_FP16(min);
		for (int j = 0; j < 16; ++j) {
			const float x0 = (x[i * 32 + 0 + j] - min) * id;
			const float x1 = (x[i * 32 + 16 + j] - min) * id;
			const uint8_t xi0 = MIN(15, (int8_t)(x0 + 0.5f));
			const uint8_t xi1 = MIN(15, (int8_t)(x1 + 0.5f));
			y[i].qs[j] = xi0;
			y[i].qs[j] |= xi1 << 4;
		}
	}
}

static void ref_q8_0(const float *x, block_q8_0 *y, int k)
{
	for (int i = 0; i < k / 32; i++) {
		float amax = 0.0f;
		for (int j = 0; j < 32; j++)
			amax = MAX(amax, fabsf(x[i * 32 + j]));
		const float d = amax / ((1 << 7) - 1);
		const float id = d ? 1.0f / d : 0.0f;
		y[i].d = FP32_TO_FP16(d);
		for (int j = 0; j < 32; ++j)
			y[i].qs[j] = roundf(x[i * 32 + j] * id);
	}
}

static inline int nearest_int(float fval)
{
	float val = fval + 12582912.f;
	int i;
	memcpy(&i, &val, sizeof(int));
	return (i & 0x007fffff) - 0x00400000;
}

static float make_qx_quants(int n, int nmax, const float *x, int8_t *L, int rmse_type, const float *qw)
{
	float max = 0, amax = 0;
	for (int i = 0; i < n; ++i) {
		float ax = fabsf(x[i]);
		if (ax > amax) { amax = ax; max = x[i]; }
	}
	if (amax < 1e-15f) {
		for (int i = 0; i < n; ++i) L[i] = 0;
		return 0.f;
	}
	float iscale = -nmax / max;
	float sumlx = 0, suml2 = 0;
	for (int i = 0; i < n; ++i) {
		int l = nearest_int(iscale * x[i]);
		l = MAX(-nmax, MIN(nmax - 1, l));
		L[i] = l + nmax;
		float w = qw ? qw[i] : rmse_type == 1 ? x[i] * x[i] : 1;
		sumlx += w * x[i] * l;
		suml2 += w * l * l;
	}
	float scale = suml2 ? sumlx / suml2 : 0.0f;
	float best = scale * sumlx;
	for (int is = -9; is <= 9; ++is) {
		if (is == 0) continue;
		iscale = -(nmax + 0.1f * is) / max;
		sumlx = suml2 = 0;
		for (int i = 0; i < n; ++i) {
			int l = nearest_int(iscale * x[i]);
			l = MAX(-nmax, MIN(nmax - 1, l));
			float w = qw ? qw[i] : rmse_type == 1 ? x[i] * x[i] : 1;
			sumlx += w * x[i] * l;
			suml2 += w * l * l;
		}
		if (suml2 > 0 && sumlx * sumlx > best * suml2) {
			for (int i = 0; i < n; ++i) {
				int l = nearest_int(iscale * x[i]);
				L[i] = nmax + MAX(-nmax, MIN(nmax - 1, l));
			}
			scale = sumlx / suml2;
			best = scale * sumlx;
		}
	}
	return scale;
}

static float make_qkx2_quants(int n, int nmax, const float *x, const float *weights, uint8_t *L,
                              float *the_min, uint8_t *Laux, float rmin, float rdelta, int nstep)
{
	float min = x[0], max = x[0];
	float sum_w = weights[0];
	float sum_x = sum_w * x[0];
	for (int i = 1; i < n; ++i) {
		if (x[i] < min) min = x[i];
		if (x[i] > max) max = x[i];
		float w = weights[i];
		sum_w += w;
		sum_x += w * x[i];
	}
	if (min > 0) min = 0;
	if (max == min) {
		for (int i = 0; i < n; ++i) L[i] = 0;
		*the_min = -min;
		return 0.f;
	}
	float iscale = nmax / (max - min);
	float scale = 1 / iscale;
	float best_mad = 0;
	for (int i = 0; i < n; ++i) {
		int l = nearest_int(iscale * (x[i] - min));
		L[i] = MAX(0, MIN(nmax, l));
		float diff = scale * L[i] + min - x[i];
		diff = diff * diff;
		best_mad += weights[i] * diff;
	}
	for (int is = 0; is <= nstep; ++is) {
		iscale = (rmin + rdelta * is + nmax) / (max - min);
		float sum_l = 0, sum_l2 = 0, sum_xl = 0;
		for (int i = 0; i < n; ++i) {
			int l = nearest_int(iscale * (x[i] - min));
			l = MAX(0, MIN(nmax, l));
			Laux[i] = l;
			float w = weights[i];
			sum_l += w * l;
			sum_l2 += w * l * l;
			sum_xl += w * l * x[i];
		}
		float D = sum_w * sum_l2 - sum_l * sum_l;
		if (D > 0) {
			float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
			float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
			if (this_min > 0) {
				this_min = 0;
				this_scale = sum_xl / sum_l2;
			}
			float mad = 0;
			for (int i = 0; i < n; ++i) {
				float diff = this_scale * Laux[i] + this_min - x[i];
				diff = diff * diff;
				mad += weights[i] * diff;
			}
			if (mad < best_mad) {
				for (int i = 0; i < n; ++i) L[i] = Laux[i];
				best_mad = mad;
				scale = this_scale;
				min = this_min;
			}
		}
	}
	*the_min = -min;
	return scale;
}

static void get_scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m)
{
	if (j < 4) {
		*d = q[j] & 63; *m = q[j + 4] & 63;
	} else {
		*d = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
		*m = (q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4);
	}
}

/* Q4_K (nmax 15, search -1 + 0.1 * 0..20) and Q5_K (nmax 31, -0.5 + 0.1 *
 * 0..15) share everything up to the code packing */
static void ref_kx(const float *x, ggml_half *pd, ggml_half *pdmin, uint8_t *scales_out,
                   uint8_t *L, int nmax, float rmin, int nstep)
{
	uint8_t Laux[32];
	float weights[32], mins[QK_K / 32], scales[QK_K / 32];
	float max_scale = 0, max_min = 0;
	for (int j = 0; j < QK_K / 32; ++j) {
		float sum_x2 = 0;
		for (int l = 0; l < 32; ++l) sum_x2 += x[32 * j + l] * x[32 * j + l];
		float av_x = sqrtf(sum_x2 / 32);
		for (int l = 0; l < 32; ++l) weights[l] = av_x + fabsf(x[32 * j + l]);
		scales[j] = make_qkx2_quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux,
		                             rmin, 0.1f, nstep);
		if (scales[j] > max_scale) max_scale = scales[j];
		if (mins[j] > max_min) max_min = mins[j];
	}
	float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
	float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
	memset(scales_out, 0, K_SCALE_SIZE);
	for (int j = 0; j < QK_K / 32; ++j) {
		uint8_t ls = nearest_int(inv_scale * scales[j]);
		uint8_t lm = nearest_int(inv_min * mins[j]);
		ls = MIN(63, ls);
		lm = MIN(63, lm);
		if (j < 4) {
			scales_out[j] = ls;
			scales_out[j + 4] = lm;
		} else {
			scales_out[j + 4] = (ls & 0xF) | ((lm & 0xF) << 4);
			scales_out[j - 4] |= ((ls >> 4) << 6);
			scales_out[j - 0] |= ((lm >> 4) << 6);
		}
	}
	*pd = FP32_TO_FP16(max_scale / 63.f);
	*pdmin = FP32_TO_FP16(max_min / 63.f);
	uint8_t sc, m;
	for (int j = 0; j < QK_K / 32; ++j) {
		get_scale_min_k4(j, scales_out, &sc, &m);
		const float d = FP16_TO_FP32(*pd) * sc;
		if (!d) continue;
		const float dm = FP16_TO_FP32(*pdmin) * m;
		for (int ii = 0; ii < 32; ++ii) {
			int l = nearest_int((x[32 * j + ii] + dm) / d);
			l = MAX(0, MIN(nmax, l));
			L[32 * j + ii] = l;
		}
	}
}

static void ref_q4_K(const float *x, block_q4_K *y, int k)
{
	uint8_t L[QK_K];
	for (int i = 0; i < k / QK_K; i++, x += QK_K) {
		ref_kx(x, &y[i].d, &y[i].dmin, y[i].scales, L, 15, -1.f, 20);
		uint8_t *q = y[i].qs;
		for (int j = 0; j < QK_K; j += 64) {
			for (int l = 0; l < 32; ++l) q[l] = L[j + l] | (L[j + l + 32] << 4);
			q += 32;
		}
	}
}

static void ref_q5_K(const float *x, block_q5_K *y, int k)
{
	uint8_t L[QK_K];
	for (int i = 0; i < k / QK_K; i++, x += QK_K) {
		ref_kx(x, &y[i].d, &y[i].dmin, y[i].scales, L, 31, -0.5f, 15);
		uint8_t *qh = y[i].qh, *ql = y[i].qs;
		memset(qh, 0, QK_K / 8);
		uint8_t m1 = 1, m2 = 2;
		for (int n = 0; n < QK_K; n += 64) {
			for (int j = 0; j < 32; ++j) {
				int l1 = L[n + j];
				if (l1 > 15) { l1 -= 16; qh[j] |= m1; }
				int l2 = L[n + j + 32];
				if (l2 > 15) { l2 -= 16; qh[j] |= m2; }
				ql[j] = l1 | (l2 << 4);
			}
			m1 <<= 2; m2 <<= 2;
			ql += 32;
		}
	}
}

static void ref_q6_K(const float *x, block_q6_K *y, int k)
{
	int8_t L[QK_K];
	float scales[QK_K / 16];
	for (int i = 0; i < k / QK_K; i++) {
		float max_scale = 0, max_abs_scale = 0;
		for (int ib = 0; ib < QK_K / 16; ++ib) {
			const float scale = make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib, 1, NULL);
			scales[ib] = scale;
			const float abs_scale = fabsf(scale);
			if (abs_scale > max_abs_scale) {
				max_abs_scale = abs_scale;
				max_scale = scale;
			}
		}
		if (max_abs_scale < 1e-15f) {
			memset(&y[i], 0, sizeof(block_q6_K));
			y[i].d = FP32_TO_FP16(0.f);
			x += QK_K;
			continue;
		}
		float iscale = -128.f / max_scale;
		y[i].d = FP32_TO_FP16(1 / iscale);
		for (int ib = 0; ib < QK_K / 16; ++ib)
			y[i].scales[ib] = MIN(127, nearest_int(iscale * scales[ib]));
		for (int j = 0; j < QK_K / 16; ++j) {
			float d = FP16_TO_FP32(y[i].d) * y[i].scales[j];
			if (!d) continue;
			for (int ii = 0; ii < 16; ++ii) {
				int l = nearest_int(x[16 * j + ii] / d);
				l = MAX(-32, MIN(31, l));
				L[16 * j + ii] = l + 32;
			}
		}
		uint8_t *ql = y[i].ql, *qh = y[i].qh;
		for (int j = 0; j < QK_K; j += 128) {
			for (int l = 0; l < 32; ++l) {
				const uint8_t q1 = L[j + l + 0] & 0xF;
				const uint8_t q2 = L[j + l + 32] & 0xF;
				const uint8_t q3 = L[j + l + 64] & 0xF;
				const uint8_t q4 = L[j + l + 96] & 0xF;
				ql[l + 0] = q1 | (q3 << 4);
				ql[l + 32] = q2 | (q4 << 4);
				qh[l] = (L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) |
				        ((L[j + l + 64] >> 4) << 4) | ((L[j + l + 96] >> 4) << 6);
			}
			ql += 64;
			qh += 32;
		}
		x += QK_K;
	}
}

static void deq_q4_0(const block_q4_0 *x, float *y, int k)
{
	for (int i = 0; i < k / 32; i++) {
		const float d = FP16_TO_FP32(x[i].d);
		for (int j = 0; j < 16; ++j) {
			const int x0 = (x[i].qs[j] & 0x0F) - 8;
			const int x1 = (x[i].qs[j] >> 4) - 8;
			y[i * 32 + j + 0] = x0 * d;
			y[i * 32 + j + 16] = x1 * d;
		}
	}
}

static void deq_q4_1(const block_q4_1 *x, float *y, int k)
{
	for (int i = 0; i < k / 32; i++) {
		const float d = FP16_TO_FP32(x[i].d), m = FP16_TO_FP32(x[i].m);
		for (int j = 0; j < 16; ++j) {
			const int x0 = (x[i].qs[j] & 0x0F);
			const int x1 = (x[i].qs[j] >> 4);
			y[i * 32 + j + 0] = x0 * d + m;
			y[i * 32 + j + 16] = x1 * d + m;
		}
	}
}

static void deq_q8_0(const block_q8_0 *x, float *y, int k)
{
	for (int i = 0; i < k / 32; i++) {
		const float d = FP16_TO_FP32(x[i].d);
		for (int j = 0; j < 32; ++j)
			y[i * 32 + j] = x[i].qs[j] * d;
	}
}

static void deq_q4_K(const block_q4_K *x, float *y, int k)
{
	for (int i = 0; i < k / QK_K; i++) {
		const uint8_t *q = x[i].qs;
		const float d = FP16_TO_FP32(x[i].d), min = FP16_TO_FP32(x[i].dmin);
		int is = 0;
		uint8_t sc, m;
		for (int j = 0; j < QK_K; j += 64) {
			get_scale_min_k4(is + 0, x[i].scales, &sc, &m);
			const float d1 = d * sc, m1 = min * m;
			get_scale_min_k4(is + 1, x[i].scales, &sc, &m);
			const float d2 = d * sc, m2 = min * m;
			for (int l = 0; l < 32; ++l) *y++ = d1 * (q[l] & 0xF) - m1;
			for (int l = 0; l < 32; ++l) *y++ = d2 * (q[l] >> 4) - m2;
			q += 32;
			is += 2;
		}
	}
}

static void deq_q5_K(const block_q5_K *x, float *y, int k)
{
	for (int i = 0; i < k / QK_K; i++) {
		const uint8_t *ql = x[i].qs, *qh = x[i].qh;
		const float d = FP16_TO_FP32(x[i].d), min = FP16_TO_FP32(x[i].dmin);
		int is = 0;
		uint8_t sc, m, u1 = 1, u2 = 2;
		for (int j = 0; j < QK_K; j += 64) {
			get_scale_min_k4(is + 0, x[i].scales, &sc, &m);
			const float d1 = d * sc, m1 = min * m;
			get_scale_min_k4(is + 1, x[i].scales, &sc, &m);
			const float d2 = d * sc, m2 = min * m;
			for (int l = 0; l < 32; ++l) *y++ = d1 * ((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
			for (int l = 0; l < 32; ++l) *y++ = d2 * ((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
			ql += 32;
			is += 2;
			u1 <<= 2;
			u2 <<= 2;
		}
	}
}

static void deq_q6_K(const block_q6_K *x, float *y, int k)
{
	for (int i = 0; i < k / QK_K; i++) {
		const float d = FP16_TO_FP32(x[i].d);
		const uint8_t *ql = x[i].ql, *qh = x[i].qh;
		const int8_t *sc = x[i].scales;
		for (int n = 0; n < QK_K; n += 128) {
			for (int l = 0; l < 32; ++l) {
				int is = l / 16;
				const int8_t q1 = (int8_t)((ql[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
				const int8_t q2 = (int8_t)((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
				const int8_t q3 = (int8_t)((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
				const int8_t q4 = (int8_t)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
				y[l + 0] = d * sc[is + 0] * q1;
				y[l + 32] = d * sc[is + 2] * q2;
				y[l + 64] = d * sc[is + 4] * q3;
				y[l + 96] = d * sc[is + 6] * q4;
			}
			y += 128;
			ql += 64;
			qh += 32;
			sc += 8;
		}
	}
}

/* ------------------------------------------------------------ data */

static uint64_t rs = 0x9E3779B97F4A7C15ull;
static double urand(void)
{
	rs ^= rs << 13;
	rs ^= rs >> 7;
	rs ^= rs << 17;
	return (double)(rs >> 11) / 9007199254740992.0;
}
static float nrand(void)
{
	double u = urand() + 1e-12, v = urand();
	return (float)(sqrt(-2 * log(u)) * cos(6.283185307179586 * v));
}

#define NROW 8192   /* 32 super-blocks */

/* Row r of the test set: the first blocks are the edge cases, the rest
 * random with varied scales and offsets. */
static void make_row(int kind, float *x, int n)
{
	float sc = (float)pow(10.0, -4 + 5 * urand());
	for (int i = 0; i < n; i++) {
		switch (kind) {
		case 0: x[i] = 0; break;                                     /* all zero */
		case 1: x[i] = i == 37 ? 3000.f : 0.001f * nrand(); break;    /* one huge value */
		case 2: x[i] = -1.5f - fabsf(nrand()); break;                 /* negative, min < 0 */
		case 3: x[i] = 2.0f + fabsf(nrand()); break;                  /* positive only */
		case 4: x[i] = 1e-9f * nrand(); break;                        /* below F16 */
		case 5: x[i] = 0.25f; break;                                  /* constant */
		case 6: x[i] = (i % 64 < 32) ? 0 : nrand(); break;            /* zero sub-blocks */
		case 7: x[i] = (float)((int)(urand() * 16) - 8) * 0.125f; break; /* on a grid: ties */
		default: x[i] = sc * nrand() + (urand() < 0.3 ? sc * (float)urand() : 0); break;
		}
	}
}

typedef void (*ref_fn)(const float *, void *, int);
typedef void (*deq_fn)(const void *, float *, int);

static void check_type(int type, ref_fn ref, deq_fn deq)
{
	size_t bytes;
	assert_int_equal(qc_ggml_row_bytes(type, NROW, &bytes), 0);
	float *x = malloc(NROW * sizeof *x), *y1 = malloc(NROW * 4), *y2 = malloc(NROW * 4);
	uint8_t *a = malloc(bytes), *b = malloc(bytes);
	assert_non_null(x);
	assert_non_null(b);
	for (int trial = 0; trial < 24; trial++) {
		/* rows made of 256-value pieces of each kind */
		for (int p = 0; p < NROW / 256; p++)
			make_row(trial < 8 && p % 2 == 0 ? trial : (trial + p) % 12, x + 256 * p, 256);
		memset(a, 0xAA, bytes);
		memset(b, 0x55, bytes);
		ref(x, a, NROW);
		assert_int_equal(qc_ggml_quantize_ref(type, x, NROW, b), 0);
		if (memcmp(a, b, bytes) != 0) {
			size_t i = 0;
			while (a[i] == b[i])
				i++;
			fail_msg("%s trial %d: byte %zu differs (block %zu): ggml %02x, ours %02x",
			         qc_ggml_type_name(type), trial, i, i / qc_ggml_block_bytes(type), a[i], b[i]);
		}
		deq(a, y1, NROW);
		assert_int_equal(qc_ggml_dequantize(type, a, NROW, y2), 0);
		assert_memory_equal(y1, y2, NROW * sizeof(float));
	}
	free(x);
	free(y1);
	free(y2);
	free(a);
	free(b);
}

static void test_q4_0(void **s) { (void)s; check_type(QC_GGML_Q4_0, (ref_fn)ref_q4_0, (deq_fn)deq_q4_0); }
static void test_q4_1(void **s) { (void)s; check_type(QC_GGML_Q4_1, (ref_fn)ref_q4_1, (deq_fn)deq_q4_1); }
static void test_q8_0(void **s) { (void)s; check_type(QC_GGML_Q8_0, (ref_fn)ref_q8_0, (deq_fn)deq_q8_0); }
static void test_q4_K(void **s) { (void)s; check_type(QC_GGML_Q4_K, (ref_fn)ref_q4_K, (deq_fn)deq_q4_K); }
static void test_q5_K(void **s) { (void)s; check_type(QC_GGML_Q5_K, (ref_fn)ref_q5_K, (deq_fn)deq_q5_K); }
static void test_q6_K(void **s) { (void)s; check_type(QC_GGML_Q6_K, (ref_fn)ref_q6_K, (deq_fn)deq_q6_K); }

/* The block sizes ggml asserts (static_assert in ggml-common.h). */
static void test_sizes(void **s)
{
	(void)s;
	assert_int_equal(qc_ggml_block_bytes(QC_GGML_Q4_0), sizeof(block_q4_0));
	assert_int_equal(qc_ggml_block_bytes(QC_GGML_Q4_1), sizeof(block_q4_1));
	assert_int_equal(qc_ggml_block_bytes(QC_GGML_Q8_0), sizeof(block_q8_0));
	assert_int_equal(qc_ggml_block_bytes(QC_GGML_Q4_K), sizeof(block_q4_K));
	assert_int_equal(qc_ggml_block_bytes(QC_GGML_Q5_K), sizeof(block_q5_K));
	assert_int_equal(qc_ggml_block_bytes(QC_GGML_Q6_K), sizeof(block_q6_K));
	size_t b;
	tu_assert_rc(qc_ggml_row_bytes(QC_GGML_Q4_K, 300, &b), QC_EINVAL);
	tu_assert_rc(qc_ggml_row_bytes(77, 256, &b), QC_EINVAL);
	assert_int_equal(qc_ggml_row_bytes(QC_GGML_Q6_K, 512, &b), 0);
	assert_int_equal(b, 420);
	qc_ggml_type t;
	assert_int_equal(qc_ggml_type_parse("q4_k", &t), 0);
	assert_int_equal(t, QC_GGML_Q4_K);
}

/* Codes with F16 scales go into Q4_0/Q8_0/Q4_1 exactly: the decoded row is
 * (q - zp) * scale; what cannot be exact is refused. */
static void test_from_codes(void **s)
{
	(void)s;
	enum { N = 256 };
	int8_t q[N];
	float sc[N / 32], zp[N / 32], y[N];
	uint8_t buf[N / 32 * 34];
	for (int t = 0; t < 3; t++) {
		int type = t == 0 ? QC_GGML_Q4_0 : t == 1 ? QC_GGML_Q8_0 : QC_GGML_Q4_1;
		int lo = type == QC_GGML_Q8_0 ? -128 : -8, span = type == QC_GGML_Q8_0 ? 256 : 16;
		for (int i = 0; i < N; i++)
			q[i] = (int8_t)(lo + (int)(urand() * span));
		for (int g = 0; g < N / 32; g++) {
			sc[g] = qc_f16_to_f32(qc_f32_to_f16((float)(1e-3 * (1 + 40 * urand()))));
			zp[g] = (float)((int)(urand() * 16) - 8);
		}
		if (type == QC_GGML_Q4_1) {
			/* keep the minimum exact: scales with few significant bits */
			for (int g = 0; g < N / 32; g++)
				sc[g] = ldexpf((float)(1 + (int)(urand() * 64)), -12);
		}
		const float *z = type == QC_GGML_Q4_1 ? zp : NULL;
		assert_int_equal(qc_ggml_from_codes(type, q, sc, z, N, buf), 0);
		assert_int_equal(qc_ggml_dequantize(type, buf, N, y), 0);
		for (int i = 0; i < N; i++) {
			float want = ((float)q[i] - (z ? z[i / 32] : 0)) * sc[i / 32];
			if (y[i] != want)
				fail_msg("%s element %d: %.9g, want %.9g", qc_ggml_type_name(type), i,
				         (double)y[i], (double)want);
		}
	}
	/* a BF16 scale that F16 cannot hold (beyond 65504), a scale with too
	 * many bits, an int4 code of 8, zero points for Q4_0 */
	for (int g = 0; g < N / 32; g++)
		sc[g] = 0.5f;
	memset(q, 0, sizeof q);
	sc[3] = 1e6f;
	tu_assert_rc(qc_ggml_from_codes(QC_GGML_Q4_0, q, sc, NULL, N, buf), QC_EUNSUPPORTED);
	assert_non_null(strstr(qc_errmsg(), "block 3"));
	sc[3] = 0.1f;
	tu_assert_rc(qc_ggml_from_codes(QC_GGML_Q8_0, q, sc, NULL, N, buf), QC_EUNSUPPORTED);
	sc[3] = 0.5f;
	q[40] = 8;
	tu_assert_rc(qc_ggml_from_codes(QC_GGML_Q4_0, q, sc, NULL, N, buf), QC_EUNSUPPORTED);
	assert_int_equal(qc_ggml_from_codes(QC_GGML_Q8_0, q, sc, NULL, N, buf), 0);
	q[40] = 0;
	tu_assert_rc(qc_ggml_from_codes(QC_GGML_Q4_0, q, sc, zp, N, buf), QC_EUNSUPPORTED);
	tu_assert_rc(qc_ggml_from_codes(QC_GGML_Q4_1, q, sc, NULL, N, buf), QC_EUNSUPPORTED);
	/* Q4_1's minimum -(8 + zp) * s with s = 1 + 2^-10 and 8 + zp = 15 needs
	 * 14 significant bits: not an F16 value */
	for (int g = 0; g < N / 32; g++)
		zp[g] = 0;
	sc[5] = 1.0f + ldexpf(1.0f, -10);
	zp[5] = 7;
	tu_assert_rc(qc_ggml_from_codes(QC_GGML_Q4_1, q, sc, zp, N, buf), QC_EUNSUPPORTED);
	assert_non_null(strstr(qc_errmsg(), "minimum"));
	tu_assert_rc(qc_ggml_from_codes(QC_GGML_Q4_K, q, sc, NULL, N, buf), QC_EUNSUPPORTED);
}

/* The grid interface reproduces the reference: the reference grid and the
 * reference code of every element, packed, give the reference bytes
 * (except in sub-blocks with a zero step, where ggml keeps the codes of its
 * search: those rows are not drawn here). */
static void test_kgrid(void **s)
{
	(void)s;
	const int ts[3] = { QC_GGML_Q4_K, QC_GGML_Q5_K, QC_GGML_Q6_K };
	float x[256];
	uint8_t a[210], b[210];
	int8_t codes[256];
	for (int t = 0; t < 3; t++)
		for (int trial = 0; trial < 50; trial++) {
			make_row(8 + trial % 4, x, 256);
			qc_ggml_kgrid g;
			float step[16], off[16];
			qc_ggml_kgrid_ref(ts[t], x, &g);
			qc_ggml_kgrid_steps(ts[t], &g, step, off);
			int sub = 256 / qc_ggml_k_subblocks(ts[t]);
			for (int i = 0; i < 256; i++)
				codes[i] = (int8_t)qc_ggml_kcode(ts[t], x[i], step[i / sub], off[i / sub]);
			qc_ggml_kpack(ts[t], &g, codes, a);
			assert_int_equal(qc_ggml_quantize_ref(ts[t], x, 256, b), 0);
			assert_memory_equal(a, b, qc_ggml_block_bytes(ts[t]));
			/* and decoding gives step * L - off */
			float y[256];
			assert_int_equal(qc_ggml_dequantize(ts[t], a, 256, y), 0);
			for (int i = 0; i < 256; i++)
				assert_true(y[i] == step[i / sub] * codes[i] - off[i / sub]);
		}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sizes),
		cmocka_unit_test(test_q4_0),
		cmocka_unit_test(test_q4_1),
		cmocka_unit_test(test_q8_0),
		cmocka_unit_test(test_q4_K),
		cmocka_unit_test(test_q5_K),
		cmocka_unit_test(test_q6_K),
		cmocka_unit_test(test_from_codes),
		cmocka_unit_test(test_kgrid),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
