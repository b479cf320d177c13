/*
 * qc_rouge.h - ROUGE-1 and ROUGE-L as Google's rouge-score package
 * computes them (rouge_scorer.RougeScorer(["rouge1", "rougeL"]) without a
 * stemmer), for comparing an artifact's generations with its base model's.
 *
 * Tokens (rouge-score's tokenize.py): the text lower-cased; every run of
 * characters other than a-z and 0-9 becomes one space; split on spaces;
 * empty tokens dropped. Lower-casing is ASCII, plus the two characters
 * whose Unicode lower case is an ASCII letter (U+212A KELVIN SIGN -> "k",
 * U+0130 -> "i" and a combining dot, which then counts as a separator);
 * every other non-ASCII character is a separator, as it is there.
 *
 * With target t (the base's text) and prediction p (the artifact's):
 *   ROUGE-1  hits = sum over distinct tokens w of min(count_t(w),
 *            count_p(w)); precision = hits / max(|p|, 1), recall =
 *            hits / max(|t|, 1)
 *   ROUGE-L  l = the length of a longest common subsequence of the token
 *            lists (dynamic programming, O(|t| |p|) time, O(|p|) memory);
 *            precision = l / |p|, recall = l / |t|; all 0 when either list
 *            is empty
 *   F1       2 P R / (P + R), 0 when P + R = 0
 */
#ifndef QC_ROUGE_H
#define QC_ROUGE_H

#include <stddef.h>

typedef struct qc_rouge_score {
	double precision, recall, f1;
} qc_rouge_score;

/* Scores of prediction against target (NUL-terminated texts). QC_ENOMEM
 * only. */
int qc_rouge(const char *target, const char *prediction, qc_rouge_score *r1,
             qc_rouge_score *rl);

/* The tokens of text joined by single spaces, malloc'd (tests and reports);
 * NULL on out of memory. */
char *qc_rouge_tokens(const char *text);

#endif
