/*
 * test_cuda.c - every operation of the CUDA backend against the CPU
 * backend, its reference (doc/cuda.md, "Checks").
 *
 * Each check draws fresh inputs, uploads the same bytes to a CPU and a CUDA
 * context, runs the operation on both and compares, printing one line:
 *     PASS|FAIL  op  case  err=E  tol=T
 * then a summary; the exit status is 0 when every check passed, 1 when one
 * failed, 77 when there is no usable GPU (nothing was checked).
 *
 * Tolerances (err is ||gpu - cpu|| / ||cpu|| over the output unless the
 * line says otherwise):
 *   bit-exact (err counts differing elements): memory, dtype conversion,
 *     dequantization, BF16 store/load, FP8 and activation quantize-
 *     dequantize, sub, scaling, maxima, first non-finite index, the int8
 *     image of rows, AWQ's column sums (in row order, as the CPU), the GPTQ
 *     Hessian's diagonal and permutation, min/max parameters, RTN codes
 *   1e-6: RMSNorm, RoPE, SwiGLU, log-softmax (FP32 math with the CPU's
 *     operations; cos/sin/exp of the GPU differ in the last bit at times)
 *   1e-12: double sums (sumsq, NLL, softmax statistics): another order
 *   1e-5 (QK_CUDA_MATH=fp32) / 2e-2 (bf16, the default): GEMM, Linear,
 *     Hessian, attention: cuBLAS's order, or BF16 inputs
 *   1e-4: Cholesky, triangular inverse, GPTQ factor and error products
 *     (FP32 factorizations in another order)
 *   GPTQ sweep: err_out within 1% of the CPU's, at most 5% of codes differ
 *     (a code at a rounding tie flipped by the FP32 GEMMs' order moves the
 *     later columns a little), deq is exactly the codes' image
 *   MSE clipping search: at most 0.5% of groups choose another candidate
 *     (pow() differs in the last bit, and near-ties can flip)
 *
 *   test_cuda [--quick]    --quick: small shapes only (the emulator)
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels.h"
#include "qc_err.h"
#include "qc_num.h"

static qk_ctx *cpu, *gpu, *gpu32;
static int n_pass, n_fail, quick;

/* ---------------------------------------------------------------- inputs */

static uint64_t rng = 0x9E3779B97F4A7C15ull;

static uint64_t next(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static double unif(void) { return ((double)(next() >> 11) + 0.5) / 9007199254740992.0; }
static double normal(void) { return sqrt(-2 * log(unif())) * cos(6.283185307179586 * unif()); }

static float *randn(size_t n, double sd)
{
	float *x = malloc((n ? n : 1) * sizeof *x);
	for (size_t i = 0; i < n; i++)
		x[i] = (float)(normal() * sd);
	return x;
}

/* heavy-tailed rows of different scales, with outlier columns: weights */
static float *weights(int64_t rows, int64_t cols)
{
	float *w = malloc((size_t)(rows * cols) * sizeof *w);
	for (int64_t r = 0; r < rows; r++) {
		double rs = 0.02 * (1 + 3 * unif());
		for (int64_t c = 0; c < cols; c++) {
			double v = normal() * rs;
			if (unif() < 0.01)
				v *= 8;
			w[r * cols + c] = (float)v;
		}
	}
	return w;
}

/* ---------------------------------------------------------------- memory */

static void *dput(qk_ctx *ctx, const void *h, size_t bytes)
{
	void *d = qk_alloc(ctx, bytes ? bytes : 4);
	if (!d) {
		fprintf(stderr, "test_cuda: %s\n", qc_errmsg());
		exit(1);
	}
	if (bytes && qk_upload(ctx, d, h, bytes)) {
		fprintf(stderr, "test_cuda: %s\n", qc_errmsg());
		exit(1);
	}
	return d;
}

static void *dget(qk_ctx *ctx, const void *d, size_t bytes)
{
	void *h = malloc(bytes ? bytes : 4);
	if (bytes && qk_download(ctx, h, d, bytes)) {
		fprintf(stderr, "test_cuda: %s\n", qc_errmsg());
		exit(1);
	}
	return h;
}

/* the same host bytes on both devices */
typedef struct pair {
	void *c, *g;
	size_t bytes;
} pair;

static pair both(const void *h, size_t bytes)
{
	pair p = { dput(cpu, h, bytes), dput(gpu, h, bytes), bytes };
	return p;
}

/* NaN-filled output on both: an element an operation forgets shows */
static pair poisoned(size_t bytes)
{
	unsigned char *h = malloc(bytes ? bytes : 4);
	memset(h, 0xFF, bytes);
	pair p = both(h, bytes);
	free(h);
	return p;
}

static void pfree(pair *p)
{
	qk_free(cpu, p->c);
	qk_free(gpu, p->g);
	p->c = p->g = NULL;
}

/* ---------------------------------------------------------------- comparisons */

static void report(int ok, const char *op, const char *cs, const char *what, double err,
                   double tol)
{
	printf("%s  %-22s %-34s %s=%.3g tol=%.3g\n", ok ? "PASS" : "FAIL", op, cs, what, err, tol);
	fflush(stdout);
	if (ok)
		n_pass++;
	else
		n_fail++;
}

static void fail_rc(const char *op, const char *cs, int rc_c, int rc_g)
{
	printf("FAIL  %-22s %-34s cpu rc %d, cuda rc %d: %s\n", op, cs, rc_c, rc_g, qc_errmsg());
	n_fail++;
}

/* both calls returned the same code (0 expected unless want != 0) */
static int rcs(const char *op, const char *cs, int rc_c, int rc_g, int want)
{
	if (rc_c != want || rc_g != want) {
		fail_rc(op, cs, rc_c, rc_g);
		return 0;
	}
	return 1;
}

/* bit-exact: the count of differing elements of size es */
static void exact(const char *op, const char *cs, const void *a, const void *b, size_t n,
                  size_t es)
{
	size_t bad = 0;
	for (size_t i = 0; i < n; i++)
		bad += memcmp((const char *)a + i * es, (const char *)b + i * es, es) != 0;
	report(bad == 0, op, cs, "differ", (double)bad, 0);
}

/* ||g - c|| / ||c|| (max |g - c| when c is 0); NaN anywhere fails */
static void rel(const char *op, const char *cs, const float *g, const float *c, size_t n,
                double tol)
{
	double d2 = 0, c2 = 0, mx = 0;
	int nan = 0;
	for (size_t i = 0; i < n; i++) {
		/* NaN where the other has none, or a different infinity, fails */
		if (isnan(g[i]) != isnan(c[i]) || ((isinf(g[i]) || isinf(c[i])) && g[i] != c[i]))
			nan = 1;
		if (isnan(g[i]) || isnan(c[i]) || g[i] == c[i])
			continue;
		double d = (double)g[i] - c[i];
		d2 += d * d;
		c2 += (double)c[i] * c[i];
		if (fabs(d) > mx)
			mx = fabs(d);
	}
	double e = c2 > 0 ? sqrt(d2 / c2) : mx;
	report(!nan && e <= tol, op, cs, nan ? "NaN/Inf-mismatch" : "rel", e, tol);
}

static void reld(const char *op, const char *cs, const double *g, const double *c, size_t n,
                 double tol)
{
	double d2 = 0, c2 = 0;
	int nan = 0;
	for (size_t i = 0; i < n; i++) {
		if (isnan(g[i]) != isnan(c[i]))
			nan = 1;
		if (isnan(g[i]) || isnan(c[i]))
			continue;
		d2 += (g[i] - c[i]) * (g[i] - c[i]);
		c2 += c[i] * c[i];
	}
	double e = c2 > 0 ? sqrt(d2 / c2) : sqrt(d2);
	report(!nan && e <= tol, op, cs, nan ? "NaN-mismatch" : "rel", e, tol);
}

/* compare the float outputs of both devices */
static void cmp_f(const char *op, const char *cs, pair *p, size_t n, double tol)
{
	float *c = dget(cpu, p->c, n * 4), *g = dget(gpu, p->g, n * 4);
	if (tol == 0)
		exact(op, cs, g, c, n, 4);
	else
		rel(op, cs, g, c, n, tol);
	free(c);
	free(g);
}

/* ---------------------------------------------------------------- memory and conversion */

static void t_memory(void)
{
	size_t n = quick ? 1000 : (size_t)1 << 24;
	unsigned char *h = malloc(n);
	for (size_t i = 0; i < n; i++)
		h[i] = (unsigned char)next();
	pair p = both(h, n), q = poisoned(n);
	int rc = qk_copy(gpu, q.g, p.g, n);
	unsigned char *back = dget(gpu, q.g, n);
	if (rcs("copy", "bytes", 0, rc, 0))
		exact("upload/copy/download", quick ? "1000 bytes" : "16 MiB", back, h, n, 1);
	free(back);
	rc = qk_zero(gpu, q.g, n / 2);
	back = dget(gpu, q.g, n);
	size_t bad = 0;
	for (size_t i = 0; i < n; i++)
		bad += i < n / 2 ? back[i] != 0 : back[i] != h[i];
	report(rc == 0 && bad == 0, "zero", "first half", "differ", (double)bad, 0);
	free(back);
	free(h);
	pfree(&p);
	pfree(&q);
}

/* values that exercise every rule of the conversions */
static float special(size_t i)
{
	static const float sp[] = { 0.0f, -0.0f, INFINITY, -INFINITY, NAN, 448.0f, 449.0f, -500.0f,
	                            1e-30f, -1e-30f, 65504.0f, 65520.0f, 3.0e38f, 5.9e-8f, 0.001953125f,
	                            1.00390625f, -1.0009765625f };
	size_t ns = sizeof sp / sizeof sp[0];
	if (i < ns)
		return sp[i];
	/* random bit patterns, many outside FP16/FP8 range */
	uint32_t u = (uint32_t)next();
	float f;
	memcpy(&f, &u, 4);
	return f;
}

static void t_convert(void)
{
	size_t n = quick ? 3000 : 1000003;
	qc_dtype dts[] = { QC_DT_F32, QC_DT_F64, QC_DT_F16, QC_DT_BF16, QC_DT_F8_E4M3 };
	for (size_t k = 0; k < sizeof dts / sizeof dts[0]; k++) {
		qc_dtype dt = dts[k];
		size_t es = qc_dtype_size(dt);
		unsigned char *src = malloc(n * es);
		for (size_t i = 0; i < n; i++) {
			float f = special(i);
			if (dt == QC_DT_F64) {
				double d = i % 3 ? (double)f : (double)f * 1.0000001;
				memcpy(src + i * 8, &d, 8);
			} else if (dt == QC_DT_F32) {
				memcpy(src + i * 4, &f, 4);
			} else {
				/* raw codes of the narrow type */
				uint32_t u = (uint32_t)next();
				memcpy(src + i * es, &u, es);
			}
		}
		pair out = poisoned(n * 4);
		int rc_c = qk_to_f32(cpu, out.c, src, dt, n), rc_g = qk_to_f32(gpu, out.g, src, dt, n);
		if (rcs("convert", qc_dtype_name(dt), rc_c, rc_g, 0))
			cmp_f("convert", qc_dtype_name(dt), &out, n, 0);
		pfree(&out);
		free(src);
	}
	/* an unsupported dtype: the same refusal */
	pair out = poisoned(16);
	int32_t ints[4] = { 1, 2, 3, 4 };
	rcs("convert", "I32 refused", qk_to_f32(cpu, out.c, ints, QC_DT_I32, 4),
	    qk_to_f32(gpu, out.g, ints, QC_DT_I32, 4), QC_EUNSUPPORTED);
	pfree(&out);

	/* BF16 store and load, and FP8 quantize-dequantize */
	float *x = malloc(n * 4);
	for (size_t i = 0; i < n; i++)
		x[i] = special(i);
	pair px = both(x, n * 4), pb = poisoned(n * 2), py = poisoned(n * 4);
	int rc_c = qk_bf16_store(cpu, pb.c, px.c, n), rc_g = qk_bf16_store(gpu, pb.g, px.g, n);
	if (rcs("bf16 store", "specials", rc_c, rc_g, 0)) {
		uint16_t *c = dget(cpu, pb.c, n * 2), *g = dget(gpu, pb.g, n * 2);
		exact("bf16 store", "specials + random bits", g, c, n, 2);
		free(c);
		free(g);
	}
	rc_c = qk_bf16_load(cpu, py.c, pb.c, n);
	rc_g = qk_bf16_load(gpu, py.g, pb.g, n);
	if (rcs("bf16 load", "specials", rc_c, rc_g, 0))
		cmp_f("bf16 load", "specials + random bits", &py, n, 0);
	pfree(&py);
	for (size_t i = 0; i < n; i++)
		x[i] = i < 40 ? special(i) : (float)(normal() * 30);
	py = both(x, n * 4);
	rc_c = qk_fp8_qdq(cpu, py.c, n, 0.0625f);
	rc_g = qk_fp8_qdq(gpu, py.g, n, 0.0625f);
	if (rcs("fp8 qdq", "s=1/16", rc_c, rc_g, 0))
		cmp_f("fp8 qdq", "s=1/16 specials + normal", &py, n, 0);
	rcs("fp8 qdq", "s=0 refused", qk_fp8_qdq(cpu, py.c, n, 0.0f), qk_fp8_qdq(gpu, py.g, n, 0.0f),
	    QC_EINVAL);
	pfree(&px);
	pfree(&pb);
	pfree(&py);
	free(x);
}

static void t_dequant(void)
{
	int64_t rows = quick ? 7 : 4096, cols = quick ? 100 : 4096;
	struct {
		const char *name;
		qc_dtype dt;
		int64_t group, srs;
		int zp;
	} cases[] = {
		{ "int4 group 32 zp", QC_DT_I8, 32, 0, 1 },
		{ "int8 channel", QC_DT_I8, 0, 1, 0 },
		{ "fp8 tensor", QC_DT_F8_E4M3, 0, 0, 0 },
		{ "fp8 group 64", QC_DT_F8_E4M3, 64, 0, 0 },
	};
	for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
		int64_t group = cases[k].group ? cases[k].group : cols;
		int64_t ng = (cols + group - 1) / group;
		int64_t srs = cases[k].group ? ng : cases[k].srs;
		size_t ns = srs ? (size_t)(rows * srs) : 1;
		uint8_t *codes = malloc((size_t)(rows * cols));
		for (int64_t i = 0; i < rows * cols; i++)
			codes[i] = cases[k].dt == QC_DT_I8 ? (uint8_t)(int8_t)((int)(next() % 16) - 8)
			                                    : (uint8_t)next();
		float *sc = malloc(ns * 4), *zp = malloc(ns * 4);
		for (size_t i = 0; i < ns; i++) {
			sc[i] = (float)(0.01 * (1 + unif()));
			zp[i] = (float)((int)(next() % 16) - 8);
		}
		pair w = poisoned((size_t)(rows * cols) * 4);
		int rc_c = qk_dequant(cpu, w.c, codes, cases[k].dt, rows, cols, sc,
		                      cases[k].zp ? zp : NULL, srs, group);
		int rc_g = qk_dequant(gpu, w.g, codes, cases[k].dt, rows, cols, sc,
		                      cases[k].zp ? zp : NULL, srs, group);
		if (rcs("dequantize", cases[k].name, rc_c, rc_g, 0))
			cmp_f("dequantize", cases[k].name, &w, (size_t)(rows * cols), 0);
		pfree(&w);
		free(codes);
		free(sc);
		free(zp);
	}
}

/* ---------------------------------------------------------------- GEMM, Linear, Hessian */

static void t_gemm(void)
{
	struct {
		int64_t M, N, K;
	} sh[] = { { 67, 45, 33 }, { 1, 70, 129 }, { 37, 1, 5 }, { 2048, 4096, 4096 },
	           { 512, 14336, 4096 } };
	int nsh = quick ? 3 : 5;
	for (int s = 0; s < nsh; s++)
		for (int ta = 0; ta < 2; ta++)
			for (int tb = 0; tb < 2; tb++) {
				if (s >= 3 && (ta || tb))
					continue; /* the real shapes: the forward pass's NN case */
				int64_t M = sh[s].M, N = sh[s].N, K = sh[s].K;
				/* padded strides */
				int64_t lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 1, ldc = N + 2;
				int64_t ar = ta ? K : M, br = tb ? N : K;
				float *A = randn((size_t)(ar * lda), 1), *B = randn((size_t)(br * ldb), 1);
				float *C = randn((size_t)(M * ldc), 1);
				pair pa = both(A, (size_t)(ar * lda) * 4), pb = both(B, (size_t)(br * ldb) * 4);
				for (int mode = 0; mode < 2; mode++) {
					qk_ctx *g = mode ? gpu : gpu32;
					pair pc = both(C, (size_t)(M * ldc) * 4);
					char cs[96];
					snprintf(cs, sizeof cs, "%s%s %lldx%lldx%lld %s", ta ? "T" : "N", tb ? "T" : "N",
					         (long long)M, (long long)N, (long long)K, mode ? "default" : "fp32");
					int rc_c = qk_gemm(cpu, ta, tb, M, N, K, 0.5f, pa.c, lda, pb.c, ldb, 0.25f, pc.c,
					                   ldc);
					int rc_g = qk_gemm(g, ta, tb, M, N, K, 0.5f, pa.g, lda, pb.g, ldb, 0.25f, pc.g,
					                   ldc);
					if (rcs("gemm", cs, rc_c, rc_g, 0))
						cmp_f("gemm", cs, &pc, (size_t)(M * ldc), mode ? 2e-2 : 1e-5);
					pfree(&pc);
				}
				pfree(&pa);
				pfree(&pb);
				free(A);
				free(B);
				free(C);
			}
	/* K = 0: C = beta C; leading dimensions too small: the same refusal */
	float *C = randn(12, 1);
	pair pc = both(C, 48);
	int rc_c = qk_gemm(cpu, 0, 0, 3, 4, 0, 1.0f, pc.c, 1, pc.c, 4, 0.5f, pc.c, 4);
	int rc_g = qk_gemm(gpu32, 0, 0, 3, 4, 0, 1.0f, pc.g, 1, pc.g, 4, 0.5f, pc.g, 4);
	if (rcs("gemm", "K=0", rc_c, rc_g, 0))
		cmp_f("gemm", "K=0 (C = beta C)", &pc, 12, 0);
	rcs("gemm", "lda too small", qk_gemm(cpu, 0, 0, 3, 4, 5, 1.0f, pc.c, 4, pc.c, 4, 0, pc.c, 4),
	    qk_gemm(gpu, 0, 0, 3, 4, 5, 1.0f, pc.g, 4, pc.g, 4, 0, pc.g, 4), QC_EINVAL);
	pfree(&pc);
	free(C);
}

static void t_linear(void)
{
	int64_t T = quick ? 19 : 2048, in = quick ? 40 : 4096, out = quick ? 24 : 1024;
	float *x = randn((size_t)(T * in), 1), *w = weights(out, in), *b = randn((size_t)out, 1);
	float *y0 = randn((size_t)(T * out), 1);
	pair px = both(x, (size_t)(T * in) * 4), pw = both(w, (size_t)(out * in) * 4);
	pair pbias = both(b, (size_t)out * 4);
	for (int acc = 0; acc < 2; acc++)
		for (int bias = 0; bias < 2; bias++) {
			pair py = both(y0, (size_t)(T * out) * 4);
			char cs[64];
			snprintf(cs, sizeof cs, "%s%s fp32", bias ? "bias" : "no bias", acc ? " accumulate" : "");
			int rc_c = qk_linear(cpu, py.c, px.c, pw.c, bias ? pbias.c : NULL, T, in, out, acc);
			int rc_g = qk_linear(gpu32, py.g, px.g, pw.g, bias ? pbias.g : NULL, T, in, out, acc);
			if (rcs("linear", cs, rc_c, rc_g, 0))
				cmp_f("linear", cs, &py, (size_t)(T * out), 1e-5);
			pfree(&py);
		}
	pfree(&px);
	pfree(&pw);
	pfree(&pbias);
	free(x);
	free(w);
	free(b);
	free(y0);

	/* W4A16: codes, scales and zero points on the device; one to four
	 * rows take the GEMV kernel, more the dequantized tiles and GEMMs */
	int64_t qin = quick ? 64 : 4096, qout = quick ? 37 : 2048, grp = quick ? 32 : 128;
	int64_t ng = qin / grp, Ts[3] = { 1, 3, quick ? 19 : 512 };
	uint8_t *q = malloc((size_t)(qout * qin / 2));
	for (int64_t i = 0; i < qout * qin / 2; i++)
		q[i] = (uint8_t)(next() >> 56);
	float *sc = randn((size_t)(qout * ng), 0.05), *zp = malloc((size_t)(qout * ng) * 4);
	for (int64_t i = 0; i < qout * ng; i++)
		zp[i] = (float)(next() >> 60);
	float *qx = randn((size_t)(Ts[2] * qin), 1), *qb = randn((size_t)qout, 1);
	float *qy0 = randn((size_t)(Ts[2] * qout), 1);
	pair pq = both(q, (size_t)(qout * qin / 2)), ps = both(sc, (size_t)(qout * ng) * 4);
	pair pz = both(zp, (size_t)(qout * ng) * 4), pqx = both(qx, (size_t)(Ts[2] * qin) * 4);
	pair pqb = both(qb, (size_t)qout * 4);
	for (int k = 0; k < 3; k++)
		for (int v = 0; v < 4; v++) {
			int64_t Tq = Ts[k];
			int acc = v & 1, sym = v >> 1;
			pair py = both(qy0, (size_t)(Tq * qout) * 4);
			char cs[64];
			snprintf(cs, sizeof cs, "T %lld %s%s", (long long)Tq, sym ? "symmetric, bias" : "zero points",
			         acc ? " accumulate" : "");
			int rc_c = qk_linear_q4(cpu, py.c, pqx.c, pq.c, ps.c, sym ? NULL : pz.c,
			                        sym ? pqb.c : NULL, Tq, qin, qout, grp, acc);
			int rc_g = qk_linear_q4(gpu32, py.g, pqx.g, pq.g, ps.g, sym ? NULL : pz.g,
			                        sym ? pqb.g : NULL, Tq, qin, qout, grp, acc);
			if (rcs("linear_q4", cs, rc_c, rc_g, 0))
				cmp_f("linear_q4", cs, &py, (size_t)(Tq * qout), 1e-5);
			pfree(&py);
		}
	/* the CPU's argument checks */
	int rc_c = qk_linear_q4(cpu, pqx.c, pqx.c, pq.c, ps.c, NULL, NULL, 1, 6, 1, 4, 0);
	int rc_g = qk_linear_q4(gpu32, pqx.g, pqx.g, pq.g, ps.g, NULL, NULL, 1, 6, 1, 4, 0);
	rcs("linear_q4", "group not dividing in", rc_c, rc_g, QC_EINVAL);
	pfree(&pq);
	pfree(&ps);
	pfree(&pz);
	pfree(&pqx);
	pfree(&pqb);
	free(q);
	free(sc);
	free(zp);
	free(qx);
	free(qb);
	free(qy0);
}

static void t_hessian(void)
{
	int64_t T = quick ? 50 : 8192, n = quick ? 70 : 4096;
	float *x = randn((size_t)(T * n), 1);
	for (int64_t t = 0; t < T; t++)
		for (int64_t j = 0; j < n; j += 17)
			x[t * n + j] *= 20; /* outlier channels */
	float *h0 = malloc((size_t)(n * n) * 4);
	for (int64_t i = 0; i < n * n; i++)
		h0[i] = -7.0f; /* the lower triangle must stay */
	pair px = both(x, (size_t)(T * n) * 4);
	for (int mode = 0; mode < 2; mode++) {
		qk_ctx *g = mode ? gpu : gpu32;
		pair ph = both(h0, (size_t)(n * n) * 4);
		const char *cs = mode ? "default math" : "fp32";
		/* two chunks, as the quantizers accumulate */
		int rc_c = qk_hessian_accum(cpu, ph.c, px.c, T / 2, n, 0.5f);
		rc_c = rc_c ? rc_c : qk_hessian_accum(cpu, ph.c, (float *)px.c + (T / 2) * n, T - T / 2, n, 0.5f);
		int rc_g = qk_hessian_accum(g, ph.g, px.g, T / 2, n, 0.5f);
		rc_g = rc_g ? rc_g : qk_hessian_accum(g, ph.g, (float *)px.g + (T / 2) * n, T - T / 2, n, 0.5f);
		if (rcs("hessian", cs, rc_c, rc_g, 0)) {
			float *c = dget(cpu, ph.c, (size_t)(n * n) * 4), *gg = dget(gpu, ph.g, (size_t)(n * n) * 4);
			size_t low = 0;
			for (int64_t i = 0; i < n; i++)
				for (int64_t j = 0; j < i; j++)
					low += gg[i * n + j] != -7.0f;
			report(low == 0, "hessian", cs, "lower-written", (double)low, 0);
			free(c);
			free(gg);
			rc_c = qk_sym_upper(cpu, ph.c, n);
			rc_g = qk_sym_upper(g, ph.g, n);
			if (rcs("symmetrize", cs, rc_c, rc_g, 0))
				cmp_f("hessian + symmetrize", cs, &ph, (size_t)(n * n), mode ? 2e-2 : 1e-5);
		}
		pfree(&ph);
	}
	pfree(&px);
	free(x);
	free(h0);
}

/* ---------------------------------------------------------------- layers */

static void t_layers(void)
{
	int64_t T = quick ? 13 : 2048, D = quick ? 96 : 4096;
	float *x = randn((size_t)(T * D), 2), *w = randn((size_t)D, 1);
	pair px = both(x, (size_t)(T * D) * 4), pw = both(w, (size_t)D * 4);
	pair py = poisoned((size_t)(T * D) * 4);
	int rc_c = qk_rmsnorm(cpu, py.c, px.c, pw.c, T, D, 1e-5f);
	int rc_g = qk_rmsnorm(gpu, py.g, px.g, pw.g, T, D, 1e-5f);
	if (rcs("rmsnorm", "", rc_c, rc_g, 0))
		cmp_f("rmsnorm", "out of place", &py, (size_t)(T * D), 1e-6);
	rc_c = qk_rmsnorm(cpu, px.c, px.c, pw.c, T, D, 1e-5f);
	rc_g = qk_rmsnorm(gpu, px.g, px.g, pw.g, T, D, 1e-5f);
	if (rcs("rmsnorm", "", rc_c, rc_g, 0))
		cmp_f("rmsnorm", "in place", &px, (size_t)(T * D), 1e-6);
	pfree(&px);
	pfree(&py);
	pfree(&pw);
	free(w);

	/* RoPE, llama3 scaling, from a later position */
	int64_t nh = quick ? 3 : 32, hd = quick ? 16 : 128;
	qk_rope rp = { .theta = 500000.0, .type = QK_ROPE_LLAMA3, .factor = 8, .low_freq_factor = 1,
	               .high_freq_factor = 4, .original_max_pos = 8192 };
	float *inv = malloc((size_t)hd / 2 * 4);
	qk_rope_inv_freq(inv, hd, &rp);
	float *q = randn((size_t)(T * nh * hd), 1);
	pair pq = both(q, (size_t)(T * nh * hd) * 4);
	rc_c = qk_rope_apply(cpu, pq.c, T, nh, hd, 1000, inv);
	rc_g = qk_rope_apply(gpu, pq.g, T, nh, hd, 1000, inv);
	if (rcs("rope", "", rc_c, rc_g, 0))
		cmp_f("rope", "llama3, pos0 1000", &pq, (size_t)(T * nh * hd), 1e-6);
	pfree(&pq);
	free(q);
	free(inv);

	/* SwiGLU in place on gate */
	size_t n = (size_t)(T * D);
	float *u = randn(n, 1), *g = randn(n, 3);
	pair pu = both(u, n * 4), pg = both(g, n * 4);
	rc_c = qk_swiglu(cpu, pg.c, pg.c, pu.c, n);
	rc_g = qk_swiglu(gpu, pg.g, pg.g, pu.g, n);
	if (rcs("swiglu", "", rc_c, rc_g, 0))
		cmp_f("swiglu", "in place", &pg, n, 1e-6);
	/* GeGLU (tanh GELU) in place on gate, then soft-capping of the result */
	rc_c = qk_geglu(cpu, pg.c, pg.c, pu.c, n);
	rc_g = qk_geglu(gpu, pg.g, pg.g, pu.g, n);
	if (rcs("geglu", "", rc_c, rc_g, 0))
		cmp_f("geglu", "in place", &pg, n, 1e-6);
	rc_c = qk_softcap(cpu, pg.c, n, 0.5f);
	rc_g = qk_softcap(gpu, pg.g, n, 0.5f);
	if (rcs("softcap", "", rc_c, rc_g, 0))
		cmp_f("softcap", "cap 0.5", &pg, n, 1e-6);
	rc_c = qk_add(cpu, pg.c, pg.c, pu.c, n);
	rc_g = qk_add(gpu, pg.g, pg.g, pu.g, n);
	if (rcs("add", "", rc_c, rc_g, 0))
		cmp_f("add", "in place", &pg, n, 0);
	pfree(&pu);
	pfree(&pg);
	free(u);
	free(g);
	free(x);
}

static void t_attention(void)
{
	struct {
		int64_t T, nh, nkv, hd;
	} sh[] = { { 1, 4, 2, 8 }, { 37, 4, 1, 16 }, { 70, 6, 3, 8 }, { 2048, 32, 8, 128 },
	           { 4096, 64, 8, 128 } };
	int nsh = quick ? 3 : 5;
	for (int s = 0; s < nsh; s++) {
		int64_t T = sh[s].T, nh = sh[s].nh, nkv = sh[s].nkv, hd = sh[s].hd;
		float *q = randn((size_t)(T * nh * hd), 1), *k = randn((size_t)(T * nkv * hd), 1);
		float *v = randn((size_t)(T * nkv * hd), 1);
		pair pq = both(q, (size_t)(T * nh * hd) * 4), pk = both(k, (size_t)(T * nkv * hd) * 4);
		pair pv = both(v, (size_t)(T * nkv * hd) * 4);
		for (int mode = 0; mode < 2; mode++) {
			pair po = poisoned((size_t)(T * nh * hd) * 4);
			char cs[80];
			snprintf(cs, sizeof cs, "T%lld h%lld/%lld d%lld %s", (long long)T, (long long)nh,
			         (long long)nkv, (long long)hd, mode ? "default" : "fp32");
			float sc = 1.0f / sqrtf((float)hd);
			int rc_c = qk_attention(cpu, po.c, pq.c, pk.c, pv.c, T, nh, nkv, hd, sc);
			int rc_g = qk_attention(mode ? gpu : gpu32, po.g, pq.g, pk.g, pv.g, T, nh, nkv, hd, sc);
			if (rcs("attention", cs, rc_c, rc_g, 0))
				cmp_f("attention", cs, &po, (size_t)(T * nh * hd), mode ? 2e-2 : 1e-5);
			pfree(&po);
			/* the last T - P rows after P cached keys (qk_attention_kv) */
			int64_t P = T / 2, n = T - P, qo = P * nh * hd;
			po = poisoned((size_t)(n * nh * hd) * 4);
			snprintf(cs, sizeof cs, "T%lld after %lld h%lld/%lld d%lld %s", (long long)n,
			         (long long)P, (long long)nh, (long long)nkv, (long long)hd,
			         mode ? "default" : "fp32");
			rc_c = qk_attention_kv(cpu, po.c, (float *)pq.c + qo, pk.c, pv.c, n, P, nh, nkv, hd, sc);
			rc_g = qk_attention_kv(mode ? gpu : gpu32, po.g, (float *)pq.g + qo, pk.g, pv.g, n, P,
			                       nh, nkv, hd, sc);
			if (rcs("attention_kv", cs, rc_c, rc_g, 0))
				cmp_f("attention_kv", cs, &po, (size_t)(n * nh * hd), mode ? 2e-2 : 1e-5);
			pfree(&po);
			/* Gemma 2's soft-capping and a sliding window of a third of T */
			qk_attn ax = { sc, 2.0f, T / 3 + 1 };
			po = poisoned((size_t)(n * nh * hd) * 4);
			rc_c = qk_attention_ex(cpu, po.c, (float *)pq.c + qo, pk.c, pv.c, n, P, nh, nkv, hd, &ax);
			rc_g = qk_attention_ex(mode ? gpu : gpu32, po.g, (float *)pq.g + qo, pk.g, pv.g, n, P,
			                       nh, nkv, hd, &ax);
			if (rcs("attention_ex", cs, rc_c, rc_g, 0))
				cmp_f("attention_ex", cs, &po, (size_t)(n * nh * hd), mode ? 2e-2 : 1e-5);
			pfree(&po);
		}
		pfree(&pq);
		pfree(&pk);
		pfree(&pv);
		free(q);
		free(k);
		free(v);
	}
}

/* ---------------------------------------------------------------- log-probabilities */

static void t_logprob(void)
{
	int64_t T = quick ? 5 : 512, V = quick ? 300 : 128256;
	float *x = randn((size_t)(T * V), 3);
	x[1] = -INFINITY;
	int32_t *tg = malloc((size_t)T * 4);
	for (int64_t t = 0; t < T; t++)
		tg[t] = (int32_t)(next() % (uint64_t)V);
	pair px = both(x, (size_t)(T * V) * 4), py = poisoned((size_t)(T * V) * 4);
	int rc_c = qk_log_softmax(cpu, py.c, px.c, T, V), rc_g = qk_log_softmax(gpu, py.g, px.g, T, V);
	if (rcs("log_softmax", "", rc_c, rc_g, 0))
		cmp_f("log_softmax", "", &py, (size_t)(T * V), 1e-6);
	pfree(&py);
	pair pt = both(tg, (size_t)T * 4), pn = poisoned((size_t)T * 8);
	rc_c = qk_nll(cpu, pn.c, px.c, pt.c, T, V);
	rc_g = qk_nll(gpu, pn.g, px.g, pt.g, T, V);
	if (rcs("nll", "", rc_c, rc_g, 0)) {
		double *c = dget(cpu, pn.c, (size_t)T * 8), *g = dget(gpu, pn.g, (size_t)T * 8);
		reld("nll", "", g, c, (size_t)T, 1e-12);
		free(c);
		free(g);
	}
	/* a target outside the vocabulary: the same refusal */
	int32_t badt = (int32_t)V;
	qk_upload(cpu, pt.c, &badt, 4);
	qk_upload(gpu, pt.g, &badt, 4);
	rcs("nll", "target outside refused", qk_nll(cpu, pn.c, px.c, pt.c, T, V),
	    qk_nll(gpu, pn.g, px.g, pt.g, T, V), QC_EINVAL);
	pfree(&pt);
	pfree(&pn);

	/* online statistics over column blocks, with a second model and targets */
	float *x2 = randn((size_t)(T * V), 3);
	pair p2 = both(x2, (size_t)(T * V) * 4);
	qk_rowstat *sc = malloc((size_t)T * sizeof *sc), *sg = malloc((size_t)T * sizeof *sg);
	qk_rowstat_init(sc, T);
	qk_rowstat_init(sg, T);
	int64_t nb = quick ? 128 : 32768;
	int ok = 1;
	for (int64_t c0 = 0; c0 < V && ok; c0 += nb) {
		int64_t w = V - c0 < nb ? V - c0 : nb;
		rc_c = qk_softmax_fold(cpu, sc, (float *)px.c + c0, (float *)p2.c + c0, V, T, w, c0, tg);
		rc_g = qk_softmax_fold(gpu, sg, (float *)px.g + c0, (float *)p2.g + c0, V, T, w, c0, tg);
		ok = rcs("softmax fold", "", rc_c, rc_g, 0);
	}
	if (ok) {
		double *a = malloc((size_t)T * 4 * 8), *b = malloc((size_t)T * 4 * 8);
		size_t argbad = 0;
		for (int64_t t = 0; t < T; t++) {
			a[4 * t] = sg[t].max, a[4 * t + 1] = sg[t].sum, a[4 * t + 2] = sg[t].target;
			a[4 * t + 3] = sg[t].cross;
			b[4 * t] = sc[t].max, b[4 * t + 1] = sc[t].sum, b[4 * t + 2] = sc[t].target;
			b[4 * t + 3] = sc[t].cross;
			argbad += sg[t].arg != sc[t].arg;
		}
		reld("softmax fold", "max, sum, target, cross", a, b, (size_t)(4 * T), 1e-12);
		report(argbad == 0, "softmax fold", "argmax", "differ", (double)argbad, 0);
		free(a);
		free(b);
	}
	free(sc);
	free(sg);
	pfree(&p2);
	pfree(&px);
	free(x);
	free(x2);
	free(tg);
}

static void t_actq(void)
{
	int64_t T = quick ? 9 : 2048, D = quick ? 77 : 4096;
	float *x = randn((size_t)(T * D), 2);
	for (int64_t d = 0; d < D; d++)
		x[3 * D + d] = 0.0f; /* a zero row */
	x[4 * D + 5] = NAN;
	x[5 * D + 1] = 1e6f;
	qk_actq kinds[] = {
		{ QK_ACTQ_INT8_TOKEN, 0, 0 },
		{ QK_ACTQ_FP8_TOKEN, 0, 0 },
		{ QK_ACTQ_INT8_TENSOR, 0.05f, 3 },
		{ QK_ACTQ_FP8_TENSOR, 0.02f, 0 },
	};
	const char *names[] = { "int8 token", "fp8 token", "int8 tensor zp 3", "fp8 tensor" };
	for (int k = 0; k < 4; k++) {
		pair p = both(x, (size_t)(T * D) * 4);
		int rc_c = qk_actq_apply(cpu, p.c, T, D, &kinds[k]);
		int rc_g = qk_actq_apply(gpu, p.g, T, D, &kinds[k]);
		if (rcs("activation quant", names[k], rc_c, rc_g, 0))
			cmp_f("activation quant", names[k], &p, (size_t)(T * D), 0);
		pfree(&p);
	}
	free(x);
}

/* ---------------------------------------------------------------- reductions */

static void t_reduce(void)
{
	size_t n = quick ? 5000 : 50000017;
	float *x = randn(n, 1), *y = randn(n, 1);
	x[n / 3] = -40.0f;
	pair px = both(x, n * 4), py = both(y, n * 4);
	float ac = 1.5f, ag = 1.5f;
	int rc_c = qk_absmax(cpu, px.c, n, &ac), rc_g = qk_absmax(gpu, px.g, n, &ag);
	if (rcs("absmax", "", rc_c, rc_g, 0))
		exact("absmax", "", &ag, &ac, 1, 4);
	double sc = 0.25, sg = 0.25;
	rc_c = qk_sumsq(cpu, px.c, n, &sc);
	rc_g = qk_sumsq(gpu, px.g, n, &sg);
	if (rcs("sumsq", "", rc_c, rc_g, 0))
		reld("sumsq", "", &sg, &sc, 1, 1e-12);
	double d2c[2] = { 1, 2 }, d2g[2] = { 1, 2 };
	rc_c = qk_diff_sumsq(cpu, px.c, py.c, n, &d2c[0], &d2c[1]);
	rc_g = qk_diff_sumsq(gpu, px.g, py.g, n, &d2g[0], &d2g[1]);
	if (rcs("diff sumsq", "", rc_c, rc_g, 0))
		reld("diff sumsq", "", d2g, d2c, 2, 1e-12);
	pair pd = poisoned(n * 4);
	rc_c = qk_sub(cpu, pd.c, px.c, py.c, n);
	rc_g = qk_sub(gpu, pd.g, px.g, py.g, n);
	if (rcs("sub", "", rc_c, rc_g, 0))
		cmp_f("sub", "", &pd, n, 0);
	pfree(&pd);
	/* the first non-finite: none, then two */
	int64_t fc = 7, fg = 7;
	rc_c = qk_nonfinite(cpu, px.c, n, &fc);
	rc_g = qk_nonfinite(gpu, px.g, n, &fg);
	if (rcs("nonfinite", "", rc_c, rc_g, 0))
		report(fc == fg, "nonfinite", "all finite", "index", (double)fg, (double)fc);
	x[n - 2] = INFINITY;
	x[n / 2 + 1] = NAN;
	pfree(&px);
	px = both(x, n * 4);
	rc_c = qk_nonfinite(cpu, px.c, n, &fc);
	rc_g = qk_nonfinite(gpu, px.g, n, &fg);
	if (rcs("nonfinite", "", rc_c, rc_g, 0))
		report(fc == fg, "nonfinite", "NaN and Inf", "index", (double)fg, (double)fc);
	pfree(&px);
	pfree(&py);
	free(x);
	free(y);

	/* per-channel statistics and scaling */
	int64_t rows = quick ? 33 : 65536, cols = quick ? 70 : 4096;
	float *a = randn((size_t)(rows * cols), 1), *s = malloc((size_t)(rows > cols ? rows : cols) * 4);
	for (int64_t i = 0; i < (rows > cols ? rows : cols); i++)
		s[i] = (float)(0.5 + unif());
	pair pa = both(a, (size_t)(rows * cols) * 4);
	float *mc = malloc((size_t)cols * 4), *mg = malloc((size_t)cols * 4);
	for (int64_t j = 0; j < cols; j++)
		mc[j] = mg[j] = j % 5 == 0 ? 3.0f : 0.0f;
	rc_c = qk_col_absmax(cpu, pa.c, rows, cols, mc);
	rc_g = qk_col_absmax(gpu, pa.g, rows, cols, mg);
	if (rcs("column absmax", "", rc_c, rc_g, 0))
		exact("column absmax", "", mg, mc, (size_t)cols, 4);
	for (int div = 0; div < 2; div++) {
		rc_c = qk_scale_cols(cpu, pa.c, rows, cols, s, div);
		rc_g = qk_scale_cols(gpu, pa.g, rows, cols, s, div);
		if (rcs("scale columns", "", rc_c, rc_g, 0))
			cmp_f("scale columns", div ? "divide" : "multiply", &pa, (size_t)(rows * cols), 0);
		rc_c = qk_scale_rows(cpu, pa.c, rows, cols, s, div);
		rc_g = qk_scale_rows(gpu, pa.g, rows, cols, s, div);
		if (rcs("scale rows", "", rc_c, rc_g, 0))
			cmp_f("scale rows", div ? "divide" : "multiply", &pa, (size_t)(rows * cols), 0);
	}
	/* SmoothQuant's int8 image of a weight's rows, scaled or not */
	for (int scaled = 0; scaled < 2; scaled++) {
		rc_c = qk_q8_rows(cpu, pa.c, rows, cols, scaled ? s : NULL);
		rc_g = qk_q8_rows(gpu, pa.g, rows, cols, scaled ? s : NULL);
		if (rcs("int8 rows", "", rc_c, rc_g, 0))
			cmp_f("int8 rows", scaled ? "scaled columns" : "plain", &pa, (size_t)(rows * cols), 0);
	}
	/* AWQ's column sums, continuing from the caller's values */
	double *sumc = malloc((size_t)cols * 8), *sumg = malloc((size_t)cols * 8);
	for (int64_t j = 0; j < cols; j++)
		sumc[j] = sumg[j] = 0.125 * (double)j;
	rc_c = qk_col_abssum(cpu, pa.c, rows, cols, sumc);
	rc_g = qk_col_abssum(gpu, pa.g, rows, cols, sumg);
	if (rcs("column abs sum", "", rc_c, rc_g, 0))
		exact("column abs sum", "row order, from the caller's sums", sumg, sumc, (size_t)cols, 8);
	free(sumc);
	free(sumg);
	pfree(&pa);
	free(a);
	free(s);
	free(mc);
	free(mg);
}

/* ---------------------------------------------------------------- factorizations */

/* A = X^T X / T + 0.1 I, whole (host), X [2 n + 8, n] with outlier
 * columns: the product on the CPU context (OpenBLAS) */
static float *spd(int64_t n)
{
	int64_t T = 2 * n + 8;
	float *x = randn((size_t)(T * n), 1);
	for (int64_t t = 0; t < T; t++)
		for (int64_t j = 0; j < n; j += 13)
			x[t * n + j] *= 10;
	float *dx = dput(cpu, x, (size_t)(T * n) * 4), *dh = qk_alloc(cpu, (size_t)(n * n) * 4);
	if (!dh || qk_zero(cpu, dh, (size_t)(n * n) * 4) ||
	    qk_hessian_accum(cpu, dh, dx, T, n, 1.0f / (float)T) || qk_sym_upper(cpu, dh, n)) {
		fprintf(stderr, "test_cuda: %s\n", qc_errmsg());
		exit(1);
	}
	float *a = dget(cpu, dh, (size_t)(n * n) * 4);
	for (int64_t i = 0; i < n; i++)
		a[i * n + i] += 0.1f;
	qk_free(cpu, dx);
	qk_free(cpu, dh);
	free(x);
	return a;
}

static void t_factor(void)
{
	int64_t sizes[] = { 1, 45, 200, 1024 };
	int ns = quick ? 2 : 4;
	for (int s = 0; s < ns; s++) {
		int64_t n = sizes[s];
		float *a = spd(n);
		for (int upper = 0; upper < 2; upper++) {
			char cs[48];
			snprintf(cs, sizeof cs, "n=%lld %s", (long long)n, upper ? "upper" : "lower");
			pair p = both(a, (size_t)(n * n) * 4);
			int rc_c = qk_cholesky(cpu, p.c, n, upper), rc_g = qk_cholesky(gpu, p.g, n, upper);
			if (rcs("cholesky", cs, rc_c, rc_g, 0)) {
				cmp_f("cholesky", cs, &p, (size_t)(n * n), 1e-4);
				rc_c = qk_tri_inverse(cpu, p.c, n, upper);
				rc_g = qk_tri_inverse(gpu, p.g, n, upper);
				if (rcs("triangular inverse", cs, rc_c, rc_g, 0))
					cmp_f("triangular inverse", cs, &p, (size_t)(n * n), 1e-4);
			}
			pfree(&p);
		}
		free(a);
	}
	/* not positive definite, NaN, singular: the same refusals */
	int64_t n = 6;
	float *a = spd(n);
	a[3 * n + 3] = -5.0f;
	pair p = both(a, (size_t)(n * n) * 4);
	rcs("cholesky", "not positive definite", qk_cholesky(cpu, p.c, n, 1), qk_cholesky(gpu, p.g, n, 1),
	    QC_ENUMERIC);
	pfree(&p);
	a[3 * n + 3] = NAN;
	p = both(a, (size_t)(n * n) * 4);
	rcs("cholesky", "NaN", qk_cholesky(cpu, p.c, n, 1), qk_cholesky(gpu, p.g, n, 1), QC_ENUMERIC);
	pfree(&p);
	a[3 * n + 3] = 0.0f;
	p = both(a, (size_t)(n * n) * 4);
	rcs("triangular inverse", "singular", qk_tri_inverse(cpu, p.c, n, 1),
	    qk_tri_inverse(gpu, p.g, n, 1), QC_ENUMERIC);
	pfree(&p);
	free(a);
}

/* ---------------------------------------------------------------- GPTQ */

static qk_qspec spec(int bits, int sym, int64_t group, int mse, qc_dtype arith)
{
	qk_qspec q = { .is_float = 0, .bits = bits, .symmetric = sym, .group = group, .tensor = 0,
	               .scale_dtype = QC_DT_BF16, .arith = arith, .mse = mse, .grid = 100,
	               .patience = 5, .maxshrink = 0.20, .norm = 2.4 };
	return q;
}

static void t_gptq_hessian(void)
{
	int64_t n = quick ? 50 : 4096;
	float *a = spd(quick ? n : 64); /* real shape: a scaled identity-like SPD is enough */
	float *h = malloc((size_t)(n * n) * 4);
	int64_t m = quick ? n : 64;
	for (int64_t i = 0; i < n; i++)
		for (int64_t j = 0; j < n; j++)
			h[i * n + j] = a[(i % m) * m + (j % m)] + (i == j ? 1.0f : 0.0f) +
			               (j > i ? 0.001f * (float)(i + j) : 0.0f); /* upper != lower */
	free(a);
	pair p = both(h, (size_t)(n * n) * 4);
	float *dc = malloc((size_t)n * 4), *dg = malloc((size_t)n * 4);
	int64_t bc = 5, bg = 5;
	int rc_c = qk_gptq_hdiag(cpu, p.c, n, dc, &bc), rc_g = qk_gptq_hdiag(gpu, p.g, n, dg, &bg);
	if (rcs("gptq hdiag", "", rc_c, rc_g, 0)) {
		exact("gptq hdiag", "diagonal", dg, dc, (size_t)n, 4);
		report(bc == bg, "gptq hdiag", "finite", "index", (double)bg, (double)bc);
	}
	/* a NaN in the lower triangle does not count, an Inf in the upper one does */
	h[(n - 1) * n + 2] = NAN;
	h[3 * n + n - 2] = INFINITY;
	pair pbad = both(h, (size_t)(n * n) * 4);
	rc_c = qk_gptq_hdiag(cpu, pbad.c, n, dc, &bc);
	rc_g = qk_gptq_hdiag(gpu, pbad.g, n, dg, &bg);
	if (rcs("gptq hdiag", "", rc_c, rc_g, 0))
		report(bc == bg, "gptq hdiag", "first non-finite", "index", (double)bg, (double)bc);
	pfree(&pbad);
	/* permutation: exact data movement */
	int64_t *sig = malloc((size_t)n * 8);
	for (int64_t i = 0; i < n; i++)
		sig[i] = i;
	for (int64_t i = n - 1; i > 0; i--) {
		int64_t j = (int64_t)(unif() * (double)(i + 1)), t = sig[i];
		sig[i] = sig[j];
		sig[j] = t;
	}
	rc_c = qk_gptq_permute(cpu, p.c, n, sig);
	rc_g = qk_gptq_permute(gpu, p.g, n, sig);
	if (rcs("gptq permute", "", rc_c, rc_g, 0))
		cmp_f("gptq permute", "random sigma", &p, (size_t)(n * n), 0);
	/* the damped factor of the permuted matrix */
	for (int64_t i = 0; i < n; i++)
		dc[i] = h[sig[i] * n + sig[i]];
	rc_c = qk_gptq_factor(cpu, p.c, n, dc, 0.05);
	rc_g = qk_gptq_factor(gpu, p.g, n, dc, 0.05);
	if (rcs("gptq factor", "", rc_c, rc_g, 0))
		cmp_f("gptq factor", "V = J L J", &p, (size_t)(n * n), 1e-4);
	pfree(&p);
	/* failure: M comes back whole, the call may be repeated */
	int64_t k = 8;
	float *bad = spd(k);
	bad[2 * k + 5] = bad[5 * k + 2] = 50.0f;
	pair pb = both(bad, (size_t)(k * k) * 4);
	float dk[8];
	for (int64_t i = 0; i < k; i++)
		dk[i] = bad[i * k + i];
	rc_c = qk_gptq_factor(cpu, pb.c, k, dk, 0.0);
	rc_g = qk_gptq_factor(gpu, pb.g, k, dk, 0.0);
	if (rcs("gptq factor", "not positive definite", rc_c, rc_g, QC_ENUMERIC)) {
		/* M off the diagonal (which the next call replaces) */
		float *c = dget(cpu, pb.c, (size_t)(k * k) * 4), *g = dget(gpu, pb.g, (size_t)(k * k) * 4);
		for (int64_t i = 0; i < k; i++)
			c[i * k + i] = g[i * k + i] = 0.0f;
		exact("gptq factor", "M restored on failure", g, c, (size_t)(k * k), 4);
		free(c);
		free(g);
	}
	pfree(&pb);
	free(bad);
	free(h);
	free(dc);
	free(dg);
	free(sig);
}

typedef struct gcase {
	const char *name;
	int bits, sym, mse, dynamic, actorder, dead, alias, nmat, fp8, tensor;
	int64_t group;
} gcase;

/* one matrix set on one device */
typedef struct gset {
	qk_gptq_mat m[3];
	qk_gptq_sums sums[3][4096 * 4];
} gset;

static void t_gptq_case(const gcase *gc, int64_t rows, int64_t n)
{
	char cs[96];
	snprintf(cs, sizeof cs, "%s %lldx%lld", gc->name, (long long)rows, (long long)n);
	qk_qspec q = spec(gc->bits, gc->sym, gc->group ? gc->group : n, gc->mse, QC_DT_F32);
	if (gc->fp8) {
		q.is_float = 1;
		q.bits = 8;
		q.symmetric = 1;
	}
	q.tensor = gc->tensor;
	int64_t ng = q.tensor ? 1 : (n + q.group - 1) / q.group;
	/* the Hessian's factor, through the GPU and CPU paths alike */
	float *h = spd(n), *d0 = malloc((size_t)n * 4);
	uint8_t *dead = calloc((size_t)n, 1);
	for (int64_t i = 0; i < n; i++)
		if (gc->dead && i % 11 == 3) {
			/* an input that is 0 in every token: its row and column of H */
			dead[i] = 1;
			for (int64_t j = 0; j < n; j++)
				h[i * n + j] = h[j * n + i] = 0.0f;
		}
	for (int64_t i = 0; i < n; i++)
		d0[i] = h[i * n + i];
	int64_t *perm = malloc((size_t)n * 8), *sig = malloc((size_t)n * 8);
	for (int64_t i = 0; i < n; i++)
		perm[i] = i;
	if (gc->actorder)
		for (int64_t i = n - 1; i > 0; i--) {
			int64_t j = (int64_t)(unif() * (double)(i + 1)), t = perm[i];
			perm[i] = perm[j];
			perm[j] = t;
		}
	for (int64_t i = 0; i < n; i++)
		sig[i] = perm[n - 1 - i];
	float *md = malloc((size_t)n * 4);
	for (int64_t i = 0; i < n; i++)
		md[i] = dead[sig[i]] ? 1.0f : d0[sig[i]];
	pair pv = both(h, (size_t)(n * n) * 4);
	int rc_c = qk_gptq_permute(cpu, pv.c, n, sig), rc_g = qk_gptq_permute(gpu, pv.g, n, sig);
	if (!rcs("gptq permute", cs, rc_c, rc_g, 0))
		return;
	rc_c = qk_gptq_factor(cpu, pv.c, n, md, 0.01);
	rc_g = qk_gptq_factor(gpu, pv.g, n, md, 0.01);
	if (!rcs("gptq factor", cs, rc_c, rc_g, 0))
		return;
	/* both solve with the CPU's V, so that the sweep alone is compared */
	float *V = dget(cpu, pv.c, (size_t)(n * n) * 4);
	pfree(&pv);
	pv = both(V, (size_t)(n * n) * 4);

	int nm = gc->nmat;
	int64_t R = rows * nm;
	float *W = weights(R, n);
	const float *colw = gc->mse ? d0 : NULL;
	pair pw = both(W, (size_t)(R * n) * 4), pdq = poisoned((size_t)(R * n) * 4);
	gset *S[2];
	uint8_t *codes[2];
	float *scales[2], *zps[2];
	for (int dv = 0; dv < 2; dv++) {
		S[dv] = calloc(1, sizeof *S[dv]);
		codes[dv] = malloc((size_t)(R * n));
		scales[dv] = calloc((size_t)(R * ng), 4);
		zps[dv] = calloc((size_t)(R * ng), 4);
		for (int k = 0; k < nm; k++) {
			void *wd = dv ? pw.g : pw.c, *dd = dv ? pdq.g : pdq.c;
			int64_t off = k * rows;
			S[dv]->m[k] = (qk_gptq_mat){
				.W = (float *)wd + off * n, .rows = rows, .codes = codes[dv] + off * n,
				.scales = scales[dv] + (q.tensor ? k : off * ng),
				.zps = q.symmetric ? NULL : zps[dv] + (q.tensor ? k : off * ng),
				.deq = gc->alias ? (float *)wd + off * n : (float *)dd + off * n,
				.sums = S[dv]->sums[k],
			};
		}
	}
	/* parameters (or the tensor's), error products, then the sweep */
	if (q.tensor) {
		for (int k = 0; k < nm; k++) {
			float mn, mx;
			rc_c = qk_gptq_minmax(cpu, S[0]->m[k].W, (size_t)(rows * n), &mn, &mx);
			float gmn, gmx;
			rc_g = qk_gptq_minmax(gpu, S[1]->m[k].W, (size_t)(rows * n), &gmn, &gmx);
			if (rcs("gptq minmax", cs, rc_c, rc_g, 0))
				report(mn == gmn && mx == gmx, "gptq minmax", cs, "differ",
				       (mn != gmn) + (mx != gmx), 0);
			float amax = fabsf(mn) > fabsf(mx) ? fabsf(mn) : fabsf(mx);
			float s = amax / (gc->fp8 ? 448.0f : (float)((1 << (gc->bits - 1)) - 1));
			scales[0][k] = scales[1][k] = s > 0 ? s : 1.0f;
		}
	} else {
		/* with dynamic groups these are RTN's and the errors' parameters;
		 * the sweep finds its own */
		rc_c = qk_gptq_params(cpu, &q, S[0]->m, nm, n, colw);
		rc_g = qk_gptq_params(gpu, &q, S[1]->m, nm, n, colw);
		if (rcs("gptq params", cs, rc_c, rc_g, 0)) {
			size_t diff = 0;
			for (int64_t i = 0; i < R * ng; i++)
				diff += scales[0][i] != scales[1][i] || zps[0][i] != zps[1][i];
			double frac = (double)diff / (double)(R * ng);
			report(frac <= (gc->mse ? 0.005 : 0), "gptq params", cs, "groups-differ", frac,
			       gc->mse ? 0.005 : 0);
			/* the sweep goes on from the same parameters */
			memcpy(scales[1], scales[0], (size_t)(R * ng) * 4);
			memcpy(zps[1], zps[0], (size_t)(R * ng) * 4);
		}
	}
	rc_c = qk_gptq_errors(cpu, &q, S[0]->m, nm, n, pv.c, perm, gc->dead ? dead : NULL);
	rc_g = qk_gptq_errors(gpu, &q, S[1]->m, nm, n, pv.g, perm, gc->dead ? dead : NULL);
	if (rcs("gptq errors", cs, rc_c, rc_g, 0)) {
		double a[4], b[4];
		memset(a, 0, sizeof a);
		memset(b, 0, sizeof b);
		for (int k = 0; k < nm; k++)
			for (int64_t r = 0; r < rows; r++) {
				const qk_gptq_sums *x = &S[1]->sums[k][r], *y = &S[0]->sums[k][r];
				a[0] += x->n_w, a[1] += x->xv_w, a[2] += x->n_r, a[3] += x->xv_r;
				b[0] += y->n_w, b[1] += y->xv_w, b[2] += y->n_r, b[3] += y->xv_r;
			}
		reld("gptq errors", cs, a, b, 4, 1e-4);
	}
	/* RTN on a copy of the parameters, for its exact codes */
	{
		uint8_t *rc0 = malloc((size_t)(R * n)), *rc1 = malloc((size_t)(R * n));
		qk_gptq_mat m0[3], m1[3];
		qk_gptq_sums *s0 = calloc((size_t)R, sizeof *s0), *s1 = calloc((size_t)R, sizeof *s1);
		for (int k = 0; k < nm; k++) {
			m0[k] = S[0]->m[k];
			m1[k] = S[1]->m[k];
			m0[k].codes = rc0 + k * rows * n;
			m1[k].codes = rc1 + k * rows * n;
			m0[k].deq = m1[k].deq = NULL;
			m0[k].sums = s0 + k * rows;
			m1[k].sums = s1 + k * rows;
		}
		if (!gc->dynamic) {
			/* with the column weights of the search when it has them (and
			 * then the weighted sums too) */
			rc_c = qk_gptq_rtn(cpu, &q, m0, nm, n, colw);
			rc_g = qk_gptq_rtn(gpu, &q, m1, nm, n, colw);
			if (rcs("gptq rtn", cs, rc_c, rc_g, 0)) {
				exact("gptq rtn", cs, rc1, rc0, (size_t)(R * n), 1);
				double a[4] = { 0, 0, 0, 0 }, b[4] = { 0, 0, 0, 0 };
				for (int64_t r = 0; r < R; r++) {
					a[0] += s1[r].w2, a[1] += s1[r].werr, a[2] += s1[r].hw2, a[3] += s1[r].herr;
					b[0] += s0[r].w2, b[1] += s0[r].werr, b[2] += s0[r].hw2, b[3] += s0[r].herr;
				}
				reld("gptq rtn", "sums", a, b, 4, 1e-12);
			}
		}
		free(rc0);
		free(rc1);
		free(s0);
		free(s1);
	}
	rc_c = qk_gptq_sweep(cpu, &q, S[0]->m, nm, n, pv.c, perm, gc->dead ? dead : NULL, colw, 128,
	                     gc->dynamic);
	rc_g = qk_gptq_sweep(gpu, &q, S[1]->m, nm, n, pv.g, perm, gc->dead ? dead : NULL, colw, 128,
	                     gc->dynamic);
	if (rcs("gptq sweep", cs, rc_c, rc_g, 0)) {
		size_t diff = 0;
		for (int64_t i = 0; i < R * n; i++)
			diff += codes[0][i] != codes[1][i];
		double frac = (double)diff / (double)(R * n);
		report(frac <= 0.05, "gptq sweep", cs, "codes-differ", frac, 0.05);
		/* err_out as the solver forms it, per matrix */
		double worst = 0;
		for (int k = 0; k < nm; k++) {
			double e[2];
			for (int dv = 0; dv < 2; dv++) {
				double xg = 0, ng2 = 0, xw = 0, nw = 0;
				for (int64_t r = 0; r < rows; r++) {
					const qk_gptq_sums *x = &S[dv]->sums[k][r];
					xg += x->xv_g, ng2 += x->n_g, xw += x->xv_w, nw += x->n_w;
				}
				e[dv] = (xg - 0.01 * ng2) / (xw - 0.01 * nw);
			}
			double d = fabs(e[1] - e[0]) / fabs(e[0]);
			if (!(d <= worst))
				worst = d;
		}
		report(worst <= 0.01, "gptq sweep", cs, "err_out-rel", worst, 0.01);
		if (gc->dynamic) {
			size_t sd = 0;
			for (int64_t i = 0; i < R * ng; i++)
				sd += scales[0][i] != scales[1][i];
			double f = (double)sd / (double)(R * ng);
			report(f <= 0.02, "gptq sweep", "dynamic group scales", "differ", f, 0.02);
		}
		/* the dequantized codes: the GPU's deq is its codes' image */
		float *dq = dget(gpu, gc->alias ? pw.g : pdq.g, (size_t)(R * n) * 4);
		size_t bad = 0;
		for (int64_t r = 0; r < R; r++)
			for (int64_t c = 0; c < n; c++) {
				int64_t g = q.tensor ? 0 : c / q.group;
				int64_t si = q.tensor ? r / rows : r * ng + g;
				float s = scales[1][si], z = q.symmetric ? 0.0f : zps[1][si];
				uint8_t cd = codes[1][r * n + c];
				float qv = q.is_float ? qc_fp8e4m3_to_f32(cd) : (float)(int8_t)cd;
				bad += dq[r * n + c] != (qv - z) * s;
			}
		report(bad == 0, "gptq sweep", "deq = dequantized codes", "differ", (double)bad, 0);
		free(dq);
	}
	for (int dv = 0; dv < 2; dv++) {
		free(S[dv]);
		free(codes[dv]);
		free(scales[dv]);
		free(zps[dv]);
	}
	pfree(&pw);
	pfree(&pdq);
	pfree(&pv);
	free(W);
	free(h);
	free(d0);
	free(dead);
	free(perm);
	free(sig);
	free(md);
}

static void t_gptq(void)
{
	const gcase cases[] = {
		/* name                 bits sym mse dyn act dead alias nmat fp8 tensor group */
		{ "w4 g32 static act",    4, 1, 1, 0, 1, 1, 0, 3, 0, 0, 32 },
		{ "w4 g32 dynamic asym",  4, 0, 1, 1, 0, 1, 1, 1, 0, 0, 32 },
		{ "w8 channel minmax",    8, 1, 0, 0, 1, 0, 0, 2, 0, 0, 0 },
		{ "fp8 channel",          8, 1, 0, 0, 0, 0, 1, 1, 1, 0, 0 },
		{ "w8 tensor",            8, 1, 0, 0, 0, 0, 0, 2, 0, 1, 0 },
	};
	int64_t rows = quick ? 20 : 1024, n = quick ? 96 : 1024;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		t_gptq_case(&cases[i], rows, n);
	if (!quick) {
		/* a real shape: q_proj of Llama-3.1-8B, W4 g128 as qgptq's default */
		gcase real = { "w4 g128 static act", 4, 1, 1, 0, 1, 1, 0, 1, 0, 0, 128 };
		t_gptq_case(&real, 4096, 4096);
		gcase dyn = { "w4 g128 dynamic", 4, 1, 1, 1, 0, 0, 1, 1, 0, 0, 128 };
		t_gptq_case(&dyn, 1024, 4096);
	}
}

/* ---------------------------------------------------------------- main */

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv)
{
	quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
	if (qk_ctx_new(&cpu, QK_DEVICE_CPU, 0)) {
		fprintf(stderr, "test_cuda: %s\n", qc_errmsg());
		return 1;
	}
	int rc = qk_ctx_new(&gpu, QK_DEVICE_CUDA, 0);
	if (rc) {
		printf("SKIP  no usable CUDA device: %s\n", qc_errmsg());
		qk_ctx_free(cpu);
		return 77;
	}
	setenv("QK_CUDA_MATH", "fp32", 1);
	if (qk_ctx_new(&gpu32, QK_DEVICE_CUDA, 0)) {
		fprintf(stderr, "test_cuda: %s\n", qc_errmsg());
		return 1;
	}
	unsetenv("QK_CUDA_MATH");
	struct {
		const char *name;
		void (*fn)(void);
	} groups[] = {
		{ "memory", t_memory }, { "conversion", t_convert }, { "dequantization", t_dequant },
		{ "gemm", t_gemm }, { "linear", t_linear }, { "hessian", t_hessian },
		{ "layers", t_layers }, { "attention", t_attention }, { "log-probabilities", t_logprob },
		{ "activation quantization", t_actq }, { "reductions", t_reduce },
		{ "factorizations", t_factor }, { "gptq hessian", t_gptq_hessian }, { "gptq", t_gptq },
	};
	const char *only = getenv("QK_TEST_ONLY");
	double t0 = now();
	for (size_t i = 0; i < sizeof groups / sizeof groups[0]; i++) {
		if (only && !strstr(only, groups[i].name))
			continue;
		double t = now();
		printf("# %s\n", groups[i].name);
		groups[i].fn();
		printf("# %s: %.1f s\n", groups[i].name, now() - t);
	}
	printf("# %d passed, %d failed, %.1f s\n", n_pass, n_fail, now() - t0);
	qk_ctx_free(gpu32);
	qk_ctx_free(gpu);
	qk_ctx_free(cpu);
	return n_fail ? 1 : 0;
}
