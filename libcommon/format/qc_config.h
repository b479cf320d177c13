/*
 * qc_config.h - config.json of a Llama-family checkpoint.
 *
 * Accepted architectures: LlamaForCausalLM (model_type "llama") and
 * MistralForCausalLM (model_type "mistral", without sliding-window attention
 * shorter than the context). Anything else is QC_EUNSUPPORTED with a message
 * naming the architecture ("unsupported architecture 'Qwen2MoeForCausalLM'
 * in 'config.json' (supported: LlamaForCausalLM, MistralForCausalLM)"), as
 * are rope types other than default/linear/llama3 and hidden_act other than
 * silu.
 *
 * Required keys: hidden_size, intermediate_size, num_hidden_layers,
 * num_attention_heads, vocab_size (LlamaConfig's defaults for them describe
 * Llama-1-7B, never what a file without them meant), and "architectures"
 * or "model_type". Other missing (or null) keys take the defaults of
 * transformers' LlamaConfig / MistralConfig: num_key_value_heads = heads,
 * head_dim = hidden_size / heads, max_position_embeddings 2048 (Mistral
 * 131072), rms_norm_eps 1e-6, rope_theta 10000, no rope scaling, no tied
 * embeddings, no biases, hidden_act silu; bos/eos absent.
 *
 * Inconsistent values are QC_EFORMAT with a message naming the key: sizes
 * that are not positive integers (or beyond 2^31; layers beyond 2^20),
 * heads not dividing hidden_size without an explicit head_dim, KV heads not
 * dividing heads, an odd head_dim, llama3 rope_scaling without its four
 * parameters or with high_freq_factor <= low_freq_factor, token ids outside
 * the vocabulary, wrong JSON types.
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

typedef struct qc_config {
	char architecture[64];         /* "LlamaForCausalLM" */
	char model_type[32];           /* "llama" */
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
	int mlp_bias;
	int64_t bos_token_id;          /* -1 when absent */
	int64_t eos_token_ids[8];      /* eos_token_id may be an int or a list */
	int n_eos;
	qc_dtype torch_dtype;          /* BF16 when absent or unknown */
	char hidden_act[16];           /* "silu" */
	json_t *raw;                   /* the whole document (owned) */
} qc_config;

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
 * released Llama config.json has (architectures, attention_bias,
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

/* ---- the tensors a Llama checkpoint must have ---- */

/* The Linear layers of one decoder layer, in execution order. */
typedef enum {
	QC_LIN_Q = 0, QC_LIN_K, QC_LIN_V, QC_LIN_O, QC_LIN_GATE, QC_LIN_UP, QC_LIN_DOWN,
	QC_LIN_COUNT
} qc_linear;

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
 * input_layernorm and post_attention_layernorm [hidden]; model.norm
 * [hidden]; lm_head [vocab, hidden] only when not tied. Stops and returns
 * the first non-zero value fn returns; 0 when all were visited. */
typedef int (*qc_tensor_visit)(void *ctx, const char *name, int ndim, const int64_t *shape);
int qc_config_each_tensor(const qc_config *cfg, qc_tensor_visit fn, void *ctx);

#endif
