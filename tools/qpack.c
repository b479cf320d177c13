/* qpack - turn a naive-quantized checkpoint into a release artifact:
 * compressed-tensors (pack-, int-, float-quantized), AutoGPTQ or AutoAWQ,
 * sharded, with the tokenizer, report, a quant card and a manifest (see
 * man/qpack.1). Everything is in libcommon (qc_pack): this file parses
 * options and maps results to exit statuses. */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qc_err.h"
#include "qc_gguf_pack.h"
#include "qc_log.h"
#include "qc_pack.h"
#include "tool.h"

static const char usage[] =
	"qpack [-f FORMAT] [--max-shard-size SIZE] [--threads N] [--force] [-q|-v]\n"
	"             -o OUT|- INPUT";

static const char help[] =
	"Pack a naive-quantized checkpoint (what qgptq, qawq and qfp8 write) into a\n"
	"release artifact that vLLM and HF transformers load: the weights in the\n"
	"format's layout, config.json's quantization_config as that format's own\n"
	"tools write it, shards with an index, the tokenizer files, the report, a\n"
	"quant_card.md, and quant_manifest.json with every file's and tensor's hash.\n"
	"INPUT is a directory, a tar stream file, or '-' for a stream on stdin.\n"
	"\n"
	"  -f, --format FORMAT   compressed-tensors (default): pack-quantized for\n"
	"                          weight-only int4/int8 (4.0/8.0 bits per weight plus\n"
	"                          scales), int-quantized for W8A8 int8,\n"
	"                          float-quantized for FP8 (8 bits per weight)\n"
	"                        gptq: AutoGPTQ qweight/qzeros/scales/g_idx, int4/int8\n"
	"                          weight-only, group or channel; asymmetric as gptq_v2\n"
	"                        awq: AutoAWQ GEMM, int4 weight-only, grouped\n"
	"                        gguf: one llama.cpp GGUF file (OUT is the file):\n"
	"                          int4 groups of 32 as Q4_0 (symmetric) or Q4_1, int8\n"
	"                          as Q8_0, bit for bit; needs --group-size 32\n"
	"                          --scale-dtype f16 at quantization; or the Q4_K/Q5_K/\n"
	"                          Q6_K blocks of qgptq --scheme gguf-* as they are\n"
	"                          (output Q6_K, as llama-quantize); Llama, byte-level\n"
	"                          BPE tokenizers (Llama-3 style)\n"
	"  -o, --output OUT|-    write directory OUT, or a tar stream to standard output\n"
	"      --max-shard-size SIZE\n"
	"                        tensor bytes per shard, e.g. 5GB (default), 500MB, 2GiB\n"
	"      --threads N       packing threads (default 2)\n"
	"      --force           replace OUT if it exists\n"
	"  -q, --quiet           print nothing but errors\n"
	"  -v, --verbose         report each layer and the result\n"
	"  -h, --help            this help\n"
	"  -V, --version         version\n"
	"\n"
	"What a format cannot express (FP8 or W8A8 as gptq, awq or gguf, 8-bit or\n"
	"per-channel awq, groups other than 32 for gguf, shapes or groups its loaders\n"
	"reject, F16-unrepresentable scales) is refused\n"
	"with a message naming the reason; nothing is written then.\n"
	"\n"
	"Exit status: 0 success, 2 usage or input error (including a format that cannot\n"
	"express the input).\n";

static void progress(void *ctx, int done, int total)
{
	qc_progress *p = ctx;
	if (done == 1 && p->total == 0)
		qc_progress_begin(p, "packing", total);
	char note[32];
	snprintf(note, sizeof note, "layer %d", done - 1);
	qc_progress_update(p, done, note);
}

int main(int argc, char **argv)
{
	enum { OPT_SHARD = 256, OPT_THREADS, OPT_FORCE };
	static const struct option longopts[] = {
		{ "format", required_argument, NULL, 'f' },
		{ "output", required_argument, NULL, 'o' },
		{ "max-shard-size", required_argument, NULL, OPT_SHARD },
		{ "threads", required_argument, NULL, OPT_THREADS },
		{ "force", no_argument, NULL, OPT_FORCE },
		{ "quiet", no_argument, NULL, 'q' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 },
	};
	qc_pack_opts o;
	memset(&o, 0, sizeof o);
	o.format = QC_PACK_CT;
	int level = QC_LOG_INFO, c, gguf = 0;
	tool_init(argc, argv);
	while ((c = getopt_long(argc, argv, ":f:o:qvhV", longopts, NULL)) != -1) {
		switch (c) {
		case 'f':
			gguf = strcmp(optarg, "gguf") == 0;
			if (!gguf && qc_pack_format_parse(optarg, &o.format))
				tool_usage_error(usage, "%s", qc_errmsg());
			break;
		case 'o': o.output = optarg; break;
		case OPT_SHARD:
			o.max_shard_size = tool_parse_size(usage, "--max-shard-size", optarg);
			if (o.max_shard_size == 0)
				tool_usage_error(usage, "--max-shard-size must be positive");
			break;
		case OPT_THREADS:
			o.threads = (int)tool_parse_i64(usage, "--threads", optarg, 1, 16);
			break;
		case OPT_FORCE: o.force = 1; break;
		case 'q': level = QC_LOG_ERROR; break;
		case 'v': level = level < QC_LOG_DEBUG ? level + 1 : level; break;
		case 'h':
			printf("usage: %s\n\n%s", usage, help);
			return tool_close_stdout();
		case 'V': tool_version();
		case ':': tool_usage_error(usage, "option '%s' needs an argument", argv[optind - 1]);
		default: tool_bad_option(usage, argv);
		}
	}
	qc_log_set_level(level);
	if (optind == argc)
		tool_usage_error(usage, "no input checkpoint given");
	if (optind + 1 != argc)
		tool_usage_error(usage, "more than one input checkpoint given");
	if (!o.output)
		tool_usage_error(usage, "no output given: use -o OUT or -o - for a stream");
	o.input = argv[optind];
	if (strcmp(o.input, "-") == 0 && isatty(STDIN_FILENO)) {
		tool_err("refusing to read a checkpoint stream from a terminal");
		return 2;
	}
	if (gguf) {
		if (o.max_shard_size)
			tool_usage_error(usage, "a GGUF file is one file: --max-shard-size does not apply");
		qc_gguf_pack_opts g = { .input = o.input, .output = o.output, .force = o.force,
			                    .progress = progress };
		qc_progress gpr;
		memset(&gpr, 0, sizeof gpr);
		g.progress_ctx = &gpr;
		qc_gguf_pack_result gres;
		int grc = qc_gguf_pack(&g, &gres);
		if (gpr.total)
			qc_progress_end(&gpr);
		if (grc)
			return tool_fail(grc);
		if (strcmp(o.output, "-") == 0 && tool_close_stdout())
			return 2;
		qc_log(QC_LOG_DETAIL, "wrote '%s': GGUF, %s, %" PRId64 " quantized Linears, %" PRId64
		       " tensors, %" PRIu64 " tensor bytes", strcmp(o.output, "-") == 0 ? "<stdout>"
		       : o.output, gres.type, gres.linears, gres.tensors, gres.bytes);
		return 0;
	}
	o.tool = "qpack";
	o.version = QC_VERSION;
	o.argc = tool_argc();
	o.argv = tool_manifest_argv();
	qc_progress pr;
	memset(&pr, 0, sizeof pr);
	o.progress = progress;
	o.progress_ctx = &pr;
	qc_pack_result res;
	int rc = qc_pack_checkpoint(&o, &res);
	if (pr.total)
		qc_progress_end(&pr);
	if (rc)
		return tool_fail(rc);
	if (strcmp(o.output, "-") == 0 && tool_close_stdout())
		return 2;
	qc_log(QC_LOG_DETAIL, "wrote '%s': %s, %" PRId64 " quantized Linears, %d shard%s, %" PRIu64
	       " tensor bytes", strcmp(o.output, "-") == 0 ? "<stdout>" : o.output, res.format,
	       res.linears, res.n_shards, res.n_shards == 1 ? "" : "s", res.tensor_bytes);
	return 0;
}
