/*
 * qc_gptq.h - the GPTQ solver (Frantar et al. 2022, arXiv:2210.17323;
 * where it departs from the reference is said below): quantize Linear
 * weights W [rows, cols] so that the output error ||(W - Q) X||^2 over the calibration inputs X is
 * small, given their Hessian H = 2 X X^T / N [cols, cols].
 *
 * What it computes, in the order the math says:
 *
 *   dead     inputs with H[j][j] == 0 (never non-zero in the calibration
 *            set): H[j][j] = 1 and W[:, j] = 0, as every reference does
 *   order    actorder STATIC: columns swept in order of decreasing diag(H)
 *            (a stable sort: ties keep their index order), with the group
 *            parameters fixed up front from the original W in the original
 *            column order (llm-compressor's "weight"/"static"): act-order
 *            with no g_idx and no run-time cost. NONE: original order, and
 *            group parameters computed when a group is entered, from the
 *            weights as GPTQ has updated them by then, in-block updates
 *            included (the reference reads stale values for groups smaller
 *            than the block; that is fixed here). Channel and tensor
 *            parameters never depend on the updates (a channel "group" is
 *            entered at column 0, before any update) and are computed up
 *            front in both modes.
 *   damp     lambda = damp * mean(diag H) added to the diagonal; when the
 *            Cholesky factorization fails, damp is doubled and the
 *            factorization retried, up to damp_max (then QC_ENUMERIC); the
 *            damp used is reported
 *   factor   ONE Cholesky factorization: with J the reversal permutation,
 *            J H J = L L^T gives H = V V^T with V = J L J upper triangular,
 *            so U = V^-1 is the upper Cholesky factor of H^-1 (H^-1 = U^T U)
 *            that GPTQ's column updates use. U is never formed as a whole:
 *            each block of columns uses the inverse of V's diagonal block
 *            (U's diagonal block, a small triangular inverse), and the lazy
 *            update of the columns after a block is one GEMM with V:
 *            with D = W - Q (original weights minus quantized),
 *            S = D V accumulates the quantization errors, and the
 *            GPTQ-updated weights of block B are W_B + S_B U_BB. This is
 *            the reference's algorithm exactly (same updated weights, same
 *            errors), without its two extra factorizations (chol ->
 *            cholesky_inverse -> chol) and without the triangular inverse of
 *            the whole U, and it gives the error term below for free.
 *   sweep    blocks of `block` columns (128); inside a block, column by
 *            column: quantize with the stored scale (rounded to the scale
 *            dtype, qc_quant.h), err = (w - q) / U[j][j], update the rest
 *            of the block; blocks never straddle a group boundary when
 *            groups are computed during the sweep (a block is a whole number
 *            of groups, or one whole group when groups are wider than
 *            `block`), so every group sees fully updated weights; a partial
 *            last group is allowed
 *   clip     group parameters by min/max or by qc_quant's MSE clipping
 *            search, whose error may be weighted per input column by
 *            diag(H) (clip_hweight), so that errors on inputs that carry
 *            large activations count more
 *
 * The errors of the report (doc/design.md 3.5), all against the UNDAMPED Hessian H (dead
 * columns contribute nothing, as in H):
 *   err_out = tr((W - Q) H (W - Q)^T) / tr(W H W^T)
 *   err_w   = ||W - Q||^2 / ||W||^2                 (original W)
 *   err_rtn = err_out of plain round-to-nearest (qc_quant_rtn's rules, same
 *             clip mode and column weights) from the same H
 * computed through the factor V (H + lambda I = V V^T):
 *   tr(A H A^T) = ||A V||^2 - lambda ||A||^2
 * for A = W, W - Q_rtn (a blocked triangular product, 2 rows cols^2 flops
 * in all) and A = W - Q (whose A V is the sweep's own S, so it costs
 * nothing extra). With method RTN the codes are RTN's and err_out equals
 * err_rtn. The first two cost as much as the sweep and no quantization
 * needs them, so unless exact_errors is set, a part of more than
 * QC_GPTQ_ERR_ALL_ROWS rows and at least QC_GPTQ_ERR_MIN_COLS columns
 * computes them on a sample of its rows and
 * carries each sample total to the part by the same quadratic form on H's
 * diagonal (sum_j H[j][j] a_j^2, computed for every row by an elementwise
 * pass): a ratio estimator, within about 1 % of the exact errors where
 * they were compared (qc_gptq.c, doc/design.md 3.5). err_w and err_out's
 * numerator are always every row's, and the codes do not depend on it.
 *
 * Several matrices may share one Hessian (q/k/v read the same input, so do
 * gate/up): they are solved as one stacked matrix (rows are independent in
 * GPTQ, so this is exactly the same as solving them one by one) with one
 * factorization, and each gets its own codes, parameters and errors.
 *
 * Where the work runs. H and the weights are kernel memory (kernels.h):
 * every step that reads or writes them is an op of the kernels' "GPTQ
 * support" section (qk_gptq_*: the Hessian's diagonal and non-finite check,
 * the act-order permutation, damping and the factor, the group parameters
 * with the clipping search, round to nearest, the error products and the
 * sweep), so the solver runs on any device the kernels have. The host keeps
 * what is small: diag(H) (downloaded), the dead inputs, the sweep order, the
 * damping policy, the per-row error sums, and the scales, zero points and
 * codes, which are host memory. Under QK_DEBUG_MEMORY=1 any host access to
 * H, W or deq faults (test_gptq checks the solver under it).
 *
 * Memory. H is consumed: factored in place (its upper triangle is read;
 * the buffer holds V afterwards) by LAPACK's Cholesky (OpenBLAS's, blocked
 * on GEMMs) on the lower triangle, which leaves the strict upper triangle
 * (a copy of H) untouched, so that a failed attempt is undone without a
 * second [cols, cols] buffer. The sweep holds a working
 * matrix S [rows, cols] FP32 (rows summed over the parts) while it runs,
 * and the error products and the sweep small block buffers per thread; all
 * of it is the kernels' working memory, allocated per call (buffers of 4
 * MiB and more offered for transparent huge pages, so that first touches
 * cost one fault per 2 MiB). deq may be the same buffer as W: each block
 * of columns of W is read before its dequantized values are written, so a
 * layer's weights can be replaced in place.
 *
 * Threads: the kernel context's thread count. Rows are independent in
 * every step but the factorization, so the clipping search, the error
 * products and the whole sweep are split into one contiguous share of rows
 * per thread (qc_pool), each share running start to end with BLAS called in
 * its own thread on one BLAS thread (no pool to wake and wait for at every
 * small step of a sweep); the factorization's GEMMs use the context's
 * threads. kernels.h sets OpenBLAS's thread count per call from the
 * context, so no run leaves it changed.
 *
 * Determinism: the same inputs and thread count give the same bits: the
 * shares are fixed by the thread count, each row is computed by one thread,
 * and the kernels are deterministic for a fixed thread count.
 *
 * Not thread-safe: one thread uses a qc_gptq at a time (the kernels run
 * their own worker threads inside a call).
 */
#ifndef QC_GPTQ_H
#define QC_GPTQ_H

#include <stdint.h>

#include "kernels.h"
#include "qc_quant.h"

typedef enum {
	QC_GPTQ_METHOD_GPTQ = 0,   /* the solver */
	QC_GPTQ_METHOD_RTN,        /* round to nearest (errors still measured
	                              when a Hessian is given) */
} qc_gptq_method;

typedef enum {
	QC_GPTQ_ACTORDER_NONE = 0,
	QC_GPTQ_ACTORDER_STATIC,   /* see above; llm-compressor's default */
} qc_gptq_actorder;

typedef struct qc_gptq_opts {
	qc_gptq_method method;
	double damp;               /* 0.01: fraction of mean(diag H) added */
	double damp_max;           /* 1.0: give up beyond this fraction */
	int64_t block;             /* 128 columns per lazy batch */
	qc_gptq_actorder actorder; /* STATIC */
	qc_clip_opts clip;         /* MSE search (qc_clip_opts_default(MSE)) */
	int clip_hweight;          /* 1: weight the MSE search by diag(H) */
	int exact_errors;          /* 0: err_out and err_rtn of a large part measured
	                              on a sample of its rows (qc_gptq_err_rows);
	                              1: every row */
} qc_gptq_opts;

/* Parts of at most QC_GPTQ_ERR_ALL_ROWS rows, or of fewer than
 * QC_GPTQ_ERR_MIN_COLS columns, are always measured on every row: their
 * products are cheap, and with few columns a row's quadratic form strays
 * further from its diagonal part (fewer terms to average). */
#define QC_GPTQ_ERR_ALL_ROWS 1024
#define QC_GPTQ_ERR_MIN_COLS 1024

/* How many of a part's rows the error products measure: rows when exact or
 * as above, else rows / 8 and at least 512, in runs of 16 consecutive rows
 * spread evenly over the part (at most half the rows). */
int64_t qc_gptq_err_rows(int64_t rows, int64_t cols, int exact);

/* The defaults above. */
void qc_gptq_opts_default(qc_gptq_opts *o);
/* "none"/"static" and "gptq"/"rtn" <-> enums; parse returns 0 or QC_EINVAL. */
const char *qc_gptq_actorder_name(qc_gptq_actorder a);
int qc_gptq_actorder_parse(const char *s, qc_gptq_actorder *a);
const char *qc_gptq_method_name(qc_gptq_method m);
int qc_gptq_method_parse(const char *s, qc_gptq_method *m);

/*
 * One matrix to quantize. In: name, W (kernel memory of the solver's
 * context), rows. Out, shapes as qc_quant_rtn writes them for qargs a:
 *   codes   [rows, cols] one byte each (int8 values, or E4M3 bytes); host
 *   scales  [rows, ceil(cols / group)] group, [rows] channel, [1] tensor; host
 *   zps     same shape, integer values; NULL when symmetric; host
 *   deq     [rows, cols] the dequantized Q, or NULL; kernel memory; may equal W
 * and the statistics below.
 */
typedef struct qc_gptq_part {
	const char *name;          /* for messages: "model.layers.0.mlp.up_proj" */
	const float *W;            /* [rows, cols] FP32, finite; kernel memory */
	int64_t rows;
	void *codes;               /* host */
	float *scales;             /* host */
	float *zps;                /* host */
	float *deq;                /* kernel memory */
	/* results; err_out and err_rtn are NAN without a Hessian */
	double err_out, err_w, err_rtn;
	double seconds;            /* this part's share (by rows) of the run */
} qc_gptq_part;

/* What a run did with the Hessian. */
typedef struct qc_gptq_info {
	double damp;               /* damp fraction used (after escalation) */
	int retries;               /* failed factorizations before it */
	int64_t dead;              /* dead input columns */
	double t_factor;           /* seconds: preparing H and factoring it */
	double t_params;           /* seconds: parameters fixed up front (clipping search) */
	double t_errors;           /* seconds: tr(W H W^T) and RTN's error */
	double t_sweep;            /* seconds: the sweep (with dynamic groups' parameters), codes */
	/* the same four in CPU seconds of the whole process (every thread):
	 * what benchmarks compare when other processes share the cores */
	double c_factor, c_params, c_errors, c_sweep;
} qc_gptq_info;

typedef struct qc_gptq qc_gptq;

/* A solver running its heavy steps on kc (borrowed, must outlive it) with
 * options o (copied; NULL for the defaults). QC_EINVAL for bad options
 * (damp not in (0, damp_max], block < 1, ...), QC_ENOMEM. */
int qc_gptq_new(qc_gptq **out, qk_ctx *kc, const qc_gptq_opts *o);
void qc_gptq_free(qc_gptq *g);                    /* NULL is a no-op */

/*
 * Quantize nparts matrices with cols input columns that share the Hessian
 * H [cols, cols] (kernel memory of the solver's context; FP32, upper
 * triangle read, any positive multiple of X^T X: the results do not depend
 * on its scale; consumed). H may be NULL only for method RTN: then err_out
 * and err_rtn are NAN.
 * Errors: QC_EINVAL for bad arguments; QC_ENUMERIC for a NaN or Inf in a W
 * (naming the part and the index) or in H, or a Hessian that no damping up
 * to damp_max makes positive definite; QC_ENOMEM. info may be NULL.
 * On failure the outputs are unspecified.
 */
int qc_gptq_run(qc_gptq *g, const qc_qargs *a, float *H, int64_t cols, qc_gptq_part *parts,
                int nparts, qc_gptq_info *info);

#endif
