/* test_pack_ckpt.c - qc_pack_checkpoint on naive-quantized checkpoints
 * written to disk (qc_synth weights, qc_quant_rtn codes, qc_qout): every
 * Linear of the artifact unpacks to the naive tensors exactly, every other
 * tensor is the input's, config.json's quantization_config is the format's,
 * small files are carried, the manifest verifies and carries the input's
 * history, shards follow the greedy rule in layer order with a correct
 * index, and refusals leave no output. */
#include "tutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "qc_card.h"
#include "qc_ckpt.h"
#include "qc_config.h"
#include "qc_ctq.h"
#include "qc_err.h"
#include "qc_io.h"
#include "qc_model.h"
#include "qc_num.h"
#include "qc_pack.h"
#include "qc_qout.h"
#include "qc_quant.h"
#include "qc_report.h"
#include "qc_synth.h"

// ---------------------------------------------------------------- fixtures

/* A small Llama config: 2 layers, hidden 64, intermediate 128, 4 heads
 * (2 KV heads), vocab 96, untied so lm_head is a tensor of its own. */
static void small_config(qc_config *c)
{
	memset(c, 0, sizeof *c);
	c->hidden_size = 64;
	c->intermediate_size = 128;
	c->num_hidden_layers = 2;
	c->num_attention_heads = 4;
	c->num_key_value_heads = 2;
	c->vocab_size = 96;
	c->max_position_embeddings = 256;
	c->tie_word_embeddings = 0;
	assert_int_equal(qc_config_build(c), 0);
}

/* A dense BF16 checkpoint with qc_synth's weights, one shard per layer, a
 * tokenizer file and generation_config.json. */
static void make_dense(const char *dir, const qc_config *cfg)
{
	qc_ckw_opts wo = { .n_shards = (int)cfg->num_hidden_layers, .force = 1, .tool = "test" };
	qc_ckpt_writer *w;
	tu_assert_rc(qc_ckw_open(&w, dir, &wo), 0);
	char *cj;
	size_t cn;
	tu_assert_rc(qc_config_dump(cfg, &cj, &cn), 0);
	tu_assert_rc(qc_ckw_add_file(w, "config.json", cj, cn), 0);
	free(cj);
	const char tok[] = "{\"model\": {\"type\": \"BPE\"}}\n", gen[] = "{\"do_sample\": false}\n";
	tu_assert_rc(qc_ckw_add_file(w, "tokenizer.json", tok, sizeof tok - 1), 0);
	tu_assert_rc(qc_ckw_add_file(w, "generation_config.json", gen, sizeof gen - 1), 0);
	qc_synth_opts so;
	qc_synth_opts_default(&so);
	so.threads = 1;
	tu_assert_rc(qc_synth_write(cfg, &so, w, NULL, NULL), 0);
	tu_assert_rc(qc_ckw_close(w), 0);
}

/* Quantize every Linear of the decoder layers of `dense` with RTN under
 * scheme s into the naive checkpoint `dir`, with a report. */
static void make_naive_x(const char *dense, const char *dir, const qc_qscheme *s, int extra_layer)
{
	qc_ckpt *in;
	tu_assert_rc(qc_ckpt_open(&in, dense, NULL), 0);
	const void *data;
	size_t len;
	tu_assert_rc(qc_ckpt_file(in, "config.json", &data, &len), 0);
	qc_config cfg;
	tu_assert_rc(qc_config_parse(&cfg, data, len, NULL), 0);
	char *argv[] = { "qgptq", "--method", "rtn", NULL };
	qc_qout_opts qo = { .path = dir, .force = 1, .tool = "qgptq", .argc = 3, .argv = argv };
	qc_qout *q;
	tu_assert_rc(qc_qout_open(&q, in, &cfg, s, &qo), 0);
	qc_report *rep = qc_report_new();
	qc_clip_opts co;
	qc_clip_opts_default(&co, QC_CLIP_MINMAX);
	int L = (int)cfg.num_hidden_layers;
	for (int l = 0; l < L; l++) {
		int groups[3] = { l == 0 ? QC_GROUP_PRE : l, l, l == L - 1 ? QC_GROUP_POST : l };
		for (int gi = 0; gi < 3; gi++) {
			if (gi > 0 && groups[gi] == groups[gi - 1])
				continue;
			const char *const *names;
			size_t n;
			tu_assert_rc(qc_ckpt_group_names(in, groups[gi], &names, &n), 0);
			for (size_t i = 0; i < n; i++) {
				const qc_tensor *t;
				tu_assert_rc(qc_ckpt_get(in, names[i], &t), 0);
				char module[200];
				size_t nl = strlen(names[i]);
				int lin = 0;
				if (nl > 7 && strcmp(names[i] + nl - 7, ".weight") == 0 && groups[gi] == l) {
					snprintf(module, sizeof module, "%.*s", (int)(nl - 7), names[i]);
					lin = strstr(module, "_proj") != NULL && !qc_qscheme_ignored(s, module);
				}
				if (!lin) {
					tu_assert_rc(qc_qout_copy(q, t), 0);
					continue;
				}
				int64_t rows = t->shape[0], cols = t->shape[1];
				float *W = malloc((size_t)(rows * cols) * sizeof *W);
				tu_assert_rc(qc_to_f32(W, t->data, t->dtype, (size_t)(rows * cols)), 0);
				int64_t ng = qc_qgroups(&s->weights, cols);
				int64_t ns = s->weights.strategy == QC_QS_TENSOR ? 1 : rows * ng;
				uint8_t *codes = malloc((size_t)(rows * cols));
				float *sc = malloc((size_t)ns * sizeof *sc), *zp = malloc((size_t)ns * sizeof *zp);
				float *deq = malloc((size_t)(rows * cols) * sizeof *deq);
				tu_assert_rc(qc_quant_rtn(&s->weights, &co, W, rows, cols, NULL, codes, sc,
				                          s->weights.symmetric ? NULL : zp, deq), 0);
				float is = 0.05f;
				tu_assert_rc(qc_qout_linear(q, module, rows, cols, codes, sc,
				                            s->weights.symmetric ? NULL : zp,
				                            s->act == QC_ACT_STATIC_TENSOR ? &is : NULL), 0);
				double num = 0, den = 0;
				for (int64_t k = 0; k < rows * cols; k++) {
					num += (double)(W[k] - deq[k]) * (W[k] - deq[k]);
					den += (double)W[k] * W[k];
				}
				qc_report_line rl = { .tool = "qgptq", .layer = module, .rows = rows, .cols = cols,
					                  .scheme = "test", .group_size = -1, .symmetric = 1,
					                  .err_out = NAN, .err_w = qc_rel(num, den), .err_rtn = NAN };
				tu_assert_rc(qc_report_add(rep, &rl), 0);
				free(W);
				free(codes);
				free(sc);
				free(zp);
				free(deq);
			}
		}
		if (l == extra_layer) {
			/* a buffer older transformers saved, in one layer only */
			char name[128];
			float inv[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
			int64_t n8 = 8;
			snprintf(name, sizeof name, "model.layers.%d.self_attn.rotary_emb.inv_freq", l);
			tu_assert_rc(qc_qout_tensor(q, name, QC_DT_F32, 1, &n8, inv), 0);
		}
		tu_assert_rc(qc_qout_end_layer(q, l), 0);
	}
	qc_h128 h = { 1, 2 };
	tu_assert_rc(qc_qout_token_set(q, "calibration", h), 0);
	tu_assert_rc(qc_qout_close(q, rep), 0);
	qc_report_free(rep);
	qc_config_free(&cfg);
	qc_ckpt_close(in);
}

static void make_naive(const char *dense, const char *dir, const qc_qscheme *s)
{
	make_naive_x(dense, dir, s, -1);
}

/* The checkpoint dir as a tar stream file (what `qcat -o - dir` writes). */
static void to_tar(const char *dir, const char *tar)
{
	fflush(stdout);
	int saved = dup(1), fd = open(tar, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(saved >= 0 && fd >= 0);
	assert_true(dup2(fd, 1) == 1);
	close(fd);
	qc_ckpt *ck;
	qc_ckpt_writer *w;
	qc_ckw_opts wo = { .verbatim = 1, .no_history = 1 };
	int rc = qc_ckpt_open(&ck, dir, NULL);
	if (rc == 0 && (rc = qc_ckw_open(&w, "-", &wo)) == 0) {
		rc = qc_ckpt_copy(ck, w);
		if (rc == 0)
			rc = qc_ckw_close(w);
		else
			qc_ckw_abort(w);
	}
	qc_ckpt_close(ck);
	dup2(saved, 1);
	close(saved);
	tu_assert_rc(rc, 0);
}

static char *dense_dir;

static int setup(void **state)
{
	(void)state;
	qc_config c;
	small_config(&c);
	dense_dir = tu_path("dense");
	make_dense(dense_dir, &c);
	qc_config_free(&c);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	free(dense_dir);
	return 0;
}

static qc_qscheme scheme(const char *preset, int64_t group, int sym)
{
	qc_qscheme s;
	assert_int_equal(qc_qscheme_preset(&s, preset), 0);
	if (group > 0) {
		s.weights.strategy = QC_QS_GROUP;
		s.weights.group_size = group;
	} else if (group == 0) {
		s.weights.strategy = QC_QS_CHANNEL;
	}
	s.weights.symmetric = sym;
	return s;
}

static int pack(const char *in, const char *out, qc_pack_format f, uint64_t max_shard,
                qc_pack_result *res)
{
	char *argv[] = { "qpack", "-o", "OUT", "in", NULL };
	qc_pack_opts o = { .input = in, .output = out, .format = f, .max_shard_size = max_shard,
		               .force = 1, .threads = 2, .tool = "qpack", .version = "t", .argc = 4,
		               .argv = argv };
	return qc_pack_checkpoint(&o, res);
}

// ---------------------------------------------------------------- checks

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every tensor of the artifact: quantized Linears unpack to the naive
 * tensors exactly; every other tensor is the naive one byte for byte; and
 * nothing else is there. */
static void check_artifact(const char *naive_dir, const char *art, qc_pack_format f)
{
	qc_ckpt *nv, *pk;
	tu_assert_rc(qc_ckpt_open(&nv, naive_dir, NULL), 0);
	tu_assert_rc(qc_ckpt_open(&pk, art, NULL), 0);
	tu_assert_rc(qc_ckpt_verify(pk), 0);
	const void *d;
	size_t n;
	tu_assert_rc(qc_ckpt_file(pk, "config.json", &d, &n), 0);
	json_error_t e;
	json_t *cfg = json_loadb(d, n, 0, &e);
	assert_non_null(cfg);
	qc_pack_spec spec;
	assert_int_equal(qc_pack_detect(cfg, &spec, NULL), 1);
	assert_int_equal(spec.format, f);
	qc_config nc;
	tu_assert_rc(qc_ckpt_file(nv, "config.json", &d, &n), 0);
	tu_assert_rc(qc_config_parse(&nc, d, n, NULL), 0);
	qc_ctq *nq;
	tu_assert_rc(qc_ctq_from_config(&nq, nc.raw), 0);
	/* the rest of config.json is the input's */
	json_t *a = json_deep_copy(cfg), *b = json_deep_copy(nc.raw);
	json_object_del(a, "quantization_config");
	json_object_del(b, "quantization_config");
	assert_true(json_equal(a, b));
	json_decref(a);
	json_decref(b);
	qc_wsrc ns, ps;
	qc_wsrc_ckpt(&ns, nv);
	qc_wsrc_ckpt(&ps, pk);
	const char *const *names;
	size_t nn;
	tu_assert_rc(qc_ckpt_tensor_names(pk, &names, &nn), 0);
	char **seen = calloc(nn, sizeof *seen);
	size_t nseen = 0;
	const char *const *suf;
	int nsuf;
	tu_assert_rc(qc_pack_stored_suffixes(&spec, &suf, &nsuf), 0);
	char module[200], name[300];
	for (int l = 0; l < nc.num_hidden_layers; l++)
		for (int k = 0; k < QC_LIN_COUNT; k++) {
			snprintf(module, sizeof module, "model.layers.%d.%s", l, qc_linear_path((qc_linear)k));
			int64_t sh[2];
			qc_linear_shape(&nc, (qc_linear)k, sh);
			qc_ctq_linear L;
			tu_assert_rc(qc_ctq_linear_get(&L, nq, &ns, module, sh[0], sh[1]), 0);
			if (!L.quantized) {
				qc_ctq_linear_release(&L);
				continue;
			}
			qc_pack_unpacked u;
			tu_assert_rc(qc_unpack_linear(&spec, &ps, module, sh[0], sh[1], &u), 0);
			assert_memory_equal(u.codes, L.weight->data, L.weight->nbytes);
			int64_t nsc = u.srows * u.ng;
			float *x = malloc((size_t)nsc * 4), *y = malloc((size_t)nsc * 4);
			qc_to_f32(x, u.scales, u.scale_dt, (size_t)nsc);
			qc_to_f32(y, L.scale->data, L.scale->dtype, (size_t)nsc);
			assert_memory_equal(x, y, (size_t)nsc * 4);
			free(x);
			free(y);
			if (L.zero_point)
				assert_memory_equal(u.zps, L.zero_point->data, (size_t)nsc);
			else if (f != QC_PACK_AWQ || spec.w.symmetric)
				assert_null(u.zps);
			qc_pack_unpacked_free(&u);
			qc_ctq_linear_release(&L);
			for (int i = 0; i < nsuf; i++) {
				snprintf(name, sizeof name, "%s.%s", module, suf[i]);
				const qc_tensor *t;
				if (qc_ckpt_get(pk, name, &t) == 0) {
					assert_true(nseen < nn);
					seen[nseen++] = strdup(name);
				}
			}
		}
	/* everything else: the naive tensor as it was */
	for (size_t i = 0; i < nn; i++) {
		int dup = 0;
		for (size_t j = 0; j < nseen && !dup; j++)
			dup = strcmp(seen[j], names[i]) == 0;
		if (dup)
			continue;
		const qc_tensor *x, *y;
		tu_assert_rc(qc_ckpt_get(pk, names[i], &x), 0);
		tu_assert_rc(qc_ckpt_get(nv, names[i], &y), 0);
		assert_int_equal(x->dtype, y->dtype);
		assert_int_equal(x->nbytes, y->nbytes);
		assert_memory_equal(x->data, y->data, x->nbytes);
		assert_true(nseen < nn);
		seen[nseen++] = strdup(names[i]);
	}
	/* the naive checkpoint's dense tensors are all there */
	const char *const *nnames;
	size_t nnn;
	tu_assert_rc(qc_ckpt_tensor_names(nv, &nnames, &nnn), 0);
	qsort(seen, nseen, sizeof *seen, cmp_names);
	for (size_t i = 0; i < nnn; i++) {
		char m[200];
		const char *dot = strrchr(nnames[i], '.');
		snprintf(m, sizeof m, "%.*s", (int)(dot - nnames[i]), nnames[i]);
		if (strstr(m, "_proj") && qc_ctq_quantized(nq, m) == 1)
			continue;
		const char *key = nnames[i];
		assert_non_null(bsearch(&key, seen, nseen, sizeof *seen, cmp_names));
	}
	for (size_t i = 0; i < nseen; i++)
		free(seen[i]);
	free(seen);
	qc_ctq_free(nq);
	qc_config_free(&nc);
	json_decref(cfg);
	qc_ckpt_close(nv);
	qc_ckpt_close(pk);
}

static char *read_in(const char *dir, const char *name, size_t *len)
{
	char *p = qc_path_join(dir, name);
	size_t n;
	char *d = tu_read(p, &n);
	free(p);
	if (len)
		*len = n;
	return d;
}

static int exists(const char *dir, const char *name)
{
	char *p = qc_path_join(dir, name);
	struct stat st;
	int r = stat(p, &st) == 0;
	free(p);
	return r;
}

// ---------------------------------------------------------------- tests

static void test_formats(void **state)
{
	(void)state;
	static const struct {
		const char *preset;
		int64_t group;
		int sym;
		qc_pack_format f;
		const char *fmt;
	} cases[] = {
		{ "w4a16", 32, 1, QC_PACK_CT, "pack-quantized" },
		{ "w4a16", 32, 0, QC_PACK_CT, "pack-quantized" },
		{ "w8a8", 0, 1, QC_PACK_CT, "int-quantized" },
		{ "fp8-dynamic", 0, 1, QC_PACK_CT, "float-quantized" },
		{ "fp8-static", -1, 1, QC_PACK_CT, "float-quantized" },
		{ "w4a16", 32, 1, QC_PACK_GPTQ, "gptq" },
		{ "w4a16", 64, 0, QC_PACK_GPTQ, "gptq_v2" },
		{ "w8a16", 0, 1, QC_PACK_GPTQ, "gptq" },
		{ "w4a16", 32, 1, QC_PACK_AWQ, "awq" },
		{ "w4a16", 32, 0, QC_PACK_AWQ, "awq" },
	};
	char *nd = tu_path("naive"), *od = tu_path("out");
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		qc_qscheme s = scheme(cases[i].preset, cases[i].group, cases[i].sym);
		make_naive(dense_dir, nd, &s);
		qc_pack_result res;
		tu_assert_rc(pack(nd, od, cases[i].f, 0, &res), 0);
		assert_string_equal(res.format, cases[i].fmt);
		assert_int_equal(res.n_shards, 1);
		assert_int_equal(res.linears, 14);
		check_artifact(nd, od, cases[i].f);
		/* carried files, the card, GPTQ's quantize_config.json */
		size_t a, b;
		char *x = read_in(nd, "tokenizer.json", &a), *y = read_in(od, "tokenizer.json", &b);
		assert_int_equal(a, b);
		assert_memory_equal(x, y, a);
		free(x);
		free(y);
		x = read_in(nd, QC_REPORT_NAME, &a);
		y = read_in(od, QC_REPORT_NAME, &b);
		assert_int_equal(a, b);
		assert_memory_equal(x, y, a);
		free(x);
		free(y);
		assert_true(exists(od, "generation_config.json"));
		assert_int_equal(exists(od, "quantize_config.json"), cases[i].f == QC_PACK_GPTQ);
		char *card = read_in(od, QC_CARD_NAME, NULL);
		assert_non_null(strstr(card, "## Worst layers"));
		assert_non_null(strstr(card, "qgptq --method rtn"));
		assert_non_null(strstr(card, "qpack -o OUT in"));
		assert_non_null(strstr(card, "Token set (calibration)"));
		free(card);
		/* the manifest: the input's history, then this run */
		qc_ckpt *ck;
		const qc_manifest *m;
		tu_assert_rc(qc_ckpt_open(&ck, od, NULL), 0);
		tu_assert_rc(qc_ckpt_manifest(ck, &m), 0);
		size_t nh = qc_manifest_history_count(m);
		assert_true(nh >= 3);
		assert_string_equal(qc_manifest_history_tool(m, nh - 2), "qgptq");
		assert_string_equal(qc_manifest_history_tool(m, nh - 1), "qpack");
		assert_int_equal(qc_manifest_token_set_count(m), 1);
		qc_ckpt *nck;
		const qc_manifest *nm;
		tu_assert_rc(qc_ckpt_open(&nck, nd, NULL), 0);
		tu_assert_rc(qc_ckpt_manifest(nck, &nm), 0);
		assert_string_equal(qc_manifest_base(m), qc_manifest_base(nm));
		qc_ckpt_close(nck);
		qc_ckpt_close(ck);
		qc_qscheme_free(&s);
	}
	free(nd);
	free(od);
}

/* Every quantized Linear's weights read back through the runtime (qc_ctq,
 * and the view for GPTQ/AWQ) equal the naive checkpoint's bit for bit, and
 * so do the model's logits, which is what makes qverify's numbers equal on
 * both. */
static void test_runtime_weights(void **state)
{
	(void)state;
	qk_ctx *kc;
	assert_int_equal(qk_ctx_new(&kc, QK_DEVICE_CPU, 1), 0);
	char *nd = tu_path("naive-rt"), *od = tu_path("out-rt");
	qc_qscheme s = scheme("w4a16", 32, 0);
	make_naive(dense_dir, nd, &s);
	for (int f = 0; f < 3; f++) {
		tu_assert_rc(pack(nd, od, (qc_pack_format)f, 0, NULL), 0);
		qc_ckpt *nv, *pk;
		tu_assert_rc(qc_ckpt_open(&nv, nd, NULL), 0);
		tu_assert_rc(qc_ckpt_open(&pk, od, NULL), 0);
		const void *d;
		size_t n;
		qc_config nc, pc;
		tu_assert_rc(qc_ckpt_file(nv, "config.json", &d, &n), 0);
		tu_assert_rc(qc_config_parse(&nc, d, n, NULL), 0);
		tu_assert_rc(qc_ckpt_file(pk, "config.json", &d, &n), 0);
		tu_assert_rc(qc_config_parse(&pc, d, n, NULL), 0);
		qc_wsrc ns, ps;
		qc_wsrc_ckpt(&ns, nv);
		qc_wsrc_ckpt(&ps, pk);
		qc_pack_view *v;
		tu_assert_rc(qc_pack_view_open(&v, pc.raw, &ps), 0);
		assert_int_equal(v != NULL, f != QC_PACK_CT);
		qc_ctq *nq, *pq;
		tu_assert_rc(qc_ctq_from_config(&nq, nc.raw), 0);
		tu_assert_rc(qc_ctq_from_config(&pq, v ? qc_pack_view_config(v) : pc.raw), 0);
		const qc_wsrc *src = v ? qc_pack_view_wsrc(v) : &ps;
		char module[200];
		for (int l = 0; l < nc.num_hidden_layers; l++)
			for (int k = 0; k < QC_LIN_COUNT; k++) {
				snprintf(module, sizeof module, "model.layers.%d.%s", l, qc_linear_path((qc_linear)k));
				int64_t sh[2];
				qc_linear_shape(&nc, (qc_linear)k, sh);
				qc_ctq_linear A, B;
				tu_assert_rc(qc_ctq_linear_get(&A, nq, &ns, module, sh[0], sh[1]), 0);
				tu_assert_rc(qc_ctq_linear_get(&B, pq, src, module, sh[0], sh[1]), 0);
				tu_assert_rc(qc_ctq_linear_check(&B), 0);
				float *wa = malloc((size_t)(sh[0] * sh[1]) * 4), *wb = malloc((size_t)(sh[0] * sh[1]) * 4);
				tu_assert_rc(qc_ctq_linear_rows(kc, &A, 0, sh[0], wa), 0);
				tu_assert_rc(qc_ctq_linear_rows(kc, &B, 0, sh[0], wb), 0);
				assert_memory_equal(wa, wb, (size_t)(sh[0] * sh[1]) * 4);
				free(wa);
				free(wb);
				qc_ctq_linear_release(&A);
				qc_ctq_linear_release(&B);
			}
		/* the whole forward pass: the same logits, bit for bit, so qverify's
		 * PPL, KL and top-1 agree to the last digit */
		qc_model *mn, *mp;
		tu_assert_rc(qc_model_new(&mn, &nc, &ns, nq, kc, NULL), 0);
		tu_assert_rc(qc_model_new(&mp, &pc, src, pq, kc, NULL), 0);
		int32_t ids[9] = { 1, 5, 17, 42, 95, 3, 3, 60, 0 };
		int64_t lens[2] = { 5, 4 };
		int64_t V = nc.vocab_size;
		float *la = malloc((size_t)(9 * V) * 4), *lb = malloc((size_t)(9 * V) * 4);
		tu_assert_rc(qc_model_forward(mn, ids, lens, 2, la, QC_OUT_LOGITS), 0);
		tu_assert_rc(qc_model_forward(mp, ids, lens, 2, lb, QC_OUT_LOGITS), 0);
		assert_memory_equal(la, lb, (size_t)(9 * V) * 4);
		free(la);
		free(lb);
		qc_model_free(mn);
		qc_model_free(mp);
		qc_ctq_free(nq);
		qc_ctq_free(pq);
		qc_pack_view_free(v);
		qc_config_free(&nc);
		qc_config_free(&pc);
		qc_ckpt_close(nv);
		qc_ckpt_close(pk);
	}
	qc_qscheme_free(&s);
	free(nd);
	free(od);
	qk_ctx_free(kc);
}

/* Shards: HF names and index, greedy in layer order under the limit, a
 * Linear's tensors together, anything bigger than the limit alone. */
static void test_shards(void **state)
{
	(void)state;
	char *nd = tu_path("naive-sh"), *od = tu_path("out-sh");
	qc_qscheme s = scheme("w4a16", 32, 1);
	make_naive(dense_dir, nd, &s);
	/* lm_head and embeddings (96 x 64 BF16 = 12288 bytes) exceed 10000 */
	const uint64_t max = 10000;
	qc_pack_result res;
	tu_assert_rc(pack(nd, od, QC_PACK_GPTQ, max, &res), 0);
	assert_true(res.n_shards > 3);
	size_t n;
	char *idx = read_in(od, QC_CKPT_INDEX_NAME, &n);
	json_error_t e;
	json_t *j = json_loadb(idx, n, 0, &e);
	free(idx);
	assert_non_null(j);
	json_t *wm = json_object_get(j, "weight_map");
	assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "metadata"), "total_size")),
	                 (json_int_t)res.tensor_bytes);
	/* per shard: its tensors' bytes and groups; a Linear never split */
	uint64_t *bytes = calloc((size_t)res.n_shards + 1, sizeof *bytes);
	int *lo = calloc((size_t)res.n_shards + 1, sizeof *lo), *hi = calloc((size_t)res.n_shards + 1, sizeof *hi);
	int *count = calloc((size_t)res.n_shards + 1, sizeof *count);
	for (int k = 1; k <= res.n_shards; k++) {
		lo[k] = QC_GROUP_POST + 1;
		hi[k] = QC_GROUP_PRE - 1;
	}
	qc_ckpt *ck;
	tu_assert_rc(qc_ckpt_open(&ck, od, NULL), 0);
	uint64_t total = 0;
	const char *key;
	json_t *val;
	json_object_foreach(wm, key, val) {
		int k1, k2;
		assert_int_equal(sscanf(json_string_value(val), "model-%05d-of-%05d.safetensors", &k1, &k2), 2);
		assert_int_equal(k2, res.n_shards);
		const qc_tensor *t;
		tu_assert_rc(qc_ckpt_get(ck, key, &t), 0);
		bytes[k1] += t->nbytes;
		total += t->nbytes;
		count[k1]++;
		int g = qc_ckpt_group_of(key);
		lo[k1] = g < lo[k1] ? g : lo[k1];
		hi[k1] = g > hi[k1] ? g : hi[k1];
		/* the parts of a Linear share its shard */
		const char *dot = strrchr(key, '.');
		if (strcmp(dot, ".qweight") == 0) {
			char other[300];
			const char *sfx[] = { "qzeros", "scales", "g_idx" };
			for (int i = 0; i < 3; i++) {
				snprintf(other, sizeof other, "%.*s.%s", (int)(dot - key), key, sfx[i]);
				assert_string_equal(json_string_value(json_object_get(wm, other)), json_string_value(val));
			}
		}
	}
	assert_int_equal(total, res.tensor_bytes);
	for (int k = 1; k <= res.n_shards; k++) {
		/* under the limit, unless one unit alone exceeds it */
		assert_true(bytes[k] <= max || count[k] <= 4);
		/* layer order: shard k ends no later than shard k+1 starts */
		if (k < res.n_shards)
			assert_true(hi[k] <= lo[k + 1]);
	}
	/* the stream form of the artifact is accepted in layer order */
	tu_assert_rc(qc_ckpt_verify(ck), 0);
	qc_ckpt_close(ck);
	json_decref(j);
	free(bytes);
	free(lo);
	free(hi);
	free(count);
	/* one shard: model.safetensors and no index */
	tu_assert_rc(pack(nd, od, QC_PACK_GPTQ, 0, &res), 0);
	assert_int_equal(res.n_shards, 1);
	assert_true(exists(od, "model.safetensors"));
	assert_false(exists(od, QC_CKPT_INDEX_NAME));
	qc_qscheme_free(&s);
	free(nd);
	free(od);
}

static void test_refused(void **state)
{
	(void)state;
	char *nd = tu_path("naive-rf"), *od = tu_path("out-rf");
	/* fp8 as gptq and awq: refused, nothing written */
	qc_qscheme s = scheme("fp8-dynamic", 0, 1);
	make_naive(dense_dir, nd, &s);
	tu_assert_rc(pack(nd, od, QC_PACK_GPTQ, 0, NULL), QC_EUNSUPPORTED);
	assert_non_null(strstr(qc_errmsg(), "fp8"));
	assert_false(exists(od, "config.json"));
	tu_assert_rc(pack(nd, od, QC_PACK_AWQ, 0, NULL), QC_EUNSUPPORTED);
	qc_qscheme_free(&s);
	/* an ignored decoder Linear: gptq refuses, awq lists it */
	s = scheme("w4a16", 32, 1);
	assert_int_equal(qc_qscheme_add_ignore(&s, "re:.*layers\\.1\\.mlp\\.down_proj$"), 0);
	make_naive(dense_dir, nd, &s);
	tu_assert_rc(pack(nd, od, QC_PACK_GPTQ, 0, NULL), QC_EUNSUPPORTED);
	assert_non_null(strstr(qc_errmsg(), "model.layers.1.mlp.down_proj"));
	assert_false(exists(od, "config.json"));
	qc_pack_result res;
	tu_assert_rc(pack(nd, od, QC_PACK_AWQ, 0, &res), 0);
	assert_int_equal(res.linears, 13);
	char *cfg = read_in(od, "config.json", NULL);
	assert_non_null(strstr(cfg, "\"modules_to_not_convert\": [\n      \"model.layers.1.mlp.down_proj\"\n    ]"));
	free(cfg);
	check_artifact(nd, od, QC_PACK_AWQ);
	qc_qscheme_free(&s);
	/* a group that does not divide the MLP's 128 inputs... 48 leaves a
	 * partial last group: awq and gptq refuse, compressed-tensors packs */
	s = scheme("w4a16", 48, 1);
	make_naive(dense_dir, nd, &s);
	tu_assert_rc(pack(nd, od, QC_PACK_AWQ, 0, NULL), QC_EUNSUPPORTED);
	assert_non_null(strstr(qc_errmsg(), "partial"));
	tu_assert_rc(pack(nd, od, QC_PACK_GPTQ, 0, NULL), QC_EUNSUPPORTED);
	tu_assert_rc(pack(nd, od, QC_PACK_CT, 0, NULL), 0);
	check_artifact(nd, od, QC_PACK_CT);
	qc_qscheme_free(&s);
	/* inputs that are not naive-quantized */
	tu_assert_rc(pack(dense_dir, od, QC_PACK_CT, 0, NULL), QC_EUNSUPPORTED);
	assert_non_null(strstr(qc_errmsg(), "not quantized"));
	s = scheme("w4a16", 32, 1);
	make_naive(dense_dir, nd, &s);
	char *pd = tu_path("packed-rf");
	tu_assert_rc(pack(nd, pd, QC_PACK_CT, 0, NULL), 0);
	tu_assert_rc(pack(pd, od, QC_PACK_GPTQ, 0, NULL), QC_EUNSUPPORTED);
	assert_non_null(strstr(qc_errmsg(), "already packed"));
	tu_assert_rc(pack("/nonexistent/x", od, QC_PACK_CT, 0, NULL), QC_EIO);
	qc_qscheme_free(&s);
	free(pd);
	free(nd);
	free(od);
}

/* A stream is planned from its first layer and the scheme; a later layer
 * that holds something else is refused (the directory is not), naming the
 * tensor and what to do. */
static void test_stream_plan(void **state)
{
	(void)state;
	char *nd = tu_path("naive-st"), *od = tu_path("out-st"), *tar = tu_path("naive-st.tar");
	qc_qscheme s = scheme("w4a16", 32, 1);
	make_naive_x(dense_dir, nd, &s, 1);
	to_tar(nd, tar);
	qc_pack_result a, b;
	tu_assert_rc(pack(nd, od, QC_PACK_AWQ, 30000, &a), 0);
	char *bad = tu_path("out-st-bad");
	tu_assert_rc(pack(tar, bad, QC_PACK_AWQ, 30000, &b), QC_EFORMAT);
	assert_non_null(strstr(qc_errmsg(), "'model.layers.1.self_attn.rotary_emb.inv_freq'"));
	assert_non_null(strstr(qc_errmsg(), "pass the directory"));
	assert_false(qc_is_dir(bad));
	free(bad);
	make_naive_x(dense_dir, nd, &s, 0);
	to_tar(nd, tar);
	tu_assert_rc(pack(tar, od, QC_PACK_AWQ, 30000, &b), QC_EFORMAT);
	assert_non_null(strstr(qc_errmsg(), "lacks tensor 'model.layers.1.self_attn.rotary_emb.inv_freq'"));
	/* the same layers as the first: the stream's plan is the directory's */
	make_naive(dense_dir, nd, &s);
	to_tar(nd, tar);
	tu_assert_rc(pack(nd, od, QC_PACK_CT, 30000, &a), 0);
	char *od2 = tu_path("out-st2");
	tu_assert_rc(pack(tar, od2, QC_PACK_CT, 30000, &b), 0);
	assert_int_equal(a.n_shards, b.n_shards);
	assert_true(a.n_shards > 1);
	assert_int_equal(a.tensor_bytes, b.tensor_bytes);
	size_t la, lb;
	char *ia = read_in(od, QC_CKPT_INDEX_NAME, &la), *ib = read_in(od2, QC_CKPT_INDEX_NAME, &lb);
	assert_int_equal(la, lb);
	assert_memory_equal(ia, ib, la);
	free(ia);
	free(ib);
	check_artifact(nd, od2, QC_PACK_CT);
	qc_qscheme_free(&s);
	free(od2);
	free(tar);
	free(nd);
	free(od);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_formats),
		cmocka_unit_test(test_runtime_weights),
		cmocka_unit_test(test_shards),
		cmocka_unit_test(test_refused),
		cmocka_unit_test(test_stream_plan),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
