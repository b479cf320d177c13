/* test_basics.c - errors, dtypes and the random generator. */
#include "tutil.h"

#include <errno.h>
#include <math.h>
#include <string.h>

#include "qc_dtype.h"
#include "qc_err.h"
#include "qc_rng.h"

static void test_errors(void **state)
{
	(void)state;
	assert_int_equal(qc_seterr(QC_EFORMAT, "bad header in '%s'", "x"), QC_EFORMAT);
	assert_string_equal(qc_errmsg(), "bad header in 'x'");
	errno = ENOENT;
	qc_seterr(QC_EIO, "cannot open '%s':", "y");
	assert_string_equal(qc_errmsg(), "cannot open 'y': No such file or directory");
	qc_errctx(QC_EIO, "reading checkpoint '%s'", "m");
	assert_string_equal(qc_errmsg(), "reading checkpoint 'm': cannot open 'y': No such file or directory");
	assert_int_equal(qc_exit_status(QC_OK), 0);
	assert_int_equal(qc_exit_status(QC_EINTEGRITY), 1);
	assert_int_equal(qc_exit_status(QC_EFORMAT), 2);
	assert_int_equal(qc_exit_status(QC_EINVAL), 2);
}

static void test_dtypes(void **state)
{
	(void)state;
	for (int i = 1; i < QC_DT_COUNT; i++)
		assert_int_equal(qc_dtype_from_name(qc_dtype_name((qc_dtype)i)), i);
	assert_int_equal(qc_dtype_from_name("F12"), QC_DT_INVALID);
	assert_int_equal(qc_dtype_size(QC_DT_BF16), 2);
	assert_int_equal(qc_dtype_size(QC_DT_F4), 0);
	assert_int_equal(qc_nbytes(QC_DT_F4, 3), -1);
	assert_int_equal(qc_nbytes(QC_DT_F4, 4), 2);
	int64_t big[2] = { INT64_MAX / 2, 3 };
	assert_int_equal(qc_numel(2, big), -1);
	int64_t neg[1] = { -1 };
	assert_int_equal(qc_numel(1, neg), -1);
	assert_int_equal(qc_numel(0, NULL), 1);
	char buf[64];
	int64_t sh[2] = { 4096, 14336 };
	assert_string_equal(qc_shape_str(buf, sizeof buf, 2, sh), "[4096, 14336]");
}

static void test_rng(void **state)
{
	(void)state;
	qc_rng a, b;
	qc_rng_seed(&a, 42);
	qc_rng_seed(&b, 42);
	for (int i = 0; i < 100; i++)
		assert_int_equal(qc_rng_u64(&a), qc_rng_u64(&b));
	qc_rng_derive(&a, 1, "model.layers.0.mlp.up_proj.weight");
	qc_rng_derive(&b, 1, "model.layers.1.mlp.up_proj.weight");
	assert_true(qc_rng_u64(&a) != qc_rng_u64(&b));
	/* moments of the unit-variance student-t and the normal */
	qc_rng_seed(&a, 7);
	double s1 = 0, s2 = 0, s4 = 0;
	int n = 200000;
	for (int i = 0; i < n; i++) {
		double x = qc_rng_student_t(&a, 5.0);
		s1 += x; s2 += x * x; s4 += x * x * x * x;
	}
	double var = s2 / n, kurt = (s4 / n) / (var * var);
	assert_true(fabs(s1 / n) < 0.02);
	assert_true(fabs(var - 1.0) < 0.05);
	assert_true(kurt > 4.0); /* t5 has excess kurtosis 6: heavy tails */
	s1 = s2 = 0;
	for (int i = 0; i < n; i++) {
		double x = qc_rng_normal(&a);
		s1 += x; s2 += x * x;
	}
	assert_true(fabs(s1 / n) < 0.01);
	assert_true(fabs(s2 / n - 1.0) < 0.02);
	for (int i = 0; i < 1000; i++)
		assert_true(qc_rng_below(&a, 7) < 7);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_dtypes),
		cmocka_unit_test(test_rng),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
