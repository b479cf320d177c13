/* test_rouge.c - ROUGE-1 and ROUGE-L F1 on hand-worked cases, the expected
 * values derived from rouge-score's documented algorithm (qc_rouge.h):
 * reordering, repeated words (clipped unigram counts), several longest
 * common subsequences of equal length, tokenization, empty texts. */
#include "tutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "qc_rouge.h"

static void expect(const char *t, const char *p, double p1, double r1, double pl, double rl)
{
	qc_rouge_score a, b;
	tu_assert_rc(qc_rouge(t, p, &a, &b), 0);
	double f1 = p1 + r1 > 0 ? 2 * p1 * r1 / (p1 + r1) : 0;
	double fl = pl + rl > 0 ? 2 * pl * rl / (pl + rl) : 0;
	if (fabs(a.precision - p1) > 1e-12 || fabs(a.recall - r1) > 1e-12 || fabs(a.f1 - f1) > 1e-12 ||
	    fabs(b.precision - pl) > 1e-12 || fabs(b.recall - rl) > 1e-12 || fabs(b.f1 - fl) > 1e-12)
		fail_msg("'%s' vs '%s': rouge1 %g/%g/%g (want %g/%g/%g), rougeL %g/%g/%g (want %g/%g/%g)",
		         t, p, a.precision, a.recall, a.f1, p1, r1, f1, b.precision, b.recall, b.f1, pl,
		         rl, fl);
}

static void test_cases(void **state)
{
	(void)state;
	/* identical */
	expect("the cat sat", "the cat sat", 1, 1, 1, 1);
	/* reordered: every unigram matches, LCS "the cat on the mat" = 5 of 6 */
	expect("the cat sat on the mat", "the cat on the mat sat", 1, 1, 5.0 / 6, 5.0 / 6);
	/* repeated words: a min(3, 1) + b min(1, 2) = 2 hits; P 2/3, R 2/4 (F 4/7);
	 * LCS "a b" = 2 */
	expect("a a a b", "a b b", 2.0 / 3, 0.5, 2.0 / 3, 0.5);
	/* ties: "a c", "a d", "b c", "b d" are all longest common subsequences
	 * of length 2 */
	expect("a b c d", "b a d c", 1, 1, 0.5, 0.5);
	/* a longer tie-prone case: t = x y x y x, p = y x y x y: LCS 4
	 * ("x y x y" or "y x y x"); unigrams x min(3, 2), y min(2, 3) = 4 */
	expect("x y x y x", "y x y x y", 0.8, 0.8, 0.8, 0.8);
	/* tokenization: case, punctuation, apostrophes, hyphens, digits */
	expect("Hello, WORLD! It's 42-ish.", "hello world", 1, 2.0 / 6, 1, 2.0 / 6);
	/* empty texts: everything 0 */
	expect("", "abc", 0, 0, 0, 0);
	expect("abc", "", 0, 0, 0, 0);
	expect("...", "!!", 0, 0, 0, 0);
	/* disjoint */
	expect("alpha beta", "gamma", 0, 0, 0, 0);
	/* repeated prediction word against one target word: 1 hit of 3 */
	expect("the", "the the the", 1.0 / 3, 1, 1.0 / 3, 1);
}

static void test_tokens(void **state)
{
	(void)state;
	struct { const char *in, *out; } cs[] = {
		{ "Hello, WORLD! It's 42-ish.", "hello world it s 42 ish" },
		{ "  multiple\t\nspaces  ", "multiple spaces" },
		{ "caf\xc3\xa9 na\xc3\xafve", "caf na ve" },          /* non-ASCII letters separate */
		{ "5 \xe2\x84\xaam", "5 km" },                        /* KELVIN SIGN lowers to k */
		{ "\xc4\xb0stanbul", "i stanbul" },                   /* U+0130: i + combining dot */
		{ "", "" },
	};
	for (size_t c = 0; c < sizeof cs / sizeof cs[0]; c++) {
		char *s = qc_rouge_tokens(cs[c].in);
		assert_non_null(s);
		assert_string_equal(s, cs[c].out);
		free(s);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cases),
		cmocka_unit_test(test_tokens),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
