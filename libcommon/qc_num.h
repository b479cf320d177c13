/*
 * qc_num.h - numeric conversions between FP32 and BF16, FP16, FP8 E4M3FN.
 *
 * All narrowing conversions round to nearest, ties to even, like PyTorch's
 * casts, so that our codes equal compressed-tensors' for the same inputs.
 *
 *  - BF16: NaN stays NaN (quiet), overflow rounds to +-Inf as IEEE says.
 *  - FP16: subnormals exact, overflow to +-Inf, NaN stays NaN.
 *  - FP8 E4M3FN (1 sign, 4 exponent bits with bias 7, 3 mantissa bits, no
 *    infinities; 0x7F/0xFF are NaN; max finite 448; min subnormal 2^-9):
 *    SATURATING: finite values beyond +-448 (and +-Inf) give +-448, which is
 *    what every producer gets by clamping before PyTorch's non-saturating
 *    cast. NaN gives 0x7F.
 *
 * The scalar functions are the reference; the row functions may be
 * vectorized and are tested against them over every code.
 */
#ifndef QC_NUM_H
#define QC_NUM_H

#include <stddef.h>
#include <stdint.h>

#include "qc_dtype.h"

float qc_bf16_to_f32(uint16_t h);
uint16_t qc_f32_to_bf16(float f);
float qc_f16_to_f32(uint16_t h);
uint16_t qc_f32_to_f16(float f);
float qc_fp8e4m3_to_f32(uint8_t b);
uint8_t qc_f32_to_fp8e4m3(float f);

#define QC_FP8_E4M3_MAX 448.0f

/* Convert n elements of a float dtype (F32, F64, F16, BF16, F8_E4M3) to F32
 * and back. Return 0, or QC_EUNSUPPORTED for other dtypes. */
int qc_to_f32(float *dst, const void *src, qc_dtype src_dt, size_t n);
int qc_from_f32(void *dst, qc_dtype dst_dt, const float *src, size_t n);

/* Index of the first NaN or Inf among n elements of a float dtype, or -1 if
 * all are finite (-1 also for non-float dtypes, which cannot hold them). */
int64_t qc_first_nonfinite(const void *src, qc_dtype dt, size_t n);

/* Round float to the nearest representable value of dt (a "fake cast"):
 * qc_round_to(x, QC_DT_BF16) == qc_bf16_to_f32(qc_f32_to_bf16(x)). */
float qc_round_to(float x, qc_dtype dt);

#endif
