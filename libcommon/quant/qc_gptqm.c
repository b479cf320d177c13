/* qc_gptqm.c - GPTQ and round to nearest as a method of the run driver
 * (see qc_gptqm.h). */
#include "qc_gptqm.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "qc_err.h"
#include "qc_ggml.h"
#include "qc_kgptq.h"
#include "qc_log.h"

#define STAGE_ROWS 1024 /* down_proj inputs gathered into blocks this tall */

struct qc_gptqm {
	qc_gptqm_opts o;
	float amax[QC_WALK_POINTS]; /* act_static: max |x| at each point */
	qc_qrun *run;
	qk_ctx *kc;
	qc_gptq *g;
	int64_t T;                 /* calibration tokens, 0 without */
	float *H;                  /* [n, n] Hessian of the current point (kernel memory) */
	int64_t Hn;
	float *stage;              /* [STAGE_ROWS, intermediate] down_proj inputs (kernel memory) */
	int64_t staged;
};

const char *qc_gptqm_clip_name(const qc_gptq_opts *o)
{
	return o->clip.mode == QC_CLIP_MINMAX ? "minmax" : o->clip_hweight ? "mse-h" : "mse";
}

int qc_gptqm_ggml_scheme(const char *scheme, int *ggml_type, int *mix)
{
	static const struct { const char *name; int type, mix; } k[] = {
		{ "gguf-q4_k", QC_GGML_Q4_K, 0 }, { "gguf-q4_k_m", QC_GGML_Q4_K, 1 },
		{ "gguf-q5_k", QC_GGML_Q5_K, 0 }, { "gguf-q5_k_m", QC_GGML_Q5_K, 1 },
		{ "gguf-q6_k", QC_GGML_Q6_K, 0 },
	};
	for (size_t i = 0; i < sizeof k / sizeof k[0]; i++)
		if (strcmp(scheme, k[i].name) == 0) {
			*ggml_type = k[i].type;
			*mix = k[i].mix;
			return 0;
		}
	return QC_EINVAL;
}

/* The K-quant schemes: which Linears are quantized is all the scheme
 * says here (the blocks are the method's own format); group and symmetry
 * name the grid's sub-blocks in report lines. */
static int gm_kscheme(qc_gptqm *G, const qc_config *cfg, qc_qscheme *s, const char **name)
{
	QC_TRY(qc_qscheme_preset(s, "w4a16"));
	*name = G->o.scheme;
	qc_qargs *a = &s->weights;
	a->strategy = QC_QS_GROUP;
	a->group_size = G->o.ggml_type == QC_GGML_Q6_K ? 16 : 32;
	a->symmetric = G->o.ggml_type == QC_GGML_Q6_K;
	a->scale_dtype = QC_DT_F16;
	a->arith = QC_DT_F32;
	snprintf(s->observer, sizeof s->observer, "minmax");
	int64_t qd = cfg->num_attention_heads * cfg->head_dim;
	if (cfg->hidden_size % QC_GGML_QK_K || cfg->intermediate_size % QC_GGML_QK_K ||
	    qd % QC_GGML_QK_K)
		return qc_seterr(QC_EUNSUPPORTED, "%s: Linear inputs (%lld, %lld, %lld) must be "
		                 "multiples of %d, the K-quant super-block", G->o.scheme,
		                 (long long)cfg->hidden_size, (long long)cfg->intermediate_size,
		                 (long long)qd, QC_GGML_QK_K);
	return 0;
}

static int gm_scheme(void *ctx, const qc_config *cfg, qc_qscheme *s, const char **name)
{
	qc_gptqm *G = ctx;
	if (G->o.ggml_type)
		return gm_kscheme(G, cfg, s, name);
	QC_TRY(qc_qscheme_preset(s, G->o.scheme));
	*name = G->o.scheme;
	qc_qargs *a = &s->weights;
	if (G->o.group < 0) {
		a->strategy = QC_QS_CHANNEL;
		a->group_size = 0;
	} else if (G->o.group > 0) {
		a->strategy = QC_QS_GROUP;
		a->group_size = G->o.group;
	}
	if (G->o.sym >= 0)
		a->symmetric = G->o.sym;
	if (strcmp(G->o.scheme, "w8a8") == 0)
		snprintf(s->format, sizeof s->format, "int-quantized");
	if (G->o.act_static) {
		s->act = QC_ACT_STATIC_TENSOR;
		s->act_is_float = 0;
		s->act_symmetric = 1;
	}
	a->scale_dtype = cfg->torch_dtype == QC_DT_F32 || cfg->torch_dtype == QC_DT_F16
	                 ? cfg->torch_dtype : QC_DT_BF16;
	if (G->o.scale_dtype != QC_DT_INVALID)
		a->scale_dtype = G->o.scale_dtype;
	/* GPTQ quantizes an FP32 working copy; round to nearest works on the
	 * weights in their own dtype, as compressed-tensors does */
	a->arith = G->o.go.method == QC_GPTQ_METHOD_RTN ? a->scale_dtype : QC_DT_F32;
	snprintf(s->observer, sizeof s->observer, "%s",
	         G->o.go.clip.mode == QC_CLIP_MSE ? "mse" : "minmax");
	return 0;
}

/* One layer's peak: its FP32 weights and codes held until the shard, a
 * Hessian of the widest input and the down_proj staging, the solver's
 * stacked working copy and codes. */
static void gm_memory(void *ctx, const qc_config *c, int calibrated, qc_qmem *need)
{
	qc_gptqm *G = ctx;
	int64_t h = c->hidden_size, in = c->intermediate_size;
	int64_t qd = c->num_attention_heads * c->head_dim, kvd = c->num_key_value_heads * c->head_dim;
	double params = (double)h * (qd + 2 * kvd) + (double)qd * h + 3.0 * h * in;
	need->weights = params * 4 + params * 1.1;
	double nmax = (double)(in > h ? in : h);
	if (qd > nmax)
		nmax = (double)qd;
	need->hessian = (calibrated ? nmax * nmax * 4 : 0) + (double)STAGE_ROWS * in * 4;
	double rmax = 2.0 * in * h;                /* gate/up stacked, the largest */
	if ((qd + 2.0 * kvd) * h > rmax)
		rmax = (qd + 2.0 * kvd) * h;
	need->solver = rmax * 4 * (calibrated && G->o.go.method == QC_GPTQ_METHOD_GPTQ ? 1 : 0) +
	               rmax * 1.0;
	/* the K-quant solver: host codes, values and two transposes, kernel
	 * transposes and scratch (qc_kgptq.h) */
	if (G->o.ggml_type)
		need->solver = rmax * (calibrated ? 25.0 : 5.0);
}

static int gm_begin(void *ctx, qc_qrun *run)
{
	qc_gptqm *G = ctx;
	G->run = run;
	G->kc = qc_qrun_kernels(run);
	G->T = qc_qrun_tokens(run);
	QC_TRY(qc_gptq_new(&G->g, G->kc, &G->o.go));
	size_t n = (size_t)(STAGE_ROWS * qc_qrun_config(run)->intermediate_size);
	if (G->T && !(G->stage = qk_alloc(G->kc, n * sizeof *G->stage)))
		return QC_ENOMEM;
	return 0;
}

static int flush_stage(qc_gptqm *G)
{
	if (G->staged == 0)
		return 0;
	int rc = qk_hessian_accum(G->kc, G->H, G->stage, G->staged, G->Hn, 2.0f / (float)G->T);
	G->staged = 0;
	return rc;
}

/* The Hessian of a point: H = 2 X^T X / T, accumulated chunk by chunk
 * (upper triangle). down_proj inputs arrive in blocks of the model's MLP
 * rows; they are gathered into taller blocks first, which the rank-k
 * update runs faster on. */
static int gm_observe(void *ctx, int layer, qc_walk_point p, const float *x, int64_t row0,
                      int64_t rows, int64_t cols)
{
	qc_gptqm *G = ctx;
	if (row0 == 0)
		G->amax[p] = 0;
	if (G->o.act_static)
		QC_TRY(qk_absmax(G->kc, x, (size_t)(rows * cols), &G->amax[p]));
	if (row0 == 0) {
		/* one Hessian at a time, freed after its update */
		qk_free(G->kc, G->H);
		if (!(G->H = qk_alloc(G->kc, (size_t)(cols * cols) * sizeof *G->H)))
			return qc_seterr(QC_ENOMEM, "cannot allocate the Hessian of layer %d (%lld x %lld)",
			                 layer, (long long)cols, (long long)cols);
		QC_TRY(qk_zero(G->kc, G->H, (size_t)(cols * cols) * sizeof *G->H));
		G->Hn = cols;
		G->staged = 0;
	}
	if (p != QC_WALK_DOWN)
		return qk_hessian_accum(G->kc, G->H, x, rows, cols, 2.0f / (float)G->T);
	while (rows > 0) {
		int64_t k = STAGE_ROWS - G->staged < rows ? STAGE_ROWS - G->staged : rows;
		QC_TRY(qk_copy(G->kc, G->stage + G->staged * cols, x, (size_t)(k * cols) * sizeof *x));
		G->staged += k;
		x += k * cols;
		rows -= k;
		if (G->staged == STAGE_ROWS)
			QC_TRY(flush_stage(G));
	}
	return 0;
}

/* A report line with GPTQ's own keys. */
static int add_line(qc_gptqm *G, const char *mod, int64_t rows, int64_t cols,
                    const qc_gptq_part *pt, const qc_gptq_info *info,
                    double input_scale)
{
	const qc_qscheme *s = qc_qrun_scheme(G->run);
	int solved = G->T && G->o.go.method == QC_GPTQ_METHOD_GPTQ;
	json_t *x = json_pack("{s:s, s:s, s:s, s:s}", "method", qc_gptq_method_name(G->o.go.method),
	                      "actorder", qc_gptq_actorder_name(G->o.go.actorder),
	                      "clip", qc_gptqm_clip_name(&G->o.go), "arith", qc_dtype_name(s->weights.arith));
	if (!x)
		return qc_seterr(QC_ENOMEM, "out of memory");
	if (solved) {
		json_object_set_new(x, "damp", json_real(info->damp));
		json_object_set_new(x, "dead_inputs", json_integer(info->dead));
	}
	if (isfinite(input_scale))
		json_object_set_new(x, "input_scale", json_real(input_scale));
	/* the rows err_out and err_rtn were measured on, when not all */
	int64_t err_rows = qc_gptq_err_rows(rows, cols, G->o.go.exact_errors);
	if (G->T && err_rows < rows)
		json_object_set_new(x, "err_rows", json_integer(err_rows));
	qc_log(QC_LOG_DETAIL, "%s: err_out %.4g err_rtn %.4g err_w %.4g%s%.3g (%.1f s)", mod,
	       pt->err_out, pt->err_rtn, pt->err_w, solved ? " damp " : "", solved ? info->damp : 0.0,
	       pt->seconds);
	qc_report_line line = { .layer = mod, .rows = rows, .cols = cols, .err_out = pt->err_out,
	                        .err_w = pt->err_w, .err_rtn = pt->err_rtn, .seconds = pt->seconds,
	                        .extra = x };
	return qc_qrun_report(G->run, &line);
}

/* The ggml type of Linear l of `layer` (the mix of llama.cpp's *_K_M) */
static int ktype(const qc_gptqm *G, int layer, qc_linear l)
{
	static const char *gname[QC_LIN_COUNT] = { "attn_q", "attn_k", "attn_v", "attn_output",
		                                       "ffn_gate", "ffn_up", "ffn_down" };
	if (!G->o.ggml_mix)
		return G->o.ggml_type;
	char nm[64];
	snprintf(nm, sizeof nm, "blk.%d.%s.weight", layer, gname[l]);
	int n_layers = (int)qc_qrun_config(G->run)->num_hidden_layers;
	return qc_ggml_q4km_type(nm, layer, n_layers) == QC_GGML_Q6_K ? QC_GGML_Q6_K
	                                                            : G->o.ggml_type;
}

/* The K-quant update: the point's Linears solved together on their grids
 * (qc_kgptq_run), each written as its float weight and its ggml blocks. */
static int gm_kupdate(qc_gptqm *G, int layer, qc_walk_point p, qc_layer *lw)
{
	qc_linear first;
	int count;
	qc_walk_point_linears(p, &first, &count);
	unsigned quant = qc_qrun_quantized(G->run);
	qc_kgptq_part parts[3];
	qc_linear lin[3];
	char mods[3][256];
	size_t rb[3];
	int n = 0, rc = 0;
	memset(parts, 0, sizeof parts);
	for (int k = 0; k < count && rc == 0; k++) {
		qc_linear l = (qc_linear)(first + k);
		if (!((quant >> l) & 1))
			continue;
		int t = ktype(G, layer, l);
		qc_linear_module(mods[n], sizeof mods[n], layer, l);
		if ((rc = qc_ggml_row_bytes(t, lw->in[l], &rb[n])))
			break;
		parts[n] = (qc_kgptq_part){ .name = mods[n], .type = t, .W = lw->w[l],
		                            .rows = lw->out[l], .deq = lw->w[l],
		                            .blocks = malloc(rb[n] * (size_t)lw->out[l]) };
		lin[n++] = l;
		if (!parts[n - 1].blocks)
			rc = qc_seterr(QC_ENOMEM, "out of memory for layer %d", layer);
	}
	int solved = G->T && G->o.go.method == QC_GPTQ_METHOD_GPTQ;
	qc_kgptq_info info;
	memset(&info, 0, sizeof info);
	double t0 = qc_now();
	if (rc == 0 && n > 0)
		rc = qc_kgptq_run(G->kc, G->T ? G->H : NULL, lw->in[first], G->o.go.damp,
		                  G->o.go.damp_max, solved, G->o.go.block, parts, n, &info);
	double secs = qc_now() - t0;
	qk_free(G->kc, G->H); /* consumed */
	G->H = NULL;
	if (rc == 0 && n > 0)
		qc_log(QC_LOG_DEBUG, "layer %d %s: factor %.2f s, grid %.2f s, errors %.2f s, sweep "
		       "%.2f s", layer, qc_walk_point_name(p), info.t_factor, info.t_grid, info.t_errors,
		       info.t_sweep);
	float *host = NULL;
	for (int j = 0; j < n && rc == 0; j++) {
		qc_linear l = lin[j];
		int64_t rows = lw->out[l], cols = lw->in[l];
		float *h2 = realloc(host, (size_t)(rows * cols) * sizeof *h2);
		if (!h2) {
			rc = qc_seterr(QC_ENOMEM, "out of memory for layer %d", layer);
			break;
		}
		host = h2;
		char name[300], tn[8];
		snprintf(tn, sizeof tn, "%s", qc_ggml_type_name(parts[j].type));
		for (char *c = tn; *c; c++)
			*c = (char)(*c >= 'A' && *c <= 'Z' ? *c - 'A' + 'a' : *c);
		int64_t sw[2] = { rows, cols }, sb[2] = { rows, (int64_t)rb[j] };
		snprintf(name, sizeof name, "%s.weight", mods[j]);
		if ((rc = qk_download(G->kc, host, lw->w[l], (size_t)(rows * cols) * sizeof *host)) ||
		    (rc = qc_qrun_write_tensor(G->run, name, QC_DT_F32, 2, sw, host)))
			break;
		snprintf(name, sizeof name, "%s.weight_ggml_%s", mods[j], tn);
		if ((rc = qc_qrun_write_tensor(G->run, name, QC_DT_U8, 2, sb, parts[j].blocks)))
			break;
		json_t *x = json_pack("{s:s, s:s, s:s}", "method", qc_gptq_method_name(G->o.go.method),
		                      "ggml_type", qc_ggml_type_name(parts[j].type), "actorder", "none");
		if (!x) {
			rc = qc_seterr(QC_ENOMEM, "out of memory");
			break;
		}
		if (solved) {
			json_object_set_new(x, "damp", json_real(info.damp));
			json_object_set_new(x, "dead_inputs", json_integer(info.dead));
		}
		qc_log(QC_LOG_DETAIL, "%s %s: err_out %.4g err_rtn %.4g err_w %.4g", mods[j],
		       qc_ggml_type_name(parts[j].type), parts[j].err_out, parts[j].err_rtn,
		       parts[j].err_w);
		qc_report_line line = { .layer = mods[j], .rows = rows, .cols = cols,
		                        .err_out = parts[j].err_out, .err_w = parts[j].err_w,
		                        .err_rtn = parts[j].err_rtn, .seconds = secs / n, .extra = x };
		rc = qc_qrun_report(G->run, &line);
	}
	free(host);
	for (int j = 0; j < n; j++)
		free(parts[j].blocks);
	return rc;
}

/* Quantize the Linears that read point p, sharing its Hessian; their
 * weights in lw become the dequantized ones (the walker recomputes from
 * there), and their codes go to the output. */
static int gm_update(void *ctx, int layer, qc_walk_point p, qc_layer *lw)
{
	qc_gptqm *G = ctx;
	qc_linear first;
	int count;
	qc_walk_point_linears(p, &first, &count);
	unsigned quant = qc_qrun_quantized(G->run);
	if (G->T && p == QC_WALK_DOWN)
		QC_TRY(flush_stage(G));
	if (G->o.ggml_type)
		return gm_kupdate(G, layer, p, lw);
	const qc_qargs *a = &qc_qrun_scheme(G->run)->weights;
	qc_gptq_part parts[3];
	qc_linear lin[3];
	char mods[3][256];
	int n = 0, rc = 0;
	memset(parts, 0, sizeof parts);
	for (int k = 0; k < count && rc == 0; k++) {
		qc_linear l = (qc_linear)(first + k);
		if (!((quant >> l) & 1))
			continue;
		int64_t rows = lw->out[l], cols = lw->in[l];
		int64_t ns = a->strategy == QC_QS_GROUP ? rows * qc_qgroups(a, cols) : rows;
		qc_linear_module(mods[n], sizeof mods[n], layer, l);
		parts[n] = (qc_gptq_part){ .name = mods[n], .W = lw->w[l], .rows = rows,
		                           .codes = malloc((size_t)(rows * cols)),
		                           .scales = malloc((size_t)ns * sizeof(float)),
		                           .zps = a->symmetric ? NULL : malloc((size_t)ns * sizeof(float)),
		                           .deq = lw->w[l] };
		lin[n++] = l;
		if (!parts[n - 1].codes || !parts[n - 1].scales || (!a->symmetric && !parts[n - 1].zps))
			rc = qc_seterr(QC_ENOMEM, "out of memory for layer %d", layer);
	}
	qc_gptq_info info;
	memset(&info, 0, sizeof info);
	if (rc == 0 && n > 0)
		rc = qc_gptq_run(G->g, a, G->T ? G->H : NULL, lw->in[first], parts, n, &info);
	qk_free(G->kc, G->H); /* consumed */
	G->H = NULL;
	if (rc == 0 && n > 0)
		qc_log(QC_LOG_DEBUG, "layer %d %s: hessian prepared and factored in %.2f s, parameters "
		       "%.2f s, errors of W and RTN %.2f s, sweep %.2f s", layer, qc_walk_point_name(p),
		       info.t_factor, info.t_params, info.t_errors, info.t_sweep);
	/* the static input scale of the point: int8, symmetric, per tensor */
	float in_scale = 0, z;
	if (G->o.act_static) {
		qc_qargs ia = *a;
		ia.is_float = 0;
		ia.bits = 8;
		ia.symmetric = 1;
		ia.strategy = QC_QS_TENSOR;
		ia.arith = QC_DT_F32;
		qc_qparams(&ia, -G->amax[p], G->amax[p], &in_scale, &z);
	}
	for (int j = 0; j < n && rc == 0; j++) {
		rc = qc_qrun_write_linear(G->run, layer, lin[j], parts[j].codes, parts[j].scales,
		                          parts[j].zps, G->o.act_static ? &in_scale : NULL);
		if (rc == 0)
			rc = add_line(G, mods[j], lw->out[lin[j]], lw->in[lin[j]], &parts[j], &info,
			              G->o.act_static ? in_scale : NAN);
	}
	for (int j = 0; j < n; j++) {
		free(parts[j].codes);
		free(parts[j].scales);
		free(parts[j].zps);
	}
	return rc;
}

static void gm_end(void *ctx)
{
	qc_gptqm *G = ctx;
	qc_gptq_free(G->g);
	qk_free(G->kc, G->H);
	qk_free(G->kc, G->stage);
}

/* ------------------------------------------------------------ the method */

int qc_gptqm_method(qc_gptqm **state, qc_qmethod *m, const qc_gptqm_opts *o)
{
	qc_gptqm *G = calloc(1, sizeof *G);
	if (!G)
		return qc_seterr(QC_ENOMEM, "out of memory");
	G->o = *o;
	*state = G;
	*m = (qc_qmethod){
		.tool = "qgptq", .ctx = G, .scheme = gm_scheme, .begin = gm_begin,
		/* the update at DOWN replaces down_proj only */
		.same_inputs = QC_WALK_BIT(QC_WALK_DOWN),
		.memory = gm_memory, .observe = gm_observe, .update = gm_update, .end = gm_end,
		.own_format = o->ggml_type != 0,
	};
	return 0;
}

void qc_gptqm_free(qc_gptqm *G)
{
	free(G);
}
