/* qfp8 - FP8 E4M3 weights (and activations) for W8A8-FP8 (see man/qfp8.1). */
#include <getopt.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qc_ckpt.h"
#include "qc_config.h"
#include "qc_num.h"
#include "qc_qout.h"
#include "qc_qscheme.h"
#include "qc_quant.h"
#include "qc_report.h"
#include "tool.h"

static const char usage[] =
	"qfp8 [--per-tensor] [--shared-scale] [--act dynamic|static] [--calib TOKENS]\n"
	"            [--kv-cache] [--ignore REGEX]... [--report FILE] [--threads N] [-f] [-q|-v]\n"
	"            -o OUT|- MODEL";

static void help(void)
{
	printf("usage: %s\n\n", usage);
	printf(
	"Quantize the Linear layers of a BF16/FP16/FP32 checkpoint to FP8 E4M3 (W8A8-FP8),\n"
	"writing a compressed-tensors checkpoint (float-quantized layout) and a per-layer\n"
	"error report. MODEL is a directory, a tar stream file, or '-' for stdin.\n\n"
	"  --per-tensor        one weight scale per Linear (default: one per output channel)\n"
	"  --shared-scale      one per-tensor scale for q/k/v and one for gate/up of each\n"
	"                      layer, so vLLM need not requantize its fused weights\n"
	"                      (implies --per-tensor)\n"
	"  --act MODE          dynamic: per-token activation scales at run time (default);\n"
	"                      static: one input_scale per Linear from --calib\n"
	"  --calib TOKENS      token set (qcalib) for static scales and measured errors\n"
	"  --kv-cache          also write FP8 KV-cache scales (k_scale, v_scale; needs --calib)\n"
	"  --ignore REGEX      leave matching Linears unquantized (repeatable; lm_head always)\n"
	"  --report FILE       also write the per-Linear report (JSON Lines) to FILE\n"
	"  --threads N         threads (default: all CPUs)\n"
	"  -o, --output OUT|-  output directory, or '-' for a tar stream on stdout\n"
	"  -f, --force         replace an existing output directory\n"
	"  -q, --quiet         no progress\n"
	"  -v, --verbose       more detail\n"
	"  -h, --help          this help\n"
	"  -V, --version       version\n");
	exit(tool_close_stdout());
}

enum { OPT_PER_TENSOR = 256, OPT_SHARED, OPT_ACT, OPT_CALIB, OPT_KV, OPT_IGNORE, OPT_REPORT,
       OPT_THREADS };

static const struct option longopts[] = {
	{ "per-tensor", no_argument, NULL, OPT_PER_TENSOR },
	{ "shared-scale", no_argument, NULL, OPT_SHARED },
	{ "act", required_argument, NULL, OPT_ACT },
	{ "calib", required_argument, NULL, OPT_CALIB },
	{ "kv-cache", no_argument, NULL, OPT_KV },
	{ "ignore", required_argument, NULL, OPT_IGNORE },
	{ "report", required_argument, NULL, OPT_REPORT },
	{ "threads", required_argument, NULL, OPT_THREADS },
	{ "output", required_argument, NULL, 'o' },
	{ "force", no_argument, NULL, 'f' },
	{ "quiet", no_argument, NULL, 'q' },
	{ "verbose", no_argument, NULL, 'v' },
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, 'V' },
	{ NULL, 0, NULL, 0 },
};

/* ------------------------------------------------------------ quantizing */

typedef struct qjob {
	const qc_qargs *a;
	const float *W;
	int64_t r0, r1, cols;
	const float *scales;
	void *codes;
	double err, norm;        /* sum (W - Q)^2 and sum W^2 over the rows */
} qjob;

static void *qjob_run(void *arg)
{
	qjob *j = arg;
	int64_t cols = j->cols;
	float *deq = malloc((size_t)cols * sizeof *deq);
	if (!deq) {
		j->err = NAN;
		return NULL;
	}
	for (int64_t r = j->r0; r < j->r1; r++) {
		const float *w = j->W + r * cols;
		const float *s = j->a->strategy == QC_QS_TENSOR ? j->scales : j->scales + r;
		qc_quant_apply(j->a, w, 1, cols, s, NULL, (uint8_t *)j->codes + r * cols, deq);
		for (int64_t c = 0; c < cols; c++) {
			double d = (double)w[c] - deq[c];
			j->err += d * d;
			j->norm += (double)w[c] * w[c];
		}
	}
	free(deq);
	return NULL;
}

/* Quantize W [rows, cols] with given scales on nthreads threads; returns the
 * relative weight error. */
static double quantize_rows(const qc_qargs *a, const float *W, int64_t rows, int64_t cols,
                            const float *scales, void *codes, int nthreads)
{
	qjob jobs[64];
	pthread_t tid[64];
	if (nthreads > 64)
		nthreads = 64;
	if (rows < nthreads)
		nthreads = (int)(rows > 0 ? rows : 1);
	int started[64] = { 0 };
	for (int t = 0; t < nthreads; t++) {
		jobs[t] = (qjob){ a, W, rows * t / nthreads, rows * (t + 1) / nthreads, cols, scales,
		                  codes, 0, 0 };
		if (t > 0)
			started[t] = pthread_create(&tid[t], NULL, qjob_run, &jobs[t]) == 0;
	}
	qjob_run(&jobs[0]);
	for (int t = 1; t < nthreads; t++) {
		if (started[t])
			pthread_join(tid[t], NULL);
		else
			qjob_run(&jobs[t]);
	}
	double err = 0, norm = 0;
	for (int t = 0; t < nthreads; t++) {
		err += jobs[t].err;
		norm += jobs[t].norm;
	}
	return qc_rel(err, norm);
}

/* Per-output-channel amax of W [rows, cols] into scales (rounded to the
 * scale dtype, as compressed-tensors computes them). */
static void channel_scales(const qc_qargs *a, const float *W, int64_t rows, int64_t cols,
                           float *scales)
{
	for (int64_t r = 0; r < rows; r++) {
		float mn, mx, z;
		qc_minmax(W + r * cols, (size_t)cols, &mn, &mx);
		qc_qparams(a, mn, mx, &scales[r], &z);
	}
}

/* ------------------------------------------------------------ the tool */

typedef struct run {
	qc_ckpt *in;
	qc_config cfg;
	qc_qscheme scheme;
	qc_qout *out;
	qc_report *report;
	int shared;
	int threads;
	const char *scheme_name;
} run;

/* A weight tensor as f32, checked finite and against the shape config.json
 * implies. */
static int load_linear(run *R, int layer, qc_linear l, const qc_tensor **t, float **W)
{
	char name[256];
	qc_linear_name(name, sizeof name, layer, l, "weight");
	int rc = qc_ckpt_get(R->in, name, t);
	if (rc == QC_ENOTFOUND)
		return qc_seterr(QC_EFORMAT, "'%s' has no tensor '%s' that config.json implies",
		                 qc_ckpt_name(R->in), name);
	if (rc)
		return rc;
	int64_t shape[2];
	qc_linear_shape(&R->cfg, l, shape);
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
	*W = malloc(n * sizeof **W);
	if (!*W)
		return qc_seterr(QC_ENOMEM, "out of memory for '%s'", name);
	return qc_to_f32(*W, (*t)->data, (*t)->dtype, n);
}

/* Quantize the Linears of one decoder layer (those not ignored). */
static int quantize_layer(run *R, int layer)
{
	const qc_qargs *a = &R->scheme.weights;
	/* Linears that share one per-tensor scale: {q,k,v}, {o}, {gate,up}, {down} */
	static const int sets[4][4] = {
		{ QC_LIN_Q, QC_LIN_K, QC_LIN_V, -1 }, { QC_LIN_O, -1 }, { QC_LIN_GATE, QC_LIN_UP, -1 },
		{ QC_LIN_DOWN, -1 },
	};
	int rc = 0;
	for (int s = 0; rc == 0 && s < 4; s++) {
		const qc_tensor *t[3] = { 0 };
		float *W[3] = { 0 };
		int lin[3], n = 0;
		float shared_scale = 0;
		for (int k = 0; rc == 0 && sets[s][k] >= 0; k++) {
			char mod[256];
			qc_linear_name(mod, sizeof mod, layer, (qc_linear)sets[s][k], "");
			mod[strlen(mod) - 1] = 0; /* drop the trailing '.' */
			int ig = qc_qscheme_ignored(&R->scheme, mod);
			if (ig < 0) {
				rc = ig;
				break;
			}
			if (ig)
				continue;
			lin[n] = sets[s][k];
			rc = load_linear(R, layer, (qc_linear)lin[n], &t[n], &W[n]);
			n++;
		}
		if (rc == 0 && R->shared && n > 1) {
			/* the largest amax of the set gives the one shared scale */
			float amax = 0;
			for (int k = 0; k < n; k++) {
				float mn, mx;
				qc_minmax(W[k], (size_t)(t[k]->shape[0] * t[k]->shape[1]), &mn, &mx);
				amax = fmaxf(amax, fmaxf(-mn, mx));
			}
			float z;
			qc_qparams(a, -amax, amax, &shared_scale, &z);
		}
		for (int k = 0; rc == 0 && k < n; k++) {
			double t0 = qc_now();
			int64_t rows = t[k]->shape[0], cols = t[k]->shape[1];
			float *scales = malloc((size_t)rows * sizeof *scales);
			uint8_t *codes = malloc((size_t)(rows * cols));
			if (!scales || !codes) {
				free(scales);
				free(codes);
				rc = qc_seterr(QC_ENOMEM, "out of memory for '%s'", t[k]->name);
				break;
			}
			if (a->strategy == QC_QS_CHANNEL) {
				channel_scales(a, W[k], rows, cols, scales);
			} else if (R->shared && n > 1) {
				scales[0] = shared_scale;
			} else {
				float mn, mx, z;
				qc_minmax(W[k], (size_t)(rows * cols), &mn, &mx);
				qc_qparams(a, mn, mx, &scales[0], &z);
			}
			double err_w = quantize_rows(a, W[k], rows, cols, scales, codes, R->threads);
			char mod[256];
			qc_linear_name(mod, sizeof mod, layer, (qc_linear)lin[k], "");
			mod[strlen(mod) - 1] = 0;
			rc = qc_qout_linear(R->out, mod, rows, cols, codes, scales, NULL, NULL);
			free(scales);
			free(codes);
			if (rc)
				break;
			qc_report_line line = {
				.tool = "qfp8", .layer = mod, .rows = rows, .cols = cols,
				.scheme = R->scheme_name, .group_size = -1, .symmetric = 1, .n_tokens = 0,
				.err_out = NAN, .err_w = err_w, .err_rtn = NAN, .seconds = qc_now() - t0,
				.extra = NULL,
			};
			rc = qc_report_add(R->report, &line);
		}
		for (int k = 0; k < n; k++) {
			free(W[k]);
			if (t[k])
				qc_ckpt_release(R->in, t[k]->name);
		}
	}
	return rc;
}

/* 1 when name is the weight of a Linear that quantize_layer handled. */
static int handled(run *R, int layer, const char *name)
{
	for (int l = 0; l < QC_LIN_COUNT; l++) {
		char w[256], mod[256];
		qc_linear_name(w, sizeof w, layer, (qc_linear)l, "weight");
		if (strcmp(w, name) != 0)
			continue;
		qc_linear_name(mod, sizeof mod, layer, (qc_linear)l, "");
		mod[strlen(mod) - 1] = 0;
		return qc_qscheme_ignored(&R->scheme, mod) == 0;
	}
	return 0;
}

/* Copy every tensor of a group except the quantized weights. */
static int copy_group(run *R, int group, int layer)
{
	const char *const *names;
	size_t n;
	QC_TRY(qc_ckpt_group_names(R->in, group, &names, &n));
	/* names belong to the reader until its next group_names call: copy them
	 * out before getting tensors, which may read forward */
	char **mine = calloc(n + 1, sizeof *mine);
	if (!mine)
		return qc_seterr(QC_ENOMEM, "out of memory");
	int rc = 0;
	for (size_t i = 0; i < n && rc == 0; i++)
		if (!(mine[i] = strdup(names[i])))
			rc = qc_seterr(QC_ENOMEM, "out of memory");
	for (size_t i = 0; i < n && rc == 0; i++) {
		if (layer >= 0 && handled(R, layer, mine[i]))
			continue;
		const qc_tensor *t;
		if ((rc = qc_ckpt_get(R->in, mine[i], &t)) == 0) {
			rc = qc_qout_copy(R->out, t);
			qc_ckpt_release(R->in, mine[i]);
		}
	}
	for (size_t i = 0; i < n; i++)
		free(mine[i]);
	free(mine);
	return rc;
}

int main(int argc, char **argv)
{
	tool_init(argc, argv);
	run R;
	memset(&R, 0, sizeof R);
	const char *out = NULL, *calib = NULL, *report_path = NULL, *act = "dynamic";
	int per_tensor = 0, kv = 0, force = 0;
	const char *ignores[64];
	int n_ign = 0;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	R.threads = ncpu > 0 ? (int)ncpu : 1;
	int c;
	while ((c = getopt_long(argc, argv, "o:fqvhV", longopts, NULL)) != -1) {
		switch (c) {
		case OPT_PER_TENSOR: per_tensor = 1; break;
		case OPT_SHARED: R.shared = 1; per_tensor = 1; break;
		case OPT_ACT: act = optarg; break;
		case OPT_CALIB: calib = optarg; break;
		case OPT_KV: kv = 1; break;
		case OPT_IGNORE:
			if (n_ign == 64)
				tool_usage_error(usage, "too many --ignore patterns (64 at most)");
			ignores[n_ign++] = optarg;
			break;
		case OPT_REPORT: report_path = optarg; break;
		case OPT_THREADS: R.threads = (int)tool_parse_i64(usage, "--threads", optarg, 1, 1024); break;
		case 'o': out = optarg; break;
		case 'f': force = 1; break;
		case 'q': qc_log_set_level(QC_LOG_QUIET); break;
		case 'v': qc_log_set_level(qc_log_level() + 1); break;
		case 'h': help(); break;
		case 'V': tool_version(); break;
		default: tool_usage_error(usage, "unknown option");
		}
	}
	if (optind + 1 != argc)
		tool_usage_error(usage, optind < argc ? "too many arguments" : "no input model given");
	if (!out)
		tool_usage_error(usage, "no output given (-o DIR, or -o - for a stream)");
	if (strcmp(act, "dynamic") != 0 && strcmp(act, "static") != 0)
		tool_usage_error(usage, "--act is dynamic or static, not '%s'", act);
	if (strcmp(act, "static") == 0 && !calib)
		tool_usage_error(usage, "--act static needs a token set (--calib TOKENS)");
	if (kv && !calib)
		tool_usage_error(usage, "--kv-cache needs a token set (--calib TOKENS)");
	if (calib || kv || strcmp(act, "static") == 0)
		tool_usage_error(usage, "calibrated FP8 (--calib, --act static, --kv-cache) is not "
		                 "available in this build");
	const char *model = argv[optind];

	qc_ckpt_opts co = { 0 };
	co.hash_tensors = 1;
	int rc = qc_ckpt_open(&R.in, model, &co);
	const void *cj;
	size_t cl;
	if (rc == 0)
		rc = qc_ckpt_file(R.in, "config.json", &cj, &cl);
	if (rc == 0)
		rc = qc_config_parse(&R.cfg, cj, cl, "config.json");
	if (rc) {
		qc_ckpt_close(R.in);
		return tool_fail(rc);
	}
	if (json_object_get(R.cfg.raw, "quantization_config")) {
		qc_config_free(&R.cfg);
		qc_ckpt_close(R.in);
		tool_err("'%s' is already quantized (config.json has quantization_config)", model);
		return 2;
	}
	R.scheme_name = per_tensor ? "fp8-tensor" : "fp8-dynamic";
	qc_qscheme_preset(&R.scheme, "fp8-dynamic");
	snprintf(R.scheme.format, sizeof R.scheme.format, "float-quantized");
	if (per_tensor)
		R.scheme.weights.strategy = QC_QS_TENSOR;
	R.scheme.weights.scale_dtype = R.cfg.torch_dtype == QC_DT_F32 || R.cfg.torch_dtype == QC_DT_F16
	                               ? R.cfg.torch_dtype : QC_DT_BF16;
	for (int i = 0; i < n_ign && rc == 0; i++)
		rc = qc_qscheme_add_ignore(&R.scheme, ignores[i]);
	if (rc == 0 && (rc = qc_qscheme_ignored(&R.scheme, "probe")) > 0)
		rc = 0;
	R.report = qc_report_new();
	if (!R.report)
		rc = qc_seterr(QC_ENOMEM, "out of memory");
	qc_qout_opts oo = { out, force, 0, "qfp8", argc, tool_manifest_argv() };
	if (rc == 0)
		rc = qc_qout_open(&R.out, R.in, &R.cfg, &R.scheme, &oo);

	int L = (int)R.cfg.num_hidden_layers;
	qc_progress prog;
	qc_progress_begin(&prog, "layer", L);
	for (int layer = 0; rc == 0 && layer < L; layer++) {
		if (layer == 0)
			rc = copy_group(&R, QC_GROUP_PRE, -1);
		if (rc == 0)
			rc = quantize_layer(&R, layer);
		if (rc == 0)
			rc = copy_group(&R, layer, layer);
		if (rc == 0 && layer == L - 1)
			rc = copy_group(&R, QC_GROUP_POST, -1);
		if (rc == 0)
			rc = qc_qout_end_layer(R.out, layer);
		char note[32];
		snprintf(note, sizeof note, "layer %d", layer);
		if (rc == 0)
			qc_progress_update(&prog, layer + 1, note);
	}
	qc_progress_end(&prog);
	if (rc == 0 && report_path)
		rc = qc_report_save(R.report, report_path);
	if (rc == 0) {
		rc = qc_qout_close(R.out, R.report);
		R.out = NULL;
	}
	if (rc)
		qc_qout_abort(R.out);
	qc_report_free(R.report);
	qc_qscheme_free(&R.scheme);
	qc_config_free(&R.cfg);
	qc_ckpt_close(R.in);
	if (rc)
		return tool_fail(rc);
	return strcmp(out, "-") == 0 ? tool_close_stdout() : 0;
}
