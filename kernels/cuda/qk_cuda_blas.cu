/*
 * qk_cuda_blas.cu - the cuBLAS/cuSOLVER-backed operations: GEMM, Linear,
 * Hessian accumulation, symmetrization, Cholesky and triangular inverse
 * (kernels.h), and the row-major GEMM helpers the other files use.
 *
 * Row-major to column-major. cuBLAS and cuSOLVER are column-major: the
 * bytes of a row-major X [r, c] with row stride ld are, read column-major,
 * X^T [c, r] with leading dimension ld. So
 *   - C = op(A) op(B) (row-major) is C^T = op(B)^T op(A)^T: cuBLAS gets B
 *     first with B's transposition flag, then A with A's, m = N, n = M;
 *   - the upper triangle of a row-major matrix is the lower triangle of
 *     its column-major reading (element (i, j), j >= i, sits at i n + j,
 *     which column-major is row j, column i): row-major "upper" is
 *     cuBLAS/cuSOLVER "lower" throughout;
 *   - Cholesky of a symmetric A: the column-major reading is A^T = A, so
 *     factoring the column-major lower triangle (A = L L^T) leaves, read
 *     row-major, U = L^T in the upper triangle with A = U^T U.
 */
#include "qk_cuda_red.h"

#include <limits.h>

#define RT 256
#define EW_BLOCKS 65535u

static cublasComputeType_t compute_of(int math)
{
	switch (math) {
	case QK_MATH_BF16: return CUBLAS_COMPUTE_32F_FAST_16BF;
	case QK_MATH_TF32: return CUBLAS_COMPUTE_32F_FAST_TF32;
	default: return CUBLAS_COMPUTE_32F;
	}
}

int qk_cuda_gemm_rm(qk_ctx *ctx, const char *op, int math, int ta, int tb, int64_t M, int64_t N,
                    int64_t K, float alpha, const float *A, int64_t lda, const float *B,
                    int64_t ldb, float beta, float *C, int64_t ldc)
{
	BLAS_TRY(op, cublasGemmEx_64(qk_cu(ctx)->blas, tb ? CUBLAS_OP_T : CUBLAS_OP_N,
	                             ta ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K, &alpha, B, CUDA_R_32F,
	                             ldb, A, CUDA_R_32F, lda, &beta, C, CUDA_R_32F, ldc,
	                             compute_of(math), CUBLAS_GEMM_DEFAULT));
	return 0;
}

int qk_cuda_gemm_rm_batched(qk_ctx *ctx, const char *op, int math, int ta, int tb, int64_t M,
                            int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                            int64_t sa, const float *B, int64_t ldb, int64_t sb, float beta,
                            float *C, int64_t ldc, int64_t sc, int64_t batch)
{
	BLAS_TRY(op, cublasGemmStridedBatchedEx_64(
	                 qk_cu(ctx)->blas, tb ? CUBLAS_OP_T : CUBLAS_OP_N,
	                 ta ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K, &alpha, B, CUDA_R_32F, ldb,
	                 (long long)sb, A, CUDA_R_32F, lda, (long long)sa, &beta, C, CUDA_R_32F, ldc,
	                 (long long)sc, batch, compute_of(math), CUBLAS_GEMM_DEFAULT));
	return 0;
}

/* ---------------------------------------------------------------- GEMM, Linear */

/* C[i][j] = beta == 0 ? 0 : beta C[i][j] (the K == 0 product, as on the CPU) */
static __global__ void k_scale_c(float *C, int64_t M, int64_t N, int64_t ldc, float beta)
{
	size_t n = (size_t)M * (size_t)N;
	for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x) {
		float *c = C + (int64_t)(i / (size_t)N) * ldc + (int64_t)(i % (size_t)N);
		*c = beta == 0.0f ? 0.0f : __fmul_rn(beta, *c);
	}
}

static int gemm_checked(qk_ctx *ctx, const char *op, int math, int trans_a, int trans_b,
                        int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                        const float *B, int64_t ldb, float beta, float *C, int64_t ldc)
{
	/* the CPU's limits and messages (OpenBLAS takes int sizes) */
	if (M < 0 || N < 0 || K < 0 || M > INT_MAX || N > INT_MAX || K > INT_MAX || lda < 0 ||
	    ldb < 0 || ldc < 0 || lda > INT_MAX || ldb > INT_MAX || ldc > INT_MAX)
		return qc_seterr(QC_EINVAL, "gemm sizes out of range (%lld x %lld x %lld)", (long long)M,
		                 (long long)N, (long long)K);
	if (lda < (trans_a ? M : K) || ldb < (trans_b ? K : N) || ldc < N)
		return qc_seterr(QC_EINVAL, "gemm leading dimension too small");
	if (M == 0 || N == 0)
		return 0;
	if (K == 0) {
		QK_LAUNCH(k_scale_c, qk_blocks((size_t)(M * N), RT, EW_BLOCKS), RT, 0, qk_cu(ctx)->st, C,
		          M, N, ldc, beta);
		LAUNCH_TRY(op);
		return 0;
	}
	/* cuBLAS refuses a leading dimension below 1 (a single column) */
	return qk_cuda_gemm_rm(ctx, op, math, trans_a, trans_b, M, N, K, alpha, A, lda ? lda : 1, B,
	                       ldb ? ldb : 1, beta, C, ldc ? ldc : 1);
}

int qk_cuda_gemm(qk_ctx *ctx, int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
                 float alpha, const float *A, int64_t lda, const float *B, int64_t ldb,
                 float beta, float *C, int64_t ldc)
{
	QC_TRY(qk_cuda_enter(ctx, "gemm"));
	QC_TRY(gemm_checked(ctx, "gemm", qk_cu(ctx)->math, trans_a, trans_b, M, N, K, alpha, A, lda, B,
	                    ldb, beta, C, ldc));
	return qk_cuda_sync(ctx, "gemm");
}

/* y[t] = bias (accumulate 0) or y[t] += bias, for every row t */
static __global__ void k_bias(float *y, const float *bias, int64_t T, int64_t out, int acc)
{
	size_t n = (size_t)T * (size_t)out;
	for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x) {
		float b = bias[i % (size_t)out];
		y[i] = acc ? __fadd_rn(y[i], b) : b;
	}
}

int qk_cuda_linear(qk_ctx *ctx, float *y, const float *x, const float *w, const float *bias,
                   int64_t T, int64_t in, int64_t out, int accumulate)
{
	const char *op = "linear";
	QC_TRY(qk_cuda_enter(ctx, op));
	if (T < 0 || in <= 0 || out <= 0)
		return qc_seterr(QC_EINVAL, "linear: invalid shape [%lld, %lld] x [%lld, %lld]^T",
		                 (long long)T, (long long)in, (long long)out, (long long)in);
	float beta = accumulate ? 1.0f : 0.0f;
	if (bias && T > 0) {
		/* y starts as (y +) bias, then the product is accumulated onto it */
		QK_LAUNCH(k_bias, qk_blocks((size_t)(T * out), RT, EW_BLOCKS), RT, 0, qk_cu(ctx)->st, y,
		          bias, T, out, accumulate);
		LAUNCH_TRY(op);
		beta = 1.0f;
	}
	QC_TRY(gemm_checked(ctx, op, qk_cu(ctx)->math, 0, 1, T, out, in, 1.0f, x, in, w, in, beta, y,
	                    out));
	return qk_cuda_sync(ctx, op);
}

/* ---------------------------------------------------------------- W4A16 Linear */

/* rows of decoding (T <= Q4_GEMV_T) take the matrix-vector kernel */
#define Q4_GEMV_T 4
/* the GEMM path dequantizes at most this many bytes of FP32 rows at once */
#define Q4_TILE_BYTES ((size_t)64 << 20)

/* weight (o, i) as the CPU's tiles compute it: (u - z) s, no FMA */
static __device__ float q4_weight(const uint8_t *q4, const float *s, const float *z, int64_t in,
                                  int64_t ng, int64_t group, int64_t o, int64_t i)
{
	uint8_t b = q4[o * (in / 2) + i / 2];
	float u = (float)(i % 2 ? b >> 4 : b & 15);
	int64_t g = o * ng + i / group;
	return __fmul_rn(__fsub_rn(u, z ? z[g] : 8.0f), s[g]);
}

/* One warp per output row o: each lane takes bytes (two columns) in
 * strides of 32, dequantizes them and multiplies them into up to
 * Q4_GEMV_T rows of x; the lanes' sums meet in a fixed butterfly. The
 * codes are read once, half a byte a weight. */
static __global__ void k_q4_gemv(float *y, const float *x, const uint8_t *q4, const float *s,
                                 const float *z, const float *bias, int64_t T, int64_t in,
                                 int64_t out, int64_t group, int acc)
{
	const int lane = (int)(threadIdx.x & 31);
	int64_t o = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
	if (o >= out)
		return;   /* a whole warp: blocks are whole warps */
	const int64_t ng = in / group;
	float a[Q4_GEMV_T] = { 0 };
	for (int64_t j = lane; j < in / 2; j += 32) {
		float w0 = q4_weight(q4, s, z, in, ng, group, o, 2 * j);
		float w1 = q4_weight(q4, s, z, in, ng, group, o, 2 * j + 1);
		for (int64_t t = 0; t < T; t++)
			a[t] = __fadd_rn(a[t], __fadd_rn(__fmul_rn(w0, x[t * in + 2 * j]),
			                                __fmul_rn(w1, x[t * in + 2 * j + 1])));
	}
	for (int64_t t = 0; t < T; t++) {
		float v = qk_warp_reduce(a[t], qk_op_add());
		if (lane == 0) {
			if (bias)
				v = __fadd_rn(v, bias[o]);
			float *yo = y + t * out + o;
			*yo = acc ? __fadd_rn(*yo, v) : v;
		}
	}
}

/* w [rows, in] = the dequantized rows [r0, r0 + rows) */
static __global__ void k_q4_rows(float *w, const uint8_t *q4, const float *s, const float *z,
                                 int64_t in, int64_t group, int64_t r0, int64_t rows)
{
	size_t n = (size_t)rows * (size_t)in;
	for (size_t e = (size_t)blockIdx.x * blockDim.x + threadIdx.x; e < n;
	     e += (size_t)gridDim.x * blockDim.x) {
		int64_t r = (int64_t)(e / (size_t)in), i = (int64_t)(e % (size_t)in);
		w[e] = q4_weight(q4, s, z, in, in / group, group, r0 + r, i);
	}
}

/* y[:, r0:r0+rows] (+)= bias, as k_bias for a column range (ld out) */
static __global__ void k_bias_cols(float *y, const float *bias, int64_t T, int64_t out, int64_t r0,
                                   int64_t rows, int acc)
{
	size_t n = (size_t)T * (size_t)rows;
	for (size_t e = (size_t)blockIdx.x * blockDim.x + threadIdx.x; e < n;
	     e += (size_t)gridDim.x * blockDim.x) {
		int64_t t = (int64_t)(e / (size_t)rows), r = (int64_t)(e % (size_t)rows);
		float *yo = y + t * out + r0 + r;
		*yo = acc ? __fadd_rn(*yo, bias[r0 + r]) : bias[r0 + r];
	}
}

int qk_cuda_linear_q4(qk_ctx *ctx, float *y, const float *x, const uint8_t *q4, const float *s,
                      const float *z, const float *bias, int64_t T, int64_t in, int64_t out,
                      int64_t group, int accumulate)
{
	const char *op = "linear_q4";
	QC_TRY(qk_cuda_enter(ctx, op));
	if (T < 0 || in <= 0 || out <= 0 || in % 2 || group <= 0 || group % 2 || in % group ||
	    in > INT_MAX || out > INT_MAX || T > INT_MAX)
		return qc_seterr(QC_EINVAL, "linear_q4: invalid shape [%lld, %lld] x [%lld, %lld]^T, "
		                 "group %lld", (long long)T, (long long)in, (long long)out,
		                 (long long)in, (long long)group);
	if (T == 0)
		return 0;
	qk_cuda *c = qk_cu(ctx);
	if (T <= Q4_GEMV_T) {
		/* a warp a row, RT / 32 rows a block */
		unsigned blocks = (unsigned)((out + RT / 32 - 1) / (RT / 32));
		QK_LAUNCH(k_q4_gemv, blocks, RT, 0, c->st, y, x, q4, s, z, bias, T, in, out, group,
		          accumulate);
		LAUNCH_TRY(op);
		return qk_cuda_sync(ctx, op);
	}
	/* prefill and scoring: tiles of dequantized rows into GEMMs */
	int64_t rows = (int64_t)(qk_cu_size(ctx, Q4_TILE_BYTES, 7 * sizeof(float) * (size_t)in) /
	                         ((size_t)in * sizeof(float)));
	rows = rows < 1 ? 1 : rows > out ? out : rows;
	float *w = (float *)qk_cuda_scratch(ctx, (size_t)rows * (size_t)in * sizeof(float), op);
	if (!w)
		return QC_ENOMEM;
	for (int64_t r0 = 0; r0 < out; r0 += rows) {
		int64_t n = out - r0 < rows ? out - r0 : rows;
		QK_LAUNCH(k_q4_rows, qk_blocks((size_t)(n * in), RT, EW_BLOCKS), RT, 0, c->st, w, q4, s,
		          z, in, group, r0, n);
		LAUNCH_TRY(op);
		float beta = accumulate ? 1.0f : 0.0f;
		if (bias) {
			QK_LAUNCH(k_bias_cols, qk_blocks((size_t)(T * n), RT, EW_BLOCKS), RT, 0, c->st, y,
			          bias, T, out, r0, n, accumulate);
			LAUNCH_TRY(op);
			beta = 1.0f;
		}
		QC_TRY(gemm_checked(ctx, op, c->math, 0, 1, T, n, in, 1.0f, x, in, w, in, beta, y + r0,
		                    out));
	}
	return qk_cuda_sync(ctx, op);
}

/* ---------------------------------------------------------------- Hessian */

/* H's diagonal block [nb, nb] at H + i0 (n + 1) += the upper triangle of
 * D [nb, nb] (row-major, ld nb) */
static __global__ void k_add_upper(float *H, int64_t n, int64_t i0, int64_t nb, const float *D)
{
	size_t m = (size_t)nb * (size_t)nb;
	for (size_t e = (size_t)blockIdx.x * blockDim.x + threadIdx.x; e < m;
	     e += (size_t)gridDim.x * blockDim.x) {
		int64_t i = (int64_t)(e / (size_t)nb), j = (int64_t)(e % (size_t)nb);
		if (j >= i) {
			float *h = H + (i0 + i) * n + i0 + j;
			*h = __fadd_rn(*h, D[e]);
		}
	}
}

/* Diagonal blocks of the fast modes' blocked SYRK. */
#define HESS_NB 1024

int qk_cuda_hessian_accum(qk_ctx *ctx, float *H, const float *X, int64_t T, int64_t n,
                          float alpha)
{
	const char *op = "hessian";
	QC_TRY(qk_cuda_enter(ctx, op));
	if (T < 0 || n <= 0 || T > INT_MAX || n > INT_MAX)
		return qc_seterr(QC_EINVAL, "hessian: invalid shape [%lld, %lld]", (long long)T,
		                 (long long)n);
	if (T == 0)
		return 0;
	qk_cuda *c = qk_cu(ctx);
	if (c->math == QK_MATH_FP32) {
		/* H^T (column-major lower = row-major upper) += alpha A A^T, with
		 * A = X read column-major: [n, T], leading dimension n */
		float beta = 1.0f;
		BLAS_TRY(op, cublasSsyrk_64(c->blas, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N, n, T, &alpha,
		                            X, n, &beta, H, n));
		return qk_cuda_sync(ctx, op);
	}
	/* Tensor cores: SYRK has no fast compute type, so the upper triangle
	 * goes by block rows of HESS_NB: the part right of the diagonal block
	 * straight into H, the diagonal block into scratch and then its upper
	 * triangle into H. Half the products of a full X^T X, and the strict
	 * lower triangle is never written, as the operation promises. */
	int64_t nb = (int64_t)qk_cu_size(ctx, HESS_NB, 16);
	nb = n < nb ? n : nb;
	float *D = (float *)qk_cuda_scratch(ctx, (size_t)(nb * nb) * sizeof(float), op);
	if (!D)
		return QC_ENOMEM;
	for (int64_t i0 = 0; i0 < n; i0 += nb) {
		int64_t b = n - i0 < nb ? n - i0 : nb, right = n - i0 - b;
		/* H[i0:i0+b, i0+b:n] += alpha X[:, i0:i0+b]^T X[:, i0+b:n] */
		if (right > 0)
			QC_TRY(qk_cuda_gemm_rm(ctx, op, c->math, 1, 0, b, right, T, alpha, X + i0, n,
			                       X + i0 + b, n, 1.0f, H + i0 * n + i0 + b, n));
		QC_TRY(qk_cuda_gemm_rm(ctx, op, c->math, 1, 0, b, b, T, alpha, X + i0, n, X + i0, n, 0.0f,
		                       D, b));
		QK_LAUNCH(k_add_upper, qk_blocks((size_t)(b * b), RT, EW_BLOCKS), RT, 0, c->st, H, n, i0, b,
		          (const float *)D);
		LAUNCH_TRY(op);
	}
	return qk_cuda_sync(ctx, op);
}

/* ---------------------------------------------------------------- triangles */

#define TILE 32

/* A[i][j] = A[j][i] for i > j, tile by tile: block (bx, by) with by >= bx
 * reads tile (bx, by) of the upper part through shared memory and writes
 * its transpose into tile (by, bx); diagonal tiles copy within the tile
 * (their upper elements are read, their lower ones written: no element is
 * both). 32 x 8 threads, each 4 rows of a tile. */
static __global__ void k_mirror(float *A, int64_t n)
{
	__shared__ float t[TILE][TILE + 1];
	int64_t bx = blockIdx.x, by = blockIdx.y;
	if (by < bx)
		return; /* uniform over the block: no barrier is skipped by part of it */
	int64_t r0 = bx * TILE, c0 = by * TILE; /* source tile: rows r0.., columns c0.. */
	for (int k = threadIdx.y; k < TILE; k += blockDim.y) {
		int64_t r = r0 + k, cc = c0 + threadIdx.x;
		t[k][threadIdx.x] = r < n && cc < n ? A[r * n + cc] : 0.0f;
	}
	__syncthreads();
	/* destination tile: rows c0.., columns r0..; element (c0 + k, r0 + x)
	 * takes source (r0 + x, c0 + k) */
	for (int k = threadIdx.y; k < TILE; k += blockDim.y) {
		int64_t r = c0 + k, cc = r0 + threadIdx.x;
		if (r < n && cc < n && r > cc)
			A[r * n + cc] = t[threadIdx.x][k];
	}
}

int qk_cuda_mirror_upper(qk_ctx *ctx, const char *op, float *A, int64_t n)
{
	unsigned nt = (unsigned)((n + TILE - 1) / TILE);
	if (nt > 65535u)
		return qc_seterr(QC_EINVAL, "%s: matrix of %lld rows too large", op, (long long)n);
	QK_LAUNCH(k_mirror, dim3(nt, nt), dim3(TILE, 8), 0, qk_cu(ctx)->st, A, n);
	LAUNCH_TRY(op);
	return 0;
}

int qk_cuda_sym_upper(qk_ctx *ctx, float *H, int64_t n)
{
	QC_TRY(qk_cuda_enter(ctx, "symmetrize"));
	if (n <= 0)
		return 0;
	QC_TRY(qk_cuda_mirror_upper(ctx, "symmetrize", H, n));
	return qk_cuda_sync(ctx, "symmetrize");
}

/* zero the strict lower (upper 1) or strict upper (upper 0) triangle */
static __global__ void k_zero_other(float *A, int64_t n, int upper)
{
	size_t m = (size_t)n * (size_t)n;
	for (size_t e = (size_t)blockIdx.x * blockDim.x + threadIdx.x; e < m;
	     e += (size_t)gridDim.x * blockDim.x) {
		int64_t i = (int64_t)(e / (size_t)n), j = (int64_t)(e % (size_t)n);
		if (upper ? j < i : j > i)
			A[e] = 0.0f;
	}
}

static __global__ void k_tri_scan(const float *A, int64_t n, int upper, int nan_only,
                                  unsigned long long *first)
{
	size_t m = (size_t)n * (size_t)n;
	for (size_t e = (size_t)blockIdx.x * blockDim.x + threadIdx.x; e < m;
	     e += (size_t)gridDim.x * blockDim.x) {
		int64_t i = (int64_t)(e / (size_t)n), j = (int64_t)(e % (size_t)n);
		if (upper ? j < i : j > i)
			continue;
		float v = A[e];
		if (nan_only ? isnan(v) : !isfinite(v)) {
			atomicMin(first, (unsigned long long)e);
			break;
		}
	}
}

int qk_cuda_tri_scan(qk_ctx *ctx, const char *op, const float *A, int64_t n, int upper,
                     int nan_only, int64_t *first)
{
	unsigned long long *r = (unsigned long long *)qk_cuda_res(ctx, sizeof *r, op);
	if (!r)
		return QC_ENOMEM;
	CU_TRY(op, cudaMemsetAsync(r, 0xFF, sizeof *r, qk_cu(ctx)->st));
	QK_LAUNCH(k_tri_scan, qk_blocks((size_t)(n * n), RT, EW_BLOCKS), RT, 0, qk_cu(ctx)->st, A, n,
	          upper, nan_only, r);
	LAUNCH_TRY(op);
	unsigned long long h;
	QC_TRY(qk_cuda_get(ctx, &h, r, sizeof h, op));
	*first = h == ~0ull ? -1 : (int64_t)h;
	return 0;
}

int qk_cuda_cholesky(qk_ctx *ctx, float *A, int64_t n, int upper)
{
	const char *op = "cholesky";
	QC_TRY(qk_cuda_enter(ctx, op));
	if (n <= 0 || n > INT_MAX)
		return qc_seterr(QC_EINVAL, "cholesky: invalid size %lld", (long long)n);
	/* LAPACKE checks the triangle for NaN first: so do we, for its message */
	int64_t bad;
	QC_TRY(qk_cuda_tri_scan(ctx, op, A, n, upper, 1, &bad));
	if (bad >= 0)
		return qc_seterr(QC_ENUMERIC, "cholesky failed: matrix has NaN entries");
	qk_cuda *c = qk_cu(ctx);
	cublasFillMode_t fill = upper ? CUBLAS_FILL_MODE_LOWER : CUBLAS_FILL_MODE_UPPER;
	size_t dbytes = 0, hbytes = 0;
	SOLVER_TRY(op, cusolverDnXpotrf_bufferSize(c->solver, c->sparams, fill, n, CUDA_R_32F, A, n,
	                                           CUDA_R_32F, &dbytes, &hbytes));
	void *dw = qk_cuda_work(ctx, dbytes ? dbytes : 256, op);
	void *hw = qk_cuda_hwork(ctx, hbytes ? hbytes : 16, op);
	int *info = (int *)qk_cuda_res(ctx, sizeof(int), op);
	if (!dw || !hw || !info)
		return QC_ENOMEM;
	SOLVER_TRY(op, cusolverDnXpotrf(c->solver, c->sparams, fill, n, CUDA_R_32F, A, n, CUDA_R_32F, dw,
	                                dbytes, hw, hbytes, info));
	int h = 0;
	QC_TRY(qk_cuda_get(ctx, &h, info, sizeof h, op));
	if (h > 0)
		return qc_seterr(QC_ENUMERIC,
		                 "cholesky failed: matrix is not positive definite (leading minor %d of %lld)",
		                 h, (long long)n);
	if (h < 0)
		return qc_seterr(QC_EINTERNAL, "cholesky: cusolverDnXpotrf argument %d invalid", -h);
	QK_LAUNCH(k_zero_other, qk_blocks((size_t)(n * n), RT, EW_BLOCKS), RT, 0, c->st, A, n, upper);
	LAUNCH_TRY(op);
	return qk_cuda_sync(ctx, op);
}

int qk_cuda_trtri(qk_ctx *ctx, const char *op, float *A, int64_t n, int upper, int *singular)
{
	qk_cuda *c = qk_cu(ctx);
	cublasFillMode_t fill = upper ? CUBLAS_FILL_MODE_LOWER : CUBLAS_FILL_MODE_UPPER;
	size_t dbytes = 0, hbytes = 0;
	SOLVER_TRY(op, cusolverDnXtrtri_bufferSize(c->solver, fill, CUBLAS_DIAG_NON_UNIT, n, CUDA_R_32F,
	                                           A, n, &dbytes, &hbytes));
	void *dw = qk_cuda_work(ctx, dbytes ? dbytes : 256, op);
	void *hw = qk_cuda_hwork(ctx, hbytes ? hbytes : 16, op);
	int *info = (int *)qk_cuda_res(ctx, sizeof(int), op);
	if (!dw || !hw || !info)
		return QC_ENOMEM;
	SOLVER_TRY(op, cusolverDnXtrtri(c->solver, fill, CUBLAS_DIAG_NON_UNIT, n, CUDA_R_32F, A, n, dw,
	                                dbytes, hw, hbytes, info));
	int h = 0;
	QC_TRY(qk_cuda_get(ctx, &h, info, sizeof h, op));
	if (h < 0)
		return qc_seterr(QC_EINTERNAL, "%s: cusolverDnXtrtri argument %d invalid", op, -h);
	*singular = h;
	if (h == 0) {
		QK_LAUNCH(k_zero_other, qk_blocks((size_t)(n * n), RT, EW_BLOCKS), RT, 0, c->st, A, n,
		          upper);
		LAUNCH_TRY(op);
	}
	return 0;
}

int qk_cuda_tri_inverse(qk_ctx *ctx, float *A, int64_t n, int upper)
{
	const char *op = "triangular inverse";
	QC_TRY(qk_cuda_enter(ctx, op));
	if (n <= 0 || n > INT_MAX)
		return qc_seterr(QC_EINVAL, "triangular inverse: invalid size %lld", (long long)n);
	int64_t bad;
	QC_TRY(qk_cuda_tri_scan(ctx, op, A, n, upper, 1, &bad));
	if (bad >= 0)
		return qc_seterr(QC_ENUMERIC, "triangular inverse failed: matrix has NaN entries");
	int sing = 0;
	QC_TRY(qk_cuda_trtri(ctx, op, A, n, upper, &sing));
	if (sing > 0)
		return qc_seterr(QC_ENUMERIC, "triangular inverse failed: diagonal entry %d is zero", sing);
	return qk_cuda_sync(ctx, op);
}
