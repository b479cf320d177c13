/*
 * qc_qout.h - writing a compressed-tensors naive-quantized checkpoint
 * (doc/design.md 3.3), the canonical output of qgptq and qfp8.
 *
 * Layout per quantized Linear <module> (e.g. model.layers.0.self_attn.q_proj):
 *   <module>.weight             I8 [out, in] int4/int8 codes, one per byte,
 *                               or F8_E4M3 [out, in] for fp8
 *   <module>.weight_scale       scale dtype (the model's, BF16 usually):
 *                               [out, ceil(in/group)] group, [out, 1] channel,
 *                               [1] tensor
 *   <module>.weight_zero_point  I8, same shape as the scale (asymmetric only)
 *   <module>.input_scale        scale dtype [1] (static activations only)
 * Every other tensor (embeddings, norms, lm_head, ignored Linears) is copied
 * unchanged. config.json is the input's with quantization_config set from
 * the scheme; the other small files of the input (tokenizer,
 * generation_config.json, ...) are carried, except the index, the manifest
 * and an older quant_report.jsonl, which are written anew.
 *
 * One shard per decoder layer: the caller adds the embeddings and layer 0,
 * ends layer 0, ..., adds layer L-1 and the final norm/lm_head and ends it.
 */
#ifndef QC_QOUT_H
#define QC_QOUT_H

#include <stdint.h>

#include "qc_ckpt.h"
#include "qc_config.h"
#include "qc_qscheme.h"
#include "qc_report.h"

typedef struct qc_qout qc_qout;

typedef struct qc_qout_opts {
	const char *path;      /* output directory or "-" */
	int force;             /* replace an existing directory */
	int keep_partial;      /* keep <path>.partial on failure (resume) */
	const char *tool;      /* for the manifest's history */
	int argc;
	char *const *argv;
} qc_qout_opts;

/* Start the output: config.json with the scheme's quantization_config, the
 * carried small files. in must have been opened with hash_tensors set when
 * it may lack a manifest (the base fingerprint is then computed from the
 * tensors as they are read). s NULL makes a dense output (a smoothed
 * checkpoint): config.json is the input's byte for byte and
 * qc_qout_linear is refused. */
int qc_qout_open(qc_qout **q, qc_ckpt *in, const qc_config *cfg, const qc_qscheme *s,
                 const qc_qout_opts *o);

/* A quantized Linear: codes [rows, cols] bytes (int8 values or E4M3 bytes),
 * scales and zps (zps NULL when symmetric) as floats in the scheme's shape,
 * input_scale NULL unless activations are static. All data is copied. */
int qc_qout_linear(qc_qout *q, const char *module, int64_t rows, int64_t cols,
                   const void *codes, const float *scales, const float *zps,
                   const float *input_scale);
/* Copy a tensor unchanged. */
int qc_qout_copy(qc_qout *q, const qc_tensor *t);
/* Write a tensor of the input unchanged without copying it: the view must
 * come from the input checkpoint (qc_qout_open's in). It is held
 * (qc_ckpt_hold) until qc_qout_end_layer has written the shard, so that a
 * model releasing the same tensor meanwhile cannot free it. qc_qout_pass
 * hands the release over: the tensor is released once written.
 * qc_qout_share leaves the release to its other user (a model that loads
 * the layer): a release it makes while the shard is pending takes effect
 * then. */
int qc_qout_pass(qc_qout *q, const qc_tensor *t);
int qc_qout_share(qc_qout *q, const qc_tensor *t);
/*
 * Write every tensor of an input group (qc_ckpt_group_of) that skip (may be
 * NULL) does not claim, e.g. the weights a method writes itself: copied
 * (QC_QOUT_COPY; the post-layer group, which a calibration walk never
 * reads, is released then), or in place by qc_qout_pass (QC_QOUT_PASS) or
 * qc_qout_share (QC_QOUT_SHARE).
 */
typedef int (*qc_qout_skip_fn)(void *ctx, const char *tensor_name);
typedef enum { QC_QOUT_COPY, QC_QOUT_PASS, QC_QOUT_SHARE } qc_qout_how;
int qc_qout_copy_group(qc_qout *q, int group, qc_qout_skip_fn skip, void *ctx, qc_qout_how how);
/* Any other tensor (e.g. self_attn.k_scale), data copied. */
int qc_qout_tensor(qc_qout *q, const char *name, qc_dtype dt, int ndim, const int64_t *shape,
                   const void *data);
/* The same, taking data (malloc'd) instead of copying it: freed by the
 * writer once written, or now if the call fails. */
int qc_qout_give(qc_qout *q, const char *name, qc_dtype dt, int ndim, const int64_t *shape,
                 void *data);
/* Plan the shard of decoder layer `layer` before any of its tensors is
 * added (qc_ckw_plan_shard): every tensor of the input groups it holds (the
 * embeddings with layer 0, the final norm and lm_head with the last) as it
 * is, except the weights quantized(ctx, name) says qc_qout_linear will
 * replace, declared as it writes them, and the k/v scales of an fp8
 * kv_cache_scheme. Tensors are then written as they
 * are added, overlapping the caller's work; a plan the adds do not follow
 * costs only time. A no-op when the input or the output is a stream (a
 * stream input is read in order, and a stream output cannot be written out
 * of order). */
int qc_qout_plan_layer(qc_qout *q, int layer, qc_qout_skip_fn quantized, void *ctx);
/* qc_ckw_plan_stats of the output. */
void qc_qout_plan_stats(const qc_qout *q, int *held, int *broken);
/* XXH3-128 of the shard of `layer`, once ended (the writer hashed it on
 * the way out). */
int qc_qout_shard_hash(const qc_qout *q, int layer, qc_h128 *h);
/* End the shard of decoder layer `layer` (the last one also completes the
 * post-layer group). */
int qc_qout_end_layer(qc_qout *q, int layer);
/* Record a token set used (manifest). */
int qc_qout_token_set(qc_qout *q, const char *role, qc_h128 hash);
/* Write the report into the checkpoint, the index and manifest; rename into
 * place. Frees q (also on failure, removing the partial output). */
int qc_qout_close(qc_qout *q, const qc_report *r);
void qc_qout_abort(qc_qout *q);

#endif
