/* qc_qout.c - naive-quantized checkpoint writer (see qc_qout.h). */
#include "qc_qout.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qc_err.h"
#include "qc_json.h"
#include "qc_num.h"
#include "qc_vec.h"

struct qc_qout {
	qc_ckpt_writer *w;
	qc_ckpt *in;
	const qc_qscheme *s;
	int n_layers;
	struct passed *pass;    /* input tensors written in place, held until the shard's end */
	size_t n_pass, cap_pass;
};

struct passed {
	char *name;
	int release;            /* the release was handed over (QC_QOUT_PASS) */
};

static void release_passed(qc_qout *q)
{
	for (size_t i = 0; i < q->n_pass; i++) {
		qc_ckpt_unhold(q->in, q->pass[i].name);
		if (q->pass[i].release)
			qc_ckpt_release(q->in, q->pass[i].name);
		free(q->pass[i].name);
	}
	q->n_pass = 0;
}

/* Small files of the input that the output writes anew. */
static int carried(const char *name)
{
	return strcmp(name, "config.json") != 0 && strcmp(name, QC_MANIFEST_NAME) != 0 &&
	       strcmp(name, QC_REPORT_NAME) != 0 && strcmp(name, "model.safetensors.index.json") != 0;
}

static int write_config(qc_qout *q, const qc_config *cfg)
{
	if (!q->s) { /* a dense output: the input's config.json, byte for byte */
		const void *data;
		size_t len;
		QC_TRY(qc_ckpt_file(q->in, "config.json", &data, &len));
		return qc_ckw_add_file(q->w, "config.json", data, len);
	}
	json_t *qc;
	QC_TRY(qc_qscheme_to_json(q->s, &qc));
	/* work on a copy so the caller's parsed config stays as it was */
	json_t *doc = json_deep_copy(cfg->raw);
	if (!doc) {
		json_decref(qc);
		return qc_seterr(QC_ENOMEM, "out of memory");
	}
	json_object_set_new(doc, "quantization_config", qc);
	char *t;
	size_t n;
	int rc = qc_json_dump(doc, &t, &n);
	json_decref(doc);
	if (rc)
		return rc;
	rc = qc_ckw_add_file(q->w, "config.json", t, n);
	free(t);
	return rc;
}

int qc_qout_open(qc_qout **out, qc_ckpt *in, const qc_config *cfg, const qc_qscheme *s,
                 const qc_qout_opts *o)
{
	*out = NULL;
	qc_qout *q = calloc(1, sizeof *q);
	if (!q)
		return qc_seterr(QC_ENOMEM, "out of memory");
	q->in = in;
	q->s = s;
	q->n_layers = (int)cfg->num_hidden_layers;
	qc_ckw_opts wo;
	memset(&wo, 0, sizeof wo);
	wo.n_shards = q->n_layers;
	wo.force = o->force;
	wo.keep_partial = o->keep_partial;
	wo.tool = o->tool;
	wo.version = QC_VERSION;
	wo.argc = o->argc;
	wo.argv = o->argv;
	int rc = qc_ckw_open(&q->w, o->path, &wo);
	if (rc) {
		free(q);
		return rc;
	}
	rc = write_config(q, cfg);
	for (size_t i = 0; rc == 0 && i < qc_ckpt_file_count(in); i++) {
		const char *name = qc_ckpt_file_name(in, i);
		const void *data;
		size_t len;
		if (!carried(name))
			continue;
		if ((rc = qc_ckpt_file(in, name, &data, &len)) == 0)
			rc = qc_ckw_add_file(q->w, name, data, len);
	}
	if (rc) {
		qc_qout_abort(q);
		return rc;
	}
	*out = q;
	return 0;
}

/* Convert n floats to the scale dtype into a new buffer. */
static void *to_dtype(qc_dtype dt, const float *v, size_t n)
{
	void *b = malloc(n * qc_dtype_size(dt) + 1);
	if (b)
		qc_from_f32(b, dt, v, n);
	return b;
}

/* Shape of a Linear's weight_scale (and zero point) for a weight [rows,
 * cols]: [rows, groups] per group or channel, [1] per tensor; returns ndim. */
static int scale_shape(const qc_qargs *a, int64_t rows, int64_t cols, int64_t shape[2])
{
	if (a->strategy == QC_QS_TENSOR) {
		shape[0] = 1;
		return 1;
	}
	shape[0] = rows;
	shape[1] = qc_qgroups(a, cols);
	return 2;
}

int qc_qout_linear(qc_qout *q, const char *module, int64_t rows, int64_t cols,
                   const void *codes, const float *scales, const float *zps,
                   const float *input_scale)
{
	if (!q->s)
		return qc_seterr(QC_EINVAL, "'%s': a dense output holds no quantized Linears", module);
	const qc_qargs *a = &q->s->weights;
	char name[512];
	int64_t wshape[2] = { rows, cols }, sshape[2];
	int sdims = scale_shape(a, rows, cols, sshape);
	size_t nscale = (size_t)qc_numel(sdims, sshape);
	size_t ncodes = (size_t)(rows * cols);
	void *c = malloc(ncodes ? ncodes : 1);
	void *sc = to_dtype(a->scale_dtype, scales, nscale);
	if (!c || !sc) {
		free(c);
		free(sc);
		return qc_seterr(QC_ENOMEM, "out of memory for '%s'", module);
	}
	memcpy(c, codes, ncodes);
	snprintf(name, sizeof name, "%s.weight", module);
	int rc = qc_ckw_add_tensor(q->w, name, a->is_float ? QC_DT_F8_E4M3 : QC_DT_I8, 2, wshape, c, 1);
	snprintf(name, sizeof name, "%s.weight_scale", module);
	if (rc == 0)
		rc = qc_ckw_add_tensor(q->w, name, a->scale_dtype, sdims, sshape, sc, 1);
	else
		free(sc);
	if (rc == 0 && zps && !a->symmetric) {
		int8_t *z = malloc(nscale);
		if (!z)
			return qc_seterr(QC_ENOMEM, "out of memory for '%s'", module);
		for (size_t i = 0; i < nscale; i++)
			z[i] = (int8_t)zps[i];
		snprintf(name, sizeof name, "%s.weight_zero_point", module);
		rc = qc_ckw_add_tensor(q->w, name, QC_DT_I8, sdims, sshape, z, 1);
	}
	if (rc == 0 && input_scale) {
		int64_t one = 1;
		void *is = to_dtype(a->scale_dtype, input_scale, 1);
		if (!is)
			return qc_seterr(QC_ENOMEM, "out of memory for '%s'", module);
		snprintf(name, sizeof name, "%s.input_scale", module);
		rc = qc_ckw_add_tensor(q->w, name, a->scale_dtype, 1, &one, is, 1);
	}
	return rc;
}

int qc_qout_tensor(qc_qout *q, const char *name, qc_dtype dt, int ndim, const int64_t *shape,
                   const void *data)
{
	int64_t nb = qc_nbytes(dt, qc_numel(ndim, shape));
	if (nb < 0)
		return qc_seterr(QC_EINVAL, "bad shape for tensor '%s'", name);
	void *c = malloc(nb ? (size_t)nb : 1);
	if (!c)
		return qc_seterr(QC_ENOMEM, "out of memory for '%s'", name);
	memcpy(c, data, (size_t)nb);
	return qc_ckw_add_tensor(q->w, name, dt, ndim, shape, c, 1);
}

int qc_qout_give(qc_qout *q, const char *name, qc_dtype dt, int ndim, const int64_t *shape,
                 void *data)
{
	return qc_ckw_add_tensor(q->w, name, dt, ndim, shape, data, 1);
}

int qc_qout_copy(qc_qout *q, const qc_tensor *t)
{
	return qc_qout_tensor(q, t->name, t->dtype, t->ndim, t->shape, t->data);
}

static int pass_view(qc_qout *q, const qc_tensor *t, int release)
{
	QC_TRY(qc_grow((void **)&q->pass, &q->cap_pass, q->n_pass + 1, sizeof *q->pass));
	char *name = strdup(t->name);
	if (!name)
		return qc_seterr(QC_ENOMEM, "out of memory");
	int rc = qc_ckpt_hold(q->in, t->name);
	if (rc) {
		free(name);
		return rc;
	}
	/* unheld (and released, when handed over) at the shard's end either
	 * way: the writer no longer needs it then */
	q->pass[q->n_pass].name = name;
	q->pass[q->n_pass++].release = release;
	return qc_ckw_add_tensor(q->w, t->name, t->dtype, t->ndim, t->shape, t->data, 0);
}

int qc_qout_pass(qc_qout *q, const qc_tensor *t)
{
	return pass_view(q, t, 1);
}

int qc_qout_share(qc_qout *q, const qc_tensor *t)
{
	return pass_view(q, t, 0);
}

int qc_qout_copy_group(qc_qout *q, int group, qc_qout_skip_fn skip, void *ctx, qc_qout_how how)
{
	const char *const *names;
	size_t n;
	QC_TRY(qc_ckpt_group_names(q->in, group, &names, &n));
	/* the names belong to the reader until its next group_names call; copy
	 * them before getting tensors, which may read forward */
	char **mine = calloc(n + 1, sizeof *mine);
	if (!mine)
		return qc_seterr(QC_ENOMEM, "out of memory");
	int rc = 0;
	for (size_t i = 0; i < n && rc == 0; i++)
		if (!(mine[i] = strdup(names[i])))
			rc = qc_seterr(QC_ENOMEM, "out of memory");
	for (size_t i = 0; i < n && rc == 0; i++) {
		if (skip && skip(ctx, mine[i]))
			continue;
		const qc_tensor *t;
		if ((rc = qc_ckpt_get(q->in, mine[i], &t)) != 0)
			break;
		if (how != QC_QOUT_COPY) {
			rc = pass_view(q, t, how == QC_QOUT_PASS);
		} else {
			rc = qc_qout_copy(q, t);
			if (group == QC_GROUP_POST)
				qc_ckpt_release(q->in, mine[i]);
		}
	}
	for (size_t i = 0; i < n; i++)
		free(mine[i]);
	free(mine);
	return rc;
}

/* Append a declaration (name copied into names[]). */
static int declare(qc_tensor **d, size_t *n, size_t *cap, const char *name, qc_dtype dt, int ndim,
                   const int64_t *shape)
{
	QC_TRY(qc_grow((void **)d, cap, *n + 1, sizeof **d));
	qc_tensor *t = &(*d)[*n];
	memset(t, 0, sizeof *t);
	if (!(t->name = strdup(name)))
		return qc_seterr(QC_ENOMEM, "out of memory");
	t->dtype = dt;
	t->ndim = ndim;
	memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
	(*n)++;
	return 0;
}

/* The tensors qc_qout_linear writes for a weight of shape [rows, cols]. */
static int declare_linear(qc_qout *q, qc_tensor **d, size_t *n, size_t *cap, const char *weight,
                          int64_t rows, int64_t cols)
{
	const qc_qargs *a = &q->s->weights;
	size_t ml = strlen(weight) - strlen(".weight");
	char name[512];
	int64_t wshape[2] = { rows, cols }, sshape[2], one = 1;
	int sdims = scale_shape(a, rows, cols, sshape);
	QC_TRY(declare(d, n, cap, weight, a->is_float ? QC_DT_F8_E4M3 : QC_DT_I8, 2, wshape));
	snprintf(name, sizeof name, "%.*s.weight_scale", (int)ml, weight);
	QC_TRY(declare(d, n, cap, name, a->scale_dtype, sdims, sshape));
	if (!a->symmetric) {
		snprintf(name, sizeof name, "%.*s.weight_zero_point", (int)ml, weight);
		QC_TRY(declare(d, n, cap, name, QC_DT_I8, sdims, sshape));
	}
	if (q->s->act == QC_ACT_STATIC_TENSOR) {
		snprintf(name, sizeof name, "%.*s.input_scale", (int)ml, weight);
		QC_TRY(declare(d, n, cap, name, a->scale_dtype, 1, &one));
	}
	return 0;
}

static int declare_group(qc_qout *q, int group, qc_qout_skip_fn quantized, void *ctx,
                         qc_tensor **d, size_t *n, size_t *cap)
{
	const char *const *names;
	size_t k;
	QC_TRY(qc_ckpt_group_names(q->in, group, &names, &k));
	/* the names belong to the reader until its next group_names call, which
	 * qc_ckpt_get does not make; getting a directory's view reads no data */
	for (size_t i = 0; i < k; i++) {
		const qc_tensor *t;
		QC_TRY(qc_ckpt_get(q->in, names[i], &t));
		int lin = quantized && q->s && t->ndim == 2 && quantized(ctx, t->name);
		if (lin < 0)
			return lin;
		if (lin)
			QC_TRY(declare_linear(q, d, n, cap, t->name, t->shape[0], t->shape[1]));
		else
			QC_TRY(declare(d, n, cap, t->name, t->dtype, t->ndim, t->shape));
	}
	return 0;
}

int qc_qout_plan_layer(qc_qout *q, int layer, qc_qout_skip_fn quantized, void *ctx)
{
	if (qc_ckw_is_stream(q->w) || qc_ckpt_is_stream(q->in))
		return 0;
	qc_tensor *d = NULL;
	size_t n = 0, cap = 0;
	int rc = 0;
	if (layer == 0)
		rc = declare_group(q, QC_GROUP_PRE, NULL, NULL, &d, &n, &cap);
	if (rc == 0)
		rc = declare_group(q, layer, quantized, ctx, &d, &n, &cap);
	/* an fp8 kv_cache_scheme: the static k/v scales qfp8 adds per layer */
	for (int i = 0; rc == 0 && q->s && q->s->kv_cache_fp8 && i < 2; i++) {
		char name[128];
		int64_t one = 1;
		snprintf(name, sizeof name, "model.layers.%d.self_attn.%s", layer, i ? "v_scale" : "k_scale");
		rc = declare(&d, &n, &cap, name, q->s->weights.scale_dtype, 1, &one);
	}
	if (rc == 0 && layer == q->n_layers - 1)
		rc = declare_group(q, QC_GROUP_POST, NULL, NULL, &d, &n, &cap);
	if (rc == 0)
		rc = qc_ckw_plan_shard(q->w, d, n, layer == q->n_layers - 1 ? QC_GROUP_POST : layer);
	for (size_t i = 0; i < n; i++)
		free((char *)d[i].name);
	free(d);
	return rc;
}

int qc_qout_end_layer(qc_qout *q, int layer)
{
	int rc = qc_ckw_end_shard(q->w, layer == q->n_layers - 1 ? QC_GROUP_POST : layer);
	release_passed(q);
	return rc;
}

void qc_qout_plan_stats(const qc_qout *q, int *held, int *broken)
{
	qc_ckw_plan_stats(q->w, held, broken);
}

int qc_qout_shard_hash(const qc_qout *q, int layer, qc_h128 *h)
{
	char sname[64];
	uint64_t size;
	qc_ckpt_shard_name(sname, layer + 1, q->n_layers);
	return qc_ckw_member_hash(q->w, sname, &size, h);
}

int qc_qout_token_set(qc_qout *q, const char *role, qc_h128 hash)
{
	return qc_ckw_add_token_set(q->w, role, hash);
}

int qc_qout_close(qc_qout *q, const qc_report *r)
{
	int rc = 0;
	if (r && qc_report_count(r) > 0) {
		char *t;
		size_t n;
		if ((rc = qc_report_text(r, 0, &t, &n)) == 0) {
			rc = qc_ckw_add_file(q->w, QC_REPORT_NAME, t, n);
			free(t);
		}
	}
	/* provenance: carry the input's manifest (history, base, token sets),
	 * or, for a checkpoint without one, record it as the base by the
	 * fingerprint of the tensors we read */
	const qc_manifest *m = NULL;
	if (rc == 0)
		rc = qc_ckpt_manifest(q->in, &m);
	if (rc == 0 && m) {
		rc = qc_ckw_inherit(q->w, m);
	} else if (rc == 0) {
		char fp[33];
		if ((rc = qc_ckpt_fingerprint(q->in, fp)) == 0)
			rc = qc_ckw_set_base(q->w, fp, qc_ckpt_name(q->in));
	}
	if (rc) {
		qc_qout_abort(q);
		return rc;
	}
	rc = qc_ckw_close(q->w);
	release_passed(q);
	free(q->pass);
	free(q);
	return rc;
}

void qc_qout_abort(qc_qout *q)
{
	if (!q)
		return;
	qc_ckw_abort(q->w);
	release_passed(q);
	free(q->pass);
	free(q);
}
