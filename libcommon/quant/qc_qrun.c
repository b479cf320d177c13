/* qc_qrun.c - the run driver of the quantizing tools (see qc_qrun.h). */
#include "qc_qrun.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qc_ckpt.h"
#include "qc_ctq.h"
#include "qc_err.h"
#include "qc_hash.h"
#include "qc_io.h"
#include "qc_log.h"
#include "qc_qout.h"
#include "qc_st.h"
#include "qc_tokset.h"

#define RESUME_SUFFIX "-resume.json"
/* rows of a weight downloaded at a time to hash it (bounded host scratch) */
#define HASH_ROWS 256

struct qc_qrun {
	const qc_qrun_opts *o;
	const qc_qmethod *m;
	/* inputs */
	qc_ckpt *in;
	qc_config cfg;
	qc_qscheme scheme;
	const char *scheme_name;
	qc_tokset *ts;
	int64_t T;                  /* calibration tokens, 0 without */
	int threads;
	qk_ctx *kc;
	qc_model *model;            /* with tokens only */
	qc_walk *walk;
	/* output */
	qc_qout *out;
	qc_report *report;
	/* the layer being run */
	int layer, L;
	unsigned quant;             /* bit l: Linear l is quantized */
	unsigned restart;           /* the walker's restart bits (the method's, or set by begin) */
	char **copied;              /* tensors of the layer the driver copied */
	unsigned plan_mask;         /* quantized Linears of the layer being planned */
	size_t n_copied, cap_copied;
	size_t line0;               /* the layer's first report line */
	double ratio_sum;           /* sum of err_out / err_rtn, for progress */
	int n_ratio;
	/* without tokens: a point's Linears as FP32 kernel memory, reused */
	float *wbuf[QC_LIN_COUNT];
	size_t wbuf_n[QC_LIN_COUNT];
	/* resume */
	int begun;                  /* the method's begin was called */
	int resumable;              /* directory output: keep a record in OUT.partial */
	char *rec_path;             /* OUT.partial/<tool>-resume.json */
	json_t *rec;                /* the record being written */
	json_t *old;                /* the record --resume found, or NULL */
	int n_done;                 /* layers of the old record that are reused */
	qc_st *old_shard;           /* replay: the finished layer's shard */
	qc_ctq *replay_q;           /* the output's quantization_config, read back */
	qc_hasher64 *in_hash;       /* the layer's FP32 inputs */
	float *hash_rows;           /* [HASH_ROWS, widest input] host scratch */
	size_t hash_rows_n;
};

/* ------------------------------------------------------------ accessors */

const qc_config *qc_qrun_config(const qc_qrun *r) { return &r->cfg; }
const qc_qscheme *qc_qrun_scheme(const qc_qrun *r) { return &r->scheme; }
qk_ctx *qc_qrun_kernels(qc_qrun *r) { return r->kc; }
qc_model *qc_qrun_model(qc_qrun *r) { return r->model; }
qc_walk *qc_qrun_walk(qc_qrun *r) { return r->walk; }
int64_t qc_qrun_tokens(const qc_qrun *r) { return r->T; }
int qc_qrun_threads(const qc_qrun *r) { return r->threads; }
unsigned qc_qrun_quantized(const qc_qrun *r) { return r->quant; }
void qc_qrun_set_restart(qc_qrun *r, unsigned restart) { r->restart = restart; }

static int nomem(void)
{
	return qc_seterr(QC_ENOMEM, "out of memory");
}

/* ------------------------------------------------------------ writing */

int qc_qrun_write_linear(qc_qrun *r, int layer, qc_linear l, const void *codes,
                         const float *scales, const float *zps, const float *input_scale)
{
	char mod[256];
	int64_t shape[2];
	qc_linear_module(mod, sizeof mod, layer, l);
	qc_linear_shape(&r->cfg, l, shape);
	return qc_qout_linear(r->out, mod, shape[0], shape[1], codes, scales, zps, input_scale);
}

int qc_qrun_write_tensor(qc_qrun *r, const char *name, qc_dtype dt, int ndim,
                         const int64_t *shape, const void *data)
{
	return qc_qout_tensor(r->out, name, dt, ndim, shape, data);
}

int qc_qrun_give_tensor(qc_qrun *r, const char *name, qc_dtype dt, int ndim,
                        const int64_t *shape, void *data)
{
	return qc_qout_give(r->out, name, dt, ndim, shape, data);
}

static void count_ratio(qc_qrun *r, const json_t *line)
{
	double eo = json_number_value(json_object_get(line, "err_out"));
	double er = json_number_value(json_object_get(line, "err_rtn"));
	if (json_is_number(json_object_get(line, "err_out")) &&
	    json_is_number(json_object_get(line, "err_rtn")) && er > 0) {
		r->ratio_sum += eo / er;
		r->n_ratio++;
	}
}

int qc_qrun_report(qc_qrun *r, const qc_report_line *line)
{
	qc_report_line l = *line;
	const qc_qargs *a = &r->scheme.weights;
	l.tool = r->m->tool;
	if (!r->m->dense) {
		l.scheme = r->scheme_name;
		l.group_size = a->strategy == QC_QS_GROUP ? a->group_size : -1;
		l.symmetric = a->symmetric;
	}
	l.n_tokens = r->T;
	QC_TRY(qc_report_add(r->report, &l));
	count_ratio(r, qc_report_line_at(r->report, qc_report_count(r->report) - 1));
	return 0;
}

/* ------------------------------------------------------------ which Linears */

static int layer_mask(qc_qrun *r, int layer, unsigned *mask)
{
	*mask = 0;
	if (r->m->dense)
		return 0;
	for (int l = 0; l < QC_LIN_COUNT; l++) {
		char mod[256];
		qc_linear_module(mod, sizeof mod, layer, (qc_linear)l);
		int ig = qc_qscheme_ignored(&r->scheme, mod);
		if (ig < 0)
			return ig;
		if (!ig)
			*mask |= 1u << l;
	}
	return 0;
}

/* The walk points whose Linears include a quantized one. */
static unsigned point_mask(unsigned quant)
{
	unsigned pm = 0;
	for (int p = 0; p < QC_WALK_POINTS; p++) {
		qc_linear first;
		int count;
		qc_walk_point_linears((qc_walk_point)p, &first, &count);
		for (int k = 0; k < count; k++)
			if (quant & (1u << (first + k)))
				pm |= QC_WALK_BIT(p);
	}
	return pm;
}

/* ------------------------------------------------------------ copying */

/* The group's tensors the driver does not write: quantized weights and
 * what the method claims. Every other one is copied and remembered (a
 * replayed layer takes the rest from its old shard). */
/* 1 when name is the weight of a Linear in mask (bits by qc_linear) of its
 * layer. */
static int quantized_weight(unsigned mask, const char *name)
{
	int layer = qc_ckpt_group_of(name);
	for (int l = 0; layer >= 0 && layer != QC_GROUP_POST && l < QC_LIN_COUNT; l++) {
		char w[256];
		qc_linear_name(w, sizeof w, layer, (qc_linear)l, "weight");
		if (strcmp(w, name) == 0)
			return (mask >> l) & 1;
	}
	return 0;
}

static int skip_written(void *ctx, const char *name)
{
	qc_qrun *r = ctx;
	int layer = qc_ckpt_group_of(name);
	if (layer >= 0 && layer != QC_GROUP_POST) {
		if (quantized_weight(r->quant, name))
			return 1;
		if (r->m->claims && r->m->claims(r->m->ctx, layer, name))
			return 1;
	}
	if (r->n_copied == r->cap_copied) {
		size_t nc = r->cap_copied ? 2 * r->cap_copied : 32;
		char **nn = realloc(r->copied, nc * sizeof *nn);
		if (!nn)
			return nomem();
		r->copied = nn;
		r->cap_copied = nc;
	}
	if (!(r->copied[r->n_copied] = strdup(name)))
		return nomem();
	r->n_copied++;
	return 0;
}

static void forget_copied(qc_qrun *r)
{
	for (size_t i = 0; i < r->n_copied; i++)
		free(r->copied[i]);
	r->n_copied = 0;
}

/* The group's other tensors go straight from the input, never copied:
 * without tokens nothing else reads them, so the writer releases them once
 * written (QC_QOUT_PASS); with tokens the model loads the layer and the
 * embedding and releases them itself, so the writer only holds them until
 * the shard is written (QC_QOUT_SHARE). The post-layer group is never
 * loaded by a calibration walk: handed over either way. */
static int copy_group(qc_qrun *r, int group)
{
	if (group != QC_GROUP_POST) /* the list is the layer's (replay) */
		forget_copied(r);
	return qc_qout_copy_group(r->out, group, skip_written, r,
	                          !r->ts || group == QC_GROUP_POST ? QC_QOUT_PASS : QC_QOUT_SHARE);
}

/* For qc_qout_plan_layer: the weights the driver writes as quantized
 * Linears (r->plan_mask is the layer's). */
static int plan_quantized(void *ctx, const char *name)
{
	const qc_qrun *r = ctx;
	return quantized_weight(r->plan_mask, name);
}

/* Declare the layer's shard to the writer before its first tensor, so that
 * each tensor is written while the layer computes (the embedding during
 * layer 0, the lm_head during the last). Not for a layer replayed from its
 * old shard, nor for a method writing a format of its own. */
static int plan_layer(qc_qrun *r, int layer)
{
	if (layer < r->n_done || r->m->own_format)
		return 0;
	QC_TRY(layer_mask(r, layer, &r->plan_mask));
	return qc_qout_plan_layer(r->out, layer, plan_quantized, r);
}

/* ------------------------------------------------------------ resume */

/* Everything a resumed run must share with the run that wrote the record. */
static json_t *identity(const qc_qrun *r)
{
	const void *cj;
	size_t cl;
	char hc[33], ht[33];
	qc_ckpt_file(r->in, "config.json", &cj, &cl);
	qc_h128_hex(qc_xxh3_128(cj, cl), hc);
	if (r->ts)
		qc_h128_hex(qc_tokset_hash(r->ts), ht);
	return json_pack("{s:s, s:s, s:s, s:s, s:s, s:i}", "version", QC_VERSION, "tool", r->m->tool,
	                 "options", r->o->options ? r->o->options : "", "config_xxh3_128", hc,
	                 "tokens_xxh3_128", r->ts ? ht : "", "threads", r->threads);
}

static char *partial_file(const qc_qrun *r, const char *name)
{
	size_t n = strlen(r->o->out) + strlen(name) + sizeof ".partial/";
	char *p = malloc(n);
	if (p)
		snprintf(p, n, "%s.partial/%s", r->o->out, name);
	return p;
}

static int save_record(qc_qrun *r)
{
	char *t = json_dumps(r->rec, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
	int rc = t ? qc_write_file_atomic(r->rec_path, t, strlen(t)) : nomem();
	free(t);
	return rc;
}

/* After a layer's shard is written: its hash, its inputs' hash and its
 * report lines as written. */
static int record_layer(qc_qrun *r, int layer)
{
	char sname[64], hx[33], ih[17];
	qc_ckpt_shard_name(sname, layer + 1, r->L);
	qc_h128 h; /* as the writer hashed it: no reading the shard back */
	QC_TRY(qc_qout_shard_hash(r->out, layer, &h));
	json_t *lines = json_array();
	for (size_t i = r->line0; lines && i < qc_report_count(r->report); i++)
		if (json_array_append_new(lines, json_deep_copy(qc_report_line_at(r->report, i))) != 0) {
			json_decref(lines);
			lines = NULL;
		}
	json_t *e = lines ? json_pack("{s:i, s:s, s:s, s:s, s:o}", "layer", layer, "shard", sname,
	                              "xxh3_128", qc_h128_hex(h, hx), "inputs_xxh3_64",
	                              qc_h64_hex(qc_hasher64_digest(r->in_hash), ih), "report", lines)
	                  : NULL;
	if (!e || json_array_append_new(json_object_get(r->rec, "layers"), e) != 0)
		return nomem();
	return save_record(r);
}

static const char *identity_what(const char *k)
{
	return strcmp(k, "options") == 0 ? "set of options"
	       : strcmp(k, "config_xxh3_128") == 0 ? "config.json"
	       : strcmp(k, "tokens_xxh3_128") == 0 ? "token set"
	       : strcmp(k, "threads") == 0 ? "thread count"
	       : strcmp(k, "tool") == 0 ? "tool" : "version";
}

/* --resume: the record in OUT.partial, if any, must come from the same
 * tool, options and inputs; the layers it lists whose shards are still
 * there, unchanged, in order, are reused. */
static int load_record(qc_qrun *r, const json_t *want)
{
	char *text;
	size_t len;
	if (qc_read_file(r->rec_path, 1 << 26, &text, &len) != 0)
		return 0; /* nothing to resume from */
	json_error_t je;
	json_t *old = json_loadb(text, len, 0, &je);
	free(text);
	if (!old || !json_is_object(old) || !json_is_array(json_object_get(old, "layers"))) {
		json_decref(old);
		return qc_seterr(QC_EFORMAT, "cannot resume: '%s' is malformed (remove it to start over)",
		                 r->rec_path);
	}
	const json_t *id = json_object_get(old, "identity");
	const char *k;
	json_t *v;
	json_object_foreach((json_t *)want, k, v) {
		if (!json_equal(v, json_object_get(id, k))) {
			json_decref(old);
			return qc_seterr(QC_EINVAL, "cannot resume from '%s.partial': it was made with another "
			                 "%s (run without --resume, or remove it)", r->o->out, identity_what(k));
		}
	}
	size_t i;
	json_array_foreach(json_object_get(old, "layers"), i, v) {
		const char *shard = json_string_value(json_object_get(v, "shard"));
		const char *hx = json_string_value(json_object_get(v, "xxh3_128"));
		char want_name[64];
		qc_ckpt_shard_name(want_name, (int)i + 1, r->L);
		qc_h128 rh, fh;
		if (json_integer_value(json_object_get(v, "layer")) != (json_int_t)i || !shard || !hx ||
		    strcmp(shard, want_name) != 0 || qc_h128_parse(hx, &rh) != 0 ||
		    !json_is_array(json_object_get(v, "report")))
			break;
		char *sp = partial_file(r, shard);
		if (!sp) {
			json_decref(old);
			return nomem();
		}
		int hr = qc_hash_file(sp, &fh, NULL);
		free(sp);
		if (hr || !qc_h128_eq(rh, fh))
			break;
		r->n_done = (int)i + 1;
	}
	r->old = old;
	if (r->n_done > 0)
		qc_log(QC_LOG_INFO, "resuming '%s': layers 0 to %d are done", r->o->out, r->n_done - 1);
	return 0;
}

/* Hash n floats of kernel memory (rows of `cols`), through host scratch. */
static int hash_kernel(qc_qrun *r, const float *x, int64_t rows, int64_t cols)
{
	size_t need = (size_t)(HASH_ROWS * cols);
	if (r->hash_rows_n < need) {
		free(r->hash_rows);
		r->hash_rows_n = 0;
		if (!(r->hash_rows = malloc(need * sizeof *r->hash_rows)))
			return nomem();
		r->hash_rows_n = need;
	}
	for (int64_t r0 = 0; r0 < rows; r0 += HASH_ROWS) {
		int64_t k = rows - r0 < HASH_ROWS ? rows - r0 : HASH_ROWS;
		size_t bytes = (size_t)(k * cols) * sizeof(float);
		QC_TRY(qk_download(r->kc, r->hash_rows, x + r0 * cols, bytes));
		qc_hasher64_update(r->in_hash, r->hash_rows, bytes);
	}
	return 0;
}

/* The layer's FP32 inputs as the model loaded them. */
static int hash_layer(qc_qrun *r, const qc_layer *lw)
{
	int64_t H = r->cfg.hidden_size;
	for (int l = 0; l < QC_LIN_COUNT; l++) {
		QC_TRY(hash_kernel(r, lw->w[l], lw->out[l], lw->in[l]));
		if (lw->b[l])
			QC_TRY(hash_kernel(r, lw->b[l], 1, lw->out[l]));
	}
	QC_TRY(hash_kernel(r, lw->attn_norm, 1, H));
	if (lw->attn_out_norm)
		QC_TRY(hash_kernel(r, lw->attn_out_norm, 1, H));
	if (lw->mlp_out_norm)
		QC_TRY(hash_kernel(r, lw->mlp_out_norm, 1, H));
	return hash_kernel(r, lw->mlp_norm, 1, H);
}

static int replay_get(void *ctx, const char *name, const qc_tensor **t)
{
	qc_qrun *r = ctx;
	if (!(*t = qc_st_find(r->old_shard, name)))
		return qc_seterr(QC_ENOTFOUND, "cannot resume: '%s' lacks '%s'", qc_st_name(r->old_shard),
		                 name);
	return 0;
}

static int was_copied(const qc_qrun *r, const char *name)
{
	for (size_t i = 0; i < r->n_copied; i++)
		if (strcmp(r->copied[i], name) == 0)
			return 1;
	return 0;
}

/* A norm the method claimed comes back from the old shard too. */
static int replay_norm(qc_qrun *r, int layer, const char *which, float *dst)
{
	char name[256];
	snprintf(name, sizeof name, "model.layers.%d.%s.weight", layer, which);
	if (!dst || !r->m->claims || !r->m->claims(r->m->ctx, layer, name))
		return 0;
	const qc_tensor *t;
	QC_TRY(replay_get(r, name, &t));
	if (qc_numel(t->ndim, t->shape) != r->cfg.hidden_size)
		return qc_seterr(QC_EFORMAT, "cannot resume: '%s' in '%s' has the wrong shape", name,
		                 qc_st_name(r->old_shard));
	size_t n = (size_t)r->cfg.hidden_size;
	if (!r->cfg.norm_offset)
		return qk_to_f32(r->kc, dst, t->data, t->dtype, n);
	/* the model holds a (1 + w) norm as it applies it (qc_model.h) */
	float *h = malloc(n * sizeof *h);
	if (!h)
		return qc_seterr(QC_ENOMEM, "out of memory");
	int rc = qc_to_f32(h, t->data, t->dtype, n);
	for (size_t i = 0; !rc && i < n; i++)
		h[i] += (float)r->cfg.norm_offset;
	if (!rc)
		rc = qk_upload(r->kc, dst, h, n * sizeof *h);
	free(h);
	return rc;
}

/* A Linear the method claimed (rewrote in the model's dtype) comes back
 * from the old shard as it was written. */
static int replay_dense(qc_qrun *r, int layer, qc_linear l, qc_layer *lw, int own)
{
	char name[256];
	qc_linear_name(name, sizeof name, layer, l, "weight");
	if (!own && (!r->m->claims || !r->m->claims(r->m->ctx, layer, name)))
		return 0;
	const qc_tensor *t;
	QC_TRY(replay_get(r, name, &t));
	if (qc_numel(t->ndim, t->shape) != lw->out[l] * lw->in[l] || !qc_dtype_is_float(t->dtype))
		return qc_seterr(QC_EFORMAT, "cannot resume: '%s' in '%s' has the wrong shape or dtype",
		                 name, qc_st_name(r->old_shard));
	return qk_to_f32(r->kc, lw->w[l], t->data, t->dtype, (size_t)(lw->out[l] * lw->in[l]));
}

/*
 * Replay a finished layer: the old record's inputs hash must match; every
 * tensor of the layer in the old shard that the driver did not copy now
 * (the method's) goes
 * to the output unchanged; with lw (tokens), its quantized Linears and
 * claimed norms are read back into lw so that the walk goes on exactly as
 * in the run that made them; its report lines are added again.
 */
static int replay_layer(qc_qrun *r, int layer, qc_layer *lw)
{
	json_t *e = json_array_get(json_object_get(r->old, "layers"), (size_t)layer);
	uint64_t want;
	if (qc_h64_parse(json_string_value(json_object_get(e, "inputs_xxh3_64")), &want) != 0 ||
	    want != qc_hasher64_digest(r->in_hash))
		return qc_seterr(QC_EINVAL, "cannot resume: layer %d of '%s' differs from the one the "
		                 "run that wrote '%s.partial' read", layer, qc_ckpt_name(r->in), r->o->out);
	for (size_t i = 0; i < qc_st_count(r->old_shard); i++) {
		const qc_tensor *t = qc_st_at(r->old_shard, i);
		/* the shard also holds the embeddings (first) or the final norm and
		 * lm_head (last): those are the driver's, copied on their own */
		if (qc_ckpt_group_of(t->name) == layer && !was_copied(r, t->name))
			QC_TRY(qc_qout_copy(r->out, t));
	}
	if (lw) {
		qc_wsrc src = { r, replay_get, NULL };
		for (int l = 0; l < QC_LIN_COUNT; l++) {
			if (!((r->quant >> l) & 1) || r->m->own_format) {
				/* an own-format Linear comes back as its float weight */
				QC_TRY(replay_dense(r, layer, (qc_linear)l, lw, (r->quant >> l) & 1));
				continue;
			}
			char mod[256];
			qc_linear_module(mod, sizeof mod, layer, (qc_linear)l);
			qc_ctq_linear L;
			int rc = qc_ctq_linear_get(&L, r->replay_q, &src, mod, lw->out[l], lw->in[l]);
			if (rc == 0 && !L.quantized)
				rc = qc_seterr(QC_EFORMAT, "cannot resume: '%s' is not quantized in '%s'", mod,
				               qc_st_name(r->old_shard));
			if (rc == 0)
				rc = qc_ctq_linear_rows(r->kc, &L, 0, lw->out[l], lw->w[l]);
			qc_ctq_linear_release(&L);
			QC_TRY(rc);
		}
		QC_TRY(replay_norm(r, layer, qc_norm_path(&r->cfg, QC_NORM_ATTN), lw->attn_norm));
		QC_TRY(replay_norm(r, layer, qc_norm_path(&r->cfg, QC_NORM_MLP), lw->mlp_norm));
	}
	size_t i;
	json_t *v;
	json_array_foreach(json_object_get(e, "report"), i, v) {
		QC_TRY(qc_report_add_json(r->report, v));
		count_ratio(r, v);
	}
	return 0;
}

/* ------------------------------------------------------------ walker hooks */

static int hk_layer_begin(void *ctx, int layer, qc_layer *lw)
{
	qc_qrun *r = ctx;
	if (r->resumable) {
		qc_hasher64_reset(r->in_hash);
		QC_TRY(hash_layer(r, lw));
	}
	if (r->old_shard)
		return replay_layer(r, layer, lw);
	return r->m->layer_begin ? r->m->layer_begin(r->m->ctx, layer, lw) : 0;
}

static int hk_observe(void *ctx, int layer, qc_walk_point p, const float *x, int64_t row0,
                      int64_t rows, int64_t cols)
{
	qc_qrun *r = ctx;
	return r->m->observe(r->m->ctx, layer, p, x, row0, rows, cols);
}

static int hk_update(void *ctx, int layer, qc_walk_point p, qc_layer *lw)
{
	qc_qrun *r = ctx;
	if (r->old_shard) /* replay: the weights were replaced at layer_begin */
		return 0;
	return r->m->update ? r->m->update(r->m->ctx, layer, p, lw) : 0;
}

static int hk_layer_end(void *ctx, int layer, qc_layer *lw)
{
	qc_qrun *r = ctx;
	if (r->old_shard)
		return 0;
	return r->m->layer_end ? r->m->layer_end(r->m->ctx, layer, lw) : 0;
}

static void layer_points(qc_qrun *r, int layer, unsigned *observe, unsigned *update)
{
	unsigned pts = point_mask(r->quant);
	*observe = r->T ? pts : 0;
	*update = pts;
	if (r->m->points)
		r->m->points(r->m->ctx, layer, r->quant, observe, update);
	if (!r->T || !r->m->observe)
		*observe = 0;
}

/* ------------------------------------------------------------ without tokens */

/* Linear l of `layer` as FP32 kernel memory (a buffer reused from layer to
 * layer: fresh pages would be zeroed by the kernel every time), checked
 * against the shape config.json implies and for non-finite values. */
static int load_linear(qc_qrun *r, int layer, qc_linear l, qc_layer *lw)
{
	char name[256];
	qc_linear_name(name, sizeof name, layer, l, "weight");
	const qc_tensor *t;
	int rc = qc_ckpt_get(r->in, name, &t);
	if (rc == QC_ENOTFOUND)
		return qc_seterr(QC_EFORMAT, "'%s' has no tensor '%s' that config.json implies",
		                 qc_ckpt_name(r->in), name);
	if (rc)
		return rc;
	int64_t shape[2] = { lw->out[l], lw->in[l] };
	if (t->ndim != 2 || t->shape[0] != shape[0] || t->shape[1] != shape[1]) {
		char a[64], b[64];
		rc = qc_seterr(QC_EFORMAT, "tensor '%s' has shape %s, config.json implies %s", name,
		               qc_shape_str(a, sizeof a, t->ndim, t->shape),
		               qc_shape_str(b, sizeof b, 2, shape));
	} else if (!qc_dtype_is_float(t->dtype) || t->dtype == QC_DT_F8_E4M3) {
		rc = qc_seterr(QC_EFORMAT, "tensor '%s' is %s, not a BF16/FP16/FP32 weight", name,
		               qc_dtype_name(t->dtype));
	}
	size_t n = (size_t)(shape[0] * shape[1]);
	int64_t bad = rc ? -1 : qc_first_nonfinite(t->data, t->dtype, n);
	if (bad >= 0)
		rc = qc_seterr(QC_EFORMAT, "tensor '%s' has a non-finite value at [%lld, %lld]", name,
		               (long long)(bad / shape[1]), (long long)(bad % shape[1]));
	if (rc == 0 && r->wbuf_n[l] < n) {
		qk_free(r->kc, r->wbuf[l]);
		r->wbuf[l] = qk_alloc(r->kc, n * sizeof(float));
		r->wbuf_n[l] = r->wbuf[l] ? n : 0;
		if (!r->wbuf[l])
			rc = QC_ENOMEM;
	}
	if (rc == 0 && (rc = qk_to_f32(r->kc, r->wbuf[l], t->data, t->dtype, n)) == 0)
		lw->w[l] = r->wbuf[l];
	if (rc == 0 && r->resumable)
		qc_hasher64_update(r->in_hash, t->data, qc_nbytes(t->dtype, n));
	qc_ckpt_release(r->in, name);
	return rc;
}

/* A layer without tokens: each point's quantized Linears are loaded and
 * handed to update, then dropped; there is nothing to observe. */
static int uncalibrated_layer(qc_qrun *r, int layer)
{
	qc_layer lw;
	memset(&lw, 0, sizeof lw);
	lw.index = layer;
	for (int l = 0; l < QC_LIN_COUNT; l++) {
		int64_t sh[2];
		qc_linear_shape(&r->cfg, (qc_linear)l, sh);
		lw.out[l] = sh[0];
		lw.in[l] = sh[1];
	}
	unsigned observe, update;
	layer_points(r, layer, &observe, &update);
	if (r->resumable)
		qc_hasher64_reset(r->in_hash);
	int rc = 0;
	if (!r->old_shard && r->m->layer_begin)
		rc = r->m->layer_begin(r->m->ctx, layer, &lw);
	for (int p = 0; rc == 0 && p < QC_WALK_POINTS; p++) {
		if (!(update & QC_WALK_BIT(p)))
			continue;
		qc_linear first;
		int count;
		qc_walk_point_linears((qc_walk_point)p, &first, &count);
		for (int k = 0; rc == 0 && k < count; k++)
			if ((r->quant >> (first + k)) & 1)
				rc = load_linear(r, layer, (qc_linear)(first + k), &lw);
		if (rc == 0 && !r->old_shard && r->m->update)
			rc = r->m->update(r->m->ctx, layer, (qc_walk_point)p, &lw);
		for (int k = 0; k < count; k++)
			lw.w[first + k] = NULL;
	}
	if (rc == 0 && r->old_shard)
		rc = replay_layer(r, layer, NULL);
	else if (rc == 0 && r->m->layer_end)
		rc = r->m->layer_end(r->m->ctx, layer, &lw);
	return rc;
}

/* ------------------------------------------------------------ memory */

typedef struct mem_plan {
	qc_dtype act;               /* activation storage */
	uint64_t act_budget;        /* bytes of them held; 0: all */
	uint64_t keep_down;         /* bytes of DOWN inputs the walker may keep */
} mem_plan;

/* FP32 bytes of one decoder layer's Linear weights. */
static double layer_fp32_bytes(const qc_config *c)
{
	int64_t h = c->hidden_size, in = c->intermediate_size;
	int64_t qd = c->num_attention_heads * c->head_dim;
	int64_t kvd = c->num_key_value_heads * c->head_dim;
	return ((double)h * (qd + 2 * kvd) + (double)qd * h + 3.0 * h * in) * 4;
}

/* What the walker holds for T tokens stored es bytes each: the stores of
 * [T, hidden] and [T, q_dim], a chunk's FP32 scratch, the MLP's blocks. */
static double acts_bytes(const qc_config *c, int64_t T, int es, double *stores)
{
	int64_t h = c->hidden_size, in = c->intermediate_size;
	int64_t qd = c->num_attention_heads * c->head_dim;
	qc_model_opts mo;
	qc_model_opts_default(&mo);
	int64_t ct = T < 2048 ? T : 2048;
	*stores = (double)T * (double)(h + qd) * es;
	return *stores + (double)ct * (3 * h + 3 * qd) * 4 + (double)mo.mlp_rows * 2 * in * 4;
}

static int plan_memory(qc_qrun *r, mem_plan *mp)
{
	const qc_config *c = &r->cfg;
	mp->act = QC_DT_F32;
	mp->act_budget = 0;
	/* the DOWN inputs kept between the passes at DOWN spare a second
	 * gate/up (qc_walk.h): at most as many bytes as the layer's FP32
	 * weights, so that they never dominate the run's memory, and only what
	 * --mem leaves after the rest */
	double want_down = (double)r->T * (double)c->intermediate_size * 4;
	if (want_down > layer_fp32_bytes(c))
		want_down = layer_fp32_bytes(c);
	mp->keep_down = (uint64_t)want_down;
	uint64_t budget = r->o->mem;
	if (!budget)
		return 0;
	qc_qmem need = { 0 };
	if (r->m->memory)
		r->m->memory(r->m->ctx, c, r->T > 0, &need);
	else
		need.weights = layer_fp32_bytes(c);
	int64_t T = r->T ? r->T : 1;
	double stores_f, stores_b;
	double acts_f = acts_bytes(c, T, 4, &stores_f), acts_b = acts_bytes(c, T, 2, &stores_b);
	double fixed_part = need.weights + need.hessian + need.solver;
	double total_f = fixed_part + acts_f, total_b = fixed_part + acts_b;
	qc_log(QC_LOG_DETAIL, "memory of one layer's run: weights %.4g MB, activations %.4g MB "
	       "(FP32; %.4g MB in BF16), Hessian %.4g MB, solver %.4g MB; budget %.4g MB",
	       need.weights / 1e6, acts_f / 1e6, acts_b / 1e6, need.hessian / 1e6, need.solver / 1e6,
	       budget / 1e6);
	if (total_f <= (double)budget) {
		if (total_f + want_down > (double)budget)
			mp->keep_down = (uint64_t)((double)budget - total_f);
		return 0;
	}
	mp->keep_down = 0;
	mp->act = QC_DT_BF16;
	/* the chunk scratch inside the activations stays whatever is spilled */
	double fixed = total_b - stores_b;
	if (fixed > (double)budget)
		return qc_seterr(QC_EINVAL, "--mem %.3g GB is too small: a layer needs about %.3g GB "
		                 "besides its activations (weights %.3g, Hessian %.3g, solver %.3g, "
		                 "chunk scratch %.3g GB)", budget / 1e9, fixed / 1e9, need.weights / 1e9,
		                 need.hessian / 1e9, need.solver / 1e9, (acts_b - stores_b) / 1e9);
	if (total_b > (double)budget) {
		mp->act_budget = (uint64_t)((double)budget - fixed);
		if (mp->act_budget == 0)
			mp->act_budget = 1;
		qc_log(QC_LOG_INFO, "activations in BF16, %.3g of %.3g GB of them in memory and the rest "
		       "spilled to zstd scratch files, to stay within --mem %.3g GB",
		       mp->act_budget / 1e9, stores_b / 1e9, budget / 1e9);
	} else {
		qc_log(QC_LOG_INFO, "activations held in BF16 to stay within --mem (%.3g GB of %.3g)",
		       total_b / 1e9, budget / 1e9);
	}
	return 0;
}

/* ------------------------------------------------------------ setup */

static int check_tokens(const qc_qrun *r)
{
	const int32_t *ids = qc_tokset_ids(r->ts), *lens = qc_tokset_lengths(r->ts);
	int64_t n = qc_tokset_rows(r->ts), L = qc_tokset_len(r->ts);
	for (int64_t s = 0; s < n; s++)
		for (int64_t i = 0; i < lens[s]; i++)
			if (ids[s * L + i] < 0 || ids[s * L + i] >= r->cfg.vocab_size)
				return qc_seterr(QC_EFORMAT, "token set '%s' has id %d (row %lld), outside the "
				                 "vocabulary of '%s' (%lld)", qc_tokset_name(r->ts), ids[s * L + i],
				                 (long long)s, qc_ckpt_name(r->in), (long long)r->cfg.vocab_size);
	if (qc_tokset_n_tokens(r->ts) == 0)
		return qc_seterr(QC_EFORMAT, "token set '%s' has no tokens", qc_tokset_name(r->ts));
	return 0;
}

static int open_input(qc_qrun *r)
{
	const qc_qrun_opts *o = r->o;
	qc_ckpt_opts co = { 0 };
	co.hash_tensors = 1;
	QC_TRY(qc_ckpt_open(&r->in, o->model, &co));
	QC_TRY(qc_config_read(&r->cfg, r->in));
	if (json_object_get(r->cfg.raw, "quantization_config"))
		return qc_seterr(QC_EFORMAT, "'%s' is already quantized (config.json has "
		                 "quantization_config)", qc_ckpt_name(r->in));
	r->L = (int)r->cfg.num_hidden_layers;
	if (!r->m->dense || r->m->scheme)
		QC_TRY(r->m->scheme(r->m->ctx, &r->cfg, &r->scheme, &r->scheme_name));
	if (r->m->dense && o->n_ignore)
		return qc_seterr(QC_EINVAL, "--ignore: %s quantizes nothing to leave out", r->m->tool);
	for (int i = 0; i < o->n_ignore; i++)
		QC_TRY(qc_qscheme_add_ignore(&r->scheme, o->ignore[i]));
	/* compile every ignore regex now, so that a bad one fails before work */
	int rc = qc_qscheme_ignored(&r->scheme, "probe");
	if (rc < 0)
		return rc;
	if (o->calib) {
		QC_TRY(qc_tokset_open(&r->ts, o->calib));
		QC_TRY(check_tokens(r));
		r->T = qc_tokset_n_tokens(r->ts);
	}
	return 0;
}

/* The record of this run in OUT.partial, after a look for an older one. */
static int open_resume(qc_qrun *r)
{
	r->resumable = strcmp(r->o->out, "-") != 0;
	if (!r->resumable)
		return 0;
	char name[64];
	snprintf(name, sizeof name, "%s%s", r->m->tool, RESUME_SUFFIX);
	if (!(r->rec_path = partial_file(r, name)) || !(r->in_hash = qc_hasher64_new()))
		return nomem();
	json_t *id = identity(r);
	if (!id)
		return nomem();
	int rc = r->o->resume ? load_record(r, id) : 0;
	if (rc) {
		json_decref(id);
		return rc;
	}
	if (!(r->rec = json_pack("{s:i, s:o, s:[]}", "resume", 1, "identity", id, "layers")))
		return nomem();
	if (r->n_done > 0 && !r->m->dense && !r->m->own_format) {
		/* finished layers are read back through the compressed-tensors
		 * reader, with the quantization_config the output gets */
		json_t *qc;
		QC_TRY(qc_qscheme_to_json(&r->scheme, &qc));
		json_t *doc = json_pack("{s:o}", "quantization_config", qc);
		if (!doc)
			return nomem();
		rc = qc_ctq_from_config(&r->replay_q, doc);
		json_decref(doc);
	}
	return rc;
}

/* ------------------------------------------------------------ the run */

static int run_layer(qc_qrun *r, int layer)
{
	QC_TRY(layer_mask(r, layer, &r->quant));
	r->line0 = qc_report_count(r->report);
	if (layer < r->n_done) { /* finished by an earlier run: replayed from its shard */
		char sname[64];
		qc_ckpt_shard_name(sname, layer + 1, r->L);
		char *sp = partial_file(r, sname);
		if (!sp)
			return nomem();
		int rc = qc_st_open(&r->old_shard, sp);
		free(sp);
		QC_TRY(rc);
	}
	int rc = layer > 0 ? plan_layer(r, layer) : 0;
	if (rc == 0)
		rc = copy_group(r, layer);
	/* the final norm and lm_head now, so that a planned shard writes them
	 * while the last layer computes */
	if (rc == 0 && layer == r->L - 1)
		rc = copy_group(r, QC_GROUP_POST);
	if (rc == 0 && r->walk) {
		unsigned observe, update;
		layer_points(r, layer, &observe, &update);
		qc_walk_hooks hk = {
			.ctx = r, .observe = r->old_shard ? 0 : observe, .update = update,
			.restart = r->restart, .same_inputs = r->m->same_inputs,
			.layer_begin = hk_layer_begin, .on_input = hk_observe, .on_update = hk_update,
			.layer_end = hk_layer_end,
		};
		rc = qc_walk_layer(r->walk, &hk);
	} else if (rc == 0) {
		rc = uncalibrated_layer(r, layer);
	}
	int replayed = r->old_shard != NULL;
	qc_st_close(r->old_shard); /* before the writer replaces that file */
	r->old_shard = NULL;
	if (rc == 0)
		rc = qc_qout_end_layer(r->out, layer);
	if (rc == 0 && r->resumable)
		rc = record_layer(r, layer);
	if (rc == 0 && replayed) {
		/* a replayed layer must come out as it was */
		json_t *now = json_array_get(json_object_get(r->rec, "layers"), (size_t)layer);
		json_t *was = json_array_get(json_object_get(r->old, "layers"), (size_t)layer);
		if (!json_equal(json_object_get(now, "xxh3_128"), json_object_get(was, "xxh3_128")))
			rc = qc_seterr(QC_EINTEGRITY, "resumed layer %d of '%s' differs from the shard the "
			               "earlier run wrote", layer, r->o->out);
	}
	return rc;
}

static int run(qc_qrun *r)
{
	const qc_qrun_opts *o = r->o;
	QC_TRY(open_input(r));
	mem_plan mp;
	QC_TRY(plan_memory(r, &mp));
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	r->threads = o->threads > 0 ? o->threads : ncpu > 0 ? (int)ncpu : 1;
	QC_TRY(qk_ctx_new(&r->kc, o->device, r->threads));
	if (r->ts)
		QC_TRY(qc_model_open(&r->model, r->in, r->kc, NULL));
	QC_TRY(open_resume(r));
	qc_qout_opts oo = { o->out, o->force, o->resume, r->m->tool, o->argc, o->argv };
	QC_TRY(qc_qout_open(&r->out, r->in, &r->cfg, r->m->dense || r->m->own_format ? NULL
	                                                : &r->scheme, &oo));
	if (r->ts)
		QC_TRY(qc_qout_token_set(r->out, "calibration", qc_tokset_hash(r->ts)));
	/* the embedding is copied before the walk embeds the tokens: an untied
	 * model releases it then */
	r->quant = 0;
	QC_TRY(plan_layer(r, 0));
	QC_TRY(copy_group(r, QC_GROUP_PRE));
	if (r->ts) {
		qc_walk_opts wo = { .act_dtype = mp.act, .mem_budget = mp.act_budget,
		                    .keep_down = mp.keep_down };
		QC_TRY(qc_walk_new(&r->walk, r->model, qc_tokset_ids(r->ts), qc_tokset_len(r->ts),
		                   qc_tokset_lengths(r->ts), qc_tokset_rows(r->ts), &wo));
	}
	r->begun = 1;
	r->restart = r->m->restart;
	if (r->m->begin)
		QC_TRY(r->m->begin(r->m->ctx, r));
	qc_progress prog;
	qc_progress_begin(&prog, "layer", r->L);
	int rc = 0;
	for (int layer = 0; rc == 0 && layer < r->L; layer++) {
		r->layer = layer;
		if ((rc = run_layer(r, layer)) != 0)
			break;
		char note[64];
		if (r->n_ratio)
			snprintf(note, sizeof note, "mean err_out/err_rtn %.3f", r->ratio_sum / r->n_ratio);
		else
			snprintf(note, sizeof note, "layer %d", layer);
		qc_progress_update(&prog, layer + 1, note);
	}
	qc_progress_end(&prog);
	QC_TRY(rc);
	if (o->report)
		QC_TRY(qc_report_save(r->report, o->report));
	if (r->resumable && unlink(r->rec_path) != 0 && errno != ENOENT)
		return qc_seterr(QC_EIO, "cannot remove '%s':", r->rec_path);
	int held, broken;
	qc_qout_plan_stats(r->out, &held, &broken);
	if (held + broken > 0) /* a broken plan costs a second write: worth seeing */
		qc_log(QC_LOG_DETAIL, "%d of %d shards written while their layer computed", held,
		       held + broken);
	rc = qc_qout_close(r->out, r->report);
	r->out = NULL;
	if (rc == 0 && r->n_ratio)
		qc_log(QC_LOG_DETAIL, "%d Linears, mean err_out/err_rtn %.4f", r->n_ratio,
		       r->ratio_sum / r->n_ratio);
	return rc;
}

int qc_qrun_run(const qc_qrun_opts *o, const qc_qmethod *m)
{
	qc_qrun r;
	memset(&r, 0, sizeof r);
	r.o = o;
	r.m = m;
	if (!(r.report = qc_report_new()))
		return nomem();
	int rc = run(&r);
	if (rc)
		qc_qout_abort(r.out);
	if (r.begun && m->end)
		m->end(m->ctx);
	qc_walk_free(r.walk);
	qc_model_free(r.model);
	for (int l = 0; l < QC_LIN_COUNT; l++)
		qk_free(r.kc, r.wbuf[l]);
	qk_ctx_free(r.kc);
	qc_tokset_close(r.ts);
	qc_st_close(r.old_shard);
	qc_ctq_free(r.replay_q);
	forget_copied(&r);
	free(r.copied);
	free(r.rec_path);
	free(r.hash_rows);
	qc_hasher64_free(r.in_hash);
	json_decref(r.rec);
	json_decref(r.old);
	qc_report_free(r.report);
	qc_qscheme_free(&r.scheme);
	qc_config_free(&r.cfg);
	qc_ckpt_close(r.in);
	return rc;
}
