/*
 * qc_gen.h - generation-based checks for qverify: prompt files and their
 * chat formatting, greedy outputs of a model, the similarity of an
 * artifact's outputs to its base model's (ROUGE, exact match, first
 * differing token), and exact-answer tasks (GSM8K style).
 *
 * Prompt files (--prompts) are JSON Lines, one prompt a line, blank lines
 * skipped: {"prompt": str} or {"messages": [{"role": str, "content":
 * str}, ...]}, optional "id" (string or integer; default the line number).
 * Exact-answer files (--answers) have {"prompt": str, "target": str} or
 * GSM8K's own {"question": str, "answer": str}: a question is asked as
 * "Question: <question>\nAnswer:" (lm-eval's gsm8k prompt) and an answer's
 * target is its text after the last "####", trimmed (lm-eval's
 * doc_to_target). Errors are QC_EFORMAT naming "file:line" and the field.
 *
 * Chat formatting (qc_chat):
 *   none    the prompt text as it is, encoded with the tokenizer's special
 *           tokens (BOS) added, as vLLM encodes a raw prompt; "messages"
 *           lines are refused;
 *   llama3  Meta Llama-3's template: BOS, then per message
 *           "<|start_header_id|>ROLE<|end_header_id|>\n\n" + trimmed
 *           content + "<|eot_id|>", then the assistant header (the
 *           generation prompt); "<|eot_id|>" also stops generation. (The
 *           Llama-3.1 template's default "Cutting Knowledge Date" system
 *           preamble is not added: pass such prompts preformatted.)
 *   llama2  Llama-2-chat's: per user turn "<s>[INST] " + trimmed content +
 *           " [/INST]", a system message folded into the first user turn as
 *           "<<SYS>>\n" + system + "\n<</SYS>>\n\n", an assistant turn as
 *           " " + trimmed content + " </s>";
 *   auto    llama3 when tokenizer_config's chat_template contains
 *           "<|start_header_id|>", llama2 when it contains "[INST]", else
 *           none.
 * A "prompt" line under llama3/llama2 is one user message. The formatted
 * text is encoded without adding specials (the template has them).
 *
 * Generation is greedy (qc_decode.h), up to max_new tokens, stopping at an
 * EOS id (config.json's eos_token_id list, the tokenizer's EOS, and
 * <|eot_id|> under llama3). Text is the decoded ids without special tokens,
 * each byte that is not valid UTF-8 (a generation may stop inside a
 * character) replaced by U+FFFD, as Python's errors="replace" does.
 */
#ifndef QC_GEN_H
#define QC_GEN_H

#include <jansson.h>
#include <stdint.h>

#include "qc_decode.h"
#include "qc_tok.h"

typedef enum { QC_CHAT_AUTO = 0, QC_CHAT_NONE, QC_CHAT_LLAMA3, QC_CHAT_LLAMA2 } qc_chat;

int qc_chat_parse(const char *s, qc_chat *c);       /* QC_EINVAL for other names */
const char *qc_chat_name(qc_chat c);
/* auto resolved from tokenizer_config.json's text (may be NULL) */
qc_chat qc_chat_resolve(qc_chat c, const char *tokenizer_config, size_t len);

typedef struct qc_prompt {
	char *id;
	char *text;         /* the prompt text (the last user message for "messages") */
	json_t *messages;   /* or NULL */
	char *target;       /* exact-answer files only */
	int64_t line;
} qc_prompt;

typedef struct qc_prompts {
	char *path;
	char *name;         /* base name without .jsonl */
	qc_prompt *p;
	int64_t n;
} qc_prompts;

/* Read a prompt file (answers = 0) or an exact-answer file (answers = 1). */
int qc_prompts_load(const char *path, int answers, qc_prompts *out);
void qc_prompts_free(qc_prompts *p);

/* The token ids of prompt p under chat (resolved, not AUTO) appended to ids;
 * QC_EINVAL for messages under none, QC_EFORMAT for ids outside vocab. */
int qc_prompt_encode(qc_tok *tok, qc_chat chat, const qc_prompt *p, int64_t vocab, qc_ids *ids);

/* Greedy outputs of one model for every prompt: ids[i] and text[i]. */
typedef struct qc_gen_out {
	int64_t n;
	qc_ids *ids;
	char **text;
	double seconds;     /* time spent generating */
	int64_t tokens;     /* tokens generated */
} qc_gen_out;

typedef void (*qc_gen_progress)(void *ctx, int64_t done, int64_t total, int64_t tokens,
                                double seconds);

/* stop: extra stop ids (e.g. <|eot_id|>) beside the model's EOS ids */
int qc_generate_all(qc_decoder *d, qc_tok *tok, qc_chat chat, const qc_prompts *ps,
                    int64_t max_new, qc_gen_progress progress, void *pctx, qc_gen_out *out);
void qc_gen_out_free(qc_gen_out *o);

/* The decoder capacity prompts need: the longest prompt plus max_new. */
int qc_prompts_max_tokens(qc_tok *tok, qc_chat chat, const qc_prompts *ps, int64_t vocab,
                          int64_t max_new, int64_t *cap);

/*
 * Similarity of the artifact's outputs a to the base's b (b may be NULL:
 * outputs only). Report object:
 *   {"file", "chat", "n", "max_new_tokens", "tokens", "tokens_per_s",
 *    and with b: "rouge1", "rougeL" (mean F1 over prompts), "exact_match"
 *    (rate of identical token sequences), "first_diff_mean" (mean position
 *    of the first differing token; the common length where one output is a
 *    prefix of the other, so identical outputs count their full length),
 *    "diverged" (prompts whose outputs differ), "base_tokens",
 *    "base_tokens_per_s"}.
 * When lines is not NULL, one JSON object per prompt is appended to it:
 *   {"file", "id", "prompt", "artifact", "artifact_tokens" and with b
 *    "base", "base_tokens", "rouge1", "rougeL", "exact_match", "first_diff"}.
 */
json_t *qc_gen_summary(const qc_prompts *ps, qc_chat chat, int64_t max_new,
                       const qc_gen_out *a, const qc_gen_out *b, json_t *lines);

/*
 * Exact answers (GSM8K style). qc_answer_extract: text is cut at the first
 * "Question:" (lm-eval gsm8k's stop string), then the PCRE2 regex's first
 * match gives the answer: its first capture group that matched, or the
 * whole match when it has no group; *answer is malloc'd, NULL when nothing
 * matches (a wrong answer). QC_EINVAL for a regex that does not compile.
 * qc_answer_equal: 1 when answer equals target after lm-eval gsm8k's
 * normalization of both: "," and "$" removed, the text up to the last
 * "#### " removed, one trailing "." removed, whitespace trimmed, ASCII
 * lower case.
 */
int qc_answer_extract(const char *regex, const char *text, char **answer);
int qc_answer_equal(const char *answer, const char *target);

/* The default regex: lm-eval gsm8k's strict-match "#### (\-?[0-9\.\,]+)". */
#define QC_ANSWER_REGEX "#### (\\-?[0-9\\.\\,]+)"

#endif
