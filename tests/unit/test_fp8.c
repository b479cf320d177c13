/* test_fp8.c - qc_fp8: static input scales are the calibration maxima,
 * err_out is measured, the data-free and calibrated weights agree. */
#include "tutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qc_ckpt.h"
#include "qc_config.h"
#include "qc_err.h"
#include "qc_fp8.h"
#include "qc_num.h"
#include "qc_report.h"
#include "qc_synth.h"
#include "qc_tokset.h"

/* A 2-layer synthetic model (hidden 64) written to dir. */
static void make_model(const char *dir, qc_config *cfg)
{
	assert_int_equal(qc_synth_preset("tiny", cfg), 0);
	cfg->hidden_size = 64;
	cfg->intermediate_size = 128;
	cfg->head_dim = 16;
	cfg->vocab_size = 300;
	cfg->tie_word_embeddings = 0;
	cfg->bos_token_id = 1;
	cfg->eos_token_ids[0] = 2;
	tu_assert_rc(qc_config_build(cfg), 0);
	tu_write_synth(dir, cfg, 9, 2);
}

static void make_tokens(const char *path, int32_t *ids, int n, int l, int vocab)
{
	int32_t lens[8];
	for (int i = 0; i < n * l; i++)
		ids[i] = (int32_t)((i * 37 + 11) % vocab);
	for (int i = 0; i < n; i++)
		lens[i] = l;
	tu_write_tokens(path, ids, lens, n, l, vocab);
}

/* qfp8 as the tool runs it: the FP8 method through the run driver. */
static int run_fp8(const char *model, const char *tokens, const char *out, const qc_fp8_opts *o)
{
	qc_fp8 *f;
	qc_qmethod m;
	tu_assert_rc(qc_fp8_method(&f, &m, o), 0);
	qc_qrun_opts ro = { .model = model, .out = out, .calib = tokens, .threads = 2 };
	int rc = qc_qrun_run(&ro, &m);
	qc_fp8_free(f);
	return rc;
}

static float get_scalar(qc_ckpt *ck, const char *name)
{
	const qc_tensor *t;
	tu_assert_rc(qc_ckpt_get(ck, name, &t), 0);
	assert_int_equal(qc_numel(t->ndim, t->shape), 1);
	float v;
	assert_int_equal(qc_to_f32(&v, t->data, t->dtype, 1), 0);
	return v;
}

static void test_static_scales_are_calibration_maxima(void **state)
{
	(void)state;
	char *model = tu_path("m"), *tok = tu_path("t.st"), *out = tu_path("o");
	qc_config cfg;
	make_model(model, &cfg);
	int32_t ids[4 * 16];
	make_tokens(tok, ids, 4, 16, (int)cfg.vocab_size);

	qc_fp8_opts o = { 0 };
	o.act_static = 1;
	o.kv_cache = 1;
	tu_assert_rc(run_fp8(model, tok, out, &o), 0);
	qc_ckpt *in;
	qc_ckpt_opts co = { 0 };
	tu_assert_rc(qc_ckpt_open(&in, model, &co), 0);

	/* Layer 0's q/k/v input is RMSNorm(embedding) with input_layernorm:
	 * computed here from the base checkpoint alone. */
	const qc_tensor *emb, *g;
	tu_assert_rc(qc_ckpt_get(in, "model.embed_tokens.weight", &emb), 0);
	tu_assert_rc(qc_ckpt_get(in, "model.layers.0.input_layernorm.weight", &g), 0);
	int64_t h = cfg.hidden_size;
	float *row = malloc((size_t)h * sizeof *row), *gw = malloc((size_t)h * sizeof *gw);
	assert_int_equal(qc_to_f32(gw, g->data, g->dtype, (size_t)h), 0);
	float amax = 0;
	for (int t = 0; t < 4 * 16; t++) {
		assert_int_equal(qc_to_f32(row, (const uint16_t *)emb->data + (size_t)ids[t] * h,
		                           emb->dtype, (size_t)h), 0);
		double ss = 0;
		for (int64_t j = 0; j < h; j++)
			ss += (double)row[j] * row[j];
		float inv = (float)(1.0 / sqrt(ss / h + cfg.rms_norm_eps));
		for (int64_t j = 0; j < h; j++)
			amax = fmaxf(amax, fabsf(gw[j] * (row[j] * inv)));
	}
	float want = qc_round_to(amax / 448.0f, QC_DT_BF16);
	qc_ckpt *q;
	tu_assert_rc(qc_ckpt_open(&q, out, &co), 0);
	float got = get_scalar(q, "model.layers.0.self_attn.q_proj.input_scale");
	/* equal up to the last BF16 place (the FP32 norm may sum in another order) */
	assert_true(fabsf(got - want) <= want * (1.0f / 128));
	assert_true(get_scalar(q, "model.layers.0.self_attn.k_proj.input_scale") == got);
	assert_true(get_scalar(q, "model.layers.0.self_attn.v_proj.input_scale") == got);
	/* the other points and the KV-cache scales exist and are positive */
	assert_true(get_scalar(q, "model.layers.1.mlp.down_proj.input_scale") > 0);
	assert_true(get_scalar(q, "model.layers.1.self_attn.k_scale") > 0);
	assert_true(get_scalar(q, "model.layers.1.self_attn.v_scale") > 0);

	/* one report line per Linear; err_out is measured, and is also the RTN
	 * baseline */
	const void *text;
	size_t len;
	tu_assert_rc(qc_ckpt_file(q, QC_REPORT_NAME, &text, &len), 0);
	char *lines = strndup(text, len);
	int n_lines = 0;
	for (char *c = lines; *c; c++)
		n_lines += *c == '\n';
	assert_int_equal(n_lines, 14);
	assert_non_null(strstr(lines, "\"n_tokens\":64"));
	assert_null(strstr(lines, "\"err_out\":null"));
	free(lines);

	/* the weights equal the data-free run's */
	char *out2 = tu_path("o2");
	qc_fp8_opts o2 = { 0 };
	tu_assert_rc(run_fp8(model, NULL, out2, &o2), 0);
	qc_ckpt *q2;
	tu_assert_rc(qc_ckpt_open(&q2, out2, &co), 0);
	const char *w = "model.layers.1.mlp.up_proj.weight";
	const qc_tensor *a, *b;
	tu_assert_rc(qc_ckpt_get(q, w, &a), 0);
	tu_assert_rc(qc_ckpt_get(q2, w, &b), 0);
	assert_int_equal(a->dtype, QC_DT_F8_E4M3);
	assert_int_equal(a->nbytes, b->nbytes);
	assert_memory_equal(a->data, b->data, a->nbytes);

	qc_ckpt_close(q);
	qc_ckpt_close(q2);
	qc_ckpt_close(in);
	qc_config_free(&cfg);
	free(row);
	free(gw);
	free(model);
	free(tok);
	free(out);
	free(out2);
}

static void test_needs_calibration(void **state)
{
	(void)state;
	char *model = tu_path("m2"), *out = tu_path("o3");
	qc_config cfg;
	make_model(model, &cfg);
	qc_fp8_opts o = { 0 };
	o.act_static = 1;
	tu_assert_rc(run_fp8(model, NULL, out, &o), QC_EINVAL);
	assert_int_equal(access(out, F_OK), -1);
	qc_config_free(&cfg);
	free(model);
	free(out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_static_scales_are_calibration_maxima),
		cmocka_unit_test(test_needs_calibration),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
