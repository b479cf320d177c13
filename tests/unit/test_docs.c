/* test_docs.c - calibration documents from text and JSON Lines (qc_docs.h). */
#include "tutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qc_docs.h"
#include "qc_err.h"
#include "qc_tok.h"

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

/* Token rows: pack, pad and random, checked against the tokenizer's own
 * encodings of the same documents. */
static void test_rows(void **state)
{
	(void)state;
	static const char text[] = "one two three four five six seven eight nine ten";
	qc_tok_built b;
	tu_assert_rc(qc_tok_build_bytelevel(300, text, strlen(text), &b), 0);
	qc_tok *t;
	tu_assert_rc(qc_tok_load_mem(&t, b.tokenizer_json, b.tokenizer_len, b.config_json, b.config_len,
	                             "test"), 0);
	qc_tok_built_release(&b);
	qc_docs d = { 0 };
	static const char docs[] = "one two three\nfour five six seven eight\nnine\n";
	tu_assert_rc(qc_docs_add_text(&d, docs, strlen(docs), QC_DOCS_LINES), 0);
	assert_int_equal(d.n, 3);
	const int32_t eos = qc_tok_eos(t), pad = 7;
	/* every document's ids, without and with the specials */
	qc_ids plain[3] = { { 0 } }, special[3] = { { 0 } };
	int64_t total = 0;
	for (int i = 0; i < 3; i++) {
		tu_assert_rc(qc_tok_encode(t, d.v[i].p, d.v[i].n, 0, &plain[i]), 0);
		tu_assert_rc(qc_tok_encode(t, d.v[i].p, d.v[i].n, QC_TOK_ADD_SPECIAL, &special[i]), 0);
		total += (int64_t)plain[i].n + 1;
	}

	/* pack, rows of 3: the documents and their EOS end to end, the last
	 * incomplete row dropped */
	qc_rows r;
	int64_t used, produced;
	tu_assert_rc(qc_rows_alloc(&r, 100, 3), 0);
	tu_assert_rc(qc_rows_pack(&r, t, &d, eos, &used, &produced), 0);
	assert_int_equal(used, 3);
	assert_int_equal(produced, total);
	assert_int_equal(r.n, total / 3);
	int64_t k = 0;
	for (int i = 0; i < 3; i++) {
		for (size_t j = 0; j <= plain[i].n && k < r.n * 3; j++, k++)
			assert_int_equal(r.ids[k], j < plain[i].n ? plain[i].v[j] : eos);
	}
	for (int64_t i = 0; i < r.n; i++)
		assert_int_equal(r.lens[i], 3);
	qc_rows_free(&r);
	/* fewer rows than the text fills: the documents read stop early */
	tu_assert_rc(qc_rows_alloc(&r, 1, 2), 0);
	tu_assert_rc(qc_rows_pack(&r, t, &d, eos, &used, &produced), 0);
	assert_int_equal(used, 1);
	assert_int_equal(produced, 2);
	assert_int_equal(r.n, 1);
	qc_rows_free(&r);

	/* pad, rows of 4: one document each with BOS, truncated, then pad */
	tu_assert_rc(qc_rows_alloc(&r, 2, 4), 0);
	tu_assert_rc(qc_rows_pad(&r, t, &d, pad, &used), 0);
	assert_int_equal(used, 2);
	assert_int_equal(r.n, 2);
	for (int i = 0; i < 2; i++) {
		int64_t len = (int64_t)special[i].n < 4 ? (int64_t)special[i].n : 4;
		assert_int_equal(r.lens[i], len);
		for (int64_t j = 0; j < 4; j++)
			assert_int_equal(r.ids[i * 4 + j], j < len ? special[i].v[j] : pad);
	}
	assert_int_equal(qc_rows_tokens(&r), r.lens[0] + r.lens[1]);
	qc_rows_free(&r);

	/* random: ordinary ids only, the same for the same seed */
	qc_rows a, c;
	tu_assert_rc(qc_rows_alloc(&a, 4, 64), 0);
	tu_assert_rc(qc_rows_alloc(&c, 4, 64), 0);
	tu_assert_rc(qc_rows_random(&a, t, 300, 9), 0);
	tu_assert_rc(qc_rows_random(&c, t, 300, 9), 0);
	assert_int_equal(a.n, 4);
	assert_memory_equal(a.ids, c.ids, 4 * 64 * sizeof *a.ids);
	for (int64_t i = 0; i < 4 * 64; i++)
		assert_int_equal(qc_tok_id_type(t, a.ids[i]), QC_TOK_ID_NORMAL);
	for (int i = 0; i < 4; i++)
		assert_int_equal(a.lens[i], 64);
	/* below the first special: none to draw from when vocab is 0 */
	tu_assert_rc(qc_rows_random(&c, t, 0, 9), QC_EINVAL);
	qc_rows_free(&a);
	qc_rows_free(&c);
	for (int i = 0; i < 3; i++) {
		qc_ids_release(&plain[i]);
		qc_ids_release(&special[i]);
	}
	qc_docs_free(&d);
	qc_tok_free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_text),
		cmocka_unit_test(test_jsonl),
		cmocka_unit_test(test_shuffle),
		cmocka_unit_test(test_rows),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
