/*
 * test_vec.c - growable arrays (qc_grow) and the string map (qc_strmap).
 */
#include "tutil.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qc_err.h"
#include "qc_strmap.h"
#include "qc_vec.h"

/* ---- qc_grow ---- */

static void test_grow_doubles_and_zeroes(void **state)
{
	int32_t *v = NULL;
	size_t cap = 0;
	tu_assert_rc(qc_grow((void **)&v, &cap, 1, sizeof *v), 0);
	assert_non_null(v);
	assert_int_equal(cap, 16);
	for (size_t i = 0; i < cap; i++)
		assert_int_equal(v[i], 0);
	for (size_t i = 0; i < cap; i++)
		v[i] = (int32_t)i + 1;
	/* room already there: nothing moves */
	int32_t *before = v;
	tu_assert_rc(qc_grow((void **)&v, &cap, 16, sizeof *v), 0);
	assert_ptr_equal(v, before);
	assert_int_equal(cap, 16);
	/* doubling until need fits; old elements kept, new ones zero */
	tu_assert_rc(qc_grow((void **)&v, &cap, 100, sizeof *v), 0);
	assert_int_equal(cap, 128);
	for (size_t i = 0; i < 16; i++)
		assert_int_equal(v[i], (int32_t)i + 1);
	for (size_t i = 16; i < cap; i++)
		assert_int_equal(v[i], 0);
	tu_assert_rc(qc_grow((void **)&v, &cap, 129, sizeof *v), 0);
	assert_int_equal(cap, 256);
	free(v);
}

static void test_grow_push_loop(void **state)
{
	/* the usual pattern: grow to n + 1, then write element n */
	struct { double *v; size_t n, cap; } a = { 0 };
	for (int i = 0; i < 1000; i++) {
		tu_assert_rc(qc_grow((void **)&a.v, &a.cap, a.n + 1, sizeof *a.v), 0);
		a.v[a.n++] = i * 0.5;
	}
	assert_int_equal(a.n, 1000);
	assert_int_equal(a.cap, 1024);
	for (int i = 0; i < 1000; i++)
		assert_true(a.v[i] == i * 0.5);
	free(a.v);
}

static void test_grow_overflow(void **state)
{
	char *p = malloc(16);
	assert_non_null(p);
	memcpy(p, "0123456789abcdef", 16);
	size_t cap = 16;
	/* the byte size overflows size_t: refused before any allocation */
	tu_assert_rc(qc_grow((void **)&p, &cap, SIZE_MAX / 4, 16), QC_ENOMEM);
	assert_non_null(strstr(qc_errmsg(), "out of memory"));
	assert_int_equal(cap, 16);
	assert_memory_equal(p, "0123456789abcdef", 16);
	/* the element count overflows while doubling */
	tu_assert_rc(qc_grow((void **)&p, &cap, SIZE_MAX, 1), QC_ENOMEM);
	assert_int_equal(cap, 16);
	free(p);
}

static void test_grow_parallel(void **state)
{
	/* parallel arrays sharing one capacity (qc_vec.h's second example) */
	struct { int *key; double *val; size_t n, cap; } a = { 0 };
	for (int i = 0; i < 40; i++) {
		size_t c = a.cap;
		tu_assert_rc(qc_grow((void **)&a.key, &c, a.n + 1, sizeof *a.key), 0);
		tu_assert_rc(qc_grow((void **)&a.val, &a.cap, a.n + 1, sizeof *a.val), 0);
		assert_int_equal(c, a.cap);
		a.key[a.n] = i;
		a.val[a.n++] = -i;
	}
	assert_int_equal(a.cap, 64);
	for (int i = 0; i < 40; i++)
		assert_true(a.key[i] == i && a.val[i] == -i);
	free(a.key);
	free(a.val);
}

/* ---- qc_strmap ---- */

static void test_strmap_basic(void **state)
{
	qc_strmap m = { 0 };
	assert_int_equal(qc_strmap_get(&m, "a", 1), -1);   /* empty map: no table yet */
	tu_assert_rc(qc_strmap_put(&m, "a", 1, 7), 0);
	tu_assert_rc(qc_strmap_put(&m, "ab", 2, 8), 0);
	tu_assert_rc(qc_strmap_put(&m, "", 0, 9), 0);      /* the empty key is a key */
	tu_assert_rc(qc_strmap_put(&m, "a\0b", 3, 10), 0); /* NUL inside a key */
	assert_int_equal(qc_strmap_count(&m), 4);
	assert_int_equal(qc_strmap_get(&m, "a", 1), 7);
	assert_int_equal(qc_strmap_get(&m, "ab", 2), 8);
	assert_int_equal(qc_strmap_get(&m, "", 0), 9);
	assert_int_equal(qc_strmap_get(&m, "a\0b", 3), 10);
	assert_int_equal(qc_strmap_get(&m, "a\0c", 3), -1);
	assert_int_equal(qc_strmap_get(&m, "b", 1), -1);
	/* a later put of the same key wins, and adds no key */
	tu_assert_rc(qc_strmap_put(&m, "ab", 2, 0), 0);
	assert_int_equal(qc_strmap_get(&m, "ab", 2), 0);
	assert_int_equal(qc_strmap_count(&m), 4);
	/* negative values would read as "absent" */
	tu_assert_rc(qc_strmap_put(&m, "c", 1, -1), QC_EINVAL);
	assert_int_equal(qc_strmap_get(&m, "c", 1), -1);
	assert_int_equal(qc_strmap_count(&m), 4);
	qc_strmap_free(&m);
	assert_int_equal(qc_strmap_count(&m), 0);
	assert_int_equal(qc_strmap_get(&m, "a", 1), -1);
}

static void test_strmap_many_and_copies(void **state)
{
	/* keys from one scratch buffer that is overwritten: the map keeps copies */
	qc_strmap m = { 0 };
	char key[32];
	for (int i = 0; i < 20000; i++) {
		int n = snprintf(key, sizeof key, "key-%d", i);
		tu_assert_rc(qc_strmap_put(&m, key, (size_t)n, i), 0);
	}
	memset(key, 'x', sizeof key);
	assert_int_equal(qc_strmap_count(&m), 20000);
	for (int i = 0; i < 20000; i++) {
		int n = snprintf(key, sizeof key, "key-%d", i);
		assert_int_equal(qc_strmap_get(&m, key, (size_t)n), i);
	}
	assert_int_equal(qc_strmap_get(&m, "key-20000", 9), -1);
	/* iteration visits every entry once, keys NUL-terminated */
	unsigned char *seen = calloc(20000, 1);
	assert_non_null(seen);
	size_t pos = 0, len, visits = 0;
	const char *k;
	int32_t v;
	while (qc_strmap_next(&m, &pos, &k, &len, &v)) {
		assert_true(v >= 0 && v < 20000);
		assert_int_equal(seen[v], 0);
		seen[v] = 1;
		int n = snprintf(key, sizeof key, "key-%d", (int)v);
		assert_int_equal(len, (size_t)n);
		assert_string_equal(k, key);
		visits++;
	}
	assert_int_equal(visits, 20000);
	assert_int_equal(qc_strmap_next(&m, &pos, &k, &len, &v), 0);
	free(seen);
	/* clear keeps the memory but no key */
	qc_strmap_clear(&m);
	assert_int_equal(qc_strmap_count(&m), 0);
	assert_int_equal(qc_strmap_get(&m, "key-5", 5), -1);
	pos = 0;
	assert_int_equal(qc_strmap_next(&m, &pos, &k, &len, &v), 0);
	tu_assert_rc(qc_strmap_put(&m, "key-5", 5, 55), 0);
	assert_int_equal(qc_strmap_get(&m, "key-5", 5), 55);
	assert_int_equal(qc_strmap_count(&m), 1);
	qc_strmap_free(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_grow_doubles_and_zeroes),
		cmocka_unit_test(test_grow_push_loop),
		cmocka_unit_test(test_grow_overflow),
		cmocka_unit_test(test_grow_parallel),
		cmocka_unit_test(test_strmap_basic),
		cmocka_unit_test(test_strmap_many_and_copies),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
