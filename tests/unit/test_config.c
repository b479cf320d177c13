/*
 * test_config.c - config.json of the Llama family.
 *
 * The four configs below are those of the released checkpoints on the
 * Hugging Face hub (meta-llama/Llama-3.2-1B, Llama-3.1-8B, -70B, -405B), as
 * the files are laid out there: transformers writes them sorted with a
 * two-space indent, except that the 3.1 files carry a hand-ordered
 * rope_scaling block.
 */
#include "tutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qc_config.h"
#include "qc_err.h"
#include "qc_synth.h"

static const char llama32_1b[] =
	"{\n"
	"  \"architectures\": [\n"
	"    \"LlamaForCausalLM\"\n"
	"  ],\n"
	"  \"attention_bias\": false,\n"
	"  \"attention_dropout\": 0.0,\n"
	"  \"bos_token_id\": 128000,\n"
	"  \"eos_token_id\": 128001,\n"
	"  \"head_dim\": 64,\n"
	"  \"hidden_act\": \"silu\",\n"
	"  \"hidden_size\": 2048,\n"
	"  \"initializer_range\": 0.02,\n"
	"  \"intermediate_size\": 8192,\n"
	"  \"max_position_embeddings\": 131072,\n"
	"  \"mlp_bias\": false,\n"
	"  \"model_type\": \"llama\",\n"
	"  \"num_attention_heads\": 32,\n"
	"  \"num_hidden_layers\": 16,\n"
	"  \"num_key_value_heads\": 8,\n"
	"  \"pretraining_tp\": 1,\n"
	"  \"rms_norm_eps\": 1e-05,\n"
	"  \"rope_scaling\": {\n"
	"    \"factor\": 32.0,\n"
	"    \"high_freq_factor\": 4.0,\n"
	"    \"low_freq_factor\": 1.0,\n"
	"    \"original_max_position_embeddings\": 8192,\n"
	"    \"rope_type\": \"llama3\"\n"
	"  },\n"
	"  \"rope_theta\": 500000.0,\n"
	"  \"tie_word_embeddings\": true,\n"
	"  \"torch_dtype\": \"bfloat16\",\n"
	"  \"transformers_version\": \"4.45.0.dev0\",\n"
	"  \"use_cache\": true,\n"
	"  \"vocab_size\": 128256\n"
	"}\n";

/* Llama-3.1 files differ only in these values; the rope_scaling block is
 * in the files' own (unsorted) order. */
#define LLAMA31(hidden, inter, heads, layers)                                  \
	"{\n"                                                                  \
	"  \"architectures\": [\n"                                             \
	"    \"LlamaForCausalLM\"\n"                                           \
	"  ],\n"                                                               \
	"  \"attention_bias\": false,\n"                                       \
	"  \"attention_dropout\": 0.0,\n"                                      \
	"  \"bos_token_id\": 128000,\n"                                        \
	"  \"eos_token_id\": 128001,\n"                                        \
	"  \"hidden_act\": \"silu\",\n"                                        \
	"  \"hidden_size\": " hidden ",\n"                                     \
	"  \"initializer_range\": 0.02,\n"                                     \
	"  \"intermediate_size\": " inter ",\n"                                \
	"  \"max_position_embeddings\": 131072,\n"                             \
	"  \"mlp_bias\": false,\n"                                             \
	"  \"model_type\": \"llama\",\n"                                       \
	"  \"num_attention_heads\": " heads ",\n"                              \
	"  \"num_hidden_layers\": " layers ",\n"                               \
	"  \"num_key_value_heads\": 8,\n"                                      \
	"  \"pretraining_tp\": 1,\n"                                           \
	"  \"rms_norm_eps\": 1e-05,\n"                                         \
	"  \"rope_scaling\": {\n"                                              \
	"    \"factor\": 8.0,\n"                                               \
	"    \"low_freq_factor\": 1.0,\n"                                      \
	"    \"high_freq_factor\": 4.0,\n"                                     \
	"    \"original_max_position_embeddings\": 8192,\n"                    \
	"    \"rope_type\": \"llama3\"\n"                                      \
	"  },\n"                                                               \
	"  \"rope_theta\": 500000.0,\n"                                        \
	"  \"tie_word_embeddings\": false,\n"                                  \
	"  \"torch_dtype\": \"bfloat16\",\n"                                   \
	"  \"transformers_version\": \"4.43.0.dev0\",\n"                       \
	"  \"use_cache\": true,\n"                                             \
	"  \"vocab_size\": 128256\n"                                           \
	"}\n"

static const char llama31_8b[] = LLAMA31("4096", "14336", "32", "32");
static const char llama31_70b[] = LLAMA31("8192", "28672", "64", "80");
static const char llama31_405b[] = LLAMA31("16384", "53248", "128", "126");

static const struct real_model {
	const char *name, *json;
	int64_t hidden, inter, layers, heads, head_dim;
	int tie;
	double factor;
	int64_t n_tensors, n_params;   /* public counts: 146/1.24B, 291/8.03B, 723/70.6B, 1137/405.9B */
} models[] = {
	{ "Llama-3.2-1B", llama32_1b, 2048, 8192, 16, 32, 64, 1, 32.0, 146, 1235814400LL },
	{ "Llama-3.1-8B", llama31_8b, 4096, 14336, 32, 32, 128, 0, 8.0, 291, 8030261248LL },
	{ "Llama-3.1-70B", llama31_70b, 8192, 28672, 80, 64, 128, 0, 8.0, 723, 70553706496LL },
	{ "Llama-3.1-405B", llama31_405b, 16384, 53248, 126, 128, 128, 0, 8.0, 1137, 405853388800LL },
};
#define N_MODELS (sizeof models / sizeof models[0])

static void parse_ok(qc_config *c, const char *json)
{
	tu_assert_rc(qc_config_parse(c, json, strlen(json), "config.json"), 0);
}

/* The document with the 3.1 rope_scaling block in sorted order, which is
 * what a json.dumps(sort_keys=True) of the same content writes. */
static char *sorted_version(const char *json)
{
	static const char from[] = "    \"factor\": 8.0,\n    \"low_freq_factor\": 1.0,\n    \"high_freq_factor\": 4.0,\n";
	static const char to[] = "    \"factor\": 8.0,\n    \"high_freq_factor\": 4.0,\n    \"low_freq_factor\": 1.0,\n";
	char *s = strdup(json);
	assert_non_null(s);
	char *p = strstr(s, from);
	if (p)
		memcpy(p, to, sizeof to - 1);
	return s;
}

static void test_real_configs(void **state)
{
	(void)state;
	for (size_t i = 0; i < N_MODELS; i++) {
		const struct real_model *m = &models[i];
		qc_config c;
		parse_ok(&c, m->json);
		assert_string_equal(c.architecture, "LlamaForCausalLM");
		assert_string_equal(c.model_type, "llama");
		assert_int_equal(c.hidden_size, m->hidden);
		assert_int_equal(c.intermediate_size, m->inter);
		assert_int_equal(c.num_hidden_layers, m->layers);
		assert_int_equal(c.num_attention_heads, m->heads);
		assert_int_equal(c.num_key_value_heads, 8);
		assert_int_equal(c.head_dim, m->head_dim);
		assert_int_equal(c.vocab_size, 128256);
		assert_int_equal(c.max_position_embeddings, 131072);
		assert_true(c.rms_norm_eps == 1e-5);
		assert_true(c.rope_theta == 500000.0);
		assert_int_equal(c.rope_type, QC_ROPE_LLAMA3);
		assert_true(c.rope_factor == m->factor);
		assert_true(c.rope_low_freq_factor == 1.0);
		assert_true(c.rope_high_freq_factor == 4.0);
		assert_int_equal(c.rope_original_max_position_embeddings, 8192);
		assert_int_equal(c.tie_word_embeddings, m->tie);
		assert_int_equal(c.attention_bias, 0);
		assert_int_equal(c.mlp_bias, 0);
		assert_int_equal(c.bos_token_id, 128000);
		assert_int_equal(c.n_eos, 1);
		assert_int_equal(c.eos_token_ids[0], 128001);
		assert_int_equal(c.torch_dtype, QC_DT_BF16);
		assert_string_equal(c.hidden_act, "silu");
		assert_non_null(c.raw);

		/* dump writes the file as transformers would: byte-identical for
		 * 3.2 (already sorted), and for 3.1 up to the hand-ordered block */
		char *out, *want = sorted_version(m->json);
		size_t len;
		tu_assert_rc(qc_config_dump(&c, &out, &len), 0);
		assert_string_equal(out, want);
		assert_int_equal(len, strlen(want));
		free(out);
		free(want);
		qc_config_free(&c);
		assert_null(c.raw);
		qc_config_free(&c);   /* twice is harmless */
	}
	qc_config_free(NULL);
}

/* a small Gemma 2 config (the keys the cases add to) */
#define GBASE "\"model_type\": \"gemma2\", \"hidden_size\": 64, \"intermediate_size\": 128, " \
	"\"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"vocab_size\": 100"

/* The published config.json files of google/gemma-2b, gemma-2-2b,
 * gemma-2-9b and gemma-2-27b (keys sorted as on the hub): parsed as
 * transformers reads them, and qsynth's presets of those names have the
 * same shapes and hyper-parameters. */
static const struct real_gemma {
	const char *preset, *json;
	int v2;
	int64_t hidden, inter, layers, heads, kv, head_dim;
	double qpas;
} gemmas[] = {
	{ "gemma-2b",
	  "{\"architectures\": [\"GemmaForCausalLM\"], \"attention_bias\": false, \"attention_dropout\": 0.0,"
	  " \"bos_token_id\": 2, \"eos_token_id\": 1, \"head_dim\": 256, \"hidden_act\": \"gelu\","
	  " \"hidden_size\": 2048, \"initializer_range\": 0.02, \"intermediate_size\": 16384,"
	  " \"max_position_embeddings\": 8192, \"model_type\": \"gemma\", \"num_attention_heads\": 8,"
	  " \"num_hidden_layers\": 18, \"num_key_value_heads\": 1, \"pad_token_id\": 0,"
	  " \"rms_norm_eps\": 1e-06, \"rope_scaling\": null, \"rope_theta\": 10000.0,"
	  " \"torch_dtype\": \"bfloat16\", \"transformers_version\": \"4.38.0.dev0\", \"use_cache\": true,"
	  " \"vocab_size\": 256000}",
	  0, 2048, 16384, 18, 8, 1, 256, 0 },
	{ "gemma-2-2b",
	  "{\"architectures\": [\"Gemma2ForCausalLM\"], \"attention_bias\": false, \"attention_dropout\": 0.0,"
	  " \"attn_logit_softcapping\": 50.0, \"bos_token_id\": 2, \"cache_implementation\": \"hybrid\","
	  " \"eos_token_id\": 1, \"final_logit_softcapping\": 30.0, \"head_dim\": 256,"
	  " \"hidden_act\": \"gelu_pytorch_tanh\", \"hidden_activation\": \"gelu_pytorch_tanh\","
	  " \"hidden_size\": 2304, \"initializer_range\": 0.02, \"intermediate_size\": 9216,"
	  " \"max_position_embeddings\": 8192, \"model_type\": \"gemma2\", \"num_attention_heads\": 8,"
	  " \"num_hidden_layers\": 26, \"num_key_value_heads\": 4, \"pad_token_id\": 0,"
	  " \"query_pre_attn_scalar\": 256, \"rms_norm_eps\": 1e-06, \"rope_theta\": 10000.0,"
	  " \"sliding_window\": 4096, \"torch_dtype\": \"float32\", \"transformers_version\": \"4.42.4\","
	  " \"use_cache\": true, \"vocab_size\": 256000}",
	  1, 2304, 9216, 26, 8, 4, 256, 256 },
	{ "gemma-2-9b",
	  "{\"architectures\": [\"Gemma2ForCausalLM\"], \"attention_bias\": false, \"attention_dropout\": 0.0,"
	  " \"attn_logit_softcapping\": 50.0, \"bos_token_id\": 2, \"cache_implementation\": \"hybrid\","
	  " \"eos_token_id\": 1, \"final_logit_softcapping\": 30.0, \"head_dim\": 256,"
	  " \"hidden_act\": \"gelu_pytorch_tanh\", \"hidden_activation\": \"gelu_pytorch_tanh\","
	  " \"hidden_size\": 3584, \"initializer_range\": 0.02, \"intermediate_size\": 14336,"
	  " \"max_position_embeddings\": 8192, \"model_type\": \"gemma2\", \"num_attention_heads\": 16,"
	  " \"num_hidden_layers\": 42, \"num_key_value_heads\": 8, \"pad_token_id\": 0,"
	  " \"query_pre_attn_scalar\": 256, \"rms_norm_eps\": 1e-06, \"rope_theta\": 10000.0,"
	  " \"sliding_window\": 4096, \"sliding_window_size\": 4096, \"torch_dtype\": \"float32\","
	  " \"transformers_version\": \"4.42.0.dev0\", \"use_cache\": true, \"vocab_size\": 256000}",
	  1, 3584, 14336, 42, 16, 8, 256, 256 },
	{ "gemma-2-27b",
	  "{\"architectures\": [\"Gemma2ForCausalLM\"], \"attention_bias\": false, \"attention_dropout\": 0.0,"
	  " \"attn_logit_softcapping\": 50.0, \"bos_token_id\": 2, \"cache_implementation\": \"hybrid\","
	  " \"eos_token_id\": 1, \"final_logit_softcapping\": 30.0, \"head_dim\": 128,"
	  " \"hidden_act\": \"gelu_pytorch_tanh\", \"hidden_activation\": \"gelu_pytorch_tanh\","
	  " \"hidden_size\": 4608, \"initializer_range\": 0.02, \"intermediate_size\": 36864,"
	  " \"max_position_embeddings\": 8192, \"model_type\": \"gemma2\", \"num_attention_heads\": 32,"
	  " \"num_hidden_layers\": 46, \"num_key_value_heads\": 16, \"pad_token_id\": 0,"
	  " \"query_pre_attn_scalar\": 144, \"rms_norm_eps\": 1e-06, \"rope_theta\": 10000.0,"
	  " \"sliding_window\": 4096, \"sliding_window_size\": 4096, \"torch_dtype\": \"float32\","
	  " \"transformers_version\": \"4.42.0.dev0\", \"use_cache\": true, \"vocab_size\": 256000}",
	  1, 4608, 36864, 46, 32, 16, 128, 144 },
};

static void check_gemma_fields(const qc_config *c, const struct real_gemma *g)
{
	assert_int_equal(c->family, g->v2 ? QC_FAMILY_GEMMA2 : QC_FAMILY_GEMMA);
	assert_int_equal(c->hidden_size, g->hidden);
	assert_int_equal(c->intermediate_size, g->inter);
	assert_int_equal(c->num_hidden_layers, g->layers);
	assert_int_equal(c->num_attention_heads, g->heads);
	assert_int_equal(c->num_key_value_heads, g->kv);
	assert_int_equal(c->head_dim, g->head_dim);
	assert_int_equal(c->vocab_size, 256000);
	assert_int_equal(c->max_position_embeddings, 8192);
	assert_true(c->rms_norm_eps == 1e-6);
	assert_true(c->rope_theta == 10000.0);
	assert_int_equal(c->rope_type, QC_ROPE_DEFAULT);
	assert_int_equal(c->tie_word_embeddings, 1);
	assert_int_equal(c->bos_token_id, 2);
	assert_int_equal(c->eos_token_ids[0], 1);
	/* gemma-2b says hidden_act "gelu": the tanh GELU is what runs */
	assert_string_equal(c->hidden_act, "gelu_pytorch_tanh");
	assert_int_equal(c->norm_offset, 1);
	assert_int_equal(c->embed_scale, 1);
	assert_int_equal(c->sandwich_norms, g->v2);
	assert_true(c->query_pre_attn_scalar == g->qpas);
	assert_true(c->attn_softcap == (g->v2 ? 50.0 : 0));
	assert_true(c->final_softcap == (g->v2 ? 30.0 : 0));
	assert_int_equal(c->sliding_window, g->v2 ? 4096 : 0);
	assert_int_equal(qc_config_layer_window(c, 0), g->v2 ? 4096 : 0);
	assert_int_equal(qc_config_layer_window(c, 1), 0);
	assert_int_equal(qc_config_layer_window(c, 2), g->v2 ? 4096 : 0);
}

static void test_gemma_configs(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof gemmas / sizeof gemmas[0]; i++) {
		const struct real_gemma *g = &gemmas[i];
		qc_config c;
		parse_ok(&c, g->json);
		check_gemma_fields(&c, g);
		assert_string_equal(qc_norm_path(&c, QC_NORM_ATTN), "input_layernorm");
		assert_string_equal(qc_norm_path(&c, QC_NORM_MLP),
		                    g->v2 ? "pre_feedforward_layernorm" : "post_attention_layernorm");
		if (g->v2) {
			assert_string_equal(qc_norm_path(&c, QC_NORM_ATTN_OUT), "post_attention_layernorm");
			assert_string_equal(qc_norm_path(&c, QC_NORM_MLP_OUT), "post_feedforward_layernorm");
		} else {
			assert_null(qc_norm_path(&c, QC_NORM_ATTN_OUT));
		}
		qc_config_free(&c);
		/* the preset, written and read back */
		qc_config p;
		tu_assert_rc(qc_synth_preset(g->preset, &p), 0);
		tu_assert_rc(qc_config_build(&p), 0);
		check_gemma_fields(&p, g);
		char *out;
		size_t len;
		tu_assert_rc(qc_config_dump(&p, &out, &len), 0);
		assert_non_null(strstr(out, g->v2 ? "\"model_type\": \"gemma2\"" : "\"model_type\": \"gemma\""));
		assert_non_null(strstr(out, "\"hidden_activation\": \"gelu_pytorch_tanh\""));
		assert_null(strstr(out, "tie_word_embeddings"));
		free(out);
		qc_config_free(&p);
	}
	/* Gemma 2 defaults when the keys are absent; null soft-capping and
	 * window mean none; layer_types all full */
	qc_config c;
	parse_ok(&c, "{" GBASE "}");
	assert_true(c.attn_softcap == 50.0 && c.final_softcap == 30.0 && c.query_pre_attn_scalar == 256.0);
	assert_int_equal(c.sliding_window, 4096);
	assert_int_equal(c.head_dim, 256);
	qc_config_free(&c);
	parse_ok(&c, "{" GBASE ", \"attn_logit_softcapping\": null, \"final_logit_softcapping\": null,"
	             " \"sliding_window\": null}");
	assert_true(c.attn_softcap == 0 && c.final_softcap == 0);
	assert_int_equal(qc_config_layer_window(&c, 0), 0);
	qc_config_free(&c);
	parse_ok(&c, "{" GBASE ", \"layer_types\": [\"full_attention\", \"full_attention\"]}");
	assert_int_equal(qc_config_layer_window(&c, 0), 0);
	qc_config_free(&c);
	parse_ok(&c, "{" GBASE ", \"layer_types\": [\"sliding_attention\", \"full_attention\"]}");
	assert_int_equal(qc_config_layer_window(&c, 0), 4096);
	assert_int_equal(qc_config_layer_window(&c, 1), 0);
	qc_config_free(&c);
	/* Gemma 1: hidden_activation wins over hidden_act */
	parse_ok(&c, "{\"model_type\": \"gemma\", \"hidden_size\": 64, \"intermediate_size\": 128,"
	             " \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"vocab_size\": 100,"
	             " \"hidden_act\": \"gelu\", \"hidden_activation\": \"gelu_pytorch_tanh\"}");
	assert_string_equal(c.hidden_act, "gelu_pytorch_tanh");
	assert_int_equal(c.sliding_window, 0);
	qc_config_free(&c);
}

/* Qwen/Qwen2-0.5B and Qwen2-7B as published: q/k/v biases implied by the
 * architecture, the window off; qsynth's presets match */
static void test_qwen2_configs(void **state)
{
	(void)state;
	static const struct {
		const char *preset, *json;
		int64_t hidden, inter, layers, heads, kv, vocab;
		int tie;
	} qs[] = {
		{ "qwen2-0.5b",
		  "{\"architectures\": [\"Qwen2ForCausalLM\"], \"attention_dropout\": 0.0,"
		  " \"bos_token_id\": 151643, \"eos_token_id\": 151643, \"hidden_act\": \"silu\","
		  " \"hidden_size\": 896, \"initializer_range\": 0.02, \"intermediate_size\": 4864,"
		  " \"max_position_embeddings\": 131072, \"max_window_layers\": 24, \"model_type\": \"qwen2\","
		  " \"num_attention_heads\": 14, \"num_hidden_layers\": 24, \"num_key_value_heads\": 2,"
		  " \"rms_norm_eps\": 1e-06, \"rope_theta\": 1000000.0, \"sliding_window\": 131072,"
		  " \"tie_word_embeddings\": true, \"torch_dtype\": \"bfloat16\","
		  " \"transformers_version\": \"4.40.1\", \"use_cache\": true, \"use_sliding_window\": false,"
		  " \"vocab_size\": 151936}",
		  896, 4864, 24, 14, 2, 151936, 1 },
		{ "qwen2-7b",
		  "{\"architectures\": [\"Qwen2ForCausalLM\"], \"attention_dropout\": 0.0,"
		  " \"bos_token_id\": 151643, \"eos_token_id\": 151643, \"hidden_act\": \"silu\","
		  " \"hidden_size\": 3584, \"initializer_range\": 0.02, \"intermediate_size\": 18944,"
		  " \"max_position_embeddings\": 131072, \"max_window_layers\": 28, \"model_type\": \"qwen2\","
		  " \"num_attention_heads\": 28, \"num_hidden_layers\": 28, \"num_key_value_heads\": 4,"
		  " \"rms_norm_eps\": 1e-06, \"rope_theta\": 1000000.0, \"sliding_window\": 131072,"
		  " \"tie_word_embeddings\": false, \"torch_dtype\": \"bfloat16\","
		  " \"transformers_version\": \"4.37.2\", \"use_cache\": true, \"use_sliding_window\": false,"
		  " \"vocab_size\": 152064}",
		  3584, 18944, 28, 28, 4, 152064, 0 },
	};
	for (size_t i = 0; i < sizeof qs / sizeof qs[0]; i++) {
		qc_config c[2];
		parse_ok(&c[0], qs[i].json);
		tu_assert_rc(qc_synth_preset(qs[i].preset, &c[1]), 0);
		tu_assert_rc(qc_config_build(&c[1]), 0);
		for (int k = 0; k < 2; k++) {
			assert_int_equal(c[k].family, QC_FAMILY_QWEN2);
			assert_int_equal(c[k].hidden_size, qs[i].hidden);
			assert_int_equal(c[k].intermediate_size, qs[i].inter);
			assert_int_equal(c[k].num_hidden_layers, qs[i].layers);
			assert_int_equal(c[k].num_attention_heads, qs[i].heads);
			assert_int_equal(c[k].num_key_value_heads, qs[i].kv);
			assert_int_equal(c[k].head_dim, qs[i].hidden / qs[i].heads);
			assert_int_equal(c[k].vocab_size, qs[i].vocab);
			assert_int_equal(c[k].tie_word_embeddings, qs[i].tie);
			assert_true(c[k].rope_theta == 1e6 && c[k].rms_norm_eps == 1e-6);
			assert_int_equal(c[k].rope_type, QC_ROPE_DEFAULT);
			assert_int_equal(c[k].bos_token_id, 151643);
			assert_int_equal(c[k].sliding_window, 0);
			/* biases on q, k, v only */
			assert_true(qc_linear_has_bias(&c[k], QC_LIN_Q) && qc_linear_has_bias(&c[k], QC_LIN_K) &&
			            qc_linear_has_bias(&c[k], QC_LIN_V));
			assert_false(qc_linear_has_bias(&c[k], QC_LIN_O) || qc_linear_has_bias(&c[k], QC_LIN_GATE) ||
			             qc_linear_has_bias(&c[k], QC_LIN_DOWN));
			qc_config_free(&c[k]);
		}
	}
}

/* Build from the fields alone reproduces the released files. */
static void test_build_real(void **state)
{
	(void)state;
	for (size_t i = 0; i < N_MODELS; i++) {
		qc_config c;
		parse_ok(&c, models[i].json);
		qc_config b = c;            /* the fields, without the document */
		b.raw = NULL;
		tu_assert_rc(qc_config_build(&b), 0);
		char *out, *want = sorted_version(models[i].json);
		tu_assert_rc(qc_config_dump(&b, &out, NULL), 0);
		assert_string_equal(out, want);
		free(out);
		qc_config_free(&b);

		/* a few layers of the big shape: the same file but for the count */
		b = c;
		b.raw = NULL;
		b.num_hidden_layers = 2;
		tu_assert_rc(qc_config_build(&b), 0);
		tu_assert_rc(qc_config_dump(&b, &out, NULL), 0);
		char layers[64];
		snprintf(layers, sizeof layers, "\"num_hidden_layers\": %lld,", (long long)models[i].layers);
		char *p = strstr(want, layers);
		assert_non_null(p);
		memmove(p + strlen("\"num_hidden_layers\": 2,"), p + strlen(layers), strlen(p + strlen(layers)) + 1);
		memcpy(p, "\"num_hidden_layers\": 2,", strlen("\"num_hidden_layers\": 2,"));
		assert_string_equal(out, want);
		free(out);
		free(want);
		qc_config_free(&b);
		qc_config_free(&c);
	}
}

static void test_build_other_shapes(void **state)
{
	(void)state;
	/* a tiny model from a handful of fields: defaults filled, 3.2 key set */
	qc_config b;
	memset(&b, 0, sizeof b);
	b.hidden_size = 64;
	b.intermediate_size = 160;
	b.num_hidden_layers = 2;
	b.num_attention_heads = 4;
	b.num_key_value_heads = 2;
	b.vocab_size = 512;
	b.bos_token_id = 1;
	b.n_eos = 3;
	b.eos_token_ids[0] = 2;
	b.eos_token_ids[1] = 5;
	b.eos_token_ids[2] = 7;
	b.tie_word_embeddings = 1;
	tu_assert_rc(qc_config_build(&b), 0);
	assert_int_equal(b.head_dim, 16);
	assert_string_equal(b.architecture, "LlamaForCausalLM");
	assert_true(b.rms_norm_eps == 1e-5);
	char *out;
	tu_assert_rc(qc_config_dump(&b, &out, NULL), 0);
	const char *want =
		"{\n  \"architectures\": [\n    \"LlamaForCausalLM\"\n  ],\n  \"attention_bias\": false,\n"
		"  \"attention_dropout\": 0.0,\n  \"bos_token_id\": 1,\n  \"eos_token_id\": [\n    2,\n    5,\n    7\n  ],\n"
		"  \"head_dim\": 16,\n  \"hidden_act\": \"silu\",\n  \"hidden_size\": 64,\n  \"initializer_range\": 0.02,\n"
		"  \"intermediate_size\": 160,\n  \"max_position_embeddings\": 2048,\n  \"mlp_bias\": false,\n"
		"  \"model_type\": \"llama\",\n  \"num_attention_heads\": 4,\n  \"num_hidden_layers\": 2,\n"
		"  \"num_key_value_heads\": 2,\n  \"pretraining_tp\": 1,\n  \"rms_norm_eps\": 1e-05,\n"
		"  \"rope_scaling\": null,\n  \"rope_theta\": 10000.0,\n  \"tie_word_embeddings\": true,\n"
		"  \"torch_dtype\": \"bfloat16\",\n  \"transformers_version\": \"4.45.0.dev0\",\n  \"use_cache\": true,\n"
		"  \"vocab_size\": 512\n}\n";
	assert_string_equal(out, want);
	/* and it parses back to the same fields */
	qc_config p;
	parse_ok(&p, out);
	assert_int_equal(p.n_eos, 3);
	assert_int_equal(p.eos_token_ids[2], 7);
	assert_int_equal(p.rope_type, QC_ROPE_DEFAULT);
	qc_config_free(&p);
	free(out);

	/* rebuilding replaces the previous document */
	b.rope_type = QC_ROPE_LINEAR;
	b.rope_factor = 2.0;
	b.bos_token_id = -1;
	b.n_eos = 0;
	tu_assert_rc(qc_config_build(&b), 0);
	tu_assert_rc(qc_config_dump(&b, &out, NULL), 0);
	assert_non_null(strstr(out, "\"rope_scaling\": {\n    \"factor\": 2.0,\n    \"rope_type\": \"linear\"\n  },"));
	assert_non_null(strstr(out, "\"bos_token_id\": null,"));
	assert_non_null(strstr(out, "\"eos_token_id\": null,"));
	free(out);
	qc_config_free(&b);

	/* Mistral: its own key set (no biases, sliding_window null) */
	memset(&b, 0, sizeof b);
	snprintf(b.architecture, sizeof b.architecture, "MistralForCausalLM");
	b.hidden_size = 128;
	b.intermediate_size = 256;
	b.num_hidden_layers = 1;
	b.num_attention_heads = 4;
	b.vocab_size = 1000;
	b.max_position_embeddings = 32768;
	b.torch_dtype = QC_DT_F16;
	tu_assert_rc(qc_config_build(&b), 0);
	tu_assert_rc(qc_config_dump(&b, &out, NULL), 0);
	assert_non_null(strstr(out, "\"model_type\": \"mistral\""));
	assert_non_null(strstr(out, "\"sliding_window\": null"));
	assert_non_null(strstr(out, "\"torch_dtype\": \"float16\""));
	assert_null(strstr(out, "attention_bias"));
	assert_int_equal(b.torch_dtype, QC_DT_F16);
	free(out);
	qc_config_free(&b);

	/* fields that make no valid config: QC_EINVAL, cfg untouched */
	memset(&b, 0, sizeof b);
	b.hidden_size = 100;
	b.intermediate_size = 10;
	b.num_hidden_layers = 1;
	b.num_attention_heads = 3;
	b.vocab_size = 10;
	tu_assert_rc(qc_config_build(&b), QC_EINVAL);
	assert_non_null(strstr(qc_errmsg(), "cannot build config.json from these fields: "));
	assert_non_null(strstr(qc_errmsg(), "does not divide hidden_size"));
	assert_null(b.raw);
	assert_int_equal(b.head_dim, 0);
	b.num_attention_heads = 4;
	b.vocab_size = 0;
	tu_assert_rc(qc_config_build(&b), QC_EINVAL);
	assert_non_null(strstr(qc_errmsg(), "'vocab_size' must be a positive integer"));
}

static void test_variants(void **state)
{
	(void)state;
	qc_config c;
	/* minimal: the required keys; LlamaConfig's defaults for the rest */
	parse_ok(&c, "{\"model_type\": \"llama\", \"hidden_size\": 64, \"intermediate_size\": 128,"
	             " \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"vocab_size\": 100}");
	assert_string_equal(c.architecture, "LlamaForCausalLM");
	assert_int_equal(c.num_key_value_heads, 4);
	assert_int_equal(c.head_dim, 16);
	assert_int_equal(c.max_position_embeddings, 2048);
	assert_true(c.rms_norm_eps == 1e-6);
	assert_true(c.rope_theta == 10000.0);
	assert_int_equal(c.rope_type, QC_ROPE_DEFAULT);
	assert_int_equal(c.tie_word_embeddings, 0);
	assert_int_equal(c.bos_token_id, -1);
	assert_int_equal(c.n_eos, 0);
	assert_int_equal(c.torch_dtype, QC_DT_BF16);
	qc_config_free(&c);

#define BASE "\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 64, \"intermediate_size\": 128, " \
	     "\"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"vocab_size\": 1000"
	/* Llama-3 Instruct: eos is a list; explicit nulls mean defaults */
	parse_ok(&c, "{" BASE ", \"eos_token_id\": [128, 129, 130], \"bos_token_id\": null, \"head_dim\": null,"
	             " \"num_key_value_heads\": null, \"rope_scaling\": null}");
	assert_int_equal(c.n_eos, 3);
	assert_int_equal(c.eos_token_ids[1], 129);
	assert_int_equal(c.bos_token_id, -1);
	assert_int_equal(c.head_dim, 16);
	assert_int_equal(c.num_key_value_heads, 4);
	qc_config_free(&c);
	/* an explicit head_dim that is not hidden/heads (as in Mistral-Nemo) */
	parse_ok(&c, "{" BASE ", \"head_dim\": 32, \"num_key_value_heads\": 2}");
	assert_int_equal(c.head_dim, 32);
	int64_t sh[2];
	qc_linear_shape(&c, QC_LIN_Q, sh);
	assert_int_equal(sh[0], 128);
	assert_int_equal(sh[1], 64);
	qc_linear_shape(&c, QC_LIN_O, sh);
	assert_int_equal(sh[0], 64);
	assert_int_equal(sh[1], 128);
	qc_linear_shape(&c, QC_LIN_V, sh);
	assert_int_equal(sh[0], 64);
	qc_config_free(&c);
	/* older rope_scaling spelling "type"; linear scaling */
	parse_ok(&c, "{" BASE ", \"rope_scaling\": {\"type\": \"linear\", \"factor\": 4.0}, \"rope_theta\": 1000000}");
	assert_int_equal(c.rope_type, QC_ROPE_LINEAR);
	assert_true(c.rope_factor == 4.0);
	assert_true(c.rope_theta == 1e6);
	qc_config_free(&c);
	parse_ok(&c, "{" BASE ", \"rope_scaling\": {\"type\": \"llama3\", \"factor\": 8, \"low_freq_factor\": 1,"
	             " \"high_freq_factor\": 4, \"original_max_position_embeddings\": 8192}}");
	assert_int_equal(c.rope_type, QC_ROPE_LLAMA3);
	assert_true(c.rope_factor == 8.0);
	qc_config_free(&c);
	parse_ok(&c, "{" BASE ", \"rope_scaling\": {\"rope_type\": \"default\"}}");
	assert_int_equal(c.rope_type, QC_ROPE_DEFAULT);
	qc_config_free(&c);
	/* transformers 5: rope_parameters carries rope_theta too; "dtype" key */
	parse_ok(&c, "{" BASE ", \"rope_parameters\": {\"rope_type\": \"llama3\", \"rope_theta\": 500000.0,"
	             " \"factor\": 32.0, \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0,"
	             " \"original_max_position_embeddings\": 8192}, \"dtype\": \"float16\"}");
	assert_int_equal(c.rope_type, QC_ROPE_LLAMA3);
	assert_true(c.rope_theta == 500000.0);
	assert_true(c.rope_factor == 32.0);
	assert_int_equal(c.torch_dtype, QC_DT_F16);
	qc_config_free(&c);
	parse_ok(&c, "{" BASE ", \"torch_dtype\": \"float32\", \"attention_bias\": true, \"mlp_bias\": true}");
	assert_int_equal(c.torch_dtype, QC_DT_F32);
	assert_int_equal(c.attention_bias, 1);
	assert_int_equal(c.mlp_bias, 1);
	qc_config_free(&c);
	/* extra keys (quantization_config and the like) are kept, not judged */
	parse_ok(&c, "{" BASE ", \"quantization_config\": {\"quant_method\": \"compressed-tensors\"}}");
	json_t *q = json_object_get(c.raw, "quantization_config");
	assert_non_null(q);
	/* and tools can edit raw and write it back */
	json_object_set_new(c.raw, "torch_dtype", json_string("float16"));
	char *out;
	tu_assert_rc(qc_config_dump(&c, &out, NULL), 0);
	assert_non_null(strstr(out, "  \"quantization_config\": {\n    \"quant_method\": \"compressed-tensors\"\n  },\n"));
	assert_non_null(strstr(out, "\"torch_dtype\": \"float16\""));
	free(out);
	qc_config_free(&c);
	/* Mistral without a sliding window shorter than the context */
	parse_ok(&c, "{\"architectures\": [\"MistralForCausalLM\"], \"model_type\": \"mistral\", \"hidden_size\": 64,"
	             " \"intermediate_size\": 128, \"num_hidden_layers\": 2, \"num_attention_heads\": 4,"
	             " \"num_key_value_heads\": 1, \"vocab_size\": 32768, \"sliding_window\": null,"
	             " \"max_position_embeddings\": 32768}");
	assert_string_equal(c.architecture, "MistralForCausalLM");
	assert_int_equal(c.num_key_value_heads, 1);
	qc_config_free(&c);
	assert_int_equal(c.sliding_window, 0);
	assert_int_equal(qc_config_layer_window(&c, 1), 0);
	qc_config_free(&c);
	parse_ok(&c, "{\"model_type\": \"mistral\", \"hidden_size\": 64, \"intermediate_size\": 128,"
	             " \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"vocab_size\": 100,"
	             " \"sliding_window\": 4096, \"max_position_embeddings\": 4096}");
	assert_string_equal(c.architecture, "MistralForCausalLM");
	qc_config_free(&c);
	/* Mistral's window (4096 when the key is absent) is on every layer */
	parse_ok(&c, "{\"model_type\": \"mistral\", \"hidden_size\": 64, \"intermediate_size\": 128,"
	             " \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"vocab_size\": 100}");
	assert_int_equal(c.sliding_window, 4096);
	assert_int_equal(qc_config_layer_window(&c, 0), 4096);
	assert_int_equal(qc_config_layer_window(&c, 1), 4096);
	assert_int_equal(c.norm_offset, 0);
	assert_null(qc_norm_path(&c, QC_NORM_ATTN_OUT));
	qc_config_free(&c);
	/* dump without a document */
	memset(&c, 0, sizeof c);
	tu_assert_rc(qc_config_dump(&c, &out, NULL), QC_EINVAL);
}

static void test_malformed(void **state)
{
	(void)state;
	static const struct {
		const char *json;
		int rc;
		const char *msg;
	} cases[] = {
		{ "", QC_EFORMAT, "malformed 'config.json': invalid JSON" },
		{ "{\"hidden_size\": 64,", QC_EFORMAT, "invalid JSON" },
		{ "[]", QC_EFORMAT, "malformed 'config.json': not a JSON object" },
		{ "\"llama\"", QC_EFORMAT, "not a JSON object" },
		{ "{\"architectures\": [\"Qwen2MoeForCausalLM\"], \"hidden_size\": 64}", QC_EUNSUPPORTED,
		  "unsupported architecture 'Qwen2MoeForCausalLM' in 'config.json' (supported: LlamaForCausalLM, "
		  "MistralForCausalLM, GemmaForCausalLM, Gemma2ForCausalLM, Qwen2ForCausalLM)" },
		/* Gemma 3 (QK-norm, local rope base) is not Gemma 2 */
		{ "{\"model_type\": \"gemma3_text\"}", QC_EUNSUPPORTED,
		  "unsupported model_type 'gemma3_text' in 'config.json' (supported: llama, mistral, gemma, gemma2, qwen2)" },
		{ "{\"architectures\": [\"Gemma3ForCausalLM\"]}", QC_EUNSUPPORTED,
		  "unsupported architecture 'Gemma3ForCausalLM'" },
		/* mixture-of-experts layers, named by their key, before anything else */
		{ "{" BASE ", \"num_local_experts\": 8}", QC_EUNSUPPORTED,
		  "unsupported mixture-of-experts layers in 'config.json' ('num_local_experts' is 8)" },
		{ "{\"model_type\": \"mistral\", \"num_experts\": 60}", QC_EUNSUPPORTED, "('num_experts' is 60)" },
		{ "{" BASE ", \"n_routed_experts\": 64}", QC_EUNSUPPORTED, "('n_routed_experts' is 64)" },
		/* Gemma: the activation, soft-capping and layer_types are checked */
		{ "{" GBASE ", \"hidden_activation\": \"gelu\"}", QC_EUNSUPPORTED,
		  "unsupported hidden_activation 'gelu' in 'config.json' (supported: gelu_pytorch_tanh)" },
		{ "{" GBASE ", \"hidden_act\": \"silu\"}", QC_EUNSUPPORTED, "unsupported hidden_act 'silu'" },
		{ "{" GBASE ", \"attn_logit_softcapping\": -1}", QC_EFORMAT,
		  "'attn_logit_softcapping' must be a positive number" },
		{ "{" GBASE ", \"final_logit_softcapping\": 0}", QC_EFORMAT,
		  "'final_logit_softcapping' must be a positive number" },
		{ "{" GBASE ", \"query_pre_attn_scalar\": \"x\"}", QC_EFORMAT,
		  "'query_pre_attn_scalar' must be a positive number" },
		{ "{" GBASE ", \"layer_types\": [\"full_attention\", \"sliding_attention\"]}", QC_EUNSUPPORTED,
		  "unsupported 'layer_types' in 'config.json'" },
		{ "{" GBASE ", \"layer_types\": [\"full_attention\"]}", QC_EFORMAT,
		  "'layer_types' must be a list of num_hidden_layers (2) names" },
		{ "{" GBASE ", \"layer_types\": [\"chunked_attention\", \"full_attention\"]}", QC_EUNSUPPORTED,
		  "unsupported entry 0 of 'layer_types'" },
		{ "{\"architectures\": [\"LlamaForCausalLM\", \"GPT2LMHeadModel\"]}", QC_EUNSUPPORTED,
		  "unsupported architecture 'GPT2LMHeadModel'" },
		{ "{\"model_type\": \"qwen2_moe\"}", QC_EUNSUPPORTED, "unsupported model_type 'qwen2_moe' in 'config.json'" },
		/* Qwen2's sliding layers are not implemented */
		{ "{\"model_type\": \"qwen2\", \"hidden_size\": 64, \"intermediate_size\": 128,"
		  " \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"vocab_size\": 100,"
		  " \"use_sliding_window\": true}", QC_EUNSUPPORTED, "unsupported 'use_sliding_window' true" },
		{ "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"mistral\"}", QC_EFORMAT,
		  "model_type 'mistral' does not match architecture 'LlamaForCausalLM'" },
		{ "{\"architectures\": \"LlamaForCausalLM\"}", QC_EFORMAT, "'architectures' must be a non-empty list" },
		{ "{\"architectures\": []}", QC_EFORMAT, "'architectures' must be a non-empty list" },
		{ "{\"hidden_size\": 64}", QC_EFORMAT, "missing 'architectures' and 'model_type'" },
		{ "{\"model_type\": \"llama\", \"intermediate_size\": 128, \"num_hidden_layers\": 2,"
		  " \"num_attention_heads\": 4, \"vocab_size\": 100}", QC_EFORMAT, "missing 'hidden_size'" },
		{ "{\"model_type\": \"llama\", \"hidden_size\": -64, \"intermediate_size\": 128, \"num_hidden_layers\": 2,"
		  " \"num_attention_heads\": 4, \"vocab_size\": 100}", QC_EFORMAT, "'hidden_size' must be a positive integer" },
		{ "{\"model_type\": \"llama\", \"hidden_size\": 0, \"intermediate_size\": 128, \"num_hidden_layers\": 2,"
		  " \"num_attention_heads\": 4, \"vocab_size\": 100}", QC_EFORMAT, "'hidden_size' must be a positive integer" },
		{ "{\"model_type\": \"llama\", \"hidden_size\": \"64\", \"intermediate_size\": 128, \"num_hidden_layers\": 2,"
		  " \"num_attention_heads\": 4, \"vocab_size\": 100}", QC_EFORMAT, "'hidden_size' must be a positive integer" },
		{ "{\"model_type\": \"llama\", \"hidden_size\": 64.0, \"intermediate_size\": 128, \"num_hidden_layers\": 2,"
		  " \"num_attention_heads\": 4, \"vocab_size\": 100}", QC_EFORMAT, "'hidden_size' must be a positive integer" },
		{ "{\"model_type\": \"llama\", \"hidden_size\": 99999999999, \"intermediate_size\": 128,"
		  " \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"vocab_size\": 100}", QC_EFORMAT,
		  "'hidden_size' must be a positive integer of at most 2147483648" },
		{ "{\"model_type\": \"llama\", \"hidden_size\": 64, \"intermediate_size\": -1, \"num_hidden_layers\": 2,"
		  " \"num_attention_heads\": 4, \"vocab_size\": 100}", QC_EFORMAT, "'intermediate_size'" },
		{ "{\"model_type\": \"llama\", \"hidden_size\": 64, \"intermediate_size\": 128, \"num_hidden_layers\": 9999999,"
		  " \"num_attention_heads\": 4, \"vocab_size\": 100}", QC_EFORMAT, "'num_hidden_layers'" },
		{ "{" BASE ", \"num_key_value_heads\": -2}", QC_EFORMAT, "'num_key_value_heads' is -2, outside" },
		{ "{\"model_type\": \"llama\", \"hidden_size\": 100, \"intermediate_size\": 128, \"num_hidden_layers\": 2,"
		  " \"num_attention_heads\": 3, \"vocab_size\": 100}", QC_EFORMAT,
		  "num_attention_heads 3 does not divide hidden_size 100 (and there is no head_dim)" },
		{ "{" BASE ", \"num_key_value_heads\": 3}", QC_EFORMAT,
		  "num_key_value_heads 3 does not divide num_attention_heads 4" },
		{ "{" BASE ", \"head_dim\": 15}", QC_EFORMAT, "head_dim 15 is odd" },
		{ "{" BASE ", \"head_dim\": 0}", QC_EFORMAT, "'head_dim' is 0, outside" },
		{ "{" BASE ", \"rms_norm_eps\": 0}", QC_EFORMAT, "'rms_norm_eps' must be a positive number" },
		{ "{" BASE ", \"rms_norm_eps\": \"1e-5\"}", QC_EFORMAT, "'rms_norm_eps' must be a positive number" },
		{ "{" BASE ", \"rope_theta\": -10000.0}", QC_EFORMAT, "'rope_theta' must be a positive number" },
		{ "{" BASE ", \"rope_scaling\": \"llama3\"}", QC_EFORMAT, "'rope_scaling' must be an object or null" },
		{ "{" BASE ", \"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0, \"high_freq_factor\": 4.0,"
		  " \"original_max_position_embeddings\": 8192}}", QC_EFORMAT,
		  "'rope_scaling' of type 'llama3' needs 'low_freq_factor'" },
		{ "{" BASE ", \"rope_scaling\": {\"rope_type\": \"llama3\", \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0,"
		  " \"original_max_position_embeddings\": 8192}}", QC_EFORMAT, "'rope_scaling' of type 'llama3' needs 'factor'" },
		{ "{" BASE ", \"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0, \"low_freq_factor\": 4.0,"
		  " \"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 8192}}", QC_EFORMAT,
		  "llama3 rope needs high_freq_factor > low_freq_factor (got 4 and 4)" },
		{ "{" BASE ", \"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": -8.0, \"low_freq_factor\": 1.0,"
		  " \"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 8192}}", QC_EFORMAT,
		  "'factor' must be a positive number" },
		{ "{" BASE ", \"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0, \"low_freq_factor\": 1.0,"
		  " \"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 8192.5}}", QC_EFORMAT,
		  "'original_max_position_embeddings' must be an integer" },
		{ "{" BASE ", \"rope_scaling\": {\"rope_type\": 3}}", QC_EFORMAT, "'rope_type' in 'rope_scaling' must be a string" },
		{ "{" BASE ", \"rope_scaling\": {\"type\": \"linear\"}}", QC_EFORMAT, "'rope_scaling' of type 'linear' needs 'factor'" },
		{ "{" BASE ", \"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 4.0}}", QC_EUNSUPPORTED,
		  "unsupported rope type 'yarn' in 'config.json' (supported: default, linear, llama3)" },
		{ "{" BASE ", \"rope_scaling\": {\"type\": \"dynamic\", \"factor\": 2.0}}", QC_EUNSUPPORTED,
		  "unsupported rope type 'dynamic'" },
		{ "{" BASE ", \"rope_parameters\": [1]}", QC_EFORMAT, "'rope_parameters' must be an object or null" },
		{ "{" BASE ", \"tie_word_embeddings\": \"false\"}", QC_EFORMAT, "'tie_word_embeddings' must be true or false" },
		{ "{" BASE ", \"tie_word_embeddings\": 0}", QC_EFORMAT, "'tie_word_embeddings' must be true or false" },
		{ "{" BASE ", \"attention_bias\": 1}", QC_EFORMAT, "'attention_bias' must be true or false" },
		{ "{" BASE ", \"hidden_act\": \"gelu\"}", QC_EUNSUPPORTED, "unsupported hidden_act 'gelu' in 'config.json'" },
		{ "{" BASE ", \"hidden_act\": 5}", QC_EFORMAT, "'hidden_act' must be a string" },
		{ "{" BASE ", \"bos_token_id\": -1}", QC_EFORMAT, "'bos_token_id' is -1, outside [0, 999]" },
		{ "{" BASE ", \"bos_token_id\": 1000}", QC_EFORMAT, "'bos_token_id' is 1000, outside [0, 999]" },
		{ "{" BASE ", \"eos_token_id\": 1000}", QC_EFORMAT, "'eos_token_id' must be a token id below vocab_size 1000" },
		{ "{" BASE ", \"eos_token_id\": [1, \"2\"]}", QC_EFORMAT, "'eos_token_id' must be a token id" },
		{ "{" BASE ", \"eos_token_id\": [1,2,3,4,5,6,7,8,9]}", QC_EUNSUPPORTED, "more than 8 eos_token_id" },
		{ "{" BASE ", \"torch_dtype\": 16}", QC_EFORMAT, "'torch_dtype' must be a string" },
		{ "{" BASE ", \"max_position_embeddings\": 0}", QC_EFORMAT, "'max_position_embeddings' is 0, outside" },
		{ "{\"model_type\": \"mistral\", \"hidden_size\": 64, \"intermediate_size\": 128, \"num_hidden_layers\": 2,"
		  " \"num_attention_heads\": 4, \"vocab_size\": 100, \"sliding_window\": 0}", QC_EFORMAT,
		  "'sliding_window' is 0, outside" },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		qc_config c;
		memset(&c, 0x5A, sizeof c);
		int rc = qc_config_parse(&c, cases[i].json, strlen(cases[i].json), NULL);
		if (rc != cases[i].rc || !strstr(qc_errmsg(), cases[i].msg)) {
			print_error("case %zu: rc %d, message '%s'; expected rc %d and '%s'\n", i, rc, qc_errmsg(),
			            cases[i].rc, cases[i].msg);
			fail();
		}
		assert_null(c.raw);          /* zeroed on failure: qc_config_free is safe */
		qc_config_free(&c);
	}
	/* the name given is the one in messages */
	qc_config c;
	tu_assert_rc(qc_config_parse(&c, "[]", 2, "model/config.json"), QC_EFORMAT);
	assert_string_equal(qc_errmsg(), "malformed 'model/config.json': not a JSON object");
}

// ---------------------------------------------------------------- tensors

typedef struct visit {
	int64_t count, params, stop_at;
	char first[128], last[128];
	int ok_order;
	char prev[128];
} visit;

static int count_visit(void *ctx, const char *name, int ndim, const int64_t *shape)
{
	visit *v = ctx;
	int64_t n = 1;
	for (int i = 0; i < ndim; i++)
		n *= shape[i];
	v->params += n;
	if (v->count == 0)
		snprintf(v->first, sizeof v->first, "%s", name);
	snprintf(v->last, sizeof v->last, "%s", name);
	v->count++;
	return v->count == v->stop_at ? 42 : 0;
}

static void test_tensors(void **state)
{
	(void)state;
	/* counts and parameter totals of the released models */
	for (size_t i = 0; i < N_MODELS; i++) {
		qc_config c;
		parse_ok(&c, models[i].json);
		visit v = { 0 };
		tu_assert_rc(qc_config_each_tensor(&c, count_visit, &v), 0);
		assert_int_equal(v.count, models[i].n_tensors);
		assert_int_equal(v.params, models[i].n_params);
		assert_string_equal(v.first, "model.embed_tokens.weight");
		assert_string_equal(v.last, models[i].tie ? "model.norm.weight" : "lm_head.weight");
		qc_config_free(&c);
	}

	/* Llama-3.1-8B shapes and names */
	qc_config c;
	parse_ok(&c, llama31_8b);
	static const int64_t want[QC_LIN_COUNT][2] = {
		{ 4096, 4096 }, { 1024, 4096 }, { 1024, 4096 }, { 4096, 4096 },
		{ 14336, 4096 }, { 14336, 4096 }, { 4096, 14336 },
	};
	static const char *paths[QC_LIN_COUNT] = {
		"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
		"mlp.gate_proj", "mlp.up_proj", "mlp.down_proj",
	};
	for (int l = 0; l < QC_LIN_COUNT; l++) {
		int64_t sh[2];
		qc_linear_shape(&c, (qc_linear)l, sh);
		assert_int_equal(sh[0], want[l][0]);
		assert_int_equal(sh[1], want[l][1]);
		assert_string_equal(qc_linear_path((qc_linear)l), paths[l]);
	}
	char name[128];
	qc_linear_name(name, sizeof name, 31, QC_LIN_K, "weight");
	assert_string_equal(name, "model.layers.31.self_attn.k_proj.weight");
	qc_linear_name(name, sizeof name, 0, QC_LIN_DOWN, "weight_scale");
	assert_string_equal(name, "model.layers.0.mlp.down_proj.weight_scale");

	/* the visitor's first non-zero return stops the walk */
	visit v = { 0 };
	v.stop_at = 5;
	assert_int_equal(qc_config_each_tensor(&c, count_visit, &v), 42);
	assert_int_equal(v.count, 5);
	assert_string_equal(v.last, "model.layers.0.self_attn.o_proj.weight");
	qc_config_free(&c);

	/* biases follow their weights, with the weight's output size */
	parse_ok(&c, "{" BASE ", \"attention_bias\": true, \"num_key_value_heads\": 2}");
	v = (visit){ 0 };
	tu_assert_rc(qc_config_each_tensor(&c, count_visit, &v), 0);
	/* embed 1000x64, per layer: q 64x64+64, k 32x64+32, v 32x64+32, o 64x64+64,
	 * gate/up 128x64, down 64x128, 2 norms of 64; final norm; lm_head */
	int64_t layer = (4096 + 64) + (2048 + 32) * 2 + (4096 + 64) + 3 * 8192 + 128;
	assert_int_equal(v.params, 64000 + 2 * layer + 64 + 64000);
	assert_int_equal(v.count, 1 + 2 * 13 + 1 + 1);
	qc_config_free(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_real_configs),
		cmocka_unit_test(test_gemma_configs),
		cmocka_unit_test(test_qwen2_configs),
		cmocka_unit_test(test_build_real),
		cmocka_unit_test(test_build_other_shapes),
		cmocka_unit_test(test_variants),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_tensors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
