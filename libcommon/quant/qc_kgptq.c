/* qc_kgptq.c - GPTQ on ggml's K-quant grids, plain reference solver (see
 * qc_kgptq.h). */
#include "qc_kgptq.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "qc_err.h"
#include "qc_ggml.h"

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

int qc_kgptq(int type, const float *W, int64_t rows, int64_t cols, const double *H, double damp,
             int gptq, void *blocks, float *deq, double *err_out)
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
