/* test_gptq_internal.c - the GPTQ solver's own kernels, each against a
 * plain reference: the blocked Cholesky factorization, the tiled mirror of
 * a triangle, the approximate |d|^2.4 and the clipping search built on it.
 * They are static in qc_gptq.c, so the file is compiled in here (its
 * public symbols then come from this object, not from libcommon.a). */
#include "tutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "qc_gptq.c"

static qk_ctx *kc;

static int setup(void **state)
{
	(void)state;
	return qk_ctx_new(&kc, QK_DEVICE_CPU, 2);
}

static int teardown(void **state)
{
	(void)state;
	qk_ctx_free(kc);
	return 0;
}

static uint64_t rng = 1;

static double unif(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return ((double)(rng >> 11) + 0.5) / 9007199254740992.0;
}

static double normal(void)
{
	return sqrt(-2 * log(unif())) * cos(6.283185307179586 * unif());
}

/* A = X^T X / T + 0.1 I, full, with rows of very different scales. */
static float *spd(int64_t n, int64_t T)
{
	float *x = malloc((size_t)(T * n) * sizeof *x), *a = calloc((size_t)(n * n), sizeof *a);
	assert_non_null(x);
	assert_non_null(a);
	for (int64_t t = 0; t < T; t++)
		for (int64_t j = 0; j < n; j++)
			x[t * n + j] = (float)(normal() * (j % 17 == 0 ? 30 : 1));
	assert_int_equal(qk_hessian_accum(kc, a, x, T, n, 1.0f / (float)T), 0);
	assert_int_equal(qk_sym_upper(kc, a, n), 0);
	for (int64_t j = 0; j < n; j++)
		a[j * n + j] += 0.1f;
	free(x);
	return a;
}

/* The textbook Cholesky in double: L lower, A = L L^T. */
static int chol_ref(const float *a, int64_t n, double *l)
{
	for (int64_t i = 0; i < n * n; i++)
		l[i] = 0;
	for (int64_t j = 0; j < n; j++) {
		double s = a[j * n + j];
		for (int64_t k = 0; k < j; k++)
			s -= l[j * n + k] * l[j * n + k];
		if (!(s > 0))
			return -1;
		l[j * n + j] = sqrt(s);
		for (int64_t i = j + 1; i < n; i++) {
			double t = a[i * n + j];
			for (int64_t k = 0; k < j; k++)
				t -= l[i * n + k] * l[j * n + k];
			l[i * n + j] = t / l[j * n + j];
		}
	}
	return 0;
}

/* Sizes around the block size: one block, a partial one, several. */
static void test_chol_lower(void **state)
{
	(void)state;
	static const int64_t sizes[] = { 7, 256, 300, 600 };
	for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
		int64_t n = sizes[s];
		float *a = spd(n, 3 * n), *a0 = malloc((size_t)(n * n) * sizeof *a0);
		double *l = malloc((size_t)(n * n) * sizeof *l);
		float *work = malloc((size_t)((n + 2 * CHOL_NB) * CHOL_NB) * sizeof *work);
		memcpy(a0, a, (size_t)(n * n) * sizeof *a);
		assert_int_equal(chol_ref(a0, n, l), 0);
		assert_int_equal(chol_lower(kc, a, n, work), 0);
		double lmax = 0, dmax = 0;
		for (int64_t i = 0; i < n; i++)
			for (int64_t j = 0; j <= i; j++) {
				lmax = fmax(lmax, fabs(l[i * n + j]));
				dmax = fmax(dmax, fabs(l[i * n + j] - a[i * n + j]));
			}
		if (!(dmax <= 2e-5 * lmax))
			fail_msg("n %lld: factor differs from the reference by %g (of %g)", (long long)n, dmax,
			         lmax);
		for (int64_t i = 0; i < n; i++) /* the strict upper triangle: untouched */
			assert_memory_equal(a + i * n + i + 1, a0 + i * n + i + 1,
			                    (size_t)(n - i - 1) * sizeof *a);
		free(a);
		free(a0);
		free(l);
		free(work);
	}
}

/* Not positive definite in the second block: QC_ENUMERIC, and the strict
 * upper triangle still holds the input, from which it can be restored. */
static void test_chol_lower_fails_cleanly(void **state)
{
	(void)state;
	const int64_t n = 400;
	float *a = spd(n, 2 * n), *a0 = malloc((size_t)(n * n) * sizeof *a0);
	float *work = malloc((size_t)((n + 2 * CHOL_NB) * CHOL_NB) * sizeof *work);
	a[300 * n + 300] = -1.0f;
	memcpy(a0, a, (size_t)(n * n) * sizeof *a);
	tu_assert_rc(chol_lower(kc, a, n, work), QC_ENUMERIC);
	for (int64_t i = 0; i < n; i++)
		assert_memory_equal(a + i * n + i + 1, a0 + i * n + i + 1, (size_t)(n - i - 1) * sizeof *a);
	free(a);
	free(a0);
	free(work);
}

/* The tiled mirror equals the element-by-element one. */
static void test_mirror(void **state)
{
	(void)state;
	const int64_t n = 203;
	qc_gptq *g;
	assert_int_equal(qc_gptq_new(&g, kc, NULL), 0);
	float *a = malloc((size_t)(n * n) * sizeof *a), *b = malloc((size_t)(n * n) * sizeof *b);
	for (int64_t i = 0; i < n * n; i++)
		a[i] = b[i] = (float)normal();
	run st = { .g = g, .n = n, .H = a };
	par_rows(g, (n + 63) / 64, 1, mirror_range, &st);
	for (int64_t i = 0; i < n; i++)
		for (int64_t j = 0; j < i; j++)
			b[i * n + j] = b[j * n + i];
	assert_memory_equal(a, b, (size_t)(n * n) * sizeof *a);
	free(a);
	free(b);
	qc_gptq_free(g);
}

/* Every term of the approximate error is within POW24_REL / 4 of pow(d,
 * 2.4) over the range it accepts (values outside it are flagged). */
static void test_pow24_bound(void **state)
{
	(void)state;
#if defined(__SSE2__)
	double worst = 0;
	for (int i = 0; i < 200000; i++) {
		float d = (float)ldexp(1 + unif(), (int)(unif() * 80) - 40);
		float x[4] = { d, 0, 0, 0 };
		int bad = 0;
		/* a scale so large that every code is 0: the error is |x| */
		double ap = err24(x, 4, NULL, 1e30f, 0, -8, 7, INFINITY, &bad);
		double ex = pow((double)d, 2.4);
		assert_int_equal(bad, 0);
		worst = fmax(worst, fabs(ap - ex) / ex);
	}
	if (!(worst <= POW24_REL / 4))
		fail_msg("a term is off by %g", worst);
	float tiny[4] = { 1e-13f, 0, 0, 0 }, huge[4] = { 3e12f, 0, 0, 0 };
	int bad = 0;
	err24(tiny, 4, NULL, 1e30f, 0, -8, 7, INFINITY, &bad);
	assert_int_equal(bad, 1);
	bad = 0;
	err24(huge, 4, NULL, 1e30f, 0, -8, 7, INFINITY, &bad);
	assert_int_equal(bad, 1);
#else
	skip();
#endif
}

/* The fast search returns qc_group_params' result on every group: sizes
 * with and without a vector tail, int4/int8, sym/asym, BF16/FP32 scales,
 * weights, groups of zeros, constants, tiny values, heavy tails. And the
 * comparison means something: the approximate search (gparams24) decides
 * most groups by itself, each as the reference does (were it to hand every
 * group to the exact search, the exact search would be compared with
 * itself), and the search clips many groups below their min-max scale
 * (were it a no-op, both sides would return the min-max parameters). */
static void test_gparams_exact(void **state)
{
	(void)state;
	float x[200], w[200];
	qc_clip_opts c;
	qc_clip_opts_default(&c, QC_CLIP_MSE);
	int n_fast = 0, n_clipped = 0;
	const int n_groups = 12000;
	for (int it = 0; it < n_groups; it++) {
		int64_t n = it % 5 == 0 ? 200 : it % 5 == 1 ? 37 : it % 5 == 2 ? 128 : it % 5 == 3 ? 64 : 3;
		double sc = pow(10, 6 * unif() - 4);
		int kind = it % 11;
		for (int64_t i = 0; i < n; i++) {
			double v = normal() * (unif() < 0.03 ? 6 : 1) * sc;
			x[i] = kind == 0 ? 0.0f : kind == 1 ? (float)sc : kind == 2 ? (float)(v * 1e-12) : (float)v;
			w[i] = (float)(unif() * 3);
		}
		qc_qargs a = { 0, it % 2 ? 4 : 8, (it / 2) % 2, QC_QS_GROUP, n,
		               (it / 4) % 3 == 0 ? QC_DT_F32 : QC_DT_BF16, QC_DT_F32 };
		const float *cw = (it / 3) % 2 ? w : NULL;
		float s1, z1, s2, z2;
		qc_group_params(&a, &c, x, n, cw, &s1, &z1);
		gparams(&a, &c, x, n, cw, &s2, &z2);
		if (s1 != s2 || z1 != z2)
			fail_msg("group %d (n %lld): scale %.9g zp %g, reference %.9g %g", it, (long long)n, s2,
			         z2, s1, z1);
		float mn, mx, s0, z0;
		qc_minmax(x, (size_t)n, &mn, &mx);
		qc_qparams(&a, mn, mx, &s0, &z0);
		n_clipped += s1 < s0;
#if defined(__SSE2__)
		float s3 = s0, z3 = z0;
		if (gparams24(&a, &c, x, n, cw, mn, mx, &s3, &z3)) {
			n_fast++;
			if (s3 != s1 || z3 != z1)
				fail_msg("group %d: the approximate search decided scale %.9g zp %g, "
				         "reference %.9g %g", it, s3, z3, s1, z1);
		}
#else
		n_fast++;
#endif
	}
	/* measured: 11150 and 3804 (constant, zero and 3-wide groups are not clipped) */
	if (!(n_fast >= n_groups * 3 / 4 && n_clipped >= n_groups / 4))
		fail_msg("of %d groups the approximate search decided %d (expected 3/4), and %d "
		         "were clipped (expected 1/4)", n_groups, n_fast, n_clipped);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_chol_lower),
		cmocka_unit_test(test_chol_lower_fails_cleanly),
		cmocka_unit_test(test_mirror),
		cmocka_unit_test(test_pow24_bound),
		cmocka_unit_test(test_gparams_exact),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
