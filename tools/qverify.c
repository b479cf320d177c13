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
	"               [--min-top1 A] [--tasks FILE]... [--task-format F] [--add-bos]\n"
	"               [--prompts FILE] [--answers FILE] [--max-new-tokens N] [--chat T]\n"
	"               [--answer-regex RE] [--outputs FILE] [--min-acc-recovery R]\n"
	"               [--min-rouge1 R] [--max-flip-rate F] [-o FILE] [--device cpu|cuda|auto]\n"
	"               [-j N] [--act-dtype f32|bf16] [-q] [-v]";

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
	"  quality (--tasks, --prompts, --answers)\n"
	"                        multiple-choice accuracy by loglikelihood as lm-eval\n"
	"                        scores it, greedy generations' ROUGE-1/ROUGE-L and\n"
	"                        exact match against the base, exact-answer accuracy;\n"
	"                        with --base: differences, recovery and flips\n"
	"\n"
	"Options:\n"
	"      --base DIR        the unquantized model the artifact was made from\n"
	"      --tokens FILE     token set to evaluate on (qcalib)\n"
	"      --max-ppl-ratio R fail when PPL(artifact) / PPL(base) exceeds R\n"
	"      --max-kl K        fail when the mean KL(base || artifact) exceeds K\n"
	"      --min-top1 A      fail when top-1 agreement is below A (0..1)\n"
	"                        (thresholds need --base and --tokens)\n"
	"      --tasks FILE      multiple-choice task file (JSON Lines; repeatable)\n"
	"      --task-format F   auto (default), simple or lm-eval (--log_samples lines)\n"
	"      --add-bos         encode task requests with the tokenizer's BOS\n"
	"      --prompts FILE    prompts to generate from (JSON Lines)\n"
	"      --answers FILE    exact-answer task (GSM8K style, JSON Lines)\n"
	"      --max-new-tokens N  tokens generated per prompt (default 128)\n"
	"      --chat T          chat template for --prompts: auto (default), none,\n"
	"                        llama3 or llama2\n"
	"      --answer-regex RE regex extracting the answer (default: GSM8K's\n"
	"                        \"#### (\\-?[0-9\\.\\,]+)\")\n"
	"      --outputs FILE    write the generations as JSON Lines (default: beside\n"
	"                        the -o report, REPORT.outputs.jsonl)\n"
	"      --min-acc-recovery R  fail a task whose accuracy / base accuracy is below R\n"
	"      --min-rouge1 R    fail when the prompts' mean ROUGE-1 F1 is below R\n"
	"      --max-flip-rate F fail a task whose answers flip at a rate above F\n"
	"                        (these gates need --base)\n"
	"  -o, --output FILE     write the report to FILE (default: standard output)\n"
	"      --device DEV      cpu (default), cuda, or auto (cuda when usable, else cpu)\n"
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
       OPT_VERSION, OPT_TASKS, OPT_TASKFMT, OPT_ADDBOS, OPT_PROMPTS, OPT_ANSWERS, OPT_MAXNEW,
       OPT_CHAT, OPT_REGEX, OPT_OUTPUTS, OPT_RECOVERY, OPT_ROUGE, OPT_FLIP };

#define MAX_TASK_FILES 64

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

/* ---- quality progress: one qc_progress per stage and model ---- */
typedef struct {
	qc_progress p;
	char label[48];
	int active;
} qprog;

static void on_quality(void *ctx, const char *stage, const char *model, int64_t done,
                       int64_t total, double tok_s)
{
	qprog *g = ctx;
	char label[48], note[48];
	snprintf(label, sizeof label, "%s %s", stage, model);
	if (!g->active || strcmp(g->label, label) != 0) {
		if (g->active)
			qc_progress_end(&g->p);
		snprintf(g->label, sizeof g->label, "%s", label);
		qc_progress_begin(&g->p, label, total);
		g->active = 1;
	}
	if (tok_s > 0)
		snprintf(note, sizeof note, "%.1f tok/s", tok_s);
	else
		snprintf(note, sizeof note, "items");
	qc_progress_update(&g->p, done, note);
}

/* the human summary on stderr: failures as errors, the rest as information */
static void summary(const json_t *rep)
{
	char *text = qc_verify_summary(rep);
	if (!text) {
		tool_err("out of memory for the summary");
		return;
	}
	for (char *l = text, *e; *l; l = e + 1) {
		e = strchr(l, '\n');
		*e = 0;
		qc_log(strncmp(l, "FAIL: ", 6) == 0 ? QC_LOG_ERROR : QC_LOG_INFO, "%s", l);
	}
	free(text);
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
		{ "tasks", required_argument, NULL, OPT_TASKS },
		{ "task-format", required_argument, NULL, OPT_TASKFMT },
		{ "add-bos", no_argument, NULL, OPT_ADDBOS },
		{ "prompts", required_argument, NULL, OPT_PROMPTS },
		{ "answers", required_argument, NULL, OPT_ANSWERS },
		{ "max-new-tokens", required_argument, NULL, OPT_MAXNEW },
		{ "chat", required_argument, NULL, OPT_CHAT },
		{ "answer-regex", required_argument, NULL, OPT_REGEX },
		{ "outputs", required_argument, NULL, OPT_OUTPUTS },
		{ "min-acc-recovery", required_argument, NULL, OPT_RECOVERY },
		{ "min-rouge1", required_argument, NULL, OPT_ROUGE },
		{ "max-flip-rate", required_argument, NULL, OPT_FLIP },
		{ "quiet", no_argument, NULL, 'q' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, OPT_HELP },
		{ "version", no_argument, NULL, OPT_VERSION },
		{ NULL, 0, NULL, 0 },
	};
	qc_verify_opts o;
	qc_verify_opts_default(&o);
	const char *out = NULL, *outputs = NULL;
	const char *tasks[MAX_TASK_FILES];
	qc_quality_opts *qo = &o.quality;
	qo->tasks = tasks;
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
				tool_usage_error(usage, "unknown device '%s' (use cpu, cuda or auto)", optarg);
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
		case OPT_TASKS:
			if (qo->ntasks == MAX_TASK_FILES)
				tool_usage_error(usage, "more than %d --tasks files", MAX_TASK_FILES);
			tasks[qo->ntasks++] = optarg;
			break;
		case OPT_TASKFMT:
			if (qc_taskfmt_parse(optarg, &qo->task_format))
				tool_usage_error(usage, "invalid --task-format '%s' (use auto, simple or lm-eval)", optarg);
			break;
		case OPT_ADDBOS: qo->add_bos = 1; break;
		case OPT_PROMPTS: qo->prompts = optarg; break;
		case OPT_ANSWERS: qo->answers = optarg; break;
		case OPT_MAXNEW: qo->max_new_tokens = tool_parse_i64(usage, "--max-new-tokens", optarg, 1, 1 << 20); break;
		case OPT_CHAT:
			if (qc_chat_parse(optarg, &qo->chat))
				tool_usage_error(usage, "invalid --chat '%s' (use auto, none, llama3 or llama2)", optarg);
			break;
		case OPT_REGEX: qo->answer_regex = optarg; break;
		case OPT_OUTPUTS: outputs = optarg; break;
		case OPT_RECOVERY: qo->min_acc_recovery = tool_parse_double(usage, "--min-acc-recovery", optarg, 0, 1e300); break;
		case OPT_ROUGE: qo->min_rouge1 = tool_parse_double(usage, "--min-rouge1", optarg, 0, 1); break;
		case OPT_FLIP: qo->max_flip_rate = tool_parse_double(usage, "--max-flip-rate", optarg, 0, 1); break;
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
	if ((qo->min_acc_recovery >= 0 || qo->min_rouge1 >= 0 || qo->max_flip_rate >= 0) && !o.base)
		tool_usage_error(usage, "--min-acc-recovery, --min-rouge1 and --max-flip-rate need --base");
	if (qo->min_rouge1 >= 0 && !qo->prompts)
		tool_usage_error(usage, "--min-rouge1 needs --prompts");
	if ((qo->min_acc_recovery >= 0 || qo->max_flip_rate >= 0) && !qo->ntasks && !qo->answers)
		tool_usage_error(usage, "--min-acc-recovery and --max-flip-rate need --tasks or --answers");
	qc_log_set_level(level);
	const char *artifact = argv[optind];
	/* the generations go beside the report unless --outputs says where */
	char *outputs_own = NULL;
	if (!outputs && out && strcmp(out, "-") != 0 && (qo->prompts || qo->answers)) {
		size_t n = strlen(out);
		if (n > 5 && strcmp(out + n - 5, ".json") == 0)
			n -= 5;
		if (!(outputs_own = malloc(n + 16)))
			return tool_fail(qc_seterr(QC_ENOMEM, "out of memory"));
		snprintf(outputs_own, n + 16, "%.*s.outputs.jsonl", (int)n, out);
		outputs = outputs_own;
	}
	json_t *lines = outputs ? json_array() : NULL;
	o.outputs = lines;

	qk_ctx *kc;
	int rc = qk_ctx_new(&kc, dev, threads);
	if (rc)
		return tool_fail(rc);
	o.kc = kc;
	prog g = { 0 };
	o.progress = on_progress;
	o.progress_ctx = &g;
	qprog qg = { 0 };
	qo->progress = on_quality;
	qo->progress_ctx = &qg;
	json_t *rep = NULL;
	rc = qc_verify(artifact, &o, &rep);
	if (g.active)
		qc_progress_end(&g.p);
	if (qg.active)
		qc_progress_end(&qg.p);
	qk_ctx_free(kc);
	if (!rep) {
		json_decref(lines);
		free(outputs_own);
		return tool_fail(rc);
	}
	int lrc = 0;
	if (lines) {
		/* one JSON object a line, written atomically */
		size_t i, cap = 0, len = 0;
		json_t *l;
		char *all = NULL;
		json_array_foreach(lines, i, l) {
			char *t = json_dumps(l, JSON_COMPACT | JSON_ENSURE_ASCII);
			size_t n = t ? strlen(t) : 0;
			char *na = t && len + n + 2 > cap ? realloc(all, cap = 2 * (len + n + 2)) : all;
			if (!t || !na) {
				free(t);
				lrc = qc_seterr(QC_ENOMEM, "out of memory");
				break;
			}
			all = na;
			memcpy(all + len, t, n);
			all[len + n] = '\n';
			len += n + 1;
			free(t);
		}
		if (!lrc)
			lrc = qc_write_file_atomic(outputs, all ? all : "", len);
		free(all);
		json_object_set_new(rep, "outputs", json_string(outputs));
	}
	json_decref(lines);
	free(outputs_own);
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
	if (lrc)
		return tool_fail(lrc);
	if (tool_close_stdout())
		return 2;
	return qc_exit_status(rc);
}
