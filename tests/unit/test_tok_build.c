/* test_tok_build.c - the byte-level BPE builder: exact vocabulary size,
 * merge order worked by hand, Llama-3 layout of the specials, and that what
 * it writes loads back through qc_tok and round-trips text. */
#include "tutil.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "qc_err.h"
#include "qc_tok.h"

static qc_tok *load_built(const qc_tok_built *b)
{
	qc_tok *t = NULL;
	tu_assert_rc(qc_tok_load_mem(&t, b->tokenizer_json, b->tokenizer_len, b->config_json,
	                             b->config_len, "built"),
	             0);
	return t;
}

static void roundtrip(qc_tok *t, const char *s, size_t n)
{
	qc_ids ids = { 0 };
	tu_assert_rc(qc_tok_encode(t, s, n, QC_TOK_ADD_SPECIAL, &ids), 0);
	assert_true(ids.n >= 1);
	assert_int_equal(ids.v[0], qc_tok_bos(t));
	char *d;
	size_t dl;
	tu_assert_rc(qc_tok_decode(t, ids.v + 1, ids.n - 1, 0, &d, &dl), 0);
	assert_int_equal(dl, n);
	assert_memory_equal(d, s, n);
	free(d);
	qc_ids_release(&ids);
}

/* "aaaa bbb aaaa": words "aaaa", " bbb", " aaaa". First merge a+a (6
 * occurrences); then aa+aa and b+b both occur twice and the tie goes to the
 * smaller left id: b (98) before aa (256). */
static void test_merge_order(void **state)
{
	(void)state;
	static const char text[] = "aaaa bbb aaaa";
	qc_tok_built b;
	tu_assert_rc(qc_tok_build_bytelevel(261, text, sizeof text - 1, &b), 0);
	assert_int_equal(b.n_merges, 3);
	assert_int_equal(b.bos_id, 259);
	assert_int_equal(b.eos_id, 260);
	assert_int_equal(b.n_reserved, 0);
	qc_tok *t = load_built(&b);
	assert_int_equal(qc_tok_vocab_size(t), 261);
	size_t n;
	assert_string_equal(qc_tok_piece(t, 256, &n), "aa");
	assert_string_equal(qc_tok_piece(t, 257, &n), "bb");
	assert_string_equal(qc_tok_piece(t, 258, &n), "aaaa");
	assert_string_equal(qc_tok_piece(t, 259, &n), "<|begin_of_text|>");
	assert_string_equal(qc_tok_piece(t, 260, &n), "<|end_of_text|>");
	assert_int_equal(qc_tok_id_type(t, 259), QC_TOK_ID_SPECIAL);
	assert_int_equal(qc_tok_bos(t), 259);
	assert_int_equal(qc_tok_eos(t), 260);
	assert_true(qc_tok_adds_bos(t));
	assert_false(qc_tok_adds_eos(t));
	/* byte tokens: id b is byte b ("Ġ" is the space, byte 32) */
	assert_string_equal(qc_tok_piece(t, 'a', &n), "a");
	assert_string_equal(qc_tok_piece(t, ' ', &n), "\xc4\xa0");
	qc_ids ids = { 0 };
	tu_assert_rc(qc_tok_encode(t, text, sizeof text - 1, 0, &ids), 0);
	/* "aaaa" is a whole token; " bbb" = Ġ + bb + b */
	const int32_t want[] = { 258, ' ', 257, 'b', ' ', 258 };
	assert_int_equal(ids.n, 6);
	assert_memory_equal(ids.v, want, sizeof want);
	qc_ids_release(&ids);
	roundtrip(t, text, sizeof text - 1);
	qc_tok_free(t);
	qc_tok_built_release(&b);
}

static const char prose[] =
	"We hold these truths to be self-evident, that all men are created equal, that they are "
	"endowed by their Creator with certain unalienable Rights, that among these are Life, "
	"Liberty and the pursuit of Happiness. That to secure these rights, Governments are "
	"instituted among Men, deriving their just powers from the consent of the governed.\n\n"
	"Four score and seven years ago our fathers brought forth on this continent, a new nation, "
	"conceived in Liberty, and dedicated to the proposition that all men are created equal. 1776!\n";

/* Learning stops when no pair occurs twice; reserved specials fill the rest,
 * so the vocabulary always has exactly V ids. */
static void test_sizes(void **state)
{
	(void)state;
	static const int64_t sizes[] = { 259, 260, 300, 1000, 32000 };
	for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
		int64_t v = sizes[i];
		qc_tok_built b;
		tu_assert_rc(qc_tok_build_bytelevel(v, prose, sizeof prose - 1, &b), 0);
		assert_int_equal(b.eos_id, b.bos_id + 1);
		assert_int_equal(b.eos_id + 1 + b.n_reserved, v);
		assert_true(b.n_merges >= b.bos_id - 256);
		qc_tok *t = load_built(&b);
		assert_int_equal(qc_tok_vocab_size(t), v);
		for (int64_t id = 0; id < v; id++)
			assert_int_not_equal(qc_tok_id_type(t, id), QC_TOK_ID_NONE);
		if (b.n_reserved > 0) {
			size_t n;
			assert_string_equal(qc_tok_piece(t, b.eos_id + 1, &n), "<|reserved_special_token_0|>");
			char last[64];
			snprintf(last, sizeof last, "<|reserved_special_token_%lld|>", (long long)b.n_reserved - 1);
			assert_string_equal(qc_tok_piece(t, v - 1, &n), last);
			assert_int_equal(qc_tok_id_type(t, v - 1), QC_TOK_ID_SPECIAL);
		}
		roundtrip(t, prose, sizeof prose - 1);
		/* text it was not trained on, including non-ASCII and bad UTF-8 */
		static const char other[] = "Zwölf Boxkämpfer jagen Viktor \xe2\x80\x94 \xff\xfe quer 12345";
		roundtrip(t, other, sizeof other - 1);
		/* the special written in the text is recognized */
		qc_ids ids = { 0 };
		tu_assert_rc(qc_tok_encode(t, "x<|end_of_text|>", 16, 0, &ids), 0);
		assert_int_equal(ids.n, 2);
		assert_int_equal(ids.v[1], b.eos_id);
		qc_ids_release(&ids);
		qc_tok_free(t);
		qc_tok_built_release(&b);
	}
	/* the 32000-vocabulary run learned every merge the text allows */
}

/* Llama-3's size with a short text: mostly reserved specials. */
static void test_llama3_size(void **state)
{
	(void)state;
	qc_tok_built b;
	tu_assert_rc(qc_tok_build_bytelevel(128256, prose, sizeof prose - 1, &b), 0);
	assert_int_equal(b.eos_id + 1 + b.n_reserved, 128256);
	qc_tok *t = load_built(&b);
	assert_int_equal(qc_tok_vocab_size(t), 128256);
	roundtrip(t, prose, sizeof prose - 1);
	qc_tok_free(t);
	qc_tok_built_release(&b);
}

static void test_deterministic_and_valid_json(void **state)
{
	(void)state;
	qc_tok_built a, b;
	tu_assert_rc(qc_tok_build_bytelevel(700, prose, sizeof prose - 1, &a), 0);
	tu_assert_rc(qc_tok_build_bytelevel(700, prose, sizeof prose - 1, &b), 0);
	assert_int_equal(a.tokenizer_len, b.tokenizer_len);
	assert_memory_equal(a.tokenizer_json, b.tokenizer_json, a.tokenizer_len);
	assert_string_equal(a.config_json, b.config_json);
	/* the schema's top-level keys and the config's BOS rule */
	json_error_t e;
	json_t *j = json_loads(a.tokenizer_json, 0, &e), *c = json_loads(a.config_json, 0, &e);
	assert_non_null(j);
	assert_non_null(c);
	assert_string_equal(json_string_value(json_object_get(json_object_get(j, "model"), "type")), "BPE");
	assert_int_equal(json_array_size(json_object_get(json_object_get(j, "model"), "merges")), a.n_merges);
	assert_true(json_is_true(json_object_get(c, "add_bos_token")));
	assert_string_equal(json_string_value(json_object_get(c, "eos_token")), "<|end_of_text|>");
	json_decref(j);
	json_decref(c);
	qc_tok_built_release(&a);
	qc_tok_built_release(&b);
}

static void test_edge_cases(void **state)
{
	(void)state;
	qc_tok_built b;
	tu_assert_rc(qc_tok_build_bytelevel(258, prose, 10, &b), QC_EINVAL);
	assert_null(b.tokenizer_json);
	tu_assert_rc(qc_tok_build_bytelevel((int64_t)1 << 32, prose, 10, &b), QC_EINVAL);
	/* no text: bytes, BOS, EOS, reserved */
	tu_assert_rc(qc_tok_build_bytelevel(300, NULL, 0, &b), 0);
	assert_int_equal(b.n_merges, 0);
	assert_int_equal(b.bos_id, 256);
	assert_int_equal(b.n_reserved, 42);
	qc_tok *t = load_built(&b);
	roundtrip(t, "abc", 3);
	qc_tok_free(t);
	qc_tok_built_release(&b);
	qc_tok_built_release(&b);   /* released twice is harmless */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_merge_order),
		cmocka_unit_test(test_sizes),
		cmocka_unit_test(test_llama3_size),
		cmocka_unit_test(test_deterministic_and_valid_json),
		cmocka_unit_test(test_edge_cases),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
