/*
 * qc_tasks.h - multiple-choice tasks scored by loglikelihood the way
 * lm-evaluation-harness (lm-eval) scores them, for qverify --tasks.
 *
 * A task file is JSON Lines, one question a line (blank lines skipped), in
 * one of two formats:
 *
 *   simple   {"context": str, "choices": [str, ...], "gold": k}
 *            optional "delimiter": str (default " "): each choice is scored
 *            as the continuation delimiter + choice after the context, the
 *            way lm-eval joins doc_to_text and doc_to_choice with its
 *            target_delimiter; "" scores the choices exactly as written
 *            (a context ending mid-word, choices with their own space).
 *   lm-eval  a line of lm-eval's --log_samples output (samples_*.jsonl):
 *            "arguments" lists the (context, continuation) requests, either
 *            [[ctx, cont], ...] or {"gen_args_0": {"arg_0": ctx, "arg_1":
 *            cont}, ...} (numbered in order); "target" is the gold index (an
 *            integer or a string of digits) or the gold choice's text. Each
 *            request keeps its own context (winogrande varies the context,
 *            not the continuation). The choice text is the continuation
 *            without one leading space (lm-eval's default delimiter).
 *   auto     lm-eval when the first line has "arguments", else simple.
 *
 * Gold must index a choice; every choice and continuation must be
 * non-empty; at least two choices. Anything else is QC_EFORMAT naming
 * "file:line" and the field.
 *
 * Scoring (lm-eval's TemplateLM.loglikelihood and _encode_pair, HF causal
 * models with their default add_bos_token false):
 *   - trailing whitespace of the context moves to the continuation;
 *   - whole = encode(context + continuation), ctx = encode(context),
 *     cont = whole[len(ctx):] (so a context ending mid-word scores the
 *     tokens the whole text is cut into after the context's token count);
 *   - an empty context scores encode(continuation) after the BOS token
 *     (lm-eval's prefix token; EOS when there is no BOS);
 *   - with add_bos, encoding adds the tokenizer's special tokens (BOS);
 *   - ll = sum over cont of log p(token | ctx + cont before it), natural
 *     log, with the model's FP32 logits and the normalizer in double;
 *   - acc: argmax ll == gold; acc_norm: argmax ll / len(choice) == gold,
 *     len in characters (Unicode code points, as Python's len(), bytes for
 *     ASCII); the first maximum wins ties, as numpy's argmax.
 * Sequences are not truncated: the decoder is sized to the longest one.
 * Contexts are evaluated once: the decoder keeps the tokens it holds and
 * rewinds only to the common prefix with the next request, so the choices
 * of a question (and questions sharing a few-shot prefix) reuse the cache.
 *
 * Aggregates (qc_mc_summary) follow lm-eval: mean, and its standard error
 * sqrt(p (1 - p) / (n - 1)) (sample standard deviation over sqrt(n); null
 * for n < 2). Against a base: difference, recovery acc / acc_base, and
 * flips, questions right in one model and wrong in the other, both ways.
 */
#ifndef QC_TASKS_H
#define QC_TASKS_H

#include <jansson.h>
#include <stdint.h>

#include "qc_decode.h"
#include "qc_tok.h"

typedef enum { QC_TASKFMT_AUTO = 0, QC_TASKFMT_SIMPLE, QC_TASKFMT_LMEVAL } qc_taskfmt;

/* 0, or QC_EINVAL for a name other than auto, simple, lm-eval. */
int qc_taskfmt_parse(const char *s, qc_taskfmt *f);

typedef struct qc_mc_req {
	char *ctx, *cont;     /* the request as scored (delimiter included) */
	int64_t norm_len;     /* acc_norm's divisor: the choice's length in characters */
} qc_mc_req;

typedef struct qc_mc_item {
	qc_mc_req *req;       /* [nchoice] */
	int nchoice;
	int gold;
	int64_t line;         /* 1-based line in the file */
} qc_mc_item;

typedef struct qc_mc_task {
	char *name;           /* the file's base name without .jsonl */
	char *path;
	qc_taskfmt fmt;       /* resolved (never AUTO) */
	qc_mc_item *items;
	int64_t n;
} qc_mc_task;

/* Read a task file (see above). On failure *t holds nothing. */
int qc_mc_load(const char *path, qc_taskfmt fmt, qc_mc_task *t);
void qc_mc_free(qc_mc_task *t);

/*
 * The token ids lm-eval scores for one request: ctx (at least one token)
 * and cont (at least one; QC_EFORMAT otherwise), appended to the arrays.
 * Any id at or above vocab is QC_EFORMAT naming it.
 */
int qc_mc_encode(qc_tok *tok, const char *ctx, const char *cont, int add_bos, int64_t vocab,
                 qc_ids *ctx_ids, qc_ids *cont_ids);

/* One model's answers: ll[i][k] of item i, choice k, and the predictions. */
typedef struct qc_mc_scores {
	int64_t n;
	double **ll;          /* [n][nchoice] */
	int *pred, *pred_norm;/* [n] */
	int64_t tokens;       /* tokens fed to the model (cache reuse makes it small) */
	int64_t requested;    /* tokens of every request laid end to end */
} qc_mc_scores;

/* progress after each item (may be NULL) */
typedef void (*qc_mc_progress)(void *ctx, int64_t done, int64_t total);

/* Score every item of t with d (rewound first). Errors name file:line. */
int qc_mc_score(qc_decoder *d, qc_tok *tok, const qc_mc_task *t, int add_bos,
                qc_mc_progress progress, void *pctx, qc_mc_scores *out);
void qc_mc_scores_free(qc_mc_scores *s);

/* The decoder capacity t needs: its longest request in tokens. */
int qc_mc_max_tokens(qc_tok *tok, const qc_mc_task *t, int add_bos, int64_t vocab,
                     int64_t *max);

/*
 * The task's report object (new reference; NULL on out of memory):
 *   {"task", "file", "format", "n", "acc", "acc_stderr", "acc_norm",
 *    "acc_norm_stderr"}
 * and, when base is not NULL (the same task scored by the base model):
 *   "base": {"acc", "acc_stderr", "acc_norm", "acc_norm_stderr"},
 *   "acc_diff", "acc_norm_diff" (artifact - base), "acc_recovery",
 *   "acc_norm_recovery" (artifact / base; null when the base scores 0),
 *   "flips": {"acc": F, "acc_norm": F} with F = {"right_to_wrong": n,
 *   "wrong_to_right": n, "right_to_wrong_rate", "wrong_to_right_rate",
 *   "rate"} (rates over n questions; rate = both ways together).
 */
json_t *qc_mc_summary(const qc_mc_task *t, const qc_mc_scores *s, const qc_mc_scores *base);

/* The pieces, for other right/wrong tasks (exact answers): the mean of
 * right[n] (0/1) and lm-eval's standard error (NaN for n < 2); the flips
 * object F above for right against base_right. */
void qc_mean_stderr(const int *right, int64_t n, double *mean, double *se);
json_t *qc_flips_json(const int *right, const int *base_right, int64_t n);

#endif
