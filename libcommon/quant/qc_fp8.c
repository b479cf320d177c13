/* qc_fp8.c - FP8 E4M3 quantization of a checkpoint (see qc_fp8.h). */
#include "qc_fp8.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qc_config.h"
#include "qc_err.h"
#include "qc_log.h"
#include "qc_model.h"
#include "qc_num.h"
#include "qc_qscheme.h"
#include "qc_quant.h"
#include "qc_tokset.h"
#include "qc_walk.h"

/* Linears that share one per-tensor scale with shared_scale: {q,k,v}, {o},
 * {gate,up}, {down}: the sets vLLM fuses, which are also the sets that read
 * one walker point. */
static const int lin_sets[QC_WALK_POINTS][4] = {
	{ QC_LIN_Q, QC_LIN_K, QC_LIN_V, -1 },
	{ QC_LIN_O, -1 },
	{ QC_LIN_GATE, QC_LIN_UP, -1 },
	{ QC_LIN_DOWN, -1 },
};

/* One Linear of the current layer. */
typedef struct lin {
	int on;                  /* quantized (not ignored) */
	int64_t rows, cols;
	uint8_t *codes;          /* [rows, cols] E4M3 bytes */
	float *scales;           /* [rows] channel, [1] tensor */
	float *deq;              /* [rows, cols] dequantized (calibrated runs) */
	float *diff;             /* W - deq (calibrated runs) */
	double err_w, num, den, seconds;
} lin;

typedef struct run {
	qc_ckpt *in;
	const qc_fp8_opts *o;
	qc_config cfg;
	qc_qscheme scheme;
	const char *scheme_name;
	qc_qout *out;
	qc_report *report;
	int threads;
	lin L[QC_LIN_COUNT];
	/* calibrated runs */
	qk_ctx *kc;
	qc_model *model;
	qc_walk *walk;
	qc_tokset *ts;
	qc_layer *lw;            /* the layer being walked */
	float amax[QC_WALK_POINTS];
	float kmax, vmax;
	float *inv_freq;         /* [head_dim / 2] */
	float *scratch;          /* GEMM outputs */
	size_t scratch_n;
	float *wbuf[QC_LIN_COUNT];  /* data-free: FP32 weights, reused layer after layer */
	size_t wbuf_n[QC_LIN_COUNT];
} run;

/* ------------------------------------------------------------ quantizing */

typedef struct qjob {
	const qc_qargs *a;
	const float *W;
	int64_t r0, r1, cols;
	const float *scales;
	uint8_t *codes;
	float *deq;              /* NULL: a row buffer is used */
	double err, norm;        /* sum (W - Q)^2 and sum W^2 over the rows */
	int rc;
} qjob;

static void *qjob_run(void *arg)
{
	qjob *j = arg;
	int64_t cols = j->cols;
	float *row = j->deq ? NULL : malloc((size_t)cols * sizeof *row);
	if (!j->deq && !row) {
		j->rc = QC_ENOMEM;
		return NULL;
	}
	for (int64_t r = j->r0; r < j->r1; r++) {
		const float *w = j->W + r * cols;
		if (j->a->strategy == QC_QS_CHANNEL) {
			/* this row's scale, here so that the rows' threads share the work */
			float amax = qc_absmax(w, (size_t)cols), z;
			qc_qparams(j->a, -amax, amax, (float *)j->scales + r, &z);
		}
		const float *s = j->a->strategy == QC_QS_TENSOR ? j->scales : j->scales + r;
		float *d = j->deq ? j->deq + r * cols : row;
		qc_quant_apply(j->a, w, 1, cols, s, NULL, j->codes + r * cols, d);
		qc_sqerr(w, d, (size_t)cols, &j->err, &j->norm);
	}
	free(row);
	return NULL;
}

/* Quantize W [rows, cols] with the given scales on up to `threads` threads
 * (rows are independent, so the result does not depend on the split); deq
 * may be NULL. Returns the relative weight error in *err_w. */
static int quantize_rows(const qc_qargs *a, const float *W, int64_t rows, int64_t cols,
                         const float *scales, uint8_t *codes, float *deq, int threads,
                         double *err_w)
{
	qjob jobs[64];
	pthread_t tid[64];
	int started[64] = { 0 };
	int nt = threads < 1 ? 1 : threads > 64 ? 64 : threads;
	if (rows < nt)
		nt = rows > 0 ? (int)rows : 1;
	for (int t = 0; t < nt; t++) {
		jobs[t] = (qjob){ a, W, rows * t / nt, rows * (t + 1) / nt, cols, scales, codes, deq,
		                  0, 0, 0 };
		if (t > 0)
			started[t] = pthread_create(&tid[t], NULL, qjob_run, &jobs[t]) == 0;
	}
	qjob_run(&jobs[0]);
	double err = 0, norm = 0;
	int rc = 0;
	for (int t = 0; t < nt; t++) {
		if (t > 0 && started[t])
			pthread_join(tid[t], NULL);
		else if (t > 0)
			qjob_run(&jobs[t]);
		err += jobs[t].err;
		norm += jobs[t].norm;
		if (jobs[t].rc)
			rc = jobs[t].rc;
	}
	if (rc)
		return qc_seterr(rc, "out of memory quantizing weights");
	*err_w = qc_rel(err, norm);
	return 0;
}

static void lin_free(lin *l)
{
	free(l->codes);
	free(l->scales);
	free(l->deq);
	free(l->diff);
	memset(l, 0, sizeof *l);
}

static void module_name(char *out, size_t n, int layer, int l)
{
	qc_linear_name(out, n, layer, (qc_linear)l, "");
	out[strlen(out) - 1] = 0; /* drop the trailing '.' */
}

/* Which Linears of a layer are quantized (not ignored). */
static int mark_layer(run *R, int layer)
{
	for (int l = 0; l < QC_LIN_COUNT; l++) {
		char mod[256];
		module_name(mod, sizeof mod, layer, l);
		int ig = qc_qscheme_ignored(&R->scheme, mod);
		if (ig < 0)
			return ig;
		R->L[l].on = !ig;
	}
	return 0;
}

/*
 * Quantize the Linears of one set (a walker point) from their FP32 weights
 * W[l] (NULL for ignored ones): scales per channel, per tensor, or one
 * shared per-tensor scale for the set; codes, and with keep_deq the
 * dequantized weights and W - Q for the output error.
 */
static int quantize_set(run *R, int p, float *const W[QC_LIN_COUNT], int keep_deq)
{
	const qc_qargs *a = &R->scheme.weights;
	float shared = 0;
	if (R->o->shared_scale) {
		float amax = 0;
		for (int k = 0; lin_sets[p][k] >= 0; k++) {
			int l = lin_sets[p][k];
			if (!R->L[l].on)
				continue;
			amax = fmaxf(amax, qc_absmax(W[l], (size_t)(R->L[l].rows * R->L[l].cols)));
		}
		float z;
		qc_qparams(a, -amax, amax, &shared, &z);
	}
	for (int k = 0; lin_sets[p][k] >= 0; k++) {
		int l = lin_sets[p][k];
		lin *L = &R->L[l];
		if (!L->on)
			continue;
		double t0 = qc_now();
		size_t n = (size_t)(L->rows * L->cols);
		size_t ns = a->strategy == QC_QS_CHANNEL ? (size_t)L->rows : 1;
		L->codes = malloc(n ? n : 1);
		L->scales = malloc(ns * sizeof *L->scales);
		if (keep_deq) {
			L->deq = malloc(n * sizeof *L->deq + 1);
			L->diff = malloc(n * sizeof *L->diff + 1);
		}
		if (!L->codes || !L->scales || (keep_deq && (!L->deq || !L->diff)))
			return qc_seterr(QC_ENOMEM, "out of memory quantizing layer weights");
		if (a->strategy == QC_QS_CHANNEL) {
			/* per-row scales are computed by the quantizing threads */
		} else if (R->o->shared_scale) {
			L->scales[0] = shared;
		} else {
			float amax = qc_absmax(W[l], n), z;
			qc_qparams(a, -amax, amax, &L->scales[0], &z);
		}
		QC_TRY(quantize_rows(a, W[l], L->rows, L->cols, L->scales, L->codes, L->deq, R->threads,
		                     &L->err_w));
		if (keep_deq)
			for (size_t i = 0; i < n; i++)
				L->diff[i] = W[l][i] - L->deq[i];
		L->seconds = qc_now() - t0;
	}
	return 0;
}

/* Write the quantized Linears of a layer and their report lines. */
static int write_layer(run *R, int layer, int64_t n_tokens)
{
	int rc = 0;
	for (int p = 0; rc == 0 && p < QC_WALK_POINTS; p++) {
		float is = 0, z;
		if (R->o->act_static) {
			qc_qargs ia = R->scheme.weights;
			ia.strategy = QC_QS_TENSOR;
			qc_qparams(&ia, -R->amax[p], R->amax[p], &is, &z);
		}
		for (int k = 0; rc == 0 && lin_sets[p][k] >= 0; k++) {
			int l = lin_sets[p][k];
			lin *L = &R->L[l];
			if (!L->on)
				continue;
			char mod[256];
			module_name(mod, sizeof mod, layer, l);
			rc = qc_qout_linear(R->out, mod, L->rows, L->cols, L->codes, L->scales, NULL,
			                    R->o->act_static ? &is : NULL);
			double eo = n_tokens > 0 ? qc_rel(L->num, L->den) : NAN;
			qc_report_line line = {
				.tool = "qfp8", .layer = mod, .rows = L->rows, .cols = L->cols,
				.scheme = R->scheme_name, .group_size = -1, .symmetric = 1,
				.n_tokens = n_tokens, .err_out = eo, .err_w = L->err_w,
				/* round-to-nearest is the method: its error is the baseline */
				.err_rtn = eo, .seconds = L->seconds, .extra = NULL,
			};
			if (rc == 0)
				rc = qc_report_add(R->report, &line);
		}
	}
	if (rc == 0 && R->o->kv_cache) {
		const qc_qargs *a = &R->scheme.weights;
		int64_t one = 1;
		float ks, vs, z;
		qc_qargs ta = *a;
		ta.strategy = QC_QS_TENSOR;
		qc_qparams(&ta, -R->kmax, R->kmax, &ks, &z);
		qc_qparams(&ta, -R->vmax, R->vmax, &vs, &z);
		uint16_t b[4];
		char name[256];
		qc_from_f32(b, a->scale_dtype, &ks, 1);
		snprintf(name, sizeof name, "model.layers.%d.self_attn.k_scale", layer);
		rc = qc_qout_tensor(R->out, name, a->scale_dtype, 1, &one, a->scale_dtype == QC_DT_F32 ? (void *)&ks : b);
		qc_from_f32(b, a->scale_dtype, &vs, 1);
		snprintf(name, sizeof name, "model.layers.%d.self_attn.v_scale", layer);
		if (rc == 0)
			rc = qc_qout_tensor(R->out, name, a->scale_dtype, 1, &one,
			                    a->scale_dtype == QC_DT_F32 ? (void *)&vs : b);
	}
	for (int l = 0; l < QC_LIN_COUNT; l++)
		lin_free(&R->L[l]);
	return rc;
}

/* ------------------------------------------------------------ tensors */

/* A Linear's weight as FP32 from the checkpoint, checked against the shape
 * config.json implies and for non-finite values. */
static int load_linear(run *R, int layer, int l, const qc_tensor **t, float **W)
{
	char name[256];
	qc_linear_name(name, sizeof name, layer, (qc_linear)l, "weight");
	int rc = qc_ckpt_get(R->in, name, t);
	if (rc == QC_ENOTFOUND)
		return qc_seterr(QC_EFORMAT, "'%s' has no tensor '%s' that config.json implies",
		                 qc_ckpt_name(R->in), name);
	if (rc)
		return rc;
	int64_t shape[2];
	qc_linear_shape(&R->cfg, (qc_linear)l, shape);
	if ((*t)->ndim != 2 || (*t)->shape[0] != shape[0] || (*t)->shape[1] != shape[1]) {
		char a[64], b[64];
		return qc_seterr(QC_EFORMAT, "tensor '%s' has shape %s, config.json implies %s", name,
		                 qc_shape_str(a, sizeof a, (*t)->ndim, (*t)->shape),
		                 qc_shape_str(b, sizeof b, 2, shape));
	}
	if (!qc_dtype_is_float((*t)->dtype) || (*t)->dtype == QC_DT_F8_E4M3)
		return qc_seterr(QC_EFORMAT, "tensor '%s' is %s, not a BF16/FP16/FP32 weight", name,
		                 qc_dtype_name((*t)->dtype));
	size_t n = (size_t)(shape[0] * shape[1]);
	int64_t bad = qc_first_nonfinite((*t)->data, (*t)->dtype, n);
	if (bad >= 0)
		return qc_seterr(QC_EFORMAT, "tensor '%s' has a non-finite value at [%lld, %lld]", name,
		                 (long long)(bad / shape[1]), (long long)(bad % shape[1]));
	/* one buffer per Linear kept across layers: fresh pages would be
	 * zeroed by the kernel for every layer */
	if (R->wbuf_n[l] < n) {
		free(R->wbuf[l]);
		R->wbuf[l] = malloc(n * sizeof *R->wbuf[l] + 1);
		R->wbuf_n[l] = R->wbuf[l] ? n : 0;
	}
	*W = R->wbuf[l];
	if (!*W)
		return qc_seterr(QC_ENOMEM, "out of memory for '%s'", name);
	R->L[l].rows = shape[0];
	R->L[l].cols = shape[1];
	return qc_to_f32(*W, (*t)->data, (*t)->dtype, n);
}

/* Which tensors of a layer's group the run writes itself: the weights of
 * the Linears it quantizes. */
typedef struct skip_ctx {
	run *R;
	int layer;
} skip_ctx;

static int skip_quantized(void *ctx, const char *name)
{
	skip_ctx *k = ctx;
	if (k->layer < 0)
		return 0;
	for (int l = 0; l < QC_LIN_COUNT; l++) {
		char w[256], mod[256];
		qc_linear_name(w, sizeof w, k->layer, (qc_linear)l, "weight");
		if (strcmp(w, name) != 0)
			continue;
		module_name(mod, sizeof mod, k->layer, l);
		return qc_qscheme_ignored(&k->R->scheme, mod) == 0;
	}
	return 0;
}

/* Write the other tensors of a group. Data-free runs write them straight
 * from the input; calibrated runs copy them, since the model loads the
 * layer (and the embedding) afterwards and releases them itself: a stream
 * refuses to hand out a tensor again once it was released. */
static int copy_group(run *R, int group, int layer)
{
	skip_ctx k = { R, layer };
	return qc_qout_copy_group(R->out, group, skip_quantized, &k, R->ts == NULL);
}

/* ------------------------------------------------------------ data-free */

static int quantize_layer_direct(run *R, int layer)
{
	int rc = mark_layer(R, layer);
	for (int p = 0; rc == 0 && p < QC_WALK_POINTS; p++) {
		float *W[QC_LIN_COUNT] = { 0 };
		const qc_tensor *t[QC_LIN_COUNT] = { 0 };
		for (int k = 0; rc == 0 && lin_sets[p][k] >= 0; k++) {
			int l = lin_sets[p][k];
			if (R->L[l].on)
				rc = load_linear(R, layer, l, &t[l], &W[l]);
		}
		if (rc == 0)
			rc = quantize_set(R, p, W, 0);
		for (int k = 0; lin_sets[p][k] >= 0; k++) {
			int l = lin_sets[p][k];
			if (t[l]) {
				char name[256];
				qc_linear_name(name, sizeof name, layer, (qc_linear)l, "weight");
				qc_ckpt_release(R->in, name);
			}
		}
	}
	if (rc == 0)
		rc = write_layer(R, layer, 0);
	return rc;
}

/* ------------------------------------------------------------ calibrated */

static int ensure_scratch(run *R, size_t n)
{
	if (n <= R->scratch_n)
		return 0;
	float *s = realloc(R->scratch, n * sizeof *s);
	if (!s)
		return qc_seterr(QC_ENOMEM, "out of memory for calibration scratch");
	R->scratch = s;
	R->scratch_n = n;
	return 0;
}

static double sumsq(const float *x, size_t n)
{
	double s = 0;
	for (size_t i = 0; i < n; i++)
		s += (double)x[i] * x[i];
	return s;
}

static float absmax(const float *x, size_t n, float m)
{
	for (size_t i = 0; i < n; i++)
		m = fmaxf(m, fabsf(x[i]));
	return m;
}

static int hk_layer_begin(void *ctx, int layer, qc_layer *lw)
{
	run *R = ctx;
	R->lw = lw;
	for (int p = 0; p < QC_WALK_POINTS; p++)
		R->amax[p] = 0;
	R->kmax = R->vmax = 0;
	QC_TRY(mark_layer(R, layer));
	float *W[QC_LIN_COUNT] = { 0 };
	for (int l = 0; l < QC_LIN_COUNT; l++) {
		R->L[l].rows = lw->out[l];
		R->L[l].cols = lw->in[l];
		R->L[l].num = R->L[l].den = 0;
		W[l] = lw->w[l];
	}
	for (int p = 0; p < QC_WALK_POINTS; p++)
		QC_TRY(quantize_set(R, p, W, 1));
	return 0;
}

/* Post-RoPE keys and values of a chunk for the KV-cache scales, computed
 * with the weights the deployed model has (quantized unless ignored). */
static int kv_observe(run *R, const float *x, int64_t row0, int64_t rows, int64_t cols)
{
	const qc_config *c = &R->cfg;
	int64_t kvd = c->num_key_value_heads * c->head_dim;
	QC_TRY(ensure_scratch(R, (size_t)(rows * kvd)));
	const float *wk = R->L[QC_LIN_K].on ? R->L[QC_LIN_K].deq : R->lw->w[QC_LIN_K];
	const float *wv = R->L[QC_LIN_V].on ? R->L[QC_LIN_V].deq : R->lw->w[QC_LIN_V];
	qk_ctx *kc = R->kc;
	QC_TRY(qk_linear(kc, R->scratch, x, wk, R->lw->b[QC_LIN_K], rows, cols, kvd, 0));
	/* chunks hold whole sequences: rotate each from position 0 */
	const int64_t *off = qc_walk_offsets(R->walk);
	int64_t ns = qc_walk_seqs(R->walk);
	for (int64_t s = 0; s < ns; s++) {
		if (off[s] < row0 || off[s] >= row0 + rows || off[s + 1] == off[s])
			continue;
		QC_TRY(qk_rope_apply(kc, R->scratch + (off[s] - row0) * kvd, off[s + 1] - off[s],
		                     c->num_key_value_heads, c->head_dim, 0, R->inv_freq));
	}
	R->kmax = absmax(R->scratch, (size_t)(rows * kvd), R->kmax);
	QC_TRY(qk_linear(kc, R->scratch, x, wv, R->lw->b[QC_LIN_V], rows, cols, kvd, 0));
	R->vmax = absmax(R->scratch, (size_t)(rows * kvd), R->vmax);
	return 0;
}

static int hk_on_input(void *ctx, int layer, qc_walk_point p, const float *x, int64_t row0,
                       int64_t rows, int64_t cols)
{
	run *R = ctx;
	(void)layer;
	R->amax[p] = absmax(x, (size_t)(rows * cols), R->amax[p]);
	for (int k = 0; lin_sets[p][k] >= 0; k++) {
		int l = lin_sets[p][k];
		lin *L = &R->L[l];
		if (!L->on)
			continue;
		/* ||x W^T||^2 and ||x (W - Q)^T||^2 over this chunk */
		QC_TRY(ensure_scratch(R, (size_t)(rows * L->rows)));
		QC_TRY(qk_gemm(R->kc, 0, 1, rows, L->rows, cols, 1.0f, x, cols, R->lw->w[l], cols, 0.0f,
		               R->scratch, L->rows));
		L->den += sumsq(R->scratch, (size_t)(rows * L->rows));
		QC_TRY(qk_gemm(R->kc, 0, 1, rows, L->rows, cols, 1.0f, x, cols, L->diff, cols, 0.0f,
		               R->scratch, L->rows));
		L->num += sumsq(R->scratch, (size_t)(rows * L->rows));
	}
	if (p == QC_WALK_QKV && R->o->kv_cache)
		QC_TRY(kv_observe(R, x, row0, rows, cols));
	return 0;
}

static int hk_on_update(void *ctx, int layer, qc_walk_point p, qc_layer *lw)
{
	run *R = ctx;
	(void)layer;
	for (int k = 0; lin_sets[p][k] >= 0; k++) {
		int l = lin_sets[p][k];
		if (R->L[l].on)
			memcpy(lw->w[l], R->L[l].deq, (size_t)(lw->out[l] * lw->in[l]) * sizeof(float));
	}
	return 0;
}

static int hk_layer_end(void *ctx, int layer, qc_layer *lw)
{
	run *R = ctx;
	(void)lw;
	int rc = write_layer(R, layer, qc_walk_tokens(R->walk));
	R->lw = NULL;
	return rc;
}

static int calib_setup(run *R)
{
	const qc_fp8_opts *o = R->o;
	QC_TRY(qk_ctx_new(&R->kc, o->device, R->threads));
	QC_TRY(qc_model_open(&R->model, R->in, R->kc, NULL));
	QC_TRY(qc_tokset_open(&R->ts, o->calib));
	if (o->kv_cache) {
		const qc_config *c = &R->cfg;
		qk_rope rope = { c->rope_theta, QK_ROPE_DEFAULT, c->rope_factor, c->rope_low_freq_factor,
		                 c->rope_high_freq_factor,
		                 (double)c->rope_original_max_position_embeddings };
		rope.type = c->rope_type == QC_ROPE_LLAMA3 ? QK_ROPE_LLAMA3
		            : c->rope_type == QC_ROPE_LINEAR ? QK_ROPE_LINEAR : QK_ROPE_DEFAULT;
		R->inv_freq = malloc((size_t)(c->head_dim / 2) * sizeof *R->inv_freq + 1);
		if (!R->inv_freq)
			return qc_seterr(QC_ENOMEM, "out of memory");
		QC_TRY(qk_rope_inv_freq(R->inv_freq, c->head_dim, &rope));
	}
	return 0;
}

/* ------------------------------------------------------------ driver */

int qc_fp8_quantize(qc_ckpt *in, const qc_fp8_opts *o, const qc_qout_opts *oo, qc_report *report)
{
	if ((o->act_static || o->kv_cache) && !o->calib)
		return qc_seterr(QC_EINVAL, "static activation scales and KV-cache scales need a token "
		                 "set (--calib)");
	run R;
	memset(&R, 0, sizeof R);
	R.in = in;
	R.o = o;
	R.report = report;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	R.threads = o->threads > 0 ? o->threads : ncpu > 0 ? (int)ncpu : 1;

	const void *cj;
	size_t cl;
	int rc = qc_ckpt_file(in, "config.json", &cj, &cl);
	if (rc == QC_ENOTFOUND)
		rc = qc_seterr(QC_EFORMAT, "'%s' has no config.json", qc_ckpt_name(in));
	if (rc)
		return rc;
	if ((rc = qc_config_parse(&R.cfg, cj, cl, "config.json")) != 0)
		return rc;
	if (json_object_get(R.cfg.raw, "quantization_config")) {
		qc_config_free(&R.cfg);
		return qc_seterr(QC_EFORMAT, "'%s' is already quantized (config.json has "
		                 "quantization_config)", qc_ckpt_name(in));
	}
	int per_tensor = o->per_tensor || o->shared_scale;
	rc = qc_qscheme_preset(&R.scheme, o->act_static ? "fp8-static" : "fp8-dynamic");
	snprintf(R.scheme.format, sizeof R.scheme.format, "float-quantized");
	R.scheme.weights.strategy = per_tensor ? QC_QS_TENSOR : QC_QS_CHANNEL;
	R.scheme.weights.scale_dtype = R.cfg.torch_dtype == QC_DT_F32 || R.cfg.torch_dtype == QC_DT_F16
	                               ? R.cfg.torch_dtype : QC_DT_BF16;
	R.scheme.kv_cache_fp8 = o->kv_cache;
	snprintf(R.scheme.observer, sizeof R.scheme.observer, "minmax");
	R.scheme_name = o->act_static ? (per_tensor ? "fp8-static" : "fp8-static-channel")
	                              : (per_tensor ? "fp8-dynamic-tensor" : "fp8-dynamic");
	for (int i = 0; i < o->n_ignore && rc == 0; i++)
		rc = qc_qscheme_add_ignore(&R.scheme, o->ignore[i]);
	/* compile every ignore regex once now, so a bad one fails before work */
	if (rc == 0 && (rc = qc_qscheme_ignored(&R.scheme, "")) > 0)
		rc = 0;
	if (rc == 0 && o->calib)
		rc = calib_setup(&R);
	if (rc == 0)
		rc = qc_qout_open(&R.out, in, &R.cfg, &R.scheme, oo);
	if (rc == 0 && R.ts)
		rc = qc_qout_token_set(R.out, "calibration", qc_tokset_hash(R.ts));

	int nl = (int)R.cfg.num_hidden_layers;
	/* the embedding is copied before the walk embeds the tokens: an untied
	 * model releases it then */
	if (rc == 0)
		rc = copy_group(&R, QC_GROUP_PRE, -1);
	if (rc == 0 && R.ts) {
		qc_walk_opts wo = { 0 };
		wo.act_dtype = QC_DT_F32;
		rc = qc_walk_new(&R.walk, R.model, qc_tokset_ids(R.ts), qc_tokset_len(R.ts),
		                 qc_tokset_lengths(R.ts), qc_tokset_rows(R.ts), &wo);
	}
	qc_walk_hooks hooks = {
		.ctx = &R,
		.observe = QC_WALK_BIT(QC_WALK_QKV) | QC_WALK_BIT(QC_WALK_O) |
		           QC_WALK_BIT(QC_WALK_GATE_UP) | QC_WALK_BIT(QC_WALK_DOWN),
		.update = QC_WALK_BIT(QC_WALK_QKV) | QC_WALK_BIT(QC_WALK_O) |
		          QC_WALK_BIT(QC_WALK_GATE_UP) | QC_WALK_BIT(QC_WALK_DOWN),
		.layer_begin = hk_layer_begin,
		.on_input = hk_on_input,
		.on_update = hk_on_update,
		.layer_end = hk_layer_end,
	};
	for (int layer = 0; rc == 0 && layer < nl; layer++) {
		/* the layer's other tensors first: a stream shard stays readable
		 * until every tensor in it was released */
		if ((rc = copy_group(&R, layer, layer)) != 0)
			break;
		if (R.walk)
			rc = qc_walk_layer(R.walk, &hooks);
		else
			rc = quantize_layer_direct(&R, layer);
		if (rc == 0 && layer == nl - 1)
			rc = copy_group(&R, QC_GROUP_POST, -1);
		if (rc == 0)
			rc = qc_qout_end_layer(R.out, layer);
		if (rc == 0 && o->progress)
			o->progress(o->progress_ctx, layer + 1, nl);
	}
	if (rc == 0) {
		rc = qc_qout_close(R.out, report);
		R.out = NULL;
	}
	qc_qout_abort(R.out);
	for (int l = 0; l < QC_LIN_COUNT; l++)
		lin_free(&R.L[l]);
	qc_walk_free(R.walk);
	qc_model_free(R.model);
	qc_tokset_close(R.ts);
	qk_ctx_free(R.kc);
	free(R.inv_freq);
	free(R.scratch);
	for (int l = 0; l < QC_LIN_COUNT; l++)
		free(R.wbuf[l]);
	qc_qscheme_free(&R.scheme);
	qc_config_free(&R.cfg);
	return rc;
}
