/* test_tok.c - the tokenizer: real tokenizers against the tokenizers
 * library's reference ids (shared data, skipped when absent), and small
 * tokenizer.json files written here for both BPE families, worked by hand. */
#include "tutil.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qc_err.h"
#include "qc_rng.h"
#include "qc_tok.h"

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
	json_t *vocab = json_object();
	char sp[4];
	for (int b = 0; b < 256; b++) {
		bl_spell(b, sp);
		json_object_set_new(vocab, sp, json_integer(b));
	}
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
	json_t *vocab = json_object();
	char sp[4];
	for (int b = 0; b < 256; b++) {
		bl_spell(b, sp);
		json_object_set_new(vocab, sp, json_integer(b));
	}
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
	json_t *vocab = json_object();
	char sp[4];
	for (int b = 0; b < 256; b++) {
		bl_spell(b, sp);
		json_object_set_new(vocab, sp, json_integer(b));
	}
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
	assert_int_equal(load_rc("{\"pre_tokenizer\": {\"type\": \"BertPreTokenizer\"}, "
	                         "\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}"),
	                 QC_EUNSUPPORTED);
	assert_non_null(strstr(qc_errmsg(), "'BertPreTokenizer'"));
	assert_int_equal(load_rc("{\"normalizer\": {\"type\": \"Lowercase\"}, "
	                         "\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}"),
	                 QC_EUNSUPPORTED);
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

/* Encode every case of vectors/NAME.inp and compare with NAME.out; with
 * roundtrip, decode(encode(x)) must give x back. */
static void run_vectors(const char *tokdir, const char *name, int roundtrip, int32_t bos)
{
	const char *sd = tu_shared_data();
	if (!sd)
		skip();
	char p[4096];
	snprintf(p, sizeof p, "%s/tokenizers/%s", sd, tokdir);
	qc_tok *t;
	tu_assert_rc(qc_tok_load(&t, p), 0);
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
	qc_tok_free(t);
}

static void test_vectors_gpt2(void **s) { (void)s; run_vectors("gpt2", "gpt-2", 1, -1); }
static void test_vectors_llama3(void **s) { (void)s; run_vectors("llama3", "llama-bpe", 1, 128000); }
static void test_vectors_llama_spm(void **s) { (void)s; run_vectors("tinyllama", "llama-spm", 1, 1); }
static void test_vectors_phi3(void **s) { (void)s; run_vectors("phi-3-mini", "phi-3", 1, -1); }
/* special tokens in the text: decoding gives "</s> " back for "</s>", as
 * the tokenizers library does, so only the ids are compared */
static void test_vectors_tinyllama_special(void **s) { (void)s; run_vectors("tinyllama", "tinyllama-special", 0, 1); }

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
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_vectors_gpt2),
		cmocka_unit_test(test_vectors_llama3),
		cmocka_unit_test(test_vectors_llama_spm),
		cmocka_unit_test(test_vectors_phi3),
		cmocka_unit_test(test_vectors_tinyllama_special),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
