/* qfp8 - FP8 E4M3 weights (and activations) for W8A8-FP8 (see man/qfp8.1).
 * The method is libcommon's qc_fp8, the run the driver qc_qrun; this file
 * parses the options. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qc_fp8.h"
#include "tool.h"

static const char usage[] =
	"qfp8 [--per-tensor] [--shared-scale] [--act dynamic|static] [--calib TOKENS]\n"
	"            [--kv-cache] [--ignore REGEX]... [--report FILE] [--threads N]\n"
	"            [--resume] [--mem SIZE] [--device cpu|cuda] [-f] [-q|-v]\n"
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
	"  --kv-cache          also write FP8 KV-cache scales (k_scale, v_scale; needs --calib)\n");
	tool_qopts_help(1);
	printf("\n"
	"Exit status: 0 success, 2 usage or input error (including NaN or Inf weights,\n"
	"shapes that disagree with config.json, token ids outside the vocabulary).\n");
	exit(tool_close_stdout());
}

enum { OPT_PER_TENSOR = 256, OPT_SHARED, OPT_ACT, OPT_KV };

static const struct option longopts[] = {
	{ "per-tensor", no_argument, NULL, OPT_PER_TENSOR },
	{ "shared-scale", no_argument, NULL, OPT_SHARED },
	{ "act", required_argument, NULL, OPT_ACT },
	{ "kv-cache", no_argument, NULL, OPT_KV },
	TOOL_QOPTS_LONG,
	{ NULL, 0, NULL, 0 },
};

int main(int argc, char **argv)
{
	tool_init(argc, argv);
	const char *act = "dynamic";
	qc_fp8_opts o = { 0 };
	tool_qopts q = { 0 };
	int c;
	while ((c = getopt_long(argc, argv, TOOL_QOPTS_SHORT, longopts, NULL)) != -1) {
		switch (c) {
		case OPT_PER_TENSOR: o.per_tensor = 1; break;
		case OPT_SHARED: o.shared_scale = 1; break;
		case OPT_ACT: act = optarg; break;
		case OPT_KV: o.kv_cache = 1; break;
		default: tool_qopt(&q, c, optarg, usage, help, argv);
		}
	}
	tool_qopts_finish(&q, usage, argc, argv);
	if (strcmp(act, "dynamic") != 0 && strcmp(act, "static") != 0)
		tool_usage_error(usage, "--act is dynamic or static, not '%s'", act);
	o.act_static = strcmp(act, "static") == 0;
	if (o.act_static && !q.calib)
		tool_usage_error(usage, "--act static needs a token set (--calib TOKENS)");
	if (o.kv_cache && !q.calib)
		tool_usage_error(usage, "--kv-cache needs a token set (--calib TOKENS)");

	char opts[128];
	snprintf(opts, sizeof opts, "per_tensor=%d shared_scale=%d act=%s kv_cache=%d", o.per_tensor,
	         o.shared_scale, act, o.kv_cache);
	qc_fp8 *state;
	qc_qmethod m;
	if (qc_fp8_method(&state, &m, &o) != 0)
		return tool_fail(QC_ENOMEM);
	int st = tool_qrun(&q, opts, &m);
	qc_fp8_free(state);
	return st;
}
