/*
 * qc_synth.h - synthetic Llama-architecture weights with the statistics of a
 * trained model, for tests, benchmarks and the built-in example (qsynth).
 *
 * What a quantizer sees in a trained LLM, and what we reproduce:
 *
 *  - Heavy-tailed weights: entries are Student-t with 5 degrees of freedom
 *    (excess kurtosis 6), scaled to unit variance, so a row's absolute
 *    maximum sits 5-8 standard deviations out and round-to-nearest wastes
 *    most of its grid on rare large values.
 *  - Uneven rows: each output row has its own scale, log-normal with sigma
 *    0.25, so per-channel and per-group scales differ.
 *  - Outlier input channels: a few hidden channels (0.4% of them, at least 2,
 *    the same channels in every layer, as observed in real models) get
 *    RMSNorm gains 20-100x the median gain (log-uniform in that range). The
 *    inputs of q/k/v (after input_layernorm) and gate/up (after
 *    post_attention_layernorm) therefore carry a few channels 20-100x larger
 *    than the rest, the activation outliers that SmoothQuant and AWQ exist
 *    for. The weight columns that read those channels are shrunk by
 *    1/sqrt(gain), as trained models do, so the model stays numerically sane
 *    while those small weights lose most of their precision under a shared
 *    group scale: RTN visibly loses accuracy, outlier-aware methods help.
 *  - Scales chosen so activations keep unit order through the residual
 *    stream: Linear weights have standard deviation c/sqrt(in_features)
 *    (c = 1.0 for q/k/v/gate/up, 0.35 for o and down), so attention logits
 *    have a standard deviation near 1 and each layer changes the residual
 *    by a fraction of its size; lm_head has standard deviation
 *    2.5/sqrt(hidden), so logits spread with a standard deviation near 2.5
 *    and next-token distributions are neither flat nor one-hot. Untied
 *    embeddings have standard deviation 1 (a unit-scale residual stream);
 *    tied ones, which are also the output matrix, 2.5/sqrt(hidden). Norm
 *    gains other than the outliers are 1 + 0.1 N(0,1).
 *  - Random networks amplify small perturbations more than trained ones
 *    do, tied ones most (their residual stream starts small): PPL ratios
 *    and KL measured on synthetic models are larger than on real models of
 *    the same shape. Use them to compare methods, not as absolute quality.
 *
 * Determinism: every value depends only on (seed, tensor name, row), never
 * on the thread count or the order tensors are made in; with --layers N the
 * first N layers equal those of the full-depth model.
 */
#ifndef QC_SYNTH_H
#define QC_SYNTH_H

#include <stdint.h>

#include "qc_ckpt.h"
#include "qc_config.h"
#include "qc_dtype.h"

typedef struct qc_synth_opts {
	uint64_t seed;
	qc_dtype dtype;          /* BF16 (default), F16 or F32 */
	int outlier_channels;    /* -1: max(2, hidden/256) */
	double outlier_min;      /* gain multiple range, default 20..100 */
	double outlier_max;
	int threads;             /* 0: all online CPUs */
} qc_synth_opts;

void qc_synth_opts_default(qc_synth_opts *o);

/* Fill cfg with the real shape of a preset: "tiny", "llama-3.2-1b",
 * "llama-3.1-8b", "llama-3.1-70b", "llama-3.1-405b", "llama-2-7b", "llama-2-13b",
 * "vicuna-7b", "vicuna-13b" (Vicuna v1.5 has Llama-2's shapes and 32000
 * vocabulary; config.json's pad_token_id is not written), "gemma-2b",
 * "gemma-7b", "gemma-2-2b", "gemma-2-9b", "gemma-2-27b" (the published
 * config.json values, Gemma 2's soft-capping, window and
 * query_pre_attn_scalar included), and "gemma2-tiny" (Gemma 2 at the tiny
 * preset's size, head_dim 64 != hidden / heads, a 16-token window, for
 * tests), "qwen2-0.5b", "qwen2-7b" (q/k/v biases of standard deviation 0.1).
 * cfg->raw is left NULL (qc_config_build makes it). QC_EINVAL for an
 * unknown name.
 *
 * Gemma's (1 + weight) norms store the gains described above less one;
 * Gemma 2's output norms (post_attention_layernorm,
 * post_feedforward_layernorm) have gains of 3 (1 + 0.1 N(0,1)) and no
 * outliers: Gemma's embeddings, times sqrt(hidden), start the residual
 * stream at the logits' scale, and the blocks must move it as much. */
int qc_synth_preset(const char *name, qc_config *cfg);
/* NULL-terminated list of preset names. */
const char *const *qc_synth_preset_names(void);

/* The outlier channel indices for cfg and opts, sorted, into out (which
 * holds at least hidden_size entries); returns the count. */
int qc_synth_outliers(const qc_config *cfg, const qc_synth_opts *o, int64_t *out);

/* Make the values of one tensor of the checkpoint (name and shape as
 * qc_config_each_tensor gives them) in o->dtype into a malloc'd buffer.
 * QC_EINVAL for a name the Llama layout does not have. */
int qc_synth_tensor(const qc_config *cfg, const qc_synth_opts *o, const char *name,
                    int ndim, const int64_t *shape, void **data, size_t *nbytes);

/* Make and write every tensor of a model under cfg to w, one shard per
 * decoder layer (the embeddings in the first, the final norm and lm_head in
 * the last), each shard ended with its completed group, in the writer's
 * layer order. w must have been opened with n_shards = num_hidden_layers;
 * the small files (config.json, tokenizer) are the caller's, added before.
 * progress (may be NULL) is called after each shard with (ctx, done, total). */
int qc_synth_write(const qc_config *cfg, const qc_synth_opts *o, qc_ckpt_writer *w,
                   void (*progress)(void *ctx, int done, int total), void *ctx);

#endif
