/* test_kernels_gptq.c - the GPTQ support ops of kernels.h (kernels/cpu/
 * qk_gptq.c) against plain references written here or in qc_quant: the
 * Hessian's diagonal and permutation, the damped factor and its blocked
 * Cholesky, group parameters and the clipping search's shortcuts, round to
 * nearest, the error products and the sweep. The static helpers are
 * reached by compiling the file in here (its public symbols then come
 * from this object, not from libcommon.a). */
#include "tutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/qk_gptq.c"
#include "qc_quant.h"

static qk_ctx *kc, *kc1;   /* 2 threads, 1 thread */

static int setup(void **state)
{
	(void)state;
	if (qk_ctx_new(&kc, QK_DEVICE_CPU, 2) || qk_ctx_new(&kc1, QK_DEVICE_CPU, 1))
		return -1;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	qk_ctx_free(kc);
	qk_ctx_free(kc1);
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

/* A = X^T X / T + 0.1 I, whole, with columns of very different scales. */
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

/* A random permutation of n. */
static int64_t *randperm(int64_t n)
{
	int64_t *p = malloc((size_t)n * sizeof *p);
	assert_non_null(p);
	for (int64_t i = 0; i < n; i++)
		p[i] = i;
	for (int64_t i = n - 1; i > 0; i--) {
		int64_t j = (int64_t)(unif() * (double)(i + 1));
		int64_t t = p[i];
		p[i] = p[j];
		p[j] = t;
	}
	return p;
}

/* qc_qargs and qc_clip_opts as the solver hands them to the kernels. */
static qk_qspec spec_of(const qc_qargs *a, const qc_clip_opts *c, int64_t cols)
{
	qk_qspec q = {
		.is_float = a->is_float, .bits = a->bits, .symmetric = a->symmetric,
		.group = a->strategy == QC_QS_GROUP ? a->group_size : cols,
		.tensor = a->strategy == QC_QS_TENSOR, .scale_dtype = a->scale_dtype, .arith = a->arith,
		.mse = c && c->mode == QC_CLIP_MSE, .grid = c ? c->grid : 0,
		.patience = c ? c->patience : 0, .maxshrink = c ? c->maxshrink : 0, .norm = c ? c->norm : 0,
	};
	return q;
}

/* Heavy-tailed weights [rows, cols], rows of different scales. */
static float *make_w(int64_t rows, int64_t cols)
{
	float *w = malloc((size_t)(rows * cols) * sizeof *w);
	assert_non_null(w);
	for (int64_t r = 0; r < rows; r++) {
		double sc = pow(10, 2 * unif() - 2);
		for (int64_t j = 0; j < cols; j++)
			w[r * cols + j] = (float)(normal() * (unif() < 0.02 ? 4 : 1) * sc);
	}
	return w;
}

// ---------------------------------------------------------------- the Hessian

/* The Cholesky (LAPACK's, on the column-major upper triangle) against the
 * textbook one, sizes around LAPACK's blocking; the strict upper triangle
 * is left exactly as it was. */
static void test_chol_lower(void **state)
{
	(void)state;
	static const int64_t sizes[] = { 7, 256, 300, 600 };
	for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
		int64_t n = sizes[s];
		float *a = spd(n, 3 * n), *a0 = malloc((size_t)(n * n) * sizeof *a0);
		double *l = malloc((size_t)(n * n) * sizeof *l);
		memcpy(a0, a, (size_t)(n * n) * sizeof *a);
		assert_int_equal(chol_ref(a0, n, l), 0);
		assert_int_equal(chol_lower(kc, a, n), 0);
		double lmax = 0, dmax = 0;
		for (int64_t i = 0; i < n; i++)
			for (int64_t j = 0; j <= i; j++) {
				lmax = fmax(lmax, fabs(l[i * n + j]));
				dmax = fmax(dmax, fabs(l[i * n + j] - a[i * n + j]));
			}
		if (!(dmax <= 2e-5 * lmax))
			fail_msg("n %lld: factor differs from the reference by %g (of %g)", (long long)n, dmax,
			         lmax);
		for (int64_t i = 0; i < n; i++)
			assert_memory_equal(a + i * n + i + 1, a0 + i * n + i + 1,
			                    (size_t)(n - i - 1) * sizeof *a);
		free(a);
		free(a0);
		free(l);
	}
}

/* qk_gptq_factor: the diagonal replaced, V = J L J upper with a zero strict
 * lower triangle, on 1 and 2 threads; a failure (not positive definite in
 * the second block) leaves M as it was, off the diagonal, and a retry with
 * more damping succeeds. */
static void test_factor(void **state)
{
	(void)state;
	static const int64_t sizes[] = { 1, 7, 256, 300, 601 };
	for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
		for (int t = 0; t < 2; t++) {
			int64_t n = sizes[s];
			float *m = spd(n, 3 * n), *h = malloc((size_t)(n * n) * sizeof *h);
			float *d = malloc((size_t)n * sizeof *d);
			double *l = malloc((size_t)(n * n) * sizeof *l);
			const double lam = 0.03;
			for (int64_t i = 0; i < n; i++) {
				d[i] = m[i * n + i] * (float)(0.5 + unif());
				m[i * n + i] = (float)((double)d[i] + lam);
			}
			memcpy(h, m, (size_t)(n * n) * sizeof *h);
			for (int64_t i = 0; i < n; i++) /* ignored: replaced by d + lambda */
				h[i * n + i] = -1;
			assert_int_equal(chol_ref(m, n, l), 0);
			tu_assert_rc(qk_gptq_factor(t ? kc : kc1, h, n, d, lam), 0);
			double lmax = 0, dmax = 0;
			for (int64_t i = 0; i < n; i++)
				for (int64_t j = 0; j < n; j++) {
					if (j < i) {
						assert_true(h[i * n + j] == 0.0f);
						continue;
					}
					double v = l[(n - 1 - i) * n + (n - 1 - j)];
					lmax = fmax(lmax, fabs(v));
					dmax = fmax(dmax, fabs(v - h[i * n + j]));
				}
			if (!(dmax <= 2e-5 * lmax))
				fail_msg("n %lld: V differs from J L J by %g (of %g)", (long long)n, dmax, lmax);
			free(m);
			free(h);
			free(d);
			free(l);
		}
	/* failure and retry */
	const int64_t n = 400;
	float *m = spd(n, 2 * n), *h = malloc((size_t)(n * n) * sizeof *h);
	float *d = malloc((size_t)n * sizeof *d);
	for (int64_t i = 0; i < n; i++)
		d[i] = m[i * n + i];
	d[300] = -1.0f;
	memcpy(h, m, (size_t)(n * n) * sizeof *h);
	tu_assert_rc(qk_gptq_factor(kc, h, n, d, 0.0), QC_ENUMERIC);
	for (int64_t i = 0; i < n; i++)
		for (int64_t j = 0; j < n; j++)
			if (i != j && h[i * n + j] != m[i * n + j])
				fail_msg("after a failure H[%lld][%lld] is %g, not %g", (long long)i, (long long)j,
				         h[i * n + j], m[i * n + j]);
	d[300] = m[300 * n + 300];
	tu_assert_rc(qk_gptq_factor(kc, h, n, d, 0.0), 0);
	for (int64_t i = 0; i < n; i++)
		assert_true(h[i * n + i] > 0);
	free(m);
	free(h);
	free(d);
}

/* The tiled mirror equals the element-by-element one. */
static void test_mirror(void **state)
{
	(void)state;
	const int64_t n = 203;
	float *a = malloc((size_t)(n * n) * sizeof *a), *b = malloc((size_t)(n * n) * sizeof *b);
	for (int64_t i = 0; i < n * n; i++)
		a[i] = b[i] = (float)normal();
	tu_assert_rc(mirror(kc, a, n), 0);
	for (int64_t i = 0; i < n; i++)
		for (int64_t j = 0; j < i; j++)
			b[i * n + j] = b[j * n + i];
	assert_memory_equal(a, b, (size_t)(n * n) * sizeof *a);
	free(a);
	free(b);
}

/* qk_gptq_permute against M[i][j] = Hsym[sigma[i]][sigma[j]] (upper
 * triangle read: the lower one holds NaN), for the identity, the reversal
 * and random permutations; qk_gptq_hdiag: the diagonal, and the first
 * non-finite value of the upper triangle only. */
static void test_permute_hdiag(void **state)
{
	(void)state;
	static const int64_t sizes[] = { 1, 5, 130, 257 };
	for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
		for (int kind = 0; kind < 3; kind++) {
			int64_t n = sizes[s];
			float *h = malloc((size_t)(n * n) * sizeof *h), *h0 = malloc((size_t)(n * n) * sizeof *h0);
			for (int64_t i = 0; i < n; i++)
				for (int64_t j = 0; j < n; j++)
					h[i * n + j] = j >= i ? (float)normal() : NAN;
			memcpy(h0, h, (size_t)(n * n) * sizeof *h);
			float *dg = malloc((size_t)n * sizeof *dg);
			int64_t bad;
			tu_assert_rc(qk_gptq_hdiag(kc, h, n, dg, &bad), 0);
			assert_int_equal(bad, -1);
			for (int64_t i = 0; i < n; i++)
				assert_true(dg[i] == h[i * n + i]);
			int64_t *sigma = randperm(n);
			for (int64_t i = 0; i < n && kind < 2; i++)
				sigma[i] = kind == 0 ? i : n - 1 - i;
			tu_assert_rc(qk_gptq_permute(kind == 2 ? kc : kc1, h, n, sigma), 0);
			for (int64_t i = 0; i < n; i++)
				for (int64_t j = 0; j < n; j++) {
					int64_t a = sigma[i], b = sigma[j];
					float want = a <= b ? h0[a * n + b] : h0[b * n + a];
					if (h[i * n + j] != want)
						fail_msg("n %lld kind %d: M[%lld][%lld] = %g, not %g", (long long)n, kind,
						         (long long)i, (long long)j, h[i * n + j], want);
				}
			free(h);
			free(h0);
			free(dg);
			free(sigma);
		}
	const int64_t n = 150;
	float *h = calloc((size_t)(n * n), sizeof *h), dg[150];
	int64_t bad;
	h[120 * n + 3] = NAN; /* lower: not read */
	tu_assert_rc(qk_gptq_hdiag(kc, h, n, dg, &bad), 0);
	assert_int_equal(bad, -1);
	h[100 * n + 140] = INFINITY;
	h[99 * n + 149] = NAN;
	tu_assert_rc(qk_gptq_hdiag(kc, h, n, dg, &bad), 0);
	assert_int_equal(bad, 99 * n + 149);
	free(h);
}

// ---------------------------------------------------------------- group parameters

#if defined(__SSE2__)
typedef double err24_fn(const float *, int64_t, const float *, float, float, float, float, double,
                        int *);

/* 1 when fn flags x[n] as outside the approximation's range (a scale so
 * large that every code is 0: the error is |x|) */
static int err24_flags(err24_fn *fn, const float *x, int64_t n)
{
	int bad = 0;
	fn(x, n, NULL, 1e30f, 0, -8, 7, INFINITY, &bad);
	return bad;
}

#if defined(__x86_64__)
/* A vector err24 on sixteen values: within POW24_REL / 4 of the exact
 * sums, within 1e-12 of the four-lane version (the same terms, summed in
 * another order), and a value out of the approximation's range flagged in
 * every lane. */
static void check_err24_v16(err24_fn *fn, const char *name)
{
	double worst = 0;
	for (int i = 0; i < 50000; i++) {
		float x[16], w[16];
		for (int k = 0; k < 16; k++) {
			x[k] = (float)ldexp(1 + unif(), (int)(unif() * 80) - 40);
			w[k] = (float)unif();
		}
		int b4 = 0, b16 = 0;
		double ex = 0;
		for (int k = 0; k < 16; k++)
			ex += w[k] * pow((double)x[k], 2.4);
		double a4 = err24(x, 16, w, 1e30f, 0, -8, 7, INFINITY, &b4);
		double a16 = fn(x, 16, w, 1e30f, 0, -8, 7, INFINITY, &b16);
		assert_int_equal(b4, 0);
		assert_int_equal(b16, 0);
		worst = fmax(worst, fabs(a16 - ex) / ex);
		if (!(fabs(a16 - a4) <= 1e-12 * a4))
			fail_msg("%s: sixteen lanes %.17g, four lanes %.17g", name, a16, a4);
	}
	if (!(worst <= POW24_REL / 4))
		fail_msg("%s: a sum is off by %g", name, worst);
	for (int k = 0; k < 16; k++) {
		float t16[16] = { 0 }, h16[16] = { 0 };
		t16[k] = 1e-13f;
		h16[k] = 3e12f;
		assert_int_equal(err24_flags(fn, t16, 16), 1);
		assert_int_equal(err24_flags(fn, h16, 16), 1);
	}
}
#endif
#endif

/* Every term of the approximate error is within POW24_REL / 4 of pow(d,
 * 2.4) over the range it accepts (values outside it are flagged), in the
 * four-lane, the eight-lane (AVX2) and the sixteen-lane (AVX-512) versions. */
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
	assert_int_equal(err24_flags(err24, tiny, 4), 1);
	assert_int_equal(err24_flags(err24, huge, 4), 1);
#if defined(__x86_64__)
	/* the vector versions (AVX2: eight lanes, AVX-512: sixteen), each
	 * where the CPU has it */
	if (__builtin_cpu_supports("avx2"))
		check_err24_v16(err24_avx2, "avx2");
	if (__builtin_cpu_supports("avx512f"))
		check_err24_v16(err24_avx512, "avx512");
#endif
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
		qk_qspec q = spec_of(&a, &c, n);
		const float *cw = (it / 3) % 2 ? w : NULL;
		float s1, z1, s2, z2;
		qc_group_params(&a, &c, x, n, cw, &s1, &z1);
		gparams(&q, x, n, cw, &s2, &z2);
		if (s1 != s2 || z1 != z2)
			fail_msg("group %d (n %lld): scale %.9g zp %g, reference %.9g %g", it, (long long)n, s2,
			         z2, s1, z1);
		float mn, mx, s0, z0;
		qc_minmax(x, (size_t)n, &mn, &mx);
		qc_qparams(&a, mn, mx, &s0, &z0);
		n_clipped += s1 < s0;
#if defined(__SSE2__)
		float s3 = s0, z3 = z0;
		if (gparams24(&q, x, n, cw, mn, mx, &s3, &z3)) {
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

/* The schemes the ops are checked on: integer and FP8 codes, symmetric and
 * not, groups (a partial last one), channels, a tensor-wide scale, FP32 and
 * BF16 arithmetic. */
static const struct scheme {
	const char *name;
	qc_qargs a;
	int mse;
} schemes[] = {
	{ "int4 g64 sym mse", { 0, 4, 1, QC_QS_GROUP, 64, QC_DT_BF16, QC_DT_F32 }, 1 },
	{ "int4 g32 asym mse", { 0, 4, 0, QC_QS_GROUP, 32, QC_DT_BF16, QC_DT_F32 }, 1 },
	{ "int8 channel asym minmax", { 0, 8, 0, QC_QS_CHANNEL, 0, QC_DT_F32, QC_DT_F32 }, 0 },
	{ "int4 g64 sym bf16-arith", { 0, 4, 1, QC_QS_GROUP, 64, QC_DT_BF16, QC_DT_BF16 }, 1 },
	{ "fp8 channel", { 1, 8, 1, QC_QS_CHANNEL, 0, QC_DT_BF16, QC_DT_F32 }, 0 },
	{ "int8 tensor sym", { 0, 8, 1, QC_QS_TENSOR, 0, QC_DT_F32, QC_DT_F32 }, 0 },
};
#define NSCHEMES (sizeof schemes / sizeof schemes[0])

/* Outputs of the ops for nm matrices stacked from w [R, cols]. */
typedef struct outs {
	qk_gptq_mat m[3];
	int nm;
	int8_t *codes;
	float *scales, *zps, *deq;
	qk_gptq_sums *sums;
} outs;

static void outs_init(outs *o, const qc_qargs *a, const float *w, int64_t R, int64_t cols, int nm)
{
	int64_t ng = qc_qgroups(a, cols);
	int64_t ns = a->strategy == QC_QS_TENSOR ? 1 : R * ng;
	o->nm = nm;
	o->codes = malloc((size_t)(R * cols));
	o->scales = malloc((size_t)(ns * nm) * sizeof(float));
	o->zps = a->symmetric ? NULL : malloc((size_t)(ns * nm) * sizeof(float));
	o->deq = malloc((size_t)(R * cols) * sizeof(float));
	o->sums = calloc((size_t)R, sizeof *o->sums);
	assert_non_null(o->codes);
	assert_non_null(o->deq);
	assert_non_null(o->sums);
	for (int k = 0, r = 0; k < nm; k++) {
		int64_t rows = k + 1 < nm ? R / nm : R - (int64_t)r;
		int64_t so = a->strategy == QC_QS_TENSOR ? k : r * ng;
		o->m[k] = (qk_gptq_mat){ .W = w + r * cols, .rows = rows, .codes = o->codes + r * cols,
		                         .scales = o->scales + so, .zps = o->zps ? o->zps + so : NULL,
		                         .deq = o->deq + r * cols, .sums = o->sums + r };
		r += (int)rows;
	}
}

static void outs_free(outs *o)
{
	free(o->codes);
	free(o->scales);
	free(o->zps);
	free(o->deq);
	free(o->sums);
}

/* The scale index of element (r, c) of matrix k (rows local to it). */
static int64_t sidx(const qc_qargs *a, int64_t cols, int64_t r, int64_t c)
{
	if (a->strategy == QC_QS_TENSOR)
		return 0;
	return r * qc_qgroups(a, cols) + (a->strategy == QC_QS_GROUP ? c / a->group_size : 0);
}

/* qk_gptq_params against qc_group_params group by group, and qk_gptq_rtn
 * against qc_quantize_value with those parameters: codes, deq, and the
 * sums w2 and werr (in double, in column order, exactly), with the
 * weights also hw2 and herr (and without them those stay 0); two and three
 * matrices, 1 and 2 threads, weighted and not. */
static void test_params_rtn(void **state)
{
	(void)state;
	const int64_t R = 37, cols = 200;
	rng = 5;
	float *w = make_w(R, cols);
	float colw[200];
	for (int64_t j = 0; j < cols; j++)
		colw[j] = (float)pow(10, 2 * unif() - 1);
	for (size_t s = 0; s < NSCHEMES; s++)
		for (int v = 0; v < 4; v++) {
			const qc_qargs *a = &schemes[s].a;
			qc_clip_opts c;
			qc_clip_opts_default(&c, schemes[s].mse ? QC_CLIP_MSE : QC_CLIP_MINMAX);
			qk_qspec q = spec_of(a, &c, cols);
			const float *cw = v & 1 ? colw : NULL;
			outs o;
			outs_init(&o, a, w, R, cols, v & 2 ? 3 : 2);
			qk_ctx *k = v & 2 ? kc1 : kc;
			if (a->strategy == QC_QS_TENSOR) {
				tu_assert_rc(qk_gptq_params(k, &q, o.m, o.nm, cols, cw), QC_EINVAL);
				for (int m = 0; m < o.nm; m++) {
					float mn, mx, rmn, rmx;
					tu_assert_rc(qk_gptq_minmax(k, o.m[m].W, (size_t)(o.m[m].rows * cols), &mn, &mx), 0);
					qc_minmax(o.m[m].W, (size_t)(o.m[m].rows * cols), &rmn, &rmx);
					assert_true(mn == rmn && mx == rmx);
					qc_qparams(a, mn, mx, &o.m[m].scales[0], o.zps ? &o.m[m].zps[0] : &mn);
				}
			} else {
				tu_assert_rc(qk_gptq_params(k, &q, o.m, o.nm, cols, cw), 0);
			}
			tu_assert_rc(qk_gptq_rtn(k, &q, o.m, o.nm, cols, cw), 0);
			for (int m = 0; m < o.nm; m++)
				for (int64_t r = 0; r < o.m[m].rows; r++) {
					const float *x = o.m[m].W + r * cols;
					if (a->strategy != QC_QS_TENSOR)
						for (int64_t g = 0; g < qc_qgroups(a, cols); g++) {
							int64_t c0 = g * q.group, len = cols - c0 < q.group ? cols - c0 : q.group;
							float s1, z1;
							qc_group_params(a, &c, x + c0, len, cw ? cw + c0 : NULL, &s1, &z1);
							int64_t i = sidx(a, cols, r, c0);
							if (o.m[m].scales[i] != s1 || (o.zps && o.m[m].zps[i] != z1))
								fail_msg("%s v %d: group parameters differ", schemes[s].name, v);
						}
					double w2 = 0, werr = 0, hw2 = 0, herr = 0;
					for (int64_t j = 0; j < cols; j++) {
						int64_t i = sidx(a, cols, r, j);
						float sc = o.m[m].scales[i], z = o.zps ? o.m[m].zps[i] : 0;
						float qv = qc_quantize_value(a, x[j], sc, z);
						float dq = qc_dequantize_value(qv, sc, z);
						if (qc_code_load(a, o.m[m].codes, (size_t)(r * cols + j)) != qv ||
						    o.m[m].deq[r * cols + j] != dq)
							fail_msg("%s v %d: code or deq of [%lld][%lld] differs", schemes[s].name, v,
							         (long long)r, (long long)j);
						w2 += (double)x[j] * x[j];
						werr += ((double)x[j] - dq) * ((double)x[j] - dq);
						if (cw) {
							hw2 += (double)cw[j] * ((double)x[j] * x[j]);
							herr += (double)cw[j] * (((double)x[j] - dq) * ((double)x[j] - dq));
						}
					}
					assert_true(o.m[m].sums[r].w2 == w2);
					assert_true(o.m[m].sums[r].werr == werr);
					assert_true(o.m[m].sums[r].hw2 == hw2);
					assert_true(o.m[m].sums[r].herr == herr);
				}
			outs_free(&o);
		}
	free(w);
}

// ---------------------------------------------------------------- errors and sweep

/* An upper triangular V [n, n] from qk_gptq_factor of a random SPD matrix;
 * with perm and dead given, the dead inputs' sweep positions are
 * uncoupled from the others (as a real Hessian's dead inputs are: their
 * rows and columns are 0 but for the diagonal), so that V's rows and
 * columns there are 0 but for the diagonal too. */
static float *make_v(int64_t n, const int64_t *perm, const uint8_t *dead)
{
	float *m = spd(n, 2 * n), *d = malloc((size_t)n * sizeof *d);
	for (int64_t k = 0; perm && k < n; k++)
		if (dead[perm[k]]) {
			int64_t i = n - 1 - k; /* M = J H J */
			for (int64_t j = 0; j < n; j++)
				if (j != i)
					m[i * n + j] = m[j * n + i] = 0;
		}
	for (int64_t i = 0; i < n; i++)
		d[i] = m[i * n + i];
	tu_assert_rc(qk_gptq_factor(kc, m, n, d, 0.01), 0);
	free(d);
	return m;
}

/* ||x V||^2 in double for x [n] and upper triangular V. */
static double xv2(const double *x, const float *V, int64_t n)
{
	double s = 0;
	for (int64_t j = 0; j < n; j++) {
		double y = 0;
		for (int64_t k = 0; k <= j; k++)
			y += x[k] * V[k * n + j];
		s += y * y;
	}
	return s;
}

/* qk_gptq_errors against the definitions in double: wp with dead columns
 * zeroed, in a random sweep order, and its RTN error, through V. */
static void test_errors(void **state)
{
	(void)state;
	const int64_t R = 21, n = 300;
	rng = 7;
	float *w = make_w(R, n), *V = make_v(n, NULL, NULL);
	int64_t *perm = randperm(n);
	uint8_t dead[300] = { 0 };
	dead[5] = dead[77] = dead[299] = 1;
	double *x = malloc((size_t)n * sizeof *x), *xr = malloc((size_t)n * sizeof *xr);
	for (size_t s = 0; s < NSCHEMES; s++) {
		const qc_qargs *a = &schemes[s].a;
		qk_qspec q = spec_of(a, NULL, n);
		outs o;
		outs_init(&o, a, w, R, n, 2);
		if (a->strategy == QC_QS_TENSOR)
			for (int m = 0; m < o.nm; m++) {
				float mn, mx, z;
				tu_assert_rc(qk_gptq_minmax(kc, o.m[m].W, (size_t)(o.m[m].rows * n), &mn, &mx), 0);
				qc_qparams(a, mn, mx, &o.m[m].scales[0], o.zps ? &o.m[m].zps[0] : &z);
			}
		else
			tu_assert_rc(qk_gptq_params(kc, &q, o.m, o.nm, n, NULL), 0);
		tu_assert_rc(qk_gptq_errors(s % 2 ? kc1 : kc, &q, o.m, o.nm, n, V, perm, dead), 0);
		for (int m = 0; m < o.nm; m++)
			for (int64_t r = 0; r < o.m[m].rows; r++) {
				const float *wr = o.m[m].W + r * n;
				double nw = 0, nr = 0;
				for (int64_t k = 0; k < n; k++) {
					int64_t c = perm[k];
					int64_t i = sidx(a, n, r, c);
					float sc = o.m[m].scales[i], z = o.zps ? o.m[m].zps[i] : 0;
					x[k] = dead[c] ? 0 : wr[c];
					xr[k] = dead[c] ? 0 : (double)(wr[c] - qc_qdq(a, wr[c], sc, z));
					nw += x[k] * x[k];
					nr += xr[k] * xr[k];
				}
				const qk_gptq_sums *su = &o.m[m].sums[r];
				double ew = xv2(x, V, n), er = xv2(xr, V, n);
				if (fabs(su->n_w - nw) > 1e-12 * nw || fabs(su->n_r - nr) > 1e-12 * nr ||
				    fabs(su->xv_w - ew) > 1e-5 * ew || fabs(su->xv_r - er) > 1e-5 * er)
					fail_msg("%s row %lld: sums %g %g %g %g, definitions %g %g %g %g", schemes[s].name,
					         (long long)r, su->n_w, su->xv_w, su->n_r, su->xv_r, nw, ew, nr, er);
				assert_true(su->w2 == 0 && su->werr == 0 && su->n_g == 0 && su->xv_g == 0);
			}
		outs_free(&o);
	}
	free(x);
	free(xr);
	free(w);
	free(V);
	free(perm);
}

/*
 * The plain sweep: one row, column by column in double, no lazy batches:
 * with U = V^-1 (so that U^T U is the inverse of the damped Hessian in
 * sweep order), err = (w_j - q_j) / U_jj and w_k -= err U_jk for k > j;
 * dynamic groups' parameters from the updated weights when entered.
 * dq[n] gets the dequantized values in original column order.
 */
static void ref_sweep(const qc_qargs *a, const qc_clip_opts *c, const float *wr, int64_t n,
                      const double *U, const int64_t *perm, const uint8_t *dead, int dynamic,
                      const float *colw, float *sc, float *zp, float *dq)
{
	double *x = malloc((size_t)n * sizeof *x);
	for (int64_t k = 0; k < n; k++)
		x[k] = dead[perm[k]] ? 0 : wr[perm[k]];
	const int64_t gs = a->strategy == QC_QS_GROUP ? a->group_size : n;
	for (int64_t j = 0; j < n; j++) {
		int64_t col = perm[j], gi = a->strategy == QC_QS_TENSOR ? 0 : col / gs;
		if (dynamic && j % gs == 0) {
			int64_t len = n - j < gs ? n - j : gs;
			float g[256];
			for (int64_t i = 0; i < len; i++)
				g[i] = (float)x[j + i];
			float z;
			qc_group_params(a, c, g, len, colw ? colw + j : NULL, &sc[gi], zp ? &zp[gi] : &z);
		}
		float s = sc[gi], z = zp ? zp[gi] : 0;
		float q = qc_dequantize_value(qc_quantize_value(a, (float)x[j], s, z), s, z);
		dq[col] = q;
		double err = (x[j] - q) / U[j * n + j];
		for (int64_t k = j + 1; k < n; k++)
			x[k] -= err * U[j * n + k];
	}
	free(x);
}

/* qk_gptq_sweep against the plain sweep: with act-order (a random order,
 * parameters read) and without (identity order, dynamic groups), dead
 * inputs, several blocks and sub-blocks (block 64, groups of 32 and a
 * partial last one; block 16 with groups of 64: one group per block),
 * 1 and 2 threads, deq in place of W; dead inputs are quantized to 0. The sums against their definitions
 * on the op's own outputs; the codes against the reference's, which may
 * differ where rounding decides a tie-close value differently (the float
 * lazy batches against double) but almost nowhere. */
static void test_sweep(void **state)
{
	(void)state;
	/* 75 rows: on one thread two chunks of 32 rows, one of 8 and three
	 * single rows (inblock's three paths); on two, shares of 37 and 38 */
	const int64_t R = 75, n = 230;
	rng = 11;
	float *w0 = make_w(R, n);
	double *U = calloc((size_t)(n * n), sizeof *U);
	uint8_t dead[230] = { 0 };
	dead[3] = dead[100] = 1;
	float colw[230];
	for (int64_t j = 0; j < n; j++)
		colw[j] = (float)(0.5 + unif());
	static const struct { int scheme, dynamic, inplace, threads; int64_t block; int weighted; } cases[] = {
		{ 0, 0, 0, 2, 64, 0 }, { 0, 1, 0, 2, 64, 0 }, { 1, 1, 1, 1, 16, 1 }, { 1, 0, 0, 2, 128, 0 },
		{ 2, 0, 1, 2, 64, 0 }, { 3, 1, 0, 2, 64, 0 }, { 4, 0, 0, 1, 50, 0 }, { 5, 0, 0, 2, 64, 0 },
	};
	float *dq = malloc((size_t)n * sizeof *dq), *rs = malloc(64 * sizeof *rs), *rz = malloc(64 * sizeof *rz);
	double *d = malloc((size_t)n * sizeof *d);
	for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
		qc_qargs a = schemes[cases[ci].scheme].a;
		if (cases[ci].block == 16)
			a.group_size = 64;
		int dyn = cases[ci].dynamic;
		qc_clip_opts c;
		qc_clip_opts_default(&c, schemes[cases[ci].scheme].mse ? QC_CLIP_MSE : QC_CLIP_MINMAX);
		qk_qspec q = spec_of(&a, &c, n);
		const float *cw = cases[ci].weighted ? colw : NULL;
		float *w = malloc((size_t)(R * n) * sizeof *w);
		memcpy(w, w0, (size_t)(R * n) * sizeof *w);
		int64_t *perm = randperm(n);
		for (int64_t i = 0; i < n && dyn; i++)
			perm[i] = i;
		float *V = make_v(n, perm, dead);
		/* U = V^-1 in double, column by column (back substitution) */
		for (int64_t j = 0; j < n; j++) {
			U[j * n + j] = 1.0 / V[j * n + j];
			for (int64_t i = j - 1; i >= 0; i--) {
				double t = 0;
				for (int64_t k = i + 1; k <= j; k++)
					t += (double)V[i * n + k] * U[k * n + j];
				U[i * n + j] = -t / V[i * n + i];
			}
		}
		outs o;
		outs_init(&o, &a, w, R, n, 2);
		if (a.strategy == QC_QS_TENSOR)
			for (int m = 0; m < o.nm; m++) {
				float mn, mx, z;
				tu_assert_rc(qk_gptq_minmax(kc, o.m[m].W, (size_t)(o.m[m].rows * n), &mn, &mx), 0);
				qc_qparams(&a, mn, mx, &o.m[m].scales[0], o.zps ? &o.m[m].zps[0] : &z);
			}
		else if (!dyn)
			tu_assert_rc(qk_gptq_params(kc, &q, o.m, o.nm, n, cw), 0);
		if (cases[ci].inplace)
			for (int m = 0; m < o.nm; m++)
				o.m[m].deq = (float *)o.m[m].W;
		tu_assert_rc(qk_gptq_sweep(cases[ci].threads == 2 ? kc : kc1, &q, o.m, o.nm, n, V, perm,
		                           dead, cw, cases[ci].block, dyn), 0);
		int64_t same = 0, ng = qc_qgroups(&a, n);
		for (int m = 0; m < o.nm; m++)
			for (int64_t r = 0; r < o.m[m].rows; r++) {
				const float *wr = w0 + ((o.m[m].W - w) + r * n);
				float *osc = a.strategy == QC_QS_TENSOR ? o.m[m].scales : o.m[m].scales + r * ng;
				float *ozp = !o.zps ? NULL : a.strategy == QC_QS_TENSOR ? o.m[m].zps : o.m[m].zps + r * ng;
				/* the reference with the op's parameters when they are read */
				memcpy(rs, osc, (size_t)(a.strategy == QC_QS_TENSOR ? 1 : ng) * sizeof *rs);
				if (ozp)
					memcpy(rz, ozp, (size_t)(a.strategy == QC_QS_TENSOR ? 1 : ng) * sizeof *rz);
				ref_sweep(&a, &c, wr, n, U, perm, dead, dyn, cw, rs, ozp ? rz : NULL, dq);
				const float *od = o.m[m].deq + r * n;
				double w2 = 0, werr = 0, ng2 = 0;
				for (int64_t j = 0; j < n; j++) {
					int64_t i = a.strategy == QC_QS_TENSOR ? 0 : a.strategy == QC_QS_GROUP ? j / a.group_size : 0;
					float z = ozp ? ozp[i] : 0;
					float code = qc_code_load(&a, o.m[m].codes, (size_t)(r * n + j));
					assert_true(od[j] == qc_dequantize_value(code, osc[i], z));
					same += od[j] == dq[j];
					w2 += (double)wr[j] * wr[j];
					werr += ((double)wr[j] - od[j]) * ((double)wr[j] - od[j]);
				}
				for (int64_t k = 0; k < n; k++) {
					int64_t cc = perm[k];
					d[k] = (double)((dead[cc] ? 0.0f : wr[cc]) - od[cc]);
					ng2 += d[k] * d[k];
					if (dead[cc] && od[cc] != 0.0f)
						fail_msg("case %zu: dead input %lld dequantized to %g", ci, (long long)cc, od[cc]);
				}
				const qk_gptq_sums *su = &o.m[m].sums[r];
				double e = xv2(d, V, n);
				if (su->w2 != w2 || fabs(su->werr - werr) > 1e-9 * werr ||
				    fabs(su->n_g - ng2) > 1e-6 * ng2 || fabs(su->xv_g - e) > 1e-5 * e)
					fail_msg("case %zu row %lld: sums %g %g %g %g, definitions %g %g %g %g", ci,
					         (long long)r, su->w2, su->werr, su->n_g, su->xv_g, w2, werr, ng2, e);
			}
		if (!(same >= R * n * 99 / 100))
			fail_msg("case %zu (%s): %lld of %lld values equal the plain sweep's", ci,
			         schemes[cases[ci].scheme].name, (long long)same, (long long)(R * n));
		outs_free(&o);
		free(w);
		free(perm);
		free(V);
	}
	free(dq);
	free(rs);
	free(rz);
	free(d);
	free(U);
	free(w0);
}

/* The sweep's fast paths (rows laid out in sweep order for act-order,
 * eight and 32 rows side by side in vector lanes) against its plain ones
 * (rows in place, one at a time): the same bits, for every scheme, with
 * and without act-order, dynamic groups, deq in place and none, 1 and 2
 * threads, 75 rows (every path of inblock). */
static void test_sweep_fast_is_plain(void **state)
{
	(void)state;
	const int64_t R = 75, n = 200;
	rng = 13;
	float *w0 = make_w(R, n);
	uint8_t dead[200] = { 0 };
	dead[7] = 1;
	for (size_t si = 0; si < NSCHEMES; si++)
		for (int v = 0; v < 4; v++) {
			qc_qargs a = schemes[si].a;
			int dyn = (v & 1) && a.strategy == QC_QS_GROUP;
			qc_clip_opts c;
			qc_clip_opts_default(&c, schemes[si].mse ? QC_CLIP_MSE : QC_CLIP_MINMAX);
			qk_qspec q = spec_of(&a, &c, n);
			int64_t *perm = randperm(n);
			for (int64_t i = 0; i < n && (dyn || v == 2); i++)
				perm[i] = i;
			float *V = make_v(n, perm, dead);
			outs o[2];
			float *w[2];
			for (int k = 0; k < 2; k++) {
				w[k] = malloc((size_t)(R * n) * sizeof(float));
				memcpy(w[k], w0, (size_t)(R * n) * sizeof(float));
				outs_init(&o[k], &a, w[k], R, n, 2);
				if (a.strategy == QC_QS_TENSOR)
					for (int m = 0; m < 2; m++) {
						float mn, mx, z;
						tu_assert_rc(qk_gptq_minmax(kc, o[k].m[m].W, (size_t)(o[k].m[m].rows * n), &mn, &mx), 0);
						qc_qparams(&a, mn, mx, &o[k].m[m].scales[0], o[k].zps ? &o[k].m[m].zps[0] : &z);
					}
				else if (!dyn)
					tu_assert_rc(qk_gptq_params(kc, &q, o[k].m, 2, n, NULL), 0);
				for (int m = 0; m < 2; m++)
					o[k].m[m].deq = v == 3 ? NULL : v == 1 ? (float *)o[k].m[m].W : o[k].m[m].deq;
				plain_sweep = k;
				tu_assert_rc(qk_gptq_sweep(v & 2 ? kc1 : kc, &q, o[k].m, 2, n, V, perm, dead, NULL,
				                           64, dyn), 0);
				plain_sweep = 0;
			}
			int64_t ns = a.strategy == QC_QS_TENSOR ? 2 : R * qc_qgroups(&a, n);
			if (memcmp(o[0].codes, o[1].codes, (size_t)(R * n)) != 0 ||
			    memcmp(o[0].scales, o[1].scales, (size_t)ns * sizeof(float)) != 0 ||
			    (o[0].zps && memcmp(o[0].zps, o[1].zps, (size_t)ns * sizeof(float)) != 0) ||
			    memcmp(o[0].sums, o[1].sums, (size_t)R * sizeof *o[0].sums) != 0)
				fail_msg("%s v %d: the fast sweep differs from the plain one", schemes[si].name, v);
			if (v != 3)
				for (int m = 0; m < 2; m++)
					assert_memory_equal(o[0].m[m].deq, o[1].m[m].deq,
					                    (size_t)(o[0].m[m].rows * n) * sizeof(float));
			for (int k = 0; k < 2; k++) {
				outs_free(&o[k]);
				free(w[k]);
			}
			free(perm);
			free(V);
		}
	free(w0);
}

/* Bad arguments are refused with a message, before any work. */
static void test_bad_args(void **state)
{
	(void)state;
	qc_qargs a = { 0, 4, 1, QC_QS_GROUP, 32, QC_DT_BF16, QC_DT_F32 };
	qk_qspec q = spec_of(&a, NULL, 64);
	float w[64] = { 0 }, v[64 * 64] = { 0 }, sc[2];
	int8_t codes[64];
	qk_gptq_sums su = { 0 };
	int64_t perm[64];
	for (int i = 0; i < 64; i++)
		perm[i] = i;
	qk_gptq_mat m = { .W = w, .rows = 1, .codes = codes, .scales = sc, .sums = &su };
	tu_assert_rc(qk_gptq_params(kc, &q, &m, 0, 64, NULL), QC_EINVAL);
	tu_assert_rc(qk_gptq_params(kc, &q, &m, 1, 0, NULL), QC_EINVAL);
	qk_qspec bad = q;
	bad.bits = 3;
	tu_assert_rc(qk_gptq_rtn(kc, &bad, &m, 1, 64, NULL), QC_EINVAL);
	bad = q;
	bad.symmetric = 0; /* no zero points given */
	tu_assert_rc(qk_gptq_rtn(kc, &bad, &m, 1, 64, NULL), QC_EINVAL);
	tu_assert_rc(qk_gptq_sweep(kc, &q, &m, 1, 64, v, perm, NULL, NULL, 0, 0), QC_EINVAL);
	tu_assert_rc(qk_gptq_errors(kc, &q, &m, 1, 64, NULL, perm, NULL), QC_EINVAL);
	m.sums = NULL;
	tu_assert_rc(qk_gptq_rtn(kc, &q, &m, 1, 64, NULL), QC_EINVAL);
	tu_assert_rc(qk_gptq_factor(kc, v, 0, w, 0), QC_EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_chol_lower),
		cmocka_unit_test(test_factor),
		cmocka_unit_test(test_mirror),
		cmocka_unit_test(test_permute_hdiag),
		cmocka_unit_test(test_pow24_bound),
		cmocka_unit_test(test_gparams_exact),
		cmocka_unit_test(test_params_rtn),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_sweep),
		cmocka_unit_test(test_sweep_fast_is_plain),
		cmocka_unit_test(test_bad_args),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
