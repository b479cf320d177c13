/* qc_decode.c - KV-cache decoding over qc_model (see qc_decode.h). */
#include "qc_decode.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "qc_err.h"
#include "qc_rng.h"

/* tokens per layer call when feeding, and logits rows at a time */
#define FEED_CHUNK 256
#define LOGIT_ROWS 16

struct qc_decoder {
	qc_model *m;
	qk_ctx *kc;
	int L;
	int64_t H, V, kvd, cap, pos;
	qc_layer *layers;   /* [L], every layer loaded */
	qc_kv *kv;          /* [L] caches, k and v [cap, kvd] each */
	float *x;           /* [FEED_CHUNK, H] device */
	float *dlog;        /* [LOGIT_ROWS, V] device */
	float *hlog;        /* [LOGIT_ROWS, V] host */
};

void qc_decoder_free(qc_decoder *d)
{
	if (!d)
		return;
	for (int l = 0; l < d->L; l++) {
		if (d->layers)
			qc_layer_release(d->m, &d->layers[l]);
		if (d->kv) {
			qk_free(d->kc, d->kv[l].k);
			qk_free(d->kc, d->kv[l].v);
		}
	}
	free(d->layers);
	free(d->kv);
	qk_free(d->kc, d->x);
	qk_free(d->kc, d->dlog);
	free(d->hlog);
	free(d);
}

int qc_decoder_new(qc_decoder **out, qc_model *m, int64_t cap)
{
	*out = NULL;
	if (cap < 1)
		return qc_seterr(QC_EINVAL, "decoder capacity %lld is not positive", (long long)cap);
	const qc_config *c = qc_model_config(m);
	qc_decoder *d = calloc(1, sizeof *d);
	if (!d)
		return qc_seterr(QC_ENOMEM, "out of memory");
	d->m = m;
	d->kc = qc_model_kernels(m);
	d->L = (int)c->num_hidden_layers;
	d->H = c->hidden_size;
	d->V = c->vocab_size;
	d->kvd = c->num_key_value_heads * c->head_dim;
	d->cap = cap;
	int rc = 0;
	d->layers = calloc((size_t)d->L, sizeof *d->layers);
	d->kv = calloc((size_t)d->L, sizeof *d->kv);
	d->x = qk_alloc(d->kc, (size_t)(FEED_CHUNK * d->H) * sizeof(float));
	d->dlog = qk_alloc(d->kc, (size_t)(LOGIT_ROWS * d->V) * sizeof(float));
	d->hlog = malloc((size_t)(LOGIT_ROWS * d->V) * sizeof(float));
	if (!d->layers || !d->kv || !d->x || !d->dlog || !d->hlog) {
		rc = qc_seterr(QC_ENOMEM, "cannot allocate the decoder's buffers");
		goto fail;
	}
	for (int l = 0; l < d->L; l++) {
		d->kv[l].cap = cap;
		d->kv[l].k = qk_alloc(d->kc, (size_t)(cap * d->kvd) * sizeof(float));
		d->kv[l].v = qk_alloc(d->kc, (size_t)(cap * d->kvd) * sizeof(float));
		if (!d->kv[l].k || !d->kv[l].v) {
			rc = qc_seterr(QC_ENOMEM, "cannot allocate a KV cache of %lld tokens",
			               (long long)cap);
			goto fail;
		}
		if ((rc = qc_model_load_layer_packed(m, l, &d->layers[l])))
			goto fail;
	}
	*out = d;
	return 0;
fail:
	qc_decoder_free(d);
	return rc;
}

qc_model *qc_decoder_model(const qc_decoder *d) { return d->m; }

void qc_decoder_weights(const qc_decoder *d, int *packed, int64_t *bytes)
{
	*packed = 0;
	*bytes = 0;
	for (int l = 0; l < d->L; l++) {
		const qc_layer *lw = &d->layers[l];
		*bytes += 2 * d->H * (int64_t)sizeof(float);
		for (int k = 0; k < QC_LIN_COUNT; k++) {
			int64_t n = lw->out[k] * lw->in[k];
			if (lw->q4[k]) {
				int64_t groups = n / lw->q4g[k];
				*packed += 1;
				*bytes += n / 2 + groups * (int64_t)sizeof(float) * (lw->q4z[k] ? 2 : 1);
			} else {
				*bytes += n * (int64_t)sizeof(float);
			}
			if (lw->b[k])
				*bytes += lw->out[k] * (int64_t)sizeof(float);
		}
	}
}
int64_t qc_decoder_pos(const qc_decoder *d) { return d->pos; }
int64_t qc_decoder_cap(const qc_decoder *d) { return d->cap; }

int qc_decoder_rewind(qc_decoder *d, int64_t pos)
{
	if (pos < 0 || pos > d->pos)
		return qc_seterr(QC_EINVAL, "cannot rewind to %lld: the decoder holds %lld tokens",
		                 (long long)pos, (long long)d->pos);
	d->pos = pos;
	for (int l = 0; l < d->L; l++)
		d->kv[l].past = pos;
	return 0;
}

/* one chunk of n <= FEED_CHUNK tokens through every layer: d->x [n, H] */
static int feed_chunk(qc_decoder *d, const int32_t *ids, int64_t n)
{
	QC_TRY(qc_model_embed(d->m, ids, n, d->x));
	for (int l = 0; l < d->L; l++)
		QC_TRY(qc_layer_forward_kv(d->m, &d->layers[l], d->x, n, &d->kv[l]));
	d->pos += n;
	return 0;
}

/* logits of rows [r0, r0 + n) of d->x (n <= LOGIT_ROWS) into d->hlog */
static int host_logits(qc_decoder *d, int64_t r0, int64_t n)
{
	QC_TRY(qc_model_logits(d->m, d->x + r0 * d->H, n, d->dlog));
	return qk_download(d->kc, d->hlog, d->dlog, (size_t)(n * d->V) * sizeof(float));
}

/* the shared body of feed and score: append ids, and for each chunk call
 * each_chunk (may be NULL) with the chunk's offset and length */
typedef int (*chunk_fn)(qc_decoder *d, void *ctx, int64_t off, int64_t n);

static int append(qc_decoder *d, const int32_t *ids, int64_t n, chunk_fn fn, void *ctx)
{
	if (n < 0 || d->pos + n > d->cap)
		return qc_seterr(QC_EINVAL, "%lld tokens after %lld exceed the decoder's capacity of %lld",
		                 (long long)n, (long long)d->pos, (long long)d->cap);
	int64_t pos0 = d->pos;
	int rc = 0;
	for (int64_t off = 0; !rc && off < n; off += FEED_CHUNK) {
		int64_t c = n - off < FEED_CHUNK ? n - off : FEED_CHUNK;
		rc = feed_chunk(d, ids + off, c);
		if (!rc && fn)
			rc = fn(d, ctx, off, c);
	}
	if (rc)
		qc_decoder_rewind(d, pos0);
	return rc;
}

typedef struct {
	float *logits;
	int64_t n;
} feed_ctx;

static int feed_last(qc_decoder *d, void *p, int64_t off, int64_t c)
{
	feed_ctx *f = p;
	if (!f->logits || off + c < f->n)
		return 0;
	QC_TRY(host_logits(d, c - 1, 1));
	memcpy(f->logits, d->hlog, (size_t)d->V * sizeof(float));
	return 0;
}

int qc_decoder_feed(qc_decoder *d, const int32_t *ids, int64_t n, float *logits)
{
	feed_ctx f = { logits, n };
	return append(d, ids, n, feed_last, &f);
}

int32_t qc_argmax(const float *logits, int64_t V)
{
	int64_t best = 0;
	for (int64_t v = 1; v < V; v++)
		if (logits[v] > logits[best])
			best = v;
	return (int32_t)best;
}

/* log-normalizer of a row of logits, in double */
static double row_lse(const float *z, int64_t V)
{
	float mx = z[0];
	for (int64_t v = 1; v < V; v++)
		if (z[v] > mx)
			mx = z[v];
	double s = 0;
	for (int64_t v = 0; v < V; v++)
		s += exp((double)z[v] - (double)mx);
	return (double)mx + log(s);
}

typedef struct {
	const int32_t *next;
	double *lp;
	int *greedy;
} score_ctx;

static int score_chunk(qc_decoder *d, void *p, int64_t off, int64_t c)
{
	score_ctx *s = p;
	for (int64_t r0 = 0; r0 < c; r0 += LOGIT_ROWS) {
		int64_t n = c - r0 < LOGIT_ROWS ? c - r0 : LOGIT_ROWS;
		QC_TRY(host_logits(d, r0, n));
		for (int64_t r = 0; r < n; r++) {
			const float *z = d->hlog + r * d->V;
			int64_t i = off + r0 + r;
			s->lp[i] = (double)z[s->next[i]] - row_lse(z, d->V);
			if (s->greedy)
				s->greedy[i] = qc_argmax(z, d->V) == s->next[i];
		}
	}
	return 0;
}

int qc_decoder_score(qc_decoder *d, const int32_t *ids, int64_t n, const int32_t *next,
                     double *lp, int *greedy)
{
	for (int64_t i = 0; i < n; i++)
		if (next[i] < 0 || next[i] >= d->V)
			return qc_seterr(QC_EINVAL, "token id %d at position %lld is outside the vocabulary "
			                 "of %lld", (int)next[i], (long long)i, (long long)d->V);
	score_ctx s = { next, lp, greedy };
	return append(d, ids, n, score_chunk, &s);
}

/* a token drawn from softmax(z / t) by inverse CDF over ids in order */
static int32_t sample(const float *z, int64_t V, double t, qc_rng *r)
{
	float mx = z[qc_argmax(z, V)];
	double s = 0;
	for (int64_t v = 0; v < V; v++)
		s += exp(((double)z[v] - mx) / t);
	double u = qc_rng_uniform(r) * s, acc = 0;
	for (int64_t v = 0; v < V; v++) {
		acc += exp(((double)z[v] - mx) / t);
		if (u < acc)
			return (int32_t)v;
	}
	return (int32_t)(V - 1);   /* u rounded up to s */
}

static int is_stop(const qc_gen_opts *o, int32_t id)
{
	for (int i = 0; i < o->nstop; i++)
		if (o->stop[i] == id)
			return 1;
	return 0;
}

int qc_decoder_generate(qc_decoder *d, const int32_t *prompt, int64_t n, const qc_gen_opts *o,
                        int32_t *out, int64_t *nout, int *stopped)
{
	*nout = 0;
	*stopped = 0;
	if (o->max_new < 1 || !(o->temperature >= 0))
		return qc_seterr(QC_EINVAL, "generation needs max_new > 0 and temperature >= 0");
	if (n < 1)
		return qc_seterr(QC_EINVAL, "generation needs a prompt of at least one token");
	float *z = malloc((size_t)d->V * sizeof *z);
	if (!z)
		return qc_seterr(QC_ENOMEM, "out of memory");
	qc_rng r;
	qc_rng_seed(&r, o->seed);
	int rc = qc_decoder_feed(d, prompt, n, z);
	while (!rc) {
		int32_t id = o->temperature > 0 ? sample(z, d->V, o->temperature, &r) : qc_argmax(z, d->V);
		if (is_stop(o, id)) {
			*stopped = 1;
			break;
		}
		out[(*nout)++] = id;
		if (*nout == o->max_new)
			break;
		if (d->pos == d->cap) {
			*stopped = 2;
			break;
		}
		rc = qc_decoder_feed(d, &id, 1, z);
	}
	free(z);
	return rc;
}
