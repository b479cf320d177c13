/* qc_smooth.c - SmoothQuant as a dense method of the run driver (see
 * qc_smooth.h). Statistics and rescaling run on the kernel context; the
 * per-channel scales and the weights' int8 grid for the error are small or
 * host-side copies. */
#include "qc_smooth.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qc_err.h"
#include "qc_log.h"
#include "qc_num.h"
#include "qc_quant.h"

#define ALPHA_STEPS 20           /* the search: alpha = 0, 1/20, ..., 1 */

/* A smoothing group: the operation before the point and the Linears after. */
typedef struct group {
	qc_walk_point p;
	const char *prev;        /* "input_layernorm", "self_attn.v_proj", ... */
	int prev_lin;            /* -1: a norm; else the qc_linear whose rows are divided */
	int norm;                /* prev is attn_norm (0) or mlp_norm (1) */
	int lin[3], n_lin;       /* the balanced Linears */
} group;

static const group groups[QC_WALK_POINTS] = {
	{ QC_WALK_QKV, "input_layernorm", -1, 0, { QC_LIN_Q, QC_LIN_K, QC_LIN_V }, 3 },
	{ QC_WALK_O, "self_attn.v_proj", QC_LIN_V, 0, { QC_LIN_O }, 1 },
	{ QC_WALK_GATE_UP, "post_attention_layernorm", -1, 1, { QC_LIN_GATE, QC_LIN_UP }, 2 },
	{ QC_WALK_DOWN, "mlp.up_proj", QC_LIN_UP, 0, { QC_LIN_DOWN }, 1 },
};

/* The module before the point: the norm's name in this family (Gemma 2's
 * MLP input norm is pre_feedforward_layernorm), or the Linear's path. */
static const char *prev_name(const qc_config *cfg, const group *g)
{
	return g->prev_lin < 0 ? qc_norm_path(cfg, g->norm ? QC_NORM_MLP : QC_NORM_ATTN) : g->prev;
}

struct qc_smooth {
	qc_smooth_opts o;
	qc_qrun *run;
	qk_ctx *kc;
	const qc_config *cfg;
	qc_dtype dt;             /* the model's dtype: what is written */
	int64_t T, stride;       /* tokens; every stride-th token is sampled */
	unsigned points;         /* the groups smoothed */
	/* per point, this layer */
	float *amax[QC_WALK_POINTS];       /* [cols] max |x_j| (host) */
	float *sample[QC_WALK_POINTS];     /* [ns, cols] sampled inputs (kernel memory) */
	int64_t ns[QC_WALK_POINTS], cols[QC_WALK_POINTS];
	int dirty[QC_LIN_COUNT], dirty_norm[2];
	/* scratch */
	float *kx, *ky, *kw;               /* kernel memory */
	size_t kx_n, ky_n, kw_n;
	float *ky0[3];                     /* X W^T of the group's Linears on the sample */
	size_t ky0_n[3];
	float *hw;                         /* a host copy of a weight (F16 models) */
	size_t hw_n;
	void *hb;                          /* host bytes in the model's dtype */
	size_t hb_n;
};

/* ------------------------------------------------------------ scales */

void qc_smooth_scales(const float *act_max, const float *w_max, int64_t n, double alpha,
                      int pow2, float *s)
{
	for (int64_t j = 0; j < n; j++) {
		double w = w_max[j] > 1e-5f ? w_max[j] : 1e-5;
		double v = pow((double)act_max[j], alpha) / pow(w, 1.0 - alpha);
		v = v > 1e-5 ? v : 1e-5;
		s[j] = pow2 ? (float)ldexp(1.0, (int)lround(log2(v))) : (float)v;
	}
}

/* ------------------------------------------------------------ buffers */

static int kgrow(qc_smooth *S, float **p, size_t *have, size_t n)
{
	if (*have >= n)
		return 0;
	qk_free(S->kc, *p);
	*have = 0;
	if (!(*p = qk_alloc(S->kc, n * sizeof **p)))
		return QC_ENOMEM;
	*have = n;
	return 0;
}

static int hgrow(void **p, size_t *have, size_t bytes)
{
	if (*have >= bytes)
		return 0;
	free(*p);
	*have = 0;
	if (!(*p = malloc(bytes)))
		return qc_seterr(QC_ENOMEM, "out of memory smoothing a layer");
	*have = bytes;
	return 0;
}

/* ------------------------------------------------------------ the model's dtype */

/* Round x[n] (kernel memory) to the model's dtype in place, so that the
 * walk goes on with the values the checkpoint will hold. */
static int round_to_dtype(qc_smooth *S, float *x, size_t n)
{
	if (S->dt == QC_DT_F32)
		return 0;
	if (S->dt == QC_DT_BF16) {
		QC_TRY(kgrow(S, &S->kw, &S->kw_n, n / 2 + 1));
		QC_TRY(qk_bf16_store(S->kc, S->kw, x, n));
		return qk_bf16_load(S->kc, x, S->kw, n);
	}
	QC_TRY(hgrow((void **)&S->hw, &S->hw_n, n * sizeof(float)));
	QC_TRY(hgrow(&S->hb, &S->hb_n, n * 2));
	QC_TRY(qk_download(S->kc, S->hw, x, n * sizeof(float)));
	qc_from_f32(S->hb, S->dt, S->hw, n);
	QC_TRY(qc_to_f32(S->hw, S->hb, S->dt, n));
	return qk_upload(S->kc, x, S->hw, n * sizeof(float));
}

/*
 * A smoothing scale s [n] (host) folded into a (1 + w) norm (Gemma): the
 * norm applies g = 1 + w (norm [n], kernel memory, as the model holds it),
 * so the stored weight becomes w' = g / s - 1, rounded to the model's dtype,
 * and the norm g' = 1 + w'. Unlike Llama's w / s with power-of-two scales,
 * that rounding is not exact: s_j is replaced by g_j / g'_j, the ratio the
 * norm really divided by, so that the Linears' columns, multiplied by it,
 * keep the product (AutoAWQ's scale_ln_fcs does the same fold without the
 * correction).
 */
static int fold_offset_norm(qc_smooth *S, float *norm, int64_t n, float *s)
{
	float off = (float)S->cfg->norm_offset;
	QC_TRY(hgrow((void **)&S->hw, &S->hw_n, (size_t)n * 2 * sizeof(float)));
	float *g = S->hw, *g2 = g + n;
	QC_TRY(qk_download(S->kc, g, norm, (size_t)n * sizeof *g));
	for (int64_t j = 0; j < n; j++) {
		g2[j] = off + qc_round_to(g[j] / s[j] - off, S->dt);
		float e = g[j] / g2[j];
		if (g2[j] != 0 && isfinite(e) && e > 0)
			s[j] = e;
		else
			g2[j] = g[j] / s[j];
	}
	return qk_upload(S->kc, norm, g2, (size_t)n * sizeof *g2);
}

/* Write a norm as the checkpoint stores it: x[n] (kernel memory, as the
 * model applies it) less norm_offset, in the model's dtype. */
static int write_norm(qc_smooth *S, const char *name, const float *x, int64_t n)
{
	float off = (float)S->cfg->norm_offset;
	QC_TRY(hgrow((void **)&S->hw, &S->hw_n, (size_t)n * sizeof(float)));
	QC_TRY(hgrow(&S->hb, &S->hb_n, (size_t)n * qc_dtype_size(S->dt)));
	QC_TRY(qk_download(S->kc, S->hw, x, (size_t)n * sizeof(float)));
	for (int64_t j = 0; j < n; j++)
		S->hw[j] -= off;
	qc_from_f32(S->hb, S->dt, S->hw, (size_t)n);
	return qc_qrun_write_tensor(S->run, name, S->dt, 1, &n, S->hb);
}

/* Write x[n] (kernel memory, already on the dtype's grid) as tensor name. */
static int write_tensor(qc_smooth *S, const char *name, const float *x, int ndim,
                        const int64_t *shape)
{
	size_t n = (size_t)qc_numel(ndim, shape), es = qc_dtype_size(S->dt);
	/* downloaded into a buffer the writer takes: no second copy */
	void *b = malloc(n * es + 1);
	if (!b)
		return qc_seterr(QC_ENOMEM, "out of memory for '%s'", name);
	int rc;
	if (S->dt == QC_DT_BF16) {
		if ((rc = kgrow(S, &S->kw, &S->kw_n, n / 2 + 1)) == 0 &&
		    (rc = qk_bf16_store(S->kc, S->kw, x, n)) == 0)
			rc = qk_download(S->kc, b, S->kw, n * es);
	} else if (S->dt == QC_DT_F32) {
		rc = qk_download(S->kc, b, x, n * es);
	} else {
		if ((rc = hgrow((void **)&S->hw, &S->hw_n, n * sizeof(float))) == 0 &&
		    (rc = qk_download(S->kc, S->hw, x, n * sizeof(float))) == 0)
			qc_from_f32(b, S->dt, S->hw, n);
	}
	if (rc) {
		free(b);
		return rc;
	}
	return qc_qrun_give_tensor(S->run, name, S->dt, ndim, shape, b);
}

/* ------------------------------------------------------------ the W8A8 error */

/*
 * d2 += ||Q8tok(X / s) Q8ch(W s)^T - X W^T||^2 and y2 += ||X W^T||^2 for
 * the sample X [ns, in] of point p and the group's k-th Linear W [out, in]
 * (kernel memory); s NULL is no smoothing. X W^T is computed once per
 * layer and kept (ky0[k]): the search evaluates every alpha against it.
 * With aq != NULL, also the int8 per-token error of the activations
 * themselves: aq[0] += ||X/s - Q8tok(X/s)||^2, aq[1] += ||X/s||^2.
 */
static int w8a8_error(qc_smooth *S, int p, int k, const float *W, int64_t out, const float *s,
                      double *d2, double *y2, double *aq)
{
	int64_t ns = S->ns[p], in = S->cols[p];
	size_t nw = (size_t)(out * in);
	QC_TRY(kgrow(S, &S->kx, &S->kx_n, (size_t)(ns * in)));
	QC_TRY(kgrow(S, &S->ky, &S->ky_n, (size_t)(ns * (out > in ? out : in))));
	QC_TRY(kgrow(S, &S->kw, &S->kw_n, nw));
	if (!s) /* the reference output X W^T, before any smoothing of this group */
		QC_TRY(kgrow(S, &S->ky0[k], &S->ky0_n[k], (size_t)(ns * out)));
	if (!s)
		QC_TRY(qk_gemm(S->kc, 0, 1, ns, out, in, 1.0f, S->sample[p], in, W, in, 0.0f, S->ky0[k],
		               out));
	/* the quantized activations */
	QC_TRY(qk_copy(S->kc, S->kx, S->sample[p], (size_t)(ns * in) * sizeof(float)));
	if (s)
		QC_TRY(qk_scale_cols(S->kc, S->kx, ns, in, s, 1));
	if (aq)
		QC_TRY(qk_copy(S->kc, S->ky, S->kx, (size_t)(ns * in) * sizeof(float)));
	qk_actq q8 = { QK_ACTQ_INT8_TOKEN, 0, 0 };
	QC_TRY(qk_actq_apply(S->kc, S->kx, ns, in, &q8));
	if (aq)
		QC_TRY(qk_diff_sumsq(S->kc, S->kx, S->ky, (size_t)(ns * in), &aq[0], &aq[1]));
	/* the weights on their int8 per-channel grid */
	QC_TRY(qk_copy(S->kc, S->kw, W, nw * sizeof(float)));
	QC_TRY(qk_q8_rows(S->kc, S->kw, out, in, s));
	QC_TRY(qk_gemm(S->kc, 0, 1, ns, out, in, 1.0f, S->kx, in, S->kw, in, 0.0f, S->ky, out));
	return qk_diff_sumsq(S->kc, S->ky, S->ky0[k], (size_t)(ns * out), d2, y2);
}

/* The group's relative W8A8 output error with scales s (NULL: none). */
static int group_error(qc_smooth *S, const group *g, const qc_layer *lw, const float *s,
                       double *err, double *act_err)
{
	double d2 = 0, y2 = 0, aq[2] = { 0, 0 };
	for (int k = 0; k < g->n_lin; k++) {
		int l = g->lin[k];
		QC_TRY(w8a8_error(S, g->p, k, lw->w[l], lw->out[l], s, &d2, &y2, k == 0 ? aq : NULL));
	}
	*err = qc_rel(d2, y2);
	if (act_err)
		*act_err = qc_rel(aq[0], aq[1]);
	return 0;
}

/* ------------------------------------------------------------ hooks */

static int sm_begin(void *ctx, qc_qrun *run)
{
	qc_smooth *S = ctx;
	S->run = run;
	S->kc = qc_qrun_kernels(run);
	S->cfg = qc_qrun_config(run);
	S->T = qc_qrun_tokens(run);
	if (S->T == 0)
		return qc_seterr(QC_EINVAL, "smoothing needs a token set (--calib)");
	qc_dtype td = S->cfg->torch_dtype;
	S->dt = td == QC_DT_F32 || td == QC_DT_F16 ? td : QC_DT_BF16;
	int64_t want = S->o.sample_tokens > 0 ? S->o.sample_tokens : 512;
	S->stride = (S->T + want - 1) / want;
	S->points = QC_WALK_BIT(QC_WALK_QKV) | QC_WALK_BIT(QC_WALK_GATE_UP);
	if (S->o.smooth_vo) {
		if (S->cfg->num_key_value_heads != S->cfg->num_attention_heads)
			return qc_seterr(QC_EINVAL, "v_proj -> o_proj smoothing needs one KV head per "
			                 "attention head; this model has %lld for %lld (grouped-query "
			                 "attention)", (long long)S->cfg->num_key_value_heads,
			                 (long long)S->cfg->num_attention_heads);
		S->points |= QC_WALK_BIT(QC_WALK_O);
	}
	if (S->o.smooth_ud)
		S->points |= QC_WALK_BIT(QC_WALK_DOWN);
	return 0;
}

static void sm_points(void *ctx, int layer, unsigned quant, unsigned *observe, unsigned *update)
{
	qc_smooth *S = ctx;
	(void)layer, (void)quant;
	*observe = *update = S->points;
}

static int sm_claims(void *ctx, int layer, const char *name)
{
	qc_smooth *S = ctx;
	char want[256];
	for (int p = 0; p < QC_WALK_POINTS; p++) {
		if (!(S->points & QC_WALK_BIT(p)))
			continue;
		const group *g = &groups[p];
		snprintf(want, sizeof want, "model.layers.%d.%s.weight", layer, prev_name(S->cfg, g));
		if (strcmp(name, want) == 0)
			return 1;
		snprintf(want, sizeof want, "model.layers.%d.%s.bias", layer, prev_name(S->cfg, g));
		if (g->prev_lin >= 0 && strcmp(name, want) == 0)
			return 1;
		for (int k = 0; k < g->n_lin; k++) {
			qc_linear_name(want, sizeof want, layer, (qc_linear)g->lin[k], "weight");
			if (strcmp(name, want) == 0)
				return 1;
		}
	}
	return 0;
}

static int sm_layer_begin(void *ctx, int layer, qc_layer *lw)
{
	qc_smooth *S = ctx;
	(void)layer;
	memset(S->dirty, 0, sizeof S->dirty);
	memset(S->dirty_norm, 0, sizeof S->dirty_norm);
	for (int p = 0; p < QC_WALK_POINTS; p++) {
		if (!(S->points & QC_WALK_BIT(p)))
			continue;
		const group *g = &groups[p];
		int64_t cols = lw->in[g->lin[0]];
		if (S->cols[p] != cols) {
			free(S->amax[p]);
			qk_free(S->kc, S->sample[p]);
			S->amax[p] = malloc((size_t)cols * sizeof *S->amax[p]);
			S->sample[p] = qk_alloc(S->kc, (size_t)(((S->T + S->stride - 1) / S->stride) *
			                                        cols) * sizeof(float));
			S->cols[p] = cols;
			if (!S->amax[p] || !S->sample[p])
				return qc_seterr(QC_ENOMEM, "out of memory for the smoothing statistics");
		}
		for (int64_t j = 0; j < cols; j++)
			S->amax[p][j] = 0;
		S->ns[p] = 0;
	}
	return 0;
}

static int sm_observe(void *ctx, int layer, qc_walk_point p, const float *x, int64_t row0,
                      int64_t rows, int64_t cols)
{
	qc_smooth *S = ctx;
	(void)layer;
	QC_TRY(qk_col_absmax(S->kc, x, rows, cols, S->amax[p]));
	/* every stride-th token of the whole set, in order */
	for (int64_t r = (row0 + S->stride - 1) / S->stride * S->stride; r < row0 + rows;
	     r += S->stride)
		QC_TRY(qk_copy(S->kc, S->sample[p] + S->ns[p]++ * cols, x + (r - row0) * cols,
		               (size_t)cols * sizeof *x));
	return 0;
}

/* max over j of v[j] (optionally divided by s[j]). */
static float max_of(const float *v, const float *s, int64_t n)
{
	float m = 0;
	for (int64_t j = 0; j < n; j++)
		m = fmaxf(m, s ? v[j] / s[j] : v[j]);
	return m;
}

static int sm_update(void *ctx, int layer, qc_walk_point p, qc_layer *lw)
{
	qc_smooth *S = ctx;
	const group *g = &groups[p];
	double t0 = qc_now();
	int64_t n = S->cols[p];
	float *wmax = calloc((size_t)n, sizeof *wmax), *s = malloc((size_t)n * sizeof *s);
	int rc = wmax && s ? 0 : qc_seterr(QC_ENOMEM, "out of memory smoothing a layer");
	for (int k = 0; rc == 0 && k < g->n_lin; k++)
		rc = qk_col_absmax(S->kc, lw->w[g->lin[k]], lw->out[g->lin[k]], n, wmax);
	/* the errors without smoothing, then the alpha */
	double err0 = NAN, err = NAN, aq0 = NAN, aq = NAN, alpha = S->o.alpha;
	if (rc == 0)
		rc = group_error(S, g, lw, NULL, &err0, &aq0);
	if (rc == 0 && S->o.alpha < 0) {
		double best = INFINITY;
		for (int i = 0; rc == 0 && i <= ALPHA_STEPS; i++) {
			double a = (double)i / ALPHA_STEPS, e;
			qc_smooth_scales(S->amax[p], wmax, n, a, !S->o.no_pow2, s);
			if ((rc = group_error(S, g, lw, s, &e, NULL)) == 0 && e < best) {
				best = e;
				alpha = a;
			}
			qc_log(QC_LOG_DEBUG, "layer %d %s: alpha %.2f W8A8 error %.4g", layer, prev_name(S->cfg, g),
			       a, e);
		}
	}
	if (rc == 0) {
		qc_smooth_scales(S->amax[p], wmax, n, alpha, !S->o.no_pow2, s);
		rc = group_error(S, g, lw, s, &err, &aq);
	}
	/* fold: the previous operation's channel j / s_j, the group's column j * s_j */
	if (rc == 0 && g->prev_lin < 0) {
		float *norm = g->norm ? lw->mlp_norm : lw->attn_norm;
		if (S->cfg->norm_offset)
			rc = fold_offset_norm(S, norm, n, s);
		else
			rc = qk_scale_cols(S->kc, norm, 1, n, s, 1);
		if (rc == 0 && !S->cfg->norm_offset)
			rc = round_to_dtype(S, norm, (size_t)n);
		S->dirty_norm[g->norm] = 1;
	} else if (rc == 0) {
		int l = g->prev_lin;
		rc = qk_scale_rows(S->kc, lw->w[l], lw->out[l], lw->in[l], s, 1);
		if (rc == 0 && lw->b[l])
			rc = qk_scale_cols(S->kc, lw->b[l], 1, lw->out[l], s, 1);
		if (rc == 0)
			rc = round_to_dtype(S, lw->w[l], (size_t)(lw->out[l] * lw->in[l]));
		if (rc == 0 && lw->b[l])
			rc = round_to_dtype(S, lw->b[l], (size_t)lw->out[l]);
		S->dirty[l] = 1;
	}
	for (int k = 0; rc == 0 && k < g->n_lin; k++) {
		int l = g->lin[k];
		rc = qk_scale_cols(S->kc, lw->w[l], lw->out[l], n, s, 0);
		if (rc == 0)
			rc = round_to_dtype(S, lw->w[l], (size_t)(lw->out[l] * n));
		S->dirty[l] = 1;
	}
	if (rc == 0) {
		float wmax_after = 0;
		for (int k = 0; rc == 0 && k < g->n_lin; k++)
			rc = qk_absmax(S->kc, lw->w[g->lin[k]], (size_t)(lw->out[g->lin[k]] * n),
			               &wmax_after);
		char mod[256];
		snprintf(mod, sizeof mod, "model.layers.%d.%s", layer, prev_name(S->cfg, g));
		json_t *bal = json_array();
		for (int k = 0; bal && k < g->n_lin; k++)
			json_array_append_new(bal, json_string(qc_linear_path((qc_linear)g->lin[k])));
		json_t *x = bal ? json_pack("{s:o, s:f, s:s, s:f, s:f, s:f, s:f, s:f, s:f}", "balance", bal,
		                            "alpha", alpha, "alpha_mode", S->o.alpha < 0 ? "search" : "fixed",
		                            "act_max_before", (double)max_of(S->amax[p], NULL, n),
		                            "act_max_after", (double)max_of(S->amax[p], s, n),
		                            "w_max_before", (double)max_of(wmax, NULL, n),
		                            "w_max_after", (double)wmax_after,
		                            "act_qerr_before", aq0, "act_qerr_after", aq)
		                : NULL;
		int64_t out = 0;
		for (int k = 0; k < g->n_lin; k++)
			out += lw->out[g->lin[k]];
		qc_report_line line = { .layer = mod, .rows = out, .cols = n, .scheme = "smoothquant",
		                        .group_size = -1, .symmetric = 1, .err_out = err, .err_w = NAN,
		                        .err_rtn = err0, .seconds = qc_now() - t0, .extra = x };
		if (!x)
			rc = qc_seterr(QC_ENOMEM, "out of memory");
		if (rc == 0) {
			qc_log(QC_LOG_DETAIL, "%s: alpha %.2f, W8A8 error %.4g -> %.4g, activations' int8 "
			       "error %.4g -> %.4g", mod, alpha, err0, err, aq0, aq);
			rc = qc_qrun_report(S->run, &line);
		}
	}
	free(wmax);
	free(s);
	return rc;
}

/* Write what the layer's smoothings changed, as the walk used it. */
static int sm_layer_end(void *ctx, int layer, qc_layer *lw)
{
	qc_smooth *S = ctx;
	char name[256];
	int64_t h = S->cfg->hidden_size;
	for (int i = 0; i < 2; i++) {
		if (!S->dirty_norm[i])
			continue;
		snprintf(name, sizeof name, "model.layers.%d.%s.weight", layer,
		         qc_norm_path(S->cfg, i ? QC_NORM_MLP : QC_NORM_ATTN));
		if (S->cfg->norm_offset)
			QC_TRY(write_norm(S, name, i ? lw->mlp_norm : lw->attn_norm, h));
		else
			QC_TRY(write_tensor(S, name, i ? lw->mlp_norm : lw->attn_norm, 1, &h));
	}
	for (int l = 0; l < QC_LIN_COUNT; l++) {
		if (!S->dirty[l])
			continue;
		int64_t shape[2] = { lw->out[l], lw->in[l] };
		qc_linear_name(name, sizeof name, layer, (qc_linear)l, "weight");
		QC_TRY(write_tensor(S, name, lw->w[l], 2, shape));
		int prev = (l == QC_LIN_V && (S->points & QC_WALK_BIT(QC_WALK_O))) ||
		           (l == QC_LIN_UP && (S->points & QC_WALK_BIT(QC_WALK_DOWN)));
		if (prev && lw->b[l]) {
			qc_linear_name(name, sizeof name, layer, (qc_linear)l, "bias");
			QC_TRY(write_tensor(S, name, lw->b[l], 1, &shape[0]));
		}
	}
	return 0;
}

static void sm_memory(void *ctx, const qc_config *c, int calibrated, qc_qmem *need)
{
	qc_smooth *S = ctx;
	(void)calibrated;
	int64_t h = c->hidden_size, in = c->intermediate_size;
	int64_t qd = c->num_attention_heads * c->head_dim, kvd = c->num_key_value_heads * c->head_dim;
	double params = (double)h * (qd + 2 * kvd) + (double)qd * h + 3.0 * h * in;
	double ns = S->o.sample_tokens > 0 ? (double)S->o.sample_tokens : 512;
	/* the layer, the samples, and the error's copies of the widest group */
	need->weights = params * 4;
	need->solver = ns * (2.0 * h + in + qd) * 4 + 3 * (2.0 * in * h) * 4;
}

static void sm_end(void *ctx)
{
	qc_smooth *S = ctx;
	for (int p = 0; p < QC_WALK_POINTS; p++) {
		free(S->amax[p]);
		qk_free(S->kc, S->sample[p]);
		S->amax[p] = NULL;
		S->sample[p] = NULL;
		S->cols[p] = 0;
	}
	qk_free(S->kc, S->kx);
	qk_free(S->kc, S->ky);
	qk_free(S->kc, S->kw);
	for (int k = 0; k < 3; k++) {
		qk_free(S->kc, S->ky0[k]);
		S->ky0[k] = NULL;
		S->ky0_n[k] = 0;
	}
	S->kx = S->ky = S->kw = NULL;
	S->kx_n = S->ky_n = S->kw_n = 0;
}

/* ------------------------------------------------------------ the method */

int qc_smooth_method(qc_smooth **state, qc_qmethod *m, const qc_smooth_opts *o)
{
	if (o->alpha > 1 || (o->alpha >= 0 && isnan(o->alpha)))
		return qc_seterr(QC_EINVAL, "alpha is in [0, 1], not %g", o->alpha);
	qc_smooth *S = calloc(1, sizeof *S);
	if (!S)
		return qc_seterr(QC_ENOMEM, "out of memory");
	S->o = *o;
	*state = S;
	*m = (qc_qmethod){
		.tool = "qsmooth", .ctx = S, .dense = 1,
		.restart = o->smooth_vo ? QC_WALK_BIT(QC_WALK_O) : 0, .begin = sm_begin, .memory = sm_memory,
		.points = sm_points, .layer_begin = sm_layer_begin, .observe = sm_observe,
		.update = sm_update, .layer_end = sm_layer_end, .claims = sm_claims, .end = sm_end,
	};
	return 0;
}

void qc_smooth_free(qc_smooth *S)
{
	if (!S)
		return;
	free(S->hw);
	free(S->hb);
	free(S);
}
