/*
 * qc_config.c - config.json of Llama-family checkpoints (see qc_config.h).
 *
 * Parsing follows transformers' LlamaConfig / MistralConfig: the same keys,
 * the same defaults for optional keys, rope_scaling with "rope_type" or the
 * older "type", and transformers 5's "rope_parameters" (which carries
 * rope_theta and the scaling together). It is stricter than transformers
 * where transformers would compute garbage: sizes must be positive integers,
 * heads must divide, llama3 rope needs high_freq_factor > low_freq_factor
 * (its smoothing divides by the difference).
 *
 * Writing (qc_config_build) produces the key set a real Meta checkpoint's
 * config.json has; for the shapes of Llama-3.2-1B and Llama-3.1-8B/70B/405B
 * it reproduces those files' keys and values (table known_models).
 */
#include "qc_config.h"

#include "qc_ckpt.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qc_err.h"
#include "qc_json.h"

/* Size limits: any [a, b] product of two sizes stays far inside int64, and
 * layer numbers stay below the checkpoint module's group range. */
#define MAX_SIZE   ((int64_t)1 << 31)
#define MAX_LAYERS ((int64_t)1 << 20)

#define SUPPORTED "LlamaForCausalLM, MistralForCausalLM, GemmaForCausalLM, Gemma2ForCausalLM, " \
	"Qwen2ForCausalLM"

// ---------------------------------------------------------------- errors

static int cfg_err(int code, const char *name, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int cfg_err(int code, const char *name, const char *fmt, ...)
{
	char what[600];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof what, fmt, ap);
	va_end(ap);
	if (code == QC_EFORMAT)
		return qc_seterr(code, "malformed '%s': %s", name, what);
	return qc_seterr(code, "%s", what);
}

// ---------------------------------------------------------------- typed getters

/* Each getter: key absent or null -> *out = def and 0; wrong type or range
 * -> QC_EFORMAT naming the key. */

static int get_int(json_t *o, const char *key, const char *name, int64_t def, int64_t min,
                   int64_t max, int64_t *out)
{
	json_t *v = json_object_get(o, key);
	if (!v || json_is_null(v)) {
		*out = def;
		return 0;
	}
	if (!json_is_integer(v))
		return cfg_err(QC_EFORMAT, name, "'%s' must be an integer", key);
	int64_t x = json_integer_value(v);
	if (x < min || x > max)
		return cfg_err(QC_EFORMAT, name, "'%s' is %lld, outside [%lld, %lld]", key, (long long)x,
		               (long long)min, (long long)max);
	*out = x;
	return 0;
}

/* A required size: present, an integer, 1..max. */
static int get_size(json_t *o, const char *key, const char *name, int64_t max, int64_t *out)
{
	json_t *v = json_object_get(o, key);
	if (!v || json_is_null(v))
		return cfg_err(QC_EFORMAT, name, "missing '%s'", key);
	if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > max)
		return cfg_err(QC_EFORMAT, name, "'%s' must be a positive integer of at most %lld", key,
		               (long long)max);
	*out = json_integer_value(v);
	return 0;
}

/* A positive finite number (integers accepted, as Python would). */
static int get_pos_real(json_t *o, const char *key, const char *name, double def, double *out)
{
	json_t *v = json_object_get(o, key);
	if (!v || json_is_null(v)) {
		*out = def;
		return 0;
	}
	double x = json_is_number(v) ? json_number_value(v) : -1;
	if (!(x > 0) || !isfinite(x))
		return cfg_err(QC_EFORMAT, name, "'%s' must be a positive number", key);
	*out = x;
	return 0;
}

static int get_bool(json_t *o, const char *key, const char *name, int def, int *out)
{
	json_t *v = json_object_get(o, key);
	if (!v || json_is_null(v)) {
		*out = def;
		return 0;
	}
	if (!json_is_boolean(v))
		return cfg_err(QC_EFORMAT, name, "'%s' must be true or false", key);
	*out = json_is_true(v);
	return 0;
}

/* A string key copied into out (n bytes); absent or null gives def. */
static int get_str(json_t *o, const char *key, const char *name, const char *def, char *out, size_t n)
{
	json_t *v = json_object_get(o, key);
	const char *s = def;
	if (v && !json_is_null(v)) {
		if (!json_is_string(v))
			return cfg_err(QC_EFORMAT, name, "'%s' must be a string", key);
		s = json_string_value(v);
	}
	if (strlen(s) >= n)
		return cfg_err(QC_EUNSUPPORTED, name, "unsupported %s '%.80s' in '%s'", key, s, name);
	snprintf(out, n, "%s", s);
	return 0;
}

// ---------------------------------------------------------------- rope

/* rope_scaling (or rope_parameters) object r into cfg. */
static int parse_rope(qc_config *cfg, json_t *r, const char *key, const char *name)
{
	if (!json_is_object(r))
		return cfg_err(QC_EFORMAT, name, "'%s' must be an object or null", key);
	/* "rope_type" is the current spelling; transformers still reads "type" */
	json_t *t = json_object_get(r, "rope_type");
	if (!t || json_is_null(t))
		t = json_object_get(r, "type");
	const char *type = "default";
	if (t && !json_is_null(t)) {
		if (!json_is_string(t))
			return cfg_err(QC_EFORMAT, name, "'rope_type' in '%s' must be a string", key);
		type = json_string_value(t);
	}
	if (strcmp(type, "default") == 0) {
		cfg->rope_type = QC_ROPE_DEFAULT;
		return 0;
	}
	int is_llama3 = strcmp(type, "llama3") == 0;
	if (!is_llama3 && strcmp(type, "linear") != 0)
		return cfg_err(QC_EUNSUPPORTED, name, "unsupported rope type '%.80s' in '%s' (supported: "
		               "default, linear, llama3)", type, name);
	if (!json_object_get(r, "factor"))
		return cfg_err(QC_EFORMAT, name, "'%s' of type '%s' needs 'factor'", key, type);
	QC_TRY(get_pos_real(r, "factor", name, 1.0, &cfg->rope_factor));
	if (!is_llama3) {
		cfg->rope_type = QC_ROPE_LINEAR;
		return 0;
	}
	static const char *const need[] = { "low_freq_factor", "high_freq_factor",
		                            "original_max_position_embeddings" };
	for (int i = 0; i < 3; i++)
		if (!json_object_get(r, need[i]) || json_is_null(json_object_get(r, need[i])))
			return cfg_err(QC_EFORMAT, name, "'%s' of type 'llama3' needs '%s'", key, need[i]);
	cfg->rope_type = QC_ROPE_LLAMA3;
	QC_TRY(get_pos_real(r, "low_freq_factor", name, 1.0, &cfg->rope_low_freq_factor));
	QC_TRY(get_pos_real(r, "high_freq_factor", name, 4.0, &cfg->rope_high_freq_factor));
	QC_TRY(get_int(r, "original_max_position_embeddings", name, 8192, 1, MAX_SIZE,
	               &cfg->rope_original_max_position_embeddings));
	/* the llama3 smoothing divides by (high - low) */
	if (!(cfg->rope_high_freq_factor > cfg->rope_low_freq_factor))
		return cfg_err(QC_EFORMAT, name, "llama3 rope needs high_freq_factor > low_freq_factor "
		               "(got %g and %g)", cfg->rope_high_freq_factor, cfg->rope_low_freq_factor);
	return 0;
}

// ---------------------------------------------------------------- parse

/* indexed by qc_family */
static const struct {
	const char *arch, *model_type;
} archs[] = {
	{ "LlamaForCausalLM", "llama" },
	{ "MistralForCausalLM", "mistral" },
	{ "GemmaForCausalLM", "gemma" },
	{ "Gemma2ForCausalLM", "gemma2" },
	{ "Qwen2ForCausalLM", "qwen2" },
};

/* A soft-capping value: absent gives def, null gives 0 (none), else a
 * positive number (transformers divides by it). */
static int get_cap(json_t *o, const char *key, const char *name, double def, double *out)
{
	json_t *v = json_object_get(o, key);
	if (!v) {
		*out = def;
		return 0;
	}
	if (json_is_null(v)) {
		*out = 0;
		return 0;
	}
	return get_pos_real(o, key, name, def, out);
}

/* The activation of a Gemma model (qc_config.h): hidden_activation, then for
 * Gemma 2 hidden_act, then the tanh GELU; anything else is refused naming
 * the key it came from. */
static int gemma_act(qc_config *cfg, json_t *root, const char *name, int gemma2)
{
	static const char *const keys[2] = { "hidden_activation", "hidden_act" };
	for (int i = 0; i < (gemma2 ? 2 : 1); i++) {
		json_t *v = json_object_get(root, keys[i]);
		if (!v || json_is_null(v))
			continue;
		if (!json_is_string(v))
			return cfg_err(QC_EFORMAT, name, "'%s' must be a string", keys[i]);
		if (strcmp(json_string_value(v), "gelu_pytorch_tanh") != 0)
			return cfg_err(QC_EUNSUPPORTED, name, "unsupported %s '%.80s' in '%s' (supported: "
			               "gelu_pytorch_tanh)", keys[i], json_string_value(v), name);
		break;
	}
	snprintf(cfg->hidden_act, sizeof cfg->hidden_act, "gelu_pytorch_tanh");
	return 0;
}

/* Gemma 2's layer_types: the default alternation (even layers slide), all
 * full or all sliding; anything else is refused by name. */
static int gemma2_layer_types(qc_config *cfg, json_t *root, const char *name)
{
	json_t *lt = json_object_get(root, "layer_types");
	cfg->sliding_layers = QC_SLIDE_EVEN;
	if (!lt || json_is_null(lt))
		return 0;
	if (!json_is_array(lt) || (int64_t)json_array_size(lt) != cfg->num_hidden_layers)
		return cfg_err(QC_EFORMAT, name, "'layer_types' must be a list of num_hidden_layers (%lld) "
		               "names", (long long)cfg->num_hidden_layers);
	int even = 1, all = 1, none = 1;
	for (size_t i = 0; i < json_array_size(lt); i++) {
		const char *t = json_string_value(json_array_get(lt, i));
		if (!t || (strcmp(t, "sliding_attention") != 0 && strcmp(t, "full_attention") != 0))
			return cfg_err(QC_EUNSUPPORTED, name, "unsupported entry %zu of 'layer_types' in '%s' "
			               "(supported: sliding_attention, full_attention)", i, name);
		int sl = strcmp(t, "sliding_attention") == 0;
		even &= sl == (i % 2 == 0);
		all &= sl;
		none &= !sl;
	}
	if (none)
		cfg->sliding_layers = QC_SLIDE_NONE;
	else if (all)
		cfg->sliding_layers = QC_SLIDE_ALL;
	else if (!even)
		return cfg_err(QC_EUNSUPPORTED, name, "unsupported 'layer_types' in '%s': sliding layers "
		               "other than the even ones, all or none", name);
	return 0;
}

/* Index in archs of the entry whose architecture name (by_type 0) or
 * model_type (by_type 1) is v, or -1. */
static int arch_index(const char *v, int by_type)
{
	for (size_t j = 0; j < sizeof archs / sizeof archs[0]; j++)
		if (strcmp(v, by_type ? archs[j].model_type : archs[j].arch) == 0)
			return (int)j;
	return -1;
}

static int parse_doc(qc_config *cfg, json_t *root, const char *name)
{
	if (!json_is_object(root))
		return cfg_err(QC_EFORMAT, name, "not a JSON object");

	// ---- architecture: "architectures" (a list, first entry used) and/or model_type
	int which = -1;
	json_t *av = json_object_get(root, "architectures");
	if (av && !json_is_null(av)) {
		if (!json_is_array(av) || json_array_size(av) == 0)
			return cfg_err(QC_EFORMAT, name, "'architectures' must be a non-empty list of names");
		for (size_t i = 0; i < json_array_size(av); i++) {
			json_t *a = json_array_get(av, i);
			if (!json_is_string(a))
				return cfg_err(QC_EFORMAT, name, "'architectures' must be a non-empty list of names");
			int k = arch_index(json_string_value(a), 0);
			if (k < 0)
				return cfg_err(QC_EUNSUPPORTED, name, "unsupported architecture '%.80s' in '%s' "
				               "(supported: " SUPPORTED ")", json_string_value(a), name);
			if (which >= 0 && k != which)
				return cfg_err(QC_EFORMAT, name, "'architectures' lists both '%s' and '%s'",
				               archs[which].arch, archs[k].arch);
			which = k;
		}
	}
	json_t *mt = json_object_get(root, "model_type");
	if (mt && !json_is_null(mt)) {
		if (!json_is_string(mt))
			return cfg_err(QC_EFORMAT, name, "'model_type' must be a string");
		int k = arch_index(json_string_value(mt), 1);
		if (k < 0)
			return cfg_err(QC_EUNSUPPORTED, name, "unsupported model_type '%.80s' in '%s' "
			               "(supported: llama, mistral, gemma, gemma2, qwen2)", json_string_value(mt), name);
		if (which >= 0 && k != which)
			return cfg_err(QC_EFORMAT, name, "model_type '%s' does not match architecture '%s'",
			               archs[k].model_type, archs[which].arch);
		which = k;
	}
	if (which < 0)
		return cfg_err(QC_EFORMAT, name, "missing 'architectures' and 'model_type'");
	cfg->family = (qc_family)which;
	int mistral = cfg->family == QC_FAMILY_MISTRAL;
	int gemma = cfg->family == QC_FAMILY_GEMMA || cfg->family == QC_FAMILY_GEMMA2;
	int gemma2 = cfg->family == QC_FAMILY_GEMMA2;
	int qwen2 = cfg->family == QC_FAMILY_QWEN2;
	snprintf(cfg->architecture, sizeof cfg->architecture, "%s", archs[which].arch);
	snprintf(cfg->model_type, sizeof cfg->model_type, "%s", archs[which].model_type);

	/* mixture-of-experts layers (Mixtral, Qwen2-MoE, DeepSeek spellings)
	 * are not implemented: refused before any work, naming the key */
	static const char *const moe[] = { "num_local_experts", "num_experts", "n_routed_experts" };
	for (size_t i = 0; i < sizeof moe / sizeof moe[0]; i++) {
		json_t *v = json_object_get(root, moe[i]);
		if (v && json_is_integer(v) && json_integer_value(v) > 0)
			return cfg_err(QC_EUNSUPPORTED, name, "unsupported mixture-of-experts layers in '%s' "
			               "('%s' is %lld)", name, moe[i], (long long)json_integer_value(v));
	}

	// ---- sizes (required: the defaults are Llama-1-7B's, never what a file meant)
	QC_TRY(get_size(root, "hidden_size", name, MAX_SIZE, &cfg->hidden_size));
	QC_TRY(get_size(root, "intermediate_size", name, MAX_SIZE, &cfg->intermediate_size));
	QC_TRY(get_size(root, "num_hidden_layers", name, MAX_LAYERS, &cfg->num_hidden_layers));
	QC_TRY(get_size(root, "num_attention_heads", name, MAX_SIZE, &cfg->num_attention_heads));
	QC_TRY(get_size(root, "vocab_size", name, MAX_SIZE, &cfg->vocab_size));
	QC_TRY(get_int(root, "num_key_value_heads", name, cfg->num_attention_heads, 1, MAX_SIZE,
	               &cfg->num_key_value_heads));
	/* GemmaConfig's and Gemma2Config's head_dim defaults to 256, whatever
	 * hidden_size / heads is */
	QC_TRY(get_int(root, "head_dim", name, gemma ? 256 : 0, 1, MAX_SIZE, &cfg->head_dim));
	QC_TRY(get_int(root, "max_position_embeddings", name,
	               mistral ? 4096 * 32 : gemma ? 8192 : qwen2 ? 32768 : 2048, 1, MAX_SIZE,
	               &cfg->max_position_embeddings));

	int64_t heads = cfg->num_attention_heads, kv = cfg->num_key_value_heads;
	if (cfg->head_dim == 0) {
		if (cfg->hidden_size % heads != 0)
			return cfg_err(QC_EFORMAT, name, "num_attention_heads %lld does not divide hidden_size "
			               "%lld (and there is no head_dim)", (long long)heads,
			               (long long)cfg->hidden_size);
		cfg->head_dim = cfg->hidden_size / heads;
	}
	if (heads % kv != 0)
		return cfg_err(QC_EFORMAT, name, "num_key_value_heads %lld does not divide "
		               "num_attention_heads %lld", (long long)kv, (long long)heads);
	if (cfg->head_dim % 2 != 0)
		return cfg_err(QC_EFORMAT, name, "head_dim %lld is odd: rotary embeddings rotate pairs",
		               (long long)cfg->head_dim);
	if (heads * cfg->head_dim > MAX_SIZE)
		return cfg_err(QC_EFORMAT, name, "num_attention_heads * head_dim is too large");

	// ---- norms, rope
	QC_TRY(get_pos_real(root, "rms_norm_eps", name, 1e-6, &cfg->rms_norm_eps));
	json_t *rp = json_object_get(root, "rope_parameters");
	if (rp && !json_is_null(rp)) {
		/* transformers >= 5 keeps rope_theta inside rope_parameters */
		QC_TRY(parse_rope(cfg, rp, "rope_parameters", name));
		QC_TRY(get_pos_real(rp, "rope_theta", name, 10000.0, &cfg->rope_theta));
	} else {
		QC_TRY(get_pos_real(root, "rope_theta", name, 10000.0, &cfg->rope_theta));
		json_t *rs = json_object_get(root, "rope_scaling");
		if (rs && !json_is_null(rs))
			QC_TRY(parse_rope(cfg, rs, "rope_scaling", name));
	}

	// ---- flags
	/* Gemma ties its embeddings by default */
	QC_TRY(get_bool(root, "tie_word_embeddings", name, gemma, &cfg->tie_word_embeddings));
	if (mistral || gemma2) {
		/* a sliding window of 4096 when the key is absent, none when null:
		 * on every layer (Mistral) or the even ones (Gemma 2) */
		QC_TRY(get_int(root, "sliding_window", name, json_object_get(root, "sliding_window") ? 0 : 4096,
		               1, MAX_SIZE, &cfg->sliding_window));
		cfg->sliding_layers = QC_SLIDE_ALL;
		if (gemma2)
			QC_TRY(gemma2_layer_types(cfg, root, name));
		if (cfg->sliding_window == 0)
			cfg->sliding_layers = QC_SLIDE_NONE;
	}
	if (qwen2) {
		/* Qwen2Attention always has q/k/v biases and none on o_proj; its
		 * sliding window (layers from max_window_layers on) is not
		 * implemented */
		cfg->qkv_bias = 1;
		int sw;
		QC_TRY(get_bool(root, "use_sliding_window", name, 0, &sw));
		if (sw)
			return cfg_err(QC_EUNSUPPORTED, name, "unsupported 'use_sliding_window' true in '%s' "
			               "(Qwen2's sliding layers)", name);
		json_t *lt = json_object_get(root, "layer_types");
		for (size_t i = 0; json_is_array(lt) && i < json_array_size(lt); i++) {
			const char *t = json_string_value(json_array_get(lt, i));
			if (!t || strcmp(t, "full_attention") != 0)
				return cfg_err(QC_EUNSUPPORTED, name, "unsupported entry %zu of 'layer_types' in "
				               "'%s' (supported: full_attention)", i, name);
		}
	} else if (!mistral) {
		/* MistralConfig has no biases */
		QC_TRY(get_bool(root, "attention_bias", name, 0, &cfg->attention_bias));
		if (!gemma)
			QC_TRY(get_bool(root, "mlp_bias", name, 0, &cfg->mlp_bias));
	}
	if (gemma) {
		QC_TRY(gemma_act(cfg, root, name, gemma2));
		cfg->norm_offset = 1;
		cfg->embed_scale = 1;
	} else {
		QC_TRY(get_str(root, "hidden_act", name, "silu", cfg->hidden_act, sizeof cfg->hidden_act));
		if (strcmp(cfg->hidden_act, "silu") != 0)
			return cfg_err(QC_EUNSUPPORTED, name, "unsupported hidden_act '%s' in '%s' (supported: "
			               "silu)", cfg->hidden_act, name);
	}
	if (gemma2) {
		cfg->sandwich_norms = 1;
		QC_TRY(get_pos_real(root, "query_pre_attn_scalar", name, 256.0, &cfg->query_pre_attn_scalar));
		QC_TRY(get_cap(root, "attn_logit_softcapping", name, 50.0, &cfg->attn_softcap));
		QC_TRY(get_cap(root, "final_logit_softcapping", name, 30.0, &cfg->final_softcap));
	}

	// ---- special tokens: ids must index the vocabulary
	QC_TRY(get_int(root, "bos_token_id", name, -1, 0, cfg->vocab_size - 1, &cfg->bos_token_id));
	json_t *eos = json_object_get(root, "eos_token_id");
	cfg->n_eos = 0;
	if (eos && !json_is_null(eos)) {
		size_t n = json_is_array(eos) ? json_array_size(eos) : 1;
		if (n > sizeof cfg->eos_token_ids / sizeof cfg->eos_token_ids[0])
			return cfg_err(QC_EUNSUPPORTED, name, "unsupported: more than 8 eos_token_id values in '%s'",
			               name);
		for (size_t i = 0; i < n; i++) {
			json_t *v = json_is_array(eos) ? json_array_get(eos, i) : eos;
			if (!json_is_integer(v) || json_integer_value(v) < 0 ||
			    json_integer_value(v) >= cfg->vocab_size)
				return cfg_err(QC_EFORMAT, name, "'eos_token_id' must be a token id below "
				               "vocab_size %lld, or a list of them", (long long)cfg->vocab_size);
			cfg->eos_token_ids[cfg->n_eos++] = json_integer_value(v);
		}
	}

	// ---- dtype: "torch_dtype", or "dtype" as transformers >= 4.56 writes it
	json_t *dt = json_object_get(root, "dtype");
	if (!dt || json_is_null(dt))
		dt = json_object_get(root, "torch_dtype");
	cfg->torch_dtype = QC_DT_BF16;
	if (dt && !json_is_null(dt)) {
		if (!json_is_string(dt))
			return cfg_err(QC_EFORMAT, name, "'torch_dtype' must be a string");
		const char *s = json_string_value(dt);
		if (strcmp(s, "float16") == 0)
			cfg->torch_dtype = QC_DT_F16;
		else if (strcmp(s, "float32") == 0)
			cfg->torch_dtype = QC_DT_F32;
	}
	return 0;
}

int qc_config_parse(qc_config *cfg, const void *json, size_t len, const char *name)
{
	json_error_t err;
	if (!name)
		name = "config.json";
	memset(cfg, 0, sizeof *cfg);
	/* DECODE_ANY: a scalar document is "not a JSON object", not a syntax error */
	json_t *root = json_loadb(json, len, JSON_DECODE_ANY, &err);
	if (!root)
		return cfg_err(QC_EFORMAT, name, "invalid JSON at line %d, column %d: %s", err.line,
		               err.column, err.text);
	int rc = parse_doc(cfg, root, name);
	if (rc) {
		json_decref(root);
		memset(cfg, 0, sizeof *cfg);
		return rc;
	}
	cfg->raw = root;
	return 0;
}

void qc_config_free(qc_config *cfg)
{
	if (!cfg)
		return;
	json_decref(cfg->raw);
	cfg->raw = NULL;
}

int qc_config_dump(const qc_config *cfg, char **out, size_t *len)
{
	if (!cfg->raw)
		return qc_seterr(QC_EINVAL, "cannot write config.json: the configuration has no document");
	return qc_json_dump(cfg->raw, out, len);
}

// ---------------------------------------------------------------- build

/*
 * The released configs (meta-llama/Llama-3.2-1B, Llama-3.1-8B, -70B, -405B
 * on the Hugging Face hub): when the fields have one of these shapes, the
 * file gets that release's key set and transformers_version. The 3.1 files
 * were written before LlamaConfig had head_dim; 3.2's have it.
 */
static const struct known_model {
	int64_t hidden, inter, heads, kv, vocab;
	int tie;
	double rope_factor;
	int has_head_dim;
	const char *transformers_version;
} known_models[] = {
	{ 2048, 8192, 32, 8, 128256, 1, 32.0, 1, "4.45.0.dev0" },    /* Llama-3.2-1B */
	{ 4096, 14336, 32, 8, 128256, 0, 8.0, 0, "4.43.0.dev0" },    /* Llama-3.1-8B */
	{ 8192, 28672, 64, 8, 128256, 0, 8.0, 0, "4.43.0.dev0" },    /* Llama-3.1-70B */
	{ 16384, 53248, 128, 8, 128256, 0, 8.0, 0, "4.43.0.dev0" },  /* Llama-3.1-405B */
};

static const struct known_model *match_known(const qc_config *c)
{
	if (strcmp(c->architecture, "LlamaForCausalLM") != 0 || c->rope_type != QC_ROPE_LLAMA3)
		return NULL;
	for (size_t i = 0; i < sizeof known_models / sizeof known_models[0]; i++) {
		const struct known_model *k = &known_models[i];
		if (c->hidden_size == k->hidden && c->intermediate_size == k->inter &&
		    c->num_attention_heads == k->heads && c->num_key_value_heads == k->kv &&
		    c->head_dim == c->hidden_size / c->num_attention_heads && c->vocab_size == k->vocab &&
		    !!c->tie_word_embeddings == k->tie && c->rope_factor == k->rope_factor)
			return k;
	}
	return NULL;
}

static const char *dtype_torch_name(qc_dtype dt)
{
	switch (dt) {
	case QC_DT_F16: return "float16";
	case QC_DT_F32: return "float32";
	default: return "bfloat16";
	}
}

static json_t *token_json(int64_t id)
{
	return id < 0 ? json_null() : json_integer(id);
}

int qc_config_build(qc_config *cfg)
{
	/* fill the documented defaults of empty fields */
	qc_config c = *cfg;
	c.raw = NULL;
	if (!c.architecture[0])
		snprintf(c.architecture, sizeof c.architecture, "LlamaForCausalLM");
	int fam = arch_index(c.architecture, 0);
	int mistral = fam == QC_FAMILY_MISTRAL, gemma2 = fam == QC_FAMILY_GEMMA2;
	int qwen2 = fam == QC_FAMILY_QWEN2;
	int gemma = fam == QC_FAMILY_GEMMA || gemma2;
	if (!c.model_type[0])
		snprintf(c.model_type, sizeof c.model_type, "%s", fam >= 0 ? archs[fam].model_type : "llama");
	if (gemma)
		snprintf(c.hidden_act, sizeof c.hidden_act, "gelu_pytorch_tanh");
	if (!c.hidden_act[0])
		snprintf(c.hidden_act, sizeof c.hidden_act, "silu");
	if (c.num_key_value_heads == 0)
		c.num_key_value_heads = c.num_attention_heads;
	/* head_dim stays 0 (unwritten) when heads do not divide: parsing then
	 * names the real problem */
	if (c.head_dim == 0 && c.num_attention_heads > 0 && c.hidden_size % c.num_attention_heads == 0)
		c.head_dim = c.hidden_size / c.num_attention_heads;
	if (c.max_position_embeddings == 0)
		c.max_position_embeddings = gemma ? 8192 : qwen2 ? 32768 : 2048;
	if (c.rms_norm_eps == 0)
		c.rms_norm_eps = gemma ? 1e-6 : 1e-5;
	if (c.rope_theta == 0)
		c.rope_theta = 10000.0;
	if (c.torch_dtype != QC_DT_F16 && c.torch_dtype != QC_DT_F32)
		c.torch_dtype = QC_DT_BF16;

	const struct known_model *k = match_known(&c);
	int fail = 0;
	json_t *o = json_object();
	json_t *arch = json_array();
	fail |= json_array_append_new(arch, json_string(c.architecture));
	fail |= json_object_set_new(o, "architectures", arch);
	fail |= json_object_set_new(o, "model_type", json_string(c.model_type));
	fail |= json_object_set_new(o, "hidden_size", json_integer(c.hidden_size));
	fail |= json_object_set_new(o, "intermediate_size", json_integer(c.intermediate_size));
	fail |= json_object_set_new(o, "num_hidden_layers", json_integer(c.num_hidden_layers));
	fail |= json_object_set_new(o, "num_attention_heads", json_integer(c.num_attention_heads));
	fail |= json_object_set_new(o, "num_key_value_heads", json_integer(c.num_key_value_heads));
	if ((k ? k->has_head_dim : 1) && c.head_dim > 0)
		fail |= json_object_set_new(o, "head_dim", json_integer(c.head_dim));
	fail |= json_object_set_new(o, "vocab_size", json_integer(c.vocab_size));
	fail |= json_object_set_new(o, "max_position_embeddings", json_integer(c.max_position_embeddings));
	fail |= json_object_set_new(o, "rms_norm_eps", json_real(c.rms_norm_eps));
	fail |= json_object_set_new(o, "rope_theta", json_real(c.rope_theta));
	json_t *rs = json_null();
	if (c.rope_type == QC_ROPE_LLAMA3) {
		rs = json_object();
		fail |= json_object_set_new(rs, "factor", json_real(c.rope_factor));
		fail |= json_object_set_new(rs, "low_freq_factor", json_real(c.rope_low_freq_factor));
		fail |= json_object_set_new(rs, "high_freq_factor", json_real(c.rope_high_freq_factor));
		fail |= json_object_set_new(rs, "original_max_position_embeddings",
		                            json_integer(c.rope_original_max_position_embeddings));
		fail |= json_object_set_new(rs, "rope_type", json_string("llama3"));
	} else if (c.rope_type == QC_ROPE_LINEAR) {
		rs = json_object();
		fail |= json_object_set_new(rs, "factor", json_real(c.rope_factor));
		fail |= json_object_set_new(rs, "rope_type", json_string("linear"));
	}
	fail |= json_object_set_new(o, "rope_scaling", rs);
	fail |= json_object_set_new(o, "tie_word_embeddings", json_boolean(c.tie_word_embeddings));
	fail |= json_object_set_new(o, "hidden_act", json_string(c.hidden_act));
	fail |= json_object_set_new(o, "bos_token_id", token_json(c.bos_token_id));
	json_t *eos;
	if (c.n_eos == 0) {
		eos = json_null();
	} else if (c.n_eos == 1) {
		eos = json_integer(c.eos_token_ids[0]);
	} else {
		eos = json_array();
		for (int i = 0; i < c.n_eos && i < 8; i++)
			fail |= json_array_append_new(eos, json_integer(c.eos_token_ids[i]));
	}
	fail |= json_object_set_new(o, "eos_token_id", eos);
	fail |= json_object_set_new(o, "torch_dtype", json_string(dtype_torch_name(c.torch_dtype)));
	/* the constant keys of a released config */
	fail |= json_object_set_new(o, "attention_dropout", json_real(0.0));
	fail |= json_object_set_new(o, "initializer_range", json_real(0.02));
	fail |= json_object_set_new(o, "use_cache", json_true());
	fail |= json_object_set_new(o, "transformers_version",
	                            json_string(k ? k->transformers_version :
	                                        gemma2 ? "4.42.4" : gemma ? "4.38.0.dev0" :
	                                        qwen2 ? "4.40.1" : "4.45.0.dev0"));
	if (mistral || gemma2)
		fail |= json_object_set_new(o, "sliding_window", c.sliding_window > 0 ?
		                            json_integer(c.sliding_window) : json_null());
	if (gemma) {
		/* google/gemma-2b and gemma-2-2b: no mlp_bias, pretraining_tp or
		 * tie_word_embeddings key (tied by default) */
		if (c.tie_word_embeddings)
			json_object_del(o, "tie_word_embeddings");
		fail |= json_object_set_new(o, "attention_bias", json_boolean(c.attention_bias));
		fail |= json_object_set_new(o, "hidden_activation", json_string(c.hidden_act));
		fail |= json_object_set_new(o, "pad_token_id", json_integer(0));
	}
	if (gemma2) {
		double qp = c.query_pre_attn_scalar > 0 ? c.query_pre_attn_scalar : (double)c.head_dim;
		fail |= json_object_set_new(o, "query_pre_attn_scalar",
		                            qp == floor(qp) ? json_integer((json_int_t)qp) : json_real(qp));
		fail |= json_object_set_new(o, "attn_logit_softcapping", c.attn_softcap > 0 ?
		                            json_real(c.attn_softcap) : json_null());
		fail |= json_object_set_new(o, "final_logit_softcapping", c.final_softcap > 0 ?
		                            json_real(c.final_softcap) : json_null());
		fail |= json_object_set_new(o, "cache_implementation", json_string("hybrid"));
	}
	if (qwen2) {
		/* Qwen/Qwen2-0.5B and -7B: no bias keys (the q/k/v biases are the
		 * architecture's), a window that is off */
		fail |= json_object_set_new(o, "use_sliding_window", json_false());
		fail |= json_object_set_new(o, "sliding_window", json_integer(c.max_position_embeddings));
		fail |= json_object_set_new(o, "max_window_layers", json_integer(c.num_hidden_layers));
	}
	if (!mistral && !gemma && !qwen2) {
		fail |= json_object_set_new(o, "attention_bias", json_boolean(c.attention_bias));
		fail |= json_object_set_new(o, "mlp_bias", json_boolean(c.mlp_bias));
		fail |= json_object_set_new(o, "pretraining_tp", json_integer(1));
	}
	if (fail) {
		json_decref(o);
		return qc_seterr(QC_ENOMEM, "cannot build config.json: out of memory");
	}

	/* validate by parsing what was built: the fields must make a config
	 * that qc_config_parse accepts, and cfg then holds exactly that */
	char *text;
	size_t len;
	int rc = qc_json_dump(o, &text, &len);
	json_decref(o);
	if (rc)
		return rc;
	qc_config parsed;
	rc = qc_config_parse(&parsed, text, len, "config.json");
	free(text);
	if (rc)
		return qc_errctx(QC_EINVAL, "cannot build config.json from these fields");
	qc_config_free(cfg);
	*cfg = parsed;
	return 0;
}

// ---------------------------------------------------------------- tensors

int qc_linear_has_bias(const qc_config *cfg, qc_linear l)
{
	if (l <= QC_LIN_V)
		return cfg->attention_bias || cfg->qkv_bias;
	return l == QC_LIN_O ? cfg->attention_bias : cfg->mlp_bias;
}

int64_t qc_config_layer_window(const qc_config *cfg, int layer)
{
	switch (cfg->sliding_layers) {
	case QC_SLIDE_ALL: return cfg->sliding_window;
	case QC_SLIDE_EVEN: return layer % 2 == 0 ? cfg->sliding_window : 0;
	default: return 0;
	}
}

const char *qc_norm_path(const qc_config *cfg, qc_norm n)
{
	switch (n) {
	case QC_NORM_ATTN: return "input_layernorm";
	case QC_NORM_MLP: return cfg->sandwich_norms ? "pre_feedforward_layernorm" : "post_attention_layernorm";
	case QC_NORM_ATTN_OUT: return cfg->sandwich_norms ? "post_attention_layernorm" : NULL;
	case QC_NORM_MLP_OUT: return cfg->sandwich_norms ? "post_feedforward_layernorm" : NULL;
	default: return NULL;
	}
}

static const char *const linear_paths[QC_LIN_COUNT] = {
	"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
	"mlp.gate_proj", "mlp.up_proj", "mlp.down_proj",
};

const char *qc_linear_path(qc_linear l)
{
	QC_ASSERT((unsigned)l < QC_LIN_COUNT);
	return linear_paths[l];
}

void qc_linear_shape(const qc_config *cfg, qc_linear l, int64_t shape[2])
{
	/* HF nn.Linear weights are [out_features, in_features] */
	int64_t h = cfg->hidden_size, q = cfg->num_attention_heads * cfg->head_dim;
	int64_t kv = cfg->num_key_value_heads * cfg->head_dim, f = cfg->intermediate_size;
	switch (l) {
	case QC_LIN_Q: shape[0] = q; shape[1] = h; return;
	case QC_LIN_K:
	case QC_LIN_V: shape[0] = kv; shape[1] = h; return;
	case QC_LIN_O: shape[0] = h; shape[1] = q; return;
	case QC_LIN_GATE:
	case QC_LIN_UP: shape[0] = f; shape[1] = h; return;
	case QC_LIN_DOWN: shape[0] = h; shape[1] = f; return;
	default: QC_ASSERT(!"invalid qc_linear");
	}
}

void qc_linear_name(char *out, size_t n, int layer, qc_linear l, const char *suffix)
{
	snprintf(out, n, "model.layers.%d.%s.%s", layer, qc_linear_path(l), suffix);
}

void qc_linear_module(char *out, size_t n, int layer, qc_linear l)
{
	snprintf(out, n, "model.layers.%d.%s", layer, qc_linear_path(l));
}

int qc_config_each_tensor(const qc_config *cfg, qc_tensor_visit fn, void *ctx)
{
	/* transformers' state-dict order (module registration order): embedding;
	 * per layer self_attn q/k/v/o, mlp gate/up/down, then the two norms;
	 * final norm; lm_head */
	char name[128];
	int64_t sh[2];
	int rc;
	sh[0] = cfg->vocab_size;
	sh[1] = cfg->hidden_size;
	if ((rc = fn(ctx, "model.embed_tokens.weight", 2, sh)))
		return rc;
	for (int64_t layer = 0; layer < cfg->num_hidden_layers; layer++) {
		for (int l = 0; l < QC_LIN_COUNT; l++) {
			qc_linear_shape(cfg, (qc_linear)l, sh);
			qc_linear_name(name, sizeof name, (int)layer, (qc_linear)l, "weight");
			if ((rc = fn(ctx, name, 2, sh)))
				return rc;
			if (qc_linear_has_bias(cfg, (qc_linear)l)) {
				qc_linear_name(name, sizeof name, (int)layer, (qc_linear)l, "bias");
				if ((rc = fn(ctx, name, 1, sh)))
					return rc;
			}
		}
		/* input_layernorm, post_attention_layernorm (then Gemma 2's
		 * pre_feedforward_layernorm, post_feedforward_layernorm) */
		static const qc_norm order[QC_NORM_COUNT] = { QC_NORM_ATTN, QC_NORM_ATTN_OUT, QC_NORM_MLP,
			                                      QC_NORM_MLP_OUT };
		sh[0] = cfg->hidden_size;
		for (int k = 0; k < QC_NORM_COUNT; k++) {
			qc_norm nk = cfg->sandwich_norms ? order[k] : (qc_norm)k;
			const char *path = qc_norm_path(cfg, nk);
			if (!path)
				continue;
			snprintf(name, sizeof name, "model.layers.%lld.%s.weight", (long long)layer, path);
			if ((rc = fn(ctx, name, 1, sh)))
				return rc;
		}
	}
	sh[0] = cfg->hidden_size;
	if ((rc = fn(ctx, "model.norm.weight", 1, sh)))
		return rc;
	if (!cfg->tie_word_embeddings) {
		sh[0] = cfg->vocab_size;
		sh[1] = cfg->hidden_size;
		if ((rc = fn(ctx, "lm_head.weight", 2, sh)))
			return rc;
	}
	return 0;
}

int qc_config_read(qc_config *cfg, qc_ckpt *ck)
{
	const void *data;
	size_t len;
	int rc = qc_ckpt_file(ck, "config.json", &data, &len);
	if (rc == QC_ENOTFOUND)
		return qc_seterr(QC_EFORMAT, "'%s' has no config.json", qc_ckpt_name(ck));
	if (rc)
		return rc;
	return qc_config_parse(cfg, data, len, "config.json");
}
