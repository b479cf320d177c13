/*
 * qk_dispatch.c - the public functions of kernels.h: contexts, and one
 * wrapper per operation that calls the context's backend (qk_backend.h)
 * inside the memory guard of QK_DEBUG_MEMORY=1.
 */
#include "qk_backend.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qc_err.h"
#include "qc_log.h"

/* ---------------------------------------------------------------- context */

static const qk_backend *backend_of(qk_device dev)
{
	switch (dev) {
	case QK_DEVICE_CPU: return &qk_cpu_backend;
#ifdef QC_HAVE_CUDA
	case QK_DEVICE_CUDA: return &qk_cuda_backend;
#else
	case QK_DEVICE_CUDA: return NULL;
#endif
	case QK_DEVICE_AUTO: return NULL;
	}
	return NULL;
}

int qk_ctx_new(qk_ctx **out, qk_device dev, int n_threads)
{
	*out = NULL;
	if (dev == QK_DEVICE_AUTO) {
		if (n_threads < 0)
			return qc_seterr(QC_EINVAL, "invalid thread count %d", n_threads);
		int rc = qk_ctx_new(out, QK_DEVICE_CUDA, n_threads);
		if (rc != QC_EUNSUPPORTED)
			return rc;
		qc_log(QC_LOG_DETAIL, "device auto: %s; the kernels run on the CPU", qc_errmsg());
		dev = QK_DEVICE_CPU;
	}
	const qk_backend *be = backend_of(dev);
	if (!be)
		return qc_seterr(QC_EUNSUPPORTED, "cannot use device '%s': this build has no %s kernels",
		                 qk_device_name(dev), qk_device_name(dev));
	if (n_threads < 0)
		return qc_seterr(QC_EINVAL, "invalid thread count %d", n_threads);
	qk_ctx *c = calloc(1, sizeof *c);
	if (!c)
		return qc_seterr(QC_ENOMEM, "cannot allocate a kernel context");
	if (n_threads == 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		n_threads = n > 0 ? (int)(n < 256 ? n : 256) : 1;
	}
	c->dev = dev;
	c->threads = n_threads;
	c->be = be;
	/* the guard works on host pages: the CPU device only */
	c->guarded = dev == QK_DEVICE_CPU && qk_guard_requested();
	if (be->ctx_init) {
		int rc = be->ctx_init(c);
		if (rc) {
			free(c);
			return rc;
		}
	}
	*out = c;
	return 0;
}

void qk_ctx_free(qk_ctx *ctx)
{
	if (!ctx)
		return;
	if (ctx->be->ctx_fini)
		ctx->be->ctx_fini(ctx);
	free(ctx);
}

qk_device qk_ctx_device(const qk_ctx *ctx) { return ctx->dev; }
int qk_ctx_threads(const qk_ctx *ctx) { return ctx->threads; }

const char *qk_device_name(qk_device dev)
{
	switch (dev) {
	case QK_DEVICE_CPU: return "cpu";
	case QK_DEVICE_CUDA: return "cuda";
	case QK_DEVICE_AUTO: return "auto";
	}
	return "unknown";
}

int qk_device_parse(const char *name, qk_device *dev)
{
	if (strcmp(name, "cpu") == 0)
		*dev = QK_DEVICE_CPU;
	else if (strcmp(name, "cuda") == 0)
		*dev = QK_DEVICE_CUDA;
	else if (strcmp(name, "auto") == 0)
		*dev = QK_DEVICE_AUTO;
	else
		return qc_seterr(QC_EINVAL, "unknown device '%s' (use cpu, cuda or auto)", name);
	return 0;
}

/* ---------------------------------------------------------------- the call */

/* Check the context and the table entry, then run the entry inside the
 * guard (a no-op until a guarded allocation exists). */
#define QK_CALL(ctx, op, opname, ...)                                                             \
	do {                                                                                        \
		if (!(ctx))                                                                             \
			return qc_seterr(QC_EINVAL, "%s: no kernel context given", opname);                    \
		if (!(ctx)->be->op)                                                                     \
			return qc_seterr(QC_EUNSUPPORTED, "%s: not available on the %s device", opname,       \
			                 (ctx)->be->name);                                                  \
		int guard_ = atomic_load_explicit(&qk_guard_active, memory_order_relaxed);              \
		if (guard_)                                                                             \
			qk_guard_enter();                                                                   \
		int rc_ = (ctx)->be->op((ctx), __VA_ARGS__);                                            \
		if (guard_)                                                                             \
			qk_guard_leave();                                                                   \
		return rc_;                                                                             \
	} while (0)

/* ---------------------------------------------------------------- memory */

void *qk_alloc(qk_ctx *ctx, size_t bytes)
{
	if (!ctx) {
		qc_seterr(QC_EINVAL, "alloc: no kernel context given");
		return NULL;
	}
	if (ctx->guarded)
		return qk_guard_alloc(ctx, bytes);
	return ctx->be->alloc(ctx, bytes);
}

void qk_free(qk_ctx *ctx, void *p)
{
	if (!p)
		return;
	if (atomic_load_explicit(&qk_guard_active, memory_order_relaxed) && qk_guard_free(p))
		return;
	ctx->be->free(ctx, p);
}

int qk_upload(qk_ctx *ctx, void *dev_dst, const void *host_src, size_t bytes)
{
	QK_CALL(ctx, upload, "upload", dev_dst, host_src, bytes);
}

int qk_download(qk_ctx *ctx, void *host_dst, const void *dev_src, size_t bytes)
{
	QK_CALL(ctx, download, "download", host_dst, dev_src, bytes);
}

int qk_copy(qk_ctx *ctx, void *dst, const void *src, size_t bytes)
{
	QK_CALL(ctx, copy, "copy", dst, src, bytes);
}

int qk_zero(qk_ctx *ctx, void *p, size_t bytes)
{
	QK_CALL(ctx, zero, "zero", p, bytes);
}

/* ---------------------------------------------------------------- conversion */

int qk_to_f32(qk_ctx *ctx, float *dst, const void *src, qc_dtype dt, size_t n)
{
	QK_CALL(ctx, to_f32, "convert", dst, src, dt, n);
}

int qk_dequant(qk_ctx *ctx, float *w, const void *codes, qc_dtype code_dt, int64_t rows,
               int64_t cols, const float *scale, const float *zero_point, int64_t scale_rs,
               int64_t group)
{
	QK_CALL(ctx, dequant, "dequantize", w, codes, code_dt, rows, cols, scale, zero_point,
	        scale_rs, group);
}

int qk_bf16_store(qk_ctx *ctx, void *dst, const float *src, size_t n)
{
	QK_CALL(ctx, bf16_store, "bf16 store", dst, src, n);
}

int qk_bf16_load(qk_ctx *ctx, float *dst, const void *src, size_t n)
{
	QK_CALL(ctx, bf16_load, "bf16 load", dst, src, n);
}

int qk_fp8_qdq(qk_ctx *ctx, float *x, size_t n, float scale)
{
	QK_CALL(ctx, fp8_qdq, "fp8 quantize-dequantize", x, n, scale);
}

/* ---------------------------------------------------------------- GEMM */

int qk_gemm(qk_ctx *ctx, int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
            const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
            int64_t ldc)
{
	QK_CALL(ctx, gemm, "gemm", trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

int qk_linear(qk_ctx *ctx, float *y, const float *x, const float *w, const float *bias,
              int64_t T, int64_t in, int64_t out, int accumulate)
{
	QK_CALL(ctx, linear, "linear", y, x, w, bias, T, in, out, accumulate);
}

/* ---------------------------------------------------------------- layers */

int qk_linear_q4(qk_ctx *ctx, float *y, const float *x, const uint8_t *q4, const float *s,
                 const float *z, const float *bias, int64_t T, int64_t in, int64_t out,
                 int64_t group, int accumulate)
{
	QK_CALL(ctx, linear_q4, "linear_q4", y, x, q4, s, z, bias, T, in, out, group, accumulate);
}

int qk_linear_bf16(qk_ctx *ctx, float *y, const float *x, const uint16_t *w, const float *bias,
                   int64_t T, int64_t in, int64_t out, int accumulate)
{
	QK_CALL(ctx, linear_bf16, "linear_bf16", y, x, w, bias, T, in, out, accumulate);
}

int qk_rmsnorm(qk_ctx *ctx, float *y, const float *x, const float *w, int64_t T, int64_t D,
               float eps)
{
	QK_CALL(ctx, rmsnorm, "rmsnorm", y, x, w, T, D, eps);
}

int qk_rope_apply(qk_ctx *ctx, float *x, int64_t T, int64_t n_heads, int64_t head_dim,
                  int64_t pos0, const float *inv_freq)
{
	QK_CALL(ctx, rope_apply, "rope", x, T, n_heads, head_dim, pos0, inv_freq);
}

int qk_attention(qk_ctx *ctx, float *out, const float *q, const float *k, const float *v,
                 int64_t T, int64_t n_heads, int64_t n_kv, int64_t head_dim, float scale)
{
	QK_CALL(ctx, attention, "attention", out, q, k, v, T, n_heads, n_kv, head_dim, scale);
}

int qk_attention_kv(qk_ctx *ctx, float *out, const float *q, const float *k, const float *v,
                    int64_t T, int64_t past, int64_t n_heads, int64_t n_kv, int64_t head_dim,
                    float scale)
{
	QK_CALL(ctx, attention_kv, "attention_kv", out, q, k, v, T, past, n_heads, n_kv, head_dim,
	        scale);
}

int qk_attention_ex(qk_ctx *ctx, float *out, const float *q, const float *k, const float *v,
                    int64_t T, int64_t past, int64_t n_heads, int64_t n_kv, int64_t head_dim,
                    const qk_attn *a)
{
	QK_CALL(ctx, attention_ex, "attention_ex", out, q, k, v, T, past, n_heads, n_kv, head_dim, a);
}

int qk_swiglu(qk_ctx *ctx, float *out, const float *gate, const float *up, size_t n)
{
	QK_CALL(ctx, swiglu, "swiglu", out, gate, up, n);
}

int qk_geglu(qk_ctx *ctx, float *out, const float *gate, const float *up, size_t n)
{
	QK_CALL(ctx, geglu, "geglu", out, gate, up, n);
}

int qk_softcap(qk_ctx *ctx, float *x, size_t n, float cap)
{
	QK_CALL(ctx, softcap, "softcap", x, n, cap);
}

/* ---------------------------------------------------------------- log-probabilities */

int qk_log_softmax(qk_ctx *ctx, float *y, const float *x, int64_t T, int64_t V)
{
	QK_CALL(ctx, log_softmax, "log_softmax", y, x, T, V);
}

int qk_nll(qk_ctx *ctx, double *nll, const float *x, const int32_t *target, int64_t T, int64_t V)
{
	QK_CALL(ctx, nll, "nll", nll, x, target, T, V);
}

int qk_softmax_fold(qk_ctx *ctx, qk_rowstat *st, const float *z, const float *z2, int64_t ldz,
                    int64_t T, int64_t n, int64_t col0, const int32_t *target)
{
	QK_CALL(ctx, softmax_fold, "softmax fold", st, z, z2, ldz, T, n, col0, target);
}

/* ---------------------------------------------------------------- activation quantization */

int qk_actq_apply(qk_ctx *ctx, float *x, int64_t T, int64_t D, const qk_actq *q)
{
	QK_CALL(ctx, actq_apply, "activation quantization", x, T, D, q);
}

/* ---------------------------------------------------------------- reductions */

int qk_absmax(qk_ctx *ctx, const float *x, size_t n, float *amax)
{
	QK_CALL(ctx, absmax, "absmax", x, n, amax);
}

int qk_sumsq(qk_ctx *ctx, const float *x, size_t n, double *sum)
{
	QK_CALL(ctx, sumsq, "sumsq", x, n, sum);
}

int qk_sub(qk_ctx *ctx, float *d, const float *a, const float *b, size_t n)
{
	QK_CALL(ctx, sub, "sub", d, a, b, n);
}

int qk_add(qk_ctx *ctx, float *d, const float *a, const float *b, size_t n)
{
	QK_CALL(ctx, add, "add", d, a, b, n);
}

int qk_diff_sumsq(qk_ctx *ctx, const float *a, const float *b, size_t n, double *d2, double *b2)
{
	QK_CALL(ctx, diff_sumsq, "diff sumsq", a, b, n, d2, b2);
}

int qk_col_absmax(qk_ctx *ctx, const float *x, int64_t rows, int64_t cols, float *amax)
{
	QK_CALL(ctx, col_absmax, "column absmax", x, rows, cols, amax);
}

int qk_scale_cols(qk_ctx *ctx, float *x, int64_t rows, int64_t cols, const float *s, int divide)
{
	QK_CALL(ctx, scale_cols, "scale columns", x, rows, cols, s, divide);
}

int qk_scale_rows(qk_ctx *ctx, float *x, int64_t rows, int64_t cols, const float *s, int divide)
{
	QK_CALL(ctx, scale_rows, "scale rows", x, rows, cols, s, divide);
}

int qk_q8_rows(qk_ctx *ctx, float *w, int64_t rows, int64_t cols, const float *s)
{
	QK_CALL(ctx, q8_rows, "int8 rows", w, rows, cols, s);
}

int qk_col_abssum(qk_ctx *ctx, const float *x, int64_t rows, int64_t cols, double *sum)
{
	QK_CALL(ctx, col_abssum, "column abs sum", x, rows, cols, sum);
}

int qk_nonfinite(qk_ctx *ctx, const float *x, size_t n, int64_t *first)
{
	QK_CALL(ctx, nonfinite, "non-finite scan", x, n, first);
}

/* ---------------------------------------------------------------- GPTQ support */

int qk_hessian_accum(qk_ctx *ctx, float *H, const float *X, int64_t T, int64_t n, float alpha)
{
	QK_CALL(ctx, hessian_accum, "hessian", H, X, T, n, alpha);
}

int qk_sym_upper(qk_ctx *ctx, float *H, int64_t n)
{
	QK_CALL(ctx, sym_upper, "symmetrize", H, n);
}

int qk_cholesky(qk_ctx *ctx, float *A, int64_t n, int upper)
{
	QK_CALL(ctx, cholesky, "cholesky", A, n, upper);
}

int qk_tri_inverse(qk_ctx *ctx, float *A, int64_t n, int upper)
{
	QK_CALL(ctx, tri_inverse, "triangular inverse", A, n, upper);
}

int qk_gptq_hdiag(qk_ctx *ctx, const float *H, int64_t n, float *diag, int64_t *bad)
{
	QK_CALL(ctx, gptq_hdiag, "gptq hdiag", H, n, diag, bad);
}

int qk_gptq_permute(qk_ctx *ctx, float *H, int64_t n, const int64_t *sigma)
{
	QK_CALL(ctx, gptq_permute, "gptq permute", H, n, sigma);
}

int qk_gptq_factor(qk_ctx *ctx, float *H, int64_t n, const float *diag, double lambda)
{
	QK_CALL(ctx, gptq_factor, "gptq factor", H, n, diag, lambda);
}

int qk_gptq_minmax(qk_ctx *ctx, const float *W, size_t n, float *mn, float *mx)
{
	QK_CALL(ctx, gptq_minmax, "gptq minmax", W, n, mn, mx);
}

int qk_gptq_params(qk_ctx *ctx, const qk_qspec *q, const qk_gptq_mat *m, int nmat,
                   int64_t cols, const float *colw)
{
	QK_CALL(ctx, gptq_params, "gptq params", q, m, nmat, cols, colw);
}

int qk_gptq_rtn(qk_ctx *ctx, const qk_qspec *q, const qk_gptq_mat *m, int nmat, int64_t cols,
                const float *colw)
{
	QK_CALL(ctx, gptq_rtn, "gptq rtn", q, m, nmat, cols, colw);
}

int qk_gptq_errors(qk_ctx *ctx, const qk_qspec *q, const qk_gptq_mat *m, int nmat, int64_t cols,
                   const float *V, const int64_t *perm, const uint8_t *dead)
{
	QK_CALL(ctx, gptq_errors, "gptq errors", q, m, nmat, cols, V, perm, dead);
}

int qk_gptq_sweep(qk_ctx *ctx, const qk_qspec *q, const qk_gptq_mat *m, int nmat, int64_t cols,
                  const float *V, const int64_t *perm, const uint8_t *dead, const float *colw,
                  int64_t block, int dynamic)
{
	QK_CALL(ctx, gptq_sweep, "gptq sweep", q, m, nmat, cols, V, perm, dead, colw, block, dynamic);
}

/* ---------------------------------------------------------------- AWQ support */

int qk_awq_qdq(qk_ctx *ctx, const qk_awqspec *q, float *out, const float *W, int64_t rows,
               int64_t cols, const float *s, const float *clip, int8_t *codes, float *scales,
               float *zeros)
{
	QK_CALL(ctx, awq_qdq, "awq quantize", q, out, W, rows, cols, s, clip, codes, scales, zeros);
}

int qk_awq_wmean(qk_ctx *ctx, const float *W, int64_t rows, int64_t cols, int64_t group,
                 double *acc)
{
	QK_CALL(ctx, awq_wmean, "awq weight mean", W, rows, cols, group, acc);
}

int qk_awq_clip(qk_ctx *ctx, const qk_awqspec *q, const float *W, int64_t rows, int64_t cols,
                const float *X, int64_t n, int steps, int grid, float *clip, int32_t *shrink)
{
	QK_CALL(ctx, awq_clip, "awq clip search", q, W, rows, cols, X, n, steps, grid, clip, shrink);
}
