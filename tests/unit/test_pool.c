/* test_pool.c - qc_pool: the split covers [0, n) exactly and in order,
 * every part runs once (part 0 on the calling thread), and the error that
 * comes back is the lowest-numbered failing part's, with its message, on
 * the calling thread. */
#include "tutil.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "qc_err.h"
#include "qc_pool.h"

/* ---------------------------------------------------------------- split */

static void check_split(int64_t n, int nparts)
{
	int64_t prev = 0;
	for (int i = 0; i < nparts; i++) {
		int64_t lo, hi;
		qc_pool_range(n, i, nparts, &lo, &hi);
		assert_int_equal(lo, prev);              /* contiguous, in order */
		assert_true(hi >= lo);
		/* sizes differ by at most one: floor(n / p) or that plus one */
		assert_true(hi - lo == n / nparts || hi - lo == n / nparts + 1);
		if (n < ((int64_t)1 << 40)) {
			/* the split every hand-written pool used: n i / p */
			assert_int_equal(lo, n * i / nparts);
			assert_int_equal(hi, n * (i + 1) / nparts);
		}
		prev = hi;
	}
	assert_int_equal(prev, n);                   /* covers [0, n) exactly */
}

static void test_range(void **state)
{
	(void)state;
	const int64_t ns[] = { 0, 1, 2, 7, 63, 64, 65, 1000, 300000, 1234567 };
	const int ps[] = { 1, 2, 3, 7, 16, 64, 100 };
	for (size_t a = 0; a < sizeof ns / sizeof ns[0]; a++)
		for (size_t b = 0; b < sizeof ps / sizeof ps[0]; b++)
			check_split(ns[a], ps[b]);
	/* no overflow where n * i would not fit in 64 bits */
	check_split(INT64_MAX, 3);
	check_split(INT64_MAX - 5, 64);
	int64_t lo, hi;
	qc_pool_range(10, 0, 1, &lo, &hi);
	assert_true(lo == 0 && hi == 10);
}

/* ---------------------------------------------------------------- runs */

typedef struct {
	int nparts;
	atomic_int calls;
	atomic_int bad;              /* a part saw the wrong nparts (no cmocka asserts off the main thread) */
	atomic_int seen[200];        /* calls per part */
	pthread_t caller, part0;
	int fail[200];               /* part i returns this code (0: succeeds) */
} job;

static int part_fn(void *ctx, int part, int nparts)
{
	job *j = ctx;
	if (nparts != j->nparts)
		atomic_store(&j->bad, 1);
	atomic_fetch_add(&j->calls, 1);
	atomic_fetch_add(&j->seen[part], 1);
	if (part == 0)
		j->part0 = pthread_self();
	if (j->fail[part])
		return qc_seterr(j->fail[part], "part %d of %d failed", part, nparts);
	/* a success leaves a stale message on its thread: it must not leak */
	qc_seterr(QC_EINTERNAL, "stale message of part %d", part);
	return 0;
}

static job *new_job(int nparts)
{
	job *j = calloc(1, sizeof *j);
	assert_non_null(j);
	j->nparts = nparts;
	j->caller = pthread_self();
	return j;
}

static void test_run(void **state)
{
	(void)state;
	const int ps[] = { 1, 2, 5, 64, 65, 200 };   /* 65, 200: beyond the stack array */
	for (size_t a = 0; a < sizeof ps / sizeof ps[0]; a++) {
		job *j = new_job(ps[a]);
		tu_assert_rc(qc_pool_run(ps[a], part_fn, j), 0);
		assert_int_equal(atomic_load(&j->calls), ps[a]);
		for (int i = 0; i < ps[a]; i++)
			assert_int_equal(atomic_load(&j->seen[i]), 1);
		assert_true(pthread_equal(j->part0, j->caller));   /* part 0 here */
		assert_int_equal(atomic_load(&j->bad), 0);
		free(j);
	}
	/* nothing to run */
	job *j = new_job(0);
	tu_assert_rc(qc_pool_run(0, part_fn, j), 0);
	assert_int_equal(atomic_load(&j->calls), 0);
	free(j);
}

static void test_errors(void **state)
{
	(void)state;
	/* several parts fail, on other threads: the lowest one's code and
	 * message come back, and every part still ran */
	job *j = new_job(8);
	j->fail[3] = QC_EIO;
	j->fail[5] = QC_EFORMAT;
	j->fail[7] = QC_ENOMEM;
	qc_seterr(QC_OK, "before");
	tu_assert_rc(qc_pool_run(8, part_fn, j), QC_EIO);
	assert_string_equal(qc_errmsg(), "part 3 of 8 failed");
	assert_int_equal(atomic_load(&j->calls), 8);
	free(j);
	/* part 0 (the calling thread) failing first wins over later parts,
	 * even though later parts ran after it on the same thread or others */
	j = new_job(4);
	j->fail[0] = QC_EINVAL;
	j->fail[2] = QC_EIO;
	tu_assert_rc(qc_pool_run(4, part_fn, j), QC_EINVAL);
	assert_string_equal(qc_errmsg(), "part 0 of 4 failed");
	free(j);
	/* one part alone runs on the calling thread: its own message */
	j = new_job(1);
	j->fail[0] = QC_ENUMERIC;
	tu_assert_rc(qc_pool_run(1, part_fn, j), QC_ENUMERIC);
	assert_string_equal(qc_errmsg(), "part 0 of 1 failed");
	free(j);
	/* beyond the stack array */
	j = new_job(150);
	j->fail[149] = QC_EFORMAT;
	j->fail[120] = QC_EINTEGRITY;
	tu_assert_rc(qc_pool_run(150, part_fn, j), QC_EINTEGRITY);
	assert_string_equal(qc_errmsg(), "part 120 of 150 failed");
	assert_int_equal(atomic_load(&j->calls), 150);
	free(j);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_range),
		cmocka_unit_test(test_run),
		cmocka_unit_test(test_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
