/* test_qrun.c - the run driver (qc_qrun.h) with a method written here from
 * its hooks alone: the example of doc/design.md ("Writing a new
 * quantizer"), int8 per-channel round to nearest. Its checkpoint must equal
 * qgptq's round to nearest with the same scheme, tensor for tensor; a
 * method that claims the norms writes them itself, each exactly once; the
 * walker's hooks see every point in order. */
#include "tutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "qc_ckpt.h"
#include "qc_config.h"
#include "qc_err.h"
#include "qc_gptqm.h"
#include "qc_log.h"
#include "qc_num.h"
#include "qc_qrun.h"
#include "qc_quant.h"
#include "qc_synth.h"
#include "qc_tokset.h"

/* ---------------------------------------------------------------- the example method */

typedef struct rtn8 {
	qc_qrun *run;
	int claim_norms;        /* also write input_layernorm itself */
	int observed[QC_WALK_POINTS];
} rtn8;

static int rtn8_scheme(void *ctx, const qc_config *cfg, qc_qscheme *s, const char **name)
{
	(void)ctx;
	QC_TRY(qc_qscheme_preset(s, "w8a16"));        /* int8, one scale per channel */
	s->weights.scale_dtype = cfg->torch_dtype == QC_DT_F32 ? QC_DT_F32 : QC_DT_BF16;
	s->weights.arith = s->weights.scale_dtype;    /* round in the model's dtype */
	snprintf(s->observer, sizeof s->observer, "minmax");
	*name = "w8a16";
	return 0;
}

static int rtn8_begin(void *ctx, qc_qrun *run)
{
	((rtn8 *)ctx)->run = run;
	return 0;
}

static int rtn8_observe(void *ctx, int layer, qc_walk_point p, const float *x, int64_t row0,
                        int64_t rows, int64_t cols)
{
	(void)layer, (void)x, (void)row0, (void)cols;
	((rtn8 *)ctx)->observed[p] += (int)rows;
	return 0;
}

/* Round point p's quantized Linears: weights come as kernel memory, so
 * they are downloaded, rounded on the host, written, and their dequantized
 * values uploaded for the walk to go on with. */
static int rtn8_update(void *ctx, int layer, qc_walk_point p, qc_layer *lw)
{
	rtn8 *R = ctx;
	const qc_qargs *a = &qc_qrun_scheme(R->run)->weights;
	qc_clip_opts clip;
	qc_clip_opts_default(&clip, QC_CLIP_MINMAX);
	qc_linear first;
	int count;
	qc_walk_point_linears(p, &first, &count);
	for (int l = (int)first; l < (int)first + count; l++) {
		if (!((qc_qrun_quantized(R->run) >> l) & 1))
			continue;
		int64_t rows = lw->out[l], cols = lw->in[l];
		size_t n = (size_t)(rows * cols);
		float *W = malloc(n * sizeof *W), *deq = malloc(n * sizeof *deq);
		float *scales = malloc((size_t)rows * sizeof *scales);
		int8_t *codes = malloc(n);
		int rc = W && deq && scales && codes ? 0 : QC_ENOMEM;
		if (rc == 0)
			rc = qk_download(qc_qrun_kernels(R->run), W, lw->w[l], n * sizeof *W);
		if (rc == 0)
			rc = qc_quant_rtn(a, &clip, W, rows, cols, NULL, codes, scales, NULL, deq);
		if (rc == 0)
			rc = qc_qrun_write_linear(R->run, layer, (qc_linear)l, codes, scales, NULL, NULL);
		if (rc == 0)
			rc = qk_upload(qc_qrun_kernels(R->run), lw->w[l], deq, n * sizeof *deq);
		double err = 0, norm = 0;
		qc_sqerr(W, deq, n, &err, &norm);
		char mod[256];
		qc_linear_module(mod, sizeof mod, layer, (qc_linear)l);
		qc_report_line line = { .layer = mod, .rows = rows, .cols = cols, .err_out = NAN,
		                        .err_w = qc_rel(err, norm), .err_rtn = NAN, .seconds = 0 };
		if (rc == 0)
			rc = qc_qrun_report(R->run, &line);
		free(W);
		free(deq);
		free(scales);
		free(codes);
		QC_TRY(rc);
	}
	return 0;
}

static int rtn8_claims(void *ctx, int layer, const char *name)
{
	char want[128];
	snprintf(want, sizeof want, "model.layers.%d.input_layernorm.weight", layer);
	return ((rtn8 *)ctx)->claim_norms && strcmp(name, want) == 0;
}

/* A claimed norm is the method's to write: here unchanged, in BF16. */
static int rtn8_layer_end(void *ctx, int layer, qc_layer *lw)
{
	rtn8 *R = ctx;
	if (!R->claim_norms)
		return 0;
	int64_t h = qc_qrun_config(R->run)->hidden_size;
	float *g = malloc((size_t)h * sizeof *g);
	uint16_t *b = malloc((size_t)h * sizeof *b);
	int rc = g && b ? 0 : QC_ENOMEM;
	if (rc == 0)
		rc = qk_download(qc_qrun_kernels(R->run), g, lw->attn_norm, (size_t)h * sizeof *g);
	char name[128];
	snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", layer);
	if (rc == 0) {
		qc_from_f32(b, QC_DT_BF16, g, (size_t)h);
		rc = qc_qrun_write_tensor(R->run, name, QC_DT_BF16, 1, &h, b);
	}
	free(g);
	free(b);
	return rc;
}

static qc_qmethod rtn8_method(rtn8 *R)
{
	return (qc_qmethod){ .tool = "rtn8", .ctx = R, .scheme = rtn8_scheme, .begin = rtn8_begin,
	                     .observe = rtn8_observe, .update = rtn8_update,
	                     .claims = rtn8_claims, .layer_end = rtn8_layer_end };
}

/* ---------------------------------------------------------------- fixtures */

static void make_model(const char *dir, qc_config *cfg)
{
	assert_int_equal(qc_synth_preset("tiny", cfg), 0);
	cfg->num_hidden_layers = 2;
	tu_assert_rc(qc_config_build(cfg), 0);
	tu_write_synth(dir, cfg, 3, 2);
}

static void make_tokens(const char *path, int vocab)
{
	int32_t ids[4 * 24], lens[4] = { 24, 24, 10, 24 };
	for (int i = 0; i < 4 * 24; i++)
		ids[i] = (int32_t)((i * 37 + 11) % vocab);
	tu_write_tokens(path, ids, lens, 4, 24, vocab);
}

/* Every tensor of a equals b's of the same name, with the same count. */
static void assert_same_tensors(const char *a, const char *b)
{
	qc_ckpt *ca, *cb;
	tu_assert_rc(qc_ckpt_open(&ca, a, NULL), 0);
	tu_assert_rc(qc_ckpt_open(&cb, b, NULL), 0);
	const char *const *na, *const *nb;
	size_t n, m;
	tu_assert_rc(qc_ckpt_tensor_names(ca, &na, &n), 0);
	tu_assert_rc(qc_ckpt_tensor_names(cb, &nb, &m), 0);
	assert_int_equal(n, m);
	for (size_t i = 0; i < n; i++) {
		const qc_tensor *x, *y;
		tu_assert_rc(qc_ckpt_get(ca, na[i], &x), 0);
		tu_assert_rc(qc_ckpt_get(cb, na[i], &y), 0);
		assert_int_equal(x->dtype, y->dtype);
		assert_int_equal(x->nbytes, y->nbytes);
		if (memcmp(x->data, y->data, x->nbytes) != 0)
			fail_msg("tensor '%s' differs between '%s' and '%s'", na[i], a, b);
	}
	qc_ckpt_close(ca);
	qc_ckpt_close(cb);
}

/* ---------------------------------------------------------------- tests */

static void test_example_method_equals_qgptq_rtn(void **state)
{
	(void)state;
	char *model = tu_path("m"), *o1 = tu_path("rtn8"), *o2 = tu_path("gptq-rtn");
	qc_config cfg;
	make_model(model, &cfg);
	rtn8 R = { 0 };
	qc_qmethod m = rtn8_method(&R);
	qc_qrun_opts ro = { .model = model, .out = o1, .threads = 2 };
	tu_assert_rc(qc_qrun_run(&ro, &m), 0);

	qc_gptqm_opts go = { .scheme = "w8a16", .sym = -1 };
	qc_gptq_opts_default(&go.go);
	go.go.method = QC_GPTQ_METHOD_RTN;
	qc_clip_opts_default(&go.go.clip, QC_CLIP_MINMAX);
	qc_gptqm *g;
	qc_qmethod gm;
	tu_assert_rc(qc_gptqm_method(&g, &gm, &go), 0);
	ro.out = o2;
	tu_assert_rc(qc_qrun_run(&ro, &gm), 0);
	qc_gptqm_free(g);
	assert_same_tensors(o1, o2);
	qc_config_free(&cfg);
	free(model);
	free(o1);
	free(o2);
}

static void test_claimed_tensors_and_walker_points(void **state)
{
	(void)state;
	char *model = tu_path("m2"), *tok = tu_path("t.st"), *o1 = tu_path("claim"),
	     *o2 = tu_path("noclaim");
	qc_config cfg;
	make_model(model, &cfg);
	make_tokens(tok, (int)cfg.vocab_size);
	rtn8 R = { .claim_norms = 1 };
	qc_qmethod m = rtn8_method(&R);
	qc_qrun_opts ro = { .model = model, .out = o1, .calib = tok, .threads = 2 };
	tu_assert_rc(qc_qrun_run(&ro, &m), 0);
	/* every point of both layers saw every token (4 rows, 82 tokens) */
	for (int p = 0; p < QC_WALK_POINTS; p++)
		assert_int_equal(R.observed[p], 2 * 82);
	/* the claimed norms were written by the method, once each (a tensor
	 * written twice fails the writer), and equal the driver's copy */
	rtn8 R2 = { 0 };
	m = rtn8_method(&R2);
	ro.out = o2;
	tu_assert_rc(qc_qrun_run(&ro, &m), 0);
	assert_same_tensors(o1, o2);
	qc_config_free(&cfg);
	free(model);
	free(tok);
	free(o1);
	free(o2);
}

/* A method whose scheme fails stops the run before anything is written. */
static int bad_scheme(void *ctx, const qc_config *cfg, qc_qscheme *s, const char **name)
{
	(void)ctx, (void)cfg, (void)name;
	return qc_qscheme_preset(s, "w3a16");
}

static void test_failure_leaves_nothing(void **state)
{
	(void)state;
	char *model = tu_path("m3"), *out = tu_path("never");
	qc_config cfg;
	make_model(model, &cfg);
	qc_qmethod m = { .tool = "bad", .scheme = bad_scheme };
	qc_qrun_opts ro = { .model = model, .out = out, .threads = 1 };
	tu_assert_rc(qc_qrun_run(&ro, &m), QC_EINVAL);
	char *partial = tu_path("never.partial");
	assert_null(fopen(out, "r"));
	assert_null(fopen(partial, "r"));
	qc_config_free(&cfg);
	free(model);
	free(out);
	free(partial);
}

int main(void)
{
	qc_log_set_level(QC_LOG_QUIET);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_example_method_equals_qgptq_rtn),
		cmocka_unit_test(test_claimed_tensors_and_walker_points),
		cmocka_unit_test(test_failure_leaves_nothing),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
