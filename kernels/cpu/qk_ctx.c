/*
 * qk_ctx.c - the CPU backend: its table, device memory (ordinary host
 * memory), the row-parallel helper, OpenBLAS's thread count and dtype
 * conversion (kernels.h, qk_backend.h).
 */
#include "qk_cpu.h"

#include <cblas.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "qc_err.h"
#include "qc_num.h"
#include "qc_pool.h"

static int cpu_ctx_init(qk_ctx *ctx);
static void cpu_ctx_fini(qk_ctx *ctx);

const qk_backend qk_cpu_backend = {
	.name = "cpu",
	.ctx_init = cpu_ctx_init,
	.ctx_fini = cpu_ctx_fini,
	.alloc = qk_cpu_alloc,
	.free = qk_cpu_free,
	.upload = qk_cpu_upload,
	.download = qk_cpu_download,
	.copy = qk_cpu_copy,
	.zero = qk_cpu_zero,
	.to_f32 = qk_cpu_to_f32,
	.dequant = qk_cpu_dequant,
	.bf16_store = qk_cpu_bf16_store,
	.bf16_load = qk_cpu_bf16_load,
	.fp8_qdq = qk_cpu_fp8_qdq,
	.gemm = qk_cpu_gemm,
	.linear = qk_cpu_linear,
	.rmsnorm = qk_cpu_rmsnorm,
	.rope_apply = qk_cpu_rope_apply,
	.attention = qk_cpu_attention,
	.linear_q4 = qk_cpu_linear_q4,
	.linear_bf16 = qk_cpu_linear_bf16,
	.attention_kv = qk_cpu_attention_kv,
	.attention_ex = qk_cpu_attention_ex,
	.swiglu = qk_cpu_swiglu,
	.geglu = qk_cpu_geglu,
	.softcap = qk_cpu_softcap,
	.log_softmax = qk_cpu_log_softmax,
	.nll = qk_cpu_nll,
	.softmax_fold = qk_cpu_softmax_fold,
	.actq_apply = qk_cpu_actq_apply,
	.absmax = qk_cpu_absmax,
	.sumsq = qk_cpu_sumsq,
	.sub = qk_cpu_sub,
	.add = qk_cpu_add,
	.diff_sumsq = qk_cpu_diff_sumsq,
	.col_absmax = qk_cpu_col_absmax,
	.scale_cols = qk_cpu_scale_cols,
	.scale_rows = qk_cpu_scale_rows,
	.q8_rows = qk_cpu_q8_rows,
	.nonfinite = qk_cpu_nonfinite,
	.hessian_accum = qk_cpu_hessian_accum,
	.sym_upper = qk_cpu_sym_upper,
	.cholesky = qk_cpu_cholesky,
	.tri_inverse = qk_cpu_tri_inverse,
	.gptq_hdiag = qk_cpu_gptq_hdiag,
	.gptq_permute = qk_cpu_gptq_permute,
	.gptq_factor = qk_cpu_gptq_factor,
	.gptq_minmax = qk_cpu_gptq_minmax,
	.gptq_params = qk_cpu_gptq_params,
	.gptq_rtn = qk_cpu_gptq_rtn,
	.gptq_errors = qk_cpu_gptq_errors,
	.gptq_sweep = qk_cpu_gptq_sweep,
	.col_abssum = qk_cpu_col_abssum,
	.awq_qdq = qk_cpu_awq_qdq,
	.awq_wmean = qk_cpu_awq_wmean,
	.awq_clip = qk_cpu_awq_clip,
};

int qk_cpu_check(const qk_ctx *ctx, const char *op)
{
	if (!ctx || ctx->dev != QK_DEVICE_CPU)
		return qc_seterr(QC_EINVAL, "%s: no CPU context given", op);
	return 0;
}

void qk_cpu_blas_threads(int n)
{
	if (openblas_get_num_threads() != n)
		openblas_set_num_threads(n);
}

/*
 * OpenBLAS's worker threads, once they have run a job, spin for 2^28 cycles
 * (calling sched_yield) before they sleep. Between our threaded BLAS calls
 * the cores run our own threads (the row pools, with single-threaded BLAS
 * inside), and the spinning workers compete with them: in qgptq about 5 %
 * of the CPU time went to sched_yield, and a 1B layer took 6 % longer.
 * OPENBLAS_THREAD_TIMEOUT sets the spin (4: 2^4 cycles, OpenBLAS's least),
 * but the library reads it when it loads, before main. So, unless the
 * user has set it, set it for a moment, let OpenBLAS read its environment
 * again, and stop its thread server, which the next threaded call starts
 * afresh with the new timeout (waking a sleeping worker costs microseconds;
 * our threaded calls are large). The functions are OpenBLAS's own exports,
 * found through dlsym: with another BLAS nothing changes. Results do not
 * depend on it.
 */
static void blas_quiet_workers(void)
{
	if (getenv("OPENBLAS_THREAD_TIMEOUT") || getenv("GOTO_THREAD_TIMEOUT"))
		return;
	void (*read_env)(void) = (void (*)(void))dlsym(RTLD_DEFAULT, "openblas_read_env");
	void (*shutdown)(void) = (void (*)(void))dlsym(RTLD_DEFAULT, "blas_thread_shutdown_");
	if (!read_env || !shutdown || setenv("OPENBLAS_THREAD_TIMEOUT", "4", 0) != 0)
		return;
	read_env();
	unsetenv("OPENBLAS_THREAD_TIMEOUT"); /* the process's environment as it was */
	shutdown();
}

/* CPU contexts alive: when the last one goes, the cached large blocks
 * (qk_mem.c) are released too */
static _Atomic int n_contexts;

static int cpu_ctx_init(qk_ctx *ctx)
{
	(void)ctx;
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, blas_quiet_workers);
	n_contexts++;
	return 0;
}

static void cpu_ctx_fini(qk_ctx *ctx)
{
	(void)ctx;
	if (--n_contexts == 0)
		qk_cpu_big_release();
}

/* ---------------------------------------------------------------- memory */

void *qk_cpu_alloc(qk_ctx *ctx, size_t bytes)
{
	(void)ctx;
	void *p = NULL;
	/* 64-byte alignment: whole cache lines, and what AVX-512 loads like.
	 * Large blocks (a layer's FP32 weights, activations, Hessians) come
	 * from qk_mem.c: 2 MiB aligned, offered transparent huge pages, and
	 * kept for reuse when freed, so that each layer's buffers are not
	 * first-touched again (measured: most of qgptq's system time). */
	size_t n = (bytes + 63) & ~(size_t)63;
	if (n >= QK_BIG_MIN)
		p = qk_cpu_big_alloc(n);
	else if (n >= bytes && posix_memalign(&p, 64, n ? n : 64) != 0)
		p = NULL;
	if (!p)
		qc_seterr(QC_ENOMEM, "cannot allocate %zu bytes", bytes);
	return p;
}

void qk_cpu_free(qk_ctx *ctx, void *p)
{
	(void)ctx;
	if (!qk_cpu_big_free(p))
		free(p);
}

int qk_cpu_upload(qk_ctx *ctx, void *dev_dst, const void *host_src, size_t bytes)
{
	QC_TRY(qk_cpu_check(ctx, "upload"));
	if (bytes)
		memmove(dev_dst, host_src, bytes);
	return 0;
}

int qk_cpu_download(qk_ctx *ctx, void *host_dst, const void *dev_src, size_t bytes)
{
	QC_TRY(qk_cpu_check(ctx, "download"));
	if (bytes)
		memmove(host_dst, dev_src, bytes);
	return 0;
}

/* ---------------------------------------------------------------- parallel rows */

typedef struct {
	qk_range_fn fn;
	void *arg;
	int64_t n;
} rows_job;

static int rows_part(void *p, int part, int nparts)
{
	rows_job *j = p;
	int64_t b, e;
	qc_pool_range(j->n, part, nparts, &b, &e);
	j->fn(j->arg, b, e);
	return 0;
}

void qk_cpu_parallel(const qk_ctx *ctx, int64_t n, int64_t min_per_thread, qk_range_fn fn,
                     void *arg)
{
	if (n <= 0)
		return;
	int64_t nt = ctx->threads;
	if (min_per_thread < 1)
		min_per_thread = 1;
	if (nt > n / min_per_thread)
		nt = n / min_per_thread;
	if (nt > 64)
		nt = 64;
	if (nt <= 1) {
		fn(arg, 0, n);
		return;
	}
	/* block i is [n i / nt, n (i + 1) / nt), on the calling thread for
	 * block 0 and for any block whose thread cannot be started */
	rows_job j = { fn, arg, n };
	(void)qc_pool_run((int)nt, rows_part, &j);
}

/* ---------------------------------------------------------------- conversion */

typedef struct {
	float *dst;
	const unsigned char *src;
	qc_dtype dt;
	size_t esize;
} conv_job;

static void conv_range(void *p, int64_t b, int64_t e)
{
	conv_job *j = p;
	/* cannot fail: the dtype was checked before the threads started */
	(void)qc_to_f32(j->dst + b, j->src + (size_t)b * j->esize, j->dt, (size_t)(e - b));
}

int qk_cpu_to_f32(qk_ctx *ctx, float *dst, const void *src, qc_dtype dt, size_t n)
{
	QC_TRY(qk_cpu_check(ctx, "convert"));
	size_t es = qc_dtype_size(dt);
	if (!qc_dtype_is_float(dt) || es == 0 || qc_to_f32(dst, src, dt, 0) < 0)
		return qc_seterr(QC_EUNSUPPORTED, "cannot convert %s to F32", qc_dtype_name(dt));
	conv_job j = { dst, src, dt, es };
	qk_cpu_parallel(ctx, (int64_t)n, 1 << 16, conv_range, &j);
	return 0;
}
