/* test_kernels.c - every CPU kernel against a plain double-precision
 * reference (straightforward loops written here), plus hand-worked values
 * for the activation quantizers and RoPE frequencies; the dispatch (NULL
 * context, OpenBLAS's count per context) and QK_DEBUG_MEMORY (a host access
 * between kernel calls faults). */
#include "tutil.h"

#include <cblas.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kernels.h"
#include "cpu/qk_cpu.h"
#include "qc_err.h"
#include "qc_num.h"
#include "qc_rng.h"

/* tolerances, relative to the largest reference magnitude */
#define TOL_F32 2e-5    /* one FP32 pass with O(K) summation */

static qk_ctx *ctx1, *ctx2;   /* 1 and 2 threads */

static int setup(void **state)
{
	(void)state;
	if (qk_ctx_new(&ctx1, QK_DEVICE_CPU, 1) || qk_ctx_new(&ctx2, QK_DEVICE_CPU, 2))
		return -1;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	qk_ctx_free(ctx1);
	qk_ctx_free(ctx2);
	return 0;
}

static float *randv(qc_rng *r, size_t n, double sd)
{
	float *v = malloc(n * sizeof *v);
	assert_non_null(v);
	for (size_t i = 0; i < n; i++)
		v[i] = (float)(qc_rng_normal(r) * sd);
	return v;
}

/* max |a - b| / max |b| */
static double relerr(const float *a, const double *b, size_t n)
{
	double m = 0, d = 0;
	for (size_t i = 0; i < n; i++) {
		if (fabs(b[i]) > m)
			m = fabs(b[i]);
		if (fabs(a[i] - b[i]) > d)
			d = fabs(a[i] - b[i]);
	}
	return m > 0 ? d / m : d;
}

/* ---------------------------------------------------------------- context */

static void test_ctx(void **state)
{
	(void)state;
	qk_ctx *c;
	/* without a CUDA build or a usable GPU: refused by name, nothing made;
	 * with both (make cuda-check on a GPU machine) the context works */
	int rc = qk_ctx_new(&c, QK_DEVICE_CUDA, 1);
	if (rc == 0) {
		assert_non_null(c);
		qk_ctx_free(c);
	} else {
		tu_assert_rc(rc, QC_EUNSUPPORTED);
		assert_null(c);
	}
	tu_assert_rc(qk_ctx_new(&c, QK_DEVICE_CPU, -1), QC_EINVAL);
	tu_assert_rc(qk_ctx_new(&c, QK_DEVICE_AUTO, -1), QC_EINVAL);
	/* auto: CUDA exactly when a CUDA context can be made, else the CPU */
	tu_assert_rc(qk_ctx_new(&c, QK_DEVICE_AUTO, 1), 0);
	assert_int_equal(qk_ctx_device(c), rc == 0 ? QK_DEVICE_CUDA : QK_DEVICE_CPU);
	assert_int_equal(qk_ctx_threads(c), 1);
	qk_ctx_free(c);
	qk_device d;
	tu_assert_rc(qk_device_parse("cuda", &d), 0);
	assert_int_equal(d, QK_DEVICE_CUDA);
	tu_assert_rc(qk_device_parse("auto", &d), 0);
	assert_int_equal(d, QK_DEVICE_AUTO);
	assert_string_equal(qk_device_name(QK_DEVICE_AUTO), "auto");
	tu_assert_rc(qk_device_parse("tpu", &d), QC_EINVAL);
	assert_string_equal(qk_device_name(QK_DEVICE_CPU), "cpu");
	assert_int_equal(qk_ctx_threads(ctx2), 2);
	float *p = qk_alloc(ctx1, 100);
	assert_non_null(p);
	assert_int_equal((uintptr_t)p % 64, 0);
	float h[3] = { 1, 2, 3 }, g[3];
	tu_assert_rc(qk_upload(ctx1, p, h, sizeof h), 0);
	tu_assert_rc(qk_download(ctx1, g, p, sizeof g), 0);
	assert_memory_equal(h, g, sizeof h);
	qk_free(ctx1, p);
	qk_free(ctx1, NULL);
	qk_ctx_free(NULL);
}

/* ---------------------------------------------------------------- GEMM, Linear */

static void test_gemm(void **state)
{
	(void)state;
	qc_rng r;
	qc_rng_seed(&r, 1);
	const int64_t M = 37, N = 29, K = 53;
	for (int ta = 0; ta < 2; ta++)
		for (int tb = 0; tb < 2; tb++) {
			/* A stored [M, K] or [K, M]; padded row strides test lda/ldb/ldc */
			int64_t lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 5, ldc = N + 2;
			int64_t arows = ta ? K : M, brows = tb ? N : K;
			float *A = randv(&r, (size_t)(arows * lda), 1), *B = randv(&r, (size_t)(brows * ldb), 1);
			float *C = randv(&r, (size_t)(M * ldc), 1);
			double *ref = malloc(sizeof(double) * (size_t)(M * N));
			float *got = malloc(sizeof(float) * (size_t)(M * N));
			for (int64_t i = 0; i < M; i++)
				for (int64_t j = 0; j < N; j++) {
					double s = 0;
					for (int64_t k = 0; k < K; k++) {
						double a = ta ? A[k * lda + i] : A[i * lda + k];
						double b = tb ? B[j * ldb + k] : B[k * ldb + j];
						s += a * b;
					}
					ref[i * N + j] = 0.5 * s - 2.0 * C[i * ldc + j];
				}
			tu_assert_rc(qk_gemm(ctx2, ta, tb, M, N, K, 0.5f, A, lda, B, ldb, -2.0f, C, ldc), 0);
			for (int64_t i = 0; i < M; i++)
				memcpy(got + i * N, C + i * ldc, sizeof(float) * (size_t)N);
			assert_true(relerr(got, ref, (size_t)(M * N)) < TOL_F32);
			free(A); free(B); free(C); free(ref); free(got);
		}
	float x = 0;
	tu_assert_rc(qk_gemm(ctx1, 0, 0, 2, 2, 2, 1, &x, 1, &x, 2, 0, &x, 2), QC_EINVAL);
}

static void test_linear(void **state)
{
	(void)state;
	qc_rng r;
	qc_rng_seed(&r, 2);
	const int64_t T = 9, in = 40, out = 24;
	float *x = randv(&r, T * in, 1), *w = randv(&r, out * in, 0.2), *b = randv(&r, out, 1);
	float *y = randv(&r, T * out, 1);
	double *ref = malloc(sizeof(double) * T * out);
	for (int pass = 0; pass < 4; pass++) {
		int acc = pass & 1;
		const float *bias = pass & 2 ? b : NULL;
		for (int64_t t = 0; t < T; t++)
			for (int64_t o = 0; o < out; o++) {
				double s = acc ? y[t * out + o] : 0;
				if (bias)
					s += bias[o];
				for (int64_t i = 0; i < in; i++)
					s += (double)x[t * in + i] * w[o * in + i];
				ref[t * out + o] = s;
			}
		tu_assert_rc(qk_linear(ctx2, y, x, w, bias, T, in, out, acc), 0);
		assert_true(relerr(y, ref, T * out) < TOL_F32);
	}
	tu_assert_rc(qk_linear(ctx2, y, x, w, NULL, T, 0, out, 0), QC_EINVAL);
	free(x); free(w); free(b); free(y); free(ref);
}

static void test_convert(void **state)
{
	(void)state;
	uint16_t bf[4] = { 0x3f80, 0xc000, 0x0000, 0x3e20 };    /* 1, -2, 0, 0.15625 */
	float f[4];
	tu_assert_rc(qk_to_f32(ctx1, f, bf, QC_DT_BF16, 4), 0);
	assert_true(f[0] == 1.0f && f[1] == -2.0f && f[2] == 0.0f && f[3] == 0.15625f);
	uint16_t h[2] = { 0x3c00, 0xbc00 };                     /* F16 1, -1 */
	tu_assert_rc(qk_to_f32(ctx1, f, h, QC_DT_F16, 2), 0);
	assert_true(f[0] == 1.0f && f[1] == -1.0f);
	int32_t i32 = 1;
	tu_assert_rc(qk_to_f32(ctx1, f, &i32, QC_DT_I32, 1), QC_EUNSUPPORTED);
	/* a large buffer goes through the threads; same bits as qc_num */
	size_t n = 300000;
	uint16_t *src = malloc(n * 2);
	float *a = malloc(n * 4), *b = malloc(n * 4);
	for (size_t i = 0; i < n; i++)
		src[i] = (uint16_t)(i * 2654435761u >> 7);
	tu_assert_rc(qk_to_f32(ctx2, a, src, QC_DT_BF16, n), 0);
	for (size_t i = 0; i < n; i++)
		b[i] = qc_bf16_to_f32(src[i]);
	assert_memory_equal(a, b, n * 4);
	free(src); free(a); free(b);
}

/* ---------------------------------------------------------------- RMSNorm, SwiGLU */

static void test_rmsnorm(void **state)
{
	(void)state;
	qc_rng r;
	qc_rng_seed(&r, 3);
	const int64_t T = 67, D = 96;
	float *x = randv(&r, T * D, 3), *w = randv(&r, D, 1);
	float *y1 = malloc(sizeof(float) * T * D), *y2 = malloc(sizeof(float) * T * D);
	double *ref = malloc(sizeof(double) * T * D);
	for (int64_t t = 0; t < T; t++) {
		double ss = 0;
		for (int64_t i = 0; i < D; i++)
			ss += (double)x[t * D + i] * x[t * D + i];
		double rr = 1 / sqrt(ss / D + 1e-5);
		for (int64_t i = 0; i < D; i++)
			ref[t * D + i] = w[i] * x[t * D + i] * rr;
	}
	tu_assert_rc(qk_rmsnorm(ctx1, y1, x, w, T, D, 1e-5f), 0);
	tu_assert_rc(qk_rmsnorm(ctx2, y2, x, w, T, D, 1e-5f), 0);
	assert_true(relerr(y1, ref, T * D) < 1e-6);
	assert_memory_equal(y1, y2, sizeof(float) * T * D);   /* thread count does not matter */
	/* in place */
	tu_assert_rc(qk_rmsnorm(ctx2, x, x, w, T, D, 1e-5f), 0);
	assert_memory_equal(x, y1, sizeof(float) * T * D);
	free(x); free(w); free(y1); free(y2); free(ref);
}

static void test_swiglu(void **state)
{
	(void)state;
	qc_rng r;
	qc_rng_seed(&r, 4);
	size_t n = 50000;
	float *g = randv(&r, n, 4), *u = randv(&r, n, 1), *o = malloc(n * 4);
	double *ref = malloc(n * 8);
	for (size_t i = 0; i < n; i++)
		ref[i] = g[i] / (1 + exp(-(double)g[i])) * u[i];
	tu_assert_rc(qk_swiglu(ctx2, o, g, u, n), 0);
	assert_true(relerr(o, ref, n) < 1e-6);
	tu_assert_rc(qk_swiglu(ctx1, g, g, u, n), 0);   /* out == gate */
	assert_memory_equal(g, o, n * 4);
	free(g); free(u); free(o); free(ref);
}

/* GeGLU (tanh GELU), soft-capping and add against double references */
static void test_geglu_softcap_add(void **state)
{
	(void)state;
	qc_rng r;
	qc_rng_seed(&r, 41);
	size_t n = 50000;
	float *g = randv(&r, n, 4), *u = randv(&r, n, 1), *o = malloc(n * 4);
	double *ref = malloc(n * 8);
	for (size_t i = 0; i < n; i++) {
		double x = g[i];
		ref[i] = 0.5 * x * (1 + tanh(sqrt(2 / M_PI) * (x + 0.044715 * x * x * x))) * u[i];
	}
	tu_assert_rc(qk_geglu(ctx2, o, g, u, n), 0);
	assert_true(relerr(o, ref, n) < 1e-6);
	/* not SwiGLU: the two activations differ well beyond rounding */
	float *o2 = malloc(n * 4);
	tu_assert_rc(qk_swiglu(ctx2, o2, g, u, n), 0);
	assert_true(relerr(o2, ref, n) > 1e-2);
	tu_assert_rc(qk_geglu(ctx1, g, g, u, n), 0);   /* out == gate */
	assert_memory_equal(g, o, n * 4);
	/* soft-capping: 30 tanh(x / 30), large logits flattened, small ones kept */
	float *x = randv(&r, n, 40);
	for (size_t i = 0; i < n; i++)
		ref[i] = 30.0 * tanh((double)x[i] / 30.0);
	tu_assert_rc(qk_softcap(ctx2, x, n, 30.0f), 0);
	assert_true(relerr(x, ref, n) < 1e-6);
	tu_assert_rc(qk_softcap(ctx2, x, n, 0.0f), QC_EINVAL);
	tu_assert_rc(qk_softcap(ctx2, x, n, NAN), QC_EINVAL);
	/* add */
	for (size_t i = 0; i < n; i++)
		ref[i] = (double)x[i] + u[i];
	tu_assert_rc(qk_add(ctx1, o2, x, u, n), 0);
	assert_true(relerr(o2, ref, n) < 1e-7);
	tu_assert_rc(qk_add(ctx1, x, x, u, n), 0);   /* d == a */
	assert_memory_equal(x, o2, n * 4);
	free(g); free(u); free(o); free(o2); free(x); free(ref);
}

/* ---------------------------------------------------------------- RoPE */

static void test_rope_freq(void **state)
{
	(void)state;
	/* default: theta^(-2i/d) */
	float f[64];
	qk_rope rp = { .theta = 10000.0, .type = QK_ROPE_DEFAULT };
	tu_assert_rc(qk_rope_inv_freq(f, 8, &rp), 0);
	assert_true(f[0] == 1.0f);
	assert_true(f[1] == 0.1f);              /* 10000^(-2/8) */
	assert_true(f[2] == 0.01f);
	assert_true(fabsf(f[3] - 0.001f) < 1e-10f);
	rp.type = QK_ROPE_LINEAR;
	rp.factor = 4;
	tu_assert_rc(qk_rope_inv_freq(f, 8, &rp), 0);
	assert_true(f[0] == 0.25f && f[1] == 0.025f);
	/* llama3 with Llama-3.2-1B's rope_scaling (head_dim 64, theta 500000,
	 * factor 32, low 1, high 4, original 8192): low band below wavelength
	 * 2048 kept, beyond 8192 divided by 32, blended in between. */
	rp = (qk_rope){ .theta = 500000.0, .type = QK_ROPE_LLAMA3, .factor = 32,
	                .low_freq_factor = 1, .high_freq_factor = 4, .original_max_pos = 8192 };
	tu_assert_rc(qk_rope_inv_freq(f, 64, &rp), 0);
	int kept = 0, scaled = 0, blended = 0;
	for (int i = 0; i < 32; i++) {
		double base = pow(500000.0, -2.0 * i / 64), wl = 2 * M_PI / base, want;
		if (wl < 8192 / 4.0) {
			want = base;
			kept++;
		} else if (wl > 8192 / 1.0) {
			want = base / 32;
			scaled++;
		} else {
			double s = (8192 / wl - 1) / (4 - 1);
			want = (1 - s) * base / 32 + s * base;
			assert_true(want > base / 32 && want < base);
			blended++;
		}
		assert_true(fabs(f[i] - want) <= 1e-7 * want);
	}
	/* all three bands occur for this shape */
	assert_true(kept > 0 && scaled > 0 && blended > 0);
	rp.high_freq_factor = 0.5;
	tu_assert_rc(qk_rope_inv_freq(f, 64, &rp), QC_EINVAL);
	tu_assert_rc(qk_rope_inv_freq(f, 7, &rp), QC_EINVAL);
}

static void test_rope_apply(void **state)
{
	(void)state;
	qc_rng r;
	qc_rng_seed(&r, 5);
	const int64_t T = 21, nh = 3, hd = 16, pos0 = 100;
	float inv[8];
	qk_rope rp = { .theta = 10000.0 };
	tu_assert_rc(qk_rope_inv_freq(inv, hd, &rp), 0);
	float *x = randv(&r, T * nh * hd, 1);
	double *ref = malloc(sizeof(double) * T * nh * hd);
	for (int64_t t = 0; t < T; t++)
		for (int64_t h = 0; h < nh; h++)
			for (int64_t i = 0; i < hd; i++) {
				/* rotate_half: q*cos + cat(-x2, x1)*sin */
				int64_t b = (t * nh + h) * hd, i2 = i < hd / 2 ? i + hd / 2 : i - hd / 2;
				double a = (double)(pos0 + t) * inv[i % (hd / 2)];
				double rot = i < hd / 2 ? -x[b + i2] : x[b + i2];
				ref[b + i] = x[b + i] * cos(a) + rot * sin(a);
			}
	float *y = malloc(sizeof(float) * T * nh * hd);
	memcpy(y, x, sizeof(float) * T * nh * hd);
	tu_assert_rc(qk_rope_apply(ctx2, y, T, nh, hd, pos0, inv), 0);
	assert_true(relerr(y, ref, T * nh * hd) < 1e-5);
	/* position 0 is the identity */
	memcpy(y, x, sizeof(float) * nh * hd);
	tu_assert_rc(qk_rope_apply(ctx1, y, 1, nh, hd, 0, inv), 0);
	assert_memory_equal(y, x, sizeof(float) * nh * hd);
	free(x); free(y); free(ref);
}

/* ---------------------------------------------------------------- attention */

/* the reference with soft-capping (cap > 0) and a sliding window (win > 0:
 * query i sees keys j with i - j < win) */
static void attn_ref_ex(double *out, const float *q, const float *k, const float *v, int64_t T,
                        int64_t nh, int64_t nkv, int64_t hd, double scale, double cap, int64_t win)
{
	double *s = malloc(sizeof(double) * T);
	for (int64_t h = 0; h < nh; h++) {
		int64_t g = h / (nh / nkv);
		for (int64_t i = 0; i < T; i++) {
			double m = -INFINITY, z = 0;
			int64_t j0 = win > 0 && i - win + 1 > 0 ? i - win + 1 : 0;
			for (int64_t j = j0; j <= i; j++) {
				double d = 0;
				for (int64_t e = 0; e < hd; e++)
					d += (double)q[i * nh * hd + h * hd + e] * k[j * nkv * hd + g * hd + e];
				s[j] = d * scale;
				if (cap > 0)
					s[j] = cap * tanh(s[j] / cap);
				if (s[j] > m)
					m = s[j];
			}
			for (int64_t j = j0; j <= i; j++)
				z += s[j] = exp(s[j] - m);
			for (int64_t e = 0; e < hd; e++) {
				double o = 0;
				for (int64_t j = j0; j <= i; j++)
					o += s[j] / z * v[j * nkv * hd + g * hd + e];
				out[i * nh * hd + h * hd + e] = o;
			}
		}
	}
	free(s);
}

static void attn_ref(double *out, const float *q, const float *k, const float *v, int64_t T,
                     int64_t nh, int64_t nkv, int64_t hd, double scale)
{
	attn_ref_ex(out, q, k, v, T, nh, nkv, hd, scale, 0, 0);
}

/* soft-capping and sliding windows, whole sequences and after a cache;
 * without either the bits of qk_attention_kv */
static void test_attention_ex(void **state)
{
	(void)state;
	qc_rng r;
	qc_rng_seed(&r, 61);
	struct { int64_t past, T, nh, nkv, hd, win; double cap; } cs[] = {
		{ 0, 40, 4, 2, 8, 7, 0 }, { 0, 300, 4, 1, 16, 100, 5 }, { 25, 9, 2, 2, 8, 10, 2 },
		{ 150, 140, 3, 3, 4, 64, 0 }, { 0, 33, 2, 1, 8, 0, 3 }, { 5, 4, 2, 1, 8, 3, 0 },
	};
	for (size_t c = 0; c < sizeof cs / sizeof cs[0]; c++) {
		int64_t P = cs[c].past, T = cs[c].T, N = P + T, nh = cs[c].nh, nkv = cs[c].nkv;
		int64_t hd = cs[c].hd, qs = nh * hd;
		/* large logits, so that capping matters */
		float *q = randv(&r, N * qs, 3), *k = randv(&r, N * nkv * hd, 3);
		float *v = randv(&r, N * nkv * hd, 1), *o = malloc(sizeof(float) * T * qs);
		float *o2 = malloc(sizeof(float) * T * qs);
		double *ref = malloc(sizeof(double) * N * qs), *ref0 = malloc(sizeof(double) * N * qs);
		double scale = 1 / sqrt((double)hd);
		attn_ref_ex(ref, q, k, v, N, nh, nkv, hd, scale, cs[c].cap, cs[c].win);
		attn_ref(ref0, q, k, v, N, nh, nkv, hd, scale);
		qk_attn a = { (float)scale, (float)cs[c].cap, cs[c].win };
		tu_assert_rc(qk_attention_ex(ctx2, o, q + P * qs, k, v, T, P, nh, nkv, hd, &a), 0);
		assert_true(relerr(o, ref + P * qs, T * qs) < TOL_F32);
		/* the options change the result (a test of them that can fail) */
		assert_true(relerr(o, ref0 + P * qs, T * qs) > 1e-3);
		tu_assert_rc(qk_attention_ex(ctx1, o2, q + P * qs, k, v, T, P, nh, nkv, hd, &a), 0);
		assert_memory_equal(o, o2, sizeof(float) * T * qs);
		qk_attn plain = { (float)scale, 0, 0 };
		tu_assert_rc(qk_attention_ex(ctx2, o, q + P * qs, k, v, T, P, nh, nkv, hd, &plain), 0);
		tu_assert_rc(qk_attention_kv(ctx2, o2, q + P * qs, k, v, T, P, nh, nkv, hd, (float)scale), 0);
		assert_memory_equal(o, o2, sizeof(float) * T * qs);
		free(q); free(k); free(v); free(o); free(o2); free(ref); free(ref0);
	}
	float z = 0;
	qk_attn bad = { 1, 0, -1 };
	tu_assert_rc(qk_attention_ex(ctx1, &z, &z, &z, &z, 1, 0, 1, 1, 2, &bad), QC_EINVAL);
	bad.window = 0;
	bad.softcap = -1;
	tu_assert_rc(qk_attention_ex(ctx1, &z, &z, &z, &z, 1, 0, 1, 1, 2, &bad), QC_EINVAL);
}

static void test_attention(void **state)
{
	(void)state;
	qc_rng r;
	qc_rng_seed(&r, 6);
	/* T over one query block (128) exercises the blocked causal path */
	struct { int64_t T, nh, nkv, hd; } cs[] = { { 1, 2, 2, 8 }, { 19, 4, 2, 8 }, { 300, 4, 1, 16 },
	                                             { 130, 3, 3, 4 } };
	for (size_t c = 0; c < sizeof cs / sizeof cs[0]; c++) {
		int64_t T = cs[c].T, nh = cs[c].nh, nkv = cs[c].nkv, hd = cs[c].hd;
		float *q = randv(&r, T * nh * hd, 1), *k = randv(&r, T * nkv * hd, 1);
		float *v = randv(&r, T * nkv * hd, 1), *o = malloc(sizeof(float) * T * nh * hd);
		double *ref = malloc(sizeof(double) * T * nh * hd);
		double scale = 1 / sqrt((double)hd);
		attn_ref(ref, q, k, v, T, nh, nkv, hd, scale);
		tu_assert_rc(qk_attention(ctx2, o, q, k, v, T, nh, nkv, hd, (float)scale), 0);
		assert_true(relerr(o, ref, T * nh * hd) < TOL_F32);
		free(q); free(k); free(v); free(o); free(ref);
	}
	float z = 0;
	tu_assert_rc(qk_attention(ctx1, &z, &z, &z, &z, 1, 3, 2, 4, 1), QC_EINVAL);
}

/* T new rows after `past` cached keys: the last T rows of the whole
 * sequence's attention (the reference over past + T rows) */
static void test_attention_kv(void **state)
{
	(void)state;
	qc_rng r;
	qc_rng_seed(&r, 16);
	struct { int64_t past, T, nh, nkv, hd; } cs[] = { { 0, 5, 2, 2, 8 }, { 7, 1, 4, 2, 8 },
	                                                   { 40, 3, 4, 1, 16 }, { 200, 140, 3, 3, 4 } };
	for (size_t c = 0; c < sizeof cs / sizeof cs[0]; c++) {
		int64_t P = cs[c].past, T = cs[c].T, N = P + T, nh = cs[c].nh, nkv = cs[c].nkv;
		int64_t hd = cs[c].hd, qs = nh * hd;
		float *q = randv(&r, N * qs, 1), *k = randv(&r, N * nkv * hd, 1);
		float *v = randv(&r, N * nkv * hd, 1), *o = malloc(sizeof(float) * T * qs);
		double *ref = malloc(sizeof(double) * N * qs);
		double scale = 1 / sqrt((double)hd);
		attn_ref(ref, q, k, v, N, nh, nkv, hd, scale);
		tu_assert_rc(qk_attention_kv(ctx2, o, q + P * qs, k, v, T, P, nh, nkv, hd, (float)scale), 0);
		assert_true(relerr(o, ref + P * qs, T * qs) < TOL_F32);
		free(q); free(k); free(v); free(o); free(ref);
	}
	float z = 0;
	tu_assert_rc(qk_attention_kv(ctx1, &z, &z, &z, &z, 1, -1, 2, 2, 4, 1), QC_EINVAL);
}

/* ---------------------------------------------------------------- W4A16 Linear */

/* plain reference: dequantize each weight, sum in double */
static void linear_q4_ref(double *y, const float *x, const uint8_t *q, const float *s,
                          const float *z, const float *b, int64_t T, int64_t in, int64_t out,
                          int64_t group, const float *y0)
{
	int64_t ng = in / group;
	for (int64_t t = 0; t < T; t++)
		for (int64_t o = 0; o < out; o++) {
			double a = y0 ? y0[t * out + o] : 0;
			for (int64_t i = 0; i < in; i++) {
				uint8_t byte = q[o * (in / 2) + i / 2];
				int u = i % 2 ? byte >> 4 : byte & 15;
				double zz = z ? z[o * ng + i / group] : 8;
				a += (u - zz) * s[o * ng + i / group] * x[t * in + i];
			}
			y[t * out + o] = a + (b ? b[o] : 0);
		}
}

static void test_linear_q4(void **state)
{
	(void)state;
	qc_rng r;
	qc_rng_seed(&r, 44);
	struct { int64_t T, in, out, group; int zp, bias, acc; } cs[] = {
		{ 1, 64, 37, 16, 0, 0, 0 }, { 1, 96, 70, 32, 1, 1, 1 }, { 3, 128, 33, 128, 1, 0, 0 },
		{ 4, 64, 100, 64, 0, 1, 0 }, { 9, 96, 75, 32, 1, 1, 1 }, { 40, 64, 64, 16, 0, 0, 1 },
		{ 2, 256, 90, 64, 1, 1, 0 }, { 1, 2048, 130, 128, 1, 0, 1 }, { 1, 96, 65, 96, 0, 0, 0 },
	};
	for (size_t c = 0; c < sizeof cs / sizeof cs[0]; c++) {
		int64_t T = cs[c].T, in = cs[c].in, out = cs[c].out, g = cs[c].group, ng = in / g;
		float *x = randv(&r, T * in, 1), *s = randv(&r, out * ng, 0.1f);
		float *z = cs[c].zp ? malloc(sizeof(float) * out * ng) : NULL;
		float *b = cs[c].bias ? randv(&r, out, 1) : NULL;
		float *y = randv(&r, T * out, 1), *y0 = malloc(sizeof(float) * T * out);
		memcpy(y0, y, sizeof(float) * T * out);
		uint8_t *q = malloc((size_t)(out * in / 2));
		for (int64_t i = 0; i < out * in / 2; i++)
			q[i] = (uint8_t)qc_rng_below(&r, 256);
		for (int64_t i = 0; z && i < out * ng; i++)
			z[i] = (float)qc_rng_below(&r, 16);
		double *ref = malloc(sizeof(double) * T * out);
		linear_q4_ref(ref, x, q, s, z, b, T, in, out, g, cs[c].acc ? y0 : NULL);
		/* every path of the decoding rows this CPU has (plain, AVX2, AVX2
		 * and AVX-512 on x in nibble order), then the default */
		for (int path = 0; path <= 4; path++) {
			if (path < 4 && qk_cpu_q4_path(path) != path)
				continue;
			if (path == 4)
				qk_cpu_q4_path(-1);
			memcpy(y, y0, sizeof(float) * T * out);
			tu_assert_rc(qk_linear_q4(ctx2, y, x, q, s, z, b, T, in, out, g, cs[c].acc), 0);
			if (!(relerr(y, ref, T * out) < TOL_F32))
				fail_msg("case %zu, path %d: relative error %g", c, path,
				         relerr(y, ref, T * out));
		}
		free(x); free(s); free(z); free(b); free(y); free(y0); free(q); free(ref);
	}
	float f = 0;
	uint8_t u = 0;
	tu_assert_rc(qk_linear_q4(ctx1, &f, &f, &u, &f, NULL, NULL, 1, 6, 1, 4, 0), QC_EINVAL);
	tu_assert_rc(qk_linear_q4(ctx1, &f, &f, &u, &f, NULL, NULL, 1, 5, 1, 5, 0), QC_EINVAL);
}

/* ---------------------------------------------------------------- BF16 Linear */

static void test_linear_bf16(void **state)
{
	(void)state;
	qc_rng r;
	qc_rng_seed(&r, 45);
	/* in: multiples of 16, a tail of 1..15 (the vector path's plain finish) */
	struct { int64_t T, in, out; int bias, acc; } cs[] = {
		{ 1, 64, 37, 0, 0 }, { 1, 37, 300, 1, 1 }, { 2, 2048, 70, 0, 0 },
		{ 4, 15, 9, 1, 0 }, { 1, 1000, 777, 1, 0 }, { 3, 80, 513, 0, 1 },
	};
	for (size_t c = 0; c < sizeof cs / sizeof cs[0]; c++) {
		int64_t T = cs[c].T, in = cs[c].in, out = cs[c].out;
		float *x = randv(&r, T * in, 1), *wf = randv(&r, out * in, 0.1f);
		float *b = cs[c].bias ? randv(&r, out, 1) : NULL;
		float *y = randv(&r, T * out, 1), *y0 = malloc(sizeof(float) * T * out);
		memcpy(y0, y, sizeof(float) * T * out);
		uint16_t *w = malloc(sizeof(uint16_t) * out * in);
		for (int64_t i = 0; i < out * in; i++)
			w[i] = qc_f32_to_bf16(wf[i]);
		double *ref = malloc(sizeof(double) * T * out);
		for (int64_t t = 0; t < T; t++)
			for (int64_t o = 0; o < out; o++) {
				double a = cs[c].acc ? y0[t * out + o] : 0;
				for (int64_t i = 0; i < in; i++)
					a += (double)qc_bf16_to_f32(w[o * in + i]) * x[t * in + i];
				ref[t * out + o] = a + (b ? b[o] : 0);
			}
		tu_assert_rc(qk_linear_bf16(ctx2, y, x, w, b, T, in, out, cs[c].acc), 0);
		if (!(relerr(y, ref, T * out) < TOL_F32))
			fail_msg("case %zu: relative error %g", c, relerr(y, ref, T * out));
		/* each path of one row's product, plain and vector, on its own */
		for (int simd = 0; simd < 2; simd++) {
			double a = 0;
			for (int64_t i = 0; i < in; i++)
				a += (double)qc_bf16_to_f32(w[i]) * x[i];
			float d = qk_cpu_bf16_dot(w, x, in, simd);
			if (!(fabs(d - a) <= 1e-5 * (fabs(a) + 1)))
				fail_msg("case %zu, simd %d: %.9g against %.9g", c, simd, d, a);
		}
		free(x); free(wf); free(b); free(y); free(y0); free(w); free(ref);
	}
	float f = 0;
	uint16_t u = 0;
	tu_assert_rc(qk_linear_bf16(ctx1, &f, &f, &u, NULL, 1, 0, 1, 0), QC_EINVAL);
	tu_assert_rc(qk_linear_bf16(ctx1, &f, &f, &u, NULL, -1, 1, 1, 0), QC_EINVAL);
}

/* ---------------------------------------------------------------- log-softmax, NLL */

static void test_logsoftmax(void **state)
{
	(void)state;
	qc_rng r;
	qc_rng_seed(&r, 7);
	const int64_t T = 13, V = 1000;
	float *x = randv(&r, T * V, 5), *y = malloc(sizeof(float) * T * V);
	x[5] = 80.0f;                    /* a dominant logit must not overflow */
	double *ref = malloc(sizeof(double) * T * V), nll[13], want[13];
	int32_t tgt[13];
	for (int64_t t = 0; t < T; t++) {
		double m = -INFINITY, s = 0;
		for (int64_t i = 0; i < V; i++)
			m = fmax(m, x[t * V + i]);
		for (int64_t i = 0; i < V; i++)
			s += exp(x[t * V + i] - m);
		for (int64_t i = 0; i < V; i++)
			ref[t * V + i] = x[t * V + i] - m - log(s);
		tgt[t] = (int32_t)((t * 77) % V);
		want[t] = -ref[t * V + tgt[t]];
	}
	tu_assert_rc(qk_nll(ctx2, nll, x, tgt, T, V), 0);
	for (int64_t t = 0; t < T; t++)
		assert_true(fabs(nll[t] - want[t]) < 1e-9 * (1 + fabs(want[t])));
	tu_assert_rc(qk_log_softmax(ctx2, y, x, T, V), 0);
	for (int64_t i = 0; i < T * V; i++)
		assert_true(fabs(y[i] - ref[i]) <= 1e-6 * (1 + fabs(ref[i])));
	tgt[3] = (int32_t)V;
	tu_assert_rc(qk_nll(ctx2, nll, x, tgt, T, V), QC_EINVAL);
	free(x); free(y); free(ref);
}

static void test_softmax_fold(void **state)
{
	(void)state;
	/* blocks of uneven widths against whole rows in double */
	qc_rng r;
	qc_rng_seed(&r, 11);
	const int64_t T = 9, V = 1000;
	float *z = randv(&r, T * V, 4), *z2 = randv(&r, T * V, 4);
	for (int64_t i = 0; i < T * V; i++)
		z2[i] = z[i] + 0.3f * z2[i] / 4;       /* a nearby second model */
	z[2 * V + 700] = 40.0f;                    /* a late maximum rescales the sums */
	z[3 * V + 10] = z[3 * V + 900] = 30.0f;    /* a tie: the lowest column wins */
	int32_t tgt[9] = { 0, 999, 700, 10, 500, -1, 3, 250, 251 };
	qk_rowstat a[9], b[9];
	qk_rowstat_init(a, T);
	qk_rowstat_init(b, T);
	int64_t cuts[] = { 0, 1, 100, 400, 999, 1000 };
	for (int k = 0; k + 1 < 6; k++) {
		int64_t c0 = cuts[k], n = cuts[k + 1] - c0;
		/* block [T, n] with row stride V: straight out of the full rows */
		tu_assert_rc(qk_softmax_fold(ctx2, a, z + c0, z2 + c0, V, T, n, c0, tgt), 0);
		tu_assert_rc(qk_softmax_fold(ctx1, b, z2 + c0, NULL, V, T, n, c0, tgt), 0);
	}
	for (int64_t t = 0; t < T; t++) {
		const float *x = z + t * V, *y = z2 + t * V;
		double m = -INFINITY, m2 = -INFINITY, s = 0, s2 = 0;
		int64_t arg = 0;
		for (int64_t v = 0; v < V; v++) {
			if (x[v] > x[arg])
				arg = v;
			m = fmax(m, x[v]);
			m2 = fmax(m2, y[v]);
		}
		for (int64_t v = 0; v < V; v++) {
			s += exp(x[v] - m);
			s2 += exp(y[v] - m2);
		}
		double lse = m + log(s), lse2 = m2 + log(s2), kl = 0;
		for (int64_t v = 0; v < V; v++)
			kl += exp(x[v] - lse) * ((x[v] - lse) - (y[v] - lse2));
		double got_lse = a[t].max + log(a[t].sum), got_lse2 = b[t].max + log(b[t].sum);
		assert_true(fabs(got_lse - lse) < 1e-12 * fabs(lse) + 1e-12);
		assert_true(fabs(got_lse2 - lse2) < 1e-12 * fabs(lse2) + 1e-12);
		assert_int_equal(a[t].arg, arg);
		double got_kl = a[t].cross / a[t].sum - got_lse + got_lse2;
		assert_true(fabs(got_kl - kl) < 1e-9 * kl + 1e-12);
		if (tgt[t] >= 0)
			assert_true(a[t].target == x[tgt[t]] && b[t].target == y[tgt[t]]);
		else
			assert_true(isnan(a[t].target));
	}
	assert_int_equal(a[3].arg, 10);
	/* the same logits on both sides: KL exactly 0 */
	qk_rowstat c[9], d[9];
	qk_rowstat_init(c, T);
	qk_rowstat_init(d, T);
	tu_assert_rc(qk_softmax_fold(ctx2, c, z, z, V, T, V, 0, NULL), 0);
	tu_assert_rc(qk_softmax_fold(ctx2, d, z, NULL, V, T, V, 0, NULL), 0);
	for (int64_t t = 0; t < T; t++)
		assert_true(c[t].cross / c[t].sum - (c[t].max + log(c[t].sum)) + (d[t].max + log(d[t].sum)) == 0.0);
	free(z); free(z2);
}

/* ---------------------------------------------------------------- activation quantization */

static void test_actq_int8(void **state)
{
	(void)state;
	/* per token: amax 1 -> s = 1/127; x*127 = 63.5 (tie -> 64, even),
	 * -127, 31.75 -> 32, 16.002 -> 16; a zero row stays zero */
	float x[8] = { 0.5f, -1.0f, 0.25f, 0.126f, 0, 0, 0, 0 };
	qk_actq q = { QK_ACTQ_INT8_TOKEN, 0, 0 };
	tu_assert_rc(qk_actq_apply(ctx1, x, 2, 4, &q), 0);
	float s = 1.0f / 127.0f;
	assert_true(x[0] == 64 * s && x[1] == -127 * s && x[2] == 32 * s && x[3] == 16 * s);
	for (int i = 4; i < 8; i++)
		assert_true(x[i] == 0.0f);
	/* 2.5 * 127 / 2.5... a tie that rounds down to even: amax 127 -> s = 1,
	 * 2.5 -> 2, 3.5 -> 4, -0.5 -> -0 */
	float y[4] = { 127.0f, 2.5f, 3.5f, -0.5f };
	tu_assert_rc(qk_actq_apply(ctx1, y, 1, 4, &q), 0);
	assert_true(y[0] == 127 && y[1] == 2 && y[2] == 4 && y[3] == 0);
	/* static with zero point: s = 0.5, z = 10: x/s = 250 -> 260 saturates to
	 * 127 -> (127-10)*0.5 = 58.5; -3 -> -6+10 = 4 -> -3; -70 -> -140+10 =
	 * -130 -> -128 -> -69 */
	float w[3] = { 125.0f, -3.0f, -70.0f };
	q = (qk_actq){ QK_ACTQ_INT8_TENSOR, 0.5f, 10 };
	tu_assert_rc(qk_actq_apply(ctx1, w, 1, 3, &q), 0);
	assert_true(w[0] == 58.5f && w[1] == -3.0f && w[2] == -69.0f);
	q.scale = 0;
	tu_assert_rc(qk_actq_apply(ctx1, w, 1, 3, &q), QC_EINVAL);
	q = (qk_actq){ QK_ACTQ_INT8_TENSOR, 1.0f, 300 };
	tu_assert_rc(qk_actq_apply(ctx1, w, 1, 3, &q), QC_EINVAL);
}

static void test_actq_fp8(void **state)
{
	(void)state;
	/* per token, amax 448 -> s = 1: 300 lies between E4M3 values 288 and
	 * 320 (step 32 in [256, 448]) -> 288; 17 between 16 and 18 -> tie to
	 * even mantissa 16; -448 exact */
	float x[3] = { 300.0f, 17.0f, -448.0f };
	qk_actq q = { QK_ACTQ_FP8_TOKEN, 0, 0 };
	tu_assert_rc(qk_actq_apply(ctx1, x, 1, 3, &q), 0);
	assert_true(x[0] == 288.0f && x[1] == 16.0f && x[2] == -448.0f);
	/* a tiny row uses the minimum scale 1/(448*512) */
	float t[2] = { 1e-9f, 0 };
	tu_assert_rc(qk_actq_apply(ctx1, t, 1, 2, &q), 0);
	float smin = 1.0f / (448.0f * 512.0f);
	float want = qc_fp8e4m3_to_f32(qc_f32_to_fp8e4m3(1e-9f / smin)) * smin;
	assert_true(t[0] == want && t[1] == 0.0f);
	/* static: s = 2 -> 1000/2 = 500 clamps to 448 -> 896; 3 -> 1.5 -> 3 */
	float y[2] = { 1000.0f, 3.0f };
	q = (qk_actq){ QK_ACTQ_FP8_TENSOR, 2.0f, 0 };
	tu_assert_rc(qk_actq_apply(ctx1, y, 1, 2, &q), 0);
	assert_true(y[0] == 896.0f && y[1] == 3.0f);
	/* NONE leaves data alone */
	q.kind = QK_ACTQ_NONE;
	tu_assert_rc(qk_actq_apply(ctx1, y, 1, 2, &q), 0);
	assert_true(y[0] == 896.0f);
}

static void test_actq_ref(void **state)
{
	(void)state;
	/* random rows against a direct formula, and 1 vs 2 threads bit for bit */
	qc_rng r;
	qc_rng_seed(&r, 8);
	const int64_t T = 50, D = 64;
	float *x = randv(&r, T * D, 2), *a = malloc(sizeof(float) * T * D), *b = malloc(sizeof(float) * T * D);
	qk_actq q = { QK_ACTQ_INT8_TOKEN, 0, 0 };
	memcpy(a, x, sizeof(float) * T * D);
	memcpy(b, x, sizeof(float) * T * D);
	tu_assert_rc(qk_actq_apply(ctx1, a, T, D, &q), 0);
	tu_assert_rc(qk_actq_apply(ctx2, b, T, D, &q), 0);
	assert_memory_equal(a, b, sizeof(float) * T * D);
	for (int64_t t = 0; t < T; t++) {
		float amax = 0;
		for (int64_t i = 0; i < D; i++)
			amax = fmaxf(amax, fabsf(x[t * D + i]));
		for (int64_t i = 0; i < D; i++) {
			/* |error| at most half a step, and the value is on the grid */
			float v = a[t * D + i], step = amax / 127.0f;
			assert_true(fabsf(v - x[t * D + i]) <= 0.5f * step * (1 + 1e-5f));
			float k = v / step;
			assert_true(fabsf(k - nearbyintf(k)) < 1e-3f);
		}
	}
	free(x); free(a); free(b);
}

/* ---------------------------------------------------------------- dequantization */

static void test_dequant(void **state)
{
	(void)state;
	/* int4 codes, 2 rows x 5 cols, group 2 (3 groups, last partial), with
	 * zero points: w = (q - z) * s */
	int8_t codes[10] = { -8, 7, 0, 1, -1, 3, 2, -5, 6, 4 };
	float sc[6] = { 0.5f, 0.25f, 2.0f, 1.0f, 0.125f, 4.0f };
	float zp[6] = { 0, 1, -2, 3, 0, 1 };
	float w[10];
	tu_assert_rc(qk_dequant(ctx1, w, codes, QC_DT_I8, 2, 5, sc, zp, 3, 2), 0);
	float want[10] = { -4, 3.5f, -0.25f, 0, 2, 0, -1, -0.625f, 0.75f, 12 };
	for (int i = 0; i < 10; i++)
		assert_true(w[i] == want[i]);
	/* channel (scale per row), symmetric */
	float cs[2] = { 2, 3 };
	tu_assert_rc(qk_dequant(ctx2, w, codes, QC_DT_I8, 2, 5, cs, NULL, 1, 5), 0);
	assert_true(w[0] == -16 && w[4] == -2 && w[5] == 9 && w[9] == 12);
	/* tensor scale, fp8 codes: 0x38 = 1.0, 0xB8 = -1.0, 0x7E = 448 */
	uint8_t f8[3] = { 0x38, 0xB8, 0x7E };
	float ts = 0.5f;
	tu_assert_rc(qk_dequant(ctx1, w, f8, QC_DT_F8_E4M3, 1, 3, &ts, NULL, 0, 3), 0);
	assert_true(w[0] == 0.5f && w[1] == -0.5f && w[2] == 224.0f);
	tu_assert_rc(qk_dequant(ctx1, w, f8, QC_DT_I32, 1, 3, &ts, NULL, 0, 3), QC_EUNSUPPORTED);
}

/* ---------------------------------------------------------------- GPTQ support */

static void test_hessian(void **state)
{
	(void)state;
	qc_rng r;
	qc_rng_seed(&r, 9);
	const int64_t T = 70, n = 33;
	float *X = randv(&r, T * n, 1), *H = calloc((size_t)(n * n), sizeof(float));
	double *ref = calloc((size_t)(n * n), sizeof(double));
	/* two batches accumulate; alpha 2 as GPTQ's H = 2 X^T X */
	tu_assert_rc(qk_hessian_accum(ctx2, H, X, 40, n, 2.0f), 0);
	tu_assert_rc(qk_hessian_accum(ctx2, H, X + 40 * n, T - 40, n, 2.0f), 0);
	tu_assert_rc(qk_sym_upper(ctx2, H, n), 0);
	for (int64_t i = 0; i < n; i++)
		for (int64_t j = 0; j < n; j++) {
			double s = 0;
			for (int64_t t = 0; t < T; t++)
				s += 2.0 * X[t * n + i] * X[t * n + j];
			ref[i * n + j] = s;
		}
	assert_true(relerr(H, ref, n * n) < TOL_F32);
	for (int64_t i = 0; i < n; i++)
		for (int64_t j = 0; j < n; j++)
			assert_true(H[i * n + j] == H[j * n + i]);
	free(X); free(H); free(ref);
}

static void test_cholesky(void **state)
{
	(void)state;
	qc_rng r;
	qc_rng_seed(&r, 10);
	const int64_t n = 40;
	float *B = randv(&r, n * n, 1), *A = malloc(sizeof(float) * n * n), *U = malloc(sizeof(float) * n * n);
	/* A = B B^T + n I: symmetric positive definite */
	for (int64_t i = 0; i < n; i++)
		for (int64_t j = 0; j < n; j++) {
			double s = i == j ? n : 0;
			for (int64_t k = 0; k < n; k++)
				s += (double)B[i * n + k] * B[j * n + k];
			A[i * n + j] = (float)s;
		}
	for (int upper = 0; upper < 2; upper++) {
		memcpy(U, A, sizeof(float) * n * n);
		tu_assert_rc(qk_cholesky(ctx2, U, n, upper), 0);
		double *re = malloc(sizeof(double) * n * n), *eye = malloc(sizeof(double) * n * n);
		for (int64_t i = 0; i < n; i++)
			for (int64_t j = 0; j < n; j++) {
				/* the other triangle is zero */
				if (upper ? j < i : j > i)
					assert_true(U[i * n + j] == 0.0f);
				double s = 0;
				for (int64_t k = 0; k < n; k++)  /* U^T U or L L^T */
					s += upper ? (double)U[k * n + i] * U[k * n + j]
					           : (double)U[i * n + k] * U[j * n + k];
				re[i * n + j] = s;
			}
		float *Af = A;
		assert_true(relerr(Af, re, n * n) < 1e-5);
		/* triangular inverse: F * F^-1 = I */
		float *Fi = malloc(sizeof(float) * n * n);
		memcpy(Fi, U, sizeof(float) * n * n);
		tu_assert_rc(qk_tri_inverse(ctx2, Fi, n, upper), 0);
		for (int64_t i = 0; i < n; i++)
			for (int64_t j = 0; j < n; j++) {
				double s = 0;
				for (int64_t k = 0; k < n; k++)
					s += (double)U[i * n + k] * Fi[k * n + j];
				eye[i * n + j] = s;
			}
		for (int64_t i = 0; i < n; i++)
			for (int64_t j = 0; j < n; j++)
				assert_true(fabs(eye[i * n + j] - (i == j)) < 1e-5);
		free(re); free(eye); free(Fi);
	}
	/* not positive definite: a negative diagonal entry at minor 3 */
	memcpy(U, A, sizeof(float) * n * n);
	U[2 * n + 2] = -1.0f;
	tu_assert_rc(qk_cholesky(ctx1, U, n, 1), QC_ENUMERIC);
	assert_non_null(strstr(qc_errmsg(), "not positive definite"));
	memcpy(U, A, sizeof(float) * n * n);
	U[5] = NAN;
	tu_assert_rc(qk_cholesky(ctx1, U, n, 1), QC_ENUMERIC);
	/* singular triangle */
	float Z[4] = { 1, 2, 0, 0 };
	tu_assert_rc(qk_tri_inverse(ctx1, Z, 2, 1), QC_ENUMERIC);
	free(B); free(A); free(U);
}

/* ---------------------------------------------------------------- reductions, storage dtypes */

/* qk_absmax, qk_sumsq, qk_sub, qk_copy, qk_diff_sumsq: serial index-order
 * loops, so the plain references here give the same bits */
static void test_reduce(void **state)
{
	(void)state;
	qc_rng r;
	qc_rng_seed(&r, 11);
	const size_t n = 1001;
	float *a = randv(&r, n, 2), *b = randv(&r, n, 1), *d = malloc(n * sizeof *d);
	a[17] = -9.5f;
	float am = 0.5f;
	tu_assert_rc(qk_absmax(ctx2, a, n, &am), 0);
	float ram = 0.5f;
	for (size_t i = 0; i < n; i++)
		ram = fabsf(a[i]) > ram ? fabsf(a[i]) : ram;
	assert_true(am == ram && am == 9.5f);
	double ss = 1.0, rs = 0;
	tu_assert_rc(qk_sumsq(ctx2, a, n, &ss), 0);
	for (size_t i = 0; i < n; i++)
		rs += (double)a[i] * a[i];
	assert_true(ss == 1.0 + rs);
	tu_assert_rc(qk_sub(ctx2, d, a, b, n), 0);
	for (size_t i = 0; i < n; i++)
		assert_true(d[i] == a[i] - b[i]);
	tu_assert_rc(qk_copy(ctx2, d, b, n * sizeof *d), 0);
	assert_memory_equal(d, b, n * sizeof *d);
	/* running sums: one call or several give the same bits as one loop */
	double rd = 0.25, rb = 0.5;
	for (size_t i = 0; i < n; i++) {
		double e = (double)a[i] - (double)b[i];
		rd += e * e;
		rb += (double)b[i] * b[i];
	}
	double d2 = 0.25, b2 = 0.5;
	tu_assert_rc(qk_diff_sumsq(ctx2, a, b, n, &d2, &b2), 0);
	assert_true(d2 == rd && b2 == rb);
	d2 = 0.25, b2 = 0.5;
	tu_assert_rc(qk_diff_sumsq(ctx1, a, b, 300, &d2, &b2), 0);
	tu_assert_rc(qk_diff_sumsq(ctx1, a + 300, b + 300, n - 300, &d2, &b2), 0);
	assert_true(d2 == rd && b2 == rb);
	free(a); free(b); free(d);
}

static void test_nonfinite(void **state)
{
	(void)state;
	const size_t n = 777;
	float *x = calloc(n, sizeof *x);
	for (size_t i = 0; i < n; i++)
		x[i] = (float)i - 300.0f;
	int64_t first = 5;
	tu_assert_rc(qk_nonfinite(ctx2, x, n, &first), 0);
	assert_int_equal(first, -1);
	const float bad[] = { NAN, -NAN, INFINITY, -INFINITY };
	const size_t at[] = { 0, 8, 333, n - 1 };
	for (size_t k = 0; k < 4; k++)
		for (size_t p = 0; p < 4; p++) {
			float keep = x[at[p]];
			x[at[p]] = bad[k];
			if (p < 3)
				x[n - 1] = bad[(k + 1) % 4];   /* a later one is not the first */
			tu_assert_rc(qk_nonfinite(ctx1, x, n, &first), 0);
			/* reference: the plain scan */
			int64_t ref = -1;
			for (size_t i = 0; i < n && ref < 0; i++)
				if (!isfinite(x[i]))
					ref = (int64_t)i;
			assert_int_equal(first, ref);
			assert_int_equal(first, (int64_t)at[p]);
			x[at[p]] = keep;
			x[n - 1] = (float)(n - 1) - 300.0f;
		}
	tu_assert_rc(qk_nonfinite(ctx1, x, 0, &first), 0);
	assert_int_equal(first, -1);
	free(x);
}

/* plain round-to-nearest-even FP32 -> BF16 on the bits: the reference for
 * qk_bf16_store (quiet NaN of the same sign and top payload) */
static uint16_t ref_bf16(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	if ((u & 0x7fffffffu) > 0x7f800000u)
		return (uint16_t)((u >> 16) | 0x0040u);
	uint32_t lsb = (u >> 16) & 1u;
	return (uint16_t)((u + 0x7fffu + lsb) >> 16);
}

static float ref_bf16_to_f32(uint16_t h)
{
	uint32_t u = (uint32_t)h << 16;
	float f;
	memcpy(&f, &u, 4);
	return f;
}

static void test_bf16(void **state)
{
	(void)state;
	qc_rng r;
	qc_rng_seed(&r, 12);
	/* past the threads' minimum block: both contexts split it */
	const size_t n = 200003;
	float *x = malloc(n * sizeof *x), *back = malloc(n * sizeof *back);
	uint16_t *h = malloc(n * 2);
	for (size_t i = 0; i < n; i++) {
		uint32_t u = (uint32_t)qc_rng_u64(&r);
		memcpy(&x[i], &u, 4);   /* every bit pattern: NaNs, Infs, subnormals, ties */
	}
	const float edge[] = { 0.0f, -0.0f, 1.0f, 0x1.ffp127f, -0x1.ffp127f, 0x1.fep127f,
		                   1.00390625f /* tie, rounds to even (down) */,
		                   1.01171875f /* tie, rounds to even (up) */, 1e-45f, INFINITY, NAN };
	memcpy(x, edge, sizeof edge);
	for (int c = 0; c < 2; c++) {
		qk_ctx *k = c ? ctx2 : ctx1;
		memset(h, 0xAB, n * 2);
		tu_assert_rc(qk_bf16_store(k, h, x, n), 0);
		for (size_t i = 0; i < n; i++)
			if (h[i] != ref_bf16(x[i]))
				fail_msg("bf16 store of %a (0x%08x): 0x%04x, expected 0x%04x", (double)x[i],
				         (unsigned)((uint32_t *)x)[i], h[i], ref_bf16(x[i]));
		tu_assert_rc(qk_bf16_load(k, back, h, n), 0);
		for (size_t i = 0; i < n; i++) {
			float e = ref_bf16_to_f32(h[i]);
			assert_memory_equal(&back[i], &e, 4);
		}
	}
	/* and exactly what qc_num does */
	for (size_t i = 0; i < n; i++)
		assert_int_equal(h[i], qc_f32_to_bf16(x[i]));
	free(x); free(back); free(h);
}

/* plain FP8 E4M3FN round to nearest even of a finite |v| <= 448, in double
 * (every step is a power of two, so v / step is exact) */
static double ref_e4m3(double v)
{
	double a = fabs(v);
	if (a == 0)
		return v;
	int e;
	frexp(a, &e);                       /* a = m 2^e, m in [0.5, 1) */
	int ex = e - 1 < -6 ? -6 : e - 1;   /* normals: 3 mantissa bits; below 2^-6 subnormal */
	double step = ldexp(1.0, ex - 3);
	double q = nearbyint(a / step) * step;
	return copysign(q, v);
}

static void test_fp8_qdq(void **state)
{
	(void)state;
	qc_rng r;
	qc_rng_seed(&r, 13);
	const size_t n = 50001;
	float *x = randv(&r, n, 40), *got = malloc(n * sizeof *got);
	x[0] = 1e6f;            /* clamps to 448 s */
	x[1] = -1e6f;
	x[2] = 0.0f;
	x[3] = -0.0f;
	x[4] = 1e-9f;           /* far below the smallest subnormal: 0 */
	x[5] = NAN;
	const float scales[] = { 1.0f, 0.037f, 3.5f };
	for (size_t k = 0; k < 3; k++) {
		float s = scales[k], inv = 1.0f / s;
		memcpy(got, x, n * sizeof *got);
		tu_assert_rc(qk_fp8_qdq(k ? ctx2 : ctx1, got, n, s), 0);
		for (size_t i = 0; i < n; i++) {
			float v = x[i] * inv;
			if (isnan(v)) {
				assert_true(isnan(got[i]));
				continue;
			}
			v = v > 448.0f ? 448.0f : v < -448.0f ? -448.0f : v;
			float want = (float)ref_e4m3(v) * s;
			if (memcmp(&want, &got[i], 4) != 0)
				fail_msg("fp8 qdq of %a at scale %g: %a, expected %a", (double)x[i], (double)s,
				         (double)got[i], (double)want);
		}
	}
	/* the same as the static FP8 input quantization */
	qk_actq q = { QK_ACTQ_FP8_TENSOR, 0.037f, 0 };
	float *viaq = malloc(n * sizeof *viaq);
	memcpy(viaq, x, n * sizeof *viaq);
	memcpy(got, x, n * sizeof *got);
	tu_assert_rc(qk_actq_apply(ctx2, viaq, 1, (int64_t)n, &q), 0);
	tu_assert_rc(qk_fp8_qdq(ctx2, got, n, 0.037f), 0);
	assert_memory_equal(viaq, got, n * sizeof *got);
	tu_assert_rc(qk_fp8_qdq(ctx1, got, n, 0.0f), QC_EINVAL);
	tu_assert_rc(qk_fp8_qdq(ctx1, got, n, INFINITY), QC_EINVAL);
	free(x); free(got); free(viaq);
}

/* ---------------------------------------------------------------- backend, BLAS threads */

static void test_dispatch(void **state)
{
	(void)state;
	float x = 1;
	double d = 0;
	/* no context: refused by name, never dereferenced */
	tu_assert_rc(qk_gemm(NULL, 0, 0, 1, 1, 1, 1, &x, 1, &x, 1, 0, &x, 1), QC_EINVAL);
	assert_non_null(strstr(qc_errmsg(), "gemm"));
	tu_assert_rc(qk_sumsq(NULL, &x, 1, &d), QC_EINVAL);
	tu_assert_rc(qk_copy(NULL, &x, &x, 0), QC_EINVAL);
	assert_null(qk_alloc(NULL, 16));
	/* each BLAS call runs on its own context's count; making a context
	 * does not change it */
	qk_ctx *c3;
	tu_assert_rc(qk_ctx_new(&c3, QK_DEVICE_CPU, 3), 0);
	float A[64], C[64];
	for (int i = 0; i < 64; i++)
		A[i] = (float)i;
	tu_assert_rc(qk_gemm(ctx2, 0, 1, 8, 8, 8, 1, A, 8, A, 8, 0, C, 8), 0);
	assert_int_equal(openblas_get_num_threads(), 2);
	qk_ctx *c1;
	tu_assert_rc(qk_ctx_new(&c1, QK_DEVICE_CPU, 1), 0);
	assert_int_equal(openblas_get_num_threads(), 2);
	tu_assert_rc(qk_gemm(c3, 0, 1, 8, 8, 8, 1, A, 8, A, 8, 0, C, 8), 0);
	assert_int_equal(openblas_get_num_threads(), 3);
	tu_assert_rc(qk_hessian_accum(ctx1, C, A, 8, 8, 1.0f), 0);
	assert_int_equal(openblas_get_num_threads(), 1);
	tu_assert_rc(qk_gemm(ctx2, 0, 1, 8, 8, 8, 1, A, 8, A, 8, 0, C, 8), 0);
	assert_int_equal(openblas_get_num_threads(), 2);
	qk_ctx_free(c1);
	qk_ctx_free(c3);
}

/* ---------------------------------------------------------------- QK_DEBUG_MEMORY */

/* run touch(p) in a child; the signal that ended it (0: exited normally) */
static int child_signal(void (*touch)(volatile float *), volatile float *p)
{
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* cmocka catches SIGSEGV in the parent's tests; the child must die of it */
		signal(SIGSEGV, SIG_DFL);
		signal(SIGBUS, SIG_DFL);
		touch(p);
		_exit(0);
	}
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	return WIFSIGNALED(st) ? WTERMSIG(st) : 0;
}

static void host_write(volatile float *p) { p[3] = 1.0f; }
static void host_read(volatile float *p) { if (p[0] == 12345.0f) _exit(3); }

static void test_debug_memory(void **state)
{
	(void)state;
	/* g guarded, p plain, whatever the environment of the whole run says */
	const char *env = getenv("QK_DEBUG_MEMORY");
	char *saved = env ? strdup(env) : NULL;
	qk_ctx *g, *p;
	setenv("QK_DEBUG_MEMORY", "1", 1);
	int rc = qk_ctx_new(&g, QK_DEVICE_CPU, 2);
	unsetenv("QK_DEBUG_MEMORY");
	tu_assert_rc(rc, 0);
	tu_assert_rc(qk_ctx_new(&p, QK_DEVICE_CPU, 1), 0);
	if (saved)
		setenv("QK_DEBUG_MEMORY", saved, 1);
	free(saved);
	const size_t n = 5000;
	float *a = qk_alloc(g, n * sizeof *a), *b = qk_alloc(g, n * sizeof *b);
	assert_non_null(a);
	assert_non_null(b);
	assert_int_equal((uintptr_t)a % 64, 0);
	/* kernels reach it; the host only through upload and download */
	float *h = malloc(n * sizeof *h), *back = malloc(n * sizeof *back);
	for (size_t i = 0; i < n; i++)
		h[i] = (float)i - 17.0f;
	tu_assert_rc(qk_upload(g, a, h, n * sizeof *h), 0);
	tu_assert_rc(qk_copy(g, b, a, n * sizeof *a), 0);
	tu_assert_rc(qk_swiglu(g, b, b, a, n), 0);
	/* another (unguarded) context's kernels may use the same memory */
	tu_assert_rc(qk_sub(p, b, b, b, n), 0);
	double ss = 0;
	tu_assert_rc(qk_sumsq(ctx2, b, n, &ss), 0);
	assert_true(ss == 0.0);
	tu_assert_rc(qk_download(g, back, a, n * sizeof *a), 0);
	assert_memory_equal(back, h, n * sizeof *h);
	/* the planted violations: a host write and a host read between kernel
	 * calls fault */
	assert_int_equal(child_signal(host_write, a), SIGSEGV);
	assert_int_equal(child_signal(host_read, b), SIGSEGV);
	/* unguarded memory from a plain context does not */
	float *plain = qk_alloc(p, 64);
	assert_int_equal(child_signal(host_write, plain), 0);
	qk_free(p, plain);
	/* freed through either context */
	qk_free(p, a);
	qk_free(g, b);
	qk_free(g, NULL);
	qk_ctx_free(g);
	qk_ctx_free(p);
	free(h); free(back);
}

/* qk_mem.c: a freed large block comes back, pages and contents kept, to a
 * request it fits (at least half of it); a request it does not fit gets a
 * fresh block; cached bytes never exceed the peak of live bytes minus the
 * live ones (the memory the same calls use without the cache), and a new
 * peak empties the cache; a pointer that is not a large block is left to
 * the caller; qk_alloc's large blocks go through it. */
static void check_big_bound(void)
{
	size_t live, cached, peak;
	qk_cpu_big_stats(&live, &cached, &peak);
	if (!(live + cached <= peak))
		fail_msg("live %zu + cached %zu > peak %zu", live, cached, peak);
}

static void test_big_blocks(void **state)
{
	(void)state;
	const size_t MB = (size_t)1 << 20;
	size_t live0, cached, peak0;
	qk_cpu_big_release();
	qk_cpu_big_stats(&live0, &cached, &peak0);
	assert_int_equal(cached, 0);
	/* a new peak whatever came before */
	size_t base = (peak0 > live0 ? peak0 - live0 : 0) + 64 * MB;
	char *a = qk_cpu_big_alloc(40 * MB), *b = qk_cpu_big_alloc(base);
	assert_non_null(a);
	assert_non_null(b);
	assert_true(((uintptr_t)a & (2 * MB - 1)) == 0);
	memset(a, 0x5a, 40 * MB);
	assert_int_equal(qk_cpu_big_free(a), 1);
	check_big_bound();
	char *c = qk_cpu_big_alloc(36 * MB); /* fits: the same block, as it was */
	assert_ptr_equal(c, a);
	assert_true(c[0] == 0x5a && c[40 * MB - 1] == 0x5a);
	assert_int_equal(qk_cpu_big_free(c), 1);
	char *d = qk_cpu_big_alloc(19 * MB + 40 * MB / 2); /* 39 MB: fits */
	assert_ptr_equal(d, a);
	assert_int_equal(qk_cpu_big_free(d), 1);
	char *e = qk_cpu_big_alloc(18 * MB); /* under half (in 2 MiB pages): a fresh block */
	assert_non_null(e);
	assert_ptr_not_equal(e, a);
	check_big_bound();
	/* a new peak: the cached block goes */
	char *f = qk_cpu_big_alloc(base + 64 * MB);
	assert_non_null(f);
	qk_cpu_big_stats(&live0, &cached, &peak0);
	assert_int_equal(cached, 0);
	assert_int_equal(qk_cpu_big_free(b), 1);
	assert_int_equal(qk_cpu_big_free(e), 1);
	assert_int_equal(qk_cpu_big_free(f), 1);
	check_big_bound();
	/* under the peak, blocks freed are kept; a small pointer is not one */
	qk_cpu_big_stats(&live0, &cached, &peak0);
	assert_true(cached > 0);
	char *g = malloc(64);
	assert_non_null(g);
	assert_int_equal(qk_cpu_big_free(g), 0);
	free(g);
	assert_int_equal(qk_cpu_big_free(NULL), 0);
	/* through qk_alloc: a large block is reused, a small one is not cached */
	if (!qk_guard_requested()) {
		float *h = qk_alloc(ctx1, 48 * MB);
		assert_non_null(h);
		qk_free(ctx1, h);
		float *h2 = qk_alloc(ctx1, 47 * MB);
		assert_ptr_equal(h2, h);
		qk_free(ctx1, h2);
	}
	qk_cpu_big_release();
	qk_cpu_big_stats(&live0, &cached, &peak0);
	assert_int_equal(cached, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ctx),
		cmocka_unit_test(test_big_blocks),
		cmocka_unit_test(test_gemm),
		cmocka_unit_test(test_linear),
		cmocka_unit_test(test_convert),
		cmocka_unit_test(test_rmsnorm),
		cmocka_unit_test(test_swiglu),
		cmocka_unit_test(test_rope_freq),
		cmocka_unit_test(test_rope_apply),
		cmocka_unit_test(test_attention),
		cmocka_unit_test(test_attention_kv),
		cmocka_unit_test(test_attention_ex),
		cmocka_unit_test(test_geglu_softcap_add),
		cmocka_unit_test(test_linear_q4),
		cmocka_unit_test(test_linear_bf16),
		cmocka_unit_test(test_logsoftmax),
		cmocka_unit_test(test_softmax_fold),
		cmocka_unit_test(test_actq_int8),
		cmocka_unit_test(test_actq_fp8),
		cmocka_unit_test(test_actq_ref),
		cmocka_unit_test(test_dequant),
		cmocka_unit_test(test_hessian),
		cmocka_unit_test(test_cholesky),
		cmocka_unit_test(test_reduce),
		cmocka_unit_test(test_nonfinite),
		cmocka_unit_test(test_bf16),
		cmocka_unit_test(test_fp8_qdq),
		cmocka_unit_test(test_dispatch),
		cmocka_unit_test(test_debug_memory),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
