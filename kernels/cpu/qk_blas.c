/*
 * qk_blas.c - the BLAS/LAPACK-backed kernels on the CPU: GEMM, Linear,
 * Hessian accumulation, Cholesky and triangular inverse (kernels.h). Each
 * sets OpenBLAS's thread count from its context before calling it.
 *
 * OpenBLAS's interface takes 32-bit int sizes (blasint); sizes beyond it are
 * refused rather than truncated.
 */
#include "qk_cpu.h"

#include <cblas.h>
#include <lapacke.h>
#include <limits.h>
#include <string.h>

#include "qc_err.h"

static int fits(int64_t v) { return v >= 0 && v <= INT_MAX; }

int qk_cpu_gemm(qk_ctx *ctx, int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
                float alpha, const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                float *C, int64_t ldc)
{
	QC_TRY(qk_cpu_check(ctx, "gemm"));
	if (!fits(M) || !fits(N) || !fits(K) || !fits(lda) || !fits(ldb) || !fits(ldc))
		return qc_seterr(QC_EINVAL, "gemm sizes out of range (%lld x %lld x %lld)",
		                 (long long)M, (long long)N, (long long)K);
	/* row strides must cover the rows as stored */
	if (lda < (trans_a ? M : K) || ldb < (trans_b ? K : N) || ldc < N)
		return qc_seterr(QC_EINVAL, "gemm leading dimension too small");
	if (M == 0 || N == 0)
		return 0;
	if (K == 0) {
		/* BLAS would scale C by beta; do the same explicitly */
		for (int64_t i = 0; i < M; i++)
			for (int64_t j = 0; j < N; j++)
				C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
		return 0;
	}
	qk_cpu_blas_threads(ctx->threads);
	cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
	            trans_b ? CblasTrans : CblasNoTrans, (blasint)M, (blasint)N, (blasint)K, alpha, A,
	            (blasint)lda, B, (blasint)ldb, beta, C, (blasint)ldc);
	return 0;
}

int qk_cpu_linear(qk_ctx *ctx, float *y, const float *x, const float *w, const float *bias,
                  int64_t T, int64_t in, int64_t out, int accumulate)
{
	QC_TRY(qk_cpu_check(ctx, "linear"));
	if (T < 0 || in <= 0 || out <= 0)
		return qc_seterr(QC_EINVAL, "linear: invalid shape [%lld, %lld] x [%lld, %lld]^T",
		                 (long long)T, (long long)in, (long long)out, (long long)in);
	float beta = accumulate ? 1.0f : 0.0f;
	if (bias) {
		/* y starts as (y +) bias, then the product is accumulated onto it */
		for (int64_t t = 0; t < T; t++) {
			float *r = y + t * out;
			if (accumulate)
				for (int64_t j = 0; j < out; j++)
					r[j] += bias[j];
			else
				memcpy(r, bias, (size_t)out * sizeof *r);
		}
		beta = 1.0f;
	}
	return qk_cpu_gemm(ctx, 0, 1, T, out, in, 1.0f, x, in, w, in, beta, y, out);
}

int qk_cpu_hessian_accum(qk_ctx *ctx, float *H, const float *X, int64_t T, int64_t n,
                         float alpha)
{
	QC_TRY(qk_cpu_check(ctx, "hessian"));
	if (!fits(T) || !fits(n) || n == 0)
		return qc_seterr(QC_EINVAL, "hessian: invalid shape [%lld, %lld]", (long long)T,
		                 (long long)n);
	if (T == 0)
		return 0;
	/* C = alpha A^T A + C with A = X [T, n] (row-major, Trans): upper only */
	qk_cpu_blas_threads(ctx->threads);
	cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, (blasint)n, (blasint)T, alpha, X,
	            (blasint)n, 1.0f, H, (blasint)n);
	return 0;
}

int qk_cpu_sym_upper(qk_ctx *ctx, float *H, int64_t n)
{
	QC_TRY(qk_cpu_check(ctx, "symmetrize"));
	for (int64_t i = 0; i < n; i++)
		for (int64_t j = 0; j < i; j++)
			H[i * n + j] = H[j * n + i];
	return 0;
}

/* zero the triangle that LAPACK leaves untouched (strictly lower for an
 * upper factor, strictly upper for a lower one) */
static void zero_other(float *A, int64_t n, int upper)
{
	for (int64_t i = 0; i < n; i++) {
		if (upper)
			memset(A + i * n, 0, (size_t)i * sizeof *A);
		else
			memset(A + i * n + i + 1, 0, (size_t)(n - i - 1) * sizeof *A);
	}
}

static int cholesky_lapack(qk_ctx *ctx, float *A, int64_t n, int upper)
{
	QC_TRY(qk_cpu_check(ctx, "cholesky"));
	if (!fits(n) || n == 0)
		return qc_seterr(QC_EINVAL, "cholesky: invalid size %lld", (long long)n);
	/* A row-major triangle is the other triangle of the same array read
	 * column-major (of A^T = A): LAPACK factors it in place, without the
	 * transposed copies LAPACKE's row-major interface makes. The upper
	 * factor U = L^T of row-major A is the column-major lower factor. */
	lapack_int info = LAPACKE_spotrf(LAPACK_COL_MAJOR, upper ? 'L' : 'U', (lapack_int)n, A,
	                                 (lapack_int)n);
	if (info > 0)
		return qc_seterr(QC_ENUMERIC,
		                 "cholesky failed: matrix is not positive definite (leading minor %d of %lld)",
		                 (int)info, (long long)n);
	if (info == -4)   /* LAPACKE's NaN check of the matrix argument */
		return qc_seterr(QC_ENUMERIC, "cholesky failed: matrix has NaN entries");
	if (info < 0)
		return qc_seterr(QC_EINTERNAL, "cholesky: LAPACKE_spotrf argument %d invalid", (int)-info);
	zero_other(A, n, upper);
	return 0;
}

static int tri_inverse_lapack(qk_ctx *ctx, float *A, int64_t n, int upper)
{
	QC_TRY(qk_cpu_check(ctx, "triangular inverse"));
	if (!fits(n) || n == 0)
		return qc_seterr(QC_EINVAL, "triangular inverse: invalid size %lld", (long long)n);
	/* column-major, the other triangle: (A^T)^-1 = (A^-1)^T (see cholesky) */
	lapack_int info = LAPACKE_strtri(LAPACK_COL_MAJOR, upper ? 'L' : 'U', 'N', (lapack_int)n, A,
	                                 (lapack_int)n);
	if (info > 0)
		return qc_seterr(QC_ENUMERIC, "triangular inverse failed: diagonal entry %d is zero",
		                 (int)info);
	if (info == -5)
		return qc_seterr(QC_ENUMERIC, "triangular inverse failed: matrix has NaN entries");
	if (info < 0)
		return qc_seterr(QC_EINTERNAL, "triangular inverse: LAPACKE_strtri argument %d invalid",
		                 (int)-info);
	zero_other(A, n, upper);
	return 0;
}

/* LAPACK runs on OpenBLAS's threads: the context's count first */
int qk_cpu_cholesky(qk_ctx *ctx, float *A, int64_t n, int upper)
{
	qk_cpu_blas_threads(ctx->threads);
	return cholesky_lapack(ctx, A, n, upper);
}

int qk_cpu_tri_inverse(qk_ctx *ctx, float *A, int64_t n, int upper)
{
	qk_cpu_blas_threads(ctx->threads);
	return tri_inverse_lapack(ctx, A, n, upper);
}
