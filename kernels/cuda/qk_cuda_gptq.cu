/*
 * qk_cuda_gptq.cu - the GPTQ solver's steps on the GPU (kernels.h, "GPTQ
 * support"), the algorithm of kernels/cpu/qk_gptq.c step for step:
 *
 *  - hdiag, minmax: reductions (exact);
 *  - permute: M = P H P^T in place, as a mirror, a column gather, an
 *    in-place transpose and a second column gather (M[i][j] =
 *    H[sigma[i]][sigma[j]] needs no second n x n buffer);
 *  - factor: the damped diagonal, cuSOLVER's Cholesky of the lower
 *    triangle (the strict upper one keeps M for a retry), then V = J L J in
 *    place;
 *  - params, rtn: one warp per (row, group) or one block per row, with the
 *    CPU's arithmetic (qk_cuda_num.h), sums in a fixed tree;
 *  - errors: X = (Wp, (W - Q_rtn)p) by rows, X V with one triangular
 *    product (cublasStrmm), squared row norms;
 *  - sweep: the CPU's blocks and 32-column sub-blocks: a warp per row runs
 *    the sub-block's columns one by one (lane l holds column s0 + l), FP32
 *    GEMMs do the lazy updates. The rows are independent, so they go in
 *    chunks that bound the working matrix S [rows, cols].
 *
 * Codes, scales, zero points and the sums are host memory in kernels.h:
 * they travel through device arrays indexed by the stacked row, uploaded
 * first and downloaded at the end. The solver's own products are FP32
 * whatever QK_CUDA_MATH says.
 */
#include "qk_cuda_num.h"
#include "qk_cuda_red.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#define RT 256
#define EW_BLOCKS 65535u
#define WARPS 8 /* warps per block of the warp-per-item kernels */

#define GRID_STRIDE(i, n) \
	for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); \
	     i += (size_t)gridDim.x * blockDim.x)

/* per-row sums kept on the device, in this order */
enum { S_W2, S_WERR, S_NW, S_XVW, S_NR, S_XVR, S_NG, S_XVG, S_HW2, S_HERR, S_N };

/* ---------------------------------------------------------------- hdiag, minmax */

static __global__ void k_diag(const float *H, int64_t n, float *d)
{
	GRID_STRIDE(i, (size_t)n)
		d[i] = H[(int64_t)i * n + (int64_t)i];
}

int qk_cuda_gptq_hdiag(qk_ctx *ctx, const float *H, int64_t n, float *diag, int64_t *bad)
{
	const char *op = "gptq hdiag";
	QC_TRY(qk_cuda_enter(ctx, op));
	if (!H || !diag || !bad || n < 1)
		return qc_seterr(QC_EINVAL, "gptq hdiag: invalid arguments");
	float *d = (float *)qk_cuda_scratch(ctx, (size_t)n * sizeof(float), op);
	if (!d)
		return QC_ENOMEM;
	QK_LAUNCH(k_diag, qk_blocks((size_t)n, RT, EW_BLOCKS), RT, 0, qk_cu(ctx)->st, H, n, d);
	LAUNCH_TRY(op);
	QC_TRY(qk_cuda_get(ctx, diag, d, (size_t)n * sizeof(float), op));
	return qk_cuda_tri_scan(ctx, op, H, n, 1, 0, bad);
}

static __global__ void k_minmax(const float *W, size_t n, float *part)
{
	float lo = 0.0f, hi = 0.0f; /* the range includes 0 */
	GRID_STRIDE(i, n) {
		lo = fminf(lo, W[i]);
		hi = fmaxf(hi, W[i]);
	}
	lo = qk_block_reduce(lo, qk_op_fmin(), 0.0f);
	hi = qk_block_reduce(hi, qk_op_fmax(), 0.0f);
	if (threadIdx.x == 0) {
		part[2 * blockIdx.x] = lo;
		part[2 * blockIdx.x + 1] = hi;
	}
}

int qk_cuda_gptq_minmax(qk_ctx *ctx, const float *W, size_t n, float *mn, float *mx)
{
	const char *op = "gptq minmax";
	QC_TRY(qk_cuda_enter(ctx, op));
	if (!W || !mn || !mx)
		return qc_seterr(QC_EINVAL, "gptq minmax: invalid arguments");
	*mn = *mx = 0.0f;
	if (n == 0)
		return 0;
	unsigned nb = qk_blocks(n, RT, 512u);
	float *part = (float *)qk_cuda_res(ctx, 2 * nb * sizeof(float), op);
	if (!part)
		return QC_ENOMEM;
	QK_LAUNCH(k_minmax, nb, RT, 0, qk_cu(ctx)->st, W, n, part);
	LAUNCH_TRY(op);
	float h[2 * 512];
	QC_TRY(qk_cuda_get(ctx, h, part, 2 * nb * sizeof(float), op));
	for (unsigned b = 0; b < nb; b++) {
		*mn = fminf(*mn, h[2 * b]);
		*mx = fmaxf(*mx, h[2 * b + 1]);
	}
	return 0;
}

/* ---------------------------------------------------------------- permute */

/* dst rows [0, rows) = src rows with columns gathered: dst[r][j] = src[r][sigma[j]] */
static __global__ void k_gather_cols(float *dst, const float *src, int64_t rows, int64_t n,
                                     const int64_t *sigma)
{
	for (int64_t r = blockIdx.x; r < rows; r += gridDim.x)
		for (int64_t j = threadIdx.x; j < n; j += blockDim.x)
			dst[r * n + j] = src[r * n + sigma[j]];
}

#define TILE 32

/* in-place transpose of A [n, n]: block (bx, by), by >= bx, swaps tile
 * (bx, by) with tile (by, bx) through shared memory */
static __global__ void k_transpose(float *A, int64_t n)
{
	__shared__ float a[TILE][TILE + 1], b[TILE][TILE + 1];
	int64_t bx = blockIdx.x, by = blockIdx.y;
	if (by < bx)
		return;
	int64_t r0 = bx * TILE, c0 = by * TILE;
	for (int k = threadIdx.y; k < TILE; k += blockDim.y) {
		int64_t x = threadIdx.x;
		a[k][x] = r0 + k < n && c0 + x < n ? A[(r0 + k) * n + c0 + x] : 0.0f;
		b[k][x] = c0 + k < n && r0 + x < n ? A[(c0 + k) * n + r0 + x] : 0.0f;
	}
	__syncthreads();
	for (int k = threadIdx.y; k < TILE; k += blockDim.y) {
		int64_t x = threadIdx.x;
		/* tile (bx, by) gets b's transpose, tile (by, bx) a's */
		if (r0 + k < n && c0 + x < n)
			A[(r0 + k) * n + c0 + x] = b[x][k];
		if (c0 + k < n && r0 + x < n)
			A[(c0 + k) * n + r0 + x] = a[x][k];
	}
}

/* the columns of every row of H permuted by sigma, rows in batches through
 * tmp [batch, n] */
static int permute_cols(qk_ctx *ctx, const char *op, float *H, int64_t n, const int64_t *sig,
                        float *tmp, int64_t batch)
{
	qk_cuda *c = qk_cu(ctx);
	for (int64_t r0 = 0; r0 < n; r0 += batch) {
		int64_t rows = n - r0 < batch ? n - r0 : batch;
		QK_LAUNCH(k_gather_cols, (unsigned)(rows < 65535 ? rows : 65535), RT, 0, c->st, tmp,
		          (const float *)(H + r0 * n), rows, n, sig);
		LAUNCH_TRY(op);
		CU_TRY(op, cudaMemcpyAsync(H + r0 * n, tmp, (size_t)(rows * n) * sizeof(float),
		                           cudaMemcpyDeviceToDevice, c->st));
	}
	return 0;
}

#define PERM_TMP ((size_t)64 << 20)

int qk_cuda_gptq_permute(qk_ctx *ctx, float *H, int64_t n, const int64_t *sigma)
{
	const char *op = "gptq permute";
	QC_TRY(qk_cuda_enter(ctx, op));
	if (!H || !sigma || n < 1)
		return qc_seterr(QC_EINVAL, "gptq permute: invalid arguments");
	int64_t nt = (n + TILE - 1) / TILE;
	if (nt > 65535)
		return qc_seterr(QC_EINVAL, "gptq permute: matrix of %lld rows too large", (long long)n);
	int64_t batch = (int64_t)(qk_cu_size(ctx, PERM_TMP, 1024) / ((size_t)n * sizeof(float)));
	if (batch < 1)
		batch = 1;
	if (batch > n)
		batch = n;
	size_t sb = (size_t)n * sizeof(int64_t);
	char *p = (char *)qk_cuda_scratch(ctx, qk_align256(sb) + (size_t)(batch * n) * sizeof(float), op);
	if (!p)
		return QC_ENOMEM;
	int64_t *sig = (int64_t *)qk_carve(&p, sb);
	float *tmp = (float *)p;
	QC_TRY(qk_cuda_put(ctx, sig, sigma, sb, op));
	/* H whole, then M = ((H P^T)^T P^T)^T = P H P^T, H being symmetric:
	 * each transposition of a symmetric step leaves M[i][j] =
	 * H[sigma[i]][sigma[j]] */
	QC_TRY(qk_cuda_mirror_upper(ctx, op, H, n));
	QC_TRY(permute_cols(ctx, op, H, n, sig, tmp, batch));
	QK_LAUNCH(k_transpose, dim3((unsigned)nt, (unsigned)nt), dim3(TILE, 8), 0, qk_cu(ctx)->st, H, n);
	LAUNCH_TRY(op);
	QC_TRY(permute_cols(ctx, op, H, n, sig, tmp, batch));
	return qk_cuda_sync(ctx, op);
}

/* ---------------------------------------------------------------- factor */

static __global__ void k_set_diag(float *H, int64_t n, const float *diag, double lambda)
{
	GRID_STRIDE(i, (size_t)n)
		H[(int64_t)i * n + (int64_t)i] = (float)((double)diag[i] + lambda);
}

/* V = J L J in place: L (lower, diagonal included) moves to the point
 * reflection (n-1-i, n-1-j), which is in the upper triangle; the strict
 * lower triangle is cleared. Each strictly lower element is read by one
 * thread, which writes one strictly upper element and clears its own; the
 * diagonal's pairs are swapped by one thread each. */
static __global__ void k_reverse(float *H, int64_t n)
{
	size_t m = (size_t)n * (size_t)n;
	GRID_STRIDE(e, m) {
		int64_t i = (int64_t)(e / (size_t)n), j = (int64_t)(e % (size_t)n);
		if (i > j) {
			H[(n - 1 - i) * n + (n - 1 - j)] = H[e];
			H[e] = 0.0f;
		} else if (i == j && i < n - 1 - i) {
			float t = H[e];
			H[e] = H[(n - 1 - i) * n + (n - 1 - i)];
			H[(n - 1 - i) * n + (n - 1 - i)] = t;
		}
	}
}

int qk_cuda_gptq_factor(qk_ctx *ctx, float *H, int64_t n, const float *diag, double lambda)
{
	const char *op = "gptq factor";
	QC_TRY(qk_cuda_enter(ctx, op));
	if (!H || !diag || n < 1 || n > INT_MAX)
		return qc_seterr(QC_EINVAL, "gptq factor: invalid arguments");
	qk_cuda *c = qk_cu(ctx);
	float *d = (float *)qk_cuda_scratch(ctx, (size_t)n * sizeof(float), op);
	if (!d)
		return QC_ENOMEM;
	QC_TRY(qk_cuda_put(ctx, d, diag, (size_t)n * sizeof(float), op));
	QK_LAUNCH(k_set_diag, qk_blocks((size_t)n, RT, EW_BLOCKS), RT, 0, c->st, H, n, (const float *)d,
	          lambda);
	LAUNCH_TRY(op);
	/* row-major lower = column-major upper; cuSOLVER reads and writes that
	 * triangle only, so M's strict upper triangle survives */
	size_t dbytes = 0, hbytes = 0;
	SOLVER_TRY(op, cusolverDnXpotrf_bufferSize(c->solver, c->sparams, CUBLAS_FILL_MODE_UPPER, n,
	                                           CUDA_R_32F, H, n, CUDA_R_32F, &dbytes, &hbytes));
	void *dw = qk_cuda_work(ctx, dbytes ? dbytes : 256, op);
	void *hw = qk_cuda_hwork(ctx, hbytes ? hbytes : 16, op);
	int *info = (int *)qk_cuda_res(ctx, sizeof(int), op);
	if (!dw || !hw || !info)
		return QC_ENOMEM;
	SOLVER_TRY(op, cusolverDnXpotrf(c->solver, c->sparams, CUBLAS_FILL_MODE_UPPER, n, CUDA_R_32F, H,
	                                n, CUDA_R_32F, dw, dbytes, hw, hbytes, info));
	int h = 0;
	QC_TRY(qk_cuda_get(ctx, &h, info, sizeof h, op));
	if (h < 0)
		return qc_seterr(QC_EINTERNAL, "gptq factor: cusolverDnXpotrf argument %d invalid", -h);
	if (h > 0) {
		/* M again: the lower triangle from the upper one, and the damped
		 * diagonal that the partial factorization overwrote */
		QC_TRY(qk_cuda_mirror_upper(ctx, op, H, n));
		QK_LAUNCH(k_set_diag, qk_blocks((size_t)n, RT, EW_BLOCKS), RT, 0, c->st, H, n,
		          (const float *)d, lambda);
		LAUNCH_TRY(op);
		QC_TRY(qk_cuda_sync(ctx, op));
		return qc_seterr(QC_ENUMERIC,
		                 "cholesky failed: matrix is not positive definite (leading minor %d of %lld)",
		                 h, (long long)n);
	}
	QK_LAUNCH(k_reverse, qk_blocks((size_t)(n * n), RT, EW_BLOCKS), RT, 0, c->st, H, n);
	LAUNCH_TRY(op);
	return qk_cuda_sync(ctx, op);
}

/* ---------------------------------------------------------------- group parameters */

/* Sum over the warp of |qdq(x) - x|^norm (weighted by colw), in double. */
QK_DEV double group_err(const qk_cuq &q, const float *x, int64_t len, const float *colw, float s,
                        float z)
{
	const int lane = (int)(threadIdx.x & 31);
	double e = 0;
	for (int64_t i = lane; i < len; i += 32) {
		float v = qk_qdq(q, x[i], s, z);
		double d = fabs((double)v - (double)x[i]);
		double t = q.norm == 2.0 ? d * d : pow(d, q.norm);
		e += colw ? (double)colw[i] * t : t;
	}
	return qk_warp_reduce(e, qk_op_add());
}

/*
 * One group's parameters (kernels/cpu gparams, qc_group_params): min/max,
 * then with mse the clipping search over shrinking ranges with patience.
 * Called by a whole warp, which returns the same s, z in every lane. The
 * CPU stops a candidate's sum once it reaches the best (a shortcut that
 * never changes the outcome); here each sum is whole.
 */
QK_DEV void gparams_warp(const qk_cuq &q, const float *x, int64_t len, const float *colw,
                         float *scale, float *zp)
{
	const int lane = (int)(threadIdx.x & 31);
	float mn = 0.0f, mx = 0.0f;
	for (int64_t i = lane; i < len; i += 32) {
		mn = fminf(mn, x[i]);
		mx = fmaxf(mx, x[i]);
	}
	mn = qk_warp_reduce(mn, qk_op_fmin());
	mx = qk_warp_reduce(mx, qk_op_fmax());
	float bs, bz;
	qk_qparams(q, mn, mx, &bs, &bz);
	if (q.mse) {
		double best = group_err(q, x, len, colw, bs, bz);
		float ps = bs, pz = bz;
		int since = 0;
		int steps = (int)(q.maxshrink * q.grid);
		for (int i = 1; i < steps; i++) {
			float p = __fsub_rn(1.0f, __fdiv_rn((float)i, (float)q.grid));
			float s, z;
			qk_qparams(q, __fmul_rn(p, mn), __fmul_rn(p, mx), &s, &z);
			if (s == ps && z == pz) { /* the candidate before, again: no improvement */
				if (++since >= q.patience)
					break;
				continue;
			}
			ps = s;
			pz = z;
			double e = group_err(q, x, len, colw, s, z);
			if (e < best) {
				best = e;
				bs = s;
				bz = z;
				since = 0;
			} else if (++since >= q.patience) {
				break;
			}
		}
	}
	*scale = bs;
	*zp = bz;
}

/* warp per (row, group) */
static __global__ void k_params(qk_cuq q, const float *const *wrow, int64_t R, int64_t n,
                                int64_t ng, const float *colw, float *sc, float *zp)
{
	int64_t item = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) / 32;
	if (item >= R * ng)
		return; /* whole warps: R * ng items, 32 lanes each */
	int64_t r = item / ng, g = item % ng;
	int64_t c0 = g * q.group, len = n - c0 < q.group ? n - c0 : q.group;
	float s, z;
	gparams_warp(q, wrow[r] + c0, len, colw ? colw + c0 : NULL, &s, &z);
	if ((threadIdx.x & 31) == 0) {
		sc[item] = s;
		if (zp)
			zp[item] = z;
	}
}

/* ---------------------------------------------------------------- the stacked rows */

/* The matrices' rows stacked in order, as kernels/cpu's make_rows, with
 * the same checks and messages. */
typedef struct rows_t {
	const qk_gptq_mat *m;
	int nmat;
	int64_t R, n, ng;
	int64_t base[65];    /* base[k] = first stacked row of matrix k */
} rows_t;

static int check_spec(const qk_qspec *q, int64_t cols, const char *op)
{
	if (!q || cols < 1 || cols > INT_MAX)
		return qc_seterr(QC_EINVAL, "%s: invalid arguments", op);
	if ((q->is_float && (q->bits != 8 || !q->symmetric)) ||
	    (!q->is_float && q->bits != 4 && q->bits != 8) || q->group < 1 ||
	    (q->scale_dtype != QC_DT_BF16 && q->scale_dtype != QC_DT_F16 &&
	     q->scale_dtype != QC_DT_F32) ||
	    (q->arith != QC_DT_BF16 && q->arith != QC_DT_F16 && q->arith != QC_DT_F32) ||
	    (q->mse && (q->grid < 1 || q->patience < 1 || !(q->maxshrink >= 0 && q->maxshrink < 1) ||
	                !(q->norm > 0))))
		return qc_seterr(QC_EINVAL, "%s: invalid quantization arguments", op);
	return 0;
}

static int make_rows(const qk_qspec *q, const qk_gptq_mat *m, int nmat, int64_t cols,
                     int need_sums, int need_codes, const char *op, rows_t *rw)
{
	QC_TRY(check_spec(q, cols, op));
	if (!m || nmat < 1)
		return qc_seterr(QC_EINVAL, "%s: no matrices", op);
	if (nmat > 64)
		return qc_seterr(QC_EINVAL, "%s: %d matrices, at most 64 at once", op, nmat);
	int64_t n = 0;
	for (int k = 0; k < nmat; k++) {
		if (!m[k].W || m[k].rows < 1 || !m[k].scales || (!q->symmetric && !m[k].zps) ||
		    (need_sums && !m[k].sums) || m[k].rows > INT64_MAX / cols - n)
			return qc_seterr(QC_EINVAL, "%s: invalid matrix %d", op, k);
		rw->base[k] = n;
		n += m[k].rows;
	}
	if (need_codes)
		for (int k = 0; k < nmat; k++)
			if (!m[k].codes)
				return qc_seterr(QC_EINVAL, "%s: no codes for matrix %d", op, k);
	rw->base[nmat] = n;
	rw->m = m;
	rw->nmat = nmat;
	rw->R = n;
	rw->n = cols;
	rw->ng = q->tensor ? 1 : (cols + q->group - 1) / q->group;
	return 0;
}

/* matrix k's part of stacked rows [r0, r1): its local rows [*a, *b) */
static int seg(const rows_t *rw, int k, int64_t r0, int64_t r1, int64_t *a, int64_t *b)
{
	int64_t lo = rw->base[k] > r0 ? rw->base[k] : r0;
	int64_t hi = rw->base[k + 1] < r1 ? rw->base[k + 1] : r1;
	*a = lo - rw->base[k];
	*b = hi - rw->base[k];
	return lo < hi;
}

/* Device copies of stacked rows [r0, r1): row pointers of W and deq, and
 * the rows' scales and zero points ([rows, ng]; a tensor-wide one repeated
 * on every row). The host scales are uploaded unless fill is 0. */
typedef struct chunk_t {
	const float **wrow;
	float **drow;
	float *sc, *zp;
	uint8_t *codes;      /* [rows, n] or NULL */
	double *sums;        /* [rows, S_N] */
} chunk_t;

static size_t chunk_bytes(const rows_t *rw, int64_t rows, int codes, int zps)
{
	size_t b = 2 * qk_align256((size_t)rows * sizeof(void *));
	b += (1 + (zps ? 1 : 0)) * qk_align256((size_t)(rows * rw->ng) * sizeof(float));
	if (codes)
		b += qk_align256((size_t)(rows * rw->n));
	b += qk_align256((size_t)rows * S_N * sizeof(double));
	return b;
}

static int chunk_setup(qk_ctx *ctx, const char *op, const rows_t *rw, const qk_qspec *q,
                       int64_t r0, int64_t r1, int codes, int fill, char **p, chunk_t *ch)
{
	const int64_t rows = r1 - r0, ng = rw->ng;
	ch->wrow = (const float **)qk_carve(p, (size_t)rows * sizeof(void *));
	ch->drow = (float **)qk_carve(p, (size_t)rows * sizeof(void *));
	ch->sc = (float *)qk_carve(p, (size_t)(rows * ng) * sizeof(float));
	ch->zp = q->symmetric ? NULL : (float *)qk_carve(p, (size_t)(rows * ng) * sizeof(float));
	ch->codes = codes ? (uint8_t *)qk_carve(p, (size_t)(rows * rw->n)) : NULL;
	ch->sums = (double *)qk_carve(p, (size_t)rows * S_N * sizeof(double));
	/* host staging: pointers, then (tensor) the repeated parameters */
	size_t hb = 2 * (size_t)rows * sizeof(void *) + 2 * (size_t)rows * sizeof(float);
	char *h = (char *)qk_cuda_hwork(ctx, hb, op);
	if (!h)
		return QC_ENOMEM;
	const float **hw = (const float **)h;
	float **hd = (float **)(h + (size_t)rows * sizeof(void *));
	for (int k = 0; k < rw->nmat; k++) {
		int64_t a, b;
		if (!seg(rw, k, r0, r1, &a, &b))
			continue;
		for (int64_t lr = a; lr < b; lr++) {
			int64_t i = rw->base[k] + lr - r0;
			hw[i] = rw->m[k].W + lr * rw->n;
			hd[i] = rw->m[k].deq ? rw->m[k].deq + lr * rw->n : NULL;
		}
	}
	QC_TRY(qk_cuda_put(ctx, ch->wrow, hw, (size_t)rows * sizeof(void *), op));
	QC_TRY(qk_cuda_put(ctx, ch->drow, hd, (size_t)rows * sizeof(void *), op));
	CU_TRY(op, cudaMemsetAsync(ch->sums, 0, (size_t)rows * S_N * sizeof(double), qk_cu(ctx)->st));
	if (!fill)
		return 0;
	if (q->tensor) {
		float *hs = (float *)(h + 2 * (size_t)rows * sizeof(void *)), *hz = hs + rows;
		for (int k = 0; k < rw->nmat; k++) {
			int64_t a, b;
			if (!seg(rw, k, r0, r1, &a, &b))
				continue;
			for (int64_t lr = a; lr < b; lr++) {
				int64_t i = rw->base[k] + lr - r0;
				hs[i] = rw->m[k].scales[0];
				hz[i] = q->symmetric ? 0.0f : rw->m[k].zps[0];
			}
		}
		QC_TRY(qk_cuda_put(ctx, ch->sc, hs, (size_t)rows * sizeof(float), op));
		if (ch->zp)
			QC_TRY(qk_cuda_put(ctx, ch->zp, hz, (size_t)rows * sizeof(float), op));
		/* the staging is read by the copies above before they return
		 * (pageable memory), so it may be reused */
		return 0;
	}
	for (int k = 0; k < rw->nmat; k++) {
		int64_t a, b;
		if (!seg(rw, k, r0, r1, &a, &b))
			continue;
		int64_t i = rw->base[k] + a - r0;
		size_t nb = (size_t)((b - a) * ng) * sizeof(float);
		QC_TRY(qk_cuda_put(ctx, ch->sc + i * ng, rw->m[k].scales + a * ng, nb, op));
		if (ch->zp)
			QC_TRY(qk_cuda_put(ctx, ch->zp + i * ng, rw->m[k].zps + a * ng, nb, op));
	}
	return 0;
}

/* The chunk's results back to the matrices: codes (if any), scales and
 * zero points (params != 0, not for tensor) and the sums (fields f[nf]),
 * added to the host sums. */
static int chunk_finish(qk_ctx *ctx, const char *op, const rows_t *rw, const qk_qspec *q,
                        int64_t r0, int64_t r1, const chunk_t *ch, int params, const int *f,
                        int nf)
{
	const int64_t rows = r1 - r0, ng = rw->ng;
	for (int k = 0; k < rw->nmat; k++) {
		int64_t a, b;
		if (!seg(rw, k, r0, r1, &a, &b))
			continue;
		int64_t i = rw->base[k] + a - r0;
		if (ch->codes)
			CU_TRY(op, cudaMemcpyAsync((uint8_t *)rw->m[k].codes + a * rw->n, ch->codes + i * rw->n,
			                           (size_t)((b - a) * rw->n), cudaMemcpyDeviceToHost,
			                           qk_cu(ctx)->st));
		if (params && !q->tensor) {
			size_t nb = (size_t)((b - a) * ng) * sizeof(float);
			CU_TRY(op, cudaMemcpyAsync(rw->m[k].scales + a * ng, ch->sc + i * ng, nb,
			                           cudaMemcpyDeviceToHost, qk_cu(ctx)->st));
			if (ch->zp)
				CU_TRY(op, cudaMemcpyAsync(rw->m[k].zps + a * ng, ch->zp + i * ng, nb,
				                           cudaMemcpyDeviceToHost, qk_cu(ctx)->st));
		}
	}
	if (nf == 0)
		return qk_cuda_sync(ctx, op);
	double *hs = (double *)qk_cuda_hwork(ctx, (size_t)rows * S_N * sizeof(double), op);
	if (!hs)
		return QC_ENOMEM;
	QC_TRY(qk_cuda_get(ctx, hs, ch->sums, (size_t)rows * S_N * sizeof(double), op));
	for (int k = 0; k < rw->nmat; k++) {
		int64_t a, b;
		if (!seg(rw, k, r0, r1, &a, &b))
			continue;
		for (int64_t lr = a; lr < b; lr++) {
			const double *x = hs + (rw->base[k] + lr - r0) * S_N;
			qk_gptq_sums *s = &rw->m[k].sums[lr];
			for (int t = 0; t < nf; t++) {
				double v = x[f[t]];
				switch (f[t]) {
				case S_W2: s->w2 += v; break;
				case S_WERR: s->werr += v; break;
				case S_NW: s->n_w += v; break;
				case S_XVW: s->xv_w += v; break;
				case S_NR: s->n_r += v; break;
				case S_XVR: s->xv_r += v; break;
				case S_NG: s->n_g += v; break;
				case S_XVG: s->xv_g += v; break;
				case S_HW2: s->hw2 += v; break;
				case S_HERR: s->herr += v; break;
				}
			}
		}
	}
	return 0;
}

/* rows per chunk: the whole stack, or what keeps per-row bytes under cap */
static int64_t chunk_rows(int64_t R, size_t per_row, size_t cap)
{
	int64_t c = (int64_t)(cap / (per_row ? per_row : 1));
	if (c < 1)
		c = 1;
	return c < R ? c : R;
}

#define CHUNK_CAP ((size_t)1 << 30)

int qk_cuda_gptq_params(qk_ctx *ctx, const qk_qspec *q, const qk_gptq_mat *m, int nmat,
                        int64_t cols, const float *colw)
{
	const char *op = "gptq params";
	QC_TRY(qk_cuda_enter(ctx, op));
	rows_t rw;
	QC_TRY(make_rows(q, m, nmat, cols, 0, 0, op, &rw));
	if (q->tensor)
		return qc_seterr(QC_EINVAL, "gptq params: not for a tensor-wide scale");
	const qk_cuq cq = qk_cuq_of(q);
	int64_t cr = chunk_rows(rw.R, chunk_bytes(&rw, 1, 0, !q->symmetric), qk_cu_size(ctx, CHUNK_CAP, 16384));
	size_t cwb = colw ? (size_t)cols * sizeof(float) : 0;
	char *p = (char *)qk_cuda_scratch(ctx, chunk_bytes(&rw, cr, 0, !q->symmetric) + qk_align256(cwb),
	                                  op);
	if (!p)
		return QC_ENOMEM;
	float *dcw = colw ? (float *)qk_carve(&p, cwb) : NULL;
	if (colw)
		QC_TRY(qk_cuda_put(ctx, dcw, colw, cwb, op));
	for (int64_t r0 = 0; r0 < rw.R; r0 += cr) {
		int64_t r1 = r0 + cr < rw.R ? r0 + cr : rw.R;
		char *pc = p;
		chunk_t ch;
		QC_TRY(chunk_setup(ctx, op, &rw, q, r0, r1, 0, 0, &pc, &ch));
		int64_t items = (r1 - r0) * rw.ng;
		QK_LAUNCH(k_params, qk_blocks((size_t)items * 32, 32 * WARPS, 0x7fffffffu), 32 * WARPS, 0,
		          qk_cu(ctx)->st, cq, (const float *const *)ch.wrow, r1 - r0, cols, rw.ng,
		          (const float *)dcw, ch.sc, ch.zp);
		LAUNCH_TRY(op);
		QC_TRY(chunk_finish(ctx, op, &rw, q, r0, r1, &ch, 1, NULL, 0));
	}
	return 0;
}

/* ---------------------------------------------------------------- RTN */

/* block per row: w2, then every column's code, deq and werr; with colw
 * (device) also their weighted sums hw2 and herr */
static __global__ void k_rtn(qk_cuq q, const float *const *wrow, float *const *drow, int64_t R,
                             int64_t n, int64_t ng, const float *sc, const float *zp,
                             const float *colw, uint8_t *codes, double *sums)
{
	for (int64_t r = blockIdx.x; r < R; r += gridDim.x) {
		const float *w = wrow[r];
		float *deq = drow[r];
		double w2 = 0, hw2 = 0;
		for (int64_t c = threadIdx.x; c < n; c += blockDim.x) {
			w2 += (double)w[c] * (double)w[c];
			if (colw)
				hw2 += (double)colw[c] * ((double)w[c] * (double)w[c]);
		}
		w2 = qk_block_reduce(w2, qk_op_add(), 0.0);
		if (colw)
			hw2 = qk_block_reduce(hw2, qk_op_add(), 0.0);
		/* every w[c] was read by the reduction (whose barriers end it)
		 * before deq, which may be W, is written */
		double werr = 0, herr = 0;
		for (int64_t c = threadIdx.x; c < n; c += blockDim.x) {
			int64_t g = q.tensor ? 0 : c / q.group;
			float s = sc[r * ng + g], z = zp ? zp[r * ng + g] : 0.0f;
			float wc = w[c];
			float qv = qk_quantize(q, wc, s, z);
			codes[r * n + c] = qk_code_byte(q, qv);
			float dq = qk_dequantize(qv, s, z);
			double d = (double)wc - (double)dq;
			werr += d * d;
			if (colw)
				herr += (double)colw[c] * (d * d);
			if (deq)
				deq[c] = dq;
		}
		werr = qk_block_reduce(werr, qk_op_add(), 0.0);
		if (colw)
			herr = qk_block_reduce(herr, qk_op_add(), 0.0);
		if (threadIdx.x == 0) {
			sums[r * S_N + S_W2] += w2;
			sums[r * S_N + S_WERR] += werr;
			sums[r * S_N + S_HW2] += hw2;
			sums[r * S_N + S_HERR] += herr;
		}
	}
}

int qk_cuda_gptq_rtn(qk_ctx *ctx, const qk_qspec *q, const qk_gptq_mat *m, int nmat,
                     int64_t cols, const float *colw)
{
	const char *op = "gptq rtn";
	QC_TRY(qk_cuda_enter(ctx, op));
	rows_t rw;
	QC_TRY(make_rows(q, m, nmat, cols, 1, 1, op, &rw));
	const qk_cuq cq = qk_cuq_of(q);
	int64_t cr = chunk_rows(rw.R, chunk_bytes(&rw, 1, 1, !q->symmetric), qk_cu_size(ctx, CHUNK_CAP, 16384));
	size_t cwb = colw ? (size_t)cols * sizeof(float) : 0;
	char *p = (char *)qk_cuda_scratch(ctx, chunk_bytes(&rw, cr, 1, !q->symmetric) + qk_align256(cwb),
	                                  op);
	if (!p)
		return QC_ENOMEM;
	float *dcw = colw ? (float *)qk_carve(&p, cwb) : NULL;
	if (colw)
		QC_TRY(qk_cuda_put(ctx, dcw, colw, cwb, op));
	static const int f[] = { S_W2, S_WERR, S_HW2, S_HERR };
	for (int64_t r0 = 0; r0 < rw.R; r0 += cr) {
		int64_t r1 = r0 + cr < rw.R ? r0 + cr : rw.R;
		char *pc = p;
		chunk_t ch;
		QC_TRY(chunk_setup(ctx, op, &rw, q, r0, r1, 1, 1, &pc, &ch));
		QK_LAUNCH(k_rtn, (unsigned)(r1 - r0 < 65535 ? r1 - r0 : 65535), RT, 0, qk_cu(ctx)->st, cq,
		          (const float *const *)ch.wrow, (float *const *)ch.drow, r1 - r0, cols, rw.ng,
		          (const float *)ch.sc, (const float *)ch.zp, (const float *)dcw, ch.codes,
		          ch.sums);
		LAUNCH_TRY(op);
		QC_TRY(chunk_finish(ctx, op, &rw, q, r0, r1, &ch, 0, f, colw ? 4 : 2));
	}
	return 0;
}

/* ---------------------------------------------------------------- errors */

/* block per row: X[r] = Wp (sweep order, dead columns 0), X[rows + r] =
 * the same of W - Q_rtn; their squared norms */
static __global__ void k_err_rows(qk_cuq q, const float *const *wrow, int64_t R, int64_t n,
                                  int64_t ng, const float *sc, const float *zp,
                                  const int64_t *perm, const uint8_t *dead, float *X,
                                  double *sums)
{
	for (int64_t r = blockIdx.x; r < R; r += gridDim.x) {
		const float *w = wrow[r];
		float *xw = X + r * n, *xr = X + (R + r) * n;
		double nw = 0, nr = 0;
		for (int64_t k = threadIdx.x; k < n; k += blockDim.x) {
			int64_t c = perm[k];
			if (dead && dead[c]) {
				xw[k] = xr[k] = 0.0f;
				continue;
			}
			int64_t g = q.tensor ? 0 : c / q.group;
			float s = sc[r * ng + g], z = zp ? zp[r * ng + g] : 0.0f;
			float wc = w[c];
			float d = __fsub_rn(wc, qk_qdq(q, wc, s, z));
			xw[k] = wc;
			xr[k] = d;
			nw += (double)wc * (double)wc;
			nr += (double)d * (double)d;
		}
		nw = qk_block_reduce(nw, qk_op_add(), 0.0);
		nr = qk_block_reduce(nr, qk_op_add(), 0.0);
		if (threadIdx.x == 0) {
			sums[r * S_N + S_NW] += nw;
			sums[r * S_N + S_NR] += nr;
		}
	}
}

/* block per row of Y [2 R, ld] (columns [0, cols)): squared norm into
 * sums[r mod R][field of the half] */
static __global__ void k_row_sq(const float *Y, int64_t R2, int64_t cols, int64_t ld,
                                double *sums, int64_t R, int f_lo, int f_hi)
{
	for (int64_t r = blockIdx.x; r < R2; r += gridDim.x) {
		double s = 0;
		for (int64_t j = threadIdx.x; j < cols; j += blockDim.x)
			s += (double)Y[r * ld + j] * (double)Y[r * ld + j];
		s = qk_block_reduce(s, qk_op_add(), 0.0);
		if (threadIdx.x == 0)
			sums[(r % R) * S_N + (r < R ? f_lo : f_hi)] += s;
	}
}

int qk_cuda_gptq_errors(qk_ctx *ctx, const qk_qspec *q, const qk_gptq_mat *m, int nmat,
                        int64_t cols, const float *V, const int64_t *perm, const uint8_t *dead)
{
	const char *op = "gptq errors";
	QC_TRY(qk_cuda_enter(ctx, op));
	if (!V || !perm)
		return qc_seterr(QC_EINVAL, "gptq errors: invalid arguments");
	rows_t rw;
	QC_TRY(make_rows(q, m, nmat, cols, 1, 0, op, &rw));
	const qk_cuq cq = qk_cuq_of(q);
	qk_cuda *c = qk_cu(ctx);
	const int64_t n = cols;
	/* per row: its chunk bookkeeping and X, Y [2, n] */
	size_t per = chunk_bytes(&rw, 1, 0, !q->symmetric) + 4 * (size_t)n * sizeof(float);
	int64_t cr = chunk_rows(rw.R, per, qk_cu_size(ctx, CHUNK_CAP, 16384));
	size_t pb = (size_t)n * sizeof(int64_t), db = dead ? (size_t)n : 0;
	size_t need = chunk_bytes(&rw, cr, 0, !q->symmetric) + 2 * qk_align256((size_t)(2 * cr * n) * 4) +
	              qk_align256(pb) + qk_align256(db);
	char *p = (char *)qk_cuda_scratch(ctx, need, op);
	if (!p)
		return QC_ENOMEM;
	int64_t *dperm = (int64_t *)qk_carve(&p, pb);
	uint8_t *ddead = dead ? (uint8_t *)qk_carve(&p, db) : NULL;
	float *X = (float *)qk_carve(&p, (size_t)(2 * cr * n) * 4);
	float *Y = (float *)qk_carve(&p, (size_t)(2 * cr * n) * 4);
	QC_TRY(qk_cuda_put(ctx, dperm, perm, pb, op));
	if (dead)
		QC_TRY(qk_cuda_put(ctx, ddead, dead, db, op));
	static const int f[] = { S_NW, S_XVW, S_NR, S_XVR };
	for (int64_t r0 = 0; r0 < rw.R; r0 += cr) {
		int64_t r1 = r0 + cr < rw.R ? r0 + cr : rw.R, rows = r1 - r0;
		char *pc = p;
		chunk_t ch;
		QC_TRY(chunk_setup(ctx, op, &rw, q, r0, r1, 0, 1, &pc, &ch));
		unsigned nb = (unsigned)(rows < 65535 ? rows : 65535);
		QK_LAUNCH(k_err_rows, nb, RT, 0, c->st, cq, (const float *const *)ch.wrow, rows, n, rw.ng,
		          (const float *)ch.sc, (const float *)ch.zp, (const int64_t *)dperm,
		          (const uint8_t *)ddead, X, ch.sums);
		LAUNCH_TRY(op);
		/* Y = X V, V upper triangular (row-major): column-major, Y^T =
		 * V^T X^T with V^T the lower triangle of V's bytes, from the left */
		float one = 1.0f;
		BLAS_TRY(op, cublasStrmm_64(c->blas, CUBLAS_SIDE_LEFT, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N,
		                            CUBLAS_DIAG_NON_UNIT, n, 2 * rows, &one, V, n, X, n, Y, n));
		unsigned nb2 = (unsigned)(2 * rows < 65535 ? 2 * rows : 65535);
		QK_LAUNCH(k_row_sq, nb2, RT, 0, c->st, (const float *)Y, 2 * rows, n, n, ch.sums, rows,
		          (int)S_XVW, (int)S_XVR);
		LAUNCH_TRY(op);
		QC_TRY(chunk_finish(ctx, op, &rw, q, r0, r1, &ch, 0, f, 4));
	}
	return 0;
}

/* ---------------------------------------------------------------- the sweep */

#define SUB 32 /* columns updated one by one before a GEMM updates the rest */

/* The block's columns of every row: Wp (dead columns 0; their weight's
 * square is werr, Q being 0 there) and W1 = Wp. Block per row. */
static __global__ void k_gather(const float *const *wrow, int64_t R, const int64_t *perm,
                                const uint8_t *dead, int64_t i1, int64_t bw, float *Wp, float *W1,
                                double *sums)
{
	for (int64_t r = blockIdx.x; r < R; r += gridDim.x) {
		const float *w = wrow[r];
		double werr = 0;
		for (int64_t jj = threadIdx.x; jj < bw; jj += blockDim.x) {
			int64_t c = perm[i1 + jj];
			float x = w[c];
			if (dead && dead[c]) {
				werr += (double)x * (double)x;
				x = 0.0f;
			}
			Wp[r * bw + jj] = W1[r * bw + jj] = x;
		}
		werr = qk_block_reduce(werr, qk_op_add(), 0.0);
		if (threadIdx.x == 0)
			sums[r * S_N + S_WERR] += werr;
	}
}

/* Sums of w^2 of every original row (before any deq, which may be W, is
 * written). Block per row. */
static __global__ void k_w2(const float *const *wrow, int64_t R, int64_t n, double *sums)
{
	for (int64_t r = blockIdx.x; r < R; r += gridDim.x) {
		const float *w = wrow[r];
		double s = 0;
		for (int64_t c = threadIdx.x; c < n; c += blockDim.x)
			s += (double)w[c] * (double)w[c];
		s = qk_block_reduce(s, qk_op_add(), 0.0);
		if (threadIdx.x == 0)
			sums[r * S_N + S_W2] += s;
	}
}

/* The block's sub-block columns [s0, s1) of one row per warp (kernels/cpu
 * inblock): lane l holds W1's column s0 + l; column by column, the group's
 * parameters when the sweep enters a group (dynamic: only at s0, where
 * sub-blocks are cut), the code, the error (w - q) / U[jj][jj], and its
 * update of the sub-block's later columns through U_BB's row. */
static __global__ void k_inblock(qk_cuq q, int64_t R, int64_t n, int64_t ng, int64_t i1,
                                 int64_t bw, int64_t s0, int64_t s1, const int64_t *perm,
                                 const float *ubb, float *W1, float *Qb, float *Eb, float *sc,
                                 float *zp, uint8_t *codes, float *const *drow, int dynamic,
                                 const float *colw)
{
	const int64_t r = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) / 32;
	const int lane = (int)(threadIdx.x & 31);
	if (r >= R)
		return; /* the whole warp */
	float *w1 = W1 + r * bw;
	const int64_t jl = s0 + lane;
	const int active = jl < s1;
	if (dynamic && (i1 + s0) % q.group == 0) {
		/* W1 is up to date from s0 on: the group's updated weights (no
		 * act-order with dynamic groups: the column is its own index) */
		int64_t col = i1 + s0, gi = col / q.group;
		int64_t len = n - col < q.group ? n - col : q.group;
		float s, z;
		gparams_warp(q, w1 + s0, len, colw ? colw + col : NULL, &s, &z);
		if (lane == 0) {
			sc[r * ng + gi] = s;
			if (zp)
				zp[r * ng + gi] = z;
		}
		__syncwarp();
	}
	float w = active ? w1[jl] : 0.0f;
	float *deq = drow[r];
	for (int64_t jj = s0; jj < s1; jj++) {
		float wj = __shfl_sync(0xffffffffu, w, (int)(jj - s0));
		int64_t col = i1 + jj, c = perm[col];
		int64_t gi = q.tensor ? 0 : c / q.group;
		float s = sc[r * ng + gi], z = zp ? zp[r * ng + gi] : 0.0f;
		float qv = qk_quantize(q, wj, s, z);
		float dq = qk_dequantize(qv, s, z);
		const float *u = ubb + jj * bw;
		float err = __fdiv_rn(__fsub_rn(wj, dq), u[jj]);
		if (lane == 0) {
			codes[r * n + c] = qk_code_byte(q, qv);
			if (deq)
				deq[c] = dq;
			Qb[r * bw + jj] = dq;
			Eb[r * bw + jj] = err;
		}
		if (active && jl > jj)
			w = __fsub_rn(w, __fmul_rn(err, u[jl]));
	}
}

/* D = Wp - Q into Wp, with n_g += sum d^2 (d in FP32) and werr += sum
 * (wp - q)^2 (in double). Block per row. */
static __global__ void k_delta(int64_t R, int64_t bw, float *Wp, const float *Qb, double *sums)
{
	for (int64_t r = blockIdx.x; r < R; r += gridDim.x) {
		double s = 0, se = 0;
		for (int64_t jj = threadIdx.x; jj < bw; jj += blockDim.x) {
			float wp = Wp[r * bw + jj], qb = Qb[r * bw + jj];
			double de = (double)wp - (double)qb;
			float d = __fsub_rn(wp, qb);
			Wp[r * bw + jj] = d;
			s += (double)d * (double)d;
			se += de * de;
		}
		s = qk_block_reduce(s, qk_op_add(), 0.0);
		se = qk_block_reduce(se, qk_op_add(), 0.0);
		if (threadIdx.x == 0) {
			sums[r * S_N + S_NG] += s;
			sums[r * S_N + S_WERR] += se;
		}
	}
}

/* the block ending after i1: blocks of `block` columns, or with dynamic
 * groups a whole number of groups (at most `block`, or one larger group) */
static int64_t block_end(int64_t n, int64_t gs, int dynamic, int64_t i1, int64_t block)
{
	int64_t w = block;
	if (dynamic)
		w = gs <= block ? block / gs * gs : gs;
	return n - i1 < w ? n : i1 + w;
}

int qk_cuda_gptq_sweep(qk_ctx *ctx, const qk_qspec *q, const qk_gptq_mat *m, int nmat,
                       int64_t cols, const float *V, const int64_t *perm, const uint8_t *dead,
                       const float *colw, int64_t block, int dynamic)
{
	const char *op = "gptq sweep";
	QC_TRY(qk_cuda_enter(ctx, op));
	if (!V || !perm || block < 1)
		return qc_seterr(QC_EINVAL, "gptq sweep: invalid arguments");
	if (dynamic && q && q->tensor)
		return qc_seterr(QC_EINVAL, "gptq sweep: dynamic groups need the group strategy");
	rows_t rw;
	QC_TRY(make_rows(q, m, nmat, cols, 1, 1, op, &rw));
	const qk_cuq cq = qk_cuq_of(q);
	qk_cuda *c = qk_cu(ctx);
	const int64_t n = cols, gs = q->group;
	int64_t wmax = dynamic && gs > block ? gs : block;
	if (wmax > n)
		wmax = n;
	int64_t *starts = (int64_t *)malloc((size_t)(n + 1) * sizeof *starts);
	if (!starts)
		return qc_seterr(QC_ENOMEM, "out of memory");
	int64_t nb = 0;
	for (int64_t i1 = 0; i1 < n; i1 = block_end(n, gs, dynamic, i1, block))
		starts[nb++] = i1;
	starts[nb] = n;

	/* scratch: the shared arrays, then per row of a chunk its bookkeeping,
	 * S [n] and the block buffers Wp, W1, Qb, Eb [wmax] */
	size_t pb = (size_t)n * sizeof(int64_t), db = dead ? (size_t)n : 0;
	size_t cb = colw ? (size_t)n * sizeof(float) : 0, ub = (size_t)(n * wmax) * sizeof(float);
	size_t fixed = qk_align256(pb) + qk_align256(db) + qk_align256(cb) + qk_align256(ub);
	size_t per = chunk_bytes(&rw, 1, 1, !q->symmetric) + ((size_t)n + 4 * (size_t)wmax) * 4;
	int64_t cr = chunk_rows(rw.R, per, qk_cu_size(ctx, CHUNK_CAP, 16384));
	size_t need = fixed + chunk_bytes(&rw, cr, 1, !q->symmetric) +
	              qk_align256((size_t)(cr * n) * 4) + 4 * qk_align256((size_t)(cr * wmax) * 4);
	char *p = (char *)qk_cuda_scratch(ctx, need, op);
	int rc = 0;
	if (!p) {
		free(starts);
		return QC_ENOMEM;
	}
	int64_t *dperm = (int64_t *)qk_carve(&p, pb);
	uint8_t *ddead = dead ? (uint8_t *)qk_carve(&p, db) : NULL;
	float *dcw = colw ? (float *)qk_carve(&p, cb) : NULL;
	float *ubb = (float *)qk_carve(&p, ub);
	float *S = (float *)qk_carve(&p, (size_t)(cr * n) * 4);
	float *Wp = (float *)qk_carve(&p, (size_t)(cr * wmax) * 4);
	float *W1 = (float *)qk_carve(&p, (size_t)(cr * wmax) * 4);
	float *Qb = (float *)qk_carve(&p, (size_t)(cr * wmax) * 4);
	float *Eb = (float *)qk_carve(&p, (size_t)(cr * wmax) * 4);
	static const int f[] = { S_W2, S_WERR, S_NG, S_XVG };

	if ((rc = qk_cuda_put(ctx, dperm, perm, pb, op)) ||
	    (dead && (rc = qk_cuda_put(ctx, ddead, dead, db, op))) ||
	    (colw && (rc = qk_cuda_put(ctx, dcw, colw, cb, op))))
		goto out;
	/* U_BB = V_BB^-1 of every block (U's diagonal blocks), at ubb + i1 wmax */
	for (int64_t k = 0; k < nb && rc == 0; k++) {
		int64_t i1 = starts[k], bw = starts[k + 1] - i1;
		float *u = ubb + i1 * wmax;
		for (int64_t i = 0; i < bw && rc == 0; i++) {
			cudaError_t e = cudaMemcpyAsync(u + i * bw, V + (i1 + i) * n + i1,
			                                (size_t)bw * sizeof(float), cudaMemcpyDeviceToDevice,
			                                c->st);
			if (e != cudaSuccess)
				rc = qk_cuda_err(op, e, "copying a diagonal block of V");
		}
		int sing = 0;
		if (rc == 0 && (rc = qk_cuda_trtri(ctx, op, u, bw, 1, &sing)) == 0 && sing)
			rc = qc_seterr(QC_ENUMERIC, "triangular inverse failed: diagonal entry %d is zero",
			               sing);
	}
	for (int64_t r0 = 0; r0 < rw.R && rc == 0; r0 += cr) {
		int64_t r1 = r0 + cr < rw.R ? r0 + cr : rw.R, rows = r1 - r0;
		char *pc = p;
		chunk_t ch;
		if ((rc = chunk_setup(ctx, op, &rw, q, r0, r1, 1, !dynamic, &pc, &ch)))
			break;
		unsigned nbr = (unsigned)(rows < 65535 ? rows : 65535);
		unsigned nbw = qk_blocks((size_t)rows * 32, 32 * WARPS, 0x7fffffffu);
		cudaError_t e = cudaMemsetAsync(S, 0, (size_t)(rows * n) * 4, c->st);
		if (e != cudaSuccess) {
			rc = qk_cuda_err(op, e, "clearing S");
			break;
		}
		QK_LAUNCH(k_w2, nbr, RT, 0, c->st, (const float *const *)ch.wrow, rows, n, ch.sums);
		for (int64_t k = 0; k < nb && rc == 0; k++) {
			int64_t i1 = starts[k], i2 = starts[k + 1], bw = i2 - i1;
			const float *u = ubb + i1 * wmax;
			QK_LAUNCH(k_gather, nbr, RT, 0, c->st, (const float *const *)ch.wrow, rows,
			          (const int64_t *)dperm, (const uint8_t *)ddead, i1, bw, Wp, W1, ch.sums);
			if ((e = cudaGetLastError()) != cudaSuccess) {
				rc = qk_cuda_err(op, e, "launching the gather");
				break;
			}
			/* W1 = Wp_B + S_B U_BB: the weights as GPTQ has updated them */
			if (i1 > 0 && (rc = qk_cuda_gemm_rm(ctx, op, QK_MATH_FP32, 0, 0, rows, bw, bw, 1.0f,
			                                    S + i1, n, u, bw, 1.0f, W1, bw)))
				break;
			for (int64_t s0 = 0; s0 < bw && rc == 0;) {
				int64_t s1 = s0 + SUB < bw ? s0 + SUB : bw;
				if (dynamic) {
					int64_t ge = ((i1 + s0) / gs + 1) * gs - i1;
					s1 = ge < s1 ? ge : s1;
				}
				QK_LAUNCH(k_inblock, nbw, 32 * WARPS, 0, c->st, cq, rows, n, rw.ng, i1, bw, s0, s1,
				          (const int64_t *)dperm, u, W1, Qb, Eb, ch.sc, ch.zp, ch.codes,
				          (float *const *)ch.drow, dynamic, (const float *)dcw);
				if ((e = cudaGetLastError()) != cudaSuccess) {
					rc = qk_cuda_err(op, e, "launching the sub-block");
					break;
				}
				/* the rest of the block: W1[:, s1:] -= E[:, s0:s1] U_BB[s0:s1, s1:] */
				if (s1 < bw)
					rc = qk_cuda_gemm_rm(ctx, op, QK_MATH_FP32, 0, 0, rows, bw - s1, s1 - s0, -1.0f,
					                     Eb + s0, bw, u + s0 * bw + s1, bw, 1.0f, W1 + s1, bw);
				s0 = s1;
			}
			if (rc)
				break;
			/* D_B = Wp_B - Q_B; S_B += D_B V_BB is E_B, whose squared norm is
			 * this block's share of tr(D H D^T) (S_B is not read again) */
			QK_LAUNCH(k_delta, nbr, RT, 0, c->st, rows, bw, Wp, (const float *)Qb, ch.sums);
			if ((rc = qk_cuda_gemm_rm(ctx, op, QK_MATH_FP32, 0, 0, rows, bw, bw, 1.0f, Wp, bw,
			                          V + i1 * n + i1, n, 1.0f, S + i1, n)))
				break;
			QK_LAUNCH(k_row_sq, nbr, RT, 0, c->st, (const float *)(S + i1), rows, bw, n, ch.sums,
			          rows, (int)S_XVG, (int)S_XVG);
			if ((e = cudaGetLastError()) != cudaSuccess) {
				rc = qk_cuda_err(op, e, "launching the block's sums");
				break;
			}
			/* the lazy update of every later column: S[:, i2:] += D_B V[B, i2:] */
			if (i2 < n)
				rc = qk_cuda_gemm_rm(ctx, op, QK_MATH_FP32, 0, 0, rows, n - i2, bw, 1.0f, Wp, bw,
				                     V + i1 * n + i2, n, 1.0f, S + i2, n);
		}
		if (rc == 0)
			rc = chunk_finish(ctx, op, &rw, q, r0, r1, &ch, dynamic, f, 4);
	}
	if (rc == 0)
		rc = qk_cuda_sync(ctx, op);
out:
	free(starts);
	return rc;
}
