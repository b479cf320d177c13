/* test_model.c - the runtime's forward pass against the independent
 * double-precision reference of tmodel.c, on several small shapes: GQA and
 * not, tied and untied embeddings, head_dim != hidden/heads, biases, llama3
 * and linear rope scaling; FP32, BF16 and F16 weights; chunking of
 * sequences, MLP rows and lm_head blocks; bad inputs. Gemma, Gemma 2,
 * Vicuna, Qwen2 and Mistral on qsynth's presets of their published shapes (cut small), with
 * sequences longer than the sliding window. */
#include "tutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "qc_err.h"
#include "qc_model.h"
#include "qc_synth.h"
#include "tmodel.h"

/* the bound for FP32 weights: max relative logit error */
#define TOL_LOGITS 1e-4

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

static int32_t *make_ids(const int64_t *lens, int64_t nseq, int64_t V, uint64_t seed)
{
	int64_t T = 0;
	for (int64_t i = 0; i < nseq; i++)
		T += lens[i];
	int32_t *ids = malloc(sizeof(int32_t) * (size_t)T);
	for (int64_t t = 0; t < T; t++)
		ids[t] = (int32_t)((seed * 2654435761u + (uint64_t)t * 40503u) % (uint64_t)V);
	return ids;
}

/* run the runtime and the reference on m; return the relative error */
static double compare(tm_model *tm, const int64_t *lens, int64_t nseq, const qc_model_opts *o)
{
	int64_t T = 0, V = tm->cfg.vocab_size;
	for (int64_t i = 0; i < nseq; i++)
		T += lens[i];
	int32_t *ids = make_ids(lens, nseq, V, 7);
	float *got = malloc(sizeof(float) * (size_t)(T * V));
	double *ref = malloc(sizeof(double) * (size_t)(T * V));
	qc_model *m;
	tu_assert_rc(qc_model_new(&m, &tm->cfg, &tm->src, NULL, kc, o), 0);
	tu_assert_rc(qc_model_forward(m, ids, lens, nseq, got, QC_OUT_LOGITS), 0);
	qc_model_free(m);
	/* every tensor the model fetched it gave back */
	assert_int_equal(tm->gets, tm->releases);
	tm_ref_logits(tm, ids, lens, nseq, NULL, NULL, NULL, ref);
	double e = tm_relerr(got, ref, (size_t)(T * V));
	free(ids);
	free(got);
	free(ref);
	return e;
}

static void test_shapes_f32(void **state)
{
	(void)state;
	struct {
		int64_t H, I, L, nh, nkv, hd, V;
		int tied, bias;
		qc_rope_type rope;
	} cs[] = {
		{ 64, 160, 2, 4, 4, 16, 97, 0, 0, QC_ROPE_DEFAULT },   /* MHA, untied */
		{ 96, 200, 2, 6, 2, 16, 130, 1, 0, QC_ROPE_LLAMA3 },   /* GQA, tied, llama3 */
		{ 48, 96, 3, 4, 1, 16, 61, 0, 1, QC_ROPE_LINEAR },     /* MQA, hd*nh != H, biases */
		{ 64, 128, 1, 8, 2, 8, 50, 1, 0, QC_ROPE_LLAMA3 },     /* many small heads */
	};
	int64_t lens[] = { 5, 17, 1, 40 };
	for (size_t c = 0; c < sizeof cs / sizeof cs[0]; c++) {
		qc_config cfg;
		tm_config(&cfg, cs[c].H, cs[c].I, cs[c].L, cs[c].nh, cs[c].nkv, cs[c].hd, cs[c].V,
		          cs[c].tied);
		cfg.attention_bias = cfg.mlp_bias = cs[c].bias;
		cfg.rope_type = cs[c].rope;
		if (cs[c].rope == QC_ROPE_LLAMA3) {
			/* bands chosen so that all three occur for head_dim 8..16
			 * and positions up to 40 */
			cfg.rope_theta = 500000.0;
			cfg.rope_factor = 8;
			cfg.rope_low_freq_factor = 1;
			cfg.rope_high_freq_factor = 4;
			cfg.rope_original_max_position_embeddings = 64;
		} else if (cs[c].rope == QC_ROPE_LINEAR) {
			cfg.rope_factor = 2;
		}
		tm_model tm;
		tm_make(&tm, &cfg, QC_DT_F32, 100 + c);
		/* defaults, then tiny chunks: several sequence chunks, MLP row
		 * blocks and lm_head blocks per call */
		qc_model_opts o;
		qc_model_opts_default(&o);
		double e1 = compare(&tm, lens, 4, &o);
		o.chunk_tokens = 8;
		o.mlp_rows = 7;
		o.head_rows = 10;
		double e2 = compare(&tm, lens, 4, &o);
		print_message("shape %zu: max relative logit error %.2e (default), %.2e (chunked)\n",
		              c, e1, e2);
		assert_true(e1 < TOL_LOGITS);
		assert_true(e2 < TOL_LOGITS);
		tm_free(&tm);
	}
}

/* ---- the weights qsynth writes: heavy tails, outlier channels 20-100x ---- */

typedef struct {
	tm_model *tm;
	qc_synth_opts o;
} synth_ctx;

static int synth_visit(void *ctx, const char *name, int ndim, const int64_t *shape)
{
	synth_ctx *c = ctx;
	void *data;
	size_t nb;
	int rc = qc_synth_tensor(&c->tm->cfg, &c->o, name, ndim, shape, &data, &nb);
	if (rc)
		return rc;
	tm_put(c->tm, name, c->o.dtype, ndim, shape, data);
	free(data);
	return 0;
}

static void test_synth_shapes(void **state)
{
	(void)state;
	/* qsynth's tiny preset (GQA, tied, llama3 scaling), and variations of
	 * it: untied, no GQA, no rope scaling, head_dim != hidden / heads */
	struct {
		int64_t nkv, hd;
		int tied;
		qc_rope_type rope;
	} cs[] = {
		{ 2, 32, 1, QC_ROPE_LLAMA3 },
		{ 4, 32, 0, QC_ROPE_DEFAULT },
		{ 1, 48, 0, QC_ROPE_LLAMA3 },
	};
	int64_t lens[] = { 30, 7 };
	for (size_t c = 0; c < sizeof cs / sizeof cs[0]; c++) {
		qc_config cfg;
		tu_assert_rc(qc_synth_preset("tiny", &cfg), 0);
		cfg.num_key_value_heads = cs[c].nkv;
		cfg.head_dim = cs[c].hd;
		cfg.tie_word_embeddings = cs[c].tied;
		cfg.rope_type = cs[c].rope;
		tm_model tm;
		memset(&tm, 0, sizeof tm);
		tm.cfg = cfg;
		tm_make(&tm, &cfg, QC_DT_F32, 1);    /* the table; values replaced below */
		synth_ctx sc = { &tm, { 0 } };
		qc_synth_opts_default(&sc.o);
		sc.o.dtype = QC_DT_F32;
		sc.o.seed = 5 + c;
		sc.o.threads = 1;
		tu_assert_rc(qc_config_each_tensor(&cfg, synth_visit, &sc), 0);
		double e = compare(&tm, lens, 2, NULL);
		print_message("qsynth tiny, %lld kv heads, head_dim %lld, %s, %s rope: %.2e\n",
		              (long long)cs[c].nkv, (long long)cs[c].hd, cs[c].tied ? "tied" : "untied",
		              cs[c].rope == QC_ROPE_LLAMA3 ? "llama3" : "default", e);
		assert_true(e < TOL_LOGITS);
		tm_free(&tm);
	}
}

static void test_half_weights(void **state)
{
	(void)state;
	/* BF16 and F16 weights are converted exactly, so the same bound holds
	 * against the reference reading the same stored values */
	qc_dtype dts[2] = { QC_DT_BF16, QC_DT_F16 };
	int64_t lens[] = { 12, 9 };
	for (int i = 0; i < 2; i++) {
		qc_config cfg;
		tm_config(&cfg, 64, 128, 2, 4, 2, 16, 70, i == 0);
		tm_model tm;
		tm_make(&tm, &cfg, dts[i], 200 + i);
		qc_model_opts o;
		qc_model_opts_default(&o);
		o.head_rows = 16;
		double e = compare(&tm, lens, 2, &o);
		print_message("%s weights: %.2e\n", qc_dtype_name(dts[i]), e);
		assert_true(e < TOL_LOGITS);
		tm_free(&tm);
	}
}

static void test_logprobs(void **state)
{
	(void)state;
	qc_config cfg;
	tm_config(&cfg, 32, 64, 1, 2, 1, 16, 40, 1);
	tm_model tm;
	tm_make(&tm, &cfg, QC_DT_F32, 5);
	int64_t lens[] = { 6, 3 };
	int32_t *ids = make_ids(lens, 2, 40, 3);
	float *lg = malloc(sizeof(float) * 9 * 40), *lp = malloc(sizeof(float) * 9 * 40);
	qc_model *m;
	tu_assert_rc(qc_model_new(&m, &cfg, &tm.src, NULL, kc, NULL), 0);
	tu_assert_rc(qc_model_forward(m, ids, lens, 2, lg, QC_OUT_LOGITS), 0);
	tu_assert_rc(qc_model_forward(m, ids, lens, 2, lp, QC_OUT_LOGPROBS), 0);
	for (int t = 0; t < 9; t++) {
		double mx = -INFINITY, z = 0, pz = 0;
		for (int v = 0; v < 40; v++)
			mx = fmax(mx, lg[t * 40 + v]);
		for (int v = 0; v < 40; v++)
			z += exp(lg[t * 40 + v] - mx);
		for (int v = 0; v < 40; v++) {
			assert_true(fabs(lp[t * 40 + v] - (lg[t * 40 + v] - mx - log(z))) < 1e-5);
			pz += exp(lp[t * 40 + v]);
		}
		assert_true(fabs(pz - 1) < 1e-5);
	}
	/* the second run reloaded every layer: same logits bit for bit */
	float *lg2 = malloc(sizeof(float) * 9 * 40);
	tu_assert_rc(qc_model_forward(m, ids, lens, 2, lg2, QC_OUT_LOGITS), 0);
	assert_memory_equal(lg, lg2, sizeof(float) * 9 * 40);
	qc_model_free(m);
	free(ids); free(lg); free(lp); free(lg2);
	tm_free(&tm);
}

static void test_sequences_independent(void **state)
{
	(void)state;
	/* a sequence's logits do not depend on what else is in the batch */
	qc_config cfg;
	tm_config(&cfg, 32, 64, 2, 4, 2, 8, 30, 0);
	tm_model tm;
	tm_make(&tm, &cfg, QC_DT_F32, 6);
	int64_t lens[] = { 7, 11 }, one[] = { 11 };
	int32_t *ids = make_ids(lens, 2, 30, 9);
	float *a = malloc(sizeof(float) * 18 * 30), *b = malloc(sizeof(float) * 11 * 30);
	qc_model *m;
	tu_assert_rc(qc_model_new(&m, &cfg, &tm.src, NULL, kc, NULL), 0);
	tu_assert_rc(qc_model_forward(m, ids, lens, 2, a, QC_OUT_LOGITS), 0);
	tu_assert_rc(qc_model_forward(m, ids + 7, one, 1, b, QC_OUT_LOGITS), 0);
	for (int i = 0; i < 11 * 30; i++)
		assert_true(fabsf(a[7 * 30 + i] - b[i]) <= 1e-5f * (1 + fabsf(b[i])));
	qc_model_free(m);
	free(ids); free(a); free(b);
	tm_free(&tm);
}

static void test_bad_inputs(void **state)
{
	(void)state;
	qc_config cfg;
	tm_config(&cfg, 32, 64, 2, 4, 2, 8, 30, 0);
	tm_model tm;
	tm_make(&tm, &cfg, QC_DT_F32, 8);
	qc_model *m;
	int64_t lens[] = { 4 };
	int32_t ids[4] = { 1, 2, 30, 3 };   /* 30 is outside the vocabulary */
	float *out = malloc(sizeof(float) * 4 * 30);
	tu_assert_rc(qc_model_new(&m, &cfg, &tm.src, NULL, kc, NULL), 0);
	tu_assert_rc(qc_model_forward(m, ids, lens, 1, out, QC_OUT_LOGITS), QC_EFORMAT);
	assert_non_null(strstr(qc_errmsg(), "token id 30"));
	ids[2] = 5;
	/* a NaN weight is named */
	float *w = (float *)tm_find(&tm, "model.layers.1.mlp.up_proj.weight")->data;
	w[17] = NAN;
	tu_assert_rc(qc_model_forward(m, ids, lens, 1, out, QC_OUT_LOGITS), QC_EFORMAT);
	assert_non_null(strstr(qc_errmsg(), "model.layers.1.mlp.up_proj"));
	w[17] = 0;
	/* a wrong shape is named */
	int64_t sh[2] = { 64, 31 };
	float z[64 * 31] = { 0 };
	tm_put(&tm, "model.layers.0.mlp.gate_proj.weight", QC_DT_F32, 2, sh, z);
	tu_assert_rc(qc_model_forward(m, ids, lens, 1, out, QC_OUT_LOGITS), QC_EFORMAT);
	assert_non_null(strstr(qc_errmsg(), "model.layers.0.mlp.gate_proj.weight"));
	/* a missing tensor is named */
	tm_remove(&tm, "model.layers.0.mlp.gate_proj.weight");
	tu_assert_rc(qc_model_forward(m, ids, lens, 1, out, QC_OUT_LOGITS), QC_ENOTFOUND);
	assert_non_null(strstr(qc_errmsg(), "model.layers.0.mlp.gate_proj.weight"));
	qc_model_free(m);
	/* inconsistent or unsupported hyperparameters */
	qc_config bad = cfg;
	bad.num_key_value_heads = 3;
	tu_assert_rc(qc_model_new(&m, &bad, &tm.src, NULL, kc, NULL), QC_EFORMAT);
	bad = cfg;
	snprintf(bad.hidden_act, sizeof bad.hidden_act, "gelu");
	tu_assert_rc(qc_model_new(&m, &bad, &tm.src, NULL, kc, NULL), QC_EUNSUPPORTED);
	bad = cfg;
	bad.rope_type = QC_ROPE_LLAMA3;   /* no factors given */
	tu_assert_rc(qc_model_new(&m, &bad, &tm.src, NULL, kc, NULL), QC_EFORMAT);
	free(out);
	tm_free(&tm);
}

/* ---- Gemma, Gemma 2, Mistral: qsynth's presets of the published shapes,
 * cut to a small hidden size, vocabulary and depth (head_dim, heads, KV
 * heads, query_pre_attn_scalar kept), against the reference ---- */

static void family_case(const char *preset, int64_t layers, int64_t window, qc_dtype wdt)
{
	qc_config cfg;
	tu_assert_rc(qc_synth_preset(preset, &cfg), 0);
	cfg.hidden_size = 128;
	cfg.intermediate_size = 384;
	cfg.vocab_size = 512;
	cfg.num_hidden_layers = layers;
	cfg.bos_token_id = -1;
	cfg.n_eos = 0;
	if (window >= 0)
		cfg.sliding_window = window;
	if (!cfg.norm_offset) {
		/* Llama's and Qwen2's head_dim is hidden / heads: 4 heads of 32,
		 * the preset's grouping kept (none for Llama 2, 7 to 1 for Qwen2:
		 * 2 KV heads here) */
		int group = (int)(cfg.num_attention_heads / cfg.num_key_value_heads);
		cfg.num_attention_heads = 4;
		cfg.num_key_value_heads = group > 1 ? 2 : 4;
		cfg.head_dim = 32;
	}
	tm_model tm;
	memset(&tm, 0, sizeof tm);
	tm_make(&tm, &cfg, QC_DT_F32, 1);    /* the table; values replaced below */
	synth_ctx sc = { &tm, { 0 } };
	qc_synth_opts_default(&sc.o);
	sc.o.dtype = wdt;
	sc.o.seed = 9;
	sc.o.threads = 1;
	tu_assert_rc(qc_config_each_tensor(&cfg, synth_visit, &sc), 0);
	/* Qwen2's q/k/v biases are in the model (and o_proj's is not) */
	int qwen = strncmp(preset, "qwen2", 5) == 0;
	assert_int_equal(tm_find(&tm, "model.layers.1.self_attn.k_proj.bias") != NULL, qwen);
	assert_null(tm_find(&tm, "model.layers.1.self_attn.o_proj.bias"));
	/* sequences longer than the window, and one shorter */
	int64_t lens[] = { 45, 7, 20 };
	qc_model_opts o;
	qc_model_opts_default(&o);
	o.mlp_rows = 16;        /* several MLP blocks (Gemma 2's output norm per block) */
	o.head_rows = 100;      /* lm_head blocks: soft-capping per block */
	double e = compare(&tm, lens, 3, &o);
	print_message("%s (head_dim %lld, %lld/%lld heads, window %lld, softcap %g/%g): %.2e\n", preset,
	              (long long)cfg.head_dim, (long long)cfg.num_attention_heads,
	              (long long)cfg.num_key_value_heads, (long long)cfg.sliding_window, cfg.attn_softcap,
	              cfg.final_softcap, e);
	assert_true(e < TOL_LOGITS);
	if (cfg.sliding_window > 0) {
		/* the window matters at these lengths: a reference without it
		 * differs far beyond the tolerance */
		int64_t T = 72, V = cfg.vocab_size;
		int32_t *ids = make_ids(lens, 3, V, 7);
		double *r1 = malloc(sizeof(double) * (size_t)(T * V)), *r2 = malloc(sizeof(double) * (size_t)(T * V));
		tm_ref_logits(&tm, ids, lens, 3, NULL, NULL, NULL, r1);
		tm.cfg.sliding_window = 0;
		tm_ref_logits(&tm, ids, lens, 3, NULL, NULL, NULL, r2);
		double d = 0, mx = 0;
		for (int64_t i = 0; i < T * V; i++) {
			d = fmax(d, fabs(r1[i] - r2[i]));
			mx = fmax(mx, fabs(r2[i]));
		}
		print_message("  without the window the logits move by %.2e (relative)\n", d / mx);
		assert_true(d / mx > 1e-3);
		free(ids); free(r1); free(r2);
	}
	tm_free(&tm);
}

/* Gemma's embedding scale is sqrt(hidden) rounded to the model's dtype
 * (BF16: 11.3125 for hidden 128, not 11.3137): checked exactly, since the
 * logits alone move by only about 1e-5 when it is not rounded */
static void test_gemma_embed_scale(void **state)
{
	(void)state;
	qc_config cfg;
	tm_config(&cfg, 128, 256, 1, 4, 2, 32, 50, 1);
	tm_config_gemma(&cfg, 0, 0, 0);
	qc_dtype dts[2] = { QC_DT_BF16, QC_DT_F32 };
	float want_mult[2] = { 11.3125f, (float)sqrt(128.0) };
	for (int d = 0; d < 2; d++) {
		cfg.torch_dtype = dts[d];
		tm_model tm;
		tm_make(&tm, &cfg, QC_DT_F32, 2);
		qc_model *m;
		tu_assert_rc(qc_model_new(&m, &cfg, &tm.src, NULL, kc, NULL), 0);
		int32_t ids[3] = { 0, 17, 49 };
		float *x = qk_alloc(kc, sizeof(float) * 3 * 128), got[3 * 128];
		tu_assert_rc(qc_model_embed(m, ids, 3, x), 0);
		tu_assert_rc(qk_download(kc, got, x, sizeof got), 0);
		const float *E = tm_find(&tm, "model.embed_tokens.weight")->data;
		for (int t = 0; t < 3; t++)
			for (int i = 0; i < 128; i++)
				assert_true(got[t * 128 + i] == E[ids[t] * 128 + i] * want_mult[d]);
		qk_free(kc, x);
		qc_model_free(m);
		tm_free(&tm);
	}
}

static void test_gemma(void **state)
{
	(void)state;
	/* Gemma 2B: multi-query attention, head_dim 256 = 2 x hidden / heads
	 * here; BF16 weights and the BF16-rounded embedding scale */
	family_case("gemma-2b", 2, -1, QC_DT_BF16);
	family_case("gemma-7b", 1, -1, QC_DT_F32);
}

static void test_gemma2(void **state)
{
	(void)state;
	/* three layers: sliding (0), full (1), sliding (2); a 16-token window */
	family_case("gemma-2-2b", 3, 16, QC_DT_F32);
	family_case("gemma-2-9b", 2, 16, QC_DT_BF16);
	/* query_pre_attn_scalar 144 != head_dim 128 */
	family_case("gemma-2-27b", 2, 10, QC_DT_F32);
	family_case("gemma2-tiny", 2, -1, QC_DT_BF16);
}

static void test_vicuna(void **state)
{
	(void)state;
	/* Llama 2 / Vicuna v1.5: full multi-head attention, no rope scaling,
	 * F16 weights as published */
	family_case("vicuna-7b", 2, -1, QC_DT_F16);
}

static void test_qwen2(void **state)
{
	(void)state;
	/* q/k/v biases (none on o_proj), rope theta 1e6, GQA */
	family_case("qwen2-0.5b", 2, -1, QC_DT_BF16);
}

static void test_mistral_window(void **state)
{
	(void)state;
	/* the tiny preset as a Mistral model: the window on every layer */
	qc_config cfg;
	tu_assert_rc(qc_synth_preset("tiny", &cfg), 0);
	snprintf(cfg.architecture, sizeof cfg.architecture, "MistralForCausalLM");
	snprintf(cfg.model_type, sizeof cfg.model_type, "mistral");
	cfg.family = QC_FAMILY_MISTRAL;
	cfg.sliding_window = 12;
	cfg.sliding_layers = QC_SLIDE_ALL;
	tm_model tm;
	tm_make(&tm, &cfg, QC_DT_F32, 3);
	int64_t lens[] = { 40, 5 };
	double e = compare(&tm, lens, 2, NULL);
	print_message("mistral, window 12: %.2e\n", e);
	assert_true(e < TOL_LOGITS);
	tm_free(&tm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_shapes_f32),
		cmocka_unit_test(test_synth_shapes),
		cmocka_unit_test(test_half_weights),
		cmocka_unit_test(test_logprobs),
		cmocka_unit_test(test_sequences_independent),
		cmocka_unit_test(test_bad_inputs),
		cmocka_unit_test(test_gemma_embed_scale),
		cmocka_unit_test(test_gemma),
		cmocka_unit_test(test_gemma2),
		cmocka_unit_test(test_vicuna),
		cmocka_unit_test(test_qwen2),
		cmocka_unit_test(test_mistral_window),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
