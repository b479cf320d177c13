/*
 * qc_quality.h - what users see of a quantized model, measured the way the
 * release checks of quantized models report it: multiple-choice accuracy
 * (qc_tasks.h), greedy generations compared with the base model's
 * (qc_gen.h, qc_rouge.h) and exact-answer accuracy, each against the base
 * when there is one, with gates. qverify's --tasks, --prompts, --answers.
 *
 * Each model (the base first, then the artifact) gets one decoder sized to
 * the longest request of every file, runs every file, and is freed before
 * the next: at most one model's FP32 weights and KV cache exist at a time.
 *
 * Report (qc_quality_run's *report):
 *   {"decoder": {"artifact": D, "base": D} (D = {"int4_linears": Linears
 *               run on packed int4 codes, "weight_bytes": decoder-layer
 *               weight bytes read a step}, qc_decode.h),
 *    "tasks": [qc_mc_summary, ...],
 *    "generation": qc_gen_summary | null,
 *    "answers": {"file", "regex", "n", "acc", "acc_stderr", "tokens",
 *                "tokens_per_s", and with a base "base": {"acc",
 *                "acc_stderr"}, "acc_diff", "acc_recovery",
 *                "flips": {"acc": F}} | null,
 *    "gates": {"min_acc_recovery", "min_rouge1", "max_flip_rate"} (null
 *              when unset)}
 * Gates, checked per task with a base: acc_recovery (acc / base acc) below
 * min_acc_recovery (not checked when the base scores 0: null recovery); flips.acc.rate above max_flip_rate (both for every
 * multiple-choice task and the exact-answer task); generation rouge1 below
 * min_rouge1. Each failure is one line naming the task, appended to
 * failures.
 */
#ifndef QC_QUALITY_H
#define QC_QUALITY_H

#include <jansson.h>

#include "qc_gen.h"
#include "qc_model.h"
#include "qc_tasks.h"
#include "qc_tok.h"

typedef struct qc_quality_opts {
	const char *const *tasks;   /* multiple-choice files */
	int ntasks;
	qc_taskfmt task_format;
	int add_bos;                /* encode task requests with the tokenizer's BOS */
	const char *prompts;        /* prompt file or NULL */
	const char *answers;        /* exact-answer file or NULL */
	const char *answer_regex;   /* NULL: QC_ANSWER_REGEX */
	int64_t max_new_tokens;     /* generation length (> 0) */
	qc_chat chat;               /* prompts' chat template */
	double min_acc_recovery;    /* < 0: no gate; likewise below */
	double min_rouge1;
	double max_flip_rate;
	/* progress (may be NULL): stage ("tasks", "prompts", "answers"), the
	 * model ("base" or "artifact"), done/total items, tokens/s (0 when not
	 * generating) */
	void (*progress)(void *ctx, const char *stage, const char *model, int64_t done,
	                 int64_t total, double tok_s);
	void *progress_ctx;
} qc_quality_opts;

void qc_quality_opts_default(qc_quality_opts *o);

/* Does o ask for anything? */
int qc_quality_wanted(const qc_quality_opts *o);

/*
 * Run every file of o on m (and mb, the base, when not NULL) with tok.
 * tok_config (may be NULL) is tokenizer_config.json's text, for the chat
 * template's auto choice. lines (may be NULL) receives one object per
 * question and generation: multiple-choice {"file", "line", "gold",
 * "artifact_pred", "artifact_pred_norm", "artifact_ll": [per choice] and
 * the same with "base_"}; qc_gen_summary's lines; exact-answer lines
 * {"file", "id", "prompt", "target", "artifact", "artifact_answer",
 * "artifact_right" and with a base "base", "base_answer", "base_right"}. Errors: the
 * files' (QC_EFORMAT naming file:line), the decoder's; gates failing is
 * not an error.
 */
int qc_quality_run(qc_model *m, qc_model *mb, qc_tok *tok, const char *tok_config, size_t len,
                   const qc_quality_opts *o, json_t **report, json_t *failures, json_t *lines);

#endif
