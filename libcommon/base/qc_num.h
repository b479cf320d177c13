/*
 * qc_num.h - numeric conversions between FP32 and BF16, FP16, FP8 E4M3FN.
 *
 * All narrowing conversions round to nearest, ties to even, like PyTorch's
 * casts, so that our codes equal compressed-tensors' for the same inputs.
 * They work on the bits (no dependence on the FPU rounding mode or on
 * flush-to-zero), and the sign of zero is kept: -1e-30 gives -0.
 *
 *  - BF16: overflow rounds to +-Inf as IEEE says (anything at or above
 *    0x1.ffp127, the midpoint between the largest BF16 and 2^128).
 *  - FP16: subnormals exact (min 2^-24), overflow to +-Inf (at or above
 *    65520, the midpoint between 65504 and 2^16).
 *  - FP8 E4M3FN (1 sign, 4 exponent bits with bias 7, 3 mantissa bits, no
 *    infinities; 0x7F/0xFF are NaN; max finite 448; min subnormal 2^-9):
 *    SATURATING: finite values beyond +-448 (and +-Inf) give +-448, which is
 *    what every producer gets by clamping before PyTorch's non-saturating
 *    cast. NaN gives 0x7F whatever its sign.
 *  - NaN to BF16/FP16 gives a quiet NaN that keeps the sign and the top
 *    payload bits (what x86 F16C and AVX512-BF16 do), so that a signalling
 *    NaN can never truncate into an Inf. PyTorch returns one canonical NaN
 *    instead; only the bits of NaNs differ, never their NaN-ness.
 *  - Widening (to FP32) is exact; NaN payloads and signs are kept, FP8 NaN
 *    decodes to a quiet NaN of the code's sign.
 *
 * The scalar functions are the reference; the row functions may be
 * vectorized and are tested against them over every code. All functions
 * are thread-safe.
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
 * and back, with the scalar functions' rules (F64 to F32 rounds to nearest
 * even, overflowing to +-Inf). src and dst need no alignment and must not
 * overlap. Return 0, or QC_EUNSUPPORTED (message set) for other dtypes. */
int qc_to_f32(float *dst, const void *src, qc_dtype src_dt, size_t n);
int qc_from_f32(void *dst, qc_dtype dst_dt, const float *src, size_t n);

/* Index of the first NaN or Inf among n elements of a float dtype, or -1 if
 * all are finite (-1 also for non-float dtypes, which cannot hold them). */
int64_t qc_first_nonfinite(const void *src, qc_dtype dt, size_t n);

/* Round float to the nearest representable value of dt (a "fake cast"):
 * qc_round_to(x, QC_DT_BF16) == qc_bf16_to_f32(qc_f32_to_bf16(x)), FP8
 * saturating at +-448. F32 and F64 hold every float, so x comes back; so it
 * does for dtypes that qc_num does not convert. */
float qc_round_to(float x, qc_dtype dt);

#endif
