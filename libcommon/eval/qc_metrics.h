/*
 * qc_metrics.h - what a model does with a token set, alone or against its
 * base model: perplexity, PPL ratio, KL divergence, top-1 agreement, and
 * their spread over sequences.
 *
 * Positions: in a sequence of n valid tokens, positions 0 .. n-2 each
 * predict the next token (n - 1 predictions; sequences shorter than 2
 * tokens predict nothing). Every metric is over exactly these positions.
 *
 *   NLL       -log p(next token), natural log, averaged over positions
 *   PPL       exp(mean NLL)
 *   PPL ratio PPL(quantized) / PPL(base)
 *   KL        KL(base || quantized) = sum_v p_b(v) (log p_b(v) - log p_q(v))
 *             per position, averaged (and its maximum); computed in double
 *             from the FP32 logits, clamped at 0 (rounding can make it
 *             -1e-12 where the distributions agree)
 *   top-1     fraction of positions where both models' most probable tokens
 *             agree (ties: the lowest token id)
 * Per sequence the same quantities are kept (seq[i]); the spread gives min,
 * median, max and standard deviation over the sequences that predict
 * something.
 *
 * Side by side: qc_metrics_compare runs two calibration walkers, one layer
 * of the base, then the same layer of the quantized model, so only one
 * layer's weights are ever loaded; activations of both models for the whole
 * token set are held ([T, hidden] each, FP32 or BF16 as opts say). The
 * lm_head runs on blocks of positions (opts.head_tokens) by blocks of
 * vocabulary rows (opts.head_vocab), each block of lm_head rows converted
 * once per block of positions, the softmax statistics folded a block at a
 * time (qk_softmax_fold): no [T, vocab] array exists. Identical models give
 * KL exactly 0, top-1 exactly 1 and PPL ratio exactly 1.
 */
#ifndef QC_METRICS_H
#define QC_METRICS_H

#include <jansson.h>
#include <stdint.h>

#include "qc_dtype.h"
#include "qc_model.h"

typedef struct qc_metrics_opts {
	int64_t chunk_tokens;   /* walker chunk (0: 2048) */
	qc_dtype act_dtype;     /* walker storage: F32 (default) or BF16 */
	int64_t head_tokens;    /* positions per lm_head block (0: 64 MiB of hidden states) */
	int64_t head_vocab;     /* lm_head rows per block (0: 64 MiB of logits) */
	/* after each layer of each model (may be NULL) */
	void (*progress)(void *ctx, int done, int total);
	void *progress_ctx;
} qc_metrics_opts;

typedef struct qc_seq_metrics {
	int64_t n;              /* predicted positions */
	double nll;             /* mean NLL of the (quantized) model */
	double nll_base;        /* mean NLL of the base (compare only) */
	double kl;              /* mean KL (compare only) */
	double top1;            /* agreement (compare only) */
} qc_seq_metrics;

typedef struct qc_spread {
	double min, median, max, std;
	int64_t n;              /* sequences counted */
} qc_spread;

typedef struct qc_metrics {
	int has_base;
	int64_t n_seqs, n_positions;
	double nll, ppl;                 /* the model (the quantized one when comparing) */
	double nll_base, ppl_base;       /* compare only, likewise below */
	double ppl_ratio;
	double kl_mean, kl_max;
	double top1;
	qc_spread seq_ppl, seq_ppl_ratio, seq_kl, seq_top1;
	qc_seq_metrics *seq;             /* [n_seqs], owned */
} qc_metrics;

/* Perplexity of m over nseq sequences (sequence i: ids[i*stride ..],
 * lens[i] tokens, as in qc_walk_new). opts may be NULL. QC_EINVAL when no
 * sequence has 2 tokens. */
int qc_metrics_eval(qc_model *m, const int32_t *ids, int64_t stride, const int32_t *lens,
                    int64_t nseq, const qc_metrics_opts *opts, qc_metrics *out);

/* The quantized model q against its base on the same tokens. The two must
 * agree in vocabulary size and number of layers (QC_EINVAL otherwise). */
int qc_metrics_compare(qc_model *base, qc_model *q, const int32_t *ids, int64_t stride,
                       const int32_t *lens, int64_t nseq, const qc_metrics_opts *opts,
                       qc_metrics *out);

void qc_metrics_free(qc_metrics *r);             /* frees seq; r itself is the caller's */

/* The metrics as a JSON object (new reference; NULL on out of memory):
 * n_sequences, n_positions, ppl (and, comparing, ppl_base, ppl_ratio,
 * kl_mean, kl_max, top1), and per_sequence: {ppl_ratio|ppl, kl, top1}:
 * {min, median, max, std}. */
json_t *qc_metrics_json(const qc_metrics *r);

#endif
