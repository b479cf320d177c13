/*
 * qc_ggml.h - ggml's block formats (the weights of a GGUF file, llama.cpp):
 * encoders and decoders, bit for bit what ggml's reference functions do,
 * and the exact conversion of our integer codes into them.
 *
 * A row of n values (n a multiple of the type's block) is stored as n / B
 * blocks one after the other, little-endian; "f16" is IEEE binary16. The
 * layouts (ggml src/ggml-common.h), value x of element i of a block:
 *
 *   Q4_0 (B 32, 18 bytes): f16 d, qs[16]; element j < 16 in the low nibble
 *        of qs[j], element j + 16 in its high nibble; x = (nib - 8) * d
 *   Q4_1 (B 32, 20 bytes): f16 d, f16 m, qs[16] as Q4_0; x = nib * d + m
 *   Q8_0 (B 32, 34 bytes): f16 d, int8 qs[32]; x = qs * d
 *   Q4_K (B 256, 144 bytes): f16 d, f16 dmin, scales[12], qs[128]; eight
 *        sub-blocks of 32 with 6-bit scale sc[j] and minimum m[j] packed in
 *        scales[] (j < 4: sc in scales[j] bits 0-5, m in scales[j+4] bits
 *        0-5; j >= 4: low 4 bits of sc and m in scales[j+4] low and high
 *        nibble, their top 2 bits in bits 6-7 of scales[j-4] and
 *        scales[j]); 4-bit codes L, element 64c + l (l < 32) in the low
 *        nibble of qs[32c + l], element 64c + 32 + l in its high nibble;
 *        x = (d * sc[j]) * L - (dmin * m[j]), j = element / 32
 *   Q5_K (B 256, 176 bytes): f16 d, f16 dmin, scales[12] as Q4_K, qh[32],
 *        qs[128] as Q4_K for the low 4 bits; the fifth bit of element
 *        64c + l in bit 2c of qh[l], of element 64c + 32 + l in bit 2c + 1;
 *        x as Q4_K with 5-bit L
 *   Q6_K (B 256, 210 bytes): ql[128], qh[64], int8 scales[16], f16 d;
 *        sixteen sub-blocks of 16; 6-bit u = L + 32, element 128h + 32k + l
 *        (k < 4, l < 32): low 4 bits in ql[64h + 32(k & 1) + l] (low nibble
 *        for k < 2, high for k >= 2), top 2 bits in qh[32h + l] bits 2k,
 *        2k + 1; x = (d * scales[j]) * L, L in [-32, 31], j = element / 16
 *
 * Every product and sum above is one float operation, in that order
 * (contraction into fused multiply-adds off, as C11 mode compiles it); the
 * decoders reproduce ggml's dequantize_row_* bit for bit under that rule.
 *
 * qc_ggml_quantize_ref is ggml's quantize_row_*_ref (src/ggml-quants.c)
 * bit for bit: Q4_0 d = max / -8 with max the signed value of largest
 * magnitude, codes truncated from x / d + 8.5; Q4_1 d = (max - min) / 15,
 * m = min; Q8_0 d = amax / 127, codes roundf (half away from zero); Q4_K,
 * Q5_K: per sub-block make_qkx2_quants (weighted search of scale and
 * minimum, weights sqrt(mean x^2) + |x|), the sub-block scales and minimums
 * quantized to 6 bits against their maxima, then codes nearest to
 * (x + dmin * m) / (d * sc); Q6_K: per sub-block make_qx_quants (rmse type
 * 1), the scales to int8 against the largest, codes nearest to
 * x / (d * sc). Rounding of a float to f16 is to nearest even (F16C's,
 * qc_num.h).
 */
#ifndef QC_GGML_H
#define QC_GGML_H

#include <stddef.h>
#include <stdint.h>

/* ggml_type ids as GGUF stores them */
typedef enum {
	QC_GGML_F32 = 0,
	QC_GGML_F16 = 1,
	QC_GGML_Q4_0 = 2,
	QC_GGML_Q4_1 = 3,
	QC_GGML_Q8_0 = 8,
	QC_GGML_Q4_K = 12,
	QC_GGML_Q5_K = 13,
	QC_GGML_Q6_K = 14,
	QC_GGML_BF16 = 30,
} qc_ggml_type;

#define QC_GGML_QK_K 256   /* elements of a K-quant super-block */

/* "Q4_0", ... or NULL for a type this module does not know. */
const char *qc_ggml_type_name(int type);
/* Parse "q4_0", "Q4_K", "f16", ... (case-insensitive); QC_EINVAL unknown. */
int qc_ggml_type_parse(const char *s, qc_ggml_type *t);
/* Elements per block (1 for F32/F16/BF16), bytes per block; 0 unknown. */
int64_t qc_ggml_block_elems(int type);
size_t qc_ggml_block_bytes(int type);
/* Bytes of a row of n elements: QC_EINVAL when the type is unknown or n
 * is not a multiple of its block. */
int qc_ggml_row_bytes(int type, int64_t n, size_t *bytes);

/* ggml's quantize_row_<type>_ref over one row of n finite values (n a
 * multiple of the block; F32, F16 and BF16 are plain conversions, to
 * nearest even). Returns 0 or QC_EINVAL (unknown type, bad n). */
int qc_ggml_quantize_ref(int type, const float *x, int64_t n, void *dst);
/* ggml's dequantize_row_<type> (F32/F16/BF16 widen exactly). */
int qc_ggml_dequantize(int type, const void *src, int64_t n, float *y);

/*
 * Our codes into Q4_0, Q8_0 or Q4_1 with no rounding: one row of n values
 * (n % 32 == 0), codes [n] (int4 in [-8, 7] or int8), scales [n / 32] (one
 * group of 32 per block), zps [n / 32] integer zero points (NULL when
 * symmetric). The row the file decodes to equals (q - zp) * scale element
 * for element:
 *   Q4_0: symmetric int4; d = scale, nibble = q + 8
 *   Q8_0: symmetric int8; d = scale, qs = q
 *   Q4_1: int4 with zero points; d = scale, m = -(8 + zp) * scale,
 *         nibble = q + 8
 * Refused with QC_EUNSUPPORTED, the message naming the block and the value:
 * a scale (or Q4_1's m) that F16 cannot hold exactly, a code outside the
 * type's range, zero points given for Q4_0/Q8_0 or missing for Q4_1.
 */
int qc_ggml_from_codes(int type, const int8_t *codes, const float *scales, const float *zps,
                       int64_t n, void *dst);

/*
 * The K-quant grids (Q4_K, Q5_K, Q6_K), for quantizers that choose codes
 * themselves (GPTQ on the grid): a super-block's stored parameters, the
 * step and offset of each sub-block they give, and packing codes with them.
 *   Q4_K/Q5_K: d, dmin f16 bits; sc[8], m[8] in [0, 63];
 *              step[j] = d * sc[j], off[j] = dmin * m[j] (floats), codes
 *              L in [0, 15] (Q5_K: [0, 31]), x = step * L - off
 *   Q6_K:      d f16 bits; sc[16] int8 (stored in the uint8 array);
 *              step[j] = d * sc[j], off[j] = 0, L in [-32, 31], x = step * L
 */
typedef struct qc_ggml_kgrid {
	uint16_t d, dmin;
	uint8_t sc[16];
	uint8_t m[8];
} qc_ggml_kgrid;

/* Sub-blocks per super-block (8 or 16) and their size (32 or 16); code
 * range [lo, hi]. 0 for other types. */
int qc_ggml_k_subblocks(int type);
void qc_ggml_k_range(int type, int *lo, int *hi);
/* The grid ggml's reference quantizer picks for the 256 values x. */
void qc_ggml_kgrid_ref(int type, const float *x, qc_ggml_kgrid *g);
/* step[j], off[j] for each sub-block j (arrays of 16). */
void qc_ggml_kgrid_steps(int type, const qc_ggml_kgrid *g, float *step, float *off);
/* The code ggml's reference gives x on a sub-block: nearest_int((x + off)
 * / step) (ggml's nearest_int: to nearest, ties to even) clamped to
 * [lo, hi]; 0 when step is 0. */
int qc_ggml_kcode(int type, float x, float step, float off);
/* One super-block from its grid and codes [256] (in [lo, hi]). */
void qc_ggml_kpack(int type, const qc_ggml_kgrid *g, const int8_t *codes, void *dst);

/*
 * Stored K-quant blocks beside a float weight (qgptq --scheme gguf-*,
 * quant/qc_gptqm.h): *bad_row = the first of rows whose blocks (rows
 * of qc_ggml_row_bytes(type, cols) bytes) do not decode exactly (bit for
 * bit) to its row of w [rows, cols], or -1 when every row does. Returns 0,
 * QC_EINVAL (unknown type, cols not whole blocks), QC_ENOMEM.
 */
int qc_ggml_blocks_match(int type, const void *blocks, const float *w, int64_t rows,
                         int64_t cols, int64_t *bad_row);
/* The name suffix of such blocks: "_ggml_q4_k" for Q4_K ("<m>.weight" +
 * suffix), and the type a tensor name ending in one names (0: none). */
const char *qc_ggml_blocks_suffix(int type);
int qc_ggml_blocks_type(const char *tensor_name);

/* The type llama.cpp's Q4_K_M recipe (src/llama-quant.cpp,
 * llama_tensor_get_type, for the llama architecture without experts) gives
 * a GGUF weight: Q6_K for output.weight, and for blk.N.attn_v.weight and
 * blk.N.ffn_down.weight when N is in the first or last eighth of the
 * n_layers layers or (N - n_layers/8) % 3 == 2; Q4_K for every other
 * Linear weight. (llama.cpp's fallbacks for rows that are not whole
 * super-blocks, and its 70B special case, are not reproduced.) */
int qc_ggml_q4km_type(const char *gguf_name, int layer, int n_layers);

#endif
