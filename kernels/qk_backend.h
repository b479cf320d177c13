/*
 * qk_backend.h - the backend interface behind kernels.h (internal to
 * kernels/: only the dispatch and the backends include it).
 *
 * A backend is a table of function pointers, one per operation of
 * kernels.h. qk_ctx_new picks the table of the context's device
 * (qk_cpu_backend in kernels/cpu; a CUDA table in kernels/cuda when the
 * build has one) and every public function is a thin wrapper in
 * qk_dispatch.c that checks the context, enters the memory guard (below),
 * calls ctx->be->op and leaves the guard. Callers never branch on the
 * device; backends never see a NULL context.
 *
 * An entry gets exactly the arguments of its public function, already
 * checked for a non-NULL context; argument checks beyond that (shapes,
 * dtypes) are the backend's, with the same messages on every device. An
 * entry calls other operations of its own backend directly (qk_cpu_gemm),
 * not through the public functions.
 *
 * Adding an operation qk_foo(qk_ctx *ctx, ARGS):
 *   1. kernels.h: declare qk_foo and document it (shapes, which pointers
 *      are device memory, numerics);
 *   2. here: a member  int (*foo)(qk_ctx *ctx, ARGS);  in the section it
 *      belongs to (qk_dispatch.c refuses a context whose table lacks it:
 *      QC_EUNSUPPORTED naming the operation);
 *   3. qk_dispatch.c: the wrapper, one line through QK_CALL with the
 *      arguments' names after the operation's name for messages:
 *          int qk_foo(qk_ctx *ctx, float *x, size_t n)
 *          { QK_CALL(ctx, foo, "foo", x, n); }
 *   4. kernels/cpu: int qk_cpu_foo(qk_ctx *ctx, ARGS) (declared in qk_cpu.h)
 *      and .foo = qk_cpu_foo in qk_cpu_backend (kernels/cpu/qk_ctx.c);
 *   5. tests/unit/test_kernels.c: a plain reference loop it is compared
 *      against.
 * An operation implemented outside the table would run unguarded: under
 * QK_DEBUG_MEMORY=1 it faults on the first access to device memory.
 */
#ifndef QK_BACKEND_H
#define QK_BACKEND_H

/* kernels/cuda compiles this header as C++ (inside extern "C"): the guard
 * below, which only the C files use, is C11 alone */
#ifndef __cplusplus
#include <stdatomic.h>
#endif
#include <stddef.h>
#include <stdint.h>

#include "kernels.h"

typedef struct qk_backend {
	const char *name;

	/* context: set up the backend's own state (ctx->impl) once the common
	 * fields are filled in; release it. Either may be NULL. */
	int (*ctx_init)(qk_ctx *ctx);
	void (*ctx_fini)(qk_ctx *ctx);

	/* memory (not used for guarded allocations, see qk_guard_*) */
	void *(*alloc)(qk_ctx *ctx, size_t bytes);
	void (*free)(qk_ctx *ctx, void *p);
	int (*upload)(qk_ctx *ctx, void *dev_dst, const void *host_src, size_t bytes);
	int (*download)(qk_ctx *ctx, void *host_dst, const void *dev_src, size_t bytes);
	int (*copy)(qk_ctx *ctx, void *dst, const void *src, size_t bytes);
	int (*zero)(qk_ctx *ctx, void *p, size_t bytes);

	/* conversion */
	int (*to_f32)(qk_ctx *ctx, float *dst, const void *src, qc_dtype dt, size_t n);
	int (*dequant)(qk_ctx *ctx, float *w, const void *codes, qc_dtype code_dt, int64_t rows,
	               int64_t cols, const float *scale, const float *zero_point, int64_t scale_rs,
	               int64_t group);
	int (*bf16_store)(qk_ctx *ctx, void *dst, const float *src, size_t n);
	int (*bf16_load)(qk_ctx *ctx, float *dst, const void *src, size_t n);
	int (*fp8_qdq)(qk_ctx *ctx, float *x, size_t n, float scale);

	/* GEMM */
	int (*gemm)(qk_ctx *ctx, int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
	            float alpha, const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
	            float *C, int64_t ldc);
	int (*linear)(qk_ctx *ctx, float *y, const float *x, const float *w, const float *bias,
	              int64_t T, int64_t in, int64_t out, int accumulate);
	int (*linear_q4)(qk_ctx *ctx, float *y, const float *x, const uint8_t *q4, const float *s,
	                 const float *z, const float *bias, int64_t T, int64_t in, int64_t out,
	                 int64_t group, int accumulate);
	int (*linear_bf16)(qk_ctx *ctx, float *y, const float *x, const uint16_t *w,
	                   const float *bias, int64_t T, int64_t in, int64_t out, int accumulate);

	/* layers */
	int (*rmsnorm)(qk_ctx *ctx, float *y, const float *x, const float *w, int64_t T, int64_t D,
	               float eps);
	int (*rope_apply)(qk_ctx *ctx, float *x, int64_t T, int64_t n_heads, int64_t head_dim,
	                  int64_t pos0, const float *inv_freq);
	int (*attention)(qk_ctx *ctx, float *out, const float *q, const float *k, const float *v,
	                 int64_t T, int64_t n_heads, int64_t n_kv, int64_t head_dim, float scale);
	int (*attention_kv)(qk_ctx *ctx, float *out, const float *q, const float *k, const float *v,
	                    int64_t T, int64_t past, int64_t n_heads, int64_t n_kv, int64_t head_dim,
	                    float scale);
	int (*attention_ex)(qk_ctx *ctx, float *out, const float *q, const float *k, const float *v,
	                    int64_t T, int64_t past, int64_t n_heads, int64_t n_kv, int64_t head_dim,
	                    const qk_attn *a);
	int (*swiglu)(qk_ctx *ctx, float *out, const float *gate, const float *up, size_t n);
	int (*geglu)(qk_ctx *ctx, float *out, const float *gate, const float *up, size_t n);
	int (*softcap)(qk_ctx *ctx, float *x, size_t n, float cap);

	/* log-probabilities */
	int (*log_softmax)(qk_ctx *ctx, float *y, const float *x, int64_t T, int64_t V);
	int (*nll)(qk_ctx *ctx, double *nll, const float *x, const int32_t *target, int64_t T,
	           int64_t V);
	int (*softmax_fold)(qk_ctx *ctx, qk_rowstat *st, const float *z, const float *z2,
	                    int64_t ldz, int64_t T, int64_t n, int64_t col0, const int32_t *target);

	/* activation quantization */
	int (*actq_apply)(qk_ctx *ctx, float *x, int64_t T, int64_t D, const qk_actq *q);

	/* reductions and copies (copy is with memory above) */
	int (*absmax)(qk_ctx *ctx, const float *x, size_t n, float *amax);
	int (*sumsq)(qk_ctx *ctx, const float *x, size_t n, double *sum);
	int (*sub)(qk_ctx *ctx, float *d, const float *a, const float *b, size_t n);
	int (*add)(qk_ctx *ctx, float *d, const float *a, const float *b, size_t n);
	int (*diff_sumsq)(qk_ctx *ctx, const float *a, const float *b, size_t n, double *d2,
	                  double *b2);
	int (*nonfinite)(qk_ctx *ctx, const float *x, size_t n, int64_t *first);

	/* per-channel statistics and rescaling (SmoothQuant, AWQ) */
	int (*col_absmax)(qk_ctx *ctx, const float *x, int64_t rows, int64_t cols, float *amax);
	int (*scale_cols)(qk_ctx *ctx, float *x, int64_t rows, int64_t cols, const float *s,
	                  int divide);
	int (*scale_rows)(qk_ctx *ctx, float *x, int64_t rows, int64_t cols, const float *s,
	                  int divide);
	int (*q8_rows)(qk_ctx *ctx, float *w, int64_t rows, int64_t cols, const float *s);
	int (*col_abssum)(qk_ctx *ctx, const float *x, int64_t rows, int64_t cols, double *sum);

	/* GPTQ support */
	int (*hessian_accum)(qk_ctx *ctx, float *H, const float *X, int64_t T, int64_t n,
	                     float alpha);
	int (*sym_upper)(qk_ctx *ctx, float *H, int64_t n);
	int (*cholesky)(qk_ctx *ctx, float *A, int64_t n, int upper);
	int (*tri_inverse)(qk_ctx *ctx, float *A, int64_t n, int upper);
	int (*gptq_hdiag)(qk_ctx *ctx, const float *H, int64_t n, float *diag, int64_t *bad);
	int (*gptq_permute)(qk_ctx *ctx, float *H, int64_t n, const int64_t *sigma);
	int (*gptq_factor)(qk_ctx *ctx, float *H, int64_t n, const float *diag, double lambda);
	int (*gptq_minmax)(qk_ctx *ctx, const float *W, size_t n, float *mn, float *mx);
	int (*gptq_params)(qk_ctx *ctx, const qk_qspec *q, const qk_gptq_mat *m, int nmat,
	                   int64_t cols, const float *colw);
	int (*gptq_rtn)(qk_ctx *ctx, const qk_qspec *q, const qk_gptq_mat *m, int nmat, int64_t cols,
	                const float *colw);
	int (*gptq_errors)(qk_ctx *ctx, const qk_qspec *q, const qk_gptq_mat *m, int nmat,
	                   int64_t cols, const float *V, const int64_t *perm, const uint8_t *dead);
	int (*gptq_sweep)(qk_ctx *ctx, const qk_qspec *q, const qk_gptq_mat *m, int nmat,
	                  int64_t cols, const float *V, const int64_t *perm, const uint8_t *dead,
	                  const float *colw, int64_t block, int dynamic);

	/* AWQ support */
	int (*awq_qdq)(qk_ctx *ctx, const qk_awqspec *q, float *out, const float *W, int64_t rows,
	               int64_t cols, const float *s, const float *clip, int8_t *codes, float *scales,
	               float *zeros);
	int (*awq_wmean)(qk_ctx *ctx, const float *W, int64_t rows, int64_t cols, int64_t group,
	                 double *acc);
	int (*awq_clip)(qk_ctx *ctx, const qk_awqspec *q, const float *W, int64_t rows, int64_t cols,
	                const float *X, int64_t n, int steps, int grid, float *clip, int32_t *shrink);
} qk_backend;

struct qk_ctx {
	qk_device dev;
	int threads;             /* worker threads (CPU: also OpenBLAS's count for this context) */
	const qk_backend *be;
	int guarded;             /* QK_DEBUG_MEMORY=1 when it was made: qk_alloc gives guarded memory */
	void *impl;              /* the backend's own state (NULL on the CPU) */
};

extern const qk_backend qk_cpu_backend;
#ifdef QC_HAVE_CUDA
extern const qk_backend qk_cuda_backend;
#endif

/*
 * The memory guard of QK_DEBUG_MEMORY=1 (qk_guard.c). Guarded allocations
 * are mmap'd and kept in one process-wide registry, PROT_NONE whenever no
 * operation is running: every dispatched operation brackets its work with
 * qk_guard_enter / qk_guard_leave, which open every guarded allocation for
 * reading and writing when the first operation (of any context, on any
 * thread) starts and close them again when the last one ends. Memory of one
 * context may be passed to another context's operations (it is memory of
 * the device, not of the context), so the registry is not per context.
 * qk_guard_active is 0 until a guarded allocation exists: then enter/leave
 * cost one load each.
 */
#ifndef __cplusplus
extern _Atomic int qk_guard_active;
#endif
void *qk_guard_alloc(qk_ctx *ctx, size_t bytes);
/* 1 if p was a guarded allocation (now freed), 0 if it is not one */
int qk_guard_free(void *p);
void qk_guard_enter(void);
void qk_guard_leave(void);
/* 1 when QK_DEBUG_MEMORY asks for guarded memory (read once per call) */
int qk_guard_requested(void);

#endif
