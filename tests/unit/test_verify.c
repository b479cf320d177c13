/* test_verify.c - qverify's checks (qc_verify) on checkpoints written to
 * disk by the toolkit's writer: a model against itself, an RTN-quantized
 * artifact against its base, thresholds, a flipped byte, a truncated shard,
 * missing, unexpected and out-of-range tensors. */
#include "tutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "qc_ckpt.h"
#include "qc_config.h"
#include "qc_err.h"
#include "qc_st.h"
#include "qc_tokset.h"
#include "qc_verify.h"
#include "tmodel.h"

static qk_ctx *kc;

static int setup(void **state)
{
	(void)state;
	return qk_ctx_new(&kc, QK_DEVICE_CPU, 2);
}

static int teardown(void **state)
{
	(void)state;
	qk_ctx_free(kc);
	return 0;
}

static const char *const int4_config =
	"{\"config_groups\": {\"group_0\": {\"input_activations\": null, \"output_activations\": null, "
	"\"targets\": [\"Linear\"], \"weights\": {\"actorder\": null, \"block_structure\": null, "
	"\"dynamic\": false, \"group_size\": 16, \"num_bits\": 4, \"observer\": \"minmax\", "
	"\"observer_kwargs\": {}, \"strategy\": \"group\", \"symmetric\": true, \"type\": \"int\"}}}, "
	"\"format\": \"naive-quantized\", \"global_compression_ratio\": null, \"ignore\": [\"lm_head\"], "
	"\"kv_cache_scheme\": null, \"quant_method\": \"compressed-tensors\", \"quantization_status\": "
	"\"compressed\", \"sparsity_config\": {}, \"transform_config\": {}, \"version\": \"0.12.2\"}";

static void model_cfg(qc_config *c)
{
	tm_config(c, 32, 64, 2, 4, 2, 8, 45, 0);
}

/* write tm as a checkpoint directory, one shard per layer (embeddings in
 * the first, final norm and lm_head in the last); qconfig: the
 * quantization_config JSON or NULL; skip: a tensor left out, or NULL */
static const char *base_fp;   /* recorded as the artifact's base when set */

static void save(tm_model *tm, const char *dir, const char *qconfig, const char *skip)
{
	qc_config cfg = tm->cfg;
	cfg.raw = NULL;
	tu_assert_rc(qc_config_build(&cfg), 0);
	if (qconfig)
		json_object_set_new(cfg.raw, "quantization_config", json_loads(qconfig, 0, NULL));
	char *text;
	size_t len;
	tu_assert_rc(qc_config_dump(&cfg, &text, &len), 0);
	qc_config_free(&cfg);
	int L = (int)tm->cfg.num_hidden_layers;
	char *args[] = { "test_verify" };
	qc_ckw_opts o = { .n_shards = L, .force = 1, .tool = "test_verify", .version = "0",
	                  .argc = 1, .argv = args };
	qc_ckpt_writer *w;
	tu_assert_rc(qc_ckw_open(&w, dir, &o), 0);
	tu_assert_rc(qc_ckw_add_file(w, "config.json", text, len), 0);
	free(text);
	if (base_fp)
		tu_assert_rc(qc_ckw_set_base(w, base_fp, "base"), 0);
	for (int l = 0; l < L; l++) {
		for (size_t i = 0; i < tm->n; i++) {
			const qc_tensor *t = &tm->t[i];
			int g = qc_ckpt_group_of(t->name);
			int here = g == l || (l == 0 && g == QC_GROUP_PRE) || (l == L - 1 && g == QC_GROUP_POST);
			if (!here || (skip && strcmp(t->name, skip) == 0))
				continue;
			tu_assert_rc(qc_ckw_add_tensor(w, t->name, t->dtype, t->ndim, t->shape, t->data, 0), 0);
		}
		tu_assert_rc(qc_ckw_end_shard(w, l == L - 1 ? QC_GROUP_POST : l), 0);
	}
	tu_assert_rc(qc_ckw_close(w), 0);
}

static char *tokens_file(int64_t V)
{
	enum { N = 3, LEN = 16 };
	static int32_t ids[N * LEN];
	int32_t lens[N] = { 16, 10, 7 };
	for (int i = 0; i < N; i++)
		for (int j = 0; j < LEN; j++)
			ids[i * LEN + j] = j < lens[i] ? (int32_t)((i * 17 + j * 5 + 1) % V) : 0;
	qc_tokset_spec s = { .n = N, .l = LEN, .ids = ids, .lengths = lens, .vocab_size = V,
	                     .pad_id = 0, .bos_id = -1, .eos_id = -1, .sources = "[]", .options = "{}" };
	char *p = tu_path("tokens.st");
	tu_assert_rc(qc_tokset_save(&s, p), 0);
	return p;
}

static double jget(const json_t *o, const char *a, const char *b)
{
	return json_number_value(json_object_get(json_object_get(o, a), b));
}

static const char *jstr(const json_t *o, const char *a, const char *b)
{
	return json_string_value(json_object_get(json_object_get(o, a), b));
}

/* the base model, its RTN-quantized artifact, and a token set, written once */
static char *base_dir, *q_dir, *tok;

static void make_fixtures(void)
{
	if (base_dir)
		return;
	qc_config cfg;
	model_cfg(&cfg);
	tm_model tm;
	tm_make(&tm, &cfg, QC_DT_F32, 1);
	base_dir = tu_path("base");
	save(&tm, base_dir, NULL, NULL);
	tm_qspec q4 = { 4, 0, 2, 16, 1, QC_DT_BF16, 0 };
	tm_quantize(&tm, &q4);
	q_dir = tu_path("q4");
	/* the artifact records the base's fingerprint, as the quantizers do */
	qc_ckpt *ck;
	static char fp[33];
	tu_assert_rc(qc_ckpt_open(&ck, base_dir, NULL), 0);
	tu_assert_rc(qc_ckpt_fingerprint(ck, fp), 0);
	qc_ckpt_close(ck);
	base_fp = fp;
	save(&tm, q_dir, int4_config, NULL);
	base_fp = NULL;
	tm_free(&tm);
	tok = tokens_file(45);
}

static void test_self(void **state)
{
	(void)state;
	make_fixtures();
	qc_verify_opts o;
	qc_verify_opts_default(&o);
	o.kc = kc;
	o.base = base_dir;
	o.tokens = tok;
	o.max_kl = 0;
	o.min_top1 = 1;
	o.max_ppl_ratio = 1;
	json_t *r;
	tu_assert_rc(qc_verify(base_dir, &o, &r), 0);
	assert_string_equal(json_string_value(json_object_get(r, "verdict")), "pass");
	assert_string_equal(jstr(r, "integrity", "manifest"), "verified");
	assert_true(json_is_true(json_object_get(json_object_get(r, "integrity"), "ok")));
	assert_int_equal((int)jget(r, "integrity", "linears"), 15);    /* 2 x 7 + lm_head */
	assert_true(jget(r, "numerics", "err_w_max") == 0);
	assert_string_equal(jstr(r, "numerics", "base_fingerprint"), "matches");
	/* the first bar: KL 0, top-1 1.0, PPL ratio 1.0 */
	assert_true(jget(r, "function", "kl_mean") == 0);
	assert_true(jget(r, "function", "top1") == 1);
	assert_true(jget(r, "function", "ppl_ratio") == 1);
	json_decref(r);
	/* thresholds without a base are refused */
	o.base = NULL;
	tu_assert_rc(qc_verify(base_dir, &o, &r), QC_EINVAL);
	assert_null(r);
	/* integrity alone */
	qc_verify_opts_default(&o);
	o.kc = kc;
	tu_assert_rc(qc_verify(base_dir, &o, &r), 0);
	assert_true(json_is_null(json_object_get(r, "numerics")));
	assert_true(json_is_null(json_object_get(r, "function")));
	json_decref(r);
}

static void test_quantized(void **state)
{
	(void)state;
	make_fixtures();
	qc_verify_opts o;
	qc_verify_opts_default(&o);
	o.kc = kc;
	o.base = base_dir;
	o.tokens = tok;
	json_t *r;
	tu_assert_rc(qc_verify(q_dir, &o, &r), 0);
	assert_int_equal((int)jget(r, "integrity", "quantized_linears"), 14);
	assert_string_equal(jstr(r, "integrity", "manifest"), "verified");
	json_t *sch = json_object_get(json_object_get(r, "integrity"), "scheme");
	assert_string_equal(json_string_value(json_object_get(sch, "weights")), "int4 group 16 symmetric");
	double ew = jget(r, "numerics", "err_w_max"), kl = jget(r, "function", "kl_mean");
	print_message("int4: err_w max %.3g, kl %.3g, top1 %.3f\n", ew, kl, jget(r, "function", "top1"));
	assert_true(ew > 1e-4 && ew < 0.05);   /* int4 RTN on Gaussian weights: about 1 % */
	assert_true(kl > 0);
	/* the ignored lm_head is exactly the base's */
	json_t *lin = json_object_get(json_object_get(r, "numerics"), "linears");
	json_t *last = json_array_get(lin, json_array_size(lin) - 1);
	assert_string_equal(json_string_value(json_object_get(last, "name")), "lm_head");
	assert_true(json_number_value(json_object_get(last, "err_w")) == 0);
	assert_string_equal(jstr(r, "numerics", "base_fingerprint"), "matches");
	json_decref(r);
	/* thresholds: a KL bound it cannot meet fails, naming it */
	o.max_kl = kl / 2;
	o.max_ppl_ratio = 100;
	tu_assert_rc(qc_verify(q_dir, &o, &r), QC_EINTEGRITY);
	assert_non_null(strstr(qc_errmsg(), "kl_mean"));
	assert_string_equal(json_string_value(json_object_get(r, "verdict")), "fail");
	assert_int_equal(json_array_size(json_object_get(r, "failures")), 1);
	json_decref(r);
	o.max_kl = kl * 2;
	tu_assert_rc(qc_verify(q_dir, &o, &r), 0);
	json_decref(r);
}

/* byte offset in the file of tensor `name`'s data in shard `path` */
static long tensor_offset(const char *path, const char *name)
{
	qc_st *st;
	tu_assert_rc(qc_st_open(&st, path), 0);
	const qc_tensor *t = qc_st_find(st, name), *t0 = qc_st_at(st, 0);
	assert_non_null(t);
	long off = (long)qc_st_header_size(st) + (long)((const char *)t->data - (const char *)t0->data);
	qc_st_close(st);
	return off;
}

static void copy_dir(const char *from, const char *to)
{
	char cmd[9000];
	snprintf(cmd, sizeof cmd, "rm -rf '%s' && cp -r '%s' '%s'", to, from, to);
	assert_int_equal(system(cmd), 0);
}

static void test_flipped_byte(void **state)
{
	(void)state;
	make_fixtures();
	char *d = tu_path("flipped");
	copy_dir(q_dir, d);
	char *shard = tu_path("flipped/model-00002-of-00002.safetensors");
	const char *name = "model.layers.1.mlp.up_proj.weight";
	long off = tensor_offset(shard, name) + 5;
	size_t len;
	unsigned char *b = tu_read(shard, &len);
	b[off] ^= 0x01;   /* still a valid int4 code: only the hash can tell */
	tu_write(shard, b, len);
	free(b);
	qc_verify_opts o;
	qc_verify_opts_default(&o);
	o.kc = kc;
	o.base = base_dir;
	o.tokens = tok;
	json_t *r;
	tu_assert_rc(qc_verify(d, &o, &r), QC_EINTEGRITY);
	assert_non_null(strstr(qc_errmsg(), name));
	assert_string_equal(jstr(r, "integrity", "manifest"), "mismatch");
	assert_true(json_is_null(json_object_get(r, "function")));
	assert_int_equal(json_array_size(json_object_get(r, "skipped")), 1);
	json_decref(r);
	/* truncated: cannot verify at all */
	b = tu_read(shard, &len);
	tu_write(shard, b, len - 100);
	free(b);
	tu_assert_rc(qc_verify(d, &o, &r), QC_EFORMAT);
	assert_null(r);
	free(shard);
	free(d);
}

static void test_tensor_findings(void **state)
{
	(void)state;
	make_fixtures();
	qc_config cfg;
	model_cfg(&cfg);
	tm_model tm;
	tm_make(&tm, &cfg, QC_DT_F32, 1);
	tm_qspec q4 = { 4, 0, 2, 16, 1, QC_DT_BF16, 0 };
	tm_quantize(&tm, &q4);
	qc_verify_opts o;
	qc_verify_opts_default(&o);
	o.kc = kc;
	json_t *r;
	char *d = tu_path("broken");
	/* a scale left out */
	save(&tm, d, int4_config, "model.layers.0.self_attn.k_proj.weight_scale");
	tu_assert_rc(qc_verify(d, &o, &r), QC_EINTEGRITY);
	assert_non_null(strstr(qc_errmsg(), "model.layers.0.self_attn.k_proj.weight_scale' is missing"));
	json_decref(r);
	/* an int4 code out of range (the manifest is consistent: written so) */
	qc_tensor *t = (qc_tensor *)tm_find(&tm, "model.layers.1.self_attn.o_proj.weight");
	((int8_t *)t->data)[3] = 12;
	save(&tm, d, int4_config, NULL);
	tu_assert_rc(qc_verify(d, &o, &r), QC_EINTEGRITY);
	assert_non_null(strstr(qc_errmsg(), "o_proj.weight' holds code 12 outside [-8, 7]"));
	assert_string_equal(jstr(r, "integrity", "manifest"), "verified");
	json_decref(r);
	((int8_t *)t->data)[3] = 1;
	/* a tensor nothing accounts for */
	int64_t sh = 4;
	float z[4] = { 0 };
	tm_put(&tm, "model.layers.0.mlp.extra_scale", QC_DT_F32, 1, &sh, z);
	save(&tm, d, int4_config, NULL);
	tu_assert_rc(qc_verify(d, &o, &r), QC_EINTEGRITY);
	assert_non_null(strstr(qc_errmsg(), "unexpected tensor 'model.layers.0.mlp.extra_scale'"));
	json_decref(r);
	tm_remove(&tm, "model.layers.0.mlp.extra_scale");
	/* the config says dense, the tensors are codes */
	save(&tm, d, NULL, NULL);
	tu_assert_rc(qc_verify(d, &o, &r), QC_EINTEGRITY);
	assert_true(jget(r, "integrity", "findings_total") >= 14);
	assert_non_null(strstr(qc_errmsg(), "does not quantize"));
	json_decref(r);
	save(&tm, d, int4_config, NULL);
	/* an artifact that records another base: reported, not a failure */
	o.base = base_dir;
	tu_assert_rc(qc_verify(d, &o, &r), 0);
	assert_string_equal(jstr(r, "numerics", "base_fingerprint"), "differs");
	json_decref(r);
	/* a base of another shape cannot be compared */
	qc_config other;
	tm_config(&other, 32, 64, 1, 4, 2, 8, 45, 0);
	tm_model tb;
	tm_make(&tb, &other, QC_DT_F32, 2);
	char *bd = tu_path("other");
	save(&tb, bd, NULL, NULL);
	o.base = bd;
	tu_assert_rc(qc_verify(d, &o, &r), QC_EINVAL);
	assert_non_null(strstr(qc_errmsg(), "not the same architecture"));
	assert_null(r);
	tm_free(&tb);
	tm_free(&tm);
	free(bd);
	free(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_self),
		cmocka_unit_test(test_quantized),
		cmocka_unit_test(test_flipped_byte),
		cmocka_unit_test(test_tensor_findings),
	};
	int rc = cmocka_run_group_tests(tests, setup, teardown);
	free(base_dir);
	free(q_dir);
	free(tok);
	return rc;
}
