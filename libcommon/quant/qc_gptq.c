/* qc_gptq.c - the GPTQ solver (see qc_gptq.h for the algorithm and contracts). */
#include "qc_gptq.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qc_err.h"
#include "qc_log.h"
#include "qc_num.h"

void qc_gptq_opts_default(qc_gptq_opts *o)
{
	memset(o, 0, sizeof *o);
	o->method = QC_GPTQ_METHOD_GPTQ;
	o->damp = 0.01;
	o->damp_max = 1.0;
	o->block = 128;
	o->actorder = QC_GPTQ_ACTORDER_STATIC;
	qc_clip_opts_default(&o->clip, QC_CLIP_MSE);
	o->clip_hweight = 0;
}

const char *qc_gptq_actorder_name(qc_gptq_actorder a)
{
	return a == QC_GPTQ_ACTORDER_STATIC ? "static" : "none";
}

int qc_gptq_actorder_parse(const char *s, qc_gptq_actorder *a)
{
	if (strcmp(s, "static") == 0 || strcmp(s, "weight") == 0)
		*a = QC_GPTQ_ACTORDER_STATIC;
	else if (strcmp(s, "none") == 0)
		*a = QC_GPTQ_ACTORDER_NONE;
	else
		return qc_seterr(QC_EINVAL, "unknown activation order '%s' (use static or none)", s);
	return 0;
}

const char *qc_gptq_method_name(qc_gptq_method m)
{
	return m == QC_GPTQ_METHOD_RTN ? "rtn" : "gptq";
}

int qc_gptq_method_parse(const char *s, qc_gptq_method *m)
{
	if (strcmp(s, "gptq") == 0)
		*m = QC_GPTQ_METHOD_GPTQ;
	else if (strcmp(s, "rtn") == 0)
		*m = QC_GPTQ_METHOD_RTN;
	else
		return qc_seterr(QC_EINVAL, "unknown method '%s' (use gptq or rtn)", s);
	return 0;
}

// ---------------------------------------------------------------- the solver object

/* One output row of the stacked matrix (rows of all parts in order). */
typedef struct grow {
	const float *w;      /* original weights [cols] */
	uint8_t *code;       /* codes [cols] */
	float *deq;          /* dequantized [cols] or NULL */
	float *sc, *zp;      /* parameters used by the sweep: [ng] for groups, [1]
	                        otherwise (zp NULL when symmetric) */
	float *rsc, *rzp;    /* round-to-nearest parameters (the same pointers
	                        unless groups are computed during the sweep) */
	int part;
} grow;

/* Per-row sums (double) that become the errors of a part. "p" quantities
 * are in sweep order with dead columns zeroed. */
typedef struct rsum {
	double w2, werr;     /* ||W||^2, ||W - Q||^2 of the original row */
	double xv_w, n_w;    /* ||Wp V||^2, ||Wp||^2 */
	double xv_r, n_r;    /* ||(W - Qrtn)p V||^2, ||(W - Qrtn)p||^2 */
	double xv_g, n_g;    /* ||(Wp - Q) V||^2 (the sweep's S), ||Wp - Q||^2 */
} rsum;

struct qc_gptq {
	qk_ctx *kc;
	qc_gptq_opts o;
	int nthreads;
	/* scratch, grown on demand and kept between runs */
	float *S;            /* [R, n] accumulated errors D V */
	size_t S_cap;
	float *blk[4];       /* [R, wmax] block buffers */
	size_t blk_cap[4];
	float *ubb;          /* [block, block] */
	size_t ubb_cap;
	float *rpar;         /* RTN parameters for dynamic groups [R, ng] x 2 */
	size_t rpar_cap;
	float *xbuf, *ybuf;  /* error pass chunks */
	size_t xbuf_cap, ybuf_cap;
	float *cwork;        /* blocked Cholesky: [(n + 2 nb) nb] */
	size_t cwork_cap;
	int64_t *starts;     /* block starts of the sweep */
	size_t starts_cap;
	grow *rows;
	size_t rows_cap;
	rsum *sums;
	size_t sums_cap;
	int64_t *perm;       /* sweep position -> original column */
	size_t perm_cap;
	int64_t *sigma;      /* combined order with the reversal */
	size_t sigma_cap;
	float *d0;           /* undamped diag(H), original order */
	size_t d0_cap;
	float *mdiag;        /* diag after the dead fix, factored order */
	size_t mdiag_cap;
	uint8_t *dead;       /* original order */
	size_t dead_cap;
};

/* Grow *p to hold n elements of size sz (contents not kept). */
static int grow_buf(void **p, size_t *cap, size_t n, size_t sz)
{
	if (n <= *cap)
		return 0;
	free(*p);
	*p = NULL;
	*cap = 0;
	if (n > SIZE_MAX / sz)
		return qc_seterr(QC_ENOMEM, "out of memory (%zu elements)", n);
	void *q = malloc(n * sz);
	if (!q)
		return qc_seterr(QC_ENOMEM, "out of memory (%zu bytes of GPTQ scratch)", n * sz);
	*p = q;
	*cap = n;
	return 0;
}
#define GROW(p, cap, n) grow_buf((void **)&(p), &(cap), (size_t)(n), sizeof *(p))

int qc_gptq_new(qc_gptq **out, qk_ctx *kc, const qc_gptq_opts *o)
{
	*out = NULL;
	qc_gptq_opts d;
	if (!o) {
		qc_gptq_opts_default(&d);
		o = &d;
	}
	if (!kc)
		return qc_seterr(QC_EINVAL, "gptq: no kernel context");
	if (!(o->damp > 0) || !(o->damp_max >= o->damp) || !isfinite(o->damp_max))
		return qc_seterr(QC_EINVAL, "damping must be positive and at most %g, not %g",
		                 o->damp_max, o->damp);
	if (o->block < 1 || o->block > 4096)
		return qc_seterr(QC_EINVAL, "block size must be between 1 and 4096, not %lld",
		                 (long long)o->block);
	if (o->method != QC_GPTQ_METHOD_GPTQ && o->method != QC_GPTQ_METHOD_RTN)
		return qc_seterr(QC_EINVAL, "unknown method %d", (int)o->method);
	if (o->actorder != QC_GPTQ_ACTORDER_NONE && o->actorder != QC_GPTQ_ACTORDER_STATIC)
		return qc_seterr(QC_EINVAL, "unknown activation order %d", (int)o->actorder);
	if (o->clip.mode == QC_CLIP_MSE &&
	    (o->clip.grid < 1 || !(o->clip.maxshrink >= 0 && o->clip.maxshrink < 1) ||
	     o->clip.patience < 1 || !(o->clip.norm > 0)))
		return qc_seterr(QC_EINVAL, "invalid MSE clipping options");
	qc_gptq *g = calloc(1, sizeof *g);
	if (!g)
		return qc_seterr(QC_ENOMEM, "out of memory");
	g->kc = kc;
	g->o = *o;
	g->nthreads = qk_ctx_threads(kc);
	if (g->nthreads < 1)
		g->nthreads = 1;
	if (g->nthreads > 64)
		g->nthreads = 64;
	*out = g;
	return 0;
}

void qc_gptq_free(qc_gptq *g)
{
	if (!g)
		return;
	free(g->S);
	for (int i = 0; i < 4; i++)
		free(g->blk[i]);
	free(g->ubb);
	free(g->rpar);
	free(g->xbuf);
	free(g->ybuf);
	free(g->cwork);
	free(g->starts);
	free(g->rows);
	free(g->sums);
	free(g->perm);
	free(g->sigma);
	free(g->d0);
	free(g->mdiag);
	free(g->dead);
	free(g);
}

/* Four float lanes (GCC/Clang vector extension; SSE2 or NEON registers). */
typedef float qv4 __attribute__((vector_size(16)));

// ---------------------------------------------------------------- row-parallel helper

/* Work that is not a BLAS call is split over rows: [0, n) is cut into one
 * contiguous range per thread, and each row is computed by exactly one
 * thread with the same code as a serial run, so results do not depend on
 * the thread count. BLAS calls stay on the calling thread. fn gets the
 * index of its range (0 .. threads-1) for per-thread scratch. */
typedef void (*range_fn)(void *arg, int t, int64_t begin, int64_t end);

typedef struct job {
	range_fn fn;
	void *arg;
	int t;
	int64_t b, e;
} job;

static void *run_job(void *p)
{
	job *j = p;
	j->fn(j->arg, j->t, j->b, j->e);
	return NULL;
}

static void par_rows(const qc_gptq *g, int64_t n, int64_t min_per, range_fn fn, void *arg)
{
	int nt = g->nthreads;
	if (min_per < 1)
		min_per = 1;
	if (n / min_per < nt)
		nt = (int)(n / min_per);
	if (nt <= 1) {
		if (n > 0)
			fn(arg, 0, 0, n);
		return;
	}
	job jobs[64];
	pthread_t tid[64];
	int started[64] = { 0 };
	for (int i = 0; i < nt; i++) {
		jobs[i].fn = fn;
		jobs[i].arg = arg;
		jobs[i].t = i;
		jobs[i].b = n * i / nt;
		jobs[i].e = n * (i + 1) / nt;
	}
	for (int i = 1; i < nt; i++)
		started[i] = pthread_create(&tid[i], NULL, run_job, &jobs[i]) == 0;
	run_job(&jobs[0]);
	for (int i = 1; i < nt; i++) {
		if (started[i])
			pthread_join(tid[i], NULL);
		else /* no thread to spare: run it here, same result */
			run_job(&jobs[i]);
	}
}

// ---------------------------------------------------------------- group parameters

/*
 * The parameters of one group, exactly as qc_group_params computes them
 * (same candidates, same error terms summed in the same order, same
 * comparisons), only faster:
 *  - a candidate whose partial error already reaches the best one cannot
 *    win (every term is >= 0), so its sum stops there: it counts as "no
 *    improvement", as its full sum would;
 *  - a candidate with the same scale and zero point as the one before it
 *    has the same error, so it is not summed again;
 *  - for integer codes with FP32 arithmetic, quantize-dequantize is inlined
 *    (the same operations as qc_qdq).
 * colw values must be >= 0 (a Hessian diagonal) for the early stop; with a
 * negative weight the sums run to the end.
 */
/* The code of x, as qc_quantize_value computes it for integer codes in FP32
 * arithmetic: the same operations, inlined. */
static inline float quant_int_f32(float x, float s, float z, float qmin, float qmax)
{
	float v = x / s;
	if (z != 0)
		v = v + z;
	if (v < qmin)
		v = qmin;
	if (v > qmax)
		v = qmax;
	if (v != v)
		v = 0;
	/* round half to even for |v| < 2^22 in the default rounding mode, the
	 * same result as nearbyintf (v is clamped to the code range), whose
	 * sign it keeps: -0.3 rounds to -0 */
	return copysignf((v + 12582912.0f) - 12582912.0f, v);
}

/* Quantize-dequantize, as qc_qdq. */
static inline float qdq_int_f32(float x, float s, float z, float qmin, float qmax)
{
	return (quant_int_f32(x, s, z, qmin, qmax) - z) * s;
}

/* Sum of |qdq(x) - x|^norm (weighted), stopping once it reaches `stop`. */
static double group_err_upto(const qc_qargs *a, int fast, float qmin, float qmax, const float *x,
                             int64_t n, const float *colw, float s, float z, double norm,
                             double stop)
{
	double e = 0;
	for (int64_t i = 0; i < n; i++) {
		float q = fast ? qdq_int_f32(x[i], s, z, qmin, qmax) : qc_qdq(a, x[i], s, z);
		double d = fabs((double)q - x[i]);
		double t = norm == 2.0 ? d * d : pow(d, norm);
		e += colw ? colw[i] * t : t;
		if (e >= stop)
			return e;
	}
	return e;
}

#if defined(__SSE2__)
#include <emmintrin.h>

/*
 * The same search with approximate errors, for the default norm 2.4 on
 * integer codes: |d|^2.4 = d^2 m^0.4 2^(0.4 e) for d = m 2^e (m in [1, 2)),
 * with 2^(0.4 e) = 4^k 2^(0.4 r) for e = 5k + r and m^0.4 from two Newton
 * steps on y^5 = m^2, four lanes at a time, summed in double. Every term
 * is within POW24_REL of its exact value (measured over every mantissa:
 * 3.2e-7, plus 1.4e-7 for d rounded to float), so every sum
 * is too, and each comparison of the search is decided only when the
 * approximate sums are further apart than that; otherwise, or when some
 * |d| is outside [2^-40, 2^40) and not 0, the exact search decides. The
 * result is therefore always the exact search's.
 */
#define POW24_REL 4e-6

static const float pow24_t5[5] = { 1.0f, 1.31950791f, 1.74110113f, 2.29739671f, 3.03143313f };

/* The approximate error, stopping once it reaches stop; *bad set when the
 * approximation does not apply. */
static double err24(const float *x, int64_t n, const float *colw, float s, float z, float qmin,
                    float qmax, double stop, int *bad)
{
	const __m128 vs = _mm_set1_ps(s), vz = _mm_set1_ps(z), vlo = _mm_set1_ps(qmin),
	             vhi = _mm_set1_ps(qmax), magic = _mm_set1_ps(12582912.0f),
	             absm = _mm_castsi128_ps(_mm_set1_epi32(0x7fffffff));
	__m128d acc0 = _mm_setzero_pd(), acc1 = _mm_setzero_pd();
	__m128i out = _mm_setzero_si128();
	int64_t i = 0;
	for (; i + 4 <= n; i += 4) {
		__m128 xv = _mm_loadu_ps(x + i);
		/* quantize-dequantize as qdq_int_f32 does it */
		__m128 v = _mm_add_ps(_mm_div_ps(xv, vs), vz);
		v = _mm_min_ps(_mm_max_ps(v, vlo), vhi);
		v = _mm_sub_ps(_mm_add_ps(v, magic), magic);
		__m128 d = _mm_and_ps(_mm_sub_ps(_mm_mul_ps(_mm_sub_ps(v, vz), vs), xv), absm);
		/* d = m 2^e: exponent bits, mantissa in [1, 2) */
		__m128i u = _mm_castps_si128(d);
		__m128i eb = _mm_srli_epi32(u, 23);
		__m128 m = _mm_castsi128_ps(_mm_or_si128(_mm_and_si128(u, _mm_set1_epi32(0x7fffff)),
		                                         _mm_set1_epi32(0x3f800000)));
		__m128i nz = _mm_xor_si128(_mm_cmpeq_epi32(u, _mm_setzero_si128()), _mm_set1_epi32(-1));
		out = _mm_or_si128(out, _mm_cmpgt_epi32(eb, _mm_set1_epi32(127 + 39)));
		out = _mm_or_si128(out, _mm_and_si128(nz, _mm_cmplt_epi32(eb, _mm_set1_epi32(127 - 40))));
		/* e + 500 = eb + 373 = 5 q5 + r (q5 = k + 100), in 16-bit lanes */
		__m128i w = _mm_add_epi32(eb, _mm_set1_epi32(373));
		__m128i q5 = _mm_srli_epi16(_mm_mulhi_epu16(w, _mm_set1_epi16((short)52429)), 2);
		__m128i r = _mm_sub_epi32(w, _mm_add_epi32(_mm_slli_epi32(q5, 2), q5));
		__m128 t5 = _mm_set1_ps(pow24_t5[0]);
		for (int j = 1; j < 5; j++) {
			__m128 mk = _mm_castsi128_ps(_mm_cmpeq_epi32(r, _mm_set1_epi32(j)));
			t5 = _mm_or_ps(_mm_andnot_ps(mk, t5), _mm_and_ps(mk, _mm_set1_ps(pow24_t5[j])));
		}
		/* 4^k = 2^(2 q5 - 200) */
		__m128 p4 = _mm_castsi128_ps(
		    _mm_slli_epi32(_mm_sub_epi32(_mm_add_epi32(q5, q5), _mm_set1_epi32(73)), 23));
		__m128 y = _mm_add_ps(_mm_set1_ps(0.6889f), _mm_mul_ps(_mm_set1_ps(0.3195f), m));
		__m128 m2 = _mm_mul_ps(m, m);
		for (int it = 0; it < 2; it++) {
			__m128 y2 = _mm_mul_ps(y, y);
			y = _mm_add_ps(_mm_mul_ps(_mm_set1_ps(0.8f), y),
			               _mm_mul_ps(_mm_set1_ps(0.2f), _mm_div_ps(m2, _mm_mul_ps(y2, y2))));
		}
		__m128 t = _mm_mul_ps(_mm_mul_ps(_mm_mul_ps(d, d), _mm_mul_ps(y, t5)), p4);
		__m128d tl = _mm_cvtps_pd(t), th = _mm_cvtps_pd(_mm_movehl_ps(t, t));
		if (colw) {
			__m128 cw = _mm_loadu_ps(colw + i);
			tl = _mm_mul_pd(tl, _mm_cvtps_pd(cw));
			th = _mm_mul_pd(th, _mm_cvtps_pd(_mm_movehl_ps(cw, cw)));
		}
		acc0 = _mm_add_pd(acc0, tl);
		acc1 = _mm_add_pd(acc1, th);
		if ((i & 15) == 12) {
			__m128d sacc = _mm_add_pd(acc0, acc1);
			double part = _mm_cvtsd_f64(_mm_add_sd(sacc, _mm_unpackhi_pd(sacc, sacc)));
			if (part >= stop)
				break;
		}
	}
	__m128d sacc = _mm_add_pd(acc0, acc1);
	double e = _mm_cvtsd_f64(_mm_add_sd(sacc, _mm_unpackhi_pd(sacc, sacc)));
	if (_mm_movemask_epi8(out))
		*bad = 1;
	if (e >= stop)
		return e;
	for (; i < n; i++) { /* the tail, with the exact term */
		float d = fabsf(qdq_int_f32(x[i], s, z, qmin, qmax) - x[i]);
		double t = pow((double)d, 2.4);
		e += colw ? colw[i] * t : t;
	}
	return e;
}

/* 1 and the parameters when the approximate search decided every step;
 * 0 when the exact search must decide. */
static int gparams24(const qc_qargs *a, const qc_clip_opts *c, const float *x, int64_t n,
                     const float *colw, float mn, float mx, float *scale, float *zp)
{
	const double lo = (1 - POW24_REL) / (1 + POW24_REL), hi = 1 / lo;
	float qmin, qmax;
	qc_qrange(a, &qmin, &qmax);
	int bad = 0;
	float bs = *scale, bz = *zp, ps = bs, pz = bz;
	double best = err24(x, n, colw, bs, bz, qmin, qmax, INFINITY, &bad);
	int since = 0;
	int steps = (int)(c->maxshrink * c->grid);
	for (int i = 1; i < steps && !bad; i++) {
		float p = 1.0f - (float)i / (float)c->grid;
		float s, z;
		qc_qparams(a, p * mn, p * mx, &s, &z);
		if (s == ps && z == pz) {
			if (++since >= c->patience)
				break;
			continue;
		}
		ps = s;
		pz = z;
		double e = err24(x, n, colw, s, z, qmin, qmax, best * hi, &bad);
		if (e >= best * hi) {         /* surely not below the best */
			if (++since >= c->patience)
				break;
		} else if (e < best * lo) {   /* surely below */
			best = e;
			bs = s;
			bz = z;
			since = 0;
		} else {
			return 0;
		}
	}
	if (bad)
		return 0;
	*scale = bs;
	*zp = bz;
	return 1;
}
#endif

static void gparams(const qc_qargs *a, const qc_clip_opts *c, const float *x, int64_t n,
                    const float *colw, float *scale, float *zp)
{
	float mn, mx;
	qc_minmax(x, (size_t)n, &mn, &mx);
	qc_qparams(a, mn, mx, scale, zp);
	if (!c || c->mode == QC_CLIP_MINMAX)
		return;
	float qmin, qmax;
	qc_qrange(a, &qmin, &qmax);
	int fast = !a->is_float && a->arith == QC_DT_F32;
	int monotone = 1;
	if (colw)
		for (int64_t i = 0; i < n; i++)
			if (!(colw[i] >= 0))
				monotone = 0;
#if defined(__SSE2__)
	if (fast && monotone && c->norm == 2.4 && gparams24(a, c, x, n, colw, mn, mx, scale, zp))
		return;
#endif
	double best = group_err_upto(a, fast, qmin, qmax, x, n, colw, *scale, *zp, c->norm, INFINITY);
	float ps = *scale, pz = *zp;
	int since = 0;
	int steps = (int)(c->maxshrink * c->grid);
	for (int i = 1; i < steps; i++) {
		float p = 1.0f - (float)i / (float)c->grid;
		float s, z;
		qc_qparams(a, p * mn, p * mx, &s, &z);
		if (s == ps && z == pz) { /* the candidate before, again: no improvement */
			if (++since >= c->patience)
				break;
			continue;
		}
		ps = s;
		pz = z;
		double e = group_err_upto(a, fast, qmin, qmax, x, n, colw, s, z, c->norm,
		                          monotone ? best : INFINITY);
		if (e < best) {
			best = e;
			*scale = s;
			*zp = z;
			since = 0;
		} else if (++since >= c->patience) {
			break;
		}
	}
}

// ---------------------------------------------------------------- run state

typedef struct run {
	qc_gptq *g;
	const qc_qargs *a;
	int64_t R, n;        /* stacked rows, columns */
	int64_t gs;          /* group size (cols for channel and tensor) */
	int64_t ng;          /* groups per row */
	int dynamic;         /* group parameters computed during the sweep */
	const float *colw;   /* MSE weights (undamped diag H, original order) or NULL */
	const int64_t *perm; /* sweep position -> original column */
	const uint8_t *dead; /* original order, or NULL */
	/* sweep block */
	int64_t i1, b;
	float *Wp;           /* [R, b] original weights (dead: 0), then D = Wp - Q */
	float *W1;           /* [R, b] GPTQ-updated weights; then S_B and E_B */
	float *Qb;           /* [R, b] dequantized codes */
	float *Eb;           /* [R, b] GPTQ's errors (w - q) / U[j][j] */
	const float *ubb;    /* [b, b] U_BB = inverse of V's diagonal block */
	const float *S;      /* [R, n] */
	int64_t rbase;       /* first row of this thread's share: block buffers
	                        hold rows rbase.. at rows 0.. */
	const float *V;      /* [n, n] the factor */
	int64_t wmax;        /* widest block */
	const int64_t *starts; /* block k is starts[k] .. starts[k + 1] */
	int64_t nblocks;
	/* error pass chunk */
	int64_t r0, m;
	float *X;            /* [2m, n] */
	/* H preparation */
	float *H;
	const int64_t *sigma;
	float *tmp;          /* [threads, n] */
} run;

static inline int64_t group_of(const run *st, int64_t c)
{
	return st->a->strategy == QC_QS_GROUP ? c / st->gs : 0;
}

static inline void row_params(const float *sc, const float *zp, int64_t g, float *s, float *z)
{
	*s = sc[g];
	*z = zp ? zp[g] : 0.0f;
}

/* ||W||^2 of rows [b, e) (weights already checked finite). */
static void w2_range(void *arg, int t, int64_t b, int64_t e)
{
	run *st = arg;
	for (int64_t r = b; r < e; r++) {
		const float *w = st->g->rows[r].w;
		double s = 0;
		for (int64_t c = 0; c < st->n; c++)
			s += (double)w[c] * w[c];
		st->g->sums[r].w2 = s;
	}
}

/* Up-front parameters of rows [b, e): the sweep's into sc/zp, or, for
 * dynamic groups, RTN's into rsc/rzp. Tensor parameters are per part and
 * set by the caller. */
static void params_range(void *arg, int t, int64_t b, int64_t e)
{
	run *st = arg;
	const qc_gptq_opts *o = &st->g->o;
	for (int64_t r = b; r < e; r++) {
		grow *gr = &st->g->rows[r];
		float *sc = st->dynamic ? gr->rsc : gr->sc;
		float *zp = st->dynamic ? gr->rzp : gr->zp;
		for (int64_t gi = 0; gi < st->ng; gi++) {
			int64_t c0 = gi * st->gs, len = st->n - c0 < st->gs ? st->n - c0 : st->gs;
			float s, z;
			gparams(st->a, &o->clip, gr->w + c0, len, st->colw ? st->colw + c0 : NULL, &s, &z);
			sc[gi] = s;
			if (zp)
				zp[gi] = z;
		}
	}
}

/* Method RTN: codes, deq and ||W - Q||^2 of rows [b, e). */
static void rtn_range(void *arg, int t, int64_t b, int64_t e)
{
	run *st = arg;
	for (int64_t r = b; r < e; r++) {
		grow *gr = &st->g->rows[r];
		double werr = 0;
		for (int64_t c = 0; c < st->n; c++) {
			float s, z;
			row_params(gr->rsc, gr->rzp, group_of(st, c), &s, &z);
			float q = qc_quantize_value(st->a, gr->w[c], s, z);
			qc_code_store(st->a, gr->code, (size_t)c, q);
			float dq = qc_dequantize_value(q, s, z);
			double d = (double)gr->w[c] - dq;
			werr += d * d;
			if (gr->deq)
				gr->deq[c] = dq;
		}
		st->g->sums[r].werr = werr;
	}
}

// ---------------------------------------------------------------- the Hessian

/* Order of decreasing value, ties by index (a stable sort). */
typedef struct dsort {
	float v;
	int64_t i;
} dsort;

static int dsort_cmp(const void *pa, const void *pb)
{
	const dsort *x = pa, *y = pb;
	if (x->v != y->v)
		return x->v > y->v ? -1 : 1;
	return x->i < y->i ? -1 : x->i > y->i;
}

/* Columns of rows [b, e) of H: row[j] = row[sigma[j]]. */
static void permute_cols_range(void *arg, int t, int64_t b, int64_t e)
{
	run *st = arg;
	float *tmp = st->tmp + (size_t)t * (size_t)st->n;
	for (int64_t i = b; i < e; i++) {
		float *row = st->H + i * st->n;
		for (int64_t j = 0; j < st->n; j++)
			tmp[j] = row[st->sigma[j]];
		memcpy(row, tmp, (size_t)st->n * sizeof *row);
	}
}

/* Strict lower triangle of H [n, n] = the mirror of its upper one, in
 * tiles of 64 x 64 (a transpose column by column would miss the cache on
 * every element), tile rows split over threads. */
static void mirror_range(void *arg, int t, int64_t b, int64_t e)
{
	run *st = arg;
	const int64_t n = st->n, T = 64;
	float *H = st->H;
	for (int64_t bi = b; bi < e; bi++) {
		int64_t i0 = bi * T, i1 = i0 + T < n ? i0 + T : n;
		for (int64_t j0 = 0; j0 <= i0; j0 += T) {
			int64_t j1 = j0 + T < n ? j0 + T : n;
			for (int64_t i = i0; i < i1; i++)
				for (int64_t j = j0; j < j1 && j < i; j++)
					H[i * n + j] = H[j * n + i];
		}
	}
}

/* y[0..n) -= x[0..n), four lanes at a time. */
static inline void sub_vec(float *restrict y, const float *restrict x, int64_t n)
{
	int64_t i = 0;
	for (; i + 4 <= n; i += 4) {
		qv4 xv, yv;
		memcpy(&xv, x + i, sizeof xv);
		memcpy(&yv, y + i, sizeof yv);
		yv -= xv;
		memcpy(y + i, &yv, sizeof yv);
	}
	for (; i < n; i++)
		y[i] -= x[i];
}

#define CHOL_NB 256

/*
 * Cholesky factorization A = L L^T of A [n, n] in place, reading and
 * writing only the lower triangle (diagonal included): the strict upper
 * triangle is left exactly as it was, also when the factorization fails,
 * which is what lets the caller keep a copy of A there.
 *
 * Blocked, right-looking, through the kernels: for each diagonal block of
 * CHOL_NB columns, qk_cholesky of the block (a small copy), the panel below
 * it L21 = A21 L11^-T as one GEMM with the block's triangular inverse, then
 * the trailing lower triangle A22 -= L21 L21^T block column by block
 * column (GEMMs; each diagonal block through a small product so that the
 * part above the diagonal is not written). n^3/3 flops like LAPACK's
 * potrf, and beyond A only work [(n + 2 nb) nb] floats (qk_cholesky on the
 * whole matrix would hold a transposed copy of it).
 * QC_ENUMERIC when A is not positive definite (to working precision).
 */
static int chol_lower(qk_ctx *kc, float *A, int64_t n, float *work)
{
	const int64_t nb = CHOL_NB;
	float *D = work, *P = work + 2 * nb * nb;
	for (int64_t k0 = 0; k0 < n; k0 += nb) {
		int64_t kb = n - k0 < nb ? n - k0 : nb, r0 = k0 + kb, m = n - r0;
		/* L11 = chol(A11): the block's lower triangle, factored as a copy */
		for (int64_t i = 0; i < kb; i++) {
			memcpy(D + i * kb, A + (k0 + i) * n + k0, (size_t)(i + 1) * sizeof *D);
			memset(D + i * kb + i + 1, 0, (size_t)(kb - i - 1) * sizeof *D);
		}
		QC_TRY(qk_cholesky(kc, D, kb, 0));
		for (int64_t i = 0; i < kb; i++)
			memcpy(A + (k0 + i) * n + k0, D + i * kb, (size_t)(i + 1) * sizeof *D);
		if (m == 0)
			break;
		/* L21 = A21 L11^-T, into P [m, kb] and back into A */
		QC_TRY(qk_tri_inverse(kc, D, kb, 0));
		QC_TRY(qk_gemm(kc, 0, 1, m, kb, kb, 1.0f, A + r0 * n + k0, n, D, kb, 0.0f, P, kb));
		for (int64_t i = 0; i < m; i++)
			memcpy(A + (r0 + i) * n + k0, P + i * kb, (size_t)kb * sizeof *P);
		/* A22 -= L21 L21^T on and below the diagonal */
		for (int64_t j0 = r0; j0 < n; j0 += nb) {
			int64_t jb = n - j0 < nb ? n - j0 : nb, below = n - j0 - jb;
			const float *Pj = P + (j0 - r0) * kb;
			if (below > 0)
				QC_TRY(qk_gemm(kc, 0, 1, below, jb, kb, -1.0f, Pj + jb * kb, kb, Pj, kb, 1.0f,
				               A + (j0 + jb) * n + j0, n));
			QC_TRY(qk_gemm(kc, 0, 1, jb, jb, kb, 1.0f, Pj, kb, Pj, kb, 0.0f, D, jb));
			for (int64_t i = 0; i < jb; i++)
				sub_vec(A + (j0 + i) * n + j0, D + i * jb, i + 1);
		}
	}
	return 0;
}

/*
 * H (upper triangle) -> V in place, the upper triangular factor of the
 * damped H in sweep order: P H P^T + lambda I = V V^T (see "factor" in the
 * header). Sets g->d0, g->dead, g->perm, *lambda and info's damp, retries
 * and dead.
 */
static int prepare_hessian(qc_gptq *g, float *H, int64_t n, const char *name, double *lambda,
                           qc_gptq_info *info)
{
	const qc_gptq_opts *o = &g->o;
	QC_TRY(GROW(g->d0, g->d0_cap, n));
	QC_TRY(GROW(g->dead, g->dead_cap, n));
	QC_TRY(GROW(g->perm, g->perm_cap, n));
	QC_TRY(GROW(g->sigma, g->sigma_cap, n));
	QC_TRY(GROW(g->mdiag, g->mdiag_cap, n));
	for (int64_t i = 0; i < n; i++)
		for (int64_t j = i; j < n; j++)
			if (!isfinite(H[i * n + j]))
				return qc_seterr(QC_ENUMERIC,
				                 "hessian of '%s' has a non-finite value at [%lld, %lld]",
				                 name, (long long)i, (long long)j);
	/* dead inputs (zero in every calibration token): diag 1, weights 0 */
	double sum = 0;
	int64_t ndead = 0;
	for (int64_t i = 0; i < n; i++) {
		float d = H[i * n + i];
		g->d0[i] = d;
		g->dead[i] = d == 0.0f;
		ndead += g->dead[i];
		sum += g->dead[i] ? 1.0 : d;
	}
	info->dead = ndead;
	double mean = sum / (double)n;
	/* sweep order: decreasing diag(H) for static act-order */
	if (o->method == QC_GPTQ_METHOD_GPTQ && o->actorder == QC_GPTQ_ACTORDER_STATIC) {
		dsort *ds = malloc((size_t)n * sizeof *ds);
		if (!ds)
			return qc_seterr(QC_ENOMEM, "out of memory");
		for (int64_t i = 0; i < n; i++) {
			ds[i].v = g->dead[i] ? 1.0f : g->d0[i];
			ds[i].i = i;
		}
		qsort(ds, (size_t)n, sizeof *ds, dsort_cmp);
		for (int64_t i = 0; i < n; i++)
			g->perm[i] = ds[i].i;
		free(ds);
	} else {
		for (int64_t i = 0; i < n; i++)
			g->perm[i] = i;
	}
	/* M = J P H P^T J in place: M[i][j] = H[sigma[i]][sigma[j]] with
	 * sigma[i] = perm[n-1-i]. H is made symmetric first; rows move along
	 * the cycles of sigma with one spare row, then each row's columns are
	 * gathered. */
	for (int64_t i = 0; i < n; i++)
		g->sigma[i] = g->perm[n - 1 - i];
	run st = { .g = g, .n = n, .H = H, .sigma = g->sigma };
	par_rows(g, (n + 63) / 64, 4, mirror_range, &st);
	float *tmp = malloc((size_t)n * (size_t)g->nthreads * sizeof *tmp);
	uint8_t *seen = calloc((size_t)n, 1);
	if (!tmp || !seen) {
		free(tmp);
		free(seen);
		return qc_seterr(QC_ENOMEM, "out of memory");
	}
	for (int64_t s = 0; s < n; s++) {
		if (seen[s])
			continue;
		seen[s] = 1;
		if (g->sigma[s] == s)
			continue;
		memcpy(tmp, H + s * n, (size_t)n * sizeof *tmp);
		for (int64_t i = s;;) {
			int64_t j = g->sigma[i];
			if (j == s) {
				memcpy(H + i * n, tmp, (size_t)n * sizeof *tmp);
				break;
			}
			memcpy(H + i * n, H + j * n, (size_t)n * sizeof *tmp);
			seen[j] = 1;
			i = j;
		}
	}
	free(seen);
	st.tmp = tmp;
	par_rows(g, n, 64, permute_cols_range, &st);
	free(tmp);
	for (int64_t i = 0; i < n; i++) {
		int64_t c = g->sigma[i];
		g->mdiag[i] = g->dead[c] ? 1.0f : g->d0[c];
	}
	/* damping, doubled while the factorization fails. A failed lower
	 * factorization leaves the strict upper triangle (the mirror of the
	 * lower one) as it was, so the matrix is restored from it. */
	QC_TRY(GROW(g->cwork, g->cwork_cap, (n + 2 * CHOL_NB) * CHOL_NB));
	double damp = o->damp;
	int retries = 0;
	for (;;) {
		double lam = damp * mean;
		for (int64_t i = 0; i < n; i++)
			H[i * n + i] = (float)((double)g->mdiag[i] + lam);
		int rc = chol_lower(g->kc, H, n, g->cwork);
		if (rc == 0) {
			*lambda = lam;
			break;
		}
		if (rc != QC_ENUMERIC)
			return rc;
		if (damp >= o->damp_max)
			return qc_seterr(QC_ENUMERIC,
			                 "hessian of '%s' is not positive definite even with damping %g",
			                 name, damp);
		retries++;
		damp = damp * 2 < o->damp_max ? damp * 2 : o->damp_max;
		par_rows(g, (n + 63) / 64, 4, mirror_range, &st);
	}
	info->damp = damp;
	info->retries = retries;
	/* V = J L J: clear the copy in the upper triangle and reverse the whole
	 * array (L's zero upper triangle becomes V's zero lower triangle) */
	for (int64_t i = 0; i + 1 < n; i++)
		memset(H + i * n + i + 1, 0, (size_t)(n - i - 1) * sizeof *H);
	for (int64_t k = 0, l = n * n - 1; k < l; k++, l--) {
		float t = H[k];
		H[k] = H[l];
		H[l] = t;
	}
	return 0;
}

// ---------------------------------------------------------------- errors: tr(A H A^T)

/* Rows [b, e) of the chunk: X[i] = Wp (sweep order, dead columns 0) and
 * X[m + i] = the same of W - Q_rtn; their squared norms. */
static void xrows_range(void *arg, int t, int64_t b, int64_t e)
{
	run *st = arg;
	for (int64_t i = b; i < e; i++) {
		int64_t r = st->r0 + i;
		const grow *gr = &st->g->rows[r];
		float *xw = st->X + i * st->n, *xr = st->X + (st->m + i) * st->n;
		double nw = 0, nr = 0;
		for (int64_t j = 0; j < st->n; j++) {
			int64_t c = st->perm[j];
			if (st->dead && st->dead[c]) {
				xw[j] = xr[j] = 0;
				continue;
			}
			float w = gr->w[c], s, z;
			row_params(gr->rsc, gr->rzp, group_of(st, c), &s, &z);
			float d = w - qc_qdq(st->a, w, s, z);
			xw[j] = w;
			xr[j] = d;
			nw += (double)w * w;
			nr += (double)d * d;
		}
		st->g->sums[r].n_w = nw;
		st->g->sums[r].n_r = nr;
	}
}

/* Squared norms of the rows of Y [rows, cols] (ld), added to acc[rows]. */
static void add_row_sq(const float *Y, int64_t rows, int64_t cols, int64_t ld, double *acc,
                       size_t acc_stride)
{
	for (int64_t i = 0; i < rows; i++) {
		const float *y = Y + i * ld;
		double s = 0;
		for (int64_t j = 0; j < cols; j++)
			s += (double)y[j] * y[j];
		*(double *)((char *)acc + (size_t)i * acc_stride) += s;
	}
}

/*
 * Rows that are independent (the error products, the sweep) are computed
 * by one thread per share of rows from start to end, each calling the
 * kernels through a context of its own with one thread: BLAS then runs in
 * the calling thread, and no thread waits on another or spins in the BLAS
 * pool between the many small steps of a sweep. The process-wide BLAS
 * thread count (kernels.h: the last context created sets it) is set back
 * from the solver's context when the shares are done.
 */
typedef struct share {
	run st;              /* the run, with this share's own block state */
	int rc;
	char msg[256];       /* the message of a failure (messages are per thread) */
} share;

static void share_fail(share *sh, int rc)
{
	snprintf(sh->msg, sizeof sh->msg, "%s", qc_errmsg());
	sh->rc = rc;
}

static void restore_blas_threads(const qc_gptq *g)
{
	qk_ctx *k;
	if (qk_ctx_new(&k, qk_ctx_device(g->kc), qk_ctx_threads(g->kc)) == 0)
		qk_ctx_free(k);
}

/* Run fn over shares of the R rows, one per thread (at least min_rows
 * each); the first failure's code and message are the result. */
static int run_shares(run *st, range_fn fn, int64_t min_rows)
{
	qc_gptq *g = st->g;
	share sh[64];
	int nt = g->nthreads;
	if (st->R / min_rows < nt)
		nt = (int)(st->R / min_rows);
	if (nt < 1)
		nt = 1;
	for (int t = 0; t < nt; t++) {
		sh[t].st = *st;
		sh[t].rc = 0;
		sh[t].msg[0] = 0;
	}
	qc_gptq one = *g; /* par_rows with exactly nt ranges */
	one.nthreads = nt;
	par_rows(&one, st->R, 1, fn, sh);
	restore_blas_threads(g);
	for (int t = 0; t < nt; t++)
		if (sh[t].rc)
			return qc_seterr(sh[t].rc, "%s", sh[t].msg);
	return 0;
}

/*
 * ||Wp V||^2 and ||(W - Q_rtn)p V||^2 for the rows [b, e) of a share, in
 * chunks of ERR_ROWS rows: X [2m, n] times the upper triangular V, one
 * column block J of width ERR_NB at a time, Y_J = X[:, :end(J)] V[:end(J), J]
 * (V's zero lower triangle makes the rectangular product the triangular
 * one).
 */
#define ERR_ROWS 128
#define ERR_NB 512

static void error_share(void *arg, int t, int64_t b, int64_t e)
{
	share *sh = (share *)arg + t;
	run *st = &sh->st;
	qc_gptq *g = st->g;
	const int64_t n = st->n, nb = n < ERR_NB ? n : ERR_NB;
	float *X = g->xbuf + (size_t)t * 2 * ERR_ROWS * n, *Y = g->ybuf + (size_t)t * 2 * ERR_ROWS * nb;
	qk_ctx *k1;
	int rc = qk_ctx_new(&k1, qk_ctx_device(g->kc), 1);
	if (rc) {
		share_fail(sh, rc);
		return;
	}
	for (int64_t r0 = b; r0 < e && rc == 0; r0 += ERR_ROWS) {
		int64_t mm = e - r0 < ERR_ROWS ? e - r0 : ERR_ROWS;
		st->r0 = r0;
		st->m = mm;
		st->X = X;
		xrows_range(st, t, 0, mm);
		for (int64_t j0 = 0; j0 < n && rc == 0; j0 += nb) {
			int64_t jb = n - j0 < nb ? n - j0 : nb;
			rc = qk_gemm(k1, 0, 0, 2 * mm, jb, j0 + jb, 1.0f, X, n, st->V + j0, n, 0.0f, Y, jb);
			add_row_sq(Y, mm, jb, jb, &g->sums[r0].xv_w, sizeof(rsum));
			add_row_sq(Y + mm * jb, mm, jb, jb, &g->sums[r0].xv_r, sizeof(rsum));
		}
	}
	if (rc)
		share_fail(sh, rc);
	qk_ctx_free(k1);
}

static int error_pass(run *st, const float *V)
{
	qc_gptq *g = st->g;
	const int64_t n = st->n, nb = n < ERR_NB ? n : ERR_NB;
	QC_TRY(GROW(g->xbuf, g->xbuf_cap, (int64_t)g->nthreads * 2 * ERR_ROWS * n));
	QC_TRY(GROW(g->ybuf, g->ybuf_cap, (int64_t)g->nthreads * 2 * ERR_ROWS * nb));
	st->V = V;
	return run_shares(st, error_share, 64);
}

// ---------------------------------------------------------------- the sweep

/* Gather block columns of rows [b, e): Wp (dead columns 0) and W1 = Wp. */
static void gather_range(void *arg, int t, int64_t b, int64_t e)
{
	run *st = arg;
	for (int64_t r = b; r < e; r++) {
		const grow *gr = &st->g->rows[r];
		float *wp = st->Wp + (r - st->rbase) * st->b, *w1 = st->W1 + (r - st->rbase) * st->b;
		double werr = 0;
		for (int64_t jj = 0; jj < st->b; jj++) {
			int64_t c = st->perm[st->i1 + jj];
			float w = gr->w[c];
			if (st->dead[c]) {
				werr += (double)w * w; /* Q is 0 there */
				w = 0;
			}
			wp[jj] = w1[jj] = w;
		}
		st->g->sums[r].werr += werr;
	}
}

/* y[0..n) -= a x[0..n), four lanes at a time (GCC at -O2 does not
 * vectorize the plain loop; each lane computes exactly what it would). */

static inline void axpy_sub(float *restrict y, const float *restrict x, float a, int64_t n)
{
	int64_t i = 0;
	qv4 va = { a, a, a, a };
	for (; i + 4 <= n; i += 4) {
		qv4 xv, yv;
		memcpy(&xv, x + i, sizeof xv);
		memcpy(&yv, y + i, sizeof yv);
		yv -= va * xv;
		memcpy(y + i, &yv, sizeof yv);
	}
	for (; i < n; i++)
		y[i] -= a * x[i];
}

/*
 * Columns [s0, s1) of the block, one by one, for rows [b, e): group
 * parameters when a group is entered (dynamic), quantize with the stored
 * scale, err = (w - q) / U[j][j] into Eb, and spread the error over the
 * rest of the sub-block through U_BB, as GPTQ does. The columns after s1
 * get the sub-block's errors afterwards, in one GEMM (sweep_share): the
 * reference's rank-1 updates of the whole rest of the block, lazily
 * batched once more. Sub-blocks end at group starts, so a group entered at
 * s0 sees every earlier column's update.
 */
static void inblock_range(run *st, int64_t b, int64_t e, int64_t s0, int64_t s1)
{
	const qc_qargs *a = st->a;
	const int64_t bw = st->b;
	const int fast = !a->is_float && a->arith == QC_DT_F32;
	float qmin, qmax;
	qc_qrange(a, &qmin, &qmax);
	for (int64_t r = b; r < e; r++) {
		grow *gr = &st->g->rows[r];
		int64_t o = (r - st->rbase) * bw;
		float *w1 = st->W1 + o, *qb = st->Qb + o, *eb = st->Eb + o;
		for (int64_t jj = s0; jj < s1; jj++) {
			int64_t j = st->i1 + jj, c = st->perm[j];
			int64_t gi = group_of(st, c);
			if (st->dynamic && j % st->gs == 0) {
				/* blocks hold whole groups, and w1 is up to date from
				 * s0 on: the group's updated weights (no act-order
				 * here, so c == j) */
				int64_t len = st->n - j < st->gs ? st->n - j : st->gs;
				float s, z;
				gparams(a, &st->g->o.clip, w1 + jj, len, st->colw ? st->colw + j : NULL, &s, &z);
				gr->sc[gi] = s;
				if (gr->zp)
					gr->zp[gi] = z;
			}
			float s, z, q;
			row_params(gr->sc, gr->zp, gi, &s, &z);
			if (fast)
				q = quant_int_f32(w1[jj], s, z, qmin, qmax);
			else
				q = qc_quantize_value(a, w1[jj], s, z);
			qc_code_store(a, gr->code, (size_t)c, q);
			float dq = qc_dequantize_value(q, s, z);
			if (gr->deq)
				gr->deq[c] = dq;
			qb[jj] = dq;
			const float *u = st->ubb + jj * bw;
			float err = (w1[jj] - dq) / u[jj];
			eb[jj] = err;
			/* from the aligned quad holding jj, so that every load meets
			 * an earlier store of the same quad (no store-forwarding
			 * stalls); the columns <= jj are done (U_BB is 0 below its
			 * diagonal, and w1[jj] is not read again) */
			int64_t k0 = jj & ~(int64_t)3;
			if (k0 < s1)
				axpy_sub(w1 + k0, u + k0, err, s1 - k0);
		}
	}
}

/* D = Wp - Q for rows [b, e) with its squared norms, and W1 = S_B (the
 * start of E_B = S_B + D V_BB). */
static void delta_range(void *arg, int t, int64_t b, int64_t e)
{
	run *st = arg;
	for (int64_t r = b; r < e; r++) {
		float *wp = st->Wp + (r - st->rbase) * st->b;
		const float *qb = st->Qb + (r - st->rbase) * st->b;
		double s = 0, se = 0;
		for (int64_t jj = 0; jj < st->b; jj++) {
			double de = (double)wp[jj] - qb[jj];
			float d = wp[jj] - qb[jj];
			wp[jj] = d;
			s += (double)d * d;
			se += de * de;
		}
		st->g->sums[r].n_g += s;
		st->g->sums[r].werr += se;
		memcpy(st->W1 + (r - st->rbase) * st->b, st->S + r * st->n + st->i1,
		       (size_t)st->b * sizeof(float));
	}
}

/* End of the next block starting at i1: blocks of `block` columns, or, when
 * groups are computed during the sweep, a whole number of groups (at most
 * `block` columns, or one group when groups are larger). */
static int64_t block_end(const run *st, int64_t i1, int64_t block)
{
	int64_t w = block;
	if (st->dynamic)
		w = st->gs <= block ? block / st->gs * st->gs : st->gs;
	return st->n - i1 < w ? st->n : i1 + w;
}

/* The blocks of the sweep: starts[k] .. starts[k + 1], k < the count. */
static int64_t block_starts(const run *st, int64_t block, int64_t *starts)
{
	int64_t k = 0;
	for (int64_t i1 = 0; i1 < st->n; i1 = block_end(st, i1, block))
		starts[k++] = i1;
	starts[k] = st->n;
	return k;
}

#define SUB 32 /* columns updated one by one before a GEMM updates the rest */

/* One thread's share of the sweep: its rows [b, e) through every block. */
static void sweep_share(void *arg, int t, int64_t b, int64_t e)
{
	share *sh = (share *)arg + t;
	run *st = &sh->st;
	qc_gptq *g = st->g;
	const int64_t n = st->n, rows = e - b, wmax = st->wmax;
	const float *V = st->V;
	qk_ctx *k1;
	int rc = qk_ctx_new(&k1, qk_ctx_device(g->kc), 1);
	if (rc) {
		share_fail(sh, rc);
		return;
	}
	st->rbase = b;
	st->Wp = g->blk[0] + b * wmax;
	st->W1 = g->blk[1] + b * wmax;
	st->Qb = g->blk[2] + b * wmax;
	st->Eb = g->blk[3] + b * wmax;
	for (int64_t k = 0; k < st->nblocks && rc == 0; k++) {
		int64_t i1 = st->starts[k], i2 = st->starts[k + 1], bw = i2 - i1;
		st->i1 = i1;
		st->b = bw;
		st->ubb = g->ubb + i1 * wmax;
		/* W1 = Wp_B + S_B U_BB: the weights as GPTQ has updated them */
		gather_range(st, t, b, e);
		if (i1 > 0 && (rc = qk_gemm(k1, 0, 0, rows, bw, bw, 1.0f, g->S + b * n + i1, n, st->ubb, bw,
		                            1.0f, st->W1, bw)) != 0)
			break;
		/* sub-blocks of SUB columns, cut at group starts when groups are
		 * computed during the sweep */
		for (int64_t s0 = 0; s0 < bw && rc == 0;) {
			int64_t s1 = s0 + SUB < bw ? s0 + SUB : bw;
			if (st->dynamic) {
				int64_t ng = ((i1 + s0) / st->gs + 1) * st->gs - i1;
				s1 = ng < s1 ? ng : s1;
			}
			inblock_range(st, b, e, s0, s1);
			if (s1 < bw)
				rc = qk_gemm(k1, 0, 0, rows, bw - s1, s1 - s0, -1.0f, st->Eb + s0, bw,
				             st->ubb + s0 * bw + s1, bw, 1.0f, st->W1 + s1, bw);
			s0 = s1;
		}
		if (rc)
			break;
		/* D_B = Wp_B - Q_B; E_B = S_B + D_B V_BB, whose squared norm is
		 * this block's share of tr(D H_damped D^T) */
		delta_range(st, t, b, e);
		if ((rc = qk_gemm(k1, 0, 0, rows, bw, bw, 1.0f, st->Wp, bw, V + i1 * n + i1, n, 1.0f, st->W1,
		                  bw)) != 0)
			break;
		add_row_sq(st->W1, rows, bw, bw, &g->sums[b].xv_g, sizeof(rsum));
		/* the lazy update of every later column: S[:, i2:] += D_B V[B, i2:] */
		if (i2 < n)
			rc = qk_gemm(k1, 0, 0, rows, n - i2, bw, 1.0f, st->Wp, bw, V + i1 * n + i2, n, 1.0f,
			             g->S + b * n + i2, n);
	}
	if (rc)
		share_fail(sh, rc);
	qk_ctx_free(k1);
}

static int sweep(run *st, const float *V)
{
	qc_gptq *g = st->g;
	const int64_t R = st->R, n = st->n, B = g->o.block;
	int64_t wmax = st->dynamic && st->gs > B ? st->gs : B;
	if (wmax > n)
		wmax = n;
	QC_TRY(GROW(g->S, g->S_cap, R * n));
	for (int i = 0; i < 4; i++)
		QC_TRY(GROW(g->blk[i], g->blk_cap[i], R * wmax));
	QC_TRY(GROW(g->ubb, g->ubb_cap, n * wmax));
	QC_TRY(GROW(g->starts, g->starts_cap, n + 1));
	memset(g->S, 0, (size_t)(R * n) * sizeof(float));
	st->S = g->S;
	st->V = V;
	st->wmax = wmax;
	st->starts = g->starts;
	st->nblocks = block_starts(st, B, g->starts);
	/* U_BB = V_BB^-1 of every block (U's diagonal blocks), at ubb + i1 wmax */
	for (int64_t k = 0; k < st->nblocks; k++) {
		int64_t i1 = g->starts[k], bw = g->starts[k + 1] - i1;
		float *u = g->ubb + i1 * wmax;
		for (int64_t i = 0; i < bw; i++)
			memcpy(u + i * bw, V + (i1 + i) * n + i1, (size_t)bw * sizeof(float));
		QC_TRY(qk_tri_inverse(g->kc, u, bw, 1));
	}
	return run_shares(st, sweep_share, 16);
}

// ---------------------------------------------------------------- run

int qc_gptq_run(qc_gptq *g, const qc_qargs *a, float *H, int64_t cols, qc_gptq_part *parts,
                int nparts, qc_gptq_info *info)
{
	double t0 = qc_now();
	qc_gptq_info dummy;
	if (!info)
		info = &dummy;
	memset(info, 0, sizeof *info);
	info->damp = NAN;
	if (!g || !a || !parts || nparts < 1 || cols < 1)
		return qc_seterr(QC_EINVAL, "gptq: invalid arguments");
	QC_TRY(qc_qargs_check(a));
	const qc_gptq_opts *o = &g->o;
	if (!H && o->method == QC_GPTQ_METHOD_GPTQ)
		return qc_seterr(QC_EINVAL, "gptq of '%s' needs a hessian (or method rtn)",
		                 parts[0].name ? parts[0].name : "?");
	int64_t R = 0;
	for (int p = 0; p < nparts; p++) {
		qc_gptq_part *pt = &parts[p];
		if (!pt->name)
			pt->name = "?";
		if (!pt->W || pt->rows < 1 || !pt->codes || !pt->scales || (!a->symmetric && !pt->zps))
			return qc_seterr(QC_EINVAL, "gptq: invalid part '%s'", pt->name);
		if (pt->rows > INT64_MAX / cols - R)
			return qc_seterr(QC_EINVAL, "gptq: too many rows");
		R += pt->rows;
		pt->err_out = pt->err_rtn = pt->err_w = NAN;
		pt->seconds = 0;
		int64_t bad = qc_first_nonfinite(pt->W, QC_DT_F32, (size_t)(pt->rows * cols));
		if (bad >= 0)
			return qc_seterr(QC_ENUMERIC, "weight '%s' has a non-finite value at [%lld, %lld]",
			                 pt->name, (long long)(bad / cols), (long long)(bad % cols));
	}
	const int64_t n = cols;
	const int64_t gs = a->strategy == QC_QS_GROUP ? a->group_size : n;
	const int64_t ng = qc_qgroups(a, n);
	const int dynamic = o->method == QC_GPTQ_METHOD_GPTQ && a->strategy == QC_QS_GROUP &&
	                    o->actorder == QC_GPTQ_ACTORDER_NONE;
	QC_TRY(GROW(g->rows, g->rows_cap, R));
	QC_TRY(GROW(g->sums, g->sums_cap, R));
	memset(g->sums, 0, (size_t)R * sizeof *g->sums);
	if (dynamic)
		QC_TRY(GROW(g->rpar, g->rpar_cap, 2 * R * ng));
	for (int p = 0, r = 0; p < nparts; p++) {
		qc_gptq_part *pt = &parts[p];
		for (int64_t lr = 0; lr < pt->rows; lr++, r++) {
			grow *gr = &g->rows[r];
			gr->w = pt->W + lr * n;
			gr->code = (uint8_t *)pt->codes + lr * n;
			gr->deq = pt->deq ? pt->deq + lr * n : NULL;
			int64_t off = a->strategy == QC_QS_TENSOR ? 0 : lr * ng;
			gr->sc = pt->scales + off;
			gr->zp = a->symmetric ? NULL : pt->zps + off;
			gr->rsc = dynamic ? g->rpar + (int64_t)r * ng : gr->sc;
			gr->rzp = a->symmetric ? NULL : dynamic ? g->rpar + (R + r) * ng : gr->zp;
			gr->part = p;
		}
	}
	run st = { .g = g, .a = a, .R = R, .n = n, .gs = gs, .ng = ng, .dynamic = dynamic };
	par_rows(g, R, 64, w2_range, &st);

	/* the Hessian: dead inputs, order, damping, factor V */
	double lambda = 0;
	if (H) {
		QC_TRY(prepare_hessian(g, H, n, parts[0].name, &lambda, info));
		st.perm = g->perm;
		st.dead = g->dead;
		if (o->clip_hweight)
			st.colw = g->d0;
	} else {
		QC_TRY(GROW(g->perm, g->perm_cap, n));
		for (int64_t i = 0; i < n; i++)
			g->perm[i] = i;
		st.perm = g->perm;
	}
	double t1 = qc_now();
	info->t_factor = t1 - t0;

	/* parameters fixed up front: per part for tensor, per row otherwise */
	if (a->strategy == QC_QS_TENSOR) {
		for (int p = 0; p < nparts; p++) {
			float mn = 0, mx = 0;
			for (int64_t r = 0; r < parts[p].rows; r++) {
				float rmn, rmx;
				qc_minmax(parts[p].W + r * n, (size_t)n, &rmn, &rmx);
				mn = rmn < mn ? rmn : mn;
				mx = rmx > mx ? rmx : mx;
			}
			float s, z;
			qc_qparams(a, mn, mx, &s, &z);
			parts[p].scales[0] = s;
			if (!a->symmetric)
				parts[p].zps[0] = z;
		}
	} else {
		par_rows(g, R, 4, params_range, &st);
	}
	double t2 = qc_now();

	/* tr(W H W^T) and RTN's tr(D H D^T) through V */
	if (H)
		QC_TRY(error_pass(&st, H));
	double t3 = qc_now();
	info->t_errors = t3 - t2;

	if (o->method == QC_GPTQ_METHOD_RTN)
		par_rows(g, R, 16, rtn_range, &st);
	else
		QC_TRY(sweep(&st, H));
	info->t_params = t2 - t1;
	info->t_sweep = qc_now() - t3;

	/* the working matrix is as large as the weights: give it back now, as
	 * the next Hessian (down_proj's) may be the larger need */
	free(g->S);
	g->S = NULL;
	g->S_cap = 0;

	/* per part: the row sums in row order */
	double total = qc_now() - t0;
	for (int p = 0, r = 0; p < nparts; p++) {
		rsum s = { 0 };
		for (int64_t lr = 0; lr < parts[p].rows; lr++, r++) {
			const rsum *x = &g->sums[r];
			s.w2 += x->w2;
			s.werr += x->werr;
			s.xv_w += x->xv_w;
			s.n_w += x->n_w;
			s.xv_r += x->xv_r;
			s.n_r += x->n_r;
			s.xv_g += x->xv_g;
			s.n_g += x->n_g;
		}
		qc_gptq_part *pt = &parts[p];
		pt->err_w = s.w2 > 0 ? s.werr / s.w2 : NAN;
		if (H) {
			/* tr(A H A^T) = ||A V||^2 - lambda ||A||^2 (dead columns of A are 0) */
			double den = s.xv_w - lambda * s.n_w;
			double rtn = s.xv_r - lambda * s.n_r;
			pt->err_rtn = den > 0 ? rtn / den : NAN;
			pt->err_out = o->method == QC_GPTQ_METHOD_RTN ? pt->err_rtn
			            : den > 0 ? (s.xv_g - lambda * s.n_g) / den : NAN;
		}
		pt->seconds = total * (double)parts[p].rows / (double)R;
	}
	return 0;
}
