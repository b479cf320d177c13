/*
 * qc_kgptq.h - GPTQ on ggml's K-quant grids (Q4_K, Q5_K, Q6_K): the codes
 * GPTQ chooses land on the grid llama.cpp's blocks hold, so the result is
 * written as GGUF blocks directly, with no second rounding.
 *
 * The grid of each row's super-blocks of 256 inputs is fixed up front from
 * the original weights, as ggml's reference quantizer chooses it
 * (qc_ggml_kgrid_ref: F16 d and dmin, 6-bit sub-block scales and minimums
 * for Q4_K/Q5_K, int8 sub-block scales for Q6_K; groups fixed before the
 * sweep, like qc_gptq's static act order without the reordering). Then the
 * columns are swept in order: each weight takes the code nearest on its
 * sub-block's grid (qc_ggml_kcode: x -> clamp(nearest((x + off) / step))),
 * its dequantized value step * L - off, and GPTQ's update spreads the
 * error (w - q) / U[j][j] over the later columns with U the upper Cholesky
 * factor of (H + lambda I)^-1, lambda = damp * mean(diag H) (dead inputs,
 * H[j][j] = 0, get H[j][j] = 1 and their weights zeroed, as in qc_gptq.h).
 * With gptq = 0 the same grid is rounded to nearest without updates: that
 * is ggml's quantize_row_*_ref itself, byte for byte, except in sub-blocks
 * whose step is zero (code 0 here, ggml keeps its search's codes; both
 * decode to the same values).
 *
 * Two implementations of the same algorithm:
 *
 *   qc_kgptq_ref  the plain reference: double precision, O(cols^3 + rows
 *                 cols^2), one thread, host memory, the textbook column
 *                 loop (U formed by inverting H and factoring the inverse);
 *   qc_kgptq_run  what qgptq runs (--scheme gguf-*): FP32, H and the
 *                 weights in kernel memory (kernels.h), H's damped factor
 *                 from the GPTQ kernels (qk_gptq_permute/qk_gptq_factor: H
 *                 = V V^T, V upper), U = V^-1 by one triangular inverse,
 *                 and GPTQ's lazy batches: blocks of `block` columns are
 *                 swept on the host (rows split over the context's
 *                 threads, qc_pool), the columns after a block updated by
 *                 one GEMM, W_rest -= E_B U[B, rest] (qk_gemm). The
 *                 weights are held transposed ([cols, rows]) so that a
 *                 block of columns is one contiguous copy. Round to
 *                 nearest (gptq 0) gives the reference's bytes exactly;
 *                 GPTQ differs from the reference by FP32 rounding only
 *                 (test_kgptq compares them).
 *
 * err_out = tr((W - Q) H (W - Q)^T) / tr(W H W^T) against the undamped H,
 * as qc_gptq's reports define it. qc_kgptq_run computes it as qc_gptq does,
 * through the factor: with D = Wp - Q (Wp: dead columns zeroed) and
 * H' = H + lambda I + (1 on the dead diagonal) = V V^T,
 * tr(D H D^T) = ||D V||^2 - lambda ||D||^2 - sum over dead columns of
 * ||D_c||^2, and the sweep's scaled errors E (E U = D) are D V itself.
 */
#ifndef QC_KGPTQ_H
#define QC_KGPTQ_H

#include <stdint.h>

#include "kernels.h"

/*
 * W [rows, cols] FP32 row-major, cols a multiple of 256; H [cols, cols]
 * (double, full symmetric; not modified). type QC_GGML_Q4_K, Q5_K or
 * Q6_K. Out: blocks, rows * (cols / 256) blocks in GGUF's row order
 * (qc_ggml_row_bytes per row); deq [rows, cols] (may be NULL) the values
 * the blocks decode to; *err_out. QC_EINVAL for bad arguments, QC_ENUMERIC
 * for non-finite weights or a Hessian no damping up to 1 factors,
 * QC_ENOMEM.
 */
int qc_kgptq_ref(int type, const float *W, int64_t rows, int64_t cols, const double *H,
                 double damp, int gptq, void *blocks, float *deq, double *err_out);

/* One matrix of a qc_kgptq_run solve (several matrices that read the same
 * input share one Hessian: q/k/v, gate/up; each may have its own type). */
typedef struct qc_kgptq_part {
	const char *name;          /* for messages */
	int type;                  /* QC_GGML_Q4_K, Q5_K or Q6_K */
	const float *W;            /* [rows, cols] FP32; kernel memory */
	int64_t rows;
	void *blocks;              /* host: rows * qc_ggml_row_bytes(type, cols) */
	float *deq;                /* [rows, cols] kernel memory, or NULL; may equal W */
	/* results: err_out and err_rtn are NAN without a Hessian */
	double err_out, err_w, err_rtn;
} qc_kgptq_part;

typedef struct qc_kgptq_info {
	double damp;               /* the damping fraction used (after doubling) */
	int retries;               /* failed factorizations before it */
	int64_t dead;              /* dead input columns */
	double t_factor, t_grid, t_errors, t_sweep;   /* seconds */
} qc_kgptq_info;

/*
 * The solver of the run: parts share H [cols, cols] (kernel memory of kc,
 * FP32, upper triangle read, any positive multiple of X^T X; consumed: it
 * holds U afterwards). H may be NULL only when gptq is 0 (round to nearest
 * on the grid without errors). damp as in qc_kgptq_ref, doubled while the
 * factorization fails up to damp_max (then QC_ENUMERIC); block > 0 the
 * lazy batch (128). Memory (rows summed over the parts): host, three
 * [rows, cols] FP32 buffers, the codes and the grids (cols / 8 bytes a
 * row); kernel, besides H, one [cols, rows] FP32, one [cols, rows of the
 * largest part] and one [block, rows]. Errors: QC_EINVAL, QC_ENUMERIC
 * (non-finite weights or Hessian, naming the part and index), QC_ENOMEM.
 */
int qc_kgptq_run(qk_ctx *kc, float *H, int64_t cols, double damp, double damp_max, int gptq,
                 int64_t block, qc_kgptq_part *parts, int nparts, qc_kgptq_info *info);

#endif
