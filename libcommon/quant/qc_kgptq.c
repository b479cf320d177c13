/* qc_kgptq.c - GPTQ on ggml's K-quant grids: the plain reference solver
 * and the run's FP32 solver on the kernels (see qc_kgptq.h). */
#include "qc_kgptq.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "qc_err.h"
#include "qc_ggml.h"
#include "qc_pool.h"

/* In-place lower Cholesky A = L L^T of A [n, n] (lower triangle read and
 * written); 0, or -1 when A is not positive definite. */
static int chol_lower(double *A, int64_t n)
{
	for (int64_t j = 0; j < n; j++) {
		double d = A[j * n + j];
		for (int64_t k = 0; k < j; k++)
			d -= A[j * n + k] * A[j * n + k];
		if (!(d > 0))
			return -1;
		d = sqrt(d);
		A[j * n + j] = d;
		for (int64_t i = j + 1; i < n; i++) {
			double s = A[i * n + j];
			for (int64_t k = 0; k < j; k++)
				s -= A[i * n + k] * A[j * n + k];
			A[i * n + j] = s / d;
		}
	}
	return 0;
}

/* U [n, n] upper with (H + lambda I)^-1 = U^T U (what GPTQ's updates
 * use), from a damped copy H' of H: L L^T = H', Linv = L^-1,
 * H'^-1 = Linv^T Linv = L2 L2^T, U = L2^T. */
static int inverse_factor(const double *H, int64_t n, double lambda, double *U, double *work)
{
	double *A = work;
	for (int64_t i = 0; i < n; i++)
		for (int64_t j = 0; j < n; j++)
			A[i * n + j] = H[i * n + j] + (i == j ? lambda : 0);
	if (chol_lower(A, n))
		return -1;
	/* Linv: forward substitution column by column, into U's storage */
	double *Li = U;
	memset(Li, 0, (size_t)(n * n) * sizeof *Li);
	for (int64_t c = 0; c < n; c++) {
		Li[c * n + c] = 1 / A[c * n + c];
		for (int64_t i = c + 1; i < n; i++) {
			double s = 0;
			for (int64_t k = c; k < i; k++)
				s -= A[i * n + k] * Li[k * n + c];
			Li[i * n + c] = s / A[i * n + i];
		}
	}
	/* M = Linv^T Linv = H'^-1 (into A): M[a][b] = sum_k Linv[k][a] Linv[k][b] */
	for (int64_t a = 0; a < n; a++)
		for (int64_t b = 0; b <= a; b++) {
			double s = 0;
			for (int64_t k = a; k < n; k++)
				s += Li[k * n + a] * Li[k * n + b];
			A[a * n + b] = s;
			A[b * n + a] = s;
		}
	/* M = L2 L2^T, so U = L2^T is upper with M = U^T U */
	if (chol_lower(A, n))
		return -1;
	for (int64_t i = 0; i < n; i++)
		for (int64_t j = 0; j < n; j++)
			U[i * n + j] = j >= i ? A[j * n + i] : 0;
	return 0;
}

/* tr(A H A^T) for A [rows, n] in double */
static double quad(const double *A, const double *H, int64_t rows, int64_t n, double *tmp)
{
	double t = 0;
	for (int64_t r = 0; r < rows; r++) {
		const double *a = A + r * n;
		for (int64_t i = 0; i < n; i++) {
			double s = 0;
			for (int64_t j = 0; j < n; j++)
				s += H[i * n + j] * a[j];
			tmp[i] = s;
		}
		for (int64_t i = 0; i < n; i++)
			t += a[i] * tmp[i];
	}
	return t;
}

int qc_kgptq_ref(int type, const float *W, int64_t rows, int64_t cols, const double *H,
                 double damp, int gptq, void *blocks, float *deq, double *err_out)
{
	int nsub = qc_ggml_k_subblocks(type);
	if (!nsub || rows < 1 || cols < QC_GGML_QK_K || cols % QC_GGML_QK_K || !W || !H || !blocks ||
	    !(damp > 0 && damp <= 1))
		return qc_seterr(QC_EINVAL, "kgptq: invalid arguments");
	for (int64_t i = 0; i < rows * cols; i++)
		if (!isfinite(W[i]))
			return qc_seterr(QC_ENUMERIC, "kgptq: weight [%lld, %lld] is not finite",
			                 (long long)(i / cols), (long long)(i % cols));
	const int64_t n = cols, nb = cols / QC_GGML_QK_K, sub = QC_GGML_QK_K / nsub;
	size_t bb = qc_ggml_block_bytes(type);
	double *Hd = malloc((size_t)(n * n) * sizeof *Hd), *U = malloc((size_t)(n * n) * sizeof *U);
	double *work = malloc((size_t)(n * n) * sizeof *work);
	double *w = malloc((size_t)(rows * n) * sizeof *w), *d = malloc((size_t)(rows * n) * sizeof *d);
	double *tmp = malloc((size_t)n * sizeof *tmp);
	qc_ggml_kgrid *grid = malloc((size_t)(rows * nb) * sizeof *grid);
	float *step = malloc((size_t)(rows * nb * 16) * sizeof *step);
	float *off = malloc((size_t)(rows * nb * 16) * sizeof *off);
	int8_t *codes = malloc((size_t)(rows * n));
	int rc = 0;
	if (!Hd || !U || !work || !w || !d || !tmp || !grid || !step || !off || !codes) {
		rc = qc_seterr(QC_ENOMEM, "out of memory");
		goto out;
	}
	/* dead inputs; the damping */
	memcpy(Hd, H, (size_t)(n * n) * sizeof *Hd);
	double mean = 0;
	for (int64_t j = 0; j < n; j++) {
		if (Hd[j * n + j] == 0)
			Hd[j * n + j] = 1;
		mean += Hd[j * n + j];
	}
	mean /= (double)n;
	for (int64_t i = 0; i < rows * n; i++)
		w[i] = W[i];
	for (int64_t j = 0; j < n; j++)
		if (H[j * n + j] == 0)
			for (int64_t r = 0; r < rows; r++)
				w[r * n + j] = 0;
	/* the grid, from the original weights */
	for (int64_t r = 0; r < rows; r++)
		for (int64_t b = 0; b < nb; b++) {
			qc_ggml_kgrid *g = &grid[r * nb + b];
			qc_ggml_kgrid_ref(type, W + r * n + b * QC_GGML_QK_K, g);
			qc_ggml_kgrid_steps(type, g, step + (r * nb + b) * 16, off + (r * nb + b) * 16);
		}
	if (gptq) {
		double dp = damp;
		while (inverse_factor(Hd, n, dp * mean, U, work)) {
			dp *= 2;
			if (dp > 1) {
				rc = qc_seterr(QC_ENUMERIC, "kgptq: the Hessian does not factor with damping "
				               "up to 1");
				goto out;
			}
		}
	}
	/* the sweep: column j quantized on its sub-block's grid, the error
	 * spread over the later columns */
	for (int64_t j = 0; j < n; j++) {
		int64_t b = j / QC_GGML_QK_K, s = (j % QC_GGML_QK_K) / sub;
		for (int64_t r = 0; r < rows; r++) {
			int64_t gi = (r * nb + b) * 16 + s;
			float x = (float)w[r * n + j];
			int q = qc_ggml_kcode(type, x, step[gi], off[gi]);
			float v = step[gi] * (float)q - off[gi];
			codes[r * n + j] = (int8_t)q;
			if (deq)
				deq[r * n + j] = v;
			d[r * n + j] = (double)W[r * n + j] - v;
			if (gptq) {
				double e = (w[r * n + j] - v) / U[j * n + j];
				for (int64_t k = j + 1; k < n; k++)
					w[r * n + k] -= e * U[j * n + k];
			}
		}
	}
	for (int64_t r = 0; r < rows; r++)
		for (int64_t b = 0; b < nb; b++)
			qc_ggml_kpack(type, &grid[r * nb + b], codes + r * n + b * QC_GGML_QK_K,
			              (uint8_t *)blocks + (size_t)(r * nb + b) * bb);
	if (err_out) {
		for (int64_t i = 0; i < rows * n; i++)
			w[i] = W[i];
		double den = quad(w, H, rows, n, tmp), num = quad(d, H, rows, n, tmp);
		*err_out = den > 0 ? num / den : 0;
	}
out:
	free(Hd);
	free(U);
	free(work);
	free(w);
	free(d);
	free(tmp);
	free(grid);
	free(step);
	free(off);
	free(codes);
	return rc;
}

/* ------------------------------------------------------------ the run's solver */

#define CHUNK_ROWS 256  /* rows of W brought to the host at a time */

typedef struct ksolve {
	qk_ctx *kc;
	int64_t R, n, nb;          /* rows of every part, columns, super-blocks per row */
	int8_t *rtype;             /* [R] the type of each row's part */
	float *step, *off;         /* [R, nb, 16] each sub-block's grid */
	qc_ggml_kgrid *grid;       /* [R, nb] */
	int8_t *codes;             /* [R, n] */
	float *deq;                /* [R, n] host */
	float *wt;                 /* [n, R] host: Wp transposed (dead columns zeroed) */
	float *drt;                /* [n, R] host: (Wp - Q_rtn) transposed */
	uint8_t *dead;             /* [n] */
	/* the sweep's block */
	float *blk;                /* [bs, R] rows i1.. of the working weights, transposed */
	float *ub;                 /* [bs, n] rows i1.. of U */
	float *E;                  /* [bs, R] the block's scaled errors */
	double *e2;                /* [R] ||E row||^2 */
	int64_t i1, bs;
} ksolve;

static int sub_size(int type)
{
	return QC_GGML_QK_K / qc_ggml_k_subblocks(type);
}

/* The code of wp on row r's grid at column j, and the value it decodes to. */
static inline int kq(const ksolve *k, int64_t r, int64_t j, float wp, float *v)
{
	int t = k->rtype[r];
	int64_t gi = (r * k->nb + j / QC_GGML_QK_K) * 16 + (j % QC_GGML_QK_K) / sub_size(t);
	int q = qc_ggml_kcode(t, wp, k->step[gi], k->off[gi]);
	*v = k->step[gi] * (float)q - k->off[gi];
	return q;
}

/* One share of rows through the block: column by column, the code on the
 * grid, the scaled error e = (w - v) / U[j][j], and the update of the
 * block's later columns (rows are independent, so the share's result
 * does not depend on the split). */
static int sweep_part(void *arg, int part, int np)
{
	ksolve *k = arg;
	int64_t lo, hi;
	qc_pool_range(k->R, part, np, &lo, &hi);
	const int64_t R = k->R, n = k->n;
	for (int64_t jj = 0; jj < k->bs; jj++) {
		int64_t j = k->i1 + jj;
		float *x = k->blk + jj * R, *e = k->E + jj * R;
		const float *u = k->ub + jj * n;
		float ujj = u[j];
		for (int64_t r = lo; r < hi; r++) {
			float v;
			k->codes[r * n + j] = (int8_t)kq(k, r, j, x[r], &v);
			k->deq[r * n + j] = v;
			e[r] = (x[r] - v) / ujj;
			k->e2[r] += (double)e[r] * e[r];
		}
		for (int64_t kk = jj + 1; kk < k->bs; kk++) {
			float c = u[k->i1 + kk], *y = k->blk + kk * R;
			for (int64_t r = lo; r < hi; r++)
				y[r] -= e[r] * c;
		}
	}
	return 0;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int nthreads_for(const ksolve *k)
{
	int t = qk_ctx_threads(k->kc);
	int64_t most = k->R / 64;
	if (t > 64)
		t = 64;
	if (most < t)
		t = (int)most;
	return t < 1 ? 1 : t;
}

/* sum over part p's rows of ||(A^T)^T V||^2, A^T [n, R] in kernel memory
 * (columns r0.. of it), through tmp [n, rows] */
static int xv_sum(ksolve *k, const float *V, const float *At, int64_t r0, int64_t rows, float *tmp,
                  double *out)
{
	*out = 0;
	/* (A V)^T = V^T A^T: [n, rows]; V is upper triangular, so the rows
	 * [i0, i1) of the product need A's first i1 columns only (half the
	 * flops of one GEMM) */
	const int64_t nb = 256;
	for (int64_t i0 = 0; i0 < k->n; i0 += nb) {
		int64_t i1 = i0 + nb < k->n ? i0 + nb : k->n;
		QC_TRY(qk_gemm(k->kc, 1, 0, i1 - i0, rows, i1, 1.0f, V + i0, k->n, At + r0, k->R, 0.0f,
		               tmp + i0 * rows, rows));
	}
	return qk_sumsq(k->kc, tmp, (size_t)(k->n * rows), out);
}

/* The damped factor of H (qc_gptq's policy): H := V, H + lambda I (1 on
 * the dead diagonal) = V V^T. */
static int factor(ksolve *k, float *H, double damp, double damp_max, const char *name,
                  double *lambda, qc_kgptq_info *info)
{
	const int64_t n = k->n;
	float *d0 = malloc((size_t)n * sizeof *d0), *md = malloc((size_t)n * sizeof *md);
	int64_t *sigma = malloc((size_t)n * sizeof *sigma);
	int rc = 0;
	if (!d0 || !md || !sigma) {
		rc = qc_seterr(QC_ENOMEM, "out of memory");
		goto out;
	}
	int64_t bad;
	if ((rc = qk_gptq_hdiag(k->kc, H, n, d0, &bad)))
		goto out;
	if (bad >= 0) {
		rc = qc_seterr(QC_ENUMERIC, "hessian of '%s' has a non-finite value at [%lld, %lld]", name,
		               (long long)(bad / n), (long long)(bad % n));
		goto out;
	}
	double sum = 0;
	for (int64_t i = 0; i < n; i++) {
		k->dead[i] = d0[i] == 0.0f;
		info->dead += k->dead[i];
		sum += k->dead[i] ? 1.0 : d0[i];
	}
	double mean = sum / (double)n;
	/* M = J H J, factored M = L L^T, V = J L J: H = V V^T */
	for (int64_t i = 0; i < n; i++) {
		sigma[i] = n - 1 - i;
		md[i] = k->dead[sigma[i]] ? 1.0f : d0[sigma[i]];
	}
	if ((rc = qk_gptq_permute(k->kc, H, n, sigma)))
		goto out;
	for (;;) {
		*lambda = damp * mean;
		rc = qk_gptq_factor(k->kc, H, n, md, *lambda);
		if (rc != QC_ENUMERIC)
			break;
		if (damp >= damp_max) {
			rc = qc_seterr(QC_ENUMERIC, "hessian of '%s' is not positive definite even with "
			               "damping %g", name, damp);
			break;
		}
		info->retries++;
		damp = damp * 2 < damp_max ? damp * 2 : damp_max;
	}
	info->damp = damp;
out:
	free(d0);
	free(md);
	free(sigma);
	return rc;
}

typedef struct gjob {
	ksolve *k;
	int type;
	const float *chunk;    /* [m, n] */
	int64_t m, r;          /* rows of the chunk, the first one's index */
	int want_t;
} gjob;

/* A share of a chunk's rows: the grid (ggml's search, the costly part),
 * round to nearest on it, the transposes. Rows are independent. */
static int grid_rows(void *arg, int part, int np)
{
	gjob *g = arg;
	ksolve *k = g->k;
	const int64_t n = k->n;
	int64_t lo, hi;
	qc_pool_range(g->m, part, np, &lo, &hi);
	for (int64_t i = lo; i < hi; i++) {
		int64_t r = g->r + i;
		const float *w = g->chunk + i * n;
		for (int64_t b = 0; b < k->nb; b++) {
			qc_ggml_kgrid *kg = &k->grid[r * k->nb + b];
			qc_ggml_kgrid_ref(g->type, w + b * QC_GGML_QK_K, kg);
			qc_ggml_kgrid_steps(g->type, kg, k->step + (r * k->nb + b) * 16,
			                    k->off + (r * k->nb + b) * 16);
		}
		for (int64_t j = 0; j < n; j++) {
			float wp = k->dead[j] ? 0.0f : w[j], v;
			k->codes[r * n + j] = (int8_t)kq(k, r, j, wp, &v);
			k->deq[r * n + j] = v;
		}
	}
	/* the transposes column by column: runs of the share's rows */
	for (int64_t j = 0; g->want_t && j < n; j++) {
		float *wt = k->wt + j * k->R + g->r, *dt = k->drt + j * k->R + g->r;
		for (int64_t i = lo; i < hi; i++) {
			float wp = k->dead[j] ? 0.0f : g->chunk[i * n + j];
			wt[i] = wp;
			dt[i] = wp - k->deq[(g->r + i) * n + j];
		}
	}
	return 0;
}

/* Part p's rows: the grid from the original W, round to nearest on it
 * (the codes and values the file gets without GPTQ), Wp and Wp - Q_rtn
 * transposed for the error products and the sweep. */
static int grid_part(ksolve *k, const qc_kgptq_part *p, int64_t r0, float *chunk, int want_t)
{
	const int64_t n = k->n;
	for (int64_t c0 = 0; c0 < p->rows; c0 += CHUNK_ROWS) {
		int64_t m = p->rows - c0 < CHUNK_ROWS ? p->rows - c0 : CHUNK_ROWS;
		QC_TRY(qk_download(k->kc, chunk, p->W + c0 * n, (size_t)(m * n) * sizeof *chunk));
		for (int64_t i = 0; i < m * n; i++)
			if (!isfinite(chunk[i]))
				return qc_seterr(QC_ENUMERIC, "weight of '%s' at [%lld, %lld] is not finite",
				                 p->name, (long long)(c0 + i / n), (long long)(i % n));
		gjob g = { k, p->type, chunk, m, r0 + c0, want_t };
		int np = qk_ctx_threads(k->kc) < m ? qk_ctx_threads(k->kc) : (int)m;
		QC_TRY(qc_pool_run(np < 1 ? 1 : np, grid_rows, &g));
	}
	return 0;
}

int qc_kgptq_run(qk_ctx *kc, float *H, int64_t cols, double damp, double damp_max, int gptq,
                 int64_t block, qc_kgptq_part *parts, int nparts, qc_kgptq_info *info)
{
	qc_kgptq_info dummy;
	if (!info)
		info = &dummy;
	memset(info, 0, sizeof *info);
	if (!kc || nparts < 1 || cols < QC_GGML_QK_K || cols % QC_GGML_QK_K || block < 1 ||
	    (gptq && !H) || !(damp > 0 && damp <= damp_max))
		return qc_seterr(QC_EINVAL, "kgptq: invalid arguments");
	ksolve k = { .kc = kc, .n = cols, .nb = cols / QC_GGML_QK_K };
	int64_t rmax = 0;
	for (int i = 0; i < nparts; i++) {
		if (!qc_ggml_k_subblocks(parts[i].type) || parts[i].rows < 1 || !parts[i].W ||
		    !parts[i].blocks)
			return qc_seterr(QC_EINVAL, "kgptq: invalid part %d", i);
		k.R += parts[i].rows;
		if (parts[i].rows > rmax)
			rmax = parts[i].rows;
		parts[i].err_out = parts[i].err_rtn = NAN;
	}
	const int64_t R = k.R, n = cols;
	const size_t RN = (size_t)(R * n);
	int want_t = H != NULL;
	float *chunk = malloc((size_t)(CHUNK_ROWS * n) * sizeof *chunk);
	k.rtype = malloc((size_t)R);
	k.step = malloc((size_t)(R * k.nb * 16) * sizeof *k.step);
	k.off = malloc((size_t)(R * k.nb * 16) * sizeof *k.off);
	k.grid = malloc((size_t)(R * k.nb) * sizeof *k.grid);
	k.codes = malloc(RN);
	k.deq = malloc(RN * sizeof *k.deq);
	k.dead = calloc((size_t)n, 1);
	k.e2 = calloc((size_t)R, sizeof *k.e2);
	k.wt = want_t ? malloc(RN * sizeof *k.wt) : NULL;
	k.drt = want_t ? malloc(RN * sizeof *k.drt) : NULL;
	/* kernel: Wp^T (then the working weights), scratch, a block's errors */
	float *wk = NULL, *tmp = NULL, *ek = NULL;
	double *rtn_n = calloc((size_t)nparts, sizeof *rtn_n);
	double *den = calloc((size_t)nparts, sizeof *den);
	double lambda = 0;
	int rc = 0;
	if (!chunk || !k.rtype || !k.step || !k.off || !k.grid || !k.codes || !k.deq || !k.dead ||
	    !k.e2 || (want_t && (!k.wt || !k.drt)) || !rtn_n || !den) {
		rc = qc_seterr(QC_ENOMEM, "out of memory");
		goto out;
	}
	for (int i = 0, r = 0; i < nparts; i++)
		for (int64_t j = 0; j < parts[i].rows; j++)
			k.rtype[r++] = (int8_t)parts[i].type;
	double t0 = now_s();
	if (H && (rc = factor(&k, H, damp, damp_max, parts[0].name, &lambda, info)))
		goto out;
	info->t_factor = now_s() - t0;
	t0 = now_s();
	for (int i = 0, r0 = 0; i < nparts; r0 += (int)parts[i].rows, i++)
		if ((rc = grid_part(&k, &parts[i], r0, chunk, want_t)))
			goto out;
	info->t_grid = now_s() - t0;
	t0 = now_s();
	if (H) {
		/* tr(Wp H Wp^T) and RTN's error through V */
		if (!(wk = qk_alloc(kc, RN * sizeof *wk)) ||
		    !(tmp = qk_alloc(kc, (size_t)(n * rmax) * sizeof *tmp))) {
			rc = qc_seterr(QC_ENOMEM, "out of memory for the weights of '%s'", parts[0].name);
			goto out;
		}
		for (int pass = 0; pass < 2 && rc == 0; pass++) {
			const float *src = pass ? k.drt : k.wt;
			if ((rc = qk_upload(kc, wk, src, RN * sizeof *wk)))
				goto out;
			for (int i = 0, r0 = 0; i < nparts; r0 += (int)parts[i].rows, i++) {
				double xv, nn = 0, dd = 0;
				if ((rc = xv_sum(&k, H, wk, r0, parts[i].rows, tmp, &xv)))
					goto out;
				for (int64_t j = 0; j < n; j++)
					for (int64_t r = r0; r < r0 + parts[i].rows; r++) {
						double a = src[j * R + r];
						nn += a * a;
						if (k.dead[j])
							dd += a * a;
					}
				if (pass == 0)
					den[i] = xv - lambda * nn;
				else {
					rtn_n[i] = xv - lambda * nn - dd;
					parts[i].err_rtn = den[i] > 0 ? rtn_n[i] / den[i] : 0;
					parts[i].err_out = parts[i].err_rtn;
				}
			}
		}
	}
	info->t_errors = now_s() - t0;
	t0 = now_s();
	if (gptq) {
		/* U = V^-1: H' = V V^T, so H'^-1 = U^T U */
		if ((rc = qk_tri_inverse(kc, H, n, 1)) ||
		    (rc = qk_upload(kc, wk, k.wt, RN * sizeof *wk)))
			goto out;
		free(k.drt);
		k.drt = NULL;
		/* the block buffers reuse the host transpose's memory: 2 bs <= n */
		int64_t bs = block < n / 2 ? block : n / 2;
		k.blk = k.wt;
		k.E = k.wt + bs * R;
		if (!(k.ub = malloc((size_t)(bs * n) * sizeof *k.ub)) ||
		    !(ek = qk_alloc(kc, (size_t)(bs * R) * sizeof *ek))) {
			rc = qc_seterr(QC_ENOMEM, "out of memory");
			goto out;
		}
		int np = nthreads_for(&k);
		for (int64_t i1 = 0; i1 < n; i1 += bs) {
			k.i1 = i1;
			k.bs = n - i1 < bs ? n - i1 : bs;
			int64_t i2 = i1 + k.bs;
			if ((rc = qk_download(kc, k.blk, wk + i1 * R, (size_t)(k.bs * R) * sizeof *k.blk)) ||
			    (rc = qk_download(kc, k.ub, H + i1 * n, (size_t)(k.bs * n) * sizeof *k.ub)) ||
			    (rc = qc_pool_run(np, sweep_part, &k)))
				goto out;
			if (i2 < n) {
				/* the later columns: Wt[i2:] -= U[B, i2:]^T E_B */
				if ((rc = qk_upload(kc, ek, k.E, (size_t)(k.bs * R) * sizeof *k.E)) ||
				    (rc = qk_gemm(kc, 1, 0, n - i2, R, k.bs, -1.0f, H + i1 * n + i2, n, ek, R,
				                  1.0f, wk + i2 * R, R)))
					goto out;
			}
		}
		free(k.ub);
		k.ub = NULL;
	}
	info->t_sweep = now_s() - t0;
	/* per part: the blocks, err_w and err_out from the values, deq out */
	size_t bb = 0;
	for (int i = 0, r0 = 0; i < nparts; r0 += (int)parts[i].rows, i++) {
		qc_kgptq_part *p = &parts[i];
		bb = qc_ggml_block_bytes(p->type);
		double w2 = 0, dw = 0, d2 = 0, dd = 0, e2 = 0;
		for (int64_t r = r0; r < r0 + p->rows; r++) {
			for (int64_t b = 0; b < k.nb; b++)
				qc_ggml_kpack(p->type, &k.grid[r * k.nb + b], k.codes + r * n + b * QC_GGML_QK_K,
				              (uint8_t *)p->blocks + (size_t)((r - r0) * k.nb + b) * bb);
			e2 += k.e2[r];
		}
		for (int64_t c0 = 0; c0 < p->rows; c0 += CHUNK_ROWS) {
			int64_t m = p->rows - c0 < CHUNK_ROWS ? p->rows - c0 : CHUNK_ROWS;
			if ((rc = qk_download(kc, chunk, p->W + c0 * n, (size_t)(m * n) * sizeof *chunk)))
				goto out;
			for (int64_t i2 = 0; i2 < m * n; i2++) {
				int64_t j = i2 % n;
				double w = chunk[i2], v = k.deq[(r0 + c0) * n + i2], wp = k.dead[j] ? 0 : w;
				w2 += w * w;
				dw += (w - v) * (w - v);
				d2 += (wp - v) * (wp - v);
				if (k.dead[j])
					dd += v * v;
			}
		}
		p->err_w = w2 > 0 ? dw / w2 : 0;
		if (H && gptq)
			p->err_out = den[i] > 0 ? (e2 - lambda * d2 - dd) / den[i] : 0;
	}
	for (int i = 0, r0 = 0; i < nparts; r0 += (int)parts[i].rows, i++)
		if (parts[i].deq && (rc = qk_upload(kc, parts[i].deq, k.deq + (size_t)r0 * (size_t)n,
		                                    (size_t)(parts[i].rows * n) * sizeof *k.deq)))
			goto out;
out:
	qk_free(kc, wk);
	qk_free(kc, tmp);
	qk_free(kc, ek);
	free(chunk);
	free(k.rtype);
	free(k.step);
	free(k.off);
	free(k.grid);
	free(k.codes);
	free(k.deq);
	free(k.dead);
	free(k.e2);
	free(k.wt);
	free(k.drt);
	free(k.ub);
	free(rtn_n);
	free(den);
	return rc;
}
