/*
 * qk_awq.c - AWQ's steps on the CPU (kernels.h, "AWQ support"): the group
 * quantizer applied to rescaled and clipped weights, the per-column sums
 * of the scale search, and the clipping search.
 *
 * Rows are independent in the quantizer and in the clipping search, so
 * both split the rows into one contiguous share per thread; a row is
 * computed by one thread with the same code whatever the split. The column
 * sums split the columns instead and add each column's terms in row order,
 * so they do not depend on the thread count at all.
 */
#include "qk_cpu.h"

#include <cblas.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "qc_err.h"
#include "qc_num.h"
#include "qc_pool.h"

/* Built for AVX2 and for the baseline, chosen at load time (GCC's function
 * multiversioning), like the quantizer of libcommon/format/qc_quant.c: the
 * inner loops are branch-free so that both versions vectorize, and their
 * results do not depend on the version. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
#define QK_HOT __attribute__((target_clones("avx2", "default")))
#else
#define QK_HOT
#endif

/* ---------------------------------------------------------------- the quantizer */

typedef struct qgrid {
	float lo, hi;           /* code range before the offset */
	float off;              /* 2^(bits-1) with a zero point (stored codes are signed), else 0 */
	int zp;
	qc_dtype dt;
} qgrid;

static int check_spec(const qk_awqspec *q, const char *op)
{
	if (!q || (q->bits != 4 && q->bits != 8) || q->group < 1 ||
	    (q->scale_dtype != QC_DT_BF16 && q->scale_dtype != QC_DT_F16 &&
	     q->scale_dtype != QC_DT_F32))
		return qc_seterr(QC_EINVAL, "%s: invalid quantizer (bits 4 or 8, group >= 1, scales in "
		                 "BF16, F16 or F32)", op);
	return 0;
}

static qgrid grid_of(const qk_awqspec *q)
{
	qgrid g;
	g.zp = q->zero_point != 0;
	g.dt = q->scale_dtype;
	float half = (float)(1 << (q->bits - 1));
	if (g.zp) {
		g.lo = 0;
		g.hi = 2 * half - 1;
		g.off = half;
	} else {
		g.lo = -half;
		g.hi = half - 1;
		g.off = 0;
	}
	return g;
}

/* Round half to even: the 1.5 * 2^23 trick, exact under the default
 * rounding mode for |x| < 2^22, as rintf and torch.round round. Beyond
 * that the result keeps x's sign and a magnitude above 2^21, and every
 * caller clamps it to a code range of at most 256 values, so the clamped
 * result is still rintf's. (No clamp here: a select before the add keeps
 * GCC from vectorizing the loops under -ftrapping-math.) */
static inline float rne(float x)
{
	return (x + 12582912.0f) - 12582912.0f;
}

/* A group's scale and zero point (before the offset) from its values. */
QK_HOT
static void group_params(const qgrid *g, const float *v, int64_t n, float *scale, float *zero)
{
	float mx = -INFINITY, mn = INFINITY, am = 0;
	if (g->zp) {
#pragma omp simd reduction(max : mx) reduction(min : mn)
		for (int64_t j = 0; j < n; j++) {
			mx = v[j] > mx ? v[j] : mx;
			mn = v[j] < mn ? v[j] : mn;
		}
		float d = mx - mn;
		d = d < 1e-5f ? 1e-5f : d;
		float s = qc_round_to(d / g->hi, g->dt);
		float z = -rne(mn / s);
		*scale = s;
		*zero = z < g->lo ? g->lo : z > g->hi ? g->hi : z;
	} else {
#pragma omp simd reduction(max : am)
		for (int64_t j = 0; j < n; j++) {
			float a = fabsf(v[j]);
			am = a > am ? a : am;
		}
		am = am < 1e-5f ? 1e-5f : am;
		*scale = qc_round_to(am / g->hi, g->dt);
		*zero = 0;
	}
}

/* deq[j] = (q - z) * s and, if codes, the stored code q - off */
QK_HOT
static void group_quant(const qgrid *g, const float *v, int64_t n, float s, float z, float *deq,
                        int8_t *codes)
{
	float lo = g->lo, hi = g->hi;
#pragma omp simd
	for (int64_t j = 0; j < n; j++) {
		float t = rne(v[j] / s) + z;
		t = t < lo ? lo : t > hi ? hi : t;
		deq[j] = (t - z) * s;
	}
	if (codes) {
		float off = g->off;
#pragma omp simd
		for (int64_t j = 0; j < n; j++) {
			float t = rne(v[j] / s) + z;
			t = t < lo ? lo : t > hi ? hi : t;
			codes[j] = (int8_t)(int32_t)(t - off);
		}
	}
}

/* v[j] = w[j] * s[j] (or w[j]) */
QK_HOT
static void scale_row(const float *w, const float *s, int64_t n, float *v)
{
	if (!s) {
		memcpy(v, w, (size_t)n * sizeof *v);
		return;
	}
#pragma omp simd
	for (int64_t j = 0; j < n; j++)
		v[j] = w[j] * s[j];
}

/* v[j] = clamp(v[j], -m, m) */
QK_HOT
static void clamp_group(float *v, int64_t n, float m)
{
	float lo = -m;
#pragma omp simd
	for (int64_t j = 0; j < n; j++)
		v[j] = v[j] < lo ? lo : v[j] > m ? m : v[j];
}

/* out[j] = d[j] / s[j] */
QK_HOT
static void unscale_row(const float *d, const float *s, int64_t n, float *out)
{
#pragma omp simd
	for (int64_t j = 0; j < n; j++)
		out[j] = d[j] / s[j];
}

typedef struct qdq_job {
	const qk_awqspec *q;
	qgrid g;
	float *out;
	const float *W, *s, *clip;
	int64_t cols, ng;
	int8_t *codes;
	float *scales, *zeros;
	int failed;
} qdq_job;

static void qdq_rows(void *p, int64_t r0, int64_t r1)
{
	qdq_job *j = p;
	int64_t cols = j->cols, G = j->q->group < cols ? j->q->group : cols;
	float *v = malloc((size_t)cols * 2 * sizeof *v);
	if (!v) {
		j->failed = 1;
		return;
	}
	float *d = v + cols;
	for (int64_t r = r0; r < r1; r++) {
		scale_row(j->W + r * cols, j->s, cols, v);
		for (int64_t g = 0, c0 = 0; c0 < cols; g++, c0 += G) {
			int64_t n = cols - c0 < G ? cols - c0 : G;
			if (j->clip)
				clamp_group(v + c0, n, j->clip[r * j->ng + g]);
			float sc, z;
			group_params(&j->g, v + c0, n, &sc, &z);
			group_quant(&j->g, v + c0, n, sc, z, d + c0, j->codes ? j->codes + r * cols + c0 : NULL);
			if (j->scales)
				j->scales[r * j->ng + g] = sc;
			if (j->zeros && j->g.zp)
				j->zeros[r * j->ng + g] = z - j->g.off;
		}
		if (j->s)
			unscale_row(d, j->s, cols, j->out + r * cols);
		else
			memcpy(j->out + r * cols, d, (size_t)cols * sizeof *d);
	}
	free(v);
}

int qk_cpu_awq_qdq(qk_ctx *ctx, const qk_awqspec *q, float *out, const float *W, int64_t rows,
                   int64_t cols, const float *s, const float *clip, int8_t *codes, float *scales,
                   float *zeros)
{
	QC_TRY(qk_cpu_check(ctx, "awq quantize"));
	QC_TRY(check_spec(q, "awq quantize"));
	if (rows < 0 || cols < 1 || !out || !W)
		return qc_seterr(QC_EINVAL, "awq quantize: invalid shape [%lld, %lld]", (long long)rows,
		                 (long long)cols);
	int64_t G = q->group < cols ? q->group : cols;
	qdq_job j = { .q = q, .g = grid_of(q), .out = out, .W = W, .s = s, .clip = clip,
	              .cols = cols, .ng = (cols + G - 1) / G, .codes = codes, .scales = scales,
	              .zeros = zeros };
	qk_cpu_parallel(ctx, rows, (1 << 15) / cols + 1, qdq_rows, &j);
	return j.failed ? qc_seterr(QC_ENOMEM, "awq quantize: out of memory") : 0;
}

/* ---------------------------------------------------------------- column sums */

#define COL_BLOCK 64

typedef struct colsum_job {
	const float *x;
	int64_t rows, cols, G;
	const float *gmax;      /* [rows, ng] (wmean) or NULL (abs sum) */
	int64_t ng;
	double *acc;
} colsum_job;

/* Columns [b*COL_BLOCK, ...) of blocks [b0, b1): each column's terms added
 * in row order. */
static void colsum_blocks(void *p, int64_t b0, int64_t b1)
{
	const colsum_job *j = p;
	for (int64_t b = b0; b < b1; b++) {
		int64_t c0 = b * COL_BLOCK, c1 = c0 + COL_BLOCK < j->cols ? c0 + COL_BLOCK : j->cols;
		double acc[COL_BLOCK];
		for (int64_t c = c0; c < c1; c++)
			acc[c - c0] = j->acc[c];
		for (int64_t r = 0; r < j->rows; r++) {
			const float *row = j->x + r * j->cols;
			if (j->gmax) {
				const float *gm = j->gmax + r * j->ng;
				for (int64_t c = c0; c < c1; c++)
					acc[c - c0] += (double)(fabsf(row[c]) / (gm[c / j->G] + 1e-6f));
			} else {
				for (int64_t c = c0; c < c1; c++)
					acc[c - c0] += (double)fabsf(row[c]);
			}
		}
		for (int64_t c = c0; c < c1; c++)
			j->acc[c] = acc[c - c0];
	}
}

int qk_cpu_col_abssum(qk_ctx *ctx, const float *x, int64_t rows, int64_t cols, double *sum)
{
	QC_TRY(qk_cpu_check(ctx, "column abs sum"));
	if (rows < 0 || cols < 0)
		return qc_seterr(QC_EINVAL, "column abs sum: invalid shape");
	colsum_job j = { .x = x, .rows = rows, .cols = cols, .acc = sum };
	int64_t nb = (cols + COL_BLOCK - 1) / COL_BLOCK;
	qk_cpu_parallel(ctx, nb, rows > 0 ? 4096 / rows + 1 : nb + 1, colsum_blocks, &j);
	return 0;
}

typedef struct gmax_job {
	const float *W;
	int64_t cols, G, ng;
	float *gmax;
} gmax_job;

QK_HOT
static void gmax_rows(void *p, int64_t r0, int64_t r1)
{
	const gmax_job *j = p;
	for (int64_t r = r0; r < r1; r++)
		for (int64_t g = 0; g < j->ng; g++) {
			const float *w = j->W + r * j->cols + g * j->G;
			int64_t n = j->cols - g * j->G < j->G ? j->cols - g * j->G : j->G;
			float m = 0;
#pragma omp simd reduction(max : m)
			for (int64_t c = 0; c < n; c++) {
				float a = fabsf(w[c]);
				m = a > m ? a : m;
			}
			j->gmax[r * j->ng + g] = m;
		}
}

int qk_cpu_awq_wmean(qk_ctx *ctx, const float *W, int64_t rows, int64_t cols, int64_t group,
                     double *acc)
{
	QC_TRY(qk_cpu_check(ctx, "awq weight mean"));
	if (rows < 0 || cols < 1 || group < 1)
		return qc_seterr(QC_EINVAL, "awq weight mean: invalid shape or group");
	int64_t G = group < cols ? group : cols, ng = (cols + G - 1) / G;
	float *gmax = malloc((size_t)(rows * ng + 1) * sizeof *gmax);
	if (!gmax)
		return qc_seterr(QC_ENOMEM, "awq weight mean: out of memory");
	gmax_job gj = { W, cols, G, ng, gmax };
	qk_cpu_parallel(ctx, rows, (1 << 15) / cols + 1, gmax_rows, &gj);
	colsum_job j = { .x = W, .rows = rows, .cols = cols, .G = G, .gmax = gmax, .ng = ng,
	                 .acc = acc };
	int64_t nb = (cols + COL_BLOCK - 1) / COL_BLOCK;
	qk_cpu_parallel(ctx, nb, rows > 0 ? 4096 / rows + 1 : nb + 1, colsum_blocks, &j);
	free(gmax);
	return 0;
}

/* ---------------------------------------------------------------- the clipping search */

/* floats of one share's candidate block D [steps * rb, G] */
#define CLIP_BLOCK_FLOATS ((int64_t)1 << 19)

typedef struct clip_job {
	const qk_awqspec *q;
	qgrid g;
	const float *W, *X;
	int64_t rows, cols, n, G, ng;
	int steps, grid;
	float *clip;
	int32_t *shrink;
} clip_job;

/* D[i] = qdq(clamp(w, -m_i, m_i)) - w for the steps of one row's group */
static void clip_candidates(const clip_job *j, const float *w, int64_t nv, float m0, float *D,
                            int64_t ldd, float *v)
{
	for (int i = 0; i < j->steps; i++) {
		float m = m0 * (float)(1.0 - (double)i / j->grid);
		memcpy(v, w, (size_t)nv * sizeof *v);
		clamp_group(v, nv, m);
		float s, z;
		group_params(&j->g, v, nv, &s, &z);
		float *d = D + i * ldd;
		group_quant(&j->g, v, nv, s, z, d, NULL);
		for (int64_t c = 0; c < nv; c++)
			d[c] -= w[c];
	}
}

/* err[c] += E[t][c]^2 over the n rows of E [n, m], in double */
QK_HOT
static void col_sq(const float *E, int64_t n, int64_t m, double *err)
{
	for (int64_t t = 0; t < n; t++) {
		const float *e = E + t * m;
#pragma omp simd
		for (int64_t c = 0; c < m; c++)
			err[c] += (double)e[c] * (double)e[c];
	}
}

static int clip_part(void *p, int part, int nparts)
{
	const clip_job *j = p;
	int64_t r0, r1;
	qc_pool_range(j->rows, part, nparts, &r0, &r1);
	if (r0 >= r1)
		return 0;
	int64_t G = j->G, steps = j->steps;
	int64_t rb = CLIP_BLOCK_FLOATS / (steps * G);
	rb = rb < 1 ? 1 : rb > r1 - r0 ? r1 - r0 : rb;
	int64_t m = steps * rb;
	float *D = malloc((size_t)(m * G) * sizeof *D);
	float *E = malloc((size_t)(j->n * m) * sizeof *E);
	float *v = malloc((size_t)G * sizeof *v);
	float *m0 = malloc((size_t)rb * sizeof *m0);
	double *err = malloc((size_t)m * sizeof *err);
	int rc = D && E && v && m0 && err ? 0 : qc_seterr(QC_ENOMEM, "awq clip search: out of memory");
	for (int64_t g = 0; rc == 0 && g < j->ng; g++) {
		int64_t c0 = g * G, nv = j->cols - c0 < G ? j->cols - c0 : G;
		for (int64_t b0 = r0; b0 < r1; b0 += rb) {
			int64_t nb = r1 - b0 < rb ? r1 - b0 : rb;
			/* candidates of row k of the block at rows i * nb + k of D */
			for (int64_t k = 0; k < nb; k++) {
				const float *w = j->W + (b0 + k) * j->cols + c0;
				float a = 0;
				for (int64_t c = 0; c < nv; c++)
					a = fabsf(w[c]) > a ? fabsf(w[c]) : a; /* not fmaxf: no libm call */
				m0[k] = a;
				clip_candidates(j, w, nv, a, D + k * nv, nb * nv, v);
			}
			int64_t mm = steps * nb;
			/* E [n, mm] = X_g D^T: every step's partial products at once */
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)j->n, (blasint)mm,
			            (blasint)nv, 1.0f, j->X + c0, (blasint)j->cols, D, (blasint)nv, 0.0f, E,
			            (blasint)mm);
			for (int64_t c = 0; c < mm; c++)
				err[c] = 0;
			col_sq(E, j->n, mm, err);
			for (int64_t k = 0; k < nb; k++) {
				double best = 1e9;
				float bm = m0[k];
				int32_t bi = 0;
				for (int i = 0; i < steps; i++) {
					double e = err[i * nb + k] / (double)j->n;
					if (e < best) {
						best = e;
						bm = m0[k] * (float)(1.0 - (double)i / j->grid);
						bi = i;
					}
				}
				j->clip[(b0 + k) * j->ng + g] = bm;
				if (j->shrink)
					j->shrink[(b0 + k) * j->ng + g] = bi;
			}
		}
	}
	free(D);
	free(E);
	free(v);
	free(m0);
	free(err);
	return rc;
}

int qk_cpu_awq_clip(qk_ctx *ctx, const qk_awqspec *q, const float *W, int64_t rows, int64_t cols,
                    const float *X, int64_t n, int steps, int grid, float *clip, int32_t *shrink)
{
	QC_TRY(qk_cpu_check(ctx, "awq clip search"));
	QC_TRY(check_spec(q, "awq clip search"));
	if (rows < 0 || cols < 1 || n < 1 || steps < 1 || grid < steps || !W || !X || !clip)
		return qc_seterr(QC_EINVAL, "awq clip search: invalid arguments");
	int64_t G = q->group < cols ? q->group : cols;
	if (rows == 0)
		return 0;
	if (cols > 0x7fffffff || n * steps * G > ((int64_t)1 << 40))
		return qc_seterr(QC_EINVAL, "awq clip search: sizes out of range");
	clip_job j = { .q = q, .g = grid_of(q), .W = W, .X = X, .rows = rows, .cols = cols, .n = n,
	               .G = G, .ng = (cols + G - 1) / G, .steps = steps, .grid = grid, .clip = clip,
	               .shrink = shrink };
	int nt = ctx->threads < 64 ? ctx->threads : 64;
	if (nt > rows)
		nt = (int)rows;
	/* each share calls BLAS in its own thread, single-threaded */
	qk_cpu_blas_threads(1);
	return qc_pool_run(nt < 1 ? 1 : nt, clip_part, &j);
}
