/*
 * qc_packfmt.h - packed release layouts of quantized Linear weights, both
 * directions, and the view through which the runtime reads packed artifacts
 * (the whole-checkpoint packer behind qpack is pack/qc_pack.h) (doc/design.md 3.3;
 * doc/formats.md 1-3 summarizes the layouts below).
 *
 * The input is always the naive form (qc_qout.h, qc_ctq.h): per Linear
 * <m> of shape [out, in], codes one per byte <m>.weight (int8 values in
 * [-2^(b-1), 2^(b-1) - 1], or E4M3 bytes), <m>.weight_scale [srows, ng] in
 * the model's dtype (srows = out, or 1 for the tensor strategy; ng =
 * ceil(in / group), 1 for channel and tensor), <m>.weight_zero_point I8 of
 * the scale's shape when asymmetric, <m>.input_scale / input_zero_point for
 * static activations. Dequantization is w = (q - zp) * scale everywhere.
 *
 * Output layouts ("u" = the code as an unsigned field, q + 2^(b-1)):
 *
 * compressed-tensors (QC_PACK_CT), the format llm-compressor picks:
 *   weight-only int4/int8: "pack-quantized"
 *     <m>.weight_packed      I32 [out, ceil(in/pf)], pf = 32/b: column c of
 *                            row r in word c/pf at bits b*(c%pf), rows padded
 *                            with u = 0
 *     <m>.weight_scale       as in the input (same dtype and bytes)
 *     <m>.weight_shape       I64 [2] = [out, in]
 *     <m>.weight_zero_point  I32 [ceil(out/pf), ng], asymmetric only: packed
 *                            the same way along the OUTPUT dimension (row r
 *                            of group g in word [r/pf][g] at bits b*(r%pf))
 *   weight and activation, int weights: "int-quantized"; fp8 weights:
 *   "float-quantized"; fp8 weight-only: "naive-quantized". These keep every
 *   tensor of the input as it is (compressed-tensors stores them naively).
 *
 * AutoGPTQ (QC_PACK_GPTQ), int4/int8 group or channel, weight-only:
 *   <m>.qweight  I32 [in/pf, out]: input row k of output n in word
 *                [k/pf][n] at bits b*(k%pf) (packed along the INPUT dim)
 *   <m>.qzeros   I32 [ng, out/pf]: zero point z of (n, g) in word
 *                [g][n/pf] at bits b*(n%pf); z = zp + 2^(b-1) (8 or 128
 *                when symmetric); v1 (checkpoint_format "gptq") stores
 *                z - 1, v2 ("gptq_v2", used for asymmetric schemes, since a
 *                zero point of 0 has no v1 form) stores z
 *   <m>.scales   F16 [ng, out]
 *   <m>.g_idx    I32 [in] = k / group (no act-order permutation)
 *   Channel strategy is group_size -1 (one group of all `in` columns).
 *   AutoGPTQ's kernels assert in % 32 == 0, out % 32 == 0 and
 *   in % group == 0; those are required.
 *
 * AutoAWQ GEMM (QC_PACK_AWQ), int4 group, weight-only:
 *   <m>.qweight  I32 [in, out/8]: u of (n, k) in word [k][n/8], nibble
 *                REV[n%8], REV = {0,4,1,5,2,6,3,7}; equivalently nibble i of
 *                word C holds output 8C + ORDER[i], ORDER = {0,2,4,6,1,3,5,7}
 *   <m>.qzeros   I32 [ng, out/8]: z = zp + 8 (8 when symmetric: AWQ's
 *                kernels always subtract a zero point), same interleave
 *   <m>.scales   F16 [ng, out]
 *   in % group == 0 and out % 8 == 0 are asserted by AutoAWQ; required.
 *
 * F16 scales (GPTQ, AWQ): the naive scales are converted to F16 only when
 * every value is finite, positive and exactly representable (BF16 values
 * from 2^-17 to 65504 always are); anything else is QC_EUNSUPPORTED naming
 * the tensor and index, never a rounded or saturated value.
 *
 * What a format cannot express is refused (QC_EUNSUPPORTED, message naming
 * the module and the reason) before anything is written: fp8 or activation
 * quantization as GPTQ/AWQ, 8-bit or per-channel AWQ, per-tensor int
 * scales as GPTQ/AWQ, shapes that break the alignment rules above, a
 * quantized lm_head or individually ignored decoder Linears as GPTQ,
 * an fp8 KV cache as GPTQ/AWQ, asymmetric per-tensor as pack-quantized.
 *
 * Every packer here has a plain element-by-element reference (_ref) that
 * the tests compare it with; unpacking is written independently of packing.
 * All functions are thread-safe; objects are used by one thread at a time.
 */
#ifndef QC_PACKFMT_H
#define QC_PACKFMT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "qc_ctq.h"
#include "qc_dtype.h"
#include "qc_qscheme.h"

/* ---------------------------------------------------------------- formats */

typedef enum {
	QC_PACK_CT = 0,   /* compressed-tensors: pack-, int-, float-quantized */
	QC_PACK_GPTQ,     /* AutoGPTQ v1, or gptq_v2 for asymmetric schemes */
	QC_PACK_AWQ,      /* AutoAWQ GEMM */
} qc_pack_format;

/* "compressed-tensors", "gptq", "awq" (QC_EINVAL with the list otherwise). */
int qc_pack_format_parse(const char *name, qc_pack_format *f);
const char *qc_pack_format_name(qc_pack_format f);

/*
 * How the quantized Linears of one artifact are stored: the format and the
 * weights' quantization (one scheme for every quantized Linear).
 */
typedef struct qc_pack_spec {
	qc_pack_format format;
	qc_qargs w;            /* bits, symmetric, strategy, group_size, is_float */
	int ct_packed;         /* CT: 1 "pack-quantized", 0 codes one per byte */
	char ct_format[32];    /* CT: the format name written */
	int gptq_v2;           /* GPTQ: zero points stored as-is */
} qc_pack_spec;

/*
 * The spec for writing scheme s as format f, or QC_EUNSUPPORTED naming why
 * f cannot express s (scheme-level reasons; shapes are checked per Linear
 * by qc_pack_check_linear). For CT the format name follows
 * compressed-tensors' rule (format.py _get_quant_compression_format).
 * GPTQ is v1 when symmetric, gptq_v2 when asymmetric.
 */
int qc_pack_spec_for(qc_pack_spec *spec, qc_pack_format f, const qc_qscheme *s);

/* Can Linear `module` [out, in] be stored under spec? 0 or QC_EUNSUPPORTED
 * naming the module and the rule it breaks. */
int qc_pack_check_linear(const qc_pack_spec *spec, const char *module, int64_t out, int64_t in);

/* ---------------------------------------------------------------- config.json */

/*
 * The quantization_config that readers of spec's format expect (new
 * reference in *out):
 *   CT: qc_qscheme_to_json(s) with "format" = spec->ct_format (sorted keys,
 *       quantization_status "compressed", the 0.12 field set).
 *   GPTQ: AutoGPTQ's BaseQuantizeConfig.to_dict keys: bits, checkpoint_format
 *       ("gptq" or "gptq_v2"), damp_percent (0.01, AutoGPTQ's default: the
 *       key is required by AutoGPTQ's loader and describes the solver, not
 *       the tensors), desc_act false, group_size (-1 for channel),
 *       model_file_base_name "model", model_name_or_path null, quant_method
 *       "gptq", static_groups false, sym, true_sequential true.
 *   AWQ: AutoAWQ's to_transformers_dict: bits 4, group_size, modules_to_not_convert
 *       (null, or the ignored decoder Linears by full name: AutoAWQ and vLLM
 *       match them as substrings, which a full module name only matches
 *       itself), quant_method "awq", version "gemm", zero_point true.
 * ignored: the decoder Linears the scheme leaves dense (full names), for AWQ.
 */
int qc_pack_qconfig(const qc_pack_spec *spec, const qc_qscheme *s, const char *const *ignored,
                    size_t n_ignored, json_t **out);

/*
 * Read a packed artifact's config.json (the whole document): its spec and
 * an equivalent compressed-tensors "naive-quantized" quantization_config
 * (new reference in *naive_qc; NULL when not wanted) describing the codes
 * its Linears unpack to, which qc_ctq_from_config reads. For gptq and awq
 * the equivalent ignores "lm_head" and, for AWQ, every
 * modules_to_not_convert entry as "re:.*<entry>" (substring match, as AWQ
 * means it). Returns 1 and fills spec for gptq/awq/compressed-tensors
 * artifacts, 0 when config has no quantization_config, QC_EUNSUPPORTED for
 * variants this module does not read (desc_act true, bits other than 4/8,
 * AWQ versions other than gemm, GPTQ dynamic per-module overrides),
 * QC_EFORMAT for malformed keys.
 */
int qc_pack_detect(const json_t *config, qc_pack_spec *spec, json_t **naive_qc);

/* ---------------------------------------------------------------- bit layouts */

/* Pack codes [rows, cols] (int8 values in [-2^(b-1), 2^(b-1)-1]) into
 * words [rows, ceil(cols/pf)] along the row, compressed-tensors order.
 * QC_EFORMAT when a code is out of range (message: index). */
int qc_pack_ct_rows(const int8_t *codes, int64_t rows, int64_t cols, int bits, uint32_t *words);
int qc_pack_ct_rows_ref(const int8_t *codes, int64_t rows, int64_t cols, int bits, uint32_t *words);
/* Inverse; padding fields are ignored. */
void qc_unpack_ct_rows(const uint32_t *words, int64_t rows, int64_t cols, int bits, int8_t *codes);
/* Zero points zp [rows, ng] packed along dim 0 into [ceil(rows/pf), ng]. */
int qc_pack_ct_cols(const int8_t *zp, int64_t rows, int64_t ng, int bits, uint32_t *words);
void qc_unpack_ct_cols(const uint32_t *words, int64_t rows, int64_t ng, int bits, int8_t *zp);

/* GPTQ qweight [in/pf, out] from codes [out, in] (in % pf == 0). */
int qc_pack_gptq_qweight(const int8_t *codes, int64_t out, int64_t in, int bits, uint32_t *qw);
int qc_pack_gptq_qweight_ref(const int8_t *codes, int64_t out, int64_t in, int bits, uint32_t *qw);
void qc_unpack_gptq_qweight(const uint32_t *qw, int64_t out, int64_t in, int bits, int8_t *codes);
/* GPTQ qzeros [ng, out/pf] from signed zero points zp [out, ng] (NULL:
 * symmetric, z = 2^(b-1)); v2 0: store z - 1 (QC_EUNSUPPORTED when a z is
 * 0, which v1 cannot hold). */
int qc_pack_gptq_qzeros(const int8_t *zp, int64_t out, int64_t ng, int bits, int v2, uint32_t *qz);
/* Inverse into signed zero points zp [out, ng]: QC_EFORMAT when a stored
 * field decodes outside [-2^(b-1), 2^(b-1)-1] (a v1 field of all ones). */
int qc_unpack_gptq_qzeros(const uint32_t *qz, int64_t out, int64_t ng, int bits, int v2, int8_t *zp);

/* AWQ qweight [in, out/8] from int4 codes [out, in] (out % 8 == 0). */
int qc_pack_awq_qweight(const int8_t *codes, int64_t out, int64_t in, uint32_t *qw);
int qc_pack_awq_qweight_ref(const int8_t *codes, int64_t out, int64_t in, uint32_t *qw);
void qc_unpack_awq_qweight(const uint32_t *qw, int64_t out, int64_t in, int8_t *codes);
/* AWQ qzeros [ng, out/8] from signed zp [out, ng] (NULL: symmetric, z = 8). */
int qc_pack_awq_qzeros(const int8_t *zp, int64_t out, int64_t ng, uint32_t *qz);
void qc_unpack_awq_qzeros(const uint32_t *qz, int64_t out, int64_t ng, int8_t *zp);

/* Scales [rows, ng] of dtype dt (BF16, F16, F32) to F16 transposed
 * [ng, rows], exactly or not at all: QC_EUNSUPPORTED naming `what` and the
 * index [row, group] of the first value that is not finite, not positive,
 * or not representable in F16. */
int qc_pack_scales_f16(const void *src, qc_dtype dt, int64_t rows, int64_t ng, uint16_t *dst,
                       const char *what);

/* ---------------------------------------------------------------- one Linear */

#define QC_PACK_MAX_TENSORS 6

/* One stored tensor of a packed Linear: "<module>.<suffix>". */
typedef struct qc_pack_tensor {
	const char *suffix;      /* static string: "qweight", "weight_packed", ... */
	qc_dtype dtype;
	int ndim;
	int64_t shape[2];
	size_t nbytes;
	int copied;              /* stored as the naive tensor of the same suffix
	                            (CT: scales, and codes one per byte) */
	void *data;              /* malloc'd by qc_pack_linear, or NULL ... */
	const void *borrowed;    /* ... when the input's own bytes are stored as
	                            they are (valid as long as the input tensor) */
} qc_pack_tensor;

typedef struct qc_pack_out {
	int n;
	qc_pack_tensor t[QC_PACK_MAX_TENSORS];
} qc_pack_out;

/* Free every data buffer still in o (qc_pack_out_take hands one over). */
void qc_pack_out_free(qc_pack_out *o);

/* The tensors Linear [out, in] is stored as under spec (data NULL): names,
 * dtypes, shapes and byte sizes, in the order qc_pack_linear produces
 * them. input_scale / input_zp say whether the naive Linear has them (CT
 * only; they are stored unchanged). For planning shards before any data
 * is read. */
int qc_pack_layout(const qc_pack_spec *spec, int64_t out, int64_t in, qc_dtype scale_dt,
                   int input_scale, int input_zp, qc_pack_out *o);

/*
 * Pack one naive Linear (L from qc_ctq_linear_get over a naive-quantized
 * checkpoint: weight, scale, zero_point, input_scale, input_zp) under
 * spec. On success o holds the tensors of qc_pack_layout, each with data
 * (owned by o) or borrowed (pointing into L's tensors). threads > 1 splits
 * the weight packing over that many threads (same bits).
 * QC_EUNSUPPORTED / QC_EFORMAT (codes, zero points or scales that the
 * format cannot hold; the message names the tensor and index);
 * o is empty on failure.
 */
int qc_pack_linear(const qc_pack_spec *spec, const qc_ctq_linear *L, int threads, qc_pack_out *o);

/*
 * A Linear read back into the naive form. Owns its buffers.
 *   codes   [out, in] one per byte (int8 values, or E4M3 bytes)
 *   scales  [srows, ng] in scale_dt (the stored dtype, F16 for GPTQ/AWQ)
 *   zps     [srows, ng] int8, NULL when symmetric
 */
typedef struct qc_pack_unpacked {
	int64_t out, in, srows, ng;
	qc_qargs w;
	void *codes;
	void *scales;
	qc_dtype scale_dt;
	int8_t *zps;
} qc_pack_unpacked;

/*
 * Fetch the stored tensors of Linear `module` under spec from src,
 * validate their dtypes and shapes (QC_ENOTFOUND naming a missing tensor,
 * QC_EFORMAT a wrong one or a g_idx other than k / group, and symmetric
 * zero points other than 2^(b-1)), unpack them into u, and release them.
 * out and in <= 0: taken from the stored tensors (gptq: qweight and g_idx;
 * awq: qweight; CT: weight_shape or the codes); otherwise they must match.
 */
int qc_unpack_linear(const qc_pack_spec *spec, const qc_wsrc *src, const char *module,
                     int64_t out, int64_t in, qc_pack_unpacked *u);
void qc_pack_unpacked_free(qc_pack_unpacked *u);   /* idempotent */
/* Rows [r0, r1) dequantized into w [r1 - r0, in]: (q - zp) * scale in FP32. */
int qc_pack_unpacked_rows(const qc_pack_unpacked *u, int64_t r0, int64_t r1, float *w);

/* ---------------------------------------------------------------- runtime view */

/*
 * A GPTQ or AWQ artifact seen as a naive-quantized one, for the runtime
 * (qc_model, qc_verify) which reads compressed-tensors:
 *
 *   qc_pack_view *v;
 *   rc = qc_pack_view_open(&v, config_json, &ckpt_src);   // v NULL: not gptq/awq
 *   qc_ctq_from_config(&q, qc_pack_view_config(v));       // naive-quantized
 *   qc_model_new(&m, &cfg, qc_pack_view_wsrc(v), q, ...);
 *
 * The view's source serves, for each quantized Linear <m> (one that has
 * <m>.qweight in the packed source), <m>.weight I8 [out, in],
 * <m>.weight_scale F16 [out, ng] and, when asymmetric,
 * <m>.weight_zero_point I8 [out, ng], unpacked on first use and freed when
 * all of them are released (the packed tensors are released as soon as
 * they are unpacked), and passes every other name through to the packed
 * source. Errors from
 * unpacking (qc_unpack_linear) come back from get with their message.
 * The packed source must outlive the view. One thread at a time.
 */
typedef struct qc_pack_view qc_pack_view;

/* *out NULL and 0 when config's quantization_config is absent or its
 * quant_method is not "gptq" or "awq" (compressed-tensors is read directly;
 * anything else is qc_ctq_from_config's to refuse). For gptq and awq,
 * qc_pack_detect's errors: QC_EUNSUPPORTED for variants not read (act-order,
 * 3-bit, gemv, ...), QC_EFORMAT for malformed keys. */
int qc_pack_view_open(qc_pack_view **out, const json_t *config, const qc_wsrc *packed);
void qc_pack_view_free(qc_pack_view *v);            /* NULL is a no-op */
/* config.json with quantization_config replaced by the naive equivalent
 * (owned by the view). */
const json_t *qc_pack_view_config(const qc_pack_view *v);
const qc_wsrc *qc_pack_view_wsrc(qc_pack_view *v);
const qc_pack_spec *qc_pack_view_spec(const qc_pack_view *v);
/* The stored tensor suffixes of a quantized Linear under spec, for a
 * verifier's accounting of tensors ("qweight", "qzeros", "scales", "g_idx"
 * for gptq; no "g_idx" for awq; the pack-quantized names for CT). */
int qc_pack_stored_suffixes(const qc_pack_spec *spec, const char *const **suffixes, int *n);

#endif
