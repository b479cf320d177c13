/* test_decode.c - KV-cache decoding (qc_decode.h) against recomputing the
 * whole sequence with qc_model_forward at every step, for every artifact
 * format the runtime reads (dense, naive int4 groups, packed int4, FP8
 * weights with FP8 per-token inputs, W8A8 int8 with per-token inputs, static
 * per-tensor FP8 inputs); scores against the forward pass's log-softmax;
 * rewinding, seeded sampling, stop tokens, capacity; Gemma and Gemma 2
 * (sliding window, soft-capping) past the window. */
#include "tutil.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "qc_decode.h"
#include "qc_err.h"
#include "qc_model.h"
#include "tmodel.h"

#define STEPS 64
#define PROMPT 8

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

#define WARGS(bits, type, strategy, group, sym)                                                    \
	"{\"dynamic\": false, \"group_size\": " group ", \"num_bits\": " #bits ", \"strategy\": \""  \
	strategy "\", \"symmetric\": " sym ", \"type\": \"" type "\"}"

static qc_ctq *ctq_from(const char *format, const char *weights, const char *inputs)
{
	char buf[2048];
	snprintf(buf, sizeof buf,
	         "{\"quantization_config\": {\"quant_method\": \"compressed-tensors\", \"format\": "
	         "\"%s\", \"ignore\": [\"lm_head\"], \"config_groups\": {\"group_0\": {\"targets\": "
	         "[\"Linear\"], \"weights\": %s, \"input_activations\": %s}}}}",
	         format, weights, inputs);
	json_t *j = json_loads(buf, 0, NULL);
	assert_non_null(j);
	qc_ctq *q;
	tu_assert_rc(qc_ctq_from_config(&q, j), 0);
	json_decref(j);
	return q;
}

static void small_config(qc_config *cfg)
{
	/* GQA, untied, head_dim * heads != hidden: the cache's kv width */
	tm_config(cfg, 48, 96, 2, 4, 2, 16, 89, 0);
}

/* greedy with the cache vs argmax of the last row of a full forward pass */
static void check_greedy(qc_model *m, const char *what, int want_packed)
{
	int64_t V = qc_model_config(m)->vocab_size;
	qc_decoder *d;
	tu_assert_rc(qc_decoder_new(&d, m, PROMPT + STEPS), 0);
	/* int4 weight-only Linears run on their codes (qk_linear_q4) */
	int packed;
	int64_t bytes;
	qc_decoder_weights(d, &packed, &bytes);
	print_message("%s: %d Linears packed, %lld weight bytes a step\n", what, packed, (long long)bytes);
	assert_int_equal(packed, want_packed);
	int32_t seq[PROMPT + STEPS];
	for (int i = 0; i < PROMPT; i++)
		seq[i] = (int32_t)((i * 37 + 5) % V);
	qc_gen_opts o = { .max_new = STEPS };
	int64_t n;
	int stopped;
	tu_assert_rc(qc_decoder_generate(d, seq, PROMPT, &o, seq + PROMPT, &n, &stopped), 0);
	assert_int_equal(n, STEPS);
	assert_int_equal(stopped, 0);
	/* the prompt and every generated token but the last are in the cache */
	assert_int_equal(qc_decoder_pos(d), PROMPT + STEPS - 1);
	float *lg = malloc(sizeof(float) * (size_t)((PROMPT + STEPS) * V));
	int distinct = 0;
	for (int s = 0; s < STEPS; s++) {
		int64_t len = PROMPT + s;
		tu_assert_rc(qc_model_forward(m, seq, &len, 1, lg, QC_OUT_LOGITS), 0);
		int32_t want = qc_argmax(lg + (len - 1) * V, V);
		if (want != seq[len])
			print_message("%s: step %d: cache gave %d, recomputing %d\n", what, s, seq[len], want);
		assert_int_equal(want, seq[len]);
		distinct += s > 0 && seq[len] != seq[len - 1];
	}
	print_message("%s: %d greedy steps agree (%d changes of token)\n", what, STEPS, distinct);
	assert_true(distinct > 0);     /* not a constant sequence */
	free(lg);
	qc_decoder_free(d);
}

static void run_format(const char *what, const tm_qspec *qs, const char *format,
                       const char *wargs, const char *iargs)
{
	/* 2 layers of 7 Linears, packed when int4 */
	int want = qs && qs->bits == 4 ? 14 : 0;
	qc_config cfg;
	small_config(&cfg);
	tm_model tm;
	tm_make(&tm, &cfg, QC_DT_F32, 21);
	qc_ctq *q = NULL;
	if (qs) {
		tm_quantize(&tm, qs);
		q = ctq_from(format, wargs, iargs);
	}
	qc_model *m;
	tu_assert_rc(qc_model_new(&m, &cfg, &tm.src, q, kc, NULL), 0);
	check_greedy(m, what, want);
	qc_model_free(m);
	qc_ctq_free(q);
	assert_int_equal(tm.gets, tm.releases);
	tm_free(&tm);
}

#define IN_FP8_TOKEN "{\"dynamic\": true, \"num_bits\": 8, \"strategy\": \"token\", " \
	"\"symmetric\": true, \"type\": \"float\"}"
#define IN_INT8_TOKEN "{\"dynamic\": true, \"num_bits\": 8, \"strategy\": \"token\", " \
	"\"symmetric\": true, \"type\": \"int\"}"

static void test_greedy_dense(void **state)
{
	(void)state;
	run_format("dense f32", NULL, NULL, NULL, NULL);
}

static void test_greedy_naive_int4(void **state)
{
	(void)state;
	tm_qspec q4 = { 4, 0, 2, 16, 1, QC_DT_BF16, 0 };
	run_format("naive int4 g16", &q4, "naive-quantized", WARGS(4, "int", "group", "16", "true"),
	           "null");
}

static void test_greedy_packed_int4(void **state)
{
	(void)state;
	tm_qspec q4 = { 4, 0, 2, 16, 0, QC_DT_BF16, 1 };
	run_format("packed int4 g16 asym", &q4, "pack-quantized",
	           WARGS(4, "int", "group", "16", "false"), "null");
	tm_qspec c4 = { 4, 0, 1, 0, 1, QC_DT_F32, 1 };
	run_format("packed int4 channel", &c4, "pack-quantized",
	           WARGS(4, "int", "channel", "null", "true"), "null");
}

static void test_greedy_fp8(void **state)
{
	(void)state;
	tm_qspec f8 = { 8, 1, 1, 0, 1, QC_DT_BF16, 0 };
	run_format("fp8 channel, fp8 token inputs", &f8, "float-quantized",
	           WARGS(8, "float", "channel", "null", "true"), IN_FP8_TOKEN);
	tm_qspec f8t = { 8, 1, 0, 0, 1, QC_DT_F32, 0 };
	run_format("fp8 tensor (fused like vLLM)", &f8t, "float-quantized",
	           WARGS(8, "float", "tensor", "null", "true"), "null");
}

static void test_greedy_w8a8(void **state)
{
	(void)state;
	tm_qspec i8 = { 8, 0, 1, 0, 1, QC_DT_BF16, 0 };
	run_format("w8a8 int8 channel, int8 token inputs", &i8, "int-quantized",
	           WARGS(8, "int", "channel", "null", "true"), IN_INT8_TOKEN);
}

/* static per-tensor FP8 inputs: every Linear has an input_scale */
static void test_greedy_static_inputs(void **state)
{
	(void)state;
	qc_config cfg;
	small_config(&cfg);
	tm_model tm;
	tm_make(&tm, &cfg, QC_DT_F32, 22);
	tm_qspec f8 = { 8, 1, 1, 0, 1, QC_DT_BF16, 0 };
	tm_quantize(&tm, &f8);
	for (int l = 0; l < cfg.num_hidden_layers; l++)
		for (int k = 0; k < QC_LIN_COUNT; k++) {
			char name[200];
			snprintf(name, sizeof name, "model.layers.%d.%s.input_scale", l,
			         qc_linear_path((qc_linear)k));
			/* different scales per shard: the fusion takes their maximum */
			float s = 0.01f + 0.002f * (float)k;
			int64_t one = 1;
			tm_put(&tm, name, QC_DT_F32, 1, &one, &s);
		}
	qc_ctq *q = ctq_from("float-quantized", WARGS(8, "float", "channel", "null", "true"),
	                     "{\"dynamic\": false, \"num_bits\": 8, \"strategy\": \"tensor\", "
	                     "\"symmetric\": true, \"type\": \"float\"}");
	qc_model *m;
	tu_assert_rc(qc_model_new(&m, &cfg, &tm.src, q, kc, NULL), 0);
	check_greedy(m, "fp8 static tensor inputs", 0);
	qc_model_free(m);
	qc_ctq_free(q);
	tm_free(&tm);
}

/* Gemma 2 (window 16 on the even layers, soft-capping, sandwich norms)
 * and Gemma: greedy decoding with the cache agrees with recomputing, over
 * 72 positions, far past the window */
static void test_greedy_gemma(void **state)
{
	(void)state;
	for (int v2 = 0; v2 < 2; v2++) {
		qc_config cfg;
		/* untied: a tied random model repeats its last token forever */
		tm_config(&cfg, 48, 96, 3, 4, 2, 32, 89, 0);
		tm_config_gemma(&cfg, v2, 24, 16);
		tm_model tm;
		tm_make(&tm, &cfg, QC_DT_F32, 27);
		qc_model *m;
		tu_assert_rc(qc_model_new(&m, &cfg, &tm.src, NULL, kc, NULL), 0);
		check_greedy(m, v2 ? "gemma2 window 16" : "gemma", 0);
		qc_model_free(m);
		tm_free(&tm);
	}
}

/* A decoding step's logits from a BF16 lm_head read directly (up to four
 * rows, qk_linear_bf16) equal the converted blocks' GEMM (more rows), with
 * Gemma 2's final soft-capping on both paths; tied and untied heads */
static void test_head_direct(void **state)
{
	(void)state;
	for (int c = 0; c < 3; c++) {
		qc_config cfg;
		tm_config(&cfg, 48, 96, 2, 4, 2, 16, 89, c != 1);
		if (c == 2)
			tm_config_gemma(&cfg, 1, 0, 40);
		tm_model tm;
		tm_make(&tm, &cfg, QC_DT_BF16, 31);
		qc_model *m;
		tu_assert_rc(qc_model_new(&m, &cfg, &tm.src, NULL, kc, NULL), 0);
		int64_t H = cfg.hidden_size, V = cfg.vocab_size, T = 6;
		float *x = malloc(sizeof(float) * (size_t)(T * H));
		float *all = malloc(sizeof(float) * (size_t)(T * V)), *one = malloc(sizeof(float) * (size_t)V);
		for (int64_t i = 0; i < T * H; i++)
			x[i] = (float)sin(0.37 * (double)i) * 2.0f;
		tu_assert_rc(qc_model_logits(m, x, T, all), 0);
		double e = 0, mx = 0;
		for (int64_t t = 0; t < T; t++) {
			tu_assert_rc(qc_model_logits(m, x + t * H, 1, one), 0);
			for (int64_t v = 0; v < V; v++) {
				double d = fabs((double)one[v] - all[t * V + v]);
				e = d > e ? d : e;
				mx = fabs(all[t * V + v]) > mx ? fabs(all[t * V + v]) : mx;
			}
		}
		if (c == 2)
			assert_true(mx <= cfg.final_softcap);   /* capped on both paths */
		if (!(e <= 1e-5 * (mx + 1)))
			fail_msg("case %d: one row against six: %g (largest logit %g)", c, e, mx);
		free(x);
		free(all);
		free(one);
		qc_model_free(m);
		tm_free(&tm);
	}
}

static void score_check(qc_config *cfg, const char *what);

/* scores: log p of each next token against the forward pass's log-softmax;
 * a shared prefix scored once and continuations after a rewind; Gemma 2
 * with a window (40) the 300 positions outgrow */
static void test_score(void **state)
{
	(void)state;
	qc_config cfg;
	small_config(&cfg);
	score_check(&cfg, "llama");
	tm_config(&cfg, 48, 96, 2, 4, 2, 16, 89, 1);
	tm_config_gemma(&cfg, 1, 0, 40);
	score_check(&cfg, "gemma2");
}

static void score_check(qc_config *cfgp, const char *what)
{
	qc_config cfg = *cfgp;
	tm_model tm;
	tm_make(&tm, &cfg, QC_DT_F32, 23);
	qc_model *m;
	tu_assert_rc(qc_model_new(&m, &cfg, &tm.src, NULL, kc, NULL), 0);
	int64_t V = cfg.vocab_size, N = 300;   /* over one feed chunk (256) */
	int32_t *ids = malloc(sizeof(int32_t) * (size_t)(N + 1));
	for (int64_t i = 0; i <= N; i++)
		ids[i] = (int32_t)((i * 53 + 11) % V);
	float *lp = malloc(sizeof(float) * (size_t)(N * V));
	tu_assert_rc(qc_model_forward(m, ids, &N, 1, lp, QC_OUT_LOGPROBS), 0);
	qc_decoder *d;
	tu_assert_rc(qc_decoder_new(&d, m, N), 0);
	double *got = malloc(sizeof(double) * (size_t)N);
	int *gr = malloc(sizeof(int) * (size_t)N);
	/* the prefix [0, 200), then the rest; then rewind and score [200, N) again */
	tu_assert_rc(qc_decoder_score(d, ids, 200, ids + 1, got, gr), 0);
	tu_assert_rc(qc_decoder_score(d, ids + 200, N - 200, ids + 201, got + 200, gr + 200), 0);
	double emax = 0;
	for (int64_t i = 0; i < N; i++) {
		double e = fabs(got[i] - lp[i * V + ids[i + 1]]);
		emax = e > emax ? e : emax;
		int32_t am = qc_argmax(lp + i * V, V);
		assert_int_equal(gr[i], am == ids[i + 1]);
	}
	tu_assert_rc(qc_decoder_rewind(d, 200), 0);
	double again[100];
	tu_assert_rc(qc_decoder_score(d, ids + 200, N - 200, ids + 201, again, NULL), 0);
	for (int64_t i = 200; i < N; i++)
		assert_true(fabs(again[i - 200] - lp[i * V + ids[i + 1]]) < 1e-5);
	print_message("score %s: max |log p - forward log-softmax| %.2e over %lld positions\n", what,
	              emax, (long long)N);
	assert_true(emax < 1e-5);
	/* full: one more token does not fit, and the decoder stays as it was */
	tu_assert_rc(qc_decoder_feed(d, ids, 1, NULL), QC_EINVAL);
	assert_int_equal(qc_decoder_pos(d), N);
	tu_assert_rc(qc_decoder_rewind(d, N + 1), QC_EINVAL);
	/* a bad id in the middle of a feed leaves the decoder where it was */
	tu_assert_rc(qc_decoder_rewind(d, 10), 0);
	int32_t bad[3] = { 1, (int32_t)V, 2 };
	tu_assert_rc(qc_decoder_feed(d, bad, 3, NULL), QC_EFORMAT);
	assert_int_equal(qc_decoder_pos(d), 10);
	int32_t badn = -1;
	tu_assert_rc(qc_decoder_score(d, ids, 1, &badn, got, NULL), QC_EINVAL);
	free(ids);
	free(lp);
	free(got);
	free(gr);
	qc_decoder_free(d);
	qc_model_free(m);
	tm_free(&tm);
}

/* seeded sampling is reproducible and differs from greedy; stop tokens */
static void test_sampling_and_stop(void **state)
{
	(void)state;
	qc_config cfg;
	small_config(&cfg);
	tm_model tm;
	tm_make(&tm, &cfg, QC_DT_F32, 24);
	qc_model *m;
	tu_assert_rc(qc_model_new(&m, &cfg, &tm.src, NULL, kc, NULL), 0);
	qc_decoder *d;
	tu_assert_rc(qc_decoder_new(&d, m, 64), 0);
	int32_t prompt[4] = { 3, 1, 4, 1 }, a[40], b[40], g[40];
	int64_t na, nb, ng;
	int st;
	qc_gen_opts o = { .max_new = 40, .temperature = 1.0, .seed = 7 };
	tu_assert_rc(qc_decoder_generate(d, prompt, 4, &o, a, &na, &st), 0);
	tu_assert_rc(qc_decoder_rewind(d, 0), 0);
	tu_assert_rc(qc_decoder_generate(d, prompt, 4, &o, b, &nb, &st), 0);
	assert_int_equal(na, 40);
	assert_int_equal(nb, 40);
	assert_memory_equal(a, b, sizeof a);
	tu_assert_rc(qc_decoder_rewind(d, 0), 0);
	o.temperature = 0;
	tu_assert_rc(qc_decoder_generate(d, prompt, 4, &o, g, &ng, &st), 0);
	assert_memory_not_equal(a, g, sizeof a);
	/* stop at the 6th greedy token: 5 tokens out, stopped = 1 */
	tu_assert_rc(qc_decoder_rewind(d, 0), 0);
	int32_t stop[2] = { -5, g[5] };
	int first = 0;
	while (g[first] != g[5])
		first++;
	o.stop = stop;
	o.nstop = 2;
	tu_assert_rc(qc_decoder_generate(d, prompt, 4, &o, b, &nb, &st), 0);
	assert_int_equal(st, 1);
	assert_int_equal(nb, first);
	assert_memory_equal(b, g, sizeof(int32_t) * (size_t)first);
	/* the cache fills up: stopped = 2 */
	tu_assert_rc(qc_decoder_rewind(d, 0), 0);
	o.nstop = 0;
	o.max_new = 100;
	int32_t big[100];
	tu_assert_rc(qc_decoder_generate(d, prompt, 4, &o, big, &nb, &st), 0);
	assert_int_equal(st, 2);
	assert_int_equal(nb, 61);
	assert_memory_equal(big, g, sizeof g);
	tu_assert_rc(qc_decoder_new(&(qc_decoder *){ NULL }, m, 0), QC_EINVAL);
	qc_decoder_free(d);
	qc_model_free(m);
	tm_free(&tm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_greedy_dense),
		cmocka_unit_test(test_greedy_naive_int4),
		cmocka_unit_test(test_greedy_packed_int4),
		cmocka_unit_test(test_greedy_fp8),
		cmocka_unit_test(test_greedy_w8a8),
		cmocka_unit_test(test_greedy_static_inputs),
		cmocka_unit_test(test_greedy_gemma),
		cmocka_unit_test(test_head_direct),
		cmocka_unit_test(test_score),
		cmocka_unit_test(test_sampling_and_stop),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
