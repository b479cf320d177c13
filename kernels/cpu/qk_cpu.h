/*
 * qk_cpu.h - internals shared by the CPU kernels (not part of the API).
 *
 * qk_cpu_backend (qk_ctx.c) is the table of the qk_cpu_* functions below;
 * kernels/qk_dispatch.c reaches them only through it.
 *
 * Work that is not a BLAS call is split over rows with qk_cpu_parallel:
 * the range [0, n) is cut into one contiguous block per thread
 * (qc_pool_range), each row is computed by exactly one thread with the same
 * code as in a serial run, so results do not depend on the thread count at
 * all.
 */
#ifndef QK_CPU_H
#define QK_CPU_H

#include <stddef.h>
#include <stdint.h>

#include "qk_backend.h"

typedef void (*qk_range_fn)(void *arg, int64_t begin, int64_t end);

/* Run fn over [0, n) on up to ctx->threads threads (at most 64), with at
 * least min_per_thread items each (small jobs stay on the calling thread). */
void qk_cpu_parallel(const qk_ctx *ctx, int64_t n, int64_t min_per_thread, qk_range_fn fn,
                     void *arg);

/* QC_EINVAL unless ctx is a CPU context (the CPU kernels were called with a
 * context of another device, which the dispatch should have prevented). */
int qk_cpu_check(const qk_ctx *ctx, const char *op);

/* OpenBLAS's process-wide thread count set to n if it is not n already
 * (kernels.h: the count is applied per call, from the context). */
void qk_cpu_blas_threads(int n);

/* large blocks, kept for reuse (qk_mem.c): 2 MiB aligned and offered
 * transparent huge pages; qk_alloc takes its blocks of QK_BIG_MIN bytes and
 * more from here. big_free returns
 * 1 when p was such a block (then kept or released), 0 otherwise (not
 * touched). big_stats: bytes of live and cached blocks, and the most ever
 * live. big_release frees every cached block. */
#define QK_BIG_MIN ((size_t)32 << 20)
void *qk_cpu_big_alloc(size_t bytes);
int qk_cpu_big_free(void *p);
void qk_cpu_big_stats(size_t *live_bytes, size_t *cached_bytes, size_t *peak_bytes);
void qk_cpu_big_release(void);

/* memory (qk_ctx.c) */
void *qk_cpu_alloc(qk_ctx *ctx, size_t bytes);
void qk_cpu_free(qk_ctx *ctx, void *p);
int qk_cpu_upload(qk_ctx *ctx, void *dev_dst, const void *host_src, size_t bytes);
int qk_cpu_download(qk_ctx *ctx, void *host_dst, const void *dev_src, size_t bytes);
int qk_cpu_to_f32(qk_ctx *ctx, float *dst, const void *src, qc_dtype dt, size_t n);

/* BLAS and LAPACK (qk_blas.c) */
int qk_cpu_gemm(qk_ctx *ctx, int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
                float alpha, const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                float *C, int64_t ldc);
int qk_cpu_linear(qk_ctx *ctx, float *y, const float *x, const float *w, const float *bias,
                  int64_t T, int64_t in, int64_t out, int accumulate);
int qk_cpu_hessian_accum(qk_ctx *ctx, float *H, const float *X, int64_t T, int64_t n,
                         float alpha);
int qk_cpu_sym_upper(qk_ctx *ctx, float *H, int64_t n);
int qk_cpu_cholesky(qk_ctx *ctx, float *A, int64_t n, int upper);
int qk_cpu_tri_inverse(qk_ctx *ctx, float *A, int64_t n, int upper);

/* GPTQ's steps (qk_gptq.c) */
int qk_cpu_gptq_hdiag(qk_ctx *ctx, const float *H, int64_t n, float *diag, int64_t *bad);
int qk_cpu_gptq_permute(qk_ctx *ctx, float *H, int64_t n, const int64_t *sigma);
int qk_cpu_gptq_factor(qk_ctx *ctx, float *H, int64_t n, const float *diag, double lambda);
int qk_cpu_gptq_minmax(qk_ctx *ctx, const float *W, size_t n, float *mn, float *mx);
int qk_cpu_gptq_params(qk_ctx *ctx, const qk_qspec *q, const qk_gptq_mat *m, int nmat,
                       int64_t cols, const float *colw);
int qk_cpu_gptq_rtn(qk_ctx *ctx, const qk_qspec *q, const qk_gptq_mat *m, int nmat, int64_t cols,
                    const float *colw);
int qk_cpu_gptq_errors(qk_ctx *ctx, const qk_qspec *q, const qk_gptq_mat *m, int nmat,
                       int64_t cols, const float *V, const int64_t *perm, const uint8_t *dead);
int qk_cpu_gptq_sweep(qk_ctx *ctx, const qk_qspec *q, const qk_gptq_mat *m, int nmat,
                      int64_t cols, const float *V, const int64_t *perm, const uint8_t *dead,
                      const float *colw, int64_t block, int dynamic);

#if defined(__x86_64__)
#include <immintrin.h>
/* the sum of a vector's eight lanes (the AVX2 row products' last step) */
__attribute__((target("avx2"))) static inline float qk_cpu_hsum256(__m256 a)
{
	__m128 h = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
	h = _mm_add_ps(h, _mm_movehl_ps(h, h));
	h = _mm_add_ss(h, _mm_shuffle_ps(h, h, 1));
	return _mm_cvtss_f32(h);
}
#endif

/* qk_wbf16.c; qk_cpu_bf16_dot is one row's product, plain (simd 0) or
 * with AVX2 where the CPU has it (simd 1), for the tests of both paths */
int qk_cpu_linear_bf16(qk_ctx *ctx, float *y, const float *x, const uint16_t *w,
                       const float *bias, int64_t T, int64_t in, int64_t out, int accumulate);
float qk_cpu_bf16_dot(const uint16_t *w, const float *x, int64_t n, int simd);

/* row kernels (qk_ops.c) */
/* qk_q4.c; qk_cpu_q4_path caps the decoding rows' path (0 plain, 1 AVX2, 2
 * AVX2 on x in nibble order, 3 AVX-512 on it; -1 the fastest the CPU has)
 * and returns the cap applied, for the tests of every path */
int qk_cpu_q4_path(int path);
int qk_cpu_linear_q4(qk_ctx *ctx, float *y, const float *x, const uint8_t *q4, const float *s,
                     const float *z, const float *bias, int64_t T, int64_t in, int64_t out,
                     int64_t group, int accumulate);
int qk_cpu_rmsnorm(qk_ctx *ctx, float *y, const float *x, const float *w, int64_t T, int64_t D,
                   float eps);
int qk_cpu_rope_apply(qk_ctx *ctx, float *x, int64_t T, int64_t n_heads, int64_t head_dim,
                      int64_t pos0, const float *inv_freq);
int qk_cpu_attention(qk_ctx *ctx, float *out, const float *q, const float *k, const float *v,
                     int64_t T, int64_t n_heads, int64_t n_kv, int64_t head_dim, float scale);
int qk_cpu_attention_kv(qk_ctx *ctx, float *out, const float *q, const float *k, const float *v,
                        int64_t T, int64_t past, int64_t n_heads, int64_t n_kv, int64_t head_dim,
                        float scale);
int qk_cpu_attention_ex(qk_ctx *ctx, float *out, const float *q, const float *k, const float *v,
                        int64_t T, int64_t past, int64_t n_heads, int64_t n_kv, int64_t head_dim,
                        const qk_attn *a);
int qk_cpu_swiglu(qk_ctx *ctx, float *out, const float *gate, const float *up, size_t n);
int qk_cpu_geglu(qk_ctx *ctx, float *out, const float *gate, const float *up, size_t n);
int qk_cpu_softcap(qk_ctx *ctx, float *x, size_t n, float cap);
int qk_cpu_log_softmax(qk_ctx *ctx, float *y, const float *x, int64_t T, int64_t V);
int qk_cpu_nll(qk_ctx *ctx, double *nll, const float *x, const int32_t *target, int64_t T,
               int64_t V);
int qk_cpu_softmax_fold(qk_ctx *ctx, qk_rowstat *st, const float *z, const float *z2,
                        int64_t ldz, int64_t T, int64_t n, int64_t col0, const int32_t *target);
int qk_cpu_actq_apply(qk_ctx *ctx, float *x, int64_t T, int64_t D, const qk_actq *q);
int qk_cpu_fp8_qdq(qk_ctx *ctx, float *x, size_t n, float scale);
int qk_cpu_dequant(qk_ctx *ctx, float *w, const void *codes, qc_dtype code_dt, int64_t rows,
                   int64_t cols, const float *scale, const float *zero_point, int64_t scale_rs,
                   int64_t group);

/* reductions, copies, storage dtypes (qk_reduce.c) */
int qk_cpu_absmax(qk_ctx *ctx, const float *x, size_t n, float *amax);
int qk_cpu_sumsq(qk_ctx *ctx, const float *x, size_t n, double *sum);
int qk_cpu_sub(qk_ctx *ctx, float *d, const float *a, const float *b, size_t n);
int qk_cpu_add(qk_ctx *ctx, float *d, const float *a, const float *b, size_t n);
int qk_cpu_copy(qk_ctx *ctx, void *dst, const void *src, size_t bytes);
int qk_cpu_zero(qk_ctx *ctx, void *p, size_t bytes);
int qk_cpu_diff_sumsq(qk_ctx *ctx, const float *a, const float *b, size_t n, double *d2,
                      double *b2);
int qk_cpu_nonfinite(qk_ctx *ctx, const float *x, size_t n, int64_t *first);
int qk_cpu_col_absmax(qk_ctx *ctx, const float *x, int64_t rows, int64_t cols, float *amax);
int qk_cpu_scale_cols(qk_ctx *ctx, float *x, int64_t rows, int64_t cols, const float *s,
                      int divide);
int qk_cpu_scale_rows(qk_ctx *ctx, float *x, int64_t rows, int64_t cols, const float *s,
                      int divide);
int qk_cpu_q8_rows(qk_ctx *ctx, float *w, int64_t rows, int64_t cols, const float *s);
int qk_cpu_col_abssum(qk_ctx *ctx, const float *x, int64_t rows, int64_t cols, double *sum);
int qk_cpu_bf16_store(qk_ctx *ctx, void *dst, const float *src, size_t n);
int qk_cpu_bf16_load(qk_ctx *ctx, float *dst, const void *src, size_t n);

/* AWQ's steps (qk_awq.c) */
int qk_cpu_awq_qdq(qk_ctx *ctx, const qk_awqspec *q, float *out, const float *W, int64_t rows,
                   int64_t cols, const float *s, const float *clip, int8_t *codes, float *scales,
                   float *zeros);
int qk_cpu_awq_wmean(qk_ctx *ctx, const float *W, int64_t rows, int64_t cols, int64_t group,
                     double *acc);
int qk_cpu_awq_clip(qk_ctx *ctx, const qk_awqspec *q, const float *W, int64_t rows, int64_t cols,
                    const float *X, int64_t n, int steps, int grid, float *clip, int32_t *shrink);

#endif
