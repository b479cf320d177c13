/* qsmooth - SmoothQuant: move the range of the activations entering each
 * Linear group into its weights, for W8A8 (see man/qsmooth.1). The method
 * is libcommon's qc_smooth, the run the driver qc_qrun; this file parses
 * the options. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qc_smooth.h"
#include "tool.h"

static const char usage[] =
	"qsmooth [--alpha F|search] [--smooth-vo] [--smooth-ud] [--sample-tokens N]\n"
	"               [--report FILE] [--threads N] [--resume] [--mem SIZE]\n"
	"               [--device cpu|cuda] [-f] [-q|-v] --calib TOKENS -o OUT|- MODEL";

static void help(void)
{
	printf("usage: %s\n\n", usage);
	printf(
	"Smooth a BF16/FP16/FP32 Llama-family checkpoint for W8A8 (SmoothQuant): per\n"
	"input channel j of each Linear group, s_j = max|x_j|^alpha / max|W_j|^(1-alpha)\n"
	"from the calibration tokens, the previous norm's weight divided by s and the\n"
	"group's weight columns multiplied, layer by layer in true-sequential order.\n"
	"The output computes the same function in the model's dtype; quantize it with\n"
	"qgptq --scheme w8a8. MODEL is a directory, a tar stream file, or '-'.\n\n"
	"  --calib TOKENS      calibration token set (qcalib); required\n"
	"  --alpha F|search    migration strength in [0, 1] (default 0.5), or search:\n"
	"                      per group, the alpha in 0, 0.05, ..., 1 with the least\n"
	"                      W8A8 output error on the sampled tokens\n"
	"  --smooth-vo         also v_proj -> o_proj (only without grouped-query attention)\n"
	"  --smooth-ud         also up_proj -> down_proj\n"
	"  --sample-tokens N   calibration tokens kept for the reported errors and the\n"
	"                      search (default 512, spread over the token set)\n"
	"  --no-pow2           scales as computed; by default each is rounded to a power\n"
	"                      of two, which makes the rescaling exact in BF16\n");
	tool_qopts_help(0);
	printf("\n"
	"Exit status: 0 success, 2 usage or input error (alpha outside [0, 1], NaN or\n"
	"Inf weights, token ids outside the vocabulary).\n");
	exit(tool_close_stdout());
}

enum { OPT_ALPHA = 256, OPT_VO, OPT_UD, OPT_SAMPLE, OPT_NO_POW2 };

static const struct option longopts[] = {
	{ "alpha", required_argument, NULL, OPT_ALPHA },
	{ "smooth-vo", no_argument, NULL, OPT_VO },
	{ "smooth-ud", no_argument, NULL, OPT_UD },
	{ "sample-tokens", required_argument, NULL, OPT_SAMPLE },
	{ "no-pow2", no_argument, NULL, OPT_NO_POW2 },
	TOOL_QOPTS_LONG,
	{ NULL, 0, NULL, 0 },
};

int main(int argc, char **argv)
{
	tool_init(argc, argv);
	qc_smooth_opts o = { .alpha = 0.5 };
	const char *alpha = "0.5";
	tool_qopts q = { 0 };
	int c;
	while ((c = getopt_long(argc, argv, TOOL_QOPTS_SHORT, longopts, NULL)) != -1) {
		switch (c) {
		case OPT_ALPHA:
			alpha = optarg;
			o.alpha = strcmp(optarg, "search") == 0
			          ? -1 : tool_parse_double(usage, "--alpha", optarg, 0.0, 1.0);
			break;
		case OPT_VO: o.smooth_vo = 1; break;
		case OPT_NO_POW2: o.no_pow2 = 1; break;
		case OPT_UD: o.smooth_ud = 1; break;
		case OPT_SAMPLE:
			o.sample_tokens = tool_parse_i64(usage, "--sample-tokens", optarg, 1, 1 << 24);
			break;
		default: tool_qopt(&q, c, optarg, usage, help, argv);
		}
	}
	tool_qopts_finish(&q, usage, argc, argv);
	if (!q.calib)
		tool_usage_error(usage, "smoothing needs a calibration token set (--calib TOKENS)");
	if (q.n_ignore)
		tool_usage_error(usage, "--ignore: qsmooth quantizes nothing to leave out");
	char opts[128];
	snprintf(opts, sizeof opts, "alpha=%s vo=%d ud=%d sample=%lld pow2=%d", alpha, o.smooth_vo,
	         o.smooth_ud, (long long)o.sample_tokens, !o.no_pow2);
	qc_smooth *state;
	qc_qmethod m;
	if (qc_smooth_method(&state, &m, &o) != 0)
		return tool_fail(QC_EINVAL);
	int st = tool_qrun(&q, opts, &m);
	qc_smooth_free(state);
	return st;
}
