/*
 * qk_cuda_reduce.cu - reductions, element-wise differences and the
 * per-channel statistics and rescaling (kernels.h) on the GPU.
 *
 * A reduction over n elements runs as one launch of at most RED_BLOCKS
 * blocks, each leaving one partial in the context's result buffer, which
 * the host then combines in block order: the grid, and so every partial,
 * depends on n alone, which makes the result the same at every run. Maxima
 * and first indices are exact; sums are in double, in a different order
 * than the CPU's index order (their last bits differ).
 */
#include "qk_cuda_red.h"

#include <string.h>

#define RT 256           /* threads per block */
#define RED_BLOCKS 512u  /* blocks of a reduction */
#define EW_BLOCKS 65535u

#define GRID_STRIDE(i, n) \
	for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); \
	     i += (size_t)gridDim.x * blockDim.x)

/* ---------------------------------------------------------------- absmax, sumsq */

static __global__ void k_absmax(const float *x, size_t n, float *part)
{
	float m = NAN; /* fmaxf(NaN, a) = a: NaN only if nothing but NaN was seen */
	GRID_STRIDE(i, n)
		m = fmaxf(m, fabsf(x[i]));
	m = qk_block_reduce(m, qk_op_fmax(), (float)NAN);
	if (threadIdx.x == 0)
		part[blockIdx.x] = m;
}

int qk_cuda_absmax(qk_ctx *ctx, const float *x, size_t n, float *amax)
{
	const char *op = "absmax";
	QC_TRY(qk_cuda_enter(ctx, op));
	if (n == 0)
		return 0;
	unsigned nb = qk_blocks(n, RT, RED_BLOCKS);
	float *part = (float *)qk_cuda_res(ctx, nb * sizeof(float), op);
	if (!part)
		return QC_ENOMEM;
	QK_LAUNCH(k_absmax, nb, RT, 0, qk_cu(ctx)->st, x, n, part);
	LAUNCH_TRY(op);
	float h[RED_BLOCKS];
	QC_TRY(qk_cuda_get(ctx, h, part, nb * sizeof(float), op));
	float m = *amax;
	for (unsigned b = 0; b < nb; b++)
		m = fmaxf(m, h[b]);
	*amax = m;
	return 0;
}

/* sum of x^2 (b NULL) or of (a - b)^2 and b^2 in double */
static __global__ void k_sumsq(const float *a, const float *b, size_t n, double *part)
{
	double s = 0, t = 0;
	GRID_STRIDE(i, n) {
		if (b) {
			double d = (double)a[i] - (double)b[i];
			s += d * d;
			t += (double)b[i] * (double)b[i];
		} else {
			s += (double)a[i] * (double)a[i];
		}
	}
	s = qk_block_reduce(s, qk_op_add(), 0.0);
	if (b)
		t = qk_block_reduce(t, qk_op_add(), 0.0);
	if (threadIdx.x == 0) {
		part[2 * blockIdx.x] = s;
		part[2 * blockIdx.x + 1] = t;
	}
}

static int sumsq2(qk_ctx *ctx, const char *op, const float *a, const float *b, size_t n,
                  double *s, double *t)
{
	*s = *t = 0;
	if (n == 0)
		return 0;
	unsigned nb = qk_blocks(n, RT, RED_BLOCKS);
	double *part = (double *)qk_cuda_res(ctx, 2 * nb * sizeof(double), op);
	if (!part)
		return QC_ENOMEM;
	QK_LAUNCH(k_sumsq, nb, RT, 0, qk_cu(ctx)->st, a, b, n, part);
	LAUNCH_TRY(op);
	double h[2 * RED_BLOCKS];
	QC_TRY(qk_cuda_get(ctx, h, part, 2 * nb * sizeof(double), op));
	for (unsigned k = 0; k < nb; k++) {
		*s += h[2 * k];
		*t += h[2 * k + 1];
	}
	return 0;
}

int qk_cuda_sumsq(qk_ctx *ctx, const float *x, size_t n, double *sum)
{
	QC_TRY(qk_cuda_enter(ctx, "sumsq"));
	double s, t;
	QC_TRY(sumsq2(ctx, "sumsq", x, NULL, n, &s, &t));
	*sum += s;
	return 0;
}

int qk_cuda_diff_sumsq(qk_ctx *ctx, const float *a, const float *b, size_t n, double *d2,
                       double *b2)
{
	QC_TRY(qk_cuda_enter(ctx, "diff sumsq"));
	double s, t;
	QC_TRY(sumsq2(ctx, "diff sumsq", a, b, n, &s, &t));
	*d2 += s;
	*b2 += t;
	return 0;
}

/* ---------------------------------------------------------------- sub, nonfinite */

static __global__ void k_sub(float *d, const float *a, const float *b, size_t n)
{
	GRID_STRIDE(i, n)
		d[i] = __fsub_rn(a[i], b[i]);
}

int qk_cuda_sub(qk_ctx *ctx, float *d, const float *a, const float *b, size_t n)
{
	QC_TRY(qk_cuda_enter(ctx, "sub"));
	if (n == 0)
		return 0;
	QK_LAUNCH(k_sub, qk_blocks(n, RT, EW_BLOCKS), RT, 0, qk_cu(ctx)->st, d, a, b, n);
	LAUNCH_TRY("sub");
	return qk_cuda_sync(ctx, "sub");
}

static __global__ void k_add(float *d, const float *a, const float *b, size_t n)
{
	GRID_STRIDE(i, n)
		d[i] = __fadd_rn(a[i], b[i]);
}

int qk_cuda_add(qk_ctx *ctx, float *d, const float *a, const float *b, size_t n)
{
	QC_TRY(qk_cuda_enter(ctx, "add"));
	if (n == 0)
		return 0;
	QK_LAUNCH(k_add, qk_blocks(n, RT, EW_BLOCKS), RT, 0, qk_cu(ctx)->st, d, a, b, n);
	LAUNCH_TRY("add");
	return qk_cuda_sync(ctx, "add");
}

static __global__ void k_nonfinite(const float *x, size_t n, unsigned long long *first)
{
	GRID_STRIDE(i, n)
		if (!isfinite(x[i])) {
			atomicMin(first, (unsigned long long)i);
			break; /* this thread's later indices are larger */
		}
}

int qk_cuda_nonfinite(qk_ctx *ctx, const float *x, size_t n, int64_t *first)
{
	const char *op = "non-finite scan";
	QC_TRY(qk_cuda_enter(ctx, op));
	*first = -1;
	if (n == 0)
		return 0;
	unsigned long long *r = (unsigned long long *)qk_cuda_res(ctx, sizeof *r, op);
	if (!r)
		return QC_ENOMEM;
	CU_TRY(op, cudaMemsetAsync(r, 0xFF, sizeof *r, qk_cu(ctx)->st));
	QK_LAUNCH(k_nonfinite, qk_blocks(n, RT, EW_BLOCKS), RT, 0, qk_cu(ctx)->st, x, n, r);
	LAUNCH_TRY(op);
	unsigned long long h;
	QC_TRY(qk_cuda_get(ctx, &h, r, sizeof h, op));
	*first = h == ~0ull ? -1 : (int64_t)h;
	return 0;
}

/* ---------------------------------------------------------------- per-channel statistics */

/* Column maxima of rows [y * rpc, (y + 1) * rpc) into part[y][cols]: one
 * thread per column (coalesced rows), row chunks over blockIdx.y. */
static __global__ void k_col_absmax(const float *x, int64_t rows, int64_t cols, int64_t rpc,
                                    float *part)
{
	int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
	if (j >= cols)
		return;
	int64_t r0 = (int64_t)blockIdx.y * rpc, r1 = r0 + rpc < rows ? r0 + rpc : rows;
	float m = NAN;
	for (int64_t r = r0; r < r1; r++)
		m = fmaxf(m, fabsf(x[r * cols + j]));
	part[(int64_t)blockIdx.y * cols + j] = m;
}

static __global__ void k_col_fold(const float *part, int64_t nchunk, int64_t cols, float *out)
{
	int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
	if (j >= cols)
		return;
	float m = NAN;
	for (int64_t y = 0; y < nchunk; y++)
		m = fmaxf(m, part[y * cols + j]);
	out[j] = m;
}

int qk_cuda_col_absmax(qk_ctx *ctx, const float *x, int64_t rows, int64_t cols, float *amax)
{
	const char *op = "column absmax";
	QC_TRY(qk_cuda_enter(ctx, op));
	if (rows < 0 || cols < 0)
		return qc_seterr(QC_EINVAL, "column absmax: invalid shape [%lld, %lld]", (long long)rows,
		                 (long long)cols);
	if (rows == 0 || cols == 0)
		return 0;
	/* enough row chunks to fill the GPU: about 64K threads in all */
	int64_t cb = (cols + RT - 1) / RT;
	int64_t nchunk = (65536 / RT + cb - 1) / cb;
	if (nchunk > rows)
		nchunk = rows;
	if (nchunk > 65535)
		nchunk = 65535;
	int64_t rpc = (rows + nchunk - 1) / nchunk;
	nchunk = (rows + rpc - 1) / rpc;
	size_t pbytes = (size_t)(nchunk * cols) * sizeof(float);
	char *s = (char *)qk_cuda_scratch(ctx, qk_align256(pbytes) + (size_t)cols * sizeof(float), op);
	if (!s)
		return QC_ENOMEM;
	float *part = (float *)qk_carve(&s, pbytes), *out = (float *)s;
	qk_cuda *c = qk_cu(ctx);
	QK_LAUNCH(k_col_absmax, dim3((unsigned)cb, (unsigned)nchunk), RT, 0, c->st, x, rows, cols, rpc,
	          part);
	LAUNCH_TRY(op);
	QK_LAUNCH(k_col_fold, (unsigned)cb, RT, 0, c->st, (const float *)part, nchunk, cols, out);
	LAUNCH_TRY(op);
	float *h = (float *)qk_cuda_hwork(ctx, (size_t)cols * sizeof(float), op);
	if (!h)
		return QC_ENOMEM;
	QC_TRY(qk_cuda_get(ctx, h, out, (size_t)cols * sizeof(float), op));
	for (int64_t j = 0; j < cols; j++)
		amax[j] = fmaxf(amax[j], h[j]);
	return 0;
}

/* x[r][c] *= or /= s[c] (by_row 0) or s[r] (by_row 1) */
static __global__ void k_scale(float *x, int64_t rows, int64_t cols, const float *s, int divide,
                               int by_row)
{
	size_t n = (size_t)rows * (size_t)cols;
	GRID_STRIDE(i, n) {
		float v = by_row ? s[i / (size_t)cols] : s[i % (size_t)cols];
		x[i] = divide ? __fdiv_rn(x[i], v) : __fmul_rn(x[i], v);
	}
}

static int scale(qk_ctx *ctx, const char *op, float *x, int64_t rows, int64_t cols,
                 const float *s, int divide, int by_row)
{
	QC_TRY(qk_cuda_enter(ctx, op));
	if (rows < 0 || cols < 0)
		return qc_seterr(QC_EINVAL, "%s: invalid shape [%lld, %lld]", op, (long long)rows,
		                 (long long)cols);
	if (rows == 0 || cols == 0)
		return 0;
	size_t ns = (size_t)(by_row ? rows : cols);
	float *ds = (float *)qk_cuda_scratch(ctx, ns * sizeof(float), op);
	if (!ds)
		return QC_ENOMEM;
	QC_TRY(qk_cuda_put(ctx, ds, s, ns * sizeof(float), op));
	QK_LAUNCH(k_scale, qk_blocks((size_t)(rows * cols), RT, EW_BLOCKS), RT, 0, qk_cu(ctx)->st, x,
	          rows, cols, (const float *)ds, divide, by_row);
	LAUNCH_TRY(op);
	return qk_cuda_sync(ctx, op);
}

int qk_cuda_scale_cols(qk_ctx *ctx, float *x, int64_t rows, int64_t cols, const float *s,
                       int divide)
{
	return scale(ctx, "scale columns", x, rows, cols, s, divide, 0);
}

int qk_cuda_scale_rows(qk_ctx *ctx, float *x, int64_t rows, int64_t cols, const float *s,
                       int divide)
{
	return scale(ctx, "scale rows", x, rows, cols, s, divide, 1);
}

/* block per row: w *= s (columns), then w on its row's symmetric int8 grid */
static __global__ void k_q8_rows(float *w, int64_t rows, int64_t cols, const float *s)
{
	for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
		float *wr = w + r * cols;
		float amax = 0.0f;
		for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
			float v = s ? __fmul_rn(wr[c], s[c]) : wr[c];
			wr[c] = v;
			amax = fmaxf(amax, fabsf(v));
		}
		amax = qk_block_reduce(amax, qk_op_fmax(), 0.0f);
		float sc = __fdiv_rn(amax, 127.5f);
		if (sc < 1.19209290e-07f) /* FLT_EPSILON */
			sc = 1.19209290e-07f;
		for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
			float v = rintf(__fdiv_rn(wr[c], sc));
			v = v < -128.0f ? -128.0f : v > 127.0f ? 127.0f : v;
			wr[c] = __fmul_rn(v, sc);
		}
	}
}

int qk_cuda_q8_rows(qk_ctx *ctx, float *w, int64_t rows, int64_t cols, const float *s)
{
	const char *op = "int8 rows";
	QC_TRY(qk_cuda_enter(ctx, op));
	if (rows < 0 || cols < 0)
		return qc_seterr(QC_EINVAL, "int8 rows: invalid shape [%lld, %lld]", (long long)rows,
		                 (long long)cols);
	if (rows == 0 || cols == 0)
		return 0;
	float *ds = NULL;
	if (s) {
		if (!(ds = (float *)qk_cuda_scratch(ctx, (size_t)cols * sizeof(float), op)))
			return QC_ENOMEM;
		QC_TRY(qk_cuda_put(ctx, ds, s, (size_t)cols * sizeof(float), op));
	}
	QK_LAUNCH(k_q8_rows, (unsigned)(rows < 65535 ? rows : 65535), RT, 0, qk_cu(ctx)->st, w, rows,
	          cols, (const float *)ds);
	LAUNCH_TRY(op);
	return qk_cuda_sync(ctx, op);
}

/* thread per column: the running sum from the caller's value, row by row,
 * in double: the CPU's order, so the same bits */
static __global__ void k_col_abssum(const float *x, int64_t rows, int64_t cols, double *sum)
{
	int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
	if (j >= cols)
		return;
	double s = sum[j];
	for (int64_t r = 0; r < rows; r++)
		s += (double)fabsf(x[r * cols + j]);
	sum[j] = s;
}

int qk_cuda_col_abssum(qk_ctx *ctx, const float *x, int64_t rows, int64_t cols, double *sum)
{
	const char *op = "column abs sum";
	QC_TRY(qk_cuda_enter(ctx, op));
	if (rows < 0 || cols < 0)
		return qc_seterr(QC_EINVAL, "column abs sum: invalid shape");
	if (rows == 0 || cols == 0)
		return 0;
	double *d = (double *)qk_cuda_scratch(ctx, (size_t)cols * sizeof(double), op);
	if (!d)
		return QC_ENOMEM;
	QC_TRY(qk_cuda_put(ctx, d, sum, (size_t)cols * sizeof(double), op));
	QK_LAUNCH(k_col_abssum, (unsigned)((cols + RT - 1) / RT), RT, 0, qk_cu(ctx)->st, x, rows, cols, d);
	LAUNCH_TRY(op);
	return qk_cuda_get(ctx, sum, d, (size_t)cols * sizeof(double), op);
}
