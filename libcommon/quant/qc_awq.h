/*
 * qc_awq.h - AWQ, activation-aware weight quantization (Lin et al. 2023,
 * arXiv:2306.00978), as a method of the run driver (qc_qrun.h): the hooks
 * behind qawq. Weight-only int4 or int8 in groups, written as a
 * compressed-tensors naive-quantized checkpoint (doc/design.md 3.3) in
 * which the smoothing is already folded into the norms and Linears, so a
 * runtime or packer needs nothing else; or, with scales_only, the smoothed
 * but unquantized checkpoint in the model's dtype (a dense run).
 *
 * Smoothing points. For each decoder layer, in the walker's true-sequential
 * order (the inputs of a point come from the layers and points already
 * quantized before it), the four Llama points of the authors' code
 * (llm-awq auto_scale_block, AutoAWQ get_layers_for_scaling):
 *
 *   prev op                   balanced Linears   loss measured on
 *   input_layernorm           q, k, v            the attention block's output (o_proj's,
 *                                                o itself unquantized)
 *   v_proj (its rows)         o                  o_proj's output; only when every
 *                                                attention head has its own KV head
 *   post_attention_layernorm  gate, up           the MLP's output (down unquantized)
 *   up_proj (its rows)        down               down_proj's output
 *
 * v -> o needs one KV head per attention head: with grouped-query attention
 * one channel of v feeds the o inputs of several heads, so no per-channel
 * scale of o's input can be folded into v (the authors skip it when v and o
 * differ in shape; so does llm-compressor). A point is smoothed only when
 * every Linear it involves (its balanced Linears and, for v -> o and
 * up -> down, the previous Linear) is quantized: an ignored Linear stays
 * exactly as it was, and its point only quantizes the others.
 *
 * Statistics, over every calibration token at the point's input x [T, n]:
 *   xm_j = mean_t |x_tj|                        (qk_col_abssum / T)
 *   wm_j = mean over the balanced Linears' rows r of |W_rj| / (max of |W_r.|
 *          over j's group + 1e-6)               (qk_awq_wmean; duo scaling only)
 * The search, for r = i / grid, i = 0 .. grid - 1 (20 values by default):
 *   v_j = xm_j^r / (wm_j^(1 - r) + 1e-4)  (duo scaling, AutoAWQ's default)
 *   v_j = xm_j^r                           (duo scaling off: llm-awq)
 *   v_j = max(v_j, 1e-4);  s_j = v_j / sqrt(max_j v_j * min_j v_j)
 * in double, rounded once to FP32 (with pow2, then to the nearest power of
 * two in the log domain; a non-finite s_j becomes 1). The candidate weights
 * of each balanced Linear are Q(W diag(s)) diag(s)^-1 (qk_awq_qdq, the
 * authors' group quantizer with scales rounded to the stored dtype), the
 * loss the mean over every element of (Y - Y_fp)^2, Y the loss block's
 * output on the sampled sequences with the candidates, Y_fp with the
 * weights as they are; the r with the least loss wins (strict <: ties keep
 * the smaller r). Fold: the previous operation's output channel j is
 * divided by s_j (a norm's weight, rounded to the model's dtype; v's or
 * up's row j and bias), the balanced Linears' column j multiplied. For a
 * norm the columns are multiplied by g_j / g'_j, g' the rounded norm weight,
 * so that g' times the scaled column equals g times the original one: the
 * model before quantization computes the same function, up to FP32.
 *
 * Then each Linear, once no later smoothing point changes it (v waits for
 * v -> o, up for up -> down): the clipping search of the authors' auto_clip
 * (not for q and k, whose outputs meet in q k^T): per output row and group,
 * max |w| shrunk by 1 - i/20, i = 0 .. 9, the shrink with the least
 * squared error of the group's partial products over the clip sample
 * (every (T / clip_tokens)-th calibration token, scaled like the weights),
 * qk_awq_clip; then the codes, round to nearest on the clipped, scaled
 * weights (qk_awq_qdq). With then_gptq the scaled weights are quantized by
 * GPTQ instead (qc_gptq.h, its defaults: MSE clipping, static act-order),
 * from the Hessian of the scaled inputs S^-1 H S^-1 (H = 2 X^T X / T over
 * every token, accumulated as the walker passes), and AWQ's clipping is
 * not run. The walker then goes on with the dequantized weights.
 *
 * The quantizer (kernels.h, qk_awqspec): with zero points (the default,
 * as the authors), scale = (max - min) / (2^b - 1) of the group's own range
 * and an integer zero point in [0, 2^b - 1]; symmetric, scale =
 * max |w| / (2^(b-1) - 1), codes in [-2^(b-1), 2^(b-1) - 1]. Scales are
 * rounded to the model's dtype (BF16) in the search as in the codes, so
 * the search sees what is written. Codes and zero points are stored as
 * compressed-tensors' signed values (code - 2^(b-1)), which AutoAWQ's
 * packed layout turns back into the authors' unsigned ones (qpack -f awq).
 *
 * Samples. The loss is measured on loss_tokens tokens of whole sequences
 * spread over the token set (sequences i = floor(k nseq / m), m about
 * loss_tokens / mean length; every sequence when loss_tokens covers them),
 * kept at each point as the walker passes; the authors use every token,
 * which costs grid forward passes of every block over the whole set.
 *
 * Report (qc_report.h): one line per quantized Linear, with qgptq's keys:
 *   err_out  = ||X (W - Q)^T||^2 / ||X W^T||^2 and err_rtn the same for the
 *              authors' quantizer on the original, unsmoothed, unclipped W,
 *              both in the original coordinates (Q unscaled), X every
 *              (T / clip_tokens)-th calibration token at the Linear's input
 *              (err_tokens rows: the clip sample, spread over the whole
 *              set; three GEMMs per Linear over it instead of the loss
 *              sample's 2048 rows), err_w = ||W - Q||^2 / ||W||^2
 *   method   "awq" or "awq+gptq"; duo_scaling, pow2
 *   smooth   the point whose balanced Linear it is: {prev, balance, ratio,
 *            loss_r0 (the loss at r = 0), loss (at the chosen r), loss_rtn
 *            (without scaling)}, or null when not smoothed
 *   smooth_rows  for v and up when the next point divided their rows: that
 *            point's record
 *   clip     {groups, clipped (groups with a shrink), ratio_min, ratio_mean
 *            (of the chosen max / original max)}, or null (q, k, no_clip,
 *            then_gptq)
 *   damp, dead_inputs  with then_gptq
 * A scales_only run has one line per smoothed point instead, named after
 * the previous operation (model.layers.3.input_layernorm), err_out and
 * err_rtn the loss with the chosen scales and without, relative to the
 * mean square of the block's output, and the point's record.
 *
 * Claims: the norms of smoothed points (written in the model's dtype), the
 * biases of v and up when their rows were divided; with scales_only also
 * every Linear a smoothing changed.
 */
#ifndef QC_AWQ_H
#define QC_AWQ_H

#include <stdint.h>

#include "qc_gptq.h"
#include "qc_qrun.h"

typedef struct qc_awq_opts {
	const char *scheme;        /* "w4a16" (int4) or "w8a16" (int8) */
	int64_t group;             /* 0: the scheme's (128 for w4a16, per channel
	                              for w8a16); -1: per channel; else the size */
	int sym;                   /* 1: symmetric codes; 0: zero points (the default) */
	int grid;                  /* ratios per point (0: 20) */
	int no_duo;                /* 1: v_j = xm_j^r (llm-awq); 0: duo scaling */
	int no_clip;               /* 1: no clipping search */
	int then_gptq;             /* 1: GPTQ on the scaled weights instead of rounding */
	int scales_only;           /* 1: a dense run, the smoothed unquantized model */
	int pow2;                  /* 1: scales rounded to powers of two; 0: not;
	                              -1: 1 with scales_only, else 0 */
	int64_t loss_tokens;       /* tokens of the loss sample (0: 2048; < 0: every token) */
	int64_t clip_tokens;       /* tokens of the clip sample (0: 512) */
	qc_gptq_opts go;           /* the solver's options (then_gptq) */
	qc_dtype scale_dtype;      /* QC_DT_F16: scales rounded to F16 before the
	                              codes are chosen (GGUF's blocks hold them
	                              exactly); QC_DT_INVALID (0): the model's */
} qc_awq_opts;

typedef struct qc_awq qc_awq;

/* The method's state and hooks for o (copied; scheme must outlive the run):
 * *m is ready for qc_qrun_run. QC_EINVAL for bad options. Free the state
 * after the run. */
int qc_awq_method(qc_awq **state, qc_qmethod *m, const qc_awq_opts *o);
void qc_awq_free(qc_awq *a);                      /* NULL is a no-op */

/* s[n] for ratio r from the statistics (xm, and wm with duo), as above. */
void qc_awq_scales(const double *xm, const double *wm, int64_t n, double r, int duo, int pow2,
                   float *s);

#endif
