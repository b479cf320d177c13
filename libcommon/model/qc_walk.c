/* qc_walk.c - the calibration walker (see qc_walk.h). */
#include "qc_walk.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "qc_err.h"
#include "qc_io.h"

/*
 * Activation stores. A store holds one tensor of T rows (the residual
 * stream [T, H], the attention outputs [T, qd]) chunk by chunk, in the
 * storage dtype. Chunks stay in memory while the walk's budget allows
 * (opts.mem_budget); the others are spilled, each to its own
 * zstd-compressed file in a scratch directory, rewritten every time the
 * chunk is stored. The walker reads and writes whole chunks only (rows of
 * whole sequences), so a spilled chunk costs one decompression per read and
 * one compression per write, and memory holds at most one chunk of it.
 *
 * Held chunks are device memory (qk_alloc), converted to and from FP32 by
 * the kernels (qk_bf16_store / qk_bf16_load, qk_copy). Spilled chunks pass
 * through host memory: a chunk is downloaded into `stage` (in the storage
 * dtype: BF16 is rounded on the device first, in `dstage`) before it is
 * compressed, and uploaded from `stage` after it is decompressed.
 */
typedef struct store {
	const char *tag;          /* "x" or "a", for file names */
	int64_t cols;
	void **mem;               /* [nchunks]: the chunk's rows, or NULL when spilled */
	int any_spilled;
} store;

struct qc_walk {
	qc_model *m;
	qk_ctx *kc;
	int64_t H, qd, nseq, T, nchunks, cmax;
	int64_t *lens, *off;      /* [nseq], [nseq + 1] */
	int64_t *chunk;           /* [nchunks + 1]: first sequence of each chunk */
	int32_t *ids;             /* [T] packed */
	qc_dtype dt;              /* storage: F32 or BF16 */
	size_t es;
	store xs;                 /* [T, H] activations */
	store as;                 /* [T, qd] attention outputs (only when O is updated) */
	int have_as;
	float **down;             /* [nchunks]: the chunk's DOWN inputs [rows, I] kept
	                             between the passes at DOWN (FP32), or NULL */
	int have_down;
	int64_t I;
	float *cx, *ch, *ca;      /* chunk scratch: x (BF16 or spilled storage), h [C, H], a [C, qd] */
	float *cx2;               /* attention outputs read back from BF16 or spilled storage */
	uint64_t budget, held;    /* bytes of chunks allowed and held in memory */
	char *spill_dir;          /* scratch directory, made on first spill */
	void *stage;              /* host: a chunk in the storage dtype, for spilling */
	void *dstage;             /* device: a BF16 chunk on its way to or from stage */
	void *zbuf;               /* its compressed form */
	size_t zcap;
	ZSTD_CCtx *zc;
	ZSTD_DCtx *zd;
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

static int64_t chunk_rows(const qc_walk *w, int64_t k)
{
	return w->off[w->chunk[k + 1]] - w->off[w->chunk[k]];
}

static void store_free(qc_walk *w, store *st)
{
	if (st->mem) {
		for (int64_t k = 0; k < w->nchunks; k++)
			qk_free(w->kc, st->mem[k]);
		free(st->mem);
	}
	st->mem = NULL;
}

/* Give every chunk of a store memory while the budget allows; the rest
 * spill. Budget 0: everything in memory. */
static int store_init(qc_walk *w, store *st, const char *tag, int64_t cols)
{
	st->tag = tag;
	st->cols = cols;
	st->mem = calloc((size_t)(w->nchunks ? w->nchunks : 1), sizeof *st->mem);
	if (!st->mem)
		return qc_seterr(QC_ENOMEM, "out of memory");
	for (int64_t k = 0; k < w->nchunks; k++) {
		uint64_t bytes = (uint64_t)(chunk_rows(w, k) * cols) * w->es;
		if (w->budget && w->held + bytes > w->budget) {
			st->any_spilled = 1;
			continue;
		}
		if (!(st->mem[k] = qk_alloc(w->kc, bytes ? bytes : 1)))
			return qc_seterr(QC_ENOMEM, "cannot allocate activations for %lld tokens",
			                 (long long)w->T);
		w->held += bytes;
	}
	if (st->any_spilled) {
		size_t stage = (size_t)(w->cmax * cols) * w->es;
		size_t zb = ZSTD_compressBound((size_t)(w->cmax * (w->H > w->qd ? w->H : w->qd)) * w->es);
		void *ns = realloc(w->stage, stage > zb ? stage : zb);
		if (!ns)
			return qc_seterr(QC_ENOMEM, "out of memory");
		w->stage = ns;
		if (zb > w->zcap) {
			void *nz = realloc(w->zbuf, zb);
			if (!nz)
				return qc_seterr(QC_ENOMEM, "out of memory");
			w->zbuf = nz;
			w->zcap = zb;
		}
		if (!w->zc && !(w->zc = ZSTD_createCCtx()))
			return qc_seterr(QC_ENOMEM, "out of memory");
		if (!w->zd && !(w->zd = ZSTD_createDCtx()))
			return qc_seterr(QC_ENOMEM, "out of memory");
		if (w->dt == QC_DT_BF16 && !w->dstage &&
		    !(w->dstage = qk_alloc(w->kc, (size_t)(w->cmax * (w->H > w->qd ? w->H : w->qd)) * 2)))
			return qc_seterr(QC_ENOMEM, "cannot allocate a spill buffer for %lld tokens",
			                 (long long)w->cmax);
		if (!w->spill_dir) {
			const char *t = w->o.spill_dir ? w->o.spill_dir : getenv("TMPDIR");
			char tmpl[4096];
			snprintf(tmpl, sizeof tmpl, "%s/qwalk-XXXXXX", t && *t ? t : "/tmp");
			char *d = mkdtemp(tmpl);
			if (!d)
				return qc_seterr(QC_EIO, "cannot create a scratch directory in '%s':",
				                 t && *t ? t : "/tmp");
			if (!(w->spill_dir = strdup(d)))
				return qc_seterr(QC_ENOMEM, "out of memory");
		}
	}
	return 0;
}

static void spill_path(const qc_walk *w, const store *st, int64_t k, char *out, size_t n)
{
	snprintf(out, n, "%s/%s-%lld.zst", w->spill_dir, st->tag, (long long)k);
}

/* Write a spilled chunk (storage dtype bytes, host memory) compressed to its file. */
static int spill_write(qc_walk *w, const store *st, int64_t k, const void *data, size_t bytes)
{
	size_t z = ZSTD_compressCCtx(w->zc, w->zbuf, w->zcap, data, bytes, 1);
	if (ZSTD_isError(z))
		return qc_seterr(QC_EIO, "cannot compress activations: %s", ZSTD_getErrorName(z));
	char path[4200];
	spill_path(w, st, k, path, sizeof path);
	FILE *f = fopen(path, "wb");
	if (!f)
		return qc_seterr(QC_EIO, "cannot write '%s':", path);
	int ok = fwrite(w->zbuf, 1, z, f) == z;
	ok &= fclose(f) == 0;
	return ok ? 0 : qc_seterr(QC_EIO, "cannot write '%s':", path);
}

/* Read a spilled chunk into data (host memory, bytes in the storage dtype). */
static int spill_read(qc_walk *w, const store *st, int64_t k, void *data, size_t bytes)
{
	char path[4200];
	spill_path(w, st, k, path, sizeof path);
	FILE *f = fopen(path, "rb");
	if (!f)
		return qc_seterr(QC_EIO, "cannot read '%s':", path);
	size_t z = fread(w->zbuf, 1, w->zcap, f);
	int err = ferror(f);
	fclose(f);
	if (err)
		return qc_seterr(QC_EIO, "cannot read '%s':", path);
	size_t got = ZSTD_decompressDCtx(w->zd, data, bytes, w->zbuf, z);
	if (ZSTD_isError(got) || got != bytes)
		return qc_seterr(QC_EIO, "scratch file '%s' is damaged", path);
	return 0;
}

void qc_walk_free(qc_walk *w)
{
	if (!w)
		return;
	store_free(w, &w->xs);
	store_free(w, &w->as);
	if (w->down)
		for (int64_t k = 0; k < w->nchunks; k++)
			qk_free(w->kc, w->down[k]);
	free(w->down);
	qk_free(w->kc, w->cx);
	qk_free(w->kc, w->cx2);
	qk_free(w->kc, w->ch);
	qk_free(w->kc, w->ca);
	free(w->stage);
	qk_free(w->kc, w->dstage);
	free(w->zbuf);
	ZSTD_freeCCtx(w->zc);
	ZSTD_freeDCtx(w->zd);
	if (w->spill_dir) {
		qc_rmtree(w->spill_dir);
		free(w->spill_dir);
	}
	free(w->lens);
	free(w->off);
	free(w->chunk);
	free(w->ids);
	free(w);
}

/* ---------------------------------------------------------------- storage */

/* Chunk k of a store as FP32 (device memory): the store's memory itself
 * when it is FP32 and held, else converted (or decompressed and uploaded)
 * into buf (device, [rows, cols]). NULL on failure. */
static float *load_chunk(qc_walk *w, store *st, int64_t k, float *buf)
{
	size_t n = (size_t)(chunk_rows(w, k) * st->cols);
	if (st->mem[k]) {
		if (w->dt == QC_DT_F32)
			return st->mem[k];
		return qk_bf16_load(w->kc, buf, st->mem[k], n) ? NULL : buf;
	}
	if (w->dt == QC_DT_F32) {
		if (spill_read(w, st, k, w->stage, n * 4) || qk_upload(w->kc, buf, w->stage, n * 4))
			return NULL;
		return buf;
	}
	if (spill_read(w, st, k, w->stage, n * 2) || qk_upload(w->kc, w->dstage, w->stage, n * 2) ||
	    qk_bf16_load(w->kc, buf, w->dstage, n))
		return NULL;
	return buf;
}

/* Store src (device, FP32 [rows, cols]) as chunk k of st. */
static int store_chunk(qc_walk *w, store *st, int64_t k, const float *src)
{
	size_t n = (size_t)(chunk_rows(w, k) * st->cols);
	if (st->mem[k]) {
		if (w->dt == QC_DT_F32)
			return st->mem[k] != src ? qk_copy(w->kc, st->mem[k], src, n * sizeof(float)) : 0;
		return qk_bf16_store(w->kc, st->mem[k], src, n);
	}
	if (w->dt == QC_DT_F32) {
		QC_TRY(qk_download(w->kc, w->stage, src, n * 4));
		return spill_write(w, st, k, w->stage, n * 4);
	}
	QC_TRY(qk_bf16_store(w->kc, w->dstage, src, n));
	QC_TRY(qk_download(w->kc, w->stage, w->dstage, n * 2));
	return spill_write(w, st, k, w->stage, n * 2);
}

int qc_walk_hidden(qc_walk *w, int64_t r0, int64_t r1, float *x)
{
	if (r0 < 0 || r1 > w->T || r0 > r1)
		return qc_seterr(QC_EINVAL, "rows [%lld, %lld) outside the %lld tokens", (long long)r0,
		                 (long long)r1, (long long)w->T);
	/* the chunks that overlap [r0, r1), each read whole */
	for (int64_t k = 0; k < w->nchunks && r0 < r1; k++) {
		int64_t c0 = w->off[w->chunk[k]], c1 = w->off[w->chunk[k + 1]];
		if (c1 <= r0 || c0 >= r1)
			continue;
		float *rows = load_chunk(w, &w->xs, k, w->cx);
		if (!rows)
			return qc_errctx(QC_EIO, "reading activations");
		int64_t a = r0 > c0 ? r0 : c0, b = r1 < c1 ? r1 : c1;
		QC_TRY(qk_copy(w->kc, x + (a - r0) * w->H, rows + (a - c0) * w->H,
		               (size_t)((b - a) * w->H) * sizeof *x));
	}
	return 0;
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
	w->I = c->intermediate_size;
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
	w->budget = w->o.mem_budget;
	if ((rc = store_init(w, &w->xs, "x", w->H)))
		goto fail;
	w->ch = qk_alloc(w->kc, (size_t)(w->cmax * w->H) * sizeof(float));
	w->ca = qk_alloc(w->kc, (size_t)(w->cmax * w->qd) * sizeof(float));
	/* every chunk passes through cx except held FP32 ones, read in place */
	w->cx = qk_alloc(w->kc, (size_t)(w->cmax * w->H) * sizeof(float));
	if (!w->ch || !w->ca || !w->cx) {
		rc = qc_seterr(QC_ENOMEM, "cannot allocate activations for %lld tokens", (long long)w->T);
		goto fail;
	}
	/* embed once, chunk by chunk */
	for (int64_t k = 0; k < w->nchunks; k++) {
		int64_t r0 = w->off[w->chunk[k]], n = chunk_rows(w, k);
		float *x = w->dt == QC_DT_F32 && w->xs.mem[k] ? w->xs.mem[k] : w->cx;
		if ((rc = qc_model_embed(m, w->ids + r0, n, x)))
			goto fail;
		if ((rc = store_chunk(w, &w->xs, k, x)))
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

/* The chunks whose DOWN inputs fit in opts.keep_down, given memory once
 * (at the first layer with an update at DOWN) and reused by every layer. */
static int down_init(qc_walk *w)
{
	w->have_down = 1;
	if (!w->o.keep_down)
		return 0;
	if (!(w->down = calloc((size_t)w->nchunks, sizeof *w->down)))
		return qc_seterr(QC_ENOMEM, "out of memory");
	uint64_t held = 0;
	for (int64_t k = 0; k < w->nchunks; k++) {
		uint64_t bytes = (uint64_t)(chunk_rows(w, k) * w->I) * sizeof(float);
		if (bytes == 0 || held + bytes > w->o.keep_down)
			continue;
		if (!(w->down[k] = qk_alloc(w->kc, bytes)))
			return qc_seterr(QC_ENOMEM, "cannot allocate down_proj inputs for %lld tokens",
			                 (long long)chunk_rows(w, k));
		held += bytes;
	}
	return 0;
}

typedef struct {
	qc_walk *w;
	const qc_walk_hooks *h;
	int layer;
	int64_t r0;
	int observe;              /* pass the inputs to h->on_input */
	float *keep;              /* [rows, I] of the chunk to keep them in, or NULL */
} down_obs;

static int observe_down(void *ctx, const float *act, int64_t row0, int64_t rows, int64_t cols)
{
	down_obs *d = ctx;
	if (d->keep)
		QC_TRY(qk_copy(d->w->kc, d->keep + row0 * cols, act, (size_t)(rows * cols) * sizeof *act));
	if (!d->observe)
		return 0;
	return d->h->on_input(d->h->ctx, d->layer, QC_WALK_DOWN, act, d->r0 + row0, rows, cols);
}

/*
 * One chunk from point `start` to point `end` (QC_WALK_POINTS: the layer's
 * output). seen: the points whose inputs were observed in an earlier pass
 * (the weights reading them were updated since): recompute, do not observe.
 * What a later pass needs is stored: the attention output when end is O,
 * the residual stream after o_proj when end is GATE_UP or DOWN.
 */
static int run_chunk(qc_walk *w, const qc_layer *lw, const qc_walk_hooks *h, unsigned obs,
                     int64_t k, int start, int end, unsigned seen)
{
	qc_model *m = w->m;
	int64_t s0 = w->chunk[k], s1 = w->chunk[k + 1];
	int64_t r0 = w->off[s0], T = w->off[s1] - r0;
	const int64_t *lens = w->lens + s0;
	int layer = lw->index;
#define OBS(p) ((obs & QC_WALK_BIT(p)) && (p) >= start && !(seen & QC_WALK_BIT(p)))
	float *x = load_chunk(w, &w->xs, k, w->cx);
	if (!x)
		return qc_errctx(QC_EIO, "reading activations");
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
			return store_chunk(w, &w->as, k, w->ca);
	}
	if (start <= QC_WALK_O) {
		const float *a = start == QC_WALK_O ? load_chunk(w, &w->as, k, w->ca) : w->ca;
		if (!a)
			return qc_errctx(QC_EIO, "reading attention outputs");
		QC_TRY(qc_layer_o_proj(m, lw, a, x, T));
		xdirty = 1;
	}
	float *kept = w->down && (h->same_inputs & QC_WALK_BIT(QC_WALK_DOWN)) ? w->down[k] : NULL;
	if (start == QC_WALK_DOWN && kept) {
		/* after the update at DOWN: its inputs were kept by the last pass */
		QC_TRY(qc_layer_down(m, lw, kept, x, T));
		return store_chunk(w, &w->xs, k, x);
	}
	QC_TRY(qc_layer_mlp_norm(m, lw, x, w->ch, T));
	if (OBS(QC_WALK_GATE_UP))
		QC_TRY(h->on_input(h->ctx, layer, QC_WALK_GATE_UP, w->ch, r0, T, w->H));
	if (end == QC_WALK_GATE_UP)
		return xdirty ? store_chunk(w, &w->xs, k, x) : 0;
	down_obs d = { w, h, layer, r0, OBS(QC_WALK_DOWN), end == QC_WALK_DOWN ? kept : NULL };
#undef OBS
	QC_TRY(qc_layer_mlp(m, lw, w->ch, end == QC_WALK_DOWN ? NULL : x, T,
	                    d.observe || d.keep ? observe_down : NULL, &d));
	if (end == QC_WALK_DOWN)
		return xdirty ? store_chunk(w, &w->xs, k, x) : 0;
	return store_chunk(w, &w->xs, k, x);
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
	if (upd & QC_WALK_BIT(QC_WALK_O) && !w->have_as) {
		QC_TRY(store_init(w, &w->as, "a", w->qd));
		w->have_as = 1;
	}
	if (upd & QC_WALK_BIT(QC_WALK_DOWN) && h->same_inputs & QC_WALK_BIT(QC_WALK_DOWN) &&
	    !w->have_down)
		QC_TRY(down_init(w));
	qc_layer lw;
	QC_TRY(qc_model_load_layer(w->m, layer, &lw));
	if (h->layer_begin && (rc = h->layer_begin(h->ctx, layer, &lw)))
		goto out;
	/* passes: each runs every chunk up to the next point with an update */
	int start = QC_WALK_QKV;
	unsigned seen = 0;
	unsigned done = 0;
	for (;;) {
		int end = QC_WALK_POINTS;
		for (int p = start; p < QC_WALK_POINTS; p++)
			if ((upd & QC_WALK_BIT(p)) && !(done & QC_WALK_BIT(p))) {
				end = p;
				break;
			}
		for (int64_t k = 0; k < w->nchunks; k++)
			if ((rc = run_chunk(w, &lw, h, obs, k, start, end, seen)))
				goto out;
		if (end == QC_WALK_POINTS)
			break;
		if ((rc = h->on_update(h->ctx, layer, (qc_walk_point)end, &lw)))
			goto out;
		done |= QC_WALK_BIT(end);
		for (int p = start; p <= end; p++)
			seen |= QC_WALK_BIT(p);
		/* an update at O that changed v_proj: the attention outputs are
		 * recomputed from the layer's input, which no pass has replaced yet */
		start = end == QC_WALK_O && (h->restart & QC_WALK_BIT(QC_WALK_O)) ? QC_WALK_QKV : end;
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
