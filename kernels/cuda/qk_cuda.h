/*
 * qk_cuda.h - internals shared by the CUDA kernels (not part of the API;
 * doc/cuda.md is the design).
 *
 * qk_cuda_backend (qk_cuda_ctx.cu) is the table of the qk_cuda_* functions
 * below; kernels/qk_dispatch.c reaches them only through it. They are C++
 * compiled by nvcc, with C linkage.
 *
 * Execution model. A context owns one CUDA stream, a cuBLAS and a cuSOLVER
 * handle bound to it, and its scratch memory. Every operation queues its
 * work on that stream and waits for it before returning, so an operation
 * is complete when it returns, exactly as on the CPU: memory written by one
 * context may be read by another at once, host arguments may be freed, and
 * the scratch buffers are free again for the next operation. (Overlapping
 * copies with compute needs asynchronous operations in kernels.h, which do
 * not exist yet: doc/cuda.md, "Residency".)
 *
 * Numbers. Element-wise results that the CPU computes bit for bit (storage
 * conversions, quantize-dequantize, scaling, RMSNorm's and RoPE's
 * products) are computed with the same IEEE operations in the same order:
 * explicit __fmul_rn / __fadd_rn / __fsub_rn / __fdiv_rn where nvcc would
 * otherwise contract a product and a sum into one FMA, and the bit-level
 * conversions of qc_num (qk_cuda_num.h). Reductions run in a fixed tree
 * (deterministic run to run, a different order than the CPU's index order:
 * sums differ from the CPU's in the last bits; maxima and first indices are
 * exact). GEMMs go through cuBLAS in the context's math mode (QK_CUDA_MATH,
 * read when the context is made):
 *     bf16  BF16 tensor cores with FP32 accumulation (the default)
 *     tf32  TF32 tensor cores with FP32 accumulation
 *     fp32  plain FP32 (CUBLAS_COMPUTE_32F), the CPU's numbers up to order
 * for qk_gemm, qk_linear, qk_hessian_accum and attention's products; the
 * GPTQ solver's own products, Cholesky and the triangular inverse are FP32
 * in every mode.
 *
 * QK_CUDA_EMU: compiled by the host compiler against tests/cuda/emu (the
 * runtime, cuBLAS and cuSOLVER emulated on the CPU) for the emulator tests;
 * the code is the same, kernels are launched through QK_LAUNCH.
 */
#ifndef QK_CUDA_H
#define QK_CUDA_H

#ifdef QK_CUDA_EMU
#include "cuda_emu.h"
#else
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cusolverDn.h>
#endif

#include <math.h>
#include <stddef.h>
#include <stdint.h>

extern "C" {
#include "qc_err.h"
#include "qk_backend.h"
}

/*
 * cuBLAS and cuSOLVER are opened when the first CUDA context is made
 * (dlopen, qk_cuda_load), not linked: every tool links the CUDA objects, and
 * loading those libraries (over a gigabyte with their dependencies) at the
 * start of every process, CPU runs included, would cost seconds. The CUDA
 * runtime is linked statically (it opens the driver itself at first use).
 * The calls below go through qk_cl, whose members have the exact types of
 * the functions the headers declare; the macros send the names there.
 */
#ifndef QK_CUDA_EMU
typedef struct qk_culib {
	decltype(&cublasCreate_v2) blas_create;
	decltype(&cublasDestroy_v2) blas_destroy;
	decltype(&cublasSetStream_v2) blas_set_stream;
	decltype(&cublasGetStatusString) blas_status;
	decltype(&cublasGemmEx_64) gemm;
	decltype(&cublasGemmStridedBatchedEx_64) gemm_batched;
	decltype(&cublasSsyrk_v2_64) syrk;
	decltype(&cublasStrmm_v2_64) trmm;
	decltype(&cusolverDnCreate) sv_create;
	decltype(&cusolverDnDestroy) sv_destroy;
	decltype(&cusolverDnSetStream) sv_set_stream;
	decltype(&cusolverDnCreateParams) sv_params;
	decltype(&cusolverDnDestroyParams) sv_destroy_params;
	decltype(&cusolverDnXpotrf_bufferSize) potrf_size;
	decltype(&cusolverDnXpotrf) potrf;
	decltype(&cusolverDnXtrtri_bufferSize) trtri_size;
	decltype(&cusolverDnXtrtri) trtri;
} qk_culib;
extern qk_culib qk_cl;
#define cublasCreate_v2 qk_cl.blas_create
#define cublasDestroy_v2 qk_cl.blas_destroy
#define cublasSetStream_v2 qk_cl.blas_set_stream
#define cublasGetStatusString qk_cl.blas_status
#define cublasGemmEx_64 qk_cl.gemm
#define cublasGemmStridedBatchedEx_64 qk_cl.gemm_batched
#define cublasSsyrk_v2_64 qk_cl.syrk
#define cublasStrmm_v2_64 qk_cl.trmm
#define cusolverDnCreate qk_cl.sv_create
#define cusolverDnDestroy qk_cl.sv_destroy
#define cusolverDnSetStream qk_cl.sv_set_stream
#define cusolverDnCreateParams qk_cl.sv_params
#define cusolverDnDestroyParams qk_cl.sv_destroy_params
#define cusolverDnXpotrf_bufferSize qk_cl.potrf_size
#define cusolverDnXpotrf qk_cl.potrf
#define cusolverDnXtrtri_bufferSize qk_cl.trtri_size
#define cusolverDnXtrtri qk_cl.trtri
#endif

/* Open cuBLAS and cuSOLVER once per process: 0, or QC_EUNSUPPORTED with
 * the loader's message (the same failure again on later calls). */
int qk_cuda_load(void);

/* Launch kern over grid x block threads with smem bytes of dynamic shared
 * memory on stream st (kern is one name: a template takes one argument). */
#ifdef QK_CUDA_EMU
#define QK_LAUNCH(kern, grid, block, smem, st, ...) \
	emu_launch(#kern, (grid), (block), (smem), (st), kern, __VA_ARGS__)
#else
#define QK_LAUNCH(kern, grid, block, smem, st, ...) \
	kern<<<(grid), (block), (smem), (st)>>>(__VA_ARGS__)
#endif

/* Dynamic shared memory of a kernel as an array of T named `name`. */
#ifdef QK_CUDA_EMU
#define QK_DYN_SHARED(T, name) T *name = reinterpret_cast<T *>(emu_dyn_smem())
#else
#define QK_DYN_SHARED(T, name)                                        \
	extern __shared__ __align__(16) unsigned char qk_dyn_smem_[]; \
	T *name = reinterpret_cast<T *>(qk_dyn_smem_)
#endif

#define QK_DEV static __device__ __forceinline__
#define QK_DEV_MEMBER __device__ __forceinline__

/* GEMM math modes (QK_CUDA_MATH) */
enum { QK_MATH_FP32 = 0, QK_MATH_TF32 = 1, QK_MATH_BF16 = 2 };

/* A growable device buffer (contents not kept when it grows). */
typedef struct qk_cubuf {
	void *p;
	size_t n;
} qk_cubuf;

typedef struct qk_cuda {
	int device;
	int math;                    /* QK_MATH_* */
	int tiny;                    /* QK_CUDA_TINY=1: tiny blocks and chunks, so
	                                that small test shapes take every path of
	                                the blocked and chunked loops */
	cudaStream_t st;
	cublasHandle_t blas;
	cusolverDnHandle_t solver;
	cusolverDnParams_t sparams;
	qk_cubuf scratch;            /* an operation's working memory */
	qk_cubuf work;               /* cuSOLVER's workspace */
	qk_cubuf res;                /* small results on their way to the host */
	void *hwork;                 /* cuSOLVER's host workspace */
	size_t hwork_n;
} qk_cuda;

static inline qk_cuda *qk_cu(qk_ctx *ctx) { return (qk_cuda *)ctx->impl; }

/* A block or chunk size of `normal` (bytes or items), or `tiny` under
 * QK_CUDA_TINY=1. */
static inline size_t qk_cu_size(qk_ctx *ctx, size_t normal, size_t tiny)
{
	return qk_cu(ctx)->tiny ? tiny : normal;
}

/* ---------------------------------------------------------------- errors */

/* QC_ENOMEM for an allocation failure, else QC_EDEVICE, with
 * "op: what failed: CUDA's message". */
int qk_cuda_err(const char *op, cudaError_t e, const char *what);
int qk_cuda_blas_err(const char *op, cublasStatus_t s, const char *what);
int qk_cuda_solver_err(const char *op, cusolverStatus_t s, const char *what);

#define CU_TRY(op, expr)                                         \
	do {                                                     \
		cudaError_t cu_e_ = (expr);                      \
		if (cu_e_ != cudaSuccess)                        \
			return qk_cuda_err((op), cu_e_, #expr);  \
	} while (0)
#define BLAS_TRY(op, expr)                                            \
	do {                                                          \
		cublasStatus_t bl_s_ = (expr);                        \
		if (bl_s_ != CUBLAS_STATUS_SUCCESS)                   \
			return qk_cuda_blas_err((op), bl_s_, #expr);  \
	} while (0)
#define SOLVER_TRY(op, expr)                                            \
	do {                                                            \
		cusolverStatus_t sv_s_ = (expr);                        \
		if (sv_s_ != CUSOLVER_STATUS_SUCCESS)                   \
			return qk_cuda_solver_err((op), sv_s_, #expr);  \
	} while (0)
/* after a launch: a bad configuration is reported here, a fault at the
 * operation's final qk_cuda_sync */
#define LAUNCH_TRY(op) CU_TRY(op, cudaGetLastError())

/* Make the context's device current on this thread (a context may be used
 * from any thread, one at a time). */
int qk_cuda_enter(qk_ctx *ctx, const char *op);
/* Wait for the context's stream: the operation's last step. */
int qk_cuda_sync(qk_ctx *ctx, const char *op);

/* Device buffers of at least n bytes, 256-byte aligned; NULL with the
 * message set on failure. scratch is for an operation's own arrays (carve
 * it with qk_carve), res for small results to download. */
void *qk_cuda_scratch(qk_ctx *ctx, size_t n, const char *op);
void *qk_cuda_res(qk_ctx *ctx, size_t n, const char *op);
/* cuSOLVER's device and host workspaces */
void *qk_cuda_work(qk_ctx *ctx, size_t n, const char *op);
void *qk_cuda_hwork(qk_ctx *ctx, size_t n, const char *op);

/* Carving one scratch buffer into arrays: offsets rounded to 256 bytes. */
static inline size_t qk_align256(size_t n) { return (n + 255) & ~(size_t)255; }
static inline void *qk_carve(char **p, size_t n)
{
	void *r = *p;
	*p += qk_align256(n);
	return r;
}

/* Blocks of `threads` for n items, at most `cap` (grid-stride loops cover
 * the rest). */
static inline unsigned qk_blocks(size_t n, unsigned threads, unsigned cap)
{
	size_t b = (n + threads - 1) / threads;
	return b < 1 ? 1u : b > cap ? cap : (unsigned)b;
}

/* Upload host memory (synchronously with respect to the caller: pageable
 * memory is staged before the call returns). */
int qk_cuda_put(qk_ctx *ctx, void *dev, const void *host, size_t bytes, const char *op);
/* Download into host memory, waiting for the stream. */
int qk_cuda_get(qk_ctx *ctx, void *host, const void *dev, size_t bytes, const char *op);

/* ---------------------------------------------------------------- GEMM (qk_cuda_blas.cu) */

/* Row-major C[M,N] = alpha op(A) op(B) + beta C on the context's stream in
 * the given math mode (QK_MATH_*); no argument checks. */
int qk_cuda_gemm_rm(qk_ctx *ctx, const char *op, int math, int ta, int tb, int64_t M, int64_t N,
                    int64_t K, float alpha, const float *A, int64_t lda, const float *B,
                    int64_t ldb, float beta, float *C, int64_t ldc);
/* The same for `batch` products whose matrices are sa, sb, sc floats apart. */
int qk_cuda_gemm_rm_batched(qk_ctx *ctx, const char *op, int math, int ta, int tb, int64_t M,
                            int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                            int64_t sa, const float *B, int64_t ldb, int64_t sb, float beta,
                            float *C, int64_t ldc, int64_t sc, int64_t batch);
/* In-place inverse of the triangular A [n, n] (row-major, upper or lower),
 * the other triangle zeroed; *singular = the 1-based index of a zero
 * diagonal entry, or 0. No NaN check. */
int qk_cuda_trtri(qk_ctx *ctx, const char *op, float *A, int64_t n, int upper, int *singular);
/* First NaN (nan_only) or NaN/Inf of the upper (upper 1) or lower triangle
 * of A [n, n] (row-major, diagonal included) in row order: *first = i n + j,
 * or -1. */
int qk_cuda_tri_scan(qk_ctx *ctx, const char *op, const float *A, int64_t n, int upper,
                     int nan_only, int64_t *first);
/* Copy A's upper triangle onto its strict lower one (row-major, in place). */
int qk_cuda_mirror_upper(qk_ctx *ctx, const char *op, float *A, int64_t n);

/* ---------------------------------------------------------------- the table's functions */

extern "C" {
/* qk_cuda_ctx.cu: context, memory, conversion */
int qk_cuda_ctx_init(qk_ctx *ctx);
void qk_cuda_ctx_fini(qk_ctx *ctx);
void *qk_cuda_alloc(qk_ctx *ctx, size_t bytes);
void qk_cuda_free(qk_ctx *ctx, void *p);
int qk_cuda_upload(qk_ctx *ctx, void *dev_dst, const void *host_src, size_t bytes);
int qk_cuda_download(qk_ctx *ctx, void *host_dst, const void *dev_src, size_t bytes);
int qk_cuda_copy(qk_ctx *ctx, void *dst, const void *src, size_t bytes);
int qk_cuda_zero(qk_ctx *ctx, void *p, size_t bytes);
int qk_cuda_to_f32(qk_ctx *ctx, float *dst, const void *src, qc_dtype dt, size_t n);
int qk_cuda_dequant(qk_ctx *ctx, float *w, const void *codes, qc_dtype code_dt, int64_t rows,
                    int64_t cols, const float *scale, const float *zero_point, int64_t scale_rs,
                    int64_t group);
int qk_cuda_bf16_store(qk_ctx *ctx, void *dst, const float *src, size_t n);
int qk_cuda_bf16_load(qk_ctx *ctx, float *dst, const void *src, size_t n);
int qk_cuda_fp8_qdq(qk_ctx *ctx, float *x, size_t n, float scale);

/* qk_cuda_blas.cu */
int qk_cuda_gemm(qk_ctx *ctx, int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
                 float alpha, const float *A, int64_t lda, const float *B, int64_t ldb,
                 float beta, float *C, int64_t ldc);
int qk_cuda_linear(qk_ctx *ctx, float *y, const float *x, const float *w, const float *bias,
                   int64_t T, int64_t in, int64_t out, int accumulate);
int qk_cuda_linear_q4(qk_ctx *ctx, float *y, const float *x, const uint8_t *q4, const float *s,
                      const float *z, const float *bias, int64_t T, int64_t in, int64_t out,
                      int64_t group, int accumulate);
int qk_cuda_hessian_accum(qk_ctx *ctx, float *H, const float *X, int64_t T, int64_t n,
                          float alpha);
int qk_cuda_sym_upper(qk_ctx *ctx, float *H, int64_t n);
int qk_cuda_cholesky(qk_ctx *ctx, float *A, int64_t n, int upper);
int qk_cuda_tri_inverse(qk_ctx *ctx, float *A, int64_t n, int upper);

/* qk_cuda_ops.cu */
int qk_cuda_rmsnorm(qk_ctx *ctx, float *y, const float *x, const float *w, int64_t T, int64_t D,
                    float eps);
int qk_cuda_rope_apply(qk_ctx *ctx, float *x, int64_t T, int64_t n_heads, int64_t head_dim,
                       int64_t pos0, const float *inv_freq);
int qk_cuda_attention(qk_ctx *ctx, float *out, const float *q, const float *k, const float *v,
                      int64_t T, int64_t n_heads, int64_t n_kv, int64_t head_dim, float scale);
int qk_cuda_attention_kv(qk_ctx *ctx, float *out, const float *q, const float *k, const float *v,
                         int64_t T, int64_t past, int64_t n_heads, int64_t n_kv,
                         int64_t head_dim, float scale);
int qk_cuda_attention_ex(qk_ctx *ctx, float *out, const float *q, const float *k, const float *v,
                         int64_t T, int64_t past, int64_t n_heads, int64_t n_kv,
                         int64_t head_dim, const qk_attn *a);
int qk_cuda_swiglu(qk_ctx *ctx, float *out, const float *gate, const float *up, size_t n);
int qk_cuda_geglu(qk_ctx *ctx, float *out, const float *gate, const float *up, size_t n);
int qk_cuda_softcap(qk_ctx *ctx, float *x, size_t n, float cap);
int qk_cuda_log_softmax(qk_ctx *ctx, float *y, const float *x, int64_t T, int64_t V);
int qk_cuda_nll(qk_ctx *ctx, double *nll, const float *x, const int32_t *target, int64_t T,
                int64_t V);
int qk_cuda_softmax_fold(qk_ctx *ctx, qk_rowstat *st, const float *z, const float *z2,
                         int64_t ldz, int64_t T, int64_t n, int64_t col0, const int32_t *target);
int qk_cuda_actq_apply(qk_ctx *ctx, float *x, int64_t T, int64_t D, const qk_actq *q);

/* qk_cuda_reduce.cu */
int qk_cuda_absmax(qk_ctx *ctx, const float *x, size_t n, float *amax);
int qk_cuda_sumsq(qk_ctx *ctx, const float *x, size_t n, double *sum);
int qk_cuda_sub(qk_ctx *ctx, float *d, const float *a, const float *b, size_t n);
int qk_cuda_add(qk_ctx *ctx, float *d, const float *a, const float *b, size_t n);
int qk_cuda_diff_sumsq(qk_ctx *ctx, const float *a, const float *b, size_t n, double *d2,
                       double *b2);
int qk_cuda_nonfinite(qk_ctx *ctx, const float *x, size_t n, int64_t *first);
int qk_cuda_col_absmax(qk_ctx *ctx, const float *x, int64_t rows, int64_t cols, float *amax);
int qk_cuda_scale_cols(qk_ctx *ctx, float *x, int64_t rows, int64_t cols, const float *s,
                       int divide);
int qk_cuda_scale_rows(qk_ctx *ctx, float *x, int64_t rows, int64_t cols, const float *s,
                       int divide);
int qk_cuda_q8_rows(qk_ctx *ctx, float *w, int64_t rows, int64_t cols, const float *s);
int qk_cuda_col_abssum(qk_ctx *ctx, const float *x, int64_t rows, int64_t cols, double *sum);

/* qk_cuda_gptq.cu */
int qk_cuda_gptq_hdiag(qk_ctx *ctx, const float *H, int64_t n, float *diag, int64_t *bad);
int qk_cuda_gptq_permute(qk_ctx *ctx, float *H, int64_t n, const int64_t *sigma);
int qk_cuda_gptq_factor(qk_ctx *ctx, float *H, int64_t n, const float *diag, double lambda);
int qk_cuda_gptq_minmax(qk_ctx *ctx, const float *W, size_t n, float *mn, float *mx);
int qk_cuda_gptq_params(qk_ctx *ctx, const qk_qspec *q, const qk_gptq_mat *m, int nmat,
                        int64_t cols, const float *colw);
int qk_cuda_gptq_rtn(qk_ctx *ctx, const qk_qspec *q, const qk_gptq_mat *m, int nmat,
                     int64_t cols, const float *colw);
int qk_cuda_gptq_errors(qk_ctx *ctx, const qk_qspec *q, const qk_gptq_mat *m, int nmat,
                        int64_t cols, const float *V, const int64_t *perm, const uint8_t *dead);
int qk_cuda_gptq_sweep(qk_ctx *ctx, const qk_qspec *q, const qk_gptq_mat *m, int nmat,
                       int64_t cols, const float *V, const int64_t *perm, const uint8_t *dead,
                       const float *colw, int64_t block, int dynamic);
}

#endif
