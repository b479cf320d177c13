/* qc_pack.c - a naive-quantized checkpoint to a release artifact
 * (see qc_pack.h, qc_pack_checkpoint). */
#include "qc_pack.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "qc_card.h"
#include "qc_ckpt.h"
#include "qc_config.h"
#include "qc_err.h"
#include "qc_json.h"
#include "qc_model.h"
#include "qc_report.h"

#define DEFAULT_SHARD 5000000000ull   /* 5 GB, huggingface_hub's default */
#define PREFETCH_AHEAD (256ull << 20) /* input bytes asked for ahead of use */

/* An input tensor: read from a shard header, or predicted for a stream
 * from its first layer. */
typedef struct item {
	char *name;
	int group;
	qc_dtype dt;
	int ndim;
	int64_t shape[QC_MAX_DIMS];
	uint64_t nbytes;
	int predicted;
} item;

/* What is written together: one tensor, or one quantized Linear's tensors. */
typedef struct unit {
	int group;
	int key;              /* order inside the group (state-dict order) */
	char *name;           /* the tensor, or the Linear's module */
	int linear;
	int64_t out, in;
	uint64_t bytes;       /* output tensor bytes */
	uint64_t in_bytes;    /* input tensor bytes */
	int shard;            /* 1-based */
} unit;

typedef struct pk {
	const qc_pack_opts *o;
	qc_ckpt *ck;
	int stream;
	qc_config cfg;
	qc_ctq *ctq;
	qc_pack_spec spec;
	int layers;
	item *it;
	size_t ni, capi;
	unit *un;
	size_t nu, capu;
	int n_shards;
	uint64_t total;
	char **ignored;       /* decoder Linears the scheme leaves dense */
	size_t n_ignored;
	qc_ckpt_writer *w;
	char **added;         /* small files written */
	size_t nadded;
	qc_ctq_linear *pend;  /* Linears whose input tensors a shard still uses */
	size_t npend, cappend;
	char **pend_t;        /* plain tensors likewise */
	size_t npend_t, cappend_t;
	json_t *qconfig;
	int64_t linears;
} pk;

static int nomem(void)
{
	return qc_seterr(QC_ENOMEM, "out of memory");
}

static int grow(void **a, size_t *cap, size_t n, size_t es)
{
	if (n < *cap)
		return 0;
	size_t nc = *cap ? 2 * *cap : 64;
	void *p = realloc(*a, nc * es);
	if (!p)
		return nomem();
	*a = p;
	*cap = nc;
	return 0;
}

// ---------------------------------------------------------------- names

static const char *const naive_suffixes[] = { "weight", "weight_scale", "weight_zero_point",
	                                          "input_scale", "input_zero_point" };

/* The Linear a tensor name belongs to: module into `module` and its index
 * (0..6 for q..down, 7 for lm_head), or -1. Any suffix counts (bias too). */
static int linear_of(const pk *p, const char *name, char *module, size_t n)
{
	const char *dot = strrchr(name, '.');
	if (!dot || (size_t)(dot - name) >= n)
		return -1;
	memcpy(module, name, (size_t)(dot - name));
	module[dot - name] = 0;
	if (strcmp(module, "lm_head") == 0)
		return QC_LIN_COUNT;
	int layer = qc_ckpt_group_of(name);
	if (layer < 0 || layer >= p->layers)
		return -1;
	char want[200];
	for (int k = 0; k < QC_LIN_COUNT; k++) {
		snprintf(want, sizeof want, "model.layers.%d.%s", layer, qc_linear_path((qc_linear)k));
		if (strcmp(module, want) == 0)
			return k;
	}
	return -1;
}

/* 1 when name is one of a quantized Linear's naive tensors */
static int quantized_part(const pk *p, const char *name, char *module, size_t n)
{
	if (linear_of(p, name, module, n) < 0)
		return 0;
	const char *suf = name + strlen(module) + 1;
	int known = 0;
	for (size_t i = 0; i < sizeof naive_suffixes / sizeof *naive_suffixes; i++)
		known |= strcmp(suf, naive_suffixes[i]) == 0;
	if (!known)
		return 0;
	return qc_ctq_quantized(p->ctq, module);
}

static item *find_item(pk *p, const char *name)
{
	for (size_t i = 0; i < p->ni; i++)
		if (strcmp(p->it[i].name, name) == 0)
			return &p->it[i];
	return NULL;
}

// ---------------------------------------------------------------- inventory

static int add_item(pk *p, const char *name, qc_dtype dt, int ndim, const int64_t *shape,
                    int predicted)
{
	QC_TRY(grow((void **)&p->it, &p->capi, p->ni, sizeof *p->it));
	item *t = &p->it[p->ni];
	memset(t, 0, sizeof *t);
	if (!(t->name = strdup(name)))
		return nomem();
	t->group = qc_ckpt_group_of(name);
	t->dt = dt;
	t->ndim = ndim;
	memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
	int64_t nb = qc_nbytes(dt, qc_numel(ndim, shape));
	t->nbytes = nb < 0 ? 0 : (uint64_t)nb;
	t->predicted = predicted;
	p->ni++;
	return 0;
}

static int add_actual(pk *p, const char *name)
{
	const qc_tensor *t;
	QC_TRY(qc_ckpt_get(p->ck, name, &t));
	int rc = add_item(p, name, t->dtype, t->ndim, t->shape, 0);
	/* a directory keeps its mapping; a stream keeps the tensor for later */
	if (!p->stream)
		qc_ckpt_release(p->ck, name);
	return rc;
}

static int add_group_actual(pk *p, int group)
{
	const char *const *names;
	size_t n;
	QC_TRY(qc_ckpt_group_names(p->ck, group, &names, &n));
	/* names belong to ck until the next call: copy what we need now */
	for (size_t i = 0; i < n; i++)
		QC_TRY(add_actual(p, names[i]));
	return 0;
}

/* name with "model.layers.0." replaced by "model.layers.<l>." */
static void rename_layer(char *out, size_t n, const char *name, int l)
{
	const char *pre = "model.layers.0.";
	snprintf(out, n, "model.layers.%d.%s", l, name + strlen(pre));
}

/* How the first layer stores its Linears, for predicting the others. The
 * items are copies (only dtype and shape are used): predicting adds items,
 * and p->it moves when it grows. has[s] says whether the quantized Linear
 * stores part s (codes, scale, zero point, input scale, input zero point). */
typedef struct tmpl {
	item part[5];
	int has[5];
	qc_dtype dense_dt;                               /* a dense Linear weight's dtype */
} tmpl;

static void make_tmpl(pk *p, tmpl *t)
{
	memset(t, 0, sizeof *t);
	const item *emb = find_item(p, "model.embed_tokens.weight");
	t->dense_dt = emb ? emb->dt : p->cfg.torch_dtype;
	char module[200], name[300];
	for (int k = 0; k < QC_LIN_COUNT; k++) {
		snprintf(module, sizeof module, "model.layers.0.%s", qc_linear_path((qc_linear)k));
		const item *it[5];
		for (int s = 0; s < 5; s++) {
			snprintf(name, sizeof name, "%s.%s", module, naive_suffixes[s]);
			it[s] = find_item(p, name);
		}
		if (qc_ctq_quantized(p->ctq, module) != 1) {
			if (it[0])
				t->dense_dt = it[0]->dt;
			continue;
		}
		if (!t->has[0] && it[0] && it[1])
			for (int s = 0; s < 5; s++)
				if ((t->has[s] = it[s] != NULL))
					t->part[s] = *it[s];
	}
}

/* The naive tensors of Linear `module` [out, in], quantized or dense as the
 * scheme says, stored as the first layer stores its Linears. */
static int predict_linear(pk *p, const tmpl *t, const char *module, int64_t out, int64_t in)
{
	char name[300];
	int64_t sh[2] = { out, in };
	int q = qc_ctq_quantized(p->ctq, module);
	if (q < 0)
		return q;
	snprintf(name, sizeof name, "%s.weight", module);
	if (!q)
		return add_item(p, name, t->dense_dt, 2, sh, 1);
	if (!t->has[0])
		return qc_seterr(QC_EFORMAT, "'%s' quantizes '%s' but no Linear of its first layer; "
		                 "untar the stream and pass the directory", qc_ckpt_name(p->ck), module);
	const qc_qargs *w = &p->ctq->scheme.weights;
	int64_t ss[2] = { out, qc_qgroups(w, in) };
	QC_TRY(add_item(p, name, t->part[0].dt, 2, sh, 1));
	for (int s = 0; s < 4; s++) {
		const item *r = &t->part[s + 1];
		if (!t->has[s + 1])
			continue;
		snprintf(name, sizeof name, "%s.%s", module, naive_suffixes[s + 1]);
		/* scales and zero points follow the Linear's shape unless per
		 * tensor; input parameters are per tensor */
		if (s < 2 && w->strategy != QC_QS_TENSOR)
			QC_TRY(add_item(p, name, r->dt, r->ndim == 1 ? 1 : 2, ss, 1));
		else
			QC_TRY(add_item(p, name, r->dt, r->ndim, r->shape, 1));
	}
	return 0;
}

/* A stream's plan is made before its later layers arrive: each later layer
 * holds the first layer's other tensors (norms, biases) under its own
 * number, and its Linears stored as the scheme says (quantized like the
 * first layer's quantized ones, or dense); the group after the layers holds
 * model.norm.weight and, untied, lm_head. check_predicted holds each group
 * to this as it arrives. */
static int predict(pk *p)
{
	tmpl t;
	make_tmpl(p, &t);
	size_t n0 = p->ni;
	char name[300], module[200];
	for (int l = 1; l < p->layers; l++) {
		for (size_t i = 0; i < n0; i++) {
			const item *it = &p->it[i];
			if (it->group != 0)
				continue;
			int q = quantized_part(p, it->name, module, sizeof module);
			if (q < 0)
				return q;
			/* a Linear's weight and quantization tensors come from the scheme */
			if (q || (linear_of(p, it->name, module, sizeof module) >= 0 &&
			          strcmp(it->name + strlen(module), ".weight") == 0))
				continue;
			rename_layer(name, sizeof name, it->name, l);
			item c = *it;
			QC_TRY(add_item(p, name, c.dt, c.ndim, c.shape, 1));
		}
		for (int k = 0; k < QC_LIN_COUNT; k++) {
			int64_t sh[2];
			qc_linear_shape(&p->cfg, (qc_linear)k, sh);
			snprintf(module, sizeof module, "model.layers.%d.%s", l, qc_linear_path((qc_linear)k));
			QC_TRY(predict_linear(p, &t, module, sh[0], sh[1]));
		}
	}
	const item *ln = find_item(p, "model.layers.0.input_layernorm.weight");
	int64_t H = p->cfg.hidden_size;
	QC_TRY(add_item(p, "model.norm.weight", ln ? ln->dt : t.dense_dt, 1, &H, 1));
	if (p->cfg.tie_word_embeddings)
		return 0;
	return predict_linear(p, &t, "lm_head", p->cfg.vocab_size, H);
}

static int inventory(pk *p)
{
	if (!p->stream || p->layers == 0) {
		if (p->stream)
			QC_TRY(qc_ckpt_read_all(p->ck));
		const char *const *names;
		size_t n;
		QC_TRY(qc_ckpt_tensor_names(p->ck, &names, &n));
		char **copy = calloc(n ? n : 1, sizeof *copy);
		if (!copy)
			return nomem();
		int rc = 0;
		for (size_t i = 0; i < n && !rc; i++)
			if (!(copy[i] = strdup(names[i])))
				rc = nomem();
		for (size_t i = 0; i < n && !rc; i++)
			rc = add_actual(p, copy[i]);
		for (size_t i = 0; i < n; i++)
			free(copy[i]);
		free(copy);
		return rc;
	}
	QC_TRY(add_group_actual(p, QC_GROUP_PRE));
	QC_TRY(add_group_actual(p, 0));
	return predict(p);
}

/* A stream group as it arrives must be the one predicted. */
static int check_predicted(pk *p, int group)
{
	const char *const *names;
	size_t n, want = 0;
	QC_TRY(qc_ckpt_group_names(p->ck, group, &names, &n));
	const char *in = qc_ckpt_name(p->ck);
	for (size_t i = 0; i < p->ni; i++)
		want += p->it[i].group == group;
	char where[32];
	if (group == QC_GROUP_POST)
		snprintf(where, sizeof where, "after the last layer");
	else
		snprintf(where, sizeof where, "in layer %d", group);
	for (size_t i = 0; i < n; i++) {
		item *t = find_item(p, names[i]);
		if (!t)
			return qc_seterr(QC_EFORMAT, "'%s' has tensor '%s' %s that its first layer does not "
			                 "have; qpack plans a stream's shards from the first layer: untar the "
			                 "stream and pass the directory", in, names[i], where);
		const qc_tensor *v;
		QC_TRY(qc_ckpt_get(p->ck, names[i], &v));
		if (v->dtype != t->dt || v->ndim != t->ndim ||
		    memcmp(v->shape, t->shape, (size_t)v->ndim * sizeof *v->shape) != 0) {
			char a[96], b[96];
			return qc_seterr(QC_EFORMAT, "'%s': tensor '%s' is %s %s where its first layer "
			                 "implies %s %s; untar the stream and pass the directory", in, names[i],
			                 qc_dtype_name(v->dtype), qc_shape_str(a, sizeof a, v->ndim, v->shape),
			                 qc_dtype_name(t->dt), qc_shape_str(b, sizeof b, t->ndim, t->shape));
		}
	}
	if (n != want) {
		for (size_t i = 0; i < p->ni; i++) {
			if (p->it[i].group != group)
				continue;
			int found = 0;
			for (size_t j = 0; j < n && !found; j++)
				found = strcmp(names[j], p->it[i].name) == 0;
			if (!found)
				return qc_seterr(QC_EFORMAT, "'%s' lacks tensor '%s' that its first layer "
				                 "implies", in, p->it[i].name);
		}
	}
	return 0;
}

// ---------------------------------------------------------------- the plan

static int unit_key(const pk *p, const char *name)
{
	char module[256];
	int k = linear_of(p, name, module, sizeof module);
	int g = qc_ckpt_group_of(name);
	if (g == QC_GROUP_POST)
		return k == QC_LIN_COUNT ? 2 : strncmp(name, "model.norm.", 11) == 0 ? 0 : 1;
	if (g == QC_GROUP_PRE)
		return 0;
	return k >= 0 && k < QC_LIN_COUNT ? k : QC_LIN_COUNT;
}

static int cmp_unit(const void *a, const void *b)
{
	const unit *x = a, *y = b;
	if (x->group != y->group)
		return x->group < y->group ? -1 : 1;
	if (x->key != y->key)
		return x->key - y->key;
	return strcmp(x->name, y->name);
}

static int linear_bytes(pk *p, unit *u)
{
	char name[300];
	snprintf(name, sizeof name, "%s.weight_scale", u->name);
	item *sc = find_item(p, name);
	if (!sc)
		return qc_seterr(QC_EFORMAT, "tensor '%s' is missing from '%s'", name, qc_ckpt_name(p->ck));
	snprintf(name, sizeof name, "%s.input_scale", u->name);
	int is = find_item(p, name) != NULL;
	snprintf(name, sizeof name, "%s.input_zero_point", u->name);
	int iz = find_item(p, name) != NULL;
	qc_pack_out lay;
	QC_TRY(qc_pack_layout(&p->spec, u->out, u->in, sc->dt, is, iz, &lay));
	u->bytes = 0;
	for (int i = 0; i < lay.n; i++) {
		uint64_t b = lay.t[i].nbytes;
		if (lay.t[i].copied) {
			snprintf(name, sizeof name, "%s.%s", u->name, lay.t[i].suffix);
			item *t = find_item(p, name);
			if (!t)
				return qc_seterr(QC_EFORMAT, "tensor '%s' is missing from '%s'", name,
				                 qc_ckpt_name(p->ck));
			b = t->nbytes;
		}
		u->bytes += b;
	}
	return 0;
}

static int plan(pk *p)
{
	char module[256];
	for (size_t i = 0; i < p->ni; i++) {
		item *t = &p->it[i];
		int q = quantized_part(p, t->name, module, sizeof module);
		if (q < 0)
			return q;
		if (q) {
			unit *dup = NULL;
			for (size_t j = 0; j < p->nu && !dup; j++)
				if (p->un[j].linear && strcmp(p->un[j].name, module) == 0)
					dup = &p->un[j];
			if (dup) {
				dup->in_bytes += t->nbytes;
				continue;
			}
		}
		QC_TRY(grow((void **)&p->un, &p->capu, p->nu, sizeof *p->un));
		unit *u = &p->un[p->nu];
		memset(u, 0, sizeof *u);
		if (!(u->name = strdup(q ? module : t->name)))
			return nomem();
		p->nu++;
		u->group = t->group;
		u->in_bytes = t->nbytes;
		u->key = unit_key(p, t->name);
		u->linear = q;
		if (q) {
			int k = linear_of(p, t->name, module, sizeof module);
			int64_t sh[2] = { p->cfg.vocab_size, p->cfg.hidden_size };
			if (k < QC_LIN_COUNT)
				qc_linear_shape(&p->cfg, (qc_linear)k, sh);
			u->out = sh[0];
			u->in = sh[1];
			QC_TRY(linear_bytes(p, u));
			p->linears++;
		} else {
			u->bytes = t->nbytes;
		}
	}
	qsort(p->un, p->nu, sizeof *p->un, cmp_unit);
	/* greedy fill in layer order, as huggingface_hub splits a state dict */
	uint64_t max = p->o->max_shard_size ? p->o->max_shard_size : DEFAULT_SHARD, cur = 0;
	int shard = 1;
	for (size_t i = 0; i < p->nu; i++) {
		if (cur > 0 && cur + p->un[i].bytes > max) {
			shard++;
			cur = 0;
		}
		p->un[i].shard = shard;
		cur += p->un[i].bytes;
		p->total += p->un[i].bytes;
	}
	p->n_shards = p->nu ? shard : 0;
	if (!p->nu)
		return qc_seterr(QC_EFORMAT, "'%s' has no tensors", qc_ckpt_name(p->ck));
	return 0;
}

// ---------------------------------------------------------------- checks

static int check_scheme(pk *p)
{
	const qc_qscheme *s = &p->ctq->scheme;
	QC_TRY(qc_pack_spec_for(&p->spec, p->o->format, s));
	char module[200];
	for (int l = 0; l < p->layers; l++)
		for (int k = 0; k < QC_LIN_COUNT; k++) {
			snprintf(module, sizeof module, "model.layers.%d.%s", l, qc_linear_path((qc_linear)k));
			int q = qc_ctq_quantized(p->ctq, module);
			if (q < 0)
				return q;
			if (!q) {
				if (p->spec.format == QC_PACK_GPTQ)
					return qc_seterr(QC_EUNSUPPORTED, "cannot write as gptq: '%s' is not quantized "
					                 "(ignored by the scheme), and GPTQ checkpoints quantize every "
					                 "Linear of the decoder layers (use -f compressed-tensors or -f "
					                 "awq)", module);
				char **n = realloc(p->ignored, (p->n_ignored + 1) * sizeof *n);
				if (!n)
					return nomem();
				p->ignored = n;
				if (!(n[p->n_ignored] = strdup(module)))
					return nomem();
				p->n_ignored++;
				continue;
			}
			int64_t sh[2];
			qc_linear_shape(&p->cfg, (qc_linear)k, sh);
			QC_TRY(qc_pack_check_linear(&p->spec, module, sh[0], sh[1]));
		}
	return 0;
}

// ---------------------------------------------------------------- small files

static int add_file(pk *p, const char *name, const void *data, size_t len)
{
	char **a = realloc(p->added, (p->nadded + 1) * sizeof *a);
	if (!a)
		return nomem();
	p->added = a;
	if (!(a[p->nadded] = strdup(name)))
		return nomem();
	p->nadded++;
	return qc_ckw_add_file(p->w, name, data, len);
}

static int was_added(const pk *p, const char *name)
{
	for (size_t i = 0; i < p->nadded; i++)
		if (strcmp(p->added[i], name) == 0)
			return 1;
	return 0;
}

static int add_json(pk *p, const char *name, const json_t *j)
{
	char *t;
	size_t n;
	QC_TRY(qc_json_dump(j, &t, &n));
	int rc = add_file(p, name, t, n);
	free(t);
	return rc;
}

static int write_config(pk *p)
{
	const qc_qscheme *s = &p->ctq->scheme;
	QC_TRY(qc_pack_qconfig(&p->spec, s, (const char *const *)p->ignored, p->n_ignored, &p->qconfig));
	json_t *doc = json_deep_copy(p->cfg.raw);
	if (!doc)
		return nomem();
	int rc = json_object_set(doc, "quantization_config", p->qconfig) ? nomem() : 0;
	if (!rc)
		rc = add_json(p, "config.json", doc);
	json_decref(doc);
	/* AutoGPTQ's from_quantized reads quantize_config.json */
	if (!rc && p->spec.format == QC_PACK_GPTQ)
		rc = add_json(p, "quantize_config.json", p->qconfig);
	return rc;
}

/* carry every small file of the input not written yet (config.json, the
 * card and GPTQ's quantize_config.json are ours) */
static int carry_files(pk *p)
{
	for (size_t i = 0; i < qc_ckpt_file_count(p->ck); i++) {
		const char *name = qc_ckpt_file_name(p->ck, i);
		if (was_added(p, name) || strcmp(name, QC_CARD_NAME) == 0)
			continue;
		const void *data;
		size_t len;
		QC_TRY(qc_ckpt_file(p->ck, name, &data, &len));
		QC_TRY(add_file(p, name, data, len));
	}
	return 0;
}

static void scheme_short(const qc_qscheme *s, char *buf, size_t n)
{
	const qc_qargs *w = &s->weights;
	char g[48] = "";
	if (w->strategy == QC_QS_GROUP)
		snprintf(g, sizeof g, "group %lld", (long long)w->group_size);
	else
		snprintf(g, sizeof g, "%s", w->strategy == QC_QS_CHANNEL ? "per channel" : "per tensor");
	snprintf(buf, n, "%s%d weights (%s%s)%s", w->is_float ? "fp" : "int", w->bits, g,
	         w->is_float ? "" : w->symmetric ? ", symmetric" : ", asymmetric",
	         s->act == QC_ACT_NONE ? ""
	                               : s->act_is_float ? ", fp8 activations" : ", int8 activations");
}

static int write_card(pk *p, const qc_manifest *m)
{
	const void *rep = NULL;
	size_t rlen = 0;
	int rc = qc_ckpt_file(p->ck, QC_REPORT_NAME, &rep, &rlen);
	if (rc == QC_ENOTFOUND)
		rep = NULL;
	else if (rc)
		return rc;
	const qc_pack_spec *sp = &p->spec;
	char title[256], sch[128], fmt[160];
	scheme_short(&p->ctq->scheme, sch, sizeof sch);
	snprintf(title, sizeof title, "%s, %s", p->cfg.architecture, sch);
	const char *notes[4];
	size_t nn = 0;
	const char *loaders = NULL;
	switch (sp->format) {
	case QC_PACK_CT:
		snprintf(fmt, sizeof fmt, "compressed-tensors, format \"%s\" (quantization_status "
		         "compressed)", sp->ct_format);
		loaders = "Loads as it is in vLLM and in HF transformers with compressed-tensors";
		if (sp->ct_packed)
			notes[nn++] = "Codes packed 32 / bits per int32 along the input dimension; scales "
			              "kept in the dtype and bytes of the quantized checkpoint";
		else
			notes[nn++] = "Codes stored one per byte, scales as the quantizer wrote them "
			              "(compressed-tensors does not pack this scheme)";
		break;
	case QC_PACK_GPTQ:
		snprintf(fmt, sizeof fmt, "GPTQ, AutoGPTQ layout (qweight, qzeros, scales, g_idx), "
		         "checkpoint_format \"%s\"", sp->gptq_v2 ? "gptq_v2" : "gptq");
		loaders = sp->w.symmetric ? "vLLM (gptq_marlin), HF transformers (GPTQ), AutoGPTQ and "
		                            "GPTQModel load it"
		                          : "vLLM's gptq method (it honours checkpoint_format gptq_v2) and "
		                            "GPTQModel load it; Marlin kernels take symmetric GPTQ only";
		notes[nn++] = sp->gptq_v2 ? "Zero points stored as they are (gptq_v2): the v1 convention "
		                            "(stored minus one) cannot hold a zero point of 0"
		                          : "Zero points stored minus one (v1): 7 in every nibble for a "
		                            "symmetric 4-bit scheme";
		notes[nn++] = "Scales converted to F16 exactly: every value was checked to be finite, "
		              "positive and representable in F16 (qpack refuses otherwise, never rounds)";
		notes[nn++] = "damp_percent in quantization_config is AutoGPTQ's default 0.01, written "
		              "because AutoGPTQ requires the key; the method is in the history below";
		notes[nn++] = "Embeddings, norms and lm_head keep the model's dtype; vLLM's non-Marlin "
		              "GPTQ kernels run in float16 only (--dtype float16)";
		break;
	case QC_PACK_AWQ:
		snprintf(fmt, sizeof fmt, "AWQ, AutoAWQ GEMM layout (qweight, qzeros, scales), version "
		         "\"gemm\"");
		loaders = "vLLM (awq_marlin), HF transformers (AWQ) and AutoAWQ load it";
		notes[nn++] = sp->w.symmetric ? "The scheme is symmetric; AWQ always stores zero points, "
		                                "so every zero point is 8 (unsigned form of 0): the "
		                                "dequantized weights are identical"
		                              : "Zero points stored as they are (unsigned, 0..15)";
		notes[nn++] = "Scales converted to F16 exactly: every value was checked to be finite, "
		              "positive and representable in F16 (qpack refuses otherwise, never rounds)";
		notes[nn++] = "Embeddings, norms and lm_head keep the model's dtype; vLLM's non-Marlin "
		              "AWQ kernel runs in float16 only (--dtype float16)";
		break;
	}
	qc_card_info ci = { .title = title, .scheme = &p->ctq->scheme, .format = fmt,
		                .loaders = loaders, .notes = notes, .n_notes = nn, .manifest = m,
		                .report = rep, .report_len = rlen, .n_shards = p->n_shards,
		                .run_tool = p->o->tool, .run_version = p->o->version,
		                .run_argc = p->o->argc, .run_argv = p->o->argv };
	char *md;
	size_t len;
	QC_TRY(qc_card_markdown(&ci, &md, &len));
	rc = add_file(p, QC_CARD_NAME, md, len);
	free(md);
	return rc;
}

// ---------------------------------------------------------------- writing

static void release_pending(pk *p)
{
	for (size_t i = 0; i < p->npend; i++)
		qc_ctq_linear_release(&p->pend[i]);
	p->npend = 0;
	for (size_t i = 0; i < p->npend_t; i++) {
		qc_ckpt_release(p->ck, p->pend_t[i]);
		free(p->pend_t[i]);
	}
	p->npend_t = 0;
}

static int write_linear(pk *p, const unit *u, const qc_wsrc *src)
{
	QC_TRY(grow((void **)&p->pend, &p->cappend, p->npend, sizeof *p->pend));
	qc_ctq_linear *L = &p->pend[p->npend];
	int rc = qc_ctq_linear_get(L, p->ctq, src, u->name, u->out, u->in);
	if (rc) {
		qc_ctq_linear_release(L);
		return rc == QC_ENOTFOUND ? qc_errctx(QC_EFORMAT, "'%s'", qc_ckpt_name(p->ck)) : rc;
	}
	qc_pack_out o;
	if ((rc = qc_pack_linear(&p->spec, L, p->o->threads > 0 ? p->o->threads : 2, &o))) {
		qc_ctq_linear_release(L);
		return rc;
	}
	int borrowed = 0;
	char name[300];
	for (int i = 0; i < o.n && !rc; i++) {
		qc_pack_tensor *t = &o.t[i];
		snprintf(name, sizeof name, "%s.%s", u->name, t->suffix);
		borrowed |= t->borrowed != NULL;
		rc = qc_ckw_add_tensor(p->w, name, t->dtype, t->ndim, t->shape,
		                       t->data ? t->data : t->borrowed, t->data != NULL);
		t->data = NULL;   /* the writer owns (or has freed) it now */
	}
	qc_pack_out_free(&o);
	/* the codes were copied into packed words: the input can go now unless
	 * the output points into it */
	if (borrowed)
		p->npend++;
	else
		qc_ctq_linear_release(L);
	return rc;
}

static int write_tensor(pk *p, const unit *u)
{
	const qc_tensor *t;
	QC_TRY(qc_ckpt_get(p->ck, u->name, &t));
	QC_TRY(grow((void **)&p->pend_t, &p->cappend_t, p->npend_t, sizeof *p->pend_t));
	if (!(p->pend_t[p->npend_t] = strdup(u->name)))
		return nomem();
	p->npend_t++;
	return qc_ckw_add_tensor(p->w, u->name, t->dtype, t->ndim, t->shape, t->data, 0);
}

/* madvise(WILLNEED) over the pages of a mapped tensor: the kernel reads
 * them in the background */
static void willneed(const qc_tensor *t)
{
	static long page;
	if (!page)
		page = sysconf(_SC_PAGESIZE);
	if (page <= 0 || !t->data || t->nbytes == 0)
		return;
	uintptr_t b = (uintptr_t)t->data & ~((uintptr_t)page - 1);
	uintptr_t e = (uintptr_t)t->data + t->nbytes;
	(void)madvise((void *)b, e - b, MADV_WILLNEED);
}

static void willneed_unit(pk *p, const unit *u)
{
	const qc_tensor *t;
	char name[300];
	if (!u->linear) {
		if (qc_ckpt_get(p->ck, u->name, &t) == 0)
			willneed(t);
		return;
	}
	for (size_t k = 0; k < sizeof naive_suffixes / sizeof *naive_suffixes; k++) {
		snprintf(name, sizeof name, "%s.%s", u->name, naive_suffixes[k]);
		if (qc_ckpt_get(p->ck, name, &t) == 0)
			willneed(t);
	}
}

/* A directory's shards are mapped and read by page faults as they are
 * touched, one readahead window at a time, which leaves the device idle
 * while this thread packs, and the writer waiting on faults when it copies
 * the tensors stored as they are. So ask the kernel to read ahead
 * (MADV_WILLNEED): when a shard starts, every input tensor it stores as it
 * is (the writer reads them when the shard ends; they are output bytes, so
 * at most --max-shard-size of them, unless one alone is larger); and the
 * codes of the Linears to pack, PREFETCH_AHEAD bytes ahead of use. Streams
 * are in memory already. */
static void prefetch(pk *p, size_t i, size_t *next, uint64_t *ahead)
{
	if (p->stream)
		return;
	int copies = p->spec.format == QC_PACK_CT && !p->spec.ct_packed;
	if (i == 0 || p->un[i].shard != p->un[i - 1].shard)
		for (size_t j = i; j < p->nu && p->un[j].shard == p->un[i].shard; j++)
			if (!p->un[j].linear || copies)
				willneed_unit(p, &p->un[j]);
	if (copies)
		return;
	if (i > 0 && p->un[i - 1].linear && *ahead >= p->un[i - 1].in_bytes)
		*ahead -= p->un[i - 1].in_bytes;
	for (; *next < p->nu && *ahead < PREFETCH_AHEAD; (*next)++) {
		const unit *u = &p->un[*next];
		if (!u->linear || *next < i)
			continue;
		*ahead += u->in_bytes;
		willneed_unit(p, u);
	}
}

static int write_units(pk *p, const qc_wsrc *src);

/* The pending Linears hold src, which lives in this frame: they are
 * released here on failure too, not after return. */
static int write_all(pk *p)
{
	qc_wsrc src;
	qc_wsrc_ckpt(&src, p->ck);
	int rc = write_units(p, &src);
	if (rc)
		release_pending(p);
	return rc;
}

static int write_units(pk *p, const qc_wsrc *src)
{
	int shard = 1, cur = QC_GROUP_PRE - 2, prev = QC_GROUP_PRE - 1, rc = 0, done_layers = 0;
	size_t next = 0;
	uint64_t ahead = 0;
	for (size_t i = 0; i < p->nu; i++) {
		const unit *u = &p->un[i];
		prefetch(p, i, &next, &ahead);
		if (u->shard != shard) {
			/* the group the next shard starts in is complete only if it
			 * is not the one being written */
			QC_TRY(qc_ckw_end_shard(p->w, u->group == cur ? prev : cur));
			release_pending(p);
			shard = u->shard;
		}
		if (u->group != cur) {
			if (cur >= 0 && cur != QC_GROUP_POST && p->o->progress)
				p->o->progress(p->o->progress_ctx, ++done_layers, p->layers);
			prev = cur == QC_GROUP_PRE - 2 ? QC_GROUP_PRE - 1 : cur;
			cur = u->group;
			if (p->stream && p->layers > 0 && (cur > 0 || cur == QC_GROUP_POST))
				QC_TRY(check_predicted(p, cur));
		}
		rc = u->linear ? write_linear(p, u, src) : write_tensor(p, u);
		if (rc)
			return rc;
	}
	QC_TRY(qc_ckw_end_shard(p->w, QC_GROUP_POST));
	release_pending(p);
	if (cur >= 0 && cur != QC_GROUP_POST && p->o->progress)
		p->o->progress(p->o->progress_ctx, ++done_layers, p->layers);
	return 0;
}

// ---------------------------------------------------------------- the run

static int run(pk *p, qc_pack_result *res)
{
	const qc_pack_opts *o = p->o;
	qc_ckpt_opts co = { .stream_mem_limit = o->stream_mem_limit };
	QC_TRY(qc_ckpt_open(&p->ck, o->input, &co));
	p->stream = qc_ckpt_is_stream(p->ck);
	QC_TRY(qc_config_read(&p->cfg, p->ck));
	int rc;
	p->layers = (int)p->cfg.num_hidden_layers;
	if ((rc = qc_ctq_from_config(&p->ctq, p->cfg.raw)))
		return qc_errctx(rc, "reading '%s'", qc_ckpt_name(p->ck));
	if (!p->ctq)
		return qc_seterr(QC_EUNSUPPORTED, "'%s' is not quantized: its config.json has no "
		                 "quantization_config (quantize it with qgptq, qawq or qfp8 first)",
		                 qc_ckpt_name(p->ck));
	if (p->ctq->format != QC_CTQ_NAIVE)
		return qc_seterr(QC_EUNSUPPORTED, "'%s' is already packed (format \"%s\"); qpack reads "
		                 "the naive-quantized checkpoints that qgptq, qawq and qfp8 write",
		                 qc_ckpt_name(p->ck), p->ctq->scheme.format);
	QC_TRY(check_scheme(p));
	QC_TRY(inventory(p));
	QC_TRY(plan(p));

	const qc_manifest *man = NULL;
	if (!p->stream)
		QC_TRY(qc_ckpt_manifest(p->ck, &man));
	qc_ckw_opts wo = { .n_shards = p->n_shards, .force = o->force, .tool = o->tool,
		               .version = o->version, .argc = o->argc, .argv = o->argv,
		               .inherit = man };
	QC_TRY(qc_ckw_open(&p->w, o->output, &wo));
	if ((rc = write_config(p)) || (rc = carry_files(p)) || (!p->stream && (rc = write_card(p, man))))
		return rc;
	QC_TRY(write_all(p));
	if (p->stream) {
		/* a stream's report and manifest come after its shards */
		QC_TRY(qc_ckpt_manifest(p->ck, &man));
		if (man)
			QC_TRY(qc_ckw_inherit(p->w, man));
		QC_TRY(carry_files(p));
		QC_TRY(write_card(p, man));
	}
	rc = qc_ckw_close(p->w);
	p->w = NULL;
	if (rc)
		return rc;
	if (res) {
		res->n_shards = p->n_shards;
		res->linears = p->linears;
		res->tensor_bytes = p->total;
		snprintf(res->format, sizeof res->format, "%s",
		         p->spec.format == QC_PACK_CT ? p->spec.ct_format
		                                      : p->spec.format == QC_PACK_GPTQ
		                                                ? (p->spec.gptq_v2 ? "gptq_v2" : "gptq")
		                                                : "awq");
	}
	return 0;
}

int qc_pack_checkpoint(const qc_pack_opts *o, qc_pack_result *res)
{
	if (res)
		memset(res, 0, sizeof *res);
	pk p;
	memset(&p, 0, sizeof p);
	p.o = o;
	int rc = run(&p, res);
	if (p.w)
		qc_ckw_abort(p.w);
	release_pending(&p);
	free(p.pend);
	free(p.pend_t);
	for (size_t i = 0; i < p.ni; i++)
		free(p.it[i].name);
	free(p.it);
	for (size_t i = 0; i < p.nu; i++)
		free(p.un[i].name);
	free(p.un);
	for (size_t i = 0; i < p.n_ignored; i++)
		free(p.ignored[i]);
	free(p.ignored);
	for (size_t i = 0; i < p.nadded; i++)
		free(p.added[i]);
	free(p.added);
	json_decref(p.qconfig);
	qc_ctq_free(p.ctq);
	qc_config_free(&p.cfg);
	qc_ckpt_close(p.ck);
	return rc;
}
