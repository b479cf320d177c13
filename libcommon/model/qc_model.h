/*
 * qc_model.h - the decoder graph of the Llama family (Llama 1-3, Vicuna),
 * Mistral, Gemma and Gemma 2, evaluated one decoder layer at a time
 * (doc/design.md 4.4, 5; the families in doc/models.md).
 *
 *   x = embed_tokens[ids]                                  [T, hidden]
 *       (Gemma: times sqrt(hidden) rounded to torch_dtype)
 *   for each layer:
 *     h   = RMSNorm(x; input_layernorm)                    [T, hidden]
 *     q,k,v = h Wq^T, h Wk^T, h Wv^T  (+ biases)           [T, nh*hd], [T, nkv*hd] x2
 *     q,k = RoPE(q, k) at positions 0..len-1 of each sequence
 *     a   = causal GQA attention per sequence              [T, nh*hd]
 *           scores scaled by hd^-1/2 (Gemma 2: query_pre_attn_scalar^-1/2),
 *           soft-capped (Gemma 2), within the layer's sliding window
 *           (Gemma 2's even layers, Mistral's every layer)
 *     x  += a Wo^T        (Gemma 2: x += RMSNorm(a Wo^T; post_attention_layernorm))
 *     h   = RMSNorm(x; post_attention_layernorm)  (Gemma 2: pre_feedforward_layernorm)
 *     x  += (act(h Wg^T) * (h Wu^T)) Wd^T                  (chunks of rows)
 *           act = silu, or the tanh GELU (Gemma); Gemma 2 normalizes the
 *           down_proj output with post_feedforward_layernorm before the add
 *   logits = RMSNorm(x; norm) W_lm^T                       [T, vocab]
 *   (W_lm = embed_tokens when tie_word_embeddings; Gemma 2: logits =
 *   cap tanh(logits / cap), cap = final_logit_softcapping)
 *
 * RMSNorm weights are held as the norm applies them: Gemma's (1 + w), formed
 * in FP32 when the layer is loaded (qc_config's norm_offset), so that every
 * norm step is qk_rmsnorm; a method that rewrites a norm (a smoothing
 * scale) stores its weight less norm_offset.
 *
 * Weights come from a qc_wsrc (a checkpoint, or tensors in memory) under
 * their HuggingFace names and are turned into FP32 per layer: converted
 * from BF16/F16/F32, or dequantized from compressed-tensors codes
 * (qc_ctq.h). A quantized Linear's input is fake-quantized exactly as its
 * scheme's input_activations say (qk_actq). Only one layer's FP32 weights
 * exist at a time: qc_model_load_layer / qc_layer_release. The embedding and
 * lm_head stay in their stored dtype and are converted a block of rows at a
 * time.
 *
 * Sequences are passed packed: T = sum of lens[i] tokens, sequence i
 * occupying rows off[i] .. off[i] + lens[i] - 1 (no padding). Attention and
 * positions restart at every sequence.
 *
 * vLLM fuses q/k/v into one qkv_proj and gate/up into gate_up_proj; with
 * opts.vllm_fused (the default) the runtime reproduces what that fusion
 * does to the numbers: the shards' static input scales are replaced by
 * their maximum, and per-tensor FP8 weight scales are unified by
 * requantizing each shard's weights to the maximum scale
 * (requantize_with_max_scale in vLLM's w8a8_utils.py).
 *
 * Memory: buffers come from the kernel context (device memory); scratch for
 * a chunk of T tokens is about T * (3 hidden + 3 q_dim) floats plus
 * opts.mlp_rows * 2 * intermediate floats for the MLP, never T x
 * intermediate (Gemma 2's output norms add T * hidden and mlp_rows * hidden
 * for the o_proj and down_proj outputs before their norms). Not
 * thread-safe: one thread per qc_model.
 */
#ifndef QC_MODEL_H
#define QC_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "kernels.h"
#include "qc_ckpt.h"
#include "qc_config.h"
#include "qc_ctq.h"

typedef struct qc_model qc_model;

typedef struct qc_model_opts {
	int vllm_fused;       /* reproduce vLLM's q/k/v and gate/up fusion (1) */
	int64_t chunk_tokens; /* qc_model_forward: tokens per layer call (2048) */
	int64_t mlp_rows;     /* rows of the MLP computed at once (256) */
	int64_t head_rows;    /* lm_head rows converted at once (0: about 16 MiB) */
	int keep_tensors;     /* never release source tensors (0): for a stream
	                       * checkpoint whose layers are loaded more than once */
} qc_model_opts;

void qc_model_opts_default(qc_model_opts *o);

/*
 * A model over cfg's hyperparameters (copied; raw is not used) and weights
 * from src (the struct is copied; what it points to must outlive the
 * model). q is the quantization config or NULL for a dense model (borrowed,
 * must outlive the model). kc is borrowed too. opts may be NULL. Checks the
 * hyperparameters (QC_EUNSUPPORTED for activations other than silu and
 * gelu_pytorch_tanh, QC_EFORMAT for inconsistent sizes); tensors are
 * checked when loaded.
 */
int qc_model_new(qc_model **out, const qc_config *cfg, const qc_wsrc *src, const qc_ctq *q,
                 qk_ctx *kc, const qc_model_opts *opts);

/* A model over a checkpoint: config.json and its quantization_config are
 * read now (owned by the model), tensors as layers are loaded. ck and kc are
 * borrowed. */
int qc_model_open(qc_model **out, qc_ckpt *ck, qk_ctx *kc, const qc_model_opts *opts);

void qc_model_free(qc_model *m);                   /* NULL is a no-op */

const qc_config *qc_model_config(const qc_model *m);
const qc_ctq *qc_model_ctq(const qc_model *m);    /* NULL when dense */
qk_ctx *qc_model_kernels(const qc_model *m);
/* The model's weight source (e.g. for qverify's per-tensor checks). */
const qc_wsrc *qc_model_wsrc(const qc_model *m);

/* The rotary inverse frequencies [head_dim / 2] from config.json's rope
 * settings (host memory, as qk_rope_apply takes them). */
const float *qc_model_inv_freq(const qc_model *m);

/* A qc_wsrc over a checkpoint (qc_ckpt_get / qc_ckpt_release). */
void qc_wsrc_ckpt(qc_wsrc *src, qc_ckpt *ck);

/* ---------------------------------------------------------------- one layer */

typedef struct qc_layer {
	int index;
	int64_t out[QC_LIN_COUNT], in[QC_LIN_COUNT];
	/* the norms as applied, norm_offset + w (qc_norm_path names them) */
	float *attn_norm;             /* [hidden]  input_layernorm */
	float *mlp_norm;              /* [hidden]  post_attention_layernorm (Gemma 2:
	                               * pre_feedforward_layernorm) */
	float *attn_out_norm;         /* [hidden]  Gemma 2's post_attention_layernorm, or NULL */
	float *mlp_out_norm;          /* [hidden]  Gemma 2's post_feedforward_layernorm, or NULL */
	int64_t window;               /* the layer's sliding window (0: none) */
	float *w[QC_LIN_COUNT];       /* [out, in] FP32 (dequantized) */
	float *b[QC_LIN_COUNT];       /* [out] or NULL */
	qk_actq act[QC_LIN_COUNT];    /* input quantization per Linear */
	int quantized[QC_LIN_COUNT];  /* stored as codes */
	/* qc_model_load_layer_packed only: an int4 weight-only Linear kept as
	 * codes (w[l] NULL): q4 [out, in/2] two codes a byte, low nibble first;
	 * q4s, q4z [out, in/q4g] scales and zero points (q4z NULL: all 8), as
	 * qk_linear_q4 reads them */
	uint8_t *q4[QC_LIN_COUNT];
	float *q4s[QC_LIN_COUNT], *q4z[QC_LIN_COUNT];
	int64_t q4g[QC_LIN_COUNT];
} qc_layer;

/* Load decoder layer `layer` into lw (FP32 buffers from the kernel
 * context), releasing the source tensors as soon as they are converted.
 * QC_ENOTFOUND / QC_EFORMAT name the tensor that is missing, has the wrong
 * dtype or shape, or holds a NaN or Inf. On failure lw holds nothing. */
int qc_model_load_layer(qc_model *m, int layer, qc_layer *lw);
void qc_layer_release(qc_model *m, qc_layer *lw); /* frees the buffers; idempotent */

/* The same for decoding (qc_decode.h): int4 weight-only Linears with group or
 * channel scales stay packed (lw->q4, half a byte a weight plus 8 bytes a
 * group) when their codes can be recovered exactly from the dequantized
 * weights, on the CPU backend (the one with qk_linear_q4); the layer steps
 * below run them with qk_linear_q4. Other Linears are FP32 as above. Only
 * the layer steps of this header may be given such a layer (the walker and
 * the quantizers read lw->w). */
int qc_model_load_layer_packed(qc_model *m, int layer, qc_layer *lw);

/* The whole layer over a chunk of packed sequences: x [T, hidden] in place. */
int qc_layer_forward(qc_model *m, const qc_layer *lw, float *x, const int64_t *lens, int64_t nseq);

/*
 * One sequence's keys and values at one layer, for incremental decoding
 * (qc_decode.h): k, v [cap, n_kv * head_dim] device memory owned by the
 * caller; rows 0 .. past - 1 hold positions 0 .. past - 1 (keys after RoPE).
 */
typedef struct qc_kv {
	float *k, *v;
	int64_t cap, past;
} qc_kv;

/* The layer over T new tokens of one sequence that continue the cached ones:
 * x [T, hidden] in place, at positions kv->past ..; their keys and values
 * are appended to kv (kv->past += T). The same code as qc_layer_forward with
 * the attention reading the cache (qk_attention_kv). QC_EINVAL when the
 * tokens do not fit in kv->cap. */
int qc_layer_forward_kv(qc_model *m, const qc_layer *lw, float *x, int64_t T, qc_kv *kv);

/* Its steps, for the calibration walker and methods that re-run part of a
 * layer (AWQ's loss, SmoothQuant's statistics). Shapes as in the top
 * comment; T is the sum of lens. */
int qc_layer_attn_norm(qc_model *m, const qc_layer *lw, const float *x, float *h, int64_t T);
int qc_layer_attention(qc_model *m, const qc_layer *lw, const float *h, float *a,
                       const int64_t *lens, int64_t nseq);
/* x += a Wo^T (+ bias), the o_proj input quantized as the scheme says
 * (Gemma 2: x += RMSNorm(a Wo^T; post_attention_layernorm)) */
int qc_layer_o_proj(qc_model *m, const qc_layer *lw, const float *a, float *x, int64_t T);
int qc_layer_mlp_norm(qc_model *m, const qc_layer *lw, const float *x, float *h, int64_t T);

/* out[n] = act(gate) * up with the model's activation (SwiGLU, or GeGLU
 * with the tanh GELU for Gemma); out may equal gate or up (device). */
int qc_model_glu(qc_model *m, float *out, const float *gate, const float *up, size_t n);

/*
 * The MLP over h [T, hidden], mlp_rows rows at a time. For each block of
 * rows, observe (if not NULL) is called with the down_proj input
 * act(gate) * up [rows, intermediate] before it is quantized, and row0 its
 * first row; then, if x is not NULL, x[rows] += down(...) (Gemma 2: its
 * post_feedforward_layernorm). A non-zero return of observe stops and is
 * returned.
 */
typedef int (*qc_mlp_observe)(void *ctx, const float *act, int64_t row0, int64_t rows,
                              int64_t cols);
int qc_layer_mlp(qc_model *m, const qc_layer *lw, const float *h, float *x, int64_t T,
                 qc_mlp_observe observe, void *ctx);
/* x[T, hidden] += down(act) for down_proj inputs act [T, intermediate] kept
 * from qc_layer_mlp's observe calls, in the same blocks of mlp_rows rows,
 * so x gets the same bits as qc_layer_mlp would give. act is quantized in
 * place as the scheme says (it is not needed after). */
int qc_layer_down(qc_model *m, const qc_layer *lw, float *act, float *x, int64_t T);

/* ---------------------------------------------------------------- ends of the graph */

/* x[n, hidden] = embed_tokens rows of ids; an id outside the vocabulary is
 * QC_EFORMAT naming it. */
int qc_model_embed(qc_model *m, const int32_t *ids, int64_t n, float *x);
/* Forget the embedding view when the lm_head does not need it (untied): a
 * stream checkpoint can then free its first shard. */
void qc_model_drop_embed(qc_model *m);

/* logits [T, vocab] = lm_head(RMSNorm(x; model.norm)), x [T, hidden]. */
int qc_model_logits(qc_model *m, const float *x, int64_t T, float *logits);

/* The same in pieces, for callers that walk the vocabulary a block at a
 * time (qc_metrics): h [T, hidden] = the lm_head's input (final norm, then
 * the lm_head's input quantization if it has one); rows [v0, v1) of the
 * lm_head (the embedding when tied) as FP32 in *rows: a pointer into the
 * stored weights when they are FP32 already, else buf [v1 - v0, hidden]
 * converted or dequantized. */
int qc_model_head_input(qc_model *m, const float *x, int64_t T, float *h);
int qc_model_head_rows(qc_model *m, int64_t v0, int64_t v1, float *buf, const float **rows);
/* logits [T, v1 - v0] (row stride ld, device) = h W[v0:v1]^T for h [T,
 * hidden] from qc_model_head_input, buf as for qc_model_head_rows; with
 * final_logit_softcapping (Gemma 2) the capped logits, as the model's
 * output is. */
int qc_model_head_logits(qc_model *m, const float *h, int64_t T, int64_t v0, int64_t v1,
                         float *buf, float *logits, int64_t ld);

/* ---------------------------------------------------------------- whole model */

typedef enum { QC_OUT_LOGITS = 0, QC_OUT_LOGPROBS } qc_out_kind;

/*
 * The whole forward pass over nseq packed sequences (ids [T], T = sum of
 * lens), layer by layer (each layer loaded, run over all tokens in chunks of
 * whole sequences, released): out [T, vocab] logits or log-probabilities.
 * Holds [T, hidden] activations; for large token sets use qc_walk.
 */
int qc_model_forward(qc_model *m, const int32_t *ids, const int64_t *lens, int64_t nseq,
                     float *out, qc_out_kind kind);

#endif
