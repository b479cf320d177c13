/*
 * bench_cuda.c - the CUDA backend's operations timed on Llama-3.1-8B shapes
 * against the CPU backend, and against the GPU's own ceilings (doc/cuda.md,
 * "Benchmarks").
 *
 * First the two ceilings, measured here: device-to-device copy bandwidth
 * (bytes read plus written, qk_copy of 2 GiB) and the GEMM rate (qk_gemm
 * 8192^3 in the default math, BF16 tensor cores, and in FP32). Then for
 * each operation the median GPU time of several runs (every operation is
 * synchronous, so a host clock around it is the device time plus one
 * launch's latency), the CPU's time of one run where it takes under about
 * ten seconds, their ratio, and the rate reached: TFLOP/s for products,
 * GB/s (the fewest bytes the operation must move) for the rest, with its
 * fraction of the matching ceiling. One line per operation:
 *     op  shape  gpu_ms  cpu_ms  cpu/gpu  rate  %ceiling
 *
 *   bench_cuda [--no-cpu]     --no-cpu: GPU times only (no ratios)
 *
 * Exit status 0, 1 when an operation failed, 77 without a usable GPU.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels.h"
#include "qc_err.h"

static qk_ctx *cpu, *gpu, *gpu32;
static int no_cpu, failed;
static double copy_gbs, gemm_tfs, gemm32_tfs;

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t rng = 88172645463325252ull;
static float frand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (float)((double)(rng >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static void die(const char *what)
{
	fprintf(stderr, "bench_cuda: %s: %s\n", what, qc_errmsg());
	exit(1);
}

/* random device memory of n floats (never zeros: they run faster) */
static float *drand(qk_ctx *ctx, size_t n)
{
	float *h = malloc(n * 4), *d = qk_alloc(ctx, n * 4);
	if (!h || !d)
		die("alloc");
	for (size_t i = 0; i < n; i++)
		h[i] = frand();
	if (qk_upload(ctx, d, h, n * 4))
		die("upload");
	free(h);
	return d;
}

typedef int (*op_fn)(qk_ctx *ctx, void *arg);

/* median of reps runs (after one warm-up) in seconds; -1 on failure */
static double timeit(qk_ctx *ctx, op_fn fn, void *arg, int reps)
{
	if (fn(ctx, arg)) {
		fprintf(stderr, "bench_cuda: %s\n", qc_errmsg());
		failed = 1;
		return -1;
	}
	double t[64];
	if (reps > 64)
		reps = 64;
	for (int i = 0; i < reps; i++) {
		double t0 = now();
		if (fn(ctx, arg)) {
			failed = 1;
			return -1;
		}
		t[i] = now() - t0;
	}
	for (int i = 1; i < reps; i++)
		for (int j = i; j > 0 && t[j] < t[j - 1]; j--) {
			double x = t[j];
			t[j] = t[j - 1];
			t[j - 1] = x;
		}
	return t[reps / 2];
}

/* kind: 'F' flops (work = FLOP), 'B' bytes (work = bytes moved), with the
 * ceiling that applies; cpu_ok: the CPU runs it once */
static void row(const char *op, const char *shape, double g, double c, char kind, double work,
                double ceil_)
{
	char cs[32] = "-", ratio[32] = "-", rate[32] = "-", pct[32] = "-";
	if (c > 0)
		snprintf(cs, sizeof cs, "%.2f", c * 1e3);
	if (c > 0 && g > 0)
		snprintf(ratio, sizeof ratio, "%.1fx", c / g);
	if (g > 0 && work > 0) {
		double r = work / g;
		if (kind == 'F')
			snprintf(rate, sizeof rate, "%.1f TFLOP/s", r / 1e12);
		else
			snprintf(rate, sizeof rate, "%.0f GB/s", r / 1e9);
		if (ceil_ > 0)
			snprintf(pct, sizeof pct, "%.0f%%", 100 * r / ceil_);
	}
	printf("%-24s %-26s %10.3f %10s %8s %16s %6s\n", op, shape, g > 0 ? g * 1e3 : -1.0, cs, ratio,
	       rate, pct);
	fflush(stdout);
}

/* ---------------------------------------------------------------- operations */

typedef struct args {
	float *a, *b, *c, *d;
	void *p;
	int64_t m, n, k, h, kv, hd;
	size_t bytes;
	const void *host;
	int64_t *sigma;
	float *diag;
	qk_qspec q;
	qk_gptq_mat mat;
	int64_t *perm;
} args;

static int op_copy(qk_ctx *x, void *p)
{
	args *a = p;
	return qk_copy(x, a->b, a->a, a->bytes);
}
static int op_gemm(qk_ctx *x, void *p)
{
	args *a = p;
	return qk_gemm(x, 0, 1, a->m, a->n, a->k, 1.0f, a->a, a->k, a->b, a->k, 0.0f, a->c, a->n);
}
static int op_linear(qk_ctx *x, void *p)
{
	args *a = p;
	return qk_linear(x, a->c, a->a, a->b, NULL, a->m, a->k, a->n, 0);
}
static int op_hessian(qk_ctx *x, void *p)
{
	args *a = p;
	return qk_hessian_accum(x, a->c, a->a, a->m, a->n, 1.0f);
}
static int op_attention(qk_ctx *x, void *p)
{
	args *a = p;
	return qk_attention(x, a->c, a->a, a->b, a->d, a->m, a->h, a->kv, a->hd,
	                    1.0f / sqrtf((float)a->hd));
}
static int op_rmsnorm(qk_ctx *x, void *p)
{
	args *a = p;
	return qk_rmsnorm(x, a->c, a->a, a->b, a->m, a->n, 1e-5f);
}
static int op_swiglu(qk_ctx *x, void *p)
{
	args *a = p;
	return qk_swiglu(x, a->c, a->a, a->b, (size_t)(a->m * a->n));
}
static int op_rope(qk_ctx *x, void *p)
{
	args *a = p;
	return qk_rope_apply(x, a->a, a->m, a->h, a->hd, 0, a->diag);
}
static int op_logsm(qk_ctx *x, void *p)
{
	args *a = p;
	return qk_log_softmax(x, a->c, a->a, a->m, a->n);
}
static int op_fold(qk_ctx *x, void *p)
{
	args *a = p;
	qk_rowstat *st = a->p;
	qk_rowstat_init(st, a->m);
	return qk_softmax_fold(x, st, a->a, a->b, a->n, a->m, a->n, 0, NULL);
}
static int op_actq(qk_ctx *x, void *p)
{
	args *a = p;
	qk_actq q = { QK_ACTQ_INT8_TOKEN, 0, 0 };
	return qk_actq_apply(x, a->a, a->m, a->n, &q);
}
static int op_bf16(qk_ctx *x, void *p)
{
	args *a = p;
	return qk_bf16_store(x, a->p, a->a, (size_t)(a->m * a->n));
}
static int op_to_f32(qk_ctx *x, void *p)
{
	args *a = p;
	return qk_to_f32(x, a->c, a->host, QC_DT_BF16, (size_t)(a->m * a->n));
}
static int op_absmax(qk_ctx *x, void *p)
{
	args *a = p;
	float m = 0;
	return qk_absmax(x, a->a, (size_t)(a->m * a->n), &m);
}
static int op_colmax(qk_ctx *x, void *p)
{
	args *a = p;
	return qk_col_absmax(x, a->a, a->m, a->n, a->diag);
}
static int op_permute(qk_ctx *x, void *p)
{
	args *a = p;
	return qk_gptq_permute(x, a->c, a->n, a->sigma);
}
static int op_factor(qk_ctx *x, void *p)
{
	args *a = p;
	/* a fresh copy of the SPD matrix each time: the factor works in place */
	int rc = qk_copy(x, a->c, a->a, (size_t)(a->n * a->n) * 4);
	return rc ? rc : qk_gptq_factor(x, a->c, a->n, a->diag, 0.01);
}
static int op_params(qk_ctx *x, void *p)
{
	args *a = p;
	return qk_gptq_params(x, &a->q, &a->mat, 1, a->n, NULL);
}
static int op_errors(qk_ctx *x, void *p)
{
	args *a = p;
	return qk_gptq_errors(x, &a->q, &a->mat, 1, a->n, a->c, a->perm, NULL);
}
static int op_sweep(qk_ctx *x, void *p)
{
	args *a = p;
	return qk_gptq_sweep(x, &a->q, &a->mat, 1, a->n, a->c, a->perm, NULL, NULL, 128, 0);
}

/* GPU time (reps runs), CPU time (one run, unless skipped), printed */
static void bench(const char *op, const char *shape, op_fn fn, args *ga, args *ca, int reps,
                  char kind, double work, double ceil_)
{
	double g = timeit(gpu, fn, ga, reps);
	double c = -1;
	if (!no_cpu && ca)
		c = timeit(cpu, fn, ca, 1);
	row(op, shape, g, c, kind, work, ceil_);
}

/* the same random arrays on the CPU (when it runs) */
static float *cpu_rand(size_t n) { return no_cpu ? NULL : drand(cpu, n); }

int main(int argc, char **argv)
{
	no_cpu = argc > 1 && strcmp(argv[1], "--no-cpu") == 0;
	if (qk_ctx_new(&cpu, QK_DEVICE_CPU, 0))
		die("cpu context");
	if (qk_ctx_new(&gpu, QK_DEVICE_CUDA, 0)) {
		printf("SKIP  no usable CUDA device: %s\n", qc_errmsg());
		return 77;
	}
	setenv("QK_CUDA_MATH", "fp32", 1);
	if (qk_ctx_new(&gpu32, QK_DEVICE_CUDA, 0))
		die("cuda context");
	unsetenv("QK_CUDA_MATH");

	/* ceilings */
	args cp = { .bytes = (size_t)2 << 30 };
	cp.a = drand(gpu, cp.bytes / 4);
	cp.b = qk_alloc(gpu, cp.bytes);
	double t = timeit(gpu, op_copy, &cp, 10);
	copy_gbs = t > 0 ? 2.0 * (double)cp.bytes / t : 0;
	qk_free(gpu, cp.a);
	qk_free(gpu, cp.b);
	args gm = { .m = 8192, .n = 8192, .k = 8192 };
	gm.a = drand(gpu, 8192 * 8192);
	gm.b = drand(gpu, 8192 * 8192);
	gm.c = qk_alloc(gpu, (size_t)8192 * 8192 * 4);
	double fl = 2.0 * 8192 * 8192 * 8192;
	t = timeit(gpu, op_gemm, &gm, 5);
	gemm_tfs = t > 0 ? fl / t : 0;
	t = timeit(gpu32, op_gemm, &gm, 3);
	gemm32_tfs = t > 0 ? fl / t : 0;
	qk_free(gpu, gm.a);
	qk_free(gpu, gm.b);
	qk_free(gpu, gm.c);
	printf("# ceilings: copy %.0f GB/s (read + write), GEMM 8192^3 %.0f TFLOP/s (default math), "
	       "%.1f TFLOP/s (fp32)\n", copy_gbs / 1e9, gemm_tfs / 1e12, gemm32_tfs / 1e12);
	printf("%-24s %-26s %10s %10s %8s %16s %6s\n", "op", "shape (8B)", "gpu_ms", "cpu_ms",
	       "cpu/gpu", "rate", "%ceil");

	const int64_t T = 2048, H = 4096, I = 14336, NH = 32, NKV = 8, HD = 128, V = 128256;
	/* Linear: gate_proj over a chunk of 2048 tokens */
	{
		args g = { .m = T, .k = H, .n = I }, c = g;
		g.a = drand(gpu, (size_t)(T * H));
		g.b = drand(gpu, (size_t)(I * H));
		g.c = qk_alloc(gpu, (size_t)(T * I) * 4);
		c.a = cpu_rand((size_t)(T * H));
		c.b = cpu_rand((size_t)(I * H));
		c.c = no_cpu ? NULL : qk_alloc(cpu, (size_t)(T * I) * 4);
		double f = 2.0 * T * H * I;
		bench("linear", "2048x4096 -> 14336", op_linear, &g, no_cpu ? NULL : &c, 10, 'F', f,
		      gemm_tfs);
		double t32 = timeit(gpu32, op_linear, &g, 5);
		row("linear (fp32)", "2048x4096 -> 14336", t32, -1, 'F', f, gemm32_tfs);
		qk_free(gpu, g.a), qk_free(gpu, g.b), qk_free(gpu, g.c);
		qk_free(cpu, c.a), qk_free(cpu, c.b), qk_free(cpu, c.c);
	}
	/* Hessian of down_proj's input: 2048 tokens of 14336 */
	{
		args g = { .m = T, .n = I }, c = g;
		g.a = drand(gpu, (size_t)(T * I));
		g.c = drand(gpu, (size_t)(I * I));
		c.a = cpu_rand((size_t)(T * I));
		c.c = cpu_rand((size_t)(I * I));
		bench("hessian X^T X", "2048 x 14336", op_hessian, &g, no_cpu ? NULL : &c, 5, 'F',
		      (double)T * I * I, gemm_tfs);
		qk_free(gpu, g.a), qk_free(gpu, g.c), qk_free(cpu, c.a), qk_free(cpu, c.c);
	}
	/* attention of one 2048-token sequence */
	{
		args g = { .m = T, .h = NH, .kv = NKV, .hd = HD }, c = g;
		g.a = drand(gpu, (size_t)(T * NH * HD));
		g.b = drand(gpu, (size_t)(T * NKV * HD));
		g.d = drand(gpu, (size_t)(T * NKV * HD));
		g.c = qk_alloc(gpu, (size_t)(T * NH * HD) * 4);
		c.a = cpu_rand((size_t)(T * NH * HD));
		c.b = cpu_rand((size_t)(T * NKV * HD));
		c.d = cpu_rand((size_t)(T * NKV * HD));
		c.c = no_cpu ? NULL : qk_alloc(cpu, (size_t)(T * NH * HD) * 4);
		/* the causal half of QK^T and PV */
		double f = 2.0 * 2.0 * NH * HD * (double)T * (double)(T + 1) / 2;
		bench("attention", "T2048 32/8 heads d128", op_attention, &g, no_cpu ? NULL : &c, 10, 'F',
		      f, gemm_tfs);
		qk_free(gpu, g.a), qk_free(gpu, g.b), qk_free(gpu, g.c), qk_free(gpu, g.d);
		qk_free(cpu, c.a), qk_free(cpu, c.b), qk_free(cpu, c.c), qk_free(cpu, c.d);
	}
	/* row kernels over 2048 tokens */
	{
		args g = { .m = T, .n = I, .h = NH, .hd = HD }, c = g;
		g.a = drand(gpu, (size_t)(T * I));
		g.b = drand(gpu, (size_t)(T * I));
		g.c = qk_alloc(gpu, (size_t)(T * I) * 4);
		g.p = qk_alloc(gpu, (size_t)(T * I) * 2);
		c.a = cpu_rand((size_t)(T * I));
		c.b = cpu_rand((size_t)(T * I));
		c.c = no_cpu ? NULL : qk_alloc(cpu, (size_t)(T * I) * 4);
		c.p = no_cpu ? NULL : qk_alloc(cpu, (size_t)(T * I) * 2);
		double e = (double)(T * I);
		bench("swiglu", "2048 x 14336", op_swiglu, &g, no_cpu ? NULL : &c, 20, 'B', 12 * e, copy_gbs);
		bench("bf16 store", "2048 x 14336", op_bf16, &g, no_cpu ? NULL : &c, 20, 'B', 6 * e, copy_gbs);
		bench("activation int8/token", "2048 x 14336", op_actq, &g, no_cpu ? NULL : &c, 20, 'B',
		      8 * e, copy_gbs);
		bench("absmax", "2048 x 14336", op_absmax, &g, no_cpu ? NULL : &c, 20, 'B', 4 * e, copy_gbs);
		float *amax = calloc((size_t)I, 4);
		g.diag = c.diag = amax;
		bench("column absmax", "2048 x 14336", op_colmax, &g, no_cpu ? NULL : &c, 20, 'B', 4 * e,
		      copy_gbs);
		free(amax);
		g.n = c.n = H;
		bench("rmsnorm", "2048 x 4096", op_rmsnorm, &g, no_cpu ? NULL : &c, 20, 'B',
		      8.0 * (double)(T * H), copy_gbs);
		float inv[64];
		for (int i = 0; i < 64; i++)
			inv[i] = powf(500000.0f, -(float)i / 64.0f);
		g.diag = c.diag = inv;
		bench("rope", "2048 x 32 x 128", op_rope, &g, no_cpu ? NULL : &c, 20, 'B',
		      8.0 * (double)(T * NH * HD), copy_gbs);
		/* host BF16 weights to device FP32: the upload path of every layer */
		uint16_t *hb = malloc((size_t)(H * I) * 2);
		for (int64_t i = 0; i < H * I; i++)
			hb[i] = (uint16_t)(0x3c00 + (i & 0xff));
		args u = { .m = I, .n = H, .host = hb };
		u.c = qk_alloc(gpu, (size_t)(H * I) * 4);
		double tu = timeit(gpu, op_to_f32, &u, 5);
		row("to_f32 (host BF16)", "14336 x 4096", tu, -1, 'B', 2.0 * (double)(H * I), 0);
		qk_free(gpu, u.c);
		free(hb);
		qk_free(gpu, g.a), qk_free(gpu, g.b), qk_free(gpu, g.c), qk_free(gpu, g.p);
		qk_free(cpu, c.a), qk_free(cpu, c.b), qk_free(cpu, c.c), qk_free(cpu, c.p);
	}
	/* the lm_head's statistics: 512 positions of the vocabulary */
	{
		int64_t P = 512;
		args g = { .m = P, .n = V }, c = g;
		g.a = drand(gpu, (size_t)(P * V));
		g.b = drand(gpu, (size_t)(P * V));
		g.c = qk_alloc(gpu, (size_t)(P * V) * 4);
		c.a = cpu_rand((size_t)(P * V));
		c.b = cpu_rand((size_t)(P * V));
		c.c = no_cpu ? NULL : qk_alloc(cpu, (size_t)(P * V) * 4);
		qk_rowstat *st = malloc((size_t)P * sizeof *st);
		g.p = c.p = st;
		double e = (double)(P * V);
		bench("log_softmax", "512 x 128256", op_logsm, &g, no_cpu ? NULL : &c, 10, 'B', 8 * e,
		      copy_gbs);
		bench("softmax fold (2 models)", "512 x 128256", op_fold, &g, no_cpu ? NULL : &c, 10, 'B',
		      8 * e, copy_gbs);
		free(st);
		qk_free(gpu, g.a), qk_free(gpu, g.b), qk_free(gpu, g.c);
		qk_free(cpu, c.a), qk_free(cpu, c.b), qk_free(cpu, c.c);
	}
	/* GPTQ of down_proj: [4096, 14336], W4 g128, static act-order, MSE */
	{
		const int64_t R = H, n = I;
		args g = { .n = n }, c = g;
		/* an SPD matrix: X^T X / T + I from 2 n random tokens */
		int64_t Tx = 2 * n;
		float *x = drand(gpu, (size_t)(Tx * n));
		g.a = qk_alloc(gpu, (size_t)(n * n) * 4);
		if (qk_zero(gpu, g.a, (size_t)(n * n) * 4) ||
		    qk_hessian_accum(gpu32, g.a, x, Tx, n, 1.0f / (float)Tx) || qk_sym_upper(gpu, g.a, n))
			die("hessian");
		qk_free(gpu, x);
		float *hd = malloc((size_t)n * 4);
		for (int64_t i = 0; i < n; i++)
			hd[i] = 1.0f + 0.01f * (float)(i % 7);
		g.diag = c.diag = hd;
		g.c = qk_alloc(gpu, (size_t)(n * n) * 4);
		g.sigma = c.sigma = malloc((size_t)n * 8);
		g.perm = c.perm = g.sigma;
		for (int64_t i = 0; i < n; i++)
			g.sigma[i] = (i * 7919) % n; /* n is not a multiple of 7919: a permutation */
		if (qk_copy(gpu, g.c, g.a, (size_t)(n * n) * 4))
			die("copy");
		double tp = timeit(gpu, op_permute, &g, 3);
		row("gptq permute", "14336^2", tp, -1, 'B', 4.0 * 4 * (double)(n * n), copy_gbs);
		double tf = timeit(gpu, op_factor, &g, 3);
		row("gptq factor (chol)", "14336^2", tf, -1, 'F', (double)n * n * n / 3, gemm32_tfs);
		/* the weights and the quantization */
		g.q = (qk_qspec){ .bits = 4, .symmetric = 1, .group = 128, .scale_dtype = QC_DT_BF16,
		                  .arith = QC_DT_F32, .mse = 1, .grid = 100, .patience = 5,
		                  .maxshrink = 0.2, .norm = 2.4 };
		float *W = drand(gpu, (size_t)(R * n));
		uint8_t *codes = malloc((size_t)(R * n));
		float *sc = malloc((size_t)(R * (n / 128)) * 4);
		qk_gptq_sums *sums = calloc((size_t)R, sizeof *sums);
		float *deq = qk_alloc(gpu, (size_t)(R * n) * 4);
		g.mat = (qk_gptq_mat){ .W = W, .rows = R, .codes = codes, .scales = sc, .deq = deq,
		                       .sums = sums };
		double tpar = timeit(gpu, op_params, &g, 3);
		row("gptq params (mse)", "4096 x 14336 g128", tpar, -1, 'B', 4.0 * (double)(R * n), 0);
		double te = timeit(gpu, op_errors, &g, 3);
		row("gptq errors", "4096 x 14336", te, -1, 'F', 2.0 * (double)R * n * n, gemm32_tfs);
		double ts = timeit(gpu, op_sweep, &g, 3);
		row("gptq sweep", "4096 x 14336", ts, -1, 'F', 2.0 * (double)R * n * n, gemm32_tfs);
		if (!no_cpu) {
			/* the CPU on a quarter of the rows (the same per-row work) */
			float *cw = drand(cpu, (size_t)(R / 4 * n));
			float *cv = qk_alloc(cpu, (size_t)(n * n) * 4);
			float *gv = malloc((size_t)(n * n) * 4);
			if (!cv || !gv || qk_download(gpu, gv, g.c, (size_t)(n * n) * 4) ||
			    qk_upload(cpu, cv, gv, (size_t)(n * n) * 4))
				die("copy V");
			free(gv);
			c.q = g.q;
			c.c = cv;
			c.mat = g.mat;
			c.mat.W = cw;
			c.mat.rows = R / 4;
			c.mat.deq = NULL;
			double cpar = timeit(cpu, op_params, &c, 1), cs = timeit(cpu, op_sweep, &c, 1);
			row("gptq params (cpu/4)", "1024 x 14336 g128", -1, cpar, 'B', 0, 0);
			row("gptq sweep (cpu/4)", "1024 x 14336", -1, cs, 'F', 0, 0);
			if (cs > 0 && ts > 0)
				printf("# gptq sweep cpu/gpu (per row): %.1fx; params: %.1fx\n", 4 * cs / ts,
				       cpar > 0 && tpar > 0 ? 4 * cpar / tpar : 0.0);
			qk_free(cpu, cw);
			qk_free(cpu, cv);
		}
		qk_free(gpu, W), qk_free(gpu, deq), qk_free(gpu, g.a), qk_free(gpu, g.c);
		free(codes), free(sc), free(sums), free(hd), free(g.sigma);
	}
	printf("%-24s %-26s %10s\n", "w4a16 decode GEMV", "4096 x 14336", "not implemented");
	qk_ctx_free(gpu32);
	qk_ctx_free(gpu);
	qk_ctx_free(cpu);
	return failed ? 1 : 0;
}
