/*
 * kernels.h - one C API for the heavy operations of the toolkit.
 *
 * Every operation takes a qk_ctx, which names the device that runs it and
 * owns its threads. The context holds the device's backend, a table of
 * functions (kernels/qk_backend.h) chosen when it is made: kernels/cpu
 * implements all of it with OpenBLAS/LAPACK and plain C; a CUDA backend
 * (kernels/cuda) provides the same table behind the same functions, so
 * callers never branch on the device.
 *
 * Memory. Every float/int pointer handed to a compute function is memory of
 * the context's device unless its comment says "host": allocate it with
 * qk_alloc and move data in and out with qk_upload / qk_download (or
 * qk_to_f32 from a host tensor). Memory of a device may be passed to any
 * context of the same device. On the CPU device that memory is ordinary
 * host memory (64-byte aligned), and host pointers may be passed directly;
 * but code outside kernels/ must never read or write memory from qk_alloc
 * itself: that is what breaks on a GPU. QK_DEBUG_MEMORY=1 in the
 * environment when a CPU context is made checks it: that context's
 * qk_alloc returns whole-page mappings, kept in one registry for the
 * process, that are PROT_NONE whenever no kernel operation is running, so
 * any host access to them outside one faults (SIGSEGV at the offending
 * instruction). Every operation below that takes a qk_ctx (qk_upload,
 * qk_download, qk_copy and qk_to_f32 included) opens them all for its
 * duration, whichever context it runs on; that costs two mprotect calls
 * per live guarded allocation per operation: for tests only.
 *
 * Layout. Matrices are row-major, outermost dimension first, as in PyTorch.
 * A Linear weight W is [out, in]; a batch of activations X is [T, in] (one
 * row per token); y = x W^T is [T, out].
 *
 * Numbers. Everything is computed in FP32 (weights stored as BF16/F16/F8 are
 * converted per layer with qk_to_f32). Reductions that decide a result's
 * accuracy (RMSNorm's mean square, softmax's normalizer) are accumulated in
 * double. Results are deterministic for a fixed thread count: work is split
 * over rows in fixed blocks, never reduced across threads in a varying
 * order.
 *
 * Errors. Functions return 0 or a negative QC_E* code with the message set
 * (qc_err.h): QC_EINVAL for impossible sizes or a NULL context, QC_ENOMEM,
 * QC_ENUMERIC for a factorization that fails (matrix not positive
 * definite), QC_EUNSUPPORTED for a device this build lacks. A context may be
 * used by one thread at a time; separate contexts are independent.
 */
#ifndef QC_KERNELS_H
#define QC_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "qc_dtype.h"

/* ---------------------------------------------------------------- context */

typedef enum {
	QK_DEVICE_CPU = 0,
	QK_DEVICE_CUDA = 1,
	/* qk_ctx_new only: a CUDA context when one can be made (a CUDA build,
	 * a usable GPU, its driver and libraries), else a CPU one; the reason
	 * CUDA was passed over is logged at the detail level. qk_ctx_device
	 * then says which. */
	QK_DEVICE_AUTO = 2,
} qk_device;

typedef struct qk_ctx qk_ctx;

/* Create a context on dev with n_threads worker threads (0: every online
 * CPU, at most 256). QC_EUNSUPPORTED when the build has no such device.
 *
 * OpenBLAS threads (CPU). OpenBLAS 0.3.21 has one thread count for the whole
 * process (openblas_set_num_threads); there is no per-call or per-thread
 * setting. The count is therefore a property of the context applied at
 * each BLAS/LAPACK call: before calling OpenBLAS, an operation sets the
 * process's count to its context's n_threads when openblas_get_num_threads
 * says it differs (attention runs its per-head products single-threaded
 * inside its own workers). Contexts never change the count when created,
 * so the last one made no longer decides it; code that calls OpenBLAS
 * itself gets whatever the last kernel call left. Contexts with different
 * counts used at the same moment on different threads race for the one
 * setting: a BLAS call may then run with the other context's count. Code
 * that runs contexts on several threads at once gives them all the same
 * count (usually 1 each). */
int qk_ctx_new(qk_ctx **out, qk_device dev, int n_threads);
void qk_ctx_free(qk_ctx *ctx);                    /* NULL is a no-op */
qk_device qk_ctx_device(const qk_ctx *ctx);
int qk_ctx_threads(const qk_ctx *ctx);

/* "cpu" / "cuda" / "auto" <-> qk_device; parse returns 0 or QC_EINVAL. */
const char *qk_device_name(qk_device dev);
int qk_device_parse(const char *name, qk_device *dev);

/* Device memory: NULL on failure (qk_alloc sets the message). qk_free(NULL)
 * is a no-op; p may come from any context of the device. Copies are
 * synchronous; host_src / host_dst are host memory. */
void *qk_alloc(qk_ctx *ctx, size_t bytes);
void qk_free(qk_ctx *ctx, void *p);
int qk_upload(qk_ctx *ctx, void *dev_dst, const void *host_src, size_t bytes);
int qk_download(qk_ctx *ctx, void *host_dst, const void *dev_src, size_t bytes);

/* ---------------------------------------------------------------- conversion */

/* dst[n] (device, FP32) = src[n] converted from dt (F32, F16, BF16, F8_E4M3,
 * F64) as qc_num does it. src is host memory (a mapped checkpoint tensor).
 * QC_EUNSUPPORTED for other dtypes. */
int qk_to_f32(qk_ctx *ctx, float *dst, const void *src, qc_dtype dt, size_t n);

/*
 * Dequantize stored codes to FP32 weights:  w[r][c] = (q[r][c] - z) * s
 * with s = scale[r * scale_rs + c / group] and z likewise from zero_point
 * (0 when zero_point is NULL). codes are int8 (code_dt QC_DT_I8, int4 or
 * int8 values one per byte) or FP8 E4M3 (QC_DT_F8_E4M3). The scale layout
 * covers compressed-tensors' three strategies:
 *     tensor   scale [1]               scale_rs 0,       group = cols
 *     channel  scale [rows, 1]         scale_rs 1,       group = cols
 *     group    scale [rows, ng]        scale_rs ng,      group = group_size
 * (ng = ceil(cols / group)). w [rows, cols] device; codes [rows, cols],
 * scale and zero_point host memory, FP32 for the latter two (converted and
 * unpacked by the caller from the checkpoint's tensors).
 */
int qk_dequant(qk_ctx *ctx, float *w, const void *codes, qc_dtype code_dt, int64_t rows,
               int64_t cols, const float *scale, const float *zero_point, int64_t scale_rs,
               int64_t group);

/* ---------------------------------------------------------------- GEMM */

/*
 * C[M,N] = alpha * op(A) op(B) + beta * C, row-major, op(X) = X or X^T
 * (trans_a, trans_b nonzero). lda/ldb/ldc are row strides in elements of
 * the matrices as stored. This is cblas_sgemm on the CPU.
 */
int qk_gemm(qk_ctx *ctx, int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
            const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
            int64_t ldc);

/*
 * A Linear over T tokens:  y[T, out] = x[T, in] W[out, in]^T (+ bias[out])
 * With accumulate nonzero y += ... instead (a residual add for free).
 * bias may be NULL.
 */
int qk_linear(qk_ctx *ctx, float *y, const float *x, const float *w, const float *bias,
              int64_t T, int64_t in, int64_t out, int accumulate);

/*
 * A Linear whose weight is stored as 4-bit codes, dequantized inside the
 * product (W4A16 decoding: the weights are read at half a byte each, never
 * expanded to an FP32 copy of the matrix):
 *     W[o][i] = (u[o][i] - z[o][g]) * s[o][g],  g = i / group
 *     y[T, out] (+)= x[T, in] W^T (+ bias)
 * q4 [out, in / 2] bytes, column 2j in the low nibble of byte j, 2j + 1 in
 * the high one (u in 0..15); s, z [out, in / group] FP32 (z NULL: 8, a
 * symmetric signed int4 code stored as u = q + 8). in and group must be
 * even and group must divide in (QC_EINVAL otherwise). Each group's dot
 * product (u . x) is summed in FP32 and folded as s (u . x - z sum(x)); for
 * T > 4 rows a block of W's rows is dequantized at a time into a small
 * scratch tile and multiplied by GEMM.
 */
int qk_linear_q4(qk_ctx *ctx, float *y, const float *x, const uint8_t *q4, const float *s,
                 const float *z, const float *bias, int64_t T, int64_t in, int64_t out,
                 int64_t group, int accumulate);

/*
 * A Linear whose weight is BF16 in host memory (bits as uint16_t, the high
 * half of an FP32), widened inside the product:
 *     y[T, out] (+)= x[T, in] W^T (+ bias),  W [out, in]
 * For a few rows of x (a decoding step's lm_head): the weights are read
 * once at two bytes each, never copied to FP32. Each output is one FP32 dot
 * product (summed in lanes, so in another order than qk_linear's). CPU
 * only: other devices give QC_EUNSUPPORTED (their weights are uploaded and
 * converted instead).
 */
int qk_linear_bf16(qk_ctx *ctx, float *y, const float *x, const uint16_t *w, const float *bias,
                   int64_t T, int64_t in, int64_t out, int accumulate);

/* ---------------------------------------------------------------- layers */

/*
 * RMSNorm as transformers' LlamaRMSNorm computes it (in FP32):
 *     y[t][i] = w[i] * x[t][i] / sqrt(mean_i(x[t][i]^2) + eps)
 * x, y [T, D]; y may equal x; w [D].
 */
int qk_rmsnorm(qk_ctx *ctx, float *y, const float *x, const float *w, int64_t T, int64_t D,
               float eps);

/* Rotary embedding parameters (config.json's rope_theta and rope_scaling). */
typedef enum {
	QK_ROPE_DEFAULT = 0,   /* inv_freq[i] = theta^(-2i/d) */
	QK_ROPE_LLAMA3,        /* Llama 3.1/3.2 frequency-dependent scaling */
	QK_ROPE_LINEAR,        /* inv_freq / factor (position interpolation) */
} qk_rope_type;

typedef struct qk_rope {
	double theta;
	qk_rope_type type;
	double factor;              /* llama3, linear */
	double low_freq_factor;     /* llama3 */
	double high_freq_factor;    /* llama3 */
	double original_max_pos;    /* llama3: original_max_position_embeddings */
} qk_rope;

/*
 * The inverse frequencies inv_freq[head_dim / 2] (host memory), as
 * transformers' _compute_default_rope_parameters and
 * _compute_llama3_parameters define them: with wavelen = 2 pi / f, llama3
 * keeps high frequencies (wavelen < orig / high_freq_factor), divides low
 * ones (wavelen > orig / low_freq_factor) by factor, and interpolates
 * smoothly in between. Computed in double, rounded once to FP32.
 * head_dim must be even and positive.
 */
int qk_rope_inv_freq(float *inv_freq, int64_t head_dim, const qk_rope *rope);

/*
 * Apply rotary embeddings in place to x [T, n_heads * head_dim], token t at
 * position pos0 + t, in the "rotate_half" (GPT-NeoX) layout HF Llama uses:
 * element i pairs with i + head_dim/2 of the same head,
 *     x1' = x1 cos - x2 sin,  x2' = x2 cos + x1 sin,  angle = pos * inv_freq[i].
 * inv_freq [head_dim / 2] is host memory. The angle is the FP32 product
 * pos * inv_freq[i], as transformers and vLLM form it (so long positions get
 * the same rounding as deployment); its cos and sin are computed in double
 * and rounded to FP32.
 */
int qk_rope_apply(qk_ctx *ctx, float *x, int64_t T, int64_t n_heads, int64_t head_dim,
                  int64_t pos0, const float *inv_freq);

/*
 * Causal grouped-query attention over one sequence of T tokens:
 *     q [T, n_heads * head_dim], k, v [T, n_kv * head_dim],
 *     out [T, n_heads * head_dim]
 * Head h attends with KV head h / (n_heads / n_kv); token t sees tokens
 * 0..t; softmax(scale * q k^T) v, with scale usually 1/sqrt(head_dim).
 * Scratch memory is bounded (a block of query rows by T), whatever T.
 * out must not overlap the inputs.
 */
int qk_attention(qk_ctx *ctx, float *out, const float *q, const float *k, const float *v,
                 int64_t T, int64_t n_heads, int64_t n_kv, int64_t head_dim, float scale);

/*
 * The same for T new tokens after `past` cached ones (incremental decoding
 * with a KV cache): q [T, n_heads * head_dim] holds positions past ..
 * past + T - 1; k, v [past + T, n_kv * head_dim] hold every position so
 * far; query row t sees keys 0 .. past + t. out [T, n_heads * head_dim].
 * past = 0 is qk_attention. The rows of one query are reduced in the same
 * order as qk_attention's (one GEMM row per query, softmax over its keys),
 * so decoding one token at a time matches the whole sequence up to the
 * GEMM's blocking.
 */
int qk_attention_kv(qk_ctx *ctx, float *out, const float *q, const float *k, const float *v,
                    int64_t T, int64_t past, int64_t n_heads, int64_t n_kv, int64_t head_dim,
                    float scale);

/*
 * What attention does beyond qk_attention_kv, for Gemma 2 and Mistral:
 *   scale    multiplies q k^T (1/sqrt(head_dim), or query_pre_attn_scalar^-1/2)
 *   softcap  > 0: each scaled score s becomes softcap * tanh(s / softcap)
 *            (FP32, before the mask), as transformers' Gemma 2 eager
 *            attention computes it; 0: no capping
 *   window   > 0: the query at position p sees keys max(0, p - window + 1)
 *            .. p only (transformers' sliding-window mask: key > p - window);
 *            0: every earlier key
 */
typedef struct qk_attn {
	float scale;
	float softcap;
	int64_t window;
} qk_attn;

/* qk_attention_kv with the options of a (host memory): q [T, n_heads *
 * head_dim] at positions past .. past + T - 1, k, v [past + T, n_kv *
 * head_dim], out [T, n_heads * head_dim]. softcap 0 and window 0 give
 * qk_attention_kv's bits. A negative window or softcap, or a non-finite
 * one, is QC_EINVAL. */
int qk_attention_ex(qk_ctx *ctx, float *out, const float *q, const float *k, const float *v,
                    int64_t T, int64_t past, int64_t n_heads, int64_t n_kv, int64_t head_dim,
                    const qk_attn *a);

/* SwiGLU: out[i] = silu(gate[i]) * up[i], silu(x) = x / (1 + exp(-x)).
 * out may equal gate or up. */
int qk_swiglu(qk_ctx *ctx, float *out, const float *gate, const float *up, size_t n);

/* GeGLU with the tanh approximation of GELU (PyTorch's
 * gelu(approximate="tanh"), transformers' gelu_pytorch_tanh), in FP32:
 *     out[i] = 0.5 g (1 + tanh(sqrt(2/pi) (g + 0.044715 g^3))) * up[i],
 * g = gate[i]. out may equal gate or up. */
int qk_geglu(qk_ctx *ctx, float *out, const float *gate, const float *up, size_t n);

/* Logit soft-capping in place: x[i] = cap * tanh(x[i] / cap) in FP32
 * (Gemma 2's final_logit_softcapping). x [n] device; cap finite and
 * positive, else QC_EINVAL. */
int qk_softcap(qk_ctx *ctx, float *x, size_t n, float cap);

/* ---------------------------------------------------------------- log-probabilities */

/* y[T, V] = log_softmax(x) row by row (max-subtracted, normalizer summed in
 * double). y may equal x. */
int qk_log_softmax(qk_ctx *ctx, float *y, const float *x, int64_t T, int64_t V);

/* nll[t] = logsumexp(x[t]) - x[t][target[t]] in double, for x [T, V] logits,
 * without materializing the log-probabilities. A target outside [0, V) is
 * QC_EINVAL. */
int qk_nll(qk_ctx *ctx, double *nll, const float *x, const int32_t *target, int64_t T, int64_t V);

/*
 * Softmax statistics of rows of logits folded in a block of columns at a
 * time ("online softmax"), so that NLL, KL and top-1 over a vocabulary of
 * V columns never need a [T, V] array. For each row:
 *   max, sum     running maximum and sum of exp(z - max): the row's
 *                log-normalizer is max + log(sum)
 *   target       the logit of the row's target column, once folded
 *   arg          the first column holding the maximum (ties: lowest)
 *   cross        with a second model's logits z2 on the same columns:
 *                sum of exp(z - max) (z - z2), so that
 *                KL(p || p2) = cross / sum - lse + lse2
 * All in double. Blocks must come in increasing column order.
 */
typedef struct qk_rowstat {
	double max, sum, target, cross;
	int64_t arg;
} qk_rowstat;

/* Start T rows: max -inf, sums 0, target NaN, arg -1. */
void qk_rowstat_init(qk_rowstat *st, int64_t T);

/* Fold columns [col0, col0 + n) of z [T, n] (row stride ldz) into st[T];
 * target[t] (target may be NULL, an entry may be -1) names the column whose
 * logit is kept. z2 (may be NULL) holds the second model's logits of the
 * same block with the same layout. Host memory for st and target. */
int qk_softmax_fold(qk_ctx *ctx, qk_rowstat *st, const float *z, const float *z2, int64_t ldz,
                    int64_t T, int64_t n, int64_t col0, const int32_t *target);

/* ---------------------------------------------------------------- activation quantization */

/*
 * How a quantized Linear's input is quantized at run time, as vLLM's kernels
 * do it (csrc/quantization/compressed_tensors/int8_quant_kernels.cu,
 * csrc/quantization/fp8/common.cu). The input is replaced by its
 * quantize-dequantize image ("fake quantization"), which is what the integer
 * or FP8 GEMM computes up to FP32 summation order.
 *
 *   INT8_TOKEN  per row: s = amax / 127, q = rne_sat(x * (127 / amax)),
 *               x' = q * s (amax 0 gives 0)
 *   FP8_TOKEN   per row: s = max(amax / 448, 1 / (448 * 512)),
 *               q = e4m3(clamp(x / s, +-448)), x' = q * s
 *   INT8_TENSOR static s (input_scale) and integer zero point z:
 *               q = sat(rne(x / s) + z), x' = (q - z) * s
 *   FP8_TENSOR  static s: q = e4m3(clamp(x * (1 / s), +-448)), x' = q * s
 *
 * rne = round half to even, sat = clamp to [-128, 127].
 */
typedef enum {
	QK_ACTQ_NONE = 0,
	QK_ACTQ_INT8_TOKEN,
	QK_ACTQ_FP8_TOKEN,
	QK_ACTQ_INT8_TENSOR,
	QK_ACTQ_FP8_TENSOR,
} qk_actq_kind;

typedef struct qk_actq {
	qk_actq_kind kind;
	float scale;          /* static kinds: input_scale (> 0, finite) */
	int32_t zero_point;   /* INT8_TENSOR only: input_zero_point, else 0 */
} qk_actq;

/* Fake-quantize x [T, D] in place as q says (NONE: no-op). A static scale
 * that is not finite and positive is QC_EINVAL. */
int qk_actq_apply(qk_ctx *ctx, float *x, int64_t T, int64_t D, const qk_actq *q);

/* ---------------------------------------------------------------- reductions and copies */

/* *amax = max(*amax, max_i |x[i]|) for x[n] (device); *amax is host memory. */
int qk_absmax(qk_ctx *ctx, const float *x, size_t n, float *amax);
/* *sum += sum_i x[i]^2 for x[n] (device), accumulated in double in index
 * order (so that a result is the same on every thread count); *sum host. */
int qk_sumsq(qk_ctx *ctx, const float *x, size_t n, double *sum);
/* d[n] = a[n] - b[n] (device; d may equal a or b). */
int qk_sub(qk_ctx *ctx, float *d, const float *a, const float *b, size_t n);
/* d[n] = a[n] + b[n] (device; d may equal a or b). */
int qk_add(qk_ctx *ctx, float *d, const float *a, const float *b, size_t n);
/* dst = src, bytes of device memory (regions must not overlap). */
int qk_copy(qk_ctx *ctx, void *dst, const void *src, size_t bytes);
/* *d2 += sum_i (a[i] - b[i])^2 and *b2 += sum_i b[i]^2 for a, b [n]
 * (device), each term formed in double and added to the running sum that
 * starts at the value passed in, in index order (so that n elements in one
 * call or in several give the same bits); d2, b2 host. */
int qk_diff_sumsq(qk_ctx *ctx, const float *a, const float *b, size_t n, double *d2, double *b2);
/* *first (host) = index of the first NaN or Inf in x[n] (device), or -1
 * when all are finite. */
int qk_nonfinite(qk_ctx *ctx, const float *x, size_t n, int64_t *first);

/* ---------------------------------------------------------------- per-channel statistics and rescaling */

/* amax[j] = max(amax[j], max_r |x[r][j]|) for x [rows, cols] (device):
 * the per-input-channel maximum of activations or of a weight's columns
 * (SmoothQuant's and AWQ's statistics). amax [cols] is host memory. */
int qk_col_absmax(qk_ctx *ctx, const float *x, int64_t rows, int64_t cols, float *amax);
/* x[r][j] *= s[j] (divide 0) or x[r][j] /= s[j] (divide 1), for x [rows,
 * cols] (device) and s [cols] (host, nonzero): folding per-channel scales
 * into a weight's columns, a norm's weight ([1, cols]) or activations. */
int qk_scale_cols(qk_ctx *ctx, float *x, int64_t rows, int64_t cols, const float *s, int divide);
/* x[r][j] *= s[r] or /= s[r], s [rows] (host, nonzero): a weight's rows
 * (the output channels of v_proj or up_proj). */
int qk_scale_rows(qk_ctx *ctx, float *x, int64_t rows, int64_t cols, const float *s, int divide);
/* w [rows, cols] (device) := its image on the symmetric int8 grid per row
 * (what qgptq --scheme w8a8 rounds to with minmax scales in FP32), after
 * multiplying column j by s[j] (host; NULL: no scaling): per row, with
 * amax = max_j |w_j| (after the scaling), scale = max(amax / 127.5,
 * FLT_EPSILON) and w_j := clamp(rne(w_j / scale), -128, 127) * scale, as
 * qc_quant's qc_qparams and qc_qdq compute it (SmoothQuant's error). */
int qk_q8_rows(qk_ctx *ctx, float *w, int64_t rows, int64_t cols, const float *s);
/* sum[j] += sum_r |x[r][j]| for x [rows, cols] (device), each column
 * summed in double in row order (the same bits on every thread count): the
 * per-input-channel mean magnitude of activations AWQ's search starts
 * from. sum [cols] is host memory. */
int qk_col_abssum(qk_ctx *ctx, const float *x, int64_t rows, int64_t cols, double *sum);

/* ---------------------------------------------------------------- storage dtypes */

/* dst[n] (device, BF16, 2 bytes each) = src[n] (device, FP32) rounded to
 * nearest even, exactly as qc_from_f32 / qc_f32_to_bf16 round (overflow to
 * +-Inf, NaN stays a quiet NaN of its sign, -0 kept). */
int qk_bf16_store(qk_ctx *ctx, void *dst, const float *src, size_t n);
/* dst[n] (device, FP32) = src[n] (device, BF16), exact. */
int qk_bf16_load(qk_ctx *ctx, float *dst, const void *src, size_t n);
/* FP8 E4M3 quantize-dequantize in place with a per-tensor scale s, as
 * vLLM's static FP8 quantization (and QK_ACTQ_FP8_TENSOR) computes it:
 *     x[i] = e4m3(clamp(x[i] * (1 / s), +-448)) * s
 * with e4m3 qc_num's saturating round to nearest even (NaN stays NaN).
 * x [n] device; s finite and positive, else QC_EINVAL. */
int qk_fp8_qdq(qk_ctx *ctx, float *x, size_t n, float scale);
/* p[bytes] = 0 (device memory). */
int qk_zero(qk_ctx *ctx, void *p, size_t bytes);

/* ---------------------------------------------------------------- GPTQ support */

/*
 * Hessian accumulation for GPTQ:  H[n, n] += alpha * X^T X  for X [T, n]
 * (the T input rows of a Linear). Only the upper triangle (j >= i) is
 * updated (ssyrk); qk_sym_upper copies it to the lower one when the sum is
 * complete.
 */
int qk_hessian_accum(qk_ctx *ctx, float *H, const float *X, int64_t T, int64_t n, float alpha);
int qk_sym_upper(qk_ctx *ctx, float *H, int64_t n);

/*
 * Cholesky factorization in place of a symmetric positive definite A [n, n]
 * (only the selected triangle is read): upper nonzero gives A = U^T U with U
 * in the upper triangle, else A = L L^T with L in the lower triangle. The
 * other triangle is set to zero. QC_ENUMERIC when A is not positive definite
 * (the message gives the failing leading minor).
 */
int qk_cholesky(qk_ctx *ctx, float *A, int64_t n, int upper);

/* Inverse in place of a triangular A [n, n] (upper or lower as selected;
 * the other triangle is left as zero). QC_ENUMERIC when A is singular. */
int qk_tri_inverse(qk_ctx *ctx, float *A, int64_t n, int upper);

/*
 * The steps of the GPTQ solver (libcommon/quant/qc_gptq.h, which says what
 * they compute and why) that read or write the Hessian and the weights, so
 * that they run where that memory is. The solver keeps on the host only
 * what is small: the Hessian's diagonal, the column order, the dead inputs,
 * the damping policy, and per group the scales, zero points and codes.
 *
 * How a weight is quantized is qc_quant.h's arithmetic (calculate_qparams,
 * _quantize of compressed-tensors), restated here because the kernels
 * include no quantization module: qk_qspec carries qc_qargs and
 * qc_clip_opts, and the results are bit for bit qc_quant's (tests compare
 * them). Every op below splits its work over rows (rows are independent
 * in GPTQ), so results do not depend on how the rows of the matrices are
 * split into calls, and are deterministic for a fixed thread count.
 */
typedef struct qk_qspec {
	int is_float;           /* 1: FP8 E4M3 codes (8 bits, symmetric) */
	int bits;               /* integer codes: 4 or 8 */
	int symmetric;          /* 0: integer zero points */
	int64_t group;          /* columns per group (cols for channel and tensor) */
	int tensor;             /* one scale (and zero point) for every row: [1] */
	qc_dtype scale_dtype;   /* BF16, F16 or F32: parameters rounded to it */
	qc_dtype arith;         /* F32, BF16 or F16: quantize's arithmetic */
	int mse;                /* parameter search: 0 min/max, 1 MSE clipping search */
	int grid, patience;     /* the search (qc_clip_opts): 100, 5 */
	double maxshrink, norm; /* 0.20, 2.4 */
} qk_qspec;

/* Per-row sums (host, double) that the solver turns into errors. "p"
 * quantities are in sweep order with dead inputs zeroed; V is the factor of
 * qk_gptq_factor. Each op adds to the fields it names. */
typedef struct qk_gptq_sums {
	double w2;              /* ||w||^2 of the original row (rtn, sweep) */
	double werr;            /* ||w - q||^2, q the op's dequantized codes (rtn, sweep) */
	double n_w, xv_w;       /* ||wp||^2, ||wp V||^2 (errors) */
	double n_r, xv_r;       /* ||(w - q_rtn)p||^2, ||(w - q_rtn)p V||^2 (errors) */
	double n_g, xv_g;       /* ||wp - q||^2, ||(wp - q) V||^2 (sweep) */
	double hw2, herr;       /* sum colw w^2, sum colw (w - q)^2 (rtn with colw) */
} qk_gptq_sums;

/* One matrix of a solve, [rows, cols] (cols is an argument of the op).
 * W and deq are device memory; codes, scales, zps and sums host memory. */
typedef struct qk_gptq_mat {
	const float *W;         /* [rows, cols] FP32, finite */
	int64_t rows;
	void *codes;            /* [rows, cols] one byte each: int8 values or E4M3 bytes */
	float *scales, *zps;    /* [rows, ceil(cols / group)], or [1] for tensor;
	                           zps NULL when symmetric */
	float *deq;             /* [rows, cols] the dequantized codes, or NULL; may equal W */
	qk_gptq_sums *sums;     /* [rows] */
} qk_gptq_mat;

/* diag[n] (host) = the diagonal of H [n, n]; *bad (host) = i n + j of the
 * first NaN or Inf of H's upper triangle in row order, or -1. */
int qk_gptq_hdiag(qk_ctx *ctx, const float *H, int64_t n, float *diag, int64_t *bad);

/* H [n, n] (upper triangle read) := M, symmetric and whole, with
 * M[i][j] = H[sigma[i]][sigma[j]] for a permutation sigma[n] (host). */
int qk_gptq_permute(qk_ctx *ctx, float *H, int64_t n, const int64_t *sigma);

/*
 * The damped factor. H [n, n] holds a whole symmetric M (as qk_gptq_permute
 * leaves it, its diagonal ignored); its diagonal becomes
 * (float)(diag[i] + lambda) (diag host) and M = L L^T is factored in place,
 * reading and writing the lower triangle only; then H := V = J L J (J the
 * reversal), upper triangular with a zero strict lower triangle, so that
 * J M J = V V^T. QC_ENUMERIC when M is not positive definite: H then holds
 * M again (the lower triangle restored from the upper one), so the call may
 * be repeated with a larger lambda.
 */
int qk_gptq_factor(qk_ctx *ctx, float *H, int64_t n, const float *diag, double lambda);

/* *mn, *mx (host) = min and max of W[n], widened to include 0
 * (a tensor-wide scale's range). */
int qk_gptq_minmax(qk_ctx *ctx, const float *W, size_t n, float *mn, float *mx);

/* Each row's parameters, per group, from its W by min/max or the MSE
 * clipping search (qc_group_params), the search's errors weighted per
 * column by colw[cols] (host, >= 0; NULL: unweighted), into the matrices'
 * scales and zps. Not for q->tensor (use qk_gptq_minmax). */
int qk_gptq_params(qk_ctx *ctx, const qk_qspec *q, const qk_gptq_mat *m, int nmat,
                   int64_t cols, const float *colw);

/* Round to nearest with the matrices' scales and zps: codes, deq, and the
 * sums w2 and werr; with column weights colw[cols] (host, >= 0; or NULL)
 * also hw2 and herr, the same sums weighted per column. */
int qk_gptq_rtn(qk_ctx *ctx, const qk_qspec *q, const qk_gptq_mat *m, int nmat, int64_t cols,
                const float *colw);

/* The error products: for each row, with wp its weights in the sweep order
 * perm[cols] (host: sweep position -> column) and dead[cols] (host,
 * original order, or NULL) zeroed, and q_rtn its round-to-nearest image
 * with the matrices' scales and zps: the sums n_w, xv_w, n_r, xv_r through
 * V [cols, cols] (upper triangular, from qk_gptq_factor). */
int qk_gptq_errors(qk_ctx *ctx, const qk_qspec *q, const qk_gptq_mat *m, int nmat, int64_t cols,
                   const float *V, const int64_t *perm, const uint8_t *dead);

/*
 * The GPTQ sweep over the matrices' rows (qc_gptq.h, "sweep"): columns in
 * the order perm (host), dead (host, or NULL) inputs quantized from 0,
 * blocks of `block` columns with lazy updates through V [cols, cols]
 * (qk_gptq_factor's). With dynamic nonzero (group strategy without
 * act-order: perm must be the identity) each group's parameters are found
 * when the sweep enters it, from the updated weights, weighted by colw
 * (host, or NULL) as in qk_gptq_params, and written to scales and zps;
 * otherwise scales and zps are read. Writes codes, deq, and the sums w2,
 * werr, n_g and xv_g. Reads every W before writing any deq, block by block,
 * so deq may equal W.
 */
int qk_gptq_sweep(qk_ctx *ctx, const qk_qspec *q, const qk_gptq_mat *m, int nmat, int64_t cols,
                  const float *V, const int64_t *perm, const uint8_t *dead, const float *colw,
                  int64_t block, int dynamic);

/* ---------------------------------------------------------------- AWQ support */

/*
 * AWQ's group quantizer (libcommon/quant/qc_awq.h says where it is used and
 * why): the pseudo-quantizer of the AWQ authors' code, with each group's
 * scale rounded to scale_dtype, the dtype the checkpoint stores it in, so
 * that what the search evaluates is what is written. For the values v of
 * one group (a row's `group` consecutive columns; the last group may be
 * shorter), in FP32, rne = round half to even:
 *
 *   zero_point   lo = 0, hi = 2^bits - 1
 *                scale = round_dt(max(max(v) - min(v), 1e-5) / hi)
 *                z = clamp(-rne(min(v) / scale), lo, hi)
 *   symmetric    lo = -2^(bits-1), hi = 2^(bits-1) - 1
 *                scale = round_dt(max(max |v|, 1e-5) / hi),  z = 0
 *   each value   q = clamp(rne(v / scale) + z, lo, hi),  deq = (q - z) * scale
 *
 * (the range of a group is its own minimum and maximum, not widened to
 * include 0). Stored as compressed-tensors codes (doc/design.md 3.3): the
 * code is q - 2^(bits-1) and the zero point z - 2^(bits-1) with a zero
 * point, q itself when symmetric, so that (code - zp) * scale = deq.
 */
typedef struct qk_awqspec {
	int bits;               /* 4 or 8 */
	int zero_point;         /* 1: asymmetric with a zero point; 0: symmetric */
	int64_t group;          /* columns per group (>= cols: one group per row) */
	qc_dtype scale_dtype;   /* BF16, F16 or F32 */
} qk_awqspec;

/*
 * out[r][j] = deq(v[r][j]) / s[j] with v[r][j] = clamp(W[r][j] * s[j],
 * -m, m), m = clip[r ng + g] of the value's group g (ng = ceil(cols /
 * group)), each group quantized as above from its clamped values:
 * Q(W diag(s)) diag(s)^-1, the candidate weights of AWQ's scale search, or,
 * with s NULL (no scaling) and clip from qk_awq_clip, the final quantized
 * weights. W and out [rows, cols] are device memory (out may equal W);
 * s [cols] and clip [rows, ng] host memory, either may be NULL (no scaling,
 * no clamping); codes [rows, cols], scales and zeros [rows, ng] host
 * memory, each may be NULL (not wanted; zeros is not written when
 * symmetric). QC_EINVAL for a bad spec or shape.
 */
int qk_awq_qdq(qk_ctx *ctx, const qk_awqspec *q, float *out, const float *W, int64_t rows,
               int64_t cols, const float *s, const float *clip, int8_t *codes, float *scales,
               float *zeros);

/*
 * acc[j] += sum_r |W[r][j]| / (max of |W[r][.]| over j's group + 1e-6),
 * each term in FP32 and summed in double in row order, for W [rows, cols]
 * (device): the per-input-channel mean of the group-normalized weight
 * magnitude that AWQ's duo scaling divides by, once divided by the rows
 * of every Linear of the group. acc [cols] host memory.
 */
int qk_awq_wmean(qk_ctx *ctx, const float *W, int64_t rows, int64_t cols, int64_t group,
                 double *acc);

/*
 * AWQ's clipping search (the authors' auto_clip): for each row r and group
 * g of W [rows, cols] (device), with m0 the group's max |w| and
 * m_i = m0 * (float)(1 - i / grid) for i = 0 .. steps - 1, the error
 *     e_i = sum_t (sum_{j in g} X[t][j] (qdq(clamp(w, -m_i, m_i))[j] - w[j]))^2 / n
 * over the n sampled inputs X [n, cols] (device), in double; the m_i with
 * the least error (strict <, from i = 0; errors of 1e9 or more are never
 * chosen, which keeps m0) goes to clip[r ng + g] and i to shrink[r ng + g]
 * (host, [rows, ng]; shrink may be NULL). qdq is the quantizer above.
 * Rows are split into one contiguous share per thread, each running
 * single-threaded BLAS (a group's errors for every step are one GEMM).
 */
int qk_awq_clip(qk_ctx *ctx, const qk_awqspec *q, const float *W, int64_t rows, int64_t cols,
                const float *X, int64_t n, int steps, int grid, float *clip, int32_t *shrink);

#endif
