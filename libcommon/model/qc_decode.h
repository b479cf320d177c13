/*
 * qc_decode.h - incremental decoding over qc_model: a KV cache, prefill,
 * then one token at a time; scoring of continuations (log-probabilities of
 * given next tokens) and generation (greedy or seeded sampling, stopping at
 * a stop token or a length).
 *
 * The decoder loads every decoder layer once (qc_model_load_layer_packed:
 * int4 weight-only Linears stay as 4-bit codes, read by qk_linear_q4 with
 * the dequantization inside the product; every other Linear FP32,
 * dequantized from whatever the artifact stores, with each Linear's input
 * quantization as its scheme says: naive and packed integer codes, FP8,
 * W8A8 with vLLM's per-token or static activation quantization and its
 * q/k/v and gate/up fusion), so it holds the decoder layers (a W4A16 model
 * at about half a byte a weight, others in FP32) plus the cache:
 *     2 * layers * cap * n_kv * head_dim floats (keys, values).
 * The embedding and lm_head stay as stored and are converted a block of
 * rows at a time (qc_model_logits).
 * The layer math is qc_layer_forward_kv: the forward pass's own code with
 * the attention reading the cache (qk_attention_kv), so a token decoded
 * with the cache sees the numbers the whole-sequence pass gives, up to the
 * GEMM's blocking (tests/unit/test_decode.c compares greedy tokens over 64
 * steps for every format).
 *
 * One sequence at a time: qc_decoder_feed appends tokens at positions
 * pos .. pos + n - 1; qc_decoder_rewind forgets tokens after a position, so
 * a shared context is evaluated once and each continuation after it reuses
 * its cache (qc_tasks.h). Not thread-safe: one thread per decoder (and per
 * model).
 */
#ifndef QC_DECODE_H
#define QC_DECODE_H

#include <stdint.h>

#include "qc_model.h"

typedef struct qc_decoder qc_decoder;

/* A decoder over m (borrowed; must outlive it) for sequences of up to cap
 * tokens. Loads every layer now: QC_ENOTFOUND/QC_EFORMAT as
 * qc_model_load_layer, QC_ENOMEM when the weights or the cache do not fit,
 * QC_EINVAL for cap < 1. */
int qc_decoder_new(qc_decoder **out, qc_model *m, int64_t cap);
void qc_decoder_free(qc_decoder *d);                  /* NULL is a no-op */

qc_model *qc_decoder_model(const qc_decoder *d);
/* Linears held packed as int4 codes, and the bytes of the decoder layers'
 * weights (codes, scales, zero points, FP32 weights, norms, biases): what
 * one decoding step reads of them. */
void qc_decoder_weights(const qc_decoder *d, int *packed, int64_t *bytes);
int64_t qc_decoder_pos(const qc_decoder *d);          /* tokens held */
int64_t qc_decoder_cap(const qc_decoder *d);
/* Forget every token at position >= pos (0 <= pos <= qc_decoder_pos; else
 * QC_EINVAL). */
int qc_decoder_rewind(qc_decoder *d, int64_t pos);

/*
 * Append ids[n] (prefill when the cache is empty, one step when n = 1), in
 * chunks of at most 256 tokens. logits (host memory, may be NULL) receives
 * the last token's logits [vocab]. QC_EINVAL when pos + n exceeds cap or an
 * id is outside the vocabulary (QC_EFORMAT naming it); on failure the
 * decoder is rewound to where it was.
 */
int qc_decoder_feed(qc_decoder *d, const int32_t *ids, int64_t n, float *logits);

/*
 * Append ids[n] and score them: lp[i] = log p(next[i] | every token up to
 * and including ids[i]) in double (log-softmax of the FP32 logits, the
 * normalizer summed in double: qk_nll), greedy[i] (may be NULL) = 1 when
 * next[i] is the most probable token (ties: the lowest id). A next id
 * outside the vocabulary is QC_EINVAL. The logits exist 16 rows at a time.
 */
int qc_decoder_score(qc_decoder *d, const int32_t *ids, int64_t n, const int32_t *next,
                     double *lp, int *greedy);

typedef struct qc_gen_opts {
	int64_t max_new;         /* tokens to generate at most (> 0) */
	const int32_t *stop;     /* stop tokens (e.g. the EOS ids), may be NULL */
	int nstop;
	double temperature;      /* 0: greedy (argmax, ties to the lowest id) */
	uint64_t seed;           /* sampling: qc_rng stream of this seed */
} qc_gen_opts;

/*
 * Feed prompt[n] after what the decoder holds, then generate: greedy, or
 * sampled from softmax(logits / temperature) with a qc_rng seeded by
 * o->seed (the same seed gives the same tokens). Stops after max_new tokens,
 * at a stop token (not stored; *stopped = 1), or when the cache is full
 * (*stopped = 2); *stopped = 0 when max_new was reached. out holds at
 * least max_new ids; *nout receives the count. The decoder keeps the
 * prompt and the generated tokens (rewind to reuse it).
 */
int qc_decoder_generate(qc_decoder *d, const int32_t *prompt, int64_t n, const qc_gen_opts *o,
                        int32_t *out, int64_t *nout, int *stopped);

/* The argmax of logits[V] (host), ties to the lowest id: the greedy choice,
 * for callers that recompute (tests). */
int32_t qc_argmax(const float *logits, int64_t V);

#endif
