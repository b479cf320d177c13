/*
 * qc_qarith.h - the arithmetic of one quantized value, as compressed-tensors
 * computes it: the representable range, the scale and zero point of a group
 * from its minimum and maximum, and the code of a value. The one definition
 * that the format layer (qc_quant.h, over qc_qargs) and the kernels
 * (kernels/cpu, over qk_qspec) both use, so that the codes the solver
 * writes and the codes every reader checks cannot drift apart.
 *
 * Every step rounds as torch does in the dtype involved: an elementwise
 * operation of torch in BF16 or F16 is computed in float and rounded
 * (qc_qa_rt). Static inline: the kernels call these in their inner loops.
 */
#ifndef QC_QARITH_H
#define QC_QARITH_H

#include <float.h>
#include <math.h>

#include "qc_dtype.h"
#include "qc_num.h"

/* One elementwise operation of torch in dtype dt: computed in float, rounded. */
static inline float qc_qa_rt(qc_dtype dt, float x)
{
	return dt == QC_DT_F32 ? x : qc_round_to(x, dt);
}

/* Representable codes [qmin, qmax]: FP8 E4M3's finite range, or the signed
 * integers of `bits` bits. */
static inline void qc_qa_range(int is_float, int bits, float *qmin, float *qmax)
{
	if (is_float) {
		*qmin = -QC_FP8_E4M3_MAX;
		*qmax = QC_FP8_E4M3_MAX;
	} else {
		*qmin = -(float)(1 << (bits - 1));
		*qmax = (float)((1 << (bits - 1)) - 1);
	}
}

/* Scale and zero point (0 when symmetric) of a group whose values span
 * [xmin, xmax], rounded to the scale dtype sd at every step. */
static inline void qc_qa_params(int is_float, int bits, int symmetric, qc_dtype sd, float xmin,
                                float xmax, float *scale, float *zp)
{
	float qmin, qmax;
	qc_qa_range(is_float, bits, &qmin, &qmax);
	/* min/max are values of the observed tensor, already representable in
	 * its dtype; widening to include 0 is exact */
	xmin = xmin < 0 ? xmin : 0;
	xmax = xmax > 0 ? xmax : 0;
	float s, z = 0;
	if (symmetric) {
		float amax = fabsf(xmin) > fabsf(xmax) ? fabsf(xmin) : fabsf(xmax);
		s = qc_qa_rt(sd, amax / ((qmax - qmin) / 2));
		if (s < FLT_EPSILON)
			s = qc_qa_rt(sd, FLT_EPSILON);
	} else {
		float range = qc_qa_rt(sd, xmax - xmin);
		s = qc_qa_rt(sd, range / (qmax - qmin));
		if (s < FLT_EPSILON)
			s = qc_qa_rt(sd, FLT_EPSILON);
		z = qc_qa_rt(sd, qmin - qc_qa_rt(sd, xmin / s));
		if (z < qmin)
			z = qmin;
		if (z > qmax)
			z = qmax;
		z = nearbyintf(z); /* round half to even under the default rounding mode */
	}
	*scale = s;
	*zp = z;
}

/* The code of x (as a float: an integer, or an E4M3 value) for scale and
 * zp, in the arithmetic dtype `arith`. */
static inline float qc_qa_quantize(int is_float, int bits, qc_dtype arith, float x, float scale,
                                   float zp)
{
	float qmin, qmax;
	qc_qa_range(is_float, bits, &qmin, &qmax);
	float v = qc_qa_rt(arith, x / scale);
	if (zp != 0)
		v = qc_qa_rt(arith, v + zp);
	if (v < qmin)
		v = qmin;
	if (v > qmax)
		v = qmax;
	if (v != v) /* NaN input: callers reject non-finite weights first */
		v = 0;
	if (is_float)
		return qc_fp8e4m3_to_f32(qc_f32_to_fp8e4m3(v));
	return nearbyintf(v);
}

#endif
