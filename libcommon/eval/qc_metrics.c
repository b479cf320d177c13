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

	qc_walk_opts wo = { .chunk_tokens = o.chunk_tokens, .act_dtype = o.act_dtype };
	qc_walk *wq = NULL, *wb = NULL;
	float *xq = NULL, *lq = NULL, *xb = NULL, *lb = NULL, *wq_rows = NULL, *wb_rows = NULL;
	qk_rowstat *stq = NULL, *stb = NULL;
	int32_t *tgt = NULL;
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

	/* The lm_head a block of positions by a block of vocabulary rows at a
	 * time: each block of lm_head rows is converted once per P positions
	 * and the softmax statistics are folded block by block (qk_softmax_fold),
	 * so neither [T, vocab] logits nor repeated conversions of the whole
	 * lm_head per few positions are needed. */
	int64_t T = qc_walk_tokens(wq);
	const int64_t *off = qc_walk_offsets(wq);
	const int32_t *pid = qc_walk_ids(wq);
	int64_t P = o.head_tokens > 0 ? o.head_tokens : (int64_t)((64u << 20) / (sizeof(float) * (size_t)H));
	if (P < 1)
		P = 1;
	if (P > T)
		P = T;
	int64_t Vb = o.head_vocab > 0 ? o.head_vocab : (int64_t)((64u << 20) / (sizeof(float) * (size_t)P));
	if (Vb < 1)
		Vb = 1;
	if (Vb > V)
		Vb = V;
	xq = qk_alloc(kc, (size_t)(P * H) * sizeof(float));
	lq = qk_alloc(kc, (size_t)(P * Vb) * sizeof(float));
	wq_rows = qk_alloc(kc, (size_t)(Vb * H) * sizeof(float));
	stq = malloc(sizeof *stq * (size_t)P);
	tgt = malloc(sizeof *tgt * (size_t)P);
	if (base) {
		xb = qk_alloc(kc, (size_t)(P * H) * sizeof(float));
		lb = qk_alloc(kc, (size_t)(P * Vb) * sizeof(float));
		wb_rows = qk_alloc(kc, (size_t)(Vb * H) * sizeof(float));
		stb = malloc(sizeof *stb * (size_t)P);
	}
	if (!xq || !lq || !wq_rows || !stq || !tgt || (base && (!xb || !lb || !wb_rows || !stb))) {
		rc = qc_seterr(QC_ENOMEM, "cannot allocate the lm_head blocks for %lld positions", (long long)P);
		goto out;
	}
	double nll = 0, nll_b = 0, kl = 0, kl_max = 0;
	int64_t agree = 0, s = 0;
	for (int64_t p0 = 0; p0 < T; p0 += P) {
		int64_t n = T - p0 < P ? T - p0 : P;
		/* targets: the next token of the same sequence, -1 for a last token */
		for (int64_t i = 0, sq = s; i < n; i++) {
			while (p0 + i >= off[sq + 1])
				sq++;
			tgt[i] = p0 + i == off[sq + 1] - 1 ? -1 : pid[p0 + i + 1];
		}
		if ((rc = qc_walk_hidden(wq, p0, p0 + n, xq)) || (rc = qc_model_head_input(m, xq, n, xq)))
			goto out;
		if (base && ((rc = qc_walk_hidden(wb, p0, p0 + n, xb)) ||
		             (rc = qc_model_head_input(base, xb, n, xb))))
			goto out;
		qk_rowstat_init(stq, n);
		if (base)
			qk_rowstat_init(stb, n);
		for (int64_t v0 = 0; v0 < V; v0 += Vb) {
			int64_t nv = V - v0 < Vb ? V - v0 : Vb;
			/* lq[n, nv] = h W[v0 .. v0 + nv]^T (soft-capped when the model caps) */
			if ((rc = qc_model_head_logits(m, xq, n, v0, v0 + nv, wq_rows, lq, nv)))
				goto out;
			if (base) {
				if ((rc = qc_model_head_logits(base, xb, n, v0, v0 + nv, wb_rows, lb, nv)) ||
				    (rc = qk_softmax_fold(kc, stb, lb, lq, nv, n, nv, v0, tgt)))
					goto out;
			}
			if ((rc = qk_softmax_fold(kc, stq, lq, NULL, nv, n, nv, v0, tgt)))
				goto out;
		}
		for (int64_t i = 0; i < n; i++) {
			while (p0 + i >= off[s + 1])
				s++;
			if (tgt[i] < 0)
				continue;   /* the last token predicts nothing in the set */
			qc_seq_metrics *sm = &r->seq[s];
			double lse_q = stq[i].max + log(stq[i].sum), nq = lse_q - stq[i].target;
			sm->n++;
			sm->nll += nq;
			nll += nq;
			if (!base)
				continue;
			double lse_b = stb[i].max + log(stb[i].sum), nb = lse_b - stb[i].target;
			double k = stb[i].cross / stb[i].sum - lse_b + lse_q;
			if (k < 0)
				k = 0;
			int a = stb[i].arg == stq[i].arg;
			sm->nll_base += nb;
			sm->kl += k;
			sm->top1 += a;
			nll_b += nb;
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
	qk_free(kc, wq_rows);
	qk_free(kc, wb_rows);
	free(stq);
	free(stb);
	free(tgt);
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
