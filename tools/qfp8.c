/* qfp8 - FP8 E4M3 weights (and activations) for W8A8-FP8 (see man/qfp8.1). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qc_ckpt.h"
#include "qc_fp8.h"
#include "qc_report.h"
#include "tool.h"

static const char usage[] =
	"qfp8 [--per-tensor] [--shared-scale] [--act dynamic|static] [--calib TOKENS]\n"
	"            [--kv-cache] [--ignore REGEX]... [--report FILE] [--threads N]\n"
	"            [--device cpu|cuda] [-f] [-q|-v]\n"
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
	"  --device cpu|cuda   where the calibration forward pass runs (default cpu)\n"
	"  -o, --output OUT|-  output directory, or '-' for a tar stream on stdout\n"
	"  -f, --force         replace an existing output directory\n"
	"  -q, --quiet         no progress\n"
	"  -v, --verbose       more detail\n"
	"  -h, --help          this help\n"
	"  -V, --version       version\n");
	exit(tool_close_stdout());
}

enum { OPT_PER_TENSOR = 256, OPT_SHARED, OPT_ACT, OPT_CALIB, OPT_KV, OPT_IGNORE, OPT_REPORT,
       OPT_THREADS, OPT_DEVICE };

static const struct option longopts[] = {
	{ "per-tensor", no_argument, NULL, OPT_PER_TENSOR },
	{ "shared-scale", no_argument, NULL, OPT_SHARED },
	{ "act", required_argument, NULL, OPT_ACT },
	{ "calib", required_argument, NULL, OPT_CALIB },
	{ "kv-cache", no_argument, NULL, OPT_KV },
	{ "ignore", required_argument, NULL, OPT_IGNORE },
	{ "report", required_argument, NULL, OPT_REPORT },
	{ "threads", required_argument, NULL, OPT_THREADS },
	{ "device", required_argument, NULL, OPT_DEVICE },
	{ "output", required_argument, NULL, 'o' },
	{ "force", no_argument, NULL, 'f' },
	{ "quiet", no_argument, NULL, 'q' },
	{ "verbose", no_argument, NULL, 'v' },
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, 'V' },
	{ NULL, 0, NULL, 0 },
};

static void progress(void *ctx, int done, int total)
{
	qc_progress *p = ctx;
	p->total = total;
	char note[32];
	snprintf(note, sizeof note, "layer %d", done - 1);
	qc_progress_update(p, done, note);
}

int main(int argc, char **argv)
{
	tool_init(argc, argv);
	const char *out = NULL, *report_path = NULL, *act = "dynamic";
	const char *ignores[64];
	int force = 0;
	qc_fp8_opts o;
	memset(&o, 0, sizeof o);
	o.ignore = ignores;
	int c;
	while ((c = getopt_long(argc, argv, "o:fqvhV", longopts, NULL)) != -1) {
		switch (c) {
		case OPT_PER_TENSOR: o.per_tensor = 1; break;
		case OPT_SHARED: o.shared_scale = 1; break;
		case OPT_ACT: act = optarg; break;
		case OPT_CALIB: o.calib = optarg; break;
		case OPT_KV: o.kv_cache = 1; break;
		case OPT_IGNORE:
			if (o.n_ignore == 64)
				tool_usage_error(usage, "too many --ignore patterns (64 at most)");
			ignores[o.n_ignore++] = optarg;
			break;
		case OPT_REPORT: report_path = optarg; break;
		case OPT_THREADS: o.threads = (int)tool_parse_i64(usage, "--threads", optarg, 1, 1024); break;
		case OPT_DEVICE:
			if (qk_device_parse(optarg, &o.device) != 0)
				tool_usage_error(usage, "unknown device '%s' (cpu, cuda)", optarg);
			break;
		case 'o': out = optarg; break;
		case 'f': force = 1; break;
		case 'q': qc_log_set_level(QC_LOG_QUIET); break;
		case 'v': qc_log_set_level(qc_log_level() + 1); break;
		case 'h': help(); break;
		case 'V': tool_version(); break;
		default: tool_bad_option(usage, argv);
		}
	}
	if (optind + 1 != argc)
		tool_usage_error(usage, optind < argc ? "too many arguments" : "no input model given");
	if (!out)
		tool_usage_error(usage, "no output given (-o DIR, or -o - for a stream)");
	if (strcmp(act, "dynamic") != 0 && strcmp(act, "static") != 0)
		tool_usage_error(usage, "--act is dynamic or static, not '%s'", act);
	o.act_static = strcmp(act, "static") == 0;
	if (o.act_static && !o.calib)
		tool_usage_error(usage, "--act static needs a token set (--calib TOKENS)");
	if (o.kv_cache && !o.calib)
		tool_usage_error(usage, "--kv-cache needs a token set (--calib TOKENS)");
	const char *model = argv[optind];

	qc_ckpt_opts co = { 0 };
	co.hash_tensors = 1;
	qc_ckpt *in = NULL;
	int rc = qc_ckpt_open(&in, model, &co);
	if (rc)
		return tool_fail(rc);
	qc_report *report = qc_report_new();
	if (!report) {
		qc_ckpt_close(in);
		return tool_fail(qc_seterr(QC_ENOMEM, "out of memory"));
	}
	qc_progress prog;
	o.progress = progress;
	o.progress_ctx = &prog;
	qc_qout_opts oo = { out, force, 0, "qfp8", argc, tool_manifest_argv() };
	qc_progress_begin(&prog, "layer", 0); /* the total comes with the first layer */
	rc = qc_fp8_quantize(in, &o, &oo, report);
	qc_progress_end(&prog);
	if (rc == 0 && report_path)
		rc = qc_report_save(report, report_path);
	qc_report_free(report);
	qc_ckpt_close(in);
	if (rc)
		return tool_fail(rc);
	return strcmp(out, "-") == 0 ? tool_close_stdout() : 0;
}
