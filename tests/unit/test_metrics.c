/* test_metrics.c - perplexity, KL(base || quantized), top-1 agreement and
 * their per-sequence spread, against the same quantities computed in
 * double from the reference logits of tmodel.c. */
#include "tutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "qc_ctq.h"
#include "qc_err.h"
#include "qc_metrics.h"
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

#define N 4
#define L 16
static const int32_t lens[N] = { 16, 1, 9, 12 };   /* the 1-token row predicts nothing */

static void make_ids(int32_t *ids, int64_t V)
{
	for (int i = 0; i < N * L; i++)
		ids[i] = (int32_t)((i * 53 + 11) % V);
}

static void model_cfg(qc_config *cfg)
{
	tm_config(cfg, 48, 96, 2, 4, 2, 12, 61, 1);
}

/* the reference metrics in double, from reference logits of both models */
typedef struct {
	double nll, nll_b, kl, top1, n;
	double seq_nll[N], seq_nll_b[N], seq_kl[N], seq_top1[N];
	int64_t seq_n[N];
} refm;

static void logsm(const double *x, double *y, int64_t V)
{
	double m = -INFINITY, z = 0;
	for (int64_t v = 0; v < V; v++)
		m = fmax(m, x[v]);
	for (int64_t v = 0; v < V; v++)
		z += exp(x[v] - m);
	for (int64_t v = 0; v < V; v++)
		y[v] = x[v] - m - log(z);
}

static void ref_metrics(const tm_model *base, const tm_model *q, tm_weight_fn wq, void *wctx,
                        const int32_t *ids, refm *r)
{
	memset(r, 0, sizeof *r);
	int64_t V = base->cfg.vocab_size, T = 0, plens[N];
	int32_t packed[N * L];
	for (int i = 0; i < N; i++) {
		plens[i] = lens[i];
		for (int j = 0; j < lens[i]; j++)
			packed[T++] = ids[i * L + j];
	}
	double *lb = malloc(sizeof(double) * (size_t)(T * V)), *lq = malloc(sizeof(double) * (size_t)(T * V));
	tm_ref_logits(base, packed, plens, N, NULL, NULL, NULL, lb);
	tm_ref_logits(q, packed, plens, N, NULL, wq, wctx, lq);
	double *pb = malloc(sizeof(double) * (size_t)V), *pq = malloc(sizeof(double) * (size_t)V);
	int64_t t = 0;
	for (int s = 0; s < N; s++) {
		for (int j = 0; j < lens[s]; j++, t++) {
			if (j == lens[s] - 1)
				continue;
			logsm(lb + t * V, pb, V);
			logsm(lq + t * V, pq, V);
			int32_t tgt = packed[t + 1];
			double k = 0;
			int64_t ab = 0, aq = 0;
			for (int64_t v = 0; v < V; v++) {
				k += exp(pb[v]) * (pb[v] - pq[v]);
				if (pb[v] > pb[ab])
					ab = v;
				if (pq[v] > pq[aq])
					aq = v;
			}
			r->seq_nll[s] -= pq[tgt];
			r->seq_nll_b[s] -= pb[tgt];
			r->seq_kl[s] += k;
			r->seq_top1[s] += ab == aq;
			r->seq_n[s]++;
		}
		r->nll += r->seq_nll[s];
		r->nll_b += r->seq_nll_b[s];
		r->kl += r->seq_kl[s];
		r->top1 += r->seq_top1[s];
		r->n += (double)r->seq_n[s];
	}
	free(lb); free(lq); free(pb); free(pq);
}

static void test_identical(void **state)
{
	(void)state;
	qc_config cfg;
	model_cfg(&cfg);
	tm_model tm;
	tm_make(&tm, &cfg, QC_DT_BF16, 1);
	int32_t ids[N * L];
	make_ids(ids, 61);
	qc_model *a, *b;
	tu_assert_rc(qc_model_new(&a, &cfg, &tm.src, NULL, kc, NULL), 0);
	tu_assert_rc(qc_model_new(&b, &cfg, &tm.src, NULL, kc, NULL), 0);
	qc_dtype dts[2] = { QC_DT_F32, QC_DT_BF16 };
	for (int d = 0; d < 2; d++) {
		qc_metrics r;
		qc_metrics_opts o = { .act_dtype = dts[d], .head_tokens = 5, .head_vocab = 8, .chunk_tokens = 20 };
		tu_assert_rc(qc_metrics_compare(a, b, ids, L, lens, N, &o, &r), 0);
		/* the same model on both sides: exactly no difference */
		assert_true(r.kl_mean == 0.0 && r.kl_max == 0.0);
		assert_true(r.top1 == 1.0);
		assert_true(r.ppl_ratio == 1.0);
		assert_true(r.ppl == r.ppl_base);
		assert_int_equal(r.n_positions, 15 + 0 + 8 + 11);
		assert_int_equal(r.seq_kl.n, 3);
		assert_true(r.seq_ppl_ratio.min == 1.0 && r.seq_ppl_ratio.max == 1.0);
		json_t *j = qc_metrics_json(&r);
		assert_non_null(j);
		assert_true(json_real_value(json_object_get(j, "kl_mean")) == 0.0);
		assert_true(json_real_value(json_object_get(j, "top1")) == 1.0);
		json_decref(j);
		qc_metrics_free(&r);
	}
	qc_model_free(a);
	qc_model_free(b);
	assert_int_equal(tm.gets, tm.releases);
	tm_free(&tm);
}

static void test_ppl(void **state)
{
	(void)state;
	qc_config cfg;
	model_cfg(&cfg);
	tm_model tm;
	tm_make(&tm, &cfg, QC_DT_F32, 2);
	int32_t ids[N * L];
	make_ids(ids, 61);
	refm ref;
	ref_metrics(&tm, &tm, NULL, NULL, ids, &ref);
	qc_model *m;
	tu_assert_rc(qc_model_new(&m, &cfg, &tm.src, NULL, kc, NULL), 0);
	qc_metrics r;
	tu_assert_rc(qc_metrics_eval(m, ids, L, lens, N, NULL, &r), 0);
	double want = exp(ref.nll / ref.n);
	print_message("ppl %.6f (reference %.6f)\n", r.ppl, want);
	assert_true(fabs(r.ppl - want) < 1e-5 * want);
	assert_false(r.has_base);
	for (int s = 0; s < N; s++) {
		assert_int_equal(r.seq[s].n, ref.seq_n[s]);
		if (ref.seq_n[s])
			assert_true(fabs(r.seq[s].nll - ref.seq_nll[s] / ref.seq_n[s]) < 1e-5);
	}
	qc_metrics_free(&r);
	/* nothing to predict */
	int32_t ones[N] = { 1, 1, 0, 1 };
	tu_assert_rc(qc_metrics_eval(m, ids, L, ones, N, NULL, &r), QC_EINVAL);
	qc_model_free(m);
	tm_free(&tm);
}

static void test_quantized(void **state)
{
	(void)state;
	qc_config cfg;
	model_cfg(&cfg);
	tm_model base, qm;
	tm_make(&base, &cfg, QC_DT_F32, 3);
	tm_make(&qm, &cfg, QC_DT_F32, 3);
	tm_qspec q4 = { 4, 0, 2, 16, 1, QC_DT_BF16, 0 };
	tm_quantize(&qm, &q4);
	json_t *j = json_loads(
		"{\"quantization_config\": {\"quant_method\": \"compressed-tensors\", \"format\": "
		"\"naive-quantized\", \"ignore\": [\"lm_head\"], \"config_groups\": {\"group_0\": "
		"{\"targets\": [\"Linear\"], \"input_activations\": null, \"weights\": {\"num_bits\": 4, "
		"\"type\": \"int\", \"strategy\": \"group\", \"group_size\": 16, \"symmetric\": true, "
		"\"dynamic\": false}}}}}", 0, NULL);
	qc_ctq *q;
	tu_assert_rc(qc_ctq_from_config(&q, j), 0);
	json_decref(j);
	int32_t ids[N * L];
	make_ids(ids, 61);
	refm ref;
	tm_qref qr = { &qm, &q4 };
	ref_metrics(&base, &qm, tm_dequant, &qr, ids, &ref);
	qc_model *mb, *mq;
	tu_assert_rc(qc_model_new(&mb, &cfg, &base.src, NULL, kc, NULL), 0);
	tu_assert_rc(qc_model_new(&mq, &cfg, &qm.src, q, kc, NULL), 0);
	qc_metrics r;
	qc_metrics_opts o = { .head_tokens = 7, .head_vocab = 13 };   /* several blocks each way */
	tu_assert_rc(qc_metrics_compare(mb, mq, ids, L, lens, N, &o, &r), 0);
	double kl = ref.kl / ref.n, ratio = exp((ref.nll - ref.nll_b) / ref.n), top1 = ref.top1 / ref.n;
	print_message("kl %.3e (ref %.3e), ppl ratio %.6f (ref %.6f), top1 %.4f (ref %.4f)\n",
	              r.kl_mean, kl, r.ppl_ratio, ratio, r.top1, top1);
	assert_true(kl > 1e-4);                      /* int4 does change the model */
	assert_true(fabs(r.kl_mean - kl) < 1e-3 * kl + 1e-7);
	assert_true(fabs(r.ppl_ratio - ratio) < 1e-5);
	assert_true(fabs(r.top1 - top1) < 1e-12);
	assert_true(fabs(r.ppl_base - exp(ref.nll_b / ref.n)) < 1e-5 * r.ppl_base);
	/* per sequence, and the spread over the three that predict */
	double kls[N];
	int k = 0;
	for (int s = 0; s < N; s++) {
		assert_int_equal(r.seq[s].n, ref.seq_n[s]);
		if (!ref.seq_n[s])
			continue;
		double want = ref.seq_kl[s] / ref.seq_n[s];
		assert_true(fabs(r.seq[s].kl - want) < 1e-3 * want + 1e-7);
		kls[k++] = r.seq[s].kl;
	}
	assert_int_equal(r.seq_kl.n, 3);
	double mn = fmin(kls[0], fmin(kls[1], kls[2])), mx = fmax(kls[0], fmax(kls[1], kls[2]));
	assert_true(r.seq_kl.min == mn && r.seq_kl.max == mx);
	for (int i = 0; i < 3; i++)
		if (kls[i] != mn && kls[i] != mx)
			assert_true(r.seq_kl.median == kls[i]);
	assert_true(r.kl_max >= r.seq_kl.max);
	qc_metrics_free(&r);
	/* models that cannot be compared */
	qc_config other;
	tm_config(&other, 48, 96, 2, 4, 2, 12, 60, 1);
	qc_model *mo;
	tu_assert_rc(qc_model_new(&mo, &other, &base.src, NULL, kc, NULL), 0);
	tu_assert_rc(qc_metrics_compare(mb, mo, ids, L, lens, N, NULL, &r), QC_EINVAL);
	assert_non_null(strstr(qc_errmsg(), "vocabulary"));
	qc_model_free(mo);
	qc_model_free(mb);
	qc_model_free(mq);
	qc_ctq_free(q);
	tm_free(&base);
	tm_free(&qm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_identical),
		cmocka_unit_test(test_ppl),
		cmocka_unit_test(test_quantized),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
