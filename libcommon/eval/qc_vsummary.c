/*
 * qc_vsummary.c - qverify's report as lines for people (qc_verify.h,
 * qc_verify_summary): integrity, numerics, function, the quality table and
 * the failures, each a line.
 */
#include "qc_verify.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

/* One line of the summary. */
static void line(FILE *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void line(FILE *out, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vfprintf(out, fmt, ap);
	va_end(ap);
	fputc('\n', out);
}

static double jnum(const json_t *o, const char *k)
{
	return json_number_value(json_object_get(o, k));
}

static void opt_num(char *buf, size_t n, const json_t *o, const char *k, const char *fmt)
{
	const json_t *v = json_object_get(o, k);
	if (json_is_number(v))
		snprintf(buf, n, fmt, json_number_value(v));
	else
		snprintf(buf, n, "-");
}

/* one table row per right/wrong task */
static void task_row(FILE *out, const char *kind, const json_t *t)
{
	const json_t *b = json_object_get(t, "base");
	const json_t *f = json_object_get(json_object_get(t, "flips"), "acc");
	char acc[32], norm[32], bacc[32], diff[32], rec[32], flips[48];
	opt_num(acc, sizeof acc, t, "acc", "%.4f");
	opt_num(norm, sizeof norm, t, "acc_norm", "%.4f");
	opt_num(bacc, sizeof bacc, b, "acc", "%.4f");
	opt_num(diff, sizeof diff, t, "acc_diff", "%+.4f");
	opt_num(rec, sizeof rec, t, "acc_recovery", "%.4f");
	if (f)
		snprintf(flips, sizeof flips, "-%lld/+%lld",
		         (long long)json_integer_value(json_object_get(f, "right_to_wrong")),
		         (long long)json_integer_value(json_object_get(f, "wrong_to_right")));
	else
		snprintf(flips, sizeof flips, "-");
	line(out, "  %-8s %-24.24s %6lld %8s %8s %8s %8s %8s %10s", kind,
	       json_string_value(json_object_get(t, "task")),
	       (long long)json_integer_value(json_object_get(t, "n")), acc, norm, bacc, diff, rec, flips);
}

/* the quality results as a table */
static void quality_table(FILE *out, const json_t *q)
{
	const json_t *tasks = json_object_get(q, "tasks"), *ans = json_object_get(q, "answers");
	const json_t *gen = json_object_get(q, "generation");
	if (json_array_size(tasks) || json_is_object(ans))
		line(out, "  %-8s %-24s %6s %8s %8s %8s %8s %8s %10s", "kind", "task", "n",
		       "acc", "acc_norm", "base", "diff", "recovery", "flips -/+");
	size_t i;
	const json_t *t;
	json_array_foreach(tasks, i, t)
		task_row(out, "choice", t);
	if (json_is_object(ans))
		task_row(out, "answer", ans);
	if (json_is_object(gen)) {
		char r1[32], rl[32], em[32], fd[32], ts[32];
		opt_num(r1, sizeof r1, gen, "rouge1", "%.4f");
		opt_num(rl, sizeof rl, gen, "rougeL", "%.4f");
		opt_num(em, sizeof em, gen, "exact_match", "%.4f");
		opt_num(fd, sizeof fd, gen, "first_diff_mean", "%.1f");
		opt_num(ts, sizeof ts, gen, "tokens_per_s", "%.1f");
		line(out, "  generation (%lld prompts, chat %s): rouge1 %s, rougeL %s, exact "
		       "match %s, first difference at token %s; %s tok/s",
		       (long long)json_integer_value(json_object_get(gen, "n")),
		       json_string_value(json_object_get(gen, "chat")), r1, rl, em, fd, ts);
	}
}

char *qc_verify_summary(const json_t *rep)
{
	char *text = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&text, &len);
	if (!out)
		return NULL;
	const json_t *in = json_object_get(rep, "integrity");
	const json_t *nu = json_object_get(rep, "numerics");
	const json_t *fu = json_object_get(rep, "function");
	if (json_is_true(json_object_get(in, "ok")))
		line(out, "integrity: ok (manifest %s; %lld Linears, %lld quantized; %lld tensors checked)",
		       json_string_value(json_object_get(in, "manifest")),
		       (long long)json_integer_value(json_object_get(in, "linears")),
		       (long long)json_integer_value(json_object_get(in, "quantized_linears")),
		       (long long)json_integer_value(json_object_get(in, "tensors_checked")));
	else
	{
		long long n = (long long)json_integer_value(json_object_get(in, "findings_total"));
		line(out, "integrity: FAILED (%lld finding%s)", n, n == 1 ? "" : "s");
	}
	if (json_is_object(nu))
		line(out, "numerics: relative weight error mean %.3g, max %.3g (%s); base %s",
		       jnum(nu, "err_w_mean"), jnum(nu, "err_w_max"),
		       json_string_value(json_object_get(nu, "worst")),
		       json_string_value(json_object_get(nu, "base_fingerprint")));
	if (json_is_object(fu)) {
		if (json_object_get(fu, "ppl_base"))
			line(out, "function: ppl %.6g (base %.6g, ratio %.6g), kl %.4g, top-1 %.4f "
			       "over %lld sequences, %lld positions",
			       jnum(fu, "ppl"), jnum(fu, "ppl_base"), jnum(fu, "ppl_ratio"), jnum(fu, "kl_mean"),
			       jnum(fu, "top1"), (long long)json_integer_value(json_object_get(fu, "n_sequences")),
			       (long long)json_integer_value(json_object_get(fu, "n_positions")));
		else
			line(out, "function: ppl %.6g over %lld sequences, %lld positions",
			       jnum(fu, "ppl"), (long long)json_integer_value(json_object_get(fu, "n_sequences")),
			       (long long)json_integer_value(json_object_get(fu, "n_positions")));
	}
	const json_t *q = json_object_get(rep, "quality");
	if (json_is_object(q))
		quality_table(out, q);
	const json_t *f = json_object_get(rep, "failures");
	size_t i;
	const json_t *s;
	json_array_foreach(f, i, s)
		line(out, "FAIL: %s", json_string_value(s));
	if (json_array_size(f) == 0)
		line(out, "pass");
	if (fclose(out) != 0) {
		free(text);
		return NULL;
	}
	return text;
}

