/*
 * test_manifest.c - quant_manifest.json: layout, round trip, fingerprint,
 * inheritance, strict parsing.
 */
#include "tutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qc_err.h"
#include "qc_hash.h"
#include "qc_manifest.h"

static qc_h128 h128(uint64_t hi, uint64_t lo)
{
	return (qc_h128){ .hi = hi, .lo = lo };
}

/* A small manifest, tensors added in the order given by perm. */
static qc_manifest *sample(const int perm[3])
{
	static const char *names[3] = { "model.norm.weight", "lm_head.weight", "model.embed_tokens.weight" };
	static const int64_t shapes[3][2] = { { 64, 0 }, { 256, 64 }, { 256, 64 } };
	static const int ndims[3] = { 1, 2, 2 };
	static const uint64_t hashes[3] = { 0x1111, 0xabcdef0123456789ull, 0x2222 };
	qc_manifest *m = qc_manifest_new();
	assert_non_null(m);
	for (int k = 0; k < 3; k++) {
		int i = perm[k];
		tu_assert_rc(qc_manifest_set_tensor(m, names[i], QC_DT_BF16, ndims[i], shapes[i], hashes[i]), 0);
	}
	tu_assert_rc(qc_manifest_set_file(m, "model.safetensors", 70000, h128(1, 2)), 0);
	tu_assert_rc(qc_manifest_set_file(m, "config.json", 712, h128(0x99aa06d3014798d8ull, 0x6001c324468d497full)), 0);
	char *argv[] = { "qsynth", "--preset", "tiny", "-o", "out dir/\"x\"" };
	tu_assert_rc(qc_manifest_add_history(m, "qsynth", "0.1.0", 5, argv), 0);
	tu_assert_rc(qc_manifest_add_token_set(m, "calibration", h128(3, 4)), 0);
	tu_assert_rc(qc_manifest_update_fingerprint(m), 0);
	tu_assert_rc(qc_manifest_set_base(m, qc_manifest_get_fingerprint(m), "synthetic"), 0);
	return m;
}

/* The fingerprint rule of qc_manifest.h, assembled here by hand. */
static void expected_fingerprint(char out[33])
{
	static const char rec[] =
		"lm_head.weight\0BF16\0" "256,64\0" "abcdef0123456789\n"
		"model.embed_tokens.weight\0BF16\0" "256,64\0" "0000000000002222\n"
		"model.norm.weight\0BF16\0" "64\0" "0000000000001111\n";
	qc_h128_hex(qc_xxh3_128(rec, sizeof rec - 1), out);
}

static void test_layout(void **state)
{
	(void)state;
	static const int perm[3] = { 0, 1, 2 };
	qc_manifest *m = sample(perm);
	char fp[33];
	expected_fingerprint(fp);
	assert_string_equal(qc_manifest_get_fingerprint(m), fp);
	char *json;
	size_t len;
	tu_assert_rc(qc_manifest_to_json(m, &json, &len), 0);
	assert_int_equal(len, strlen(json));

	char want[4096];
	snprintf(want, sizeof want,
	         "{\n"
	         "  \"base\": {\n    \"fingerprint\": \"%s\",\n    \"source\": \"synthetic\"\n  },\n"
	         "  \"files\": {\n"
	         "    \"config.json\": {\n      \"size\": 712,\n      \"xxh3_128\": \"99aa06d3014798d86001c324468d497f\"\n    },\n"
	         "    \"model.safetensors\": {\n      \"size\": 70000,\n      \"xxh3_128\": \"00000000000000010000000000000002\"\n    }\n"
	         "  },\n"
	         "  \"fingerprint\": \"%s\",\n"
	         "  \"format\": \"qtoolkit-manifest\",\n"
	         "  \"history\": [\n    {\n      \"argv\": [\n        \"qsynth\",\n        \"--preset\",\n"
	         "        \"tiny\",\n        \"-o\",\n        \"out dir/\\\"x\\\"\"\n      ],\n"
	         "      \"tool\": \"qsynth\",\n      \"version\": \"0.1.0\"\n    }\n  ],\n"
	         "  \"self_xxh3_128\": \"00000000000000000000000000000000\",\n"
	         "  \"tensors\": {\n"
	         "    \"lm_head.weight\": {\n      \"dtype\": \"BF16\",\n      \"shape\": [\n        256,\n        64\n      ],\n"
	         "      \"xxh3_64\": \"abcdef0123456789\"\n    },\n"
	         "    \"model.embed_tokens.weight\": {\n      \"dtype\": \"BF16\",\n      \"shape\": [\n        256,\n        64\n      ],\n"
	         "      \"xxh3_64\": \"0000000000002222\"\n    },\n"
	         "    \"model.norm.weight\": {\n      \"dtype\": \"BF16\",\n      \"shape\": [\n        64\n      ],\n"
	         "      \"xxh3_64\": \"0000000000001111\"\n    }\n"
	         "  },\n"
	         "  \"token_sets\": [\n    {\n      \"role\": \"calibration\",\n"
	         "      \"xxh3_128\": \"00000000000000030000000000000004\"\n    }\n  ],\n"
	         "  \"version\": 1\n"
	         "}\n", fp, fp);
	/* the self hash: XXH3-128 of the bytes with its own digits as zeros */
	char *self = strstr(want, "\"self_xxh3_128\": \"");
	assert_non_null(self);
	self += strlen("\"self_xxh3_128\": \"");
	char hex[33];
	qc_h128_hex(qc_xxh3_128(want, strlen(want)), hex);
	memcpy(self, hex, 32);
	assert_string_equal(json, want);
	free(json);

	/* an empty manifest still has every required key */
	qc_manifest *e = qc_manifest_new();
	tu_assert_rc(qc_manifest_to_json(e, &json, NULL), 0);
	assert_non_null(strstr(json, "{\n  \"files\": {},\n  \"format\": \"qtoolkit-manifest\",\n  \"history\": [],\n"
	                             "  \"self_xxh3_128\": \""));
	assert_non_null(strstr(json, "\",\n  \"tensors\": {},\n  \"token_sets\": [],\n  \"version\": 1\n}\n"));
	qc_manifest *e2;
	tu_assert_rc(qc_manifest_parse(&e2, json, strlen(json)), 0);
	assert_int_equal(qc_manifest_tensor_count(e2), 0);
	assert_null(qc_manifest_get_fingerprint(e2));
	assert_null(qc_manifest_base(e2));
	free(json);
	qc_manifest_free(e);
	qc_manifest_free(e2);
	qc_manifest_free(m);
	qc_manifest_free(NULL);
}

static void test_roundtrip(void **state)
{
	(void)state;
	static const int perm[3] = { 2, 0, 1 };
	qc_manifest *m = sample(perm);
	char *a, *b;
	size_t la, lb;
	tu_assert_rc(qc_manifest_to_json(m, &a, &la), 0);
	qc_manifest *p;
	tu_assert_rc(qc_manifest_parse(&p, a, la), 0);
	tu_assert_rc(qc_manifest_to_json(p, &b, &lb), 0);
	assert_int_equal(la, lb);
	assert_memory_equal(a, b, la);

	/* and everything can be read back */
	assert_int_equal(qc_manifest_file_count(p), 2);
	assert_string_equal(qc_manifest_file_name(p, 0), "config.json");
	assert_string_equal(qc_manifest_file_name(p, 1), "model.safetensors");
	assert_null(qc_manifest_file_name(p, 2));
	uint64_t size;
	qc_h128 h;
	tu_assert_rc(qc_manifest_file(p, "config.json", &size, &h), 0);
	assert_int_equal(size, 712);
	assert_true(qc_h128_eq(h, qc_xxh3_128(NULL, 0)));
	tu_assert_rc(qc_manifest_file(p, "missing.json", NULL, NULL), QC_ENOTFOUND);
	assert_string_equal(qc_errmsg(), "file 'missing.json' is not in the manifest");

	assert_int_equal(qc_manifest_tensor_count(p), 3);
	assert_string_equal(qc_manifest_tensor_name(p, 0), "lm_head.weight");
	assert_string_equal(qc_manifest_tensor_name(p, 2), "model.norm.weight");
	qc_dtype dt;
	int nd;
	int64_t shape[QC_MAX_DIMS];
	uint64_t th;
	tu_assert_rc(qc_manifest_tensor(p, "lm_head.weight", &dt, &nd, shape, &th), 0);
	assert_int_equal(dt, QC_DT_BF16);
	assert_int_equal(nd, 2);
	assert_int_equal(shape[0], 256);
	assert_int_equal(shape[1], 64);
	assert_true(th == 0xabcdef0123456789ull);
	tu_assert_rc(qc_manifest_tensor(p, "nope", NULL, NULL, NULL, NULL), QC_ENOTFOUND);

	assert_int_equal(qc_manifest_history_count(p), 1);
	assert_string_equal(qc_manifest_history_tool(p, 0), "qsynth");
	assert_string_equal(qc_manifest_history_version(p, 0), "0.1.0");
	assert_null(qc_manifest_history_tool(p, 1));
	int argc;
	char *const *argv;
	tu_assert_rc(qc_manifest_history_argv(p, 0, &argc, &argv), 0);
	assert_int_equal(argc, 5);
	assert_string_equal(argv[4], "out dir/\"x\"");
	tu_assert_rc(qc_manifest_history_argv(p, 1, &argc, &argv), QC_ENOTFOUND);
	assert_int_equal(qc_manifest_token_set_count(p), 1);
	const char *role;
	tu_assert_rc(qc_manifest_token_set(p, 0, &role, &h), 0);
	assert_string_equal(role, "calibration");
	assert_true(qc_h128_eq(h, h128(3, 4)));
	assert_string_equal(qc_manifest_base(p), qc_manifest_get_fingerprint(m));
	assert_string_equal(qc_manifest_base_source(p), "synthetic");
	free(a);
	free(b);
	qc_manifest_free(p);
	qc_manifest_free(m);
}

static void test_fingerprint(void **state)
{
	(void)state;
	/* independent of insertion order: same fingerprint, same bytes */
	static const int perms[6][3] = { { 0, 1, 2 }, { 0, 2, 1 }, { 1, 0, 2 }, { 1, 2, 0 }, { 2, 0, 1 }, { 2, 1, 0 } };
	char *first = NULL;
	char fp[33];
	expected_fingerprint(fp);
	for (int i = 0; i < 6; i++) {
		qc_manifest *m = sample(perms[i]);
		char got[33], *json;
		tu_assert_rc(qc_manifest_fingerprint(m, got), 0);
		assert_string_equal(got, fp);
		tu_assert_rc(qc_manifest_to_json(m, &json, NULL), 0);
		if (!first)
			first = json;
		else {
			assert_string_equal(json, first);
			free(json);
		}
		qc_manifest_free(m);
	}
	free(first);

	/* any change of a tensor's name, dtype, shape or hash changes it; files
	 * and history do not enter it */
	static const int perm[3] = { 0, 1, 2 };
	qc_manifest *m = sample(perm);
	char a[33], b[33];
	int64_t s2[2] = { 256, 64 }, s3[3] = { 256, 64, 1 }, s1[1] = { 16384 };
	tu_assert_rc(qc_manifest_fingerprint(m, a), 0);
	tu_assert_rc(qc_manifest_set_file(m, "extra.txt", 3, h128(5, 6)), 0);
	tu_assert_rc(qc_manifest_add_history(m, "qgptq", "0.1.0", 0, NULL), 0);
	tu_assert_rc(qc_manifest_fingerprint(m, b), 0);
	assert_string_equal(a, b);
	tu_assert_rc(qc_manifest_set_tensor(m, "lm_head.weight", QC_DT_F16, 2, s2, 0xabcdef0123456789ull), 0);
	tu_assert_rc(qc_manifest_fingerprint(m, b), 0);
	assert_string_not_equal(a, b);
	tu_assert_rc(qc_manifest_set_tensor(m, "lm_head.weight", QC_DT_BF16, 3, s3, 0xabcdef0123456789ull), 0);
	tu_assert_rc(qc_manifest_fingerprint(m, b), 0);
	assert_string_not_equal(a, b);
	tu_assert_rc(qc_manifest_set_tensor(m, "lm_head.weight", QC_DT_BF16, 2, s2, 0xabcdef0123456788ull), 0);
	tu_assert_rc(qc_manifest_fingerprint(m, b), 0);
	assert_string_not_equal(a, b);
	/* back to the original: same fingerprint again, and still 3 tensors */
	tu_assert_rc(qc_manifest_set_tensor(m, "lm_head.weight", QC_DT_BF16, 2, s2, 0xabcdef0123456789ull), 0);
	tu_assert_rc(qc_manifest_fingerprint(m, b), 0);
	assert_string_equal(a, b);
	assert_int_equal(qc_manifest_tensor_count(m), 3);
	/* the NUL separators matter: "a" + shape [16384] differs from "a1" ... */
	qc_manifest *x = qc_manifest_new(), *y = qc_manifest_new();
	tu_assert_rc(qc_manifest_set_tensor(x, "w", QC_DT_BF16, 1, s1, 1), 0);
	int64_t s1b[2] = { 16, 384 };
	tu_assert_rc(qc_manifest_set_tensor(y, "w", QC_DT_BF16, 2, s1b, 1), 0);
	tu_assert_rc(qc_manifest_fingerprint(x, a), 0);
	tu_assert_rc(qc_manifest_fingerprint(y, b), 0);
	assert_string_not_equal(a, b);
	/* a scalar tensor contributes an empty shape field */
	qc_manifest *z = qc_manifest_new();
	tu_assert_rc(qc_manifest_set_tensor(z, "s", QC_DT_F32, 0, NULL, 0x10), 0);
	tu_assert_rc(qc_manifest_fingerprint(z, a), 0);
	static const char rec[] = "s\0F32\0\0" "0000000000000010\n";
	qc_h128_hex(qc_xxh3_128(rec, sizeof rec - 1), b);
	assert_string_equal(a, b);
	/* no tensors: the hash of nothing */
	qc_manifest *e = qc_manifest_new();
	tu_assert_rc(qc_manifest_fingerprint(e, a), 0);
	assert_string_equal(a, "99aa06d3014798d86001c324468d497f");
	qc_manifest_free(e);
	qc_manifest_free(x);
	qc_manifest_free(y);
	qc_manifest_free(z);
	qc_manifest_free(m);
}

static void test_inherit(void **state)
{
	(void)state;
	static const int perm[3] = { 0, 1, 2 };
	qc_manifest *src = sample(perm);
	qc_manifest *dst = qc_manifest_new();
	char *argv[] = { "qgptq", "--scheme", "w4a16" };
	tu_assert_rc(qc_manifest_add_history(dst, "old", "0.0.1", 0, NULL), 0);
	tu_assert_rc(qc_manifest_set_file(dst, "own.json", 1, h128(7, 7)), 0);
	int64_t s[2] = { 8, 8 };
	tu_assert_rc(qc_manifest_set_tensor(dst, "own.weight", QC_DT_I8, 2, s, 42), 0);
	tu_assert_rc(qc_manifest_inherit(dst, src), 0);
	tu_assert_rc(qc_manifest_add_history(dst, "qgptq", "0.1.0", 3, argv), 0);

	/* history, base and token sets come from src; dst's earlier history is replaced */
	assert_int_equal(qc_manifest_history_count(dst), 2);
	assert_string_equal(qc_manifest_history_tool(dst, 0), "qsynth");
	assert_string_equal(qc_manifest_history_tool(dst, 1), "qgptq");
	assert_string_equal(qc_manifest_base(dst), qc_manifest_base(src));
	assert_string_equal(qc_manifest_base_source(dst), "synthetic");
	assert_int_equal(qc_manifest_token_set_count(dst), 1);
	/* files and tensors stay dst's own */
	assert_int_equal(qc_manifest_file_count(dst), 1);
	assert_string_equal(qc_manifest_file_name(dst, 0), "own.json");
	assert_int_equal(qc_manifest_tensor_count(dst), 1);
	tu_assert_rc(qc_manifest_tensor(dst, "lm_head.weight", NULL, NULL, NULL, NULL), QC_ENOTFOUND);
	assert_null(qc_manifest_get_fingerprint(dst));
	/* copies, not references: freeing src leaves dst intact */
	qc_manifest_free(src);
	char *json;
	tu_assert_rc(qc_manifest_to_json(dst, &json, NULL), 0);
	assert_non_null(strstr(json, "\"source\": \"synthetic\""));
	assert_non_null(strstr(json, "\"tiny\""));
	free(json);
	/* inheriting from an empty manifest clears the carried parts */
	qc_manifest *empty = qc_manifest_new();
	tu_assert_rc(qc_manifest_inherit(dst, empty), 0);
	assert_int_equal(qc_manifest_history_count(dst), 0);
	assert_null(qc_manifest_base(dst));
	assert_int_equal(qc_manifest_token_set_count(dst), 0);
	assert_int_equal(qc_manifest_file_count(dst), 1);
	qc_manifest_free(empty);
	qc_manifest_free(dst);
}

static void test_setters_reject(void **state)
{
	(void)state;
	qc_manifest *m = qc_manifest_new();
	int64_t s[9] = { 1, 1, 1, 1, 1, 1, 1, 1, 1 }, neg[1] = { -1 };
	tu_assert_rc(qc_manifest_set_tensor(m, "", QC_DT_BF16, 1, s, 0), QC_EINVAL);
	tu_assert_rc(qc_manifest_set_tensor(m, "t", QC_DT_INVALID, 1, s, 0), QC_EINVAL);
	tu_assert_rc(qc_manifest_set_tensor(m, "t", QC_DT_COUNT, 1, s, 0), QC_EINVAL);
	tu_assert_rc(qc_manifest_set_tensor(m, "t", QC_DT_BF16, 9, s, 0), QC_EINVAL);
	tu_assert_rc(qc_manifest_set_tensor(m, "t", QC_DT_BF16, -1, s, 0), QC_EINVAL);
	tu_assert_rc(qc_manifest_set_tensor(m, "t", QC_DT_BF16, 1, neg, 0), QC_EINVAL);
	assert_string_equal(qc_errmsg(), "cannot record tensor 't': negative dimension");
	tu_assert_rc(qc_manifest_set_file(m, "", 1, h128(0, 0)), QC_EINVAL);
	tu_assert_rc(qc_manifest_set_file(m, "a/b", 1, h128(0, 0)), QC_EINVAL);
	assert_string_equal(qc_errmsg(), "cannot record file 'a/b': not a plain file name");
	tu_assert_rc(qc_manifest_set_file(m, "..", 1, h128(0, 0)), QC_EINVAL);
	tu_assert_rc(qc_manifest_set_file(m, QC_MANIFEST_NAME, 1, h128(0, 0)), QC_EINVAL);
	tu_assert_rc(qc_manifest_set_file(m, "big", (uint64_t)INT64_MAX + 1, h128(0, 0)), QC_EINVAL);
	tu_assert_rc(qc_manifest_set_base(m, "99AA06D3014798D86001C324468D497F", NULL), QC_EINVAL);
	tu_assert_rc(qc_manifest_set_base(m, "99aa", NULL), QC_EINVAL);
	tu_assert_rc(qc_manifest_set_base(m, NULL, NULL), QC_EINVAL);
	tu_assert_rc(qc_manifest_add_history(m, "", "1", 0, NULL), QC_EINVAL);
	tu_assert_rc(qc_manifest_add_token_set(m, "", h128(0, 0)), QC_EINVAL);
	assert_int_equal(qc_manifest_tensor_count(m), 0);
	assert_int_equal(qc_manifest_file_count(m), 0);
	/* replacing a file keeps one entry with the new values */
	tu_assert_rc(qc_manifest_set_file(m, "a", 1, h128(1, 1)), 0);
	tu_assert_rc(qc_manifest_set_file(m, "a", 2, h128(2, 2)), 0);
	uint64_t size;
	qc_h128 h;
	tu_assert_rc(qc_manifest_file(m, "a", &size, &h), 0);
	assert_int_equal(qc_manifest_file_count(m), 1);
	assert_int_equal(size, 2);
	assert_true(qc_h128_eq(h, h128(2, 2)));
	/* many entries in reverse order still come out sorted */
	for (int i = 999; i >= 0; i--) {
		char name[32];
		snprintf(name, sizeof name, "model.layers.%03d.w", i);
		tu_assert_rc(qc_manifest_set_tensor(m, name, QC_DT_BF16, 0, NULL, (uint64_t)i), 0);
	}
	assert_int_equal(qc_manifest_tensor_count(m), 1000);
	for (size_t i = 1; i < 1000; i++)
		assert_true(strcmp(qc_manifest_tensor_name(m, i - 1), qc_manifest_tensor_name(m, i)) < 0);
	qc_manifest_free(m);
}

/* A valid manifest with one file and one tensor; malformed variants below
 * replace one piece of it. */
#define GOOD_FILES "\"files\": {\"c.json\": {\"size\": 3, \"xxh3_128\": \"00000000000000010000000000000002\"}}"
#define GOOD_TENSORS "\"tensors\": {\"w\": {\"dtype\": \"BF16\", \"shape\": [2, 3], \"xxh3_64\": \"0000000000000001\"}}"
#define HEAD "{\"format\": \"qtoolkit-manifest\", \"version\": 1, "

/* The self hash catches a change in any byte, provenance included; it must
 * sit where the layout puts it; a manifest without one (written before it
 * existed) is read. */
static void test_self_hash(void **state)
{
	(void)state;
	static const int perm[3] = { 0, 1, 2 };
	qc_manifest *m = sample(perm), *p;
	char *json;
	size_t len;
	tu_assert_rc(qc_manifest_to_json(m, &json, &len), 0);
	char *hist = strstr(json, "\"qsynth\"");
	assert_non_null(hist);
	hist[2] = 'S';   /* argv[0] "qsynth" -> "qSynth": no other hash covers it */
	tu_assert_rc(qc_manifest_parse(&p, json, len), QC_EINTEGRITY);
	assert_non_null(strstr(qc_errmsg(), "was changed after it was written"));
	hist[2] = 's';
	tu_assert_rc(qc_manifest_parse(&p, json, len), 0);
	qc_manifest_free(p);

	/* a digit of the hash itself */
	char *self = strstr(json, "\"self_xxh3_128\": \"") + strlen("\"self_xxh3_128\": \"");
	char keep = self[5];
	self[5] = keep == '0' ? '1' : '0';
	tu_assert_rc(qc_manifest_parse(&p, json, len), QC_EINTEGRITY);
	self[5] = keep;

	/* the same JSON indented otherwise: the hash cannot be placed */
	char *moved = malloc(len + 2);
	assert_non_null(moved);
	size_t at = (size_t)(self - json) - strlen("  \"self_xxh3_128\": \"");
	memcpy(moved, json, at);
	moved[at] = ' ';
	memcpy(moved + at + 1, json + at, len - at);
	tu_assert_rc(qc_manifest_parse(&p, moved, len + 1), QC_EFORMAT);
	assert_non_null(strstr(qc_errmsg(), "is not where the manifest's layout puts it"));
	free(moved);

	/* without the key */
	const char *old = "{\"files\": {}, \"format\": \"qtoolkit-manifest\", \"tensors\": {}, \"version\": 1}";
	tu_assert_rc(qc_manifest_parse(&p, old, strlen(old)), 0);
	qc_manifest_free(p);
	free(json);
	qc_manifest_free(m);
}

static void test_malformed(void **state)
{
	(void)state;
	qc_manifest *m = (qc_manifest *)1;
	const char *good = HEAD GOOD_FILES ", " GOOD_TENSORS "}";
	tu_assert_rc(qc_manifest_parse(&m, good, strlen(good)), 0);
	qc_manifest_free(m);

	static const struct {
		const char *json, *msg;
	} cases[] = {
		{ "", "invalid JSON" },
		{ "{\"format\": ", "invalid JSON" },
		{ HEAD GOOD_FILES ", " GOOD_TENSORS "} trailing", "invalid JSON" },
		{ "[]", "must be a JSON object" },
		{ "42", "must be a JSON object" },
		{ "{\"format\": \"other\", \"version\": 1, " GOOD_FILES ", " GOOD_TENSORS "}", "'format' must be" },
		{ "{\"version\": 1, " GOOD_FILES ", " GOOD_TENSORS "}", "'format' must be" },
		{ "{\"format\": \"qtoolkit-manifest\", \"version\": \"1\", " GOOD_FILES ", " GOOD_TENSORS "}", "'version'" },
		{ "{\"format\": \"qtoolkit-manifest\", \"version\": 0, " GOOD_FILES ", " GOOD_TENSORS "}", "'version'" },
		{ HEAD GOOD_TENSORS "}", "missing key 'files'" },
		{ HEAD GOOD_FILES "}", "missing key 'tensors'" },
		{ HEAD "\"files\": [], " GOOD_TENSORS "}", "'files' must be an object" },
		{ HEAD "\"files\": {\"c.json\": 3}, " GOOD_TENSORS "}", "file 'c.json' must be an object" },
		{ HEAD "\"files\": {\"c.json\": {\"size\": -1, \"xxh3_128\": \"00000000000000010000000000000002\"}}, " GOOD_TENSORS "}",
		  "'size' in file 'c.json' must be a non-negative integer" },
		{ HEAD "\"files\": {\"c.json\": {\"size\": \"3\", \"xxh3_128\": \"00000000000000010000000000000002\"}}, " GOOD_TENSORS "}",
		  "'size' in file 'c.json'" },
		{ HEAD "\"files\": {\"c.json\": {\"size\": 3.0, \"xxh3_128\": \"00000000000000010000000000000002\"}}, " GOOD_TENSORS "}",
		  "'size' in file 'c.json'" },
		{ HEAD "\"files\": {\"c.json\": {\"xxh3_128\": \"00000000000000010000000000000002\"}}, " GOOD_TENSORS "}",
		  "missing key 'size' in file 'c.json'" },
		{ HEAD "\"files\": {\"c.json\": {\"size\": 3}}, " GOOD_TENSORS "}", "missing key 'xxh3_128' in file 'c.json'" },
		{ HEAD "\"files\": {\"c.json\": {\"size\": 3, \"xxh3_128\": \"0000000000000001000000000000000\"}}, " GOOD_TENSORS "}",
		  "'xxh3_128' in file 'c.json' must be 32 lower-case hex digits" },
		{ HEAD "\"files\": {\"c.json\": {\"size\": 3, \"xxh3_128\": \"0000000000000001000000000000000A\"}}, " GOOD_TENSORS "}",
		  "must be 32 lower-case hex digits" },
		{ HEAD "\"files\": {\"c.json\": {\"size\": 3, \"xxh3_128\": 5}}, " GOOD_TENSORS "}", "must be 32 lower-case hex digits" },
		{ HEAD "\"files\": {\"c.json\": {\"size\": 3, \"md5\": \"x\", \"xxh3_128\": \"00000000000000010000000000000002\"}}, " GOOD_TENSORS "}",
		  "unknown key 'md5' in file 'c.json'" },
		{ HEAD "\"files\": {\"\": {\"size\": 3, \"xxh3_128\": \"00000000000000010000000000000002\"}}, " GOOD_TENSORS "}",
		  "file '' is not a plain file name" },
		{ HEAD "\"files\": {\"../../etc/passwd\": {\"size\": 3, \"xxh3_128\": \"00000000000000010000000000000002\"}}, " GOOD_TENSORS "}",
		  "file '../../etc/passwd' is not a plain file name" },
		{ HEAD "\"files\": {\"quant_manifest.json\": {\"size\": 3, \"xxh3_128\": \"00000000000000010000000000000002\"}}, " GOOD_TENSORS "}",
		  "the manifest lists itself" },
		{ HEAD GOOD_FILES ", \"tensors\": {\"w\": {\"dtype\": \"BF17\", \"shape\": [2, 3], \"xxh3_64\": \"0000000000000001\"}}}",
		  "'dtype' in tensor 'w' must be a safetensors dtype name" },
		{ HEAD GOOD_FILES ", \"tensors\": {\"w\": {\"dtype\": 7, \"shape\": [2, 3], \"xxh3_64\": \"0000000000000001\"}}}",
		  "'dtype' in tensor 'w'" },
		{ HEAD GOOD_FILES ", \"tensors\": {\"w\": {\"dtype\": \"BF16\", \"shape\": [2, -3], \"xxh3_64\": \"0000000000000001\"}}}",
		  "'shape' in tensor 'w' must hold non-negative integers" },
		{ HEAD GOOD_FILES ", \"tensors\": {\"w\": {\"dtype\": \"BF16\", \"shape\": [2, 1.5], \"xxh3_64\": \"0000000000000001\"}}}",
		  "'shape' in tensor 'w'" },
		{ HEAD GOOD_FILES ", \"tensors\": {\"w\": {\"dtype\": \"BF16\", \"shape\": [1,1,1,1,1,1,1,1,1], \"xxh3_64\": \"0000000000000001\"}}}",
		  "at most 8 dimensions" },
		{ HEAD GOOD_FILES ", \"tensors\": {\"w\": {\"dtype\": \"BF16\", \"shape\": 6, \"xxh3_64\": \"0000000000000001\"}}}",
		  "'shape' in tensor 'w'" },
		{ HEAD GOOD_FILES ", \"tensors\": {\"w\": {\"dtype\": \"BF16\", \"shape\": [2, 3], \"xxh3_64\": \"000000000000001\"}}}",
		  "'xxh3_64' in tensor 'w' must be 16 lower-case hex digits" },
		{ HEAD GOOD_FILES ", \"tensors\": {\"w\": {\"dtype\": \"BF16\", \"shape\": [2, 3]}}}", "missing key 'xxh3_64' in tensor 'w'" },
		{ HEAD GOOD_FILES ", \"tensors\": {\"w\": {\"shape\": [2, 3], \"xxh3_64\": \"0000000000000001\"}}}", "missing key 'dtype' in tensor 'w'" },
		{ HEAD GOOD_FILES ", \"tensors\": {\"w\": []}}", "tensor 'w' must be an object" },
		{ HEAD GOOD_FILES ", " GOOD_TENSORS ", \"extra\": 1}", "unknown key 'extra' in the manifest" },
		{ HEAD GOOD_FILES ", " GOOD_TENSORS ", \"history\": {}}", "'history' must be an array" },
		{ HEAD GOOD_FILES ", " GOOD_TENSORS ", \"history\": [{\"version\": \"1\", \"argv\": []}]}",
		  "'tool' in history entry 0 must be a non-empty string" },
		{ HEAD GOOD_FILES ", " GOOD_TENSORS ", \"history\": [{\"tool\": \"q\", \"argv\": []}]}",
		  "'version' in history entry 0 must be a string" },
		{ HEAD GOOD_FILES ", " GOOD_TENSORS ", \"history\": [{\"tool\": \"q\", \"version\": \"1\", \"argv\": [\"a\", 2]}]}",
		  "'argv' in history entry 0 must be an array of strings" },
		{ HEAD GOOD_FILES ", " GOOD_TENSORS ", \"history\": [{\"tool\": \"q\", \"version\": \"1\"}]}",
		  "'argv' in history entry 0" },
		{ HEAD GOOD_FILES ", " GOOD_TENSORS ", \"history\": [5]}", "history entry 0 must be an object" },
		{ HEAD GOOD_FILES ", " GOOD_TENSORS ", \"token_sets\": [{\"role\": \"calibration\", \"xxh3_128\": \"zz\"}]}",
		  "'xxh3_128' in token set 0" },
		{ HEAD GOOD_FILES ", " GOOD_TENSORS ", \"token_sets\": [{\"xxh3_128\": \"00000000000000010000000000000002\"}]}",
		  "'role' in token set 0" },
		{ HEAD GOOD_FILES ", " GOOD_TENSORS ", \"base\": \"abc\"}", "'base' must be an object" },
		{ HEAD GOOD_FILES ", " GOOD_TENSORS ", \"base\": {\"fingerprint\": \"abc\"}}", "'fingerprint' in 'base'" },
		{ HEAD GOOD_FILES ", " GOOD_TENSORS ", \"base\": {\"fingerprint\": \"00000000000000010000000000000002\", \"source\": 1}}",
		  "'source' in 'base' must be a string" },
		{ HEAD GOOD_FILES ", " GOOD_TENSORS ", \"base\": {\"fingerprint\": \"00000000000000010000000000000002\", \"x\": 1}}",
		  "unknown key 'x' in 'base'" },
		{ HEAD GOOD_FILES ", " GOOD_TENSORS ", \"fingerprint\": 12}", "'fingerprint' must be 32 lower-case hex digits" },
		{ HEAD GOOD_FILES ", " GOOD_FILES ", " GOOD_TENSORS "}", "duplicate" },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		m = (qc_manifest *)1;
		int rc = qc_manifest_parse(&m, cases[i].json, strlen(cases[i].json));
		if (rc != QC_EFORMAT || !strstr(qc_errmsg(), cases[i].msg)) {
			print_error("case %zu: rc %d, message '%s', expected QC_EFORMAT and '%s'\n", i, rc,
			            qc_errmsg(), cases[i].msg);
			fail();
		}
		assert_null(m);
		assert_true(strncmp(qc_errmsg(), "malformed manifest: ", 20) == 0);
	}

	/* a newer version is refused as unsupported, not malformed */
	const char *v2 = "{\"format\": \"qtoolkit-manifest\", \"version\": 2, " GOOD_FILES ", " GOOD_TENSORS "}";
	tu_assert_rc(qc_manifest_parse(&m, v2, strlen(v2)), QC_EUNSUPPORTED);
	assert_non_null(strstr(qc_errmsg(), "version 2"));

	/* a stored fingerprint that is not its tensors' is an integrity failure */
	const char *badfp = HEAD GOOD_FILES ", " GOOD_TENSORS ", \"fingerprint\": \"00000000000000010000000000000002\"}";
	tu_assert_rc(qc_manifest_parse(&m, badfp, strlen(badfp)), QC_EINTEGRITY);
	assert_non_null(strstr(qc_errmsg(), "does not match its tensors"));
	assert_null(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_layout),
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_fingerprint),
		cmocka_unit_test(test_inherit),
		cmocka_unit_test(test_setters_reject),
		cmocka_unit_test(test_self_hash),
		cmocka_unit_test(test_malformed),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
