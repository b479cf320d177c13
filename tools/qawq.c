/* qawq - AWQ, activation-aware weight quantization (W4A16, W8A16), with
 * per-Linear error reports and what each smoothing bought (see
 * man/qawq.1). The method is libcommon's qc_awq, the run (input, walk,
 * output, resume) the driver qc_qrun; this file parses the options. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qc_awq.h"
#include "qc_err.h"
#include "tool.h"

static const char usage[] =
	"qawq [--scheme w4a16|w8a16] [--group-size 32|64|128|-1] [--asym|--sym]\n"
	"            [--scale-dtype model|f16]\n"
	"            [--grid N] [--duo-scaling on|off] [--no-clip] [--then gptq]\n"
	"            [--scales-only] [--pow2 on|off] [--loss-tokens N|all] [--clip-tokens N]\n"
	"            [--ignore REGEX]... [--report FILE] [--threads N] [--resume] [--mem SIZE]\n"
	"            [--device cpu|cuda] [-f] [-q|-v] --calib TOKENS -o OUT|- MODEL";

static void help(void)
{
	printf("usage: %s\n\n", usage);
	printf(
	"Quantize the Linear layers of a BF16/FP16/FP32 Llama-family checkpoint with AWQ\n"
	"(activation-aware weight quantization), one decoder layer at a time in\n"
	"true-sequential order: per smoothing point (input_layernorm -> q/k/v, v -> o\n"
	"without grouped-query attention, post_attention_layernorm -> gate/up,\n"
	"up -> down), a grid search of per-channel scales from the mean activation\n"
	"and weight magnitudes, folded into the previous operation; then a clipping\n"
	"search per group and round to nearest. Writes a compressed-tensors checkpoint\n"
	"(one int8 code per byte, naive-quantized layout; qpack -f awq packs it) with a\n"
	"per-Linear error report. MODEL is a directory, a tar stream file, or '-'.\n\n"
	"Scheme:\n"
	"  --scheme S          w4a16: int4 weights in groups of 128 (default); w8a16:\n"
	"                      int8 weights, one scale per output channel\n"
	"  --group-size G      32, 64, 128 or -1 (one group per output channel)\n"
	"  --asym, --sym       zero points (default, as AWQ) or symmetric codes\n"
	"  --scale-dtype D     model (default): scales in the model's dtype; f16: rounded\n"
	"                      to F16 first, so that --sym --group-size 32 converts to\n"
	"                      GGUF Q4_0 exactly (qpack -f gguf)\n"
	"\n"
	"Method:\n"
	"  --calib TOKENS      calibration token set (qcalib); required\n"
	"  --grid N            ratios searched per smoothing point, r = 0, 1/N, ...,\n"
	"                      (N-1)/N (default 20)\n"
	"  --duo-scaling on|off  on (default, AutoAWQ): scales from the activation and\n"
	"                      the weight magnitudes; off: activations only (llm-awq)\n"
	"  --no-clip           no clipping search before rounding\n"
	"  --then gptq         quantize the smoothed weights with GPTQ instead of\n"
	"                      rounding them (GPTQ's own clipping; AWQ's is not run)\n"
	"  --scales-only       write the smoothed, unquantized checkpoint in the model's\n"
	"                      dtype (the input of another quantizer)\n"
	"  --pow2 on|off       round the scales to powers of two, which makes the\n"
	"                      rescaling exact in BF16 (default: on with --scales-only)\n"
	"  --loss-tokens N|all tokens of whole sequences the search's loss is measured\n"
	"                      on (default 2048)\n"
	"  --clip-tokens N     tokens the clipping search samples, and the reported\n"
	"                      errors are measured on (default 512)\n");
	tool_qopts_help(1);
	printf("\n"
	"Exit status: 0 success, 2 usage or input error (including NaN or Inf weights,\n"
	"shapes that disagree with config.json, token ids outside the vocabulary).\n");
	exit(tool_close_stdout());
}

enum { OPT_SCHEME = 256, OPT_GROUP, OPT_SYM, OPT_ASYM, OPT_GRID, OPT_DUO, OPT_NO_CLIP, OPT_THEN,
       OPT_SCALES_ONLY, OPT_POW2, OPT_LOSS_TOKENS, OPT_CLIP_TOKENS, OPT_SCALE_DTYPE };

static const struct option longopts[] = {
	{ "scheme", required_argument, NULL, OPT_SCHEME },
	{ "group-size", required_argument, NULL, OPT_GROUP },
	{ "sym", no_argument, NULL, OPT_SYM },
	{ "asym", no_argument, NULL, OPT_ASYM },
	{ "grid", required_argument, NULL, OPT_GRID },
	{ "duo-scaling", required_argument, NULL, OPT_DUO },
	{ "no-clip", no_argument, NULL, OPT_NO_CLIP },
	{ "then", required_argument, NULL, OPT_THEN },
	{ "scales-only", no_argument, NULL, OPT_SCALES_ONLY },
	{ "pow2", required_argument, NULL, OPT_POW2 },
	{ "loss-tokens", required_argument, NULL, OPT_LOSS_TOKENS },
	{ "clip-tokens", required_argument, NULL, OPT_CLIP_TOKENS },
	{ "scale-dtype", required_argument, NULL, OPT_SCALE_DTYPE },
	TOOL_QOPTS_LONG,
	{ NULL, 0, NULL, 0 },
};

/* "on" -> 1, "off" -> 0, anything else a usage error */
static int on_off(const char *opt, const char *arg)
{
	if (strcmp(arg, "on") == 0)
		return 1;
	if (strcmp(arg, "off") == 0)
		return 0;
	tool_usage_error(usage, "%s is on or off, not '%s'", opt, arg);
}

int main(int argc, char **argv)
{
	tool_init(argc, argv);
	qc_awq_opts A = { .scheme = "w4a16", .pow2 = -1 };
	qc_gptq_opts_default(&A.go);
	const char *then = "none";
	tool_qopts q = { 0 };
	int c;
	while ((c = getopt_long(argc, argv, TOOL_QOPTS_SHORT, longopts, NULL)) != -1) {
		switch (c) {
		case OPT_SCHEME: A.scheme = optarg; break;
		case OPT_GROUP:
			A.group = tool_parse_i64(usage, "--group-size", optarg, -1, 1 << 20);
			if (A.group != -1 && A.group != 32 && A.group != 64 && A.group != 128)
				tool_usage_error(usage, "--group-size is 32, 64, 128 or -1, not %s", optarg);
			break;
		case OPT_SYM: A.sym = 1; break;
		case OPT_ASYM: A.sym = 0; break;
		case OPT_SCALE_DTYPE:
			if (strcmp(optarg, "f16") == 0)
				A.scale_dtype = QC_DT_F16;
			else if (strcmp(optarg, "model") != 0)
				tool_usage_error(usage, "--scale-dtype is model or f16, not '%s'", optarg);
			break;
		case OPT_GRID: A.grid = (int)tool_parse_i64(usage, "--grid", optarg, 1, 1000); break;
		case OPT_DUO: A.no_duo = !on_off("--duo-scaling", optarg); break;
		case OPT_NO_CLIP: A.no_clip = 1; break;
		case OPT_THEN: then = optarg; break;
		case OPT_SCALES_ONLY: A.scales_only = 1; break;
		case OPT_POW2: A.pow2 = on_off("--pow2", optarg); break;
		case OPT_LOSS_TOKENS:
			A.loss_tokens = strcmp(optarg, "all") == 0
			                ? -1 : tool_parse_i64(usage, "--loss-tokens", optarg, 1, 1LL << 40);
			break;
		case OPT_CLIP_TOKENS:
			A.clip_tokens = tool_parse_i64(usage, "--clip-tokens", optarg, 1, 1LL << 40);
			break;
		default: tool_qopt(&q, c, optarg, usage, help, argv);
		}
	}
	tool_qopts_finish(&q, usage, argc, argv);
	if (strcmp(A.scheme, "w4a16") != 0 && strcmp(A.scheme, "w8a16") != 0)
		tool_usage_error(usage, "--scheme is w4a16 or w8a16, not '%s'", A.scheme);
	if (strcmp(then, "gptq") == 0)
		A.then_gptq = 1;
	else if (strcmp(then, "none") != 0)
		tool_usage_error(usage, "--then is gptq, not '%s'", then);
	if (!q.calib)
		tool_usage_error(usage, "AWQ needs a calibration token set (--calib TOKENS)");
	if (A.scales_only && A.then_gptq)
		tool_usage_error(usage, "--scales-only quantizes nothing to hand to --then gptq");
	if (A.scales_only && q.n_ignore)
		tool_usage_error(usage, "--ignore: --scales-only quantizes nothing to leave out");

	/* what a resumed run must share (the ignore patterns too) */
	char opts[1024];
	int u = snprintf(opts, sizeof opts, "scheme=%s group=%lld sym=%d grid=%d duo=%d clip=%d "
	                 "then=%s scales_only=%d pow2=%d loss_tokens=%lld clip_tokens=%lld",
	                 A.scheme, (long long)A.group, A.sym, A.grid, !A.no_duo, !A.no_clip, then,
	                 A.scales_only, A.pow2, (long long)A.loss_tokens, (long long)A.clip_tokens);
	if (A.scale_dtype == QC_DT_F16 && u > 0 && (size_t)u < sizeof opts)
		u += snprintf(opts + u, sizeof opts - (size_t)u, " scale_dtype=f16");
	for (int i = 0; i < q.n_ignore && u > 0 && (size_t)u < sizeof opts; i++)
		u += snprintf(opts + u, sizeof opts - (size_t)u, " ignore=%s", q.ignore[i]);
	qc_awq *state;
	qc_qmethod m;
	if (qc_awq_method(&state, &m, &A) != 0)
		return tool_fail(QC_EINVAL);
	int st = tool_qrun(&q, opts, &m);
	qc_awq_free(state);
	return st;
}
