/* qc_fp8.c - FP8 E4M3 quantization as a method of the run driver (see
 * qc_fp8.h). Weights are quantized on the host from a downloaded copy (the
 * rounding is qc_quant's, shared with every other writer of FP8 codes);
 * everything that reads activations runs on the kernel context. */
#include "qc_fp8.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qc_err.h"
#include "qc_log.h"
#include "qc_num.h"
#include "qc_pool.h"
#include "qc_quant.h"

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
typedef struct fp8_linear {
	int on;                  /* quantized (not ignored) */
	int done;                /* its codes exist */
	int64_t rows, cols;
	uint8_t *codes;          /* [rows, cols] E4M3 bytes (host) */
	float *scales;           /* [rows] channel, [1] tensor (host) */
	float *deq;              /* [rows, cols] dequantized (kernel memory; with tokens) */
	float *diff;             /* W - deq (kernel memory; with tokens) */
	double err_w, num, den, seconds;
} fp8_linear;

struct qc_fp8 {
	qc_fp8_opts o;
	qc_qrun *run;
	qk_ctx *kc;
	int threads;
	int64_t T;
	fp8_linear L[QC_LIN_COUNT];
	float *host_w;           /* a weight's FP32 copy on the host, reused */
	size_t host_w_n;
	float *host_deq;         /* its dequantized values before the upload */
	size_t host_deq_n;
	float amax[QC_WALK_POINTS];
	float kmax, vmax;
	const qc_layer *lw;      /* the layer being walked (from layer_begin) */
	float *scratch;          /* GEMM outputs (kernel memory) */
	size_t scratch_n;
};

/* ------------------------------------------------------------ quantizing */

typedef struct qjob {
	const qc_qargs *a;
	const float *W;
	int64_t rows, cols;
	const float *scales;
	uint8_t *codes;
	float *deq;              /* NULL: a row buffer is used */
	double err[64], norm[64];/* per part: sum (W - Q)^2 and sum W^2 over its rows */
} qjob;

static int qjob_run(void *ctx, int part, int nparts)
{
	qjob *j = ctx;
	int64_t cols = j->cols, r0, r1;
	qc_pool_range(j->rows, part, nparts, &r0, &r1);
	float *row = j->deq ? NULL : malloc((size_t)cols * sizeof *row);
	if (!j->deq && !row)
		return qc_seterr(QC_ENOMEM, "out of memory quantizing weights");
	double err = 0, norm = 0;
	for (int64_t r = r0; r < r1; r++) {
		const float *w = j->W + r * cols;
		if (j->a->strategy == QC_QS_CHANNEL) {
			/* this row's scale, here so that the rows' threads share the work */
			float amax = qc_absmax(w, (size_t)cols), z;
			qc_qparams(j->a, -amax, amax, (float *)j->scales + r, &z);
		}
		const float *s = j->a->strategy == QC_QS_TENSOR ? j->scales : j->scales + r;
		float *d = j->deq ? j->deq + r * cols : row;
		qc_quant_apply(j->a, w, 1, cols, s, NULL, j->codes + r * cols, d);
		qc_sqerr(w, d, (size_t)cols, &err, &norm);
	}
	j->err[part] = err;
	j->norm[part] = norm;
	free(row);
	return 0;
}

/* Quantize W [rows, cols] (host) with the given scales on up to `threads`
 * threads (rows are independent, so the result does not depend on the
 * split); deq may be NULL. Returns the relative weight error in *err_w. */
static int quantize_rows(const qc_qargs *a, const float *W, int64_t rows, int64_t cols,
                         const float *scales, uint8_t *codes, float *deq, int threads,
                         double *err_w)
{
	qjob j = { .a = a, .W = W, .rows = rows, .cols = cols, .scales = scales, .codes = codes,
	           .deq = deq };
	int nt = threads < 1 ? 1 : threads > 64 ? 64 : threads;
	if (rows < nt)
		nt = rows > 0 ? (int)rows : 1;
	QC_TRY(qc_pool_run(nt, qjob_run, &j));
	double err = 0, norm = 0;
	for (int t = 0; t < nt; t++) {
		err += j.err[t];
		norm += j.norm[t];
	}
	*err_w = qc_rel(err, norm);
	return 0;
}

static int grow(float **p, size_t *have, size_t n)
{
	if (*have >= n)
		return 0;
	free(*p);
	*have = 0;
	if (!(*p = malloc(n * sizeof **p + 1)))
		return qc_seterr(QC_ENOMEM, "out of memory quantizing layer weights");
	*have = n;
	return 0;
}

static void lin_free(qc_fp8 *F, fp8_linear *L)
{
	free(L->codes);
	free(L->scales);
	qk_free(F->kc, L->deq);
	qk_free(F->kc, L->diff);
	int on = L->on;
	memset(L, 0, sizeof *L);
	L->on = on;
}

/*
 * Quantize the Linears of set p from their FP32 weights lw->w[l] (kernel
 * memory): scales per channel, per tensor, or one shared per-tensor scale
 * for the set; codes, and with tokens the dequantized weights and W - Q for
 * the output error.
 */
static int quantize_set(qc_fp8 *F, int p, const qc_layer *lw)
{
	const qc_qargs *a = &qc_qrun_scheme(F->run)->weights;
	int keep_deq = F->T > 0;
	float shared = 0;
	if (F->o.shared_scale) {
		float amax = 0;
		for (int k = 0; lin_sets[p][k] >= 0; k++) {
			int l = lin_sets[p][k];
			if (F->L[l].on)
				QC_TRY(qk_absmax(F->kc, lw->w[l], (size_t)(lw->out[l] * lw->in[l]), &amax));
		}
		float z;
		qc_qparams(a, -amax, amax, &shared, &z);
	}
	for (int k = 0; lin_sets[p][k] >= 0; k++) {
		int l = lin_sets[p][k];
		fp8_linear *L = &F->L[l];
		if (!L->on || L->done)
			continue;
		double t0 = qc_now();
		L->rows = lw->out[l];
		L->cols = lw->in[l];
		size_t n = (size_t)(L->rows * L->cols);
		size_t ns = a->strategy == QC_QS_CHANNEL ? (size_t)L->rows : 1;
		QC_TRY(grow(&F->host_w, &F->host_w_n, n));
		if (keep_deq)
			QC_TRY(grow(&F->host_deq, &F->host_deq_n, n));
		L->codes = malloc(n ? n : 1);
		L->scales = malloc(ns * sizeof *L->scales);
		if (keep_deq) {
			L->deq = qk_alloc(F->kc, n * sizeof *L->deq + 1);
			L->diff = qk_alloc(F->kc, n * sizeof *L->diff + 1);
		}
		if (!L->codes || !L->scales || (keep_deq && (!L->deq || !L->diff)))
			return qc_seterr(QC_ENOMEM, "out of memory quantizing layer weights");
		float *W = F->host_w;
		QC_TRY(qk_download(F->kc, W, lw->w[l], n * sizeof *W));
		if (a->strategy == QC_QS_CHANNEL) {
			/* per-row scales are computed by the quantizing threads */
		} else if (F->o.shared_scale) {
			L->scales[0] = shared;
		} else {
			float amax = qc_absmax(W, n), z;
			qc_qparams(a, -amax, amax, &L->scales[0], &z);
		}
		QC_TRY(quantize_rows(a, W, L->rows, L->cols, L->scales, L->codes,
		                     keep_deq ? F->host_deq : NULL, F->threads, &L->err_w));
		if (keep_deq) {
			QC_TRY(qk_upload(F->kc, L->deq, F->host_deq, n * sizeof *L->deq));
			QC_TRY(qk_sub(F->kc, L->diff, lw->w[l], L->deq, n));
		}
		L->done = 1;
		L->seconds = qc_now() - t0;
	}
	return 0;
}

/* Write the quantized Linears of a layer, the KV-cache scales and the
 * report lines. */
static int write_layer(qc_fp8 *F, int layer)
{
	const qc_qscheme *s = qc_qrun_scheme(F->run);
	int rc = 0;
	for (int p = 0; rc == 0 && p < QC_WALK_POINTS; p++) {
		float is = 0, z;
		if (F->o.act_static) {
			qc_qargs ia = s->weights;
			ia.strategy = QC_QS_TENSOR;
			qc_qparams(&ia, -F->amax[p], F->amax[p], &is, &z);
		}
		for (int k = 0; rc == 0 && lin_sets[p][k] >= 0; k++) {
			int l = lin_sets[p][k];
			fp8_linear *L = &F->L[l];
			if (!L->on)
				continue;
			char mod[256];
			qc_linear_module(mod, sizeof mod, layer, (qc_linear)l);
			rc = qc_qrun_write_linear(F->run, layer, (qc_linear)l, L->codes, L->scales, NULL,
			                          F->o.act_static ? &is : NULL);
			double eo = F->T > 0 ? qc_rel(L->num, L->den) : NAN;
			qc_report_line line = {
				.layer = mod, .rows = L->rows, .cols = L->cols, .err_out = eo, .err_w = L->err_w,
				/* round-to-nearest is the method: its error is the baseline */
				.err_rtn = eo, .seconds = L->seconds,
			};
			if (rc == 0)
				rc = qc_qrun_report(F->run, &line);
		}
	}
	if (rc == 0 && F->o.kv_cache) {
		qc_qargs ta = s->weights;
		ta.strategy = QC_QS_TENSOR;
		qc_dtype dt = ta.scale_dtype;
		const float kv[2] = { F->kmax, F->vmax };
		static const char *const which[2] = { "k_scale", "v_scale" };
		for (int i = 0; rc == 0 && i < 2; i++) {
			int64_t one = 1;
			float sc, z;
			uint16_t b[2];
			char name[256];
			qc_qparams(&ta, -kv[i], kv[i], &sc, &z);
			qc_from_f32(b, dt, &sc, 1);
			snprintf(name, sizeof name, "model.layers.%d.self_attn.%s", layer, which[i]);
			rc = qc_qrun_write_tensor(F->run, name, dt, 1, &one,
			                          dt == QC_DT_F32 ? (const void *)&sc : b);
		}
	}
	for (int l = 0; l < QC_LIN_COUNT; l++)
		lin_free(F, &F->L[l]);
	return rc;
}

/* ------------------------------------------------------------ hooks */

static int fm_scheme(void *ctx, const qc_config *cfg, qc_qscheme *s, const char **name)
{
	qc_fp8 *F = ctx;
	int per_tensor = F->o.per_tensor || F->o.shared_scale;
	QC_TRY(qc_qscheme_preset(s, F->o.act_static ? "fp8-static" : "fp8-dynamic"));
	snprintf(s->format, sizeof s->format, "float-quantized");
	s->weights.strategy = per_tensor ? QC_QS_TENSOR : QC_QS_CHANNEL;
	s->weights.scale_dtype = cfg->torch_dtype == QC_DT_F32 || cfg->torch_dtype == QC_DT_F16
	                         ? cfg->torch_dtype : QC_DT_BF16;
	s->kv_cache_fp8 = F->o.kv_cache;
	snprintf(s->observer, sizeof s->observer, "minmax");
	*name = F->o.act_static ? (per_tensor ? "fp8-static" : "fp8-static-channel")
	                        : (per_tensor ? "fp8-dynamic-tensor" : "fp8-dynamic");
	return 0;
}

static int fm_begin(void *ctx, qc_qrun *run)
{
	qc_fp8 *F = ctx;
	F->run = run;
	F->kc = qc_qrun_kernels(run);
	F->threads = qc_qrun_threads(run);
	F->T = qc_qrun_tokens(run);
	if ((F->o.act_static || F->o.kv_cache) && F->T == 0)
		return qc_seterr(QC_EINVAL, "static activation scales and KV-cache scales need a token "
		                 "set (--calib)");
	return 0;
}

/* One layer: FP32 weights (the driver's), their codes and, with tokens, the
 * dequantized copy and the difference, both held for the whole layer. */
static void fm_memory(void *ctx, const qc_config *c, int calibrated, qc_qmem *need)
{
	(void)ctx;
	int64_t h = c->hidden_size, in = c->intermediate_size;
	int64_t qd = c->num_attention_heads * c->head_dim, kvd = c->num_key_value_heads * c->head_dim;
	double params = (double)h * (qd + 2 * kvd) + (double)qd * h + 3.0 * h * in;
	need->weights = params * 4 + params * 1 + (calibrated ? params * 8 : 0);
}

/* Every point, observed and updated: the input maxima and the errors of
 * each set, the KV scales at q/k/v even when those are ignored. */
static void fm_points(void *ctx, int layer, unsigned quant, unsigned *observe, unsigned *update)
{
	(void)ctx;
	(void)layer;
	(void)quant;
	*observe = *update = QC_WALK_BIT(QC_WALK_POINTS) - 1;
}

static int fm_layer_begin(void *ctx, int layer, qc_layer *lw)
{
	qc_fp8 *F = ctx;
	F->lw = lw; /* the walker's layer, for observe */
	unsigned quant = qc_qrun_quantized(F->run);
	for (int p = 0; p < QC_WALK_POINTS; p++)
		F->amax[p] = 0;
	F->kmax = F->vmax = 0;
	for (int l = 0; l < QC_LIN_COUNT; l++) {
		lin_free(F, &F->L[l]);
		F->L[l].on = (quant >> l) & 1;
	}
	(void)layer;
	return 0;
}

static int ensure_scratch(qc_fp8 *F, size_t n)
{
	if (n <= F->scratch_n)
		return 0;
	qk_free(F->kc, F->scratch);
	F->scratch_n = 0;
	if (!(F->scratch = qk_alloc(F->kc, n * sizeof *F->scratch)))
		return qc_seterr(QC_ENOMEM, "out of memory for calibration scratch");
	F->scratch_n = n;
	return 0;
}

/* Post-RoPE keys and values of a chunk for the KV-cache scales, computed
 * with the weights the deployed model has (quantized unless ignored). */
static int kv_observe(qc_fp8 *F, const qc_layer *lw, const float *x, int64_t row0, int64_t rows,
                      int64_t cols)
{
	const qc_config *c = qc_qrun_config(F->run);
	qc_walk *walk = qc_qrun_walk(F->run);
	int64_t kvd = c->num_key_value_heads * c->head_dim;
	QC_TRY(ensure_scratch(F, (size_t)(rows * kvd)));
	const float *wk = F->L[QC_LIN_K].on ? F->L[QC_LIN_K].deq : lw->w[QC_LIN_K];
	const float *wv = F->L[QC_LIN_V].on ? F->L[QC_LIN_V].deq : lw->w[QC_LIN_V];
	QC_TRY(qk_linear(F->kc, F->scratch, x, wk, lw->b[QC_LIN_K], rows, cols, kvd, 0));
	/* chunks hold whole sequences: rotate each from position 0 */
	const int64_t *off = qc_walk_offsets(walk);
	const float *inv_freq = qc_model_inv_freq(qc_qrun_model(F->run));
	int64_t ns = qc_walk_seqs(walk);
	for (int64_t s = 0; s < ns; s++) {
		if (off[s] < row0 || off[s] >= row0 + rows || off[s + 1] == off[s])
			continue;
		QC_TRY(qk_rope_apply(F->kc, F->scratch + (off[s] - row0) * kvd, off[s + 1] - off[s],
		                     c->num_key_value_heads, c->head_dim, 0, inv_freq));
	}
	QC_TRY(qk_absmax(F->kc, F->scratch, (size_t)(rows * kvd), &F->kmax));
	QC_TRY(qk_linear(F->kc, F->scratch, x, wv, lw->b[QC_LIN_V], rows, cols, kvd, 0));
	return qk_absmax(F->kc, F->scratch, (size_t)(rows * kvd), &F->vmax);
}

static int fm_observe(void *ctx, int layer, qc_walk_point p, const float *x, int64_t row0,
                      int64_t rows, int64_t cols)
{
	qc_fp8 *F = ctx;
	(void)layer;
	const qc_layer *lw = F->lw;
	if (row0 == 0) /* the set's weights are still the original ones: quantize them now */
		QC_TRY(quantize_set(F, p, lw));
	QC_TRY(qk_absmax(F->kc, x, (size_t)(rows * cols), &F->amax[p]));
	for (int k = 0; lin_sets[p][k] >= 0; k++) {
		int l = lin_sets[p][k];
		fp8_linear *L = &F->L[l];
		if (!L->on)
			continue;
		/* ||x W^T||^2 and ||x (W - Q)^T||^2 over this chunk */
		QC_TRY(ensure_scratch(F, (size_t)(rows * L->rows)));
		QC_TRY(qk_gemm(F->kc, 0, 1, rows, L->rows, cols, 1.0f, x, cols, lw->w[l], cols, 0.0f,
		               F->scratch, L->rows));
		QC_TRY(qk_sumsq(F->kc, F->scratch, (size_t)(rows * L->rows), &L->den));
		QC_TRY(qk_gemm(F->kc, 0, 1, rows, L->rows, cols, 1.0f, x, cols, L->diff, cols, 0.0f,
		               F->scratch, L->rows));
		QC_TRY(qk_sumsq(F->kc, F->scratch, (size_t)(rows * L->rows), &L->num));
	}
	if (p == QC_WALK_QKV && F->o.kv_cache)
		QC_TRY(kv_observe(F, lw, x, row0, rows, cols));
	return 0;
}

static int fm_update(void *ctx, int layer, qc_walk_point p, qc_layer *lw)
{
	qc_fp8 *F = ctx;
	(void)layer;
	QC_TRY(quantize_set(F, p, lw));
	if (F->T == 0)
		return 0;
	for (int k = 0; lin_sets[p][k] >= 0; k++) {
		int l = lin_sets[p][k];
		if (F->L[l].on)
			QC_TRY(qk_copy(F->kc, lw->w[l], F->L[l].deq,
			               (size_t)(lw->out[l] * lw->in[l]) * sizeof(float)));
	}
	return 0;
}

static int fm_layer_end(void *ctx, int layer, qc_layer *lw)
{
	qc_fp8 *F = ctx;
	(void)lw;
	F->lw = NULL;
	return write_layer(F, layer);
}

static void fm_end(void *ctx)
{
	qc_fp8 *F = ctx;
	for (int l = 0; l < QC_LIN_COUNT; l++)
		lin_free(F, &F->L[l]);
	qk_free(F->kc, F->scratch);
	F->scratch = NULL;
	F->scratch_n = 0;
}

/* ------------------------------------------------------------ the method */

int qc_fp8_method(qc_fp8 **state, qc_qmethod *m, const qc_fp8_opts *o)
{
	qc_fp8 *F = calloc(1, sizeof *F);
	if (!F)
		return qc_seterr(QC_ENOMEM, "out of memory");
	F->o = *o;
	*state = F;
	*m = (qc_qmethod){
		.tool = "qfp8", .ctx = F, .scheme = fm_scheme, .begin = fm_begin, .memory = fm_memory,
		.points = fm_points, .layer_begin = fm_layer_begin, .observe = fm_observe,
		.update = fm_update, .layer_end = fm_layer_end, .end = fm_end,
	};
	return 0;
}

void qc_fp8_free(qc_fp8 *F)
{
	if (!F)
		return;
	free(F->host_w);
	free(F->host_deq);
	free(F);
}
