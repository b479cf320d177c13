/* test_synth.c - synthetic weights: determinism and the statistics qc_synth.h
 * promises (heavy tails, outlier channels, shrunk outlier columns). */
#include "tutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "qc_config.h"
#include "qc_err.h"
#include "qc_num.h"
#include "qc_synth.h"

static void tiny(qc_config *c, qc_synth_opts *o)
{
	assert_int_equal(qc_synth_preset("tiny", c), 0);
	qc_synth_opts_default(o);
	o->seed = 3;
	o->dtype = QC_DT_F32;
}

static float *make(const qc_config *c, const qc_synth_opts *o, const char *name, int ndim,
                   const int64_t *shape)
{
	void *d;
	size_t nb;
	tu_assert_rc(qc_synth_tensor(c, o, name, ndim, shape, &d, &nb), 0);
	assert_int_equal(nb, (size_t)qc_numel(ndim, shape) * qc_dtype_size(o->dtype));
	return d;
}

static void test_threads_do_not_change_values(void **state)
{
	(void)state;
	qc_config c;
	qc_synth_opts o;
	tiny(&c, &o);
	int64_t sh[2] = { 384, 128 };
	o.threads = 1;
	float *a = make(&c, &o, "model.layers.1.mlp.gate_proj.weight", 2, sh);
	o.threads = 3;
	float *b = make(&c, &o, "model.layers.1.mlp.gate_proj.weight", 2, sh);
	assert_memory_equal(a, b, 384 * 128 * sizeof(float));
	/* another name, another tensor */
	float *d = make(&c, &o, "model.layers.0.mlp.gate_proj.weight", 2, sh);
	assert_true(memcmp(a, d, 384 * 128 * sizeof(float)) != 0);
	free(a);
	free(b);
	free(d);
}

static void test_seed_changes_values(void **state)
{
	(void)state;
	qc_config c;
	qc_synth_opts o;
	tiny(&c, &o);
	int64_t sh[1] = { 128 };
	float *a = make(&c, &o, "model.norm.weight", 1, sh);
	o.seed = 4;
	float *b = make(&c, &o, "model.norm.weight", 1, sh);
	assert_true(memcmp(a, b, sizeof(float) * 128) != 0);
	free(a);
	free(b);
}

/* Heavy tails: excess kurtosis of a Linear weight well above a Gaussian's 0,
 * and the std near c / sqrt(in). */
static void test_heavy_tails(void **state)
{
	(void)state;
	qc_config c;
	qc_synth_opts o;
	tiny(&c, &o);
	c.hidden_size = 512;
	int64_t sh[2] = { 512, 1024 };
	float *w = make(&c, &o, "model.layers.0.mlp.down_proj.weight", 2, sh);
	double s2 = 0, s4 = 0;
	size_t n = 512 * 1024;
	for (size_t i = 0; i < n; i++) {
		double x = w[i];
		s2 += x * x;
		s4 += x * x * x * x;
	}
	double var = s2 / n, kurt = s4 / n / (var * var) - 3.0;
	assert_true(kurt > 3.0);
	double sd = sqrt(var), want = 0.35 / sqrt(1024.0);
	assert_true(sd > 0.8 * want && sd < 1.3 * want);
	free(w);
}

/* The layer norms carry outlier gains 20-100x the median on the same
 * channels in every layer; the final norm does not; q/k/v/gate/up shrink
 * those columns by 1/sqrt(gain). */
static void test_outlier_channels(void **state)
{
	(void)state;
	qc_config c;
	qc_synth_opts o;
	tiny(&c, &o);
	int64_t h = c.hidden_size;
	int64_t idx[128];
	int k = qc_synth_outliers(&c, &o, idx);
	assert_int_equal(k, 2); /* max(2, 128/256) */
	int64_t sh[1] = { h };
	float *g0 = make(&c, &o, "model.layers.0.input_layernorm.weight", 1, sh);
	float *g1 = make(&c, &o, "model.layers.1.post_attention_layernorm.weight", 1, sh);
	float *gf = make(&c, &o, "model.norm.weight", 1, sh);
	for (int64_t j = 0; j < h; j++) {
		int is_out = 0;
		for (int i = 0; i < k; i++)
			is_out |= idx[i] == j;
		if (is_out) {
			assert_true(g0[j] >= 20.0f && g0[j] <= 100.0f);
			assert_true(g0[j] == g1[j]);
		} else {
			assert_true(g0[j] > 0.5f && g0[j] < 1.5f);
		}
		assert_true(gf[j] > 0.5f && gf[j] < 1.5f);
	}
	/* column j of q_proj is shrunk: its mean square is about 1/gain of the rest */
	int64_t qs[2] = { c.num_attention_heads * c.head_dim, h };
	float *q = make(&c, &o, "model.layers.0.self_attn.q_proj.weight", 2, qs);
	double col = 0, rest = 0;
	for (int64_t r = 0; r < qs[0]; r++)
		for (int64_t j = 0; j < h; j++) {
			double v = (double)q[r * h + j] * q[r * h + j];
			if (j == idx[0])
				col += v;
			else
				rest += v / (double)(h - 1);
		}
	double ratio = col / rest; /* expect 1/gain, gain in [20, 100] */
	assert_true(ratio > 1.0 / 200 && ratio < 1.0 / 10);
	free(g0);
	free(g1);
	free(gf);
	free(q);
	/* --outliers 0 */
	o.outlier_channels = 0;
	float *g2 = make(&c, &o, "model.layers.0.input_layernorm.weight", 1, sh);
	for (int64_t j = 0; j < h; j++)
		assert_true(g2[j] < 1.5f);
	free(g2);
}

static void test_bf16_is_rounded_f32(void **state)
{
	(void)state;
	qc_config c;
	qc_synth_opts o;
	tiny(&c, &o);
	int64_t sh[2] = { 64, 128 };
	float *f = make(&c, &o, "model.layers.0.self_attn.v_proj.weight", 2, sh);
	o.dtype = QC_DT_BF16;
	uint16_t *b = (uint16_t *)make(&c, &o, "model.layers.0.self_attn.v_proj.weight", 2, sh);
	for (int i = 0; i < 64 * 128; i++)
		assert_int_equal(b[i], qc_f32_to_bf16(f[i]));
	free(f);
	free(b);
}

static void test_presets_and_errors(void **state)
{
	(void)state;
	qc_config c;
	assert_int_equal(qc_synth_preset("llama-3.1-8b", &c), 0);
	assert_int_equal(c.hidden_size, 4096);
	assert_int_equal(c.intermediate_size, 14336);
	assert_int_equal(c.num_hidden_layers, 32);
	assert_int_equal(c.num_key_value_heads, 8);
	assert_int_equal(c.vocab_size, 128256);
	assert_int_equal(c.tie_word_embeddings, 0);
	assert_int_equal(qc_synth_preset("llama-3.2-1b", &c), 0);
	assert_int_equal(c.tie_word_embeddings, 1);
	assert_int_equal(c.head_dim, 64);
	assert_true(c.rope_factor == 32.0);
	assert_int_equal(qc_synth_preset("llama-3.1-405b", &c), 0);
	assert_int_equal(c.intermediate_size, 53248);
	assert_int_equal(c.num_hidden_layers, 126);
	tu_assert_rc(qc_synth_preset("gpt-2", &c), QC_EINVAL);
	qc_synth_opts o;
	tiny(&c, &o);
	void *d;
	int64_t sh[1] = { 4 };
	tu_assert_rc(qc_synth_tensor(&c, &o, "model.layers.0.mlp.gate.weight", 1, sh, &d, NULL),
	             QC_EINVAL);
	o.dtype = QC_DT_I8;
	tu_assert_rc(qc_synth_tensor(&c, &o, "model.norm.weight", 1, sh, &d, NULL), QC_EINVAL);
}

/* Llama-2 and Vicuna v1.5: the values of their published config.json files
 * (meta-llama/Llama-2-7b-hf, Llama-2-13b-hf, lmsys/vicuna-7b-v1.5,
 * vicuna-13b-v1.5), checked on the preset and on the config.json qsynth
 * writes from it. */
static void test_presets_llama2(void **state)
{
	(void)state;
	static const struct {
		const char *name;
		int64_t hidden, inter, layers, heads, kv;
	} want[] = {
		{ "llama-2-7b", 4096, 11008, 32, 32, 32 },
		{ "llama-2-13b", 5120, 13824, 40, 40, 40 },
		{ "vicuna-7b", 4096, 11008, 32, 32, 32 },
		{ "vicuna-13b", 5120, 13824, 40, 40, 40 },
	};
	for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
		qc_config c;
		assert_int_equal(qc_synth_preset(want[i].name, &c), 0);
		tu_assert_rc(qc_config_build(&c), 0);
		const json_t *r = c.raw;
		assert_int_equal(json_integer_value(json_object_get(r, "hidden_size")), want[i].hidden);
		assert_int_equal(json_integer_value(json_object_get(r, "intermediate_size")), want[i].inter);
		assert_int_equal(json_integer_value(json_object_get(r, "num_hidden_layers")), want[i].layers);
		assert_int_equal(json_integer_value(json_object_get(r, "num_attention_heads")), want[i].heads);
		assert_int_equal(json_integer_value(json_object_get(r, "num_key_value_heads")), want[i].kv);
		assert_int_equal(json_integer_value(json_object_get(r, "vocab_size")), 32000);
		assert_int_equal(json_integer_value(json_object_get(r, "max_position_embeddings")), 4096);
		assert_int_equal(json_integer_value(json_object_get(r, "bos_token_id")), 1);
		assert_int_equal(json_integer_value(json_object_get(r, "eos_token_id")), 2);
		assert_true(json_real_value(json_object_get(r, "rms_norm_eps")) == 1e-5);
		assert_true(json_number_value(json_object_get(r, "rope_theta")) == 10000.0);
		assert_true(json_is_null(json_object_get(r, "rope_scaling")));
		assert_true(json_is_false(json_object_get(r, "tie_word_embeddings")));
		assert_string_equal(json_string_value(json_object_get(r, "torch_dtype")), "float16");
		assert_string_equal(json_string_value(json_object_get(r, "hidden_act")), "silu");
		assert_string_equal(json_string_value(json_object_get(r, "model_type")), "llama");
		assert_string_equal(json_string_value(json_array_get(json_object_get(r, "architectures"), 0)),
		                    "LlamaForCausalLM");
		assert_int_equal(c.head_dim, 128);
		qc_config_free(&c);
	}
	/* every listed name is a preset */
	for (const char *const *n = qc_synth_preset_names(); *n; n++) {
		qc_config c;
		tu_assert_rc(qc_synth_preset(*n, &c), 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_threads_do_not_change_values),
		cmocka_unit_test(test_seed_changes_values),
		cmocka_unit_test(test_heavy_tails),
		cmocka_unit_test(test_outlier_channels),
		cmocka_unit_test(test_bf16_is_rounded_f32),
		cmocka_unit_test(test_presets_and_errors),
		cmocka_unit_test(test_presets_llama2),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
