/* qc_rouge.c - ROUGE-1 and ROUGE-L as rouge-score computes them (see
 * qc_rouge.h). */
#include "qc_rouge.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qc_err.h"

typedef struct {
	char *buf;          /* the normalized text, tokens NUL-separated */
	char **tok;
	size_t n;
} toks;

static void toks_free(toks *t)
{
	free(t->buf);
	free(t->tok);
}

static int is_an(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static int tokenize(const char *s, toks *t)
{
	size_t len = strlen(s);
	memset(t, 0, sizeof *t);
	t->buf = malloc(len + 1);
	t->tok = malloc((len / 2 + 1) * sizeof *t->tok);
	if (!t->buf || !t->tok) {
		toks_free(t);
		return qc_seterr(QC_ENOMEM, "out of memory");
	}
	/* lower-case into buf, separators as NUL */
	size_t o = 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c >= 'A' && c <= 'Z') {
			c = (unsigned char)(c - 'A' + 'a');
		} else if (c == 0xE2 && (unsigned char)s[i + 1] == 0x84 && (unsigned char)s[i + 2] == 0xAA) {
			c = 'k';          /* U+212A lower-cases to "k" */
			i += 2;
		} else if (c == 0xC4 && (unsigned char)s[i + 1] == 0xB0) {
			c = 'i';          /* U+0130 lower-cases to "i" + U+0307 */
			t->buf[o++] = (char)c;
			c = 0;
			i += 1;
		}
		t->buf[o++] = is_an(c) ? (char)c : 0;
	}
	t->buf[o] = 0;
	for (size_t i = 0; i < o; i++)
		if (t->buf[i] && (i == 0 || !t->buf[i - 1]))
			t->tok[t->n++] = t->buf + i;
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static double f1(double p, double r)
{
	return p + r > 0 ? 2 * p * r / (p + r) : 0.0;
}

int qc_rouge(const char *target, const char *prediction, qc_rouge_score *r1, qc_rouge_score *rl)
{
	toks t, p;
	QC_TRY(tokenize(target, &t));
	int rc = tokenize(prediction, &p);
	if (rc) {
		toks_free(&t);
		return rc;
	}
	size_t nt = t.n, np = p.n;
	/* LCS by rows of the table (before sorting for ROUGE-1) */
	size_t *prev = calloc(np + 1, sizeof *prev), *cur = calloc(np + 1, sizeof *cur);
	if (!prev || !cur) {
		rc = qc_seterr(QC_ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 1; i <= nt; i++) {
		for (size_t j = 1; j <= np; j++) {
			if (strcmp(t.tok[i - 1], p.tok[j - 1]) == 0)
				cur[j] = prev[j - 1] + 1;
			else
				cur[j] = prev[j] > cur[j - 1] ? prev[j] : cur[j - 1];
		}
		size_t *sw = prev;
		prev = cur;
		cur = sw;
	}
	size_t lcs = prev[np];
	if (nt && np) {
		rl->precision = (double)lcs / (double)np;
		rl->recall = (double)lcs / (double)nt;
	} else {
		rl->precision = rl->recall = 0;
	}
	rl->f1 = f1(rl->precision, rl->recall);
	/* unigram hits: merge the sorted lists, each match used once */
	qsort(t.tok, nt, sizeof *t.tok, cmp_str);
	qsort(p.tok, np, sizeof *p.tok, cmp_str);
	size_t hits = 0;
	for (size_t i = 0, j = 0; i < nt && j < np;) {
		int c = strcmp(t.tok[i], p.tok[j]);
		if (c == 0) {
			hits++;
			i++;
			j++;
		} else if (c < 0) {
			i++;
		} else {
			j++;
		}
	}
	r1->precision = (double)hits / (double)(np ? np : 1);
	r1->recall = (double)hits / (double)(nt ? nt : 1);
	r1->f1 = f1(r1->precision, r1->recall);
out:
	free(prev);
	free(cur);
	toks_free(&t);
	toks_free(&p);
	return rc;
}

char *qc_rouge_tokens(const char *text)
{
	toks t;
	if (tokenize(text, &t))
		return NULL;
	size_t len = 0;
	for (size_t i = 0; i < t.n; i++)
		len += strlen(t.tok[i]) + 1;
	char *s = malloc(len + 1), *q = s;
	if (s) {
		*q = 0;
		for (size_t i = 0; i < t.n; i++)
			q += sprintf(q, "%s%s", i ? " " : "", t.tok[i]);
	}
	toks_free(&t);
	return s;
}
