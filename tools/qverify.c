/* qverify - prove that a checkpoint is the model its maker meant to publish
 * (see man/qverify.1). The checks live in libcommon (qc_verify); this file
 * parses options, prints the report and a summary, and maps the verdict to
 * the exit status: 0 every check holds, 1 one failed, 2 cannot verify. */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "qc_err.h"
#include "qc_io.h"
#include "qc_json.h"
#include "qc_log.h"
#include "qc_verify.h"
#include "tool.h"

static const char usage[] =
	"qverify ARTIFACT [--base DIR] [--tokens FILE] [--max-ppl-ratio R] [--max-kl K]\n"
	"               [--min-top1 A] [-o FILE] [--device cpu|cuda] [-j N] [--act-dtype f32|bf16]\n"
	"               [-q] [-v]";

static const char help[] =
	"Verify a checkpoint (directory, tar stream or '-'), alone or against its base\n"
	"model, and print a JSON report.\n"
	"\n"
	"Checks:\n"
	"  integrity (always)    manifest hashes when quant_manifest.json exists; every\n"
	"                        tensor config.json and its quantization_config imply,\n"
	"                        with the right dtype and shape; scales finite and\n"
	"                        positive, codes in range; no unaccounted tensor\n"
	"  numerics (--base)     relative weight error of each dequantized Linear\n"
	"  function (--tokens)   perplexity; with --base also PPL ratio, mean\n"
	"                        KL(base || artifact), top-1 agreement, per sequence\n"
	"\n"
	"Options:\n"
	"      --base DIR        the unquantized model the artifact was made from\n"
	"      --tokens FILE     token set to evaluate on (qcalib)\n"
	"      --max-ppl-ratio R fail when PPL(artifact) / PPL(base) exceeds R\n"
	"      --max-kl K        fail when the mean KL(base || artifact) exceeds K\n"
	"      --min-top1 A      fail when top-1 agreement is below A (0..1)\n"
	"                        (thresholds need --base and --tokens)\n"
	"  -o, --output FILE     write the report to FILE (default: standard output)\n"
	"      --device DEV      cpu (default) or cuda\n"
	"  -j, --threads N       threads (default: all online CPUs)\n"
	"      --act-dtype T     activations held between layers as f32 (default) or\n"
	"                        bf16 (half the memory)\n"
	"  -q, --quiet           no summary or progress on standard error\n"
	"  -v, --verbose         more detail\n"
	"      --help            this help\n"
	"      --version         version\n"
	"\n"
	"Exit status: 0 every check and threshold holds, 1 one does not (named on\n"
	"standard error and in the report), 2 the artifact cannot be verified\n"
	"(usage, unreadable or malformed input).\n";

enum { OPT_BASE = 256, OPT_TOKENS, OPT_PPL, OPT_KL, OPT_TOP1, OPT_DEVICE, OPT_ACT, OPT_HELP,
       OPT_VERSION };

/* ---- progress: one qc_progress per stage ---- */
typedef struct {
	qc_progress p;
	char stage[32];
	int active;
} prog;

static void on_progress(void *ctx, const char *stage, int done, int total)
{
	prog *g = ctx;
	if (!g->active || strcmp(g->stage, stage) != 0) {
		if (g->active)
			qc_progress_end(&g->p);
		snprintf(g->stage, sizeof g->stage, "%s", stage);
		qc_progress_begin(&g->p, stage, total);
		g->active = 1;
	}
	qc_progress_update(&g->p, done, "layers");
}

static double jnum(const json_t *o, const char *k)
{
	return json_number_value(json_object_get(o, k));
}

/* the human summary on stderr */
static void summary(const json_t *rep)
{
	const json_t *in = json_object_get(rep, "integrity");
	const json_t *nu = json_object_get(rep, "numerics");
	const json_t *fu = json_object_get(rep, "function");
	if (json_is_true(json_object_get(in, "ok")))
		qc_log(QC_LOG_INFO, "integrity: ok (manifest %s; %lld Linears, %lld quantized; %lld tensors checked)",
		       json_string_value(json_object_get(in, "manifest")),
		       (long long)json_integer_value(json_object_get(in, "linears")),
		       (long long)json_integer_value(json_object_get(in, "quantized_linears")),
		       (long long)json_integer_value(json_object_get(in, "tensors_checked")));
	else
	{
		long long n = (long long)json_integer_value(json_object_get(in, "findings_total"));
		qc_log(QC_LOG_INFO, "integrity: FAILED (%lld finding%s)", n, n == 1 ? "" : "s");
	}
	if (json_is_object(nu))
		qc_log(QC_LOG_INFO, "numerics: relative weight error mean %.3g, max %.3g (%s); base %s",
		       jnum(nu, "err_w_mean"), jnum(nu, "err_w_max"),
		       json_string_value(json_object_get(nu, "worst")),
		       json_string_value(json_object_get(nu, "base_fingerprint")));
	if (json_is_object(fu)) {
		if (json_object_get(fu, "ppl_base"))
			qc_log(QC_LOG_INFO, "function: ppl %.6g (base %.6g, ratio %.6g), kl %.4g, top-1 %.4f "
			       "over %lld sequences, %lld positions",
			       jnum(fu, "ppl"), jnum(fu, "ppl_base"), jnum(fu, "ppl_ratio"), jnum(fu, "kl_mean"),
			       jnum(fu, "top1"), (long long)json_integer_value(json_object_get(fu, "n_sequences")),
			       (long long)json_integer_value(json_object_get(fu, "n_positions")));
		else
			qc_log(QC_LOG_INFO, "function: ppl %.6g over %lld sequences, %lld positions",
			       jnum(fu, "ppl"), (long long)json_integer_value(json_object_get(fu, "n_sequences")),
			       (long long)json_integer_value(json_object_get(fu, "n_positions")));
	}
	const json_t *f = json_object_get(rep, "failures");
	size_t i;
	const json_t *s;
	json_array_foreach(f, i, s)
		qc_log(QC_LOG_ERROR, "FAIL: %s", json_string_value(s));
	if (json_array_size(f) == 0)
		qc_log(QC_LOG_INFO, "pass");
}

int main(int argc, char **argv)
{
	tool_init(argc, argv);
	static const struct option longs[] = {
		{ "base", required_argument, NULL, OPT_BASE },
		{ "tokens", required_argument, NULL, OPT_TOKENS },
		{ "max-ppl-ratio", required_argument, NULL, OPT_PPL },
		{ "max-kl", required_argument, NULL, OPT_KL },
		{ "min-top1", required_argument, NULL, OPT_TOP1 },
		{ "output", required_argument, NULL, 'o' },
		{ "device", required_argument, NULL, OPT_DEVICE },
		{ "threads", required_argument, NULL, 'j' },
		{ "act-dtype", required_argument, NULL, OPT_ACT },
		{ "quiet", no_argument, NULL, 'q' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, OPT_HELP },
		{ "version", no_argument, NULL, OPT_VERSION },
		{ NULL, 0, NULL, 0 },
	};
	qc_verify_opts o;
	qc_verify_opts_default(&o);
	const char *out = NULL;
	qk_device dev = QK_DEVICE_CPU;
	int threads = 0, level = QC_LOG_INFO, c;
	while ((c = getopt_long(argc, argv, "o:j:qv", longs, NULL)) != -1) {
		switch (c) {
		case OPT_BASE: o.base = optarg; break;
		case OPT_TOKENS: o.tokens = optarg; break;
		case OPT_PPL: o.max_ppl_ratio = tool_parse_double(usage, "--max-ppl-ratio", optarg, 1e-300, 1e300); break;
		case OPT_KL: o.max_kl = tool_parse_double(usage, "--max-kl", optarg, 0, 1e300); break;
		case OPT_TOP1: o.min_top1 = tool_parse_double(usage, "--min-top1", optarg, 0, 1); break;
		case 'o': out = optarg; break;
		case OPT_DEVICE:
			if (qk_device_parse(optarg, &dev))
				tool_usage_error(usage, "unknown device '%s' (use cpu or cuda)", optarg);
			break;
		case 'j': threads = (int)tool_parse_i64(usage, "-j", optarg, 1, 1024); break;
		case OPT_ACT:
			if (strcmp(optarg, "f32") == 0)
				o.metrics.act_dtype = QC_DT_F32;
			else if (strcmp(optarg, "bf16") == 0)
				o.metrics.act_dtype = QC_DT_BF16;
			else
				tool_usage_error(usage, "invalid --act-dtype '%s' (use f32 or bf16)", optarg);
			break;
		case 'q': level = QC_LOG_QUIET; break;
		case 'v': level = level < QC_LOG_DEBUG ? level + 1 : level; break;
		case OPT_HELP:
			printf("usage: %s\n\n%s", usage, help);
			return tool_close_stdout();
		case OPT_VERSION: tool_version();
		default: tool_bad_option(usage, argv);
		}
	}
	if (optind != argc - 1)
		tool_usage_error(usage, optind == argc ? "no artifact given" : "more than one artifact given");
	if ((o.max_ppl_ratio > 0 || o.max_kl >= 0 || o.min_top1 >= 0) && (!o.base || !o.tokens))
		tool_usage_error(usage, "thresholds need --base and --tokens");
	qc_log_set_level(level);
	const char *artifact = argv[optind];

	qk_ctx *kc;
	int rc = qk_ctx_new(&kc, dev, threads);
	if (rc)
		return tool_fail(rc);
	o.kc = kc;
	prog g = { 0 };
	o.progress = on_progress;
	o.progress_ctx = &g;
	json_t *rep = NULL;
	rc = qc_verify(artifact, &o, &rep);
	if (g.active)
		qc_progress_end(&g.p);
	qk_ctx_free(kc);
	if (!rep)
		return tool_fail(rc);
	char *text;
	size_t len;
	int wrc = qc_json_dump(rep, &text, &len);
	if (!wrc) {
		if (out && strcmp(out, "-") != 0) {
			wrc = qc_write_file_atomic(out, text, len);
		} else if (fwrite(text, 1, len, stdout) != len) {
			wrc = QC_EIO;
		}
		free(text);
	}
	summary(rep);
	json_decref(rep);
	if (wrc)
		return tool_fail(wrc);
	if (tool_close_stdout())
		return 2;
	return qc_exit_status(rc);
}
