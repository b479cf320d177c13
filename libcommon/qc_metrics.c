/* qc_metrics.c - perplexity, KL, top-1 over a token set (see qc_metrics.h). */
#include "qc_metrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "qc_err.h"
#include "qc_walk.h"

void qc_metrics_free(qc_metrics *r)
{
	if (!r)
		return;
	free(r->seq);
	r->seq = NULL;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* spread of v[0..n) (n may be 0) */
static int spread(const double *v, int64_t n, qc_spread *s)
{
	memset(s, 0, sizeof *s);
	s->n = n;
	if (n == 0)
		return 0;
	double *c = malloc(sizeof *c * (size_t)n);
	if (!c)
		return qc_seterr(QC_ENOMEM, "out of memory");
	memcpy(c, v, sizeof *c * (size_t)n);
	qsort(c, (size_t)n, sizeof *c, cmp_double);
	s->min = c[0];
	s->max = c[n - 1];
	s->median = n % 2 ? c[n / 2] : 0.5 * (c[n / 2 - 1] + c[n / 2]);
	double mean = 0, var = 0;
	for (int64_t i = 0; i < n; i++)
		mean += c[i];
	mean /= (double)n;
	for (int64_t i = 0; i < n; i++)
		var += (c[i] - mean) * (c[i] - mean);
	s->std = sqrt(var / (double)n);
	free(c);
	return 0;
}

static int64_t argmax(const float *x, int64_t V)
{
	int64_t k = 0;
	for (int64_t i = 1; i < V; i++)
		if (x[i] > x[k])
			k = i;
	return k;
}

static int finish(qc_metrics *r, int64_t total_pos, double nll, double nll_b, double kl,
                  double kl_max, int64_t agree)
{
	r->n_positions = total_pos;
	r->nll = nll / (double)total_pos;
	r->ppl = exp(r->nll);
	r->kl_max = kl_max;
	if (r->has_base) {
		r->nll_base = nll_b / (double)total_pos;
		r->ppl_base = exp(r->nll_base);
		r->ppl_ratio = exp(r->nll - r->nll_base);
		r->kl_mean = kl / (double)total_pos;
		r->top1 = (double)agree / (double)total_pos;
	}
	double *v[4];
	for (int k = 0; k < 4; k++)
		if (!(v[k] = malloc(sizeof(double) * (size_t)(r->n_seqs ? r->n_seqs : 1)))) {
			for (int j = 0; j < k; j++)
				free(v[j]);
			return qc_seterr(QC_ENOMEM, "out of memory");
		}
	int64_t n = 0;
	for (int64_t s = 0; s < r->n_seqs; s++) {
		const qc_seq_metrics *q = &r->seq[s];
		if (q->n == 0)
			continue;
		v[0][n] = exp(q->nll);
		v[1][n] = exp(q->nll - q->nll_base);
		v[2][n] = q->kl;
		v[3][n] = q->top1;
		n++;
	}
	int rc = spread(v[0], n, &r->seq_ppl);
	if (!rc && r->has_base) {
		rc = spread(v[1], n, &r->seq_ppl_ratio);
		if (!rc)
			rc = spread(v[2], n, &r->seq_kl);
		if (!rc)
			rc = spread(v[3], n, &r->seq_top1);
	}
	for (int k = 0; k < 4; k++)
		free(v[k]);
	return rc;
}

static int run(qc_model *base, qc_model *m, const int32_t *ids, int64_t stride, const int32_t *lens,
               int64_t nseq, const qc_metrics_opts *opts, qc_metrics *r)
{
	memset(r, 0, sizeof *r);
	qc_metrics_opts o = { 0 };
	if (opts)
		o = *opts;
	const qc_config *c = qc_model_config(m);
	int64_t V = c->vocab_size, H = c->hidden_size;
	int layers = (int)c->num_hidden_layers;
	if (base) {
		const qc_config *cb = qc_model_config(base);
		if (cb->vocab_size != V || cb->num_hidden_layers != layers || cb->hidden_size != H)
			return qc_seterr(QC_EINVAL, "the base model's shape (vocabulary %lld, %lld layers, hidden "
			                 "%lld) differs from the model's (%lld, %d, %lld)",
			                 (long long)cb->vocab_size, (long long)cb->num_hidden_layers,
			                 (long long)cb->hidden_size, (long long)V, layers, (long long)H);
	}
	int64_t total_pos = 0;
	for (int64_t s = 0; s < nseq; s++)
		total_pos += lens[s] > 1 ? lens[s] - 1 : 0;
	if (total_pos == 0)
		return qc_seterr(QC_EINVAL, "no sequence of the token set has two tokens to predict from");
	r->has_base = base != NULL;
	r->n_seqs = nseq;
	r->seq = calloc((size_t)nseq, sizeof *r->seq);
	if (!r->seq)
		return qc_seterr(QC_ENOMEM, "out of memory");

	qc_walk_opts wo = { o.chunk_tokens, o.act_dtype, NULL, NULL };
	qc_walk *wq = NULL, *wb = NULL;
	float *xq = NULL, *lq = NULL, *xb = NULL, *lb = NULL;
	qk_ctx *kc = qc_model_kernels(m);
	int rc = qc_walk_new(&wq, m, ids, stride, lens, nseq, &wo);
	if (!rc && base)
		rc = qc_walk_new(&wb, base, ids, stride, lens, nseq, &wo);
	int total = layers * (base ? 2 : 1), done = 0;
	for (int l = 0; !rc && l < layers; l++) {
		if (base) {
			if ((rc = qc_walk_layer(wb, NULL)))
				break;
			if (o.progress)
				o.progress(o.progress_ctx, ++done, total);
		}
		if ((rc = qc_walk_layer(wq, NULL)))
			break;
		if (o.progress)
			o.progress(o.progress_ctx, ++done, total);
	}
	if (rc)
		goto out;

	int64_t T = qc_walk_tokens(wq);
	const int64_t *off = qc_walk_offsets(wq);
	const int32_t *pid = qc_walk_ids(wq);
	int64_t C = o.head_tokens;
	if (C <= 0) {
		C = (int64_t)((128u << 20) / (sizeof(float) * (size_t)V * (base ? 2 : 1)));
		if (C < 1)
			C = 1;
	}
	if (C > T)
		C = T;
	xq = qk_alloc(kc, (size_t)(C * H) * sizeof(float));
	lq = qk_alloc(kc, (size_t)(C * V) * sizeof(float));
	if (base) {
		xb = qk_alloc(kc, (size_t)(C * H) * sizeof(float));
		lb = qk_alloc(kc, (size_t)(C * V) * sizeof(float));
	}
	if (!xq || !lq || (base && (!xb || !lb))) {
		rc = qc_seterr(QC_ENOMEM, "cannot allocate logits for %lld positions", (long long)C);
		goto out;
	}
	double nll = 0, nll_b = 0, kl = 0, kl_max = 0;
	int64_t agree = 0, s = 0;
	for (int64_t r0 = 0; r0 < T; r0 += C) {
		int64_t n = T - r0 < C ? T - r0 : C;
		if ((rc = qc_walk_hidden(wq, r0, r0 + n, xq)) || (rc = qc_model_logits(m, xq, n, lq)) ||
		    (rc = qk_log_softmax(kc, lq, lq, n, V)))
			goto out;
		if (base && ((rc = qc_walk_hidden(wb, r0, r0 + n, xb)) ||
		             (rc = qc_model_logits(base, xb, n, lb)) || (rc = qk_log_softmax(kc, lb, lb, n, V))))
			goto out;
		for (int64_t i = 0; i < n; i++) {
			int64_t row = r0 + i;
			while (row >= off[s + 1])
				s++;
			if (row == off[s + 1] - 1)
				continue;   /* the last token predicts nothing in the set */
			int32_t tgt = pid[row + 1];
			const float *q = lq + i * V;
			qc_seq_metrics *sm = &r->seq[s];
			sm->n++;
			sm->nll += -(double)q[tgt];
			nll += -(double)q[tgt];
			if (!base)
				continue;
			const float *b = lb + i * V;
			double k = 0;
			for (int64_t v = 0; v < V; v++)
				k += exp((double)b[v]) * ((double)b[v] - (double)q[v]);
			if (k < 0)
				k = 0;
			int a = argmax(b, V) == argmax(q, V);
			sm->nll_base += -(double)b[tgt];
			sm->kl += k;
			sm->top1 += a;
			nll_b += -(double)b[tgt];
			kl += k;
			if (k > kl_max)
				kl_max = k;
			agree += a;
		}
	}
	for (int64_t i = 0; i < nseq; i++) {
		qc_seq_metrics *sm = &r->seq[i];
		if (sm->n) {
			sm->nll /= (double)sm->n;
			sm->nll_base /= (double)sm->n;
			sm->kl /= (double)sm->n;
			sm->top1 /= (double)sm->n;
		}
	}
	rc = finish(r, total_pos, nll, nll_b, kl, kl_max, agree);
out:
	qc_walk_free(wq);
	qc_walk_free(wb);
	qk_free(kc, xq);
	qk_free(kc, lq);
	qk_free(kc, xb);
	qk_free(kc, lb);
	if (rc)
		qc_metrics_free(r);
	return rc;
}

int qc_metrics_eval(qc_model *m, const int32_t *ids, int64_t stride, const int32_t *lens,
                    int64_t nseq, const qc_metrics_opts *opts, qc_metrics *out)
{
	return run(NULL, m, ids, stride, lens, nseq, opts, out);
}

int qc_metrics_compare(qc_model *base, qc_model *q, const int32_t *ids, int64_t stride,
                       const int32_t *lens, int64_t nseq, const qc_metrics_opts *opts,
                       qc_metrics *out)
{
	return run(base, q, ids, stride, lens, nseq, opts, out);
}

/* ---------------------------------------------------------------- JSON */

/* JSON has no NaN or infinity: those become null */
static json_t *num(double v)
{
	return isfinite(v) ? json_real(v) : json_null();
}

static json_t *spread_json(const qc_spread *s)
{
	json_t *o = json_object();
	if (!o)
		return NULL;
	json_object_set_new(o, "min", num(s->min));
	json_object_set_new(o, "median", num(s->median));
	json_object_set_new(o, "max", num(s->max));
	json_object_set_new(o, "std", num(s->std));
	return o;
}

json_t *qc_metrics_json(const qc_metrics *r)
{
	json_t *o = json_object(), *per = json_object();
	if (!o || !per) {
		json_decref(o);
		json_decref(per);
		return NULL;
	}
	json_object_set_new(o, "n_sequences", json_integer(r->n_seqs));
	json_object_set_new(o, "n_positions", json_integer(r->n_positions));
	json_object_set_new(o, "ppl", num(r->ppl));
	json_object_set_new(per, "ppl", spread_json(&r->seq_ppl));
	if (r->has_base) {
		json_object_set_new(o, "ppl_base", num(r->ppl_base));
		json_object_set_new(o, "ppl_ratio", num(r->ppl_ratio));
		json_object_set_new(o, "kl_mean", num(r->kl_mean));
		json_object_set_new(o, "kl_max", num(r->kl_max));
		json_object_set_new(o, "top1", num(r->top1));
		json_object_set_new(per, "ppl_ratio", spread_json(&r->seq_ppl_ratio));
		json_object_set_new(per, "kl", spread_json(&r->seq_kl));
		json_object_set_new(per, "top1", spread_json(&r->seq_top1));
	}
	json_object_set_new(o, "per_sequence", per);
	return o;
}
