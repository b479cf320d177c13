/* test_gptq.c - the GPTQ solver (qc_gptq.h) against round-to-nearest, a
 * plain double-precision column-by-column GPTQ written here, and errors
 * computed directly from their definitions. */
#include "tutil.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "qc_err.h"
#include "qc_gptq.h"
#include "qc_num.h"
#include "qc_quant.h"

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

// ---------------------------------------------------------------- data

static uint64_t rng = 88172645463325252ull;

static void seed(uint64_t s)
{
	rng = s * 0x9E3779B97F4A7C15ull + 1;
}

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

/* Heavy-tailed weights [rows, cols]: normal with rare 4x values. */
static float *make_w(int64_t rows, int64_t cols)
{
	float *w = malloc((size_t)(rows * cols) * sizeof *w);
	assert_non_null(w);
	for (int64_t i = 0; i < rows * cols; i++)
		w[i] = (float)(normal() * (unif() < 0.02 ? 4 : 1) * 0.05);
	return w;
}

/* Calibration inputs X [T, n], correlated (each token mixes a few shared
 * factors into its channels) with `nout` outlier channels 20-100x larger,
 * as real activations have. */
static float *make_x(int64_t T, int64_t n, int nout)
{
	float *x = malloc((size_t)(T * n) * sizeof *x);
	double *mix = malloc((size_t)(8 * n) * sizeof *mix);
	double *gain = malloc((size_t)n * sizeof *gain);
	assert_non_null(x);
	assert_non_null(mix);
	assert_non_null(gain);
	for (int64_t i = 0; i < 8 * n; i++)
		mix[i] = normal();
	for (int64_t j = 0; j < n; j++)
		gain[j] = 1;
	for (int k = 0; k < nout; k++)
		gain[(k * 7919 + 13) % n] = 20 * pow(5, unif());
	for (int64_t t = 0; t < T; t++) {
		double f[8];
		for (int k = 0; k < 8; k++)
			f[k] = normal();
		for (int64_t j = 0; j < n; j++) {
			double v = normal() * 0.6;
			for (int k = 0; k < 8; k++)
				v += 0.3 * f[k] * mix[k * n + j];
			x[t * n + j] = (float)(v * gain[j]);
		}
	}
	free(mix);
	free(gain);
	return x;
}

/* H = 2 X^T X / T [n, n] FP32, upper triangle (as the walker accumulates it),
 * and a full double copy for the checks. */
static float *make_h(const float *x, int64_t T, int64_t n, double **hd)
{
	float *h = calloc((size_t)(n * n), sizeof *h);
	assert_non_null(h);
	assert_int_equal(qk_hessian_accum(kc, h, x, T, n, 2.0f / (float)T), 0);
	if (hd) {
		*hd = malloc((size_t)(n * n) * sizeof **hd);
		assert_non_null(*hd);
		for (int64_t i = 0; i < n; i++)
			for (int64_t j = 0; j < n; j++)
				(*hd)[i * n + j] = j >= i ? h[i * n + j] : h[j * n + i];
	}
	return h;
}

static qc_qargs qargs(int bits, int sym, qc_qstrategy st, int64_t gs)
{
	qc_qargs a = { 0, bits, sym, st, gs, QC_DT_BF16, QC_DT_F32 };
	return a;
}

/* Per row r of W [rows, n]: num[r] = d H d^T with d = W_r - Q_r and
 * den[r] = W_r H W_r^T, in double from the definition (num or den NULL:
 * not wanted); the products through BLAS's dgemm. */
static void row_forms(const float *w, const float *q, int64_t rows, int64_t n, const double *h,
                      double *num, double *den)
{
	double *d = malloc((size_t)(rows * n) * sizeof *d), *hv = malloc((size_t)(rows * n) * sizeof *hv);
	assert_non_null(d);
	assert_non_null(hv);
	for (int pass = 0; pass < 2; pass++) {
		double *out = pass ? den : num;
		if (!out)
			continue;
		for (int64_t i = 0; i < rows * n; i++)
			d[i] = pass ? w[i] : (double)w[i] - q[i];
		cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)n, (int)n, 1.0, d,
		            (int)n, h, (int)n, 0.0, hv, (int)n);
		for (int64_t r = 0; r < rows; r++) {
			double s = 0;
			for (int64_t i = 0; i < n; i++)
				s += d[r * n + i] * hv[r * n + i];
			out[r] = s;
		}
	}
	free(d);
	free(hv);
}

/* tr(D H D^T) / tr(W H W^T) in double, D = W - Q, from the definition. */
static double rel_out(const float *w, const float *q, int64_t rows, int64_t n, const double *h)
{
	double *num = malloc((size_t)rows * sizeof *num), *den = malloc((size_t)rows * sizeof *den);
	assert_non_null(num);
	assert_non_null(den);
	row_forms(w, q, rows, n, h, num, den);
	double a = 0, b = 0;
	for (int64_t r = 0; r < rows; r++) {
		a += num[r];
		b += den[r];
	}
	free(num);
	free(den);
	return a / b;
}

/* Outputs of one run over a single matrix. */
typedef struct out {
	int8_t *codes;
	float *scales, *zps, *deq;
	qc_gptq_part part;
	qc_gptq_info info;
} out;

static void out_init(out *o, const qc_qargs *a, const float *w, int64_t rows, int64_t cols)
{
	int64_t ns = a->strategy == QC_QS_GROUP ? rows * qc_qgroups(a, cols)
	           : a->strategy == QC_QS_CHANNEL ? rows : 1;
	o->codes = malloc((size_t)(rows * cols));
	o->scales = malloc((size_t)ns * sizeof(float));
	o->zps = a->symmetric ? NULL : malloc((size_t)ns * sizeof(float));
	o->deq = malloc((size_t)(rows * cols) * sizeof(float));
	assert_non_null(o->codes);
	assert_non_null(o->scales);
	assert_non_null(o->deq);
	memset(&o->part, 0, sizeof o->part);
	o->part.name = "model.layers.0.mlp.up_proj";
	o->part.W = w;
	o->part.rows = rows;
	o->part.codes = o->codes;
	o->part.scales = o->scales;
	o->part.zps = o->zps;
	o->part.deq = o->deq;
}

static void out_free(out *o)
{
	free(o->codes);
	free(o->scales);
	free(o->zps);
	free(o->deq);
}

static int run1(const qc_gptq_opts *opts, const qc_qargs *a, float *h, const float *w,
                int64_t rows, int64_t cols, out *o)
{
	qc_gptq *g;
	out_init(o, a, w, rows, cols);
	assert_int_equal(qc_gptq_new(&g, kc, opts), 0);
	int rc = qc_gptq_run(g, a, h, cols, &o->part, 1, &o->info);
	qc_gptq_free(g);
	return rc;
}

/* The schemes every property is checked on. */
static const struct scheme {
	const char *name;
	int bits, sym;
	qc_qstrategy st;
	int64_t gs;
} schemes[] = {
	{ "int4 g32 sym", 4, 1, QC_QS_GROUP, 32 },
	{ "int4 g64 asym", 4, 0, QC_QS_GROUP, 64 },
	{ "int4 g128 sym", 4, 1, QC_QS_GROUP, 128 },
	{ "int8 channel sym", 8, 1, QC_QS_CHANNEL, 0 },
	{ "int4 channel asym", 4, 0, QC_QS_CHANNEL, 0 },
};
#define NSCHEMES (sizeof schemes / sizeof schemes[0])

// ---------------------------------------------------------------- tests

/* With H = c I (uncorrelated inputs of equal power) GPTQ has nothing to
 * compensate: its codes, scales and zero points are exactly RTN's, for
 * every scheme, clip mode and order; so are a diagonal H's (a non-trivial
 * act-order permutation) when the MSE search is weighted by diag(H) on both
 * sides. cols = 200 leaves a partial last group. */
static void test_identity_is_rtn(void **state)
{
	(void)state;
	const int64_t rows = 24, cols = 200;
	seed(1);
	float *w = make_w(rows, cols);
	for (size_t s = 0; s < NSCHEMES; s++)
		for (int clip = 0; clip < 2; clip++)
			for (int ao = 0; ao < 2; ao++)
				for (int diagonal = 0; diagonal < 2; diagonal++) {
					qc_qargs a = qargs(schemes[s].bits, schemes[s].sym, schemes[s].st,
					                   schemes[s].gs);
					qc_gptq_opts o;
					qc_gptq_opts_default(&o);
					qc_clip_opts_default(&o.clip, clip ? QC_CLIP_MSE : QC_CLIP_MINMAX);
					o.actorder = ao ? QC_GPTQ_ACTORDER_STATIC : QC_GPTQ_ACTORDER_NONE;
					o.clip_hweight = diagonal;
					float *h = calloc((size_t)(cols * cols), sizeof *h);
					float *colw = malloc((size_t)cols * sizeof *colw);
					for (int64_t j = 0; j < cols; j++)
						h[j * cols + j] = colw[j] = diagonal ? (float)(0.5 + 4 * unif()) : 3.7f;
					out g;
					assert_int_equal(run1(&o, &a, h, w, rows, cols, &g), 0);
					out r;
					out_init(&r, &a, w, rows, cols);
					assert_int_equal(qc_quant_rtn(&a, &o.clip, w, rows, cols,
					                              diagonal ? colw : NULL, r.codes, r.scales,
					                              r.zps, r.deq), 0);
					int64_t ns = a.strategy == QC_QS_GROUP ? rows * qc_qgroups(&a, cols) : rows;
					if (memcmp(g.codes, r.codes, (size_t)(rows * cols)) != 0 ||
					    memcmp(g.scales, r.scales, (size_t)ns * sizeof(float)) != 0 ||
					    (r.zps && memcmp(g.zps, r.zps, (size_t)ns * sizeof(float)) != 0))
						fail_msg("%s clip %d actorder %d diagonal %d: not RTN's codes",
						         schemes[s].name, clip, ao, diagonal);
					assert_memory_equal(g.deq, r.deq, (size_t)(rows * cols) * sizeof(float));
					/* same Q, so the same error, by two computations */
					assert_true(fabs(g.part.err_out - g.part.err_rtn) <= 1e-4 * g.part.err_rtn);
					assert_true(g.info.damp == 0.01);
					out_free(&g);
					out_free(&r);
					free(h);
					free(colw);
				}
	free(w);
}

/* compressed-tensors' rules to the bit through the solver, on the
 * hand-worked example of test_quant.c: int4 symmetric, groups of 4, BF16
 * scales: amax 3.0 -> scale bf16(3.0 / 7.5) = 0.400390625 (0x3ECD), codes
 * round(x / s) half to even, clamped to [-8, 7]; second group amax 0.3 ->
 * scale bf16(0.04) = 0.0400390625. GPTQ with uncorrelated inputs (H = I),
 * and round to nearest in FP32 and in BF16 arithmetic, all give them. */
static void test_hand_worked(void **state)
{
	(void)state;
	float x[8] = { 0.75f, -1.5f, 0.1f, 3.0f, 0.3f, -0.15f, 0.0f, 0.21f };
	static const int8_t want[8] = { 2, -4, 0, 7, 7, -4, 0, 5 };
	for (int mode = 0; mode < 3; mode++) {
		qc_qargs a = qargs(4, 1, QC_QS_GROUP, 4);
		if (mode == 2)
			a.arith = QC_DT_BF16;
		qc_gptq_opts o;
		qc_gptq_opts_default(&o);
		qc_clip_opts_default(&o.clip, QC_CLIP_MINMAX);
		o.method = mode ? QC_GPTQ_METHOD_RTN : QC_GPTQ_METHOD_GPTQ;
		float h[64] = { 0 };
		for (int j = 0; j < 8; j++)
			h[j * 8 + j] = 1;
		out g;
		assert_int_equal(run1(&o, &a, h, x, 1, 8, &g), 0);
		assert_memory_equal(g.codes, want, 8);
		assert_true(g.scales[0] == 0.400390625f);
		assert_int_equal(qc_f32_to_bf16(g.scales[0]), 0x3ECD);
		assert_true(g.scales[1] == 0.0400390625f);
		assert_true(g.deq[3] == 7 * 0.400390625f);
		out_free(&g);
	}
}

/* The clipping search takes shortcuts (qc_gptq.c: early stops, skipped
 * repeats, approximate errors that decide only clear comparisons); its
 * result must be qc_group_params' exactly. A diagonal H leaves GPTQ nothing
 * to compensate, so GPTQ's parameters are the search's, compared here with
 * qc_quant_rtn's on many groups: heavy-tailed rows of different scales,
 * rows with tiny values (outside the approximation's range), zero rows,
 * constant rows, weighted and unweighted, BF16 and FP32 scales. */
static void test_mse_search_exact(void **state)
{
	(void)state;
	const int64_t rows = 192, cols = 384;
	seed(9);
	float *w = make_w(rows, cols);
	for (int64_t r = 0; r < rows; r++) {
		double sc = r % 16 == 1 ? 1e-13 : r % 16 == 2 ? 0 : pow(10, 4 * unif() - 3);
		for (int64_t j = 0; j < cols; j++)
			w[r * cols + j] = r % 16 == 3 ? 0.25f : (float)(w[r * cols + j] * sc);
	}
	float *h = malloc((size_t)(cols * cols) * sizeof *h);
	float *colw = malloc((size_t)cols * sizeof *colw);
	static const struct scheme ms[] = {
		{ "int4 g32 sym", 4, 1, QC_QS_GROUP, 32 },
		{ "int4 g128 asym", 4, 0, QC_QS_GROUP, 128 },
		{ "int8 g64 asym", 8, 0, QC_QS_GROUP, 64 },
		{ "int8 channel sym", 8, 1, QC_QS_CHANNEL, 0 },
	};
	for (size_t s = 0; s < sizeof ms / sizeof ms[0]; s++)
		for (int weighted = 0; weighted < 2; weighted++)
			for (int f32 = 0; f32 < 2; f32++) {
				qc_qargs a = qargs(ms[s].bits, ms[s].sym, ms[s].st, ms[s].gs);
				if (f32)
					a.scale_dtype = QC_DT_F32;
				qc_gptq_opts o;
				qc_gptq_opts_default(&o);
				o.clip_hweight = weighted;
				memset(h, 0, (size_t)(cols * cols) * sizeof *h);
				for (int64_t j = 0; j < cols; j++)
					h[j * cols + j] = colw[j] = weighted ? (float)pow(10, 3 * unif()) : 1.0f;
				out g, r;
				assert_int_equal(run1(&o, &a, h, w, rows, cols, &g), 0);
				out_init(&r, &a, w, rows, cols);
				assert_int_equal(qc_quant_rtn(&a, &o.clip, w, rows, cols, weighted ? colw : NULL,
				                              r.codes, r.scales, r.zps, r.deq), 0);
				int64_t ns = rows * qc_qgroups(&a, cols), diff = 0;
				for (int64_t i = 0; i < ns; i++)
					diff += g.scales[i] != r.scales[i] || (r.zps && g.zps[i] != r.zps[i]);
				if (diff || memcmp(g.codes, r.codes, (size_t)(rows * cols)) != 0)
					fail_msg("%s weighted %d f32 %d: %lld of %lld groups differ", ms[s].name,
					         weighted, f32, (long long)diff, (long long)ns);
				out_free(&g);
				out_free(&r);
			}
	free(colw);
	free(h);
	free(w);
}

/* On correlated inputs with outlier channels GPTQ beats RTN's output error
 * for every scheme and order, and the errors it reports are those of the
 * definition tr(D H D^T) / tr(W H W^T) with the undamped H. */
static void test_beats_rtn_on_outliers(void **state)
{
	(void)state;
	const int64_t rows = 48, cols = 256, T = 1024;
	seed(2);
	float *x = make_x(T, cols, 3);
	float *w = make_w(rows, cols);
	double *hd;
	float *h0 = make_h(x, T, cols, &hd);
	for (size_t s = 0; s < NSCHEMES; s++)
		for (int ao = 0; ao < 2; ao++)
			for (int clip = 0; clip < 2; clip++) {
				qc_qargs a = qargs(schemes[s].bits, schemes[s].sym, schemes[s].st,
				                   schemes[s].gs);
				qc_gptq_opts o;
				qc_gptq_opts_default(&o);
				o.actorder = ao ? QC_GPTQ_ACTORDER_STATIC : QC_GPTQ_ACTORDER_NONE;
				qc_clip_opts_default(&o.clip, clip ? QC_CLIP_MSE : QC_CLIP_MINMAX);
				float *h = malloc((size_t)(cols * cols) * sizeof *h);
				memcpy(h, h0, (size_t)(cols * cols) * sizeof *h);
				out g;
				assert_int_equal(run1(&o, &a, h, w, rows, cols, &g), 0);
				out r;
				out_init(&r, &a, w, rows, cols);
				assert_int_equal(qc_quant_rtn(&a, &o.clip, w, rows, cols, NULL, r.codes,
				                              r.scales, r.zps, r.deq), 0);
				double eg = rel_out(w, g.deq, rows, cols, hd);
				double er = rel_out(w, r.deq, rows, cols, hd);
				if (!(g.part.err_out < g.part.err_rtn))
					fail_msg("%s actorder %d clip %d: err_out %g >= err_rtn %g", schemes[s].name,
					         ao, clip, g.part.err_out, g.part.err_rtn);
				if (fabs(g.part.err_out - eg) > 2e-3 * eg || fabs(g.part.err_rtn - er) > 2e-3 * er)
					fail_msg("%s: reported %g / %g, definition %g / %g", schemes[s].name,
					         g.part.err_out, g.part.err_rtn, eg, er);
				double w2 = 0, d2 = 0;
				for (int64_t i = 0; i < rows * cols; i++) {
					w2 += (double)w[i] * w[i];
					d2 += ((double)w[i] - g.deq[i]) * ((double)w[i] - g.deq[i]);
				}
				if (!(fabs(g.part.err_w - d2 / w2) <= 1e-9 * (d2 / w2)))
					fail_msg("%s ao %d clip %d: err_w %.12g, definition %.12g", schemes[s].name, ao, clip, g.part.err_w, d2 / w2);
				/* codes and deq agree */
				for (int64_t i = 0; i < rows * cols; i += 97) {
					int64_t gi = a.strategy == QC_QS_GROUP ? (i % cols) / a.group_size : 0;
					int64_t k = (i / cols) * qc_qgroups(&a, cols) + gi;
					float z = g.zps ? g.zps[k] : 0;
					assert_true(g.deq[i] == ((float)g.codes[i] - z) * g.scales[k]);
				}
				out_free(&g);
				out_free(&r);
				free(h);
			}
	free(hd);
	free(h0);
	free(w);
	free(x);
}

// ---- the plain reference: double precision, column by column, no lazy batch

static void chol_lower(double *a, int64_t n) /* a = L L^T in place (lower) */
{
	for (int64_t j = 0; j < n; j++) {
		double s = a[j * n + j];
		for (int64_t k = 0; k < j; k++)
			s -= a[j * n + k] * a[j * n + k];
		assert_true(s > 0);
		double d = sqrt(s);
		a[j * n + j] = d;
		for (int64_t i = j + 1; i < n; i++) {
			double t = a[i * n + j];
			for (int64_t k = 0; k < j; k++)
				t -= a[i * n + k] * a[j * n + k];
			a[i * n + j] = t / d;
		}
		for (int64_t i = 0; i < j; i++)
			a[i * n + j] = 0;
	}
}

/* U with H^-1 = U^T U, the textbook way the reference takes: L = chol(H),
 * H^-1 = L^-T L^-1, U = chol(H^-1)^T. */
static double *hinv_upper(const double *h, int64_t n)
{
	double *l = malloc((size_t)(n * n) * sizeof *l), *li = calloc((size_t)(n * n), sizeof *li);
	double *hi = malloc((size_t)(n * n) * sizeof *hi);
	memcpy(l, h, (size_t)(n * n) * sizeof *l);
	chol_lower(l, n);
	for (int64_t c = 0; c < n; c++) /* L^-1 column c by forward substitution */
		for (int64_t i = c; i < n; i++) {
			double s = i == c ? 1 : 0;
			for (int64_t k = c; k < i; k++)
				s -= l[i * n + k] * li[k * n + c];
			li[i * n + c] = s / l[i * n + i];
		}
	for (int64_t i = 0; i < n; i++)
		for (int64_t j = 0; j < n; j++) {
			double s = 0;
			for (int64_t k = i > j ? i : j; k < n; k++)
				s += li[k * n + i] * li[k * n + j];
			hi[i * n + j] = s;
		}
	chol_lower(hi, n); /* hi = C C^T; U = C^T */
	double *u = calloc((size_t)(n * n), sizeof *u);
	for (int64_t i = 0; i < n; i++)
		for (int64_t j = i; j < n; j++)
			u[i * n + j] = hi[j * n + i];
	free(l);
	free(li);
	free(hi);
	return u;
}

/*
 * GPTQ column by column: every later column is updated right after each
 * column is quantized. Dynamic groups take their parameters from the
 * current weights when entered; with stale != 0 they take them from the
 * weights as they were at the start of the current block of `block`
 * columns, which is what the reference's lazy batching reads. Static
 * act-order: parameters from the original W up front, sweep in decreasing
 * diag(H). Codes and parameters in qc_quant's layouts.
 */
static void ref_gptq(const qc_qargs *a, const qc_clip_opts *clip, const float *w, int64_t rows,
                     int64_t n, const double *h0, double damp, int actstatic, int stale,
                     int64_t block, int8_t *codes, float *scales, float *zps)
{
	double *h = malloc((size_t)(n * n) * sizeof *h);
	double *W = malloc((size_t)(rows * n) * sizeof *W), *snap = malloc((size_t)(rows * n) * sizeof *snap);
	int64_t *perm = malloc((size_t)n * sizeof *perm);
	memcpy(h, h0, (size_t)(n * n) * sizeof *h);
	int64_t gs = a->strategy == QC_QS_GROUP ? a->group_size : n, ng = qc_qgroups(a, n);
	int dynamic = a->strategy == QC_QS_GROUP && !actstatic;
	/* up-front parameters from the original weights */
	if (!dynamic)
		for (int64_t r = 0; r < rows; r++)
			for (int64_t g = 0; g < ng; g++) {
				int64_t c0 = g * gs, len = n - c0 < gs ? n - c0 : gs;
				float s, z;
				qc_group_params(a, clip, w + r * n + c0, len, NULL, &s, &z);
				scales[r * ng + g] = s;
				if (zps)
					zps[r * ng + g] = z;
			}
	for (int64_t j = 0; j < n; j++) {
		if (h[j * n + j] == 0)
			h[j * n + j] = 1;
		perm[j] = j;
	}
	if (actstatic) /* insertion sort: decreasing diag, ties by index */
		for (int64_t i = 1; i < n; i++)
			for (int64_t k = i; k > 0 && h[perm[k] * n + perm[k]] > h[perm[k - 1] * n + perm[k - 1]]; k--) {
				int64_t t = perm[k];
				perm[k] = perm[k - 1];
				perm[k - 1] = t;
			}
	double *hp = malloc((size_t)(n * n) * sizeof *hp), mean = 0;
	for (int64_t i = 0; i < n; i++)
		for (int64_t j = 0; j < n; j++)
			hp[i * n + j] = h[perm[i] * n + perm[j]];
	for (int64_t i = 0; i < n; i++)
		mean += hp[i * n + i] / (double)n;
	for (int64_t i = 0; i < n; i++)
		hp[i * n + i] += damp * mean;
	double *u = hinv_upper(hp, n);
	for (int64_t r = 0; r < rows; r++)
		for (int64_t j = 0; j < n; j++)
			W[r * n + j] = h0[perm[j] * n + perm[j]] == 0 ? 0 : w[r * n + perm[j]];
	float *tmp = malloc((size_t)n * sizeof *tmp);
	for (int64_t j = 0; j < n; j++) {
		if (j % block == 0)
			memcpy(snap, W, (size_t)(rows * n) * sizeof *snap);
		int64_t c = perm[j], g = c / gs;
		for (int64_t r = 0; r < rows; r++) {
			double *wr = W + r * n;
			if (dynamic && j % gs == 0) {
				int64_t len = n - j < gs ? n - j : gs;
				for (int64_t k = 0; k < len; k++)
					tmp[k] = (float)(stale ? snap[r * n + j + k] : wr[j + k]);
				float s, z;
				qc_group_params(a, clip, tmp, len, NULL, &s, &z);
				scales[r * ng + g] = s;
				if (zps)
					zps[r * ng + g] = z;
			}
			float s = scales[r * ng + g], z = zps ? zps[r * ng + g] : 0;
			float q = qc_quantize_value(a, (float)wr[j], s, z);
			codes[r * n + c] = (int8_t)q;
			double err = (wr[j] - (double)qc_dequantize_value(q, s, z)) / u[j * n + j];
			for (int64_t k = j + 1; k < n; k++)
				wr[k] -= err * u[j * n + k];
		}
	}
	free(tmp);
	free(u);
	free(hp);
	free(h);
	free(W);
	free(snap);
	free(perm);
}

/* Groups smaller than the block take their parameters from the weights as
 * updated by the earlier columns of the same block: the solver's codes are
 * the plain reference's, while the reference's stale reading gives other
 * codes (so this test can tell the two apart). Also checked: groups of 128
 * (one per block), channel, static act-order, and a partial last group. */
static void test_matches_plain_reference(void **state)
{
	(void)state;
	const int64_t rows = 16, T = 768;
	static const struct {
		int64_t cols, gs;
		qc_qstrategy st;
		int sym, actstatic, expect_stale_differs;
		int64_t block;       /* the solver's block (the reference has none) */
	} cases[] = {
		{ 256, 32, QC_QS_GROUP, 1, 0, 1, 128 },
		{ 256, 64, QC_QS_GROUP, 0, 0, 1, 128 },
		{ 256, 128, QC_QS_GROUP, 1, 0, 0, 128 },
		{ 200, 32, QC_QS_GROUP, 1, 0, 1, 128 },
		{ 256, 0, QC_QS_CHANNEL, 1, 0, 0, 128 },
		{ 256, 32, QC_QS_GROUP, 1, 1, 0, 128 },
		{ 256, 0, QC_QS_CHANNEL, 0, 1, 0, 128 },
		{ 256, 64, QC_QS_GROUP, 1, 0, 1, 40 },  /* groups wider than the block */
		{ 256, 32, QC_QS_GROUP, 0, 0, 1, 100 }, /* a block of 3 groups */
	};
	for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
		int64_t cols = cases[ci].cols;
		seed(3 + ci);
		float *x = make_x(T, cols, 2);
		float *w = make_w(rows, cols);
		double *hd;
		float *h = make_h(x, T, cols, &hd);
		qc_qargs a = qargs(4, cases[ci].sym, cases[ci].st, cases[ci].gs);
		qc_gptq_opts o;
		qc_gptq_opts_default(&o);
		qc_clip_opts_default(&o.clip, QC_CLIP_MINMAX);
		o.actorder = cases[ci].actstatic ? QC_GPTQ_ACTORDER_STATIC : QC_GPTQ_ACTORDER_NONE;
		o.block = cases[ci].block;
		out g;
		assert_int_equal(run1(&o, &a, h, w, rows, cols, &g), 0);
		out r, stale;
		out_init(&r, &a, w, rows, cols);
		out_init(&stale, &a, w, rows, cols);
		ref_gptq(&a, &o.clip, w, rows, cols, hd, 0.01, cases[ci].actstatic, 0, 128, r.codes,
		         r.scales, r.zps);
		ref_gptq(&a, &o.clip, w, rows, cols, hd, 0.01, cases[ci].actstatic, 1, 128, stale.codes,
		         stale.scales, stale.zps);
		int64_t diff = 0, sdiff = 0;
		for (int64_t i = 0; i < rows * cols; i++) {
			diff += g.codes[i] != r.codes[i];
			sdiff += stale.codes[i] != r.codes[i];
		}
		if (diff)
			fail_msg("case %zu: %lld codes differ from the plain reference", ci, (long long)diff);
		if (cases[ci].expect_stale_differs && sdiff == 0)
			fail_msg("case %zu: the stale reading should change some codes", ci);
		out_free(&g);
		out_free(&r);
		out_free(&stale);
		free(hd);
		free(h);
		free(w);
		free(x);
	}
}

/* A Hessian that is not positive definite: the damping doubles until the
 * factorization succeeds, and the damp used is reported; with a lower
 * ceiling the run fails naming the tensor. */
static void test_damping_escalates(void **state)
{
	(void)state;
	const int64_t rows = 8, cols = 64;
	seed(4);
	float *w = make_w(rows, cols);
	qc_qargs a = qargs(4, 1, QC_QS_GROUP, 32);
	qc_gptq_opts o;
	qc_gptq_opts_default(&o);
	/* diag 1 everywhere but one -0.3 entry: mean ~0.98, needs lambda > 0.3 */
	float *h = calloc((size_t)(cols * cols), sizeof *h);
	for (int64_t j = 0; j < cols; j++)
		h[j * cols + j] = j == 5 ? -0.3f : 1.0f;
	out g;
	assert_int_equal(run1(&o, &a, h, w, rows, cols, &g), 0);
	assert_true(g.info.damp == 0.32);  /* 0.01 * 2^5 */
	assert_int_equal(g.info.retries, 5);
	assert_true(isfinite(g.part.err_w));
	out_free(&g);
	for (int64_t j = 0; j < cols * cols; j++)
		h[j] = 0;
	for (int64_t j = 0; j < cols; j++)
		h[j * cols + j] = j == 5 ? -0.3f : 1.0f;
	o.damp_max = 0.2;
	tu_assert_rc(run1(&o, &a, h, w, rows, cols, &g), QC_ENUMERIC);
	assert_non_null(strstr(qc_errmsg(), "model.layers.0.mlp.up_proj"));
	assert_non_null(strstr(qc_errmsg(), "not positive definite"));
	out_free(&g);
	free(h);
	free(w);
}

/* NaN or Inf in a weight or in H: QC_ENUMERIC naming the tensor. */
static void test_nonfinite(void **state)
{
	(void)state;
	const int64_t rows = 4, cols = 32;
	seed(5);
	float *w = make_w(rows, cols);
	qc_qargs a = qargs(4, 1, QC_QS_GROUP, 32);
	float *h = calloc((size_t)(cols * cols), sizeof *h);
	for (int64_t j = 0; j < cols; j++)
		h[j * cols + j] = 1;
	w[2 * cols + 7] = NAN;
	out g;
	tu_assert_rc(run1(NULL, &a, h, w, rows, cols, &g), QC_ENUMERIC);
	assert_non_null(strstr(qc_errmsg(), "'model.layers.0.mlp.up_proj'"));
	assert_non_null(strstr(qc_errmsg(), "[2, 7]"));
	out_free(&g);
	w[2 * cols + 7] = 0.1f;
	h[3 * cols + 9] = INFINITY;
	tu_assert_rc(run1(NULL, &a, h, w, rows, cols, &g), QC_ENUMERIC);
	assert_non_null(strstr(qc_errmsg(), "hessian of 'model.layers.0.mlp.up_proj'"));
	out_free(&g);
	free(h);
	free(w);
}

/* Dead inputs (zero in every token): their weights become 0 (code = zero
 * point), they add nothing to err_out, and they are counted. */
static void test_dead_inputs(void **state)
{
	(void)state;
	const int64_t rows = 8, cols = 64, T = 256;
	seed(6);
	float *x = make_x(T, cols, 1);
	for (int64_t t = 0; t < T; t++)
		x[t * cols + 10] = x[t * cols + 40] = 0;
	float *w = make_w(rows, cols);
	double *hd;
	float *h = make_h(x, T, cols, &hd);
	qc_qargs a = qargs(4, 0, QC_QS_GROUP, 32);
	out g;
	assert_int_equal(run1(NULL, &a, h, w, rows, cols, &g), 0);
	assert_int_equal(g.info.dead, 2);
	for (int64_t r = 0; r < rows; r++) {
		assert_true(g.deq[r * cols + 10] == 0 && g.deq[r * cols + 40] == 0);
		assert_true(g.codes[r * cols + 10] == (int8_t)g.zps[r * 2 + 0]);
	}
	double eg = rel_out(w, g.deq, rows, cols, hd);
	assert_true(fabs(g.part.err_out - eg) <= 2e-3 * eg);
	out_free(&g);
	free(hd);
	free(h);
	free(w);
	free(x);
}

/* q/k/v share one Hessian: one run over three parts gives each its own
 * codes and errors, the same as three runs (rows are independent). */
static void test_parts_share_hessian(void **state)
{
	(void)state;
	const int64_t cols = 128, T = 512, rq = 32, rk = 8;
	seed(7);
	float *x = make_x(T, cols, 2);
	float *wq = make_w(rq, cols), *wk = make_w(rk, cols);
	float *h = make_h(x, T, cols, NULL);
	float *h2 = malloc((size_t)(cols * cols) * sizeof *h2);
	qc_qargs a = qargs(4, 1, QC_QS_GROUP, 32);
	out q, k;
	out_init(&q, &a, wq, rq, cols);
	out_init(&k, &a, wk, rk, cols);
	k.part.name = "k_proj";
	qc_gptq_part parts[2] = { q.part, k.part };
	qc_gptq *g;
	assert_int_equal(qc_gptq_new(&g, kc, NULL), 0);
	memcpy(h2, h, (size_t)(cols * cols) * sizeof *h2);
	assert_int_equal(qc_gptq_run(g, &a, h2, cols, parts, 2, NULL), 0);
	const out *o1[2] = { &q, &k };
	const float *w1[2] = { wq, wk };
	const int64_t r1[2] = { rq, rk };
	for (int p = 0; p < 2; p++) {
		out s;
		memcpy(h2, h, (size_t)(cols * cols) * sizeof *h2);
		out_init(&s, &a, w1[p], r1[p], cols);
		assert_int_equal(qc_gptq_run(g, &a, h2, cols, &s.part, 1, NULL), 0);
		int64_t diff = 0;
		for (int64_t i = 0; i < r1[p] * cols; i++)
			diff += s.codes[i] != o1[p]->codes[i];
		assert_true(diff <= r1[p] * cols / 1000);
		assert_true(fabs(s.part.err_out - parts[p].err_out) <= 1e-4 * s.part.err_out);
		assert_true(fabs(s.part.err_rtn - parts[p].err_rtn) <= 1e-4 * s.part.err_rtn);
		out_free(&s);
	}
	assert_true(parts[0].err_out < parts[0].err_rtn && parts[1].err_out < parts[1].err_rtn);
	qc_gptq_free(g);
	out_free(&q);
	out_free(&k);
	free(h);
	free(h2);
	free(wq);
	free(wk);
	free(x);
}

/* The error products on a sample of rows (qc_gptq_opts.exact_errors 0):
 * how many rows; the codes, deq and err_w are the exact run's, bit for
 * bit; a part of at most QC_GPTQ_ERR_ALL_ROWS rows gets the exact run's
 * err_out and err_rtn (to rounding); a larger one gets the estimate of
 * qc_gptq.c computed here from the definitions (every row's tr(D H D^T);
 * the sample's tr(W H W^T) and RTN's, carried to the part by their
 * diagonal forms sum_j H[j][j] a_j^2), which is within 2 % of the exact
 * errors on inputs with outlier channels and rows of norms 3x apart with
 * heavy tails. For group (zero points, scales per row) and tensor (one
 * scale per part) parameters. */
static void test_sampled_errors(void **state)
{
	(void)state;
	assert_int_equal(qc_gptq_err_rows(3000, 1024, 0), 512);
	assert_int_equal(qc_gptq_err_rows(3000, 1024, 1), 3000);
	assert_int_equal(qc_gptq_err_rows(3000, 1023, 0), 3000);
	assert_int_equal(qc_gptq_err_rows(1024, 4096, 0), 1024);
	assert_int_equal(qc_gptq_err_rows(1025, 4096, 0), 512);
	assert_int_equal(qc_gptq_err_rows(4096, 14336, 0), 512);
	assert_int_equal(qc_gptq_err_rows(28672, 4096, 0), 3584);
	const int64_t cols = 1024, T = 1536, rbig = 3000, rsmall = 500, run = 16, runs = 512 / run;
	seed(11);
	float *x = make_x(T, cols, 2);
	double *hd;
	float *h = make_h(x, T, cols, &hd);
	float *h2 = malloc((size_t)(cols * cols) * sizeof *h2);
	float *wb = malloc((size_t)(rbig * cols) * sizeof *wb), *ws = make_w(rsmall, cols);
	assert_non_null(wb);
	for (int64_t r = 0; r < rbig; r++) {
		double sc = pow(10, 0.5 * unif() - 0.25);
		for (int64_t j = 0; j < cols; j++)
			wb[r * cols + j] = (float)(normal() * (unif() < 0.02 ? 4 : 1) * sc);
	}
	double *num = malloc((size_t)rbig * sizeof *num), *den = malloc((size_t)rbig * sizeof *den);
	double *rnum = malloc((size_t)rbig * sizeof *rnum);
	uint8_t *in = calloc((size_t)rbig, 1);
	assert_non_null(num);
	assert_non_null(den);
	assert_non_null(rnum);
	assert_non_null(in);
	for (int64_t i = 0; i < runs; i++)
		memset(in + i * rbig / runs, 1, run);
	const qc_qargs as[2] = { qargs(4, 0, QC_QS_GROUP, 32), qargs(8, 1, QC_QS_TENSOR, 0) };
	for (int k = 0; k < 2; k++) {
		const qc_qargs *a = &as[k];
		out e[2], m[2]; /* exact and sampled, big and small part */
		qc_gptq_part pe[2], pm[2];
		for (int ex = 0; ex < 2; ex++) {
			out *o = ex ? e : m;
			qc_gptq_part *pp = ex ? pe : pm;
			out_init(&o[0], a, wb, rbig, cols);
			out_init(&o[1], a, ws, rsmall, cols);
			pp[0] = o[0].part;
			pp[1] = o[1].part;
			qc_gptq_opts opt;
			qc_gptq_opts_default(&opt);
			opt.exact_errors = ex;
			qc_gptq *g;
			assert_int_equal(qc_gptq_new(&g, kc, &opt), 0);
			memcpy(h2, h, (size_t)(cols * cols) * sizeof *h2);
			tu_assert_rc(qc_gptq_run(g, a, h2, cols, pp, 2, NULL), 0);
			qc_gptq_free(g);
		}
		for (int p = 0; p < 2; p++) {
			int64_t rows = p ? rsmall : rbig;
			assert_memory_equal(m[p].codes, e[p].codes, (size_t)(rows * cols));
			assert_memory_equal(m[p].deq, e[p].deq, (size_t)(rows * cols) * sizeof(float));
			assert_true(pm[p].err_w == pe[p].err_w);
		}
		/* (the same rows, though the GEMMs' row counts differ: sgemm may
		 * round a row's products differently) */
		assert_true(fabs(pm[1].err_out - pe[1].err_out) <= 1e-5 * pe[1].err_out &&
		            fabs(pm[1].err_rtn - pe[1].err_rtn) <= 1e-5 * pe[1].err_rtn);
		/* the estimate from the definitions; RTN of the whole part (a
		 * tensor scale is the part's) */
		out r;
		out_init(&r, a, wb, rbig, cols);
		qc_clip_opts clip;
		qc_clip_opts_default(&clip, QC_CLIP_MSE);
		assert_int_equal(qc_quant_rtn(a, &clip, wb, rbig, cols, NULL, r.codes, r.scales, r.zps,
		                              r.deq), 0);
		row_forms(wb, e[0].deq, rbig, cols, hd, num, den);
		row_forms(wb, r.deq, rbig, cols, hd, rnum, NULL);
		double n_all = 0, d_s = 0, aw = 0, aw_s = 0, r_s = 0, ar = 0, ar_s = 0;
		double d_all = 0, r_all = 0;
		for (int64_t i = 0; i < rbig; i++) {
			double a2 = 0, b2 = 0; /* the diagonal forms of w and w - q_rtn */
			for (int64_t j = 0; j < cols; j++) {
				double wv = wb[i * cols + j], dv = wv - r.deq[i * cols + j];
				a2 += hd[j * cols + j] * wv * wv;
				b2 += hd[j * cols + j] * dv * dv;
			}
			n_all += num[i];
			d_all += den[i];
			r_all += rnum[i];
			aw += a2;
			ar += b2;
			if (in[i]) {
				d_s += den[i];
				aw_s += a2;
				r_s += rnum[i];
				ar_s += b2;
			}
		}
		double dest = d_s * aw / aw_s, eo = n_all / dest, er = r_s * ar / ar_s / dest;
		if (!(fabs(pm[0].err_out - eo) <= 2e-3 * eo && fabs(pm[0].err_rtn - er) <= 2e-3 * er))
			fail_msg("scheme %d: sampled %g / %g, the estimate from the definitions %g / %g", k,
			         pm[0].err_out, pm[0].err_rtn, eo, er);
		/* the exact run gives the definitions' errors over every row, and
		 * the sample is close to them */
		if (!(fabs(pe[0].err_out - n_all / d_all) <= 2e-3 * pe[0].err_out &&
		      fabs(pe[0].err_rtn - r_all / d_all) <= 2e-3 * pe[0].err_rtn))
			fail_msg("scheme %d: exact %g / %g, definitions %g / %g", k, pe[0].err_out,
			         pe[0].err_rtn, n_all / d_all, r_all / d_all);
		if (!(fabs(pm[0].err_out - pe[0].err_out) <= 0.02 * pe[0].err_out &&
		      fabs(pm[0].err_rtn - pe[0].err_rtn) <= 0.02 * pe[0].err_rtn))
			fail_msg("scheme %d: sampled %g / %g, every row %g / %g", k, pm[0].err_out,
			         pm[0].err_rtn, pe[0].err_out, pe[0].err_rtn);
		assert_true(pm[0].err_out != pe[0].err_out);
		out_free(&r);
		for (int p = 0; p < 2; p++) {
			out_free(&e[p]);
			out_free(&m[p]);
		}
	}
	free(num);
	free(den);
	free(rnum);
	free(in);
	free(wb);
	free(ws);
	free(h);
	free(h2);
	free(hd);
	free(x);
}

/* Method RTN: qc_quant_rtn's codes; err_out is err_rtn; without a Hessian
 * the output errors are not measured. Same inputs, same bits. */
static void test_rtn_and_determinism(void **state)
{
	(void)state;
	const int64_t rows = 16, cols = 128, T = 256;
	seed(8);
	float *x = make_x(T, cols, 2);
	float *w = make_w(rows, cols);
	float *h = make_h(x, T, cols, NULL);
	float *h2 = malloc((size_t)(cols * cols) * sizeof *h2);
	qc_qargs a = qargs(4, 0, QC_QS_GROUP, 64);
	qc_gptq_opts o;
	qc_gptq_opts_default(&o);
	o.method = QC_GPTQ_METHOD_RTN;
	out g, r;
	memcpy(h2, h, (size_t)(cols * cols) * sizeof *h2);
	assert_int_equal(run1(&o, &a, h2, w, rows, cols, &g), 0);
	out_init(&r, &a, w, rows, cols);
	assert_int_equal(qc_quant_rtn(&a, &o.clip, w, rows, cols, NULL, r.codes, r.scales, r.zps,
	                              r.deq), 0);
	assert_memory_equal(g.codes, r.codes, (size_t)(rows * cols));
	assert_true(g.part.err_out == g.part.err_rtn && g.part.err_out > 0);
	out_free(&g);
	assert_int_equal(run1(&o, &a, NULL, w, rows, cols, &g), 0);
	assert_memory_equal(g.codes, r.codes, (size_t)(rows * cols));
	assert_true(isnan(g.part.err_out) && isnan(g.part.err_rtn) && g.part.err_w > 0);
	out_free(&g);
	/* GPTQ twice: identical bits */
	qc_gptq_opts_default(&o);
	out g2;
	memcpy(h2, h, (size_t)(cols * cols) * sizeof *h2);
	assert_int_equal(run1(&o, &a, h2, w, rows, cols, &g), 0);
	memcpy(h2, h, (size_t)(cols * cols) * sizeof *h2);
	assert_int_equal(run1(&o, &a, h2, w, rows, cols, &g2), 0);
	assert_memory_equal(g.codes, g2.codes, (size_t)(rows * cols));
	assert_memory_equal(g.scales, g2.scales, (size_t)rows * 2 * sizeof(float));
	assert_true(g.part.err_out == g2.part.err_out);
	/* deq may be W itself: same result in place */
	float *wi = malloc((size_t)(rows * cols) * sizeof *wi);
	memcpy(wi, w, (size_t)(rows * cols) * sizeof *wi);
	out gi;
	memcpy(h2, h, (size_t)(cols * cols) * sizeof *h2);
	out_init(&gi, &a, wi, rows, cols);
	gi.part.deq = wi;
	qc_gptq *s;
	assert_int_equal(qc_gptq_new(&s, kc, NULL), 0);
	assert_int_equal(qc_gptq_run(s, &a, h2, cols, &gi.part, 1, NULL), 0);
	qc_gptq_free(s);
	assert_memory_equal(gi.codes, g.codes, (size_t)(rows * cols));
	assert_memory_equal(wi, g.deq, (size_t)(rows * cols) * sizeof(float));
	assert_true(gi.part.err_out == g.part.err_out && gi.part.err_w == g.part.err_w);
	out_free(&gi);
	free(wi);
	out_free(&g);
	out_free(&g2);
	out_free(&r);
	free(h);
	free(h2);
	free(w);
	free(x);
}

/* H, the weights and deq are kernel memory (kernels.h): under
 * QK_DEBUG_MEMORY=1 they are unmapped between kernel calls, so the solver
 * must reach them only through the kernels (a host access faults and
 * fails the test). Results equal a run on host memory, for GPTQ with
 * act-order, with dynamic groups and deq in place of W, and RTN. */
static void test_kernel_memory(void **state)
{
	(void)state;
	const int64_t cols = 192, T = 512, r1 = 24, r2 = 8;
	seed(12);
	float *x = make_x(T, cols, 2);
	float *w = make_w(r1 + r2, cols);
	float *h = make_h(x, T, cols, NULL);
	const char *env = getenv("QK_DEBUG_MEMORY");
	char *saved = env ? strdup(env) : NULL;
	qk_ctx *gk;
	setenv("QK_DEBUG_MEMORY", "1", 1);
	int rc = qk_ctx_new(&gk, QK_DEVICE_CPU, 2);
	if (saved)
		setenv("QK_DEBUG_MEMORY", saved, 1);
	else
		unsetenv("QK_DEBUG_MEMORY");
	free(saved);
	tu_assert_rc(rc, 0);
	const size_t hb = (size_t)(cols * cols) * sizeof(float), wb = (size_t)((r1 + r2) * cols) * sizeof(float);
	float *dh = qk_alloc(gk, hb), *dw = qk_alloc(gk, wb), *dd = qk_alloc(gk, wb);
	assert_non_null(dh);
	assert_non_null(dw);
	assert_non_null(dd);
	float *back = malloc(wb), *h2 = malloc(hb);
	for (int mode = 0; mode < 3; mode++) {
		qc_qargs a = qargs(4, mode != 1, QC_QS_GROUP, 32);
		qc_gptq_opts o;
		qc_gptq_opts_default(&o);
		o.actorder = mode == 1 ? QC_GPTQ_ACTORDER_NONE : QC_GPTQ_ACTORDER_STATIC;
		o.method = mode == 2 ? QC_GPTQ_METHOD_RTN : QC_GPTQ_METHOD_GPTQ;
		/* on host memory, plain context */
		out p1, p2;
		out_init(&p1, &a, w, r1, cols);
		out_init(&p2, &a, w + r1 * cols, r2, cols);
		qc_gptq_part hp[2] = { p1.part, p2.part };
		qc_gptq *g;
		assert_int_equal(qc_gptq_new(&g, kc, &o), 0);
		memcpy(h2, h, hb);
		assert_int_equal(qc_gptq_run(g, &a, h2, cols, hp, 2, NULL), 0);
		qc_gptq_free(g);
		/* on guarded kernel memory (deq in place of W in mode 1) */
		out q1, q2;
		out_init(&q1, &a, w, r1, cols);
		out_init(&q2, &a, w + r1 * cols, r2, cols);
		tu_assert_rc(qk_upload(gk, dh, h, hb), 0);
		tu_assert_rc(qk_upload(gk, dw, w, wb), 0);
		float *dq = mode == 1 ? dw : dd;
		qc_gptq_part kp[2] = { q1.part, q2.part };
		kp[0].W = dw;
		kp[1].W = dw + r1 * cols;
		kp[0].deq = dq;
		kp[1].deq = dq + r1 * cols;
		assert_int_equal(qc_gptq_new(&g, gk, &o), 0);
		tu_assert_rc(qc_gptq_run(g, &a, dh, cols, kp, 2, NULL), 0);
		qc_gptq_free(g);
		tu_assert_rc(qk_download(gk, back, dq, wb), 0);
		assert_memory_equal(back, p1.deq, (size_t)(r1 * cols) * sizeof(float));
		assert_memory_equal(back + r1 * cols, p2.deq, (size_t)(r2 * cols) * sizeof(float));
		assert_memory_equal(q1.codes, p1.codes, (size_t)(r1 * cols));
		assert_memory_equal(q2.codes, p2.codes, (size_t)(r2 * cols));
		assert_memory_equal(q1.scales, p1.scales, (size_t)(r1 * qc_qgroups(&a, cols)) * sizeof(float));
		for (int k = 0; k < 2; k++)
			assert_true(kp[k].err_out == hp[k].err_out && kp[k].err_rtn == hp[k].err_rtn &&
			            kp[k].err_w == hp[k].err_w);
		out_free(&p1);
		out_free(&p2);
		out_free(&q1);
		out_free(&q2);
	}
	qk_free(gk, dh);
	qk_free(gk, dw);
	qk_free(gk, dd);
	qk_ctx_free(gk);
	free(back);
	free(h2);
	free(h);
	free(w);
	free(x);
}

static void test_options(void **state)
{
	(void)state;
	qc_gptq *g;
	qc_gptq_opts o;
	qc_gptq_opts_default(&o);
	assert_true(o.damp == 0.01 && o.block == 128 && o.actorder == QC_GPTQ_ACTORDER_STATIC &&
	            o.clip.mode == QC_CLIP_MSE);
	o.damp = 0;
	tu_assert_rc(qc_gptq_new(&g, kc, &o), QC_EINVAL);
	qc_gptq_opts_default(&o);
	o.block = 0;
	tu_assert_rc(qc_gptq_new(&g, kc, &o), QC_EINVAL);
	qc_gptq_actorder ao;
	qc_gptq_method m;
	assert_int_equal(qc_gptq_actorder_parse("static", &ao), 0);
	assert_int_equal(ao, QC_GPTQ_ACTORDER_STATIC);
	assert_int_equal(qc_gptq_actorder_parse("none", &ao), 0);
	assert_int_equal(ao, QC_GPTQ_ACTORDER_NONE);
	tu_assert_rc(qc_gptq_actorder_parse("group", &ao), QC_EINVAL);
	assert_int_equal(qc_gptq_method_parse("rtn", &m), 0);
	assert_int_equal(m, QC_GPTQ_METHOD_RTN);
	tu_assert_rc(qc_gptq_method_parse("awq", &m), QC_EINVAL);
	assert_string_equal(qc_gptq_actorder_name(QC_GPTQ_ACTORDER_STATIC), "static");
	assert_string_equal(qc_gptq_method_name(QC_GPTQ_METHOD_GPTQ), "gptq");
	/* GPTQ without a Hessian is a caller's mistake */
	assert_int_equal(qc_gptq_new(&g, kc, NULL), 0);
	qc_qargs a = qargs(4, 1, QC_QS_GROUP, 32);
	float w[32] = { 0 };
	int8_t codes[32];
	float sc[1];
	qc_gptq_part p = { .name = "x", .W = w, .rows = 1, .codes = codes, .scales = sc };
	tu_assert_rc(qc_gptq_run(g, &a, NULL, 32, &p, 1, NULL), QC_EINVAL);
	qc_gptq_free(g);
	qc_gptq_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hand_worked),
		cmocka_unit_test(test_identity_is_rtn),
		cmocka_unit_test(test_mse_search_exact),
		cmocka_unit_test(test_beats_rtn_on_outliers),
		cmocka_unit_test(test_matches_plain_reference),
		cmocka_unit_test(test_damping_escalates),
		cmocka_unit_test(test_nonfinite),
		cmocka_unit_test(test_dead_inputs),
		cmocka_unit_test(test_parts_share_hessian),
		cmocka_unit_test(test_sampled_errors),
		cmocka_unit_test(test_rtn_and_determinism),
		cmocka_unit_test(test_kernel_memory),
		cmocka_unit_test(test_options),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
