/*
 * qc_fp8.h - FP8 E4M3 quantization of a checkpoint (W8A8-FP8), the method
 * behind qfp8.
 *
 * Weights: E4M3FN per output channel (default) or per tensor, scale =
 * amax/448 in the scale dtype (the model's), quantized as qc_quant.h says
 * (clamp, then round to nearest even). With shared_scale, q/k/v and gate/up
 * of a layer get one per-tensor scale each (the largest of theirs), so vLLM,
 * which fuses them, need not requantize at load.
 *
 * Without a token set the run is data-free: each Linear is read, quantized
 * and written, one decoder layer at a time, and the report has err_w only.
 *
 * With a token set (calib) the calibration walker (qc_walk.h) pushes it
 * through the model in true-sequential order, with every Linear replaced by
 * its dequantized FP8 weights as soon as its inputs were seen, and measures:
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

#include "kernels.h"
#include "qc_ckpt.h"
#include "qc_qout.h"
#include "qc_report.h"

typedef struct qc_fp8_opts {
	int per_tensor;          /* one weight scale per Linear */
	int shared_scale;        /* q/k/v and gate/up share one (implies per_tensor) */
	int act_static;          /* static per-tensor input scales (needs calib) */
	int kv_cache;            /* FP8 KV-cache scales (needs calib) */
	const char *calib;       /* token set path, or NULL for the data-free run */
	const char *const *ignore;  /* extra ignore patterns ("re:..." or exact) */
	int n_ignore;
	int threads;             /* quantization threads; 0: all CPUs */
	qk_device device;        /* where the calibration forward runs */
	void (*progress)(void *ctx, int done, int total);  /* after each layer */
	void *progress_ctx;
} qc_fp8_opts;

/* Quantize the checkpoint in (read layer by layer) to out, adding one line
 * per quantized Linear to report. An input that is already quantized, has
 * non-finite weights or shapes that disagree with config.json is
 * QC_EFORMAT; bad options QC_EINVAL. On failure nothing is left at out. */
int qc_fp8_quantize(qc_ckpt *in, const qc_fp8_opts *o, const qc_qout_opts *out, qc_report *report);

#endif
