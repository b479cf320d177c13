/* test_tokset.c - token set files: round trip, determinism, and the
 * reader's refusal of files that break the layout. */
#include "tutil.h"

#include <stdlib.h>
#include <string.h>

#include "qc_err.h"
#include "qc_hash.h"
#include "qc_st.h"
#include "qc_tokset.h"

/* 3 rows of 4: lengths 4, 2, 0; padding 0 */
static const int32_t ids[12] = { 5, 6, 7, 8, 9, 1, 0, 0, 0, 0, 0, 0 };
static const int32_t lens[3] = { 4, 2, 0 };

static qc_tokset_spec spec(void)
{
	qc_tokset_spec s = {
		.n = 3, .l = 4, .ids = ids, .lengths = lens, .vocab_size = 10, .pad_id = 0,
		.bos_id = 1, .eos_id = 2, .tokenizer_hash = qc_xxh3_128("tok", 3), .seed = 42,
		.sources = "[{\"name\": \"a.txt\", \"xxh3_128\": \"00000000000000000000000000000001\"}]",
		.options = "{\"mode\": \"pad\"}",
	};
	return s;
}

static void test_roundtrip(void **state)
{
	(void)state;
	qc_tokset_spec s = spec();
	char *p = tu_path("a.st");
	tu_assert_rc(qc_tokset_save(&s, p), 0);
	qc_tokset *ts;
	tu_assert_rc(qc_tokset_open(&ts, p), 0);
	assert_int_equal(qc_tokset_rows(ts), 3);
	assert_int_equal(qc_tokset_len(ts), 4);
	assert_memory_equal(qc_tokset_ids(ts), ids, sizeof ids);
	assert_memory_equal(qc_tokset_lengths(ts), lens, sizeof lens);
	int32_t l;
	const int32_t *r = qc_tokset_row(ts, 1, &l);
	assert_int_equal(l, 2);
	assert_int_equal(r[0], 9);
	assert_int_equal(qc_tokset_n_tokens(ts), 6);
	assert_int_equal(qc_tokset_vocab_size(ts), 10);
	assert_string_equal(qc_tokset_meta(ts, "seed"), "42");
	assert_string_equal(qc_tokset_meta(ts, "format"), "pt");
	assert_string_equal(qc_tokset_meta(ts, "n_tokens"), "6");
	assert_string_equal(qc_tokset_meta(ts, "options"), "{\"mode\": \"pad\"}");
	char hex[33];
	assert_string_equal(qc_tokset_meta(ts, "tokenizer_xxh3_128"), qc_h128_hex(qc_xxh3_128("tok", 3), hex));
	/* the hash is the file's */
	size_t n;
	void *bytes = tu_read(p, &n);
	assert_true(qc_h128_eq(qc_tokset_hash(ts), qc_xxh3_128(bytes, n)));
	/* an ordinary safetensors file: qc_st reads it too */
	qc_st *st;
	tu_assert_rc(qc_st_open(&st, p), 0);
	assert_int_equal(qc_st_count(st), 2);
	qc_st_close(st);
	qc_tokset_close(ts);
	/* the same spec to a sink gives the same bytes */
	qc_membuf mb = { 0 };
	qc_sink sink;
	qc_sink_membuf(&sink, &mb, "mem");
	tu_assert_rc(qc_tokset_emit(&s, &sink), 0);
	assert_int_equal(mb.len, n);
	assert_memory_equal(mb.data, bytes, n);
	tu_assert_rc(qc_tokset_open_mem(&ts, mb.data, mb.len, "mem"), 0);
	qc_tokset_close(ts);
	qc_membuf_free(&mb);
	qc_tokset_close(NULL);
	free(bytes);
	free(p);
}

static void test_writer_refuses(void **state)
{
	(void)state;
	qc_membuf mb = { 0 };
	qc_sink sink;
	qc_sink_membuf(&sink, &mb, "mem");
	qc_tokset_spec s = spec();
	s.n = 0;
	tu_assert_rc(qc_tokset_emit(&s, &sink), QC_EINVAL);
	s = spec();
	s.vocab_size = 9;   /* id 9 is then out of range */
	tu_assert_rc(qc_tokset_emit(&s, &sink), QC_EINVAL);
	s = spec();
	int32_t badlen[3] = { 5, 0, 0 };
	s.lengths = badlen;
	tu_assert_rc(qc_tokset_emit(&s, &sink), QC_EINVAL);
	s = spec();
	int32_t badpad[12] = { 5, 6, 7, 8, 9, 1, 3, 0, 0, 0, 0, 0 };
	s.ids = badpad;
	tu_assert_rc(qc_tokset_emit(&s, &sink), QC_EINVAL);
	s = spec();
	s.options = "[]";
	tu_assert_rc(qc_tokset_emit(&s, &sink), QC_EINVAL);
	s = spec();
	s.sources = NULL;
	tu_assert_rc(qc_tokset_emit(&s, &sink), QC_EINVAL);
	assert_int_equal(mb.len, 0);
	qc_membuf_free(&mb);
}

/* Write a safetensors image by hand with one thing wrong and expect the
 * reader to refuse it with QC_EFORMAT (or QC_EUNSUPPORTED for a version). */
typedef struct variant {
	const char *what;
	const char *drop_key;           /* metadata key left out */
	const char *key, *value;        /* metadata key replaced */
	int extra_tensor, wrong_dtype, bad_length, bad_id, rows;
	int expect;
} variant;

static void check_variant(const variant *v)
{
	static const char *keys[][2] = {
		{ "format", "pt" }, { "qc_token_set", "1" },
		{ "tokenizer_xxh3_128", "0123456789abcdef0123456789abcdef" }, { "vocab_size", "10" },
		{ "pad_id", "0" }, { "bos_id", "1" }, { "eos_id", "-1" }, { "seed", "0" },
		{ "sources", "[]" }, { "options", "{}" }, { "n_tokens", "6" },
	};
	qc_st_writer *w = qc_st_writer_new();
	assert_non_null(w);
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
		if (v->drop_key && strcmp(v->drop_key, keys[i][0]) == 0)
			continue;
		const char *val = v->key && strcmp(v->key, keys[i][0]) == 0 ? v->value : keys[i][1];
		tu_assert_rc(qc_st_writer_meta(w, keys[i][0], val), 0);
	}
	int32_t data[12], len[3];
	memcpy(data, ids, sizeof data);
	memcpy(len, lens, sizeof len);
	if (v->bad_length)
		len[2] = 5;
	if (v->bad_id)
		data[1] = 10;
	int rows = v->rows ? v->rows : 3;
	int64_t s2[2] = { rows, 4 }, s1[1] = { 3 };
	if (v->wrong_dtype)
		tu_assert_rc(qc_st_writer_add(w, "input_ids", QC_DT_U32, 2, s2, data, 0), 0);
	else
		tu_assert_rc(qc_st_writer_add(w, "input_ids", QC_DT_I32, 2, s2, data, 0), 0);
	tu_assert_rc(qc_st_writer_add(w, "lengths", QC_DT_I32, 1, s1, len, 0), 0);
	if (v->extra_tensor)
		tu_assert_rc(qc_st_writer_add(w, "extra", QC_DT_I32, 1, s1, len, 0), 0);
	qc_membuf mb = { 0 };
	qc_sink sink;
	qc_sink_membuf(&sink, &mb, "mem");
	tu_assert_rc(qc_st_writer_emit(w, &sink), 0);
	qc_st_writer_free(w);
	qc_tokset *ts = NULL;
	int rc = qc_tokset_open_mem(&ts, mb.data, mb.len, "t.st");
	if (rc != v->expect) {
		print_error("variant '%s': got %d (%s), want %d\n", v->what, rc, qc_errmsg(), v->expect);
		fail();
	}
	if (rc == 0)
		qc_tokset_close(ts);
	else
		assert_non_null(strstr(qc_errmsg(), "'t.st'"));
	qc_membuf_free(&mb);
}

static void test_reader_refuses(void **state)
{
	(void)state;
	const variant vs[] = {
		{ .what = "valid", .expect = 0 },
		{ .what = "no seed", .drop_key = "seed", .expect = QC_EFORMAT },
		{ .what = "no sources", .drop_key = "sources", .expect = QC_EFORMAT },
		{ .what = "no version", .drop_key = "qc_token_set", .expect = QC_EFORMAT },
		{ .what = "version 2", .key = "qc_token_set", .value = "2", .expect = QC_EUNSUPPORTED },
		{ .what = "vocab not a number", .key = "vocab_size", .value = "ten", .expect = QC_EFORMAT },
		{ .what = "vocab 0", .key = "vocab_size", .value = "0", .expect = QC_EFORMAT },
		{ .what = "hash not hex", .key = "tokenizer_xxh3_128", .value = "xyz", .expect = QC_EFORMAT },
		{ .what = "sources not a list", .key = "sources", .value = "{}", .expect = QC_EFORMAT },
		{ .what = "n_tokens wrong", .key = "n_tokens", .value = "7", .expect = QC_EFORMAT },
		{ .what = "extra tensor", .extra_tensor = 1, .expect = QC_EFORMAT },
		{ .what = "U32 ids", .wrong_dtype = 1, .expect = QC_EFORMAT },
		{ .what = "length > L", .bad_length = 1, .expect = QC_EFORMAT },
		{ .what = "id >= vocab", .bad_id = 1, .expect = QC_EFORMAT },
		{ .what = "rows disagree", .rows = 2, .expect = QC_EFORMAT },
	};
	for (size_t i = 0; i < sizeof vs / sizeof vs[0]; i++)
		check_variant(&vs[i]);
	/* not safetensors at all, and a missing file */
	qc_tokset *ts;
	tu_assert_rc(qc_tokset_open_mem(&ts, "hello", 5, "x"), QC_EFORMAT);
	tu_assert_rc(qc_tokset_open(&ts, "/nonexistent/t.st"), QC_EIO);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_writer_refuses),
		cmocka_unit_test(test_reader_refuses),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
