/* qc_awq.c - AWQ as a method of the run driver (see qc_awq.h). Everything
 * that touches weights or activations runs on the kernel context; the host
 * keeps the per-channel statistics and scales, the clip maxima, and a
 * Linear's codes until they are written. */
#include "qc_awq.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qc_err.h"
#include "qc_log.h"
#include "qc_num.h"
#include "qc_quant.h"

#define DEF_LOSS_TOKENS 2048
#define DEF_CLIP_TOKENS 512
#define DEF_GRID 20
#define CLIP_STEPS 10             /* max shrink 0.5 on a grid of 20, as auto_clip */
#define CLIP_GRID 20
#define CHUNK_TOKENS 2048         /* sampled sequences go through attention in chunks */
#define BLOCK_FLOATS ((int64_t)1 << 22)   /* a block of candidate weights, ~16 MiB */
#define STAGE_ROWS 1024           /* down_proj inputs gathered for the Hessian */

/* A smoothing point: the operation before the walker point and the Linears after. */
typedef struct point_def {
	const char *prev;        /* "input_layernorm", "self_attn.v_proj", ... */
	int prev_lin;            /* -1: a norm; else the qc_linear whose rows are divided */
	int norm;                /* prev is attn_norm (0) or mlp_norm (1) */
	int lin[3], n_lin;       /* the balanced Linears */
} point_def;

static const point_def pdefs[QC_WALK_POINTS] = {
	{ "input_layernorm", -1, 0, { QC_LIN_Q, QC_LIN_K, QC_LIN_V }, 3 },
	{ "self_attn.v_proj", QC_LIN_V, 0, { QC_LIN_O }, 1 },
	{ "post_attention_layernorm", -1, 1, { QC_LIN_GATE, QC_LIN_UP }, 2 },
	{ "mlp.up_proj", QC_LIN_UP, 0, { QC_LIN_DOWN }, 1 },
};

/* The module before the point: the norm's name in this family (Gemma 2's
 * MLP input norm is pre_feedforward_layernorm), or the Linear's path. */
static const char *prev_name(const qc_config *cfg, const point_def *d)
{
	return d->prev_lin < 0 ? qc_norm_path(cfg, d->norm ? QC_NORM_MLP : QC_NORM_ATTN) : d->prev;
}

static const int lin_point[QC_LIN_COUNT] = {
	[QC_LIN_Q] = QC_WALK_QKV, [QC_LIN_K] = QC_WALK_QKV, [QC_LIN_V] = QC_WALK_QKV,
	[QC_LIN_O] = QC_WALK_O, [QC_LIN_GATE] = QC_WALK_GATE_UP, [QC_LIN_UP] = QC_WALK_GATE_UP,
	[QC_LIN_DOWN] = QC_WALK_DOWN,
};

typedef struct point_st {
	int64_t cols;            /* inputs */
	double *xsum;            /* [cols] sum of |x| over every token (host) */
	float *xs;               /* [N, cols] loss sample (kernel memory) */
	float *xc;               /* [Nc, cols] clip sample (kernel memory) */
	int64_t nc;              /* clip rows kept so far */
	float *H;                /* [cols, cols] Hessian, then_gptq (kernel memory) */
	float *s;                /* [cols] the scales folded (host); valid when smoothed */
	json_t *info;            /* the smoothing record */
} point_st;

typedef struct lin_st {
	int on;                  /* quantized in this layer */
	double y2, w2, rtn_d2;   /* ||X W^T||^2, ||W||^2, ||X (W - RTN(W))^T||^2 */
	double seconds;          /* time spent on it (its share of its point's search) */
	float *H;                /* then_gptq: the Hessian kept for a Linear that waits */
} lin_st;

struct qc_awq {
	qc_awq_opts o;
	qc_qrun *run;
	qk_ctx *kc;
	qc_model *model;
	const qc_config *cfg;
	qc_dtype dt;             /* the model's dtype: scales and rewritten tensors */
	qk_awqspec q;            /* the search's and the codes' quantizer */
	qc_qargs ct;             /* GPTQ's quantizer (then_gptq) */
	qc_gptq *gptq;
	int64_t T;
	int mha;                 /* one KV head per attention head: v -> o is possible */
	int duo, pow2, grid;
	int64_t group_report;    /* the group size report lines give (-1: per channel) */
	/* the loss sample: nsamp whole sequences, rows [a, b) of the token set at sample offset so */
	int64_t nsamp, N, *sa, *sb, *so, *slen;
	int64_t nchunk, *chunk;  /* chunks of sampled sequences for the attention: first sequence */
	int64_t chunk_max;
	int64_t cstep, Nc;       /* the clip sample: every cstep-th token */
	/* this layer */
	unsigned sm;             /* points smoothed */
	point_st P[QC_WALK_POINTS];
	lin_st L[QC_LIN_COUNT];
	int dirty_lin[QC_LIN_COUNT], dirty_norm[2], dirty_bias[QC_LIN_COUNT];
	/* scratch (kernel memory) */
	float *cand[3];          /* q, k, v candidates */
	size_t cand_n[3];
	float *cb, *db, *yb, *Y, *Yfp, *att, *mg, *mu, *xcs, *stage;
	size_t cb_n, db_n, yb_n, Y_n, Yfp_n, att_n, mg_n, mu_n, xcs_n;
	int64_t staged;
	/* host scratch */
	float *hf;
	size_t hf_n;
};

/* ------------------------------------------------------------ scales */

static double scale_value(double xm, double wm, double r, int duo)
{
	double v = duo ? pow(xm, r) / (pow(wm, 1.0 - r) + 1e-4) : pow(xm, r);
	return v > 1e-4 ? v : 1e-4;
}

void qc_awq_scales(const double *xm, const double *wm, int64_t n, double r, int duo, int pow2,
                   float *s)
{
	double mx = -INFINITY, mn = INFINITY;
	for (int64_t j = 0; j < n; j++) {
		double v = scale_value(xm[j], duo ? wm[j] : 1.0, r, duo);
		mx = v > mx ? v : mx;
		mn = v < mn ? v : mn;
	}
	double norm = sqrt(mx * mn);
	for (int64_t j = 0; j < n; j++) {
		double v = scale_value(xm[j], duo ? wm[j] : 1.0, r, duo) / norm;
		if (!isfinite(v) || v == 0)
			v = 1;
		if (pow2)
			v = ldexp(1.0, (int)lround(log2(v)));
		s[j] = (float)v;
	}
}

/* ------------------------------------------------------------ buffers */

static int kgrow(qc_awq *A, float **p, size_t *have, size_t n)
{
	if (*have >= n)
		return 0;
	qk_free(A->kc, *p);
	*have = 0;
	if (!(*p = qk_alloc(A->kc, (n ? n : 1) * sizeof **p)))
		return qc_seterr(QC_ENOMEM, "out of memory for AWQ's working buffers (%zu floats)", n);
	*have = n;
	return 0;
}

static int hgrow(void **p, size_t *have, size_t bytes)
{
	if (*have >= bytes)
		return 0;
	free(*p);
	*have = 0;
	if (!(*p = malloc(bytes ? bytes : 1)))
		return qc_seterr(QC_ENOMEM, "out of memory quantizing a layer");
	*have = bytes;
	return 0;
}

static void *xmalloc(size_t bytes)
{
	void *p = malloc(bytes ? bytes : 1);
	if (!p)
		qc_seterr(QC_ENOMEM, "out of memory quantizing a layer");
	return p;
}

/* rows of a [rows, cols] matrix per block of candidate weights, so that
 * the block and its product with the sample stay within BLOCK_FLOATS */
static int64_t block_rows(const qc_awq *A, int64_t rows, int64_t cols)
{
	int64_t n = A->N > A->Nc ? A->N : A->Nc, w = cols > n ? cols : n;
	int64_t rb = BLOCK_FLOATS / (w > 0 ? w : 1);
	if (rb < 16)
		rb = 16;
	return rb < rows ? rb : rows;
}

/* ------------------------------------------------------------ the model's dtype */

/* Round x[n] (kernel memory) to the model's dtype in place. */
static int round_to_dtype(qc_awq *A, float *x, size_t n)
{
	if (A->dt == QC_DT_F32)
		return 0;
	QC_TRY(hgrow((void **)&A->hf, &A->hf_n, n * sizeof(float)));
	QC_TRY(qk_download(A->kc, A->hf, x, n * sizeof(float)));
	for (size_t i = 0; i < n; i++)
		A->hf[i] = qc_round_to(A->hf[i], A->dt);
	return qk_upload(A->kc, x, A->hf, n * sizeof(float));
}

/* Write x[n] (kernel memory, already on the dtype's grid) less off as
 * tensor name (off: a norm's norm_offset, the model holding 1 + w). */
static int write_tensor_off(qc_awq *A, const char *name, const float *x, int ndim,
                            const int64_t *shape, float off)
{
	size_t n = (size_t)qc_numel(ndim, shape), es = qc_dtype_size(A->dt);
	QC_TRY(hgrow((void **)&A->hf, &A->hf_n, n * sizeof(float)));
	QC_TRY(qk_download(A->kc, A->hf, x, n * sizeof(float)));
	if (off != 0.0f)
		for (size_t i = 0; i < n; i++)
			A->hf[i] -= off;
	/* converted into a buffer the writer takes: no second copy */
	void *b = malloc(n * es + 1);
	if (!b)
		return qc_seterr(QC_ENOMEM, "out of memory for '%s'", name);
	qc_from_f32(b, A->dt, A->hf, n);
	return qc_qrun_give_tensor(A->run, name, A->dt, ndim, shape, b);
}

static int write_tensor(qc_awq *A, const char *name, const float *x, int ndim,
                        const int64_t *shape)
{
	return write_tensor_off(A, name, x, ndim, shape, 0.0f);
}

/* ------------------------------------------------------------ which points */

/* The points smoothed in a layer whose quantized Linears are quant: those
 * whose every Linear is quantized (all of them in a dense run). */
static unsigned smooth_mask(const qc_awq *A, unsigned quant)
{
	unsigned sm = 0;
	if (A->o.scales_only)
		quant = (1u << QC_LIN_COUNT) - 1;
	for (int p = 0; p < QC_WALK_POINTS; p++) {
		const point_def *d = &pdefs[p];
		if (p == QC_WALK_O && !A->mha)
			continue;
		int all = d->prev_lin < 0 || ((quant >> d->prev_lin) & 1);
		for (int k = 0; k < d->n_lin; k++)
			all &= (quant >> d->lin[k]) & 1;
		if (all)
			sm |= QC_WALK_BIT(p);
	}
	return sm;
}

/* The Linear whose rows the next point divides waits for it. */
static int waits(const qc_awq *A, int l)
{
	return (l == QC_LIN_V && (A->sm & QC_WALK_BIT(QC_WALK_O))) ||
	       (l == QC_LIN_UP && (A->sm & QC_WALK_BIT(QC_WALK_DOWN)));
}

/* The scales of a Linear's columns (its point's, when smoothed) and of its
 * rows (the next point's, for a Linear that waited), or NULL. */
static const float *col_scale(const qc_awq *A, int l)
{
	int p = lin_point[l];
	return (A->sm & QC_WALK_BIT(p)) ? A->P[p].s : NULL;
}

static const float *row_scale(const qc_awq *A, int l)
{
	if (l == QC_LIN_V && (A->sm & QC_WALK_BIT(QC_WALK_O)))
		return A->P[QC_WALK_O].s;
	if (l == QC_LIN_UP && (A->sm & QC_WALK_BIT(QC_WALK_DOWN)))
		return A->P[QC_WALK_DOWN].s;
	return NULL;
}

/* ------------------------------------------------------------ the loss blocks */

/* Y [N, out] = X [N, in] C^T with C = Q(W s)/s (quant) or W, in blocks of rows of W. */
static int linear_out(qc_awq *A, const float *W, int64_t out, int64_t in, const float *X,
                      const float *s, int quant, float *Y)
{
	int64_t rb = block_rows(A, out, in);
	if (quant)
		QC_TRY(kgrow(A, &A->cb, &A->cb_n, (size_t)(rb * in)));
	for (int64_t r0 = 0; r0 < out; r0 += rb) {
		int64_t nb = out - r0 < rb ? out - r0 : rb;
		const float *C = W + r0 * in;
		if (quant) {
			QC_TRY(qk_awq_qdq(A->kc, &A->q, A->cb, C, nb, in, s, NULL, NULL, NULL, NULL));
			C = A->cb;
		}
		QC_TRY(qk_gemm(A->kc, 0, 1, A->N, nb, in, 1.0f, X, in, C, in, 0.0f, Y + r0, out));
	}
	return 0;
}

/* Y [N, H] = the MLP over X [N, H] with gate and up Q(W s)/s (quant) or as
 * they are, in blocks of the intermediate dimension (no [N, I] tensor).
 * down_proj's bias is left out: it cancels in every difference taken. */
static int mlp_out(qc_awq *A, const qc_layer *lw, const float *X, const float *s, int quant,
                   float *Y)
{
	int64_t H = lw->in[QC_LIN_GATE], I = lw->out[QC_LIN_GATE], N = A->N;
	int64_t bk = block_rows(A, I, H);
	QC_TRY(kgrow(A, &A->mg, &A->mg_n, (size_t)(N * bk)));
	QC_TRY(kgrow(A, &A->mu, &A->mu_n, (size_t)(N * bk)));
	if (quant) {
		QC_TRY(kgrow(A, &A->cb, &A->cb_n, (size_t)(bk * H)));
		QC_TRY(kgrow(A, &A->db, &A->db_n, (size_t)(bk * H)));
	}
	for (int64_t i0 = 0; i0 < I; i0 += bk) {
		int64_t nb = I - i0 < bk ? I - i0 : bk;
		const float *g = lw->w[QC_LIN_GATE] + i0 * H, *u = lw->w[QC_LIN_UP] + i0 * H;
		if (quant) {
			QC_TRY(qk_awq_qdq(A->kc, &A->q, A->cb, g, nb, H, s, NULL, NULL, NULL, NULL));
			QC_TRY(qk_awq_qdq(A->kc, &A->q, A->db, u, nb, H, s, NULL, NULL, NULL, NULL));
			g = A->cb;
			u = A->db;
		}
		const float *bg = lw->b[QC_LIN_GATE], *bu = lw->b[QC_LIN_UP];
		QC_TRY(qk_linear(A->kc, A->mg, X, g, bg ? bg + i0 : NULL, N, H, nb, 0));
		QC_TRY(qk_linear(A->kc, A->mu, X, u, bu ? bu + i0 : NULL, N, H, nb, 0));
		QC_TRY(qc_model_glu(A->model, A->mg, A->mg, A->mu, (size_t)(N * nb)));
		QC_TRY(qk_gemm(A->kc, 0, 1, N, H, nb, 1.0f, A->mg, nb, lw->w[QC_LIN_DOWN] + i0, I,
		               i0 ? 1.0f : 0.0f, Y, H));
	}
	return 0;
}

/* Y [N, H] = o_proj(attention(X)) over the sampled sequences, with q/k/v
 * Q(W s)/s (quant) or as they are, through the model's own steps. */
static int attn_out(qc_awq *A, const qc_layer *lw, const float *X, const float *s, int quant,
                    float *Y)
{
	qc_layer tl = *lw;
	int64_t H = lw->in[QC_LIN_Q];
	if (quant)
		for (int k = 0; k < 3; k++) {
			int l = QC_LIN_Q + k;
			size_t n = (size_t)(lw->out[l] * H);
			QC_TRY(kgrow(A, &A->cand[k], &A->cand_n[k], n));
			QC_TRY(qk_awq_qdq(A->kc, &A->q, A->cand[k], lw->w[l], lw->out[l], H, s, NULL, NULL,
			                  NULL, NULL));
			tl.w[l] = A->cand[k];
		}
	QC_TRY(kgrow(A, &A->att, &A->att_n, (size_t)(A->chunk_max * lw->in[QC_LIN_O])));
	for (int64_t c = 0; c < A->nchunk; c++) {
		int64_t s0 = A->chunk[c], s1 = A->chunk[c + 1];
		int64_t r0 = A->so[s0], n = A->so[s1 - 1] + A->slen[s1 - 1] - r0;
		if (n == 0)
			continue;
		QC_TRY(qc_layer_attention(A->model, &tl, X + r0 * H, A->att, A->slen + s0, s1 - s0));
		QC_TRY(qk_zero(A->kc, Y + r0 * H, (size_t)(n * H) * sizeof *Y));
		QC_TRY(qc_layer_o_proj(A->model, &tl, A->att, Y + r0 * H, n));
	}
	return 0;
}

/* The output of point p's loss block on its sample into Y [N, H]. */
static int block_out(qc_awq *A, int p, const qc_layer *lw, const float *s, int quant, float *Y)
{
	const float *X = A->P[p].xs;
	switch (p) {
	case QC_WALK_QKV: return attn_out(A, lw, X, s, quant, Y);
	case QC_WALK_O:
		return linear_out(A, lw->w[QC_LIN_O], lw->out[QC_LIN_O], lw->in[QC_LIN_O], X, s, quant, Y);
	case QC_WALK_GATE_UP: return mlp_out(A, lw, X, s, quant, Y);
	default:
		return linear_out(A, lw->w[QC_LIN_DOWN], lw->out[QC_LIN_DOWN], lw->in[QC_LIN_DOWN], X, s,
		                  quant, Y);
	}
}

/* mean of (Y - Y_fp)^2 with the candidates for s (NULL: unscaled) */
static int block_loss(qc_awq *A, int p, const qc_layer *lw, const float *s, double *loss)
{
	int64_t H = A->cfg->hidden_size;
	QC_TRY(block_out(A, p, lw, s, 1, A->Y));
	double d2 = 0, y2 = 0;
	QC_TRY(qk_diff_sumsq(A->kc, A->Y, A->Yfp, (size_t)(A->N * H), &d2, &y2));
	*loss = d2 / ((double)A->N * (double)H);
	return 0;
}

/* ------------------------------------------------------------ the search */

static json_t *balance_names(const point_def *d)
{
	json_t *b = json_array();
	for (int k = 0; b && k < d->n_lin; k++)
		if (json_array_append_new(b, json_string(qc_linear_path((qc_linear)d->lin[k]))) != 0) {
			json_decref(b);
			return NULL;
		}
	return b;
}

/*
 * Search point p's ratio: its scales into P->s, its record into P->info;
 * *y_ms = the mean square of the block's output (dense lines' errors are
 * relative to it).
 */
static int search(qc_awq *A, int layer, int p, const qc_layer *lw, double *y_ms)
{
	const point_def *d = &pdefs[p];
	point_st *P = &A->P[p];
	int64_t n = P->cols, H = A->cfg->hidden_size;
	double *xm = xmalloc((size_t)n * sizeof *xm), *wm = xmalloc((size_t)n * sizeof *wm);
	float *s = xmalloc((size_t)n * sizeof *s);
	double *losses = xmalloc((size_t)A->grid * sizeof *losses);
	int rc = xm && wm && s && losses ? 0 : QC_ENOMEM;
	if (rc == 0)
		rc = kgrow(A, &A->Y, &A->Y_n, (size_t)(A->N * H));
	if (rc == 0)
		rc = kgrow(A, &A->Yfp, &A->Yfp_n, (size_t)(A->N * H));
	for (int64_t j = 0; rc == 0 && j < n; j++) {
		xm[j] = P->xsum[j] / (double)A->T;
		wm[j] = 0;
	}
	if (rc == 0 && A->duo) {
		int64_t rows = 0;
		for (int k = 0; rc == 0 && k < d->n_lin; k++) {
			int l = d->lin[k];
			rc = qk_awq_wmean(A->kc, lw->w[l], lw->out[l], n, A->q.group, wm);
			rows += lw->out[l];
		}
		for (int64_t j = 0; rc == 0 && j < n; j++)
			wm[j] /= (double)rows;
	}
	/* the reference output, and the loss of plain rounding */
	double y2 = 0, loss_rtn = NAN, best = INFINITY, ratio = -1;
	if (rc == 0)
		rc = block_out(A, p, lw, NULL, 0, A->Yfp);
	if (rc == 0)
		rc = qk_sumsq(A->kc, A->Yfp, (size_t)(A->N * H), &y2);
	if (rc == 0)
		rc = block_loss(A, p, lw, NULL, &loss_rtn);
	for (int i = 0; rc == 0 && i < A->grid; i++) {
		double r = (double)i / A->grid;
		qc_awq_scales(xm, wm, n, r, A->duo, A->pow2, s);
		int ones = 1;
		for (int64_t j = 0; j < n; j++)
			ones &= s[j] == 1.0f;
		/* all ones: Q(W 1) / 1 is plain rounding, already measured */
		if (ones)
			losses[i] = loss_rtn;
		else if ((rc = block_loss(A, p, lw, s, &losses[i])) != 0)
			break;
		qc_log(QC_LOG_DEBUG, "layer %d %s: ratio %.3f loss %.6g", layer, prev_name(A->cfg, d), r,
		       losses[i]);
		if (losses[i] < best) {
			best = losses[i];
			ratio = r;
			memcpy(P->s, s, (size_t)n * sizeof *s);
		}
	}
	if (rc == 0 && ratio < 0)
		rc = qc_seterr(QC_ENUMERIC, "layer %d %s: no ratio gave a finite loss (the activations "
		               "or weights overflow)", layer, prev_name(A->cfg, d));
	if (rc == 0) {
		json_t *bal = balance_names(d);
		json_decref(P->info);
		P->info = bal ? json_pack("{s:s, s:o, s:f, s:f, s:f, s:f}", "prev", prev_name(A->cfg, d), "balance",
		                          bal, "ratio", ratio, "loss_r0", losses[0], "loss", best,
		                          "loss_rtn", loss_rtn)
		              : NULL;
		if (!P->info)
			rc = qc_seterr(QC_ENOMEM, "out of memory");
		*y_ms = y2 / ((double)A->N * (double)H);
		qc_log(QC_LOG_DETAIL, "layer %d %s: ratio %.2f, loss %.4g (r = 0: %.4g, unscaled: %.4g)",
		       layer, prev_name(A->cfg, d), ratio, best, losses[0], loss_rtn);
	}
	free(xm);
	free(wm);
	free(s);
	free(losses);
	return rc;
}

/* Fold point p's scales P->s: the previous operation's channel j divided,
 * the balanced Linears' column j multiplied. For a norm, P->s becomes
 * g / g' (g' the norm weight rounded to the model's dtype), the scale that
 * makes g' times the new columns equal g times the old ones. In a dense run
 * every rewritten weight is rounded to the model's dtype. */
static int fold(qc_awq *A, int p, qc_layer *lw)
{
	const point_def *d = &pdefs[p];
	point_st *P = &A->P[p];
	int64_t n = P->cols;
	int dense = A->o.scales_only;
	if (d->prev_lin < 0) {
		float *norm = d->norm ? lw->mlp_norm : lw->attn_norm;
		float *g = xmalloc((size_t)n * 2 * sizeof *g);
		if (!g)
			return QC_ENOMEM;
		float *g2 = g + n;
		int rc = qk_download(A->kc, g, norm, (size_t)n * sizeof *g);
		/* the stored weight is g - norm_offset (Gemma's (1 + w)): it
		 * becomes g / s - norm_offset, rounded to the model's dtype */
		float off = (float)A->cfg->norm_offset;
		for (int64_t j = 0; rc == 0 && j < n; j++) {
			g2[j] = off + qc_round_to(g[j] / P->s[j] - off, A->dt);
			float e = g[j] / g2[j];
			if (g2[j] != 0 && isfinite(e) && e > 0)
				P->s[j] = e;
		}
		if (rc == 0)
			rc = qk_upload(A->kc, norm, g2, (size_t)n * sizeof *g2);
		free(g);
		QC_TRY(rc);
		A->dirty_norm[d->norm] = 1;
	} else {
		int l = d->prev_lin;
		QC_TRY(qk_scale_rows(A->kc, lw->w[l], lw->out[l], lw->in[l], P->s, 1));
		if (lw->b[l]) {
			/* biases stay in the model's dtype, quantized run or not */
			QC_TRY(qk_scale_cols(A->kc, lw->b[l], 1, lw->out[l], P->s, 1));
			QC_TRY(round_to_dtype(A, lw->b[l], (size_t)lw->out[l]));
			A->dirty_bias[l] = 1;
		}
		if (dense) {
			QC_TRY(round_to_dtype(A, lw->w[l], (size_t)(lw->out[l] * lw->in[l])));
			A->dirty_lin[l] = 1;
		}
	}
	for (int k = 0; k < d->n_lin; k++) {
		int l = d->lin[k];
		QC_TRY(qk_scale_cols(A->kc, lw->w[l], lw->out[l], n, P->s, 0));
		if (dense) {
			QC_TRY(round_to_dtype(A, lw->w[l], (size_t)(lw->out[l] * n)));
			A->dirty_lin[l] = 1;
		}
	}
	return 0;
}

/* ------------------------------------------------------------ errors and codes */

/* Before any smoothing: ||W||^2, ||X W^T||^2 and plain rounding's
 * ||X (W - RTN(W))^T||^2 over X the strided sample of the Linear's point
 * (the clip sample: every cstep-th token of the whole set). */
static int lin_stats(qc_awq *A, int l, const qc_layer *lw)
{
	lin_st *L = &A->L[l];
	const float *X = A->P[lin_point[l]].xc, *W = lw->w[l];
	int64_t out = lw->out[l], in = lw->in[l], rb = block_rows(A, out, in);
	L->w2 = L->y2 = L->rtn_d2 = 0;
	QC_TRY(qk_sumsq(A->kc, W, (size_t)(out * in), &L->w2));
	QC_TRY(kgrow(A, &A->cb, &A->cb_n, (size_t)(rb * in)));
	QC_TRY(kgrow(A, &A->yb, &A->yb_n, (size_t)(A->Nc * rb)));
	for (int64_t r0 = 0; r0 < out; r0 += rb) {
		int64_t nb = out - r0 < rb ? out - r0 : rb;
		const float *Wb = W + r0 * in;
		QC_TRY(qk_gemm(A->kc, 0, 1, A->Nc, nb, in, 1.0f, X, in, Wb, in, 0.0f, A->yb, nb));
		QC_TRY(qk_sumsq(A->kc, A->yb, (size_t)(A->Nc * nb), &L->y2));
		QC_TRY(qk_awq_qdq(A->kc, &A->q, A->cb, Wb, nb, in, NULL, NULL, NULL, NULL, NULL));
		QC_TRY(qk_sub(A->kc, A->cb, Wb, A->cb, (size_t)(nb * in)));
		QC_TRY(qk_gemm(A->kc, 0, 1, A->Nc, nb, in, 1.0f, X, in, A->cb, in, 0.0f, A->yb, nb));
		QC_TRY(qk_sumsq(A->kc, A->yb, (size_t)(A->Nc * nb), &L->rtn_d2));
	}
	return 0;
}

/* Rows [r0, r0 + nb) of the error W - deq in the original coordinates
 * (columns divided by the column scales, rows multiplied by the row
 * scales), into A->db: its ||.||^2 into *dw2, ||X D^T||^2 into *d2 over
 * the point's strided sample X (original coordinates, as observed). */
static int block_errors(qc_awq *A, int l, const qc_layer *lw, int64_t r0, int64_t nb,
                        const float *deq, double *d2, double *dw2)
{
	int64_t in = lw->in[l];
	const float *cs = col_scale(A, l), *rs = row_scale(A, l);
	QC_TRY(qk_sub(A->kc, A->db, lw->w[l] + r0 * in, deq, (size_t)(nb * in)));
	if (cs)
		QC_TRY(qk_scale_cols(A->kc, A->db, nb, in, cs, 1));
	if (rs)
		QC_TRY(qk_scale_rows(A->kc, A->db, nb, in, rs + r0, 0));
	QC_TRY(qk_sumsq(A->kc, A->db, (size_t)(nb * in), dw2));
	QC_TRY(qk_gemm(A->kc, 0, 1, A->Nc, nb, in, 1.0f, A->P[lin_point[l]].xc, in, A->db, in, 0.0f,
	               A->yb, nb));
	return qk_sumsq(A->kc, A->yb, (size_t)(A->Nc * nb), d2);
}

static json_t *clip_stats(const int32_t *shrink, int64_t n)
{
	int64_t clipped = 0;
	double sum = 0, mn = 1;
	for (int64_t i = 0; i < n; i++) {
		double f = 1.0 - (double)shrink[i] / CLIP_GRID;
		clipped += shrink[i] > 0;
		sum += f;
		mn = f < mn ? f : mn;
	}
	return json_pack("{s:I, s:I, s:f, s:f}", "groups", (json_int_t)n, "clipped",
	                 (json_int_t)clipped, "ratio_min", mn, "ratio_mean", n ? sum / (double)n : 1.0);
}

/* The Linear's report line (extra: clip record or NULL, gptq info or NULL). */
static int lin_report(qc_awq *A, int layer, int l, const qc_layer *lw, double d2, double dw2,
                      json_t *clip, const qc_gptq_info *gi)
{
	lin_st *L = &A->L[l];
	char mod[256];
	qc_linear_module(mod, sizeof mod, layer, (qc_linear)l);
	int p = lin_point[l];
	json_t *sm = (A->sm & QC_WALK_BIT(p)) && A->P[p].info ? json_deep_copy(A->P[p].info)
	                                                       : json_null();
	json_t *x = json_pack("{s:s, s:b, s:b, s:o, s:o, s:I}", "method",
	                      A->o.then_gptq ? "awq+gptq" : "awq", "duo_scaling", A->duo, "pow2",
	                      A->pow2, "smooth", sm, "clip", clip ? clip : json_null(), "err_tokens",
	                      (json_int_t)A->Nc);
	if (!x)
		return qc_seterr(QC_ENOMEM, "out of memory");
	int np = l == QC_LIN_V ? QC_WALK_O : l == QC_LIN_UP ? QC_WALK_DOWN : -1;
	if (np >= 0 && row_scale(A, l) && A->P[np].info)
		json_object_set_new(x, "smooth_rows", json_deep_copy(A->P[np].info));
	if (gi) {
		json_object_set_new(x, "damp", json_real(gi->damp));
		json_object_set_new(x, "dead_inputs", json_integer(gi->dead));
	}
	double eo = qc_rel(d2, L->y2), er = qc_rel(L->rtn_d2, L->y2), ew = qc_rel(dw2, L->w2);
	double secs = L->seconds;
	qc_log(QC_LOG_DETAIL, "%s: err_out %.4g err_rtn %.4g err_w %.4g (%.1f s)", mod, eo, er, ew,
	       secs);
	qc_report_line line = { .layer = mod, .rows = lw->out[l], .cols = lw->in[l], .err_out = eo,
	                        .err_w = ew, .err_rtn = er, .seconds = secs, .extra = x };
	return qc_qrun_report(A->run, &line);
}

/* Round Linear l (its weights scaled as its points left them) with AWQ's
 * clipping, write it and replace its weights by the dequantized ones. */
static int finalize_rtn(qc_awq *A, int layer, int l, qc_layer *lw)
{
	double t0 = qc_now();
	int64_t out = lw->out[l], in = lw->in[l], G = A->q.group < in ? A->q.group : in;
	int64_t ng = (in + G - 1) / G, rb = block_rows(A, out, in);
	int clip = !A->o.no_clip && l != QC_LIN_Q && l != QC_LIN_K;
	int8_t *codes = xmalloc((size_t)(out * in));
	float *scales = xmalloc((size_t)(out * ng) * sizeof *scales);
	float *zps = A->q.zero_point ? xmalloc((size_t)(out * ng) * sizeof *zps) : NULL;
	float *cl = clip ? xmalloc((size_t)(out * ng) * sizeof *cl) : NULL;
	int32_t *shrink = clip ? xmalloc((size_t)(out * ng) * sizeof *shrink) : NULL;
	int rc = codes && scales && (zps || !A->q.zero_point) && (!clip || (cl && shrink))
	         ? 0 : QC_ENOMEM;
	json_t *cj = NULL;
	if (rc == 0 && clip) {
		/* the clip sample scaled as the weights' columns were */
		point_st *P = &A->P[lin_point[l]];
		const float *cs = col_scale(A, l);
		const float *X = P->xc;
		if (cs) {
			rc = kgrow(A, &A->xcs, &A->xcs_n, (size_t)(P->nc * in));
			if (rc == 0)
				rc = qk_copy(A->kc, A->xcs, P->xc, (size_t)(P->nc * in) * sizeof(float));
			if (rc == 0)
				rc = qk_scale_cols(A->kc, A->xcs, P->nc, in, cs, 1);
			X = A->xcs;
		}
		if (rc == 0)
			rc = qk_awq_clip(A->kc, &A->q, lw->w[l], out, in, X, P->nc, CLIP_STEPS, CLIP_GRID, cl,
			                 shrink);
		if (rc == 0 && !(cj = clip_stats(shrink, out * ng)))
			rc = qc_seterr(QC_ENOMEM, "out of memory");
	}
	if (rc == 0)
		rc = kgrow(A, &A->cb, &A->cb_n, (size_t)(rb * in));
	if (rc == 0)
		rc = kgrow(A, &A->db, &A->db_n, (size_t)(rb * in));
	if (rc == 0)
		rc = kgrow(A, &A->yb, &A->yb_n, (size_t)(A->Nc * rb));
	double d2 = 0, dw2 = 0;
	for (int64_t r0 = 0; rc == 0 && r0 < out; r0 += rb) {
		int64_t nb = out - r0 < rb ? out - r0 : rb;
		rc = qk_awq_qdq(A->kc, &A->q, A->cb, lw->w[l] + r0 * in, nb, in, NULL,
		                cl ? cl + r0 * ng : NULL, codes + r0 * in, scales + r0 * ng,
		                zps ? zps + r0 * ng : NULL);
		if (rc == 0)
			rc = block_errors(A, l, lw, r0, nb, A->cb, &d2, &dw2);
		if (rc == 0)
			rc = qk_copy(A->kc, lw->w[l] + r0 * in, A->cb, (size_t)(nb * in) * sizeof(float));
	}
	if (rc == 0)
		rc = qc_qrun_write_linear(A->run, layer, (qc_linear)l, codes, scales, zps, NULL);
	A->L[l].seconds += qc_now() - t0;
	if (rc == 0) {
		rc = lin_report(A, layer, l, lw, d2, dw2, cj, NULL);
		cj = NULL;
	}
	json_decref(cj);
	free(codes);
	free(scales);
	free(zps);
	free(cl);
	free(shrink);
	return rc;
}

/* GPTQ on the scaled weights of Linears lin[n] that share the Hessian H of
 * their scaled inputs (consumed); then as finalize_rtn. */
static int finalize_gptq(qc_awq *A, int layer, const int *lin, int n, float *H, qc_layer *lw)
{
	qc_gptq_part parts[3];
	char mods[3][256];
	memset(parts, 0, sizeof parts);
	int64_t in = lw->in[lin[0]], ng = qc_qgroups(&A->ct, in);
	int rc = 0;
	for (int k = 0; k < n && rc == 0; k++) {
		int l = lin[k];
		int64_t out = lw->out[l];
		qc_linear_module(mods[k], sizeof mods[k], layer, (qc_linear)l);
		parts[k] = (qc_gptq_part){ .name = mods[k], .W = lw->w[l], .rows = out,
		                           .codes = malloc((size_t)(out * in)),
		                           .scales = malloc((size_t)(out * ng) * sizeof(float)),
		                           .zps = A->ct.symmetric ? NULL
		                                                  : malloc((size_t)(out * ng) * sizeof(float)) };
		if (!parts[k].codes || !parts[k].scales || (!A->ct.symmetric && !parts[k].zps))
			rc = qc_seterr(QC_ENOMEM, "out of memory for layer %d", layer);
	}
	qc_gptq_info info;
	memset(&info, 0, sizeof info);
	double t0 = qc_now();
	if (rc == 0)
		rc = qc_gptq_run(A->gptq, &A->ct, H, in, parts, n, &info);
	for (int k = 0; k < n; k++)
		A->L[lin[k]].seconds += (qc_now() - t0) / n;
	int64_t G = A->ct.strategy == QC_QS_GROUP ? A->ct.group_size : in;
	for (int k = 0; k < n && rc == 0; k++) {
		int l = lin[k];
		double t1 = qc_now();
		int64_t out = lw->out[l], rb = block_rows(A, out, in);
		const int8_t *codes = parts[k].codes;
		double d2 = 0, dw2 = 0;
		rc = kgrow(A, &A->cb, &A->cb_n, (size_t)(rb * in));
		if (rc == 0)
			rc = kgrow(A, &A->db, &A->db_n, (size_t)(rb * in));
		if (rc == 0)
			rc = kgrow(A, &A->yb, &A->yb_n, (size_t)(A->Nc * rb));
		for (int64_t r0 = 0; rc == 0 && r0 < out; r0 += rb) {
			int64_t nb = out - r0 < rb ? out - r0 : rb;
			rc = qk_dequant(A->kc, A->cb, codes + r0 * in, QC_DT_I8, nb, in,
			                parts[k].scales + r0 * ng, parts[k].zps ? parts[k].zps + r0 * ng : NULL,
			                ng, G);
			if (rc == 0)
				rc = block_errors(A, l, lw, r0, nb, A->cb, &d2, &dw2);
			if (rc == 0)
				rc = qk_copy(A->kc, lw->w[l] + r0 * in, A->cb, (size_t)(nb * in) * sizeof(float));
		}
		if (rc == 0)
			rc = qc_qrun_write_linear(A->run, layer, (qc_linear)l, parts[k].codes, parts[k].scales,
			                          parts[k].zps, NULL);
		A->L[l].seconds += qc_now() - t1;
		if (rc == 0)
			rc = lin_report(A, layer, l, lw, d2, dw2, NULL, &info);
	}
	for (int k = 0; k < n; k++) {
		free(parts[k].codes);
		free(parts[k].scales);
		free(parts[k].zps);
	}
	return rc;
}

/* ------------------------------------------------------------ hooks */

static int aw_scheme(void *ctx, const qc_config *cfg, qc_qscheme *s, const char **name)
{
	qc_awq *A = ctx;
	QC_TRY(qc_qscheme_preset(s, A->o.scheme));
	*name = A->o.scheme;
	qc_qargs *a = &s->weights;
	if (A->o.group < 0) {
		a->strategy = QC_QS_CHANNEL;
		a->group_size = 0;
	} else if (A->o.group > 0) {
		a->strategy = QC_QS_GROUP;
		a->group_size = A->o.group;
	}
	a->symmetric = A->o.sym;
	a->scale_dtype = cfg->torch_dtype == QC_DT_F32 || cfg->torch_dtype == QC_DT_F16
	                 ? cfg->torch_dtype : QC_DT_BF16;
	if (A->o.scale_dtype != QC_DT_INVALID)
		a->scale_dtype = A->o.scale_dtype;
	a->arith = QC_DT_F32;
	snprintf(s->observer, sizeof s->observer, "%s", A->o.then_gptq ? "mse" : "minmax");
	return 0;
}

static void free_point(qc_awq *A, point_st *P)
{
	free(P->xsum);
	free(P->s);
	qk_free(A->kc, P->xs);
	qk_free(A->kc, P->xc);
	qk_free(A->kc, P->H);
	json_decref(P->info);
	memset(P, 0, sizeof *P);
}

/* The sampled sequences and their chunks, the clip stride. */
static int plan_samples(qc_awq *A)
{
	qc_walk *w = qc_qrun_walk(A->run);
	int64_t nseq = qc_walk_seqs(w);
	const int64_t *off = qc_walk_offsets(w);
	int64_t want = A->o.loss_tokens == 0 ? DEF_LOSS_TOKENS : A->o.loss_tokens;
	int64_t m = nseq;
	if (want > 0 && want < A->T) {
		m = (int64_t)ceil((double)want * (double)nseq / (double)A->T);
		m = m < 1 ? 1 : m > nseq ? nseq : m;
	}
	A->nsamp = m;
	A->sa = xmalloc((size_t)m * sizeof *A->sa);
	A->sb = xmalloc((size_t)m * sizeof *A->sb);
	A->so = xmalloc((size_t)m * sizeof *A->so);
	A->slen = xmalloc((size_t)m * sizeof *A->slen);
	A->chunk = xmalloc((size_t)(m + 1) * sizeof *A->chunk);
	if (!A->sa || !A->sb || !A->so || !A->slen || !A->chunk)
		return QC_ENOMEM;
	A->N = 0;
	for (int64_t k = 0; k < m; k++) {
		int64_t i = (int64_t)((double)k * (double)nseq / (double)m);
		A->sa[k] = off[i];
		A->sb[k] = off[i + 1];
		A->so[k] = A->N;
		A->slen[k] = off[i + 1] - off[i];
		A->N += A->slen[k];
	}
	if (A->N == 0)
		return qc_seterr(QC_EINVAL, "the sampled sequences of the token set are empty");
	/* chunks of whole sampled sequences, about CHUNK_TOKENS each */
	A->nchunk = 0;
	A->chunk[0] = 0;
	A->chunk_max = 0;
	for (int64_t s = 0; s < m;) {
		int64_t n = 0, s1 = s;
		while (s1 < m && (s1 == s || n + A->slen[s1] <= CHUNK_TOKENS))
			n += A->slen[s1++];
		A->chunk_max = n > A->chunk_max ? n : A->chunk_max;
		A->chunk[++A->nchunk] = s1;
		s = s1;
	}
	int64_t ct = A->o.clip_tokens > 0 ? A->o.clip_tokens : DEF_CLIP_TOKENS;
	A->cstep = A->T / ct > 1 ? A->T / ct : 1;
	A->Nc = (A->T + A->cstep - 1) / A->cstep;
	return 0;
}

static int aw_begin(void *ctx, qc_qrun *run)
{
	qc_awq *A = ctx;
	A->run = run;
	A->kc = qc_qrun_kernels(run);
	A->cfg = qc_qrun_config(run);
	A->model = qc_qrun_model(run);
	A->T = qc_qrun_tokens(run);
	if (A->T == 0)
		return qc_seterr(QC_EINVAL, "AWQ needs a calibration token set (--calib)");
	qc_dtype td = A->cfg->torch_dtype;
	A->dt = td == QC_DT_F32 || td == QC_DT_F16 ? td : QC_DT_BF16;
	A->q.scale_dtype = A->o.scale_dtype != QC_DT_INVALID ? A->o.scale_dtype : A->dt;
	A->mha = A->cfg->num_key_value_heads == A->cfg->num_attention_heads;
	if (!A->mha)
		qc_qrun_set_restart(run, 0); /* v_proj never changes at O */
	if (A->o.then_gptq) {
		qc_qscheme cs;
		const char *name;
		QC_TRY(aw_scheme(A, A->cfg, &cs, &name));
		A->ct = cs.weights;
		qc_qscheme_free(&cs);
		QC_TRY(qc_gptq_new(&A->gptq, A->kc, &A->o.go));
		size_t n = (size_t)(STAGE_ROWS * A->cfg->intermediate_size);
		if (!(A->stage = qk_alloc(A->kc, n * sizeof *A->stage)))
			return QC_ENOMEM;
	}
	return plan_samples(A);
}

static void aw_points(void *ctx, int layer, unsigned quant, unsigned *observe, unsigned *update)
{
	qc_awq *A = ctx;
	(void)layer;
	unsigned pts = 0;
	if (A->o.scales_only) {
		pts = smooth_mask(A, quant);
	} else {
		for (int l = 0; l < QC_LIN_COUNT; l++)
			if ((quant >> l) & 1)
				pts |= QC_WALK_BIT(lin_point[l]);
	}
	*observe = *update = pts;
}

static int aw_claims(void *ctx, int layer, const char *name)
{
	qc_awq *A = ctx;
	unsigned sm = smooth_mask(A, qc_qrun_quantized(A->run));
	char want[256];
	for (int p = 0; p < QC_WALK_POINTS; p++) {
		if (!(sm & QC_WALK_BIT(p)))
			continue;
		const point_def *d = &pdefs[p];
		if (d->prev_lin < 0) {
			snprintf(want, sizeof want, "model.layers.%d.%s.weight", layer, prev_name(A->cfg, d));
			if (strcmp(name, want) == 0)
				return 1;
		} else {
			int bias = qc_linear_has_bias(A->cfg, (qc_linear)d->prev_lin);
			qc_linear_name(want, sizeof want, layer, (qc_linear)d->prev_lin, "bias");
			if (bias && strcmp(name, want) == 0)
				return 1;
			qc_linear_name(want, sizeof want, layer, (qc_linear)d->prev_lin, "weight");
			if (A->o.scales_only && strcmp(name, want) == 0)
				return 1;
		}
		for (int k = 0; A->o.scales_only && k < d->n_lin; k++) {
			qc_linear_name(want, sizeof want, layer, (qc_linear)d->lin[k], "weight");
			if (strcmp(name, want) == 0)
				return 1;
		}
	}
	return 0;
}

static int aw_layer_begin(void *ctx, int layer, qc_layer *lw)
{
	qc_awq *A = ctx;
	(void)layer;
	unsigned quant = A->o.scales_only ? 0 : qc_qrun_quantized(A->run);
	unsigned obs, upd;
	aw_points(A, layer, qc_qrun_quantized(A->run), &obs, &upd);
	A->sm = smooth_mask(A, qc_qrun_quantized(A->run));
	memset(A->dirty_lin, 0, sizeof A->dirty_lin);
	memset(A->dirty_norm, 0, sizeof A->dirty_norm);
	memset(A->dirty_bias, 0, sizeof A->dirty_bias);
	for (int l = 0; l < QC_LIN_COUNT; l++) {
		qk_free(A->kc, A->L[l].H);
		memset(&A->L[l], 0, sizeof A->L[l]);
		A->L[l].on = (quant >> l) & 1;
	}
	for (int p = 0; p < QC_WALK_POINTS; p++) {
		if (!(obs & QC_WALK_BIT(p)))
			continue;
		point_st *P = &A->P[p];
		int64_t cols = lw->in[pdefs[p].lin[0]];
		if (P->cols != cols) {
			free_point(A, P);
			P->cols = cols;
			P->xsum = xmalloc((size_t)cols * sizeof *P->xsum);
			P->s = xmalloc((size_t)cols * sizeof *P->s);
			P->xs = qk_alloc(A->kc, (size_t)(A->N * cols) * sizeof(float));
			P->xc = qk_alloc(A->kc, (size_t)(A->Nc * cols) * sizeof(float));
			if (!P->xsum || !P->s || !P->xs || !P->xc)
				return qc_seterr(QC_ENOMEM, "out of memory for the samples of %lld tokens",
				                 (long long)(A->N + A->Nc));
		}
		for (int64_t j = 0; j < cols; j++)
			P->xsum[j] = 0;
		P->nc = 0;
		json_decref(P->info);
		P->info = NULL;
	}
	return 0;
}

static int flush_stage(qc_awq *A, point_st *P)
{
	if (A->staged == 0)
		return 0;
	int rc = qk_hessian_accum(A->kc, P->H, A->stage, A->staged, P->cols, 2.0f / (float)A->T);
	A->staged = 0;
	return rc;
}

/* The Hessian of a point, H = 2 X^T X / T over every token (then_gptq);
 * down_proj's blocks gathered into taller ones first. */
static int hessian_observe(qc_awq *A, int p, const float *x, int64_t row0, int64_t rows,
                           int64_t cols)
{
	point_st *P = &A->P[p];
	if (row0 == 0) {
		qk_free(A->kc, P->H);
		if (!(P->H = qk_alloc(A->kc, (size_t)(cols * cols) * sizeof *P->H)))
			return qc_seterr(QC_ENOMEM, "cannot allocate a Hessian (%lld x %lld)",
			                 (long long)cols, (long long)cols);
		QC_TRY(qk_zero(A->kc, P->H, (size_t)(cols * cols) * sizeof *P->H));
		A->staged = 0;
	}
	if (p != QC_WALK_DOWN)
		return qk_hessian_accum(A->kc, P->H, x, rows, cols, 2.0f / (float)A->T);
	while (rows > 0) {
		int64_t k = STAGE_ROWS - A->staged < rows ? STAGE_ROWS - A->staged : rows;
		QC_TRY(qk_copy(A->kc, A->stage + A->staged * cols, x, (size_t)(k * cols) * sizeof *x));
		A->staged += k;
		x += k * cols;
		rows -= k;
		if (A->staged == STAGE_ROWS)
			QC_TRY(flush_stage(A, P));
	}
	return 0;
}

static int aw_observe(void *ctx, int layer, qc_walk_point p, const float *x, int64_t row0,
                      int64_t rows, int64_t cols)
{
	qc_awq *A = ctx;
	point_st *P = &A->P[p];
	(void)layer;
	QC_TRY(qk_col_abssum(A->kc, x, rows, cols, P->xsum));
	/* the rows of sampled sequences */
	for (int64_t k = 0; k < A->nsamp; k++) {
		int64_t a = A->sa[k] > row0 ? A->sa[k] : row0;
		int64_t b = A->sb[k] < row0 + rows ? A->sb[k] : row0 + rows;
		if (a < b)
			QC_TRY(qk_copy(A->kc, P->xs + (A->so[k] + a - A->sa[k]) * cols, x + (a - row0) * cols,
			               (size_t)((b - a) * cols) * sizeof *x));
	}
	/* every cstep-th token */
	for (int64_t r = (row0 + A->cstep - 1) / A->cstep * A->cstep; r < row0 + rows; r += A->cstep)
		QC_TRY(qk_copy(A->kc, P->xc + P->nc++ * cols, x + (r - row0) * cols,
		               (size_t)cols * sizeof *x));
	if (A->o.then_gptq && !A->o.scales_only)
		QC_TRY(hessian_observe(A, p, x, row0, rows, cols));
	return 0;
}

/* A dense run's report line for point p. */
static int dense_report(qc_awq *A, int layer, int p, const qc_layer *lw, double y_ms, double t0)
{
	const point_def *d = &pdefs[p];
	point_st *P = &A->P[p];
	char mod[256];
	snprintf(mod, sizeof mod, "model.layers.%d.%s", layer, prev_name(A->cfg, d));
	int64_t rows = 0;
	for (int k = 0; k < d->n_lin; k++)
		rows += lw->out[d->lin[k]];
	json_t *x = json_deep_copy(P->info);
	if (!x || json_object_set_new(x, "method", json_string("awq")) ||
	    json_object_set_new(x, "duo_scaling", json_boolean(A->duo)) ||
	    json_object_set_new(x, "pow2", json_boolean(A->pow2)) ||
	    json_object_set_new(x, "err_tokens", json_integer(A->N))) {
		json_decref(x);
		return qc_seterr(QC_ENOMEM, "out of memory");
	}
	double loss = json_real_value(json_object_get(x, "loss"));
	double lr = json_real_value(json_object_get(x, "loss_rtn"));
	qc_report_line line = { .layer = mod, .rows = rows, .cols = P->cols, .scheme = A->o.scheme,
	                        .group_size = A->group_report, .symmetric = A->o.sym,
	                        .err_out = qc_rel(loss, y_ms), .err_w = NAN,
	                        .err_rtn = qc_rel(lr, y_ms), .seconds = qc_now() - t0, .extra = x };
	return qc_qrun_report(A->run, &line);
}

/* The Linears of point p that are finalized now: its own quantized ones
 * that do not wait, and the one that waited for p (v at O, up at DOWN). */
static int finalize_point(qc_awq *A, int layer, int p, qc_layer *lw)
{
	const point_def *d = &pdefs[p];
	int prev = d->prev_lin >= 0 && (A->sm & QC_WALK_BIT(p)) ? d->prev_lin : -1;
	if (!A->o.then_gptq) {
		if (prev >= 0)
			QC_TRY(finalize_rtn(A, layer, prev, lw));
		for (int k = 0; k < d->n_lin; k++) {
			int l = d->lin[k];
			if (A->L[l].on && !waits(A, l))
				QC_TRY(finalize_rtn(A, layer, l, lw));
		}
		return 0;
	}
	if (prev >= 0) {
		int one = prev;
		float *H = A->L[prev].H;
		A->L[prev].H = NULL;
		int rc = finalize_gptq(A, layer, &one, 1, H, lw);
		qk_free(A->kc, H);
		QC_TRY(rc);
	}
	int lin[3], n = 0;
	for (int k = 0; k < d->n_lin; k++) {
		int l = d->lin[k];
		if (A->L[l].on && !waits(A, l))
			lin[n++] = l;
	}
	point_st *P = &A->P[p];
	if (n > 0)
		QC_TRY(finalize_gptq(A, layer, lin, n, P->H, lw));
	qk_free(A->kc, P->H);
	P->H = NULL;
	return 0;
}

static int aw_update(void *ctx, int layer, qc_walk_point p, qc_layer *lw)
{
	qc_awq *A = ctx;
	const point_def *d = &pdefs[p];
	point_st *P = &A->P[p];
	double t0 = qc_now();
	int smoothed = (A->sm & QC_WALK_BIT(p)) != 0;
	if (A->o.then_gptq && p == QC_WALK_DOWN)
		QC_TRY(flush_stage(A, P));
	/* the errors of plain rounding, before any smoothing touches the weights */
	int n_on = 0;
	for (int k = 0; !A->o.scales_only && k < d->n_lin; k++) {
		int l = d->lin[k];
		if (A->L[l].on) {
			double t1 = qc_now();
			QC_TRY(lin_stats(A, l, lw));
			A->L[l].seconds += qc_now() - t1;
			n_on++;
		}
	}
	double y_ms = NAN;
	if (smoothed) {
		double t1 = qc_now();
		QC_TRY(search(A, layer, p, lw, &y_ms));
		QC_TRY(fold(A, p, lw));
		/* the search's time shared by the Linears it balanced */
		for (int k = 0; k < d->n_lin; k++)
			if (A->L[d->lin[k]].on)
				A->L[d->lin[k]].seconds += (qc_now() - t1) / n_on;
	}
	if (A->o.scales_only)
		return smoothed ? dense_report(A, layer, p, lw, y_ms, t0) : 0;
	if (A->o.then_gptq && P->H) {
		/* the Hessian of the scaled inputs X / s: S^-1 H S^-1 */
		if (smoothed) {
			QC_TRY(qk_scale_rows(A->kc, P->H, P->cols, P->cols, P->s, 1));
			QC_TRY(qk_scale_cols(A->kc, P->H, P->cols, P->cols, P->s, 1));
		}
		for (int k = 0; k < d->n_lin; k++) {
			int l = d->lin[k];
			if (!A->L[l].on || !waits(A, l))
				continue;
			size_t bytes = (size_t)(P->cols * P->cols) * sizeof(float);
			if (!(A->L[l].H = qk_alloc(A->kc, bytes)))
				return QC_ENOMEM;
			QC_TRY(qk_copy(A->kc, A->L[l].H, P->H, bytes));
		}
	}
	return finalize_point(A, layer, p, lw);
}

/* Write what the layer's smoothing changed and the driver does not. */
static int aw_layer_end(void *ctx, int layer, qc_layer *lw)
{
	qc_awq *A = ctx;
	char name[256];
	int64_t h = A->cfg->hidden_size;
	for (int i = 0; i < 2; i++) {
		if (!A->dirty_norm[i])
			continue;
		snprintf(name, sizeof name, "model.layers.%d.%s.weight", layer,
		         qc_norm_path(A->cfg, i ? QC_NORM_MLP : QC_NORM_ATTN));
		QC_TRY(write_tensor_off(A, name, i ? lw->mlp_norm : lw->attn_norm, 1, &h,
		                        (float)A->cfg->norm_offset));
	}
	for (int l = 0; l < QC_LIN_COUNT; l++) {
		int64_t shape[2] = { lw->out[l], lw->in[l] };
		if (A->dirty_lin[l]) {
			qc_linear_name(name, sizeof name, layer, (qc_linear)l, "weight");
			QC_TRY(write_tensor(A, name, lw->w[l], 2, shape));
		}
		if (A->dirty_bias[l]) {
			qc_linear_name(name, sizeof name, layer, (qc_linear)l, "bias");
			QC_TRY(write_tensor(A, name, lw->b[l], 1, &shape[0]));
		}
	}
	return 0;
}

/* One layer at its peak: the FP32 weights (the driver's) and the largest
 * Linear's codes; the samples of every point, the candidate q/k/v, the loss
 * block's outputs and the block buffers; with GPTQ the Hessians (down_proj's
 * and a copy of gate/up's), the staging and the solver's working matrix.
 * The loss sample is taken as loss_tokens (2048 for every token: the
 * token count is not known here). */
static void aw_memory(void *ctx, const qc_config *c, int calibrated, qc_qmem *need)
{
	qc_awq *A = ctx;
	(void)calibrated;
	double h = (double)c->hidden_size, in = (double)c->intermediate_size;
	double qd = (double)(c->num_attention_heads * c->head_dim);
	double kvd = (double)(c->num_key_value_heads * c->head_dim);
	double params = h * (qd + 2 * kvd) + qd * h + 3.0 * h * in;
	double N = A->o.loss_tokens > 0 ? (double)A->o.loss_tokens : DEF_LOSS_TOKENS;
	double Nc = 2.0 * (A->o.clip_tokens > 0 ? (double)A->o.clip_tokens : DEF_CLIP_TOKENS);
	double blk = (double)BLOCK_FLOATS < in * h ? (double)BLOCK_FLOATS : in * h;
	need->weights = params * 4 + in * h * 1.2;
	need->solver = (N + Nc) * (2 * h + qd + in) * 4 + (qd + 2 * kvd) * h * 4 + 5 * blk * 4 +
	               2 * N * h * 4 + Nc * in * 4 + (A->o.then_gptq ? in * h * 4 : 0);
	need->hessian = A->o.then_gptq ? (in * in + 2 * h * h) * 4 + STAGE_ROWS * in * 4.0 : 0;
}

static void aw_end(void *ctx)
{
	qc_awq *A = ctx;
	for (int p = 0; p < QC_WALK_POINTS; p++)
		free_point(A, &A->P[p]);
	for (int l = 0; l < QC_LIN_COUNT; l++) {
		qk_free(A->kc, A->L[l].H);
		A->L[l].H = NULL;
	}
	for (int k = 0; k < 3; k++) {
		qk_free(A->kc, A->cand[k]);
		A->cand[k] = NULL;
		A->cand_n[k] = 0;
	}
	float **bufs[] = { &A->cb, &A->db, &A->yb, &A->Y, &A->Yfp, &A->att, &A->mg, &A->mu, &A->xcs,
	                   &A->stage };
	size_t *ns[] = { &A->cb_n, &A->db_n, &A->yb_n, &A->Y_n, &A->Yfp_n, &A->att_n, &A->mg_n,
	                 &A->mu_n, &A->xcs_n, NULL };
	for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) {
		qk_free(A->kc, *bufs[i]);
		*bufs[i] = NULL;
		if (ns[i])
			*ns[i] = 0;
	}
	qc_gptq_free(A->gptq);
	A->gptq = NULL;
	free(A->sa);
	free(A->sb);
	free(A->so);
	free(A->slen);
	free(A->chunk);
	A->sa = A->sb = A->so = A->slen = A->chunk = NULL;
}

/* ------------------------------------------------------------ the method */

int qc_awq_method(qc_awq **state, qc_qmethod *m, const qc_awq_opts *o)
{
	*state = NULL;
	if (!o->scheme || (strcmp(o->scheme, "w4a16") != 0 && strcmp(o->scheme, "w8a16") != 0))
		return qc_seterr(QC_EINVAL, "AWQ's schemes are w4a16 and w8a16, not '%s'",
		                 o->scheme ? o->scheme : "(none)");
	if (o->grid < 0 || o->grid > 1000)
		return qc_seterr(QC_EINVAL, "the grid is 1 to 1000 ratios, not %d", o->grid);
	if (o->group < -1)
		return qc_seterr(QC_EINVAL, "invalid group size %lld", (long long)o->group);
	if (o->scales_only && o->then_gptq)
		return qc_seterr(QC_EINVAL, "a scales-only run quantizes nothing to hand to GPTQ");
	qc_awq *A = calloc(1, sizeof *A);
	if (!A)
		return qc_seterr(QC_ENOMEM, "out of memory");
	A->o = *o;
	A->duo = !o->no_duo;
	A->pow2 = o->pow2 < 0 ? o->scales_only : o->pow2;
	A->grid = o->grid > 0 ? o->grid : DEF_GRID;
	int bits = strcmp(o->scheme, "w8a16") == 0 ? 8 : 4;
	/* per channel: one group as wide as any row */
	A->group_report = o->group != 0 ? o->group : bits == 8 ? -1 : 128;
	A->q = (qk_awqspec){ .bits = bits, .zero_point = !o->sym,
	                     .group = A->group_report > 0 ? A->group_report : INT32_MAX,
	                     .scale_dtype = QC_DT_BF16 };
	*state = A;
	*m = (qc_qmethod){
		.tool = "qawq", .ctx = A, .dense = o->scales_only, .restart = QC_WALK_BIT(QC_WALK_O),
		.scheme = o->scales_only ? NULL : aw_scheme, .begin = aw_begin, .memory = aw_memory,
		.points = aw_points, .layer_begin = aw_layer_begin, .observe = aw_observe,
		.update = aw_update, .layer_end = aw_layer_end, .claims = aw_claims, .end = aw_end,
	};
	return 0;
}

void qc_awq_free(qc_awq *A)
{
	if (!A)
		return;
	free(A->hf);
	free(A);
}
