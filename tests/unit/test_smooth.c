/* test_smooth.c - qsmooth's scales against a plain computation of the
 * SmoothQuant formula written here from the base checkpoint alone: layer
 * 0's q/k/v input is RMSNorm(embedding) with input_layernorm, so its
 * per-channel maxima need no forward pass; the smoothed norm and q/k/v
 * weights must be the base ones divided and multiplied by exactly those
 * scales (powers of two: no rounding anywhere). */
#include "tutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "qc_ckpt.h"
#include "qc_config.h"
#include "qc_err.h"
#include "qc_log.h"
#include "qc_num.h"
#include "qc_quant.h"
#include "qc_rng.h"
#include "qc_qscheme.h"
#include "qc_smooth.h"
#include "qc_synth.h"

#define NSEQ 4
#define LEN 16

/* all of a tensor as FP32 (malloc'd) */
static float *values(qc_ckpt *ck, const char *name, size_t *n)
{
	const qc_tensor *t;
	tu_assert_rc(qc_ckpt_get(ck, name, &t), 0);
	*n = (size_t)qc_numel(t->ndim, t->shape);
	float *v = malloc(*n * sizeof *v);
	assert_non_null(v);
	tu_assert_rc(qc_to_f32(v, t->data, t->dtype, *n), 0);
	return v;
}

/* s_j = max(a_j^alpha / max(w_j, 1e-5)^(1 - alpha), 1e-5), to the nearest
 * power of two in the log domain: the formula, in double, in plain loops */
static double ref_scale(double a, double w, double alpha)
{
	if (w < 1e-5)
		w = 1e-5;
	double s = pow(a, alpha) / pow(w, 1 - alpha);
	if (s < 1e-5)
		s = 1e-5;
	return ldexp(1.0, (int)lround(log2(s)));
}

static void test_layer0_scales(void **state)
{
	(void)state;
	qc_config cfg;
	assert_int_equal(qc_synth_preset("tiny", &cfg), 0);
	cfg.num_hidden_layers = 2;
	tu_assert_rc(qc_config_build(&cfg), 0);
	char *model = tu_path("m"), *tok = tu_path("t.st"), *out = tu_path("s");
	tu_write_synth(model, &cfg, 21, 2);
	int32_t ids[NSEQ * LEN], lens[NSEQ];
	for (int i = 0; i < NSEQ * LEN; i++)
		ids[i] = (int32_t)((i * 53 + 7) % cfg.vocab_size);
	for (int i = 0; i < NSEQ; i++)
		lens[i] = LEN;
	tu_write_tokens(tok, ids, lens, NSEQ, LEN, (int)cfg.vocab_size);

	qc_smooth_opts so = { .alpha = 0.5 };
	qc_smooth *sm;
	qc_qmethod m;
	tu_assert_rc(qc_smooth_method(&sm, &m, &so), 0);
	qc_qrun_opts ro = { .model = model, .out = out, .calib = tok, .threads = 2 };
	tu_assert_rc(qc_qrun_run(&ro, &m), 0);
	qc_smooth_free(sm);

	qc_ckpt *base, *sm_ck;
	tu_assert_rc(qc_ckpt_open(&base, model, NULL), 0);
	tu_assert_rc(qc_ckpt_open(&sm_ck, out, NULL), 0);
	int64_t H = cfg.hidden_size;
	size_t n, ne;
	float *g = values(base, "model.layers.0.input_layernorm.weight", &n);
	float *g2 = values(sm_ck, "model.layers.0.input_layernorm.weight", &n);
	float *emb = values(base, "model.embed_tokens.weight", &ne);
	/* a_j over every token */
	double *a = calloc((size_t)H, sizeof *a);
	for (int t = 0; t < NSEQ * LEN; t++) {
		const float *e = emb + (size_t)ids[t] * H;
		double ss = 0;
		for (int64_t j = 0; j < H; j++)
			ss += (double)e[j] * e[j];
		double inv = 1.0 / sqrt(ss / H + cfg.rms_norm_eps);
		for (int64_t j = 0; j < H; j++)
			a[j] = fmax(a[j], fabs((double)g[j] * ((double)e[j] * inv)));
	}
	/* w_j over q, k, v */
	static const char *const qkv[3] = { "q_proj", "k_proj", "v_proj" };
	double *w = calloc((size_t)H, sizeof *w);
	float *W[3], *W2[3];
	size_t nw[3];
	for (int k = 0; k < 3; k++) {
		char name[128];
		snprintf(name, sizeof name, "model.layers.0.self_attn.%s.weight", qkv[k]);
		W[k] = values(base, name, &nw[k]);
		W2[k] = values(sm_ck, name, &nw[k]);
		for (size_t i = 0; i < nw[k]; i++)
			w[i % (size_t)H] = fmax(w[i % (size_t)H], fabs((double)W[k][i]));
	}
	int moved = 0;
	for (int64_t j = 0; j < H; j++) {
		double s = ref_scale(a[j], w[j], 0.5);
		if (g[j] != 0)
			assert_true((double)g[j] / g2[j] == s);
		moved += s != 1.0;
		for (int k = 0; k < 3; k++)
			for (size_t r = 0; r < nw[k] / (size_t)H; r++)
				assert_true((double)W2[k][r * H + j] == (double)W[k][r * H + j] * s);
	}
	assert_true(moved > H / 2);   /* the smoothing did something */
	for (int k = 0; k < 3; k++) {
		free(W[k]);
		free(W2[k]);
	}
	free(a);
	free(w);
	free(g);
	free(g2);
	free(emb);
	qc_ckpt_close(base);
	qc_ckpt_close(sm_ck);
	qc_config_free(&cfg);
	free(model);
	free(tok);
	free(out);
}

static void test_formula(void **state)
{
	(void)state;
	float am[5] = { 0, 1e-3f, 3, 100, 7 }, wm[5] = { 2, 0, 0.5f, 0.01f, 7 }, s[5], p[5];
	qc_smooth_scales(am, wm, 5, 0.7, 0, s);
	qc_smooth_scales(am, wm, 5, 0.7, 1, p);
	for (int j = 0; j < 5; j++) {
		double w = wm[j] < 1e-5 ? 1e-5 : wm[j];
		double want = fmax(pow(am[j], 0.7) / pow(w, 0.3), 1e-5);
		assert_true(fabs(s[j] - want) <= 1e-6 * want);
		assert_true(p[j] == (float)ref_scale(am[j], wm[j], 0.7));
	}
}

/* qk_q8_rows, the kernel of the W8A8 error, against qc_quant's int8
 * per-channel round to nearest (qc_qparams and qc_qdq with the w8a8 preset's
 * weights in FP32), with and without column scales, on rows with outliers
 * and an all-zero row. */
static void test_q8_rows(void **state)
{
	(void)state;
	qk_ctx *kc;
	tu_assert_rc(qk_ctx_new(&kc, QK_DEVICE_CPU, 2), 0);
	enum { R = 37, C = 203 };
	float *w = malloc(sizeof(float) * R * C), *ref = malloc(sizeof(float) * R * C);
	float s[C];
	qc_rng rng;
	qc_rng_seed(&rng, 5);
	for (int i = 0; i < R * C; i++)
		w[i] = (float)qc_rng_normal(&rng) * (i % 17 == 0 ? 40.0f : 1.0f);
	for (int c = 0; c < C; c++)
		w[3 * C + c] = 0;
	for (int c = 0; c < C; c++)
		s[c] = ldexpf(1.0f, (int)(c % 9) - 4);
	qc_qscheme sc;
	tu_assert_rc(qc_qscheme_preset(&sc, "w8a8"), 0);
	qc_qargs a = sc.weights;
	a.scale_dtype = QC_DT_F32;
	a.arith = QC_DT_F32;
	for (int scaled = 0; scaled < 2; scaled++) {
		for (int r = 0; r < R; r++) {
			float *x = ref + r * C, amax = 0, scale, z;
			for (int c = 0; c < C; c++) {
				x[c] = w[r * C + c] * (scaled ? s[c] : 1.0f);
				amax = fmaxf(amax, fabsf(x[c]));
			}
			qc_qparams(&a, -amax, amax, &scale, &z);
			for (int c = 0; c < C; c++)
				x[c] = qc_qdq(&a, x[c], scale, 0);
		}
		float *d = qk_alloc(kc, sizeof(float) * R * C), *got = malloc(sizeof(float) * R * C);
		tu_assert_rc(qk_upload(kc, d, w, sizeof(float) * R * C), 0);
		tu_assert_rc(qk_q8_rows(kc, d, R, C, scaled ? s : NULL), 0);
		tu_assert_rc(qk_download(kc, got, d, sizeof(float) * R * C), 0);
		assert_memory_equal(got, ref, sizeof(float) * R * C);
		qk_free(kc, d);
		free(got);
	}
	qc_qscheme_free(&sc);
	free(w);
	free(ref);
	qk_ctx_free(kc);
}

int main(void)
{
	qc_log_set_level(QC_LOG_QUIET);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_formula),
		cmocka_unit_test(test_q8_rows),
		cmocka_unit_test(test_layer0_scales),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
