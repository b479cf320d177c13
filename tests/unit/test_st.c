/* test_st.c - safetensors writer (byte-exact against the Rust reference's
 * own test vectors) and the validating reader, including malformed files. */
#include "tutil.h"

#include <stdlib.h>
#include <string.h>

#include "qc_err.h"
#include "qc_io.h"
#include "qc_st.h"

/* A file image: u64 LE header length, the header bytes, then datalen bytes. */
static unsigned char *craft(const char *json, size_t datalen, size_t *len)
{
	size_t n = strlen(json);
	*len = 8 + n + datalen;
	unsigned char *b = calloc(1, *len);
	assert_non_null(b);
	for (int i = 0; i < 8; i++)
		b[i] = (unsigned char)((uint64_t)n >> (8 * i));
	memcpy(b + 8, json, n);
	for (size_t i = 0; i < datalen; i++)
		b[8 + n + i] = (unsigned char)i;
	return b;
}

/* Emit a writer into memory. */
static unsigned char *emit(qc_st_writer *w, size_t *len)
{
	qc_membuf b = { 0 };
	qc_sink s;
	qc_sink_membuf(&s, &b, "mem");
	assert_int_equal(qc_st_writer_emit(w, &s), 0);
	uint64_t fs;
	assert_int_equal(qc_st_writer_layout(w, &fs), 0);
	assert_int_equal(fs, b.len);
	*len = b.len;
	return b.data;
}

static const float f6[6] = { 0, 1, 2, 3, 4, 5 };

// ---------------------------------------------------------------- writer vs reference

/* safetensors/src/tensor.rs test_serialization: "attn.0" F32 [1, 2, 3]. */
static void test_rust_vectors(void **state)
{
	(void)state;
	static const unsigned char expect1[] = {
		64, 0, 0, 0, 0, 0, 0, 0, 123, 34, 97, 116, 116, 110, 46, 48, 34, 58, 123, 34, 100,
		116, 121, 112, 101, 34, 58, 34, 70, 51, 50, 34, 44, 34, 115, 104, 97, 112, 101, 34,
		58, 91, 49, 44, 50, 44, 51, 93, 44, 34, 100, 97, 116, 97, 95, 111, 102, 102, 115,
		101, 116, 115, 34, 58, 91, 48, 44, 50, 52, 93, 125, 125, 0, 0, 0, 0, 0, 0, 128, 63,
		0, 0, 0, 64, 0, 0, 64, 64, 0, 0, 128, 64, 0, 0, 160, 64
	};
	qc_st_writer *w = qc_st_writer_new();
	int64_t sh[3] = { 1, 2, 3 };
	assert_int_equal(qc_st_writer_add(w, "attn.0", QC_DT_F32, 3, sh, f6, 0), 0);
	size_t len;
	unsigned char *b = emit(w, &len);
	assert_int_equal(len, sizeof expect1);
	assert_memory_equal(b, expect1, len);
	free(b);
	qc_st_writer_free(w);

	/* test_serialization_forced_alignement: "attn0" [1, 1, 2, 3], 7 spaces of padding */
	static const unsigned char expect2[] = {
		72, 0, 0, 0, 0, 0, 0, 0, 123, 34, 97, 116, 116, 110, 48, 34, 58, 123, 34, 100, 116,
		121, 112, 101, 34, 58, 34, 70, 51, 50, 34, 44, 34, 115, 104, 97, 112, 101, 34, 58,
		91, 49, 44, 49, 44, 50, 44, 51, 93, 44, 34, 100, 97, 116, 97, 95, 111, 102, 102,
		115, 101, 116, 115, 34, 58, 91, 48, 44, 50, 52, 93, 125, 125, 32, 32, 32, 32, 32,
		32, 32, 0, 0, 0, 0, 0, 0, 128, 63, 0, 0, 0, 64, 0, 0, 64, 64, 0, 0, 128, 64, 0, 0,
		160, 64
	};
	w = qc_st_writer_new();
	int64_t sh2[4] = { 1, 1, 2, 3 };
	assert_int_equal(qc_st_writer_add(w, "attn0", QC_DT_F32, 4, sh2, f6, 0), 0);
	b = emit(w, &len);
	assert_int_equal(len, sizeof expect2);
	assert_memory_equal(b, expect2, len);
	free(b);
	qc_st_writer_free(w);

	/* test_empty: no tensors, metadata {"framework": "pt"} */
	static const unsigned char expect3[] = {
		40, 0, 0, 0, 0, 0, 0, 0, 123, 34, 95, 95, 109, 101, 116, 97, 100, 97, 116, 97, 95,
		95, 34, 58, 123, 34, 102, 114, 97, 109, 101, 119, 111, 114, 107, 34, 58, 34, 112,
		116, 34, 125, 125, 32, 32, 32, 32, 32
	};
	w = qc_st_writer_new();
	assert_int_equal(qc_st_writer_meta(w, "framework", "pt"), 0);
	b = emit(w, &len);
	assert_int_equal(len, sizeof expect3);
	assert_memory_equal(b, expect3, len);
	free(b);
	qc_st_writer_free(w);
	static const unsigned char expect4[] = { 8, 0, 0, 0, 0, 0, 0, 0, 123, 125, 32, 32, 32, 32, 32, 32 };
	w = qc_st_writer_new();
	b = emit(w, &len);
	assert_int_equal(len, sizeof expect4);
	assert_memory_equal(b, expect4, len);
	qc_st *st;
	assert_int_equal(qc_st_open_mem(&st, b, len, 1, "empty"), 0);
	assert_int_equal(qc_st_count(st), 0);
	qc_st_close(st);
	qc_st_writer_free(w);
}

// ---------------------------------------------------------------- round trip

static void test_roundtrip(void **state)
{
	(void)state;
	qc_st_writer *w = qc_st_writer_new();
	assert_non_null(w);
	/* one of each size class, a scalar, an empty tensor and a 4-bit type */
	uint16_t bf[6] = { 1, 2, 3, 4, 5, 6 };
	int8_t i8[5] = { -1, 2, -3, 4, -5 };
	int64_t i64[2] = { -7, 1LL << 40 };
	double *f64 = malloc(sizeof(double));
	*f64 = 3.25;
	unsigned char f4[3] = { 0x12, 0x34, 0x56 };
	int64_t s23[2] = { 2, 3 }, s5[1] = { 5 }, s2[1] = { 2 }, s06[2] = { 0, 6 }, s6[1] = { 6 };
	assert_int_equal(qc_st_writer_meta(w, "format", "pt"), 0);
	assert_int_equal(qc_st_writer_meta(w, "a.key", "first"), 0);
	assert_int_equal(qc_st_writer_meta(w, "a.key", "replaced"), 0);
	assert_int_equal(qc_st_writer_add(w, "z.bf16", QC_DT_BF16, 2, s23, bf, 0), 0);
	assert_int_equal(qc_st_writer_add(w, "codes", QC_DT_I8, 1, s5, i8, 0), 0);
	assert_int_equal(qc_st_writer_add(w, "a.i64", QC_DT_I64, 1, s2, i64, 0), 0);
	assert_int_equal(qc_st_writer_add(w, "scalar", QC_DT_F64, 0, NULL, f64, 1), 0);
	assert_int_equal(qc_st_writer_add(w, "empty", QC_DT_F32, 2, s06, NULL, 0), 0);
	assert_int_equal(qc_st_writer_add(w, "nibbles", QC_DT_F4, 1, s6, f4, 0), 0);
	assert_int_equal(qc_st_writer_count(w), 6);

	/* layout: descending alignment (Rust enum order), then name */
	uint64_t fs;
	assert_int_equal(qc_st_writer_layout(w, &fs), 0);
	static const char *order[] = { "a.i64", "scalar", "empty", "z.bf16", "codes", "nibbles" };
	for (size_t i = 0; i < 6; i++)
		assert_string_equal(qc_st_writer_at(w, i)->name, order[i]);
	tu_assert_rc(qc_st_writer_add(w, "late", QC_DT_I8, 1, s5, i8, 0), QC_EINVAL);

	char *path = tu_path("rt.safetensors");
	assert_int_equal(qc_st_writer_save(w, path), 0);
	qc_st_writer_free(w);

	qc_st *st;
	assert_int_equal(qc_st_open(&st, path), 0);
	assert_int_equal(qc_st_count(st), 6);
	assert_int_equal(qc_st_file_size(st), fs);
	assert_int_equal(qc_st_header_size(st) % 8, 0);
	const qc_tensor *t = qc_st_find(st, "z.bf16");
	assert_non_null(t);
	assert_int_equal(t->dtype, QC_DT_BF16);
	assert_int_equal(t->ndim, 2);
	assert_int_equal(t->shape[1], 3);
	assert_int_equal(t->nbytes, 12);
	assert_memory_equal(t->data, bf, 12);
	t = qc_st_find(st, "scalar");
	assert_int_equal(t->ndim, 0);
	assert_true(*(const double *)t->data == 3.25);
	assert_int_equal((uintptr_t)t->data % 8, 0);          /* naturally aligned */
	assert_int_equal((uintptr_t)qc_st_find(st, "a.i64")->data % 8, 0);
	assert_int_equal((uintptr_t)qc_st_find(st, "z.bf16")->data % 2, 0);
	assert_int_equal(qc_st_find(st, "empty")->nbytes, 0);
	assert_memory_equal(qc_st_find(st, "nibbles")->data, f4, 3);
	assert_memory_equal(qc_st_find(st, "a.i64")->data, i64, 16);
	assert_null(qc_st_find(st, "missing"));
	/* data order equals the layout order; offsets increase */
	for (size_t i = 0; i < 6; i++) {
		assert_string_equal(qc_st_at(st, i)->name, order[i]);
		if (i)
			assert_true(qc_st_offset(st, i) >= qc_st_offset(st, i - 1));
	}
	assert_null(qc_st_at(st, 6));
	assert_string_equal(qc_st_meta(st, "format"), "pt");
	assert_string_equal(qc_st_meta(st, "a.key"), "replaced");
	assert_null(qc_st_meta(st, "nope"));
	assert_int_equal(qc_st_meta_count(st), 2);
	const char *k, *v;
	qc_st_meta_at(st, 0, &k, &v);
	assert_string_equal(k, "a.key");
	qc_st_close(st);
	qc_st_close(NULL);

	/* the header alone validates against the file size, without the data */
	size_t len;
	unsigned char *img = tu_read(path, &len);
	uint64_t n;
	assert_int_equal(qc_st_check_prefix(img, len, &n), 0);
	assert_int_equal(qc_st_open_header(&st, img + 8, (size_t)n, len, "hdr"), 0);
	assert_int_equal(qc_st_count(st), 6);
	assert_null(qc_st_find(st, "codes")->data);
	assert_int_equal(qc_st_offset(st, 0), 8 + n);
	qc_st_close(st);
	tu_assert_rc(qc_st_open_header(&st, img + 8, (size_t)n, len + 1, "hdr"), QC_EFORMAT);
	assert_non_null(strstr(qc_errmsg(), "after the last tensor"));
	free(img);
	free(path);
}

/* Two writers given the same tensors in different orders write the same bytes. */
static void test_deterministic(void **state)
{
	(void)state;
	uint16_t a[4] = { 1, 2, 3, 4 };
	uint8_t b[3] = { 9, 8, 7 };
	int64_t s4[1] = { 4 }, s3[1] = { 3 };
	qc_st_writer *w1 = qc_st_writer_new(), *w2 = qc_st_writer_new();
	assert_int_equal(qc_st_writer_add(w1, "x", QC_DT_BF16, 1, s4, a, 0), 0);
	assert_int_equal(qc_st_writer_add(w1, "y", QC_DT_U8, 1, s3, b, 0), 0);
	assert_int_equal(qc_st_writer_meta(w1, "b", "2"), 0);
	assert_int_equal(qc_st_writer_meta(w1, "a", "1"), 0);
	assert_int_equal(qc_st_writer_add(w2, "y", QC_DT_U8, 1, s3, b, 0), 0);
	assert_int_equal(qc_st_writer_add(w2, "x", QC_DT_BF16, 1, s4, a, 0), 0);
	assert_int_equal(qc_st_writer_meta(w2, "a", "1"), 0);
	assert_int_equal(qc_st_writer_meta(w2, "b", "2"), 0);
	size_t l1, l2;
	unsigned char *b1 = emit(w1, &l1), *b2 = emit(w2, &l2);
	assert_int_equal(l1, l2);
	assert_memory_equal(b1, b2, l1);
	assert_non_null(strstr((char *)b1 + 8, "{\"__metadata__\":{\"a\":\"1\",\"b\":\"2\"},\"x\""));
	free(b1);
	free(b2);
	qc_st_writer_free(w1);
	qc_st_writer_free(w2);
}

static void test_writer_errors(void **state)
{
	(void)state;
	qc_st_writer *w = qc_st_writer_new();
	int64_t s2[1] = { 2 }, neg[1] = { -1 }, big[2] = { INT64_MAX / 2, 4 }, many[9] = { 1 };
	uint16_t d[2] = { 0 };
	assert_int_equal(qc_st_writer_add(w, "t", QC_DT_BF16, 1, s2, d, 0), 0);
	tu_assert_rc(qc_st_writer_add(w, "t", QC_DT_BF16, 1, s2, d, 0), QC_EINVAL);
	assert_non_null(strstr(qc_errmsg(), "duplicate"));
	tu_assert_rc(qc_st_writer_add(w, "__metadata__", QC_DT_BF16, 1, s2, d, 0), QC_EINVAL);
	tu_assert_rc(qc_st_writer_add(w, "", QC_DT_BF16, 1, s2, d, 0), QC_EINVAL);
	tu_assert_rc(qc_st_writer_add(w, "n", QC_DT_BF16, 1, neg, d, 0), QC_EINVAL);
	tu_assert_rc(qc_st_writer_add(w, "o", QC_DT_BF16, 2, big, d, 0), QC_EINVAL);
	tu_assert_rc(qc_st_writer_add(w, "m", QC_DT_BF16, 9, many, d, 0), QC_EINVAL);
	tu_assert_rc(qc_st_writer_add(w, "i", QC_DT_INVALID, 1, s2, d, 0), QC_EINVAL);
	tu_assert_rc(qc_st_writer_add(w, "bad\xff", QC_DT_BF16, 1, s2, d, 0), QC_EINVAL);
	tu_assert_rc(qc_st_writer_add(w, "nodata", QC_DT_BF16, 1, s2, NULL, 0), QC_EINVAL);
	int64_t s3[1] = { 3 };
	tu_assert_rc(qc_st_writer_add(w, "odd", QC_DT_F4, 1, s3, d, 0), QC_EINVAL);
	/* with own the writer takes the buffer even when it refuses it (no leak) */
	tu_assert_rc(qc_st_writer_add(w, "t", QC_DT_BF16, 1, s2, malloc(4), 1), QC_EINVAL);
	/* many names: the duplicate set grows */
	char name[32];
	for (int i = 0; i < 500; i++) {
		snprintf(name, sizeof name, "w.%d", i);
		assert_int_equal(qc_st_writer_add(w, name, QC_DT_BF16, 1, s2, d, 0), 0);
	}
	tu_assert_rc(qc_st_writer_add(w, "w.123", QC_DT_BF16, 1, s2, d, 0), QC_EINVAL);
	assert_int_equal(qc_st_writer_count(w), 501);
	/* saving into a missing directory fails and leaves nothing */
	tu_assert_rc(qc_st_writer_save(w, "/nonexistent/x.safetensors"), QC_EIO);
	qc_st_writer_free(w);
	qc_st_writer_free(NULL);
}

// ---------------------------------------------------------------- malformed files

struct bad_case {
	const char *what;
	const char *json;       /* header; NULL: raw prefix given in len_override */
	size_t datalen;
	uint64_t len_override;  /* nonzero: written as the header length instead */
	const char *msg;        /* substring the message must contain */
};

static const struct bad_case bad_cases[] = {
	{ "dtype size mismatch", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,6]}}", 6, 0,
	  "needs 8 bytes" },
	{ "unknown dtype", "{\"a\":{\"dtype\":\"F12\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4, 0,
	  "unknown dtype 'F12'" },
	{ "overlapping offsets",
	  "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
	  "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[2,6]}}", 6, 0, "overlaps" },
	{ "gapped offsets",
	  "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
	  "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[6,10]}}", 10, 0, "gap of 2 bytes" },
	{ "first tensor not at 0", "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4,8]}}", 8, 0,
	  "gap of 4 bytes" },
	{ "offsets beyond the file", "{\"a\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[0,8]}}", 4, 0,
	  "runs past the end" },
	{ "trailing bytes", "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}", 9, 0,
	  "5 bytes after the last tensor" },
	{ "huge shape overflows",
	  "{\"a\":{\"dtype\":\"BF16\",\"shape\":[4611686018427387904,4],\"data_offsets\":[0,4]}}", 4, 0,
	  "overflows" },
	{ "shape times dtype overflows",
	  "{\"a\":{\"dtype\":\"F64\",\"shape\":[2305843009213693952],\"data_offsets\":[0,4]}}", 4, 0,
	  "overflows" },
	{ "negative dimension", "{\"a\":{\"dtype\":\"U8\",\"shape\":[-4],\"data_offsets\":[0,4]}}", 4, 0,
	  "non-negative" },
	{ "fractional dimension", "{\"a\":{\"dtype\":\"U8\",\"shape\":[4.0],\"data_offsets\":[0,4]}}", 4, 0,
	  "non-negative" },
	{ "too many dimensions",
	  "{\"a\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,4],\"data_offsets\":[0,4]}}", 4, 0,
	  "9 dimensions" },
	{ "bad JSON", "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}", 4, 0, "bad JSON" },
	{ "header not an object", "[1,2,3]  ", 0, 0, "does not start with '{'" },
	{ "non-string metadata", "{\"__metadata__\":{\"format\":1}}", 0, 0, "value of 'format' is not a string" },
	{ "metadata not an object", "{\"__metadata__\":[\"pt\"]}", 0, 0, "__metadata__ is not an object" },
	{ "duplicate tensor names",
	  "{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},"
	  "\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[2,4]}}", 4, 0, "duplicate" },
	{ "extra key", "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4],\"x\":1}}", 4, 0,
	  "exactly dtype, shape and data_offsets" },
	{ "missing offsets", "{\"a\":{\"dtype\":\"U8\",\"shape\":[4]}}", 4, 0, "exactly dtype" },
	{ "offsets reversed", "{\"a\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[4,0]}}", 4, 0,
	  "end before they begin" },
	{ "offsets not integers", "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,\"4\"]}}", 4, 0,
	  "two non-negative integers" },
	{ "sub-byte remainder", "{\"a\":{\"dtype\":\"F4\",\"shape\":[3],\"data_offsets\":[0,2]}}", 2, 0,
	  "whole number of bytes" },
	{ "entry not an object", "{\"a\":5}", 0, 0, "is not an object" },
	{ "invalid UTF-8", "{\"a\xff\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}", 4, 0,
	  "bad JSON" },
	{ "header length 0", "", 0, 0, "too small" },
	{ "header length absurd", "{}", 0, 1ull << 62, "larger than 100000000" },
	{ "header length beyond the file", "{}", 0, 1000, "runs past the end of the file" },
};

static void test_malformed(void **state)
{
	(void)state;
	char *path = tu_path("bad.safetensors");
	for (size_t i = 0; i < sizeof bad_cases / sizeof *bad_cases; i++) {
		const struct bad_case *c = &bad_cases[i];
		size_t len;
		unsigned char *img = craft(c->json, c->datalen, &len);
		if (c->len_override)
			for (int k = 0; k < 8; k++)
				img[k] = (unsigned char)(c->len_override >> (8 * k));
		tu_write(path, img, len);
		qc_st *st = (qc_st *)1;
		int rc = qc_st_open(&st, path);
		if (rc != QC_EFORMAT || !strstr(qc_errmsg(), c->msg) || !strstr(qc_errmsg(), path)) {
			print_error("case '%s': rc %d, message '%s', expected '%s'\n", c->what, rc,
			            qc_errmsg(), c->msg);
			fail();
		}
		assert_null(st);
		/* the same through memory (ownership passes even on failure) */
		tu_assert_rc(qc_st_open_mem(&st, img, len, 1, "m"), QC_EFORMAT);
		assert_non_null(strstr(qc_errmsg(), c->msg));
	}

	/* truncations of a valid file at every length fail cleanly */
	qc_st_writer *w = qc_st_writer_new();
	int64_t sh[2] = { 3, 5 };
	uint16_t d[15] = { 0 };
	assert_int_equal(qc_st_writer_add(w, "w", QC_DT_BF16, 2, sh, d, 0), 0);
	size_t len;
	unsigned char *good = emit(w, &len);
	qc_st_writer_free(w);
	for (size_t cut = 0; cut < len; cut++) {
		qc_st *st;
		tu_write(path, good, cut);
		tu_assert_rc(qc_st_open(&st, path), QC_EFORMAT);
	}
	tu_write(path, good, len);
	qc_st *st;
	assert_int_equal(qc_st_open(&st, path), 0);
	qc_st_close(st);
	free(good);

	/* the prefix check alone */
	unsigned char p[8] = { 16, 0, 0, 0, 0, 0, 0, 0 };
	uint64_t n;
	assert_int_equal(qc_st_check_prefix(p, 24, &n), 0);
	assert_int_equal(n, 16);
	tu_assert_rc(qc_st_check_prefix(p, 23, &n), QC_EFORMAT);
	tu_assert_rc(qc_st_check_prefix(p, 4, &n), QC_EFORMAT);

	/* a missing file is an I/O error, not a format error */
	tu_assert_rc(qc_st_open(&st, "/nonexistent.safetensors"), QC_EIO);
	free(path);
}

/* A header whose length is not a multiple of 8 and a BF16 tensor before an
 * F32 one: legal, but the F32 data is misaligned in the image. Views come
 * back aligned and equal to the bytes in the file (fuzz_pack found the
 * misaligned loads). */
static void test_misaligned(void **state)
{
	(void)state;
	const char *json = "{\"a\":{\"dtype\":\"BF16\",\"shape\":[1],\"data_offsets\":[0,2]},"
	                   "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[2,10]}}";
	size_t len;
	unsigned char *img = craft(json, 10, &len);
	assert_int_not_equal((8 + strlen(json) + 2) % 4, 0);
	qc_st *st;
	assert_int_equal(qc_st_open_mem(&st, img, len, 0, "odd"), 0);
	const qc_tensor *b = qc_st_find(st, "b");
	assert_non_null(b);
	assert_int_equal((uintptr_t)b->data % 4, 0);
	assert_memory_equal(b->data, img + 8 + strlen(json) + 2, 8);
	const qc_tensor *a = qc_st_find(st, "a");
	assert_int_equal((uintptr_t)a->data % 2, 0);
	assert_memory_equal(a->data, img + 8 + strlen(json), 2);
	qc_st_close(st);
	free(img);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rust_vectors),
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_deterministic),
		cmocka_unit_test(test_writer_errors),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_misaligned),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
