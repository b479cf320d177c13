/* qgptq - GPTQ and round-to-nearest weight quantization (W4A16, W8A16, GGUF K-quants,
 * W8A8-INT8) with per-Linear error reports (see man/qgptq.1). The method is
 * libcommon's qc_gptqm (its solver qc_gptq), the run (input, walk, output,
 * resume) the driver qc_qrun; this file parses the options. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qc_err.h"
#include "qc_gptqm.h"
#include "tool.h"

static const char usage[] =
	"qgptq [--scheme w4a16|w8a16|w8a8|gguf-q4_k_m|gguf-q4_k|gguf-q5_k_m|gguf-q5_k|gguf-q6_k]\n"
	"             [--group-size 32|64|128|-1] [--sym|--asym]\n"
	"             [--act dynamic|static] [--scale-dtype model|f16]\n"
	"             [--method gptq|rtn] [--actorder static|none] [--clip mse|mse-h|minmax]\n"
	"             [--damp F] [--exact-errors] [--ignore REGEX]... [--report FILE]\n"
	"             [--threads N] [--resume]\n"
	"             [--mem SIZE] [--device cpu|cuda] [-f] [-q|-v] --calib TOKENS -o OUT|- MODEL";

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
	"                      activations quantized per token at run time (default w4a16);\n"
	"                      gguf-q4_k, gguf-q5_k, gguf-q6_k: llama.cpp's K-quant grid\n"
	"                      (super-blocks of 256, ggml's sub-block scales), codes chosen\n"
	"                      by GPTQ on it, stored as the float weights plus the ggml\n"
	"                      blocks that qpack -f gguf writes unchanged; gguf-q4_k_m,\n"
	"                      gguf-q5_k_m: the same with Q6_K on the attn_v and ffn_down\n"
	"                      layers llama.cpp's Q4_K_M/Q5_K_M recipes choose\n"
	"  --group-size G      32, 64, 128 or -1 (one group per output channel);\n"
	"                      default 128 for w4a16, -1 otherwise; w8a8 is per channel\n"
	"  --sym, --asym       symmetric codes (default) or with zero points (not w8a8)\n"
	"  --act MODE          w8a8's activations: dynamic, per token at run time\n"
	"                      (default), or static: one int8 input_scale per Linear\n"
	"                      from the calibration maxima (needs --calib)\n"
	"  --scale-dtype D     model (default): scales in the model's dtype; f16: scales\n"
	"                      rounded to F16 before GPTQ sees them, so a group-32\n"
	"                      checkpoint converts to GGUF Q4_0/Q4_1/Q8_0 exactly\n"
	"                      (qpack -f gguf)\n"
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
	"  --exact-errors      err_out and err_rtn of a Linear with more than 1024 rows\n"
	"                      and at least 1024 inputs from every row; by default from\n"
	"                      an even sample of an eighth of them, at least 512\n"
	"                      (err_rows in the report; within 1 %% where measured, at\n"
	"                      an eighth of the time the exact products take)\n");
	tool_qopts_help(1);
	printf("\n"
	"Exit status: 0 success, 2 usage or input error (including NaN or Inf weights,\n"
	"shapes that disagree with config.json, token ids outside the vocabulary).\n");
	exit(tool_close_stdout());
}

enum { OPT_SCHEME = 256, OPT_GROUP, OPT_SYM, OPT_ASYM, OPT_METHOD, OPT_ACTORDER, OPT_CLIP,
       OPT_DAMP, OPT_ACT, OPT_SCALE_DTYPE, OPT_EXACT_ERRORS };

static const struct option longopts[] = {
	{ "scheme", required_argument, NULL, OPT_SCHEME },
	{ "group-size", required_argument, NULL, OPT_GROUP },
	{ "sym", no_argument, NULL, OPT_SYM },
	{ "asym", no_argument, NULL, OPT_ASYM },
	{ "method", required_argument, NULL, OPT_METHOD },
	{ "actorder", required_argument, NULL, OPT_ACTORDER },
	{ "clip", required_argument, NULL, OPT_CLIP },
	{ "damp", required_argument, NULL, OPT_DAMP },
	{ "act", required_argument, NULL, OPT_ACT },
	{ "scale-dtype", required_argument, NULL, OPT_SCALE_DTYPE },
	{ "exact-errors", no_argument, NULL, OPT_EXACT_ERRORS },
	TOOL_QOPTS_LONG,
	{ NULL, 0, NULL, 0 },
};

/* ------------------------------------------------------------ main */

int main(int argc, char **argv)
{
	tool_init(argc, argv);
	qc_gptqm_opts G = { .scheme = "w4a16", .sym = -1 };
	qc_gptq_opts_default(&G.go);
	const char *method = "gptq", *actorder = NULL, *clip = NULL, *act = "dynamic";
	int explicit_k = 0; /* options the K-quant grids do not take */
	double damp = 0.01;
	tool_qopts q = { 0 };
	int c;
	while ((c = getopt_long(argc, argv, TOOL_QOPTS_SHORT, longopts, NULL)) != -1) {
		switch (c) {
		case OPT_SCHEME: G.scheme = optarg; break;
		case OPT_GROUP:
			G.group = tool_parse_i64(usage, "--group-size", optarg, -1, 1 << 20);
			if (G.group != -1 && G.group != 32 && G.group != 64 && G.group != 128)
				tool_usage_error(usage, "--group-size is 32, 64, 128 or -1, not %s", optarg);
			explicit_k = 1;
			break;
		case OPT_SYM: G.sym = 1; explicit_k = 1; break;
		case OPT_ASYM: G.sym = 0; explicit_k = 1; break;
		case OPT_METHOD: method = optarg; break;
		case OPT_ACTORDER: actorder = optarg; break;
		case OPT_CLIP: clip = optarg; break;
		case OPT_DAMP: damp = tool_parse_double(usage, "--damp", optarg, 1e-6, 1.0); break;
		case OPT_ACT: act = optarg; break;
		case OPT_EXACT_ERRORS: G.go.exact_errors = 1; break;
		case OPT_SCALE_DTYPE:
			explicit_k = 1;
			if (strcmp(optarg, "f16") == 0)
				G.scale_dtype = QC_DT_F16;
			else if (strcmp(optarg, "model") != 0)
				tool_usage_error(usage, "--scale-dtype is model or f16, not '%s'", optarg);
			break;
		default: tool_qopt(&q, c, optarg, usage, help, argv);
		}
	}
	tool_qopts_finish(&q, usage, argc, argv);
	int kquant = qc_gptqm_ggml_scheme(G.scheme, &G.ggml_type, &G.ggml_mix) == 0;
	if (!kquant && strcmp(G.scheme, "w4a16") != 0 && strcmp(G.scheme, "w8a16") != 0 &&
	    strcmp(G.scheme, "w8a8") != 0)
		tool_usage_error(usage, "--scheme is w4a16, w8a16, w8a8, gguf-q4_k_m, gguf-q4_k, "
		                 "gguf-q5_k_m, gguf-q5_k or gguf-q6_k, not '%s'", G.scheme);
	if (kquant && (explicit_k || clip || (actorder && strcmp(actorder, "none") != 0) ||
	               strcmp(act, "dynamic") != 0))
		tool_usage_error(usage, "%s is ggml's grid: it takes no --group-size, --sym/--asym, "
		                 "--scale-dtype, --clip, --act or act-order (columns go in order)",
		                 G.scheme);
	if (!actorder)
		actorder = kquant ? "none" : "static";
	if (!clip)
		clip = "mse";
	if (strcmp(G.scheme, "w8a8") == 0 && G.group > 0)
		tool_usage_error(usage, "w8a8 weights have one scale per output channel (no --group-size)");
	if (strcmp(G.scheme, "w8a8") == 0 && G.sym == 0)
		tool_usage_error(usage, "w8a8 weights are symmetric (vLLM runs no zero points there)");
	if (strcmp(act, "dynamic") != 0 && strcmp(act, "static") != 0)
		tool_usage_error(usage, "--act is dynamic or static, not '%s'", act);
	G.act_static = strcmp(act, "static") == 0;
	if (G.act_static && strcmp(G.scheme, "w8a8") != 0)
		tool_usage_error(usage, "--act static is for w8a8 (w4a16 and w8a16 keep activations in 16 bits)");
	if (G.act_static && !q.calib)
		tool_usage_error(usage, "--act static needs a token set (--calib TOKENS)");
	if (qc_gptq_method_parse(method, &G.go.method) != 0)
		tool_usage_error(usage, "--method is gptq or rtn, not '%s'", method);
	if (qc_gptq_actorder_parse(actorder, &G.go.actorder) != 0)
		tool_usage_error(usage, "--actorder is static or none, not '%s'", actorder);
	if (strcmp(clip, "mse") == 0 || strcmp(clip, "mse-h") == 0) {
		qc_clip_opts_default(&G.go.clip, QC_CLIP_MSE);
		G.go.clip_hweight = strcmp(clip, "mse-h") == 0;
	} else if (strcmp(clip, "minmax") == 0) {
		qc_clip_opts_default(&G.go.clip, QC_CLIP_MINMAX);
	} else {
		tool_usage_error(usage, "--clip is mse, mse-h or minmax, not '%s'", clip);
	}
	if (G.go.clip_hweight && !q.calib)
		tool_usage_error(usage, "--clip mse-h weights by the Hessian: it needs --calib TOKENS");
	G.go.damp = damp;
	if (G.go.method == QC_GPTQ_METHOD_GPTQ && !q.calib)
		tool_usage_error(usage, "gptq needs a calibration token set (--calib TOKENS)");

	/* what a resumed run must share (the ignore patterns are in the
	 * command line's effect on the scheme, recorded by the driver too) */
	char opts[1024];
	int u = snprintf(opts, sizeof opts, "scheme=%s group=%lld sym=%d method=%s actorder=%s "
	                 "clip=%s damp=%.17g act=%s%s%s", G.scheme, (long long)G.group, G.sym,
	                 method, actorder, clip, G.go.damp, act,
	                 G.scale_dtype == QC_DT_F16 ? " scale_dtype=f16" : "",
	                 G.go.exact_errors ? " exact_errors=1" : "");
	for (int i = 0; i < q.n_ignore && u > 0 && (size_t)u < sizeof opts; i++)
		u += snprintf(opts + u, sizeof opts - (size_t)u, " ignore=%s", q.ignore[i]);
	qc_gptqm *state;
	qc_qmethod m;
	if (qc_gptqm_method(&state, &m, &G) != 0)
		return tool_fail(QC_ENOMEM);
	int st = tool_qrun(&q, opts, &m);
	qc_gptqm_free(state);
	return st;
}
