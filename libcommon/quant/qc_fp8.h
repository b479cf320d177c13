/*
 * qc_fp8.h - FP8 E4M3 quantization (W8A8-FP8) as a method of the run driver
 * (qc_qrun.h): the hooks behind qfp8.
 *
 * Weights: E4M3FN per output channel (default) or per tensor, scale =
 * amax/448 in the scale dtype (the model's), quantized as qc_quant.h says
 * (clamp, then round to nearest even). With shared_scale, q/k/v and gate/up
 * of a layer get one per-tensor scale each (the largest of theirs), so vLLM,
 * which fuses them, need not requantize at load.
 *
 * Without a token set the run is data-free: each Linear is quantized as
 * the driver loads it, and the report has err_w only.
 *
 * With a token set the calibration walker pushes it through the model in
 * true-sequential order, with every Linear replaced by its dequantized FP8
 * weights as soon as its inputs were seen, and measures:
 *   err_out     ||(W - Q) X||^2 / ||W X||^2 over the tokens (err_rtn is the
 *               same number: round-to-nearest is the method);
 *   input_scale (act_static) max |x| over every calibration token at the
 *               Linear's input / 448, in the scale dtype; q/k/v share their
 *               input and so their scale, as do gate/up;
 *   k_scale, v_scale (kv_cache) max |k| after RoPE and max |v| over the
 *               tokens / 448, one each per layer, written as
 *               model.layers.N.self_attn.{k,v}_scale [1] with a
 *               kv_cache_scheme in quantization_config.
 * Activations propagate unquantized (only weights are replaced), as in
 * llm-compressor's calibration.
 */
#ifndef QC_FP8_H
#define QC_FP8_H

#include "qc_qrun.h"

typedef struct qc_fp8_opts {
	int per_tensor;          /* one weight scale per Linear */
	int shared_scale;        /* q/k/v and gate/up share one (implies per_tensor) */
	int act_static;          /* static per-tensor input scales (needs tokens) */
	int kv_cache;            /* FP8 KV-cache scales (needs tokens) */
} qc_fp8_opts;

typedef struct qc_fp8 qc_fp8;

/* The method's state and hooks for options o (copied): *m is ready for
 * qc_qrun_run. Static activation and KV-cache scales without a token set
 * are QC_EINVAL when the run begins. Free the state after the run. */
int qc_fp8_method(qc_fp8 **state, qc_qmethod *m, const qc_fp8_opts *o);
void qc_fp8_free(qc_fp8 *f);                       /* NULL is a no-op */

#endif
