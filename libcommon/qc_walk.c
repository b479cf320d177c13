/* qc_walk.c - the calibration walker (see qc_walk.h). */
#include "qc_walk.h"

#include <stdlib.h>
#include <string.h>

#include "qc_err.h"
#include "qc_num.h"

struct qc_walk {
	qc_model *m;
	qk_ctx *kc;
	int64_t H, qd, nseq, T, nchunks, cmax;
	int64_t *lens, *off;      /* [nseq], [nseq + 1] */
	int64_t *chunk;           /* [nchunks + 1]: first sequence of each chunk */
	int32_t *ids;             /* [T] packed */
	qc_dtype dt;              /* storage: F32 or BF16 */
	size_t es;
	void *xs;                 /* [T, H] activations */
	void *as;                 /* [T, qd] attention outputs (only when O is updated) */
	float *cx, *ch, *ca;      /* chunk scratch: x (BF16 storage only), h [C, H], a [C, qd] */
	int next;
	qc_walk_opts o;
};

static const char *const point_names[QC_WALK_POINTS] = { "qkv", "o", "gate_up", "down" };

const char *qc_walk_point_name(qc_walk_point p)
{
	return (unsigned)p < QC_WALK_POINTS ? point_names[p] : "?";
}

void qc_walk_point_linears(qc_walk_point p, qc_linear *first, int *count)
{
	static const int f[QC_WALK_POINTS] = { QC_LIN_Q, QC_LIN_O, QC_LIN_GATE, QC_LIN_DOWN };
	static const int c[QC_WALK_POINTS] = { 3, 1, 2, 1 };
	*first = (qc_linear)f[p];
	*count = c[p];
}

int64_t qc_walk_tokens(const qc_walk *w) { return w->T; }
int64_t qc_walk_seqs(const qc_walk *w) { return w->nseq; }
const int64_t *qc_walk_offsets(const qc_walk *w) { return w->off; }
const int32_t *qc_walk_ids(const qc_walk *w) { return w->ids; }
qc_model *qc_walk_model(const qc_walk *w) { return w->m; }
int qc_walk_next(const qc_walk *w) { return w->next; }

void qc_walk_free(qc_walk *w)
{
	if (!w)
		return;
	qk_free(w->kc, w->xs);
	qk_free(w->kc, w->as);
	qk_free(w->kc, w->cx);
	qk_free(w->kc, w->ch);
	qk_free(w->kc, w->ca);
	free(w->lens);
	free(w->off);
	free(w->chunk);
	free(w->ids);
	free(w);
}

/* ---------------------------------------------------------------- storage */

/* rows [r0, r0 + n) of a store with `cols` columns as FP32: the store
 * itself when FP32, else converted into buf */
static float *load_rows(qc_walk *w, void *store, int64_t r0, int64_t n, int64_t cols, float *buf)
{
	if (w->dt == QC_DT_F32)
		return (float *)store + r0 * cols;
	(void)qk_to_f32(w->kc, buf, (const uint16_t *)store + r0 * cols, QC_DT_BF16,
	                (size_t)(n * cols));
	return buf;
}

static int store_rows(qc_walk *w, void *store, int64_t r0, int64_t n, int64_t cols,
                      const float *src)
{
	if (w->dt == QC_DT_F32) {
		float *d = (float *)store + r0 * cols;
		if (d != src)
			memcpy(d, src, (size_t)(n * cols) * sizeof *d);
		return 0;
	}
	return qc_from_f32((uint16_t *)store + r0 * cols, QC_DT_BF16, src, (size_t)(n * cols));
}

int qc_walk_hidden(qc_walk *w, int64_t r0, int64_t r1, float *x)
{
	if (r0 < 0 || r1 > w->T || r0 > r1)
		return qc_seterr(QC_EINVAL, "rows [%lld, %lld) outside the %lld tokens", (long long)r0,
		                 (long long)r1, (long long)w->T);
	if (w->dt == QC_DT_F32) {
		memcpy(x, (float *)w->xs + r0 * w->H, (size_t)((r1 - r0) * w->H) * sizeof *x);
		return 0;
	}
	return qk_to_f32(w->kc, x, (const uint16_t *)w->xs + r0 * w->H, QC_DT_BF16,
	                 (size_t)((r1 - r0) * w->H));
}

/* ---------------------------------------------------------------- setup */

int qc_walk_new(qc_walk **out, qc_model *m, const int32_t *ids, int64_t stride,
                const int32_t *lens, int64_t nseq, const qc_walk_opts *opts)
{
	*out = NULL;
	if (nseq < 0 || stride < 0)
		return qc_seterr(QC_EINVAL, "invalid token set shape");
	qc_walk *w = calloc(1, sizeof *w);
	if (!w)
		return qc_seterr(QC_ENOMEM, "out of memory");
	if (opts)
		w->o = *opts;
	if (w->o.chunk_tokens <= 0)
		w->o.chunk_tokens = 2048;
	w->dt = w->o.act_dtype == QC_DT_BF16 ? QC_DT_BF16 : QC_DT_F32;
	int rc = 0;
	if (w->o.act_dtype != QC_DT_INVALID && w->o.act_dtype != QC_DT_F32 &&
	    w->o.act_dtype != QC_DT_BF16) {
		rc = qc_seterr(QC_EINVAL, "activations can be stored as F32 or BF16, not %s",
		               qc_dtype_name(w->o.act_dtype));
		goto fail;
	}
	w->es = w->dt == QC_DT_F32 ? 4 : 2;
	w->m = m;
	w->kc = qc_model_kernels(m);
	const qc_config *c = qc_model_config(m);
	w->H = c->hidden_size;
	w->qd = c->num_attention_heads * c->head_dim;
	w->nseq = nseq;
	w->lens = malloc(sizeof *w->lens * (size_t)(nseq ? nseq : 1));
	w->off = malloc(sizeof *w->off * (size_t)(nseq + 1));
	w->chunk = malloc(sizeof *w->chunk * (size_t)(nseq + 1));
	if (!w->lens || !w->off || !w->chunk)
		goto nomem;
	w->off[0] = 0;
	for (int64_t i = 0; i < nseq; i++) {
		if (lens[i] < 0 || (stride && lens[i] > stride)) {
			rc = qc_seterr(QC_EINVAL, "sequence %lld has invalid length %d", (long long)i,
			               (int)lens[i]);
			goto fail;
		}
		w->lens[i] = lens[i];
		w->off[i + 1] = w->off[i] + lens[i];
	}
	w->T = w->off[nseq];
	if (w->T == 0) {
		rc = qc_seterr(QC_EINVAL, "the token set holds no tokens");
		goto fail;
	}
	/* chunks of whole sequences, about chunk_tokens tokens each */
	w->chunk[0] = 0;
	for (int64_t s = 0; s < nseq;) {
		int64_t n = 0, s1 = s;
		while (s1 < nseq && (s1 == s || n + w->lens[s1] <= w->o.chunk_tokens))
			n += w->lens[s1++];
		if (n > w->cmax)
			w->cmax = n;
		w->chunk[++w->nchunks] = s1;
		s = s1;
	}
	w->ids = malloc(sizeof *w->ids * (size_t)w->T);
	if (!w->ids)
		goto nomem;
	for (int64_t i = 0; i < nseq; i++)
		memcpy(w->ids + w->off[i], ids + i * stride, sizeof *w->ids * (size_t)w->lens[i]);
	w->xs = qk_alloc(w->kc, (size_t)(w->T * w->H) * w->es);
	w->ch = qk_alloc(w->kc, (size_t)(w->cmax * w->H) * sizeof(float));
	w->ca = qk_alloc(w->kc, (size_t)(w->cmax * w->qd) * sizeof(float));
	if (w->dt != QC_DT_F32)
		w->cx = qk_alloc(w->kc, (size_t)(w->cmax * w->H) * sizeof(float));
	if (!w->xs || !w->ch || !w->ca || (w->dt != QC_DT_F32 && !w->cx)) {
		rc = qc_seterr(QC_ENOMEM, "cannot allocate activations for %lld tokens", (long long)w->T);
		goto fail;
	}
	/* embed once, chunk by chunk */
	for (int64_t k = 0; k < w->nchunks; k++) {
		int64_t r0 = w->off[w->chunk[k]], n = w->off[w->chunk[k + 1]] - r0;
		float *x = w->dt == QC_DT_F32 ? (float *)w->xs + r0 * w->H : w->cx;
		if ((rc = qc_model_embed(m, w->ids + r0, n, x)))
			goto fail;
		if ((rc = store_rows(w, w->xs, r0, n, w->H, x)))
			goto fail;
	}
	qc_model_drop_embed(m);
	*out = w;
	return 0;
nomem:
	rc = qc_seterr(QC_ENOMEM, "out of memory");
fail:
	qc_walk_free(w);
	return rc;
}

/* ---------------------------------------------------------------- one layer */

typedef struct {
	const qc_walk_hooks *h;
	int layer;
	int64_t r0;
} down_obs;

static int observe_down(void *ctx, const float *act, int64_t row0, int64_t rows, int64_t cols)
{
	down_obs *d = ctx;
	return d->h->on_input(d->h->ctx, d->layer, QC_WALK_DOWN, act, d->r0 + row0, rows, cols);
}

/*
 * One chunk from point `start` to point `end` (QC_WALK_POINTS: the layer's
 * output). resume: start's inputs were observed in an earlier pass and the
 * weights reading them were updated since: recompute, do not observe.
 * What a later pass needs is stored: the attention output when end is O,
 * the residual stream after o_proj when end is GATE_UP or DOWN.
 */
static int run_chunk(qc_walk *w, const qc_layer *lw, const qc_walk_hooks *h, unsigned obs,
                     int64_t k, int start, int end, int resume)
{
	qc_model *m = w->m;
	int64_t s0 = w->chunk[k], s1 = w->chunk[k + 1];
	int64_t r0 = w->off[s0], T = w->off[s1] - r0;
	const int64_t *lens = w->lens + s0;
	int layer = lw->index;
#define OBS(p) ((obs & QC_WALK_BIT(p)) && (p) >= start && !(resume && start == (p)))
	float *x = load_rows(w, w->xs, r0, T, w->H, w->cx);
	int xdirty = 0;
	if (start == QC_WALK_QKV) {
		QC_TRY(qc_layer_attn_norm(m, lw, x, w->ch, T));
		if (OBS(QC_WALK_QKV))
			QC_TRY(h->on_input(h->ctx, layer, QC_WALK_QKV, w->ch, r0, T, w->H));
		if (end == QC_WALK_QKV)
			return 0;
		QC_TRY(qc_layer_attention(m, lw, w->ch, w->ca, lens, s1 - s0));
		if (OBS(QC_WALK_O))
			QC_TRY(h->on_input(h->ctx, layer, QC_WALK_O, w->ca, r0, T, w->qd));
		if (end == QC_WALK_O)
			return store_rows(w, w->as, r0, T, w->qd, w->ca);
	}
	if (start <= QC_WALK_O) {
		const float *a = start == QC_WALK_O ? load_rows(w, w->as, r0, T, w->qd, w->ca) : w->ca;
		QC_TRY(qc_layer_o_proj(m, lw, a, x, T));
		xdirty = 1;
	}
	QC_TRY(qc_layer_mlp_norm(m, lw, x, w->ch, T));
	if (OBS(QC_WALK_GATE_UP))
		QC_TRY(h->on_input(h->ctx, layer, QC_WALK_GATE_UP, w->ch, r0, T, w->H));
	if (end == QC_WALK_GATE_UP)
		return xdirty ? store_rows(w, w->xs, r0, T, w->H, x) : 0;
	down_obs d = { h, layer, r0 };
	int od = OBS(QC_WALK_DOWN);
#undef OBS
	QC_TRY(qc_layer_mlp(m, lw, w->ch, end == QC_WALK_DOWN ? NULL : x, T,
	                    od ? observe_down : NULL, &d));
	if (end == QC_WALK_DOWN)
		return xdirty ? store_rows(w, w->xs, r0, T, w->H, x) : 0;
	return store_rows(w, w->xs, r0, T, w->H, x);
}

int qc_walk_layer(qc_walk *w, const qc_walk_hooks *h)
{
	const qc_config *c = qc_model_config(w->m);
	if (w->next >= c->num_hidden_layers)
		return qc_seterr(QC_EINVAL, "every layer has been run");
	static const qc_walk_hooks none = { 0 };
	if (!h)
		h = &none;
	unsigned obs = h->on_input ? h->observe : 0;
	unsigned upd = h->on_update ? h->update : 0;
	int layer = w->next, rc;
	if (upd & QC_WALK_BIT(QC_WALK_O) && !w->as &&
	    !(w->as = qk_alloc(w->kc, (size_t)(w->T * w->qd) * w->es)))
		return qc_seterr(QC_ENOMEM, "cannot allocate attention outputs for %lld tokens",
		                 (long long)w->T);
	qc_layer lw;
	QC_TRY(qc_model_load_layer(w->m, layer, &lw));
	if (h->layer_begin && (rc = h->layer_begin(h->ctx, layer, &lw)))
		goto out;
	/* passes: each runs every chunk up to the next point with an update */
	int start = QC_WALK_QKV, resume = 0;
	unsigned done = 0;
	for (;;) {
		int end = QC_WALK_POINTS;
		for (int p = start; p < QC_WALK_POINTS; p++)
			if ((upd & QC_WALK_BIT(p)) && !(done & QC_WALK_BIT(p))) {
				end = p;
				break;
			}
		for (int64_t k = 0; k < w->nchunks; k++)
			if ((rc = run_chunk(w, &lw, h, obs, k, start, end, resume)))
				goto out;
		if (end == QC_WALK_POINTS)
			break;
		if ((rc = h->on_update(h->ctx, layer, (qc_walk_point)end, &lw)))
			goto out;
		done |= QC_WALK_BIT(end);
		start = end;
		resume = 1;
	}
	rc = h->layer_end ? h->layer_end(h->ctx, layer, &lw) : 0;
out:
	qc_layer_release(w->m, &lw);
	if (!rc)
		w->next++;
	return rc;
}

int qc_walk_run(qc_walk *w, const qc_walk_hooks *h)
{
	int n = (int)qc_model_config(w->m)->num_hidden_layers;
	while (w->next < n) {
		QC_TRY(qc_walk_layer(w, h));
		if (w->o.progress)
			w->o.progress(w->o.progress_ctx, w->next, n);
	}
	return 0;
}
