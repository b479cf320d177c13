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
 * This is the plain reference solver: double precision, O(cols^3 + rows
 * cols^2), one thread, host memory; it is not wired into qgptq's run (whose
 * kernels implement the integer grids of qc_quant.h only).
 *
 * err_out = tr((W - Q) H (W - Q)^T) / tr(W H W^T) against the undamped H,
 * as qc_gptq's reports define it.
 */
#ifndef QC_KGPTQ_H
#define QC_KGPTQ_H

#include <stdint.h>

/*
 * W [rows, cols] FP32 row-major, cols a multiple of 256; H [cols, cols]
 * (double, full symmetric; not modified). type QC_GGML_Q4_K, Q5_K or
 * Q6_K. Out: blocks, rows * (cols / 256) blocks in GGUF's row order
 * (qc_ggml_row_bytes per row); deq [rows, cols] (may be NULL) the values
 * the blocks decode to; *err_out. QC_EINVAL for bad arguments, QC_ENUMERIC
 * for non-finite weights or a Hessian no damping up to 1 factors,
 * QC_ENOMEM.
 */
int qc_kgptq(int type, const float *W, int64_t rows, int64_t cols, const double *H, double damp,
             int gptq, void *blocks, float *deq, double *err_out);

#endif
