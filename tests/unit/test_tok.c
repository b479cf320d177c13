/* test_tok.c - the tokenizer: real tokenizers against the tokenizers
 * library's reference ids (shared data, skipped when absent), and small
 * tokenizer.json files written here for both BPE families, worked by hand. */
#include "tutil.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/stat.h>

#include "qc_corpus.h"
#include "qc_err.h"
#include "qc_rng.h"
#include "qc_spm.h"
#include "qc_tok.h"
#include "qc_unorm.h"

/* ------------------------------------------------------------------------ */
/* helpers                                                                   */

/* GPT-2's bytes_to_unicode, written out independently of the library. */
static void bl_spell(int b, char *out)
{
	int cp;
	if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174) {
		cp = b;
	} else {
		int k = 0;
		for (int x = 0; x < b; x++)
			if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || x >= 174))
				k++;
		cp = 256 + k;
	}
	if (cp < 128) {
		out[0] = (char)cp;
		out[1] = 0;
	} else {
		out[0] = (char)(0xC0 | (cp >> 6));
		out[1] = (char)(0x80 | (cp & 0x3F));
		out[2] = 0;
	}
}

/* The 256 bytes in ByteLevel spelling, id = byte. */
static json_t *byte_vocab(void)
{
	json_t *vocab = json_object();
	char sp[4];
	for (int b = 0; b < 256; b++) {
		bl_spell(b, sp);
		json_object_set_new(vocab, sp, json_integer(b));
	}
	return vocab;
}

static json_t *added(int id, const char *content, int special, int lstrip, int rstrip, int single,
                     int normalized)
{
	return json_pack("{s:i, s:s, s:b, s:b, s:b, s:b, s:b}", "id", id, "content", content,
	                 "single_word", single, "lstrip", lstrip, "rstrip", rstrip, "normalized",
	                 normalized, "special", special);
}

static qc_tok *load_json(json_t *root, const char *config)
{
	char *s = json_dumps(root, 0);
	assert_non_null(s);
	qc_tok *t = NULL;
	int rc = qc_tok_load_mem(&t, s, strlen(s), config, config ? strlen(config) : 0, "test.json");
	tu_assert_rc(rc, 0);
	free(s);
	json_decref(root);
	return t;
}

static int load_rc(const char *json)
{
	qc_tok *t = NULL;
	int rc = qc_tok_load_mem(&t, json, strlen(json), NULL, 0, "bad.json");
	assert_true(rc < 0 || t != NULL);
	qc_tok_free(t);
	return rc;
}

static void expect_ids(qc_tok *t, const char *text, size_t len, unsigned flags, const int32_t *want,
                       size_t n)
{
	qc_ids ids = { 0 };
	tu_assert_rc(qc_tok_encode(t, text, len, flags, &ids), 0);
	if (ids.n != n || (n > 0 && memcmp(ids.v, want, n * sizeof *want) != 0)) {
		print_error("encoding of '%.*s': got", (int)len, text);
		for (size_t i = 0; i < ids.n; i++)
			print_error(" %d", ids.v[i]);
		print_error(", want");
		for (size_t i = 0; i < n; i++)
			print_error(" %d", want[i]);
		print_error("\n");
		fail();
	}
	/* the plain reference path gives the same ids */
	qc_tok_set_reference(t, 1);
	qc_ids ref = { 0 };
	tu_assert_rc(qc_tok_encode(t, text, len, flags, &ref), 0);
	qc_tok_set_reference(t, 0);
	assert_int_equal(ref.n, n);
	if (n > 0)
		assert_memory_equal(ref.v, want, n * sizeof *want);
	qc_ids_release(&ids);
	qc_ids_release(&ref);
}

static void expect_roundtrip(qc_tok *t, const char *text, size_t len)
{
	qc_ids ids = { 0 };
	tu_assert_rc(qc_tok_encode(t, text, len, 0, &ids), 0);
	char *d;
	size_t dl;
	tu_assert_rc(qc_tok_decode(t, ids.v, ids.n, 0, &d, &dl), 0);
	assert_int_equal(dl, len);
	assert_memory_equal(d, text, len);
	free(d);
	qc_ids_release(&ids);
}

#define IDS(...) ((const int32_t[]){ __VA_ARGS__ }), sizeof((const int32_t[]){ __VA_ARGS__ }) / sizeof(int32_t)
#define TXT(s) s, sizeof(s) - 1

/* ------------------------------------------------------------------------ */
/* a small byte-level BPE                                                    */

/* ids 0..255: the bytes (id = byte); 256.. the merges below; 261 <|eot|>
 * (special), 262 <|bos|> (special), 263 <mask> (lstrip), 264 "ab"
 * (added, single_word). The pre-tokenizer splits digits one by one, then
 * ByteLevel splits with GPT-2's regex. */
static json_t *bytelevel_json(int pair_merges)
{
	json_t *vocab = byte_vocab();
	json_object_set_new(vocab, "he", json_integer(256));
	json_object_set_new(vocab, "ll", json_integer(257));
	json_object_set_new(vocab, "hell", json_integer(258));
	json_object_set_new(vocab, "hello", json_integer(259));
	json_object_set_new(vocab, "\xc4\xa0hello", json_integer(260)); /* "Ġhello" */
	const char *m[][2] = { { "h", "e" }, { "l", "l" }, { "he", "ll" }, { "hell", "o" }, { "\xc4\xa0", "hello" } };
	json_t *merges = json_array();
	for (size_t i = 0; i < 5; i++) {
		if (pair_merges) {
			json_array_append_new(merges, json_pack("[s, s]", m[i][0], m[i][1]));
		} else {
			char buf[32];
			snprintf(buf, sizeof buf, "%s %s", m[i][0], m[i][1]);
			json_array_append_new(merges, json_string(buf));
		}
	}
	json_t *add = json_array();
	json_array_append_new(add, added(261, "<|eot|>", 1, 0, 0, 0, 0));
	json_array_append_new(add, added(262, "<|bos|>", 1, 0, 0, 0, 0));
	json_array_append_new(add, added(263, "<mask>", 1, 1, 0, 0, 0));
	json_array_append_new(add, added(264, "ab", 0, 0, 0, 1, 0));
	return json_pack(
		"{s:o, s:n,"
		" s:{s:s, s:[{s:s, s:b}, {s:s, s:b, s:b}]},"
		" s:{s:s, s:[{s:{s:s, s:i}}, {s:{s:s, s:i}}], s:{s:{s:s, s:[i], s:[s]}}},"
		" s:{s:s},"
		" s:{s:s, s:n, s:n, s:b, s:b, s:o, s:o}}",
		"added_tokens", add, "normalizer",
		"pre_tokenizer", "type", "Sequence", "pretokenizers", "type", "Digits", "individual_digits", 1,
		"type", "ByteLevel", "add_prefix_space", 0, "use_regex", 1,
		"post_processor", "type", "TemplateProcessing", "single", "SpecialToken", "id", "<|bos|>",
		"type_id", 0, "Sequence", "id", "A", "type_id", 0, "special_tokens", "<|bos|>", "id",
		"<|bos|>", "ids", 262, "tokens", "<|bos|>",
		"decoder", "type", "ByteLevel",
		"model", "type", "BPE", "dropout", "unk_token", "fuse_unk", 0, "byte_fallback", 0, "vocab",
		vocab, "merges", merges);
}

static void test_bytelevel_small(void **state)
{
	(void)state;
	for (int pairs = 0; pairs < 2; pairs++) {
		/* both spellings of merges ("a b" and ["a", "b"]) load the same */
		qc_tok *t = load_json(bytelevel_json(pairs), NULL);
		assert_int_equal(qc_tok_type(t), QC_TOK_BYTE_LEVEL);
		assert_int_equal(qc_tok_vocab_size(t), 265);
		/* "hello" merges h+e, l+l, he+ll, hell+o; " hello" then Ġ+hello;
		 * digits are split one by one; <|eot|> is cut out before all that */
		expect_ids(t, TXT("hello hello12<|eot|>x"), 0, IDS(259, 260, 49, 50, 261, 120));
		expect_roundtrip(t, TXT("hello hello12<|eot|>x"));
		/* the template adds <|bos|>; no tokenizer_config */
		expect_ids(t, TXT("hello"), QC_TOK_ADD_SPECIAL, IDS(262, 259));
		assert_int_equal(qc_tok_bos(t), 262);
		assert_int_equal(qc_tok_eos(t), -1);
		assert_true(qc_tok_adds_bos(t));
		assert_false(qc_tok_adds_eos(t));
		/* lstrip: the space before <mask> goes into the token */
		expect_ids(t, TXT("a <mask>"), 0, IDS(97, 263));
		expect_ids(t, TXT("a<mask>"), 0, IDS(97, 263));
		/* single_word: "ab" inside a word is not the added token */
		expect_ids(t, TXT("xab ab"), 0, IDS(120, 97, 98, 32, 264));
		/* \w is Rust's: a combining mark is a word character, ½ is not */
		expect_ids(t, TXT("x\xcc\x81" "ab"), 0, IDS(120, 204, 129, 97, 98));
		expect_ids(t, TXT("\xc2\xbd" "ab"), 0, IDS(194, 189, 264));
		expect_ids(t, TXT(""), 0, NULL, 0);
		assert_int_equal(qc_tok_id_type(t, 97), QC_TOK_ID_NORMAL);
		assert_int_equal(qc_tok_id_type(t, 261), QC_TOK_ID_SPECIAL);
		assert_int_equal(qc_tok_id_type(t, 264), QC_TOK_ID_ADDED);
		assert_int_equal(qc_tok_id_type(t, 265), QC_TOK_ID_NONE);
		assert_int_equal(qc_tok_id_type(t, -1), QC_TOK_ID_NONE);
		size_t len;
		assert_string_equal(qc_tok_piece(t, 260, &len), "\xc4\xa0hello");
		assert_int_equal(len, 7);
		assert_int_equal(qc_tok_find(t, "<|eot|>", 7), 261);
		assert_int_equal(qc_tok_find(t, "\xc4\xa0hello", 7), 260);
		assert_int_equal(qc_tok_find(t, "nope", 4), -1);
		/* skipping specials when decoding */
		char *d;
		tu_assert_rc(qc_tok_decode(t, (const int32_t[]){ 262, 259, 261 }, 3, QC_TOK_SKIP_SPECIAL, &d, &len), 0);
		assert_string_equal(d, "hello");
		free(d);
		tu_assert_rc(qc_tok_decode(t, (const int32_t[]){ 259, 265 }, 2, 0, &d, &len), QC_EINVAL);
		qc_tok_free(t);
	}
}

/* tokenizer_config overrides the template: no BOS, EOS added */
static void test_bytelevel_config(void **state)
{
	(void)state;
	qc_tok *t = load_json(bytelevel_json(0),
	                      "{\"add_bos_token\": false, \"add_eos_token\": true, \"eos_token\": "
	                      "{\"content\": \"<|eot|>\"}, \"bos_token\": \"<|bos|>\", "
	                      "\"model_max_length\": 1000000000000000019884624838656}");
	expect_ids(t, TXT("hello"), QC_TOK_ADD_SPECIAL, IDS(259, 261));
	expect_ids(t, TXT("hello"), 0, IDS(259));
	assert_int_equal(qc_tok_bos(t), 262);
	assert_int_equal(qc_tok_eos(t), 261);
	assert_false(qc_tok_adds_bos(t));
	assert_true(qc_tok_adds_eos(t));
	qc_tok_free(t);
}

/* Invalid UTF-8 is bytes: it encodes to byte tokens and decodes back. */
static void test_bytelevel_invalid_utf8(void **state)
{
	(void)state;
	qc_tok *t = load_json(bytelevel_json(0), NULL);
	expect_ids(t, TXT("\xff" "a\xc3"), 0, IDS(255, 97, 195));
	expect_roundtrip(t, TXT("hello \xff\xfe\xc3( \xe2\x82 ok\x80\n\t<|eot|>\xf4\x90\x80\x80"));
	static const char nul[] = { 'a', 0, 'b' };
	expect_roundtrip(t, nul, sizeof nul);
	qc_tok_free(t);
}

/* Equal ranks: the leftmost pair merges first ("aaa" -> "aa" + "a"). */
static void test_merge_order(void **state)
{
	(void)state;
	json_t *vocab = byte_vocab();
	json_object_set_new(vocab, "aa", json_integer(256));
	json_object_set_new(vocab, "ab", json_integer(257));
	json_object_set_new(vocab, "aab", json_integer(258));
	qc_tok *t = load_json(json_pack("{s:{s:s, s:b}, s:{s:s, s:o, s:[s, s, s]}}", "pre_tokenizer",
	                                "type", "ByteLevel", "add_prefix_space", 0, "model", "type",
	                                "BPE", "vocab", vocab, "merges", "a b", "a a", "aa b"),
	                      NULL);
	expect_ids(t, TXT("aaa"), 0, IDS(256, 97));
	/* "aab": a+b (rank 0) wins over a+a (rank 1), and aa+b never forms */
	expect_ids(t, TXT("aab"), 0, IDS(97, 257));
	expect_ids(t, TXT("aaaa"), 0, IDS(256, 256));
	qc_tok_free(t);
}


/* Split behaviors, seen through ignore_merges: a word that is a whole
 * vocabulary entry becomes that one id, so the ids show the word cuts. */
static qc_tok *split_tok(const char *pre_json)
{
	json_t *vocab = byte_vocab();
	static const char *words[] = { "a-", "-b", "a-b", "--", "a,", "a,b" };
	for (int i = 0; i < 6; i++)
		json_object_set_new(vocab, words[i], json_integer(300 + i));
	json_error_t e;
	json_t *pre = json_loads(pre_json, 0, &e);
	assert_non_null(pre);
	return load_json(json_pack("{s:o, s:{s:s, s:b, s:o, s:[]}}", "pre_tokenizer", pre, "model", "type",
	                           "BPE", "ignore_merges", 1, "vocab", vocab, "merges"),
	                 NULL);
}

static void test_split_behaviors(void **state)
{
	(void)state;
	static const struct {
		const char *beh;
		int invert;
		const char *text;
		int32_t want[4];
		size_t n;
	} cases[] = {
		{ "Isolated", 0, "a-b", { 97, 45, 98 }, 3 },
		{ "Removed", 0, "a-b", { 97, 98 }, 2 },
		{ "MergedWithPrevious", 0, "a-b", { 300, 98 }, 2 },
		{ "MergedWithNext", 0, "a-b", { 97, 301 }, 2 },
		{ "Contiguous", 0, "a--b", { 97, 303, 98 }, 3 },
		{ "Isolated", 0, "a--b", { 97, 45, 45, 98 }, 4 },
		{ "Removed", 1, "a-b", { 45 }, 1 },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char pre[512];
		snprintf(pre, sizeof pre,
		         "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": "
		         "{\"String\": \"-\"}, \"behavior\": \"%s\", \"invert\": %s}, "
		         "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": false}]}",
		         cases[i].beh, cases[i].invert ? "true" : "false");
		qc_tok *t = split_tok(pre);
		expect_ids(t, cases[i].text, strlen(cases[i].text), 0, cases[i].want, cases[i].n);
		qc_tok_free(t);
	}
	/* without a split the whole word is one entry; Punctuation cuts it */
	qc_tok *t = split_tok("{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": false}");
	expect_ids(t, TXT("a,b"), 0, IDS(305));
	qc_tok_free(t);
	t = split_tok("{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Punctuation\"}, "
	              "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": false}]}");
	expect_ids(t, TXT("a,b"), 0, IDS(97, 44, 98));
	qc_tok_free(t);
	t = split_tok("{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Punctuation\", "
	              "\"behavior\": \"MergedWithPrevious\"}, {\"type\": \"ByteLevel\", \"use_regex\": false, "
	              "\"add_prefix_space\": false}]}");
	expect_ids(t, TXT("a,b"), 0, IDS(304, 98));
	qc_tok_free(t);
	/* Digits in runs; add_prefix_space puts a space before the first word */
	t = split_tok("{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Digits\", "
	              "\"individual_digits\": false}, {\"type\": \"ByteLevel\", \"add_prefix_space\": true, "
	              "\"use_regex\": false}]}");
	expect_ids(t, TXT("a12"), 0, IDS(32, 97, 32, 49, 50));
	qc_tok_free(t);
}

/* ------------------------------------------------------------------------ */
/* a small SentencePiece-style BPE                                           */

/* ids: 0 <unk>, 1 <s>, 2 </s> (rstrip), 3..258 <0x00>..<0xFF>, 259 ▁,
 * 260 a, 261 b, 262 ▁a, 263 ▁b, 264 ab, 265 ▁ab. With metaspace, the
 * Metaspace pre-tokenizer (prepend_scheme first) replaces the normalizer. */
static json_t *spm_json(int metaspace, int byte_fallback)
{
	static const char *tok[] = { "\xe2\x96\x81", "a", "b", "\xe2\x96\x81" "a", "\xe2\x96\x81" "b",
	                             "ab", "\xe2\x96\x81" "ab" };
	json_t *vocab = json_object();
	json_object_set_new(vocab, "<unk>", json_integer(0));
	json_object_set_new(vocab, "<s>", json_integer(1));
	json_object_set_new(vocab, "</s>", json_integer(2));
	for (int b = 0; b < 256; b++) {
		char name[8];
		snprintf(name, sizeof name, "<0x%02X>", b);
		json_object_set_new(vocab, name, json_integer(3 + b));
	}
	for (int i = 0; i < 7; i++)
		json_object_set_new(vocab, tok[i], json_integer(259 + i));
	json_t *add = json_array();
	json_array_append_new(add, added(0, "<unk>", 1, 0, 0, 0, 0));
	json_array_append_new(add, added(1, "<s>", 1, 0, 0, 0, 0));
	json_array_append_new(add, added(2, "</s>", 1, 0, 1, 0, 0));
	json_t *norm = metaspace ? json_null()
	                         : json_pack("{s:s, s:[{s:s, s:s}, {s:s, s:{s:s}, s:s}]}", "type", "Sequence",
	                                     "normalizers", "type", "Prepend", "prepend", "\xe2\x96\x81", "type",
	                                     "Replace", "pattern", "String", " ", "content", "\xe2\x96\x81");
	json_t *pre = metaspace ? json_pack("{s:s, s:s, s:s, s:b}", "type", "Metaspace", "replacement",
	                                    "\xe2\x96\x81", "prepend_scheme", "first", "split", 0)
	                        : json_null();
	json_t *dec = metaspace
		? json_pack("{s:s, s:[{s:s}, {s:s, s:s, s:s}]}", "type", "Sequence", "decoders", "type",
		            "ByteFallback", "type", "Metaspace", "replacement", "\xe2\x96\x81",
		            "prepend_scheme", "first")
		: json_pack("{s:s, s:[{s:s, s:{s:s}, s:s}, {s:s}, {s:s}, {s:s, s:s, s:i, s:i}]}", "type",
		            "Sequence", "decoders", "type", "Replace", "pattern", "String", "\xe2\x96\x81",
		            "content", " ", "type", "ByteFallback", "type", "Fuse", "type", "Strip", "content",
		            " ", "start", 1, "stop", 0);
	return json_pack(
		"{s:o, s:o, s:o, s:{s:s, s:[{s:{s:s, s:i}}, {s:{s:s, s:i}}], s:{s:{s:s, s:[i], s:[s]}}}, s:o,"
		" s:{s:s, s:s, s:b, s:b, s:o, s:[s, s, s, s]}}",
		"added_tokens", add, "normalizer", norm, "pre_tokenizer", pre, "post_processor", "type",
		"TemplateProcessing", "single", "SpecialToken", "id", "<s>", "type_id", 0, "Sequence", "id",
		"A", "type_id", 0, "special_tokens", "<s>", "id", "<s>", "ids", 1, "tokens", "<s>", "decoder",
		dec, "model", "type", "BPE", "unk_token", "<unk>", "fuse_unk", 1, "byte_fallback",
		byte_fallback, "vocab", vocab, "merges", "\xe2\x96\x81 a", "a b", "\xe2\x96\x81" "a b",
		"\xe2\x96\x81 b");
}

static void test_spm_small(void **state)
{
	(void)state;
	for (int meta = 0; meta < 2; meta++) {
		qc_tok *t = load_json(spm_json(meta, 1), NULL);
		assert_int_equal(qc_tok_type(t), QC_TOK_SENTENCEPIECE);
		/* "▁ab▁ba▁é": ▁+a (rank 0) then ▁a+b (rank 2); ▁+b (rank 3) then
		 * nothing for ▁b+a; é is not in the vocabulary: bytes C3 A9 */
		expect_ids(t, TXT("ab ba \xc3\xa9"), 0, IDS(265, 263, 260, 259, 3 + 0xC3, 3 + 0xA9));
		expect_roundtrip(t, TXT("ab ba \xc3\xa9"));
		/* (a leading space is lost by the Metaspace decoder, as in tokenizers) */
		if (meta)
			expect_roundtrip(t, TXT("ab\n\xff b "));
		else
			expect_roundtrip(t, TXT("  ab\n\xff "));
		/* BOS from the template */
		expect_ids(t, TXT("a"), QC_TOK_ADD_SPECIAL, IDS(1, 262));
		/* </s> has rstrip: it takes the spaces after it (and Metaspace's
		 * prepend_scheme first prepends nothing after it) */
		if (meta)
			expect_ids(t, TXT("a</s>  b"), 0, IDS(262, 2, 261));
		else
			expect_ids(t, TXT("a</s>  b"), 0, IDS(262, 2, 263));
		/* after a special token the Prepend normalizer prepends again,
		 * Metaspace with prepend_scheme first does not */
		if (meta)
			expect_ids(t, TXT("b</s>ab"), 0, IDS(263, 2, 264));
		else
			expect_ids(t, TXT("b</s>ab"), 0, IDS(263, 2, 265));
		expect_ids(t, TXT(""), 0, NULL, 0);
		qc_tok_free(t);
	}
	/* without byte fallback, unknown characters become <unk>, fused */
	qc_tok *t = load_json(spm_json(0, 0), NULL);
	expect_ids(t, TXT("a\xc3\xa9\xc3\xa8 b"), 0, IDS(262, 0, 263));
	qc_tok_free(t);
}

/* A long SentencePiece word is cut before each ▁ on the fast path; the
 * reference path merges it whole. Random text over a small alphabet. */
static void test_spm_cut_matches_reference(void **state)
{
	(void)state;
	qc_tok *t = load_json(spm_json(0, 1), NULL);
	qc_rng r;
	qc_rng_seed(&r, 11);
	static const char *alpha[] = { "a", "b", " ", "  ", "\xc3\xa9", "x", "</s>" };
	for (int iter = 0; iter < 50; iter++) {
		char text[512];
		size_t n = 0;
		int k = (int)qc_rng_below(&r, 60);
		for (int i = 0; i < k; i++) {
			const char *s = alpha[qc_rng_below(&r, 7)];
			memcpy(text + n, s, strlen(s));
			n += strlen(s);
		}
		qc_ids fast = { 0 }, ref = { 0 };
		tu_assert_rc(qc_tok_encode(t, text, n, 0, &fast), 0);
		qc_tok_set_reference(t, 1);
		tu_assert_rc(qc_tok_encode(t, text, n, 0, &ref), 0);
		qc_tok_set_reference(t, 0);
		assert_int_equal(fast.n, ref.n);
		assert_memory_equal(fast.v, ref.v, fast.n * sizeof *fast.v);
		qc_ids_release(&fast);
		qc_ids_release(&ref);
	}
	qc_tok_free(t);
}

/* ------------------------------------------------------------------------ */
/* normalizers and pre-tokenizers, on small character-level models           */

/* A BPE model whose vocabulary is voc (id = index; "<unk>" first), the
 * merges "a b" given, and the normalizer / pre-tokenizer given as JSON text
 * (NULL for none). Words are read back as pieces (expect_pieces). */
static qc_tok *char_model(const char *norm, const char *pre, const char *const *voc,
                          const char *const *merges)
{
	json_t *vocab = json_object(), *m = json_array();
	for (int i = 0; voc[i]; i++)
		json_object_set_new(vocab, voc[i], json_integer(i));
	for (int i = 0; merges && merges[i]; i++)
		json_array_append_new(m, json_string(merges[i]));
	json_t *root = json_pack("{s:{s:s, s:s, s:b, s:o, s:o}}", "model", "type", "BPE", "unk_token",
	                         "<unk>", "fuse_unk", 0, "vocab", vocab, "merges", m);
	json_error_t e;
	if (norm)
		json_object_set_new(root, "normalizer", json_loads(norm, 0, &e));
	if (pre)
		json_object_set_new(root, "pre_tokenizer", json_loads(pre, 0, &e));
	return load_json(root, NULL);
}

/* The pieces of text's ids joined by '|' must be want. */
static void expect_pieces(qc_tok *t, const char *text, const char *want)
{
	qc_ids ids = { 0 };
	tu_assert_rc(qc_tok_encode(t, text, strlen(text), 0, &ids), 0);
	char got[1024];
	size_t n = 0;
	for (size_t i = 0; i < ids.n; i++) {
		size_t l;
		const char *p = qc_tok_piece(t, ids.v[i], &l);
		assert_non_null(p);
		assert_true(n + l + 2 < sizeof got);
		if (i)
			got[n++] = '|';
		memcpy(got + n, p, l);
		n += l;
	}
	got[n] = 0;
	if (strcmp(got, want) != 0) {
		print_error("encoding of '%s': got '%s', want '%s'\n", text, got, want);
		fail();
	}
	qc_ids_release(&ids);
}

static void test_normalizers(void **state)
{
	(void)state;
	static const char *const voc[] = { "<unk>", "e", "\xcc\x81" /* U+0301 */, "\xc3\xa9" /* é */,
	                                   "f", "i", "\xef\xac\x81" /* U+FB01 ﬁ */, "a", "b", "c", " ",
	                                   "\xcf\x83" /* σ */, "\xce\xa3" /* Σ */, "x", "_", NULL };
	qc_tok *t = char_model("{\"type\": \"NFC\"}", NULL, voc, NULL);
	expect_pieces(t, "e\xcc\x81", "\xc3\xa9");          /* composed */
	expect_pieces(t, "\xc3\xa9", "\xc3\xa9");
	expect_pieces(t, "\xef\xac\x81", "\xef\xac\x81");   /* ﬁ is not a canonical equivalent */
	qc_tok_free(t);
	t = char_model("{\"type\": \"NFD\"}", NULL, voc, NULL);
	expect_pieces(t, "\xc3\xa9", "e|\xcc\x81");
	qc_tok_free(t);
	t = char_model("{\"type\": \"NFKC\"}", NULL, voc, NULL);
	expect_pieces(t, "\xef\xac\x81" "e\xcc\x81", "f|i|\xc3\xa9");
	qc_tok_free(t);
	t = char_model("{\"type\": \"NFKD\"}", NULL, voc, NULL);
	expect_pieces(t, "\xef\xac\x81\xc3\xa9", "f|i|e|\xcc\x81");
	qc_tok_free(t);
	/* Lowercase: char by char, so a final capital sigma becomes σ; İ
	 * becomes i + U+0307 (not in this vocabulary: unk for the mark) */
	t = char_model("{\"type\": \"Lowercase\"}", NULL, voc, NULL);
	expect_pieces(t, "ABC\xce\xa3", "a|b|c|\xcf\x83");
	expect_pieces(t, "\xc4\xb0", "i|<unk>");
	qc_tok_free(t);
	/* StripAccents after NFD: é -> e; U+0301 alone goes, ½ stays */
	t = char_model("{\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"NFD\"}, "
	               "{\"type\": \"StripAccents\"}]}", NULL, voc, NULL);
	expect_pieces(t, "\xc3\xa9" "e\xcc\x81" "f", "e|e|f");
	qc_tok_free(t);
	/* a Sequence in order: NFKC, Lowercase, Strip, Replace, Prepend */
	t = char_model("{\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"NFKC\"}, "
	               "{\"type\": \"Lowercase\"}, {\"type\": \"Strip\", \"strip_left\": true, "
	               "\"strip_right\": true}, {\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, "
	               "\"content\": \"_\"}, {\"type\": \"Prepend\", \"prepend\": \"x\"}]}",
	               NULL, voc, NULL);
	/* (NFKC makes U+3000 a space, which Strip removes) */
	expect_pieces(t, "  \xef\xac\x81 A\xe3\x80\x80", "x|f|i|_|a");
	expect_pieces(t, "", "");
	qc_tok_free(t);
	/* bytes that are not UTF-8 pass through and do not stop the rest */
	t = char_model("{\"type\": \"NFC\"}", NULL, voc, NULL);
	expect_pieces(t, "\xff" "e\xcc\x81", "<unk>|\xc3\xa9");
	qc_tok_free(t);
}

/* qc_unorm's ASCII shortcut against the plain path, on random text built
 * to meet its edges: marks after ASCII bases, Hangul jamo, compatibility
 * characters, marks that decompose to two, invalid bytes. */
static void test_unorm_fast_matches_reference(void **state)
{
	(void)state;
	static const char *const alpha[] = {
		"e", "a", "i", " ", "=", "\xcc\x81" /* U+0301 */, "\xcc\x88" /* U+0308 */, "\xcc\xa7" /* U+0327 */,
		"\xcd\x84" /* U+0344 */, "\xc3\xa9", "\xe1\x84\x80" /* U+1100 */, "\xe1\x85\xa1" /* U+1161 */,
		"\xe1\x86\xa8" /* U+11A8 */, "\xea\xb0\x80" /* U+AC00 */, "\xef\xac\x81" /* U+FB01 */,
		"\xef\xbd\xb6" /* U+FF76 */, "\xef\xbe\x9e" /* U+FF9E */, "\xcc\xb8" /* U+0338 */,
		"\xe2\x84\xab" /* U+212B */, "\xff", "\xc4\xb0" /* U+0130 */, "\xe2\x80\x80",
	};
	qc_rng r;
	qc_rng_seed(&r, 23);
	for (int it = 0; it < 2000; it++) {
		char text[256];
		size_t n = 0;
		for (int k = (int)qc_rng_below(&r, 30); k > 0; k--) {
			const char *a = alpha[qc_rng_below(&r, sizeof alpha / sizeof alpha[0])];
			memcpy(text + n, a, strlen(a));
			n += strlen(a);
		}
		for (int f = QC_UNORM_NFC; f <= QC_UNORM_STRIP_MARKS; f++) {
			char *x, *y;
			size_t xl, yl;
			tu_assert_rc(qc_unorm((qc_unorm_form)f, text, n, &x, &xl), 0);
			tu_assert_rc(qc_unorm_ref((qc_unorm_form)f, text, n, &y, &yl), 0);
			if (xl != yl || memcmp(x, y, xl) != 0) {
				print_error("form %d differs on '%.*s'\n", f, (int)n, text);
				fail();
			}
			free(x);
			free(y);
		}
	}
}

static void test_pre_tokenizers(void **state)
{
	(void)state;
	static const char *const voc[] = { "<unk>", "a", "b", "x", "e", "\xcc\x81", "\xc2\xbd" /* ½ */,
	                                   "!", ",", "-", " ", "\xe1\xa0\x8e" /* U+180E */, "y", "e\xcc\x81",
	                                   "\xc2\xbdx", "a!", "a,", "a b", "a-", "a\xe1\xa0\x8e",
	                                   "\xe2\x96\x81", "\xe2\x96\x81" "a", "a\xe2\x96\x81", NULL };
	static const char *const mer[] = { "e \xcc\x81", "\xc2\xbd x", "a !", "a ,", "a -",
	                                   "a \xe1\xa0\x8e", "\xe2\x96\x81 a", "a \xe2\x96\x81", NULL };
	/* Whitespace: \w is Rust's (marks are word characters, ½ is not) */
	qc_tok *t = char_model(NULL, "{\"type\": \"Whitespace\"}", voc, mer);
	expect_pieces(t, "e\xcc\x81 \xc2\xbdx a!", "e\xcc\x81|\xc2\xbd|x|a|!");
	qc_tok_free(t);
	/* WhitespaceSplit: White_Space only (U+180E is not) */
	t = char_model(NULL, "{\"type\": \"WhitespaceSplit\"}", voc, mer);
	expect_pieces(t, "a!\xe3\x80\x80" "a\xe1\xa0\x8e", "a!|a\xe1\xa0\x8e");
	qc_tok_free(t);
	/* BertPreTokenizer: whitespace removed, each punctuation isolated */
	t = char_model(NULL, "{\"type\": \"BertPreTokenizer\"}", voc, mer);
	expect_pieces(t, "a, b!!", "a|,|b|!|!");
	qc_tok_free(t);
	/* CharDelimiterSplit: the delimiter is removed */
	t = char_model(NULL, "{\"type\": \"CharDelimiterSplit\", \"delimiter\": \",\"}", voc, mer);
	expect_pieces(t, "a-,a,", "a-|a");
	qc_tok_free(t);
	/* FixedLength: pieces of n characters (5 by default); then Whitespace
	 * would have cut differently */
	t = char_model(NULL, "{\"type\": \"FixedLength\", \"length\": 2}", voc, mer);
	expect_pieces(t, "a!a\xe1\xa0\x8e" "a", "a!|a\xe1\xa0\x8e|a");
	expect_pieces(t, "", "");
	qc_tok_free(t);
	t = char_model(NULL, "{\"type\": \"FixedLength\"}", voc, mer);
	expect_pieces(t, "yyyya!", "y|y|y|y|a|!");
	expect_pieces(t, "yyyyya!", "y|y|y|y|y|a!");
	qc_tok_free(t);
	/* Punctuation, Contiguous: runs of punctuation stay together */
	t = char_model(NULL, "{\"type\": \"Punctuation\", \"behavior\": \"Contiguous\"}", voc, mer);
	expect_pieces(t, "a!,-b", "a|!|,|-|b");
	qc_tok_free(t);
	/* Metaspace: split at ▁ (merged with the next) or not */
	t = char_model(NULL, "{\"type\": \"Metaspace\", \"replacement\": \"\xe2\x96\x81\", "
	               "\"prepend_scheme\": \"always\", \"split\": true}", voc, mer);
	expect_pieces(t, "a a", "\xe2\x96\x81" "a|\xe2\x96\x81" "a");
	qc_tok_free(t);
	t = char_model(NULL, "{\"type\": \"Metaspace\", \"replacement\": \"\xe2\x96\x81\", "
	               "\"prepend_scheme\": \"never\", \"split\": false}", voc, mer);
	/* one word: "a▁" (rank 7) loses to "▁a" (rank 6) on its right; alone
	 * it merges, where split: true would have cut before the ▁ */
	expect_pieces(t, "a a", "a|\xe2\x96\x81" "a");
	expect_pieces(t, "a ", "a\xe2\x96\x81");
	qc_tok_free(t);
	/* files from before prepend_scheme: add_prefix_space true / false */
	t = char_model(NULL, "{\"type\": \"Metaspace\", \"replacement\": \"\xe2\x96\x81\", "
	               "\"str_rep\": \"\xe2\x96\x81\", \"add_prefix_space\": true}", voc, mer);
	expect_pieces(t, "a a", "\xe2\x96\x81" "a|\xe2\x96\x81" "a");
	qc_tok_free(t);
	t = char_model(NULL, "{\"type\": \"Metaspace\", \"replacement\": \"\xe2\x96\x81\", "
	               "\"add_prefix_space\": false}", voc, mer);
	expect_pieces(t, "a a", "a|\xe2\x96\x81" "a");
	qc_tok_free(t);
}

/* Steps after ByteLevel see its mapped characters: tokenizers applies a
 * Sequence's steps in order to the pieces made so far. Falcon-7B's
 * pre-tokenizer is Punctuation, ByteLevel, Digits, Split([0-9]{3}). */
static void test_pre_after_bytelevel(void **state)
{
	(void)state;
	json_t *vocab = byte_vocab();
	static const char *const tok[] = { "34", "12", "123", "45", "\xc4\xa0" "1", "!!", ",\xc4\xa0", "\xc4\xa0h", NULL };
	static const char *const mer[] = { "3 4", "1 2", "12 3", "4 5", "\xc4\xa0 1", "! !", ", \xc4\xa0", "\xc4\xa0 h", NULL };
	for (int i = 0; tok[i]; i++)
		json_object_set_new(vocab, tok[i], json_integer(256 + i));
	static const char *const pres[] = {
		"{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Punctuation\", \"behavior\": \"Contiguous\"},"
		" {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": true},"
		" {\"type\": \"Digits\", \"individual_digits\": false},"
		" {\"type\": \"Split\", \"pattern\": {\"Regex\": \"[0-9][0-9][0-9]\"}, \"behavior\": \"Isolated\", \"invert\": false}]}",
		/* a Split on the mapped space cuts; one on ' ' finds none */
		"{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"ByteLevel\", \"add_prefix_space\": false,"
		" \"use_regex\": false}, {\"type\": \"Split\", \"pattern\": {\"String\": \"\xc4\xa0\"}, \"behavior\": \"Isolated\"}]}",
		"{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"ByteLevel\", \"add_prefix_space\": false,"
		" \"use_regex\": false}, {\"type\": \"Split\", \"pattern\": {\"String\": \" \"}, \"behavior\": \"Isolated\"}]}",
	};
	static const char *const text[] = { "He, 12345 hi!!", " hi", " hi" };
	static const char *const want[] = {
		/* Punctuation: "He" "," " 12345 hi" "!!"; ByteLevel regex: "Ġ12345"
		 * "Ġhi"; Digits: "Ġ" "12345"; Split: "123" "45" */
		"H|e|,|\xc4\xa0|123|45|\xc4\xa0h|i|!!",
		"\xc4\xa0|h|i",
		"\xc4\xa0h|i",
	};
	for (int k = 0; k < 3; k++) {
		json_t *m = json_array();
		for (int i = 0; mer[i]; i++)
			json_array_append_new(m, json_string(mer[i]));
		json_error_t e;
		json_t *root = json_pack("{s:o, s:{s:s}, s:{s:s, s:O, s:o}}", "pre_tokenizer",
		                         json_loads(pres[k], 0, &e), "decoder", "type", "ByteLevel", "model",
		                         "type", "BPE", "vocab", vocab, "merges", m);
		qc_tok *t = load_json(root, NULL);
		assert_int_equal(qc_tok_type(t), QC_TOK_BYTE_LEVEL);
		expect_pieces(t, text[k], want[k]);
		expect_roundtrip(t, text[k], strlen(text[k]));
		expect_roundtrip(t, TXT("x \xff\xfe 99999 \xe2\x82\xac!"));
		qc_tok_free(t);
	}
	json_decref(vocab);
}

/* ------------------------------------------------------------------------ */
/* errors                                                                    */

static void test_errors(void **state)
{
	(void)state;
	assert_int_equal(load_rc("{\"model\": {\"type\": \"WordPiece\", \"vocab\": {\"a\": 0}}}"),
	                 QC_EUNSUPPORTED);
	assert_non_null(strstr(qc_errmsg(), "'WordPiece'"));
	assert_int_equal(load_rc("{\"model\": {\"type\": \"Unigram\", \"vocab\": [[\"a\", 0.0]]}}"),
	                 QC_EUNSUPPORTED);
	assert_non_null(strstr(qc_errmsg(), "'Unigram'"));
	/* components we do not implement are refused by name */
	static const char *const refused[][2] = {
		{ "pre_tokenizer", "UnicodeScripts" }, { "pre_tokenizer", "RandomChunk" },
		{ "normalizer", "BertNormalizer" }, { "normalizer", "Nmt" },
		{ "normalizer", "Precompiled" }, { "normalizer", "ByteLevel" },
	};
	for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
		char j[256], want[64];
		snprintf(j, sizeof j, "{\"%s\": {\"type\": \"%s\"}, \"model\": {\"type\": \"BPE\", "
		         "\"vocab\": {\"a\": 0}, \"merges\": []}}", refused[i][0], refused[i][1]);
		assert_int_equal(load_rc(j), QC_EUNSUPPORTED);
		snprintf(want, sizeof want, "'%s'", refused[i][1]);
		assert_non_null(strstr(qc_errmsg(), want));
	}
	assert_int_equal(load_rc("{\"pre_tokenizer\": {\"type\": \"FixedLength\", \"length\": 0}, "
	                         "\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}"),
	                 QC_EFORMAT);
	/* Metaspace after ByteLevel would add characters outside the byte map */
	assert_int_equal(load_rc("{\"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": "
	                         "[{\"type\": \"ByteLevel\"}, {\"type\": \"Metaspace\"}]}, "
	                         "\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}"),
	                 QC_EUNSUPPORTED);
	assert_non_null(strstr(qc_errmsg(), "'Metaspace' after ByteLevel"));
	assert_int_equal(load_rc("not json"), QC_EFORMAT);
	assert_int_equal(load_rc("[1, 2]"), QC_EFORMAT);
	assert_int_equal(load_rc("{}"), QC_EFORMAT);
	assert_int_equal(load_rc("{\"model\": {\"type\": \"BPE\", \"vocab\": []}}"), QC_EFORMAT);
	assert_int_equal(load_rc("{\"model\": {\"type\": \"BPE\", \"vocab\": {}}}"), QC_EFORMAT);
	assert_int_equal(load_rc("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": -1}}}"), QC_EFORMAT);
	assert_int_equal(load_rc("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 99999999999}}}"), QC_EFORMAT);
	assert_int_equal(load_rc("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": \"x\"}}}"), QC_EFORMAT);
	/* a merge of tokens not in the vocabulary, or whose result is not */
	assert_int_equal(load_rc("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"a c\"]}}"),
	                 QC_EFORMAT);
	assert_non_null(strstr(qc_errmsg(), "'c'"));
	assert_int_equal(load_rc("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"a a\"]}}"),
	                 QC_EFORMAT);
	assert_int_equal(load_rc("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"a a a\"]}}"),
	                 QC_EFORMAT);
	assert_int_equal(load_rc("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [[\"a\"]]}}"),
	                 QC_EFORMAT);
	assert_int_equal(load_rc("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}}, \"added_tokens\": [{\"id\": 1}]}"),
	                 QC_EFORMAT);
	assert_int_equal(load_rc("{\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"(\"}}, "
	                         "\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}}}"),
	                 QC_EUNSUPPORTED);
	assert_int_equal(load_rc("{\"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": "
	                         "[{\"SpecialToken\": {\"id\": \"<x>\"}}], \"special_tokens\": {}}, "
	                         "\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}}}"),
	                 QC_EFORMAT);
	/* a decoder we cannot run fails at decode time, not at load */
	qc_tok *t = NULL;
	const char *j = "{\"decoder\": {\"type\": \"WordPiece\"}, \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}}}";
	tu_assert_rc(qc_tok_load_mem(&t, j, strlen(j), NULL, 0, "d.json"), 0);
	char *d;
	size_t dl;
	tu_assert_rc(qc_tok_decode(t, (const int32_t[]){ 0 }, 1, 0, &d, &dl), QC_EUNSUPPORTED);
	assert_non_null(strstr(qc_errmsg(), "'WordPiece'"));
	qc_tok_free(t);
	/* missing directory */
	tu_assert_rc(qc_tok_load(&t, "/nonexistent-dir"), QC_EIO);
	assert_null(t);
	qc_tok_free(NULL);
}

/* ------------------------------------------------------------------------ */
/* conformance with the tokenizers library (shared data)                     */

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	fclose(f);
	return tu_read(path, len);
}

/* Encode every case of vectors/NAME.inp with t and compare with NAME.out;
 * with roundtrip, decode(encode(x)) must give x back. */
static void run_vectors_tok(qc_tok *t, const char *name, int roundtrip, int32_t bos)
{
	const char *sd = tu_shared_data();
	char p[4096];
	size_t il, ol;
	snprintf(p, sizeof p, "%s/tokenizers/vectors/%s.inp", sd, name);
	char *inp = slurp(p, &il);
	snprintf(p, sizeof p, "%s/tokenizers/vectors/%s.out", sd, name);
	char *outp = slurp(p, &ol);
	assert_non_null(inp);
	assert_non_null(outp);
	static const char sep[] = "\n__ggml_vocab_test__\n";
	char *ip = inp, *op = outp;
	int cases = 0;
	qc_ids all = { 0 }, allref = { 0 };
	while (ip < inp + il) {
		char *e = strstr(ip, sep);
		assert_non_null(e);
		char *nl = strchr(op, '\n');
		assert_non_null(nl);
		*nl = 0;
		size_t n = (size_t)(e - ip);
		qc_ids ids = { 0 };
		tu_assert_rc(qc_tok_encode(t, ip, n, 0, &ids), 0);
		/* expected ids: integers separated by spaces */
		size_t k = 0;
		for (char *q = op; *q;) {
			char *end;
			long v = strtol(q, &end, 10);
			if (end == q)
				break;
			if (k >= ids.n || ids.v[k] != v) {
				print_error("%s case %d '%.*s': id %zu differs\n", name, cases, (int)n, ip, k);
				fail();
			}
			k++;
			q = end;
		}
		if (k != ids.n) {
			print_error("%s case %d '%.*s': %zu ids, want %zu\n", name, cases, (int)n, ip, ids.n, k);
			fail();
		}
		if (roundtrip)
			expect_roundtrip(t, ip, n);
		qc_ids_release(&ids);
		ip = e + sizeof sep - 1;
		op = nl + 1;
		cases++;
	}
	assert_true(cases > 0);
	/* the whole file as one text, fast and reference paths */
	tu_assert_rc(qc_tok_encode(t, inp, il, 0, &all), 0);
	qc_tok_set_reference(t, 1);
	tu_assert_rc(qc_tok_encode(t, inp, il, 0, &allref), 0);
	qc_tok_set_reference(t, 0);
	assert_int_equal(all.n, allref.n);
	assert_memory_equal(all.v, allref.v, all.n * sizeof *all.v);
	/* BOS with the tokenizer's own post-processing */
	qc_ids b = { 0 };
	tu_assert_rc(qc_tok_encode(t, "Hi", 2, QC_TOK_ADD_SPECIAL, &b), 0);
	if (bos >= 0) {
		assert_true(qc_tok_adds_bos(t));
		assert_int_equal(b.v[0], bos);
	} else {
		assert_false(qc_tok_adds_bos(t));
	}
	qc_ids_release(&b);
	qc_ids_release(&all);
	qc_ids_release(&allref);
	free(inp);
	free(outp);
}

static void run_vectors(const char *tokdir, const char *name, int roundtrip, int32_t bos)
{
	const char *sd = tu_shared_data();
	if (!sd)
		skip();
	char p[4096];
	snprintf(p, sizeof p, "%s/tokenizers/%s", sd, tokdir);
	qc_tok *t;
	tu_assert_rc(qc_tok_load(&t, p), 0);
	run_vectors_tok(t, name, roundtrip, bos);
	qc_tok_free(t);
}

static void test_vectors_gpt2(void **s) { (void)s; run_vectors("gpt2", "gpt-2", 1, -1); }
static void test_vectors_llama3(void **s) { (void)s; run_vectors("llama3", "llama-bpe", 1, 128000); }
static void test_vectors_llama_spm(void **s) { (void)s; run_vectors("tinyllama", "llama-spm", 1, 1); }
static void test_vectors_phi3(void **s) { (void)s; run_vectors("phi-3-mini", "phi-3", 1, -1); }
/* special tokens in the text: decoding gives "</s> " back for "</s>", as
 * the tokenizers library does, so only the ids are compared */
static void test_vectors_tinyllama_special(void **s) { (void)s; run_vectors("tinyllama", "tinyllama-special", 0, 1); }

/* ------------------------------------------------------------------------ */
/* SentencePiece model files (tokenizer.model)                               */

/* A small model: <unk> <s> </s>, the 256 byte pieces (ids 3..258), then
 * normal pieces with scores chosen so that score order and id order differ
 * ("bc" comes before "ab" but they tie), and a user-defined "<sep>". */
enum { P_SP = 259, P_A, P_B, P_C, P_D, P_BC, P_AB, P_CD, P_SPA, P_SEP, P_N };

static char *small_spm(int byte_fallback, int dummy, int remove_ws, int model_type, size_t *len)
{
	static char bytes[256][7];
	qc_spm_piece p[P_N];
	memset(p, 0, sizeof p);
	p[0] = (qc_spm_piece){ "<unk>", 5, 0, QC_SPM_UNKNOWN };
	p[1] = (qc_spm_piece){ "<s>", 3, 0, QC_SPM_CONTROL };
	p[2] = (qc_spm_piece){ "</s>", 4, 0, QC_SPM_CONTROL };
	for (int b = 0; b < 256; b++) {
		snprintf(bytes[b], sizeof bytes[b], "<0x%02X>", b);
		p[3 + b] = (qc_spm_piece){ bytes[b], 6, 0, QC_SPM_BYTE };
	}
	static const struct { const char *s; float score; int type; } n[] = {
		{ "\xe2\x96\x81", -100, 1 }, { "a", -100, 1 }, { "b", -100, 1 }, { "c", -100, 1 },
		{ "d", -100, 1 }, { "bc", -1, 1 }, { "ab", -1, 1 }, { "cd", -0.5f, 1 },
		{ "\xe2\x96\x81" "a", -2, 1 }, { "<sep>", 0, QC_SPM_USER_DEFINED },
	};
	for (int i = 0; i < P_N - P_SP; i++)
		p[P_SP + i] = (qc_spm_piece){ n[i].s, (uint32_t)strlen(n[i].s), n[i].score, n[i].type };
	qc_spm m;
	memset(&m, 0, sizeof m);
	m.pieces = p;
	m.n_pieces = P_N;
	m.model_type = model_type;
	m.byte_fallback = byte_fallback;
	m.unk_id = 0;
	m.bos_id = 1;
	m.eos_id = 2;
	snprintf(m.name, sizeof m.name, "identity");
	m.add_dummy_prefix = dummy;
	m.remove_extra_ws = remove_ws;
	m.escape_ws = 1;
	if (!byte_fallback)   /* byte pieces need byte_fallback: make them control ones */
		for (int b = 0; b < 256; b++)
			p[3 + b].type = QC_SPM_CONTROL;
	char *d;
	tu_assert_rc(qc_spm_write(&m, &d, len), 0);
	return d;
}

static qc_tok *load_spm(const char *d, size_t len, const char *config)
{
	qc_tok *t = NULL;
	tu_assert_rc(qc_tok_load_spm_mem(&t, d, len, config, config ? strlen(config) : 0, "t.model"), 0);
	return t;
}

static void test_spm_model_small(void **state)
{
	(void)state;
	size_t len;
	char *d = small_spm(1, 1, 0, QC_SPM_BPE, &len);
	qc_tok *t = load_spm(d, len, NULL);
	assert_int_equal(qc_tok_type(t), QC_TOK_SENTENCEPIECE);
	assert_int_equal(qc_tok_vocab_size(t), P_N);
	/* ▁abc: ▁a (-2), ab (-1), bc (-1): the tie goes to the leftmost, ab */
	expect_ids(t, TXT("abc"), 0, IDS(P_SP, P_AB, P_C));
	/* ▁bcd: bc (-1) loses to cd (-0.5) */
	expect_ids(t, TXT("bcd"), 0, IDS(P_SP, P_B, P_CD));
	/* user-defined pieces are never merged and the text after them gets
	 * no dummy prefix; control pieces are special tokens (transformers) */
	expect_ids(t, TXT("a<sep>b"), 0, IDS(P_SPA, P_SEP, P_B));
	expect_ids(t, TXT("a</s>b"), 0, IDS(P_SPA, 2, P_SP, P_B));
	/* unknown characters: byte pieces; a byte that is not UTF-8: U+FFFD */
	expect_ids(t, TXT("\xc3\xa9"), 0, IDS(P_SP, 3 + 0xC3, 3 + 0xA9));
	expect_ids(t, TXT("\xff"), 0, IDS(P_SP, 3 + 0xEF, 3 + 0xBF, 3 + 0xBD));
	/* spaces are kept (remove_extra_whitespaces false): ▁▁a▁▁ */
	expect_ids(t, TXT(" a  "), 0, IDS(P_SP, P_SPA, P_SP, P_SP));
	expect_ids(t, TXT(""), 0, NULL, 0);
	expect_ids(t, TXT("a"), QC_TOK_ADD_SPECIAL, IDS(1, P_SPA));
	assert_int_equal(qc_tok_bos(t), 1);
	assert_int_equal(qc_tok_eos(t), 2);
	expect_roundtrip(t, TXT("abc bcd  \xc3\xa9\n a"));
	expect_roundtrip(t, TXT(" x"));
	qc_tok_free(t);
	/* legacy: false, as transformers: the dummy prefix on the first
	 * segment only; add_bos_token false */
	t = load_spm(d, len, "{\"legacy\": false, \"add_bos_token\": false}");
	expect_ids(t, TXT("a</s>b"), 0, IDS(P_SPA, 2, P_B));
	expect_ids(t, TXT("a"), QC_TOK_ADD_SPECIAL, IDS(P_SPA));
	qc_tok_free(t);
	free(d);

	/* remove_extra_whitespaces: "  a   b  " is "▁a▁b" */
	d = small_spm(1, 1, 1, QC_SPM_BPE, &len);
	t = load_spm(d, len, NULL);
	expect_ids(t, TXT("  a   b  "), 0, IDS(P_SPA, P_SP, P_B));
	expect_ids(t, TXT("   "), 0, NULL, 0);
	qc_tok_free(t);
	free(d);
	/* no dummy prefix: "abc" is ab c */
	d = small_spm(1, 0, 0, QC_SPM_BPE, &len);
	t = load_spm(d, len, NULL);
	expect_ids(t, TXT("abc"), 0, IDS(P_AB, P_C));
	expect_roundtrip(t, TXT(" abc d"));
	qc_tok_free(t);
	free(d);
	/* no byte fallback: a run of unknown characters is one <unk> */
	d = small_spm(0, 1, 0, QC_SPM_BPE, &len);
	t = load_spm(d, len, NULL);
	expect_ids(t, TXT("\xc3\xa9\xc3\xa8" "a"), 0, IDS(P_SP, 0, P_A));
	qc_tok_free(t);
	free(d);
}

/* The reader, field by field, on bytes written by hand from
 * sentencepiece_model.proto (independent of qc_spm_write). */
static void test_spm_parse_bytes(void **state)
{
	(void)state;
	static const unsigned char b[] = {
		0x0A, 14, 0x0A, 5, '<', 'u', 'n', 'k', '>', 0x15, 0, 0, 0, 0, 0x18, 2, /* <unk>, UNKNOWN */
		0x0A, 8, 0x0A, 1, 'a', 0x15, 0x00, 0x00, 0x80, 0xBF,                     /* "a", -1.0 */
		0x12, 14, 0x18, 2, 0xC8, 0x02, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01, /* BPE, bos_id -1 */
		0x1A, 2, 0x18, 0,                                                        /* add_dummy_prefix false */
		0xA2, 0x06, 1, 'x',                                                      /* field 100: skipped */
	};
	qc_spm *m;
	tu_assert_rc(qc_spm_parse(&m, b, sizeof b, "hand"), 0);
	assert_int_equal(m->n_pieces, 2);
	assert_string_equal(m->pieces[0].s, "<unk>");
	assert_int_equal(m->pieces[0].type, QC_SPM_UNKNOWN);
	assert_string_equal(m->pieces[1].s, "a");
	assert_true(m->pieces[1].score == -1.0f);
	assert_int_equal(m->pieces[1].type, QC_SPM_NORMAL);
	assert_int_equal(m->model_type, QC_SPM_BPE);
	assert_int_equal(m->bos_id, -1);
	assert_int_equal(m->eos_id, 2);
	assert_int_equal(m->add_dummy_prefix, 0);
	assert_int_equal(m->remove_extra_ws, 1);
	assert_int_equal(m->escape_ws, 1);
	qc_spm_free(m);
}

static int spm_rc(const void *d, size_t len)
{
	qc_tok *t = NULL;
	int rc = qc_tok_load_spm_mem(&t, d, len, NULL, 0, "bad.model");
	assert_true(rc < 0 || t != NULL);
	assert_true(rc >= 0 || t == NULL);
	qc_tok_free(t);
	return rc;
}

/* Malformed files: an error with a message, never a crash (run under
 * the sanitizers with SANITIZE=1, where a stray read or write stops it). */
static void test_spm_malformed(void **state)
{
	(void)state;
	size_t len;
	char *d = small_spm(1, 1, 0, QC_SPM_BPE, &len);
	tu_assert_rc(spm_rc(d, len), 0);
	/* every truncation: cut inside a field is QC_EFORMAT; cut between
	 * pieces loses pieces (and the trainer_spec after them), which the
	 * checks after parsing catch; cut just before the normalizer_spec
	 * (key 0x1A) leaves a valid model with the default normalizer */
	int whole = 0;
	for (size_t n = 0; n < len; n++) {
		int rc = spm_rc(d, n);
		if (rc == 0 && d[n] == 0x1A) {
			whole++;
		} else if (rc != QC_EFORMAT && rc != QC_EUNSUPPORTED) {
			print_error("truncation at %zu of %zu: rc %d\n", n, len, rc);
			fail();
		}
	}
	assert_int_equal(whole, 1);
	/* random corruption: any answer but a crash */
	qc_rng r;
	qc_rng_seed(&r, 5);
	char *c = malloc(len);
	assert_non_null(c);
	for (int it = 0; it < 3000; it++) {
		memcpy(c, d, len);
		int k = 1 + (int)qc_rng_below(&r, 4);
		for (int j = 0; j < k; j++)
			c[qc_rng_below(&r, len)] = (char)qc_rng_below(&r, 256);
		int rc = spm_rc(c, len);
		assert_true(rc == 0 || rc == QC_EFORMAT || rc == QC_EUNSUPPORTED);
	}
	free(c);
	free(d);
	static const unsigned char varint11[] = { 0x0A, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01 };
	tu_assert_rc(spm_rc(varint11, sizeof varint11), QC_EFORMAT);
	assert_non_null(strstr(qc_errmsg(), "varint"));
	static const unsigned char past[] = { 0x0A, 0x7F, 0x0A, 0x01, 'a' };
	tu_assert_rc(spm_rc(past, sizeof past), QC_EFORMAT);
	assert_non_null(strstr(qc_errmsg(), "past the end"));
	static const unsigned char group[] = { 0x0B, 0x0C };
	tu_assert_rc(spm_rc(group, sizeof group), QC_EFORMAT);
	static const unsigned char empty_piece[] = { 0x0A, 0x02, 0x0A, 0x00 };
	tu_assert_rc(spm_rc(empty_piece, sizeof empty_piece), QC_EFORMAT);
	assert_non_null(strstr(qc_errmsg(), "piece 0"));
	tu_assert_rc(spm_rc("", 0), QC_EFORMAT);
	/* a well-formed file of something we do not implement, by name */
	d = small_spm(1, 1, 0, QC_SPM_UNIGRAM, &len);
	tu_assert_rc(spm_rc(d, len), QC_EUNSUPPORTED);
	assert_non_null(strstr(qc_errmsg(), "'Unigram'"));
	free(d);
	/* no unknown piece: "a" alone, BPE */
	static const unsigned char no_unk[] = { 0x0A, 0x03, 0x0A, 0x01, 'a', 0x12, 0x02, 0x18, 0x02 };
	tu_assert_rc(spm_rc(no_unk, sizeof no_unk), QC_EFORMAT);
	assert_non_null(strstr(qc_errmsg(), "unknown piece"));
	/* a normal piece "ae" whose "e" is no piece: SentencePiece could merge
	 * the unknown "e", the engine cannot (refused, not approximated) */
	static const unsigned char orphan[] = { 0x0A, 0x09, 0x0A, 0x05, '<', 'u', 'n', 'k', '>', 0x18, 0x02,
	                                        0x0A, 0x03, 0x0A, 0x01, 'a', 0x0A, 0x04, 0x0A, 0x02, 'a', 'e',
	                                        0x12, 0x02, 0x18, 0x02 };
	tu_assert_rc(spm_rc(orphan, sizeof orphan), QC_EUNSUPPORTED);
	assert_non_null(strstr(qc_errmsg(), "piece 2 holds a character that is not a piece"));
	/* a precompiled charsmap (nmt_nfkc) */
	static const unsigned char cmap[] = { 0x0A, 0x09, 0x0A, 0x05, '<', 'u', 'n', 'k', '>', 0x18, 0x02,
	                                      0x12, 0x02, 0x18, 0x02, 0x1A, 0x03, 0x12, 0x01, 'x' };
	tu_assert_rc(spm_rc(cmap, sizeof cmap), QC_EUNSUPPORTED);
	assert_non_null(strstr(qc_errmsg(), "charsmap"));
	/* byte_fallback without the byte pieces */
	static const unsigned char nobytes[] = { 0x0A, 0x09, 0x0A, 0x05, '<', 'u', 'n', 'k', '>', 0x18, 0x02,
	                                         0x12, 0x05, 0x18, 0x02, 0x98, 0x02, 0x01 };
	tu_assert_rc(spm_rc(nobytes, sizeof nobytes), QC_EFORMAT);
	assert_non_null(strstr(qc_errmsg(), "256 byte pieces"));
}

/* A tokenizer.model of the Llama-2 vocabulary, from the tokenizer.json
 * transformers converted it to: each piece gets the score -(rank of the
 * first merge that makes it) (the converter ordered the merges by score),
 * the others 0; <unk> is UNKNOWN, the other added specials CONTROL, <0xNN>
 * BYTE. Written to DIR/tokenizer.model. */
static void spm_from_json(const char *json_path, const char *dir)
{
	json_error_t e;
	json_t *root = json_load_file(json_path, 0, &e);
	assert_non_null(root);
	json_t *model = json_object_get(root, "model"), *vocab = json_object_get(model, "vocab");
	json_t *merges = json_object_get(model, "merges");
	size_t n = json_object_size(vocab);
	qc_spm_piece *p = calloc(n, sizeof *p);
	assert_non_null(p);
	const char *k;
	json_t *v;
	json_object_foreach(vocab, k, v) {
		json_int_t id = json_integer_value(v);
		assert_true(id >= 0 && (size_t)id < n);
		p[id] = (qc_spm_piece){ k, (uint32_t)strlen(k), 0, QC_SPM_NORMAL };
		if (strlen(k) == 6 && strncmp(k, "<0x", 3) == 0)
			p[id].type = QC_SPM_BYTE;
	}
	size_t i;
	json_array_foreach(json_object_get(root, "added_tokens"), i, v) {
		json_int_t id = json_integer_value(json_object_get(v, "id"));
		if ((size_t)id < n)
			p[id].type = strcmp(json_string_value(json_object_get(v, "content")), "<unk>") == 0
			                 ? QC_SPM_UNKNOWN : QC_SPM_CONTROL;
	}
	float *score = calloc(n, sizeof *score);
	char *cat = malloc(4096);
	assert_non_null(score);
	assert_non_null(cat);
	json_array_foreach(merges, i, v) {
		const char *s = json_string_value(v);
		const char *sp = strchr(s, ' ');
		assert_non_null(sp);
		snprintf(cat, 4096, "%.*s%s", (int)(sp - s), s, sp + 1);
		json_int_t id = json_integer_value(json_object_get(vocab, cat));
		if (score[id] == 0)
			score[id] = -(float)i - 1;
	}
	for (size_t j = 0; j < n; j++)
		p[j].score = score[j];
	qc_spm m;
	memset(&m, 0, sizeof m);
	m.pieces = p;
	m.n_pieces = (int64_t)n;
	m.model_type = QC_SPM_BPE;
	m.byte_fallback = json_is_true(json_object_get(model, "byte_fallback"));
	m.unk_id = 0;
	m.bos_id = 1;
	m.eos_id = 2;
	snprintf(m.name, sizeof m.name, "identity");
	m.add_dummy_prefix = 1;
	m.escape_ws = 1;
	char *d;
	size_t len;
	tu_assert_rc(qc_spm_write(&m, &d, &len), 0);
	snprintf(cat, 4096, "%s/tokenizer.model", dir);
	tu_write(cat, d, len);
	free(d);
	free(cat);
	free(score);
	free(p);
	json_decref(root);
}

/* llama-spm vectors from a tokenizer.model (the ids of the tokenizer.json
 * they were made with), through qc_tok_load's search for the file; and the
 * tinyllama-special ones, which keep the dummy prefix after </s> (legacy). */
static void test_vectors_llama_spm_model(void **state)
{
	(void)state;
	const char *sd = tu_shared_data();
	if (!sd)
		skip();
	char p[4096], *dir = tu_path("spm-llama");
	assert_int_equal(mkdir(dir, 0755), 0);
	snprintf(p, sizeof p, "%s/tokenizers/tinyllama/tokenizer.json", sd);
	spm_from_json(p, dir);
	qc_tok *t;
	tu_assert_rc(qc_tok_load(&t, dir), 0);
	assert_int_equal(qc_tok_type(t), QC_TOK_SENTENCEPIECE);
	assert_non_null(strstr(qc_tok_file(t), "tokenizer.model"));
	run_vectors_tok(t, "llama-spm", 1, 1);
	run_vectors_tok(t, "tinyllama-special", 0, 1);
	/* the same ids as the tokenizer.json on the bundled corpus and on random
	 * mixtures of its pieces with spaces, digits, CJK, emoji and accents:
	 * two independent paths (merge ranks against piece scores) */
	qc_tok *j;
	snprintf(p, sizeof p, "%s/tokenizers/tinyllama", sd);
	tu_assert_rc(qc_tok_load(&j, p), 0);
	qc_ids a = { 0 }, b = { 0 };
	tu_assert_rc(qc_tok_encode(t, qc_builtin_corpus, qc_builtin_corpus_len, 0, &a), 0);
	tu_assert_rc(qc_tok_encode(j, qc_builtin_corpus, qc_builtin_corpus_len, 0, &b), 0);
	assert_int_equal(a.n, b.n);
	assert_memory_equal(a.v, b.v, a.n * sizeof *a.v);
	static const char *const extra[] = { " ", "  ", "\n", "\t", "123", "4", "\xe4\xb8\xad\xe6\x96\x87",
	                                     "\xf0\x9f\xa6\x99", "e\xcc\x81", "\xc3\xa9", "</s>", "\xe2\x96\x81" };
	qc_rng r;
	qc_rng_seed(&r, 17);
	for (int it = 0; it < 300; it++) {
		char text[600];
		size_t n = 0;
		for (int k = (int)qc_rng_below(&r, 12); k >= 0; k--) {
			if (qc_rng_below(&r, 2)) {
				const char *e = extra[qc_rng_below(&r, sizeof extra / sizeof extra[0])];
				memcpy(text + n, e, strlen(e));
				n += strlen(e);
			} else {
				size_t l = 1 + qc_rng_below(&r, 40), o = qc_rng_below(&r, qc_builtin_corpus_len - l);
				memcpy(text + n, qc_builtin_corpus + o, l);
				n += l;
			}
		}
		a.n = b.n = 0;
		tu_assert_rc(qc_tok_encode(t, text, n, 0, &a), 0);
		tu_assert_rc(qc_tok_encode(j, text, n, 0, &b), 0);
		if (a.n != b.n || memcmp(a.v, b.v, a.n * sizeof *a.v) != 0) {
			print_error("tokenizer.model and tokenizer.json differ on '%.*s'\n", (int)n, text);
			fail();
		}
	}
	qc_ids_release(&a);
	qc_ids_release(&b);
	qc_tok_free(j);
	qc_tok_free(t);
	/* with the model's tokenizer_config.json (legacy: false) */
	size_t cl;
	snprintf(p, sizeof p, "%s/tokenizers/tinyllama/tokenizer_config.json", sd);
	char *cfg = tu_read(p, &cl);
	snprintf(p, sizeof p, "%s/tokenizer_config.json", dir);
	tu_write(p, cfg, cl);
	free(cfg);
	tu_assert_rc(qc_tok_load(&t, dir), 0);
	run_vectors_tok(t, "llama-spm", 1, 1);
	expect_ids(t, TXT("abc</s> def ghi"), 0, IDS(25638, 2, 822, 330, 2918));
	qc_tok_free(t);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bytelevel_small),
		cmocka_unit_test(test_bytelevel_config),
		cmocka_unit_test(test_bytelevel_invalid_utf8),
		cmocka_unit_test(test_merge_order),
		cmocka_unit_test(test_split_behaviors),
		cmocka_unit_test(test_spm_small),
		cmocka_unit_test(test_spm_cut_matches_reference),
		cmocka_unit_test(test_normalizers),
		cmocka_unit_test(test_unorm_fast_matches_reference),
		cmocka_unit_test(test_pre_tokenizers),
		cmocka_unit_test(test_pre_after_bytelevel),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_spm_model_small),
		cmocka_unit_test(test_spm_parse_bytes),
		cmocka_unit_test(test_spm_malformed),
		cmocka_unit_test(test_vectors_gpt2),
		cmocka_unit_test(test_vectors_llama3),
		cmocka_unit_test(test_vectors_llama_spm),
		cmocka_unit_test(test_vectors_phi3),
		cmocka_unit_test(test_vectors_tinyllama_special),
		cmocka_unit_test(test_vectors_llama_spm_model),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
