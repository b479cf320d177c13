/* qc_packview.c - a GPTQ or AWQ artifact seen as naive-quantized, for the
 * runtime (see qc_packfmt.h, "runtime view"). */
#include "qc_packfmt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qc_err.h"

/* The naive names a packed Linear is served under. */
enum { V_WEIGHT, V_SCALE, V_ZP, V_COUNT };
static const char *const vsuffix[V_COUNT] = { "weight", "weight_scale", "weight_zero_point" };

/* One unpacked Linear; heap-allocated so that the views' name pointers stay
 * put while the table grows. */
typedef struct vlin {
	char module[208];
	char names[V_COUNT][232];
	qc_pack_unpacked u;
	qc_tensor t[V_COUNT];
	int held[V_COUNT];        /* gets not yet released */
} vlin;

struct qc_pack_view {
	qc_pack_spec spec;
	json_t *config;           /* config.json with the naive quantization_config */
	qc_wsrc packed;
	qc_wsrc src;
	vlin **lin;
	size_t n, cap;
};

static int nomem(void)
{
	return qc_seterr(QC_ENOMEM, "out of memory");
}

/* "<module>.<suffix>" with a served suffix: its index, and the module */
static int split(const char *name, char *module, size_t n)
{
	const char *dot = strrchr(name, '.');
	if (!dot || (size_t)(dot - name) >= n)
		return -1;
	for (int i = 0; i < V_COUNT; i++)
		if (strcmp(dot + 1, vsuffix[i]) == 0) {
			memcpy(module, name, (size_t)(dot - name));
			module[dot - name] = 0;
			return i;
		}
	return -1;
}

static vlin *find(qc_pack_view *v, const char *module, size_t *at)
{
	for (size_t i = 0; i < v->n; i++)
		if (strcmp(v->lin[i]->module, module) == 0) {
			if (at)
				*at = i;
			return v->lin[i];
		}
	return NULL;
}

static void drop(qc_pack_view *v, size_t i)
{
	qc_pack_unpacked_free(&v->lin[i]->u);
	free(v->lin[i]);
	v->lin[i] = v->lin[--v->n];
}

/* Unpack module into a new table entry. 1: done; 0: module has no packed
 * weights (a dense Linear or not a Linear at all: pass through). */
static int load(qc_pack_view *v, const char *module, vlin **out)
{
	char qname[232];
	snprintf(qname, sizeof qname, "%s.qweight", module);
	const qc_tensor *probe;
	int rc = v->packed.get(v->packed.ctx, qname, &probe);
	if (rc == QC_ENOTFOUND)
		return 0;
	if (rc)
		return rc;
	/* keep the probe until the Linear is unpacked (a stream reader must not
	 * drop qweight between the two gets) */
	if (v->n == v->cap) {
		size_t nc = v->cap ? 2 * v->cap : 16;
		vlin **nl = realloc(v->lin, nc * sizeof *nl);
		if (!nl) {
			rc = nomem();
			goto out;
		}
		v->lin = nl;
		v->cap = nc;
	}
	vlin *l = calloc(1, sizeof *l);
	if (!l) {
		rc = nomem();
		goto out;
	}
	snprintf(l->module, sizeof l->module, "%s", module);
	if ((rc = qc_unpack_linear(&v->spec, &v->packed, module, -1, -1, &l->u))) {
		free(l);
		goto out;
	}
	const qc_pack_unpacked *u = &l->u;
	const void *data[V_COUNT] = { u->codes, u->scales, u->zps };
	qc_dtype dt[V_COUNT] = { u->w.is_float ? QC_DT_F8_E4M3 : QC_DT_I8, u->scale_dt, QC_DT_I8 };
	for (int i = 0; i < V_COUNT; i++) {
		snprintf(l->names[i], sizeof l->names[i], "%s.%s", module, vsuffix[i]);
		qc_tensor *t = &l->t[i];
		t->name = l->names[i];
		t->dtype = dt[i];
		t->ndim = 2;
		t->shape[0] = i == V_WEIGHT ? u->out : u->srows;
		t->shape[1] = i == V_WEIGHT ? u->in : u->ng;
		t->data = data[i];
		t->nbytes = (size_t)qc_nbytes(dt[i], t->shape[0] * t->shape[1]);
	}
	v->lin[v->n++] = l;
	*out = l;
	rc = 1;
out:
	if (v->packed.release)
		v->packed.release(v->packed.ctx, qname);
	return rc;
}

static int view_get(void *ctx, const char *name, const qc_tensor **t)
{
	qc_pack_view *v = ctx;
	char module[208];
	int which = split(name, module, sizeof module);
	if (which < 0)
		return v->packed.get(v->packed.ctx, name, t);
	vlin *l = find(v, module, NULL);
	if (!l) {
		int rc = load(v, module, &l);
		if (rc < 0)
			return rc;
		if (rc == 0)
			return v->packed.get(v->packed.ctx, name, t);
	}
	if (which == V_ZP && !l->u.zps) {
		/* symmetric: the naive form has no zero points; drop the entry if
		 * this probe was its only use */
		if (!l->held[0] && !l->held[1] && !l->held[2]) {
			size_t at = 0;
			find(v, module, &at);
			drop(v, at);
		}
		return qc_seterr(QC_ENOTFOUND, "tensor '%s' is missing (symmetric scheme)", name);
	}
	l->held[which]++;
	*t = &l->t[which];
	return 0;
}

static void view_release(void *ctx, const char *name)
{
	qc_pack_view *v = ctx;
	char module[208];
	int which = split(name, module, sizeof module);
	size_t at = 0;
	vlin *l = which >= 0 ? find(v, module, &at) : NULL;
	if (!l) {
		if (v->packed.release)
			v->packed.release(v->packed.ctx, name);
		return;
	}
	if (l->held[which] > 0)
		l->held[which]--;
	if (!l->held[0] && !l->held[1] && !l->held[2])
		drop(v, at);
}

int qc_pack_view_open(qc_pack_view **out, const json_t *config, const qc_wsrc *packed)
{
	*out = NULL;
	/* anything but gptq and awq is the runtime's own business (qc_ctq reads
	 * compressed-tensors and names what it does not read) */
	const json_t *qm = json_object_get(json_object_get(config, "quantization_config"), "quant_method");
	if (!json_is_string(qm) || (strcmp(json_string_value(qm), "gptq") != 0 &&
	                            strcmp(json_string_value(qm), "awq") != 0))
		return 0;
	qc_pack_spec spec;
	json_t *naive = NULL;
	int rc = qc_pack_detect(config, &spec, &naive);
	if (rc <= 0)
		return rc;
	if (spec.format == QC_PACK_CT) {
		json_decref(naive);
		return 0;
	}
	qc_pack_view *v = calloc(1, sizeof *v);
	json_t *doc = v ? json_deep_copy(config) : NULL;
	/* json_object_set_new takes naive whether it succeeds or not */
	if (!doc || json_object_set_new(doc, "quantization_config", naive)) {
		if (!doc)
			json_decref(naive);
		free(v);
		json_decref(doc);
		return nomem();
	}
	v->spec = spec;
	v->config = doc;
	v->packed = *packed;
	v->src = (qc_wsrc){ v, view_get, view_release };
	*out = v;
	return 0;
}

void qc_pack_view_free(qc_pack_view *v)
{
	if (!v)
		return;
	while (v->n)
		drop(v, v->n - 1);
	free(v->lin);
	json_decref(v->config);
	free(v);
}

const json_t *qc_pack_view_config(const qc_pack_view *v)
{
	return v->config;
}

const qc_wsrc *qc_pack_view_wsrc(qc_pack_view *v)
{
	return &v->src;
}

const qc_pack_spec *qc_pack_view_spec(const qc_pack_view *v)
{
	return &v->spec;
}
