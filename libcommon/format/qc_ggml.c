/* qc_ggml.c - ggml block formats (see qc_ggml.h). The reference
 * quantizers follow ggml src/ggml-quants.c (quantize_row_*_ref,
 * make_qkx2_quants, make_qx_quants) operation for operation: bit-exactness
 * depends on the order of every float operation, so the expressions below
 * keep ggml's order and comments say where it matters. */
#include "qc_ggml.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "qc_err.h"
#include "qc_num.h"

#define GROUP_MAX_EPS 1e-15f   /* ggml-quants.c: a Q6_K sub-block below this is zero */

static const struct {
	int type;
	const char *name;
	int64_t elems;
	size_t bytes;
} types[] = {
	{ QC_GGML_F32, "F32", 1, 4 },     { QC_GGML_F16, "F16", 1, 2 },
	{ QC_GGML_BF16, "BF16", 1, 2 },   { QC_GGML_Q4_0, "Q4_0", 32, 18 },
	{ QC_GGML_Q4_1, "Q4_1", 32, 20 }, { QC_GGML_Q8_0, "Q8_0", 32, 34 },
	{ QC_GGML_Q4_K, "Q4_K", 256, 144 }, { QC_GGML_Q5_K, "Q5_K", 256, 176 },
	{ QC_GGML_Q6_K, "Q6_K", 256, 210 },
};
#define NTYPES (sizeof types / sizeof types[0])

static int find(int type)
{
	for (size_t i = 0; i < NTYPES; i++)
		if (types[i].type == type)
			return (int)i;
	return -1;
}

const char *qc_ggml_type_name(int type)
{
	int i = find(type);
	return i < 0 ? NULL : types[i].name;
}

int qc_ggml_type_parse(const char *s, qc_ggml_type *t)
{
	for (size_t i = 0; i < NTYPES; i++)
		if (strcasecmp(s, types[i].name) == 0) {
			*t = (qc_ggml_type)types[i].type;
			return 0;
		}
	return qc_seterr(QC_EINVAL, "unknown ggml type '%s'", s);
}

int64_t qc_ggml_block_elems(int type)
{
	int i = find(type);
	return i < 0 ? 0 : types[i].elems;
}

size_t qc_ggml_block_bytes(int type)
{
	int i = find(type);
	return i < 0 ? 0 : types[i].bytes;
}

int qc_ggml_row_bytes(int type, int64_t n, size_t *bytes)
{
	int i = find(type);
	if (i < 0)
		return qc_seterr(QC_EINVAL, "unknown ggml type %d", type);
	if (n < 0 || n % types[i].elems)
		return qc_seterr(QC_EINVAL, "a %s row holds a multiple of %lld values, not %lld",
		                 types[i].name, (long long)types[i].elems, (long long)n);
	*bytes = (size_t)(n / types[i].elems) * types[i].bytes;
	return 0;
}

/* ------------------------------------------------------------ helpers */

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static float h2f(const uint8_t *p)
{
	return qc_f16_to_f32(get16(p));
}

/* ggml's nearest_int: adding 1.5 * 2^23 leaves the rounded integer in the
 * low mantissa bits (to nearest, ties to even); valid for |x| < 2^22 */
static int nearest_int(float fval)
{
	float val = fval + 12582912.f;
	int i;
	memcpy(&i, &val, sizeof i);
	return (i & 0x007fffff) - 0x00400000;
}

/* 32 values j and j + 16 share byte j of a Q4_0/Q4_1 block */
static void put_nibbles32(uint8_t *qs, const uint8_t *u)
{
	for (int j = 0; j < 16; j++)
		qs[j] = (uint8_t)(u[j] | u[j + 16] << 4);
}

/* ------------------------------------------------------------ 32-blocks */

static void q4_0_ref(const float *x, uint8_t *b)
{
	float amax = 0, max = 0;
	for (int j = 0; j < 32; j++)
		if (amax < fabsf(x[j])) {
			amax = fabsf(x[j]);
			max = x[j];
		}
	const float d = max / -8;
	const float id = d != 0 ? 1.0f / d : 0.0f;
	put16(b, qc_f32_to_f16(d));
	uint8_t u[32];
	for (int j = 0; j < 32; j++) {
		int v = (int8_t)(x[j] * id + 8.5f);   /* truncation, as ggml */
		u[j] = (uint8_t)(v < 15 ? v : 15);
	}
	put_nibbles32(b + 2, u);
}

static void q4_1_ref(const float *x, uint8_t *b)
{
	float min = FLT_MAX, max = -FLT_MAX;
	for (int j = 0; j < 32; j++) {
		if (x[j] < min)
			min = x[j];
		if (x[j] > max)
			max = x[j];
	}
	const float d = (max - min) / 15;
	const float id = d != 0 ? 1.0f / d : 0.0f;
	put16(b, qc_f32_to_f16(d));
	put16(b + 2, qc_f32_to_f16(min));
	uint8_t u[32];
	for (int j = 0; j < 32; j++) {
		int v = (int8_t)((x[j] - min) * id + 0.5f);
		u[j] = (uint8_t)(v < 15 ? v : 15);
	}
	put_nibbles32(b + 4, u);
}

static void q8_0_ref(const float *x, uint8_t *b)
{
	float amax = 0;
	for (int j = 0; j < 32; j++)
		amax = fabsf(x[j]) > amax ? fabsf(x[j]) : amax;
	const float d = amax / 127;
	const float id = d != 0 ? 1.0f / d : 0.0f;
	put16(b, qc_f32_to_f16(d));
	for (int j = 0; j < 32; j++)
		b[2 + j] = (uint8_t)(int8_t)roundf(x[j] * id);
}

/* ------------------------------------------------------------ K grids */

int qc_ggml_k_subblocks(int type)
{
	return type == QC_GGML_Q4_K || type == QC_GGML_Q5_K ? 8 : type == QC_GGML_Q6_K ? 16 : 0;
}

void qc_ggml_k_range(int type, int *lo, int *hi)
{
	*lo = type == QC_GGML_Q6_K ? -32 : 0;
	*hi = type == QC_GGML_Q4_K ? 15 : type == QC_GGML_Q5_K ? 31 : type == QC_GGML_Q6_K ? 31 : 0;
}

/* make_qkx2_quants: a sub-block's scale and (negated) minimum, searching
 * nstep + 1 candidate scales around nmax / (max - min) for the least
 * weighted squared error, codes L in [0, nmax] */
static float qkx2(int n, int nmax, const float *x, const float *w, uint8_t *L, float *the_min,
                  float rmin, float rdelta, int nstep)
{
	float min = x[0], max = x[0];
	float sum_w = w[0], sum_x = sum_w * x[0];
	for (int i = 1; i < n; i++) {
		if (x[i] < min)
			min = x[i];
		if (x[i] > max)
			max = x[i];
		sum_w += w[i];
		sum_x += w[i] * x[i];
	}
	if (min > 0)
		min = 0;
	if (max == min) {
		memset(L, 0, (size_t)n);
		*the_min = -min;
		return 0.f;
	}
	float iscale = nmax / (max - min);
	float scale = 1 / iscale;
	float best = 0;
	for (int i = 0; i < n; i++) {
		int l = nearest_int(iscale * (x[i] - min));
		L[i] = (uint8_t)(l < 0 ? 0 : l > nmax ? nmax : l);
		float diff = scale * L[i] + min - x[i];
		best += w[i] * (diff * diff);
	}
	uint8_t aux[32];
	for (int is = 0; is <= nstep; is++) {
		iscale = (rmin + rdelta * is + nmax) / (max - min);
		float sl = 0, sl2 = 0, sxl = 0;
		for (int i = 0; i < n; i++) {
			int l = nearest_int(iscale * (x[i] - min));
			l = l < 0 ? 0 : l > nmax ? nmax : l;
			aux[i] = (uint8_t)l;
			sl += w[i] * l;
			sl2 += w[i] * l * l;
			sxl += w[i] * l * x[i];
		}
		float D = sum_w * sl2 - sl * sl;
		if (!(D > 0))
			continue;
		float ts = (sum_w * sxl - sum_x * sl) / D;
		float tm = (sl2 * sum_x - sl * sxl) / D;
		if (tm > 0) {
			tm = 0;
			ts = sxl / sl2;
		}
		float mad = 0;
		for (int i = 0; i < n; i++) {
			float diff = ts * aux[i] + tm - x[i];
			mad += w[i] * (diff * diff);
		}
		if (mad < best) {
			memcpy(L, aux, (size_t)n);
			best = mad;
			scale = ts;
			min = tm;
		}
	}
	*the_min = -min;
	return scale;
}

/* make_qx_quants with rmse_type 1 (weights x^2) and no importance: a
 * symmetric sub-block's scale, trying 19 scales around -nmax / max; codes
 * L = l + nmax in [0, 2 nmax) */
static float qx(int n, int nmax, const float *x, int8_t *L)
{
	float max = 0, amax = 0;
	for (int i = 0; i < n; i++) {
		float ax = fabsf(x[i]);
		if (ax > amax) {
			amax = ax;
			max = x[i];
		}
	}
	if (amax < GROUP_MAX_EPS) {
		memset(L, 0, (size_t)n);
		return 0.f;
	}
	float iscale = -nmax / max;
	float sumlx = 0, suml2 = 0;
	for (int i = 0; i < n; i++) {
		int l = nearest_int(iscale * x[i]);
		l = l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l;
		L[i] = (int8_t)(l + nmax);
		float w = x[i] * x[i];
		sumlx += w * x[i] * l;
		suml2 += w * l * l;
	}
	float scale = suml2 != 0 ? sumlx / suml2 : 0.0f;
	float best = scale * sumlx;
	for (int is = -9; is <= 9; is++) {
		if (is == 0)
			continue;
		iscale = -(nmax + 0.1f * is) / max;
		sumlx = suml2 = 0;
		for (int i = 0; i < n; i++) {
			int l = nearest_int(iscale * x[i]);
			l = l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l;
			float w = x[i] * x[i];
			sumlx += w * x[i] * l;
			suml2 += w * l * l;
		}
		if (suml2 > 0 && sumlx * sumlx > best * suml2) {
			for (int i = 0; i < n; i++) {
				int l = nearest_int(iscale * x[i]);
				l = l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l;
				L[i] = (int8_t)(l + nmax);
			}
			scale = sumlx / suml2;
			best = scale * sumlx;
		}
	}
	return scale;
}

/* The reference grid and codes of a super-block. codes are signed for
 * Q6_K (u - 32) and plain for Q4_K/Q5_K; sub-blocks whose step is 0 keep
 * the codes of the first search, as ggml leaves them. */
static void kquant_ref(int type, const float *x, qc_ggml_kgrid *g, int8_t *codes)
{
	memset(g, 0, sizeof *g);
	if (type == QC_GGML_Q6_K) {
		int8_t L[QC_GGML_QK_K];
		float scales[16], max_scale = 0, max_abs = 0;
		for (int ib = 0; ib < 16; ib++) {
			scales[ib] = qx(16, 32, x + 16 * ib, L + 16 * ib);
			if (fabsf(scales[ib]) > max_abs) {
				max_abs = fabsf(scales[ib]);
				max_scale = scales[ib];
			}
		}
		if (max_abs < GROUP_MAX_EPS) {
			/* ggml zeroes the whole block: u = 0, that is L = -32 */
			memset(codes, -32, QC_GGML_QK_K);
			return;
		}
		float iscale = -128.f / max_scale;
		g->d = qc_f32_to_f16(1 / iscale);
		for (int ib = 0; ib < 16; ib++) {
			int v = nearest_int(iscale * scales[ib]);
			g->sc[ib] = (uint8_t)(int8_t)(v < 127 ? v : 127);
		}
		float step[16], off[16];
		qc_ggml_kgrid_steps(type, g, step, off);
		for (int i = 0; i < QC_GGML_QK_K; i++) {
			float d = step[i / 16];
			codes[i] = d != 0 ? (int8_t)qc_ggml_kcode(type, x[i], d, 0) : (int8_t)(L[i] - 32);
		}
		return;
	}
	int nmax = type == QC_GGML_Q4_K ? 15 : 31;
	uint8_t L[QC_GGML_QK_K];
	float scales[8], mins[8], w[32], max_scale = 0, max_min = 0;
	for (int j = 0; j < 8; j++) {
		const float *xs = x + 32 * j;
		float sum_x2 = 0;
		for (int l = 0; l < 32; l++)
			sum_x2 += xs[l] * xs[l];
		float av_x = sqrtf(sum_x2 / 32);
		for (int l = 0; l < 32; l++)
			w[l] = av_x + fabsf(xs[l]);
		scales[j] = type == QC_GGML_Q4_K
		            ? qkx2(32, nmax, xs, w, L + 32 * j, &mins[j], -1.f, 0.1f, 20)
		            : qkx2(32, nmax, xs, w, L + 32 * j, &mins[j], -0.5f, 0.1f, 15);
		if (scales[j] > max_scale)
			max_scale = scales[j];
		if (mins[j] > max_min)
			max_min = mins[j];
	}
	float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
	float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
	for (int j = 0; j < 8; j++) {
		/* ggml stores nearest_int into a uint8_t before the clamp: a
		 * negative value wraps (and then clamps to 63) */
		uint8_t ls = (uint8_t)nearest_int(inv_scale * scales[j]);
		uint8_t lm = (uint8_t)nearest_int(inv_min * mins[j]);
		g->sc[j] = ls < 63 ? ls : 63;
		g->m[j] = lm < 63 ? lm : 63;
	}
	g->d = qc_f32_to_f16(max_scale / 63.f);
	g->dmin = qc_f32_to_f16(max_min / 63.f);
	float step[16], off[16];
	qc_ggml_kgrid_steps(type, g, step, off);
	for (int i = 0; i < QC_GGML_QK_K; i++) {
		int j = i / 32;
		codes[i] = step[j] != 0 ? (int8_t)qc_ggml_kcode(type, x[i], step[j], off[j])
		                        : (int8_t)L[i];
	}
}

void qc_ggml_kgrid_ref(int type, const float *x, qc_ggml_kgrid *g)
{
	int8_t codes[QC_GGML_QK_K];
	kquant_ref(type, x, g, codes);
}

void qc_ggml_kgrid_steps(int type, const qc_ggml_kgrid *g, float *step, float *off)
{
	float d = qc_f16_to_f32(g->d);
	if (type == QC_GGML_Q6_K) {
		for (int j = 0; j < 16; j++) {
			step[j] = d * (float)(int8_t)g->sc[j];
			off[j] = 0;
		}
		return;
	}
	float dmin = qc_f16_to_f32(g->dmin);
	for (int j = 0; j < 8; j++) {
		step[j] = d * g->sc[j];
		off[j] = dmin * g->m[j];
	}
}

int qc_ggml_kcode(int type, float x, float step, float off)
{
	int lo, hi;
	qc_ggml_k_range(type, &lo, &hi);
	if (step == 0)
		return 0;
	float v = (x + off) / step;
	/* clamp before rounding: nearest_int holds only |v| < 2^22, and the
	 * result is clamped to [lo, hi] anyway (NaN goes to lo) */
	if (!(v > lo - 1))
		return lo;
	if (v > hi + 1)
		return hi;
	int l = nearest_int(v);
	return l < lo ? lo : l > hi ? hi : l;
}

/* 6-bit sub-block scales and minimums into Q4_K/Q5_K's 12 bytes */
static void pack_scales(const qc_ggml_kgrid *g, uint8_t *s)
{
	memset(s, 0, 12);
	for (int j = 0; j < 8; j++) {
		uint8_t ls = g->sc[j] & 63, lm = g->m[j] & 63;
		if (j < 4) {
			s[j] |= ls;
			s[j + 4] |= lm;
		} else {
			s[j + 4] = (uint8_t)((ls & 0xF) | (lm & 0xF) << 4);
			s[j - 4] |= (uint8_t)((ls >> 4) << 6);
			s[j] |= (uint8_t)((lm >> 4) << 6);
		}
	}
}

static void unpack_scale(int j, const uint8_t *s, uint8_t *sc, uint8_t *m)
{
	if (j < 4) {
		*sc = s[j] & 63;
		*m = s[j + 4] & 63;
	} else {
		*sc = (uint8_t)((s[j + 4] & 0xF) | (s[j - 4] >> 6) << 4);
		*m = (uint8_t)((s[j + 4] >> 4) | (s[j] >> 6) << 4);
	}
}

void qc_ggml_kpack(int type, const qc_ggml_kgrid *g, const int8_t *codes, void *dst)
{
	uint8_t *b = dst;
	if (type == QC_GGML_Q6_K) {
		uint8_t *ql = b, *qh = b + 128;
		memset(b, 0, 210);
		for (int h = 0; h < 2; h++)
			for (int k = 0; k < 4; k++)
				for (int l = 0; l < 32; l++) {
					int u = codes[128 * h + 32 * k + l] + 32;
					ql[64 * h + 32 * (k & 1) + l] |= (uint8_t)((u & 0xF) << (k < 2 ? 0 : 4));
					qh[32 * h + l] |= (uint8_t)((u >> 4) << (2 * k));
				}
		memcpy(b + 192, g->sc, 16);
		put16(b + 208, g->d);
		return;
	}
	put16(b, g->d);
	put16(b + 2, g->dmin);
	pack_scales(g, b + 4);
	uint8_t *qh = type == QC_GGML_Q5_K ? b + 16 : NULL;
	uint8_t *qs = b + (qh ? 48 : 16);
	if (qh)
		memset(qh, 0, 32);
	for (int c = 0; c < 4; c++)
		for (int l = 0; l < 32; l++) {
			int lo = codes[64 * c + l], hi = codes[64 * c + 32 + l];
			qs[32 * c + l] = (uint8_t)((lo & 0xF) | (hi & 0xF) << 4);
			if (qh)
				qh[l] |= (uint8_t)(((lo >> 4) & 1) << (2 * c) | ((hi >> 4) & 1) << (2 * c + 1));
		}
}

static void kdequant(int type, const uint8_t *b, float *y)
{
	if (type == QC_GGML_Q6_K) {
		const uint8_t *ql = b, *qh = b + 128;
		const int8_t *sc = (const int8_t *)(b + 192);
		float d = h2f(b + 208);
		for (int h = 0; h < 2; h++)
			for (int k = 0; k < 4; k++)
				for (int l = 0; l < 32; l++) {
					int e = 128 * h + 32 * k + l;
					int u = (ql[64 * h + 32 * (k & 1) + l] >> (k < 2 ? 0 : 4) & 0xF) |
					        ((qh[32 * h + l] >> (2 * k)) & 3) << 4;
					y[e] = d * sc[e / 16] * (u - 32);
				}
		return;
	}
	float d = h2f(b), dmin = h2f(b + 2);
	const uint8_t *qh = type == QC_GGML_Q5_K ? b + 16 : NULL;
	const uint8_t *qs = b + (qh ? 48 : 16);
	for (int j = 0; j < 8; j++) {
		uint8_t sc, m;
		unpack_scale(j, b + 4, &sc, &m);
		const float d1 = d * sc, m1 = dmin * m;
		int c = j / 2, hi = j & 1;
		for (int l = 0; l < 32; l++) {
			int u = (qs[32 * c + l] >> (hi ? 4 : 0)) & 0xF;
			if (qh && (qh[l] >> (2 * c + hi) & 1))
				u += 16;
			y[32 * j + l] = d1 * u - m1;
		}
	}
}

/* ------------------------------------------------------------ rows */

int qc_ggml_quantize_ref(int type, const float *x, int64_t n, void *dst)
{
	size_t bytes;
	QC_TRY(qc_ggml_row_bytes(type, n, &bytes));
	uint8_t *b = dst;
	int64_t B = qc_ggml_block_elems(type);
	size_t bb = qc_ggml_block_bytes(type);
	switch (type) {
	case QC_GGML_F32: memcpy(dst, x, (size_t)n * 4); return 0;
	case QC_GGML_F16: return qc_from_f32(dst, QC_DT_F16, x, (size_t)n);
	case QC_GGML_BF16: return qc_from_f32(dst, QC_DT_BF16, x, (size_t)n);
	default: break;
	}
	for (int64_t i = 0; i < n / B; i++, b += bb, x += B) {
		switch (type) {
		case QC_GGML_Q4_0: q4_0_ref(x, b); break;
		case QC_GGML_Q4_1: q4_1_ref(x, b); break;
		case QC_GGML_Q8_0: q8_0_ref(x, b); break;
		default: {
			qc_ggml_kgrid g;
			int8_t codes[QC_GGML_QK_K];
			kquant_ref(type, x, &g, codes);
			qc_ggml_kpack(type, &g, codes, b);
		}
		}
	}
	return 0;
}

int qc_ggml_dequantize(int type, const void *src, int64_t n, float *y)
{
	size_t bytes;
	QC_TRY(qc_ggml_row_bytes(type, n, &bytes));
	const uint8_t *b = src;
	switch (type) {
	case QC_GGML_F32: memcpy(y, src, (size_t)n * 4); return 0;
	case QC_GGML_F16: return qc_to_f32(y, src, QC_DT_F16, (size_t)n);
	case QC_GGML_BF16: return qc_to_f32(y, src, QC_DT_BF16, (size_t)n);
	default: break;
	}
	int64_t B = qc_ggml_block_elems(type);
	size_t bb = qc_ggml_block_bytes(type);
	for (int64_t i = 0; i < n / B; i++, b += bb, y += B) {
		switch (type) {
		case QC_GGML_Q4_0:
		case QC_GGML_Q4_1: {
			int q41 = type == QC_GGML_Q4_1;
			float d = h2f(b), m = q41 ? h2f(b + 2) : 0;
			const uint8_t *qs = b + (q41 ? 4 : 2);
			for (int j = 0; j < 32; j++) {
				int u = (qs[j % 16] >> (j < 16 ? 0 : 4)) & 0xF;
				y[j] = q41 ? u * d + m : (u - 8) * d;
			}
			break;
		}
		case QC_GGML_Q8_0: {
			float d = h2f(b);
			for (int j = 0; j < 32; j++)
				y[j] = (int8_t)b[2 + j] * d;
			break;
		}
		default: kdequant(type, b, y);
		}
	}
	return 0;
}

/* ------------------------------------------------------------ from codes */

static int f16_exact(float v, uint16_t *h)
{
	*h = qc_f32_to_f16(v);
	return qc_f16_to_f32(*h) == v && isfinite(v);
}

int qc_ggml_from_codes(int type, const int8_t *codes, const float *scales, const float *zps,
                       int64_t n, void *dst)
{
	if (type != QC_GGML_Q4_0 && type != QC_GGML_Q8_0 && type != QC_GGML_Q4_1)
		return qc_seterr(QC_EUNSUPPORTED, "%s cannot hold codes with one scale per 32 values "
		                 "(Q4_0, Q4_1 and Q8_0 can)", qc_ggml_type_name(type) ? qc_ggml_type_name(type) : "?");
	if (n % 32)
		return qc_seterr(QC_EUNSUPPORTED, "a row of %lld values is not whole blocks of 32",
		                 (long long)n);
	const char *name = qc_ggml_type_name(type);
	int q41 = type == QC_GGML_Q4_1;
	if (q41 != (zps != NULL))
		return qc_seterr(QC_EUNSUPPORTED, q41 ? "Q4_1 holds codes with zero points; these "
		                 "are symmetric (Q4_0 holds them)" : "%s holds symmetric codes; these "
		                 "have zero points (Q4_1 holds int4 ones)", name);
	int lo = type == QC_GGML_Q8_0 ? -128 : -8, hi = type == QC_GGML_Q8_0 ? 127 : 7;
	uint8_t *b = dst;
	size_t bb = qc_ggml_block_bytes(type);
	for (int64_t i = 0; i < n / 32; i++, b += bb) {
		uint16_t d, m = 0;
		if (!f16_exact(scales[i], &d))
			return qc_seterr(QC_EUNSUPPORTED, "block %lld: scale %.9g is not an F16 value "
			                 "(quantize with F16 scales: --scale-dtype f16)",
			                 (long long)i, (double)scales[i]);
		if (q41) {
			float zp = zps[i];
			if (!(zp >= -8 && zp <= 7) || zp != floorf(zp))
				return qc_seterr(QC_EUNSUPPORTED, "block %lld: zero point %g is not an int4 "
				                 "value", (long long)i, (double)zp);
			/* (q - zp) s = (q + 8) s + m; (8 + zp) s is exact in float
			 * (a 4-bit integer times an 11-bit significand) */
			float mv = -((8 + zp) * scales[i]);
			if (!f16_exact(mv, &m))
				return qc_seterr(QC_EUNSUPPORTED, "block %lld: minimum -(8 + %g) * %.9g = "
				                 "%.9g is not an F16 value, so Q4_1 cannot hold it exactly",
				                 (long long)i, (double)zp, (double)scales[i], (double)mv);
		}
		const int8_t *q = codes + 32 * i;
		uint8_t u[32];
		for (int j = 0; j < 32; j++) {
			if (q[j] < lo || q[j] > hi)
				return qc_seterr(QC_EUNSUPPORTED, "block %lld: code %d is outside %s's "
				                 "[%d, %d]", (long long)i, q[j], name, lo, hi);
			u[j] = (uint8_t)(q[j] - lo);
		}
		put16(b, d);
		if (type == QC_GGML_Q8_0) {
			memcpy(b + 2, q, 32);
		} else {
			if (q41)
				put16(b + 2, m);
			put_nibbles32(b + (q41 ? 4 : 2), u);
		}
	}
	return 0;
}

int qc_ggml_q4km_type(const char *gguf_name, int layer, int n_layers)
{
	int more = layer < n_layers / 8 || layer >= 7 * n_layers / 8 ||
	           (layer - n_layers / 8) % 3 == 2;
	if (strcmp(gguf_name, "output.weight") == 0)
		return QC_GGML_Q6_K;
	if ((strstr(gguf_name, "attn_v.weight") || strstr(gguf_name, "ffn_down")) && more)
		return QC_GGML_Q6_K;
	return QC_GGML_Q4_K;
}

int qc_ggml_blocks_match(int type, const void *blocks, const float *w, int64_t rows,
                         int64_t cols, int64_t *bad_row)
{
	size_t rb;
	*bad_row = -1;
	QC_TRY(qc_ggml_row_bytes(type, cols, &rb));
	float *y = malloc((size_t)cols * sizeof *y);
	if (!y)
		return qc_seterr(QC_ENOMEM, "out of memory");
	for (int64_t r = 0; r < rows && *bad_row < 0; r++) {
		qc_ggml_dequantize(type, (const uint8_t *)blocks + (size_t)r * rb, cols, y);
		/* bit for bit: -0.0 and 0.0 differ, as a file's bytes would */
		if (memcmp(y, w + r * cols, (size_t)cols * sizeof *y) != 0)
			*bad_row = r;
	}
	free(y);
	return 0;
}

const char *qc_ggml_blocks_suffix(int type)
{
	switch (type) {
	case QC_GGML_Q4_K: return "_ggml_q4_k";
	case QC_GGML_Q5_K: return "_ggml_q5_k";
	case QC_GGML_Q6_K: return "_ggml_q6_k";
	default: return NULL;
	}
}

int qc_ggml_blocks_type(const char *tensor_name)
{
	static const int kt[] = { QC_GGML_Q4_K, QC_GGML_Q5_K, QC_GGML_Q6_K };
	size_t n = strlen(tensor_name);
	for (size_t i = 0; i < sizeof kt / sizeof kt[0]; i++) {
		const char *sfx = qc_ggml_blocks_suffix(kt[i]);
		size_t k = strlen(sfx);
		if (n > k && strcmp(tensor_name + n - k, sfx) == 0)
			return kt[i];
	}
	return 0;
}
