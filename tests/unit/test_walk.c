/* test_walk.c - the calibration walker: plain runs against the reference,
 * the order and coverage of hook calls, true-sequential updates (later
 * points see the replaced weights of earlier ones), BF16 storage, errors. */
#include "tutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "qc_err.h"
#include "qc_model.h"
#include "qc_walk.h"
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

/* a token set [N, L] with right padding (-1 beyond each length, which the
 * walker must never read) */
#define N 5
#define L 13
static const int32_t lens[N] = { 13, 4, 0, 9, 1 };

static void make_tokens(int32_t *ids, int64_t V)
{
	for (int i = 0; i < N; i++)
		for (int j = 0; j < L; j++)
			ids[i * L + j] = j < lens[i] ? (int32_t)((i * 31 + j * 7 + 3) % V) : -1;
}

static void small_model(tm_model *tm, int tied, uint64_t seed)
{
	qc_config cfg;
	tm_config(&cfg, 32, 72, 2, 4, 2, 8, 45, tied);
	tm_make(tm, &cfg, QC_DT_F32, seed);
}

/* final hidden states -> logits through the model's head */
static float *walk_logits(qc_walk *w, qc_model *m)
{
	int64_t T = qc_walk_tokens(w), H = qc_model_config(m)->hidden_size, V = qc_model_config(m)->vocab_size;
	float *x = malloc(sizeof(float) * (size_t)(T * H)), *lg = malloc(sizeof(float) * (size_t)(T * V));
	tu_assert_rc(qc_walk_hidden(w, 0, T, x), 0);
	tu_assert_rc(qc_model_logits(m, x, T, lg), 0);
	free(x);
	return lg;
}

static void test_plain(void **state)
{
	(void)state;
	tm_model tm;
	small_model(&tm, 0, 1);
	int32_t ids[N * L];
	make_tokens(ids, 45);
	int64_t T = 13 + 4 + 9 + 1, plens[N];
	int32_t packed[27];
	for (int i = 0, t = 0; i < N; i++) {
		plens[i] = lens[i];
		for (int j = 0; j < lens[i]; j++)
			packed[t++] = ids[i * L + j];
	}
	double *ref = malloc(sizeof(double) * (size_t)(T * 45));
	tm_ref_logits(&tm, packed, plens, N, NULL, NULL, NULL, ref);
	int64_t chunks[] = { 0, 1, 14 };   /* default; one sequence per chunk; mixed */
	for (int c = 0; c < 3; c++) {
		qc_model *m;
		tu_assert_rc(qc_model_new(&m, &tm.cfg, &tm.src, NULL, kc, NULL), 0);
		qc_walk *w;
		qc_walk_opts o = { .chunk_tokens = chunks[c] };
		tu_assert_rc(qc_walk_new(&w, m, ids, L, lens, N, &o), 0);
		assert_int_equal(qc_walk_tokens(w), T);
		assert_int_equal(qc_walk_offsets(w)[N], T);
		assert_memory_equal(qc_walk_ids(w), packed, sizeof packed);
		assert_int_equal(qc_walk_next(w), 0);
		tu_assert_rc(qc_walk_layer(w, NULL), 0);
		assert_int_equal(qc_walk_next(w), 1);
		tu_assert_rc(qc_walk_run(w, NULL), 0);
		assert_int_equal(qc_walk_next(w), 2);
		tu_assert_rc(qc_walk_layer(w, NULL), QC_EINVAL);
		float *lg = walk_logits(w, m);
		double e = tm_relerr(lg, ref, (size_t)(T * 45));
		assert_true(e < 1e-4);
		free(lg);
		qc_walk_free(w);
		qc_model_free(m);
	}
	assert_int_equal(tm.gets, tm.releases);
	free(ref);
	tm_free(&tm);
}

/* ---------------------------------------------------------------- hook order and coverage */

typedef struct {
	char log[4096];
	int64_t covered[2][QC_WALK_POINTS];   /* rows observed per layer and point */
	int64_t next_row[2][QC_WALK_POINTS];  /* rows arrive in order */
	int fail_at;                          /* return an error at this update point (-1 none) */
} events;

static void logf_(events *e, const char *s)
{
	strncat(e->log, s, sizeof e->log - strlen(e->log) - 1);
}

static int ev_begin(void *ctx, int layer, qc_layer *lw)
{
	(void)lw;
	char b[16];
	snprintf(b, sizeof b, "B%d ", layer);
	logf_(ctx, b);
	return 0;
}

static int ev_input(void *ctx, int layer, qc_walk_point p, const float *x, int64_t row0,
                    int64_t rows, int64_t cols)
{
	events *e = ctx;
	(void)x;
	(void)cols;
	assert_int_equal(row0, e->next_row[layer][p]);
	e->next_row[layer][p] += rows;
	e->covered[layer][p] += rows;
	/* log a point once per run of consecutive calls */
	char b[16];
	snprintf(b, sizeof b, "%s ", qc_walk_point_name(p));
	size_t n = strlen(e->log), k = strlen(b);
	if (n < k || strcmp(e->log + n - k, b) != 0)
		logf_(e, b);
	return 0;
}

static int ev_update(void *ctx, int layer, qc_walk_point p, qc_layer *lw)
{
	events *e = ctx;
	(void)lw;
	char b[16];
	snprintf(b, sizeof b, "U%s ", qc_walk_point_name(p));
	logf_(e, b);
	return (int)p == e->fail_at ? qc_seterr(QC_EINVAL, "update %d refused", (int)p) : 0;
}

static int ev_end(void *ctx, int layer, qc_layer *lw)
{
	(void)lw;
	char b[16];
	snprintf(b, sizeof b, "E%d ", layer);
	logf_(ctx, b);
	return 0;
}

static void run_events(tm_model *tm, const int32_t *ids, unsigned upd, int64_t chunk, events *e)
{
	qc_model *m;
	qc_model_opts mo;
	qc_model_opts_default(&mo);
	mo.mlp_rows = 5;   /* several DOWN blocks per chunk */
	tu_assert_rc(qc_model_new(&m, &tm->cfg, &tm->src, NULL, kc, &mo), 0);
	qc_walk *w;
	qc_walk_opts o = { .chunk_tokens = chunk };
	tu_assert_rc(qc_walk_new(&w, m, ids, L, lens, N, &o), 0);
	qc_walk_hooks h = { e, 0xf, upd, ev_begin, ev_input, ev_update, ev_end, 0, 0 };
	int rc = qc_walk_run(w, &h);
	if (e->fail_at >= 0) {
		tu_assert_rc(rc, QC_EINVAL);
		assert_string_equal(qc_errmsg(), "update 1 refused");
	} else {
		tu_assert_rc(rc, 0);
	}
	qc_walk_free(w);
	qc_model_free(m);
}

static void test_events(void **state)
{
	(void)state;
	tm_model tm;
	small_model(&tm, 1, 2);
	int32_t ids[N * L];
	make_tokens(ids, 45);
	/* every point updated: strict true-sequential order, each point's rows
	 * all observed before its update */
	events e = { .fail_at = -1 };
	run_events(&tm, ids, 0xf, 8, &e);
	assert_string_equal(e.log, "B0 qkv Uqkv o Uo gate_up Ugate_up down Udown E0 "
	                           "B1 qkv Uqkv o Uo gate_up Ugate_up down Udown E1 ");
	for (int l = 0; l < 2; l++)
		for (int p = 0; p < QC_WALK_POINTS; p++)
			assert_int_equal(e.covered[l][p], 27);
	/* no updates: one pass, every point of a chunk before the next chunk */
	events f = { .fail_at = -1 };
	run_events(&tm, ids, 0, 1000, &f);
	assert_string_equal(f.log, "B0 qkv o gate_up down E0 B1 qkv o gate_up down E1 ");
	for (int p = 0; p < QC_WALK_POINTS; p++)
		assert_int_equal(f.covered[1][p], 27);
	/* only gate_up updated: q/k/v/o observed in the first pass with it */
	events g = { .fail_at = -1 };
	run_events(&tm, ids, QC_WALK_BIT(QC_WALK_GATE_UP), 1000, &g);
	assert_string_equal(g.log, "B0 qkv o gate_up Ugate_up down E0 B1 qkv o gate_up Ugate_up down E1 ");
	/* a hook's error stops the walk and is returned */
	events x = { .fail_at = 1 };
	run_events(&tm, ids, 0xf, 8, &x);
	assert_string_equal(x.log, "B0 qkv Uqkv o Uo ");
	assert_int_equal(tm.gets, tm.releases);
	tm_free(&tm);
}

/* ---------------------------------------------------------------- true-sequential updates */

/* the replacement weights: w * (1 + 0.05 ((i % 7) - 3)), a stand-in for
 * quantized values; w is device memory, changed on the host through a copy
 * (under QK_DEBUG_MEMORY=1 a direct access faults) */
static void perturb(float *w, int64_t n)
{
	float *h = malloc(sizeof *h * (size_t)n);
	assert_non_null(h);
	tu_assert_rc(qk_download(kc, h, w, sizeof *h * (size_t)n), 0);
	for (int64_t i = 0; i < n; i++)
		h[i] *= 1.0f + 0.05f * (float)((i % 7) - 3);
	tu_assert_rc(qk_upload(kc, w, h, sizeof *h * (size_t)n), 0);
	free(h);
}

typedef struct {
	float *in[2][QC_WALK_POINTS];        /* captured inputs [T, cols] per layer, point */
	int64_t cols[QC_WALK_POINTS];
} capture;

static int cap_input(void *ctx, int layer, qc_walk_point p, const float *x, int64_t row0,
                     int64_t rows, int64_t cols)
{
	capture *c = ctx;
	return qk_download(kc, c->in[layer][p] + row0 * cols, x, sizeof(float) * (size_t)(rows * cols));
}

static int cap_update(void *ctx, int layer, qc_walk_point p, qc_layer *lw)
{
	(void)ctx;
	(void)layer;
	qc_linear first;
	int n;
	qc_walk_point_linears(p, &first, &n);
	for (int l = first; l < (int)first + n; l++)
		perturb(lw->w[l], lw->out[l] * lw->in[l]);
	return 0;
}

static float *walk_capture(tm_model *tm, const int32_t *ids, int update, capture *c,
                           qc_dtype dt)
{
	qc_model *m;
	tu_assert_rc(qc_model_new(&m, &tm->cfg, &tm->src, NULL, kc, NULL), 0);
	qc_walk *w;
	/* DOWN inputs kept for the first chunk: observed and kept alike */
	qc_walk_opts o = { .chunk_tokens = 10, .act_dtype = dt,
	                   .keep_down = (uint64_t)(lens[0] * tm->cfg.intermediate_size * 4) };
	tu_assert_rc(qc_walk_new(&w, m, ids, L, lens, N, &o), 0);
	int64_t T = qc_walk_tokens(w);
	const qc_config *cf = &tm->cfg;
	c->cols[0] = c->cols[2] = cf->hidden_size;
	c->cols[1] = cf->num_attention_heads * cf->head_dim;
	c->cols[3] = cf->intermediate_size;
	for (int l = 0; l < 2; l++)
		for (int p = 0; p < QC_WALK_POINTS; p++)
			c->in[l][p] = calloc((size_t)(T * c->cols[p]), sizeof(float));
	qc_walk_hooks h = { c, 0xf, update ? 0xf : 0, NULL, cap_input, cap_update, NULL, 0,
	                    QC_WALK_BIT(QC_WALK_DOWN) };
	tu_assert_rc(qc_walk_run(w, &h), 0);
	float *lg = walk_logits(w, m);
	qc_walk_free(w);
	qc_model_free(m);
	return lg;
}

static void free_capture(capture *c)
{
	for (int l = 0; l < 2; l++)
		for (int p = 0; p < QC_WALK_POINTS; p++)
			free(c->in[l][p]);
}

static double maxrel(const float *a, const float *b, size_t n)
{
	double mx = 0, d = 0;
	for (size_t i = 0; i < n; i++) {
		mx = fmax(mx, fabs(b[i]));
		d = fmax(d, fabs((double)a[i] - b[i]));
	}
	return d / mx;
}

static void test_true_sequential(void **state)
{
	(void)state;
	tm_model tm, mod;
	small_model(&tm, 0, 3);
	small_model(&mod, 0, 3);
	/* mod: every Linear replaced from the start */
	for (size_t i = 0; i < mod.n; i++)
		if (strstr(mod.t[i].name, "_proj.weight"))
			perturb((float *)mod.t[i].data, qc_numel(mod.t[i].ndim, mod.t[i].shape));
	int32_t ids[N * L];
	make_tokens(ids, 45);
	capture a = { 0 }, b = { 0 }, o = { 0 };
	/* walking tm, replacing each point's weights on update ... */
	float *la = walk_capture(&tm, ids, 1, &a, QC_DT_F32);
	/* ... equals walking the replaced model with no updates, at every
	 * observed point of every layer and at the output: each point saw the
	 * replaced weights of every point before it */
	float *lb = walk_capture(&mod, ids, 0, &b, QC_DT_F32);
	float *lo = walk_capture(&tm, ids, 0, &o, QC_DT_F32);
	int64_t T = 27;
	for (int l = 0; l < 2; l++)
		for (int p = 0; p < QC_WALK_POINTS; p++) {
			size_t n = (size_t)(T * a.cols[p]);
			assert_true(maxrel(a.in[l][p], b.in[l][p], n) < 1e-5);
			/* and it differs from the unmodified walk except at layer 0's
			 * QKV point, which precedes every replacement */
			double d = maxrel(o.in[l][p], b.in[l][p], n);
			if (l == 0 && p == QC_WALK_QKV)
				assert_true(d == 0);
			else
				assert_true(d > 1e-3);
		}
	assert_true(maxrel(la, lb, (size_t)(T * 45)) < 1e-5);
	/* BF16 storage: close to FP32, not equal */
	capture c = { 0 };
	float *lc = walk_capture(&tm, ids, 1, &c, QC_DT_BF16);
	double e = maxrel(lc, la, (size_t)(T * 45));
	print_message("BF16 activations vs FP32: %.2e\n", e);
	assert_true(e > 0 && e < 2e-2);
	free(la); free(lb); free(lo); free(lc);
	free_capture(&a); free_capture(&b); free_capture(&o); free_capture(&c);
	tm_free(&tm);
	tm_free(&mod);
}

/* ---------------------------------------------------------------- spilling */

/* Linear k's weights times 0.875. */
static void shrink_linear(qc_layer *lw, int k)
{
	size_t n = (size_t)(lw->out[k] * lw->in[k]);
	float *h = malloc(sizeof *h * n);
	assert_non_null(h);
	tu_assert_rc(qk_download(kc, h, lw->w[k], sizeof *h * n), 0);
	for (size_t i = 0; i < n; i++)
		h[i] *= 0.875f;
	tu_assert_rc(qk_upload(kc, lw->w[k], h, sizeof *h * n), 0);
	free(h);
}

static int shrink_update(void *ctx, int layer, qc_walk_point p, qc_layer *lw)
{
	(void)ctx;
	(void)layer;
	qc_linear first;
	int count;
	qc_walk_point_linears(p, &first, &count);
	for (int k = (int)first; k < (int)first + count; k++)
		shrink_linear(lw, k);
	return 0;
}

/* As shrink_update, and at DOWN up_proj too (what an up -> down smoothing
 * changes): DOWN inputs computed before that update are stale. */
static int shrink_update_up(void *ctx, int layer, qc_walk_point p, qc_layer *lw)
{
	if (p == QC_WALK_DOWN)
		shrink_linear(lw, QC_LIN_UP);
	return shrink_update(ctx, layer, p, lw);
}

static float *spill_run(tm_model *tm, const int32_t *ids, qc_dtype dt, uint64_t budget,
                        uint64_t keep_down, int up_too, unsigned same_inputs)
{
	qc_model *m;
	tu_assert_rc(qc_model_new(&m, &tm->cfg, &tm->src, NULL, kc, NULL), 0);
	qc_walk *w;
	qc_walk_opts o = { .chunk_tokens = 1, .act_dtype = dt, .mem_budget = budget,
	                   .keep_down = keep_down };
	tu_assert_rc(qc_walk_new(&w, m, ids, L, lens, N, &o), 0);
	/* every point updated: the attention-output store is used too */
	qc_walk_hooks h = { NULL, 0, 0xf, NULL, NULL, up_too ? shrink_update_up : shrink_update, NULL,
	                    0, same_inputs };
	tu_assert_rc(qc_walk_run(w, &h), 0);
	int64_t T = qc_walk_tokens(w), H = qc_model_config(m)->hidden_size;
	float *x = malloc(sizeof(float) * (size_t)(T * H));
	/* read back in pieces that cut across chunks */
	for (int64_t r = 0; r < T; r += 5)
		tu_assert_rc(qc_walk_hidden(w, r, r + 5 < T ? r + 5 : T, x + r * H), 0);
	qc_walk_free(w);
	qc_model_free(m);
	return x;
}

/* Activations spilled to zstd scratch files give the same bits as held
 * ones, all spilled or some, in FP32 and BF16 storage. */
static void test_spill(void **state)
{
	(void)state;
	tm_model tm;
	small_model(&tm, 1, 7);
	int32_t ids[N * L];
	make_tokens(ids, 45);
	size_t n = (size_t)(27 * 32);
	const qc_dtype dts[2] = { QC_DT_F32, QC_DT_BF16 };
	for (int d = 0; d < 2; d++) {
		const unsigned down = QC_WALK_BIT(QC_WALK_DOWN);
		float *ref = spill_run(&tm, ids, dts[d], 0, 0, 0, down);
		/* 1 byte: everything spills; 600 bytes: the first chunks stay */
		const uint64_t budgets[2] = { 1, 600 };
		for (int b = 0; b < 2; b++) {
			float *x = spill_run(&tm, ids, dts[d], budgets[b], 0, 0, down);
			assert_memory_equal(x, ref, n * sizeof(float));
			free(x);
		}
		/* DOWN inputs kept between the passes at DOWN instead of a second
		 * gate/up: for every chunk, for the first sequence's only, with
		 * everything spilled: the same bits */
		const uint64_t keeps[3] = { UINT64_MAX, (uint64_t)lens[0] * tm.cfg.intermediate_size * 4,
		                            UINT64_MAX };
		for (int k = 0; k < 3; k++) {
			float *x = spill_run(&tm, ids, dts[d], k == 2 ? 1 : 0, keeps[k], 0, down);
			assert_memory_equal(x, ref, n * sizeof(float));
			free(x);
		}
		free(ref);
		/* an update at DOWN that changes up_proj too: without same_inputs
		 * nothing kept is used (the same bits as keeping nothing); claiming
		 * same_inputs would use stale inputs (other bits) */
		ref = spill_run(&tm, ids, dts[d], 0, 0, 1, 0);
		float *x = spill_run(&tm, ids, dts[d], 0, UINT64_MAX, 1, 0);
		assert_memory_equal(x, ref, n * sizeof(float));
		free(x);
		x = spill_run(&tm, ids, dts[d], 0, UINT64_MAX, 1, down);
		assert_true(memcmp(x, ref, n * sizeof(float)) != 0);
		free(x);
		free(ref);
	}
	/* spilling really happens: a scratch directory that cannot be made fails */
	qc_model *m;
	tu_assert_rc(qc_model_new(&m, &tm.cfg, &tm.src, NULL, kc, NULL), 0);
	qc_walk *w;
	qc_walk_opts o = { .chunk_tokens = 1, .mem_budget = 1, .spill_dir = "/nonexistent/qc" };
	tu_assert_rc(qc_walk_new(&w, m, ids, L, lens, N, &o), QC_EIO);
	qc_model_free(m);
	assert_int_equal(tm.gets, tm.releases);
	tm_free(&tm);
}

static void test_errors(void **state)
{
	(void)state;
	tm_model tm;
	small_model(&tm, 0, 4);
	int32_t ids[N * L];
	make_tokens(ids, 45);
	qc_model *m;
	tu_assert_rc(qc_model_new(&m, &tm.cfg, &tm.src, NULL, kc, NULL), 0);
	qc_walk *w;
	ids[3 * L + 2] = 45;      /* outside the vocabulary of 45 */
	tu_assert_rc(qc_walk_new(&w, m, ids, L, lens, N, NULL), QC_EFORMAT);
	assert_null(w);
	ids[3 * L + 2] = 0;
	int32_t bad[N] = { 13, 4, 0, 14, 1 };   /* longer than a row */
	tu_assert_rc(qc_walk_new(&w, m, ids, L, bad, N, NULL), QC_EINVAL);
	int32_t zero[N] = { 0 };
	tu_assert_rc(qc_walk_new(&w, m, ids, L, zero, N, NULL), QC_EINVAL);
	qc_walk_opts o = { .act_dtype = QC_DT_F16 };
	tu_assert_rc(qc_walk_new(&w, m, ids, L, lens, N, &o), QC_EINVAL);
	/* a layer that fails to load stops the walk with its message */
	tu_assert_rc(qc_walk_new(&w, m, ids, L, lens, N, NULL), 0);
	tm_remove(&tm, "model.layers.1.self_attn.o_proj.weight");
	tu_assert_rc(qc_walk_run(w, NULL), QC_ENOTFOUND);
	assert_non_null(strstr(qc_errmsg(), "model.layers.1.self_attn.o_proj.weight"));
	assert_int_equal(qc_walk_next(w), 1);
	qc_walk_free(w);
	qc_walk_free(NULL);
	qc_model_free(m);
	tm_free(&tm);
}

/* ---------------------------------------------------------------- restart after O */

/* An update at O that doubles v_proj and halves o_proj: the same function,
 * exactly, in FP32. With restart the walk recomputes the attention with the
 * new v, so every later activation equals a plain walk's bit for bit, and
 * q/k/v and o inputs are observed once each; without it the held attention
 * outputs are stale and the results differ. */
typedef struct {
	qk_ctx *kc;
	int64_t rows[QC_WALK_POINTS];
} vo_ctx;

static int vo_input(void *ctx, int layer, qc_walk_point p, const float *x, int64_t row0,
                    int64_t rows, int64_t cols)
{
	(void)layer, (void)x, (void)row0, (void)cols;
	((vo_ctx *)ctx)->rows[p] += rows;
	return 0;
}

static int vo_update(void *ctx, int layer, qc_walk_point p, qc_layer *lw)
{
	vo_ctx *c = ctx;
	(void)layer;
	if (p != QC_WALK_O)
		return 0;
	int64_t nv = lw->out[QC_LIN_V], no = lw->out[QC_LIN_O], qd = lw->in[QC_LIN_O];
	float *two = malloc(sizeof(float) * (size_t)(nv > qd ? nv : qd));
	for (int64_t i = 0; i < (nv > qd ? nv : qd); i++)
		two[i] = 2.0f;
	tu_assert_rc(qk_scale_rows(c->kc, lw->w[QC_LIN_V], nv, lw->in[QC_LIN_V], two, 0), 0);
	tu_assert_rc(qk_scale_cols(c->kc, lw->w[QC_LIN_O], no, qd, two, 1), 0);
	free(two);
	return 0;
}

static float *vo_walk(tm_model *tm, const int32_t *ids, int update, unsigned restart, vo_ctx *c)
{
	qc_model *m;
	tu_assert_rc(qc_model_new(&m, &tm->cfg, &tm->src, NULL, kc, NULL), 0);
	qc_walk *w;
	qc_walk_opts o = { .chunk_tokens = 14 };
	tu_assert_rc(qc_walk_new(&w, m, ids, L, lens, N, &o), 0);
	c->kc = kc;
	qc_walk_hooks h = { .ctx = c, .observe = 0xf, .update = update ? QC_WALK_BIT(QC_WALK_O) : 0,
	                    .on_input = vo_input, .on_update = vo_update, .restart = restart };
	tu_assert_rc(qc_walk_run(w, &h), 0);
	float *lg = walk_logits(w, m);
	qc_walk_free(w);
	qc_model_free(m);
	return lg;
}

static void test_restart_after_o(void **state)
{
	(void)state;
	tm_model tm;
	small_model(&tm, 0, 7);
	int32_t ids[N * L];
	make_tokens(ids, 45);
	size_t n = (size_t)(27 * 45);
	vo_ctx plain = { 0 }, re = { 0 }, stale = { 0 };
	float *a = vo_walk(&tm, ids, 0, 0, &plain);
	float *b = vo_walk(&tm, ids, 1, QC_WALK_BIT(QC_WALK_O), &re);
	float *c = vo_walk(&tm, ids, 1, 0, &stale);
	assert_memory_equal(a, b, n * sizeof *a);
	assert_true(memcmp(a, c, n * sizeof *a) != 0);
	for (int p = 0; p < QC_WALK_POINTS; p++)
		assert_int_equal(re.rows[p], plain.rows[p]);   /* 2 layers x 27 tokens each */
	assert_int_equal(re.rows[QC_WALK_QKV], 2 * 27);
	free(a);
	free(b);
	free(c);
	tm_free(&tm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain),
		cmocka_unit_test(test_events),
		cmocka_unit_test(test_true_sequential),
		cmocka_unit_test(test_spill),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_restart_after_o),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
