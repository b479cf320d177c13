/*
 * qc_smooth.h - SmoothQuant as a dense method of the run driver (qc_qrun.h):
 * the hooks behind qsmooth. Nothing is quantized: each smoothing moves the
 * range of a Linear group's input activations into its weights by an exact
 * rescaling, so that int8 activations (W8A8) survive outlier channels, and
 * the output is a checkpoint in the model's dtype computing the same
 * function.
 *
 * Groups (Llama): input_layernorm -> q/k/v and post_attention_layernorm ->
 * gate/up, always; with smooth_vo, v_proj -> o_proj (only where every
 * attention head has its own KV head: with GQA one v channel feeds several
 * heads' o inputs and no per-channel scale of o's input can be folded into
 * v); with smooth_ud, up_proj -> down_proj. The reference (smoothquant's
 * smooth_lm) and llm-compressor smooth neither of the last two.
 *
 * For a group with input channels j (in true-sequential order: the inputs
 * come from the already smoothed layers):
 *   a_j  = max over every calibration token of |x_j| (the reference's
 *          statistic; llm-compressor uses max - min, which differs by a
 *          global factor for symmetric channels)
 *   w_j  = max over the group's Linears and rows of |W[:, j]|, at least 1e-5
 *   s_j  = max(a_j^alpha / w_j^(1 - alpha), 1e-5), then (pow2, the
 *          default) rounded to the nearest power of two in the log domain
 *   the previous operation's output channel j is divided by s_j (a norm's
 *   weight; v's or up's row j and bias), the group's column j multiplied.
 * With power-of-two scales the rescaling is exact in every dtype (barring
 * overflow): the smoothed BF16 checkpoint holds the base model's weights
 * times powers of two and computes the base function to the last bit of
 * FP32, where the reference's arbitrary scales round every smoothed weight
 * a second time (a KL of about 2e-4 on qsynth models). A factor of at most
 * sqrt(2) per channel is all the migration gives up. Without pow2 the
 * smoothed tensors are rounded to the model's dtype, and the walk goes on
 * with exactly those rounded values.
 *
 * alpha: a fixed value in [0, 1] (0.5 the reference's default), or a search
 * per group over alpha = 0, 0.05, ..., 1 that minimizes the W8A8 output
 * error of the group on a sample of the calibration tokens:
 *   err(s) = ||Q8tok(X / s) Q8ch(W s)^T - X W^T||^2 / ||X W^T||^2
 * with weights int8 per output channel (minmax, as qgptq --scheme w8a8
 * rounds) and activations int8 per token (as vLLM computes them). The same
 * error with s = 1 (no smoothing) is reported as err_rtn, with the chosen s
 * as err_out.
 */
#ifndef QC_SMOOTH_H
#define QC_SMOOTH_H

#include "qc_qrun.h"

typedef struct qc_smooth_opts {
	double alpha;            /* [0, 1], or negative: search */
	int smooth_vo;           /* v_proj -> o_proj (refused with GQA) */
	int smooth_ud;           /* up_proj -> down_proj */
	int64_t sample_tokens;   /* tokens kept for the errors and the search (0: 512) */
	int no_pow2;             /* 1: scales as computed, not powers of two */
} qc_smooth_opts;

typedef struct qc_smooth qc_smooth;

/* The method's state and hooks for o (copied): *m is ready for
 * qc_qrun_run. Free the state after the run. */
int qc_smooth_method(qc_smooth **state, qc_qmethod *m, const qc_smooth_opts *o);
void qc_smooth_free(qc_smooth *s);                /* NULL is a no-op */

/* s[n] from the statistics, as above, powers of two when pow2 (a plain
 * function, for the tests' independent check and for the method). */
void qc_smooth_scales(const float *act_max, const float *w_max, int64_t n, double alpha,
                      int pow2, float *s);

#endif
