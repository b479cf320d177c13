/* test_ctq.c - compressed-tensors quantized checkpoints in the runtime:
 * the quantization_config as read, every weight layout (naive int4/int8
 * with group/channel/tensor scales, symmetric and with zero points, FP8,
 * pack-quantized) dequantized and run against the double-precision
 * reference on the same stored values, activation schemes, value checks
 * and malformed tensors. Quantized tensors are made by tmodel.c's own
 * round-to-nearest writer. */
#include "tutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "qc_ctq.h"
#include "qc_err.h"
#include "qc_model.h"
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

/* a quantization_config as llm-compressor writes it (keys as in
 * doc/formats.md 1.6), with the given weights/input args and format */
static qc_ctq *ctq_from(const char *weights, const char *inputs, const char *format,
                        const char *ignore)
{
	char buf[4096];
	snprintf(buf, sizeof buf,
	         "{\"architectures\": [\"LlamaForCausalLM\"], \"quantization_config\": {"
	         "\"config_groups\": {\"group_0\": {\"input_activations\": %s, "
	         "\"output_activations\": null, \"targets\": [\"Linear\"], \"weights\": %s}}, "
	         "\"format\": \"%s\", \"global_compression_ratio\": null, \"ignore\": %s, "
	         "\"kv_cache_scheme\": null, \"quant_method\": \"compressed-tensors\", "
	         "\"quantization_status\": \"compressed\", \"sparsity_config\": {}, "
	         "\"transform_config\": {}, \"version\": \"0.12.2\"}}",
	         inputs, weights, format, ignore);
	json_error_t e;
	json_t *j = json_loads(buf, 0, &e);
	assert_non_null(j);
	qc_ctq *q = NULL;
	int rc = qc_ctq_from_config(&q, j);
	json_decref(j);
	tu_assert_rc(rc, 0);
	assert_non_null(q);
	return q;
}

#define WARGS(bits, type, strategy, group, sym)                                                    \
	"{\"actorder\": null, \"block_structure\": null, \"dynamic\": false, \"group_size\": " group \
	", \"num_bits\": " #bits ", \"observer\": \"minmax\", \"observer_kwargs\": {}, "            \
	"\"strategy\": \"" strategy "\", \"symmetric\": " sym ", \"type\": \"" type "\"}"

static int64_t lens[] = { 11, 6, 3 };

static int32_t *ids_for(int64_t V)
{
	int32_t *ids = malloc(sizeof(int32_t) * 20);
	for (int i = 0; i < 20; i++)
		ids[i] = (int32_t)((i * 37 + 5) % V);
	return ids;
}

/* runtime logits on the quantized tm vs the reference on the stored values */
static double run_quantized(tm_model *tm, const qc_ctq *q, const tm_qspec *qs, const tm_actq *act,
                            int fused, float **out_logits)
{
	int64_t V = tm->cfg.vocab_size, T = 20;
	int32_t *ids = ids_for(V);
	float *got = malloc(sizeof(float) * (size_t)(T * V));
	double *ref = malloc(sizeof(double) * (size_t)(T * V));
	qc_model *m;
	qc_model_opts o;
	qc_model_opts_default(&o);
	o.vllm_fused = fused;
	tu_assert_rc(qc_model_new(&m, &tm->cfg, &tm->src, q, kc, &o), 0);
	tu_assert_rc(qc_model_forward(m, ids, lens, 3, got, QC_OUT_LOGITS), 0);
	qc_model_free(m);
	tm_qref qr = { tm, qs };
	tm_ref_logits(tm, ids, lens, 3, act, tm_dequant, &qr, ref);
	double e = tm_relerr(got, ref, (size_t)(T * V));
	free(ids);
	free(ref);
	if (out_logits)
		*out_logits = got;
	else
		free(got);
	return e;
}

static void base_model(tm_model *tm, uint64_t seed)
{
	qc_config cfg;
	/* in 80 and intermediate 112: group 32 leaves a partial last group (112 = 3*32 + 16),
	 * and 112 is not a multiple of 8 either (packed padding) */
	tm_config(&cfg, 80, 112, 2, 4, 2, 20, 57, 0);
	tm_make(tm, &cfg, QC_DT_F32, seed);
}

static void test_weight_layouts(void **state)
{
	(void)state;
	struct {
		const char *name, *wargs, *format;
		tm_qspec q;
	} cs[] = {
		{ "int8 channel", WARGS(8, "int", "channel", "null", "true"), "naive-quantized",
		  { 8, 0, 1, 0, 1, QC_DT_BF16, 0 } },
		{ "int4 group 32", WARGS(4, "int", "group", "32", "true"), "naive-quantized",
		  { 4, 0, 2, 32, 1, QC_DT_BF16, 0 } },
		{ "int4 group 32 asym", WARGS(4, "int", "group", "32", "false"), "naive-quantized",
		  { 4, 0, 2, 32, 0, QC_DT_F32, 0 } },
		{ "int8 tensor asym", WARGS(8, "int", "tensor", "null", "false"), "int-quantized",
		  { 8, 0, 0, 0, 0, QC_DT_BF16, 0 } },
		{ "fp8 channel", WARGS(8, "float", "channel", "null", "true"), "float-quantized",
		  { 8, 1, 1, 0, 1, QC_DT_BF16, 0 } },
		{ "fp8 tensor", WARGS(8, "float", "tensor", "null", "true"), "naive-quantized",
		  { 8, 1, 0, 0, 1, QC_DT_F32, 0 } },
		{ "packed int4 group 32", WARGS(4, "int", "group", "32", "true"), "pack-quantized",
		  { 4, 0, 2, 32, 1, QC_DT_BF16, 1 } },
		{ "packed int4 group 16 asym", WARGS(4, "int", "group", "16", "false"), "pack-quantized",
		  { 4, 0, 2, 16, 0, QC_DT_BF16, 1 } },
		{ "packed int8 channel asym", WARGS(8, "int", "channel", "null", "false"), "pack-quantized",
		  { 8, 0, 1, 0, 0, QC_DT_BF16, 1 } },
	};
	for (size_t c = 0; c < sizeof cs / sizeof cs[0]; c++) {
		tm_model tm;
		base_model(&tm, 10 + c);
		tm_quantize(&tm, &cs[c].q);
		qc_ctq *q = ctq_from(cs[c].wargs, "null", cs[c].format, "[\"lm_head\"]");
		/* the per-tensor FP8 q/k/v scales differ, which vllm_fused would
		 * requantize: compare without it here (tested below) */
		double e = run_quantized(&tm, q, &cs[c].q, NULL, 0, NULL);
		print_message("%-26s %.2e\n", cs[c].name, e);
		assert_true(e < 1e-4);
		assert_int_equal(tm.gets, tm.releases);
		qc_ctq_free(q);
		tm_free(&tm);
	}
}

static void test_packed_by_hand(void **state)
{
	(void)state;
	/* doc/formats.md 1.3: codes -8..7 of one row stored as u = q + 8, element k
	 * in nibble k: the word is 0x76543210 */
	int32_t word = 0x76543210;
	int64_t ps[2] = { 1, 1 }, shp[2] = { 1, 8 }, two = 2, ss[2] = { 1, 1 };
	float scale = 0.5f;
	qc_config cfg;
	tm_config(&cfg, 8, 8, 1, 1, 1, 8, 8, 1);
	tm_model full;
	tm_make(&full, &cfg, QC_DT_F32, 2);    /* a table to serve the three tensors */
	tm_put(&full, "x.weight_packed", QC_DT_I32, 2, ps, &word);
	tm_put(&full, "x.weight_shape", QC_DT_I64, 1, &two, shp);
	tm_put(&full, "x.weight_scale", QC_DT_F32, 2, ss, &scale);
	qc_ctq *q = ctq_from(WARGS(4, "int", "channel", "null", "true"), "null", "pack-quantized", "[]");
	qc_ctq_linear L;
	tu_assert_rc(qc_ctq_linear_get(&L, q, &full.src, "x", 1, 8), 0);
	float w[8];
	tu_assert_rc(qc_ctq_linear_rows(kc, &L, 0, 1, w), 0);
	for (int k = 0; k < 8; k++)
		assert_true(w[k] == 0.5f * (float)(k - 8));
	tu_assert_rc(qc_ctq_linear_check(&L), 0);
	qc_ctq_linear_release(&L);
	/* weight_shape disagreeing with config.json */
	tu_assert_rc(qc_ctq_linear_get(&L, q, &full.src, "x", 1, 7), QC_EFORMAT);
	assert_non_null(strstr(qc_errmsg(), "x.weight_shape"));
	qc_ctq_linear_release(&L);
	qc_ctq_free(q);
	tm_free(&full);
}

static void test_activation_schemes(void **state)
{
	(void)state;
	tm_qspec i8 = { 8, 0, 1, 0, 1, QC_DT_BF16, 0 }, f8 = { 8, 1, 1, 0, 1, QC_DT_BF16, 0 };
	struct {
		const char *name, *wargs, *iargs;
		const tm_qspec *q;
		int kind;
		int with_scales;
		int asym;
	} cs[] = {
		{ "w8a8 int8 dynamic token", WARGS(8, "int", "channel", "null", "true"),
		  "{\"dynamic\": true, \"num_bits\": 8, \"observer\": null, \"strategy\": \"token\", "
		  "\"symmetric\": true, \"type\": \"int\"}", &i8, QK_ACTQ_INT8_TOKEN, 0, 0 },
		{ "fp8 dynamic token", WARGS(8, "float", "channel", "null", "true"),
		  "{\"dynamic\": true, \"num_bits\": 8, \"strategy\": \"token\", \"symmetric\": true, "
		  "\"type\": \"float\"}", &f8, QK_ACTQ_FP8_TOKEN, 0, 0 },
		{ "fp8 static tensor", WARGS(8, "float", "channel", "null", "true"),
		  "{\"dynamic\": false, \"num_bits\": 8, \"strategy\": \"tensor\", \"symmetric\": true, "
		  "\"type\": \"float\"}", &f8, QK_ACTQ_FP8_TENSOR, 1, 0 },
		{ "int8 static tensor asym", WARGS(8, "int", "channel", "null", "true"),
		  "{\"dynamic\": false, \"num_bits\": 8, \"strategy\": \"tensor\", \"symmetric\": false, "
		  "\"type\": \"int\"}", &i8, QK_ACTQ_INT8_TENSOR, 1, 1 },
	};
	for (size_t c = 0; c < sizeof cs / sizeof cs[0]; c++)
		for (int fused = 0; fused < 2; fused++) {
			tm_model tm;
			base_model(&tm, 30 + c);
			tm_quantize(&tm, cs[c].q);
			tm_actq act[2][7];   /* reference: per layer? one spec per Linear kind here */
			memset(act, 0, sizeof act);
			for (int k = 0; k < 7; k++)
				act[0][k].kind = cs[c].kind;
			if (cs[c].with_scales) {
				/* input scales that differ per Linear (the same in both layers),
				 * so that vLLM's fusion of q/k/v and gate/up changes them */
				float sc[7] = { 0.02f, 0.03f, 0.025f, 0.01f, 0.04f, 0.035f, 0.015f };
				int zps[7] = { 3, -5, 0, 7, -2, 1, 4 };
				for (int l = 0; l < 2; l++)
					for (int k = 0; k < 7; k++) {
						char name[200];
						const char *paths[7] = { "self_attn.q_proj", "self_attn.k_proj",
						                         "self_attn.v_proj", "self_attn.o_proj",
						                         "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj" };
						int64_t one = 1;
						snprintf(name, sizeof name, "model.layers.%d.%s.input_scale", l, paths[k]);
						tm_put(&tm, name, QC_DT_F32, 1, &one, &sc[k]);
						if (cs[c].asym) {
							int8_t z = (int8_t)zps[k];
							snprintf(name, sizeof name, "model.layers.%d.%s.input_zero_point", l,
							         paths[k]);
							tm_put(&tm, name, QC_DT_I8, 1, &one, &z);
						}
					}
				for (int k = 0; k < 7; k++) {
					act[0][k].scale = sc[k];
					act[0][k].zp = cs[c].asym ? zps[k] : 0;
				}
				if (fused) {
					/* what vLLM does to fused shards (qc_model.h) */
					for (int g = 0; g < 2; g++) {
						int f = g ? 4 : 0, n = g ? 2 : 3;
						if (!cs[c].asym) {
							float mx = 0;
							for (int k = f; k < f + n; k++)
								mx = fmaxf(mx, sc[k]);
							for (int k = f; k < f + n; k++)
								act[0][k].scale = mx;
						} else {
							float hi = -INFINITY, lo = INFINITY;
							for (int k = f; k < f + n; k++) {
								hi = fmaxf(hi, sc[k] * (127.0f - (float)zps[k]));
								lo = fminf(lo, sc[k] * (-128.0f - (float)zps[k]));
							}
							float s = (hi - lo) / 255.0f;
							int z = (int)nearbyintf(-128.0f - lo / s);
							for (int k = f; k < f + n; k++) {
								act[0][k].scale = s;
								act[0][k].zp = z;
							}
						}
					}
				}
			}
			qc_ctq *q = ctq_from(cs[c].wargs, cs[c].iargs, "naive-quantized", "[\"lm_head\"]");
			float *lg;
			double e = run_quantized(&tm, q, cs[c].q, act[0], fused, &lg);
			/* the reference without activation quantization is much further:
			 * the runtime really quantizes the inputs */
			double e0 = run_quantized(&tm, q, cs[c].q, NULL, fused, NULL);
			print_message("%-26s fused %d: %.2e (vs %.2e without act quant)\n", cs[c].name, fused,
			              e, e0);
			assert_true(e < 5e-4);
			assert_true(e0 > 10 * e);
			free(lg);
			qc_ctq_free(q);
			tm_free(&tm);
		}
}

static void test_fp8_fused_requant(void **state)
{
	(void)state;
	/* per-tensor FP8 weights with different q/k/v scales: vLLM requantizes
	 * each shard to the largest scale; the runtime does the same, so the
	 * fused run differs from the plain one only in q/k/v and gate/up */
	tm_model tm;
	base_model(&tm, 50);
	tm_qspec f8 = { 8, 1, 0, 0, 1, QC_DT_F32, 0 };
	tm_quantize(&tm, &f8);
	qc_ctq *q = ctq_from(WARGS(8, "float", "tensor", "null", "true"), "null", "naive-quantized",
	                     "[\"lm_head\"]");
	qc_model *m;
	qc_model_opts o;
	qc_model_opts_default(&o);
	tu_assert_rc(qc_model_new(&m, &tm.cfg, &tm.src, q, kc, &o), 0);
	qc_layer lw;
	tu_assert_rc(qc_model_load_layer(m, 0, &lw), 0);
	/* expected: each shard's dequantized weights requantized to the max scale */
	tm_qref qr = { &tm, &f8 };
	float smax = 0, s[3];
	for (int k = 0; k < 3; k++) {
		const char *nm[3] = { "model.layers.0.self_attn.q_proj.weight_scale",
		                      "model.layers.0.self_attn.k_proj.weight_scale",
		                      "model.layers.0.self_attn.v_proj.weight_scale" };
		s[k] = *(const float *)tm_find(&tm, nm[k])->data;
		smax = fmaxf(smax, s[k]);
	}
	int changed = 0;
	for (int k = 0; k < 3; k++) {
		double *w = tm_dequant(&qr, 0, k);
		size_t n = (size_t)(lw.out[k] * lw.in[k]);
		float *got = malloc(n * sizeof *got);   /* the layer is kernel memory */
		tu_assert_rc(qk_download(kc, got, lw.w[k], n * sizeof *got), 0);
		for (size_t i = 0; i < n; i++) {
			float v = (float)w[i] * (1.0f / smax);
			float want = tm_e4m3_value(tm_e4m3(fminf(448, fmaxf(-448, v)))) * smax;
			assert_true(got[i] == want);
			changed += want != (float)w[i];
		}
		free(got);
		free(w);
	}
	assert_true(changed > 0);
	qc_layer_release(m, &lw);
	qc_model_free(m);
	qc_ctq_free(q);
	tm_free(&tm);
}

static void test_value_checks(void **state)
{
	(void)state;
	tm_model tm;
	base_model(&tm, 60);
	tm_qspec i4 = { 4, 0, 2, 32, 0, QC_DT_BF16, 0 };
	tm_quantize(&tm, &i4);
	qc_ctq *q = ctq_from(WARGS(4, "int", "group", "32", "false"), "null", "naive-quantized",
	                     "[\"lm_head\"]");
	const char *mod = "model.layers.1.mlp.down_proj";
	qc_ctq_linear L;
	tu_assert_rc(qc_ctq_linear_get(&L, q, &tm.src, mod, 80, 112), 0);
	tu_assert_rc(qc_ctq_linear_check(&L), 0);
	/* an int4 code out of [-8, 7] */
	int8_t *codes = (int8_t *)L.weight->data;
	codes[123] = 9;
	tu_assert_rc(qc_ctq_linear_check(&L), QC_EINTEGRITY);
	assert_non_null(strstr(qc_errmsg(), "model.layers.1.mlp.down_proj.weight' holds code 9"));
	assert_non_null(strstr(qc_errmsg(), "index 123"));
	codes[123] = 7;
	/* a zero point out of range */
	int8_t *z = (int8_t *)L.zero_point->data;
	int8_t z0 = z[4];
	z[4] = -9;
	tu_assert_rc(qc_ctq_linear_check(&L), QC_EINTEGRITY);
	assert_non_null(strstr(qc_errmsg(), "weight_zero_point"));
	z[4] = z0;
	/* a negative and a NaN scale (BF16 bits) */
	uint16_t *s = (uint16_t *)L.scale->data, s0 = s[2];
	s[2] = (uint16_t)(s0 | 0x8000);
	tu_assert_rc(qc_ctq_linear_check(&L), QC_EINTEGRITY);
	assert_non_null(strstr(qc_errmsg(), "not positive"));
	s[2] = 0x7fc0;
	tu_assert_rc(qc_ctq_linear_check(&L), QC_EINTEGRITY);
	assert_non_null(strstr(qc_errmsg(), "non-finite scale"));
	/* the model refuses to run on it, naming the Linear */
	qc_model *m;
	tu_assert_rc(qc_model_new(&m, &tm.cfg, &tm.src, q, kc, NULL), 0);
	qc_layer lw;
	tu_assert_rc(qc_model_load_layer(m, 1, &lw), QC_EFORMAT);
	assert_non_null(strstr(qc_errmsg(), "model.layers.1.mlp.down_proj"));
	qc_model_free(m);
	s[2] = s0;
	tu_assert_rc(qc_ctq_linear_check(&L), 0);
	qc_ctq_linear_release(&L);
	qc_ctq_free(q);
	/* FP8 NaN code */
	tm_free(&tm);
	base_model(&tm, 61);
	tm_qspec f8 = { 8, 1, 1, 0, 1, QC_DT_BF16, 0 };
	tm_quantize(&tm, &f8);
	q = ctq_from(WARGS(8, "float", "channel", "null", "true"), "null", "naive-quantized", "[]");
	tu_assert_rc(qc_ctq_linear_get(&L, q, &tm.src, "model.layers.0.self_attn.q_proj", 80, 80), 0);
	((uint8_t *)L.weight->data)[5] = 0xff;
	tu_assert_rc(qc_ctq_linear_check(&L), QC_EINTEGRITY);
	assert_non_null(strstr(qc_errmsg(), "NaN code at index 5"));
	qc_ctq_linear_release(&L);
	/* dense weights: finite values */
	tu_assert_rc(qc_ctq_linear_get(&L, NULL, &tm.src, "model.embed_tokens", 57, 80), 0);
	((float *)L.weight->data)[77] = INFINITY;
	tu_assert_rc(qc_ctq_linear_check(&L), QC_EINTEGRITY);
	qc_ctq_linear_release(&L);
	qc_ctq_free(q);
	tm_free(&tm);
}

static void test_malformed(void **state)
{
	(void)state;
	tm_model tm;
	base_model(&tm, 70);
	tm_qspec i8 = { 8, 0, 1, 0, 1, QC_DT_BF16, 0 };
	tm_quantize(&tm, &i8);
	qc_ctq *q = ctq_from(WARGS(8, "int", "channel", "null", "true"), "null", "naive-quantized",
	                     "[\"lm_head\", \"re:.*layers\\\\.1\\\\.mlp\\\\.down_proj$\"]");
	qc_ctq_linear L;
	const char *mod = "model.layers.0.self_attn.o_proj";
	/* ignore: exact names and regexes anchored at the start */
	assert_int_equal(qc_ctq_quantized(q, "lm_head"), 0);
	assert_int_equal(qc_ctq_quantized(q, "model.layers.1.mlp.down_proj"), 0);
	assert_int_equal(qc_ctq_quantized(q, "model.layers.0.mlp.down_proj"), 1);
	assert_int_equal(qc_ctq_quantized(NULL, mod), 0);
	/* an ignored Linear stored as codes: the config and the tensors disagree */
	tu_assert_rc(qc_ctq_linear_get(&L, q, &tm.src, "model.layers.1.mlp.down_proj", 80, 112),
	             QC_EFORMAT);
	assert_non_null(strstr(qc_errmsg(), "does not quantize"));
	qc_ctq_linear_release(&L);
	/* wrong scale shape */
	char name[200];
	snprintf(name, sizeof name, "%s.weight_scale", mod);
	int64_t bad[2] = { 80, 2 };
	float zeros[160] = { 0 };
	tm_put(&tm, name, QC_DT_F32, 2, bad, zeros);
	tu_assert_rc(qc_ctq_linear_get(&L, q, &tm.src, mod, 80, 80), QC_EFORMAT);
	assert_non_null(strstr(qc_errmsg(), "shape [80, 2], expected [80, 1]"));
	qc_ctq_linear_release(&L);
	/* missing scale */
	tm_remove(&tm, name);
	tu_assert_rc(qc_ctq_linear_get(&L, q, &tm.src, mod, 80, 80), QC_ENOTFOUND);
	assert_non_null(strstr(qc_errmsg(), "o_proj.weight_scale' is missing"));
	qc_ctq_linear_release(&L);
	/* wrong code dtype */
	snprintf(name, sizeof name, "%s.weight", mod);
	int64_t ws[2] = { 80, 80 };
	float *fw = calloc(6400, sizeof(float));
	tm_put(&tm, name, QC_DT_F32, 2, ws, fw);
	free(fw);
	tu_assert_rc(qc_ctq_linear_get(&L, q, &tm.src, mod, 80, 80), QC_EFORMAT);
	assert_non_null(strstr(qc_errmsg(), "has dtype F32, expected I8"));
	qc_ctq_linear_release(&L);
	assert_int_equal(tm.gets, tm.releases);
	qc_ctq_free(q);
	tm_free(&tm);
}

static int parse_rc(const char *text)
{
	json_error_t e;
	json_t *j = json_loads(text, 0, &e);
	assert_non_null(j);
	qc_ctq *q = NULL;
	int rc = qc_ctq_from_config(&q, j);
	json_decref(j);
	qc_ctq_free(q);
	return rc;
}

static void test_config(void **state)
{
	(void)state;
	json_t *j = json_loads("{\"hidden_size\": 8}", 0, NULL);
	qc_ctq *q = (qc_ctq *)1;
	tu_assert_rc(qc_ctq_from_config(&q, j), 0);
	assert_null(q);    /* dense */
	json_decref(j);
	tu_assert_rc(parse_rc("{\"quantization_config\": {\"quant_method\": \"gptq\", \"bits\": 4}}"),
	             QC_EUNSUPPORTED);
	char buf[2048];
	/* asymmetric dynamic int8 inputs cannot be reproduced */
	snprintf(buf, sizeof buf,
	         "{\"quantization_config\": {\"quant_method\": \"compressed-tensors\", \"format\": "
	         "\"int-quantized\", \"config_groups\": {\"group_0\": {\"targets\": [\"Linear\"], "
	         "\"weights\": %s, \"input_activations\": {\"dynamic\": true, \"num_bits\": 8, "
	         "\"strategy\": \"token\", \"symmetric\": false, \"type\": \"int\"}}}}}",
	         WARGS(8, "int", "channel", "null", "true"));
	tu_assert_rc(parse_rc(buf), QC_EUNSUPPORTED);
	assert_non_null(strstr(qc_errmsg(), "asymmetric dynamic"));
	/* an unknown format */
	snprintf(buf, sizeof buf,
	         "{\"quantization_config\": {\"quant_method\": \"compressed-tensors\", \"format\": "
	         "\"marlin-24\", \"config_groups\": {\"group_0\": {\"targets\": [\"Linear\"], "
	         "\"weights\": %s}}}}", WARGS(4, "int", "group", "128", "true"));
	tu_assert_rc(parse_rc(buf), QC_EUNSUPPORTED);
	assert_non_null(strstr(qc_errmsg(), "marlin-24"));
	/* pack-quantized with float weights is contradictory */
	snprintf(buf, sizeof buf,
	         "{\"quantization_config\": {\"quant_method\": \"compressed-tensors\", \"format\": "
	         "\"pack-quantized\", \"config_groups\": {\"group_0\": {\"targets\": [\"Linear\"], "
	         "\"weights\": %s}}}}", WARGS(8, "float", "channel", "null", "true"));
	tu_assert_rc(parse_rc(buf), QC_EFORMAT);
	/* the activation spec from a scheme */
	qc_ctq *w8a8 = ctq_from(WARGS(8, "int", "channel", "null", "true"),
	                        "{\"dynamic\": true, \"num_bits\": 8, \"strategy\": \"token\", "
	                        "\"symmetric\": true, \"type\": \"int\"}", "int-quantized", "[]");
	qk_actq a;
	tu_assert_rc(qc_ctq_actq(w8a8, 0, 0, &a), 0);
	assert_int_equal(a.kind, QK_ACTQ_INT8_TOKEN);
	tu_assert_rc(qc_ctq_actq(NULL, 0, 0, &a), 0);
	assert_int_equal(a.kind, QK_ACTQ_NONE);
	qc_ctq_free(w8a8);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_weight_layouts),
		cmocka_unit_test(test_packed_by_hand),
		cmocka_unit_test(test_activation_schemes),
		cmocka_unit_test(test_fp8_fused_requant),
		cmocka_unit_test(test_value_checks),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_config),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
