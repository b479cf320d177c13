/*
 * test_hash.c - XXH3 hashes, hex forms, streaming, whole files.
 *
 * The expected digests were produced once by xxhsum 0.8.1 (Debian package
 * "xxhash") over the buffers that fill() makes:
 *     xxhsum -H3 < buf   (XXH3-64)      xxhsum -H2 < buf   (XXH3-128)
 * Because xxhsum prints the canonical big-endian form, comparing our hex
 * strings with its output checks the byte order, and the lengths cover each
 * of XXH3's code paths (0, 1-3, 4-8, 9-16, 17-128, 129-240, long input).
 * When xxhsum is installed, test_xxhsum_live also checks a fresh file
 * against the running binary.
 */
#include "tutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qc_err.h"
#include "qc_hash.h"

/* byte i of the test buffers: i*i*31 + i*7 + 3, modulo 256 (32-bit wrap) */
static void fill(unsigned char *b, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		uint32_t x = (uint32_t)i;
		b[i] = (unsigned char)(x * x * 31u + x * 7u + 3u);
	}
}

static const struct {
	size_t len;
	const char *h64, *h128;
} known[] = {
	{ 0, "2d06800538d394c2", "99aa06d3014798d86001c324468d497f" },
	{ 1, "13e608bc156defed", "22bbb76b211a39ba13e608bc156defed" },
	{ 3, "b7391e018153d37a", "86e7dba8d8de1e21b7391e018153d37a" },
	{ 4, "fdf480d413c14ab0", "ebc05709b280db0f14e3cfbdb70d26bd" },
	{ 8, "ec39ab64bbdd3e16", "9941ab142ed05f6209ae116fe118de4c" },
	{ 9, "b72b2752390382d5", "0af95ebbd7610f70f7edb27bcabaa284" },
	{ 16, "2866d96771d12b4e", "3050c908b1fb1d1f414d35b3f8ff9c24" },
	{ 17, "385c21b59bf6407d", "ced175682e90f41d7adf9ede0c868ea5" },
	{ 100, "c606eb8305978766", "e4dd9333704729116fa8c3261e48b0ac" },
	{ 128, "a4b9dca2ee00ce72", "0e75e861783e8fcc8e11709461c6cf79" },
	{ 129, "fb9e35f274249234", "e9888cf9f76af2f0c387615d309cc07f" },
	{ 200, "2e03f552d39f9c10", "b412a6f166669714fa7ab7d87d12d9c9" },
	{ 240, "4ed2e5c562eae4c1", "e1dc894b4f208c733f5f5cd62d6b49f3" },
	{ 241, "6819923e2201397d", "b0b44328f3adb6e36819923e2201397d" },
	{ 1000, "33702c5eecf0c0ae", "7d7324fbba77584433702c5eecf0c0ae" },
	{ 100000, "eb6ef9ffb070b83d", "fe0996dee393d463eb6ef9ffb070b83d" },
};

/* 9 MiB + 7: more than two of qc_hash_file's 4 MiB blocks plus a tail */
#define BIG_LEN ((size_t)9437191)
static const char big_h128[] = "28e3e2c0eb64674e792df4ea71b7f6b0";

static void test_known_values(void **state)
{
	(void)state;
	unsigned char *b = malloc(100000);
	assert_non_null(b);
	fill(b, 100000);
	for (size_t k = 0; k < sizeof known / sizeof known[0]; k++) {
		char h64[17], h128[33];
		qc_h64_hex(qc_xxh3_64(b, known[k].len), h64);
		qc_h128_hex(qc_xxh3_128(b, known[k].len), h128);
		assert_string_equal(h64, known[k].h64);
		assert_string_equal(h128, known[k].h128);
	}
	/* the empty input also from a NULL pointer */
	char h[33];
	assert_string_equal(qc_h128_hex(qc_xxh3_128(NULL, 0), h), known[0].h128);
	free(b);
}

static void test_byte_order(void **state)
{
	(void)state;
	/* XXH3-128 of "" is hi 0x99aa06d3014798d8, lo 0x6001c324468d497f
	 * (xxHash's own test vectors): hi's digits come first, most
	 * significant byte first. */
	qc_h128 e = qc_xxh3_128("", 0);
	assert_true(e.hi == 0x99aa06d3014798d8ull);
	assert_true(e.lo == 0x6001c324468d497full);
	assert_true(qc_xxh3_64("", 0) == 0x2d06800538d394c2ull);
	char h[33];
	assert_string_equal(qc_h128_hex((qc_h128){ .hi = 0x0102030405060708ull, .lo = 0x090a0b0c0d0e0f10ull }, h),
	                    "0102030405060708090a0b0c0d0e0f10");
	assert_string_equal(qc_h64_hex(0x00000000000000ffull, h), "00000000000000ff");
}

static void test_parse(void **state)
{
	(void)state;
	qc_h128 h;
	uint64_t v;
	tu_assert_rc(qc_h128_parse("99aa06d3014798d86001c324468d497f", &h), 0);
	assert_true(qc_h128_eq(h, qc_xxh3_128(NULL, 0)));
	tu_assert_rc(qc_h128_parse("99AA06D3014798D86001C324468D497F", &h), 0);
	assert_true(qc_h128_eq(h, qc_xxh3_128(NULL, 0)));
	tu_assert_rc(qc_h64_parse("2d06800538d394c2", &v), 0);
	assert_true(v == 0x2d06800538d394c2ull);

	/* round trip of arbitrary values */
	for (uint64_t i = 1; i < 1000; i++) {
		qc_h128 a = { .hi = i * 0x9e3779b97f4a7c15ull, .lo = ~i * 0xc2b2ae3d27d4eb4full };
		char s[33];
		tu_assert_rc(qc_h128_parse(qc_h128_hex(a, s), &h), 0);
		assert_true(qc_h128_eq(a, h));
		tu_assert_rc(qc_h64_parse(qc_h64_hex(a.hi, s), &v), 0);
		assert_true(v == a.hi);
	}
	assert_false(qc_h128_eq((qc_h128){ 1, 2 }, (qc_h128){ 1, 3 }));
	assert_false(qc_h128_eq((qc_h128){ 1, 2 }, (qc_h128){ 0, 2 }));

	static const char *bad128[] = {
		"", "99aa06d3014798d86001c324468d497", "99aa06d3014798d86001c324468d497f0",
		"99aa06d3014798d86001c324468d497g", " 99aa06d3014798d86001c324468d497f",
		"99aa06d3014798d8-6001c324468d497f", "0x99aa06d3014798d86001c324468d49",
	};
	for (size_t i = 0; i < sizeof bad128 / sizeof bad128[0]; i++)
		tu_assert_rc(qc_h128_parse(bad128[i], &h), QC_EFORMAT);
	assert_non_null(strstr(qc_errmsg(), "expected 32 hex digits"));
	tu_assert_rc(qc_h128_parse(NULL, &h), QC_EFORMAT);
	static const char *bad64[] = { "", "2d06800538d394c", "2d06800538d394c2 ", "2d06800538d3g4c2" };
	for (size_t i = 0; i < sizeof bad64 / sizeof bad64[0]; i++)
		tu_assert_rc(qc_h64_parse(bad64[i], &v), QC_EFORMAT);
}

static void test_streaming(void **state)
{
	(void)state;
	size_t n = 100000;
	unsigned char *b = malloc(n);
	assert_non_null(b);
	fill(b, n);
	qc_h128 want = qc_xxh3_128(b, n);
	uint64_t want64 = qc_xxh3_64(b, n);
	qc_hasher *h = qc_hasher_new();
	qc_hasher64 *h64 = qc_hasher64_new();
	assert_non_null(h);
	assert_non_null(h64);
	/* pieces of every size from 0 to 300 bytes, crossing XXH3's internal
	 * 256-byte stripes and buffer boundaries at every offset */
	for (size_t piece = 0; piece <= 300; piece += 7) {
		qc_hasher_reset(h);
		qc_hasher64_reset(h64);
		size_t off = 0;
		while (off < n) {
			size_t m = piece ? piece : 1;
			if (m > n - off)
				m = n - off;
			qc_hasher_update(h, b + off, m);
			qc_hasher_update(h, b, 0);   /* empty updates change nothing */
			qc_hasher64_update(h64, b + off, m);
			off += m;
		}
		assert_true(qc_h128_eq(qc_hasher_digest128(h), want));
		assert_true(qc_hasher64_digest(h64) == want64);
	}
	/* digest does not consume the state: more data can follow */
	qc_hasher_reset(h);
	qc_hasher_update(h, b, 500);
	qc_h128 mid = qc_hasher_digest128(h);
	assert_true(qc_h128_eq(mid, qc_xxh3_128(b, 500)));
	qc_hasher_update(h, b + 500, n - 500);
	assert_true(qc_h128_eq(qc_hasher_digest128(h), want));
	/* a fresh hasher digests the empty input */
	qc_hasher_reset(h);
	assert_true(qc_h128_eq(qc_hasher_digest128(h), qc_xxh3_128(NULL, 0)));
	qc_hasher_free(h);
	qc_hasher64_free(h64);
	qc_hasher_free(NULL);
	qc_hasher64_free(NULL);
	free(b);
}

static void test_file(void **state)
{
	(void)state;
	unsigned char *b = malloc(BIG_LEN);
	assert_non_null(b);
	fill(b, BIG_LEN);
	char *p = tu_path("big.bin");
	tu_write(p, b, BIG_LEN);
	qc_h128 h;
	uint64_t size = 0;
	char hex[33];
	tu_assert_rc(qc_hash_file(p, &h, &size), 0);
	assert_int_equal(size, BIG_LEN);
	assert_string_equal(qc_h128_hex(h, hex), big_h128);
	assert_true(qc_h128_eq(h, qc_xxh3_128(b, BIG_LEN)));

	/* exactly one block, and empty */
	tu_write(p, b, (size_t)4 << 20);
	tu_assert_rc(qc_hash_file(p, &h, NULL), 0);
	assert_true(qc_h128_eq(h, qc_xxh3_128(b, (size_t)4 << 20)));
	tu_write(p, b, 0);
	tu_assert_rc(qc_hash_file(p, &h, &size), 0);
	assert_int_equal(size, 0);
	assert_true(qc_h128_eq(h, qc_xxh3_128(NULL, 0)));
	free(p);
	free(b);

	/* errors name the file and carry errno's text */
	p = tu_path("no-such-file");
	tu_assert_rc(qc_hash_file(p, &h, NULL), QC_EIO);
	assert_non_null(strstr(qc_errmsg(), "cannot open '"));
	assert_non_null(strstr(qc_errmsg(), "no-such-file': No such file or directory"));
	free(p);
	tu_assert_rc(qc_hash_file(tu_tmpdir(), &h, NULL), QC_EIO);
	assert_non_null(strstr(qc_errmsg(), "cannot read '"));
	assert_non_null(strstr(qc_errmsg(), "Is a directory"));
}

/* Cross-check with the xxhsum binary itself when it is installed (package
 * "xxhash"); the known-value tests above do not need it. */
static void test_xxhsum_live(void **state)
{
	(void)state;
	if (system("command -v xxhsum >/dev/null 2>&1") != 0) {
		skip();
		return;
	}
	size_t n = 3 * 1000 * 1000 + 11;
	unsigned char *b = malloc(n);
	assert_non_null(b);
	for (size_t i = 0; i < n; i++)
		b[i] = (unsigned char)((i * 2654435761u) >> 13);
	char *p = tu_path("live.bin");
	tu_write(p, b, n);
	char cmd[4400], line[256];
	char h128[33], h64[17];
	qc_h128 h;
	tu_assert_rc(qc_hash_file(p, &h, NULL), 0);
	qc_h128_hex(h, h128);
	qc_h64_hex(qc_xxh3_64(b, n), h64);

	snprintf(cmd, sizeof cmd, "xxhsum -H2 '%s'", p);
	FILE *f = popen(cmd, "r");
	assert_non_null(f);
	assert_non_null(fgets(line, sizeof line, f));
	pclose(f);
	assert_memory_equal(line, h128, 32);       /* "<hex>  <path>" */

	snprintf(cmd, sizeof cmd, "xxhsum -H3 < '%s'", p);
	f = popen(cmd, "r");
	assert_non_null(f);
	assert_non_null(fgets(line, sizeof line, f));
	pclose(f);
	assert_non_null(strstr(line, h64));        /* "XXH3 (stdin) = <hex>" */
	free(p);
	free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_known_values),
		cmocka_unit_test(test_byte_order),
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_streaming),
		cmocka_unit_test(test_file),
		cmocka_unit_test(test_xxhsum_live),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
