/*
 * qk_ops.c - the non-BLAS kernels on the CPU: RMSNorm, RoPE, attention,
 * SwiGLU, log-softmax/NLL, activation fake-quantization, FP8
 * quantize-dequantize and weight dequantization (kernels.h). Each is a
 * plain loop over rows, split over threads by qk_cpu_parallel; tests
 * compare them with straightforward references. qk_rope_inv_freq and
 * qk_rowstat_init work on host memory only and serve every device.
 */
#include "qk_cpu.h"

#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "qc_err.h"
#include "qc_num.h"

/* ---------------------------------------------------------------- RMSNorm */

typedef struct {
	float *y;
	const float *x, *w;
	int64_t D;
	float eps;
} norm_job;

static void norm_rows(void *p, int64_t b, int64_t e)
{
	norm_job *j = p;
	for (int64_t t = b; t < e; t++) {
		const float *x = j->x + t * j->D;
		float *y = j->y + t * j->D;
		double ss = 0;
		for (int64_t i = 0; i < j->D; i++)
			ss += (double)x[i] * x[i];
		/* transformers: hidden * rsqrt(mean(hidden^2) + eps), then weight * that */
		float r = (float)(1.0 / sqrt(ss / (double)j->D + (double)j->eps));
		for (int64_t i = 0; i < j->D; i++)
			y[i] = j->w[i] * (x[i] * r);
	}
}

int qk_cpu_rmsnorm(qk_ctx *ctx, float *y, const float *x, const float *w, int64_t T, int64_t D,
               float eps)
{
	QC_TRY(qk_cpu_check(ctx, "rmsnorm"));
	if (T < 0 || D <= 0 || !(eps >= 0))
		return qc_seterr(QC_EINVAL, "rmsnorm: invalid shape [%lld, %lld] or eps",
		                 (long long)T, (long long)D);
	norm_job j = { y, x, w, D, eps };
	qk_cpu_parallel(ctx, T, 16, norm_rows, &j);
	return 0;
}

/* ---------------------------------------------------------------- RoPE */

int qk_rope_inv_freq(float *inv_freq, int64_t head_dim, const qk_rope *r)
{
	if (head_dim <= 0 || head_dim % 2)
		return qc_seterr(QC_EINVAL, "rope: head_dim %lld is not a positive even number",
		                 (long long)head_dim);
	if (!(r->theta > 0) || !isfinite(r->theta))
		return qc_seterr(QC_EINVAL, "rope: rope_theta %g is not positive", r->theta);
	if (r->type != QK_ROPE_DEFAULT && (!(r->factor > 0) || !isfinite(r->factor)))
		return qc_seterr(QC_EINVAL, "rope: scaling factor %g is not positive", r->factor);
	if (r->type == QK_ROPE_LLAMA3 &&
	    (!(r->original_max_pos > 0) || !(r->low_freq_factor > 0) ||
	     !(r->high_freq_factor > r->low_freq_factor)))
		return qc_seterr(QC_EINVAL, "rope: llama3 scaling needs original_max_position_embeddings > 0 "
		                 "and high_freq_factor > low_freq_factor > 0");
	int64_t half = head_dim / 2;
	for (int64_t i = 0; i < half; i++) {
		/* default: theta^(-2i/d) */
		double f = 1.0 / pow(r->theta, (double)(2 * i) / (double)head_dim);
		if (r->type == QK_ROPE_LINEAR) {
			f /= r->factor;
		} else if (r->type == QK_ROPE_LLAMA3) {
			double low_wl = r->original_max_pos / r->low_freq_factor;
			double high_wl = r->original_max_pos / r->high_freq_factor;
			double wl = 2.0 * M_PI / f;
			if (wl > low_wl) {
				f = f / r->factor;                       /* low frequency: scaled */
			} else if (wl >= high_wl) {
				/* medium: blend between scaled and unscaled by position in the band */
				double sm = (r->original_max_pos / wl - r->low_freq_factor) /
				            (r->high_freq_factor - r->low_freq_factor);
				f = (1.0 - sm) * f / r->factor + sm * f;
			}                                            /* high frequency: kept */
		}
		inv_freq[i] = (float)f;
	}
	return 0;
}

typedef struct {
	float *x;
	const float *cs;   /* [T, half, 2]: cos, sin */
	int64_t nh, hd;
} rope_job;

static void rope_rows(void *p, int64_t b, int64_t e)
{
	rope_job *j = p;
	int64_t half = j->hd / 2;
	for (int64_t t = b; t < e; t++) {
		const float *cs = j->cs + t * half * 2;
		for (int64_t h = 0; h < j->nh; h++) {
			float *x = j->x + (t * j->nh + h) * j->hd;
			for (int64_t i = 0; i < half; i++) {
				float c = cs[2 * i], s = cs[2 * i + 1];
				float x1 = x[i], x2 = x[i + half];
				x[i] = x1 * c - x2 * s;
				x[i + half] = x2 * c + x1 * s;
			}
		}
	}
}

typedef struct {
	float *cs;
	const float *inv_freq;
	int64_t half, pos0;
} cs_job;

static void cs_rows(void *p, int64_t b, int64_t e)
{
	cs_job *j = p;
	for (int64_t t = b; t < e; t++)
		for (int64_t i = 0; i < j->half; i++) {
			/* the angle is one FP32 product, as transformers and vLLM form it
			 * (inv_freq @ positions in float32); its cos/sin are then exact
			 * to FP32 rounding */
			float a = (float)(j->pos0 + t) * j->inv_freq[i];
			j->cs[(t * j->half + i) * 2] = (float)cos(a);
			j->cs[(t * j->half + i) * 2 + 1] = (float)sin(a);
		}
}

int qk_cpu_rope_apply(qk_ctx *ctx, float *x, int64_t T, int64_t n_heads, int64_t head_dim,
                  int64_t pos0, const float *inv_freq)
{
	QC_TRY(qk_cpu_check(ctx, "rope"));
	if (T < 0 || n_heads <= 0 || head_dim <= 0 || head_dim % 2 || pos0 < 0)
		return qc_seterr(QC_EINVAL, "rope: invalid shape");
	if (T == 0)
		return 0;
	int64_t half = head_dim / 2;
	/* one cos/sin table for all heads of a token */
	float *cs = malloc((size_t)T * (size_t)half * 2 * sizeof *cs);
	if (!cs)
		return qc_seterr(QC_ENOMEM, "rope: cannot allocate %lld angles", (long long)(T * half));
	cs_job cj = { cs, inv_freq, half, pos0 };
	qk_cpu_parallel(ctx, T, 64, cs_rows, &cj);
	rope_job rj = { x, cs, n_heads, head_dim };
	qk_cpu_parallel(ctx, T, 16, rope_rows, &rj);
	free(cs);
	return 0;
}

/* ---------------------------------------------------------------- attention */

/* Query rows per block: the score scratch is ATT_BLOCK x T floats, and the
 * causal triangle wastes at most one block's worth of products per head. */
#define ATT_BLOCK 128

/* softmax of row[lo..n) in place (FP32 exponentials, normalizer in
 * double), zeroing row[0..lo) (keys before a sliding window) and
 * row[n..len) (the masked future positions); with softcap > 0 the scores
 * are capped first, s = softcap * tanh(s / softcap) */
static void softmax_causal(float *row, int64_t lo, int64_t n, int64_t len, float softcap)
{
	if (softcap > 0)
		for (int64_t j = lo; j < n; j++)
			row[j] = tanhf(row[j] / softcap) * softcap;
	float m = row[lo];
	for (int64_t j = lo + 1; j < n; j++)
		if (row[j] > m)
			m = row[j];
	double sum = 0;
	for (int64_t j = lo; j < n; j++) {
		float e = expf(row[j] - m);
		row[j] = e;
		sum += e;
	}
	float inv = (float)(1.0 / sum);
	for (int64_t j = lo; j < n; j++)
		row[j] *= inv;
	for (int64_t j = 0; j < lo; j++)
		row[j] = 0.0f;
	for (int64_t j = n; j < len; j++)
		row[j] = 0.0f;
}

typedef struct {
	float *out;
	const float *q, *k, *v;
	int64_t T, past, nh, nkv, hd;   /* T query rows after `past` cached keys */
	qk_attn a;
	int failed;    /* a worker could not allocate its scores */
} att_job;

/* heads [h0, h1) of one sequence, each head by one thread with
 * single-threaded GEMMs: the same arithmetic whatever the thread count */
static void att_heads(void *p, int64_t h0, int64_t h1)
{
	att_job *j = p;
	int64_t T = j->T, P = j->past, hd = j->hd, qs = j->nh * hd, ks = j->nkv * hd;
	int64_t group = j->nh / j->nkv, W = j->a.window;
	int64_t bm = T < ATT_BLOCK ? T : ATT_BLOCK;
	float *S = malloc((size_t)bm * (size_t)(P + T) * sizeof *S);
	if (!S) {
		j->failed = 1;
		return;
	}
	for (int64_t h = h0; h < h1; h++) {
		int64_t g = h / group;
		for (int64_t i0 = 0; i0 < T; i0 += bm) {
			int64_t rows = T - i0 < bm ? T - i0 : bm;
			/* causal: no row of the block sees past its end */
			int64_t keys = P + i0 + rows;
			/* S[rows, keys] = scale * Q[i0.., h] K[0..keys, g]^T */
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)rows, (blasint)keys,
			            (blasint)hd, j->a.scale, j->q + i0 * qs + h * hd, (blasint)qs,
			            j->k + g * hd, (blasint)ks, 0.0f, S, (blasint)keys);
			for (int64_t r = 0; r < rows; r++) {
				int64_t n = P + i0 + r + 1;   /* keys 0 .. position */
				int64_t lo = W > 0 && n > W ? n - W : 0;
				softmax_causal(S + r * keys, lo, n, keys, j->a.softcap);
			}
			/* O[i0.., h] = P[rows, keys] V[0..keys, g] */
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)rows, (blasint)hd,
			            (blasint)keys, 1.0f, S, (blasint)keys, j->v + g * hd, (blasint)ks, 0.0f,
			            j->out + i0 * qs + h * hd, (blasint)qs);
		}
	}
	free(S);
}

int qk_cpu_attention_ex(qk_ctx *ctx, float *out, const float *q, const float *k, const float *v,
                        int64_t T, int64_t past, int64_t n_heads, int64_t n_kv, int64_t head_dim,
                        const qk_attn *a)
{
	QC_TRY(qk_cpu_check(ctx, "attention"));
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
	att_job j = { out, q, k, v, T, past, n_heads, n_kv, head_dim, *a, 0 };
	/* The per-head products are small; splitting heads over threads beats
	 * splitting each product, so OpenBLAS runs single-threaded inside the
	 * workers (the pattern its FAQ prescribes for threaded callers); the
	 * next BLAS call sets its own context's count again. */
	qk_cpu_blas_threads(1);
	qk_cpu_parallel(ctx, n_heads, 1, att_heads, &j);
	if (j.failed)
		return qc_seterr(QC_ENOMEM, "attention: cannot allocate scores [%d, %lld]", ATT_BLOCK,
		                 (long long)(T + past));
	return 0;
}

int qk_cpu_attention_kv(qk_ctx *ctx, float *out, const float *q, const float *k, const float *v,
                        int64_t T, int64_t past, int64_t n_heads, int64_t n_kv, int64_t head_dim,
                        float scale)
{
	qk_attn a = { scale, 0.0f, 0 };
	return qk_cpu_attention_ex(ctx, out, q, k, v, T, past, n_heads, n_kv, head_dim, &a);
}

int qk_cpu_attention(qk_ctx *ctx, float *out, const float *q, const float *k, const float *v,
                     int64_t T, int64_t n_heads, int64_t n_kv, int64_t head_dim, float scale)
{
	return qk_cpu_attention_kv(ctx, out, q, k, v, T, 0, n_heads, n_kv, head_dim, scale);
}

/* ---------------------------------------------------------------- SwiGLU, GeGLU */

typedef struct {
	float *out;
	const float *g, *u;
} glu_job;

static void glu_range(void *p, int64_t b, int64_t e)
{
	glu_job *j = p;
	for (int64_t i = b; i < e; i++) {
		float g = j->g[i];
		j->out[i] = g / (1.0f + expf(-g)) * j->u[i];
	}
}

int qk_cpu_swiglu(qk_ctx *ctx, float *out, const float *gate, const float *up, size_t n)
{
	QC_TRY(qk_cpu_check(ctx, "swiglu"));
	glu_job j = { out, gate, up };
	qk_cpu_parallel(ctx, (int64_t)n, 1 << 14, glu_range, &j);
	return 0;
}

/* PyTorch's tanh GELU (aten GeluKernel, approximate "tanh"): kBeta =
 * sqrt(2) * (2 / sqrt(pi)) / 2 = sqrt(2 / pi), kKappa = 0.044715, in FP32 */
static void geglu_range(void *p, int64_t b, int64_t e)
{
	glu_job *j = p;
	const float beta = 0.7978845608028654f, kappa = 0.044715f;
	for (int64_t i = b; i < e; i++) {
		float g = j->g[i];
		float g3 = g * g * g;
		float inner = beta * (g + kappa * g3);
		j->out[i] = 0.5f * g * (1.0f + tanhf(inner)) * j->u[i];
	}
}

int qk_cpu_geglu(qk_ctx *ctx, float *out, const float *gate, const float *up, size_t n)
{
	QC_TRY(qk_cpu_check(ctx, "geglu"));
	glu_job j = { out, gate, up };
	qk_cpu_parallel(ctx, (int64_t)n, 1 << 14, geglu_range, &j);
	return 0;
}

/* ---------------------------------------------------------------- soft-capping */

typedef struct {
	float *x;
	float cap;
} cap_job;

static void cap_range(void *p, int64_t b, int64_t e)
{
	cap_job *j = p;
	for (int64_t i = b; i < e; i++)
		j->x[i] = tanhf(j->x[i] / j->cap) * j->cap;
}

int qk_cpu_softcap(qk_ctx *ctx, float *x, size_t n, float cap)
{
	QC_TRY(qk_cpu_check(ctx, "softcap"));
	if (!(cap > 0) || !isfinite(cap))
		return qc_seterr(QC_EINVAL, "softcap: the cap %g is not a positive number", (double)cap);
	cap_job j = { x, cap };
	qk_cpu_parallel(ctx, (int64_t)n, 1 << 14, cap_range, &j);
	return 0;
}

/* ---------------------------------------------------------------- log-softmax, NLL */

static double row_lse(const float *x, int64_t V)
{
	float m = x[0];
	for (int64_t j = 1; j < V; j++)
		if (x[j] > m)
			m = x[j];
	if (isinf(m))     /* all -inf, or a +inf logit: the normalizer is m itself */
		return m;
	double s = 0;
	for (int64_t j = 0; j < V; j++)
		s += exp((double)x[j] - (double)m);
	return (double)m + log(s);
}

typedef struct {
	float *y;
	const float *x;
	double *nll;
	const int32_t *target;
	int64_t V;
} lsm_job;

static void lsm_rows(void *p, int64_t b, int64_t e)
{
	lsm_job *j = p;
	for (int64_t t = b; t < e; t++) {
		const float *x = j->x + t * j->V;
		double lse = row_lse(x, j->V);
		if (j->nll) {
			j->nll[t] = lse - (double)x[j->target[t]];
		} else {
			float *y = j->y + t * j->V;
			for (int64_t i = 0; i < j->V; i++)
				y[i] = (float)((double)x[i] - lse);
		}
	}
}

int qk_cpu_log_softmax(qk_ctx *ctx, float *y, const float *x, int64_t T, int64_t V)
{
	QC_TRY(qk_cpu_check(ctx, "log_softmax"));
	if (T < 0 || V <= 0)
		return qc_seterr(QC_EINVAL, "log_softmax: invalid shape");
	lsm_job j = { y, x, NULL, NULL, V };
	qk_cpu_parallel(ctx, T, 1, lsm_rows, &j);
	return 0;
}

int qk_cpu_nll(qk_ctx *ctx, double *nll, const float *x, const int32_t *target, int64_t T, int64_t V)
{
	QC_TRY(qk_cpu_check(ctx, "nll"));
	if (T < 0 || V <= 0)
		return qc_seterr(QC_EINVAL, "nll: invalid shape");
	for (int64_t t = 0; t < T; t++)
		if (target[t] < 0 || target[t] >= V)
			return qc_seterr(QC_EINVAL, "nll: target %d of position %lld outside the vocabulary of %lld",
			                 (int)target[t], (long long)t, (long long)V);
	lsm_job j = { NULL, x, nll, target, V };
	qk_cpu_parallel(ctx, T, 1, lsm_rows, &j);
	return 0;
}

void qk_rowstat_init(qk_rowstat *st, int64_t T)
{
	for (int64_t t = 0; t < T; t++)
		st[t] = (qk_rowstat){ -INFINITY, 0.0, NAN, 0.0, -1 };
}

typedef struct {
	qk_rowstat *st;
	const float *z, *z2;
	int64_t ldz, n, col0;
	const int32_t *target;
} fold_job;

static void fold_rows(void *p, int64_t b, int64_t e)
{
	fold_job *j = p;
	for (int64_t t = b; t < e; t++) {
		qk_rowstat *s = &j->st[t];
		const float *z = j->z + t * j->ldz, *z2 = j->z2 ? j->z2 + t * j->ldz : NULL;
		int64_t bi = 0;
		for (int64_t i = 1; i < j->n; i++)
			if (z[i] > z[bi])
				bi = i;
		double bm = z[bi];
		if (s->arg < 0 || bm > s->max) {
			/* the first block, or a new maximum: rescale what was summed */
			if (s->arg >= 0) {
				double f = exp(s->max - bm);
				s->sum *= f;
				s->cross *= f;
			}
			s->max = bm;
			s->arg = j->col0 + bi;
		}
		double m = s->max, sum = 0, cross = 0;
		if (isinf(m) && m < 0) {
			/* every logit so far is -inf: nothing to add */
		} else if (z2) {
			for (int64_t i = 0; i < j->n; i++) {
				double e1 = exp((double)z[i] - m);
				sum += e1;
				cross += e1 * ((double)z[i] - (double)z2[i]);
			}
		} else {
			for (int64_t i = 0; i < j->n; i++)
				sum += exp((double)z[i] - m);
		}
		s->sum += sum;
		s->cross += cross;
		if (j->target) {
			int64_t c = (int64_t)j->target[t] - j->col0;
			if (c >= 0 && c < j->n)
				s->target = z[c];
		}
	}
}

int qk_cpu_softmax_fold(qk_ctx *ctx, qk_rowstat *st, const float *z, const float *z2, int64_t ldz,
                    int64_t T, int64_t n, int64_t col0, const int32_t *target)
{
	QC_TRY(qk_cpu_check(ctx, "softmax fold"));
	if (T < 0 || n <= 0 || ldz < n || col0 < 0)
		return qc_seterr(QC_EINVAL, "softmax fold: invalid shape");
	fold_job j = { st, z, z2, ldz, n, col0, target };
	qk_cpu_parallel(ctx, T, 4, fold_rows, &j);
	return 0;
}

/* ---------------------------------------------------------------- activation quantization */

/* round half to even, then saturate to int8 (vLLM: cvt.rni.sat.s8.f32);
 * NaN gives 0 as the PTX instruction does */
static float rne_sat_i8(float v)
{
	if (isnan(v))
		return 0.0f;
	float r = nearbyintf(v);
	return r < -128.0f ? -128.0f : r > 127.0f ? 127.0f : r;
}

static float fp8_qdq(float v)
{
	/* clamp before the cast (the cast saturates anyway, NaN stays NaN) */
	if (v > QC_FP8_E4M3_MAX)
		v = QC_FP8_E4M3_MAX;
	else if (v < -QC_FP8_E4M3_MAX)
		v = -QC_FP8_E4M3_MAX;
	return qc_fp8e4m3_to_f32(qc_f32_to_fp8e4m3(v));
}

/* x[n] = e4m3(x * (1 / s)) * s: the one per-tensor FP8 quantize-dequantize,
 * for static FP8 inputs (QK_ACTQ_FP8_TENSOR) and qk_fp8_qdq alike */
static void fp8_qdq_scaled(float *x, int64_t n, float s)
{
	float inv = 1.0f / s;
	for (int64_t i = 0; i < n; i++)
		x[i] = fp8_qdq(x[i] * inv) * s;
}

typedef struct {
	float *x;
	int64_t D;
	qk_actq q;
} actq_job;

static void actq_rows(void *p, int64_t b, int64_t e)
{
	actq_job *j = p;
	const qk_actq *q = &j->q;
	for (int64_t t = b; t < e; t++) {
		float *x = j->x + t * j->D;
		float amax = 0.0f;
		if (q->kind == QK_ACTQ_INT8_TOKEN || q->kind == QK_ACTQ_FP8_TOKEN)
			for (int64_t i = 0; i < j->D; i++) {
				float a = fabsf(x[i]);
				if (a > amax || isnan(a))
					amax = a;
			}
		switch (q->kind) {
		case QK_ACTQ_INT8_TOKEN: {
			float s = amax / 127.0f, inv = 127.0f / amax;
			for (int64_t i = 0; i < j->D; i++)
				x[i] = amax == 0.0f ? 0.0f : rne_sat_i8(x[i] * inv) * s;
			break;
		}
		case QK_ACTQ_FP8_TOKEN: {
			float s = amax / QC_FP8_E4M3_MAX;
			const float min_s = 1.0f / (QC_FP8_E4M3_MAX * 512.0f);
			if (s < min_s)
				s = min_s;
			for (int64_t i = 0; i < j->D; i++)
				x[i] = fp8_qdq(x[i] / s) * s;
			break;
		}
		case QK_ACTQ_INT8_TENSOR: {
			float s = q->scale, z = (float)q->zero_point;
			for (int64_t i = 0; i < j->D; i++) {
				float r = isnan(x[i] / s) ? 0.0f : nearbyintf(x[i] / s) + z;
				r = r < -128.0f ? -128.0f : r > 127.0f ? 127.0f : r;
				x[i] = (r - z) * s;
			}
			break;
		}
		case QK_ACTQ_FP8_TENSOR:
			fp8_qdq_scaled(x, j->D, q->scale);
			break;
		case QK_ACTQ_NONE:
			break;
		}
	}
}

int qk_cpu_actq_apply(qk_ctx *ctx, float *x, int64_t T, int64_t D, const qk_actq *q)
{
	QC_TRY(qk_cpu_check(ctx, "activation quantization"));
	if (!q || q->kind == QK_ACTQ_NONE || T == 0)
		return 0;
	if (T < 0 || D <= 0)
		return qc_seterr(QC_EINVAL, "activation quantization: invalid shape");
	if (q->kind < QK_ACTQ_NONE || q->kind > QK_ACTQ_FP8_TENSOR)
		return qc_seterr(QC_EINVAL, "activation quantization: unknown kind %d", (int)q->kind);
	if ((q->kind == QK_ACTQ_INT8_TENSOR || q->kind == QK_ACTQ_FP8_TENSOR) &&
	    (!(q->scale > 0) || !isfinite(q->scale)))
		return qc_seterr(QC_EINVAL, "activation quantization: input scale %g is not positive and finite",
		                 (double)q->scale);
	if (q->kind == QK_ACTQ_INT8_TENSOR && (q->zero_point < -128 || q->zero_point > 127))
		return qc_seterr(QC_EINVAL, "activation quantization: zero point %d outside int8",
		                 (int)q->zero_point);
	actq_job j = { x, D, *q };
	qk_cpu_parallel(ctx, T, 8, actq_rows, &j);
	return 0;
}

typedef struct {
	float *x;
	float s;
} qdq_job;

static void qdq_range(void *p, int64_t b, int64_t e)
{
	qdq_job *j = p;
	fp8_qdq_scaled(j->x + b, e - b, j->s);
}

int qk_cpu_fp8_qdq(qk_ctx *ctx, float *x, size_t n, float scale)
{
	QC_TRY(qk_cpu_check(ctx, "fp8 quantize-dequantize"));
	if (!(scale > 0) || !isfinite(scale))
		return qc_seterr(QC_EINVAL, "fp8 quantize-dequantize: scale %g is not positive and finite",
		                 (double)scale);
	qdq_job j = { x, scale };
	qk_cpu_parallel(ctx, (int64_t)n, 1 << 14, qdq_range, &j);
	return 0;
}

/* ---------------------------------------------------------------- dequantization */

typedef struct {
	float *w;
	const void *codes;
	int fp8;
	int64_t cols;
	const float *scale, *zp;
	int64_t srs, group;
	float lut[256];
} dq_job;

static void dq_rows(void *p, int64_t b, int64_t e)
{
	dq_job *j = p;
	for (int64_t r = b; r < e; r++) {
		const float *s = j->scale + r * j->srs;
		const float *z = j->zp ? j->zp + r * j->srs : NULL;
		float *w = j->w + r * j->cols;
		const int8_t *ci = (const int8_t *)j->codes + r * j->cols;
		const uint8_t *cf = (const uint8_t *)j->codes + r * j->cols;
		for (int64_t c = 0; c < j->cols; c++) {
			int64_t g = c / j->group;
			float q = j->fp8 ? j->lut[cf[c]] : (float)ci[c];
			w[c] = (z ? q - z[g] : q) * s[g];
		}
	}
}

int qk_cpu_dequant(qk_ctx *ctx, float *w, const void *codes, qc_dtype code_dt, int64_t rows,
               int64_t cols, const float *scale, const float *zero_point, int64_t scale_rs,
               int64_t group)
{
	QC_TRY(qk_cpu_check(ctx, "dequantize"));
	if (code_dt != QC_DT_I8 && code_dt != QC_DT_F8_E4M3)
		return qc_seterr(QC_EUNSUPPORTED, "cannot dequantize %s codes", qc_dtype_name(code_dt));
	if (rows < 0 || cols <= 0 || group <= 0 || scale_rs < 0)
		return qc_seterr(QC_EINVAL, "dequantize: invalid shape or group");
	dq_job *j = malloc(sizeof *j);
	if (!j)
		return qc_seterr(QC_ENOMEM, "dequantize: out of memory");
	*j = (dq_job){ w, codes, code_dt == QC_DT_F8_E4M3, cols, scale, zero_point, scale_rs, group, { 0 } };
	if (j->fp8)
		for (int i = 0; i < 256; i++)
			j->lut[i] = qc_fp8e4m3_to_f32((uint8_t)i);
	qk_cpu_parallel(ctx, rows, 16, dq_rows, j);
	free(j);
	return 0;
}
