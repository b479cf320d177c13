/*
 * qk_cuda_ops.cu - the row kernels on the GPU: RMSNorm, RoPE, attention,
 * SwiGLU, log-softmax and NLL, the online softmax statistics and activation
 * fake-quantization (kernels.h), each the CPU's formula (kernels/cpu/
 * qk_ops.c) with the same FP32 operations and double accumulations.
 */
#include "qk_cuda_num.h"
#include "qk_cuda_red.h"

#include <limits.h>

#define RT 256
#define EW_BLOCKS 65535u
#define ROW_BLOCKS 65535u

/* ---------------------------------------------------------------- RMSNorm */

/* one block per row: the mean square in double, then y = w (x r) */
static __global__ void k_rmsnorm(float *y, const float *x, const float *w, int64_t T, int64_t D,
                                 float eps)
{
	for (int64_t t = blockIdx.x; t < T; t += gridDim.x) {
		const float *xr = x + t * D;
		double ss = 0;
		for (int64_t i = threadIdx.x; i < D; i += blockDim.x)
			ss += (double)xr[i] * (double)xr[i];
		ss = qk_block_reduce(ss, qk_op_add(), 0.0);
		/* transformers: hidden * rsqrt(mean(hidden^2) + eps), then weight * that */
		float r = (float)(1.0 / sqrt(ss / (double)D + (double)eps));
		float *yr = y + t * D;
		for (int64_t i = threadIdx.x; i < D; i += blockDim.x)
			yr[i] = __fmul_rn(w[i], __fmul_rn(xr[i], r));
	}
}

int qk_cuda_rmsnorm(qk_ctx *ctx, float *y, const float *x, const float *w, int64_t T, int64_t D,
                    float eps)
{
	const char *op = "rmsnorm";
	QC_TRY(qk_cuda_enter(ctx, op));
	if (T < 0 || D <= 0 || !(eps >= 0))
		return qc_seterr(QC_EINVAL, "rmsnorm: invalid shape [%lld, %lld] or eps", (long long)T,
		                 (long long)D);
	if (T == 0)
		return 0;
	QK_LAUNCH(k_rmsnorm, (unsigned)(T < ROW_BLOCKS ? T : ROW_BLOCKS), RT, 0, qk_cu(ctx)->st, y, x,
	          w, T, D, eps);
	LAUNCH_TRY(op);
	return qk_cuda_sync(ctx, op);
}

/* ---------------------------------------------------------------- RoPE */

/* one thread per (token, frequency): its cos and sin (of the FP32 angle, in
 * double, rounded), applied to every head of the token */
static __global__ void k_rope(float *x, int64_t T, int64_t nh, int64_t hd, int64_t pos0,
                              const float *inv_freq)
{
	const int64_t half = hd / 2;
	size_t n = (size_t)T * (size_t)half;
	for (size_t e = (size_t)blockIdx.x * blockDim.x + threadIdx.x; e < n;
	     e += (size_t)gridDim.x * blockDim.x) {
		int64_t t = (int64_t)(e / (size_t)half), i = (int64_t)(e % (size_t)half);
		float a = __fmul_rn((float)(pos0 + t), inv_freq[i]);
		float c = (float)cos((double)a), s = (float)sin((double)a);
		for (int64_t h = 0; h < nh; h++) {
			float *xh = x + (t * nh + h) * hd;
			float x1 = xh[i], x2 = xh[i + half];
			xh[i] = __fsub_rn(__fmul_rn(x1, c), __fmul_rn(x2, s));
			xh[i + half] = __fadd_rn(__fmul_rn(x2, c), __fmul_rn(x1, s));
		}
	}
}

int qk_cuda_rope_apply(qk_ctx *ctx, float *x, int64_t T, int64_t n_heads, int64_t head_dim,
                       int64_t pos0, const float *inv_freq)
{
	const char *op = "rope";
	QC_TRY(qk_cuda_enter(ctx, op));
	if (T < 0 || n_heads <= 0 || head_dim <= 0 || head_dim % 2 || pos0 < 0)
		return qc_seterr(QC_EINVAL, "rope: invalid shape");
	if (T == 0)
		return 0;
	int64_t half = head_dim / 2;
	float *f = (float *)qk_cuda_scratch(ctx, (size_t)half * sizeof(float), op);
	if (!f)
		return QC_ENOMEM;
	QC_TRY(qk_cuda_put(ctx, f, inv_freq, (size_t)half * sizeof(float), op));
	QK_LAUNCH(k_rope, qk_blocks((size_t)(T * half), RT, EW_BLOCKS), RT, 0, qk_cu(ctx)->st, x, T,
	          n_heads, head_dim, pos0, (const float *)f);
	LAUNCH_TRY(op);
	return qk_cuda_sync(ctx, op);
}

/* ---------------------------------------------------------------- attention */

/*
 * Causal GQA attention by blocks of query rows, as the CPU computes it
 * (kernels/cpu/qk_ops.c): for rows [i0, i0 + rows), the scores of every
 * head S [heads, rows, keys] (keys = past + i0 + rows: no row of the block sees
 * past its end) come from strided-batched GEMMs, one per query head of a
 * KV group (the batch runs over the KV heads); a kernel turns each row into
 * its causal softmax (FP32 exponentials, normalizer in double); two more
 * batched GEMMs give the outputs. The scores of one block are the only
 * scratch, at most ATT_SCRATCH bytes: the block's rows shrink as T grows.
 */
#define ATT_SCRATCH ((size_t)256 << 20)

/* row r of head h: softmax of S[h][r][lo..n) (n = base + r + 1, lo = n -
 * window when a window cuts it), zeros elsewhere; softcap > 0 caps the
 * scores first (softcap * tanh(s / softcap)) */
static __global__ void k_att_softmax(float *S, int64_t rows, int64_t keys, int64_t base,
                                     int64_t window, float softcap)
{
	const int64_t r = blockIdx.x, h = blockIdx.y;
	float *row = S + (h * rows + r) * keys;
	const int64_t n = base + r + 1;
	const int64_t lo = window > 0 && n > window ? n - window : 0;
	if (softcap > 0) {
		for (int64_t j = lo + threadIdx.x; j < n; j += blockDim.x)
			row[j] = __fmul_rn(tanhf(__fdiv_rn(row[j], softcap)), softcap);
		__syncthreads();
	}
	float m = -INFINITY;
	for (int64_t j = lo + threadIdx.x; j < n; j += blockDim.x)
		m = fmaxf(m, row[j]);
	m = qk_block_reduce(m, qk_op_fmax(), -INFINITY);
	double sum = 0;
	for (int64_t j = lo + threadIdx.x; j < n; j += blockDim.x) {
		float e = expf(__fsub_rn(row[j], m));
		row[j] = e;
		sum += e;
	}
	sum = qk_block_reduce(sum, qk_op_add(), 0.0);
	float inv = (float)(1.0 / sum);
	for (int64_t j = threadIdx.x; j < keys; j += blockDim.x)
		row[j] = j >= lo && j < n ? __fmul_rn(row[j], inv) : 0.0f;
}

/* T query rows after `past` cached keys with a's options (softcap 0,
 * window 0: qk_attention_kv) */
int qk_cuda_attention_ex(qk_ctx *ctx, float *out, const float *q, const float *k, const float *v,
                         int64_t T, int64_t past, int64_t n_heads, int64_t n_kv,
                         int64_t head_dim, const qk_attn *a)
{
	const char *op = "attention";
	QC_TRY(qk_cuda_enter(ctx, op));
	if (T < 0 || past < 0 || n_heads <= 0 || n_kv <= 0 || head_dim <= 0 || n_heads % n_kv)
		return qc_seterr(QC_EINVAL, "attention: invalid shape (%lld heads, %lld kv heads)",
		                 (long long)n_heads, (long long)n_kv);
	if (T > INT_MAX / 2 - past || n_heads * head_dim > INT_MAX)
		return qc_seterr(QC_EINVAL, "attention: sequence of %lld tokens too long",
		                 (long long)(T + past));
	if (!a || a->window < 0 || !(a->softcap >= 0) || !isfinite(a->softcap))
		return qc_seterr(QC_EINVAL, "attention: invalid window or soft-capping");
	if (T == 0)
		return 0;
	if (n_heads > 65535)
		return qc_seterr(QC_EINVAL, "attention: %lld heads are too many", (long long)n_heads);
	qk_cuda *c = qk_cu(ctx);
	const int64_t hd = head_dim, qs = n_heads * hd, ks = n_kv * hd, group = n_heads / n_kv;
	const int64_t Tk = past + T;
	int64_t bm = (int64_t)(qk_cu_size(ctx, ATT_SCRATCH, 4096) /
	                       ((size_t)n_heads * (size_t)Tk * sizeof(float)));
	if (bm < 1)
		bm = 1;
	if (bm > T)
		bm = T;
	float *S = (float *)qk_cuda_scratch(ctx, (size_t)(n_heads * bm) * (size_t)Tk * sizeof(float), op);
	if (!S)
		return QC_ENOMEM;
	for (int64_t i0 = 0; i0 < T; i0 += bm) {
		int64_t rows = T - i0 < bm ? T - i0 : bm, keys = past + i0 + rows;
		int64_t hs = rows * keys; /* one head's scores */
		/* S[h] = scale Q[i0.., h] K[0..keys, h / group]^T; head h = g group + j */
		for (int64_t j = 0; j < group; j++)
			QC_TRY(qk_cuda_gemm_rm_batched(ctx, op, c->math, 0, 1, rows, keys, hd, a->scale,
			                               q + i0 * qs + j * hd, qs, group * hd, k, ks, hd, 0.0f,
			                               S + j * hs, keys, group * hs, n_kv));
		QK_LAUNCH(k_att_softmax, dim3((unsigned)rows, (unsigned)n_heads), RT, 0, c->st, S, rows,
		          keys, past + i0, a->window, a->softcap);
		LAUNCH_TRY(op);
		/* O[i0.., h] = P[h] V[0..keys, h / group] */
		for (int64_t j = 0; j < group; j++)
			QC_TRY(qk_cuda_gemm_rm_batched(ctx, op, c->math, 0, 0, rows, hd, keys, 1.0f,
			                               S + j * hs, keys, group * hs, v, ks, hd, 0.0f,
			                               out + i0 * qs + j * hd, qs, group * hd, n_kv));
	}
	return qk_cuda_sync(ctx, op);
}

int qk_cuda_attention_kv(qk_ctx *ctx, float *out, const float *q, const float *k, const float *v,
                         int64_t T, int64_t past, int64_t n_heads, int64_t n_kv,
                         int64_t head_dim, float scale)
{
	qk_attn a = { scale, 0.0f, 0 };
	return qk_cuda_attention_ex(ctx, out, q, k, v, T, past, n_heads, n_kv, head_dim, &a);
}

int qk_cuda_attention(qk_ctx *ctx, float *out, const float *q, const float *k, const float *v,
                      int64_t T, int64_t n_heads, int64_t n_kv, int64_t head_dim, float scale)
{
	return qk_cuda_attention_kv(ctx, out, q, k, v, T, 0, n_heads, n_kv, head_dim, scale);
}

/* ---------------------------------------------------------------- SwiGLU, GeGLU */

static __global__ void k_swiglu(float *out, const float *gate, const float *up, size_t n)
{
	for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x) {
		float g = gate[i];
		out[i] = __fmul_rn(__fdiv_rn(g, __fadd_rn(1.0f, expf(-g))), up[i]);
	}
}

int qk_cuda_swiglu(qk_ctx *ctx, float *out, const float *gate, const float *up, size_t n)
{
	QC_TRY(qk_cuda_enter(ctx, "swiglu"));
	if (n == 0)
		return 0;
	QK_LAUNCH(k_swiglu, qk_blocks(n, RT, EW_BLOCKS), RT, 0, qk_cu(ctx)->st, out, gate, up, n);
	LAUNCH_TRY("swiglu");
	return qk_cuda_sync(ctx, "swiglu");
}

/* the CPU's tanh GELU (kernels/cpu/qk_ops.c), FP32 operations rounded the same */
static __global__ void k_geglu(float *out, const float *gate, const float *up, size_t n)
{
	for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x) {
		float g = gate[i];
		float g3 = __fmul_rn(__fmul_rn(g, g), g);
		float inner = __fmul_rn(0.7978845608028654f, __fadd_rn(g, __fmul_rn(0.044715f, g3)));
		float y = __fmul_rn(__fmul_rn(0.5f, g), __fadd_rn(1.0f, tanhf(inner)));
		out[i] = __fmul_rn(y, up[i]);
	}
}

int qk_cuda_geglu(qk_ctx *ctx, float *out, const float *gate, const float *up, size_t n)
{
	QC_TRY(qk_cuda_enter(ctx, "geglu"));
	if (n == 0)
		return 0;
	QK_LAUNCH(k_geglu, qk_blocks(n, RT, EW_BLOCKS), RT, 0, qk_cu(ctx)->st, out, gate, up, n);
	LAUNCH_TRY("geglu");
	return qk_cuda_sync(ctx, "geglu");
}

/* ---------------------------------------------------------------- soft-capping */

static __global__ void k_softcap(float *x, size_t n, float cap)
{
	for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x)
		x[i] = __fmul_rn(tanhf(__fdiv_rn(x[i], cap)), cap);
}

int qk_cuda_softcap(qk_ctx *ctx, float *x, size_t n, float cap)
{
	QC_TRY(qk_cuda_enter(ctx, "softcap"));
	if (!(cap > 0) || !isfinite(cap))
		return qc_seterr(QC_EINVAL, "softcap: the cap %g is not a positive number", (double)cap);
	if (n == 0)
		return 0;
	QK_LAUNCH(k_softcap, qk_blocks(n, RT, EW_BLOCKS), RT, 0, qk_cu(ctx)->st, x, n, cap);
	LAUNCH_TRY("softcap");
	return qk_cuda_sync(ctx, "softcap");
}

/* ---------------------------------------------------------------- log-softmax, NLL */

/* the row's log-normalizer, to every thread of the block */
QK_DEV double row_lse(const float *x, int64_t V)
{
	float m = -INFINITY;
	for (int64_t j = threadIdx.x; j < V; j += blockDim.x)
		m = fmaxf(m, x[j]);
	m = qk_block_reduce(m, qk_op_fmax(), -INFINITY);
	double s = 0;
	if (!isinf(m))
		for (int64_t j = threadIdx.x; j < V; j += blockDim.x)
			s += exp((double)x[j] - (double)m);
	s = qk_block_reduce(s, qk_op_add(), 0.0);
	/* all -inf, or a +inf logit: the normalizer is m itself */
	return isinf(m) ? (double)m : (double)m + log(s);
}

static __global__ void k_log_softmax(float *y, const float *x, int64_t T, int64_t V)
{
	for (int64_t t = blockIdx.x; t < T; t += gridDim.x) {
		double lse = row_lse(x + t * V, V);
		for (int64_t i = threadIdx.x; i < V; i += blockDim.x)
			y[t * V + i] = (float)((double)x[t * V + i] - lse);
	}
}

int qk_cuda_log_softmax(qk_ctx *ctx, float *y, const float *x, int64_t T, int64_t V)
{
	QC_TRY(qk_cuda_enter(ctx, "log_softmax"));
	if (T < 0 || V <= 0)
		return qc_seterr(QC_EINVAL, "log_softmax: invalid shape");
	if (T == 0)
		return 0;
	QK_LAUNCH(k_log_softmax, (unsigned)(T < ROW_BLOCKS ? T : ROW_BLOCKS), RT, 0, qk_cu(ctx)->st, y,
	          x, T, V);
	LAUNCH_TRY("log_softmax");
	return qk_cuda_sync(ctx, "log_softmax");
}

/* first position whose target is outside [0, V) */
static __global__ void k_check_targets(const int32_t *target, int64_t T, int64_t V,
                                       unsigned long long *bad)
{
	for (int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; t < T;
	     t += (int64_t)gridDim.x * blockDim.x)
		if (target[t] < 0 || target[t] >= V)
			atomicMin(bad, (unsigned long long)t);
}

static __global__ void k_nll(double *nll, const float *x, const int32_t *target, int64_t T,
                             int64_t V)
{
	for (int64_t t = blockIdx.x; t < T; t += gridDim.x) {
		double lse = row_lse(x + t * V, V);
		if (threadIdx.x == 0)
			nll[t] = lse - (double)x[t * V + target[t]];
	}
}

int qk_cuda_nll(qk_ctx *ctx, double *nll, const float *x, const int32_t *target, int64_t T,
                int64_t V)
{
	const char *op = "nll";
	QC_TRY(qk_cuda_enter(ctx, op));
	if (T < 0 || V <= 0)
		return qc_seterr(QC_EINVAL, "nll: invalid shape");
	if (T == 0)
		return 0;
	qk_cuda *c = qk_cu(ctx);
	unsigned long long *bad = (unsigned long long *)qk_cuda_res(ctx, sizeof *bad, op);
	if (!bad)
		return QC_ENOMEM;
	CU_TRY(op, cudaMemsetAsync(bad, 0xFF, sizeof *bad, c->st));
	QK_LAUNCH(k_check_targets, qk_blocks((size_t)T, RT, EW_BLOCKS), RT, 0, c->st, target, T, V,
	          bad);
	LAUNCH_TRY(op);
	unsigned long long hb;
	QC_TRY(qk_cuda_get(ctx, &hb, bad, sizeof hb, op));
	if (hb != ~0ull) {
		int32_t tv;
		QC_TRY(qk_cuda_get(ctx, &tv, target + hb, sizeof tv, op));
		return qc_seterr(QC_EINVAL, "nll: target %d of position %lld outside the vocabulary of %lld",
		                 (int)tv, (long long)hb, (long long)V);
	}
	QK_LAUNCH(k_nll, (unsigned)(T < ROW_BLOCKS ? T : ROW_BLOCKS), RT, 0, c->st, nll, x, target, T, V);
	LAUNCH_TRY(op);
	return qk_cuda_sync(ctx, op);
}

/* ---------------------------------------------------------------- online softmax statistics */

/* row t: fold columns [col0, col0 + n) of z (and z2) into st[t], exactly as
 * kernels/cpu's fold_rows, with the row's sums reduced in a fixed tree */
static __global__ void k_fold(qk_rowstat *st, const float *z, const float *z2, int64_t ldz,
                              int64_t T, int64_t n, int64_t col0, const int32_t *target)
{
	for (int64_t t = blockIdx.x; t < T; t += gridDim.x) {
		const float *zr = z + t * ldz, *z2r = z2 ? z2 + t * ldz : NULL;
		qk_argmax a;
		a.v = 0.0f;
		a.i = -1;
		for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
			qk_argmax b;
			b.v = zr[i];
			b.i = i;
			a = qk_argmax_pick(a, b);
		}
		a = qk_block_argmax(a);
		/* every thread updates its own copy the same way; thread 0 writes */
		qk_rowstat s = st[t];
		double bm = (double)zr[a.i];
		if (s.arg < 0 || bm > s.max) {
			/* the first block, or a new maximum: rescale what was summed */
			if (s.arg >= 0) {
				double f = exp(s.max - bm);
				s.sum *= f;
				s.cross *= f;
			}
			s.max = bm;
			s.arg = col0 + a.i;
		}
		double m = s.max, sum = 0, cross = 0;
		if (!(isinf(m) && m < 0)) {
			for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
				double e1 = exp((double)zr[i] - m);
				sum += e1;
				if (z2r)
					cross += e1 * ((double)zr[i] - (double)z2r[i]);
			}
		}
		sum = qk_block_reduce(sum, qk_op_add(), 0.0);
		cross = qk_block_reduce(cross, qk_op_add(), 0.0);
		s.sum += sum;
		s.cross += cross;
		if (target) {
			int64_t c = (int64_t)target[t] - col0;
			if (c >= 0 && c < n)
				s.target = zr[c];
		}
		if (threadIdx.x == 0)
			st[t] = s;
		/* st[t] is read by every thread above: no thread of the next
		 * row's iteration may run ahead of this write's readers */
		__syncthreads();
	}
}

int qk_cuda_softmax_fold(qk_ctx *ctx, qk_rowstat *st, const float *z, const float *z2,
                         int64_t ldz, int64_t T, int64_t n, int64_t col0, const int32_t *target)
{
	const char *op = "softmax fold";
	QC_TRY(qk_cuda_enter(ctx, op));
	if (T < 0 || n <= 0 || ldz < n || col0 < 0)
		return qc_seterr(QC_EINVAL, "softmax fold: invalid shape");
	if (T == 0)
		return 0;
	/* st and target are host memory: through scratch */
	size_t sb = (size_t)T * sizeof(qk_rowstat), tb = target ? (size_t)T * sizeof(int32_t) : 0;
	char *p = (char *)qk_cuda_scratch(ctx, qk_align256(sb) + qk_align256(tb), op);
	if (!p)
		return QC_ENOMEM;
	qk_rowstat *ds = (qk_rowstat *)qk_carve(&p, sb);
	int32_t *dt = target ? (int32_t *)qk_carve(&p, tb) : NULL;
	QC_TRY(qk_cuda_put(ctx, ds, st, sb, op));
	if (target)
		QC_TRY(qk_cuda_put(ctx, dt, target, tb, op));
	QK_LAUNCH(k_fold, (unsigned)(T < ROW_BLOCKS ? T : ROW_BLOCKS), RT, 0, qk_cu(ctx)->st, ds, z, z2,
	          ldz, T, n, col0, (const int32_t *)dt);
	LAUNCH_TRY(op);
	return qk_cuda_get(ctx, st, ds, sb, op);
}

/* ---------------------------------------------------------------- activation quantization */

/* round half to even, then saturate to int8; NaN gives 0 (cvt.rni.sat.s8.f32) */
QK_DEV float rne_sat_i8(float v)
{
	if (isnan(v))
		return 0.0f;
	float r = rintf(v);
	return r < -128.0f ? -128.0f : r > 127.0f ? 127.0f : r;
}

static __global__ void k_actq(float *x, int64_t T, int64_t D, int kind, float scale, float zp)
{
	for (int64_t t = blockIdx.x; t < T; t += gridDim.x) {
		float *xr = x + t * D;
		float amax = 0.0f;
		if (kind == QK_ACTQ_INT8_TOKEN || kind == QK_ACTQ_FP8_TOKEN) {
			for (int64_t i = threadIdx.x; i < D; i += blockDim.x)
				amax = qk_op_nanmax()(amax, fabsf(xr[i]));
			amax = qk_block_reduce(amax, qk_op_nanmax(), 0.0f);
		}
		if (kind == QK_ACTQ_INT8_TOKEN) {
			float s = __fdiv_rn(amax, 127.0f), inv = __fdiv_rn(127.0f, amax);
			for (int64_t i = threadIdx.x; i < D; i += blockDim.x)
				xr[i] = amax == 0.0f ? 0.0f : __fmul_rn(rne_sat_i8(__fmul_rn(xr[i], inv)), s);
		} else if (kind == QK_ACTQ_FP8_TOKEN) {
			float s = __fdiv_rn(amax, QK_FP8_MAX);
			const float min_s = 1.0f / (QK_FP8_MAX * 512.0f);
			if (s < min_s)
				s = min_s;
			for (int64_t i = threadIdx.x; i < D; i += blockDim.x)
				xr[i] = __fmul_rn(qk_fp8_qdq1(__fdiv_rn(xr[i], s)), s);
		} else if (kind == QK_ACTQ_INT8_TENSOR) {
			for (int64_t i = threadIdx.x; i < D; i += blockDim.x) {
				float v = __fdiv_rn(xr[i], scale);
				float r = isnan(v) ? 0.0f : __fadd_rn(rintf(v), zp);
				r = r < -128.0f ? -128.0f : r > 127.0f ? 127.0f : r;
				xr[i] = __fmul_rn(__fsub_rn(r, zp), scale);
			}
		} else if (kind == QK_ACTQ_FP8_TENSOR) {
			float inv = __fdiv_rn(1.0f, scale);
			for (int64_t i = threadIdx.x; i < D; i += blockDim.x)
				xr[i] = __fmul_rn(qk_fp8_qdq1(__fmul_rn(xr[i], inv)), scale);
		}
		/* the token kinds reduce again on the next row: keep the block together */
		__syncthreads();
	}
}

int qk_cuda_actq_apply(qk_ctx *ctx, float *x, int64_t T, int64_t D, const qk_actq *q)
{
	const char *op = "activation quantization";
	QC_TRY(qk_cuda_enter(ctx, op));
	if (!q || q->kind == QK_ACTQ_NONE || T == 0)
		return 0;
	if (T < 0 || D <= 0)
		return qc_seterr(QC_EINVAL, "activation quantization: invalid shape");
	if (q->kind < QK_ACTQ_NONE || q->kind > QK_ACTQ_FP8_TENSOR)
		return qc_seterr(QC_EINVAL, "activation quantization: unknown kind %d", (int)q->kind);
	if ((q->kind == QK_ACTQ_INT8_TENSOR || q->kind == QK_ACTQ_FP8_TENSOR) &&
	    (!(q->scale > 0) || !isfinite(q->scale)))
		return qc_seterr(QC_EINVAL,
		                 "activation quantization: input scale %g is not positive and finite",
		                 (double)q->scale);
	if (q->kind == QK_ACTQ_INT8_TENSOR && (q->zero_point < -128 || q->zero_point > 127))
		return qc_seterr(QC_EINVAL, "activation quantization: zero point %d outside int8",
		                 (int)q->zero_point);
	QK_LAUNCH(k_actq, (unsigned)(T < ROW_BLOCKS ? T : ROW_BLOCKS), RT, 0, qk_cu(ctx)->st, x, T, D,
	          (int)q->kind, q->scale, (float)q->zero_point);
	LAUNCH_TRY(op);
	return qk_cuda_sync(ctx, op);
}
