/*
 * qc_gptqm.h - GPTQ and round to nearest as a method of the run driver
 * (qc_qrun.h): the hooks behind qgptq, and what another method runs when it
 * hands its weights to GPTQ.
 *
 * With tokens, the Hessian of each walker point, H = 2 X^T X / T, is
 * accumulated from the walker's inputs (upper triangle, in kernel memory;
 * down_proj's blocks gathered into taller ones first); when a point's
 * inputs are complete, its quantized Linears (which share H) are solved
 * together by qc_gptq (qc_gptq.h), their weights replaced by the
 * dequantized ones, their codes written, one report line each with GPTQ's
 * keys (method, actorder, clip, arith, damp, dead_inputs, input_scale).
 * Without tokens (method rtn) each Linear is rounded as the driver loads it.
 * With act_static, each Linear's input_scale is max |x| over every
 * calibration token at its input (the activations of the already quantized
 * Linears before it, unquantized themselves, as llm-compressor calibrates)
 * on the symmetric int8 grid in the scale dtype; q/k/v share theirs, as do
 * gate/up.
 *
 * GGUF K-quant grids (ggml_type set: schemes "gguf-q4_k", "gguf-q4_k_m",
 * "gguf-q5_k", "gguf-q5_k_m", "gguf-q6_k"): each quantized Linear is solved
 * on ggml's Q4_K/Q5_K/Q6_K grid by qc_kgptq_run (qc_kgptq.h; round to
 * nearest on that grid is ggml's quantize_row_*_ref byte for byte), and the
 * method writes its own tensors (qc_qrun.h own_format), per Linear <m>:
 *   <m>.weight              F32 [out, in]: exactly the values the blocks
 *                           decode to (ggml's dequantize_row_*), which the
 *                           runtime, qverify and any HF reader run as they
 *                           are
 *   <m>.weight_ggml_<type>  U8 [out, row bytes]: the ggml blocks of each
 *                           row (<type> q4_k, q5_k or q6_k), which qpack -f
 *                           gguf writes to the file as they are
 * and config.json keeps no quantization_config (compressed-tensors has no
 * scheme for these grids). With mix ("_m" schemes) a Linear takes Q6_K
 * where llama.cpp's Q4_K_M and Q5_K_M recipes do (qc_ggml_q4km_type:
 * attn_v and ffn_down of the first and last eighth of the layers and of
 * every third one between), the scheme's type elsewhere. Columns are swept
 * in order (the grid is fixed up front, from the original weights, as
 * ggml's reference picks it; no act-order, no clipping search). Report
 * lines add "ggml_type".
 */
#ifndef QC_GPTQM_H
#define QC_GPTQM_H

#include <stdint.h>

#include "qc_gptq.h"
#include "qc_qrun.h"

typedef struct qc_gptqm_opts {
	const char *scheme;        /* "w4a16", "w8a16", "w8a8" (qc_qscheme presets) */
	int64_t group;             /* group size; 0: the scheme's, -1: per channel */
	int sym;                   /* 1 symmetric, 0 zero points, -1: the scheme's */
	int act_static;            /* w8a8: static per-tensor int8 input scales from the
	                              calibration maxima (needs tokens), instead of
	                              vLLM's dynamic per-token ones */
	qc_gptq_opts go;           /* the solver's options */
	qc_dtype scale_dtype;      /* QC_DT_F16: scales rounded to F16 before GPTQ
	                              uses them (what GGUF's blocks hold exactly);
	                              QC_DT_INVALID (0): the model's dtype */
	int ggml_type;             /* QC_GGML_Q4_K, Q5_K, Q6_K: the K-quant grid (above);
	                              0: compressed-tensors' integer grids */
	int ggml_mix;              /* 1: Q6_K where llama.cpp's *_K_M recipes put it */
} qc_gptqm_opts;

/* "gguf-q4_k" ... (above) -> ggml type and mix; QC_EINVAL for other names. */
int qc_gptqm_ggml_scheme(const char *scheme, int *ggml_type, int *mix);

typedef struct qc_gptqm qc_gptqm;

/* The method's state and hooks for o (copied; scheme must outlive the run):
 * *m is ready for qc_qrun_run. Free the state after the run. */
int qc_gptqm_method(qc_gptqm **state, qc_qmethod *m, const qc_gptqm_opts *o);
void qc_gptqm_free(qc_gptqm *g);                  /* NULL is a no-op */

/* "mse", "mse-h" or "minmax": the --clip value of o. */
const char *qc_gptqm_clip_name(const qc_gptq_opts *o);

#endif
