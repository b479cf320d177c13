/* test_docs.c - calibration documents from text and JSON Lines (qc_docs.h). */
#include "tutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qc_docs.h"
#include "qc_err.h"

/* the documents joined by '|' */
static char *joined(const qc_docs *d)
{
	static char buf[4096];
	size_t n = 0;
	for (size_t i = 0; i < d->n; i++) {
		assert_int_equal(strlen(d->v[i].p), d->v[i].n);   /* NUL-terminated, no NUL inside */
		n += (size_t)snprintf(buf + n, sizeof buf - n, "%s%s", i ? "|" : "", d->v[i].p);
	}
	buf[n] = 0;
	return buf;
}

static void test_text(void **state)
{
	(void)state;
	const char *t = "one\r\n  \ntwo\nthree\r\n\n\n\tfour\n";
	struct { qc_docs_split split; const char *want; } cs[] = {
		{ QC_DOCS_LINES, "one|two|three|\tfour" },
		{ QC_DOCS_PARAGRAPHS, "one|two\nthree|\tfour" },
		{ QC_DOCS_WHOLE, "one\r\n  \ntwo\nthree\r\n\n\n\tfour\n" },
	};
	for (size_t c = 0; c < sizeof cs / sizeof cs[0]; c++) {
		qc_docs d = { 0 };
		tu_assert_rc(qc_docs_add_text(&d, t, strlen(t), cs[c].split), 0);
		assert_string_equal(joined(&d), cs[c].want);
		qc_docs_free(&d);
		assert_int_equal(d.n, 0);
	}
	/* blank text gives nothing in every mode; a last line without '\n' counts */
	for (int s = 0; s < 3; s++) {
		qc_docs d = { 0 };
		tu_assert_rc(qc_docs_add_text(&d, " \t\r\n\f\v\n", 7, (qc_docs_split)s), 0);
		tu_assert_rc(qc_docs_add_text(&d, "", 0, (qc_docs_split)s), 0);
		assert_int_equal(d.n, 0);
		tu_assert_rc(qc_docs_add_text(&d, "a\nb", 3, (qc_docs_split)s), 0);
		assert_string_equal(joined(&d), s == QC_DOCS_LINES ? "a|b" : "a\nb");
		qc_docs_free(&d);
	}
}

static void test_jsonl(void **state)
{
	(void)state;
	const char *j = "{\"text\": \"alpha\", \"n\": 3}\n"
	                "\n"
	                "[1, 2]\n"
	                "{\"other\": \"x\"}\n"
	                "{\"text\": \"\", \"n\": null}\n"
	                "{\"text\": \"beta\", \"n\": 2.5}\n";
	qc_docs d = { 0 };
	tu_assert_rc(qc_docs_add_jsonl(&d, "f.jsonl", j, strlen(j), "text", NULL, 0), 0);
	assert_string_equal(joined(&d), "alpha|beta");   /* the empty text is skipped silently */
	assert_int_equal(d.records, 5);
	assert_int_equal(d.skipped_not_object, 1);
	assert_int_equal(d.skipped_no_field, 1);
	qc_docs_free(&d);

	/* a template: fields, numbers as JSON writes them, escapes, braces */
	const char *tmpl = "Q: {text}\\n{{n}} = {n}\\t}}";
	tu_assert_rc(qc_docs_check_template(tmpl), 0);
	tu_assert_rc(qc_docs_add_jsonl(&d, "f.jsonl", j, strlen(j), NULL, tmpl, 0), 0);
	assert_string_equal(joined(&d), "Q: alpha\n{n} = 3\t}|Q: beta\n{n} = 2.5\t}");
	assert_int_equal(d.skipped_no_field, 2);   /* "other" has no text; null n */
	qc_docs_free(&d);

	/* strict: the first bad record is an error naming file and line */
	tu_assert_rc(qc_docs_add_jsonl(&d, "f.jsonl", j, strlen(j), "text", NULL, 1), QC_EFORMAT);
	assert_string_equal(qc_errmsg(), "'f.jsonl' line 3: not a JSON object");
	qc_docs_free(&d);
	const char *j2 = "{\"text\": \"a\"}\n{\"txt\": \"b\"}\n";
	tu_assert_rc(qc_docs_add_jsonl(&d, "g", j2, strlen(j2), "text", NULL, 1), QC_EFORMAT);
	assert_string_equal(qc_errmsg(), "'g' line 2: no string field of that name");
	qc_docs_free(&d);
	tu_assert_rc(qc_docs_add_jsonl(&d, "g", j2, strlen(j2), NULL, NULL, 0), QC_EINVAL);
	tu_assert_rc(qc_docs_add_jsonl(&d, "g", j2, strlen(j2), "a", "{a}", 0), QC_EINVAL);

	/* templates whose braces do not pair */
	const char *bad[] = { "{", "{}", "x}", "a {b", "}{a}" };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		tu_assert_rc(qc_docs_check_template(bad[i]), QC_EINVAL);
	tu_assert_rc(qc_docs_check_template("{{}}\\n{a}\\}"), 0);
}

static void test_shuffle(void **state)
{
	(void)state;
	qc_docs a = { 0 }, b = { 0 };
	char text[400];
	size_t n = 0;
	for (int i = 0; i < 50; i++)
		n += (size_t)snprintf(text + n, sizeof text - n, "%d\n", i);
	tu_assert_rc(qc_docs_add_text(&a, text, n, QC_DOCS_LINES), 0);
	tu_assert_rc(qc_docs_add_text(&b, text, n, QC_DOCS_LINES), 0);
	qc_docs_shuffle(&a, 7);
	qc_docs_shuffle(&b, 7);
	int seen[50] = { 0 }, moved = 0;
	for (size_t i = 0; i < a.n; i++) {
		assert_string_equal(a.v[i].p, b.v[i].p);   /* the same seed, the same order */
		int k = atoi(a.v[i].p);
		seen[k]++;
		moved += k != (int)i;
	}
	for (int i = 0; i < 50; i++)
		assert_int_equal(seen[i], 1);             /* a permutation */
	assert_true(moved > 25);
	qc_docs_shuffle(&b, 8);
	int differ = 0;
	for (size_t i = 0; i < a.n; i++)
		differ += strcmp(a.v[i].p, b.v[i].p) != 0;
	assert_true(differ > 0);
	qc_docs_free(&a);
	qc_docs_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_text),
		cmocka_unit_test(test_jsonl),
		cmocka_unit_test(test_shuffle),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
