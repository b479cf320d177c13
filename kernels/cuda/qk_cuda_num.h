/*
 * qk_cuda_num.h - device versions of qc_num's conversions and of the
 * quantization arithmetic of kernels/cpu (not part of the API).
 *
 * Each function is the CPU's, operation for operation: the conversions work
 * on the bits exactly as libcommon/base/qc_num.c does (so the results are
 * the same bits, NaN payloads included), and the float arithmetic uses the
 * _rn intrinsics so that nvcc never fuses a product into a sum (the CPU
 * code is compiled without contraction: -std=c11 turns it off).
 */
#ifndef QK_CUDA_NUM_H
#define QK_CUDA_NUM_H

#include "qk_cuda.h"

#define QK_FP8_MAX 448.0f
#define QK_FLT_EPSILON 1.19209290e-07f

QK_DEV uint32_t qk_f2u(float f) { return __float_as_uint(f); }
QK_DEV float qk_u2f(uint32_t u) { return __uint_as_float(u); }

/* m / 2^shift rounded to nearest, ties to even; shift in 1..31 */
QK_DEV uint32_t qk_rne_shift(uint32_t m, unsigned shift)
{
	uint32_t q = m >> shift;
	uint32_t rem = m & ((1u << shift) - 1);
	uint32_t half = 1u << (shift - 1);
	return q + (rem > half || (rem == half && (q & 1)));
}

/* round(|x| * 2^k) for a magnitude below the target's smallest normal */
QK_DEV uint32_t qk_subnormal_code(uint32_t a, unsigned k)
{
	uint32_t e = a >> 23;
	uint32_t m = (a & 0x7FFFFF) | (e ? 0x800000 : 0);
	unsigned shift = 150 - k - (e ? e : 1);
	return shift >= 25 ? 0 : qk_rne_shift(m, shift);
}

QK_DEV float qk_bf16_to_f32(uint16_t h) { return qk_u2f((uint32_t)h << 16); }

QK_DEV uint16_t qk_f32_to_bf16(float f)
{
	uint32_t u = qk_f2u(f);
	if ((u & 0x7FFFFFFF) > 0x7F800000)
		return (uint16_t)((u >> 16) | 0x0040);
	u += 0x7FFF + ((u >> 16) & 1);
	return (uint16_t)(u >> 16);
}

QK_DEV float qk_f16_to_f32(uint16_t h)
{
	uint32_t s = (uint32_t)(h & 0x8000) << 16;
	uint32_t e = (h >> 10) & 0x1F, m = h & 0x3FF;
	if (e == 0x1F)
		return qk_u2f(s | 0x7F800000 | (m << 13));
	if (e == 0) {
		float v = __fmul_rn((float)m, 5.9604644775390625e-08f); /* 2^-24, exact */
		return s ? -v : v;
	}
	return qk_u2f(s | ((e + 112) << 23) | (m << 13));
}

QK_DEV uint16_t qk_f32_to_f16(float f)
{
	uint32_t u = qk_f2u(f);
	uint16_t s = (uint16_t)((u >> 16) & 0x8000);
	uint32_t a = u & 0x7FFFFFFF;
	if (a > 0x7F800000)
		return (uint16_t)(s | 0x7E00 | ((a >> 13) & 0x3FF));
	if (a >= 0x38800000) {
		uint32_t r = (a + 0xFFF + ((a >> 13) & 1)) >> 13;
		r -= 112 << 10;
		return (uint16_t)(s | (r >= 0x7C00 ? 0x7C00 : r));
	}
	return (uint16_t)(s | qk_subnormal_code(a, 24));
}

QK_DEV float qk_fp8_to_f32(uint8_t b)
{
	uint32_t s = (uint32_t)(b & 0x80) << 24;
	uint32_t e = (b >> 3) & 15, m = b & 7;
	if ((b & 0x7F) == 0x7F)
		return qk_u2f(s | 0x7FC00000);
	if (e == 0) {
		float v = __fmul_rn((float)m, 0.001953125f); /* 2^-9, exact */
		return s ? -v : v;
	}
	return qk_u2f(s | ((e + 120) << 23) | (m << 20));
}

QK_DEV uint8_t qk_f32_to_fp8(float f)
{
	uint32_t u = qk_f2u(f);
	uint8_t s = (uint8_t)((u >> 24) & 0x80);
	uint32_t a = u & 0x7FFFFFFF;
	if (a > 0x7F800000)
		return 0x7F;
	if (a >= 0x43E00000)
		return (uint8_t)(s | 0x7E);
	if (a >= 0x3C800000) {
		uint32_t r = (a + 0x7FFFF + ((a >> 20) & 1)) >> 20;
		return (uint8_t)(s | (r - (120 << 3)));
	}
	return (uint8_t)(s | qk_subnormal_code(a, 9));
}

/* qc_round_to: the nearest value of dt (F32 and others: x itself) */
QK_DEV float qk_round_to(float x, int dt)
{
	switch (dt) {
	case QC_DT_BF16: return qk_bf16_to_f32(qk_f32_to_bf16(x));
	case QC_DT_F16: return qk_f16_to_f32(qk_f32_to_f16(x));
	case QC_DT_F8_E4M3: return qk_fp8_to_f32(qk_f32_to_fp8(x));
	default: return x;
	}
}

/* kernels/cpu/qk_ops.c fp8_qdq: clamp to +-448, then through E4M3 */
QK_DEV float qk_fp8_qdq1(float v)
{
	if (v > QK_FP8_MAX)
		v = QK_FP8_MAX;
	else if (v < -QK_FP8_MAX)
		v = -QK_FP8_MAX;
	return qk_fp8_to_f32(qk_f32_to_fp8(v));
}

/* ---------------------------------------------------------------- quantization (qk_gptq.c) */

/* The quantization arguments a kernel needs, by value (qk_qspec's). */
typedef struct qk_cuq {
	int is_float, bits, symmetric, tensor;
	int64_t group;
	int scale_dtype, arith;
	int mse, grid, patience;
	double maxshrink, norm;
	float qmin, qmax;
} qk_cuq;

static inline qk_cuq qk_cuq_of(const qk_qspec *q)
{
	qk_cuq c;
	c.is_float = q->is_float;
	c.bits = q->bits;
	c.symmetric = q->symmetric;
	c.tensor = q->tensor;
	c.group = q->group;
	c.scale_dtype = (int)q->scale_dtype;
	c.arith = (int)q->arith;
	c.mse = q->mse;
	c.grid = q->grid;
	c.patience = q->patience;
	c.maxshrink = q->maxshrink;
	c.norm = q->norm;
	if (q->is_float) {
		c.qmin = -QK_FP8_MAX;
		c.qmax = QK_FP8_MAX;
	} else {
		c.qmin = -(float)(1 << (q->bits - 1));
		c.qmax = (float)((1 << (q->bits - 1)) - 1);
	}
	return c;
}

QK_DEV float qk_rt(int dt, float x) { return dt == QC_DT_F32 ? x : qk_round_to(x, dt); }

/* qparams: scale and zero point from a range (widened to include 0) */
QK_DEV void qk_qparams(const qk_cuq &q, float xmin, float xmax, float *scale, float *zp)
{
	const int sd = q.scale_dtype;
	xmin = xmin < 0 ? xmin : 0;
	xmax = xmax > 0 ? xmax : 0;
	float s, z = 0;
	if (q.symmetric) {
		float amax = fabsf(xmin) > fabsf(xmax) ? fabsf(xmin) : fabsf(xmax);
		s = qk_rt(sd, __fdiv_rn(amax, __fdiv_rn(__fsub_rn(q.qmax, q.qmin), 2.0f)));
		if (s < QK_FLT_EPSILON)
			s = qk_rt(sd, QK_FLT_EPSILON);
	} else {
		float range = qk_rt(sd, __fsub_rn(xmax, xmin));
		s = qk_rt(sd, __fdiv_rn(range, __fsub_rn(q.qmax, q.qmin)));
		if (s < QK_FLT_EPSILON)
			s = qk_rt(sd, QK_FLT_EPSILON);
		z = qk_rt(sd, __fsub_rn(q.qmin, qk_rt(sd, __fdiv_rn(xmin, s))));
		if (z < q.qmin)
			z = q.qmin;
		if (z > q.qmax)
			z = q.qmax;
		z = rintf(z);
	}
	*scale = s;
	*zp = z;
}

/* quantize: the code of x as a float (an integer, or an E4M3 value) */
QK_DEV float qk_quantize(const qk_cuq &q, float x, float scale, float zp)
{
	float v = qk_rt(q.arith, __fdiv_rn(x, scale));
	if (zp != 0)
		v = qk_rt(q.arith, __fadd_rn(v, zp));
	if (v < q.qmin)
		v = q.qmin;
	if (v > q.qmax)
		v = q.qmax;
	if (v != v)
		v = 0;
	if (q.is_float)
		return qk_fp8_to_f32(qk_f32_to_fp8(v));
	return rintf(v);
}

QK_DEV float qk_dequantize(float qv, float s, float z) { return __fmul_rn(__fsub_rn(qv, z), s); }

QK_DEV float qk_qdq(const qk_cuq &q, float x, float s, float z)
{
	return qk_dequantize(qk_quantize(q, x, s, z), s, z);
}

/* a code as stored: int8 value, or the E4M3 byte */
QK_DEV uint8_t qk_code_byte(const qk_cuq &q, float v)
{
	return q.is_float ? qk_f32_to_fp8(v) : (uint8_t)(int8_t)v;
}

#endif
