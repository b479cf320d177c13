/*
 * qc_config.h - config.json of a Llama-family checkpoint.
 *
 * Accepted architectures: LlamaForCausalLM (model_type "llama") and
 * MistralForCausalLM (model_type "mistral", without sliding-window attention
 * shorter than the context). Anything else is QC_EUNSUPPORTED with a message
 * naming the architecture. Missing keys take the defaults transformers'
 * LlamaConfig uses; inconsistent values (heads not dividing hidden size
 * without an explicit head_dim, KV heads not dividing heads, non-positive
 * sizes) are QC_EFORMAT.
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

/* Parse config.json text. On success cfg owns raw; release with qc_config_free. */
int qc_config_parse(qc_config *cfg, const void *json, size_t len, const char *name);
void qc_config_free(qc_config *cfg);

/* Serialize raw (with any changes made to it) the way HF writes config.json:
 * sorted keys, indent 2, trailing newline. malloc'd, NUL-terminated. */
int qc_config_dump(const qc_config *cfg, char **out, size_t *len);

/* Write a config.json from the structured fields alone (for qsynth):
 * fills raw from the fields and returns 0. */
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

/* Call fn for every tensor an unquantized checkpoint under cfg holds, in
 * layer order, with its name and shape (lm_head only when not tied). Stops
 * and returns the first non-zero value fn returns. */
typedef int (*qc_tensor_visit)(void *ctx, const char *name, int ndim, const int64_t *shape);
int qc_config_each_tensor(const qc_config *cfg, qc_tensor_visit fn, void *ctx);

#endif
