/* qsynth - write a synthetic Llama-architecture checkpoint (see man/qsynth.1). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qc_ckpt.h"
#include "qc_config.h"
#include "qc_corpus.h"
#include "qc_io.h"
#include "qc_json.h"
#include "qc_synth.h"
#include "qc_tok.h"
#include "tool.h"

static const char usage[] =
	"qsynth [--preset NAME] [--layers N] [SHAPE OPTIONS] [--seed S] [--dtype bf16|f16|f32]\n"
	"              [--tokenizer DIR] [--force] [-q|-v] -o DIR|-";

static void help(void)
{
	printf("usage: %s\n\n", usage);
	printf(
	"Write a Llama, Gemma, Gemma 2 or Qwen2 checkpoint with the statistics of a trained\n"
	"model\n"
	"(heavy-tailed weights, outlier input channels) for tests and benchmarks.\n\n"
	"  --preset NAME         tiny (default), llama-3.2-1b, llama-3.1-8b, llama-3.1-70b,\n"
	"                        llama-3.1-405b, llama-2-7b, llama-2-13b, vicuna-7b,\n"
	"                        vicuna-13b, gemma-2b, gemma-7b, gemma-2-2b, gemma-2-9b,\n"
	"                        gemma-2-27b, qwen2-0.5b, qwen2-7b: the real shapes of those\n"
	"                        models; gemma2-tiny: Gemma 2 at tiny's size (16-token window)\n"
	"  --layers N            keep N decoder layers (the first N of the full model)\n"
	"  --hidden N            hidden size\n"
	"  --intermediate N      MLP intermediate size\n"
	"  --heads N             attention heads\n"
	"  --kv-heads N          key/value heads (grouped-query attention)\n"
	"  --head-dim N          per-head size (default hidden/heads; Gemma keeps the preset's)\n"
	"  --vocab N             vocabulary size\n"
	"  --tie, --no-tie       share the embedding with lm_head, or not\n"
	"  --rope-scaling TYPE   llama3 or none\n"
	"  --dtype T             bf16 (default), f16 or f32\n"
	"  --seed S              random seed (default 0); same seed, same bytes\n"
	"  --outliers N          outlier input channels (default hidden/256, at least 2)\n"
	"  --outlier-range LO:HI gain multiples of the outlier channels (default 20:100)\n"
	"  --tokenizer DIR       copy tokenizer files from DIR instead of building a small\n"
	"                        byte-level BPE tokenizer of the model's vocabulary size\n"
	"  --threads N           threads for generating values (default: all CPUs)\n"
	"  -o, --output DIR|-    write a directory, or a tar stream to stdout with '-'\n"
	"  -f, --force           replace an existing output directory\n"
	"  -q, --quiet           no progress\n"
	"  -v, --verbose         more detail\n"
	"  -h, --help            this help\n"
	"  -V, --version         version\n");
	exit(tool_close_stdout());
}

enum {
	OPT_PRESET = 256, OPT_LAYERS, OPT_HIDDEN, OPT_INTER, OPT_HEADS, OPT_KV, OPT_HEAD_DIM,
	OPT_VOCAB, OPT_TIE, OPT_NO_TIE, OPT_ROPE, OPT_DTYPE, OPT_SEED, OPT_OUTLIERS,
	OPT_OUTLIER_RANGE, OPT_TOKENIZER, OPT_THREADS,
};

static const struct option longopts[] = {
	{ "preset", required_argument, NULL, OPT_PRESET },
	{ "layers", required_argument, NULL, OPT_LAYERS },
	{ "hidden", required_argument, NULL, OPT_HIDDEN },
	{ "intermediate", required_argument, NULL, OPT_INTER },
	{ "heads", required_argument, NULL, OPT_HEADS },
	{ "kv-heads", required_argument, NULL, OPT_KV },
	{ "head-dim", required_argument, NULL, OPT_HEAD_DIM },
	{ "vocab", required_argument, NULL, OPT_VOCAB },
	{ "tie", no_argument, NULL, OPT_TIE },
	{ "no-tie", no_argument, NULL, OPT_NO_TIE },
	{ "rope-scaling", required_argument, NULL, OPT_ROPE },
	{ "dtype", required_argument, NULL, OPT_DTYPE },
	{ "seed", required_argument, NULL, OPT_SEED },
	{ "outliers", required_argument, NULL, OPT_OUTLIERS },
	{ "outlier-range", required_argument, NULL, OPT_OUTLIER_RANGE },
	{ "tokenizer", required_argument, NULL, OPT_TOKENIZER },
	{ "threads", required_argument, NULL, OPT_THREADS },
	{ "output", required_argument, NULL, 'o' },
	{ "force", no_argument, NULL, 'f' },
	{ "quiet", no_argument, NULL, 'q' },
	{ "verbose", no_argument, NULL, 'v' },
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, 'V' },
	{ NULL, 0, NULL, 0 },
};

/* Tokenizer files copied by --tokenizer when present in DIR. */
static const char *const tokenizer_files[] = {
	"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
	"added_tokens.json", NULL,
};

static int add_tokenizer(qc_ckpt_writer *w, const qc_tok_built *b, const char *dir)
{
	if (!dir) {
		int rc = qc_ckw_add_file(w, "tokenizer.json", b->tokenizer_json, b->tokenizer_len);
		if (rc == 0)
			rc = qc_ckw_add_file(w, "tokenizer_config.json", b->config_json, b->config_len);
		return rc;
	}
	/* the tokenizer itself is tokenizer.json or, for SentencePiece models
	 * published without one (Vicuna v1.5), tokenizer.model; the rest are
	 * copied when present */
	int tokenizer = 0;
	for (int i = 0; tokenizer_files[i]; i++) {
		char *p = qc_path_join(dir, tokenizer_files[i]);
		char *data = NULL;
		size_t len = 0;
		if (!p)
			return qc_seterr(QC_ENOMEM, "out of memory");
		if (access(p, F_OK) != 0) {
			free(p);
			continue;
		}
		int rc = qc_read_file(p, (size_t)1 << 30, &data, &len);
		free(p);
		if (rc)
			return rc;
		rc = qc_ckw_add_file(w, tokenizer_files[i], data, len);
		free(data);
		if (rc)
			return rc;
		tokenizer += strcmp(tokenizer_files[i], "tokenizer.json") == 0 ||
		             strcmp(tokenizer_files[i], "tokenizer.model") == 0;
	}
	return tokenizer ? 0 : qc_seterr(QC_EINVAL, "no tokenizer.json or tokenizer.model in '%s'", dir);
}

static int add_generation_config(qc_ckpt_writer *w, const qc_config *cfg)
{
	json_t *g = json_object();
	if (!g)
		return qc_seterr(QC_ENOMEM, "out of memory");
	json_object_set_new(g, "_from_model_config", json_true());
	json_object_set_new(g, "bos_token_id", json_integer(cfg->bos_token_id));
	if (cfg->n_eos == 1) {
		json_object_set_new(g, "eos_token_id", json_integer(cfg->eos_token_ids[0]));
	} else {
		json_t *a = json_array();
		for (int i = 0; i < cfg->n_eos; i++)
			json_array_append_new(a, json_integer(cfg->eos_token_ids[i]));
		json_object_set_new(g, "eos_token_id", a);
	}
	json_object_set_new(g, "transformers_version", json_string("4.45.0"));
	char *t;
	size_t n;
	int rc = qc_json_dump(g, &t, &n);
	json_decref(g);
	if (rc)
		return rc;
	rc = qc_ckw_add_file(w, "generation_config.json", t, n);
	free(t);
	return rc;
}

static void progress(void *ctx, int done, int total)
{
	char note[32];
	snprintf(note, sizeof note, "layer %d", done - 1);
	qc_progress_update(ctx, done, note);
	(void)total;
}

int main(int argc, char **argv)
{
	tool_init(argc, argv);
	const char *preset = "tiny", *out = NULL, *tokdir = NULL, *rope = NULL;
	int64_t layers = -1, hidden = -1, inter = -1, heads = -1, kv = -1, head_dim = -1, vocab = -1;
	int tie = -1, force = 0;
	qc_synth_opts so;
	qc_synth_opts_default(&so);
	int c;
	while ((c = getopt_long(argc, argv, "o:fqvhV", longopts, NULL)) != -1) {
		switch (c) {
		case OPT_PRESET: preset = optarg; break;
		case OPT_LAYERS: layers = tool_parse_i64(usage, "--layers", optarg, 1, 1000); break;
		case OPT_HIDDEN: hidden = tool_parse_i64(usage, "--hidden", optarg, 1, 1 << 20); break;
		case OPT_INTER: inter = tool_parse_i64(usage, "--intermediate", optarg, 1, 1 << 22); break;
		case OPT_HEADS: heads = tool_parse_i64(usage, "--heads", optarg, 1, 4096); break;
		case OPT_KV: kv = tool_parse_i64(usage, "--kv-heads", optarg, 1, 4096); break;
		case OPT_HEAD_DIM: head_dim = tool_parse_i64(usage, "--head-dim", optarg, 2, 4096); break;
		case OPT_VOCAB: vocab = tool_parse_i64(usage, "--vocab", optarg, 259, 1 << 24); break;
		case OPT_TIE: tie = 1; break;
		case OPT_NO_TIE: tie = 0; break;
		case OPT_ROPE: rope = optarg; break;
		case OPT_DTYPE:
			if (strcmp(optarg, "bf16") == 0) so.dtype = QC_DT_BF16;
			else if (strcmp(optarg, "f16") == 0) so.dtype = QC_DT_F16;
			else if (strcmp(optarg, "f32") == 0) so.dtype = QC_DT_F32;
			else tool_usage_error(usage, "unknown dtype '%s' (bf16, f16, f32)", optarg);
			break;
		case OPT_SEED:
			so.seed = (uint64_t)tool_parse_i64(usage, "--seed", optarg, 0, INT64_MAX);
			break;
		case OPT_OUTLIERS:
			so.outlier_channels = (int)tool_parse_i64(usage, "--outliers", optarg, 0, 1 << 20);
			break;
		case OPT_OUTLIER_RANGE: {
			char *colon = strchr(optarg, ':');
			if (!colon)
				tool_usage_error(usage, "--outlier-range wants LO:HI, not '%s'", optarg);
			*colon = 0;
			so.outlier_min = tool_parse_double(usage, "--outlier-range", optarg, 1.0, 1e4);
			so.outlier_max = tool_parse_double(usage, "--outlier-range", colon + 1, 1.0, 1e4);
			*colon = ':';
			if (so.outlier_max < so.outlier_min)
				tool_usage_error(usage, "--outlier-range: HI must not be below LO");
			break;
		}
		case OPT_TOKENIZER: tokdir = optarg; break;
		case OPT_THREADS: so.threads = (int)tool_parse_i64(usage, "--threads", optarg, 1, 1024); break;
		case 'o': out = optarg; break;
		case 'f': force = 1; break;
		case 'q': qc_log_set_level(QC_LOG_QUIET); break;
		case 'v': qc_log_set_level(qc_log_level() + 1); break;
		case 'h': help(); break;
		case 'V': tool_version(); break;
		default: tool_bad_option(usage, argv);
		}
	}
	if (optind < argc)
		tool_usage_error(usage, "unexpected argument '%s'", argv[optind]);
	if (!out)
		tool_usage_error(usage, "no output given (-o DIR, or -o - for a stream)");

	qc_config cfg;
	int rc = qc_synth_preset(preset, &cfg);
	if (rc)
		tool_usage_error(usage, "%s", qc_errmsg());
	if (layers > 0) cfg.num_hidden_layers = layers;
	if (hidden > 0) cfg.hidden_size = hidden;
	if (inter > 0) cfg.intermediate_size = inter;
	if (heads > 0) cfg.num_attention_heads = heads;
	if (kv > 0) cfg.num_key_value_heads = kv;
	if (head_dim > 0) cfg.head_dim = head_dim;
	else if ((hidden > 0 || heads > 0) && !cfg.norm_offset)
		cfg.head_dim = cfg.hidden_size / cfg.num_attention_heads;   /* Gemma keeps its own */
	if (vocab > 0)
		cfg.vocab_size = vocab;
	if (tie >= 0) cfg.tie_word_embeddings = tie;
	if (rope) {
		if (strcmp(rope, "llama3") == 0) cfg.rope_type = QC_ROPE_LLAMA3;
		else if (strcmp(rope, "none") == 0) cfg.rope_type = QC_ROPE_DEFAULT;
		else tool_usage_error(usage, "unknown rope scaling '%s' (llama3, none)", rope);
	}
	/* a preset's own head_dim may differ from hidden / heads (Gemma); a
	 * changed hidden size or head count without --head-dim must divide */
	if (head_dim <= 0 && (hidden > 0 || heads > 0) && !cfg.norm_offset &&
	    cfg.head_dim * cfg.num_attention_heads != cfg.hidden_size)
		tool_usage_error(usage, "hidden size %lld is not a multiple of %lld heads (give --head-dim)",
		                 (long long)cfg.hidden_size, (long long)cfg.num_attention_heads);
	if (cfg.num_attention_heads % cfg.num_key_value_heads)
		tool_usage_error(usage, "%lld heads are not a multiple of %lld key/value heads",
		                 (long long)cfg.num_attention_heads, (long long)cfg.num_key_value_heads);
	if (cfg.head_dim % 2)
		tool_usage_error(usage, "head dimension %lld must be even for rotary embeddings",
		                 (long long)cfg.head_dim);
	cfg.torch_dtype = so.dtype;

	/* the tokenizer decides BOS/EOS ids: build it before config.json */
	qc_tok_built tb;
	memset(&tb, 0, sizeof tb);
	if (!tokdir) {
		qc_log(QC_LOG_DETAIL, "building a byte-level tokenizer with %lld ids",
		       (long long)cfg.vocab_size);
		if ((rc = qc_tok_build_bytelevel(cfg.vocab_size, qc_builtin_corpus,
		                                 qc_builtin_corpus_len, &tb)) != 0)
			return tool_fail(rc);
		cfg.bos_token_id = tb.bos_id;
		cfg.eos_token_ids[0] = tb.eos_id;
		cfg.n_eos = 1;
	}
	if ((rc = qc_config_build(&cfg)) != 0) {
		qc_tok_built_release(&tb);
		return tool_fail(rc);
	}

	qc_ckw_opts wo;
	memset(&wo, 0, sizeof wo);
	wo.n_shards = (int)cfg.num_hidden_layers;
	wo.force = force;
	wo.tool = "qsynth";
	wo.version = QC_VERSION;
	wo.argc = argc;
	wo.argv = tool_manifest_argv();
	qc_ckpt_writer *w = NULL;
	if ((rc = qc_ckw_open(&w, out, &wo)) != 0) {
		qc_tok_built_release(&tb);
		qc_config_free(&cfg);
		return tool_fail(rc);
	}
	char *cfg_json = NULL;
	size_t cfg_len = 0;
	rc = qc_config_dump(&cfg, &cfg_json, &cfg_len);
	if (rc == 0)
		rc = qc_ckw_add_file(w, "config.json", cfg_json, cfg_len);
	free(cfg_json);
	if (rc == 0)
		rc = add_generation_config(w, &cfg);
	if (rc == 0)
		rc = add_tokenizer(w, &tb, tokdir);
	qc_tok_built_release(&tb);

	qc_progress prog;
	qc_progress_begin(&prog, "layer", cfg.num_hidden_layers);
	if (rc == 0)
		rc = qc_synth_write(&cfg, &so, w, progress, &prog);
	qc_progress_end(&prog);
	if (rc) {
		qc_ckw_abort(w);
		qc_config_free(&cfg);
		return tool_fail(rc);
	}
	rc = qc_ckw_close(w);
	qc_config_free(&cfg);
	if (rc)
		return tool_fail(rc);
	qc_log(QC_LOG_DETAIL, "wrote %s", strcmp(out, "-") ? out : "<stdout>");
	return strcmp(out, "-") == 0 ? tool_close_stdout() : 0;
}
