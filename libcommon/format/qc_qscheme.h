/*
 * qc_qscheme.h - a quantization scheme and its compressed-tensors
 * `quantization_config` block in config.json, both directions.
 *
 * One scheme covers every Linear of the decoder layers except those matched
 * by `ignore` (exact module names, or "re:<regex>" matched from the start of
 * the module name with PCRE2, like Python's re.match in compressed-tensors
 * and vLLM). Writers emit the
 * compressed-tensors 0.12-era field set with sorted keys (doc/formats.md 1.1,
 * 1.6), which every current reader (vLLM, transformers) accepts:
 *
 *   {"config_groups": {"group_0": {"input_activations": null | ARGS,
 *      "output_activations": null, "targets": ["Linear"], "weights": ARGS}},
 *    "format": "naive-quantized" | "pack-quantized" | "int-quantized" |
 *              "float-quantized",
 *    "global_compression_ratio": null, "ignore": ["lm_head"],
 *    "kv_cache_scheme": null | ARGS, "quant_method": "compressed-tensors",
 *    "quantization_status": "compressed", "sparsity_config": {},
 *    "transform_config": {}, "version": "0.12.2"}
 *   ARGS = {"actorder": null, "block_structure": null, "dynamic": bool,
 *           "group_size": int | null, "num_bits": 4 | 8, "observer": str | null,
 *           "observer_kwargs": {}, "strategy": "tensor" | "channel" | "group" |
 *           "token", "symmetric": bool, "type": "int" | "float"}
 *
 * The parser accepts what llm-compressor writes across versions (extra keys
 * such as scale_dtype/zp_dtype are ignored, "weight"/"static" actorder is
 * accepted when no g_idx is needed) and refuses what the runtime cannot
 * reproduce (several config groups with different schemes, block
 * strategies, output activations) with QC_EUNSUPPORTED naming the reason.
 */
#ifndef QC_QSCHEME_H
#define QC_QSCHEME_H

#include <jansson.h>
#include <stddef.h>

#include "qc_quant.h"

typedef enum {
	QC_ACT_NONE = 0,     /* weight-only (W4A16, W8A16) */
	QC_ACT_DYNAMIC_TOKEN,/* per-token scales computed at run time */
	QC_ACT_STATIC_TENSOR,/* one input_scale per Linear from calibration */
	QC_ACT_DYNAMIC_TENSOR,
} qc_act_mode;

typedef struct qc_qscheme {
	qc_qargs weights;        /* strategy/group/bits/sym; scale_dtype = model dtype */
	qc_act_mode act;         /* input activations */
	int act_is_float;        /* fp8 (1) or int8 (0) activations */
	int act_symmetric;
	int kv_cache_fp8;        /* kv_cache_scheme: fp8 per-tensor static k/v scales */
	char format[32];         /* "naive-quantized", "pack-quantized", ... */
	char observer[32];       /* weights observer recorded ("minmax", "mse") */
	char **ignore;           /* owned strings */
	size_t n_ignore;
} qc_qscheme;

/* Presets by the names users know: "w4a16" (int4 group 128 sym), "w4a16-asym",
 * "w8a16" (int8 channel sym), "w8a8" (int8 channel sym weights, dynamic
 * per-token int8 inputs), "fp8-dynamic" (fp8 channel weights, dynamic
 * per-token fp8 inputs), "fp8-static" (fp8 tensor weights, static tensor fp8
 * inputs). ignore = ["lm_head"], format "naive-quantized", scale dtype BF16.
 * QC_EINVAL for an unknown name. */
int qc_qscheme_preset(qc_qscheme *s, const char *name);
void qc_qscheme_free(qc_qscheme *s);       /* frees ignore; s itself is the caller's */
int qc_qscheme_add_ignore(qc_qscheme *s, const char *pattern);

/* Build the quantization_config object (new reference). */
int qc_qscheme_to_json(const qc_qscheme *s, json_t **out);
/* Parse a quantization_config object; s is initialized (free with qc_qscheme_free). */
int qc_qscheme_from_json(qc_qscheme *s, const json_t *qc);

/* 1 when the module (e.g. "model.layers.0.mlp.down_proj", "lm_head") is
 * excluded by ignore; 0 when it is quantized; negative on a bad regex or
 * one that needs more than 100,000 backtracking steps on the name. */
int qc_qscheme_ignored(const qc_qscheme *s, const char *module);

#endif
