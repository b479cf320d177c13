/*
 * qc_ctq.h - reading compressed-tensors quantized checkpoints: which Linear
 * is quantized how, its stored tensors, their checks, and dequantization to
 * FP32 (doc/formats.md 1).
 *
 * The quantization_config block is parsed by qc_qscheme (one scheme for all
 * targeted Linears, `ignore` with exact names and "re:" regexes); this
 * module adds what a reader needs on top of it:
 *
 * Stored tensors of a quantized Linear <m> (e.g. model.layers.0.mlp.up_proj),
 * formats "naive-quantized", "int-quantized" and "float-quantized":
 *   <m>.weight             I8 [out, in] int4/int8 codes one per byte, or
 *                          F8_E4M3 [out, in] for float weights
 *   <m>.weight_scale       BF16/F16/F32: [out, ceil(in/g)] group,
 *                          [out, 1] (or [out]) channel, [1] (or []) tensor
 *   <m>.weight_zero_point  I8, the scale's shape; only when asymmetric
 *   <m>.input_scale        float [1]; static activations only
 *   <m>.input_zero_point   I8 [1]; static asymmetric int activations only
 * format "pack-quantized" (int4/int8 weight-only):
 *   <m>.weight_packed      I32 [out, ceil(in / (32/b))]: value c of a row in
 *                          word c/(32/b) at bits b*(c%(32/b)), stored as
 *                          q + 2^(b-1) (unsigned)
 *   <m>.weight_shape       I64 (or I32) [2] = [out, in]
 *   <m>.weight_scale       as above
 *   <m>.weight_zero_point  I32 [ceil(out/(32/b)), ng], packed along the
 *                          output dimension, only when asymmetric
 * Activation order "group" (weight_g_idx) is refused by the config parser.
 *
 * Numbers: w = (q - zp) * scale computed in FP32 (compressed-tensors
 * rounds the product to the scale's dtype; vLLM's integer and FP8 GEMMs
 * apply FP32 scales to exact integer sums, which FP32 reproduces).
 *
 * Activations: the scheme's input_activations become a qk_actq per Linear
 * (kernels.h): dynamic per-token int8 (symmetric) or fp8, and static
 * per-tensor int8 (with input_zero_point when asymmetric) or fp8 from
 * input_scale. Dynamic per-tensor and asymmetric dynamic inputs are
 * QC_EUNSUPPORTED.
 *
 * Weight sources: tensors are fetched through a qc_wsrc, so the same code
 * reads a checkpoint (qc_ckpt) or tensors held in memory.
 */
#ifndef QC_CTQ_H
#define QC_CTQ_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels.h"
#include "qc_dtype.h"
#include "qc_qscheme.h"

/* ---------------------------------------------------------------- weight sources */

/*
 * Where named tensors come from. get returns 0 and a view valid until
 * release(name) (or the source's end), QC_ENOTFOUND when there is no such
 * tensor (message set), or another error. release may be NULL; callers pass
 * a name they own, never the view's own name field.
 */
typedef struct qc_wsrc {
	void *ctx;
	int (*get)(void *ctx, const char *name, const qc_tensor **t);
	void (*release)(void *ctx, const char *name);
} qc_wsrc;

/* ---------------------------------------------------------------- the config */

typedef enum {
	QC_CTQ_NAIVE = 0,      /* naive-, int- and float-quantized: one code per byte */
	QC_CTQ_PACKED,         /* pack-quantized: int32 words */
} qc_ctq_format;

typedef struct qc_ctq {
	qc_qscheme scheme;     /* parsed quantization_config (owned) */
	qc_ctq_format format;
} qc_ctq;

/*
 * Read config.json's quantization_config (config is the whole document).
 * *out is NULL and 0 is returned when there is none (a dense checkpoint).
 * QC_EUNSUPPORTED for methods, formats and schemes the reader cannot
 * reproduce, QC_EFORMAT for a malformed block.
 */
int qc_ctq_from_config(qc_ctq **out, const json_t *config);
void qc_ctq_free(qc_ctq *q);                      /* NULL is a no-op */

/* 1 when module (e.g. "model.layers.3.self_attn.o_proj", "lm_head") is
 * stored quantized under q, 0 when dense (q NULL, or ignored), negative on
 * a bad ignore regex. Every Linear of the decoder layers is targeted; the
 * lm_head is too unless ignored (llm-compressor always ignores it). */
int qc_ctq_quantized(const qc_ctq *q, const char *module);

/* The activation quantization of a quantized module's input. static_scale
 * and static_zp are the values of input_scale / input_zero_point (ignored
 * for dynamic schemes). */
int qc_ctq_actq(const qc_ctq *q, float static_scale, int32_t static_zp, qk_actq *out);

/* ---------------------------------------------------------------- one Linear */

typedef struct qc_ctq_linear {
	char module[200];
	int quantized;
	int64_t out, in;
	qc_qargs args;                /* the weights' scheme (quantized only) */
	qc_ctq_format format;
	const qc_tensor *weight;      /* dense weight, codes, or packed words */
	const qc_tensor *scale;       /* quantized only */
	const qc_tensor *zero_point;  /* asymmetric only */
	const qc_tensor *shape;       /* pack-quantized only */
	const qc_tensor *input_scale; /* static activations only */
	const qc_tensor *input_zp;    /* static asymmetric int activations only */
	qk_actq act;                  /* input quantization (NONE when dense) */
	const qc_wsrc *src;
} qc_ctq_linear;

/*
 * Fetch the tensors of Linear `module` with shape [out, in] (from
 * config.json) and validate their presence, dtypes and shapes against the
 * scheme. q may be NULL (dense). QC_ENOTFOUND names a missing tensor,
 * QC_EFORMAT one with the wrong dtype or shape. Release with
 * qc_ctq_linear_release (also after a failure).
 */
int qc_ctq_linear_get(qc_ctq_linear *L, const qc_ctq *q, const qc_wsrc *src, const char *module,
                      int64_t out, int64_t in);
void qc_ctq_linear_release(qc_ctq_linear *L);

/* Rows [r0, r1) of the weight as FP32 into w [r1 - r0, in] (device memory
 * of kc): converted when dense, dequantized when quantized. */
int qc_ctq_linear_rows(qk_ctx *kc, const qc_ctq_linear *L, int64_t r0, int64_t r1, float *w);

/*
 * Check the stored values (qverify's integrity): scales finite and
 * positive, zero points within the code range, int codes within
 * [-2^(b-1), 2^(b-1) - 1] (so int4 codes stored as I8 are in [-8, 7]), fp8
 * codes not NaN, input scales finite and positive.
 * Returns 0 or QC_EINTEGRITY naming the tensor and the first bad index.
 * Dense weights: every value finite.
 */
int qc_ctq_linear_check(const qc_ctq_linear *L);

#endif
