/* qc_gptq.c - the GPTQ solver (see qc_gptq.h for the algorithm and contracts). */
#include "qc_gptq.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

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

struct qc_gptq {
	qk_ctx *kc;
	qc_gptq_opts o;
	/* host scratch, grown on demand and kept between runs */
	qk_gptq_mat *mats;   /* [nparts] as the sweep and RTN write them */
	qk_gptq_mat *rmats;  /* [nparts] with RTN's parameters (dynamic groups) */
	size_t mats_cap, rmats_cap;
	qk_gptq_sums *sums;  /* [R] */
	size_t sums_cap;
	float *rpar;         /* RTN parameters for dynamic groups [R, ng] x 2 */
	size_t rpar_cap;
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
	qk_gptq_mat *emats;  /* the rows the error products measure, as runs of rows */
	size_t emats_cap;
	uint8_t *esel;       /* [R] 1 for a row the error products measure */
	size_t esel_cap;
	qk_gptq_sums *rsums; /* [R] RTN's weight errors of sampled parts' rows */
	size_t rsums_cap;
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
	*out = g;
	return 0;
}

void qc_gptq_free(qc_gptq *g)
{
	if (!g)
		return;
	free(g->mats);
	free(g->rmats);
	free(g->sums);
	free(g->rpar);
	free(g->perm);
	free(g->sigma);
	free(g->d0);
	free(g->mdiag);
	free(g->dead);
	free(g->emats);
	free(g->esel);
	free(g->rsums);
	free(g);
}

// ---------------------------------------------------------------- the rows the errors measure

/*
 * err_out's denominator tr(W H W^T) and RTN's tr(D H D^T) cost rows
 * cols^2 flops each, as much as the sweep itself, and are the only work
 * that no quantization needs. A part of more than QC_GPTQ_ERR_ALL_ROWS rows
 * (and at least QC_GPTQ_ERR_MIN_COLS columns) measures them on a sample:
 * runs of ERR_RUN consecutive rows spread evenly over the part (so every
 * head of q/k/v and every stretch of an MLP's rows is in it), one row in
 * ERR_FRACTION and at least ERR_MIN_SAMPLE, so the products cost a quarter
 * of the sweep. Each total is then carried from the sample to the part by
 * a per-row quantity known for every row that is nearly proportional to
 * it (a ratio estimator): the diagonal part of the same quadratic form,
 * sum_j H[j][j] a_j^2 for a = w and a = w - q_rtn (an elementwise pass over
 * the part). Rows differ most in their weights on the few input channels
 * whose activations are far larger than the rest (real LLMs have them):
 * those dominate tr(w H w^T), and the diagonal form sees them, so the
 * estimate does not depend on which of those rows the sample holds (with
 * plain ||w||^2 in its place, a test below is 18 % off; with the diagonal
 * form, 1 %). err_out's numerator, the sweep's own, is every row's.
 */
#define ERR_FRACTION 8
#define ERR_MIN_SAMPLE 512
#define ERR_RUN 16

/* Runs of a part of `rows` rows and `cols` columns, 0 when every row is
 * measured. */
static int64_t err_runs(int64_t rows, int64_t cols, int exact)
{
	if (exact || rows <= QC_GPTQ_ERR_ALL_ROWS || cols < QC_GPTQ_ERR_MIN_COLS)
		return 0;
	int64_t want = (rows + ERR_FRACTION - 1) / ERR_FRACTION;
	if (want < ERR_MIN_SAMPLE)
		want = ERR_MIN_SAMPLE;
	int64_t runs = (want + ERR_RUN - 1) / ERR_RUN;
	/* runs must not touch: rows / runs >= ERR_RUN */
	if (runs * ERR_RUN * 2 > rows)
		return 0;
	return runs;
}

/* g->rsums[R]: for every row of the parts the error products sample (the
 * others' stay 0), ||w||^2 and RTN's ||w - q_rtn||^2 weighted per column
 * by diag(H) (hw2, herr): the diagonal part of tr(w H w^T) and of RTN's
 * tr(d H d^T). The codes it writes are overwritten by the sweep or RTN
 * that follows; deq is untouched. */
static int err_aux(qc_gptq *g, const qk_qspec *q, int nparts, int64_t R, int64_t n)
{
	QC_TRY(GROW(g->rsums, g->rsums_cap, R));
	memset(g->rsums, 0, (size_t)R * sizeof *g->rsums);
	int k = 0;
	for (int64_t p = 0, r = 0; p < nparts; r += g->rmats[p].rows, p++)
		if (err_runs(g->rmats[p].rows, n, g->o.exact_errors)) {
			g->emats[k] = g->rmats[p];
			g->emats[k].deq = NULL;
			g->emats[k].sums = g->rsums + r;
			k++;
		}
	return k ? qk_gptq_rtn(g->kc, q, g->emats, k, n, g->d0) : 0;
}

int64_t qc_gptq_err_rows(int64_t rows, int64_t cols, int exact)
{
	int64_t runs = err_runs(rows, cols, exact);
	return runs ? runs * ERR_RUN : rows;
}

/* g->emats[*ne] and g->esel[R]: the runs of rows of g->rmats[nparts] that
 * the error products measure. */
static int err_sample(qc_gptq *g, const qc_qargs *a, int nparts, int64_t R, int64_t n, int *ne)
{
	const int64_t ng = qc_qgroups(a, n);
	const int tensor = a->strategy == QC_QS_TENSOR;
	int64_t total = 0;
	for (int p = 0; p < nparts; p++) {
		int64_t runs = err_runs(g->rmats[p].rows, n, g->o.exact_errors);
		total += runs ? runs : 1;
	}
	if (total > INT_MAX)
		return qc_seterr(QC_EINVAL, "gptq: too many parts");
	QC_TRY(GROW(g->emats, g->emats_cap, total));
	QC_TRY(GROW(g->esel, g->esel_cap, R));
	int k = 0;
	for (int64_t p = 0, r = 0; p < nparts; r += g->rmats[p].rows, p++) {
		const qk_gptq_mat *m = &g->rmats[p];
		int64_t runs = err_runs(m->rows, n, g->o.exact_errors);
		if (!runs) {
			g->emats[k++] = *m;
			memset(g->esel + r, 1, (size_t)m->rows);
			continue;
		}
		memset(g->esel + r, 0, (size_t)m->rows);
		for (int64_t i = 0; i < runs; i++) {
			int64_t at = i * m->rows / runs, off = tensor ? 0 : at * ng;
			g->emats[k++] = (qk_gptq_mat){ .W = m->W + at * n, .rows = ERR_RUN,
			                               .scales = m->scales + off,
			                               .zps = m->zps ? m->zps + off : NULL,
			                               .sums = m->sums + at };
			memset(g->esel + r + at, 1, ERR_RUN);
		}
	}
	*ne = k;
	return 0;
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

/*
 * H (upper triangle) -> V in place, the upper triangular factor of the
 * damped H in sweep order: P H P^T + lambda I = V V^T (see "factor" in the
 * header). Only the diagonal comes to the host; the rest is kernel work.
 * Sets g->d0, g->dead, g->perm, *lambda and info's damp, retries and dead.
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
	int64_t bad;
	QC_TRY(qk_gptq_hdiag(g->kc, H, n, g->d0, &bad));
	if (bad >= 0)
		return qc_seterr(QC_ENUMERIC, "hessian of '%s' has a non-finite value at [%lld, %lld]",
		                 name, (long long)(bad / n), (long long)(bad % n));
	/* dead inputs (zero in every calibration token): diag 1, weights 0 */
	double sum = 0;
	int64_t ndead = 0;
	for (int64_t i = 0; i < n; i++) {
		float d = g->d0[i];
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
	/* M = J P H P^T J: M[i][j] = H[sigma[i]][sigma[j]], sigma[i] = perm[n-1-i] */
	for (int64_t i = 0; i < n; i++)
		g->sigma[i] = g->perm[n - 1 - i];
	QC_TRY(qk_gptq_permute(g->kc, H, n, g->sigma));
	for (int64_t i = 0; i < n; i++) {
		int64_t c = g->sigma[i];
		g->mdiag[i] = g->dead[c] ? 1.0f : g->d0[c];
	}
	/* damping, doubled while the factorization fails (a failed attempt
	 * leaves M as it was) */
	double damp = o->damp;
	int retries = 0;
	for (;;) {
		double lam = damp * mean;
		int rc = qk_gptq_factor(g->kc, H, n, g->mdiag, lam);
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
	}
	info->damp = damp;
	info->retries = retries;
	return 0;
}

// ---------------------------------------------------------------- run

/* CPU seconds of the process so far, every thread */
static double cpu_now(void)
{
	struct rusage ru;
	if (getrusage(RUSAGE_SELF, &ru) != 0)
		return 0;
	return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + (double)ru.ru_stime.tv_sec +
	       ru.ru_stime.tv_usec * 1e-6;
}

int qc_gptq_run(qc_gptq *g, const qc_qargs *a, float *H, int64_t cols, qc_gptq_part *parts,
                int nparts, qc_gptq_info *info)
{
	double t0 = qc_now(), c0 = cpu_now();
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
		int64_t bad;
		QC_TRY(qk_nonfinite(g->kc, pt->W, (size_t)(pt->rows * cols), &bad));
		if (bad >= 0)
			return qc_seterr(QC_ENUMERIC, "weight '%s' has a non-finite value at [%lld, %lld]",
			                 pt->name, (long long)(bad / cols), (long long)(bad % cols));
	}
	const int64_t n = cols;
	const int64_t ng = qc_qgroups(a, n);
	const int dynamic = o->method == QC_GPTQ_METHOD_GPTQ && a->strategy == QC_QS_GROUP &&
	                    o->actorder == QC_GPTQ_ACTORDER_NONE;
	const qk_qspec q = {
		.is_float = a->is_float, .bits = a->bits, .symmetric = a->symmetric,
		.group = a->strategy == QC_QS_GROUP ? a->group_size : n,
		.tensor = a->strategy == QC_QS_TENSOR, .scale_dtype = a->scale_dtype, .arith = a->arith,
		.mse = o->clip.mode == QC_CLIP_MSE, .grid = o->clip.grid, .patience = o->clip.patience,
		.maxshrink = o->clip.maxshrink, .norm = o->clip.norm,
	};
	QC_TRY(GROW(g->sums, g->sums_cap, R));
	QC_TRY(GROW(g->mats, g->mats_cap, nparts));
	QC_TRY(GROW(g->rmats, g->rmats_cap, nparts));
	memset(g->sums, 0, (size_t)R * sizeof *g->sums);
	if (dynamic)
		QC_TRY(GROW(g->rpar, g->rpar_cap, 2 * R * ng));
	/* the parts as the kernels see them; RTN's parameters (rmats) are the
	 * parts' own unless groups are computed during the sweep */
	for (int64_t p = 0, r = 0; p < nparts; r += parts[p].rows, p++) {
		qc_gptq_part *pt = &parts[p];
		g->mats[p] = (qk_gptq_mat){ .W = pt->W, .rows = pt->rows, .codes = pt->codes,
		                            .scales = pt->scales, .zps = a->symmetric ? NULL : pt->zps,
		                            .deq = pt->deq, .sums = g->sums + r };
		g->rmats[p] = g->mats[p];
		if (dynamic) {
			g->rmats[p].scales = g->rpar + (int64_t)r * ng;
			g->rmats[p].zps = a->symmetric ? NULL : g->rpar + (R + r) * ng;
		}
	}

	/* the Hessian: dead inputs, order, damping, factor V */
	double lambda = 0;
	const float *colw = NULL;
	if (H) {
		QC_TRY(prepare_hessian(g, H, n, parts[0].name, &lambda, info));
		if (o->clip_hweight)
			colw = g->d0;
	} else {
		QC_TRY(GROW(g->perm, g->perm_cap, n));
		for (int64_t i = 0; i < n; i++)
			g->perm[i] = i;
	}
	double t1 = qc_now(), c1 = cpu_now();
	info->t_factor = t1 - t0;
	info->c_factor = c1 - c0;

	/* parameters fixed up front: per part for tensor, per row otherwise */
	if (a->strategy == QC_QS_TENSOR) {
		for (int p = 0; p < nparts; p++) {
			float mn, mx, s, z;
			QC_TRY(qk_gptq_minmax(g->kc, parts[p].W, (size_t)(parts[p].rows * n), &mn, &mx));
			qc_qparams(a, mn, mx, &s, &z);
			parts[p].scales[0] = s;
			if (!a->symmetric)
				parts[p].zps[0] = z;
		}
	} else {
		QC_TRY(qk_gptq_params(g->kc, &q, g->rmats, nparts, n, colw));
	}
	double t2 = qc_now(), c2 = cpu_now();

	/* tr(W H W^T) and RTN's tr(D H D^T) through V, on the measured rows */
	if (H) {
		int ne = 0;
		QC_TRY(err_sample(g, a, nparts, R, n, &ne));
		QC_TRY(qk_gptq_errors(g->kc, &q, g->emats, ne, n, H, g->perm, g->dead));
		/* method RTN gets the same sums from its own pass below */
		if (o->method == QC_GPTQ_METHOD_GPTQ)
			QC_TRY(err_aux(g, &q, nparts, R, n));
	}
	double t3 = qc_now(), c3 = cpu_now();
	info->t_errors = t3 - t2;
	info->c_errors = c3 - c2;

	if (o->method == QC_GPTQ_METHOD_RTN)
		QC_TRY(qk_gptq_rtn(g->kc, &q, g->rmats, nparts, n, H ? g->d0 : NULL));
	else
		QC_TRY(qk_gptq_sweep(g->kc, &q, g->mats, nparts, n, H, g->perm, g->dead, colw, o->block,
		                     dynamic));
	info->t_params = t2 - t1;
	info->c_params = c2 - c1;
	info->t_sweep = qc_now() - t3;
	info->c_sweep = cpu_now() - c3;

	/* per part: the row sums in row order; the error products' over the
	 * measured rows, carried to the part when sampled by the diagonal
	 * forms (err_aux's, or method RTN's own pass's) */
	const qk_gptq_sums *aux = o->method == QC_GPTQ_METHOD_RTN ? g->sums : g->rsums;
	double total = qc_now() - t0;
	for (int64_t p = 0, r = 0; p < nparts; p++) {
		qk_gptq_sums s = { 0 };
		double aw = 0, aw_s = 0, ar = 0, ar_s = 0; /* diagonal forms, all rows and sample */
		int sampled = H && err_runs(parts[p].rows, n, o->exact_errors) > 0;
		for (int64_t lr = 0; lr < parts[p].rows; lr++, r++) {
			const qk_gptq_sums *x = &g->sums[r];
			s.w2 += x->w2;
			s.werr += x->werr;
			s.xv_g += x->xv_g;
			s.n_g += x->n_g;
			if (H && g->esel[r]) {
				s.xv_w += x->xv_w;
				s.n_w += x->n_w;
				s.xv_r += x->xv_r;
				s.n_r += x->n_r;
				aw_s += aux[r].hw2;
				ar_s += aux[r].herr;
			}
			if (sampled) {
				aw += aux[r].hw2;
				ar += aux[r].herr;
			}
		}
		qc_gptq_part *pt = &parts[p];
		pt->err_w = s.w2 > 0 ? s.werr / s.w2 : NAN;
		if (H) {
			/* tr(A H A^T) = ||A V||^2 - lambda ||A||^2 (dead columns of A are 0) */
			double den = s.xv_w - lambda * s.n_w;
			double rtn = s.xv_r - lambda * s.n_r;
			if (sampled) {
				den = aw_s > 0 ? den * (aw / aw_s) : 0;
				rtn = ar_s > 0 ? rtn * (ar / ar_s) : 0;
			}
			pt->err_rtn = den > 0 ? rtn / den : NAN;
			pt->err_out = o->method == QC_GPTQ_METHOD_RTN ? pt->err_rtn
			            : den > 0 ? (s.xv_g - lambda * s.n_g) / den : NAN;
		}
		pt->seconds = total * (double)parts[p].rows / (double)R;
	}
	return 0;
}
