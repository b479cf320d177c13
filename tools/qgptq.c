/* qgptq - GPTQ and round-to-nearest weight quantization (W4A16, W8A16,
 * W8A8-INT8) with per-Linear error reports (see man/qgptq.1). The solver is
 * libcommon's qc_gptq, the calibration forward pass qc_walk, the output
 * qc_qout; this file parses options, wires the walker's hooks to the solver
 * and the writer, and makes the run resumable. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kernels.h"
#include "qc_ckpt.h"
#include "qc_config.h"
#include "qc_err.h"
#include "qc_gptq.h"
#include "qc_hash.h"
#include "qc_io.h"
#include "qc_json.h"
#include "qc_log.h"
#include "qc_model.h"
#include "qc_num.h"
#include "qc_qout.h"
#include "qc_qscheme.h"
#include "qc_report.h"
#include "qc_st.h"
#include "qc_tokset.h"
#include "qc_walk.h"
#include "tool.h"

static const char usage[] =
	"qgptq [--scheme w4a16|w8a16|w8a8] [--group-size 32|64|128|-1] [--sym|--asym]\n"
	"             [--method gptq|rtn] [--actorder static|none] [--clip mse|mse-h|minmax]\n"
	"             [--damp F] [--ignore REGEX]... [--report FILE] [--threads N] [--resume]\n"
	"             [--mem SIZE] [-f] [-q|-v] --calib TOKENS -o OUT|- MODEL";

static void help(void)
{
	printf("usage: %s\n\n", usage);
	printf(
	"Quantize the Linear layers of a BF16/FP16/FP32 Llama-family checkpoint with GPTQ\n"
	"(or round to nearest), one decoder layer at a time, writing a compressed-tensors\n"
	"checkpoint (one int8 code per byte, naive-quantized layout) with its full\n"
	"quantization_config and a per-Linear error report. MODEL is a directory, a tar\n"
	"stream file, or '-' for standard input.\n\n"
	"Scheme:\n"
	"  --scheme S          w4a16: int4 weights, groups of 128 (4.1 bits per weight,\n"
	"                      BF16 scales); w8a16: int8 weights, one scale per output\n"
	"                      channel (8 bits); w8a8: int8 channel weights with int8\n"
	"                      activations quantized per token at run time (default w4a16)\n"
	"  --group-size G      32, 64, 128 or -1 (one group per output channel);\n"
	"                      default 128 for w4a16, -1 otherwise; w8a8 is per channel\n"
	"  --sym, --asym       symmetric codes (default) or with zero points (not w8a8)\n"
	"\n"
	"Method:\n"
	"  --method M          gptq (default) or rtn (round to nearest)\n"
	"  --calib TOKENS      calibration token set (qcalib); needed for gptq; with rtn\n"
	"                      it gives the output errors in the report\n"
	"  --actorder A        static (default): columns in order of decreasing Hessian\n"
	"                      diagonal, groups fixed up front (no g_idx); none: in order,\n"
	"                      groups from the updated weights\n"
	"  --clip C            mse (default): search of the clipping range per group;\n"
	"                      mse-h: the same with each input column's error weighted\n"
	"                      by its Hessian diagonal (its share of the output error);\n"
	"                      minmax: the group's minimum and maximum\n"
	"  --damp F            dampening, a fraction of the mean Hessian diagonal\n"
	"                      (default 0.01; doubled while the factorization fails)\n"
	"  --ignore REGEX      leave matching Linears unquantized: a module name, or\n"
	"                      're:' and a regular expression (repeatable; lm_head\n"
	"                      is never quantized)\n"
	"\n"
	"Output and operation:\n"
	"  -o, --output OUT|-  output directory, or '-' for a tar stream on stdout\n"
	"  -f, --force         replace an existing output directory\n"
	"  --report FILE       also write the per-Linear report (JSON Lines) to FILE\n"
	"  --resume            keep OUT.partial when a run fails, and reuse the layers a\n"
	"                      failed or killed run finished there\n"
	"  --mem SIZE          memory budget (e.g. 16GB): activations are held in BF16\n"
	"                      when FP32 ones would not fit, and what still does not fit\n"
	"                      is spilled to zstd-compressed scratch files in $TMPDIR\n"
	"  --threads N         threads (default: all CPUs)\n"
	"  -q, --quiet         no progress\n"
	"  -v, --verbose       one line per Linear\n"
	"  -h, --help          this help\n"
	"  -V, --version       version\n"
	"\n"
	"Exit status: 0 success, 2 usage or input error (including NaN or Inf weights,\n"
	"shapes that disagree with config.json, token ids outside the vocabulary).\n");
	exit(tool_close_stdout());
}

enum { OPT_SCHEME = 256, OPT_GROUP, OPT_SYM, OPT_ASYM, OPT_METHOD, OPT_ACTORDER, OPT_CLIP,
       OPT_DAMP, OPT_IGNORE, OPT_REPORT, OPT_THREADS, OPT_RESUME, OPT_MEM, OPT_CALIB };

static const struct option longopts[] = {
	{ "scheme", required_argument, NULL, OPT_SCHEME },
	{ "group-size", required_argument, NULL, OPT_GROUP },
	{ "sym", no_argument, NULL, OPT_SYM },
	{ "asym", no_argument, NULL, OPT_ASYM },
	{ "method", required_argument, NULL, OPT_METHOD },
	{ "actorder", required_argument, NULL, OPT_ACTORDER },
	{ "clip", required_argument, NULL, OPT_CLIP },
	{ "damp", required_argument, NULL, OPT_DAMP },
	{ "ignore", required_argument, NULL, OPT_IGNORE },
	{ "report", required_argument, NULL, OPT_REPORT },
	{ "threads", required_argument, NULL, OPT_THREADS },
	{ "resume", no_argument, NULL, OPT_RESUME },
	{ "mem", required_argument, NULL, OPT_MEM },
	{ "calib", required_argument, NULL, OPT_CALIB },
	{ "output", required_argument, NULL, 'o' },
	{ "force", no_argument, NULL, 'f' },
	{ "quiet", no_argument, NULL, 'q' },
	{ "verbose", no_argument, NULL, 'v' },
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, 'V' },
	{ NULL, 0, NULL, 0 },
};

#define RESUME_NAME "qgptq-resume.json"
#define STAGE_ROWS 1024 /* down_proj inputs gathered into blocks this tall */

/* ------------------------------------------------------------ state */

typedef struct qg {
	/* inputs */
	qc_ckpt *in;
	qc_config cfg;
	qc_tokset *ts;
	qk_ctx *kc;
	qc_model *m;
	qc_walk *w;
	const char *out_path;
	/* scheme and method */
	qc_qscheme scheme;
	const char *scheme_name;
	qc_gptq_opts go;
	qc_gptq *g;
	int calibrated;            /* a token set is used */
	int64_t T;
	/* output */
	qc_qout *out;
	qc_report *report;
	/* the layer being processed */
	int layer, L;
	unsigned quant;            /* bit l: Linear l of this layer is quantized */
	float *H;                  /* [n, n] Hessian of the current point */
	int64_t Hn;
	float *stage;              /* [STAGE_ROWS, intermediate] down_proj inputs */
	int64_t staged;
	json_t *layer_lines;       /* this layer's report lines, for the resume record */
	double t_layer;
	double ratio_sum;          /* sum of err_out / err_rtn, for the summary */
	int n_ratio;
	/* resume */
	int resumable;             /* directory output: keep a record in OUT.partial */
	json_t *rec;               /* the record being written */
	json_t *old;               /* the record found by --resume, or NULL */
	int n_done;                /* layers of the old record that can be reused */
	qc_st *old_shard;          /* replay: the shard of the layer being replayed */
	uint64_t in_hash;          /* XXH3-64 of the layer's FP32 inputs */
} qg;

static void module_name(char *out, size_t n, int layer, qc_linear l)
{
	qc_linear_name(out, n, layer, l, "");
	out[strlen(out) - 1] = 0; /* drop the trailing '.' */
}

/* Which Linears of a layer are quantized (not ignored). */
static int layer_mask(qg *G, int layer, unsigned *mask)
{
	*mask = 0;
	for (int l = 0; l < QC_LIN_COUNT; l++) {
		char mod[256];
		module_name(mod, sizeof mod, layer, (qc_linear)l);
		int ig = qc_qscheme_ignored(&G->scheme, mod);
		if (ig < 0)
			return ig;
		if (!ig)
			*mask |= 1u << l;
	}
	return 0;
}

/* The walk points whose Linears include a quantized one. */
static unsigned point_mask(unsigned quant)
{
	unsigned pm = 0;
	for (int p = 0; p < QC_WALK_POINTS; p++) {
		qc_linear first;
		int count;
		qc_walk_point_linears((qc_walk_point)p, &first, &count);
		for (int k = 0; k < count; k++)
			if (quant & (1u << (first + k)))
				pm |= QC_WALK_BIT(p);
	}
	return pm;
}

/* ------------------------------------------------------------ copying */

/* 1 when name is the weight of a Linear quantized in this layer. */
static int quantized_weight(const qg *G, int layer, const char *name)
{
	for (int l = 0; l < QC_LIN_COUNT; l++) {
		char w[256];
		qc_linear_name(w, sizeof w, layer, (qc_linear)l, "weight");
		if (strcmp(w, name) == 0)
			return (G->quant >> l) & 1;
	}
	return 0;
}

typedef struct skip_ctx {
	const qg *G;
	int layer;
} skip_ctx;

static int skip_quantized(void *ctx, const char *name)
{
	const skip_ctx *k = ctx;
	return k->layer >= 0 && quantized_weight(k->G, k->layer, name);
}

/* Copy every tensor of a group but the quantized weights. The tensors stay
 * available to the model (not released): it loads the layer afterwards. */
static int copy_group(qg *G, int group, int layer)
{
	skip_ctx k = { G, layer };
	return qc_qout_copy_group(G->out, group, skip_quantized, &k, 0);
}

/* ------------------------------------------------------------ the hooks */

static int flush_stage(qg *G)
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
static int on_input(void *ctx, int layer, qc_walk_point p, const float *x, int64_t row0,
                    int64_t rows, int64_t cols)
{
	qg *G = ctx;
	if (row0 == 0) {
		/* one Hessian at a time, freed after its update (zeroed pages
		 * from calloc cost nothing until the accumulation touches them) */
		free(G->H);
		if (!(G->H = calloc((size_t)(cols * cols), sizeof *G->H)))
			return qc_seterr(QC_ENOMEM, "cannot allocate the Hessian of layer %d (%lld x %lld)",
			                 layer, (long long)cols, (long long)cols);
		G->Hn = cols;
		G->staged = 0;
	}
	if (p != QC_WALK_DOWN)
		return qk_hessian_accum(G->kc, G->H, x, rows, cols, 2.0f / (float)G->T);
	while (rows > 0) {
		int64_t k = STAGE_ROWS - G->staged < rows ? STAGE_ROWS - G->staged : rows;
		memcpy(G->stage + G->staged * cols, x, (size_t)(k * cols) * sizeof *x);
		G->staged += k;
		x += k * cols;
		rows -= k;
		if (G->staged == STAGE_ROWS)
			QC_TRY(flush_stage(G));
	}
	return 0;
}

/* The --clip value in effect. */
static const char *clip_name(const qc_gptq_opts *o)
{
	return o->clip.mode == QC_CLIP_MINMAX ? "minmax" : o->clip_hweight ? "mse-h" : "mse";
}

/* A report line, to the report and to this layer's resume record. */
static int add_line(qg *G, const char *mod, int64_t rows, int64_t cols, double err_out,
                    double err_w, double err_rtn, double seconds, double damp, int64_t dead)
{
	qc_report_line line = {
		.tool = "qgptq", .layer = mod, .rows = rows, .cols = cols,
		.scheme = G->scheme_name,
		.group_size = G->scheme.weights.strategy == QC_QS_GROUP ? G->scheme.weights.group_size : -1,
		.symmetric = G->scheme.weights.symmetric, .n_tokens = G->calibrated ? G->T : 0,
		.err_out = err_out, .err_w = err_w, .err_rtn = err_rtn, .seconds = seconds,
	};
	json_t *x = json_pack("{s:s, s:s, s:s, s:s}", "method", qc_gptq_method_name(G->go.method),
	                      "actorder", qc_gptq_actorder_name(G->go.actorder),
	                      "clip", clip_name(&G->go),
	                      "arith", qc_dtype_name(G->scheme.weights.arith));
	if (!x)
		return qc_seterr(QC_ENOMEM, "out of memory");
	if (isfinite(damp)) {
		json_object_set_new(x, "damp", json_real(damp));
		json_object_set_new(x, "dead_inputs", json_integer(dead));
	}
	/* the resume record keeps what add_line needs to make the line again */
	json_t *r = json_pack("{s:s, s:I, s:I, s:o, s:o, s:o, s:f, s:o, s:I}", "module", mod,
	                      "rows", (json_int_t)rows, "cols", (json_int_t)cols,
	                      "err_out", isfinite(err_out) ? json_real(err_out) : json_null(),
	                      "err_w", isfinite(err_w) ? json_real(err_w) : json_null(),
	                      "err_rtn", isfinite(err_rtn) ? json_real(err_rtn) : json_null(),
	                      "seconds", seconds,
	                      "damp", isfinite(damp) ? json_real(damp) : json_null(),
	                      "dead", (json_int_t)dead);
	if (!r || json_array_append_new(G->layer_lines, r) != 0) {
		json_decref(x);
		return qc_seterr(QC_ENOMEM, "out of memory");
	}
	line.extra = x;
	if (isfinite(err_out) && isfinite(err_rtn) && err_rtn > 0) {
		G->ratio_sum += err_out / err_rtn;
		G->n_ratio++;
	}
	qc_log(QC_LOG_DETAIL, "%s: err_out %.4g err_rtn %.4g err_w %.4g%s%.3g (%.1f s)", mod, err_out,
	       err_rtn, err_w, isfinite(damp) ? " damp " : "", isfinite(damp) ? damp : 0.0, seconds);
	return qc_report_add(G->report, &line);
}

/* Quantize the Linears that read point p, sharing its Hessian; their
 * weights in lw become the dequantized ones (the walker recomputes from
 * there), and their codes go to the output (which copies them). */
static int on_update(void *ctx, int layer, qc_walk_point p, qc_layer *lw)
{
	qg *G = ctx;
	qc_linear first;
	int count;
	qc_walk_point_linears(p, &first, &count);
	if (G->old_shard) /* replay: the weights were replaced at layer_begin */
		return 0;
	if (G->calibrated && p == QC_WALK_DOWN)
		QC_TRY(flush_stage(G));
	const qc_qargs *a = &G->scheme.weights;
	qc_gptq_part parts[3];
	qc_linear lin[3];
	char mods[3][256];
	int n = 0, rc = 0;
	memset(parts, 0, sizeof parts);
	for (int k = 0; k < count && rc == 0; k++) {
		qc_linear l = (qc_linear)(first + k);
		if (!((G->quant >> l) & 1))
			continue;
		int64_t rows = lw->out[l], cols = lw->in[l];
		int64_t ns = a->strategy == QC_QS_GROUP ? rows * qc_qgroups(a, cols) : rows;
		module_name(mods[n], sizeof mods[n], layer, l);
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
	if (rc == 0 && n > 0)
		rc = qc_gptq_run(G->g, a, G->calibrated ? G->H : NULL, lw->in[first], parts, n, &info);
	free(G->H); /* consumed */
	G->H = NULL;
	if (rc == 0 && n > 0)
		qc_log(QC_LOG_DEBUG, "layer %d %s: hessian prepared and factored in %.2f s, parameters "
		       "%.2f s, errors of W and RTN %.2f s, sweep %.2f s", layer, qc_walk_point_name(p),
		       info.t_factor, info.t_params, info.t_errors, info.t_sweep);
	for (int j = 0; j < n && rc == 0; j++) {
		qc_linear l = lin[j];
		rc = qc_qout_linear(G->out, mods[j], lw->out[l], lw->in[l], parts[j].codes,
		                    parts[j].scales, parts[j].zps, NULL);
		if (rc == 0)
			rc = add_line(G, mods[j], lw->out[l], lw->in[l], parts[j].err_out, parts[j].err_w,
			              parts[j].err_rtn, parts[j].seconds,
			              G->calibrated && G->go.method == QC_GPTQ_METHOD_GPTQ ? info.damp : NAN,
			              info.dead);
	}
	for (int j = 0; j < n; j++) {
		free(parts[j].codes);
		free(parts[j].scales);
		free(parts[j].zps);
	}
	return rc;
}

/* XXH3-64 of a layer's FP32 inputs as loaded (weights, norms, biases): what
 * a resumed run checks the reused layers against. */
static uint64_t layer_hash(const qc_layer *lw, int64_t hidden)
{
	qc_hasher64 *h = qc_hasher64_new();
	if (!h)
		return 0;
	for (int l = 0; l < QC_LIN_COUNT; l++) {
		qc_hasher64_update(h, lw->w[l], (size_t)(lw->out[l] * lw->in[l]) * sizeof(float));
		if (lw->b[l])
			qc_hasher64_update(h, lw->b[l], (size_t)lw->out[l] * sizeof(float));
	}
	qc_hasher64_update(h, lw->attn_norm, (size_t)hidden * sizeof(float));
	qc_hasher64_update(h, lw->mlp_norm, (size_t)hidden * sizeof(float));
	uint64_t d = qc_hasher64_digest(h);
	qc_hasher64_free(h);
	return d;
}

static int replay_begin(qg *G, int layer, qc_layer *lw);

static int layer_begin(void *ctx, int layer, qc_layer *lw)
{
	qg *G = ctx;
	G->in_hash = layer_hash(lw, G->cfg.hidden_size);
	if (G->old_shard)
		return replay_begin(G, layer, lw);
	return 0;
}

/* ------------------------------------------------------------ resume */

/* Everything a resumed run must share with the run that wrote the record. */
static json_t *identity(const qg *G, const char *options)
{
	const void *cj;
	size_t cl;
	char hc[33], ht[33];
	qc_ckpt_file(G->in, "config.json", &cj, &cl);
	qc_h128_hex(qc_xxh3_128(cj, cl), hc);
	if (G->ts)
		qc_h128_hex(qc_tokset_hash(G->ts), ht);
	return json_pack("{s:s, s:s, s:s, s:s, s:i}", "version", QC_VERSION, "options", options,
	                 "config_xxh3_128", hc, "tokens_xxh3_128", G->ts ? ht : "",
	                 "threads", qk_ctx_threads(G->kc));
}

static char *partial_file(const qg *G, const char *name)
{
	size_t n = strlen(G->out_path) + strlen(name) + sizeof ".partial/";
	char *p = malloc(n);
	if (p)
		snprintf(p, n, "%s.partial/%s", G->out_path, name);
	return p;
}

static int save_record(qg *G)
{
	char *path = partial_file(G, RESUME_NAME);
	char *t = json_dumps(G->rec, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
	int rc = path && t ? qc_write_file_atomic(path, t, strlen(t))
	                   : qc_seterr(QC_ENOMEM, "out of memory");
	free(t);
	free(path);
	return rc;
}

/* After a layer's shard is written: its hash, inputs and report lines. */
static int record_layer(qg *G, int layer)
{
	char sname[64], hx[33], ih[17];
	qc_ckpt_shard_name(sname, layer + 1, G->L);
	char *path = partial_file(G, sname);
	if (!path)
		return qc_seterr(QC_ENOMEM, "out of memory");
	qc_h128 h;
	int rc = qc_hash_file(path, &h, NULL);
	free(path);
	if (rc)
		return rc;
	json_t *e = json_pack("{s:i, s:s, s:s, s:s, s:O}", "layer", layer, "shard", sname,
	                      "xxh3_128", qc_h128_hex(h, hx), "inputs_xxh3_64",
	                      qc_h64_hex(G->in_hash, ih), "report", G->layer_lines);
	if (!e || json_array_append_new(json_object_get(G->rec, "layers"), e) != 0)
		return qc_seterr(QC_ENOMEM, "out of memory");
	return save_record(G);
}

/* --resume: the record in OUT.partial, if any, must come from the same
 * options and inputs; the layers it lists whose shards are still there,
 * unchanged, in order, are reused. */
static int load_record(qg *G, const json_t *want)
{
	char *path = partial_file(G, RESUME_NAME);
	if (!path)
		return qc_seterr(QC_ENOMEM, "out of memory");
	char *text;
	size_t len;
	int rc = qc_read_file(path, 1 << 26, &text, &len);
	if (rc) { /* nothing to resume from */
		free(path);
		return 0;
	}
	json_error_t je;
	json_t *old = json_loadb(text, len, 0, &je);
	free(text);
	if (!old || !json_is_object(old) || !json_is_array(json_object_get(old, "layers"))) {
		json_decref(old);
		rc = qc_seterr(QC_EFORMAT, "cannot resume: '%s' is malformed (remove it to start over)", path);
		free(path);
		return rc;
	}
	const json_t *id = json_object_get(old, "identity");
	const char *k;
	json_t *v;
	json_object_foreach((json_t *)want, k, v) {
		if (!json_equal(v, json_object_get(id, k))) {
			json_decref(old);
			rc = qc_seterr(QC_EINVAL, "cannot resume from '%s.partial': it was made with another %s "
			               "(run without --resume, or remove it)", G->out_path,
			               strcmp(k, "options") == 0 ? "set of options"
			               : strcmp(k, "config_xxh3_128") == 0 ? "config.json"
			               : strcmp(k, "tokens_xxh3_128") == 0 ? "token set"
			               : strcmp(k, "threads") == 0 ? "thread count" : "version");
			free(path);
			return rc;
		}
	}
	free(path);
	json_t *layers = json_object_get(old, "layers");
	size_t i;
	json_array_foreach(layers, i, v) {
		const char *shard = json_string_value(json_object_get(v, "shard"));
		const char *hx = json_string_value(json_object_get(v, "xxh3_128"));
		char want_name[64];
		qc_ckpt_shard_name(want_name, (int)i + 1, G->L);
		qc_h128 rh, fh;
		if (json_integer_value(json_object_get(v, "layer")) != (json_int_t)i || !shard || !hx ||
		    strcmp(shard, want_name) != 0 || qc_h128_parse(hx, &rh) != 0)
			break;
		char *sp = partial_file(G, shard);
		if (!sp)
			return qc_seterr(QC_ENOMEM, "out of memory");
		int hr = qc_hash_file(sp, &fh, NULL);
		free(sp);
		if (hr || !qc_h128_eq(rh, fh))
			break;
		G->n_done = (int)i + 1;
	}
	G->old = old;
	if (G->n_done > 0)
		qc_log(QC_LOG_INFO, "resuming '%s': layers 0 to %d are done", G->out_path, G->n_done - 1);
	return 0;
}

/* Replay of a finished layer: its quantized tensors come from the old shard
 * (to the output unchanged, and dequantized into lw so that the walker
 * computes the same activations as the run that made them). */
static int replay_begin(qg *G, int layer, qc_layer *lw)
{
	json_t *e = json_array_get(json_object_get(G->old, "layers"), (size_t)layer);
	uint64_t want;
	if (qc_h64_parse(json_string_value(json_object_get(e, "inputs_xxh3_64")), &want) != 0 ||
	    want != G->in_hash)
		return qc_seterr(QC_EINVAL, "cannot resume: layer %d of '%s' differs from the one the "
		                 "run that wrote '%s.partial' read", layer, qc_ckpt_name(G->in), G->out_path);
	const qc_qargs *a = &G->scheme.weights;
	for (int l = 0; l < QC_LIN_COUNT; l++) {
		if (!((G->quant >> l) & 1))
			continue;
		char mod[256], name[300];
		module_name(mod, sizeof mod, layer, (qc_linear)l);
		const qc_tensor *t[3];
		static const char *const suf[3] = { "weight", "weight_scale", "weight_zero_point" };
		int nt = a->symmetric ? 2 : 3;
		for (int s = 0; s < nt; s++) {
			snprintf(name, sizeof name, "%s.%s", mod, suf[s]);
			if (!(t[s] = qc_st_find(G->old_shard, name)))
				return qc_seterr(QC_EFORMAT, "cannot resume: '%s' lacks '%s'",
				                 qc_st_name(G->old_shard), name);
			QC_TRY(qc_qout_copy(G->out, t[s]));
		}
		int64_t rows = lw->out[l], cols = lw->in[l], ng = qc_qgroups(a, cols);
		int64_t ns = a->strategy == QC_QS_GROUP ? rows * ng : rows;
		if (t[0]->dtype != QC_DT_I8 || qc_numel(t[0]->ndim, t[0]->shape) != rows * cols ||
		    qc_numel(t[1]->ndim, t[1]->shape) != ns || (nt == 3 && t[2]->dtype != QC_DT_I8))
			return qc_seterr(QC_EFORMAT, "cannot resume: '%s' in '%s' does not match the scheme",
			                 mod, qc_st_name(G->old_shard));
		float *sc = malloc((size_t)ns * sizeof *sc);
		if (!sc)
			return qc_seterr(QC_ENOMEM, "out of memory");
		int rc = qc_to_f32(sc, t[1]->data, t[1]->dtype, (size_t)ns);
		const int8_t *q = t[0]->data;
		const int8_t *z = nt == 3 ? t[2]->data : NULL;
		float *w = lw->w[l];
		for (int64_t r = 0; rc == 0 && r < rows; r++)
			for (int64_t c = 0; c < cols; c++) {
				int64_t k = a->strategy == QC_QS_GROUP ? r * ng + c / a->group_size : r;
				w[r * cols + c] = qc_dequantize_value((float)q[r * cols + c], sc[k],
				                                      z ? (float)z[k] : 0.0f);
			}
		free(sc);
		if (rc)
			return rc;
	}
	json_t *lines = json_object_get(e, "report");
	size_t i;
	json_t *v;
	json_array_foreach(lines, i, v) {
#define NUM(key) (json_is_number(json_object_get(v, key)) ? json_number_value(json_object_get(v, key)) : NAN)
		QC_TRY(add_line(G, json_string_value(json_object_get(v, "module")),
		                json_integer_value(json_object_get(v, "rows")),
		                json_integer_value(json_object_get(v, "cols")), NUM("err_out"), NUM("err_w"),
		                NUM("err_rtn"), NUM("seconds"), NUM("damp"),
		                json_integer_value(json_object_get(v, "dead"))));
#undef NUM
	}
	return 0;
}

/* ------------------------------------------------------------ memory */

typedef struct mem_need {
	double weights, acts, hessian, solver, total;
} mem_need;

/* What one layer's run holds at its peak, by part (bytes), with activations
 * stored es bytes per value. */
static mem_need estimate(const qg *G, int64_t T, int es)
{
	const qc_config *c = &G->cfg;
	int64_t h = c->hidden_size, in = c->intermediate_size;
	int64_t qd = c->num_attention_heads * c->head_dim, kvd = c->num_key_value_heads * c->head_dim;
	qc_model_opts mo;
	qc_model_opts_default(&mo);
	int64_t ct = T < 2048 ? T : 2048;
	mem_need m;
	double params = (double)h * (qd + 2 * kvd) + (double)qd * h + 3.0 * h * in;
	m.weights = params * 4 + params * 1.1;     /* FP32 layer, and codes held until its shard */
	m.acts = (double)T * (h + qd) * es + (double)ct * (3 * h + 3 * qd) * 4 +
	         (double)mo.mlp_rows * 2 * in * 4 + (double)STAGE_ROWS * in * 4;
	double nmax = (double)(in > h ? in : h);
	if (qd > nmax)
		nmax = (double)qd;
	m.hessian = G->calibrated ? nmax * nmax * 4 : 0;
	double rmax = 2.0 * in * h;                /* gate/up stacked, the largest */
	if ((qd + 2.0 * kvd) * h > rmax)
		rmax = (qd + 2.0 * kvd) * h;
	m.solver = rmax * 4 * (G->calibrated && G->go.method == QC_GPTQ_METHOD_GPTQ ? 1 : 0) +
	           rmax * 1.0;
	m.total = m.weights + m.acts + m.hessian + m.solver;
	return m;
}

/* Without calibration tokens there is nothing to walk: each layer is
 * loaded (converted to FP32 and checked) and its Linears are rounded in
 * the walker's order. */
static int uncalibrated_layer(qg *G, int layer, unsigned pts)
{
	qc_layer lw;
	QC_TRY(qc_model_load_layer(G->m, layer, &lw));
	int rc = layer_begin(G, layer, &lw);
	for (int p = 0; rc == 0 && p < QC_WALK_POINTS; p++)
		if (pts & QC_WALK_BIT(p))
			rc = on_update(G, layer, (qc_walk_point)p, &lw);
	qc_layer_release(G->m, &lw);
	return rc;
}

/* ------------------------------------------------------------ main */

static int check_tokens(const qg *G)
{
	const int32_t *ids = qc_tokset_ids(G->ts), *lens = qc_tokset_lengths(G->ts);
	int64_t n = qc_tokset_rows(G->ts), L = qc_tokset_len(G->ts);
	for (int64_t r = 0; r < n; r++)
		for (int64_t i = 0; i < lens[r]; i++)
			if (ids[r * L + i] < 0 || ids[r * L + i] >= G->cfg.vocab_size)
				return qc_seterr(QC_EFORMAT, "token set '%s' has id %d (row %lld), outside the "
				                 "vocabulary of '%s' (%lld)", qc_tokset_name(G->ts), ids[r * L + i],
				                 (long long)r, qc_ckpt_name(G->in), (long long)G->cfg.vocab_size);
	if (qc_tokset_n_tokens(G->ts) == 0)
		return qc_seterr(QC_EFORMAT, "token set '%s' has no tokens", qc_tokset_name(G->ts));
	return 0;
}

typedef struct args {
	const char *out, *calib, *report, *scheme, *method, *actorder, *clip;
	int64_t group;               /* 0: the scheme's default */
	int sym;                     /* -1: default */
	double damp;
	const char *ignores[64];
	int n_ign;
	int threads, resume, force;
	uint64_t mem;
} args;

static int run(qg *G, const args *A, const char *model, int argc)
{
	int rc;
	/* the model */
	qc_ckpt_opts co = { 0 };
	co.hash_tensors = 1;
	QC_TRY(qc_ckpt_open(&G->in, model, &co));
	const void *cj;
	size_t cl;
	QC_TRY(qc_ckpt_file(G->in, "config.json", &cj, &cl));
	QC_TRY(qc_config_parse(&G->cfg, cj, cl, "config.json"));
	if (json_object_get(G->cfg.raw, "quantization_config"))
		return qc_seterr(QC_EFORMAT, "'%s' is already quantized (config.json has "
		                 "quantization_config)", model);
	G->L = (int)G->cfg.num_hidden_layers;
	/* the scheme */
	const char *preset = A->scheme;
	QC_TRY(qc_qscheme_preset(&G->scheme, preset));
	G->scheme_name = A->scheme;
	qc_qargs *a = &G->scheme.weights;
	if (A->group) {
		if (A->group < 0) {
			a->strategy = QC_QS_CHANNEL;
			a->group_size = 0;
		} else {
			a->strategy = QC_QS_GROUP;
			a->group_size = A->group;
		}
	}
	if (A->sym >= 0)
		a->symmetric = A->sym;
	if (strcmp(A->scheme, "w8a8") == 0)
		snprintf(G->scheme.format, sizeof G->scheme.format, "int-quantized");
	a->scale_dtype = G->cfg.torch_dtype == QC_DT_F32 || G->cfg.torch_dtype == QC_DT_F16
	                 ? G->cfg.torch_dtype : QC_DT_BF16;
	/* GPTQ quantizes an FP32 working copy; round to nearest works on the
	 * weights in their own dtype, as compressed-tensors does */
	a->arith = G->go.method == QC_GPTQ_METHOD_RTN ? a->scale_dtype : QC_DT_F32;
	snprintf(G->scheme.observer, sizeof G->scheme.observer, "%s",
	         G->go.clip.mode == QC_CLIP_MSE ? "mse" : "minmax");
	for (int i = 0; i < A->n_ign; i++)
		QC_TRY(qc_qscheme_add_ignore(&G->scheme, A->ignores[i]));
	if ((rc = qc_qscheme_ignored(&G->scheme, "probe")) < 0)
		return rc;
	/* the token set */
	if (A->calib) {
		QC_TRY(qc_tokset_open(&G->ts, A->calib));
		QC_TRY(check_tokens(G));
		G->calibrated = 1;
		G->T = qc_tokset_n_tokens(G->ts);
	}
	/* memory: activations in BF16 when FP32 ones would not fit, and the
	 * part of them beyond the budget spilled to zstd scratch files */
	qc_dtype act = QC_DT_F32;
	uint64_t act_budget = 0;
	if (A->mem) {
		int64_t T = G->calibrated ? G->T : 1;
		mem_need f = estimate(G, T, 4), b = estimate(G, T, 2);
		qc_log(QC_LOG_DETAIL, "memory of one layer's run: weights %.4g MB, activations %.4g MB "
		       "(FP32; %.4g MB in BF16), Hessian %.4g MB, solver %.4g MB; budget %.4g MB",
		       f.weights / 1e6, f.acts / 1e6, b.acts / 1e6, f.hessian / 1e6, f.solver / 1e6,
		       A->mem / 1e6);
		if (f.total > (double)A->mem) {
			act = QC_DT_BF16;
			/* what the stores of [T, hidden + q_dim] may hold; the chunk
			 * scratch inside b.acts stays */
			double stores = (double)T * (double)(G->cfg.hidden_size + G->cfg.num_attention_heads *
			                                                             G->cfg.head_dim) * 2;
			double fixed = b.total - stores;
			if (fixed > (double)A->mem)
				return qc_seterr(QC_EINVAL, "--mem %.3g GB is too small: a layer needs about %.3g GB "
				                 "besides its activations (weights %.3g, Hessian %.3g, solver %.3g GB)",
				                 A->mem / 1e9, fixed / 1e9, b.weights / 1e9, b.hessian / 1e9,
				                 b.solver / 1e9);
			if (b.total > (double)A->mem) {
				act_budget = (uint64_t)((double)A->mem - fixed);
				if (act_budget == 0)
					act_budget = 1;
				qc_log(QC_LOG_INFO, "activations in BF16, %.3g of %.3g GB of them in memory and "
				       "the rest spilled to zstd scratch files, to stay within --mem %.3g GB",
				       act_budget / 1e9, stores / 1e9, A->mem / 1e9);
			} else {
				qc_log(QC_LOG_INFO, "activations held in BF16 to stay within --mem (%.3g GB of %.3g)",
				       b.total / 1e9, A->mem / 1e9);
			}
		}
	}
	/* kernels, solver, model */
	QC_TRY(qk_ctx_new(&G->kc, QK_DEVICE_CPU, A->threads));
	QC_TRY(qc_gptq_new(&G->g, G->kc, &G->go));
	QC_TRY(qc_model_open(&G->m, G->in, G->kc, NULL));
	if (G->calibrated && !(G->stage = malloc((size_t)(STAGE_ROWS * G->cfg.intermediate_size) *
	                                         sizeof *G->stage)))
		return qc_seterr(QC_ENOMEM, "out of memory");
	/* the output, resumable when it is a directory */
	G->out_path = A->out;
	G->resumable = strcmp(A->out, "-") != 0;
	char opts[1024];
	snprintf(opts, sizeof opts, "scheme=%s group=%lld sym=%d method=%s actorder=%s clip=%s damp=%.17g",
	         A->scheme, (long long)(a->strategy == QC_QS_GROUP ? a->group_size : -1), a->symmetric,
	         qc_gptq_method_name(G->go.method), qc_gptq_actorder_name(G->go.actorder),
	         clip_name(&G->go), G->go.damp);
	for (size_t i = 0; i < G->scheme.n_ignore; i++) {
		size_t u = strlen(opts);
		snprintf(opts + u, sizeof opts - u, " ignore=%s", G->scheme.ignore[i]);
	}
	json_t *id = identity(G, opts);
	if (!id)
		return qc_seterr(QC_ENOMEM, "out of memory");
	if (A->resume && (rc = load_record(G, id)) != 0) {
		json_decref(id);
		return rc;
	}
	G->rec = json_pack("{s:i, s:o, s:[]}", "qgptq_resume", 1, "identity", id, "layers");
	if (!G->rec)
		return qc_seterr(QC_ENOMEM, "out of memory");
	qc_qout_opts oo = { A->out, A->force, A->resume, "qgptq", argc, tool_manifest_argv() };
	QC_TRY(qc_qout_open(&G->out, G->in, &G->cfg, &G->scheme, &oo));
	if (G->ts)
		QC_TRY(qc_qout_token_set(G->out, "calibration", qc_tokset_hash(G->ts)));
	QC_TRY(copy_group(G, QC_GROUP_PRE, -1));
	/* the walk: embed once, then layer by layer */
	if (G->calibrated) {
		qc_walk_opts wo = { .act_dtype = act, .mem_budget = act_budget };
		QC_TRY(qc_walk_new(&G->w, G->m, qc_tokset_ids(G->ts), qc_tokset_len(G->ts),
		                   qc_tokset_lengths(G->ts), qc_tokset_rows(G->ts), &wo));
	}
	qc_progress prog;
	qc_progress_begin(&prog, "layer", G->L);
	for (int layer = 0; layer < G->L; layer++) {
		G->layer = layer;
		G->t_layer = qc_now();
		if ((rc = layer_mask(G, layer, &G->quant)) != 0)
			break;
		json_decref(G->layer_lines);
		if (!(G->layer_lines = json_array()))
			return qc_seterr(QC_ENOMEM, "out of memory");
		/* a finished layer of an earlier run: replayed from its shard */
		if (layer < G->n_done) {
			char sname[64];
			qc_ckpt_shard_name(sname, layer + 1, G->L);
			char *sp = partial_file(G, sname);
			if (!sp)
				return qc_seterr(QC_ENOMEM, "out of memory");
			rc = qc_st_open(&G->old_shard, sp);
			free(sp);
			if (rc)
				break;
		}
		unsigned pts = point_mask(G->quant);
		qc_walk_hooks hk = {
			.ctx = G, .observe = G->calibrated && !G->old_shard ? pts : 0, .update = pts,
			.layer_begin = layer_begin, .on_input = on_input, .on_update = on_update,
		};
		if ((rc = copy_group(G, layer, layer)) == 0)
			rc = G->w ? qc_walk_layer(G->w, &hk) : uncalibrated_layer(G, layer, pts);
		qc_st_close(G->old_shard); /* before the writer replaces that file */
		G->old_shard = NULL;
		if (rc == 0 && layer == G->L - 1)
			rc = copy_group(G, QC_GROUP_POST, -1);
		if (rc == 0)
			rc = qc_qout_end_layer(G->out, layer);
		if (rc == 0 && G->resumable)
			rc = record_layer(G, layer);
		if (rc == 0 && layer < G->n_done) {
			/* a replayed layer must come out as it was */
			json_t *now = json_array_get(json_object_get(G->rec, "layers"), (size_t)layer);
			json_t *was = json_array_get(json_object_get(G->old, "layers"), (size_t)layer);
			if (!json_equal(json_object_get(now, "xxh3_128"), json_object_get(was, "xxh3_128")))
				rc = qc_seterr(QC_EINTEGRITY, "resumed layer %d of '%s' differs from the shard "
				               "the earlier run wrote", layer, G->out_path);
		}
		if (rc)
			break;
		char note[64];
		if (G->n_ratio)
			snprintf(note, sizeof note, "mean err_out/err_rtn %.3f", G->ratio_sum / G->n_ratio);
		else
			snprintf(note, sizeof note, "layer %d", layer);
		qc_progress_update(&prog, layer + 1, note);
	}
	qc_progress_end(&prog);
	if (rc)
		return rc;
	if (A->report)
		QC_TRY(qc_report_save(G->report, A->report));
	if (G->resumable) { /* the record is not part of the artifact */
		char *rp = partial_file(G, RESUME_NAME);
		if (rp && unlink(rp) != 0 && errno != ENOENT)
			rc = qc_seterr(QC_EIO, "cannot remove '%s':", rp);
		free(rp);
		if (rc)
			return rc;
	}
	rc = qc_qout_close(G->out, G->report);
	G->out = NULL;
	if (rc == 0 && G->n_ratio)
		qc_log(QC_LOG_DETAIL, "%d Linears, mean err_out/err_rtn %.4f", G->n_ratio,
		       G->ratio_sum / G->n_ratio);
	return rc;
}

int main(int argc, char **argv)
{
	tool_init(argc, argv);
	args A = { .scheme = "w4a16", .method = "gptq", .actorder = "static", .clip = "mse",
	           .sym = -1, .damp = 0.01 };
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	A.threads = ncpu > 0 ? (int)ncpu : 1;
	int c;
	while ((c = getopt_long(argc, argv, "o:fqvhV", longopts, NULL)) != -1) {
		switch (c) {
		case OPT_SCHEME: A.scheme = optarg; break;
		case OPT_GROUP:
			A.group = tool_parse_i64(usage, "--group-size", optarg, -1, 1 << 20);
			if (A.group != -1 && A.group != 32 && A.group != 64 && A.group != 128)
				tool_usage_error(usage, "--group-size is 32, 64, 128 or -1, not %s", optarg);
			break;
		case OPT_SYM: A.sym = 1; break;
		case OPT_ASYM: A.sym = 0; break;
		case OPT_METHOD: A.method = optarg; break;
		case OPT_ACTORDER: A.actorder = optarg; break;
		case OPT_CLIP: A.clip = optarg; break;
		case OPT_DAMP: A.damp = tool_parse_double(usage, "--damp", optarg, 1e-6, 1.0); break;
		case OPT_IGNORE:
			if (A.n_ign == 64)
				tool_usage_error(usage, "too many --ignore patterns (64 at most)");
			A.ignores[A.n_ign++] = optarg;
			break;
		case OPT_REPORT: A.report = optarg; break;
		case OPT_THREADS: A.threads = (int)tool_parse_i64(usage, "--threads", optarg, 1, 1024); break;
		case OPT_RESUME: A.resume = 1; break;
		case OPT_MEM: A.mem = tool_parse_size(usage, "--mem", optarg); break;
		case OPT_CALIB: A.calib = optarg; break;
		case 'o': A.out = optarg; break;
		case 'f': A.force = 1; break;
		case 'q': qc_log_set_level(QC_LOG_QUIET); break;
		case 'v': qc_log_set_level(qc_log_level() + 1); break;
		case 'h': help(); break;
		case 'V': tool_version(); break;
		default: tool_bad_option(usage, argv);
		}
	}
	if (optind + 1 != argc)
		tool_usage_error(usage, optind < argc ? "too many arguments" : "no input model given");
	if (!A.out)
		tool_usage_error(usage, "no output given (-o DIR, or -o - for a stream)");
	if (strcmp(A.scheme, "w4a16") != 0 && strcmp(A.scheme, "w8a16") != 0 &&
	    strcmp(A.scheme, "w8a8") != 0)
		tool_usage_error(usage, "--scheme is w4a16, w8a16 or w8a8, not '%s'", A.scheme);
	if (strcmp(A.scheme, "w8a8") == 0 && A.group > 0)
		tool_usage_error(usage, "w8a8 weights have one scale per output channel (no --group-size)");
	if (strcmp(A.scheme, "w8a8") == 0 && A.sym == 0)
		tool_usage_error(usage, "w8a8 weights are symmetric (vLLM runs no zero points there)");
	qg G;
	memset(&G, 0, sizeof G);
	qc_gptq_opts_default(&G.go);
	if (qc_gptq_method_parse(A.method, &G.go.method) != 0)
		tool_usage_error(usage, "--method is gptq or rtn, not '%s'", A.method);
	if (qc_gptq_actorder_parse(A.actorder, &G.go.actorder) != 0)
		tool_usage_error(usage, "--actorder is static or none, not '%s'", A.actorder);
	if (strcmp(A.clip, "mse") == 0 || strcmp(A.clip, "mse-h") == 0) {
		qc_clip_opts_default(&G.go.clip, QC_CLIP_MSE);
		G.go.clip_hweight = strcmp(A.clip, "mse-h") == 0;
	} else if (strcmp(A.clip, "minmax") == 0) {
		qc_clip_opts_default(&G.go.clip, QC_CLIP_MINMAX);
	} else {
		tool_usage_error(usage, "--clip is mse, mse-h or minmax, not '%s'", A.clip);
	}
	if (G.go.clip_hweight && !A.calib)
		tool_usage_error(usage, "--clip mse-h weights by the Hessian: it needs --calib TOKENS");
	G.go.damp = A.damp;
	if (G.go.method == QC_GPTQ_METHOD_GPTQ && !A.calib)
		tool_usage_error(usage, "gptq needs a calibration token set (--calib TOKENS)");
	if (A.resume && strcmp(A.out, "-") == 0)
		tool_usage_error(usage, "--resume needs an output directory, not a stream");
	if (!(G.report = qc_report_new())) {
		tool_err("out of memory");
		return 2;
	}
	int rc = run(&G, &A, argv[optind], argc);
	if (rc)
		qc_qout_abort(G.out);
	qc_walk_free(G.w);
	qc_model_free(G.m);
	qc_gptq_free(G.g);
	qk_ctx_free(G.kc);
	qc_tokset_close(G.ts);
	free(G.H);
	free(G.stage);
	json_decref(G.layer_lines);
	json_decref(G.rec);
	json_decref(G.old);
	qc_report_free(G.report);
	qc_qscheme_free(&G.scheme);
	qc_config_free(&G.cfg);
	qc_ckpt_close(G.in);
	if (rc)
		return tool_fail(rc);
	return strcmp(A.out, "-") == 0 ? tool_close_stdout() : 0;
}
