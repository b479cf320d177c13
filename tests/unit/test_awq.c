/* test_awq.c - AWQ (qc_awq.h, kernels.h "AWQ support") against a plain
 * reference written here from the published algorithm (the AWQ paper and
 * its authors' code: auto_scale_block, auto_clip, pseudo_quantize_tensor),
 * with plain loops in double and nothing shared with libcommon's model,
 * kernels or method:
 *
 *  - the kernel operations (quantizer, clipping search, column sums)
 *    against element-by-element loops;
 *  - a whole run of the method through the run driver on small synthetic
 *    models (with and without grouped-query attention, duo scaling off and
 *    on), checked point by point against the reference, which walks the
 *    same tokens through the same layers in true-sequential order: the
 *    ratio each point chose, the losses at r = 0, at the chosen r and
 *    without scaling, and each Linear's err_out, err_rtn and err_w. */
#include "tutil.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "qc_awq.h"
#include "qc_ckpt.h"
#include "qc_config.h"
#include "qc_err.h"
#include "qc_log.h"
#include "qc_num.h"
#include "qc_rng.h"
#include "qc_synth.h"

/* ---------------------------------------------------------------- the quantizer, plainly */

typedef struct rq {
	int bits, zp;
	int64_t G;
	qc_dtype dt;
} rq;

/* The authors' pseudo-quantizer on one group v[n] (already scaled and
 * clipped), the scale rounded to the stored dtype: deq, and the signed
 * code, scale and zero point compressed-tensors stores. */
static void rq_group(const rq *q, const float *v, int64_t n, float *deq, int8_t *code,
                     float *scale, float *zero)
{
	float lo, hi, off, s, z = 0;
	if (q->zp) {
		lo = 0;
		hi = (float)((1 << q->bits) - 1);
		off = (float)(1 << (q->bits - 1));
		float mx = v[0], mn = v[0];
		for (int64_t j = 1; j < n; j++) {
			mx = fmaxf(mx, v[j]);
			mn = fminf(mn, v[j]);
		}
		float d = mx - mn;
		if (d < 1e-5f)
			d = 1e-5f;
		s = qc_round_to(d / hi, q->dt);
		z = -rintf(mn / s);
		z = fminf(fmaxf(z, lo), hi);
	} else {
		lo = (float)-(1 << (q->bits - 1));
		hi = (float)((1 << (q->bits - 1)) - 1);
		off = 0;
		float am = 0;
		for (int64_t j = 0; j < n; j++)
			am = fmaxf(am, fabsf(v[j]));
		if (am < 1e-5f)
			am = 1e-5f;
		s = qc_round_to(am / hi, q->dt);
	}
	for (int64_t j = 0; j < n; j++) {
		float t = fminf(fmaxf(rintf(v[j] / s) + z, lo), hi);
		deq[j] = (t - z) * s;
		if (code)
			code[j] = (int8_t)(t - off);
	}
	if (scale)
		*scale = s;
	if (zero)
		*zero = z - off;
}

/* out = Q(clamp(W s, +-clip)) / s row by row, group by group */
static void rq_matrix(const rq *q, const float *W, int64_t rows, int64_t cols, const float *s,
                      const float *clip, float *out, int8_t *codes, float *scales, float *zeros)
{
	int64_t G = q->G < cols ? q->G : cols, ng = (cols + G - 1) / G;
	float *v = malloc((size_t)cols * sizeof *v), *d = malloc((size_t)cols * sizeof *d);
	for (int64_t r = 0; r < rows; r++) {
		for (int64_t j = 0; j < cols; j++)
			v[j] = s ? W[r * cols + j] * s[j] : W[r * cols + j];
		for (int64_t g = 0; g < ng; g++) {
			int64_t c0 = g * G, n = cols - c0 < G ? cols - c0 : G;
			if (clip) {
				float m = clip[r * ng + g];
				for (int64_t j = c0; j < c0 + n; j++)
					v[j] = v[j] < -m ? -m : v[j] > m ? m : v[j];
			}
			rq_group(q, v + c0, n, d + c0, codes ? codes + r * cols + c0 : NULL,
			         scales ? scales + r * ng + g : NULL, zeros ? zeros + r * ng + g : NULL);
		}
		for (int64_t j = 0; j < cols; j++)
			out[r * cols + j] = s ? d[j] / s[j] : d[j];
	}
	free(v);
	free(d);
}

/* auto_clip: per row and group, the shrink of max |w| with the least mean
 * squared error of the group's partial products over X [n, cols]; also
 * the reference's own errors of every step (err [rows, ng, steps]) */
static void rq_clip(const rq *q, const float *W, int64_t rows, int64_t cols, const float *X,
                    int64_t n, int steps, int grid, float *clip, double *err)
{
	int64_t G = q->G < cols ? q->G : cols, ng = (cols + G - 1) / G;
	float *v = malloc((size_t)G * sizeof *v), *d = malloc((size_t)G * sizeof *d);
	for (int64_t r = 0; r < rows; r++)
		for (int64_t g = 0; g < ng; g++) {
			int64_t c0 = g * G, nv = cols - c0 < G ? cols - c0 : G;
			const float *w = W + r * cols + c0;
			float m0 = 0;
			for (int64_t j = 0; j < nv; j++)
				m0 = fmaxf(m0, fabsf(w[j]));
			double best = 1e9;
			float bm = m0;
			for (int i = 0; i < steps; i++) {
				float m = m0 * (float)(1.0 - (double)i / grid);
				for (int64_t j = 0; j < nv; j++)
					v[j] = w[j] < -m ? -m : w[j] > m ? m : w[j];
				rq_group(q, v, nv, d, NULL, NULL, NULL);
				double e = 0;
				for (int64_t t = 0; t < n; t++) {
					double dot = 0;
					for (int64_t j = 0; j < nv; j++)
						dot += (double)X[t * cols + c0 + j] * ((double)d[j] - w[j]);
					e += dot * dot;
				}
				e /= (double)n;
				if (err)
					err[(r * ng + g) * steps + i] = e;
				if (e < best) {
					best = e;
					bm = m;
				}
			}
			clip[r * ng + g] = bm;
		}
	free(v);
	free(d);
}

/* ---------------------------------------------------------------- kernel operations */

static float *dev(qk_ctx *kc, const float *h, size_t n)
{
	float *d = qk_alloc(kc, n * sizeof *d);
	assert_non_null(d);
	tu_assert_rc(qk_upload(kc, d, h, n * sizeof *d), 0);
	return d;
}

static void fill(float *x, size_t n, uint64_t seed, double scale)
{
	qc_rng r;
	qc_rng_seed(&r, seed);
	for (size_t i = 0; i < n; i++)
		x[i] = (float)(qc_rng_normal(&r) * scale);
}

static void test_qdq(void **state)
{
	(void)state;
	qk_ctx *kc;
	tu_assert_rc(qk_ctx_new(&kc, QK_DEVICE_CPU, 2), 0);
	enum { R = 37, C = 200 };
	float W[R * C], s[C], clip[R * 7], out[R * C], ref[R * C];
	fill(W, R * C, 1, 1.0);
	W[5] = 40; /* an outlier */
	/* constant rows: a range below the 1e-5 floor, values / scale beyond 2^22 */
	for (int j = 0; j < C; j++) {
		W[3 * C + j] = 100;
		W[4 * C + j] = -3e4f;
		W[6 * C + j] = 0;
	}
	for (int j = 0; j < C; j++)
		s[j] = 0.25f + (float)(j % 13) / 5;
	for (int bits = 4; bits <= 8; bits += 4)
		for (int zp = 0; zp <= 1; zp++)
			for (int G = 32; G <= 256; G *= 8) {  /* 32: 7 groups, the last partial; 256: one */
				rq q = { bits, zp, G, QC_DT_BF16 };
				qk_awqspec ks = { bits, zp, G, QC_DT_BF16 };
				int64_t ng = (C + (G < C ? G : C) - 1) / (G < C ? G : C);
				for (int64_t i = 0; i < R * ng; i++)
					clip[i] = 0.5f + (float)(i % 5) * 0.3f;
				int8_t codes[R * C], rc_[R * C];
				float sc[R * 7], rs[R * 7], zs[R * 7], rz[R * 7];
				float *dW = dev(kc, W, R * C), *dO = qk_alloc(kc, sizeof out);
				for (int v = 0; v < 3; v++) {
					const float *sp = v == 1 ? NULL : s, *cp = v == 2 ? clip : NULL;
					tu_assert_rc(qk_awq_qdq(kc, &ks, dO, dW, R, C, sp, cp, codes, sc,
					                        zp ? zs : NULL), 0);
					tu_assert_rc(qk_download(kc, out, dO, sizeof out), 0);
					rq_matrix(&q, W, R, C, sp, cp, ref, rc_, rs, rz);
					assert_memory_equal(out, ref, sizeof out);
					assert_memory_equal(codes, rc_, sizeof codes);
					assert_memory_equal(sc, rs, (size_t)(R * ng) * sizeof *sc);
					if (zp)
						assert_memory_equal(zs, rz, (size_t)(R * ng) * sizeof *zs);
				}
				/* in place */
				tu_assert_rc(qk_awq_qdq(kc, &ks, dW, dW, R, C, s, NULL, NULL, NULL, NULL), 0);
				tu_assert_rc(qk_download(kc, out, dW, sizeof out), 0);
				rq_matrix(&q, W, R, C, s, NULL, ref, NULL, NULL, NULL);
				assert_memory_equal(out, ref, sizeof out);
				qk_free(kc, dW);
				qk_free(kc, dO);
			}
	qk_awqspec bad = { 3, 1, 32, QC_DT_BF16 };
	float *d = qk_alloc(kc, sizeof out);
	tu_assert_rc(qk_awq_qdq(kc, &bad, d, d, R, C, NULL, NULL, NULL, NULL, NULL), QC_EINVAL);
	qk_free(kc, d);
	qk_ctx_free(kc);
}

static void test_clip(void **state)
{
	(void)state;
	qk_ctx *kc;
	enum { R = 21, C = 96, NT = 50, STEPS = 10 };
	float W[R * C], X[NT * C];
	fill(W, R * C, 2, 1.0);
	fill(X, NT * C, 3, 1.0);
	for (int t = 0; t < NT; t++)
		X[t * C + 7] *= 30; /* an outlier channel */
	for (int threads = 1; threads <= 3; threads += 2) {
		tu_assert_rc(qk_ctx_new(&kc, QK_DEVICE_CPU, threads), 0);
		for (int zp = 0; zp <= 1; zp++) {
			rq q = { 4, zp, 32, QC_DT_BF16 };
			qk_awqspec ks = { 4, zp, 32, QC_DT_BF16 };
			float clip[R * 3], ref[R * 3];
			int32_t shrink[R * 3];
			double err[R * 3 * STEPS];
			float *dW = dev(kc, W, R * C), *dX = dev(kc, X, NT * C);
			tu_assert_rc(qk_awq_clip(kc, &ks, dW, R, C, dX, NT, STEPS, 20, clip, shrink), 0);
			rq_clip(&q, W, R, C, X, NT, STEPS, 20, ref, err);
			int moved = 0;
			for (int i = 0; i < R * 3; i++) {
				/* the kernel's choice is the reference's best, or ties it within
				 * the difference of float and double sums */
				double best = INFINITY;
				for (int k = 0; k < STEPS; k++)
					best = fmin(best, err[i * STEPS + k]);
				assert_true(err[i * STEPS + shrink[i]] <= best * (1 + 1e-5) + 1e-12);
				int64_t r = i / 3, g = i % 3;
				float m0 = 0;
				for (int j = 0; j < 32; j++)
					m0 = fmaxf(m0, fabsf(W[r * C + g * 32 + j]));
				assert_true(clip[i] == m0 * (float)(1.0 - shrink[i] / 20.0));
				moved += shrink[i] > 0;
				assert_true(clip[i] == ref[i] || err[i * STEPS + shrink[i]] <= best * (1 + 1e-5));
			}
			assert_true(moved > 0 && moved < R * 3);
			qk_free(kc, dW);
			qk_free(kc, dX);
		}
		qk_ctx_free(kc);
	}
}

static void test_sums(void **state)
{
	(void)state;
	qk_ctx *kc;
	tu_assert_rc(qk_ctx_new(&kc, QK_DEVICE_CPU, 3), 0);
	enum { R = 29, C = 150 };
	float W[R * C];
	fill(W, R * C, 4, 2.0);
	float *dW = dev(kc, W, R * C);
	double a[C], b[C], ra[C], rb[C];
	for (int j = 0; j < C; j++)
		a[j] = b[j] = ra[j] = rb[j] = j; /* both add to what is there */
	tu_assert_rc(qk_col_abssum(kc, dW, R, C, a), 0);
	tu_assert_rc(qk_awq_wmean(kc, dW, R, C, 64, b), 0);
	for (int r = 0; r < R; r++) {
		for (int j = 0; j < C; j++) {
			float gm = 0;
			for (int k = j / 64 * 64; k < (j / 64 + 1) * 64 && k < C; k++)
				gm = fmaxf(gm, fabsf(W[r * C + k]));
			ra[j] += fabs((double)W[r * C + j]);
			rb[j] += (double)(fabsf(W[r * C + j]) / (gm + 1e-6f));
		}
	}
	assert_memory_equal(a, ra, sizeof a);
	assert_memory_equal(b, rb, sizeof b);
	qk_free(kc, dW);
	qk_ctx_free(kc);
}

static void test_scales(void **state)
{
	(void)state;
	double xm[6] = { 0, 1e-3, 0.5, 3, 90, 7 }, wm[6] = { 0.2, 0.9, 0.5, 0.01, 0.3, 1 };
	float s[6];
	for (int duo = 0; duo <= 1; duo++)
		for (int i = 0; i < 20; i++) {
			double r = i / 20.0, v[6], mx = 0, mn = INFINITY;
			for (int j = 0; j < 6; j++) {
				v[j] = duo ? pow(xm[j], r) / (pow(wm[j], 1 - r) + 1e-4) : pow(xm[j], r);
				v[j] = fmax(v[j], 1e-4);
				mx = fmax(mx, v[j]);
				mn = fmin(mn, v[j]);
			}
			qc_awq_scales(xm, wm, 6, r, duo, 0, s);
			for (int j = 0; j < 6; j++)
				assert_true(s[j] == (float)(v[j] / sqrt(mx * mn)));
			qc_awq_scales(xm, wm, 6, r, duo, 1, s);
			for (int j = 0; j < 6; j++)
				assert_true(s[j] == (float)ldexp(1, (int)lround(log2(v[j] / sqrt(mx * mn)))));
		}
}

/* ---------------------------------------------------------------- a reference run */

enum { NSEQ = 6, SEQ_MAX = 20 };

typedef struct rmodel {
	qc_config cfg;
	int64_t H, I, nh, nkv, hd, qd, kvd, L, V;
	double eps;
	float inv_freq[64];
	/* tokens */
	int32_t ids[NSEQ * SEQ_MAX];
	int64_t lens[NSEQ], off[NSEQ + 1], T;
	/* samples, as qc_awq.h defines them */
	int64_t m, seq[NSEQ], N, cstep, Nc;
	/* method */
	rq q;
	int grid, duo;
} rmodel;

/* the sampled rows of X [T, cols] into Xs [N, cols]; the clip rows into Xc */
static void gather(const rmodel *M, const float *X, int64_t cols, float *Xs, float *Xc)
{
	int64_t o = 0;
	for (int64_t k = 0; k < M->m; k++) {
		int64_t i = M->seq[k];
		memcpy(Xs + o * cols, X + M->off[i] * cols, (size_t)(M->lens[i] * cols) * sizeof *X);
		o += M->lens[i];
	}
	for (int64_t t = 0, c = 0; t < M->T; t += M->cstep, c++)
		memcpy(Xc + c * cols, X + t * cols, (size_t)cols * sizeof *X);
}

/* Y [n, out] = X [n, in] W^T, in double, stored as float */
static void matmul(const float *X, int64_t n, int64_t in, const float *W, int64_t out, float *Y)
{
	for (int64_t t = 0; t < n; t++)
		for (int64_t o = 0; o < out; o++) {
			double a = 0;
			for (int64_t j = 0; j < in; j++)
				a += (double)X[t * in + j] * W[o * in + j];
			Y[t * out + o] = (float)a;
		}
}

static void rmsnorm(const rmodel *M, const float *x, const float *g, int64_t T, float *y)
{
	for (int64_t t = 0; t < T; t++) {
		double ss = 0;
		for (int64_t j = 0; j < M->H; j++)
			ss += (double)x[t * M->H + j] * x[t * M->H + j];
		double inv = 1.0 / sqrt(ss / M->H + M->eps);
		for (int64_t j = 0; j < M->H; j++)
			y[t * M->H + j] = (float)((double)g[j] * (x[t * M->H + j] * inv));
	}
}

/* rotate_half RoPE on x [n, heads * hd] at positions 0..n-1 */
static void rope(const rmodel *M, float *x, int64_t n, int64_t heads)
{
	int64_t h2 = M->hd / 2;
	for (int64_t t = 0; t < n; t++)
		for (int64_t h = 0; h < heads; h++) {
			float *v = x + t * heads * M->hd + h * M->hd;
			for (int64_t i = 0; i < h2; i++) {
				float ang = (float)t * M->inv_freq[i];
				double c = cos((double)ang), s = sin((double)ang);
				double a = v[i], b = v[i + h2];
				v[i] = (float)(a * c - b * s);
				v[i + h2] = (float)(b * c + a * s);
			}
		}
}

/* a [n, qd] = causal attention of one sequence h [n, H] through q, k, v */
static void attention(const rmodel *M, const float *h, int64_t n, const float *Wq,
                      const float *Wk, const float *Wv, float *a)
{
	float *q = malloc((size_t)(n * M->qd) * sizeof *q), *k = malloc((size_t)(n * M->kvd) * 4);
	float *v = malloc((size_t)(n * M->kvd) * sizeof *v);
	double *p = malloc((size_t)n * sizeof *p);
	matmul(h, n, M->H, Wq, M->qd, q);
	matmul(h, n, M->H, Wk, M->kvd, k);
	matmul(h, n, M->H, Wv, M->kvd, v);
	rope(M, q, n, M->nh);
	rope(M, k, n, M->nkv);
	for (int64_t hh = 0; hh < M->nh; hh++) {
		int64_t kh = hh / (M->nh / M->nkv);
		for (int64_t t = 0; t < n; t++) {
			double mx = -INFINITY, sum = 0;
			for (int64_t u = 0; u <= t; u++) {
				double d = 0;
				for (int64_t i = 0; i < M->hd; i++)
					d += (double)q[t * M->qd + hh * M->hd + i] * k[u * M->kvd + kh * M->hd + i];
				p[u] = d / sqrt((double)M->hd);
				mx = fmax(mx, p[u]);
			}
			for (int64_t u = 0; u <= t; u++)
				sum += p[u] = exp(p[u] - mx);
			for (int64_t i = 0; i < M->hd; i++) {
				double o = 0;
				for (int64_t u = 0; u <= t; u++)
					o += p[u] * v[u * M->kvd + kh * M->hd + i];
				a[t * M->qd + hh * M->hd + i] = (float)(o / sum);
			}
		}
	}
	free(q);
	free(k);
	free(v);
	free(p);
}

/* attention over every sequence of a packed set */
static void attention_all(const rmodel *M, const float *h, const int64_t *lens, int64_t nseq,
                          const float *Wq, const float *Wk, const float *Wv, float *a)
{
	for (int64_t s = 0, o = 0; s < nseq; o += lens[s++])
		attention(M, h + o * M->H, lens[s], Wq, Wk, Wv, a + o * M->qd);
}

/* act [n, I] = silu(h Wg^T) * (h Wu^T) */
static void swiglu(const rmodel *M, const float *h, int64_t n, const float *Wg, const float *Wu,
                   float *act)
{
	float *u = malloc((size_t)(n * M->I) * sizeof *u);
	matmul(h, n, M->H, Wg, M->I, act);
	matmul(h, n, M->H, Wu, M->I, u);
	for (int64_t i = 0; i < n * M->I; i++)
		act[i] = (float)((double)act[i] / (1 + exp(-(double)act[i])) * u[i]);
	free(u);
}

typedef struct rlayer {
	float *w[QC_LIN_COUNT];   /* current weights (scaled, then dequantized) */
	float *g[2];              /* attn, mlp norm */
	float *cs[QC_LIN_COUNT];  /* column scales folded in (NULL: none) */
	float *rs[QC_LIN_COUNT];  /* row scales divided out (v, up) */
	float *xs[QC_WALK_POINTS], *xc[QC_WALK_POINTS];
	/* what the reference found, per point and per Linear */
	double ratio[QC_WALK_POINTS], loss_r0[QC_WALK_POINTS], loss[QC_WALK_POINTS];
	double loss_rtn[QC_WALK_POINTS];
	double err_out[QC_LIN_COUNT], err_rtn[QC_LIN_COUNT], err_w[QC_LIN_COUNT];
	double y2[QC_LIN_COUNT], w2[QC_LIN_COUNT], rtn_d2[QC_LIN_COUNT];
	int64_t out[QC_LIN_COUNT], in[QC_LIN_COUNT];
} rlayer;

static const int lin_point_[QC_LIN_COUNT] = { QC_WALK_QKV, QC_WALK_QKV, QC_WALK_QKV, QC_WALK_O,
                                             QC_WALK_GATE_UP, QC_WALK_GATE_UP, QC_WALK_DOWN };

/* the loss block of point p on the sample Xs with weights w[] */
static void block(const rmodel *M, int p, float *const *w, const float *Xs, float *Y)
{
	int64_t N = M->N;
	if (p == QC_WALK_QKV) {
		float *a = malloc((size_t)(N * M->qd) * sizeof *a);
		int64_t lens[NSEQ];
		for (int64_t k = 0; k < M->m; k++)
			lens[k] = M->lens[M->seq[k]];
		attention_all(M, Xs, lens, M->m, w[QC_LIN_Q], w[QC_LIN_K], w[QC_LIN_V], a);
		matmul(a, N, M->qd, w[QC_LIN_O], M->H, Y);
		free(a);
	} else if (p == QC_WALK_O) {
		matmul(Xs, N, M->qd, w[QC_LIN_O], M->H, Y);
	} else if (p == QC_WALK_GATE_UP) {
		float *act = malloc((size_t)(N * M->I) * sizeof *act);
		swiglu(M, Xs, N, w[QC_LIN_GATE], w[QC_LIN_UP], act);
		matmul(act, N, M->I, w[QC_LIN_DOWN], M->H, Y);
		free(act);
	} else {
		matmul(Xs, N, M->I, w[QC_LIN_DOWN], M->H, Y);
	}
}

static double mse(const float *a, const float *b, size_t n)
{
	double s = 0;
	for (size_t i = 0; i < n; i++)
		s += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
	return s / (double)n;
}

static const int pt_lin[QC_WALK_POINTS][4] = {
	{ QC_LIN_Q, QC_LIN_K, QC_LIN_V, -1 }, { QC_LIN_O, -1 }, { QC_LIN_GATE, QC_LIN_UP, -1 },
	{ QC_LIN_DOWN, -1 },
};

/* AWQ's search at point p whose inputs over every token are X [T, n]:
 * the scales into s, the ratio and losses into the layer's record */
static void search(const rmodel *M, rlayer *R, int p, const float *X, int64_t n, float *s)
{
	double *xm = calloc((size_t)n, sizeof *xm), *wm = calloc((size_t)n, sizeof *wm);
	for (int64_t t = 0; t < M->T; t++)
		for (int64_t j = 0; j < n; j++)
			xm[j] += fabs((double)X[t * n + j]);
	for (int64_t j = 0; j < n; j++)
		xm[j] /= (double)M->T;
	int64_t rows = 0, G = M->q.G < n ? M->q.G : n;
	for (int k = 0; pt_lin[p][k] >= 0; k++) {
		int l = pt_lin[p][k];
		for (int64_t r = 0; r < R->out[l]; r++, rows++)
			for (int64_t j = 0; j < n; j++) {
				float gm = 0;
				for (int64_t c = j / G * G; c < (j / G + 1) * G && c < n; c++)
					gm = fmaxf(gm, fabsf(R->w[l][r * n + c]));
				wm[j] += fabsf(R->w[l][r * n + j]) / (gm + 1e-6f);
			}
	}
	for (int64_t j = 0; j < n; j++)
		wm[j] /= (double)rows;
	float *yfp = malloc((size_t)(M->N * M->H) * sizeof *yfp), *y = malloc((size_t)(M->N * M->H) * 4);
	float *cand[QC_LIN_COUNT] = { 0 }, *w[QC_LIN_COUNT];
	memcpy(w, R->w, sizeof w);
	block(M, p, w, R->xs[p], yfp);
	float *sr = malloc((size_t)n * sizeof *sr);
	double best = INFINITY;
	for (int i = -1; i < M->grid; i++) {
		/* i = -1: no scaling, plain rounding */
		double r = i / (double)M->grid, mx = 0, mn = INFINITY;
		for (int64_t j = 0; j < n; j++) {
			double v = M->duo ? pow(xm[j], r) / (pow(wm[j], 1 - r) + 1e-4) : pow(xm[j], r);
			v = fmax(v, 1e-4);
			mx = fmax(mx, v);
			mn = fmin(mn, v);
			sr[j] = (float)v;
		}
		for (int64_t j = 0; j < n; j++) {
			double v = M->duo ? pow(xm[j], r) / (pow(wm[j], 1 - r) + 1e-4) : pow(xm[j], r);
			sr[j] = (float)(fmax(v, 1e-4) / sqrt(mx * mn));
		}
		for (int k = 0; pt_lin[p][k] >= 0; k++) {
			int l = pt_lin[p][k];
			cand[l] = realloc(cand[l], (size_t)(R->out[l] * n) * sizeof(float));
			rq_matrix(&M->q, R->w[l], R->out[l], n, i < 0 ? NULL : sr, NULL, cand[l], NULL, NULL,
			          NULL);
			w[l] = cand[l];
		}
		block(M, p, w, R->xs[p], y);
		double L = mse(y, yfp, (size_t)(M->N * M->H));
		if (i < 0) {
			R->loss_rtn[p] = L;
			continue;
		}
		if (i == 0)
			R->loss_r0[p] = L;
		if (L < best) {
			best = L;
			R->ratio[p] = r;
			memcpy(s, sr, (size_t)n * sizeof *s);
		}
	}
	R->loss[p] = best;
	for (int l = 0; l < QC_LIN_COUNT; l++)
		free(cand[l]);
	free(xm);
	free(wm);
	free(yfp);
	free(y);
	free(sr);
}

/* ||X W^T||^2, ||W||^2 and plain rounding's error of Linear l, before
 * smoothing, X the strided (clip) sample of its point */
static void stats(const rmodel *M, rlayer *R, int l)
{
	int64_t out = R->out[l], in = R->in[l];
	const float *X = R->xc[lin_point_[l]];
	float *q = malloc((size_t)(out * in) * sizeof *q), *d = malloc((size_t)(out * in) * 4);
	float *y = malloc((size_t)(M->Nc * out) * sizeof *y);
	rq_matrix(&M->q, R->w[l], out, in, NULL, NULL, q, NULL, NULL, NULL);
	R->w2[l] = R->y2[l] = R->rtn_d2[l] = 0;
	for (int64_t i = 0; i < out * in; i++) {
		R->w2[l] += (double)R->w[l][i] * R->w[l][i];
		d[i] = R->w[l][i] - q[i];
	}
	matmul(X, M->Nc, in, R->w[l], out, y);
	for (int64_t i = 0; i < M->Nc * out; i++)
		R->y2[l] += (double)y[i] * y[i];
	matmul(X, M->Nc, in, d, out, y);
	for (int64_t i = 0; i < M->Nc * out; i++)
		R->rtn_d2[l] += (double)y[i] * y[i];
	free(q);
	free(d);
	free(y);
}

/* clip (not q, k), round, and the errors in the original coordinates */
static void finalize(const rmodel *M, rlayer *R, int l)
{
	int64_t out = R->out[l], in = R->in[l], G = M->q.G < in ? M->q.G : in, ng = (in + G - 1) / G;
	int p = lin_point_[l];
	float *clip = NULL;
	if (l != QC_LIN_Q && l != QC_LIN_K) {
		float *xc = malloc((size_t)(M->Nc * in) * sizeof *xc);
		for (int64_t t = 0; t < M->Nc; t++)
			for (int64_t j = 0; j < in; j++)
				xc[t * in + j] = R->cs[l] ? R->xc[p][t * in + j] / R->cs[l][j] : R->xc[p][t * in + j];
		clip = malloc((size_t)(out * ng) * sizeof *clip);
		rq_clip(&M->q, R->w[l], out, in, xc, M->Nc, 10, 20, clip, NULL);
		free(xc);
	}
	float *q = malloc((size_t)(out * in) * sizeof *q), *d = malloc((size_t)(out * in) * 4);
	float *y = malloc((size_t)(M->Nc * out) * sizeof *y);
	rq_matrix(&M->q, R->w[l], out, in, NULL, clip, q, NULL, NULL, NULL);
	double dw2 = 0, d2 = 0;
	for (int64_t r = 0; r < out; r++)
		for (int64_t j = 0; j < in; j++) {
			double e = (double)R->w[l][r * in + j] - q[r * in + j];
			if (R->cs[l])
				e /= R->cs[l][j];
			if (R->rs[l])
				e *= R->rs[l][r];
			d[r * in + j] = (float)e;
			dw2 += e * e;
		}
	matmul(R->xc[p], M->Nc, in, d, out, y);
	for (int64_t i = 0; i < M->Nc * out; i++)
		d2 += (double)y[i] * y[i];
	R->err_out[l] = d2 / R->y2[l];
	R->err_rtn[l] = R->rtn_d2[l] / R->y2[l];
	R->err_w[l] = dw2 / R->w2[l];
	memcpy(R->w[l], q, (size_t)(out * in) * sizeof *q);
	free(q);
	free(d);
	free(y);
	free(clip);
}

/* fold s at point p: the norm (rounded to BF16; s becomes g / g') or the
 * previous Linear's rows, then the balanced Linears' columns */
static void fold(rlayer *R, int p, int64_t n, float *s)
{
	if (p == QC_WALK_QKV || p == QC_WALK_GATE_UP) {
		float *g = R->g[p == QC_WALK_GATE_UP];
		for (int64_t j = 0; j < n; j++) {
			float g2 = qc_round_to(g[j] / s[j], QC_DT_BF16);
			if (g2 != 0 && isfinite(g[j] / g2) && g[j] / g2 > 0)
				s[j] = g[j] / g2;
			g[j] = g2;
		}
	} else {
		int pl = p == QC_WALK_O ? QC_LIN_V : QC_LIN_UP;
		for (int64_t r = 0; r < R->out[pl]; r++)
			for (int64_t j = 0; j < R->in[pl]; j++)
				R->w[pl][r * R->in[pl] + j] /= s[r];
		R->rs[pl] = s;
	}
	for (int k = 0; pt_lin[p][k] >= 0; k++) {
		int l = pt_lin[p][k];
		for (int64_t r = 0; r < R->out[l]; r++)
			for (int64_t j = 0; j < n; j++)
				R->w[l][r * n + j] *= s[j];
		R->cs[l] = s;
	}
}

/* One layer in true-sequential order, as the walker and qc_awq run it;
 * x [T, H] becomes the layer's output. */
static void ref_layer(const rmodel *M, rlayer *R, float *x)
{
	int64_t T = M->T, H = M->H;
	int mha = M->nh == M->nkv;
	float *h = malloc((size_t)(T * H) * sizeof *h), *a = malloc((size_t)(T * M->qd) * 4);
	float *act = malloc((size_t)(T * M->I) * sizeof *act), *y = malloc((size_t)(T * H) * 4);
	float *s[QC_WALK_POINTS] = { malloc((size_t)H * 4), malloc((size_t)M->qd * 4),
	                             malloc((size_t)H * 4), malloc((size_t)M->I * 4) };
	int64_t cols[QC_WALK_POINTS] = { H, M->qd, H, M->I };
	for (int p = 0; p < QC_WALK_POINTS; p++) {
		R->xs[p] = malloc((size_t)(M->N * cols[p]) * sizeof(float));
		R->xc[p] = malloc((size_t)(M->Nc * cols[p]) * sizeof(float));
	}
	/* QKV */
	rmsnorm(M, x, R->g[0], T, h);
	gather(M, h, H, R->xs[0], R->xc[0]);
	for (int l = QC_LIN_Q; l <= QC_LIN_V; l++)
		stats(M, R, l);
	search(M, R, QC_WALK_QKV, h, H, s[0]);
	fold(R, QC_WALK_QKV, H, s[0]);
	finalize(M, R, QC_LIN_Q);
	finalize(M, R, QC_LIN_K);
	if (!mha)
		finalize(M, R, QC_LIN_V);
	/* O: the attention with the new norm, quantized q and k */
	rmsnorm(M, x, R->g[0], T, h);
	attention_all(M, h, M->lens, NSEQ, R->w[QC_LIN_Q], R->w[QC_LIN_K], R->w[QC_LIN_V], a);
	gather(M, a, M->qd, R->xs[1], R->xc[1]);
	stats(M, R, QC_LIN_O);
	if (mha) {
		search(M, R, QC_WALK_O, a, M->qd, s[1]);
		fold(R, QC_WALK_O, M->qd, s[1]);
		finalize(M, R, QC_LIN_V);
	}
	finalize(M, R, QC_LIN_O);
	/* the attention again (v may have changed), o, the residual */
	attention_all(M, h, M->lens, NSEQ, R->w[QC_LIN_Q], R->w[QC_LIN_K], R->w[QC_LIN_V], a);
	matmul(a, T, M->qd, R->w[QC_LIN_O], H, y);
	for (int64_t i = 0; i < T * H; i++)
		x[i] += y[i];
	/* GATE_UP */
	rmsnorm(M, x, R->g[1], T, h);
	gather(M, h, H, R->xs[2], R->xc[2]);
	stats(M, R, QC_LIN_GATE);
	stats(M, R, QC_LIN_UP);
	search(M, R, QC_WALK_GATE_UP, h, H, s[2]);
	fold(R, QC_WALK_GATE_UP, H, s[2]);
	finalize(M, R, QC_LIN_GATE);
	/* DOWN: its inputs with the new norm, quantized gate, up not yet */
	rmsnorm(M, x, R->g[1], T, h);
	swiglu(M, h, T, R->w[QC_LIN_GATE], R->w[QC_LIN_UP], act);
	gather(M, act, M->I, R->xs[3], R->xc[3]);
	stats(M, R, QC_LIN_DOWN);
	search(M, R, QC_WALK_DOWN, act, M->I, s[3]);
	fold(R, QC_WALK_DOWN, M->I, s[3]);
	finalize(M, R, QC_LIN_UP);
	finalize(M, R, QC_LIN_DOWN);
	swiglu(M, h, T, R->w[QC_LIN_GATE], R->w[QC_LIN_UP], act);
	matmul(act, T, M->I, R->w[QC_LIN_DOWN], H, y);
	for (int64_t i = 0; i < T * H; i++)
		x[i] += y[i];
	for (int p = 0; p < QC_WALK_POINTS; p++) {
		free(R->xs[p]);
		free(R->xc[p]);
	}
	free(h);
	free(a);
	free(act);
	free(y);
	for (int p = 0; p < QC_WALK_POINTS; p++)
		free(s[p]);
}

static float *values(qc_ckpt *ck, const char *name, size_t *n)
{
	const qc_tensor *t;
	tu_assert_rc(qc_ckpt_get(ck, name, &t), 0);
	*n = (size_t)qc_numel(t->ndim, t->shape);
	float *v = malloc(*n * sizeof *v);
	assert_non_null(v);
	tu_assert_rc(qc_to_f32(v, t->data, t->dtype, *n), 0);
	return v;
}

static void near(double got, double want, double tol, const char *what, int layer, int i)
{
	if (!(fabs(got - want) <= tol * fabs(want) + 1e-12)) {
		print_error("layer %d %s %d: %.9g, the reference %.9g\n", layer, what, i, got, want);
		fail();
	}
}

/* Run qawq's method on a small model and walk the reference beside it. */
static void run_case(int64_t kv, int duo)
{
	rmodel M;
	memset(&M, 0, sizeof M);
	qc_config *c = &M.cfg;
	assert_int_equal(qc_synth_preset("tiny", c), 0);
	c->hidden_size = 64;
	c->intermediate_size = 160;     /* 5 groups of 32 */
	c->num_attention_heads = 4;
	c->num_key_value_heads = kv;
	c->head_dim = 16;
	c->num_hidden_layers = 2;
	c->vocab_size = 300;
	c->bos_token_id = 1;
	c->eos_token_ids[0] = 2;
	c->rope_type = QC_ROPE_DEFAULT;
	c->rope_theta = 10000;
	tu_assert_rc(qc_config_build(c), 0);
	M.H = c->hidden_size;
	M.I = c->intermediate_size;
	M.nh = c->num_attention_heads;
	M.nkv = c->num_key_value_heads;
	M.hd = c->head_dim;
	M.qd = M.nh * M.hd;
	M.kvd = M.nkv * M.hd;
	M.L = c->num_hidden_layers;
	M.eps = c->rms_norm_eps;
	for (int64_t i = 0; i < M.hd / 2; i++)
		M.inv_freq[i] = (float)pow(c->rope_theta, -2.0 * (double)i / (double)M.hd);
	char name[256];
	snprintf(name, sizeof name, "m-%lld-%d", (long long)kv, duo);
	char *model = tu_path(name), *tok = tu_path("t.st");
	snprintf(name, sizeof name, "out-%lld-%d", (long long)kv, duo);
	char *out = tu_path(name);
	snprintf(name, sizeof name, "r-%lld-%d.jsonl", (long long)kv, duo);
	char *rep = tu_path(name);
	tu_write_synth(model, c, 31 + (uint64_t)kv, 2);
	/* six sequences of 11..20 tokens */
	static const int32_t lens[NSEQ] = { 20, 11, 17, 14, 19, 16 };
	int32_t ids[NSEQ * SEQ_MAX] = { 0 };
	M.off[0] = 0;
	for (int i = 0; i < NSEQ; i++) {
		for (int t = 0; t < lens[i]; t++)
			ids[i * SEQ_MAX + t] = (int32_t)((i * 97 + t * 31 + 5) % c->vocab_size);
		M.lens[i] = lens[i];
		M.off[i + 1] = M.off[i] + lens[i];
	}
	M.T = M.off[NSEQ];
	tu_write_tokens(tok, ids, lens, NSEQ, SEQ_MAX, (int)c->vocab_size);
	/* the samples: 40 loss tokens of 97 -> 3 of 6 sequences; 20 clip tokens -> every 4th */
	M.m = (int64_t)ceil(40.0 * NSEQ / (double)M.T);
	for (int64_t k = 0; k < M.m; k++) {
		M.seq[k] = (int64_t)((double)k * NSEQ / (double)M.m);
		M.N += M.lens[M.seq[k]];
	}
	M.cstep = M.T / 20;
	M.Nc = (M.T + M.cstep - 1) / M.cstep;
	M.q = (rq){ 4, 1, 32, QC_DT_BF16 };
	M.grid = 20;
	M.duo = duo;

	qc_awq_opts ao = { .scheme = "w4a16", .group = 32, .grid = 20, .no_duo = !duo, .pow2 = -1,
	                   .loss_tokens = 40, .clip_tokens = 20 };
	qc_gptq_opts_default(&ao.go);
	qc_awq *aw;
	qc_qmethod m;
	tu_assert_rc(qc_awq_method(&aw, &m, &ao), 0);
	qc_qrun_opts ro = { .model = model, .out = out, .calib = tok, .report = rep, .threads = 2 };
	tu_assert_rc(qc_qrun_run(&ro, &m), 0);
	qc_awq_free(aw);

	/* the report, by module */
	size_t rl;
	char *text = tu_read(rep, &rl);
	json_t *lines[2][QC_LIN_COUNT] = { { 0 } };
	for (char *ln = strtok(text, "\n"); ln; ln = strtok(NULL, "\n")) {
		json_t *j = json_loads(ln, 0, NULL);
		assert_non_null(j);
		const char *mod = json_string_value(json_object_get(j, "layer"));
		int layer, found = 0;
		assert_int_equal(sscanf(mod, "model.layers.%d.", &layer), 1);
		for (int l = 0; l < QC_LIN_COUNT; l++) {
			char want[128];
			qc_linear_module(want, sizeof want, layer, (qc_linear)l);
			if (strcmp(want, mod) == 0) {
				lines[layer][l] = j;
				found = 1;
			}
		}
		assert_true(found);
	}
	free(text);

	/* the reference, layer by layer, from the base checkpoint */
	qc_ckpt *ck;
	tu_assert_rc(qc_ckpt_open(&ck, model, NULL), 0);
	size_t n;
	float *emb = values(ck, "model.embed_tokens.weight", &n);
	float *x = malloc((size_t)(M.T * M.H) * sizeof *x);
	for (int64_t t = 0, s = 0; s < NSEQ; s++)
		for (int64_t i = 0; i < M.lens[s]; i++, t++)
			memcpy(x + t * M.H, emb + (size_t)ids[s * SEQ_MAX + i] * M.H, (size_t)M.H * 4);
	int nonzero = 0;
	for (int layer = 0; layer < M.L; layer++) {
		rlayer R;
		memset(&R, 0, sizeof R);
		for (int l = 0; l < QC_LIN_COUNT; l++) {
			int64_t sh[2];
			qc_linear_shape(c, (qc_linear)l, sh);
			R.out[l] = sh[0];
			R.in[l] = sh[1];
			qc_linear_name(name, sizeof name, layer, (qc_linear)l, "weight");
			R.w[l] = values(ck, name, &n);
		}
		snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", layer);
		R.g[0] = values(ck, name, &n);
		snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", layer);
		R.g[1] = values(ck, name, &n);
		ref_layer(&M, &R, x);
		for (int l = 0; l < QC_LIN_COUNT; l++) {
			json_t *j = lines[layer][l];
			assert_non_null(j);
			int p = lin_point_[l];
			json_t *sm = json_object_get(j, "smooth");
			if (p == QC_WALK_O && M.nh != M.nkv) {
				assert_true(json_is_null(sm)); /* no v -> o with GQA */
			} else {
				/* the same ratio, the same losses */
				double ratio = json_number_value(json_object_get(sm, "ratio"));
				if (ratio != R.ratio[p]) {
					print_error("layer %d point %d: ratio %g, the reference %g\n", layer, p, ratio,
					            R.ratio[p]);
					fail();
				}
				nonzero += ratio > 0;
				near(json_number_value(json_object_get(sm, "loss")), R.loss[p], 1e-4, "loss", layer, p);
				near(json_number_value(json_object_get(sm, "loss_r0")), R.loss_r0[p], 1e-4,
				     "loss at r = 0", layer, p);
				near(json_number_value(json_object_get(sm, "loss_rtn")), R.loss_rtn[p], 1e-4,
				     "loss without scaling", layer, p);
			}
			near(json_number_value(json_object_get(j, "err_out")), R.err_out[l], 1e-3, "err_out",
			     layer, l);
			near(json_number_value(json_object_get(j, "err_rtn")), R.err_rtn[l], 1e-4, "err_rtn",
			     layer, l);
			near(json_number_value(json_object_get(j, "err_w")), R.err_w[l], 1e-3, "err_w",
			     layer, l);
			assert_true(R.err_out[l] < R.err_rtn[l]);
			json_decref(j);
		}
		for (int l = 0; l < QC_LIN_COUNT; l++)
			free(R.w[l]);
		free(R.g[0]);
		free(R.g[1]);
	}
	assert_true(nonzero >= 4); /* the search moved something */
	free(x);
	free(emb);
	qc_ckpt_close(ck);
	qc_config_free(c);
	free(model);
	free(tok);
	free(out);
	free(rep);
}

static void test_reference_llm_awq_mha(void **state)
{
	(void)state;
	run_case(4, 0);
}

static void test_reference_llm_awq_gqa(void **state)
{
	(void)state;
	run_case(2, 0);
}

static void test_reference_duo(void **state)
{
	(void)state;
	run_case(4, 1);
}

int main(void)
{
	qc_log_set_level(QC_LOG_QUIET);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_qdq),
		cmocka_unit_test(test_clip),
		cmocka_unit_test(test_sums),
		cmocka_unit_test(test_scales),
		cmocka_unit_test(test_reference_llm_awq_mha),
		cmocka_unit_test(test_reference_llm_awq_gqa),
		cmocka_unit_test(test_reference_duo),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
