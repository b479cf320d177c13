/*
 * qc_quant.h - quantization primitives shared by every method: ranges, scales
 * and zero points, codes, and round-to-nearest with optional MSE clipping.
 *
 * The numeric rules are compressed-tensors' (quantization/utils/helpers.py
 * calculate_qparams, calculate_range; lifecycle/forward.py _quantize,
 * _dequantize), so that our codes equal llm-compressor's for the same
 * weights and scales:
 *
 *   range    int b bits: [-2^(b-1), 2^(b-1)-1]; fp8 E4M3: [-448, 448]
 *   min/max  first widened to include 0
 *   sym      scale = max(|min|, |max|) / ((qmax - qmin) / 2)
 *              = amax/7.5 (int4), amax/127.5 (int8), amax/448 (fp8); zp = 0
 *   asym     scale = (max - min) / (qmax - qmin)
 *            zp = round_half_even(clamp(qmin - min / scale, qmin, qmax))
 *   scale    clamped to >= FLT_EPSILON, stored in the weight's dtype (BF16 for
 *            a BF16 model) and used in that rounded form
 *   quantize q = round(clamp(x / scale + zp, qmin, qmax)), round = half to even
 *            for int, cast to E4M3 (nearest even) for fp8
 *   dequant  (q - zp) * scale
 *
 * PyTorch computes each elementwise operation of a BF16 tensor in float and
 * rounds the result to BF16. qc_qargs.arith says which dtype the arithmetic
 * of quantize runs in: F32 (exact; what GPTQ does, since it works on an FP32
 * copy of the weight) or BF16/F16 to reproduce torch on a half-precision
 * weight (what llm-compressor's round-to-nearest path does). The scale and
 * zero-point computation always follows scale_dtype step by step.
 *
 * Codes are stored one per byte: int8_t for int4/int8 (the signed values
 * above), uint8_t E4M3 bit patterns for fp8 (naive-quantized layout,
 * doc/design.md 3.3, doc/formats.md 1.2).
 */
#ifndef QC_QUANT_H
#define QC_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "qc_dtype.h"

typedef enum {
	QC_QS_TENSOR = 0,   /* one scale for the whole matrix, shape [1]           */
	QC_QS_CHANNEL,      /* one per output row, shape [out, 1]                  */
	QC_QS_GROUP,        /* one per row and group of group_size input columns,
	                       shape [out, ceil(in / group_size)], last group may
	                       be partial                                          */
} qc_qstrategy;

typedef struct qc_qargs {
	int is_float;            /* 1: FP8 E4M3 (bits must be 8); 0: integer */
	int bits;                /* 4 or 8 */
	int symmetric;
	qc_qstrategy strategy;
	int64_t group_size;      /* QC_QS_GROUP only */
	qc_dtype scale_dtype;    /* BF16, F16 or F32 */
	qc_dtype arith;          /* F32, BF16 or F16 (see above) */
} qc_qargs;

/* Validate args (bits, strategy, dtypes); QC_EINVAL with a message. */
int qc_qargs_check(const qc_qargs *a);

/* Representable range [qmin, qmax] as floats. */
void qc_qrange(const qc_qargs *a, float *qmin, float *qmax);

/* Number of groups along the input dimension for cols input columns
 * (1 for tensor and channel strategies). */
int64_t qc_qgroups(const qc_qargs *a, int64_t cols);

/* Scale and zero point from the observed min and max of a group. The scale
 * is already rounded to scale_dtype; zp is an integer value (0 when
 * symmetric or fp8). */
void qc_qparams(const qc_qargs *a, float xmin, float xmax, float *scale, float *zp);

/* Code of one value: for int, the integer in [qmin, qmax] as a float; for
 * fp8, the E4M3 value as a float (decode of the stored byte). */
float qc_quantize_value(const qc_qargs *a, float x, float scale, float zp);
/* (q - zp) * scale, in float. */
static inline float qc_dequantize_value(float q, float scale, float zp)
{
	return (q - zp) * scale;
}
/* Quantize then dequantize. */
float qc_qdq(const qc_qargs *a, float x, float scale, float zp);

/* Clipping search for a group's parameters. */
typedef enum {
	QC_CLIP_MINMAX = 0,  /* min/max of the group as is                          */
	QC_CLIP_MSE,         /* llm-compressor's mse observer: try shrink factors
	                        p = 1 - i/grid (i < maxshrink*grid), keep the one
	                        with the least sum |qdq(x) - x|^norm, stop after
	                        `patience` steps without improvement               */
} qc_clip;

typedef struct qc_clip_opts {
	qc_clip mode;
	int grid;            /* 100 */
	double maxshrink;    /* 0.20 */
	int patience;        /* 5 */
	double norm;         /* 2.4 */
} qc_clip_opts;

void qc_clip_opts_default(qc_clip_opts *c, qc_clip mode);

/* Parameters of one group of n values x[0..n) (stride 1). colw, if not NULL,
 * weights each value's error in the MSE search (e.g. the Hessian diagonal,
 * so that errors on important input channels count more). */
void qc_group_params(const qc_qargs *a, const qc_clip_opts *c, const float *x, int64_t n,
                     const float *colw, float *scale, float *zp);

/*
 * Round-to-nearest quantization of a matrix W [rows, cols] (row-major, FP32).
 * Outputs:
 *   codes   [rows, cols] one byte each (int8 values, or E4M3 bytes for fp8)
 *   scales  [rows, ngroups] for group, [rows] for channel, [1] for tensor
 *   zps     same shape as scales (integer values) or NULL when symmetric
 *   deq     [rows, cols] dequantized values, or NULL
 * colw as in qc_group_params (NULL: unweighted). Returns 0 or QC_EINVAL.
 */
int qc_quant_rtn(const qc_qargs *a, const qc_clip_opts *c, const float *W, int64_t rows,
                 int64_t cols, const float *colw, void *codes, float *scales, float *zps,
                 float *deq);

/* Quantize W [rows, cols] with given parameters (no search): scales/zps in
 * the layout qc_quant_rtn produces (zps NULL when symmetric). Rows are
 * independent, so callers may split a matrix across threads by rows, with
 * scales/zps/codes/deq offset to the first row. For the tensor strategy
 * scales[0] (and zps[0]) apply to every row. */
int qc_quant_apply(const qc_qargs *a, const float *W, int64_t rows, int64_t cols,
                   const float *scales, const float *zps, void *codes, float *deq);

/* Min and max over a whole matrix, widened to include 0. */
void qc_minmax(const float *W, size_t n, float *mn, float *mx);
/* max |x| over n finite values (0 for n = 0). */
float qc_absmax(const float *x, size_t n);
/* err += sum (w - d)^2, norm += sum w^2, in float over blocks of 512
 * values and in double across blocks (a relative error good to about
 * 1e-6, for reports). */
void qc_sqerr(const float *w, const float *d, size_t n, double *err, double *norm);

/* Store one code computed by qc_quantize_value into its byte. */
static inline void qc_code_store(const qc_qargs *a, void *codes, size_t i, float q);
/* Read a stored code back as a float code value. */
float qc_code_load(const qc_qargs *a, const void *codes, size_t i);

#include "qc_num.h"
static inline void qc_code_store(const qc_qargs *a, void *codes, size_t i, float q)
{
	if (a->is_float)
		((uint8_t *)codes)[i] = qc_f32_to_fp8e4m3(q);
	else
		((int8_t *)codes)[i] = (int8_t)q;
}

#endif
