/* qc_verify.c - integrity, numerics and function checks of a checkpoint
 * (see qc_verify.h). */
#include "qc_verify.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qc_ckpt.h"
#include "qc_ctq.h"
#include "qc_err.h"
#include "qc_ggml.h"
#include "qc_gguf_llama.h"
#include "qc_model.h"
#include "qc_packfmt.h"
#include "qc_tok.h"
#include "qc_tokset.h"

void qc_verify_opts_default(qc_verify_opts *o)
{
	memset(o, 0, sizeof *o);
	o->max_kl = -1;
	o->min_top1 = -1;
	qc_quality_opts_default(&o->quality);
}

/* ---------------------------------------------------------------- state */

typedef struct vstate {
	const qc_verify_opts *o;
	json_t *rep, *failures, *findings, *skipped;
	int nfail, nfind;
	char first[1024];            /* the first failure, for the message */
	/* tensor names accounted for, for the consistency check */
	char **expect;
	size_t nexp, capexp;
	/* a gptq/awq artifact: the suffixes its quantized Linears are stored
	 * under (qweight, qzeros, scales, g_idx), read through a qc_pack_view */
	const char *const *pack_sfx;
	int n_pack_sfx;
} vstate;

static json_t *num(double v)
{
	return isfinite(v) ? json_real(v) : json_null();
}

static void failure(vstate *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void failure(vstate *v, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	if (!v->nfail++)
		snprintf(v->first, sizeof v->first, "%s", buf);
	json_array_append_new(v->failures, json_string(buf));
}

/* an integrity finding: listed (up to max_findings) and counted; the first
 * one is also the integrity failure of the verdict */
static void finding(vstate *v, const char *msg)
{
	int max = v->o->max_findings > 0 ? v->o->max_findings : 50;
	if (v->nfind == 0)
		failure(v, "integrity: %s", msg);
	if (v->nfind < max)
		json_array_append_new(v->findings, json_string(msg));
	v->nfind++;
}

static int expect(vstate *v, const char *name)
{
	if (v->nexp == v->capexp) {
		size_t n = v->capexp ? 2 * v->capexp : 256;
		char **e = realloc(v->expect, n * sizeof *e);
		if (!e)
			return qc_seterr(QC_ENOMEM, "out of memory");
		v->expect = e;
		v->capexp = n;
	}
	if (!(v->expect[v->nexp] = strdup(name)))
		return qc_seterr(QC_ENOMEM, "out of memory");
	v->nexp++;
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* a tensor source over a checkpoint that keeps stream tensors until the
 * function step (released ones cannot be read again) */
typedef struct {
	qc_ckpt *ck;
	int keep;
} ck_src;

static int src_get(void *c, const char *name, const qc_tensor **t)
{
	return qc_ckpt_get(((ck_src *)c)->ck, name, t);
}

static void src_release(void *c, const char *name)
{
	ck_src *s = c;
	if (!s->keep)
		qc_ckpt_release(s->ck, name);
}

/* ---------------------------------------------------------------- integrity */

static const char *const lin_suffixes[] = { "weight", "weight_packed", "weight_scale",
	                                        "weight_zero_point", "weight_shape", "input_scale",
	                                        "input_zero_point" };

/* a norm weight or bias: float [n], finite */
static int check_vector(vstate *v, const qc_wsrc *src, const char *name, int64_t n, int *checked)
{
	QC_TRY(expect(v, name));
	const qc_tensor *t;
	int rc = src->get(src->ctx, name, &t);
	char msg[600], a[64];
	if (rc == QC_ENOTFOUND) {
		snprintf(msg, sizeof msg, "tensor '%s' is missing", name);
		finding(v, msg);
		return 0;
	}
	if (rc)
		return rc;
	(*checked)++;
	if (!qc_dtype_is_float(t->dtype) || t->dtype == QC_DT_F8_E4M3) {
		snprintf(msg, sizeof msg, "tensor '%s' has dtype %s, expected a float type", name,
		         qc_dtype_name(t->dtype));
		finding(v, msg);
	} else if (t->ndim != 1 || t->shape[0] != n) {
		snprintf(msg, sizeof msg, "tensor '%s' has shape %s, expected [%lld]", name,
		         qc_shape_str(a, sizeof a, t->ndim, t->shape), (long long)n);
		finding(v, msg);
	} else {
		int64_t i = qc_first_nonfinite(t->data, t->dtype, (size_t)n);
		if (i >= 0) {
			snprintf(msg, sizeof msg, "tensor '%s' holds a non-finite value at index %lld", name,
			         (long long)i);
			finding(v, msg);
		}
	}
	if (src->release)
		src->release(src->ctx, name);
	return 0;
}

/* a Linear (or the embedding: q NULL): tensors, then values. The tensors
 * it was read from are accounted for (all it could have when reading
 * failed, so that one problem is reported once). */
static int check_linear(vstate *v, const qc_ctq *q, const qc_wsrc *src, const char *module,
                        int64_t out, int64_t in, int *checked, int *quantized)
{
	char name[300];
	qc_ctq_linear L;
	int rc = qc_ctq_linear_get(&L, q, src, module, out, in);
	if (rc == QC_ENOTFOUND || rc == QC_EFORMAT) {
		finding(v, qc_errmsg());
		qc_ctq_linear_release(&L);
		for (size_t i = 0; i < sizeof lin_suffixes / sizeof lin_suffixes[0]; i++) {
			snprintf(name, sizeof name, "%s.%s", module, lin_suffixes[i]);
			QC_TRY(expect(v, name));
		}
		for (int i = 0; q && i < v->n_pack_sfx; i++) {
			snprintf(name, sizeof name, "%s.%s", module, v->pack_sfx[i]);
			QC_TRY(expect(v, name));
		}
		return 0;
	}
	if (rc) {
		qc_ctq_linear_release(&L);
		return rc;
	}
	const qc_tensor *got[] = { L.quantized && L.format == QC_CTQ_PACKED ? NULL : L.weight,
		                       L.quantized && L.format == QC_CTQ_PACKED ? L.weight : NULL,
		                       L.scale, L.zero_point, L.shape, L.input_scale, L.input_zp };
	for (size_t i = 0; i < sizeof got / sizeof got[0]; i++)
		if (got[i]) {
			snprintf(name, sizeof name, "%s.%s", module, lin_suffixes[i]);
			if ((rc = expect(v, name))) {
				qc_ctq_linear_release(&L);
				return rc;
			}
		}
	for (int i = 0; L.quantized && i < v->n_pack_sfx; i++) {
		snprintf(name, sizeof name, "%s.%s", module, v->pack_sfx[i]);
		if ((rc = expect(v, name))) {
			qc_ctq_linear_release(&L);
			return rc;
		}
	}
	(*checked)++;
	*quantized += L.quantized;
	rc = qc_ctq_linear_check(&L);
	if (rc == QC_EINTEGRITY) {
		finding(v, qc_errmsg());
		rc = 0;
	}
	qc_ctq_linear_release(&L);
	return rc;
}

static void describe_args(char *buf, size_t n, const qc_qargs *a)
{
	const char *st = a->strategy == QC_QS_TENSOR ? "tensor" : a->strategy == QC_QS_CHANNEL ? "channel" : "group";
	if (a->strategy == QC_QS_GROUP)
		snprintf(buf, n, "%s%d group %lld %s", a->is_float ? "fp" : "int", a->bits,
		         (long long)a->group_size, a->symmetric ? "symmetric" : "asymmetric");
	else
		snprintf(buf, n, "%s%d %s %s", a->is_float ? "fp" : "int", a->bits, st,
		         a->symmetric ? "symmetric" : "asymmetric");
}

static json_t *model_json(const qc_config *c, const qc_ctq *q)
{
	json_t *o = json_object();
	json_object_set_new(o, "architecture", json_string(c->architecture));
	json_object_set_new(o, "layers", json_integer(c->num_hidden_layers));
	json_object_set_new(o, "hidden_size", json_integer(c->hidden_size));
	json_object_set_new(o, "intermediate_size", json_integer(c->intermediate_size));
	json_object_set_new(o, "heads", json_integer(c->num_attention_heads));
	json_object_set_new(o, "kv_heads", json_integer(c->num_key_value_heads));
	json_object_set_new(o, "head_dim", json_integer(c->head_dim));
	json_object_set_new(o, "vocab_size", json_integer(c->vocab_size));
	json_object_set_new(o, "tie_word_embeddings", json_boolean(c->tie_word_embeddings));
	json_object_set_new(o, "quantized", json_boolean(q != NULL));
	return o;
}

static json_t *scheme_json(const qc_ctq *q)
{
	if (!q)
		return json_null();
	const qc_qscheme *s = &q->scheme;
	json_t *o = json_object(), *ign = json_array();
	char buf[128];
	describe_args(buf, sizeof buf, &s->weights);
	json_object_set_new(o, "format", json_string(s->format));
	json_object_set_new(o, "weights", json_string(buf));
	if (s->act == QC_ACT_NONE) {
		json_object_set_new(o, "input_activations", json_null());
	} else {
		snprintf(buf, sizeof buf, "%s %s %s", s->act_is_float ? "fp8" : "int8",
		         s->act == QC_ACT_STATIC_TENSOR ? "static" : "dynamic",
		         s->act == QC_ACT_DYNAMIC_TOKEN ? "per-token" : "per-tensor");
		json_object_set_new(o, "input_activations", json_string(buf));
	}
	for (size_t i = 0; i < s->n_ignore; i++)
		json_array_append_new(ign, json_string(s->ignore[i]));
	json_object_set_new(o, "ignore", ign);
	return o;
}

/* manifest check: "verified", "absent" or "mismatch" (a finding) */
static int check_manifest(vstate *v, qc_ckpt *ck, json_t *integ)
{
	const qc_manifest *man;
	QC_TRY(qc_ckpt_manifest(ck, &man));
	const char *state = "absent";
	if (man) {
		int rc = qc_ckpt_verify(ck);
		if (rc == QC_EINTEGRITY) {
			char msg[1100];
			snprintf(msg, sizeof msg, "manifest: %s", qc_errmsg());
			finding(v, msg);
			state = "mismatch";
		} else if (rc) {
			return rc;
		} else {
			state = "verified";
		}
	}
	json_object_set_new(integ, "manifest", json_string(state));
	return 0;
}

static int integrity_walk(vstate *v, const char *const *names, size_t n, const qc_config *c,
                          const qc_ctq *q, const qc_wsrc *srcp, json_t *integ);

static int integrity(vstate *v, qc_ckpt *ck, qc_model *m, json_t *integ)
{
	const qc_config *c = qc_model_config(m);
	const qc_ctq *q = qc_model_ctq(m);
	ck_src cs = { ck, qc_ckpt_is_stream(ck) };
	qc_wsrc ckw = { &cs, src_get, src_release };
	/* gptq/awq: Linears unpacked to the naive layout on the way */
	qc_pack_view *pv = NULL;
	QC_TRY(qc_pack_view_open(&pv, c->raw, &ckw));
	if (pv)
		QC_TRY(qc_pack_stored_suffixes(qc_pack_view_spec(pv), &v->pack_sfx, &v->n_pack_sfx));
	qc_wsrc src = pv ? *qc_pack_view_wsrc(pv) : ckw;
	const char *const *names;
	size_t n;
	int rc = qc_ckpt_tensor_names(ck, &names, &n);
	if (!rc)
		rc = integrity_walk(v, names, n, c, q, &src, integ);
	qc_pack_view_free(pv);
	v->pack_sfx = NULL;
	v->n_pack_sfx = 0;
	return rc;
}

/* A Linear stored as its float weight and ggml K-quant blocks (qgptq
 * --scheme gguf-*, qc_gptqm.h): the blocks are accounted for and must
 * decode to the weight exactly. */
static int check_ggml(vstate *v, const char *const *names, size_t n, const qc_wsrc *src,
                      const char *module, int64_t rows, int64_t cols, int *ggml)
{
	char wn[300], msg[700];
	snprintf(wn, sizeof wn, "%s.weight", module);
	size_t wl = strlen(wn);
	for (size_t i = 0; i < n; i++) {
		int type = qc_ggml_blocks_type(names[i]);
		if (!type || strncmp(names[i], wn, wl) != 0 ||
		    strcmp(names[i] + wl, qc_ggml_blocks_suffix(type)) != 0)
			continue;
		QC_TRY(expect(v, names[i]));
		(*ggml)++;
		const qc_tensor *b = NULL, *w = NULL;
		size_t rb = 0;
		int rc = qc_ggml_row_bytes(type, cols, &rb) ? QC_EFORMAT : 0;
		if (!rc)
			rc = src->get(src->ctx, names[i], &b);
		if (!rc)
			rc = src->get(src->ctx, wn, &w);
		int64_t bad = -1;
		if (!rc && (b->dtype != QC_DT_U8 || b->ndim != 2 || b->shape[0] != rows ||
		            b->shape[1] != (int64_t)rb || w->dtype != QC_DT_F32)) {
			snprintf(msg, sizeof msg, "tensor '%s': %s blocks of [%lld, %lld] must be U8 [%lld, "
			         "%zu] beside an F32 weight", names[i], qc_ggml_type_name(type),
			         (long long)rows, (long long)cols, (long long)rows, rb);
			finding(v, msg);
		} else if (!rc && !(rc = qc_ggml_blocks_match(type, b->data, w->data, rows, cols, &bad)) &&
		           bad >= 0) {
			snprintf(msg, sizeof msg, "tensor '%s': row %lld does not decode to '%s'", names[i],
			         (long long)bad, wn);
			finding(v, msg);
		}
		if (rc == QC_EFORMAT && !b)
			rc = qc_seterr(QC_EFORMAT, "'%s': %lld inputs are not whole %s blocks", names[i],
			               (long long)cols, qc_ggml_type_name(type));
		if (b && src->release)
			src->release(src->ctx, names[i]);
		if (w && src->release)
			src->release(src->ctx, wn);
		QC_TRY(rc);
	}
	return 0;
}

static int integrity_walk(vstate *v, const char *const *names, size_t n, const qc_config *c,
                          const qc_ctq *q, const qc_wsrc *srcp, json_t *integ)
{
	qc_wsrc src = *srcp;
	int checked = 0, linears = 0, quantized = 0, ggml = 0;
	int64_t H = c->hidden_size, V = c->vocab_size;
	char name[300], module[200];
	QC_TRY(check_linear(v, NULL, &src, "model.embed_tokens", V, H, &checked, &quantized));
	for (int l = 0; l < c->num_hidden_layers; l++) {
		for (int k = 0; k < QC_NORM_COUNT; k++) {
			const char *path = qc_norm_path(c, (qc_norm)k);
			if (!path)
				continue;
			snprintf(name, sizeof name, "model.layers.%d.%s.weight", l, path);
			QC_TRY(check_vector(v, &src, name, H, &checked));
		}
		for (int k = 0; k < QC_LIN_COUNT; k++) {
			int64_t sh[2];
			qc_linear_shape(c, (qc_linear)k, sh);
			snprintf(module, sizeof module, "model.layers.%d.%s", l, qc_linear_path((qc_linear)k));
			int before = checked;
			QC_TRY(check_linear(v, q, &src, module, sh[0], sh[1], &checked, &quantized));
			linears += checked > before;
			if (!q)
				QC_TRY(check_ggml(v, names, n, &src, module, sh[0], sh[1], &ggml));
			if (qc_linear_has_bias(c, (qc_linear)k)) {
				snprintf(name, sizeof name, "%s.bias", module);
				QC_TRY(check_vector(v, &src, name, sh[0], &checked));
			}
		}
		if (q && q->scheme.kv_cache_fp8) {
			snprintf(name, sizeof name, "model.layers.%d.self_attn.k_scale", l);
			QC_TRY(expect(v, name));
			snprintf(name, sizeof name, "model.layers.%d.self_attn.v_scale", l);
			QC_TRY(expect(v, name));
		}
	}
	QC_TRY(check_vector(v, &src, "model.norm.weight", H, &checked));
	if (!c->tie_word_embeddings) {
		int before = checked;
		QC_TRY(check_linear(v, q, &src, "lm_head", V, H, &checked, &quantized));
		linears += checked > before;
	}
	/* consistency: every tensor is accounted for */
	qsort(v->expect, v->nexp, sizeof *v->expect, cmp_str);
	for (size_t i = 0; i < n; i++) {
		const char *key = names[i];
		if (bsearch(&key, v->expect, v->nexp, sizeof *v->expect, cmp_str))
			continue;
		size_t len = strlen(key);
		const char *rot = ".rotary_emb.inv_freq";
		if (len > strlen(rot) && strcmp(key + len - strlen(rot), rot) == 0)
			continue;   /* a buffer older transformers saved; never read */
		char msg[600];
		snprintf(msg, sizeof msg, "unexpected tensor '%s': neither config.json nor its "
		         "quantization_config accounts for it", key);
		finding(v, msg);
	}
	json_object_set_new(integ, "model", model_json(c, q));
	json_object_set_new(integ, "scheme", scheme_json(q));
	json_object_set_new(integ, "tensors_checked", json_integer(checked));
	json_object_set_new(integ, "linears", json_integer(linears));
	json_object_set_new(integ, "quantized_linears", json_integer(quantized));
	if (ggml)
		json_object_set_new(integ, "ggml_linears", json_integer(ggml));
	return 0;
}

/* ---------------------------------------------------------------- numerics */

static int same_shape(const qc_config *a, const qc_config *b)
{
	return a->hidden_size == b->hidden_size && a->intermediate_size == b->intermediate_size &&
	       a->num_hidden_layers == b->num_hidden_layers &&
	       a->num_attention_heads == b->num_attention_heads &&
	       a->num_key_value_heads == b->num_key_value_heads && a->head_dim == b->head_dim &&
	       a->vocab_size == b->vocab_size && a->tie_word_embeddings == b->tie_word_embeddings;
}

/* ||A - B||^2 / ||B||^2 over a Linear, rows at a time (ba, bb: device
 * buffers of block floats; the sums run on in index order across blocks) */
static int weight_error(qk_ctx *kc, const qc_ctq_linear *A, const qc_ctq_linear *B, float *ba,
                        float *bb, int64_t block, double *err)
{
	double num2 = 0, den = 0;
	int64_t rows = block / A->in;
	if (rows < 1)
		rows = 1;
	for (int64_t r0 = 0; r0 < A->out; r0 += rows) {
		int64_t r1 = r0 + rows < A->out ? r0 + rows : A->out;
		QC_TRY(qc_ctq_linear_rows(kc, A, r0, r1, ba));
		QC_TRY(qc_ctq_linear_rows(kc, B, r0, r1, bb));
		QC_TRY(qk_diff_sumsq(kc, ba, bb, (size_t)((r1 - r0) * A->in), &num2, &den));
	}
	*err = num2 / den;
	return 0;
}

/* asrc: the artifact's tensors when it is not a checkpoint (GGUF), else NULL */
static int numerics(vstate *v, qc_ckpt *ck, const qc_wsrc *asrc, qc_model *m, qc_ckpt *bck,
                    qc_model *mb, json_t *num_o)
{
	const qc_config *c = qc_model_config(m);
	ck_src ca = { ck, ck && qc_ckpt_is_stream(ck) }, cb = { bck, qc_ckpt_is_stream(bck) };
	qc_wsrc sa = { &ca, src_get, src_release }, sb = { &cb, src_get, src_release };
	qc_pack_view *pv = NULL;
	if (asrc)
		sa = *asrc;
	else
		QC_TRY(qc_pack_view_open(&pv, c->raw, &sa));
	if (pv)
		sa = *qc_pack_view_wsrc(pv);
	qk_ctx *kc = v->o->kc;
	/* floats per buffer: a block of rows, at least one row of any Linear */
	int64_t block = 1 << 22, qd = c->num_attention_heads * c->head_dim;
	int64_t widest = c->intermediate_size > c->hidden_size ? c->intermediate_size : c->hidden_size;
	if (qd > widest)
		widest = qd;
	if (block < widest)
		block = widest;
	float *ba = qk_alloc(kc, (size_t)block * sizeof(float));
	float *bb = qk_alloc(kc, (size_t)block * sizeof(float));
	json_t *arr = json_array();
	double sum = 0, mx = -1;
	int count = 0, rc = 0, L = (int)c->num_hidden_layers;
	char worst[200] = "";
	if (!ba || !bb) {
		rc = qc_seterr(QC_ENOMEM, "out of memory");
		goto out;
	}
	for (int l = 0; l <= L && !rc; l++) {
		int nk = l < L ? QC_LIN_COUNT : !c->tie_word_embeddings;   /* the lm_head last */
		for (int k = 0; k < nk && !rc; k++) {
			char module[200];
			int64_t sh[2] = { c->vocab_size, c->hidden_size };
			if (l < L) {
				qc_linear_shape(c, (qc_linear)k, sh);
				snprintf(module, sizeof module, "model.layers.%d.%s", l, qc_linear_path((qc_linear)k));
			} else {
				snprintf(module, sizeof module, "lm_head");
			}
			qc_ctq_linear A, B;
			double e = 0;
			memset(&B, 0, sizeof B);
			rc = qc_ctq_linear_get(&A, qc_model_ctq(m), &sa, module, sh[0], sh[1]);
			if (!rc && (rc = qc_ctq_linear_get(&B, qc_model_ctq(mb), &sb, module, sh[0], sh[1])))
				rc = qc_errctx(rc, "base");
			if (!rc)
				rc = weight_error(kc, &A, &B, ba, bb, block, &e);
			json_t *o = json_object();
			json_object_set_new(o, "name", json_string(module));
			json_object_set_new(o, "quantized", json_boolean(A.quantized));
			json_object_set_new(o, "err_w", num(e));
			json_array_append_new(arr, o);
			qc_ctq_linear_release(&A);
			qc_ctq_linear_release(&B);
			if (rc)
				break;
			sum += e;
			count++;
			if (e > mx || isnan(e)) {
				mx = e;
				snprintf(worst, sizeof worst, "%s", module);
			}
		}
		if (v->o->progress && l < L)
			v->o->progress(v->o->progress_ctx, "numerics", l + 1, L);
	}
	json_object_set_new(num_o, "err_w_mean", num(count ? sum / count : 0));
	json_object_set_new(num_o, "err_w_max", num(mx < 0 ? 0 : mx));
	json_object_set_new(num_o, "worst", json_string(worst));
out:
	json_object_set_new(num_o, "linears", arr);
	qk_free(kc, ba);
	qk_free(kc, bb);
	qc_pack_view_free(pv);
	return rc;
}

/* ---------------------------------------------------------------- function */

static void function_progress(void *ctx, int done, int total)
{
	const qc_verify_opts *o = ctx;
	o->progress(o->progress_ctx, "function", done, total);
}

static int function(vstate *v, qc_model *m, qc_model *mb, json_t **out)
{
	const qc_verify_opts *o = v->o;
	qc_tokset *ts;
	QC_TRY(qc_tokset_open(&ts, o->tokens));
	int64_t V = qc_model_config(m)->vocab_size;
	if (qc_tokset_vocab_size(ts) > V) {
		int rc = qc_seterr(QC_EINVAL, "token set '%s' was made for a vocabulary of %lld, the model "
		                   "has %lld", qc_tokset_name(ts), (long long)qc_tokset_vocab_size(ts),
		                   (long long)V);
		qc_tokset_close(ts);
		return rc;
	}
	qc_metrics_opts mo = o->metrics;
	if (o->progress) {
		mo.progress = function_progress;
		mo.progress_ctx = (void *)o;
	}
	qc_metrics r;
	int rc = mb ? qc_metrics_compare(mb, m, qc_tokset_ids(ts), qc_tokset_len(ts),
	                                 qc_tokset_lengths(ts), qc_tokset_rows(ts), &mo, &r)
	            : qc_metrics_eval(m, qc_tokset_ids(ts), qc_tokset_len(ts), qc_tokset_lengths(ts),
	                              qc_tokset_rows(ts), &mo, &r);
	qc_tokset_close(ts);
	if (rc)
		return rc;
	*out = qc_metrics_json(&r);
	if (mb) {
		if (o->max_ppl_ratio > 0 && !(r.ppl_ratio <= o->max_ppl_ratio))
			failure(v, "function: ppl_ratio %.6g exceeds max_ppl_ratio %g", r.ppl_ratio,
			        o->max_ppl_ratio);
		if (o->max_kl >= 0 && !(r.kl_mean <= o->max_kl))
			failure(v, "function: kl_mean %.6g exceeds max_kl %g", r.kl_mean, o->max_kl);
		if (o->min_top1 >= 0 && !(r.top1 >= o->min_top1))
			failure(v, "function: top1 %.6g is below min_top1 %g", r.top1, o->min_top1);
	}
	qc_metrics_free(&r);
	return *out ? 0 : qc_seterr(QC_ENOMEM, "out of memory");
}

/* ---------------------------------------------------------------- quality */

/* the tokenizer of ck, else of bck */
static int load_tok(qc_ckpt *ck, qc_ckpt *bck, qc_tok **tok, char **cfg, size_t *cfg_len)
{
	qc_ckpt *cks[2] = { ck, bck };
	for (int i = 0; i < 2; i++) {
		const void *js, *cs = NULL;
		size_t jl, cl = 0;
		if (!cks[i] || qc_ckpt_file(cks[i], "tokenizer.json", &js, &jl))
			continue;
		if (qc_ckpt_file(cks[i], "tokenizer_config.json", &cs, &cl))
			cs = NULL, cl = 0;
		char name[4200];
		snprintf(name, sizeof name, "%s/tokenizer.json", qc_ckpt_name(cks[i]));
		QC_TRY(qc_tok_load_mem(tok, js, jl, cs, cl, name));
		if (cs && !(*cfg = malloc(cl + 1))) {
			qc_tok_free(*tok);
			*tok = NULL;
			return qc_seterr(QC_ENOMEM, "out of memory");
		}
		if (cs) {
			memcpy(*cfg, cs, cl);
			(*cfg)[cl] = 0;
			*cfg_len = cl;
		}
		return 0;
	}
	/* ck is NULL for a GGUF artifact: its tokenizer is the base's */
	return qc_seterr(QC_EINVAL, "tasks and prompts need a tokenizer: '%s'%s has no "
	                 "tokenizer.json", ck ? qc_ckpt_name(ck) : "the GGUF artifact",
	                 bck ? " nor its base" : "");
}

static int quality(vstate *v, qc_ckpt *ck, qc_model *m, qc_ckpt *bck, qc_model *mb, json_t **out)
{
	qc_tok *tok = NULL;
	char *cfg = NULL;
	size_t cl = 0;
	QC_TRY(load_tok(ck, bck, &tok, &cfg, &cl));
	json_t *fails = json_array();
	int rc = fails ? qc_quality_run(m, mb, tok, cfg, cl, &v->o->quality, out, fails, v->o->outputs)
	               : qc_seterr(QC_ENOMEM, "out of memory");
	size_t i;
	json_t *f;
	json_array_foreach(fails, i, f)
		failure(v, "quality: %s", json_string_value(f));
	json_decref(fails);
	qc_tok_free(tok);
	free(cfg);
	return rc;
}

/* ---------------------------------------------------------------- all of it */

int qc_verify(const char *artifact, const qc_verify_opts *o, json_t **report)
{
	*report = NULL;
	if ((o->max_ppl_ratio > 0 || o->max_kl >= 0 || o->min_top1 >= 0) && (!o->base || !o->tokens))
		return qc_seterr(QC_EINVAL, "thresholds need a base model and a token set");
	vstate v = { .o = o };
	v.rep = json_object();
	v.failures = json_array();
	v.findings = json_array();
	v.skipped = json_array();
	json_t *integ = json_object(), *num_o = NULL, *fun = NULL, *qual = NULL;
	qc_ckpt *ck = NULL, *bck = NULL;
	qc_gguf_llama *gl = NULL;
	qc_model *m = NULL, *mb = NULL;
	int rc;
	if (!v.rep || !v.failures || !v.findings || !v.skipped || !integ) {
		rc = qc_seterr(QC_ENOMEM, "out of memory");
		goto out;
	}
	qc_ckpt_opts co = { .stream_mem_limit = o->stream_mem_limit, .hash_tensors = 1 };
	/* a stream's tensors are read once: when layers are loaded again for
	 * the quality checks, they must not be released by the earlier steps */
	qc_model_opts mo;
	qc_model_opts_default(&mo);
	mo.keep_tensors = qc_quality_wanted(&o->quality);
	int stream = 0;
	if (qc_gguf_is_file(artifact)) {
		/* a llama.cpp file: read back as dense tensors (qc_gguf_llama.h);
		 * the container's checks are its integrity, it has no manifest */
		const char *const *names;
		size_t n;
		if ((rc = qc_gguf_llama_open(&gl, artifact)) ||
		    (rc = qc_model_new(&m, qc_gguf_llama_config(gl), qc_gguf_llama_wsrc(gl), NULL, o->kc,
		                       NULL)))
			goto out;
		json_object_set_new(integ, "manifest", json_string("absent"));
		json_object_set_new(integ, "gguf_type", json_string(qc_gguf_llama_weight_type(gl)));
		qc_gguf_llama_names(gl, &names, &n);
		if ((rc = integrity_walk(&v, names, n, qc_gguf_llama_config(gl), NULL,
		                         qc_gguf_llama_wsrc(gl), integ)))
			goto out;
	} else {
		if ((rc = qc_ckpt_open(&ck, artifact, &co)))
			goto out;
		stream = qc_ckpt_is_stream(ck);
		if (stream && (rc = qc_ckpt_read_all(ck)))
			goto out;
		/* a directory's manifest first: a flipped byte is named before
		 * anything reads the tensor; a stream's once it has been read
		 * through (below) */
		if (!stream && (rc = check_manifest(&v, ck, integ)))
			goto out;
		if ((rc = qc_model_open(&m, ck, o->kc, &mo)))
			goto out;
		if ((rc = integrity(&v, ck, m, integ)))
			goto out;
	}
	int integ_ok = v.nfind == 0;
	if (o->base) {
		if ((rc = qc_ckpt_open(&bck, o->base, &co)) || (rc = qc_model_open(&mb, bck, o->kc, &mo)))
			goto out;
		if (!same_shape(qc_model_config(m), qc_model_config(mb))) {
			rc = qc_seterr(QC_EINVAL, "base '%s' is not the same architecture as '%s' (sizes or "
			               "tied embeddings differ)", o->base, artifact);
			goto out;
		}
		if (integ_ok) {
			num_o = json_object();
			if ((rc = numerics(&v, ck, gl ? qc_gguf_llama_wsrc(gl) : NULL, m, bck, mb, num_o)))
				goto out;
		}
	}
	if (o->tokens && integ_ok) {
		if ((rc = function(&v, m, mb, &fun)))
			goto out;
	}
	if (qc_quality_wanted(&o->quality) && integ_ok) {
		if ((rc = quality(&v, ck, m, bck, mb, &qual)))
			goto out;
	}
	if (!integ_ok && (o->base || o->tokens || qc_quality_wanted(&o->quality)))
		json_array_append_new(v.skipped, json_string("numerics, function and quality: integrity "
		                                             "failed"));
	if (stream && (rc = check_manifest(&v, ck, integ)))
		goto out;
	if (bck && num_o) {
		/* does the base match the one the manifest records? */
		const qc_manifest *man;
		const char *state = "not recorded";
		man = NULL;
		if (ck && (rc = qc_ckpt_manifest(ck, &man)))
			goto out;
		if (man && qc_manifest_base(man)) {
			char fp[33];
			if ((rc = qc_ckpt_fingerprint(bck, fp)))
				goto out;
			state = strcmp(fp, qc_manifest_base(man)) == 0 ? "matches" : "differs";
		}
		json_object_set_new(num_o, "base_fingerprint", json_string(state));
	}
	json_object_set_new(integ, "ok", json_boolean(v.nfind == 0));
	json_object_set_new(integ, "findings", json_incref(v.findings));
	json_object_set_new(integ, "findings_total", json_integer(v.nfind));
	json_object_set_new(v.rep, "artifact", json_string(artifact));
	json_object_set_new(v.rep, "base", o->base ? json_string(o->base) : json_null());
	json_object_set_new(v.rep, "tokens", o->tokens ? json_string(o->tokens) : json_null());
	json_object_set_new(v.rep, "verdict", json_string(v.nfail ? "fail" : "pass"));
	json_object_set_new(v.rep, "failures", json_incref(v.failures));
	json_object_set_new(v.rep, "integrity", json_incref(integ));
	json_object_set_new(v.rep, "numerics", num_o ? json_incref(num_o) : json_null());
	json_object_set_new(v.rep, "function", fun ? json_incref(fun) : json_null());
	json_object_set_new(v.rep, "quality", qual ? json_incref(qual) : json_null());
	json_t *th = json_object();
	json_object_set_new(th, "max_ppl_ratio", o->max_ppl_ratio > 0 ? json_real(o->max_ppl_ratio) : json_null());
	json_object_set_new(th, "max_kl", o->max_kl >= 0 ? json_real(o->max_kl) : json_null());
	json_object_set_new(th, "min_top1", o->min_top1 >= 0 ? json_real(o->min_top1) : json_null());
	json_object_set_new(v.rep, "thresholds", th);
	json_object_set_new(v.rep, "skipped", json_incref(v.skipped));
	*report = json_incref(v.rep);
	rc = v.nfail ? qc_seterr(QC_EINTEGRITY, "%s", v.first) : 0;
out:
	qc_model_free(m);
	qc_model_free(mb);
	qc_gguf_llama_close(gl);
	qc_ckpt_close(ck);
	qc_ckpt_close(bck);
	json_decref(v.rep);
	json_decref(v.failures);
	json_decref(v.findings);
	json_decref(v.skipped);
	json_decref(integ);
	json_decref(num_o);
	json_decref(fun);
	json_decref(qual);
	for (size_t i = 0; i < v.nexp; i++)
		free(v.expect[i]);
	free(v.expect);
	if (rc && rc != QC_EINTEGRITY && *report) {
		json_decref(*report);
		*report = NULL;
	}
	return rc;
}
