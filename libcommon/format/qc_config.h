/*
 * qc_config.h - config.json of a checkpoint of the families the runtime
 * implements (doc/models.md).
 *
 * Accepted architectures (model_type): LlamaForCausalLM (llama; Llama 1-3,
 * Vicuna), MistralForCausalLM (mistral), GemmaForCausalLM (gemma),
 * Gemma2ForCausalLM (gemma2) and Qwen2ForCausalLM (qwen2). Anything else is QC_EUNSUPPORTED with a
 * message naming the architecture ("unsupported architecture
 * 'Qwen2MoeForCausalLM' in 'config.json' (supported: ...)") or model_type,
 * as are rope types other than default/linear/llama3, activations other than
 * silu (Llama, Mistral) and the tanh GELU (Gemma), mixture-of-experts keys
 * (num_local_experts, num_experts, n_routed_experts) and Gemma 2 layer_types
 * other than the alternating pattern.
 *
 * Required keys: hidden_size, intermediate_size, num_hidden_layers,
 * num_attention_heads, vocab_size (the configs' defaults for them describe
 * one model, never what a file without them meant), and "architectures"
 * or "model_type". Other missing (or null) keys take the defaults of
 * transformers' LlamaConfig / MistralConfig / GemmaConfig / Gemma2Config:
 * num_key_value_heads = heads, head_dim = hidden_size / heads (Gemma: 256),
 * max_position_embeddings 2048 (Mistral 131072, Gemma 8192, Qwen2 32768), rms_norm_eps
 * 1e-6, rope_theta 10000, no rope scaling, tied embeddings for Gemma only,
 * no biases, hidden_act silu; Gemma 2: query_pre_attn_scalar 256,
 * attn_logit_softcapping 50, final_logit_softcapping 30, sliding_window
 * 4096 (an explicit null means none); Mistral: sliding_window 4096 (null:
 * none); bos/eos absent.
 *
 * Families (what the runtime does differently, doc/models.md):
 *   gemma, gemma2  RMSNorm scales by (1 + weight) (norm_offset 1); the
 *                  embeddings are multiplied by sqrt(hidden_size) rounded to
 *                  torch_dtype (embed_scale); GeGLU with the tanh GELU
 *                  (hidden_act "gelu_pytorch_tanh"). Gemma's activation is
 *                  hidden_activation when set, else the tanh GELU whatever
 *                  hidden_act says: the published Gemma files say "gelu",
 *                  and the model was trained with the approximation (vLLM,
 *                  and transformers 4.39 to 4.47, read it so). Gemma 2's is
 *                  hidden_activation (else hidden_act, else the tanh GELU).
 *   gemma2         sandwich norms: post_attention_layernorm normalizes the
 *                  attention output, pre_feedforward_layernorm is the MLP's
 *                  input norm, post_feedforward_layernorm its output's;
 *                  attention scale query_pre_attn_scalar^-1/2; attention and
 *                  final logit soft-capping; sliding window on the even
 *                  layers (transformers' layer_types default: layer i slides
 *                  when (i + 1) % 2 is 1); an explicit layer_types must be
 *                  that pattern, all full or all sliding.
 *   mistral        the sliding window on every layer.
 *   qwen2          biases on q/k/v (not o_proj), as Qwen2's modeling code
 *                  always builds them (qkv_bias); use_sliding_window true,
 *                  or layer_types with sliding layers, is refused by name.
 *
 * Inconsistent values are QC_EFORMAT with a message naming the key: sizes
 * that are not positive integers (or beyond 2^31; layers beyond 2^20),
 * heads not dividing hidden_size without an explicit head_dim, KV heads not
 * dividing heads, an odd head_dim, llama3 rope_scaling without its four
 * parameters or with high_freq_factor <= low_freq_factor, token ids outside
 * the vocabulary, negative soft-capping, wrong JSON types.
 *
 * Spellings accepted: rope_scaling's "rope_type" or the older "type";
 * transformers 5's "rope_parameters" (rope_theta and scaling together)
 * instead of rope_theta + rope_scaling; "dtype" (transformers >= 4.56) or
 * "torch_dtype"; eos_token_id an int or a list of up to 8.
 *
 * The parsed JSON is kept (raw) so that tools can add or replace keys, such
 * as quantization_config, and write the file back with every other key as
 * it was (qc_config_dump: sorted keys, two-space indent, as HF writes it).
 */
#ifndef QC_CONFIG_H
#define QC_CONFIG_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "qc_dtype.h"

typedef enum {
	QC_ROPE_DEFAULT = 0,   /* no rope_scaling, or "default" */
	QC_ROPE_LLAMA3,        /* Llama 3.1/3.2 frequency-dependent scaling */
	QC_ROPE_LINEAR,        /* position interpolation: positions / factor */
} qc_rope_type;

/* The families of doc/models.md, from model_type. */
typedef enum {
	QC_FAMILY_LLAMA = 0,
	QC_FAMILY_MISTRAL,
	QC_FAMILY_GEMMA,
	QC_FAMILY_GEMMA2,
	QC_FAMILY_QWEN2,
} qc_family;

/* Which layers use the sliding window. */
typedef enum {
	QC_SLIDE_NONE = 0,
	QC_SLIDE_ALL,      /* Mistral */
	QC_SLIDE_EVEN,     /* Gemma 2: layers 0, 2, 4, ... */
} qc_slide;

typedef struct qc_config {
	char architecture[64];         /* "LlamaForCausalLM" */
	char model_type[32];           /* "llama" */
	qc_family family;              /* from model_type (LLAMA when zeroed) */
	int64_t hidden_size;
	int64_t intermediate_size;
	int64_t num_hidden_layers;
	int64_t num_attention_heads;
	int64_t num_key_value_heads;   /* defaults to num_attention_heads */
	int64_t head_dim;              /* defaults to hidden_size / heads */
	int64_t vocab_size;
	int64_t max_position_embeddings;
	double rms_norm_eps;
	double rope_theta;
	qc_rope_type rope_type;
	double rope_factor;            /* llama3 and linear */
	double rope_low_freq_factor;   /* llama3 */
	double rope_high_freq_factor;  /* llama3 */
	int64_t rope_original_max_position_embeddings; /* llama3 */
	int tie_word_embeddings;
	int attention_bias;            /* q/k/v/o have biases */
	int qkv_bias;                  /* q/k/v (not o) have biases: Qwen2 */
	int mlp_bias;
	int64_t bos_token_id;          /* -1 when absent */
	int64_t eos_token_ids[8];      /* eos_token_id may be an int or a list */
	int n_eos;
	qc_dtype torch_dtype;          /* BF16 when absent or unknown */
	char hidden_act[24];           /* the activation applied: "silu" or
	                                * "gelu_pytorch_tanh" (Gemma) */
	/* Gemma and Gemma 2 (all zero for Llama and Mistral) */
	int norm_offset;               /* RMSNorm scales by (norm_offset + weight) */
	int embed_scale;               /* embeddings times sqrt(hidden), rounded to torch_dtype */
	int sandwich_norms;            /* Gemma 2's four norms per layer */
	double query_pre_attn_scalar;  /* attention scale = this^-1/2; 0: head_dim's */
	double attn_softcap;           /* attn_logit_softcapping; 0: none */
	double final_softcap;          /* final_logit_softcapping; 0: none */
	int64_t sliding_window;        /* 0: none */
	qc_slide sliding_layers;       /* which layers slide (NONE when no window) */
	json_t *raw;                   /* the whole document (owned) */
} qc_config;

/* The sliding window of decoder layer `layer` (0: full attention). */
int64_t qc_config_layer_window(const qc_config *cfg, int layer);

/* Parse config.json text; name (for messages, NULL = "config.json") is the
 * file as the user knows it. On success cfg owns raw; release with
 * qc_config_free. On failure cfg is zeroed (raw NULL). */
int qc_config_parse(qc_config *cfg, const void *json, size_t len, const char *name);
/* Release raw (the other fields stay readable). NULL is a no-op. */
void qc_config_free(qc_config *cfg);
/* qc_config_parse of ck's config.json; QC_EFORMAT naming ck when it has
 * none. */
struct qc_ckpt;
int qc_config_read(qc_config *cfg, struct qc_ckpt *ck);

/* Serialize raw (with any changes made to it) the way HF writes config.json:
 * sorted keys, indent 2, trailing newline. malloc'd, NUL-terminated. */
int qc_config_dump(const qc_config *cfg, char **out, size_t *len);

/* Make raw from the structured fields alone (for qsynth), with the keys a
 * released config.json of the family has (Gemma, Gemma 2: the keys of
 * google/gemma-2b and google/gemma-2-2b, with hidden_act and
 * hidden_activation both "gelu_pytorch_tanh"; query_pre_attn_scalar (0:
 * head_dim), the soft-capping values and sliding_window come from cfg, 0
 * written as null; norm_offset, embed_scale and sandwich_norms follow from
 * the architecture and are not read). For Llama: the keys a released
 * Llama config.json has (architectures, attention_bias,
 * attention_dropout, bos/eos_token_id, hidden_act, initializer_range 0.02,
 * pretraining_tp 1, rope_scaling (null when default), torch_dtype,
 * transformers_version, use_cache, ...). When the fields have the shape of
 * Llama-3.2-1B or Llama-3.1-8B/70B/405B (any layer count) the key set and
 * transformers_version are that release's (head_dim written only for 3.2,
 * whose file has it); other shapes get the 3.2 key set.
 * Empty or zero fields take defaults: architecture LlamaForCausalLM,
 * model_type from it, num_key_value_heads = heads, head_dim = hidden/heads,
 * max_position_embeddings 2048, rms_norm_eps 1e-5, rope_theta 10000,
 * hidden_act silu, torch_dtype BF16; bos_token_id -1 and n_eos 0 write null.
 * The result is validated by parsing it: on success every field of cfg is
 * replaced by the parsed values (defaults filled in) and the previous raw is
 * released; fields that make an invalid config give QC_EINVAL and leave cfg
 * untouched. */
int qc_config_build(qc_config *cfg);

/* ---- the tensors a checkpoint must have ---- */

/* The Linear layers of one decoder layer, in execution order. */
typedef enum {
	QC_LIN_Q = 0, QC_LIN_K, QC_LIN_V, QC_LIN_O, QC_LIN_GATE, QC_LIN_UP, QC_LIN_DOWN,
	QC_LIN_COUNT
} qc_linear;

/* The RMSNorms of a decoder layer. */
typedef enum {
	QC_NORM_ATTN = 0,   /* input_layernorm: q/k/v's input */
	QC_NORM_MLP,        /* gate/up's input: post_attention_layernorm
	                     * (pre_feedforward_layernorm with sandwich norms) */
	QC_NORM_ATTN_OUT,   /* sandwich norms: post_attention_layernorm on o_proj's output */
	QC_NORM_MLP_OUT,    /* sandwich norms: post_feedforward_layernorm on down_proj's output */
	QC_NORM_COUNT
} qc_norm;

/* The norm's module path under the layer ("input_layernorm", ...), or NULL
 * when cfg's family has no such norm. */
const char *qc_norm_path(const qc_config *cfg, qc_norm n);

/* 1 when Linear l has a bias under cfg (attention_bias, qkv_bias, mlp_bias). */
int qc_linear_has_bias(const qc_config *cfg, qc_linear l);

/* "self_attn.q_proj" ... "mlp.down_proj" */
const char *qc_linear_path(qc_linear l);
/* Shape [out, in] of Linear l under cfg. */
void qc_linear_shape(const qc_config *cfg, qc_linear l, int64_t shape[2]);
/* "model.layers.<layer>.<path>.<suffix>" into out (suffix e.g. "weight"). */
void qc_linear_name(char *out, size_t n, int layer, qc_linear l, const char *suffix);
/* The module name "model.layers.<layer>.<path>" (what report lines, ignore
 * patterns and quantization_config name). */
void qc_linear_module(char *out, size_t n, int layer, qc_linear l);

/* Call fn for every tensor an unquantized checkpoint under cfg holds, with
 * its name and shape, in transformers' state-dict order: embed_tokens
 * [vocab, hidden]; per layer q/k/v/o_proj, gate/up/down_proj weights (each
 * followed by its [out] bias when attention_bias / mlp_bias), then
 * input_layernorm and post_attention_layernorm [hidden] (and Gemma 2's
 * pre_feedforward_layernorm, post_feedforward_layernorm); model.norm
 * [hidden]; lm_head [vocab, hidden] only when not tied. Stops and returns
 * the first non-zero value fn returns; 0 when all were visited. */
typedef int (*qc_tensor_visit)(void *ctx, const char *name, int ndim, const int64_t *shape);
int qc_config_each_tensor(const qc_config *cfg, qc_tensor_visit fn, void *ctx);

#endif
